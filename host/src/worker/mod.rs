//! The worker role: read tasks from the stream, batch them across sessions, run the model,
//! publish each result durably, then acknowledge.

mod batch;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::channels::results::{self, ReplayPolicy, ResultPayload};
use crate::channels::tasks::{self, Task};
use crate::channels::{self, Keys, workers};
use crate::config::Config;
use crate::inference::Engine;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

pub use batch::coalesce;

/// How long one XREADGROUP waits for the first task.
const BLOCK: Duration = Duration::from_millis(1000);

pub struct Worker {
    pub id: String,
    keys: Keys,
    client: redis::Client,
    engine: Arc<Engine>,
    batch_size: usize,
    batch_wait: Duration,
    policy: ReplayPolicy,
    metrics: Arc<Metrics>,
}

impl Worker {
    pub fn new(cfg: &Config, client: redis::Client, engine: Arc<Engine>, metrics: Arc<Metrics>) -> Self {
        let id =
            cfg.worker.id.clone().unwrap_or_else(|| format!("worker-{}-{}", std::process::id(), crate::ids::short()));
        Self {
            id,
            keys: Keys::new(&cfg.channels.prefix),
            client,
            engine,
            batch_size: cfg.worker.batch_size.max(1),
            batch_wait: Duration::from_millis(cfg.worker.batch_wait_ms),
            policy: ReplayPolicy { max_len: cfg.channels.replay_len, ttl_s: cfg.channels.replay_ttl_s, sharded: false },
            metrics,
        }
    }

    /// Runs until shutdown. Redis outages are waited out; nothing here gives up on a task.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut conn = channels::manager(&self.client).await.context("worker: connecting to Redis")?;
        tasks::ensure_group(&mut conn, &self.keys).await.context("worker: creating the consumer group")?;
        let mut reader = channels::blocking_connection(&self.client, BLOCK).await?;
        tracing::info!(worker = %self.id, "worker ready");
        let beat = tokio::spawn(heartbeat(conn.clone(), self.keys.clone(), self.id.clone(), shutdown.clone()));
        while !shutdown.is_triggered() {
            let batch = tokio::select! {
                _ = shutdown.wait() => break,
                b = self.next_batch(&mut reader) => b,
            };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("worker: reading tasks: {e:#}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Ok(c) = channels::blocking_connection(&self.client, BLOCK).await {
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

    async fn next_batch(&self, reader: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<Vec<Task>> {
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

    async fn process(&self, conn: &mut redis::aio::ConnectionManager, batch: Vec<Task>) {
        let (run, skipped) = coalesce(batch);
        let mut acks: Vec<String> = skipped;
        let engine = self.engine.clone();
        let audio: Vec<Vec<f32>> = run.iter().map(Task::samples).collect();
        let started = std::time::Instant::now();
        let out = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[f32]> = audio.iter().map(Vec::as_slice).collect();
            engine.transcribe(&refs)
        })
        .await;
        let elapsed = started.elapsed();
        let transcripts = match out {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                // Left unacked: the reclaim loop retries it and dead-letters it after N tries.
                tracing::error!("inference failed for a batch of {}: {e}", run.len());
                return;
            }
            Err(e) => {
                tracing::error!("inference task panicked: {e}");
                return;
            }
        };
        let audio_ms: u64 = run.iter().map(|t| t.meta.end_ms.saturating_sub(t.meta.start_ms)).sum();
        self.metrics.observe_inference(run.len(), elapsed, audio_ms);
        for (task, tr) in run.iter().zip(transcripts) {
            tracing::debug!(
                session = %task.meta.session, segment = task.meta.segment, kind = ?task.meta.kind,
                ms = task.meta.end_ms - task.meta.start_ms, avg_logprob = tr.avg_logprob,
                no_speech = tr.no_speech_prob, ratio = tr.compression_ratio, "{}", tr.text
            );
            let payload = ResultPayload {
                session: task.meta.session.clone(),
                segment: task.meta.segment,
                kind: task.meta.kind,
                rev: task.meta.rev,
                text: tr.text,
                start_ms: task.meta.start_ms,
                end_ms: task.meta.end_ms,
                words: Vec::new(),
                error: None,
                enqueued_ms: task.meta.enqueued_ms,
            };
            match results::publish(conn, &self.keys, &self.policy, &task.meta.reply, &payload, &crate::ids::short())
                .await
            {
                Ok(_) => acks.push(task.id.clone()),
                Err(e) => tracing::warn!(task = %task.id, "publish failed, left for redelivery: {e}"),
            }
        }
        match tasks::ack(conn, &self.keys, &acks).await {
            Ok(()) => {
                self.metrics.tasks_acked.inc_by(acks.len() as u64);
            }
            Err(e) => tracing::warn!("ack failed (results are idempotent; redelivery is harmless): {e}"),
        }
    }
}

async fn heartbeat(mut conn: redis::aio::ConnectionManager, keys: Keys, id: String, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(workers::INTERVAL_MS));
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {
                if let Err(e) = workers::beat(&mut conn, &keys, &id).await {
                    tracing::warn!("heartbeat failed: {e}");
                }
            }
        }
    }
}
