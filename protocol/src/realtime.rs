//! OpenAI's Realtime API for transcription (`GET /v1/realtime?intent=transcription`), in its GA
//! event schema, so that the `openai` SDKs and the voice-agent frameworks built on them stream
//! audio to Kiki unchanged.
//!
//! Client events: `session.update` (`session.type = "transcription"`, `audio.input.format`
//! `audio/pcm` (24 kHz; other rates of 8..=48 kHz are taken too), `audio/pcmu`, `audio/pcma` (8 kHz),
//! `audio.input.transcription` {model, language, prompt, keywords}, `audio.input.turn_detection`
//! `server_vad` {threshold, prefix_padding_ms, silence_duration_ms}, `semantic_vad` {eagerness},
//! or `null` for manual commits; `audio.input.noise_reduction` and `include` accepted),
//! `input_audio_buffer.append` (base64), `.commit`, `.clear`. Anything else gets an `error` event.
//!
//! Server events: `session.created` at once, `session.updated`, `input_audio_buffer.speech_started`
//! / `speech_stopped` / `committed` / `cleared`, `conversation.item.input_audio_transcription.delta`
//! (settled text of the partials: only new text, never revised), `.completed` (`transcript`,
//! `usage`, `logprobs` when asked), `.failed`, and `error` in OpenAI's shape.
//!
//! The beta schema that many clients still speak (`OpenAI-Beta: realtime=v1`) is served too:
//! `transcription_session.update` (`input_audio_format` pcm16 | g711_ulaw | g711_alaw,
//! `input_audio_transcription`, `turn_detection`, `input_audio_noise_reduction`, `include`) is
//! answered by `transcription_session.updated`, and a beta connection is greeted with
//! `transcription_session.created`; the other events have the same names in both.
//!
//! How it maps onto Kiki's sessions: with server VAD the audio streams into a native session and
//! its segmenter cuts utterances; each final is an item. The VAD settings become the segmenter's
//! options (`silence_duration_ms` -> `hangover_ms`, `prefix_padding_ms` -> `pad_ms`, `threshold`
//! -> `threshold_ratio`), so the cuts are the same as `/ws` makes with the same options. A commit
//! under server VAD ends the native session (its segmenter flushes: the audio so far is cut) and
//! the next audio opens another. Without turn detection the wire holds the audio until `commit`,
//! which sends it as one utterance. A `session.update` that changes how audio is cut or read ends
//! the open native session the same way; the session clock (`audio_start_ms`) runs on across them.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Value, json};

use crate::native::{ErrorCode, ServerMessage, Start};
use crate::pcm::{self, PcmFormat};
use crate::wire::{Input, Wire};

/// Model names OpenAI's SDKs send, served by the deployment's default model.
pub const MODEL_ALIASES: [&str; 4] = ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-transcribe"];

/// Audio held for one manual commit, at most (seconds): a commit is one utterance.
pub const MAX_BUFFER_S: u64 = 600;

/// A commit of less audio than this is refused, as OpenAI does (`input_audio_buffer_commit_empty`).
const MIN_COMMIT_MS: u64 = 100;

/// Word probabilities as OpenAI's `logprobs` entries, one per word (Realtime's `completed` and
/// the file API's `json` and stream events share the shape).
pub fn logprobs<'a>(words: impl IntoIterator<Item = &'a crate::native::Word>) -> Value {
    words
        .into_iter()
        .map(|w| json!({"token": w.text, "logprob": (w.probability.max(1e-6) as f64).ln(), "bytes": w.text.as_bytes()}))
        .collect()
}

/// The logprobs include flag of OpenAI's session `include`.
const LOGPROBS: &str = "item.input_audio_transcription.logprobs";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Codec {
    Pcm16,
    Ulaw,
    Alaw,
}

#[derive(Debug, Clone, PartialEq)]
struct Format {
    codec: Codec,
    rate: u32,
}

impl Format {
    fn to_json(&self) -> Value {
        match self.codec {
            Codec::Pcm16 => json!({"type": "audio/pcm", "rate": self.rate}),
            Codec::Ulaw => json!({"type": "audio/pcmu"}),
            Codec::Alaw => json!({"type": "audio/pcma"}),
        }
    }

    /// Bytes per sample on the wire.
    fn width(&self) -> usize {
        if self.codec == Codec::Pcm16 { 2 } else { 1 }
    }

    /// The wire's bytes as s16le (what the native session is opened with).
    fn to_s16le(&self, bytes: Vec<u8>) -> Vec<u8> {
        match self.codec {
            Codec::Pcm16 => bytes,
            Codec::Ulaw => pcm::g711_to_s16le(&bytes, false),
            Codec::Alaw => pcm::g711_to_s16le(&bytes, true),
        }
    }
}

/// Turn detection as the client set it (`None` fields: the segmenter's own defaults).
#[derive(Debug, Clone, Default, PartialEq)]
struct Vad {
    /// `server_vad` or `semantic_vad`, echoed back as given.
    kind: String,
    threshold: Option<f64>,
    prefix_padding_ms: Option<u64>,
    silence_duration_ms: Option<u64>,
    eagerness: Option<String>,
    /// Other fields (`create_response`, `interrupt_response`, `idle_timeout_ms`): echoed, no
    /// effect on transcription.
    extra: serde_json::Map<String, Value>,
}

