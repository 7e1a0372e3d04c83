//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The `hako` binary under test.
pub fn hako() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hako"))
}

/// Runs `hako` with `args`, feeding `stdin`, and returns its output.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = hako();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("spawn hako");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait for hako")
}

/// `../shared/conformance/<sub>` next to the repository (read-only project material).
pub fn conformance_dir(sub: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance").join(sub);
    assert!(dir.is_dir(), "conformance data missing: {} (clone the repo next to shared/)", dir.display());
    dir
}

/// Sub-directories of `dir`, sorted.
pub fn cases(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read case dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// Text of stdout/stderr.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Records that a check was skipped and why: printed (visible with `--nocapture`) and appended to
/// `target/tmp/skipped-tests.txt`, which `scripts/test.sh` prints and counts after the run, so a
/// skip is never silent in CI.
pub fn skip(reason: &str) {
    eprintln!("skipping: {reason}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        use std::io::Write;
        let _ = writeln!(f, "{} ({})", reason, std::thread::current().name().unwrap_or("?"));
    }
}
