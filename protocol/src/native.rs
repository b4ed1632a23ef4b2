//! The native WebSocket protocol (`/ws`): typed messages, shared by the server, the tests, the
//! load tool and the docs (`docs/protocol.md`).

use serde::{Deserialize, Serialize};

use crate::pcm::PcmFormat;

/// A word with its time span (ms on the session's clock) and the model's confidence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Word {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub probability: f32,
}

/// Messages a client sends as text frames. Audio goes in binary frames between `start` and `stop`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Start(Start),
    Stop,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Start {
    /// Rate of the PCM frames, 8000..=48000 Hz; resampled to 16 kHz in the gateway.
    #[serde(default = "default_rate")]
    pub sample_rate: u32,
    #[serde(default)]
    pub format: PcmFormat,
    #[serde(default)]
    pub language: Option<String>,
    /// Plugin choices and their options, by kind (e.g. `{"segmenter": {"name": "vad", "partial_ms": "800"}}`).
    #[serde(default)]
    pub plugins: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub hotwords: Vec<String>,
    /// A room to join: finals of every session in the room reach every member (router plugin).
    #[serde(default)]
    pub room: Option<String>,
    /// Text that conditions the decoder (Whisper's initial prompt): names, terms, context.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Beam width for this session's finals, 1..=8 (partials are always greedy).
    #[serde(default)]
    pub beam_size: Option<u8>,
    /// Reconnecting: the session to continue (its `resume_token`) and the last `seq` received.
    #[serde(default)]
    pub resume: Option<Resume>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resume {
    /// The `resume_token` of the session's `ready` (signed: it names the session and epoch).
    pub token: String,
    #[serde(default)]
    pub last_seq: u64,
}

fn default_rate() -> u32 {
    16_000
}

impl Default for Start {
    fn default() -> Self {
        Self {
            sample_rate: default_rate(),
            format: PcmFormat::default(),
            language: None,
            plugins: serde_json::Map::new(),
            hotwords: Vec::new(),
            room: None,
            prompt: None,
            beam_size: None,
            resume: None,
        }
    }
}

/// Messages the server sends as text frames.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Ready {
        session: String,
        epoch: String,
        sample_rate: u32,
        /// What `start.resume.token` takes to continue this session on a new socket.
        resume_token: String,
        /// Present when the client asked to resume: true when every result it missed follows,
        /// false when the session or part of its replay window is gone (a fresh session starts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// With `recovered: true`: where the session's clock goes on, in ms: the end of its last
        /// final. Audio after it that the old socket carried is not kept; a client that buffers
        /// what it sent resends from here, so no word is lost and both clocks agree.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position_ms: Option<u64>,
    },
    Partial(Segment),
    Final(Segment),
    Error {
        code: ErrorCode,
        message: String,
        retryable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        segment: Option<u64>,
        /// On `going_away`: the token to resume with on another gateway.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
    End {
        segments: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Segment {
    pub seq: u64,
    pub segment: u64,
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    #[serde(default)]
    pub words: Vec<Word>,
    /// For results from another session of the same room: that session's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Partials: how many characters (Unicode scalar values) at the start of `text` have settled,
    /// that is this partial and the one before it agree on them, up to a word boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<u32>,
}

/// Every error a client can see, with a stable wire name.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A text frame that is not a valid JSON message.
    BadMessage,
    /// Audio (or `stop`) before `start`.
    NotStarted,
    /// A second `start` in one session.
    AlreadyStarted,
    /// A sample rate or format the server does not take.
    UnsupportedFormat,
    /// A `start` option out of range (`beam_size`, `prompt` length).
    InvalidOption,
    /// A binary frame that is not whole samples.
    BadFrame,
    /// A binary frame over the size limit.
    FrameTooLarge,
    /// Audio arrives faster than the limits allow (`gateway.max_audio_speed`, frames per
    /// second); the excess frames are dropped.
    RateLimited,
    /// The session reached `gateway.max_session_s`; it finishes as after `stop`.
    SessionTooLong,
    /// The segmenter plugin failed; the session carries on with a fresh instance.
    PluginFailed,
    /// A segment could not be transcribed.
    SegmentFailed,
    /// Speech in a language the loaded model does not transcribe (an English-only model hearing
    /// another language): its text is withheld, not invented; its final still comes, without
    /// that text. Told once per session.
    LanguageUnsupported,
    /// Some finals did not arrive before the timeout after `stop`.
    Timeout,
    /// Nothing arrived from the client for the idle timeout; the session is closed.
    IdleTimeout,
    /// The server is overloaded or cannot reach Redis; retry later.
    Busy,
    /// Something on the server's side broke.
    Internal,
    /// The gateway is shutting down: finals still come, then `end`; reconnect (to any gateway)
    /// with `resume` to carry on.
    GoingAway,
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        let retryable = matches!(
            code,
            ErrorCode::Busy | ErrorCode::Timeout | ErrorCode::Internal | ErrorCode::GoingAway | ErrorCode::RateLimited
        );
        ServerMessage::Error { code, message: message.into(), retryable, segment: None, resume_token: None }
    }

    /// An error about one segment (`segment` set), retryable or not as the caller knows.
    pub fn segment_error(code: ErrorCode, message: impl Into<String>, segment: u64, retryable: bool) -> Self {
        ServerMessage::Error { code, message: message.into(), retryable, segment: Some(segment), resume_token: None }
    }

    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "{\"type\":\"error\",\"code\":\"internal\"}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_defaults_and_round_trip() {
        let m: ClientMessage = serde_json::from_str(r#"{"type":"start"}"#).unwrap();
        let ClientMessage::Start(s) = m else { panic!("not start") };
        assert_eq!((s.sample_rate, s.format), (16_000, PcmFormat::PcmS16le));
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"start","sample_rate":48000,"format":"f32le"}"#).unwrap();
        assert!(matches!(m, ClientMessage::Start(Start { sample_rate: 48_000, format: PcmFormat::F32le, .. })));
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"dance"}"#).is_err());
        let e = ServerMessage::error(ErrorCode::NotStarted, "x").to_json();
        assert!(e.contains(r#""code":"not_started""#), "{e}");
    }
}
