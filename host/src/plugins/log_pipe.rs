//! Where a plugin's stdout and stderr go: a capped buffer per instance, drained into the host
//! log after each call.
//!
//! wasmtime-wasi's `MemoryOutputPipe` would do, but learning that nothing was written (the
//! usual case) costs every call a lock and a copy of its buffer, about 25 ns of a sub-µs
//! `push`; and a write past its capacity traps the plugin. Here a flag says whether there is
//! anything to drain, and output past the cap is dropped and counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A plugin's output stream; clones share the buffer.
#[derive(Clone)]
pub struct LogPipe(Arc<Shared>);

struct Shared {
    /// Set by every write, cleared by `take`: the one thing a call without output reads.
    written: AtomicBool,
    cap: usize,
    buf: Mutex<Output>,
}

/// What a plugin wrote since the last [`LogPipe::take`].
#[derive(Debug, Default, PartialEq)]
pub struct Output {
    pub bytes: Vec<u8>,
    /// Bytes past the cap, not kept.
    pub dropped: usize,
}

impl LogPipe {
    /// Keeps up to `cap` bytes between two `take`s.
    pub fn new(cap: usize) -> Self {
        Self(Arc::new(Shared { written: AtomicBool::new(false), cap, buf: Mutex::default() }))
    }

    /// What was written since the last call, or `None` when nothing was.
    pub fn take(&self) -> Option<Output> {
        if !self.0.written.load(Ordering::Acquire) {
            return None;
        }
        let mut buf = self.lock();
        self.0.written.store(false, Ordering::Release);
        Some(std::mem::take(&mut *buf))
    }

    fn append(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut buf = self.lock();
        let room = self.0.cap.saturating_sub(buf.bytes.len()).min(bytes.len());
        buf.bytes.extend_from_slice(&bytes[..room]);
        buf.dropped += bytes.len() - room;
        self.0.written.store(true, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, Output> {
        // A panic while holding it leaves plain bytes behind: still fine to use.
        self.0.buf.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always room: what does not fit under the cap is dropped, not refused.
        Ok(self.0.cap.max(4096))
    }
}

impl AsyncWrite for LogPipe {
    fn poll_write(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_written_is_nothing_to_take() {
        let pipe = LogPipe::new(16);
        assert_eq!(pipe.take(), None);
        let mut writer = pipe.clone();
        writer.write(Bytes::new()).unwrap();
        assert_eq!(pipe.take(), None);
    }

    #[test]
    fn output_past_the_cap_is_dropped_and_counted() {
        let pipe = LogPipe::new(8);
        let mut writer = pipe.clone();
        writer.write(Bytes::from_static(b"hello ")).unwrap();
        writer.write(Bytes::from_static(b"world")).unwrap();
        assert!(writer.check_write().unwrap() > 0, "a full pipe still takes writes");
        assert_eq!(pipe.take(), Some(Output { bytes: b"hello wo".to_vec(), dropped: 3 }));
        // Taken: empty again, with room for the next call's output.
        assert_eq!(pipe.take(), None);
        writer.write(Bytes::from_static(b"next")).unwrap();
        assert_eq!(pipe.take(), Some(Output { bytes: b"next".to_vec(), dropped: 0 }));
    }
}
