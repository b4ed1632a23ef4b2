//! Test plugin `echo@0.1.0`: a deterministic segmenter for hot-swap tests.
//!
//! One final cut every `every` samples (config key, default 16000); see [`echo`] for the
//! details. Its second version, `echo@0.2.0` (crate seg-echo-v2), cuts every `every / 2`
//! samples, so a test tells the two versions apart by the length of the cuts.

pub mod echo;

kiki_plugin_sdk::export_segmenter!(echo::Echo<1>);
