//! `kiki bench load`: drives N WebSocket sessions of real speech at real time against a running
//! gateway and reports what a user would feel (end-of-speech → final latency, finals delivered)
//! and what it cost (CPU and memory of the watched processes, Redis CPU, memory, connections).
//!
//! It is a client: it runs on the same machine as the server in the figures we publish, and
//! its own CPU use is printed beside the server's so that the reader can discount it.

mod client;
mod gateway;
mod procs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

pub use client::{SessionReport, Utterance};
use procs::{ProcSample, RedisSample};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `ws://host:port/ws` of each gateway: sessions are spread over them, and one that loses
    /// its gateway resumes on the next.
    pub urls: Vec<String>,
    pub sessions: usize,
    /// Seconds of streaming per session (after the ramp).
    pub duration: Duration,
    /// Share of time spent talking, in (0, 1].
    pub talk: f64,
    /// Sessions start spread over this long, so their utterances do not line up.
    pub ramp: Duration,
    /// Folder of 16 kHz mono WAV clips to speak (any rate is resampled).
    pub clips: PathBuf,
    /// Processes to measure, as (label, pid).
    pub watch: Vec<(String, u32)>,
    /// Redis to sample with INFO (CPU, memory, clients).
    pub redis_url: Option<String>,
    /// Seconds to wait for the last finals after `stop`.
    pub drain: Duration,
    /// Segmenter options sent in `start` (e.g. `hangover_ms`).
    pub segmenter: Vec<(String, String)>,
    /// Length of each binary frame, ms (20 as the WebApp sends them).
    pub frame_ms: u64,
}

/// The whole run's figures.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub sessions: usize,
    pub connected: usize,
    /// Sessions that streamed to the end and got `end` without an error.
    pub held: usize,
    pub utterances: usize,
    /// Utterances whose end a final covered.
    pub finalized: usize,
    pub finals: usize,
    pub partials: usize,
    /// Finals the server reported sending (`end.segments`), to compare with `finals`.
    pub finals_reported: usize,
    /// Sessions resumed on another (or the same) gateway after losing their socket.
    pub reconnects: usize,
    /// Finals received twice for the same segment (must be 0: exactly once across resumes).
    pub duplicates: usize,
    pub errors: Vec<(String, usize)>,
    /// End of speech → final arrival, ms.
    pub final_ms: Percentiles,
    /// End of a partial's audio → its arrival, ms.
    pub partial_ms: Percentiles,
    pub audio_seconds: f64,
    pub wall_seconds: f64,
    pub processes: Vec<ProcUsage>,
    pub redis: Option<RedisUsage>,
    pub frame_ms: u64,
    /// The gateway's own handling time per audio frame during the run (decode, resample,
    /// segmenter cut, queueing), ms, from its `kiki_frame_seconds` histogram.
    pub frame_handling_ms: Option<Percentiles>,
    /// The models of the workers the gateway saw at the end (`none (transport only ...)` when
    /// the run measured the channels alone).
    pub workers: Vec<String>,
    /// What the workers did during the run, from their reports (throughput = audio / wall).
    pub worker_totals: Option<gateway::WorkerTotals>,
    /// Once a minute: (seconds, RSS MiB per watched process, Redis used memory MiB).
    pub timeline: Vec<(u64, Vec<f64>, f64)>,
}

#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| crate::stats::percentile(&v, p);
        Self { n: v.len(), p50: at(0.5), p90: at(0.9), p95: at(0.95), p99: at(0.99), max: v[v.len() - 1] }
    }
}

#[derive(Debug, Serialize)]
pub struct ProcUsage {
    pub label: String,
    pub pid: u32,
    /// Mean CPU over the run, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    pub rss_start_mib: f64,
    pub rss_end_mib: f64,
    pub rss_peak_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct RedisUsage {
    pub cpu_cores: f64,
    pub used_memory_mib: f64,
    pub connected_clients_peak: u64,
}

/// The `.wav` files of `dir`, in name order, as 16 kHz mono samples.
pub fn load_clips(dir: &Path) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading clips folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    paths.sort();
    anyhow::ensure!(!paths.is_empty(), "no .wav clips in {}", dir.display());
    paths.iter().map(|p| crate::audio::read_wav(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))).collect()
}

