//! What isolation this machine allows, found cheaply before a helper starts: a forked child makes
//! the exact system calls a helper would (`unshare`, then making mounts private) and exits with the
//! errno, so `--isolation=auto` can pick what works and say why the better modes do not, and
//! `hako info` can print the same report without building.

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

use super::Isolation;

/// What the probes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The effective uid.
    pub euid: u32,
    /// A user namespace with its own mount namespace and private mounts (rootless mode).
    pub userns: Result<(), Failure>,
    /// Mount and cgroup namespaces as the current user (root mode; only probed as root).
    pub namespaces: Result<(), Failure>,
    /// Tracing a child under a seccomp filter (ptrace mode).
    pub ptrace: Result<(), Failure>,
    /// Not root: whether a user namespace gets the caller's sub-id ranges, or why not.
    pub subids: Result<(), String>,
}

/// A probe that failed: the call and its errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The system call, as a user would search for it (`unshare(CLONE_NEWUSER)`).
    pub call: &'static str,
    /// Its error.
    pub errno: Errno,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.call, self.errno.desc())
    }
}

/// The probe calls, in the order a helper makes them; the child exits with 0, or with the index of
/// the first that failed times 64 plus its errno (errnos above 63 read as 63: an exit status has 8
/// bits).
const CALLS: [&str; 4] =
    ["unshare(CLONE_NEWUSER)", "unshare(CLONE_NEWNS|CLONE_NEWCGROUP)", "mount(/, MS_REC|MS_PRIVATE)", "fork"];

/// What every probe found (`hako info`), probed once per process: a few forks, about a
/// millisecond.
pub fn probe() -> Probe {
    static FOUND: std::sync::OnceLock<Probe> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| run_probes(true)).clone()
}

/// What [`choose`] needs for `--isolation=auto`, probed once per process (each sandbox helper a
/// build starts asks again): as root only the namespaces, and ptrace only when a user namespace
/// will not do. The probes left out read as [`NOT_PROBED`].
pub fn probe_for_auto() -> Probe {
    static FOUND: std::sync::OnceLock<Probe> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| run_probes(false)).clone()
}

/// A probe [`probe_for_auto`] did not make, because [`choose`] does not read it.
pub const NOT_PROBED: Failure = Failure { call: "not probed", errno: Errno::UnknownErrno };

fn run_probes(all: bool) -> Probe {
    let euid = nix::unistd::geteuid().as_raw();
    let namespaces =
        if euid == 0 { in_child(false) } else { Err(Failure { call: "root", errno: Errno::EPERM }) };
    if euid == 0 && !all {
        return Probe { euid, userns: Err(NOT_PROBED), namespaces, ptrace: Err(NOT_PROBED), subids: Ok(()) };
    }
    let userns = in_child(true);
    let subids = if euid == 0 { Ok(()) } else { super::subids_usable() };
    let ptrace =
        if all || userns.is_err() || subids.is_err() { super::ptrace::probe() } else { Err(NOT_PROBED) };
    Probe { euid, userns, namespaces, ptrace, subids }
}

/// Forks a child that makes the calls a helper makes (with a user namespace first when
/// `userns`) and reports the first failure.
fn in_child(userns: bool) -> Result<(), Failure> {
    // SAFETY: the child only makes system calls and `_exit`s: no allocation, no locks, so forking
    // from a threaded process is sound.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = child_calls(userns);
            unsafe { nix::libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, code)) => {
                let call = CALLS.get((code >> 6) as usize).copied().unwrap_or("probe");
                Err(Failure { call, errno: Errno::from_raw(code & 63) })
            }
            _ => Err(Failure { call: "probe", errno: Errno::ECHILD }),
        },
        Err(errno) => Err(Failure { call: CALLS[3], errno }),
    }
}

/// In the forked child: the calls, the exit code of the first failure (see [`CALLS`]).
fn child_calls(userns: bool) -> i32 {
    let fail = |i: i32, e: Errno| (i << 6) | (e as i32).min(63);
    if userns && let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
        return fail(0, e);
    }
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP) {
        return fail(1, e);
    }
    if let Err(e) =
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
    {
        return fail(2, e);
    }
    0
}

/// The mode `isolation` comes to here, with the one line that says why, or why none works.
pub fn choose(isolation: Isolation, p: &Probe) -> Result<(Isolation, String), String> {
    let root = p.euid == 0;
    match isolation {
        Isolation::Auto if !root => match &p.userns {
            Ok(()) if p.subids.is_ok() => Ok((
                Isolation::Rootless,
                "rootless: a user namespace with your sub-ids (not running as root)".into(),
            )),
            // Without sub-ids a user namespace maps only the caller: owners are squashed and a
            // step's chown to another id fails. Ptrace keeps them all (slower, no isolation).
            Ok(()) => match (&p.ptrace, &p.subids) {
                (Ok(()), Err(why)) => Ok((
                    Isolation::Ptrace,
                    format!(
                        "ptrace: a user namespace would map only your own id ({why}); steps run under ptrace \
                         with root emulated, keeping every owner (--isolation=rootless is faster and squashes them)"
                    ),
                )),
                _ => Ok((Isolation::Rootless, "rootless: a user namespace (not running as root)".into())),
            },
            Err(f) => match &p.ptrace {
                Ok(()) => Ok((
                    Isolation::Ptrace,
                    format!(
                        "ptrace: user namespaces are denied ({f}), as under Docker's default seccomp profile; \
                         steps run under ptrace with root emulated, sharing the machine's processes and network \
                         (slower on system-call-heavy steps)"
                    ),
                )),
                Err(t) => Err(format!(
                    "no isolation works here for a non-root user: user namespaces are denied ({f}){} and ptrace \
                     is denied ({t}) — run hako as root in the container (it then uses --isolation=chroot), or \
                     allow user namespaces",
                    super::userns_hint().map(|h| format!(" — {h}")).unwrap_or_default()
                )),
            },
        },
        Isolation::Auto => match &p.namespaces {
            Ok(()) => {
                Ok((Isolation::Root, "root: mount, pid and network namespaces (running as root)".into()))
            }
            Err(f) => Ok((
                Isolation::Chroot,
                format!(
                    "chroot: running as root, but namespaces are denied ({f}), as under Docker's default seccomp \
                     profile; steps run chrooted, sharing the machine's processes and network"
                ),
            )),
        },
        other => Ok((other, format!("{}: as asked (--isolation)", name(other)))),
    }
}

