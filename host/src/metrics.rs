//! Prometheus metrics for every role, rendered at `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Registry,
    pub sessions_active: Gauge,
    /// Tasks delivered to each consumer (worker) and not yet acknowledged.
    pub pending_per_consumer: Family<Vec<(String, String)>, Gauge>,
    /// What each live worker reported with its last beat (totals since it started), so that an
    /// autoscaler reading any gateway sees per-worker throughput and load.
    pub workers_alive: Gauge,
    pub worker_segments: Family<Vec<(String, String)>, Gauge>,
    pub worker_audio_ms: Family<Vec<(String, String)>, Gauge>,
    pub worker_busy_ms: Family<Vec<(String, String)>, Gauge>,
    pub sessions_total: Counter,
    /// Tasks queued and not yet delivered to any worker (scale workers on it).
    pub tasks_backlog: Gauge,
    /// Age of the oldest task delivered and not yet acknowledged, ms.
    pub tasks_oldest_pending_ms: Gauge,
    pub frames: Counter,
    pub frame_bytes: Counter,
    pub protocol_errors: Counter,
    /// Requests refused for a missing, invalid or insufficient token.
    pub auth_failures: Counter,
    /// Connections refused by the per-address, total or per-subject limits.
    pub connections_refused: Counter,
    /// Times a session's socket was left unread to slow its sender.
    pub reads_paused: Counter,
    /// Gateway time per audio frame: decode, resample, segmenter, and queueing any cut.
    pub frame_seconds: Histogram,
    pub tasks_enqueued: Counter,
    pub tasks_acked: Counter,
    pub tasks_reclaimed: Counter,
    pub tasks_dead_lettered: Counter,
    /// The task stream's consumer group was found missing and made again (Redis came back empty).
    pub task_group_recreated: Counter,
    /// Finals that could not be queued at once (Redis away) and were kept to be queued later.
    pub tasks_deferred: Counter,
    /// Finals queued again after their task was lost with Redis's data.
    pub tasks_requeued: Counter,
    pub partials_shed: Counter,
    pub sessions_refused: Counter,
    pub finals_delivered: Counter,
    pub partials_delivered: Counter,
    pub duplicates_dropped: Counter,
    pub replays: Counter,
    /// Pipelined replay reads (each answers many sessions' replays).
    pub replay_batches: Counter,
    /// Finals overdue after their enqueue, looked up in the replay stream.
    pub overdue_finals: Counter,
    pub plugin_errors: Counter,
    /// Silero VAD failures on a chunk (that audio is segmented by energy alone).
    pub speech_prob_errors: Counter,
    pub pubsub_messages: Counter,
    pub pubsub_bytes: Counter,
    pub subscriber_reconnects: Counter,
    /// Round trip of the subscriber's last liveness probe (publish -> own subscriber), µs.
    pub probe_rtt_us: Gauge,
    /// Results for sessions this gateway does not hold (ended, or resumed on another gateway).
    pub results_unroutable: Counter,
    pub inference_batches: Counter,
    pub inference_segments: Counter,
    pub inference_audio_ms: Counter,
    pub inference_seconds: Histogram,
    /// Enqueue at the gateway -> final on the socket.
    pub final_latency_seconds: Histogram,
    /// End of speech -> final, leg by leg (finals only): the segmenter's wait past the cut
    /// (gateway), the task queue, the model call, result plugins and publish (worker), and
    /// Pub/Sub to the gateway.
    pub final_endpoint_seconds: Histogram,
    pub final_queue_seconds: Histogram,
    pub final_model_seconds: Histogram,
    pub final_publish_seconds: Histogram,
    pub final_delivery_seconds: Histogram,
    pub inference_ms: Counter,
    /// Recent final latencies (ms) for the dashboard's percentiles.
    recent_latency: std::sync::Mutex<std::collections::VecDeque<u64>>,
}

