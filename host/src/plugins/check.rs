//! `kiki plugin check FILE.wasm`: which world a component exports, whether it instantiates
//! within the limits, and what it does with built-in test input.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::bindings_types::CutKind as WitCutKind;
use super::{PluginRuntime, PostprocessorPlugin, RouterPlugin, SegmenterPlugin, SessionOptions, Transcript};

/// The report, one line per finding; `ok` is false when the plugin is unusable.
pub struct Report {
    pub ok: bool,
    pub lines: Vec<String>,
}

pub fn check(runtime: &Arc<PluginRuntime>, path: &Path) -> Report {
    let mut lines = Vec::new();
    let (name, version) = super::registry::parse_file_name(path)
        .map(|f| (f.name, f.version))
        .unwrap_or_else(|| ("unnamed".into(), "0".into()));
    if super::registry::parse_file_name(path).is_none() {
        lines.push("warning: file name is not NAME@VERSION.wasm; the plugin directory will ignore it".into());
    }
    let t = Instant::now();
    if let Err(e) = runtime.compile(path) {
        lines.push(format!("FAIL compile: {e}"));
        return Report { ok: false, lines };
    }
    lines.push(format!("ok   compiles as a component ({:.1} ms)", t.elapsed().as_secs_f64() * 1e3));
    let empty = Default::default;

    if let Ok(p) = SegmenterPlugin::load(runtime, path, &name, &version) {
        lines.push("ok   exports the segmenter world (kiki:plugin/segmenter@0.1.0)".into());
        let t = Instant::now();
        return match p.self_test() {
            Ok(cuts) => {
                lines.push(format!(
                    "ok   self-test: 3.5 s of test audio (1 s silence, 1.5 s tone burst, 1 s silence) -> {cuts} cut(s) in {:.1} ms",
                    t.elapsed().as_secs_f64() * 1e3
                ));
                Report { ok: true, lines }
            }
            Err(e) => {
                lines.push(format!("FAIL self-test: {e}"));
                Report { ok: false, lines }
            }
        };
    }
    let sample = Transcript {
        session_id: "check".into(),
        segment_id: 0,
        kind: WitCutKind::Final,
        text: "twenty five people met stela at the store".into(),
        start_ms: 0,
        end_ms: 2500,
        words: Vec::new(),
        language: "en".into(),
    };
    let options = SessionOptions {
        session_id: "check".into(),
        language: Some("en".into()),
        hotwords: vec!["Stella".into()],
        room: Some("check-room".into()),
        extra: Vec::new(),
    };
    if let Ok(p) = PostprocessorPlugin::load(runtime, path, &name, &version, empty()) {
        lines.push("ok   exports the postprocessor world (kiki:plugin/postprocessor@0.1.0)".into());
        return match p.process(&sample, &options) {
            Ok(out) => {
                lines.push(format!("ok   process({:?}) -> {:?}", sample.text, out.text));
                Report { ok: true, lines }
            }
            Err(e) => {
                lines.push(format!("FAIL process: {e}"));
                Report { ok: false, lines }
            }
        };
    }
    if let Ok(p) = RouterPlugin::load(runtime, path, &name, &version, empty()) {
        lines.push("ok   exports the router world (kiki:plugin/router@0.1.0)".into());
        return match p.route(&sample, &options, 0, vec!["check".into(), "listener".into()]) {
            Ok(routes) => {
                lines.push(format!("ok   route(final, room of 2) -> {routes:?}"));
                Report { ok: true, lines }
            }
            Err(e) => {
                lines.push(format!("FAIL route: {e}"));
                Report { ok: false, lines }
            }
        };
    }
    lines.push(
        "FAIL exports none of the worlds segmenter-plugin, postprocessor-plugin, router-plugin \
         (or imports something the host does not offer: only kiki:plugin/host, wasi:cli and wasi:io are linked)"
            .into(),
    );
    Report { ok: false, lines }
}
