//! Shared test harness: a private redis-server per test, the real model, the real plugins,
//! speech from espeak-ng, and a WebSocket client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kiki::channels::{Conn, RedisTarget};
use kiki::config::Config;
use kiki::gateway::Gateway;
use kiki::gateway::protocol::ServerMessage;
use kiki::inference::Engine;
use kiki::local::redis_server::{RedisChild, RedisCluster};
use kiki::metrics::Metrics;
use kiki::shutdown::Shutdown;
use kiki::worker::Worker;
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The default segmenter's release, as plugins/build.sh installs it.
pub fn vad_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| plugin_version("segmenter-vad"))
}
/// The default post-processor's version (`.cache/plugins/text@text_version().wasm`).
pub fn text_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| plugin_version("postprocessor-text"))
}

/// A default plugin's version, from its manifest (`plugins/CRATE/plugin.toml`).
pub fn plugin_version(krate: &str) -> String {
    let path = repo_root().join("plugins").join(krate).join("plugin.toml");
    let manifest: toml::Table = std::fs::read_to_string(&path).expect("the manifest").parse().expect("TOML");
    manifest["version"].as_str().expect("a version").to_string()
}

/// The default segmenter (`.cache/plugins/vad@vad_version().wasm`) loaded into `rt`.
pub fn default_vad(rt: &Arc<kiki::plugins::PluginRuntime>) -> Arc<kiki::plugins::SegmenterPlugin> {
    let path = repo_root().join(format!(".cache/plugins/vad@{vad}.wasm", vad = vad_version()));
    assert!(path.exists(), "{} missing: run plugins/build.sh (make setup does)", path.display());
    kiki::plugins::SegmenterPlugin::load(rt, &path, "vad", vad_version(), Default::default()).unwrap()
}

/// Config pointing at the set-up outputs in the repository's `.cache`.
pub fn test_config() -> Config {
    let mut cfg =
        Config { data_dir: repo_root().join(".cache"), listen: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    cfg.gateway.final_timeout_s = 60;
    cfg.gateway.web_dir = repo_root().join("web");
    cfg
}

static ENGINE: OnceCell<Arc<Engine>> = OnceCell::const_new();
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tests that run the model take turns: two at once on two cores only make both slow.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// The model, loaded once per test binary.
pub async fn engine() -> Arc<Engine> {
    ENGINE.get_or_init(|| async { kiki::roles::load_engine(&test_config()).await.expect("model loads") }).await.clone()
}

/// Speech for `text` from espeak-ng's en-us voice, as 16 kHz mono samples.
pub fn speak(text: &str) -> Vec<f32> {
    speak_with(text, &["-v", "en-us"])
}

/// Speech for `text` from espeak-ng with extra arguments (voice, pitch, speed), 16 kHz mono.
pub fn speak_with(text: &str, args: &[&str]) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    let st = std::process::Command::new("espeak-ng")
        .args(args)
        .arg("-w")
        .arg(&path)
        .arg(text)
        .status()
        .expect("espeak-ng runs");
    assert!(st.success(), "espeak-ng failed");
    kiki::audio::read_wav(&path).expect("espeak output decodes")
}

