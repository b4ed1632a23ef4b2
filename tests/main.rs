//! Kiki's integration tests, one binary (each module was a binary of its own, each linking
//! wasmtime, ONNX Runtime and axum: 21 links after every edit of the host crate). Tests that
//! run the model take turns through `common::serial`; the model is loaded once for all of them.

mod common;

mod adapters;
mod check;
mod cli;
mod cluster;
mod drain;
mod e2e_stream;
mod faults;
mod frontend;
mod gateway_limits;
mod hot_swap;
mod inference;
mod load;
mod openai;
mod plugin_registry;
mod plugin_sandbox;
mod redis_tls_acl;
mod resume;
mod routing;
mod segmenter_quality;
mod topology;