impl Vad {
    fn to_json(&self) -> Value {
        let mut o = self.extra.clone();
        o.insert("type".into(), json!(self.kind));
        if let Some(t) = self.threshold {
            o.insert("threshold".into(), json!(t));
        }
        if let Some(p) = self.prefix_padding_ms {
            o.insert("prefix_padding_ms".into(), json!(p));
        }
        if let Some(s) = self.silence_duration_ms {
            o.insert("silence_duration_ms".into(), json!(s));
        }
        if let Some(e) = &self.eagerness {
            o.insert("eagerness".into(), json!(e));
        }
        Value::Object(o)
    }

    /// The segmenter options these settings mean.
    fn segmenter_options(&self) -> serde_json::Map<String, Value> {
        let mut o = serde_json::Map::new();
        // Semantic VAD's eagerness becomes a hangover: how long a pause must be to end a turn.
        let silence = self.silence_duration_ms.or(match self.eagerness.as_deref() {
            Some("high") => Some(300),
            Some("low") => Some(1000),
            Some(_) => Some(500),
            None => None,
        });
        if let Some(s) = silence {
            o.insert("hangover_ms".into(), json!(s.clamp(10, 60_000).to_string()));
        }
        if let Some(p) = self.prefix_padding_ms {
            o.insert("pad_ms".into(), json!(p.min(5_000).to_string()));
        }
        if let Some(t) = self.threshold {
            // OpenAI's threshold is 0..1 with 0.5 by default; the segmenter's is a power ratio
            // over the noise floor with 3.5 by default: 3.5^(2t) keeps the defaults together
            // (0 -> 1, 0.5 -> 3.5, 1 -> 12.25) and is monotonic.
            let ratio = 3.5f64.powf(2.0 * t.clamp(0.0, 1.0)).clamp(1.0, 1000.0);
            o.insert("threshold_ratio".into(), json!(format!("{ratio:.3}")));
        }
        o
    }
}

/// The session as the client configured it.
#[derive(Debug, Clone, PartialEq)]
struct Config {
    format: Format,
    /// `None`: manual commits.
    vad: Option<Vad>,
    model: String,
    language: Option<String>,
    prompt: Option<String>,
    keywords: Vec<String>,
    noise_reduction: Value,
    logprobs: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            format: Format { codec: Codec::Pcm16, rate: 24_000 },
            vad: Some(Vad { kind: "server_vad".into(), ..Default::default() }),
            model: MODEL_ALIASES[0].into(),
            language: None,
            prompt: None,
            keywords: Vec::new(),
            noise_reduction: Value::Null,
            logprobs: false,
        }
    }
}

impl Config {
    /// The session's `include`, as both schemas show it.
    fn include(&self) -> Value {
        if self.logprobs { json!([LOGPROBS]) } else { json!([]) }
    }

    /// What decides how audio is read and cut: a change ends the open native session.
    fn cutting(&self) -> (Format, Option<Vad>, Option<String>, Option<String>, Vec<String>) {
        (self.format.clone(), self.vad.clone(), self.language.clone(), self.prompt.clone(), self.keywords.clone())
    }

    fn start(&self) -> Start {
        let mut plugins = serde_json::Map::new();
        match &self.vad {
            Some(vad) => {
                let options = vad.segmenter_options();
                if !options.is_empty() {
                    plugins.insert("segmenter".into(), Value::Object(options));
                }
            }
            // Client-cut utterances, like a file: no partials.
            None => {
                plugins.insert("segmenter".into(), json!({"partial_ms": "0"}));
            }
        }
        Start {
            sample_rate: self.format.rate,
            format: PcmFormat::PcmS16le,
            language: self.language.clone(),
            plugins,
            hotwords: self.keywords.clone(),
            prompt: self.prompt.clone(),
            ..Start::default()
        }
    }
}

/// An item: one utterance and its transcription.
#[derive(Debug, Default)]
struct Item {
    id: String,
    /// Text already sent as deltas (a prefix of what the partials settled on).
    said: String,
    committed: bool,
}

/// One native session of the socket.
#[derive(Debug)]
struct Session {
    /// The connection's audio clock (ms) when it opened.
    offset_ms: u64,
    manual: bool,
    /// Manual: utterances sent so far (utterance n is segment n).
    utterances: u64,
    items: HashMap<u64, Item>,
    /// Cleared: its results are not told.
    discard: bool,
    /// Ended by a commit under server VAD: finals it had then (a commit that cut nothing is an
    /// empty commit).
    commit_at: Option<usize>,
    finals: usize,
}

/// The Realtime transcription protocol, per socket.
#[derive(Debug)]
pub struct Realtime {
    /// Unique per connection: event, item and session ids are made from it.
    nonce: String,
    events: u64,
    items: u64,
    config: Config,
    /// Model names the deployment takes (its models and [`MODEL_ALIASES`]).
    models: Vec<String>,
    sessions: HashMap<String, Session>,
    /// The key of the native session audio goes to now.
    current: Option<String>,
    next_key: u64,
    /// Audio received so far, in ms of the connection's clock (fractional: formats change).
    clock_ms: f64,
    last_item: Option<String>,
    /// Manual commits: s16le audio appended since the last commit, at the config's rate.
    buffer: Vec<u8>,
    /// The connection said `OpenAI-Beta: realtime=v1`: greeted in the beta schema.
    beta: bool,
}

