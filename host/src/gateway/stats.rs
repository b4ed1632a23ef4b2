//! `GET /api/stats`: the dashboard's JSON feed. Counters are totals; the page turns them into
//! rates from one poll to the next.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use redis::AsyncCommands;
use serde::Serialize;

use super::AppState;
use super::auth::Scope;
use crate::channels::keys::GROUP;
use crate::channels::workers::{self, now_ms};

#[derive(Serialize)]
pub struct Stats {
    gateway: String,
    now_ms: u64,
    sessions_active: i64,
    sessions_total: u64,
    pubsub_messages_total: u64,
    pubsub_bytes_total: u64,
    subscriber_live: bool,
    subscriber_reconnects_total: u64,
    replays_total: u64,
    duplicates_dropped_total: u64,
    tasks_enqueued_total: u64,
    finals_delivered_total: u64,
    partials_delivered_total: u64,
    backlog: u64,
    pending: u64,
    dead_letters: u64,
    workers: Vec<WorkerInfo>,
    latency_ms: Option<LatencyMs>,
    rtf: Option<f64>,
    plugins: Vec<PluginInfo>,
    plugin_errors_total: u64,
    tasks_reclaimed_total: u64,
    tasks_dead_lettered_total: u64,
    partials_shed_total: u64,
    sessions_refused_total: u64,
    redis_ok: bool,
}

#[derive(Serialize)]
struct WorkerInfo {
    id: String,
    last_beat_ms_ago: u64,
}

#[derive(Serialize)]
struct LatencyMs {
    p50: u64,
    p95: u64,
    p99: u64,
}

#[derive(Serialize)]
struct PluginInfo {
    kind: &'static str,
    name: String,
    version: String,
}

pub async fn stats(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<super::TokenQuery>,
) -> Response {
    if let Err(denied) = super::authorize(&state, &headers, q.token.as_deref(), Scope::Admin) {
        return denied.into_response();
    }
    let m = &state.metrics;
    let mut conn = state.redis.clone();
    let (mut backlog, mut pending, mut dead, mut redis_ok) = (0u64, 0u64, 0u64, false);
    let groups: redis::RedisResult<redis::streams::StreamInfoGroupsReply> = conn.xinfo_groups(state.keys.tasks()).await;
    if let Ok(g) = groups {
        redis_ok = true;
        if let Some(g) = g.groups.iter().find(|g| g.name == GROUP) {
            pending = g.pending as u64;
            backlog = g.lag.unwrap_or(0) as u64;
        }
    }
    if let Ok(n) = conn.xlen::<_, u64>(state.keys.dead_letters()).await {
        dead = n;
    }
    let now = now_ms();
    let workers: Vec<WorkerInfo> = conn
        .zrangebyscore_withscores::<_, _, _, Vec<(String, u64)>>(
            state.keys.workers(),
            now.saturating_sub(workers::EXPIRY_MS),
            "+inf",
        )
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(id, at)| WorkerInfo { id, last_beat_ms_ago: now.saturating_sub(at) })
        .collect();
    let audio_ms = m.inference_audio_ms.get();
    let seg = state.segmenter.load();
    Json(Stats {
        gateway: state.id.clone(),
        now_ms: now,
        sessions_active: m.sessions_active.get(),
        sessions_total: m.sessions_total.get(),
        pubsub_messages_total: m.pubsub_messages.get(),
        pubsub_bytes_total: m.pubsub_bytes.get(),
        subscriber_live: state.dispatcher.is_live(),
        subscriber_reconnects_total: m.subscriber_reconnects.get(),
        replays_total: m.replays.get(),
        duplicates_dropped_total: m.duplicates_dropped.get(),
        tasks_enqueued_total: m.tasks_enqueued.get(),
        finals_delivered_total: m.finals_delivered.get(),
        partials_delivered_total: m.partials_delivered.get(),
        backlog,
        pending,
        dead_letters: dead,
        workers,
        latency_ms: m.latency_percentiles().map(|[p50, p95, p99]| LatencyMs { p50, p95, p99 }),
        rtf: (audio_ms > 0).then(|| m.inference_ms.get() as f64 / audio_ms as f64),
        plugins: vec![PluginInfo { kind: "segmenter", name: seg.name.clone(), version: seg.version.clone() }],
        plugin_errors_total: m.plugin_errors.get(),
        tasks_reclaimed_total: m.tasks_reclaimed.get(),
        tasks_dead_lettered_total: m.tasks_dead_lettered.get(),
        partials_shed_total: m.partials_shed.get(),
        sessions_refused_total: m.sessions_refused.get(),
        redis_ok,
    })
    .into_response()
}
