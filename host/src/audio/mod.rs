//! Audio in: WAV files, raw PCM frames, and resampling to the model's 16 kHz.

mod resample;
mod wav;

pub use kiki_protocol::pcm::{FrameError, PcmFormat, decode_frame, quantize, s16_to_f32, to_s16le};
pub use resample::{StreamResampler, resample};
pub use wav::{decode_upload, decode_wav, read_wav};

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
    #[error("{seconds:.0} s of audio is longer than the {max_s} s allowed")]
    TooLong { seconds: f64, max_s: u64 },
    #[error("resampler: {0}")]
    Resample(String),
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
}
