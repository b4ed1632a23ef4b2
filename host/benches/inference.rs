//! Benchmark of the inference core: speed (real-time factor) and accuracy of Whisper tiny.en and
//! base (multilingual; the language is detected, as for a session that names none) on this
//! machine's CPU, for fp32 and int8 weights, three encoder contexts (the full 30 s window; the
//! segment with the configured floor, 10 s by default, as the engine runs; the segment with no
//! floor, `auto`), and batches of 1, 4 and 8 segments per `Engine::transcribe` call: one table
//! per model, in one run.
//!
//! 1. RTF table: segments of 2, 5, 10 and 30 s cut from espeak-ng speech (the 32 test sentences
//!    joined with short pauses). Batch k is k different segments of one length in one call;
//!    RTF = wall time / (k x segment seconds), the median of `--runs` runs. Batch 1 is measured
//!    on the four segments of batch 4, one call each, so that it does not rest on one segment's
//!    token count. Beside each cell: throughput versus batch 1 (RTF_b1 / RTF_bk) and, for the
//!    shortened contexts, the speed-up over full context (RTF_full / RTF, same batch). A context
//!    that comes out the same as another for a length (the floor at or above 10 s is the
//!    segment's own window; auto at 30 s is the full one) is not timed twice; batch 8 of 30 s at
//!    full context is skipped unless asked for, to keep the run short.
//! 2. Accuracy of each precision x context, one clip per segment, 8 segments per call, and how
//!    many outputs came back empty: WER over the 32 sentences in the synthetic set's voice
//!    (`kiki::tools::eval::WER_SET_VOICE`, the one the test bounds) and in espeak-ng's default voice;
//!    for a multilingual model also CER over the 30 Mandarin sentences (language `zh`).
//! 3. The two targets, met or not: the first on int8 at the default (floored) context,
//!    the second at the default model settings (fp32, floored context), others beside them.
//!
//! The encoder and decoder run inside one `transcribe` call, so their shares are estimated: for
//! full context every length encodes the same 30 s window, so a least-squares line of wall time
//! against decoder steps (per precision and batch) gives the encoder as its intercept and the
//! cost of one decoder step as its slope.
//!
//! Run: `cargo bench --bench inference [-- --runs 3 --threads 0 --quick --models tiny.en,base]`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use kiki::config::Config;
use kiki::inference::{Engine, FULL_FRAMES, MelFrontEnd, Request, Transcript, frames_for};
use kiki::tools::eval::{DEFAULT_VOICE, WER_SET_VOICE, char_errors, word_errors};

const RATE: usize = 16_000;
/// Silence between sentences in the concatenated speech.
const GAP_MS: usize = 300;
const LENGTHS_S: [usize; 4] = [2, 5, 10, 30];
const BATCHES: [usize; 3] = [1, 4, 8];
/// Segments per call in the accuracy pass.
const ACCURACY_BATCH: usize = 8;
/// Segments that batch 1 is timed on (one call each).
const B1_SEGMENTS: usize = 4;
/// The targets.
const TARGET_RTF: f64 = 0.03;
const TARGET_BATCH_GAIN: f64 = 1.5;
const TARGET_GPU_BATCH_GAIN: f64 = 6.0;

#[derive(Parser, Debug)]
#[command(about = "Benchmark of Kiki's inference core: RTF and WER of tiny.en and base")]
struct Args {
    /// Decode with Whisper's temperature fallback (the engine's default) instead of plain greedy
    /// decoding. Off by default: a segment cut mid-word fails the log-prob check and is decoded
    /// again up to five times with `best_of` samples, which measures the fallback, not the model.
    #[arg(long)]
    fallback: bool,
    /// Models to measure, each in its own table (converted by the set-up step).
    #[arg(long, value_delimiter = ',', default_value = "tiny.en,base")]
    models: Vec<String>,
    /// Timed runs per cell; the table shows the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Execution provider: cpu, or cuda (with the GPU build of ONNX Runtime: `source .cache/gpu.env`
    /// after `make setup-gpu`, or `bash scripts/gpu-bench.sh`).
    #[arg(long, default_value = "cpu")]
    provider: String,
    /// Batch sizes to time (batch 1 is always timed: every ratio is against it).
    #[arg(long, value_delimiter = ',', default_values_t = BATCHES)]
    batches: Vec<usize>,
    /// Smoke run: one run, 2 and 5 s segments, batches 1, 8 and any above 8 in --batches,
    /// accuracy on 8 sentences.
    #[arg(long)]
    quick: bool,
    /// Also time batch 8 of 30 s segments at full context (skipped by default to keep the run short).
    #[arg(long)]
    with_30s_full_b8: bool,
    /// Folder with the set-up outputs (models, libonnxruntime.so); default: the repository's .cache.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Precision {
    Fp32,
    Int8,
}

