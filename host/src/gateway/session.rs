//! One WebSocket session: `start`, audio frames through the segmenter, tasks out, results in,
//! `stop`, wait for the finals, `end`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::AppState;
use super::protocol::{ClientMessage, ErrorCode, Segment, ServerMessage, Start};
use crate::audio::{self, PcmFormat, SAMPLE_RATE, StreamResampler};
use crate::channels::results::{self, Sequenced};
use crate::channels::rooms;
use crate::channels::subscriber::Delivery;
use crate::channels::tasks::{self, TaskMeta};
use crate::channels::workers::now_ms;
use crate::plugins::{Cut, CutKind, SegmenterInstance};

/// Samples kept before the last final's end, for a segmenter's pre-roll padding.
const KEEP_BEFORE: u64 = SAMPLE_RATE as u64;
/// Widest beam a session may ask for: each beam is one more decoder row per step.
const MAX_BEAM: u8 = 8;
/// Whisper keeps at most 223 prompt tokens; this is a generous bound on the text.
const MAX_PROMPT_BYTES: usize = 2_000;
/// How often a session looks for finals that are overdue (`channels.overdue_final_ms`).
const OVERDUE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Drives one socket until it closes. Never panics on client input.
pub async fn run(mut socket: WebSocket, state: Arc<AppState>) {
    state.metrics.sessions_active.inc();
    let mut session: Option<Live> = None;
    let mut stopping = false;
    let final_timeout = Duration::from_secs(state.cfg.gateway.final_timeout_s);
    let idle_timeout = Duration::from_secs(state.cfg.gateway.idle_timeout_s.max(1));
    // Idle until `stop`; after it, a fixed deadline for the outstanding finals that client
    // traffic cannot push back.
    let mut deadline = Instant::now() + idle_timeout;
    let mut draining = false;
    let mut overdue_check = tokio::time::interval(OVERDUE_CHECK_EVERY);
    overdue_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close = loop {
        let inbox = async {
            match session.as_mut() {
                Some(s) => s.inbox.recv().await,
                None => std::future::pending().await,
            }
        };
        let replies = tokio::select! {
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break None };
                let was_stopping = stopping;
                let replies = match msg {
                    Message::Text(t) => on_text(&state, &mut session, &mut stopping, t.as_str()).await,
                    Message::Binary(b) => on_binary(&state, session.as_mut(), stopping, &b).await,
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => Vec::new(),
                };
                if stopping && !was_stopping {
                    deadline = Instant::now() + final_timeout;
                } else if !stopping {
                    deadline = Instant::now() + idle_timeout;
                }
                replies
            }
            delivery = inbox => {
                let Some(delivery) = delivery else { break None };
                let Some(s) = session.as_mut() else { continue };
                s.on_delivery(&state, delivery).await
            }
            _ = overdue_check.tick() => match session.as_mut() {
                Some(s) => s.check_overdue(&state).await,
                None => continue,
            },
            _ = state.drain.wait(), if !draining => {
                // Shutting down: finish like `stop` (flush, wait for the finals), then tell the
                // client to go elsewhere; it can resume there with its session, epoch and seq.
                draining = true;
                let mut replies = match session.as_mut() {
                    Some(s) if !stopping => s.finish(&state).await,
                    _ => Vec::new(),
                };
                if !stopping {
                    stopping = true;
                    deadline = Instant::now() + final_timeout;
                }
                replies.push(ServerMessage::error(ErrorCode::GoingAway, "server shutting down: reconnect and resume"));
                replies
            }
            _ = tokio::time::sleep_until(deadline) => {
                let msg = if stopping {
                    let missing = session.as_ref().map(|s| s.outstanding.len()).unwrap_or(0);
                    ServerMessage::error(ErrorCode::Timeout, format!("{missing} final(s) not ready in time"))
                } else {
                    ServerMessage::error(ErrorCode::IdleTimeout, format!("nothing received for {idle_timeout:?}"))
                };
                let _ = send_all(&mut socket, vec![msg, end_message(session.as_ref())]).await;
                break Some(close_frame(close_code::POLICY, "timeout"));
            }
        };
        if send_all(&mut socket, replies).await.is_err() {
            break None;
        }
        // Done once `stop` (or the drain) has been answered by every outstanding final.
        let done = match session.as_ref() {
            Some(s) => stopping && s.outstanding.is_empty(),
            None => draining,
        };
        if done {
            let _ = send_all(&mut socket, vec![end_message(session.as_ref())]).await;
            break Some(if draining {
                close_frame(close_code::AWAY, "going away")
            } else {
                close_frame(close_code::NORMAL, "end")
            });
        }
    };
    if let Some(s) = session {
        state.dispatcher.unregister(&s.id);
        if let Some(room) = &s.room {
            let mut conn = state.redis.clone();
            let _ = rooms::leave(&mut conn, &state.keys, room, &s.id).await;
        }
    }
    let _ = socket.send(Message::Close(close)).await;
    state.metrics.sessions_active.dec();
}

fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame { code, reason: reason.into() }
}

fn end_message(session: Option<&Live>) -> ServerMessage {
    ServerMessage::End { segments: session.map(|s| s.finals_delivered).unwrap_or(0) }
}

async fn send_all(socket: &mut WebSocket, msgs: Vec<ServerMessage>) -> Result<(), axum::Error> {
    for m in msgs {
        socket.send(Message::Text(m.to_json().into())).await?;
    }
    Ok(())
}

async fn on_text(
    state: &Arc<AppState>,
    session: &mut Option<Live>,
    stopping: &mut bool,
    text: &str,
) -> Vec<ServerMessage> {
    let msg: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            state.metrics.protocol_errors.inc();
            return vec![ServerMessage::error(ErrorCode::BadMessage, format!("not a valid message: {e}"))];
        }
    };
    match msg {
        ClientMessage::Start(start) => {
            if session.is_some() {
                state.metrics.protocol_errors.inc();
                return vec![ServerMessage::error(ErrorCode::AlreadyStarted, "this session has already started")];
            }
            match Live::open(state, start).await {
                Ok(mut live) => {
                    let ready = ServerMessage::Ready {
                        session: live.id.clone(),
                        epoch: live.epoch.clone(),
                        sample_rate: live.rate,
                        recovered: live.recovered,
                    };
                    let mut out = vec![ready];
                    // What the client missed while away follows at once, in order.
                    if live.recovered == Some(true) {
                        live.replay(state, &mut out).await;
                    }
                    *session = Some(live);
                    out
                }
                Err(e) => {
                    state.metrics.protocol_errors.inc();
                    vec![e]
                }
            }
        }
        ClientMessage::Stop => match session.as_mut() {
            None => vec![ServerMessage::error(ErrorCode::NotStarted, "stop before start")],
            Some(_) if *stopping => Vec::new(),
            Some(s) => {
                *stopping = true;
                s.finish(state).await
            }
        },
    }
}

async fn on_binary(
    state: &Arc<AppState>,
    session: Option<&mut Live>,
    stopping: bool,
    bytes: &[u8],
) -> Vec<ServerMessage> {
    state.metrics.frames.inc();
    state.metrics.frame_bytes.inc_by(bytes.len() as u64);
    let Some(s) = session else {
        state.metrics.protocol_errors.inc();
        return vec![ServerMessage::error(ErrorCode::NotStarted, "audio before start: send a start message first")];
    };
    if stopping {
        // Late frames in flight when `stop` was sent are normal; drop them quietly.
        return Vec::new();
    }
    if bytes.len() > state.cfg.gateway.max_frame_bytes {
        state.metrics.protocol_errors.inc();
        return vec![ServerMessage::error(
            ErrorCode::FrameTooLarge,
            format!("frame of {} bytes exceeds the limit of {}", bytes.len(), state.cfg.gateway.max_frame_bytes),
        )];
    }
    s.on_audio(state, bytes).await
}

