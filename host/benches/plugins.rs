//! Benchmark of the wasm plugin runtime with the real default segmenter (vad@0.2.1.wasm).
//!
//! 1. `push` of one 20 ms frame (320 samples at 16 kHz) through the host runtime: the boundary
//!    crossing, the fuel reset and the sandbox limits included (`SegmenterInstance::push`), median
//!    over `--calls` calls, each frame made just before its call as the gateway does (and once
//!    more with all frames made in advance, cold in cache); beside it, as the baseline, the same
//!    segmenter logic (`segmenter_vad::Vad`) called natively on the same frames. The audio
//!    alternates quiet noise and louder modulated tones, so cuts (partials and finals, default
//!    config) come out now and then as in a session.
//! 2. Instantiation per session (`SegmenterPlugin::open`: a pooled instance from the `InstancePre`
//!    plus the guest's `open`), median; once into fresh pool slots (while `--instances` are opened
//!    and kept live) and once into reused slots (open, then drop, repeated).
//! 3. Compile time per plugin: `SegmenterPlugin::load` for vad (compile + link), and
//!    `PluginRuntime::compile` for text and default (they are not segmenters), median of `--compiles`.
//! 4. Memory per live instance: VmRSS (kB, from /proc/self/status, the same counters as
//!    /proc/self/statm) before and after opening `--instances` live instances and pushing one frame
//!    into each, divided by their number; VmSize beside it (the pool's address-space reservation).
//! 5. Swap time: what the admin `swap_in` does before its atomic store, i.e. `SegmenterPlugin::load`
//!    + `self_test()` of a version; the store itself is an `ArcSwap` pointer swap.
//! 6. The host's speech probability for the segmenter (`gateway.speech_prob`): Silero VAD through
//!    ort on one thread, per 32 ms chunk of the same audio, median; as a share of one core per
//!    live session.
//! 7. The targets, met or not.
//!
//! Run: `cargo bench --bench plugins [-- --calls 20000 --instances 2000 --compiles 5]`.

use kiki::stats::{median, percentile as pct};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use kiki::inference::{SILERO_CHUNK, SileroState, SileroVad};
use kiki::plugins::{
    Limits, PluginRuntime, PostprocessorPlugin, SegmenterInstance, SegmenterPlugin, SessionOptions, Transcript,
    bindings_types::CutKind,
};
use segmenter_vad::{Vad, VadConfig};

const RATE: u32 = 16_000;
/// The default segmenter's release, as plugins/build.sh installs it (`vad@VERSION.wasm`).
/// The default segmenter's version, from its manifest.
/// A default plugin's version, from its manifest (so the bench follows a version bump).
fn version(krate: &str) -> String {
    let path = format!("{}/../plugins/{krate}/plugin.toml", env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table = std::fs::read_to_string(path).expect("the manifest").parse().expect("TOML");
    manifest["version"].as_str().expect("a version").to_string()
}

fn vad_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| version("segmenter-vad"))
}
const FRAME: usize = 320;
/// Pool slots: enough for the live-instance part plus the plugins loaded beside it.
const MAX_INSTANCES: u32 = 2100;
/// The targets.
const TARGET_PUSH_NS: f64 = 1000.0;
const TARGET_OPEN_US: f64 = 30.0;
const TARGET_RSS_KIB: f64 = 64.0;
const TARGET_LIVE: usize = 2000;

