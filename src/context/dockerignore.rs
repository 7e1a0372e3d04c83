//! `.dockerignore` reading and matching with Docker's semantics: moby/patternmatcher (and its `ignorefile`
//! reader) as BuildKit applies them when it sends a build context.
//!
//! [`parse_ignore_file`] turns the file's text into patterns, [`find_ignore_file`] picks the file that
//! applies, and [`PatternMatcher`] answers "is this context path excluded?" like BuildKit's context walker.

// Why `regex`: patternmatcher compiles every pattern that is not a plain exact/prefix/suffix string into a Go
// regular expression, and that expression's Go (RE2) meaning *is* Docker's behaviour, quirks included (`^` is
// an anchor, `|` an alternation, `a{2}` a repetition, `\d` a digit class, `[*]` an odd nested class, an
// inverted range an error at match time). So we build the very same Go expression text, re-read it with Go's
// syntax rules and write an equivalent Rust expression in which every literal is a `\x{..}` escape and every
// class is spelled out: no pattern can make the Rust side misread text, and `Regex::new` errors instead of
// panicking. Both engines match in linear time on untrusted patterns. globset was rejected: its `**`,
// `[!..]`/`[^..]`, escapes and parent-directory rules differ from Docker's.

use regex::Regex;
use std::path::{Path, PathBuf};

/// Why a set of patterns cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// A pattern that is only `!` (BuildKit fails the build on it).
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion,
    /// A pattern that is not a valid glob (rejected when the patterns are loaded).
    #[error("syntax error in pattern {pattern:?}: {reason}")]
    Syntax { pattern: String, reason: String },
    /// A valid glob whose regular expression Docker cannot compile: each match attempt consulting it fails.
    #[error("pattern {pattern:?} cannot be matched: {reason}")]
    Unmatchable { pattern: String, reason: String },
}

/// Reads a .dockerignore file's text into patterns (BOM, comments, trim, `!` handling, path cleaning, leading
/// `/` removal), exactly as BuildKit's `ignorefile.ReadAll`. A lone `!` is kept: [`PatternMatcher::new`]
/// rejects it.
pub fn parse_ignore_file(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if n == 0 { line.strip_prefix('\u{FEFF}').unwrap_or(line) } else { line };
        // Only a `#` in the very first column starts a comment; ` #x` is the pattern `#x`.
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (invert, body) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let mut body = if body.is_empty() { String::new() } else { clean(body) };
        if let Some(rest) = body.strip_prefix('/').filter(|r| !r.is_empty()) {
            body = rest.to_string();
        }
        out.push(if invert { format!("!{body}") } else { body });
    }
    out
}

/// Which ignore file applies: `<dockerfile-file-name>.dockerignore` next to the Dockerfile if it exists, else
/// `<context>/.dockerignore` if it exists. A relative `dockerfile` is taken relative to `context_dir`; `None`
/// means `<context>/Dockerfile`, as in BuildKit.
pub fn find_ignore_file(context_dir: &Path, dockerfile: Option<&Path>) -> Option<PathBuf> {
    let dockerfile = context_dir.join(dockerfile.unwrap_or(Path::new("Dockerfile")));
    if let Some(name) = dockerfile.file_name() {
        let mut name = name.to_os_string();
        name.push(".dockerignore");
        let beside = dockerfile.with_file_name(name);
        if beside.is_file() {
            return Some(beside);
        }
    }
    let fallback = context_dir.join(".dockerignore");
    fallback.is_file().then_some(fallback)
}

/// A loaded list of `.dockerignore` patterns (in order; the last matching one wins).
#[derive(Debug, Clone)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    /// No exception pattern has glob characters (besides a trailing `/*` or `/**`): BuildKit may then skip
    /// excluded directories that no exception points into.
    prefix_only_exceptions: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// As loaded: trimmed and cleaned, with its `!`.
    source: String,
    /// Without the `!`; what the matching and the directory-skip rule look at.
    text: String,
    exclusion: bool,
    kind: Kind,
}

