//! The noise floor: a low percentile of the recent (smoothed) sub-frame power.
//!
//! A running minimum sits at the quietest moment of the background; with babble (other
//! talkers) behind the speaker, the background's own peaks then clear any threshold above it
//! and every pause is bridged. A percentile over a few seconds sits where the background
//! usually is, so a foreground talker ~10 dB above it stands out and the background's peaks
//! do not. Speech has dips (stops, pauses between words), so while someone talks the low
//! percentile still falls on the background; a steady sound that lasts longer than
//! `(1 - percentile)` of the window becomes the new background.
//!
//! Powers are binned by the top bits of their `f32` representation (8 bins per octave, ~0.38
//! dB): monotonic, exact for comparisons, and no logarithm per sub-frame. The percentile is kept
//! incrementally, so each sub-frame costs a few operations whatever the window length.

/// Bins per octave = 2^(23 - BIN_SHIFT).
const BIN_SHIFT: u32 = 20;
/// Lowest power binned (2^-40, about -120 dB); anything quieter shares the first bin.
const LOWEST_BITS: u32 = (127 - 40) << 23;
/// Highest power binned (2^1, +3 dB over full scale).
const HIGHEST_BITS: u32 = (127 + 1) << 23;
const BINS: usize = ((HIGHEST_BITS - LOWEST_BITS) >> BIN_SHIFT) as usize + 1;

fn bin_of(power: f32) -> u16 {
    // `power > 0.0` rather than `power.max(0.0)`: the latter is a libc call in wasm.
    let bits = if power.is_nan() {
        HIGHEST_BITS
    } else if power > 0.0 {
        power.to_bits().clamp(LOWEST_BITS, HIGHEST_BITS)
    } else {
        LOWEST_BITS
    };
    ((bits - LOWEST_BITS) >> BIN_SHIFT) as u16
}

/// The lowest power that falls in `bin`.
fn power_of(bin: usize) -> f32 {
    f32::from_bits(LOWEST_BITS + ((bin as u32) << BIN_SHIFT))
}

/// A sliding-window percentile of sub-frame powers.
#[derive(Debug, Clone)]
pub struct NoiseFloor {
    /// Bin of each sub-frame in the window, oldest first (a ring).
    ring: Vec<u16>,
    head: usize,
    len: usize,
    counts: Vec<u16>,
    /// Percentile, in percent.
    percentile: usize,
    /// The percentile's bin, and how many values lie in lower bins.
    q: usize,
    below: usize,
}

impl NoiseFloor {
    /// A floor over the last `window` sub-frames at `percentile` percent (1..=99).
    pub fn new(window: usize, percentile: usize) -> Self {
        let window = window.max(1);
        NoiseFloor {
            ring: vec![0; window],
            head: 0,
            len: 0,
            counts: vec![0; BINS],
            percentile: percentile.clamp(1, 99),
            q: 0,
            below: 0,
        }
    }

    /// Adds one sub-frame's power (the oldest leaves once the window is full).
    pub fn add(&mut self, power: f32) {
        let b = bin_of(power) as usize;
        if self.len == self.ring.len() {
            let old = self.ring[self.head] as usize;
            self.counts[old] -= 1;
            if old < self.q {
                self.below -= 1;
            }
        } else {
            self.len += 1;
        }
        self.ring[self.head] = b as u16;
        // Not `%`: a division per sub-frame.
        self.head += 1;
        if self.head == self.ring.len() {
            self.head = 0;
        }
        self.counts[b] += 1;
        if b < self.q {
            self.below += 1;
        }
        // Move q to the bin holding the k-th smallest value (1-based).
        let k = (self.len * self.percentile / 100).max(1);
        while self.below >= k {
            self.q -= 1;
            self.below -= self.counts[self.q] as usize;
        }
        while self.below + (self.counts[self.q] as usize) < k {
            self.below += self.counts[self.q] as usize;
            self.q += 1;
        }
    }

    /// The floor (the percentile's bin, lower edge); `None` before the first sub-frame.
    pub fn get(&self) -> Option<f32> {
        (self.len > 0).then(|| power_of(self.q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same percentile computed by sorting.
    fn sorted_percentile(values: &[f32], pct: usize) -> f32 {
        let mut bins: Vec<u16> = values.iter().map(|&p| bin_of(p)).collect();
        bins.sort();
        let k = (bins.len() * pct / 100).max(1);
        power_of(bins[k - 1] as usize)
    }

    #[test]
    fn matches_a_sorted_window() {
        let mut x = 12345u64;
        let mut values = Vec::new();
        let mut floor = NoiseFloor::new(50, 20);
        for i in 0..2000i32 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // Powers over 12 decades, with a level that drifts, so the percentile moves both ways.
            let level = (i / 300) % 4 - 8;
            let p = 10f32.powi(level) * ((x >> 40) as f32 / (1u64 << 24) as f32 * 30.0 + 0.01);
            values.push(p);
            floor.add(p);
            let window = &values[values.len().saturating_sub(50)..];
            assert_eq!(floor.get(), Some(sorted_percentile(window, 20)), "step {i}");
        }
    }

    #[test]
    fn bins_are_monotonic_and_fine() {
        assert!(bin_of(0.0) == 0 && bin_of(-1.0) == 0 && bin_of(1e-30) == 0);
        assert_eq!(bin_of(f32::NAN) as usize, BINS - 1);
        assert_eq!(bin_of(f32::INFINITY) as usize, BINS - 1);
        let mut last = 0;
        for e in -100..=0 {
            let p = 10f32.powf(e as f32 / 10.0);
            let b = bin_of(p);
            assert!(b > last || e == -100, "{e} dB");
            last = b;
            // The bin's lower edge is within 0.4 dB below the value.
            let db = 10.0 * (p / power_of(b as usize)).log10();
            assert!((0.0..0.4).contains(&db), "{e} dB: {db}");
        }
    }

    #[test]
    fn empty_until_fed() {
        let mut f = NoiseFloor::new(10, 20);
        assert_eq!(f.get(), None);
        f.add(1e-3);
        assert_eq!(f.get(), Some(power_of(bin_of(1e-3) as usize)));
    }
}
