//! `kiki up --gateways N --workers M [--redis-cluster]`: a whole deployment on loopback from one
//! command, as separate processes, for people to try scale-out and for the topology tests. A
//! private Redis (one server, or a 3-master cluster) unless one is configured; N `kiki gateway`
//! processes on consecutive ports from `listen`; M `kiki worker` processes. Children that die are
//! reported, not restarted (the others take over their work: reclaim, resume). On SIGTERM the
//! gateways drain first, then the workers stop, then Redis.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::config::Config;
use crate::local::redis_server::{RedisChild, RedisCluster};
use crate::shutdown::Shutdown;

/// What to start.
#[derive(Debug, Clone)]
pub struct Topology {
    pub gateways: usize,
    pub workers: usize,
    /// A private 3-master Redis Cluster instead of one server (when no Redis is configured).
    pub redis_cluster: bool,
    /// Passed on to every child.
    pub config_file: Option<PathBuf>,
}

/// Masters of the private cluster.
const CLUSTER_MASTERS: usize = 3;
/// How long gateways may take to drain on shutdown before they are killed.
const DRAIN_GRACE: Duration = Duration::from_secs(90);

struct Proc {
    role: &'static str,
    id: String,
    child: Child,
    addr: Option<String>,
}

enum Redis {
    Configured,
    Single(RedisChild),
    Cluster(RedisCluster),
}

pub async fn run(cfg: Config, topo: Topology, shutdown: Shutdown) -> anyhow::Result<()> {
    anyhow::ensure!(topo.gateways >= 1 && topo.workers >= 1, "at least one gateway and one worker");
    let (redis, url) = match (&cfg.redis_url, topo.redis_cluster) {
        (Some(url), false) => (Redis::Configured, url.clone()),
        (Some(_), true) => anyhow::bail!("--redis-cluster starts a private cluster: leave redis_url unset"),
        (None, false) => {
            let r = RedisChild::start("redis-server", &[]).await?;
            let url = r.url.clone();
            (Redis::Single(r), url)
        }
        (None, true) => {
            let c = RedisCluster::start("redis-server", CLUSTER_MASTERS).await?;
            let url = c.urls();
            (Redis::Cluster(c), url)
        }
    };
    println!("redis     {url}");
    let exe = std::env::current_exe().context("finding the kiki binary")?;
    let mut procs = Vec::new();
    for i in 0..topo.gateways {
        let mut addr = cfg.listen;
        let port = u16::try_from(i)
            .ok()
            .and_then(|i| cfg.listen.port().checked_add(i))
            .with_context(|| format!("{} gateways from port {} run past 65535", topo.gateways, cfg.listen.port()))?;
        addr.set_port(port);
        let id = format!("gw{}", i + 1);
        let mut cmd = child(&exe, "gateway", &topo, &url);
        cmd.env("KIKI_LISTEN", addr.to_string()).env("KIKI_GATEWAY__ID", &id);
        procs.push(Proc { role: "gateway", id, child: cmd.spawn()?, addr: Some(format!("http://{addr}")) });
    }
    for i in 0..topo.workers {
        let id = format!("worker{}", i + 1);
        let mut cmd = child(&exe, "worker", &topo, &url);
        cmd.env("KIKI_WORKER__ID", &id);
        procs.push(Proc { role: "worker", id, child: cmd.spawn()?, addr: None });
    }
    for p in &procs {
        println!("{:<9} {:<8} pid {:<8} {}", p.role, p.id, p.child.id().unwrap_or(0), p.addr.as_deref().unwrap_or(""));
    }
    tracing::info!(gateways = topo.gateways, workers = topo.workers, "deployment started; Ctrl-C stops it");
    supervise(&mut procs, &shutdown).await;
    // Gateways drain first (their sessions' last finals need the workers), then the workers.
    stop_all(&mut procs, "gateway", DRAIN_GRACE).await;
    stop_all(&mut procs, "worker", Duration::from_secs(30)).await;
    match redis {
        Redis::Configured => {}
        Redis::Single(r) => r.stop().await,
        Redis::Cluster(c) => c.stop().await,
    }
    Ok(())
}

fn child(exe: &std::path::Path, role: &str, topo: &Topology, redis_url: &str) -> Command {
    let mut cmd = Command::new(exe);
    if let Some(f) = &topo.config_file {
        cmd.arg("--config").arg(f);
    }
    cmd.arg(role).env("KIKI_REDIS_URL", redis_url).stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Waits for shutdown, reporting children that exit on their own.
async fn supervise(procs: &mut [Proc], shutdown: &Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut gone = vec![false; procs.len()];
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        for (p, gone) in procs.iter_mut().zip(gone.iter_mut()) {
            if !*gone && let Ok(Some(status)) = p.child.try_wait() {
                *gone = true;
                tracing::warn!(role = p.role, id = %p.id, %status, "exited; the others take over its work");
            }
        }
        if gone.iter().all(|g| *g) {
            tracing::error!("every process of the deployment has exited");
            return;
        }
    }
}

/// SIGTERM to every process of `role`, then SIGKILL to those still running after `grace`.
async fn stop_all(procs: &mut [Proc], role: &str, grace: Duration) {
    for p in procs.iter().filter(|p| p.role == role) {
        if let Some(pid) = p.child.id() {
            let _ = send_signal(pid, Signal::TERM);
        }
    }
    for p in procs.iter_mut().filter(|p| p.role == role) {
        if tokio::time::timeout(grace, p.child.wait()).await.is_err() {
            tracing::warn!(id = %p.id, "did not stop in {grace:?}; killed");
            let _ = p.child.kill().await;
        }
    }
}

pub use rustix::process::Signal;

/// Sends `signal` to process `pid` (kill(2)).
pub fn send_signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw);
    let pid = pid.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a process id"))?;
    rustix::process::kill_process(pid, signal).map_err(std::io::Error::from)
}
