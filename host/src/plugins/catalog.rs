//! The plugins of one kind that a process runs: by name, each at one live version, with the
//! versions it replaced kept compiled for rollback.
//!
//! Sessions name the plugin they want (or get the kind's default); only names on the
//! operator's allow-list are served. A version goes live only after it compiled and passed its
//! self-test, off the async threads; the swap is one pointer store, so a reader sees the old
//! version or the new one, never half of each. Which version is live across a deployment is
//! decided by the record in Redis (`channels::plugin_record`); this type is one process's copy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use super::compiled::{Compiled, World};
use super::manifest::Manifest;
use super::registry::{self, PluginFile};
use super::runtime::{PluginError, PluginKind, PluginRuntime};

/// Compiled versions kept per name for rollback (the live one not counted).
const KEEP_PREVIOUS: usize = 4;

/// What the catalog needs of a plugin kind.
pub trait Plugin: Send + Sync + Sized + 'static {
    const KIND: PluginKind;
    fn load(
        runtime: &Arc<PluginRuntime>,
        file: &PluginFile,
        config: HashMap<String, String>,
    ) -> Result<Arc<Self>, PluginError>;
    /// Runs a fresh instance on built-in input; a version that fails it never goes live.
    fn self_test(&self) -> Result<(), PluginError>;
    fn name(&self) -> &str;
    fn version(&self) -> &str;
    fn manifest(&self) -> Option<&Manifest>;
    fn label(&self) -> String {
        format!("{}@{}", self.name(), self.version())
    }
}

impl<W: World> Plugin for Compiled<W> {
    const KIND: PluginKind = W::KIND;
    fn load(
        rt: &Arc<PluginRuntime>,
        f: &PluginFile,
        config: HashMap<String, String>,
    ) -> Result<Arc<Self>, PluginError> {
        Compiled::load(rt, &f.path, &f.name, &f.version, config)
    }
    fn self_test(&self) -> Result<(), PluginError> {
        W::self_test(self)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> &str {
        &self.version
    }
    fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{kind} `{name}` is not allowed here (allowed: {allowed})")]
    NotAllowed { kind: &'static str, name: String, allowed: String },
    #[error("no {kind} plugin {what} in {dir}")]
    NotFound { kind: &'static str, what: String, dir: String },
    #[error("no earlier version of {kind} `{name}` to roll back to")]
    NoPrevious { kind: &'static str, name: String },
    #[error("{label} was rejected earlier: {reason}")]
    Rejected { label: String, reason: String },
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("reading the plugin directory {dir}: {reason}")]
    Io { dir: String, reason: String },
}

/// A name's live version and the ones it replaced (newest last).
struct Versions<P> {
    live: Arc<P>,
    previous: Vec<Arc<P>>,
}

/// What the admin API and the dashboard show.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogInfo {
    pub kind: PluginKind,
    /// The plugin sessions get when they name none ("" for none at all).
    pub default: String,
    pub allowed: Vec<String>,
    /// name@version of each loaded name's live version, default first.
    pub live: Vec<String>,
    /// Versions kept for rollback, per name (newest last).
    pub previous: Vec<(String, Vec<String>)>,
    /// Versions that failed to compile or self-test, with why.
    pub rejected: Vec<(String, String)>,
}

pub struct Catalog<P: Plugin> {
    runtime: Arc<PluginRuntime>,
    dir: PathBuf,
    settings: HashMap<String, HashMap<String, String>>,
    allowed: Vec<String>,
    default: RwLock<String>,
    versions: RwLock<HashMap<String, Versions<P>>>,
    /// Versions the deployment's record names, loaded instead of the newest file when a name is
    /// first asked for.
    pins: RwLock<HashMap<String, String>>,
    rejected: Mutex<HashMap<String, String>>,
    /// One compile at a time: a burst of sessions naming an unloaded plugin compiles it once.
    loading: tokio::sync::Mutex<()>,
}

impl<P: Plugin> Catalog<P> {
    /// A catalog serving `default` (may be "" for a kind that is optional) and the `allowed`
    /// names from `dir`; `settings` is the operator config per plugin name.
    pub fn new(
        runtime: Arc<PluginRuntime>,
        dir: PathBuf,
        default: &str,
        allowed: &[String],
        settings: HashMap<String, HashMap<String, String>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            dir,
            settings,
            allowed: allowed.to_vec(),
            default: RwLock::new(default.to_string()),
            versions: RwLock::new(HashMap::new()),
            pins: RwLock::new(HashMap::new()),
            rejected: Mutex::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
        })
    }

