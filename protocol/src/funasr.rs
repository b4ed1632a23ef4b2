//! The FunASR runtime WebSocket protocol (`runtime/docs/websocket_protocol.md` of
//! modelscope/FunASR), so that FunASR clients work against Kiki unchanged. Where the document is
//! silent, Kiki does what FunASR's own servers do (`websocket-server-2pass.cpp`,
//! `funasr_wss_server.py`).
//!
//! The client opens with a JSON configuration (`mode`, `chunk_size`, `wav_name`, `is_speaking`,
//! `hotwords`, `itn`, `audio_fs`, `wav_format`), streams binary audio, and ends the stream with
//! `{"is_speaking": false}`. A configuration message during a stream updates it (the HTML5
//! client repeats `mode` and `chunk_size` in its stop message); after a stream ended, the next
//! configuration, or more audio, starts the next one. `wav_format` `pcm` (any case) streams;
//! other formats are gathered and decoded at the end as one utterance (WAV files). The server
//! answers `{"mode", "wav_name", "text", "is_final", "timestamp"}`:
//! - `online`: only text that will not change, which the client appends: a word goes out once two
//!   partials in a row agree on it, and the final adds the words past those sent.
//! - `2pass-online`: increments while a revision extends the text already sent; the sentence's
//!   `2pass-offline` result then replaces them.
//! - `2pass-offline`: the text of one finished sentence (a Kiki final), with spans in
//!   `timestamp` (`"[[start_ms,end_ms],...]"`) in FunASR's granularity: one per Latin word, one
//!   per character of anything else, increasing and never overlapping.
//! - `offline`: one result for the whole stream at its end, as FunASR's offline servers answer,
//!   with `timestamp` and `stamp_sents` (one entry per sentence).
//! - the stream's last result goes out with `is_final: true` (and `is_end: true`, which newer
//!   clients wait for): in 2pass the last sentence, as FunASR's 2pass server sends it (empty if
//!   none came after the stop). Errors carry `error` and `code`, with the stream's configured
//!   `mode` and empty `text` as FunASR's Python server sends them; a stream refused at its start
//!   ends with `is_final: false` and `is_end: true`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::native::{ErrorCode, ServerMessage, Start};
use crate::pcm::PcmFormat;
use crate::wav::parse_wav;
use crate::wire::{Input, Wire};

/// The milliseconds one FunASR chunk unit stands for (`chunk_size = [5, 10, 5]` is 600 ms).
const CHUNK_UNIT_MS: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Offline,
    Online,
    TwoPass,
}

impl Mode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "offline" => Some(Mode::Offline),
            "online" => Some(Mode::Online),
            "2pass" => Some(Mode::TwoPass),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Offline => "offline",
            Mode::Online => "online",
            Mode::TwoPass => "2pass",
        }
    }

    fn streaming_name(self) -> &'static str {
        match self {
            Mode::TwoPass => "2pass-online",
            _ => "online",
        }
    }

    fn sentence_name(self) -> &'static str {
        match self {
            Mode::TwoPass => "2pass-offline",
            Mode::Online => "online",
            Mode::Offline => "offline",
        }
    }
}

/// Bytes a stream in a container format (`wav_format` other than PCM) may send; it is decoded
/// whole at its end (about 25 minutes of 16 kHz 16-bit WAV).
const MAX_FILE_BYTES: usize = 48 << 20;

/// One audio stream of the socket (FunASR's `wav_name`).
#[derive(Debug)]
struct Stream {
    mode: Mode,
    wav_name: String,
    /// 2pass: streaming text of the current sentence already sent (the client's increments).
    sent: String,
    /// The segment `sent` (2pass) or `committed` (online) belongs to.
    sent_segment: u64,
    /// Online: words of the current sentence sent, and the words of its last partial. A word is
    /// sent once two partials in a row agree on it, so online text is never taken back.
    committed: usize,
    last_partial: Vec<String>,
    /// Whether a sentence's text went out already (a later one is spaced from it).
    spoke: bool,
    /// The client said `is_speaking: false`: the stream's last sentence is held back to go out
    /// with `is_final: true`, where FunASR's 2pass server puts it.
    stopping: bool,
    held: Option<Value>,
    /// End of the last timestamp span sent: spans never go back.
    stamp_end: u64,
    /// A stream in a container format (`wav_format` `wav` or another): its bytes, decoded at
    /// its end as one utterance, like FunASR's offline server does.
    file: Option<Vec<u8>>,
    /// Offline mode: the sentences so far, sent as one result at the end (FunASR's offline
    /// servers answer a stream with one message), with their spans.
    sentences: Vec<(String, Value)>,
    spans: Vec<[u64; 2]>,
}

