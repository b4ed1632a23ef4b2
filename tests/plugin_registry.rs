//! The plugin registry as operators and sessions use it: per-session choices limited to an
//! allow-list and checked against manifests, the failure policy (fall back to the default, or
//! end with an error), and hot swap of the workers' post-processor through the admin API
//! (upload, activate, roll back, per-kind default), carried to the worker by the record in Redis.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use kiki::channels::tasks::TaskMeta;
use kiki::config::OnFailure;
use kiki::gateway::protocol::{ErrorCode, ServerMessage};
use serde_json::{Value, json};

/// A plugin directory with the default plugins (and their manifests) and the named test plugins.
fn plugin_dir(test_plugins: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in
        [&format!("vad@{vad}", vad = vad_version()), &format!("text@{text}", text = text_version()), "default@0.1.0"]
    {
        for ext in ["wasm", "toml"] {
            let src = repo_root().join(format!(".cache/plugins/{f}.{ext}"));
            std::fs::copy(&src, dir.path().join(format!("{f}.{ext}"))).expect("run make setup");
        }
    }
    for f in test_plugins {
        copy_test_plugin(dir.path(), f, f);
    }
    dir
}

fn copy_test_plugin(dir: &Path, from: &str, to: &str) {
    std::fs::copy(repo_root().join(format!(".cache/test-plugins/{from}.wasm")), dir.join(format!("{to}.wasm")))
        .expect("run plugins/testing/build.sh");
}

async fn start(stack: &Stack, start: Value) -> (Client, ServerMessage) {
    let mut c = stack.connect().await;
    let mut msg = json!({"type": "start"});
    msg.as_object_mut().unwrap().extend(start.as_object().unwrap().clone());
    c.send_json(msg).await;
    let first = c.recv(Duration::from_secs(10)).await.expect("an answer to start");
    (c, first)
}

fn invalid_option(m: &ServerMessage) -> String {
    match m {
        ServerMessage::Error { code: ErrorCode::InvalidOption, message, .. } => message.clone(),
        other => panic!("expected invalid_option, got {other:?}"),
    }
}

