//! One simulated user: connects, streams clips at real time with silence between them (the talk
//! ratio), stops, and records when each utterance's final arrived.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::LoadOptions;
use crate::gateway::protocol::ServerMessage;

/// A final "covers" an utterance when it reaches this close to the utterance's end (the
/// segmenter may end a cut a little before the last quiet syllable).
const COVER_SLACK_MS: u64 = 300;

#[derive(Debug, Clone)]
pub struct Utterance {
    /// Session-clock span of the speech.
    pub start_ms: u64,
    pub end_ms: u64,
    /// When its last frame was sent.
    sent_at: Instant,
    /// End of speech → arrival of the final that covers it.
    pub final_ms: Option<f64>,
}

#[derive(Debug, Default)]
pub struct SessionReport {
    pub connected: bool,
    /// `end` arrived after `stop`.
    pub ended: bool,
    pub utterances: Vec<Utterance>,
    pub finals: usize,
    pub partial_ms: Vec<f64>,
    /// Finals the server said it sent (`end.segments`).
    pub finals_reported: usize,
    pub errors: Vec<String>,
    pub audio_seconds: f64,
    /// Times the session resumed on a gateway after losing its socket.
    pub reconnects: usize,
    /// Finals received twice (the same segment): must stay 0.
    pub duplicates: usize,
}

type Tx = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;
type Rx = futures_util::stream::SplitStream<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
>;

/// What `ready` said.
struct Ready {
    token: String,
    recovered: Option<bool>,
    position_ms: Option<u64>,
}

/// Audio sent in the last this-many frames is kept, to resend after a resume.
const HISTORY_MS: u64 = 60_000;

/// Connects to `url` and starts (or, with `resume`, resumes) a session.
async fn connect(url: &str, opts: &LoadOptions, resume: Option<(&str, u64)>) -> Result<(Tx, Rx, Ready), String> {
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_with_config(url, Some(socket_config()), false),
    )
    .await
    .map_err(|_| "connect: timed out".to_string())?
    .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    let options: serde_json::Map<String, serde_json::Value> =
        opts.segmenter.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let mut start = serde_json::json!({
        "type": "start", "sample_rate": 16_000, "format": "pcm_s16le", "plugins": {"segmenter": options},
    });
    if let Some((token, last_seq)) = resume {
        start["resume"] = serde_json::json!({"token": token, "last_seq": last_seq});
    }
    tx.send(Message::text(start.to_string())).await.map_err(|e| format!("send start: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(10), next_message(&mut rx)).await {
        Ok(Some(ServerMessage::Ready { resume_token, recovered, position_ms, .. })) => {
            Ok((tx, rx, Ready { token: resume_token, recovered, position_ms }))
        }
        Ok(Some(ServerMessage::Error { code, .. })) => Err(format!("start refused: {code:?}")),
        Ok(_) => Err("no ready".into()),
        Err(_) => Err("ready: timed out".into()),
    }
}

/// Reconnects to the next gateway after `url_index` and resumes; `None` when every attempt failed.
async fn reconnect(
    opts: &LoadOptions,
    url_index: &mut usize,
    token: &str,
    last_seq: u64,
    report: &mut SessionReport,
) -> Option<(Tx, Rx, Ready)> {
    for attempt in 0..opts.urls.len() * 3 {
        *url_index = (*url_index + 1) % opts.urls.len();
        match connect(&opts.urls[*url_index], opts, Some((token, last_seq))).await {
            Ok((tx, rx, ready)) => {
                report.reconnects += 1;
                if ready.recovered != Some(true) {
                    report.errors.push("resume: recovered false".into());
                }
                return Some((tx, rx, ready));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200 * (attempt as u64 + 1))).await,
        }
    }
    None
}

/// The audio a session sends: frames queued at their times, and the recent ones kept to send
/// again after a resume.
struct Outgoing {
    /// Samples per frame (20 ms by default, as the WebApp's worklet sends them).
    frame: usize,
    frame_ms: u64,
    /// Queued, last first: (frame index, pcm, last frame of an utterance).
    pending: Vec<(u64, Vec<u8>, bool)>,
    /// What was sent, by frame index.
    history: std::collections::VecDeque<(u64, Vec<u8>, bool)>,
    keep: usize,
    frame_no: u64,
    /// The end of what was sent, in samples.
    sent_samples: usize,
}

