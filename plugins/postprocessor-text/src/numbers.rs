//! Spoken-number normalisation: "twenty five" -> "25", "one hundred and three" -> "103".
//!
//! Only sequences of two or more number words, or single words worth 10 or more, are
//! converted; a lone "one", "a" or "zero" stays a word. A phrase followed by an ordinal
//! ("twenty first") is left alone. Hyphenated forms ("twenty-five") count as their parts.

use crate::textops::{Item, merge};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Unit(u64),
    Teen(u64),
    Tens(u64),
    Hundred,
    Scale(u64),
}

fn kind(word: &str) -> Option<Kind> {
    use Kind::*;
    Some(match word {
        "one" => Unit(1),
        "two" => Unit(2),
        "three" => Unit(3),
        "four" => Unit(4),
        "five" => Unit(5),
        "six" => Unit(6),
        "seven" => Unit(7),
        "eight" => Unit(8),
        "nine" => Unit(9),
        "ten" => Teen(10),
        "eleven" => Teen(11),
        "twelve" => Teen(12),
        "thirteen" => Teen(13),
        "fourteen" => Teen(14),
        "fifteen" => Teen(15),
        "sixteen" => Teen(16),
        "seventeen" => Teen(17),
        "eighteen" => Teen(18),
        "nineteen" => Teen(19),
        "twenty" => Tens(20),
        "thirty" => Tens(30),
        "forty" => Tens(40),
        "fifty" => Tens(50),
        "sixty" => Tens(60),
        "seventy" => Tens(70),
        "eighty" => Tens(80),
        "ninety" => Tens(90),
        "hundred" => Hundred,
        "thousand" => Scale(1_000),
        "million" => Scale(1_000_000),
        "billion" => Scale(1_000_000_000),
        _ => return None,
    })
}

