//! Long-form files, the same way for `kiki transcribe` and `/v1/audio/transcriptions`: speech
//! is decoded in windows of up to [`MAX_WINDOW_MS`] that end in pauses (the model reads each
//! sentence with the ones around it, as it was trained to), and subtitle cues are cut from the
//! word times afterwards, not from the windows.
//!
//! Cutting a file at every pause instead ("And so my fellow Americans. Ask not! What your
//! country can do for you.") makes each piece a context-free fragment, and its SRT cues as long
//! as the pauses are far apart.

use std::ops::Range;

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

/// Splits a run of timed words into cues, at sentence ends or before a cue gets too long; returns
/// each cue as a range of `words`. `timing` gives a word's (text, start ms, end ms), so that
/// any word type (the model's, or a result's) is cut the same way without being converted.
pub fn cue_ranges<T>(words: &[T], timing: impl Fn(&T) -> (&str, u64, u64)) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut chars, mut first_ms) = (0, 0usize, 0u64);
    for (i, w) in words.iter().enumerate() {
        let (text, w_start, w_end) = timing(w);
        if i > start && (chars + text.len() > CUE_MAX_CHARS || w_end.saturating_sub(first_ms) > CUE_MAX_MS) {
            out.push(start..i);
            start = i;
        }
        if i == start {
            (chars, first_ms) = (0, w_start);
        }
        chars += text.len() + 1;
        if text.ends_with(['.', '?', '!', '。', '？', '！']) {
            out.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < words.len() {
        out.push(start..words.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::WordTime;
    use crate::plugins::CutKind;

    fn word(text: &str, start_ms: u64, end_ms: u64) -> WordTime {
        WordTime { text: text.into(), start_ms, end_ms, probability: 1.0 }
    }

    fn cues(words: &[WordTime]) -> Vec<Range<usize>> {
        cue_ranges(words, |w| (w.text.as_str(), w.start_ms, w.end_ms))
    }

    #[test]
    fn cues_end_at_sentences_and_stay_short() {
        let words = vec![word("Hello.", 0, 500), word("How", 600, 800), word("are", 800, 900), word("you?", 900, 1200)];
        assert_eq!(cues(&words), vec![0..1, 1..4]);
        let long: Vec<WordTime> = (0..40).map(|i| word("word", i * 400, i * 400 + 300)).collect();
        let c = cues(&long);
        assert!(c.len() > 2);
        assert!(c.iter().all(|r| long[r.end - 1].end_ms - long[r.start].start_ms <= CUE_MAX_MS));
        assert_eq!(c.iter().map(|r| r.len()).sum::<usize>(), 40, "every word in one cue");
        // Characters: "word" + a space each, so 17 words (84 chars) fit, the 18th does not.
        let many: Vec<WordTime> = (0..30).map(|i| word("word", i * 10, i * 10 + 5)).collect();
        assert_eq!(cues(&many)[0], 0..17);
        assert!(cues(&[]).is_empty());
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