impl Outgoing {
    fn new(frame_ms: u64) -> Self {
        let frame_ms = frame_ms.max(1);
        Self {
            frame: (frame_ms * 16) as usize,
            frame_ms,
            pending: Vec::new(),
            history: Default::default(),
            keep: (HISTORY_MS / frame_ms) as usize,
            frame_no: 0,
            sent_samples: 0,
        }
    }

    /// Queues an utterance and the silence after it (the talk ratio); returns its span.
    fn queue(&mut self, speech: &[f32], talk: f64, t0: Instant) -> Utterance {
        let frame = self.frame;
        let start_ms = self.sent_samples as u64 / 16;
        let frames: Vec<&[f32]> = speech.chunks(frame).collect();
        // Speech ends at the last frame with sound in it, not at the clip's trailing silence.
        let peak = speech.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        let last = frames.iter().rposition(|f| f.iter().any(|s| s.abs() > peak * 0.05)).unwrap_or(0);
        let mut queued = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            // Every frame whole, so that frame n starts at sample n * frame (resume).
            let mut pcm = crate::audio::to_s16le(f);
            pcm.resize(frame * 2, 0);
            queued.push((self.frame_no, pcm, i == last));
            self.frame_no += 1;
        }
        let silence = (speech.len() as f64 * (1.0 - talk) / talk) as usize / frame;
        for _ in 0..silence {
            queued.push((self.frame_no, vec![0u8; frame * 2], false));
            self.frame_no += 1;
        }
        queued.reverse();
        self.pending = queued;
        let end_ms = start_ms + ((last + 1) * frame) as u64 / 16;
        Utterance { start_ms, end_ms, sent_at: t0, final_ms: None }
    }

    /// When the next frame is due.
    fn next_due(&self, t0: Instant) -> Option<Instant> {
        self.pending.last().map(|(n, _, _)| t0 + Duration::from_millis(n * self.frame_ms))
    }

    /// The next frame, now counted as sent.
    fn take(&mut self) -> Option<(Vec<u8>, bool)> {
        let (n, pcm, last) = self.pending.pop()?;
        self.sent_samples = self.sent_samples.max((n + 1) as usize * self.frame);
        self.history.push_back((n, pcm.clone(), last));
        if self.history.len() > self.keep {
            self.history.pop_front();
        }
        Some((pcm, last))
    }

    /// After a resume the server goes on from the end of the last final: what followed it is
    /// sent again (it is due already, so it goes at once).
    fn resend_from(&mut self, position_ms: u64) {
        let frame = self.frame;
        let from = position_ms as usize * 16;
        let first = (from / frame) as u64;
        let again = self.history.iter().rev().filter(|(n, _, _)| *n >= first).cloned();
        // The frame the resume point falls in is cut there. A frame cut at an earlier resume
        // holds the end of frame n only.
        self.pending.extend(again.map(|(n, pcm, last)| {
            let start = (n as usize + 1) * frame - pcm.len() / 2;
            let skip = from.saturating_sub(start) * 2;
            (n, pcm[skip.min(pcm.len())..].to_vec(), last)
        }));
        self.history.retain(|(n, _, _)| *n < first);
    }
}

/// What a session heard: finals (once each, timed against the utterances they cover),
/// partials, errors and `end`.
struct Heard {
    last_seq: u64,
    finals_seen: std::collections::HashSet<u64>,
}

impl Heard {
    /// Records a message; true at `end`.
    fn take(&mut self, msg: ServerMessage, report: &mut SessionReport, t0: Instant) -> bool {
        match msg {
            ServerMessage::Final(s) => {
                self.last_seq = self.last_seq.max(s.seq);
                if !self.finals_seen.insert(s.segment) {
                    report.duplicates += 1;
                    return false;
                }
                report.finals += 1;
                let now = Instant::now();
                for u in report.utterances.iter_mut().filter(|u| u.final_ms.is_none()) {
                    if s.start_ms <= u.end_ms && s.end_ms + COVER_SLACK_MS >= u.end_ms && u.sent_at > t0 {
                        u.final_ms = Some(now.duration_since(u.sent_at).as_secs_f64() * 1e3);
                    }
                }
            }
            ServerMessage::Partial(s) => {
                self.last_seq = self.last_seq.max(s.seq);
                let audio_end = t0 + Duration::from_millis(s.end_ms);
                report.partial_ms.push(Instant::now().saturating_duration_since(audio_end).as_secs_f64() * 1e3);
            }
            ServerMessage::Error { code, .. } => report.errors.push(format!("{code:?}")),
            ServerMessage::End { segments } => {
                report.finals_reported = segments as usize;
                report.ended = true;
                return true;
            }
            ServerMessage::Ready { .. } => {}
        }
        false
    }
}

