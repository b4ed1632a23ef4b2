//! Keeps one process's [`Catalog`] in line with the deployment's record in Redis, and turns a
//! newer file dropped into the plugin directory into an activation for the whole deployment.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::catalog::{Catalog, CatalogError, Plugin, validate};
use super::registry;
use super::runtime::PluginRuntime;
use crate::channels::{ChannelError, Conn, Keys, plugin_record};
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Redis(#[from] ChannelError),
    #[error("{0}")]
    File(String),
}

/// The kind as the record and the admin API name it.
pub fn kind_key<P: Plugin>() -> &'static str {
    P::KIND.as_str()
}

/// Makes `name@version` live here and records it for the deployment (its component stored in
/// Redis for nodes that lack the file). Fails, recording nothing, if it does not compile or
/// fails its self-test.
pub async fn activate<P: Plugin>(
    catalog: &Catalog<P>,
    conn: &mut Conn,
    keys: &Keys,
    name: &str,
    version: &str,
) -> Result<Arc<P>, SyncError> {
    let label = format!("{name}@{version}");
    fetch_if_missing(catalog.dir(), conn, keys, &label).await?;
    let replacing = catalog.live(name).map(|p| p.version().to_string());
    let plugin = catalog.activate(name, version).await?;
    store_file(catalog.dir(), conn, keys, &label).await?;
    plugin_record::activate(conn, keys, kind_key::<P>(), name, version, replacing.as_deref()).await?;
    Ok(plugin)
}

/// Rolls `name` back to the version it ran before, here and in the record.
pub async fn rollback<P: Plugin>(
    catalog: &Catalog<P>,
    conn: &mut Conn,
    keys: &Keys,
    name: &str,
) -> Result<Arc<P>, SyncError> {
    let recorded = plugin_record::previous(conn, keys, kind_key::<P>(), name).await?;
    let Some(version) = recorded.last() else {
        // Nothing recorded (e.g. only local activations): the local stack decides.
        return Ok(catalog.rollback(name)?);
    };
    // The record moves back only once the earlier version runs here.
    fetch_if_missing(catalog.dir(), conn, keys, &format!("{name}@{version}")).await?;
    let plugin = catalog.activate(name, version).await?;
    plugin_record::rollback(conn, keys, kind_key::<P>(), name).await?;
    Ok(plugin)
}

/// Makes `name` this kind's default, here and in the record.
pub async fn set_default<P: Plugin>(
    catalog: &Catalog<P>,
    conn: &mut Conn,
    keys: &Keys,
    name: &str,
) -> Result<(), SyncError> {
    catalog.set_default(name).await?;
    plugin_record::set_default(conn, keys, kind_key::<P>(), name).await?;
    Ok(())
}

/// What checks a plugin version here before it is recorded for others: the runtime, the
/// plugin directory and the operator's settings for the plugin.
pub struct Checker<'a> {
    pub runtime: &'a Arc<PluginRuntime>,
    pub dir: &'a Path,
    pub settings: HashMap<String, String>,
}

/// For a kind this process does not run (a gateway, for the workers' post-processors and
/// routers): checks `name@version` here (compile, manifest, self-test) and records it, so the
/// processes that run it follow within their watch interval. `running` is the version they run
/// now, as they report it (for rollback when the record has none yet). Returns the label.
pub async fn activate_elsewhere<P: Plugin>(
    checker: Checker<'_>,
    conn: &mut Conn,
    keys: &Keys,
    (name, version): (&str, &str),
    running: Option<&str>,
) -> Result<String, SyncError> {
    let Checker { runtime, dir, settings } = checker;
    let label = format!("{name}@{version}");
    fetch_if_missing(dir, conn, keys, &label).await?;
    let path = dir.join(format!("{label}.wasm"));
    if !path.exists() {
        return Err(SyncError::File(format!("{label}.wasm is neither in {} nor stored in Redis", dir.display())));
    }
    let file = registry::PluginFile { name: name.into(), version: version.into(), path };
    validate::<P>(runtime, file, settings).await.map_err(CatalogError::Plugin)?;
    store_file(dir, conn, keys, &label).await?;
    plugin_record::activate(conn, keys, kind_key::<P>(), name, version, running).await?;
    Ok(label)
}

