//! The sandbox helper: `hako __sandbox STORE MODE`, started by the builder (see [`super::Sandbox`]).
//!
//! It is a separate, single-threaded process because libcontainer forks with a raw `clone3` from
//! the calling thread, leaves the process non-dumpable and changes the process-wide working
//! directory; none of that is safe inside the multi-threaded builder. The helper:
//!
//! 1. rootless only: enters a new user namespace, says `ready`, and waits for the builder to
//!    write its uid/gid maps (newuidmap/newgidmap) and say `go`; from then on it is root in there;
//! 2. enters new mount and cgroup namespaces, makes every mount private and mounts `cgroup2` at
//!    `/sys/fs/cgroup`, so libcontainer's cgroup manager has a tree it may write (or may fail to
//!    write, which its rootless mode tolerates) whatever the host runs;
//! 3. serves requests: for each RUN step it prepares snapshots, mounts the overlay and the step's
//!    mounts, runs the container, turns the upper directory into a layer and makes it a snapshot.
//!
//! Everything it mounts lives in its private mount namespace and vanishes when it exits, even
//! after kill -9. Files it writes under `<store>/sandbox/<mode>` belong to ids of its namespace,
//! which is why that tree is only ever changed from in here.

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use super::overlay::{self, Flavor, Mounted};
use super::protocol::{
    BindFrom, Exit, LayerRef, MountRequest, Network, Reply, Request, RunRequest, RunResult,
};
use super::spec::{self, StepMount, StepSpec};
use crate::layer::diff::{DiffOptions, XattrPrefix};
use crate::layer::extract::{ApplyOptions, apply_layer};
use crate::layer::{Compression, LayerWriter};
use crate::store::Store;

/// The hostname of every step (BuildKit's).
pub const HOSTNAME: &str = "buildkitsandbox";

/// Entry point of `hako __sandbox STORE MODE` where MODE is `root`, `rootless` or
/// `rootless-squash` (a single-id map: owners other than 0 cannot be set).
pub fn main(args: &[String]) -> ExitCode {
    let (Some(store), Some(mode)) = (args.first(), args.get(1)) else {
        eprintln!("usage: hako __sandbox STORE root|rootless|rootless-squash (started by hako build)");
        return ExitCode::from(2);
    };
    let mut out = std::io::stdout().lock();
    let mut input = std::io::stdin().lock();
    let rootless = mode.starts_with("rootless");
    let chroot = mode == "chroot";
    // chroot isolation is for machines that allow no namespaces at all: nothing to set up.
    let ready = if chroot { Ok(()) } else { setup(rootless, &mut input, &mut out) };
    match ready {
        Ok(()) => {}
        Err(e) => {
            let _ = reply(&mut out, &Reply::Failed(e));
            return ExitCode::from(1);
        }
    }
    let base = Path::new(store).join("sandbox").join(super::mode_dir(mode));
    let mut ctx = match Ctx::new(Path::new(store), &base, rootless, mode == "rootless-squash", chroot) {
        Ok(c) => c,
        Err(e) => {
            let _ = reply(&mut out, &Reply::Failed(e));
            return ExitCode::from(1);
        }
    };
    let _ = reply(&mut out, &Reply::Note("ready".into()));
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return ExitCode::SUCCESS,
            Ok(_) => {}
        }
        let result = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Run(req)) => ctx.run(&req, &mut out),
            Ok(Request::Wipe) => {
                let (entries, bytes, left) = wipe(&Path::new(store).join("sandbox"));
                if reply(&mut out, &Reply::Wiped { entries, bytes, left }).is_err() {
                    return ExitCode::from(1);
                }
                continue;
            }
            Err(e) => Err(Fail::Env(format!("bad request from the builder: {e}"))),
        };
        let r = match result {
            Ok(done) => reply(&mut out, &Reply::Done(done)),
            Err(Fail::Env(e)) => reply(&mut out, &Reply::Failed(e)),
            Err(Fail::Input(e)) => reply(&mut out, &Reply::Refused(e)),
        };
        if r.is_err() {
            return ExitCode::from(1);
        }
    }
}

/// Why a request failed: the step's fault (`Input`) or the machine's.
enum Fail {
    Input(String),
    Env(String),
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Env(s)
    }
}

fn reply(out: &mut impl Write, r: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

fn setup(rootless: bool, input: &mut impl BufRead, out: &mut impl Write) -> Result<(), String> {
    if rootless {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| {
            format!(
                "cannot create a user namespace: {e}{}",
                super::userns_hint().map(|h| format!(" ({h})")).unwrap_or_default()
            )
        })?;
        writeln!(out, "ready").and_then(|()| out.flush()).map_err(|e| e.to_string())?;
        let mut go = String::new();
        input.read_line(&mut go).map_err(|e| e.to_string())?;
        if go.trim() != "go" {
            return Err("the builder could not set up the user namespace's id maps".into());
        }
    }
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP).map_err(|e| {
        let fallback = if rootless {
            "run hako as root with --isolation=chroot"
        } else {
            "run hako with --isolation=chroot (steps then share the machine's processes and network)"
        };
        format!(
            "cannot create mount and cgroup namespaces: {e}; inside a container whose seccomp profile or \
             capabilities deny namespaces (Docker's default profile does), {fallback}"
        )
    })?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("making mounts private: {e}"))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("cgroup2"), "/sys/fs/cgroup", Some("cgroup2"), flags, None::<&str>)
        .map_err(|e| format!("mounting cgroup2 in the sandbox's cgroup namespace: {e}"))?;
    Ok(())
}

