//! Fault tests of the dual channel. Each starts its own redis-server; nothing may be lost.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use kiki::channels::Keys;
use kiki::channels::tasks::{self, TaskMeta};
use kiki::gateway::protocol::ServerMessage;
use kiki::local::redis_server::RedisChild;
use kiki::plugins::CutKind;
use redis::AsyncCommands;
use serde_json::json;

const UTTERANCES: [&str; 4] = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella.",
    "I would like a cup of coffee.",
    "She sells sea shells by the sea shore.",
];

fn fast_reclaim() -> kiki::config::Config {
    let mut cfg = test_config();
    cfg.channels.min_idle_ms = 1_500;
    cfg.channels.reclaim_interval_ms = 300;
    cfg
}

/// Finals per segment id; every segment must appear exactly once.
fn finals_by_segment(msgs: &[ServerMessage]) -> HashMap<u64, usize> {
    let mut m = HashMap::new();
    for msg in msgs {
        if let ServerMessage::Final(s) = msg {
            *m.entry(s.segment).or_insert(0) += 1;
        }
    }
    m
}

/// Opens `n` sessions, streams `audio` on each at `speed`, sends stop, and returns the sessions
/// (their finals are collected later).
async fn start_sessions(stack: &Stack, n: usize, audio: &[f32], speed: f64) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut c = stack.connect().await;
        c.send_json(json!({"type": "start", "plugins": {"segmenter": {"partial_ms": "0"}}})).await;
        assert!(matches!(c.recv(Duration::from_secs(10)).await, Some(ServerMessage::Ready { .. })));
        clients.push(c);
    }
    let streams = clients.iter_mut().map(|c| c.stream(audio, speed));
    futures_util::future::join_all(streams).await;
    for c in &mut clients {
        c.send_json(json!({"type": "stop"})).await;
    }
    clients
}

/// Every client's messages up to its `end`, all read at once: a client left unread for longer
/// than two ping intervals answers no ping, and the gateway rightly drops it as dead.
async fn collect(clients: &mut [Client]) -> Vec<Vec<ServerMessage>> {
    let each = clients.iter_mut().map(|c| async move {
        let mut msgs = Vec::new();
        while let Some(m) = c.recv(Duration::from_secs(120)).await {
            let end = matches!(m, ServerMessage::End { .. });
            msgs.push(m);
            if end {
                break;
            }
        }
        msgs
    });
    futures_util::future::join_all(each).await
}

