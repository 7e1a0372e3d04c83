//! RUN steps in the real sandbox, as root and as an unprivileged user (rootless, through the user
//! `scripts/test-user.sh` creates with sub-id ranges). Every check runs in each mode the machine
//! offers; a mode that is not available is skipped with its reason.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{dir_names, skip, text};

/// The unprivileged user rootless tests run as (see scripts/test-user.sh).
const TEST_USER: &str = "hakotest";

/// How a build is run.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// As root (real root, no user namespace).
    Root,
    /// As an unprivileged user: `None` is the current (non-root) user.
    Rootless(Option<String>),
    /// As root with `--isolation=chroot` (no namespaces).
    Chroot,
    /// Either of the above with the copy snapshotter (HAKO_SNAPSHOTTER=copy), the fallback for
    /// machines where overlayfs cannot be mounted.
    Copy(Box<Mode>),
    /// Root or the rootless user with `--isolation=ptrace` (no namespaces, root emulated).
    Ptrace(Box<Mode>),
}

impl Mode {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Mode::Root => "root",
            Mode::Chroot => "chroot",
            Mode::Rootless(_) => "rootless",
            Mode::Copy(m) if matches!(**m, Mode::Root) => "root, copy snapshotter",
            Mode::Copy(_) => "rootless, copy snapshotter",
            Mode::Ptrace(m) if matches!(**m, Mode::Root) => "ptrace, as root",
            Mode::Ptrace(_) => "ptrace, as a non-root user",
        }
    }

    /// Steps run with no namespaces (no /proc of their own, no --network=none, no ssh mount,
    /// tmpfs an empty directory).
    fn no_namespaces(&self) -> bool {
        matches!(self, Mode::Chroot | Mode::Ptrace(_))
    }

    /// The mode without the snapshotter choice.
    fn user(&self) -> &Mode {
        match self {
            Mode::Copy(m) | Mode::Ptrace(m) => m,
            m => m,
        }
    }

    /// `program` run as this mode's user: through runuser for the rootless test user.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match self.user() {
            Mode::Rootless(Some(user)) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            _ => Command::new(program),
        }
    }

    /// The store's sandbox directory for this mode.
    fn sandbox_dir(&self) -> &'static str {
        if let Mode::Ptrace(_) = self {
            return "ptrace";
        }
        match self.user() {
            Mode::Root => "root",
            Mode::Chroot => "chroot",
            _ => "rootless",
        }
    }
}

/// [`modes`], each of them again with the copy snapshotter and with ptrace isolation, and chroot
/// isolation when root.
fn modes_and_snapshotters(what: &str) -> Vec<Mode> {
    let base = modes(what);
    let copies: Vec<Mode> = base.iter().map(|m| Mode::Copy(Box::new(m.clone()))).collect();
    let traced: Vec<Mode> = base.iter().map(|m| Mode::Ptrace(Box::new(m.clone()))).collect();
    let chroot = base.iter().any(|m| matches!(m, Mode::Root)).then_some(Mode::Chroot);
    base.into_iter().chain(copies).chain(chroot).chain(traced).collect()
}

/// The modes this machine can test, skipping (with the reason) those it cannot.
pub(crate) fn modes(what: &str) -> Vec<Mode> {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        skip(&format!("{what} as root: the tests do not run as root"));
        return vec![Mode::Rootless(None)];
    }
    let mut v = vec![Mode::Root];
    let has_user = Command::new("id").arg(TEST_USER).output().is_ok_and(|o| o.status.success());
    let has_runuser = Path::new("/usr/sbin/runuser").exists() || Path::new("/sbin/runuser").exists();
    if has_user && has_runuser {
        v.push(Mode::Rootless(Some(TEST_USER.into())));
    } else {
        skip(&format!(
            "{what} rootless: no user {TEST_USER} (scripts/test-user.sh creates it) or no runuser"
        ));
    }
    v
}

/// A directory the build (and the rootless user) may use, removed at the end.
pub(crate) struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    pub(crate) fn new(mode: &Mode) -> Dir {
        let tmp = tempfile::Builder::new().prefix("hako-run-").tempdir().expect("tempdir");
        if let Mode::Rootless(Some(user)) = mode.user() {
            let o = Command::new("chown")
                .args([format!("{user}:{user}")])
                .arg(tmp.path())
                .output()
                .expect("chown");
            assert!(o.status.success(), "chown: {}", text(&o.stderr));
        }
        Dir { tmp }
    }

    pub(crate) fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes files (making them the rootless user's).
    pub(crate) fn write(&self, mode: &Mode, files: &[(&str, &str)]) {
        for (name, body) in files {
            let p = self.path().join(name);
            fs_err::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs_err::write(&p, body).expect("write");
        }
        // Only what was written and its directories: `chown -R` of the whole directory would
        // race with a store in it that a killed build's helper is still cleaning up.
        if let Mode::Rootless(Some(_)) = mode.user() {
            let mut paths: Vec<PathBuf> = Vec::new();
            for (name, _) in files {
                let mut p = self.path().join(name);
                while p.starts_with(self.path()) && p != self.path() && !paths.contains(&p) {
                    paths.push(p.clone());
                    p.pop();
                }
            }
            give(mode, &paths);
        }
    }

    /// Copies the file `from` to `name` in the directory, mode and all (the directory above it
    /// exists), the rootless user's.
    pub(crate) fn copy(&self, mode: &Mode, from: &Path, name: &str) {
        let to = self.path().join(name);
        fs_err::copy(from, &to).expect("copy");
        give(mode, &[to]);
    }
}

/// Makes `paths` the rootless user's, in a rootless mode.
fn give(mode: &Mode, paths: &[PathBuf]) {
    if let Mode::Rootless(Some(user)) = mode.user() {
        let o = Command::new("chown").arg(format!("{user}:{user}")).args(paths).output().expect("chown");
        assert!(o.status.success(), "chown: {}", text(&o.stderr));
    }
}

/// The hako binary, where the rootless user can run it.
fn binary(dir: &Dir, mode: &Mode) -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_hako"));
    if let Mode::Rootless(Some(_)) = mode.user() {
        let ok = mode.command("test").arg("-x").arg(&bin).status().is_ok_and(|s| s.success());
        if !ok {
            let copy = dir.path().join("hako");
            fs_err::copy(&bin, &copy).expect("copy hako");
            return copy;
        }
    }
    bin
}

/// `hako build` in `mode` with a store in `dir` and the offline busybox base.
pub(crate) fn build_command(dir: &Dir, mode: &Mode, args: &[&str]) -> Command {
    build_command_with(dir, mode, &[], args)
}

/// [`build_command`] with environment variables (`NAME=value`) for hako.
fn build_command_with(dir: &Dir, mode: &Mode, env: &[&str], args: &[&str]) -> Command {
    let bin = binary(dir, mode);
    let snapshotter = if matches!(mode, Mode::Copy(_)) { "copy" } else { "auto" };
    // Through env, so the settings survive runuser.
    let mut cmd = mode.command("env");
    cmd.arg(format!("HAKO_SNAPSHOTTER={snapshotter}")).args(env).arg(&bin);
    let base = format!("busybox=oci-layout://{}/testdata/busybox", env!("CARGO_MANIFEST_DIR"));
    cmd.args(["build", "--progress=plain", "--root"])
        .arg(dir.path().join("store"))
        .args(["--build-context", &base])
        .env_remove("SOURCE_DATE_EPOCH");
    match mode {
        Mode::Chroot => {
            cmd.arg("--isolation=chroot");
        }
        Mode::Ptrace(_) => {
            cmd.arg("--isolation=ptrace");
        }
        _ => {}
    }
    cmd.args(args);
    cmd
}

/// Runs [`build_command`].
pub(crate) fn build(dir: &Dir, mode: &Mode, args: &[&str]) -> Output {
    build_command(dir, mode, args).output().expect("run hako")
}

/// Starts a build of `ctx` (a step that prints `started`, then sleeps) and returns once the step
/// runs.
fn start_step(dir: &Dir, mode: &Mode, ctx: &Path) -> std::process::Child {
    use std::io::BufRead;
    let mut child = build_command(dir, mode, &[ctx.to_str().expect("utf-8")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    // BuildKit's plain output line: `#6 0.052 started`.
    let output = |l: &str| {
        let mut words = l.split(' ');
        words.next().is_some_and(|w| w.starts_with('#'))
            && words.next().is_some_and(|w| w.parse::<f64>().is_ok())
            && words.next() == Some("started")
    };
    let started = std::io::BufReader::new(stderr).lines().map_while(Result::ok).any(|l| output(&l));
    assert!(started, "{}: the step started", mode.name());
    child
}

/// A running build that a failing test does not leave behind (holding the test harness's output
/// open): killed as [`kill_builder`] kills it when dropped still running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let pid = builder_pid(self.0.id());
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// kill -9 of the hako process `child` runs (runuser cannot forward SIGKILL).
fn kill_builder(child: &mut std::process::Child) {
    let pid = builder_pid(child.id());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .expect("kill -9");
    let _ = child.wait();
}

pub(crate) fn ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what}: exit {:?}\n{}", out.status.code(), text(&out.stderr));
}

/// Whether `tool` is on PATH.
pub(crate) fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

/// Lists a tree as `path mode uid:gid kind`, with symlink targets, for exact comparisons.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let p = root.join(&rel);
        let m = fs_err::symlink_metadata(&p).expect("stat");
        let kind = if m.file_type().is_symlink() {
            format!("-> {}", fs_err::read_link(&p).expect("readlink").display())
        } else if m.is_dir() {
            for e in fs_err::read_dir(&p).expect("read_dir") {
                todo.push(rel.join(e.expect("entry").file_name()));
            }
            "dir".into()
        } else {
            format!("file {}", m.len())
        };
        out.insert(
            rel.to_string_lossy().into_owned(),
            format!("{:o} {}:{} {kind}", m.mode() & 0o7777, m.uid(), m.gid()),
        );
    }
    out
}

const TREE_DOCKERFILE: &str = r#"FROM busybox AS base
RUN mkdir -p /data/keep /data/gone /data/redo \
 && echo keep > /data/keep/f && echo gone > /data/gone/f && echo old > /data/redo/old \
 && echo x > /data/file-to-delete && echo y > /data/owned && echo z > /data/hard1

FROM busybox AS other
RUN echo from-other > /other.txt

FROM base
RUN rm -rf /data/gone /data/file-to-delete \
 && rm -rf /data/redo && mkdir /data/redo && echo new > /data/redo/new \
 && chown 42:4242 /data/owned && chmod 0640 /data/owned \
 && mkdir /data/app && chown 1000:1000 /data/app && chmod 2775 /data/app \
 && echo u > /data/app/userfile && chown 65534:65534 /data/app/userfile \
 && ln -s ../keep/f /data/link && ln /data/hard1 /data/hard2 \
 && chmod 0700 /data/keep
COPY --from=other /other.txt /data/other.txt
USER 1000
RUN echo "$(id -u):$(id -g)" > /tmp/whoami && cp /tmp/whoami /data/app/whoami
CMD ["cat", "/data/app/whoami"]
"#;

/// The done-when tree: files created, deleted, chmod/chown'd to other ids, a deleted directory
/// re-created, symlinks and hard links, across stages; umoci (an independent unpacker) must
/// see exactly that tree, whiteouts applied.
#[test]
fn run_steps_make_the_expected_tree() {
    // The same image, byte for byte, whichever mode ran the steps (issue 12: rootless, root,
    // chroot, the copy snapshotter).
    let mut digests: Vec<(String, String)> = Vec::new();
    for mode in modes_and_snapshotters("the RUN tree build") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", TREE_DOCKERFILE)]);
        let layout = dir.path().join("image.oci");
        let dest = format!("type=oci,dest={},tar=false", layout.display());
        let ctx = dir.path().join("ctx");
        let archive = format!("type=docker,dest={}", dir.path().join("image.tar").display());
        let out =
            build(&dir, &mode, &["-t", "tree:1", "-o", &dest, "-o", &archive, ctx.to_str().expect("utf-8")]);
        ok(&out, mode.name());
        let log = text(&out.stderr);
        let index: serde_json::Value =
            serde_json::from_slice(&fs_err::read(layout.join("index.json")).expect("index")).expect("json");
        let manifest = index["manifests"][0]["digest"].as_str().expect("a manifest").to_string();
        digests.push((mode.name().to_string(), manifest));
        assert!(!log.contains("warning: no range"), "{}: sub-ids are used: {log}", mode.name());
        let copying = log.contains("each step runs on a copy");
        assert_eq!(
            copying,
            matches!(mode, Mode::Copy(_)),
            "{}: the snapshotter in use is said: {log}",
            mode.name()
        );
        if !have("umoci") {
            skip("the RUN tree umoci check: umoci is not installed");
            continue;
        }
        let rootfs = crate::common::umoci_unpack(&layout, "1", &dir.path().join("bundle"), mode.name());
        let data = tree(&rootfs.join("data"));
        let want: BTreeMap<String, String> = [
            ("", "755 0:0 dir"),
            ("app", "2775 1000:1000 dir"),
            ("app/userfile", "644 65534:65534 file 2"),
            ("app/whoami", "644 1000:1000 file 10"),
            ("hard1", "644 0:0 file 2"),
            ("hard2", "644 0:0 file 2"),
            ("keep", "700 0:0 dir"),
            ("keep/f", "644 0:0 file 5"),
            ("link", "777 0:0 -> ../keep/f"),
            ("other.txt", "644 0:0 file 11"),
            ("owned", "640 42:4242 file 2"),
            ("redo", "755 0:0 dir"),
            ("redo/new", "644 0:0 file 4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(data, want, "{}: the unpacked /data", mode.name());
        let ino = |p: &str| fs_err::metadata(rootfs.join("data").join(p)).expect(p).ino();
        assert_eq!(ino("hard1"), ino("hard2"), "{}: hard links stay links", mode.name());
        assert_eq!(fs_err::read_to_string(rootfs.join("data/app/whoami")).expect("whoami"), "1000:1000\n");
        for stub in ["run", "etc/hosts", "etc/resolv.conf"] {
            assert!(
                !rootfs.join(stub).exists(),
                "{}: /{stub} (a mount target) is not in the image",
                mode.name()
            );
        }
        podman_runs(&dir, &mode, &dir.path().join("image.tar"));
    }
    let first = digests.first().map(|d| d.1.clone()).unwrap_or_default();
    assert!(digests.iter().all(|d| d.1 == first), "one image from every mode: {digests:?}");
}

/// A step runs on the tree the step before it left, as its overlay snapshot is in a namespace
/// sandbox, not on its layer extracted again: what the layer does not keep (mtimes are clamped
/// to the build's epoch) is as that step left it, with a COPY between as well. The copy
/// snapshotter (chroot, ptrace) keeps the last trees and applies only the layers above one.
/// A step that changes nothing makes an empty layer, as BuildKit's differ does, and the step
/// after it runs on that; so does one that only gives entries their own mode or owner again, or
/// changes a directory's mtime (what overlayfs copies up is not a change to BuildKit).
#[test]
fn steps_run_on_the_tree_the_step_before_left() {
    const DOCKERFILE: &str = "FROM busybox\nRUN touch /made-by-run\nCOPY f /f\n\
        RUN set -e; stat -c 'mtime %Y' /made-by-run; test \"$(stat -c %Y /made-by-run)\" != 315532800; cat /f\n\
        RUN test -f /made-by-run && echo again > /f\n\
        RUN chmod \"$(stat -c %a /bin/busybox)\" /bin/busybox && chown 0:0 /f && touch /tmp/x && rm /tmp/x\n";
    // The diff id of an empty tar (two zero blocks), BuildKit's layer for a step that changed
    // nothing.
    const EMPTY_TAR: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    for mode in modes_and_snapshotters("the kept-tree build") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", DOCKERFILE), ("ctx/f", "copied\n")]);
        let layout = dir.path().join("image.oci");
        let dest = format!("type=oci,dest={},tar=false", layout.display());
        let out = build(
            &dir,
            &mode,
            &["-t", "kept:1", "-o", &dest, dir.path().join("ctx").to_str().expect("utf-8")],
        );
        ok(&out, mode.name());
        assert!(text(&out.stderr).contains(" copied\n"), "{}: {}", mode.name(), text(&out.stderr));
        let config = crate::build::config_of(&layout, "1");
        let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
        assert_eq!(diff_ids.len(), 6, "{}: a layer per step: {diff_ids:?}", mode.name());
        assert_eq!(diff_ids[3], EMPTY_TAR, "{}: the step that changed nothing", mode.name());
        assert_ne!(diff_ids[4], EMPTY_TAR, "{}", mode.name());
        assert_eq!(diff_ids[5], EMPTY_TAR, "{}: no-op chmod and chown, /tmp's mtime", mode.name());
        let history = config["history"].as_array().expect("history");
        assert!(history.iter().all(|h| h.get("empty_layer").is_none()), "{}: {history:?}", mode.name());
    }
}