impl Precision {
    fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

/// Encoder context: Whisper's 30 s window (`model.audio_ctx`'s default, for finals); shortened
/// to the segment but never below the floor partials use (`model.partial_audio_ctx`, default
/// 10 s); or shortened to the segment with no floor (`auto`, whisper.cpp's audio-ctx).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Context {
    Full,
    Floor,
    Auto,
}

impl Context {
    fn name(self) -> &'static str {
        match self {
            Context::Full => "full",
            Context::Floor => "floor",
            Context::Auto => "auto",
        }
    }

    /// The engine's `short_context` for this context.
    fn frames(self) -> Option<usize> {
        match self {
            Context::Full => None,
            Context::Floor => Some(default_floor()),
            Context::Auto => Some(0),
        }
    }
}

/// Mel frames of the default context floor of partials (`model.partial_audio_ctx`).
fn default_floor() -> usize {
    kiki::roles::engine_options(&Config::default()).partial_short_context.unwrap_or(FULL_FRAMES)
}

const VARIANTS: [(Precision, Context); 6] = [
    (Precision::Fp32, Context::Full),
    (Precision::Fp32, Context::Floor),
    (Precision::Fp32, Context::Auto),
    (Precision::Int8, Context::Full),
    (Precision::Int8, Context::Floor),
    (Precision::Int8, Context::Auto),
];

struct Variant {
    precision: Precision,
    context: Context,
    engine: Engine,
}

/// The test sentences as speech, alone and joined into one stream.
struct Speech {
    sentences: Vec<String>,
    clips: Vec<Vec<f32>>,
    stream: Vec<f32>,
    /// Where each sentence starts in `stream`.
    starts: Vec<usize>,
}

impl Speech {
    /// Segment `index` of `len` samples: from the start of a sentence spread over the set, wrapping
    /// around the end of the stream, so that the eight segments of one length all differ.
    fn segment(&self, index: usize, len: usize, spread: usize) -> Vec<f32> {
        let start = self.starts[(index * self.starts.len() / spread) % self.starts.len()];
        self.stream.iter().copied().cycle().skip(start).take(len).collect()
    }
}

/// One timed cell of the RTF table.
struct Cell {
    len_s: usize,
    precision: Precision,
    context: Context,
    batch: usize,
    /// Median wall time per `batch` segments.
    wall: Duration,
    /// Fastest run: the better guide when the machine is shared and busy.
    min_wall: Duration,
    rtf: f64,
    /// Decoder steps of the slowest row of the batch (for batch 1: mean over its calls).
    steps: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let runs = if args.quick { 1 } else { args.runs.max(1) };
    let lengths: &[usize] = if args.quick { &[2, 5] } else { &LENGTHS_S };
    // Quick: batches 1 and 8, and any larger ones asked for (the GPU target is at 16).
    let mut batches: Vec<usize> = if args.quick {
        args.batches.iter().copied().filter(|&b| b > 8).chain([8]).collect()
    } else {
        args.batches.clone()
    };
    batches.push(1);
    batches.sort_unstable();
    batches.dedup();
    let batches = &batches[..];
    let max_batch = batches.iter().copied().max().unwrap_or(1);

    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache"));
    let mut cfg = Config { data_dir, ..Config::default() };
    cfg.model.threads = args.threads;
    cfg.model.provider = args.provider.clone();
    print_machine(&cfg, &args, runs);

    let speech = synthesize(DEFAULT_VOICE)?;
    println!(
        "speech: {} espeak-ng en-us sentences, {:.1} s joined with {GAP_MS} ms pauses",
        speech.clips.len(),
        speech.stream.len() as f64 / RATE as f64
    );
    // Clips scored per accuracy set.
    let limit = if args.quick { ACCURACY_BATCH } else { usize::MAX };
    let sets = [
        AccuracySet::english("WER set (espeak-ng -s 150 -g 4)", &synthesize(WER_SET_VOICE)?, limit),
        AccuracySet::english("espeak-ng default voice", &speech, limit),
    ];
    // Spoken only once a multilingual model is measured.
    let mut mandarin: Option<AccuracySet> = None;