/// patternmatcher's four strategies: plain string tests unless the pattern needs a regular expression.
#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// Ends in `**` after only literal text: a byte-prefix test.
    Prefix,
    /// Starts with `**`, nothing else needing a regex: a byte-suffix test (so `**file` matches `xfile`).
    Suffix,
    Regex(Regex),
    /// Docker's regexp compilation fails; reported on every match attempt that consults the pattern.
    Invalid(String),
}

impl PatternMatcher {
    /// Loads patterns (as read by [`parse_ignore_file`]); empty ones are dropped. Fails on a lone `!` and on
    /// malformed globs (`[x-]`, `a[`, a trailing `\`, …), naming the first offending pattern.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, IgnoreError> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            // Cleaned with its `!` still attached, as patternmatcher does.
            let source = clean(p);
            let (exclusion, text) = match source.strip_prefix('!') {
                Some("") => return Err(IgnoreError::IllegalExclusion),
                Some(rest) => (true, rest.to_string()),
                None => (false, source.clone()),
            };
            check_glob(&text)
                .map_err(|reason| IgnoreError::Syntax { pattern: text.clone(), reason: reason.into() })?;
            let kind = compile(&text);
            out.push(Pattern { source, text, exclusion, kind });
        }
        let prefix_only_exceptions = !out
            .iter()
            .any(|p| p.exclusion && without_trailing_glob(&p.text).contains(['*', '[', ']', '?', '^', '\\']));
        Ok(Self { patterns: out, prefix_only_exceptions })
    }

    /// Is this slash-separated context-relative path excluded? Considers parent directories; last matching
    /// pattern wins. Evaluated as BuildKit's walker does: each parent directory is matched first and passes
    /// on which patterns matched it (a pattern skipped there, because it could not change the verdict, does
    /// not count as matching it). `.` is never excluded; the path is cleaned and a leading `/` ignored.
    pub fn is_excluded(&self, path: &str) -> Result<bool, IgnoreError> {
        let path = normalize(path);
        if path == "." || self.patterns.is_empty() {
            return Ok(false);
        }
        let mut parent: Option<Vec<bool>> = None;
        let mut excluded = false;
        for end in path.match_indices('/').map(|(i, _)| i).chain([path.len()]) {
            let (verdict, matched) = self.step(path.get(..end).unwrap_or(&path), parent.as_deref())?;
            excluded = verdict;
            parent = Some(matched);
        }
        Ok(excluded)
    }

    /// One `MatchesUsingParentResults` step: the verdict for `path` and which patterns matched it.
    fn step(&self, path: &str, parent: Option<&[bool]>) -> Result<(bool, Vec<bool>), IgnoreError> {
        let mut excluded = false;
        let mut matched = Vec::with_capacity(self.patterns.len());
        for (i, pat) in self.patterns.iter().enumerate() {
            let mut hit = parent.and_then(|p| p.get(i)).copied().unwrap_or(false);
            // Only a pattern that could flip the verdict is consulted (and can fail).
            if !hit && pat.exclusion == excluded {
                hit = pat.matches(path)?;
            }
            matched.push(hit);
            if hit {
                excluded = !pat.exclusion;
            }
        }
        Ok((excluded, matched))
    }

    /// True when some `!` pattern exists: a context walker must then descend into excluded directories.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether a walker may skip an excluded directory entirely (no exception pattern could re-include
    /// anything below it). This is BuildKit's rule: never when an exception has glob characters; otherwise
    /// only when no exception pattern lies at or below `dir`.
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        if !self.prefix_only_exceptions {
            return false;
        }
        let dir = format!("{}/", normalize(dir));
        !self
            .patterns
            .iter()
            .any(|p| p.exclusion && format!("{}/", without_trailing_glob(&p.text)).starts_with(&dir))
    }

    /// The loaded patterns in order: trimmed, cleaned, exceptions with their `!`.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.source.as_str())
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> Result<bool, IgnoreError> {
        let (path_b, text) = (path.as_bytes(), self.text.as_bytes());
        Ok(match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix => path_b.starts_with(text.get(..text.len().saturating_sub(2)).unwrap_or_default()),
            Kind::Suffix => {
                let suffix = text.get(2..).unwrap_or_default();
                path_b.ends_with(suffix) || (suffix.first() == Some(&b'/') && suffix.get(1..) == Some(path_b))
            }
            Kind::Regex(re) => re.is_match(path),
            Kind::Invalid(reason) => {
                return Err(IgnoreError::Unmatchable { pattern: self.text.clone(), reason: reason.clone() });
            }
        })
    }
}