/// `cap_net_raw=ep`, as `setcap` writes it (VFS_CAP_REVISION_2).
const CAP_NET_RAW: [u8; 20] = [1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// An uncompressed tar holding `capped`, a program with `cap_net_raw=ep` (a PAX record, as
/// BuildKit's layers carry it).
fn capability_tar(dir: &Path) -> Vec<u8> {
    use hako::layer::index::{Kind, Meta};
    let store = hako::store::Store::open(&dir.join("tar-store")).expect("store");
    let body = b"#!/bin/sh\necho capped\n";
    let mut w = hako::layer::LayerWriter::new(&store, hako::layer::Compression::None, None).expect("writer");
    let meta = Meta {
        kind: Kind::File,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 1000,
        size: body.len() as u64,
        capability: Some(CAP_NET_RAW.to_vec().into_boxed_slice()),
    };
    w.add("capped", &meta, Some(&mut &body[..])).expect("add");
    let layer = w.finish().expect("finish");
    store.read_blob(&layer.digest).expect("blob")
}

/// The capabilities of the entries of every layer of the image in `layout` (tag `1`), by path.
fn layer_capabilities(layout: &Path) -> Vec<BTreeMap<String, Vec<u8>>> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(layout.join("index.json")).expect("index")).expect("json");
    let blob =
        |d: &str| fs_err::read(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).expect(d);
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().expect("manifest")))
            .expect("json");
    let mut out = Vec::new();
    for l in manifest["layers"].as_array().expect("layers") {
        let gz = blob(l["digest"].as_str().expect("digest"));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        let mut caps = BTreeMap::new();
        for e in archive.entries().expect("entries") {
            let mut e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            if let Some(pax) = e.pax_extensions().expect("pax") {
                for x in pax.flatten() {
                    if x.key_bytes() == b"SCHILY.xattr.security.capability" {
                        caps.insert(path.clone(), x.value_bytes().to_vec());
                    }
                }
            }
        }
        out.push(caps);
    }
    out
}

/// A file's capabilities (`setcap`, a package that runs it) are kept as BuildKit keeps them:
/// through ADD of an archive, COPY --from and a step that changes the file, in every mode.
#[test]
fn file_capabilities_survive_add_copy_and_run() {
    const DOCKERFILE: &str = "FROM busybox AS base\nADD caps.tar /opt/\n\
        FROM busybox\nCOPY --from=base /opt/capped /copied\nRUN chmod 700 /copied && touch /other\n";
    for mode in modes_and_snapshotters("the file capabilities build") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", DOCKERFILE)]);
        let tar = dir.path().join("ctx/caps.tar");
        fs_err::write(&tar, capability_tar(dir.path())).expect("write caps.tar");
        give(&mode, &[tar]);
        let layout = dir.path().join("image.oci");
        let dest = format!("type=oci,dest={},tar=false", layout.display());
        for target in ["base", ""] {
            let mut args = vec!["-t", "caps:1", "-o", &dest];
            if !target.is_empty() {
                args.extend(["--target", target]);
            }
            let ctx = dir.path().join("ctx");
            args.push(ctx.to_str().expect("utf-8"));
            let out = build(&dir, &mode, &args);
            ok(&out, mode.name());
            let caps = layer_capabilities(&layout);
            let want = |path: &str| BTreeMap::from([(path.to_string(), CAP_NET_RAW.to_vec())]);
            if target == "base" {
                assert_eq!(caps.last(), Some(&want("opt/capped")), "{}: ADD", mode.name());
                continue;
            }
            let n = caps.len();
            assert_eq!(caps[n - 2], want("copied"), "{}: COPY --from", mode.name());
            assert_eq!(caps[n - 1], want("copied"), "{}: the RUN that changed it", mode.name());
        }
    }
}

/// A static program making calls busybox does not: the extended attribute calls on
/// `security.capability` that `setcap`, `getcap` and `cp -a` make, `xattr OP PATH [HEX]`, OP one
/// of `set`, `fset`, `get`, `fget`, `list`, `remove` (it prints the value in hex, the names, or
/// the error's name); `xattr raise /` raises `CAP_SETFCAP` as `setcap` does first (`capget`,
/// `capset`): `ok` or the error; `xattr dgram PATH` binds a datagram socket at PATH and sends
/// itself a datagram there with `sendmsg` (as Go and libuv send them): the text it got.
const CALLS_TOOL: &str = r#"#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
#define CAP "security.capability"
int main(int argc, char **argv) {
    unsigned char v[256];
    char names[1024];
    size_t len = 0;
    long n = -1;
    if (argc < 3) return 2;
    const char *op = argv[1], *p = argv[2];
    for (const char *h = argc > 3 ? argv[3] : ""; h[0] && h[1] && len < sizeof v; h += 2)
        sscanf(h, "%2hhx", &v[len++]);
    if (!strcmp(op, "set")) n = setxattr(p, CAP, v, len, 0);
    else if (!strcmp(op, "fset")) n = fsetxattr(open(p, O_RDONLY), CAP, v, len, 0);
    else if (!strcmp(op, "get")) n = getxattr(p, CAP, v, sizeof v);
    else if (!strcmp(op, "fget")) n = fgetxattr(open(p, O_RDONLY), CAP, v, sizeof v);
    else if (!strcmp(op, "list")) n = listxattr(p, names, sizeof names);
    else if (!strcmp(op, "remove")) n = removexattr(p, CAP);
    else if (!strcmp(op, "raise")) {
        struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct d[2];
        n = syscall(SYS_capget, &h, d);
        if (n == 0) {
            d[0].effective |= 1u << CAP_SETFCAP;
            n = syscall(SYS_capset, &h, d);
        }
        if (n == 0) puts("ok");
    } else if (!strcmp(op, "dgram")) {
        struct sockaddr_un a = {AF_UNIX};
        strncpy(a.sun_path, p, sizeof a.sun_path - 1);
        int s = socket(AF_UNIX, SOCK_DGRAM, 0), c = socket(AF_UNIX, SOCK_DGRAM, 0);
        n = bind(s, (struct sockaddr *)&a, sizeof a);
        char text[] = "datagram by sendmsg";
        struct iovec iov = {text, sizeof text};
        struct msghdr m = {&a, sizeof a, &iov, 1};
        if (n == 0) n = sendmsg(c, &m, 0);
        if (n >= 0) n = recv(s, names, sizeof names, 0);
        if (n >= 0) puts(names);
    }
    if (n < 0) {
        puts(errno == ENODATA ? "ENODATA" : errno == EPERM ? "EPERM" : strerror(errno));
        return 1;
    }
    if (!strcmp(op, "list"))
        for (long i = 0; i < n; i += strlen(names + i) + 1) printf("%s%c", names + i, i + strlen(names + i) + 1 < n ? ' ' : '\n');
    else if (strstr(op, "get")) {
        for (long i = 0; i < n; i++) printf("%02x", v[i]);
        putchar('\n');
    }
    return 0;
}
"#;

/// `setcap` in a step as root, and what root then reads, as the kernel has it (and BuildKit's
/// layer keeps it), in every mode: under ptrace too, where the caller may not set capabilities
/// (the tracer records them, and answers `capget` and `capset` as for root). A v3 value for root
/// 0 reads as v2; `chown` and a write drop them; a later step finds them; a user other than root
/// may not set them, nor raise `CAP_SETFCAP`.
#[test]
fn setcap_in_a_step_is_kept_in_every_mode() {
    const V2: &str = "0100000200200000000000000000000000000000";
    const V3_ROOT_0: &str = "010000030020000000000000000000000000000000000000";
    let dockerfile = format!(
        "FROM busybox\nCOPY xattr /usr/bin/xattr\n\
        RUN set -e; test \"$(xattr raise /)\" = ok; \\\n\
            for f in capped fcapped dropped written removed; do cp /bin/busybox /$f; done; \\\n\
            xattr set /capped {V3_ROOT_0}; xattr fset /fcapped {V2}; xattr set /dropped {V2}; \\\n\
            chown 1:1 /dropped; xattr set /written {V2}; echo >> /written; \\\n\
            xattr set /removed {V2}; xattr remove /removed; \\\n\
            test \"$(xattr get /capped)\" = {V2}; test \"$(xattr fget /fcapped)\" = {V2}; \\\n\
            test \"$(xattr list /capped)\" = security.capability; test \"$(xattr get /written)\" = ENODATA; \\\n\
            test \"$(xattr get /dropped)\" = ENODATA; test \"$(xattr get /removed)\" = ENODATA; \\\n\
            test \"$(xattr remove /removed)\" = ENODATA; test \"$(xattr set /capped 0100)\" = 'Invalid argument'\n\
        RUN test \"$(xattr get /capped)\" = {V2} && touch /later\n\
        USER nobody\n\
        RUN cp /bin/busybox /tmp/mine && test \"$(xattr set /tmp/mine {V2})\" = EPERM && \\\n\
            test \"$(xattr raise /)\" = EPERM\n"
    );
    let tools = tempfile::tempdir().expect("tempdir");
    let Some(tool) = static_calls_tool(tools.path()) else { return };
    let v2: Vec<u8> =
        (0..V2.len()).step_by(2).map(|i| u8::from_str_radix(&V2[i..i + 2], 16).expect("hex")).collect();
    for mode in modes_and_snapshotters("the setcap build") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", &dockerfile)]);
        dir.copy(&mode, &tool, "ctx/xattr");
        let layout = dir.path().join("image.oci");
        let dest = format!("type=oci,dest={},tar=false", layout.display());
        let ctx = dir.path().join("ctx");
        ok(&build(&dir, &mode, &["-o", &dest, ctx.to_str().expect("utf-8")]), mode.name());
        let caps = layer_capabilities(&layout);
        let want = BTreeMap::from([("capped".to_string(), v2.clone()), ("fcapped".to_string(), v2.clone())]);
        let n = caps.len();
        assert_eq!(caps[n - 3], want, "{}: the setcap step's layer", mode.name());
        assert!(caps[n - 2].is_empty() && caps[n - 1].is_empty(), "{}: {caps:?}", mode.name());
    }
}

/// Under ptrace isolation a datagram `sendmsg` to a Unix socket's path reaches the socket the
/// step bound at that path in its root, as in a namespace sandbox.
#[test]
fn sendmsg_reaches_a_socket_path_in_the_root() {
    let tools = tempfile::tempdir().expect("tempdir");
    let Some(tool) = static_calls_tool(tools.path()) else { return };
    let traced_too = |m: Mode| [m.clone(), Mode::Ptrace(Box::new(m))];
    for mode in modes("the sendmsg check").into_iter().flat_map(traced_too) {
        let dir = Dir::new(&mode);
        let df = "FROM busybox\nCOPY xattr /usr/bin/xattr\n\
                  RUN mkdir -p /run/s && got=\"$(xattr dgram /run/s/d)\" && echo \"$got\" && \\\n\
                  test \"$got\" = 'datagram by sendmsg' && test -S /run/s/d\n";
        dir.write(&mode, &[("ctx/Dockerfile", df)]);
        dir.copy(&mode, &tool, "ctx/xattr");
        ok(&build(&dir, &mode, &[dir.path().join("ctx").to_str().expect("utf-8")]), mode.name());
    }
}

/// A 32-bit x86 (i386) program, and an x86-64 one making an x32 call: the namespace modes run
/// them (the kernel serves their calls); ptrace isolation, which serves x86-64's calls only, stops
/// each at its first such call with `SIGSYS` and says why in the step's log, once a program, with
/// its seccomp filter (which traps those calls) and without it (every call stopped and looked at).
#[test]
fn programs_of_another_abi_run_or_are_stopped_saying_why() {
    let tools = tempfile::tempdir().expect("tempdir");
    let Some(i386) = assembled(tools.path(), "i386", I386_HELLO, &["--32"], &["-m", "elf_i386"]) else {
        return;
    };
    let Some(x32) = assembled(tools.path(), "x32", X32_WRITE, &[], &[]) else { return };
    let df = "FROM busybox\nCOPY i386 x32 /usr/bin/\n\
              RUN i386; echo \"i386 $?\"; i386; echo \"again $?\"; x32; echo \"x32 $?\"\n";
    let traced_too = |m: Mode| [m.clone(), Mode::Ptrace(Box::new(m))];
    for mode in modes("the programs of other ABIs").into_iter().flat_map(traced_too) {
        let filters: &[&[&str]] =
            if matches!(mode, Mode::Ptrace(_)) { &[&[], &["HAKO_PTRACE_NO_FILTER=1"]] } else { &[&[]] };
        for env in filters {
            let what = format!("{} {env:?}", mode.name());
            let dir = Dir::new(&mode);
            dir.write(&mode, &[("ctx/Dockerfile", df)]);
            dir.copy(&mode, &i386, "ctx/i386");
            dir.copy(&mode, &x32, "ctx/x32");
            let ctx = dir.path().join("ctx");
            let out = build_command_with(&dir, &mode, env, &[ctx.to_str().expect("utf-8")])
                .output()
                .expect("run hako");
            ok(&out, &what);
            let log = text(&out.stderr);
            let told = |what: &str| {
                format!(
                    "hako: /usr/bin/{what}; --isolation=ptrace serves x86-64 system calls only, so it was stopped (SIGSYS)"
                )
            };
            let (i386_told, x32_told) =
                (told("i386 is a 32-bit x86 (i386) program"), told("x32 made an x32 system call"));
            if matches!(mode, Mode::Ptrace(_)) {
                for line in [" i386 159\n", " again 159\n", " x32 159\n"] {
                    assert!(log.contains(line), "{what}: {line:?} (killed by SIGSYS):\n{log}");
                }
                assert_eq!(log.matches(&i386_told).count(), 1, "{what}: told once:\n{log}");
                assert_eq!(log.matches(&x32_told).count(), 1, "{what}: told once:\n{log}");
                assert!(!log.contains("hello from i386"), "{what}: the i386 program did not run:\n{log}");
            } else {
                for line in [" hello from i386\n", " i386 0\n", " x32 0\n"] {
                    assert!(log.contains(line), "{what}: {line:?}:\n{log}");
                }
                assert!(!log.contains("hako: /usr/bin/"), "{what}:\n{log}");
            }
        }
    }
}

/// A static i386 program writing `hello from i386` through `int 0x80`.
const I386_HELLO: &str = "
.globl _start
.text
_start:
  movl $4, %eax
  movl $1, %ebx
  movl $msg, %ecx
  movl $16, %edx
  int $0x80
  movl $1, %eax
  xorl %ebx, %ebx
  int $0x80
.data
msg: .ascii \"hello from i386\\n\"
";

/// A static x86-64 program making one x32 call (`write`, whatever the kernel answers), then
/// exiting 0.
const X32_WRITE: &str = "
.globl _start
.text
_start:
  movl $0x40000001, %eax
  movl $1, %edi
  leaq msg(%rip), %rsi
  movl $4, %edx
  syscall
  movl $60, %eax
  xorl %edi, %edi
  syscall
.data
msg: .ascii \"x32\\n\"
";

/// `source` assembled and linked into program `name` in `dir` with binutils' `as` and `ld` (part
/// of the C toolchain hako's build needs), or a printed skip.
fn assembled(dir: &Path, name: &str, source: &str, as_args: &[&str], ld_args: &[&str]) -> Option<PathBuf> {
    let (src, obj, bin) = (dir.join(format!("{name}.s")), dir.join(format!("{name}.o")), dir.join(name));
    fs_err::write(&src, source).expect("write the source");
    let mut as_cmd = Command::new("as");
    as_cmd.args(as_args).arg("-o").arg(&obj).arg(&src);
    let mut ld_cmd = Command::new("ld");
    ld_cmd.args(ld_args).arg("-o").arg(&bin).arg(&obj);
    let what = format!("the {name} program");
    (built(&what, "as (binutils)", &mut as_cmd) && built(&what, "ld (binutils)", &mut ld_cmd)).then_some(bin)
}

/// Runs `cmd`, a toolchain's step building what a check needs; false, with a printed skip for
/// `what`, when `tool` is missing or fails.
fn built(what: &str, tool: &str, cmd: &mut Command) -> bool {
    match cmd.output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            skip(&format!("{what}: {tool} failed: {}", text(&o.stderr)));
            false
        }
        Err(e) => {
            skip(&format!("{what}: no {tool}: {e}"));
            false
        }
    }
}

