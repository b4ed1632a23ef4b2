//! Prometheus metrics for every role, rendered at `/metrics`. Each metric is declared once, in
//! the table below: its field, type, exported name, help text and initial value.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Latencies kept for percentiles.
const RECENT: usize = 2048;

/// Buckets for latencies: 5 ms to 41 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The `Metrics` struct and its constructor from one table (a field per metric, registered
/// under its name).
macro_rules! metrics {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty = ($name:literal, $help:literal, $init:expr) ),* $(,)?) => {
        pub struct Metrics {
            registry: Registry,
            $( $(#[$doc])* pub $field: $ty, )*
            /// Recent final latencies (ms) for the dashboard's percentiles.
            recent_latency: std::sync::Mutex<std::collections::VecDeque<u64>>,
        }

        impl Metrics {
            pub fn new() -> Arc<Self> {
                let mut registry = Registry::with_prefix("kiki");
                $(
                    let $field: $ty = $init;
                    registry.register($name, $help, $field.clone());
                )*
                Arc::new(Self {
                    registry,
                    $( $field, )*
                    recent_latency: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(RECENT)),
                })
            }
        }
    };
}

metrics! {
    sessions_active: Gauge = ("sessions_active", "Live WebSocket sessions", Gauge::default()),
    /// Tasks delivered to each consumer (worker) and not yet acknowledged.
    pending_per_consumer: Family<Vec<(String, String)>, Gauge> = (
        "tasks_pending",
        "Tasks delivered to a consumer and not yet acknowledged, per consumer",
        Family::default()
    ),
    /// What each live worker reported with its last beat (totals since it started), so that an
    /// autoscaler reading any gateway sees per-worker throughput and load.
    workers_alive: Gauge = ("workers_alive", "Workers that beat within the expiry", Gauge::default()),
    worker_segments: Family<Vec<(String, String)>, Gauge> = (
        "worker_segments",
        "Segments a worker transcribed since it started (its last report), per worker",
        Family::default()
    ),
    worker_audio_ms: Family<Vec<(String, String)>, Gauge> = (
        "worker_audio_ms",
        "Audio a worker transcribed since it started, ms (its last report), per worker",
        Family::default()
    ),
    worker_busy_ms: Family<Vec<(String, String)>, Gauge> = (
        "worker_busy_ms",
        "Time a worker spent in the model since it started, ms (its last report), per worker",
        Family::default()
    ),
    sessions_total: Counter = ("sessions", "Sessions opened", Counter::default()),
    /// Tasks queued and not yet delivered to any worker (scale workers on it).
    tasks_backlog: Gauge = ("tasks_backlog", "Tasks queued and not yet delivered to a worker", Gauge::default()),
    /// Age of the oldest task delivered and not yet acknowledged, ms.
    tasks_oldest_pending_ms: Gauge = (
        "tasks_oldest_pending_ms",
        "Age of the oldest delivered, unacknowledged task, ms",
        Gauge::default()
    ),
    frames: Counter = ("audio_frames", "Binary audio frames received", Counter::default()),
    frame_bytes: Counter = ("audio_frame_bytes", "Bytes of audio frames received", Counter::default()),
    protocol_errors: Counter = ("protocol_errors", "Client protocol errors answered", Counter::default()),
    /// Requests refused for a missing, invalid or insufficient token.
    auth_failures: Counter = ("auth_failures", "Requests refused for a missing or bad token", Counter::default()),
    /// Connections refused by the per-address, total or per-subject limits.
    connections_refused: Counter = (
        "connections_refused",
        "Connections refused by the connection limits",
        Counter::default()
    ),
    /// Times a session's socket was left unread to slow its sender.
    reads_paused: Counter = (
        "reads_paused",
        "Times a session's socket was left unread to slow its sender (rate limits, audio awaiting finals)",
        Counter::default()
    ),
    /// Gateway time per audio frame: decode, resample, segmenter, and queueing any cut.
    /// Fine buckets (×1.5 from 5 µs to 0.3 s): the load tool reads percentiles off them.
    frame_seconds: Histogram = (
        "frame_seconds",
        "Gateway handling time per audio frame (decode, resample, segmenter, queueing)",
        Histogram::new(exponential_buckets(0.000_005, 1.5, 28))
    ),
    tasks_enqueued: Counter = ("tasks_enqueued", "Segment tasks added to the stream", Counter::default()),
    tasks_acked: Counter = ("tasks_acked", "Tasks acknowledged by workers", Counter::default()),
    tasks_reclaimed: Counter = ("tasks_reclaimed", "Stale tasks claimed from other workers", Counter::default()),
    tasks_dead_lettered: Counter = (
        "tasks_dead_lettered",
        "Tasks moved to the dead-letter stream",
        Counter::default()
    ),
    /// The task stream's consumer group was found missing and made again (Redis came back empty).
    task_group_recreated: Counter = (
        "task_group_recreated",
        "Times the task stream's consumer group was missing and was recreated",
        Counter::default()
    ),
    /// Finals that could not be queued at once (Redis away) and were kept to be queued later.
    tasks_deferred: Counter = (
        "tasks_deferred",
        "Finals kept by the gateway because Redis could not take them at once",
        Counter::default()
    ),
    /// Finals queued again after their task was lost with Redis's data.
    tasks_requeued: Counter = (
        "tasks_requeued",
        "Finals queued again after their task was lost with Redis's data",
        Counter::default()
    ),
    partials_shed: Counter = ("partials_shed", "Partial cuts not queued because of backlog", Counter::default()),
    sessions_refused: Counter = ("sessions_refused", "Sessions refused because of backlog", Counter::default()),
    finals_delivered: Counter = ("finals_delivered", "Final results sent to clients", Counter::default()),
    partials_delivered: Counter = ("partials_delivered", "Partial results sent to clients", Counter::default()),
    duplicates_dropped: Counter = ("duplicates_dropped", "Results dropped as already delivered", Counter::default()),
    replays: Counter = ("replays", "Replay-stream reads after a gap, reconnect or overdue final", Counter::default()),
    /// Pipelined replay reads (each answers many sessions' replays).
    replay_batches: Counter = (
        "replay_batches",
        "Pipelined replay reads, each for many sessions",
        Counter::default()
    ),
    /// Finals overdue after their enqueue, looked up in the replay stream.
    overdue_finals: Counter = (
        "overdue_finals",
        "Finals not received in time, looked up in the replay stream",
        Counter::default()
    ),
    plugin_errors: Counter = ("plugin_errors", "Plugin traps, fuel exhaustion and errors", Counter::default()),
    /// Silero VAD failures on a chunk (that audio is segmented by energy alone).
    speech_prob_errors: Counter = (
        "speech_prob_errors",
        "Silero VAD failures on a 32 ms chunk (segmented by energy alone)",
        Counter::default()
    ),
    pubsub_messages: Counter = ("pubsub_messages", "Pub/Sub messages received", Counter::default()),
    pubsub_bytes: Counter = ("pubsub_bytes", "Pub/Sub bytes received", Counter::default()),
    subscriber_reconnects: Counter = ("subscriber_reconnects", "Global subscriber reconnects", Counter::default()),
    /// Round trip of the subscriber's last liveness probe (publish -> own subscriber), µs.
    probe_rtt_us: Gauge = ("subscriber_probe_rtt_us", "Liveness probe round trip, microseconds", Gauge::default()),
    /// Results for sessions this gateway does not hold (ended, or resumed on another gateway).
    results_unroutable: Counter = (
        "results_unroutable",
        "Results for sessions not on this gateway",
        Counter::default()
    ),
    inference_batches: Counter = ("inference_batches", "Model calls", Counter::default()),
    inference_segments: Counter = ("inference_segments", "Segments transcribed", Counter::default()),
    inference_audio_ms: Counter = ("inference_audio_ms", "Audio transcribed, ms", Counter::default()),
    inference_seconds: Histogram = ("inference_seconds", "Wall time per batched model call", latency()),
    /// Enqueue at the gateway -> final on the socket.
    final_latency_seconds: Histogram = ("final_latency_seconds", "Enqueue to final delivered", latency()),
    /// End of speech -> final, leg by leg (finals only): the segmenter's wait past the cut
    /// (gateway), the task queue, the model call, result plugins and publish (worker), and
    /// Pub/Sub to the gateway.
    final_endpoint_seconds: Histogram = (
        "final_endpoint_seconds",
        "Audio the segmenter heard past a final's end before cutting it (gateway; the hangover leg)",
        latency()
    ),
    final_queue_seconds: Histogram = (
        "final_queue_seconds",
        "Final enqueued to read by a worker (worker; the queue leg)",
        latency()
    ),
    final_model_seconds: Histogram = (
        "final_model_seconds",
        "Model call that carried a final (worker; the model leg)",
        latency()
    ),
    final_publish_seconds: Histogram = (
        "final_publish_seconds",
        "Result plugins and durable publish of a final (worker; the publish leg)",
        latency()
    ),
    final_delivery_seconds: Histogram = (
        "final_delivery_seconds",
        "Final published to received by its gateway (gateway; the delivery leg)",
        latency()
    ),
    inference_ms: Counter = ("inference_ms", "Model wall time, ms", Counter::default()),
}

