//! Kiki: a streaming speech-recognition server.
//!
//! Roles (one binary): the **gateway** holds WebSocket sessions and cuts audio with a wasm
//! segmenter plugin; the **worker** runs Whisper through ONNX Runtime; they talk over two Redis
//! channels (a Stream for tasks, Pub/Sub with a replay buffer for results).

pub mod audio;
pub mod channels;
pub mod check;
pub mod config;
pub mod eval;
pub mod gateway;
pub mod http_get;
pub mod ids;
pub mod inference;
pub mod load;
pub mod longform;
pub mod metrics;
pub mod plugins;
pub mod redis_server;
pub mod roles;
pub mod shutdown;
pub mod subtitles;
pub mod topology;
pub mod transcribe;
pub mod worker;