struct Ctx {
    store: Store,
    snapshots: PathBuf,
    runs: PathBuf,
    caches: PathBuf,
    /// Copy snapshotter: the trees of recent steps, by chain id, for the next step to take.
    trees: PathBuf,
    state: PathBuf,
    flavor: Flavor,
    rootless: bool,
    squash: bool,
    steps: u64,
    /// Overlay snapshots, or plain copies where overlayfs cannot be mounted.
    copy: bool,
    /// `--isolation=chroot`: no namespaces, no mounts.
    chroot: bool,
    /// The no-device-nodes note was given.
    said_no_devices: bool,
    /// Said once, with the first step's replies (why steps run on copies).
    pending_note: Option<String>,
    /// A process holding a private network namespace with loopback up (`--network=none`).
    netns: Option<(nix::unistd::Pid, PathBuf)>,
}

impl Ctx {
    fn new(store: &Path, base: &Path, rootless: bool, squash: bool, chroot: bool) -> Result<Ctx, String> {
        let dir = |name: &str| -> Result<PathBuf, String> {
            let p = base.join(name);
            fs_err::create_dir_all(&p).map_err(|e| e.to_string())?;
            Ok(p)
        };
        let ctx = Ctx {
            store: Store::open_readonly(store),
            snapshots: dir("snapshots")?,
            runs: dir("runs")?,
            caches: dir("cache")?,
            trees: dir("trees")?,
            state: dir("state")?,
            flavor: if rootless { Flavor::UserNs } else { Flavor::Root },
            rootless,
            squash,
            steps: 0,
            copy: false,
            chroot,
            said_no_devices: false,
            pending_note: None,
            netns: None,
        };
        let mut ctx = ctx;
        ctx.sweep();
        if chroot {
            ctx.copy = true;
            ctx.pending_note = Some(
                "--isolation=chroot: steps run chrooted into a copy of their parent's filesystem, as root, with \
                 no namespaces: they share the machine's processes and network and get no /proc or /sys"
                    .into(),
            );
        } else if std::env::var("HAKO_SNAPSHOTTER").as_deref() == Ok("copy") {
            ctx.copy = true;
            ctx.pending_note =
                Some("HAKO_SNAPSHOTTER=copy: each step runs on a copy of its parent's filesystem".into());
        } else if let Err(e) = ctx.probe_overlay() {
            ctx.copy = true;
            ctx.pending_note = Some(format!(
                "overlayfs cannot be mounted here ({e}): each step runs on a copy of its parent's filesystem instead \
                 (same result, slower for big images)"
            ));
        }
        Ok(ctx)
    }