/// A started session.
struct Live {
    id: String,
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
    /// Options the client gave the segmenter, reused when the instance is replaced.
    seg_options: Vec<(String, String)>,
    /// Absolute sample at which the current segmenter instance started.
    seg_offset: u64,
    /// End of the last final cut: where a replacement instance takes over.
    last_final_end: u64,
    /// Audio at 16 kHz from absolute sample `base`.
    buf: Vec<f32>,
    base: u64,
    /// Current utterance's id and the revision of its last partial.
    segment: u64,
    /// First segment id of this connection; lower ids belong to earlier connections (resume).
    first_segment: u64,
    /// Some(..) when the client asked to resume: whether it could.
    recovered: Option<bool>,
    rev: u32,
    /// Finals enqueued and not yet delivered, with when they were enqueued or last looked for.
    outstanding: BTreeMap<u64, Instant>,
    finals_delivered: u64,
    last_seq: u64,
    inbox: mpsc::UnboundedReceiver<Delivery>,
    scratch: Vec<f32>,
}

impl Live {
    async fn open(state: &Arc<AppState>, start: Start) -> Result<Self, ServerMessage> {
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
        if start.prompt.as_ref().is_some_and(|p| p.len() > MAX_PROMPT_BYTES) {
            return Err(ServerMessage::error(
                ErrorCode::InvalidOption,
                format!("prompt is longer than {MAX_PROMPT_BYTES} bytes"),
            ));
        }
        let resampler = StreamResampler::new(start.sample_rate, SAMPLE_RATE)
            .map_err(|e| ServerMessage::error(ErrorCode::UnsupportedFormat, e.to_string()))?;
        let options: Vec<(String, String)> = start
            .plugins
            .get("segmenter")
            .and_then(|v| v.as_object())
            .map(|o| o.iter().filter(|(k, _)| *k != "name").map(|(k, v)| (k.clone(), json_to_string(v))).collect())
            .unwrap_or_default();
        let plugin = state.segmenter.load_full();
        let segmenter = plugin.open(SAMPLE_RATE, &options).map_err(|e| {
            state.metrics.plugin_errors.inc();
            ServerMessage::error(ErrorCode::PluginFailed, e.to_string())
        })?;
        let mut conn = state.redis.clone();
        let busy = |e: crate::channels::ChannelError| {
            ServerMessage::error(ErrorCode::Busy, format!("cannot reach Redis: {e}"))
        };
        let ttl = state.cfg.channels.replay_ttl_s;
        // A resumed session keeps its id, epoch and sequence; results now follow it here.
        let resumed = match &start.resume {
            Some(r) => match results::attach_session(&mut conn, &state.keys, &r.session, &state.channel, ttl)
                .await
                .map_err(busy)?
            {
                Some(st) if st.epoch == r.epoch && r.last_seq <= st.seq => Some((r.clone(), st)),
                _ => None,
            },
            None => None,
        };
        // The replay window must still hold everything after the client's last seq.
        let resumed = match resumed {
            Some((r, st)) => {
                let oldest = results::oldest_replayable(&mut conn, &state.keys, &r.session).await.map_err(busy)?;
                let complete = st.seq == r.last_seq || oldest.is_some_and(|o| o <= r.last_seq + 1);
                complete.then_some((r, st))
            }
            None => None,
        };
        let (id, epoch, next_segment, position) = match &resumed {
            Some((r, st)) => (r.session.clone(), st.epoch.clone(), st.next_segment, st.position),
            None => {
                let (id, epoch) = (crate::ids::long(), crate::ids::short());
                results::open_session(&mut conn, &state.keys, &id, &epoch, &state.channel, ttl).await.map_err(busy)?;
                (id, epoch, 0, 0)
            }
        };
        if let Some(room) = &start.room {
            rooms::join(&mut conn, &state.keys, room, &id).await.map_err(busy)?;
        }
        let inbox = state.dispatcher.register(&id);
        state.metrics.sessions_total.inc();
        tracing::debug!(session = %id, plugin = %segmenter.label(), "session started");
        Ok(Self {
            id,
            epoch,
            rate: start.sample_rate,
            format: start.format,
            language: start.language,
            hotwords: start.hotwords,
            room: start.room,
            prompt: start.prompt,
            beam_size: start.beam_size,
            resampler,
            segmenter,
            seg_options: options,
            // A resumed session's clock goes on from where its last final left it.
            seg_offset: position,
            last_final_end: position,
            buf: Vec::new(),
            base: position,
            segment: next_segment,
            first_segment: next_segment,
            rev: 0,
            outstanding: BTreeMap::new(),
            finals_delivered: 0,
            last_seq: resumed.as_ref().map(|(r, _)| r.last_seq).unwrap_or(0),
            recovered: start.resume.as_ref().map(|_| resumed.is_some()),
            inbox,
            scratch: Vec::new(),
        })
    }

