//! A session's `start`: what it may ask for (checked before anything is opened), its segmenter,
//! its room, and whether a resume it claims can go on.

use std::sync::Arc;

use super::super::AppState;
use super::super::auth::Principal;
use super::super::protocol::{ErrorCode, ServerMessage, Start};
use super::choices;
use crate::audio::SAMPLE_RATE;
use crate::channels::results;
use crate::channels::tasks::PluginChoice;
use crate::plugins::{CatalogError, PluginError, SegmenterInstance, SegmenterPlugin};

/// Widest beam a session may ask for: each beam is one more decoder row per step.
const MAX_BEAM: u8 = 8;
/// Whisper keeps at most 223 prompt tokens; this is a generous bound on the text (the prompt,
/// and the hotwords, which lead it).
pub const MAX_PROMPT_BYTES: usize = 2_000;
const MAX_HOTWORDS: usize = 200;
/// Longest language code (BCP 47 tags a client might send are far shorter).
pub const MAX_LANGUAGE_BYTES: usize = 16;
/// Longest room name.
const MAX_ROOM_BYTES: usize = 200;

fn invalid(message: impl Into<String>) -> ServerMessage {
    ServerMessage::error(ErrorCode::InvalidOption, message)
}

/// The bounds on what a `start` asks for; every one of them reaches an allocation or a loop.
pub fn check(start: &Start) -> Result<(), ServerMessage> {
    if !(8_000..=48_000).contains(&start.sample_rate) {
        let message = format!("sample_rate {} is outside 8000..=48000", start.sample_rate);
        return Err(ServerMessage::error(ErrorCode::UnsupportedFormat, message));
    }
    if start.beam_size.is_some_and(|b| !(1..=MAX_BEAM).contains(&b)) {
        return Err(invalid(format!("beam_size must be 1..={MAX_BEAM}")));
    }
    if start.language.as_ref().is_some_and(|l| l.len() > MAX_LANGUAGE_BYTES) {
        return Err(invalid("language is not a language code"));
    }
    let hotword_bytes: usize = start.hotwords.iter().map(|h| h.len() + 2).sum();
    if start.hotwords.len() > MAX_HOTWORDS || hotword_bytes > MAX_PROMPT_BYTES {
        return Err(invalid(format!(
            "hotwords: at most {MAX_HOTWORDS}, {MAX_PROMPT_BYTES} bytes in all (they prime the decoder)"
        )));
    }
    if start.prompt.as_ref().is_some_and(|p| p.len() > MAX_PROMPT_BYTES) {
        return Err(invalid(format!("prompt is longer than {MAX_PROMPT_BYTES} bytes")));
    }
    Ok(())
}

/// The room a session joins: with auth, the subject's own unless its token grants the name;
/// without auth, only where the operator allowed rooms (nothing tells who may hear one).
pub fn room_for(state: &AppState, principal: &Principal, room: &str) -> Result<String, ServerMessage> {
    if room.is_empty() || room.len() > MAX_ROOM_BYTES {
        return Err(invalid(format!("room must be 1..={MAX_ROOM_BYTES} bytes")));
    }
    if !state.auth.enabled() && !state.cfg.gateway.rooms_without_auth {
        return Err(invalid("rooms need authentication (gateway.auth_secret), or gateway.rooms_without_auth = true"));
    }
    Ok(principal.room_name(room))
}

/// The session's segmenter: the plugin it chose (or the default), checked against the
/// plugin's manifest and opened.
pub async fn segmenter(
    state: &AppState,
    choice: &PluginChoice,
) -> Result<(Arc<SegmenterPlugin>, SegmenterInstance), ServerMessage> {
    let plugin = match state.segmenters.get(Some(&choice.name)).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(ServerMessage::error(ErrorCode::Internal, "no segmenter is configured")),
        Err(e @ (CatalogError::NotAllowed { .. } | CatalogError::NotFound { .. })) => {
            return Err(invalid(format!("plugins.segmenter: {e}")));
        }
        Err(e) => {
            state.metrics.plugin_errors.inc();
            return Err(ServerMessage::error(ErrorCode::PluginFailed, e.to_string()));
        }
    };
    if let Some(m) = &plugin.manifest {
        choices::check_options(m, "segmenter", &choice.options)?;
    }
    let instance = plugin.open(SAMPLE_RATE, &choice.options).map_err(|e| match e {
        PluginError::InvalidConfig { .. } => invalid(format!("plugins.segmenter: {e}")),
        // The process holds as many sessions as its segmenter pool has slots.
        PluginError::PoolFull { .. } => {
            state.metrics.sessions_refused.inc();
            ServerMessage::error(ErrorCode::Busy, e.to_string())
        }
        e => {
            state.metrics.plugin_errors.inc();
            ServerMessage::error(ErrorCode::PluginFailed, e.to_string())
        }
    })?;
    Ok((plugin, instance))
}

/// Whether a resume can go on: the session's results are still numbered under the token's
/// epoch, the client has seen no more than was published, and the replay window still holds
/// everything after what it has (`oldest`: the oldest replayable seq).
pub fn resumable(claimed_epoch: &str, last_seq: u64, st: &results::SessionState, oldest: Option<u64>) -> bool {
    st.epoch == claimed_epoch && last_seq <= st.seq && (st.seq == last_seq || oldest.is_some_and(|o| o <= last_seq + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(v: serde_json::Value) -> Start {
        let mut base = serde_json::json!({"type": "start"});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        match serde_json::from_value(base).unwrap() {
            super::super::super::protocol::ClientMessage::Start(s) => s,
            _ => unreachable!(),
        }
    }

    #[test]
    fn what_a_start_may_ask_for() {
        assert!(check(&start(serde_json::json!({}))).is_ok());
        for bad in [
            serde_json::json!({"sample_rate": 1}),
            serde_json::json!({"beam_size": 9}),
            serde_json::json!({"language": "x".repeat(17)}),
            serde_json::json!({"hotwords": vec!["ab"; 201]}),
            serde_json::json!({"hotwords": ["a".repeat(48_000)]}),
            serde_json::json!({"prompt": "w".repeat(2_001)}),
        ] {
            assert!(check(&start(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_resume_goes_on_only_with_its_epoch_and_its_results_replayable() {
        let st = |epoch: &str, seq| results::SessionState { epoch: epoch.into(), seq, next_segment: 0, position: 0 };
        assert!(resumable("e", 5, &st("e", 5), None), "nothing missed");
        assert!(resumable("e", 3, &st("e", 5), Some(4)), "4 and 5 are replayable");
        assert!(!resumable("e", 3, &st("e", 5), Some(5)), "4 is gone");
        assert!(!resumable("e", 6, &st("e", 5), Some(1)), "the client claims more than was published");
        assert!(!resumable("e", 5, &st("f", 5), None), "Redis lost the session's state");
    }
}