const ORDINALS: &[&str] = &[
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "thirtieth",
    "fortieth",
    "fiftieth",
    "sixtieth",
    "seventieth",
    "eightieth",
    "ninetieth",
    "hundredth",
    "thousandth",
    "millionth",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Last {
    Start,
    Unit,
    Teen,
    Tens,
    TensUnit,
    Hundred,
    Scale,
    And,
}

/// Incremental parser for one number phrase.
#[derive(Debug, Clone, Copy)]
struct Parser {
    total: u64,
    current: u64,
    last: Last,
    last_scale: u64,
    group_has_hundred: bool,
    words: usize,
}

impl Parser {
    fn new() -> Self {
        Parser { total: 0, current: 0, last: Last::Start, last_scale: u64::MAX, group_has_hundred: false, words: 0 }
    }

    fn value(&self) -> u64 {
        self.total + self.current
    }

    /// Try to add a number word; `false` (and no change) if the phrase cannot take it.
    fn feed(&mut self, k: Kind) -> bool {
        use Last::*;
        let group_open = matches!(self.last, Start | Hundred | Scale | And);
        let next = match k {
            Kind::Unit(u) if group_open => {
                self.current += u;
                Unit
            }
            Kind::Unit(u) if self.last == Tens => {
                self.current += u;
                TensUnit
            }
            Kind::Teen(t) if group_open => {
                self.current += t;
                Teen
            }
            Kind::Tens(t) if group_open => {
                self.current += t;
                Tens
            }
            Kind::Hundred
                if matches!(self.last, Unit | Teen | Tens | TensUnit)
                    && !self.group_has_hundred
                    && self.current < 100 =>
            {
                self.current *= 100;
                self.group_has_hundred = true;
                Hundred
            }
            Kind::Scale(s)
                if matches!(self.last, Unit | Teen | Tens | TensUnit | Hundred)
                    && s < self.last_scale
                    && self.current > 0 =>
            {
                self.total += self.current * s;
                self.current = 0;
                self.last_scale = s;
                self.group_has_hundred = false;
                Scale
            }
            _ => return false,
        };
        self.last = next;
        self.words += 1;
        true
    }
}

fn core_lc(item: &Item) -> String {
    item.parts().1.to_lowercase()
}

/// The number words of one token ("twenty-five" -> two), or None if it is not all number words.
fn token_kinds(item: &Item) -> Option<Vec<Kind>> {
    if item.protected {
        return None;
    }
    let core = core_lc(item);
    core.split('-').map(kind).collect()
}

/// Parse the longest phrase starting at item `i`: (items used, parser).
fn parse_at(items: &[Item], i: usize) -> Option<(usize, Parser)> {
    let mut p = Parser::new();
    let mut used = 0;
    let mut j = i;
    while j < items.len() {
        let (lead, core, trail) = items[j].parts();
        if j > i && !lead.is_empty() {
            break;
        }
        let lc = core.to_lowercase();
        if lc == "and" && matches!(p.last, Last::Hundred | Last::Scale) && trail.is_empty() && j + 1 < items.len() {
            // Only if a units/teens/tens word follows.
            let mut q = p;
            q.last = Last::And;
            let follows = token_kinds(&items[j + 1])
                .is_some_and(|ks| matches!(ks.first(), Some(Kind::Unit(_) | Kind::Teen(_) | Kind::Tens(_))))
                && items[j + 1].parts().0.is_empty();
            if follows {
                p = q;
                p.words += 1;
                j += 1;
                continue;
            }
            break;
        }
        let Some(kinds) = token_kinds(&items[j]) else {
            break;
        };
        let mut q = p;
        if !kinds.iter().all(|&k| q.feed(k)) {
            break;
        }
        p = q;
        j += 1;
        used = j - i;
        if !trail.is_empty() {
            break;
        }
    }
    (used > 0).then_some((used, p))
}

/// Replace number phrases in `items` with digits.
pub fn normalize(items: &mut Vec<Item>) {
    let mut i = 0;
    while i < items.len() {
        let Some((used, p)) = parse_at(items, i) else {
            i += 1;
            continue;
        };
        let followed_by_ordinal = items[i + used - 1].parts().2.is_empty()
            && items.get(i + used).is_some_and(|n| ORDINALS.contains(&core_lc(n).as_str()));
        if (p.words >= 2 || p.value() >= 10) && !followed_by_ordinal {
            let lead = items[i].parts().0.to_string();
            let trail = items[i + used - 1].parts().2.to_string();
            let text = format!("{lead}{}{trail}", p.value());
            merge(items, i, i + used, text, false);
            i += 1;
        } else {
            i += used;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut items: Vec<Item> = s.split_whitespace().map(|t| Item::new(t, None)).collect();
        normalize(&mut items);
        items.iter().map(|i| i.text.as_str()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn converts_clear_numbers() {
        assert_eq!(norm("twenty five"), "25");
        assert_eq!(norm("one hundred and three"), "103");
        assert_eq!(norm("three thousand"), "3000");
        assert_eq!(norm("twenty-five people"), "25 people");
        assert_eq!(norm("about twelve apples"), "about 12 apples");
        assert_eq!(norm("two thousand and twenty four"), "2024");
        assert_eq!(norm("nineteen hundred"), "1900");
        assert_eq!(norm("one million two hundred thousand and five"), "1200005");
        assert_eq!(norm("Seventy seven."), "77.");
        assert_eq!(norm("it costs forty, fifty"), "it costs 40, 50");
    }

    #[test]
    fn leaves_ambiguous_words_alone() {
        assert_eq!(norm("one"), "one");
        assert_eq!(norm("one of them"), "one of them");
        assert_eq!(norm("a hundred"), "a hundred");
        assert_eq!(norm("two and three"), "two and three");
        assert_eq!(norm("one two three"), "one two three");
        assert_eq!(norm("the twenty first century"), "the twenty first century");
        assert_eq!(norm("hundred"), "hundred");
        assert_eq!(norm("three hundred and"), "300 and");
        assert_eq!(norm("zero"), "zero");
    }
}
