//! ITN over the post-processor's items: each run of items a hotword has not spelled is
//! normalised as one text, and the output's tokens are matched back to the input's (longest
//! common subsequence), so that unchanged words keep their times and a rewritten stretch
//! ("twenty five dollars" -> "$25") becomes one item spanning the words it came from.

use super::{Lang, normalize};
use crate::textops::{Item, span};

/// Rewrites `items` in written form. A run the grammar cannot read is left as it was.
pub fn apply(items: &mut Vec<Item>, lang: Lang) {
    let mut out = Vec::with_capacity(items.len());
    let mut run: Vec<Item> = Vec::new();
    for item in items.drain(..) {
        if item.protected {
            out.extend(rewrite(std::mem::take(&mut run), lang));
            out.push(item);
        } else {
            run.push(item);
        }
    }
    out.extend(rewrite(run, lang));
    *items = out;
}

fn rewrite(run: Vec<Item>, lang: Lang) -> Vec<Item> {
    if run.is_empty() {
        return run;
    }
    let text = run.iter().map(|i| i.text.as_str()).collect::<Vec<_>>().join(" ");
    let Ok(written) = normalize(&text, lang) else { return run };
    let written = if lang == Lang::En { attach_marks(&written) } else { written };
    if written == text {
        return run;
    }
    realign(run, written.split_whitespace().collect(), lang)
}

/// A lone ordinal word stays a word in English: the grammar writes "in a second" as "in a 2nd"
/// and "the first time" as "the 1st time"; prose spells them (and Whisper writes "21st" itself).
fn lone_ordinal(old: &[Item], new: &[&str], lang: Lang) -> bool {
    let ordinal = |t: &str| {
        let t = t.trim_end_matches(|c: char| c.is_ascii_punctuation());
        let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && ["st", "nd", "rd", "th"].contains(&&t[digits.len()..])
    };
    lang == Lang::En && old.len() == 1 && new.len() == 1 && ordinal(new[0])
}

/// The English grammar writes a mark that ended a rewritten word as a token of its own
/// (`$25 .`, `50 %`); the recogniser's text never has a space there.
fn attach_marks(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for token in text.split_whitespace() {
        let mark = token.chars().all(|c| matches!(c, '.' | ',' | '!' | '?' | ';' | ':' | '%' | ')'));
        match out.last_mut() {
            Some(prev) if mark => prev.push_str(token),
            _ => out.push(token.to_string()),
        }
    }
    out.join(" ")
}

/// `run`'s items with their text replaced by `tokens`: equal tokens keep their item; each
/// stretch that differs becomes one item spanning the input words it replaces.
fn realign(run: Vec<Item>, tokens: Vec<&str>, lang: Lang) -> Vec<Item> {
    let (n, m) = (run.len(), tokens.len());
    // lcs[i][j]: longest common subsequence of run[i..] and tokens[j..].
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if run[i].text == tokens[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out = Vec::with_capacity(m);
    let (mut i, mut j) = (0, 0);
    let (mut hunk_i, mut hunk_j) = (0, 0);
    let flush = |out: &mut Vec<Item>, run: &[Item], from: (usize, usize), to: (usize, usize)| {
        let (old, new) = (&run[from.0..to.0], &tokens[from.1..to.1]);
        if new.is_empty() {
            return;
        }
        if lone_ordinal(old, new, lang) {
            out.extend(old.iter().cloned());
            return;
        }
        out.push(Item { text: new.join(" "), words: span(old), protected: false });
    };
    while i < n || j < m {
        if i < n && j < m && run[i].text == tokens[j] {
            flush(&mut out, &run, (hunk_i, hunk_j), (i, j));
            out.push(run[i].clone());
            i += 1;
            j += 1;
            (hunk_i, hunk_j) = (i, j);
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            j += 1;
        } else {
            i += 1;
        }
    }
    flush(&mut out, &run, (hunk_i, hunk_j), (n, m));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str) -> Vec<Item> {
        text.split_whitespace().enumerate().map(|(i, t)| Item::new(t, Some((i, i + 1)))).collect()
    }

    fn shown(items: &[Item]) -> Vec<(String, Option<(usize, usize)>)> {
        items.iter().map(|i| (i.text.clone(), i.words)).collect()
    }

    #[test]
    fn a_rewritten_stretch_spans_its_words_and_the_rest_keep_theirs() {
        let mut it = items("I paid twenty five dollars. Thanks");
        apply(&mut it, Lang::En);
        assert_eq!(
            shown(&it),
            vec![
                ("I".into(), Some((0, 1))),
                ("paid".into(), Some((1, 2))),
                ("$25.".into(), Some((2, 5))),
                ("Thanks".into(), Some((5, 6)))
            ]
        );
    }

    #[test]
    fn hotwords_are_left_alone() {
        let mut it = items("twenty one pilots played twenty five songs");
        it[0].protected = true;
        it[1].protected = true;
        it[2].protected = true;
        apply(&mut it, Lang::En);
        let text: Vec<_> = it.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(text, ["twenty", "one", "pilots", "played", "25", "songs"]);
    }

    #[test]
    fn chinese_without_spaces_is_one_item() {
        let mut it = items("他花了三百五十块钱");
        apply(&mut it, Lang::Zh);
        assert_eq!(shown(&it), vec![("他花了350块钱".into(), Some((0, 1)))]);
    }

    #[test]
    fn lone_ordinal_words_stay_words() {
        for text in ["I will be there in a second.", "It was the first time in ten years."] {
            let mut it = items(text);
            apply(&mut it, Lang::En);
            let out: Vec<_> = it.iter().map(|i| i.text.as_str()).collect();
            assert_eq!(out.join(" "), text);
        }
    }

    #[test]
    fn marks_attach_to_the_word_before() {
        assert_eq!(attach_marks("$25 . about 50 % , ok"), "$25. about 50%, ok");
        assert_eq!(attach_marks(". start"), ". start");
    }
}
