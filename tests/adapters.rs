//! Compatibility adapters, driven by clients written from those protocols' public documents:
//! the FunASR runtime WebSocket protocol (`runtime/docs/websocket_protocol.md`: configuration
//! JSON, binary PCM, `is_speaking: false`; results with `mode`, `text`, `is_final`,
//! `timestamp`) at the server's root, and the kikipounamu protocol at `/ws/asr` (JSON actions
//! with base64 WAV chunks; `ack`, `chunk_result`, `final_result`).

use std::time::Duration;

use crate::common::*;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SENTENCES: [&str; 2] =
    ["The quick brown fox jumps over the lazy dog.", "I would like a cup of coffee with milk and sugar."];

/// A FunASR client as the protocol document describes one, in `mode`; returns the text it
/// shows (offline sentences, plus streaming increments in online mode) and every message.
async fn funasr_stream(ws: &mut Socket, mode: &str, audio: &[f32], stop: Value) -> (String, Vec<Value>) {
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
    ws.send(Message::Text(stop.to_string().into())).await.unwrap();
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

    // FunASR's HTML5 client repeats its configuration in the stop message: it stops this stream.
    let html5_stop = json!({"chunk_size": [5, 10, 5], "wav_name": "demo", "is_speaking": false, "chunk_interval": 10, "mode": "2pass"});
    let (text, msgs) = funasr_stream(&mut ws, "2pass", &audio, html5_stop).await;
    eprintln!("2pass: {text}");
    assert!(wer(&reference, &text) <= 0.35, "{text}: {msgs:?}");
    let sentences: Vec<&Value> = msgs.iter().filter(|m| m["mode"] == "2pass-offline" && m["text"] != "").collect();
    assert_eq!(sentences.len(), 2, "{msgs:?}");
    let mut last_end = 0;
    for s in &sentences {
        assert_eq!(s["wav_name"].as_str(), Some("demo"));
        // timestamp: "[[start,end],...]" in ms, increasing, never overlapping, never empty.
        let spans: Vec<Vec<u64>> = serde_json::from_str(s["timestamp"].as_str().expect("timestamp")).unwrap();
        assert!(!spans.is_empty(), "{s}");
        for span in &spans {
            assert!(span[0] >= last_end && span[1] > span[0], "{s}");
            last_end = span[1];
        }
    }
    // The last sentence comes with is_final, as FunASR's 2pass server sends it.
    let last = msgs.last().unwrap();
    assert_eq!((last["is_final"].as_bool(), last["is_end"].as_bool()), (Some(true), Some(true)), "{last}");
    assert!(last["text"].as_str().is_some_and(|t| t.contains("milk and sugar")), "{last}");
    assert!(msgs[..msgs.len() - 1].iter().all(|m| m["is_final"] == false), "{msgs:?}");

    // The same socket takes the next stream, here in offline mode: sentences only.
    let stop = json!({"is_speaking": false});
    let (text, msgs) = funasr_stream(&mut ws, "offline", &speak_sentences(&SENTENCES[..1], 600), stop.clone()).await;
    eprintln!("offline: {text}");
    assert!(wer(SENTENCES[0], &text) <= 0.35, "{text}: {msgs:?}");
    assert!(msgs.iter().all(|m| m["mode"] != "online" && m["mode"] != "2pass-online"), "{msgs:?}");

    // Online mode: the client appends every message; words are sent once settled, so revisions
    // never garble or repeat the text.
    let (text, msgs) = funasr_stream(&mut ws, "online", &audio, stop).await;
    eprintln!("online: {text}");
    // Online text is what the partials settled on (they read a cheaper window than finals), so
    // it misses more than 2pass: "roundfire stump" where the final heard "brown fox" comes and
    // goes with the partials' timing. What must never happen is garbling: a word repeated, or
    // text sent twice.
    let words: Vec<String> = text.split_whitespace().map(|w| w.to_lowercase()).collect();
    assert!(words.windows(2).all(|p| p[0] != p[1]), "a word repeated: {text}");
    assert!(words.len().abs_diff(reference.split_whitespace().count()) <= 2, "{text}: {msgs:?}");
    assert!(wer(&reference, &text) <= 0.45, "{text}: {msgs:?}");

    // An explicit /funasr path works too; a bad configuration gets an error and ends the stream.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/funasr", stack.addr)).await.unwrap();
    ws.send(Message::Text(json!({"mode": "sideways"}).to_string().into())).await.unwrap();
    let m = next_json(&mut ws, Duration::from_secs(5)).await.expect("an error");
    assert_eq!((m["code"].as_str(), m["is_end"].as_bool()), (Some("invalid_option"), Some(true)), "{m}");
    // A file in a container format is decoded at its end; one that is not WAV is refused then.
    ws.send(Message::Text(json!({"mode": "offline", "wav_format": "mp3", "wav_name": "x"}).to_string().into()))
        .await
        .unwrap();
    ws.send(Message::Binary(b"ID3 not a WAV file".to_vec().into())).await.unwrap();
    ws.send(Message::Text(json!({"is_speaking": false}).to_string().into())).await.unwrap();
    let m = next_json(&mut ws, Duration::from_secs(10)).await.expect("an error");
    assert_eq!(m["code"].as_str(), Some("unsupported_format"), "{m}");
    let m = next_json(&mut ws, Duration::from_secs(10)).await.expect("the end");
    assert_eq!((m["is_final"].as_bool(), m["is_end"].as_bool()), (Some(true), Some(true)), "{m}");
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

/// Sentences of the test set, round and round, as long as they fit in `seconds`: (audio,
/// reference text).
fn long_speech(seconds: usize) -> (Vec<f32>, String) {
    let text = std::fs::read_to_string(repo_root().join("tests/data/sentences.txt")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (mut audio, mut said) = (vec![0.0; 16 * 300], Vec::new());
    for line in lines.iter().cycle() {
        let mut next = speak(line);
        next.extend(std::iter::repeat_n(0.0, 16 * 500));
        if audio.len() + next.len() > seconds * 16_000 {
            break;
        }
        audio.extend(next);
        said.push(*line);
    }
    (audio, said.join(" "))
}

/// Where to cut `audio` about `seconds` after sample `from`: at the quietest 100 ms of the two
/// seconds before, so that no word is cut in two.
fn cut_near(audio: &[f32], from: usize, seconds: usize) -> usize {
    let target = (from + seconds * 16_000).min(audio.len());
    if target == audio.len() {
        return target;
    }
    let window = 1_600;
    (target.saturating_sub(32_000)..target)
        .step_by(window)
        .min_by(|&a, &b| {
            let e = |i: usize| audio[i..(i + window).min(audio.len())].iter().map(|x| x * x).sum::<f32>();
            e(a).total_cmp(&e(b))
        })
        .unwrap_or(target)
}

/// kikipounamu's Electron client, unchanged, on long recordings: its default "unlimited" mode
/// sends the whole recording as one chunk when the user stops (here 5 minutes); its
/// `time_limit` mode sends a chunk every 180 s and the rest at the end. Every chunk is taken
/// whole (no speed limit refuses it) and transcribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kikipounamu_long_recordings_are_transcribed_whole() {
    let _g = serial().await;
    let mut cfg = test_config();
    cfg.gateway.final_timeout_s = 600;
    let stack = Stack::start_with(cfg).await;
    let (audio, reference) = long_speech(300);
    let audio = &audio[..];
    let reference_words = reference.split_whitespace().count();
    eprintln!("{:.0} s of speech, {reference_words} words", audio.len() as f64 / 16_000.0);
    let three_minutes = cut_near(audio, 0, 180);
    for (mode, chunks) in
        [("unlimited", vec![audio]), ("time_limit", vec![&audio[..three_minutes], &audio[three_minutes..]])]
    {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/asr", stack.addr)).await.unwrap();
        let session = format!("long-{mode}");
        ws.send(Message::Text(json!({"action": "start", "session_id": session}).to_string().into())).await.unwrap();
        assert_eq!(next_json(&mut ws, Duration::from_secs(10)).await.unwrap()["status"], "session_started");
        for (i, c) in chunks.iter().enumerate() {
            let msg = json!({"action": "chunk", "session_id": session, "chunk_index": i, "audio_data": wav_base64(c)});
            ws.send(Message::Text(msg.to_string().into())).await.unwrap();
        }
        ws.send(Message::Text(json!({"action": "finish", "session_id": session}).to_string().into())).await.unwrap();
        let mut fin = None;
        while let Some(m) = next_json(&mut ws, Duration::from_secs(600)).await {
            match m["type"].as_str() {
                Some("ack") | Some("chunk_result") => {}
                Some("final_result") => {
                    fin = Some(m);
                    break;
                }
                _ => panic!("{mode}: unexpected {m}"),
            }
        }
        let fin = fin.unwrap_or_else(|| panic!("{mode}: no final_result"));
        let text = fin["text"].as_str().unwrap_or("");
        let w = wer(&reference, text);
        eprintln!("{mode}: {} words back, WER {w:.3}", text.split_whitespace().count());
        assert_eq!(fin["chunk_count"].as_u64(), Some(chunks.len() as u64), "{fin}");
        assert!(w <= 0.25, "{mode}: WER {w}: {text}");
    }
}

/// kikipounamu's client records in silence for as long as the user speaks, answering pings,
/// and sends its chunk at the end: 90 s at the default timeouts, and the session is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kikipounamu_survives_90_s_of_recording() {
    let stack = Stack::gateway_only(test_config()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/asr", stack.addr)).await.unwrap();
    ws.send(Message::Text(json!({"action": "start", "session_id": "quiet"}).to_string().into())).await.unwrap();
    assert_eq!(next_json(&mut ws, Duration::from_secs(10)).await.unwrap()["status"], "session_started");
    // Reading answers the pings; nothing else arrives meanwhile.
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(90);
    while let Ok(m) = tokio::time::timeout_at(quiet_until, ws.next()).await {
        match m {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("a recording client got {other:?}"),
        }
    }
    let msg = json!({"action": "chunk", "session_id": "quiet", "chunk_index": 0, "audio_data": wav_base64(&speak("Hello there."))});
    ws.send(Message::Text(msg.to_string().into())).await.unwrap();
    let ack = next_json(&mut ws, Duration::from_secs(10)).await.unwrap();
    assert_eq!(ack, json!({"type": "ack", "chunk_index": 0, "status": "received"}));
}

/// funasr-python's file upload: 10 ms frames as fast as it can send (about 740 frames/s), a
/// 3-minute file in offline mode. Nothing is dropped for speed: the whole text comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funasr_offline_files_at_full_speed_lose_nothing() {
    let _g = serial().await;
    let mut cfg = test_config();
    cfg.gateway.final_timeout_s = 600;
    let stack = Stack::start_with(cfg).await;
    let (audio, reference) = long_speech(180);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", stack.addr)).await.unwrap();
    let config = json!({"mode": "offline", "chunk_size": [5, 10, 5], "chunk_interval": 10, "wav_name": "file", "wav_format": "pcm", "audio_fs": 16000, "is_speaking": true, "itn": true});
    ws.send(Message::Text(config.to_string().into())).await.unwrap();
    let bytes = to_s16le(&audio);
    let started = std::time::Instant::now();
    for frame in bytes.chunks(320) {
        ws.send(Message::Binary(frame.to_vec().into())).await.unwrap();
    }
    ws.send(Message::Text(json!({"is_speaking": false, "is_end": true}).to_string().into())).await.unwrap();
    eprintln!("{} frames sent in {:?}", bytes.len() / 320, started.elapsed());
    let mut text = String::new();
    let mut last = None;
    while let Some(m) = next_json(&mut ws, Duration::from_secs(600)).await {
        assert!(m.get("error").is_none(), "{m}");
        text.push_str(m["text"].as_str().unwrap_or(""));
        text.push(' ');
        if m["is_final"] == true {
            last = Some(m);
            break;
        }
    }
    let last = last.expect("an is_final message");
    assert_eq!(last["is_end"], true);
    let (words, reference_words) = (text.split_whitespace().count(), reference.split_whitespace().count());
    let w = wer(&reference, &text);
    eprintln!("offline at full speed: {words} of {reference_words} words, WER {w:.3}");
    // Audio dropped for speed would show as missing words; the model's own errors on espeak
    // sentences cut one by one run near 0.3.
    assert!(words * 10 >= reference_words * 9 && w <= 0.35, "WER {w}: {text}");
}

