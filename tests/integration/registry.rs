//! Pulling and pushing against a real registry (`docker-registry`, see `registry_fixture`): a
//! base pulled FROM the registry, the image pushed with `--push` and `-o type=registry`, checked
//! by skopeo (digest, blob verification) and umoci; blobs the registry has are not uploaded again;
//! htpasswd auth through DOCKER_CONFIG and REGISTRY_AUTH_FILE; and the failures (refused,
//! unreachable, missing tag, `--push` without `-t`) with their exit codes and messages.
//!
//! Every `hako` run gets a private HOME, DOCKER_CONFIG, XDG_RUNTIME_DIR and XDG_CONFIG_HOME, so
//! the machine's own registry logins are never read.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use crate::common::{feed_stdin, hako, text};
use crate::registry_fixture::{PASS, Registry, USER, auth_json, installed};

/// Writes `<sandbox>/<name>` with `body` and returns its path (for HAKO_CONFIG).
fn write_config(sb: &Sandbox, name: &str, body: &str) -> PathBuf {
    let path = sb.path(name);
    fs_err::write(&path, body).expect("write config");
    path
}

const HELLO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello");

fn busybox_context() -> String {
    format!("busybox=oci-layout://{}/testdata/busybox", env!("CARGO_MANIFEST_DIR"))
}

/// A private home for `hako` runs: no credentials unless a test writes some.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["home/.docker", "home/.config", "run"] {
            fs_err::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `<name>/config.json` (a DOCKER_CONFIG directory) with `user:pass` for `host`.
    fn docker_config(&self, name: &str, host: &str, user: &str, pass: &str) -> PathBuf {
        let d = self.path(name);
        fs_err::create_dir_all(&d).expect("mkdir");
        fs_err::write(d.join("config.json"), auth_json(host, user, pass)).expect("write config.json");
        d
    }

    /// Writes a podman-style `<name>.json` auth file with `user:pass` for `host`.
    fn auth_file(&self, name: &str, host: &str, user: &str, pass: &str) -> PathBuf {
        let f = self.path(&format!("{name}.json"));
        fs_err::write(&f, auth_json(host, user, pass)).expect("write auth file");
        f
    }

    /// `hako build --progress=plain --root <sandbox>/<root> ARGS… examples/hello` with the private
    /// environment, then `env` on top.
    fn build(&self, root: &str, args: &[&str], env: &[(&str, &OsStr)]) -> Output {
        let mut cmd = self.hako(root);
        cmd.args(args).arg(HELLO);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run hako")
    }

    /// `hako build --progress=plain --root <sandbox>/<root>` with the private environment.
    fn hako(&self, root: &str) -> Command {
        self.command(root, &["build", "--progress=plain"])
    }

    /// `hako ARGS… --root <sandbox>/<root>` with the private environment.
    fn command(&self, root: &str, args: &[&str]) -> Command {
        let mut cmd = hako();
        cmd.args(args).arg("--root").arg(self.path(root));
        for var in [
            "REGISTRY_AUTH_FILE",
            "HAKO_ROOT",
            "SOURCE_DATE_EPOCH",
            "XDG_CACHE_HOME",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", self.path("home"))
            .env("DOCKER_CONFIG", self.path("home/.docker"))
            .env("XDG_CONFIG_HOME", self.path("home/.config"))
            .env("XDG_RUNTIME_DIR", self.path("run"));
        cmd
    }
}

/// Panics with hako's stderr unless it exited 0.
fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: exit {:?}\n{}", out.status.code(), text(&out.stderr));
}

/// Checks the exit code and returns stderr.
fn failed(out: &Output, code: i32, what: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{what}: wrong exit status; stderr:\n{err}");
    assert!(err.contains("error:"), "{what}: no `error:` line in stderr:\n{err}");
    err
}

/// The digest in hako's `#N pushing manifest for NAME@DIGEST done` line (BuildKit's wording).
fn pushed_digest(out: &Output, name: &str) -> String {
    let err = text(&out.stderr);
    assert!(err.contains(&format!(" pushing layers to {name}")), "no `pushing layers to {name}` in:\n{err}");
    let prefix = format!(" pushing manifest for {name}@");
    let digest = err
        .lines()
        .find_map(|l| Some(l.split_once(&prefix)?.1.strip_suffix(" done")?.to_string()))
        .unwrap_or_else(|| panic!("no `pushing manifest for {name}@DIGEST done` line in:\n{err}"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "not a sha256 digest: {digest:?} in:\n{err}"
    );
    digest
}

/// The JSON value of the last `KEYWORD ` line of examples/hello/Dockerfile (or the bare word).
fn dockerfile_value(keyword: &str) -> serde_json::Value {
    let df = fs_err::read_to_string(Path::new(HELLO).join("Dockerfile")).expect("read Dockerfile");
    let raw = df
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(keyword)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {keyword} in examples/hello/Dockerfile"))
        .trim();
    serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()))
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(path).expect("read")).expect("json")
}

/// The manifest digest and image config of `tag` in an OCI layout.
fn layout_image(layout: &Path, tag: &str) -> (String, serde_json::Value) {
    let index = read_json(&layout.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("tag {tag} not in {index}"))
        .clone();
    let blob = |d: &serde_json::Value| {
        let hex = d.as_str().expect("digest").trim_start_matches("sha256:");
        read_json(&layout.join("blobs/sha256").join(hex))
    };
    let manifest = blob(&entry["digest"]);
    let digest = entry["digest"].as_str().expect("digest").to_string();
    (digest, blob(&manifest["config"]["digest"]))
}

/// Every `_layers/.../link` file of `repo` in the registry's storage, with its modification time:
/// the registry rewrites a link whenever a blob is uploaded (or mounted) again.
fn layer_links(registry: &Registry, repo: &str) -> BTreeMap<PathBuf, SystemTime> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, SystemTime>) {
        for e in fs_err::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name() == Some(OsStr::new("link")) {
                let m = fs_err::metadata(&p).expect("stat").modified().expect("mtime");
                out.insert(p, m);
            }
        }
    }
    let dir = registry.storage().join("docker/registry/v2/repositories").join(repo).join("_layers");
    let mut out = BTreeMap::new();
    walk(&dir, &mut out);
    out
}

