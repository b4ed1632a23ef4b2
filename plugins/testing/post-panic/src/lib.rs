//! Test plugin `panicky@0.1.0`: a post-processor that passes the host's self-test (session
//! `check`) and panics on every real session's result (a trap in the host), for the failure
//! policy tests.

use kiki_plugin_sdk::{PluginError, Postprocessor, SessionOptions, Transcript, export_postprocessor};

pub struct Panicky;

impl Postprocessor for Panicky {
    fn process(input: Transcript, options: &SessionOptions) -> Result<Transcript, PluginError> {
        if options.session_id == "check" {
            return Ok(input);
        }
        panic!("panicky cannot process {:?}", input.text);
    }
}

export_postprocessor!(Panicky);
