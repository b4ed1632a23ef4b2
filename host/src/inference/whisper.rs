//! The Whisper engine: encoder + decoder sessions, batched decoding with a KV cache (greedy,
//! beam search, temperature fallback), prompts, language detection and word times.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor};

use super::align::{self, WordTokens};
use super::guards;
use super::mel::{FULL_FRAMES, MelFrontEnd, N_MELS, frames_for};
use super::model::ModelInfo;
use super::search::{Candidate, Mode, Search, log_sum_exp, softmax_at};
use super::tokenizer::Tokenizer;
use super::windows;
use super::{DecodingOptions, InferenceError, Transcript, WordTime, compression_ratio};
use crate::audio::samples_to_ms as ms;

/// Shorter than this is not speech worth a model call (100 ms).
const MIN_SAMPLES: usize = 1_600;
/// Below this RMS (about -60 dBFS) a segment is silence: no model call, no text.
const SILENCE_RMS: f32 = 1e-3;
/// Least share of energy above 250 Hz for a segment to be worth a model call.
const MIN_SPEECH_BAND: f32 = 0.1;
/// Samples per encoder frame (20 ms).
const SAMPLES_PER_FRAME: usize = 320;
/// Languages written without spaces: a "word" is the characters of one token.
const UNSPACED: [&str; 6] = ["zh", "ja", "th", "lo", "my", "yue"];

/// True for a language written without spaces between words (its "words" are characters).
pub fn is_unspaced(language: &str) -> bool {
    UNSPACED.contains(&language)
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub model_dir: PathBuf,
    /// `fp32` or `int8`.
    pub precision: String,
    pub ort_library: PathBuf,
    pub threads: usize,
    /// Encoder context: `None` for Whisper's full 30 s window; `Some(floor)` to shorten it to
    /// the segment (whisper.cpp's audio-ctx) but not below `floor` mel frames (100 per second).
    pub short_context: Option<usize>,
    /// The same for partial requests.
    pub partial_short_context: Option<usize>,
    pub max_tokens: usize,
    /// `cpu` or `cuda`.
    pub provider: String,
    pub decoding: DecodingOptions,
}

/// `full` → `None`; `auto` → `Some(0)`; a number of seconds → shortened, but not below it.
pub fn context_floor(setting: &str) -> Option<usize> {
    match setting {
        "full" => None,
        "auto" => Some(0),
        secs => match secs.parse::<f32>() {
            Ok(s) => Some((s.clamp(0.0, 30.0) * 100.0) as usize),
            Err(_) => {
                tracing::warn!("audio context {setting:?} is not full, auto or seconds; using full");
                None
            }
        },
    }
}

/// One piece of audio to transcribe, with its per-request choices.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// 16 kHz mono samples; longer than 30 s is cut into windows at pauses.
    pub audio: &'a [f32],
    /// Language code; `None` or `auto`: English on an English-only model, detected otherwise.
    pub language: Option<&'a str>,
    /// Text that conditions decoding (Whisper's initial prompt): context, names, hotwords.
    pub prompt: Option<&'a str>,
    /// Beam width for this request (`None`: the configured one).
    pub beam_size: Option<usize>,
    /// A provisional result that must be quick: greedy, no temperature fallback, no word times.
    pub partial: bool,
    /// Whisper's `translate` task (English text from speech in any language; multilingual
    /// models only): no word times, since the words are not the ones spoken.
    pub translate: bool,
}

pub struct Engine {
    info: ModelInfo,
    tokenizer: Tokenizer,
    mel: MelFrontEnd,
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
    /// The decoder graph gives the alignment heads' attention (`cross_qk`).
    aligns: bool,
    /// `decoding.language_prompts`, tokenised, by language token.
    language_prompts: std::collections::HashMap<u32, Vec<u32>>,
    opts: EngineOptions,
}

/// One audio window: which request it belongs to and where it lies in that request's audio.
struct Window {
    request: usize,
    range: Range<usize>,
}

/// Windows decode together when they share language token, prompt tokens, beam width and
/// partial-ness (which sets the temperatures tried).
type GroupKey = (Prefix, Vec<u32>, usize, bool);

/// What the decoder's prompt says after `<|startoftranscript|>`: the language token and the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Prefix {
    lang: Option<u32>,
    translate: bool,
}

/// What decoding one window gave.
#[derive(Debug, Clone)]
struct Decoded {
    best: Candidate,
    /// The best candidate's text, trimmed, and its zlib compression ratio.
    text: String,
    compression_ratio: f32,
    no_speech: f32,
    temperature: f32,
}

/// The encoder's cross-attention keys/values for a batch of windows, handed to the decoder by
/// name, one entry per window: the decoder's rows of a window (its beams or samples) follow one
/// another and share that window's entry.
struct CrossKv {
    tensors: Vec<(String, DynValue)>,
    batch: usize,
}

