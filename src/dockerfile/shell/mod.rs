//! Shell-word expansion for Dockerfile instruction arguments, reproducing BuildKit's
//! `frontend/dockerfile/shell` lexer.
//!
//! This module owns quote removal, escape processing, `$VAR` / `${VAR…}` substitution (with the
//! `-` `+` `?` `#` `%` `/` modifiers), the record of which variables a word used, and the word
//! splitting applied to argument lists such as `EXPOSE`. Deciding *which* arguments are expanded,
//! and with which environment, belongs to the instruction code that calls it.
//!
//! BuildKit's behaviour is reproduced including its quirks (eager expansion of unused defaults,
//! `$0` in `//` replacements, stars that stop at newlines, `[` being literal in patterns…), except:
//! - [`Lexer::process_words`] keeps text that precedes a `${v<op>…}` in the same word. BuildKit
//!   since mid-2024 loses it (`ab${x:-y}cd` → `ycd`) because nested operands reset a buffer it
//!   shares between nesting levels; that is a bug, not a rule.
//! - With [`Options::skip_unset_env`], `${v//p/r}` is written back with both slashes (BuildKit: one).
//! - `${v` at the end of the input reports "missing '}'" (BuildKit: "unsupported modifier").
//! - Letters in names are general category L from the `unicode-general-category` tables, which may
//!   know letters assigned after Go's Unicode 15.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

/// A read-only view of the variables visible to a word (build args and `ENV` values).
pub trait Env {
    /// The value of `name`, or `None` when it is unset. Names are case-sensitive (Linux rules).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// Later entries shadow earlier ones, as with repeated `ENV` lines.
impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Later entries shadow earlier ones, as with repeated `ENV` lines.
impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// How many `${…}` words may nest inside each other before expansion gives up; untrusted input
/// must not be able to exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// Why a word could not be expanded, in BuildKit's wording. The messages do not repeat the word:
/// callers report it (BuildKit prefixes `failed to process "…"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// A `${` was never closed.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${}`, `${{…` or `${:…`: there is no variable name.
    #[error("syntax error: bad substitution (no variable name after '${{')")]
    BadSubstitution,
    /// `${v/pattern` with no `/` ending the pattern.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// A `'` with no closing `'`.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// A `"` with no closing `"`.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// `${v` followed by something other than `}` or a supported operator (`${v=x}`, `${v:#x}`…);
    /// holds the operator as written, e.g. `:=`.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${v?msg}` or `${v:?msg}` with `v` unset, or `${v:?msg}` with `v` empty.
    #[error("{name}: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The expanded `msg`, else `is not allowed to be unset` / `is not allowed to be empty`.
        message: String,
    },
    /// A `#`, `%` or `/` pattern with a bad `\` escape (only `\*`, `\?`, `\\`, `\}`, `\/` exist).
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern after expansion.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// More than [`MAX_DEPTH`] substitutions nested inside each other.
    #[error("substitutions nested more than {MAX_DEPTH} levels deep")]
    TooDeep,
}

/// BuildKit's lexer switches (`Lex.RawQuotes`, `Lex.RawEscapes`, `Lex.SkipUnsetEnv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Keep quote characters in the output (they still group and protect what they enclose).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (they still protect the character after them).
    pub raw_escapes: bool,
    /// Leave references to unset variables as written (`$v`, `${v}`, `${v:-w}`…) instead of
    /// expanding them; used where expansion is only partial, e.g. heredoc detection.
    pub skip_unset_env: bool,
}

/// The result of an expansion together with the variables it consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded<T> {
    /// The expansion itself.
    pub value: T,
    /// Variables the word referenced that were set (even when their value went unused).
    pub matched: BTreeSet<String>,
    /// Variables the word referenced that were unset.
    pub unmatched: BTreeSet<String>,
}

/// A word expander for one escape token and one set of [`Options`].
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    escape: char,
    opts: Options,
}

impl Lexer {
    /// A lexer with the given escape token: `\` by default, `` ` `` after `# escape=``.
    pub fn new(escape: char) -> Self {
        Self { escape, opts: Options::default() }
    }