impl Realtime {
    /// `nonce` makes the connection's ids unique; `models` are the model names it accepts.
    pub fn new(nonce: String, models: Vec<String>) -> Self {
        Self {
            nonce,
            events: 0,
            items: 0,
            config: Config::default(),
            models,
            sessions: HashMap::new(),
            current: None,
            next_key: 0,
            clock_ms: 0.0,
            last_item: None,
            buffer: Vec::new(),
            beta: false,
        }
    }

    /// Greets in the beta schema (`transcription_session.created`), for connections that ask
    /// for it with `OpenAI-Beta: realtime=v1`.
    pub fn beta(mut self) -> Self {
        self.beta = true;
        self
    }

    fn event(&mut self, kind: &str, mut body: Value) -> String {
        self.events += 1;
        if let Value::Object(o) = &mut body {
            o.insert("type".into(), json!(kind));
            o.insert("event_id".into(), json!(format!("event_{}{}", self.nonce, self.events)));
        }
        body.to_string()
    }

    /// An `error` event. `client_event` is the `event_id` of the client event that caused it.
    fn error(
        &mut self,
        kind: &str,
        code: &str,
        message: &str,
        param: Option<&str>,
        client_event: Option<&str>,
    ) -> String {
        self.event(
            "error",
            json!({"error": {"type": kind, "code": code, "message": message, "param": param, "event_id": client_event}}),
        )
    }

    fn invalid(&mut self, code: &str, message: &str, param: Option<&str>, client_event: Option<&str>) -> Input {
        Input::Send(self.error("invalid_request_error", code, message, param, client_event))
    }

    /// The error for a required field left out.
    fn missing(&mut self, param: &str, message: &str, client_event: Option<&str>) -> Vec<Input> {
        vec![self.invalid("missing_required_parameter", message, Some(param), client_event)]
    }

    fn session_json(&self) -> Value {
        let c = &self.config;
        let mut transcription = json!({"model": c.model, "language": c.language, "prompt": c.prompt});
        if !c.keywords.is_empty() {
            transcription["keywords"] = json!(c.keywords);
        }
        json!({
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": format!("sess_{}", self.nonce),
            "audio": {"input": {
                "format": c.format.to_json(),
                "transcription": transcription,
                "turn_detection": c.vad.as_ref().map(Vad::to_json),
                "noise_reduction": c.noise_reduction,
            }},
            "include": c.include(),
        })
    }

    /// The session in the beta schema (`transcription_session.*`).
    fn beta_session_json(&self) -> Value {
        let c = &self.config;
        let format = match c.format.codec {
            Codec::Pcm16 => "pcm16",
            Codec::Ulaw => "g711_ulaw",
            Codec::Alaw => "g711_alaw",
        };
        json!({
            "id": format!("sess_{}", self.nonce),
            "object": "realtime.transcription_session",
            "input_audio_format": format,
            "input_audio_transcription": {"model": c.model, "language": c.language, "prompt": c.prompt},
            "turn_detection": c.vad.as_ref().map(Vad::to_json),
            "input_audio_noise_reduction": c.noise_reduction,
            "include": c.include(),
            "modalities": ["text"],
        })
    }

    /// A beta `transcription_session.update`, read as the GA `session.update` it means.
    fn update_beta(&mut self, v: &Value, client_event: Option<&str>) -> Vec<Input> {
        let Some(s) = v.get("session").and_then(Value::as_object) else {
            return self.missing("session", "`session` is required", client_event);
        };
        let mut input = serde_json::Map::new();
        if let Some(f) = s.get("input_audio_format") {
            let format = match f.as_str() {
                Some("pcm16") => json!({"type": "audio/pcm", "rate": 24_000}),
                Some("g711_ulaw") => json!({"type": "audio/pcmu"}),
                Some("g711_alaw") => json!({"type": "audio/pcma"}),
                _ => {
                    let msg = format!("unsupported input_audio_format {f} (pcm16, g711_ulaw, g711_alaw)");
                    return vec![self.invalid("invalid_value", &msg, Some("session.input_audio_format"), client_event)];
                }
            };
            input.insert("format".into(), format);
        }
        for (beta, ga) in [
            ("input_audio_transcription", "transcription"),
            ("turn_detection", "turn_detection"),
            ("input_audio_noise_reduction", "noise_reduction"),
        ] {
            if let Some(x) = s.get(beta) {
                input.insert(ga.into(), x.clone());
            }
        }
        let mut ga = json!({"type": "transcription", "audio": {"input": input}});
        if let Some(include) = s.get("include") {
            ga["include"] = include.clone();
        }
        self.update(&json!({ "session": ga }), client_event, true)
    }

    fn new_item(&mut self) -> Item {
        self.items += 1;
        Item { id: format!("item_{}{}", self.nonce, self.items), ..Default::default() }
    }

    /// The open native session, opened if there is none.
    fn open(&mut self, inputs: &mut Vec<Input>) -> String {
        if let Some(key) = &self.current {
            return key.clone();
        }
        let key = format!("s{}", self.next_key);
        self.next_key += 1;
        self.sessions.insert(
            key.clone(),
            Session {
                offset_ms: self.clock_ms as u64,
                manual: self.config.vad.is_none(),
                utterances: 0,
                items: HashMap::new(),
                discard: false,
                commit_at: None,
                finals: 0,
            },
        );
        inputs.push(Input::Start { key: key.clone(), start: self.config.start() });
        self.current = Some(key.clone());
        key
    }