#[test]
fn pull_build_push_and_pull_back() {
    let Some(reg) = Registry::start() else { return };
    let sb = Sandbox::new();
    let name = reg.image("app/hello:1");
    let base = format!("BASE={}", reg.base());
    let out = sb.build("root", &["--build-arg", &base, "-t", &name, "--push"], &[]);
    ok(&out, "build FROM the registry and push");
    let digest = pushed_digest(&out, &name);
    // BuildKit's FROM line: the qualified name and the manifest digest it resolved to.
    let base_digest = reg.digest_of("base/busybox:latest");
    assert!(
        text(&out.stderr).contains(&format!("FROM {}@{base_digest}", reg.base())),
        "the base did not come from the registry:\n{}",
        text(&out.stderr)
    );

    // The registry serves what hako said it pushed.
    assert_eq!(reg.digest_of("app/hello:1"), digest, "skopeo inspect disagrees with hako's digest");

    // skopeo can pull it all back (it verifies every blob's digest), byte for byte.
    let layout = sb.path("pulled");
    let copy = reg.copy_to_layout("app/hello:1", &layout, "1");
    assert!(copy.status.success(), "skopeo copy from the registry: {}", text(&copy.stderr));
    let (pulled, config) = layout_image(&layout, "1");
    assert_eq!(pulled, digest, "the pulled manifest is not the pushed one");
    assert_eq!(config["config"]["User"], dockerfile_value("USER"), "{config}");
    assert_eq!(config["config"]["User"], "app");
    assert_eq!(config["config"]["Cmd"], dockerfile_value("CMD"), "{config}");
    assert_eq!(config["os"], "linux");

    // The strongest check of the layers: umoci applies them (checking diff_ids) and we read files.
    if installed("umoci", "it") {
        let bundle = sb.path("bundle");
        let unpack = Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:1", layout.display()))
            .arg(&bundle)
            .output()
            .expect("run umoci");
        assert!(unpack.status.success(), "umoci unpack: {}", text(&unpack.stderr));
        let rootfs = bundle.join("rootfs");
        assert_eq!(
            fs_err::read(rootfs.join("app/hello.txt")).expect("hello.txt in the pulled image"),
            fs_err::read(Path::new(HELLO).join("hello.txt")).expect("hello.txt"),
        );
        assert_eq!(fs_err::read_to_string(rootfs.join("app/motd")).expect("motd"), "hello from hako\n");
        assert!(rootfs.join("bin/busybox").exists(), "the base layer is missing");
    }

    // The registry's base is byte-identical to the offline one: same image, same digest.
    let offline_name = reg.image("app/hello:offline");
    let offline = sb.build(
        "offline-root",
        &["--build-context", &busybox_context(), "-t", &offline_name, "--push"],
        &[],
    );
    ok(&offline, "offline build");
    assert_eq!(
        pushed_digest(&offline, &offline_name),
        digest,
        "the offline build differs from the pulled-base build"
    );
}

#[test]
fn second_push_skips_existing_blobs_and_other_repository_gets_the_same_digest() {
    let Some(reg) = Registry::start() else { return };
    let sb = Sandbox::new();
    let name = reg.image("app/hello:1");
    let base = format!("BASE={}", reg.base());
    let args = ["--build-arg", base.as_str(), "-t", name.as_str(), "--push"];

    let first = sb.build("root", &args, &[]);
    ok(&first, "first push");
    let digest = pushed_digest(&first, &name);
    let links = layer_links(&reg, "app/hello");
    // The base's layer, the layers this build adds, the config.
    assert!(links.len() >= 3, "too few blobs linked into app/hello: {links:?}");

    let second = sb.build("root", &args, &[]);
    ok(&second, "second push of the same image");
    assert_eq!(pushed_digest(&second, &name), digest, "the same build pushed a different digest");
    assert_eq!(
        layer_links(&reg, "app/hello"),
        links,
        "the second push uploaded blobs the registry already had"
    );

    // Another repository of the same registry, from a fresh store.
    let other = reg.image("other/hello:2");
    let third = sb.build("root2", &["--build-arg", &base, "-t", &other, "--push"], &[]);
    ok(&third, "push to another repository");
    assert_eq!(pushed_digest(&third, &other), digest);
    assert_eq!(reg.digest_of("app/hello:1"), digest);
    assert_eq!(reg.digest_of("other/hello:2"), digest);
    assert_eq!(
        layer_links(&reg, "other/hello").len(),
        links.len(),
        "other/hello does not have every blob of the image"
    );
    let copy = reg.copy_to_layout("other/hello:2", &sb.path("pulled"), "2");
    assert!(copy.status.success(), "skopeo copy other/hello:2: {}", text(&copy.stderr));
}

#[test]
fn push_of_a_kept_image_needs_no_rebuild_and_gives_the_build_push_digest() {
    let Some(reg) = Registry::start() else { return };
    let sb = Sandbox::new();
    let base = format!("BASE={}", reg.base());
    let kept = reg.image("app/kept:1");
    let out = sb.build("root", &["--build-arg", &base, "-t", &kept], &[]);
    ok(&out, "build, kept in the store");
    assert!(!text(&out.stderr).contains("pushing"), "{}", text(&out.stderr));

    let out = sb.command("root", &["push", &kept]).output().expect("run hako push");
    ok(&out, "hako push of the kept image");
    let digest = pushed_digest(&out, &kept);
    assert_eq!(text(&out.stdout).trim(), digest, "the pushed digest is printed on stdout");
    assert!(!text(&out.stderr).contains("FROM"), "hako push built something:\n{}", text(&out.stderr));
    assert_eq!(reg.digest_of("app/kept:1"), digest, "skopeo inspect disagrees with hako's digest");

    // The same image pushed by the build itself has the same digest (layers compressed alike).
    let built = reg.image("app/built:1");
    let out = sb.build("root", &["--build-arg", &base, "-t", &built, "--push"], &[]);
    ok(&out, "build --push");
    assert_eq!(pushed_digest(&out, &built), digest);

    // A name the store does not keep: an input error naming `hako tag`.
    let out = sb.command("root", &["push", &reg.image("app/none:1")]).output().expect("run hako push");
    assert!(failed(&out, 1, "push of a name not kept").contains("hako tag"));
}

