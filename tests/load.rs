//! The load tool against a real stack: every utterance it speaks must come back as a final, and
//! its report must say so (the short CI version of the capacity runs in docs/performance.md).

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tool_streams_sessions_and_accounts_for_every_final() {
    let _g = serial().await;
    let stack = Stack::start().await;
    let clips = tempfile::tempdir().unwrap();
    for (i, text) in
        ["The quick brown fox jumps over the lazy dog.", "I would like a cup of coffee."].iter().enumerate()
    {
        let path = clips.path().join(format!("c{i}.wav"));
        write_wav(&path, &speak(text), 16_000, 1);
        std::fs::write(path.with_extension("txt"), text).unwrap();
    }
    let report = kiki::tools::load::run(kiki::tools::load::LoadOptions {
        urls: vec![format!("ws://{}/ws", stack.addr)],
        sessions: 3,
        duration: Duration::from_secs(8),
        talk: 0.5,
        ramp: Duration::from_secs(1),
        clips: clips.path().to_path_buf(),
        watch: vec![("self".into(), std::process::id())],
        redis_url: Some(stack.redis_url.clone()),
        drain: Duration::from_secs(60),
        segmenter: vec![("hangover_ms".into(), "300".into())],
        frame_ms: 20,
    })
    .await
    .unwrap();
    eprintln!("{report}");
    assert_eq!((report.connected, report.held), (3, 3), "{report}");
    assert!(report.utterances >= 3, "{report}");
    assert_eq!(report.finalized, report.utterances, "every utterance gets its final: {report}");
    assert_eq!(report.finals, report.finals_reported, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.final_ms.n, report.utterances);
    assert!(report.final_ms.p50 > 0.0 && report.final_ms.p50 < 30_000.0, "{report}");
    assert_eq!(report.processes.len(), 1);
    assert!(report.processes[0].rss_end_mib > 0.0);
    // The gateway holds one subscriber and a constant set of Redis connections, not one per session.
    assert!(report.redis.as_ref().is_some_and(|r| r.connected_clients_peak < 10), "{report}");
    // The gateway's own frame timing and the worker's model, read back from the gateway.
    let frames = report.frame_handling_ms.as_ref().expect("frame histogram read from /metrics");
    assert!(frames.n > 100 && frames.p99 > 0.0, "{report}");
    assert!(report.workers.iter().any(|m| m.starts_with("tiny.en")), "{report}");
    // The autoscaling signals: backlog, oldest pending age, what each worker has done.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (_, metrics) = http_get(stack.addr, "/metrics").await.unwrap();
    for name in ["kiki_tasks_backlog ", "kiki_tasks_oldest_pending_ms ", "kiki_workers_alive 1"] {
        assert!(metrics.contains(name), "{name} missing");
    }
    let segments = metrics
        .lines()
        .find(|l| l.starts_with("kiki_worker_segments{"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .expect("per-worker segments");
    assert!(segments >= report.finals as f64, "{segments}");
}

/// The transport figure's set-up in miniature: a worker with no model (`worker.engine = none`)
/// answers every task, the load tool says so, and still every utterance is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_only_runs_are_labelled_and_lose_nothing() {
    let mut cfg = test_config();
    cfg.worker.engine = "none".into();
    let stack = Stack::gateway_only(cfg).await;
    let worker = kiki::worker::Worker::new(&stack.cfg, stack.target.clone(), None, stack.metrics.clone());
    tokio::spawn(worker.run(stack.worker_shutdown.clone()));
    stack.wait_ready().await;
    let clips = tempfile::tempdir().unwrap();
    write_wav(&clips.path().join("a.wav"), &speak("Testing one two three."), 16_000, 1);
    let report = kiki::tools::load::run(kiki::tools::load::LoadOptions {
        urls: vec![format!("ws://{}/ws", stack.addr)],
        sessions: 100,
        duration: Duration::from_secs(6),
        talk: 0.5,
        ramp: Duration::from_secs(2),
        clips: clips.path().to_path_buf(),
        watch: vec![],
        redis_url: Some(stack.redis_url.clone()),
        drain: Duration::from_secs(30),
        segmenter: vec![],
        frame_ms: 20,
    })
    .await
    .unwrap();
    eprintln!("{report}");
    assert_eq!((report.connected, report.held), (100, 100), "{report}");
    assert_eq!(report.finals, report.finals_reported, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert!(report.workers.iter().all(|m| m.starts_with("none")) && !report.workers.is_empty(), "{report}");
    assert!(report.to_string().contains("transport only"), "{report}");
    assert!(report.redis.as_ref().is_some_and(|r| r.connected_clients_peak < 10), "{report}");
}
