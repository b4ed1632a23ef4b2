//! The gateway's guard rails: signed tokens and scopes, loopback-only without auth, connection
//! limits per address and per subject, slowloris, a flood of connections opened and dropped,
//! audio rate and session-length limits, keep-alive pings, and garbage frames.

use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use kiki::gateway::auth::{Auth, Scope};
use kiki::gateway::protocol::{ErrorCode, ServerMessage};
use rand::Rng;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-secret-for-the-gateway";

fn token(scopes: &[Scope], subject: &str) -> String {
    Auth::new(Some(SECRET.as_bytes()), b"", None).mint(subject, scopes, 600).unwrap()
}

/// The HTTP status of a WebSocket upgrade attempt (101 when it went through).
async fn upgrade_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    match tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("upgrade failed without a status: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_tokens_guard_sessions_files_and_admin() {
    let mut cfg = test_config();
    cfg.gateway.auth_secret = Some(SECRET.into());
    cfg.gateway.max_connections_per_subject = 2;
    let stack = Stack::gateway_only(cfg).await;
    let transcribe = token(&[Scope::Transcribe], "alice");
    let admin = token(&[Scope::Admin], "ops");

    assert_eq!(upgrade_status(stack.addr, "/ws").await, 401, "no token");
    assert_eq!(upgrade_status(stack.addr, "/ws?token=garbage").await, 401);
    assert_eq!(upgrade_status(stack.addr, &format!("/ws?token={admin}")).await, 403, "admin scope only");
    assert_eq!(upgrade_status(stack.addr, &format!("/ws/asr?token={admin}")).await, 403);
    let other_key = Auth::new(Some(b"another secret"), b"", None).mint("alice", &[Scope::Transcribe], 600).unwrap();
    assert_eq!(upgrade_status(stack.addr, &format!("/ws?token={other_key}")).await, 401, "forged");

    // A token in the query (browsers) or the Authorization header; two sockets per subject.
    let (mut a, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?token={transcribe}", stack.addr)).await.unwrap();
    a.send(Message::Text(json!({"type": "start"}).to_string().into())).await.unwrap();
    let ready = a.next().await.unwrap().unwrap();
    assert!(ready.to_text().unwrap().contains("\"ready\""), "{ready:?}");
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/ws",
        stack.addr
    ))
    .unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {transcribe}").parse().unwrap());
    let (_b, _) = tokio_tungstenite::connect_async(req).await.expect("header token");
    assert_eq!(upgrade_status(stack.addr, &format!("/ws?token={transcribe}")).await, 429, "third socket of alice");
    // The Realtime endpoint refuses the same in OpenAI's shape (its SDKs raise RateLimitError).
    match tokio_tungstenite::connect_async(format!("ws://{}/v1/realtime?token={transcribe}", stack.addr)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("\"code\":\"rate_limit_exceeded\""), "{body}");
        }
        other => panic!("a third Realtime socket of alice: {other:?}"),
    }
    assert_eq!(upgrade_status(stack.addr, &format!("/ws?token={}", token(&[Scope::Transcribe], "bob"))).await, 101);

    // The admin API and the dashboard feed want the admin scope; the file API wants transcribe.
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(http_get(stack.addr, "/admin/plugins").await.unwrap().0, 401);
    assert_eq!(
        http_with(stack.addr, "GET", "/admin/plugins", &[("Authorization", &bearer(&transcribe))], b"")
            .await
            .unwrap()
            .0,
        403
    );
    assert_eq!(
        http_with(stack.addr, "GET", "/admin/plugins", &[("Authorization", &bearer(&admin))], b"").await.unwrap().0,
        200
    );
    assert_eq!(http_get(stack.addr, "/api/stats").await.unwrap().0, 401);
    assert_eq!(http_get(stack.addr, &format!("/api/stats?token={admin}")).await.unwrap().0, 200);
    assert_eq!(http(stack.addr, "POST", "/v1/audio/transcriptions", b"").await.unwrap().0, 401);
    // Health and metrics stay open for probes and scrapers.
    assert_eq!(http_get(stack.addr, "/healthz").await.unwrap().0, 200);
    let (_, metrics) = http_get(stack.addr, "/metrics").await.unwrap();
    assert!(metrics.contains("kiki_auth_failures_total"), "{metrics}");
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_only_loopback_is_served() {
    let mut cfg = test_config();
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    let redis = kiki::local::redis_server::RedisChild::start("redis-server", &[]).await.unwrap();
    cfg.redis_url = Some(redis.url.clone());
    let target = kiki::channels::RedisTarget::single(&redis.url).unwrap();
    let seg = kiki::roles::load_segmenters(&cfg, &target).await.unwrap();
    let metrics = kiki::metrics::Metrics::new();
    let err = kiki::gateway::Gateway::bind(cfg.clone(), target.clone(), seg.clone(), metrics.clone())
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("without authentication"), "{err:#}");
    cfg.gateway.allow_remote_without_auth = true;
    assert!(kiki::gateway::Gateway::bind(cfg.clone(), target.clone(), seg.clone(), metrics.clone()).await.is_ok());
    cfg.gateway.allow_remote_without_auth = false;
    cfg.gateway.auth_secret = Some(SECRET.into());
    assert!(kiki::gateway::Gateway::bind(cfg, target, seg, metrics).await.is_ok());
}