    for model in &args.models {
        cfg.model.name = model.clone();
        if !cfg.model_dir().join("config.json").exists() {
            println!("\n== {model}: skipped, {} not converted (make setup) ==", cfg.model_dir().display());
            continue;
        }
        println!("\n== {model} ==");
        let variants = load_variants(&cfg, model, args.fallback, &speech, max_batch)?;
        print_mel_cost(lengths);
        let cells = rtf_table(&args, &speech, &variants, lengths, batches, runs)?;
        for set in &sets {
            accuracy(set, &variants)?;
        }
        if variants.first().is_some_and(|v| v.engine.multilingual()) {
            let set = match mandarin.take() {
                Some(set) => set,
                None => AccuracySet::mandarin(limit)?,
            };
            accuracy(&set, &variants)?;
            mandarin = Some(set);
        }
        summary(model, &cells, lengths, batches, &args.provider);
    }
    println!("\ntotal wall time: {:.1} s", started.elapsed().as_secs_f64());
    println!("load average at end: {}", load_average());
    Ok(())
}

/// The six precision x context engines of `model`, each warmed up by one call.
fn load_variants(
    cfg: &Config,
    model: &str,
    fallback: bool,
    speech: &Speech,
    max_batch: usize,
) -> anyhow::Result<Vec<Variant>> {
    let mut variants = Vec::new();
    for (precision, context) in VARIANTS {
        let mut opts = kiki::roles::engine_options(cfg);
        if !fallback {
            opts.decoding.temperatures = vec![0.0];
        }
        opts.precision = precision.name().into();
        opts.short_context = context.frames();
        let t = Instant::now();
        let engine = Engine::load(opts).with_context(|| format!("loading {model} {}", precision.name()))?;
        // One untimed call so that ONNX Runtime's first-run set-up is not in the table.
        let warm = speech.segment(0, 5 * RATE, max_batch);
        engine.transcribe(&[&warm])?;
        println!(
            "loaded {model} {} {} context in {:.2} s (with one warm-up call)",
            precision.name(),
            context.name(),
            t.elapsed().as_secs_f64()
        );
        variants.push(Variant { precision, context, engine });
    }
    Ok(variants)
}

fn print_machine(cfg: &Config, args: &Args, runs: usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let lib = std::fs::canonicalize(cfg.ort_library()).unwrap_or_else(|_| cfg.ort_library());
    let threads = if args.threads == 0 { "ONNX Runtime default".to_string() } else { args.threads.to_string() };
    println!("== Kiki inference benchmark: {} on {} ==", args.models.join(", "), args.provider.to_uppercase());
    println!("machine: {cpu}, nproc {nproc}; load average at start: {}", load_average());
    println!("onnx runtime: {}; intra-op threads: {threads}", lib.display());
    let search = if args.fallback { "greedy with temperature fallback" } else { "greedy, no fallback" };
    println!("decoding: {search}, beam 1");
    println!("models under: {}; timed runs per cell: {runs} (median shown)", cfg.data_dir.join("models").display());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Speech for every sentence of tests/data/sentences.txt, in espeak-ng's `voice`.
fn synthesize(voice: &[&str]) -> anyhow::Result<Speech> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/sentences.txt");
    let sentences: Vec<String> = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let dir = tempfile::tempdir()?;
    let mut clips = Vec::with_capacity(sentences.len());
    let (mut stream, mut starts) = (Vec::new(), Vec::new());
    for (i, text) in sentences.iter().enumerate() {
        let clip = speak(dir.path(), i, text, voice)?;
        starts.push(stream.len());
        stream.extend_from_slice(&clip);
        stream.extend(std::iter::repeat_n(0.0, RATE / 1000 * GAP_MS));
        clips.push(clip);
    }
    Ok(Speech { sentences, clips, stream, starts })
}

