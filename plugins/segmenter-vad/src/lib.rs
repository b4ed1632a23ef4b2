//! Energy + zero-crossing-rate voice activity segmenter for Kiki.
//!
//! Audio is re-chunked into 10 ms sub-frames on the absolute sample grid, so the cuts do not
//! depend on the size of the frames the host pushes. Per sub-frame we compute the mean-removed
//! power and the zero-crossing rate, and smooth the power over the last 50 ms. The noise floor
//! is the 20th percentile of that smoothed power over the last 5 s ([`floor`]); a sub-frame is
//! speech-like when its smoothed power exceeds `floor * threshold_ratio` and an absolute
//! minimum (-55 dBFS), and its ZCR is plausible for speech.
//!
//! When the host supplies `speech_prob` (Silero VAD), it can only veto: `prob < 0.3` marks
//! the sub-frame as non-speech whatever its energy (a door, a beep, music). It never makes a
//! quiet sub-frame speech: a speech model hears the talkers in the background as speech too,
//! and with babble behind the speaker it would bridge every pause.
//!
//! An utterance opens at the first speech sub-frame and closes after `hangover_ms` without
//! speech. Utterances with less than `min_speech_ms` of speech are dropped. A final cut spans
//! `[onset - pad_ms, last speech + 150 ms)` (clamped to the end of the previous final and to
//! the samples seen so far). Partial cuts (same start, end = now) are emitted every
//! `partial_ms` while an utterance is open; `max_segment_ms` forces a final cut, and speech
//! that goes on continues in a new segment starting exactly where the forced cut ended.

mod floor;

use bytemuck::cast;
pub use floor::NoiseFloor;
use kiki_plugin_sdk::{Config, Cut, CutKind, Frame, PluginError, Segmenter, export_segmenter, release};
use wide::{f32x4, i32x4};

/// Padding after the last speech sub-frame.
pub const POST_PAD_MS: u32 = 150;
/// Partials are held back while the last speech is older than this.
pub const PARTIAL_MAX_GAP_MS: u32 = 100;
/// While no utterance is open, the host is told this often that it may drop older audio.
pub const RELEASE_EVERY_MS: u32 = 1000;
/// Absolute minimum sub-frame power to count as speech (-55 dBFS).
pub const MIN_POWER: f32 = 3.2e-6;
/// Lowest value the noise floor may take (-70 dBFS).
pub const FLOOR_MIN: f32 = 1e-7;
/// The noise floor is this percentile of the smoothed power ...
pub const FLOOR_PERCENTILE: usize = 20;
/// ... over this many 10 ms sub-frames (5 s).
pub const FLOOR_WINDOW: usize = 500;
/// Sub-frames the power is averaged over (50 ms): one loud 10 ms click is not an onset.
pub const SMOOTH: usize = 5;
/// A host speech probability below this vetoes the energy decision.
pub const PROB_VETO: f32 = 0.3;
/// Plausible ZCR band for speech (crossings per sample).
pub const ZCR_MAX: f32 = 0.7;

/// Settings, all in milliseconds unless noted.
#[derive(Debug, Clone, PartialEq)]
pub struct VadConfig {
    pub partial_ms: u32,
    pub hangover_ms: u32,
    pub min_speech_ms: u32,
    pub max_segment_ms: u32,
    /// Power ratio over the noise floor that counts as speech.
    pub threshold_ratio: f32,
    /// Pre-roll before the onset.
    pub pad_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            partial_ms: 1000,
            hangover_ms: 400,
            min_speech_ms: 250,
            max_segment_ms: 25_000,
            threshold_ratio: 3.5,
            pad_ms: 200,
        }
    }
}

