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
