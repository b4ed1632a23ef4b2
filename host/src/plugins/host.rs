//! What a plugin instance may touch: the `host` imports (log, clock, config) and an empty WASI
//! context (Rust's std on wasip2 imports `wasi:cli`/`wasi:io` even when it does no I/O).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::segmenter::kiki::plugin::{host, types};
use super::log_pipe::LogPipe;

/// Per-instance state held in the wasmtime `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: StoreLimits,
    /// Plugin name@version, for log lines.
    pub label: Arc<str>,
    pub config: Arc<HashMap<String, String>>,
    started: Instant,
    stderr: LogPipe,
}

/// Stderr and stdout kept per call (drained into the log after each); past it, dropped.
const STDERR_CAP: usize = 16 * 1024;

impl HostState {
    pub fn new(label: Arc<str>, config: Arc<HashMap<String, String>>, limits: StoreLimits) -> Self {
        let stderr = LogPipe::new(STDERR_CAP);
        // Grants nothing: no preopened dirs, no env, no args, no sockets, no stdin.
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).stdout(stderr.clone()).build();
        Self { wasi, table: ResourceTable::new(), limits, label, config, started: Instant::now(), stderr }
    }

    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Moves what the plugin wrote to stderr (or stdout) into the log.
    pub fn drain_stderr(&mut self) {
        let Some(out) = self.stderr.take() else { return };
        for line in String::from_utf8_lossy(&out.bytes).lines() {
            tracing::warn!(plugin = %self.label, "stderr: {line}");
        }
        if out.dropped > 0 {
            tracing::warn!(plugin = %self.label, "stderr: {} more bytes dropped (at most {STDERR_CAP} per call)", out.dropped);
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let label = &self.label;
        // Plugins cannot flood the log with one giant line.
        let message: String = message.chars().take(1024).collect();
        match level {
            host::Level::Trace => tracing::trace!(plugin = %label, "{message}"),
            host::Level::Debug => tracing::debug!(plugin = %label, "{message}"),
            host::Level::Info => tracing::info!(plugin = %label, "{message}"),
            host::Level::Warn => tracing::warn!(plugin = %label, "{message}"),
            host::Level::Error => tracing::error!(plugin = %label, "{message}"),
        }
    }

    fn now_ms(&mut self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

impl types::Host for HostState {}
