//! Plugin administration: list, upload, activate and roll back segmenter versions, and a
//! watcher that activates a newer version dropped into the plugin directory. A version is
//! compiled and self-tested in the background before the atomic swap; new sessions take it at
//! once, live sessions at their next segment boundary.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Scope;
use crate::plugins::{SegmenterPlugin, registry};
use crate::shutdown::Shutdown;

/// Versions swapped out, newest last, for rollback.
#[derive(Default)]
pub struct History {
    previous: Mutex<Vec<Arc<SegmenterPlugin>>>,
    /// Files that failed to compile or self-test, not retried by the watcher.
    rejected: Mutex<Vec<String>>,
}

/// Files the watcher has already considered; only files that appear later are activated, so
/// a rollback is not undone by the newer file still lying in the directory.
fn listing(dir: &Path) -> std::collections::HashSet<String> {
    registry::scan(dir).map(|v| v.iter().map(registry::PluginFile::label).collect()).unwrap_or_default()
}

#[derive(Serialize)]
struct Listing {
    active: ActiveInfo,
    previous: Vec<String>,
    files: Vec<String>,
    rejected: Vec<String>,
}

#[derive(Serialize)]
struct ActiveInfo {
    segmenter: String,
}

#[derive(Deserialize)]
pub struct Which {
    name: String,
    version: String,
}

fn fail(code: StatusCode, msg: String) -> Response {
    (code, Json(serde_json::json!({ "error": msg }))).into_response()
}

pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(denied) = super::authorize(&state, &headers, None, Scope::Admin) {
        return denied.into_response();
    }
    let files = registry::scan(&state.cfg.plugin_dir())
        .map(|v| v.iter().map(registry::PluginFile::label).collect())
        .unwrap_or_default();
    let previous = state.history.previous.lock().map(|p| p.iter().map(|s| s.label().to_string()).collect());
    let rejected = state.history.rejected.lock().map(|r| r.clone());
    Json(Listing {
        active: ActiveInfo { segmenter: state.segmenter.load().label().to_string() },
        previous: previous.unwrap_or_default(),
        files,
        rejected: rejected.unwrap_or_default(),
    })
    .into_response()
}

/// `POST /admin/plugins/segmenter/activate?name=N&version=V`
pub async fn activate(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(w): Query<Which>) -> Response {
    if let Err(denied) = super::authorize(&state, &headers, None, Scope::Admin) {
        return denied.into_response();
    }
    let path = state.cfg.plugin_dir().join(format!("{}@{}.wasm", w.name, w.version));
    if !path.exists() {
        return fail(StatusCode::NOT_FOUND, format!("{} not found", path.display()));
    }
    match swap_in(&state, &path, &w.name, &w.version).await {
        Ok(label) => Json(serde_json::json!({ "active": label })).into_response(),
        Err(e) => fail(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

/// `POST /admin/plugins/segmenter/rollback`: back to the version active before the last swap.
pub async fn rollback(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(denied) = super::authorize(&state, &headers, None, Scope::Admin) {
        return denied.into_response();
    }
    let prev = state.history.previous.lock().ok().and_then(|mut p| p.pop());
    match prev {
        Some(p) => {
            let label = p.label().to_string();
            state.segmenter.store(p);
            tracing::info!(plugin = %label, "segmenter rolled back");
            Json(serde_json::json!({ "active": label })).into_response()
        }
        None => fail(StatusCode::CONFLICT, "no earlier version to roll back to".into()),
    }
}

/// `PUT /admin/plugins/files/NAME@VERSION.wasm` with the component as the body: stored in the
/// plugin directory after it compiles and passes the self-test (it is not activated).
pub async fn upload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    UrlPath(file): UrlPath<String>,
    body: Bytes,
) -> Response {
    if let Err(denied) = super::authorize(&state, &headers, None, Scope::Admin) {
        return denied.into_response();
    }
    let Some(parsed) = registry::parse_file_name(Path::new(&file)).filter(|_| !file.contains('/')) else {
        return fail(StatusCode::BAD_REQUEST, "file name must be NAME@VERSION.wasm".into());
    };
    let dir = state.cfg.plugin_dir();
    let tmp = dir.join(format!(".upload-{}", crate::ids::short()));
    if let Err(e) = std::fs::write(&tmp, &body) {
        return fail(StatusCode::INTERNAL_SERVER_ERROR, format!("writing {}: {e}", tmp.display()));
    }
    let runtime = state.segmenter.load().runtime().clone();
    let (name, version, t) = (parsed.name.clone(), parsed.version.clone(), tmp.clone());
    let checked = tokio::task::spawn_blocking(move || {
        let p = SegmenterPlugin::load(&runtime, &t, &name, &version)?;
        p.self_test()
    })
    .await;
    match checked {
        Ok(Ok(_)) => match std::fs::rename(&tmp, dir.join(&file)) {
            Ok(()) => (StatusCode::CREATED, Json(serde_json::json!({ "stored": file }))).into_response(),
            Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Ok(Err(e)) => {
            let _ = std::fs::remove_file(&tmp);
            fail(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// Compiles and self-tests a version off the async threads, then swaps it in atomically.
pub async fn swap_in(state: &Arc<AppState>, path: &Path, name: &str, version: &str) -> Result<String, String> {
    let runtime = state.segmenter.load().runtime().clone();
    let (p, n, v) = (path.to_path_buf(), name.to_string(), version.to_string());
    let plugin = tokio::task::spawn_blocking(move || {
        let plugin = SegmenterPlugin::load(&runtime, &p, &n, &v)?;
        plugin.self_test()?;
        Ok::<_, crate::plugins::PluginError>(plugin)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| {
        state.metrics.plugin_errors.inc();
        if let Ok(mut r) = state.history.rejected.lock() {
            r.push(format!("{name}@{version}"));
        }
        e.to_string()
    })?;
    let label = plugin.label().to_string();
    let old = state.segmenter.swap(plugin);
    if let Ok(mut prev) = state.history.previous.lock() {
        prev.push(old);
    }
    tracing::info!(plugin = %label, "segmenter activated");
    Ok(label)
}

/// Activates a newer version of the active segmenter's name when one appears in the directory.
pub async fn watch(state: Arc<AppState>, every: Duration, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(every);
    let mut seen = listing(&state.cfg.plugin_dir());
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let active = state.segmenter.load_full();
        let Ok(Some(newest)) = registry::newest(&state.cfg.plugin_dir(), &active.name) else { continue };
        let label = newest.label();
        let rejected = state.history.rejected.lock().map(|r| r.contains(&label)).unwrap_or(true);
        if rejected || seen.contains(&label) || !registry::is_newer(&newest.version, &active.version) {
            continue;
        }
        seen.insert(label.clone());
        if let Err(e) = swap_in(&state, &newest.path, &newest.name, &newest.version).await {
            tracing::warn!(plugin = %label, "new version rejected: {e}");
        }
    }
}