/// [`CALLS_TOOL`] built statically in `dir` with the machine's C compiler (any machine that
/// builds hako has one), or a printed skip.
fn static_calls_tool(dir: &Path) -> Option<PathBuf> {
    let (src, bin) = (dir.join("xattr.c"), dir.join("xattr"));
    fs_err::write(&src, CALLS_TOOL).expect("write xattr.c");
    let mut cc = Command::new("cc");
    cc.arg("-static").arg("-Os").arg("-o").arg(&bin).arg(&src);
    built("the setcap build", "cc -static (a C compiler)", &mut cc).then_some(bin)
}

/// [`modes`], each again with the copy snapshotter: the modes whose steps run in namespaces.
fn namespace_modes(what: &str) -> Vec<Mode> {
    let mut v = modes(what);
    v.extend(v.clone().into_iter().map(|m| Mode::Copy(Box::new(m))));
    v
}

/// Builds `dockerfile` in `mode` (with `args`) into a local output, checking that it passed;
/// returns the directory (kept alive by the caller) and reads of files of the output.
fn build_local(mode: &Mode, dockerfile: &str, args: &[&str]) -> (Dir, impl Fn(&str) -> String) {
    let dir = Dir::new(mode);
    dir.write(mode, &[("ctx/Dockerfile", dockerfile)]);
    let out_dir = dir.path().join("out");
    let dest = format!("type=local,dest={}", out_dir.display());
    let ctx = dir.path().join("ctx");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", &dest, ctx.to_str().expect("utf-8")]);
    ok(&build(&dir, mode, &all), mode.name());
    (dir, move |p: &str| fs_err::read_to_string(out_dir.join(p)).expect(p))
}

/// Steps in namespace isolation run under Docker's default seccomp profile, as in docker build:
/// a new user namespace is refused, `no_new_privs` stays off (setuid programs work), and the
/// capability kept to install the filter is gone, for root and for a USER alike. Chroot and ptrace
/// steps are left to the container they run in.
#[test]
fn steps_run_under_dockers_seccomp_profile() {
    const DOCKERFILE: &str = "FROM busybox\n\
        RUN grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd):' /proc/self/status > /status; \\\n\
            (unshare -U true 2>/dev/null && echo allowed || echo refused) > /unshare; \\\n\
            chroot / true && echo chroot > /chroot\n\
        USER nobody\n\
        RUN grep -E '^(Seccomp|CapEff):' /proc/self/status > /tmp/nobody\n";
    for mode in namespace_modes("the seccomp build") {
        let (_dir, read) = build_local(&mode, DOCKERFILE, &[]);
        // Docker's default capabilities, CAP_SYS_ADMIN not among them.
        assert_eq!(
            read("status"),
            "CapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t0\nSeccomp:\t2\n",
            "{}",
            mode.name()
        );
        assert_eq!(read("unshare"), "refused\n", "{}: unshare -U", mode.name());
        assert_eq!(read("chroot"), "chroot\n", "{}: chroot (CAP_SYS_CHROOT) is allowed", mode.name());
        assert_eq!(read("tmp/nobody"), "CapEff:\t0000000000000000\nSeccomp:\t2\n", "{}", mode.name());
    }
}

/// The system a step sees is mounted as BuildKit mounts it: everything under /sys read-only,
/// the host's cgroup hierarchies and tracefs that come with it too (writable, a root step could
/// move itself out of its cgroup or freeze the host's); /proc without setuid, devices or exec;
/// /etc/hosts and /etc/resolv.conf read-only.
#[test]
fn steps_see_sys_proc_and_etc_mounted_as_in_buildkit() {
    const DOCKERFILE: &str = "FROM busybox\n\
        RUN awk '$2 ~ /^\\/sys/ && $4 !~ /^ro(,|$)/ { print $2 }' /proc/mounts > /sys-rw; \\\n\
            awk '$2 == \"/proc\" { print $4 }' /proc/mounts > /proc-opts; \\\n\
            for f in /etc/hosts /etc/resolv.conf; do (echo x >> $f) 2>/dev/null && echo $f writable; done > /etc-rw; \\\n\
            awk '$2 ~ /^\\/sys/ { n++ } END { print n }' /proc/mounts > /sys-mounts; \\\n\
            awk '$2 == \"/dev/mqueue\" { print $3, $4 }' /proc/mounts > /mqueue\n";
    for mode in namespace_modes("the system mounts build") {
        let (_dir, read) = build_local(&mode, DOCKERFILE, &[]);
        assert_eq!(
            read("sys-rw"),
            "",
            "{}: writable under /sys ({} mounts there)",
            mode.name(),
            read("sys-mounts")
        );
        let proc = read("proc-opts");
        for o in ["nosuid", "nodev", "noexec"] {
            assert!(proc.split(',').any(|p| p.trim() == o), "{}: /proc {proc}", mode.name());
        }
        assert_eq!(read("etc-rw"), "", "{}", mode.name());
        // POSIX message queues, as BuildKit's steps have them.
        let mqueue = read("mqueue");
        assert!(mqueue.starts_with("mqueue "), "{}: /dev/mqueue is {mqueue:?}", mode.name());
        for o in ["nosuid", "nodev", "noexec"] {
            assert!(mqueue.contains(o), "{}: /dev/mqueue {mqueue}", mode.name());
        }
    }
}

/// A 32-bit x86 program, hand-assembled: writes "i386\n", then exits with 100 × the errno of
/// `unshare(CLONE_NEWUSER)` plus the errno of `clone3(NULL, 0)`, all through `int 0x80`. Made with
/// `as --32` and `ld -m elf_i386 -n -s` (section headers dropped) from:
///
/// ```text
/// _start: movl $4, %eax;   movl $1, %ebx; movl $msg, %ecx; movl $5, %edx; int $0x80  # write
///         movl $310, %eax; movl $0x10000000, %ebx; int $0x80                          # unshare
///         negl %eax;       imull $100, %eax, %esi
///         movl $435, %eax; xorl %ebx, %ebx; xorl %ecx, %ecx; int $0x80               # clone3
///         negl %eax;       addl %esi, %eax; movl %eax, %ebx; movl $1, %eax; int $0x80 # exit
/// msg:    .ascii "i386\n"
/// ```
#[cfg(target_arch = "x86_64")]
const I386_PROGRAM: [u8; 152] = [
    0x7f, 0x45, 0x4c, 0x46, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
    0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x54, 0x80, 0x04, 0x08, 0x34, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x34, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x54, 0x00, 0x00, 0x00, 0x54, 0x80, 0x04, 0x08, 0x54, 0x80, 0x04, 0x08,
    0x44, 0x00, 0x00, 0x00, 0x44, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xb8,
    0x04, 0x00, 0x00, 0x00, 0xbb, 0x01, 0x00, 0x00, 0x00, 0xb9, 0x93, 0x80, 0x04, 0x08, 0xba, 0x05, 0x00,
    0x00, 0x00, 0xcd, 0x80, 0xb8, 0x36, 0x01, 0x00, 0x00, 0xbb, 0x00, 0x00, 0x00, 0x10, 0xcd, 0x80, 0xf7,
    0xd8, 0x6b, 0xf0, 0x64, 0xb8, 0xb3, 0x01, 0x00, 0x00, 0x31, 0xdb, 0x31, 0xc9, 0xcd, 0x80, 0xf7, 0xd8,
    0x01, 0xf0, 0x89, 0xc3, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xcd, 0x80, 0x69, 0x33, 0x38, 0x36, 0x0a,
];

/// 32-bit programs (i386 packages, old toolchains) run in a step as in docker build, under the same
/// profile: a new user namespace is refused and `clone3` fails with `ENOSYS`, where without a
/// filter the first succeeds and the second fails with `EINVAL`. Before, their first call killed
/// them (`SIGSYS`).
#[cfg(target_arch = "x86_64")]
#[test]
fn thirty_two_bit_programs_run_under_the_same_profile() {
    let host = tempfile::tempdir().expect("tempdir");
    let exe = host.path().join("i386");
    fs_err::write(&exe, I386_PROGRAM).expect("write");
    fs_err::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    match std::process::Command::new(&exe).output() {
        Ok(o) if o.stdout == b"i386\n" => {}
        other => {
            eprintln!("skipped: this kernel does not run 32-bit x86 programs ({other:?})");
            return;
        }
    }
    let printf: String = I386_PROGRAM.iter().map(|b| format!("\\{b:03o}")).collect();
    let dockerfile = format!(
        "FROM busybox\nRUN printf '{printf}' > /i386 && chmod +x /i386 && /i386 > /out; echo $? > /status\n"
    );
    for mode in namespace_modes("the 32-bit program build") {
        let (_dir, read) = build_local(&mode, &dockerfile, &[]);
        assert_eq!(read("out"), "i386\n", "{}: the program ran", mode.name());
        assert_eq!(read("status"), "138\n", "{}: EPERM for unshare, ENOSYS for clone3", mode.name());
    }
}

/// `RUN --security=insecure` (with `--allow security.insecure`) runs privileged, as BuildKit's
/// insecure mode: every capability, no seccomp filter, mounts allowed, /proc/sys writable. The
/// step after it is sandboxed again.
#[test]
fn an_insecure_step_runs_privileged_and_the_next_is_sandboxed() {
    const DOCKERFILE: &str = "FROM busybox\n\
        RUN --security=insecure grep -E '^(CapEff|Seccomp):' /proc/self/status > /status; \\\n\
            mount -t tmpfs none /tmp && echo mounted > /mount; \\\n\
            if grep ' /proc/sys ' /proc/mounts | grep -q ' ro,'; then echo ro; else echo rw; fi > /procsys\n\
        RUN grep -E '^(CapEff|Seccomp):' /proc/self/status > /status2\n";
    for mode in modes("the insecure build") {
        let (_dir, read) = build_local(&mode, DOCKERFILE, &["--allow", "security.insecure"]);
        let status = read("status");
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:\t"))
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .expect("CapEff");
        let (sys_admin, net_admin) = (1u64 << 21, 1u64 << 12);
        assert_eq!(cap_eff & (sys_admin | net_admin), sys_admin | net_admin, "{}: {status}", mode.name());
        assert!(status.ends_with("Seccomp:\t0\n"), "{}: no filter: {status}", mode.name());
        assert_eq!(read("mount"), "mounted\n", "{}", mode.name());
        assert_eq!(read("procsys"), "rw\n", "{}", mode.name());
        assert_eq!(
            read("status2"),
            "CapEff:\t00000000a80425fb\nSeccomp:\t2\n",
            "{}: sandboxed again",
            mode.name()
        );
    }
}

/// A step's supplementary groups are BuildKit's: the USER's groups in the image's /etc/group and
/// its primary group (containerd and BuildKit add it since CVE-2023-25173), never the groups of
/// whoever runs hako (the rootless user's own group maps to 0). Lines as dockerd 26.1's BuildKit
/// printed them for the same Dockerfile.
#[test]
fn step_groups_are_buildkits_and_none_of_the_callers() {
    const DOCKERFILE: &str = "FROM busybox\nUSER nobody\n\
        RUN id -G > /tmp/groups && grep Groups /proc/self/status >> /tmp/groups\n\
        USER 1000\nRUN grep Groups /proc/self/status > /tmp/app\n\
        USER app:staff\nRUN grep Groups /proc/self/status > /tmp/app-staff\n\
        USER root\nRUN id -G > /groups && grep Groups /proc/self/status >> /groups\n";
    for mode in namespace_modes("the supplementary groups build") {
        let (_dir, read) = build_local(&mode, DOCKERFILE, &[]);
        assert_eq!(read("tmp/groups"), "65534\nGroups:\t65534 \n", "{}: nobody's groups", mode.name());
        // app (1000) is a member of staff (50).
        assert_eq!(read("tmp/app"), "Groups:\t50 1000 \n", "{}: USER 1000", mode.name());
        assert_eq!(read("tmp/app-staff"), "Groups:\t50 \n", "{}: USER app:staff", mode.name());
        // busybox's /etc/group lists no member: root has only its primary group.
        assert_eq!(read("groups"), "0\nGroups:\t0 \n", "{}: root's groups", mode.name());
    }
}

/// `podman run` of the built image prints the CMD's output, when podman can run containers here.
fn podman_runs(dir: &Dir, mode: &Mode, archive: &Path) {
    if !matches!(mode, Mode::Root | Mode::Copy(_)) || !matches!(mode.user(), Mode::Root) {
        return;
    }
    let Some(run) =
        crate::common::podman_load_and_run(dir.path(), archive, "tree:1", "the RUN tree podman check")
    else {
        return;
    };
    assert_eq!(text(&run.stdout), "1000:1000\n");
}

const SECRET: &str = "s3cr3t-VALUE-42";

const MOUNTS_DOCKERFILE: &str = r#"FROM busybox AS src
RUN echo from-stage > /stagefile && mkdir /seeddir && echo seed-content > /seeddir/seed

FROM busybox
RUN --mount=type=bind,source=ctxdir,target=/ctx cat /ctx/a.txt > /from-ctx && test ! -e /ctx/hidden.txt && \
    for c in "touch /ctx/a.txt" "mkdir /ctx/d" "rm /ctx/a.txt" "chmod 600 /ctx/a.txt"; do if sh -c "$c" 2>/dev/null; then echo "$c"; fi; done > /ro-writes
RUN --mount=type=bind,from=src,source=/stagefile,target=/sf cat /sf > /from-stage
RUN --mount=type=bind,source=ctxdir,target=/ctx,rw echo scribble > /ctx/new && test -f /ctx/new && echo rw-ok > /rw-ok
RUN --mount=type=cache,id=counter,target=/cache,uid=1000,mode=0750 \
    n=$(cat /cache/count 2>/dev/null || echo 0); echo $n > /seen; echo $((n+1)) > /cache/count; stat -c '%a %u' /cache > /cache-stat
RUN --mount=type=cache,id=seeded,target=/seeded,from=src,source=/seeddir \
    cat /seeded/seed > /seeded-out && echo more >> /seeded/seed
RUN --mount=type=tmpfs,target=/scratch,size=1m echo t > /scratch/t && df -k /scratch | tail -1 | awk '{print $2}' > /tmpfs-kb
RUN --mount=type=secret,id=tok,required=true \
    echo "$(wc -c < /run/secrets/tok) $(head -c 6 /run/secrets/tok)" > /secret-file && stat -c '%a %u' /run/secrets/tok > /secret-stat && \
    { (echo x >> /run/secrets/tok) 2>/dev/null && echo "appended" || true; } > /secret-writes
RUN --mount=type=secret,id=tok,env=TOKEN,required=true echo "${#TOKEN} ${TOKEN%%-*}" > /secret-env
RUN --mount=type=secret,id=absent echo optional-secret-ok > /optional
RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK" > /ssh-sock
RUN --network=none grep -c : /proc/net/dev > /netdev-none && cat /sys/class/net/lo/operstate > /lo-state
RUN grep -c : /proc/net/dev > /netdev-host
"#;