/// Splits off the first character without indexing.
fn split_first(s: &str) -> Option<(char, &str)> {
    let mut it = s.chars();
    it.next().map(|c| (c, it.as_str()))
}

/// Go's `path.Clean`: drop empty and `.` segments, resolve `..`, no trailing `/`; `""` becomes `.`.
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut segs: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." if segs.last().is_some_and(|s| *s != "..") => {
                segs.pop();
            }
            ".." if rooted => {}
            s => segs.push(s),
        }
    }
    let body = segs.join("/");
    if rooted {
        format!("/{body}")
    } else if body.is_empty() {
        ".".into()
    } else {
        body
    }
}

/// A queried path: cleaned, relative to the context root.
fn normalize(path: &str) -> String {
    let cleaned = clean(path);
    match cleaned.trim_start_matches('/') {
        "" => ".".into(),
        rest => rest.to_string(),
    }
}

/// BuildKit's `patternWithoutTrailingGlob`.
fn without_trailing_glob(text: &str) -> &str {
    let text = text.strip_suffix("/**").unwrap_or(text);
    text.strip_suffix("/*").unwrap_or(text)
}

/// The syntax check patternmatcher gets from Go's `filepath.Match(pattern, ".")`: classes closed and
/// non-empty, no `-`/`]` where a class member is due, no trailing `\`. Go checks each `*`-separated chunk,
/// but a `*` can only split a class that is malformed anyway, so one pass over the whole pattern agrees.
/// Inverted ranges pass here; the regexp compiler rejects them later.
fn check_glob(mut t: &str) -> Result<(), &'static str> {
    while let Some((c, rest)) = split_first(t) {
        t = rest;
        match c {
            '[' => {
                t = t.strip_prefix('^').unwrap_or(t);
                let mut first = true;
                loop {
                    if !first && let Some(r) = t.strip_prefix(']') {
                        t = r;
                        break;
                    }
                    first = false;
                    t = glob_class_char(t)?;
                    if let Some(r) = t.strip_prefix('-') {
                        t = glob_class_char(r)?;
                    }
                }
            }
            '\\' => t = split_first(t).ok_or("trailing backslash")?.1,
            _ => {}
        }
    }
    Ok(())
}

/// One class character (Go's `getEsc`); something must follow it, at least the closing `]`.
fn glob_class_char(t: &str) -> Result<&str, &'static str> {
    let t = match split_first(t) {
        None => return Err("character class is not closed"),
        Some(('-' | ']', _)) => return Err("`-` or `]` where a character class member was expected"),
        Some(('\\', r)) => r,
        Some(_) => t,
    };
    match split_first(t) {
        Some((_, r)) if !r.is_empty() => Ok(r),
        _ => Err("character class is not closed"),
    }
}

