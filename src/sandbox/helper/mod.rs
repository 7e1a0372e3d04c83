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
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use super::overlay::{self, Flavor, Mounted, Upper};
use super::protocol::{
    BindFrom, Exit, LayerRef, MountRequest, Network, Reply, Request, RunRequest, RunResult,
};
use super::spec::{self, StepMount, StepSpec};
use crate::layer::LayerWriter;
use crate::layer::diff::{DiffOptions, XattrPrefix};
use crate::layer::extract::{ApplyOptions, apply_layer};
use crate::layer::times::Times;
use crate::store::Store;

mod home;
mod mounts;
mod snapshots;
mod step;
mod traced;

use mounts::{Held, NewCache};
pub use snapshots::wipe;
use snapshots::{Changes, Tree, rename_into_place};

pub use super::HOSTNAME;

/// The descriptor the builder passed as [`super::TEE_FD`], made close-on-exec so no step
/// inherits it. None if it is not open.
fn take_tee() -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl on a descriptor number; it fails harmlessly when the number is not open.
    let set = unsafe { nix::libc::fcntl(super::TEE_FD, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC) };
    // SAFETY: the builder opened this descriptor for this process alone (`pass_fd`), and nothing
    // else here owns it.
    (set == 0).then(|| unsafe { OwnedFd::from_raw_fd(super::TEE_FD) })
}

/// Ctrl-C in a terminal signals the whole foreground process group, this helper with its builder,
/// and a session leader's exit sends its group SIGHUP: dying there, the helper would leave its
/// step running (the step is a session of its own, which neither reaches). So it ignores them
/// and outlives the builder, which it sees go when its stdin closes, long enough to kill the
/// step. Its steps get them back at their default ([`crate::sandbox::DefaultSignals`]).
fn ignore_stop_signals() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
        // SAFETY: installing SIG_IGN, no handler code is involved.
        let _ = unsafe { sigaction(sig, &ignore) };
    }
}

/// Entry point of `hako __sandbox STORE MODE [tee]` where MODE is `root`, `rootless`,
/// `rootless-squash` (a single-id map: owners other than 0 cannot be set), `chroot` or `ptrace`
/// (no namespaces); `tee`: descriptor [`super::TEE_FD`] is an archive being written during the
/// build (see `crate::export::spool`).
pub fn main(args: &[String]) -> ExitCode {
    let (Some(store), Some(mode)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: hako __sandbox STORE root|rootless|rootless-squash|chroot|ptrace (started by hako build)"
        );
        return ExitCode::from(2);
    };
    // First: the children this process starts must not inherit it.
    let tee = (args.get(2).map(String::as_str) == Some("tee")).then(take_tee).flatten();
    ignore_stop_signals();
    let mut out = std::io::stdout().lock();
    let mut input = std::io::stdin().lock();
    let rootless = mode.starts_with("rootless");
    let chroot = mode == "chroot";
    let traced = mode == "ptrace";
    // chroot and ptrace isolation are for machines that allow no namespaces at all: nothing to
    // set up. With no pid namespace to take them, what a step orphans (a daemon, what the end
    // of the step killed) is this helper's to reap: else it is a zombie of the machine's init,
    // which in a container may never reap it (and `pidof` would count it).
    let ready = if chroot || traced {
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))
    } else {
        setup(rootless, &mut input, &mut out)
    };
    match ready {
        Ok(()) => {}
        Err(e) => {
            let _ = reply(&mut out, &Reply::Failed(e));
            return ExitCode::from(1);
        }
    }
    if !chroot && !traced {
        // libcontainer sets a step's supplementary groups only when its USER has some; otherwise
        // the step would keep the caller's (a rootless caller's own group shows as root's, 0).
        // runc sets them always, an empty list too. Refused only in a single-id map, whose
        // steps can have no other group anyway.
        let _ = nix::unistd::setgroups(&[]);
    }
    let base = Path::new(store).join("sandbox").join(super::mode_dir(mode));
    let squash = mode == "rootless-squash" || traced;
    let mut ctx = match Ctx::new(Path::new(store), &base, rootless, squash, chroot) {
        Ok(c) => Ctx { tee, ..c },
        Err(e) => {
            let _ = reply(&mut out, &Reply::Failed(e));
            return ExitCode::from(1);
        }
    };
    if traced {
        ctx.traced = true;
        ctx.copy = true;
        ctx.pending_note = Some(
            "--isolation=ptrace: steps run under ptrace in a copy of their parent's filesystem, with root \
             emulated (owners, modes, device nodes and file capabilities are recorded, not made); they \
             share the machine's processes, network, /proc, /dev and /sys"
                .into(),
        );
    }
    let _ = reply(&mut out, &Reply::Note("ready".into()));
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => {
                super::report_peak_rss("helper");
                return ExitCode::SUCCESS;
            }
            Ok(_) => {}
        }
        let result = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Run(req)) => ctx.run(&req, &mut out),
            Ok(Request::ExportCache { key, compression, clamp }) => {
                let r = match ctx.export_cache(&key, &compression, clamp) {
                    Ok(layer) => reply(&mut out, &Reply::Exported(layer)),
                    Err(e) => reply(&mut out, &Reply::Failed(e)),
                };
                if r.is_err() {
                    return ExitCode::from(1);
                }
                continue;
            }
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
    /// Snapshots made as another snapshot plus a delta (see `snapshots::Derived`).
    derived: PathBuf,
    runs: PathBuf,
    /// One lock file per snapshot being made, so helpers never extract the same one at once.
    locks: PathBuf,
    caches: PathBuf,
    /// Copy snapshotter: the trees of recent steps, by chain id, for the next step to take.
    trees: PathBuf,
    /// Ptrace isolation: the owners of those trees' entries, `<chain id>.json`.
    owners: PathBuf,
    state: PathBuf,
    flavor: Flavor,
    rootless: bool,
    squash: bool,
    steps: u64,
    /// Overlay snapshots, or plain copies where overlayfs cannot be mounted.
    copy: bool,
    /// `--isolation=chroot`: no namespaces, no mounts.
    chroot: bool,
    /// `--isolation=ptrace`: steps under the tracer, owners recorded rather than made.
    traced: bool,
    /// The no-device-nodes note was given.
    said_no_devices: bool,
    /// Said once, with the first step's replies (why steps run on copies).
    pending_note: Option<String>,
    /// A process holding a private network namespace with loopback up (`--network=none`).
    netns: Option<(nix::unistd::Pid, PathBuf)>,
    /// The archive the builder writes during the build, for steps to copy their blob into.
    tee: Option<OwnedFd>,
    /// The current request's layers that replace earlier versions of themselves.
    successors: Vec<crate::sandbox::protocol::Successor>,
    /// Docker's seccomp profile compiled for namespace-isolated steps: `None` until the first
    /// such step, `Some(None)` where the kernel has no seccomp (said once).
    seccomp: Option<Option<std::sync::Arc<Vec<seccompiler::BpfProgram>>>>,
}