/// Opens `n` connections, `batch` at a time: a third plain TCP that closes at once, a third
/// HTTP requests, a third WebSocket sessions dropped without a word after `start`.
async fn churn(addr: std::net::SocketAddr, n: usize, batch: usize) {
    for round in 0..n.div_ceil(batch) {
        let jobs = (0..batch).map(|i| async move {
            match (round * batch + i) % 3 {
                0 => drop(TcpStream::connect(addr).await),
                1 => {
                    let _ = http_get(addr, "/healthz").await;
                }
                _ => {
                    if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await {
                        let _ = ws.send(Message::Text(json!({"type": "start"}).to_string().into())).await;
                        let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                    }
                }
            }
        });
        futures_util::future::join_all(jobs).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_floods_of_connections_leave_the_server_serving() {
    let _g = serial().await;
    let mut cfg = test_config();
    cfg.gateway.max_connections_per_ip = 200;
    // The limit and churn checks below run on a stack of their own with the default header
    // timeout: with 1 s, held sockets could be cut before the limit is seen on a loaded machine.
    let limits_cfg = cfg.clone();
    cfg.gateway.header_read_timeout_s = 1;
    let stack = Stack::gateway_only(cfg).await;

    // Slowloris: a socket that sends nothing, and one that trickles its headers, are cut off.
    let mut silent = TcpStream::connect(stack.addr).await.unwrap();
    let mut trickle = TcpStream::connect(stack.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let trickler = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            if trickle.write_all(&[*b]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        started.elapsed()
    };
    let silent_closed = async {
        let _ = tokio::time::timeout(Duration::from_secs(20), silent.read(&mut buf)).await;
        started.elapsed()
    };
    let (silent_after, trickle_after) = tokio::join!(silent_closed, trickler);
    eprintln!("silent socket closed after {silent_after:?}, trickling one after {trickle_after:?}");
    assert!(silent_after < Duration::from_secs(5) && trickle_after < Duration::from_secs(5));

    // Past the per-address limit a connection gets a 503 at once, and the place comes back.
    let stack = Stack::gateway_only(limits_cfg).await;
    let held: Vec<TcpStream> = futures_util::future::join_all((0..200).map(|_| TcpStream::connect(stack.addr)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // The server counts a socket once it accepts it, which may lag the client's connect.
    let mut refused = None;
    for _ in 0..50 {
        let (status, body) = http_get(stack.addr, "/healthz").await.unwrap();
        if status == 503 {
            refused = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused.is_some(), "201st connection from one address was served");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(http_get(stack.addr, "/healthz").await.unwrap().0, 200);

    // 10,000 connections opened and dropped; memory settles back; sessions are all gone. On a
    // gateway process of its own: this process's memory moves with the tests beside it.
    let gateway = GatewayProcess::start(&[("KIKI_GATEWAY__MAX_CONNECTIONS_PER_IP", "200")]).await;
    churn(gateway.addr, 1_500, 150).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = gateway.memory_kib("VmRSS");
    let t = Instant::now();
    churn(gateway.addr, 10_000, 150).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = gateway.memory_kib("VmRSS");
    eprintln!("10,000 connections in {:?}: RSS {baseline} KiB before, {after} KiB after", t.elapsed());
    for _ in 0..100 {
        if gateway.metric("kiki_sessions_active").await == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gateway.metric("kiki_sessions_active").await, 0.0, "sockets left open");
    assert!(after <= baseline + baseline / 10 + 4096, "RSS grew from {baseline} to {after} KiB");
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Some(ServerMessage::Ready { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_too_fast_is_slowed_too_long_or_garbled_gets_clear_errors() {
    let mut cfg = test_config();
    cfg.gateway.max_audio_speed = 1.0;
    cfg.gateway.max_audio_burst_s = 1.0;
    cfg.gateway.max_session_s = 2;
    cfg.gateway.final_timeout_s = 2;
    // The keep-alive check below runs on a stack of its own: with 1 s pings, a client stalled
    // for a second by a loaded machine would be closed as dead before its session got long.
    let mut keepalive_cfg = cfg.clone();
    keepalive_cfg.gateway.ping_interval_s = 1;
    let stack = Stack::gateway_only(cfg).await;

    // Three seconds of audio at once at 1× real time with a 1 s burst: nothing is dropped and
    // nothing refused; the socket is read at the allowed speed, so the last frames are taken
    // about two seconds later.
    // (On a stack of its own: the other one ends sessions after 2 s of audio.)
    let mut fast_cfg = test_config();
    fast_cfg.gateway.max_audio_speed = 1.0;
    fast_cfg.gateway.max_audio_burst_s = 1.0;
    let fast = Stack::gateway_only(fast_cfg).await;
    let mut c = fast.connect().await;
    c.send_json(json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Some(ServerMessage::Ready { .. })));
    let frames_before = fast.metrics.frames.get();
    for _ in 0..150 {
        c.send_binary(vec![0; 640]).await;
    }
    if let Some(m) = c.recv(Duration::from_millis(500)).await {
        panic!("a fast sender is slowed, not told: {m:?}");
    }
    let read_early = fast.metrics.frames.get() - frames_before;
    assert!(read_early < 150, "all 3 s of audio read at once despite a 1× limit");
    assert!(fast.metrics.reads_paused.get() > 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while fast.metrics.frames.get() - frames_before < 150 {
        assert!(Instant::now() < deadline, "frames left unread: {}", fast.metrics.frames.get() - frames_before);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(c);

    // Real-time audio past max_session_s: the session is told and finishes.
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Some(ServerMessage::Ready { .. })));
    let (mut tx, mut rx) = c.ws.split();
    let sending = async {
        for _ in 0..200 {
            // The server closes the socket once the session ended: later sends fail.
            if tx.send(Message::Binary(vec![0u8; 640].into())).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let receiving = async {
        let mut got = Vec::new();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(15), rx.next()).await {
            if let Message::Text(t) = m {
                let m: ServerMessage = serde_json::from_str(t.as_str()).unwrap();
                let end = matches!(m, ServerMessage::End { .. });
                got.push(m);
                if end {
                    break;
                }
            }
        }
        got
    };
    let (_, got) = tokio::join!(sending, receiving);
    assert!(got.iter().any(|m| matches!(m, ServerMessage::Error { code: ErrorCode::SessionTooLong, .. })), "{got:?}");
    assert!(matches!(got.last(), Some(ServerMessage::End { .. })), "{got:?}");

    // Garbage of every kind before and after start: errors, never a dropped server.
    let mut c = stack.connect().await;
    let mut rng = rand::rng();
    for i in 0..300 {
        if i == 150 {
            c.send_json(json!({"type": "start"})).await;
        }
        let len = rng.random_range(0..2048);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if rng.random_bool(0.5) {
            c.send_binary(bytes).await;
        } else {
            c.send_text(&String::from_utf8_lossy(&bytes)).await;
        }
    }
    let (status, _) = http_get(stack.addr, "/healthz").await.unwrap();
    assert_eq!(status, 200);

    // Keep-alive: the server pings; a peer that never answers is disconnected.
    let stack = Stack::gateway_only(keepalive_cfg).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", stack.addr)).await.unwrap();
    let ping = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Ok(Message::Ping(_))) = ws.next().await {
                return;
            }
        }
    })
    .await;
    assert!(ping.is_ok(), "no ping from the server");
    let (mut deaf, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", stack.addr)).await.unwrap();
    // Never read, so never pong: closed within two ping intervals (the idle timeout is 60 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = deaf.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the deaf peer is still held");
}

/// The status of a WebSocket upgrade sent with these extra headers.
async fn upgrade_with(addr: std::net::SocketAddr, path: &str, headers: &[(&'static str, &str)]) -> u16 {
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}{path}"))
            .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("upgrade failed without a status: {e}"),
    }
}

/// With auth off (the default), a hostile page in a browser on the same machine must not be
/// able to open sessions, read the API through DNS rebinding, or change plugins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_are_refused() {
    let stack = Stack::gateway_only(test_config()).await;
    let addr = stack.addr;
    for path in ["/api/stats", "/admin/plugins", "/"] {
        let (code, body) = http_with(addr, "GET", path, &[("Host", "rebound.evil.example:8080")], b"").await.unwrap();
        assert_eq!(code, 403, "{path}: {body}");
        assert!(body.contains("allowed_hosts"), "{body}");
    }
    assert_eq!(http_with(addr, "GET", "/healthz", &[("Host", "localhost:1")], b"").await.unwrap().0, 200);
    assert_eq!(upgrade_with(addr, "/ws", &[("Origin", "https://evil.example")]).await, 403);
    assert_eq!(upgrade_with(addr, "/ws/asr", &[("Origin", "null")]).await, 403);
    assert_eq!(upgrade_with(addr, "/ws", &[("Origin", &format!("http://{addr}"))]).await, 101, "our own page");
    assert_eq!(upgrade_with(addr, "/ws", &[]).await, 101, "native clients send no Origin");
    let activate = "/admin/plugins/segmenter/default?name=vad";
    for headers in [
        vec![("Origin", "https://evil.example"), ("Content-Type", "application/json")],
        vec![("Content-Type", "text/plain")],
        vec![("Content-Type", "application/x-www-form-urlencoded")],
        vec![],
    ] {
        let (code, body) = http_with(addr, "POST", activate, &headers, b"").await.unwrap();
        assert_eq!(code, 403, "{headers:?}: {body}");
    }
    let (code, body) = http_with(addr, "POST", activate, &[("Content-Type", "application/json")], b"").await.unwrap();
    assert_ne!(code, 403, "an API client's request: {body}");
}

/// Rooms: off without auth; with auth a room is the subject's own unless the token grants it,
/// and a resume token works only for the subject that opened the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_resume_are_bound_to_the_token_subject() {
    let open = Stack::gateway_only(test_config()).await;
    let mut c = open.connect().await;
    c.send_json(json!({"type": "start", "room": "standup"})).await;
    let refused = c.recv(Duration::from_secs(5)).await;
    assert!(
        matches!(&refused, Some(ServerMessage::Error { code: ErrorCode::InvalidOption, message, .. }) if message.contains("rooms")),
        "{refused:?}"
    );
    drop(open);

    let mut cfg = test_config();
    cfg.gateway.auth_secret = Some(SECRET.into());
    let stack = Stack::gateway_only(cfg).await;
    let auth = Auth::new(Some(SECRET.as_bytes()), b"", None);
    let connect = |token: String| {
        let url = format!("ws://{}/ws?token={token}", stack.addr);
        async move { Client { ws: tokio_tungstenite::connect_async(url).await.unwrap().0 } }
    };
    let mut sessions = Vec::new();
    let mut clients = Vec::new();
    for (subject, grant) in [("alice", false), ("bob", false), ("carol", true), ("dave", true)] {
        let rooms = if grant { vec!["standup".to_string()] } else { vec![] };
        let t = auth.mint_with_rooms(subject, &[Scope::Transcribe], 600, &rooms).unwrap();
        let mut c = connect(t).await;
        c.send_json(json!({"type": "start", "room": "standup"})).await;
        let Some(ServerMessage::Ready { session, resume_token, .. }) = c.recv(Duration::from_secs(5)).await else {
            panic!("ready")
        };
        sessions.push((subject, session, resume_token));
        clients.push(c);
    }
    let mut conn = stack.redis().await;
    let members = |room: String| {
        let mut conn = conn.clone();
        async move {
            let m: Vec<String> = redis::AsyncCommands::smembers(&mut conn, room).await.unwrap();
            m
        }
    };
    assert_eq!(members("kiki:room:u/alice/standup".into()).await, vec![sessions[0].1.clone()]);
    assert_eq!(members("kiki:room:u/bob/standup".into()).await, vec![sessions[1].1.clone()]);
    let mut shared = members("kiki:room:g/standup".into()).await;
    shared.sort();
    let mut granted = vec![sessions[2].1.clone(), sessions[3].1.clone()];
    granted.sort();
    assert_eq!(shared, granted, "only the granted subjects share the room");
    let keys: Vec<String> = redis::AsyncCommands::keys(&mut conn, "kiki:room:standup").await.unwrap();
    assert!(keys.is_empty(), "nobody joins the bare name");

    // Bob presents Alice's resume token: no takeover.
    let alice_token = sessions[0].2.clone();
    drop(clients);
    let mut bob = connect(auth.mint("bob", &[Scope::Transcribe], 600).unwrap()).await;
    bob.send_json(json!({"type": "start", "resume": {"token": alice_token, "last_seq": 0}})).await;
    let Some(ServerMessage::Ready { session, recovered, .. }) = bob.recv(Duration::from_secs(5)).await else {
        panic!("ready")
    };
    assert_eq!(recovered, Some(false));
    assert_ne!(session, sessions[0].1);
    let mut alice = connect(auth.mint("alice", &[Scope::Transcribe], 600).unwrap()).await;
    alice.send_json(json!({"type": "start", "resume": {"token": alice_token, "last_seq": 0}})).await;
    let Some(ServerMessage::Ready { session, recovered, .. }) = alice.recv(Duration::from_secs(5)).await else {
        panic!("ready")
    };
    assert_eq!((recovered, session), (Some(true), sessions[0].1.clone()), "the owner resumes");
}

/// A client that floods pings and reads nothing: its pongs are coalesced (tungstenite keeps
/// one), and the gateway's own ping cannot be written within `write_timeout_s`, so the peer is
/// dropped; everyone else is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_peer_that_does_not_read_is_dropped() {
    let mut cfg = test_config();
    cfg.gateway.ping_interval_s = 1;
    cfg.gateway.write_timeout_s = 2;
    let stack = Stack::gateway_only(cfg).await;
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", stack.addr)).await.unwrap();
    let (mut sink, _stream) = ws.split();
    let mut sent = 0u64;
    let closed = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if sink.send(Message::Ping(vec![0u8; 16].into())).await.is_err() {
                return true;
            }
            sent += 1;
            if sent >= 20_000_000 {
                return false;
            }
        }
    })
    .await
    .unwrap_or(false);
    eprintln!("pings sent before the gateway dropped the socket: {sent}");
    assert!(closed, "the gateway kept a socket that reads none of its pongs ({sent} pings)");
    assert_eq!(http_get(stack.addr, "/healthz").await.unwrap().0, 200);
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Some(ServerMessage::Ready { .. })));
}

