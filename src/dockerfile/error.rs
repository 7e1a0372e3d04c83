//! Dockerfile diagnostics: an error message tied to a place in the file, rendered the way a person
//! can act on it — `Dockerfile:12:5: message`, the offending line, a caret under the column, and
//! optional `hint:` lines.

use std::fmt;

/// A place in a Dockerfile: 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// 1-based physical line.
    pub line: usize,
    /// 1-based column in characters; 0 when only the line is known.
    pub col: usize,
}

impl Pos {
    /// A position with a known line and column.
    pub fn new(line: usize, col: usize) -> Self {
        Pos { line, col }
    }
}

/// An error located in a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostic {
    /// What went wrong, lower-case, no trailing period.
    pub message: String,
    /// Where it went wrong; `line == 0` when the whole file is at fault.
    pub pos: Pos,
    /// How many characters the caret should underline (at least 1 when rendered).
    pub width: usize,
    /// What to do about it.
    pub hints: Vec<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Diagnostic {
    /// A diagnostic at `pos` with no hint.
    pub fn new(message: impl Into<String>, pos: Pos) -> Self {
        Diagnostic { message: message.into(), pos, width: 1, hints: Vec::new() }
    }

    /// Sets how many characters the caret underlines.
    pub fn with_width(mut self, width: usize) -> Self {
        self.width = width.max(1);
        self
    }

    /// Adds a `hint:` line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Renders the diagnostic against the file it refers to.
    ///
    /// ```text
    /// Dockerfile:3:1: unknown instruction "COPPY" (did you mean COPY?)
    ///    |
    ///  3 | COPPY . /app
    ///    | ^^^^^
    /// ```
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let mut out = String::new();
        match (self.pos.line, self.pos.col) {
            (0, _) => out.push_str(&format!("{file_name}: {}\n", self.message)),
            (line, 0) => out.push_str(&format!("{file_name}:{line}: {}\n", self.message)),
            (line, col) => out.push_str(&format!("{file_name}:{line}:{col}: {}\n", self.message)),
        }
        if self.pos.line > 0
            && let Some(text) = source.lines().nth(self.pos.line - 1)
        {
            let text = text.trim_end_matches('\r');
            let num = self.pos.line.to_string();
            let pad = " ".repeat(num.len());
            // Tabs would misalign the caret; show them as single spaces.
            let shown: String = text.chars().map(|c| if c == '\t' { ' ' } else { c }).collect();
            out.push_str(&format!("{pad} |\n{num} | {shown}\n"));
            if self.pos.col > 0 {
                let avail = shown.chars().count().saturating_sub(self.pos.col - 1);
                let width = self.width.min(avail).max(1);
                out.push_str(&format!("{pad} | {}{}\n", " ".repeat(self.pos.col - 1), "^".repeat(width)));
            }
        }
        for hint in &self.hints {
            out.push_str(&format!("hint: {hint}\n"));
        }
        out
    }
}

/// A non-fatal finding (e.g. an empty continuation line), printed as a warning.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Warning {
    /// What was found.
    pub message: String,
    /// Where.
    pub pos: Pos,
    /// The build check that found it (a BuildKit rule name, or one of hako's), if any.
    pub rule: Option<&'static str>,
    /// The last line of the instruction it is about (0: only `pos.line` is known).
    pub end_line: usize,
}

/// Finds `needle` in the physical lines `start..=end` (1-based) of `source` and returns its position,
/// so later stages can point at a flag or argument inside a multi-line instruction.
pub fn locate(source: &str, start: usize, end: usize, needle: &str) -> Option<Pos> {
    if needle.is_empty() || start == 0 {
        return None;
    }
    source
        .lines()
        .enumerate()
        .skip(start - 1)
        .take(end.saturating_sub(start) + 1)
        .find_map(|(i, line)| line.find(needle).map(|byte| Pos::new(i + 1, line[..byte].chars().count() + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_caret_and_hint() {
        let src = "FROM a\nCOPPY . /app\n";
        let d = Diagnostic::new("unknown instruction \"COPPY\" (did you mean COPY?)", Pos::new(2, 1))
            .with_width(5)
            .with_hint("see `hako build --help`");
        assert_eq!(
            d.render("Dockerfile", src),
            "Dockerfile:2:1: unknown instruction \"COPPY\" (did you mean COPY?)\n  |\n2 | COPPY . /app\n  | ^^^^^\nhint: see `hako build --help`\n"
        );
    }

    #[test]
    fn renders_without_column_or_line() {
        let d = Diagnostic::new("file with no instructions", Pos::default());
        assert_eq!(d.render("Dockerfile", ""), "Dockerfile: file with no instructions\n");
        let d = Diagnostic::new("unterminated heredoc", Pos::new(1, 0));
        assert_eq!(d.render("D", "RUN <<EOF\n"), "D:1: unterminated heredoc\n  |\n1 | RUN <<EOF\n");
    }

    #[test]
    fn caret_is_clamped_to_the_line() {
        let d = Diagnostic::new("x", Pos::new(1, 3)).with_width(50);
        assert!(d.render("D", "abcd").ends_with("  |   ^^\n"));
    }

    #[test]
    fn locate_finds_needle_in_continued_lines() {
        let src = "FROM a\nRUN echo \\\n  --bad\n";
        assert_eq!(locate(src, 2, 3, "--bad"), Some(Pos::new(3, 3)));
        assert_eq!(locate(src, 2, 3, "nothere"), None);
        assert_eq!(locate(src, 0, 3, "a"), None);
    }
}