    /// The same lexer with `opts` in force.
    pub fn with_options(self, opts: Options) -> Self {
        Self { opts, ..self }
    }

    /// Expands one word: quotes removed, escapes processed, variables substituted, no field
    /// splitting (whitespace is kept as it is).
    pub fn process_word(&self, word: &str, env: &(impl Env + ?Sized)) -> Result<String, ShellError> {
        Ok(self.run(word, env)?.0.value)
    }

    /// Like [`Lexer::process_word`], also reporting which variables were consulted
    /// (BuildKit's `ProcessWordWithMatches`).
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &(impl Env + ?Sized),
    ) -> Result<Expanded<String>, ShellError> {
        Ok(self.run(word, env)?.0)
    }

    /// Expands `word` and splits it into words the way Dockerfile argument lists are (`EXPOSE`…):
    /// unquoted, unescaped whitespace separates words, including whitespace produced by an
    /// unquoted variable; empty words are dropped.
    pub fn process_words(&self, word: &str, env: &(impl Env + ?Sized)) -> Result<Vec<String>, ShellError> {
        Ok(self.run(word, env)?.1)
    }

    fn run<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<(Expanded<String>, Vec<String>), ShellError> {
        // Go's text/scanner silently drops a byte-order mark at the very start of its input.
        let src = word.strip_prefix('\u{feff}').unwrap_or(word).chars().collect();
        let (escape, opts) = (self.escape, self.opts);
        let (matched, unmatched) = (BTreeSet::new(), BTreeSet::new());
        let mut scan =
            Scanner { escape, opts, src, pos: 0, env, raw_escapes: false, depth: 0, matched, unmatched };
        let (value, words) = scan.word_until(None, opts.raw_escapes)?;
        Ok((Expanded { value, matched: scan.matched, unmatched: scan.unmatched }, words))
    }
}

/// Words being collected for [`Lexer::process_words`].
#[derive(Default)]
struct Words {
    done: Vec<String>,
    cur: String,
}

impl Words {
    /// An unprotected character: whitespace ends the current word (never producing empty ones).
    fn push_char(&mut self, c: char) {
        if !c.is_whitespace() {
            self.cur.push(c);
        } else if !self.cur.is_empty() {
            self.done.push(std::mem::take(&mut self.cur));
        }
    }

    fn push_raw(&mut self, s: &str) {
        self.cur.push_str(s);
    }

    fn finish(mut self) -> Vec<String> {
        self.push_char(' ');
        self.done
    }
}