/// RFC 6455 §5.5.1: a Close from the client is answered with a Close, on every endpoint
/// (FunASR's Python client reported "no close frame received" after every run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_from_the_client_is_answered_on_every_endpoint() {
    let stack = Stack::gateway_only(test_config()).await;
    for path in ["/ws", "/ws/asr", "/funasr", "/"] {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}{path}", stack.addr)).await.unwrap();
        ws.close(None).await.unwrap();
        let mut answered = false;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            match m {
                Ok(Message::Close(_)) => answered = true,
                Ok(_) => continue,
                Err(e) => panic!("{path}: {e}"),
            }
        }
        assert!(answered, "{path}: no Close frame came back");
    }
}

/// A message over the transport limit is answered with `frame_too_large` and a 1009 close
/// (RFC 6455 §7.4.1), not a dropped connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_transport_limit_is_told_and_closed_with_1009() {
    let stack = Stack::gateway_only(test_config()).await;
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", stack.addr)).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    // Sent from a task of its own: the server never reads all of it, and the answer must be
    // read while the write is stuck.
    tokio::spawn(async move {
        tx.send(Message::Text(json!({"type": "start"}).to_string().into())).await.unwrap();
        // 4 × max_frame_bytes is the transport limit.
        let _ = tx.send(Message::Binary(vec![0u8; test_config().gateway.max_frame_bytes * 4 + 2].into())).await;
    });
    let (mut told, mut code) = (false, None);
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(10), rx.next()).await {
        match m {
            Message::Text(t) => {
                told |= matches!(
                    serde_json::from_str(t.as_str()),
                    Ok(ServerMessage::Error { code: ErrorCode::FrameTooLarge, .. })
                )
            }
            Message::Close(f) => code = f.map(|f| u16::from(f.code)),
            _ => {}
        }
    }
    assert!(told, "no frame_too_large error");
    assert_eq!(code, Some(1009));
}