/// patternmatcher's `compile`: pick the strategy and, when needed, build the Go expression and translate it.
fn compile(text: &str) -> Kind {
    #[derive(PartialEq)]
    enum Shape {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut chars = text.chars().peekable();
    chars.next_if_eq(&'\u{FEFF}'); // Go's text/scanner silently drops a leading BOM.
    let (mut re, mut shape, mut first) = (String::from("^"), Shape::Exact, true);
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.next_if_eq(&'*').is_some() => {
                chars.next_if_eq(&'/'); // `**/` behaves as `**`
                if chars.peek().is_some() {
                    re.push_str("(.*/)?");
                    shape = Shape::Regex;
                } else if shape == Shape::Exact {
                    shape = Shape::Prefix;
                } else {
                    re.push_str(".*");
                    shape = Shape::Regex;
                }
                if first {
                    shape = Shape::Suffix;
                }
            }
            '*' | '?' => {
                re.push_str(if c == '*' { "[^/]*" } else { "[^/]" });
                shape = Shape::Regex;
            }
            // patternmatcher means to escape `.+()|{}$`, but its bitmap overflows for bytes ≥ 64, so `|`, `{`
            // and `}` reach the regexp raw: `a|b` is an alternation and `a{2}` a repetition in Docker.
            '.' | '+' | '(' | ')' | '$' => re.extend(['\\', c]),
            // `\x` passes through to the regexp, where it keeps Go's regexp meaning (`\d` is a digit class).
            '\\' => {
                re.push('\\');
                if let Some(next) = chars.next() {
                    re.push(next);
                    shape = Shape::Regex;
                }
            }
            '[' | ']' => {
                re.push(c);
                shape = Shape::Regex;
            }
            _ => re.push(c), // including `^`: an anchor once the pattern becomes a regexp, as in Docker
        }
        first = false;
    }
    match shape {
        Shape::Exact => Kind::Exact,
        Shape::Prefix => Kind::Prefix,
        Shape::Suffix => Kind::Suffix,
        Shape::Regex => {
            re.push('$');
            match translate(&re).and_then(|r| Regex::new(&r).map_err(|e| format!("regex: {e}"))) {
                Ok(re) => Kind::Regex(re),
                Err(reason) => Kind::Invalid(reason),
            }
        }
    }
}

/// Re-reads a Go RE2 expression (flags as `regexp.Compile`: Perl extensions, Unicode groups, `^`/`$` at text
/// edges, `.` not matching `\n`) and writes the Rust expression with the same meaning, failing where Go's
/// parser fails. Only the structure (`^ $ . | ( )` and repetitions) passes through; literals and classes are
/// rewritten, and every repeated item is wrapped in `(?:…)`.
fn translate(go: &str) -> Result<String, String> {
    let mut out = String::new();
    // Where the last complete item starts in `out` (None after `(`, `|` or at the start), whether it was just
    // repeated (Go rejects `a**`), and where the open groups start.
    let (mut item, mut repeated, mut groups) = (None::<usize>, false, Vec::new());
    let mut t = go;
    while let Some((c, rest)) = split_first(t) {
        let start = out.len();
        let repeat = match c {
            '*' | '?' | '+' => Some((c.to_string(), rest)),
            '{' => repetition(rest)?, // `{` that is not a valid `{n,m}` is a literal
            _ => None,
        };
        if let Some((op, rest)) = repeat {
            let Some(at) = item else { return Err("missing argument to repetition operator".into()) };
            if repeated {
                return Err("invalid nested repetition operator".into());
            }
            let repeated_item = format!("(?:{}){op}", out.get(at..).unwrap_or_default());
            out.truncate(at);
            out.push_str(&repeated_item);
            t = rest.strip_prefix('?').unwrap_or(rest); // non-greedy: no effect on whether it matches
            repeated = true;
            continue;
        }
        (t, repeated) = (rest, false);
        match c {
            '|' | '(' => {
                out.push(c);
                if c == '(' {
                    groups.push(start);
                }
                item = None;
                continue;
            }
            ')' => {
                let open = groups.pop().ok_or("unexpected )")?;
                out.push(')');
                item = Some(open);
                continue;
            }
            '^' | '$' | '.' => out.push(c),
            '[' => t = class(t, &mut out)?,
            '\\' => match split_first(t) {
                Some((a @ ('A' | 'z' | 'b' | 'B'), r)) => {
                    // Go's `\b` is an ASCII word boundary.
                    out.push_str(match a {
                        'A' => r"\A",
                        'z' => r"\z",
                        'b' => r"(?-u:\b)",
                        _ => r"(?-u:\B)",
                    });
                    t = r;
                }
                Some(('Q', r)) => {
                    // `\Q…\E`: literal text up to `\E` or the end (even the final `$` then is literal).
                    let (lit, after) = r.split_once(r"\E").unwrap_or((r, ""));
                    for c in lit.chars() {
                        item = Some(out.len());
                        push_lit(&mut out, c);
                    }
                    t = after;
                    continue;
                }
                _ => match class_escape(t)? {
                    Some((member, r)) => {
                        out.extend(["[", &member, "]"]);
                        t = r;
                    }
                    None => {
                        let (c, r) = escape(t)?;
                        push_lit(&mut out, c);
                        t = r;
                    }
                },
            },
            _ => push_lit(&mut out, c),
        }
        item = Some(start);
    }
    if groups.is_empty() { Ok(out) } else { Err("missing )".into()) }
}