    /// Removes what killed helpers left behind (run directories name their helper's pid).
    fn sweep(&self) {
        for dir in [&self.runs, &self.state] {
            let Ok(rd) = std::fs::read_dir(dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
                let alive = pid.is_some_and(|p| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
                        || p == std::process::id() as i32
                });
                if !alive {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// Mounts and unmounts a small overlay, to know whether steps can use overlay snapshots.
    fn probe_overlay(&mut self) -> Result<(), String> {
        let name = self.next_name("probe");
        let dir = self.runs.join(name);
        let lower = dir.join("lower");
        fs_err::create_dir_all(&lower).map_err(|e| e.to_string())?;
        let r = overlay::mount_overlay(&dir.join("o"), &[lower], true, self.flavor)
            .and_then(|m| m.unmount())
            .map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    /// The filesystem of `layers` at `dir`: an overlay of their snapshots (with an upper
    /// directory when `writable`), or, for the copy snapshotter, the layers applied to a new
    /// directory.
    fn tree(
        &mut self,
        layers: &[LayerRef],
        dir: &Path,
        writable: bool,
        out: &mut impl Write,
    ) -> Result<Tree, Fail> {
        fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
        if !self.copy {
            let lowers: Vec<PathBuf> = self.snapshots(layers, out)?.into_iter().rev().collect();
            let m = overlay::mount_overlay(dir, &lowers, writable, self.flavor).map_err(|e| e.to_string())?;
            return Ok(Tree::Overlay(m));
        }
        let root = dir.join("copy");
        // The tree the previous step of this stage left is this step's parent: take it (a
        // rename, so no other build can have it at the same time) instead of extracting.
        if writable && std::fs::rename(self.trees.join(tree_id(layers)), &root).is_ok() {
            return Ok(Tree::Plain(root));
        }
        fs_err::create_dir_all(&root).map_err(|e| e.to_string())?;
        let opts = ApplyOptions { chown: !self.squash, devices: !self.rootless };
        for layer in layers {
            let l = layer.to_layer().map_err(|e| e.to_string())?;
            let reader = crate::layer::open_layer(&self.store, &l).map_err(|e| e.to_string())?;
            apply_layer(reader, &root, opts)
                .map_err(|e| format!("extracting layer {}: {e}", layer.digest))?;
        }
        Ok(Tree::Plain(root))
    }

    /// Keeps a copy-snapshotter tree whose content is the filesystem of `layers`, for the next
    /// step; only the few most recent are kept.
    fn keep_tree(&self, tree: &Path, layers: &[LayerRef]) {
        const KEEP: usize = 3;
        if std::fs::rename(tree, self.trees.join(tree_id(layers))).is_err() {
            return;
        }
        let Ok(rd) = std::fs::read_dir(&self.trees) else { return };
        let mut all: Vec<(i64, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                use std::os::unix::fs::MetadataExt;
                // rename updates ctime: the newest is the most recently kept.
                e.metadata().ok().map(|m| (m.ctime() * 1_000_000_000 + m.ctime_nsec(), e.path()))
            })
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (t, old) in all.into_iter().skip(KEEP) {
            // Taken out of the cache by rename first, so no build can take it while it goes.
            let doomed = self.runs.join(format!("evict-{}-{t}", std::process::id()));
            if std::fs::rename(&old, &doomed).is_ok() {
                let _ = std::fs::remove_dir_all(&doomed);
            }
        }
    }

    fn next_name(&mut self, what: &str) -> String {
        self.steps += 1;
        format!("{what}-{}-{}", std::process::id(), self.steps)
    }

    /// The snapshot directories of `layers`, bottom first, extracting the missing ones.
    fn snapshots(&mut self, layers: &[LayerRef], out: &mut impl Write) -> Result<Vec<PathBuf>, String> {
        let ids = overlay::chain_ids(layers);
        let mut paths: Vec<PathBuf> = Vec::with_capacity(layers.len());
        for (layer, id) in layers.iter().zip(&ids) {
            let path = self.snapshots.join(id);
            if !path.is_dir() {
                let name = self.next_name("snap");
                let tmp = self.runs.join(name);
                fs_err::create_dir_all(&tmp).map_err(|e| e.to_string())?;
                let r = self.extract(layer, &paths, &tmp, out);
                let r = r.and_then(|()| rename_into_place(&tmp.join("upper"), &path));
                let _ = std::fs::remove_dir_all(&tmp);
                r?;
            }
            paths.push(path);
        }
        Ok(paths)
    }

    fn extract(
        &self,
        layer: &LayerRef,
        below: &[PathBuf],
        tmp: &Path,
        out: &mut impl Write,
    ) -> Result<(), String> {
        let l = layer.to_layer().map_err(|e| e.to_string())?;
        let reader = crate::layer::open_layer(&self.store, &l).map_err(|e| e.to_string())?;
        let opts = ApplyOptions { chown: !self.squash, devices: !self.rootless };
        let report = if below.is_empty() {
            let upper = tmp.join("upper");
            fs_err::create_dir_all(&upper).map_err(|e| e.to_string())?;
            apply_layer(reader, &upper, opts)
        } else {
            let lowers: Vec<PathBuf> = below.iter().rev().cloned().collect();
            let m = overlay::mount_overlay(tmp, &lowers, true, self.flavor).map_err(|e| e.to_string())?;
            let r = apply_layer(reader, m.path(), opts);
            m.unmount().map_err(|e| format!("unmounting {}: {e}", tmp.display()))?;
            r
        }
        .map_err(|e| format!("extracting layer {}: {e}", layer.digest))?;
        if report.skipped_devices > 0 {
            let note = format!(
                "{} device node(s) of layer {} not created (a user namespace cannot make device nodes)",
                report.skipped_devices, layer.digest
            );
            reply(out, &Reply::Note(note)).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn run(&mut self, req: &RunRequest, out: &mut impl Write) -> Result<RunResult, Fail> {
        if let Some(note) = self.pending_note.take() {
            reply(out, &Reply::Note(note)).map_err(|e| e.to_string())?;
        }
        let name = self.next_name("run");
        let dir = self.runs.join(&name);
        fs_err::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let result =
            if self.chroot { self.run_chroot(req, &dir, out) } else { self.run_in(req, &dir, &name, out) };
        // Mounts made for the step are gone by now (dropped in run_in); the directory may hold
        // an upper that did not become a snapshot.
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn run_in(
        &mut self,
        req: &RunRequest,
        dir: &Path,
        name: &str,
        out: &mut impl Write,
    ) -> Result<RunResult, Fail> {
        let rootfs = dir.join("rootfs");
        let root = self.tree(&req.layers, &rootfs, true, out)?;
        // The copy snapshotter finds the change by comparing with a record taken now.
        let before = match &root {
            Tree::Plain(p) => Some(crate::layer::walkdiff::record(p).map_err(|e| e.to_string())?),
            Tree::Overlay(_) => None,
        };
        let mut held = Held::default();
        let mut mounts = self.etc_files(dir)?;
        for (i, m) in req.mounts.iter().enumerate() {
            mounts.push(self.prepare_mount(m, &dir.join(format!("m{i}")), &mut held, out)?);
        }
        // runc (and so BuildKit) creates a missing working directory; libcontainer does not.
        let cwd = crate::build::resolve_in_root(root.path(), req.cwd.trim_start_matches('/'))
            .map_err(|e| Fail::Input(format!("working directory {}: {e}", req.cwd)))?;
        if std::fs::symlink_metadata(&cwd).is_err() {
            fs_err::create_dir_all(&cwd).map_err(|e| e.to_string())?;
        }
        let mut stubs = Vec::new();
        let mut copied_up = Vec::new();
        let targets =
            ["/proc", "/dev", "/sys"].into_iter().map(String::from).chain(mounts.iter().map(|m| match m {
                StepMount::Bind { target, .. } | StepMount::Tmpfs { target, .. } => target.clone(),
            }));
        for t in targets {
            if let Some(stub) = overlay::missing_stub(root.path(), &t) {
                let parent = Path::new(&stub).parent().map(|p| root.path().join(p));
                copied_up.extend(overlay::ancestors(root.path(), &stub));
                stubs.push((stub, parent.and_then(|p| std::fs::symlink_metadata(p).ok())));
            }
        }
        let netns = match req.network {
            Network::Host => None,
            Network::None => Some(self.none_netns()?),
        };
        let step = StepSpec {
            root: root.path().to_path_buf(),
            args: req.args.clone(),
            env: req.env.clone(),
            cwd: req.cwd.clone(),
            uid: req.uid,
            gid: req.gid,
            groups: req.groups.clone(),
            hostname: HOSTNAME.into(),
            netns,
            rootless: self.rootless,
            cgroups_path: format!("/hako/{name}"),
            mounts,
        };
        let spec = spec::build(&step).map_err(|e| format!("runtime spec: {e}"))?;
        let bundle = dir.join("bundle");
        fs_err::create_dir_all(&bundle).map_err(|e| e.to_string())?;
        spec.save(bundle.join("config.json")).map_err(|e| format!("writing the runtime spec: {e}"))?;

        let started = Instant::now();
        let exit = self.execute(name, &bundle, out)?;
        let run_ms = started.elapsed().as_secs_f64() * 1000.0;
        overlay::remove_stubs(root.path(), &stubs);
        drop(held);
        let plain = match root {
            Tree::Overlay(m) => {
                m.unmount().map_err(|e| format!("unmounting the step's root: {e}"))?;
                None
            }
            Tree::Plain(p) => Some(p),
        };

        self.finish(req, exit, run_ms, &rootfs, plain.as_deref(), before.as_ref(), &copied_up)
    }

    /// The layer of a finished step: the overlay's upper directory (`plain` is None), or the
    /// changes to the copy at `plain` since `before`.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        req: &RunRequest,
        exit: Exit,
        run_ms: f64,
        rootfs: &Path,
        plain: Option<&Path>,
        before: Option<&crate::layer::walkdiff::Record>,
        copied_up: &[(String, std::fs::Metadata)],
    ) -> Result<RunResult, Fail> {
        let mut result = RunResult { exit, layer: None, notes: Vec::new(), run_ms };
        if exit != Exit::Code(0) || !req.commit {
            return Ok(result);
        }
        let upper = rootfs.join("upper");
        if plain.is_none() {
            overlay::prune_copied_up(&upper, copied_up);
        }
        let compression = match req.compression.as_str() {
            "zstd" => Compression::Zstd,
            "none" => Compression::None,
            _ => Compression::Gzip,
        };
        let mut w = LayerWriter::new(&self.store, compression, req.clamp).map_err(|e| e.to_string())?;
        let xattr_prefix = if self.rootless { XattrPrefix::User } else { XattrPrefix::Trusted };
        let opts = DiffOptions { clamp: req.clamp, xattr_prefix, ownership: None };
        let summary = match (plain, before) {
            (Some(p), Some(before)) => crate::layer::walkdiff::write_changes(p, before, &mut w, req.clamp),
            _ => crate::layer::diff::write_diff(&upper, &mut w, &opts),
        }
        .map_err(|e| format!("turning the step's changes into a layer: {e}"))?;
        if summary.skipped_sockets > 0 {
            result.notes.push(format!("{} socket(s) left out of the layer", summary.skipped_sockets));
        }
        if summary.entries == 0 {
            if let Some(tree) = plain {
                self.keep_tree(tree, &req.layers);
            }
            return Ok(result);
        }
        let layer = LayerRef::from_layer(&w.finish().map_err(|e| e.to_string())?);
        let mut chain = req.layers.clone();
        chain.push(layer.clone());
        match plain {
            // The copy holds exactly the new layer's filesystem now: the next step starts from it.
            Some(tree) => self.keep_tree(tree, &chain),
            None => {
                let id = overlay::chain_ids(&chain).pop().unwrap_or_default();
                rename_into_place(&upper, &self.snapshots.join(id))?;
            }
        }
        result.layer = Some(layer);
        Ok(result)
    }

    /// A step under `--isolation=chroot` (see [`super::chroot`]).
    fn run_chroot(&mut self, req: &RunRequest, dir: &Path, out: &mut impl Write) -> Result<RunResult, Fail> {
        use super::chroot::{Content, Injections};
        if req.network == Network::None {
            return Err(Fail::Input(
                "RUN --network=none needs a network namespace, which --isolation=chroot does not make".into(),
            ));
        }
        let rootfs = dir.join("rootfs");
        let Tree::Plain(root) = self.tree(&req.layers, &rootfs, true, out)? else {
            return Err(Fail::Env("chroot isolation needs a copied root".into()));
        };
        let before = crate::layer::walkdiff::record(&root).map_err(|e| e.to_string())?;
        let cwd = crate::build::resolve_in_root(&root, req.cwd.trim_start_matches('/'))
            .map_err(|e| Fail::Input(format!("working directory {}: {e}", req.cwd)))?;
        if std::fs::symlink_metadata(&cwd).is_err() {
            fs_err::create_dir_all(&cwd).map_err(|e| e.to_string())?;
        }
        let mut inj = Injections::new(&root, &dir.join("aside"));
        let mut held = Held::default();
        let prepared = (|| -> Result<(), Fail> {
            for (name, major, minor) in super::chroot::DEVICES {
                inj.add(&format!("/dev/{name}"), Content::Char(major, minor))?;
            }
            for m in self.etc_files(dir)? {
                if let StepMount::Bind { source, target, .. } = m {
                    let data = fs_err::read(&source).map_err(|e| e.to_string())?;
                    inj.add(&target, Content::File { data, mode: 0o644, uid: 0, gid: 0 })?;
                }
            }
            for (i, m) in req.mounts.iter().enumerate() {
                let mdir = dir.join(format!("m{i}"));
                fs_err::create_dir_all(&mdir).map_err(|e| e.to_string())?;
                match m {
                    MountRequest::Tmpfs { target, .. } => inj.add(target, Content::Dir(0o1777))?,
                    MountRequest::Secret { data, target, mode, uid, gid } => inj.add(
                        target,
                        Content::File { data: data.clone(), mode: *mode, uid: *uid, gid: *gid },
                    )?,
                    MountRequest::Cache { key, target, sharing, mode, uid, gid, seed, .. } => {
                        let new = NewCache { mode: *mode, uid: *uid, gid: *gid, seed: seed.as_ref() };
                        let path = self.cache_dir(key, sharing, new, &mdir, &mut held, out)?;
                        inj.add(target, Content::MoveIn(path))?;
                    }
                    MountRequest::Bind { from, source, target, .. } => {
                        let tree = match from {
                            BindFrom::Host(p) => Tree::Plain(PathBuf::from(p)),
                            BindFrom::Layers(layers) => self.tree(layers, &mdir, false, out)?,
                        };
                        let src = crate::build::resolve_in_root(tree.path(), source.trim_start_matches('/'))
                            .map_err(|e| Fail::Input(format!("--mount source {source}: {e}")))?;
                        if std::fs::symlink_metadata(&src).is_err() {
                            return Err(Fail::Input(format!("--mount source {source:?} does not exist")));
                        }
                        inj.add(target, Content::CopyIn(src))?;
                    }
                    MountRequest::Ssh { .. } => {
                        return Err(Fail::Input(
                            "RUN --mount=type=ssh needs a bind mount, which --isolation=chroot cannot make"
                                .into(),
                        ));
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = prepared {
            let _ = inj.undo();
            return Err(e);
        }
        // Looked up once the step's files are in place (a heredoc script is one of them).
        let found = super::chroot::find_executable(&root, req.args.first().map_or("", String::as_str), &req.env)
            .ok_or_else(|| {
                Fail::Input(format!(
                    "executable '{}' not found in $PATH (the image has no such program: install it in an earlier step, or name another one)",
                    req.args.first().map_or("", String::as_str)
                ))
            });
        let exe = match found {
            Ok(exe) => exe,
            Err(e) => {
                let _ = inj.undo();
                return Err(e);
            }
        };

        if inj.no_devices && !self.said_no_devices {
            self.said_no_devices = true;
            let note = "device nodes cannot be created here (no CAP_MKNOD): /dev/null and the other devices are \
                        plain files in RUN steps";
            reply(out, &Reply::Note(note.into())).map_err(|e| e.to_string())?;
        }
        let started = Instant::now();
        let exit = self.execute_chroot(&root, req, &exe, out);
        let run_ms = started.elapsed().as_secs_f64() * 1000.0;
        let undone = inj.undo();
        drop(held);
        let exit = exit?;
        undone?;
        self.finish(req, exit, run_ms, &rootfs, Some(&root), Some(&before), &[])
    }

    fn execute_chroot(
        &self,
        root: &Path,
        req: &RunRequest,
        exe: &str,
        out: &mut impl Write,
    ) -> Result<Exit, Fail> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let cmd = super::chroot::Command {
            exe,
            args: &req.args,
            env: &req.env,
            cwd: &req.cwd,
            uid: req.uid,
            gid: req.gid,
            groups: &req.groups,
        };
        let pid = super::chroot::spawn(root, &cmd, &w).map_err(Fail::Env)?;
        drop(w);
        // The step is its own session: killing the group takes its children too.
        let output = forward(r.as_fd(), out, &mut || {
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        });
        let exit = wait(pid.as_raw()).map_err(Fail::Env)?;
        output.map_err(|e| Fail::Env(format!("forwarding the step's output: {e}")))?;
        Ok(exit)
    }

    /// `/etc/resolv.conf` (the host's) and `/etc/hosts` for the step: bind-mounted, so what the
    /// step writes to them is discarded and they never reach the layer.
    fn etc_files(&self, dir: &Path) -> Result<Vec<StepMount>, String> {
        let hosts = dir.join("hosts");
        let text = format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        fs_err::write(&hosts, text).map_err(|e| e.to_string())?;
        let resolv = dir.join("resolv.conf");
        let host = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        fs_err::write(&resolv, host).map_err(|e| e.to_string())?;
        for f in [&hosts, &resolv] {
            let _ = std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644));
        }
        Ok(vec![
            StepMount::Bind { source: resolv, target: "/etc/resolv.conf".into(), readonly: false },
            StepMount::Bind { source: hosts, target: "/etc/hosts".into(), readonly: false },
        ])
    }

    fn prepare_mount(
        &mut self,
        m: &MountRequest,
        dir: &Path,
        held: &mut Held,
        out: &mut impl Write,
    ) -> Result<StepMount, Fail> {
        fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
        Ok(match m {
            MountRequest::Bind { from, source, target, rw } => {
                let merged = match from {
                    // A read-only host directory is bound as it is.
                    BindFrom::Host(p) if !*rw => Tree::Plain(PathBuf::from(p)),
                    BindFrom::Host(p) if self.copy => {
                        // Writes must not reach the context: they go to a throwaway copy.
                        let copy = dir.join("copy");
                        let st = std::process::Command::new("cp")
                            .arg("-a")
                            .arg(p)
                            .arg(&copy)
                            .status()
                            .map_err(|e| format!("copying {p} for an rw bind mount: {e}"))?;
                        if !st.success() {
                            return Err(Fail::Env(format!("copying {p} for an rw bind mount failed ({st})")));
                        }
                        Tree::Plain(copy)
                    }
                    BindFrom::Host(p) => Tree::Overlay(
                        overlay::mount_overlay(dir, &[PathBuf::from(p)], true, self.flavor)
                            .map_err(|e| e.to_string())?,
                    ),
                    BindFrom::Layers(layers) => self.tree(layers, dir, *rw, out)?,
                };
                let src = crate::build::resolve_in_root(merged.path(), source.trim_start_matches('/'))
                    .map_err(|e| Fail::Input(format!("--mount source {source}: {e}")))?;
                if std::fs::symlink_metadata(&src).is_err() {
                    return Err(Fail::Input(format!("--mount source {source:?} does not exist")));
                }
                held.trees.push(merged);
                StepMount::Bind { source: src, target: target.clone(), readonly: !*rw }
            }
            MountRequest::Cache { key, target, sharing, mode, uid, gid, readonly, seed } => {
                let new = NewCache { mode: *mode, uid: *uid, gid: *gid, seed: seed.as_ref() };
                let path = self.cache_dir(key, sharing, new, dir, held, out)?;
                StepMount::Bind { source: path, target: target.clone(), readonly: *readonly }
            }
            MountRequest::Tmpfs { target, size } => StepMount::Tmpfs { target: target.clone(), size: *size },
            MountRequest::Secret { data, target, mode, uid, gid } => {
                // The secret lives only in a tmpfs of this helper's private mount namespace. A
                // bind mount keeps its source's noexec, so an executable file (a RUN heredoc with
                // a #! line) needs an exec tmpfs.
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if mode & 0o111 == 0 {
                    flags |= MsFlags::MS_NOEXEC;
                }
                mount(Some("tmpfs"), dir, Some("tmpfs"), flags, Some("mode=0700,size=1m"))
                    .map_err(|e| format!("mounting a tmpfs for a secret: {e}"))?;
                held.tmpfs.push(dir.to_path_buf());
                let file = dir.join("secret");
                let mut f = std::fs::OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .mode(0o600)
                    .open(&file)
                    .map_err(|e| e.to_string())?;
                f.write_all(data).map_err(|e| e.to_string())?;
                drop(f);
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| e.to_string())?;
                if !self.squash {
                    std::os::unix::fs::chown(&file, Some(*uid), Some(*gid)).map_err(|e| e.to_string())?;
                }
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())?;
                StepMount::Bind { source: file, target: target.clone(), readonly: true }
            }
            MountRequest::Ssh { socket, target, .. } => {
                // The user's own agent socket is bound in, so the step sees its owner and mode
                // (the caller, 0600 as ssh-agent makes it: BuildKit's defaults); BuildKit proxies
                // the agent instead, which is what a non-default uid/gid/mode would need.
                std::fs::metadata(socket)
                    .map_err(|e| Fail::Input(format!("ssh agent socket {socket}: {e}")))?;
                StepMount::Bind { source: PathBuf::from(socket), target: target.clone(), readonly: false }
            }
        })
    }

    /// The directory of cache `key`. A new one is a copy of its seed (`from=`, `source=`) or an
    /// empty directory with the given mode and owner. `locked` waits for other users; `private`
    /// gets a throwaway directory under `dir` when another step has it.
    fn cache_dir(
        &mut self,
        key: &str,
        sharing: &str,
        new: NewCache<'_>,
        dir: &Path,
        held: &mut Held,
        out: &mut impl Write,
    ) -> Result<PathBuf, Fail> {
        let mut path = self.caches.join(key);
        let lock_path = self.caches.join(format!("{key}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("{}: {e}", lock_path.display()))?;
        match sharing {
            "locked" => {
                nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
                    .map(|l| held.locks.push(l))
                    .map_err(|(_, e)| format!("locking cache {key}: {e}"))?;
            }
            "private" => match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(l) => held.locks.push(l),
                // In use by another step: this one gets a fresh, throwaway cache.
                Err(_) => path = dir.join("private"),
            },
            _ => {}
        }
        if path.exists() {
            return Ok(path);
        }
        let tmp = dir.join("new-cache");
        match new.seed {
            Some((from, source)) => {
                let tree = match from {
                    BindFrom::Host(p) => Tree::Plain(PathBuf::from(p)),
                    BindFrom::Layers(layers) => self.tree(layers, &dir.join("seed"), false, out)?,
                };
                let src = crate::build::resolve_in_root(tree.path(), source.trim_start_matches('/'))
                    .map_err(|e| Fail::Input(format!("cache mount source {source}: {e}")))?;
                if !src.is_dir() {
                    return Err(Fail::Input(format!("cache mount source {source:?} is not a directory")));
                }
                let st = std::process::Command::new("cp")
                    .arg("-a")
                    .arg(&src)
                    .arg(&tmp)
                    .status()
                    .map_err(|e| format!("seeding cache {key}: {e}"))?;
                if !st.success() {
                    return Err(Fail::Env(format!("seeding cache {key} from {source} failed ({st})")));
                }
            }
            None => {
                fs_err::create_dir_all(&tmp).map_err(|e| e.to_string())?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(new.mode))
                    .map_err(|e| e.to_string())?;
                if !self.squash {
                    std::os::unix::fs::chown(&tmp, Some(new.uid), Some(new.gid))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        rename_into_place(&tmp, &path)?;
        Ok(path)
    }

    /// The path of a network namespace with only loopback, made once per helper by a child that
    /// holds it open and dies with the helper.
    fn none_netns(&mut self) -> Result<PathBuf, String> {
        if let Some((_, p)) = &self.netns {
            return Ok(p.clone());
        }
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        // SAFETY: the helper is single-threaded; the child only makes syscalls and exits.
        match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
            nix::unistd::ForkResult::Child => {
                drop(r);
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                // libcontainer leaves the helper non-dumpable, which makes /proc/<pid>/ns/* of a
                // child belong to the host's root: unreachable from this user namespace.
                let _ = nix::sys::prctl::set_dumpable(true);
                let ok = unshare(CloneFlags::CLONE_NEWNET).is_ok() && loopback_up().is_ok();
                let _ = nix::unistd::write(&w, if ok { b"y" } else { b"n" });
                drop(w);
                if !ok {
                    unsafe { nix::libc::_exit(1) };
                }
                loop {
                    nix::unistd::pause();
                }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let mut b = [0u8; 1];
                let mut f = std::fs::File::from(r);
                let ok = f.read_exact(&mut b).is_ok() && b[0] == b'y';
                if !ok {
                    return Err("cannot create a network namespace for --network=none".into());
                }
                let p = PathBuf::from(format!("/proc/{child}/ns/net"));
                self.netns = Some((child, p.clone()));
                Ok(p)
            }
        }
    }

    fn execute(&self, name: &str, bundle: &Path, out: &mut impl Write) -> Result<Exit, Fail> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let w2 = w.try_clone().map_err(|e| e.to_string())?;
        let null: OwnedFd = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?.into();
        let lc = |what: &str, e: libcontainer::error::LibcontainerError| Fail::Env(format!("{what}: {e}"));
        let mut container = ContainerBuilder::new(name.to_string(), SyscallType::default())
            .with_executor(DefaultExecutor {})
            .with_root_path(&self.state)
            .map_err(|e| lc("container state directory", e))?
            .with_stdin(null)
            .with_stdout(w)
            .with_stderr(w2)
            .validate_id()
            .map_err(|e| lc("container id", e))?
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| start_error(&e))?;
        let started = container.start();
        // The builder's copies of the write ends are gone: the pipe ends when the step's
        // processes do (the pid namespace dies with its first process).
        let mut output = Ok(());
        if started.is_ok() {
            // If the builder goes away (killed, even with -9), the step is killed rather than left
            // running with nobody to report to.
            // Killing the first process of the step's pid namespace kills all of it.
            let init = container.pid().map(|p| nix::unistd::Pid::from_raw(p.as_raw()));
            output = forward(r.as_fd(), out, &mut || {
                if let Some(pid) = init {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
            });
        }
        drop(r);
        let exit = match (started, container.pid()) {
            (Ok(()), Some(pid)) => wait(pid.as_raw()).map_err(Fail::Env),
            (Err(e), _) => Err(start_error(&e)),
            (Ok(()), None) => Err(Fail::Env("the step's process has no pid".into())),
        };
        let _ = container.refresh_status();
        let _ = container.delete(true);
        output.map_err(|e| Fail::Env(format!("forwarding the step's output: {e}")))?;
        exit
    }
}

fn start_error(e: &libcontainer::error::LibcontainerError) -> Fail {
    let text = e.to_string();
    // libcontainer names a missing executable as "executable '/bin/x' not found in $PATH".
    if let Some(i) = text.find("executable '")
        && text.contains("not found")
    {
        return Fail::Input(format!(
            "{} (the image has no such program: install it in an earlier step, or name another one)",
            &text[i..]
        ));
    }
    Fail::Env(format!("starting the step: {text}"))
}

/// Copies the step's output to the builder as `Output` replies, a line at a time (a long line
/// without a newline goes out in 8 KiB pieces). Calls `hangup` when the builder's end of the
/// request pipe (the helper's stdin) closes.
fn forward(
    fd: std::os::fd::BorrowedFd<'_>,
    out: &mut impl Write,
    hangup: &mut dyn FnMut(),
) -> std::io::Result<()> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut buf = vec![0u8; 8192];
    let mut pending: Vec<u8> = Vec::new();
    let stdin = std::io::stdin();
    let mut watch_stdin = true;
    loop {
        let mut fds = vec![PollFd::new(fd, PollFlags::POLLIN)];
        if watch_stdin {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::empty()));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let gone = fds
            .get(1)
            .and_then(PollFd::revents)
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR));
        if gone {
            watch_stdin = false;
            hangup();
        }
        let ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        if !ready {
            continue;
        }
        let n = match nix::unistd::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            reply(out, &Reply::Output(String::from_utf8_lossy(&line).into_owned()))?;
        }
        if pending.len() >= 8192 {
            reply(out, &Reply::Output(String::from_utf8_lossy(&pending).into_owned()))?;
            pending.clear();
        }
    }
    if !pending.is_empty() {
        reply(out, &Reply::Output(String::from_utf8_lossy(&pending).into_owned()))?;
    }
    Ok(())
}

fn wait(pid: i32) -> Result<Exit, String> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Exit::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Exit::Signal(sig as i32)),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for the step: {e}")),
        }
    }
}

