//! The task channel: a Redis Stream read by one consumer group of workers.

use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use serde::{Deserialize, Serialize};

use super::keys::GROUP;
use super::{ChannelError, Keys};
use crate::plugins::CutKind;

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
    #[serde(default)]
    pub language: Option<String>,
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
        self.audio.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect()
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
