//! `kiki transcribe FILE...`: files through the same inference core, no Redis involved.

use std::path::Path;

use serde::Serialize;

use crate::audio::{self, samples_to_ms as ms};
use crate::inference::{Engine, Request, WordTime, is_unspaced, split_windows};
use crate::longform::cue_ranges;

#[derive(Debug, Serialize)]
pub struct FileResult {
    pub file: String,
    pub text: String,
    pub duration_ms: u64,
    pub language: String,
    pub segments: Vec<SegmentOut>,
    /// Some speech was in a language the model does not transcribe; its text was withheld.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unsupported_language: bool,
}

#[derive(Debug, Serialize)]
pub struct SegmentOut {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub avg_logprob: f32,
    pub no_speech_prob: f32,
    /// Temperature of the accepted decoding (above 0 after a fallback).
    pub temperature: f32,
    pub compression_ratio: f32,
    pub words: Vec<WordTime>,
}

/// Per-file choices.
#[derive(Debug, Clone, Default)]
pub struct FileOptions {
    pub language: Option<String>,
    pub prompt: Option<String>,
    pub beam_size: Option<usize>,
    /// Windows per model call.
    pub batch: usize,
    pub progress: bool,
}

/// Transcribes one file: decoded, resampled to 16 kHz mono, cut into windows of at most 30 s
/// at pauses, decoded a batch of windows at a time. With word times, segments are
/// subtitle-sized runs of words ([`crate::longform::cue_ranges`]); without, one per window.
pub fn transcribe_file(engine: &Engine, path: &Path, opts: &FileOptions) -> anyhow::Result<FileResult> {
    let samples = audio::read_wav(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let windows = split_windows(&samples);
    let total_ms = ms(samples.len());
    let bar = if opts.progress && windows.len() > 1 {
        let bar = indicatif::ProgressBar::new(total_ms / 1000);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} s, {elapsed} elapsed, eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(path.display().to_string());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut segments = Vec::new();
    let mut language = opts.language.clone().unwrap_or_else(|| "en".into());
    let mut foreign = false;
    for batch in windows.chunks(opts.batch.max(1)) {
        let requests: Vec<Request> = batch
            .iter()
            .map(|r| Request {
                audio: &samples[r.clone()],
                language: opts.language.as_deref(),
                prompt: opts.prompt.as_deref(),
                beam_size: opts.beam_size,
                ..Default::default()
            })
            .collect();
        for (range, r) in batch.iter().zip(engine.transcribe_requests(&requests)?) {
            let start = ms(range.start);
            language = r.language.clone();
            foreign |= r.foreign;
            let words: Vec<WordTime> = r
                .words
                .into_iter()
                .map(|w| WordTime { start_ms: w.start_ms + start, end_ms: w.end_ms + start, ..w })
                .collect();
            if words.is_empty() {
                segments.push(SegmentOut {
                    start_ms: start,
                    end_ms: start + r.duration_ms,
                    text: r.text,
                    avg_logprob: r.avg_logprob,
                    no_speech_prob: r.no_speech_prob,
                    temperature: r.temperature,
                    compression_ratio: r.compression_ratio,
                    words,
                });
                continue;
            }
            let sep = if is_unspaced(&r.language) { "" } else { " " };
            for range in cue_ranges(&words, |w| (w.text.as_str(), w.start_ms, w.end_ms)) {
                let cue = &words[range];
                segments.push(SegmentOut {
                    start_ms: cue.first().map_or(start, |w| w.start_ms),
                    end_ms: cue.last().map_or(start, |w| w.end_ms),
                    text: cue.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(sep),
                    avg_logprob: r.avg_logprob,
                    no_speech_prob: r.no_speech_prob,
                    temperature: r.temperature,
                    compression_ratio: r.compression_ratio,
                    words: cue.to_vec(),
                });
            }
        }
        bar.set_position(batch.last().map_or(0, |r| ms(r.end) / 1000));
    }
    bar.finish_and_clear();
    let sep = if is_unspaced(&language) { "" } else { " " };
    let text = segments.iter().map(|s| s.text.as_str()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(sep);
    Ok(FileResult {
        file: path.display().to_string(),
        text,
        duration_ms: total_ms,
        language,
        segments,
        unsupported_language: foreign,
    })
}
