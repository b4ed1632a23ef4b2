//! Whisper's log-mel front end: 16 kHz, n_fft 400, hop 160, periodic Hann, reflect padding,
//! 80 Slaney mel bins, log10 with floor 1e-10, clamp to max-8, then (x+4)/4.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
/// Frames in Whisper's full 30 s window.
pub const FULL_FRAMES: usize = 3000;
const N_BINS: usize = N_FFT / 2 + 1;
/// The power floor before the logarithm.
const POWER_FLOOR: f32 = 1e-10;

/// Precomputed window, filterbank and FFT plan; cheap to share between threads.
pub struct MelFrontEnd {
    window: Vec<f32>,
    /// Per mel band: its first FFT bin and the weights from there (the non-zero run only: a
    /// band spans a few bins, so the dense 80 x 201 product was mostly zeros).
    filters: Vec<(usize, Vec<f32>)>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl Default for MelFrontEnd {
    fn default() -> Self {
        Self::new()
    }
}

impl MelFrontEnd {
    pub fn new() -> Self {
        let window =
            (0..N_FFT).map(|n| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * n as f32 / N_FFT as f32).cos()).collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let dense = slaney_filters(16_000.0);
        let filters = dense
            .chunks(N_BINS)
            .map(|row| {
                let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w != 0.0).map_or(first, |l| l + 1);
                (first, row[first..last].to_vec())
            })
            .collect();
        Self { window, filters, fft }
    }

    /// Log-mel of `samples` zero-padded (or cut) to `frames * HOP` samples; returns
    /// `[N_MELS, frames]` row-major. `frames = FULL_FRAMES` reproduces Whisper exactly; fewer
    /// frames give the same values as the first columns of the full window (the max used by the
    /// clamp comes from the speech, never from the zero padding).
    pub fn compute(&self, samples: &[f32], frames: usize) -> Vec<f32> {
        let n = frames * HOP;
        let mut audio = vec![0.0f32; n];
        let take = samples.len().min(n);
        audio[..take].copy_from_slice(&samples[..take]);

        // Reflect padding of N_FFT/2 on both sides, as torch.stft(center=True) does.
        let pad = N_FFT / 2;
        let mut padded = Vec::with_capacity(n + 2 * pad);
        padded.extend((1..=pad).rev().map(|i| audio[i.min(n - 1)]));
        padded.extend_from_slice(&audio);
        padded.extend((0..pad).map(|i| audio[n.saturating_sub(2 + i)]));

        let mut power = vec![0.0f32; N_BINS];
        let mut frame_buf = self.fft.make_input_vec();
        let mut spec = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut mel = vec![0.0f32; N_MELS * frames];
        // What a frame of silence gives in every band.
        let silent = POWER_FLOOR.log10();
        // Whisper drops the last STFT frame, so exactly `frames` frames remain.
        for t in 0..frames {
            let start = t * HOP;
            // Frames of zero padding (most of a short segment's window) have no power at all:
            // the same floor value as the FFT would give, without it.
            if padded[start..start + N_FFT].iter().all(|&v| v == 0.0) {
                for m in 0..N_MELS {
                    mel[m * frames + t] = silent;
                }
                continue;
            }
            for (i, v) in frame_buf.iter_mut().enumerate() {
                *v = padded[start + i] * self.window[i];
            }
            // Lengths are fixed by construction, so the FFT cannot fail.
            if self.fft.process_with_scratch(&mut frame_buf, &mut spec, &mut scratch).is_err() {
                unreachable!("fixed-size FFT buffers");
            }
            for (p, c) in power.iter_mut().zip(&spec) {
                *p = c.norm_sqr();
            }
            for (m, (first, weights)) in self.filters.iter().enumerate() {
                let e: f32 = weights.iter().zip(&power[*first..]).map(|(w, p)| w * p).sum();
                mel[m * frames + t] = e.max(POWER_FLOOR).log10();
            }
        }
        let max = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut mel {
            *v = (v.max(max - 8.0) + 4.0) / 4.0;
        }
        mel
    }
}

fn hz_to_mel(f: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let logstep = 6.4f64.ln() / 27.0;
    if f < MIN_LOG_HZ { f / F_SP } else { MIN_LOG_HZ / F_SP + (f / MIN_LOG_HZ).ln() / logstep }
}

fn mel_to_hz(m: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if m < min_log_mel { m * F_SP } else { MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp() }
}

/// librosa's `mel(sr, n_fft=400, n_mels=80, htk=False, norm="slaney")`.
fn slaney_filters(sr: f64) -> Vec<f32> {
    let fft_freqs: Vec<f64> = (0..N_BINS).map(|k| k as f64 * sr / N_FFT as f64).collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let mel_f: Vec<f64> = (0..N_MELS + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (N_MELS + 1) as f64)).collect();
    let mut out = vec![0.0f32; N_MELS * N_BINS];
    for m in 0..N_MELS {
        let enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - mel_f[m]) / (mel_f[m + 1] - mel_f[m]);
            let upper = (mel_f[m + 2] - f) / (mel_f[m + 2] - mel_f[m + 1]);
            out[m * N_BINS + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    out
}

/// Frames for a segment under shortened context: the speech plus one second, rounded up to a
/// whole second, never more than Whisper's window.
pub fn frames_for(samples: usize) -> usize {
    let speech = samples.div_ceil(HOP);
    ((speech + 100).div_ceil(100) * 100).min(FULL_FRAMES)
}
