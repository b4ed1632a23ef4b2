//! Plugin administration for the whole deployment, through any gateway: list, upload, activate
//! a version, roll back, and set each kind's default. A version is compiled and self-tested here
//! before anything is recorded; the record in Redis then carries the change to every process
//! (this gateway's segmenters at once, the workers' post-processors and routers within their
//! watch interval). New sessions take a new version at once, live sessions at their next
//! segment boundary.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Scope;
use crate::channels::{plugin_record, workers};
use crate::plugins::catalog::{self, CatalogInfo, validate};
use crate::plugins::limits::MAX_PLUGIN_FILE_BYTES;
use crate::plugins::manifest::Manifest;
use crate::plugins::sync::{self, SyncError};
use crate::plugins::{Plugin, PluginKind, PostprocessorPlugin, RouterPlugin, SegmenterPlugin, registry};

#[derive(Serialize)]
struct Listing {
    /// This gateway's segmenters: default, live versions, rollback stacks, rejected versions.
    segmenter: CatalogInfo,
    /// The deployment's record: `KIND/NAME` → live version, and each kind's default.
    deployment: Deployment,
    /// Plugin files in this gateway's directory, with what their manifests say.
    files: Vec<FileInfo>,
}

#[derive(Serialize)]
struct Deployment {
    active: std::collections::BTreeMap<String, String>,
    defaults: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct FileInfo {
    file: String,
    manifest: Option<Manifest>,
}

#[derive(Deserialize)]
pub struct Which {
    name: Option<String>,
    version: Option<String>,
}

impl Which {
    /// A 400 answer when a name or version given is not one a plugin file can have.
    fn check(&self) -> Result<(), Box<Response>> {
        for (what, v) in [("name", &self.name), ("version", &self.version)] {
            if let Some(v) = v
                && !registry::valid_part(v)
            {
                return Err(Box::new(fail(
                    StatusCode::BAD_REQUEST,
                    format!("{what} `{v}` is not valid: use letters, digits, `.`, `_` and `-`, not first `.`"),
                )));
            }
        }
        Ok(())
    }
}

/// An error answer. The server's own paths stay in its log: the caller gets file names only.
fn fail(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    let msg = msg.to_string();
    let shown = without_paths(&msg);
    if shown != msg {
        tracing::info!("admin request refused: {msg}");
    }
    (code, Json(serde_json::json!({ "error": shown }))).into_response()
}

/// `text` with every absolute path (a `/` run of two or more components) cut to its last one.
fn without_paths(text: &str) -> String {
    let path_char = |c: char| c.is_alphanumeric() || "._-@+/".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('/') {
        let starts_path = rest[..i].chars().next_back().is_none_or(|c| !path_char(c));
        out.push_str(&rest[..i]);
        let run = rest[i..].find(|c: char| !path_char(c)).map_or(&rest[i..], |end| &rest[i..i + end]);
        if starts_path && run.trim_end_matches('/').matches('/').count() >= 2 {
            out.push_str(run.trim_end_matches('/').rsplit('/').next().unwrap_or_default());
        } else {
            out.push_str(run);
        }
        rest = &rest[i + run.len()..];
    }
    out.push_str(rest);
    out
}

/// The kind named in the path; a 404 answer for anything else.
fn kind_of(kind: &str) -> Result<PluginKind, Box<Response>> {
    kind.parse().map_err(|e| Box::new(fail(StatusCode::NOT_FOUND, e)))
}

fn sync_failure(e: SyncError) -> Response {
    match e {
        SyncError::Redis(e) => fail(StatusCode::SERVICE_UNAVAILABLE, e),
        SyncError::File(e) => fail(StatusCode::NOT_FOUND, e),
        SyncError::Catalog(e) => fail(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(denied) = super::authorize(&state, &headers, None, Scope::Admin) {
        return denied.into_response();
    }
    let mut conn = state.redis.clone();
    let record = match plugin_record::read(&mut conn, &state.keys).await {
        Ok(r) => r,
        Err(e) => return fail(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    let files = catalog::files(&state.cfg.plugin_dir())
        .into_iter()
        .map(|(file, manifest)| FileInfo { file, manifest })
        .collect();
    Json(Listing {
        segmenter: state.segmenters.info(),
        deployment: Deployment {
            active: record.active.into_iter().map(|((k, n), v)| (format!("{k}/{n}"), v)).collect(),
            defaults: record.defaults.into_iter().collect(),
        },
        files,
    })
    .into_response()
}

/// `POST /admin/plugins/{kind}/activate?name=N&version=V`
pub async fn activate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    UrlPath(kind): UrlPath<String>,
    Query(w): Query<Which>,
) -> Response {
    if let Err(denied) = super::authorize(&state, &headers, None, Scope::Admin) {
        return denied.into_response();
    }
    if let Err(bad) = w.check() {
        return *bad;
    }
    let (Some(name), Some(version)) = (w.name, w.version) else {
        return fail(StatusCode::BAD_REQUEST, "name and version are required");
    };
    let mut conn = state.redis.clone();
    let result = match kind_of(&kind) {
        Err(r) => return *r,
        Ok(PluginKind::Segmenter) => sync::activate(&state.segmenters, &mut conn, &state.keys, &name, &version)
            .await
            .map(|p| p.label().to_string()),
        Ok(PluginKind::Postprocessor) => elsewhere::<PostprocessorPlugin>(&state, &name, &version).await,
        Ok(PluginKind::Router) => elsewhere::<RouterPlugin>(&state, &name, &version).await,
    };
    match result {
        Ok(label) => Json(serde_json::json!({ "active": label })).into_response(),
        Err(e) => {
            state.metrics.plugin_errors.inc();
            sync_failure(e)
        }
    }
}

async fn elsewhere<P: Plugin>(state: &AppState, name: &str, version: &str) -> Result<String, SyncError> {
    let settings = state.cfg.plugins.config.get(name).cloned().unwrap_or_default();
    let mut conn = state.redis.clone();
    let rt = state.segmenters.runtime();
    // What the workers run now (the record's version, else what they report), for rollback.
    let kind = sync::kind_key::<P>();
    let recorded = plugin_record::read(&mut conn, &state.keys).await.map_err(SyncError::Redis)?;
    let running = match recorded.active_version(kind, name) {
        Some(v) => Some(v.to_string()),
        None => workers::alive_with_stats(&mut conn, &state.keys)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, _, stats)| stats)
            .flat_map(|s| s.plugins)
            .find_map(|(k, label)| {
                let (n, v) = label.split_once('@')?;
                (k == kind && n == name).then(|| v.to_string())
            }),
    };
    let dir = state.cfg.plugin_dir();
    let checker = sync::Checker { runtime: rt, dir: &dir, settings };
    sync::activate_elsewhere::<P>(checker, &mut conn, &state.keys, (name, version), running.as_deref()).await
}

/// `POST /admin/plugins/{kind}/rollback[?name=N]`: back to the version before the last
/// activation (of the kind's default when no name is given).
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    UrlPath(kind): UrlPath<String>,
    Query(w): Query<Which>,
) -> Response {
    if let Err(denied) = super::authorize(&state, &headers, None, Scope::Admin) {
        return denied.into_response();
    }
    if let Err(bad) = w.check() {
        return *bad;
    }
    let kind = match kind_of(&kind) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let mut conn = state.redis.clone();
    let name = match w.name {
        Some(n) => n,
        None => match default_name(&state, kind).await {
            Ok(n) => n,
            Err(e) => return fail(StatusCode::SERVICE_UNAVAILABLE, e),
        },
    };
    let result = match kind {
        PluginKind::Segmenter => {
            sync::rollback(&state.segmenters, &mut conn, &state.keys, &name).await.map(|p| p.label().to_string())
        }
        _ => {
            let key = sync_kind(kind);
            match plugin_record::rollback(&mut conn, &state.keys, key, &name).await {
                Ok(Some(v)) => Ok(format!("{name}@{v}")),
                Ok(None) => {
                    return fail(StatusCode::CONFLICT, format!("no earlier version of {key} `{name}` recorded"));
                }
                Err(e) => Err(SyncError::Redis(e)),
            }
        }
    };
    match result {
        Ok(label) => {
            tracing::info!(plugin = %label, "rolled back");
            Json(serde_json::json!({ "active": label })).into_response()
        }
        Err(SyncError::Catalog(e @ crate::plugins::CatalogError::NoPrevious { .. })) => fail(StatusCode::CONFLICT, e),
        Err(e) => sync_failure(e),
    }
}

/// `POST /admin/plugins/{kind}/default?name=N`: the plugin sessions get when they name none.
pub async fn set_default(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    UrlPath(kind): UrlPath<String>,
    Query(w): Query<Which>,
) -> Response {
    if let Err(denied) = super::authorize(&state, &headers, None, Scope::Admin) {
        return denied.into_response();
    }
    if let Err(bad) = w.check() {
        return *bad;
    }
    let kind = match kind_of(&kind) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let Some(name) = w.name else { return fail(StatusCode::BAD_REQUEST, "name is required") };
    let mut conn = state.redis.clone();
    let result = match kind {
        PluginKind::Segmenter => sync::set_default(&state.segmenters, &mut conn, &state.keys, &name).await,
        _ => {
            // The processes that run it load it; here it must at least exist.
            match registry::newest_of(&state.cfg.plugin_dir(), &name, kind) {
                Ok(Some(_)) => plugin_record::set_default(&mut conn, &state.keys, sync_kind(kind), &name)
                    .await
                    .map_err(SyncError::Redis),
                _ => Err(SyncError::File(format!("no {} plugin {name}@*.wasm here", sync_kind(kind)))),
            }
        }
    };
    match result {
        Ok(()) => Json(serde_json::json!({ "default": name })).into_response(),
        Err(e) => sync_failure(e),
    }
}

fn sync_kind(kind: PluginKind) -> &'static str {
    kind.as_str()
}