fn assert_complete(all: &[Vec<ServerMessage>], expected_segments: usize) {
    for msgs in all {
        assert!(matches!(msgs.last(), Some(ServerMessage::End { .. })), "no end: {msgs:?}");
        let finals = finals_by_segment(msgs);
        assert_eq!(finals.len(), expected_segments, "segments: {msgs:?}");
        assert!(finals.values().all(|&n| n == 1), "a final was delivered twice: {finals:?}");
        assert!(!msgs.iter().any(|m| matches!(m, ServerMessage::Error { .. })), "{msgs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_task_and_duplicates_are_dropped() {
    let _g = serial().await;
    let stack = Stack::gateway_only(fast_reclaim()).await;
    let audio = speak_sentences(&UTTERANCES[..2], 700);
    // Queue the work first, so the worker has plenty in hand when it dies.
    let mut clients = start_sessions(&stack, 4, &audio, 8.0).await;
    let mut conn = stack.redis().await;
    let keys = Keys::new(&stack.cfg.channels.prefix);
    let mut victim = stack.worker_process();
    let mut held = 0;
    for _ in 0..600 {
        let p: redis::streams::StreamPendingReply = conn.xpending(keys.tasks(), "workers").await.unwrap();
        held = p.count();
        if held > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(held > 0, "the worker never took a task");
    victim.kill().unwrap();
    victim.wait().unwrap();
    eprintln!("killed the worker holding {held} task(s)");
    stack.spawn_worker().await;
    let all = collect(&mut clients).await;
    assert_complete(&all, 2);
    assert!(stack.metrics.tasks_reclaimed.get() > 0, "nothing was reclaimed");
    // The dead worker's tasks end up acknowledged too. The finals can arrive first (the worker
    // may have published them just before it died), while the reclaimed copies are still being
    // redone and deduplicated, so wait for the pending list to drain.
    let mut pending = usize::MAX;
    for _ in 0..150 {
        let p: redis::streams::StreamPendingReply = conn.xpending(keys.tasks(), "workers").await.unwrap();
        pending = p.count();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 0, "reclaimed tasks were never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_subscriber_connection_loses_and_duplicates_nothing() {
    let _g = serial().await;
    let mut cfg = test_config();
    cfg.worker.batch_size = 16;
    // 100 finals on two cores with the default 30 s encoder window take about 40 s: this test
    // is about the subscriber, so the model's speed gets room.
    cfg.gateway.final_timeout_s = 240;
    let stack = Stack::start_with(cfg).await;
    let audio = speak_sentences(&["Hello there."], 300);
    let mut clients = start_sessions(&stack, 100, &audio, 50.0).await;
    let killer = {
        let mut conn = stack.redis().await;
        tokio::spawn(async move {
            let mut killed = 0u64;
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let n: u64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(0);
                killed += n;
            }
            killed
        })
    };
    let all = collect(&mut clients).await;
    let killed = killer.await.unwrap();
    eprintln!("killed {killed} subscriber connection(s); reconnects {}", stack.metrics.subscriber_reconnects.get());
    assert!(killed > 0);
    assert_complete(&all, 1);
    assert!(stack.metrics.subscriber_reconnects.get() > 0);
    // The resyncs of many sessions share pipelined reads.
    let (replays, batches) = (stack.metrics.replays.get(), stack.metrics.replay_batches.get());
    eprintln!("{replays} session replays in {batches} pipelined read(s)");
    assert!(batches > 0 && batches < replays, "replays {replays}, batches {batches}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_whose_publish_was_lost_is_found_in_the_replay_stream() {
    let mut cfg = test_config();
    cfg.channels.overdue_final_ms = 1_000;
    let stack = Stack::gateway_only(cfg).await;
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start", "plugins": {"segmenter": {"partial_ms": "0"}}})).await;
    assert!(matches!(c.recv(Duration::from_secs(10)).await, Some(ServerMessage::Ready { .. })));
    c.stream(&speak_sentences(&UTTERANCES[1..2], 600), 8.0).await;
    c.send_json(json!({"type": "stop"})).await;
    // Play a worker whose publish is lost: the result is written to the replay stream, then
    // sent where the gateway's plain subscriber does not listen (SPUBLISH).
    let mut conn = stack.redis().await;
    let keys = Keys::new(&stack.cfg.channels.prefix);
    let mut task = None;
    for _ in 0..100 {
        let (got, _) = tasks::read(&mut conn, &keys, "lossy", 1, 100).await.unwrap();
        if let Some(t) = got.into_iter().next() {
            task = Some(t);
            break;
        }
    }
    let task = task.expect("the final's task is queued");
    let payload = kiki::channels::results::ResultPayload {
        session: task.meta.session.clone(),
        segment: task.meta.segment,
        kind: task.meta.kind,
        rev: 0,
        text: "please call stella".into(),
        start_ms: task.meta.start_ms,
        end_ms: task.meta.end_ms,
        published_ms: 0,
        words: vec![],
        error: None,
        plugin_error: None,
        unsupported_language: None,
        enqueued_ms: task.meta.enqueued_ms,
        origin: None,
        language: None,
    };
    let lossy = kiki::channels::results::ReplayPolicy { max_len: 100, ttl_s: 60, sharded: true };
    kiki::channels::results::publish(&mut conn, &keys, &lossy, &task.meta.reply, &payload, "e1").await.unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    while let Some(m) = c.recv(Duration::from_secs(10)).await {
        let end = matches!(m, ServerMessage::End { .. });
        got.push(m);
        if end {
            break;
        }
    }
    eprintln!("final found after {:?}: {got:?}", started.elapsed());
    assert!(got.iter().any(|m| matches!(m, ServerMessage::Final(s) if s.text == "please call stella")), "{got:?}");
    assert!(matches!(got.last(), Some(ServerMessage::End { segments: 1 })), "{got:?}");
    assert!(stack.metrics.overdue_finals.get() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_with_aof_keeps_tasks_and_delivers_every_final() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisChild::start("redis-server", &["--appendonly", "yes", "--dir", dir.path().to_str().unwrap()])
        .await
        .unwrap();
    let mut stack = Stack::gateway_on(fast_reclaim(), redis).await;
    let audio = speak_sentences(&UTTERANCES[2..], 700);
    let mut clients = start_sessions(&stack, 3, &audio, 8.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = stack.redis().await;
    let queued: u64 = conn.xlen("kiki:{tasks}").await.unwrap();
    assert!(queued >= 6, "tasks queued before the restart: {queued}");
    stack.server_mut().restart(Duration::from_millis(500)).await.unwrap();
    let mut conn = stack.redis().await;
    let after: u64 = conn.xlen("kiki:{tasks}").await.unwrap();
    assert_eq!(after, queued, "tasks survive the restart");
    // Workers start after the restart and gateways have reconnected by themselves.
    stack.spawn_worker().await;
    let all = collect(&mut clients).await;
    assert_complete(&all, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_task_is_dead_lettered_and_its_session_told() {
    let _g = serial().await;
    // The worker comes after the sessions start: a gateway that knows its workers' languages
    // refuses "tlh" at `start`, and this test is about a task that gets past that check.
    let stack = Stack::gateway_only(fast_reclaim()).await;
    let audio = speak_sentences(&UTTERANCES[1..2], 500);
    // An English-only model cannot take Klingon: every delivery of this task fails.
    let mut bad = stack.connect().await;
    bad.send_json(json!({"type": "start", "language": "tlh"})).await;
    assert!(matches!(bad.recv(Duration::from_secs(5)).await, Some(ServerMessage::Ready { .. })));
    let mut good = stack.connect().await;
    good.send_json(json!({"type": "start"})).await;
    assert!(matches!(good.recv(Duration::from_secs(5)).await, Some(ServerMessage::Ready { .. })));
    bad.stream(&audio, 8.0).await;
    good.stream(&audio, 8.0).await;
    stack.spawn_worker().await;
    let bad_msgs = bad.stop_and_collect().await;
    let good_msgs = good.stop_and_collect().await;
    assert!(
        bad_msgs.iter().any(|m| matches!(
            m,
            ServerMessage::Error { code: kiki::gateway::protocol::ErrorCode::SegmentFailed, segment: Some(0), .. }
        )),
        "{bad_msgs:?}"
    );
    assert!(matches!(bad_msgs.last(), Some(ServerMessage::End { .. })));
    assert!(wer(UTTERANCES[1], &final_text(&good_msgs)) <= 0.35, "{good_msgs:?}");
    let mut conn = stack.redis().await;
    let dead: redis::streams::StreamRangeReply = conn.xrange_all("kiki:{tasks}:dead").await.unwrap();
    // The bad session's partials may fail their way there too (when the final did not make
    // them stale first); its one final must be there once.
    let finals: Vec<_> = dead
        .ids
        .iter()
        .filter(|e| {
            let meta: String = redis::from_redis_value_ref(&e.map["meta"]).unwrap();
            meta.contains(r#""kind":"final""#)
        })
        .collect();
    assert_eq!(finals.len(), 1, "{dead:?}");
    let reason: String = redis::from_redis_value_ref(&finals[0].map["reason"]).unwrap();
    assert!(reason.contains("3 deliveries"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_never_removes_an_unacked_task() {
    let redis = RedisChild::start("redis-server", &[]).await.unwrap();
    let mut conn = redis::Client::open(redis.url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys = Keys::new("kiki");
    tasks::ensure_group(&mut conn, &keys).await.unwrap();
    let meta = |i: u64| TaskMeta::new("s", i, CutKind::Final, "c", (0, 1), Default::default());
    for round in 0..20u64 {
        for i in 0..50 {
            tasks::enqueue(&mut conn, &keys, &meta(round * 50 + i), &[0, 0]).await.unwrap();
        }
        // A consumer takes 30, acks every other one, and trimming runs between.
        let (got, _) = tasks::read(&mut conn, &keys, "w", 30, 1).await.unwrap();
        let acked: Vec<String> = got.iter().step_by(2).map(|t| t.id.clone()).collect();
        tasks::ack(&mut conn, &keys, &acked).await.unwrap();
        tasks::trim(&mut conn, &keys).await.unwrap();
        let pending: redis::streams::StreamPendingCountReply =
            conn.xpending_count(keys.tasks(), "workers", "-", "+", 10_000).await.unwrap();
        for p in &pending.ids {
            let still: redis::streams::StreamRangeReply = conn.xrange(keys.tasks(), &p.id, &p.id).await.unwrap();
            assert_eq!(still.ids.len(), 1, "pending task {} was trimmed away", p.id);
        }
    }
    // Every task is either acked, pending and present, or undelivered and present.
    let pending: redis::streams::StreamPendingReply = conn.xpending(keys.tasks(), "workers").await.unwrap();
    let len: u64 = conn.xlen(keys.tasks()).await.unwrap();
    let backlog = tasks::backlog(&mut conn, &keys).await.unwrap();
    assert_eq!(pending.count() as u64, 20 * 15);
    assert_eq!(tasks::pending(&mut conn, &keys).await.unwrap().per_consumer, vec![("w".to_string(), 20 * 15)]);
    assert_eq!(backlog, 20 * 50 - 20 * 30);
    assert!(len >= pending.count() as u64 + backlog, "len {len}");
    // Once the pending ones are acked, trimming takes everything but the undelivered backlog.
    let pending: redis::streams::StreamPendingCountReply =
        conn.xpending_count(keys.tasks(), "workers", "-", "+", 10_000).await.unwrap();
    let ids: Vec<String> = pending.ids.into_iter().map(|p| p.id).collect();
    tasks::ack(&mut conn, &keys, &ids).await.unwrap();
    tasks::trim(&mut conn, &keys).await.unwrap();
    let len: u64 = conn.xlen(keys.tasks()).await.unwrap();
    assert_eq!(len, backlog);
}

/// Collects until `n` finals arrived (anything else is kept too).
async fn until_finals(c: &mut Client, n: usize) -> Vec<ServerMessage> {
    let mut msgs = Vec::new();
    while msgs.iter().filter(|m| matches!(m, ServerMessage::Final(_))).count() < n {
        let m = c.recv(Duration::from_secs(60)).await.unwrap_or_else(|| panic!("finals missing: {msgs:?}"));
        msgs.push(m);
    }
    msgs
}

fn no_persistence() -> [&'static str; 4] {
    ["--save", "", "--appendonly", "no"]
}

/// A stack on its own redis-server (started with `redis_args`), with a worker, and one
/// session started on it (no partials).
async fn stack_with_session(redis_args: &[&str]) -> (Stack, Client) {
    let redis = RedisChild::start("redis-server", redis_args).await.unwrap();
    let stack = Stack::gateway_on(fast_reclaim(), redis).await;
    stack.spawn_worker().await;
    stack.wait_ready().await;
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start", "plugins": {"segmenter": {"partial_ms": "0"}}})).await;
    assert!(matches!(c.recv(Duration::from_secs(10)).await, Some(ServerMessage::Ready { .. })));
    (stack, c)
}

/// Redis loses everything in mid-session (FLUSHALL; a restart without persistence or a
/// failover to an empty replica look the same): the consumer group is made again, the
/// session's results are numbered afresh, and the finals after it still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_coming_back_empty_is_healed_and_later_finals_arrive() {
    let _g = serial().await;
    let (stack, mut c) = stack_with_session(&no_persistence()).await;
    c.stream(&speak_sentences(&UTTERANCES[..2], 700), 4.0).await;
    let before = until_finals(&mut c, 2).await;
    let mut conn = stack.redis().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    c.stream(&speak_sentences(&UTTERANCES[2..], 700), 4.0).await;
    let after = c.stop_and_collect().await;
    eprintln!("before: {before:?}\nafter: {after:?}");
    let finals = finals_by_segment(&after);
    assert_eq!(finals.len(), 2, "both finals after the flush: {after:?}");
    assert!(finals.values().all(|&n| n == 1), "{finals:?}");
    assert!(matches!(after.last(), Some(ServerMessage::End { segments: 4 })), "{after:?}");
    assert!(!after.iter().any(|m| matches!(m, ServerMessage::Error { .. })), "{after:?}");
    assert!(stack.metrics.task_group_recreated.get() > 0);
    // Ready again once the worker's next beat has rewritten its key (the flush took it too).
    let mut ready = (0, String::new());
    for _ in 0..(3 * kiki::channels::workers::INTERVAL_MS / 100) {
        ready = http_get(stack.addr, "/readyz").await.unwrap();
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert!(ready.1.contains("\"tasks\":true"), "{}", ready.1);
}

/// Tasks queued and not yet read when Redis loses its data are queued again by the gateway,
/// from the audio it keeps until each final is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finals_whose_tasks_vanished_with_redis_are_queued_again() {
    let _g = serial().await;
    let redis = RedisChild::start("redis-server", &no_persistence()).await.unwrap();
    let mut cfg = fast_reclaim();
    cfg.channels.overdue_final_ms = 1_000;
    let stack = Stack::gateway_on(cfg, redis).await;
    let audio = speak_sentences(&UTTERANCES[..2], 700);
    let mut clients = start_sessions(&stack, 2, &audio, 8.0).await;
    let mut conn = stack.redis().await;
    for _ in 0..100 {
        let queued: u64 = conn.xlen("kiki:{tasks}").await.unwrap();
        if queued >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    // /readyz says so until the group is back (within one poll).
    stack.spawn_worker().await;
    let all = collect(&mut clients).await;
    assert_complete(&all, 2);
    assert!(stack.metrics.tasks_requeued.get() >= 4, "requeued {}", stack.metrics.tasks_requeued.get());
}

/// Redis stops answering for longer than a command may wait (DEBUG SLEEP 6 against a 5 s
/// timeout): the finals cut meanwhile are kept by the gateway and queued once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finals_cut_while_redis_is_away_are_kept_and_queued_later() {
    let _g = serial().await;
    let (stack, mut c) = stack_with_session(&["--enable-debug-command", "yes"]).await;
    let url = stack.redis_url.clone();
    let sleeper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut conn = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg(6).query_async(&mut conn).await;
    });
    c.stream(&speak_sentences(&UTTERANCES[..3], 700), 4.0).await;
    let msgs = c.stop_and_collect().await;
    sleeper.await.unwrap();
    eprintln!("{msgs:?}");
    let finals = finals_by_segment(&msgs);
    assert_eq!(finals.len(), 3, "{msgs:?}");
    assert!(!msgs.iter().any(|m| matches!(m, ServerMessage::Error { .. })), "{msgs:?}");
    assert!(stack.metrics.tasks_deferred.get() > 0, "no final was cut while Redis slept: the test did not test");
}