#[test]
fn registry_outputs_push() {
    let Some(reg) = Registry::start() else { return };
    let sb = Sandbox::new();
    let base = format!("BASE={}", reg.base());

    let name = reg.image("app/viaoutput:1");
    let out = sb.build("root", &["--build-arg", &base, "-o", &format!("type=registry,name={name}")], &[]);
    ok(&out, "-o type=registry");
    let digest = pushed_digest(&out, &name);
    assert_eq!(reg.digest_of("app/viaoutput:1"), digest);

    // `type=image,push=true` is the same thing spelled BuildKit's other way.
    let image = reg.image("app/viaimage:1");
    let out =
        sb.build("root", &["--build-arg", &base, "-o", &format!("type=image,name={image},push=true")], &[]);
    ok(&out, "-o type=image,push=true");
    assert_eq!(pushed_digest(&out, &image), digest);
    assert_eq!(reg.digest_of("app/viaimage:1"), digest);

    // Regression: --push and an unnamed type=registry output name the same tags; each is pushed once.
    let (t1, t2) = (reg.image("app/once:1"), reg.image("app/once:2"));
    let out =
        sb.build("root", &["--build-arg", &base, "-t", &t1, "-t", &t2, "--push", "-o", "type=registry"], &[]);
    ok(&out, "--push with -o type=registry");
    let err = text(&out.stderr);
    assert_eq!(err.matches("pushing manifest for ").count(), 2, "each name pushed once:\n{err}");

    // type=registry without any name is a usage error, and nothing is pushed.
    let out = sb.build("root", &["--build-arg", &base, "-o", "type=registry"], &[]);
    let err = failed(&out, 2, "-o type=registry without a name");
    assert!(err.contains("name="), "the message does not say a name is needed:\n{err}");
    assert!(!err.contains("pushing"), "{err}");
}

/// `type=registry` with `compression=zstd,force-compression=true`: every layer pushed as zstd
/// (the registry's base image included); `hako push --compression zstd --force-compression`
/// pushes the same manifest, and `--push` beside it keeps gzip (buildx's default for it).
#[test]
fn registry_outputs_take_compression_options() {
    let Some(reg) = Registry::start() else { return };
    let sb = Sandbox::new();
    let base = format!("BASE={}", reg.base());
    let (zstd, gzip) = (reg.image("app/zstd:1"), reg.image("app/gzip:1"));
    let output = format!("type=registry,name={zstd},compression=zstd,force-compression=true");
    let out = sb.build("root", &["--build-arg", &base, "-t", &gzip, "--push", "-o", &output], &[]);
    ok(&out, "-o type=registry,compression=zstd,force-compression=true beside --push");
    let digest = pushed_digest(&out, &zstd);
    assert_ne!(digest, pushed_digest(&out, &gzip), "two compressions, two manifests");
    let layout = sb.path("zstd-layout");
    let copy = reg.copy_to_layout("app/zstd:1", &layout, "1");
    assert!(copy.status.success(), "skopeo copy verifies every blob: {}", text(&copy.stderr));
    let media_types = |layout: &Path| -> Vec<String> {
        let index = read_json(&layout.join("index.json"));
        let hex = index["manifests"][0]["digest"]
            .as_str()
            .expect("digest")
            .trim_start_matches("sha256:")
            .to_string();
        let manifest = read_json(&layout.join("blobs/sha256").join(hex));
        manifest["layers"].as_array().expect("layers").iter().map(|l| l["mediaType"].to_string()).collect()
    };
    let types = media_types(&layout);
    assert!(types.len() >= 2 && types.iter().all(|m| m.contains("tar+zstd")), "{types:?}");
    let gzip_layout = sb.path("gzip-layout");
    assert!(reg.copy_to_layout("app/gzip:1", &gzip_layout, "1").status.success());
    assert!(media_types(&gzip_layout).iter().all(|m| m.contains("gzip")), "{:?}", media_types(&gzip_layout));

    let kept = reg.image("app/zstd-kept:1");
    ok(&sb.build("root", &["--build-arg", &base, "-t", &kept], &[]), "build, kept");
    let args = ["push", "--compression", "zstd", "--force-compression", kept.as_str()];
    let out = sb.command("root", &args).output().expect("run hako push");
    ok(&out, "hako push --compression zstd --force-compression");
    assert_eq!(pushed_digest(&out, &kept), digest, "hako push and the build push the same manifest");
    let args = ["push", "--compression", "zstd", "--compression-level", "23", kept.as_str()];
    let err = failed(&sb.command("root", &args).output().expect("run hako push"), 2, "a level out of range");
    assert!(err.contains("compression-level=23 is out of range for zstd: expected 0 to 22"), "{err}");
}

