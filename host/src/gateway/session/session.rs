//! One transcription session: its audio ([`AudioIn`]) through the segmenter
//! ([`SegmenterDriver`]), or, for clients that cut their own utterances, straight to a final;
//! cuts to the workers ([`Outbox`]); results back in order ([`Inbox`]). This type wires them
//! together and owns what they share: the session's id, its room and its resume point.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use tokio::sync::mpsc;

use super::super::AppState;
use super::super::auth::Principal;
use super::super::protocol::{ErrorCode, Segment, ServerMessage, Start};
use super::audio_in::{AudioIn, FrameIn};
use super::choices::Choices;
use super::driver::{Fed, SegmenterDriver, SegmenterEnv};
use super::inbox::Inbox;
use super::outbox::Outbox;
use super::start;
use crate::audio::{self, SAMPLE_RATE};
use crate::channels::results;
use crate::channels::rooms;
use crate::channels::subscriber::Delivery;
use crate::channels::tasks::TaskOptions;
use crate::plugins::{Cut, CutKind};

/// Samples kept before the last final's end, for a segmenter's pre-roll padding.
const KEEP_BEFORE: u64 = SAMPLE_RATE as u64;
/// How far a release must move the resume point before it is written (5 s of audio).
const RELEASE_SAVE_EVERY: u64 = 5 * SAMPLE_RATE as u64;
/// A client-cut utterance shorter than this is answered with an empty final, without a task.
const MIN_UTTERANCE: usize = SAMPLE_RATE as usize / 10;

/// A started session.
pub struct Session {
    pub id: String,
    room: Option<String>,
    audio: AudioIn,
    driver: SegmenterDriver,
    outbox: Outbox,
    inbox: Inbox,
    /// The resume point last written to Redis.
    progress_saved: u64,
    /// Some(..) when the client asked to resume: whether it could.
    recovered: Option<bool>,
    pub resume_token: String,
}

impl Session {
    /// Opens (or resumes) a session; its results arrive on `inbox`.
    pub async fn open(
        state: &AppState,
        principal: &Principal,
        start: Start,
        inbox: &mpsc::UnboundedSender<(String, Delivery)>,
        unsent: Arc<AtomicU32>,
    ) -> Result<Self, ServerMessage> {
        let backlog = state.backlog.load(std::sync::atomic::Ordering::Relaxed);
        if backlog > state.cfg.channels.max_backlog {
            state.metrics.sessions_refused.inc();
            let message = format!("server busy ({backlog} segments queued); retry after a few seconds");
            return Err(ServerMessage::error(ErrorCode::Busy, message));
        }
        start::check(&start)?;
        state
            .check_language(start.language.as_deref())
            .map_err(|e| ServerMessage::error(ErrorCode::InvalidOption, e))?;
        let choices = Choices::parse(&start.plugins)?;
        choices.check_result_plugins(&state.cfg)?;
        let (plugin, instance) = start::segmenter(state, &choices.segmenter).await?;
        let room = start.room.as_deref().map(|r| start::room_for(state, principal, r)).transpose()?;
        let subject = principal.subject.as_deref();
        let (id, epoch, last_seq, resumed) = Self::attach(state, &start, subject).await?;
        let (next_segment, position) = resumed.as_ref().map_or((0, 0), |st| (st.next_segment, st.position));
        if let Some(room) = &room {
            let mut conn = state.redis.clone();
            rooms::join(&mut conn, &state.keys, room, &id).await.map_err(redis_away)?;
        }
        let keep = state.cfg.gateway.max_segment_s.max(1) as usize * SAMPLE_RATE as usize;
        let audio = AudioIn::new(start.format, start.sample_rate, position, keep, state.speech.clone())
            .map_err(|e| ServerMessage::error(ErrorCode::UnsupportedFormat, e.to_string()))?;
        let options = choices.segmenter.options;
        // A session that asks for no partials is file-like: paced by the workers, not by speed.
        let paced_by_workers = options.iter().any(|(k, v)| k == "partial_ms" && v.trim() == "0");
        let task_options = TaskOptions {
            language: start.language,
            hotwords: start.hotwords,
            room: room.clone(),
            prompt: start.prompt,
            beam_size: start.beam_size,
            postprocessor: choices.postprocessor,
            router: choices.router,
            task: Default::default(),
        };
        state.dispatcher.register(&id, inbox.clone());
        state.metrics.sessions_total.inc();
        tracing::debug!(session = %id, plugin = %instance.label(), "session started");
        Ok(Self {
            driver: SegmenterDriver::new(instance, plugin.name.clone(), options, position, id.clone()),
            outbox: Outbox::new(id.clone(), task_options, paced_by_workers, next_segment, unsent),
            inbox: Inbox::new(id.clone(), epoch.clone(), last_seq, next_segment),
            resume_token: state.auth.resume_token(&id, &epoch, subject),
            recovered: start.resume.as_ref().map(|_| resumed.is_some()),
            progress_saved: position,
            room,
            audio,
            id,
        })
    }

