//! Redis Cluster: a 3-master cluster on loopback ports, started by the test. Sessions get every
//! final exactly once through hash-tagged keys and sharded Pub/Sub, even when the sharded
//! subscriber's connection is killed; connections stay constant; `kiki check` passes.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use kiki::gateway::protocol::ServerMessage;
use kiki::local::redis_server::RedisCluster;
use serde_json::json;

const UTTERANCES: [&str; 2] = ["The quick brown fox jumps over the lazy dog.", "I would like a cup of coffee."];
const GATEWAY: &str = "gw-cluster";

/// One plain connection per cluster node, for looking at each node directly; named, so that
/// counts of kiki's connections leave them out.
async fn node_conns(stack: &Stack) -> Vec<redis::aio::MultiplexedConnection> {
    let Backing::Cluster(cluster) = &stack.backing else { panic!("not a cluster") };
    let mut out = Vec::new();
    for node in &cluster.nodes {
        let mut c = redis::Client::open(node.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("CLIENT").arg("SETNAME").arg(OBSERVER).query_async(&mut c).await.unwrap();
        out.push(c);
    }
    out
}

const OBSERVER: &str = "test-observer";

async fn client_list(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(conn).await.unwrap();
    list.lines().map(str::to_string).collect()
}

/// Clients on every node, leaving out the connections this test holds to look.
async fn kiki_connections(nodes: &mut [redis::aio::MultiplexedConnection]) -> usize {
    let mut n = 0;
    for conn in nodes.iter_mut() {
        n += client_list(conn).await.iter().filter(|l| !l.contains(&format!("name={OBSERVER} "))).count();
    }
    n
}

/// Kills every connection holding a sharded subscription (`ssub=` above 0), on every node.
async fn kill_sharded_subscribers(nodes: &mut [redis::aio::MultiplexedConnection]) -> usize {
    let mut killed = 0;
    for conn in nodes.iter_mut() {
        for line in client_list(conn).await {
            let field = |name: &str| {
                line.split(' ').find_map(|kv| kv.strip_prefix(name)).map(str::to_string).unwrap_or_default()
            };
            if field("ssub=").parse::<u64>().unwrap_or(0) > 0 {
                let _: redis::RedisResult<()> =
                    redis::cmd("CLIENT").arg("KILL").arg("ID").arg(field("id=")).query_async(conn).await;
                killed += 1;
            }
        }
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_master_cluster_delivers_every_final_once_over_sharded_pubsub() {
    let _g = serial().await;
    let cluster = RedisCluster::start("redis-server", 3).await.expect("cluster forms");
    let mut cfg = test_config();
    cfg.gateway.id = Some(GATEWAY.into());
    let stack = Stack::gateway_on_cluster(cfg, cluster).await;
    assert!(stack.target.is_cluster(), "cluster mode is detected from the server");
    stack.spawn_worker().await;
    stack.wait_ready().await;
    let mut nodes = node_conns(&stack).await;
    let mut killer_nodes = node_conns(&stack).await;
    let idle_connections = kiki_connections(&mut nodes).await;

    // Sessions stream while the sharded subscriber's connection is killed twice.
    let audio = speak_sentences(&UTTERANCES, 700);
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut c = stack.connect().await;
        c.send_json(json!({"type": "start", "plugins": {"segmenter": {"partial_ms": "0"}}})).await;
        assert!(matches!(c.recv(Duration::from_secs(10)).await, Some(ServerMessage::Ready { .. })));
        clients.push(c);
    }
    let busy_connections = kiki_connections(&mut nodes).await;
    let killer = {
        let mut nodes = std::mem::take(&mut killer_nodes);
        tokio::spawn(async move {
            let mut killed = 0;
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(900)).await;
                killed += kill_sharded_subscribers(&mut nodes).await;
            }
            killed
        })
    };
    futures_util::future::join_all(clients.iter_mut().map(|c| c.stream(&audio, 4.0))).await;
    let mut texts = Vec::new();
    for c in &mut clients {
        let msgs = c.stop_and_collect().await;
        assert!(matches!(msgs.last(), Some(ServerMessage::End { segments: 2 })), "{msgs:?}");
        let mut finals: HashMap<u64, usize> = HashMap::new();
        for m in &msgs {
            match m {
                ServerMessage::Final(s) => *finals.entry(s.segment).or_default() += 1,
                ServerMessage::Error { .. } => panic!("error: {msgs:?}"),
                _ => {}
            }
        }
        assert_eq!(finals.len(), 2, "{msgs:?}");
        assert!(finals.values().all(|&n| n == 1), "a final came twice: {finals:?}");
        texts.push(final_text(&msgs));
    }
    let killed = killer.await.unwrap();
    let reconnects = stack.metrics.subscriber_reconnects.get();
    eprintln!("killed {killed} sharded subscriber connection(s); reconnects {reconnects}");
    assert!(killed > 0 && reconnects > 0, "killed {killed}, reconnects {reconnects}");
    let reference = UTTERANCES.join(" ");
    for t in &texts {
        assert!(wer(&reference, t) <= 0.35, "{t}");
    }

    // The gateway subscribes to its own channel, sharded, on exactly one node; nothing uses
    // plain Pub/Sub; per-session keys spread over the nodes.
    let channel = format!("kiki:out:{GATEWAY}");
    let (mut sharded_on, mut plain, mut with_sessions) = (0, 0, 0);
    for conn in nodes.iter_mut() {
        let shard: Vec<String> = redis::cmd("PUBSUB").arg("SHARDCHANNELS").query_async(conn).await.unwrap();
        sharded_on += shard.iter().filter(|c| **c == channel).count();
        let chans: Vec<String> = redis::cmd("PUBSUB").arg("CHANNELS").query_async(conn).await.unwrap();
        plain += chans.len();
        let keys: Vec<String> = redis::cmd("KEYS").arg("kiki:sess:*").query_async(conn).await.unwrap();
        with_sessions += usize::from(!keys.is_empty());
    }
    assert_eq!((sharded_on, plain), (1, 0), "sharded subscriptions on {sharded_on} node(s), plain channels {plain}");
    assert!(with_sessions >= 2, "session keys on {with_sessions} node(s) only");
    // Connections do not grow with sessions (the subscriber is one set of node connections).
    eprintln!("kiki's connections to the cluster: no session {idle_connections}, 8 sessions {busy_connections}");
    assert_eq!(idle_connections, busy_connections);

    // `kiki check` exercises both channels through the cluster.
    let checks = kiki::tools::check::run(
        &stack.cfg,
        &stack.redis_url,
        Some(&format!("http://{}", stack.addr)),
        Duration::from_secs(10),
    )
    .await;
    for c in &checks {
        eprintln!("{} {} {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.detail);
    }
    assert!(checks.iter().all(|c| c.ok), "{checks:?}");
}
