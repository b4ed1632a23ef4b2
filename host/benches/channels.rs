//! Benchmarks of the two Redis channels (DESIGN.md sections 3 and 4), on a private redis-server.
//!
//! 1. Result delivery: latency from just before a worker publishes a result to its arrival in the
//!    session's inbox, Redis CPU, and the gateway-side connection count, for three designs:
//!    - (a) this design: Lua script (HINCRBY seq + XADD replay + PUBLISH) to ONE gateway channel,
//!      ONE subscriber connection, in-process dispatch (`kiki::channels::subscriber::Dispatcher`);
//!    - (a0) the same without the Lua script: plain PUBLISH to the gateway channel, isolating what
//!      the durable write (seq + replay stream) costs;
//!    - (b) per-session streams read with XREAD BLOCK, one reader connection per 100 sessions;
//!    - (c) one Pub/Sub connection per session, plain PUBLISH.
//!
//!    The publishers run in a child process (this binary re-invoked with `--publisher`), so that
//!    they do not share a scheduler with the gateway side; both stamp wall-clock microseconds.
//! 2. Task throughput: XADD -> XREADGROUP -> XACK with a no-op worker, 1 and 4 workers.
//!
//! Run: `cargo bench --bench channels [-- --seconds 8 --max-sessions 1000 --part all]`.

use kiki::stats::median;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use kiki::channels::Keys;
use kiki::channels::results::{self, ReplayPolicy, ResultPayload, Sequenced};
use kiki::channels::subscriber::{Delivery, Dispatcher};
use kiki::channels::tasks::{self, TaskMeta};
use kiki::channels::{Conn, RedisTarget};
use kiki::local::redis_server::RedisChild;
use kiki::shutdown::Shutdown;
use rand::Rng;
use redis::AsyncCommands;
use redis::aio::PubSub;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

const PREFIX: &str = "bench";
const GATEWAY: &str = "gw1";
const EPOCH: &str = "e1";
/// Results per second per session.
const RATE_HZ: u64 = 2;
/// Target size of the published message ("epoch:seq {json}"), equal for all designs.
const MESSAGE_BYTES: usize = 200;
/// Publisher tasks sharing one multiplexed connection.
const PUBLISHER_TASKS: usize = 16;
/// Design (b): sessions per XREAD reader connection.
const KEYS_PER_READER: usize = 100;
const XREAD_BLOCK_MS: usize = 100;
/// Time for the publisher child to start and connect before its first send.
const LEAD: Duration = Duration::from_millis(1500);
/// How long after the window the gateway side keeps listening for stragglers.
const GRACE: Duration = Duration::from_secs(1);
/// Client names that mark the bench's own connections, so they can be told apart in CLIENT LIST.
const PUBLISHER_NAME: &str = "bench-publisher";
const CONTROL_NAME: &str = "bench-control";
/// Task channel: batch size of a read (the worker's default `batch_size`), and the run bound.
const TASK_BATCH: usize = 8;
const TASK_RUN_LIMIT: Duration = Duration::from_secs(60);
/// A 1 s segment of s16 mono at 16 kHz.
const AUDIO_BYTES: usize = 32_000;
const SMALL_BYTES: usize = 200;
const P99_TARGET_MS: f64 = 2.0;

#[derive(Parser, Debug)]
#[command(about = "Benchmarks of Kiki's Redis channels")]
struct Args {
    /// Measured seconds per (design, N) cell, after the warm-up.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Warm-up seconds per cell (sent and received, not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Largest session count to run.
    #[arg(long, default_value_t = 1000)]
    max_sessions: usize,
    /// Designs to run, e.g. "a,c".
    #[arg(long, value_delimiter = ',', default_values_t = [Design::A, Design::A0, Design::B, Design::C])]
    designs: Vec<Design>,
    /// Which part to run.
    #[arg(long, value_enum, default_value_t = Part::All)]
    part: Part,
    /// Tasks per throughput run.
    #[arg(long, default_value_t = 5000)]
    tasks: usize,
    /// Throughput runs per cell (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run as the publisher child of one cell.
    #[arg(long, hide = true)]
    publisher: bool,
    #[arg(long, hide = true, default_value = "")]
    url: String,
    /// Run only this session count (0: 1, 100, 500 and 1000 up to --max-sessions).
    #[arg(long, default_value_t = 0)]
    sessions: usize,
    #[arg(long, hide = true, default_value_t = 0)]
    start_us: u64,
    #[arg(long, hide = true, default_value_t = 0)]
    warm_us: u64,
    #[arg(long, hide = true, default_value_t = 0)]
    end_us: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Design {
    A,
    A0,
    B,
    C,
}

impl Design {
    fn label(self) -> &'static str {
        match self {
            Design::A => "a: Lua+PUBLISH, 1 subscriber",
            Design::A0 => "a0: PUBLISH no Lua, 1 subscriber",
            Design::B => "b: XADD, XREAD 100 keys/conn",
            Design::C => "c: PUBLISH, 1 SUBSCRIBE/session",
        }
    }
}

