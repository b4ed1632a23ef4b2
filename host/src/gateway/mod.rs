//! The gateway role: HTTP and WebSocket front door. Sessions run the segmenter plugin on their
//! audio, put segment tasks on the stream, and get results through the global subscriber.

mod admin;
pub mod auth;
mod health;
pub mod limits;
mod openai;
mod server;
mod session;
pub mod site;
mod stats;

/// The native WebSocket protocol's messages (defined in the `kiki-protocol` crate).
pub use kiki_protocol::native as protocol;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use kiki_protocol::Wire;
use kiki_protocol::funasr::FunAsr;
use kiki_protocol::kikipounamu::Kikipounamu;
use kiki_protocol::wire::Native;
use serde::Deserialize;
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};

use auth::{Auth, Principal, Scope};
use limits::Limiter;

use crate::channels::replayer::Replayer;
use crate::channels::subscriber::Dispatcher;
use crate::channels::{Conn, Keys, RedisTarget, tasks};
use crate::config::Config;
use crate::inference::SileroVad;
use crate::metrics::Metrics;
use crate::plugins::{Catalog, SegmenterPlugin};
use crate::shutdown::Shutdown;

/// State shared by every request and session of one gateway process.
pub struct AppState {
    pub cfg: Config,
    pub id: String,
    pub keys: Keys,
    /// The gateway's result channel.
    pub channel: String,
    /// Multiplexed connection for every non-blocking command (constant per process).
    pub redis: Conn,
    pub dispatcher: Arc<Dispatcher>,
    /// Replay reads, batched across this gateway's sessions.
    pub replayer: Replayer,
    pub metrics: Arc<Metrics>,
    /// The segmenters sessions may use, each at its live version (swapped atomically).
    pub segmenters: Arc<Catalog<SegmenterPlugin>>,
    /// Tasks not yet delivered to any worker, polled twice a second (backpressure signal).
    pub backlog: AtomicU64,
    /// The task stream and its consumer group exist (polled with the backlog; `/readyz`).
    pub tasks_ok: AtomicBool,
    /// Triggered on shutdown: sessions finish as if the client had sent `stop`.
    pub drain: Shutdown,
    /// Access tokens (when configured) and resume tokens.
    pub auth: Auth,
    /// WebSocket connections per token subject.
    pub subjects: Arc<Limiter<String>>,
    /// Silero VAD for the segmenters' speech probability (`gateway.speech_prob`).
    pub speech: Option<Arc<SileroVad>>,
    /// The languages the live workers transcribe, polled with the backlog; `None`: not known.
    pub languages: RwLock<Option<BTreeSet<String>>>,
    /// The models the live workers run (their names), polled with the backlog.
    pub models: RwLock<BTreeSet<String>>,
    /// Places for file uploads being transcribed (`gateway.max_uploads`).
    pub uploads: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Refuses a language that no live worker's model transcribes (say `zh` on an English-only
    /// deployment), so the client hears it at once instead of its segments failing in the
    /// workers until they are dead-lettered. "auto", and anything while the workers' languages
    /// are not known, pass; the worker's own check stays the last word.
    pub fn check_language(&self, language: Option<&str>) -> Result<(), String> {
        let Some(code) = language.filter(|c| !c.is_empty() && *c != "auto") else { return Ok(()) };
        let known = self.languages.read().unwrap_or_else(|e| e.into_inner());
        match known.as_ref() {
            Some(codes) if !codes.contains(code) => Err(format!(
                "language {code:?}: no live worker's model transcribes it (they do: {})",
                codes.iter().cloned().collect::<Vec<_>>().join(", ")
            )),
            _ => Ok(()),
        }
    }
}

pub struct Gateway {
    state: Arc<AppState>,
    listener: TcpListener,
    target: RedisTarget,
}