fn speak(dir: &Path, index: usize, text: &str, voice: &[&str]) -> anyhow::Result<Vec<f32>> {
    let path = dir.join(format!("s{index}.wav"));
    let status = std::process::Command::new("espeak-ng")
        .args(voice)
        .arg("-w")
        .arg(&path)
        .arg(text)
        .status()
        .context("running espeak-ng")?;
    if !status.success() {
        bail!("espeak-ng failed on {text:?}");
    }
    Ok(kiki::audio::read_wav(&path)?)
}

/// The log-mel front end runs inside `transcribe`; its share, timed on its own.
fn print_mel_cost(lengths: &[usize]) {
    let mel = MelFrontEnd::new();
    let audio = vec![0.01f32; 30 * RATE];
    let time = |frames: usize| {
        let t = Instant::now();
        std::hint::black_box(mel.compute(&audio, frames));
        t.elapsed().as_secs_f64() * 1000.0
    };
    let short: Vec<String> = lengths.iter().map(|&l| format!("{l} s: {:.1} ms", time(frames_for(l * RATE)))).collect();
    println!(
        "log-mel front end per segment (one thread): full 30 s window {:.1} ms; short context {}",
        time(FULL_FRAMES),
        short.join(", ")
    );
}

/// Decoder steps a batch took: its slowest row that kept its text (tokens plus end-of-text).
/// A row emptied by the repetition guard is not counted: the decoder stops a loop after a few
/// repeats, and how many tokens that took is not in the result.
fn steps(out: &[Transcript]) -> usize {
    out.iter().filter(|t| !t.text.is_empty()).map(|t| t.tokens.len() + 1).max().unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    kiki::stats::median(&mut v)
}

fn rtf_table(
    args: &Args,
    speech: &Speech,
    variants: &[Variant],
    lengths: &[usize],
    batches: &[usize],
    runs: usize,
) -> anyhow::Result<Vec<Cell>> {
    let max_batch = batches.iter().copied().max().unwrap_or(1).max(B1_SEGMENTS);
    let skip = |len: usize, ctx: Context, batch: usize| match ctx {
        // At or above the floor the floored window is the segment's own: the same as auto.
        Context::Floor => frames_for(len * RATE) >= default_floor(),
        Context::Auto => frames_for(len * RATE) >= FULL_FRAMES,
        Context::Full => !args.with_30s_full_b8 && len == 30 && batch >= 8,
    };
    // Runs are interleaved (run 1 of every cell, then run 2, ...) so that a burst of load from
    // elsewhere on the machine spreads over cells instead of spoiling one.
    struct Slot {
        len_s: usize,
        variant: usize,
        batch: usize,
        walls: Vec<f64>,
        steps: f64,
    }
    let mut slots = Vec::new();
    for &len_s in lengths {
        for (vi, v) in variants.iter().enumerate() {
            for &batch in batches {
                if !skip(len_s, v.context, batch) {
                    slots.push(Slot { len_s, variant: vi, batch, walls: Vec::new(), steps: 0.0 });
                }
            }
        }
    }
    let segments: Vec<Vec<Vec<f32>>> =
        lengths.iter().map(|&l| (0..max_batch).map(|i| speech.segment(i, l * RATE, max_batch)).collect()).collect();
    // One untimed call per cell first, so that ONNX Runtime's first call at a new input shape
    // (batch size, short-context length) is not in a run.
    for slot in &slots {
        let li = lengths.iter().position(|&l| l == slot.len_s).unwrap_or(0);
        let segs: Vec<&[f32]> = segments[li][..slot.batch].iter().map(Vec::as_slice).collect();
        variants[slot.variant].engine.transcribe(&segs)?;
    }
    println!("\ntiming {} cells x {runs} run(s) ...", slots.len());
    for run in 0..runs {
        let t = Instant::now();
        for slot in &mut slots {
            let li = lengths.iter().position(|&l| l == slot.len_s).unwrap_or(0);
            let engine = &variants[slot.variant].engine;
            let segs: Vec<&[f32]> = segments[li].iter().map(Vec::as_slice).collect();
            // Batch k: segments 0..k in one call. Batch 1: segments 0..B1_SEGMENTS, one call
            // each, wall time per segment.
            let calls: Vec<&[&[f32]]> =
                if slot.batch == 1 { segs[..B1_SEGMENTS].chunks(1).collect() } else { vec![&segs[..slot.batch]] };
            let mut wall = 0.0;
            let mut total_steps = 0;
            for call in &calls {
                let t = Instant::now();
                let out = engine.transcribe(call)?;
                wall += t.elapsed().as_secs_f64();
                total_steps += steps(&out);
            }
            slot.walls.push(wall / calls.len() as f64);
            slot.steps = total_steps as f64 / calls.len() as f64;
        }
        println!("  run {}/{runs}: {:.1} s, load average {}", run + 1, t.elapsed().as_secs_f64(), load_average());
    }
    let cells: Vec<Cell> = slots
        .into_iter()
        .map(|s| {
            let v = &variants[s.variant];
            let min_wall = s.walls.iter().copied().fold(f64::INFINITY, f64::min);
            let wall = median(s.walls);
            Cell {
                len_s: s.len_s,
                precision: v.precision,
                context: v.context,
                batch: s.batch,
                wall: Duration::from_secs_f64(wall),
                min_wall: Duration::from_secs_f64(min_wall),
                rtf: wall / (s.batch * s.len_s) as f64,
                steps: s.steps,
            }
        })
        .collect();
    print_rtf_table(&cells, lengths, batches, runs);
    if lengths.iter().any(|&l| frames_for(l * RATE) >= FULL_FRAMES) {
        println!("   not timed: auto context on 30 s segments (its window is the full 3000 frames: same as full)");
        if !args.with_30s_full_b8 && batches.iter().any(|&b| b >= 8) {
            println!(
                "   skipped: batches of 8 and more of 30 s segments at full context, to keep the run short (--with-30s-full-b8)"
            );
        }
    }
    Ok(cells)
}

