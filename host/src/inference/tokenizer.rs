//! Whisper's byte-level BPE vocabulary: token id <-> bytes (GPT-2 byte encoding).
//!
//! Whisper's tokenizer is tiktoken's: a token's merge rank is its id, so encoding needs only
//! the vocabulary (no merges file): split the text into GPT-2 pre-tokens, then merge byte
//! pairs, lowest-id pair first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;

use super::InferenceError;

pub struct Tokenizer {
    /// Bytes of every token; empty for special tokens.
    pieces: Vec<Vec<u8>>,
    /// Bytes -> id for the ordinary (mergeable) tokens.
    ids: HashMap<Vec<u8>, u32>,
    eot: u32,
}

impl Tokenizer {
    pub fn load(path: &Path, eot: u32) -> Result<Self, InferenceError> {
        let text = std::fs::read_to_string(path).map_err(|e| InferenceError::model_file(path, e))?;
        let decoder = byte_decoder();
        let pieces = text
            .lines()
            .enumerate()
            .map(|(id, line)| {
                if id as u32 >= eot {
                    return Vec::new();
                }
                line.chars().filter_map(|c| decoder.get(&c).copied()).collect()
            })
            .collect::<Vec<_>>();
        if pieces.len() <= eot as usize {
            return Err(InferenceError::Corrupt {
                path: path.display().to_string(),
                reason: format!("vocabulary has {} tokens, expected more than {eot}", pieces.len()),
            });
        }
        let ids = pieces.iter().take(eot as usize).enumerate().map(|(id, p)| (p.clone(), id as u32)).collect();
        Ok(Self { pieces, ids, eot })
    }

    /// Text of the given tokens; special tokens are skipped, invalid UTF-8 is replaced.
    pub fn decode(&self, tokens: &[u32]) -> String {
        String::from_utf8_lossy(&self.bytes(tokens)).into_owned()
    }

    /// Raw bytes of the ordinary tokens among `tokens`.
    pub fn bytes(&self, tokens: &[u32]) -> Vec<u8> {
        tokens
            .iter()
            .filter(|&&t| t < self.eot)
            .filter_map(|&t| self.pieces.get(t as usize))
            .flatten()
            .copied()
            .collect()
    }

    /// Token ids of `text` (ordinary tokens only; no special tokens are produced).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        pretokenize(text).into_iter().flat_map(|piece| self.merge(piece.as_bytes())).collect()
    }

    /// Byte-pair merging of one pre-token: repeatedly merge the adjacent pair whose joined
    /// bytes are the lowest-id token (the leftmost of equals). A heap of candidate pairs over a
    /// linked list of parts keeps this O(n log n): the plain rescan of every pair after each
    /// merge was quadratic, and one 48k-letter hotword stalled every session's decoding.
    fn merge(&self, bytes: &[u8]) -> Vec<u32> {
        if let Some(&id) = self.ids.get(bytes) {
            return vec![id];
        }
        let n = bytes.len();
        // Parts are named by their first byte: `end[i]` closes the part starting at i, `next`
        // and `prev` link the live parts.
        let mut end: Vec<usize> = (1..=n).collect();
        let mut next: Vec<Option<usize>> = (1..=n).map(|i| (i < n).then_some(i)).collect();
        let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
        let mut alive = vec![true; n];
        let rank = |a: usize, b_end: usize| self.ids.get(&bytes[a..b_end]).copied();
        let mut heap = BinaryHeap::new();
        for i in 0..n.saturating_sub(1) {
            if let Some(r) = rank(i, i + 2) {
                heap.push(Reverse((r, i)));
            }
        }
        while let Some(Reverse((r, left))) = heap.pop() {
            // Entries go stale as parts grow: take one only if its pair still joins to it.
            let Some(right) = next[left].filter(|_| alive[left]) else { continue };
            if rank(left, end[right]) != Some(r) {
                continue;
            }
            end[left] = end[right];
            alive[right] = false;
            next[left] = next[right];
            if let Some(after) = next[right] {
                prev[after] = Some(left);
            }
            if let Some(before) = prev[left]
                && let Some(r) = rank(before, end[left])
            {
                heap.push(Reverse((r, before)));
            }
            if let Some(after) = next[left]
                && let Some(r) = rank(left, end[after])
            {
                heap.push(Reverse((r, left)));
            }
        }
        // Every single byte is a token in a byte-level vocabulary; a part that is not (a
        // damaged vocabulary) is dropped rather than mapped to a wrong id.
        let mut out = Vec::new();
        let mut at = Some(0).filter(|_| n > 0);
        while let Some(i) = at {
            if let Some(id) = rank(i, end[i]) {
                out.push(id);
            }
            at = next[i];
        }
        out
    }
}

