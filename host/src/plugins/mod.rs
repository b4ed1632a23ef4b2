//! WebAssembly plugins: the wasmtime runtime, the sandbox limits and the per-kind instances.
//!
//! A plugin is compiled once per version (`Component` + `InstancePre`); each session gets a
//! cheap instance of its own, so a trap or a runaway plugin harms only that one instance.

mod bindings;
pub mod catalog;
pub mod check;
mod compiled;
mod host;
pub mod limits;
mod log_pipe;
pub mod manifest;
pub mod registry;
mod runtime;
mod segmenter;
pub mod sync;
mod text;
mod wasi_io;

/// WIT types shared by every world (cut kinds, transcripts).
pub use bindings::segmenter::kiki::plugin::types as bindings_types;
pub use catalog::{Catalog, CatalogError, CatalogInfo, Plugin};
pub use limits::Limits;
pub use runtime::{PluginError, PluginKind, PluginRuntime};
pub use segmenter::{Cut, CutKind, SegmenterInstance, SegmenterPlugin};
pub use text::{PostprocessorPlugin, Route, RouterPlugin, SessionOptions, Transcript, Word};
