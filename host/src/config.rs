//! Configuration: defaults, then `kiki.toml` (optional), then `KIKI_*` environment variables,
//! then command-line flags (applied by `main`). Every role reads the same structure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the gateway (HTTP + WebSocket) listens on.
    pub listen: SocketAddr,
    /// Redis to use (`redis://[user:password@]host:port/`, `rediss://` for TLS; for a cluster,
    /// seed nodes separated by commas). When unset, `kiki up` starts a private `redis-server`.
    pub redis_url: Option<String>,
    /// How to talk to that Redis: cluster mode and TLS material.
    pub redis: RedisConfig,
    /// Folder with set-up outputs (models, plugins, the ONNX Runtime library).
    pub data_dir: PathBuf,
    pub model: ModelConfig,
    pub worker: WorkerConfig,
    pub gateway: GatewayConfig,
    pub plugins: PluginsConfig,
    pub channels: ChannelsConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// Redis Cluster (hash-tagged keys, sharded Pub/Sub). Unset: ask the server (`INFO cluster`).
    pub cluster: Option<bool>,
    /// PEM file of the CA that signed the server's certificate (`rediss://`); unset: the
    /// system's trust store.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that require mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// Model name; its files live in `<data_dir>/models/<name>/`.
    pub name: String,
    /// `fp32` or `int8`.
    pub precision: String,
    /// Explicit model folder (overrides `data_dir/models/name`).
    pub dir: Option<PathBuf>,
    /// Path of `libonnxruntime.so` (defaults to `<data_dir>/libonnxruntime.so`).
    pub ort_library: Option<PathBuf>,
    /// Intra-op threads of the process's one ONNX Runtime pool, shared by the model's sessions
    /// (0 = ONNX Runtime's choice, one per core).
    pub threads: usize,
    /// Encoder context for finals: `full` (always 30 s, the default: what Whisper was trained
    /// on), `auto` (shortened to the segment, as whisper.cpp's audio-ctx does), or seconds, e.g.
    /// `"10"` (shortened, but never below: about half the model time of `full` on short
    /// segments, and more words wrong on short utterances; docs/performance.md, "Encoder
    /// context on real speech").
    #[serde(deserialize_with = "string_or_number")]
    pub audio_ctx: String,
    /// Encoder context for partial results, as `audio_ctx`.
    #[serde(deserialize_with = "string_or_number")]
    pub partial_audio_ctx: String,
    /// Longest decoded text in tokens.
    pub max_tokens: usize,
    /// Execution provider: `cpu`, or `cuda` (needs onnxruntime-gpu; kiki refuses to start
    /// rather than fall back to the CPU when CUDA cannot load).
    pub provider: String,
    /// Search, fallback and word-time settings (`[model.decoding]`).
    pub decoding: crate::inference::DecodingOptions,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Consumer name in the group; defaults to host-pid-random.
    pub id: Option<String>,
    /// Most segments per batched model call.
    pub batch_size: usize,
    /// How long to wait for a batch to fill, in milliseconds.
    pub batch_wait_ms: u64,
    /// `whisper`, or `none`: answer every task with empty text without a model (transport
    /// load tests only; the worker says so in its stats and logs).
    pub engine: String,
    /// Where a `kiki worker` process serves `GET /metrics` (its queue, model and publish legs
    /// of the latency, batches, plugin errors), e.g. `0.0.0.0:9464`; unset: nowhere. In
    /// `kiki up` the gateway's `/metrics` already holds them.
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// Gateway id (its result channel is `kiki:out:<id>`); random when unset.
    pub id: Option<String>,
    /// Largest binary frame accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Longest wait for outstanding finals after `stop`, in seconds.
    pub final_timeout_s: u64,
    /// A socket that sends nothing for this long is closed, in seconds.
    pub idle_timeout_s: u64,
    /// Folder of the web pages.
    pub web_dir: PathBuf,
    /// A static bearer token for `/admin/*` (simple deployments; signed tokens with the
    /// `admin` scope work too when `auth_secret` is set).
    pub admin_token: Option<String>,
    /// Secret for signed access tokens (HS256 JWT with `sub`, `exp`, `scope`). When set, every
    /// session, file upload and admin call needs a token; `kiki token` mints them.
    pub auth_secret: Option<String>,
    /// The same secret, read from a file (it wins over `auth_secret`).
    pub auth_secret_file: Option<PathBuf>,
    /// Without auth the gateway refuses a non-loopback `listen`; this allows it (for a
    /// deployment behind a proxy that authenticates).
    pub allow_remote_without_auth: bool,
    /// Connections held at once, in all and per client address (0 = no limit).
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// WebSocket connections at once per token subject, with auth (0 = no limit).
    pub max_connections_per_subject: usize,
    /// A client must send its request headers within this many seconds (slowloris).
    pub header_read_timeout_s: u64,
    /// The server pings every this many seconds; a client that does not answer by the next
    /// ping is disconnected.
    pub ping_interval_s: u64,
    /// Longest stretch a segment may span, in seconds: each session keeps this much recent
    /// audio for the segmenter's cuts (a cut reaching further back is clamped).
    pub max_segment_s: u64,
    /// Longest session, in seconds of audio (0 = no limit); then it finishes as after `stop`.
    pub max_session_s: u64,
    /// Sustained audio speed a session may send, × real time, with a burst of this many seconds.
    /// Faster senders are slowed (their socket goes unread), never dropped. Sessions without
    /// partials are paced by `max_held_audio_s` instead.
    pub max_audio_speed: f64,
    pub max_audio_burst_s: f64,
    /// Sustained binary frames per second per session (a burst of 5 s worth is allowed).
    pub max_frames_per_s: f64,
    /// Audio a session may have cut and awaiting its finals, in seconds; above it the socket is
    /// left unread until finals come back (the workers pace a file sent at full speed).
    pub max_held_audio_s: u64,
    /// Run Silero VAD on each session's audio and hand the segmenter its speech probability
    /// (the default `vad` segmenter uses it to veto non-speech sounds: beeps, music, knocks).
    /// Costs ~0.2 ms of CPU per 32 ms of audio per session, so it is off by default.
    pub speech_prob: bool,
    /// The Silero VAD ONNX model (default: `<data_dir>/silero_vad.onnx`, installed by set-up).
    pub speech_model: Option<PathBuf>,
    /// Host names (the `Host` header, without its port) the gateway answers to; `"*"` for any.
    /// Unset: the loopback names when `listen` is a loopback address (a page on another site
    /// cannot reach the gateway through DNS rebinding), any host otherwise (auth guards it).
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins (`https://app.example:8443`) besides the gateway's own whose pages may open
    /// sessions and call the API; `"*"` for any. A request with an `Origin` header from
    /// anywhere else gets 403.
    pub allowed_origins: Vec<String>,
    /// Rooms (result fan-out between sessions) without auth. Off by default: without tokens
    /// nothing tells who may hear a room. With auth, a room is the subject's own unless the
    /// token grants it by name (`rooms` claim).
    pub rooms_without_auth: bool,
    /// File uploads (`/v1/audio/transcriptions`) transcribed at once; past it, 429.
    pub max_uploads: usize,
    /// Longest upload (seconds of audio, read from the WAV header before decoding; 413 past
    /// it). Each second held costs 32 KB while the file is transcribed.
    pub max_upload_s: u64,
    /// An upload's body must arrive within this many seconds (408 past it).
    pub upload_timeout_s: u64,
    /// A socket whose peer takes none of what is sent for this many seconds is dropped.
    pub write_timeout_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginsConfig {
    /// Folder holding `NAME@VERSION.wasm` plugins and their manifests.
    pub dir: Option<PathBuf>,
    /// Segmenter used by sessions that do not ask for one.
    pub segmenter: String,
    /// Post-processor run on every result ("" for none).
    pub postprocessor: String,
    /// Router deciding where each result goes ("" for owner-only delivery).
    pub router: String,
    /// Operator settings per plugin name, served to the plugin by `host.config(key)`.
    pub config: std::collections::HashMap<String, std::collections::HashMap<String, String>>,
    /// How often each process looks for newer plugin files in its directory and at the
    /// deployment's record of live versions in Redis (ms; 0 = never).
    pub watch_ms: u64,
    /// Fuel granted per plugin call (a loop that burns it traps instead of stalling the host).
    pub fuel_per_call: u64,
    /// Linear-memory limit per plugin instance, in bytes.
    pub max_memory_bytes: usize,
    /// Plugins sessions may choose by name in `start.plugins.KIND.name`, per kind (the
    /// kind's default is always allowed).
    pub allow: AllowList,
    /// When a session's plugin fails (trap, fuel, memory): `fallback` to the kind's default
    /// plugin (a fresh instance of it if it was the default), or `error`: the session is told and
    /// ends (segmenter), or gets the raw result with a `plugin_failed` error (post-processor,
    /// router).
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AllowList {
    pub segmenter: Vec<String>,
    pub postprocessor: Vec<String>,
    pub router: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Fallback,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelsConfig {
    /// Key prefix for every Redis key kiki writes.
    pub prefix: String,
    /// Seconds a per-session replay stream lives after its last result.
    pub replay_ttl_s: u64,
    /// Entries kept per replay stream.
    pub replay_len: usize,
    /// A task pending this long (ms) on a worker is presumed lost and reclaimed by another.
    /// Keep it above the p99 inference time; busy workers extend their claims meanwhile.
    pub min_idle_ms: u64,
    /// Deliveries after which a task is dead-lettered instead of retried.
    pub max_deliveries: u64,
    /// How often each worker looks for stale tasks and trims the stream (ms).
    pub reclaim_interval_ms: u64,
    /// Backlog (undelivered tasks) above which gateways stop queueing partials.
    pub shed_partials_backlog: u64,
    /// Backlog above which gateways refuse new sessions with a retryable `busy` error.
    pub max_backlog: u64,
    /// A final not received this long (ms) after its task was queued is looked for in the
    /// session's replay stream (and again each time this passes).
    pub overdue_final_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            redis_url: None,
            redis: RedisConfig::default(),
            data_dir: PathBuf::from(".cache"),
            model: ModelConfig::default(),
            worker: WorkerConfig::default(),
            gateway: GatewayConfig::default(),
            plugins: PluginsConfig::default(),
            channels: ChannelsConfig::default(),
        }
    }
}

