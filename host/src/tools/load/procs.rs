//! CPU and memory of watched processes (from /proc) and of Redis (from INFO).

use std::time::Duration;

/// Clock ticks per second for /proc's CPU times (USER_HZ, 100 on Linux everywhere we run).
const TICKS: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub rss_mib: f64,
}

impl ProcSample {
    /// `None` when the process is gone or /proc is not there.
    pub fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
        Some(Self { cpu_seconds: (utime + stime) / TICKS, rss_mib: rss_kib / 1024.0 })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RedisSample {
    pub cpu_seconds: f64,
    pub used_memory_mib: f64,
    pub clients: u64,
}

/// One connection for every sample of a run (clones share it), so that the tool counts as
/// exactly one Redis client.
pub async fn redis_connection(url: &str) -> anyhow::Result<Plain> {
    Ok(crate::channels::connect_plain(url).await?)
}

use crate::channels::PlainConn as Plain;

impl RedisSample {
    pub async fn read(conn: &mut Plain) -> anyhow::Result<Self> {
        let info = crate::channels::server_info(conn).await?;
        let field = |name: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        Ok(Self {
            cpu_seconds: field("used_cpu_sys") + field("used_cpu_user"),
            used_memory_mib: field("used_memory") / (1024.0 * 1024.0),
            // Our own INFO connection is not the server's.
            clients: (field("connected_clients") as u64).saturating_sub(1),
        })
    }
}

#[derive(Debug, Default)]
pub struct Peaks {
    pub rss_peak_mib: Vec<f64>,
    pub redis_clients_peak: u64,
    /// Every `TIMELINE_EVERY`: seconds since the start, RSS (MiB) per watched process, Redis
    /// used memory (MiB): what a soak run reads for growth.
    pub timeline: Vec<(u64, Vec<f64>, f64)>,
}

/// How often the timeline is sampled.
const TIMELINE_EVERY: u64 = 60;

/// Samples once a second until `stop` turns true.
pub async fn sample_peaks(
    watch: Vec<(String, u32)>,
    mut redis: Option<Plain>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Peaks {
    let mut peaks = Peaks { rss_peak_mib: vec![0.0; watch.len()], ..Peaks::default() };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let mut seconds = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return peaks,
            _ = tick.tick() => {
                let mut rss = Vec::with_capacity(watch.len());
                for (peak, (_, pid)) in peaks.rss_peak_mib.iter_mut().zip(&watch) {
                    let now = ProcSample::read(*pid).map_or(0.0, |s| s.rss_mib);
                    *peak = peak.max(now);
                    rss.push(now);
                }
                let mut redis_mib = 0.0;
                if let Some(conn) = redis.as_mut()
                    && let Ok(s) = RedisSample::read(conn).await
                {
                    peaks.redis_clients_peak = peaks.redis_clients_peak.max(s.clients);
                    redis_mib = s.used_memory_mib;
                }
                if seconds.is_multiple_of(TIMELINE_EVERY) {
                    peaks.timeline.push((started.elapsed().as_secs(), rss, redis_mib));
                }
                seconds += 1;
            }
        }
    }
}
