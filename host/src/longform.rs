//! Long-form files, the same way for `kiki transcribe` and `/v1/audio/transcriptions`: speech
//! is decoded in windows of up to [`MAX_WINDOW_MS`] that end in pauses (the model reads each
//! sentence with the ones around it, as it was trained to), and subtitle cues are cut from the
//! word times afterwards, not from the windows.
//!
//! Cutting a file at every pause instead ("And so my fellow Americans. Ask not! What your
//! country can do for you.") makes each piece a context-free fragment, and its SRT cues as long
//! as the pauses are far apart.

use crate::inference::WordTime;
use crate::plugins::Cut;

/// Longest decoding window: under Whisper's 30 s, so a window never needs a second cut.
pub const MAX_WINDOW_MS: u64 = 28_000;

/// A cue ends at a sentence end, or before it grows past this...
pub const CUE_MAX_CHARS: usize = 84;
/// ...or this long.
pub const CUE_MAX_MS: u64 = 7_000;

/// Speech cuts (absolute samples at 16 kHz, in order) merged into windows of at most
/// `max_samples`: each window runs from its first cut's start to its last cut's end, so it
/// ends in the pause after a cut. A single cut longer than that stays one window (the engine
/// splits it at its quietest moments).
pub fn merge_cuts(cuts: &[Cut], max_samples: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for c in cuts.iter().filter(|c| c.end > c.start) {
        match out.last_mut() {
            Some(w) if c.end.max(w.1) - w.0 <= max_samples && c.start >= w.0 => w.1 = w.1.max(c.end),
            _ => out.push((c.start, c.end)),
        }
    }
    out
}

/// Splits a run of timed words into cues: at sentence ends, or before a cue gets too long.
pub fn cues(words: Vec<WordTime>) -> Vec<Vec<WordTime>> {
    let mut out: Vec<Vec<WordTime>> = Vec::new();
    let mut cur: Vec<WordTime> = Vec::new();
    for w in words {
        let chars: usize = cur.iter().map(|w| w.text.len() + 1).sum::<usize>() + w.text.len();
        if cur.first().is_some_and(|f| chars > CUE_MAX_CHARS || w.end_ms.saturating_sub(f.start_ms) > CUE_MAX_MS) {
            out.push(std::mem::take(&mut cur));
        }
        let ends = w.text.ends_with(['.', '?', '!', '。', '？', '！']);
        cur.push(w);
        if ends {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::CutKind;

    fn word(text: &str, start_ms: u64, end_ms: u64) -> WordTime {
        WordTime { text: text.into(), start_ms, end_ms, probability: 1.0 }
    }

    #[test]
    fn cues_end_at_sentences_and_stay_short() {
        let words = vec![word("Hello.", 0, 500), word("How", 600, 800), word("are", 800, 900), word("you?", 900, 1200)];
        let c = cues(words);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].len(), 3);
        let long: Vec<WordTime> = (0..40).map(|i| word("word", i * 400, i * 400 + 300)).collect();
        let c = cues(long);
        assert!(c.len() > 2);
        assert!(c.iter().all(|c| c.last().unwrap().end_ms - c[0].start_ms <= CUE_MAX_MS));
    }

    #[test]
    fn cuts_merge_into_windows_that_end_in_pauses() {
        let cut = |s: u64, e: u64| Cut { kind: CutKind::Final, start: s * 16, end: e * 16 };
        // Four 5 s sentences with 1 s pauses: the first four fit in 28 s? 0..23 s does.
        let cuts = [cut(0, 5_000), cut(6_000, 11_000), cut(12_000, 17_000), cut(18_000, 23_000), cut(24_000, 29_000)];
        let w = merge_cuts(&cuts, MAX_WINDOW_MS * 16);
        assert_eq!(w, vec![(0, 23_000 * 16), (24_000 * 16, 29_000 * 16)]);
        // A cut longer than a window stays whole; empty cuts are ignored.
        let w = merge_cuts(&[cut(0, 40_000), cut(41_000, 41_000), cut(42_000, 43_000)], MAX_WINDOW_MS * 16);
        assert_eq!(w, vec![(0, 40_000 * 16), (42_000 * 16, 43_000 * 16)]);
        assert!(merge_cuts(&[], 100).is_empty());
    }
}