impl Gateway {
    /// Connects to Redis, binds the listener and prepares the state; `serve` runs it.
    pub async fn bind(
        cfg: Config,
        target: RedisTarget,
        segmenters: Arc<Catalog<SegmenterPlugin>>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let id = cfg.gateway.id.clone().unwrap_or_else(crate::ids::short);
        let keys = Keys::new(&cfg.channels.prefix);
        let secret = cfg.auth_secret().map_err(anyhow::Error::msg).context("gateway.auth_secret_file")?;
        if secret.is_none() && !cfg.listen.ip().is_loopback() && !cfg.gateway.allow_remote_without_auth {
            anyhow::bail!(
                "refusing to listen on {} without authentication: set gateway.auth_secret (signed tokens), \
                 or gateway.allow_remote_without_auth = true behind a proxy that authenticates",
                cfg.listen
            );
        }
        if secret.is_none() && cfg.listen.ip().is_loopback() {
            tracing::info!("auth is off (no gateway.auth_secret): serving loopback clients only");
        } else if secret.is_none() && cfg.gateway.allowed_hosts.is_none() {
            tracing::warn!(
                "auth is off on a non-loopback listen and gateway.allowed_hosts is unset: any Host header is \
                 answered; list the names the proxy serves"
            );
        }
        let mut redis =
            target.connect().await.with_context(|| format!("gateway: connecting to Redis at {target:?}"))?;
        tasks::ensure_group(&mut redis, &keys).await.context("gateway: creating the task stream")?;
        let resume_key = shared_resume_key(&mut redis, &keys).await.context("gateway: reading the resume key")?;
        let auth = Auth::new(secret.as_deref(), resume_key.as_bytes(), cfg.gateway.admin_token.clone());
        let speech = if cfg.gateway.speech_prob {
            let path = cfg.speech_model();
            // One model copy per core: sessions on different runtime threads do not queue.
            let copies = std::thread::available_parallelism().map_or(2, |n| n.get());
            let vad = SileroVad::load(&path, &cfg.ort_library(), copies).context(
                "gateway.speech_prob: loading Silero VAD (set gateway.speech_prob = false to run without it)",
            )?;
            tracing::info!(model = %path.display(), "speech probability for the segmenters: Silero VAD");
            Some(Arc::new(vad))
        } else {
            None
        };
        let listener = TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
        let channel = keys.gateway_channel(&id);
        let cfg_subject_limit = cfg.gateway.max_connections_per_subject;
        let cfg_max_uploads = cfg.gateway.max_uploads;
        let dispatcher = Arc::new(Dispatcher::new(metrics.clone()));
        let replayer = Replayer::start(redis.clone(), keys.clone(), metrics.clone());
        let state = Arc::new(AppState {
            cfg,
            id,
            keys,
            channel,
            redis,
            dispatcher,
            replayer,
            metrics,
            segmenters,
            backlog: AtomicU64::new(0),
            tasks_ok: AtomicBool::new(true),
            drain: Shutdown::new(),
            auth,
            subjects: Limiter::new(cfg_subject_limit, 0),
            speech,
            languages: RwLock::new(None),
            models: RwLock::new(BTreeSet::new()),
            uploads: Arc::new(tokio::sync::Semaphore::new(cfg_max_uploads.max(1))),
        });
        Ok(Self { state, listener, target })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then drains: no new connections, live sessions finish their
    /// segments and get their finals (the subscriber keeps running for them), then it returns.
    pub async fn serve(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let state = self.state;
        let web = state.cfg.gateway.web_dir.clone();
        // Background tasks stop only after the drain, not at the signal.
        let stopped = Shutdown::new();
        tokio::spawn(poll_backlog(state.clone(), stopped.clone()));
        if state.cfg.plugins.watch_ms > 0 {
            let every = Duration::from_millis(state.cfg.plugins.watch_ms);
            let (cat, conn, keys) = (state.segmenters.clone(), state.redis.clone(), state.keys.clone());
            tokio::spawn(crate::plugins::sync::run(cat, conn, keys, every, stopped.clone()));
        }
        tokio::spawn(state.dispatcher.clone().run(
            self.target.clone(),
            state.redis.clone(),
            state.channel.clone(),
            stopped.clone(),
        ));
        let drain = state.drain.clone();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            signal.wait().await;
            drain.trigger();
        });
        let app = Router::new()
            .route("/ws", get(ws_native))
            .route("/ws/asr", get(ws_kikipounamu))
            .route("/funasr", get(ws_funasr))
            .route("/healthz", get(health::healthz))
            .route("/readyz", get(health::readyz))
            .route("/metrics", get(health::metrics))
            .route("/api/stats", get(stats::stats))
            .route("/admin/plugins", get(admin::list))
            .route("/admin/plugins/{kind}/activate", post(admin::activate))
            .route("/admin/plugins/{kind}/rollback", post(admin::rollback))
            .route("/admin/plugins/{kind}/default", post(admin::set_default))
            .route("/admin/plugins/files/{file}", put(admin::upload))
            .route_service("/dashboard", ServeFile::new(web.join("dashboard.html")))
            // FunASR clients connect to the server's root: a WebSocket upgrade there speaks
            // FunASR, anything else gets the WebApp.
            .route("/", get(root))
            .merge(openai::router())
            .fallback_service(ServeDir::new(&web))
            .with_state(state.clone())
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(site::SitePolicy::from_config(&state.cfg)),
                site::guard,
            ));
        tracing::info!(addr = %self.listener.local_addr()?, gateway = %state.id, "gateway listening");
        let g = &state.cfg.gateway;
        let opts = server::ServerOptions {
            header_read_timeout: Duration::from_secs(g.header_read_timeout_s.max(1)),
            limits: Limiter::new(g.max_connections_per_ip, g.max_connections),
        };
        server::serve(self.listener, app, opts, state.metrics.clone(), shutdown.clone()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(state.cfg.gateway.final_timeout_s + 5);
        while state.metrics.sessions_active.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(left = state.metrics.sessions_active.get(), "gateway drained");
        stopped.trigger();
        Ok(())
    }
}