impl CrossKv {
    /// The tensors of windows `windows` (in order), or `None` when that is the batch itself and
    /// the encoder's output can be used as it is.
    fn for_windows(&self, windows: &[usize]) -> Result<Option<Vec<(String, DynValue)>>, InferenceError> {
        if windows.len() == self.batch && windows.iter().enumerate().all(|(i, &w)| i == w) {
            return Ok(None);
        }
        self.tensors
            .iter()
            .map(|(name, v)| {
                // Per-layer tensors are [B, ...] (rank 4); stacked ones [layers, B, ...].
                let rank = v.try_extract_tensor::<f32>()?.0.len();
                Ok((name.clone(), gather(v, rank.saturating_sub(4), windows)?))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// Copies the slices `rows` of `value` along `axis` into a new tensor.
fn gather(value: &DynValue, axis: usize, rows: &[usize]) -> Result<DynValue, InferenceError> {
    let (shape, data) = value.try_extract_tensor::<f32>()?;
    let mut dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let outer: usize = dims[..axis].iter().product();
    let inner: usize = dims[axis + 1..].iter().product();
    let n = dims[axis];
    let mut out = Vec::with_capacity(outer * rows.len() * inner);
    for o in 0..outer {
        for &r in rows {
            let start = (o * n + r) * inner;
            out.extend_from_slice(&data[start..start + inner]);
        }
    }
    dims[axis] = rows.len();
    Ok(Tensor::from_array((dims, out))?.into_dyn())
}

impl Engine {
    pub fn load(opts: EngineOptions) -> Result<Self, InferenceError> {
        let (env, shared_pool) = super::runtime::environment(&opts.ort_library, opts.threads)?;
        let info = ModelInfo::load(&opts.model_dir)?;
        let tokenizer = Tokenizer::load(&opts.model_dir.join("vocabulary.txt"), info.eot)?;
        if !matches!(opts.provider.as_str(), "cpu" | "cuda") {
            return Err(InferenceError::Provider(format!("unknown provider {:?} (cpu or cuda)", opts.provider)));
        }
        let d = &opts.decoding;
        if d.temperatures.is_empty() || d.temperatures.iter().any(|t| !(0.0..=2.0).contains(t)) {
            return Err(InferenceError::Input("decoding.temperatures must hold values in 0..=2".into()));
        }
        if d.beam_size == 0 || d.beam_size > 32 || d.best_of == 0 || d.best_of > 32 {
            return Err(InferenceError::Input("decoding.beam_size and best_of must be in 1..=32".into()));
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
            if !shared_pool {
                // The process's pool was sized for another engine: a pool of this session's
                // own, not spinning, so that it does not take the cores from the other pools.
                builder = builder.with_independent_thread_pool().map_err(ort::Error::from)?;
                builder = builder.with_intra_threads(opts.threads).map_err(ort::Error::from)?;
                builder = builder.with_intra_op_spinning(false).map_err(ort::Error::from)?;
            }
            builder
                .commit_from_file(&path)
                .map_err(|e| InferenceError::Corrupt { path: path.display().to_string(), reason: e.to_string() })
        };
        let encoder = open("encoder")?;
        let decoder = open("decoder")?;
        let aligns = !info.alignment_heads.is_empty() && decoder.outputs().iter().any(|o| o.name() == "cross_qk");
        let language_prompts = d
            .language_prompts
            .iter()
            .filter(|(_, p)| !p.trim().is_empty())
            .filter_map(|(code, p)| Some((*info.languages.get(code)?, tokenizer.encode(p.trim()))))
            .collect();
        Ok(Self {
            info,
            tokenizer,
            language_prompts,
            mel: MelFrontEnd::new(),
            encoder: Mutex::new(encoder),
            decoder: Mutex::new(decoder),
            aligns,
            opts,
        })
    }

    pub fn multilingual(&self) -> bool {
        self.info.multilingual
    }

    /// The language codes the model transcribes (what [`Self::check_language`] accepts besides
    /// "auto"); `None` for a multilingual model that does not list them.
    pub fn supported_languages(&self) -> Option<Vec<String>> {
        if !self.info.multilingual {
            Some(vec!["en".to_string()])
        } else if self.info.languages.is_empty() {
            None
        } else {
            Some(self.info.languages.keys().cloned().collect())
        }
    }

    /// Fails for a language the model cannot transcribe: anything but English on an
    /// English-only model, or a code a multilingual model does not know.
    pub fn check_language(&self, language: Option<&str>) -> Result<(), InferenceError> {
        match language {
            None | Some("") | Some("auto") | Some("en") => Ok(()),
            Some(other) if !self.info.multilingual => {
                Err(InferenceError::Input(format!("model is English-only; cannot transcribe language {other:?}")))
            }
            Some(code) if self.info.languages.is_empty() || self.info.languages.contains_key(code) => Ok(()),
            Some(code) => Err(InferenceError::Input(format!(
                "unknown language {code:?}; this model knows {}",
                self.info.languages.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Transcribes a batch of 16 kHz mono segments with the configured options.
    pub fn transcribe(&self, segments: &[&[f32]]) -> Result<Vec<Transcript>, InferenceError> {
        let requests: Vec<Request> = segments.iter().map(|&audio| Request { audio, ..Default::default() }).collect();
        self.transcribe_requests(&requests)
    }

    /// Transcribes a batch of requests with one encoder call. Segments longer than 30 s are cut
    /// into windows at pauses; windows that share language, prompt and beam width decode together.
    /// Partials and finals are encoded apart, each with its own context length.
    pub fn transcribe_requests(&self, requests: &[Request]) -> Result<Vec<Transcript>, InferenceError> {
        for r in requests {
            self.check_language(r.language)?;
            if r.translate && (!self.info.multilingual || self.info.translate.is_none()) {
                return Err(InferenceError::Input(
                    "model is English-only; translation needs a multilingual Whisper model".into(),
                ));
            }
        }
        let partial: Vec<bool> = requests.iter().map(|r| r.partial).collect();
        if partial.iter().all(|&p| p) || partial.iter().all(|&p| !p) {
            let short =
                if partial.first() == Some(&true) { self.opts.partial_short_context } else { self.opts.short_context };
            return self.transcribe_set(requests, short);
        }
        let (parts, finals): (Vec<Request>, Vec<Request>) = requests.iter().partition(|r| r.partial);
        let mut parts = self.transcribe_set(&parts, self.opts.partial_short_context)?.into_iter();
        let mut finals = self.transcribe_set(&finals, self.opts.short_context)?.into_iter();
        Ok(partial.iter().filter_map(|&p| if p { parts.next() } else { finals.next() }).collect())
    }

    fn transcribe_set(
        &self,
        requests: &[Request],
        short_context: Option<usize>,
    ) -> Result<Vec<Transcript>, InferenceError> {
        let windows: Vec<Window> = requests
            .iter()
            .enumerate()
            .flat_map(|(request, r)| windows::split(r.audio).into_iter().map(move |range| Window { request, range }))
            .filter(|w| is_audible(&requests[w.request].audio[w.range.clone()]))
            .collect();
        let mut results: Vec<Transcript> = requests
            .iter()
            .map(|r| Transcript {
                duration_ms: ms(r.audio.len()),
                language: r.language.filter(|l| !l.is_empty() && *l != "auto").unwrap_or("en").to_string(),
                ..Default::default()
            })
            .collect();
        if windows.is_empty() {
            return Ok(results);
        }
        let audio: Vec<&[f32]> = windows.iter().map(|w| &requests[w.request].audio[w.range.clone()]).collect();
        let cross = self.encode(&audio, short_context)?;
        let seconds: Vec<f32> = audio.iter().map(|a| a.len() as f32 / crate::audio::SAMPLE_RATE as f32).collect();
        let langs = self.languages(&cross, &windows, requests)?;
        let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
        for (i, w) in windows.iter().enumerate() {
            let r = &requests[w.request];
            // The session's prompt, else its language's (not for translations, which write English).
            let prompt = match r.prompt {
                Some(p) => self.tokenizer.encode(p.trim()),
                None if !r.translate => {
                    langs[i].and_then(|l| self.language_prompts.get(&l)).cloned().unwrap_or_default()
                }
                None => Vec::new(),
            };
            let beam = if r.partial { 1 } else { r.beam_size.unwrap_or(self.opts.decoding.beam_size).clamp(1, 32) };
            let prefix = Prefix { lang: langs[i], translate: r.translate };
            groups.entry((prefix, prompt, beam, r.partial)).or_default().push(i);
        }
        let mut decoded: Vec<Option<Decoded>> = vec![None; windows.len()];
        for ((prefix, prompt, beam, partial), members) in groups {
            let all = &self.opts.decoding.temperatures;
            let temperatures = if partial { &all[..1] } else { &all[..] };
            let got = self.decode_with_fallback(&cross, &members, &seconds, (prefix, &prompt, beam), temperatures)?;
            for (&i, d) in members.iter().zip(got) {
                decoded[i] = Some(d);
            }
        }
        let mut decoded: Vec<Decoded> = decoded.into_iter().flatten().collect();
        // Whisper's rule: no text when no-speech is likely AND the text is unlikely; loops never.
        let d = &self.opts.decoding;
        let silent = |x: &Decoded| x.no_speech > d.no_speech_threshold && x.best.avg_logprob() < d.logprob_threshold;
        // An English-only model's text for speech it cannot read is withheld, not invented.
        // Finals only: a partial ends mid-word, and its log-probability with it.
        let foreign: Vec<bool> = decoded
            .iter()
            .zip(&windows)
            .map(|(x, w)| {
                !self.info.multilingual
                    && !requests[w.request].partial
                    && !x.best.tokens.is_empty()
                    && !silent(x)
                    && x.temperature > 0.0
                    && x.best.avg_logprob() < d.foreign_logprob_threshold
            })
            .collect();
        let kept: Vec<bool> = decoded
            .iter()
            .zip(&foreign)
            .map(|(x, &foreign)| {
                !x.best.tokens.is_empty()
                    && !silent(x)
                    && !foreign
                    && x.compression_ratio <= d.compression_ratio_threshold
            })
            .collect();
        let words = if self.aligns && d.word_timestamps {
            let items: Vec<usize> = (0..windows.len())
                .filter(|&i| {
                    kept[i] && !requests[windows[i].request].partial && !requests[windows[i].request].translate
                })
                .collect();
            let got = self.align(&cross, &items, &langs, &decoded, &audio)?;
            let mut all = vec![Vec::new(); windows.len()];
            for (i, (w, keep)) in items.into_iter().zip(got) {
                // Words squeezed past the speech (guards::squeezed_tail) leave the text too.
                let x = &mut decoded[i];
                if keep < x.best.tokens.len() {
                    x.best.tokens.truncate(keep);
                    x.text = self.tokenizer.decode(&x.best.tokens).trim().to_string();
                    x.compression_ratio = compression_ratio(&x.text);
                }
                all[i] = w;
            }
            all
        } else {
            vec![Vec::new(); windows.len()]
        };
        // Join each request's windows in order.
        let mut counts = vec![0usize; requests.len()];
        for ((i, w), x) in windows.iter().enumerate().zip(&decoded) {
            let res = &mut results[w.request];
            counts[w.request] += 1;
            res.no_speech_prob = res.no_speech_prob.max(x.no_speech);
            res.avg_logprob += x.best.avg_logprob();
            res.temperature = res.temperature.max(x.temperature);
            if let Some(lang) = langs[i] {
                res.language = self.language_code(lang);
            }
            res.foreign |= foreign[i];
            if !kept[i] {
                continue;
            }
            if !res.text.is_empty() {
                res.text.push(' ');
            }
            res.text.push_str(&x.text);
            res.tokens.extend(&x.best.tokens);
            let offset = ms(w.range.start);
            res.words.extend(words[i].iter().map(|wt| WordTime {
                start_ms: wt.start_ms + offset,
                end_ms: wt.end_ms + offset,
                ..wt.clone()
            }));
        }
        for ((res, n), r) in results.iter_mut().zip(counts).zip(requests) {
            // A translation is English, whatever language was heard.
            if r.translate {
                res.language = "en".into();
            }
            if n > 0 {
                res.avg_logprob /= n as f32;
            }
            res.compression_ratio = compression_ratio(&res.text);
        }
        Ok(results)
    }

    fn language_code(&self, token: u32) -> String {
        self.info.languages.iter().find(|(_, t)| **t == token).map_or_else(|| "en".to_string(), |(c, _)| c.clone())
    }

    /// One encoder call for all windows (as a batch padded to the longest, or to 30 s).
    fn encode(&self, windows: &[&[f32]], short_context: Option<usize>) -> Result<CrossKv, InferenceError> {
        let batch = windows.len();
        let frames = match short_context {
            Some(floor) => {
                windows.iter().map(|w| frames_for(w.len())).max().unwrap_or(FULL_FRAMES).max(floor).min(FULL_FRAMES)
            }
            None => FULL_FRAMES,
        };
        let mut mel = Vec::with_capacity(batch * N_MELS * frames);
        for w in windows {
            mel.extend(self.mel.compute(w, frames));
        }
        let mel = Tensor::from_array(([batch, N_MELS, frames], mel))?;
        // Every encoder output is a cross-attention key/value tensor that the decoder takes by the
        // same name (`cross_k`/`cross_v` stacked, or one per layer); their layout is the graph's.
        let mut enc = self.encoder.lock().map_err(|_| InferenceError::Input("encoder poisoned".into()))?;
        let names: Vec<String> = enc.outputs().iter().map(|o| o.name().to_string()).collect();
        let mut out = enc.run(ort::inputs!["mel" => mel])?;
        let tensors = names.into_iter().filter_map(|n| out.remove(&n).map(|v| (n, v))).collect();
        Ok(CrossKv { tensors, batch })
    }

    /// The language token of every window: the requested one, or (multilingual models, no
    /// language asked for) the most likely language token after `<|startoftranscript|>`.
    fn languages(
        &self,
        cross: &CrossKv,
        windows: &[Window],
        requests: &[Request],
    ) -> Result<Vec<Option<u32>>, InferenceError> {
        let mut out = vec![None; windows.len()];
        if !self.info.multilingual {
            return Ok(out);
        }
        let mut detect = Vec::new();
        for (i, w) in windows.iter().enumerate() {
            match requests[w.request].language.filter(|l| !l.is_empty() && *l != "auto") {
                Some(code) => out[i] = self.info.languages.get(code).copied(),
                None if !self.info.languages.is_empty() => detect.push(i),
                None => {}
            }
        }
        if detect.is_empty() {
            return Ok(out);
        }
        let out_logits = self.run_prefix(cross, &detect, &vec![vec![self.info.sot]; detect.len()])?;
        let (shape, logits) = out_logits.0.try_extract_tensor::<f32>()?;
        let vocab = shape[2] as usize;
        for (row, &i) in detect.iter().enumerate() {
            let l = &logits[row * vocab..(row + 1) * vocab];
            out[i] = self
                .info
                .languages
                .values()
                .copied()
                .filter(|&t| (t as usize) < vocab)
                .max_by(|&a, &b| l[a as usize].total_cmp(&l[b as usize]));
        }
        Ok(out)
    }

    /// One decoder call over whole token sequences (equal lengths) with an empty cache:
    /// (logits, cross_qk if the graph gives it).
    fn run_prefix(
        &self,
        cross: &CrossKv,
        windows: &[usize],
        seqs: &[Vec<u32>],
    ) -> Result<(DynValue, Option<DynValue>), InferenceError> {
        let (layers, state) = (self.info.n_text_layer, self.info.n_state);
        let rows = seqs.len();
        let len = seqs.first().map_or(0, Vec::len);
        let owned = cross.for_windows(windows)?;
        let cross_in = owned.as_deref().unwrap_or(&cross.tensors);
        let tokens: Vec<i64> = seqs.iter().flatten().map(|&t| t as i64).collect();
        let mut inputs = ort::inputs![
            "tokens" => Tensor::from_array(([rows, len], tokens))?,
            "self_k" => Tensor::from_array(([layers, rows, 0, state], Vec::<f32>::new()))?,
            "self_v" => Tensor::from_array(([layers, rows, 0, state], Vec::<f32>::new()))?,
        ];
        inputs.extend(cross_in.iter().map(|(n, v)| (n.as_str().into(), v.into())));
        let mut dec = self.decoder.lock().map_err(|_| InferenceError::Input("decoder poisoned".into()))?;
        let mut out = dec.run(inputs)?;
        let logits = out.remove("logits").ok_or_else(|| InferenceError::Input("decoder gave no logits".into()))?;
        Ok((logits, out.remove("cross_qk")))
    }

    /// Decodes windows at the first temperature, then again at each next one for the windows
    /// whose text looks wrong (too repetitive, too unlikely, a phrase looping, more words than
    /// the audio holds: [`guards`]) unless they are silence. When every temperature fails, the
    /// likeliest try is kept (as faster-whisper does), cut where it starts to loop.
    fn decode_with_fallback(
        &self,
        cross: &CrossKv,
        members: &[usize],
        seconds: &[f32],
        (prefix, prompt, beam): (Prefix, &[u32], usize),
        temperatures: &[f32],
    ) -> Result<Vec<Decoded>, InferenceError> {
        let d = &self.opts.decoding;
        let mut out: Vec<Option<Decoded>> = vec![None; members.len()];
        // Every failed try of each window, for the choice when all fail.
        let mut failed: Vec<Vec<Decoded>> = vec![Vec::new(); members.len()];
        let mut pending: Vec<usize> = (0..members.len()).collect();
        for (n, &temperature) in temperatures.iter().enumerate() {
            let mode = match (temperature > 0.0, beam > 1) {
                (false, true) => Mode::Beam { size: beam, patience: d.patience },
                (false, false) => Mode::Greedy,
                (true, _) => Mode::Sample { temperature, best_of: d.best_of },
            };
            let rows: Vec<usize> = pending.iter().map(|&p| members[p]).collect();
            let got = self.decode(cross, &rows, prefix, prompt, mode, n as u64)?;
            let mut retry = Vec::new();
            for (&p, (best, no_speech)) in pending.iter().zip(got) {
                let text = self.tokenizer.decode(&best.tokens).trim().to_string();
                let ratio = compression_ratio(&text);
                let fails = ratio > d.compression_ratio_threshold
                    || best.avg_logprob() < d.logprob_threshold
                    || guards::fails(&best.tokens, seconds[members[p]]);
                let x = Decoded { best, text, compression_ratio: ratio, no_speech, temperature };
                if fails && no_speech <= d.no_speech_threshold {
                    retry.push(p);
                    failed[p].push(x.clone());
                }
                out[p] = Some(x);
            }
            pending = retry;
            if pending.is_empty() {
                break;
            }
        }
        for p in pending {
            // Every temperature failed: the likeliest try.
            let best = failed[p].iter().max_by(|a, b| a.best.avg_logprob().total_cmp(&b.best.avg_logprob()));
            if let Some(x) = best {
                out[p] = Some(x.clone());
            }
        }
        // No text past the first repeat, whichever try it came from.
        for x in out.iter_mut().flatten() {
            if let Some(cut) = guards::first_repeat(&x.best.tokens) {
                x.best.tokens.truncate(cut);
                x.text = self.tokenizer.decode(&x.best.tokens).trim().to_string();
                x.compression_ratio = compression_ratio(&x.text);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Decoder prompt: `[<|startofprev|> context…] <|startoftranscript|> [lang transcribe]
    /// <|notimestamps|>`, and the place of `<|startoftranscript|>` in it.
    fn prompt(&self, prefix: Prefix, context: &[u32]) -> (Vec<u32>, usize) {
        let mut p = Vec::new();
        if let Some(prev) = self.info.sot_prev
            && !context.is_empty()
        {
            p.push(prev);
            let keep = self.info.n_text_ctx / 2 - 1;
            p.extend(&context[context.len().saturating_sub(keep)..]);
        }
        let sot_index = p.len();
        p.extend(self.sot_sequence(prefix));
        p.push(self.info.no_timestamps);
        (p, sot_index)
    }

    fn sot_sequence(&self, prefix: Prefix) -> Vec<u32> {
        let mut s = vec![self.info.sot];
        let task = if prefix.translate { self.info.translate } else { self.info.transcribe };
        if self.info.multilingual
            && let Some(t) = task
        {
            // English when nothing else is known: the language tokens start right after sot.
            s.push(prefix.lang.unwrap_or(self.info.sot + 1));
            s.push(t);
        }
        s
    }

    /// Runs the decoder step by step over `windows` (each `mode.rows()` rows), keeping the
    /// self-attention cache between steps and reordering it when beams change places.
    /// Returns the best candidate and the no-speech probability of each window.
    fn decode(
        &self,
        cross: &CrossKv,
        windows: &[usize],
        prefix: Prefix,
        context: &[u32],
        mode: Mode,
        seed: u64,
    ) -> Result<Vec<(Candidate, f32)>, InferenceError> {
        let info = &self.info;
        let (layers, state) = (info.n_text_layer, info.n_state);
        let k = mode.rows();
        let (prompt, sot_index) = self.prompt(prefix, context);
        let max_len = self.opts.max_tokens.min(info.n_text_ctx / 2).min(info.n_text_ctx - prompt.len()).max(1);
        let items = windows.len();
        let mut search = Search::new(mode, items, info.eot, max_len, self.opts.decoding.length_penalty, seed);
        // The items (windows) in the decoder's batch, in order, `k` consecutive rows each. An
        // item that is done stays in it until a quarter of the batch is done: then the batch is
        // compacted (its self-attention cache and cross K/V copied without them), so a window
        // that decodes long does not drag finished ones through every step.
        let mut batch: Vec<usize> = (0..items).collect();
        let mut cross_owned = cross.for_windows(windows)?;
        let mut step_tokens: Vec<i64> =
            prompt.iter().map(|&t| t as i64).cycle().take(items * k * prompt.len()).collect();
        let mut step_len = prompt.len();
        let mut self_k: DynValue = Tensor::from_array(([layers, items * k, 0, state], Vec::<f32>::new()))?.into_dyn();
        let mut self_v: DynValue = Tensor::from_array(([layers, items * k, 0, state], Vec::<f32>::new()))?.into_dyn();
        let mut no_speech = vec![0.0f32; items];
        // Suppressed last-position logits of every search row (rows of done items are stale).
        let mut last = Vec::new();
        let mut first = true;
        let mut dec = self.decoder.lock().map_err(|_| InferenceError::Input("decoder poisoned".into()))?;
        while !search.done() {
            let tok = Tensor::from_array(([batch.len() * k, step_len], std::mem::take(&mut step_tokens)))?;
            let mut inputs = ort::inputs![
                "tokens" => tok,
                "self_k" => self_k,
                "self_v" => self_v,
            ];
            let cross_in = cross_owned.as_deref().unwrap_or(&cross.tensors);
            inputs.extend(cross_in.iter().map(|(n, v)| (n.as_str().into(), v.into())));
            let mut out = dec.run(inputs)?;
            let (shape, logits) = out["logits"].try_extract_tensor::<f32>()?;
            let vocab = shape[2] as usize;
            last.resize(items * k * vocab, 0.0);
            for (j, &item) in batch.iter().enumerate() {
                if search.item_done(item) {
                    continue;
                }
                if first {
                    let base = (j * k * step_len + sot_index) * vocab;
                    no_speech[item] = softmax_at(&logits[base..base + vocab], info.no_speech as usize);
                }
                for r in 0..k {
                    let base = ((j * k + r) * step_len + step_len - 1) * vocab;
                    let row = &mut last[(item * k + r) * vocab..(item * k + r + 1) * vocab];
                    row.copy_from_slice(&logits[base..base + vocab]);
                    self.suppress(row, first);
                }
            }
            let adv = search.advance(&last, vocab);
            self_k =
                out.remove("new_self_k").ok_or_else(|| InferenceError::Input("decoder gave no new_self_k".into()))?;
            self_v =
                out.remove("new_self_v").ok_or_else(|| InferenceError::Input("decoder gave no new_self_v".into()))?;
            let done = batch.iter().filter(|&&i| search.item_done(i)).count();
            let compact = done > 0 && done * 4 >= batch.len() && done < batch.len();
            let next: Vec<usize> =
                if compact { batch.iter().copied().filter(|&i| !search.item_done(i)).collect() } else { batch.clone() };
            // Row `pick[n]` of this step's cache continues as row n of the next batch.
            let mut pick = Vec::with_capacity(next.len() * k);
            for (j, &item) in batch.iter().enumerate() {
                if compact && search.item_done(item) {
                    continue;
                }
                pick.extend((0..k).map(|r| j * k + adv.sources[item * k + r] - item * k));
            }
            if pick.iter().enumerate().any(|(n, &p)| n != p) || pick.len() != batch.len() * k {
                self_k = gather(&self_k, 1, &pick)?;
                self_v = gather(&self_v, 1, &pick)?;
            }
            if compact {
                let ws: Vec<usize> = next.iter().map(|&i| windows[i]).collect();
                cross_owned = cross.for_windows(&ws)?;
            }
            step_tokens =
                next.iter().flat_map(|&i| (0..k).map(move |r| i * k + r)).map(|r| adv.tokens[r] as i64).collect();
            batch = next;
            step_len = 1;
            first = false;
        }
        Ok(search.finish().into_iter().zip(no_speech).collect())
    }

    /// Word times of the given windows from one decoder call over
    /// `sot-sequence <|notimestamps|> text <|endoftext|>` (padded with end-of-text to one length),
    /// each with how many of its tokens to keep: a tail of words squeezed into no time
    /// ([`guards::squeezed_tail`]) is left out.
    fn align(
        &self,
        cross: &CrossKv,
        items: &[usize],
        langs: &[Option<u32>],
        decoded: &[Decoded],
        audio: &[&[f32]],
    ) -> Result<Vec<(Vec<WordTime>, usize)>, InferenceError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let eot = self.info.eot;
        let mut seqs: Vec<Vec<u32>> = Vec::with_capacity(items.len());
        let mut starts = Vec::with_capacity(items.len());
        for &i in items {
            let mut s = self.sot_sequence(Prefix { lang: langs[i], translate: false });
            s.push(self.info.no_timestamps);
            starts.push(s.len());
            s.extend(&decoded[i].best.tokens);
            s.push(eot);
            seqs.push(s);
        }
        let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        for s in &mut seqs {
            s.resize(len, eot);
        }
        let (logits, qk) = self.run_prefix(cross, items, &seqs)?;
        let Some(qk) = qk else {
            return Ok(items.iter().map(|&i| (Vec::new(), decoded[i].best.tokens.len())).collect());
        };
        let (qshape, qk) = qk.try_extract_tensor::<f32>()?;
        let (heads, frames_out) = (qshape[1] as usize, qshape[3] as usize);
        let (lshape, logits) = logits.try_extract_tensor::<f32>()?;
        let vocab = lshape[2] as usize;
        let mut out = Vec::with_capacity(items.len());
        for (r, &i) in items.iter().enumerate() {
            let tokens = &decoded[i].best.tokens;
            let n = tokens.len();
            let frames = audio[i].len().div_ceil(SAMPLES_PER_FRAME).min(frames_out);
            // Row j is the attention of the position that predicted token j (the last: end-of-text).
            let first = starts[r] - 1;
            let mut weights = Vec::with_capacity(heads * (n + 1) * frames);
            for h in 0..heads {
                for j in 0..=n {
                    // Renormalised over the audio's frames (Whisper's softmax over those only).
                    let base = ((r * heads + h) * len + first + j) * frames_out;
                    let row = &qk[base..base + frames];
                    let sum = row.iter().sum::<f32>().max(1e-12);
                    weights.extend(row.iter().map(|v| v / sum));
                }
            }
            let probs: Vec<f32> = (0..n)
                .map(|j| {
                    let base = (r * len + first + j) * vocab;
                    let row = &logits[base..base + vocab];
                    (row[tokens[j] as usize] - log_sum_exp(row)).exp()
                })
                .collect();
            let unspaced = langs[i].is_some_and(|l| is_unspaced(&self.language_code(l)));
            let words: Vec<WordTokens> = align::split_words(tokens, |t| self.tokenizer.bytes(&[t]), unspaced);
            let mut times = align::word_times(&weights, heads, n + 1, frames, &words);
            align::trim_to_sound(&mut times, audio[i]);
            let spoken: Vec<usize> = (0..words.len()).filter(|&k| !words[k].text.trim().is_empty()).collect();
            let spoken_times: Vec<(f32, f32)> = spoken.iter().filter_map(|&k| times.get(k).copied()).collect();
            let tail = if spoken_times.len() == spoken.len() { guards::squeezed_tail(&spoken_times) } else { 0 };
            let kept_words = if tail > 0 { spoken[spoken.len() - tail] } else { words.len() };
            let keep: usize = words[..kept_words].iter().map(|w| w.tokens.len()).sum();
            let mut at = 0;
            let mut ws = Vec::with_capacity(words.len());
            for (w, (start, end)) in words.iter().zip(times).take(kept_words) {
                let p = &probs[at..at + w.tokens.len()];
                at += w.tokens.len();
                if w.text.trim().is_empty() {
                    continue;
                }
                ws.push(WordTime {
                    text: w.text.trim().to_string(),
                    start_ms: (start * 1000.0) as u64,
                    end_ms: (end * 1000.0) as u64,
                    probability: p.iter().sum::<f32>() / p.len().max(1) as f32,
                });
            }
            out.push((ws, keep));
        }
        Ok(out)
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
/// and rumble, on which Whisper likes to hallucinate "you"). Energy below ~30 Hz (DC, drift,
/// wind and handling noise) is no sound at all and is filtered out first: a real recording with
/// 98% of its energy under 20 Hz and clear speech above was judged "hum" and dropped whole.
fn is_audible(w: &[f32]) -> bool {
    if w.len() < MIN_SAMPLES {
        return false;
    }
    // Two one-pole high-passes at 30 Hz (a 5 Hz drift loses ~31 dB, 50 Hz hum ~3 dB), then one
    // at 250 Hz for the speech band: speech keeps most of its energy, a 50 Hz hum ~4%.
    let pole = |fc: f32| 1.0 / (1.0 + 2.0 * std::f32::consts::PI * fc / 16_000.0);
    let (a30, a250) = (pole(30.0), pole(250.0));
    let (mut y1, mut p1, mut y2, mut p2, mut y3, mut p3) = (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
    let (mut total, mut high) = (0.0f32, 0.0f32);
    for &x in w {
        y1 = a30 * (y1 + x - p1);
        p1 = x;
        y2 = a30 * (y2 + y1 - p2);
        p2 = y1;
        y3 = a250 * (y3 + y2 - p3);
        p3 = y2;
        total += y2 * y2;
        high += y3 * y3;
    }
    let rms = (total / w.len() as f32).sqrt();
    rms >= SILENCE_RMS && high / total >= MIN_SPEECH_BAND
}

#[cfg(test)]
mod tests {
    use super::{context_floor, is_audible};

    #[test]
    fn drift_under_speech_is_not_hum_and_hum_alone_is_not_speech() {
        let t = |i: usize| i as f32 / 16_000.0;
        let tone = |f: f32, a: f32| move |i: usize| a * (2.0 * std::f32::consts::PI * f * t(i)).sin();
        let speechy = |i: usize| tone(300.0, 0.01)(i) + tone(1200.0, 0.008)(i);
        // 98% of the energy in a 3 Hz drift, clear "speech" above (as in a real recording).
        let drifting: Vec<f32> = (0..32_000).map(|i| tone(3.0, 0.1)(i) + speechy(i)).collect();
        assert!(is_audible(&drifting));
        let hum: Vec<f32> = (0..32_000).map(tone(50.0, 0.1)).collect();
        assert!(!is_audible(&hum), "mains hum alone");
        let drift: Vec<f32> = (0..32_000).map(tone(3.0, 0.3)).collect();
        assert!(!is_audible(&drift), "drift alone is silence");
        assert!(!is_audible(&vec![0.0005; 32_000]), "quiet");
        let clean: Vec<f32> = (0..32_000).map(speechy).collect();
        assert!(is_audible(&clean));
    }

    #[test]
    fn context_settings_parse() {
        assert_eq!(context_floor("full"), None);
        assert_eq!(context_floor("auto"), Some(0));
        assert_eq!(context_floor("10"), Some(1000));
        assert_eq!(context_floor("2.5"), Some(250));
        assert_eq!(context_floor("99"), Some(3000));
        assert_eq!(context_floor("soon"), None);
    }
}
