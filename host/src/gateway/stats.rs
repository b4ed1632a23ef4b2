//! `GET /api/stats`: the dashboard's JSON feed. Counters are totals; the page turns them into
//! rates from one poll to the next.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::auth::Scope;
use crate::channels::tasks;
use crate::channels::workers::{self, WorkerStats, now_ms};

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
    /// Age of the oldest task delivered and not yet acknowledged (an autoscaling signal).
    oldest_pending_ms: u64,
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
    /// What the worker reported (totals since it started: the page turns them into rates).
    #[serde(flatten)]
    stats: Option<WorkerStats>,
    /// Tasks delivered to it and not yet acknowledged.
    pending: u64,
}

#[derive(Serialize)]
struct LatencyMs {
    p50: u64,
    p95: u64,
    p99: u64,
}

#[derive(Serialize)]
struct PluginInfo {
    kind: String,
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
    if let Ok(g) = tasks::group_info(&mut conn, &state.keys).await {
        redis_ok = true;
        if let Some(g) = g {
            (pending, backlog) = (g.pending, g.lag);
        }
    }
    if let Ok(n) = tasks::dead_letters(&mut conn, &state.keys).await {
        dead = n;
    }
    let now = now_ms();
    let pending_now = tasks::pending(&mut conn, &state.keys).await.unwrap_or_default();
    let oldest_pending_ms = pending_now.oldest_age_ms(now);
    let pending_by_consumer = pending_now.per_consumer;
    let workers: Vec<WorkerInfo> = workers::alive_with_stats(&mut conn, &state.keys)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(id, at, stats)| {
            let pending = pending_by_consumer.iter().find(|(c, _)| *c == id).map_or(0, |(_, n)| *n);
            WorkerInfo { id, last_beat_ms_ago: now.saturating_sub(at), stats, pending }
        })
        .collect();
    // RTF over every live worker's reports (this process's own model calls when none report).
    let (busy, audio): (u64, u64) = workers
        .iter()
        .filter_map(|w| w.stats.as_ref())
        .filter(|s| s.engine != "none")
        .fold((0, 0), |(b, a), s| (b + s.busy_ms, a + s.audio_ms));
    let (busy, audio) = if audio > 0 { (busy, audio) } else { (m.inference_ms.get(), m.inference_audio_ms.get()) };
    let rtf = (audio > 0).then(|| busy as f64 / audio as f64);
    // Reclaims and dead letters happen in the workers: their reports, or this process's own.
    let reports: Vec<&WorkerStats> = workers.iter().filter_map(|w| w.stats.as_ref()).collect();
    let (reclaimed, dead_lettered) = if reports.is_empty() {
        (m.tasks_reclaimed.get(), m.tasks_dead_lettered.get())
    } else {
        reports.iter().fold((0, 0), |(r, d), s| (r + s.reclaimed, d + s.dead_lettered))
    };
    // The gateway's segmenters, and the result plugins the workers report (each version once).
    let mut plugins: Vec<PluginInfo> = Vec::new();
    let segmenters = state.segmenters.info().live.into_iter().map(|l| ("segmenter".to_string(), l));
    let reported = workers.iter().filter_map(|w| w.stats.as_ref()).flat_map(|s| s.plugins.iter().cloned());
    for (kind, label) in segmenters.chain(reported) {
        let (name, version) = label.split_once('@').unwrap_or((label.as_str(), ""));
        if !plugins.iter().any(|p| p.kind == kind && p.name == name && p.version == version) {
            plugins.push(PluginInfo { kind: kind.clone(), name: name.to_string(), version: version.to_string() });
        }
    }
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
        oldest_pending_ms,
        dead_letters: dead,
        workers,
        latency_ms: m.latency_percentiles().map(|[p50, p95, p99]| LatencyMs { p50, p95, p99 }),
        rtf,
        plugins,
        plugin_errors_total: m.plugin_errors.get(),
        tasks_reclaimed_total: reclaimed,
        tasks_dead_lettered_total: dead_lettered,
        partials_shed_total: m.partials_shed.get(),
        sessions_refused_total: m.sessions_refused.get(),
        redis_ok,
    })
    .into_response()
}