/// Every mount type end to end, `--network=none`, and a secret that is readable in its step and
/// absent from every blob, the output and the config afterwards.
#[test]
fn every_mount_type_works_and_secrets_leave_no_trace() {
    for mode in modes_and_snapshotters("the RUN mount checks") {
        let dir = Dir::new(&mode);
        // chroot isolation has no namespaces and no mounts: no ssh socket, no private network,
        // no /proc, and a tmpfs is an empty directory.
        let chroot = mode.no_namespaces();
        let dockerfile: String = MOUNTS_DOCKERFILE
            .lines()
            .filter(|l| {
                !chroot || !(l.contains("type=ssh") || l.contains("/proc/net/dev") || l.contains("tmpfs"))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        dir.write(
            &mode,
            &[
                ("ctx/Dockerfile", &dockerfile),
                ("ctx/ctxdir/a.txt", "from-context\n"),
                // .dockerignore hides files from bind mounts too, as in BuildKit.
                ("ctx/ctxdir/hidden.txt", "ignored\n"),
                ("ctx/.dockerignore", "ctxdir/hidden.txt\n"),
                ("secret.txt", SECRET),
            ],
        );
        let sock = dir.path().join("agent.sock");
        let _agent = std::os::unix::net::UnixListener::bind(&sock).expect("agent socket");
        let ctx = dir.path().join("ctx");
        let secret = format!("id=tok,src={}", dir.path().join("secret.txt").display());
        let ssh = format!("default={}", sock.display());
        let outdir = |n: u32| dir.path().join(format!("out{n}"));
        for n in 1..=2 {
            let dest = format!("type=local,dest={}", outdir(n).display());
            let mut args =
                vec!["--secret", &secret, "--ssh", &ssh, "-o", &dest, ctx.to_str().expect("utf-8")];
            if n == 2 {
                // The second build runs its steps again (else they are cache hits) to see the
                // cache mounts kept from the first.
                args.push("--no-cache");
            }
            let out = build(&dir, &mode, &args);
            ok(&out, &format!("{} build {n}", mode.name()));
            assert!(!text(&out.stderr).contains(SECRET), "the secret is not in the build log");
        }
        let read = |n: u32, f: &str| fs_err::read_to_string(outdir(n).join(f)).expect(f).trim().to_string();
        let m = mode.name();
        assert_eq!(read(1, "from-ctx"), "from-context", "{m}: bind from the context");
        assert_eq!(read(1, "from-stage"), "from-stage", "{m}: bind from a stage");
        assert_eq!(read(1, "rw-ok"), "rw-ok");
        // Read-only mounts refuse writes (EROFS), the tracer refusing them in their place under
        // ptrace; chroot isolation, with neither mounts nor a tracer, cannot.
        if !matches!(mode, Mode::Chroot) {
            assert_eq!(read(1, "ro-writes"), "", "{m}: writes to a read-only bind mount succeeded");
            assert_eq!(read(1, "secret-writes"), "", "{m}: a write to a secret succeeded");
        }
        assert!(!ctx.join("ctxdir/new").exists(), "{m}: writes to an rw bind are discarded");
        assert_eq!(read(1, "seen"), "0", "{m}: a new cache starts empty");
        assert_eq!(read(2, "seen"), "1", "{m}: the cache persists across builds");
        assert_eq!(read(1, "cache-stat"), "750 1000", "{m}: cache mode and uid");
        assert_eq!(read(1, "seeded-out"), "seed-content", "{m}: a new cache starts as its from=/source=");
        assert_eq!(read(2, "seeded-out"), "seed-content\nmore", "{m}: and is not seeded again");
        if !chroot {
            assert_eq!(read(1, "tmpfs-kb"), "1024", "{m}: tmpfs size");
        }
        assert_eq!(read(1, "secret-stat"), "400 0", "{m}: secret file mode and owner");
        assert_eq!(read(1, "secret-file"), "15 s3cr3t", "{m}: the secret file is readable in its step");
        assert_eq!(read(1, "secret-env"), "15 s3cr3t", "{m}: the secret as an environment variable");
        assert_eq!(read(1, "optional"), "optional-secret-ok", "{m}: a missing optional secret is no error");
        if !chroot {
            assert_eq!(read(1, "ssh-sock"), "/run/buildkit/ssh_agent.0");
            assert_eq!(read(1, "netdev-none"), "1", "{m}: --network=none has only loopback");
            assert_eq!(read(1, "lo-state"), "unknown", "{m}: loopback is up (operstate of lo reads unknown)");
            let host_ifaces: usize = read(1, "netdev-host").parse().expect("count");
            let netdev = fs_err::read_to_string("/proc/net/dev").expect("netdev");
            let here = netdev.lines().filter(|l| l.contains(':')).count();
            assert_eq!(host_ifaces, here, "{m}: the default network is the host's");
        }
        for gone in ["ctx", "sf", "cache", "scratch", "run", "ctxdir", "seeded", "seeddir"] {
            assert!(!outdir(1).join(gone).exists(), "{m}: mount target /{gone} is not in the image");
        }
        // The secret value appears in no blob (layers decompressed), output file or config.
        let store = dir.path().join("store");
        for blob in fs_err::read_dir(store.join("blobs/sha256")).expect("blobs") {
            let path = blob.expect("blob").path();
            let raw = fs_err::read(&path).expect("blob");
            let mut plain = Vec::new();
            use std::io::Read;
            if flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut plain).is_err() {
                plain = raw;
            }
            assert!(!contains(&plain, SECRET.as_bytes()), "{m}: secret found in blob {}", path.display());
        }
        for n in 1..=2 {
            for (path, _) in tree(&outdir(n)) {
                let p = outdir(n).join(&path);
                if p.is_file() {
                    let body = fs_err::read(&p).expect("read");
                    assert!(!contains(&body, SECRET.as_bytes()), "{m}: secret found in {path}");
                }
            }
        }
        let sandbox = store.join("sandbox");
        let o = Command::new("grep").args(["-r", "-l", SECRET]).arg(&sandbox).output().expect("grep");
        assert!(o.stdout.is_empty(), "{m}: secret left in the sandbox tree: {}", text(&o.stdout));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A failing step, a missing shell, a bad user and a bad mount: each a clear error naming the line.
#[test]
fn run_errors_name_the_line() {
    let cases: &[(&str, &[&str], i32)] = &[
        (
            "FROM busybox\nRUN echo first; echo second >&2; exit 7\n",
            &[
                "Dockerfile:2:1: RUN failed (exit 7): echo first; echo second >&2; exit 7",
                "| first",
                "| second",
            ],
            1,
        ),
        ("FROM scratch\nRUN true\n", &["Dockerfile:2:1: RUN: executable '/bin/sh' not found"], 1),
        (
            "FROM busybox\nUSER nobody2\nRUN true\n",
            &["Dockerfile:3:1: RUN as USER nobody2: unable to find user \"nobody2\""],
            1,
        ),
        (
            "FROM busybox\nRUN --mount=type=bind,source=nope,target=/x true\n",
            &["Dockerfile:2:1: RUN: --mount source \"nope\" does not exist"],
            1,
        ),
        ("FROM busybox\nRUN --mount=type=cache true\n", &["Dockerfile:2", "invalid mount target \"/\""], 1),
        (
            "FROM busybox\nRUN --mount=type=secret,id=x,required=true true\n",
            &["Dockerfile:2:1: secret \"x\" is required but was not given", "--secret id=x,src=FILE"],
            1,
        ),
    ];
    for mode in modes("the RUN error checks") {
        let dir = Dir::new(&mode);
        for (dockerfile, wants, code) in cases {
            dir.write(&mode, &[("ctx/Dockerfile", dockerfile)]);
            let out = build(&dir, &mode, &[dir.path().join("ctx").to_str().expect("utf-8")]);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(*code), "{}: {dockerfile}: {err}", mode.name());
            for want in *wants {
                assert!(err.contains(want), "{}: {dockerfile}: expected {want:?} in\n{err}", mode.name());
            }
        }
        let tmp = dir.path().join("store/tmp");
        assert_eq!(fs_err::read_dir(&tmp).expect("tmp").count(), 0, "failed steps leave no temporary files");
        let runs = dir.path().join("store/sandbox").join(mode.sandbox_dir());
        assert_eq!(fs_err::read_dir(runs.join("runs")).expect("runs").count(), 0, "no step directories left");
    }
}

/// kill -9 of the builder mid-step kills the step too (nothing keeps running), and the next build
/// on the same store works and sweeps what the killed one left.
#[test]
fn kill_9_mid_step_leaves_nothing_running() {
    for mode in modes("the kill -9 during RUN check") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", "FROM busybox\nRUN echo started; sleep 4242\n")]);
        let mut child = Running(start_step(&dir, &mode, &dir.path().join("ctx")));
        // `started` comes before the shell starts sleep: kill once it runs, else the check
        // below could see no sleeper yet and pass, or one still starting and fail (as under load).
        wait_until(10, || sleepers("4242") > 0);
        assert_eq!(sleepers("4242"), 1, "{}: the step runs sleep", mode.name());
        kill_builder(&mut child.0);
        wait_until(10, || sleepers("4242") == 0);
        assert_eq!(sleepers("4242"), 0, "{}: the step died with the builder", mode.name());
        dir.write(&mode, &[("ctx/Dockerfile", "FROM busybox\nRUN echo again > /again\n")]);
        let out = build(&dir, &mode, &[dir.path().join("ctx").to_str().expect("utf-8")]);
        ok(&out, &format!("{}: a build after kill -9", mode.name()));
        let runs = dir.path().join("store/sandbox").join(mode.sandbox_dir());
        assert_eq!(fs_err::read_dir(runs.join("runs")).expect("runs").count(), 0, "leftovers swept");
    }
}

/// What a step leaves running when its command ends, a daemon it started (`setsid`, detached) or
/// a background job still holding its output, is killed then, as the end of the container's pid
/// namespace kills it in BuildKit: the build neither waits for it nor leaves it behind, in every
/// mode (chroot isolation, with no pid namespace, finds them by their root).
#[test]
fn what_a_step_leaves_running_ends_with_it() {
    let df =
        "FROM busybox\nRUN (setsid sleep 4801 >/dev/null 2>&1 &); sleep 4802 & echo started\nRUN echo next\n";
    for mode in modes_and_snapshotters("the step's leftovers") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", df)]);
        let ctx = dir.path().join("ctx");
        let child = build_command(&dir, &mode, &[ctx.to_str().expect("utf-8")])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut running = Running(child);
        let ended = wait_until(60, || running.0.try_wait().expect("wait").is_some());
        assert!(ended, "{}: the build waits for what the step left", mode.name());
        let mut log = String::new();
        std::io::Read::read_to_string(running.0.stderr.as_mut().expect("stderr"), &mut log).expect("read");
        assert!(running.0.wait().expect("wait").success(), "{}:\n{log}", mode.name());
        assert!(log.contains(" next\n"), "{}:\n{log}", mode.name());
        for marker in ["4801", "4802"] {
            let left = sleepers(marker);
            assert_eq!(left, 0, "{}: sleep {marker} left running", mode.name());
        }
    }
}

/// Builds `dockerfile` (its context holding only it) with `args` in each of `modes`, checking
/// that the build passed and that a step printed each of `lines`; returns each mode's log.
fn every_log_says(modes: Vec<Mode>, dockerfile: &str, args: &[&str], lines: &[&str]) -> Vec<(Mode, String)> {
    let mut logs = Vec::new();
    for mode in modes {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", dockerfile)]);
        let ctx = dir.path().join("ctx");
        let mut all = args.to_vec();
        all.push(ctx.to_str().expect("utf-8"));
        let out = build(&dir, &mode, &all);
        ok(&out, mode.name());
        let log = text(&out.stderr);
        for line in lines {
            assert!(log.contains(&format!(" {line}\n")), "{}: {line:?}:\n{log}", mode.name());
        }
        logs.push((mode, log));
    }
    logs
}

/// The kernel names a process after the path its exec named (`/proc/PID/comm`, which `pgrep`,
/// `pidof`, `killall` and `start-stop-daemon --name` match): a busybox applet by its link, a
/// script by itself, not by its interpreter, in every mode with a `/proc` (under ptrace, where
/// the kernel runs what the tracer rewrote the exec to, through a link of that name).
#[test]
fn processes_are_named_as_their_exec_named_them() {
    // A name no process of the machine has: steps share its /proc under ptrace.
    const DOCKERFILE: &str = r#"FROM busybox
RUN printf '#!/bin/sh\ncat /proc/$$/comm\nsleep "$1"\n' > /usr/bin/named-4821 && chmod 755 /usr/bin/named-4821
RUN echo "self: $(cat /proc/self/comm)"; echo "script: $(named-4821 0)"; \
    echo "status: $(grep -E '^(Uid|Gid|CapEff):' /proc/self/status | tr -s '\t\n' '  ')"; \
    named-4821 3 >/dev/null & sleep 0.3; echo "pidof: $(pidof named-4821 | wc -w)"; kill $!
"#;
    // Chroot steps have no /proc.
    let modes = modes_and_snapshotters("process names").into_iter().filter(|m| !matches!(m, Mode::Chroot));
    let status = "status: Uid: 0 0 0 0 Gid: 0 0 0 0 CapEff: 00000000a80425fb ";
    every_log_says(
        modes.collect(),
        DOCKERFILE,
        &[],
        &["self: cat", "script: named-4821", "pidof: 1", status],
    );
}

/// A dynamic program's command line (`/proc/PID/cmdline`, what `ps aux` and `pgrep -f` read) is
/// the one the step gave it, in every mode with a /proc: under ptrace, where the kernel runs the
/// program through its loader, the tracer shows it without the loader's own arguments.
#[test]
fn a_programs_command_line_is_as_the_step_gave_it() {
    let Some(base) = debian_base() else { return };
    const DOCKERFILE: &str = r#"FROM debian
RUN echo "self: $(cat /proc/self/cmdline | tr '\0' ' ')"; sleep 5 & sleep 0.3; \
    echo "other: $(tr '\0' ' ' < /proc/$!/cmdline)"; kill $!
"#;
    let debian = format!("debian=oci-layout://{}:bookworm", base.display());
    // Chroot steps have no /proc; the copy snapshotter changes nothing here, slowly on Debian.
    let modes = modes_and_snapshotters("command lines")
        .into_iter()
        .filter(|m| !matches!(m, Mode::Chroot | Mode::Copy(_)));
    every_log_says(
        modes.collect(),
        DOCKERFILE,
        &["--build-context", &debian],
        &["self: cat /proc/self/cmdline ", "other: sleep 5 "],
    );
}

/// Root may chmod what a container's own mounts hold (`chmod 1777 /dev/shm`, in Dockerfiles for
/// browsers), in every mode with a /dev of the machine's or its own: under ptrace, where it is
/// the machine's, the chmod succeeds and changes nothing, as far as any layer goes.
#[test]
fn root_may_chmod_dev_shm() {
    let modes =
        modes_and_snapshotters("chmod of /dev/shm").into_iter().filter(|m| !matches!(m, Mode::Chroot));
    every_log_says(
        modes.collect(),
        "FROM busybox\nRUN chmod 1777 /dev/shm && echo shm-chmod-ok\n",
        &[],
        &["shm-chmod-ok"],
    );
}

/// A step's non-root `USER` is refused what the image's owners and modes refuse it, as the
/// kernel refuses it in BuildKit, in every mode: under ptrace, where the machine's user owns
/// every file, the tracer checks the recorded owners and modes in the kernel's place.
#[test]
fn a_user_is_refused_what_the_images_modes_refuse_in_every_mode() {
    const DOCKERFILE: &str = r#"FROM busybox
RUN mkdir -p /opt/shared /opt/app /secret && chmod 1777 /opt/shared && \
    touch /opt/shared/roots /opt/ro && chmod 666 /opt/shared/roots && chown app /opt/app && \
    echo s > /secret/f && chmod 700 /secret && printf '#!/bin/sh\n' > /opt/root-only && chmod 700 /opt/root-only && \
    echo "g9:x:9000:app" >> /etc/group && echo "g5:x:5000:app" >> /etc/group
USER app
RUN echo "groups: $(id -G)"; sh -c 'echo x > /usr' 2>&1 | sed 's/^/eisdir: /'
RUN for c in "touch /usr/x" "mkdir /opt/x" "cat /secret/f" "ls /secret" "stat /secret/f" "cd /secret" \
      "rm -f /opt/shared/roots" "touch /opt/app/mine" "chown root /opt/app/mine" "chgrp app /opt/app/mine" \
      "chmod 644 /etc/passwd" "touch /opt/ro" "test -w /usr" "test -w /opt/app" "mv /opt/app/mine /opt/mine" \
      "rm /etc/group" "/opt/root-only" "ls /root" "echo hi >> /opt/shared/roots" "ln -s x /opt/app/l" \
      "mkdir -p /opt/app/deep/er" "mknod /opt/app/null c 1 3" "ln /opt/ro /opt/app/hard" \
      "ln /opt/app/mine /opt/app/mine2"; do \
      if sh -c "$c" 2>/dev/null; then echo "allowed: $c"; else echo "refused: $c"; fi; done
RUN stat -c 'root dir: %u:%g' /
USER 4321
RUN echo "unnamed home: $HOME"
USER root
RUN stat -c 'made: %n %u:%g %a' /opt/app/mine /opt/app/l
"#;
    const EXPECTED: &[&str] = &[
        "refused: touch /usr/x",
        "refused: mkdir /opt/x",
        "refused: cat /secret/f",
        "refused: ls /secret",
        "refused: stat /secret/f",
        "refused: cd /secret",
        "refused: rm -f /opt/shared/roots",
        "allowed: touch /opt/app/mine",
        "refused: chown root /opt/app/mine",
        "allowed: chgrp app /opt/app/mine",
        "refused: chmod 644 /etc/passwd",
        "refused: touch /opt/ro",
        "refused: test -w /usr",
        "allowed: test -w /opt/app",
        "refused: mv /opt/app/mine /opt/mine",
        "refused: rm /etc/group",
        "refused: /opt/root-only",
        "refused: ls /root",
        "allowed: echo hi >> /opt/shared/roots",
        "allowed: ln -s x /opt/app/l",
        // mkdir -p meets `/opt` there (EEXIST), where it may not write.
        "allowed: mkdir -p /opt/app/deep/er",
        // Device nodes need CAP_MKNOD; a hard link to a file it may not write, its owner's
        // consent (fs.protected_hardlinks).
        "refused: mknod /opt/app/null c 1 3",
        "refused: ln /opt/ro /opt/app/hard",
        "allowed: ln /opt/app/mine /opt/app/mine2",
        "made: /opt/app/mine 1000:1000 644",
        "made: /opt/app/l 1000:1000 777",
        "root dir: 0:0",
        "unnamed home: /",
        // Sorted, as the kernel keeps supplementary groups; a directory opened to write is
        // EISDIR before any permission check.
        "groups: 1000 50 5000 9000",
        "eisdir: sh: can't create /usr: Is a directory",
    ];
    every_log_says(modes_and_snapshotters("the non-root user's permissions"), DOCKERFILE, &[], EXPECTED);
}

