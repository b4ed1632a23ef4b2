//! The `kiki` binary: one program, several roles.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kiki::config::Config;
use kiki::shutdown::Shutdown;
use kiki::tools::transcribe::FileOptions;

#[derive(Parser)]
#[command(
    name = "kiki",
    version,
    about = "Streaming speech recognition: gateway, worker and wasm plugins around Redis"
)]
struct Cli {
    /// Config file (default: ./kiki.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides config and KIKI_LISTEN).
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Redis URL (overrides config and KIKI_REDIS_URL).
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on this machine: gateway + worker in one process (+ a private Redis when none
    /// is configured); with --gateways/--workers/--redis-cluster, each role as its own process.
    Up {
        /// Gateway processes, on consecutive ports from --listen.
        #[arg(long, default_value_t = 1)]
        gateways: usize,
        /// Worker processes.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// A private 3-master Redis Cluster (sharded Pub/Sub) instead of one redis-server.
        #[arg(long)]
        redis_cluster: bool,
    },
    /// The gateway role only.
    Gateway,
    /// The worker role only.
    Worker,
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Check a running deployment: Redis, the task stream, workers, Pub/Sub and a probe task
    /// through a worker. Exit code 0 when all is healthy, 1 otherwise.
    Check {
        /// Also check a gateway's /readyz, e.g. http://127.0.0.1:8080
        #[arg(long)]
        gateway: Option<String>,
        /// Seconds to wait for each probe.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// Mint a signed access token (needs gateway.auth_secret or auth_secret_file).
    Token {
        /// Who the token is for (its `sub`; connection limits count per subject).
        #[arg(long)]
        subject: String,
        /// What it may do: transcribe (sessions, file API), admin (/admin, /api/stats).
        #[arg(long = "scope", value_parser = kiki::gateway::auth::parse_scope, default_value = "transcribe")]
        scopes: Vec<kiki::gateway::auth::Scope>,
        /// Lifetime in seconds (at least 1).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
        ttl: u64,
        /// A room the subject may share with other subjects granted it (repeatable; `*` for
        /// any). Without a grant, a session's room is its subject's own.
        #[arg(long = "room")]
        rooms: Vec<String>,
    },
    /// Benchmarks against a running deployment.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Transcribe WAV files and print one line per file.
    Transcribe {
        files: Vec<PathBuf>,
        /// Print JSON (segments with times) instead of plain lines.
        #[arg(long, conflicts_with_all = ["srt", "vtt"])]
        json: bool,
        /// Print SubRip subtitles (one block per file).
        #[arg(long, conflicts_with = "vtt")]
        srt: bool,
        /// Print WebVTT subtitles (one block per file).
        #[arg(long)]
        vtt: bool,
        /// Model name (a folder under data_dir/models), e.g. tiny.en.
        #[arg(long)]
        model: Option<String>,
        /// Language of the audio (`en`; other codes need a multilingual model; `auto` detects).
        #[arg(long)]
        language: Option<String>,
        /// Beam width (1 = greedy; default from config, model.decoding.beam_size).
        #[arg(long)]
        beam_size: Option<usize>,
        /// Text that conditions the decoder: names, terms, the previous context.
        #[arg(long)]
        prompt: Option<String>,
        /// No progress bar on stderr.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Stream N sessions of real speech at real time to a gateway and report latency, finals
    /// delivered, and the CPU/memory of the watched processes and of Redis.
    Load {
        /// Gateway WebSocket URL; repeat it for several gateways (sessions are spread over them,
        /// and a session that loses its gateway resumes on the next).
        #[arg(long = "url", default_value = "ws://127.0.0.1:8080/ws")]
        urls: Vec<String>,
        #[arg(long, default_value_t = 10)]
        sessions: usize,
        /// Seconds each session streams.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Share of time spent talking (silence fills the rest).
        #[arg(long, default_value_t = 0.3)]
        talk: f64,
        /// Seconds over which sessions start.
        #[arg(long, default_value_t = 10)]
        ramp: u64,
        /// Folder of WAV clips, spoken in name order; scripts/make-clips.sh makes one.
        #[arg(long)]
        clips: PathBuf,
        /// Processes to measure, LABEL=PID (repeatable), e.g. gateway=1234.
        #[arg(long = "watch", value_parser = parse_watch)]
        watch: Vec<(String, u32)>,
        /// Redis to sample (INFO) during the run.
        #[arg(long = "sample-redis")]
        sample_redis: Option<String>,
        /// Seconds to wait for the last finals after `stop`.
        #[arg(long, default_value_t = 60)]
        drain: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Segmenter option for every session, KEY=VALUE (repeatable), e.g. hangover_ms=300.
        #[arg(long = "segmenter", value_parser = parse_option)]
        segmenter: Vec<(String, String)>,
        /// Length of each audio frame in ms (the WebApp sends 20).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(10..=1000))]
        frame_ms: u64,
    },
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((k.to_string(), v.to_string()))
}

fn parse_watch(s: &str) -> Result<(String, u32), String> {
    let (label, pid) = s.split_once('=').ok_or("expected LABEL=PID")?;
    Ok((label.to_string(), pid.parse().map_err(|e| format!("pid: {e}"))?))
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Validate a component against the plugin worlds, instantiate it within the sandbox limits
    /// and run it on built-in test input.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiki: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiki: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut cfg = Config::load(cli.config.as_deref()).context("loading configuration")?;
    if let Some(l) = cli.listen {
        cfg.listen = l;
    }
    if let Some(u) = cli.redis_url {
        cfg.redis_url = Some(u);
    }
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    match cli.command {
        Command::Up { gateways: 1, workers: 1, redis_cluster: false } => kiki::roles::run_up(cfg, shutdown).await,
        Command::Up { gateways, workers, redis_cluster } => {
            let topo =
                kiki::local::topology::Topology { gateways, workers, redis_cluster, config_file: cli.config.clone() };
            kiki::local::topology::run(cfg, topo, shutdown).await
        }
        Command::Gateway => kiki::roles::run_gateway(cfg, shutdown).await,
        Command::Worker => kiki::roles::run_worker(cfg, shutdown).await,
        Command::Transcribe { files, json, srt, vtt, model, language, beam_size, prompt, quiet } => {
            if let Some(m) = model {
                cfg.model.name = m;
            }
            let format = if json {
                Output::Json
            } else if srt {
                Output::Srt
            } else if vtt {
                Output::Vtt
            } else {
                Output::Lines
            };
            let progress = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let opts = FileOptions { language, prompt, beam_size, batch: 1, progress };
            transcribe(cfg, files, format, opts).await
        }
        Command::Check { gateway, timeout } => check(cfg, gateway, timeout).await,
        Command::Token { subject, scopes, ttl, rooms } => {
            let secret = cfg.auth_secret().map_err(anyhow::Error::msg)?;
            anyhow::ensure!(secret.is_some(), "no gateway.auth_secret (or auth_secret_file) is configured");
            let auth = kiki::gateway::auth::Auth::new(secret.as_deref(), b"", None);
            println!("{}", auth.mint_with_rooms(&subject, &scopes, ttl, &rooms)?);
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Load {
                    urls,
                    sessions,
                    duration,
                    talk,
                    ramp,
                    clips,
                    watch,
                    sample_redis,
                    drain,
                    json,
                    segmenter,
                    frame_ms,
                },
        } => {
            // The tool's own cost is printed beside the server's, so that readers can discount it.
            let mut watch = watch;
            watch.push(("load-tool".into(), std::process::id()));
            let opts = kiki::tools::load::LoadOptions {
                urls,
                sessions,
                duration: std::time::Duration::from_secs(duration),
                talk,
                ramp: std::time::Duration::from_secs(ramp),
                clips,
                watch,
                redis_url: sample_redis,
                drain: std::time::Duration::from_secs(drain),
                segmenter,
                frame_ms,
            };
            let report = kiki::tools::load::run(opts).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(())
        }
        Command::Plugin { command: PluginCommand::Check { file } } => {
            let runtime = kiki::roles::plugin_runtime(&cfg)?;
            let report = tokio::task::spawn_blocking(move || kiki::plugins::check::check(&runtime, &file)).await?;
            for line in &report.lines {
                println!("{line}");
            }
            anyhow::ensure!(report.ok, "the plugin is not usable");
            Ok(())
        }
    }
}

async fn check(cfg: Config, gateway: Option<String>, timeout: u64) -> anyhow::Result<()> {
    let url = cfg.redis_url.clone().unwrap_or_else(|| kiki::roles::DEFAULT_REDIS.into());
    let checks = kiki::tools::check::run(&cfg, &url, gateway.as_deref(), std::time::Duration::from_secs(timeout)).await;
    for c in &checks {
        println!("{:<5} {:<13} {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.detail);
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    anyhow::ensure!(failed == 0, "{failed} check(s) failed");
    Ok(())
}

#[derive(Clone, Copy)]
enum Output {
    Lines,
    Json,
    Srt,
    Vtt,
}

async fn transcribe(cfg: Config, files: Vec<PathBuf>, format: Output, opts: FileOptions) -> anyhow::Result<()> {
    anyhow::ensure!(!files.is_empty(), "no files given");
    let engine = kiki::roles::load_engine(&cfg).await?;
    engine.check_language(opts.language.as_deref())?;
    let opts = FileOptions { batch: cfg.worker.batch_size, ..opts };
    let (model, languages) = (&cfg.model.name, engine.supported_languages().unwrap_or_default().join(", "));
    let mut failed = 0;
    for f in files {
        let e = engine.clone();
        let path = f.clone();
        let o = opts.clone();
        match tokio::task::spawn_blocking(move || kiki::tools::transcribe::transcribe_file(&e, &path, &o)).await? {
            Ok(r) => {
                if r.unsupported_language {
                    eprintln!(
                        "kiki: {}: some speech is not in a language model {model} transcribes ({languages}); its \
                         text is left out",
                        r.file
                    );
                }
                let cues = || r.segments.iter().map(|s| (s.start_ms, s.end_ms, s.text.as_str()));
                match format {
                    Output::Json => println!("{}", serde_json::to_string(&r)?),
                    Output::Srt => print!("{}", kiki::subtitles::srt(cues())),
                    Output::Vtt => print!("{}", kiki::subtitles::vtt(cues())),
                    Output::Lines => println!("{}: {}", r.file, r.text),
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("kiki: {e:#}");
            }
        }
    }
    anyhow::ensure!(failed == 0, "{failed} file(s) failed");
    Ok(())
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KIKI_LOG").unwrap_or_else(|_| EnvFilter::new("info,ort=warn,wasmtime=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
