//! The global subscriber: ONE Pub/Sub connection per gateway process, subscribed to the
//! gateway's own channel, dispatching results to sessions in-process.
//!
//! Pub/Sub is at-most-once, so the subscriber also watches itself: after any reconnect it tells
//! every session to resync from its replay stream, and a periodic probe published to its own
//! channel must come back, or the connection is torn down and made again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::results::Sequenced;
use super::target::{self, Conn, RedisTarget, Subscription};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// What a session's task receives from the subscriber.
#[derive(Debug)]
pub enum Delivery {
    Result(Box<Sequenced>),
    /// The subscriber reconnected: messages may have been missed, read the replay stream.
    Resync,
}

/// Where a session's deliveries go: its connection's inbox, tagged with the session id (a
/// connection may hold several sessions).
pub type Inbox = mpsc::UnboundedSender<(String, Delivery)>;

/// Session id -> its connection's inbox. Shared by the subscriber task and every session.
pub struct Dispatcher {
    sessions: RwLock<HashMap<String, Inbox>>,
    live: AtomicBool,
    metrics: Arc<Metrics>,
}

const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

impl Dispatcher {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { sessions: RwLock::default(), live: AtomicBool::new(false), metrics }
    }

    pub fn register(&self, session: &str, inbox: Inbox) {
        if let Ok(mut map) = self.sessions.write() {
            map.insert(session.to_string(), inbox);
        }
    }

    pub fn unregister(&self, session: &str) {
        if let Ok(mut map) = self.sessions.write() {
            map.remove(session);
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    fn dispatch(&self, msg: Sequenced) {
        let map = match self.sessions.read() {
            Ok(m) => m,
            Err(_) => return,
        };
        match map.get(&msg.payload.session) {
            Some(tx) => {
                let _ = tx.send((msg.payload.session.clone(), Delivery::Result(Box::new(msg))));
            }
            // The session ended or lives on another gateway now; its replay stream keeps it.
            None => {
                self.metrics.results_unroutable.inc();
            }
        }
    }

    fn resync_all(&self) {
        if let Ok(map) = self.sessions.read() {
            for (session, tx) in map.iter() {
                let _ = tx.send((session.clone(), Delivery::Resync));
            }
        }
    }

    /// Runs until shutdown: connect, subscribe, dispatch, and reconnect whenever the connection
    /// drops or the probe does not come back.
    pub async fn run(self: Arc<Self>, target: RedisTarget, mut publisher: Conn, channel: String, shutdown: Shutdown) {
        let mut first = true;
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_triggered() {
                return;
            }
            let mut sub = match target.subscribe(&channel).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("subscriber: subscribing to {channel} failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            self.live.store(true, Ordering::Relaxed);
            if !first {
                self.metrics.subscriber_reconnects.inc();
                tracing::info!("subscriber: resubscribed to {channel}; sessions resync from replay");
                self.resync_all();
            }
            first = false;
            self.pump(&mut sub, &mut publisher, &channel, &shutdown).await;
            self.live.store(false, Ordering::Relaxed);
        }
    }

    /// Reads one connection until it fails; returns to reconnect.
    async fn pump(&self, sub: &mut Subscription, publisher: &mut Conn, channel: &str, shutdown: &Shutdown) {
        let sharded = publisher.is_cluster();
        let mut tick = tokio::time::interval(PROBE_EVERY);
        let mut probe_seq = 0u64;
        let mut outstanding: Option<(u64, Instant)> = None;
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                msg = sub.next() => {
                    let Some(bytes) = msg else {
                        tracing::warn!("subscriber: connection lost");
                        return;
                    };
                    let bytes = bytes.as_slice();
                    if let Some(rest) = bytes.strip_prefix(b"probe ") {
                        let n = std::str::from_utf8(rest).ok().and_then(|s| s.parse::<u64>().ok());
                        if let (Some(n), Some((want, sent))) = (n, outstanding)
                            && n == want {
                            self.metrics.probe_rtt_us.set(sent.elapsed().as_micros() as i64);
                            outstanding = None;
                        }
                        continue;
                    }
                    self.metrics.pubsub_messages.inc();
                    self.metrics.pubsub_bytes.inc_by(bytes.len() as u64);
                    match Sequenced::parse(bytes) {
                        Ok(m) => self.dispatch(m),
                        Err(e) => tracing::warn!("subscriber: dropping malformed message: {e}"),
                    }
                }
                _ = tick.tick() => {
                    if let Some((_, sent)) = outstanding
                        && sent.elapsed() > PROBE_DEADLINE {
                        tracing::warn!("subscriber: probe not back after {PROBE_DEADLINE:?}; reconnecting");
                        return;
                    }
                    if outstanding.is_none() {
                        probe_seq += 1;
                        let probe = format!("probe {probe_seq}");
                        if target::publish(publisher, sharded, channel, probe.as_bytes()).await.is_ok() {
                            outstanding = Some((probe_seq, Instant::now()));
                        }
                    }
                }
            }
        }
    }
}