impl VadConfig {
    pub fn from_config(c: &Config) -> Result<Self, PluginError> {
        let d = VadConfig::default();
        let cfg = VadConfig {
            partial_ms: c.get_u32_in("partial_ms", d.partial_ms, 0, 600_000)?,
            hangover_ms: c.get_u32_in("hangover_ms", d.hangover_ms, 10, 60_000)?,
            min_speech_ms: c.get_u32_in("min_speech_ms", d.min_speech_ms, 0, 60_000)?,
            max_segment_ms: c.get_u32_in("max_segment_ms", d.max_segment_ms, 500, 600_000)?,
            threshold_ratio: c.get_f32("threshold_ratio", d.threshold_ratio)?,
            pad_ms: c.get_u32_in("pad_ms", d.pad_ms, 0, 5_000)?,
        };
        if cfg.pad_ms as u64 + cfg.hangover_ms as u64 >= cfg.max_segment_ms as u64 {
            return Err(PluginError::InvalidConfig(format!(
                "`pad_ms` + `hangover_ms` ({} + {}) must be less than `max_segment_ms` ({})",
                cfg.pad_ms, cfg.hangover_ms, cfg.max_segment_ms
            )));
        }
        if !(1.0..=1000.0).contains(&cfg.threshold_ratio) {
            return Err(PluginError::InvalidConfig(format!(
                "`threshold_ratio` must be between 1 and 1000, got {}",
                cfg.threshold_ratio
            )));
        }
        Ok(cfg)
    }
}

#[derive(Debug, Clone, Copy)]
struct Utterance {
    /// Segment start (pre-roll applied).
    start: u64,
    /// End of the last speech sub-frame.
    last_speech_end: u64,
    /// Speech samples counted so far.
    speech: u64,
    /// Continuation after a forced cut: no minimum speech length.
    continuation: bool,
    /// Position of the last partial (or the segment start).
    last_partial: u64,
}

/// The segmenter state machine, independent of the wasm bindings.
#[derive(Debug, Clone)]
pub struct Vad {
    cfg: VadConfig,
    sub_len: usize,
    partial: u64,
    hangover: u64,
    min_speech: u64,
    max_segment: u64,
    pad: u64,
    post_pad: u64,
    partial_gap: u64,
    release_every: u64,
    /// Where the last release cut (or the start) was.
    last_release: u64,
    buf: Vec<f32>,
    /// Samples fully analysed (end of the last sub-frame).
    pos: u64,
    /// Samples received (pos + buffered).
    received: u64,
    floor: NoiseFloor,
    /// The last `SMOOTH` sub-frame powers (a ring) and how many sub-frames were seen.
    recent: [f32; SMOOTH],
    recent_at: usize,
    /// Samples before this belong to an earlier final cut.
    min_start: u64,
    utt: Option<Utterance>,
}

impl Vad {
    pub fn new(sample_rate: u32, cfg: VadConfig) -> Result<Self, PluginError> {
        if !(1000..=384_000).contains(&sample_rate) {
            return Err(PluginError::InvalidConfig(format!("unsupported sample rate {sample_rate}")));
        }
        let ms = |m: u32| m as u64 * sample_rate as u64 / 1000;
        let sub_len = (sample_rate / 100) as usize;
        Ok(Vad {
            partial: ms(cfg.partial_ms),
            hangover: ms(cfg.hangover_ms),
            min_speech: ms(cfg.min_speech_ms),
            max_segment: ms(cfg.max_segment_ms),
            pad: ms(cfg.pad_ms),
            post_pad: ms(POST_PAD_MS),
            partial_gap: ms(PARTIAL_MAX_GAP_MS),
            release_every: ms(RELEASE_EVERY_MS),
            last_release: 0,
            cfg,
            sub_len,
            buf: Vec::with_capacity(sub_len),
            pos: 0,
            received: 0,
            floor: NoiseFloor::new(FLOOR_WINDOW, FLOOR_PERCENTILE),
            recent: [0.0; SMOOTH],
            recent_at: 0,
            min_start: 0,
            utt: None,
        })
    }

    pub fn config(&self) -> &VadConfig {
        &self.cfg
    }

