//! Word error rate, shared by the tests and the benchmarks, and the voice of the synthetic set.

/// espeak-ng's arguments for the synthetic English WER set (`tests/data/sentences.txt`): en-us
/// at 150 words a minute with 40 ms between words, the pace of someone dictating. espeak's
/// default (175 wpm, words run together) is harder for Whisper than for people: tiny.en gives
/// 0.33 WER on it greedy and 0.30 with beam 5, at 150 wpm + 40 ms 0.18 / 0.15 (faster-whisper on
/// the same weights and default-voice clips does worse than Kiki; docs/performance.md). The
/// inference bench reports both voices.
pub const WER_SET_VOICE: &[&str] = &["-v", "en-us", "-s", "150", "-g", "4"];

/// espeak-ng's default en-us voice, which the other tests and the parity set use.
pub const DEFAULT_VOICE: &[&str] = &["-v", "en-us"];

/// Words after lower-casing and stripping punctuation (apostrophes kept).
fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split_whitespace()
        .map(|w| w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect::<String>())
        .filter(|w| !w.is_empty())
        .collect()
}

/// (word edits, reference words): Levenshtein distance over normalised words.
pub fn word_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    edits(&words(reference), &words(hypothesis))
}

/// Word error rate of `hypothesis` against `reference`.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (e, n) = word_errors(reference, hypothesis);
    e as f64 / n.max(1) as f64
}

/// (character edits, reference characters) over letters and digits only: the measure for
/// languages written without spaces. Traditional and simplified forms count as different.
pub fn char_errors(reference: &str, hypothesis: &str) -> (usize, usize) {
    let keep = |s: &str| s.to_lowercase().chars().filter(|c| c.is_alphanumeric()).map(String::from).collect::<Vec<_>>();
    edits(&keep(reference), &keep(hypothesis))
}

/// Character error rate of `hypothesis` against `reference`.
pub fn cer(reference: &str, hypothesis: &str) -> f64 {
    let (e, n) = char_errors(reference, hypothesis);
    e as f64 / n.max(1) as f64
}

fn edits(r: &[String], h: &[String]) -> (usize, usize) {
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut cur = vec![i; h.len() + 1];
        for j in 1..=h.len() {
            let sub = prev[j - 1] + usize::from(r[i - 1] != h[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    (prev[h.len()], r.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_substitutions_insertions_and_deletions() {
        assert_eq!(word_errors("the cat sat", "The cat, sat."), (0, 3));
        assert_eq!(word_errors("the cat sat", "a cat sat down"), (2, 3));
        assert_eq!(word_errors("the cat sat", ""), (3, 3));
        assert_eq!(wer("", "anything"), 1.0);
        assert_eq!(char_errors("我的名字。", "我的 名子"), (1, 4));
    }
}