impl std::fmt::Display for Design {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Design::A => "a",
            Design::A0 => "a0",
            Design::B => "b",
            Design::C => "c",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    All,
    Results,
    Tasks,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.publisher {
        // One thread: the publisher's own CPU use should stay small and predictable.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        return rt.block_on(publisher_main(&args));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(bench_main(&args))
}

// ---------------------------------------------------------------------------------------------
// Shared helpers: wall clock, message format, Redis INFO.

/// Wall-clock microseconds; both processes read the same kernel clock.
fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64
}

/// The tokio instant at a wall-clock time.
fn instant_at(us: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_micros(us.saturating_sub(now_us()))
}

/// The sending and measured span of one cell, in wall-clock microseconds.
#[derive(Clone, Copy, Debug)]
struct Window {
    start_us: u64,
    warm_us: u64,
    end_us: u64,
}

impl Window {
    fn measured(&self, sent_us: u64) -> bool {
        (self.warm_us..self.end_us).contains(&sent_us)
    }
}

fn session_name(i: usize) -> String {
    format!("s{i:05}")
}

/// Padding that brings every published message to about `MESSAGE_BYTES`.
static PADDING: LazyLock<String> = LazyLock::new(|| {
    let probe = message_text(&result_payload(&session_name(0), 1, now_us(), ""), 1);
    "x".repeat(MESSAGE_BYTES.saturating_sub(probe.len()))
});

/// The wire types built once through serde, so that optional fields added to them later need no
/// change here; each message clones a template and sets what varies.
static RESULT_TEMPLATE: LazyLock<ResultPayload> = LazyLock::new(|| {
    let fields =
        serde_json::json!({"session": "", "segment": 0, "kind": "final", "text": "", "start_ms": 0, "end_ms": 0});
    serde_json::from_value(fields).expect("ResultPayload from its required fields")
});
static TASK_TEMPLATE: LazyLock<TaskMeta> = LazyLock::new(|| {
    let fields = serde_json::json!({"session": "", "segment": 0, "kind": "final", "reply": "", "start_ms": 0,
        "end_ms": 0, "enqueued_ms": 0});
    serde_json::from_value(fields).expect("TaskMeta from its required fields")
});

/// A result whose text starts with the send time in microseconds (the latency probe).
fn result_payload(session: &str, seq: u64, sent_us: u64, padding: &str) -> ResultPayload {
    let mut p = RESULT_TEMPLATE.clone();
    p.session = session.to_string();
    p.segment = seq;
    p.text = format!("{sent_us} {padding}");
    p.start_ms = seq * 500;
    p.end_ms = seq * 500 + 500;
    p.enqueued_ms = sent_us / 1000;
    p
}

/// The message as the Lua script publishes it, for the designs that publish it themselves.
fn message_text(payload: &ResultPayload, seq: u64) -> String {
    format!("{EPOCH}:{seq} {}", serde_json::to_string(payload).unwrap_or_default())
}

/// Latency in microseconds of a received result, if it was sent inside the measured window.
fn latency_us(msg: &Sequenced, window: Window) -> Option<u64> {
    let received = now_us();
    let sent: u64 = msg.payload.text.split(' ').next()?.parse().ok()?;
    window.measured(sent).then(|| received.saturating_sub(sent))
}

async fn name_connection<C: redis::aio::ConnectionLike>(conn: &mut C, name: &str) -> anyhow::Result<()> {
    let _: () = redis::cmd("CLIENT").arg("SETNAME").arg(name).query_async(conn).await?;
    Ok(())
}

fn info_field(info: &str, field: &str) -> Option<f64> {
    info.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().parse().ok())
}

