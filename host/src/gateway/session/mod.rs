//! A WebSocket connection: its frames go through the protocol it speaks (a [`Wire`]) to the
//! sessions it opens, and their events go back rendered by the same wire. Timeouts, limits,
//! keep-alive and the shutdown drain live here, once for every protocol.

mod audio_buf;
mod budget;
mod choices;
mod ledger;
mod live;
mod settled;
mod speech;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use kiki_protocol::{Input, Wire};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::AppState;
use super::protocol::{ErrorCode, ServerMessage};
use crate::channels::subscriber::Delivery;
use budget::Budget;
pub use budget::Rates;
use live::Live;
pub use live::{MAX_LANGUAGE_BYTES, MAX_PROMPT_BYTES};

/// How often sessions look for overdue finals, their length and their stop deadline.
const TICK: Duration = Duration::from_secs(1);

/// A session of the connection, with what the connection tracks about it.
struct Slot {
    live: Live,
    /// Set by `stop` (or the drain, or the length limit): the latest time for its last finals.
    stop_deadline: Option<Instant>,
    budget: Budget,
}

/// How a connection ends, for the Close frame it gets.
enum Ending {
    /// The peer sent Close: its echo goes back.
    Peer,
    /// The peer is gone or unresponsive.
    Gone,
    /// We close, with this code and reason.
    Close(CloseFrame),
    /// A message over the transport limit: closed with 1009 once the sessions were told.
    TooBig,
}

/// What the connection holds for as long as it lives: its place under the per-address limit
/// and, with auth, under its subject's.
pub struct Places {
    pub _conn: Option<super::server::ConnPlace>,
    pub _subject: Option<super::limits::Guard<String>>,
    /// Who the connection's token names (rooms and resume are bound to it).
    pub principal: super::auth::Principal,
}

