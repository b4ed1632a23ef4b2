//! A private `redis-server` child for `kiki up` when no Redis is configured: on a free loopback
//! port, no persistence, stopped when kiki exits (kill_on_drop).

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

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

    async fn start_on(bin: &str, port: u16, args: Vec<String>) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        // Later arguments win, so `extra_args` may turn persistence back on.
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {bin}: is redis-server installed? (make setup)"))?;
        let url = format!("redis://127.0.0.1:{port}/");
        let client = redis::Client::open(url.as_str())?;
        for _ in 0..100 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return Ok(Self { child, url, port, bin: bin.to_string(), args });
                }
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
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
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
