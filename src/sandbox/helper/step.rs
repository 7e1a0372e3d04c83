//! Running one step: the root, the mounts, the container (libcontainer, or chroot), the output,
//! and the layer made from what changed.

use super::*;

impl Ctx {
    pub(super) fn run(&mut self, req: &RunRequest, out: &mut impl Write) -> Result<RunResult, Fail> {
        if let Some(note) = self.pending_note.take() {
            reply(out, &Reply::Note(note)).map_err(|e| e.to_string())?;
        }
        let name = self.next_name("run");
        let dir = self.runs.join(&name);
        fs_err::create_dir_all(&dir).map_err(|e| e.to_string())?;
        self.successors = req.successors.clone();
        if req.insecure && (self.traced || self.chroot) {
            let note = "RUN --security=insecure: a step under --isolation=chroot or ptrace has no sandbox to \
                        leave; it runs as the others do";
            reply(out, &Reply::Note(note.into())).map_err(|e| e.to_string())?;
        }
        let result = if self.traced {
            self.run_traced(req, &dir, out)
        } else if self.chroot {
            self.run_chroot(req, &dir, out)
        } else {
            self.run_in(req, &dir, &name, out)
        };
        self.successors.clear();
        // Mounts made for the step are gone by now (dropped in run_in); the directory may hold
        // an upper that did not become a snapshot.
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    pub(super) fn run_in(
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
            Tree::Overlay { .. } => None,
        };
        let mut held = Held::default();
        let mut mounts = self.etc_files(dir, &req.options.extra_hosts)?;
        for (i, m) in req.mounts.iter().enumerate() {
            mounts.push(self.prepare_mount(m, &dir.join(format!("m{i}")), &mut held, out)?);
        }
        make_cwd(root.path(), &req.process.cwd)?;
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
        // A privileged step (RUN --security=insecure) gets no filter, as in BuildKit.
        let (seccomp, privileged) =
            if req.insecure { (None, Some(self.privileged())) } else { (self.seccomp_programs(out)?, None) };
        let step = StepSpec {
            seccomp: seccomp.is_some(),
            privileged,
            root: root.path().to_path_buf(),
            // HOME as runc sets it, `/` for a user the image's passwd does not name, where
            // libcontainer leaves it unset.
            process: self.process_here(&super::home::with_home(root.path(), &req.process)),
            hostname: HOSTNAME.into(),
            netns,
            rootless: self.rootless,
            cgroups_path: format!("/hako/{name}"),
            mounts,
            options: req.options.clone(),
        };
        let spec = spec::build(&step).map_err(|e| format!("runtime spec: {e}"))?;
        let bundle = dir.join("bundle");
        fs_err::create_dir_all(&bundle).map_err(|e| e.to_string())?;
        spec.save(bundle.join("config.json")).map_err(|e| format!("writing the runtime spec: {e}"))?;

        let started = Instant::now();
        let exit = self.execute(name, &bundle, seccomp, out)?;
        let run_ms = started.elapsed().as_secs_f64() * 1000.0;
        overlay::remove_stubs(root.path(), &stubs);
        drop(held);
        let (lowers, plain) = match root {
            Tree::Overlay { mount, lowers } => {
                mount.unmount().map_err(|e| format!("unmounting the step's root: {e}"))?;
                (lowers, None)
            }
            Tree::Plain(p) => (Vec::new(), Some(p)),
        };
        let changes = match (&plain, &before) {
            (Some(root), Some(before)) => Changes::Copy { root, before, after: None },
            _ => Changes::Upper { lowers: &lowers, copied_up: &copied_up },
        };
        self.finish(req, exit, run_ms, &rootfs, changes)
    }

