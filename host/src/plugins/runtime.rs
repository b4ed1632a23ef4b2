//! The wasmtime engine, narrowed to what Kiki needs: component model, fuel, pooling.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use super::Limits;
use super::bindings::segmenter as seg_bindings;
use super::host::HostState;
use super::manifest::Manifest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Segmenter,
    Postprocessor,
    Router,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [PluginKind::Segmenter, PluginKind::Postprocessor, PluginKind::Router];

    /// Its name in manifests, the admin API, the plugin record and session options.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Segmenter => "segmenter",
            PluginKind::Postprocessor => "postprocessor",
            PluginKind::Router => "router",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PluginKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("no plugin kind {s:?}: segmenter, postprocessor or router"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("plugin {plugin} is not a {kind} plugin: {reason}")]
    WrongWorld { plugin: String, kind: PluginKind, reason: String },
    #[error("plugin {plugin} trapped: {reason}")]
    Trap { plugin: String, reason: String },
    #[error("plugin {plugin} ran out of fuel (a loop that does not end?)")]
    OutOfFuel { plugin: String },
    #[error("plugin {plugin} returned an error: {reason}")]
    Returned { plugin: String, reason: String },
    /// The plugin refused the options it was given (its `invalid-config` error).
    #[error("plugin {plugin}: invalid config: {reason}")]
    InvalidConfig { plugin: String, reason: String },
    #[error("wasmtime: {0}")]
    Engine(String),
    #[error("plugin {plugin}: {reason}")]
    Manifest { plugin: String, reason: String },
    /// Every slot of the instance pool is taken (sessions at the process's limit): retryable.
    #[error("plugin {plugin}: no free instance slot ({reason}); retry shortly")]
    PoolFull { plugin: String, reason: String },
}

impl PluginError {
    /// Sorts a call failure: fuel exhaustion and traps are distinct so that operators see
    /// which one happened; anything else (e.g. a memory-limit failure, which is not a `Trap`)
    /// is still reported with its full chain.
    pub fn from_call(plugin: &str, err: wasmtime::Error) -> Self {
        if let Some(full) = err.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            return PluginError::PoolFull { plugin: plugin.to_string(), reason: full.to_string() };
        }
        match err.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::OutOfFuel) => PluginError::OutOfFuel { plugin: plugin.to_string() },
            _ => PluginError::Trap { plugin: plugin.to_string(), reason: format!("{err:#}") },
        }
    }
}

/// One wasmtime engine and linker shared by every plugin of the process (every world imports
/// the same `host` and `types`, so one linker instantiates them all).
pub struct PluginRuntime {
    engine: Engine,
    limits: Limits,
    linker: Linker<HostState>,
}

impl PluginRuntime {
    pub fn new(limits: Limits) -> Result<Arc<Self>, PluginError> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true);
        cfg.consume_fuel(true);
        // Small reservations: on-demand instances would each reserve ~4 GiB of address space;
        // with pooling and a bounded reservation thousands of live sessions fit.
        let mut pool = PoolingAllocationConfig::default();
        // A Rust component on wasip2 holds 3 core instances (its own and the WASI adapter's);
        // 4 per component leaves room.
        pool.total_component_instances(limits.max_instances);
        pool.total_core_instances(limits.max_instances * 4);
        pool.total_memories(limits.max_instances * 4);
        pool.total_tables(limits.max_instances * 4);
        pool.max_memory_size(limits.max_memory_bytes);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        cfg.memory_reservation(limits.max_memory_bytes as u64);
        cfg.memory_guard_size(64 * 1024);
        cfg.memory_reservation_for_growth(0);
        // Plugin code in `perf` profiles: wasmtime writes /tmp/perf-PID.map for `perf report`.
        if std::env::var_os("KIKI_PLUGIN_PERFMAP").is_some_and(|v| v == "1") {
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&cfg).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        // Streams and polls that never need a Tokio runtime (see wasi_io.rs for why).
        linker.allow_shadowing(true);
        super::wasi_io::add_to_linker(&mut linker, |s: &mut HostState| super::wasi_io::SyncIo(s.table()))
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        linker.allow_shadowing(false);
        seg_bindings::SegmenterPlugin::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        Ok(Arc::new(Self { engine, limits, linker }))
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a component from a file. Slow (tens of ms): call from a blocking thread.
    pub fn compile(&self, path: &Path) -> Result<Component, PluginError> {
        let bytes = std::fs::read(path)
            .map_err(|e| PluginError::Load { path: path.display().to_string(), reason: e.to_string() })?;
        Component::new(&self.engine, &bytes)
            .map_err(|e| PluginError::Load { path: path.display().to_string(), reason: format!("{e:#}") })
    }

    /// The manifest beside `path`, checked: it names this file, describes a plugin of `kind`,
    /// and the operator's `config` for it fits its schema.
    pub fn manifest(
        path: &Path,
        name: &str,
        version: &str,
        kind: PluginKind,
        config: &HashMap<String, String>,
    ) -> Result<Option<Manifest>, PluginError> {
        let label = format!("{name}@{version}");
        let bad =
            |e: super::manifest::ManifestError| PluginError::Manifest { plugin: label.clone(), reason: e.to_string() };
        let Some(m) = Manifest::beside(path, name, version).map_err(bad)? else { return Ok(None) };
        m.check_kind(kind, &path.with_extension("toml").display().to_string()).map_err(bad)?;
        m.check_options(config.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(|e| PluginError::Manifest {
            plugin: label.clone(),
            reason: format!("[plugins.config.{name}]: {e}"),
        })?;
        Ok(Some(m))
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    pub(crate) fn new_store(&self, state: HostState) -> Store<HostState> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store
    }
}
