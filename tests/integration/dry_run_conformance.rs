//! `hako build --dry-run` over every BuildKit parser testfile: the valid ones must plan, the ones a
//! build rejects (they only exercise the parser) must fail with the error listed here.

use crate::common::{cases, conformance_dir, run, text};

/// Cases that parse but cannot be built, with the reason BuildKit rejects them too.
const NOT_BUILDABLE: &[(&str, &str)] = &[
    ("env", "unexpected end of statement while looking for matching single-quote"),
    ("escapes", "unexpected end of statement while looking for matching double-quote"),
    ("flags", "unknown flag: --user"),
    ("health", "HEALTHCHECK requires at least one argument"),
    ("jeztah-invalid-json-json-inside-string", "CMD must come after a FROM"),
    ("jeztah-invalid-json-json-inside-string-double", "CMD must come after a FROM"),
    ("jeztah-invalid-json-single-quotes", "CMD must come after a FROM"),
    ("jeztah-invalid-json-unterminated-bracket", "CMD must come after a FROM"),
    ("jeztah-invalid-json-unterminated-string", "CMD must come after a FROM"),
    ("json", "CMD must come after a FROM"),
];

#[test]
fn every_valid_testfile_plans() {
    let Some(dir) = conformance_dir("parser/testfiles") else { return };
    let ctx = tempfile::tempdir().expect("tempdir");
    let ctx = ctx.path().to_str().expect("utf-8");
    let (mut planned, mut rejected) = (0, 0);
    let mut failures = Vec::new();
    for case in cases(&dir) {
        let name = case.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let df = case.join("Dockerfile");
        let out = run(&["build", "--dry-run", "-f", df.to_str().expect("utf-8"), ctx], None);
        let err = text(&out.stderr);
        match NOT_BUILDABLE.iter().find(|(n, _)| *n == name) {
            None if out.status.success() => planned += 1,
            None => failures.push(format!("{name}: expected a plan, got {:?}: {err}", out.status.code())),
            Some((_, msg)) if out.status.code() == Some(1) && err.contains(msg) => rejected += 1,
            Some((_, msg)) => failures
                .push(format!("{name}: expected exit 1 with `{msg}`, got {:?}: {err}", out.status.code())),
        }
    }
    println!("dry-run conformance: {planned} testfiles planned, {rejected} rejected as listed");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(rejected, NOT_BUILDABLE.len());
    assert!(planned >= 23, "only {planned} planned");
}
