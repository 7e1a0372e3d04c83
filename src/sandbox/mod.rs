//! Running RUN steps: the builder's side of the sandbox.
//!
//! A [`Sandbox`] is a helper process (`hako __sandbox`, see [`helper`]) started on the first RUN
//! of a build and kept for the rest of it. As root it runs in its own mount and cgroup
//! namespaces; as any other user it first enters a user namespace whose maps the builder writes
//! here: the caller's id becomes 0 and the caller's `/etc/subuid`/`/etc/subgid` ranges follow
//! (through `newuidmap`/`newgidmap`), so image files owned by 42 or 65534 keep their owners.
//! Without sub-ids, only the caller's own id is mapped and a warning says what is squashed.
//!
//! The two talk in JSON lines ([`protocol`]). Everything the kernel can refuse is checked and
//! named here or in the helper: a missing user namespace, a bad sub-id range, no newuidmap.

pub mod chroot;
pub mod helper;
pub mod idmap;
pub mod overlay;
pub mod probe;
pub mod protocol;
pub mod ptrace;
pub mod seccomp;
pub mod spec;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use protocol::{Reply, Request, RunRequest, RunResult};

/// The hostname of every step (BuildKit's).
pub const HOSTNAME: &str = "buildkitsandbox";

/// The PATH a step gets when neither the image nor the Dockerfile sets one (BuildKit's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Rootless when not root, root otherwise.
    #[default]
    Auto,
    /// A user namespace, even as root.
    Rootless,
    /// Real root, no user namespace.
    Root,
    /// No namespaces at all, only chroot (root in a throwaway CI container).
    Chroot,
    /// No namespaces, no mounts, no chroot, any user: the step runs under ptrace, its paths
    /// rewritten into its root and root emulated (see [`ptrace`]).
    Ptrace,
}

/// Why the sandbox could not start or run a step.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Setting up the helper failed (namespaces, id maps); the message says what to do.
    #[error("{0}")]
    Setup(String),
    /// The helper could not run the step (mounts, runtime).
    #[error("{0}")]
    Step(String),
    /// The step asks for something that does not exist (an executable, a mount source).
    #[error("{0}")]
    Refused(String),
    /// The helper died or spoke nonsense.
    #[error("the sandbox helper failed: {0}")]
    Helper(String),
}

/// The directory under `<store>/sandbox` for a helper mode: root and rootless snapshots differ in
/// owners and xattrs, so they never share.
pub fn mode_dir(mode: &str) -> &str {
    match mode {
        "root" => "root",
        "rootless-squash" => "rootless-squash",
        "chroot" => "chroot",
        "ptrace" => "ptrace",
        _ => "rootless",
    }
}

/// Signals ignored in this process (Rust ignores SIGPIPE; `nohup` adds SIGHUP) set back to their
/// default for a step's processes, which inherit dispositions through fork and exec: a step with
/// SIGPIPE ignored never ends `yes | head -1`. Dropping it restores what was set.
pub struct DefaultSignals(Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>);

impl DefaultSignals {
    /// Sets every ignored signal to its default action.
    pub fn set() -> DefaultSignals {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installing SIG_DFL, no handler code is involved.
        DefaultSignals(
            ignored_signals()
                .filter_map(|sig| Some((sig, unsafe { sigaction(sig, &default) }.ok()?)))
                .collect(),
        )
    }
}

/// The catchable signals this process ignores, asked without changing any (a handler, such as
/// the Rust runtime's for stack overflows, is never swapped out, even for a moment). Only system
/// calls: usable between fork and exec.
fn ignored_signals() -> impl Iterator<Item = nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)).filter(|sig| {
        // SAFETY: a null new action only reads the current one into `old`.
        let mut old: nix::libc::sigaction = unsafe { std::mem::zeroed() };
        (unsafe { nix::libc::sigaction(*sig as i32, std::ptr::null(), &mut old) } == 0)
            && old.sa_sigaction == nix::libc::SIG_IGN
    })
}