/// The key of a copy-snapshotter tree holding the filesystem of `layers`: their chain id.
fn tree_id(layers: &[LayerRef]) -> String {
    overlay::chain_ids(layers).pop().unwrap_or_else(|| "empty".into())
}

/// Removes everything under `dir` (keeping `dir`): entries and bytes removed, and what could not
/// be removed (another mode's files this helper's ids cannot reach), with why.
pub fn wipe(dir: &Path) -> (u64, u64, Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    let (mut entries, mut bytes, mut left) = (0u64, 0u64, Vec::new());
    // Deepest first, so directories are empty when their turn comes.
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>, left: &mut Vec<String>) {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => return left.push(format!("{}: {e}", dir.display())),
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            if m.is_dir() {
                // Directories made unreadable by a step still belong to someone in this namespace.
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700));
                walk(&p, out, left);
            }
            out.push((p, m));
        }
    }
    let mut all = Vec::new();
    walk(dir, &mut all, &mut left);
    for (p, m) in all {
        let r = if m.is_dir() { std::fs::remove_dir(&p) } else { std::fs::remove_file(&p) };
        match r {
            Ok(()) => {
                entries += 1;
                bytes += m.blocks() * 512;
            }
            Err(e) => {
                if left.len() < 20 {
                    left.push(format!("{}: {e}", p.display()));
                }
            }
        }
    }
    (entries, bytes, left)
}

