//! The task channel: a Redis Stream read by one consumer group of workers.

use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use serde::{Deserialize, Serialize};

use super::keys::GROUP;
use super::{ChannelError, Keys};
use crate::vocab::CutKind;

/// What a worker needs to know about a segment, besides its audio.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskMeta {
    pub session: String,
    pub segment: u64,
    pub kind: CutKind,
    /// Revision of a partial within its segment (0 for finals).
    #[serde(default)]
    pub rev: u32,
    /// Channel of the gateway that owns the session.
    pub reply: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Wall-clock ms when the gateway enqueued it, for latency figures.
    pub enqueued_ms: u64,
    /// Results for the session's connection waiting unsent at its gateway when this was queued
    /// (a congestion signal: routers may drop partials past a bound, `router-default`'s
    /// `max_backlog`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub owner_backlog: u32,
    /// How the session wants it transcribed (the same keys on the wire, flattened).
    #[serde(flatten)]
    pub options: TaskOptions,
}

impl TaskMeta {
    /// A task for `[start_ms, end_ms)` of a session's audio, enqueued now.
    pub fn new(
        session: &str,
        segment: u64,
        kind: CutKind,
        reply: &str,
        span_ms: (u64, u64),
        options: TaskOptions,
    ) -> Self {
        Self {
            session: session.to_string(),
            segment,
            kind,
            rev: 0,
            reply: reply.to_string(),
            start_ms: span_ms.0,
            end_ms: span_ms.1,
            enqueued_ms: super::workers::now_ms(),
            owner_backlog: 0,
            options,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a session asks of the workers for each of its segments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskOptions {
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hotwords: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Text that conditions the decoder (the session's `prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Beam width the session asked for (else the worker's configured one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beam_size: Option<u8>,
    /// The post-processor and router the session chose, with its options for them (absent:
    /// the workers' defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocessor: Option<PluginChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<PluginChoice>,
    /// Whisper's task: transcribe (the default, left out on the wire) or translate to English.
    #[serde(default, skip_serializing_if = "ModelTask::is_transcribe")]
    pub task: ModelTask,
}

/// What the model is asked to do with a segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelTask {
    #[default]
    Transcribe,
    /// Speech in any language to English text (multilingual models only).
    Translate,
}

impl ModelTask {
    pub fn is_transcribe(&self) -> bool {
        *self == ModelTask::Transcribe
    }
}

/// A session's choice of a result plugin: its name ("" for the default) and options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginChoice {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<(String, String)>,
}

/// A task as read from the stream.
#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub meta: TaskMeta,
    /// 16 kHz mono s16le.
    pub audio: Vec<u8>,
}

impl Task {
    pub fn samples(&self) -> Vec<f32> {
        self.audio.chunks_exact(2).map(|b| crate::audio::s16_to_f32(i16::from_le_bytes([b[0], b[1]]))).collect()
    }

    fn parse(entry: StreamId) -> Result<Self, ChannelError> {
        let malformed = |reason: String| ChannelError::Malformed { what: "task", reason };
        let meta: Vec<u8> = entry
            .map
            .get("meta")
            .map(redis::from_redis_value_ref)
            .transpose()?
            .ok_or_else(|| malformed(format!("{} has no meta", entry.id)))?;
        let meta: TaskMeta = serde_json::from_slice(&meta).map_err(|e| malformed(format!("{}: {e}", entry.id)))?;
        let audio: Vec<u8> = entry.map.get("audio").map(redis::from_redis_value_ref).transpose()?.unwrap_or_default();
        Ok(Self { id: entry.id, meta, audio })
    }
}

/// Creates the stream and the group if missing; safe to call from every process at start.
pub async fn ensure_group<C: ConnectionLike + Send + Sync>(conn: &mut C, keys: &Keys) -> Result<(), ChannelError> {
    let res: redis::RedisResult<()> = conn.xgroup_create_mkstream(keys.tasks(), GROUP, "0").await;
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Appends a task. Returns its stream id.
pub async fn enqueue<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    meta: &TaskMeta,
    audio: &[u8],
) -> Result<String, ChannelError> {
    let meta = serde_json::to_vec(meta).map_err(|e| ChannelError::Malformed { what: "task", reason: e.to_string() })?;
    let id: String = conn.xadd(keys.tasks(), "*", &[("meta", meta.as_slice()), ("audio", audio)]).await?;
    Ok(id)
}

/// Reads up to `count` new tasks for `consumer`, blocking at most `block_ms`. Entries that cannot
/// be parsed are returned separately so that the caller can dead-letter them.
pub async fn read<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    consumer: &str,
    count: usize,
    block_ms: usize,
) -> Result<(Vec<Task>, Vec<(String, String)>), ChannelError> {
    let opts = StreamReadOptions::default().group(GROUP, consumer).count(count).block(block_ms);
    let reply: Option<StreamReadReply> = conn.xread_options(&[keys.tasks()], &[">"], &opts).await?;
    let mut tasks = Vec::new();
    let mut bad = Vec::new();
    for key in reply.map(|r| r.keys).unwrap_or_default() {
        for entry in key.ids {
            let id = entry.id.clone();
            match Task::parse(entry) {
                Ok(t) => tasks.push(t),
                Err(e) => bad.push((id, e.to_string())),
            }
        }
    }
    Ok((tasks, bad))
}

