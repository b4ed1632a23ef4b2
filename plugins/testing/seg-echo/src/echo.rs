//! The segmenter shared by `echo@0.1.0` (seg-echo) and `echo@0.2.0` (seg-echo-v2).
//!
//! Config (session options first, then the operator's values):
//! - `every` (u32, default 16000, at least 1): the cut period of version 1, in samples.
//! - `tag` (u32, default 0): checked and logged on `open` (at info), nothing else; a value that
//!   is not a u32 makes `open` fail with `invalid-config`.
//! - `spin` (bool, default false): `push` never returns (only the host's fuel limit ends it).
//!   A plugin that passes its self-test and then fails on a session's traffic, for the host's
//!   failure-policy tests.
//! - `chatter` (u32, default 0): bytes written to stderr on every `push`, for the host's
//!   output-capture tests.
//!
//! The cut period is `every / DIVISOR` samples (at least 1). `push` returns one final cut
//! `[k * period, (k + 1) * period)` for every period boundary the stream has passed, so each
//! cut is exactly `period` long and starts at a multiple of `period`. `flush` returns a final
//! cut over the rest (`[last boundary, seen)`), when there is a rest.

use kiki_plugin_sdk::{Config, Cut, CutKind, Frame, PluginError, Segmenter};

/// Default for `every`: one second at 16 kHz.
pub const DEFAULT_EVERY: u32 = 16_000;

/// Cuts every `every / DIVISOR` samples; `DIVISOR` is 1 for version 1, 2 for version 2.
pub struct Echo<const DIVISOR: u64> {
    pub period: u64,
    pub tag: u32,
    spin: bool,
    chatter: u32,
    cut_until: u64,
    seen: u64,
}

impl<const DIVISOR: u64> Segmenter for Echo<DIVISOR> {
    fn open(_sample_rate: u32, config: &Config) -> Result<Self, PluginError> {
        let every = config.get_u32_in("every", DEFAULT_EVERY, 1, u32::MAX)?;
        let tag = config.get_u32("tag", 0)?;
        let spin = config.get_bool("spin", false)?;
        let chatter = config.get_u32("chatter", 0)?;
        let period = (u64::from(every) / DIVISOR).max(1);
        kiki_plugin_sdk::info!("echo v{DIVISOR}: every={every} period={period} tag={tag}");
        Ok(Echo { period, tag, spin, chatter, cut_until: 0, seen: 0 })
    }

    fn push(&mut self, frame: Frame) -> Vec<Cut> {
        if self.spin {
            let p: *mut u64 = &mut self.seen;
            loop {
                // SAFETY: `p` points at a live, aligned field of `self` for the whole loop.
                unsafe { p.write_volatile(p.read_volatile().wrapping_add(1)) };
            }
        }
        if self.chatter > 0 {
            eprint!("{}", "x".repeat(self.chatter as usize));
        }
        self.seen += frame.samples.len() as u64;
        let mut cuts = Vec::new();
        while self.cut_until + self.period <= self.seen {
            let start = self.cut_until;
            self.cut_until += self.period;
            cuts.push(Cut { kind: CutKind::Final, start, end: self.cut_until });
        }
        cuts
    }

    fn flush(&mut self) -> Vec<Cut> {
        let start = self.cut_until;
        self.cut_until = self.seen;
        if self.seen > start { vec![Cut { kind: CutKind::Final, start, end: self.seen }] } else { Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Frame {
        Frame { samples: vec![0.0; n], speech_prob: None }
    }

    fn fin(start: u64, end: u64) -> Cut {
        Cut { kind: CutKind::Final, start, end }
    }

    #[test]
    fn cuts_on_period_boundaries() {
        let mut s = Echo::<1>::open(16_000, &Config::from_pairs(&[("every", "100"), ("tag", "7")])).unwrap();
        assert_eq!(s.tag, 7);
        assert_eq!(s.push(frame(99)), vec![]);
        assert_eq!(s.push(frame(1)), vec![fin(0, 100)]);
        assert_eq!(s.push(frame(250)), vec![fin(100, 200), fin(200, 300)]);
        assert_eq!(s.flush(), vec![fin(300, 350)]);
        assert_eq!(s.flush(), vec![]);
    }

    #[test]
    fn second_version_halves_the_period() {
        let mut s = Echo::<2>::open(16_000, &Config::default()).unwrap();
        assert_eq!(s.period, 8_000);
        assert_eq!(s.push(frame(16_000)), vec![fin(0, 8_000), fin(8_000, 16_000)]);
        let tiny = Echo::<2>::open(16_000, &Config::from_pairs(&[("every", "1")])).unwrap();
        assert_eq!(tiny.period, 1);
    }

    #[test]
    fn bad_config_is_refused() {
        for bad in [("every", "0"), ("every", "x"), ("tag", "-1")] {
            let r = Echo::<1>::open(16_000, &Config::from_pairs(&[bad]));
            assert!(matches!(r, Err(PluginError::InvalidConfig(_))), "{bad:?}");
        }
    }
}
