//! Word times from cross-attention, as Whisper's `find_alignment` does: the attention weights of
//! the alignment heads over (text tokens × audio frames) are normalised, smoothed, averaged
//! and aligned to time with dynamic time warping; words start where the path jumps to their
//! first token.

/// Encoder frames per second (Whisper's encoder halves the 100 Hz mel rate).
pub const FRAMES_PER_SECOND: f32 = 50.0;
const MEDIAN_WIDTH: usize = 7;

/// A word and the tokens it was decoded from.
#[derive(Debug, Clone, PartialEq)]
pub struct WordTokens {
    pub text: String,
    pub tokens: Vec<u32>,
}

/// Groups tokens into words. Space-delimited languages start a word at a token with a leading
/// space or at punctuation; languages written without spaces get one "word" per character
/// group. `piece` gives a token's bytes.
pub fn split_words(tokens: &[u32], piece: impl Fn(u32) -> Vec<u8>, unspaced: bool) -> Vec<WordTokens> {
    // First group tokens into units that decode to whole UTF-8 characters.
    let mut units: Vec<(String, Vec<u32>)> = Vec::new();
    let (mut bytes, mut pending): (Vec<u8>, Vec<u32>) = (Vec::new(), Vec::new());
    for &t in tokens {
        bytes.extend(piece(t));
        pending.push(t);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            units.push((s.to_string(), std::mem::take(&mut pending)));
            bytes.clear();
        }
    }
    if !pending.is_empty() {
        units.push((String::from_utf8_lossy(&bytes).into_owned(), pending));
    }
    if unspaced {
        return units.into_iter().map(|(text, tokens)| WordTokens { text, tokens }).collect();
    }
    let mut words: Vec<WordTokens> = Vec::new();
    for (text, toks) in units {
        let punctuation = !text.trim().is_empty() && text.trim().chars().all(|c| c.is_ascii_punctuation());
        match words.last_mut() {
            Some(w) if !text.starts_with(' ') && !punctuation => {
                w.text.push_str(&text);
                w.tokens.extend(toks);
            }
            _ => words.push(WordTokens { text, tokens: toks }),
        }
    }
    // Punctuation joins the word before it (Whisper's merge_punctuations, the "appended" half).
    let mut merged: Vec<WordTokens> = Vec::new();
    for w in words {
        let trimmed = w.text.trim();
        let is_punct = !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_punctuation());
        match merged.last_mut() {
            Some(prev) if is_punct && !w.text.starts_with(' ') => {
                prev.text.push_str(&w.text);
                prev.tokens.extend(w.tokens);
            }
            _ => merged.push(w),
        }
    }
    merged
}

