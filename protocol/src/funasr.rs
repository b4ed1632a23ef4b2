//! The FunASR runtime WebSocket protocol (`runtime/docs/websocket_protocol.md` of
//! modelscope/FunASR), so that FunASR clients work against Kiki unchanged.
//!
//! The client opens with a JSON configuration (`mode`, `chunk_size`, `wav_name`, `is_speaking`,
//! `hotwords`, `itn`, `audio_fs`, `wav_format`), streams binary PCM, and ends the stream with
//! `{"is_speaking": false}`; a new configuration on the same socket starts the next stream. The
//! server answers `{"mode", "wav_name", "text", "is_final", "timestamp"}`:
//! - `online` / `2pass-online`: streaming text, sent as increments the client appends (FunASR
//!   clients concatenate them). Kiki's partials are whole-segment revisions, so an increment is
//!   sent only while a revision extends the text already sent; the sentence's offline result
//!   then replaces it (2pass), or the rest of the final is appended (online).
//! - `offline` / `2pass-offline`: the text of one finished sentence (a Kiki final), with word
//!   spans in `timestamp` (`"[[start_ms,end_ms],...]"`).
//! - the stream's last message has `is_final: true` (and `is_end: true`, which newer clients wait
//!   for). Errors carry `error` and `code`, without `mode`, so clients that only read results
//!   pass over them; a stream refused at its start ends with `is_final: false` and `is_end: true`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::native::{ErrorCode, ServerMessage, Start};
use crate::pcm::PcmFormat;
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

/// One audio stream of the socket (FunASR's `wav_name`).
#[derive(Debug)]
struct Stream {
    mode: Mode,
    wav_name: String,
    /// Streaming text of the current sentence already sent (the client's appended increments).
    sent: String,
    /// The segment `sent` belongs to.
    sent_segment: u64,
}

#[derive(Debug, Default)]
pub struct FunAsr {
    streams: HashMap<String, Stream>,
    /// The stream binary frames and `is_speaking: false` belong to.
    current: Option<String>,
    opened: u64,
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
        if let Some(fmt) = cfg.get("wav_format").and_then(Value::as_str)
            && fmt != "pcm"
        {
            return vec![
                self.reject(ErrorCode::UnsupportedFormat, format!("wav_format {fmt:?}: only pcm streams are taken")),
            ];
        }
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
        let partial_ms = if mode == Mode::Offline { 0 } else { chunk_ms };
        let mut segmenter = Map::new();
        segmenter.insert("partial_ms".into(), json!(partial_ms.to_string()));
        let mut plugins = Map::new();
        plugins.insert("segmenter".into(), Value::Object(segmenter));
        self.opened += 1;
        let key = format!("funasr-{}", self.opened);
        let wav_name = cfg.get("wav_name").and_then(Value::as_str).unwrap_or("demo").to_string();
        self.streams.insert(key.clone(), Stream { mode, wav_name, sent: String::new(), sent_segment: 0 });
        self.current = Some(key.clone());
        let start = Start {
            sample_rate: rate,
            format: PcmFormat::PcmS16le,
            hotwords: cfg.get("hotwords").map(parse_hotwords).unwrap_or_default(),
            plugins,
            ..Start::default()
        };
        let mut out = vec![Input::Start { key: key.clone(), start }];
        if cfg.get("is_speaking").and_then(Value::as_bool) == Some(false) {
            out.push(Input::Stop { key });
            self.current = None;
        }
        out
    }

    fn streaming(&mut self, key: &str, segment: u64, text: &str, last: bool) -> Option<Value> {
        let s = self.streams.get_mut(key)?;
        if s.sent_segment != segment {
            s.sent_segment = segment;
            s.sent.clear();
        }
        // Only growth of what the client already shows can be sent as an increment. A final
        // that revised it is sent from where the two part (the client cannot take text back).
        let delta = match text.strip_prefix(s.sent.as_str()) {
            Some(rest) => rest.to_string(),
            None if last => text[common_word_prefix(&s.sent, text)..].to_string(),
            None => return None,
        };
        if last {
            s.sent.clear();
            s.sent_segment = segment + 1;
        } else {
            s.sent = text.to_string();
        }
        (!delta.is_empty())
            .then(|| json!({"mode": s.mode.streaming_name(), "wav_name": s.wav_name, "text": delta, "is_final": false}))
    }
}

