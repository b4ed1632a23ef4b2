//! Worker liveness: each worker scores itself in a sorted set every few seconds; a worker whose
//! score is older than the expiry is dead.

use redis::AsyncCommands;
use redis::aio::ConnectionLike;

use super::{ChannelError, Keys};

/// A worker is alive if it beat within this window.
pub const EXPIRY_MS: u64 = 10_000;
/// How often a worker beats.
pub const INTERVAL_MS: u64 = 2_000;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub async fn beat<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    worker: &str,
) -> Result<(), ChannelError> {
    let now = now_ms();
    let _: () = conn.zadd(keys.workers(), worker, now).await?;
    let _: () = conn.zrembyscore(keys.workers(), 0, now.saturating_sub(EXPIRY_MS * 6)).await?;
    Ok(())
}

pub async fn leave<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    worker: &str,
) -> Result<(), ChannelError> {
    let _: () = conn.zrem(keys.workers(), worker).await?;
    Ok(())
}

/// Workers that beat within the expiry window.
pub async fn alive<C: ConnectionLike + Send + Sync>(conn: &mut C, keys: &Keys) -> Result<Vec<String>, ChannelError> {
    let min = now_ms().saturating_sub(EXPIRY_MS);
    Ok(conn.zrangebyscore(keys.workers(), min, "+inf").await?)
}
