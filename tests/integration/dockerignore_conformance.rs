//! `.dockerignore` conformance: every row of `shared/conformance/dockerignore/README.md` (1–60), its reader
//! examples and the `Dockerfile.dockerignore` precedence, plus a check that the README's table still has
//! exactly the 60 rows encoded here (and that they still pass when read from the README itself).

use hako::context::dockerignore::{IgnoreError, PatternMatcher, find_ignore_file, parse_ignore_file};

/// What a row expects.
#[derive(Clone, Copy, Debug)]
enum Want {
    Excluded(bool),
    /// `PatternMatcher::new` fails.
    LoadError,
    /// Loading succeeds, matching the path fails.
    MatchError,
}
use Want::{Excluded, LoadError, MatchError};

const YES: Want = Excluded(true);
const NO: Want = Excluded(false);

/// (row, patterns, path, expected); a row may have several cases (25, 59).
const ROWS: &[(u32, &[&str], &str, Want)] = &[
    (1, &["foo"], "foo", YES),
    (2, &["foo"], "foo/bar/baz.txt", YES),
    (3, &["foo"], "foobar", NO),
    (4, &["foo"], "x/foo", NO),
    (5, &["*"], "fileutils.go", YES),
    (6, &["*.go"], ".", NO),
    (7, &["*.md"], "docs/a.md", NO),
    (8, &["a*"], "ab/c", YES),
    (9, &["a*/b"], "abc/b", YES),
    (10, &["a*/b"], "a/c/b", NO),
    (11, &["a*b*c*d*e*/f"], "axbxcxdxexxx/f", YES),
    (12, &["a*b*c*d*e*/f"], "axbxcxdxe/xxx/f", NO),
    (13, &["a?b"], "a☺b", YES),
    (14, &["a???b"], "a☺b", NO),
    (15, &["a?b"], "a/b", NO),
    (16, &["abc?def"], "abcdef", NO),
    (17, &[".*"], ".foo", YES),
    (18, &[".*"], "foo", NO),
    (19, &["abc.def"], "abcZdef", NO),
    (20, &["a[b-d]e"], "ace", YES),
    (21, &["a[b-d]e"], "aae", NO),
    (22, &["a[^b-d]e"], "aze", YES),
    (23, &["[a-ζ]*"], "α", YES),
    (24, &[r"[\-x]"], "-", YES),
    (25, &["[x-]"], "x", LoadError),
    (25, &["[]a]"], "x", LoadError),
    (25, &["[-x]"], "x", LoadError),
    (25, &["[a-b-c]"], "x", LoadError),
    (25, &["["], "x", LoadError),
    (25, &["[^"], "x", LoadError),
    (25, &["a["], "x", LoadError),
    (26, &["\\"], "x", LoadError),
    (27, &["[Local-Only]/"], "x", MatchError),
    (28, &[r"a\*b"], "a*b", YES),
    (29, &[r"a\*b"], "ab", NO),
    (30, &[r"a\\"], "a\\", YES),
    (31, &["a(b)c/def"], "a(b)c/def", YES),
    (32, &["a.|)$(}+{bc"], "a.|)$(}+{bc", YES),
    (33, &["**"], "dir/file", YES),
    (34, &["**/"], "file", YES),
    (35, &["dir/**"], "dir/dir2/file", YES),
    (36, &["abc/**"], "abc", NO),
    (37, &["abc/**"], "abc/def", YES),
    (38, &["**/dir"], "dir", YES),
    (39, &["**/dir"], "dir/file", YES),
    (40, &["**/dir2/*"], "dir/dir2/file", YES),
    (41, &["**file"], "dir/dir/file", YES),
    (42, &["**/**/*.txt2"], "dir/dir/file.txt", NO),
    (43, &["**/*.txt"], "file.txt", YES),
    (44, &["a**/*.txt"], "a/dir/dir/file.txt", YES),
    (45, &["a/*.txt**"], "a/file.txt", YES),
    (46, &["**/.foo"], "bar.foo", NO),
    (47, &["**/foo/bar"], "dir/dir2/foo/bar", YES),
    (48, &["!fileutils.go", "*.go"], "fileutils.go", YES),
    (49, &["*.go", "!fileutils.go"], "fileutils.go", NO),
    (50, &["docs", "!docs/README.md"], "docs/README.md", NO),
    (51, &["docs/", "!docs/README.md"], "docs/README.md", NO),
    (52, &["docs/*", "!docs/README.md"], "docs/README.md", NO),
    (53, &["docs", "!docs/README.md"], "docs/other.md", YES),
    (54, &["**", "!util/docker/web"], "util/docker/web/foo", NO),
    (55, &["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", YES),
    (56, &["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", NO),
    (57, &["ignore_relative/**", "!ignore_relative/foo"], "ignore_relative/foo", NO),
    (58, &["ignore_relative/**", "!ignore_relative/foo"], "ignore_relative/bar", YES),
    (59, &["ba*", "Dockerfile", "!bay", ".dockerignore"], "foo", NO),
    (59, &["ba*", "Dockerfile", "!bay", ".dockerignore"], "bar", YES),
    (59, &["ba*", "Dockerfile", "!bay", ".dockerignore"], "baz", YES),
    (59, &["ba*", "Dockerfile", "!bay", ".dockerignore"], "bay", NO),
    (59, &["ba*", "Dockerfile", "!bay", ".dockerignore"], "Dockerfile", YES),
    (59, &["ba*", "Dockerfile", "!bay", ".dockerignore"], ".dockerignore", YES),
    (60, &["!"], "x", LoadError),
];

/// Runs one case; `Err` says what happened instead.
fn check(patterns: &[&str], path: &str, want: Want) -> Result<(), String> {
    let got = PatternMatcher::new(patterns).map(|m| m.is_excluded(path));
    match (want, got) {
        (Excluded(w), Ok(Ok(g))) if w == g => Ok(()),
        (LoadError, Err(_)) => Ok(()),
        (MatchError, Ok(Err(IgnoreError::Unmatchable { .. }))) => Ok(()),
        (want, got) => Err(format!("{patterns:?} on {path:?}: want {want:?}, got {got:?}")),
    }
}

/// Checks every case, prints `N/N rows passed` and returns the failures, each naming its row.
fn run_rows<'a>(
    label: &str,
    rows: impl IntoIterator<Item = (u32, Vec<&'a str>, &'a str, Want)>,
) -> Vec<String> {
    let (mut failures, mut failed_rows, mut all_rows) = (Vec::new(), Vec::new(), Vec::new());
    for (row, patterns, path, want) in rows {
        if !all_rows.contains(&row) {
            all_rows.push(row);
        }
        if let Err(e) = check(&patterns, path, want) {
            failures.push(format!("row {row}: {e}"));
            if !failed_rows.contains(&row) {
                failed_rows.push(row);
            }
        }
    }
    let total = all_rows.len();
    println!("{label}: {}/{total} rows passed", total - failed_rows.len());
    failures
}

#[test]
fn every_table_row() {
    let rows = ROWS.iter().map(|&(row, patterns, path, want)| (row, patterns.to_vec(), path, want));
    let failures = run_rows("dockerignore conformance", rows);
    let numbered: Vec<u32> = ROWS.iter().map(|r| r.0).collect();
    assert!((1..=60).all(|n| numbered.contains(&n)), "a row of 1–60 is not encoded");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_rows_fail_for_the_right_reason() {
    assert!(matches!(PatternMatcher::new(&["!"]), Err(IgnoreError::IllegalExclusion)), "row 60");
    assert!(matches!(PatternMatcher::new(&["\\"]), Err(IgnoreError::Syntax { .. })), "row 26");
    // Row 27: accepted when loaded, fails on every attempt; the message names the pattern.
    let m = PatternMatcher::new(&["[Local-Only]/"]).unwrap_or_else(|e| panic!("row 27 must load: {e}"));
    for path in ["x", "Local", "a/b"] {
        let err = m.is_excluded(path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("[Local-Only]"), "row 27 on {path}: {err:?}");
    }
}

#[test]
fn reader_examples() {
    let text = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! \n";
    let read = parse_ignore_file(text);
    assert_eq!(read, ["test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"]);
    assert!(matches!(PatternMatcher::new(&read), Err(IgnoreError::IllegalExclusion)), "lone `!` fails");
    assert_eq!(parse_ignore_file("  #foo  "), ["#foo"], "a comment needs `#` in the first column");
    assert_eq!(parse_ignore_file("./a/../b/"), ["b"]);
    assert_eq!(parse_ignore_file("!  /c//d/"), ["!c/d"]);
    assert_eq!(parse_ignore_file("\u{FEFF}# c\r\n\u{FEFF}x\r\n /y \n"), ["\u{FEFF}x", "y"], "BOM, CRLF");
    assert_eq!(parse_ignore_file("a # not a comment\n/\n"), ["a # not a comment", "/"]);
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("hako-dockerignore-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The ignore file that applies for `dockerfile`, loaded.
fn matcher_for(ctx: &std::path::Path, dockerfile: Option<&str>) -> PatternMatcher {
    let file =
        find_ignore_file(ctx, dockerfile.map(std::path::Path::new)).unwrap_or_else(|| panic!("no file"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    PatternMatcher::new(&parse_ignore_file(&text)).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let ctx = TempDir::new("precedence");
    for (name, text) in [
        ("Dockerfile", "FROM scratch\nCOPY . .\n"),
        ("Dockerfile2", "FROM scratch\nCOPY . .\n"),
        ("Dockerfile.dockerignore", "bar\n"),
        ("Dockerfile2.dockerignore", "foo\n"),
        (".dockerignore", "foo\nbar\n"),
        ("foo", ""),
        ("bar", ""),
    ] {
        ctx.write(name, text);
    }
    let ctx = ctx.0.as_path();
    assert_eq!(find_ignore_file(ctx, None), Some(ctx.join("Dockerfile.dockerignore")));
    for (dockerfile, seen, hidden) in
        [(None, "foo", "bar"), (Some("Dockerfile"), "foo", "bar"), (Some("Dockerfile2"), "bar", "foo")]
    {
        let m = matcher_for(ctx, dockerfile);
        assert!(!m.is_excluded(seen).is_ok_and(|x| x), "{dockerfile:?} must see {seen}");
        assert!(m.is_excluded(hidden).is_ok_and(|x| x), "{dockerfile:?} must not see {hidden}");
    }
    // An absolute Dockerfile path outside the context: its own ignore file, else the context's.
    let elsewhere = TempDir::new("elsewhere");
    elsewhere.write("Custom", "FROM scratch\n");
    let custom = elsewhere.0.join("Custom");
    assert_eq!(find_ignore_file(ctx, Some(&custom)), Some(ctx.join(".dockerignore")));
    elsewhere.write("Custom.dockerignore", "x\n");
    assert_eq!(find_ignore_file(ctx, Some(&custom)), Some(elsewhere.0.join("Custom.dockerignore")));
    let bare = TempDir::new("bare");
    assert_eq!(find_ignore_file(&bare.0, None), None);
}

/// Splits a Markdown table line into cells (`\|` is an escaped pipe inside a cell).
fn cells(line: &str) -> Vec<String> {
    let (mut out, mut cell, mut chars) = (Vec::new(), String::new(), line.trim().chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => cell.push(chars.next().unwrap_or('|')),
            '|' => out.push(std::mem::take(&mut cell).trim().to_string()),
            c => cell.push(c),
        }
    }
    out.into_iter().skip(1).collect()
}

#[test]
fn readme_table_has_60_rows_and_they_pass() {
    let Some(dir) = crate::common::conformance_dir("dockerignore") else { return };
    let path = dir.join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let rows: Vec<Vec<String>> = readme
        .lines()
        .map(cells)
        .filter(|c| c.len() >= 6 && c.first().is_some_and(|n| n.parse::<u32>().is_ok()))
        .collect();
    let numbers: Vec<u32> = rows.iter().filter_map(|c| c.first()?.parse().ok()).collect();
    assert_eq!(
        numbers.len(),
        60,
        "the README's table has {} rows: encode the new ones in ROWS",
        numbers.len()
    );
    assert!(numbers.iter().copied().eq(1..=60), "rows are not numbered 1–60: {numbers:?}");

    // Read each row's own text (patterns `a; b`, paths `x` / `y`, verdicts yes/no/error) and run it too.
    let unquote = |s: &str| s.trim().trim_matches('`').to_string();
    let mut cases = Vec::new();
    for (row, c) in numbers.iter().zip(&rows) {
        let [_, patterns, paths, verdicts, ..] = c.as_slice() else { continue };
        let patterns: Vec<String> = patterns.split("; ").map(unquote).collect();
        let paths = paths.split(" / ").map(unquote);
        for (path, verdict) in paths.zip(verdicts.split(" / ").chain(std::iter::repeat(verdicts.as_str()))) {
            let want = match verdict.trim() {
                "yes" => YES,
                "no" => NO,
                "error" => LoadError,
                "error when matching" => MatchError,
                other => panic!("row {row}: unknown verdict {other:?}"),
            };
            let path = if path == "any" { "x".to_string() } else { path };
            cases.push((*row, patterns.clone(), path, want));
        }
    }
    let cases: Vec<_> = cases
        .iter()
        .map(|(r, p, path, w)| (*r, p.iter().map(String::as_str).collect(), path.as_str(), *w))
        .collect();
    let failures = run_rows("dockerignore conformance (README table)", cases);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
