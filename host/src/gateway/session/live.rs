//! One transcription session: its audio through the segmenter (or, for clients that cut their
//! own utterances, straight to a final task), tasks on the stream, results applied in `seq`
//! order with duplicates dropped and gaps filled from the replay stream.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::AppState;
use super::super::auth::Principal;
use super::super::protocol::{ErrorCode, Segment, ServerMessage, Start};
use crate::audio::{self, PcmFormat, SAMPLE_RATE, StreamResampler};
use crate::channels::results::{self, Sequenced};
use crate::channels::rooms;
use crate::channels::subscriber::Delivery;
use crate::channels::tasks::PluginChoice;
use crate::channels::tasks::{self, TaskMeta};
use crate::channels::workers::now_ms;
use crate::config::OnFailure;
use crate::plugins::{CatalogError, Cut, CutKind, SegmenterInstance, SegmenterPlugin};

use super::audio_buf::AudioBuf;
use super::choices::{self, Choices};
use super::ledger::Ledger;
use super::settled::settled_chars;
use super::speech::SpeechProbs;

/// Samples kept before the last final's end, for a segmenter's pre-roll padding.
const KEEP_BEFORE: u64 = SAMPLE_RATE as u64;
/// Widest beam a session may ask for: each beam is one more decoder row per step.
const MAX_BEAM: u8 = 8;
/// How far a release must move the resume point before it is written (5 s of audio).
const RELEASE_SAVE_EVERY: u64 = 5 * SAMPLE_RATE as u64;
/// Whisper keeps at most 223 prompt tokens; this is a generous bound on the text (the prompt,
/// and the hotwords, which lead it).
pub const MAX_PROMPT_BYTES: usize = 2_000;
const MAX_HOTWORDS: usize = 200;
/// Longest language code (BCP 47 tags a client might send are far shorter).
pub const MAX_LANGUAGE_BYTES: usize = 16;
/// Least audio between two partials of a session (250 ms).
const MIN_PARTIAL_GAP: u64 = SAMPLE_RATE as u64 / 4;
/// Longest room name.
const MAX_ROOM_BYTES: usize = 200;
/// A client-cut utterance shorter than this is answered with an empty final, without a task.
const MIN_UTTERANCE: usize = SAMPLE_RATE as usize / 10;

/// A started session.
pub struct Live {
    pub id: String,
    epoch: String,
    rate: u32,
    format: PcmFormat,
    language: Option<String>,
    hotwords: Vec<String>,
    prompt: Option<String>,
    beam_size: Option<u8>,
    room: Option<String>,
    resampler: StreamResampler,
    segmenter: SegmenterInstance,
    /// The segmenter the session runs, by name (its live version may change at a boundary).
    seg_name: String,
    /// Options the client gave the segmenter, reused when the instance is replaced.
    seg_options: Vec<(String, String)>,
    /// No partials asked for (`partial_ms = 0`): the session is file-like, paced by the workers
    /// (the audio it holds) instead of a speed limit, and any partial its segmenter cuts is shed.
    paced_by_workers: bool,
    /// The result plugins the session chose, passed to the workers with each task.
    postprocessor: Option<PluginChoice>,
    router: Option<PluginChoice>,
    /// The segmenter failed and `plugins.on_failure = "error"` (or kept failing): the session ends.
    failed: bool,
    /// Segmenter failures since it last handled audio: bounds the restart-and-replay loop when
    /// the audio itself makes the plugin fail every time.
    seg_failures: u32,
    /// Absolute sample at which the current segmenter instance started.
    seg_offset: u64,
    /// Absolute sample up to which the current instance has been fed.
    seg_fed: u64,
    /// Silero's speech probability per 32 ms (`gateway.speech_prob`): audio reaches the
    /// segmenter once its chunk has one.
    speech: Option<SpeechProbs>,
    /// End of the last final cut (or a later release): where a replacement instance takes over.
    last_final_end: u64,
    /// The resume point last written to Redis.
    progress_saved: u64,
    /// Recent audio at 16 kHz, by absolute sample.
    buf: AudioBuf,
    /// Absolute sample at which this connection's audio began (a resumed session's clock goes on).
    first_position: u64,
    /// Current utterance's id and the revision of its last partial.
    segment: u64,
    /// First segment id of this connection; lower ids belong to earlier connections (resume).
    first_segment: u64,
    /// Some(..) when the client asked to resume: whether it could.
    pub recovered: Option<bool>,
    rev: u32,
    /// End (absolute sample) of the last partial queued.
    last_partial_end: u64,
    /// The last partial delivered (segment, text): the next one's settled prefix is measured
    /// against it.
    last_partial: Option<(u64, String)>,
    /// Finals cut and not yet delivered, with their tasks and audio (queued again if lost).
    ledger: Ledger,
    /// Epochs this session's results had before Redis lost its state: their late messages
    /// are applied without sequence checks (finals still once per segment).
    retired_epochs: Vec<String>,
    finals_delivered: u64,
    last_seq: u64,
    scratch: Vec<f32>,
    pub resume_token: String,
}