/// Go's `{n}`, `{n,}`, `{n,m}` (no leading zeros, counts up to 1000); `t` follows the `{`. `None`: not a
/// repetition, so the `{` is a literal.
fn repetition(t: &str) -> Result<Option<(String, &str)>, String> {
    fn int(t: &str) -> Option<(u32, &str)> {
        let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (num, rest) = t.split_at_checked(digits)?;
        if num.is_empty() || (num.len() > 1 && num.starts_with('0')) {
            return None;
        }
        Some((num.parse().unwrap_or(u32::MAX), rest))
    }
    let Some((min, r)) = int(t) else { return Ok(None) };
    let (max, r) = match r.strip_prefix(',') {
        None => (Some(min), r),
        Some(r) if r.starts_with('}') => (None, r),
        Some(r) => match int(r) {
            Some((max, r)) => (Some(max), r),
            None => return Ok(None),
        },
    };
    let Some(rest) = r.strip_prefix('}') else { return Ok(None) };
    if min > 1000 || max.is_some_and(|max| max > 1000 || max < min) {
        return Err("invalid repeat count".into());
    }
    let op = match max {
        Some(max) if max == min => format!("{{{min}}}"),
        Some(max) => format!("{{{min},{max}}}"),
        None => format!("{{{min},}}"),
    };
    Ok(Some((op, rest)))
}

fn push_lit(out: &mut String, c: char) {
    out.push_str(&format!("\\x{{{:X}}}", u32::from(c)));
}

/// A bracketed class; `t` follows the `[`. Returns the text after the closing `]`.
fn class<'a>(mut t: &'a str, out: &mut String) -> Result<&'a str, String> {
    out.push('[');
    if let Some(r) = t.strip_prefix('^') {
        out.push('^');
        t = r;
    }
    let mut first = true; // a `]` right after `[` or `[^` is a member
    while first || !t.starts_with(']') {
        first = false;
        // `[:name:]` — Go looks for the closing `:]` anywhere further on, even past this class.
        if t.len() > 2
            && t.starts_with("[:")
            && let Some(end) = t.get(2..).and_then(|s| s.find(":]"))
        {
            let inner = t.get(2..end + 2).unwrap_or_default();
            let (negated, name) = inner.strip_prefix('^').map_or((false, inner), |n| (true, n));
            let body = posix_class(name).ok_or_else(|| format!("invalid character class `[:{inner}:]`"))?;
            out.push_str(&if negated { format!("[^{body}]") } else { body.to_string() });
            t = t.get(end + 4..).unwrap_or_default();
            continue;
        }
        if let Some(r) = t.strip_prefix('\\')
            && let Some((item, r)) = class_escape(r)?
        {
            out.push_str(&item);
            t = r;
            continue;
        }
        let (lo, r) = class_char(t)?;
        t = r;
        push_lit(out, lo);
        if let Some(r) = t.strip_prefix('-').filter(|r| !r.is_empty() && !r.starts_with(']')) {
            let (hi, r) = class_char(r)?;
            if hi < lo {
                return Err(format!("invalid character class range `{lo}-{hi}`"));
            }
            out.push('-');
            push_lit(out, hi);
            t = r;
        }
    }
    out.push(']');
    Ok(t.strip_prefix(']').unwrap_or(t))
}

fn class_char(t: &str) -> Result<(char, &str), String> {
    match split_first(t) {
        None => Err("missing closing `]`".into()),
        Some(('\\', r)) => escape(r),
        Some(found) => Ok(found),
    }
}

