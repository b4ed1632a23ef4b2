//! Compatibility adapters, driven by clients written from those protocols' public documents:
//! the FunASR runtime WebSocket protocol (`runtime/docs/websocket_protocol.md`: configuration
//! JSON, binary PCM, `is_speaking: false`; results with `mode`, `text`, `is_final`,
//! `timestamp`) at the server's root, and the kikipounamu protocol at `/ws/asr` (JSON actions
//! with base64 WAV chunks; `ack`, `chunk_result`, `final_result`).

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SENTENCES: [&str; 2] =
    ["The quick brown fox jumps over the lazy dog.", "I would like a cup of coffee with milk and sugar."];

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Socket, timeout: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(timeout, ws.next()).await.ok()??.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).expect("JSON from the server")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// A FunASR client as the protocol document describes one, in `mode`; returns the text it
/// shows (offline sentences, plus streaming increments in online mode) and every message.
async fn funasr_stream(ws: &mut Socket, mode: &str, audio: &[f32]) -> (String, Vec<Value>) {
    let config = json!({
        "mode": mode, "chunk_size": [5, 10, 5], "chunk_interval": 10, "wav_name": "demo",
        "wav_format": "pcm", "audio_fs": 16000, "is_speaking": true, "hotwords": "{\"Stella\":20}", "itn": true,
    });
    ws.send(Message::Text(config.to_string().into())).await.unwrap();
    // 60 * chunk_size[1] / chunk_interval ms per message, as the FunASR client sends.
    let stride = 16 * 60;
    let bytes = to_s16le(audio);
    let pace = Duration::from_millis(60 / 4);
    for chunk in bytes.chunks(stride * 2) {
        ws.send(Message::Binary(chunk.to_vec().into())).await.unwrap();
        tokio::time::sleep(pace).await;
    }
    ws.send(Message::Text(json!({"is_speaking": false}).to_string().into())).await.unwrap();
    let (mut offline, mut online, mut all) = (String::new(), String::new(), Vec::new());
    while let Some(m) = next_json(ws, Duration::from_secs(60)).await {
        all.push(m.clone());
        match m["mode"].as_str() {
            Some("2pass-online") | Some("online") => online.push_str(m["text"].as_str().unwrap_or("")),
            Some("2pass-offline") | Some("offline") => {
                online.clear();
                offline.push_str(m["text"].as_str().unwrap_or(""));
                offline.push(' ');
            }
            _ => {}
        }
        if m["is_final"] == json!(true) {
            break;
        }
    }
    (if mode == "online" { online } else { offline }, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funasr_clients_work_unchanged() {
    let _g = serial().await;
    let stack = Stack::start().await;
    let audio = speak_sentences(&SENTENCES, 800);
    let reference = SENTENCES.join(" ");
    // The root of the server, as FunASR clients connect, with their "binary" subprotocol.
    let mut req = format!("ws://{}/", stack.addr).into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "binary".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.expect("upgrade at /");
    assert_eq!(resp.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()), Some("binary"));

    let (text, msgs) = funasr_stream(&mut ws, "2pass", &audio).await;
    eprintln!("2pass: {text}");
    assert!(wer(&reference, &text) <= 0.35, "{text}: {msgs:?}");
    let sentences: Vec<&Value> = msgs.iter().filter(|m| m["mode"] == "2pass-offline" && m["text"] != "").collect();
    assert_eq!(sentences.len(), 2, "{msgs:?}");
    for s in &sentences {
        assert_eq!((s["wav_name"].as_str(), s["is_final"].as_bool()), (Some("demo"), Some(false)));
        // timestamp: "[[start,end],...]" in ms, one span per word, in order.
        let spans: Vec<Vec<u64>> = serde_json::from_str(s["timestamp"].as_str().expect("timestamp")).unwrap();
        assert!(!spans.is_empty() && spans.windows(2).all(|w| w[0][0] <= w[1][0]), "{s}");
    }
    let last = msgs.last().unwrap();
    assert_eq!((last["is_final"].as_bool(), last["is_end"].as_bool()), (Some(true), Some(true)), "{last}");

    // The same socket takes the next stream, here in offline mode: sentences only.
    let (text, msgs) = funasr_stream(&mut ws, "offline", &speak_sentences(&SENTENCES[..1], 600)).await;
    eprintln!("offline: {text}");
    assert!(wer(SENTENCES[0], &text) <= 0.35, "{text}: {msgs:?}");
    assert!(msgs.iter().all(|m| m["mode"] != "online" && m["mode"] != "2pass-online"), "{msgs:?}");

    // An explicit /funasr path works too; a bad configuration gets an error and ends the stream.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/funasr", stack.addr)).await.unwrap();
    ws.send(Message::Text(json!({"mode": "offline", "wav_format": "mp3"}).to_string().into())).await.unwrap();
    let m = next_json(&mut ws, Duration::from_secs(5)).await.expect("an error");
    assert_eq!((m["code"].as_str(), m["is_end"].as_bool()), (Some("unsupported_format"), Some(true)), "{m}");
    // And the web page is still at the root for browsers.
    let (status, body) = http_get(stack.addr, "/").await.unwrap();
    assert!(status == 200 && body.contains("<html"), "{status}");
}

fn wav_base64(samples: &[f32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(kiki_protocol::wav::write_wav(samples, 16_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kikipounamu_clients_work_unchanged() {
    let _g = serial().await;
    let stack = Stack::start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/asr", stack.addr)).await.unwrap();
    // Two recordings one after the other on one socket, as the Electron client does.
    for (round, session) in
        ["3f6c1e9a-0000-4000-8000-000000000001", "3f6c1e9a-0000-4000-8000-000000000002"].iter().enumerate()
    {
        ws.send(Message::Text(json!({"action": "start", "session_id": session}).to_string().into())).await.unwrap();
        let ack = next_json(&mut ws, Duration::from_secs(10)).await.unwrap();
        assert_eq!((ack["type"].as_str(), ack["status"].as_str()), (Some("ack"), Some("session_started")), "{ack}");
        // The client's VAD cut each sentence; each chunk is one WAV file.
        let chunks: Vec<Vec<f32>> = SENTENCES.iter().map(|s| speak_sentences(&[s], 200)).collect();
        for (i, c) in chunks.iter().enumerate() {
            let msg = json!({"action": "chunk", "session_id": session, "chunk_index": i, "audio_data": wav_base64(c)});
            ws.send(Message::Text(msg.to_string().into())).await.unwrap();
        }
        ws.send(Message::Text(json!({"action": "finish", "session_id": session}).to_string().into())).await.unwrap();
        let (mut acks, mut results, mut fin) = (0, Vec::new(), None);
        while let Some(m) = next_json(&mut ws, Duration::from_secs(60)).await {
            match m["type"].as_str() {
                Some("ack") => {
                    assert_eq!(m["status"], "received");
                    acks += 1;
                }
                Some("chunk_result") => results.push(m),
                Some("final_result") => {
                    fin = Some(m);
                    break;
                }
                _ => panic!("unexpected {m}"),
            }
        }
        let fin = fin.expect("final_result");
        eprintln!("round {round}: {fin}");
        assert_eq!(acks, 2);
        let mut indices: Vec<u64> = results.iter().map(|r| r["chunk_index"].as_u64().unwrap()).collect();
        indices.sort();
        assert_eq!(indices, vec![0, 1]);
        assert_eq!((fin["session_id"].as_str(), fin["chunk_count"].as_u64()), (Some(*session), Some(2)));
        assert!(fin["duration"].as_f64().is_some_and(|d| d > 0.0));
        let text = fin["text"].as_str().unwrap();
        assert!(wer(&SENTENCES.join(" "), text) <= 0.35, "{text}");
    }
    // Errors as that protocol has them, and the socket keeps serving.
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"], "error");
    let msg = json!({"action": "chunk", "session_id": "unknown", "chunk_index": 0, "audio_data": ""});
    ws.send(Message::Text(msg.to_string().into())).await.unwrap();
    let m = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert!(m["type"] == "error" && m["message"].as_str().unwrap().contains("unknown"), "{m}");
}