#[derive(Parser, Debug)]
#[command(about = "Benchmark of Kiki's wasm plugin runtime with the default segmenter")]
struct Args {
    /// Timed `push` calls (wasm and native each).
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Live instances opened at once (the memory and address-space part).
    #[arg(long, default_value_t = TARGET_LIVE)]
    instances: usize,
    /// Pool size (`Limits::max_instances`).
    #[arg(long, default_value_t = MAX_INSTANCES)]
    max_instances: u32,
    /// Timed compiles per plugin, and timed swaps.
    #[arg(long, default_value_t = 5)]
    compiles: usize,
    /// Folder with the built plugins; default: the repository's .cache/plugins.
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Another segmenter build (e.g. an earlier vad release) whose `push` is timed in the same
    /// run, interleaved with this tree's, as a baseline.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Deterministic test audio: 1 s of quiet noise, then 2 s of a louder tone with a syllable-rate
/// envelope over the noise, repeated.
fn audio(frames: usize) -> Vec<Vec<f32>> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let period = 3 * RATE as usize;
    (0..frames)
        .map(|f| {
            (0..FRAME)
                .map(|i| {
                    let n = f * FRAME + i;
                    let t = n as f32 / RATE as f32;
                    let bg = 0.003 * noise();
                    if n % period < RATE as usize {
                        bg
                    } else {
                        let env = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 4.0 * t).sin();
                        bg + 0.3 * env * (2.0 * std::f32::consts::PI * 180.0 * t).sin()
                    }
                })
                .collect()
        })
        .collect()
}

/// (VmSize, VmRSS) of this process in KiB.
fn vm() -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("{name} missing"))?;
        Ok(line.split_whitespace().nth(1).context("no value")?.parse()?)
    };
    Ok((field("VmSize:")?, field("VmRSS:")?))
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

struct Row {
    what: String,
    value: String,
    target: String,
    met: Option<bool>,
}

fn row(what: impl Into<String>, value: impl Into<String>) -> Row {
    Row { what: what.into(), value: value.into(), target: String::new(), met: None }
}