#[test]
fn auth_registry_takes_credentials_from_docker_config_or_registry_auth_file() {
    let Some(reg) = Registry::start_with_auth() else { return };
    let sb = Sandbox::new();
    let host = reg.host();
    let base = format!("BASE={}", reg.base());
    let refused = |err: &str, what: &str| {
        assert!(err.contains(&host), "{what}: the message does not name the registry {host}:\n{err}");
        assert!(
            err.contains("refused access"),
            "{what}: the message does not say access was refused:\n{err}"
        );
        assert!(!err.contains("pushed"), "{what}: {err}");
    };

    // Anonymous pull.
    let out = sb.build("root", &["--build-arg", &base], &[]);
    refused(&failed(&out, 1, "anonymous pull"), "anonymous pull");

    // Anonymous push (the base comes from the offline layout).
    let name = reg.image("app/hello:1");
    let out = sb.build("root", &["--build-context", &busybox_context(), "-t", &name, "--push"], &[]);
    let err = failed(&out, 1, "anonymous push");
    refused(&err, "anonymous push");
    assert!(err.contains(&format!("pushing layers to {name}")), "{err}");

    // A wrong password from DOCKER_CONFIG: the message says whose and from where.
    let bad_docker = sb.docker_config("docker-bad", &host, USER, "wrong-password");
    let out = sb.build("root", &["--build-arg", &base], &[("DOCKER_CONFIG", bad_docker.as_os_str())]);
    let err = failed(&out, 1, "wrong password in DOCKER_CONFIG");
    refused(&err, "wrong password in DOCKER_CONFIG");
    assert!(err.contains(USER), "the message does not name the user {USER}:\n{err}");
    assert!(
        err.contains("config.json") || err.contains(&bad_docker.display().to_string()),
        "the message does not say the user came from the docker config:\n{err}"
    );

    // The right password from DOCKER_CONFIG: pull and push work.
    let good_docker = sb.docker_config("docker-good", &host, USER, PASS);
    let out = sb.build(
        "root",
        &["--build-arg", &base, "-t", &name, "--push"],
        &[("DOCKER_CONFIG", good_docker.as_os_str())],
    );
    ok(&out, "pull and push with DOCKER_CONFIG");
    let digest = pushed_digest(&out, &name);
    assert_eq!(reg.digest_of("app/hello:1"), digest);

    // REGISTRY_AUTH_FILE (podman's auth.json) wins over DOCKER_CONFIG: right there, wrong here...
    let good_podman = sb.auth_file("podman-good", &host, USER, PASS);
    let name2 = reg.image("app/hello:2");
    let out = sb.build(
        "root2",
        &["--build-arg", &base, "-t", &name2, "--push"],
        &[("DOCKER_CONFIG", bad_docker.as_os_str()), ("REGISTRY_AUTH_FILE", good_podman.as_os_str())],
    );
    ok(&out, "pull and push with REGISTRY_AUTH_FILE");
    assert_eq!(pushed_digest(&out, &name2), digest);
    assert_eq!(reg.digest_of("app/hello:2"), digest);

    // ...and wrong there, right here.
    let bad_podman = sb.auth_file("podman-bad", &host, USER, "wrong-password");
    let out = sb.build(
        "root3",
        &["--build-arg", &base],
        &[("DOCKER_CONFIG", good_docker.as_os_str()), ("REGISTRY_AUTH_FILE", bad_podman.as_os_str())],
    );
    let err = failed(&out, 1, "wrong password in REGISTRY_AUTH_FILE");
    refused(&err, "wrong password in REGISTRY_AUTH_FILE");
    assert!(err.contains(USER), "the message does not name the user {USER}:\n{err}");
    assert!(
        err.contains("from REGISTRY_AUTH_FILE") || err.contains(&bad_podman.display().to_string()),
        "the message does not say the user came from REGISTRY_AUTH_FILE:\n{err}"
    );
}

#[test]
fn unreachable_registry_and_missing_tag_fail_with_exit_1() {
    let sb = Sandbox::new();

    // Nothing listens on port 1 (tcpmux, privileged, unused): a port picked as "free" could be
    // taken by another test's registry meanwhile.
    let host = "127.0.0.1:1".to_string();
    let out = sb.build("root", &["--build-arg", &format!("BASE={host}/base/busybox:latest")], &[]);
    let err = failed(&out, 1, "FROM an unreachable registry");
    assert!(err.contains(&format!("cannot reach registry {host}")), "{err}");

    let name = format!("{host}/app/hello:1");
    let out = sb.build("root", &["--build-context", &busybox_context(), "-t", &name, "--push"], &[]);
    let err = failed(&out, 1, "push to an unreachable registry");
    assert!(err.contains(&format!("cannot reach registry {host}")), "{err}");
    assert!(!err.contains("pushed"), "{err}");

    let Some(reg) = Registry::start() else { return };
    let missing = reg.image("base/busybox:nope");
    let out = sb.build("root", &["--build-arg", &format!("BASE={missing}")], &[]);
    let err = failed(&out, 1, "FROM a missing tag");
    assert!(err.contains(&missing), "the message does not name the image {missing}:\n{err}");
    assert!(err.to_lowercase().contains("not found"), "the message does not say not found:\n{err}");
}