/// In a forked child about to exec a step's command (chroot and ptrace isolation): a session of
/// its own (so the step's processes can be killed as a group), default signal actions, stdin from
/// `null` and stdout and stderr to `output`. Only system calls, no allocation: another thread of
/// the parent may have held the allocator's lock at fork.
pub fn child_start(null: std::os::fd::BorrowedFd<'_>, output: std::os::fd::BorrowedFd<'_>) {
    use std::os::fd::AsRawFd;
    let _ = nix::unistd::setsid();
    default_signals_in_child();
    // SAFETY: dup2 on descriptors the caller keeps open.
    unsafe {
        nix::libc::dup2(null.as_raw_fd(), 0);
        nix::libc::dup2(output.as_raw_fd(), 1);
        nix::libc::dup2(output.as_raw_fd(), 2);
    }
    cloexec_from_3();
}

/// Marks every descriptor from 3 on close-on-exec: what the builder inherited from whoever started
/// it (a CI runner's pipes, a shell's) is not the step's, and a step's daemon holding a runner's
/// pipe open can keep the job waiting. libcontainer closes them for namespaced steps; chroot and
/// ptrace steps are forked by the helper, which needs some until the exec (the tracer's pipe).
fn cloexec_from_3() {
    // SAFETY: close_range only changes descriptor flags; no memory is passed.
    let r = unsafe {
        nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, nix::libc::CLOSE_RANGE_CLOEXEC)
    };
    if r == 0 {
        return;
    }
    // Before Linux 5.11: one by one, as far as descriptors are usually numbered.
    for fd in 3..4096 {
        // SAFETY: fcntl on a descriptor number; harmless when it is not open.
        unsafe {
            nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC);
        }
    }
}

/// In a forked child: says `hako: WHAT: ERROR` on its stderr (the step's output) and exits 127, as
/// a shell does for a command it cannot run. Formatted on the stack: no allocation.
pub fn child_fail(what: &str, e: nix::errno::Errno) -> ! {
    use std::io::Write;
    let mut buf = [0u8; 512];
    let mut rest = &mut buf[..];
    let _ = writeln!(rest, "hako: {what}: {e}");
    let len = 512 - rest.len();
    let _ = nix::unistd::write(std::io::stderr(), &buf[..len]);
    // SAFETY: ends the child without running the parent's exit handlers.
    unsafe { nix::libc::_exit(127) }
}

/// [`DefaultSignals::set`] for a forked child about to exec: nothing to restore, and no allocation.
fn default_signals_in_child() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, sigaction};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in ignored_signals() {
        // SAFETY: installing SIG_DFL, no handler code is involved.
        let _ = unsafe { sigaction(sig, &default) };
    }
}

impl Drop for DefaultSignals {
    fn drop(&mut self) {
        for (sig, old) in &self.0 {
            // SAFETY: restoring the action read from the kernel.
            let _ = unsafe { nix::sys::signal::sigaction(*sig, old) };
        }
    }
}

/// What stops unprivileged user namespaces on this machine, if it can be told.
pub fn userns_hint() -> Option<String> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("kernel.unprivileged_userns_clone=0: enable it with `sysctl -w kernel.unprivileged_userns_clone=1`, or build as root with --isolation=root".into());
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user.max_user_namespaces=0: raise it with `sysctl -w user.max_user_namespaces=15000`, or build as root with --isolation=root".into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some("AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)".into());
    }
    Some("a seccomp profile (Docker's default one does) may deny unshare(CLONE_NEWUSER): run the CI container with a profile that allows it, or run hako as root there with --isolation=chroot".into())
}

/// What runs a RUN step: a request in, its output streamed as it comes, its result (exit status
/// and layer) out. [`Sandbox`] is the real one; the builder's tests use a fake, so stage logic and
/// the step cache are tested without namespaces.
pub trait Executor {
    /// Runs `req`; `output` gets the step's output lines, `note` progress notes.
    fn run(
        &mut self,
        req: &RunRequest,
        output: &mut dyn FnMut(&str),
        note: &mut dyn FnMut(&str),
    ) -> Result<RunResult, SandboxError>;
}

impl Executor for Sandbox {
    fn run(
        &mut self,
        req: &RunRequest,
        output: &mut dyn FnMut(&str),
        note: &mut dyn FnMut(&str),
    ) -> Result<RunResult, SandboxError> {
        Sandbox::run(self, req, output, note)
    }
}

