//! How fast a session may send audio: token buckets on audio seconds (a multiple of real time,
//! with a burst for clients that flush a buffer) and on frames (so that a flood of tiny frames
//! cannot buy CPU). Excess frames are dropped and the client is told, at most once a second.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Sustained audio speed, × real time.
    pub speed: f64,
    /// Audio seconds that may arrive at once above it.
    pub burst_s: f64,
    /// Sustained frames per second (a burst of five seconds' worth is allowed).
    pub frames_per_s: f64,
}

pub struct Budget {
    rates: Rates,
    audio: f64,
    frames: f64,
    last: Instant,
    last_warned: Option<Instant>,
}

impl Budget {
    pub fn new(rates: Rates) -> Self {
        Self { rates, audio: rates.burst_s, frames: rates.frames_per_s * 5.0, last: Instant::now(), last_warned: None }
    }

    /// Takes one frame of `audio_s` seconds; false when it goes over either bucket.
    pub fn take(&mut self, audio_s: f64) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.audio = (self.audio + dt * self.rates.speed).min(self.rates.burst_s);
        self.frames = (self.frames + dt * self.rates.frames_per_s).min(self.rates.frames_per_s * 5.0);
        if self.frames < 1.0 || self.audio < audio_s {
            return false;
        }
        self.frames -= 1.0;
        self.audio -= audio_s;
        true
    }

    /// Whether to tell the client about a dropped frame now (once a second at most).
    pub fn should_warn(&mut self) -> bool {
        let now = Instant::now();
        if self.last_warned.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return false;
        }
        self.last_warned = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_pass_floods_do_not() {
        let mut b = Budget::new(Rates { speed: 2.0, burst_s: 1.0, frames_per_s: 100.0 });
        // One second of burst in 125 ms frames, then the bucket is empty.
        assert!((0..8).all(|_| b.take(0.125)));
        assert!(!b.take(0.125));
        // Real time refills at twice real time: 150 ms buys 0.3 s of audio.
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(b.take(0.25));
        assert!(!b.take(0.125));
        // Tiny frames run out of frame tokens.
        let mut b = Budget::new(Rates { speed: 100.0, burst_s: 100.0, frames_per_s: 10.0 });
        assert_eq!((0..100).filter(|_| b.take(0.0)).count(), 50);
        assert!(b.should_warn());
        assert!(!b.should_warn());
    }
}