/// A setting that may be written as a string or a bare number (`audio_ctx = 10`,
/// `KIKI_MODEL__AUDIO_CTX=10`).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        S(String),
        N(f64),
    }
    Ok(match Value::deserialize(d)? {
        Value::S(s) => s,
        Value::N(n) => n.to_string(),
    })
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: "tiny.en".into(),
            precision: "fp32".into(),
            dir: None,
            ort_library: None,
            threads: 0,
            audio_ctx: "full".into(),
            partial_audio_ctx: "10".into(),
            max_tokens: 224,
            provider: "cpu".into(),
            decoding: Default::default(),
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self { id: None, batch_size: 8, batch_wait_ms: 10, engine: "whisper".into(), metrics_listen: None }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            id: None,
            max_frame_bytes: 256 * 1024,
            final_timeout_s: 60,
            idle_timeout_s: 60,
            web_dir: PathBuf::from("web"),
            admin_token: None,
            auth_secret: None,
            auth_secret_file: None,
            allow_remote_without_auth: false,
            max_connections: 20_000,
            max_connections_per_ip: 2_000,
            max_connections_per_subject: 0,
            header_read_timeout_s: 10,
            ping_interval_s: 20,
            max_segment_s: 30,
            max_session_s: 4 * 3600,
            max_audio_speed: 4.0,
            max_audio_burst_s: 30.0,
            max_frames_per_s: 1000.0,
            max_held_audio_s: 600,
            speech_prob: false,
            speech_model: None,
            allowed_hosts: None,
            allowed_origins: Vec::new(),
            rooms_without_auth: false,
            max_uploads: 4,
            max_upload_s: 3_600,
            upload_timeout_s: 120,
            write_timeout_s: 30,
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            segmenter: "vad".into(),
            postprocessor: "text".into(),
            router: "default".into(),
            config: Default::default(),
            fuel_per_call: crate::plugins::limits::FUEL_PER_CALL,
            max_memory_bytes: crate::plugins::limits::MAX_MEMORY_BYTES,
            watch_ms: 2_000,
            allow: AllowList::default(),
            on_failure: OnFailure::Fallback,
        }
    }
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            prefix: "kiki".into(),
            replay_ttl_s: 300,
            replay_len: 1000,
            min_idle_ms: 30_000,
            max_deliveries: 3,
            reclaim_interval_ms: 2_000,
            shed_partials_backlog: 200,
            max_backlog: 2_000,
            overdue_final_ms: 5_000,
        }
    }
}