    /// The layer of a finished step, from its changes.
    pub(super) fn finish(
        &self,
        req: &RunRequest,
        exit: Exit,
        run_ms: f64,
        rootfs: &Path,
        changes: Changes<'_>,
    ) -> Result<RunResult, Fail> {
        let mut result = RunResult { exit, layer: None, notes: Vec::new(), run_ms, teed: false };
        if exit != Exit::Code(0) || !req.commit {
            return Ok(result);
        }
        let upper = rootfs.join("upper");
        let codec = req.codec().map_err(|e| e.to_string())?;
        // A copy of the descriptor: the writer closes its own.
        let tee = req.tee.and_then(|offset| {
            let fd = self.tee.as_ref()?.try_clone().ok()?;
            Some(crate::store::Tee { file: std::fs::File::from(fd), offset })
        });
        let mut w = LayerWriter::teed(&self.store, codec, req.clamp, tee).map_err(|e| e.to_string())?;
        let summary = match &changes {
            Changes::Upper { lowers, copied_up } => {
                overlay::prune_copied_up(&upper, copied_up);
                let xattr_prefix = if self.rootless { XattrPrefix::User } else { XattrPrefix::Trusted };
                let opts =
                    DiffOptions { clamp: req.clamp, xattr_prefix, ownership: None, lowers: Some(lowers) };
                crate::layer::diff::write_diff(&upper, &mut w, &opts)
            }
            Changes::Copy { root, before, after: Some(after) } => {
                crate::layer::walkdiff::write_recorded_changes(root, before, after, &mut w, req.clamp)
            }
            Changes::Copy { root, before, after: None } => {
                crate::layer::walkdiff::write_changes(root, before, &mut w, req.clamp)
            }
        }
        .map_err(|e| format!("turning the step's changes into a layer: {e}"))?;
        if summary.skipped_sockets > 0 {
            result.notes.push(format!("{} socket(s) left out of the layer", summary.skipped_sockets));
        }
        // A step that changed nothing still makes a layer, an empty tar, as BuildKit's differ
        // writes one: the image has a layer per step, and its config the same diff ids.
        let (layer, teed) = w.finish_teed().map_err(|e| e.to_string())?;
        let layer = LayerRef::from_layer(&layer);
        result.teed = teed;
        let mut chain = req.layers.clone();
        chain.push(layer.clone());
        match &changes {
            // The copy holds exactly the new layer's filesystem now: the next step starts from it.
            Changes::Copy { root, after, .. } => self.keep_tree(root, &chain, after.as_ref()),
            Changes::Upper { .. } => {
                // Unsynced, as every snapshot (see `snapshots::forget_earlier_boots`).
                let id = overlay::chain_ids(&chain).pop().unwrap_or_default();
                rename_into_place(&upper, &self.snapshots.join(id))?;
            }
        }
        result.layer = Some(layer);
        Ok(result)
    }

    /// A step under `--isolation=chroot` (see [`crate::sandbox::chroot`]).
    pub(super) fn run_chroot(
        &mut self,
        req: &RunRequest,
        dir: &Path,
        out: &mut impl Write,
    ) -> Result<RunResult, Fail> {
        use crate::sandbox::chroot::Injections;
        self.refuse_without_namespaces(req)?;
        let rootfs = dir.join("rootfs");
        let Tree::Plain(root) = self.tree(&req.layers, &rootfs, true, out)? else {
            return Err(Fail::Env("chroot isolation needs a copied root".into()));
        };
        let before = crate::layer::walkdiff::record(&root).map_err(|e| e.to_string())?;
        make_cwd(&root, &req.process.cwd)?;
        let mut inj = Injections::new(&root, &dir.join("aside"));
        let mut held = Held::default();
        let exe = match self.inject_mounts(req, dir, &root, &mut inj, &mut held, out) {
            Ok((exe, _)) => exe,
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
        self.finish(req, exit, run_ms, &rootfs, Changes::Copy { root: &root, before: &before, after: None })
    }

    /// What chroot and ptrace isolation cannot give a step: a network namespace.
    pub(super) fn refuse_without_namespaces(&self, req: &RunRequest) -> Result<(), Fail> {
        if req.network != Network::None {
            return Ok(());
        }
        Err(Fail::Input(format!(
            "RUN --network=none needs a network namespace, which --isolation={} does not make",
            self.isolation_name()
        )))
    }

    /// `chroot` or `ptrace`: the isolation of a helper that makes no namespaces.
    fn isolation_name(&self) -> &'static str {
        if self.traced { "ptrace" } else { "chroot" }
    }