/// Runs one simulated user for `opts.duration`, then stops and waits for `end`.
pub async fn session(index: usize, opts: &LoadOptions, clips: &[Vec<f32>]) -> SessionReport {
    let mut report = SessionReport::default();
    // Sessions spread over the gateways; one that loses its gateway resumes on the next.
    let mut url_index = index % opts.urls.len().max(1);
    let (mut tx, mut rx, mut token) = match connect(&opts.urls[url_index], opts, None).await {
        Ok((tx, rx, ready)) => (tx, rx, ready.token),
        Err(e) => {
            report.errors.push(e);
            return report;
        }
    };
    report.connected = true;
    let mut heard = Heard { last_seq: 0, finals_seen: Default::default() };
    let mut out = Outgoing::new(opts.frame_ms);
    let t0 = Instant::now();
    let mut clip = index % clips.len();
    let streaming_until = t0 + opts.duration;
    let mut stopped = false;
    let mut stop_deadline = None;
    loop {
        if out.pending.is_empty() && !stopped {
            if Instant::now() >= streaming_until {
                let _ = tx.send(Message::text(r#"{"type":"stop"}"#)).await;
                stopped = true;
                stop_deadline = Some(Instant::now() + opts.drain);
            } else {
                report.utterances.push(out.queue(&clips[clip], opts.talk, t0));
                clip = (clip + 1) % clips.len();
            }
        }
        let next_send = out.next_due(t0);
        tokio::select! {
            _ = async { tokio::time::sleep_until(next_send.unwrap_or(t0).into()).await }, if next_send.is_some() => {
                if let Some((pcm, last)) = out.take() {
                    if tx.send(Message::binary(pcm)).await.is_err() {
                        // The gateway is gone: the next receive sees the close and reconnects.
                        continue;
                    }
                    if last && let Some(u) = report.utterances.last_mut() {
                        u.sent_at = Instant::now();
                    }
                }
            }
            _ = async { tokio::time::sleep_until(stop_deadline.unwrap_or(t0).into()).await }, if stop_deadline.is_some() => {
                report.errors.push("no end before the drain timeout".into());
                break;
            }
            msg = next_message(&mut rx) => {
                let Some(msg) = msg else {
                    // Closed before `end`: resume on another gateway (the same one, if it is
                    // the only one), unless there is none to go to.
                    let Some((t, r, ready)) = reconnect(opts, &mut url_index, &token, heard.last_seq, &mut report).await
                    else {
                        report.errors.push("connection closed early".into());
                        break;
                    };
                    (tx, rx, token) = (t, r, ready.token);
                    if let Some(from) = ready.position_ms {
                        out.resend_from(from);
                    }
                    // A `stop` sent to the lost socket is sent again after the resent audio.
                    stopped = false;
                    stop_deadline = None;
                    continue;
                };
                if heard.take(msg, &mut report, t0) {
                    break;
                }
            }
        }
    }
    report.audio_seconds = out.sent_samples as f64 / 16_000.0;
    let _ = tx.send(Message::Close(None)).await;
    report
}

/// Small buffers, as the gateway uses: thousands of simulated users share this process.
fn socket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4 * 1024).write_buffer_size(0)
}

/// The next server message; `None` when the socket closed. Unknown frames are skipped.
async fn next_message<S>(rx: &mut S) -> Option<ServerMessage>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match rx.next().await? {
            Ok(Message::Text(t)) => {
                if let Ok(m) = serde_json::from_str::<ServerMessage>(&t) {
                    return Some(m);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
