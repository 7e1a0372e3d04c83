//! The raw Dockerfile parse: physical lines → instructions (keyword, flags, arguments, heredoc
//! bodies, line range), exactly as BuildKit's parser builds its node tree. No variable expansion
//! and no per-instruction validation happen here; that is [`super::instructions`]' job.

use super::error::{Diagnostic, Pos, Warning};
use super::gostr::{is_space, split_ascii_ws, trim_space};
use super::json::{JsonArgs, parse_array_prefix};
use super::lexer::{
    Directive, DirectiveError, DirectiveParser, extract_flags, is_comment, parse_words, split_keyword,
    trim_continuation,
};
use super::shell::{Lexer, Options};

/// BuildKit reads lines with a 64 KiB scanner buffer; longer lines are an error.
pub const MAX_LINE: usize = 65_535;

/// One instruction as parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// The keyword as written (`RUN`, `Run`, `COPPY`).
    pub keyword: String,
    /// `--name[=value]` words before the arguments, quotes removed.
    pub flags: Vec<String>,
    /// Arguments. For `ENV`/`LABEL`: triples `key, value, sep` where `sep` is `"="` or `""`
    /// (legacy `ENV key value`). For `HEALTHCHECK`: the type word, then the command.
    pub args: Vec<String>,
    /// The trigger of an `ONBUILD`.
    pub onbuild: Option<Box<Node>>,
    /// Arguments came from a JSON array (exec form).
    pub json: bool,
    /// Text after an exec-form array, which BuildKit v0.13's JSON decoder ignores (`CMD ["x"] # y`).
    pub ignored: Option<String>,
    /// Heredoc bodies attached to this instruction, in order.
    pub heredocs: Vec<Heredoc>,
    /// The instruction's text after joining continuation lines.
    pub original: String,
    /// First physical line (1-based).
    pub start_line: usize,
    /// Last physical line consumed, including heredoc bodies.
    pub end_line: usize,
    /// Column (1-based, characters) of the keyword on `start_line`.
    pub col: usize,
    /// Comment lines immediately above the instruction (for `ARG`/stage documentation).
    pub comments: Vec<String>,
}

impl Node {
    /// The keyword in upper case, as instructions are matched.
    pub fn name(&self) -> String {
        self.keyword.to_uppercase()
    }

    /// Where the keyword starts.
    pub fn pos(&self) -> Pos {
        Pos::new(self.start_line, self.col)
    }
}

/// A heredoc attached to `RUN`, `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heredoc {
    /// The terminator word, quotes removed.
    pub name: String,
    /// File descriptor digits before `<<` (`3<<EOF`), 0 when absent.
    pub fd: u32,
    /// Whether the body is subject to variable expansion (no quotes in the name).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body.
    pub chomp: bool,
    /// The body, lines verbatim including their newlines.
    pub content: String,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    /// The instructions in file order.
    pub nodes: Vec<Node>,
    /// The escape token (`\` or a backtick from `# escape=`).
    pub escape: char,
    /// Parser directives found at the top of the file.
    pub directives: Vec<Directive>,
    /// Non-fatal findings.
    pub warnings: Vec<Warning>,
}

impl Ast {
    /// The `# syntax=` directive, recorded but otherwise ignored (no frontend is downloaded).
    pub fn syntax(&self) -> Option<&str> {
        self.directives.iter().find(|d| d.name == "syntax").map(|d| d.value.as_str())
    }
}

