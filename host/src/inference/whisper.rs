//! Whisper encoder + decoder sessions and batched greedy decoding with a KV cache.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor};

use super::mel::{FULL_FRAMES, HOP, MelFrontEnd, N_MELS, frames_for};
use super::model::ModelInfo;
use super::tokenizer::Tokenizer;
use super::{InferenceError, Transcript, compression_ratio};

/// Whisper's window, in samples; longer segments are split into windows, never cut short.
const WINDOW: usize = FULL_FRAMES * HOP;
/// Shorter than this is not speech worth a model call (100 ms).
const MIN_SAMPLES: usize = 1_600;
/// Below this RMS (about -60 dBFS) a segment is silence: no model call, no text.
const SILENCE_RMS: f32 = 1e-3;
/// Least share of energy above 250 Hz for a segment to be worth a model call.
const MIN_SPEECH_BAND: f32 = 0.1;
/// Whisper's rule: a segment is non-speech when no-speech is likely AND the text is unlikely.
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOGPROB_THRESHOLD: f32 = -1.0;
/// Whisper's repetition check.
const COMPRESSION_THRESHOLD: f32 = 2.4;

#[cfg(test)]
mod tests {
    use super::is_looping;

    #[test]
    fn loops_are_detected_and_speech_is_not() {
        assert!(is_looping(&[7; 8]));
        assert!(!is_looping(&[7; 7]));
        let phrase = [1, 2, 3, 4, 5, 6];
        let looped: Vec<u32> = phrase.iter().cycle().take(30).copied().collect();
        assert!(is_looping(&looped));
        assert!(!is_looping(&(0..200).collect::<Vec<u32>>()));
        // "no, no, no, no" said once is fine.
        assert!(!is_looping(&[5, 9, 5, 9, 5, 9, 5, 9, 1]));
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub model_dir: PathBuf,
    /// `fp32` or `int8`.
    pub precision: String,
    pub ort_library: PathBuf,
    pub threads: usize,
    /// Shorten the encoder context to the segment (whisper.cpp's audio-ctx) instead of 30 s.
    pub short_context: bool,
    pub max_tokens: usize,
    /// `cpu` or `cuda`.
    pub provider: String,
}

impl EngineOptions {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self {
            model_dir: cfg.model_dir(),
            precision: cfg.model.precision.clone(),
            ort_library: cfg.ort_library(),
            threads: cfg.model.threads,
            short_context: cfg.model.audio_ctx != "full",
            max_tokens: cfg.model.max_tokens,
            provider: cfg.model.provider.clone(),
        }
    }
}

pub struct Engine {
    info: ModelInfo,
    tokenizer: Tokenizer,
    mel: MelFrontEnd,
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
    opts: EngineOptions,
}

/// ONNX Runtime allows one environment per process; every engine shares it.
static ORT_ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn environment(library: &Path) -> Result<&'static ort::environment::Environment, InferenceError> {
    let lib_err = |reason: String| InferenceError::Library { path: library.display().to_string(), reason };
    if !library.exists() {
        return Err(lib_err("file not found".into()));
    }
    ORT_ENV
        .get_or_init(|| {
            ort::init_from(library).map_err(|e| e.to_string())?.with_name("kiki").build().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| lib_err(e.clone()))
}

impl Engine {
    pub fn load(opts: EngineOptions) -> Result<Self, InferenceError> {
        let env = environment(&opts.ort_library)?;
        let info = ModelInfo::load(&opts.model_dir)?;
        let tokenizer = Tokenizer::load(&opts.model_dir.join("vocabulary.txt"), info.eot)?;
        if !matches!(opts.provider.as_str(), "cpu" | "cuda") {
            return Err(InferenceError::Provider(format!("unknown provider {:?} (cpu or cuda)", opts.provider)));
        }
        let suffix = match opts.precision.as_str() {
            "fp32" => "",
            "int8" => ".int8",
            other => return Err(InferenceError::Input(format!("precision must be fp32 or int8, not {other:?}"))),
        };
        let open = |name: &str| -> Result<Session, InferenceError> {
            let path = opts.model_dir.join(format!("{name}{suffix}.onnx"));
            if !path.exists() {
                return Err(InferenceError::Missing { path: path.display().to_string(), reason: "not found".into() });
            }
            let mut builder = Session::builder(env)?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(ort::Error::from)?;
            if opts.provider == "cuda" {
                // Registration errors surface here: never a silent fall-back to the CPU.
                builder = builder
                    .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                    .map_err(|e| InferenceError::Provider(format!("CUDA could not be loaded: {e}")))?;
            }
            if opts.threads > 0 {
                builder = builder.with_intra_threads(opts.threads).map_err(ort::Error::from)?;
            }
            builder
                .commit_from_file(&path)
                .map_err(|e| InferenceError::Corrupt { path: path.display().to_string(), reason: e.to_string() })
        };
        let encoder = open("encoder")?;
        let decoder = open("decoder")?;
        Ok(Self {
            info,
            tokenizer,
            mel: MelFrontEnd::new(),
            encoder: Mutex::new(encoder),
            decoder: Mutex::new(decoder),
            opts,
        })
    }