    /// Ends the open native session (its segmenter flushes; its finals still come).
    fn close_current(&mut self, inputs: &mut Vec<Input>) -> Option<String> {
        let key = self.current.take()?;
        inputs.push(Input::Stop { key: key.clone() });
        Some(key)
    }

    /// Applies a `session.update` (answered in the beta schema when `beta`).
    fn update(&mut self, v: &Value, client_event: Option<&str>, beta: bool) -> Vec<Input> {
        let Some(s) = v.get("session").and_then(Value::as_object) else {
            return self.missing("session", "`session` is required", client_event);
        };
        let mut next = self.config.clone();
        if let Some(t) = s.get("type").and_then(Value::as_str)
            && t != "transcription"
        {
            let msg = format!(
                "this server runs transcription sessions only (connect with ?intent=transcription); session.type {t:?} is not supported"
            );
            return vec![self.invalid("invalid_value", &msg, Some("session.type"), client_event)];
        }
        if let Some(include) = s.get("include") {
            let list: Vec<&str> =
                include.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            if let Some(bad) = list.iter().find(|i| **i != LOGPROBS) {
                let msg = format!("unsupported include value {bad:?} (supported: {LOGPROBS:?})");
                return vec![self.invalid("invalid_value", &msg, Some("session.include"), client_event)];
            }
            next.logprobs = !list.is_empty();
        }
        let input = s.get("audio").and_then(|a| a.get("input"));
        if let Some(input) = input {
            if let Some(f) = input.get("format") {
                match parse_format(f) {
                    Ok(fmt) => next.format = fmt,
                    Err(msg) => {
                        return vec![self.invalid(
                            "invalid_value",
                            &msg,
                            Some("session.audio.input.format"),
                            client_event,
                        )];
                    }
                }
            }
            if let Some(t) = input.get("transcription").filter(|t| !t.is_null())
                && let Err((msg, param)) = self.apply_transcription(t, &mut next)
            {
                return vec![self.invalid("invalid_value", &msg, Some(param), client_event)];
            }
            if let Some(td) = input.get("turn_detection") {
                match parse_vad(td) {
                    Ok(vad) => next.vad = vad,
                    Err(msg) => {
                        let param = Some("session.audio.input.turn_detection");
                        return vec![self.invalid("invalid_value", &msg, param, client_event)];
                    }
                }
            }
            // Accepted and echoed; Kiki's front end does not filter noise before the segmenter.
            if let Some(nr) = input.get("noise_reduction") {
                next.noise_reduction = nr.clone();
            }
        }
        let mut inputs = Vec::new();
        if next.cutting() != self.config.cutting() {
            if next.format != self.config.format && !self.buffer.is_empty() {
                let msg = "the input audio buffer holds audio in the old format: commit or clear it before changing the format";
                return vec![self.invalid("invalid_value", msg, Some("session.audio.input.format"), client_event)];
            }
            self.close_current(&mut inputs);
        }
        self.config = next;
        let updated = if beta {
            let session = self.beta_session_json();
            self.event("transcription_session.updated", json!({ "session": session }))
        } else {
            let session = self.session_json();
            self.event("session.updated", json!({ "session": session }))
        };
        inputs.push(Input::Send(updated));
        inputs
    }

    fn apply_transcription(&self, t: &Value, next: &mut Config) -> Result<(), (String, &'static str)> {
        if let Some(m) = t.get("model").and_then(Value::as_str) {
            if !self.models.iter().any(|x| x == m) {
                let msg = format!("model {m:?} is not served here (models: {})", self.models.join(", "));
                return Err((msg, "session.audio.input.transcription.model"));
            }
            next.model = m.to_string();
        }
        if let Some(l) = t.get("language") {
            next.language = l.as_str().filter(|l| !l.is_empty()).map(str::to_string);
        }
        if let Some(p) = t.get("prompt") {
            next.prompt = p.as_str().filter(|p| !p.trim().is_empty()).map(str::to_string);
        }
        if let Some(k) = t.get("keywords") {
            next.keywords = k
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
        }
        Ok(())
    }

    fn append(&mut self, v: &Value, client_event: Option<&str>) -> Vec<Input> {
        let Some(b64) = v.get("audio").and_then(Value::as_str) else {
            return self.missing("audio", "`audio` (base64) is required", client_event);
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            return vec![self.invalid("invalid_value", "`audio` is not valid base64", Some("audio"), client_event)];
        };
        let format = self.config.format.clone();
        if !bytes.len().is_multiple_of(format.width()) {
            let msg = format!("{} bytes are not whole 16-bit samples", bytes.len());
            return vec![self.invalid("invalid_value", &msg, Some("audio"), client_event)];
        }
        let samples = bytes.len() / format.width();
        let pcm = format.to_s16le(bytes);
        let mut inputs = Vec::new();
        let key = self.open(&mut inputs);
        if self.config.vad.is_none() {
            let max = MAX_BUFFER_S * format.rate as u64 * 2;
            if (self.buffer.len() + pcm.len()) as u64 > max {
                let msg = format!(
                    "the input audio buffer would exceed {MAX_BUFFER_S} s: commit before appending more (this audio was not added)"
                );
                inputs.push(self.invalid("input_audio_buffer_too_large", &msg, Some("audio"), client_event));
                return inputs;
            }
            self.buffer.extend_from_slice(&pcm);
        } else {
            inputs.push(Input::Audio { key, bytes: pcm });
        }
        self.clock_ms += samples as f64 * 1000.0 / format.rate as f64;
        inputs
    }