/// Runs one of FunASR's PyPI clients (tests/clients/, set up by tests/clients/setup.sh) on a
/// file: its JSON report.
async fn pypi_client(library: &str, url: &str, wav: &std::path::Path, mode: &str) -> Value {
    let root = repo_root();
    let python = root.join(format!(".cache/clients/{library}/bin/python"));
    let script = root.join(format!("tests/clients/{}.py", library.replace('-', "_")));
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args(["--url", url, "--mode", mode, "--deadline", "300", "--wav"])
        .arg(wav)
        .output()
        .await
        .expect("run tests/clients/setup.sh first (make test does)");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{library}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success() && report["error"].is_null(), "{library} {mode}: {report}");
    report
}

/// FunASR's client libraries from PyPI, unchanged: funasr-python (10 ms frames at ~9× real time;
/// it keeps the last `is_final` result) and funasr-client (60 ms frames at ~28× real time; it
/// joins the `2pass-offline` sentences, and sends a second stop as it closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funasr_pypi_clients_work_unchanged() {
    let _g = serial().await;
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("two.wav");
    write_wav(&wav, &speak_sentences(&SENTENCES, 800), 16_000, 1);
    let url = format!("ws://{}/", stack.addr);
    let reference = SENTENCES.join(" ");

    // Offline: one result for the file, with is_final, which funasr-python returns.
    let r = pypi_client("funasr-python", &url, &wav, "offline").await;
    let text = r["text"].as_str().unwrap_or("");
    eprintln!("funasr-python offline: {text}");
    assert!(wer(&reference, text) <= 0.35, "{r}");
    // 2pass: it stops at the first is_final, the stream's last sentence, as with FunASR's server.
    let r = pypi_client("funasr-python", &url, &wav, "2pass").await;
    let text = r["text"].as_str().unwrap_or("");
    eprintln!("funasr-python 2pass: {text}");
    assert!(wer(SENTENCES[1], text) <= 0.35, "{r}");

    // funasr-client joins the 2pass-offline sentences: the whole text, spans it can parse.
    let r = pypi_client("funasr-client", &url, &wav, "2pass").await;
    let text = r["text"].as_str().unwrap_or("");
    eprintln!("funasr-client 2pass: {text}");
    assert!(wer(&reference, text) <= 0.35, "{r}");
    // Offline results are labelled "offline", which it does not merge (nor from FunASR's own
    // servers); the whole text is among the messages it received.
    let r = pypi_client("funasr-client", &url, &wav, "offline").await;
    let offline: Vec<&Value> = r["results"].as_array().unwrap().iter().filter(|m| m["mode"] == "offline").collect();
    assert_eq!(offline.len(), 1, "{r}");
    assert!(wer(&reference, offline[0]["text"].as_str().unwrap_or("")) <= 0.35, "{r}");
}