struct Scanner<'a, E: Env + ?Sized> {
    escape: char,
    opts: Options,
    src: Vec<char>,
    pos: usize,
    env: &'a E,
    /// Whether escape tokens are kept right now: `#`, `%` and `/` operands switch it on so the
    /// pattern matcher still sees `\*`, while `-`, `+`, `?` operands switch it off.
    raw_escapes: bool,
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<E: Env + ?Sized> Scanner<'_, E> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = self.env.lookup(name).map(str::to_owned);
        let set = if value.is_some() { &mut self.matched } else { &mut self.unmatched };
        set.insert(name.to_owned());
        value
    }

    /// Scans up to `stop` (consumed) or the end of input. The error when `stop` is never found is
    /// replaced by the caller with the one naming what was missing.
    fn word_until(&mut self, stop: Option<char>, raw: bool) -> Result<(String, Vec<String>), ShellError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw);
        let result = self.scan_until(stop);
        self.raw_escapes = saved;
        result
    }

    fn scan_until(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), ShellError> {
        let (mut out, mut words) = (String::new(), Words::default());
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((out, words.finish()));
            }
            let special = match ch {
                '$' => {
                    let value = self.dollar()?;
                    // Only variable values are subject to word splitting.
                    value.chars().for_each(|c| words.push_char(c));
                    out.push_str(&value);
                    continue;
                }
                '<' => self.heredoc_marker(),
                '\'' => self.single_quote()?,
                '"' => self.double_quote()?,
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.push_raw(&ch.to_string());
                            out.push(ch);
                        }
                        // An escape token as the last character is dropped.
                        let Some(next) = self.bump() else { break };
                        words.push_raw(&next.to_string());
                        out.push(next);
                    } else {
                        words.push_char(ch);
                        out.push(ch);
                    }
                    continue;
                }
            };
            words.push_raw(&special);
            out.push_str(&special);
        }
        match stop {
            Some(_) => Err(ShellError::MissingBrace),
            None => Ok((out, words.finish())),
        }
    }

    /// The operand of a `${…}` operator, up to `stop`. An operand cut short by the end of input
    /// reports `missing`, whatever failed inside it, as BuildKit does.
    fn operand(&mut self, stop: char, raw: bool, missing: ShellError) -> Result<String, ShellError> {
        if self.depth >= MAX_DEPTH {
            return Err(ShellError::TooDeep);
        }
        self.depth += 1;
        let result = self.word_until(Some(stop), raw);
        self.depth -= 1;
        match result {
            Ok((value, _)) => Ok(value),
            Err(e) if self.peek().is_none() && !matches!(e, ShellError::TooDeep) => Err(missing),
            Err(e) => Err(e),
        }
    }

    /// `<<` plus any blanks after it stays glued to the heredoc word that follows, so
    /// `RUN << EOF` is still recognised as one heredoc marker.
    fn heredoc_marker(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.pos += 1;
        let mut marker = "<<".to_owned();
        while let Some(c @ (' ' | '\t' | '\r')) = self.peek() {
            marker.push(c);
            self.pos += 1;
        }
        marker
    }

    /// `'…'`: everything literal; there is no way to escape a `'`.
    fn single_quote(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        let mut out = String::new();
        if self.opts.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.bump() {
                None => return Err(ShellError::UnterminatedSingleQuote),
                Some('\'') => break,
                Some(c) => out.push(c),
            }
        }
        if self.opts.raw_quotes {
            out.push('\'');
        }
        Ok(out)
    }

    /// `"…"`: `$` expands; the escape token only escapes `"`, `$` and itself and is otherwise kept.
    fn double_quote(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        let mut out = String::new();
        if self.opts.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnterminatedDoubleQuote),
                Some('"') => break,
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) => {
                    self.pos += 1;
                    if c != self.escape {
                        out.push(c);
                        continue;
                    }
                    // With raw escapes BuildKit emits the token, then the escaped character, or
                    // the token a second time when it escaped nothing.
                    if self.raw_escapes {
                        out.push(c);
                    }
                    match self.peek() {
                        None => {}
                        Some(n) if n == '"' || n == '$' || n == self.escape => {
                            self.pos += 1;
                            out.push(n);
                        }
                        Some(_) => out.push(c),
                    }
                }
            }
        }
        self.pos += 1;
        if self.opts.raw_quotes {
            out.push('"');
        }
        Ok(out)
    }

    /// Positional parameters (a run of digits) or a one-character special parameter, else a run
    /// of letters, digits and `_`. Empty when no name follows.
    fn name(&mut self) -> String {
        let mut name = String::new();
        let first = self.peek();
        if first.is_some_and(is_digit) {
            while let Some(c) = self.peek().filter(|&c| is_digit(c)) {
                name.push(c);
                self.pos += 1;
            }
        } else if let Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')) = first {
            name.push(c);
            self.pos += 1;
        } else {
            while let Some(c) = self.peek().filter(|&c| is_letter(c) || is_digit(c) || c == '_') {
                name.push(c);
                self.pos += 1;
            }
        }
        name
    }

    fn dollar(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        let skip = self.opts.skip_unset_env;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if skip => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ShellError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        // BuildKit reports "unsupported modifier" when the input ends right after the name;
        // "missing '}'" says what is actually wrong.
        let op = self.bump().ok_or(ShellError::MissingBrace)?;
        match op {
            '}' => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if skip => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '-' | '+' | '?' | '#' | '%' => self.modifier(name, op),
            '/' => self.replace(name),
            _ => Err(ShellError::UnsupportedModifier(op.to_string())),
        }
    }

    /// `${name<op>word}` for the operators in the README table plus `#`/`%` trimming.
    fn modifier(&mut self, name: String, first: char) -> Result<String, ShellError> {
        let colon = first == ':';
        let op = if colon { self.bump() } else { Some(first) };
        let written = format!("{}{}", if colon { ":" } else { "" }, op.map(String::from).unwrap_or_default());
        let trims = matches!(op, Some('#' | '%'));
        if colon && trims {
            return Err(ShellError::UnsupportedModifier(written));
        }
        // The operand is expanded before the variable is even looked at, so variables in an
        // unused default still count as referenced (and still fail with `?`).
        let word = self.operand('}', trims, ShellError::MissingBrace)?;
        let value = self.lookup(&name);
        if self.opts.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{written}{word}}}"));
        }
        let null = match value.as_deref() {
            None => true,
            Some(v) => colon && v.is_empty(),
        };
        match op {
            Some('-') => Ok(if null { word } else { value.unwrap_or_default() }),
            Some('+') => Ok(if null { String::new() } else { word }),
            Some('?') => match value {
                Some(v) if !null => Ok(v),
                _ => {
                    let message = match (word.is_empty(), value.is_none()) {
                        (false, _) => word,
                        (true, true) => "is not allowed to be unset".to_owned(),
                        (true, false) => "is not allowed to be empty".to_owned(),
                    };
                    Err(ShellError::Required { name, message })
                }
            },
            Some(t @ ('#' | '%')) => {
                // A doubled operator, even one produced by expansion, selects the longest match.
                let (greedy, pattern) = match word.strip_prefix(t) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                let trimmed = if t == '#' {
                    trim_prefix(pattern, &value, greedy)
                } else {
                    trim_suffix(pattern, &value, greedy)
                };
                trimmed.map_err(|reason| invalid_pattern(pattern, reason))
            }
            _ => Err(ShellError::UnsupportedModifier(written)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn replace(&mut self, name: String) -> Result<String, ShellError> {
        let all = self.peek() == Some('/');
        self.pos += usize::from(all);
        let pattern = self.operand('/', true, ShellError::MissingSlash)?;
        let replacement = self.operand('}', true, ShellError::MissingBrace)?;
        let value = match self.lookup(&name) {
            Some(value) => value,
            // BuildKit writes a single `/` back here even for `//`; keeping the operator as
            // written preserves the meaning if the text is expanded again later.
            None if self.opts.skip_unset_env => {
                let op = if all { "//" } else { "/" };
                return Ok(format!("${{{name}{op}{pattern}/{replacement}}}"));
            }
            None => String::new(),
        };
        replace(&pattern, &value, &replacement, all).map_err(|r| invalid_pattern(&pattern, r))
    }
}

mod pattern;
use pattern::{replace, trim_prefix, trim_suffix};

fn invalid_pattern(pattern: &str, reason: String) -> ShellError {
    ShellError::InvalidPattern { pattern: pattern.to_owned(), reason }
}

/// Go's `unicode.IsDigit` (category Nd, Unicode 15): every Nd block is ten code points long
/// except the mathematical digits at U+1D7CE..=U+1D7FF.
fn is_digit(c: char) -> bool {
    const STARTS: [u32; 63] = [
        0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
        0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50, 0x1BB0,
        0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10, 0x104A0, 0x10D30,
        0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0,
        0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60, 0x16AC0, 0x16B50, 0x1E140, 0x1E2F0, 0x1E4F0,
        0x1E950, 0x1FBF0,
    ];
    let u = u32::from(c);
    (0x1D7CE..=0x1D7FF).contains(&u) || STARTS.iter().any(|&s| u.wrapping_sub(s) < 10)
}

/// Go's `unicode.IsLetter`: general category L (Lu, Ll, Lt, Lm, Lo).
fn is_letter(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as Gc, get_general_category};
    matches!(
        get_general_category(c),
        Gc::UppercaseLetter
            | Gc::LowercaseLetter
            | Gc::TitlecaseLetter
            | Gc::ModifierLetter
            | Gc::OtherLetter
    )
}

#[cfg(test)]
mod tests;