/// Reads the record and brings the catalog in line: the default, and the live version of every
/// name loaded here (a version that failed here before is not retried).
pub async fn apply<P: Plugin>(catalog: &Catalog<P>, conn: &mut Conn, keys: &Keys) -> Result<(), SyncError> {
    let record = plugin_record::read(conn, keys).await?;
    let kind = kind_key::<P>();
    let pins: HashMap<String, String> = record
        .active
        .iter()
        .filter(|((k, _), _)| k == kind)
        .map(|((_, name), version)| (name.clone(), version.clone()))
        .collect();
    for (name, version) in &pins {
        fetch_if_missing(catalog.dir(), conn, keys, &format!("{name}@{version}")).await.ok();
    }
    catalog.set_pins(pins.clone());
    if let Some(default) = record.defaults.get(kind)
        && *default != catalog.default_name()
        && let Err(e) = catalog.set_default(default).await
    {
        tracing::warn!(kind, plugin = %default, "cannot follow the recorded default: {e}");
    }
    for name in catalog.loaded() {
        let (Some(version), Some(live)) = (pins.get(&name), catalog.live(&name)) else { continue };
        let label = format!("{name}@{version}");
        if live.version() == version || catalog.is_rejected(&label) {
            continue;
        }
        if let Err(e) = catalog.activate(&name, version).await {
            tracing::warn!(plugin = %label, "cannot follow the recorded version: {e}");
        }
    }
    Ok(())
}

/// Every `every`: files that appeared in the directory since the last look and are newer than a
/// live version go live for the deployment; then the record is applied.
pub async fn run<P: Plugin>(catalog: Arc<Catalog<P>>, mut conn: Conn, keys: Keys, every: Duration, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = listing(catalog.dir());
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        for file in catalog.newer_files() {
            if still_being_written(&file.path) {
                continue;
            }
            let label = file.label();
            if !seen.insert(label.clone()) || in_store(&mut conn, &keys, &label).await {
                // Files uploaded through the admin API, or fetched from another node, are in
                // the store already: they go live only when activated.
                continue;
            }
            match activate(&catalog, &mut conn, &keys, &file.name, &file.version).await {
                Ok(_) => tracing::info!(plugin = %label, "new file in the plugin directory went live"),
                Err(e) => tracing::warn!(plugin = %label, "new file in the plugin directory rejected: {e}"),
            }
        }
        if let Err(e) = apply(&catalog, &mut conn, &keys).await {
            tracing::debug!(kind = catalog.kind(), "plugin record not applied: {e}");
        }
    }
}

/// Modified within the last half second: maybe a copy in progress, so it is looked at on a
/// later tick rather than compiled half-written (and rejected for good).
fn still_being_written(path: &Path) -> bool {
    let age = path.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    age.is_some_and(|a| a < Duration::from_millis(500))
}

/// Files present now: only files that appear later are activated by the watcher, so that a
/// rollback is not undone by the newer file still lying in the directory.
fn listing(dir: &Path) -> HashSet<String> {
    registry::scan(dir).map(|v| v.iter().map(registry::PluginFile::label).collect()).unwrap_or_default()
}

async fn in_store(conn: &mut Conn, keys: &Keys, label: &str) -> bool {
    plugin_record::has_file(conn, keys, label).await.unwrap_or(false)
}

/// Stores the component (and manifest) in Redis unless it is there already.
pub(crate) async fn store_file(dir: &Path, conn: &mut Conn, keys: &Keys, label: &str) -> Result<(), SyncError> {
    if in_store(conn, keys, label).await {
        return Ok(());
    }
    let wasm =
        std::fs::read(dir.join(format!("{label}.wasm"))).map_err(|e| SyncError::File(format!("{label}: {e}")))?;
    let manifest = std::fs::read_to_string(dir.join(format!("{label}.toml"))).ok();
    plugin_record::put_file(conn, keys, label, &wasm, manifest.as_deref()).await?;
    Ok(())
}

/// Writes a component another node stored into this node's plugin directory, if missing.
pub(crate) async fn fetch_if_missing(dir: &Path, conn: &mut Conn, keys: &Keys, label: &str) -> Result<(), SyncError> {
    let path = dir.join(format!("{label}.wasm"));
    if path.exists() {
        return Ok(());
    }
    let Some((wasm, manifest)) = plugin_record::get_file(conn, keys, label).await? else { return Ok(()) };
    let write = |ext: &str, bytes: &[u8]| {
        let tmp = dir.join(format!(".fetch-{label}.{ext}"));
        std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, dir.join(format!("{label}.{ext}"))))
    };
    if let Some(m) = manifest {
        write("toml", m.as_bytes()).map_err(|e| SyncError::File(format!("writing {label}.toml: {e}")))?;
    }
    write("wasm", &wasm).map_err(|e| SyncError::File(format!("writing {label}.wasm: {e}")))?;
    tracing::info!(plugin = label, "plugin fetched from the deployment's store");
    Ok(())
}