/// The `--isolation` value naming `i`.
pub fn name(i: Isolation) -> &'static str {
    match i {
        Isolation::Auto => "auto",
        Isolation::Rootless => "rootless",
        Isolation::Root => "root",
        Isolation::Chroot => "chroot",
        Isolation::Ptrace => "ptrace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(call: &'static str) -> Result<(), Failure> {
        Err(Failure { call, errno: Errno::EPERM })
    }

    #[test]
    fn auto_picks_what_works_and_says_why() {
        let all = Probe { euid: 0, userns: Ok(()), namespaces: Ok(()), ptrace: Ok(()), subids: Ok(()) };
        assert_eq!(choose(Isolation::Auto, &all).map(|c| c.0), Ok(Isolation::Root));
        let locked = Probe {
            euid: 0,
            userns: denied(CALLS[0]),
            namespaces: denied(CALLS[1]),
            ptrace: Ok(()),
            subids: Ok(()),
        };
        let (mode, why) = choose(Isolation::Auto, &locked).expect("chroot");
        assert_eq!(mode, Isolation::Chroot);
        assert!(why.contains("unshare(CLONE_NEWNS|CLONE_NEWCGROUP): Operation not permitted"), "{why}");
        let user =
            Probe { euid: 1000, userns: Ok(()), namespaces: denied("root"), ptrace: Ok(()), subids: Ok(()) };
        assert_eq!(choose(Isolation::Auto, &user).map(|c| c.0), Ok(Isolation::Rootless));
        let squashed = Probe { subids: Err("no range for u in /etc/subuid".into()), ..user.clone() };
        let (mode, why) = choose(Isolation::Auto, &squashed).expect("ptrace");
        assert_eq!(mode, Isolation::Ptrace, "owners kept rather than squashed");
        assert!(why.contains("no range for u in /etc/subuid"), "{why}");
        let squashed_only = Probe { ptrace: denied("ptrace(PTRACE_TRACEME)"), ..squashed };
        assert_eq!(choose(Isolation::Auto, &squashed_only).map(|c| c.0), Ok(Isolation::Rootless));
        let user_locked = Probe {
            euid: 1000,
            userns: denied(CALLS[0]),
            namespaces: denied("root"),
            ptrace: Ok(()),
            subids: Ok(()),
        };
        let (mode, why) = choose(Isolation::Auto, &user_locked).expect("ptrace");
        assert_eq!(mode, Isolation::Ptrace);
        assert!(why.contains("unshare(CLONE_NEWUSER): Operation not permitted"), "{why}");
        let nothing = Probe { ptrace: denied("ptrace(PTRACE_TRACEME)"), ..user_locked };
        let err = choose(Isolation::Auto, &nothing).expect_err("nothing works");
        assert!(err.contains("ptrace(PTRACE_TRACEME): Operation not permitted"), "{err}");
        assert_eq!(choose(Isolation::Chroot, &all).map(|c| c.0), Ok(Isolation::Chroot), "as asked");
    }

    #[test]
    fn the_probe_runs_here() {
        // Whatever this machine allows, probing does not fail or hang, and root is probed as root.
        let p = probe();
        assert_eq!(p.euid, nix::unistd::geteuid().as_raw());
        if p.euid != 0 {
            assert!(p.namespaces.is_err());
        }
        // The probes auto makes choose what all of them choose.
        let fewer = probe_for_auto();
        assert_eq!(choose(Isolation::Auto, &fewer), choose(Isolation::Auto, &p));
        if p.euid == 0 {
            assert_eq!(
                (fewer.userns, fewer.ptrace),
                (Err(NOT_PROBED), Err(NOT_PROBED)),
                "root needs neither"
            );
        }
    }

    #[test]
    fn auto_reads_no_probe_it_skipped() {
        let skipped = || Err(NOT_PROBED);
        for namespaces in [Ok(()), denied(CALLS[1])] {
            let root = Probe { euid: 0, userns: skipped(), namespaces, ptrace: skipped(), subids: Ok(()) };
            let (_, why) = choose(Isolation::Auto, &root).expect("root mode or chroot");
            assert!(!why.contains("not probed"), "{why}");
        }
        let user = Probe {
            euid: 1000,
            userns: Ok(()),
            namespaces: denied("root"),
            ptrace: skipped(),
            subids: Ok(()),
        };
        assert_eq!(choose(Isolation::Auto, &user).map(|c| c.0), Ok(Isolation::Rootless));
    }
}
