//! The `docker buildx build` flags scripts pass, with buildx's meanings: `--pull`, `--load`
//! (Docker engine, else podman, else a clear error), `--annotation` and output annotations,
//! `--network`, `--add-host`,
//! `--allow`, `--shm-size`, `--ulimit`, and `--provenance`/`--sbom`/`--attest` (off is accepted,
//! on is refused as not supported yet).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{hako, text};

fn busybox_context() -> String {
    format!("busybox=oci-layout://{}/testdata/busybox", env!("CARGO_MANIFEST_DIR"))
}

/// `hako build --progress=plain --root DIR/store --build-context busybox=… ARGS…` with `env`.
fn build(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = hako();
    cmd.args(["build", "--progress=plain", "--root"])
        .arg(dir.join("store"))
        .args(["--build-context", &busybox_context()])
        .args(args);
    cmd.env_remove("SOURCE_DATE_EPOCH").env_remove("HAKO_ROOT").env_remove("DOCKER_HOST");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hako")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: exit {:?}\n{}", out.status.code(), text(&out.stderr));
    text(&out.stderr)
}

fn fails(out: &Output, code: i32, what: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}:\n{err}");
    err
}

fn context(dir: &Path, dockerfile: &str) -> String {
    let ctx = dir.join("ctx");
    fs_err::create_dir_all(&ctx).expect("mkdir");
    fs_err::write(ctx.join("Dockerfile"), dockerfile).expect("write");
    ctx.to_str().expect("utf-8").to_string()
}

/// A podman store private to the test, through `CONTAINERS_STORAGE_CONF` (what `hako --load`'s
/// `podman load` and the test's own podman both read).
fn podman_storage(dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("storage.conf");
    fs_err::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("podman-root").display(),
            dir.join("podman-run").display()
        ),
    )
    .expect("storage.conf");
    conf
}

/// The script line of issue 11 (less `-q`, whose output another change owns): every flag is taken
/// with its buildx meaning, and the image lands in podman's store when no Docker engine answers.
#[test]
fn a_buildx_script_line_works_with_hako_in_its_place() {
    if !crate::registry_fixture::installed("podman", "podman") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(
        dir.path(),
        "FROM busybox\nRUN cat /etc/hosts > /hosts && grep -c : /proc/net/dev > /netdev \
         && grep ' /dev/shm ' /proc/mounts > /shm && grep 'open files' /proc/self/limits > /limits\n",
    );
    let conf = podman_storage(dir.path());
    let local = dir.path().join("local");
    let dest = format!("type=local,dest={}", local.display());
    let out = build(
        dir.path(),
        &[
            "--pull",
            "--provenance=false",
            "--sbom=false",
            "--annotation",
            "org.example.k=v",
            "--network=host",
            "--add-host",
            "h:1.2.3.4",
            "--shm-size",
            "128m",
            "--ulimit",
            "nofile=512:1024",
            "--load",
            "-t",
            "app:1",
            "-o",
            &dest,
            &ctx,
        ],
        &[
            ("CONTAINERS_STORAGE_CONF", conf.to_str().expect("utf-8")),
            ("DOCKER_HOST", "unix:///nonexistent.sock"),
        ],
    );
    let err = ok(&out, "the script line");
    assert!(err.contains("loaded into podman's image store"), "says where it loaded:\n{err}");
    let read = |f: &str| fs_err::read_to_string(local.join(f)).expect(f);
    assert!(read("hosts").lines().any(|l| l == "1.2.3.4\th"), "--add-host in /etc/hosts:\n{}", read("hosts"));
    assert!(read("netdev").trim() != "1", "--network=host sees the host's interfaces");
    assert!(read("shm").contains(&format!("size={}k", 128 * 1024)), "--shm-size: {}", read("shm"));
    let limits: Vec<String> = read("limits").split_whitespace().map(String::from).collect();
    assert_eq!(limits[3..5], ["512", "1024"], "--ulimit: {limits:?}");

    // podman has it, under its name.
    let images = Command::new("podman")
        .env("CONTAINERS_STORAGE_CONF", &conf)
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .expect("podman images");
    assert!(text(&images.stdout).lines().any(|l| l.ends_with("/app:1")), "{}", text(&images.stdout));

    // The manifest kept in the store carries the annotation.
    let store = dir.path().join("store");
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(store.join("index.json")).expect("index")).expect("json");
    let entry = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "app:1")
        .expect("app:1 kept")
        .clone();
    let hex = entry["digest"].as_str().expect("digest").trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs_err::read(store.join("blobs/sha256").join(hex)).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["annotations"]["org.example.k"], "v", "{manifest}");
}