/// A directory replaced by a symlink (the nginx idiom) is one entry in the layer, the same layer
/// in every mode: the copy snapshotter once also wrote whiteouts below the symlink, and applying
/// that layer (a later build, its steps cached) deleted what the link points to.
#[test]
fn a_directory_replaced_by_a_symlink_keeps_what_it_points_to() {
    const DOCKERFILE: &str = "FROM busybox
RUN mkdir -p /usr/share/nginx/html /app/dist && echo default > /usr/share/nginx/html/index.html && \\
    echo my-app > /app/dist/index.html
RUN rm -rf /usr/share/nginx/html && ln -s /app/dist /usr/share/nginx/html
ARG N
RUN echo \"build $N: $(cat /usr/share/nginx/html/index.html)\"
";
    let mut digests = Vec::new();
    for mode in modes_and_snapshotters("the directory-to-symlink layer") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", DOCKERFILE)]);
        let ctx = dir.path().join("ctx");
        for n in ["1", "2"] {
            let arg = format!("N={n}");
            let out = build(&dir, &mode, &["--build-arg", &arg, ctx.to_str().expect("utf-8")]);
            ok(&out, &format!("{} build {n}", mode.name()));
            let log = text(&out.stderr);
            assert!(log.contains(&format!(" build {n}: my-app\n")), "{} build {n}:\n{log}", mode.name());
            if n == "1" {
                digests.push((mode.name().to_string(), text(&out.stdout)));
            }
        }
    }
    for (name, digest) in &digests {
        assert_eq!(digest, &digests[0].1, "{name} and {} built different images", digests[0].0);
    }
}

/// Sets the mtime of `path` to `secs` since 1970, as `touch -d @secs` does.
fn set_mtime(path: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    fs_err::File::options().write(true).open(path).and_then(|f| f.set_modified(t)).expect("set mtime");
}

/// The `.pyc` the machine's python3 compiles `py` into, or `None` after saying why there is none.
fn compiled(what: &str, py: &Path) -> Option<PathBuf> {
    let mut compile = Command::new("python3");
    compile.args(["-c", "import py_compile, sys; print(py_compile.compile(sys.argv[1], doraise=True))"]);
    compile.arg(py);
    if !built(what, "python3", &mut compile) {
        return None;
    }
    Some(PathBuf::from(text(&compile.output().expect("python3").stdout).trim()))
}

/// That the machine's python3 imports module `m` from `dir` through its `.pyc` named `pyc_name`,
/// not calling it stale.
fn loads_from_pyc(dir: &Path, pyc_name: &str, what: &str) {
    let import = Command::new("python3")
        .args(["-v", "-B", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import m"])
        .arg(dir)
        .output()
        .expect("python3");
    let log = text(&import.stderr);
    assert!(import.status.success(), "{what}: {log}");
    let cached = format!("# code object from '{}'", dir.join("__pycache__").join(pyc_name).display());
    assert!(log.contains(&cached), "{what}: python3 did not use the .pyc:\n{log}");
    assert!(!log.contains("bytecode is stale"), "{what}: {log}");
}

/// A step sees the files a COPY put in its root with their own times, as BuildKit's snapshots
/// keep them; only the layer's times are clamped. So a build tool that compares times with what a
/// cache mount kept (make, cargo, Maven) rebuilds after an edit. With the layer's times, every
/// copied source was older (1980) than the output kept from the last build, and the second build
/// below kept the first one's result, in every mode.
#[test]
fn an_edited_source_is_newer_than_what_a_cache_mount_kept() {
    // The output is dated 2023, the first source 2023 less a day: the edit (now) is newer.
    const DOCKERFILE: &str = "FROM busybox
COPY src.txt /app/
RUN --mount=type=cache,target=/cache if [ ! -f /cache/out ] || [ /app/src.txt -nt /cache/out ]; then \\
      cp /app/src.txt /cache/out && touch -d @1700000000 /cache/out && echo rebuilt; \\
    else echo up to date; fi; echo \"result: $(cat /cache/out)\"
";
    for mode in modes_and_snapshotters("times a step sees") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", DOCKERFILE), ("ctx/src.txt", "one\n")]);
        let ctx = dir.path().join("ctx");
        set_mtime(&ctx.join("src.txt"), 1_699_913_600);
        for (n, says) in [(1, ["rebuilt", "result: one"]), (2, ["rebuilt", "result: two"])] {
            if n == 2 {
                // Written now, as an edit is.
                dir.write(&mode, &[("ctx/src.txt", "two\n")]);
            }
            let out = build(&dir, &mode, &["--progress=plain", ctx.to_str().expect("utf-8")]);
            ok(&out, &format!("{} build {n}", mode.name()));
            let log = text(&out.stderr);
            for line in says {
                assert!(log.contains(&format!(" {line}\n")), "{} build {n}: {line:?}:\n{log}", mode.name());
            }
        }
    }
}

/// Python's `.pyc` files stay valid in the image when the clamp moves their sources' mtimes: one
/// that a RUN step wrote beside its `.py` (as pip, Debian's py3compile and compileall do) and one
/// copied from the context beside its `.py`, in every mode. The machine's python3 is the judge:
/// it must load each from its `.pyc`, not call it stale.
#[test]
fn python_bytecode_stays_fresh_when_file_times_are_clamped() {
    const DOCKERFILE: &str = "FROM busybox
COPY app /copied/
COPY made /in/
RUN mkdir -p /made/__pycache__ && cp /in/m.py /made/ && cp /in/m.pyc.in /made/__pycache__/$(cat /in/name) && \\
    touch -d @1700000000 /made/m.py
";
    let tools = tempfile::tempdir().expect("tempdir");
    let t = tools.path();
    fs_err::write(t.join("m.py"), "X = 1\n").expect("m.py");
    set_mtime(&t.join("m.py"), 1_700_000_000);
    let Some(pyc) = compiled("the .pyc check", &t.join("m.py")) else { return };
    let pyc_name = pyc.file_name().and_then(|n| n.to_str()).expect("pyc name").to_string();
    let pyc_bytes = fs_err::read(&pyc).expect("read pyc");
    for mode in modes_and_snapshotters("the .pyc check") {
        let dir = Dir::new(&mode);
        dir.write(
            &mode,
            &[
                ("ctx/Dockerfile", DOCKERFILE),
                ("ctx/app/m.py", "X = 1\n"),
                ("ctx/app/__pycache__/.keep", ""),
                ("ctx/made/m.py", "X = 1\n"),
                ("ctx/made/name", &pyc_name),
                ("ctx/made/m.pyc.in", ""),
            ],
        );
        let ctx = dir.path().join("ctx");
        fs_err::write(ctx.join("app/__pycache__").join(&pyc_name), &pyc_bytes).expect("write pyc");
        fs_err::write(ctx.join("made/m.pyc.in"), &pyc_bytes).expect("write pyc");
        set_mtime(&ctx.join("app/m.py"), 1_700_000_000);
        let out_dir = dir.path().join("out");
        let dest = format!("type=local,dest={}", out_dir.display());
        let out = build(&dir, &mode, &["-o", &dest, ctx.to_str().expect("utf-8")]);
        ok(&out, mode.name());
        for (what, d) in [("copied", "copied"), ("written by a RUN step", "made")] {
            let py = out_dir.join(d).join("m.py");
            assert_eq!(fs_err::metadata(&py).expect("m.py").mtime(), 315_532_800, "{}: {what}", mode.name());
            loads_from_pyc(&out_dir.join(d), &pyc_name, &format!("{}: {what}", mode.name()));
        }
    }
}

/// A `type=tar` output clamps the times of the base image's files too, so it gives their `.pyc`
/// files the clamped time as well: a base whose layers keep real times (made here with
/// `rewrite-timestamp=false`) has valid `.pyc` files in the tar. The machine's python3 judges.
#[test]
fn a_tar_output_keeps_the_bytecode_of_the_base_fresh() {
    // The output is the same in every mode: the first this machine has will do.
    let Some(mode) = modes("the tar output's .pyc check").into_iter().next() else { return };
    let dir = Dir::new(&mode);
    dir.write(
        &mode,
        &[
            ("base/Dockerfile", "FROM busybox\nCOPY app /app/\n"),
            ("base/app/m.py", "X = 1\n"),
            ("base/app/__pycache__/.keep", ""),
            ("top/Dockerfile", "FROM base\nRUN echo top > /top\n"),
        ],
    );
    let base = dir.path().join("base");
    set_mtime(&base.join("app/m.py"), 1_700_000_000);
    let Some(pyc) = compiled("the tar output's .pyc check", &base.join("app/m.py")) else { return };
    let pyc_name = pyc.file_name().and_then(|n| n.to_str()).expect("pyc name");
    let layout = dir.path().join("layout");
    let dest = format!("type=oci,tar=false,dest={},rewrite-timestamp=false,name=base", layout.display());
    let out = build(&dir, &mode, &["-o", &dest, base.to_str().expect("utf-8")]);
    ok(&out, "the base");
    let tar = dir.path().join("fs.tar");
    let context = format!("base=oci-layout://{}:latest", layout.display());
    let dest = format!("type=tar,dest={}", tar.display());
    let top = dir.path().join("top");
    let out = build(&dir, &mode, &["--build-context", &context, "-o", &dest, top.to_str().expect("utf-8")]);
    ok(&out, "the tar");
    let fs = dir.path().join("fs");
    fs_err::create_dir_all(&fs).expect("mkdir");
    let untar = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&fs).status().expect("tar");
    assert!(untar.success());
    assert_eq!(fs_err::metadata(fs.join("app/m.py")).expect("m.py").mtime(), 315_532_800);
    loads_from_pyc(&fs.join("app"), pyc_name, "the tar");
}

/// A dynamic program run through a symlink finds the libraries its `$ORIGIN` run path names
/// (the JRE's `$ORIGIN/../lib`, which `apt-get install default-jre-headless` runs `java` through
/// `/usr/bin/java` for): under ptrace, its loader must be given the program's real path.
#[test]
fn a_program_run_through_a_symlink_finds_its_origin_libraries() {
    let Some(base) = debian_base() else { return };
    let tools = tempfile::tempdir().expect("tempdir");
    let t = tools.path();
    fs_err::write(t.join("lib.c"), "const char *hello(void) { return \"origin ok\"; }\n").expect("lib.c");
    fs_err::write(
        t.join("main.c"),
        "#include <stdio.h>\nconst char *hello(void);\nint main(void) { puts(hello()); return 0; }\n",
    )
    .expect("main.c");
    let lib = t.join("libhello.so");
    let mut cc = Command::new("cc");
    cc.args(["-shared", "-fPIC", "-o"]).arg(&lib).arg(t.join("lib.c"));
    if !built("the $ORIGIN check", "cc (a C compiler)", &mut cc) {
        return;
    }
    let mut cc = Command::new("cc");
    cc.arg("-o").arg(t.join("hello")).arg(t.join("main.c")).arg(format!("-L{}", t.display()));
    cc.args(["-lhello", "-Wl,-rpath,$ORIGIN/../lib"]);
    if !built("the $ORIGIN check", "cc (a C compiler)", &mut cc) {
        return;
    }
    let debian = format!("debian=oci-layout://{}:bookworm", base.display());
    for mode in modes_and_snapshotters("the $ORIGIN check") {
        // The kernel's own loader is the same with either snapshotter (the copy one is slow on
        // Debian), and under chroot finds no `$ORIGIN`: glibc reads it from /proc/self/exe.
        if matches!(mode, Mode::Chroot | Mode::Copy(_)) {
            continue;
        }
        let dir = Dir::new(&mode);
        dir.write(
            &mode,
            &[(
                "ctx/Dockerfile",
                "FROM debian\nCOPY hello /opt/h/bin/\nCOPY libhello.so /opt/h/lib/\n\
                 RUN ln -s /opt/h/bin/hello /usr/local/bin/hello && echo \"says: $(hello)\"\n",
            )],
        );
        for f in ["hello", "libhello.so"] {
            fs_err::copy(t.join(f), dir.path().join("ctx").join(f)).expect("copy");
        }
        let ctx = dir.path().join("ctx");
        let out = build(&dir, &mode, &["--build-context", &debian, ctx.to_str().expect("utf-8")]);
        ok(&out, mode.name());
        let log = text(&out.stderr);
        assert!(log.contains(" says: origin ok\n"), "{}:\n{log}", mode.name());
    }
}

/// A bind mount from a stage shows that stage's owners and modes, in every mode (under ptrace the
/// mount is a copy the caller owns: the tracer takes the owners from the stage's layers), so
/// `cp -a` out of it keeps them.
#[test]
fn a_bind_mount_from_a_stage_keeps_its_owners() {
    const DOCKERFILE: &str = r#"FROM busybox AS src
RUN mkdir -p /out/d && echo x > /out/d/f && chown -R 1000:50 /out/d && chmod 750 /out/d
FROM busybox
RUN --mount=type=bind,from=src,source=/out,target=/mnt cp -a /mnt/d /copied && \
    stat -c 'bound: %n %u:%g %a' /mnt/d /mnt/d/f /copied /copied/f
"#;
    let lines =
        ["/mnt/d 1000:50 750", "/mnt/d/f 1000:50 644", "/copied 1000:50 750", "/copied/f 1000:50 644"];
    let lines: Vec<String> = lines.iter().map(|l| format!("bound: {l}")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    every_log_says(modes_and_snapshotters("the bind mount owners"), DOCKERFILE, &[], &lines);
}

/// chroot isolation and a directory for its build, where the tests run as root (else a printed
/// skip of `what`).
fn chroot_dir(what: &str) -> Option<(Mode, Dir)> {
    if !nix::unistd::geteuid().is_root() {
        skip(&format!("{what}: chroot isolation needs root"));
        return None;
    }
    let dir = Dir::new(&Mode::Chroot);
    Some((Mode::Chroot, dir))
}

/// A chroot step has no /proc (nothing can mount one): when it fails naming /proc, the error says
/// so and names the mode that gives one.
#[test]
fn a_chroot_step_that_needs_proc_is_told_which_mode_has_it() {
    let Some((mode, dir)) = chroot_dir("the chroot /proc hint") else { return };
    dir.write(&mode, &[("ctx/Dockerfile", "FROM busybox\nRUN cat /proc/self/exe > /dev/null\n")]);
    let ctx = dir.path().join("ctx");
    let out = build(&dir, &mode, &[ctx.to_str().expect("utf-8")]);
    let log = text(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("--isolation=ptrace runs it with the machine's /proc"), "{log}");
}

/// Under chroot isolation a step whose helper is killed with -9 along with the builder runs on
/// (no pid namespace ends it, nothing is left to kill it) until the next build with that store,
/// whose helper ends it, and the daemon it started, before removing its directory.
#[test]
fn the_next_build_ends_a_chroot_step_whose_helper_was_killed() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let Some((mode, dir)) = chroot_dir("the killed chroot helper check") else { return };
    dir.write(
        &mode,
        &[
            (
                "ctx/Dockerfile",
                "FROM busybox\nRUN (setsid sleep 4245 >/dev/null 2>&1 &); echo started; sleep 4244\n",
            ),
            ("next/Dockerfile", "FROM busybox\nRUN echo next\n"),
        ],
    );
    let ctx = dir.path().join("ctx");
    let child = build_command(&dir, &mode, &[ctx.to_str().expect("utf-8")])
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn");
    let mut child = Running(child);
    let stderr = child.0.stderr.take().expect("stderr");
    let started =
        std::io::BufReader::new(stderr).lines().map_while(Result::ok).any(|l| l.ends_with(" started"));
    assert!(started, "the step started");
    wait_until(10, || sleepers("4244") > 0);
    let group = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).expect("kill -9 the group");
    let _ = child.0.wait();
    // The step and its daemon are in sessions of their own, out of the killed group.
    assert_eq!((sleepers("4244"), sleepers("4245")), (1, 1), "left running after kill -9");
    let next = dir.path().join("next");
    ok(&build(&dir, &mode, &[next.to_str().expect("utf-8")]), "the next build");
    wait_until(10, || sleepers("4244") + sleepers("4245") == 0);
    assert_eq!((sleepers("4244"), sleepers("4245")), (0, 0), "ended by the next build's helper");
}

