//! Test plugin `oldabi@0.1.0`: a segmenter built against the frozen contract snapshot
//! `wit/since_v0.1.0` (`kiki:plugin@0.1.0`) with `wit-bindgen` directly, not the SDK.
//!
//! It stands for a plugin compiled before the contract grew: the host must keep loading it.
//! Behaviour: one final cut every 8000 samples (`[k * 8000, (k + 1) * 8000)`), and at `flush` a
//! final cut over the rest, if any. It ignores its config.

#![allow(missing_docs)]

use std::cell::Cell;

wit_bindgen::generate!({
    world: "segmenter-plugin",
    path: "../../../wit/since_v0.1.0",
});

use exports::kiki::plugin::segmenter::{Guest, GuestSession, Session};
use kiki::plugin::types::{Cut, CutKind, Frame, PluginError};

/// Samples per cut.
pub const PERIOD: u64 = 8_000;

pub struct OldAbi;

pub struct OldSession {
    cut_until: Cell<u64>,
    seen: Cell<u64>,
}

impl OldSession {
    fn new() -> Self {
        OldSession { cut_until: Cell::new(0), seen: Cell::new(0) }
    }
}

impl GuestSession for OldSession {
    fn push(&self, frame: Frame) -> Vec<Cut> {
        self.seen.set(self.seen.get() + frame.samples.len() as u64);
        let mut cuts = Vec::new();
        while self.cut_until.get() + PERIOD <= self.seen.get() {
            let start = self.cut_until.get();
            self.cut_until.set(start + PERIOD);
            cuts.push(Cut { kind: CutKind::Final, start, end: start + PERIOD });
        }
        cuts
    }

    fn flush(&self) -> Vec<Cut> {
        let (start, end) = (self.cut_until.get(), self.seen.get());
        self.cut_until.set(end);
        if end > start { vec![Cut { kind: CutKind::Final, start, end }] } else { Vec::new() }
    }
}

impl Guest for OldAbi {
    type Session = OldSession;

    fn open(_sample_rate: u32, _config: Vec<(String, String)>) -> Result<Session, PluginError> {
        Ok(Session::new(OldSession::new()))
    }
}

#[cfg(target_arch = "wasm32")]
export!(OldAbi);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_every_8000() {
        let s = OldSession::new();
        let f = |n: usize| Frame { samples: vec![0.0; n], speech_prob: None };
        assert!(s.push(f(7_999)).is_empty());
        let cuts = s.push(f(8_002));
        assert_eq!(cuts.len(), 2);
        assert_eq!((cuts[1].start, cuts[1].end), (8_000, 16_000));
        let rest = s.flush();
        assert_eq!((rest[0].start, rest[0].end), (16_000, 16_001));
    }
}
