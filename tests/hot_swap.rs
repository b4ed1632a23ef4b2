//! Hot swap under load: live sessions keep streaming while the segmenter version changes; no
//! frame is lost, no session closes, and every segment comes from one version.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use kiki::channels::tasks::TaskMeta;
use kiki::gateway::protocol::ServerMessage;
use serde_json::json;

/// echo@0.1.0 cuts every `every` samples, echo@0.2.0 every `every / 2`.
const EVERY: u64 = 1600;

fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for v in ["0.1.0", "0.2.0"] {
        let src = repo_root().join(format!(".cache/test-plugins/echo@{v}.wasm"));
        std::fs::copy(&src, dir.path().join(format!("echo@{v}.wasm"))).expect("run plugins/testing/build.sh");
    }
    dir
}

async fn tasks_by_session(stack: &Stack) -> HashMap<String, Vec<TaskMeta>> {
    let mut conn = stack.redis().await;
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg("kiki:{tasks}").arg("-").arg("+").query_async(&mut conn).await.unwrap();
    let mut out: HashMap<String, Vec<TaskMeta>> = HashMap::new();
    for e in reply.ids {
        let meta: Vec<u8> = redis::from_redis_value_ref(&e.map["meta"]).unwrap();
        let meta: TaskMeta = serde_json::from_slice(&meta).unwrap();
        out.entry(meta.session.clone()).or_default().push(meta);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_stream_through_ten_swaps() {
    let _g = serial().await;
    stream_through_ten_swaps(200, false).await;
}

/// The same with `gateway.speech_prob`: audio reaches the segmenter in pieces cut at Silero's
/// 32 ms chunks, and a new version is fed the audio since the boundary with the probabilities
/// kept for it. (20 sessions: Silero costs ~0.5% of a core each.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_speech_probability_twenty_sessions_stream_through_ten_swaps() {
    let _g = serial().await;
    stream_through_ten_swaps(20, true).await;
}

async fn stream_through_ten_swaps(sessions: usize, speech_prob: bool) {
    let dir = plugin_dir();
    let mut cfg = test_config();
    cfg.gateway.speech_prob = speech_prob;
    cfg.plugins.dir = Some(dir.path().to_path_buf());
    cfg.plugins.segmenter = "echo".into();
    cfg.plugins.watch_ms = 0;
    // Make sure the newest file is not what starts: begin on 0.1.0 by activating it.
    let stack = Stack::gateway_only(cfg).await;
    let (code, body) =
        http(stack.addr, "POST", "/admin/plugins/segmenter/activate?name=echo&version=0.1.0", b"").await.unwrap();
    assert_eq!(code, 200, "{body}");

    let mut clients = Vec::new();
    for _ in 0..sessions {
        let mut c = stack.connect().await;
        c.send_json(json!({"type": "start", "plugins": {"segmenter": {"every": EVERY.to_string()}}})).await;
        assert!(matches!(c.recv(Duration::from_secs(10)).await, Some(ServerMessage::Ready { .. })));
        clients.push(c);
    }
    // 6 s of audio per session in 40 ms frames, paced at real time.
    let audio: Vec<f32> = (0..16_000 * 6).map(|i| ((i as f32) * 0.01).sin() * 0.1).collect();
    let streaming = tokio::spawn(async move {
        let frame = 640;
        let mut next = tokio::time::Instant::now();
        for chunk in audio.chunks(frame) {
            let bytes = to_s16le(chunk);
            for c in clients.iter_mut() {
                c.send_binary(bytes.clone()).await;
            }
            next += Duration::from_millis(40);
            tokio::time::sleep_until(next).await;
        }
        clients
    });
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(450)).await;
        let v = if i % 2 == 0 { "0.2.0" } else { "0.1.0" };
        let (code, body) =
            http(stack.addr, "POST", &format!("/admin/plugins/segmenter/activate?name=echo&version={v}"), b"")
                .await
                .unwrap();
        assert_eq!(code, 200, "swap {i}: {body}");
    }
    let clients = streaming.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stack.metrics.sessions_active.get(), sessions as i64, "no session closed");

    let by_session = tasks_by_session(&stack).await;
    assert_eq!(by_session.len(), sessions);
    let mut switched = 0;
    for (id, mut cuts) in by_session {
        cuts.sort_by_key(|m| m.start_ms);
        let mut expect_start = 0;
        let mut lengths = std::collections::BTreeSet::new();
        for m in &cuts {
            assert_eq!(m.start_ms, expect_start, "session {id}: gap or overlap before {m:?}");
            let len = m.end_ms - m.start_ms;
            assert!(len == 100 || len == 50, "session {id}: a cut of {len} ms mixes versions");
            lengths.insert(len);
            expect_start = m.end_ms;
        }
        // Everything up to the last whole period was cut: no frame lost.
        assert!(expect_start >= 6000 - 100, "session {id}: audio up to {expect_start} ms only");
        if lengths.len() == 2 {
            switched += 1;
        }
    }
    assert_eq!(switched, sessions, "every live session moved between versions");
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_file_in_the_directory_goes_live_and_rollback_returns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo_root().join(".cache/test-plugins/echo@0.1.0.wasm"), dir.path().join("echo@0.1.0.wasm")).unwrap();
    let mut cfg = test_config();
    cfg.plugins.dir = Some(dir.path().to_path_buf());
    cfg.plugins.segmenter = "echo".into();
    cfg.plugins.watch_ms = 100;
    cfg.gateway.admin_token = Some("s3cret".into());
    let stack = Stack::gateway_only(cfg).await;
    let active = || async {
        let (_, body) = http_get(stack.addr, "/readyz").await.unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["segmenter"].as_str().unwrap().to_string()
    };
    assert_eq!(active().await, "echo@0.1.0");
    // A broken "new version" is rejected and never goes live.
    std::fs::write(dir.path().join("echo@0.1.5.wasm"), b"not a component").unwrap();
    std::fs::copy(repo_root().join(".cache/test-plugins/loop@0.1.0.wasm"), dir.path().join("echo@0.1.7.wasm")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(active().await, "echo@0.1.0");
    // A good one is.
    std::fs::copy(repo_root().join(".cache/test-plugins/echo@0.2.0.wasm"), dir.path().join("echo@0.2.0.wasm")).unwrap();
    let mut live = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if active().await == "echo@0.2.0" {
            live = true;
            break;
        }
    }
    assert!(live, "the new version went live");
    // The admin API wants the token.
    let (code, _) = http(stack.addr, "POST", "/admin/plugins/segmenter/rollback", b"").await.unwrap();
    assert_eq!(code, 401);
    let auth = [("Authorization", "Bearer s3cret")];
    let (code, body) = http_with(stack.addr, "POST", "/admin/plugins/segmenter/rollback", &auth, b"").await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(active().await, "echo@0.1.0");
    // Errors name files, not the server's paths.
    let missing = "/admin/plugins/segmenter/activate?name=echo&version=9.9.9";
    let (code, body) = http_with(stack.addr, "POST", missing, &auth, b"").await.unwrap();
    assert_eq!(code, 422, "{body}");
    let dir = stack.cfg.plugin_dir();
    assert!(body.contains("echo@9.9.9") && !body.contains(&*dir.to_string_lossy()), "{body}");
}
