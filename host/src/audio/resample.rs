//! Sample-rate conversion with rubato: its synchronous FFT resampler for every common rate, and
//! its sinc resampler for rates whose ratio to 16 kHz reduces to large terms (44,101 Hz, or a
//! hostile header's 10,000,019 Hz). The FFT resampler's buffers grow with the reduced ratio's
//! terms (about 100 bytes per unit: 1 GB at 10 MHz); the sinc resampler's memory is fixed.

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Resampler, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

use super::AudioError;

/// Lowest and highest input rate taken anywhere (files, chunks, streams).
pub const MIN_RATE: u32 = 4_000;
pub const MAX_RATE: u32 = 192_000;

/// Largest reduced-ratio term the FFT resampler is used for (common rates reduce to at most
/// 882: 88.2 kHz → 16 kHz is 441:80 times 2).
const MAX_FFT_TERM: u32 = 1_000;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A resampler from `from` to `to` whose memory does not depend on the rates.
fn make(from: u32, to: u32, chunk: usize, stream: bool) -> Result<Box<dyn Resampler<f32>>, AudioError> {
    if !(MIN_RATE..=MAX_RATE).contains(&from) {
        return Err(AudioError::Unsupported(format!("sample rate {from} Hz is outside {MIN_RATE}..={MAX_RATE}")));
    }
    let g = gcd(from, to);
    let err = |e: rubato::ResamplerConstructionError| AudioError::Resample(e.to_string());
    if from / g <= MAX_FFT_TERM && to / g <= MAX_FFT_TERM {
        let fixed = if stream { FixedSync::Input } else { FixedSync::Both };
        return Ok(Box::new(Fft::<f32>::new(from as usize, to as usize, chunk, 1, fixed).map_err(err)?));
    }
    let params = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2)
        .oversampling_factor(128)
        .interpolation(SincInterpolationType::Cubic);
    let ratio = f64::from(to) / f64::from(from);
    Ok(Box::new(Async::<f32>::new_sinc(ratio, 1.0, &params, chunk, 1, FixedAsync::Input).map_err(err)?))
}

/// Resamples a whole mono clip; returns the input unchanged when the rates match.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut rs = make(from, to, 1024, false)?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| AudioError::Resample(e.to_string()))?;
    let out = rs.process_all(&input, samples.len(), None).map_err(|e| AudioError::Resample(e.to_string()))?;
    Ok(out.take_data())
}

/// Resamples a live stream frame by frame (the gateway's per-session resampler). Input of any
/// size is buffered until a whole resampler chunk is there.
pub struct StreamResampler {
    inner: Option<Box<dyn Resampler<f32>>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        let inner = if from == to { None } else { Some(make(from, to, 320, true)?) };
        Ok(Self { inner, pending: Vec::new(), out_buf: Vec::new() })
    }

    /// Feeds samples; appends what is ready at the target rate to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        let Some(rs) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        self.pending.extend_from_slice(input);
        loop {
            let need = rs.input_frames_next();
            if self.pending.len() < need {
                return Ok(());
            }
            let out_len = rs.output_frames_next();
            self.out_buf.resize(out_len, 0.0);
            let src = InterleavedSlice::new(&self.pending[..need], 1, need)
                .map_err(|e| AudioError::Resample(e.to_string()))?;
            let mut dst = audioadapter_buffers::direct::InterleavedSlice::new_mut(&mut self.out_buf[..], 1, out_len)
                .map_err(|e| AudioError::Resample(e.to_string()))?;
            let (used, made) =
                rs.process_into_buffer(&src, &mut dst, None).map_err(|e| AudioError::Resample(e.to_string()))?;
            out.extend_from_slice(&self.out_buf[..made]);
            self.pending.drain(..used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_and_clip_agree_on_length() {
        let clip: Vec<f32> = (0..48_000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let whole = resample(&clip, 48_000, 16_000).unwrap();
        assert!((whole.len() as i64 - 16_000).abs() <= 2);
        let mut s = StreamResampler::new(48_000, 16_000).unwrap();
        let mut out = Vec::new();
        for chunk in clip.chunks(777) {
            s.push(chunk, &mut out).unwrap();
        }
        // A stream holds back at most one chunk plus the filter delay.
        assert!(out.len() > 15_000 && out.len() <= 16_000, "{}", out.len());
    }

    /// Rates that reduce to large terms take the sinc resampler: the same length, and memory
    /// that does not grow with the rate (the FFT resampler needed ~1 GB for 10,000,019 Hz).
    #[test]
    fn odd_rates_resample_in_fixed_memory_and_absurd_ones_are_refused() {
        for rate in [44_101u32, 191_999, 4_001] {
            let clip: Vec<f32> = (0..rate as usize).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
            let out = resample(&clip, rate, 16_000).unwrap();
            assert!((out.len() as i64 - 16_000).abs() <= 2, "{rate}: {}", out.len());
            let mut s = StreamResampler::new(rate, 16_000).unwrap();
            let mut streamed = Vec::new();
            for chunk in clip.chunks(1000) {
                s.push(chunk, &mut streamed).unwrap();
            }
            assert!(streamed.len() > 15_000 && streamed.len() <= 16_000, "{rate}: {}", streamed.len());
        }
        // A 1 kHz tone survives the odd-rate path (not noise, not silence).
        let tone: Vec<f32> =
            (0..44_101).map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 44_101.0).sin()).collect();
        let out = resample(&tone, 44_101, 16_000).unwrap();
        let rms = (out[2000..14000].iter().map(|v| v * v).sum::<f32>() / 12000.0).sqrt();
        assert!((rms - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.05, "rms {rms}");
        for rate in [1, 3_999, 192_001, 10_000_019] {
            assert!(matches!(resample(&[0.0; 100], rate, 16_000), Err(AudioError::Unsupported(_))), "{rate}");
            assert!(StreamResampler::new(rate, 16_000).is_err(), "{rate}");
        }
    }
}
