//! `--isolation=ptrace`: RUN steps for a non-root user where namespaces, mounts and chroot are
//! all denied (a CI container under Docker's default seccomp profile, a restricted Kubernetes
//! pod). The step's processes run under `ptrace`, which that profile allows on kernels ≥ 4.8:
//!
//! - a seccomp filter stops them only at the calls that name paths or identities
//!   ([`calls::TRACED`]); everything else (reads, writes, memory) runs at full speed;
//! - paths are rewritten into the step's root, symlinks resolved as if it were `/`
//!   ([`paths`]), Unix sockets' among them, and results that carry paths (`getcwd`, `/proc`
//!   links) rewritten back;
//! - execs are rewritten so scripts and dynamic executables find their interpreter and loader
//!   in the root ([`exec`]);
//! - root is emulated: the step sees uid 0 (or its USER), `chown` and `chmod` succeed and are
//!   recorded, `mknod` of a device leaves an empty file and records the device, `setcap`'s
//!   `security.capability` is recorded, and `stat` and the `*xattr` calls show what was
//!   recorded ([`fake`]); the layer is written from that record, so the image says what the
//!   step did, as with any other isolation;
//! - a process without root's capabilities (a `USER`) is refused what those recorded owners and
//!   modes refuse it, as the kernel would ([`dac`]).
//!
//! What it does not do: isolate. The step shares the machine's processes, network, `/proc`,
//! `/dev` and `/sys`, and a program that makes system calls the tracer does not rewrite (32-bit
//! code, `io_uring`, datagrams `sendmmsg` sends to socket paths without `connect`, descriptors
//! passed in from outside) can reach the machine's files as the calling user. It is a build
//! environment for trusted Dockerfiles in a throwaway container, as kaniko is. x86-64 only.

mod calls;
mod dac;
mod exec;
pub mod fake;
mod mem;
mod paths;
mod regs;
mod seccomp;

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::protocol::{Exit, Process};
use calls::{After, Entry};
use fake::{Creds, Owners};

/// The errno of a failed file operation (EIO when it has none).
fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
}

/// The tracer's state for one step.
pub struct Tracer {
    root: paths::Root,
    /// Owners, modes and devices as the step made them.
    pub owners: Owners,
    loaders: exec::Loaders,
    names: exec::Names,
    procs: HashMap<Pid, Proc>,
    default_creds: Creds,
    /// Stops come from the seccomp filter (else from every system call: slower).
    seccomp: bool,
    /// `HAKO_PTRACE_DEBUG` is set: every rewritten call is logged on stderr (at the end, so
    /// logging does not change the timing).
    debug: bool,
    debug_log: Vec<String>,
    /// The step's output, for what the tracer has to tell of it.
    output: std::fs::File,
    /// Programs told about already (see [`Tracer::foreign_call`]).
    told: HashSet<Vec<u8>>,
}

/// A traced process (or thread).
struct Proc {
    creds: Creds,
    /// What its last call left to check, at its next stop.
    after: Option<After>,
    /// Without the filter: whether the next syscall stop is an exit.
    in_call: bool,
    /// Made by a fork whose first stop is still to come.
    fresh: bool,
    /// The machine path of the program it runs when that program was started through its
    /// loader, whose path is then what the kernel's `/proc/PID/exe` names: the tracer answers
    /// for that link with this ([`exec`]).
    exe: Option<Vec<u8>>,
    /// What `exe` becomes if the exec it is making succeeds.
    next_exe: Option<Vec<u8>>,
    /// The owner and group that the set-user-ID and set-group-ID bits of the program it is
    /// execing give it, if any.
    next_setid: Option<(Option<u32>, Option<u32>)>,
    /// A new process whose first stop came before its parent's fork event: held stopped until
    /// that event says what it inherits (its user, its program), or until this parent is gone.
    held_for: Option<Pid>,
}

impl Tracer {
    fn creds(&self, pid: Pid) -> &Creds {
        self.procs.get(&pid).map_or(&self.default_creds, |p| &p.creds)
    }

    fn creds_mut(&mut self, pid: Pid) -> &mut Creds {
        &mut self.proc_mut(pid).creds
    }

    /// What is known of `pid`: a process not seen before runs as the step's user.
    fn proc_mut(&mut self, pid: Pid) -> &mut Proc {
        let default = &self.default_creds;
        self.procs.entry(pid).or_insert_with(|| Proc::new(default.clone()))
    }
}

