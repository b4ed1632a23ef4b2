//! The result channel: results are written to a per-session replay stream and published to the
//! owning gateway's channel in one Lua script; the gateway reads missed ones back by seq.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use super::{ChannelError, Keys};
use crate::vocab::CutKind;

static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/publish_result.lua")));

pub use kiki_protocol::Word;

/// What a worker reports for one task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResultPayload {
    pub session: String,
    pub segment: u64,
    pub kind: CutKind,
    #[serde(default)]
    pub rev: u32,
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    #[serde(default)]
    pub words: Vec<Word>,
    /// Set when the segment could not be transcribed (e.g. dead-lettered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set when a result plugin failed (or could not run) for this result: the text is
    /// delivered, and the session is told why it may be unprocessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_error: Option<String>,
    /// Set when (some of) the speech was in a language the model does not transcribe: that
    /// text was withheld, and this says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported_language: Option<String>,
    /// Gateway enqueue time, carried through for latency figures.
    #[serde(default)]
    pub enqueued_ms: u64,
    /// Wall-clock ms when the worker published it (0: unknown), for the delivery leg of the
    /// latency breakdown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub published_ms: u64,
    /// Set when this result is delivered to a session other than the one that spoke (room
    /// fan-out): the speaking session's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The language the model heard (detected, or the one asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl ResultPayload {
    /// Dedupe field in the session's state hash: one final per segment, one partial per rev.
    pub fn dedupe_field(&self) -> String {
        let origin = self.origin.as_deref().unwrap_or("");
        match self.kind {
            CutKind::Final => format!("f:{origin}:{}", self.segment),
            CutKind::Partial => format!("p:{origin}:{}:{}", self.segment, self.rev),
        }
    }
}

/// A result as the gateway receives it: its place in the session's sequence, and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequenced {
    pub epoch: String,
    pub seq: u64,
    pub payload: ResultPayload,
}

impl Sequenced {
    /// Parses `"<epoch>:<seq> <json>"`.
    pub fn parse(msg: &[u8]) -> Result<Self, ChannelError> {
        let malformed = |reason: &str| ChannelError::Malformed { what: "result", reason: reason.to_string() };
        let space = msg.iter().position(|&b| b == b' ').ok_or_else(|| malformed("no header"))?;
        let header = std::str::from_utf8(&msg[..space]).map_err(|_| malformed("header not utf-8"))?;
        let (epoch, seq) = header.rsplit_once(':').ok_or_else(|| malformed("header has no seq"))?;
        let seq = seq.parse().map_err(|_| malformed("seq not a number"))?;
        let payload = serde_json::from_slice(&msg[space + 1..]).map_err(|e| malformed(&e.to_string()))?;
        Ok(Self { epoch: epoch.to_string(), seq, payload })
    }
}

/// Settings of the replay buffer.
#[derive(Debug, Clone)]
pub struct ReplayPolicy {
    pub max_len: usize,
    pub ttl_s: u64,
    /// Redis Cluster: publish with `SPUBLISH`, after the script (see `publish`).
    pub sharded: bool,
}

/// Writes and publishes one result. Returns `(fresh, seq)`; `fresh` is false when the same
/// result had been written before (a redelivered task).
///
/// On one server the script publishes in the same step. On a cluster it cannot (the channel
/// lives in another slot), so the message is SPUBLISHed here after the write, and again for a
/// redelivered task: a worker that died between the two is covered, and the gateway drops the
/// duplicate by its seq.
pub async fn publish<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    policy: &ReplayPolicy,
    channel: &str,
    result: &ResultPayload,
    fallback_epoch: &str,
) -> Result<(bool, u64), ChannelError> {
    let payload =
        serde_json::to_string(result).map_err(|e| ChannelError::Malformed { what: "result", reason: e.to_string() })?;
    let (fresh, seq, channel, msg): (i64, u64, String, Option<Vec<u8>>) = PUBLISH
        .key(keys.session_state(&result.session))
        .key(keys.session_replay(&result.session))
        .arg(channel)
        .arg(result.dedupe_field())
        .arg(payload)
        .arg(policy.max_len)
        .arg(policy.ttl_s)
        .arg(fallback_epoch)
        .arg(if policy.sharded { "" } else { "PUBLISH" })
        .invoke_async(conn)
        .await?;
    if policy.sharded
        && let Some(msg) = msg
    {
        super::target::publish(conn, true, &channel, &msg).await?;
    }
    Ok((fresh == 1, seq))
}

