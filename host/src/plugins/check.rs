//! `kiki plugin check FILE.wasm`: which world a component exports, whether it instantiates
//! within the limits, and what it does with built-in test input.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::manifest::Manifest;
use super::{PluginRuntime, PostprocessorPlugin, RouterPlugin, SegmenterPlugin};

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
    // A manifest beside the file is read by every load below; report it (or its absence) first.
    match Manifest::beside(path, &name, &version) {
        Ok(Some(m)) => lines.push(format!(
            "ok   manifest {}: a {:?} plugin, options: {}",
            path.with_extension("toml").display(),
            m.kind,
            if m.config.is_empty() {
                "none".to_string()
            } else {
                m.config.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        )),
        Ok(None) => lines.push(format!(
            "warning: no manifest {} (kind and options are not checked; see docs/plugins.md)",
            path.with_extension("toml").display()
        )),
        Err(e) => {
            lines.push(format!("FAIL manifest: {e}"));
            return Report { ok: false, lines };
        }
    }

    if let Ok(p) = SegmenterPlugin::load(runtime, path, &name, &version, empty()) {
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
    let (sample, _) = super::text::sample();
    if let Ok(p) = PostprocessorPlugin::load(runtime, path, &name, &version, empty()) {
        lines.push("ok   exports the postprocessor world (kiki:plugin/postprocessor@0.1.0)".into());
        return match p.self_test() {
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
        return match p.self_test() {
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