/// `\d \s \w` (ASCII, as in Go), their negations, and the one-letter Unicode categories `\pL`, `\PN`, …
/// (the only `\p` forms a pattern can produce: patternmatcher escapes `{`). `t` follows the backslash;
/// returns a Rust class member.
fn class_escape(t: &str) -> Result<Option<(String, &str)>, String> {
    let Some((c, r)) = split_first(t) else { return Ok(None) };
    let (negated, body, rest) = match c {
        'd' | 'D' => (c == 'D', "0-9".to_string(), r),
        's' | 'S' => (c == 'S', r"\x09\x0A\x0C\x0D\x20".to_string(), r),
        'w' | 'W' => (c == 'W', "0-9A-Za-z_".to_string(), r),
        'p' | 'P' => {
            let (name, rest) = split_first(r).unwrap_or(('\0', ""));
            // Go (1.25+) looks category names up case-insensitively; its `C` has no unassigned code points.
            let body = match name.to_ascii_uppercase() {
                'C' => r"\p{Cc}\p{Cf}\p{Co}".to_string(),
                n @ ('L' | 'M' | 'N' | 'P' | 'S' | 'Z') => format!(r"\p{n}"),
                _ => return Err(format!("invalid character class range `\\{c}{name}`")),
            };
            (c == 'P', body, rest)
        }
        _ => return Ok(None),
    };
    Ok(Some((if negated { format!("[^{body}]") } else { body }, rest)))
}

/// The ASCII classes Go accepts as `[:name:]`, as Rust class bodies.
fn posix_class(name: &str) -> Option<&'static str> {
    Some(match name {
        "alnum" => "0-9A-Za-z",
        "alpha" => "A-Za-z",
        "ascii" => r"\x00-\x7F",
        "blank" => r"\x09\x20",
        "cntrl" => r"\x00-\x1F\x7F",
        "digit" => "0-9",
        "graph" => r"\x21-\x7E",
        "lower" => "a-z",
        "print" => r"\x20-\x7E",
        "punct" => r"\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E",
        "space" => r"\x09-\x0D\x20",
        "upper" => "A-Z",
        "word" => "0-9A-Za-z_",
        "xdigit" => "0-9A-Fa-f",
        _ => return None,
    })
}

fn digit(s: &str, radix: u32) -> Option<(u32, &str)> {
    split_first(s).and_then(|(d, r)| d.to_digit(radix).map(|v| (v, r)))
}

