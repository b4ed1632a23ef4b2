//! OpenAI's audio API, for its SDKs unchanged (field by field in docs/protocol.md):
//! - [`files`]: `POST /v1/audio/transcriptions` (also as Server-Sent Events with `stream=true`)
//!   and `POST /v1/audio/translations`;
//! - [`realtime`]: `GET /v1/realtime?intent=transcription` (WebSocket) and
//!   `POST /v1/realtime/client_secrets`;
//! - [`models`]: `GET /v1/models` and `/v1/models/{id}`.
//!
//! Errors come in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.

mod files;
mod models;
mod realtime;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::AppState;

pub use files::MAX_UPLOAD;

/// The routes of OpenAI's API that Kiki serves.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/audio/transcriptions", post(files::transcriptions).layer(DefaultBodyLimit::max(MAX_UPLOAD)))
        .route("/v1/audio/translations", post(files::translations).layer(DefaultBodyLimit::max(MAX_UPLOAD)))
        .route("/v1/realtime", get(realtime::connect))
        .route("/v1/realtime/client_secrets", post(realtime::client_secret))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::one))
}

/// An error in OpenAI's shape.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    error_with(status, message, None, None)
}

pub(crate) fn error_with(
    status: StatusCode,
    message: impl Into<String>,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    let body = json!({"error": {"message": message.into(), "type": kind, "param": param, "code": code}});
    (status, Json(body)).into_response()
}

/// A refused token in OpenAI's shape (its SDKs raise `AuthenticationError` / `PermissionDeniedError`).
pub(crate) fn denied(d: super::Denied) -> Response {
    let code = if d.0.status() == StatusCode::UNAUTHORIZED { "invalid_api_key" } else { "insufficient_scope" };
    error_with(d.0.status(), d.0.to_string(), None, Some(code))
}

/// A retryable refusal: 429 with `Retry-After`.
pub(crate) fn busy(message: String) -> Response {
    let mut resp = error_with(StatusCode::TOO_MANY_REQUESTS, message, None, Some("rate_limit_exceeded"));
    resp.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("5"));
    resp
}

/// The model names a request may give: the live workers' models, the configured one, and the
/// names OpenAI's SDKs use ([`kiki_protocol::realtime::MODEL_ALIASES`]), all served by the
/// deployment's model.
pub(crate) fn model_names(state: &AppState) -> Vec<String> {
    let mut names: Vec<String> = state.models.read().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
    if !names.contains(&state.cfg.model.name) {
        names.push(state.cfg.model.name.clone());
    }
    names.extend(kiki_protocol::realtime::MODEL_ALIASES.iter().map(|s| s.to_string()));
    names
}

/// The refusal of a model this deployment does not serve (OpenAI's `model_not_found`), if it is one.
pub(crate) fn refuse_model(state: &AppState, model: Option<&str>) -> Option<Response> {
    let m = model.filter(|m| !m.is_empty())?;
    let names = model_names(state);
    if names.iter().any(|n| n == m) {
        return None;
    }
    let message = format!("The model `{m}` does not exist here; models served: {}", names.join(", "));
    Some(error_with(StatusCode::NOT_FOUND, message, Some("model"), Some("model_not_found")))
}
