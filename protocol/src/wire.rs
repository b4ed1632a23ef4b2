//! What every client protocol turns into, and back: a socket speaks one [`Wire`], which maps its
//! frames to [`Input`]s for the gateway's sessions and renders their native events
//! ([`ServerMessage`]) as its own frames. The gateway's session loop is written once against it.

use crate::native::{ServerMessage, Start};

/// What a client's frame asks of the gateway. `key` names the session on the socket: the native
/// protocol has one ("" ), the adapters may run several, one after another or side by side.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Open a session.
    Start { key: String, start: Start },
    /// PCM bytes in the session's `start` format, cut by the segmenter.
    Audio { key: String, bytes: Vec<u8> },
    /// One utterance the client cut itself: transcribed as one final, without the segmenter.
    /// Every utterance gets the session's next segment id, even an empty one.
    Utterance { key: String, samples: Vec<f32>, rate: u32 },
    /// No more audio for this session: its finals follow, then its `end`.
    Stop { key: String },
    /// A protocol error to answer (counted as one), rendered by the wire.
    Reject { key: String, error: ServerMessage },
    /// A frame the wire answers itself, as is (an acknowledgement).
    Send(String),
}

/// One client protocol, as a per-socket state machine.
pub trait Wire: Send + 'static {
    /// For logs and metrics.
    fn name(&self) -> &'static str;
    /// Frames sent as soon as the socket opens, before any input (OpenAI's `session.created`).
    fn greet(&mut self) -> Vec<String> {
        Vec::new()
    }
    fn text(&mut self, text: &str) -> Vec<Input>;
    fn binary(&mut self, bytes: &[u8]) -> Vec<Input>;
    /// Renders an event of session `key` (a reply to one of its inputs, a result, its `end`).
    fn render(&mut self, key: &str, msg: &ServerMessage) -> Vec<String>;
    /// Whether the socket closes after its session's `end` (else it waits for the next one).
    fn closes_after_end(&self) -> bool;
}

/// Kiki's own protocol: JSON control messages, binary PCM frames, one session per socket.
#[derive(Debug, Default)]
pub struct Native;

impl Wire for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn text(&mut self, text: &str) -> Vec<Input> {
        use crate::native::{ClientMessage, ErrorCode};
        let key = String::new();
        vec![match serde_json::from_str::<ClientMessage>(text) {
            Ok(ClientMessage::Start(start)) => Input::Start { key, start },
            Ok(ClientMessage::Stop) => Input::Stop { key },
            Err(e) => Input::Reject {
                key,
                error: ServerMessage::error(ErrorCode::BadMessage, format!("not a valid message: {e}")),
            },
        }]
    }

    fn binary(&mut self, bytes: &[u8]) -> Vec<Input> {
        vec![Input::Audio { key: String::new(), bytes: bytes.to_vec() }]
    }

    fn render(&mut self, _key: &str, msg: &ServerMessage) -> Vec<String> {
        vec![msg.to_json()]
    }

    fn closes_after_end(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::ErrorCode;

    #[test]
    fn native_maps_messages_and_rejects_garbage() {
        let mut w = Native;
        assert!(
            matches!(&w.text(r#"{"type":"start"}"#)[..], [Input::Start { start, .. }] if start.sample_rate == 16_000)
        );
        assert_eq!(w.text(r#"{"type":"stop"}"#), vec![Input::Stop { key: String::new() }]);
        assert!(matches!(
            &w.text("nope")[..],
            [Input::Reject { error: ServerMessage::Error { code: ErrorCode::BadMessage, .. }, .. }]
        ));
        assert_eq!(w.binary(&[1, 2]), vec![Input::Audio { key: String::new(), bytes: vec![1, 2] }]);
    }
}