/// Dynamic time warping over a cost matrix `[rows][cols]` (row-major): the monotone path of least
/// cost from (0, 0) to the last cell, as (row, col) pairs.
pub fn dtw(cost: &[f32], rows: usize, cols: usize) -> Vec<(usize, usize)> {
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    let w = cols + 1;
    let mut acc = vec![f32::INFINITY; (rows + 1) * w];
    let mut trace = vec![0u8; (rows + 1) * w];
    acc[0] = 0.0;
    for j in 1..=cols {
        for i in 1..=rows {
            let (c0, c1, c2) = (acc[(i - 1) * w + j - 1], acc[(i - 1) * w + j], acc[i * w + j - 1]);
            let (c, t) = if c0 < c1 && c0 < c2 {
                (c0, 0)
            } else if c1 < c0 && c1 < c2 {
                (c1, 1)
            } else {
                (c2, 2)
            };
            acc[i * w + j] = cost[(i - 1) * cols + j - 1] + c;
            trace[i * w + j] = t;
        }
    }
    let (mut i, mut j) = (rows, cols);
    let mut path = Vec::with_capacity(rows + cols);
    while i > 0 || j > 0 {
        path.push((i.saturating_sub(1), j.saturating_sub(1)));
        let t = if i == 0 {
            2
        } else if j == 0 {
            1
        } else {
            trace[i * w + j]
        };
        match t {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    path.reverse();
    path
}

/// Start and end times (seconds) of every word, from the alignment heads' weights
/// `[heads][tokens][frames]` (row-major, `frames` = the audio's frames only). The token axis holds
/// one row per text token plus one for the end-of-text, each row being the attention of the
/// position that predicted that token.
pub fn word_times(
    weights: &[f32],
    heads: usize,
    tokens: usize,
    frames: usize,
    words: &[WordTokens],
) -> Vec<(f32, f32)> {
    if heads == 0 || tokens == 0 || frames == 0 || words.is_empty() {
        return Vec::new();
    }
    // Normalise each head over the token axis, median-filter along time, average the heads.
    let mut matrix = vec![0.0f32; tokens * frames];
    for h in 0..heads {
        let head = &weights[h * tokens * frames..(h + 1) * tokens * frames];
        for f in 0..frames {
            let column: Vec<f32> = (0..tokens).map(|t| head[t * frames + f]).collect();
            let mean = column.iter().sum::<f32>() / tokens as f32;
            let var = column.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / tokens as f32;
            let std = var.sqrt().max(1e-6);
            for (t, v) in column.iter().enumerate() {
                matrix[t * frames + f] += (v - mean) / std / heads as f32;
            }
        }
    }
    let mut smoothed = vec![0.0f32; tokens * frames];
    for t in 0..tokens {
        let row = &matrix[t * frames..(t + 1) * frames];
        for (f, out) in smoothed[t * frames..(t + 1) * frames].iter_mut().enumerate() {
            *out = median_at(row, f, MEDIAN_WIDTH);
        }
    }
    let cost: Vec<f32> = smoothed.iter().map(|v| -v).collect();
    let path = dtw(&cost, tokens, frames);
    // The time at which the path first reaches each token row.
    let mut jump = vec![0.0f32; tokens];
    let mut last = usize::MAX;
    for &(t, f) in &path {
        if t != last {
            jump[t] = f as f32 / FRAMES_PER_SECOND;
            last = t;
        }
    }
    let mut times = Vec::with_capacity(words.len());
    let mut at = 0;
    for w in words {
        let end_at = (at + w.tokens.len()).min(tokens - 1);
        times.push((jump[at.min(tokens - 1)], jump[end_at]));
        at += w.tokens.len();
    }
    times
}

/// Loudness below the window's loudest 20 ms by more than this is a pause.
const PAUSE_DB: f32 = 35.0;

/// Pulls word edges out of pauses: attention alignment lets a word swallow the silence next
/// to it (the first word always starts at 0), so each word is trimmed to the 20 ms frames of
/// `audio` inside it that carry sound. A word with no loud frame keeps its times.
pub fn trim_to_sound(times: &mut [(f32, f32)], audio: &[f32]) {
    const FRAME: usize = 320;
    let db: Vec<f32> = audio
        .chunks(FRAME)
        .map(|f| 10.0 * (f.iter().map(|s| s * s).sum::<f32>() / f.len() as f32 + 1e-10).log10())
        .collect();
    let Some(peak) = db.iter().copied().reduce(f32::max) else { return };
    let loud: Vec<bool> = db.iter().map(|d| *d > peak - PAUSE_DB).collect();
    for (start, end) in times.iter_mut() {
        let (a, b) =
            ((*start * FRAMES_PER_SECOND) as usize, ((*end * FRAMES_PER_SECOND).ceil() as usize).min(loud.len()));
        if a >= b {
            continue;
        }
        if let (Some(first), Some(last)) = ((a..b).find(|&i| loud[i]), (a..b).rev().find(|&i| loud[i])) {
            *start = first as f32 / FRAMES_PER_SECOND;
            *end = (last + 1) as f32 / FRAMES_PER_SECOND;
        }
    }
}

/// Median of the window of `width` around `i`, with reflected edges (scipy's `mode="reflect"`
/// differs by one sample at the very edge; Whisper pads the same way torch does).
fn median_at(row: &[f32], i: usize, width: usize) -> f32 {
    let n = row.len() as isize;
    let half = (width / 2) as isize;
    let mut window: Vec<f32> = (-half..=half)
        .map(|d| {
            let mut j = i as isize + d;
            if n > 1 {
                while j < 0 || j >= n {
                    j = if j < 0 { -j } else { 2 * (n - 1) - j };
                }
            } else {
                j = 0;
            }
            row[j as usize]
        })
        .collect();
    window.sort_by(f32::total_cmp);
    window[window.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(t: u32) -> Vec<u8> {
        match t {
            1 => b" Hello".to_vec(),
            2 => b",".to_vec(),
            3 => b" wor".to_vec(),
            4 => b"ld".to_vec(),
            5 => b".".to_vec(),
            6 => vec![0xE5, 0x8C],
            7 => vec![0x97],
            8 => "京".as_bytes().to_vec(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn words_group_subwords_and_keep_punctuation_on_the_word() {
        let w = split_words(&[1, 2, 3, 4, 5], piece, false);
        let texts: Vec<&str> = w.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, [" Hello,", " world."]);
        assert_eq!(w[1].tokens, vec![3, 4, 5]);
    }

    #[test]
    fn unspaced_languages_split_per_character_even_across_tokens() {
        // 北 is split over tokens 6 and 7.
        let w = split_words(&[6, 7, 8], piece, true);
        let texts: Vec<&str> = w.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["北", "京"]);
        assert_eq!(w[0].tokens, vec![6, 7]);
    }

    #[test]
    fn dtw_follows_the_cheap_diagonal() {
        // 3 tokens over 6 frames, cheap cells along two frames per token.
        let mut cost = vec![1.0f32; 18];
        for t in 0..3 {
            cost[t * 6 + 2 * t] = 0.0;
            cost[t * 6 + 2 * t + 1] = 0.0;
        }
        let path = dtw(&cost, 3, 6);
        assert_eq!(path.first(), Some(&(0, 0)));
        assert_eq!(path.last(), Some(&(2, 5)));
        assert!(path.windows(2).all(|p| p[1].0 >= p[0].0 && p[1].1 >= p[0].1));
        assert!(path.contains(&(1, 2)) && path.contains(&(2, 4)));
    }

    #[test]
    fn word_times_follow_attention() {
        // Two one-token words + end-of-text; token t attends to frames [10t, 10t + 10).
        let (tokens, frames) = (3, 30);
        let mut weights = vec![0.0f32; tokens * frames];
        for t in 0..tokens {
            for f in 10 * t..10 * t + 10 {
                weights[t * frames + f] = 1.0;
            }
        }
        let words =
            vec![WordTokens { text: " a".into(), tokens: vec![1] }, WordTokens { text: " b".into(), tokens: vec![2] }];
        let times = word_times(&weights, 1, tokens, frames, &words);
        assert_eq!(times.len(), 2);
        assert!((times[0].0 - 0.0).abs() < 0.05, "{times:?}");
        assert!((times[0].1 - 0.2).abs() < 0.05, "{times:?}");
        assert!((times[1].0 - 0.2).abs() < 0.05 && (times[1].1 - 0.4).abs() < 0.05, "{times:?}");
    }

    #[test]
    fn words_are_trimmed_to_their_sound() {
        // Sound from 0.5 s to 0.9 s only; the aligned word spans 0..1.5 s.
        let audio: Vec<f32> = (0..24_000).map(|i| if (8_000..14_400).contains(&i) { 0.3 } else { 0.0 }).collect();
        let mut times = vec![(0.0, 1.5), (1.5, 1.5)];
        trim_to_sound(&mut times, &audio);
        assert!((times[0].0 - 0.5).abs() < 0.021 && (times[0].1 - 0.9).abs() < 0.021, "{times:?}");
        assert_eq!(times[1], (1.5, 1.5));
    }

    #[test]
    fn median_filter_removes_a_spike() {
        let row = [0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0];
        assert_eq!(median_at(&row, 3, 7), 0.0);
        assert_eq!(median_at(&[1.0], 0, 7), 1.0);
    }
}
