//! How fast a session may send audio: token buckets on audio seconds (a multiple of real time,
//! with a burst for clients that flush a buffer) and on frames (so that a flood of tiny frames
//! cannot buy CPU). A frame is never dropped for speed: it is taken and charged, and a session
//! over budget has its socket left unread until the buckets refill, so TCP flow control slows
//! the sender down.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Sustained audio speed, × real time; infinite for sessions paced by the workers instead.
    pub speed: f64,
    /// Audio seconds that may arrive at once above it.
    pub burst_s: f64,
    /// Sustained frames per second (a burst of five seconds' worth is allowed).
    pub frames_per_s: f64,
}

impl Rates {
    /// For file-like sessions (no partials: FunASR's offline mode, kikipounamu's utterances): no
    /// speed limit, since the audio costs what an upload costs; the cap on audio awaiting its
    /// finals paces them at the workers' speed.
    pub fn paced_by_workers(self) -> Self {
        Self { speed: f64::INFINITY, ..self }
    }
}

pub struct Budget {
    rates: Rates,
    /// Audio seconds left; below zero once a frame overdraws it.
    audio: f64,
    frames: f64,
    last: Instant,
}

impl Budget {
    pub fn new(rates: Rates) -> Self {
        Self { rates, audio: rates.burst_s, frames: rates.frames_per_s * 5.0, last: Instant::now() }
    }

    /// Charges one frame of `audio_s` seconds; how long to leave the socket unread before the
    /// session is back within its rates (zero when it is within them now).
    pub fn charge(&mut self, audio_s: f64) -> Duration {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let frames_cap = self.rates.frames_per_s * 5.0;
        self.frames = (self.frames + dt * self.rates.frames_per_s).min(frames_cap) - 1.0;
        let mut wait = deficit(self.frames, self.rates.frames_per_s);
        if self.rates.speed.is_finite() {
            self.audio = (self.audio + dt * self.rates.speed).min(self.rates.burst_s) - audio_s;
            wait = wait.max(deficit(self.audio, self.rates.speed));
        }
        Duration::from_secs_f64(wait)
    }
}

/// Seconds until a bucket at `level` refilling at `rate` a second is back at zero.
fn deficit(level: f64, rate: f64) -> f64 {
    if level >= 0.0 || rate <= 0.0 { 0.0 } else { (-level / rate).min(3600.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn overdrafts_are_waited_out_not_dropped() {
        let mut b = Budget::new(Rates { speed: 2.0, burst_s: 1.0, frames_per_s: 100.0 });
        // One second of burst in 125 ms frames, then the next frame overdraws by 125 ms of audio:
        // 62.5 ms at twice real time.
        assert!((0..8).all(|_| b.charge(0.125).is_zero()));
        assert_eq!(b.charge(0.125), Duration::from_micros(62_500));
        // The wait refills it: the next frame costs its own length at twice real time.
        tokio::time::advance(Duration::from_micros(62_500)).await;
        assert_eq!(b.charge(0.25), Duration::from_millis(125));
        // Tiny frames run out of frame tokens: 500 pass, then each costs 10 ms.
        let mut b = Budget::new(Rates { speed: 100.0, burst_s: 100.0, frames_per_s: 100.0 });
        assert_eq!((0..500).filter(|_| b.charge(0.0).is_zero()).count(), 500);
        assert!((b.charge(0.0).as_secs_f64() - 0.010).abs() < 1e-6);
        // Paced by the workers: any amount of audio at once, frames still counted.
        let mut b = Budget::new(Rates { speed: 4.0, burst_s: 30.0, frames_per_s: 10.0 }.paced_by_workers());
        assert!(b.charge(3600.0).is_zero());
    }
}
