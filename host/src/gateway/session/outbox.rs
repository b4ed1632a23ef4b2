//! What a session sends to the workers: each cut of its audio as a task on the stream.
//! Partials are provisional (shed under backlog, at most one per 250 ms of audio, dropped when
//! Redis cannot take them); finals are never shed: they queue in order through the ledger,
//! which keeps each one's audio until its result is delivered, so a final that cannot be
//! queued now (Redis away) or whose task vanished (Redis came back empty) is queued again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::super::AppState;
use super::ledger::Ledger;
use crate::audio::SAMPLE_RATE;
use crate::channels::tasks::{self, TaskMeta, TaskOptions};
use crate::plugins::CutKind;

/// Least audio between two partials of a session (250 ms).
const MIN_PARTIAL_GAP: u64 = SAMPLE_RATE as u64 / 4;

pub struct Outbox {
    session: String,
    options: TaskOptions,
    /// No partials asked for (`partial_ms = 0`): any partial the segmenter cuts is shed.
    paced_by_workers: bool,
    /// The current utterance's id; lower ids are final (or belong to earlier connections).
    segment: u64,
    /// The revision of the current utterance's last partial.
    rev: u32,
    /// End (absolute sample) of the last partial queued.
    last_partial_end: u64,
    /// Finals cut and not yet delivered, with their tasks and audio.
    pub ledger: Ledger,
    /// Results waiting unsent on the session's connection (its owner), told to the routers.
    unsent: Arc<AtomicU32>,
}

/// What one pass over the finals waiting for Redis did.
pub struct Queued {
    /// Queued now.
    pub queued: usize,
    /// Still waiting (Redis refused the first of them).
    pub waiting: usize,
}

impl Outbox {
    pub fn new(
        session: String,
        options: TaskOptions,
        paced_by_workers: bool,
        next_segment: u64,
        unsent: Arc<AtomicU32>,
    ) -> Self {
        let ledger = Ledger::default();
        Self { session, options, paced_by_workers, segment: next_segment, rev: 0, last_partial_end: 0, ledger, unsent }
    }

    /// The segment the next cut belongs to.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    pub fn paced_by_workers(&self) -> bool {
        self.paced_by_workers
    }

    /// Numbers a final answered without a task (a client-cut utterance too short for words).
    pub fn skip_segment(&mut self) -> u64 {
        self.segment += 1;
        self.segment - 1
    }

    /// Queues `[start, end)` (absolute samples) whose audio is `pcm` (s16le). A final takes the
    /// next segment id and is kept in the ledger until its result is delivered.
    pub async fn send(&mut self, state: &AppState, kind: CutKind, start: u64, end: u64, pcm: &[u8]) {
        // Under backlog, partials are shed first; finals are never shed. A segmenter asking for
        // partials more often than every MIN_PARTIAL_GAP of audio (say `partial_ms = 20`: 348
        // tasks for an 11 s clip) is held to it here, whatever the plugin's manifest allows.
        if kind == CutKind::Partial {
            if self.paced_by_workers {
                return;
            }
            let backlog = state.backlog.load(Ordering::Relaxed);
            if backlog > state.cfg.channels.shed_partials_backlog || end < self.last_partial_end + MIN_PARTIAL_GAP {
                state.metrics.partials_shed.inc();
                return;
            }
            self.last_partial_end = end;
            self.rev += 1;
        }
        let ms = |s: u64| s * 1000 / u64::from(SAMPLE_RATE);
        let mut meta = TaskMeta::new(
            &self.session,
            self.segment,
            kind,
            &state.channel,
            (ms(start), ms(end)),
            self.options.clone(),
        );
        meta.owner_backlog = self.unsent.load(Ordering::Relaxed);
        if kind == CutKind::Partial {
            meta.rev = self.rev;
            let mut conn = state.redis.clone();
            // A partial is provisional: if Redis cannot take it now, the next one replaces it.
            match tasks::enqueue(&mut conn, &state.keys, &meta, pcm).await {
                Ok(_) => {
                    state.metrics.tasks_enqueued.inc();
                }
                Err(e) => {
                    state.metrics.partials_shed.inc();
                    tracing::debug!(session = %self.session, "partial not queued (it is provisional): {e}");
                }
            }
            return;
        }
        // Finals queue in order, through the ledger: behind any that still wait for Redis.
        self.ledger.add(meta, pcm.to_vec(), None);
        if self.queue_waiting(state).await.waiting > 0 {
            state.metrics.tasks_deferred.inc();
            tracing::warn!(session = %self.session, segment = self.segment, "final kept until Redis takes it");
        }
        self.segment += 1;
        self.rev = 0;
    }

    /// Queues the finals that wait for Redis, in order, until one fails.
    pub async fn queue_waiting(&mut self, state: &AppState) -> Queued {
        let waiting = self.ledger.unqueued();
        if waiting.is_empty() {
            return Queued { queued: 0, waiting: 0 };
        }
        let mut conn = state.redis.clone();
        let mut done = Vec::new();
        for u in &waiting {
            match tasks::enqueue(&mut conn, &state.keys, u.meta, u.pcm).await {
                Ok(id) => done.push((u.segment, id)),
                Err(e) => {
                    tracing::debug!(session = %self.session, segment = u.segment, "final not queued yet: {e}");
                    break;
                }
            }
        }
        let counts = Queued { queued: done.len(), waiting: waiting.len() - done.len() };
        state.metrics.tasks_enqueued.inc_by(done.len() as u64);
        for (segment, id) in done {
            self.ledger.queued(segment, id);
        }
        counts
    }

    /// Finals that took too long and whose task is gone from the stream: asked before the
    /// replay stream is read (a worker writes a result before its task is acknowledged and
    /// trimmed, so a task gone now has its result there, unless Redis lost both).
    pub async fn vanished(&mut self, state: &AppState) -> Option<Vec<(u64, String)>> {
        let overdue = Duration::from_millis(state.cfg.channels.overdue_final_ms.max(100));
        let due = self.ledger.overdue(Instant::now(), overdue);
        if due.is_empty() {
            return None;
        }
        state.metrics.overdue_finals.inc_by(due.len() as u64);
        let mut conn = state.redis.clone();
        let mut gone = Vec::new();
        for (segment, task) in due {
            if let Ok(false) = tasks::exists(&mut conn, &state.keys, &task).await {
                gone.push((segment, task));
            }
        }
        Some(gone)
    }

    /// Queues again, from the audio kept, the finals among `gone` still undelivered (after the
    /// replay stream was read): Redis lost them with its data.
    pub async fn requeue(&mut self, state: &AppState, gone: Vec<(u64, String)>) {
        let mut lost = false;
        for (segment, task) in gone {
            if self.ledger.contains(segment) {
                tracing::warn!(session = %self.session, segment, %task, "final's task vanished from Redis: queued again");
                state.metrics.tasks_requeued.inc();
                self.ledger.lost(segment);
                lost = true;
            }
        }
        if lost {
            self.queue_waiting(state).await;
        }
    }
}
