//! Worker liveness and load: each worker scores itself in a sorted set every few seconds (a
//! worker whose score is older than the expiry is dead) and writes what it has done, for the
//! dashboard and for autoscalers.

use std::collections::BTreeSet;

use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use super::{ChannelError, Keys};

/// What a worker reports about itself with each beat (totals since it started).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// `whisper` (with its model, precision and provider), or `none`: a transport-only worker
    /// that answers every task with empty text, for load tests of the channels alone.
    pub engine: String,
    pub model: String,
    pub batches: u64,
    pub segments: u64,
    pub audio_ms: u64,
    /// Wall time spent in the model.
    pub busy_ms: u64,
    pub started_ms: u64,
    /// Result plugins it runs, as (kind, "name@version").
    #[serde(default)]
    pub plugins: Vec<(String, String)>,
    /// Plugin traps and errors in this worker's process.
    #[serde(default)]
    pub plugin_errors: u64,
    /// Tasks it took over from dead or stuck workers, and tasks it dead-lettered.
    #[serde(default)]
    pub reclaimed: u64,
    #[serde(default)]
    pub dead_lettered: u64,
    /// Language codes its model transcribes; `None`: whatever it is asked (no model, or a
    /// worker from before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
}

/// The languages the live workers transcribe between them, from their reports: `None` when
/// that is not known (no worker alive, one that has not reported yet, or one that takes any).
pub fn languages_of<'a>(reports: impl IntoIterator<Item = Option<&'a WorkerStats>>) -> Option<BTreeSet<String>> {
    let mut all = BTreeSet::new();
    for report in reports {
        all.extend(report?.languages.as_ref()?.iter().cloned());
    }
    (!all.is_empty()).then_some(all)
}

/// A worker is alive if it beat within this window.
pub const EXPIRY_MS: u64 = 10_000;
/// How often a worker beats.
pub const INTERVAL_MS: u64 = 2_000;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub async fn beat<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    worker: &str,
    stats: &WorkerStats,
) -> Result<(), ChannelError> {
    let now = now_ms();
    let json = serde_json::to_string(stats)
        .map_err(|e| ChannelError::Malformed { what: "worker stats", reason: e.to_string() })?;
    let _: () = conn.zadd(keys.workers(), worker, now).await?;
    let _: () = conn.zrembyscore(keys.workers(), 0, now.saturating_sub(EXPIRY_MS * 6)).await?;
    let _: () = conn.set_ex(keys.worker_stats(worker), json, EXPIRY_MS / 1000 * 3).await?;
    Ok(())
}

/// Live workers with their last beat (ms since the epoch) and stats, if they wrote any.
pub async fn alive_with_stats<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
) -> Result<Vec<(String, u64, Option<WorkerStats>)>, ChannelError> {
    let min = now_ms().saturating_sub(EXPIRY_MS);
    let live: Vec<(String, u64)> = conn.zrangebyscore_withscores(keys.workers(), min, "+inf").await?;
    if live.is_empty() {
        return Ok(Vec::new());
    }
    // One slot ({workers}), so one MGET on a cluster too.
    let stat_keys: Vec<String> = live.iter().map(|(id, _)| keys.worker_stats(id)).collect();
    let stats: Vec<Option<String>> = redis::cmd("MGET").arg(&stat_keys).query_async(conn).await?;
    Ok(live
        .into_iter()
        .zip(stats)
        .map(|((id, at), s)| (id, at, s.and_then(|s| serde_json::from_str(&s).ok())))
        .collect())
}

pub async fn leave<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    keys: &Keys,
    worker: &str,
) -> Result<(), ChannelError> {
    let _: () = conn.zrem(keys.workers(), worker).await?;
    Ok(())
}

/// Workers that beat within the expiry window.
pub async fn alive<C: ConnectionLike + Send + Sync>(conn: &mut C, keys: &Keys) -> Result<Vec<String>, ChannelError> {
    let min = now_ms().saturating_sub(EXPIRY_MS);
    Ok(conn.zrangebyscore(keys.workers(), min, "+inf").await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(languages: Option<&[&str]>) -> WorkerStats {
        WorkerStats { languages: languages.map(|l| l.iter().map(|c| c.to_string()).collect()), ..Default::default() }
    }

    #[test]
    fn languages_are_the_union_of_what_every_worker_reports() {
        let english = report(Some(&["en"]));
        let multilingual = report(Some(&["de", "en", "zh"]));
        let want: BTreeSet<String> = ["de", "en", "zh"].map(String::from).into();
        assert_eq!(languages_of([Some(&english), Some(&multilingual)]), Some(want));
        assert_eq!(languages_of([Some(&english)]), Some(BTreeSet::from(["en".to_string()])));
        // Unknown as soon as one worker's is: it might take the language.
        assert_eq!(languages_of([Some(&english), Some(&report(None))]), None);
        assert_eq!(languages_of([Some(&english), None]), None);
        assert_eq!(languages_of([]), None);
        // Older reports without the field read as unknown.
        let old: WorkerStats = serde_json::from_str(r#"{"engine":"whisper","model":"tiny.en","batches":0,"segments":0,"audio_ms":0,"busy_ms":0,"started_ms":0}"#).unwrap();
        assert_eq!(old.languages, None);
    }
}
