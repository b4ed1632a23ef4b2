//! The first end-to-end line: speech over `/ws` -> segmenter plugin -> Redis Stream -> worker
//! (Whisper through ort) -> Pub/Sub -> `final` messages, against a real redis-server.

use std::time::Duration;

use crate::common::*;
use kiki::gateway::protocol::{ErrorCode, Segment, ServerMessage};
use serde_json::json;

const SENTENCES: [&str; 3] = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "I would like a cup of coffee with milk and sugar.",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_streamed_in_real_time_frames_comes_back_as_finals() {
    let stack = Stack::start().await;
    let audio = speak_sentences(&SENTENCES, 900);
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start", "sample_rate": 16000, "format": "pcm_s16le"})).await;
    let ready = c.recv(Duration::from_secs(10)).await.expect("ready");
    assert!(matches!(ready, ServerMessage::Ready { .. }), "{ready:?}");
    c.stream(&audio, 1.0).await;
    let msgs = c.stop_and_collect().await;
    let finals = msgs.iter().filter(|m| matches!(m, ServerMessage::Final(_))).count();
    let text = final_text(&msgs);
    let reference = SENTENCES.join(" ");
    let w = wer(&reference, &text);
    eprintln!("finals: {finals}\nreference: {reference}\nhypothesis: {text}\nWER: {w:.3}");
    assert!(matches!(msgs.last(), Some(ServerMessage::End { .. })), "{msgs:?}");
    assert!(finals >= 2, "the segmenter should cut at the pauses: {msgs:?}");
    assert!(w <= 0.35, "WER {w:.3} over 0.35: {text}");
    // Partials say how much of their text has settled: a prefix the partial before agreed on.
    let mut prev: Option<&Segment> = None;
    let mut partials = 0;
    for m in &msgs {
        if let ServerMessage::Partial(p) = m {
            partials += 1;
            let stable = p.stable.expect("partials carry `stable`") as usize;
            let settled: String = p.text.chars().take(stable).collect();
            let agreed = prev.filter(|q| q.segment == p.segment).map_or(String::new(), |q| q.text.clone());
            assert!(stable <= p.text.chars().count() && agreed.starts_with(&settled), "{p:?} after {prev:?}");
            prev = Some(p);
        }
    }
    assert!(partials > 0, "{msgs:?}");
    // Finals carry word times on the session's clock, inside their segment.
    for m in &msgs {
        if let ServerMessage::Final(s) = m
            && !s.text.is_empty()
        {
            assert!(!s.words.is_empty(), "final without words: {s:?}");
            for w in &s.words {
                assert!(w.start_ms <= w.end_ms && w.start_ms + 50 >= s.start_ms && w.end_ms <= s.end_ms + 50, "{s:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    let stack = Stack::start().await;

    // A connection that closes at once (a 0-length session).
    let c = stack.connect().await;
    drop(c);

    // Start then stop with no audio: a clean end, no finals.
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Some(ServerMessage::Ready { .. })));
    let msgs = c.stop_and_collect().await;
    assert_eq!(msgs, vec![ServerMessage::End { segments: 0 }]);

    let mut c = stack.connect().await;
    let expect = |m: Option<ServerMessage>, code: ErrorCode| match m {
        Some(ServerMessage::Error { code: got, .. }) => assert_eq!(got, code),
        other => panic!("expected {code:?}, got {other:?}"),
    };
    // Binary audio before start.
    c.send_binary(vec![0; 640]).await;
    expect(c.recv(Duration::from_secs(5)).await, ErrorCode::NotStarted);
    // A text frame that is not JSON, and JSON that is not a message.
    c.send_text("this is not json").await;
    expect(c.recv(Duration::from_secs(5)).await, ErrorCode::BadMessage);
    c.send_text(r#"{"type":"dance"}"#).await;
    expect(c.recv(Duration::from_secs(5)).await, ErrorCode::BadMessage);
    // A sample rate out of range, a beam too wide, a prompt too long.
    c.send_json(json!({"type": "start", "sample_rate": 1000})).await;
    expect(c.recv(Duration::from_secs(5)).await, ErrorCode::UnsupportedFormat);
    c.send_json(json!({"type": "start", "beam_size": 50})).await;
    expect(c.recv(Duration::from_secs(5)).await, ErrorCode::InvalidOption);
    c.send_json(json!({"type": "start", "prompt": "x".repeat(5000)})).await;
    expect(c.recv(Duration::from_secs(5)).await, ErrorCode::InvalidOption);
    // Now a proper session on the same socket.
    c.send_json(json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Some(ServerMessage::Ready { .. })));
    c.send_json(json!({"type": "start"})).await;
    expect(c.recv(Duration::from_secs(5)).await, ErrorCode::AlreadyStarted);
    // Odd byte count, oversized frame.
    c.send_binary(vec![0; 641]).await;
    expect(c.recv(Duration::from_secs(5)).await, ErrorCode::BadFrame);
    c.send_binary(vec![0; stack.cfg.gateway.max_frame_bytes + 2]).await;
    expect(c.recv(Duration::from_secs(5)).await, ErrorCode::FrameTooLarge);
    // The session still transcribes.
    let speech = speak_sentences(&[SENTENCES[0]], 800);
    c.stream(&speech, 4.0).await;
    let msgs = c.stop_and_collect().await;
    let text = final_text(&msgs);
    assert!(wer(SENTENCES[0], &text) <= 0.35, "{text:?} from {msgs:?}");

    // And the server still answers health checks.
    let (status, body) = http_get(stack.addr, "/healthz").await.unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, metrics) = http_get(stack.addr, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("kiki_protocol_errors_total"), "{metrics}");
}

/// A language that no live worker's model transcribes is refused at `start`, instead of the
/// session's segments failing in the workers until they are dead-lettered; the model's own
/// language and "auto" are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_language_no_worker_transcribes_is_refused_at_start() {
    let stack = Stack::start().await;
    stack.wait_for_worker_reports().await;
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start", "language": "zh"})).await;
    match c.recv(Duration::from_secs(5)).await {
        Some(ServerMessage::Error { code: ErrorCode::InvalidOption, message, .. }) => {
            assert!(message.contains("\"zh\"") && message.contains("they do: en"), "{message}")
        }
        other => panic!("expected invalid_option, got {other:?}"),
    }
    for language in ["en", "auto"] {
        let mut c = stack.connect().await;
        c.send_json(json!({"type": "start", "language": language})).await;
        let ready = c.recv(Duration::from_secs(5)).await;
        assert!(matches!(ready, Some(ServerMessage::Ready { .. })), "{language}: {ready:?}");
        assert_eq!(c.stop_and_collect().await, vec![ServerMessage::End { segments: 0 }]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_after_the_idle_timeout() {
    let mut cfg = test_config();
    cfg.gateway.idle_timeout_s = 1;
    let stack = Stack::start_with(cfg).await;
    let mut c = stack.connect().await;
    match c.recv(Duration::from_secs(5)).await {
        Some(ServerMessage::Error { code: ErrorCode::IdleTimeout, .. }) => {}
        other => panic!("expected idle_timeout, got {other:?}"),
    }
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Some(ServerMessage::End { .. })));
    assert!(c.recv(Duration::from_secs(5)).await.is_none(), "the socket closes");
}

/// A session keeps only a bounded window of recent audio (the segmenter releases silence, and
/// `gateway.max_segment_s` caps the rest): a minute of silence before speech must neither
/// grow the session nor shift its clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_silence_then_speech_keeps_the_clock_and_the_words() {
    let mut cfg = test_config();
    cfg.gateway.max_segment_s = 10;
    let stack = Stack::start_with(cfg).await;
    let mut audio = vec![0.0f32; 16_000 * 60];
    audio.extend(speak("I would like a cup of coffee with milk and sugar."));
    audio.extend(vec![0.0f32; 16_000]);
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(10)).await, Some(ServerMessage::Ready { .. })));
    c.stream(&audio, 3.5).await;
    let msgs = c.stop_and_collect().await;
    let finals = finals(&msgs);
    assert_eq!(finals.len(), 1, "{msgs:?}");
    // The speech starts at 60 s on the session's clock (less the segmenter's pre-roll).
    assert!((59_500..=60_500).contains(&finals[0].start_ms), "{:?}", finals[0]);
    let w = wer("I would like a cup of coffee with milk and sugar.", &finals[0].text);
    assert!(w <= 0.2, "WER {w:.2}: {}", finals[0].text);
}

