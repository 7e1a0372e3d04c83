//! The command line as scripts see it: help text, exit codes, error rendering, `--dry-run` output,
//! and every way of handing hako a Dockerfile and context.

use std::path::Path;

use crate::common::{run, text};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn version_and_help() {
    let out = run(&["--version"], None);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), format!("hako {}\n", env!("CARGO_PKG_VERSION")));
    let out = run(&["build", "--help"], None);
    assert!(out.status.success());
    insta::assert_snapshot!("build_help", text(&out.stdout));
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["build"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("<CONTEXT>"), "{}", text(&out.stderr));
    let out = run(&["build", "--progress=fancy", "."], None);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["build", "--dry-run", "/nonexistent/ctx"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("build context `/nonexistent/ctx` is not a directory"));
}

#[test]
fn unbuilt_features_are_refused_not_ignored() {
    let ctx = repo().join("examples/hello");
    let ctx = ctx.to_str().expect("utf-8");
    for flags in [
        &["--cache-to", "type=gha"][..],
        &["--cache-from", "type=s3,region=x"],
        &["--platform", "linux/amd64,linux/arm64"],
        &["--output", "type=oci,dest=x,annotation-index.a=b"],
    ] {
        let mut args = vec!["build", "--dry-run"];
        args.extend_from_slice(flags);
        args.push(ctx);
        let out = run(&args, None);
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert!(text(&out.stderr).contains("not supported yet: "), "{flags:?}: {}", text(&out.stderr));
    }
    // A registry base that cannot be pulled (no network here) fails naming it, with the offline hint.
    let root = tempdir();
    let out = run(&["build", "--root", root.path().to_str().expect("utf-8"), ctx], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("FROM busybox: "), "{err}");
    assert!(
        err.contains("give it as an OCI layout: --build-context busybox=oci-layout://DIR[:TAG]"),
        "{err}"
    );
    // --push needs somewhere to push to.
    let out = run(&["build", "--push", "--root", root.path().to_str().expect("utf-8"), ctx], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--push needs at least one -t NAME"));
}

#[test]
fn dry_run_prints_the_plan() {
    let ctx = repo().join("examples/hello");
    let out = run(&["build", "--dry-run", "-t", "hello:latest", ctx.to_str().expect("utf-8")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let host = hako::plan::Platform::host().to_string();
    insta::assert_snapshot!("dry_run_hello", text(&out.stdout).replace(&host, "HOST"));
}

#[test]
fn dry_run_target_and_build_args() {
    let ctx = repo().join("examples/hello");
    let ctx = ctx.to_str().expect("utf-8");
    let out = run(
        &[
            "build",
            "--dry-run",
            "--target",
            "build",
            "--build-arg",
            "BASE=alpine:3",
            "--build-arg",
            "NOPE=1",
            ctx,
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("target: 1 \"build\""), "{stdout}");
    assert!(stdout.contains("FROM alpine:3 (image)"), "{stdout}");
    assert!(stdout.contains("skipped: stage 2"), "{stdout}");
    assert!(text(&out.stderr).contains("warning: build-arg NOPE was not consumed by any ARG"));
    let out = run(&["build", "--dry-run", "--target", "bild", ctx], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("target stage \"bild\" could not be found (did you mean build?)"));
}

#[test]
fn dockerfile_errors_exit_1_with_location_and_caret() {
    let dir = tempdir();
    std::fs::write(dir.path().join("Dockerfile"), "FROM busybox\n\nCOPPY . /app\n").expect("write");
    let out = run(&["build", "--dry-run", dir.path().to_str().expect("utf-8")], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let name = dir.path().join("Dockerfile");
    let expected = format!(
        "error: {}:3:1: unknown instruction \"COPPY\" (did you mean COPY?)\n  |\n3 | COPPY . /app\n  | ^^^^^\nhint: see https://docs.docker.com/reference/dockerfile/ for the instructions\n",
        name.display()
    );
    assert_eq!(err, expected);
}

#[test]
fn dockerfile_from_stdin_and_context_tar_from_stdin() {
    let ctx = tempdir();
    let ctx_path = ctx.path().to_str().expect("utf-8");
    // -f - with a directory context.
    let out = run(&["build", "--dry-run", "-f", "-", ctx_path], Some(b"FROM scratch\nENV A=1\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ENV A=1"));
    // CONTEXT `-` that is a plain Dockerfile (docker build - < Dockerfile).
    let out = run(&["build", "--dry-run", "-"], Some(b"FROM scratch\nENV B=2\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ENV B=2"));
    // CONTEXT `-` as a tar archive, plain and gzip-compressed, with -f naming a file inside it.
    let mut tar = tar::Builder::new(Vec::new());
    for (name, body) in [
        ("Dockerfile", &b"FROM scratch\nENV C=3\n"[..]),
        ("sub/Other.Dockerfile", b"FROM scratch\nENV D=4\n"),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, name, body).expect("append");
    }
    let bytes = tar.into_inner().expect("tar");
    let out = run(&["build", "--dry-run", "-"], Some(&bytes));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ENV C=3"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let out = run(&["build", "--dry-run", "-f", "sub/Other.Dockerfile", "-"], Some(&gz));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ENV D=4"));
    let out = run(&["build", "--dry-run", "-f", "missing", "-"], Some(&bytes));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("the context archive on stdin has no `missing`"));
    let out = run(&["build", "--dry-run", "-f", "-", "-"], Some(b""));
    assert_eq!(out.status.code(), Some(2));
}

/// RUN's flags are checked while planning, so `--dry-run` reports them: what is not built yet
/// exits 2, a bad value or an entitlement not allowed exits 1, all located.
#[test]
fn dry_run_checks_run_flags() {
    let ctx = repo().join("examples/hello");
    let ctx = ctx.to_str().expect("utf-8");
    for (df, allow, code, want) in [
        (
            "FROM scratch\nRUN --device=/dev/fuse true\n",
            "",
            2,
            "Dockerfile:2:1: not supported yet: RUN --device",
        ),
        (
            "FROM scratch\nRUN --security=insecure true\n",
            "",
            1,
            "Dockerfile:2:1: RUN --security=insecure needs the security.insecure entitlement",
        ),
        (
            "FROM scratch\nRUN --network=bogus true\n",
            "",
            1,
            "Dockerfile:2:15: network mode \"bogus\" not supported",
        ),
    ] {
        let out = run(&["build", "--dry-run", "--allow", allow, "-f", "-", ctx], Some(df.as_bytes()));
        assert_eq!(out.status.code(), Some(code), "{df}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(want), "{df}: {}", text(&out.stderr));
    }
}

/// `hako info` reports the store, the kernel and, for every isolation mode, whether it works here,
/// with the mode auto picks first — consistent with what the probes found (as root, root mode if
/// namespaces work, else chroot).
#[test]
fn info_reports_the_isolation_auto_picks() {
    let dir = tempdir();
    let store = dir.path().join("store");
    let out = run(&["info", "--root", store.to_str().expect("utf-8")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains(&format!("store:      {} (not created yet)", store.display())), "{t}");
    for mode in ["rootless", "root", "chroot"] {
        assert!(t.lines().any(|l| l.trim_start().starts_with(mode)), "a line for {mode}:\n{t}");
    }
    let seccomp = t.lines().find_map(|l| l.strip_prefix("seccomp:    ")).expect("the seccomp line");
    if cfg!(target_arch = "x86_64") && std::path::Path::new("/proc/self/status").exists() {
        let has = fs_err::read_to_string("/proc/self/status").expect("status").contains("\nSeccomp:");
        assert_eq!(seccomp.starts_with("Docker's default profile"), has, "{t}");
    }
    let auto = t.lines().find_map(|l| l.strip_prefix("isolation:  ")).expect("the auto line");
    if nix::unistd::geteuid().is_root() {
        let root_works = t.lines().any(|l| l.trim_start() == "root      available");
        let expected = if root_works { "root: " } else { "chroot: " };
        assert!(auto.starts_with(expected), "{t}");
    } else {
        assert!(t.contains("root      needs root"), "{t}");
    }
}

/// A Dockerfile that is not there is an input error (exit 1, as the README says and buildx does),
/// with a message naming it.
#[test]
fn a_missing_dockerfile_is_an_input_error() {
    let dir = tempdir();
    let ctx = dir.path().to_str().expect("utf-8");
    let out = run(&["build", "--dry-run", "-f", "missing/Dockerfile", ctx], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("missing/Dockerfile"), "{}", text(&out.stderr));
    let out = run(&["build", "--dry-run", ctx], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("hint: name the Dockerfile with -f PATH"), "{}", text(&out.stderr));
}
