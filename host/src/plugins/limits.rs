//! Sandbox limits for every plugin instance, in one place with their reasons.

use wasmtime::{StoreLimits, StoreLimitsBuilder};

#[derive(Debug, Clone)]
pub struct Limits {
    /// Fuel granted per call: about one unit per wasm instruction, so a loop that never ends traps
    /// after roughly this many instructions instead of stalling a gateway thread.
    pub fuel_per_call: u64,
    /// Linear memory per instance. An allocation past it fails inside the plugin (it traps or
    /// returns an error); the host is untouched.
    pub max_memory_bytes: usize,
    /// Instances the pooling allocator keeps slots for (sessions per process).
    pub max_instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { fuel_per_call: 50_000_000, max_memory_bytes: 16 << 20, max_instances: 4096 }
    }
}

impl Limits {
    /// Per-instance counts: a Rust component on wasip2 holds 3 core instances, a Python one
    /// (componentize-py, CPython inside) 14; 16 admits both and still bounds what one plugin
    /// takes from the shared pool.
    pub fn store_limits(&self) -> StoreLimits {
        StoreLimitsBuilder::new()
            .memory_size(self.max_memory_bytes)
            .instances(16)
            .tables(8)
            .memories(4)
            .trap_on_grow_failure(false)
            .build()
    }
}
