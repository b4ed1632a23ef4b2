//! Room membership: the sessions a router may fan a result out to.

use redis::AsyncCommands;
use redis::aio::ConnectionLike;

use super::{ChannelError, Keys};

/// How long a room outlives its last join without activity (a crashed gateway's members fade).
const ROOM_TTL_S: i64 = 24 * 3600;

pub async fn join<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    room: &str,
    session: &str,
) -> Result<(), ChannelError> {
    let key = keys.room(room);
    let _: () = redis::pipe().sadd(&key, session).expire(&key, ROOM_TTL_S).query_async(conn).await?;
    Ok(())
}

pub async fn leave<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    room: &str,
    session: &str,
) -> Result<(), ChannelError> {
    let _: () = conn.srem(keys.room(room), session).await?;
    Ok(())
}

pub async fn members<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    room: &str,
) -> Result<Vec<String>, ChannelError> {
    Ok(conn.smembers(keys.room(room)).await?)
}