fn find(cells: &[Cell], len_s: usize, p: Precision, c: Context, batch: usize) -> Option<&Cell> {
    cells.iter().find(|x| x.len_s == len_s && x.precision == p && x.context == c && x.batch == batch)
}

/// Least-squares line wall = encoder + step * steps over the full-context cells of one precision
/// and batch: every length encodes the same 30 s window, so only the decoder steps differ.
fn decoder_fit(cells: &[Cell], p: Precision, batch: usize) -> Option<(f64, f64)> {
    let pts: Vec<(f64, f64)> = cells
        .iter()
        .filter(|c| c.precision == p && c.context == Context::Full && c.batch == batch)
        .map(|c| (c.steps, c.wall.as_secs_f64()))
        .collect();
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if pts.len() < 2 || sxx < 1.0 {
        return None;
    }
    let slope = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
    // Load from elsewhere can bend the line past sense; report nothing rather than a negative cost.
    let intercept = my - slope * mx;
    (slope > 0.0 && intercept > 0.0).then_some((intercept, slope))
}

fn print_rtf_table(cells: &[Cell], lengths: &[usize], batches: &[usize], runs: usize) {
    println!("\n1. Real-time factor (median of {runs} run(s); lower is faster)");
    println!("   wall s = median wall time per call, min s = fastest run");
    println!("   RTF = wall / (batch x segment seconds); x b1 = RTF_b1 / RTF_bk (throughput gain of batching);");
    println!(
        "   ctx: full = 30 s window; floor = the segment, at least {:.0} s (model.partial_audio_ctx, the partials' default); auto = the segment",
        default_floor() as f64 / 100.0
    );
    println!("   x full = RTF_full / RTF at the same batch; steps = decoder steps of the slowest row;");
    println!("   enc% = estimated encoder share of the wall time, full context only (see the fit below the table)");
    println!(
        "\n   {:>4}  {:4}  {:5}  {:>5}  {:>8}  {:>8}  {:>7}  {:>6}  {:>6}  {:>6}  {:>5}",
        "len", "prec", "ctx", "batch", "wall s", "min s", "RTF", "x b1", "x full", "steps", "enc%"
    );
    for &len in lengths {
        for (p, c) in VARIANTS {
            for &b in batches {
                let Some(cell) = find(cells, len, p, c, b) else { continue };
                let x_b1 = find(cells, len, p, c, 1).map(|b1| format!("{:.2}", b1.rtf / cell.rtf));
                let x_full = match c {
                    Context::Full => None,
                    _ => find(cells, len, p, Context::Full, b).map(|f| format!("{:.2}", f.rtf / cell.rtf)),
                };
                // The fit holds for the full window only: a decoder step reads the cross-attention
                // keys and values, whose size follows the context.
                let enc = decoder_fit(cells, p, b).filter(|_| c == Context::Full).map(|(_, step)| {
                    let wall = cell.wall.as_secs_f64();
                    format!("{:.0}", (100.0 * (wall - step * cell.steps) / wall).clamp(0.0, 100.0))
                });
                println!(
                    "   {:>3}s  {:4}  {:5}  {:>5}  {:>8.3}  {:>8.3}  {:>7.4}  {:>6}  {:>6}  {:>6.1}  {:>5}",
                    len,
                    p.name(),
                    c.name(),
                    b,
                    cell.wall.as_secs_f64(),
                    cell.min_wall.as_secs_f64(),
                    cell.rtf,
                    x_b1.unwrap_or_else(|| "-".into()),
                    x_full.unwrap_or_else(|| "-".into()),
                    cell.steps,
                    enc.unwrap_or_else(|| "-".into()),
                );
            }
        }
        println!();
    }
    println!("   encoder / decoder split (fit of wall = encoder + step x steps over the full-context lengths):");
    for p in [Precision::Fp32, Precision::Int8] {
        for &b in batches {
            if let Some((enc, step)) = decoder_fit(cells, p, b) {
                println!(
                    "     {} batch {b}: encoder ~ {:.3} s per call ({:.3} s per 30 s window), decoder ~ {:.1} ms per step",
                    p.name(),
                    enc,
                    enc / b as f64,
                    step * 1000.0
                );
            }
        }
    }
}