/// Latencies kept for percentiles.
const RECENT: usize = 2048;

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut r = Registry::with_prefix("kiki");
        macro_rules! reg {
            ($name:literal, $help:literal, $m:expr) => {{
                let m = $m;
                r.register($name, $help, m.clone());
                m
            }};
        }
        let latency = || Histogram::new(exponential_buckets(0.005, 2.0, 14));
        Arc::new(Self {
            sessions_active: reg!("sessions_active", "Live WebSocket sessions", Gauge::default()),
            sessions_total: reg!("sessions", "Sessions opened", Counter::default()),
            tasks_backlog: reg!("tasks_backlog", "Tasks queued and not yet delivered to a worker", Gauge::default()),
            tasks_oldest_pending_ms: reg!(
                "tasks_oldest_pending_ms",
                "Age of the oldest delivered, unacknowledged task, ms",
                Gauge::default()
            ),
            frames: reg!("audio_frames", "Binary audio frames received", Counter::default()),
            frame_bytes: reg!("audio_frame_bytes", "Bytes of audio frames received", Counter::default()),
            protocol_errors: reg!("protocol_errors", "Client protocol errors answered", Counter::default()),
            auth_failures: reg!("auth_failures", "Requests refused for a missing or bad token", Counter::default()),
            connections_refused: reg!(
                "connections_refused",
                "Connections refused by the connection limits",
                Counter::default()
            ),
            reads_paused: reg!(
                "reads_paused",
                "Times a session's socket was left unread to slow its sender (rate limits, audio awaiting finals)",
                Counter::default()
            ),
            frame_seconds: reg!(
                "frame_seconds",
                "Gateway handling time per audio frame (decode, resample, segmenter, queueing)",
                // Fine buckets (×1.5 from 5 µs to 0.3 s): the load tool reads percentiles off them.
                Histogram::new(exponential_buckets(0.000_005, 1.5, 28))
            ),
            tasks_enqueued: reg!("tasks_enqueued", "Segment tasks added to the stream", Counter::default()),
            tasks_acked: reg!("tasks_acked", "Tasks acknowledged by workers", Counter::default()),
            tasks_reclaimed: reg!("tasks_reclaimed", "Stale tasks claimed from other workers", Counter::default()),
            tasks_dead_lettered: reg!(
                "tasks_dead_lettered",
                "Tasks moved to the dead-letter stream",
                Counter::default()
            ),
            task_group_recreated: reg!(
                "task_group_recreated",
                "Times the task stream's consumer group was missing and was recreated",
                Counter::default()
            ),
            tasks_deferred: reg!(
                "tasks_deferred",
                "Finals kept by the gateway because Redis could not take them at once",
                Counter::default()
            ),
            tasks_requeued: reg!(
                "tasks_requeued",
                "Finals queued again after their task was lost with Redis's data",
                Counter::default()
            ),
            partials_shed: reg!("partials_shed", "Partial cuts not queued because of backlog", Counter::default()),
            sessions_refused: reg!("sessions_refused", "Sessions refused because of backlog", Counter::default()),
            finals_delivered: reg!("finals_delivered", "Final results sent to clients", Counter::default()),
            partials_delivered: reg!("partials_delivered", "Partial results sent to clients", Counter::default()),
            duplicates_dropped: reg!("duplicates_dropped", "Results dropped as already delivered", Counter::default()),
            replays: reg!("replays", "Replay-stream reads after a gap, reconnect or overdue final", Counter::default()),
            replay_batches: reg!(
                "replay_batches",
                "Pipelined replay reads, each for many sessions",
                Counter::default()
            ),
            overdue_finals: reg!(
                "overdue_finals",
                "Finals not received in time, looked up in the replay stream",
                Counter::default()
            ),
            plugin_errors: reg!("plugin_errors", "Plugin traps, fuel exhaustion and errors", Counter::default()),
            speech_prob_errors: reg!(
                "speech_prob_errors",
                "Silero VAD failures on a 32 ms chunk (segmented by energy alone)",
                Counter::default()
            ),
            pubsub_messages: reg!("pubsub_messages", "Pub/Sub messages received", Counter::default()),
            pubsub_bytes: reg!("pubsub_bytes", "Pub/Sub bytes received", Counter::default()),
            probe_rtt_us: reg!("subscriber_probe_rtt_us", "Liveness probe round trip, microseconds", Gauge::default()),
            results_unroutable: reg!(
                "results_unroutable",
                "Results for sessions not on this gateway",
                Counter::default()
            ),
            subscriber_reconnects: reg!("subscriber_reconnects", "Global subscriber reconnects", Counter::default()),
            inference_batches: reg!("inference_batches", "Model calls", Counter::default()),
            inference_segments: reg!("inference_segments", "Segments transcribed", Counter::default()),
            inference_audio_ms: reg!("inference_audio_ms", "Audio transcribed, ms", Counter::default()),
            inference_seconds: reg!("inference_seconds", "Wall time per batched model call", latency()),
            final_latency_seconds: reg!("final_latency_seconds", "Enqueue to final delivered", latency()),
            final_endpoint_seconds: reg!(
                "final_endpoint_seconds",
                "Audio the segmenter heard past a final's end before cutting it (gateway; the hangover leg)",
                latency()
            ),
            final_queue_seconds: reg!(
                "final_queue_seconds",
                "Final enqueued to read by a worker (worker; the queue leg)",
                latency()
            ),
            final_model_seconds: reg!(
                "final_model_seconds",
                "Model call that carried a final (worker; the model leg)",
                latency()
            ),
            final_publish_seconds: reg!(
                "final_publish_seconds",
                "Result plugins and durable publish of a final (worker; the publish leg)",
                latency()
            ),
            final_delivery_seconds: reg!(
                "final_delivery_seconds",
                "Final published to received by its gateway (gateway; the delivery leg)",
                latency()
            ),
            inference_ms: reg!("inference_ms", "Model wall time, ms", Counter::default()),
            pending_per_consumer: reg!(
                "tasks_pending",
                "Tasks delivered to a consumer and not yet acknowledged, per consumer",
                Family::default()
            ),
            workers_alive: reg!("workers_alive", "Workers that beat within the expiry", Gauge::default()),
            worker_segments: reg!(
                "worker_segments",
                "Segments a worker transcribed since it started (its last report), per worker",
                Family::default()
            ),
            worker_audio_ms: reg!(
                "worker_audio_ms",
                "Audio a worker transcribed since it started, ms (its last report), per worker",
                Family::default()
            ),
            worker_busy_ms: reg!(
                "worker_busy_ms",
                "Time a worker spent in the model since it started, ms (its last report), per worker",
                Family::default()
            ),
            recent_latency: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(RECENT)),
            registry: r,
        })
    }

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