impl Metrics {
    pub fn observe_inference(&self, segments: usize, elapsed: Duration, audio_ms: u64) {
        self.inference_batches.inc();
        self.inference_segments.inc_by(segments as u64);
        self.inference_audio_ms.inc_by(audio_ms);
        self.inference_seconds.observe(elapsed.as_secs_f64());
        self.inference_ms.inc_by(elapsed.as_millis() as u64);
    }

    /// Replaces the per-consumer pending gauges (consumers that left drop out).
    pub fn set_pending(&self, per_consumer: &[(String, u64)]) {
        self.pending_per_consumer.clear();
        for (consumer, n) in per_consumer {
            self.pending_per_consumer.get_or_create(&vec![("consumer".to_string(), consumer.clone())]).set(*n as i64);
        }
    }

    /// Sets the per-worker gauges from the workers' reports (id, segments, audio ms, busy ms).
    pub fn set_workers(&self, reports: &[(String, u64, u64, u64)]) {
        self.workers_alive.set(reports.len() as i64);
        for family in [&self.worker_segments, &self.worker_audio_ms, &self.worker_busy_ms] {
            family.clear();
        }
        for (id, segments, audio, busy) in reports {
            let label = vec![("worker".to_string(), id.clone())];
            self.worker_segments.get_or_create(&label).set(*segments as i64);
            self.worker_audio_ms.get_or_create(&label).set(*audio as i64);
            self.worker_busy_ms.get_or_create(&label).set(*busy as i64);
        }
    }