#[test]
fn network_none_reaches_every_run_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path(), "FROM busybox\nRUN grep -c : /proc/net/dev > /netdev\n");
    let local = dir.path().join("local");
    let dest = format!("type=local,dest={}", local.display());
    ok(&build(dir.path(), &["--network=none", "-o", &dest, &ctx], &[]), "--network=none");
    assert_eq!(fs_err::read_to_string(local.join("netdev")).expect("netdev").trim(), "1", "only loopback");
    let out = build(dir.path(), &["--network=bridge", &ctx], &[]);
    assert!(fails(&out, 2, "--network=bridge").contains("network mode not supported"));
}

#[test]
fn entitlements_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path(), "FROM busybox\nRUN --network=host true\n");
    let err = fails(&build(dir.path(), &["--dry-run", &ctx], &[]), 1, "RUN --network=host without --allow");
    assert!(err.contains("network.host entitlement") && err.contains("--allow network.host"), "{err}");
    ok(&build(dir.path(), &["--dry-run", "--allow", "network.host", &ctx], &[]), "with --allow network.host");
    ok(
        &build(dir.path(), &["--dry-run", "--network=host", &ctx], &[]),
        "--network=host grants it, as buildx",
    );

    let ctx = context(dir.path(), "FROM busybox\nRUN --security=insecure true\n");
    let err =
        fails(&build(dir.path(), &["--dry-run", &ctx], &[]), 1, "RUN --security=insecure without --allow");
    assert!(err.contains("--allow security.insecure"), "{err}");
    ok(
        &build(dir.path(), &["--dry-run", "--allow", "security.insecure", &ctx], &[]),
        "with --allow security.insecure",
    );
    let err =
        fails(&build(dir.path(), &["--dry-run", "--allow", "device", &ctx], &[]), 2, "unknown entitlement");
    assert!(err.contains("unknown entitlement"), "{err}");
}

#[test]
fn attestations_off_are_accepted_and_on_are_not_supported_yet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path(), "FROM busybox\n");
    let off = [
        "--provenance=false",
        "--sbom=false",
        "--attest",
        "type=provenance,disabled=true",
        "--provenance=disabled",
    ];
    ok(&build(dir.path(), &[&off[..], &["--dry-run", &ctx]].concat(), &[]), "attestations off");
    for on in
        [&["--provenance=true"][..], &["--sbom=true"], &["--provenance=mode=max"], &["--attest", "type=sbom"]]
    {
        let err = fails(&build(dir.path(), &[on, &["--dry-run", &ctx]].concat(), &[]), 2, &on.join(" "));
        assert!(err.contains("not supported yet") && err.contains("attestations"), "{on:?}: {err}");
    }
    let err = fails(
        &build(dir.path(), &["--annotation", "index:k=v", "--dry-run", &ctx], &[]),
        2,
        "index annotation",
    );
    assert!(err.contains("not supported yet"), "{err}");
    // clap still suggests the flag meant.
    let err = fails(&build(dir.path(), &["--provenanse=false", &ctx], &[]), 2, "a misspelt flag");
    assert!(err.contains("--provenance"), "{err}");
}

