//! The two Redis channels between gateways and workers.
//!
//! Tasks go gateway -> worker on a Stream with a consumer group (at-least-once). Results go
//! worker -> gateway over Pub/Sub to the owning gateway's channel, each written first to a short
//! per-session replay stream by one Lua script, so a missed message can be read back by seq.

pub mod keys;
pub mod results;
pub mod rooms;
pub mod subscriber;
pub mod tasks;
pub mod workers;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};

pub use keys::Keys;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis reply: {0}")]
    Reply(#[from] redis::ParsingError),
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
}

/// Timeout for ordinary commands. Redis-rs defaults to 500 ms, too short for a busy server.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// A self-reconnecting multiplexed connection for non-blocking commands.
pub async fn manager(client: &Client) -> Result<ConnectionManager, ChannelError> {
    let cfg = ConnectionManagerConfig::new()
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(3);
    Ok(client.get_connection_manager_with_config(cfg).await?)
}

/// A connection of its own for blocking reads (XREADGROUP BLOCK must not share the multiplexed
/// pipe, or every other command waits behind it).
pub async fn blocking_connection(client: &Client, block: Duration) -> Result<MultiplexedConnection, ChannelError> {
    let cfg = AsyncConnectionConfig::new()
        .set_response_timeout(Some(block + COMMAND_TIMEOUT))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    Ok(client.get_multiplexed_async_connection_with_config(&cfg).await?)
}
