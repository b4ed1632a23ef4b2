//! A session's audio on its way in: frames decoded in the client's format, resampled to
//! 16 kHz, kept by absolute sample (what the segmenter and the finals' tasks read), and, with
//! `gateway.speech_prob`, Silero's speech probability per 32 ms chunk.

use std::sync::Arc;

use super::audio_buf::AudioBuf;
use super::speech::SpeechProbs;
use crate::audio::{self, AudioError, FrameError, PcmFormat, SAMPLE_RATE, StreamResampler};
use crate::inference::SileroVad;
use crate::metrics::Metrics;

pub struct AudioIn {
    format: PcmFormat,
    rate: u32,
    resampler: StreamResampler,
    scratch: Vec<f32>,
    /// Recent audio at 16 kHz, by absolute sample.
    pub buf: AudioBuf,
    /// Speech probabilities for the kept audio: it reaches the segmenter once its chunk has one.
    pub speech: Option<SpeechProbs>,
    /// Absolute sample at which this connection's audio began (a resumed session's clock goes on).
    pub first_position: u64,
}

impl AudioIn {
    /// Audio at `rate` in `format`, on a clock that starts at `position`, keeping `keep` samples.
    pub fn new(
        format: PcmFormat,
        rate: u32,
        position: u64,
        keep: usize,
        speech: Option<Arc<SileroVad>>,
    ) -> Result<Self, AudioError> {
        Ok(Self {
            format,
            rate,
            resampler: StreamResampler::new(rate, SAMPLE_RATE)?,
            scratch: Vec::new(),
            buf: AudioBuf::new(position, keep),
            speech: speech.map(|m| SpeechProbs::new(m, position, keep)),
            first_position: position,
        })
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Seconds of audio in a frame of `len` bytes in the session's format.
    pub fn frame_seconds(&self, len: usize) -> f64 {
        len as f64 / (self.format.sample_width() * self.rate as usize).max(1) as f64
    }

    /// Decodes and keeps one frame; returns how many 16 kHz samples it added.
    pub fn push_frame(&mut self, bytes: &[u8], metrics: &Metrics) -> Result<usize, FrameIn> {
        self.scratch.clear();
        audio::decode_frame(bytes, self.format, &mut self.scratch).map_err(FrameIn::Bad)?;
        let mut samples = Vec::with_capacity(self.scratch.len() * SAMPLE_RATE as usize / self.rate as usize + 8);
        self.resampler.push(&self.scratch, &mut samples).map_err(FrameIn::Resample)?;
        self.push(&samples, metrics);
        Ok(samples.len())
    }

    /// Keeps 16 kHz samples (and their speech probabilities).
    pub fn push(&mut self, samples: &[f32], metrics: &Metrics) {
        if samples.is_empty() {
            return;
        }
        self.buf.push(samples);
        if let Some(sp) = self.speech.as_mut() {
            for e in sp.push(samples) {
                metrics.speech_prob_errors.inc();
                tracing::warn!("Silero VAD failed on a chunk (the segmenter decides by energy): {e}");
            }
        }
    }

    /// How far the segmenter may be fed: audio waits for its speech probability, if any.
    pub fn feedable(&self) -> u64 {
        self.speech.as_ref().map_or(self.buf.end(), |sp| sp.known_end().min(self.buf.end()))
    }

    /// Audio in (16 kHz) since the connection started, in ms: the session's length so far.
    pub fn audio_ms(&self) -> u64 {
        audio::samples_to_ms((self.buf.end() - self.first_position) as usize)
    }
}

/// Why a frame was not taken.
#[derive(Debug)]
pub enum FrameIn {
    /// Not audio in the session's format (the client's fault).
    Bad(FrameError),
    Resample(AudioError),
}