    /// Pushes samples through the segmenter; cut offsets come back absolute.
    fn segment(&mut self, samples: Vec<f32>) -> Result<Vec<Cut>, crate::plugins::PluginError> {
        let offset = self.seg_offset;
        self.segmenter.push(samples, None).map(|cuts| shift(cuts, offset))
    }

    /// Replaces the segmenter instance with a fresh one of the active version, at the last final
    /// boundary: the audio after that boundary is fed to the new instance, so no frame is lost
    /// and every segment comes from one version.
    async fn switch_segmenter(&mut self, state: &Arc<AppState>, replies: &mut Vec<ServerMessage>) {
        let plugin = state.segmenter.load_full();
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
        self.seg_offset = self.last_final_end;
        let pending = self.buf[(self.last_final_end - self.base) as usize..].to_vec();
        if !pending.is_empty() {
            let cuts = self.segment(pending);
            replies.extend(Box::pin(self.apply_cuts(state, cuts)).await);
        }
    }

    async fn on_audio(&mut self, state: &Arc<AppState>, bytes: &[u8]) -> Vec<ServerMessage> {
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
        self.buf.extend_from_slice(&samples);
        let cuts = self.segment(samples);
        self.apply_cuts(state, cuts).await
    }

    async fn finish(&mut self, state: &Arc<AppState>) -> Vec<ServerMessage> {
        let offset = self.seg_offset;
        let cuts = self.segmenter.flush().map(|c| shift(c, offset));
        self.apply_cuts(state, cuts).await
    }

    async fn apply_cuts(
        &mut self,
        state: &Arc<AppState>,
        cuts: Result<Vec<Cut>, crate::plugins::PluginError>,
    ) -> Vec<ServerMessage> {
        let mut replies = Vec::new();
        let cuts = match cuts {
            Ok(c) => c,
            Err(e) => {
                // The instance is unusable after a trap: replace it and carry on.
                state.metrics.plugin_errors.inc();
                tracing::warn!(session = %self.id, "segmenter failed: {e}");
                replies.push(ServerMessage::error(ErrorCode::PluginFailed, e.to_string()));
                self.switch_segmenter(state, &mut replies).await;
                return replies;
            }
        };
        let mut boundary = false;
        for cut in cuts {
            boundary |= cut.kind == CutKind::Final;
            if let Err(e) = self.enqueue(state, cut).await {
                replies.push(e);
            }
        }
        // A new version was activated: live sessions move to it at a segment boundary.
        if boundary && state.segmenter.load().label() != self.segmenter.label() {
            self.switch_segmenter(state, &mut replies).await;
        }
        replies
    }