/// The kind's default name: the record's, else this process's (segmenter) or configuration's.
async fn default_name(state: &AppState, kind: PluginKind) -> Result<String, crate::channels::ChannelError> {
    if kind == PluginKind::Segmenter {
        return Ok(state.segmenters.default_name());
    }
    let mut conn = state.redis.clone();
    let record = plugin_record::read(&mut conn, &state.keys).await?;
    Ok(match record.defaults.get(sync_kind(kind)) {
        Some(n) => n.clone(),
        None if kind == PluginKind::Postprocessor => state.cfg.plugins.postprocessor.clone(),
        None => state.cfg.plugins.router.clone(),
    })
}

/// `PUT /admin/plugins/files/NAME@VERSION.wasm` (the component) or `.toml` (its manifest):
/// stored in the plugin directory, and in Redis for the other nodes, after it compiles and
/// passes the self-test of its kind (the manifest's, or the world it exports). Not activated.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    UrlPath(file): UrlPath<String>,
    body: axum::body::Body,
) -> Response {
    if let Err(denied) = super::authorize(&state, &headers, None, Scope::Admin) {
        return denied.into_response();
    }
    // Read only once authorised, up to the largest component the host takes (the default text
    // plugin carries 4.5 MB of grammars; a componentize-py plugin holds CPython, 18 MB).
    let body = match axum::body::to_bytes(body, MAX_PLUGIN_FILE_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a plugin file may have {MAX_PLUGIN_FILE_BYTES} bytes at most ({e})"),
            );
        }
    };
    let dir = state.cfg.plugin_dir();
    if let Some(stem) = file.strip_suffix(".toml").filter(|_| !file.contains('/')) {
        return upload_manifest(&dir, stem, &body);
    }
    let Some(parsed) = registry::parse_file_name(Path::new(&file)).filter(|_| !file.contains('/')) else {
        return fail(StatusCode::BAD_REQUEST, "file name must be NAME@VERSION.wasm or NAME@VERSION.toml");
    };
    // A version, once stored (here, or in the deployment's store by another node), is what it
    // is: rollbacks and other nodes rely on it. The same bytes again go through (and are stored
    // where they are missing).
    let mut conn = state.redis.clone();
    let stored_copy = match plugin_record::get_file(&mut conn, &state.keys, &parsed.label()).await {
        Ok(f) => f.map(|(wasm, _)| wasm),
        Err(e) => return fail(StatusCode::SERVICE_UNAVAILABLE, format!("reading the deployment's store: {e}")),
    };
    let local = std::fs::read(dir.join(&file)).ok();
    if let Some(existing) = local.as_ref().or(stored_copy.as_ref())
        && existing.as_slice() != body.as_ref()
    {
        return fail(
            StatusCode::CONFLICT,
            format!("{file} exists with other contents; versions are immutable, upload a new version"),
        );
    }
    if local.is_some() && stored_copy.is_some() {
        return (StatusCode::OK, Json(serde_json::json!({ "stored": file, "unchanged": true }))).into_response();
    }
    // Checked under its final name in a private folder, so the manifest beside it is read.
    let staging = dir.join(format!(".upload-{}", crate::ids::short()));
    let staged = staging.join(&file);
    let manifest_path = dir.join(format!("{}.toml", parsed.label()));
    let prepared = std::fs::create_dir_all(&staging).and_then(|()| std::fs::write(&staged, &body)).and_then(|()| {
        match std::fs::read(&manifest_path) {
            Ok(m) => std::fs::write(staged.with_extension("toml"), m),
            Err(_) => Ok(()),
        }
    });
    if let Err(e) = prepared {
        let _ = std::fs::remove_dir_all(&staging);
        return fail(StatusCode::INTERNAL_SERVER_ERROR, format!("writing {}: {e}", staged.display()));
    }
    let checked = check_any(&state, registry::PluginFile { path: staged.clone(), ..parsed.clone() }).await;
    // One name, one kind: a file of another kind under a name in use would be loaded in its place.
    let checked = checked.and_then(|kind| match kind_of_name(&dir, &parsed.name) {
        Some(existing) if existing != kind => {
            Err(format!("{} names a {existing} plugin here; this file is a {kind}", parsed.name))
        }
        _ => Ok(kind),
    });
    // What runs now stays recorded as live: without a record, the newest file of a name goes
    // live at the next start, and an upload must wait for its activation.
    if let Ok(kind) = &checked
        && let Some(current) = registry::scan(&dir)
            .unwrap_or_default()
            .into_iter()
            .rfind(|f| f.name == parsed.name && f.version != parsed.version)
        && let Err(e) = plugin_record::pin_if_unset(&mut conn, &state.keys, kind, &parsed.name, &current.version).await
    {
        let _ = std::fs::remove_dir_all(&staging);
        return fail(StatusCode::SERVICE_UNAVAILABLE, format!("recording the live version: {e}"));
    }
    // Into the deployment's store first: the directory watchers leave stored files alone, so an
    // upload goes live only when it is activated.
    let stored = match checked {
        Ok(kind) => match sync::store_file(&staging, &mut conn, &state.keys, &parsed.label()).await {
            Ok(()) => std::fs::rename(&staged, dir.join(&file)).map(|()| kind).map_err(|e| e.to_string()),
            Err(e) => Err(format!("storing it in Redis: {e}")),
        },
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&staging);
    match stored {
        Ok(kind) => (StatusCode::CREATED, Json(serde_json::json!({ "stored": file, "kind": kind }))).into_response(),
        Err(e) => {
            state.metrics.plugin_errors.inc();
            fail(StatusCode::UNPROCESSABLE_ENTITY, e)
        }
    }
}

