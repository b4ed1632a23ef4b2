//! The finals a session has cut and not yet delivered, each with its task and audio, so that no
//! final is lost to Redis: a final that cannot be queued (Redis away for a moment) is kept and
//! queued when Redis answers again, and one whose task vanished with Redis's data (a restart
//! without persistence, a failover to an empty replica) is queued again.
//!
//! The audio is kept until the final is delivered: a final is usually out within a second, so
//! this is about one utterance per talking session.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::channels::tasks::TaskMeta;

struct Entry {
    meta: TaskMeta,
    /// 16 kHz s16le.
    pcm: Vec<u8>,
    /// The task's stream id; `None` while it is not queued.
    task: Option<String>,
    /// When it was queued, or last looked for.
    since: Instant,
}

/// A final waiting to be queued, or to be queued again.
pub struct Unqueued<'a> {
    pub segment: u64,
    pub meta: &'a TaskMeta,
    pub pcm: &'a [u8],
}

#[derive(Default)]
pub struct Ledger {
    entries: BTreeMap<u64, Entry>,
    /// Bytes of `pcm` held in all entries (the session stops reading its socket above a limit).
    held_bytes: usize,
}

impl Ledger {
    /// Records a final of `meta.segment`; `task` is its stream id if it was queued.
    pub fn add(&mut self, meta: TaskMeta, pcm: Vec<u8>, task: Option<String>) {
        self.held_bytes += pcm.len();
        if let Some(old) = self.entries.insert(meta.segment, Entry { meta, pcm, task, since: Instant::now() }) {
            self.held_bytes -= old.pcm.len();
        }
    }

    /// The final of `segment` arrived: forget it. Whether it was outstanding.
    pub fn delivered(&mut self, segment: u64) -> bool {
        let Some(e) = self.entries.remove(&segment) else { return false };
        self.held_bytes -= e.pcm.len();
        true
    }

    /// Milliseconds of audio cut and not yet delivered as finals.
    pub fn held_ms(&self) -> u64 {
        // 16 kHz s16le: 32 bytes a millisecond.
        (self.held_bytes / 32) as u64
    }

    /// Finals cut and not delivered, queued or not.
    pub fn outstanding(&self) -> usize {
        self.entries.len()
    }

    /// The finals not queued, in segment order.
    pub fn unqueued(&self) -> Vec<Unqueued<'_>> {
        self.entries
            .iter()
            .filter(|(_, e)| e.task.is_none())
            .map(|(&segment, e)| Unqueued { segment, meta: &e.meta, pcm: &e.pcm })
            .collect()
    }

    /// `segment`'s final is on the stream now, as `task`.
    pub fn queued(&mut self, segment: u64, task: String) {
        if let Some(e) = self.entries.get_mut(&segment) {
            e.task = Some(task);
            e.since = Instant::now();
        }
    }

    /// `segment`'s task is gone from the stream without a result: it must be queued again.
    pub fn lost(&mut self, segment: u64) {
        if let Some(e) = self.entries.get_mut(&segment) {
            e.task = None;
        }
    }

    /// Queued finals not delivered within `after` of being queued (or last looked for), with
    /// their task ids; their clocks restart.
    pub fn overdue(&mut self, now: Instant, after: Duration) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for (&segment, e) in self.entries.iter_mut() {
            if let Some(task) = &e.task
                && now.duration_since(e.since) >= after
            {
                e.since = now;
                out.push((segment, task.clone()));
            }
        }
        out
    }

    /// Whether `segment` is still outstanding.
    pub fn contains(&self, segment: u64) -> bool {
        self.entries.contains_key(&segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::CutKind;

    fn meta(segment: u64) -> TaskMeta {
        TaskMeta::new("s", segment, CutKind::Final, "r", (0, 1000), Default::default())
    }

    #[tokio::test(start_paused = true)]
    async fn finals_wait_in_order_and_come_back_when_lost() {
        let mut l = Ledger::default();
        l.add(meta(0), vec![1, 2], Some("1-0".into()));
        l.add(meta(1), vec![3, 4], None);
        l.add(meta(2), vec![5, 6], None);
        assert_eq!(l.outstanding(), 3);
        assert_eq!(l.held_bytes, 6);
        assert_eq!(l.unqueued().iter().map(|u| u.segment).collect::<Vec<_>>(), vec![1, 2]);
        l.queued(1, "2-0".into());
        assert_eq!(l.unqueued().iter().map(|u| u.segment).collect::<Vec<_>>(), vec![2]);
        tokio::time::advance(Duration::from_secs(6)).await;
        let due = l.overdue(Instant::now(), Duration::from_secs(5));
        assert_eq!(due, vec![(0, "1-0".to_string()), (1, "2-0".to_string())]);
        assert!(l.overdue(Instant::now(), Duration::from_secs(5)).is_empty(), "clocks restart");
        l.lost(0);
        assert_eq!(l.unqueued()[0].pcm, &[1, 2]);
        assert!(l.delivered(1));
        assert!(!l.delivered(1));
        assert_eq!(l.held_bytes, 4);
        assert!(l.contains(0) && !l.contains(1));
    }
}
