//! Sample-rate conversion with rubato's synchronous FFT resampler.

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::AudioError;

/// Resamples a whole mono clip; returns the input unchanged when the rates match.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut rs = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| AudioError::Resample(e.to_string()))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| AudioError::Resample(e.to_string()))?;
    let out = rs.process_all(&input, samples.len(), None).map_err(|e| AudioError::Resample(e.to_string()))?;
    Ok(out.take_data())
}

/// Resamples a live stream frame by frame (the gateway's per-session resampler). Input of any
/// size is buffered until a whole resampler chunk is there.
pub struct StreamResampler {
    inner: Option<Fft<f32>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        let inner = if from == to {
            None
        } else {
            Some(
                Fft::<f32>::new(from as usize, to as usize, 320, 1, FixedSync::Input)
                    .map_err(|e| AudioError::Resample(e.to_string()))?,
            )
        };
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
}
