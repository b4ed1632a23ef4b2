//! Token-level text operations.

/// One output token, with the range of input words it came from (when words align).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub text: String,
    pub words: Option<(usize, usize)>,
    /// Spelled by a hotword: later steps leave it alone.
    pub protected: bool,
}

impl Item {
    pub fn new(text: &str, words: Option<(usize, usize)>) -> Self {
        Item { text: text.to_string(), words, protected: false }
    }

    /// (leading punctuation, core word, trailing punctuation)
    pub fn parts(&self) -> (&str, &str, &str) {
        split_token(&self.text)
    }
}

/// Split `token` into leading non-alphanumerics, the core, and trailing non-alphanumerics.
pub fn split_token(token: &str) -> (&str, &str, &str) {
    let start = token.char_indices().find(|(_, c)| c.is_alphanumeric()).map(|(i, _)| i).unwrap_or(token.len());
    let end = token
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_alphanumeric())
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(start)
        .max(start);
    (&token[..start], &token[start..end], &token[end..])
}

/// The input words `items` span, first to last, when both ends have them.
pub fn span(items: &[Item]) -> Option<(usize, usize)> {
    match (items.first()?.words, items.last()?.words) {
        (Some((s, _)), Some((_, e))) => Some((s, e)),
        _ => None,
    }
}

/// Merge items `a..b` into one item with `text`, spanning their words.
pub fn merge(items: &mut Vec<Item>, a: usize, b: usize, text: String, protected: bool) {
    let words = span(&items[a..b]);
    items.splice(a..b, [Item { text, words, protected }]);
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Allowed edit distance for a hotword of `len` letters.
fn max_distance(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

fn normalize_word(s: &str) -> String {
    s.to_lowercase()
}

/// Replace word sequences close to a hotword with the hotword's spelling (case-insensitive).
pub fn replace_hotwords(items: &mut Vec<Item>, hotwords: &[String]) {
    let hots: Vec<(String, usize)> = hotwords
        .iter()
        .map(|h| h.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|h| !h.is_empty())
        .map(|h| {
            let n = h.split(' ').count();
            (h, n)
        })
        .collect();
    if hots.is_empty() {
        return;
    }
    let mut i = 0;
    while i < items.len() {
        // Best (distance, -window) over hotwords and windows of n-1..=n+1 tokens.
        let mut best: Option<(usize, usize, usize)> = None; // (dist, window, hot index)
        for (h, (hot, n)) in hots.iter().enumerate() {
            let hot_lc = normalize_word(hot);
            let letters = hot_lc.chars().filter(|c| !c.is_whitespace()).count();
            let allowed = max_distance(letters);
            for w in n.saturating_sub(1).max(1)..=n + 1 {
                if i + w > items.len() || items[i..i + w].iter().any(|it| it.protected) {
                    continue;
                }
                // Punctuation may only lead the first token and trail the last one.
                let ok_punct = items[i..i + w].iter().enumerate().all(|(k, it)| {
                    let (l, c, t) = it.parts();
                    !c.is_empty() && (k == 0 || l.is_empty()) && (k + 1 == w || t.is_empty())
                });
                if !ok_punct {
                    continue;
                }
                let cand = items[i..i + w].iter().map(|it| normalize_word(it.parts().1)).collect::<Vec<_>>().join(" ");
                // Cheap length filter before the DP.
                if cand.chars().count().abs_diff(hot_lc.chars().count()) > allowed {
                    continue;
                }
                let d = edit_distance(&cand, &hot_lc);
                if d <= allowed && best.is_none_or(|(bd, bw, _)| (d, usize::MAX - w) < (bd, usize::MAX - bw)) {
                    best = Some((d, w, h));
                }
            }
        }
        match best {
            Some((_, w, h)) => {
                let lead = items[i].parts().0.to_string();
                let trail = items[i + w - 1].parts().2.to_string();
                let text = format!("{lead}{}{trail}", hots[h].0);
                merge(items, i, i + w, text, true);
                i += 1;
            }
            None => i += 1,
        }
    }
}

/// Built-in list: (word, match every word starting with it).
const PROFANITY: &[(&str, bool)] = &[
    ("fuck", true),
    ("motherfuck", true),
    ("shit", true),
    ("bullshit", true),
    ("cunt", true),
    ("asshole", true),
    ("bitch", true),
    ("bastard", false),
    ("bastards", false),
    ("dick", false),
    ("dicks", false),
    ("dickhead", false),
    ("wanker", false),
    ("prick", false),
    ("twat", false),
    ("slut", false),
    ("whore", false),
];

fn is_profane(core_lc: &str) -> bool {
    PROFANITY.iter().any(|&(w, prefix)| if prefix { core_lc.starts_with(w) } else { core_lc == w })
}

/// `fuck` -> `f***`: keep the first letter, star the rest of the word.
pub fn mask_profanity(items: &mut [Item]) {
    for item in items.iter_mut().filter(|i| !i.protected) {
        let (lead, core, trail) = item.parts();
        if !is_profane(&core.to_lowercase()) {
            continue;
        }
        let mut chars = core.chars();
        let first = chars.next().unwrap_or('*');
        let stars = "*".repeat(chars.count());
        item.text = format!("{lead}{first}{stars}{trail}");
    }
}

fn ends_sentence(text: &str) -> bool {
    let t = text.trim_end_matches(['"', '\'', ')', ']', '”', '’', '»']);
    t.ends_with(['.', '?', '!', '…', '。', '？', '！'])
}

fn capitalize_first_letter(text: &str) -> String {
    match text.char_indices().find(|(_, c)| c.is_alphabetic()) {
        Some((i, c)) => {
            let mut out = String::with_capacity(text.len());
            out.push_str(&text[..i]);
            out.extend(c.to_uppercase());
            out.push_str(&text[i + c.len_utf8()..]);
            out
        }
        None => text.to_string(),
    }
}

/// Capitalise the first letter of the text and after `.`, `?`, `!`; also the pronoun "I".
pub fn sentence_case(items: &mut [Item]) {
    let mut start = true;
    for item in items.iter_mut() {
        let core = item.parts().1.to_string();
        let has_alpha = core.chars().any(char::is_alphabetic);
        if !item.protected && has_alpha {
            let lc = core.to_lowercase();
            let pronoun = lc == "i" || lc.starts_with("i'") || lc.starts_with("i’");
            if start || pronoun {
                item.text = capitalize_first_letter(&item.text);
            }
        }
        if has_alpha || core.chars().any(char::is_numeric) {
            start = false;
        }
        // "a.m." or "e.g." ends with a period but not a sentence.
        let abbreviation = core.chars().zip(core.chars().skip(1)).any(|(a, b)| a == '.' && b.is_alphabetic());
        if ends_sentence(&item.text) && !abbreviation {
            start = true;
        }
    }
}

/// Add a period to the last token unless the text already ends a sentence.
pub fn final_period(items: &mut [Item]) {
    if let Some(last) = items.last_mut()
        && !ends_sentence(&last.text)
    {
        // Put it before closing quotes/brackets: `"hi"` -> `"hi."`? Keep it simple: strip
        // a trailing comma/colon/semicolon/dash, then append.
        let trimmed = last.text.trim_end_matches([',', ';', ':', '-', '–', '—']);
        last.text = format!("{trimmed}.");
    }
}
