//! The loopback topologies of `kiki up --gateways N --workers M [--redis-cluster]`, as separate
//! processes (the short CI versions of the runs in docs/performance.md): results reach a
//! session only through its own gateway's subscriber; a worker killed mid-load is replaced by
//! the others (reclaim); a gateway killed mid-load loses its sockets, and its clients resume on
//! the other gateway without losing or repeating a final. And what one upload costs a gateway
//! process's memory.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// A `kiki up` deployment and what it printed about its processes.
struct Deployment {
    child: Child,
    /// (id, pid, http base) per gateway.
    gateways: Vec<(String, u32, String)>,
    /// (id, pid) per worker.
    workers: Vec<(String, u32)>,
}

impl Deployment {
    fn start(gateways: usize, workers: usize, cluster: bool) -> Self {
        let port = loop {
            let p = kiki::local::redis_server::free_port().unwrap();
            if (1..gateways as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
                break p;
            }
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiki"));
        cmd.arg("up")
            .args(["--gateways", &gateways.to_string(), "--workers", &workers.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")]);
        if cluster {
            cmd.arg("--redis-cluster");
        }
        let mut child = cmd
            .env("KIKI_DATA_DIR", repo_root().join(".cache"))
            .env("KIKI_GATEWAY__WEB_DIR", repo_root().join("web"))
            .env("KIKI_MODEL__PRECISION", "int8")
            // Several model processes on two cores: one thread each.
            .env("KIKI_MODEL__THREADS", "1")
            .env("KIKI_CHANNELS__MIN_IDLE_MS", "3000")
            .env("KIKI_CHANNELS__RECLAIM_INTERVAL_MS", "500")
            .env("KIKI_LOG", "warn")
            .env_remove("KIKI_REDIS_URL")
            .stdout(Stdio::piped())
            .spawn()
            .expect("kiki up starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut gws, mut wks) = (Vec::new(), Vec::new());
        while gws.len() < gateways || wks.len() < workers {
            let line = lines.next().expect("kiki up printed its processes").unwrap();
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["gateway", id, "pid", pid, addr] => gws.push((id.to_string(), pid.parse().unwrap(), addr.to_string())),
                ["worker", id, "pid", pid] => wks.push((id.to_string(), pid.parse().unwrap())),
                _ => {}
            }
        }
        // Keep draining its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Deployment { child, gateways: gws, workers: wks }
    }

    async fn wait_ready(&self) {
        for (_, _, base) in &self.gateways {
            let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
            let mut ok = false;
            for _ in 0..300 {
                if let Ok((200, body)) = http_get(addr, "/readyz").await
                    && body.contains(&format!("\"workers\":{}", self.workers.len()))
                {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ok, "{base} not ready with {} workers", self.workers.len());
        }
    }

    fn ws(&self, i: usize) -> String {
        self.gateways[i].2.replace("http://", "ws://") + "/ws"
    }

    async fn counter(&self, i: usize, name: &str) -> f64 {
        let addr: std::net::SocketAddr = self.gateways[i].2.trim_start_matches("http://").parse().unwrap();
        let (_, body) = http_get(addr, "/metrics").await.unwrap();
        body.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = kiki::local::topology::send_signal(self.child.id(), kiki::local::topology::Signal::TERM);
        let _ = self.child.wait();
    }
}

fn sigkill(pid: u32) {
    let _ = kiki::local::topology::send_signal(pid, kiki::local::topology::Signal::KILL);
}

fn clips() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, text) in
        ["The quick brown fox jumps over the lazy dog.", "I would like a cup of coffee."].iter().enumerate()
    {
        write_wav(&dir.path().join(format!("c{i}.wav")), &speak(text), 16_000, 1);
    }
    dir
}

fn options(
    urls: Vec<String>,
    sessions: usize,
    seconds: u64,
    clips: &std::path::Path,
) -> kiki::tools::load::LoadOptions {
    kiki::tools::load::LoadOptions {
        urls,
        sessions,
        duration: Duration::from_secs(seconds),
        talk: 0.5,
        ramp: Duration::from_secs(1),
        clips: clips.to_path_buf(),
        watch: vec![],
        redis_url: None,
        drain: Duration::from_secs(60),
        segmenter: vec![("hangover_ms".into(), "300".into())],
        frame_ms: 20,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_three_workers_lose_nothing_when_a_worker_or_a_gateway_dies() {
    let _g = serial().await;
    let d = Deployment::start(2, 3, false);
    d.wait_ready().await;
    let clips = clips();

    // Sessions on gateway 1 only: their results never reach gateway 2's subscriber.
    let report = kiki::tools::load::run(options(vec![d.ws(0)], 2, 6, clips.path())).await.unwrap();
    eprintln!("{report}");
    assert_eq!(report.finalized, report.utterances, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert!(d.counter(0, "kiki_finals_delivered_total").await >= report.utterances as f64);
    assert_eq!(d.counter(1, "kiki_finals_delivered_total").await, 0.0);
    assert_eq!(d.counter(1, "kiki_partials_delivered_total").await, 0.0);
    for i in 0..2 {
        assert_eq!(d.counter(i, "kiki_results_unroutable_total").await, 0.0, "gateway {i} got others' results");
    }

    // Both gateways; a worker and then a gateway are killed mid-load.
    let (worker, gateway) = (d.workers[0].1, d.gateways[0].1);
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        sigkill(worker);
        tokio::time::sleep(Duration::from_secs(4)).await;
        sigkill(gateway);
    });
    let report = kiki::tools::load::run(options(vec![d.ws(0), d.ws(1)], 4, 18, clips.path())).await.unwrap();
    killer.await.unwrap();
    eprintln!("{report}");
    assert_eq!((report.connected, report.held), (4, 4), "{report}");
    assert_eq!(report.finalized, report.utterances, "every utterance gets its final: {report}");
    assert_eq!(report.duplicates, 0, "{report}");
    assert!(report.reconnects >= 2, "gateway 1's sessions resumed on gateway 2: {report}");
    assert!(report.errors.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_around_a_three_master_redis_cluster() {
    let _g = serial().await;
    let d = Deployment::start(2, 2, true);
    d.wait_ready().await;
    let clips = clips();
    let report = kiki::tools::load::run(options(vec![d.ws(0), d.ws(1)], 4, 10, clips.path())).await.unwrap();
    eprintln!("{report}");
    assert_eq!((report.connected, report.held), (4, 4), "{report}");
    assert_eq!(report.finalized, report.utterances, "{report}");
    assert_eq!(report.finals, report.finals_reported, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    for i in 0..2 {
        assert!(d.counter(i, "kiki_finals_delivered_total").await > 0.0);
        assert_eq!(d.counter(i, "kiki_results_unroutable_total").await, 0.0);
    }
}

/// A WAV file of 8-bit mono silence.
fn silent_u8_wav(rate: u32, seconds: u32) -> Vec<u8> {
    wav_u8(rate, 1, &vec![128u8; (rate * seconds) as usize])
}

/// An upload costs the gateway its file and its 16 kHz s16 samples, not whole-file f32 buffers
/// at both rates: a 49 MB file of 8-bit samples (51 minutes) once raised a gateway's peak by
/// 865 MB (17x). A header claiming more than the duration limit is refused before decoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_costs_a_gateway_about_its_file_and_its_samples() {
    let _g = serial().await;
    // A `kiki gateway` process of its own (its peak RSS is the upload's): no worker is needed.
    let gateway = GatewayProcess::start(&[]).await;
    let addr = gateway.addr;
    // 8-bit mono at 16 kHz: silence, so no window reaches a worker (there is none).
    let wav = silent_u8_wav(16_000, 3_060);
    let (ct, body) = multipart(&wav, &[]);
    let before = gateway.memory_kib("VmHWM");
    let (status, text) =
        http_with(addr, "POST", "/v1/audio/transcriptions", &[("Content-Type", ct.as_str())], &body).await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"text\":\"\""), "{text}");
    let grew = (gateway.memory_kib("VmHWM") - before) * 1024;
    let ratio = grew as f64 / wav.len() as f64;
    eprintln!("a {} MB upload raised the gateway's peak RSS by {} MB ({ratio:.1}x)", wav.len() >> 20, grew >> 20);
    // The file (1x) and its samples (2x at 8 bits) with room for the allocator; 17x before.
    assert!(ratio < 4.5, "{ratio:.1}x");

    // Past gateway.max_upload_s (3,600 s; 15 MB at 4 kHz): 413 before any decoding.
    let long = silent_u8_wav(4_000, 3_700);
    let (ct, body) = multipart(&long, &[]);
    let (status, text) =
        http_with(addr, "POST", "/v1/audio/transcriptions", &[("Content-Type", ct.as_str())], &body).await.unwrap();
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("audio_too_long"), "{text}");
}

/// A `kiki worker` process (no gateway in it) serves its own `/metrics` when
/// `worker.metrics_listen` is set: the queue, model and publish legs of a final's latency are
/// seen where they happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_serves_its_latency_legs_at_metrics() {
    use kiki::gateway::protocol::ServerMessage;
    let _g = serial().await;
    let stack = Stack::gateway_only(test_config()).await;
    let port = kiki::local::redis_server::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut worker = stack.worker_process_with(&[("KIKI_WORKER__METRICS_LISTEN", &listen)]);
    stack.wait_for_worker_reports().await;
    let mut c = stack.connect().await;
    c.send_json(serde_json::json!({"type": "start"})).await;
    assert!(matches!(c.recv(Duration::from_secs(10)).await, Some(ServerMessage::Ready { .. })));
    c.stream(&speak("Please call Stella."), 4.0).await;
    let msgs = c.stop_and_collect().await;
    let text = final_text(&msgs);
    assert!(text.to_lowercase().contains("please call"), "{text:?}");
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let legs = ["kiki_final_queue_seconds_count", "kiki_final_model_seconds_count", "kiki_final_publish_seconds_count"];
    let count = |body: &str, name: &str| {
        body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.trim().parse::<f64>().ok())
    };
    // The publish leg is recorded once the publish returns, which may be after the final
    // reached the client: poll.
    let mut body = String::new();
    for _ in 0..50 {
        let (code, b) = http_get(addr, "/metrics").await.unwrap();
        assert_eq!(code, 200, "{b}");
        body = b;
        if legs.iter().all(|l| count(&body, l).is_some_and(|n| n >= 1.0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = worker.kill();
    let _ = worker.wait();
    for leg in legs {
        assert!(count(&body, leg).is_some_and(|n| n >= 1.0), "{leg} in the worker's metrics: {body}");
    }
}