    /// Fails for a language the model cannot transcribe (an English-only model and anything
    /// but English).
    pub fn check_language(&self, language: Option<&str>) -> Result<(), InferenceError> {
        match language {
            None | Some("") | Some("en") | Some("auto") => Ok(()),
            Some(other) if !self.info.multilingual => {
                Err(InferenceError::Input(format!("model is English-only; cannot transcribe language {other:?}")))
            }
            Some(_) => Ok(()),
        }
    }

    /// Transcribes a batch of 16 kHz mono segments with one encoder call per 30 s window column.
    /// Segments longer than 30 s are split into windows whose texts are joined.
    pub fn transcribe(&self, segments: &[&[f32]]) -> Result<Vec<Transcript>, InferenceError> {
        // Flatten to windows, remembering which segment each came from.
        let mut windows: Vec<(usize, &[f32])> = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            for w in seg.chunks(WINDOW) {
                windows.push((i, w));
            }
        }
        let mut results: Vec<Transcript> = segments
            .iter()
            .map(|s| Transcript { duration_ms: s.len() as u64 * 1000 / 16_000, ..Default::default() })
            .collect();
        let live: Vec<(usize, &[f32])> = windows.into_iter().filter(|(_, w)| is_audible(w)).collect();
        if live.is_empty() {
            return Ok(results);
        }
        let decoded = self.run_windows(&live.iter().map(|(_, w)| *w).collect::<Vec<_>>())?;
        let mut parts: Vec<Vec<Transcript>> = vec![Vec::new(); segments.len()];
        for ((seg, _), t) in live.iter().zip(decoded) {
            parts[*seg].push(t);
        }
        for (res, parts) in results.iter_mut().zip(parts) {
            if parts.is_empty() {
                continue;
            }
            let n = parts.len() as f32;
            res.text = parts.iter().map(|p| p.text.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ");
            res.tokens = parts.iter().flat_map(|p| p.tokens.iter().copied()).collect();
            res.avg_logprob = parts.iter().map(|p| p.avg_logprob).sum::<f32>() / n;
            res.no_speech_prob = parts.iter().map(|p| p.no_speech_prob).fold(0.0, f32::max);
            res.compression_ratio = compression_ratio(&res.text);
        }
        Ok(results)
    }

    /// Encodes and decodes up to one window per row.
    fn run_windows(&self, windows: &[&[f32]]) -> Result<Vec<Transcript>, InferenceError> {
        let batch = windows.len();
        let frames = if self.opts.short_context {
            windows.iter().map(|w| frames_for(w.len())).max().unwrap_or(FULL_FRAMES)
        } else {
            FULL_FRAMES
        };
        let mut mel = Vec::with_capacity(batch * N_MELS * frames);
        for w in windows {
            mel.extend(self.mel.compute(w, frames));
        }
        let mel = Tensor::from_array(([batch, N_MELS, frames], mel))?;
        // Every encoder output is a cross-attention key/value tensor that the decoder takes by the
        // same name (`cross_k`/`cross_v` stacked, or one per layer); their layout is the graph's.
        let cross: Vec<(String, DynValue)> = {
            let mut enc = self.encoder.lock().map_err(|_| InferenceError::Input("encoder poisoned".into()))?;
            let names: Vec<String> = enc.outputs().iter().map(|o| o.name().to_string()).collect();
            let mut out = enc.run(ort::inputs!["mel" => mel])?;
            names.into_iter().filter_map(|n| out.remove(&n).map(|v| (n, v))).collect()
        };
        self.greedy(batch, &cross, windows)
    }

    fn prompt(&self) -> Vec<u32> {
        let mut p = vec![self.info.sot];
        if self.info.multilingual
            && let Some(t) = self.info.transcribe
        {
            // English until language selection lands; the multilingual token layout puts
            // the language right after <|startoftranscript|>.
            p.push(self.info.sot + 1);
            p.push(t);
        }
        p.push(self.info.no_timestamps);
        p
    }

