//! Resume: a client whose socket dropped reconnects with its resume token and last seq, gets
//! every final it missed exactly once, and carries on live.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use kiki::gateway::protocol::ServerMessage;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_resumes_with_every_missed_final_exactly_once() {
    let _g = serial().await;
    let stack = Stack::start().await;
    let mut finals: HashMap<u64, Vec<String>> = HashMap::new();
    let mut record = |m: &ServerMessage, last_seq: &mut u64| {
        if let ServerMessage::Final(s) | ServerMessage::Partial(s) = m {
            *last_seq = (*last_seq).max(s.seq);
        }
        if let ServerMessage::Final(s) = m {
            finals.entry(s.segment).or_default().push(s.text.clone());
        }
    };

    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start", "plugins": {"segmenter": {"partial_ms": "0"}}})).await;
    let Some(ServerMessage::Ready { session, resume_token, .. }) = c.recv(Duration::from_secs(5)).await else {
        panic!()
    };
    let mut last_seq = 0;
    // First utterance: wait for its final.
    c.stream(&speak_sentences(&["The quick brown fox jumps over the lazy dog."], 800), 4.0).await;
    while let Some(m) = c.recv(Duration::from_secs(30)).await {
        record(&m, &mut last_seq);
        if matches!(m, ServerMessage::Final(_)) {
            break;
        }
    }
    // Second utterance, then the network drops before its final can arrive.
    c.stream(&speak_sentences(&["I would like a cup of coffee with milk and sugar."], 800), 8.0).await;
    drop(c);

    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start", "plugins": {"segmenter": {"partial_ms": "0"}},
        "resume": {"token": resume_token, "last_seq": last_seq}}))
        .await;
    match c.recv(Duration::from_secs(5)).await {
        // The clock goes on from the end of the last final cut (at least the first's).
        Some(ServerMessage::Ready { session: s, recovered: Some(true), position_ms: Some(p), .. }) => {
            assert_eq!(s, session);
            assert!(p >= 1000, "position {p} ms");
        }
        other => panic!("expected a recovered ready with its position, got {other:?}"),
    }
    // Third utterance live on the resumed session.
    c.stream(&speak_sentences(&["She sells sea shells by the sea shore."], 800), 4.0).await;
    for m in c.stop_and_collect().await {
        record(&m, &mut last_seq);
    }
    eprintln!("{finals:?}");
    assert_eq!(finals.len(), 3, "{finals:?}");
    for seg in 0..3 {
        assert_eq!(finals.get(&seg).map(Vec::len), Some(1), "segment {seg} delivered once: {finals:?}");
    }
    assert!(wer("I would like a cup of coffee with milk and sugar", &finals[&1][0]) < 0.5, "{finals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_unknown_token_is_not_recovered_and_starts_fresh() {
    let stack = Stack::start().await;
    // A genuine token of a session that ended long ago looks the same as an expired one; a
    // made-up token, or one signed with another key, is not honoured at all.
    let other_key = kiki::gateway::auth::Auth::new(None, b"someone else's key", None);
    for token in ["nope".to_string(), other_key.resume_token("0123456789abcdef0123456789abcdef", "e", None)] {
        let mut c = stack.connect().await;
        c.send_json(json!({"type": "start", "resume": {"token": token, "last_seq": 3}})).await;
        match c.recv(Duration::from_secs(5)).await {
            Some(ServerMessage::Ready { session, recovered: Some(false), .. }) => {
                assert_ne!(session, "0123456789abcdef0123456789abcdef")
            }
            other => panic!("expected recovered: false, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pause_moves_the_resume_point_so_the_client_need_not_keep_it() {
    let _g = serial().await;
    let stack = Stack::gateway_only(test_config()).await;
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start"})).await;
    let Some(ServerMessage::Ready { resume_token, .. }) = c.recv(Duration::from_secs(5)).await else { panic!() };
    // Twelve seconds of silence and no final: the segmenter releases the pause as it goes.
    c.stream(&vec![0.0; 12 * 16_000], 8.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(c);

    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start", "resume": {"token": resume_token, "last_seq": 0}})).await;
    match c.recv(Duration::from_secs(5)).await {
        // Saved every 5 s of a pause: at 10 s less the segmenter's pre-roll.
        Some(ServerMessage::Ready { recovered: Some(true), position_ms: Some(p), .. }) => {
            assert!((9_000..=12_000).contains(&p), "position {p} ms");
        }
        other => panic!("expected a recovered ready with its position, got {other:?}"),
    }
}