/// Writes `samples` as a 16-bit WAV file at `rate` Hz, each sample repeated on every channel.
pub fn write_wav(path: &std::path::Path, samples: &[f32], rate: u32, channels: u16) {
    let spec =
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        for _ in 0..channels {
            w.write_sample((s * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Sentences joined with `gap_ms` of silence between them.
pub fn speak_sentences(sentences: &[&str], gap_ms: usize) -> Vec<f32> {
    let mut out = vec![0.0; 16 * 300];
    for s in sentences {
        out.extend(speak(s));
        out.extend(std::iter::repeat_n(0.0, 16 * gap_ms));
    }
    out
}

pub fn to_s16le(samples: &[f32]) -> Vec<u8> {
    kiki::audio::to_s16le(samples)
}

/// Word error rate (normalised words), as the benches compute it.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    kiki::tools::eval::wer(reference, hypothesis)
}

/// The Redis a stack runs on: one private server, or a private cluster.
pub enum Backing {
    Single(RedisChild),
    Cluster(RedisCluster),
}

/// A whole deployment in this process: its own redis-server (or cluster), a gateway and a worker.
pub struct Stack {
    pub addr: SocketAddr,
    pub backing: Backing,
    /// `redis_url` as the roles are configured with it (seed nodes, comma-separated, on a cluster).
    pub redis_url: String,
    pub target: RedisTarget,
    /// Stops the gateway (it drains first).
    pub shutdown: Shutdown,
    /// Stops the in-process workers.
    pub worker_shutdown: Shutdown,
    pub cfg: Config,
    pub metrics: Arc<Metrics>,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(cfg: Config) -> Self {
        let stack = Self::gateway_only(cfg).await;
        stack.spawn_worker().await;
        stack.wait_ready().await;
        stack
    }

    /// Starts an in-process worker on this stack's Redis.
    pub async fn spawn_worker(&self) {
        let target = self.target.clone();
        let pipeline = kiki::roles::load_pipeline(&self.cfg, &self.target, self.metrics.clone())
            .await
            .expect("result plugins load");
        let worker = Worker::new(&self.cfg, target, Some(engine().await), self.metrics.clone()).with_pipeline(pipeline);
        tokio::spawn(worker.run(self.worker_shutdown.clone()));
    }

    /// A `kiki worker` process on this stack's Redis (for tests that SIGKILL it).
    pub fn worker_process(&self) -> std::process::Child {
        self.worker_process_with(&[])
    }

    /// The same with more `KIKI_*` settings.
    pub fn worker_process_with(&self, env: &[(&str, &str)]) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiki"))
            .arg("worker")
            .envs(env.iter().copied())
            .env("KIKI_REDIS_URL", &self.redis_url)
            .env("KIKI_DATA_DIR", repo_root().join(".cache"))
            .env("KIKI_CHANNELS__MIN_IDLE_MS", self.cfg.channels.min_idle_ms.to_string())
            .env("KIKI_CHANNELS__RECLAIM_INTERVAL_MS", self.cfg.channels.reclaim_interval_ms.to_string())
            .env("KIKI_LOG", "warn")
            .spawn()
            .expect("kiki worker starts")
    }

    /// A connection of the test's own to the stack's Redis (routed by key on a cluster).
    pub async fn redis(&self) -> Conn {
        self.target.connect().await.expect("redis connects")
    }

    /// The single redis-server (for tests that restart it).
    pub fn server_mut(&mut self) -> &mut RedisChild {
        match &mut self.backing {
            Backing::Single(r) => r,
            Backing::Cluster(_) => panic!("this stack runs on a cluster"),
        }
    }

    /// Gateway only; add workers with `spawn_worker` or `worker_process`.
    pub async fn gateway_only(cfg: Config) -> Self {
        let redis = RedisChild::start("redis-server", &[]).await.expect("redis-server starts");
        Self::gateway_on(cfg, redis).await
    }

    pub async fn gateway_on(cfg: Config, redis: RedisChild) -> Self {
        let url = redis.url.clone();
        Self::gateway_at(cfg, Backing::Single(redis), url).await
    }

    /// Gateway only, on a private Redis Cluster.
    pub async fn gateway_on_cluster(cfg: Config, cluster: RedisCluster) -> Self {
        let url = cluster.urls();
        Self::gateway_at(cfg, Backing::Cluster(cluster), url).await
    }

    /// Gateway only, on `backing`, reached at `url` (TLS, ACL users: the caller's choice).
    pub async fn gateway_at(mut cfg: Config, backing: Backing, url: String) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("KIKI_LOG"))
            .with_test_writer()
            .try_init();
        cfg.redis_url = Some(url.clone());
        let target = RedisTarget::new(&url, &cfg.redis).await.expect("redis target");
        let shutdown = Shutdown::new();
        let metrics = Metrics::new();
        let seg = kiki::roles::load_segmenters(&cfg, &target).await.expect("segmenter loads");
        let gw = Gateway::bind(cfg.clone(), target.clone(), seg, metrics.clone()).await.expect("gateway binds");
        let addr = gw.local_addr().unwrap();
        tokio::spawn(gw.serve(shutdown.clone()));
        Self { addr, backing, redis_url: url, target, shutdown, worker_shutdown: Shutdown::new(), cfg, metrics }
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = http_get(self.addr, "/readyz").await
                && r.0 == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("stack not ready: {:?}", http_get(self.addr, "/readyz").await);
    }

    /// Until the gateway's poll has seen a live worker's report (`/metrics` shows it): what
    /// the gateway knows of the workers, such as their languages, is current from then on.
    pub async fn wait_for_worker_reports(&self) {
        for _ in 0..100 {
            if let Ok((200, metrics)) = http_get(self.addr, "/metrics").await
                && metrics.lines().any(|l| l.starts_with("kiki_workers_alive ") && l != "kiki_workers_alive 0")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no worker report reached the gateway");
    }

    pub async fn connect(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.addr)).await.expect("ws connects");
        Client { ws }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.trigger();
        self.worker_shutdown.trigger();
    }
}

/// GET: (status, body).
/// A client WebSocket of the adapters' tests.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The next JSON text message within `timeout` (one deadline: pings in between do not extend
/// it); `None` on close or timeout.
pub async fn next_json(ws: &mut Socket, timeout: Duration) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()??.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).expect("JSON from the server")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), kiki::tools::http_client::HttpError> {
    http(addr, "GET", path, &[]).await
}

