//! A session's speech probability (`gateway.speech_prob`): Silero VAD over its 16 kHz audio in
//! 32 ms chunks on the session's absolute clock, kept for as long as the audio buffer keeps
//! audio, so that audio fed to a segmenter again (a replacement instance after a swap or a
//! failure) gets the same probabilities as the first time without running the model again.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::inference::{InferenceError, SILERO_CHUNK, SileroState, SileroVad};

const CHUNK: u64 = SILERO_CHUNK as u64;

pub struct SpeechProbs {
    model: Arc<SileroVad>,
    state: SileroState,
    /// Absolute sample where chunk 0 starts (a resumed session's clock goes on).
    origin: u64,
    /// Samples of the chunk being filled.
    pending: Vec<f32>,
    /// Probabilities of chunks `first..first + probs.len()`; `None` where the model failed.
    probs: VecDeque<Option<f32>>,
    first: u64,
    keep: usize,
}

impl SpeechProbs {
    /// Probabilities for audio from absolute sample `origin` on, kept for `keep_samples`.
    pub fn new(model: Arc<SileroVad>, origin: u64, keep_samples: usize) -> Self {
        Self {
            model,
            state: SileroState::default(),
            origin,
            pending: Vec::with_capacity(SILERO_CHUNK),
            probs: VecDeque::new(),
            first: 0,
            keep: keep_samples / SILERO_CHUNK + 2,
        }
    }

    /// Takes the next samples of the stream; returns the model's error for each chunk it failed on.
    pub fn push(&mut self, mut samples: &[f32]) -> Vec<InferenceError> {
        let mut errors = Vec::new();
        while !samples.is_empty() {
            let take = (SILERO_CHUNK - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() < SILERO_CHUNK {
                break;
            }
            // A chunk the model fails on has no probability: the segmenter decides by energy.
            let prob = match self.model.prob(&mut self.state, &self.pending) {
                Ok(p) => Some(p),
                Err(e) => {
                    errors.push(e);
                    None
                }
            };
            self.pending.clear();
            self.probs.push_back(prob);
            if self.probs.len() > self.keep {
                self.probs.pop_front();
                self.first += 1;
            }
        }
        errors
    }

    /// One past the last sample with a probability: audio up to here can be segmented.
    pub fn known_end(&self) -> u64 {
        self.origin + (self.first + self.probs.len() as u64) * CHUNK
    }

    /// `[from, to)` split at chunk edges, each piece with its chunk's probability (`None` for a
    /// piece past `known_end` or before what is kept).
    pub fn pieces(&self, from: u64, to: u64) -> Vec<(u64, u64, Option<f32>)> {
        let mut out = Vec::new();
        let mut at = from;
        if at < self.origin {
            // Before the session's clock began: cannot happen for its own audio; no probability.
            at = to.min(self.origin);
            out.push((from, at, None));
        }
        while at < to {
            let chunk = (at - self.origin) / CHUNK;
            let end = (self.origin + (chunk + 1) * CHUNK).min(to);
            let prob = chunk.checked_sub(self.first).and_then(|i| self.probs.get(i as usize).copied().flatten());
            out.push((at, end, prob));
            at = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Option<Arc<SileroVad>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let path = root.join(".cache/silero_vad.onnx");
        let lib = root.join(".cache/libonnxruntime.so");
        (path.exists() && lib.exists()).then(|| Arc::new(SileroVad::load(&path, &lib, 1).expect("Silero loads")))
    }

    #[test]
    fn pieces_follow_the_chunk_grid_and_history() {
        let Some(m) = model() else {
            panic!(".cache/silero_vad.onnx missing: run `make setup`");
        };
        // A resumed session: its clock starts at 1000.
        let mut sp = SpeechProbs::new(m, 1000, 2048);
        assert!(sp.push(&vec![0.0; 700]).is_empty());
        assert_eq!(sp.known_end(), 1000 + 512);
        assert!(sp.push(&vec![0.0; 2000]).is_empty());
        assert_eq!(sp.known_end(), 1000 + 5 * 512);
        let p = sp.pieces(1300, 2100);
        assert_eq!(p.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(), vec![(1300, 1512), (1512, 2024), (2024, 2100)]);
        assert!(p.iter().all(|x| x.2.is_some_and(|v| v < 0.3)), "silence is not speech: {p:?}");
        // Past what is known: no probability.
        assert_eq!(sp.pieces(1000 + 5 * 512, 1000 + 5 * 512 + 10)[0].2, None);
        // Only `keep` is kept: the oldest chunks lose their probability.
        sp.push(&vec![0.0; 512 * 10]);
        assert_eq!(sp.pieces(1000, 1100)[0].2, None);
        assert!(sp.pieces(sp.known_end() - 10, sp.known_end())[0].2.is_some());
    }
}