/// Ctrl-C in a terminal (SIGINT to the whole process group: the builder and its sandbox helpers)
/// or a CI job's cancel (SIGTERM to the builder) mid-step: the step is shown canceled as buildx
/// shows it, the build's error names the signal, the process ends by it (so `$?` is 130 or 143),
/// and the step dies with it (its helper outlives the builder long enough to kill it). Killed
/// with -9 all at once, helper too, the step dies as well.
#[test]
fn a_signal_mid_step_shows_it_canceled_and_stops_it() {
    use nix::sys::signal::Signal;
    use std::io::BufRead;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let cases = modes("the signal during RUN check").into_iter().flat_map(|m| {
        [(m.clone(), Signal::SIGINT, true), (m.clone(), Signal::SIGTERM, false), (m, Signal::SIGKILL, true)]
    });
    for (mode, signal, group) in cases {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", "FROM busybox\nRUN echo started; sleep 4243\n")]);
        let ctx = dir.path().join("ctx");
        let child = build_command(&dir, &mode, &["--progress=plain", ctx.to_str().expect("utf-8")])
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn");
        let mut child = Running(child);
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.0.stderr.take().expect("stderr");
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for l in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if l.ends_with(" started") {
                    let _ = tx.send(());
                }
                all.push_str(&l);
                all.push('\n');
            }
            all
        });
        rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the step started");
        wait_until(10, || sleepers("4243") > 0);
        if group {
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.0.id() as i32), signal)
                .expect("killpg");
        } else {
            let pid = nix::unistd::Pid::from_raw(builder_pid(child.0.id()));
            nix::sys::signal::kill(pid, signal).expect("signal the builder");
        }
        let status = child.0.wait().expect("wait");
        let stderr = reader.join().expect("stderr reader");
        let m = format!("{}, {signal}{}", mode.name(), if group { " to the group" } else { "" });
        // runuser, between the test and hako, turns a death by signal into 128 + the signal.
        assert!(
            status.signal() == Some(signal as i32) || status.code() == Some(128 + signal as i32),
            "{m}: ended by {signal}: {status:?}\n{stderr}"
        );
        if signal != Signal::SIGKILL {
            let id = crate::progress::vertex(&stderr, "[2/2] RUN echo started; sleep 4243");
            assert!(stderr.contains(&format!("\n{id} CANCELED\n")), "{m}: {stderr}");
            // (runuser adds its own `Terminated` after it.)
            let error = format!("error: the build was canceled ({})", signal.as_str());
            assert!(stderr.lines().any(|l| l == error), "{m}: {stderr}");
        }
        wait_until(10, || sleepers("4243") == 0);
        assert_eq!(sleepers("4243"), 0, "{m}: the step died with the builder");
    }
}

/// The pid of the hako process: `pid` itself, or its child when it is runuser.
fn builder_pid(pid: u32) -> i32 {
    let comm = fs_err::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "runuser" {
        return pid as i32;
    }
    let children = fs_err::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(pid as i32)
}

/// Polls `done` until it holds or `secs` pass, and says whether it held (callers assert on what
/// they waited for, with their own message).
fn wait_until(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Processes running `sleep MARKER` (each test its own marker: they run side by side).
fn sleepers(marker: &str) -> usize {
    fs_err::read_dir("/proc")
        .expect("proc")
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == marker.as_bytes()))
        })
        .count()
}

/// A scratch directory for a podman container under Docker's default seccomp profile (a GitLab
/// or GitHub Actions job container): lowercase (podman names an `oci:` image after its path),
/// with `ctx/` and the busybox layout at `bb/`, removed on drop.
pub(crate) struct LockedDown {
    pub(crate) dir: PathBuf,
    profile: PathBuf,
}

impl LockedDown {
    pub(crate) fn new(name: &str, profile: PathBuf) -> LockedDown {
        let dir = PathBuf::from(format!("/tmp/hako-{name}-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        fs_err::create_dir_all(dir.join("ctx")).expect("mkdir");
        let o = Command::new("cp")
            .arg("-a")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/busybox"))
            .arg(dir.join("bb"))
            .output()
            .expect("cp");
        assert!(o.status.success());
        LockedDown { dir, profile }
    }

    /// `podman run` with that profile, default capabilities, `runc`, this directory at `/w`, and
    /// (for `user`) no new privileges; the caller adds mounts, the image and the command.
    pub(crate) fn podman(&self, user: Option<&str>) -> Command {
        let mut cmd = self.podman_default(user);
        cmd.arg("--security-opt").arg(format!("seccomp={}", self.profile.display()));
        cmd
    }

    /// `podman run --rm` with that profile, `runc` and the host's lower ulimits, and nothing else:
    /// no user, no mount; the caller says the rest (as a Kubernetes pod spec does).
    pub(crate) fn bare(&self) -> Command {
        let mut cmd = self.runtime();
        cmd.arg("--security-opt").arg(format!("seccomp={}", self.profile.display()));
        cmd
    }

    /// `podman run --rm` with a store in this directory, `runc`, and ulimits this host allows.
    fn runtime(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.join("podman-root"))
            .arg("--runroot")
            .arg(self.dir.join("podman-run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc", "run", "--rm"])
            .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]);
        cmd
    }

    /// [`LockedDown::podman`] with podman's own default seccomp profile (user namespaces allowed).
    fn podman_default(&self, user: Option<&str>) -> Command {
        let mut cmd = self.runtime();
        if let Some(u) = user {
            cmd.args(["--user", u, "--security-opt", "no-new-privileges"]);
        }
        cmd.arg("-v").arg(format!("{}:/w", self.dir.display()));
        cmd
    }
}

impl Drop for LockedDown {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Inside a container run with Docker's default seccomp profile (no unshare, no mount: a GitLab or
/// GitHub Actions job container): as root, the default isolation picks chroot and says why (the
/// build and `hako info` print the denied call), and gives the image `--isolation=chroot` gives,
/// with the right layer (umoci-checked); as a non-root user with no-new-privileges it picks ptrace.
/// Both build the tree Dockerfile into the image the host's rootless build gives and push it.
#[test]
fn auto_isolation_in_a_locked_down_container() {
    let profile =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/ci-profiles/docker-default-seccomp.json");
    if !nix::unistd::geteuid().is_root() {
        skip("the locked-down container check: needs root to run podman");
        return;
    }
    if !have("podman") || !have("runc") || !have("umoci") || !profile.is_file() {
        skip("the locked-down container check: needs podman, runc, umoci and ../shared/ci-profiles");
        return;
    }
    let ld = LockedDown::new("ci-test", profile);
    let dir = ld.dir.clone();
    fs_err::copy(env!("CARGO_BIN_EXE_hako"), dir.join("hako")).expect("copy hako");
    fs_err::write(
        dir.join("ctx/Dockerfile"),
        "FROM busybox\nRUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t \\\n    echo hi > /made && chown 42 /made && echo x > /dev/null\n",
    )
    .expect("write");
    // This hako is linked to the host's glibc: its libraries are mounted in.
    // The host's network, to push to the registry on its loopback.
    let podman = |user: Option<&str>, script: &str| {
        ld.podman(user)
            .args(["--network", "host"])
            .args(["-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro", "-v", "/usr/lib:/usr/lib:ro"])
            .arg(format!("oci:{}/bb:latest", dir.display()))
            .args(["sh", "-c", script])
            .output()
            .expect("podman")
    };
    fs_err::create_dir_all(dir.join("tree")).expect("mkdir");
    fs_err::write(dir.join("tree/Dockerfile"), TREE_DOCKERFILE).expect("write");
    let Some(reg) = crate::registry_fixture::Registry::start() else { return };
    let script = format!(
        "/w/hako info --root /w/s1; \
         /w/hako build --root /w/s1 --build-context busybox=oci-layout:///w/bb \
         -t ci:1 -o type=oci,dest=/w/image,tar=false /w/ctx; echo auto=$?; \
         /w/hako build --isolation=chroot --root /w/s2 --build-context busybox=oci-layout:///w/bb \
         -t ci:1 -o type=oci,dest=/w/image2,tar=false /w/ctx; echo chroot=$?; \
         /w/hako build --root /w/s1 --build-context busybox=oci-layout:///w/bb -t tree:1 \
         -o type=oci,dest=/w/tree-root,tar=false -o type=image,name={},push=true /w/tree; echo tree=$?",
        reg.image("ci/tree-root:1")
    );
    let out = podman(None, &script);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    if !out.status.success() && (stderr.contains("cgroup") || stderr.contains("OCI permission denied")) {
        skip(&format!("the locked-down container check: podman cannot run containers here: {stderr}"));
        return;
    }
    let denied = "namespaces are denied (unshare(CLONE_NEWNS|CLONE_NEWCGROUP): Operation not permitted)";
    assert!(
        stdout.contains("isolation:  chroot: running as root") && stdout.contains(denied),
        "info:\n{stdout}"
    );
    assert!(stderr.contains(denied), "the build says why it chose chroot:\n{stderr}");
    assert!(
        stdout.contains("auto=0") && stdout.contains("chroot=0") && stdout.contains("tree=0"),
        "all build:\n{stdout}\n{stderr}"
    );
    let manifest = |layout: &str| {
        let index: serde_json::Value =
            serde_json::from_slice(&fs_err::read(dir.join(layout).join("index.json")).expect("index"))
                .expect("json");
        index["manifests"][0]["digest"].as_str().expect("a manifest").to_string()
    };
    assert_eq!(manifest("image"), manifest("image2"), "auto gives the image --isolation=chroot gives");
    let rootfs = crate::common::umoci_unpack(&dir.join("image"), "1", &dir.join("bundle"), "the auto build");
    let made = fs_err::metadata(rootfs.join("made")).expect("made");
    assert_eq!((made.uid(), made.len()), (42, 3));
    for stub in ["c", "t", "dev/null", "etc/hosts"] {
        assert!(!rootfs.join(stub).exists(), "/{stub} is not in the image");
    }

    // (b) As a non-root user with no new privileges: user namespaces, mounts and chroot are all
    // denied, so auto picks ptrace; the tree Dockerfile gives the image the host's rootless build
    // gives (byte for byte), and it is pushed to the local registry from in there.
    assert_eq!(reg.digest_of("ci/tree-root:1"), manifest("tree-root"), "the root build was pushed");
    let image = reg.image("ci/tree:1");
    let script = format!(
        "/w/hako info --root /tmp/s; /w/hako build --root /tmp/s --build-context busybox=oci-layout:///w/bb \
         -t tree:1 -o type=oci,dest=/tmp/image,tar=false -o type=image,name={image},push=true \
         /w/tree; echo user=$?; cat /tmp/image/index.json"
    );
    let out = ld
        .podman(Some("65534:65534"))
        .args([
            "--network",
            "host",
            "-v",
            "/lib:/lib:ro",
            "-v",
            "/lib64:/lib64:ro",
            "-v",
            "/usr/lib:/usr/lib:ro",
        ])
        .arg(format!("oci:{}/bb:latest", dir.display()))
        .args(["sh", "-c", &script])
        .output()
        .expect("podman");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let denied = "user namespaces are denied (unshare(CLONE_NEWUSER): Operation not permitted)";
    assert!(stdout.contains("isolation:  ptrace: ") && stdout.contains(denied), "info:\n{stdout}");
    // busybox has no CA certificates: hako's own roots are used (pushing once panicked there).
    assert!(stdout.contains("ca roots:   hako's built-in roots"), "info:\n{stdout}");
    assert!(stderr.contains("isolation ptrace: "), "the build says it chose ptrace:\n{stderr}");
    assert!(stdout.contains("user=0"), "the non-root build works there:\n{stdout}\n{stderr}");
    let inside: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .expect("the index the container wrote");
    let inside = inside["manifests"][0]["digest"].as_str().expect("a manifest").to_string();
    assert_eq!(reg.digest_of("ci/tree:1"), inside, "the pushed image is the one built");
    // (c) Under podman's own default profile user namespaces work, but this image has no sub-ids
    // or newuidmap (and no-new-privileges would defeat it): rootless would squash owners, so auto
    // keeps them with ptrace, and says so.
    let out = ld
        .podman_default(Some("65534:65534"))
        .args(["-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro", "-v", "/usr/lib:/usr/lib:ro"])
        .arg(format!("oci:{}/bb:latest", dir.display()))
        .args(["/w/hako", "info", "--root", "/tmp/s"])
        .output()
        .expect("podman");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("isolation:  ptrace: a user namespace would map only your own id")
            && stdout.contains("rootless  available, owners squashed"),
        "info under podman's default profile:\n{stdout}{}",
        text(&out.stderr)
    );
    // The host's rootless build of the same Dockerfile.
    let Some(host) = modes("the host side of the locked-down comparison").into_iter().last() else { return };
    let hdir = Dir::new(&host);
    hdir.write(&host, &[("ctx/Dockerfile", TREE_DOCKERFILE)]);
    let layout = hdir.path().join("image.oci");
    let dest = format!("type=oci,dest={},tar=false", layout.display());
    let out =
        build(&hdir, &host, &["-t", "tree:1", "-o", &dest, hdir.path().join("ctx").to_str().expect("utf-8")]);
    ok(&out, host.name());
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(layout.join("index.json")).expect("index")).expect("json");
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(inside.as_str()),
        "the container's ptrace build and the host's {} build give one image",
        host.name()
    );
    assert_eq!(
        Some(manifest("tree-root").as_str()),
        Some(inside.as_str()),
        "the container's build as root (chroot) gives that image too"
    );
}

/// A relative store and context (as in `hako build --root store .`) work for RUN and bind mounts.
#[test]
fn relative_store_and_context() {
    let Some(mode) = modes("the relative paths check").into_iter().next() else { return };
    let dir = Dir::new(&mode);
    dir.write(
        &mode,
        &[
            ("ctx/Dockerfile", "FROM busybox\nRUN --mount=target=/src cat /src/f > /copied\n"),
            ("ctx/f", "relative\n"),
        ],
    );
    let base = format!("busybox=oci-layout://{}/testdata/busybox", env!("CARGO_MANIFEST_DIR"));
    let out = mode
        .command(binary(&dir, &mode))
        .current_dir(dir.path())
        .args(["build", "--root", "store", "--build-context", &base, "-o", "type=local,dest=out", "ctx"])
        .output()
        .expect("hako");
    ok(&out, "relative paths");
    assert_eq!(fs_err::read_to_string(dir.path().join("out/copied")).expect("copied"), "relative\n");
}

/// The layout scripts/make-debian-base.sh makes (Debian bookworm minbase), if it is there.
fn debian_base() -> Option<PathBuf> {
    let p = PathBuf::from(
        std::env::var("HAKO_TEST_DEBIAN").unwrap_or("/var/cache/hako-test/debian-bookworm".into()),
    );
    if p.join("index.json").is_file() {
        return Some(p);
    }
    skip(&format!(
        "the Debian base checks: no layout at {} (scripts/make-debian-base.sh makes it)",
        p.display()
    ));
    None
}

const DEBIAN_DOCKERFILE: &str = r#"FROM debian
RUN set -e; mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/hako-test; echo packaged > /tmp/pkg/usr/share/hako-test/hello; \
    printf 'Package: hako-test\nVersion: 1.0\nArchitecture: all\nMaintainer: hako <hako@example.com>\nDescription: test\n' \
      > /tmp/pkg/DEBIAN/control; \
    dpkg-deb --root-owner-group --build /tmp/pkg /tmp/hako-test.deb >/dev/null; dpkg -i /tmp/hako-test.deb; rm -rf /tmp/pkg /tmp/hako-test.deb
RUN useradd --create-home --uid 1234 builder && install -d -o _apt -g nogroup /var/cache/hako-apt \
    && dpkg -s hako-test | grep -q 'Status: install ok installed' && apt-get --version | head -1
USER builder
WORKDIR /home/builder
RUN id -un > whoami && touch made-by-builder
"#;