/// Creates a session's state with a fresh epoch. Returns the epoch.
pub async fn open_session<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    session: &str,
    epoch: &str,
    reply: &str,
    ttl_s: u64,
) -> Result<(), ChannelError> {
    let key = keys.session_state(session);
    let _: () = redis::pipe()
        .hset(&key, "epoch", epoch)
        .hset(&key, "seq", 0)
        .hset(&key, "reply", reply)
        .expire(&key, ttl_s as i64)
        .query_async(conn)
        .await?;
    Ok(())
}

/// What a resuming client needs to know about its session, if it is still there.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub epoch: String,
    pub seq: u64,
    /// Segment ids already used by earlier connections of the session.
    pub next_segment: u64,
    /// Audio position (16 kHz samples) the session had reached at its last final.
    pub position: u64,
}

/// Moves a session to this gateway (its results follow) and reads its state; None when the
/// session's state expired or never existed.
pub async fn attach_session<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    session: &str,
    reply: &str,
    ttl_s: u64,
) -> Result<Option<SessionState>, ChannelError> {
    let key = keys.session_state(session);
    let (epoch, seq, next, position): (Option<String>, Option<u64>, Option<u64>, Option<u64>) = redis::pipe()
        .hget(&key, "epoch")
        .hget(&key, "seq")
        .hget(&key, "next_segment")
        .hget(&key, "position")
        .query_async(conn)
        .await?;
    let Some(epoch) = epoch else { return Ok(None) };
    let _: () = redis::pipe().hset(&key, "reply", reply).expire(&key, ttl_s as i64).query_async(conn).await?;
    Ok(Some(SessionState {
        epoch,
        seq: seq.unwrap_or(0),
        next_segment: next.unwrap_or(0),
        position: position.unwrap_or(0),
    }))
}

/// Records the next segment id and the audio position, so that a resumed session neither
/// reuses ids nor restarts its clock.
pub async fn set_progress<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    session: &str,
    next: u64,
    position: u64,
) -> Result<(), ChannelError> {
    let _: () =
        conn.hset_multiple(keys.session_state(session), &[("next_segment", next), ("position", position)]).await?;
    Ok(())
}

/// Seq of the oldest result still in the replay stream (None when it is empty or gone).
pub async fn oldest_replayable<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    session: &str,
) -> Result<Option<u64>, ChannelError> {
    let reply: redis::streams::StreamRangeReply = conn.xrange_count(keys.session_replay(session), "-", "+", 1).await?;
    Ok(reply.ids.first().and_then(|e| e.id.split('-').next()).and_then(|s| s.parse().ok()))
}

/// The result channel of the gateway holding `session` (None when the session is unknown).
pub async fn session_channel<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    session: &str,
) -> Result<Option<String>, ChannelError> {
    Ok(conn.hget(keys.session_state(session), "reply").await?)
}

/// Results with seq > `after`, in order, from the replay stream.
pub async fn replay<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    session: &str,
    after: u64,
) -> Result<Vec<Sequenced>, ChannelError> {
    let reply: redis::streams::StreamRangeReply =
        conn.xrange(keys.session_replay(session), replay_start(after), "+").await?;
    parse_replay(reply)
}

/// First replay-stream id after `seq` (entries are `<seq>-1`).
pub fn replay_start(seq: u64) -> String {
    format!("{}-1", seq + 1)
}

/// The results of an XRANGE over a replay stream, in order.
pub fn parse_replay(reply: redis::streams::StreamRangeReply) -> Result<Vec<Sequenced>, ChannelError> {
    let mut out = Vec::with_capacity(reply.ids.len());
    for entry in reply.ids {
        if let Some(v) = entry.map.get("m") {
            let bytes: Vec<u8> = redis::from_redis_value_ref(v)?;
            out.push(Sequenced::parse(&bytes)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_payload() {
        let p = ResultPayload {
            session: "s1".into(),
            segment: 3,
            kind: CutKind::Final,
            rev: 0,
            text: "hi there".into(),
            start_ms: 0,
            end_ms: 900,
            words: vec![],
            error: None,
            plugin_error: None,
            unsupported_language: None,
            enqueued_ms: 1,
            published_ms: 0,
            origin: None,
            language: None,
        };
        let msg = format!("ab12:7 {}", serde_json::to_string(&p).unwrap());
        let s = Sequenced::parse(msg.as_bytes()).unwrap();
        assert_eq!((s.epoch.as_str(), s.seq), ("ab12", 7));
        assert_eq!(s.payload, p);
        assert!(Sequenced::parse(b"nonsense").is_err());
        assert!(Sequenced::parse(b"e:x {}").is_err());
    }
}