pub async fn run(opts: LoadOptions) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(opts.talk > 0.0 && opts.talk <= 1.0, "talk must be in (0, 1]");
    anyhow::ensure!(opts.sessions > 0, "at least one session");
    anyhow::ensure!(!opts.urls.is_empty(), "at least one gateway URL");
    let clips = Arc::new(load_clips(&opts.clips)?);
    let bases: Vec<String> = opts.urls.iter().filter_map(|u| gateway::http_base(u)).collect();
    let frames_before = gateway::Histogram::read_all(&bases).await;
    let workers_before = match bases.first() {
        Some(b) => gateway::WorkerTotals::read(b).await,
        None => None,
    };
    let started = Instant::now();
    let proc_start: Vec<Option<ProcSample>> = opts.watch.iter().map(|(_, pid)| ProcSample::read(*pid)).collect();
    let mut redis_conn = match &opts.redis_url {
        Some(u) => Some(procs::redis_connection(u).await?),
        None => None,
    };
    let redis_start = match redis_conn.as_mut() {
        Some(c) => Some(RedisSample::read(c).await?),
        None => None,
    };
    // Sample memory and Redis clients once a second while the sessions run.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(procs::sample_peaks(opts.watch.clone(), redis_conn.clone(), stop_rx));
    let mut handles = Vec::with_capacity(opts.sessions);
    for i in 0..opts.sessions {
        let delay = opts.ramp.mul_f64(i as f64 / opts.sessions as f64);
        let (clips, o) = (clips.clone(), opts.clone());
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            client::session(i, &o, &clips).await
        }));
    }
    let mut reports = Vec::with_capacity(handles.len());
    for h in handles {
        reports.push(h.await.context("session task panicked")?);
    }
    let wall = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let peaks = sampler.await.context("sampler panicked")?;
    let processes = opts
        .watch
        .iter()
        .zip(proc_start)
        .enumerate()
        .filter_map(|(i, ((label, pid), start))| {
            let (start, end) = (start?, ProcSample::read(*pid)?);
            Some(ProcUsage {
                label: label.clone(),
                pid: *pid,
                cpu_cores: (end.cpu_seconds - start.cpu_seconds) / wall,
                rss_start_mib: start.rss_mib,
                rss_end_mib: end.rss_mib,
                rss_peak_mib: peaks.rss_peak_mib.get(i).copied().unwrap_or(end.rss_mib),
            })
        })
        .collect();
    let redis = match (redis_conn.as_mut(), redis_start) {
        (Some(c), Some(start)) => {
            let end = RedisSample::read(c).await?;
            Some(RedisUsage {
                cpu_cores: (end.cpu_seconds - start.cpu_seconds) / wall,
                used_memory_mib: end.used_memory_mib,
                connected_clients_peak: peaks.redis_clients_peak.max(end.clients),
            })
        }
        _ => None,
    };
    let mut report = summarise(&opts, reports, wall, processes, redis);
    report.timeline = peaks.timeline;
    // Worker reports trail by one beat: wait for it, so the run's last segments count.
    tokio::time::sleep(Duration::from_millis(crate::channels::workers::INTERVAL_MS + 500)).await;
    let workers_after = match bases.first() {
        Some(b) => gateway::WorkerTotals::read(b).await,
        None => None,
    };
    if let (Some(before), Some(after)) = (workers_before, workers_after) {
        report.worker_totals = Some(after.since(&before));
    }
    if let (Some(before), Some(after)) = (frames_before, gateway::Histogram::read_all(&bases).await) {
        report.frame_handling_ms = Some(after.since(&before));
    }
    for base in &bases {
        report.workers = gateway::worker_models(base, None).await;
        if !report.workers.is_empty() {
            break;
        }
    }
    Ok(report)
}