    /// Feed samples; returns the cuts they complete.
    pub fn push(&mut self, samples: &[f32], speech_prob: Option<f32>) -> Vec<Cut> {
        let mut cuts = Vec::new();
        let mut rest = samples;
        self.received += samples.len() as u64;
        while !rest.is_empty() {
            // Whole sub-frames on the grid are read in place; only a split one is buffered.
            let speech = if self.buf.is_empty() && rest.len() >= self.sub_len {
                let (sub, after) = rest.split_at(self.sub_len);
                rest = after;
                self.classify(sub, speech_prob)
            } else {
                let take = (self.sub_len - self.buf.len()).min(rest.len());
                self.buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if self.buf.len() < self.sub_len {
                    continue;
                }
                let buf = std::mem::take(&mut self.buf);
                let speech = self.classify(&buf, speech_prob);
                self.buf = buf;
                self.buf.clear();
                speech
            };
            self.pos += self.sub_len as u64;
            self.step(speech, &mut cuts);
        }
        cuts
    }

    /// End of stream: a final cut for an open utterance that has enough speech.
    pub fn flush(&mut self) -> Vec<Cut> {
        let mut cuts = Vec::new();
        if let Some(u) = self.utt.take()
            && self.long_enough(&u)
        {
            let end = (u.last_speech_end + self.post_pad).min(self.received);
            self.emit_final(u.start, end, &mut cuts);
        }
        // Leftover samples (< 10 ms) are counted as seen; the stream may go on after a flush.
        self.buf.clear();
        self.pos = self.received;
        cuts
    }

    fn long_enough(&self, u: &Utterance) -> bool {
        if u.continuation { u.speech > 0 } else { u.speech >= self.min_speech.max(1) }
    }

    fn emit_final(&mut self, start: u64, end: u64, cuts: &mut Vec<Cut>) {
        if end > start {
            cuts.push(Cut { kind: CutKind::Final, start, end });
            self.min_start = end;
        }
    }

    /// Speech decision for one sub-frame; also updates the noise floor.
    fn classify(&mut self, sub: &[f32], prob: Option<f32>) -> bool {
        let n = sub.len() as f32;
        let (power, crossings) = features(sub);
        let zcr = crossings as f32 / n;
        // Causal 50 ms mean (over fewer sub-frames at the start of the stream).
        self.recent[self.recent_at % SMOOTH] = power;
        self.recent_at += 1;
        let smooth = self.recent.iter().sum::<f32>() / self.recent_at.min(SMOOTH) as f32;
        self.floor.add(smooth);
        // A compare, not `f32::max`: that is a libc call in wasm (NaN rules); NaN gives FLOOR_MIN
        // either way.
        let floor = self.floor.get().filter(|&f| f > FLOOR_MIN).unwrap_or(FLOOR_MIN);
        let energetic = smooth > MIN_POWER && smooth > floor * self.cfg.threshold_ratio;
        let zcr_ok = crossings >= 1 && zcr <= ZCR_MAX;
        let vetoed = prob.is_some_and(|p| p.is_finite() && p < PROB_VETO);
        energetic && zcr_ok && !vetoed
    }