impl Stream {
    fn new(mode: Mode, wav_name: String, file: bool) -> Self {
        Self {
            mode,
            wav_name,
            sent: String::new(),
            sent_segment: 0,
            committed: 0,
            last_partial: Vec::new(),
            spoke: false,
            stopping: false,
            held: None,
            stamp_end: 0,
            file: file.then(Vec::new),
            sentences: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// Offline mode's one result: every sentence, with `timestamp` and FunASR's `stamp_sents`.
    fn offline_result(self) -> Value {
        let (texts, sents): (Vec<String>, Vec<Value>) = self.sentences.into_iter().unzip();
        let text = crate::kikipounamu::join(texts.into_iter());
        let mut m = json!({"mode": "offline", "wav_name": self.wav_name, "text": text, "is_final": true});
        if !self.spans.is_empty() {
            m["timestamp"] = json!(stamp_string(&self.spans));
            m["stamp_sents"] = Value::Array(sents);
        }
        m
    }

    /// 2pass mode: an increment while a revision extends the text already sent (the client
    /// appends it); the sentence's offline result then replaces the increments.
    fn two_pass_partial(&mut self, segment: u64, text: &str) -> Option<Value> {
        if self.sent_segment != segment {
            self.sent_segment = segment;
            self.sent.clear();
        }
        let delta = text.strip_prefix(self.sent.as_str())?.to_string();
        let opening = self.sent.is_empty();
        self.sent = text.to_string();
        (!delta.is_empty()).then(|| {
            let delta = if opening { self.spaced(delta) } else { delta };
            json!({"mode": self.mode.streaming_name(), "wav_name": self.wav_name, "text": delta, "is_final": false})
        })
    }

    /// A sentence after the first, spaced from it when it starts with a Latin letter or digit:
    /// FunASR's clients concatenate sentences as they come ("dog.I would" otherwise); Chinese
    /// text joins directly.
    fn spaced(&self, text: String) -> String {
        if self.spoke && text.starts_with(|c: char| c.is_ascii_alphanumeric()) { format!(" {text}") } else { text }
    }

    /// Online mode: the words two partials in a row agree on and not yet sent.
    fn online_partial(&mut self, segment: u64, text: &str) -> Option<Value> {
        if self.sent_segment != segment {
            self.sent_segment = segment;
            self.committed = 0;
            self.last_partial.clear();
        }
        let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        let agreed = words.iter().zip(&self.last_partial).take_while(|(a, b)| a == b).count();
        let delta = (agreed > self.committed).then(|| words[self.committed..agreed].join(" "));
        let continuing = self.committed > 0;
        self.committed = self.committed.max(agreed);
        self.last_partial = words;
        delta.map(|d| self.online_message(d, continuing))
    }

    /// Online mode: the final's words past those already sent (by count: what was sent stays).
    fn online_final(&mut self, segment: u64, text: &str) -> Option<Value> {
        let committed = if self.sent_segment == segment { self.committed } else { 0 };
        let words: Vec<&str> = text.split_whitespace().collect();
        self.sent_segment = segment + 1;
        self.committed = 0;
        self.last_partial.clear();
        let rest = words.get(committed..).filter(|r| !r.is_empty())?;
        Some(self.online_message(rest.join(" "), committed > 0))
    }

    fn online_message(&mut self, text: String, continuing: bool) -> Value {
        let text = if continuing { format!(" {text}") } else { self.spaced(text) };
        self.spoke = true;
        json!({"mode": "online", "wav_name": self.wav_name, "text": text, "is_final": false})
    }

    /// Spans as FunASR gives them: one per word of Latin letters, one per character of
    /// anything else (Chinese, digits, words with an apostrophe), after splitting at spaces and
    /// the punctuation FunASR's HTML5 client splits at, so that its page finds one span for each
    /// piece it counts. Spans are increasing, at least 1 ms long, and never overlap.
    fn spans(&mut self, words: &[crate::native::Word]) -> Vec<[u64; 2]> {
        let mut spans = Vec::new();
        for w in words {
            let units: u64 = stamp_pieces(&w.text)
                .map(|p| if p.chars().all(|c| c.is_ascii_alphabetic()) { 1 } else { p.encode_utf16().count() as u64 })
                .sum();
            if units == 0 {
                continue;
            }
            let start = w.start_ms.max(self.stamp_end);
            let end = w.end_ms.max(start + units);
            for k in 0..units {
                spans.push([start + (end - start) * k / units, start + (end - start) * (k + 1) / units]);
            }
            self.stamp_end = end;
        }
        spans
    }
}

/// Spans as FunASR's `timestamp` string: `"[[100,200],[200,500]]"`.
fn stamp_string(spans: &[[u64; 2]]) -> String {
    serde_json::to_string(spans).unwrap_or_else(|_| "[]".into())
}

/// The pieces of `text` FunASR's HTML5 client gives a timestamp each (or one per character).
fn stamp_pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split(['。', '？', '，', '、', '?', '.', ' ', ',']).filter(|p| !p.is_empty())
}

#[derive(Debug, Default)]
pub struct FunAsr {
    streams: HashMap<String, Stream>,
    /// The stream binary frames and `is_speaking: false` belong to.
    current: Option<String>,
    opened: u64,
    /// The configuration in force: audio after a stream ended opens the next one with it, as
    /// FunASR's servers go on listening after `is_speaking: false`.
    config: Option<Map<String, Value>>,
}

impl FunAsr {
    pub fn new() -> Self {
        Self::default()
    }

