//! Runs BuildKit's shell-lexer conformance vectors (`envVarTest`, `wordsTest` in
//! `shared/conformance/shell/`, format described in its README) against the shell module.

use std::collections::HashMap;
use std::path::PathBuf;

use hako::dockerfile::shell::{Lexer, ShellError};

const ENV_VAR_VECTORS: usize = 228;
const ENV_VAR_WINDOWS_ONLY: usize = 2;
const WORDS_VECTORS: usize = 24;

fn data_file(name: &str) -> String {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/conformance/shell"));
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// What a row expects: a value, or (for the literal `error`) any error.
fn check<T: PartialEq + std::fmt::Debug>(
    input: &str,
    expected: Option<T>,
    got: Result<T, ShellError>,
    failures: &mut Vec<String>,
) -> bool {
    let ok = match (&expected, &got) {
        (None, Err(_)) => true,
        (Some(want), Ok(have)) => want == have,
        _ => false,
    };
    if !ok {
        let want = expected.map_or_else(|| "an error".to_owned(), |w| format!("{w:?}"));
        failures.push(format!("input {input:?}: expected {want}, got {got:?}"));
    }
    ok
}

/// `(rows run, rows passed, windows-only rows skipped)` for `envVarTest`.
fn run_env_var_test(lexer: &Lexer, failures: &mut Vec<String>) -> (usize, usize, usize) {
    let env: HashMap<String, String> =
        [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let (mut run, mut passed, mut skipped) = (0, 0, 0);
    for (n, line) in data_file("envVarTest").lines().enumerate() {
        // Comments start in column 0; everything else is trimmed, and blank lines are skipped.
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let line = line.trim();
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [platform, input, expected] = fields[..] else {
            failures.push(format!("envVarTest line {}: not three '|'-separated fields: {line:?}", n + 1));
            continue;
        };
        match platform {
            "A" | "U" => {}
            "W" => {
                skipped += 1;
                continue;
            }
            other => {
                failures.push(format!("envVarTest line {}: unknown platform {other:?}", n + 1));
                continue;
            }
        }
        run += 1;
        let expected = (expected != "error").then(|| expected.to_owned());
        if check(input, expected, lexer.process_word(input, &env), failures) {
            passed += 1;
        }
    }
    (run, passed, skipped)
}

/// `(rows run, rows passed)` for `wordsTest`.
fn run_words_test(lexer: &Lexer, failures: &mut Vec<String>) -> (usize, usize) {
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut run, mut passed) = (0, 0);
    for (n, line) in data_file("wordsTest").lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            // Values keep trailing spaces; only the spaces after `ENV` go.
            let (name, value) = rest.trim_start_matches(' ').split_once('=').unwrap_or((rest, ""));
            env.push((name.to_owned(), value.to_owned()));
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [input, expected] = fields[..] else {
            failures.push(format!("wordsTest line {}: not exactly one '|': {line:?}", n + 1));
            continue;
        };
        let input = input.trim();
        let expected: Vec<String> = expected.trim_start_matches(' ').split(',').map(str::to_owned).collect();
        let expected = (expected != ["error"]).then_some(expected);
        run += 1;
        if check(input, expected, lexer.process_words(input, &env), failures) {
            passed += 1;
        }
    }
    (run, passed)
}

#[test]
fn shell_conformance() {
    if crate::common::conformance_dir("shell").is_none() {
        return;
    }
    let lexer = Lexer::new('\\');
    let mut failures = Vec::new();
    let (env_run, env_passed, env_skipped) = run_env_var_test(&lexer, &mut failures);
    let (words_run, words_passed) = run_words_test(&lexer, &mut failures);
    for failure in &failures {
        eprintln!("FAIL {failure}");
    }
    println!(
        "shell conformance: envVarTest {env_passed}/{env_run} passed ({env_skipped} windows-only rows skipped), \
         wordsTest {words_passed}/{words_run} passed"
    );
    assert!(failures.is_empty(), "{} shell conformance failures (listed above)", failures.len());
    assert_eq!(env_run, ENV_VAR_VECTORS, "envVarTest rows run");
    assert_eq!(env_skipped, ENV_VAR_WINDOWS_ONLY, "envVarTest windows-only rows");
    assert_eq!(words_run, WORDS_VECTORS, "wordsTest rows run");
    assert_eq!((env_passed, words_passed), (env_run, words_run));
}
