//! Hostile test plugin `alloc@0.1.0`: a segmenter whose `push` allocates without bound.
//!
//! `open` and `flush` behave. `push` appends 1 MiB chunks, each filled with a non-zero byte
//! (so every page is really written), to a vector kept in the session, forever.
//! Expected host outcome: linear memory reaches the host's limit, `memory.grow` fails, Rust's
//! allocator reports "memory allocation of 1048576 bytes failed" on stderr and aborts, which
//! is a wasm trap (`unreachable`). Without a memory limit it would stop at the 4 GiB wasm32
//! ceiling or when fuel runs out.

use kiki_plugin_sdk::{Config, Cut, Frame, PluginError, Segmenter, export_segmenter};

/// Bytes per chunk.
pub const CHUNK: usize = 1 << 20;

pub struct Hog {
    chunks: Vec<Vec<u8>>,
}

impl Segmenter for Hog {
    fn open(_sample_rate: u32, _config: &Config) -> Result<Self, PluginError> {
        Ok(Hog { chunks: Vec::new() })
    }

    fn push(&mut self, _frame: Frame) -> Vec<Cut> {
        loop {
            // A non-zero fill writes every byte (a zero fill could reuse fresh, untouched pages).
            let chunk = vec![(self.chunks.len() as u8) | 1; CHUNK];
            self.chunks.push(std::hint::black_box(chunk));
        }
    }

    fn flush(&mut self) -> Vec<Cut> {
        Vec::new()
    }
}

export_segmenter!(Hog);
