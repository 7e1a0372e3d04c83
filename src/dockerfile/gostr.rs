//! Go's `strconv.Quote`, byte for byte, for the BuildKit-compatible parse dump.

use unicode_general_category::{GeneralCategory as Gc, get_general_category};

/// Quotes `s` exactly as Go's `strconv.Quote` does (our input is always valid UTF-8, so the
/// invalid-byte `\x` branch of Go's quoting cannot arise here).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7F}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_print(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII space.
/// (Go ships Unicode 15 tables; the crate may know newer assignments, which only matters for code
/// points assigned after Unicode 15.)
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !matches!(
        get_general_category(c),
        Gc::Control
            | Gc::Format
            | Gc::Surrogate
            | Gc::PrivateUse
            | Gc::Unassigned
            | Gc::SpaceSeparator
            | Gc::LineSeparator
            | Gc::ParagraphSeparator
    )
}

/// Go's `unicode.IsSpace`.
pub fn is_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{85}' | '\u{A0}')
        || ((c as u32) > 0xFF && c.is_whitespace())
}

/// Go's `strings.TrimSpace`.
pub fn trim_space(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// The characters of BuildKit's `[\t\v\f\r ]` whitespace class (note: not `\n`).
pub fn is_ascii_ws(c: char) -> bool {
    matches!(c, '\t' | '\u{0B}' | '\u{0C}' | '\r' | ' ')
}

/// Splits on runs of `[\t\v\f\r ]`, at most `n` parts (`n == 0` means no limit), like Go's
/// `regexp.Split`: a leading separator yields an empty first part.
pub fn split_ascii_ws(s: &str, n: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        if n != 0 && parts.len() + 1 == n {
            parts.push(rest);
            return parts;
        }
        match rest.find(is_ascii_ws) {
            None => {
                parts.push(rest);
                return parts;
            }
            Some(i) => {
                parts.push(&rest[..i]);
                rest = rest[i..].trim_start_matches(is_ascii_ws);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("\u{7}\u{8}\u{c}\n\r\t\u{b}"), r#""\a\b\f\n\r\t\v""#);
        assert_eq!(quote("\u{0}\u{1f}\u{7f}"), r#""\x00\x1f\x7f""#);
        assert_eq!(quote("♥☃한국어\u{fffd}"), "\"♥☃한국어\u{fffd}\"");
        assert_eq!(quote("\u{a0}\u{ad}\u{2028}\u{200b}"), r#""\u00a0\u00ad\u2028\u200b""#);
        assert_eq!(quote("\u{e0001}"), r#""\U000e0001""#);
        assert_eq!(quote("\u{80}"), r#""\u0080""#);
    }

    #[test]
    fn splits_like_go_regexp() {
        assert_eq!(split_ascii_ws("a  b\tc", 0), vec!["a", "b", "c"]);
        assert_eq!(split_ascii_ws("a  b\tc", 2), vec!["a", "b\tc"]);
        assert_eq!(split_ascii_ws("abc", 2), vec!["abc"]);
        assert_eq!(split_ascii_ws("a\u{a0}b", 0), vec!["a\u{a0}b"]);
    }

    #[test]
    fn go_space() {
        assert!(is_space('\u{85}') && is_space('\u{a0}') && is_space('\u{3000}'));
        assert!(!is_space('x') && !is_space('\u{200b}'));
        assert_eq!(trim_space("\u{a0} a \n"), "a");
    }
}
