//! A WebSocket connection: its frames go through the protocol it speaks (a [`Wire`]) to the
//! sessions it opens, and their events go back rendered by the same wire. Timeouts, limits,
//! keep-alive, backpressure and the shutdown drain live here, once for every protocol: one
//! method per event, and a loop that only waits for the next one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use kiki_protocol::{Input, Wire};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::AppState;
use super::super::protocol::{ErrorCode, ServerMessage};
use super::Places;
use super::budget::{Budget, Rates};
use super::session::Session;
use crate::channels::subscriber::Delivery;

/// How often sessions look for overdue finals, their length and their stop deadline.
const TICK: Duration = Duration::from_secs(1);

/// A session of the connection, with what the connection tracks about it.
struct Slot {
    session: Session,
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

/// The gateway's rules for one connection, read once from its configuration.
struct Rules {
    final_timeout: Duration,
    idle_timeout: Duration,
    ping_every: Duration,
    write_timeout: Duration,
    /// Audio per session (0: no limit).
    max_session_s: u64,
    max_frame_bytes: usize,
    /// Audio awaiting finals past which the socket is left unread.
    held_cap_ms: u64,
    rates: Rates,
}

struct Connection<W: Wire> {
    socket: WebSocket,
    wire: W,
    state: Arc<AppState>,
    places: Places,
    rules: Rules,
    slots: HashMap<String, Slot>,
    /// Session id -> the wire's key for it.
    keys: HashMap<String, String>,
    inbox: mpsc::UnboundedSender<(String, Delivery)>,
    /// Results waiting in the inbox, unsent, as of the last event (the sessions' tasks carry it
    /// to the routers).
    unsent: Arc<AtomicU32>,
    /// What goes out after this event: session events (by wire key), then the wire's own frames.
    out: Vec<(String, ServerMessage)>,
    raw: Vec<String>,
    /// The idle timer is re-armed lazily from this (resetting a timer on every frame costs a
    /// timer-wheel update per frame).
    last_activity: Instant,
    pong_due: Option<Instant>,
    /// Backpressure: the socket is left unread (TCP then slows the sender) until then, when a
    /// frame overdrew its session's budget. Nothing is dropped for speed.
    paused_until: Option<Instant>,
    draining: bool,
}

/// Drives one socket until it closes. Never panics on client input.
pub async fn run<W: Wire>(socket: WebSocket, state: Arc<AppState>, wire: W, places: Places) {
    state.metrics.sessions_active.inc();
    let g = &state.cfg.gateway;
    let rules = Rules {
        final_timeout: Duration::from_secs(g.final_timeout_s),
        idle_timeout: Duration::from_secs(g.idle_timeout_s.max(1)),
        ping_every: Duration::from_secs(g.ping_interval_s.max(1)),
        write_timeout: Duration::from_secs(g.write_timeout_s.max(1)),
        max_session_s: g.max_session_s,
        max_frame_bytes: g.max_frame_bytes,
        held_cap_ms: g.max_held_audio_s.saturating_mul(1000),
        rates: Rates { speed: g.max_audio_speed, burst_s: g.max_audio_burst_s, frames_per_s: g.max_frames_per_s },
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut conn = Connection {
        socket,
        wire,
        state: state.clone(),
        places,
        rules,
        slots: HashMap::new(),
        keys: HashMap::new(),
        inbox: tx,
        unsent: Arc::new(AtomicU32::new(0)),
        out: Vec::new(),
        raw: Vec::new(),
        last_activity: Instant::now(),
        pong_due: None,
        paused_until: None,
        draining: false,
    };
    // What the protocol says first (OpenAI's `session.created`), before any input.
    let greeting = conn.wire.greet();
    conn.raw = greeting;
    if conn.flush().await.is_ok() {
        let ending = conn.serve(rx).await;
        conn.close(ending).await;
    }
    state.metrics.sessions_active.dec();
}

impl<W: Wire> Connection<W> {
    /// Waits for the next event and handles it, until the connection ends.
    async fn serve(&mut self, mut inbox: mpsc::UnboundedReceiver<(String, Delivery)>) -> Ending {
        let idle = tokio::time::sleep_until(self.last_activity + self.rules.idle_timeout);
        tokio::pin!(idle);
        let state = self.state.clone();
        let drain = state.drain.wait();
        tokio::pin!(drain);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Pings keep their own clock: checked on the 1 s tick, a 1 s interval came out as 2 s
        // whenever the tick ran a hair early, longer than a short idle timeout.
        let every = self.rules.ping_every;
        let mut pings = tokio::time::interval_at(Instant::now() + every, every);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let resume = tokio::time::sleep_until(Instant::now());
        tokio::pin!(resume);
        let mut was_reading = true;
        loop {
            // While a session waits for its finals after `stop`, the client has nothing to
            // send: the stop deadline governs then, not the idle timeout.
            let waiting = self.slots.values().any(|s| s.stop_deadline.is_some());
            let reading = self.reading(was_reading);
            was_reading = reading;
            self.unsent.store(u32::try_from(inbox.len()).unwrap_or(u32::MAX), Ordering::Relaxed);
            let step = tokio::select! {
                msg = self.socket.recv(), if reading => self.on_message(msg).await.map(|wait| {
                    if let Some(until) = wait {
                        resume.as_mut().reset(until);
                    }
                }),
                () = &mut resume, if self.paused_until.is_some() => {
                    self.paused_until = None;
                    Ok(())
                }
                delivery = inbox.recv() => match delivery {
                    Some((session, delivery)) => {
                        self.on_delivery(&session, delivery).await;
                        Ok(())
                    }
                    None => Err(Ending::Gone),
                },
                _ = pings.tick() => self.on_ping().await,
                _ = tick.tick() => self.on_tick().await,
                _ = &mut drain, if !self.draining => {
                    self.on_drain().await;
                    Ok(())
                }
                _ = &mut idle, if !waiting => {
                    let deadline = self.last_activity + self.rules.idle_timeout;
                    if Instant::now() < deadline {
                        idle.as_mut().reset(deadline);
                        Ok(())
                    } else {
                        Err(self.on_idle().await)
                    }
                }
            };
            if let Err(ending) = step {
                return ending;
            }
            if let Some(ending) = self.after_event().await {
                return ending;
            }
        }
    }

    /// Whether the socket is read now: not while a frame's budget is overdrawn, nor while a
    /// session holds more audio awaiting finals than allowed.
    fn reading(&mut self, was_reading: bool) -> bool {
        let held_cap = self.rules.held_cap_ms;
        let reading = self.paused_until.is_none() && !self.slots.values().any(|s| s.session.held_ms() > held_cap);
        if !reading {
            // What the peer sent meanwhile sits unread: its silence is ours, not idleness.
            self.last_activity = Instant::now();
            self.pong_due = None;
            if was_reading {
                self.state.metrics.reads_paused.inc();
            }
        }
        reading
    }

    /// A message from the peer (or its error). Ok: when to read again, if a frame overdrew its
    /// budget.
    async fn on_message(&mut self, msg: Option<Result<Message, axum::Error>>) -> Result<Option<Instant>, Ending> {
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(self.on_socket_error(e).await),
            None => return Err(Ending::Gone),
        };
        // Anything from the peer shows it is alive, not only a pong.
        self.pong_due = None;
        let inputs = match msg {
            Message::Text(t) => self.wire.text(t.as_str()),
            Message::Binary(b) => {
                self.state.metrics.frames.inc();
                self.state.metrics.frame_bytes.inc_by(b.len() as u64);
                if b.len() > self.rules.max_frame_bytes {
                    let message =
                        format!("frame of {} bytes exceeds the limit of {}", b.len(), self.rules.max_frame_bytes);
                    let error = ServerMessage::error(ErrorCode::FrameTooLarge, message);
                    vec![Input::Reject { key: self.only_key(), error }]
                } else {
                    self.wire.binary(&b)
                }
            }
            // Once a session has started, a peer that answers pings is alive however long it
            // sends nothing else: kikipounamu's client records for minutes and sends its audio
            // when the user stops. The idle timeout is for peers that answer nothing, and for
            // sockets that never start a session.
            Message::Pong(_) | Message::Ping(_) => {
                if !self.slots.is_empty() {
                    self.last_activity = Instant::now();
                }
                return Ok(None);
            }
            Message::Close(_) => return Err(Ending::Peer),
        };
        self.last_activity = Instant::now();
        let mut wait = Duration::ZERO;
        for input in inputs {
            wait = wait.max(self.on_input(input).await);
        }
        if wait.is_zero() {
            return Ok(None);
        }
        let until = Instant::now() + wait;
        self.paused_until = Some(until);
        Ok(Some(until))
    }

    /// A frame that breaks RFC 6455 fails the connection with 1002, a message over the
    /// transport limit with 1009 (RFC 6455 §7.4.1), each session told first: not by dropping
    /// the TCP connection.
    async fn on_socket_error(&mut self, e: axum::Error) -> Ending {
        tracing::debug!("websocket error from the peer: {e}");
        // axum wraps tungstenite's error without its type: its capacity error reads
        // "Space limit exceeded: Message too long: N > LIMIT".
        if !e.to_string().contains("Message too long") {
            return Ending::Close(close_frame(close_code::PROTOCOL, "protocol error"));
        }
        let error = ServerMessage::error(
            ErrorCode::FrameTooLarge,
            format!("a message over this endpoint's limit ({e}): the connection closes"),
        );
        if self.slots.is_empty() {
            self.out.push((String::new(), error));
        } else {
            self.out.extend(self.slots.keys().map(|k| (k.clone(), error.clone())));
        }
        let _ = self.flush().await;
        Ending::TooBig
    }

    /// One input of the wire; returns how long the socket should go unread (a sender over its
    /// budget is slowed, never dropped).
    async fn on_input(&mut self, input: Input) -> Duration {
        match input {
            Input::Start { key, start } => {
                if self.slots.contains_key(&key) {
                    return self.reject(key, ErrorCode::AlreadyStarted, "this session has already started");
                }
                match Session::open(&self.state, &self.places.principal, start, &self.inbox, self.unsent.clone()).await
                {
                    Ok(mut session) => {
                        for m in session.ready(&self.state).await {
                            self.out.push((key.clone(), m));
                        }
                        self.keys.insert(session.id.clone(), key.clone());
                        let rates = self.rules.rates;
                        let rates = if session.paced_by_workers() { rates.paced_by_workers() } else { rates };
                        self.slots.insert(key, Slot { session, stop_deadline: None, budget: Budget::new(rates) });
                    }
                    Err(e) => {
                        self.state.metrics.protocol_errors.inc();
                        self.out.push((key, e));
                    }
                }
                Duration::ZERO
            }
            Input::Audio { key, bytes } => self.on_audio(key, &bytes).await,
            Input::Utterance { key, samples, rate } => {
                let Some(slot) = self.slots.get_mut(&key) else {
                    return self.reject(key, ErrorCode::NotStarted, "audio before start: send a start message first");
                };
                if slot.stop_deadline.is_some() {
                    return self.reject(key, ErrorCode::NotStarted, "audio after finish");
                }
                // A client-cut utterance is file-like: it counts as a frame, and the audio it
                // holds until its final paces the socket.
                let wait = slot.budget.charge(0.0);
                let msgs = slot.session.on_utterance(&self.state, samples, rate).await;
                self.out.extend(msgs.into_iter().map(|m| (key.clone(), m)));
                wait
            }
            Input::Stop { key } => {
                if !self.slots.contains_key(&key) {
                    return self.reject(key, ErrorCode::NotStarted, "stop before start");
                }
                self.stop(&key).await;
                Duration::ZERO
            }
            Input::Reject { key, error } => {
                self.state.metrics.protocol_errors.inc();
                self.out.push((key, error));
                Duration::ZERO
            }
            Input::Send(frame) => {
                self.raw.push(frame);
                Duration::ZERO
            }
        }
    }

    async fn on_audio(&mut self, key: String, bytes: &[u8]) -> Duration {
        let Some(slot) = self.slots.get_mut(&key) else {
            return self.reject(key, ErrorCode::NotStarted, "audio before start: send a start message first");
        };
        // Late frames in flight when `stop` was sent are normal; drop them quietly.
        if slot.stop_deadline.is_some() {
            return Duration::ZERO;
        }
        // Taken whatever the budget: a sender over it is slowed by not reading its socket.
        let wait = slot.budget.charge(slot.session.frame_seconds(bytes.len()));
        let started = std::time::Instant::now();
        let msgs = slot.session.on_audio(&self.state, bytes).await;
        self.state.metrics.frame_seconds.observe(started.elapsed().as_secs_f64());
        self.out.extend(msgs.into_iter().map(|m| (key.clone(), m)));
        // Its segmenter failed and the policy is to end it: as after `stop`, without a flush.
        if slot.session.failed() && slot.stop_deadline.is_none() {
            slot.stop_deadline = Some(Instant::now() + self.rules.final_timeout);
        }
        wait
    }

    fn reject(&mut self, key: String, code: ErrorCode, message: &str) -> Duration {
        self.state.metrics.protocol_errors.inc();
        self.out.push((key, ServerMessage::error(code, message)));
        Duration::ZERO
    }

    /// The key of the socket's one session, for errors about frames that name none ("" if none).
    fn only_key(&self) -> String {
        if self.slots.len() == 1 { self.slots.keys().next().cloned().unwrap_or_default() } else { String::new() }
    }

    /// Ends a session's audio (`stop`, the drain, the length limit): its last cuts, then its
    /// finals until the deadline.
    async fn stop(&mut self, key: &str) {
        let Some(slot) = self.slots.get_mut(key) else { return };
        if slot.stop_deadline.is_some() {
            return;
        }
        slot.stop_deadline = Some(Instant::now() + self.rules.final_timeout);
        let msgs = slot.session.finish(&self.state).await;
        self.out.extend(msgs.into_iter().map(|m| (key.to_string(), m)));
    }

    async fn on_delivery(&mut self, session: &str, delivery: Delivery) {
        let Some(key) = self.keys.get(session) else { return };
        if let Some(slot) = self.slots.get_mut(key) {
            for m in slot.session.on_delivery(&self.state, delivery).await {
                self.out.push((key.clone(), m));
            }
        }
    }

    async fn on_ping(&mut self) -> Result<(), Ending> {
        if self.pong_due.is_none() {
            self.pong_due = Some(Instant::now() + self.rules.ping_every);
        }
        let ping = self.socket.send(Message::Ping(Vec::new().into()));
        match tokio::time::timeout(self.rules.write_timeout, ping).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Ending::Gone),
        }
    }

    /// Once a second: a dead peer is closed; each session looks for overdue finals, is held to
    /// its length, and ends when its stop deadline passed.
    async fn on_tick(&mut self) -> Result<(), Ending> {
        let now = Instant::now();
        if self.pong_due.is_some_and(|due| now >= due) {
            tracing::debug!(
                "nothing from the peer within {:?} of a ping: closing a dead connection",
                self.rules.ping_every
            );
            return Err(Ending::Gone);
        }
        let keys: Vec<String> = self.slots.keys().cloned().collect();
        for key in keys {
            let Some(slot) = self.slots.get_mut(&key) else { continue };
            for m in slot.session.tick(&self.state).await {
                self.out.push((key.clone(), m));
            }
            let max_ms = self.rules.max_session_s.saturating_mul(1000);
            if slot.stop_deadline.is_none() && max_ms > 0 && slot.session.audio_ms() >= max_ms {
                let message = format!(
                    "the session reached its limit of {} s of audio; its last finals follow",
                    self.rules.max_session_s
                );
                self.out.push((key.clone(), ServerMessage::error(ErrorCode::SessionTooLong, message)));
                self.stop(&key).await;
            }
            if self.slots.get(&key).and_then(|s| s.stop_deadline).is_some_and(|d| now >= d) {
                self.end_session(&key, true).await;
            }
        }
        Ok(())
    }

    /// Shutting down: every session finishes as after `stop`, and the client is told to go
    /// elsewhere with its resume token.
    async fn on_drain(&mut self) {
        self.draining = true;
        let keys: Vec<String> = self.slots.keys().cloned().collect();
        for key in keys {
            self.stop(&key).await;
            let Some(slot) = self.slots.get(&key) else { continue };
            let mut away = ServerMessage::error(ErrorCode::GoingAway, "server shutting down: reconnect and resume");
            if let ServerMessage::Error { resume_token, .. } = &mut away {
                *resume_token = Some(slot.session.resume_token.clone());
            }
            self.out.push((key, away));
        }
        if self.slots.is_empty() {
            self.out.push((String::new(), ServerMessage::error(ErrorCode::GoingAway, "server shutting down")));
            self.out.push((String::new(), ServerMessage::End { segments: 0 }));
        }
    }

    /// Nothing from the peer for the idle timeout: every session ends, told why.
    async fn on_idle(&mut self) -> Ending {
        let timeout = self.rules.idle_timeout;
        let idle = ServerMessage::error(ErrorCode::IdleTimeout, format!("nothing received for {timeout:?}"));
        if self.slots.is_empty() {
            self.out.push((String::new(), idle.clone()));
            self.out.push((String::new(), ServerMessage::End { segments: 0 }));
        }
        for (key, slot) in self.slots.drain() {
            self.out.push((key.clone(), idle.clone()));
            self.out.push((key, slot.session.end_message()));
            slot.session.leave(&self.state).await;
        }
        let _ = self.flush().await;
        Ending::Close(close_frame(close_code::POLICY, "timeout"))
    }

    /// A session ends: `end` (after a `timeout` error and what was never queued, when its
    /// deadline passed with finals missing).
    async fn end_session(&mut self, key: &str, timed_out: bool) {
        let Some(slot) = self.slots.remove(key) else { return };
        let s = slot.session;
        if timed_out {
            let missing = s.outstanding();
            self.out.extend(s.never_queued().into_iter().map(|m| (key.to_string(), m)));
            let error = ServerMessage::error(ErrorCode::Timeout, format!("{missing} final(s) not ready in time"));
            self.out.push((key.to_string(), error));
        }
        self.out.push((key.to_string(), s.end_message()));
        self.keys.remove(&s.id);
        s.leave(&self.state).await;
    }

    /// After each event: sessions whose every final arrived after `stop` end; what the event
    /// produced goes out; the connection closes once it has nothing left to do.
    async fn after_event(&mut self) -> Option<Ending> {
        let done: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.stop_deadline.is_some() && s.session.outstanding() == 0)
            .map(|(k, _)| k.clone())
            .collect();
        let ended = !done.is_empty();
        for key in done {
            self.end_session(&key, false).await;
        }
        if let Err(ending) = self.flush().await {
            return Some(ending);
        }
        if self.slots.is_empty() && (self.draining || ended && self.wire.closes_after_end()) {
            let frame = if self.draining {
                close_frame(close_code::AWAY, "going away")
            } else {
                close_frame(close_code::NORMAL, "end")
            };
            return Some(Ending::Close(frame));
        }
        None
    }

    /// Sends the wire's own frames first (acknowledgements answer the input), then the
    /// rendered events in order, within the write timeout: a peer that stops reading must not
    /// hold the connection (and its timers) in `send`.
    async fn flush(&mut self) -> Result<(), Ending> {
        let (raw, out) = (std::mem::take(&mut self.raw), std::mem::take(&mut self.out));
        let (socket, wire) = (&mut self.socket, &mut self.wire);
        let send = async {
            for frame in raw {
                socket.send(Message::Text(frame.into())).await?;
            }
            for (key, msg) in out {
                for frame in wire.render(&key, &msg) {
                    socket.send(Message::Text(frame.into())).await?;
                }
            }
            Ok::<_, axum::Error>(())
        };
        match tokio::time::timeout(self.rules.write_timeout, send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::Gone),
            Err(_) => {
                tracing::debug!("the peer read nothing for {:?}: dropping it", self.rules.write_timeout);
                Err(Ending::Gone)
            }
        }
    }

    /// Leaves every session and says goodbye as the ending asks.
    async fn close(mut self, ending: Ending) {
        for (_, slot) in self.slots.drain() {
            slot.session.leave(&self.state).await;
        }
        let write_timeout = self.rules.write_timeout;
        let socket = &mut self.socket;
        match ending {
            // tungstenite queued the echo of the peer's Close (RFC 6455 §5.5.1): send it.
            Ending::Peer => {
                let _ = tokio::time::timeout(write_timeout, futures_util::SinkExt::flush(socket)).await;
            }
            Ending::Gone => {
                let _ = tokio::time::timeout(write_timeout, socket.send(Message::Close(None))).await;
            }
            Ending::Close(frame) => {
                let _ = tokio::time::timeout(write_timeout, socket.send(Message::Close(Some(frame)))).await;
            }
            // The rest of the message is still unread, and closing a socket with unread data
            // resets the connection, which can discard what the peer has not read yet: give
            // it a moment to read the error and the Close.
            Ending::TooBig => {
                let frame = close_frame(close_code::SIZE, "message too big");
                let _ = tokio::time::timeout(write_timeout, socket.send(Message::Close(Some(frame)))).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame { code, reason: reason.into() }
}