/// A running helper.
pub struct Sandbox {
    /// Shared on `<store>/locks/sandbox` while steps may run; `hako prune` takes it exclusively.
    _lock: Option<crate::store::Lock>,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// One-line warnings from setting it up (e.g. a single-id map).
    pub warnings: Vec<String>,
    /// With `--isolation=auto`: the mode chosen and why (one line for the user).
    pub chosen: Option<String>,
    /// The isolation its steps get (what `auto` chose).
    pub isolation: Isolation,
}

/// The descriptor a helper started with a tee ([`Sandbox::start_with`]) finds it as.
pub const TEE_FD: std::os::fd::RawFd = 3;

/// In the helper's process, between fork and exec: `fd` becomes [`TEE_FD`] and stays open across
/// the exec (every descriptor Rust opens is close-on-exec).
fn pass_fd(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: plain system calls on descriptors; dup2 clears close-on-exec on the copy, and a
    // descriptor that is already TEE_FD has the flag cleared instead.
    let r = unsafe {
        if fd == TEE_FD {
            nix::libc::fcntl(TEE_FD, nix::libc::F_SETFD, 0)
        } else {
            nix::libc::dup2(fd, TEE_FD)
        }
    };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

impl Sandbox {
    /// Starts a helper for the store at `store_root`, holding the store's sandbox lock shared (so
    /// `hako prune` waits for the build).
    pub fn start(store_root: &Path, isolation: Isolation) -> Result<Sandbox, SandboxError> {
        Sandbox::start_with(store_root, isolation, None)
    }

    /// [`Sandbox::start`], handing the helper `tee`: the archive being written during the build
    /// (see `crate::export::spool`), which steps copy their layer's blob into when a request
    /// says where ([`RunRequest::tee`]). The helper finds it as descriptor [`TEE_FD`].
    pub fn start_with(
        store_root: &Path,
        isolation: Isolation,
        tee: Option<BorrowedFd<'_>>,
    ) -> Result<Sandbox, SandboxError> {
        let lock = crate::store::Lock::shared(&store_root.join("locks/sandbox"))
            .map_err(|e| SandboxError::Setup(format!("locking the store: {e}")))?;
        let mut sb = Sandbox::spawn(store_root, isolation, tee)?;
        sb._lock = Some(lock);
        Ok(sb)
    }

    /// Starts a helper without taking the lock (the caller holds it).
    pub fn start_unlocked(store_root: &Path, isolation: Isolation) -> Result<Sandbox, SandboxError> {
        Sandbox::spawn(store_root, isolation, None)
    }

    fn spawn(
        store_root: &Path,
        isolation: Isolation,
        tee: Option<BorrowedFd<'_>>,
    ) -> Result<Sandbox, SandboxError> {
        // The helper changes directory (overlay mounts) and hands paths to libcontainer, which
        // wants them absolute.
        let store_root = std::path::absolute(store_root)
            .map_err(|e| SandboxError::Setup(format!("{}: {e}", store_root.display())))?;
        let store_root = store_root.as_path();
        let euid = nix::unistd::geteuid().as_raw();
        // Auto probes what works (cheaply, before a helper starts) and says what it chose and why.
        let (isolation, chosen) = if isolation == Isolation::Auto {
            let (i, why) = probe::choose(isolation, &probe::probe_for_auto()).map_err(SandboxError::Setup)?;
            (i, Some(why))
        } else {
            (isolation, None)
        };
        let rootless = match isolation {
            Isolation::Rootless => true,
            Isolation::Root if euid != 0 => {
                return Err(SandboxError::Setup(
                    "--isolation=root needs root; as an unprivileged user use --isolation=rootless (the default)"
                        .into(),
                ));
            }
            Isolation::Auto | Isolation::Root | Isolation::Chroot | Isolation::Ptrace => false,
        };
        if isolation == Isolation::Chroot && euid != 0 {
            return Err(SandboxError::Setup(
                "--isolation=chroot needs root (it is for throwaway CI containers that run hako as root); \
                 as an unprivileged user use --isolation=rootless"
                    .into(),
            ));
        }
        let mut warnings = Vec::new();
        let maps = if rootless { Some(id_maps(euid, &mut warnings)?) } else { None };
        let mode = match &maps {
            None if isolation == Isolation::Chroot => "chroot",
            None if isolation == Isolation::Ptrace => "ptrace",
            None => "root",
            Some(m) if m.single.is_some() => "rootless-squash",
            Some(_) => "rootless",
        };
        let exe = std::env::current_exe().map_err(|e| {
            SandboxError::Setup(format!("cannot find the hako executable to start the sandbox: {e}"))
        })?;
        let mut cmd = Command::new(exe);
        cmd.arg("__sandbox").arg(store_root).arg(mode);
        if let Some(fd) = tee {
            let fd = fd.as_raw_fd();
            cmd.arg("tee");
            // SAFETY: `pass_fd` makes only async-signal-safe calls, as the child of a fork must.
            unsafe {
                cmd.pre_exec(move || pass_fd(fd));
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| SandboxError::Setup(format!("starting the sandbox helper: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(SandboxError::Setup("the sandbox helper has no pipes".into()));
        };
        let mut sb = Sandbox { _lock: None, child, stdin: Some(stdin), stdout, warnings, chosen, isolation };
        if let Some(maps) = maps {
            let mut line = String::new();
            sb.stdout.read_line(&mut line).map_err(|e| SandboxError::Helper(e.to_string()))?;
            if line.trim() != "ready" {
                return Err(sb.setup_failure(&line));
            }
            let pid = sb.child.id();
            let written = maps.write(pid);
            let go = if written.is_ok() { "go\n" } else { "stop\n" };
            if let Some(i) = sb.stdin.as_mut() {
                let _ = i.write_all(go.as_bytes()).and_then(|()| i.flush());
            }
            written?;
        }
        let mut line = String::new();
        sb.stdout.read_line(&mut line).map_err(|e| SandboxError::Helper(e.to_string()))?;
        match serde_json::from_str::<Reply>(&line) {
            Ok(Reply::Note(n)) if n == "ready" => Ok(sb),
            _ => Err(sb.setup_failure(&line)),
        }
    }

    fn setup_failure(&mut self, line: &str) -> SandboxError {
        let msg = match serde_json::from_str::<Reply>(line) {
            Ok(Reply::Failed(m)) => m,
            _ if line.is_empty() => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                format!("the sandbox helper exited during set-up ({status})")
            }
            _ => format!("unexpected reply from the sandbox helper: {}", line.trim()),
        };
        SandboxError::Setup(msg)
    }

    /// Runs a step; `output` gets its output line by line, `note` the helper's notes.
    pub fn run(
        &mut self,
        req: &RunRequest,
        output: &mut dyn FnMut(&str),
        note: &mut dyn FnMut(&str),
    ) -> Result<RunResult, SandboxError> {
        self.send(&Request::Run(Box::new(req.clone())))?;
        loop {
            match self.reply()? {
                Reply::Output(s) => output(&s),
                Reply::Note(s) => note(&s),
                Reply::Done(r) => return Ok(r),
                Reply::Failed(e) => return Err(SandboxError::Step(e)),
                Reply::Refused(e) => return Err(SandboxError::Refused(e)),
                other @ (Reply::Wiped { .. } | Reply::Exported(_)) => {
                    return Err(SandboxError::Helper(format!("unexpected reply {other:?}")));
                }
            }
        }
    }

    /// [`Request::ExportCache`]: cache mount `key` as a layer in the store, if it exists here.
    pub fn export_cache(
        &mut self,
        key: &str,
        compression: &str,
        clamp: Option<i64>,
    ) -> Result<Option<protocol::LayerRef>, SandboxError> {
        self.send(&Request::ExportCache { key: key.into(), compression: compression.into(), clamp })?;
        loop {
            match self.reply()? {
                Reply::Exported(layer) => return Ok(layer),
                Reply::Note(_) => continue,
                Reply::Failed(e) => return Err(SandboxError::Helper(e)),
                other => return Err(SandboxError::Helper(format!("unexpected reply {other:?}"))),
            }
        }
    }

    /// Removes everything under `<store>/sandbox` the helper's ids can reach: see
    /// [`Request::Wipe`]. Returns (entries, bytes, what was left and why).
    pub fn wipe(&mut self) -> Result<(u64, u64, Vec<String>), SandboxError> {
        self.send(&Request::Wipe)?;
        loop {
            match self.reply()? {
                Reply::Wiped { entries, bytes, left } => return Ok((entries, bytes, left)),
                Reply::Note(_) => continue,
                other => return Err(SandboxError::Helper(format!("unexpected reply {other:?}"))),
            }
        }
    }

    /// Sends one request line.
    fn send(&mut self, req: &Request) -> Result<(), SandboxError> {
        let mut line = serde_json::to_vec(req).map_err(|e| SandboxError::Helper(e.to_string()))?;
        line.push(b'\n');
        let stdin = self.stdin.as_mut().ok_or_else(|| SandboxError::Helper("closed".into()))?;
        stdin.write_all(&line).and_then(|()| stdin.flush()).map_err(|e| SandboxError::Helper(e.to_string()))
    }

    /// Reads the next reply line; the helper's end of the pipe closing is an error.
    fn reply(&mut self) -> Result<Reply, SandboxError> {
        let mut buf = String::new();
        if self.stdout.read_line(&mut buf).map_err(|e| SandboxError::Helper(e.to_string()))? == 0 {
            let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
            return Err(SandboxError::Helper(format!("it exited ({status})")));
        }
        serde_json::from_str(&buf)
            .map_err(|e| SandboxError::Helper(format!("bad reply {:?}: {e}", buf.trim())))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // EOF on its stdin ends the helper; its mounts go with its mount namespace.
        self.stdin.take();
        let _ = self.child.wait();
    }
}

/// The user namespace's maps for the caller.
#[derive(Clone)]
struct Maps {
    uid: Vec<idmap::IdMapping>,
    gid: Vec<idmap::IdMapping>,
    /// A single-id map (the caller's own id only), and why: no sub-id range, no newuidmap, or
    /// no_new_privs.
    single: Option<String>,
}

/// The maps for this process's user (`euid`), and what to warn of: worked out once per process,
/// as the isolation probe asks before the first helper starts, and each helper a build starts
/// asks again.
fn id_maps(euid: u32, warnings: &mut Vec<String>) -> Result<Maps, SandboxError> {
    static FOUND: std::sync::OnceLock<Result<(Maps, Vec<String>), String>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        let mut w = Vec::new();
        read_id_maps(euid, &mut w).map(|maps| (maps, w)).map_err(|e| match e {
            SandboxError::Setup(why) => why,
            other => other.to_string(),
        })
    });
    let (maps, w) = found.clone().map_err(SandboxError::Setup)?;
    warnings.extend(w);
    Ok(maps)
}

/// [`id_maps`], reading `/etc/subuid` and `/etc/subgid`.
fn read_id_maps(euid: u32, warnings: &mut Vec<String>) -> Result<Maps, SandboxError> {
    let egid = nix::unistd::getegid().as_raw();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(euid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| euid.to_string());
    let ranges = |file: &str, id: u32| -> Result<Vec<idmap::IdRange>, SandboxError> {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(SandboxError::Setup(format!("{file}: {e}"))),
        };
        let entries = idmap::parse_subid(&text, file).map_err(|e| SandboxError::Setup(e.to_string()))?;
        Ok(idmap::ranges_for(&entries, &user, id))
    };
    let uid_ranges = ranges("/etc/subuid", euid)?;
    let gid_ranges = ranges("/etc/subgid", euid)?;
    let have_tools = which("newuidmap") && which("newgidmap");
    // newuidmap is setuid: with no_new_privs (Kubernetes' allowPrivilegeEscalation: false,
    // `--security-opt no-new-privileges`) it runs without its privilege and cannot map sub-ids.
    let no_new_privs = no_new_privs();
    if uid_ranges.is_empty() || gid_ranges.is_empty() || !have_tools || no_new_privs {
        let file = if uid_ranges.is_empty() { "/etc/subuid" } else { "/etc/subgid" };
        let (cause, mut w) = if no_new_privs && !uid_ranges.is_empty() && !gid_ranges.is_empty() {
            let cause = "no_new_privs is set";
            let w = format!(
                "{cause}, so setuid newuidmap cannot map your sub-ids: only your own id is mapped (to 0): files \
                 owned by other ids will be owned by root inside RUN steps"
            );
            (cause.to_string(), w)
        } else if !have_tools {
            let cause = "newuidmap/newgidmap not found (Debian: apt-get install uidmap)";
            let w = format!(
                "{cause}, so only your own id is mapped (to 0): files owned by other ids will be owned by root \
                 inside RUN steps"
            );
            (cause.to_string(), w)
        } else {
            (format!("no range for {user} in {file}"), idmap::single_id_warning(file, &user))
        };
        // Ptrace isolation records every owner without sub-ids (slower, no isolation).
        w.push_str("; --isolation=ptrace keeps every owner without sub-ids");
        warnings.push(w);
        let one = |id| vec![idmap::IdMapping { inside: 0, outside: id, count: 1 }];
        return Ok(Maps { uid: one(euid), gid: one(egid), single: Some(cause) });
    }
    let uid =
        idmap::build_map(euid, &uid_ranges, "/etc/subuid").map_err(|e| SandboxError::Setup(e.to_string()))?;
    let gid =
        idmap::build_map(egid, &gid_ranges, "/etc/subgid").map_err(|e| SandboxError::Setup(e.to_string()))?;
    Ok(Maps { uid, gid, single: None })
}

