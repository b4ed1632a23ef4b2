//! Sessions over WebSocket, one layer per job:
//! - [`connection`]: the socket, its protocol (a `Wire`), timers, limits and backpressure; one
//!   method per event.
//! - [`session`](self::session): one transcription session, wiring the parts below together.
//! - [`start`]: what a `start` may ask for, its segmenter and room, whether a resume goes on.
//! - [`audio_in`]: frames decoded, resampled to 16 kHz, kept, with speech probabilities.
//! - [`driver`]: the segmenter, its failure policy, hot switch and replay (no Redis).
//! - [`outbox`]: cuts as tasks; finals kept in the [`ledger`] until delivered.
//! - [`inbox`]: results in order ([`sequencer`]), rendered for the client.

mod audio_buf;
mod audio_in;
mod budget;
mod choices;
mod connection;
mod driver;
mod inbox;
mod ledger;
mod outbox;
mod sequencer;
#[allow(clippy::module_inception)]
mod session;
mod settled;
mod speech;
mod start;

pub use connection::run;
pub use start::{MAX_LANGUAGE_BYTES, MAX_PROMPT_BYTES};

/// What the connection holds for as long as it lives: its place under the per-address limit
/// and, with auth, under its subject's.
pub struct Places {
    pub _conn: Option<super::server::ConnPlace>,
    pub _subject: Option<super::limits::Guard<String>>,
    /// Who the connection's token names (rooms and resume are bound to it).
    pub principal: super::auth::Principal,
}
