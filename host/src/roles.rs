//! Starting the roles: shared set-up (Redis, model, plugins) and `up`, `gateway`, `worker`.

use std::sync::Arc;

use anyhow::Context;

use crate::channels::RedisTarget;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::inference::{Engine, EngineOptions};
use crate::local::redis_server::RedisChild;
use crate::metrics::Metrics;
use crate::plugins::{
    Catalog, Limits, Plugin, PluginRuntime, PostprocessorPlugin, RouterPlugin, SegmenterPlugin, sync,
};
use crate::shutdown::Shutdown;
use crate::worker::{Pipeline, Worker};

/// Redis used by roles that are not `up` when none is configured.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379/";

/// The model's settings from the configuration.
pub fn engine_options(cfg: &Config) -> EngineOptions {
    use crate::inference::context_floor;
    EngineOptions {
        model_dir: cfg.model_dir(),
        precision: cfg.model.precision.clone(),
        ort_library: cfg.ort_library(),
        threads: cfg.model.threads,
        short_context: context_floor(&cfg.model.audio_ctx),
        partial_short_context: context_floor(&cfg.model.partial_audio_ctx),
        max_tokens: cfg.model.max_tokens,
        provider: cfg.model.provider.clone(),
        decoding: cfg.model.decoding.clone(),
    }
}

/// Loads the model on a blocking thread (it reads hundreds of MB).
pub async fn load_engine(cfg: &Config) -> anyhow::Result<Arc<Engine>> {
    let opts = engine_options(cfg);
    let engine = tokio::task::spawn_blocking(move || Engine::load(opts)).await??;
    Ok(Arc::new(engine))
}

pub fn plugin_runtime(cfg: &Config) -> anyhow::Result<Arc<PluginRuntime>> {
    let limits = Limits {
        fuel_per_call: cfg.plugins.fuel_per_call,
        max_memory_bytes: cfg.plugins.max_memory_bytes,
        ..Limits::default()
    };
    Ok(PluginRuntime::new(limits)?)
}