/// Drives one socket until it closes. Never panics on client input.
pub async fn run<W: Wire>(mut socket: WebSocket, state: Arc<AppState>, mut wire: W, places: Places) {
    state.metrics.sessions_active.inc();
    let g = &state.cfg.gateway;
    let final_timeout = Duration::from_secs(g.final_timeout_s);
    let idle_timeout = Duration::from_secs(g.idle_timeout_s.max(1));
    let ping_every = Duration::from_secs(g.ping_interval_s.max(1));
    let write_timeout = Duration::from_secs(g.write_timeout_s.max(1));
    let max_session_ms = g.max_session_s.saturating_mul(1000);
    let rates = Rates { speed: g.max_audio_speed, burst_s: g.max_audio_burst_s, frames_per_s: g.max_frames_per_s };
    let (tx, mut inbox) = mpsc::unbounded_channel::<(String, Delivery)>();
    let mut slots: HashMap<String, Slot> = HashMap::new();
    // Session id -> the wire's key for it.
    let mut keys: HashMap<String, String> = HashMap::new();
    // The idle timer is armed once and re-armed lazily when it fires (from the last activity):
    // resetting a timer on every frame costs a timer-wheel update per frame.
    let mut last_activity = Instant::now();
    let idle = tokio::time::sleep_until(last_activity + idle_timeout);
    tokio::pin!(idle);
    let drain = state.drain.wait();
    tokio::pin!(drain);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Pings keep their own clock: checked on the 1 s tick, a 1 s interval came out as 2 s
    // whenever the tick ran a hair early, longer than a short idle timeout.
    let mut pings = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pong_due: Option<Instant> = None;
    // Backpressure: the socket is left unread (TCP then slows the sender) until `paused_until`
    // when a frame overdrew its session's budget, and while a session holds more audio awaiting
    // finals than `max_held_audio_s`. Nothing is dropped for speed.
    let held_cap_ms = g.max_held_audio_s.saturating_mul(1000);
    let mut paused_until: Option<Instant> = None;
    let resume = tokio::time::sleep_until(Instant::now());
    tokio::pin!(resume);
    let mut was_reading = true;
    let mut draining = false;
    // What the protocol says first (OpenAI's `session.created`), before any input.
    let greeting = wire.greet();
    let greeted = tokio::time::timeout(write_timeout, send(&mut socket, &mut wire, Vec::new(), greeting)).await;
    if !matches!(greeted, Ok(Ok(()))) {
        state.metrics.sessions_active.dec();
        return;
    }
    let close = loop {
        // While a session waits for its finals after `stop`, the client has nothing to send:
        // the stop deadline governs then, not the idle timeout.
        let waiting = slots.values().any(|s| s.stop_deadline.is_some());
        let reading = paused_until.is_none() && !slots.values().any(|s| s.live.held_ms() > held_cap_ms);
        if !reading {
            // What the peer sent meanwhile sits unread: its silence is ours, not idleness.
            last_activity = Instant::now();
            pong_due = None;
            if was_reading {
                state.metrics.reads_paused.inc();
            }
        }
        was_reading = reading;
        let mut out: Vec<(String, ServerMessage)> = Vec::new();
        let mut raw: Vec<String> = Vec::new();
        tokio::select! {
            msg = socket.recv(), if reading => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    // A frame that breaks RFC 6455 fails the connection with 1002, a message
                    // over the transport limit with 1009 (RFC 6455 §7.4.1), each session told
                    // first: not by dropping the TCP connection.
                    Some(Err(e)) => {
                        tracing::debug!("websocket error from the peer: {e}");
                        // axum wraps tungstenite's error without its type: its capacity
                        // error reads "Space limit exceeded: Message too long: N > LIMIT".
                        if e.to_string().contains("Message too long") {
                            let error = ServerMessage::error(
                                ErrorCode::FrameTooLarge,
                                format!("a message over this endpoint's limit ({e}): the connection closes"),
                            );
                            let out = if slots.is_empty() {
                                vec![(String::new(), error)]
                            } else {
                                slots.keys().map(|k| (k.clone(), error.clone())).collect()
                            };
                            let _ = tokio::time::timeout(write_timeout, send(&mut socket, &mut wire, out, Vec::new())).await;
                            break Ending::TooBig;
                        }
                        break Ending::Close(close_frame(close_code::PROTOCOL, "protocol error"));
                    }
                    None => break Ending::Gone,
                };
                // Anything from the peer shows it is alive, not only a pong.
                pong_due = None;
                let inputs = match msg {
                    Message::Text(t) => wire.text(t.as_str()),
                    Message::Binary(b) => {
                        state.metrics.frames.inc();
                        state.metrics.frame_bytes.inc_by(b.len() as u64);
                        if b.len() > g.max_frame_bytes {
                            let error = ServerMessage::error(
                                ErrorCode::FrameTooLarge,
                                format!("frame of {} bytes exceeds the limit of {}", b.len(), g.max_frame_bytes),
                            );
                            vec![Input::Reject { key: only_key(&slots), error }]
                        } else {
                            wire.binary(&b)
                        }
                    }
                    // Once a session has started, a peer that answers pings is alive however
                    // long it sends nothing else: kikipounamu's client records for minutes and
                    // sends its audio when the user stops. The idle timeout is for peers that
                    // answer nothing, and for sockets that never start a session.
                    Message::Pong(_) | Message::Ping(_) => {
                        if !slots.is_empty() {
                            last_activity = Instant::now();
                        }
                        continue;
                    }
                    Message::Close(_) => break Ending::Peer,
                };
                last_activity = Instant::now();
                let mut wait = Duration::ZERO;
                for input in inputs {
                    wait = wait.max(handle(&state, &places.principal, input, &mut slots, &mut keys, &tx, rates, final_timeout, &mut out, &mut raw).await);
                }
                if !wait.is_zero() {
                    let until = Instant::now() + wait;
                    paused_until = Some(until);
                    resume.as_mut().reset(until);
                }
            }
            () = &mut resume, if paused_until.is_some() => {
                paused_until = None;
            }
            delivery = inbox.recv() => {
                let Some((session, delivery)) = delivery else { break Ending::Gone };
                let Some(key) = keys.get(&session) else { continue };
                if let Some(slot) = slots.get_mut(key) {
                    for m in slot.live.on_delivery(&state, delivery).await {
                        out.push((key.clone(), m));
                    }
                }
            }
            _ = pings.tick() => {
                if pong_due.is_none() {
                    pong_due = Some(Instant::now() + ping_every);
                }
                let ping = socket.send(Message::Ping(Vec::new().into()));
                if !matches!(tokio::time::timeout(write_timeout, ping).await, Ok(Ok(()))) {
                    break Ending::Gone;
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if pong_due.is_some_and(|due| now >= due) {
                    tracing::debug!("nothing from the peer within {ping_every:?} of a ping: closing a dead connection");
                    break Ending::Gone;
                }
                let mut timed_out = Vec::new();
                for (key, slot) in slots.iter_mut() {
                    for m in slot.live.tick(&state).await {
                        out.push((key.clone(), m));
                    }
                    if slot.stop_deadline.is_none() && max_session_ms > 0 && slot.live.audio_ms() >= max_session_ms {
                        out.push((key.clone(), ServerMessage::error(
                            ErrorCode::SessionTooLong,
                            format!("the session reached its limit of {} s of audio; its last finals follow", g.max_session_s),
                        )));
                        slot.stop_deadline = Some(now + final_timeout);
                        for m in slot.live.finish(&state).await {
                            out.push((key.clone(), m));
                        }
                    }
                    if slot.stop_deadline.is_some_and(|d| now >= d) {
                        timed_out.push(key.clone());
                    }
                }
                for key in timed_out {
                    if let Some(slot) = slots.remove(&key) {
                        let missing = slot.live.outstanding();
                        out.extend(slot.live.never_queued().into_iter().map(|m| (key.clone(), m)));
                        out.push((key.clone(), ServerMessage::error(ErrorCode::Timeout, format!("{missing} final(s) not ready in time"))));
                        out.push((key.clone(), slot.live.end_message()));
                        keys.remove(&slot.live.id);
                        slot.live.leave(&state).await;
                    }
                }
            }
            _ = &mut drain, if !draining => {
                // Shutting down: every session finishes as after `stop`, and the client is told
                // to go elsewhere with its resume token.
                draining = true;
                let now = Instant::now();
                for (key, slot) in slots.iter_mut() {
                    if slot.stop_deadline.is_none() {
                        slot.stop_deadline = Some(now + final_timeout);
                        for m in slot.live.finish(&state).await {
                            out.push((key.clone(), m));
                        }
                    }
                    let mut away = ServerMessage::error(ErrorCode::GoingAway, "server shutting down: reconnect and resume");
                    if let ServerMessage::Error { resume_token, .. } = &mut away {
                        *resume_token = Some(slot.live.resume_token.clone());
                    }
                    out.push((key.clone(), away));
                }
                if slots.is_empty() {
                    out.push((String::new(), ServerMessage::error(ErrorCode::GoingAway, "server shutting down")));
                    out.push((String::new(), ServerMessage::End { segments: 0 }));
                }
            }
            _ = &mut idle, if !waiting => {
                let deadline = last_activity + idle_timeout;
                if Instant::now() < deadline {
                    idle.as_mut().reset(deadline);
                    continue;
                }
                let idle = ServerMessage::error(ErrorCode::IdleTimeout, format!("nothing received for {idle_timeout:?}"));
                if slots.is_empty() {
                    out.push((String::new(), idle.clone()));
                    out.push((String::new(), ServerMessage::End { segments: 0 }));
                }
                for (key, slot) in slots.drain() {
                    out.push((key.clone(), idle.clone()));
                    out.push((key, slot.live.end_message()));
                    slot.live.leave(&state).await;
                }
                let _ = tokio::time::timeout(write_timeout, send(&mut socket, &mut wire, out, raw)).await;
                break Ending::Close(close_frame(close_code::POLICY, "timeout"));
            }
        }
        // Sessions whose every final arrived after `stop` end here.
        let done: Vec<String> = slots
            .iter()
            .filter(|(_, s)| s.stop_deadline.is_some() && s.live.outstanding() == 0)
            .map(|(k, _)| k.clone())
            .collect();
        let ended = !done.is_empty();
        for key in done {
            if let Some(slot) = slots.remove(&key) {
                out.push((key.clone(), slot.live.end_message()));
                keys.remove(&slot.live.id);
                slot.live.leave(&state).await;
            }
        }
        // A peer that stops reading must not hold this loop (and its timers) in `send`.
        match tokio::time::timeout(write_timeout, send(&mut socket, &mut wire, out, raw)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break Ending::Gone,
            Err(_) => {
                tracing::debug!("the peer read nothing for {write_timeout:?}: dropping it");
                break Ending::Gone;
            }
        }
        if slots.is_empty() && (draining || ended && wire.closes_after_end()) {
            break Ending::Close(if draining {
                close_frame(close_code::AWAY, "going away")
            } else {
                close_frame(close_code::NORMAL, "end")
            });
        }
    };
    for slot in slots.into_values() {
        slot.live.leave(&state).await;
    }
    match close {
        // tungstenite queued the echo of the peer's Close (RFC 6455 §5.5.1): send it.
        Ending::Peer => {
            let _ = tokio::time::timeout(write_timeout, futures_util::SinkExt::flush(&mut socket)).await;
        }
        Ending::Gone => {
            let _ = tokio::time::timeout(write_timeout, socket.send(Message::Close(None))).await;
        }
        Ending::Close(frame) => {
            let _ = tokio::time::timeout(write_timeout, socket.send(Message::Close(Some(frame)))).await;
        }
        // The rest of the message is still unread, and closing a socket with unread data resets
        // the connection, which can discard what the peer has not read yet: give it a moment to
        // read the error and the Close.
        Ending::TooBig => {
            let frame = close_frame(close_code::SIZE, "message too big");
            let _ = tokio::time::timeout(write_timeout, socket.send(Message::Close(Some(frame)))).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    state.metrics.sessions_active.dec();
}

/// The key of the socket's one session, for errors about frames that name none ("" if none).
fn only_key(slots: &HashMap<String, Slot>) -> String {
    if slots.len() == 1 { slots.keys().next().cloned().unwrap_or_default() } else { String::new() }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    state: &Arc<AppState>,
    principal: &super::auth::Principal,
    input: Input,
    slots: &mut HashMap<String, Slot>,
    keys: &mut HashMap<String, String>,
    tx: &mpsc::UnboundedSender<(String, Delivery)>,
    rates: Rates,
    final_timeout: Duration,
    out: &mut Vec<(String, ServerMessage)>,
    raw: &mut Vec<String>,
) -> Duration {
    let mut reject = |key: String, code: ErrorCode, message: &str| {
        state.metrics.protocol_errors.inc();
        out.push((key, ServerMessage::error(code, message)));
        Duration::ZERO
    };
    match input {
        Input::Start { key, start } => {
            if slots.contains_key(&key) {
                return reject(key, ErrorCode::AlreadyStarted, "this session has already started");
            }
            match Live::open(state, principal, start, tx).await {
                Ok(mut live) => {
                    for m in live.ready(state).await {
                        out.push((key.clone(), m));
                    }
                    keys.insert(live.id.clone(), key.clone());
                    let rates = if live.paced_by_workers() { rates.paced_by_workers() } else { rates };
                    slots.insert(key, Slot { live, stop_deadline: None, budget: Budget::new(rates) });
                }
                Err(e) => {
                    state.metrics.protocol_errors.inc();
                    out.push((key, e));
                }
            }
            Duration::ZERO
        }
        Input::Audio { key, bytes } => {
            let Some(slot) = slots.get_mut(&key) else {
                return reject(key, ErrorCode::NotStarted, "audio before start: send a start message first");
            };
            // Late frames in flight when `stop` was sent are normal; drop them quietly.
            if slot.stop_deadline.is_some() {
                return Duration::ZERO;
            }
            // Taken whatever the budget: a sender over it is slowed by not reading its socket.
            let wait = slot.budget.charge(slot.live.frame_seconds(bytes.len()));
            let started = std::time::Instant::now();
            let msgs = slot.live.on_audio(state, &bytes).await;
            state.metrics.frame_seconds.observe(started.elapsed().as_secs_f64());
            out.extend(msgs.into_iter().map(|m| (key.clone(), m)));
            // Its segmenter failed and the policy is to end it: as after `stop`, without a flush.
            if slot.live.failed() && slot.stop_deadline.is_none() {
                slot.stop_deadline = Some(Instant::now() + final_timeout);
            }
            wait
        }
        Input::Utterance { key, samples, rate } => {
            let Some(slot) = slots.get_mut(&key) else {
                return reject(key, ErrorCode::NotStarted, "audio before start: send a start message first");
            };
            if slot.stop_deadline.is_some() {
                return reject(key, ErrorCode::NotStarted, "audio after finish");
            }
            // A client-cut utterance is file-like: it counts as a frame, and the audio it holds
            // until its final paces the socket.
            let wait = slot.budget.charge(0.0);
            let msgs = slot.live.on_utterance(state, samples, rate).await;
            out.extend(msgs.into_iter().map(|m| (key.clone(), m)));
            wait
        }
        Input::Stop { key } => {
            let Some(slot) = slots.get_mut(&key) else {
                return reject(key, ErrorCode::NotStarted, "stop before start");
            };
            if slot.stop_deadline.is_none() {
                slot.stop_deadline = Some(Instant::now() + final_timeout);
                let msgs = slot.live.finish(state).await;
                out.extend(msgs.into_iter().map(|m| (key.clone(), m)));
            }
            Duration::ZERO
        }
        Input::Reject { key, error } => {
            state.metrics.protocol_errors.inc();
            out.push((key, error));
            Duration::ZERO
        }
        Input::Send(frame) => {
            raw.push(frame);
            Duration::ZERO
        }
    }
}

/// Sends the wire's own frames first (acknowledgements answer the input), then the rendered
/// events in order.
async fn send<W: Wire>(
    socket: &mut WebSocket,
    wire: &mut W,
    out: Vec<(String, ServerMessage)>,
    raw: Vec<String>,
) -> Result<(), axum::Error> {
    for frame in raw {
        socket.send(Message::Text(frame.into())).await?;
    }
    for (key, msg) in out {
        for frame in wire.render(&key, &msg) {
            socket.send(Message::Text(frame.into())).await?;
        }
    }
    Ok(())
}

fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame { code, reason: reason.into() }
}