    /// Puts what mounts would provide into `root` for a step run without mount namespaces (chroot
    /// and ptrace isolation; see [`crate::sandbox::chroot`]): device nodes (chroot; ptrace steps
    /// use the machine's `/dev`), `/etc/hosts` and `/etc/resolv.conf`, and each mount's content.
    /// Then finds the step's executable in the root (a heredoc script is one of the files put in).
    /// Returns it, and the targets given an owner (for ptrace isolation to record). On an error the
    /// caller takes `inj` out again.
    pub(super) fn inject_mounts(
        &mut self,
        req: &RunRequest,
        dir: &Path,
        root: &Path,
        inj: &mut crate::sandbox::chroot::Injections,
        held: &mut Held,
        out: &mut impl Write,
    ) -> Result<(String, Vec<Owned>), Fail> {
        use crate::sandbox::chroot::Content;
        let mut owned = Vec::new();
        if !self.traced {
            for (name, major, minor) in crate::sandbox::chroot::DEVICES {
                inj.add(&format!("/dev/{name}"), Content::Char(major, minor))?;
            }
        }
        // A traced step's uname names it as BuildKit's (see the tracer); a chroot step's, the
        // machine.
        let machine = (!self.traced).then(nix::sys::utsname::uname).and_then(Result::ok);
        let machine = machine.as_ref().and_then(|u| u.nodename().to_str());
        for (target, data) in super::mounts::etc_contents(&req.options.extra_hosts, machine) {
            inj.add(target, Content::File { data, mode: 0o644, uid: 0, gid: 0 })?;
            owned.push((target.to_string(), 0, 0));
        }
        for (i, m) in req.mounts.iter().enumerate() {
            let mdir = dir.join(format!("m{i}"));
            fs_err::create_dir_all(&mdir).map_err(|e| e.to_string())?;
            match m {
                MountRequest::Tmpfs { target, .. } => inj.add(target, Content::Dir(0o1777))?,
                MountRequest::Secret { data, target, mode, uid, gid } => {
                    inj.add(target, Content::File { data: data.clone(), mode: *mode, uid: *uid, gid: *gid })?;
                    owned.push((target.clone(), *uid, *gid));
                }
                MountRequest::Cache { key, target, sharing, mode, uid, gid, seed, .. } => {
                    let new = NewCache { mode: *mode, uid: *uid, gid: *gid, seed: seed.as_ref() };
                    let path = self.cache_dir(key, sharing, new, &mdir, held, out)?;
                    inj.add(target, Content::MoveIn(path))?;
                    owned.push((target.clone(), *uid, *gid));
                }
                MountRequest::Bind { from, source, target, .. } => {
                    let tree = match from {
                        BindFrom::Host(p) => Tree::Plain(PathBuf::from(p)),
                        BindFrom::Layers(layers) => self.tree(layers, &mdir, false, out)?,
                    };
                    let src = super::mounts::source_in(tree.path(), source, "--mount source")?;
                    inj.add(target, Content::CopyIn(src))?;
                }
                MountRequest::Ssh { .. } => {
                    return Err(Fail::Input(format!(
                        "RUN --mount=type=ssh needs a bind mount, which --isolation={} cannot make",
                        self.isolation_name()
                    )));
                }
            }
        }
        let arg0 = req.process.args.first().map_or("", String::as_str);
        let exe = crate::sandbox::chroot::find_executable(root, arg0, &req.process.env).ok_or_else(|| {
            Fail::Input(format!(
                "executable '{arg0}' not found in $PATH (the image has no such program: install it in an earlier \
                 step, or name another one)"
            ))
        })?;
        Ok((exe, owned))
    }