#[test]
fn pulls_go_through_mirrors_first_and_keep_the_image_name() {
    let Some(reg) = Registry::start() else { return };
    let sb = Sandbox::new();
    let live = reg.host();
    // Nothing listens on ports 1 and 2 (privileged, unused): only a mirror can answer there.
    let (dead, dead2) = ("127.0.0.1:1", "127.0.0.1:2");
    let config = |name: &str, registry: &str, mirrors: &[&str]| {
        let list: Vec<String> = mirrors.iter().map(|m| format!("{m:?}")).collect();
        write_config(&sb, name, &format!("[registry.{registry:?}]\nmirrors = [{}]\n", list.join(", ")))
    };

    // A registry that cannot be reached, mirrored by the live one: the pull comes from the
    // mirror, and what the build shows and records is the name in the Dockerfile.
    let from_mirror = config("mirrored.toml", dead, &[&live]);
    let base = format!("{dead}/base/busybox:latest");
    let out = sb.build(
        "root",
        &["--build-arg", &format!("BASE={base}"), "-t", "app:mirrored"],
        &[("HAKO_CONFIG", from_mirror.as_os_str())],
    );
    ok(&out, "FROM an unreachable registry with a live mirror");
    let err = text(&out.stderr);
    assert!(err.contains(&format!("load metadata for {base}")), "{err}");
    assert!(!err.contains(&live), "the mirror's name shows in the build output:\n{err}");

    // The same config found as ~/.config/hako/config.toml (XDG_CONFIG_HOME), and in the
    // default location a second registry's mirror list, tried in order: a dead mirror first
    // is passed over.
    let xdg = sb.path("home/.config/hako");
    fs_err::create_dir_all(&xdg).expect("mkdir");
    let body = format!("[registry.{dead:?}]\nmirrors = [{dead2:?}, {live:?}]\n");
    fs_err::write(xdg.join("config.toml"), body).expect("write config");
    let out = sb.build("root2", &["--build-arg", &format!("BASE={base}")], &[]);
    ok(&out, "a dead mirror, then a live one, from ~/.config/hako/config.toml");

    // --registry-mirror is Docker Hub's: `base/busybox` is docker.io/base/busybox, pulled from
    // the live registry's repository of the same name, with no Docker Hub access.
    let out = sb.build(
        "root3",
        &["--registry-mirror", &format!("http://{live}"), "--build-arg", "BASE=base/busybox:latest"],
        &[],
    );
    ok(&out, "a Docker Hub image through --registry-mirror");
    assert!(text(&out.stderr).contains("load metadata for base/busybox:latest"), "{}", text(&out.stderr));

    // Every mirror failing: the registry itself answers.
    let fallback = config("fallback.toml", &live, &[dead]);
    let out = sb.build(
        "root4",
        &["--build-arg", &format!("BASE={}", reg.base())],
        &[("HAKO_CONFIG", fallback.as_os_str())],
    );
    ok(&out, "a dead mirror in front of a live registry");

    // Nothing answers: the error is the registry's, and says what its mirror answered.
    let none = config("none.toml", dead, &[dead2]);
    let out =
        sb.build("root5", &["--build-arg", &format!("BASE={base}")], &[("HAKO_CONFIG", none.as_os_str())]);
    let err = failed(&out, 1, "a dead registry behind a dead mirror");
    assert!(err.contains(&format!("cannot reach registry {dead}")), "{err}");
    assert!(err.contains(&format!("mirrors tried first: cannot reach registry {dead2}")), "{err}");

    // A config that names a key hako does not know is an error naming the file, not ignored.
    let bad = sb.path("bad.toml");
    fs_err::write(&bad, "[registry.\"docker.io\"]\nmirror = [\"x\"]\n").expect("write");
    let out =
        sb.build("root5", &["--build-arg", &format!("BASE={base}")], &[("HAKO_CONFIG", bad.as_os_str())]);
    let err = failed(&out, 2, "an unknown key in the config file");
    assert!(err.contains("bad.toml") && err.contains("mirror"), "{err}");
}

