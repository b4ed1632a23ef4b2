//! The order of a session's results. Workers publish each result with the session's next
//! `seq` under its `epoch`; Pub/Sub may lose or repeat a message and a gateway may come back to
//! a session mid-stream, so results are applied strictly in `seq` order: a repeat is dropped, a
//! gap is filled from the replay stream first (the caller reads it), and when Redis lost the
//! session's state (its results are numbered afresh under a new epoch) the new epoch is
//! followed while late messages of the old one still count. Pure: no Redis, no clock.

/// What to do with one result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The next in order: apply it.
    Next,
    /// Already applied (or older): drop it.
    Duplicate,
    /// Results are missing before it: read the replay stream, then offer it again.
    Gap,
    /// Of an epoch Redis has since lost: apply it, outside the sequence (a final still only
    /// once: the caller's ledger says whether it is outstanding).
    Retired,
}

#[derive(Debug)]
pub struct Sequencer {
    epoch: String,
    retired: Vec<String>,
    last_seq: u64,
}

impl Sequencer {
    /// A session's sequence, with `last_seq` applied already (a resumed session's client says
    /// what it has).
    pub fn new(epoch: String, last_seq: u64) -> Self {
        Self { epoch, retired: Vec::new(), last_seq }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The last `seq` applied.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Where a result of `epoch` numbered `seq` stands. A result of an epoch not seen before
    /// means Redis lost the session's state: the sequence restarts under it (the current epoch
    /// is retired) and the result is judged in the new one.
    pub fn admit(&mut self, epoch: &str, seq: u64) -> Admit {
        if epoch != self.epoch {
            if self.retired.iter().any(|e| e == epoch) {
                return Admit::Retired;
            }
            tracing::warn!(from = %self.epoch, to = %epoch, "result sequence restarted");
            self.retired.push(std::mem::replace(&mut self.epoch, epoch.to_string()));
            self.last_seq = 0;
        }
        match seq {
            s if s <= self.last_seq => Admit::Duplicate,
            s if s == self.last_seq + 1 => Admit::Next,
            _ => Admit::Gap,
        }
    }

    /// Takes `seq` as applied if it is the next in order (replayed results come in order, some
    /// already applied); says whether it was.
    pub fn advance(&mut self, seq: u64) -> bool {
        let next = seq == self.last_seq + 1;
        if next {
            self.last_seq = seq;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_repeats_and_gaps() {
        let mut s = Sequencer::new("e1".into(), 0);
        assert_eq!(s.admit("e1", 1), Admit::Next);
        assert!(s.advance(1));
        assert_eq!(s.admit("e1", 1), Admit::Duplicate);
        assert_eq!(s.admit("e1", 3), Admit::Gap);
        // The replay brings 2 and 3; then 3 itself is a repeat.
        assert!(!s.advance(3));
        assert!(s.advance(2));
        assert!(s.advance(3));
        assert_eq!(s.admit("e1", 3), Admit::Duplicate);
        assert_eq!(s.last_seq(), 3);
    }

    #[test]
    fn a_resumed_session_starts_after_what_its_client_has() {
        let mut s = Sequencer::new("e1".into(), 7);
        assert_eq!(s.admit("e1", 7), Admit::Duplicate);
        assert_eq!(s.admit("e1", 8), Admit::Next);
    }

    /// Redis came back empty: results start again at 1 under a new epoch; late results of the
    /// old epoch are applied outside the sequence.
    #[test]
    fn a_new_epoch_is_followed_and_the_old_one_still_counts() {
        let mut s = Sequencer::new("old".into(), 0);
        assert!(s.advance(1) && s.advance(2) && s.advance(3));
        assert_eq!(s.admit("new", 1), Admit::Next);
        assert_eq!(s.epoch(), "new");
        assert!(s.advance(1));
        assert_eq!(s.admit("old", 4), Admit::Retired);
        assert_eq!(s.last_seq(), 1, "a retired epoch's result leaves the sequence alone");
        assert_eq!(s.admit("newer", 2), Admit::Gap, "a new epoch's first result seen out of order");
        assert_eq!(s.epoch(), "newer");
        assert_eq!(s.admit("new", 2), Admit::Retired);
    }
}
