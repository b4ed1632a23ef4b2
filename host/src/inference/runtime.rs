//! The process's one ONNX Runtime environment and its shared intra-op thread pool.
//!
//! ONNX Runtime gives every session its own thread pool by default, and idle pool threads spin
//! for a while after each run, so an encoder and a decoder session that alternate can each take
//! the cores from the other's run (a Python A/B of the same graphs on two cores: encode + 15
//! decoder steps 107-120 ms with two spinning pools, 69-82 ms without spinning). One pool for
//! every model session keeps the thread count fixed however many engines a process loads and
//! rules that out. In Kiki's own CLI A/B (128 clips, int8) it measured no different from
//! per-session pools (13.0 vs 13.1 s), so it is a guard, not a speed-up.

use std::path::Path;
use std::sync::OnceLock;

use ort::environment::{Environment, GlobalThreadPoolOptions};

use super::InferenceError;

struct Runtime {
    env: Environment,
    /// Intra-op threads of the shared pool (0: ONNX Runtime's choice, one per core).
    threads: usize,
}

/// ONNX Runtime allows one environment per process; every engine shares it.
static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The environment, created on first use from `library` with a shared pool of `threads`
/// intra-op threads (0: one per core), and whether its pool has the `threads` this caller asks
/// for (a later caller gets the same environment whatever it asks; one that wants another
/// thread count runs a pool of its own).
pub(super) fn environment(library: &Path, threads: usize) -> Result<(&'static Environment, bool), InferenceError> {
    runtime(library, threads).map(|r| (&r.env, r.threads == threads))
}

fn runtime(library: &Path, threads: usize) -> Result<&'static Runtime, InferenceError> {
    let lib_err = |reason: String| InferenceError::Library { path: library.display().to_string(), reason };
    if !library.exists() {
        return Err(lib_err("file not found".into()));
    }
    RUNTIME
        .get_or_init(|| {
            // Loads the library first: the pool's options are made through its API.
            let builder = ort::init_from(library).map_err(|e| e.to_string())?;
            let pool = GlobalThreadPoolOptions::default()
                .with_intra_threads(threads)
                .and_then(|p| p.with_inter_threads(1))
                .map_err(|e| e.to_string())?;
            let env = builder.with_name("kiki").with_global_thread_pool(pool).build().map_err(|e| e.to_string())?;
            Ok(Runtime { env, threads })
        })
        .as_ref()
        .map_err(|e| lib_err(e.clone()))
}