/// Parses raw bytes. Invalid UTF-8 is replaced with U+FFFD (with a warning naming the line):
/// BuildKit accepts such files, and refusing them would break Dockerfiles with a stray Latin-1
/// comment.
pub fn parse_bytes(bytes: &[u8]) -> Result<Ast, Diagnostic> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            let mut ast = parse(&String::from_utf8_lossy(bytes))?;
            ast.warnings.insert(
                0,
                Warning {
                    message: "the Dockerfile is not valid UTF-8; invalid bytes were replaced with U+FFFD"
                        .into(),
                    pos: Pos::new(line, 0),
                    ..Warning::default()
                },
            );
            Ok(ast)
        }
    }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Ast, Diagnostic> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut lines = PhysicalLines::new(text);
    let mut directives = DirectiveParser::default();
    let mut escape = '\\';
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();

    while let Some(raw) = lines.next_line()? {
        let line_no = lines.number;
        let trimmed = trim_newline(raw).trim_start_matches(is_space);
        if is_comment(trimmed) {
            let comment = trim_space(&trimmed[1..]);
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_string());
            }
        }
        match directives.parse_line(trimmed, line_no) {
            Ok(Some(d)) => {
                comments.pop();
                if d.name == "escape" {
                    escape = d.value.chars().next().unwrap_or('\\');
                }
            }
            Ok(None) => {}
            Err(e) => {
                let msg = match e {
                    DirectiveError::Duplicate(name) => {
                        format!("only one {name} parser directive can be used")
                    }
                    DirectiveError::BadEscape(v) => {
                        format!("invalid escape token '{v}' does not match ` or \\")
                    }
                };
                return Err(Diagnostic::new(msg, Pos::new(line_no, 1)));
            }
        }
        let first = if is_comment(trimmed) { "" } else { trimmed };
        let col = trim_newline(raw).chars().count() - trimmed.chars().count() + 1;
        let start_line = line_no;
        let (first, mut ended) = trim_continuation(first, escape);
        if ended && first.is_empty() {
            continue;
        }
        let mut joined = first.to_string();
        let mut empty_continuation = false;
        while !ended {
            let Some(raw) = lines.next_line()? else { break };
            let line = trim_newline(raw);
            if is_comment(line) {
                continue;
            }
            if line.trim_start_matches(is_space).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, end) = trim_continuation(line, escape);
            joined.push_str(part);
            ended = end;
        }
        if empty_continuation {
            // BuildKit's NoEmptyContinuation check, at the instruction's last line.
            warnings.push(Warning {
                message: "Empty continuation line".into(),
                pos: Pos::new(lines.number, 0),
                rule: Some(super::checks::NO_EMPTY_CONTINUATION.name),
                end_line: lines.number,
            });
        }

        let at = |msg: String| Diagnostic::new(msg, Pos::new(start_line, col));
        let mut node = node_from_line(&joined, escape).map_err(at)?;
        node.col = col;
        node.comments = std::mem::take(&mut comments);

        let heredoc_target = node.onbuild.as_deref().unwrap_or(&node);
        if can_contain_heredoc(heredoc_target) && joined.contains("<<") {
            let specs = heredocs_in(&joined).map_err(at)?;
            let mut docs = Vec::with_capacity(specs.len());
            for mut doc in specs {
                let mut terminated = false;
                while let Some(raw) = lines.next_line()? {
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(Diagnostic::new(
                        format!("unterminated heredoc: no line `{}` ends the body", doc.name),
                        Pos::new(start_line, col),
                    )
                    .with_hint(format!("end the heredoc with a line that is exactly `{}`", doc.name)));
                }
                docs.push(doc);
            }
            match node.onbuild.as_deref_mut() {
                Some(trigger) => trigger.heredocs = docs,
                None => node.heredocs = docs,
            }
        }
        node.start_line = start_line;
        node.end_line = lines.number;
        if let Some(trigger) = node.onbuild.as_deref_mut() {
            trigger.start_line = start_line;
            trigger.end_line = lines.number;
            trigger.col = col;
        }
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(Diagnostic::new("file with no instructions", Pos::new(lines.number.max(1), 0))
            .with_hint("a Dockerfile needs at least a FROM instruction"));
    }
    Ok(Ast { nodes, escape, directives: directives.seen, warnings })
}

/// Physical lines with their line endings, numbered from 1, enforcing BuildKit's line-size limit.
struct PhysicalLines<'a> {
    rest: &'a str,
    number: usize,
}

impl<'a> PhysicalLines<'a> {
    fn new(text: &'a str) -> Self {
        PhysicalLines { rest: text, number: 0 }
    }