/// Bytes read from a WebSocket per read call (a 20 ms frame is 640 bytes; 100 ms, 3.2 KiB).
/// tungstenite zero-fills this much before every read, so bigger costs CPU per frame too.
const SOCKET_READ_BUFFER: usize = 4 * 1024;

/// Bytes queued for a socket that is not being read, at most (results are a few hundred bytes).
const MAX_WRITE_BUFFER: usize = 1 << 20;

/// The `token` query parameter (browsers cannot set headers on a WebSocket).
#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

/// A refused request: 401 or 403 with a JSON error.
pub(crate) struct Denied(auth::AuthError);

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        (self.0.status(), axum::Json(serde_json::json!({"error": self.0.to_string()}))).into_response()
    }
}

/// Refuses a request without `scope`.
pub(crate) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    query_token: Option<&str>,
    scope: Scope,
) -> Result<Principal, Denied> {
    state.auth.check(headers, query_token, scope).map_err(|e| {
        state.metrics.auth_failures.inc();
        Denied(e)
    })
}

async fn ws_native(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    place: Option<Extension<server::ConnPlace>>,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(state, &headers, q, place, ws, Native, 1).await
}

async fn ws_kikipounamu(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    place: Option<Extension<server::ConnPlace>>,
    ws: WebSocketUpgrade,
) -> Response {
    // Each message is a whole utterance as base64 WAV: allow minutes of it.
    upgrade(state, &headers, q, place, ws, Kikipounamu::new(), 32).await
}

async fn ws_funasr(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    place: Option<Extension<server::ConnPlace>>,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(state, &headers, q, place, ws.protocols(["binary"]), FunAsr::new(), 1).await
}

async fn root(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    place: Option<Extension<server::ConnPlace>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match ws.ok() {
        Some(ws) => upgrade(state, &headers, q, place, ws.protocols(["binary"]), FunAsr::new(), 1).await,
        None => match tokio::fs::read(state.cfg.gateway.web_dir.join("index.html")).await {
            Ok(page) => ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response(),
            Err(_) => (StatusCode::NOT_FOUND, "no web/index.html\n").into_response(),
        },
    }
}

