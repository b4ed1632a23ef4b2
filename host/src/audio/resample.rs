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
    let mut rs = ClipResampler::new(from, to)?;
    let mut out = Vec::with_capacity((samples.len() as u64 * u64::from(to) / u64::from(from.max(1))) as usize + 1);
    rs.push(samples, &mut out)?;
    rs.finish(&mut out)?;
    Ok(out)
}

/// Resamples a whole clip handed over in pieces, with the result `process_all` gives for the
/// clip in one buffer (the filter's delay trimmed, the tail flushed), so a file is resampled
/// while it is decoded, without holding it whole at both rates.
pub struct ClipResampler {
    inner: Option<Box<dyn Resampler<f32>>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
    /// Output frames still to drop: the filter's delay.
    trim: usize,
    taken: usize,
    made: usize,
}

impl ClipResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        Self::with_chunks(from, to, 1024, false)
    }

    /// `stream`: input arrives as it is made and the output is not trimmed of the filter's delay.
    fn with_chunks(from: u32, to: u32, chunk: usize, stream: bool) -> Result<Self, AudioError> {
        let inner = if from == to { None } else { Some(make(from, to, chunk, stream)?) };
        let trim = if stream { 0 } else { inner.as_ref().map_or(0, |rs| rs.output_delay()) };
        Ok(Self { inner, pending: Vec::new(), out_buf: Vec::new(), trim, taken: 0, made: 0 })
    }

    /// Feeds the next samples; appends what is ready to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        self.taken += input.len();
        let Some(need) = self.inner.as_ref().map(|rs| rs.input_frames_next()) else {
            out.extend_from_slice(input);
            return Ok(());
        };
        self.pending.extend_from_slice(input);
        let mut at = 0;
        // Both resampler kinds take a fixed input size per call.
        while self.pending.len() - at >= need {
            at += self.step(at, None, out)?;
        }
        self.pending.drain(..at);
        Ok(())
    }

    /// Flushes the tail: `out` ends with as many samples as the whole clip makes.
    pub fn finish(mut self, out: &mut Vec<f32>) -> Result<(), AudioError> {
        let Some(rs) = self.inner.as_ref() else { return Ok(()) };
        let expected = (rs.resample_ratio() * self.taken as f64).ceil() as usize;
        let tail = self.pending.len();
        self.pending.resize(rs.input_frames_next().max(tail), 0.0);
        let start = out.len();
        self.step(0, Some(tail), out)?;
        while self.made < expected {
            self.step(0, Some(0), out)?;
        }
        // What the zeros pumped in made past the clip's length.
        let excess = self.made - expected;
        out.truncate(out.len().saturating_sub(excess).max(start));
        Ok(())
    }

    /// One resampler call on `pending[at..]` (`partial`: how many of them are real); returns
    /// the input frames used.
    fn step(&mut self, at: usize, partial: Option<usize>, out: &mut Vec<f32>) -> Result<usize, AudioError> {
        let Some(rs) = self.inner.as_mut() else { return Ok(0) };
        let err = |e: &dyn std::fmt::Display| AudioError::Resample(e.to_string());
        let need = rs.input_frames_next();
        let out_len = rs.output_frames_next();
        self.out_buf.resize(out_len, 0.0);
        let src = InterleavedSlice::new(&self.pending[at..at + need], 1, need).map_err(|e| err(&e))?;
        let mut dst = InterleavedSlice::new_mut(&mut self.out_buf[..], 1, out_len).map_err(|e| err(&e))?;
        let indexing = rubato::Indexing { partial_len: partial, ..Default::default() };
        let (used, made) = rs.process_into_buffer(&src, &mut dst, Some(&indexing)).map_err(|e| err(&e))?;
        let skip = self.trim.min(made);
        self.trim -= skip;
        out.extend_from_slice(&self.out_buf[skip..made]);
        self.made += made - skip;
        Ok(used)
    }
}

/// Resamples a live stream frame by frame (the gateway's per-session resampler): the same
/// chunked core as [`ClipResampler`], with smaller chunks and the filter's delay kept (a live
/// session's clock is not shifted), and no tail to flush. Input of any size is buffered until
/// a whole resampler chunk is there.
pub struct StreamResampler(ClipResampler);

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        Ok(Self(ClipResampler::with_chunks(from, to, 320, true)?))
    }

    /// Feeds samples; appends what is ready at the target rate to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        self.0.push(input, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces of any size give what rubato's `process_all` gives for the clip in one buffer.
    #[test]
    fn a_clip_in_pieces_resamples_like_the_clip_whole() {
        for (rate, len) in [(48_000u32, 48_000usize), (8_000, 12_345), (44_101, 30_000), (22_050, 100)] {
            let clip: Vec<f32> = (0..len).map(|i| (i as f32 * 0.013).sin() * 0.5).collect();
            let mut rs = make(rate, 16_000, 1024, false).unwrap();
            let input = InterleavedSlice::new(&clip[..], 1, clip.len()).unwrap();
            let whole = rs.process_all(&input, clip.len(), None).unwrap().take_data();
            for piece in [1usize, 333, 4096, len] {
                let mut c = ClipResampler::new(rate, 16_000).unwrap();
                let mut out = Vec::new();
                for p in clip.chunks(piece) {
                    c.push(p, &mut out).unwrap();
                }
                c.finish(&mut out).unwrap();
                assert_eq!(out.len(), whole.len(), "{rate} Hz in pieces of {piece}");
                let worst = out.iter().zip(&whole).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(worst < 1e-4, "{rate} Hz in pieces of {piece}: {worst}");
            }
        }
    }

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