pub async fn ack<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    ids: &[String],
) -> Result<(), ChannelError> {
    if ids.is_empty() {
        return Ok(());
    }
    let _: i64 = conn.xack(keys.tasks(), GROUP, ids).await?;
    Ok(())
}

/// Whether `e` says the task stream or its consumer group is gone: Redis came back empty (a
/// restart without persistence, a failover to an empty replica, FLUSHALL). The cure is
/// [`ensure_group`], which every process may run.
pub fn is_missing_group(e: &ChannelError) -> bool {
    match e {
        ChannelError::Redis(e) => {
            e.code() == Some("NOGROUP") || e.to_string().to_ascii_lowercase().contains("no such key")
        }
        _ => false,
    }
}

/// Entries the group has not delivered yet (its lag).
pub async fn backlog<C: ConnectionLike + Send + Sync>(conn: &mut C, keys: &Keys) -> Result<u64, ChannelError> {
    Ok(group_lag(conn, keys).await?.unwrap_or(0))
}

/// The group's lag, or `None` when the stream or the group does not exist.
pub async fn group_lag<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
) -> Result<Option<u64>, ChannelError> {
    Ok(group_info(conn, keys).await?.map(|g| g.lag))
}

/// The task group as Redis reports it (None when the stream or the group does not exist), and
/// the dead-letter stream's length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupInfo {
    pub lag: u64,
    pub pending: u64,
    pub consumers: u64,
}

pub async fn group_info<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
) -> Result<Option<GroupInfo>, ChannelError> {
    let groups: redis::streams::StreamInfoGroupsReply = match conn.xinfo_groups(keys.tasks()).await {
        Ok(g) => g,
        Err(e) => {
            let e = ChannelError::from(e);
            return if is_missing_group(&e) { Ok(None) } else { Err(e) };
        }
    };
    Ok(groups.groups.iter().find(|g| g.name == GROUP).map(|g| GroupInfo {
        lag: g.lag.unwrap_or(0) as u64,
        pending: g.pending as u64,
        consumers: g.consumers as u64,
    }))
}

/// Tasks in the dead-letter stream.
pub async fn dead_letters<C: ConnectionLike + Send + Sync>(conn: &mut C, keys: &Keys) -> Result<u64, ChannelError> {
    Ok(conn.xlen(keys.dead_letters()).await?)
}

/// The group's pending (delivered, unacknowledged) tasks: how many, the oldest, and per consumer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pending {
    pub count: u64,
    /// Stream id of the oldest pending task (its first part is when it was queued, in ms).
    pub oldest: Option<String>,
    pub per_consumer: Vec<(String, u64)>,
}

impl Pending {
    /// How long the oldest pending task has been in the stream, at `now_ms`.
    pub fn oldest_age_ms(&self, now_ms: u64) -> u64 {
        self.oldest.as_deref().map_or(0, |id| now_ms.saturating_sub(id_key(id).0))
    }
}

pub async fn pending<C: ConnectionLike + Send + Sync>(conn: &mut C, keys: &Keys) -> Result<Pending, ChannelError> {
    let reply: redis::streams::StreamPendingReply = conn.xpending(keys.tasks(), GROUP).await?;
    Ok(match reply {
        redis::streams::StreamPendingReply::Data(d) => Pending {
            count: d.count as u64,
            oldest: Some(d.start_id),
            per_consumer: d.consumers.into_iter().map(|c| (c.name, c.pending as u64)).collect(),
        },
        // Empty, or a reply shape a newer client may add.
        _ => Pending::default(),
    })
}

/// A task pending longer than the min-idle time, with how often it was delivered.
#[derive(Debug, Clone)]
pub struct Stale {
    pub id: String,
    pub consumer: String,
    pub deliveries: u64,
}

/// Tasks idle for at least `min_idle_ms` on any consumer (oldest first).
pub async fn stale<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    min_idle_ms: u64,
    count: usize,
) -> Result<Vec<Stale>, ChannelError> {
    let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(keys.tasks())
        .arg(GROUP)
        .arg("IDLE")
        .arg(min_idle_ms)
        .arg("-")
        .arg("+")
        .arg(count)
        .query_async(conn)
        .await?;
    Ok(reply
        .ids
        .into_iter()
        .map(|p| Stale { id: p.id, consumer: p.consumer, deliveries: p.times_delivered as u64 })
        .collect())
}