    fn commit(&mut self, client_event: Option<&str>) -> Vec<Input> {
        let mut inputs = Vec::new();
        if self.config.vad.is_some() {
            // The segmenter flushes: what it holds is cut now; the items follow with its finals.
            match self.close_current(&mut inputs) {
                Some(key) => {
                    if let Some(s) = self.sessions.get_mut(&key) {
                        s.commit_at = Some(s.finals);
                    }
                }
                None => inputs.push(self.invalid(
                    "input_audio_buffer_commit_empty",
                    "the input audio buffer is empty",
                    None,
                    client_event,
                )),
            }
            return inputs;
        }
        let rate = self.config.format.rate as u64;
        if (self.buffer.len() as u64 / 2) * 1000 < MIN_COMMIT_MS * rate {
            let ms = self.buffer.len() as u64 / 2 * 1000 / rate;
            let msg = format!("buffer too small: expected at least {MIN_COMMIT_MS} ms of audio, but it holds {ms} ms");
            inputs.push(self.invalid("input_audio_buffer_commit_empty", &msg, None, client_event));
            return inputs;
        }
        let key = self.open(&mut inputs);
        let mut item = self.new_item();
        item.committed = true;
        let committed =
            self.event("input_audio_buffer.committed", json!({"item_id": item.id, "previous_item_id": self.last_item}));
        self.last_item = Some(item.id.clone());
        let mut samples = Vec::with_capacity(self.buffer.len() / 2);
        // Whole samples by construction (appends are checked).
        let _ = pcm::decode_frame(&std::mem::take(&mut self.buffer), PcmFormat::PcmS16le, &mut samples);
        if let Some(s) = self.sessions.get_mut(&key) {
            s.items.insert(s.utterances, item);
            s.utterances += 1;
        }
        inputs.push(Input::Send(committed));
        inputs.push(Input::Utterance { key, samples, rate: rate as u32 });
        inputs
    }

    fn clear(&mut self) -> Vec<Input> {
        let mut inputs = Vec::new();
        self.buffer.clear();
        if self.config.vad.is_some()
            && let Some(key) = self.close_current(&mut inputs)
            && let Some(s) = self.sessions.get_mut(&key)
        {
            s.discard = true;
        }
        inputs.push(Input::Send(self.event("input_audio_buffer.cleared", json!({}))));
        inputs
    }

    /// The item of `segment` in session `key`, made (and, under server VAD, its speech start
    /// told) the first time the segment is heard of.
    fn item(&mut self, key: &str, segment: u64, start_ms: u64, out: &mut Vec<String>) -> Option<(String, bool)> {
        if !self.sessions.get(key)?.items.contains_key(&segment) {
            let item = self.new_item();
            let s = self.sessions.get_mut(key)?;
            let start = s.offset_ms + start_ms;
            let manual = s.manual;
            let id = item.id.clone();
            s.items.insert(segment, item);
            if !manual {
                out.push(
                    self.event("input_audio_buffer.speech_started", json!({"audio_start_ms": start, "item_id": id})),
                );
            }
        }
        let s = self.sessions.get(key)?;
        s.items.get(&segment).map(|i| (i.id.clone(), s.manual))
    }

    /// Under server VAD, the end of speech and the commit of an item, before its result.
    fn commit_item(&mut self, key: &str, segment: u64, end_ms: u64, out: &mut Vec<String>) {
        let Some(s) = self.sessions.get_mut(key) else { return };
        let offset = s.offset_ms;
        let Some(item) = s.items.get_mut(&segment) else { return };
        if item.committed {
            return;
        }
        item.committed = true;
        let id = item.id.clone();
        out.push(
            self.event("input_audio_buffer.speech_stopped", json!({"audio_end_ms": offset + end_ms, "item_id": id})),
        );
        let previous = self.last_item.replace(id.clone());
        out.push(self.event("input_audio_buffer.committed", json!({"item_id": id, "previous_item_id": previous})));
    }

    /// Text past what was already said, when `text` extends it (deltas are never revised).
    fn delta(&mut self, key: &str, segment: u64, text: &str) -> Option<String> {
        let item = self.sessions.get_mut(key)?.items.get_mut(&segment)?;
        let rest = text.strip_prefix(item.said.as_str())?;
        if rest.is_empty() {
            return None;
        }
        item.said = text.to_string();
        Some(rest.to_string())
    }

    fn render_segment(&mut self, key: &str, seg: &crate::native::Segment, last: bool) -> Vec<String> {
        let mut out = Vec::new();
        // Finals of other sessions of a room are not part of this protocol.
        if seg.origin.is_some() || self.sessions.get(key).is_none_or(|s| s.discard) {
            return out;
        }
        let Some((id, manual)) = self.item(key, seg.segment, seg.start_ms, &mut out) else { return out };
        if !last {
            let settled: String = seg.text.chars().take(seg.stable.unwrap_or(0) as usize).collect();
            if let Some(d) = self.delta(key, seg.segment, &settled) {
                out.push(self.event(
                    "conversation.item.input_audio_transcription.delta",
                    json!({"item_id": id, "content_index": 0, "delta": d}),
                ));
            }
            return out;
        }
        if !manual {
            self.commit_item(key, seg.segment, seg.end_ms, &mut out);
        }
        if let Some(d) = self.delta(key, seg.segment, &seg.text) {
            out.push(self.event(
                "conversation.item.input_audio_transcription.delta",
                json!({"item_id": id, "content_index": 0, "delta": d}),
            ));
        }
        let mut body = json!({
            "item_id": id,
            "content_index": 0,
            "transcript": seg.text,
            "usage": {"type": "duration", "seconds": seg.end_ms.saturating_sub(seg.start_ms) as f64 / 1000.0},
        });
        if self.config.logprobs {
            body["logprobs"] = logprobs(&seg.words);
        }
        out.push(self.event("conversation.item.input_audio_transcription.completed", body));
        if let Some(s) = self.sessions.get_mut(key) {
            s.finals += 1;
            s.items.remove(&seg.segment);
        }
        out
    }