impl Config {
    /// Loads defaults < `file` (or `./kiki.toml` if present) < `KIKI_*` env vars.
    /// Nested keys use a double underscore: `KIKI_MODEL__PRECISION=int8`.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => fig = fig.merge(Toml::file_exact(path)),
            None => fig = fig.merge(Toml::file("kiki.toml")),
        }
        fig.merge(Env::prefixed("KIKI_").split("__")).extract().map_err(Box::new)
    }

    pub fn model_dir(&self) -> PathBuf {
        self.model.dir.clone().unwrap_or_else(|| self.data_dir.join("models").join(&self.model.name))
    }

    pub fn speech_model(&self) -> PathBuf {
        self.gateway.speech_model.clone().unwrap_or_else(|| self.data_dir.join("silero_vad.onnx"))
    }

    pub fn ort_library(&self) -> PathBuf {
        self.model.ort_library.clone().unwrap_or_else(|| self.data_dir.join("libonnxruntime.so"))
    }

    /// The access-token secret, from `gateway.auth_secret_file` or `gateway.auth_secret`.
    pub fn auth_secret(&self) -> Result<Option<Vec<u8>>, String> {
        if let Some(path) = &self.gateway.auth_secret_file {
            let s = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let s = s.trim();
            if s.is_empty() {
                return Err(format!("{} is empty", path.display()));
            }
            return Ok(Some(s.as_bytes().to_vec()));
        }
        Ok(self.gateway.auth_secret.as_deref().filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()))
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.plugins.dir.clone().unwrap_or_else(|| self.data_dir.join("plugins"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn env_overrides_file_and_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("k.toml", "listen = \"127.0.0.1:9000\"\n[model]\nprecision = \"int8\"\n")?;
            jail.set_env("KIKI_REDIS_URL", "redis://127.0.0.1:1/");
            jail.set_env("KIKI_MODEL__THREADS", "3");
            let c = Config::load(Some(Path::new("k.toml"))).map_err(|e| *e)?;
            assert_eq!(c.listen.port(), 9000);
            assert_eq!(c.model.precision, "int8");
            assert_eq!(c.model.threads, 3);
            assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:1/"));
            assert_eq!(c.worker.batch_size, 8);
            Ok(())
        });
    }
}
