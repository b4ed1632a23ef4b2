//! Hallucination guards that work on short text, where Whisper's compression-ratio check does
//! not: a one-second clip decoded as "10 of clubs 10 of clubs 10 of clubs 10 of clubs" has a
//! ratio under 2.4 and an ordinary log-probability. Two checks, on the decoded tokens:
//!
//! - the same phrase three times in a row (a single token four times), and
//! - more tokens than the audio can carry (speech runs at about 3–4 tokens per second in
//!   English and Mandarin alike; the bound allows three times that).
//!
//! A window that fails one is decoded again at the next fallback temperature, as Whisper does for
//! its own checks; when every temperature fails, the text is kept up to the first repeat.
//!
//! A third check needs the word times: words the alignment squeezes into no time at the end of a
//! window ([`squeezed_tail`]) are cut from finals.

/// Longest phrase looked for, in tokens (the decoder's own loop stop watches the same length).
const MAX_PHRASE: usize = 32;
/// Tokens a window may hold: this many, plus [`TOKENS_PER_SECOND`] per second of its audio.
const BASE_TOKENS: f32 = 6.0;
const TOKENS_PER_SECOND: f32 = 12.0;

/// Where `tokens` start repeating: the end of the first copy of a phrase that then occurs
/// twice more right after it (a one-token phrase: three more times). `None` when nothing loops.
pub fn first_repeat(tokens: &[u32]) -> Option<usize> {
    let n = tokens.len();
    let mut cut: Option<usize> = None;
    for len in 1..=MAX_PHRASE {
        let times = if len == 1 { 4 } else { 3 };
        if len * times > n {
            break;
        }
        for start in 0..=n - len * times {
            if cut.is_some_and(|c| start + len >= c) {
                break;
            }
            let phrase = &tokens[start..start + len];
            if (1..times).all(|k| &tokens[start + k * len..start + (k + 1) * len] == phrase) {
                cut = Some(start + len);
                break;
            }
        }
    }
    cut
}

/// Fewest words in a squeezed tail, and the most time a word of it may take on average.
const MIN_TAIL_WORDS: usize = 3;
const SQUEEZED_S_PER_WORD: f32 = 0.06;

/// How many words at the end of a window the alignment squeezes into next to no time: the
/// decoder went on past the speech (typically repeating the last sentence), and the attention
/// has no audio left to put the words on. Such a tail is at least [`MIN_TAIL_WORDS`] words whose
/// first word, and whose whole run on average, take under 60 ms a word (16 words a second, far
/// past any speaker). `times` are (start, end) in seconds, in order.
pub fn squeezed_tail(times: &[(f32, f32)]) -> usize {
    let n = times.len();
    let last_end = times.last().map_or(0.0, |t| t.1);
    (MIN_TAIL_WORDS..=n)
        .rev()
        .find(|&k| {
            let (start, first_end) = times[n - k];
            first_end - start < SQUEEZED_S_PER_WORD && last_end - start < SQUEEZED_S_PER_WORD * k as f32
        })
        .unwrap_or(0)
}

/// Whether `tokens` are more than `seconds` of speech can hold.
pub fn too_many_tokens(tokens: usize, seconds: f32) -> bool {
    tokens as f32 > BASE_TOKENS + TOKENS_PER_SECOND * seconds.max(0.0)
}

/// Whether a decoded window fails the guards.
pub fn fails(tokens: &[u32], seconds: f32) -> bool {
    first_repeat(tokens).is_some() || too_many_tokens(tokens.len(), seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_loops_are_found_where_they_start() {
        // "10 of clubs" ×5: cut after the first copy.
        let phrase = [605, 295, 13766];
        let looped: Vec<u32> = phrase.iter().copied().cycle().take(15).collect();
        assert_eq!(first_repeat(&looped), Some(3));
        // Text before the loop is kept.
        let mut t = vec![1, 2, 3];
        t.extend(&looped);
        assert_eq!(first_repeat(&t), Some(6));
        // Twice is speech ("very very"), three times a loop for phrases, four for one token.
        assert_eq!(first_repeat(&[7, 8, 7, 8]), None);
        assert_eq!(first_repeat(&[7, 8, 7, 8, 7, 8]), Some(2));
        assert_eq!(first_repeat(&[9, 9, 9]), None);
        assert_eq!(first_repeat(&[9, 9, 9, 9]), Some(1));
        assert_eq!(first_repeat(&[1, 2, 3, 4, 5, 6, 7, 8]), None);
        assert_eq!(first_repeat(&[]), None);
        // The earliest loop wins, whatever its length.
        let mut t: Vec<u32> = [1, 2, 1, 2, 1, 2].to_vec();
        t.extend([5, 5, 5, 5, 5]);
        assert_eq!(first_repeat(&t), Some(2));
        // A long phrase (20 tokens) three times.
        let long: Vec<u32> = (100..120).cycle().take(60).collect();
        assert_eq!(first_repeat(&long), Some(20));
    }

    #[test]
    fn a_tail_squeezed_into_no_time_is_found() {
        // "... milk and sugar." then the sentence again, aligned at 6.59 s (seen on a file).
        let mut t = vec![(5.77, 5.95), (6.05, 6.39), (6.39, 6.59)];
        t.extend(std::iter::repeat_n((6.59, 6.59), 9));
        t.push((6.59, 6.67));
        assert_eq!(squeezed_tail(&t), 10);
        // Ordinary speech, a fast final word or two, and too few words: nothing.
        let speech: Vec<(f32, f32)> = (0..10).map(|i| (i as f32 * 0.3, i as f32 * 0.3 + 0.25)).collect();
        assert_eq!(squeezed_tail(&speech), 0);
        let mut fast = speech.clone();
        fast.extend([(3.0, 3.02), (3.02, 3.05)]);
        assert_eq!(squeezed_tail(&fast), 0);
        assert_eq!(squeezed_tail(&[]), 0);
    }

    #[test]
    fn token_budget_follows_the_audio() {
        assert!(!too_many_tokens(3, 1.0));
        assert!(too_many_tokens(40, 1.0));
        assert!(!too_many_tokens(120, 10.0));
        assert!(too_many_tokens(200, 10.0));
        assert!(fails(&[605, 295, 13766].repeat(5), 1.0));
        assert!(!fails(&[1, 2, 3, 4, 5], 1.0));
    }
}