/// Byte length of the longest run of whole words `a` and `b` start with.
fn common_word_prefix(a: &str, b: &str) -> usize {
    let mut end = 0;
    for ((i, ca), cb) in a.char_indices().zip(b.chars()) {
        if ca != cb {
            break;
        }
        if ca.is_whitespace() {
            end = i;
        }
    }
    end
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

/// Word spans as FunASR's `timestamp`: `"[[100,200],[200,500]]"`.
fn timestamp(words: &[crate::native::Word]) -> String {
    let spans: Vec<String> = words.iter().map(|w| format!("[{},{}]", w.start_ms, w.end_ms)).collect();
    format!("[{}]", spans.join(","))
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
        if cfg.contains_key("mode")
            || self.current.is_none() && cfg.get("is_speaking").and_then(Value::as_bool) != Some(false)
        {
            return self.configure(&cfg);
        }
        match (cfg.get("is_speaking").and_then(Value::as_bool), self.current.take()) {
            (Some(false), Some(key)) => vec![Input::Stop { key }],
            (Some(false), None) => vec![self.reject(ErrorCode::NotStarted, "is_speaking false before a configuration")],
            (_, current) => {
                self.current = current;
                Vec::new()
            }
        }
    }

    fn binary(&mut self, bytes: &[u8]) -> Vec<Input> {
        match &self.current {
            Some(key) => vec![Input::Audio { key: key.clone(), bytes: bytes.to_vec() }],
            None => vec![self.reject(ErrorCode::NotStarted, "audio before the configuration message")],
        }
    }

    fn render(&mut self, key: &str, msg: &ServerMessage) -> Vec<String> {
        let out = match msg {
            ServerMessage::Ready { .. } => None,
            ServerMessage::Partial(seg) if seg.origin.is_none() => match self.streams.get(key).map(|s| s.mode) {
                Some(Mode::Online | Mode::TwoPass) => self.streaming(key, seg.segment, &seg.text, false),
                _ => None,
            },
            ServerMessage::Final(seg) if seg.origin.is_none() => match self.streams.get(key) {
                Some(s) if s.mode == Mode::Online => self.streaming(key, seg.segment, &seg.text, true),
                Some(s) => {
                    let mut m = json!({"mode": s.mode.sentence_name(), "wav_name": s.wav_name, "text": seg.text, "is_final": false});
                    if !seg.words.is_empty() {
                        m["timestamp"] = json!(timestamp(&seg.words));
                    }
                    if let Some(s) = self.streams.get_mut(key) {
                        s.sent.clear();
                        s.sent_segment = seg.segment + 1;
                    }
                    Some(m)
                }
                None => None,
            },
            ServerMessage::Partial(_) | ServerMessage::Final(_) => None,
            ServerMessage::Error { code, message, .. } => {
                let fatal = !self.streams.contains_key(key) || matches!(code, ErrorCode::Timeout | ErrorCode::IdleTimeout);
                let mut m = json!({"text": "", "is_final": false, "error": message, "code": code});
                if fatal {
                    // A stream that could not start (or was cut off) ends here for the client.
                    m["is_end"] = json!(true);
                }
                Some(m)
            }
            ServerMessage::End { .. } => self.streams.remove(key).map(|s| {
                json!({"mode": s.mode.sentence_name(), "wav_name": s.wav_name, "text": "", "is_final": true, "is_end": true})
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
        Segment { seq: 1, segment, text: text.into(), start_ms: 0, end_ms: 900, words: vec![], origin: None }
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
        let p = parsed(w.render(&key, &ServerMessage::Partial(seg(1, "next"))));
        assert_eq!(p[0]["text"], "next");
        assert_eq!(common_word_prefix("the quick brown", "the quick crown"), 9);
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
        assert!(matches!(&w.text(r#"{"is_speaking": false}"#)[..], [Input::Reject { .. }]));
        assert!(matches!(&w.text(r#"{"mode":"sideways"}"#)[..], [Input::Reject { .. }]));
        assert!(matches!(&w.text(r#"{"mode":"offline","wav_format":"mp3"}"#)[..], [Input::Reject { .. }]));
        assert_eq!(parse_hotwords(&json!("alpha beta")), vec!["alpha", "beta"]);
        assert_eq!(parse_hotwords(&json!("Kiki Redis, hello world")), vec!["Kiki Redis", "hello world"]);
    }
}
