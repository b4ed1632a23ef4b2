//! Cutting long audio into Whisper's 30 s windows at pauses, so that no word is cut in two.

use std::ops::Range;

/// Whisper's window, in samples at 16 kHz.
pub const WINDOW: usize = 30 * 16_000;
/// The cut is searched for in the last part of each window.
const SEARCH: usize = 8 * 16_000;
/// Loudness is compared over 20 ms frames...
const FRAME: usize = 320;
/// ...averaged over 100 ms, so that the cut lands inside a pause, not between two syllables.
const SPAN: usize = 5;

/// Ranges of at most `WINDOW` samples that cover `audio`, each (but the last) ending at the
/// quietest 100 ms of its final 8 s.
pub fn split(audio: &[f32]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while audio.len() - start > WINDOW {
        let end = start + quietest_cut(&audio[start..start + WINDOW]);
        out.push(start..end);
        start = end;
    }
    out.push(start..audio.len());
    out
}

/// Offset within `window` (of `WINDOW` samples) to cut at: the middle of the quietest span.
fn quietest_cut(window: &[f32]) -> usize {
    let first = (window.len() - SEARCH) / FRAME;
    let energy: Vec<f32> = window.chunks(FRAME).map(|f| f.iter().map(|s| s * s).sum::<f32>()).collect();
    let mut best = (f32::INFINITY, window.len());
    for i in first..energy.len().saturating_sub(SPAN) {
        let e: f32 = energy[i..i + SPAN].iter().sum();
        // `<=` prefers the later of equal spans: longer windows, fewer cuts.
        if e <= best.0 {
            best = (e, (i + SPAN / 2) * FRAME + FRAME / 2);
        }
    }
    best.1.min(window.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.1).sin() * 0.5).collect()
    }

    #[test]
    fn short_audio_is_one_window() {
        assert_eq!(split(&tone(16_000)), vec![0..16_000]);
        assert_eq!(split(&[]), vec![0..0]);
    }

    #[test]
    fn long_audio_is_cut_in_its_pauses() {
        // 50 s of "speech" with a 0.5 s pause at 26 s.
        let mut audio = tone(50 * 16_000);
        for s in &mut audio[26 * 16_000..26 * 16_000 + 8_000] {
            *s = 0.0;
        }
        let w = split(&audio);
        assert_eq!(w.len(), 2);
        let cut = w[0].end;
        assert!((26 * 16_000..26 * 16_000 + 8_000).contains(&cut), "cut at {cut}");
        assert_eq!(w[1], cut..audio.len());
    }

    #[test]
    fn windows_never_exceed_30_s_and_cover_everything() {
        let audio = tone(95 * 16_000);
        let w = split(&audio);
        assert!(w.iter().all(|r| r.len() <= WINDOW));
        assert_eq!(w.first().map(|r| r.start), Some(0));
        assert_eq!(w.last().map(|r| r.end), Some(audio.len()));
        assert!(w.windows(2).all(|p| p[0].end == p[1].start));
    }
}
