//! Sandbox limits for every plugin instance, in one place with their reasons (the
//! configuration's defaults are these).

use wasmtime::{StoreLimits, StoreLimitsBuilder};

/// Default fuel per call (`plugins.fuel_per_call`): about one unit per wasm instruction.
pub const FUEL_PER_CALL: u64 = 50_000_000;
/// Fuel a post-processor or router call gets on top of that per byte of the transcript it is
/// given (text and words): rewriting text is linear work, and a transcript runs from a word to
/// an hour-long upload's (about 50 kB). The default `text` plugin's inverse text normalisation
/// spends 150,000 (Chinese) to 210,000 (English) per byte (`cargo bench --bench plugins`);
/// this allows five times that, so an hour's transcript may take 50 G, about a second.
pub const FUEL_PER_INPUT_BYTE: u64 = 1_000_000;
/// Default linear memory per instance (`plugins.max_memory_bytes`).
pub const MAX_MEMORY_BYTES: usize = 16 << 20;
/// Instance slots in the pooling allocator (sessions per process).
pub const MAX_INSTANCES: u32 = 4096;
/// `host.log` lines per plugin call, and per second per instance; past either, dropped and
/// counted (a plugin logging in a loop once made one call take 18 s and wrote 2 GB of log).
pub const LOG_LINES_PER_CALL: u32 = 20;
pub const LOG_LINES_PER_SECOND: u32 = 100;
/// Stderr and stdout kept per call (drained into the log after each); past it, dropped.
pub const STDIO_BYTES_PER_CALL: usize = 16 * 1024;
/// Largest plugin file `PUT /admin/plugins/files/...` takes: the default text plugin is 4.5 MB
/// (its grammars), a componentize-py plugin 18 MB (CPython).
pub const MAX_PLUGIN_FILE_BYTES: usize = 64 << 20;
/// More cuts than this from one segmenter call is a broken plugin, not a segmentation.
pub const MAX_CUTS_PER_CALL: usize = 1024;
/// Most destinations a router may give one result.
pub const MAX_ROUTES: usize = 1024;

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
        Self { fuel_per_call: FUEL_PER_CALL, max_memory_bytes: MAX_MEMORY_BYTES, max_instances: MAX_INSTANCES }
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
