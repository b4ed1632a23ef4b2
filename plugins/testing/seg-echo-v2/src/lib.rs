//! Test plugin `echo@0.2.0`: the second version of `echo@0.1.0` (crate seg-echo).
//!
//! Same code, but the cut period is `every / 2` samples (default 8000), so a hot-swap test
//! can tell which version produced a cut from its length.

#[path = "../../seg-echo/src/echo.rs"]
pub mod echo;

kiki_plugin_sdk::export_segmenter!(echo::Echo<2>);