impl Proc {
    fn new(creds: Creds) -> Proc {
        Proc {
            creds,
            after: None,
            in_call: false,
            fresh: false,
            exe: None,
            next_exe: None,
            next_setid: None,
            held_for: None,
        }
    }
}

/// Runs `process` (whose program, found in the root, is `exe`) in `root` under the tracer, its
/// output on `output`, until it and everything it started are gone (the rest are killed when
/// the first process exits, as when a container's init dies). `started` gets the process group
/// to kill when the build is cancelled. `read_only` are the step's paths that read-only mounts
/// would hold. Returns the exit and the owners as the step left them.
pub fn run(
    root: &Path,
    exe: &str,
    process: &Process,
    read_only: &[String],
    output: OwnedFd,
    owners: Owners,
    started: impl FnOnce(Pid),
) -> Result<(Exit, Owners), String> {
    let root_dir = root;
    let mut root = paths::Root::new(root);
    root.set_read_only(read_only);
    let c =
        |s: &[u8]| CString::new(s).map_err(|_| format!("{:?} holds a NUL byte", String::from_utf8_lossy(s)));
    let exe_c = c(exe.as_bytes())?;
    let args = process.args.iter().map(|a| c(a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
    let env = process.env.iter().map(|a| c(a.as_bytes())).collect::<Result<Vec<_>, _>>()?;
    let cwd = root.to_host(process.cwd.as_bytes(), true).map_err(|e| format!("working directory: {e}"))?;
    let cwd = c(&cwd)?;
    let filter = seccomp::program(calls::TRACED, calls::TRACED_WHEN);
    // The tracer's way without the filter (where seccomp is missing), which `HAKO_PTRACE_NO_FILTER`
    // chooses so that it can be tested where seccomp is not missing.
    let filter = (std::env::var_os("HAKO_PTRACE_NO_FILTER").is_none()).then_some(filter);
    let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    // SAFETY: between fork and exec the child makes only system calls on data prepared above.
    let child = match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            use super::child_fail as fail;
            super::child_start(null.as_fd(), output.as_fd());
            if let Err(e) = nix::unistd::chdir(cwd.as_c_str()) {
                fail("chdir to the working directory", e);
            }
            if let Err(e) = ptrace::traceme() {
                fail("ptrace", e);
            }
            let filtered = filter.as_ref().is_some_and(|f| crate::sandbox::seccomp::load(f, true).is_ok());
            let _ = nix::unistd::write(&report_w, &[filtered as u8]);
            let _ = nix::sys::signal::raise(Signal::SIGSTOP);
            // The tracer rewrites this exec like any other: `exe` is the step's path.
            let e = nix::unistd::execve(&exe_c, &args, &env).err().unwrap_or(Errno::UnknownErrno);
            fail("exec", e)
        }
        ForkResult::Parent { child } => child,
    };
    drop(report_w);
    started(child);
    match waitpid(child, Some(WaitPidFlag::__WALL)) {
        Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => {}
        Ok(WaitStatus::Exited(_, code)) => return Ok((Exit::Code(code), owners)),
        other => return Err(format!("starting the traced step: {other:?}")),
    }
    let mut flag = [0u8; 1];
    let seccomp = nix::unistd::read(&report_r, &mut flag).is_ok_and(|n| n == 1) && flag[0] == 1;
    let mut options = ptrace::Options::PTRACE_O_TRACESYSGOOD
        | ptrace::Options::PTRACE_O_TRACEFORK
        | ptrace::Options::PTRACE_O_TRACEVFORK
        | ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEEXEC
        | ptrace::Options::PTRACE_O_EXITKILL;
    if seccomp {
        options |= ptrace::Options::PTRACE_O_TRACESECCOMP;
    }
    if let Err(e) = ptrace::setoptions(child, options) {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(format!("ptrace options: {e}"));
    }
    let default_creds = Creds::new(process.uid, process.gid, process.groups.clone());
    let mut t = Tracer {
        root,
        owners,
        loaders: exec::Loaders::default(),
        names: exec::Names::new(root_dir.with_file_name("exec-names")),
        procs: HashMap::from([(child, Proc::new(default_creds.clone()))]),
        default_creds,
        seccomp,
        debug: std::env::var_os("HAKO_PTRACE_DEBUG").is_some(),
        debug_log: Vec::new(),
        output: output.into(),
        told: HashSet::new(),
    };
    t.resume(child, None);
    let exit = t.serve(child);
    for line in t.debug_log.drain(..) {
        eprintln!("hako ptrace: {line}");
    }
    Ok((exit?, t.owners))
}

