//! Which part of a partial has settled: the prefix that it and the partial before it agree on
//! (the local-agreement policy of whisper_streaming), cut back to a word boundary, so that a
//! client can show settled text solid and the rest as tentative.

/// Characters (Unicode scalar values) at the start of `next` that `prev` agrees on, ending at a
/// word boundary: a space-separated word counts only whole, a Chinese or Japanese character on
/// its own. Trailing spaces are not counted.
pub fn settled_chars(prev: &str, next: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (prev.chars().collect(), next.chars().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let boundary = |s: &[char]| s.get(common).is_none_or(|c| c.is_whitespace());
    let mut end = if (boundary(&a) && boundary(&b)) || common.checked_sub(1).is_some_and(|i| is_cjk(b[i])) {
        common
    } else {
        // Back to the end of the last word both have whole.
        b[..common]
            .iter()
            .rposition(|c| c.is_whitespace() || is_cjk(*c))
            .map_or(0, |i| if is_cjk(b[i]) { i + 1 } else { i })
    };
    while end > 0 && b[end - 1].is_whitespace() {
        end -= 1;
    }
    end
}

fn is_cjk(c: char) -> bool {
    ('\u{2e80}'..='\u{9fff}').contains(&c)
        || ('\u{f900}'..='\u{faff}').contains(&c)
        || ('\u{ff00}'..='\u{ffef}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::settled_chars;

    #[test]
    fn agreement_up_to_a_whole_word() {
        assert_eq!(settled_chars("", "go for"), 0);
        assert_eq!(settled_chars("go for", "go forward"), 2);
        assert_eq!(settled_chars("go forward", "go forward ten"), 10);
        assert_eq!(settled_chars("go forward ten", "go forward ten meters"), 14);
        assert_eq!(settled_chars("Hello there", "Hello, there"), 0);
        assert_eq!(settled_chars("same text", "same text"), 9);
        // Chinese settles by character.
        assert_eq!(settled_chars("今天天气", "今天天空很好"), 3);
        assert_eq!(settled_chars("今天 天气", "今天 天空"), 4);
    }
}
