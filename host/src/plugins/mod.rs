//! WebAssembly plugins: the wasmtime runtime, the sandbox limits and the per-kind instances.
//!
//! A plugin is compiled once per version (`Component` + `InstancePre`); each session gets a
//! cheap instance of its own, so a trap or a runaway plugin harms only that one instance.

mod bindings;
mod host;
mod limits;
pub mod registry;
mod runtime;
mod segmenter;

pub use limits::Limits;
pub use runtime::{PluginError, PluginKind, PluginRuntime};
pub use segmenter::{Cut, CutKind, SegmenterInstance, SegmenterPlugin};
