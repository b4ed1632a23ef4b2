//! Inverse text normalisation (spoken form to written form: 二零二六年十二月八日 -> 2026/12/08,
//! 百分之二十五 -> 25%, twenty five dollars -> $25) with WeTextProcessing's grammars.
//!
//! The grammars are the prebuilt OpenFst graphs that PyPI's `wetext==0.1.8` wheel ships
//! (Apache-2.0; `scripts/setup.sh` copies them into `.cache/itn/`; `build.rs` reads them with
//! the `rustfst` crate and embeds them in a flat layout, [`graph`] searches them in place). The
//! pipeline is wetext's (`wetext.utils.normalize`, operator `itn`): the text's bytes through
//! the tagger (best path), the tagged tokens put in their canonical field order ([`reorder`]),
//! then through the verbalizer. The graphs were built with standalone numbers on and
//! `enable_0_to_9` off (a lone 一 or 两 stays a word: 我有两个苹果 is left as it is).

mod graph;
mod items;
mod reorder;

use graph::Graph;

pub use items::apply;
pub use reorder::reorder;

/// Languages with a grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// The grammar for a Whisper language code, if there is one.
    pub fn for_code(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "zh" | "chinese" | "mandarin" | "zh-cn" | "cmn" => Some(Lang::Zh),
            "en" | "english" => Some(Lang::En),
            _ => None,
        }
    }

    fn graphs(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Lang::Zh => (
                include_bytes!(concat!(env!("OUT_DIR"), "/zh_tagger.kfst")),
                include_bytes!(concat!(env!("OUT_DIR"), "/zh_verbalizer.kfst")),
            ),
            Lang::En => (
                include_bytes!(concat!(env!("OUT_DIR"), "/en_tagger.kfst")),
                include_bytes!(concat!(env!("OUT_DIR"), "/en_verbalizer.kfst")),
            ),
        }
    }
}

/// Text given to the grammars in one piece: the search's work and memory grow with it, and a
/// post-processor call has a memory limit. Longer text is normalised a piece at a time.
const MAX_PIECE_BYTES: usize = 400;

/// Why a text could not be normalised (the caller keeps the text as it was).
#[derive(Debug)]
pub struct ItnError(pub String);

impl std::fmt::Display for ItnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `text` in written form. Text the grammar has no path for, or maps to nothing, is returned
/// as it was.
pub fn normalize(text: &str, lang: Lang) -> Result<String, ItnError> {
    // NUL would read as the graphs' epsilon label.
    let text: String = text.trim().chars().filter(|&c| c != '\0').collect();
    if text.is_empty() {
        return Ok(text);
    }
    let (tagger, verbalizer) = lang.graphs();
    let pieces = pieces(&text);
    let tagger = load(tagger, "tagger")?;
    let verbalizer = load(verbalizer, "verbalizer")?;
    let mut out = String::with_capacity(text.len());
    for piece in &pieces {
        let written = match transduce(&tagger, piece.trim()).as_deref().map(str::trim) {
            Some(t) if !t.is_empty() => transduce(&verbalizer, &reorder(t)),
            _ => None,
        };
        let written = written.as_deref().map(str::trim).filter(|w| !w.is_empty()).unwrap_or(piece.trim());
        // Pieces are consecutive slices of the text: the space before one is kept as it was.
        if !out.is_empty() {
            out.push_str(&piece[..piece.len() - piece.trim_start().len()]);
        }
        out.push_str(written);
    }
    Ok(out)
}

/// `text` cut into pieces for the grammars: after a sentence mark once a piece holds a quarter
/// of [`MAX_PIECE_BYTES`], after a comma or a space once it holds three quarters, and, in text
/// with none of those, at all of it after the first character that cannot be part of a number
/// (a date without marks may then be read in two parts; Whisper punctuates long text).
fn pieces(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let cur = out.last_mut().expect("never empty");
        cur.push(c);
        // An ASCII mark ends a sentence only before a space (not in "3.5" or "a.m.").
        let spaced = chars.peek().is_none_or(|n| n.is_whitespace());
        let boundary = match c {
            '.' | '?' | '!' | ';' => spaced && cur.len() >= MAX_PIECE_BYTES / 4,
            '。' | '？' | '！' | '；' => cur.len() >= MAX_PIECE_BYTES / 4,
            ',' | '，' | '、' | ' ' => cur.len() >= MAX_PIECE_BYTES * 3 / 4,
            _ => cur.len() >= MAX_PIECE_BYTES && !in_number(c),
        };
        if boundary {
            out.push(String::new());
        }
    }
    out.retain(|p| !p.trim().is_empty());
    out
}

/// Characters a spoken or written number may hold.
fn in_number(c: char) -> bool {
    c.is_alphanumeric()
        && (c.is_ascii() || "零〇一二三四五六七八九十百千万亿两幺壹贰叁肆伍陆柒捌玖拾佰仟点负".contains(c))
}

fn load(bytes: &'static [u8], what: &str) -> Result<Graph, ItnError> {
    Graph::new(bytes).ok_or_else(|| ItnError(format!("the {what} graph is not in the expected layout")))
}

/// The output of the best path of `text`'s bytes through `graph`; `None` when there is none.
fn transduce(graph: &Graph, text: &str) -> Option<String> {
    String::from_utf8(graph.best_output(text.as_bytes())?).ok()
}

#[cfg(test)]
mod tests;
