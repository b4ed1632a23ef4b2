//! The inference core: a batch of 16 kHz mono segments in, transcripts out.
//!
//! Whisper runs through ONNX Runtime (`ort`, loaded dynamically from the library the set-up step
//! installs). The encoder yields the cross-attention keys/values once per segment; the decoder
//! keeps its self-attention cache between steps, so each step costs one token, not the prefix.

mod mel;
mod model;
mod tokenizer;
mod whisper;

use std::path::Path;

pub use mel::{FULL_FRAMES, MelFrontEnd, N_MELS, frames_for};
pub use model::ModelInfo;
pub use tokenizer::Tokenizer;
pub use whisper::{Engine, EngineOptions};

/// One recognised segment and the signals that say how far to trust it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Transcript {
    pub text: String,
    pub tokens: Vec<u32>,
    /// Mean log-probability of the sampled tokens.
    pub avg_logprob: f32,
    /// Probability the model gave to "no speech" at the start of the segment.
    pub no_speech_prob: f32,
    /// Text bytes over zlib-compressed bytes: high means repetitive, a hallucination sign.
    pub compression_ratio: f32,
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("model file {path}: {reason}. Run `make setup` (or scripts/setup.sh) to install and convert the model")]
    Missing { path: String, reason: String },
    #[error("model file {path} is corrupt or incompatible: {reason}. Delete it and run `make setup` again")]
    Corrupt { path: String, reason: String },
    #[error("ONNX Runtime: {0}")]
    Runtime(#[from] ort::Error),
    #[error("ONNX Runtime library {path} could not be loaded: {reason}. Run `make setup`, or set model.ort_library")]
    Library { path: String, reason: String },
    #[error("bad input: {0}")]
    Input(String),
    #[error(
        "execution provider: {0}. CUDA needs model.ort_library pointing at the GPU build of ONNX Runtime 1.31 (PyPI onnxruntime-gpu) and an NVIDIA driver; or set model.provider = \"cpu\""
    )]
    Provider(String),
}

impl InferenceError {
    fn model_file(path: &Path, e: std::io::Error) -> Self {
        InferenceError::Missing { path: path.display().to_string(), reason: e.to_string() }
    }
}

/// zlib compression ratio of a text, as Whisper computes it for its repetition check.
pub fn compression_ratio(text: &str) -> f32 {
    use std::io::Write;
    if text.is_empty() {
        return 0.0;
    }
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let compressed = enc.write_all(text.as_bytes()).and_then(|_| enc.finish()).map(|v| v.len()).unwrap_or(1);
    text.len() as f32 / compressed.max(1) as f32
}