/// Clips with reference texts, scored by word (English) or character (Mandarin) error rate.
struct AccuracySet {
    name: &'static str,
    references: Vec<String>,
    clips: Vec<Vec<f32>>,
    /// Language asked for (`None`: the engine's default or detection).
    language: Option<&'static str>,
    /// Character error rate instead of word error rate.
    cer: bool,
    /// Clips scored (the first `n`).
    n: usize,
}

impl AccuracySet {
    /// The sentences of `speech`, the first `limit` of them scored.
    fn english(name: &'static str, speech: &Speech, limit: usize) -> Self {
        let (references, clips) = (speech.sentences.clone(), speech.clips.clone());
        Self { name, n: clips.len().min(limit), references, clips, language: None, cer: false }
    }

    /// tests/data/mandarin.txt (hanzi|pinyin): espeak-ng reads the tone-numbered pinyin (its
    /// `cmn` voice reads hanzi as English letters on Debian's build); scored against the hanzi.
    fn mandarin(limit: usize) -> anyhow::Result<Self> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/mandarin.txt");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let lines: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('|')).collect();
        let dir = tempfile::tempdir()?;
        let clips = lines
            .iter()
            .enumerate()
            .map(|(i, (_, pinyin))| speak(dir.path(), i, pinyin, &["-v", "cmn-latn-pinyin"]))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let references = lines.iter().map(|(hanzi, _)| hanzi.to_string()).collect();
        Ok(Self {
            name: "Mandarin (espeak-ng pinyin voice, zh)",
            references,
            clips,
            language: Some("zh"),
            cer: true,
            n: lines.len().min(limit),
        })
    }
}

fn accuracy(set: &AccuracySet, variants: &[Variant]) -> anyhow::Result<()> {
    let n = set.n.min(set.clips.len());
    let audio_s: f64 = set.clips[..n].iter().map(|c| c.len() as f64 / RATE as f64).sum();
    let measure = if set.cer { "CER" } else { "WER" };
    println!(
        "2. Accuracy, {}: {n} clips ({audio_s:.1} s of speech), one per segment, {ACCURACY_BATCH} segments per call",
        set.name
    );
    if set.cer {
        println!("   CER = character edit distance / reference characters (letters and digits only)");
    } else {
        println!("   WER = word edit distance / reference words (lower-cased, punctuation stripped)");
    }
    println!(
        "\n   {:4}  {:5}  {:>6}  {:>7}  {:>7}  empty outputs (clip numbers)",
        "prec", "ctx", measure, "empty", "RTF"
    );
    for v in variants {
        let (mut errors, mut units, mut empty) = (0, 0, Vec::new());
        let t = Instant::now();
        for (ci, chunk) in set.clips[..n].chunks(ACCURACY_BATCH).enumerate() {
            let requests: Vec<Request> =
                chunk.iter().map(|a| Request { audio: a, language: set.language, ..Default::default() }).collect();
            let out = v.engine.transcribe_requests(&requests)?;
            for (i, t) in out.iter().enumerate() {
                let index = ci * ACCURACY_BATCH + i;
                let reference = &set.references[index];
                let (e, u) = if set.cer { char_errors(reference, &t.text) } else { word_errors(reference, &t.text) };
                errors += e;
                units += u;
                if t.text.trim().is_empty() {
                    empty.push(index + 1);
                }
            }
        }
        let rtf = t.elapsed().as_secs_f64() / audio_s;
        println!(
            "   {:4}  {:5}  {:>6.3}  {:>3}/{:<3}  {:>7.4}  {:?}",
            v.precision.name(),
            v.context.name(),
            errors as f64 / units.max(1) as f64,
            empty.len(),
            n,
            rtf,
            empty
        );
    }
    println!();
    Ok(())
}

