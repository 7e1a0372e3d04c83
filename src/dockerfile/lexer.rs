//! Line-level lexing of a Dockerfile, as BuildKit does it: parser directives at the top of the
//! file, comment lines, line continuations with the escape token, instruction flags (`--x=y`) and
//! the quote-aware word splitting used by `ENV`, `LABEL` and `ARG`.

use super::gostr::{is_ascii_ws, is_space};

/// Directives BuildKit knows; any other `# name=value` line ends the directive block.
const DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// A parser directive found at the top of the file (`# escape=\``, `# syntax=…`, `# check=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased name.
    pub name: String,
    /// The value, trimmed.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// Recognises parser directives until the first line that is not one.
#[derive(Debug, Default)]
pub struct DirectiveParser {
    done: bool,
    /// Directives seen so far, in order.
    pub seen: Vec<Directive>,
}

/// A directive that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectiveError {
    /// The same directive twice.
    Duplicate(String),
    /// `escape` with a value other than `\` or a backtick.
    BadEscape(String),
}

impl DirectiveParser {
    /// Looks at one line (newline and leading whitespace already trimmed). Returns the directive
    /// when the line is one.
    pub fn parse_line(&mut self, line: &str, line_no: usize) -> Result<Option<&Directive>, DirectiveError> {
        if self.done {
            return Ok(None);
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(None);
        };
        let rest = rest.trim_start_matches(is_space);
        let Some((name, value)) = split_directive(rest) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !DIRECTIVES.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.seen.iter().any(|d| d.name == name) {
            return Err(DirectiveError::Duplicate(name));
        }
        if name == "escape" && value != "\\" && value != "`" {
            return Err(DirectiveError::BadEscape(value.to_string()));
        }
        self.seen.push(Directive { name, value: value.to_string(), line: line_no });
        Ok(self.seen.last())
    }
}

/// `name\s*=\s*value` with `name` = a letter then letters/digits and a non-empty trimmed value
/// (the regex `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`, where `\s` is ASCII whitespace).
fn split_directive(s: &str) -> Option<(&str, &str)> {
    let name_end = s.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(s.len());
    let name = &s[..name_end];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let is_re_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\u{0C}' | '\r');
    let rest = s[name_end..].trim_start_matches(is_re_space).strip_prefix('=')?;
    let value = rest.trim_matches(is_re_space);
    (!value.is_empty()).then_some((name, value))
}

/// Whether a physical line is a comment: its first non-whitespace character is `#`.
pub fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_space).starts_with('#')
}

/// Removes a trailing line-continuation escape. Returns the remaining text and whether the line
/// *ends* the instruction (i.e. there was no continuation). The escape counts only when it is the
/// last non-blank character and is not itself escaped; spaces before it are kept.
pub fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    match before.chars().next_back() {
        None => ("", false),
        Some(c) if c == escape => (line, true),
        Some(_) => (before, false),
    }
}

