//! The worker role: read tasks from the stream, batch them across sessions, run the model,
//! publish each result durably, then acknowledge.

mod batch;
mod pipeline;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::channels::results::{self, ReplayPolicy, ResultPayload, Word};
use crate::channels::tasks::{self, Task, TaskMeta};
use crate::channels::workers::WorkerStats;
use crate::channels::{ChannelError, Conn, Keys, RedisTarget, workers};
use crate::config::Config;
use crate::inference::{Engine, Request};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

use crate::channels::rooms;
use crate::plugins::{CutKind, Route};
pub use batch::coalesce;
pub use pipeline::Pipeline;

/// How long one XREADGROUP waits for the first task.
const BLOCK: Duration = Duration::from_millis(1000);

pub struct Worker {
    pub id: String,
    keys: Keys,
    target: RedisTarget,
    /// The model; `None` for a transport-only worker (`worker.engine = "none"`).
    engine: Option<Arc<Engine>>,
    /// What the worker reports in its beats.
    model_label: String,
    batch_size: usize,
    batch_wait: Duration,
    policy: ReplayPolicy,
    metrics: Arc<Metrics>,
    min_idle: Duration,
    max_deliveries: u64,
    reclaim_every: Duration,
    pipeline: Arc<Pipeline>,
    /// How often the result plugins follow the plugin directory and the deployment's record.
    plugin_watch: Duration,
}

impl Worker {
    /// A worker running `engine`, or answering every task with empty text when `None`.
    pub fn new(cfg: &Config, target: RedisTarget, engine: Option<Arc<Engine>>, metrics: Arc<Metrics>) -> Self {
        let model_label = match &engine {
            Some(_) => format!("{} {} {}", cfg.model.name, cfg.model.precision, cfg.model.provider),
            None => "none (transport only: empty texts)".to_string(),
        };
        let id =
            cfg.worker.id.clone().unwrap_or_else(|| format!("worker-{}-{}", std::process::id(), crate::ids::short()));
        Self {
            id,
            keys: Keys::new(&cfg.channels.prefix),
            policy: ReplayPolicy {
                max_len: cfg.channels.replay_len,
                ttl_s: cfg.channels.replay_ttl_s,
                sharded: target.is_cluster(),
            },
            target,
            engine,
            model_label,
            batch_size: cfg.worker.batch_size.max(1),
            batch_wait: Duration::from_millis(cfg.worker.batch_wait_ms),
            metrics,
            min_idle: Duration::from_millis(cfg.channels.min_idle_ms.max(100)),
            max_deliveries: cfg.channels.max_deliveries.max(1),
            reclaim_every: Duration::from_millis(cfg.channels.reclaim_interval_ms.max(50)),
            pipeline: Arc::new(Pipeline::none()),
            plugin_watch: Duration::from_millis(cfg.plugins.watch_ms),
        }
    }

    /// Runs results through these plugins (post-processor, router) before publishing.
    pub fn with_pipeline(mut self, pipeline: Arc<Pipeline>) -> Self {
        self.pipeline = pipeline;
        self
    }

