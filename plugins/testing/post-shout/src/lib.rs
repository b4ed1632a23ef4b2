//! Test plugin `shout@0.1.0`: upper-cases the text, and appends the session's `suffix` option
//! when it gives one, so that tests can tell which post-processor ran and with what options.

use kiki_plugin_sdk::{PluginError, Postprocessor, SessionOptions, Transcript, export_postprocessor};

pub struct Shout;

impl Postprocessor for Shout {
    fn process(mut input: Transcript, options: &SessionOptions) -> Result<Transcript, PluginError> {
        input.text = input.text.to_uppercase();
        if let Some((_, suffix)) = options.extra.iter().find(|(k, _)| k == "suffix") {
            input.text.push_str(suffix);
        }
        Ok(input)
    }
}

export_postprocessor!(Shout);