/// A started session whose client sends nothing but answers pings (kikipounamu records for
/// minutes before it sends) is not idle; a socket that never starts one still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_session_that_answers_pings_is_kept() {
    let mut cfg = test_config();
    cfg.gateway.idle_timeout_s = 3;
    cfg.gateway.ping_interval_s = 1;
    let stack = Stack::gateway_only(cfg).await;
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Some(ServerMessage::Ready { .. })));
    // Reading answers the server's pings; nothing else is sent for over two idle timeouts.
    let quiet_until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < quiet_until {
        if let Some(m) = c.recv(Duration::from_millis(500)).await {
            panic!("a ping-answering session got {m:?}");
        }
    }
    c.send_json(json!({"type": "stop"})).await;
    assert!(matches!(c.recv(Duration::from_secs(5)).await, Some(ServerMessage::End { .. })));
}

const NORMAL: &str = "The quick brown fox jumps over the lazy dog. I would like a cup of coffee.";

/// A normal session after a probe: every final of a two-sentence clip, with its words.
async fn a_normal_session_is_served(stack: &Stack, clip: &[f32], after: &str) {
    assert_eq!(http_get(stack.addr, "/healthz").await.map(|r| r.0).ok(), Some(200), "after {after}: /healthz");
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start"})).await;
    let ready = c.recv(Duration::from_secs(10)).await;
    assert!(matches!(ready, Some(ServerMessage::Ready { .. })), "after {after}: {ready:?}");
    c.stream(clip, 4.0).await;
    let msgs = c.stop_and_collect().await;
    assert!(matches!(msgs.last(), Some(ServerMessage::End { .. })), "after {after}: no end in {msgs:?}");
    assert!(!msgs.iter().any(|m| matches!(m, ServerMessage::Error { .. })), "after {after}: {msgs:?}");
    let text = final_text(&msgs);
    let w = wer(NORMAL, &text);
    assert!(w <= 0.2, "after {after}: WER {w:.2} for {text:?}");
}