/// The kind of the versions of `name` already in `dir` (by their manifests), if any says.
fn kind_of_name(dir: &Path, name: &str) -> Option<&'static str> {
    registry::scan(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.name == name)
        .find_map(|f| Manifest::beside(&f.path, &f.name, &f.version).ok().flatten().map(|m| sync_kind(m.kind)))
}

fn upload_manifest(dir: &Path, stem: &str, body: &[u8]) -> Response {
    let Some(parsed) = registry::parse_file_name(Path::new(&format!("{stem}.wasm"))) else {
        return fail(StatusCode::BAD_REQUEST, "file name must be NAME@VERSION.toml");
    };
    // Like components, a stored manifest is what it is: its version's options and limits.
    if let Ok(existing) = std::fs::read(dir.join(format!("{stem}.toml")))
        && existing != body
    {
        return fail(
            StatusCode::CONFLICT,
            format!("{stem}.toml exists with other contents; versions are immutable, upload a new version"),
        );
    }
    let text = String::from_utf8_lossy(body);
    match Manifest::parse(&text) {
        Ok(m) if m.name == parsed.name && m.version == parsed.version => {
            match std::fs::write(dir.join(format!("{stem}.toml")), text.as_bytes()) {
                Ok(()) => {
                    (StatusCode::CREATED, Json(serde_json::json!({ "stored": format!("{stem}.toml") }))).into_response()
                }
                Err(e) => fail(StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        }
        Ok(m) => fail(StatusCode::UNPROCESSABLE_ENTITY, format!("the manifest describes {}@{}", m.name, m.version)),
        Err(e) => fail(StatusCode::UNPROCESSABLE_ENTITY, format!("manifest: {e}")),
    }
}

/// Compiles and self-tests `file` as whichever kind it is; returns the kind.
async fn check_any(state: &AppState, file: registry::PluginFile) -> Result<&'static str, String> {
    let rt = state.segmenters.runtime();
    let settings = state.cfg.plugins.config.get(&file.name).cloned().unwrap_or_default();
    let declared = Manifest::beside(&file.path, &file.name, &file.version).map_err(|e| e.to_string())?.map(|m| m.kind);
    let mut errors = Vec::new();
    for kind in [PluginKind::Segmenter, PluginKind::Postprocessor, PluginKind::Router] {
        if declared.is_some_and(|d| d != kind) {
            continue;
        }
        let r = match kind {
            PluginKind::Segmenter => validate::<SegmenterPlugin>(rt, file.clone(), settings.clone()).await.map(drop),
            PluginKind::Postprocessor => {
                validate::<PostprocessorPlugin>(rt, file.clone(), settings.clone()).await.map(drop)
            }
            PluginKind::Router => validate::<RouterPlugin>(rt, file.clone(), settings.clone()).await.map(drop),
        };
        match r {
            Ok(()) => return Ok(sync_kind(kind)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::without_paths;

    #[test]
    fn errors_name_files_not_server_paths() {
        assert_eq!(
            without_paths("echo@0.3.0.wasm is neither in /srv/kiki/.cache/plugins nor stored in Redis"),
            "echo@0.3.0.wasm is neither in plugins nor stored in Redis"
        );
        assert_eq!(without_paths("writing `/a/b/x@1.0.0.wasm`: denied"), "writing `x@1.0.0.wasm`: denied");
        assert_eq!(without_paths("name and version are required"), "name and version are required");
        assert_eq!(without_paths("a/b and 1/2 and /tmp"), "a/b and 1/2 and /tmp");
    }
}