impl Live {
    /// Opens (or resumes) a session; its results arrive on `inbox`.
    pub async fn open(
        state: &Arc<AppState>,
        principal: &Principal,
        start: Start,
        inbox: &mpsc::UnboundedSender<(String, Delivery)>,
    ) -> Result<Self, ServerMessage> {
        let backlog = state.backlog.load(std::sync::atomic::Ordering::Relaxed);
        if backlog > state.cfg.channels.max_backlog {
            state.metrics.sessions_refused.inc();
            return Err(ServerMessage::error(
                ErrorCode::Busy,
                format!("server busy ({backlog} segments queued); retry after a few seconds"),
            ));
        }
        if !(8_000..=48_000).contains(&start.sample_rate) {
            return Err(ServerMessage::error(
                ErrorCode::UnsupportedFormat,
                format!("sample_rate {} is outside 8000..=48000", start.sample_rate),
            ));
        }
        if start.beam_size.is_some_and(|b| !(1..=MAX_BEAM).contains(&b)) {
            return Err(ServerMessage::error(ErrorCode::InvalidOption, format!("beam_size must be 1..={MAX_BEAM}")));
        }
        if start.language.as_ref().is_some_and(|l| l.len() > MAX_LANGUAGE_BYTES) {
            return Err(ServerMessage::error(ErrorCode::InvalidOption, "language is not a language code"));
        }
        state
            .check_language(start.language.as_deref())
            .map_err(|e| ServerMessage::error(ErrorCode::InvalidOption, e))?;
        let hotword_bytes: usize = start.hotwords.iter().map(|h| h.len() + 2).sum();
        if start.hotwords.len() > MAX_HOTWORDS || hotword_bytes > MAX_PROMPT_BYTES {
            return Err(ServerMessage::error(
                ErrorCode::InvalidOption,
                format!("hotwords: at most {MAX_HOTWORDS}, {MAX_PROMPT_BYTES} bytes in all (they prime the decoder)"),
            ));
        }
        if start.prompt.as_ref().is_some_and(|p| p.len() > MAX_PROMPT_BYTES) {
            return Err(ServerMessage::error(
                ErrorCode::InvalidOption,
                format!("prompt is longer than {MAX_PROMPT_BYTES} bytes"),
            ));
        }
        let resampler = StreamResampler::new(start.sample_rate, SAMPLE_RATE)
            .map_err(|e| ServerMessage::error(ErrorCode::UnsupportedFormat, e.to_string()))?;
        let choices = Choices::parse(&start.plugins)?;
        choices.check_result_plugins(&state.cfg)?;
        let seg_choice = choices.segmenter;
        let plugin = match state.segmenters.get(Some(&seg_choice.name)).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(ServerMessage::error(ErrorCode::Internal, "no segmenter is configured")),
            Err(e @ (CatalogError::NotAllowed { .. } | CatalogError::NotFound { .. })) => {
                return Err(ServerMessage::error(ErrorCode::InvalidOption, format!("plugins.segmenter: {e}")));
            }
            Err(e) => {
                state.metrics.plugin_errors.inc();
                return Err(ServerMessage::error(ErrorCode::PluginFailed, e.to_string()));
            }
        };
        if let Some(m) = &plugin.manifest {
            choices::check_options(m, "segmenter", &seg_choice.options)?;
        }
        let options = seg_choice.options;
        // A session that asks for no partials is file-like: paced by the workers, not by speed.
        let paced_by_workers = options.iter().any(|(k, v)| k == "partial_ms" && v.trim() == "0");
        let segmenter = plugin.open(SAMPLE_RATE, &options).map_err(|e| match e {
            crate::plugins::PluginError::InvalidConfig { .. } => {
                ServerMessage::error(ErrorCode::InvalidOption, format!("plugins.segmenter: {e}"))
            }
            // The process holds as many sessions as its segmenter pool has slots.
            crate::plugins::PluginError::PoolFull { .. } => {
                state.metrics.sessions_refused.inc();
                ServerMessage::error(ErrorCode::Busy, e.to_string())
            }
            e => {
                state.metrics.plugin_errors.inc();
                ServerMessage::error(ErrorCode::PluginFailed, e.to_string())
            }
        })?;
        let mut conn = state.redis.clone();
        let busy = |e: crate::channels::ChannelError| {
            ServerMessage::error(ErrorCode::Busy, format!("cannot reach Redis: {e}"))
        };
        let ttl = state.cfg.channels.replay_ttl_s;
        // A resumed session keeps its id, epoch and sequence; results now follow it here. The
        // token is signed, so a client can resume only a session it was given.
        let subject = principal.subject.as_deref();
        let room = start.room.as_deref().map(|r| room_for(state, principal, r)).transpose()?;
        let claimed =
            start.resume.as_ref().and_then(|r| Some((state.auth.verify_resume(&r.token, subject)?, r.last_seq)));
        let resumed = match claimed {
            Some(((session, epoch), last_seq)) => {
                match results::attach_session(&mut conn, &state.keys, &session, &state.channel, ttl)
                    .await
                    .map_err(busy)?
                {
                    Some(st) if st.epoch == epoch && last_seq <= st.seq => Some((session, last_seq, st)),
                    _ => None,
                }
            }
            None => None,
        };
        // The replay window must still hold everything after the client's last seq.
        let resumed = match resumed {
            Some((session, last_seq, st)) => {
                let oldest = results::oldest_replayable(&mut conn, &state.keys, &session).await.map_err(busy)?;
                let complete = st.seq == last_seq || oldest.is_some_and(|o| o <= last_seq + 1);
                complete.then_some((session, last_seq, st))
            }
            None => None,
        };
        let (id, epoch, next_segment, position) = match &resumed {
            Some((session, _, st)) => (session.clone(), st.epoch.clone(), st.next_segment, st.position),
            None => {
                let (id, epoch) = (crate::ids::long(), crate::ids::short());
                results::open_session(&mut conn, &state.keys, &id, &epoch, &state.channel, ttl).await.map_err(busy)?;
                (id, epoch, 0, 0)
            }
        };
        if let Some(room) = &room {
            rooms::join(&mut conn, &state.keys, room, &id).await.map_err(busy)?;
        }
        state.dispatcher.register(&id, inbox.clone());
        let resume_token = state.auth.resume_token(&id, &epoch, subject);
        state.metrics.sessions_total.inc();
        tracing::debug!(session = %id, plugin = %segmenter.label(), "session started");
        Ok(Self {
            id,
            epoch,
            rate: start.sample_rate,
            format: start.format,
            language: start.language,
            hotwords: start.hotwords,
            room,
            prompt: start.prompt,
            beam_size: start.beam_size,
            resampler,
            segmenter,
            seg_name: plugin.name.clone(),
            seg_options: options,
            paced_by_workers,
            postprocessor: choices.postprocessor,
            router: choices.router,
            failed: false,
            seg_failures: 0,
            // A resumed session's clock goes on from where its last final left it.
            seg_offset: position,
            seg_fed: position,
            speech: state.speech.clone().map(|m| SpeechProbs::new(m, position, max_kept(state))),
            last_final_end: position,
            progress_saved: position,
            first_position: position,
            buf: AudioBuf::new(position, max_kept(state)),
            segment: next_segment,
            first_segment: next_segment,
            rev: 0,
            last_partial_end: 0,
            last_partial: None,
            ledger: Ledger::default(),
            retired_epochs: Vec::new(),
            finals_delivered: 0,
            last_seq: resumed.as_ref().map(|(_, last_seq, _)| *last_seq).unwrap_or(0),
            recovered: start.resume.as_ref().map(|_| resumed.is_some()),
            scratch: Vec::new(),
            resume_token,
        })
    }

    /// The `ready` message, and what a resumed client missed (it follows at once, in order).
    pub async fn ready(&mut self, state: &Arc<AppState>) -> Vec<ServerMessage> {
        let mut out = vec![ServerMessage::Ready {
            session: self.id.clone(),
            epoch: self.epoch.clone(),
            sample_rate: self.rate,
            resume_token: self.resume_token.clone(),
            recovered: self.recovered,
            position_ms: (self.recovered == Some(true)).then(|| audio::samples_to_ms(self.first_position as usize)),
        }];
        if self.recovered == Some(true) {
            self.replay(state, &mut out).await;
        }
        out
    }

    /// Seconds of audio in a frame of `len` bytes in the session's format.
    pub fn frame_seconds(&self, len: usize) -> f64 {
        len as f64 / (self.format.sample_width() * self.rate as usize).max(1) as f64
    }

    /// Finals cut and not yet delivered.
    pub fn outstanding(&self) -> usize {
        self.ledger.outstanding()
    }

    /// Milliseconds of audio cut and awaiting its finals.
    pub fn held_ms(&self) -> u64 {
        self.ledger.held_ms()
    }

    /// Whether the session asked for no partials: it may send as fast as the workers keep up.
    pub fn paced_by_workers(&self) -> bool {
        self.paced_by_workers
    }

    /// What the client hears of finals that were never queued (Redis stayed away until the
    /// session ended): one `segment_failed` each.
    pub fn never_queued(&self) -> Vec<ServerMessage> {
        self.ledger
            .unqueued()
            .into_iter()
            .map(|u| u.segment)
            .map(|segment| ServerMessage::Error {
                code: ErrorCode::SegmentFailed,
                message: format!(
                    "segment {segment} could not be queued: Redis did not answer before the session ended"
                ),
                retryable: true,
                segment: Some(segment),
                resume_token: None,
            })
            .collect()
    }

    /// The session's `end`: its finals delivered on this connection.
    pub fn end_message(&self) -> ServerMessage {
        ServerMessage::End { segments: self.finals_delivered }
    }

    /// Audio in (16 kHz) since the connection started, in ms: the session's length so far.
    pub fn audio_ms(&self) -> u64 {
        audio::samples_to_ms((self.buf.end() - self.first_position) as usize)
    }

    /// Leaves the dispatcher and the session's room (the socket or the session ended).
    pub async fn leave(self, state: &Arc<AppState>) {
        state.dispatcher.unregister(&self.id);
        if let Some(room) = &self.room {
            let mut conn = state.redis.clone();
            let _ = rooms::leave(&mut conn, &state.keys, room, &self.id).await;
        }
    }

    /// One utterance the client cut itself: resampled, queued as the session's next final. One
    /// too short to hold a word is answered at once with an empty final.
    pub async fn on_utterance(&mut self, state: &Arc<AppState>, samples: Vec<f32>, rate: u32) -> Vec<ServerMessage> {
        let samples = match audio::resample(&samples, rate, SAMPLE_RATE) {
            Ok(s) => s,
            Err(e) => return vec![ServerMessage::error(ErrorCode::UnsupportedFormat, e.to_string())],
        };
        let start = self.buf.end();
        if samples.len() < MIN_UTTERANCE {
            let segment = self.segment;
            self.segment += 1;
            self.finals_delivered += 1;
            self.push_unsegmented(&samples);
            let end = self.buf.end();
            let (start_ms, end_ms) = (audio::samples_to_ms(start as usize), audio::samples_to_ms(end as usize));
            return vec![ServerMessage::Final(Segment {
                seq: self.last_seq,
                segment,
                text: String::new(),
                start_ms,
                end_ms,
                words: Vec::new(),
                origin: None,
                stable: None,
            })];
        }
        // Sent whole, not sliced from the buffer: a client-cut utterance may be longer than the
        // buffer keeps.
        let pcm = audio::to_s16le(&samples);
        self.push_unsegmented(&samples);
        let end = self.buf.end();
        match self.enqueue_audio(state, CutKind::Final, start, end, &pcm).await {
            Ok(()) => Vec::new(),
            Err(e) => vec![e],
        }
    }

    /// Audio the client cut itself: kept, but not for the segmenter, whose clock skips it (and
    /// anything it had not been fed yet).
    fn push_unsegmented(&mut self, samples: &[f32]) {
        let fed = self.seg_fed;
        self.buf.push(samples);
        if let Some(sp) = self.speech.as_mut() {
            // Keeps the probabilities on the session's clock.
            sp.push(samples);
        }
        self.seg_offset += self.buf.end() - fed;
        self.seg_fed = self.buf.end();
    }

    /// Feeds the segmenter the kept audio after what it has seen, up to `to` (absolute); with
    /// speech probabilities, in pieces that each carry their chunk's. Cuts come back absolute.
    fn feed(&mut self, to: u64) -> Result<Vec<Cut>, crate::plugins::PluginError> {
        let (from, to) = self.buf.clamp(self.seg_fed, to);
        if from >= to {
            return Ok(Vec::new());
        }
        self.seg_fed = to;
        let pieces = match &self.speech {
            Some(sp) => sp.pieces(from, to),
            None => vec![(from, to, None)],
        };
        let mut cuts = Vec::new();
        for (a, b, prob) in pieces {
            cuts.extend(self.segmenter.push(self.buf.f32(a, b), prob)?);
        }
        Ok(shift(cuts, self.seg_offset))
    }

    /// How far the segmenter may be fed: audio waits for its speech probability, if any.
    fn feedable(&self) -> u64 {
        self.speech.as_ref().map_or(self.buf.end(), |sp| sp.known_end().min(self.buf.end()))
    }

    /// The segmenter failed and the session is to end (`plugins.on_failure = "error"`).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Replaces the segmenter instance with a fresh one of `plugin`, at the last final boundary:
    /// the audio after that boundary is fed to the new instance, so no frame is lost and every
    /// segment comes from one version.
    async fn switch_segmenter(
        &mut self,
        state: &Arc<AppState>,
        plugin: Arc<SegmenterPlugin>,
        replies: &mut Vec<ServerMessage>,
    ) {
        self.open_segmenter(state, plugin, true, replies).await;
    }

    /// Replaces the instance; with `replay`, the new one is fed the audio since the last final.
    async fn open_segmenter(
        &mut self,
        state: &Arc<AppState>,
        plugin: Arc<SegmenterPlugin>,
        replay: bool,
        replies: &mut Vec<ServerMessage>,
    ) {
        let fresh = match plugin.open(SAMPLE_RATE, &self.seg_options) {
            Ok(f) => f,
            Err(e) => {
                state.metrics.plugin_errors.inc();
                tracing::error!(session = %self.id, "cannot open segmenter {}: {e}", plugin.label());
                return;
            }
        };
        tracing::debug!(session = %self.id, from = %self.segmenter.label(), to = %fresh.label(), "segmenter switched");
        self.segmenter = fresh;
        if !replay {
            self.seg_offset = self.buf.end();
            self.seg_fed = self.buf.end();
            self.last_final_end = self.buf.end();
            return;
        }
        // From the last final boundary, or from what is still kept if the old instance
        // released audio after it.
        let (from, _) = self.buf.clamp(self.last_final_end, self.buf.end());
        self.seg_offset = from;
        self.seg_fed = from;
        let cuts = self.feed(self.feedable());
        replies.extend(Box::pin(self.apply_cuts(state, cuts)).await);
    }

    pub async fn on_audio(&mut self, state: &Arc<AppState>, bytes: &[u8]) -> Vec<ServerMessage> {
        self.scratch.clear();
        if let Err(e) = audio::decode_frame(bytes, self.format, &mut self.scratch) {
            state.metrics.protocol_errors.inc();
            return vec![ServerMessage::error(ErrorCode::BadFrame, e.to_string())];
        }
        let mut samples = Vec::with_capacity(self.scratch.len() * SAMPLE_RATE as usize / self.rate as usize + 8);
        if let Err(e) = self.resampler.push(&self.scratch, &mut samples) {
            return vec![ServerMessage::error(ErrorCode::Internal, e.to_string())];
        }
        if samples.is_empty() {
            return Vec::new();
        }
        self.buf.push(&samples);
        if let Some(sp) = self.speech.as_mut() {
            for e in sp.push(&samples) {
                state.metrics.speech_prob_errors.inc();
                tracing::warn!(session = %self.id, "Silero VAD failed on a chunk (the segmenter decides by energy): {e}");
            }
        }
        let cuts = self.feed(self.feedable());
        // The endpoint leg of each final's latency: how much audio past the cut's end the
        // segmenter heard before it cut (its hangover, less the tail it keeps), on the audio
        // clock, which is the wall clock for a live client.
        if let Ok(cuts) = &cuts {
            for c in cuts.iter().filter(|c| c.kind == CutKind::Final && !c.is_release()) {
                let waited = self.buf.end().saturating_sub(c.end);
                state.metrics.final_endpoint_seconds.observe(waited as f64 / f64::from(SAMPLE_RATE));
            }
        }
        self.apply_cuts(state, cuts).await
    }

    pub async fn finish(&mut self, state: &Arc<AppState>) -> Vec<ServerMessage> {
        if self.failed {
            return Vec::new();
        }
        let mut replies = Vec::new();
        // A flush that fails hands the audio to a fresh instance, which is flushed in turn
        // (twice at most: a plugin may fail at every flush).
        for _ in 0..3 {
            // The last audio (under 32 ms waits for a speech probability) goes in without one.
            let tail = self.feed(self.buf.end());
            let fed = tail.is_ok();
            replies.extend(self.apply_cuts(state, tail).await);
            if self.failed {
                break;
            }
            if !fed {
                // Replaced and replayed: the new instance's tail, then its flush.
                continue;
            }
            let offset = self.seg_offset;
            let cuts = self.segmenter.flush().map(|c| shift(c, offset));
            let flushed = cuts.is_ok();
            replies.extend(self.apply_cuts(state, cuts).await);
            if flushed || self.failed {
                break;
            }
        }
        replies
    }

    async fn apply_cuts(
        &mut self,
        state: &Arc<AppState>,
        cuts: Result<Vec<Cut>, crate::plugins::PluginError>,
    ) -> Vec<ServerMessage> {
        let mut replies = Vec::new();
        let cuts = match cuts {
            Ok(c) => {
                self.seg_failures = 0;
                c
            }
            Err(e) => {
                self.segmenter_failed(state, e, &mut replies).await;
                return replies;
            }
        };
        let mut boundary = false;
        for cut in cuts {
            if cut.is_release() {
                self.buf.forget_before(cut.start);
                if cut.start >= self.progress_saved + RELEASE_SAVE_EVERY {
                    self.save_progress(state, cut.start).await;
                }
                continue;
            }
            boundary |= cut.kind == CutKind::Final;
            if let Err(e) = self.enqueue(state, cut, &mut replies).await {
                replies.push(e);
            }
        }
        // A new version was activated: live sessions move to it at a segment boundary.
        if boundary
            && let Some(live) = state.segmenters.live(&self.seg_name)
            && live.label() != self.segmenter.label()
        {
            self.switch_segmenter(state, live, &mut replies).await;
        }
        replies
    }

    /// Where a resumed session goes on (`ready.position_ms`; the client resends from there):
    /// nothing before `at` is needed again. Written at the end of each final, in a pause the
    /// segmenter released (every few seconds of it, not each second), and past skipped audio.
    async fn save_progress(&mut self, state: &Arc<AppState>, at: u64) {
        self.progress_saved = at;
        self.last_final_end = self.last_final_end.max(at);
        let mut conn = state.redis.clone();
        if let Err(e) = results::set_progress(&mut conn, &state.keys, &self.id, self.segment, at).await {
            tracing::debug!(session = %self.id, "resume point not saved: {e}");
        }
    }

    /// The instance trapped, ran out of fuel or memory: it is unusable. By policy the session
    /// moves to the default segmenter (a fresh instance of it, if that was the one), or ends.
    async fn segmenter_failed(
        &mut self,
        state: &Arc<AppState>,
        e: crate::plugins::PluginError,
        replies: &mut Vec<ServerMessage>,
    ) {
        state.metrics.plugin_errors.inc();
        tracing::warn!(session = %self.id, "segmenter failed: {e}");
        self.seg_failures += 1;
        if self.seg_failures > 2 {
            self.failed = true;
            replies.push(ServerMessage::error(
                ErrorCode::PluginFailed,
                format!("{e}; the segmenter failed {} times in a row, the session ends", self.seg_failures),
            ));
            return;
        }
        if state.cfg.plugins.on_failure == OnFailure::Error {
            self.failed = true;
            replies.push(ServerMessage::error(ErrorCode::PluginFailed, format!("{e}; the session ends")));
            return;
        }
        let default = state.segmenters.default_name();
        let next = if self.seg_name != default { state.segmenters.default_plugin() } else { None };
        let next = match next {
            Some(d) => {
                // The session's options were for the plugin that failed.
                if d.manifest
                    .as_ref()
                    .is_some_and(|m| choices::check_options(m, "segmenter", &self.seg_options).is_err())
                {
                    self.seg_options.clear();
                }
                self.seg_name = default;
                replies.push(ServerMessage::error(
                    ErrorCode::PluginFailed,
                    format!("{e}; this session continues with {}", d.label()),
                ));
                Some(d)
            }
            None => {
                replies.push(ServerMessage::error(ErrorCode::PluginFailed, format!("{e}; restarted it")));
                state.segmenters.live(&self.seg_name)
            }
        };
        // Once a fresh instance has failed on the same audio, that audio is skipped rather
        // than fed to it again.
        let Some(next) = next else { return };
        let replay = self.seg_failures < 2;
        if !replay {
            let (from, to) = self.buf.clamp(self.last_final_end, self.buf.end());
            replies.push(ServerMessage::error(
                ErrorCode::PluginFailed,
                format!(
                    "the segmenter failed twice on the audio from {} ms to {} ms; that audio is skipped",
                    from * 1000 / u64::from(SAMPLE_RATE),
                    to * 1000 / u64::from(SAMPLE_RATE)
                ),
            ));
            // A resumed session must not be fed that audio again either.
            self.save_progress(state, to).await;
        }
        self.open_segmenter(state, next, replay, replies).await;
    }

    /// Queues a cut of the kept audio; `replies` gets what the client should hear of it besides.
    async fn enqueue(
        &mut self,
        state: &Arc<AppState>,
        cut: Cut,
        replies: &mut Vec<ServerMessage>,
    ) -> Result<(), ServerMessage> {
        let (start, end) = self.buf.clamp(cut.start, cut.end);
        if end <= start {
            return Ok(());
        }
        if start > cut.start && cut.kind == CutKind::Final {
            // The segmenter let an utterance run past what the gateway keeps (a segmenter option
            // above `gateway.max_segment_s`): say what was not transcribed rather than hide it.
            state.metrics.plugin_errors.inc();
            replies.push(ServerMessage::Error {
                code: ErrorCode::PluginFailed,
                message: format!(
                    "the segmenter cut segment {} longer than gateway.max_segment_s ({} s): its first {} ms were \
                     not kept; its final follows",
                    self.segment,
                    state.cfg.gateway.max_segment_s,
                    (start - cut.start) * 1000 / u64::from(SAMPLE_RATE)
                ),
                retryable: false,
                segment: Some(self.segment),
                resume_token: None,
            });
        }
        let pcm = self.buf.s16le(start, end);
        self.enqueue_audio(state, cut.kind, start, end, &pcm).await
    }

    /// Queues `[start, end)` (absolute samples) whose audio is `pcm` (s16le).
    async fn enqueue_audio(
        &mut self,
        state: &Arc<AppState>,
        kind: CutKind,
        start: u64,
        end: u64,
        pcm: &[u8],
    ) -> Result<(), ServerMessage> {
        let cut = Cut { kind, start, end };
        // Under backlog, partials are shed first; finals are never shed. A segmenter asking for
        // partials more often than every MIN_PARTIAL_GAP of audio (say `partial_ms = 20`: 348
        // tasks for an 11 s clip) is held to it here, whatever the plugin's manifest allows.
        if cut.kind == CutKind::Partial && self.paced_by_workers {
            return Ok(());
        }
        if cut.kind == CutKind::Partial
            && (state.backlog.load(std::sync::atomic::Ordering::Relaxed) > state.cfg.channels.shed_partials_backlog
                || end < self.last_partial_end + MIN_PARTIAL_GAP)
        {
            state.metrics.partials_shed.inc();
            return Ok(());
        }
        if cut.kind == CutKind::Partial {
            self.last_partial_end = end;
        }
        let rev = match cut.kind {
            CutKind::Partial => {
                self.rev += 1;
                self.rev
            }
            CutKind::Final => 0,
        };
        let meta = TaskMeta {
            session: self.id.clone(),
            segment: self.segment,
            kind: cut.kind,
            rev,
            reply: state.channel.clone(),
            start_ms: start * 1000 / SAMPLE_RATE as u64,
            end_ms: end * 1000 / SAMPLE_RATE as u64,
            enqueued_ms: now_ms(),
            language: self.language.clone(),
            hotwords: self.hotwords.clone(),
            room: self.room.clone(),
            prompt: self.prompt.clone(),
            beam_size: self.beam_size,
            postprocessor: self.postprocessor.clone(),
            router: self.router.clone(),
            task: Default::default(),
        };
        if cut.kind == CutKind::Partial {
            let mut conn = state.redis.clone();
            // A partial is provisional: if Redis cannot take it now, the next one replaces it.
            match tasks::enqueue(&mut conn, &state.keys, &meta, pcm).await {
                Ok(_) => {
                    state.metrics.tasks_enqueued.inc();
                }
                Err(e) => {
                    state.metrics.partials_shed.inc();
                    tracing::debug!(session = %self.id, "partial not queued: {e}");
                }
            }
            return Ok(());
        }
        // Finals queue in order, through the ledger: behind any that still wait for Redis.
        self.ledger.add(meta, pcm.to_vec(), None);
        if self.queue_waiting(state).await.waiting > 0 {
            state.metrics.tasks_deferred.inc();
            tracing::warn!(session = %self.id, segment = self.segment, "final kept until Redis takes it");
        }
        self.segment += 1;
        self.save_progress(state, end).await;
        self.rev = 0;
        // Keep a little audio before the cut for the next utterance's pre-roll.
        self.buf.forget_before(end.saturating_sub(KEEP_BEFORE));
        Ok(())
    }

    /// Applies a result in sequence order: duplicates are dropped, a gap is filled from the
    /// replay stream first.
    pub async fn on_delivery(&mut self, state: &Arc<AppState>, delivery: Delivery) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        match delivery {
            Delivery::Result(msg) if msg.epoch != self.epoch => {
                if self.retired_epochs.contains(&msg.epoch) {
                    // Published before Redis lost the session's state: applied as it comes
                    // (a final still only once, while outstanding).
                    let last = self.last_seq;
                    self.apply(state, *msg, &mut out);
                    self.last_seq = last;
                    return out;
                }
                // Redis lost the session's state (and its sequence): results are numbered
                // afresh under a new epoch. Follow it, reading what came before this one.
                tracing::warn!(session = %self.id, from = %self.epoch, to = %msg.epoch, "result sequence restarted");
                self.retired_epochs.push(std::mem::replace(&mut self.epoch, msg.epoch.clone()));
                self.last_seq = 0;
                if msg.seq > 1 {
                    self.replay(state, &mut out).await;
                }
                if msg.seq == self.last_seq + 1 {
                    self.apply(state, *msg, &mut out);
                }
            }
            Delivery::Result(msg) => {
                if msg.seq <= self.last_seq {
                    state.metrics.duplicates_dropped.inc();
                    return out;
                }
                if msg.seq > self.last_seq + 1 {
                    self.replay(state, &mut out).await;
                }
                if msg.seq == self.last_seq + 1 {
                    self.apply(state, *msg, &mut out);
                } else if msg.seq <= self.last_seq {
                    state.metrics.duplicates_dropped.inc();
                }
            }
            Delivery::Resync => self.replay(state, &mut out).await,
        }
        out
    }

    /// Reads what this session missed from its replay stream (batched with other sessions').
    async fn replay(&mut self, state: &Arc<AppState>, out: &mut Vec<ServerMessage>) {
        match state.replayer.replay(&self.id, self.last_seq).await {
            Ok(msgs) => {
                for m in msgs {
                    if m.seq == self.last_seq + 1 {
                        self.apply(state, m, out);
                    }
                }
            }
            Err(e) => tracing::warn!(session = %self.id, "replay failed: {e}"),
        }
    }

    /// Queues the finals that wait for Redis, in order, until one fails.
    async fn queue_waiting(&mut self, state: &Arc<AppState>) -> Queued {
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
                    tracing::debug!(session = %self.id, segment = u.segment, "final not queued yet: {e}");
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

    /// Once a second: queue the finals that wait for Redis, and look for overdue ones. A final
    /// that takes too long may have been published while nothing else followed to reveal the
    /// gap (a lost Pub/Sub message, or a worker that died between its write and its publish on
    /// a cluster): it is looked for in the replay stream, which has every written result. One
    /// found neither there nor as a task on the stream was lost with Redis's data (a restart
    /// without persistence): it is queued again from the audio kept for it.
    pub async fn tick(&mut self, state: &Arc<AppState>) -> Vec<ServerMessage> {
        let kept = self.queue_waiting(state).await.queued;
        if kept > 0 {
            tracing::info!(session = %self.id, "{kept} kept final(s) queued");
        }
        let overdue = Duration::from_millis(state.cfg.channels.overdue_final_ms.max(100));
        let due = self.ledger.overdue(Instant::now(), overdue);
        let mut out = Vec::new();
        if due.is_empty() {
            return out;
        }
        state.metrics.overdue_finals.inc_by(due.len() as u64);
        // Which tasks are gone from the stream, asked before the replay stream is read: a worker
        // writes a result before its task is acknowledged and trimmed, so a task gone now has
        // its result in the replay stream, unless Redis lost both.
        let mut conn = state.redis.clone();
        let mut gone = Vec::new();
        for (segment, task) in due {
            if let Ok(false) = tasks::exists(&mut conn, &state.keys, &task).await {
                gone.push((segment, task));
            }
        }
        self.replay(state, &mut out).await;
        let mut lost = false;
        for (segment, task) in gone {
            if self.ledger.contains(segment) {
                tracing::warn!(session = %self.id, segment, %task, "final's task vanished from Redis: queued again");
                state.metrics.tasks_requeued.inc();
                self.ledger.lost(segment);
                lost = true;
            }
        }
        if lost {
            self.queue_waiting(state).await;
        }
        out
    }

    fn apply(&mut self, state: &Arc<AppState>, msg: Sequenced, out: &mut Vec<ServerMessage>) {
        self.last_seq = msg.seq;
        let p = msg.payload;
        let seg = Segment {
            seq: msg.seq,
            segment: p.segment,
            text: p.text,
            start_ms: p.start_ms,
            end_ms: p.end_ms,
            words: p.words,
            origin: p.origin.clone(),
            stable: None,
        };
        // Another room member's result: pass it on, it is not one of ours to track.
        if p.origin.is_some() {
            out.push(match p.kind {
                CutKind::Final => ServerMessage::Final(seg),
                CutKind::Partial => ServerMessage::Partial(seg),
            });
            return;
        }
        if let Some(err) = p.error {
            if p.kind == CutKind::Final {
                self.ledger.delivered(p.segment);
            }
            out.push(ServerMessage::Error {
                code: ErrorCode::SegmentFailed,
                message: err,
                retryable: false,
                segment: Some(p.segment),
                resume_token: None,
            });
            return;
        }
        // A result plugin failed on this final (or could not run): the text comes unprocessed.
        if let (CutKind::Final, Some(why)) = (p.kind, &p.plugin_error) {
            out.push(ServerMessage::Error {
                code: ErrorCode::PluginFailed,
                message: why.clone(),
                retryable: false,
                segment: Some(p.segment),
                resume_token: None,
            });
        }
        match p.kind {
            CutKind::Final => {
                // Finals of earlier connections (resume) are delivered once, as seq ordering
                // already guarantees; finals of this one must be outstanding.
                if self.ledger.delivered(p.segment) || p.segment < self.first_segment {
                    self.finals_delivered += 1;
                    state.metrics.finals_delivered.inc();
                    if p.enqueued_ms > 0 {
                        state.metrics.observe_final_latency(now_ms().saturating_sub(p.enqueued_ms));
                    }
                    if p.published_ms > 0 {
                        let delivery = now_ms().saturating_sub(p.published_ms) as f64 / 1e3;
                        state.metrics.final_delivery_seconds.observe(delivery);
                    }
                    out.push(ServerMessage::Final(seg));
                }
            }
            // A partial for a segment already final is stale.
            CutKind::Partial if p.segment >= self.segment => {
                state.metrics.partials_delivered.inc();
                let mut seg = seg;
                let prev = self.last_partial.take().filter(|(s, _)| *s == p.segment).map(|(_, t)| t);
                seg.stable =
                    Some(u32::try_from(settled_chars(prev.as_deref().unwrap_or(""), &seg.text)).unwrap_or(u32::MAX));
                self.last_partial = Some((p.segment, seg.text.clone()));
                out.push(ServerMessage::Partial(seg));
            }
            CutKind::Partial => {}
        }
    }
}

