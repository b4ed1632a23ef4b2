//! Audio in: WAV files, raw PCM frames, and resampling to the model's 16 kHz.

mod pcm;
mod resample;
mod wav;

pub use pcm::{PcmFormat, decode_frame};
pub use resample::{StreamResampler, resample};
pub use wav::{decode_wav, read_wav};

/// The rate every model and plugin sees.
pub const SAMPLE_RATE: u32 = 16_000;

/// Milliseconds spanned by `samples` at [`SAMPLE_RATE`].
pub fn samples_to_ms(samples: usize) -> u64 {
    samples as u64 * 1000 / SAMPLE_RATE as u64
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("not a WAV file: {0}")]
    NotWav(String),
    #[error("empty audio")]
    Empty,
    #[error("unsupported audio: {0}")]
    Unsupported(String),
    #[error("frame of {len} bytes is not a whole number of {width}-byte samples")]
    Misaligned { len: usize, width: usize },
    #[error("resampler: {0}")]
    Resample(String),
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Converts f32 samples in [-1, 1] to little-endian s16 bytes (the task channel's format).
pub fn to_s16le(samples: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
