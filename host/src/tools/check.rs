//! `kiki check`: exercises both channels of a running deployment and says what is healthy.
//! Operators run it from cron; the exit code is 0 only when every check passes.

use std::time::{Duration, Instant};

use crate::audio::to_s16le;
use crate::channels::results::Sequenced;
use crate::channels::tasks::{self, TaskMeta};
use crate::channels::{self, Conn, Keys, RedisTarget, target, workers};
use crate::config::Config;
use crate::plugins::CutKind;

/// One line of the report.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Runs every check; a check that cannot run is a failed check, never a panic.
pub async fn run(cfg: &Config, redis_url: &str, gateway: Option<&str>, timeout: Duration) -> Vec<Check> {
    let mut out = Vec::new();
    let keys = Keys::new(&cfg.channels.prefix);
    let started = Instant::now();
    let connected = tokio::time::timeout(timeout, async {
        let target = RedisTarget::new(redis_url, &cfg.redis).await?;
        let conn = target.connect().await?;
        Ok::<_, channels::ChannelError>((target, conn))
    })
    .await;
    // The URL may carry a password: name the server by its address only.
    let (target, mut conn) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            out.push(Check { name: "redis", ok: false, detail: e.to_string() });
            return out;
        }
        Err(_) => {
            out.push(Check { name: "redis", ok: false, detail: format!("no answer in {timeout:?}") });
            return out;
        }
    };
    let ping = channels::ping(&mut conn).await;
    out.push(Check {
        name: "redis",
        ok: ping.is_ok(),
        detail: match ping {
            Ok(_) => format!("{target:?} answers PING in {:.1} ms", started.elapsed().as_secs_f64() * 1e3),
            Err(e) => e.to_string(),
        },
    });

    out.push(match tasks::group_info(&mut conn, &keys).await {
        Ok(Some(g)) => Check {
            name: "task stream",
            ok: true,
            detail: format!(
                "{}: group {} backlog {} pending {} consumers {}",
                keys.tasks(),
                channels::keys::GROUP,
                g.lag,
                g.pending,
                g.consumers
            ),
        },
        Ok(None) => Check { name: "task stream", ok: false, detail: "consumer group missing".into() },
        Err(e) => Check { name: "task stream", ok: false, detail: format!("{}: {e}", keys.tasks()) },
    });
    if let Ok(dead) = tasks::dead_letters(&mut conn, &keys).await {
        out.push(Check { name: "dead letters", ok: true, detail: format!("{dead} in {}", keys.dead_letters()) });
    }

    let alive = workers::alive(&mut conn, &keys).await.unwrap_or_default();
    out.push(Check {
        name: "workers",
        ok: !alive.is_empty(),
        detail: if alive.is_empty() { "no worker beat in the last 10 s".into() } else { alive.join(", ") },
    });

    out.push(pubsub_probe(&target, &mut conn, &keys, timeout).await);
    out.push(task_probe(&target, &mut conn, &keys, timeout).await);
    if let Some(url) = gateway {
        out.push(gateway_probe(url, timeout).await);
    }
    out
}

/// A message on a throw-away channel must come back on a subscriber (sharded on a cluster).
async fn pubsub_probe(target: &RedisTarget, conn: &mut Conn, keys: &Keys, timeout: Duration) -> Check {
    let channel = keys.gateway_channel(&format!("check-{}", crate::ids::short()));
    let res = async {
        let mut sub = target.subscribe(&channel).await?;
        let t = Instant::now();
        target::publish(conn, target.is_cluster(), &channel, b"probe").await?;
        let got = tokio::time::timeout(timeout, sub.next()).await;
        Ok::<_, channels::ChannelError>(got.ok().flatten().map(|_| t.elapsed()))
    }
    .await;
    match res {
        Ok(Some(rtt)) => {
            Check { name: "pub/sub", ok: true, detail: format!("round trip {:.2} ms", rtt.as_secs_f64() * 1e3) }
        }
        Ok(None) => Check { name: "pub/sub", ok: false, detail: format!("probe not received in {timeout:?}") },
        Err(e) => Check { name: "pub/sub", ok: false, detail: e.to_string() },
    }
}

/// A probe task (half a second of silence) through the stream, a worker, the result script and
/// Pub/Sub: the whole task path, without a model call.
async fn task_probe(target: &RedisTarget, conn: &mut Conn, keys: &Keys, timeout: Duration) -> Check {
    let nonce = crate::ids::short();
    let channel = keys.gateway_channel(&format!("check-{nonce}"));
    let meta = TaskMeta::new(&format!("check-{nonce}"), 0, CutKind::Final, &channel, (0, 500), Default::default());
    let res = async {
        let mut sub = target.subscribe(&channel).await?;
        let t = Instant::now();
        tasks::enqueue(conn, keys, &meta, &to_s16le(&[0.0; 8000])).await?;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return Ok::<_, anyhow::Error>(None),
                m = sub.next() => {
                    let Some(m) = m else { return Ok(None) };
                    if let Ok(r) = Sequenced::parse(&m)
                        && r.payload.session == meta.session {
                        return Ok(Some((t.elapsed(), r.payload.error)));
                    }
                }
            }
        }
    }
    .await;
    match res {
        Ok(Some((rtt, None))) => Check {
            name: "task path",
            ok: true,
            detail: format!("probe task answered by a worker in {:.1} ms", rtt.as_secs_f64() * 1e3),
        },
        Ok(Some((_, Some(err)))) => Check { name: "task path", ok: false, detail: format!("worker reported: {err}") },
        Ok(None) => {
            Check { name: "task path", ok: false, detail: format!("no worker answered the probe in {timeout:?}") }
        }
        Err(e) => Check { name: "task path", ok: false, detail: format!("{e:#}") },
    }
}

async fn gateway_probe(url: &str, timeout: Duration) -> Check {
    match crate::tools::http_client::get(url, "/readyz", timeout).await {
        Ok((status, body)) => {
            Check { name: "gateway", ok: status == 200, detail: format!("{url}/readyz: {}", body.trim()) }
        }
        Err(e) => Check { name: "gateway", ok: false, detail: format!("{url}: {e}") },
    }
}
