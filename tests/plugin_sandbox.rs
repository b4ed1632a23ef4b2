//! Hostile plugins through the real host runtime: each is contained and reported, and the host
//! (and every other instance) carries on. The plugins are built by plugins/testing/build.sh.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use kiki::plugins::{CutKind, Limits, PluginError, PluginRuntime, SegmenterPlugin};

fn test_plugin(file: &str) -> PathBuf {
    let p = repo_root().join(".cache/test-plugins").join(file);
    assert!(p.exists(), "{} missing: run plugins/testing/build.sh (make test does)", p.display());
    p
}

fn runtime() -> Arc<PluginRuntime> {
    PluginRuntime::new(Limits { max_instances: 64, ..Limits::default() }).unwrap()
}

fn load(rt: &Arc<PluginRuntime>, file: &str) -> Arc<SegmenterPlugin> {
    SegmenterPlugin::load(rt, &test_plugin(file), file, "test", Default::default()).unwrap()
}

fn frame() -> Vec<f32> {
    (0..320).map(|i| (i as f32 * 0.3).sin() * 0.3).collect()
}

#[test]
fn an_endless_loop_runs_out_of_fuel_quickly() {
    let rt = runtime();
    let mut inst = load(&rt, "loop@0.1.0.wasm").open(16_000, &[]).unwrap();
    let t = Instant::now();
    let err = inst.push(frame(), None).unwrap_err();
    assert!(matches!(err, PluginError::OutOfFuel { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
}

#[test]
fn unbounded_allocation_hits_the_memory_limit_and_traps() {
    let rt = runtime();
    let mut inst = load(&rt, "alloc@0.1.0.wasm").open(16_000, &[]).unwrap();
    let err = inst.push(frame(), None).unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
}

#[test]
fn a_panic_fails_that_call_only_and_other_instances_carry_on() {
    let rt = runtime();
    let vad = default_vad(&rt);
    let mut neighbour = vad.open(16_000, &[]).unwrap();
    let plugin = load(&rt, "panic@0.1.0.wasm");
    let mut inst = plugin.open(16_000, &[]).unwrap();
    assert_eq!(inst.push(frame(), None).unwrap().len(), 1);
    assert_eq!(inst.push(frame(), None).unwrap().len(), 1);
    let err = inst.push(frame(), None).unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    // The trapped instance stays broken; a fresh one from the same version works.
    assert!(inst.push(frame(), None).is_err());
    let mut fresh = plugin.open(16_000, &[]).unwrap();
    assert_eq!(fresh.push(frame(), None).unwrap().len(), 1);
    // The neighbour never noticed.
    for _ in 0..10 {
        neighbour.push(frame(), None).unwrap();
    }
}

#[test]
fn output_past_the_stderr_cap_is_dropped_and_the_plugin_goes_on() {
    let rt = runtime();
    let plugin = load(&rt, "echo@0.1.0.wasm");
    // 40 kB to stderr on every call, more than twice what is kept per call (16 KiB).
    let options = [("chatter".to_string(), "40000".to_string()), ("every".to_string(), "320".to_string())];
    let mut inst = plugin.open(16_000, &options).unwrap();
    for _ in 0..3 {
        assert_eq!(inst.push(frame(), None).unwrap().len(), 1);
    }
}

#[test]
fn a_huge_output_list_is_refused_or_contained() {
    let rt = runtime();
    let plugin = load(&rt, "huge@0.1.0.wasm");
    // Under the memory limit the list arrives, and the host refuses it for its size.
    let mut inst = plugin.open(16_000, &[("count".into(), "200000".into())]).unwrap();
    let err = inst.push(frame(), None).unwrap_err();
    assert!(err.to_string().contains("limit is 1024"), "{err}");
    // Past the memory limit the plugin traps before the host sees anything.
    let mut inst = plugin.open(16_000, &[]).unwrap();
    assert!(matches!(inst.push(frame(), None).unwrap_err(), PluginError::Trap { .. }));
}

#[test]
fn a_plugin_of_the_wrong_world_is_rejected_at_load() {
    let rt = runtime();
    let err =
        SegmenterPlugin::load(&rt, &test_plugin("wrongworld@0.1.0.wasm"), "wrongworld", "0.1.0", Default::default())
            .err()
            .expect("a postprocessor is not a segmenter");
    assert!(matches!(err, PluginError::WrongWorld { .. }), "{err}");
    let err = SegmenterPlugin::load(&rt, &repo_root().join("Cargo.toml"), "x", "1", Default::default())
        .err()
        .expect("not wasm");
    assert!(matches!(err, PluginError::Load { .. }), "{err}");
}

#[test]
fn a_plugin_built_against_the_frozen_v0_1_0_contract_loads_and_runs() {
    let rt = runtime();
    let mut inst = load(&rt, "oldabi@0.1.0.wasm").open(16_000, &[]).unwrap();
    let mut cuts = Vec::new();
    for _ in 0..50 {
        cuts.extend(inst.push(frame(), None).unwrap());
    }
    assert_eq!(cuts.len(), 2, "{cuts:?}");
    assert!(cuts.iter().all(|c| c.kind == CutKind::Final && c.end - c.start == 8000));
}

#[test]
fn bad_config_is_a_clear_error_at_open() {
    let rt = runtime();
    let err = default_vad(&rt).open(16_000, &[("partial_ms".into(), "-1".into())]).err().expect("invalid config");
    assert!(err.to_string().contains("partial_ms"), "{err}");
}

#[test]
fn kiki_plugin_check_reports_what_a_component_is() {
    let run = |file: PathBuf| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiki"))
            .args(["plugin", "check"])
            .arg(file)
            .env("KIKI_LOG", "warn")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = run(repo_root().join(format!(".cache/plugins/vad@{vad}.wasm", vad = vad_version())));
    assert!(ok && out.contains("segmenter world") && out.contains("self-test"), "{out}");
    let (ok, out) = run(repo_root().join(format!(".cache/plugins/text@{text}.wasm", text = text_version())));
    assert!(ok && out.contains("postprocessor world") && out.contains("Stella"), "{out}");
    let (ok, out) = run(repo_root().join(".cache/plugins/default@0.1.0.wasm"));
    assert!(ok && out.contains("router world") && out.contains("Session(\"listener\")"), "{out}");
    let (ok, out) = run(test_plugin("loop@0.1.0.wasm"));
    assert!(!ok && out.contains("FAIL self-test") && out.contains("fuel"), "{out}");
    let (ok, out) = run(repo_root().join("Cargo.toml"));
    assert!(!ok && out.contains("FAIL compile"), "{out}");
}

/// A plugin in a second language: the Python example (componentize-py, CPython inside, 14 core
/// instances) passes the same check under the same sandbox limits.
#[test]
fn a_python_plugin_passes_the_check() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kiki"))
        .args(["plugin", "check"])
        .arg(test_plugin("python/shout@0.1.0.wasm"))
        .env("KIKI_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("postprocessor world") && text.contains("TWENTY FIVE PEOPLE MET STELA"), "{text}");
}

/// The gateway calls plugins from async tasks. A plugin that writes to stderr there (Rust's
/// panic handler does) must fail only its own call: wasmtime-wasi's blocking stream calls would
/// otherwise start a nested runtime and panic the calling task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_an_async_task_fails_that_call_only() {
    let rt = runtime();
    let plugin = load(&rt, "panic@0.1.0.wasm");
    let mut inst = plugin.open(16_000, &[]).unwrap();
    assert!(inst.push(frame(), None).unwrap().len() <= 1);
    let err = tokio::spawn(async move {
        let mut failed = None;
        for _ in 0..10 {
            if let Err(e) = inst.push(frame(), None) {
                failed = Some(e);
                break;
            }
        }
        failed
    })
    .await
    .expect("the task survives the plugin's panic");
    assert!(matches!(err, Some(PluginError::Trap { .. })), "{err:?}");
    // And the runtime serves on.
    let mut vad = default_vad(&rt).open(16_000, &[]).unwrap();
    assert!(vad.push(frame(), None).is_ok());
}

/// A process holds as many live segmenters as its instance pool has slots; the next session is
/// told to retry (`busy`), not that the plugin failed for good.
#[test]
fn a_full_instance_pool_is_a_retryable_refusal() {
    let rt = PluginRuntime::new(Limits { max_instances: 2, ..Limits::default() }).unwrap();
    let vad = default_vad(&rt);
    let held: Vec<_> = (0..2).map(|_| vad.open(16_000, &[]).unwrap()).collect();
    let err = vad.open(16_000, &[]).err().expect("a third instance does not fit");
    assert!(matches!(err, PluginError::PoolFull { .. }), "{err}");
    drop(held);
    assert!(vad.open(16_000, &[]).is_ok(), "slots come back");
}