    /// Advance the state machine by one sub-frame ending at `self.pos`.
    fn step(&mut self, speech: bool, cuts: &mut Vec<Cut>) {
        let sub = self.sub_len as u64;
        let now = self.pos;
        let sf_start = now - sub;
        match self.utt.as_mut() {
            None => {
                if speech {
                    let start = sf_start.saturating_sub(self.pad).max(self.min_start);
                    self.utt = Some(Utterance {
                        start,
                        last_speech_end: now,
                        speech: sub,
                        continuation: false,
                        last_partial: start,
                    });
                }
            }
            Some(u) => {
                if speech {
                    u.last_speech_end = now;
                    u.speech += sub;
                }
            }
        }
        let Some(u) = self.utt else {
            // Idle: the next utterance starts no earlier than its onset minus the pre-roll.
            if now - self.last_release >= self.release_every {
                self.last_release = now;
                cuts.push(release(now.saturating_sub(self.pad).max(self.min_start)));
            }
            return;
        };

        // Max segment length: force a final cut exactly max_segment after the start.
        if now - u.start >= self.max_segment {
            let cut_end = u.start + self.max_segment;
            if self.long_enough(&u) {
                self.emit_final(u.start, cut_end, cuts);
            }
            self.min_start = self.min_start.max(cut_end);
            self.utt = if now - u.last_speech_end < self.hangover {
                // Still talking: continue in a new segment from the cut.
                Some(Utterance {
                    start: cut_end,
                    last_speech_end: u.last_speech_end.max(cut_end),
                    speech: if speech { now - cut_end } else { 0 },
                    continuation: true,
                    last_partial: cut_end,
                })
            } else {
                None
            };
            return;
        }

        // Hangover: close after enough non-speech.
        if now - u.last_speech_end >= self.hangover {
            self.utt = None;
            if self.long_enough(&u) {
                let end = (u.last_speech_end + self.post_pad).min(now);
                self.emit_final(u.start, end, cuts);
            }
            return;
        }

        // Partials at the cadence once the utterance has enough speech.
        // Not during a trailing pause (a partial would reach past the coming final).
        let talking = now - u.last_speech_end <= self.partial_gap;
        if self.partial > 0 && talking && now - u.last_partial >= self.partial && self.long_enough(&u) {
            cuts.push(Cut { kind: CutKind::Partial, start: u.start, end: now });
            if let Some(u) = self.utt.as_mut() {
                u.last_partial = now;
            }
        }
    }
}

/// Samples per step of the feature loops: four 4-lane vectors (`wide` compiles them to wasm
/// `simd128` and to SSE natively). In the sandbox every loop iteration pays a fuel check, so a
/// wide step is what makes the loops cheap there: a 10 ms sub-frame takes 20 steps, not 240.
const LANES: usize = 16;
const VECS: usize = LANES / 4;
type Block = [f32x4; VECS];

/// Mean-removed power and zero crossings (sign changes about the mean between neighbouring
/// samples) of a sub-frame. The sums run in `LANES` lanes, reduced in a fixed order, so the
/// wasm build and the native one (tests, the host's baseline) add alike and decide alike.
pub fn features(buf: &[f32]) -> (f32, u32) {
    if buf.len() > LANES {
        return features_of(buf, buf.len());
    }
    // Shorter than a block and a neighbour (sample rates under 1.6 kHz): on a padded copy.
    let mut padded = [0.0; LANES + 1];
    padded[..buf.len()].copy_from_slice(buf);
    features_of(&padded, buf.len())
}

/// [`features`] of `s[..len]`, where `s` holds at least `LANES + 1` samples.
///
/// Whole blocks first; then the samples past them are read in place as one more block that
/// overlaps the ones before, its other lanes set to a value that adds nothing. (Copying them
/// into a padded block instead is a call out to the host in the sandbox.)
fn features_of(s: &[f32], len: usize) -> (f32, u32) {
    let mean = mean_of(s, len);
    // Power and sign changes in one pass over the pairs (s[i], s[i + 1]): the power of each
    // pair's first sample, and of the last sample on its own.
    let m = f32x4::splat(mean);
    let mut pow = [f32x4::ZERO; VECS];
    let mut cross = [i32x4::ZERO; VECS];
    let pairs = len.saturating_sub(1);
    let (now, next) = (s[..pairs].chunks_exact(LANES), s[1..=pairs].chunks_exact(LANES));
    let rest = now.remainder().len();
    for (a, b) in now.zip(next) {
        pair_step(&mut pow, &mut cross, load(a), load(b), m);
    }
    if rest > 0 {
        let (at, on) = tail(pairs, rest);
        // Lanes set to the mean add no power and no sign change.
        let (a, b) = (load(&s[at..]), load(&s[at + 1..]));
        pair_step(&mut pow, &mut cross, blend(on, a, m), blend(on, b, m), m);
    }
    let last = if len > 0 { (s[len - 1] - mean) * (s[len - 1] - mean) } else { 0.0 };
    let power = (reduce(pow) + last) / len.max(1) as f32;
    let crossings: i32 = cross.iter().map(|c| c.to_array().iter().sum::<i32>()).sum();
    (power, crossings as u32)
}

