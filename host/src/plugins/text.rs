//! Post-processor and router plugins: called once per result, each call in a fresh instance
//! (instantiation from `InstancePre` costs tens of microseconds, and a trap cannot leak into the
//! next result).

use super::bindings::postprocessor::PostprocessorPluginPre;
use super::bindings::router::RouterPluginPre;
use super::bindings::router::exports::kiki::plugin::router::{Destination, RouteContext};
use super::bindings::segmenter::kiki::plugin::types;
use super::compiled::Compiled;
use super::host::HostState;
use super::limits::MAX_ROUTES;
use super::runtime::PluginError;

pub use types::{SessionOptions, Transcript, Word};

/// Where a result goes, as the router decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Owner,
    Session(String),
    Archive(String),
}

/// What a result plugin is given to work through: its text and its words' texts.
fn transcript_bytes(t: &Transcript) -> usize {
    t.text.len() + t.words.iter().map(|w| w.text.len()).sum::<usize>()
}

/// A compiled post-processor or router version.
pub type PostprocessorPlugin = Compiled<PostprocessorPluginPre<HostState>>;
pub type RouterPlugin = Compiled<RouterPluginPre<HostState>>;

impl PostprocessorPlugin {
    pub fn process(&self, input: &Transcript, options: &SessionOptions) -> Result<Transcript, PluginError> {
        self.process_metered(input, options).map(|(t, _)| t)
    }

    /// [`Self::process`], and the fuel the call used (about one unit per wasm instruction).
    pub fn process_metered(
        &self,
        input: &Transcript,
        options: &SessionOptions,
    ) -> Result<(Transcript, u64), PluginError> {
        let mut store = self.store(transcript_bytes(input))?;
        let given = store.get_fuel().unwrap_or(0);
        let b = self.pre.instantiate(&mut store).map_err(|e| PluginError::from_call(self.label(), e))?;
        let out = b.kiki_plugin_postprocessor().call_process(&mut store, input, options);
        store.data_mut().drain_stderr();
        let used = given.saturating_sub(store.get_fuel().unwrap_or(0));
        let out = out.map_err(|e| PluginError::from_call(self.label(), e))?.map_err(|e| self.returned(e))?;
        Ok((out, used))
    }
}

impl RouterPlugin {
    pub fn route(
        &self,
        result: &Transcript,
        options: &SessionOptions,
        owner_backlog: u32,
        room_members: Vec<String>,
    ) -> Result<Vec<Route>, PluginError> {
        let mut store = self.store(transcript_bytes(result))?;
        let b = self.pre.instantiate(&mut store).map_err(|e| PluginError::from_call(self.label(), e))?;
        let ctx = RouteContext { owner_backlog, room_members };
        let out = b.kiki_plugin_router().call_route(&mut store, result, options, &ctx);
        store.data_mut().drain_stderr();
        let dests = out.map_err(|e| PluginError::from_call(self.label(), e))?;
        if dests.len() > MAX_ROUTES {
            return Err(PluginError::Returned {
                plugin: self.label().to_string(),
                reason: format!("returned {} destinations; the limit is {MAX_ROUTES}", dests.len()),
            });
        }
        Ok(dests
            .into_iter()
            .map(|d| match d {
                Destination::Owner => Route::Owner,
                Destination::Session(s) => Route::Session(s),
                Destination::Archive(a) => Route::Archive(a),
            })
            .collect())
    }
}

/// A final and its session, run through a new version before it goes live (and by `kiki plugin
/// check`): a version that fails on it is never activated.
pub fn sample() -> (Transcript, SessionOptions) {
    let transcript = Transcript {
        session_id: "check".into(),
        segment_id: 0,
        kind: types::CutKind::Final,
        text: "twenty five people met stela at the store".into(),
        start_ms: 0,
        end_ms: 2500,
        words: Vec::new(),
        language: "en".into(),
    };
    let options = SessionOptions {
        session_id: "check".into(),
        language: Some("en".into()),
        hotwords: vec!["Stella".into()],
        room: Some("check-room".into()),
        extra: Vec::new(),
    };
    (transcript, options)
}

impl PostprocessorPlugin {
    /// Runs a fresh instance on [`sample`].
    pub fn self_test(&self) -> Result<Transcript, PluginError> {
        let (t, o) = sample();
        self.process(&t, &o)
    }
}

impl RouterPlugin {
    /// Routes [`sample`] in a room of two.
    pub fn self_test(&self) -> Result<Vec<Route>, PluginError> {
        let (t, o) = sample();
        self.route(&t, &o, 0, vec!["check".into(), "listener".into()])
    }
}