    /// Runs until shutdown. Redis outages are waited out; nothing here gives up on a task.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut conn =
            self.target.connect().await.with_context(|| format!("worker: connecting to Redis at {:?}", self.target))?;
        tasks::ensure_group(&mut conn, &self.keys).await.context("worker: creating the consumer group")?;
        let mut reader = self.target.blocking(BLOCK).await?;
        tracing::info!(worker = %self.id, "worker ready");
        if !self.plugin_watch.is_zero() {
            self.pipeline.spawn_sync(conn.clone(), self.keys.clone(), self.plugin_watch, shutdown.clone());
        }
        let stats = WorkerStats {
            engine: if self.engine.is_some() { "whisper".into() } else { "none".into() },
            model: self.model_label.clone(),
            languages: self.engine.as_ref().and_then(|e| e.supported_languages()),
            started_ms: workers::now_ms(),
            ..WorkerStats::default()
        };
        let beat = tokio::spawn(heartbeat(
            conn.clone(),
            self.keys.clone(),
            self.id.clone(),
            stats,
            (self.metrics.clone(), self.pipeline.clone()),
            shutdown.clone(),
        ));
        let mut last_reclaim = std::time::Instant::now();
        while !shutdown.is_triggered() {
            if last_reclaim.elapsed() >= self.reclaim_every {
                last_reclaim = std::time::Instant::now();
                match self.reclaim(&mut conn).await {
                    Ok(claimed) if !claimed.is_empty() => self.process(&mut conn, claimed).await,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("reclaim pass failed: {e:#}");
                        self.heal_if_group_lost(&mut conn, &e).await;
                    }
                }
            }
            let batch = tokio::select! {
                _ = shutdown.wait() => break,
                b = self.next_batch(&mut reader) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("worker: reading tasks: {e:#}; retrying");
                    self.heal_if_group_lost(&mut conn, &e).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Ok(c) = self.target.blocking(BLOCK).await {
                        reader = c;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            // A batch in hand is finished even during shutdown: publish, then ack.
            self.process(&mut conn, batch).await;
        }
        beat.abort();
        let _ = workers::leave(&mut conn, &self.keys, &self.id).await;
        tracing::info!(worker = %self.id, "worker stopped");
        Ok(())
    }

    /// Redis came back empty (no persistence, a failover to an empty replica, FLUSHALL): the
    /// consumer group is gone and every read fails with NOGROUP until someone makes it again.
    /// Any process may; creating it is idempotent.
    async fn heal_if_group_lost(&self, conn: &mut Conn, e: &anyhow::Error) {
        let lost = e.chain().any(|c| c.downcast_ref::<ChannelError>().is_some_and(tasks::is_missing_group));
        if !lost {
            return;
        }
        match tasks::ensure_group(conn, &self.keys).await {
            Ok(()) => {
                self.metrics.task_group_recreated.inc();
                tracing::warn!(worker = %self.id, "the task stream's consumer group was missing: recreated it");
            }
            Err(e) => tracing::warn!("the consumer group is missing and could not be recreated: {e}"),
        }
    }

    async fn next_batch(&self, reader: &mut Conn) -> anyhow::Result<Vec<Task>> {
        let (mut got, bad) =
            tasks::read(reader, &self.keys, &self.id, self.batch_size, BLOCK.as_millis() as usize).await?;
        for (id, why) in bad {
            tracing::error!(task = %id, "unparseable task: {why}");
        }
        if !got.is_empty() && got.len() < self.batch_size && !self.batch_wait.is_zero() {
            let more = self.batch_size - got.len();
            let (extra, _) =
                tasks::read(reader, &self.keys, &self.id, more, self.batch_wait.as_millis().max(1) as usize).await?;
            got.extend(extra);
        }
        Ok(got)
    }

    async fn process(&self, conn: &mut Conn, batch: Vec<Task>) {
        // The queue leg of each final's latency: from its enqueue to this read.
        let picked = crate::channels::workers::now_ms();
        for t in batch.iter().filter(|t| t.meta.kind == CutKind::Final && t.meta.enqueued_ms > 0) {
            self.metrics.final_queue_seconds.observe(picked.saturating_sub(t.meta.enqueued_ms) as f64 / 1e3);
        }
        let (run, skipped) = coalesce(batch);
        if let Err(e) = tasks::ack(conn, &self.keys, &skipped).await {
            tracing::warn!("ack of coalesced partials failed: {e}");
        }
        // Finals first: someone waits on each, while a partial is provisional. Publishing them
        // before the partials of the same batch run takes a model call off their latency.
        let (finals, partials): (Vec<Task>, Vec<Task>) = run.into_iter().partition(|t| t.meta.kind == CutKind::Final);
        for group in [finals, partials] {
            if !group.is_empty() {
                self.run_group(conn, group).await;
            }
        }
    }

