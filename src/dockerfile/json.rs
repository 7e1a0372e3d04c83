//! The exec-form (JSON array) reader used by `RUN`, `CMD`, `ENTRYPOINT`, `SHELL`, `COPY`, `ADD`
//! and `VOLUME`, with the strictness of Go's `encoding/json` that BuildKit relies on: input that is
//! not valid JSON silently falls back to the shell form, while a valid array holding anything but
//! strings is an error. Like BuildKit v0.13's `json.Decoder`, only the first JSON value is read:
//! text after the array's `]` is ignored (the parser warns about it).

/// What the text after an instruction's flags turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonArgs {
    /// A valid JSON array of strings, decoded.
    Strings(Vec<String>),
    /// Valid JSON, but not an array of strings only.
    NotStrings,
    /// Not valid JSON (or not an array): the caller uses the shell form.
    NotJson,
}

/// Go's decoder refuses nesting deeper than this; deeper input is invalid JSON (so shell form).
const MAX_DEPTH: usize = 10_000;

/// Reads `text` (leading whitespace allowed) as a JSON array of strings.
pub fn parse_array(text: &str) -> JsonArgs {
    parse_array_prefix(text).0
}

/// Like [`parse_array`], also returning the text after the array's closing `]` (empty when
/// nothing follows it, or when `text` is not JSON).
pub fn parse_array_prefix(text: &str) -> (JsonArgs, &str) {
    let text = text.trim_start_matches(super::gostr::is_space);
    if !text.starts_with('[') {
        return (JsonArgs::NotJson, "");
    }
    let mut p = Reader { s: text.as_bytes(), i: 1 };
    let mut items = Vec::new();
    let mut all_strings = true;
    p.ws();
    if !p.eat(b']') {
        loop {
            p.ws();
            if p.peek() == Some(b'"') {
                match p.string() {
                    Some(s) => items.push(s),
                    None => return (JsonArgs::NotJson, ""),
                }
            } else {
                all_strings = false;
                if !p.skip_value() {
                    return (JsonArgs::NotJson, "");
                }
            }
            p.ws();
            if p.eat(b',') {
                continue;
            }
            if p.eat(b']') {
                break;
            }
            return (JsonArgs::NotJson, "");
        }
    }
    // Go's decoder ends a top-level array at its `]` without reading further. The cursor stopped
    // at an ASCII byte, so the split is on a character boundary.
    let rest = &text[p.i..];
    (if all_strings { JsonArgs::Strings(items) } else { JsonArgs::NotStrings }, rest)
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(text, 16).ok()
    }

    /// A JSON string at the cursor, decoded; `None` if it is malformed.
    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // The input is a &str and we stopped at ASCII bytes, so this slice is valid UTF-8.
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).ok()?);
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.i += 1;
                    let esc = self.peek()?;
                    self.i += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            out.push(self.surrogate_pair(hi));
                        }
                        _ => return None,
                    }
                }
                _ => return None, // raw control character
            }
        }
    }

    /// Go decodes an unpaired surrogate as U+FFFD and keeps going.
    fn surrogate_pair(&mut self, hi: u32) -> char {
        if (0xD800..0xDC00).contains(&hi) && self.s.get(self.i..self.i + 2) == Some(b"\\u") {
            let save = self.i;
            self.i += 2;
            if let Some(lo) = self.hex4()
                && (0xDC00..0xE000).contains(&lo)
            {
                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return char::from_u32(c).unwrap_or('\u{FFFD}');
            }
            self.i = save;
        }
        char::from_u32(hi).unwrap_or('\u{FFFD}')
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.s.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn number(&mut self) -> bool {
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return false,
        }
        if self.eat(b'.') && !self.digits_required() {
            return false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if !self.digits_required() {
                return false;
            }
        }
        true
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }

    fn digits_required(&mut self) -> bool {
        let start = self.i;
        self.digits();
        self.i > start
    }

    /// Skips any JSON value without recursion (so hostile nesting cannot overflow the stack).
    fn skip_value(&mut self) -> bool {
        // Each entry: the closing byte we wait for.
        let mut stack: Vec<u8> = Vec::new();
        loop {
            // Expect a value.
            self.ws();
            match self.peek() {
                Some(b'[') | Some(b'{') => {
                    let open = self.s[self.i];
                    self.i += 1;
                    if stack.len() >= MAX_DEPTH {
                        return false;
                    }
                    let close = if open == b'[' { b']' } else { b'}' };
                    stack.push(close);
                    self.ws();
                    if self.eat(close) {
                        stack.pop();
                    } else if close == b'}' && !self.object_key() {
                        return false;
                    } else {
                        continue;
                    }
                }
                Some(b'"') => {
                    if self.string().is_none() {
                        return false;
                    }
                }
                Some(b't') if self.literal(b"true") => {}
                Some(b'f') if self.literal(b"false") => {}
                Some(b'n') if self.literal(b"null") => {}
                Some(b'-' | b'0'..=b'9') => {
                    if !self.number() {
                        return false;
                    }
                }
                _ => return false,
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(&close) = stack.last() else { return true };
                self.ws();
                if self.eat(b',') {
                    if close == b'}' && !self.object_key() {
                        return false;
                    }
                    break;
                }
                if self.eat(close) {
                    stack.pop();
                    continue;
                }
                return false;
            }
        }
    }

    /// `"key" :` inside an object.
    fn object_key(&mut self) -> bool {
        self.ws();
        if self.peek() != Some(b'"') || self.string().is_none() {
            return false;
        }
        self.ws();
        self.eat(b':')
    }
}

