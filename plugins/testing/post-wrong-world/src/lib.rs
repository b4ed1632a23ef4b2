//! Test plugin `wrongworld@0.1.0`: a well-behaved postprocessor that returns its input.
//!
//! It exports `kiki:plugin/postprocessor` (the `postprocessor-plugin` world) and no segmenter,
//! so a host that loads it as a segmenter must refuse it at link/instantiate-pre time.

use kiki_plugin_sdk::{PluginError, Postprocessor, SessionOptions, Transcript, export_postprocessor};

pub struct Identity;

impl Postprocessor for Identity {
    fn process(input: Transcript, _options: &SessionOptions) -> Result<Transcript, PluginError> {
        Ok(input)
    }
}

export_postprocessor!(Identity);