fn summarise(
    opts: &LoadOptions,
    reports: Vec<SessionReport>,
    wall: f64,
    processes: Vec<ProcUsage>,
    redis: Option<RedisUsage>,
) -> LoadReport {
    let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
    for e in reports.iter().flat_map(|r| r.errors.iter()) {
        *errors.entry(e.clone()).or_default() += 1;
    }
    let utterances: Vec<&Utterance> = reports.iter().flat_map(|r| r.utterances.iter()).collect();
    LoadReport {
        sessions: opts.sessions,
        connected: reports.iter().filter(|r| r.connected).count(),
        held: reports.iter().filter(|r| r.connected && r.ended && r.errors.is_empty()).count(),
        utterances: utterances.len(),
        finalized: utterances.iter().filter(|u| u.final_ms.is_some()).count(),
        finals: reports.iter().map(|r| r.finals).sum(),
        partials: reports.iter().map(|r| r.partial_ms.len()).sum(),
        finals_reported: reports.iter().map(|r| r.finals_reported).sum(),
        reconnects: reports.iter().map(|r| r.reconnects).sum(),
        duplicates: reports.iter().map(|r| r.duplicates).sum(),
        errors: errors.into_iter().collect(),
        final_ms: Percentiles::of(utterances.iter().filter_map(|u| u.final_ms).collect()),
        partial_ms: Percentiles::of(reports.iter().flat_map(|r| r.partial_ms.iter().copied()).collect()),
        audio_seconds: reports.iter().map(|r| r.audio_seconds).sum(),
        wall_seconds: wall,
        processes,
        redis,
        frame_ms: opts.frame_ms,
        frame_handling_ms: None,
        workers: Vec::new(),
        worker_totals: None,
        timeline: Vec::new(),
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
        writeln!(
            f,
            "sessions      {} asked, {} connected, {} held to the end without error",
            self.sessions, self.connected, self.held
        )?;
        writeln!(
            f,
            "utterances    {} spoken, {} finalized ({:.1}%); finals {} received of {} sent; {} partials",
            self.utterances,
            self.finalized,
            pct(self.finalized, self.utterances),
            self.finals,
            self.finals_reported,
            self.partials,
        )?;
        if self.reconnects > 0 || self.duplicates > 0 {
            writeln!(
                f,
                "resumed       {} times after a lost socket; {} finals received twice",
                self.reconnects, self.duplicates
            )?;
        }
        for (e, n) in &self.errors {
            writeln!(f, "errors        {n} × {e}")?;
        }
        let p = |x: &Percentiles| {
            format!(
                "p50 {:>5.0}  p90 {:>5.0}  p95 {:>5.0}  p99 {:>5.0}  max {:>5.0} ms  (n={})",
                x.p50, x.p90, x.p95, x.p99, x.max, x.n
            )
        };
        writeln!(f, "speech→final  {}", p(&self.final_ms))?;
        writeln!(f, "partial lag   {}", p(&self.partial_ms))?;
        writeln!(
            f,
            "audio         {:.0} s streamed in {:.0} s, {} ms frames",
            self.audio_seconds, self.wall_seconds, self.frame_ms
        )?;
        if let Some(h) = &self.frame_handling_ms {
            writeln!(
                f,
                "frame handling p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3} ms in the gateway (n={})",
                h.p50, h.p90, h.p99, h.max, h.n
            )?;
        }
        if !self.workers.is_empty() {
            writeln!(f, "workers       {}", self.workers.join(", "))?;
        }
        if let Some(w) = self.worker_totals.filter(|w| w.audio_s > 0.0) {
            writeln!(
                f,
                "model         {:.0} segments, {:.0} s of audio in {:.0} s of model time: RTF {:.3}, {:.2} s of audio per wall second",
                w.segments,
                w.audio_s,
                w.busy_s,
                w.busy_s / w.audio_s,
                w.audio_s / self.wall_seconds.max(1e-9),
            )?;
        }
        let held = self.connected.max(1) as f64;
        for u in &self.processes {
            writeln!(
                f,
                "process       {:<10} pid {:<7} CPU {:>5.2} cores  RSS {:.0} → {:.0} MiB (peak {:.0}); per session {:.2} ms CPU/s, {:.0} KiB",
                u.label,
                u.pid,
                u.cpu_cores,
                u.rss_start_mib,
                u.rss_end_mib,
                u.rss_peak_mib,
                u.cpu_cores * 1e3 / held,
                (u.rss_peak_mib - u.rss_start_mib).max(0.0) * 1024.0 / held,
            )?;
        }
        if self.timeline.len() > 1 {
            let labels: Vec<&str> = self.processes.iter().map(|p| p.label.as_str()).collect();
            writeln!(f, "timeline      every 60 s: seconds, RSS MiB ({}), Redis MiB", labels.join(", "))?;
            for (t, rss, redis) in &self.timeline {
                let rss: Vec<String> = rss.iter().map(|r| format!("{r:.0}")).collect();
                writeln!(f, "              {t:>5} s  {}  {redis:.1}", rss.join(" "))?;
            }
        }
        if let Some(r) = &self.redis {
            writeln!(
                f,
                "redis         CPU {:.2} cores  memory {:.1} MiB  clients (peak) {}",
                r.cpu_cores, r.used_memory_mib, r.connected_clients_peak
            )?;
        }
        Ok(())
    }
}