/// A realistic base: dpkg installs a package built in the step, useradd adds a user, files end up
/// owned by _apt (42) and by the new user, rootless as well as root, in a namespace sandbox and
/// under ptrace (umoci checks the result).
#[test]
fn debian_base_dpkg_and_users() {
    let Some(base) = debian_base() else { return };
    if !have("umoci") {
        skip("the Debian base checks: umoci is not installed");
        return;
    }
    let traced_too = |m: Mode| [m.clone(), Mode::Ptrace(Box::new(m))];
    for mode in modes("the Debian base checks").into_iter().flat_map(traced_too) {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", DEBIAN_DOCKERFILE)]);
        let layout = dir.path().join("image");
        let dest = format!("type=oci,dest={},tar=false", layout.display());
        let ctx = dir.path().join("ctx");
        let debian = format!("debian=oci-layout://{}:bookworm", base.display());
        let out = build(
            &dir,
            &mode,
            &["--build-context", &debian, "-t", "deb:1", "-o", &dest, ctx.to_str().expect("utf-8")],
        );
        ok(&out, mode.name());
        assert!(text(&out.stderr).contains("apt "), "{}: apt-get runs in a step", mode.name());
        let root = crate::common::umoci_unpack(&layout, "1", &dir.path().join("bundle"), mode.name());
        let m = mode.name();
        assert_eq!(
            fs_err::read_to_string(root.join("usr/share/hako-test/hello")).expect("hello"),
            "packaged\n"
        );
        let status = fs_err::read_to_string(root.join("var/lib/dpkg/status")).expect("status");
        assert!(status.contains("Package: hako-test\nStatus: install ok installed"), "{m}: dpkg recorded it");
        let owner = |p: &str| {
            let md = fs_err::symlink_metadata(root.join(p)).expect(p);
            (md.uid(), md.gid())
        };
        assert_eq!(owner("var/cache/hako-apt"), (42, 65534), "{m}: _apt:nogroup");
        assert_eq!(owner("home/builder"), (1234, 1234), "{m}: the new user's home");
        assert_eq!(owner("home/builder/made-by-builder"), (1234, 1234), "{m}: made by USER builder");
        assert_eq!(fs_err::read_to_string(root.join("home/builder/whoami")).expect("whoami"), "builder\n");
        assert!(
            fs_err::read_to_string(root.join("etc/passwd")).expect("passwd").contains("builder:x:1234:1234")
        );
    }
}

/// What a tracer must translate beyond file calls, on real programs: a dynamic program is
/// started through its loader (which the kernel's `/proc/self/exe` then names), yet the link, a
/// re-exec through it and reading it give the program (in every new process, also one whose
/// first stop the tracer sees before its parent's fork event); a Unix socket's path is in the root (bound
/// in a directory only the root has, relative, and longer than `sun_path` once made a machine
/// path), where `rm` finds it, and a datagram `sendto` its path reaches it. As in a namespace
/// sandbox.
const PTRACE_DEBIAN_DOCKERFILE: &str = r#"FROM debian
RUN set -e; got=$(readlink /proc/self/exe); echo "readlink: $got"; test "$got" = /usr/bin/readlink; \
    got=$(sh -c 'readlink /proc/$$/exe'); echo "a shell's: $got"; test "$got" = /usr/bin/dash; \
    got=$(sh -c '/proc/self/exe -c "echo re-executed"'); echo "$got"; test "$got" = re-executed; \
    n=0; for i in $(seq 1 40); do test "$(sh -c '/proc/self/exe -c "echo again"' 2>&1)" = again && n=$((n+1)); done; \
    echo "re-executed $n of 40"; test $n = 40; \
    test "$(stat -L -c %s /proc/self/exe)" = "$(stat -c %s /usr/bin/stat)"; \
    test "$(od -An -c -N4 /proc/self/exe | tr -d ' ')" = '177ELF'
RUN set -e; long=/run/hako-test/a-directory-with-a-name-long-enough-to-push-the-machine-path-past-108; \
    mkdir -p $long; cd /run/hako-test; \
    for path in /run/hako-test/s relative $long/s; do \
      perl -MIO::Socket::UNIX -e 'my $p = shift; \
        my $srv = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $p, Listen => 1) or die "bind $p: $!\n"; \
        -S $p or die "no socket at $p\n"; \
        if (!fork) { my $c = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $p) or die "connect $p: $!\n"; \
          print $c "hello over $p\n"; exit 0 } \
        my $conn = $srv->accept or die "accept: $!\n"; print "got: ", scalar <$conn>; wait' "$path"; \
      rm "$path"; test ! -e "$path"; \
    done
RUN set -e; mkdir -p /run/hako-dgram; \
    perl -MSocket -e 'my $p = shift; socket(my $s, AF_UNIX, SOCK_DGRAM, 0) or die "socket: $!\n"; \
      bind($s, pack_sockaddr_un($p)) or die "bind $p: $!\n"; socket(my $c, AF_UNIX, SOCK_DGRAM, 0) or die; \
      defined(send($c, "datagram to $p\n", 0, pack_sockaddr_un($p))) or die "sendto $p: $!\n"; \
      recv($s, my $buf, 200, 0); print "got: $buf"' /run/hako-dgram/d
"#;

#[test]
fn debian_programs_under_ptrace_see_their_exe_and_sockets() {
    let Some(base) = debian_base() else { return };
    for mode in modes("the Debian base under ptrace").into_iter().map(|m| Mode::Ptrace(Box::new(m))) {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", PTRACE_DEBIAN_DOCKERFILE)]);
        let ctx = dir.path().join("ctx");
        let debian = format!("debian=oci-layout://{}:bookworm", base.display());
        let out = build(&dir, &mode, &["--build-context", &debian, ctx.to_str().expect("utf-8")]);
        ok(&out, mode.name());
        let stderr = text(&out.stderr);
        assert!(stderr.contains("readlink: /usr/bin/readlink"), "{}: {stderr}", mode.name());
        assert_eq!(stderr.matches("got: hello over ").count(), 3, "{}: {stderr}", mode.name());
        assert!(stderr.contains("got: datagram to /run/hako-dgram/d"), "{}: {stderr}", mode.name());
    }
}

/// What real Dockerfiles do with Debian's tools, in every mode as BuildKit's runc does it: `sed -i`
/// and `cp -a` keep a mode through an access ACL, GNU tar sets one through `/proc/self/fd`, a
/// setgid directory passes on its group, `stat("")` finds nothing, `HOME` comes from
/// `/etc/passwd`, a set-user-ID program runs as its owner, setpriv drops to a user keeping the
/// capabilities it needs to change groups after, no_new_privs is not set (sudo
/// refuses to run with it), the hostname resolves and a process that makes itself not dumpable
/// (sudo) goes on working, and a server sees who connected (PostgreSQL's peer authentication).
/// Each once failed under ptrace isolation,
/// `HOME` and the hostname under chroot too.
#[test]
fn debian_tools_keep_modes_groups_and_ids_in_every_mode() {
    const DOCKERFILE: &str = r#"FROM debian
RUN set -e; printf '#!/bin/sh\necho ok\n' > /s; chmod 755 /s; sed -i s/ok/OK/ /s; test "$(/s)" = OK; \
    mkdir -p /src/d; echo x > /src/d/f; chmod 750 /src/d; chmod 640 /src/d/f; cp -a /src /dst; \
    mkdir -p /t/d; chmod 751 /t/d; tar -C /t -cf /t.tar d; rm -rf /t/d; tar -C /t -xf /t.tar; rm /t.tar; \
    mkdir /g; chgrp 50 /g; chmod 2775 /g; touch /g/f; mkdir /g/d; ln -s f /g/l; \
    cp /usr/bin/id /usr/local/bin/suid-id; chmod 4755 /usr/local/bin/suid-id; \
    if test -e ""; then echo 'stat("") found something'; exit 1; fi; echo "home: $HOME"
RUN stat -c 'mode: %n %a %u:%g' /s /dst/d /dst/d/f /t/d /g /g/f /g/d && stat -c 'owner: %n %u:%g' /g/l
RUN echo "hostname: $(hostname)" && echo "resolves: $(getent hosts "$(hostname)" | awk '{print $1}')" && \
    echo "comm: $(cat /proc/self/comm 2>/dev/null || echo cat)" && \
    echo "setpriv: $(setpriv --reuid=nobody --regid=nogroup --clear-groups id -u)" && \
    cd /etc && perl -e 'syscall(157, 4, 0) == 0 or die "prctl: $!"; print "dumpable: ", syscall(157, 3), "\n"; \
      open(my $f, "<", "passwd") or die "open after PR_SET_DUMPABLE: $!"; print "opened\n"' && \
    perl -MSocket -MPOSIX -e 'my $p = "/tmp/peer.sock"; unlink $p; socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die; \
      bind($s, pack_sockaddr_un($p)) or die "bind: $!"; listen($s, 1) or die; chmod 0777, $p; \
      if (!fork) { POSIX::setgid(65534); POSIX::setuid(65534); socket(my $c, AF_UNIX, SOCK_STREAM, 0) or die; \
        connect($c, pack_sockaddr_un($p)) or die "connect: $!"; sleep 1; exit 0 } \
      accept(my $a, $s) or die "accept: $!"; my (undef, $u, $g) = unpack("iII", getsockopt($a, SOL_SOCKET, SO_PEERCRED)); \
      print "peer: $u:$g\n"; wait'
USER nobody
RUN echo "home: $HOME" && echo "euid: $(suid-id -u)" && setpriv --dump | grep no_new_privs
"#;
    let Some(base) = debian_base() else { return };
    let debian = format!("debian=oci-layout://{}:bookworm", base.display());
    let lines = [
        "home: /root",
        "mode: /s 755 0:0",
        "mode: /dst/d 750 0:0",
        "mode: /dst/d/f 640 0:0",
        "mode: /t/d 751 0:0",
        "mode: /g 2775 0:50",
        "mode: /g/f 644 0:50",
        "mode: /g/d 2755 0:50",
        "owner: /g/l 0:50",
        "home: /nonexistent",
        "euid: 0",
        "no_new_privs: 0",
        "resolves: 127.0.0.1",
        "dumpable: 0",
        "opened",
        "peer: 65534:65534",
        "setpriv: 65534",
        "comm: cat",
    ];
    let modes = modes_and_snapshotters("the Debian tools build");
    for (mode, log) in every_log_says(modes, DOCKERFILE, &["--build-context", &debian], &lines) {
        // Only a chroot step, with no UTS namespace and no tracer to answer `uname`, has the
        // machine's name.
        if !matches!(mode, Mode::Chroot) {
            assert!(log.contains(" hostname: buildkitsandbox\n"), "{}:\n{log}", mode.name());
        }
    }
}

/// A user without /etc/subuid ranges still builds rootless: only their own id is mapped, and a
/// one-line warning says what that squashes.
#[test]
fn rootless_without_sub_ids_maps_one_id_and_says_so() {
    const USER: &str = "hakotest-nosubid";
    if !nix::unistd::geteuid().is_root() {
        skip("the single-id map check: needs root to run as the test user");
        return;
    }
    if !Command::new("id").arg(USER).output().is_ok_and(|o| o.status.success()) {
        skip(&format!("the single-id map check: no user {USER} (scripts/test-user.sh creates it)"));
        return;
    }
    let mode = Mode::Rootless(Some(USER.into()));
    let dir = Dir::new(&mode);
    dir.write(
        &mode,
        &[("ctx/Dockerfile", "FROM busybox\nRUN echo hi > /made && stat -c %u /home/app > /app-owner\n")],
    );
    let ctx = dir.path().join("ctx");
    let ctx = ctx.to_str().expect("utf-8");
    // Asked for: a user namespace mapping only the caller, which says what it squashes.
    let dest = format!("type=local,dest={}", dir.path().join("out").display());
    let out = build(&dir, &mode, &["--isolation=rootless", "-o", &dest, ctx]);
    ok(&out, "single-id map");
    let log = text(&out.stderr);
    assert!(
        log.contains(&format!(
            "warning: no range for {USER} in /etc/subuid, so only your own id is mapped (to 0)"
        )),
        "{log}"
    );
    assert_eq!(fs_err::read_to_string(dir.path().join("out/made")).expect("made"), "hi\n");
    // /home/app belongs to 1000 in the image; with one id mapped it is root's inside the step.
    assert_eq!(fs_err::read_to_string(dir.path().join("out/app-owner")).expect("owner"), "0\n");
    // Not asked: auto keeps every owner with ptrace rather than squash them, and says why.
    let dest = format!("type=local,dest={}", dir.path().join("out2").display());
    let out = build(&dir, &mode, &["--no-cache", "-o", &dest, ctx]);
    ok(&out, "auto without sub-ids");
    let log = text(&out.stderr);
    assert!(
        log.contains(&format!(
            "isolation ptrace: a user namespace would map only your own id (no range for {USER} in /etc/subuid)"
        )),
        "{log}"
    );
    assert_eq!(fs_err::read_to_string(dir.path().join("out2/app-owner")).expect("owner"), "1000\n");
}