#[test]
fn https_registry_trusted_through_ssl_cert_file_ssl_cert_dir_or_its_ca_in_the_config() {
    let Some(reg) = Registry::start_tls() else { return };
    let sb = Sandbox::new();
    let host = reg.host();
    let base = format!("BASE={}", reg.base());
    // A loopback registry is spoken to over plain HTTP unless its section says `http = false`.
    let https = write_config(&sb, "https.toml", &format!("[registry.{host:?}]\nhttp = false\n"));
    let config = ("HAKO_CONFIG", https.as_os_str());

    // The CA is in no trust store: refused, saying it is the certificate and what to do.
    let out = sb.build("root1", &["--build-arg", &base], &[config]);
    let err = failed(&out, 1, "an HTTPS registry whose CA is not trusted");
    assert!(err.contains(&host), "{err}");
    assert!(
        err.to_lowercase().contains("certificate"),
        "the message does not say it is the certificate:\n{err}"
    );
    assert!(err.contains("SSL_CERT_FILE"), "the message does not say how to trust a CA:\n{err}");

    // SSL_CERT_FILE names the CA (and replaces the system's store, as with OpenSSL).
    let ca = reg.ca();
    let out = sb.build("root2", &["--build-arg", &base], &[config, ("SSL_CERT_FILE", ca.as_os_str())]);
    ok(&out, "SSL_CERT_FILE");

    // SSL_CERT_DIR: a directory holding it.
    let certs = sb.path("certs");
    fs_err::create_dir_all(&certs).expect("mkdir");
    fs_err::copy(&ca, certs.join("hako-test.pem")).expect("copy ca");
    let out = sb.build("root3", &["--build-arg", &base], &[config, ("SSL_CERT_DIR", certs.as_os_str())]);
    ok(&out, "SSL_CERT_DIR");

    // `ca = [...]` in the registry's section: trusted for it, besides the system's CAs; a
    // relative path is taken from the config file's directory.
    let body = format!("[registry.{host:?}]\nhttp = false\nca = [\"certs/hako-test.pem\"]\n");
    let with_ca = write_config(&sb, "with-ca.toml", &body);
    let name = reg.image("app/tls:1");
    let out = sb.build(
        "root4",
        &["--build-arg", &base, "-t", &name, "--push"],
        &[("HAKO_CONFIG", with_ca.as_os_str())],
    );
    ok(&out, "the registry's ca in the config file (pull and push)");
    assert_eq!(reg.digest_of("app/tls:1"), pushed_digest(&out, &name));

    // `insecure = true`: HTTPS with any certificate.
    let body = format!("[registry.{host:?}]\nhttp = false\ninsecure = true\n");
    let insecure = write_config(&sb, "insecure.toml", &body);
    let out = sb.build("root5", &["--build-arg", &base], &[("HAKO_CONFIG", insecure.as_os_str())]);
    ok(&out, "insecure = true");

    // hako login reaches the registry the same way: refused certificate without the CA (exit 1,
    // with the hint), accepted with the config's ca (the registry asks for no login: accepted).
    let login = |config: &Path| {
        let mut cmd = hako();
        cmd.args(["login", "-u", "someone", "--password-stdin", &host])
            .env("HAKO_CONFIG", config)
            .env("HOME", sb.path("home"))
            .env("DOCKER_CONFIG", sb.path("home/.docker"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hako login");
        feed_stdin(&mut child, b"pw\n");
        child.wait_with_output().expect("wait for hako login")
    };
    let out = login(&https);
    let err = failed(&out, 1, "hako login to an HTTPS registry whose CA is not trusted");
    assert!(err.contains("certificate") && err.contains("hint:") && err.contains("SSL_CERT_FILE"), "{err}");
    let out = login(&with_ca);
    ok(&out, "hako login with the registry's ca in the config file");
    assert_eq!(text(&out.stdout), "Login Succeeded\n");

    // A ca file that does not exist is named.
    let body = format!("[registry.{host:?}]\nhttp = false\nca = [\"missing.pem\"]\n");
    let missing = write_config(&sb, "missing-ca.toml", &body);
    let out = sb.build("root6", &["--build-arg", &base], &[("HAKO_CONFIG", missing.as_os_str())]);
    let err = failed(&out, 2, "a missing ca file");
    assert!(err.contains("missing.pem"), "{err}");
}

#[test]
fn push_without_a_tag_is_a_usage_error() {
    let sb = Sandbox::new();
    let out = sb.build("root", &["--build-context", &busybox_context(), "--push"], &[]);
    let err = failed(&out, 2, "--push without -t");
    assert!(err.contains("--push") && err.contains("-t"), "the message does not say --push needs -t:\n{err}");
    assert!(text(&out.stdout).is_empty(), "printed a result: {}", text(&out.stdout));
}

/// The acceptance test in one go: a Dockerfile with a registry base, multi-stage COPY --from,
/// every metadata instruction, ADD of a tar and .dockerignore builds and is pushed; skopeo pulls it
/// back and umoci unpacks it; files, owners, modes and config are as written.
#[test]
fn full_dockerfile_from_registry_pushed_pulled_back_and_unpacked() {
    let Some(reg) = Registry::start() else { return };
    if !installed("umoci", "umoci") {
        return;
    }
    let sb = Sandbox::new();
    let ctx = crate::build::full_context(&sb.path("work"));
    let name = reg.image("app/full:1");
    let out = sb
        .hako("root")
        .args(["--build-arg", &format!("BASE={}", reg.base()), "-t", &name, "--push"])
        .arg(&ctx)
        .output()
        .expect("run hako");
    ok(&out, "build FROM the registry base and push");
    let digest = pushed_digest(&out, &name);
    let layout = sb.path("pulled");
    let copy = reg.copy_to_layout("app/full:1", &layout, "1");
    assert!(copy.status.success(), "skopeo copy: {}", text(&copy.stderr));
    let config = crate::build::config_of(&layout, "1");
    assert_eq!(config["config"]["User"], "app:staff");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/app/bin/tool"]));
    assert_eq!(config["config"]["ExposedPorts"], serde_json::json!({"53/udp": {}, "8080/tcp": {}}));
    let rootfs = crate::common::umoci_unpack(&layout, "1", &sb.path("bundle"), "the pulled image");
    let files = crate::build::tree(&rootfs, &["app", "opt/vendor"]);
    assert!(!files.iter().any(|f| f.ends_with(".log")), ".dockerignore kept *.log out: {files:?}");
    use std::os::unix::fs::MetadataExt;
    let meta = |p: &str| fs_err::symlink_metadata(rootfs.join(p)).expect(p);
    let tool = meta("app/bin/tool");
    assert_eq!((tool.uid(), tool.gid(), tool.mode() & 0o7777), (1000, 50, 0o750));
    let a = meta("opt/vendor/lib/a.so");
    assert_eq!((a.uid(), a.gid(), a.mode() & 0o7777), (42, 42, 0o755));
    assert_eq!(meta("app/main.txt").uid(), 0);
    assert!(rootfs.join("bin/busybox").is_file());
    assert!(digest.starts_with("sha256:"));
}

#[test]
fn credential_helpers_from_docker_config() {
    let Some(reg) = Registry::start_with_auth() else { return };
    let sb = Sandbox::new();
    let host = reg.host();
    // A docker-credential helper on PATH, named in config.json's credHelpers for this registry.
    let bin = sb.path("bin");
    fs_err::create_dir_all(&bin).expect("mkdir");
    let helper = bin.join("docker-credential-hakotest");
    fs_err::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"{{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"{USER}\\\",\\\"Secret\\\":\\\"{PASS}\\\"}}\"\n"
        ),
    )
    .expect("write helper");
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = sb.path("helper-config");
    fs_err::create_dir_all(&config).expect("mkdir");
    fs_err::write(config.join("config.json"), format!("{{\"credHelpers\":{{\"{host}\":\"hakotest\"}}}}"))
        .expect("write");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let name = reg.image("app/viahelper:1");
    let out = sb.build(
        "root",
        &["--build-arg", &format!("BASE={}", reg.base()), "-t", &name, "--push"],
        &[("DOCKER_CONFIG", config.as_os_str()), ("PATH", OsStr::new(&path))],
    );
    ok(&out, "pull and push with credentials from a credential helper");
    assert_eq!(reg.digest_of("app/viahelper:1"), pushed_digest(&out, &name));
}

/// A fault to inject into one request through [`FaultyProxy`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Answer 503 without asking the registry.
    Unavailable,
    /// Send the answer's head and 1 KiB of its body, then close the connection.
    Cut,
    /// Send the head and 1 KiB, then say nothing for 3 s (past the 1 s idle timeout) and close.
    Stall,
    /// Send the head, wait 3 s, then send the whole body: a slow pull that succeeds.
    Slow,
    /// Answer 404, as for a blob the registry lost.
    Gone,
}