impl Maps {
    /// Writes the maps of process `pid`: with newuidmap/newgidmap for sub-id ranges, or directly
    /// (allowed for one's own id once setgroups is denied) for a single-id map.
    fn write(&self, pid: u32) -> Result<(), SandboxError> {
        if self.single.is_some() {
            let w = |file: &str, text: String| {
                std::fs::write(format!("/proc/{pid}/{file}"), text)
                    .map_err(|e| SandboxError::Setup(format!("writing /proc/{pid}/{file}: {e}")))
            };
            w("setgroups", "deny".into())?;
            w("uid_map", format!("0 {} 1\n", self.uid[0].outside))?;
            return w("gid_map", format!("0 {} 1\n", self.gid[0].outside));
        }
        for (tool, maps) in [("newuidmap", &self.uid), ("newgidmap", &self.gid)] {
            let out = Command::new(tool)
                .arg(pid.to_string())
                .args(idmap::map_args(maps))
                .stdin(Stdio::null())
                .output()
                .map_err(|e| SandboxError::Setup(format!("running {tool}: {e}")))?;
            if !out.status.success() {
                return Err(SandboxError::Setup(format!(
                    "{tool} failed ({}): {}; check that {tool} is setuid root (Debian package uidmap) and that the ranges in {} belong to you",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    if tool == "newuidmap" { "/etc/subuid" } else { "/etc/subgid" },
                )));
            }
        }
        Ok(())
    }
}

/// Whether a user namespace here gets the caller's sub-id ranges (else only the caller's own
/// id is mapped, and a step's `chown` to other ids fails); the reason when not.
pub fn subids_usable() -> Result<(), String> {
    match id_maps(nix::unistd::geteuid().as_raw(), &mut Vec::new()) {
        Ok(Maps { single: Some(cause), .. }) => Err(cause),
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether this process runs with `no_new_privs` (setuid programs gain nothing).
fn no_new_privs() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("NoNewPrivs:") && l.trim_end().ends_with('1')))
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/bin").join(tool).is_file()
}

/// With `HAKO_REPORT_RSS` set, says on stderr how much memory this process (`who`: the builder
/// or the helper) held at most, its own and not its children's: the steps it runs are the
/// Dockerfile's, not hako's, and measuring the process tree from outside (`/usr/bin/time`)
/// counts an `apt-get` step as hako. The benchmark script reads these lines.
pub fn report_peak_rss(who: &str) {
    if std::env::var_os("HAKO_REPORT_RSS").is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(kib) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
        eprintln!("hako {who} peak RSS: {} KiB", kib.trim().trim_end_matches("kB").trim());
    }
}