    fn reject(&self, code: ErrorCode, message: impl Into<String>) -> Input {
        Input::Reject { key: self.current.clone().unwrap_or_default(), error: ServerMessage::error(code, message) }
    }

    fn configure(&mut self, cfg: &Map<String, Value>) -> Vec<Input> {
        let mode_name = cfg.get("mode").and_then(Value::as_str).unwrap_or("2pass");
        let Some(mode) = Mode::parse(mode_name) else {
            return vec![
                self.reject(ErrorCode::InvalidOption, format!("mode {mode_name:?} is not offline, online or 2pass")),
            ];
        };
        // FunASR's 2pass server takes `pcm` and `PCM` streams; its offline server decodes any
        // container. Other formats are gathered and decoded at the end (WAV only).
        let file = cfg.get("wav_format").and_then(Value::as_str).is_some_and(|f| !f.eq_ignore_ascii_case("pcm"));
        let rate = match cfg.get("audio_fs") {
            None | Some(Value::Null) => 16_000,
            Some(v) => match v.as_u64().and_then(|r| u32::try_from(r).ok()) {
                Some(r) => r,
                None => return vec![self.reject(ErrorCode::UnsupportedFormat, format!("audio_fs {v} is not a rate"))],
            },
        };
        // Streaming results come at the client's chunk cadence (`chunk_size[1]` × 60 ms).
        let chunk_ms = cfg
            .get("chunk_size")
            .and_then(Value::as_array)
            .and_then(|a| a.get(1))
            .and_then(Value::as_u64)
            .map_or(600, |c| c.saturating_mul(CHUNK_UNIT_MS))
            .clamp(200, 5_000);
        let partial_ms = if mode == Mode::Offline || file { 0 } else { chunk_ms };
        let mut segmenter = Map::new();
        segmenter.insert("partial_ms".into(), json!(partial_ms.to_string()));
        let mut plugins = Map::new();
        plugins.insert("segmenter".into(), Value::Object(segmenter));
        // `itn: false` (FunASR's `--use_itn 0`): the default post-processor's inverse text
        // normalisation and number formatting off. Whisper itself still writes some numbers as
        // digits.
        if cfg.get("itn").and_then(Value::as_bool) == Some(false) {
            plugins.insert("postprocessor".into(), json!({"itn": "false", "normalize_numbers": "false"}));
        }
        self.opened += 1;
        let key = format!("funasr-{}", self.opened);
        let wav_name = cfg.get("wav_name").and_then(Value::as_str).unwrap_or("demo").to_string();
        self.streams.insert(key.clone(), Stream::new(mode, wav_name, file));
        self.current = Some(key.clone());
        let mut kept = cfg.clone();
        kept.remove("is_speaking");
        self.config = Some(kept);
        let start = Start {
            sample_rate: rate,
            format: PcmFormat::PcmS16le,
            hotwords: cfg.get("hotwords").map(parse_hotwords).unwrap_or_default(),
            plugins,
            ..Start::default()
        };
        let mut out = vec![Input::Start { key: key.clone(), start }];
        if ends_input(cfg) {
            out.extend(self.stop(key));
        }
        out
    }

