//! Kiki: a streaming speech-recognition server.
//!
//! Roles (one binary): the **gateway** holds WebSocket sessions and cuts audio with a wasm
//! segmenter plugin; the **worker** runs Whisper through ONNX Runtime; they talk over two Redis
//! channels (a Stream for tasks, Pub/Sub with a replay buffer for results).

pub mod audio;
pub mod channels;
pub mod config;
pub mod gateway;
pub mod ids;
pub mod inference;
pub mod local;
pub mod longform;
pub mod metrics;
pub mod plugins;
pub mod roles;
pub mod shutdown;
pub mod stats;
pub mod subtitles;
pub mod tools;
pub mod vocab;
pub mod worker;