    pub fn kind(&self) -> &'static str {
        P::KIND.as_str()
    }

    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn default_name(&self) -> String {
        self.default.read().map(|d| d.clone()).unwrap_or_default()
    }

    /// Whether sessions may name `name` (the default always may).
    pub fn is_allowed(&self, name: &str) -> bool {
        name == self.default_name() || self.allowed.iter().any(|a| a == name)
    }

    /// The live version of `name`, if it is loaded.
    pub fn live(&self, name: &str) -> Option<Arc<P>> {
        self.versions.read().ok()?.get(name).map(|v| v.live.clone())
    }

    /// The default plugin, if the kind has one and it is loaded.
    pub fn default_plugin(&self) -> Option<Arc<P>> {
        self.live(&self.default_name())
    }

    /// Names loaded in this process.
    pub fn loaded(&self) -> Vec<String> {
        self.versions.read().map(|v| v.keys().cloned().collect()).unwrap_or_default()
    }

    /// The plugin a session asked for (`None`: the default), loading it on first use. `Ok(None)`
    /// when the kind has no default and none was asked for.
    pub async fn get(&self, name: Option<&str>) -> Result<Option<Arc<P>>, CatalogError> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => self.default_name(),
        };
        if name.is_empty() {
            return Ok(None);
        }
        if !self.is_allowed(&name) {
            let default = self.default_name();
            let mut allowed = vec![default.clone()];
            allowed.extend(self.allowed.iter().filter(|a| **a != default).cloned());
            return Err(CatalogError::NotAllowed { kind: self.kind(), name, allowed: allowed.join(", ") });
        }
        if let Some(p) = self.live(&name) {
            return Ok(Some(p));
        }
        let _one = self.loading.lock().await;
        if let Some(p) = self.live(&name) {
            return Ok(Some(p));
        }
        let file = self.file_for(&name)?;
        let plugin = self.compile(file).await?;
        self.install(plugin.clone());
        tracing::info!(plugin = %plugin.label(), kind = self.kind(), "plugin loaded");
        Ok(Some(plugin))
    }

    /// Versions the deployment's record names for this kind (by name).
    pub fn set_pins(&self, pins: HashMap<String, String>) {
        if let Ok(mut p) = self.pins.write() {
            *p = pins;
        }
    }

    /// The pinned version of `name` when its file is here, else the newest file.
    fn file_for(&self, name: &str) -> Result<PluginFile, CatalogError> {
        let pinned = self.pins.read().ok().and_then(|p| p.get(name).cloned());
        if let Some(version) = pinned {
            let path = self.dir.join(format!("{name}@{version}.wasm"));
            if path.exists() {
                return Ok(PluginFile { name: name.into(), version, path });
            }
            tracing::warn!(plugin = name, %version, "the recorded version is not in the plugin directory; using the newest");
        }
        self.newest(name)
    }

    /// Compiles and self-tests `name@version` and makes it the live version of `name`. The
    /// version it replaces is kept for rollback. Reactivating a kept version recompiles nothing.
    pub async fn activate(&self, name: &str, version: &str) -> Result<Arc<P>, CatalogError> {
        let label = format!("{name}@{version}");
        if self.live(name).is_some_and(|p| p.version() == version) {
            return self.live(name).ok_or(CatalogError::NoPrevious { kind: self.kind(), name: name.into() });
        }
        let kept = self
            .versions
            .read()
            .ok()
            .and_then(|v| v.get(name).and_then(|v| v.previous.iter().find(|p| p.version() == version).cloned()));
        let plugin = match kept {
            Some(p) => p,
            None => {
                let path = self.dir.join(format!("{label}.wasm"));
                if !path.exists() {
                    return Err(CatalogError::NotFound {
                        kind: self.kind(),
                        what: format!("{label}.wasm"),
                        dir: self.dir.display().to_string(),
                    });
                }
                let file = PluginFile { name: name.into(), version: version.into(), path };
                let _one = self.loading.lock().await;
                self.compile(file).await?
            }
        };
        self.install(plugin.clone());
        tracing::info!(plugin = %label, kind = self.kind(), "plugin activated");
        Ok(plugin)
    }

    /// Back to the version `name` ran before its last activation.
    pub fn rollback(&self, name: &str) -> Result<Arc<P>, CatalogError> {
        let mut versions = self.versions.write().map_err(|_| self.poisoned())?;
        let v = versions.get_mut(name).ok_or(CatalogError::NoPrevious { kind: self.kind(), name: name.into() })?;
        let back = v.previous.pop().ok_or(CatalogError::NoPrevious { kind: self.kind(), name: name.into() })?;
        v.live = back.clone();
        tracing::info!(plugin = %back.label(), kind = self.kind(), "plugin rolled back");
        Ok(back)
    }

    /// Makes `name` the plugin sessions get when they name none (loading it first).
    pub async fn set_default(&self, name: &str) -> Result<(), CatalogError> {
        if !name.is_empty() && self.live(name).is_none() {
            let _one = self.loading.lock().await;
            if self.live(name).is_none() {
                let file = self.file_for(name)?;
                let plugin = self.compile(file).await?;
                self.install(plugin);
            }
        }
        if let Ok(mut d) = self.default.write() {
            *d = name.to_string();
        }
        tracing::info!(plugin = name, kind = self.kind(), "default plugin set");
        Ok(())
    }

    /// Whether `label` failed before (the watcher and the sync loop do not retry it).
    pub fn is_rejected(&self, label: &str) -> bool {
        self.rejected.lock().map(|r| r.contains_key(label)).unwrap_or(false)
    }

    /// Loaded names whose directory holds a newer version than the live one.
    pub fn newer_files(&self) -> Vec<PluginFile> {
        let mut out = Vec::new();
        for name in self.loaded() {
            let (Some(live), Ok(Some(file))) = (self.live(&name), registry::newest_of(&self.dir, &name, P::KIND))
            else {
                continue;
            };
            if registry::is_newer(&file.version, live.version()) && !self.is_rejected(&file.label()) {
                out.push(file);
            }
        }
        out
    }

    pub fn info(&self) -> CatalogInfo {
        let default = self.default_name();
        let versions = self.versions.read();
        let mut live: Vec<String> = Vec::new();
        let mut previous = Vec::new();
        if let Ok(v) = &versions {
            let mut names: Vec<&String> = v.keys().collect();
            names.sort_by_key(|n| (**n != default, (*n).clone()));
            for n in names {
                live.push(v[n].live.label());
                previous.push((n.clone(), v[n].previous.iter().map(|p| p.label()).collect()));
            }
        }
        let rejected = self.rejected.lock().map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        CatalogInfo {
            kind: P::KIND,
            default,
            allowed: self.allowed.clone(),
            live,
            previous,
            rejected: rejected.unwrap_or_default(),
        }
    }

    fn newest(&self, name: &str) -> Result<PluginFile, CatalogError> {
        registry::newest_of(&self.dir, name, P::KIND)
            .map_err(|e| CatalogError::Io { dir: self.dir.display().to_string(), reason: e.to_string() })?
            .ok_or_else(|| CatalogError::NotFound {
                kind: self.kind(),
                what: format!("{name}@*.wasm"),
                dir: self.dir.display().to_string(),
            })
    }

    /// Compiles and self-tests on a blocking thread; a failure is remembered.
    async fn compile(&self, file: PluginFile) -> Result<Arc<P>, CatalogError> {
        let label = file.label();
        if let Some(reason) = self.rejected.lock().ok().and_then(|r| r.get(&label).cloned()) {
            return Err(CatalogError::Rejected { label, reason });
        }
        let config = self.settings.get(&file.name).cloned().unwrap_or_default();
        validate::<P>(&self.runtime, file, config).await.map_err(|e| {
            if let Ok(mut r) = self.rejected.lock() {
                r.insert(label.clone(), e.to_string());
            }
            tracing::warn!(plugin = %label, "plugin rejected: {e}");
            CatalogError::Plugin(e)
        })
    }

    /// Records a failure seen elsewhere (e.g. by the admin API's check), so that it is not retried.
    pub fn reject(&self, label: &str, reason: &str) {
        if let Ok(mut r) = self.rejected.lock() {
            r.insert(label.to_string(), reason.to_string());
        }
    }

    fn install(&self, plugin: Arc<P>) {
        let Ok(mut versions) = self.versions.write() else { return };
        let name = plugin.name().to_string();
        match versions.get_mut(&name) {
            Some(v) => {
                let old = std::mem::replace(&mut v.live, plugin);
                v.previous.retain(|p| p.version() != v.live.version() && p.version() != old.version());
                v.previous.push(old);
                if v.previous.len() > KEEP_PREVIOUS {
                    v.previous.remove(0);
                }
            }
            None => {
                versions.insert(name, Versions { live: plugin, previous: Vec::new() });
            }
        }
    }

    fn poisoned(&self) -> CatalogError {
        CatalogError::Plugin(PluginError::Engine("plugin catalog lock poisoned".into()))
    }
}

