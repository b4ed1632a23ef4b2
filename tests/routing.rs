//! The result plugins in the worker: the default post-processor rewrites text (hotwords,
//! casing), the default router fans finals out to a room and to an archive stream.

use std::time::Duration;

use crate::common::*;
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

    // The archive is written after the owner's and the room's copies are published: wait a
    // moment for it.
    let mut conn = stack.redis().await;
    let mut archived = 0u64;
    for _ in 0..50 {
        archived = conn.xlen("kiki:archive:log").await.unwrap();
        if archived >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(archived >= 1, "finals go to the archive stream");
}

/// The router hears how many results waited unsent for the owner (`owner-backlog`, carried
/// by each task from the gateway): `router-default` drops partials past its `max_backlog`,
/// never finals. (It was always 0, so `max_backlog` never took effect.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_hears_the_owners_backlog() {
    use kiki::channels::tasks::{Task, TaskMeta};
    use kiki::plugins::{CutKind, Route};
    let mut cfg = test_config();
    cfg.plugins.config.insert("default".into(), [("max_backlog".to_string(), "2".to_string())].into());
    let stack = Stack::gateway_only(cfg.clone()).await;
    let pipeline = kiki::roles::load_pipeline(&cfg, &stack.target, stack.metrics.clone()).await.unwrap();
    for (kind, backlog, to_owner) in [
        (CutKind::Partial, 0, true),
        (CutKind::Partial, 3, false),
        (CutKind::Final, 3, true),
        (CutKind::Final, 0, true),
    ] {
        let meta =
            TaskMeta { owner_backlog: backlog, ..TaskMeta::new("s", 0, kind, "c", (0, 1000), Default::default()) };
        let task = Task { id: "1-0".into(), meta, audio: Vec::new() };
        let out = pipeline.run(&task, "hello".into(), &[], "en", Vec::new()).await;
        assert_eq!(out.routes.contains(&Route::Owner), to_owner, "{kind:?} with {backlog} unsent: {:?}", out.routes);
    }
}
