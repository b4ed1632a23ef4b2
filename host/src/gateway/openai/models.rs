//! `GET /v1/models` and `GET /v1/models/{id}`: the models the live workers serve, and the names
//! OpenAI's SDKs ask for (`whisper-1`, `gpt-4o-transcribe`, ...), which the deployment's model
//! answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::auth::Scope;
use super::super::{AppState, TokenQuery, authorize};

fn model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "kiki"})
}

pub async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    if let Err(denied) = authorize(&state, &headers, q.token.as_deref(), Scope::Transcribe) {
        return super::denied(denied);
    }
    let data: Vec<Value> = super::model_names(&state).iter().map(|m| model(m)).collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn one(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    Path(id): Path<String>,
) -> Response {
    if let Err(denied) = authorize(&state, &headers, q.token.as_deref(), Scope::Transcribe) {
        return super::denied(denied);
    }
    if super::model_names(&state).contains(&id) {
        return Json(model(&id)).into_response();
    }
    let message = format!("The model `{id}` does not exist");
    super::error_with(StatusCode::NOT_FOUND, message, Some("model"), Some("model_not_found"))
}