    fn greedy(
        &self,
        batch: usize,
        cross: &[(String, DynValue)],
        windows: &[&[f32]],
    ) -> Result<Vec<Transcript>, InferenceError> {
        let info = &self.info;
        let (layers, state) = (info.n_text_layer, info.n_state);
        let prompt = self.prompt();
        let max_tokens = self.opts.max_tokens.min(info.n_text_ctx / 2);
        let mut step_tokens: Vec<i64> = prompt.iter().map(|&t| t as i64).cycle().take(batch * prompt.len()).collect();
        let mut step_len = prompt.len();
        let mut self_k: DynValue = Tensor::from_array(([layers, batch, 0, state], Vec::<f32>::new()))?.into_dyn();
        let mut self_v: DynValue = Tensor::from_array(([layers, batch, 0, state], Vec::<f32>::new()))?.into_dyn();
        let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); batch];
        let mut sum_lp = vec![0.0f32; batch];
        let mut done = vec![false; batch];
        let mut no_speech = vec![0.0f32; batch];
        let mut dec = self.decoder.lock().map_err(|_| InferenceError::Input("decoder poisoned".into()))?;
        for step in 0..max_tokens {
            let tok = Tensor::from_array(([batch, step_len], std::mem::take(&mut step_tokens)))?;
            let mut inputs = ort::inputs![
                "tokens" => tok,
                "self_k" => self_k,
                "self_v" => self_v,
            ];
            inputs.extend(cross.iter().map(|(n, v)| (n.as_str().into(), v.into())));
            let mut out = dec.run(inputs)?;
            let (shape, logits) = out["logits"].try_extract_tensor::<f32>()?;
            let vocab = shape[2] as usize;
            for b in 0..batch {
                if step == 0 {
                    let row = &logits[(b * step_len) * vocab..(b * step_len + 1) * vocab];
                    no_speech[b] = softmax_at(row, info.no_speech as usize);
                }
                let base = (b * step_len + step_len - 1) * vocab;
                let mut row = logits[base..base + vocab].to_vec();
                self.suppress(&mut row, step == 0);
                let (next, lp) = argmax_logprob(&row);
                if done[b] {
                    step_tokens.push(info.eot as i64);
                    continue;
                }
                sum_lp[b] += lp;
                if next as u32 == info.eot {
                    done[b] = true;
                } else {
                    tokens[b].push(next as u32);
                    // A row stuck in a loop would hold its whole batch to the length bound;
                    // its text is discarded by the compression check anyway.
                    if is_looping(&tokens[b]) {
                        done[b] = true;
                    }
                }
                step_tokens.push(next as i64);
            }
            self_k =
                out.remove("new_self_k").ok_or_else(|| InferenceError::Input("decoder gave no new_self_k".into()))?;
            self_v =
                out.remove("new_self_v").ok_or_else(|| InferenceError::Input("decoder gave no new_self_v".into()))?;
            step_len = 1;
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok((0..batch)
            .map(|b| {
                let text = self.tokenizer.decode(&tokens[b]).trim().to_string();
                let avg_logprob = sum_lp[b] / (tokens[b].len() + 1) as f32;
                let ratio = compression_ratio(&text);
                let silent = (no_speech[b] > NO_SPEECH_THRESHOLD && avg_logprob < LOGPROB_THRESHOLD)
                    || ratio > COMPRESSION_THRESHOLD;
                Transcript {
                    text: if silent { String::new() } else { text },
                    tokens: if silent { Vec::new() } else { tokens[b].clone() },
                    avg_logprob,
                    no_speech_prob: no_speech[b],
                    compression_ratio: ratio,
                    duration_ms: windows[b].len() as u64 * 1000 / 16_000,
                }
            })
            .collect())
    }

    /// Masks tokens that must not be sampled: the non-speech list, every special token other
    /// than end-of-text (timestamps are off), and, at the first step, a blank or an immediate end.
    fn suppress(&self, row: &mut [f32], first: bool) {
        let info = &self.info;
        for &t in &info.suppress_tokens {
            if let Some(v) = row.get_mut(t as usize) {
                *v = f32::NEG_INFINITY;
            }
        }
        for v in row.iter_mut().skip(info.eot as usize + 1) {
            *v = f32::NEG_INFINITY;
        }
        if first {
            for &t in &info.suppress_blank {
                if let Some(v) = row.get_mut(t as usize) {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// Cheap gates before the model: too short, too quiet, or no energy above 250 Hz (mains hum
/// and rumble, on which Whisper likes to hallucinate "you").
fn is_audible(w: &[f32]) -> bool {
    if w.len() < MIN_SAMPLES {
        return false;
    }
    let total: f32 = w.iter().map(|s| s * s).sum();
    let rms = (total / w.len() as f32).sqrt();
    if rms < SILENCE_RMS {
        return false;
    }
    // One-pole high-pass at ~250 Hz: speech keeps most of its energy, a 50 Hz hum keeps ~4%.
    let a = 1.0 / (1.0 + 2.0 * std::f32::consts::PI * 250.0 / 16_000.0);
    let (mut y, mut prev, mut high) = (0.0f32, 0.0f32, 0.0f32);
    for &x in w {
        y = a * (y + x - prev);
        prev = x;
        high += y * y;
    }
    high / total >= MIN_SPEECH_BAND
}

/// True when the sequence ends in the same n-gram (n = 2..=12) repeated at least 5 times, or one
/// token 8 times: Whisper's repetition failure, not speech.
fn is_looping(tokens: &[u32]) -> bool {
    (1..=12).any(|n| {
        let reps = if n == 1 { 8 } else { 5 };
        tokens.len() >= n * reps && {
            let tail = &tokens[tokens.len() - n..];
            (1..reps).all(|r| &tokens[tokens.len() - n * (r + 1)..tokens.len() - n * r] == tail)
        }
    })
}

fn softmax_at(row: &[f32], idx: usize) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
    row.get(idx).map(|v| (v - max).exp() / sum).unwrap_or(0.0)
}

/// Index of the largest logit and its log-probability.
fn argmax_logprob(row: &[f32]) -> (usize, f32) {
    let (mut best, mut max) = (0, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if v > max {
            best = i;
            max = v;
        }
    }
    let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
    (best, max - lse)
}