    async fn run_group(&self, conn: &mut Conn, run: Vec<Task>) {
        let started = std::time::Instant::now();
        match self.infer(conn, &run).await {
            Ok(transcripts) => {
                // The model leg of each final's latency: the call that carried it.
                let model = started.elapsed().as_secs_f64();
                for _ in run.iter().filter(|t| t.meta.kind == CutKind::Final) {
                    self.metrics.final_model_seconds.observe(model);
                }
                self.publish_and_ack(conn, &run, transcripts).await
            }
            // One bad segment must not sink the others: retry them one by one.
            Err(e) if run.len() > 1 => {
                tracing::warn!("batch of {} failed ({e}); retrying one by one", run.len());
                for task in run {
                    match self.infer(conn, std::slice::from_ref(&task)).await {
                        Ok(t) => self.publish_and_ack(conn, std::slice::from_ref(&task), t).await,
                        Err(e) => tracing::error!(task = %task.id, "inference failed, left for retry: {e}"),
                    }
                }
            }
            // Left unacked: the reclaim loop retries it and dead-letters it after N deliveries.
            Err(e) => tracing::error!(task = %run[0].id, "inference failed, left for retry: {e}"),
        }
    }

    /// Runs the model on a batch, extending the claim on its tasks while it runs.
    async fn infer(&self, conn: &mut Conn, run: &[Task]) -> anyhow::Result<Vec<crate::inference::Transcript>> {
        // The engine refuses a language its model cannot do (the whole call fails, and the
        // batch is retried one by one).
        let Some(engine) = self.engine.clone() else {
            self.metrics.observe_inference(run.len(), std::time::Duration::ZERO, 0);
            return Ok(vec![crate::inference::Transcript::default(); run.len()]);
        };
        let audio: Vec<Vec<f32>> = run.iter().map(Task::samples).collect();
        let metas: Vec<TaskMeta> = run.iter().map(|t| t.meta.clone()).collect();
        let started = std::time::Instant::now();
        let mut job = tokio::task::spawn_blocking(move || {
            let prompts: Vec<Option<String>> = metas.iter().map(prompt_for).collect();
            let requests: Vec<Request> = audio
                .iter()
                .zip(&metas)
                .zip(&prompts)
                .map(|((a, m), p)| Request {
                    audio: a,
                    language: m.options.language.as_deref(),
                    prompt: p.as_deref(),
                    // Partials are provisional and must be quick: greedy, no retries, no word times.
                    beam_size: m.options.beam_size.map(usize::from),
                    partial: m.kind == CutKind::Partial,
                    translate: m.options.task == crate::channels::tasks::ModelTask::Translate,
                })
                .collect();
            engine.transcribe_requests(&requests)
        });
        let ids: Vec<String> = run.iter().map(|t| t.id.clone()).collect();
        let mut extend = tokio::time::interval(self.min_idle / 3);
        extend.tick().await;
        let out = loop {
            tokio::select! {
                out = &mut job => break out,
                _ = extend.tick() => {
                    if let Err(e) = tasks::extend_claim(conn, &self.keys, &self.id, &ids).await {
                        tracing::warn!("extending claims failed: {e}");
                    }
                }
            }
        };
        let transcripts = out.map_err(|e| anyhow::anyhow!("inference task panicked: {e}"))??;
        let audio_ms: u64 = run.iter().map(|t| t.meta.end_ms.saturating_sub(t.meta.start_ms)).sum();
        self.metrics.observe_inference(run.len(), started.elapsed(), audio_ms);
        Ok(transcripts)
    }

    async fn publish_and_ack(&self, conn: &mut Conn, run: &[Task], transcripts: Vec<crate::inference::Transcript>) {
        let mut acks = Vec::with_capacity(run.len());
        for (task, tr) in run.iter().zip(transcripts) {
            tracing::debug!(
                session = %task.meta.session, segment = task.meta.segment, kind = ?task.meta.kind,
                ms = task.meta.end_ms - task.meta.start_ms, avg_logprob = tr.avg_logprob,
                no_speech = tr.no_speech_prob, ratio = tr.compression_ratio, "{}", tr.text
            );
            let started = std::time::Instant::now();
            match self.deliver(conn, task, tr).await {
                Ok(()) => {
                    // The publish leg: result plugins and the durable publish.
                    if task.meta.kind == CutKind::Final {
                        self.metrics.final_publish_seconds.observe(started.elapsed().as_secs_f64());
                    }
                    acks.push(task.id.clone())
                }
                Err(e) => tracing::warn!(task = %task.id, "delivery failed, left for redelivery: {e}"),
            }
        }
        match tasks::ack(conn, &self.keys, &acks).await {
            Ok(()) => {
                self.metrics.tasks_acked.inc_by(acks.len() as u64);
            }
            Err(e) => tracing::warn!("ack failed (results are idempotent; redelivery is harmless): {e}"),
        }
    }