/// One escaped character as Go's `parseEscape` reads it; `t` follows the backslash.
fn escape(t: &str) -> Result<(char, &str), String> {
    let Some((c, mut t)) = split_first(t) else { return Err("trailing backslash".into()) };
    let octal = |s| digit(s, 8);
    let value = match c {
        // A lone `\1`..`\7` would be a backreference: invalid. `\0` and `\NN…` are octal (≤ 3 digits).
        '1'..='7' if octal(t).is_none() => None,
        '0'..='7' => {
            let mut v = u32::from(c) - u32::from('0');
            for _ in 0..2 {
                let Some((d, r)) = octal(t) else { break };
                (v, t) = (v * 8 + d, r);
            }
            Some(v)
        }
        'x' => {
            let pair = digit(t, 16).and_then(|(h, r)| digit(r, 16).map(|(l, r)| (h * 16 + l, r)));
            pair.map(|(v, r)| {
                t = r;
                v
            })
        }
        'a' | 'f' | 'n' | 'r' | 't' | 'v' => {
            "afnrtv".find(c).and_then(|i| [7, 12, 10, 13, 9, 11].get(i).copied())
        }
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Some(u32::from(c)),
        _ => None,
    };
    match value.and_then(char::from_u32) {
        Some(ch) => Ok((ch, t)),
        None => Err(format!("invalid escape sequence `\\{c}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &[&str], path: &str) -> bool {
        let m = PatternMatcher::new(patterns).unwrap_or_else(|e| panic!("{patterns:?}: {e}"));
        m.is_excluded(path).unwrap_or_else(|e| panic!("{patterns:?} {path}: {e}"))
    }

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("", "."),
            ("./a", "a"),
            ("a/../b", "b"),
            ("a//b/", "a/b"),
            ("/..", "/"),
            ("a/../..", ".."),
            ("../../a", "../../a"),
            ("!./a", "!./a"),
            ("//x/./y/..", "/x"),
        ] {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn go_regexp_quirks_are_kept() {
        // `\d` is Go's digit class, `^` an anchor once the pattern is a regexp (but literal in an exact one).
        assert!(excluded(&[r"a\d"], "a5") && !excluded(&[r"a\d"], "ad"));
        assert!(excluded(&["a^b"], "a^b") && !excluded(&["a^b*"], "a^b"));
        // `[*]` becomes `[[^/]*]`: the class {[,^,/} repeated, then a literal `]`.
        assert!(excluded(&["[*]"], "[^]") && excluded(&["[*]"], "]") && !excluded(&["[*]"], "*"));
        assert!(excluded(&["[[:alpha:]]"], "q") && !excluded(&["[[:alpha:]]"], "1"));
        assert!(excluded(&[r"\Qa.b"], "a\\.b$")); // `\Q` swallows the rest, the final `$` included
        assert!(excluded(&[r"a\101"], "aA") && excluded(&[r"\x41"], "A") && excluded(&[r"\pL"], "é"));
        assert!(excluded(&["**file"], "xfile")); // a suffix test, not a regexp
        // `|`, `{`, `}` reach the regexp unescaped: alternation and repetition, once the pattern is a regexp.
        assert!(excluded(&["a|b*"], "zzb") && excluded(&["x{2}*"], "xxy") && !excluded(&["x{2}*"], "x{2}y"));
        assert!(excluded(&["x{2}"], "x{2}") && excluded(&["*.{js,ts}"], "a.{js,ts}"));
        assert!(excluded(&[r"a\b*"], "aé") && !excluded(&[r"a\b*"], "ab")); // ASCII word boundary
        for bad in
            [r"\y", r"a\1", r"[[:nope:]]", r"\p*", r"\8", r"[\b]", "[x[:alpha:]", "*{2}", "?{1001}", "|{2}*"]
        {
            let m = PatternMatcher::new(&[bad]).unwrap_or_else(|e| panic!("{bad}: {e}"));
            assert!(matches!(m.is_excluded("x"), Err(IgnoreError::Unmatchable { .. })), "{bad}");
        }
    }

    #[test]
    fn parent_results_follow_buildkit_walker() {
        // `!d` was not consulted for `d` (not excluded then), so it does not re-include `d/f`.
        assert!(excluded(&["d/f", "!d"], "d/f"));
        // A pattern skipped at `d` (already excluded) does not re-exclude `d/f` either.
        assert!(!excluded(&["d", "!d/f", "d"], "d/f"));
        // An unmatchable pattern is harmless while it is never consulted.
        assert!(excluded(&["a", "[l-O]"], "a"));
    }

    #[test]
    fn walker_helpers() {
        let m = PatternMatcher::new(&["docs", "!docs/keep/**", "build"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(m.has_exclusions() && !m.can_skip_dir("docs") && !m.can_skip_dir("docs/keep"));
        assert!(m.can_skip_dir("build") && m.can_skip_dir("docs/other"));
        let globbed = PatternMatcher::new(&["a", "!**/x"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!globbed.can_skip_dir("a"));
        let plain = PatternMatcher::new(&["a", "", " ./b/ "]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!plain.has_exclusions() && plain.can_skip_dir("a"));
        assert_eq!(plain.patterns().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn arbitrary_patterns_never_panic() {
        let alphabet: Vec<char> = r"ab/*?[]^-!\.$(){}|+:dpPQE0x7é ".chars().collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut pattern = String::new();
            for _ in 0..(seed % 9) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                pattern.extend(alphabet.get((seed >> 33) as usize % alphabet.len()));
            }
            if let Ok(m) = PatternMatcher::new(&[pattern.as_str(), "!b"]) {
                for path in ["a", "a/b", "[^]/x", "ab*", "é/$"] {
                    let _ = m.is_excluded(path);
                    let _ = m.can_skip_dir(path);
                }
            }
        }
    }
}
