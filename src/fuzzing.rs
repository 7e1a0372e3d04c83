//! Entry points shared by the `cargo fuzz` targets (`fuzz/`) and the regression test that replays
//! their seeds, so a crash found by the fuzzer becomes a plain unit test.

use std::collections::BTreeMap;

use crate::dockerfile::instructions::from_ast;
use crate::dockerfile::{dump, parse_bytes, shell};
use crate::plan::{self, Platform};

/// The whole frontend on arbitrary bytes: parse, dump, type, plan. Must never panic; checks that
/// line ranges are ordered and inside the file.
pub fn frontend(data: &[u8]) {
    let Ok(ast) = parse_bytes(data) else { return };
    let lines = data.split(|&b| b == b'\n').count();
    let mut last_end = 0;
    for node in &ast.nodes {
        assert!(node.start_line > last_end, "instructions overlap");
        assert!(node.start_line <= node.end_line && node.end_line <= lines, "line range outside the file");
        last_end = node.end_line;
    }
    let _ = dump::dump(&ast);
    let source = String::from_utf8_lossy(data);
    let Ok(df) = from_ast(&ast, &source) else { return };
    let opts = plan::Options {
        build_args: BTreeMap::from([("A".to_string(), "1".to_string())]),
        target: None,
        platform: Some(Platform::host()),
        build_contexts: BTreeMap::new(),
        ..plan::Options::default()
    };
    if let Ok(p) = plan::plan(&df, &opts, &plan::Unresolved) {
        let _ = p.to_string();
    }
}

/// Word expansion on arbitrary text, in every mode, with either escape token.
pub fn shell_words(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env: Vec<(String, String)> = vec![("A".into(), "a b".into()), ("E".into(), String::new())];
    for escape in ['\\', '`'] {
        for raw in [false, true] {
            let opts = shell::Options { raw_quotes: raw, raw_escapes: raw, skip_unset_env: raw };
            let lexer = shell::Lexer::new(escape).with_options(opts);
            let _ = lexer.process_word_with_matches(text, &env);
            let _ = lexer.process_words(text, &env);
        }
    }
}
/// `.dockerignore` reading and matching on arbitrary text: the first line is the path to match.
pub fn dockerignore(data: &[u8]) {
    use crate::context::dockerignore::{PatternMatcher, parse_ignore_file};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, rest) = text.split_once('\n').unwrap_or((text, ""));
    let patterns = parse_ignore_file(rest);
    if let Ok(m) = PatternMatcher::new(&patterns) {
        let _ = m.is_excluded(path);
        let _ = m.can_skip_dir(path);
    }
}

/// A layer tar from arbitrary bytes: indexing and applying it must never panic, and applying it
/// must never create anything outside the target directory.
pub fn layer(data: &[u8]) {
    let mut index = crate::layer::index::FsIndex::new();
    let _ = index.apply_tar(data);
    let Ok(dir) = tempfile::tempdir() else { return };
    let root = dir.path().join("root");
    if fs_err::create_dir(&root).is_err() {
        return;
    }
    let opts = crate::layer::extract::ApplyOptions::default();
    let _ = crate::layer::extract::apply_layer(data, &root, opts);
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(outside, [std::ffi::OsString::from("root")], "an entry escaped the root");
}