/// Redis CPU seconds (user + sys of the server process).
async fn redis_cpu_s(ctl: &mut Conn) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(ctl).await?;
    let user = info_field(&info, "used_cpu_user").context("INFO cpu has no used_cpu_user")?;
    let sys = info_field(&info, "used_cpu_sys").context("INFO cpu has no used_cpu_sys")?;
    Ok(user + sys)
}

/// A Redis CPU sample; `percent_since` turns two into % of one core.
struct CpuSample {
    cpu_s: f64,
    at: Instant,
}

impl CpuSample {
    async fn take(ctl: &mut Conn) -> anyhow::Result<Self> {
        Ok(Self { cpu_s: redis_cpu_s(ctl).await?, at: Instant::now() })
    }

    fn percent_since(&self, earlier: &CpuSample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall > 0.0 { 100.0 * (self.cpu_s - earlier.cpu_s) / wall } else { 0.0 }
    }
}

/// (connected_clients, of which the bench's own named publisher/control connections).
async fn client_counts(ctl: &mut Conn) -> anyhow::Result<(usize, usize)> {
    let info: String = redis::cmd("INFO").arg("clients").query_async(ctl).await?;
    let connected = info_field(&info, "connected_clients").context("INFO clients has no connected_clients")? as usize;
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(ctl).await?;
    let own = list
        .lines()
        .filter(|l| l.contains(&format!(" name={PUBLISHER_NAME} ")) || l.contains(&format!(" name={CONTROL_NAME} ")))
        .count();
    Ok((connected, own))
}

async fn flushall(ctl: &mut Conn) -> anyhow::Result<()> {
    let _: () = redis::cmd("FLUSHALL").query_async(ctl).await?;
    Ok(())
}

fn percentile_ms(sorted_us: &[u64], q: f64) -> f64 {
    let ms: Vec<f64> = sorted_us.iter().map(|us| *us as f64 / 1000.0).collect();
    kiki::stats::percentile(&ms, q)
}

// ---------------------------------------------------------------------------------------------
// Publisher child: paces every session at RATE_HZ with a random phase.

async fn publisher_main(args: &Args) -> anyhow::Result<()> {
    let design = *args.designs.first().context("--designs names the publisher's design")?;
    let window = Window { start_us: args.start_us, warm_us: args.warm_us, end_us: args.end_us };
    let mut conn = RedisTarget::single(&args.url)?.connect().await?;
    name_connection(&mut conn, PUBLISHER_NAME).await?;
    let mut pool = Vec::new();
    for t in 0..PUBLISHER_TASKS.min(args.sessions) {
        let sessions: Vec<String> = (t..args.sessions).step_by(PUBLISHER_TASKS).map(session_name).collect();
        pool.push(tokio::spawn(publisher_task(conn.clone(), design, sessions, window)));
    }
    let (mut sent, mut errors) = (0u64, 0u64);
    for task in pool {
        let (s, e) = task.await?;
        sent += s;
        errors += e;
    }
    println!("sent {sent} errors {errors}");
    Ok(())
}

/// Publishes for its sessions until the window ends. Returns (sent in the measured window, errors).
async fn publisher_task(mut conn: Conn, design: Design, sessions: Vec<String>, window: Window) -> (u64, u64) {
    let keys = Keys::new(PREFIX);
    let policy = ReplayPolicy { max_len: 64, ttl_s: 300, sharded: false };
    let channel = keys.gateway_channel(GATEWAY);
    let period_us = 1_000_000 / RATE_HZ;
    // Min-heap of (next due time, session index); one result per session per period.
    let mut due: BinaryHeap<Reverse<(u64, usize)>> = {
        let mut rng = rand::rng();
        (0..sessions.len()).map(|i| Reverse((window.start_us + rng.random_range(0..period_us), i))).collect()
    };
    let mut seqs = vec![0u64; sessions.len()];
    let (mut sent, mut errors) = (0u64, 0u64);
    while let Some(Reverse((at, i))) = due.pop() {
        if at >= window.end_us {
            break;
        }
        tokio::time::sleep_until(instant_at(at)).await;
        seqs[i] += 1;
        let sent_us = now_us();
        let payload = result_payload(&sessions[i], seqs[i], sent_us, &PADDING);
        let ok = match design {
            Design::A => results::publish(&mut conn, &keys, &policy, &channel, &payload, EPOCH).await.is_ok(),
            Design::A0 => {
                let r: redis::RedisResult<i64> = conn.publish(&channel, message_text(&payload, seqs[i])).await;
                r.is_ok()
            }
            Design::B => xadd_result(&mut conn, &sessions[i], &message_text(&payload, seqs[i])).await.is_ok(),
            Design::C => {
                let r: redis::RedisResult<i64> =
                    conn.publish(session_channel(&sessions[i]), message_text(&payload, seqs[i])).await;
                r.is_ok()
            }
        };
        match (ok, window.measured(sent_us)) {
            (false, _) => errors += 1,
            (true, true) => sent += 1,
            (true, false) => {}
        }
        due.push(Reverse((at + period_us, i)));
    }
    (sent, errors)
}

