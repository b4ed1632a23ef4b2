//! What the load tool reads from the gateway it drives: the frame-handling histogram and the
//! workers' totals from `/metrics` (before and after the run, so that the difference is the
//! run's) and the workers' models from `/api/stats` (so that a transport-only run says so).

use std::time::Duration;

use super::Percentiles;

/// The gateway's HTTP base for a `ws://host:port/...` URL.
pub fn http_base(ws_url: &str) -> Option<String> {
    let rest = ws_url.strip_prefix("ws://")?;
    let host = rest.split('/').next()?;
    Some(format!("http://{host}"))
}

/// The gateway's `/metrics` page.
async fn metrics_text(base: &str) -> Option<String> {
    let (status, body) = crate::tools::http_client::get(base, "/metrics", Duration::from_secs(5)).await.ok()?;
    (status == 200).then_some(body)
}

/// Cumulative bucket counts of `kiki_frame_seconds`, by upper bound (seconds).
#[derive(Debug, Clone, Default)]
pub struct Histogram(Vec<(f64, f64)>);

impl Histogram {
    pub async fn read(base: &str) -> Option<Self> {
        Some(Self::parse(&metrics_text(base).await?, "kiki_frame_seconds_bucket"))
    }

    /// The sum over several gateways (`None` if any cannot be read).
    pub async fn read_all(bases: &[String]) -> Option<Self> {
        let mut total: Option<Histogram> = None;
        for base in bases {
            let h = Self::read(base).await?;
            total = Some(match total {
                None => h,
                Some(mut t) => {
                    for (le, n) in h.0 {
                        match t.0.iter_mut().find(|b| b.0 == le) {
                            Some(b) => b.1 += n,
                            None => t.0.push((le, n)),
                        }
                    }
                    t.0.sort_by(|a, b| a.0.total_cmp(&b.0));
                    t
                }
            });
        }
        total
    }

    fn parse(text: &str, name: &str) -> Self {
        let mut buckets: Vec<(f64, f64)> = text
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self(buckets)
    }

    /// Percentiles (ms) of what was observed between `before` and `self`, interpolated within
    /// buckets.
    pub fn since(&self, before: &Histogram) -> Percentiles {
        let counts: Vec<(f64, f64)> =
            self.0.iter().map(|&(le, n)| (le, n - before.0.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1))).collect();
        let total = counts.last().map_or(0.0, |c| c.1);
        if total <= 0.0 {
            return Percentiles::default();
        }
        let at = |p: f64| {
            let want = total * p;
            let mut prev = (0.0, 0.0);
            for &(le, n) in &counts {
                if n >= want {
                    if le.is_infinite() {
                        return prev.0 * 1e3;
                    }
                    let frac = if n > prev.1 { (want - prev.1) / (n - prev.1) } else { 1.0 };
                    return (prev.0 + (le - prev.0) * frac) * 1e3;
                }
                prev = (le, n);
            }
            prev.0 * 1e3
        };
        Percentiles { n: total as usize, p50: at(0.5), p90: at(0.9), p95: at(0.95), p99: at(0.99), max: at(1.0) }
    }
}

/// The workers' reported totals, summed over the workers a gateway sees (from its `/metrics`):
/// segments, audio transcribed and model time (so RTF = busy / audio).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WorkerTotals {
    pub segments: f64,
    pub audio_s: f64,
    pub busy_s: f64,
}

impl WorkerTotals {
    pub async fn read(base: &str) -> Option<Self> {
        let body = metrics_text(base).await?;
        let sum = |name: &str| -> f64 {
            body.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
        };
        Some(Self {
            segments: sum("kiki_worker_segments{"),
            audio_s: sum("kiki_worker_audio_ms{") / 1e3,
            busy_s: sum("kiki_worker_busy_ms{") / 1e3,
        })
    }

    /// What was done between `before` and `self`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            segments: (self.segments - before.segments).max(0.0),
            audio_s: (self.audio_s - before.audio_s).max(0.0),
            busy_s: (self.busy_s - before.busy_s).max(0.0),
        }
    }
}

/// The models of the workers the gateway sees (`none (transport only ...)` for no-op workers).
pub async fn worker_models(base: &str, token: Option<&str>) -> Vec<String> {
    let path = match token {
        Some(t) => format!("/api/stats?token={t}"),
        None => "/api/stats".to_string(),
    };
    let Ok((200, body)) = crate::tools::http_client::get(base, &path, Duration::from_secs(5)).await else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else { return Vec::new() };
    v["workers"]
        .as_array()
        .map(|ws| ws.iter().map(|w| w["model"].as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_from_bucket_differences() {
        let before = Histogram::parse(
            "x_bucket{le=\"0.001\"} 10\nx_bucket{le=\"0.002\"} 10\nx_bucket{le=\"+Inf\"} 10\n",
            "x_bucket",
        );
        let after = Histogram::parse(
            "x_bucket{le=\"0.001\"} 60\nx_bucket{le=\"0.002\"} 110\nx_bucket{le=\"+Inf\"} 110\n",
            "x_bucket",
        );
        let p = after.since(&before);
        assert_eq!(p.n, 100);
        assert!((p.p50 - 1.0).abs() < 1e-9, "{p:?}");
        assert!((p.p99 - 1.98).abs() < 1e-9, "{p:?}");
        assert_eq!(http_base("ws://127.0.0.1:8080/ws").as_deref(), Some("http://127.0.0.1:8080"));
    }
}
