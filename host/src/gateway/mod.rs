//! The gateway role: HTTP and WebSocket front door. Sessions run the segmenter plugin on their
//! audio, put segment tasks on the stream, and get results through the global subscriber.

mod admin;
mod health;
mod openai;
pub mod protocol;
mod session;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{State, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};

use crate::channels::replayer::Replayer;
use crate::channels::subscriber::Dispatcher;
use crate::channels::{Conn, Keys, RedisTarget, tasks};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugins::SegmenterPlugin;
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
    /// The active segmenter version; swapped atomically, read per new session.
    pub segmenter: ArcSwap<SegmenterPlugin>,
    /// Tasks not yet delivered to any worker, polled twice a second (backpressure signal).
    pub backlog: AtomicU64,
    /// Earlier segmenter versions (rollback) and rejected ones.
    pub history: admin::History,
    /// Triggered on shutdown: sessions finish as if the client had sent `stop`.
    pub drain: Shutdown,
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
        segmenter: Arc<SegmenterPlugin>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let id = cfg.gateway.id.clone().unwrap_or_else(crate::ids::short);
        let keys = Keys::new(&cfg.channels.prefix);
        let mut redis =
            target.connect().await.with_context(|| format!("gateway: connecting to Redis at {target:?}"))?;
        tasks::ensure_group(&mut redis, &keys).await.context("gateway: creating the task stream")?;
        let listener = TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
        let channel = keys.gateway_channel(&id);
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
            segmenter: ArcSwap::new(segmenter),
            backlog: AtomicU64::new(0),
            history: admin::History::default(),
            drain: Shutdown::new(),
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
            tokio::spawn(admin::watch(state.clone(), every, stopped.clone()));
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
            .route("/ws", get(ws_upgrade))
            .route("/healthz", get(health::healthz))
            .route("/readyz", get(health::readyz))
            .route("/metrics", get(health::metrics))
            .route("/api/stats", get(stats::stats))
            .route(
                "/v1/audio/transcriptions",
                post(openai::transcriptions).layer(DefaultBodyLimit::max(openai::MAX_UPLOAD)),
            )
            .route("/admin/plugins", get(admin::list))
            .route("/admin/plugins/segmenter/activate", post(admin::activate))
            .route("/admin/plugins/segmenter/rollback", post(admin::rollback))
            .route("/admin/plugins/files/{file}", put(admin::upload))
            .route_service("/dashboard", ServeFile::new(web.join("dashboard.html")))
            .fallback_service(ServeDir::new(&web))
            .with_state(state.clone());
        tracing::info!(addr = %self.listener.local_addr()?, gateway = %state.id, "gateway listening");
        axum::serve(self.listener, app).with_graceful_shutdown(async move { shutdown.wait().await }).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(state.cfg.gateway.final_timeout_s + 5);
        while state.metrics.sessions_active.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(left = state.metrics.sessions_active.get(), "gateway drained");
        stopped.trigger();
        Ok(())
    }
}

async fn ws_upgrade(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> impl IntoResponse {
    // The transport limit sits above the protocol limit so that an oversized frame gets a clear
    // `frame_too_large` error instead of a dropped connection.
    let transport_limit = state.cfg.gateway.max_frame_bytes.saturating_mul(4).max(64 * 1024);
    ws.max_message_size(transport_limit)
        .max_frame_size(transport_limit)
        .on_upgrade(move |socket| session::run(socket, state))
}

/// Keeps `AppState::backlog` current from the consumer group's lag.
async fn poll_backlog(state: Arc<AppState>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut conn = state.redis.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {
                if let Ok(lag) = tasks::backlog(&mut conn, &state.keys).await {
                    state.backlog.store(lag, Ordering::Relaxed);
                }
                if let Ok(pending) = tasks::pending_per_consumer(&mut conn, &state.keys).await {
                    state.metrics.set_pending(&pending);
                }
            }
        }
    }
}
