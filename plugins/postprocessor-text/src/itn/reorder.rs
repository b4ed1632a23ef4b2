//! The tagger writes tokens (`date { year: "2026" month: "12" day: "08" }`) with their fields in
//! the order they were spoken; the verbalizer expects each kind's canonical order. This is
//! wetext's `TokenParser.reorder` (Apache-2.0) with ITN's orders, written here because it is
//! part of the grammar's contract, not a parser anyone ships as a crate. One deviation: a value's
//! escapes (`\"`, `\\`) are kept as the tagger wrote them; wetext escapes them a second time, so
//! a quote in the input came out as `\"`.

/// Canonical field order per token kind (wetext `constants.ITN_ORDERS`, the same for English).
const ORDERS: &[(&str, &[&str])] = &[
    ("date", &["year", "month", "day", "preserve_order"]),
    ("fraction", &["sign", "numerator", "denominator"]),
    ("measure", &["numerator", "denominator", "value", "units"]),
    ("money", &["currency", "value", "decimal", "quantity"]),
    ("time", &["hour", "minute", "second", "noon", "zone"]),
    ("telephone", &["country_code", "number_part"]),
    ("electronic", &["username", "domain", "protocol"]),
];

struct Token {
    name: String,
    fields: Vec<(String, String)>,
}

impl Token {
    fn value(&self, key: &str) -> Option<&str> {
        self.fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn write(&self, out: &mut String) {
        out.push_str(&self.name);
        out.push_str(" {");
        let canonical = ORDERS.iter().find(|(n, _)| *n == self.name).map(|(_, o)| *o);
        let keys: Vec<&str> = match canonical {
            Some(canonical) if self.value("preserve_order") != Some("true") => canonical
                .iter()
                .copied()
                .chain(self.fields.iter().map(|(k, _)| k.as_str()).filter(|k| !canonical.contains(k)))
                .collect(),
            _ => self.fields.iter().map(|(k, _)| k.as_str()).collect(),
        };
        for key in keys {
            if let Some(v) = self.value(key) {
                out.push_str(&format!(" {key}: \"{v}\""));
            }
        }
        out.push_str(" }");
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        self.at += usize::from(hit);
        hit
    }

    fn skip_spaces(&mut self) -> bool {
        while self.eat(' ') {}
        self.peek().is_some()
    }

    fn key(&mut self) -> String {
        let mut key = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_ascii_alphabetic() || *c == '_') {
            key.push(c);
            self.at += 1;
        }
        key
    }

    /// Up to the closing quote; a backslash keeps the character after it.
    fn value(&mut self) -> String {
        let mut value = String::new();
        while let Some(c) = self.peek().filter(|c| *c != '"') {
            value.push(c);
            self.at += 1;
            if c == '\\'
                && let Some(next) = self.peek()
            {
                value.push(next);
                self.at += 1;
            }
        }
        value
    }

    fn tokens(&mut self) -> Vec<Token> {
        let mut tokens = Vec::new();
        while self.skip_spaces() {
            let start = self.at;
            let name = self.key();
            for c in [' ', '{', ' '] {
                self.eat(c);
            }
            let mut fields = Vec::new();
            while self.skip_spaces() {
                if self.eat('}') {
                    break;
                }
                let key = self.key();
                for c in [':', ' ', '"'] {
                    self.eat(c);
                }
                let value = self.value();
                self.eat('"');
                fields.push((key, value));
            }
            tokens.push(Token { name, fields });
            if self.at == start {
                // Not a token (cannot happen with the tagger's output): stop rather than spin.
                break;
            }
        }
        tokens
    }
}

/// The tagger's output with every token's fields in canonical order.
pub fn reorder(tagged: &str) -> String {
    let tokens = Parser { chars: tagged.chars().collect(), at: 0 }.tokens();
    let mut out = String::with_capacity(tagged.len() + 16);
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        t.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::reorder;

    #[test]
    fn puts_fields_in_canonical_order_unless_told_to_keep_them() {
        assert_eq!(
            reorder(r#"date { day: "08" month: "12" year: "2026" } char { value: "，" }"#),
            r#"date { year: "2026" month: "12" day: "08" } char { value: "，" }"#
        );
        assert_eq!(
            reorder(r#"date { day: "8" month: "12" preserve_order: "true" }"#),
            r#"date { day: "8" month: "12" preserve_order: "true" }"#
        );
        // Unknown fields follow the canonical ones, in their own order.
        assert_eq!(
            reorder(r#"money { extra: "x" value: "25" currency: "$" }"#),
            r#"money { currency: "$" value: "25" extra: "x" }"#
        );
    }

    #[test]
    fn keeps_escapes_as_written() {
        assert_eq!(reorder(r#"char { value: "\"" }"#), r#"char { value: "\"" }"#);
        assert_eq!(reorder(r#"char { value: "\\" }"#), r#"char { value: "\\" }"#);
    }

    #[test]
    fn survives_malformed_input() {
        assert_eq!(reorder(""), "");
        assert_eq!(reorder("   "), "");
        let _ = reorder(r#"char { value: "unterminated"#);
        let _ = reorder("{{{{ }}}} \" \\");
    }
}