    fn next_line(&mut self) -> Result<Option<&'a str>, Diagnostic> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.number += 1;
        if line.strip_suffix('\n').unwrap_or(line).len() > MAX_LINE {
            return Err(Diagnostic::new(
                format!("dockerfile line greater than max allowed size of {MAX_LINE}"),
                Pos::new(self.number, 0),
            ));
        }
        Ok(Some(line))
    }
}

/// Strips all trailing `\r` and `\n` characters.
fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

/// Builds one node from an instruction's joined text (BuildKit's `newNodeFromLine`).
fn node_from_line(line: &str, escape: char) -> Result<Node, String> {
    let (keyword, rest) = split_keyword(trim_space(line));
    let (rest, flags) = match rest {
        Some(rest) => extract_flags(rest, escape),
        None => (String::new(), Vec::new()),
    };
    let rest = trim_space(&rest);
    let mut node =
        Node { keyword: keyword.to_string(), flags, original: line.to_string(), ..Node::default() };
    match keyword.to_ascii_lowercase().as_str() {
        "run" | "cmd" | "entrypoint" | "shell" => (node.args, node.json, node.ignored) = maybe_json(rest)?,
        "add" | "copy" | "volume" => (node.args, node.json, node.ignored) = maybe_json_list(rest)?,
        "from" | "expose" => node.args = whitespace_split(rest),
        "user" | "workdir" | "stopsignal" | "maintainer" => {
            if !rest.is_empty() {
                node.args = vec![rest.to_string()];
            }
        }
        "env" => node.args = name_values(rest, "ENV", escape)?,
        "label" => node.args = name_values(rest, "LABEL", escape)?,
        "arg" => node.args = parse_words(rest, escape),
        "healthcheck" => (node.args, node.json, node.ignored) = healthcheck(rest)?,
        "onbuild" => {
            if !rest.is_empty() {
                node.onbuild = Some(Box::new(node_from_line(rest, escape)?));
            }
        }
        // Unknown keywords keep one empty argument; validation rejects them later with a location.
        _ => node.args = vec![String::new()],
    }
    Ok(node)
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// Arguments, whether they are an exec form, and the text after the array when there is some.
type Parsed = (Vec<String>, bool, Option<String>);

/// The words after an exec-form array (`None` when only whitespace follows it).
fn ignored(rest: &str) -> Option<String> {
    let t = trim_space(rest);
    (!t.is_empty()).then(|| t.to_string())
}

fn maybe_json(rest: &str) -> Result<Parsed, String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false, None));
    }
    match parse_array_prefix(rest) {
        (JsonArgs::Strings(v), after) => Ok((v, true, ignored(after))),
        (JsonArgs::NotStrings, _) => Err(NOT_STRINGS.into()),
        (JsonArgs::NotJson, _) => Ok((vec![rest.to_string()], false, None)),
    }
}

fn maybe_json_list(rest: &str) -> Result<Parsed, String> {
    match parse_array_prefix(rest) {
        (JsonArgs::Strings(v), after) => Ok((v, true, ignored(after))),
        (JsonArgs::NotStrings, _) => Err(NOT_STRINGS.into()),
        (JsonArgs::NotJson, _) => Ok((whitespace_split(rest), false, None)),
    }
}

fn whitespace_split(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    split_ascii_ws(rest, 0).into_iter().map(String::from).collect()
}