async fn upload(stack: &Stack, file: &[u8], fields: &[(&str, &str)]) -> (u16, String) {
    let (ct, body) = multipart(file, fields);
    http_with(stack.addr, "POST", "/v1/audio/transcriptions", &[("Content-Type", ct.as_str())], &body).await.unwrap()
}

/// The answer to a `start` with these extra fields.
async fn start_answer(stack: &Stack, fields: serde_json::Value) -> Option<ServerMessage> {
    let mut c = stack.connect().await;
    let mut start = json!({"type": "start"});
    for (k, v) in fields.as_object().unwrap() {
        start[k] = v.clone();
    }
    c.send_json(start).await;
    c.recv(Duration::from_secs(10)).await
}

/// The adversarial review's probes (issue 17), one after another against one real stack, each
/// followed by a normal session that must get every final: the server refuses or slows what
/// it must and keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_each_hostile_probe_a_normal_session_gets_all_its_finals() {
    let _g = serial().await;
    let mut cfg = test_config();
    cfg.gateway.upload_timeout_s = 2;
    cfg.gateway.write_timeout_s = 2;
    let stack = Stack::start_with(cfg).await;
    let clip = speak_sentences(&NORMAL.split_inclusive(". ").collect::<Vec<_>>(), 800);
    a_normal_session_is_served(&stack, &clip, "nothing").await;

    // 1. Sample rates that once crashed the process (1 Hz) or cost a gigabyte (10,000,019 Hz).
    for rate in [1u32, 10_000_019] {
        let (status, body) = upload(&stack, &wav_u8(rate, 1, &vec![128u8; 2_000_000]), &[]).await;
        assert_eq!(status, 400, "{rate} Hz: {body}");
        assert!(body.contains("sample rate"), "{rate} Hz: {body}");
        a_normal_session_is_served(&stack, &clip, &format!("a {rate} Hz upload")).await;
    }
    // ... and as a kikipounamu chunk.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/asr", stack.addr)).await.unwrap();
    ws.send(Message::Text(json!({"action": "start", "session_id": "probe"}).to_string().into())).await.unwrap();
    let chunk = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, wav_u8(1, 1, &[128u8; 4_000]));
    let msg = json!({"action": "chunk", "session_id": "probe", "chunk_index": 0, "audio_data": chunk});
    ws.send(Message::Text(msg.to_string().into())).await.unwrap();
    let mut refused = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        if let Message::Text(t) = m
            && t.contains("sample rate")
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "a 1 Hz kikipounamu chunk was not refused with its reason");
    drop(ws);
    a_normal_session_is_served(&stack, &clip, "a 1 Hz kikipounamu chunk").await;

    // 6. A 48k-letter hotword, a 100 kB prompt, 95k hotwords, a 10 kB language.
    let hotword = "a".repeat(48_000);
    for (what, fields) in [
        ("a 48k-letter hotword", json!({"hotwords": [hotword]})),
        ("a 100 kB prompt", json!({"prompt": "word ".repeat(20_000)})),
        ("95k hotwords", json!({"hotwords": vec!["ab"; 95_000]})),
        ("a 10 kB language", json!({"language": "x".repeat(10_000)})),
    ] {
        let answer = start_answer(&stack, fields).await;
        assert!(matches!(answer, Some(ServerMessage::Error { .. })), "{what}: {answer:?}");
        a_normal_session_is_served(&stack, &clip, what).await;
    }
    let (status, body) =
        upload(&stack, &wav_u8(16_000, 1, &[128u8; 16_000]), &[("prompt", &"word ".repeat(20_000))]).await;
    assert_eq!(status, 400, "{body}");

    // 12. Partials asked for every 20 ms: at most one per 250 ms of audio is queued.
    let mut c = stack.connect().await;
    c.send_json(json!({"type": "start", "plugins": {"segmenter": {"partial_ms": "20"}}})).await;
    c.recv(Duration::from_secs(10)).await;
    c.stream(&clip, 4.0).await;
    let msgs = c.stop_and_collect().await;
    let partials = msgs.iter().filter(|m| matches!(m, ServerMessage::Partial(_))).count();
    let most = clip.len() / 4_000 + 2;
    assert!(partials <= most, "{partials} partials for {} s of audio", clip.len() / 16_000);
    a_normal_session_is_served(&stack, &clip, "partials every 20 ms").await;

    // 7. A client that streams and never reads: dropped once a write stalls past
    // write_timeout_s; a normal session meanwhile gets its finals.
    let (deaf, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", stack.addr)).await.unwrap();
    let (mut deaf_tx, _deaf_rx) = deaf.split();
    deaf_tx.send(Message::Text(json!({"type": "start"}).to_string().into())).await.unwrap();
    let loud = clip.clone();
    let deaf_task = tokio::spawn(async move {
        for _ in 0..20 {
            for chunk in loud.chunks(320) {
                if deaf_tx.send(Message::Binary(to_s16le(chunk).into())).await.is_err() {
                    return;
                }
            }
        }
    });
    a_normal_session_is_served(&stack, &clip, "a client that does not read").await;
    deaf_task.abort();

    // 9. Uploads: one over the size limit (413), one whose body trickles in (408), one with a
    // streaming header (data size 0xFFFFFFFF; read to its end).
    let (status, body) = upload(&stack, &wav_u8(16_000, 1, &vec![128u8; 51 << 20]), &[]).await;
    assert_eq!(status, 413, "{body}");
    let (mut rd, mut wr) = TcpStream::connect(stack.addr).await.unwrap().into_split();
    let head = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {}\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n",
        stack.addr
    );
    wr.write_all(head.as_bytes()).await.unwrap();
    let trickle = async {
        for _ in 0..30 {
            if wr.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        std::future::pending::<()>().await
    };
    let mut buf = vec![0u8; 4096];
    let n = tokio::select! {
        n = rd.read(&mut buf) => n.unwrap(),
        _ = trickle => unreachable!(),
        _ = tokio::time::sleep(Duration::from_secs(20)) => panic!("a trickled upload was held 20 s"),
    };
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(reply.starts_with("HTTP/1.1 408"), "a trickled upload: {reply}");
    a_normal_session_is_served(&stack, &clip, "a trickled upload").await;
    let mut streaming = wav_u8(16_000, 1, &[]);
    streaming[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    streaming
        .extend(crate::common::to_s16le(&clip).chunks(2).map(|s| (i16::from_le_bytes([s[0], s[1]]) >> 8) as u8 ^ 0x80));
    let (status, body) = upload(&stack, &streaming, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wer(NORMAL, serde_json::from_str::<serde_json::Value>(&body).unwrap()["text"].as_str().unwrap_or("")) <= 0.3,
        "{body}"
    );

    // 5. A cross-site form POST to the admin API (auth off) takes no effect.
    let (status, _) = http_with(
        stack.addr,
        "POST",
        "/admin/plugins/segmenter/default?name=vad",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Origin", "http://evil.example")],
        b"x=1",
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    a_normal_session_is_served(&stack, &clip, "a cross-site admin POST").await;
}
