//! Kiki's side of the faster-whisper parity harness (`tools/parity/run.sh` drives both sides).
//!
//! Transcribes the clips of one or more manifests (`{"clip", "text"}` JSON lines, clip paths
//! relative to the manifest) one at a time, as faster-whisper does, and prints one JSON line per
//! clip: `{"clip", "text", "audio_s", "wall_s"}`, which `tools/parity/score.py` scores beside
//! faster-whisper's. `--batch N` instead runs N clips per call (cross-session batching) and
//! reports throughput on stderr.
//!
//!   cargo bench --bench parity -- --manifest .cache/parity/synth/manifest.jsonl --beam 5 --precision int8

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use kiki::config::Config;
use kiki::inference::{Engine, Request};

#[derive(Parser)]
struct Args {
    /// Manifest files (JSON lines with `clip`, relative to the manifest's folder).
    #[arg(long, required = true)]
    manifest: Vec<PathBuf>,
    #[arg(long, default_value_t = 1)]
    beam: usize,
    /// fp32 or int8.
    #[arg(long, default_value = "fp32")]
    precision: String,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Temperature fallback on (Whisper's defaults) or off (temperature 0 only).
    #[arg(long, default_value = "on")]
    fallback: String,
    /// Encoder context: full (30 s, as faster-whisper) or auto (shortened).
    #[arg(long, default_value = "full")]
    audio_ctx: String,
    /// Clips per model call; above 1, per-clip times are the call's time shared out.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Model name under .cache/models.
    #[arg(long, default_value = "tiny.en")]
    model: String,
    // `cargo bench` passes `--bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn clips(manifest: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let base = manifest.parent().unwrap_or(Path::new("."));
    std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            let clip = v["clip"].as_str().context("manifest line without clip")?;
            Ok(base.join(clip))
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache");
    let mut cfg = Config { data_dir, ..Config::default() };
    cfg.model.name = args.model.clone();
    cfg.model.threads = args.threads;
    cfg.model.precision = args.precision.clone();
    cfg.model.audio_ctx = args.audio_ctx.clone();
    if args.fallback == "off" {
        cfg.model.decoding.temperatures = vec![0.0];
    }
    cfg.model.decoding.beam_size = args.beam;
    let engine = Engine::load(kiki::roles::engine_options(&cfg)).context("loading the model")?;
    let mut paths = Vec::new();
    for m in &args.manifest {
        paths.extend(clips(m)?);
    }
    let audio: Vec<Vec<f32>> = paths
        .iter()
        .map(|p| kiki::audio::read_wav(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())))
        .collect::<anyhow::Result<_>>()?;
    // One untimed call: ONNX Runtime's first-run set-up is not part of the figures.
    let warm: Vec<Request> =
        audio.iter().take(args.batch.max(1)).map(|a| Request { audio: a, ..Default::default() }).collect();
    engine.transcribe_requests(&warm)?;
    let started = Instant::now();
    let mut total_audio = 0.0;
    for (chunk, names) in audio.chunks(args.batch.max(1)).zip(paths.chunks(args.batch.max(1))) {
        let requests: Vec<Request> = chunk.iter().map(|a| Request { audio: a, ..Default::default() }).collect();
        let t = Instant::now();
        let out = engine.transcribe_requests(&requests)?;
        let wall = t.elapsed().as_secs_f64();
        let chunk_audio: f64 = chunk.iter().map(|a| a.len() as f64 / 16_000.0).sum();
        total_audio += chunk_audio;
        for ((a, p), r) in chunk.iter().zip(names).zip(out) {
            let audio_s = a.len() as f64 / 16_000.0;
            let line = serde_json::json!({
                "clip": p.display().to_string(),
                "text": r.text,
                "audio_s": audio_s,
                "wall_s": wall * audio_s / chunk_audio,
            });
            println!("{line}");
        }
    }
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "kiki {} beam {} {} threads {} batch {}: {:.1} s audio in {:.1} s = {:.2}x real time",
        args.model,
        args.beam,
        args.precision,
        args.threads,
        args.batch,
        total_audio,
        wall,
        total_audio / wall
    );
    Ok(())
}
