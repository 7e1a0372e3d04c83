//! The glob patterns of `${v#p}`, `${v%p}` and `${v/p/r}`: BuildKit turns them into Go regular
//! expressions; this is a direct matcher with the same meaning (`*`, `?`, `\\` escapes, no classes).

use super::{is_digit, is_letter};

/// One element of a `#`/`%`/`/` pattern. BuildKit turns patterns into Go regular expressions in
/// which `*` and `?` become `.*` and `.`, so neither matches a newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok {
    Lit(char),
    Any,
    Star,
}

/// Parses a pattern. Only `*`, `?` and `\` are special (no `[...]` classes in BuildKit); `\}`
/// and `\/` lose the backslash, `\*`, `\?`, `\\` are literal, any other escape is an error.
pub(super) fn compile(pattern: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = pattern.strip_prefix('\u{feff}').unwrap_or(pattern).chars().peekable();
    while let Some(c) = chars.next() {
        let tok = match c {
            // `**` matches exactly what `*` does; collapsing keeps the matcher's closure flat.
            '*' if toks.last() == Some(&Tok::Star) => continue,
            '*' => Tok::Star,
            '?' => Tok::Any,
            '\\' => match chars.peek() {
                Some('}' | '/') => continue,
                Some(&e @ ('*' | '?' | '\\')) => {
                    chars.next();
                    Tok::Lit(e)
                }
                Some(e) => return Err(format!("invalid escape '\\{e}'")),
                None => return Err("trailing '\\' escapes nothing".to_owned()),
            },
            _ => Tok::Lit(c),
        };
        toks.push(tok);
    }
    Ok(toks)
}

/// The leftmost match at or after `from` (only at `from` when `anchored`), choosing among the
/// matches starting there the way Go's leftmost-first regexp engine does: greedy stars prefer to
/// consume, lazy ones to stop. A Pike VM keeps this linear in the text for any pattern.
pub(super) fn find(
    toks: &[Tok],
    text: &[char],
    from: usize,
    anchored: bool,
    greedy: bool,
) -> Option<(usize, usize)> {
    // A thread is (state, start); state `i` waits at `toks[i]` (inside the loop for a star) and
    // state `toks.len()` is a match. `seen[i]` is the position at which `i` was last queued.
    let mut seen = vec![usize::MAX; toks.len() + 1];
    let add =
        |list: &mut Vec<(usize, usize)>, seen: &mut Vec<usize>, state: usize, start: usize, at: usize| {
            let order = match toks.get(state) {
                Some(Tok::Star) if greedy => [Some(state), Some(state + 1)],
                Some(Tok::Star) => [Some(state + 1), Some(state)],
                _ => [Some(state), None],
            };
            for s in order.into_iter().flatten() {
                if let Some(mark) = seen.get_mut(s).filter(|m| **m != at) {
                    *mark = at;
                    list.push((s, start));
                }
            }
        };
    let (mut current, mut found) = (Vec::new(), None);
    let mut at = from;
    loop {
        if found.is_none() && (!anchored || at == from) {
            add(&mut current, &mut seen, 0, at, at);
        }
        if current.is_empty() {
            return found;
        }
        let ch = text.get(at).copied();
        let mut next = Vec::new();
        for &(state, start) in &current {
            let advance = match (toks.get(state), ch) {
                (None, _) => {
                    // Lower-priority threads are cut; higher-priority ones may still extend.
                    found = Some((start, at));
                    break;
                }
                (Some(_), None) => continue,
                (Some(Tok::Lit(l)), Some(c)) => (*l == c).then_some(state + 1),
                (Some(Tok::Any), Some(c)) => (c != '\n').then_some(state + 1),
                (Some(Tok::Star), Some(c)) => (c != '\n').then_some(state),
            };
            if let Some(s) = advance {
                add(&mut next, &mut seen, s, start, at + 1);
            }
        }
        if ch.is_none() {
            return found;
        }
        current = next;
        at += 1;
    }
}

pub(super) fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let toks = compile(pattern)?;
    let text: Vec<char> = value.chars().collect();
    Ok(match find(&toks, &text, 0, true, greedy) {
        Some((_, end)) => text.get(end..).unwrap_or_default().iter().collect(),
        None => value.to_owned(),
    })
}

/// Suffix removal is prefix removal on the reversed value with the reversed pattern (escape
/// pairs kept in order), which is how BuildKit finds the shortest rightmost match.
pub(super) fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let trimmed = trim_prefix(&reverse_pattern(pattern), &value.chars().rev().collect::<String>(), greedy)?;
    Ok(trimmed.chars().rev().collect())
}

pub(super) fn reverse_pattern(pattern: &str) -> String {
    let mut units: Vec<String> = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let mut unit = String::from(c);
        if c == '\\' {
            unit.extend(chars.next());
        }
        units.push(unit);
    }
    units.into_iter().rev().collect()
}

/// `/` replaces the first match literally; `//` replaces every match through Go's
/// `Regexp.ReplaceAllString`, so there `$0`/`${0}` stand for the match, `$$` for `$`, and any
/// other `$name` for nothing. Empty matches right after a previous match are not replaced.
pub(super) fn replace(pattern: &str, value: &str, replacement: &str, all: bool) -> Result<String, String> {
    let toks = compile(pattern)?;
    let text: Vec<char> = value.chars().collect();
    let slice = |a: usize, b: usize| text.get(a..b).unwrap_or_default().iter();
    let mut out = String::new();
    if !all {
        return Ok(match find(&toks, &text, 0, false, true) {
            Some((a, b)) => {
                out.extend(slice(0, a));
                out.push_str(replacement);
                out.extend(slice(b, text.len()));
                out
            }
            None => value.to_owned(),
        });
    }
    let template: Vec<char> = replacement.chars().collect();
    let (mut last, mut search) = (0, 0);
    while search <= text.len() {
        let Some((a, b)) = find(&toks, &text, search, false, true) else { break };
        out.extend(slice(last, a));
        if b > last || a == 0 {
            expand_template(&template, slice(a, b).as_slice(), &mut out);
        }
        last = b;
        search = b.max(search + 1);
    }
    out.extend(slice(last, text.len()));
    Ok(out)
}

fn expand_template(template: &[char], matched: &[char], out: &mut String) {
    let mut i = 0;
    while let Some(&c) = template.get(i) {
        i += 1;
        if c != '$' {
            out.push(c);
            continue;
        }
        if template.get(i) == Some(&'$') {
            out.push('$');
            i += 1;
            continue;
        }
        let brace = template.get(i) == Some(&'{');
        let start = i + usize::from(brace);
        let mut end = start;
        while template.get(end).is_some_and(|&c| is_letter(c) || is_digit(c) || c == '_') {
            end += 1;
        }
        if end == start || (brace && template.get(end) != Some(&'}')) {
            out.push('$');
            continue;
        }
        // The generated regexp has no groups, so only group 0 (the whole match) exists.
        if template.get(start..end) == Some(&['0']) {
            out.extend(matched);
        }
        i = end + usize::from(brace);
    }
}