/// Renames `from` to `to` unless `to` already exists (another build made the same thing).
fn rename_into_place(from: &Path, to: &Path) -> Result<(), String> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(_) if to.is_dir() => Ok(()),
        Err(e) => Err(format!("renaming {} to {}: {e}", from.display(), to.display())),
    }
}

/// Brings `lo` up in the current network namespace.
fn loopback_up() -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: plain ioctls on a socket we own, with an ifreq we initialise.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r != 0 { Err(err) } else { Ok(()) }
    }
}

/// How a cache directory that does not exist yet is made.
struct NewCache<'a> {
    mode: u32,
    uid: u32,
    gid: u32,
    seed: Option<&'a (BindFrom, String)>,
}

/// A filesystem tree for a step's root or a bind mount's source.
enum Tree {
    /// Mounted overlay (unmounted on drop).
    Overlay(Mounted),
    /// A plain directory (a copy, or a host directory).
    Plain(PathBuf),
}

impl Tree {
    fn path(&self) -> &Path {
        match self {
            Tree::Overlay(m) => m.path(),
            Tree::Plain(p) => p,
        }
    }
}

/// Mounts and locks that must outlive the container and go right after it.
#[derive(Default)]
struct Held {
    trees: Vec<Tree>,
    tmpfs: Vec<PathBuf>,
    locks: Vec<nix::fcntl::Flock<std::fs::File>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for p in &self.tmpfs {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
