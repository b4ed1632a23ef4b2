//! A private `redis-server` child for `kiki up` when no Redis is configured: on a free loopback
//! port, no persistence, stopped when kiki exits (kill_on_drop).

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::channels::server;

pub struct RedisChild {
    child: Child,
    pub url: String,
    pub port: u16,
    bin: String,
    args: Vec<String>,
}

impl RedisChild {
    /// Starts `redis-server` (from PATH or `bin`) and waits until it answers PING.
    pub async fn start(bin: &str, extra_args: &[&str]) -> anyhow::Result<Self> {
        let args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        Self::start_on(bin, free_port()?, args).await
    }

    pub async fn start_on(bin: &str, port: u16, args: Vec<String>) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        // Later arguments win, so `extra_args` may turn persistence back on.
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {bin}: is redis-server installed? (make setup)"))?;
        let url = format!("redis://127.0.0.1:{port}/");
        for _ in 0..100 {
            if server::answers(&url).await {
                return Ok(Self { child, url, port, bin: bin.to_string(), args });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("redis-server on port {port} did not answer PING within 5 s")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Stops the server gracefully (SIGTERM: it flushes its AOF), waits `down`, and starts it
    /// again on the same port with the same arguments.
    pub async fn restart(&mut self, down: Duration) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = crate::local::topology::send_signal(pid, crate::local::topology::Signal::TERM);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        tokio::time::sleep(down).await;
        let fresh = Self::start_on(&self.bin, self.port, std::mem::take(&mut self.args)).await?;
        *self = fresh;
        Ok(())
    }
}

/// A port the OS says is free now. A race with another process is possible but harmless: the
/// child would fail to bind and `start` reports it.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A Redis Cluster of `masters` private `redis-server` children on loopback (no replicas), for
/// tests and the loopback topologies: slots split evenly, nodes introduced with CLUSTER MEET.
pub struct RedisCluster {
    pub nodes: Vec<RedisChild>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub async fn start(bin: &str, masters: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(masters >= 1, "a cluster needs a master");
        let dir = std::env::temp_dir().join(format!("kiki-cluster-{}-{}", std::process::id(), crate::ids::short()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            let port = free_port()?;
            let conf = dir.join(format!("nodes-{port}.conf"));
            let args = vec![
                "--cluster-enabled".to_string(),
                "yes".into(),
                "--cluster-config-file".into(),
                conf.display().to_string(),
                "--cluster-node-timeout".into(),
                "2000".into(),
                "--dir".into(),
                dir.display().to_string(),
            ];
            nodes.push(RedisChild::start_on(bin, port, args).await?);
        }
        let cluster = Self { nodes, dir };
        cluster.form().await?;
        Ok(cluster)
    }

    /// Seed URLs, comma-separated, as `redis_url` takes them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|n| n.url.clone()).collect::<Vec<_>>().join(",")
    }

    async fn form(&self) -> anyhow::Result<()> {
        const SLOTS: usize = 16384;
        let n = self.nodes.len();
        let urls: Vec<String> = self.nodes.iter().map(|n| n.url.clone()).collect();
        let mut conns = server::nodes(&urls).await?;
        for (i, conn) in conns.iter_mut().enumerate() {
            server::add_slots(conn, i * SLOTS / n, (i + 1) * SLOTS / n - 1).await?;
        }
        for node in &self.nodes[1..] {
            server::meet(&mut conns[0], "127.0.0.1", node.port).await?;
        }
        for _ in 0..200 {
            let mut ok = 0;
            for conn in conns.iter_mut() {
                let info = server::cluster_info(conn).await?;
                let has = |line: &str| info.lines().any(|l| l.trim() == line);
                if has("cluster_state:ok") && has(&format!("cluster_known_nodes:{n}")) {
                    ok += 1;
                }
            }
            if ok == n {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the {n}-node cluster did not reach cluster_state:ok within 10 s")
    }

    pub async fn stop(mut self) {
        for node in std::mem::take(&mut self.nodes) {
            node.stop().await;
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        // The children die with their handles (kill_on_drop); their cluster files go too.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
