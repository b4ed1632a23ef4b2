//! The two Redis channels between gateways and workers.
//!
//! Tasks go gateway -> worker on a Stream with a consumer group (at-least-once). Results go
//! worker -> gateway over Pub/Sub to the owning gateway's channel, each written first to a short
//! per-session replay stream by one Lua script, so a missed message can be read back by seq.

pub mod keys;
pub mod plugin_record;
pub mod replayer;
pub mod results;
pub mod rooms;
pub mod server;
pub mod subscriber;
pub mod target;
pub mod tasks;
pub mod workers;

pub use keys::Keys;
pub use target::{Conn, RedisTarget, Subscription};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis reply: {0}")]
    Reply(#[from] redis::ParsingError),
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("redis config: {0}")]
    Config(String),
    #[error("{0}")]
    Batch(String),
}

/// Whether Redis answers (an error reply, such as NOAUTH, is not an answer here).
pub async fn ping<C: redis::aio::ConnectionLike + Send + Sync>(conn: &mut C) -> Result<(), ChannelError> {
    let _: String = redis::cmd("PING").query_async(conn).await?;
    Ok(())
}

/// The key every gateway of a deployment signs resume tokens with (when there is no auth
/// secret): `fresh` is stored unless another gateway stored one first; the stored one is read.
pub async fn shared_resume_key<C: redis::aio::ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    fresh: &str,
) -> Result<String, ChannelError> {
    let _: Option<String> = redis::cmd("SET").arg(keys.resume_key()).arg(fresh).arg("NX").query_async(conn).await?;
    Ok(redis::cmd("GET").arg(keys.resume_key()).query_async(conn).await?)
}

/// Appends a result (JSON) to a router's archive stream, capped at about 100,000 entries.
pub async fn archive<C: redis::aio::ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    name: &str,
    json: &str,
) -> Result<(), ChannelError> {
    let _: String = redis::cmd("XADD")
        .arg(keys.archive(name))
        .arg("MAXLEN")
        .arg("~")
        .arg(100_000)
        .arg("*")
        .arg("result")
        .arg(json)
        .query_async(conn)
        .await?;
    Ok(())
}

/// A plain connection to one Redis server (no reconnects, no cluster routing).
pub type PlainConn = redis::aio::MultiplexedConnection;

/// One plain connection to a Redis server by URL (an operator tool's own: `kiki bench load`
/// samples the server with it, and counts as exactly one client).
pub async fn connect_plain(url: &str) -> Result<PlainConn, ChannelError> {
    Ok(redis::Client::open(url)?.get_multiplexed_async_connection().await?)
}

/// The server's `INFO` text.
pub async fn server_info<C: redis::aio::ConnectionLike + Send + Sync>(conn: &mut C) -> Result<String, ChannelError> {
    Ok(redis::cmd("INFO").query_async(conn).await?)
}