impl Tracer {
    /// Handles stops until every tracee is gone; returns how `main` ended.
    fn serve(&mut self, main: Pid) -> Result<Exit, String> {
        let mut exit = None;
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::__WALL)) {
                Ok(s) => s,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => break,
                Err(e) => return Err(format!("waiting for the step: {e}")),
            };
            if self.debug {
                let kind = status.pid().map(|p| regs::stop_kind(p).0);
                self.log(format!("stop {status:?} {kind:?}"));
            }
            let Some(pid) = status.pid() else { continue };
            self.settle(pid);
            let ended = match status {
                WaitStatus::Exited(_, code) => Some(Exit::Code(code)),
                WaitStatus::Signaled(_, sig, _) => Some(Exit::Signal(sig as i32)),
                _ => None,
            };
            if let Some(ended) = ended {
                self.procs.remove(&pid);
                self.release_held(pid);
                if pid == main {
                    exit = Some(ended);
                    self.kill_all();
                }
                continue;
            }
            if exit.is_some() {
                // The first process is gone, so the rest go too; stragglers not yet seen report
                // here (and are killed) until ECHILD.
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = ptrace::cont(pid, None);
                continue;
            }
            match status {
                WaitStatus::PtraceEvent(_, _, event) => self.event(pid, event),
                WaitStatus::PtraceSyscall(_) => self.syscall_stop(pid),
                WaitStatus::Stopped(_, sig) => self.signal_stop(pid, sig),
                _ => {}
            }
        }
        exit.ok_or_else(|| "the step's first process was never seen to exit".to_string())
    }

    fn log(&mut self, line: String) {
        if self.debug {
            self.debug_log.push(line);
        }
    }

    /// Settles what `pid`'s last call left to check (it has run by now).
    fn settle(&mut self, pid: Pid) {
        if let Some(after) = self.procs.get_mut(&pid).and_then(|p| p.after.take()) {
            if self.debug {
                self.log(format!("{pid} settles {after:?}"));
            }
            self.check(after);
        }
    }

    /// Resumes the new processes held for `parent`'s fork event, which will not come now that
    /// it is gone; they run as what is known of them.
    fn release_held(&mut self, parent: Pid) {
        let held: Vec<Pid> =
            self.procs.iter().filter(|(_, p)| p.held_for == Some(parent)).map(|(pid, _)| *pid).collect();
        for pid in held {
            if let Some(p) = self.procs.get_mut(&pid) {
                p.held_for = None;
            }
            self.resume(pid, None);
        }
    }

    fn kill_all(&mut self) {
        for pid in self.procs.keys() {
            let _ = nix::sys::signal::kill(*pid, Signal::SIGKILL);
        }
    }

    /// Resumes `pid` until its next traced call (every call, without the filter).
    fn resume(&mut self, pid: Pid, sig: Option<Signal>) {
        // ESRCH means it died meanwhile; waitpid reports that.
        let _ = if self.seccomp { ptrace::cont(pid, sig) } else { ptrace::syscall(pid, sig) };
    }

    fn event(&mut self, pid: Pid, event: i32) {
        match event {
            // It resumes the tracee itself: resuming twice could resume its *next* stop
            // unhandled, and that call would run with the step's paths on the machine.
            nix::libc::PTRACE_EVENT_SECCOMP => return self.call_entry(pid, None),
            nix::libc::PTRACE_EVENT_FORK | nix::libc::PTRACE_EVENT_VFORK | nix::libc::PTRACE_EVENT_CLONE => {
                // The child runs the same program, as the same user.
                let creds = self.creds(pid).clone();
                let exe = self.procs.get(&pid).and_then(|p| p.exe.clone());
                if let Ok(child) = ptrace::getevent(pid) {
                    let child = Pid::from_raw(child as i32);
                    let p = self.procs.entry(child).or_insert_with(|| Proc {
                        // Unless its first stop came first, that stop is still to come.
                        fresh: true,
                        ..Proc::new(creds.clone())
                    });
                    p.creds = creds;
                    p.exe = exe;
                    // Its first stop came first and it waited for this: it may run now.
                    if p.held_for.take().is_some() {
                        self.resume(child, None);
                    }
                }
            }
            nix::libc::PTRACE_EVENT_EXEC => {
                // A thread that execs takes its leader's pid; the old id is gone.
                if let Ok(former) = ptrace::getevent(pid) {
                    let former = Pid::from_raw(former as i32);
                    if former != pid
                        && let Some(p) = self.procs.remove(&former)
                    {
                        self.procs.insert(pid, Proc { after: None, in_call: false, ..p });
                    }
                }
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.after = None;
                    p.in_call = false;
                    p.exe = p.next_exe.take();
                    p.creds.exec(p.next_setid.take());
                }
            }
            _ => {}
        }
        self.resume(pid, None);
    }

    /// A syscall stop: without the filter, every call's entry (handled) and exit (nothing left
    /// to do there: [`After`] is settled at the next stop).
    fn syscall_stop(&mut self, pid: Pid) {
        let (kind, arch) = regs::stop_kind(pid);
        let entering = match kind {
            regs::StopKind::Entry => true,
            regs::StopKind::Exit | regs::StopKind::Seccomp => false,
            // Kernels before 5.3 cannot say: entries and exits alternate.
            regs::StopKind::Unknown => {
                let p = self.procs.entry(pid).or_insert_with(|| Proc::new(self.default_creds.clone()));
                p.in_call = !p.in_call;
                p.in_call
            }
        };
        if entering && !self.seccomp {
            self.call_entry(pid, arch);
        } else {
            self.resume(pid, None);
        }
    }

    /// A call's entry; `arch` as the kernel gave it, if it did. A call of another ABI than
    /// x86-64's gets here only without the filter (which traps them, see [`seccomp`]): it is
    /// refused as the trap would refuse it.
    fn call_entry(&mut self, pid: Pid, arch: Option<u32>) {
        let Ok(mut regs) = regs::Regs::get(pid) else {
            self.resume(pid, None);
            return;
        };
        let abi = regs.abi(arch);
        if abi != regs::Abi::X86_64 {
            regs.skip(-(Errno::ENOSYS as i64));
            let _ = regs.put();
            self.foreign_call(pid, abi);
            let _ = nix::sys::signal::kill(pid, Signal::SIGSYS);
            self.resume(pid, None);
            return;
        }
        if !calls::traced(regs.nr()) {
            self.resume(pid, None);
            return;
        }
        let nr = regs.nr();
        let after = match self.entry(pid, &mut regs) {
            Entry::Run(after) => after,
            Entry::Skip(ret) => {
                if self.debug {
                    self.log(format!("{pid} syscall {nr} answered {ret}"));
                }
                regs.skip(ret);
                None
            }
        };
        if self.debug {
            self.log(format!("{pid} syscall {nr} runs, then {after:?}"));
        }
        if let Err(e) = regs.put() {
            self.log(format!("{pid} registers not written: {e}"));
        }
        let default = self.default_creds.clone();
        self.procs.entry(pid).or_insert_with(|| Proc::new(default)).after = after;
        self.resume(pid, None);
    }

    fn signal_stop(&mut self, pid: Pid, sig: Signal) {
        let known = self.procs.get_mut(&pid);
        let first = match known {
            None => {
                // A new process whose fork event is still to come. Resumed now, it could exec
                // (or read /proc/self/exe) as the default user with no program before that
                // event says otherwise: it waits for the event, unless its parent is no tracee
                // here (then no event comes).
                let first = sig == Signal::SIGSTOP;
                let held_for = first.then(|| parent_of(pid)).flatten().filter(|p| self.procs.contains_key(p));
                let held = held_for.is_some();
                self.procs.insert(pid, Proc { held_for, ..Proc::new(self.default_creds.clone()) });
                if held {
                    return;
                }
                first
            }
            Some(p) if p.fresh && sig == Signal::SIGSTOP => {
                p.fresh = false;
                true
            }
            Some(_) => false,
        };
        if first {
            self.resume(pid, None);
            return;
        }
        // A group stop (no signal info) is not a signal to deliver.
        let info = ptrace::getsiginfo(pid);
        if sig == Signal::SIGSYS
            && let Ok(info) = &info
            && let Some(abi) = trapped_abi(info)
            && abi != regs::Abi::X86_64
        {
            self.foreign_call(pid, abi);
        }
        self.resume(pid, info.is_ok().then_some(sig));
    }

    /// Tells, in the step's output, why a program making calls of another ABI than x86-64's is
    /// stopped by `SIGSYS` (its call was not made): once a program, so a script running one in a
    /// loop does not fill the log.
    fn foreign_call(&mut self, pid: Pid, abi: regs::Abi) {
        use std::os::unix::ffi::OsStrExt;
        let host = self.procs.get(&pid).and_then(|p| p.exe.clone()).or_else(|| {
            std::fs::read_link(format!("/proc/{pid}/exe")).ok().map(|p| p.as_os_str().as_bytes().to_vec())
        });
        let program = host.map_or_else(|| b"a program".to_vec(), |h| self.root.to_guest(&h));
        if !self.told.insert(program.clone()) {
            return;
        }
        let what = match abi {
            regs::Abi::I386 => "is a 32-bit x86 (i386) program",
            regs::Abi::X32 => "made an x32 system call",
            regs::Abi::X86_64 => return,
        };
        let line = format!(
            "hako: {} {what}; --isolation=ptrace serves x86-64 system calls only, so it was \
             stopped (SIGSYS). Build with --isolation=rootless or --isolation=root where this \
             machine allows them.\n",
            String::from_utf8_lossy(&program)
        );
        let _ = self.output.write_all(line.as_bytes());
    }
}