fn session_stream(session: &str) -> String {
    format!("{PREFIX}:xr:{{{session}}}")
}

fn session_channel(session: &str) -> String {
    format!("{PREFIX}:ps:{session}")
}

/// Design (b)'s write: the result on the session's stream, trimmed like the replay stream.
async fn xadd_result(conn: &mut Conn, session: &str, msg: &str) -> redis::RedisResult<String> {
    redis::cmd("XADD")
        .arg(session_stream(session))
        .arg("MAXLEN")
        .arg("~")
        .arg(64)
        .arg("*")
        .arg("m")
        .arg(msg)
        .query_async(conn)
        .await
}

// ---------------------------------------------------------------------------------------------
// Gateway side of the three designs.

/// A design's receive side, connected and subscribed, not yet recording.
enum Gateway {
    A { dispatcher: JoinHandle<()>, shutdown: Shutdown, inboxes: Vec<mpsc::UnboundedReceiver<(String, Delivery)>> },
    B { readers: Vec<Reader>, inboxes: Vec<mpsc::UnboundedReceiver<(String, Delivery)>> },
    C { subscriptions: Vec<PubSub> },
}

/// Design (b): one connection blocking on XREAD over a group of session streams.
struct Reader {
    conn: Conn,
    streams: Vec<String>,
    inboxes: Vec<mpsc::UnboundedSender<(String, Delivery)>>,
}

/// The receive side while recording: per-session recorders return their latencies.
struct Running {
    recorders: Vec<JoinHandle<Vec<u64>>>,
    helpers: Vec<JoinHandle<()>>,
    shutdown: Option<Shutdown>,
}