    /// What a session hears when its speech was in a language the model does not transcribe
    /// (only English-only models flag it: multilingual ones detect the language).
    fn foreign_speech(&self) -> String {
        format!(
            "this speech does not sound like English, the only language the loaded model ({}) transcribes; its \
             text is withheld rather than guessed. A multilingual model (model.name = \"base\") detects the \
             language and transcribes it",
            self.model_label
        )
    }

    /// Runs the result plugins and publishes to every destination the router chose. Each
    /// publish is idempotent, so a retry after a partial failure duplicates nothing.
    async fn deliver(
        &self,
        conn: &mut Conn,
        task: &Task,
        transcript: crate::inference::Transcript,
    ) -> Result<(), crate::channels::ChannelError> {
        let members = match &task.meta.options.room {
            Some(room) => rooms::members(conn, &self.keys, room).await?,
            None => Vec::new(),
        };
        // Word times go out on the session's clock.
        let words: Vec<Word> = transcript
            .words
            .iter()
            .map(|w| Word {
                text: w.text.clone(),
                start_ms: task.meta.start_ms + w.start_ms,
                end_ms: task.meta.start_ms + w.end_ms,
                probability: w.probability,
            })
            .collect();
        let unsupported_language = transcript.foreign.then(|| self.foreign_speech());
        let out = self.pipeline.run(task, transcript.text, &words, &transcript.language, members).await;
        let payload = ResultPayload {
            words: out.words,
            plugin_error: out.plugin_error,
            unsupported_language,
            language: Some(transcript.language.clone()).filter(|l| !l.is_empty()),
            published_ms: crate::channels::workers::now_ms(),
            ..result_for(task, out.text, None)
        };
        for route in out.routes {
            match route {
                Route::Owner => {
                    results::publish(conn, &self.keys, &self.policy, &task.meta.reply, &payload, &crate::ids::short())
                        .await?;
                }
                Route::Session(id) => {
                    let Some(channel) = results::session_channel(conn, &self.keys, &id).await? else { continue };
                    let copy =
                        ResultPayload { session: id, origin: Some(task.meta.session.clone()), ..payload.clone() };
                    results::publish(conn, &self.keys, &self.policy, &channel, &copy, &crate::ids::short()).await?;
                }
                Route::Archive(name) => {
                    let json = serde_json::to_string(&payload).unwrap_or_default();
                    crate::channels::archive(conn, &self.keys, &name, &json).await?;
                }
            }
        }
        Ok(())
    }

