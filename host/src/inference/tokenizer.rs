//! Whisper's byte-level BPE vocabulary: token id -> bytes (GPT-2 byte decoding).

use std::path::Path;

use super::InferenceError;

pub struct Tokenizer {
    /// Bytes of every token; empty for special tokens.
    pieces: Vec<Vec<u8>>,
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
        Ok(Self { pieces, eot })
    }

    /// Text of the given tokens; special tokens are skipped, invalid UTF-8 is replaced.
    pub fn decode(&self, tokens: &[u32]) -> String {
        let bytes: Vec<u8> = tokens
            .iter()
            .filter(|&&t| t < self.eot)
            .filter_map(|&t| self.pieces.get(t as usize))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// GPT-2's reversible byte <-> printable-char map, inverted.
fn byte_decoder() -> std::collections::HashMap<char, u8> {
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
}