/// With `gateway.speech_prob`, the gateway runs Silero VAD on the session's audio and the
/// segmenter hears its veto: a loud beep in each pause is neither cut as an utterance of its
/// own nor bridges the pause, so each sentence comes back as one final. (Frames of 100 ms,
/// which the gateway re-cuts at Silero's 32 ms chunks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_probability_keeps_beeps_out_of_the_segments() {
    let mut cfg = test_config();
    cfg.gateway.speech_prob = true;
    let stack = Stack::start_with(cfg).await;
    let mut audio = vec![0.0f32; 16 * 500];
    let mut beeps = Vec::new();
    for (i, s) in SENTENCES.iter().enumerate() {
        audio.extend(speak(s));
        if i + 1 < SENTENCES.len() {
            // 500 ms pause, 300 ms beep at 1 kHz (about speech level), 500 ms pause.
            audio.extend(vec![0.0f32; 16 * 500]);
            beeps.push(audio.len() / 16 + 150);
            audio
                .extend((0..16 * 300).map(|k| 0.3 * (2.0 * std::f32::consts::PI * 1000.0 * k as f32 / 16_000.0).sin()));
            audio.extend(vec![0.0f32; 16 * 500]);
        }
    }
    audio.extend(vec![0.0f32; 16 * 1000]);
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start", "plugins": {"segmenter": {"partial_ms": "0"}}})).await;
    assert!(matches!(c.recv(Duration::from_secs(10)).await, Some(ServerMessage::Ready { .. })));
    for chunk in audio.chunks(1600) {
        c.send_binary(to_s16le(chunk)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let msgs = c.stop_and_collect().await;
    let finals = finals(&msgs);
    eprintln!(
        "beeps at {beeps:?} ms; finals {:?}",
        finals.iter().map(|f| (f.start_ms, f.end_ms, &f.text)).collect::<Vec<_>>()
    );
    assert_eq!(finals.len(), SENTENCES.len(), "{msgs:?}");
    for f in &finals {
        assert!(beeps.iter().all(|&b| !(f.start_ms..f.end_ms).contains(&(b as u64))), "a final spans a beep: {f:?}");
    }
    let w = wer(&SENTENCES.join(" "), &final_text(&msgs));
    assert!(w <= 0.35, "WER {w:.3}: {}", final_text(&msgs));
}

fn finals(msgs: &[ServerMessage]) -> Vec<&Segment> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMessage::Final(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// End of speech -> final, leg by leg, in `/metrics`: the segmenter's wait past the cut, the
/// queue, the model, the publish and the delivery, one observation per final in each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_of_finals_is_broken_down_in_metrics() {
    let _g = serial().await;
    let stack = Stack::start().await;
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Some(ServerMessage::Ready { .. })));
    // Silence after the last sentence, so that both finals are cut by the endpoint, not by `stop`.
    let mut speech = speak_sentences(&SENTENCES[..2], 900);
    speech.extend(std::iter::repeat_n(0.0, 16_000));
    c.stream(&speech, 4.0).await;
    let msgs = c.stop_and_collect().await;
    let finals = msgs.iter().filter(|m| matches!(m, ServerMessage::Final(_))).count();
    assert!(finals >= 2, "{msgs:?}");
    let legs = ["endpoint", "queue", "model", "publish", "delivery"];
    let read = |metrics: &str, name: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    };
    // The worker records the publish leg once the publish returns, which can be after the final
    // reached the client: poll until every leg has every final (it failed once read at once).
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = http_get(stack.addr, "/metrics").await.unwrap().1;
        let complete = |leg: &&str| read(&metrics, &format!("kiki_final_{leg}_seconds_count")) >= Some(finals as f64);
        if legs.iter().all(complete) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let value = |name: &str| -> f64 { read(&metrics, name).unwrap_or_else(|| panic!("no {name} in /metrics")) };
    for leg in legs {
        let count = value(&format!("kiki_final_{leg}_seconds_count"));
        let sum = value(&format!("kiki_final_{leg}_seconds_sum"));
        eprintln!("{leg}: {count} finals, mean {:.3} s", sum / count.max(1.0));
        assert!(count >= finals as f64, "{leg}: {count} observations for {finals} finals");
    }
    // The segmenter's default hangover is 400 ms, of which it keeps 150 ms in the cut.
    let endpoint = value("kiki_final_endpoint_seconds_sum") / value("kiki_final_endpoint_seconds_count");
    assert!((0.15..=0.6).contains(&endpoint), "endpoint wait {endpoint} s");
}