    pub(super) fn execute_chroot(
        &self,
        root: &Path,
        req: &RunRequest,
        exe: &str,
        out: &mut impl Write,
    ) -> Result<Exit, Fail> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let process = super::home::with_home(root, &req.process);
        let pid = crate::sandbox::chroot::spawn(root, exe, &process, &w).map_err(Fail::Env)?;
        drop(w);
        let mut kill_all = || {
            // The step is its own session, its children in its group; what left the group (a
            // daemon) is found by its root.
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            crate::sandbox::chroot::kill_rooted(root);
        };
        // When the step's first process ends, the rest go, as in a pid namespace: its output ends
        // then, even if a background job of the step held it open.
        let (exit, output) = std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let exit = wait(pid.as_raw());
                crate::sandbox::chroot::kill_rooted(root);
                reap_orphans();
                exit
            });
            let output = forward(r.as_fd(), out, &mut kill_all);
            (waiter.join(), output)
        });
        let exit = exit
            .map_err(|_| Fail::Env("the thread waiting for the step panicked".into()))?
            .map_err(Fail::Env)?;
        output.map_err(|e| Fail::Env(format!("forwarding the step's output: {e}")))?;
        Ok(exit)
    }

    /// The step's process as this helper can run it: a single-id user namespace denies
    /// `setgroups`, which libcontainer then refuses to start a process with groups for, so
    /// there the step keeps the groups it has (it can have no other id anyway).
    fn process_here(&self, p: &crate::sandbox::protocol::Process) -> crate::sandbox::protocol::Process {
        let mut p = p.clone();
        if self.squash {
            p.groups.clear();
        }
        p
    }

    /// What a `RUN --security=insecure` step gets: every capability this helper holds, and the
    /// device nodes BuildKit adds where they can be made (not in a user namespace).
    fn privileged(&self) -> spec::Privileged {
        let caps = caps::read(None, caps::CapSet::Bounding)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).ok())
            .collect();
        let devices = if self.rootless { Vec::new() } else { spec::privileged_devices(free_loop()) };
        spec::Privileged { caps, devices }
    }

    /// Docker's seccomp profile for namespace-isolated steps, compiled on the first one; `None`
    /// where the kernel has no seccomp, which the first step's output says.
    fn seccomp_programs(&mut self, out: &mut impl Write) -> Result<Option<Programs>, Fail> {
        if let Some(p) = &self.seccomp {
            return Ok(p.clone());
        }
        let caps = spec::docker_cap_names();
        let programs =
            crate::sandbox::seccomp::default_programs(&caps).map_err(|e| Fail::Env(e.to_string()))?;
        if programs.is_none() {
            let note = "this kernel (or architecture) has no seccomp filter support: steps run without Docker's \
                        default seccomp profile, so calls a docker build refuses (unshare, mount, keyctl …) succeed";
            reply(out, &Reply::Note(note.into())).map_err(|e| e.to_string())?;
        }
        let p = programs.map(std::sync::Arc::new);
        self.seccomp = Some(p.clone());
        Ok(p)
    }

    pub(super) fn execute(
        &self,
        name: &str,
        bundle: &Path,
        seccomp: Option<Programs>,
        out: &mut impl Write,
    ) -> Result<Exit, Fail> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let w2 = w.try_clone().map_err(|e| e.to_string())?;
        let null: OwnedFd = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?.into();
        let lc = |what: &str, e: libcontainer::error::LibcontainerError| Fail::Env(format!("{what}: {e}"));
        // The step's processes start with default signal actions, not the helper's ignored ones:
        // its init process is forked when the container is built.
        let signals = crate::sandbox::DefaultSignals::set();
        let mut container = ContainerBuilder::new(name.to_string(), SyscallType::default())
            .with_executor(StepExecutor { seccomp })
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
        drop(signals);
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

/// The number of the first free loop device, as BuildKit asks `/dev/loop-control` (which makes
/// one if none is free); 0 when it cannot say.
fn free_loop() -> i64 {
    const LOOP_CTL_GET_FREE: nix::libc::c_ulong = 0x4C82;
    let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/loop-control") else {
        return 0;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: an ioctl without an argument on a descriptor this function owns.
    let n = unsafe { nix::libc::ioctl(f.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    i64::from(n.max(0))
}

/// Compiled seccomp filters, shared by the steps of a helper.
type Programs = std::sync::Arc<Vec<seccompiler::BpfProgram>>;

/// libcontainer's executor, run in the step's init process after its capabilities are set:
/// installs the seccomp filters (if any) and drops the `CAP_SYS_ADMIN` kept for that, then execs
/// the step as the default executor does.
#[derive(Clone)]
struct StepExecutor {
    seccomp: Option<Programs>,
}

impl Executor for StepExecutor {
    fn exec(&self, spec: &libcontainer::oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        // The step's first process dies with this helper, even killed with -9 (a process group
        // killed whole, the OOM killer), and the pid namespace with it: the helper kills it when
        // the builder goes, but cannot when it goes too. Set here, after the step's ids are: a
        // change of ids clears it. (Its parent is the helper's thread that started it, which
        // waits for it.)
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        if let Some(programs) = &self.seccomp {
            crate::sandbox::seccomp::install_and_drop_admin(programs)
                .map_err(|e| ExecutorError::Execution(Box::new(e)))?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &libcontainer::oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// A path put into a step's root with the owner it must have: target, uid, gid.
pub(super) type Owned = (String, u32, u32);

/// Creates the step's working directory inside `root` when missing, as runc (and so BuildKit)
/// does; libcontainer and chroot do not.
pub(super) fn make_cwd(root: &Path, cwd: &str) -> Result<(), Fail> {
    let path = crate::layer::rootpath::resolve_in_root(root, cwd.trim_start_matches('/'))
        .map_err(|e| Fail::Input(format!("working directory {cwd}: {e}")))?;
    if std::fs::symlink_metadata(&path).is_err() {
        fs_err::create_dir_all(&path).map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub(super) fn start_error(e: &libcontainer::error::LibcontainerError) -> Fail {
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
pub(super) fn forward(
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

pub(super) fn wait(pid: i32) -> Result<Exit, String> {
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

/// Reaps the processes a chroot step orphaned to this helper (its subreaper) that have ended:
/// once [`crate::sandbox::chroot::kill_rooted`] has returned, all of them.
fn reap_orphans() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}