    /// A configuration message during a stream updates it, as FunASR's servers do (the HTML5
    /// client repeats `mode` and `chunk_size` in its stop message).
    fn update(&mut self, key: &str, cfg: &Map<String, Value>) {
        if let Some(config) = self.config.as_mut() {
            config.extend(cfg.iter().filter(|(k, _)| *k != "is_speaking").map(|(k, v)| (k.clone(), v.clone())));
        }
        let Some(s) = self.streams.get_mut(key) else { return };
        if let Some(name) = cfg.get("wav_name").and_then(Value::as_str) {
            s.wav_name = name.to_string();
        }
        // A new mode changes how results are told; the session's partials stay as they were.
        if let Some(mode) = cfg.get("mode").and_then(Value::as_str).and_then(Mode::parse) {
            s.mode = mode;
        }
    }

    /// The end of a stream's input: a gathered file is decoded and sent as one utterance.
    fn stop(&mut self, key: String) -> Vec<Input> {
        self.current = None;
        let Some(s) = self.streams.get_mut(&key) else { return vec![Input::Stop { key }] };
        s.stopping = true;
        let mut out = Vec::new();
        if let Some(bytes) = s.file.take() {
            match parse_wav(&bytes) {
                Ok(pcm) => out.push(Input::Utterance { key: key.clone(), samples: pcm.samples, rate: pcm.rate }),
                Err(e) => out.push(Input::Reject {
                    key: key.clone(),
                    error: ServerMessage::error(
                        ErrorCode::UnsupportedFormat,
                        format!("wav_format: only PCM streams and WAV files are taken ({e})"),
                    ),
                }),
            }
        }
        out.push(Input::Stop { key });
        out
    }
}

/// Whether a message ends the stream's input (`is_speaking: false`; older clients send
/// `is_finished: true`).
fn ends_input(cfg: &Map<String, Value>) -> bool {
    cfg.get("is_speaking").and_then(Value::as_bool) == Some(false)
        || cfg.get("is_finished").and_then(Value::as_bool) == Some(true)
}

/// `hotwords` as FunASR clients send them: a JSON object of word → weight in a string
/// (`"{\"阿里巴巴\":20}"`), words separated by commas, or by spaces.
fn parse_hotwords(v: &Value) -> Vec<String> {
    let Some(s) = v.as_str() else { return Vec::new() };
    let s = s.trim();
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(s) {
        return map.keys().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect();
    }
    let sep: &[char] = if s.contains(',') { &[','] } else { &[' ', '\t', '\n'] };
    s.split(sep).map(str::trim).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

impl Wire for FunAsr {
    fn name(&self) -> &'static str {
        "funasr"
    }

    fn text(&mut self, text: &str) -> Vec<Input> {
        let cfg = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) | Err(_) => return vec![self.reject(ErrorCode::BadMessage, "expected a JSON object")],
        };
        match self.current.clone() {
            Some(key) => {
                self.update(&key, &cfg);
                if ends_input(&cfg) { self.stop(key) } else { Vec::new() }
            }
            // A stop with no stream open is passed over, as FunASR's servers do (funasr-client
            // sends a second one as it closes).
            None if ends_input(&cfg) && !cfg.contains_key("mode") => Vec::new(),
            None => self.configure(&cfg),
        }
    }

    fn binary(&mut self, bytes: &[u8]) -> Vec<Input> {
        let mut out = Vec::new();
        if self.current.is_none() {
            // Audio after a stream ended: the next stream, with the configuration in force.
            match self.config.clone() {
                Some(cfg) => out = self.configure(&cfg),
                None => return vec![self.reject(ErrorCode::NotStarted, "audio before the configuration message")],
            }
        }
        let Some(key) = self.current.clone() else { return out };
        match self.streams.get_mut(&key).and_then(|s| s.file.as_mut()) {
            Some(file) if file.len() + bytes.len() > MAX_FILE_BYTES => {
                file.clear();
                out.push(Input::Reject {
                    key,
                    error: ServerMessage::error(
                        ErrorCode::FrameTooLarge,
                        format!(
                            "a file stream over {MAX_FILE_BYTES} bytes: send PCM (wav_format \"pcm\") to stream it"
                        ),
                    ),
                });
            }
            Some(file) => file.extend_from_slice(bytes),
            None => out.push(Input::Audio { key, bytes: bytes.to_vec() }),
        }
        out
    }

    fn render(&mut self, key: &str, msg: &ServerMessage) -> Vec<String> {
        let out = match msg {
            ServerMessage::Ready { .. } => None,
            ServerMessage::Partial(seg) if seg.origin.is_none() => match self.streams.get_mut(key) {
                Some(s) if s.mode == Mode::Online => s.online_partial(seg.segment, &seg.text),
                Some(s) if s.mode == Mode::TwoPass => s.two_pass_partial(seg.segment, &seg.text),
                _ => None,
            },
            ServerMessage::Final(seg) if seg.origin.is_none() => {
                let Some(s) = self.streams.get_mut(key) else { return Vec::new() };
                let m = match s.mode {
                    Mode::Online => s.online_final(seg.segment, &seg.text),
                    Mode::Offline => {
                        let spans = s.spans(&seg.words);
                        if !seg.text.is_empty() {
                            let sent = json!({"text_seg": seg.text, "punc": "", "start": seg.start_ms, "end": seg.end_ms, "ts_list": spans});
                            s.sentences.push((seg.text.clone(), sent));
                        }
                        s.spans.extend(spans);
                        None
                    }
                    Mode::TwoPass => {
                        let text = s.spaced(seg.text.clone());
                        s.spoke |= !text.is_empty();
                        let mut m =
                            json!({"mode": "2pass-offline", "wav_name": s.wav_name, "text": text, "is_final": false});
                        let spans = s.spans(&seg.words);
                        if !spans.is_empty() {
                            m["timestamp"] = json!(stamp_string(&spans));
                        }
                        s.sent.clear();
                        s.sent_segment = seg.segment + 1;
                        Some(m)
                    }
                };
                // After the client's stop, the latest sentence waits for the end (see `held`).
                match m {
                    Some(m) if s.stopping => s.held.replace(m),
                    m => m,
                }
            }
            ServerMessage::Partial(_) | ServerMessage::Final(_) => None,
            ServerMessage::Error { code, message, .. } => {
                let fatal =
                    !self.streams.contains_key(key) || matches!(code, ErrorCode::Timeout | ErrorCode::IdleTimeout);
                // `mode` too, the stream's as configured, as FunASR's Python server tells errors:
                // funasr-client reads it from every message (and fails without it); with empty
                // text, clients that show results show nothing for it.
                let mode = self.streams.get(key).map_or("offline", |s| s.mode.name());
                let mut m = json!({"mode": mode, "text": "", "is_final": false, "error": message, "code": code});
                if fatal {
                    // A stream that could not start (or was cut off) ends here for the client.
                    m["is_end"] = json!(true);
                }
                Some(m)
            }
            ServerMessage::End { .. } => self.streams.remove(key).map(|s| {
                let mut last = match (s.mode, s.held.is_some()) {
                    (Mode::Offline, _) => s.offline_result(),
                    (_, true) => s.held.unwrap_or_default(),
                    (mode, false) => {
                        json!({"mode": mode.sentence_name(), "wav_name": s.wav_name, "text": "", "is_final": true})
                    }
                };
                last["is_final"] = json!(true);
                last["is_end"] = json!(true);
                last
            }),
        };
        out.map(|v| vec![v.to_string()]).unwrap_or_default()
    }

    fn closes_after_end(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::Segment;

    fn seg(segment: u64, text: &str) -> Segment {
        Segment {
            seq: 1,
            segment,
            text: text.into(),
            start_ms: 0,
            end_ms: 900,
            words: vec![],
            origin: None,
            stable: None,
        }
    }

    fn parsed(frames: Vec<String>) -> Vec<Value> {
        frames.iter().map(|f| serde_json::from_str(f).unwrap()).collect()
    }

    #[test]
    fn a_2pass_stream_maps_to_a_session() {
        let mut w = FunAsr::new();
        let first = r#"{"mode":"2pass","chunk_size":[5,10,5],"chunk_interval":10,"wav_name":"mic","is_speaking":true,"hotwords":"{\"Kiki\":20,\"Redis\":30}","itn":true,"audio_fs":8000}"#;
        let inputs = w.text(first);
        let [Input::Start { key, start }] = &inputs[..] else { panic!("{inputs:?}") };
        assert_eq!(start.sample_rate, 8000);
        assert_eq!(start.hotwords, vec!["Kiki".to_string(), "Redis".to_string()]);
        assert_eq!(start.plugins["segmenter"]["partial_ms"], "600");
        assert!(start.plugins.get("postprocessor").is_none(), "itn true: the default post-processing");
        let key = key.clone();
        assert_eq!(w.binary(&[0, 0]), vec![Input::Audio { key: key.clone(), bytes: vec![0, 0] }]);
        // Increments while revisions grow; the offline sentence then replaces them.
        let p = parsed(w.render(&key, &ServerMessage::Partial(seg(0, "hello"))));
        assert_eq!((p[0]["mode"].as_str(), p[0]["text"].as_str()), (Some("2pass-online"), Some("hello")));
        let p = parsed(w.render(&key, &ServerMessage::Partial(seg(0, "hello there"))));
        assert_eq!(p[0]["text"], " there");
        assert!(w.render(&key, &ServerMessage::Partial(seg(0, "yellow there"))).is_empty(), "not an extension");
        let f = parsed(w.render(&key, &ServerMessage::Final(seg(0, "Hello there."))));
        assert_eq!((f[0]["mode"].as_str(), f[0]["is_final"].as_bool()), (Some("2pass-offline"), Some(false)));
        // The next sentence is spaced from the last (clients concatenate them).
        let p = parsed(w.render(&key, &ServerMessage::Partial(seg(1, "next"))));
        assert_eq!(p[0]["text"], " next");
        assert_eq!(w.text(r#"{"is_speaking": false}"#), vec![Input::Stop { key: key.clone() }]);
        let end = parsed(w.render(&key, &ServerMessage::End { segments: 1 }));
        assert_eq!((end[0]["is_final"].as_bool(), end[0]["is_end"].as_bool()), (Some(true), Some(true)));
        // The next configuration on the same socket opens the next stream.
        assert!(
            matches!(&w.text(r#"{"mode":"offline","wav_name":"b"}"#)[..], [Input::Start { key: k, .. }] if *k != key)
        );
    }

    #[test]
    fn bad_frames_get_errors() {
        let mut w = FunAsr::new();
        assert!(matches!(&w.binary(&[1, 2])[..], [Input::Reject { .. }]));
        assert!(matches!(&w.text("[1,2]")[..], [Input::Reject { .. }]));
        // A stop with no stream open is passed over (funasr-client sends a second one).
        assert!(w.text(r#"{"is_speaking": false}"#).is_empty());
        assert!(matches!(&w.text(r#"{"mode":"sideways"}"#)[..], [Input::Reject { .. }]));
        assert_eq!(parse_hotwords(&json!("alpha beta")), vec!["alpha", "beta"]);
        assert_eq!(parse_hotwords(&json!("Kiki Redis, hello world")), vec!["Kiki Redis", "hello world"]);
    }

    fn word(text: &str, start_ms: u64, end_ms: u64) -> crate::native::Word {
        crate::native::Word { text: text.into(), start_ms, end_ms, probability: 1.0 }
    }

    fn started(w: &mut FunAsr, cfg: &str) -> String {
        match &w.text(cfg)[..] {
            [Input::Start { key, .. }] => key.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_configuration_during_a_stream_updates_it() {
        let mut w = FunAsr::new();
        let key = started(
            &mut w,
            r#"{"mode":"2pass","chunk_size":[5,10,5],"wav_name":"h5","is_speaking":true,"wav_format":"PCM"}"#,
        );
        assert_eq!(w.binary(&[0, 0]), vec![Input::Audio { key: key.clone(), bytes: vec![0, 0] }]);
        // The HTML5 client's stop repeats the configuration: it stops this stream.
        let stop = r#"{"chunk_size":[5,10,5],"wav_name":"h5","is_speaking":false,"chunk_interval":10,"mode":"2pass"}"#;
        assert_eq!(w.text(stop), vec![Input::Stop { key: key.clone() }]);
        // Audio after the end starts the next stream with the configuration in force.
        let next = w.binary(&[1, 0]);
        let [Input::Start { key: k2, .. }, Input::Audio { key: k3, .. }] = &next[..] else { panic!("{next:?}") };
        assert!(k2 == k3 && *k2 != key);
    }

    #[test]
    fn itn_false_turns_number_formatting_off() {
        let mut w = FunAsr::new();
        let inputs = w.text(r#"{"mode":"offline","itn":false}"#);
        let [Input::Start { start, .. }] = &inputs[..] else { panic!("{inputs:?}") };
        assert_eq!(start.plugins["postprocessor"], json!({"itn": "false", "normalize_numbers": "false"}));
    }

    #[test]
    fn a_wav_stream_is_decoded_at_its_end() {
        let mut w = FunAsr::new();
        let key = started(&mut w, r#"{"mode":"offline","wav_name":"f","wav_format":"wav","is_speaking":true}"#);
        let file = crate::wav::write_wav(&[0.25; 8000], 8000);
        let (a, b) = file.split_at(30);
        assert!(w.binary(a).is_empty() && w.binary(b).is_empty());
        let end = w.text(r#"{"is_speaking":false}"#);
        let [Input::Utterance { samples, rate: 8000, .. }, Input::Stop { key: k }] = &end[..] else {
            panic!("{end:?}")
        };
        assert_eq!((samples.len(), k), (8000, &key));
        // Not a WAV file: a clear error, and the stream ends.
        let key = started(&mut w, r#"{"mode":"offline","wav_format":"mp3"}"#);
        assert!(w.binary(b"ID3 not a wav").is_empty());
        let end = w.text(r#"{"is_speaking":false}"#);
        assert!(
            matches!(&end[..], [Input::Reject { error: ServerMessage::Error { code: ErrorCode::UnsupportedFormat, .. }, .. }, Input::Stop { key: k }] if *k == key),
            "{end:?}"
        );
    }

    #[test]
    fn online_text_is_sent_once_settled_and_never_repeated() {
        let mut w = FunAsr::new();
        let key = started(&mut w, r#"{"mode":"online","chunk_size":[5,10,5]}"#);
        let mut text = String::new();
        let mut feed = |w: &mut FunAsr, m: ServerMessage| {
            for v in parsed(w.render(&key, &m)) {
                text.push_str(v["text"].as_str().unwrap());
            }
        };
        feed(&mut w, ServerMessage::Partial(seg(0, "go for")));
        feed(&mut w, ServerMessage::Partial(seg(0, "go forward")));
        feed(&mut w, ServerMessage::Partial(seg(0, "go forward ten")));
        feed(&mut w, ServerMessage::Partial(seg(0, "go forward ten meters")));
        feed(&mut w, ServerMessage::Final(seg(0, "Go forward 10 meters.")));
        feed(&mut w, ServerMessage::Partial(seg(1, "then stop")));
        feed(&mut w, ServerMessage::Partial(seg(1, "then stop")));
        feed(&mut w, ServerMessage::Final(seg(1, "Then stop.")));
        // Settled words stay as sent; the final adds the rest ("10" was sent as "ten").
        assert_eq!(text, "go forward ten meters. then stop");
    }

    #[test]
    fn the_last_sentence_comes_with_is_final() {
        let mut w = FunAsr::new();
        let key = started(&mut w, r#"{"mode":"2pass"}"#);
        assert_eq!(parsed(w.render(&key, &ServerMessage::Final(seg(0, "One.")))).len(), 1);
        assert_eq!(w.text(r#"{"is_speaking":false}"#), vec![Input::Stop { key: key.clone() }]);
        assert!(w.render(&key, &ServerMessage::Final(seg(1, "Two."))).is_empty());
        let two = parsed(w.render(&key, &ServerMessage::Final(seg(2, "Three."))));
        assert_eq!((two[0]["text"].as_str(), two[0]["is_final"].as_bool()), (Some(" Two."), Some(false)));
        let end = parsed(w.render(&key, &ServerMessage::End { segments: 3 }));
        assert_eq!(end[0]["text"], " Three.");
        assert_eq!(end[0]["mode"], "2pass-offline");
        assert_eq!((end[0]["is_final"].as_bool(), end[0]["is_end"].as_bool()), (Some(true), Some(true)));
    }

    #[test]
    fn timestamps_follow_funasr_granularity() {
        let mut s = Stream::new(Mode::Offline, "t".into(), false);
        let words = [word("Go", 0, 300), word("10", 300, 700), word("meters.", 650, 1000), word("你好", 0, 0)];
        let spans = s.spans(&words);
        assert_eq!(stamp_string(&spans), "[[0,300],[300,500],[500,700],[700,1000],[1000,1001],[1001,1002]]");
        // The next sentence's spans start after these.
        assert_eq!(
            stamp_string(&s.spans(&[word("it's", 900, 1100)])),
            "[[1002,1026],[1026,1051],[1051,1075],[1075,1100]]"
        );
    }

    #[test]
    fn offline_mode_answers_once_for_the_stream() {
        let mut w = FunAsr::new();
        let key = started(&mut w, r#"{"mode":"offline","wav_name":"f"}"#);
        let mut one = seg(0, "Go 10 meters.");
        one.words = vec![word("Go", 0, 300), word("10", 300, 700), word("meters.", 700, 900)];
        assert!(w.render(&key, &ServerMessage::Final(one)).is_empty());
        let mut two = seg(1, "Stop.");
        two.words = vec![word("Stop.", 1000, 1400)];
        assert!(w.render(&key, &ServerMessage::Final(two)).is_empty());
        w.text(r#"{"is_speaking":false}"#);
        let end = parsed(w.render(&key, &ServerMessage::End { segments: 2 }));
        assert_eq!(end.len(), 1);
        assert_eq!((end[0]["mode"].as_str(), end[0]["text"].as_str()), (Some("offline"), Some("Go 10 meters. Stop.")));
        assert_eq!((end[0]["is_final"].as_bool(), end[0]["is_end"].as_bool()), (Some(true), Some(true)));
        assert_eq!(end[0]["timestamp"], "[[0,300],[300,500],[500,700],[700,900],[1000,1400]]");
        assert_eq!(
            end[0]["stamp_sents"][1],
            json!({"text_seg": "Stop.", "punc": "", "start": 0, "end": 900, "ts_list": [[1000, 1400]]})
        );
        // Errors carry the stream's mode (funasr-client reads it from every message).
        let key = started(&mut w, r#"{"mode":"2pass"}"#);
        let e = parsed(w.render(&key, &ServerMessage::error(ErrorCode::SegmentFailed, "x")));
        assert_eq!((e[0]["mode"].as_str(), e[0]["text"].as_str()), (Some("2pass"), Some("")));
    }
}