    /// The session a `start` names: the one its resume token names, if that can go on (its
    /// results now follow it here; the token is signed, so a client resumes only a session it
    /// was given), else a new one. (id, epoch, last seq the client has, resumed state).
    async fn attach(
        state: &AppState,
        start: &Start,
        subject: Option<&str>,
    ) -> Result<(String, String, u64, Option<results::SessionState>), ServerMessage> {
        let mut conn = state.redis.clone();
        let ttl = state.cfg.channels.replay_ttl_s;
        let claimed =
            start.resume.as_ref().and_then(|r| Some((state.auth.verify_resume(&r.token, subject)?, r.last_seq)));
        if let Some(((session, epoch), last_seq)) = claimed
            && let Some(st) = results::attach_session(&mut conn, &state.keys, &session, &state.channel, ttl)
                .await
                .map_err(redis_away)?
        {
            let oldest = results::oldest_replayable(&mut conn, &state.keys, &session).await.map_err(redis_away)?;
            if start::resumable(&epoch, last_seq, &st, oldest) {
                return Ok((session, st.epoch.clone(), last_seq, Some(st)));
            }
        }
        let (id, epoch) = (crate::ids::long(), crate::ids::short());
        results::open_session(&mut conn, &state.keys, &id, &epoch, &state.channel, ttl).await.map_err(redis_away)?;
        Ok((id, epoch, 0, None))
    }

    /// The `ready` message, and what a resumed client missed (it follows at once, in order).
    pub async fn ready(&mut self, state: &AppState) -> Vec<ServerMessage> {
        let recovered = self.recovered == Some(true);
        let mut out = vec![ServerMessage::Ready {
            session: self.id.clone(),
            epoch: self.inbox.epoch().to_string(),
            sample_rate: self.audio.rate(),
            resume_token: self.resume_token.clone(),
            recovered: self.recovered,
            position_ms: recovered.then(|| audio::samples_to_ms(self.audio.first_position as usize)),
        }];
        if recovered {
            self.inbox.replay(state, &mut self.outbox, &mut out).await;
        }
        out
    }

    /// Seconds of audio in a frame of `len` bytes in the session's format.
    pub fn frame_seconds(&self, len: usize) -> f64 {
        self.audio.frame_seconds(len)
    }

    /// Finals cut and not yet delivered.
    pub fn outstanding(&self) -> usize {
        self.outbox.ledger.outstanding()
    }

    /// Milliseconds of audio cut and awaiting its finals.
    pub fn held_ms(&self) -> u64 {
        self.outbox.ledger.held_ms()
    }

    /// Whether the session asked for no partials: it may send as fast as the workers keep up.
    pub fn paced_by_workers(&self) -> bool {
        self.outbox.paced_by_workers()
    }

    /// The segmenter failed and the session is to end (`plugins.on_failure = "error"`).
    pub fn failed(&self) -> bool {
        self.driver.failed()
    }

    /// Audio in since the connection started, in ms: the session's length so far.
    pub fn audio_ms(&self) -> u64 {
        self.audio.audio_ms()
    }

    /// What the client hears of finals that were never queued (Redis stayed away until the
    /// session ended): one `segment_failed` each.
    pub fn never_queued(&self) -> Vec<ServerMessage> {
        let told = |segment| {
            let message =
                format!("segment {segment} could not be queued: Redis did not answer before the session ended");
            ServerMessage::segment_error(ErrorCode::SegmentFailed, message, segment, true)
        };
        self.outbox.ledger.unqueued().into_iter().map(|u| told(u.segment)).collect()
    }