/// buildx's output annotations (`annotation.K`, `annotation-manifest.K`) annotate the manifest,
/// with `--annotation`'s over them; outputs that disagree are refused, as hako writes one manifest.
#[test]
fn output_annotations_annotate_the_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path(), "FROM busybox\nLABEL x=y\n");
    let layout = dir.path().join("layout");
    let dest = format!(
        "type=oci,dest={},tar=false,annotation.org.opencontainers.image.title=hako,\
         annotation-manifest[linux/amd64].org.example.k=from-output",
        layout.display()
    );
    let out = build(dir.path(), &["--annotation", "org.example.k=from-flag", "-o", &dest, &ctx], &[]);
    ok(&out, "annotated output");
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&fs_err::read(p).expect("read")).expect("json")
    };
    let index = json(&layout.join("index.json"));
    let digest = index["manifests"][0]["digest"].as_str().expect("digest").trim_start_matches("sha256:");
    let manifest = json(&layout.join("blobs/sha256").join(digest));
    assert_eq!(manifest["annotations"]["org.opencontainers.image.title"], "hako", "{manifest}");
    assert_eq!(manifest["annotations"]["org.example.k"], "from-flag", "the flag wins: {manifest}");

    let other = format!("type=docker,dest={},annotation.a=b", dir.path().join("d.tar").display());
    let err = fails(&build(dir.path(), &["-o", &dest, "-o", &other, "--dry-run", &ctx], &[]), 2, "disagree");
    assert!(err.contains("outputs ask for different annotations"), "{err}");
}

#[test]
fn load_without_docker_or_podman_fails_clearly_before_building() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path(), "FROM busybox\nRUN false\n");
    let empty = dir.path().join("empty-path");
    fs_err::create_dir_all(&empty).expect("mkdir");
    let out = build(
        dir.path(),
        &["--load", "-t", "app:1", &ctx],
        &[("DOCKER_HOST", "unix:///nonexistent.sock"), ("PATH", empty.to_str().expect("utf-8"))],
    );
    let err = fails(&out, 2, "--load with no engine");
    assert!(
        err.contains("--load: no Docker engine answers on unix:///nonexistent.sock")
            && err.contains("podman is not installed"),
        "{err}"
    );
    assert!(!err.contains("RUN false"), "it fails before building:\n{err}");
}

/// A Docker engine on a unix socket (answering `/_ping` and `/images/load` as the real API does)
/// gets the image as a docker archive with its tag.
#[test]
fn load_goes_to_a_docker_engine_that_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = context(dir.path(), "FROM busybox\nCOPY Dockerfile /\n");
    let sock = dir.path().join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let engine = std::thread::spawn(move || {
        let mut loaded = Vec::new();
        for _ in 0..2 {
            let (conn, _) = listener.accept().expect("accept");
            let mut r = BufReader::new(conn);
            let mut request = String::new();
            r.read_line(&mut request).expect("request line");
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).expect("header");
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().expect("length");
                }
            }
            let mut body = vec![0; length];
            r.read_exact(&mut body).expect("body");
            let reply = if request.starts_with("GET /_ping") {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK".to_string()
            } else {
                loaded = body;
                let msg = "{\"stream\":\"Loaded image: app:1\\n\"}\n";
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}", msg.len())
            };
            r.get_mut().write_all(reply.as_bytes()).expect("reply");
        }
        loaded
    });
    let host = format!("unix://{}", sock.display());
    let err = ok(
        &build(dir.path(), &["--load", "-t", "app:1", &ctx], &[("DOCKER_HOST", &host)]),
        "--load to Docker",
    );
    assert!(err.contains(&format!("loaded into the Docker engine at {host}: Loaded image: app:1")), "{err}");
    let archive = engine.join().expect("engine thread");
    let mut tar = tar::Archive::new(&archive[..]);
    let manifest = tar
        .entries()
        .expect("a tar")
        .filter_map(Result::ok)
        .find(|e| e.path().is_ok_and(|p| p == Path::new("manifest.json")))
        .map(|mut e| {
            let mut s = String::new();
            e.read_to_string(&mut s).expect("read");
            s
        })
        .expect("manifest.json in the archive");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    assert_eq!(manifest[0]["RepoTags"][0], "app:1", "{manifest}");
}