/// The ABI of the call a `SIGSYS` stopped, when the signal is a seccomp filter's trap
/// (`SYS_SECCOMP`), which says what call it was.
fn trapped_abi(info: &nix::libc::siginfo_t) -> Option<regs::Abi> {
    const SYS_SECCOMP: i32 = 1;
    if info.si_code != SYS_SECCOMP {
        return None;
    }
    let raw = mem::bytes_of(info);
    // The union after si_signo, si_errno and si_code starts at byte 16 (8-aligned); its
    // `_sigsys` is `void *_call_addr; int _syscall; unsigned int _arch;`.
    let word = |at: usize| u32::from_ne_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
    Some(regs::Abi::of(word(28), u64::from(word(24))))
}

/// The parent of process `pid` (`PPid` in its status), or for a thread the process it belongs
/// to (its `Tgid`: the thread that made it is one of that process's, whose clone event comes).
fn parent_of(pid: Pid) -> Option<Pid> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<i32> {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok())
    };
    let tgid = field("Tgid:")?;
    let parent = if tgid != pid.as_raw() { tgid } else { field("PPid:")? };
    Some(Pid::from_raw(parent))
}

/// Whether a traced step can run here: a forked child asks to be traced and installs the
/// seccomp filter; the tracer sees it stop and lets it exit. The failure names the refused call.
pub fn probe() -> Result<(), super::probe::Failure> {
    use super::probe::Failure;
    let filter = seccomp::program(calls::TRACED, calls::TRACED_WHEN);
    let fork_failed = |errno| Failure { call: "fork", errno };
    // SAFETY: the child only makes system calls and exits.
    match unsafe { nix::unistd::fork() }.map_err(fork_failed)? {
        ForkResult::Child => {
            let code = match ptrace::traceme() {
                Err(e) => 64 | (e as i32).min(63),
                Ok(()) => match crate::sandbox::seccomp::load(&filter, true) {
                    Err(e) => 128 | (e as i32).min(63),
                    Ok(()) => {
                        let _ = nix::sys::signal::raise(Signal::SIGSTOP);
                        0
                    }
                },
            };
            unsafe { nix::libc::_exit(code) }
        }
        ForkResult::Parent { child } => loop {
            match waitpid(child, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Stopped(_, _)) => {
                    let _ = ptrace::cont(child, None);
                }
                Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
                Ok(WaitStatus::Exited(_, code)) => {
                    let call = if code & 64 != 0 {
                        "ptrace(PTRACE_TRACEME)"
                    } else {
                        "seccomp(SECCOMP_SET_MODE_FILTER)"
                    };
                    return Err(Failure { call, errno: Errno::from_raw(code & 63) });
                }
                Ok(_) => return Err(Failure { call: "ptrace", errno: Errno::ECHILD }),
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(Failure { call: "waitpid", errno }),
            }
        },
    }
}
