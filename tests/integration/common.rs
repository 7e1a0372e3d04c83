//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The `hako` binary under test (never with the caller's `HAKO_CONFIG`: tests that want a
/// config file give their own).
pub fn hako() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hako"));
    cmd.env_remove("HAKO_CONFIG");
    cmd
}

/// Runs `hako` with `args`, feeding `stdin`, and returns its output.
pub fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = hako();
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("spawn hako");
    if let Some(input) = stdin {
        feed_stdin(&mut child, input);
    }
    child.wait_with_output().expect("wait for hako")
}

/// Writes `input` to the child's piped stdin and closes it. A child that exits without reading
/// (a usage error) closes the pipe first: that is its answer to check, not a test failure.
pub fn feed_stdin(child: &mut std::process::Child, input: &[u8]) {
    use std::io::Write;
    let mut pipe = child.stdin.take().expect("stdin is piped");
    match pipe.write_all(input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("write stdin"),
    }
}

/// `../shared/conformance/<sub>` next to the repository (read-only project material), or `None`
/// — the check recorded as skipped, with the reason — in a clone without `../shared` beside it.
pub fn conformance_dir(sub: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance").join(sub);
    if !dir.is_dir() {
        skip(&format!(
            "conformance data {sub}: {} is missing (clone the repo next to shared/)",
            dir.display()
        ));
        return None;
    }
    Some(dir)
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

/// The names of the entries of `dir`, in the order the file system lists them.
pub fn dir_names(dir: &std::path::Path) -> Vec<String> {
    fs_err::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
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

/// Loads a docker archive into a private podman store under `dir` (so nothing is left on the
/// machine) and runs `image`; returns the run's output, which succeeded. `None` (the check is
/// recorded as skipped, named `what`) when podman or runc is missing or cannot start containers
/// here.
pub fn podman_load_and_run(
    dir: &std::path::Path,
    archive: &std::path::Path,
    image: &str,
    what: &str,
) -> Option<Output> {
    let missing = ["podman", "runc"].into_iter().find(|tool| {
        !Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if let Some(tool) = missing {
        skip(&format!("{what}: {tool} is not installed (scripts/install-deps.sh installs it)"));
        return None;
    }
    let podman = |args: &[&str]| {
        Command::new("podman")
            .arg("--root")
            .arg(dir.join("podman-root"))
            .arg("--runroot")
            .arg(dir.join("podman-run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(args)
            .output()
            .expect("podman")
    };
    let load = podman(&["load", "-i", archive.to_str().expect("utf-8")]);
    assert!(load.status.success(), "podman load: {}", text(&load.stderr));
    // This host's rlimits are below podman's defaults (see ../shared/ci-profiles), hence the ulimits.
    let run = podman(&["run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", image]);
    let err = text(&run.stderr);
    if !run.status.success() && (err.contains("cgroup") || err.contains("OCI permission denied")) {
        skip(&format!("{what}: the runtime cannot start containers here: {err}"));
        return None;
    }
    assert!(run.status.success(), "podman run: {err}");
    Some(run)
}

/// `umoci unpack` of `layout:tag` into `bundle` (umoci verifies every layer's diff_id and applies
/// whiteouts: the strongest independent check of a layer); returns the unpacked root filesystem.
/// Fails the test with umoci's error, after `what`.
pub fn umoci_unpack(layout: &std::path::Path, tag: &str, bundle: &std::path::Path, what: &str) -> PathBuf {
    let o = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:{tag}", layout.display())])
        .arg(bundle)
        .output()
        .expect("umoci");
    assert!(o.status.success(), "{what}: umoci unpack: {}", text(&o.stderr));
    bundle.join("rootfs")
}