    fn render_error(&mut self, key: &str, code: ErrorCode, message: &str, segment: Option<u64>) -> Vec<String> {
        let mut out = Vec::new();
        let name = serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        if let Some(seg) = segment
            && self.sessions.get(key).is_some_and(|s| !s.discard)
            && let Some((id, manual)) = self.item(key, seg, 0, &mut out)
        {
            if !manual {
                self.commit_item(key, seg, 0, &mut out);
            }
            if let Some(s) = self.sessions.get_mut(key) {
                s.items.remove(&seg);
            }
            out.push(self.event(
                "conversation.item.input_audio_transcription.failed",
                json!({"item_id": id, "content_index": 0, "error": {"type": "server_error", "code": name, "message": message}}),
            ));
            return out;
        }
        let kind = match code {
            ErrorCode::Busy
            | ErrorCode::Internal
            | ErrorCode::Timeout
            | ErrorCode::GoingAway
            | ErrorCode::PluginFailed
            | ErrorCode::SegmentFailed => "server_error",
            _ => "invalid_request_error",
        };
        out.push(self.error(kind, &name, message, None, None));
        out
    }
}

fn parse_format(f: &Value) -> Result<Format, String> {
    if f.is_null() {
        return Ok(Config::default().format);
    }
    let kind = f.get("type").and_then(Value::as_str).unwrap_or("audio/pcm");
    match kind {
        "audio/pcm" => {
            let rate = f.get("rate").map_or(Some(24_000), Value::as_u64).unwrap_or(0);
            if !(8_000..=48_000).contains(&rate) {
                return Err(format!("audio/pcm rate {rate} is not supported (24000; 8000..=48000 are taken)"));
            }
            Ok(Format { codec: Codec::Pcm16, rate: rate as u32 })
        }
        "audio/pcmu" => Ok(Format { codec: Codec::Ulaw, rate: 8_000 }),
        "audio/pcma" => Ok(Format { codec: Codec::Alaw, rate: 8_000 }),
        other => Err(format!("unsupported audio format {other:?} (audio/pcm, audio/pcmu, audio/pcma)")),
    }
}

fn parse_vad(td: &Value) -> Result<Option<Vad>, String> {
    let Some(o) = td.as_object() else {
        return if td.is_null() { Ok(None) } else { Err("turn_detection must be an object or null".into()) };
    };
    let kind = o.get("type").and_then(Value::as_str).unwrap_or("server_vad");
    if kind != "server_vad" && kind != "semantic_vad" {
        return Err(format!("unsupported turn_detection type {kind:?} (server_vad, semantic_vad, or null)"));
    }
    let number = |name: &str| o.get(name).filter(|v| !v.is_null());
    let threshold = match number("threshold") {
        Some(v) => Some(v.as_f64().filter(|t| (0.0..=1.0).contains(t)).ok_or("threshold must be between 0 and 1")?),
        None => None,
    };
    let ms = |name: &str| -> Result<Option<u64>, String> {
        match number(name) {
            Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("{name} must be a whole number of ms")),
            None => Ok(None),
        }
    };
    let eagerness = o.get("eagerness").and_then(Value::as_str).map(str::to_string);
    if let Some(e) = &eagerness
        && !["low", "medium", "high", "auto"].contains(&e.as_str())
    {
        return Err(format!("eagerness {e:?} is not one of low, medium, high, auto"));
    }
    let known = ["type", "threshold", "prefix_padding_ms", "silence_duration_ms", "eagerness"];
    Ok(Some(Vad {
        kind: kind.to_string(),
        threshold,
        prefix_padding_ms: ms("prefix_padding_ms")?,
        silence_duration_ms: ms("silence_duration_ms")?,
        eagerness,
        extra: o.iter().filter(|(k, _)| !known.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect(),
    }))
}

