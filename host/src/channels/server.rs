//! Commands to a Redis server itself rather than to Kiki's keys: whether it answers at all,
//! and forming the local three-master cluster `kiki up --redis-cluster` runs.

use redis::aio::ConnectionLike;

use super::{ChannelError, PlainConn, connect_plain};

/// Whether the server at `url` answers PING now; an error reply (NOAUTH when the default user
/// is off) is an answer too.
pub async fn answers(url: &str) -> bool {
    let Ok(mut c) = connect_plain(url).await else { return false };
    let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
    pong.as_ref().map_or_else(|e| e.code().is_some(), |_| true)
}

/// One plain connection per node, for forming a cluster.
pub async fn nodes(urls: &[String]) -> Result<Vec<PlainConn>, ChannelError> {
    let mut conns = Vec::with_capacity(urls.len());
    for url in urls {
        conns.push(connect_plain(url).await?);
    }
    Ok(conns)
}

/// `CLUSTER ADDSLOTSRANGE first last`.
pub async fn add_slots<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    first: usize,
    last: usize,
) -> Result<(), ChannelError> {
    let _: () = redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(first).arg(last).query_async(conn).await?;
    Ok(())
}

/// `CLUSTER MEET host port`.
pub async fn meet<C: ConnectionLike + Send + Sync>(conn: &mut C, host: &str, port: u16) -> Result<(), ChannelError> {
    let _: () = redis::cmd("CLUSTER").arg("MEET").arg(host).arg(port).query_async(conn).await?;
    Ok(())
}

/// `CLUSTER INFO`.
pub async fn cluster_info<C: ConnectionLike + Send + Sync>(conn: &mut C) -> Result<String, ChannelError> {
    Ok(redis::cmd("CLUSTER").arg("INFO").query_async(conn).await?)
}