/// `ENV`/`LABEL` arguments as `key, value, sep` triples.
fn name_values(rest: &str, what: &str, escape: char) -> Result<Vec<String>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else { return Ok(Vec::new()) };
    if !first.contains('=') {
        let parts = split_ascii_ws(rest, 2);
        return match parts.as_slice() {
            [key, value] => Ok(vec![key.to_string(), value.to_string(), String::new()]),
            _ => Err(format!("{what} must have two arguments")),
        };
    }
    let mut args = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                super::gostr::quote(word)
            ));
        };
        args.extend([key.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(args)
}

/// `HEALTHCHECK TYPE rest`: the type word, then `rest` parsed like `CMD`. BuildKit scans for the
/// separator byte by byte (so bytes 0x85/0xA0 count as spaces); we do the same.
fn healthcheck(rest: &str) -> Result<Parsed, String> {
    let bytes = rest.as_bytes();
    let latin1_space = |b: &u8| is_space(*b as char);
    let sep = bytes.iter().position(latin1_space).unwrap_or(bytes.len());
    if sep == 0 {
        return Ok((Vec::new(), false, None));
    }
    let next = bytes[sep..].iter().position(|b| !latin1_space(b)).map_or(bytes.len(), |i| sep + i);
    let kind = String::from_utf8_lossy(&bytes[..sep]).into_owned();
    let cmd = String::from_utf8_lossy(&bytes[next..]);
    let (mut args, json, ignored) = maybe_json(&cmd)?;
    args.insert(0, kind);
    Ok((args, json, ignored))
}

fn can_contain_heredoc(node: &Node) -> bool {
    matches!(node.keyword.to_ascii_lowercase().as_str(), "run" | "copy" | "add") && !node.json
}

/// Finds the heredocs an instruction line opens (BuildKit's `heredocsFromLine`): the line is cut
/// into shell words with quotes and escapes kept, and each word shaped `[fd]<<[-]NAME` opens one.
fn heredocs_in(line: &str) -> Result<Vec<Heredoc>, String> {
    let raw = Options { raw_quotes: true, raw_escapes: true, skip_unset_env: true };
    let no_env: [(String, String); 0] = [];
    // An unsplittable line (e.g. an unterminated quote) has no heredocs, as in BuildKit.
    let Ok(words) = Lexer::new('\\').with_options(raw).process_words(line, &no_env[..]) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = heredoc_from_word(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Matches `^(\d*)<<(-?)\s*([^<]*)$` and decides the name and whether the body expands.
pub fn heredoc_from_word(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = word[digits..].strip_prefix("<<") else { return Ok(None) };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    let rest = after.trim_start_matches([' ', '\t', '\n', '\u{0C}', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = word[..digits].parse::<u32>().unwrap_or(0);
    let no_env: [(String, String); 0] = [];
    let skip = Options { skip_unset_env: true, ..Options::default() };
    let words =
        Lexer::new('\\').with_options(skip).process_words(rest, &no_env[..]).map_err(|e| e.to_string())?;
    let [name] = words.as_slice() else { return Ok(None) };
    let raw = Options { raw_quotes: true, ..skip };
    let raw_words =
        Lexer::new('\\').with_options(raw).process_words(rest, &no_env[..]).map_err(|e| e.to_string())?;
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = raw_words.first().is_some_and(|raw_name| quotes(name) == quotes(raw_name));
    Ok(Some(Heredoc { name: name.clone(), fd, expand, chomp, content: String::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every error the raw parser can raise: (Dockerfile, message, line).
    #[test]
    fn parse_errors_have_messages_and_lines() {
        let long = format!("FROM a\nRUN {}\n", "x".repeat(MAX_LINE));
        let cases: &[(&str, &str, usize)] = &[
            ("", "file with no instructions", 1),
            ("# only\n\n# comments\n", "file with no instructions", 3),
            ("# escape=\\\n# escape=`\nFROM a", "only one escape parser directive can be used", 2),
            ("# syntax=a\n# SYNTAX=b\nFROM a", "only one syntax parser directive can be used", 2),
            ("# escape=x\nFROM a", "invalid escape token 'x' does not match ` or \\", 1),
            (&long, "dockerfile line greater than max allowed size of 65535", 2),
            ("FROM a\nRUN <<EOF\necho hi\n", "unterminated heredoc: no line `EOF` ends the body", 2),
            (
                "FROM a\nCMD [\"a\", [\"b\"]]",
                "when using JSON array syntax, arrays must be comprised of strings only",
                2,
            ),
            ("FROM a\nENV PATH", "ENV must have two arguments", 2),
            ("FROM a\nLABEL x", "LABEL must have two arguments", 2),
            ("FROM a\nENV a=b c", "Syntax error - can't find = in \"c\". Must be of the form: name=value", 2),
        ];
        for (src, msg, line) in cases {
            let e = parse(src).expect_err(msg);
            assert_eq!(&e.message, msg, "{src:?}");
            assert_eq!(e.pos.line, *line, "{src:?}");
        }
        // A line of exactly the maximum is fine.
        assert!(parse(&format!("FROM a\nRUN {}\n", "x".repeat(MAX_LINE - 4))).is_ok());
    }

    #[test]
    fn exec_form_followed_by_more_text_keeps_the_array() {
        let ast =
            parse("FROM a\nENTRYPOINT [\"x\"] # a comment\nCOPY [\"a\", \"b\"] junk\nONBUILD CMD [\"y\"]z\n")
                .expect("parses");
        let ep = &ast.nodes[1];
        assert_eq!(
            (ep.json, ep.args.as_slice(), ep.ignored.as_deref()),
            (true, &["x".to_string()][..], Some("# a comment"))
        );
        assert_eq!((ast.nodes[2].json, ast.nodes[2].args.len()), (true, 2));
        let trigger = ast.nodes[3].onbuild.as_deref().expect("trigger");
        assert_eq!((trigger.json, trigger.ignored.as_deref()), (true, Some("z")));
        assert_eq!(parse("FROM a\nCMD [\"x\"]\n").expect("parses").nodes[1].ignored, None);
    }

    #[test]
    fn heredoc_recognition() {
        let h = |w: &str| heredoc_from_word(w).expect("no error").map(|d| (d.name, d.fd, d.chomp, d.expand));
        assert_eq!(h("<<EOF"), Some(("EOF".into(), 0, false, true)));
        assert_eq!(h("3<<-'E F'"), Some(("E F".into(), 3, true, false)));
        assert_eq!(h("<<EO\"F\""), Some(("EOF".into(), 0, false, false)));
        assert_eq!(h("<<file.txt"), Some(("file.txt".into(), 0, false, true)));
        assert_eq!(h("<<$EOF"), Some(("$EOF".into(), 0, false, true)));
        for not in ["<<", "<<<EOF", "<EOF", "cat<<EOF", "'<<EOF'"] {
            assert_eq!(h(not), None, "{not}");
        }
    }

    #[test]
    fn heredoc_bodies_and_lines() {
        let ast = parse("FROM a\nRUN <<A cat && cat <<-B\nline 1\nA\n\tline 2\n\tB\nUSER <<NOT\nNOT\n")
            .expect("parses");
        let run = &ast.nodes[1];
        assert_eq!((run.start_line, run.end_line), (2, 6));
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[0].content, "line 1\n");
        assert_eq!(run.heredocs[1].content, "\tline 2\n");
        // USER cannot have a heredoc, so the next line is an instruction of its own.
        assert_eq!(ast.nodes[3].keyword, "NOT");
        // An unsplittable line opens no heredoc; JSON form opens none.
        let ast = parse("FROM a\nRUN <<'EOF\nRUN [\"<<EOF\"]\n").expect("parses");
        assert_eq!(ast.nodes.len(), 3);
    }

    #[test]
    fn directives_comments_and_columns() {
        let ast =
            parse("\u{feff}# syntax=docker/dockerfile:1\n# escape=`\n# doc for x\n  FROM a `\n  AS x\n")
                .expect("parses");
        assert_eq!(ast.syntax(), Some("docker/dockerfile:1"));
        assert_eq!(ast.escape, '`');
        let from = &ast.nodes[0];
        assert_eq!((from.col, from.start_line, from.end_line), (3, 4, 5));
        assert_eq!(from.comments, ["doc for x"]);
        assert_eq!(from.args, ["a", "AS", "x"]);
        let ast = parse_bytes(b"FROM a\nRUN echo \xff\n").expect("lossy");
        assert_eq!(ast.warnings[0].pos.line, 2);
    }
}