/// Claims tasks idle for `min_idle_ms` for `consumer` (XAUTOCLAIM), at most `count`.
pub async fn reclaim<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    consumer: &str,
    min_idle_ms: u64,
    count: usize,
) -> Result<(Vec<Task>, Vec<(String, String)>), ChannelError> {
    let reply: redis::streams::StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
        .arg(keys.tasks())
        .arg(GROUP)
        .arg(consumer)
        .arg(min_idle_ms)
        .arg("0-0")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let mut tasks = Vec::new();
    let mut bad = Vec::new();
    for entry in reply.claimed {
        let id = entry.id.clone();
        match Task::parse(entry) {
            Ok(t) => tasks.push(t),
            Err(e) => bad.push((id, e.to_string())),
        }
    }
    Ok((tasks, bad))
}

/// Resets the idle time of tasks this consumer still works on, so that a slow batch is not
/// reclaimed by another worker while it runs.
pub async fn extend_claim<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    consumer: &str,
    ids: &[String],
) -> Result<(), ChannelError> {
    if ids.is_empty() {
        return Ok(());
    }
    let _: Vec<String> = redis::cmd("XCLAIM")
        .arg(keys.tasks())
        .arg(GROUP)
        .arg(consumer)
        .arg(0)
        .arg(ids)
        .arg("JUSTID")
        .query_async(conn)
        .await?;
    Ok(())
}

/// Moves a task to the dead-letter stream with the reason, then acks it (in one transaction, so
/// a crash cannot lose it between the two).
pub async fn dead_letter<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    id: &str,
    meta: Option<&TaskMeta>,
    reason: &str,
    deliveries: u64,
) -> Result<(), ChannelError> {
    let meta = meta.and_then(|m| serde_json::to_string(m).ok()).unwrap_or_default();
    let _: () = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(keys.dead_letters())
        .arg("MAXLEN")
        .arg("~")
        .arg(10_000)
        .arg("*")
        .arg("task")
        .arg(id)
        .arg("reason")
        .arg(reason)
        .arg("deliveries")
        .arg(deliveries)
        .arg("meta")
        .arg(meta)
        .ignore()
        .cmd("XACK")
        .arg(keys.tasks())
        .arg(GROUP)
        .arg(id)
        .ignore()
        .query_async(conn)
        .await?;
    Ok(())
}

/// Whether the task `id` is still on the stream (queued, or delivered and not yet trimmed).
pub async fn exists<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    id: &str,
) -> Result<bool, ChannelError> {
    let reply: redis::streams::StreamRangeReply = conn.xrange(keys.tasks(), id, id).await?;
    Ok(!reply.ids.is_empty())
}

/// Reads a task's fields by id (for dead-lettering a stale task we did not read ourselves).
pub async fn fetch<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    id: &str,
) -> Result<Option<Task>, ChannelError> {
    let reply: redis::streams::StreamRangeReply = conn.xrange(keys.tasks(), id, id).await?;
    Ok(reply.ids.into_iter().next().map(Task::parse).transpose().ok().flatten())
}

/// Trims the stream below the oldest entry the group still needs: the oldest pending one, or
/// the first not yet delivered. MAXLEN would delete pending tasks (and XAUTOCLAIM then drops them
/// silently), so trimming is by MINID only. Returns the number of entries removed.
pub async fn trim<C: ConnectionLike + Send + Sync>(conn: &mut C, keys: &Keys) -> Result<u64, ChannelError> {
    let groups: redis::streams::StreamInfoGroupsReply = conn.xinfo_groups(keys.tasks()).await?;
    let Some(group) = groups.groups.into_iter().find(|g| g.name == GROUP) else { return Ok(0) };
    let first_undelivered = next_id(&group.last_delivered_id);
    let min_id = match pending(conn, keys).await?.oldest {
        Some(p) if id_key(&p) < id_key(&first_undelivered) => p,
        _ => first_undelivered,
    };
    let removed: u64 = redis::cmd("XTRIM").arg(keys.tasks()).arg("MINID").arg(&min_id).query_async(conn).await?;
    Ok(removed)
}

fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn next_id(id: &str) -> String {
    let (ms, seq) = id_key(id);
    format!("{ms}-{}", seq + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_numerically() {
        assert!(id_key("9-5") < id_key("10-0"));
        assert_eq!(next_id("1700000000000-7"), "1700000000000-8");
        assert_eq!(next_id("0-0"), "0-1");
    }
}
