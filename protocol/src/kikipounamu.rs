//! The kikipounamu protocol (`/ws/asr`), so that its Electron client works against Kiki
//! unchanged (protocol as in fishheadwithchili/kikipounamu: `ASR_electron/electron/asrClient.ts`
//! and `ASR_go_backend/internal/model/types.go`).
//!
//! The client sends JSON `{action: "start" | "chunk" | "finish", session_id, chunk_index,
//! audio_data}`. It cuts speech with its own VAD, so each chunk's `audio_data` is one utterance in
//! base64: a whole WAV file (any rate; 16 kHz mono s16 from that client), or raw 16 kHz mono s16
//! PCM. The server answers `{type: "ack" | "chunk_result" | "final_result" | "error", ...}`:
//! `ack` with `status: "session_started"` (after `start`) or `"received"` (each chunk, at once);
//! `chunk_result` with the chunk's `text`; after `finish`, `final_result` with every chunk's text
//! in chunk order, `duration` (seconds from `start` to the result, as the original server
//! measures it) and `chunk_count`. A socket carries any number of sessions, each named by the
//! client's `session_id`.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use crate::native::{ErrorCode, ServerMessage, Start};
use crate::wav::parse_wav;
use crate::wire::{Input, Wire};

#[derive(Debug, Deserialize)]
struct ClientMessage {
    action: String,
    #[serde(default)]
    session_id: String,
    #[serde(default)]
    chunk_index: i64,
    #[serde(default)]
    audio_data: String,
}

#[derive(Debug)]
struct Session {
    started: Instant,
    /// `chunk_index` of each utterance, in the order sent: utterance n is segment n.
    chunks: Vec<i64>,
    /// Texts by chunk index, for `final_result`.
    texts: BTreeMap<i64, String>,
}

#[derive(Debug, Default)]
pub struct Kikipounamu {
    sessions: HashMap<String, Session>,
}

impl Kikipounamu {
    pub fn new() -> Self {
        Self::default()
    }

    fn error(&self, key: &str, code: ErrorCode, message: String) -> Input {
        Input::Reject { key: key.to_string(), error: ServerMessage::error(code, message) }
    }

    fn chunk(&mut self, msg: ClientMessage) -> Vec<Input> {
        let Some(session) = self.sessions.get_mut(&msg.session_id) else {
            return vec![self.error(
                &msg.session_id,
                ErrorCode::NotStarted,
                format!("session not found: {}", msg.session_id),
            )];
        };
        let bytes = match base64::engine::general_purpose::STANDARD.decode(msg.audio_data.trim()) {
            Ok(b) => b,
            Err(e) => {
                return vec![self.error(
                    &msg.session_id,
                    ErrorCode::BadFrame,
                    format!("audio_data is not base64: {e}"),
                )];
            }
        };
        let (samples, rate) = if bytes.starts_with(b"RIFF") {
            match parse_wav(&bytes) {
                Ok(pcm) => (pcm.samples, pcm.rate),
                Err(e) => {
                    return vec![self.error(
                        &msg.session_id,
                        ErrorCode::BadFrame,
                        format!("chunk {}: {e}", msg.chunk_index),
                    )];
                }
            }
        } else {
            let mut samples = Vec::with_capacity(bytes.len() / 2);
            if let Err(e) = crate::pcm::decode_frame(&bytes, crate::pcm::PcmFormat::PcmS16le, &mut samples) {
                return vec![self.error(
                    &msg.session_id,
                    ErrorCode::BadFrame,
                    format!("chunk {}: {e}", msg.chunk_index),
                )];
            }
            (samples, 16_000)
        };
        session.chunks.push(msg.chunk_index);
        // As the Go server acks a chunk: no session id.
        let ack = json!({"type": "ack", "chunk_index": msg.chunk_index, "status": "received"});
        vec![Input::Send(ack.to_string()), Input::Utterance { key: msg.session_id, samples, rate }]
    }
}

/// Chunk texts joined in order: with a space between words of space-separated scripts, directly
/// between Chinese or Japanese characters (as the original server concatenates them).
pub(crate) fn join(texts: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for t in texts.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) {
        let cjk = |c: Option<char>| {
            c.is_some_and(|c| ('\u{2e80}'..='\u{9fff}').contains(&c) || ('\u{f900}'..='\u{ffef}').contains(&c))
        };
        let joins_directly = cjk(out.chars().last()) && cjk(t.chars().next());
        if !out.is_empty() && !joins_directly {
            out.push(' ');
        }
        out.push_str(&t);
    }
    out
}