/// The room a session joins: with auth, the subject's own unless its token grants the name;
/// without auth, only where the operator allowed rooms (nothing tells who may hear one).
fn room_for(state: &AppState, principal: &Principal, room: &str) -> Result<String, ServerMessage> {
    if room.is_empty() || room.len() > MAX_ROOM_BYTES {
        return Err(ServerMessage::error(ErrorCode::InvalidOption, format!("room must be 1..={MAX_ROOM_BYTES} bytes")));
    }
    if !state.auth.enabled() && !state.cfg.gateway.rooms_without_auth {
        return Err(ServerMessage::error(
            ErrorCode::InvalidOption,
            "rooms need authentication (gateway.auth_secret), or gateway.rooms_without_auth = true",
        ));
    }
    Ok(principal.room_name(room))
}

/// What one pass over the finals waiting for Redis did.
struct Queued {
    /// Queued now.
    queued: usize,
    /// Still waiting (Redis refused the first of them).
    waiting: usize,
}

fn shift(cuts: Vec<Cut>, offset: u64) -> Vec<Cut> {
    cuts.into_iter().map(|c| Cut { start: c.start + offset, end: c.end + offset, ..c }).collect()
}

/// Audio a session keeps (and speech probabilities for it): the longest segment a cut may span.
fn max_kept(state: &AppState) -> usize {
    state.cfg.gateway.max_segment_s.max(1) as usize * SAMPLE_RATE as usize
}