async fn connect_gateway(design: Design, target: &RedisTarget, ctl: &Conn, n: usize) -> anyhow::Result<Gateway> {
    let sessions: Vec<String> = (0..n).map(session_name).collect();
    match design {
        Design::A | Design::A0 => {
            let dispatcher = Arc::new(Dispatcher::new(kiki::metrics::Metrics::new()));
            let inboxes = sessions
                .iter()
                .map(|s| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    dispatcher.register(s, tx);
                    rx
                })
                .collect();
            let shutdown = Shutdown::new();
            let channel = Keys::new(PREFIX).gateway_channel(GATEWAY);
            // The dispatcher's liveness probe publishes on the (named) control connection, as a
            // gateway's probe shares its ordinary multiplexed connection.
            let task = tokio::spawn(dispatcher.clone().run(target.clone(), ctl.clone(), channel, shutdown.clone()));
            let deadline = Instant::now() + Duration::from_secs(5);
            while !dispatcher.is_live() {
                if Instant::now() > deadline {
                    bail!("dispatcher did not subscribe within 5 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Gateway::A { dispatcher: task, shutdown, inboxes })
        }
        Design::B => {
            let mut readers = Vec::new();
            let mut inboxes = Vec::new();
            for group in sessions.chunks(KEYS_PER_READER) {
                let conn = target.blocking(Duration::from_millis(XREAD_BLOCK_MS as u64)).await?;
                let (txs, rxs): (Vec<_>, Vec<_>) = group.iter().map(|_| mpsc::unbounded_channel()).unzip();
                inboxes.extend(rxs);
                readers.push(Reader { conn, streams: group.iter().map(|s| session_stream(s)).collect(), inboxes: txs });
            }
            Ok(Gateway::B { readers, inboxes })
        }
        Design::C => {
            let mut subscriptions = Vec::with_capacity(n);
            for s in &sessions {
                let mut pubsub = target.client()?.get_async_pubsub().await?;
                pubsub.subscribe(session_channel(s)).await?;
                subscriptions.push(pubsub);
            }
            Ok(Gateway::C { subscriptions })
        }
    }
}

impl Gateway {
    /// Starts recording: every recorder listens until `deadline`.
    fn start(self, window: Window, deadline: tokio::time::Instant) -> Running {
        match self {
            Gateway::A { dispatcher, shutdown, inboxes } => Running {
                recorders: inboxes.into_iter().map(|rx| spawn_inbox(rx, window, deadline)).collect(),
                helpers: vec![dispatcher],
                shutdown: Some(shutdown),
            },
            Gateway::B { readers, inboxes } => Running {
                recorders: inboxes.into_iter().map(|rx| spawn_inbox(rx, window, deadline)).collect(),
                helpers: readers.into_iter().map(|r| tokio::spawn(r.run(deadline))).collect(),
                shutdown: None,
            },
            Gateway::C { subscriptions } => Running {
                recorders: subscriptions.into_iter().map(|p| spawn_subscription(p, window, deadline)).collect(),
                helpers: vec![],
                shutdown: None,
            },
        }
    }
}

impl Running {
    /// Waits for every recorder (bounded by their deadline), then stops the helpers.
    async fn finish(self) -> Vec<u64> {
        let mut all = Vec::new();
        for r in self.recorders {
            if let Ok(lat) = r.await {
                all.extend(lat);
            }
        }
        if let Some(s) = self.shutdown {
            s.trigger();
        }
        for h in self.helpers {
            let _ = tokio::time::timeout(Duration::from_secs(3), h).await;
        }
        all.sort_unstable();
        all
    }
}

/// A session's task in designs (a) and (b): reads its in-process inbox.
fn spawn_inbox(
    mut rx: mpsc::UnboundedReceiver<(String, Delivery)>,
    window: Window,
    deadline: tokio::time::Instant,
) -> JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut lat = Vec::new();
        while let Ok(Some((_, d))) = timeout_at(deadline, rx.recv()).await {
            if let Delivery::Result(msg) = d {
                lat.extend(latency_us(&msg, window));
            }
        }
        lat
    })
}

/// A session's task in design (c): reads its own Pub/Sub connection.
fn spawn_subscription(pubsub: PubSub, window: Window, deadline: tokio::time::Instant) -> JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut stream = pubsub.into_on_message();
        let mut lat = Vec::new();
        while let Ok(Some(msg)) = timeout_at(deadline, stream.next()).await {
            if let Ok(m) = Sequenced::parse(msg.get_payload_bytes()) {
                lat.extend(latency_us(&m, window));
            }
        }
        lat
    })
}

