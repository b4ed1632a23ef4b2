//! Replay reads batched across sessions. After a subscriber reconnect every session of the
//! gateway asks at once for what it may have missed; the replayer answers all the requests that
//! are waiting with one pipelined XRANGE per batch (per Redis Cluster slot on a cluster, where a
//! pipeline may not cross slots) instead of one round trip per session.

use std::collections::HashMap;
use std::sync::Arc;

use redis::cluster_routing::Slot;
use tokio::sync::{mpsc, oneshot};

use super::results::{self, Sequenced};
use super::{ChannelError, Conn, Keys};
use crate::metrics::Metrics;

/// Most sessions answered by one pipeline.
const MAX_BATCH: usize = 512;

struct Request {
    session: String,
    after: u64,
    reply: oneshot::Sender<Result<Vec<Sequenced>, ChannelError>>,
}

/// A handle for sessions; the reads run on one task per gateway.
#[derive(Clone)]
pub struct Replayer {
    tx: mpsc::UnboundedSender<Request>,
}

impl Replayer {
    /// Starts the batching task; it ends when the last handle is dropped.
    pub fn start(conn: Conn, keys: Keys, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, conn, keys, metrics));
        Self { tx }
    }

    /// The session's results with seq > `after`, in order.
    pub async fn replay(&self, session: &str, after: u64) -> Result<Vec<Sequenced>, ChannelError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { session: session.to_string(), after, reply })
            .map_err(|_| ChannelError::Batch("the replayer has stopped".into()))?;
        rx.await.map_err(|_| ChannelError::Batch("the replayer dropped the request".into()))?
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Request>, conn: Conn, keys: Keys, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Whatever queued up while the previous batch ran goes in the next one: no added wait.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut groups: HashMap<Option<Slot>, Vec<Request>> = HashMap::new();
        for req in batch.drain(..) {
            let slot = conn.is_cluster().then(|| Slot::for_key(keys.session_replay(&req.session)));
            groups.entry(slot).or_default().push(req);
        }
        let reads = groups.into_values().map(|group| {
            let mut conn = conn.clone();
            let keys = keys.clone();
            let metrics = metrics.clone();
            async move {
                metrics.replay_batches.inc();
                metrics.replays.inc_by(group.len() as u64);
                answer(&mut conn, &keys, group).await;
            }
        });
        futures_util::future::join_all(reads).await;
    }
}

/// One pipeline for the group; every request gets its own answer.
async fn answer(conn: &mut Conn, keys: &Keys, group: Vec<Request>) {
    let mut pipe = redis::pipe();
    for req in &group {
        pipe.cmd("XRANGE").arg(keys.session_replay(&req.session)).arg(results::replay_start(req.after)).arg("+");
    }
    let replies: Result<Vec<redis::streams::StreamRangeReply>, _> = pipe.query_async(conn).await;
    match replies {
        Ok(replies) => {
            for (req, reply) in group.into_iter().zip(replies) {
                let _ = req.reply.send(results::parse_replay(reply));
            }
        }
        Err(e) => {
            for req in group {
                let _ = req.reply.send(Err(ChannelError::Batch(format!("replay read failed: {e}"))));
            }
        }
    }
}