#[cfg(test)]
mod tests {
    use super::JsonArgs::*;
    use super::*;

    fn strings(v: &[&str]) -> JsonArgs {
        Strings(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn arrays_of_strings() {
        assert_eq!(parse_array(r#"["a", "b c"]"#), strings(&["a", "b c"]));
        assert_eq!(parse_array("  [ ]  "), strings(&[]));
        assert_eq!(parse_array(r#"[""]"#), strings(&[""]));
        assert_eq!(
            parse_array(r#"["\" \\ \/ \b \f \n \r \t \u0000 \u2603"]"#),
            strings(&["\" \\ / \u{8} \u{c} \n \r \t \u{0} ☃"])
        );
        assert_eq!(parse_array(r#"["\ud83d\ude00", "\ud800x"]"#), strings(&["😀", "\u{fffd}x"]));
    }

    #[test]
    fn valid_json_but_not_strings() {
        for t in
            [r#"["a", 1]"#, r#"[true]"#, r#"[null]"#, r#"["a", ["b"]]"#, r#"[{"a": [1, {}]}]"#, "[-0.5e+3]"]
        {
            assert_eq!(parse_array(t), NotStrings, "{t}");
        }
    }

    #[test]
    fn invalid_json_falls_back() {
        for t in [
            "['a']",
            r#"["a""#,
            r#"["a",]"#,
            r#"["a", 01]"#,
            "[\"a\tb\"]",
            r#"["\x"]"#,
            r#"[{"a" 1}]"#,
            r#"[{1: 2}]"#,
            "[1.]",
            "[tru]",
            "echo [",
            "",
            r#"["a", ["b"]"#,
        ] {
            assert_eq!(parse_array(t), NotJson, "{t}");
        }
    }

    #[test]
    fn text_after_the_array_is_ignored_as_go_json_decoder_does() {
        // BuildKit v0.13 reads the first JSON value with json.Decoder and never looks further.
        for (t, rest) in [
            (r#"["a"] # comment"#, " # comment"),
            (r#"["a"]]"#, "]"),
            (r#"["a"]foo bar"#, "foo bar"),
            ("[]x", "x"),
            (r#"["a"]  "#, "  "),
        ] {
            let (args, after) = parse_array_prefix(t);
            assert_eq!(
                (args, after),
                (if t.starts_with("[]") { strings(&[]) } else { strings(&["a"]) }, rest),
                "{t}"
            );
        }
        assert_eq!(parse_array(r#"["a"] # comment"#), strings(&["a"]));
        assert_eq!(parse_array("[1] # x"), NotStrings, "the first value decides");
        assert_eq!(parse_array(r#"["a" # x"#), NotJson, "an unfinished array is not JSON");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_array(&deep), NotJson);
        let ok = format!("[{}{}]", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse_array(&ok), NotStrings);
    }
}