    pub fn observe_final_latency(&self, ms: u64) {
        self.final_latency_seconds.observe(ms as f64 / 1e3);
        if let Ok(mut q) = self.recent_latency.lock() {
            if q.len() == RECENT {
                q.pop_front();
            }
            q.push_back(ms);
        }
    }

    /// p50, p95, p99 of recent final latencies, in ms.
    pub fn latency_percentiles(&self) -> Option<[u64; 3]> {
        let mut v: Vec<u64> = self.recent_latency.lock().ok()?.iter().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Some([at(0.50), at(0.95), at(0.99)])
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// `GET /metrics`'s answer (the gateway's, and a standalone worker's): the text exposition.
    pub fn response(&self) -> axum::response::Response {
        use axum::response::IntoResponse;
        ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], self.render())
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_gauges_follow_the_consumers() {
        let m = Metrics::new();
        m.set_pending(&[("w1".into(), 3), ("w2".into(), 0)]);
        let text = m.render();
        assert!(text.contains(r#"tasks_pending{consumer="w1"} 3"#), "{text}");
        m.set_pending(&[("w2".into(), 1)]);
        let text = m.render();
        assert!(!text.contains(r#"consumer="w1""#) && text.contains(r#"tasks_pending{consumer="w2"} 1"#), "{text}");
    }
}