async fn task_lengths(stack: &Stack) -> HashMap<String, Vec<u64>> {
    let mut conn = stack.redis().await;
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg("kiki:{tasks}").arg("-").arg("+").query_async(&mut conn).await.unwrap();
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    for e in reply.ids {
        let meta: Vec<u8> = redis::from_redis_value_ref(&e.map["meta"]).unwrap();
        let meta: TaskMeta = serde_json::from_slice(&meta).unwrap();
        out.entry(meta.session).or_default().push(meta.end_ms - meta.start_ms);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_choose_allowed_segmenters_with_checked_options_and_fall_back_on_failure() {
    let dir = plugin_dir(&["echo@0.1.0", "alloc@0.1.0"]);
    let mut cfg = test_config();
    cfg.plugins.dir = Some(dir.path().to_path_buf());
    cfg.plugins.allow.segmenter = vec!["echo".into()];
    cfg.plugins.watch_ms = 0;
    let stack = Stack::gateway_only(cfg).await;

    // Allowed, with its own option: its cuts are the ones queued.
    let (mut echo, first) = start(&stack, json!({"plugins": {"segmenter": {"name": "echo", "every": "1600"}}})).await;
    let ServerMessage::Ready { session, .. } = first else { panic!("{first:?}") };
    let tone: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    echo.stream(&tone, 4.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lengths = task_lengths(&stack).await;
    assert!(lengths[&session].len() >= 9 && lengths[&session].iter().all(|l| *l == 100), "{lengths:?}");

    // Off the allow-list, unknown or out-of-range options (the vad manifest), unknown kinds.
    let (_, m) = start(&stack, json!({"plugins": {"segmenter": {"name": "alloc"}}})).await;
    assert!(invalid_option(&m).contains("not allowed here (allowed: vad, echo)"), "{m:?}");
    let (_, m) = start(&stack, json!({"plugins": {"segmenter": {"hangover": "250"}}})).await;
    assert!(invalid_option(&m).contains("unknown option `hangover`"), "{m:?}");
    let (_, m) = start(&stack, json!({"plugins": {"segmenter": {"hangover_ms": 5}}})).await;
    assert!(invalid_option(&m).contains("outside 10..=60000"), "{m:?}");
    let (_, m) = start(&stack, json!({"plugins": {"transcoder": {}}})).await;
    assert!(invalid_option(&m).contains("no such plugin kind"), "{m:?}");
    let (_, m) = start(&stack, json!({"plugins": {"postprocessor": "panicky"}})).await;
    assert!(invalid_option(&m).contains("not allowed"), "{m:?}");
    let (ok, m) = start(&stack, json!({"plugins": {"segmenter": {"hangover_ms": 250}}})).await;
    assert!(matches!(m, ServerMessage::Ready { .. }), "{m:?}");
    drop(ok);

    // A plugin's own refusal of an option is an invalid option too.
    let (_, m) = start(&stack, json!({"plugins": {"segmenter": {"name": "echo", "every": 0}}})).await;
    assert!(invalid_option(&m).contains("every"), "{m:?}");

    // A plugin that passed its self-test but never returns on this session's audio runs out of
    // fuel: the session says so and goes on with the default segmenter; the connection stays up
    // and ends cleanly.
    let (mut looping, m) = start(&stack, json!({"plugins": {"segmenter": {"name": "echo", "spin": true}}})).await;
    assert!(matches!(m, ServerMessage::Ready { .. }), "{m:?}");
    looping.stream(&tone[..3200], 4.0).await;
    match looping.recv(Duration::from_secs(10)).await {
        Some(ServerMessage::Error { code: ErrorCode::PluginFailed, message, .. }) => {
            assert!(message.contains(&format!("continues with vad@{vad}", vad = vad_version())), "{message}")
        }
        other => panic!("expected plugin_failed, got {other:?}"),
    }
    // Silence: the default segmenter cuts nothing (this stack has no worker to answer finals).
    looping.stream(&[0.0; 16_000], 4.0).await;
    let rest = looping.stop_and_collect().await;
    assert!(matches!(rest.last(), Some(ServerMessage::End { .. })), "{rest:?}");
    assert!(!rest.iter().any(|m| matches!(m, ServerMessage::Error { .. })), "one failure, one error: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_failure_error_a_failing_segmenter_ends_its_session() {
    let dir = plugin_dir(&["echo@0.1.0"]);
    let mut cfg = test_config();
    cfg.plugins.dir = Some(dir.path().to_path_buf());
    cfg.plugins.allow.segmenter = vec!["echo".into()];
    cfg.plugins.on_failure = OnFailure::Error;
    cfg.plugins.watch_ms = 0;
    let stack = Stack::gateway_only(cfg).await;
    let (mut c, m) = start(&stack, json!({"plugins": {"segmenter": {"name": "echo", "spin": true}}})).await;
    assert!(matches!(m, ServerMessage::Ready { .. }), "{m:?}");
    c.send_binary(vec![0; 640]).await;
    let mut got = Vec::new();
    while let Some(m) = c.recv(Duration::from_secs(10)).await {
        let end = matches!(m, ServerMessage::End { .. });
        got.push(m);
        if end {
            break;
        }
    }
    assert!(
        matches!(&got[0], ServerMessage::Error { code: ErrorCode::PluginFailed, message, .. } if message.contains("the session ends")),
        "{got:?}"
    );
    assert!(matches!(got.last(), Some(ServerMessage::End { segments: 0 })), "{got:?}");
    // Other sessions are untouched.
    let (_, m) = start(&stack, json!({})).await;
    assert!(matches!(m, ServerMessage::Ready { .. }), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_segmenter_that_fails_on_every_call_is_restarted_twice_then_the_session_ends() {
    let dir = plugin_dir(&["echo@0.1.0"]);
    let mut cfg = test_config();
    cfg.plugins.dir = Some(dir.path().to_path_buf());
    cfg.plugins.segmenter = "echo".into();
    cfg.plugins.watch_ms = 0;
    let stack = Stack::gateway_only(cfg).await;
    // The default itself, with an option that makes every push run out of fuel: a restart
    // fed the same audio fails the same way, so the audio is skipped, then the session ends
    // (rather than restarting and replaying for ever).
    let (mut c, m) = start(&stack, json!({"plugins": {"segmenter": {"spin": true}}})).await;
    assert!(matches!(m, ServerMessage::Ready { .. }), "{m:?}");
    let mut errors = Vec::new();
    let mut ended = false;
    for _ in 0..4 {
        c.send_binary(vec![0; 640]).await;
        while let Some(m) = c.recv(Duration::from_secs(3)).await {
            match m {
                ServerMessage::Error { code: ErrorCode::PluginFailed, message, .. } => errors.push(message),
                ServerMessage::End { .. } => ended = true,
                other => panic!("{other:?}"),
            }
            if ended {
                break;
            }
        }
        if ended {
            break;
        }
    }
    assert!(ended, "{errors:?}");
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].contains("restarted it"), "{errors:?}");
    assert!(errors[1].contains("restarted it") && errors[2].contains("is skipped"), "{errors:?}");
    assert!(errors[3].contains("3 times in a row"), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_longer_than_the_gateway_keeps_is_reported_not_silently_cut() {
    let dir = plugin_dir(&["echo@0.1.0"]);
    let mut cfg = test_config();
    cfg.plugins.dir = Some(dir.path().to_path_buf());
    cfg.plugins.allow.segmenter = vec!["echo".into()];
    cfg.plugins.watch_ms = 0;
    cfg.gateway.max_segment_s = 1;
    let stack = Stack::gateway_only(cfg).await;
    // Finals every 2 s of audio, the gateway keeping 1 s.
    let (mut c, m) = start(&stack, json!({"plugins": {"segmenter": {"name": "echo", "every": 32_000}}})).await;
    let ServerMessage::Ready { session, .. } = m else { panic!("{m:?}") };
    let tone: Vec<f32> = (0..40_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    c.stream(&tone, 8.0).await;
    match c.recv(Duration::from_secs(5)).await {
        Some(ServerMessage::Error { code: ErrorCode::PluginFailed, segment: Some(_), message, .. }) => {
            assert!(message.contains("its first 1000 ms were not kept"), "{message}")
        }
        other => panic!("expected plugin_failed for the segment, got {other:?}"),
    }
    // The part that was kept is queued all the same.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lengths = task_lengths(&stack).await;
    assert_eq!(lengths.get(&session).map(|v| v[0]), Some(1000), "{lengths:?}");
}

/// Finals of one utterance streamed with `start`'s options: (text, errors).
async fn transcribe(stack: &Stack, audio: &[f32], options: Value) -> (String, Vec<String>) {
    let (mut c, m) = start(stack, options).await;
    assert!(matches!(m, ServerMessage::Ready { .. }), "{m:?}");
    c.stream(audio, 4.0).await;
    let msgs = c.stop_and_collect().await;
    let errors = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    (final_text(&msgs), errors)
}

/// The worker's live post-processors, as it reports them to the dashboard feed.
async fn worker_postprocessors(stack: &Stack) -> Vec<String> {
    let (_, body) = http_get(stack.addr, "/api/stats").await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "postprocessor")
        .map(|p| format!("{}@{}", p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .collect()
}

async fn wait_for_worker(stack: &Stack, label: &str) {
    for _ in 0..100 {
        if worker_postprocessors(stack).await.first().is_some_and(|l| l == label) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the worker never ran {label}: {:?}", worker_postprocessors(stack).await);
}

fn is_shouted(text: &str) -> bool {
    text.chars().any(char::is_alphabetic) && !text.chars().any(char::is_lowercase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_plugins_are_chosen_per_session_and_hot_swapped_through_the_admin_api() {
    let _g = serial().await;
    let dir = plugin_dir(&["shout@0.1.0", "panicky@0.1.0"]);
    // (loop@0.1.0 is copied in later, as a bad "new version" of text.)
    let mut cfg = test_config();
    cfg.plugins.dir = Some(dir.path().to_path_buf());
    cfg.plugins.allow.postprocessor = vec!["shout".into(), "panicky".into()];
    cfg.plugins.watch_ms = 100;
    cfg.worker.batch_wait_ms = 0;
    let stack = Stack::start_with(cfg).await;
    let audio = speak_sentences(&["Please call Stella."], 600);

    let (plain, errors) = transcribe(&stack, &audio, json!({})).await;
    assert!(!is_shouted(&plain) && plain.to_lowercase().contains("please call"), "{plain:?} {errors:?}");
    // The session's own choice, with its option passed through.
    let (text, _) =
        transcribe(&stack, &audio, json!({"plugins": {"postprocessor": {"name": "shout", "suffix": "!"}}})).await;
    assert!(is_shouted(&text) && text.ends_with('!'), "{text:?}");
    // A chosen plugin that traps: the default post-processor serves the result instead.
    let (text, errors) = transcribe(&stack, &audio, json!({"plugins": {"postprocessor": "panicky"}})).await;
    assert!(text.to_lowercase().contains("please call") && errors.is_empty(), "{text:?} {errors:?}");

    // A new version of `text` (one that shouts), uploaded and activated through the admin API:
    // the worker follows the record, sessions get it; rollback returns the old one.
    let shouting = std::fs::read(repo_root().join(".cache/test-plugins/shout@0.1.0.wasm")).unwrap();
    let (code, body) = http(stack.addr, "PUT", "/admin/plugins/files/text@90.0.0.wasm", &shouting).await.unwrap();
    assert_eq!(code, 201, "{body}");
    assert!(body.contains("\"kind\":\"postprocessor\""), "{body}");
    // Versions are immutable: the same bytes again are a no-op, other bytes a conflict.
    let (code, body) = http(stack.addr, "PUT", "/admin/plugins/files/text@90.0.0.wasm", &shouting).await.unwrap();
    assert_eq!((code, body.contains("unchanged")), (200, true), "{body}");
    let other = std::fs::read(dir.path().join(format!("text@{text}.wasm", text = text_version()))).unwrap();
    let (code, body) = http(stack.addr, "PUT", "/admin/plugins/files/text@90.0.0.wasm", &other).await.unwrap();
    assert_eq!(code, 409, "{body}");
    // Names and versions that no plugin file can have are refused before anything is touched.
    for bad in ["name=..%2Fx&version=1", "name=text&version=..", "name=&version=1"] {
        let (code, body) =
            http(stack.addr, "POST", &format!("/admin/plugins/postprocessor/activate?{bad}"), b"").await.unwrap();
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let (code, body) = http(stack.addr, "POST", "/admin/plugins/postprocessor/default?name=", b"").await.unwrap();
    assert_eq!(code, 400, "{body}");
    let (code, body) =
        http(stack.addr, "POST", "/admin/plugins/postprocessor/activate?name=text&version=90.0.0", b"").await.unwrap();
    assert_eq!(code, 200, "{body}");
    wait_for_worker(&stack, "text@90.0.0").await;
    let (text, _) = transcribe(&stack, &audio, json!({})).await;
    assert!(is_shouted(&text), "{text:?}");
    let (code, body) = http(stack.addr, "POST", "/admin/plugins/postprocessor/rollback", b"").await.unwrap();
    assert_eq!((code, body.contains(&format!("text@{text}", text = text_version()))), (200, true), "{body}");
    wait_for_worker(&stack, &format!("text@{text}", text = text_version())).await;
    let (text, _) = transcribe(&stack, &audio, json!({})).await;
    assert!(!is_shouted(&text), "{text:?}");

    // A version that is no post-processor at all is refused before anything is recorded.
    copy_test_plugin(dir.path(), "loop@0.1.0", "text@0.3.0");
    let (code, body) =
        http(stack.addr, "POST", "/admin/plugins/postprocessor/activate?name=text&version=0.3.0", b"").await.unwrap();
    assert_eq!(code, 422, "{body}");
    // Each kind's default, for sessions that name none.
    let (code, body) = http(stack.addr, "POST", "/admin/plugins/postprocessor/default?name=shout", b"").await.unwrap();
    assert_eq!(code, 200, "{body}");
    wait_for_worker(&stack, "shout@0.1.0").await;
    let (text, _) = transcribe(&stack, &audio, json!({})).await;
    assert!(is_shouted(&text), "{text:?}");
    // A session that names the default gets its options passed on all the same.
    let (text, _) =
        transcribe(&stack, &audio, json!({"plugins": {"postprocessor": {"name": "shout", "suffix": "?"}}})).await;
    assert!(is_shouted(&text) && text.ends_with('?'), "{text:?}");
    // The listing shows the deployment's record and the files with their manifests.
    let (code, body) = http_get(stack.addr, "/admin/plugins").await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200);
    assert_eq!(v["deployment"]["active"]["postprocessor/text"], text_version(), "{body}");
    assert_eq!(v["deployment"]["defaults"]["postprocessor"], "shout", "{body}");
    assert!(
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["file"] == format!("vad@{vad}", vad = vad_version()) && f["manifest"]["kind"] == "segmenter")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_failure_error_a_failing_postprocessor_is_reported_with_the_raw_text() {
    let _g = serial().await;
    let dir = plugin_dir(&["panicky@0.1.0"]);
    let mut cfg = test_config();
    cfg.plugins.dir = Some(dir.path().to_path_buf());
    cfg.plugins.allow.postprocessor = vec!["panicky".into()];
    cfg.plugins.on_failure = OnFailure::Error;
    let stack = Stack::start_with(cfg).await;
    let audio = speak_sentences(&["Please call Stella."], 600);
    let (text, errors) = transcribe(&stack, &audio, json!({"plugins": {"postprocessor": "panicky"}})).await;
    assert!(text.to_lowercase().contains("please call"), "the raw text is delivered: {text:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("panicky@0.1.0 failed"), "{errors:?}");
}

/// Under `fallback`, a default post-processor that fails has nothing to fall back to: the raw
/// text is delivered and the session is told (it was silent before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_default_postprocessor_is_reported_under_fallback() {
    let _g = serial().await;
    let dir = plugin_dir(&["panicky@0.1.0"]);
    let mut cfg = test_config();
    cfg.plugins.dir = Some(dir.path().to_path_buf());
    cfg.plugins.postprocessor = "panicky".into();
    let stack = Stack::start_with(cfg).await;
    let audio = speak_sentences(&["Please call Stella."], 600);
    let (text, errors) = transcribe(&stack, &audio, json!({})).await;
    assert!(text.to_lowercase().contains("please call"), "the raw text is delivered: {text:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("panicky@0.1.0 failed"), "{errors:?}");
}