/// Builds sharing a store run RUN steps at the same time: snapshots of the same layers are made
/// once (the loser of a race keeps the winner's), a locked cache is taken in turns, and every
/// build gets its own right result.
#[test]
fn concurrent_run_builds_share_a_store() {
    for mode in modes("the concurrent RUN builds check") {
        let dir = Dir::new(&mode);
        let mut files = Vec::new();
        for i in 0..4 {
            files.push((
                format!("ctx{i}/Dockerfile"),
                format!(
                    "FROM busybox\nRUN echo base > /base\nRUN --mount=type=cache,id=shared,target=/c,sharing=locked \
                     echo {i} >> /c/log && cp /c/log /log-{i}\nRUN echo {i} > /mine\n"
                ),
            ));
        }
        let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        dir.write(&mode, &refs);
        let outs: Vec<Output> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let (dir, mode) = (&dir, &mode);
                    scope.spawn(move || {
                        let ctx = dir.path().join(format!("ctx{i}"));
                        let dest =
                            format!("type=local,dest={}", dir.path().join(format!("out{i}")).display());
                        build(dir, mode, &["-o", &dest, ctx.to_str().expect("utf-8")])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        for (i, out) in outs.iter().enumerate() {
            ok(out, &format!("{} build {i}", mode.name()));
            let mine = fs_err::read_to_string(dir.path().join(format!("out{i}/mine"))).expect("mine");
            assert_eq!(mine, format!("{i}\n"), "{}: build {i} got its own step", mode.name());
        }
        // The locked cache saw every build, one after another (whole lines, no interleaving).
        let logs: Vec<String> = (0..4)
            .map(|i| fs_err::read_to_string(dir.path().join(format!("out{i}/log-{i}"))).expect("log"))
            .collect();
        let longest = logs.iter().max_by_key(|l| l.len()).expect("logs");
        let mut seen: Vec<&str> = longest.lines().collect();
        seen.sort_unstable();
        assert_eq!(seen, ["0", "1", "2", "3"], "{}: every build used the cache: {logs:?}", mode.name());
        let snaps = dir.path().join("store/sandbox").join(mode.sandbox_dir()).join("snapshots");
        let names = dir_names(&snaps);
        assert!(names.iter().all(|n| n.len() == 64), "{}: only complete snapshots: {names:?}", mode.name());
    }
}

/// BuildKit's three RUN heredoc forms: a script with a `#!` line (run from /dev/pipes), a plain
/// script (given to the shell), and a command with heredoc redirections.
#[test]
fn run_heredoc_forms() {
    let dockerfile = "FROM busybox\nRUN <<EOF\n#!/bin/sh\necho \"shebang $0\" > /one\nEOF\n\
                      RUN <<EOF\necho plain > /two\necho more >> /two\nEOF\n\
                      RUN cat <<A > /three && cat <<B >> /three\nfirst\nA\nsecond\nB\n";
    for mode in modes_and_snapshotters("the RUN heredoc checks") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", dockerfile)]);
        let dest = format!("type=local,dest={}", dir.path().join("out").display());
        let out = build(&dir, &mode, &["-o", &dest, dir.path().join("ctx").to_str().expect("utf-8")]);
        ok(&out, mode.name());
        let read = |f: &str| fs_err::read_to_string(dir.path().join("out").join(f)).expect(f);
        assert_eq!(read("one"), "shebang /dev/pipes/EOF\n", "{}", mode.name());
        assert_eq!(read("two"), "plain\nmore\n", "{}", mode.name());
        assert_eq!(read("three"), "first\nsecond\n", "{}", mode.name());
        assert!(
            !dir.path().join("out/dev/pipes").exists(),
            "{}: the script is not in the image",
            mode.name()
        );
    }
}

/// `hako debug sandbox-bench` (what scripts/bench-sandbox.sh reports) runs and reports medians.
#[test]
fn sandbox_bench_reports_medians() {
    let Some(mode) = modes("the sandbox-bench check").into_iter().next() else { return };
    let dir = Dir::new(&mode);
    let layout = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/busybox");
    let out = Command::new(binary(&dir, &mode))
        .args(["debug", "sandbox-bench", "-n", "3", "--root"])
        .arg(dir.path().join("store"))
        .arg(&layout)
        .output()
        .expect("hako");
    ok(&out, "sandbox-bench");
    let report = text(&out.stdout);
    assert!(report.contains("median of 3: create+start+wait+delete "), "{report}");
    assert!(report.contains(" ms, whole step (overlay, mounts, cleanup) "), "{report}");
}

/// `hako prune` removes snapshots and caches — for a rootless user, files owned by sub-ids that
/// plain `rm -rf` cannot remove — and refuses while a build uses the store.
#[test]
fn prune_removes_what_rootless_builds_leave() {
    for mode in modes("the prune checks") {
        let dir = Dir::new(&mode);
        let dockerfile = "FROM busybox\nRUN mkdir /data && echo x > /data/f && chown -R 1000:1000 /data && chmod 0700 /data\n\
                          RUN --mount=type=cache,target=/c,uid=1000 touch /c/cached\n";
        dir.write(&mode, &[("ctx/Dockerfile", dockerfile)]);
        ok(&build(&dir, &mode, &[dir.path().join("ctx").to_str().expect("utf-8")]), mode.name());
        let store = dir.path().join("store");
        let as_user = |program: &str, args: &[&str]| -> Output {
            mode.command(program).args(args).stdin(std::process::Stdio::null()).output().expect("run")
        };
        let bin = binary(&dir, &mode);
        let bin = bin.to_str().expect("utf-8");
        let store_s = store.to_str().expect("utf-8");
        if matches!(mode, Mode::Rootless(_)) {
            let rm = as_user("rm", &["-rf", &format!("{store_s}/sandbox")]);
            assert!(!rm.status.success(), "precondition: rm -rf cannot remove sub-id-owned files");
        }
        // Without -f and without a terminal, nothing is removed.
        let out = as_user(bin, &["prune", "--root", store_s]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains("add -f"), "{}", text(&out.stderr));
        // While a build runs, prune waits its turn: it refuses.
        dir.write(&mode, &[("ctx2/Dockerfile", "FROM busybox\nRUN echo started; sleep 4343\n")]);
        let mut running = Running(start_step(&dir, &mode, &dir.path().join("ctx2")));
        let busy = as_user(bin, &["prune", "-f", "--root", store_s]);
        kill_builder(&mut running.0);
        assert_eq!(busy.status.code(), Some(2), "{}", text(&busy.stderr));
        assert!(text(&busy.stderr).contains("a build is using"), "{}", text(&busy.stderr));
        // Once the build is gone (its helper too), prune removes everything.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let pruned = loop {
            let out = as_user(bin, &["prune", "-f", "--root", store_s]);
            if out.status.success() || std::time::Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        ok(&pruned, &format!("{}: prune", mode.name()));
        assert!(text(&pruned.stderr).contains("removed "), "{}", text(&pruned.stderr));
        let rm = as_user("rm", &["-rf", store_s]);
        assert!(
            rm.status.success(),
            "{}: after prune the user can remove the store: {}",
            mode.name(),
            text(&rm.stderr)
        );
    }
}

/// BuildKit's own Dockerfile: `WORKDIR /work` then `RUN --mount=from=binaries tar c .` — a bind
/// mount without a target is mounted at the working directory; relative targets join it.
#[test]
fn mount_targets_are_relative_to_the_workdir() {
    let Some(mode) = modes("the mount target checks").into_iter().next() else { return };
    let dir = Dir::new(&mode);
    let dockerfile = "FROM busybox AS binaries\nRUN mkdir /bin2 && echo bin > /marker\n\
        FROM busybox\nWORKDIR /work\n\
        RUN --mount=from=binaries cat marker > /out1\n\
        RUN --mount=from=binaries,target=sub cat sub/marker > /out2\n";
    dir.write(&mode, &[("ctx/Dockerfile", dockerfile)]);
    let dest = format!("type=local,dest={}", dir.path().join("out").display());
    let out = build(&dir, &mode, &["-o", &dest, dir.path().join("ctx").to_str().expect("utf-8")]);
    ok(&out, "mount target default");
    let read = |f: &str| fs_err::read_to_string(dir.path().join("out").join(f)).expect(f);
    assert_eq!(read("out1"), "bin\n");
    assert_eq!(read("out2"), "bin\n");
    assert!(!dir.path().join("out/work/sub").exists(), "the mount target stub is not in the image");
}

/// hako's own image (dist/Dockerfile: the static binary on busybox), built by hako itself with
/// scripts/build-image.sh, runs in a container under Docker's default seccomp profile with no
/// library from the host, and builds a Dockerfile with RUN there: as root (auto isolation:
/// chroot) and as its unprivileged user with no new privileges (ptrace).
#[test]
fn the_static_image_builds_in_a_locked_down_container() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let profile = repo.join("../shared/ci-profiles/docker-default-seccomp.json");
    let bin = repo.join("target/x86_64-unknown-linux-musl/release/hako");
    if !nix::unistd::geteuid().is_root() || !have("podman") || !have("runc") || !profile.is_file() {
        skip("the static image check: needs root, podman, runc and ../shared/ci-profiles");
        return;
    }
    if !bin.is_file() {
        skip(
            "the static image check: no static binary (scripts/build-static.sh makes it; scripts/test.sh runs it)",
        );
        return;
    }
    let ld = LockedDown::new("static-test", profile);
    let dir = ld.dir.clone();
    let out = Command::new(repo.join("scripts/build-image.sh"))
        .arg(dir.join("image"))
        .output()
        .expect("build-image");
    assert!(out.status.success(), "scripts/build-image.sh: {}{}", text(&out.stdout), text(&out.stderr));
    fs_err::write(dir.join("ctx/Dockerfile"), "FROM busybox\nRUN echo hi > /made && chown 42 /made\n")
        .expect("write");
    // No host library: the static binary is all the image needs.
    let out = ld
        .podman(None)
        .arg(format!("oci:{}/image:latest", dir.display()))
        .args(["build", "--build-context", "busybox=oci-layout:///w/bb", "-t", "out:latest"])
        .args(["-o", "type=oci,dest=/w/out,tar=false"])
        .arg("/w/ctx")
        .output()
        .expect("podman");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    if !out.status.success() && (stderr.contains("cgroup") || stderr.contains("OCI permission denied")) {
        skip(&format!("the static image check: podman cannot run containers here: {stderr}"));
        return;
    }
    assert!(out.status.success(), "the image's hako builds there:\n{stdout}\n{stderr}");
    assert!(stderr.contains("isolation chroot: running as root"), "{stderr}");
    let rootfs = crate::common::umoci_unpack(
        &dir.join("out"),
        "latest",
        &dir.join("bundle"),
        "the build in the image",
    );
    let made = fs_err::metadata(rootfs.join("made")).expect("made");
    assert_eq!((made.uid(), made.len()), (42, 3));

    // As the image's unprivileged user with no new privileges (a restricted Kubernetes pod):
    // auto picks ptrace and the step's chown is in the layer.
    let out = ld
        .podman(Some("1000:1000"))
        .arg(format!("oci:{}/image:latest", dir.display()))
        .args(["build", "--build-context", "busybox=oci-layout:///w/bb", "-t", "out:latest"])
        .args(["-o", "type=oci,dest=/tmp/out,tar=false"])
        .arg("/w/ctx")
        .output()
        .expect("podman");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "the image's hako builds there as uid 1000:\n{stdout}\n{stderr}");
    assert!(stderr.contains("isolation ptrace: "), "{stderr}");
}

/// Independent stages build at the same time (issue 13): two stages that each sleep 2 s, and a
/// final stage copying from both, take under 3.6 s, in every mode (each stage gets its own
/// sandbox helper), and give the image a build with the stages in another order gives.
#[test]
fn independent_stages_run_at_the_same_time() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        skip("parallel stages: this machine has one core, so stages are built one at a time");
        return;
    }
    let df = "FROM busybox AS left\nRUN sleep 2 && echo left > /left\n\
              FROM busybox AS right\nRUN sleep 2 && echo right > /right\n\
              FROM busybox\nCOPY --from=left /left /\nCOPY --from=right /right /\nRUN cat /left /right > /both\n";
    for mode in modes("parallel stages") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", df)]);
        let ctx = dir.path().join("ctx");
        let started = std::time::Instant::now();
        let out = build(&dir, &mode, &[ctx.to_str().expect("utf-8")]);
        let took = started.elapsed();
        ok(&out, mode.name());
        assert!(took < std::time::Duration::from_millis(3600), "{}: took {took:?}", mode.name());
        // The same stages declared the other way round: the same image.
        let swapped =
            df.replace("AS left", "AS tmp").replace("AS right", "AS left").replace("AS tmp", "AS right");
        let swapped = swapped
            .replace("echo left > /left", "echo TMP")
            .replace("echo right > /right", "echo left > /left");
        let swapped = swapped.replace("echo TMP", "echo right > /right");
        let other = Dir::new(&mode);
        other.write(&mode, &[("ctx/Dockerfile", &swapped)]);
        let out2 = build(&other, &mode, &[other.path().join("ctx").to_str().expect("utf-8")]);
        ok(&out2, mode.name());
        assert_eq!(
            text(&out.stdout),
            text(&out2.stdout),
            "{}: one image whatever the stage order",
            mode.name()
        );
    }
}

/// Two stages built at the same time that copy from the same earlier stage both find its files
/// (each may extract them; the first kept copy is the one both read).
#[test]
fn parallel_stages_copy_from_one_stage() {
    let df = "FROM busybox AS src\nRUN echo s > /s\n\
              FROM busybox AS a\nCOPY --from=src /s /a\nCOPY --from=src /bin/busybox /bb-a\n\
              FROM busybox AS b\nCOPY --from=src /s /b\nCOPY --from=src /bin/busybox /bb-b\n\
              FROM busybox\nCOPY --from=a /a /\nCOPY --from=b /b /\nRUN cat /a /b > /ab\n";
    let Some(mode) = modes("parallel stages copying from one stage").into_iter().next() else { return };
    for round in 0..3 {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", df)]);
        let out = build(&dir, &mode, &[dir.path().join("ctx").to_str().expect("utf-8")]);
        ok(&out, &format!("{}, round {round}", mode.name()));
    }
}

/// A step's processes start with default signal actions, whatever the builder ignores (Rust
/// ignores SIGPIPE): SIGPIPE kills, and `yes | head` ends, in every mode.
#[test]
fn steps_get_default_signal_actions() {
    for mode in modes_and_snapshotters("the signal checks") {
        let dir = Dir::new(&mode);
        let df = "FROM busybox\nRUN yes | head -n 2 > /y; sh -c 'kill -PIPE $$; exit 0'; echo $? > /pipe\n";
        dir.write(&mode, &[("ctx/Dockerfile", df)]);
        let dest = format!("type=local,dest={}", dir.path().join("out").display());
        let mut child =
            build_command(&dir, &mode, &["-o", &dest, dir.path().join("ctx").to_str().expect("utf-8")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "{}: `yes | head` ended and the build passed",
            mode.name()
        );
        assert_eq!(fs_err::read_to_string(dir.path().join("out/y")).expect("y"), "y\ny\n", "{}", mode.name());
        let pipe = fs_err::read_to_string(dir.path().join("out/pipe")).expect("pipe");
        assert_eq!(pipe, "141\n", "{}: SIGPIPE kills (128 + 13), it is not ignored", mode.name());
    }
}

/// Snapshots are never synced, so they are trusted only in the boot that made them: a sandbox
/// directory whose `boot-id` names another boot has its snapshots removed before a step uses
/// them, and the build makes what it needs again, with the right result.
#[test]
fn snapshots_from_another_boot_are_made_again() {
    for mode in modes_and_snapshotters("the snapshots-from-another-boot check") {
        let dir = Dir::new(&mode);
        let as_user = |program: &str, args: &[&str]| {
            let out =
                mode.command(program).args(args).stdin(std::process::Stdio::null()).output().expect("run");
            ok(&out, &format!("{}: {program} {args:?}", mode.name()));
        };
        let run = |n: u32| {
            let ctx = format!("ctx{n}");
            dir.write(
                &mode,
                &[(&format!("{ctx}/Dockerfile"), &format!("FROM busybox\nRUN echo {n} > /n\n"))],
            );
            let dest = format!("type=local,dest={}", dir.path().join(format!("out{n}")).display());
            ok(
                &build(&dir, &mode, &["-o", &dest, dir.path().join(&ctx).to_str().expect("utf-8")]),
                mode.name(),
            );
            let got = fs_err::read_to_string(dir.path().join(format!("out{n}/n"))).expect("n");
            assert_eq!(got, format!("{n}\n"), "{}: build {n}", mode.name());
        };
        run(1);
        let base = dir.path().join("store/sandbox").join(mode.sandbox_dir());
        let boot = fs_err::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
        let recorded = fs_err::read_to_string(base.join("boot-id")).expect("the sandbox records its boot");
        assert_eq!(recorded, boot, "{}", mode.name());
        let planted = base.join("snapshots/planted");
        as_user("mkdir", &[planted.to_str().expect("utf-8")]);
        run(2);
        assert!(planted.is_dir(), "{}: in the same boot, snapshots are kept", mode.name());
        as_user("sh", &["-c", &format!("echo another-boot > {}", base.join("boot-id").display())]);
        run(3);
        assert!(!planted.exists(), "{}: snapshots from another boot are removed", mode.name());
        let recorded = fs_err::read_to_string(base.join("boot-id")).expect("boot-id");
        assert_eq!(recorded, boot, "{}: this boot is recorded again", mode.name());
        let left: Vec<String> = dir_names(&base).into_iter().filter(|n| n.starts_with("stale-")).collect();
        assert!(left.is_empty(), "{}: nothing of the earlier boot is left: {left:?}", mode.name());
    }
}

/// An OCI archive written while the build runs (each RUN layer of the image copied into it as it
/// is made, see `export::spool`) is byte for byte the archive a rebuild from the cache writes in
/// one go; its blobs are what their names say, and a stage that is not the image's puts nothing
/// in it. In every mode and snapshotter: the step's helper writes into the builder's file, whose
/// descriptor the step itself never sees.
#[test]
fn archives_written_during_the_build_are_the_archives_written_after() {
    // More than a MiB of gzip: the blob's copy is written on its own thread.
    const DF: &str = "FROM busybox AS other\nRUN echo other > /other\n\
        FROM busybox AS base\n\
        RUN awk 'BEGIN { srand(7); for (i = 0; i < 800000; i++) printf \"%04x\", int(rand() * 65536) }' > /noise\n\
        FROM base\nCOPY f /f\nCOPY --from=other /other /other\n\
        RUN echo two > /two && { [ ! -d /proc/self ] || [ ! -e /proc/$$/fd/3 ] || { ls -l /proc/$$/fd; exit 7; }; }\n";
    for mode in modes_and_snapshotters("archives written during the build") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", DF), ("ctx/f", "f\n")]);
        let ctx = dir.path().join("ctx");
        let ctx = ctx.to_str().expect("utf-8");
        let spooled = dir.path().join("spooled.tar");
        let out = build(&dir, &mode, &["-o", &format!("type=oci,dest={}", spooled.display()), ctx]);
        ok(&out, mode.name());
        let again = build(&dir, &mode, &["-o", "type=oci,dest=-", ctx]);
        ok(&again, mode.name());
        assert!(text(&again.stderr).contains(": 0 steps run"), "{}: {}", mode.name(), text(&again.stderr));
        let bytes = fs_err::read(&spooled).expect("archive");
        assert!(
            bytes == again.stdout,
            "{}: the archive written during the build is the one written after",
            mode.name()
        );
        let mut blobs = 0;
        for entry in tar::Archive::new(&bytes[..]).entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) else { continue };
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).expect("read");
            assert_eq!(hako::digest::Digest::of(&data).hex(), hex, "{}: {path}", mode.name());
            blobs += 1;
        }
        // busybox, /noise, /f, /other and /two; the config; the manifest.
        assert_eq!(blobs, 7, "{}: the image's blobs, each once", mode.name());
        let left: Vec<String> = dir_names(dir.path()).into_iter().filter(|n| n.starts_with(".tmp")).collect();
        assert!(left.is_empty(), "{}: no temporary file left: {left:?}", mode.name());
    }
}

/// A step never gets the descriptors the builder inherited (a CI runner's pipes, which a step's
/// daemon would keep open): here fd 9, in every mode where the step has a /proc to look in.
#[test]
fn steps_do_not_inherit_the_builders_descriptors() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let df =
        "FROM busybox\nRUN [ ! -d /proc/self ] || [ ! -e /proc/$$/fd/9 ] || { ls -l /proc/$$/fd; exit 7; }\n";
    let extra = fs_err::File::open("/dev/null").expect("/dev/null");
    let raw = extra.as_raw_fd();
    for mode in modes_and_snapshotters("inherited descriptors") {
        let dir = Dir::new(&mode);
        dir.write(&mode, &[("ctx/Dockerfile", df)]);
        let mut cmd = build_command(&dir, &mode, &[dir.path().join("ctx").to_str().expect("utf-8")]);
        // SAFETY: dup2 only, between fork and exec; its copy is not close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                if nix::libc::dup2(raw, 9) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
            });
        }
        ok(&cmd.output().expect("run hako"), mode.name());
    }
}
