//! Where Redis is and how to reach it: one server or a Redis Cluster, plain TCP or TLS, with an
//! ACL user or without. Every role connects through here, so the rest of the code sees one
//! connection type (`Conn`) and one subscription type, whichever deployment it runs against.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection, PubSubStream};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, PushInfo,
    PushKind, RedisFuture, TlsCertificates, Value,
};
use tokio::sync::mpsc;

use super::ChannelError;
use crate::config::RedisConfig;

/// Timeout for ordinary commands. Redis-rs defaults to 500 ms, too short for a busy server.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A Redis deployment as configured: its seed nodes, whether it is a cluster, TLS material.
#[derive(Clone)]
pub struct RedisTarget {
    nodes: Vec<ConnectionInfo>,
    certs: Option<TlsCertificates>,
    cluster: bool,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Addresses only: the URLs may carry a password.
        write!(f, "{}{}", if self.cluster { "cluster " } else { "" }, self.label())
    }
}

impl RedisTarget {
    /// Parses `urls` (one URL, or a cluster's seed nodes separated by commas) and reads the TLS
    /// files. Cluster mode is asked of the server when the config leaves it unset.
    pub async fn new(urls: &str, cfg: &RedisConfig) -> Result<Self, ChannelError> {
        let nodes = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| u.into_connection_info())
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() {
            return Err(ChannelError::Config("no Redis URL given".into()));
        }
        let certs = tls_certificates(cfg)?;
        let mut target = Self { nodes, certs, cluster: cfg.cluster.unwrap_or(false) };
        if cfg.cluster.is_none() {
            target.cluster = target.detect_cluster().await?;
        }
        if !target.cluster && target.nodes.len() > 1 {
            return Err(ChannelError::Config(format!(
                "{} Redis URLs given, but {} is not a cluster (set redis.cluster = true for one)",
                target.nodes.len(),
                target.nodes[0].addr()
            )));
        }
        Ok(target)
    }

    /// A target known to be a single server (the private one of `kiki up`, tests).
    pub fn single(url: &str) -> Result<Self, ChannelError> {
        Ok(Self { nodes: vec![url.into_connection_info()?], certs: None, cluster: false })
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The seed addresses, for logs (never the password).
    pub fn label(&self) -> String {
        self.nodes.iter().map(|n| n.addr().to_string()).collect::<Vec<_>>().join(",")
    }

    /// A plain client for the first node (for tools that need a raw connection).
    pub fn client(&self) -> Result<Client, ChannelError> {
        let node = self.nodes[0].clone();
        Ok(match &self.certs {
            Some(certs) => Client::build_with_tls(node, certs.clone())?,
            None => Client::open(node)?,
        })
    }

    fn cluster_builder(&self) -> ClusterClientBuilder {
        let mut b = ClusterClientBuilder::new(self.nodes.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(COMMAND_TIMEOUT)
            .retries(3);
        if let Some(certs) = &self.certs {
            b = b.certs(certs.clone());
        }
        b
    }

    async fn detect_cluster(&self) -> Result<bool, ChannelError> {
        let cfg = AsyncConnectionConfig::new()
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let mut conn = self.client()?.get_multiplexed_async_connection_with_config(&cfg).await?;
        let info: String = redis::cmd("INFO").arg("cluster").query_async(&mut conn).await?;
        Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
    }

    /// A self-reconnecting connection for every non-blocking command; clones share it.
    pub async fn connect(&self) -> Result<Conn, ChannelError> {
        if self.cluster {
            let client = self.cluster_builder().build()?;
            return Ok(Conn::Cluster(client.get_async_connection().await?));
        }
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(3);
        Ok(Conn::Single(self.client()?.get_connection_manager_with_config(cfg).await?))
    }

    /// A connection of its own for blocking reads (XREADGROUP BLOCK must not share the
    /// multiplexed pipe, or every other command waits behind it). Remade by the caller on error.
    pub async fn blocking(&self, block: Duration) -> Result<Conn, ChannelError> {
        if self.cluster {
            let client = self.cluster_builder().response_timeout(block + COMMAND_TIMEOUT).build()?;
            return Ok(Conn::Cluster(client.get_async_connection().await?));
        }
        let cfg = AsyncConnectionConfig::new()
            .set_response_timeout(Some(block + COMMAND_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        Ok(Conn::Plain(self.client()?.get_multiplexed_async_connection_with_config(&cfg).await?))
    }

    /// Subscribes to one channel on a connection of its own: `SUBSCRIBE` on a single server,
    /// sharded `SSUBSCRIBE` on a cluster (to the shard that owns the channel's slot).
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, ChannelError> {
        if self.cluster {
            let (tx, rx) = mpsc::unbounded_channel();
            let builder = self.cluster_builder().use_protocol(redis::ProtocolVersion::RESP3).push_sender(tx);
            let mut conn = builder.build()?.get_async_connection().await?;
            conn.ssubscribe(channel).await?;
            return Ok(Subscription::Sharded { _conn: conn, pushes: rx });
        }
        let mut pubsub = self.client()?.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(Subscription::Plain(pubsub.into_on_message()))
    }
}

fn tls_certificates(cfg: &RedisConfig) -> Result<Option<TlsCertificates>, ChannelError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ChannelError::Config(format!("reading {}: {e}", p.display())))
    };
    let root_cert = cfg.ca_file.as_deref().map(read).transpose()?;
    let client_tls = match (&cfg.cert_file, &cfg.key_file) {
        (Some(c), Some(k)) => Some(ClientTlsConfig { client_cert: read(c)?, client_key: read(k)? }),
        (None, None) => None,
        _ => return Err(ChannelError::Config("redis.cert_file and redis.key_file go together".into())),
    };
    Ok((root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates { client_tls, root_cert }))
}

/// One connection type for the rest of the code: commands route by key on a cluster.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// A live subscription to one channel. `next` yields each message's payload and ends (None)
/// when the connection is lost: the owner then resubscribes and resyncs from the replay
/// streams, because Pub/Sub does not keep what was published meanwhile.
pub enum Subscription {
    Plain(PubSubStream),
    Sharded {
        /// Holds the node connections open; messages arrive as RESP3 pushes.
        _conn: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
    },
}

impl Subscription {
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Subscription::Plain(stream) => stream.next().await.map(|m| m.get_payload_bytes().to_vec()),
            Subscription::Sharded { pushes, .. } => loop {
                let push = pushes.recv().await?;
                match push.kind {
                    PushKind::SMessage | PushKind::Message => {
                        // [channel, payload]
                        if let Some(Value::BulkString(payload)) = push.data.into_iter().nth(1) {
                            return Some(payload);
                        }
                    }
                    // Any node's connection dropped: the library would resubscribe, but what
                    // was published during the gap is gone, so the owner must know.
                    PushKind::Disconnection => return None,
                    _ => {}
                }
            },
        }
    }
}

/// `PUBLISH`, or `SPUBLISH` on a cluster (routed to the shard that owns the channel).
pub async fn publish<C: ConnectionLike + Send>(
    conn: &mut C,
    sharded: bool,
    channel: &str,
    payload: &[u8],
) -> Result<i64, ChannelError> {
    let cmd = if sharded { "SPUBLISH" } else { "PUBLISH" };
    Ok(redis::cmd(cmd).arg(channel).arg(payload).query_async(conn).await?)
}
