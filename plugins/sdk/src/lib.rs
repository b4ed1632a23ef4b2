//! Guest-side SDK for Kiki plugins.
//!
//! A Kiki plugin is a WebAssembly component (built for `wasm32-wasip2`) that exports one of
//! the worlds in `wit/kiki.wit`. This crate hides the generated bindings behind three small
//! traits and one export macro per plugin kind:
//!
//! ```
//! use kiki_plugin_sdk::{Config, Cut, Frame, PluginError, Segmenter, export_segmenter};
//!
//! struct Never;
//! impl Segmenter for Never {
//!     fn open(_sample_rate: u32, _config: &Config) -> Result<Self, PluginError> { Ok(Never) }
//!     fn push(&mut self, _frame: Frame) -> Vec<Cut> { Vec::new() }
//!     fn flush(&mut self) -> Vec<Cut> { Vec::new() }
//! }
//! export_segmenter!(Never);
//! ```
//!
//! Off `wasm32` the export macros only type-check the plugin type, so the plugin's logic can be
//! unit-tested with a plain `cargo test` on the host; the host-import wrappers in [`host`]
//! fall back to harmless local behaviour there.

extern crate self as kiki_plugin_sdk;

#[doc(hidden)]
pub mod bindings;
mod config;
pub mod host;

use std::cell::RefCell;
use std::marker::PhantomData;

pub use config::Config;
pub use host::Level;

pub use bindings::router::exports::kiki::plugin::router::{Destination, RouteContext};
pub use bindings::segmenter::kiki::plugin::types::{
    Cut, CutKind, Frame, PluginError, SessionOptions, Transcript, Word,
};

use bindings::postprocessor::exports::kiki::plugin::postprocessor as pp_world;
use bindings::router::exports::kiki::plugin::router as rt_world;
use bindings::segmenter::exports::kiki::plugin::segmenter as seg_world;

/// A cut that marks no segment but tells the host that no later cut starts before `at`, so it
/// may drop the audio before it (see `record cut` in the WIT). Send one now and then while idle.
pub fn release(at: u64) -> Cut {
    Cut { kind: CutKind::Partial, start: at, end: at }
}

/// Whether `cut` is a [`release`] rather than a segment.
pub fn is_release(cut: &Cut) -> bool {
    cut.start == cut.end
}

/// Cuts a session's audio into segments. One value per session; the host drops it at the end.
pub trait Segmenter: Sized + 'static {
    /// Open a session. `config` holds the session's key/value options for this plugin,
    /// falling back to the operator's `[plugins.config.NAME]` values (see [`Config`]).
    fn open(sample_rate: u32, config: &Config) -> Result<Self, PluginError>;
    /// Feed the next frame; return the cuts it completes (often none). Offsets are absolute
    /// sample positions from the start of the stream.
    fn push(&mut self, frame: Frame) -> Vec<Cut>;
    /// End of stream: return the last cuts (a final for speech still open).
    fn flush(&mut self) -> Vec<Cut>;
}

/// Rewrites recognised text. Stateless: one call per transcript.
pub trait Postprocessor: 'static {
    /// Transcript in, transcript out. Keep `segment_id` and `kind`.
    fn process(input: Transcript, options: &SessionOptions) -> Result<Transcript, PluginError>;
}

/// Decides where each result goes. Stateless: one call per result.
pub trait Router: 'static {
    /// Every destination for `result`; an empty list drops it.
    fn route(result: Transcript, options: &SessionOptions, context: &RouteContext) -> Vec<Destination>;
}

// ---------------------------------------------------------------------------------------------
// Adapters from the idiomatic traits to the generated `Guest` traits. Public only so that the
// export macros can name them from the plugin crate.

#[doc(hidden)]
pub struct SegmenterExport<T>(PhantomData<T>);

#[doc(hidden)]
pub struct SegmenterSession<T>(RefCell<T>);

impl<T: Segmenter> seg_world::GuestSession for SegmenterSession<T> {
    fn push(&self, frame: Frame) -> Vec<Cut> {
        self.0.borrow_mut().push(frame)
    }
    fn flush(&self) -> Vec<Cut> {
        self.0.borrow_mut().flush()
    }
}

impl<T: Segmenter> seg_world::Guest for SegmenterExport<T> {
    type Session = SegmenterSession<T>;
    fn open(sample_rate: u32, config: Vec<(String, String)>) -> Result<seg_world::Session, PluginError> {
        let config = Config::new(config).with_host_fallback();
        let inner = T::open(sample_rate, &config)?;
        Ok(seg_world::Session::new(SegmenterSession(RefCell::new(inner))))
    }
}

#[doc(hidden)]
pub struct PostprocessorExport<T>(PhantomData<T>);

impl<T: Postprocessor> pp_world::Guest for PostprocessorExport<T> {
    fn process(input: Transcript, options: SessionOptions) -> Result<Transcript, PluginError> {
        T::process(input, &options)
    }
}

#[doc(hidden)]
pub struct RouterExport<T>(PhantomData<T>);

impl<T: Router> rt_world::Guest for RouterExport<T> {
    fn route(result: Transcript, options: SessionOptions, context: RouteContext) -> Vec<Destination> {
        T::route(result, &options, &context)
    }
}

/// Export a [`Segmenter`] implementation as this component's `kiki:plugin/segmenter` export.
/// Call it exactly once per plugin crate. Off `wasm32` it only checks the trait bound.
#[macro_export]
macro_rules! export_segmenter {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __KikiSegmenterExport = $crate::SegmenterExport<$ty>;
            $crate::bindings::segmenter::export_segmenter_world!(
                __KikiSegmenterExport with_types_in $crate::bindings::segmenter
            );
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            const fn __kiki_check<T: $crate::Segmenter>() {}
            __kiki_check::<$ty>();
        };
    };
}

/// Export a [`Postprocessor`] implementation as this component's `kiki:plugin/postprocessor`
/// export. Call it exactly once per plugin crate. Off `wasm32` it only checks the trait bound.
#[macro_export]
macro_rules! export_postprocessor {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __KikiPostprocessorExport = $crate::PostprocessorExport<$ty>;
            $crate::bindings::postprocessor::export_postprocessor_world!(
                __KikiPostprocessorExport with_types_in $crate::bindings::postprocessor
            );
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            const fn __kiki_check<T: $crate::Postprocessor>() {}
            __kiki_check::<$ty>();
        };
    };
}

/// Export a [`Router`] implementation as this component's `kiki:plugin/router` export.
/// Call it exactly once per plugin crate. Off `wasm32` it only checks the trait bound.
#[macro_export]
macro_rules! export_router {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __KikiRouterExport = $crate::RouterExport<$ty>;
            $crate::bindings::router::export_router_world!(
                __KikiRouterExport with_types_in $crate::bindings::router
            );
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            const fn __kiki_check<T: $crate::Router>() {}
            __kiki_check::<$ty>();
        };
    };
}