    /// Recovers tasks of dead or stuck workers: dead-letters those delivered too often (and tells
    /// their sessions), claims the rest for this worker, and trims the stream below what the
    /// group still needs.
    async fn reclaim(&self, conn: &mut Conn) -> anyhow::Result<Vec<Task>> {
        let min_idle = self.min_idle.as_millis() as u64;
        for s in tasks::stale(conn, &self.keys, min_idle, 100).await? {
            if s.deliveries < self.max_deliveries {
                continue;
            }
            let task = tasks::fetch(conn, &self.keys, &s.id).await?;
            let reason = format!("failed {} deliveries (last on {})", s.deliveries, s.consumer);
            tasks::dead_letter(conn, &self.keys, &s.id, task.as_ref().map(|t| &t.meta), &reason, s.deliveries).await?;
            self.metrics.tasks_dead_lettered.inc();
            tracing::error!(task = %s.id, "dead-lettered: {reason}");
            if let Some(task) = task {
                let payload =
                    result_for(&task, String::new(), Some(format!("segment could not be transcribed: {reason}")));
                results::publish(conn, &self.keys, &self.policy, &task.meta.reply, &payload, &crate::ids::short())
                    .await?;
            }
        }
        let (claimed, bad) = tasks::reclaim(conn, &self.keys, &self.id, min_idle, self.batch_size).await?;
        for (id, why) in bad {
            tasks::dead_letter(conn, &self.keys, &id, None, &format!("unparseable: {why}"), 0).await?;
            self.metrics.tasks_dead_lettered.inc();
        }
        if !claimed.is_empty() {
            self.metrics.tasks_reclaimed.inc_by(claimed.len() as u64);
            tracing::info!(worker = %self.id, "reclaimed {} stale task(s)", claimed.len());
        }
        let trimmed = tasks::trim(conn, &self.keys).await?;
        if trimmed > 0 {
            tracing::debug!("trimmed {trimmed} acknowledged task(s)");
        }
        Ok(claimed)
    }
}

/// The decoder prompt of a task: the session's prompt, then its hotwords (as faster-whisper
/// does), so that the model is primed to spell them.
fn prompt_for(meta: &TaskMeta) -> Option<String> {
    let hot = meta.options.hotwords.join(", ");
    match (meta.options.prompt.as_deref().map(str::trim).filter(|p| !p.is_empty()), hot.is_empty()) {
        (None, true) => None,
        (None, false) => Some(hot),
        (Some(p), true) => Some(p.to_string()),
        (Some(p), false) => Some(format!("{hot}. {p}")),
    }
}

fn result_for(task: &Task, text: String, error: Option<String>) -> ResultPayload {
    ResultPayload {
        session: task.meta.session.clone(),
        segment: task.meta.segment,
        kind: task.meta.kind,
        rev: task.meta.rev,
        text,
        start_ms: task.meta.start_ms,
        end_ms: task.meta.end_ms,
        words: Vec::new(),
        error,
        plugin_error: None,
        unsupported_language: None,
        enqueued_ms: task.meta.enqueued_ms,
        published_ms: 0,
        origin: None,
        language: None,
    }
}

async fn heartbeat(
    mut conn: Conn,
    keys: Keys,
    id: String,
    mut stats: WorkerStats,
    (metrics, pipeline): (Arc<Metrics>, Arc<Pipeline>),
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(workers::INTERVAL_MS));
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {
                stats.batches = metrics.inference_batches.get();
                stats.segments = metrics.inference_segments.get();
                stats.audio_ms = metrics.inference_audio_ms.get();
                stats.busy_ms = metrics.inference_ms.get();
                stats.plugin_errors = metrics.plugin_errors.get();
                stats.reclaimed = metrics.tasks_reclaimed.get();
                stats.dead_lettered = metrics.tasks_dead_lettered.get();
                // Versions change with hot swaps: report what runs now.
                stats.plugins = pipeline.labels();
                if let Err(e) = workers::beat(&mut conn, &keys, &id, &stats).await {
                    tracing::warn!("heartbeat failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(prompt: Option<&str>, hotwords: &[&str]) -> TaskMeta {
        let options = crate::channels::tasks::TaskOptions {
            hotwords: hotwords.iter().map(|h| h.to_string()).collect(),
            prompt: prompt.map(str::to_string),
            ..Default::default()
        };
        TaskMeta::new("s", 0, CutKind::Final, "r", (0, 1000), options)
    }

    #[test]
    fn hotwords_lead_the_prompt() {
        assert_eq!(prompt_for(&meta(None, &[])), None);
        assert_eq!(prompt_for(&meta(Some("  "), &[])), None);
        assert_eq!(prompt_for(&meta(None, &["Kiki", "Redis"])).as_deref(), Some("Kiki, Redis"));
        assert_eq!(prompt_for(&meta(Some("A meeting."), &[])).as_deref(), Some("A meeting."));
        assert_eq!(prompt_for(&meta(Some("A meeting."), &["Kiki"])).as_deref(), Some("Kiki. A meeting."));
    }
}
