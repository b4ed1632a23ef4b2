//! Graceful drain: on shutdown the gateway stops accepting, finishes live segments, delivers
//! their finals, and closes sockets with "going away" so that clients resume elsewhere.

use std::time::Duration;

use crate::common::*;
use futures_util::StreamExt;
use kiki::gateway::protocol::{ErrorCode, ServerMessage};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_live_finals_then_closes_with_going_away() {
    let _g = serial().await;
    let stack = Stack::start().await;
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start", "plugins": {"segmenter": {"partial_ms": "0"}}})).await;
    let Some(ServerMessage::Ready { resume_token, .. }) = c.recv(Duration::from_secs(5)).await else {
        panic!("no ready")
    };
    // Speech still open when the shutdown comes: no trailing silence, no stop.
    let mut audio = speak_sentences(&["I would like a cup of coffee with milk and sugar."], 0);
    audio.truncate(audio.len() - 16 * 200);
    c.stream(&audio, 4.0).await;
    stack.shutdown.trigger();

    let mut msgs = Vec::new();
    let mut close = None;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(60), c.ws.next()).await {
        match m {
            Message::Text(t) => msgs.push(serde_json::from_str::<ServerMessage>(t.as_str()).unwrap()),
            Message::Close(f) => {
                close = f;
                break;
            }
            _ => {}
        }
    }
    eprintln!("{msgs:?}");
    // Told to go elsewhere, with the token to resume there.
    assert!(
        msgs.iter().any(|m| matches!(m, ServerMessage::Error { code: ErrorCode::GoingAway, retryable: true,
            resume_token: Some(t), .. } if *t == resume_token)),
        "{msgs:?}"
    );
    let text = final_text(&msgs);
    assert!(
        wer("I would like a cup of coffee with milk and sugar", &text) < 0.5,
        "the open utterance's final: {text:?}"
    );
    assert!(matches!(msgs.last(), Some(ServerMessage::End { segments: 1 })), "{msgs:?}");
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    // No new connections once drained.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(tokio_tungstenite::connect_async(format!("ws://{}/ws", stack.addr)).await.is_err());
}
