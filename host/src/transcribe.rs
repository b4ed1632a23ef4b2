//! `kiki transcribe FILE...`: files through the same inference core, no Redis involved.

use std::path::Path;

use serde::Serialize;

use crate::audio::{self, SAMPLE_RATE};
use crate::inference::Engine;

#[derive(Debug, Serialize)]
pub struct FileResult {
    pub file: String,
    pub text: String,
    pub duration_ms: u64,
    pub segments: Vec<SegmentOut>,
}

#[derive(Debug, Serialize)]
pub struct SegmentOut {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub avg_logprob: f32,
    pub no_speech_prob: f32,
}

/// Whisper window in samples: files are cut into windows of at most this length.
const WINDOW: usize = 30 * SAMPLE_RATE as usize;

/// Transcribes one file: decoded, resampled to 16 kHz mono, cut into 30 s windows.
pub fn transcribe_file(engine: &Engine, path: &Path) -> anyhow::Result<FileResult> {
    let samples = audio::read_wav(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let windows: Vec<&[f32]> = samples.chunks(WINDOW).collect();
    let results = engine.transcribe(&windows)?;
    let mut segments = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        let start = (i * WINDOW) as u64 * 1000 / SAMPLE_RATE as u64;
        segments.push(SegmentOut {
            start_ms: start,
            end_ms: start + r.duration_ms,
            text: r.text,
            avg_logprob: r.avg_logprob,
            no_speech_prob: r.no_speech_prob,
        });
    }
    let text = segments.iter().map(|s| s.text.as_str()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ");
    Ok(FileResult {
        file: path.display().to_string(),
        text,
        duration_ms: samples.len() as u64 * 1000 / SAMPLE_RATE as u64,
        segments,
    })
}
