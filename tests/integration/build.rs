//! Real builds with the `hako` binary: the offline busybox base from `testdata/`, every metadata
//! instruction, multi-stage COPY --from, ADD of archives, .dockerignore, every output type, and
//! reproducibility. Independent tools (skopeo, umoci) check what we write; a test that needs one
//! that is missing says so and skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{hako, text};

fn busybox_context() -> String {
    format!("busybox=oci-layout://{}/testdata/busybox", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `hako build` with a fresh store (unless `--root` is given) and the busybox context.
fn build(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let root = dir.join("store");
    let mut cmd = hako();
    cmd.args(["build", "--progress=plain", "--root"])
        .arg(&root)
        .args(["--build-context", &busybox_context()]);
    cmd.args(extra);
    cmd.env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hako")
}

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        crate::common::skip(&format!(
            "the {tool} check: {tool} is not installed (scripts/install-deps.sh installs it)"
        ));
    }
    found
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, body) in files {
        let p = dir.join(name);
        fs_err::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs_err::write(p, body).expect("write");
    }
}

/// A context exercising every instruction that does not need RUN.
pub(crate) fn full_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    write(
        &ctx,
        &[
            (
                "Dockerfile",
                r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS build
WORKDIR /src
COPY app/ ./
COPY --chown=app:staff --chmod=750 tool.sh /usr/local/bin/tool
ADD vendor.tar.gz /opt/vendor/

FROM ${BASE}
LABEL org.example.a="1" org.example.b="two words"
ENV APP_HOME=/app PATH=/app/bin:$PATH
COPY --from=build /src/ $APP_HOME/
COPY --from=build /usr/local/bin/tool /app/bin/tool
COPY --from=build /opt/vendor /opt/vendor
COPY --link secret-free.txt /etc/
EXPOSE 8080 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --retries=3 CMD tool --check
ONBUILD COPY . /onbuild
SHELL ["/bin/sh", "-ec"]
USER app:staff
WORKDIR /app
ENTRYPOINT ["/app/bin/tool"]
CMD ["--serve"]
"#,
            ),
            ("app/main.txt", "main\n"),
            ("app/sub/data.txt", "data\n"),
            ("app/skip.log", "ignored\n"),
            ("tool.sh", "#!/bin/sh\necho tool\n"),
            ("secret-free.txt", "fine\n"),
            (".dockerignore", "**/*.log\n"),
        ],
    );
    // vendor.tar.gz: a gzip tar with its own owners, unpacked by ADD.
    let mut tar = tar::Builder::new(Vec::new());
    for (path, body, uid) in [("lib/a.so", "A", 42u64), ("lib/b.so", "BB", 65534)] {
        let mut h = tar::Header::new_ustar();
        h.set_size(body.len() as u64);
        h.set_mode(0o755);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(1_000_000);
        h.set_cksum();
        tar.append_data(&mut h, path, body.as_bytes()).expect("append");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar.into_inner().expect("tar")).expect("gz");
    fs_err::write(ctx.join("vendor.tar.gz"), gz.finish().expect("gz")).expect("write");
    ctx
}

pub(crate) fn config_of(layout: &Path, tag: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(layout.join("index.json")).expect("index")).expect("json");
    let entry = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .expect("tag in index");
    let blob = |d: &serde_json::Value| {
        let d = d.as_str().expect("digest").trim_start_matches("sha256:");
        serde_json::from_slice::<serde_json::Value>(
            &fs_err::read(layout.join("blobs/sha256").join(d)).expect("blob"),
        )
        .expect("json")
    };
    let manifest = blob(&entry["digest"]);
    blob(&manifest["config"]["digest"])
}