/// Splits leading `--flag` words off the argument text (BuildKit's `extractBuilderFlags`).
/// Returns `(rest, flags)`. Quote characters are removed inside a flag and the escape token makes
/// the next character literal. BuildKit walks this text byte by byte, so a non-ASCII byte is
/// re-read as a Latin-1 character (`é` becomes `Ã©`) and bytes 0x85/0xA0 count as spaces: we
/// reproduce that to stay tree-compatible.
pub fn extract_flags(line: &str, escape: char) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let bytes = line.as_bytes();
    let latin1 = |pos: usize| bytes.get(pos).map(|&b| b as char);
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    // The cut can fall inside a multi-byte character (at a 0x85/0xA0 continuation byte, see
    // above); Go would carry the broken bytes along, we carry U+FFFD.
    let rest_at = |pos: usize| String::from_utf8_lossy(bytes.get(pos..).unwrap_or_default()).into_owned();
    while pos <= bytes.len() {
        let ch = latin1(pos).unwrap_or('\0');
        let at_end = pos == bytes.len();
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if is_space(ch) {
                pos += 1;
                continue;
            }
            if ch != '-' || latin1(pos + 1) != Some('-') {
                return (rest_at(pos), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        match phase {
            Phase::Word => {
                if is_space(ch) {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (rest_at(pos), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    pos += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = ch;
                    blank_ok = true;
                    phase = Phase::Quote;
                    pos += 1;
                    continue;
                }
                let mut c = ch;
                if is_escape_byte(bytes, pos, escape) {
                    if pos + 1 == bytes.len() {
                        pos += 1;
                        continue;
                    }
                    pos += 1;
                    c = latin1(pos).unwrap_or('\0');
                }
                word.push(c);
            }
            Phase::Quote => {
                if ch == quote {
                    phase = Phase::Word;
                    pos += 1;
                    continue;
                }
                let mut c = ch;
                if is_escape_byte(bytes, pos, escape) {
                    if pos + 1 == bytes.len() {
                        phase = Phase::Word;
                        pos += 1;
                        continue;
                    }
                    pos += 1;
                    c = latin1(pos).unwrap_or('\0');
                }
                word.push(c);
            }
            Phase::Spaces => {}
        }
        pos += 1;
    }
    (String::new(), words)
}

fn is_escape_byte(bytes: &[u8], pos: usize, escape: char) -> bool {
    bytes.get(pos).map(|&b| b as char) == Some(escape)
}

/// Quote-aware words for `ENV`, `LABEL` and `ARG` (BuildKit's `parseWords`): words split on
/// unquoted whitespace, quotes and escapes kept in the word, an escape at the very end dropped.
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        let at_last = chars.peek().is_none();
        match quote {
            None => {
                if !in_word {
                    if is_space(ch) {
                        continue;
                    }
                    in_word = true;
                }
                if is_space(ch) {
                    in_word = false;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if !at_last {
                        push_escaped(&mut word, ch, &mut chars);
                    }
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    if at_last {
                        quote = None;
                    } else {
                        push_escaped(&mut word, ch, &mut chars);
                    }
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Keeps an escape token and the character it escapes (both stay in ENV/LABEL/ARG words).
fn push_escaped(word: &mut String, escape: char, chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    word.push(escape);
    if let Some(next) = chars.next() {
        word.push(next);
    }
}

/// Splits off the instruction keyword: up to the first run of `[\t\v\f\r ]`.
pub fn split_keyword(line: &str) -> (&str, Option<&str>) {
    match line.find(is_ascii_ws) {
        None => (line, None),
        Some(i) => (&line[..i], Some(line[i..].trim_start_matches(is_ascii_ws))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        let mut p = DirectiveParser::default();
        assert_eq!(p.parse_line("# Escape = `", 1).unwrap().map(|d| d.value.clone()), Some("`".into()));
        assert_eq!(
            p.parse_line("#syntax=docker/dockerfile:1 ", 2).unwrap().map(|d| d.name.clone()),
            Some("syntax".into())
        );
        assert_eq!(p.parse_line("# escape=\\", 3), Err(DirectiveError::Duplicate("escape".into())));
        assert_eq!(p.parse_line("# other=1", 4), Ok(None));
        assert_eq!(p.parse_line("# check=x", 5), Ok(None), "directives end after the first non-directive");
        assert_eq!(
            DirectiveParser::default().parse_line("# escape=x", 1),
            Err(DirectiveError::BadEscape("x".into()))
        );
        assert_eq!(DirectiveParser::default().parse_line("# escape=", 1), Ok(None));
        assert_eq!(DirectiveParser::default().parse_line("FROM x", 1), Ok(None));
    }

    #[test]
    fn continuation() {
        assert_eq!(trim_continuation("echo hello\\", '\\'), ("echo hello", false));
        assert_eq!(trim_continuation("echo hello \\  \t", '\\'), ("echo hello ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation(" \\", '\\'), (" ", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a`", '`'), ("a", false));
        assert_eq!(trim_continuation("a\\", '`'), ("a\\", true));
        assert_eq!(trim_continuation("abc", '\\'), ("abc", true));
    }

    #[test]
    fn flags() {
        let f = |s: &str| extract_flags(s, '\\');
        assert_eq!(f("--user=me foo /tmp/"), ("foo /tmp/".into(), vec!["--user=me".to_string()]));
        assert_eq!(f("--doit=true -- foo"), (" foo".into(), vec!["--doit=true".to_string()]));
        assert_eq!(f("-- foo"), (" foo".into(), vec![]));
        assert_eq!(f("--a=\"x y\" --b='' z"), ("z".into(), vec!["--a=x y".to_string(), "--b=".to_string()]));
        assert_eq!(f("--a=x\\ y z"), ("z".into(), vec!["--a=x y".to_string()]));
        assert_eq!(f("--a"), ("".into(), vec!["--a".to_string()]));
        assert_eq!(f("--a=é x"), ("x".into(), vec!["--a=Ã©".to_string()]));
        assert_eq!(f("-x"), ("-x".into(), vec![]));
        assert_eq!(f("--a=\"open"), ("".into(), vec!["--a=open".to_string()]));
    }

    #[test]
    fn words() {
        let w = |s: &str| parse_words(s, '\\');
        assert_eq!(w("abc=\"123 456\" def"), vec!["abc=\"123 456\"", "def"]);
        assert_eq!(w("a\\ b c"), vec!["a\\ b", "c"]);
        assert_eq!(w("name='a\\'b'"), vec!["name='a\\'b'"]);
        assert_eq!(w("x=\"a\\\"b\" y"), vec!["x=\"a\\\"b\"", "y"]);
        assert_eq!(w("a\\"), vec!["a"]);
        assert_eq!(w("'unterminated x"), vec!["'unterminated x"]);
        assert_eq!(w("  "), Vec::<String>::new());
    }
}