/// A loopback HTTP proxy in front of the registry (one request per connection: it asks both sides
/// to close) that injects the queued faults into blob downloads — a 503 into any blob GET, a cut
/// or a stall only into a blob bigger than 64 KiB, so the fault lands inside a body — and answers
/// every blob upload with 503 when `refuse_uploads` is set.
struct FaultyProxy {
    port: u16,
    faults: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Fault>>>,
    injected: std::sync::Arc<std::sync::Mutex<Vec<Fault>>>,
}

impl FaultyProxy {
    fn start(upstream: u16, faults: &[Fault], refuse_uploads: bool) -> FaultyProxy {
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let queue = Arc::new(Mutex::new(faults.iter().copied().collect()));
        let injected = Arc::new(Mutex::new(Vec::new()));
        let (q, inj) = (queue.clone(), injected.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (q, inj) = (q.clone(), inj.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, upstream, &q, &inj, refuse_uploads);
                });
            }
        });
        FaultyProxy { port, faults: queue, injected }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Reads an HTTP head (up to the blank line) from `r`; returns it and any body bytes read past it.
fn read_head(r: &mut impl std::io::Read) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok((buf, rest));
        }
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The head with `Connection: close` in place of any Connection header.
fn closing(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn proxy_one(
    mut client: std::net::TcpStream,
    upstream: u16,
    queue: &std::sync::Mutex<std::collections::VecDeque<Fault>>,
    injected: &std::sync::Mutex<Vec<Fault>>,
    refuse_uploads: bool,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let (head, early_body) = read_head(&mut client)?;
    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
    let blob_get = line.starts_with("GET ") && line.contains("/blobs/sha256:");
    let upload = !line.starts_with("GET ") && !line.starts_with("HEAD ") && line.contains("/blobs/uploads");
    let unavailable = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if refuse_uploads && upload {
        client.write_all(unavailable)?;
        return Ok(());
    }
    let mut fault = None;
    if blob_get {
        let mut q = queue.lock().expect("lock");
        if q.front() == Some(&Fault::Unavailable) {
            q.pop_front();
            injected.lock().expect("lock").push(Fault::Unavailable);
            client.write_all(unavailable)?;
            return Ok(());
        }
        fault = q.front().copied();
    }
    let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(&closing(&head))?;
    up.write_all(&early_body)?;
    let mut to_up = up.try_clone()?;
    let mut from_client = client.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_up);
    });
    let (resp_head, mut body) = read_head(&mut up)?;
    let len: Option<u64> = String::from_utf8_lossy(&resp_head)
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok());
    let big = len.is_some_and(|l| l > 64 << 10);
    let fault = fault.filter(|_| big).inspect(|f| {
        queue.lock().expect("lock").pop_front();
        injected.lock().expect("lock").push(*f);
    });
    if fault == Some(Fault::Gone) {
        client.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    client.write_all(&closing(&resp_head))?;
    match fault {
        Some(Fault::Slow) => {
            std::thread::sleep(std::time::Duration::from_secs(3));
            client.write_all(&body)?;
            std::io::copy(&mut up, &mut client)?;
            Ok(())
        }
        Some(f) => {
            while body.len() < 1024 {
                let mut chunk = [0u8; 4096];
                let n = up.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            client.write_all(&body[..body.len().min(1024)])?;
            client.flush()?;
            if f == Fault::Stall {
                std::thread::sleep(std::time::Duration::from_secs(3));
            }
            Ok(())
        }
        None => {
            client.write_all(&body)?;
            std::io::copy(&mut up, &mut client)?;
            Ok(())
        }
    }
}

/// Through a proxy that answers a blob download with 503, cuts one after 1 KiB and stalls one
/// past the idle timeout, a build FROM the registry still succeeds (each download made again
/// and verified), and gives the image a direct pull gives.
#[test]
fn pulls_survive_a_503_a_cut_and_a_stall() {
    let Some(reg) = Registry::start() else { return };
    let port: u16 = reg.host().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let proxy = FaultyProxy::start(port, &[Fault::Unavailable, Fault::Cut, Fault::Stall], false);
    let sb = Sandbox::new();
    let through = format!("BASE={}/base/busybox:latest", proxy.host());
    let idle = [("HAKO_NET_IDLE_TIMEOUT", OsStr::new("1"))];
    let started = std::time::Instant::now();
    let out = sb.build("faulty", &["--build-arg", &through], &idle);
    ok(&out, "a build through the faulty proxy");
    assert_eq!(
        *proxy.injected.lock().expect("lock"),
        vec![Fault::Unavailable, Fault::Cut, Fault::Stall],
        "every fault was injected"
    );
    assert!(proxy.faults.lock().expect("lock").is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "no hang: {:?}", started.elapsed());
    let direct = sb.build("direct", &["--build-arg", &format!("BASE={}", reg.base())], &[]);
    ok(&direct, "a build pulling directly");
    assert_eq!(text(&out.stdout), text(&direct.stdout), "the same image");
}

/// A base's layers come while the build goes on, as in BuildKit: planning needs only the
/// manifest and config, a stage that does not need the base runs meanwhile, and the stage FROM it
/// waits at its FROM step (whose time shows the wait).
#[test]
fn base_layers_come_while_other_stages_run() {
    let Some(reg) = Registry::start() else { return };
    let port: u16 = reg.host().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let proxy = FaultyProxy::start(port, &[Fault::Slow], false);
    let sb = Sandbox::new();
    let ctx = sb.path("ctx");
    fs_err::create_dir_all(&ctx).expect("mkdir");
    fs_err::write(ctx.join("local.txt"), "built meanwhile\n").expect("write");
    fs_err::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}/base/busybox:latest AS pulled\nFROM scratch AS local\nCOPY local.txt /\nFROM pulled\nCOPY --from=local /local.txt /\n",
            proxy.host()
        ),
    )
    .expect("write");
    let out = sb.command("root", &["build", "--progress=json"]).arg(&ctx).output().expect("run hako");
    ok(&out, "a build whose base pulls slowly");
    assert_eq!(*proxy.injected.lock().expect("lock"), vec![Fault::Slow], "the layer came slowly");
    let events: Vec<serde_json::Value> =
        text(&out.stderr).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    // The step ids, then when each ended.
    let id = |stage: &str, instruction: &str| {
        events
            .iter()
            .find(|e| {
                e["event"] == "step"
                    && e["stage"] == stage
                    && e["instruction"].as_str().is_some_and(|i| i.starts_with(instruction))
            })
            .map(|e| e["id"].clone())
            .unwrap_or_else(|| panic!("no {instruction} step in stage {stage}: {}", text(&out.stderr)))
    };
    let done = |id: &serde_json::Value| {
        events
            .iter()
            .find(|e| e["event"] == "done" && &e["id"] == id)
            .unwrap_or_else(|| panic!("step {id} never ended: {}", text(&out.stderr)))
    };
    let metadata = events
        .iter()
        .find(|e| e["event"] == "task" && e["name"].as_str().is_some_and(|n| n.contains("load metadata")))
        .map(|e| done(&e["id"]))
        .expect("a load metadata task");
    let from = done(&id("pulled", "FROM"));
    let copy = done(&id("local", "COPY"));
    let time = |e: &serde_json::Value| e["time"].as_str().expect("time").to_string();
    assert!(
        metadata["seconds"].as_f64().expect("seconds") < 2.0,
        "planning did not wait for layers: {metadata}"
    );
    assert!(from["seconds"].as_f64().expect("seconds") >= 2.0, "FROM waited for its layers: {from}");
    assert!(time(copy) < time(from), "the other stage ran while the layers came: {copy} then {from}");
    // The FROM shows what BuildKit's does: the resolved reference, then each blob that came.
    let from_id = id("pulled", "FROM");
    let of_from =
        |kind: &str| events.iter().filter(|e| e["event"] == kind && e["id"] == from_id).collect::<Vec<_>>();
    let resolve = format!("resolve {}/base/busybox:latest@sha256:", proxy.host());
    assert!(
        of_from("status").iter().any(|e| e["text"].as_str().is_some_and(|t| t.starts_with(&resolve))),
        "{events:?}"
    );
    let downloads = of_from("download");
    assert!(!downloads.is_empty(), "{events:?}");
    assert!(
        downloads.iter().all(|e| e["digest"].as_str().is_some_and(|d| d.starts_with("sha256:"))
            && e["size"].as_u64() > Some(0))
    );
    assert!(
        downloads.iter().any(|e| e["seconds"].as_f64() >= Some(2.0)),
        "the slow layer took its time: {downloads:?}"
    );

    // A layer that never comes fails the build at the FROM that needs it, naming the image.
    proxy.faults.lock().expect("lock").push_back(Fault::Gone);
    let out = sb.command("fresh", &["build", "--progress=plain"]).arg(&ctx).output().expect("run hako");
    let err = failed(&out, 1, "a base whose layer is gone");
    assert_eq!(proxy.injected.lock().expect("lock").last(), Some(&Fault::Gone));
    assert!(
        err.contains("Dockerfile:1") && err.contains(&format!("FROM {}/base/busybox", proxy.host())),
        "{err}"
    );
    assert!(err.contains("404") || err.to_lowercase().contains("not found"), "{err}");

    // Two bases from the registry at once: one's layers come on their thread while the planner
    // resolves the other (several threads drive the registry's runtime at the same time).
    let small = sb.path("small");
    fs_err::create_dir_all(&small).expect("mkdir");
    fs_err::write(small.join("local.txt"), "from the small image\n").expect("write");
    fs_err::write(small.join("Dockerfile"), "FROM scratch\nCOPY local.txt /\n").expect("write");
    let name = reg.image("small/one:1");
    let out =
        sb.command("pusher", &["build", "--progress=plain", "-t", &name, "--push"]).arg(&small).output();
    ok(&out.expect("run hako"), "push the small image");
    proxy.faults.lock().expect("lock").push_back(Fault::Slow);
    fs_err::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {p}/base/busybox:latest AS a\nFROM {p}/small/one:1 AS b\nFROM a\nCOPY --from=b /local.txt /b.txt\n",
            p = proxy.host()
        ),
    )
    .expect("write");
    let dest = sb.path("two-out");
    let local = format!("type=local,dest={}", dest.display());
    let out =
        sb.command("two", &["build", "--progress=plain", "-o", &local]).arg(&ctx).output().expect("run hako");
    ok(&out, "a build FROM two registry images, one slow");
    assert_eq!(proxy.injected.lock().expect("lock").last(), Some(&Fault::Slow));
    assert_eq!(fs_err::read_to_string(dest.join("b.txt")).expect("read"), "from the small image\n");
    assert!(dest.join("bin/busybox").is_file());
}

/// When blob uploads keep failing, the push gives up with an error that names the registry, the
/// answer and the attempts made, and no manifest is pushed (so none names a missing blob).
#[test]
fn a_failing_push_never_leaves_a_manifest() {
    let Some(reg) = Registry::start() else { return };
    let port: u16 = reg.host().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let proxy = FaultyProxy::start(port, &[], true);
    let sb = Sandbox::new();
    let name = format!("{}/app/broken:1", proxy.host());
    let base = format!("BASE={}", reg.base());
    let out = sb.build("root", &["--build-arg", &base, "-t", &name, "--push"], &[]);
    let err = failed(&out, 1, "a push whose uploads fail");
    assert!(err.contains(&proxy.host()) && err.contains("503"), "{err}");
    assert!(err.contains("attempts"), "the error says retries were made:\n{err}");
    let manifest = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
        use std::io::{Read, Write};
        s.write_all(b"HEAD /v2/app/broken/manifests/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        Ok(resp)
    });
    let manifest = manifest.expect("ask the registry");
    assert!(manifest.starts_with("HTTP/1.1 404"), "no manifest was pushed: {manifest}");
}