impl Wire for Realtime {
    fn name(&self) -> &'static str {
        "openai-realtime"
    }

    fn greet(&mut self) -> Vec<String> {
        if self.beta {
            let session = self.beta_session_json();
            return vec![self.event("transcription_session.created", json!({ "session": session }))];
        }
        let session = self.session_json();
        vec![self.event("session.created", json!({ "session": session }))]
    }

    fn text(&mut self, text: &str) -> Vec<Input> {
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return vec![self.invalid("invalid_json", &format!("not a JSON event: {e}"), None, None)],
        };
        let client_event = v.get("event_id").and_then(Value::as_str).map(str::to_string);
        let ev = client_event.as_deref();
        match v.get("type").and_then(Value::as_str).unwrap_or("") {
            "session.update" => self.update(&v, ev, false),
            "transcription_session.update" => self.update_beta(&v, ev),
            "input_audio_buffer.append" => self.append(&v, ev),
            "input_audio_buffer.commit" => self.commit(ev),
            "input_audio_buffer.clear" => self.clear(),
            "" => self.missing("type", "every event needs a `type`", ev),
            other => {
                let msg = format!(
                    "event {other:?} is not supported in a transcription session (session.update, transcription_session.update, input_audio_buffer.append, .commit, .clear)"
                );
                vec![self.invalid("unsupported_event", &msg, Some("type"), ev)]
            }
        }
    }

    fn binary(&mut self, _bytes: &[u8]) -> Vec<Input> {
        let msg = "binary frames are not part of the Realtime API: send input_audio_buffer.append with base64 audio";
        vec![self.invalid("invalid_event", msg, None, None)]
    }

    fn render(&mut self, key: &str, msg: &ServerMessage) -> Vec<String> {
        match msg {
            // `session.created` went out when the socket opened.
            ServerMessage::Ready { .. } => Vec::new(),
            ServerMessage::Partial(seg) => self.render_segment(key, seg, false),
            ServerMessage::Final(seg) => self.render_segment(key, seg, true),
            ServerMessage::Error { code, message, segment, .. } => self.render_error(key, *code, message, *segment),
            ServerMessage::End { .. } => {
                let mut out = Vec::new();
                if let Some(s) = self.sessions.remove(key)
                    && s.commit_at.is_some_and(|n| n == s.finals)
                    && !s.discard
                {
                    out.push(self.error(
                        "invalid_request_error",
                        "input_audio_buffer_commit_empty",
                        "the committed audio held no speech",
                        None,
                        None,
                    ));
                }
                if self.current.as_deref() == Some(key) {
                    self.current = None;
                }
                out
            }
        }
    }

    fn closes_after_end(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::Segment;

    fn wire() -> Realtime {
        Realtime::new("t".into(), vec!["whisper-1".into(), "tiny.en".into()])
    }

    fn parse(frames: &[String]) -> Vec<Value> {
        frames.iter().map(|f| serde_json::from_str(f).unwrap()).collect()
    }

    fn sent(inputs: &[Input]) -> Vec<Value> {
        inputs
            .iter()
            .filter_map(|i| if let Input::Send(f) = i { Some(serde_json::from_str(f).unwrap()) } else { None })
            .collect()
    }

    fn seg(segment: u64, text: &str, stable: Option<u32>) -> Segment {
        Segment {
            seq: 0,
            segment,
            text: text.into(),
            start_ms: 1000,
            end_ms: 2500,
            words: vec![],
            origin: None,
            stable,
        }
    }

    fn append(w: &mut Realtime, samples: usize) -> Vec<Input> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(vec![0u8; samples * 2]);
        w.text(&json!({"type": "input_audio_buffer.append", "audio": b64}).to_string())
    }

    #[test]
    fn greets_with_the_session_and_streams_vad_items() {
        let mut w = wire();
        let created = parse(&w.greet());
        assert_eq!(created[0]["type"], "session.created");
        assert_eq!(created[0]["session"]["type"], "transcription");
        assert_eq!(created[0]["session"]["audio"]["input"]["format"]["rate"], 24000);
        let inputs = append(&mut w, 2400);
        assert!(matches!(&inputs[..], [Input::Start { start, .. }, Input::Audio { bytes, .. }]
            if start.sample_rate == 24_000 && bytes.len() == 4800));
        // Partials: only settled text, only what is new.
        let ev = parse(&w.render("s0", &ServerMessage::Partial(seg(0, "hello there wor", Some(5)))));
        assert_eq!(ev[0]["type"], "input_audio_buffer.speech_started");
        assert_eq!(ev[0]["audio_start_ms"], 1000);
        assert_eq!(
            (ev[1]["type"].as_str(), ev[1]["delta"].as_str()),
            (Some("conversation.item.input_audio_transcription.delta"), Some("hello"))
        );
        // A revision of settled text is never sent.
        assert!(w.render("s0", &ServerMessage::Partial(seg(0, "yellow there", Some(6)))).is_empty());
        let ev = parse(&w.render("s0", &ServerMessage::Final(seg(0, "hello there world", None))));
        let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "input_audio_buffer.speech_stopped",
                "input_audio_buffer.committed",
                "conversation.item.input_audio_transcription.delta",
                "conversation.item.input_audio_transcription.completed"
            ]
        );
        assert_eq!(ev[2]["delta"], " there world");
        assert_eq!(ev[3]["transcript"], "hello there world");
        assert_eq!(ev[1]["previous_item_id"], Value::Null);
        assert_eq!(ev[0]["item_id"], ev[3]["item_id"]);
        let first = ev[3]["item_id"].clone();
        let ev = parse(&w.render("s0", &ServerMessage::Final(seg(1, "again", None))));
        assert_eq!(ev[2]["type"], "input_audio_buffer.committed");
        assert_eq!(ev[2]["previous_item_id"], first);
        assert_ne!(ev[2]["item_id"], first);
    }

    #[test]
    fn manual_commits_send_one_utterance_each() {
        let mut w = wire();
        let up = w.text(r#"{"type":"session.update","session":{"type":"transcription","audio":{"input":{"turn_detection":null,"format":{"type":"audio/pcmu"}}}}}"#);
        assert_eq!(sent(&up)[0]["session"]["audio"]["input"]["turn_detection"], Value::Null);
        // Too little audio is refused, as OpenAI does.
        let b64 = base64::engine::general_purpose::STANDARD.encode([0xffu8; 400]);
        let first = w.text(&json!({"type": "input_audio_buffer.append", "audio": b64}).to_string());
        assert!(matches!(&first[..], [Input::Start { start, .. }] if start.sample_rate == 8000));
        let e = sent(&w.text(r#"{"type":"input_audio_buffer.commit","event_id":"c1"}"#));
        assert_eq!(
            (e[0]["error"]["code"].as_str(), e[0]["error"]["event_id"].as_str()),
            (Some("input_audio_buffer_commit_empty"), Some("c1"))
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode([0xffu8; 800]);
        w.text(&json!({"type": "input_audio_buffer.append", "audio": b64}).to_string());
        let c = w.text(r#"{"type":"input_audio_buffer.commit"}"#);
        assert!(matches!(&c[1], Input::Utterance { samples, rate: 8000, .. } if samples.len() == 1200));
        let committed = &sent(&c)[0];
        assert_eq!(committed["type"], "input_audio_buffer.committed");
        let ev = parse(&w.render("s0", &ServerMessage::Final(seg(0, "ten of clubs", None))));
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(ev[1]["item_id"], committed["item_id"]);
        assert_eq!(ev[1]["usage"]["type"], "duration");
    }

    #[test]
    fn updates_restart_the_cut_and_refuse_what_cannot_be_honoured() {
        let mut w = wire();
        append(&mut w, 240);
        let up = w.text(r#"{"type":"session.update","session":{"type":"transcription","audio":{"input":{"turn_detection":{"type":"server_vad","silence_duration_ms":250,"threshold":0.5,"prefix_padding_ms":100}}}}}"#);
        assert!(matches!(&up[0], Input::Stop { key } if key == "s0"));
        let next = append(&mut w, 240);
        let Input::Start { start, .. } = &next[0] else { panic!("{next:?}") };
        assert_eq!(start.plugins["segmenter"]["hangover_ms"], "250");
        assert_eq!(start.plugins["segmenter"]["pad_ms"], "100");
        assert_eq!(start.plugins["segmenter"]["threshold_ratio"], "3.500");
        for bad in [
            r#"{"type":"session.update","session":{"type":"realtime"}}"#,
            r#"{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/opus"}}}}}"#,
            r#"{"type":"session.update","session":{"audio":{"input":{"transcription":{"model":"gpt-9"}}}}}"#,
            r#"{"type":"response.create"}"#,
            r#"{"type":"input_audio_buffer.append","audio":"%%%"}"#,
            "not json",
        ] {
            let e = sent(&w.text(bad));
            assert_eq!(e[0]["type"], "error", "{bad}");
            assert_eq!(e[0]["error"]["type"], "invalid_request_error", "{bad}");
        }
        assert_eq!(sent(&w.binary(&[1, 2]))[0]["type"], "error");
    }

    #[test]
    fn the_beta_schema_is_read_and_answered_in_kind() {
        let mut w = wire().beta();
        assert_eq!(parse(&w.greet())[0]["type"], "transcription_session.created");
        let up = w.text(r#"{"type":"transcription_session.update","session":{"input_audio_format":"g711_ulaw","input_audio_transcription":{"model":"whisper-1","language":"en"},"turn_detection":{"type":"server_vad","silence_duration_ms":300}}}"#);
        let e = &sent(&up)[0];
        assert_eq!(e["type"], "transcription_session.updated");
        assert_eq!(e["session"]["input_audio_format"], "g711_ulaw");
        assert_eq!(e["session"]["turn_detection"]["silence_duration_ms"], 300);
        let b64 = base64::engine::general_purpose::STANDARD.encode([0xffu8; 800]);
        let a = w.text(&json!({"type": "input_audio_buffer.append", "audio": b64}).to_string());
        let Input::Start { start, .. } = &a[0] else { panic!("{a:?}") };
        assert_eq!((start.sample_rate, start.language.as_deref()), (8000, Some("en")));
        assert_eq!(start.plugins["segmenter"]["hangover_ms"], "300");
        let bad = w.text(r#"{"type":"transcription_session.update","session":{"input_audio_format":"opus"}}"#);
        assert_eq!(sent(&bad)[0]["error"]["param"], "session.input_audio_format");
    }

    #[test]
    fn a_cleared_buffer_tells_nothing_of_its_audio() {
        let mut w = wire();
        append(&mut w, 2400);
        let c = w.text(r#"{"type":"input_audio_buffer.clear"}"#);
        assert!(matches!(&c[0], Input::Stop { .. }));
        assert_eq!(sent(&c)[0]["type"], "input_audio_buffer.cleared");
        assert!(w.render("s0", &ServerMessage::Final(seg(0, "gone", None))).is_empty());
        assert!(w.render("s0", &ServerMessage::End { segments: 1 }).is_empty());
    }

    #[test]
    fn failures_name_their_item() {
        let mut w = wire();
        append(&mut w, 2400);
        let mut e = ServerMessage::error(ErrorCode::SegmentFailed, "model failed");
        if let ServerMessage::Error { segment, .. } = &mut e {
            *segment = Some(3);
        }
        let ev = parse(&w.render("s0", &e));
        assert_eq!(ev.last().unwrap()["type"], "conversation.item.input_audio_transcription.failed");
        let ev = parse(&w.render("", &ServerMessage::error(ErrorCode::IdleTimeout, "idle")));
        assert_eq!((ev[0]["type"].as_str(), ev[0]["error"]["code"].as_str()), (Some("error"), Some("idle_timeout")));
    }
}