impl Reader {
    /// XREAD BLOCK over all its streams from the last ids seen, dispatching to the sessions.
    async fn run(mut self, deadline: tokio::time::Instant) {
        let index: HashMap<String, usize> = self.streams.iter().cloned().enumerate().map(|(i, k)| (k, i)).collect();
        // Streams are empty after FLUSHALL, so "0-0" misses nothing and "$" would race.
        let mut last_ids = vec!["0-0".to_string(); self.streams.len()];
        let opts = StreamReadOptions::default().count(KEYS_PER_READER).block(XREAD_BLOCK_MS);
        while tokio::time::Instant::now() < deadline {
            let reply: redis::RedisResult<Option<StreamReadReply>> =
                self.conn.xread_options(&self.streams, &last_ids, &opts).await;
            let Ok(reply) = reply else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                let Some(&i) = index.get(&key.key) else { continue };
                for entry in key.ids {
                    last_ids[i] = entry.id.clone();
                    let bytes: Option<Vec<u8>> = entry.map.get("m").and_then(|v| redis::from_redis_value_ref(v).ok());
                    if let Some(msg) = bytes.and_then(|b| Sequenced::parse(&b).ok()) {
                        let _ = self.inboxes[i].send((String::new(), Delivery::Result(Box::new(msg))));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Part 1: result delivery.

struct CellResult {
    design: Design,
    n: usize,
    latencies_us: Vec<u64>,
    expected: u64,
    publish_errors: u64,
    cpu_percent: f64,
    clients: usize,
    gateway_conns: usize,
}

async fn run_cell(
    args: &Args,
    redis: &RedisChild,
    ctl: &mut Conn,
    design: Design,
    n: usize,
) -> anyhow::Result<CellResult> {
    flushall(ctl).await?;
    let target = RedisTarget::single(&redis.url)?;
    let gateway = connect_gateway(design, &target, ctl, n).await?;
    let start_us = now_us() + LEAD.as_micros() as u64;
    let warm_us = start_us + (args.warmup * 1e6) as u64;
    let window = Window { start_us, warm_us, end_us: warm_us + (args.seconds * 1e6) as u64 };
    let running = gateway.start(window, instant_at(window.end_us) + GRACE);
    let publisher = spawn_publisher(&redis.url, design, n, window)?;

    tokio::time::sleep_until(instant_at(window.warm_us)).await;
    let cpu_start = CpuSample::take(ctl).await?;
    tokio::time::sleep_until(instant_at((window.warm_us + window.end_us) / 2)).await;
    let (clients, own) = client_counts(ctl).await?;
    tokio::time::sleep_until(instant_at(window.end_us)).await;
    let cpu_end = CpuSample::take(ctl).await?;

    let (expected, publish_errors) = wait_publisher(publisher, window).await?;
    let latencies_us = running.finish().await;
    Ok(CellResult {
        design,
        n,
        latencies_us,
        expected,
        publish_errors,
        cpu_percent: cpu_end.percent_since(&cpu_start),
        clients,
        gateway_conns: clients.saturating_sub(own),
    })
}

fn spawn_publisher(url: &str, design: Design, n: usize, window: Window) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    let child = tokio::process::Command::new(exe)
        .arg("--publisher")
        .args(["--url", url, "--designs", &design.to_string(), "--sessions", &n.to_string()])
        .args(["--start-us", &window.start_us.to_string(), "--warm-us", &window.warm_us.to_string()])
        .args(["--end-us", &window.end_us.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
}

/// Waits for the publisher child (bounded) and reads its "sent K errors E" line.
async fn wait_publisher(child: tokio::process::Child, window: Window) -> anyhow::Result<(u64, u64)> {
    let out = timeout_at(instant_at(window.end_us) + Duration::from_secs(10), child.wait_with_output())
        .await
        .context("publisher did not exit 10 s after its window")??;
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match (out.status.success(), nums.as_slice()) {
        (true, [sent, errors]) => Ok((*sent, *errors)),
        _ => bail!("publisher failed ({}): {text}", out.status),
    }
}

fn print_cell_header(args: &Args) {
    println!(
        "== Result delivery: worker publish -> session inbox ({} results/s/session, {} B messages, \
         {:.0} s warm-up + {:.0} s measured per cell)",
        RATE_HZ,
        MESSAGE_BYTES.max(PADDING.len()),
        args.warmup,
        args.seconds
    );
    println!(
        "   publishers: child process, {PUBLISHER_TASKS} tasks on 1 multiplexed connection; \
         (b) reads with one connection per {KEYS_PER_READER} sessions (XREAD BLOCK {XREAD_BLOCK_MS} COUNT {KEYS_PER_READER})"
    );
    println!(
        "   gw conns = INFO connected_clients minus the bench's publisher and control connections \
         (the (a) dispatcher's probe publishes on the control connection)"
    );
    println!(
        "{:<32} {:>5} {:>19} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
        "design", "N", "received/expected", "p50 ms", "p99 ms", "max ms", "Redis CPU", "clients", "gw conns"
    );
}

fn print_cell(c: &CellResult) {
    let got = c.latencies_us.len() as u64;
    let pct = if c.expected > 0 { 100.0 * got as f64 / c.expected as f64 } else { 0.0 };
    let mut note = String::new();
    if got != c.expected {
        note.push_str(&format!("  NOT 100%: {} missing", c.expected as i64 - got as i64));
    }
    if c.publish_errors > 0 {
        note.push_str(&format!("  {} publish errors", c.publish_errors));
    }
    println!(
        "{:<32} {:>5} {:>19} {:>8.3} {:>8.3} {:>8.3} {:>8.1}% {:>8} {:>8}{note}",
        c.design.label(),
        c.n,
        format!("{got}/{} ({pct:.1}%)", c.expected),
        percentile_ms(&c.latencies_us, 0.50),
        percentile_ms(&c.latencies_us, 0.99),
        percentile_ms(&c.latencies_us, 1.0),
        c.cpu_percent,
        c.clients,
        c.gateway_conns,
    );
}

async fn result_delivery(args: &Args, redis: &RedisChild, ctl: &mut Conn) -> Vec<CellResult> {
    print_cell_header(args);
    let mut cells = Vec::new();
    for design in &args.designs {
        let counts = if args.sessions > 0 { vec![args.sessions] } else { vec![1, 100, 500, 1000] };
        for n in counts.into_iter().filter(|&n| n <= args.max_sessions) {
            match run_cell(args, redis, ctl, *design, n).await {
                Ok(c) => {
                    print_cell(&c);
                    cells.push(c);
                }
                Err(e) => println!("{:<32} {n:>5}  FAILED: {e:#}", design.label()),
            }
        }
    }
    cells
}

// ---------------------------------------------------------------------------------------------
// Part 2: task throughput.

/// One run: producers XADD `total` tasks while `workers` no-op workers read and ack them.
/// Returns (tasks/s from the first XADD to the last XACK, Redis CPU % over the run).
async fn task_run(
    target: &RedisTarget,
    ctl: &mut Conn,
    workers: usize,
    payload: usize,
    total: usize,
) -> anyhow::Result<(f64, f64)> {
    flushall(ctl).await?;
    let keys = Keys::new(PREFIX);
    tasks::ensure_group(ctl, &keys).await?;
    let acked = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + TASK_RUN_LIMIT;
    let mut pool = Vec::new();
    for w in 0..workers {
        let conn = target.blocking(Duration::from_millis(100)).await?;
        pool.push(tokio::spawn(noop_worker(conn, format!("w{w}"), total, acked.clone(), deadline)));
    }
    let cpu_start = CpuSample::take(ctl).await?;
    let started = Instant::now();
    produce(ctl, payload, total).await?;
    let mut finished = None;
    for w in pool {
        if let Some(at) = w.await?? {
            finished = Some(at);
        }
    }
    let cpu_end = CpuSample::take(ctl).await?;
    let Some(finished) = finished else {
        bail!("only {} of {total} tasks acked within {TASK_RUN_LIMIT:?}", acked.load(Ordering::Relaxed))
    };
    // Over the busy span only: the other workers idle up to one BLOCK timeout before they return.
    let busy = finished.duration_since(started).as_secs_f64();
    Ok((total as f64 / busy, 100.0 * (cpu_end.cpu_s - cpu_start.cpu_s) / busy))
}

/// Enqueues `total` tasks from 4 tasks on one multiplexed connection (as concurrent sessions of a
/// gateway would), so that the producer is not a single round-trip-bound loop.
async fn produce(ctl: &Conn, payload: usize, total: usize) -> anyhow::Result<()> {
    const PRODUCERS: usize = 4;
    let audio = Arc::new(vec![0x11u8; payload]);
    let mut pool = Vec::new();
    for p in 0..PRODUCERS {
        let (mut conn, audio) = (ctl.clone(), audio.clone());
        pool.push(tokio::spawn(async move {
            let keys = Keys::new(PREFIX);
            for i in (p..total).step_by(PRODUCERS) {
                tasks::enqueue(&mut conn, &keys, &task_meta(i), &audio).await?;
            }
            anyhow::Ok(())
        }));
    }
    for p in pool {
        p.await??;
    }
    Ok(())
}

fn task_meta(i: usize) -> TaskMeta {
    let mut m = TASK_TEMPLATE.clone();
    m.session = session_name(i % 100);
    m.segment = i as u64;
    m.reply = Keys::new(PREFIX).gateway_channel(GATEWAY);
    m.start_ms = i as u64 * 1000;
    m.end_ms = m.start_ms + 1000;
    m.enqueued_ms = now_us() / 1000;
    m
}

/// Reads batches and acks them at once (no model). Returns when the worker that acks the last task
/// did so, or None for the others.
async fn noop_worker(
    mut conn: Conn,
    name: String,
    total: usize,
    acked: Arc<AtomicUsize>,
    deadline: Instant,
) -> anyhow::Result<Option<Instant>> {
    let keys = Keys::new(PREFIX);
    while acked.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        let (batch, bad) = tasks::read(&mut conn, &keys, &name, TASK_BATCH, 100).await?;
        let ids: Vec<String> = batch.into_iter().map(|t| t.id).chain(bad.into_iter().map(|(id, _)| id)).collect();
        tasks::ack(&mut conn, &keys, &ids).await?;
        if !ids.is_empty() && acked.fetch_add(ids.len(), Ordering::Relaxed) + ids.len() >= total {
            return Ok(Some(Instant::now()));
        }
    }
    Ok(None)
}

async fn task_throughput(args: &Args, redis: &RedisChild, ctl: &mut Conn) -> anyhow::Result<()> {
    let target = RedisTarget::single(&redis.url)?;
    println!(
        "== Task channel: XADD -> XREADGROUP (COUNT {TASK_BATCH}, BLOCK 100) -> XACK, no-op worker (no model), \
         {} tasks per run, median of {} runs",
        args.tasks, args.runs
    );
    println!("   each worker on its own connection; 4 producer tasks on one multiplexed connection, same process");
    println!(
        "{:<32} {:>7} {:>16} {:>24} {:>10}",
        "payload", "workers", "tasks/s (median)", "runs min..max", "Redis CPU"
    );
    for (label, payload) in [("1 s s16 16 kHz audio", AUDIO_BYTES), ("small", SMALL_BYTES)] {
        let mut medians = Vec::new();
        for workers in [1, 4] {
            let (mut rates, mut cpus) = (Vec::new(), Vec::new());
            for _ in 0..args.runs {
                let (rate, cpu) = task_run(&target, ctl, workers, payload, args.tasks).await?;
                rates.push(rate);
                cpus.push(cpu);
            }
            let (lo, hi) = rates.iter().fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
            let m = median(&mut rates);
            medians.push(m);
            println!(
                "{:<32} {workers:>7} {m:>16.0} {:>24} {:>9.1}%",
                format!("{label} ({payload} B)"),
                format!("{lo:.0}..{hi:.0}"),
                median(&mut cpus)
            );
        }
        println!("{:<32} ratio 4 workers / 1 worker: {:.2}", format!("({payload} B)"), medians[1] / medians[0]);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn summary(cells: &[CellResult]) {
    let conns = |d: Design| {
        cells
            .iter()
            .filter(|c| c.design == d)
            .map(|c| format!("{}@{}", c.gateway_conns, c.n))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let p99_at = |d: Design, n: usize| {
        cells.iter().rfind(|c| c.design == d && c.n == n).map(|c| percentile_ms(&c.latencies_us, 0.99))
    };
    let verdict = match cells.iter().filter(|c| c.design == Design::A).map(|c| c.n).max() {
        Some(n) => {
            let p99 = p99_at(Design::A, n).unwrap_or(f64::NAN);
            let ok = if p99 <= P99_TARGET_MS { "meets" } else { "MISSES" };
            let baseline =
                p99_at(Design::C, n).map(|c| format!(" (c, per-session Pub/Sub: {c:.3} ms)")).unwrap_or_default();
            format!("design (a) p99 at N={n}: {p99:.3} ms, {ok} the {P99_TARGET_MS} ms target{baseline}")
        }
        None => "design (a) not run".to_string(),
    };
    println!(
        "SUMMARY: {verdict}; gateway-side connections (conns@N): a: {} | a0: {} | b: {} | c: {}",
        conns(Design::A),
        conns(Design::A0),
        conns(Design::B),
        conns(Design::C)
    );
}

fn load_average() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("load average (1/5/15 min): {}", avg.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

async fn bench_main(args: &Args) -> anyhow::Result<()> {
    let began = Instant::now();
    let redis = RedisChild::start("redis-server", &[]).await?;
    let target = RedisTarget::single(&redis.url)?;
    let mut ctl = target.connect().await?;
    name_connection(&mut ctl, CONTROL_NAME).await?;
    let version: String = redis::cmd("INFO").arg("server").query_async(&mut ctl).await?;
    let version = version.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string();
    println!(
        "kiki channels bench: redis-server {version} on port {} (private), {} CPU cores",
        redis.port,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    // Other work on the machine skews latency; say how busy it was.
    println!("{}", load_average());
    let mut cells = Vec::new();
    if args.part != Part::Tasks {
        cells = result_delivery(args, &redis, &mut ctl).await;
        println!();
    }
    if args.part != Part::Results {
        task_throughput(args, &redis, &mut ctl).await?;
        println!();
    }
    if !cells.is_empty() {
        summary(&cells);
    }
    println!("total bench time: {:.1} s; {}", began.elapsed().as_secs_f64(), load_average());
    redis.stop().await;
    Ok(())
}
