//! BuildKit's parser golden files: `hako debug dump` must print `result` byte for byte for every
//! positive case, and fail naming a line for every negative case. No case is excluded.

use crate::common::{cases, conformance_dir, run, text};

#[test]
fn every_positive_case_dumps_exactly() {
    let Some(dir) = conformance_dir("parser/testfiles") else { return };
    let mut failures = Vec::new();
    let all = cases(&dir);
    for case in &all {
        let df = case.join("Dockerfile");
        let out = run(&["debug", "dump", df.to_str().expect("utf-8 path")], None);
        let expected = std::fs::read(case.join("result")).expect("read result");
        if !out.status.success() || out.stdout != expected {
            failures.push(format!(
                "{}: status {:?}\n--- expected\n{}--- got\n{}{}",
                case.display(),
                out.status.code(),
                text(&expected),
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
    }
    println!("parser conformance: {}/{} positive cases passed", all.len() - failures.len(), all.len());
    assert!(all.len() >= 33, "expected at least 33 cases, found {}", all.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_negative_case_fails_naming_a_line() {
    let Some(dir) = conformance_dir("parser/testfiles-negative") else { return };
    let all = cases(&dir);
    assert!(all.len() >= 4, "expected at least 4 negative cases, found {}", all.len());
    let expected_messages = [
        ("empty_dockerfile", "file with no instructions"),
        ("env_no_value", "ENV must have two arguments"),
        ("only_comments", "file with no instructions"),
        ("shykes-nested-json", "arrays must be comprised of strings only"),
    ];
    for case in &all {
        let df = case.join("Dockerfile");
        let df = df.to_str().expect("utf-8 path");
        let out = run(&["debug", "dump", df], None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{df} must fail with exit 1: {err}");
        assert!(out.stdout.is_empty(), "{df}: nothing on stdout");
        let prefix = format!("error: {df}:");
        assert!(err.starts_with(&prefix), "{df}: error must name the file and line: {err}");
        let line_part = err[prefix.len()..].split(':').next().unwrap_or("");
        assert!(line_part.parse::<usize>().is_ok_and(|n| n >= 1), "{df}: no line number in {err}");
        let name = case.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (_, msg) = expected_messages
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("new negative case {name}: add its expected message"));
        assert!(err.contains(msg), "{df}: expected `{msg}` in {err}");
    }
    println!("parser conformance: {}/{} negative cases failed as expected", all.len(), all.len());
}

#[test]
fn line_numbers_match_buildkit() {
    // testfile-line: three instructions spanning 5–5, 11–12 and 17–31 (see the conformance README).
    let Some(dir) = conformance_dir("parser/testfile-line") else { return };
    let path = dir.join("Dockerfile");
    let bytes = std::fs::read(path).expect("read");
    let ast = hako::dockerfile::parse_bytes(&bytes).expect("parses");
    let spans: Vec<(usize, usize)> = ast.nodes.iter().map(|n| (n.start_line, n.end_line)).collect();
    assert_eq!(spans, [(5, 5), (11, 12), (17, 31)]);
}

#[test]
fn dump_reads_stdin() {
    let out = run(&["debug", "dump", "-"], Some(b"FROM a\nRUN [\"x\"]\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "(from \"a\")\n(run \"x\")\n");
}