    /// The session's `end`: its finals delivered on this connection.
    pub fn end_message(&self) -> ServerMessage {
        ServerMessage::End { segments: self.inbox.finals_delivered() }
    }

    /// Leaves the dispatcher and the session's room (the socket or the session ended).
    pub async fn leave(self, state: &AppState) {
        state.dispatcher.unregister(&self.id);
        if let Some(room) = &self.room {
            let mut conn = state.redis.clone();
            let _ = rooms::leave(&mut conn, &state.keys, room, &self.id).await;
        }
    }

    fn env(state: &AppState) -> SegmenterEnv<'_> {
        SegmenterEnv { catalog: &state.segmenters, on_failure: state.cfg.plugins.on_failure, metrics: &state.metrics }
    }

    pub async fn on_audio(&mut self, state: &AppState, bytes: &[u8]) -> Vec<ServerMessage> {
        match self.audio.push_frame(bytes, &state.metrics) {
            Ok(0) => return Vec::new(),
            Ok(_) => {}
            Err(FrameIn::Bad(e)) => {
                state.metrics.protocol_errors.inc();
                return vec![ServerMessage::error(ErrorCode::BadFrame, e.to_string())];
            }
            Err(FrameIn::Resample(e)) => return vec![ServerMessage::error(ErrorCode::Internal, e.to_string())],
        }
        let fed = self.driver.feed(&Self::env(state), &self.audio, self.audio.feedable());
        // The endpoint leg of each final's latency: how much audio past the cut's end the
        // segmenter heard before it cut (its hangover, less the tail it keeps), on the audio
        // clock, which is the wall clock for a live client.
        for c in fed.cuts.iter().filter(|c| c.kind == CutKind::Final && !c.is_release()) {
            let waited = self.audio.buf.end().saturating_sub(c.end);
            state.metrics.final_endpoint_seconds.observe(waited as f64 / f64::from(SAMPLE_RATE));
        }
        self.take(state, fed).await
    }

    /// One utterance the client cut itself: resampled, queued as the session's next final. One
    /// too short to hold a word is answered at once with an empty final.
    pub async fn on_utterance(&mut self, state: &AppState, samples: Vec<f32>, rate: u32) -> Vec<ServerMessage> {
        let samples = match audio::resample(&samples, rate, SAMPLE_RATE) {
            Ok(s) => s,
            Err(e) => return vec![ServerMessage::error(ErrorCode::UnsupportedFormat, e.to_string())],
        };
        let start = self.audio.buf.end();
        // Kept, but not for the segmenter, whose clock skips it.
        self.audio.push(&samples, &state.metrics);
        let end = self.audio.buf.end();
        self.driver.skip_to(end);
        if samples.len() < MIN_UTTERANCE {
            self.inbox.count_final();
            return vec![ServerMessage::Final(Segment {
                seq: self.inbox.last_seq(),
                segment: self.outbox.skip_segment(),
                text: String::new(),
                start_ms: audio::samples_to_ms(start as usize),
                end_ms: audio::samples_to_ms(end as usize),
                words: Vec::new(),
                origin: None,
                stable: None,
            })];
        }
        // Sent whole, not sliced from the buffer: a client-cut utterance may be longer than the
        // buffer keeps.
        self.outbox.send(state, CutKind::Final, start, end, &audio::to_s16le(&samples)).await;
        self.final_sent(state, end).await;
        Vec::new()
    }

    /// The end of the audio: the segmenter's last cuts.
    pub async fn finish(&mut self, state: &AppState) -> Vec<ServerMessage> {
        let fed = self.driver.finish(&Self::env(state), &self.audio);
        self.take(state, fed).await
    }

    /// Applies what the segmenter gave: each cut queued, releases let go of audio; at a final
    /// boundary the session moves to a newly activated segmenter version, whose replay may cut
    /// again.
    async fn take(&mut self, state: &AppState, mut fed: Fed) -> Vec<ServerMessage> {
        let mut replies = Vec::new();
        loop {
            replies.append(&mut fed.notices);
            if let Some(to) = fed.skipped_to {
                // A resumed session must not be fed that audio again either.
                self.save_progress(state, to).await;
            }
            let mut boundary = false;
            for cut in std::mem::take(&mut fed.cuts) {
                if cut.is_release() {
                    self.audio.buf.forget_before(cut.start);
                    if cut.start >= self.progress_saved + RELEASE_SAVE_EVERY {
                        self.save_progress(state, cut.start).await;
                    }
                    continue;
                }
                boundary |= cut.kind == CutKind::Final;
                self.send_cut(state, cut, &mut replies).await;
            }
            match boundary.then(|| self.driver.switch_if_newer(&Self::env(state), &self.audio)).flatten() {
                Some(next) => fed = next,
                None => return replies,
            }
        }
    }

    /// Queues a cut of the kept audio; `replies` gets what the client should hear of it besides.
    async fn send_cut(&mut self, state: &AppState, cut: Cut, replies: &mut Vec<ServerMessage>) {
        let (start, end) = self.audio.buf.clamp(cut.start, cut.end);
        if end <= start {
            return;
        }
        if start > cut.start && cut.kind == CutKind::Final {
            // The segmenter let an utterance run past what the gateway keeps (a segmenter option
            // above `gateway.max_segment_s`): say what was not transcribed rather than hide it.
            state.metrics.plugin_errors.inc();
            let segment = self.outbox.segment();
            let message = format!(
                "the segmenter cut segment {segment} longer than gateway.max_segment_s ({} s): its first {} ms \
                 were not kept; its final follows",
                state.cfg.gateway.max_segment_s,
                (start - cut.start) * 1000 / u64::from(SAMPLE_RATE)
            );
            replies.push(ServerMessage::segment_error(ErrorCode::PluginFailed, message, segment, false));
        }
        let pcm = self.audio.buf.s16le(start, end);
        self.outbox.send(state, cut.kind, start, end, &pcm).await;
        if cut.kind == CutKind::Final {
            self.final_sent(state, end).await;
        }
    }

    /// After a final is queued: the resume point moves to its end, and only a little audio
    /// before it is kept (the next utterance's pre-roll).
    async fn final_sent(&mut self, state: &AppState, end: u64) {
        self.save_progress(state, end).await;
        self.audio.buf.forget_before(end.saturating_sub(KEEP_BEFORE));
    }

    /// Where a resumed session goes on (`ready.position_ms`; the client resends from there):
    /// nothing before `at` is needed again. Written at the end of each final, in a pause the
    /// segmenter released (every few seconds of it, not each second), and past skipped audio.
    async fn save_progress(&mut self, state: &AppState, at: u64) {
        self.progress_saved = at;
        let mut conn = state.redis.clone();
        if let Err(e) = results::set_progress(&mut conn, &state.keys, &self.id, self.outbox.segment(), at).await {
            tracing::debug!(session = %self.id, "resume point not saved: {e}");
        }
    }

    /// A result for this session, applied in order.
    pub async fn on_delivery(&mut self, state: &AppState, delivery: Delivery) -> Vec<ServerMessage> {
        self.inbox.on_delivery(state, &mut self.outbox, delivery).await
    }

    /// Once a second: queue the finals that wait for Redis, and look for overdue ones. A final
    /// that takes too long may have been published while nothing else followed to reveal the
    /// gap (a lost Pub/Sub message, or a worker that died between its write and its publish on
    /// a cluster): it is looked for in the replay stream, which has every written result. One
    /// found neither there nor as a task on the stream was lost with Redis's data (a restart
    /// without persistence): it is queued again from the audio kept for it.
    pub async fn tick(&mut self, state: &AppState) -> Vec<ServerMessage> {
        let kept = self.outbox.queue_waiting(state).await.queued;
        if kept > 0 {
            tracing::info!(session = %self.id, "{kept} kept final(s) queued");
        }
        let mut out = Vec::new();
        if let Some(gone) = self.outbox.vanished(state).await {
            self.inbox.replay(state, &mut self.outbox, &mut out).await;
            self.outbox.requeue(state, gone).await;
        }
        out
    }
}

/// Redis did not take a session's state: the client may retry.
fn redis_away(e: crate::channels::ChannelError) -> ServerMessage {
    ServerMessage::error(ErrorCode::Busy, format!("cannot reach Redis: {e}"))
}
