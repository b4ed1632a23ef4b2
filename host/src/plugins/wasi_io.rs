//! `wasi:io` streams and polls for plugins, without a Tokio runtime.
//!
//! wasmtime-wasi's synchronous bindings run every blocking stream call (`blocking-write-and-
//! flush`, a stream's `drop`, `pollable.block` ...) through `Handle::block_on` on the ambient
//! Tokio runtime. Kiki calls plugins from async tasks (a gateway session pushes each frame
//! inline), where `block_on` panics: a plugin that wrote one line to stderr, as Rust's panic
//! handler does, took the calling task down with it. A plugin's only streams are in-memory
//! (stderr/stdout into a buffer, an empty stdin), whose futures are ready at once, so these
//! implementations poll them once instead; one that would block fails the call as an error.

use std::future::Future;

use futures_util::FutureExt;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynPollable, StreamError, StreamResult};
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    Host as AsyncHost, HostInputStream as AsyncInput, HostOutputStream as AsyncOutput,
};

/// The plugin's resource table, seen through these implementations.
pub struct SyncIo<'a>(pub &'a mut ResourceTable);

/// Marker for `add_to_linker`.
pub struct SyncIoData;

impl HasData for SyncIoData {
    type Data<'a> = SyncIo<'a>;
}

/// Adds these over wasmtime-wasi's (the linker must allow shadowing).
pub fn add_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    table: fn(&mut T) -> SyncIo<'_>,
) -> wasmtime::Result<()> {
    streams::add_to_linker::<T, SyncIoData>(linker, table)?;
    poll::add_to_linker::<T, SyncIoData>(linker, table)
}

/// The value of a future that is ready at once; an error if it would block.
fn now<T>(f: impl Future<Output = T>) -> Option<T> {
    f.now_or_never()
}

fn would_block() -> StreamError {
    StreamError::Trap(wasmtime::Error::msg("a plugin stream would block; plugins get in-memory streams only"))
}

impl streams::Host for SyncIo<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        Ok(match AsyncHost::convert_stream_error(self.0, err)? {
            wasmtime_wasi_io::bindings::wasi::io::streams::StreamError::LastOperationFailed(e) => {
                streams::StreamError::LastOperationFailed(e)
            }
            wasmtime_wasi_io::bindings::wasi::io::streams::StreamError::Closed => streams::StreamError::Closed,
        })
    }
}

type Out = streams::OutputStream;
type In = streams::InputStream;

impl streams::HostOutputStream for SyncIo<'_> {
    fn drop(&mut self, s: Resource<Out>) -> wasmtime::Result<()> {
        now(AsyncOutput::drop(self.0, s)).unwrap_or(Ok(()))
    }
    fn check_write(&mut self, s: Resource<Out>) -> StreamResult<u64> {
        AsyncOutput::check_write(self.0, s)
    }
    fn write(&mut self, s: Resource<Out>, bytes: Vec<u8>) -> StreamResult<()> {
        AsyncOutput::write(self.0, s, bytes)
    }
    fn blocking_write_and_flush(&mut self, s: Resource<Out>, bytes: Vec<u8>) -> StreamResult<()> {
        now(AsyncOutput::blocking_write_and_flush(self.0, s, bytes)).unwrap_or_else(|| Err(would_block()))
    }
    fn blocking_write_zeroes_and_flush(&mut self, s: Resource<Out>, len: u64) -> StreamResult<()> {
        now(AsyncOutput::blocking_write_zeroes_and_flush(self.0, s, len)).unwrap_or_else(|| Err(would_block()))
    }
    fn subscribe(&mut self, s: Resource<Out>) -> wasmtime::Result<Resource<DynPollable>> {
        AsyncOutput::subscribe(self.0, s)
    }
    fn write_zeroes(&mut self, s: Resource<Out>, len: u64) -> StreamResult<()> {
        AsyncOutput::write_zeroes(self.0, s, len)
    }
    fn flush(&mut self, s: Resource<Out>) -> StreamResult<()> {
        AsyncOutput::flush(self.0, s)
    }
    fn blocking_flush(&mut self, s: Resource<Out>) -> StreamResult<()> {
        now(AsyncOutput::blocking_flush(self.0, s)).unwrap_or_else(|| Err(would_block()))
    }
    fn splice(&mut self, dst: Resource<Out>, src: Resource<In>, len: u64) -> StreamResult<u64> {
        AsyncOutput::splice(self.0, dst, src, len)
    }
    fn blocking_splice(&mut self, dst: Resource<Out>, src: Resource<In>, len: u64) -> StreamResult<u64> {
        now(AsyncOutput::blocking_splice(self.0, dst, src, len)).unwrap_or_else(|| Err(would_block()))
    }
}

impl streams::HostInputStream for SyncIo<'_> {
    fn drop(&mut self, s: Resource<In>) -> wasmtime::Result<()> {
        now(AsyncInput::drop(self.0, s)).unwrap_or(Ok(()))
    }
    fn read(&mut self, s: Resource<In>, len: u64) -> StreamResult<Vec<u8>> {
        AsyncInput::read(self.0, s, len)
    }
    fn blocking_read(&mut self, s: Resource<In>, len: u64) -> StreamResult<Vec<u8>> {
        now(AsyncInput::blocking_read(self.0, s, len)).unwrap_or_else(|| Err(would_block()))
    }
    fn skip(&mut self, s: Resource<In>, len: u64) -> StreamResult<u64> {
        AsyncInput::skip(self.0, s, len)
    }
    fn blocking_skip(&mut self, s: Resource<In>, len: u64) -> StreamResult<u64> {
        now(AsyncInput::blocking_skip(self.0, s, len)).unwrap_or_else(|| Err(would_block()))
    }
    fn subscribe(&mut self, s: Resource<In>) -> wasmtime::Result<Resource<DynPollable>> {
        AsyncInput::subscribe(self.0, s)
    }
}

impl poll::Host for SyncIo<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        now(async_poll::Host::poll(self.0, pollables))
            .unwrap_or_else(|| Err(wasmtime::Error::msg("a plugin waited on something that never becomes ready")))
    }
}

impl poll::HostPollable for SyncIo<'_> {
    fn ready(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<bool> {
        now(async_poll::HostPollable::ready(self.0, p)).unwrap_or(Ok(false))
    }
    fn block(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<()> {
        now(async_poll::HostPollable::block(self.0, p))
            .unwrap_or_else(|| Err(wasmtime::Error::msg("a plugin blocked on something that never becomes ready")))
    }
    fn drop(&mut self, p: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.0, p)
    }
}
