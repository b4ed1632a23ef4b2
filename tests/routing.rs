//! The result plugins in the worker: the default post-processor rewrites text (hotwords,
//! casing), the default router fans finals out to a room and to an archive stream.

mod common;

use std::time::Duration;

use common::*;
use kiki::gateway::protocol::ServerMessage;
use redis::AsyncCommands;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finals_are_postprocessed_and_reach_room_members_and_the_archive() {
    let _g = serial().await;
    let mut cfg = test_config();
    // Auth is off in this test: rooms must be allowed by name.
    cfg.gateway.rooms_without_auth = true;
    cfg.plugins.config.insert("default".into(), [("archive".to_string(), "log".to_string())].into());
    let stack = Stack::start_with(cfg).await;

    let mut listener = stack.connect().await;
    listener.send_json(json!({"type": "start", "room": "standup"})).await;
    let Some(ServerMessage::Ready { .. }) = listener.recv(Duration::from_secs(5)).await else { panic!("ready") };

    let mut speaker = stack.connect().await;
    speaker.send_json(json!({"type": "start", "room": "standup", "hotwords": ["Stella"]})).await;
    let Some(ServerMessage::Ready { session: speaker_id, .. }) = speaker.recv(Duration::from_secs(5)).await else {
        panic!("ready")
    };
    let text = "please call stella and ask her to bring these things with her from the store";
    speaker.stream(&speak_sentences(&[text], 700), 4.0).await;
    let own = speaker.stop_and_collect().await;
    let own_text = final_text(&own);
    eprintln!("speaker got: {own_text}");
    assert!(own_text.contains("Stella"), "hotword spelling from the post-processor: {own_text}");
    assert!(own_text.starts_with(|c: char| c.is_uppercase()) && own_text.trim_end().ends_with('.'), "{own_text}");

    // The listener hears the speaker's final, marked with its origin.
    let mut heard = None;
    while let Some(m) = listener.recv(Duration::from_secs(10)).await {
        if let ServerMessage::Final(s) = m {
            heard = Some(s);
            break;
        }
    }
    let heard = heard.expect("the room member got the final");
    assert_eq!(heard.origin.as_deref(), Some(speaker_id.as_str()));
    assert_eq!(heard.text.trim(), own_text.trim());

    let mut conn = stack.redis().await;
    let archived: u64 = conn.xlen("kiki:archive:log").await.unwrap();
    assert!(archived >= 1, "finals go to the archive stream");
}
