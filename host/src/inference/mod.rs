//! The inference core: a batch of 16 kHz mono segments in, transcripts out.
//!
//! Whisper runs through ONNX Runtime (`ort`, loaded dynamically from the library the set-up step
//! installs). The encoder yields the cross-attention keys/values once per segment; the decoder
//! keeps its self-attention cache between steps, so each step costs one token, not the prefix.

mod align;
mod guards;
mod mel;
mod model;
mod runtime;
mod search;
mod silero;
mod tokenizer;
mod whisper;
mod windows;

use std::path::Path;

pub use mel::{FULL_FRAMES, MelFrontEnd, N_MELS, frames_for};
pub use model::ModelInfo;
pub use silero::{CHUNK as SILERO_CHUNK, SileroState, SileroVad};
pub use tokenizer::Tokenizer;
pub use whisper::{Engine, EngineOptions, Request, context_floor, is_unspaced};
pub use windows::{WINDOW, split as split_windows};

/// How the decoder searches and when it retries; Whisper's defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DecodingOptions {
    /// Beam width; 1 is greedy decoding. Requests may ask for their own.
    pub beam_size: usize,
    /// A beam item ends after `beam_size * patience` finished hypotheses.
    pub patience: f32,
    /// Rank hypotheses by log-prob / ((5 + len) / 6) ^ alpha; unset: log-prob / len.
    pub length_penalty: Option<f32>,
    /// Temperatures tried in turn while a segment fails the checks below; the first is used
    /// for every segment (0 = greedy or beam search), the rest sample `best_of` candidates.
    pub temperatures: Vec<f32>,
    pub best_of: usize,
    /// Retry (and in the end drop) text whose zlib compression ratio is above this: loops.
    pub compression_ratio_threshold: f32,
    /// Retry text whose average log-probability is below this.
    pub logprob_threshold: f32,
    /// No text when no-speech is above this and the log-prob is below its threshold.
    pub no_speech_threshold: f32,
    /// English-only models: a window the decoder had to retry at a higher temperature (it
    /// failed `logprob_threshold` or `compression_ratio_threshold` first) and whose best
    /// decoding's average log-probability still stays below this is taken for speech in a
    /// language the model does not transcribe, and gives no text ([`Transcript::foreign`]).
    /// Such a model writes other languages as confident nonsense ("Thank you very much.",
    /// "Do I? 3 -2 -1"); its own failure says so. On tiny.en: 92 of 144 segments of real
    /// Spanish, French, Italian, Russian and Mandarin recordings, and none of 261 of real
    /// English (docs/performance.md). Multilingual models detect the language instead. `-inf`
    /// turns it off. Finals only (a partial ends mid-word, and its log-probability with it).
    pub foreign_logprob_threshold: f32,
    /// Word times from the alignment heads (one more decoder call per batch).
    pub word_timestamps: bool,
    /// Multilingual models: the initial prompt for a language (requested or detected) when the
    /// request gives none. Whisper writes Mandarin in simplified or traditional characters at
    /// random; a simplified sentence before it settles that (on base, real AISHELL-1 speech:
    /// CER 0.385 -> 0.115, docs/performance.md). An empty string turns a language's off.
    pub language_prompts: std::collections::BTreeMap<String, String>,
}

impl Default for DecodingOptions {
    fn default() -> Self {
        Self {
            beam_size: 1,
            patience: 1.0,
            length_penalty: None,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            best_of: 5,
            compression_ratio_threshold: 2.4,
            logprob_threshold: -1.0,
            no_speech_threshold: 0.6,
            foreign_logprob_threshold: -0.9,
            word_timestamps: true,
            language_prompts: [("zh".to_string(), "以下是普通话的句子。".to_string())].into(),
        }
    }
}

/// A word with its place in the segment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct WordTime {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Mean probability of the word's tokens.
    pub probability: f32,
}

/// One recognised segment and the signals that say how far to trust it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Transcript {
    pub text: String,
    pub tokens: Vec<u32>,
    /// Words with times relative to the segment's start (empty when the model has no
    /// alignment heads or word times are off).
    pub words: Vec<WordTime>,
    /// Language code the text was decoded in.
    pub language: String,
    /// Temperature of the accepted decoding (above 0 after a fallback).
    pub temperature: f32,
    /// Mean log-probability of the sampled tokens.
    pub avg_logprob: f32,
    /// Probability the model gave to "no speech" at the start of the segment.
    pub no_speech_prob: f32,
    /// Text bytes over zlib-compressed bytes: high means repetitive, a hallucination sign.
    pub compression_ratio: f32,
    /// Some of the speech did not sound like a language the model transcribes (an English-only
    /// model hearing another language): its text is withheld rather than invented
    /// ([`DecodingOptions::foreign_logprob_threshold`]).
    pub foreign: bool,
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
