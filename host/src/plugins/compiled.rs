//! A compiled plugin version of any kind: its manifest checked, its component compiled and
//! linked for its kind's world (the `InstancePre` that makes each instance cheap), with the
//! operator's config it serves through `host.config`. One type for every kind; what differs
//! (the world, the self-test, the calls) is the kind's.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::postprocessor::PostprocessorPluginPre;
use super::bindings::router::RouterPluginPre;
use super::bindings::segmenter::SegmenterPluginPre;
use super::bindings::segmenter::kiki::plugin::types;
use super::host::HostState;
use super::limits::FUEL_PER_INPUT_BYTE;
use super::manifest::Manifest;
use super::runtime::{PluginError, PluginKind, PluginRuntime};

/// A plugin kind's world, as the host links it.
pub trait World: Sized + Send + Sync + 'static {
    const KIND: PluginKind;
    /// Checks that the component exports this world and imports only what the host offers.
    fn link(pre: InstancePre<HostState>) -> wasmtime::Result<Self>;
    /// Runs a fresh instance on built-in input; a version that fails it never goes live.
    fn self_test(plugin: &Compiled<Self>) -> Result<(), PluginError>;
}

pub struct Compiled<W> {
    pub name: String,
    pub version: String,
    label: Arc<str>,
    pub(super) pre: W,
    runtime: Arc<PluginRuntime>,
    /// Operator config for this plugin (`[plugins.config.NAME]`), served by `host.config`.
    config: Arc<HashMap<String, String>>,
    pub manifest: Option<Manifest>,
}

impl<W: World> Compiled<W> {
    /// Compiles and links a component; fails if it does not export the kind's world or its
    /// manifest (when there is one) disagrees with it or with `config`.
    pub fn load(
        runtime: &Arc<PluginRuntime>,
        path: &Path,
        name: &str,
        version: &str,
        config: HashMap<String, String>,
    ) -> Result<Arc<Self>, PluginError> {
        let manifest = PluginRuntime::manifest(path, name, version, W::KIND, &config)?;
        let component = runtime.compile(path)?;
        let label: Arc<str> = format!("{name}@{version}").into();
        let wrong = |e: wasmtime::Error| PluginError::WrongWorld {
            plugin: label.to_string(),
            kind: W::KIND,
            reason: format!("{e:#}"),
        };
        let pre = runtime.linker().instantiate_pre(&component).map_err(wrong)?;
        let pre = W::link(pre).map_err(wrong)?;
        Ok(Arc::new(Self {
            name: name.into(),
            version: version.into(),
            label,
            pre,
            runtime: runtime.clone(),
            config: Arc::new(config),
            manifest,
        }))
    }
}

impl<W> Compiled<W> {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    /// A fresh store within the sandbox's limits, with one call's fuel and
    /// [`FUEL_PER_INPUT_BYTE`] for each of the `input_bytes` the call is given.
    pub(super) fn store(&self, input_bytes: usize) -> Result<Store<HostState>, PluginError> {
        let limits = self.runtime.limits();
        let state = HostState::new(self.label.clone(), self.config.clone(), limits.store_limits());
        let mut store = self.runtime.new_store(state);
        let fuel = limits.fuel_per_call.saturating_add(FUEL_PER_INPUT_BYTE.saturating_mul(input_bytes as u64));
        store.set_fuel(fuel).map_err(|e| PluginError::Engine(e.to_string()))?;
        Ok(store)
    }

    /// A plugin's own error, as the host reports it.
    pub(super) fn returned(&self, e: types::PluginError) -> PluginError {
        let reason = match e {
            types::PluginError::InvalidConfig(m) => format!("invalid config: {m}"),
            types::PluginError::Failed(m) => m,
        };
        PluginError::Returned { plugin: self.label.to_string(), reason }
    }
}

/// Each kind's world: its bindings' `InstancePre`, linked by the bindings' own `new`, and
/// self-tested by the kind's `self_test` (segmenter.rs, text.rs).
macro_rules! world {
    ($($pre:ident => $kind:ident),* $(,)?) => {$(
        impl World for $pre<HostState> {
            const KIND: PluginKind = PluginKind::$kind;
            fn link(pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
                Self::new(pre)
            }
            fn self_test(plugin: &Compiled<Self>) -> Result<(), PluginError> {
                plugin.self_test().map(drop)
            }
        }
    )*};
}

world! {
    SegmenterPluginPre => Segmenter,
    PostprocessorPluginPre => Postprocessor,
    RouterPluginPre => Router,
}