/// The post-processor and router catalogs a worker runs on each result, each with its default
/// loaded (the versions the deployment's record names, else the newest files).
pub async fn load_pipeline(cfg: &Config, target: &RedisTarget, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Pipeline>> {
    let runtime = plugin_runtime(cfg)?;
    let p = &cfg.plugins;
    let post = catalog::<PostprocessorPlugin>(cfg, &runtime, &p.postprocessor, &p.allow.postprocessor);
    let router = catalog::<RouterPlugin>(cfg, &runtime, &p.router, &p.allow.router);
    let mut conn = target.connect().await.context("worker: connecting to Redis for the plugin record")?;
    let keys = crate::channels::Keys::new(&cfg.channels.prefix);
    for result in [sync::apply(&post, &mut conn, &keys).await, sync::apply(&router, &mut conn, &keys).await] {
        if let Err(e) = result {
            tracing::warn!("plugin record not read at start: {e}");
        }
    }
    // A missing default is a warning, not a failure: results then go out unprocessed.
    for (kind, loaded) in
        [("postprocessor", post.get(None).await.map(|_| ())), ("router", router.get(None).await.map(|_| ()))]
    {
        if let Err(e) = loaded {
            tracing::warn!(kind, "no default {kind}; results go out without it: {e}");
        }
    }
    Ok(Arc::new(Pipeline::new(post, router, cfg.plugins.on_failure, metrics)))
}

/// The segmenter catalog with its default loaded: the version the deployment's record names,
/// else the newest file. Fails when there is none (the gateway cannot cut audio without it).
pub async fn load_segmenters(cfg: &Config, target: &RedisTarget) -> anyhow::Result<Arc<Catalog<SegmenterPlugin>>> {
    let runtime = plugin_runtime(cfg)?;
    let cat = catalog::<SegmenterPlugin>(cfg, &runtime, &cfg.plugins.segmenter, &cfg.plugins.allow.segmenter);
    let mut conn = target.connect().await.context("gateway: connecting to Redis for the plugin record")?;
    if let Err(e) = sync::apply(&cat, &mut conn, &crate::channels::Keys::new(&cfg.channels.prefix)).await {
        tracing::warn!("plugin record not read at start: {e}");
    }
    let plugin = cat
        .get(None)
        .await
        .with_context(|| format!("loading the segmenter from {}; run `make setup`", cfg.plugin_dir().display()))?
        .context("plugins.segmenter is empty: the gateway needs a segmenter")?;
    tracing::info!(plugin = %plugin.label(), "segmenter loaded");
    Ok(cat)
}

fn catalog<P: Plugin>(
    cfg: &Config,
    runtime: &Arc<PluginRuntime>,
    default: &str,
    allowed: &[String],
) -> Arc<Catalog<P>> {
    Catalog::new(runtime.clone(), cfg.plugin_dir(), default, allowed, cfg.plugins.config.clone())
}

/// The configured Redis (one server or a cluster; TLS and ACL user from the config).
pub async fn redis_target(cfg: &Config) -> anyhow::Result<RedisTarget> {
    let url = cfg.redis_url.clone().unwrap_or_else(|| DEFAULT_REDIS.into());
    let target = RedisTarget::new(&url, &cfg.redis).await.with_context(|| format!("reaching Redis at {url}"))?;
    tracing::info!(redis = ?target, "redis");
    Ok(target)
}

pub async fn run_gateway(cfg: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let target = redis_target(&cfg).await?;
    let metrics = Metrics::new();
    let seg = load_segmenters(&cfg, &target).await?;
    Gateway::bind(cfg, target, seg, metrics).await?.serve(shutdown).await
}

/// The configured engine: Whisper, or none for a transport-only worker.
pub async fn worker_engine(cfg: &Config) -> anyhow::Result<Option<Arc<Engine>>> {
    match cfg.worker.engine.as_str() {
        "whisper" => Ok(Some(load_engine(cfg).await?)),
        "none" => {
            tracing::warn!("worker.engine = none: every task is answered with empty text (transport load tests only)");
            Ok(None)
        }
        other => anyhow::bail!("worker.engine = {other:?}: expected \"whisper\" or \"none\""),
    }
}

pub async fn run_worker(cfg: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let target = redis_target(&cfg).await?;
    let engine = worker_engine(&cfg).await?;
    let metrics = Metrics::new();
    if let Some(addr) = &cfg.worker.metrics_listen {
        serve_metrics(addr, metrics.clone(), shutdown.clone()).await?;
    }
    let pipeline = load_pipeline(&cfg, &target, metrics.clone()).await?;
    Worker::new(&cfg, target, engine, metrics).with_pipeline(pipeline).run(shutdown).await
}

/// `GET /metrics` for a process without a gateway (a `kiki worker`), until shutdown.
async fn serve_metrics(addr: &str, metrics: Arc<Metrics>, shutdown: Shutdown) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("worker.metrics_listen {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "worker metrics at /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move { m.response() }
        }),
    );
    tokio::spawn(async move {
        let stop = async move { shutdown.wait().await };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::warn!("worker metrics server stopped: {e}");
        }
    });
    Ok(())
}

/// Everything in one process: a private Redis when none is configured, gateway and worker.
pub async fn run_up(mut cfg: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let child = match &cfg.redis_url {
        Some(_) => None,
        None => {
            let child = RedisChild::start("redis-server", &[]).await?;
            tracing::info!(url = %child.url, "started a private redis-server (set KIKI_REDIS_URL to use your own)");
            cfg.redis_url = Some(child.url.clone());
            Some(child)
        }
    };
    let result = up_inner(cfg, shutdown.clone()).await;
    shutdown.trigger();
    if let Some(c) = child {
        c.stop().await;
    }
    result
}

async fn up_inner(cfg: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let target = redis_target(&cfg).await?;
    let metrics = Metrics::new();
    let (engine, seg) = tokio::try_join!(worker_engine(&cfg), load_segmenters(&cfg, &target))?;
    let gateway = Gateway::bind(cfg.clone(), target.clone(), seg, metrics.clone()).await?;
    let pipeline = load_pipeline(&cfg, &target, metrics.clone()).await?;
    let worker = Worker::new(&cfg, target, engine, metrics).with_pipeline(pipeline);
    // The worker outlives the gateway's drain, so that draining sessions get their finals.
    let worker_stop = Shutdown::new();
    let w = tokio::spawn(worker.run(worker_stop.clone()));
    let g = gateway.serve(shutdown.clone()).await;
    worker_stop.trigger();
    let w = w.await.context("worker task")?;
    g.and(w)
}