/// GPT-2's pre-tokenizer, `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
/// written out by hand (the regex crate has no look-ahead). `\p{L}` and `\p{N}` are Unicode
/// general categories, not `char::is_alphabetic` (which takes Devanagari and Thai vowel signs as
/// letters and so split Hindi or Thai hotwords unlike Whisper's own tokenizer).
fn pretokenize(text: &str) -> Vec<&str> {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Letter,
        Number,
        Space,
        Other,
    }
    let class = |c: char| {
        let category = get_general_category(c);
        if matches!(
            category,
            G::UppercaseLetter | G::LowercaseLetter | G::TitlecaseLetter | G::ModifierLetter | G::OtherLetter
        ) {
            Class::Letter
        } else if matches!(category, G::DecimalNumber | G::LetterNumber | G::OtherNumber) {
            Class::Number
        } else if c.is_whitespace() {
            Class::Space
        } else {
            Class::Other
        }
    };
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (_, c) = chars[i];
        if c == '\'' {
            let rest = &text[at(i + 1)..];
            if let Some(n) =
                ["s", "t", "re", "ve", "m", "ll", "d"].iter().find(|s| rest.starts_with(**s)).map(|s| s.len())
            {
                out.push(&text[at(i)..at(i + 1) + n]);
                i += 1 + n; // contractions are ASCII: one char per byte
                continue;
            }
        }
        let start = i;
        // An optional single space joins the run that follows it.
        let lead = c == ' ' && chars.get(i + 1).is_some_and(|&(_, n)| class(n) != Class::Space);
        let first = if lead { i + 1 } else { i };
        let kind = class(chars[first].1);
        let mut j = first + 1;
        while j < chars.len() && class(chars[j].1) == kind {
            j += 1;
        }
        if kind == Class::Space && j < chars.len() && j - first > 1 {
            // `\s+(?!\S)`: leave the last space to lead the next word.
            j -= 1;
        }
        out.push(&text[at(start)..at(j)]);
        i = j;
    }
    out
}

/// GPT-2's reversible byte <-> printable-char map, inverted.
fn byte_decoder() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..=255u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable.into_iter().zip(chars).filter_map(|(b, c)| char::from_u32(c).map(|c| (c, b as u8))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_decoder_is_a_bijection() {
        let d = byte_decoder();
        assert_eq!(d.len(), 256);
        assert_eq!(d[&'Ġ'], b' ');
        assert_eq!(d[&'a'], b'a');
    }

    #[test]
    fn pretokens_follow_gpt2() {
        assert_eq!(pretokenize("Hello world"), ["Hello", " world"]);
        assert_eq!(pretokenize("it's 42 km!!"), ["it", "'s", " 42", " km", "!!"]);
        assert_eq!(pretokenize("a  b"), ["a", " ", " b"]);
        assert_eq!(pretokenize("Kiki,  Redis\n"), ["Kiki", ",", " ", " Redis", "\n"]);
        assert_eq!(pretokenize("北京 天气"), ["北京", " 天气"]);
        // What GPT-2's pattern gives in Python's `regex` (marks are not `\p{L}`).
        assert_eq!(pretokenize("हिन्दी"), ["ह", "ि", "न", "्", "द", "ी"]);
        assert_eq!(pretokenize("ภาษาไทย ครับ"), ["ภาษาไทย", " คร", "ั", "บ"]);
        assert_eq!(pretokenize("Zürich ²3 ½"), ["Zürich", " ²3", " ½"]);
        assert_eq!(pretokenize("naïve café"), ["naïve", " café"]);
        assert_eq!(pretokenize("x\u{a0}y"), ["x", "\u{a0}", "y"]);
        assert_eq!(pretokenize(""), Vec::<&str>::new());
    }

    #[test]
    fn merges_prefer_the_lowest_id() {
        let vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).chain([b"ab".to_vec(), b"bc".to_vec()]).collect();
        let ids = vocab.iter().enumerate().map(|(i, p)| (p.clone(), i as u32)).collect();
        let t = Tokenizer { pieces: vocab, ids, eot: 258 };
        // "ab" (256) is ranked before "bc" (257).
        assert_eq!(t.merge(b"abc"), vec![256, b'c' as u32]);
        assert_eq!(t.decode(&t.encode("abc bc")), "abc bc");
        assert_eq!(t.merge(b"bcab"), vec![256 + 1, 256], "merges happen wherever their pair is");
    }

    /// The heap merge gives what the plain definition gives (rescan all pairs, merge the
    /// lowest), on random text over a vocabulary with merges of merges.
    #[test]
    fn heap_merge_matches_the_definition_and_is_fast_on_long_input() {
        let mut vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for extra in ["ab", "bc", "abc", "ca", "aa", "aaaa", "bcab", "cc", "bcabc"] {
            vocab.push(extra.as_bytes().to_vec());
        }
        let n = vocab.len() as u32;
        let ids: HashMap<Vec<u8>, u32> = vocab.iter().enumerate().map(|(i, p)| (p.clone(), i as u32)).collect();
        let t = Tokenizer { pieces: vocab, ids, eot: n };
        let definition = |bytes: &[u8]| -> Vec<u32> {
            let mut parts: Vec<Vec<u8>> = bytes.iter().map(|&b| vec![b]).collect();
            loop {
                let best = parts
                    .windows(2)
                    .enumerate()
                    .filter_map(|(i, w)| t.ids.get(&[w[0].as_slice(), w[1].as_slice()].concat()).map(|&id| (id, i)))
                    .min();
                let Some((_, i)) = best else { break };
                let right = parts.remove(i + 1);
                parts[i].extend(right);
            }
            parts.iter().filter_map(|p| t.ids.get(p).copied()).collect()
        };
        let mut seed = 7u64;
        for len in 0..200 {
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    b"abcd"[(seed >> 33) as usize % 4]
                })
                .collect();
            assert_eq!(t.merge(&text), definition(&text), "{}", String::from_utf8_lossy(&text));
        }
        // 200k letters in one pre-token: linearithmic, not quadratic (the definition takes
        // minutes here).
        let long = "abc".repeat(70_000);
        let started = std::time::Instant::now();
        assert!(!t.encode(&long).is_empty());
        eprintln!("200k letters encoded in {:?}", started.elapsed());
    }
}