/// Checks the token and the subject's connection limit, then hands the socket to a session loop
/// speaking `wire`. `size_factor` scales the message limit for protocols that send whole
/// utterances in one message.
async fn upgrade<W: Wire>(
    state: Arc<AppState>,
    headers: &HeaderMap,
    q: TokenQuery,
    place: Option<Extension<server::ConnPlace>>,
    ws: WebSocketUpgrade,
    wire: W,
    size_factor: usize,
) -> Response {
    match authorize(&state, headers, q.token.as_deref(), Scope::Transcribe) {
        Ok(principal) => {
            let refused = |message: &str| {
                let body = serde_json::json!({"error": message});
                (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
            };
            upgrade_as(state, principal, place, ws, (wire, size_factor), refused)
        }
        Err(denied) => denied.into_response(),
    }
}

/// `upgrade` for a caller that has checked the token itself; `refused` renders the 429 for a
/// subject at its connection limit in the caller's protocol.
fn upgrade_as<W: Wire>(
    state: Arc<AppState>,
    principal: Principal,
    place: Option<Extension<server::ConnPlace>>,
    ws: WebSocketUpgrade,
    (wire, size_factor): (W, usize),
    refused: impl FnOnce(&str) -> Response,
) -> Response {
    let subject = match principal.subject.clone() {
        Some(sub) => match state.subjects.admit(sub) {
            Ok(g) => Some(g),
            Err(_) => {
                state.metrics.connections_refused.inc();
                return refused("too many connections for this token's subject");
            }
        },
        None => None,
    };
    // The transport limit sits above the protocol limit so that an oversized frame gets a clear
    // `frame_too_large` error instead of a dropped connection.
    let transport_limit =
        state.cfg.gateway.max_frame_bytes.saturating_mul(4).max(64 * 1024).saturating_mul(size_factor);
    let places = session::Places { _conn: place.map(|Extension(p)| p), _subject: subject, principal };
    // Small socket buffers: tungstenite's 128 KiB defaults cost ~0.25 MiB per session once
    // touched and a 128 KiB memset per read, while audio frames are a few KiB (larger
    // messages still grow the buffer).
    ws.max_message_size(transport_limit)
        .max_frame_size(transport_limit)
        .read_buffer_size(SOCKET_READ_BUFFER)
        .write_buffer_size(0)
        // A peer that does not read (nor lets the kernel buffer take more) fills this, and the
        // next write fails: the session ends instead of queueing pongs and results for ever.
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| session::run(socket, state, wire, places))
        .into_response()
}

/// The key every gateway of a deployment signs resume tokens with (when there is no auth
/// secret): made once, by whichever gateway comes first.
async fn shared_resume_key(conn: &mut Conn, keys: &Keys) -> Result<String, crate::channels::ChannelError> {
    let fresh = format!("{}{}", crate::ids::long(), crate::ids::long());
    crate::channels::shared_resume_key(conn, keys, &fresh).await
}

/// Recreates the task stream's consumer group after Redis lost it. Returns whether it exists now.
async fn heal_task_group(state: &AppState, conn: &mut Conn) -> bool {
    match tasks::ensure_group(conn, &state.keys).await {
        Ok(()) => {
            state.metrics.task_group_recreated.inc();
            tracing::warn!("the task stream's consumer group was missing (Redis came back empty?): recreated it");
            true
        }
        Err(e) => {
            tracing::warn!("the task stream's consumer group is missing and could not be recreated: {e}");
            false
        }
    }
}

/// Keeps `AppState::backlog` current from the consumer group's lag (backpressure), and the
/// autoscaling signals in `/metrics`: backlog, oldest pending age, per-worker reports.
async fn poll_backlog(state: Arc<AppState>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut conn = state.redis.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {
                let healthy = match tasks::group_lag(&mut conn, &state.keys).await {
                    Ok(Some(lag)) => {
                        state.backlog.store(lag, Ordering::Relaxed);
                        state.metrics.tasks_backlog.set(lag as i64);
                        true
                    }
                    // Redis came back empty: the group is made again here, so that neither the
                    // workers' reads nor this gateway's readiness wait for a restart.
                    Ok(None) => heal_task_group(&state, &mut conn).await,
                    Err(_) => false,
                };
                state.tasks_ok.store(healthy, Ordering::Relaxed);
                if let Ok(pending) = tasks::pending(&mut conn, &state.keys).await {
                    state.metrics.set_pending(&pending.per_consumer);
                    let age = pending.oldest_age_ms(crate::channels::workers::now_ms());
                    state.metrics.tasks_oldest_pending_ms.set(age as i64);
                }
                if let Ok(live) = crate::channels::workers::alive_with_stats(&mut conn, &state.keys).await {
                    let languages = crate::channels::workers::languages_of(live.iter().map(|(_, _, s)| s.as_ref()));
                    *state.languages.write().unwrap_or_else(|e| e.into_inner()) = languages;
                    // A worker's model label is "name precision provider".
                    let models = live
                        .iter()
                        .filter_map(|(_, _, s)| s.as_ref().filter(|s| s.engine == "whisper"))
                        .filter_map(|s| s.model.split_whitespace().next().map(str::to_string))
                        .collect();
                    *state.models.write().unwrap_or_else(|e| e.into_inner()) = models;
                    let reports: Vec<(String, u64, u64, u64)> = live
                        .into_iter()
                        .map(|(id, _, s)| {
                            let s = s.unwrap_or_default();
                            (id, s.segments, s.audio_ms, s.busy_ms)
                        })
                        .collect();
                    state.metrics.set_workers(&reports);
                }
            }
        }
    }
}