/// The mean of `s[..len]` (0 when empty); `s` as for [`features_of`].
fn mean_of(s: &[f32], len: usize) -> f32 {
    let blocks = s[..len].chunks_exact(LANES);
    let rest = blocks.remainder().len();
    let mut sum = [f32x4::ZERO; VECS];
    for c in blocks {
        add(&mut sum, load(c));
    }
    if rest > 0 {
        let (at, on) = tail(len, rest);
        add(&mut sum, blend(on, load(&s[at..]), f32x4::ZERO));
    }
    reduce(sum) / len.max(1) as f32
}

/// The mean of `buf`, as [`features`] computes it.
#[cfg(test)]
fn mean(buf: &[f32]) -> f32 {
    let mut padded = buf.to_vec();
    padded.resize(buf.len().max(LANES + 1), 0.0);
    mean_of(&padded, buf.len())
}

#[inline(always)]
fn add(sum: &mut Block, a: Block) {
    for v in 0..VECS {
        sum[v] += a[v];
    }
}

/// One block of pairs: `a` the samples, `b` the ones after them. `x >= mean` is the sign of
/// `x - mean`; a lane whose sign changed is all ones (-1), so subtracting counts it.
#[inline(always)]
fn pair_step(pow: &mut Block, cross: &mut [i32x4; VECS], a: Block, b: Block, m: f32x4) {
    for v in 0..VECS {
        let x = a[v] - m;
        pow[v] += x * x;
        let changed: i32x4 = cast(a[v].simd_ge(m) ^ b[v].simd_ge(m));
        cross[v] -= changed;
    }
}

/// Where the last block of `len` samples (`rest` of them past the whole blocks) is read, and
/// which of its lanes are those samples: the last `LANES` of the slice, or the first when
/// `len` is shorter than a block.
#[inline(always)]
fn tail(len: usize, rest: usize) -> (usize, Block) {
    let at = len.saturating_sub(LANES);
    let from = (len - rest - at) as i32;
    let (from, to) = (i32x4::splat(from), i32x4::splat(from + rest as i32));
    let on = std::array::from_fn(|v| {
        let index = i32x4::new([0, 1, 2, 3]) + i32x4::splat(4 * v as i32);
        cast(!index.simd_lt(from) & index.simd_lt(to))
    });
    (at, on)
}

/// `a` where `on`, else `other`.
#[inline(always)]
fn blend(on: Block, a: Block, other: f32x4) -> Block {
    std::array::from_fn(|v| on[v].bitselect(a[v], other))
}

/// `LANES` samples (`c` holds at least that many) as vectors: each one unaligned vector read.
/// (Built from four scalars instead, LLVM sees that one block is the other shifted by a
/// sample and rebuilds it lane by lane, several times slower in wasm.)
#[inline(always)]
fn load(c: &[f32]) -> Block {
    let bytes: &[u8] = bytemuck::cast_slice(&c[..LANES]);
    std::array::from_fn(|v| bytemuck::pod_read_unaligned(&bytes[16 * v..16 * v + 16]))
}

/// Sum of the lanes: vectors pairwise, then the lanes in order.
#[inline(always)]
fn reduce(v: Block) -> f32 {
    let [a, b, c, d] = v;
    ((a + c) + (b + d)).to_array().iter().sum()
}

/// The exported segmenter: one [`Vad`] per session.
pub struct VadSegmenter(Vad);

impl Segmenter for VadSegmenter {
    fn open(sample_rate: u32, config: &Config) -> Result<Self, PluginError> {
        let cfg = VadConfig::from_config(config)?;
        kiki_plugin_sdk::debug!("vad open: {sample_rate} Hz, {cfg:?}");
        Ok(VadSegmenter(Vad::new(sample_rate, cfg)?))
    }
    fn push(&mut self, frame: Frame) -> Vec<Cut> {
        self.0.push(&frame.samples, frame.speech_prob)
    }
    fn flush(&mut self) -> Vec<Cut> {
        self.0.flush()
    }
}

export_segmenter!(VadSegmenter);

#[cfg(test)]
mod tests;
