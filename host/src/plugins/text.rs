//! Post-processor and router plugins: called once per result, each call in a fresh instance
//! (instantiation from `InstancePre` costs tens of microseconds, and a trap cannot leak into the
//! next result).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use wasmtime::Store;

use super::bindings::postprocessor::PostprocessorPluginPre;
use super::bindings::router::RouterPluginPre;
use super::bindings::router::exports::kiki::plugin::router::{Destination, RouteContext};
use super::bindings::segmenter::kiki::plugin::types;
use super::host::HostState;
use super::manifest::Manifest;
use super::runtime::{PluginError, PluginKind, PluginRuntime};

pub use types::{SessionOptions, Transcript, Word};

/// Where a result goes, as the router decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Owner,
    Session(String),
    Archive(String),
}

/// A compiled post-processor or router version.
pub struct TextPlugin<P> {
    pub name: String,
    pub version: String,
    label: Arc<str>,
    pre: P,
    runtime: Arc<PluginRuntime>,
    /// Operator config for this plugin (`[plugins.config.NAME]`), served by `host.config`.
    config: Arc<HashMap<String, String>>,
    pub manifest: Option<Manifest>,
}

pub type PostprocessorPlugin = TextPlugin<PostprocessorPluginPre<HostState>>;
pub type RouterPlugin = TextPlugin<RouterPluginPre<HostState>>;

impl<P> TextPlugin<P> {
    pub fn label(&self) -> &str {
        &self.label
    }

    fn store(&self) -> Result<Store<HostState>, PluginError> {
        let limits = self.runtime.limits();
        let state = HostState::new(self.label.clone(), self.config.clone(), limits.store_limits());
        let mut store = self.runtime.new_store(state);
        store.set_fuel(limits.fuel_per_call).map_err(|e| PluginError::Engine(e.to_string()))?;
        Ok(store)
    }
}

fn compile<P>(
    runtime: &Arc<PluginRuntime>,
    path: &Path,
    name: &str,
    version: &str,
    kind: PluginKind,
    config: HashMap<String, String>,
    wrap: impl FnOnce(wasmtime::component::InstancePre<HostState>) -> wasmtime::Result<P>,
) -> Result<Arc<TextPlugin<P>>, PluginError> {
    let manifest = PluginRuntime::manifest(path, name, version, kind, &config)?;
    let component = runtime.compile(path)?;
    let label: Arc<str> = format!("{name}@{version}").into();
    let wrong =
        |e: wasmtime::Error| PluginError::WrongWorld { plugin: label.to_string(), kind, reason: format!("{e:#}") };
    let pre = runtime.linker().instantiate_pre(&component).map_err(wrong)?;
    let pre = wrap(pre).map_err(wrong)?;
    Ok(Arc::new(TextPlugin {
        name: name.into(),
        version: version.into(),
        label,
        pre,
        runtime: runtime.clone(),
        config: Arc::new(config),
        manifest,
    }))
}

impl PostprocessorPlugin {
    pub fn load(
        runtime: &Arc<PluginRuntime>,
        path: &Path,
        name: &str,
        version: &str,
        config: HashMap<String, String>,
    ) -> Result<Arc<Self>, PluginError> {
        compile(runtime, path, name, version, PluginKind::Postprocessor, config, PostprocessorPluginPre::new)
    }

    pub fn process(&self, input: &Transcript, options: &SessionOptions) -> Result<Transcript, PluginError> {
        let mut store = self.store()?;
        let b = self.pre.instantiate(&mut store).map_err(|e| PluginError::from_call(&self.label, e))?;
        let out = b.kiki_plugin_postprocessor().call_process(&mut store, input, options);
        store.data_mut().drain_stderr();
        match out.map_err(|e| PluginError::from_call(&self.label, e))? {
            Ok(t) => Ok(t),
            Err(e) => Err(PluginError::Returned { plugin: self.label.to_string(), reason: error_text(e) }),
        }
    }
}

/// Most destinations one result may fan out to.
const MAX_ROUTES: usize = 1024;

impl RouterPlugin {
    pub fn load(
        runtime: &Arc<PluginRuntime>,
        path: &Path,
        name: &str,
        version: &str,
        config: HashMap<String, String>,
    ) -> Result<Arc<Self>, PluginError> {
        compile(runtime, path, name, version, PluginKind::Router, config, RouterPluginPre::new)
    }

    pub fn route(
        &self,
        result: &Transcript,
        options: &SessionOptions,
        owner_backlog: u32,
        room_members: Vec<String>,
    ) -> Result<Vec<Route>, PluginError> {
        let mut store = self.store()?;
        let b = self.pre.instantiate(&mut store).map_err(|e| PluginError::from_call(&self.label, e))?;
        let ctx = RouteContext { owner_backlog, room_members };
        let out = b.kiki_plugin_router().call_route(&mut store, result, options, &ctx);
        store.data_mut().drain_stderr();
        let dests = out.map_err(|e| PluginError::from_call(&self.label, e))?;
        if dests.len() > MAX_ROUTES {
            return Err(PluginError::Returned {
                plugin: self.label.to_string(),
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

fn error_text(e: types::PluginError) -> String {
    match e {
        types::PluginError::InvalidConfig(m) => format!("invalid config: {m}"),
        types::PluginError::Failed(m) => m,
    }
}
