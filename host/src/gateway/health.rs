//! `/healthz` (the process is up), `/readyz` (it can do its job), `/metrics` (Prometheus).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;

use super::AppState;
use crate::channels::workers;

pub async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    redis: bool,
    subscriber: bool,
    /// The task stream and its consumer group exist.
    tasks: bool,
    workers: usize,
    segmenter: String,
}

/// Ready when Redis answers, the task stream's consumer group exists, the subscriber is live, a
/// segmenter is loaded and at least one worker (which beats only once its model is loaded) is
/// alive.
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut conn = state.redis.clone();
    let redis_ok = crate::channels::ping(&mut conn).await.is_ok();
    let alive = if redis_ok { workers::alive(&mut conn, &state.keys).await.map(|w| w.len()).unwrap_or(0) } else { 0 };
    let tasks_ok = redis_ok && state.tasks_ok.load(std::sync::atomic::Ordering::Relaxed);
    let r = Readiness {
        ready: tasks_ok && state.dispatcher.is_live() && alive > 0,
        redis: redis_ok,
        subscriber: state.dispatcher.is_live(),
        tasks: tasks_ok,
        workers: alive,
        segmenter: state.segmenters.default_plugin().map(|p| p.label().to_string()).unwrap_or_default(),
    };
    let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(r))
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    state.metrics.response()
}