/// `push` of this tree's segmenter and of a baseline build, in alternating blocks of 1,000 frames
/// (so that both see the same machine load), medians side by side.
fn baseline_push(
    rt: &std::sync::Arc<PluginRuntime>,
    vad: &SegmenterPlugin,
    path: &std::path::Path,
    frames: &[Vec<f32>],
) -> anyhow::Result<Vec<Row>> {
    let label = path.file_stem().and_then(|s| s.to_str()).unwrap_or("baseline").to_string();
    let (name, version) = label.split_once('@').unwrap_or((&label, "0"));
    let base =
        SegmenterPlugin::load(rt, path, name, version, Default::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut a = vad.open(RATE, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut b = base.open(RATE, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    for block in frames.chunks(1000) {
        for (inst, out) in [(&mut a, &mut ours), (&mut b, &mut theirs)] {
            for f in block {
                let f = f.clone();
                let t = Instant::now();
                let cuts = inst.push(f, None);
                out.push(t.elapsed().as_nanos() as f64);
                cuts.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
    }
    let (m_ours, m_theirs) = (median(&mut ours), median(&mut theirs));
    Ok(vec![
        row(format!("push, interleaved with the baseline: {}", vad.label()), format!("{m_ours:.0} ns")),
        row(format!("push, interleaved: baseline {label}"), format!("{m_theirs:.0} ns ({:.2}x)", m_ours / m_theirs)),
    ])
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir =
        args.plugin_dir.clone().unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/plugins"));
    let vad_path = dir.join(format!("vad@{vad}.wasm", vad = vad_version()));
    let text_version = version("postprocessor-text");
    let text_path = dir.join(format!("text@{text_version}.wasm"));
    let default_path = dir.join("default@0.1.0.wasm");
    for p in [&vad_path, &text_path, &default_path] {
        if !p.exists() {
            bail!("{} missing: run plugins/build.sh (make setup does)", p.display());
        }
    }
    let (vm_start, rss_start) = vm()?;
    let limits = Limits { max_instances: args.max_instances, ..Limits::default() };
    println!(
        "limits: fuel_per_call {}, max_memory_bytes {} MiB, max_instances {}; pooling allocator",
        limits.fuel_per_call,
        limits.max_memory_bytes >> 20,
        limits.max_instances
    );
    let rt = PluginRuntime::new(limits).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (vm_rt, rss_rt) = vm()?;
    let vad = SegmenterPlugin::load(&rt, &vad_path, "vad", vad_version(), Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rows = Vec::new();

    // 1. push: wasm through the host runtime, and native.
    let frames = audio(args.calls);
    let warm = 1000.min(args.calls);
    let mut wasm_ns = Vec::with_capacity(args.calls);
    let mut cuts_wasm = 0usize;
    {
        let mut inst = vad.open(RATE, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
        for f in &frames[..warm] {
            inst.push(f.clone(), None).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut inst = vad.open(RATE, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Each frame is a fresh Vec made just before its call (untimed), as in the gateway,
        // where `AudioBuf::f32` makes it from the session's audio right before `push`.
        for f in &frames {
            let f = f.clone();
            let t = Instant::now();
            let cuts = inst.push(f, None);
            let dt = t.elapsed();
            cuts_wasm += cuts.map_err(|e| anyhow::anyhow!("{e}"))?.len();
            wasm_ns.push(dt.as_nanos() as f64);
        }
    }
    // The same with every frame made in advance: frames cold in cache (20,000 are 25 MB), a
    // harsher case than the gateway's.
    let mut cold_ns = Vec::with_capacity(args.calls);
    {
        let mut inst = vad.open(RATE, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
        let owned: Vec<Vec<f32>> = frames.clone();
        for f in owned {
            let t = Instant::now();
            let cuts = inst.push(f, None);
            cold_ns.push(t.elapsed().as_nanos() as f64);
            cuts.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let push_cold = median(&mut cold_ns);
    // The fixed cost of a call: an empty frame crosses the boundary but gives the logic no work.
    let mut empty_ns = Vec::with_capacity(args.calls);
    {
        let mut inst = vad.open(RATE, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
        for _ in 0..args.calls {
            let t = Instant::now();
            let cuts = inst.push(Vec::new(), None);
            let dt = t.elapsed();
            cuts.map_err(|e| anyhow::anyhow!("{e}"))?;
            empty_ns.push(dt.as_nanos() as f64);
        }
    }
    let push_empty = median(&mut empty_ns);
    let mut native_ns = Vec::with_capacity(args.calls);
    let mut cuts_native = 0usize;
    {
        let mut v = Vad::new(RATE, VadConfig::default()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for f in &frames[..warm] {
            black_box(v.push(f, None));
        }
        let mut v = Vad::new(RATE, VadConfig::default()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for f in &frames {
            let t = Instant::now();
            let cuts = v.push(black_box(f), None);
            let dt = t.elapsed();
            cuts_native += black_box(cuts).len();
            native_ns.push(dt.as_nanos() as f64);
        }
    }
    let mut timer_ns: Vec<f64> = (0..args.calls)
        .map(|_| {
            let t = Instant::now();
            t.elapsed().as_nanos() as f64
        })
        .collect();
    let timer = median(&mut timer_ns);
    if cuts_wasm != cuts_native {
        bail!("wasm and native segmenters disagree: {cuts_wasm} vs {cuts_native} cuts");
    }
    let push_wasm = median(&mut wasm_ns);
    let push_native = median(&mut native_ns);
    rows.push(Row {
        what: format!("push 20 ms frame, wasm via host (median of {})", args.calls),
        value: format!("{push_wasm:.0} ns (p90 {:.0}, p99 {:.0})", pct(&wasm_ns, 0.9), pct(&wasm_ns, 0.99)),
        target: format!("<= {TARGET_PUSH_NS:.0} ns"),
        met: Some(push_wasm <= TARGET_PUSH_NS),
    });
    rows.push(row(
        "push 20 ms frame, same logic native (baseline)",
        format!("{push_native:.0} ns (p90 {:.0}, p99 {:.0})", pct(&native_ns, 0.9), pct(&native_ns, 0.99)),
    ));
    rows.push(row(
        "  frames made in advance, cold in cache",
        format!("{push_cold:.0} ns (p90 {:.0}, p99 {:.0})", pct(&cold_ns, 0.9), pct(&cold_ns, 0.99)),
    ));
    rows.push(row("  of which fixed per call (push of an empty frame, wasm)", format!("{push_empty:.0} ns")));
    rows.push(row("  wasm / native", format!("{:.1}x (+{:.0} ns)", push_wasm / push_native, push_wasm - push_native)));
    rows.push(row("  cuts in the run (wasm = native)", format!("{cuts_wasm}")));
    rows.push(row("  timer overhead in each figure", format!("{timer:.0} ns")));
    if let Some(path) = &args.baseline {
        rows.extend(baseline_push(&rt, &vad, path, &frames)?);
    }

    // 6. Silero speech probability per 32 ms chunk.
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache");
    let silero = cache.join("silero_vad.onnx");
    if silero.exists() {
        let model =
            SileroVad::load(&silero, &cache.join("libonnxruntime.so"), 1).map_err(|e| anyhow::anyhow!("{e}"))?;
        let samples: Vec<f32> = frames.iter().flatten().copied().collect();
        let mut st = SileroState::default();
        let chunks: Vec<&[f32]> = samples.chunks_exact(SILERO_CHUNK).take(5000).collect();
        for c in chunks.iter().take(100) {
            model.prob(&mut st, c).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let mut ns: Vec<f64> = chunks
            .iter()
            .map(|c| {
                let t = Instant::now();
                black_box(model.prob(&mut st, c)).map(|_| t.elapsed().as_nanos() as f64)
            })
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let m = median(&mut ns);
        rows.push(row(
            format!("speech prob: Silero VAD per 32 ms chunk, ort 1 thread (median of {})", ns.len()),
            format!(
                "{:.0} us (p90 {:.0}); {:.2}% of a core per session",
                m / 1e3,
                pct(&ns, 0.9) / 1e3,
                m / 32e6 * 100.0
            ),
        ));
    } else {
        rows.push(row("speech prob: Silero VAD", format!("skipped: {} missing (make setup)", silero.display())));
    }

    // 2 + 4. Live instances: fresh-slot open time, memory and address space.
    let one = vad.open(RATE, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(one);
    let (vm_before, rss_before) = vm()?;
    let mut live: Vec<SegmenterInstance> = Vec::with_capacity(args.instances);
    let mut open_fresh_us = Vec::with_capacity(args.instances);
    let mut open_error = None;
    for i in 0..args.instances {
        let (inst, dt) = time(|| vad.open(RATE, &[]));
        match inst {
            Ok(mut inst) => {
                open_fresh_us.push(dt.as_secs_f64() * 1e6);
                inst.push(frames[i % frames.len()].clone(), None).map_err(|e| anyhow::anyhow!("{e}"))?;
                live.push(inst);
            }
            Err(e) => {
                open_error = Some(format!("open #{i} failed: {e}"));
                break;
            }
        }
    }
    let (vm_after, rss_after) = vm()?;
    let opened = live.len();
    let (_, drop_time) = time(|| drop(live));
    let per_inst_kib = (rss_after as f64 - rss_before as f64) / opened.max(1) as f64;
    let open_fresh = median(&mut open_fresh_us);

    // 2. Reused-slot open time (open, then drop, untimed).
    let reps = args.instances.max(100);
    let mut open_reused_us = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (inst, dt) = time(|| vad.open(RATE, &[]));
        let inst = inst.map_err(|e| anyhow::anyhow!("{e}"))?;
        open_reused_us.push(dt.as_secs_f64() * 1e6);
        drop(inst);
    }
    let open_reused = median(&mut open_reused_us);
    rows.push(Row {
        what: format!("open (instantiate + guest open), reused pool slot (median of {reps})"),
        value: format!("{open_reused:.1} us (p90 {:.1})", pct(&open_reused_us, 0.9)),
        target: format!("<= {TARGET_OPEN_US:.0} us"),
        met: Some(open_reused <= TARGET_OPEN_US),
    });
    rows.push(Row {
        what: format!("open, fresh pool slot (median of {opened})"),
        value: format!("{open_fresh:.1} us (p90 {:.1})", pct(&open_fresh_us, 0.9)),
        target: format!("<= {TARGET_OPEN_US:.0} us"),
        met: Some(open_fresh <= TARGET_OPEN_US),
    });

    // 3. Compile time per plugin.
    let mut compile = |label: &str, f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<()> {
        let mut ms = Vec::new();
        for _ in 0..args.compiles {
            let ((), dt) = {
                let t = Instant::now();
                f()?;
                ((), t.elapsed())
            };
            ms.push(dt.as_secs_f64() * 1e3);
        }
        let m = median(&mut ms);
        rows.push(row(
            format!("compile {label} (median of {})", args.compiles),
            format!("{m:.1} ms (min {:.1}, max {:.1})", ms[0], ms[ms.len() - 1]),
        ));
        Ok(())
    };
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len() / 1024).unwrap_or(0);
    compile(&format!("vad@{}, SegmenterPlugin::load, {} KiB", vad_version(), size(&vad_path)), &|| {
        SegmenterPlugin::load(&rt, &vad_path, "vad", vad_version(), Default::default())
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    compile(&format!("text@{text_version}, PluginRuntime::compile, {} KiB", size(&text_path)), &|| {
        rt.compile(&text_path).map(drop).map_err(|e| anyhow::anyhow!("{e}"))
    })?;
    compile(&format!("default@0.1.0, PluginRuntime::compile, {} KiB", size(&default_path)), &|| {
        rt.compile(&default_path).map(drop).map_err(|e| anyhow::anyhow!("{e}"))
    })?;

    // 6. A post-processor call on a final (fresh instance, as the worker runs it), with the
    // text plugin's ITN on and off in the same run: what ITN adds to each final.
    let text = PostprocessorPlugin::load(&rt, &text_path, "text", &text_version, Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let zh = "今天是二零二六年十二月八日,下午三点五十分,我们一共有三百五十个人参加了会议.";
    let en = "We met on the fifth of May at ten thirty a m and paid twenty five dollars each.";
    let (zh_long, en_long) = (zh.repeat(40), [en; 40].join(" "));
    // Long Chinese without a mark: the post-processor must cut it itself.
    let zh_unmarked = "他花了三百五十块钱".repeat(150);
    let finals =
        [("zh", zh), ("en", en), ("zh", zh_long.as_str()), ("en", en_long.as_str()), ("zh", zh_unmarked.as_str())];
    for (lang, sentence) in finals {
        for itn in ["false", "true"] {
            let transcript = Transcript {
                session_id: "bench".into(),
                segment_id: 0,
                kind: CutKind::Final,
                text: sentence.into(),
                start_ms: 0,
                end_ms: 5000,
                words: Vec::new(),
                language: lang.into(),
            };
            let options = SessionOptions {
                session_id: "bench".into(),
                language: Some(lang.into()),
                hotwords: Vec::new(),
                room: None,
                extra: vec![("itn".into(), itn.into())],
            };
            let mut ms = Vec::with_capacity(args.compiles);
            let (mut out, mut fuel) = (String::new(), 0);
            let bytes = sentence.len();
            let what = format!("text@{text_version} final, {lang} {bytes} B, itn={itn}");
            for _ in 0..args.compiles.max(5) {
                let t = Instant::now();
                match text.process_metered(&transcript, &options) {
                    Ok((o, f)) => (out, fuel) = (o.text, f),
                    Err(e) => out = format!("failed: {e}"),
                }
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let shown: String = out.chars().take(40).collect();
            rows.push(row(
                format!("{what} (median of {})", ms.len()),
                format!(
                    "{:.2} ms, fuel {:.1} M ({} per byte) -> {shown}",
                    median(&mut ms),
                    fuel as f64 / 1e6,
                    fuel / bytes as u64
                ),
            ));
        }
    }

    // 5. Swap: load + self_test of a version.
    let mut swap_ms = Vec::new();
    for _ in 0..args.compiles {
        let t = Instant::now();
        let p = SegmenterPlugin::load(&rt, &vad_path, "vad", vad_version(), Default::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        p.self_test().map_err(|e| anyhow::anyhow!("{e}"))?;
        swap_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut self_test_ms = Vec::new();
    for _ in 0..args.compiles {
        let t = Instant::now();
        vad.self_test().map_err(|e| anyhow::anyhow!("{e}"))?;
        self_test_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    rows.push(row(
        format!("swap: load + self_test vad@{} (median of {})", vad_version(), args.compiles),
        format!("{:.1} ms (of which self_test {:.2} ms)", median(&mut swap_ms), median(&mut self_test_ms)),
    ));

    let live_ok = open_error.is_none() && opened >= TARGET_LIVE;
    rows.push(Row {
        what: format!("RSS per live instance ({opened} live, one frame pushed into each)"),
        value: format!("{per_inst_kib:.1} KiB ({rss_before} -> {rss_after} KiB)"),
        target: format!("<= {TARGET_RSS_KIB:.0} KiB"),
        met: Some(per_inst_kib <= TARGET_RSS_KIB),
    });
    rows.push(Row {
        what: format!("live instances opened (asked {})", args.instances),
        value: match &open_error {
            None => format!("{opened}, all OK (dropping them took {:.1} ms)", drop_time.as_secs_f64() * 1e3),
            Some(_) => format!("{opened}, then the pool refused (see below)"),
        },
        target: format!(">= {TARGET_LIVE}"),
        met: Some(live_ok),
    });
    let gib = |kib: u64| kib as f64 / (1024.0 * 1024.0);
    rows.push(row(
        "VmSize: start / runtime / before live / with live",
        format!("{:.2} / {:.2} / {:.2} / {:.2} GiB", gib(vm_start), gib(vm_rt), gib(vm_before), gib(vm_after)),
    ));
    rows.push(row(
        "VmRSS: start / runtime / before live / with live",
        format!("{} / {} / {} / {} MiB", rss_start >> 10, rss_rt >> 10, rss_before >> 10, rss_after >> 10),
    ));

    let mut notes = Vec::new();
    if let Some(e) = &open_error {
        notes.push(e.clone());
    }
    let w0 = rows.iter().map(|r| r.what.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.value.len()).max().unwrap_or(0);
    println!();
    println!("{:<w0$}  {:<w1$}  {:<10}  met", "measure", "value", "target");
    println!("{}", "-".repeat(w0 + w1 + 19));
    for r in &rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        println!("{:<w0$}  {:<w1$}  {:<10}  {met}", r.what, r.value, r.target);
    }
    for n in &notes {
        println!("note: {n}");
    }
    println!();
    println!("targets (issue):");
    let yn = |b: bool| if b { "met" } else { "NOT met" };
    println!(
        "  push <= 1 us median incl. boundary crossing and limits: {} ({push_wasm:.0} ns)",
        yn(push_wasm <= 1000.0)
    );
    println!(
        "  instance <= 30 us pooled: {} (reused slot {open_reused:.1} us, fresh slot {open_fresh:.1} us)",
        yn(open_reused <= TARGET_OPEN_US)
    );
    println!("  RSS per live instance <= 64 KiB: {} ({per_inst_kib:.1} KiB)", yn(per_inst_kib <= TARGET_RSS_KIB));
    println!("  2,000 live instances OK: {} ({opened} opened, VmSize {:.1} GiB)", yn(live_ok), gib(vm_after));
    Ok(())
}