    async fn enqueue(&mut self, state: &Arc<AppState>, cut: Cut) -> Result<(), ServerMessage> {
        let end_abs = self.base + self.buf.len() as u64;
        let start = cut.start.clamp(self.base, end_abs);
        let end = cut.end.clamp(start, end_abs);
        if end <= start {
            return Ok(());
        }
        // Under backlog, partials are shed first; finals are never shed.
        if cut.kind == CutKind::Partial
            && state.backlog.load(std::sync::atomic::Ordering::Relaxed) > state.cfg.channels.shed_partials_backlog
        {
            state.metrics.partials_shed.inc();
            return Ok(());
        }
        let slice = &self.buf[(start - self.base) as usize..(end - self.base) as usize];
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
        };
        let mut conn = state.redis.clone();
        tasks::enqueue(&mut conn, &state.keys, &meta, &audio::to_s16le(slice))
            .await
            .map_err(|e| ServerMessage::error(ErrorCode::Busy, format!("cannot queue the segment: {e}")))?;
        state.metrics.tasks_enqueued.inc();
        if cut.kind == CutKind::Final {
            self.last_final_end = self.last_final_end.max(end);
            self.outstanding.insert(self.segment, Instant::now());
            self.segment += 1;
            let position = self.base + self.buf.len() as u64;
            let _ = results::set_progress(&mut conn, &state.keys, &self.id, self.segment, position).await;
            self.rev = 0;
            // Keep a little audio before the cut for the next utterance's pre-roll.
            let keep_from = end.saturating_sub(KEEP_BEFORE).max(self.base);
            self.buf.drain(..(keep_from - self.base) as usize);
            self.base = keep_from;
        }
        Ok(())
    }

    /// Applies a result in sequence order: duplicates are dropped, a gap is filled from the
    /// replay stream first.
    async fn on_delivery(&mut self, state: &Arc<AppState>, delivery: Delivery) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        match delivery {
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

    /// A final that takes too long may have been published while nothing else followed to
    /// reveal the gap (a lost Pub/Sub message, or a worker that died between its write and its
    /// publish on a cluster): look for it in the replay stream, which has every written result.
    async fn check_overdue(&mut self, state: &Arc<AppState>) -> Vec<ServerMessage> {
        let overdue = Duration::from_millis(state.cfg.channels.overdue_final_ms.max(100));
        let now = Instant::now();
        let mut any = false;
        for since in self.outstanding.values_mut() {
            if now.duration_since(*since) >= overdue {
                *since = now;
                any = true;
                state.metrics.overdue_finals.inc();
            }
        }
        let mut out = Vec::new();
        if any {
            self.replay(state, &mut out).await;
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
                self.outstanding.remove(&p.segment);
            }
            out.push(ServerMessage::Error {
                code: ErrorCode::SegmentFailed,
                message: err,
                retryable: false,
                segment: Some(p.segment),
            });
            return;
        }
        match p.kind {
            CutKind::Final => {
                // Finals of earlier connections (resume) are delivered once, as seq ordering
                // already guarantees; finals of this one must be outstanding.
                if self.outstanding.remove(&p.segment).is_some() || p.segment < self.first_segment {
                    self.finals_delivered += 1;
                    state.metrics.finals_delivered.inc();
                    if p.enqueued_ms > 0 {
                        state.metrics.observe_final_latency(now_ms().saturating_sub(p.enqueued_ms));
                    }
                    out.push(ServerMessage::Final(seg));
                }
            }
            // A partial for a segment already final is stale.
            CutKind::Partial if p.segment >= self.segment => {
                state.metrics.partials_delivered.inc();
                out.push(ServerMessage::Partial(seg));
            }
            CutKind::Partial => {}
        }
    }
}

fn shift(cuts: Vec<Cut>, offset: u64) -> Vec<Cut> {
    cuts.into_iter().map(|c| Cut { start: c.start + offset, end: c.end + offset, ..c }).collect()
}

fn json_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
