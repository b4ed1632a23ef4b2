//! A session's recent audio at 16 kHz, addressed by absolute sample (counted from the start of
//! the session's stream): what the segmenter's cuts are sliced from.
//!
//! Kept as s16 in a ring, because tasks carry s16 anyway and a session may hold many seconds of
//! it; and bounded, because the host cannot tell silence from an utterance the segmenter is still
//! deciding on: without a bound, a session that stays silent for an hour would hold an hour of
//! audio. The bound is the longest segment a cut may span (`gateway.max_segment_s`); a cut that
//! reaches further back is clamped to what is kept.

use std::collections::VecDeque;

// As `audio::to_s16le` quantizes, so that a slice's bytes are the same either way.
use kiki_protocol::pcm::{quantize, s16_to_f32};

pub struct AudioBuf {
    samples: VecDeque<i16>,
    /// Absolute index of `samples[0]`.
    base: u64,
    max: usize,
}

impl AudioBuf {
    /// An empty buffer whose next sample is `position`, keeping at most `max` samples.
    pub fn new(position: u64, max: usize) -> Self {
        Self { samples: VecDeque::new(), base: position, max: max.max(1) }
    }

    /// One past the last sample received.
    pub fn end(&self) -> u64 {
        self.base + self.samples.len() as u64
    }

    pub fn push(&mut self, samples: &[f32]) {
        self.samples.extend(samples.iter().map(|s| quantize(*s)));
        if self.samples.len() > self.max {
            let excess = self.samples.len() - self.max;
            self.samples.drain(..excess);
            self.base += excess as u64;
        }
    }

    /// Drops everything before absolute sample `position`.
    pub fn forget_before(&mut self, position: u64) {
        let n = position.saturating_sub(self.base).min(self.samples.len() as u64);
        self.samples.drain(..n as usize);
        self.base += n;
    }

    /// `[start, end)` clamped to what is kept (empty when it holds nothing of it).
    pub fn clamp(&self, start: u64, end: u64) -> (u64, u64) {
        let start = start.clamp(self.base, self.end());
        (start, end.clamp(start, self.end()))
    }

    /// `[start, end)` (clamped) as s16le bytes, as tasks carry audio.
    pub fn s16le(&self, start: u64, end: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize * 2);
        for s in self.range(start, end) {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// `[start, end)` (clamped) as samples in [-1, 1), as plugins take them: the same scale
    /// as the workers' (`Task::samples`), so a segmenter and the model hear the same levels.
    pub fn f32(&self, start: u64, end: u64) -> Vec<f32> {
        self.range(start, end).map(s16_to_f32).collect()
    }

    fn range(&self, start: u64, end: u64) -> impl Iterator<Item = i16> + '_ {
        let (start, end) = self.clamp(start, end);
        self.samples.range((start - self.base) as usize..(end - self.base) as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_positions_bound_and_slices() {
        let mut b = AudioBuf::new(1000, 8);
        b.push(&[0.0, 0.5, -0.5, 1.0]);
        assert_eq!(b.clamp(0, u64::MAX), (1000, 1004));
        assert_eq!(b.s16le(1001, 1003), crate::audio::to_s16le(&[0.5, -0.5]));
        // Cuts reaching outside what is kept are clamped, never out of bounds.
        assert_eq!(b.clamp(0, 5000), (1000, 1004));
        assert_eq!(b.f32(2000, 3000), Vec::<f32>::new());
        // Past the bound the oldest samples go; positions stay absolute.
        b.push(&[0.25; 10]);
        assert_eq!(b.clamp(0, u64::MAX), (1006, 1014));
        assert_eq!(b.f32(1000, 1007).len(), 1);
        b.forget_before(1012);
        assert_eq!(b.clamp(0, u64::MAX), (1012, 1014));
        b.forget_before(99_999);
        assert_eq!(b.clamp(0, u64::MAX), (1014, 1014));
        assert!((b.f32(0, 1).len(), b.s16le(0, 99).len()) == (0, 0));
    }

    /// The segmenter and the workers read the same audio at the same scale.
    #[test]
    fn plugins_and_workers_hear_the_same_levels() {
        let mut b = AudioBuf::new(0, 64);
        b.push(&[0.5, -1.0, 0.25]);
        let task = crate::channels::tasks::Task {
            id: String::new(),
            meta: serde_json::from_value(serde_json::json!({
                "session": "s", "segment": 0, "kind": "final", "reply": "r",
                "start_ms": 0, "end_ms": 0, "enqueued_ms": 0,
            }))
            .unwrap(),
            audio: b.s16le(0, 3),
        };
        assert_eq!(b.f32(0, 3), task.samples());
    }
}
