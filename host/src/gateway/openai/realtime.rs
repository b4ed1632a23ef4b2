//! `GET /v1/realtime?intent=transcription`: OpenAI's Realtime transcription sessions over a
//! WebSocket (the protocol itself is `kiki_protocol::realtime`; the session loop is the one every
//! protocol runs on), and `POST /v1/realtime/client_secrets`, which mints the short-lived token a
//! browser connects with.

use std::sync::Arc;

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kiki_protocol::realtime::Realtime;
use serde::Deserialize;
use serde_json::{Value, json};

use super::super::auth::Scope;
use super::super::{AppState, TokenQuery, authorize, server, upgrade_as};

/// What OpenAI's SDKs put in the URL.
#[derive(Debug, Default, Deserialize)]
pub struct ConnectQuery {
    pub token: Option<String>,
    pub intent: Option<String>,
    pub model: Option<String>,
}

/// Browsers cannot set headers on a WebSocket: OpenAI's clients send the key (an ephemeral
/// client secret) as a subprotocol `openai-insecure-api-key.<key>` next to `realtime`.
fn subprotocol_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("openai-insecure-api-key.").map(str::to_string))
}

pub async fn connect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ConnectQuery>,
    place: Option<Extension<server::ConnPlace>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Some(intent) = q.intent.as_deref().filter(|i| *i != "transcription") {
        let message =
            format!("intent {intent:?} is not served: this server runs transcription sessions (intent=transcription)");
        return super::error_with(StatusCode::BAD_REQUEST, message, Some("intent"), Some("invalid_value"));
    }
    if let Some(resp) = super::refuse_model(&state, q.model.as_deref()) {
        return resp;
    }
    let token = q.token.clone().or_else(|| subprotocol_key(&headers));
    // Refused in OpenAI's shape.
    let principal = match authorize(&state, &headers, token.as_deref(), Scope::Transcribe) {
        Ok(p) => p,
        Err(d) => return super::denied(d),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            let message = format!("the Realtime API is a WebSocket: {}", e.body_text());
            return super::error_with(e.status(), message, None, Some("websocket_required"));
        }
    };
    let models = super::model_names(&state);
    let wire = Realtime::new(crate::ids::short(), models);
    // Clients of the beta API say so; they are greeted in its schema.
    let beta = headers
        .get_all("openai-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == "realtime=v1"));
    let wire = if beta { wire.beta() } else { wire };
    // Over its subject's connection limit: OpenAI's rate-limit error, which the SDKs raise.
    let refused = |message: &str| super::busy(message.to_string());
    upgrade_as(state, principal, place, ws.protocols(["realtime"]), (wire, 32), refused)
}

#[derive(Debug, Default, Deserialize)]
struct SecretRequest {
    #[serde(default)]
    expires_after: Option<ExpiresAfter>,
    #[serde(default)]
    session: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct ExpiresAfter {
    #[serde(default)]
    seconds: Option<u64>,
}

/// Longest lifetime of a client secret, as OpenAI's (2 hours); 10 minutes by default.
const MAX_SECRET_S: u64 = 7_200;
const DEFAULT_SECRET_S: u64 = 600;

pub async fn client_secret(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    body: Option<Json<Value>>,
) -> Response {
    let principal = match authorize(&state, &headers, q.token.as_deref(), Scope::Transcribe) {
        Ok(p) => p,
        Err(denied) => return super::denied(denied),
    };
    let req: SecretRequest = match body.map(|Json(v)| serde_json::from_value(v)).transpose() {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => return super::error(StatusCode::BAD_REQUEST, format!("not a client secret request: {e}")),
    };
    let session = req.session.unwrap_or_else(|| json!({"type": "transcription"}));
    if session.get("type").and_then(Value::as_str).is_some_and(|t| t != "transcription") {
        return super::error_with(
            StatusCode::BAD_REQUEST,
            "this server mints secrets for transcription sessions only (session.type \"transcription\")",
            Some("session.type"),
            Some("invalid_value"),
        );
    }
    let ttl = req.expires_after.and_then(|e| e.seconds).unwrap_or(DEFAULT_SECRET_S);
    if !(10..=MAX_SECRET_S).contains(&ttl) {
        let message = format!("expires_after.seconds must be between 10 and {MAX_SECRET_S}");
        return super::error_with(StatusCode::BAD_REQUEST, message, Some("expires_after.seconds"), None);
    }
    let expires_at = crate::channels::workers::now_ms() / 1000 + ttl;
    // With auth, a token of the caller's subject that may only transcribe (never admin). Without
    // auth every connection is accepted: the value is only what the SDKs expect to pass along.
    let value = if state.auth.enabled() {
        let subject = principal.subject.unwrap_or_default();
        match state.auth.mint_with_rooms(&subject, &[Scope::Transcribe], ttl, &principal.rooms) {
            Ok(t) => t,
            Err(e) => return super::error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot mint a secret: {e}")),
        }
    } else {
        format!("ek_{}", crate::ids::long())
    };
    Json(json!({"value": value, "expires_at": expires_at, "session": session})).into_response()
}