/// Drops the fields the Go server leaves out when empty (`omitempty` on all but `type` and
/// `chunk_index`): an empty `text`, `session_id`, `message`, a zero `duration` or `chunk_count`.
fn omit_empty(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|k, v| {
            k == "type" || k == "chunk_index" || !(v.as_str() == Some("") || v.as_f64() == Some(0.0) || v.is_null())
        });
    }
    v
}

impl Wire for Kikipounamu {
    fn name(&self) -> &'static str {
        "kikipounamu"
    }

    fn text(&mut self, text: &str) -> Vec<Input> {
        let msg: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => return vec![self.error("", ErrorCode::BadMessage, format!("invalid message: {e}"))],
        };
        match msg.action.as_str() {
            "start" => {
                let key = if msg.session_id.is_empty() {
                    format!("session-{}", self.sessions.len() + 1)
                } else {
                    msg.session_id
                };
                if self.sessions.contains_key(&key) {
                    return vec![self.error(
                        &key,
                        ErrorCode::AlreadyStarted,
                        format!("session {key} has already started"),
                    )];
                }
                self.sessions.insert(
                    key.clone(),
                    Session { started: Instant::now(), chunks: Vec::new(), texts: BTreeMap::new() },
                );
                vec![Input::Start { key, start: Start::default() }]
            }
            "chunk" => self.chunk(msg),
            "finish" if self.sessions.contains_key(&msg.session_id) => vec![Input::Stop { key: msg.session_id }],
            "finish" => vec![self.error(
                &msg.session_id,
                ErrorCode::NotStarted,
                format!("session not found: {}", msg.session_id),
            )],
            other => vec![self.error(&msg.session_id, ErrorCode::BadMessage, format!("unknown action: {other}"))],
        }
    }

    fn binary(&mut self, _bytes: &[u8]) -> Vec<Input> {
        vec![self.error(
            "",
            ErrorCode::BadMessage,
            "binary frames are not part of this protocol: send chunk messages".into(),
        )]
    }

    fn render(&mut self, key: &str, msg: &ServerMessage) -> Vec<String> {
        let out = match msg {
            ServerMessage::Ready { .. } => {
                Some(json!({"type": "ack", "session_id": key, "chunk_index": 0, "status": "session_started"}))
            }
            ServerMessage::Final(seg) if seg.origin.is_none() => self.sessions.get_mut(key).map(|s| {
                let index = s.chunks.get(seg.segment as usize).copied().unwrap_or(seg.segment as i64);
                s.texts.insert(index, seg.text.clone());
                omit_empty(json!({"type": "chunk_result", "session_id": key, "chunk_index": index, "text": seg.text}))
            }),
            ServerMessage::Partial(_) | ServerMessage::Final(_) => None,
            ServerMessage::Error { code, message, segment, .. } => {
                let index = segment.and_then(|s| self.sessions.get(key)?.chunks.get(s as usize).copied()).unwrap_or(0);
                // `code` is Kiki's own addition; the rest is the Go server's error.
                let m = omit_empty(
                    json!({"type": "error", "session_id": key, "chunk_index": index, "code": code, "message": message}),
                );
                // A session refused at its start is not one.
                if matches!(
                    code,
                    ErrorCode::Busy | ErrorCode::InvalidOption | ErrorCode::UnsupportedFormat | ErrorCode::PluginFailed
                ) && self.sessions.get(key).is_some_and(|s| s.chunks.is_empty() && s.texts.is_empty())
                {
                    self.sessions.remove(key);
                }
                Some(m)
            }
            ServerMessage::End { .. } => self.sessions.remove(key).map(|s| {
                omit_empty(json!({
                    "type": "final_result",
                    "session_id": key,
                    "chunk_index": 0,
                    "text": join(s.texts.into_values()),
                    "duration": s.started.elapsed().as_secs_f64(),
                    "chunk_count": s.chunks.len(),
                }))
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

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn a_session_of_wav_chunks() {
        let mut w = Kikipounamu::new();
        let inputs = w.text(r#"{"action":"start","session_id":"s1"}"#);
        assert!(matches!(&inputs[..], [Input::Start { key, .. }] if key == "s1"));
        let ready = ServerMessage::Ready {
            session: "x".into(),
            epoch: "e".into(),
            sample_rate: 16000,
            resume_token: "t".into(),
            recovered: None,
            position_ms: None,
        };
        let ack: serde_json::Value = serde_json::from_str(&w.render("s1", &ready)[0]).unwrap();
        assert_eq!((ack["type"].as_str(), ack["status"].as_str()), (Some("ack"), Some("session_started")));
        let wav = crate::wav::write_wav(&[0.1; 1600], 16_000);
        for i in [0, 1] {
            let msg = json!({"action": "chunk", "session_id": "s1", "chunk_index": i + 7, "audio_data": b64(&wav)});
            let inputs = w.text(&msg.to_string());
            let [Input::Send(ack), Input::Utterance { samples, rate: 16000, .. }] = &inputs[..] else {
                panic!("{inputs:?}")
            };
            assert_eq!(samples.len(), 1600);
            // The Go server's ack, field for field.
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(ack).unwrap(),
                json!({"type": "ack", "chunk_index": i + 7, "status": "received"})
            );
        }
        let seg = |segment: u64, text: &str| Segment {
            seq: 1,
            segment,
            text: text.into(),
            start_ms: 0,
            end_ms: 100,
            words: vec![],
            origin: None,
            stable: None,
        };
        let r: serde_json::Value =
            serde_json::from_str(&w.render("s1", &ServerMessage::Final(seg(1, "world")))[0]).unwrap();
        assert_eq!((r["type"].as_str(), r["chunk_index"].as_i64()), (Some("chunk_result"), Some(8)));
        w.render("s1", &ServerMessage::Final(seg(0, "Hello")));
        assert_eq!(w.text(r#"{"action":"finish","session_id":"s1"}"#), vec![Input::Stop { key: "s1".into() }]);
        let f: serde_json::Value =
            serde_json::from_str(&w.render("s1", &ServerMessage::End { segments: 2 })[0]).unwrap();
        assert_eq!(
            (f["type"].as_str(), f["text"].as_str(), f["chunk_count"].as_u64()),
            (Some("final_result"), Some("Hello world"), Some(2))
        );
        assert!(f["duration"].as_f64().is_some());
        assert_eq!(f["chunk_index"], 0);
        // Empty text is left out, as the Go server's `omitempty` does.
        w.text(r#"{"action":"start","session_id":"s2"}"#);
        let r: serde_json::Value = serde_json::from_str(&w.render("s2", &ServerMessage::Final(seg(0, "")))[0]).unwrap();
        assert_eq!(r, json!({"type": "chunk_result", "session_id": "s2", "chunk_index": 0}));
    }

    #[test]
    fn bad_messages_get_errors() {
        let mut w = Kikipounamu::new();
        assert!(matches!(&w.text("{")[..], [Input::Reject { .. }]));
        assert!(matches!(&w.text(r#"{"action":"dance"}"#)[..], [Input::Reject { .. }]));
        assert!(matches!(
            &w.text(r#"{"action":"chunk","session_id":"nope","audio_data":""}"#)[..],
            [Input::Reject { .. }]
        ));
        w.text(r#"{"action":"start","session_id":"s"}"#);
        assert!(matches!(
            &w.text(r#"{"action":"chunk","session_id":"s","audio_data":"!!"}"#)[..],
            [Input::Reject { .. }]
        ));
        assert!(matches!(
            &w.text(&json!({"action":"chunk","session_id":"s","audio_data": b64(b"RIFFxx")}).to_string())[..],
            [Input::Reject { .. }]
        ));
        assert!(matches!(
            &w.text(&json!({"action":"chunk","session_id":"s","audio_data": b64(&[1, 2, 3])}).to_string())[..],
            [Input::Reject { .. }]
        ));
        assert!(matches!(&w.binary(&[0, 0])[..], [Input::Reject { .. }]));
        assert_eq!(join(["你好".to_string(), "世界".to_string(), "ok".to_string()].into_iter()), "你好世界 ok");
    }
}