#[test]
fn full_dockerfile_builds_and_checkers_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = full_context(dir.path());
    let layout = dir.path().join("layout");
    let dest = format!("type=oci,dest={},tar=false", layout.display());
    let out =
        build(dir.path(), &["-t", "example.com/app:1.0", "-o", &dest, ctx.to_str().expect("utf-8")], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c = config_of(&layout, "1.0");
    let cfg = &c["config"];
    assert_eq!(cfg["User"], "app:staff");
    assert_eq!(cfg["WorkingDir"], "/app");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/app/bin/tool"]));
    assert_eq!(cfg["Cmd"], serde_json::json!(["--serve"]), "CMD after ENTRYPOINT in the same stage stays");
    // ENV replaces PATH in place (expanded against the base image's PATH) and appends APP_HOME.
    assert_eq!(
        cfg["Env"],
        serde_json::json!([
            "PATH=/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_HOME=/app"
        ])
    );
    assert_eq!(cfg["Labels"]["org.example.b"], "two words");
    assert_eq!(cfg["ExposedPorts"], serde_json::json!({"53/udp": {}, "8080/tcp": {}}));
    assert_eq!(cfg["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(cfg["StopSignal"], "SIGINT");
    assert_eq!(
        cfg["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "tool --check"], "Interval": 30_000_000_000i64, "Retries": 3})
    );
    assert_eq!(cfg["OnBuild"], serde_json::json!(["COPY . /onbuild"]));
    assert_eq!(cfg["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(c["created"], "1980-01-01T00:00:00Z", "hako's default epoch");
    let history: Vec<&str> =
        c["history"].as_array().expect("history").iter().filter_map(|h| h["created_by"].as_str()).collect();
    // BuildKit's entry: no --from, and ` # buildkit` after a step that makes a layer.
    assert!(history.contains(&"COPY /src/ /app/ # buildkit"), "{history:?}");
    let diff_ids = c["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert_eq!(diff_ids.len(), 6, "base + 4 COPY layers + WORKDIR's");
    assert_eq!(
        diff_ids[5], "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
        "WORKDIR /app, which COPY made: an empty tar, as BuildKit's"
    );

    if have("skopeo") {
        let o = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:1.0", layout.display()))
            .output()
            .expect("skopeo");
        assert!(o.status.success(), "{}", text(&o.stderr));
        let copy = dir.path().join("skopeo-copy");
        let o = Command::new("skopeo")
            .args(["copy", &format!("oci:{}:1.0", layout.display()), &format!("dir:{}", copy.display())])
            .output()
            .expect("skopeo copy");
        assert!(o.status.success(), "skopeo copy verifies every digest: {}", text(&o.stderr));
    }
    if have("umoci") {
        let rootfs = crate::common::umoci_unpack(
            &layout,
            "1.0",
            &dir.path().join("bundle"),
            "umoci verifies diff_ids",
        );
        let files = tree(&rootfs, &["app", "opt/vendor", "etc/secret-free.txt"]);
        use std::os::unix::fs::MetadataExt;
        let meta = |p: &str| fs_err::symlink_metadata(rootfs.join(p)).expect(p);
        assert_eq!(
            files,
            [
                "app",
                "app/bin",
                "app/bin/tool",
                "app/main.txt",
                "app/sub",
                "app/sub/data.txt",
                "etc/secret-free.txt",
                "opt/vendor",
                "opt/vendor/lib",
                "opt/vendor/lib/a.so",
                "opt/vendor/lib/b.so"
            ]
        );
        let tool = meta("app/bin/tool");
        assert_eq!(
            (tool.uid(), tool.gid(), tool.mode() & 0o7777),
            (1000, 50, 0o750),
            "--chown names from the image, --chmod"
        );
        let a = meta("opt/vendor/lib/a.so");
        assert_eq!((a.uid(), a.gid(), a.mode() & 0o7777), (42, 42, 0o755), "ADD keeps the archive's owners");
        assert_eq!(meta("opt/vendor/lib/b.so").uid(), 65534);
        assert_eq!(meta("app/main.txt").uid(), 0, "COPY from the context is root-owned");
        assert_eq!(fs_err::read_to_string(rootfs.join("app/sub/data.txt")).expect("read"), "data\n");
        assert!(rootfs.join("bin/busybox").is_file(), "base layer present");
    }
}

/// Relative paths under `root` that start with one of `prefixes`, sorted.
pub(crate) fn tree(root: &Path, prefixes: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("prefix").to_string_lossy().into_owned();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p.clone());
            }
            if prefixes.iter().any(|pre| rel == *pre || rel.starts_with(&format!("{pre}/"))) {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

fn digest_of(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[test]
fn same_inputs_same_digest_from_clean_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = full_context(dir.path());
    let ctx = ctx.to_str().expect("utf-8");
    let run_with = |name: &str, args: &[&str], env: &[(&str, &str)]| {
        let d = dir.path().join(name);
        fs_err::create_dir_all(&d).expect("mkdir");
        digest_of(&build(&d, &[args, &[ctx]].concat(), env))
    };
    let run = |name: &str, env: &[(&str, &str)]| run_with(name, &[], env);
    let a = run("a", &[]);
    let b = run("b", &[]);
    assert!(a.starts_with("sha256:") && a.len() == 71, "{a}");
    assert_eq!(a, b, "same digest from two clean stores");
    let c = run("c", &[("SOURCE_DATE_EPOCH", "1700000000")]);
    let d = run("d", &[("SOURCE_DATE_EPOCH", "1700000000")]);
    assert_eq!(c, d, "same digest with SOURCE_DATE_EPOCH");
    assert_ne!(a, c, "SOURCE_DATE_EPOCH changes the timestamps");
    // As with buildx: the build arg sets the epoch too, and wins over the environment.
    let e = run_with("e", &["--build-arg", "SOURCE_DATE_EPOCH=1700000000"], &[("SOURCE_DATE_EPOCH", "5")]);
    assert_eq!(e, c, "--build-arg SOURCE_DATE_EPOCH is the epoch");
}

#[test]
fn source_date_epoch_sets_created_and_clamps_mtimes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = full_context(dir.path());
    let out_dir = dir.path().join("out.tar");
    let dest = format!("type=tar,dest={}", out_dir.display());
    let layout = dir.path().join("layout");
    let oci = format!("type=oci,dest={},tar=false", layout.display());
    let out = build(
        dir.path(),
        &["-t", "x", "-o", &dest, "-o", &oci, ctx.to_str().expect("utf-8")],
        &[("SOURCE_DATE_EPOCH", "86400")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(config_of(&layout, "latest")["created"], "1970-01-02T00:00:00Z");
    let mut archive = tar::Archive::new(fs_err::File::open(&out_dir).expect("open"));
    let mut seen = BTreeMap::new();
    for e in archive.entries().expect("entries") {
        let e = e.expect("entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        seen.insert(path, e.header().mtime().expect("mtime"));
    }
    assert!(
        seen.contains_key("app/main.txt") && seen.contains_key("bin/busybox"),
        "{:?}",
        seen.keys().take(5).collect::<Vec<_>>()
    );
    assert!(seen.values().all(|&m| m <= 86_400), "every mtime clamped");
}

#[test]
fn every_output_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = full_context(dir.path());
    let ctx = ctx.to_str().expect("utf-8");
    let p = |n: &str| dir.path().join(n).display().to_string();
    let iid = p("iid");
    let meta = p("meta.json");
    let meta_path = meta.clone();
    let out = build(
        dir.path(),
        &[
            "-t",
            "app:1",
            "--iidfile",
            &iid,
            "--metadata-file",
            &meta,
            "-o",
            &format!("type=oci,dest={}", p("image.oci.tar")),
            "-o",
            &format!("type=docker,dest={}", p("image.docker.tar")),
            "-o",
            &format!("type=local,dest={}", p("local")),
            "-o",
            &format!("type=tar,dest={}", p("fs.tar")),
            ctx,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty(), "with outputs, stdout stays empty");
    assert_eq!(fs_err::read_to_string(dir.path().join("local/app/main.txt")).expect("local"), "main\n");
    let iid = fs_err::read_to_string(&iid).expect("iid");
    assert!(iid.starts_with("sha256:"), "{iid}");
    let meta: serde_json::Value = serde_json::from_slice(&fs_err::read(&meta).expect("meta")).expect("json");
    assert_eq!(meta["containerimage.config.digest"], iid.as_str());
    let digest = meta["containerimage.digest"].as_str().expect("containerimage.digest");
    assert!(digest.starts_with("sha256:"), "{meta}");
    // buildx's descriptor: media type, digest and size (no platform), the same digest.
    let desc = meta["containerimage.descriptor"].as_object().expect("containerimage.descriptor");
    assert_eq!(desc.keys().collect::<Vec<_>>(), ["digest", "mediaType", "size"], "{meta}");
    assert_eq!(desc["digest"], digest);
    assert_eq!(desc["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert!(desc["size"].as_u64().is_some_and(|n| n > 0), "{meta}");
    // buildx.build.ref has buildx's `builder/node/id` shape.
    let build_ref = meta["buildx.build.ref"].as_str().expect("buildx.build.ref");
    assert!(build_ref.starts_with("hako/local/") && build_ref.len() == "hako/local/".len() + 25, "{meta}");
    assert_eq!(meta["image.name"], "app:1");
    if have("skopeo") {
        for src in [
            format!("oci-archive:{}:1", p("image.oci.tar")),
            format!("docker-archive:{}", p("image.docker.tar")),
        ] {
            let o = Command::new("skopeo").args(["inspect", &src]).output().expect("skopeo");
            assert!(o.status.success(), "{src}: {}", text(&o.stderr));
        }
    }
    // No output: the image stays in the store, tagged, and its digest is printed.
    let out = build(dir.path(), &["-t", "kept:1", "-t", "kept:2", "--metadata-file", &meta_path, ctx], &[]);
    let digest = digest_of(&out);
    let meta: serde_json::Value =
        serde_json::from_slice(&fs_err::read(&meta_path).expect("meta")).expect("json");
    assert_eq!(meta["containerimage.digest"], digest.as_str());
    assert_eq!(meta["image.name"], "kept:1,kept:2", "every -t, comma-joined");
    assert_ne!(meta["buildx.build.ref"], build_ref, "each build has its own reference");
    // Without -t there is no image.name key at all (as buildx).
    let out = build(dir.path(), &["--metadata-file", &meta_path, ctx], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let meta: serde_json::Value =
        serde_json::from_slice(&fs_err::read(&meta_path).expect("meta")).expect("json");
    assert!(meta.get("image.name").is_none(), "image.name without -t: {meta}");
    assert_eq!(meta["containerimage.digest"], digest.as_str());
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(dir.path().join("store/index.json")).expect("store index"))
            .expect("json");
    assert!(index["manifests"].as_array().expect("manifests").iter().any(|m| m["digest"] == digest.as_str()
        && m["annotations"]["org.opencontainers.image.ref.name"] == "kept:1"));
}

#[test]
fn bad_input_fails_clearly_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    let dest = dir.path().join("out.tar");
    let cases: &[(&str, &str, i32)] = &[
        ("FROM busybox\nCOPY missing.txt /\n", "\"missing.txt\" not found in the build context", 1),
        ("FROM busybox\nCOPY app.log /\n", "\"app.log\" is excluded by .dockerignore", 1),
        (
            "FROM busybox\nCOPY --chown=nobody2 f /\n",
            "unable to find user \"nobody2\" in the image's /etc/passwd",
            1,
        ),
        ("FROM busybox\nCOPY --from=nope.invalid/x /x /\n", "COPY --from=nope.invalid/x: ", 1),
        ("FROM busybox\nRUN echo doomed; exit 3\n", "RUN failed (exit 3): echo doomed; exit 3", 1),
        ("FROM busybox AS a\nCOPY --from=a f /\n", "circular dependency detected on stage: a", 1),
    ];
    for (dockerfile, msg, code) in cases {
        write(
            &ctx,
            &[("Dockerfile", dockerfile), ("f", "x"), ("app.log", "x"), (".dockerignore", "*.log\n")],
        );
        let out = build(
            dir.path(),
            &["-o", &format!("type=oci,dest={}", dest.display()), ctx.to_str().expect("utf-8")],
            &[],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{dockerfile}: {err}");
        assert!(err.contains(msg), "{dockerfile}: expected {msg:?} in {err}");
        assert!(err.contains("Dockerfile:2") || err.contains("Dockerfile:1"), "names the line: {err}");
        assert!(!dest.exists(), "{dockerfile}: no partial output");
    }
    let tmp_left = fs_err::read_dir(dir.path().join("store/tmp")).expect("tmp").count();
    assert_eq!(tmp_left, 0, "failed builds leave no temporary files in the store");
}

#[test]
fn named_contexts_match_normalised_references() {
    // Regression: BuildKit matches `--build-context busybox=…` for `FROM busybox:latest` and
    // `FROM docker.io/library/busybox` too.
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    for from in ["busybox:latest", "docker.io/library/busybox", "docker.io/library/busybox:latest"] {
        write(&ctx, &[("Dockerfile", &format!("FROM {from}\nENV X=1\n"))]);
        let out = build(dir.path(), &[ctx.to_str().expect("utf-8")], &[]);
        assert!(out.status.success(), "FROM {from}: {}", text(&out.stderr));
    }
}

#[test]
fn context_from_stdin_tar() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = full_context(dir.path());
    let tar = Command::new("tar").arg("-C").arg(&ctx).args(["-cf", "-", "."]).output().expect("tar");
    assert!(tar.status.success());
    let mut cmd = hako();
    cmd.args(["build", "--progress=plain", "--root"]).arg(dir.path().join("store"));
    cmd.args(["--build-context", &busybox_context(), "-"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &tar.stdout).expect("feed");
    let out = child.wait_with_output().expect("wait");
    let from_stdin = digest_of(&out);
    let from_dir = digest_of(&build(dir.path(), &[ctx.to_str().expect("utf-8")], &[]));
    assert_ne!(from_stdin, "", "a digest");
    // File mtimes travel through tar, so both contexts give the same image.
    assert_eq!(from_stdin, from_dir);
}

#[test]
fn podman_runs_the_built_image() {
    if !have("podman") || !have("runc") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("hello.tar");
    let hello = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    let out = build(
        dir.path(),
        &[
            "-t",
            "hello:test",
            "-o",
            &format!("type=docker,dest={}", archive.display()),
            hello.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let Some(run) =
        crate::common::podman_load_and_run(dir.path(), &archive, "hello:test", "the podman run check")
    else {
        return;
    };
    assert_eq!(
        text(&run.stdout),
        "hello\nhello from hako\n",
        "CMD runs as USER app and reads the 0640 app:staff file"
    );
}

/// Serves `body` for every GET on a loopback port (a few requests), with a Last-Modified header.
fn serve(body: &'static [u8], requests: usize) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_from_url_with_checksum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    let url = serve(b"downloaded\n", 3);
    let sum = "sha256:9dc2b3ab4d6b61e9e8b2ed50ae6ac3c97d1b6f3ec89d58c82838b54b0b0a9f09";
    let real = format!("sha256:{}", sha256_hex(b"downloaded\n"));
    assert_ne!(sum, real);
    let layout = dir.path().join("layout");
    write(
        &ctx,
        &[(
            "Dockerfile",
            &format!("FROM scratch\nADD --checksum={real} {url}/files/tool.txt /opt/\nADD {url}/x /named\n"),
        )],
    );
    let out = build(
        dir.path(),
        &[
            "-t",
            "t",
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
            ctx.to_str().expect("utf-8"),
        ],
        // An epoch after Last-Modified, which the clamp then keeps.
        &[("SOURCE_DATE_EPOCH", "1000000000")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    if have("umoci") {
        let rootfs =
            crate::common::umoci_unpack(&layout, "latest", &dir.path().join("bundle"), "ADD --checksum");
        use std::os::unix::fs::MetadataExt;
        let m = fs_err::metadata(rootfs.join("opt/tool.txt")).expect("downloaded file");
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o600, 784_111_777), "Docker's 0600 and Last-Modified");
        assert_eq!(fs_err::read_to_string(rootfs.join("named")).expect("named"), "downloaded\n");
    }
    // A wrong checksum fails the build and names both digests.
    let url2 = serve(b"downloaded\n", 1);
    write(&ctx, &[("Dockerfile", &format!("FROM scratch\nADD --checksum={sum} {url2}/f /f\n"))]);
    let out = build(dir.path(), &[ctx.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("checksum mismatch for {url2}/f: expected {sum}, got {real}")), "{err}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    hako::digest::Digest::of(bytes).hex().to_string()
}

/// Every blob in a store hashes to its file name (nothing partial or corrupt under a final name).
fn assert_store_intact(store: &Path) {
    let blobs = store.join("blobs/sha256");
    for e in fs_err::read_dir(&blobs).expect("blobs") {
        let p = e.expect("entry").path();
        let name = p.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        let mut f = fs_err::File::open(&p).expect("open");
        let mut r = hako::digest::HashingReader::new(&mut f);
        std::io::copy(&mut r, &mut std::io::sink()).expect("read");
        assert_eq!(r.finish().0.hex(), name, "blob {} is corrupt", p.display());
    }
    let index = fs_err::read(store.join("index.json")).unwrap_or_else(|_| b"{\"manifests\":[]}".to_vec());
    serde_json::from_slice::<serde_json::Value>(&index).expect("index.json stays valid JSON");
}

#[test]
fn concurrent_builds_share_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = full_context(dir.path());
    let store = dir.path().join("store");
    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut cmd = hako();
            cmd.args(["build", "--progress=plain", "--root"]).arg(&store);
            cmd.args(["--build-context", &busybox_context(), "-t", &format!("app:{i}")]).arg(&ctx);
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            cmd.spawn().expect("spawn")
        })
        .collect();
    let digests: Vec<String> =
        children.into_iter().map(|c| digest_of(&c.wait_with_output().expect("wait"))).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(store.join("index.json")).expect("index")).expect("json");
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    for i in 0..4 {
        assert!(
            tags.contains(&format!("app:{i}").as_str()),
            "no tag lost under concurrent updates: {tags:?}"
        );
    }
    assert_store_intact(&store);
}

#[test]
fn kill_9_mid_build_leaves_a_usable_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    fs_err::create_dir_all(&ctx).expect("mkdir");
    // Big enough that the layer is still being written when the build is killed.
    let big: Vec<u8> =
        (0..64u32 * 1024 * 1024).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs_err::write(ctx.join("big"), &big).expect("write");
    fs_err::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY big /big\n").expect("write");
    let store = dir.path().join("store");
    for delay_ms in [50u64, 300, 900] {
        let mut cmd = hako();
        cmd.args(["build", "--progress=plain", "--root"]).arg(&store);
        cmd.args(["--build-context", &busybox_context(), "-t", "big:1"]).arg(&ctx);
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        assert_store_intact(&store);
    }
    // The same store still builds, and the result is complete.
    let out = build(dir.path(), &["-t", "big:1", ctx.to_str().expect("utf-8")], &[]);
    assert!(digest_of(&out).starts_with("sha256:"));
    assert_store_intact(&store);
}

#[test]
fn onbuild_triggers_run_when_the_image_is_a_base() {
    let dir = tempfile::tempdir().expect("tempdir");
    let parent = dir.path().join("parent");
    write(
        &parent,
        &[(
            "Dockerfile",
            "FROM busybox\nONBUILD COPY marker.txt /from-onbuild.txt\nONBUILD ENV TRIGGERED=yes\n",
        )],
    );
    let layout = dir.path().join("parent-layout");
    let out = build(
        dir.path(),
        &[
            "-t",
            "parent",
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
            parent.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        config_of(&layout, "latest")["config"]["OnBuild"],
        serde_json::json!(["COPY marker.txt /from-onbuild.txt", "ENV TRIGGERED=yes"])
    );
    let child = dir.path().join("child");
    write(
        &child,
        &[("Dockerfile", "FROM parent\nENV AFTER=1\n"), ("marker.txt", "from the child's context\n")],
    );
    let child_layout = dir.path().join("child-layout");
    let out = build(
        dir.path(),
        &[
            "--build-context",
            &format!("parent=oci-layout://{}", layout.display()),
            "-t",
            "child",
            "-o",
            &format!("type=oci,dest={},tar=false", child_layout.display()),
            child.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // BuildKit (≥ 0.17) counts both triggers in the total, the config-only ENV too.
    assert!(
        text(&out.stderr).contains("[2/3] ONBUILD COPY marker.txt /from-onbuild.txt"),
        "{}",
        text(&out.stderr)
    );
    let c = config_of(&child_layout, "latest");
    assert_eq!(c["config"]["OnBuild"], serde_json::Value::Null, "triggers are consumed");
    let env = c["config"]["Env"].as_array().expect("env");
    assert!(env.iter().any(|e| e == "TRIGGERED=yes") && env.iter().any(|e| e == "AFTER=1"), "{env:?}");
    let history: Vec<&str> =
        c["history"].as_array().expect("history").iter().filter_map(|h| h["created_by"].as_str()).collect();
    // A trigger's entry is its instruction's, as BuildKit writes it (ONBUILD is in progress only).
    assert!(history.contains(&"COPY marker.txt /from-onbuild.txt # buildkit"), "{history:?}");
    let local = dir.path().join("fs");
    let out = build(
        dir.path(),
        &[
            "--build-context",
            &format!("parent=oci-layout://{}", layout.display()),
            "-o",
            &format!("type=local,dest={}", local.display()),
            child.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fs_err::read_to_string(local.join("from-onbuild.txt")).expect("copied by the trigger"),
        "from the child's context\n"
    );
}

/// `COPY --from=<image>` of a symlink resolves it inside that image's root (`/bin/cat` →
/// `/bin/busybox`; Debian's `/etc/os-release` → `../usr/lib/os-release`), and the image's files
/// stay readable until the layer is written.
#[test]
fn copy_from_an_image_follows_symlinks_inside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    let debian = PathBuf::from("/var/cache/hako-test/debian-bookworm");
    let with_debian = debian.join("index.json").is_file();
    let mut dockerfile = "FROM scratch\nCOPY --from=busybox /bin/cat /cat\n".to_string();
    if with_debian {
        dockerfile.push_str("COPY --from=debian /etc/os-release /os-release\n");
    } else {
        crate::common::skip("the Debian part of the symlink check: no layout (scripts/make-debian-base.sh)");
    }
    write(&ctx, &[("Dockerfile", &dockerfile)]);
    let out_dir = dir.path().join("out");
    let dest = format!("type=local,dest={}", out_dir.display());
    let debian_ctx = format!("debian=oci-layout://{}", debian.display());
    let out =
        build(dir.path(), &["--build-context", &debian_ctx, "-o", &dest, ctx.to_str().expect("utf-8")], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cat = fs_err::symlink_metadata(out_dir.join("cat")).expect("cat");
    assert!(cat.is_file() && cat.len() > 100_000, "the link's target, busybox itself");
    if with_debian {
        let os = fs_err::read_to_string(out_dir.join("os-release")).expect("os-release");
        assert!(os.contains("Debian"), "{os}");
    }
}

/// Owners and modes of the directories WORKDIR and COPY make, as BuildKit makes them: WORKDIR's
/// directory and its missing parents belong to the current USER (names through the stage's
/// passwd); COPY of a directory gives a destination it creates 0755 and root (or `--chown`), and
/// leaves an existing one's owner and mode alone.
#[test]
fn workdir_and_copy_directory_owners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    let dockerfile = "FROM busybox AS src\nCOPY --chown=1000:1000 d /dir\n\
        FROM busybox\nUSER 1000:1001\nWORKDIR /a/b/c\nUSER nobody\nWORKDIR /n/m\nUSER root\n\
        COPY --from=src /dir /dir\nCOPY --from=src /dir /tmp\nCOPY --from=src /dir /a\n\
        COPY --chown=3:4 d /new/sub\n";
    write(&ctx, &[("Dockerfile", dockerfile), ("d/f", "x")]);
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(ctx.join("d"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let tar_path = dir.path().join("out.tar");
    let dest = format!("type=tar,dest={}", tar_path.display());
    let out = build(dir.path(), &["-o", &dest, ctx.to_str().expect("utf-8")], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut seen = BTreeMap::new();
    let mut archive = tar::Archive::new(fs_err::File::open(&tar_path).expect("open"));
    for e in archive.entries().expect("entries") {
        let e = e.expect("entry");
        let h = e.header();
        let path = e.path().expect("path").to_string_lossy().trim_end_matches('/').to_string();
        let (uid, gid, mode) = (h.uid().expect("uid"), h.gid().expect("gid"), h.mode().expect("mode"));
        seen.insert(path, format!("{uid}:{gid} {:o}", mode & 0o7777));
    }
    let got = |p: &str| seen.get(p).cloned().unwrap_or_else(|| panic!("{p} missing"));
    assert_eq!(got("a"), "1000:1001 755", "WORKDIR's missing parents are USER's");
    assert_eq!(got("a/b/c"), "1000:1001 755");
    assert_eq!(got("n"), "65534:65534 755", "USER by name");
    assert_eq!(got("dir"), "0:0 755", "a new COPY destination is root's, not the source's");
    assert_eq!(got("dir/f"), "1000:1000 644", "the contents keep their owner");
    assert_eq!(got("tmp"), "0:0 1777", "an existing destination keeps its owner and mode");
    assert_eq!(got("new"), "3:4 755", "missing parents take the --chown owner");
    assert_eq!(got("new/sub"), "3:4 755");
}

/// Reproducible by default: without SOURCE_DATE_EPOCH, file times in new layers are clamped to
/// 1980-01-01, so two clean stores give one digest even though the RUN step's files are made a
/// second apart and every context file was touched (as a fresh `git clone` does).
/// `rewrite-timestamp=false` keeps the real times (and so differs); SOURCE_DATE_EPOCH picks
/// another epoch.
#[test]
fn reproducible_by_default_despite_clocks_and_mtimes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    let dockerfile = "FROM busybox\nCOPY . /app\nRUN mkdir -p /out/d && echo hi > /out/d/f && ln -s d/f /out/l\n\
        WORKDIR /made/here\n";
    write(&ctx, &[("Dockerfile", dockerfile), ("src/a.txt", "a\n"), ("b.txt", "b\n")]);
    let ctx_s = ctx.to_str().expect("utf-8");
    let touch = |when: &str| {
        let o = Command::new("sh")
            .args(["-c", &format!("find . -exec touch -h -d @{when} {{}} +")])
            .current_dir(&ctx)
            .output()
            .expect("touch");
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    let run = |name: &str, extra: &[&str], env: &[(&str, &str)]| {
        let d = dir.path().join(name);
        fs_err::create_dir_all(&d).expect("mkdir");
        let mut args = extra.to_vec();
        args.push(ctx_s);
        digest_of(&build(&d, &args, env))
    };
    touch("1600000000");
    let a = run("a", &[], &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    touch("1700000000");
    let b = run("b", &[], &[]);
    assert_eq!(a, b, "one digest from two clean stores, whatever the clocks and the context mtimes");
    let c = run("c", &[], &[("SOURCE_DATE_EPOCH", "1000000000")]);
    assert_ne!(a, c, "SOURCE_DATE_EPOCH chooses another epoch");
    let keep = |name: &str| {
        let iid = dir.path().join(format!("{name}.iid"));
        let iid_s = iid.to_str().expect("utf-8");
        let o = format!(
            "type=oci,dest={},rewrite-timestamp=false",
            dir.path().join(format!("{name}.tar")).display()
        );
        run(name, &["-o", &o, "--iidfile", iid_s], &[]);
        fs_err::read_to_string(&iid).expect("iidfile")
    };
    let d = keep("d");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let e = keep("e");
    assert_ne!(d, e, "rewrite-timestamp=false keeps the real times of the RUN step's files");
}

/// COPY source patterns as BuildKit reads them: an unmatched wildcard copies nothing (a missing
/// plain path is an error), and Go's escapes reach the pattern only through the Dockerfile's own
/// escape character (`\\?` is a literal `?`), or as a class (`[?]`).
#[test]
fn copy_wildcards_empty_matches_and_escapes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = dir.path().join("ctx");
    let dockerfile = "FROM scratch\nCOPY nomatch* present.txt /dst/\nCOPY nothing* /none/\n\
        COPY ./app/n[?]pe/file.txt /x\nCOPY ./app/n\\\\?p*/file.txt /y\n";
    write(
        &ctx,
        &[
            ("Dockerfile", dockerfile),
            ("present.txt", "p"),
            ("app/n?pe/file.txt", "q"),
            ("app/nope/file.txt", "n"),
        ],
    );
    let out_dir = dir.path().join("out");
    let dest = format!("type=local,dest={}", out_dir.display());
    let out = build(dir.path(), &["-o", &dest, ctx.to_str().expect("utf-8")], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = |p: &str| fs_err::read_to_string(out_dir.join(p)).expect(p);
    assert_eq!((read("dst/present.txt"), read("x"), read("y")), ("p".into(), "q".into(), "q".into()));
    assert!(!out_dir.join("none").exists(), "a lone unmatched wildcard copies nothing");
    write(&ctx, &[("Dockerfile", "FROM scratch\nCOPY nomatch* missing.txt /dst/\n")]);
    let out = build(dir.path(), &[ctx.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("\"missing.txt\" not found in the build context"),
        "{}",
        text(&out.stderr)
    );
}
