//! What a plugin instance may touch: the `host` imports (log, clock, config) and an empty WASI
//! context (Rust's std on wasip2 imports `wasi:cli`/`wasi:io` even when it does no I/O).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::segmenter::kiki::plugin::{host, types};
use super::limits::{LOG_LINES_PER_CALL, LOG_LINES_PER_SECOND, STDIO_BYTES_PER_CALL};
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
    logs: LogBudget,
}

/// `host.log` lines an instance may write: per call, and per second across calls. Fuel bounds
/// the plugin's own instructions, not the host's work for it: a plugin logging in a loop once
/// made one `push` take 18 s and wrote 2 GB of log. Lines past the budget are counted and
/// reported in one line after the call.
struct LogBudget {
    this_call: u32,
    window_start: Instant,
    this_window: u32,
    dropped: u64,
}

impl LogBudget {
    fn new() -> Self {
        Self { this_call: 0, window_start: Instant::now(), this_window: 0, dropped: 0 }
    }

    /// Whether one more line may be written now.
    fn take(&mut self) -> bool {
        if self.window_start.elapsed().as_secs() >= 1 {
            self.window_start = Instant::now();
            self.this_window = 0;
        }
        if self.this_call >= LOG_LINES_PER_CALL || self.this_window >= LOG_LINES_PER_SECOND {
            self.dropped += 1;
            return false;
        }
        self.this_call += 1;
        self.this_window += 1;
        true
    }
}

impl HostState {
    pub fn new(label: Arc<str>, config: Arc<HashMap<String, String>>, limits: StoreLimits) -> Self {
        let stderr = LogPipe::new(STDIO_BYTES_PER_CALL);
        // Grants nothing: no preopened dirs, no env, no args, no sockets, no stdin.
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).stdout(stderr.clone()).build();
        let started = Instant::now();
        Self { wasi, table: ResourceTable::new(), limits, label, config, started, stderr, logs: LogBudget::new() }
    }

    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Moves what the plugin wrote to stderr (or stdout) into the log, and reports `host.log`
    /// lines dropped by the budget. Called after every plugin call: the per-call budget
    /// starts again.
    pub fn drain_stderr(&mut self) {
        self.logs.this_call = 0;
        if self.logs.dropped > 0 {
            let n = std::mem::take(&mut self.logs.dropped);
            tracing::warn!(
                plugin = %self.label,
                "{n} log line(s) dropped (at most {LOG_LINES_PER_CALL} per call, {LOG_LINES_PER_SECOND} a second)"
            );
        }
        let Some(out) = self.stderr.take() else { return };
        for line in String::from_utf8_lossy(&out.bytes).lines() {
            tracing::warn!(plugin = %self.label, "stderr: {line}");
        }
        if out.dropped > 0 {
            tracing::warn!(plugin = %self.label, "stderr: {} more bytes dropped (at most {STDIO_BYTES_PER_CALL} per call)", out.dropped);
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
        if !self.logs.take() {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_budgeted_per_call_and_per_second() {
        let mut b = LogBudget::new();
        let taken = (0..1_000).filter(|_| b.take()).count() as u32;
        assert_eq!(taken, LOG_LINES_PER_CALL);
        assert_eq!(b.dropped, u64::from(1_000 - LOG_LINES_PER_CALL));
        // Later calls in the same second share the per-second budget.
        let mut total = taken;
        for _ in 0..100 {
            b.this_call = 0;
            total += (0..1_000).filter(|_| b.take()).count() as u32;
        }
        assert_eq!(total, LOG_LINES_PER_SECOND);
        // A new second, a new budget.
        b.window_start -= std::time::Duration::from_secs(1);
        b.this_call = 0;
        assert!(b.take());
    }
}
