//! Hostile test plugin `panic@0.1.0`: a segmenter whose third `push` panics.
//!
//! Calls 1 and 2 to `push` each return one final cut over the samples that call brought
//! (`[0, n1)`, then `[n1, n1 + n2)`; nothing for an empty frame). Call 3 panics with
//! "seg-panic: third push"; on wasm32 the panic message goes to stderr and the panic aborts,
//! which is a wasm trap (`unreachable`). `flush` returns a final cut over any samples not yet
//! cut (only reachable if fewer than three pushes happened).

use kiki_plugin_sdk::{Config, Cut, CutKind, Frame, PluginError, Segmenter, export_segmenter};

/// The push call (1-based) that panics.
pub const PANIC_ON_CALL: u32 = 3;

pub struct Panicky {
    calls: u32,
    cut_until: u64,
    seen: u64,
}

impl Panicky {
    fn cut_rest(&mut self) -> Vec<Cut> {
        let start = self.cut_until;
        self.cut_until = self.seen;
        if self.seen > start { vec![Cut { kind: CutKind::Final, start, end: self.seen }] } else { Vec::new() }
    }
}

impl Segmenter for Panicky {
    fn open(_sample_rate: u32, _config: &Config) -> Result<Self, PluginError> {
        Ok(Panicky { calls: 0, cut_until: 0, seen: 0 })
    }

    fn push(&mut self, frame: Frame) -> Vec<Cut> {
        self.calls += 1;
        if self.calls >= PANIC_ON_CALL {
            panic!("seg-panic: third push");
        }
        self.seen += frame.samples.len() as u64;
        self.cut_rest()
    }

    fn flush(&mut self) -> Vec<Cut> {
        self.cut_rest()
    }
}

export_segmenter!(Panicky);

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Frame {
        Frame { samples: vec![0.0; n], speech_prob: None }
    }

    #[test]
    fn two_cuts_then_panic() {
        let mut s = Panicky::open(16_000, &Config::default()).unwrap();
        assert_eq!(s.push(frame(100)), vec![Cut { kind: CutKind::Final, start: 0, end: 100 }]);
        assert_eq!(s.push(frame(50)), vec![Cut { kind: CutKind::Final, start: 100, end: 150 }]);
        let third = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.push(frame(10))));
        assert!(third.is_err());
    }
}