/// Compiles `file` as a `P` and runs its self-test, on a blocking thread (compiling takes tens
/// of milliseconds).
pub async fn validate<P: Plugin>(
    runtime: &Arc<PluginRuntime>,
    file: PluginFile,
    config: HashMap<String, String>,
) -> Result<Arc<P>, PluginError> {
    let runtime = runtime.clone();
    tokio::task::spawn_blocking(move || {
        let p = P::load(&runtime, &file, config)?;
        p.self_test()?;
        Ok::<_, PluginError>(p)
    })
    .await
    .map_err(|e| PluginError::Engine(format!("compile task: {e}")))?
}

/// Names of plugins of every kind found in `dir`, with their manifests (for listings).
pub fn files(dir: &Path) -> Vec<(String, Option<Manifest>)> {
    registry::scan(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let m = Manifest::beside(&f.path, &f.name, &f.version).ok().flatten();
            (f.label(), m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::SegmenterPlugin;

    #[test]
    fn rejects_names_off_the_allow_list() {
        let rt = PluginRuntime::new(super::super::Limits { max_instances: 8, ..Default::default() }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cat: Arc<Catalog<SegmenterPlugin>> =
            Catalog::new(rt, dir.path().to_path_buf(), "vad", &["echo".to_string()], HashMap::new());
        assert!(cat.is_allowed("vad") && cat.is_allowed("echo") && !cat.is_allowed("other"));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let err = rt.block_on(cat.get(Some("other"))).err().unwrap().to_string();
        assert!(err.contains("not allowed") && err.contains("vad, echo"), "{err}");
        let err = rt.block_on(cat.get(None)).err().unwrap().to_string();
        assert!(err.contains("no segmenter plugin vad@*.wasm"), "{err}");
        assert!(cat.rollback("vad").is_err());
    }
}