/// A request: (status, body). Requests other than GET say their body is
/// `application/octet-stream`, as API clients do (the gateway refuses admin changes in a
/// content type a cross-site form could send).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String), kiki::tools::http_client::HttpError> {
    let ct: &[(&str, &str)] = if method == "GET" { &[] } else { &[("Content-Type", "application/octet-stream")] };
    http_with(addr, method, path, ct, body).await
}

/// A request with extra headers (`("Authorization", "Bearer x")`; a `Host` replaces the
/// address's), through the operator tools' client: (status, body).
pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), kiki::tools::http_client::HttpError> {
    let req = kiki::tools::http_client::Request { method, headers, body };
    kiki::tools::http_client::request(&addr.to_string(), path, req, Duration::from_secs(300)).await
}

/// A WAV file of 8-bit samples (`data`) at any rate, written by hand: headers a real encoder
/// would not write (1 Hz, 10,000,019 Hz) are the point of some tests.
pub fn wav_u8(rate: u32, channels: u16, data: &[u8]) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&channels.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate.saturating_mul(u32::from(channels))).to_le_bytes());
    w.extend_from_slice(&channels.to_le_bytes());
    w.extend_from_slice(&8u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(data);
    w
}

/// A `multipart/form-data` body with `fields` and a WAV `file`: (content type, body).
pub fn multipart(file: &[u8], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "kikiboundary7d3f";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
    }
    body.extend(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn send_json(&mut self, v: serde_json::Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.expect("send");
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws.send(Message::Text(t.to_string().into())).await.expect("send");
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.ws.send(Message::Binary(b.into())).await.expect("send");
    }

    /// Next server message, or None when the socket closed or `timeout` passed.
    pub async fn recv(&mut self, timeout: Duration) -> Option<ServerMessage> {
        loop {
            let msg = tokio::time::timeout(timeout, self.ws.next()).await.ok()??.ok()?;
            match msg {
                Message::Text(t) => {
                    return Some(serde_json::from_str(t.as_str()).expect("server sends valid messages"));
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Streams `samples` in 20 ms frames, paced at `speed` x real time.
    pub async fn stream(&mut self, samples: &[f32], speed: f64) {
        let frame = 320;
        let pace = Duration::from_secs_f64(0.02 / speed);
        let mut next = tokio::time::Instant::now();
        for chunk in samples.chunks(frame) {
            self.send_binary(to_s16le(chunk)).await;
            next += pace;
            tokio::time::sleep_until(next).await;
        }
    }

    /// Sends stop and collects every message up to `end`.
    pub async fn stop_and_collect(&mut self) -> Vec<ServerMessage> {
        self.send_json(serde_json::json!({"type": "stop"})).await;
        let mut out = Vec::new();
        while let Some(m) = self.recv(Duration::from_secs(90)).await {
            let end = matches!(m, ServerMessage::End { .. });
            out.push(m);
            if end {
                break;
            }
        }
        out
    }
}

/// Finals' texts joined in segment order.
pub fn final_text(msgs: &[ServerMessage]) -> String {
    let mut finals: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Final(s) => Some((s.segment, s.text.clone())),
            _ => None,
        })
        .collect();
    finals.sort();
    finals.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(" ")
}

/// A `kiki gateway` process on a Redis of its own, for what is measured of the process itself
/// (its memory), apart from the tests that run beside it in this one.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    child: std::process::Child,
    _redis: RedisChild,
}

impl GatewayProcess {
    /// Starts it with extra `KIKI_*` settings and waits for `/healthz`.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let redis = RedisChild::start("redis-server", &[]).await.expect("redis-server starts");
        let port = kiki::local::redis_server::free_port().expect("a free port");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_kiki"))
            .arg("gateway")
            .env("KIKI_DATA_DIR", repo_root().join(".cache"))
            .env("KIKI_REDIS_URL", &redis.url)
            .env("KIKI_LISTEN", addr.to_string())
            .env("KIKI_LOG", "warn")
            .envs(env.iter().copied())
            .spawn()
            .expect("kiki gateway starts");
        let gateway = Self { addr, child, _redis: redis };
        for _ in 0..300 {
            if let Ok((200, _)) = http_get(addr, "/healthz").await {
                return gateway;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the gateway did not start");
    }

    /// A line of the process's /proc status, in KiB (`VmRSS`, `VmHWM`: its peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("the process lives");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("a memory figure")
    }

    /// A metric's value from its /metrics.
    pub async fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.addr, "/metrics").await.expect("/metrics answers");
        body.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
