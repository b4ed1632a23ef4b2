//! Chinese and Japanese text reads with full-width punctuation: Whisper writes `你好,世界.` with
//! ASCII marks (its tokenizer learned from mixed text), and a final period added the English way
//! makes it worse. A mark beside a Han or Kana character becomes its full-width form, and the
//! spaces around it go (`你好, 世界` -> `你好，世界`); marks between Latin letters or digits
//! (`Hello, world`, `3.5`, `10:30`) stay as they are. Written here because it is a few lines of
//! Unicode ranges, not a normalisation library's job.

/// Han ideographs (with extension A and compatibility forms), kana, and CJK punctuation.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F      // CJK symbols and punctuation
        | 0x3040..=0x30FF    // Hiragana, Katakana
        | 0x3400..=0x4DBF    // Extension A
        | 0x4E00..=0x9FFF    // Unified ideographs
        | 0xF900..=0xFAFF    // Compatibility ideographs
        | 0xFF00..=0xFFEF) // Half- and full-width forms
}

fn full_width(c: char) -> Option<char> {
    Some(match c {
        ',' => '，',
        '.' => '。',
        '?' => '？',
        '!' => '！',
        ':' => '：',
        ';' => '；',
        '(' => '（',
        ')' => '）',
        _ => return None,
    })
}

/// Whether `text` is written in Chinese or Japanese (any Han or Kana character).
pub fn has_cjk(text: &str) -> bool {
    text.chars().any(|c| is_cjk(c) && !c.is_ascii())
}

/// [`punctuate`] on each item's text.
pub fn punctuate_items(items: &mut [crate::Item]) {
    for item in items {
        item.text = punctuate(&item.text);
    }
}

/// `text` with ASCII punctuation beside CJK characters in full width, and without the spaces
/// around those marks.
pub fn punctuate(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let neighbour = |i: usize, step: isize| -> Option<char> {
        let mut j = i as isize + step;
        while j >= 0 && (j as usize) < chars.len() {
            let c = chars[j as usize];
            if !c.is_whitespace() {
                return Some(c);
            }
            j += step;
        }
        None
    };
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        let wide = full_width(c).filter(|_| {
            neighbour(i, -1).is_some_and(is_cjk) || neighbour(i, 1).is_some_and(|n| is_cjk(n) && n.is_alphanumeric())
        });
        match wide {
            Some(w) => {
                while out.last().is_some_and(|p| p.is_whitespace()) {
                    out.pop();
                }
                out.push(w);
            }
            // A space right after a full-width mark goes too.
            None if c.is_whitespace() && out.last().is_some_and(|p| is_cjk(*p) && !p.is_alphanumeric()) => {}
            None => out.push(c),
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_beside_chinese_go_full_width() {
        assert_eq!(punctuate("你好,世界."), "你好，世界。");
        assert_eq!(punctuate("你好, 世界 !"), "你好，世界！");
        assert_eq!(punctuate("他问:你吃饭了吗?"), "他问：你吃饭了吗？");
        assert_eq!(punctuate("我用Python, 很好用."), "我用Python，很好用。");
        assert_eq!(punctuate("今天(星期一)很好"), "今天（星期一）很好");
        assert_eq!(punctuate("こんにちは.元気?"), "こんにちは。元気？");
    }

    #[test]
    fn latin_numbers_and_times_stay() {
        for t in ["Hello, world.", "3.5 and 10:30", "它是3.5度", "会议在10:30开始", "e.g. this", "3:50p.m.，我们"]
        {
            assert_eq!(punctuate(t), t);
        }
        assert!(has_cjk("它是3.5度") && !has_cjk("Hello, world."));
    }
}