/// Whether process `pid` exists and is not a zombie: a helper killed with its builder waits for
/// init to reap it, which some inits do late.
fn running(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) S …`: the state follows the last `)` (comm may hold one).
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X']))
}

impl Ctx {
    fn new(store: &Path, base: &Path, rootless: bool, squash: bool, chroot: bool) -> Result<Ctx, String> {
        let dir = |name: &str| -> Result<PathBuf, String> {
            let p = base.join(name);
            fs_err::create_dir_all(&p).map_err(|e| e.to_string())?;
            Ok(p)
        };
        let mut ctx = Ctx {
            store: Store::open_readonly(store),
            snapshots: dir("snapshots")?,
            derived: dir("derived")?,
            runs: dir("runs")?,
            locks: dir("locks")?,
            caches: dir("cache")?,
            trees: dir("trees")?,
            owners: dir("owners")?,
            state: dir("state")?,
            flavor: if rootless { Flavor::UserNs } else { Flavor::Root },
            rootless,
            squash,
            steps: 0,
            copy: false,
            chroot,
            traced: false,
            said_no_devices: false,
            pending_note: None,
            netns: None,
            tee: None,
            successors: Vec::new(),
            seccomp: None,
        };
        snapshots::forget_earlier_boots(
            base,
            &[&ctx.snapshots, &ctx.derived, &ctx.trees, &ctx.owners],
            &ctx.locks,
        )?;
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

    /// Removes what killed helpers left behind (run directories name their helper's pid): under
    /// chroot isolation, with no pid namespace to end them, first what still runs chrooted there
    /// (a step, and the daemons it started, whose helper was killed with -9 along with the
    /// builder).
    fn sweep(&self) {
        for dir in [&self.runs, &self.state] {
            let Ok(rd) = std::fs::read_dir(dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
                let alive = pid.is_some_and(|p| running(p) || p == std::process::id() as i32);
                if !alive {
                    if self.chroot {
                        crate::sandbox::chroot::kill_rooted(&e.path());
                    }
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// How layers are applied to this helper's snapshots and trees: owners only where they can
    /// be set, device nodes only as real root, and `times`, the layer's real ones
    /// ([`crate::layer::times`]), where it has them.
    fn apply_options<'t>(&self, times: Option<&'t Times>) -> ApplyOptions<'t> {
        ApplyOptions { chown: !self.squash, devices: !self.rootless && !self.traced, times }
    }

    fn next_name(&mut self, what: &str) -> String {
        self.steps += 1;
        format!("{what}-{}-{}", std::process::id(), self.steps)
    }
}