fn summary(model: &str, cells: &[Cell], lengths: &[usize], batches: &[usize], provider: &str) {
    println!("\n3. Targets ({model}; the issue sets them for tiny.en)");
    let verdict = |ok: bool| if ok { "MET" } else { "NOT MET" };
    if provider != "cpu" {
        // On a GPU the issue asks for batch 16 throughput >= 6x batch 1 (on an H100).
        let gain = |c: &Cell| find(cells, c.len_s, c.precision, c.context, 1).map(|b1| b1.rtf / c.rtf);
        for c in cells.iter().filter(|c| c.batch == 16 && c.len_s == 5) {
            if let Some(g) = gain(c) {
                println!(
                    "   {provider}: batch 16 throughput vs batch 1, {} {} 5 s: {g:.2}x (target >= {TARGET_GPU_BATCH_GAIN}x): {}",
                    c.precision.name(),
                    c.context.name(),
                    verdict(g >= TARGET_GPU_BATCH_GAIN)
                );
            }
        }
        return;
    }
    let rtf = |c: Context| find(cells, 5, Precision::Int8, c, 1).map(|c| c.rtf);
    match (rtf(Context::Floor), rtf(Context::Auto)) {
        (Some(floor), auto) => println!(
            "   {model} int8 shortened context (the default floor) RTF on 5 s segments: {floor:.4} (target <= {TARGET_RTF}): {}{}",
            verdict(floor <= TARGET_RTF),
            auto.map(|a| format!(" [auto context: {a:.4}]")).unwrap_or_default()
        ),
        _ => println!("   {model} int8 shortened context RTF on 5 s segments: not measured in this run"),
    }
    // The CPU target is for batch 8.
    let top = if batches.contains(&8) { 8 } else { batches.iter().copied().max().unwrap_or(1) };
    let gains: Vec<(&Cell, f64)> = cells
        .iter()
        .filter(|c| c.batch == top && top > 1)
        .filter_map(|c| find(cells, c.len_s, c.precision, c.context, 1).map(|b1| (c, b1.rtf / c.rtf)))
        .collect();
    let len = if lengths.contains(&5) { 5 } else { lengths[0] };
    let gain = |p: Precision| {
        gains.iter().find(|(c, _)| c.len_s == len && c.precision == p && c.context == Context::Floor).map(|x| x.1)
    };
    match (gain(Precision::Fp32), gain(Precision::Int8)) {
        (Some(g), int8) => {
            let lo = gains.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
            let hi = gains.iter().map(|x| x.1).fold(0.0, f64::max);
            let met = gains.iter().filter(|x| x.1 >= TARGET_BATCH_GAIN).count();
            println!(
                "   batch {top} throughput vs batch 1 on CPU at the default model settings (fp32, floor context, {len} s): \
                 {g:.2}x (target >= {TARGET_BATCH_GAIN}x): {}{}",
                verdict(g >= TARGET_BATCH_GAIN),
                int8.map(|i| format!(" [int8: {i:.2}x]")).unwrap_or_default(),
            );
            println!("     over all {} measured cells {lo:.2}x..{hi:.2}x, target met in {met}", gains.len());
        }
        _ => println!("   batch {top} throughput vs batch 1 on CPU: not measured in this run"),
    }
}
