//! The protocols Kiki's gateway speaks to clients, as plain data and state machines.
//!
//! - [`native`]: Kiki's own WebSocket messages (`/ws`, documented in `docs/protocol.md`).
//! - [`funasr`] and [`kikipounamu`]: adapters, so that clients written for those servers work
//!   unchanged; each turns its client's frames into [`wire::Input`]s and renders the gateway's
//!   native events in its own format.
//! - [`realtime`]: OpenAI's Realtime API for transcription, for its SDKs.
//! - [`pcm`] and [`wav`]: decoding of the audio clients send.
//!
//! Nothing here does I/O, so the gateway, the tests and the fuzz targets share one definition.

pub mod funasr;
pub mod kikipounamu;
pub mod native;
pub mod pcm;
pub mod realtime;
pub mod wav;
pub mod wire;

pub use native::Word;
pub use wire::{Input, Wire};
