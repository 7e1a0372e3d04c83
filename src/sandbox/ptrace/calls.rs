//! The system calls the tracer rewrites or emulates (x86-64 numbers), at their entry and, for
//! those whose result must be changed, at their exit.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::libc;
use nix::unistd::Pid;

use super::Tracer;
use super::dac::{MAY_EXEC, MAY_WRITE, Touch};
use super::exec;
use super::fake::{ACL_ACCESS_XATTR, CAP_SETFCAP, Caps, Creds, acl_mode, capability_as_set};
use super::io_errno;
use super::mem::{self, Scratch};
use super::paths::{self, path};
use super::regs::Regs;
use super::seccomp::ArgTest;
use crate::layer::index::CAPABILITY_XATTR;
use crate::layer::walkdiff::Owner;

/// Calls the seccomp filter sends to the tracer only for some arguments: `sendto` with an address
/// (a datagram to a socket path; a connected socket's `send` passes none, so the network's hot
/// path never stops), and `getsockopt` of `SO_PEERCRED` (who is at the other end).
pub const TRACED_WHEN: &[(i64, ArgTest)] = &[
    (libc::SYS_sendto, ArgTest::NotNull(4)),
    (libc::SYS_getsockopt, ArgTest::Is(2, libc::SO_PEERCRED as u32)),
];

/// Whether the tracer handles call `nr` (always, or when its argument says so).
pub fn traced(nr: i64) -> bool {
    TRACED.contains(&nr) || TRACED_WHEN.iter().any(|(n, _)| *n == nr)
}

/// Every call the seccomp filter always sends to the tracer.
pub const TRACED: &[i64] = &[
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_creat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_getcwd,
    libc::SYS_chdir,
    libc::SYS_chroot,
    libc::SYS_truncate,
    libc::SYS_statfs,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_futimesat,
    libc::SYS_utimensat,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_mknod,
    libc::SYS_mknodat,
    libc::SYS_rmdir,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_link,
    libc::SYS_linkat,
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchmodat2,
    libc::SYS_chown,
    libc::SYS_lchown,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    libc::SYS_inotify_add_watch,
    libc::SYS_bind,
    libc::SYS_connect,
    // Its destination is inside a struct the filter cannot read: every one stops (few are made;
    // streams use write and send).
    libc::SYS_sendmsg,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    libc::SYS_setgroups,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_prctl,
    libc::SYS_uname,
];

/// What to check once a call has run: at the process's next stop, whatever it is (waiting for
/// the call's own exit stop after a seccomp stop is not reliable on every kernel, and costs a
/// stop).
#[derive(Debug)]
pub enum After {
    /// Record who made the entry at this machine path (not followed), and what it is, if the
    /// call made it.
    Made { host: Vec<u8>, owner: Owner },
    /// Forget an inode whose last name this was, if the name is gone.
    Forget { host: Vec<u8>, inode: (u64, u64) },
    /// Close a file the call opened in the tracer's place (it has its own description now).
    Served(std::os::fd::OwnedFd),
}

/// How a path argument is read: where it is, relative to which directory, and whether its last
/// component is followed.
#[derive(Clone, Copy)]
struct Arg {
    dirfd: Option<usize>,
    path: usize,
    follow: bool,
    /// An empty path names the directory argument (`AT_EMPTY_PATH`); else it is `ENOENT`.
    empty: bool,
}

const fn p(path: usize, follow: bool) -> Arg {
    Arg { dirfd: None, path, follow, empty: false }
}

const fn at(dirfd: usize, path: usize, follow: bool) -> Arg {
    Arg { dirfd: Some(dirfd), path, follow, empty: false }
}

/// A call's outcome at entry: go on (maybe rewritten, maybe with work at exit) or skip it with a
/// result.
pub enum Entry {
    /// Let the (possibly rewritten) call run.
    Run(Option<After>),
    /// Do not run it: the tracee sees this result.
    Skip(i64),
}

fn err(e: Errno) -> i64 {
    -(e as i64)
}

impl Tracer {
    /// Handles the entry of call `regs.nr()` by `pid`.
    pub fn entry(&mut self, pid: Pid, regs: &mut Regs) -> Entry {
        match self.dispatch(pid, regs) {
            Ok(e) => e,
            Err(e) => Entry::Skip(err(e)),
        }
    }

    fn dispatch(&mut self, pid: Pid, regs: &mut Regs) -> Result<Entry, Errno> {
        let nr = regs.nr();
        let args: [u64; 6] = std::array::from_fn(|i| regs.arg(i));
        let a = |i: usize| args[i];
        let nofollow_flag = |i: usize| a(i) as i32 & libc::AT_SYMLINK_NOFOLLOW == 0;
        let mut scratch = Scratch::new(pid, regs.sp());
        let run = |after: Option<After>| Ok(Entry::Run(after));
        match nr {
            libc::SYS_open | libc::SYS_openat | libc::SYS_creat => {
                let (arg, flags, mode_i) = match nr {
                    libc::SYS_open => (p(0, true), a(1) as i32, 2),
                    libc::SYS_openat => (at(0, 1, true), a(2) as i32, 3),
                    _ => (p(0, true), libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, 1),
                };
                let follow = flags & libc::O_NOFOLLOW == 0
                    && flags & (libc::O_CREAT | libc::O_EXCL) != (libc::O_CREAT | libc::O_EXCL);
                let Some(host) = self.rewrite(pid, regs, &mut scratch, Arg { follow, ..arg })? else {
                    return run(None);
                };
                if flags & libc::O_ACCMODE == libc::O_RDONLY
                    && let Some((what, text)) = self.proc_file_as_seen(&host)?
                {
                    let (file, name) = serve(what, &text)?;
                    regs.set_arg(arg.path, scratch.put_cstr(&name)?);
                    return run(Some(After::Served(file)));
                }
                self.may_open(pid, &host, flags, follow)?;
                if flags & libc::O_ACCMODE != libc::O_RDONLY
                    || flags & libc::O_TRUNC != 0
                    || (flags & libc::O_CREAT != 0 && stat(&host, follow).is_err())
                {
                    self.root.writable(&host)?;
                }
                if flags & libc::O_ACCMODE != libc::O_RDONLY {
                    self.written(&host, follow);
                }
                if flags & libc::O_CREAT == 0 || !self.root.holds(&host) {
                    return run(None);
                }
                let mode = a(mode_i) as u32 & 0o7777;
                let forced = mode | 0o600;
                if forced != mode {
                    regs.set_arg(mode_i, forced as u64);
                }
                run(self.made(pid, host, libc::S_IFREG | mode, 0, forced != mode))
            }
            libc::SYS_openat2 => Err(Errno::ENOSYS),
            // The stat family, readlink and getcwd return what the step must see differently:
            // the tracer makes the call itself and writes the result.
            libc::SYS_stat | libc::SYS_lstat => {
                let t = self.target(pid, regs, p(0, nr == libc::SYS_stat))?;
                self.stat(pid, t, a(1)).map(Entry::Skip)
            }
            libc::SYS_fstat => self.stat(pid, Target::Fd(a(0) as i32), a(1)).map(Entry::Skip),
            libc::SYS_newfstatat => {
                let t = self.target(pid, regs, at(0, 1, nofollow_flag(3)).empty_path(a(3)))?;
                self.stat(pid, t, a(2)).map(Entry::Skip)
            }
            libc::SYS_statx => {
                let t = self.target(pid, regs, at(0, 1, nofollow_flag(2)).empty_path(a(2)))?;
                self.statx(pid, t, a(2) as i32, a(3) as u32, a(4)).map(Entry::Skip)
            }
            libc::SYS_truncate => {
                if let Some(host) = self.rewrite(pid, regs, &mut scratch, p(0, true))? {
                    self.permit(pid, &host, true, MAY_WRITE)?;
                    self.root.writable(&host)?;
                    self.written(&host, true);
                }
                run(None)
            }
            libc::SYS_access => {
                if let Some(host) = self.rewrite(pid, regs, &mut scratch, p(0, true))? {
                    self.may_access(pid, &host, true, a(1) as u32, false)?;
                }
                run(None)
            }
            libc::SYS_chdir | libc::SYS_statfs => {
                if let Some(host) = self.rewrite(pid, regs, &mut scratch, p(0, true))? {
                    self.permit(pid, &host, true, if nr == libc::SYS_chdir { MAY_EXEC } else { 0 })?;
                }
                run(None)
            }
            libc::SYS_utime | libc::SYS_utimes => {
                if let Some(host) = self.rewrite(pid, regs, &mut scratch, p(0, true))? {
                    self.may_touch(pid, &host, true, if a(1) == 0 { Touch::Now } else { Touch::Given })?;
                    self.root.writable(&host)?;
                }
                run(None)
            }
            libc::SYS_setxattr
            | libc::SYS_lsetxattr
            | libc::SYS_fsetxattr
            | libc::SYS_getxattr
            | libc::SYS_lgetxattr
            | libc::SYS_fgetxattr
            | libc::SYS_listxattr
            | libc::SYS_llistxattr
            | libc::SYS_flistxattr
            | libc::SYS_removexattr
            | libc::SYS_lremovexattr
            | libc::SYS_fremovexattr => self.xattr(pid, regs, &mut scratch),
            libc::SYS_faccessat | libc::SYS_faccessat2 => {
                // faccessat has no flags argument: its third is garbage.
                let flags = if nr == libc::SYS_faccessat2 { a(3) as i32 } else { 0 };
                let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
                if let Some(host) = self.rewrite(pid, regs, &mut scratch, at(0, 1, follow))? {
                    self.may_access(pid, &host, follow, a(2) as u32, flags & libc::AT_EACCESS != 0)?;
                }
                run(None)
            }
            libc::SYS_futimesat => {
                if let Some(host) = self.rewrite(pid, regs, &mut scratch, at(0, 1, true))? {
                    self.may_touch(pid, &host, true, if a(2) == 0 { Touch::Now } else { Touch::Given })?;
                    self.root.writable(&host)?;
                }
                run(None)
            }
            libc::SYS_utimensat => {
                let follow = nofollow_flag(3);
                // A NULL path makes it act on the descriptor.
                let host = if a(1) != 0 {
                    self.rewrite(pid, regs, &mut scratch, at(0, 1, follow))?
                } else {
                    Some(Target::Fd(a(0) as i32).host(pid))
                };
                // The times are read from the step only when something may refuse them (a root
                // step outside read-only mounts sets its times unchecked).
                if let Some(host) = host
                    && (self.checked(pid).is_some() || self.root.has_read_only())
                    && let Some(how) = utimens_touch(pid, a(2))?
                {
                    self.may_touch(pid, &host, follow, how)?;
                    self.root.writable(&host)?;
                }
                run(None)
            }
            libc::SYS_inotify_add_watch => {
                let follow = a(2) as u32 & libc::IN_DONT_FOLLOW == 0;
                self.rewrite(pid, regs, &mut scratch, at(0, 1, follow).no_dirfd())?;
                run(None)
            }
            libc::SYS_readlink | libc::SYS_readlinkat => {
                let (arg, buf) =
                    // readlinkat's empty path is its descriptor's link, without a flag.
                    if nr == libc::SYS_readlink {
                        (p(0, false), 1)
                    } else {
                        (at(0, 1, false).empty_path(libc::AT_EMPTY_PATH as u64), 2)
                    };
                let target = self.target(pid, regs, arg)?;
                self.reach(pid, &target)?;
                let host = target.host(pid);
                let link = match self.program(&host) {
                    Some(program) => program,
                    None => std::fs::read_link(path(&host)).map_err(io_errno)?.into_os_string().into_vec(),
                };
                // The machine's /proc links name machine paths: give the step's.
                let guest = self.root.to_guest(&link);
                let n = guest.len().min(a(buf + 1) as usize);
                mem::write(pid, a(buf), &guest[..n])?;
                Ok(Entry::Skip(n as i64))
            }
            libc::SYS_getcwd => {
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(io_errno)?;
                let mut guest = self.root.to_guest(cwd.as_os_str().as_bytes());
                guest.push(0);
                if guest.len() as u64 > a(1) {
                    return Err(Errno::ERANGE);
                }
                mem::write(pid, a(0), &guest)?;
                Ok(Entry::Skip(guest.len() as i64))
            }
            libc::SYS_chroot => Err(Errno::EPERM),
            libc::SYS_mkdir | libc::SYS_mkdirat => {
                let (arg, mode_i) =
                    if nr == libc::SYS_mkdir { (p(0, false), 1) } else { (at(0, 1, false), 2) };
                let Some(host) = self.rewrite(pid, regs, &mut scratch, arg)? else { return run(None) };
                self.may_create(pid, &host)?;
                self.root.writable(&host)?;
                let mode = a(mode_i) as u32 & 0o7777;
                let forced = mode | 0o700;
                if forced != mode {
                    regs.set_arg(mode_i, forced as u64);
                }
                run(self.made(pid, host, libc::S_IFDIR | mode, 0, forced != mode))
            }
            libc::SYS_mknod | libc::SYS_mknodat => {
                let (arg, mode_i) =
                    if nr == libc::SYS_mknod { (p(0, false), 1) } else { (at(0, 1, false), 2) };
                let Some(host) = self.rewrite(pid, regs, &mut scratch, arg)? else { return run(None) };
                self.may_create(pid, &host)?;
                self.root.writable(&host)?;
                let mode = a(mode_i) as u32;
                let kind = mode & libc::S_IFMT;
                let kind = if kind == 0 { libc::S_IFREG } else { kind };
                if kind == libc::S_IFCHR || kind == libc::S_IFBLK {
                    self.may_make_device(pid)?;
                    // Only root may make device nodes: an empty file stands in for it, and the
                    // layer gets the device.
                    regs.set_arg(mode_i, (libc::S_IFREG | (mode & 0o7777) | 0o600) as u64);
                    regs.set_arg(mode_i + 1, 0);
                    let owner = self.made_owner(pid, kind | (mode & 0o7777 & !umask(pid)), a(mode_i + 1));
                    return run(Some(After::Made { host, owner }));
                }
                run(self.made(pid, host, kind | (mode & 0o7777), 0, false))
            }
            libc::SYS_symlink | libc::SYS_symlinkat => {
                let arg = if nr == libc::SYS_symlink { p(1, false) } else { at(1, 2, false) };
                let Some(host) = self.rewrite(pid, regs, &mut scratch, arg)? else { return run(None) };
                self.may_create(pid, &host)?;
                self.root.writable(&host)?;
                run(self.made(pid, host, libc::S_IFLNK | 0o777, 0, false))
            }
            libc::SYS_link | libc::SYS_linkat => {
                let (old, new) = if nr == libc::SYS_link {
                    (p(0, false), p(1, false))
                } else {
                    (at(0, 1, a(4) as i32 & libc::AT_SYMLINK_FOLLOW != 0), at(2, 3, false))
                };
                let old = self.rewrite(pid, regs, &mut scratch, old)?;
                if let Some(new) = self.rewrite(pid, regs, &mut scratch, new)? {
                    match &old {
                        Some(old) => self.may_link(pid, old, &new)?,
                        None => self.may_create(pid, &new)?,
                    }
                    self.root.writable(&new)?;
                } else if let Some(old) = &old {
                    self.permit(pid, old, false, 0)?;
                }
                run(None)
            }
            libc::SYS_unlink | libc::SYS_rmdir | libc::SYS_unlinkat => {
                let arg = if nr == libc::SYS_unlinkat { at(0, 1, false) } else { p(0, false) };
                let host = self.rewrite(pid, regs, &mut scratch, arg)?;
                if let Some(h) = &host {
                    self.may_remove(pid, h)?;
                    self.root.writable(h)?;
                }
                run(host.and_then(|h| self.last_link(&h, None).map(|inode| After::Forget { host: h, inode })))
            }
            libc::SYS_rename | libc::SYS_renameat | libc::SYS_renameat2 => {
                let (old, new) = if nr == libc::SYS_rename {
                    (p(0, false), p(1, false))
                } else {
                    (at(0, 1, false), at(2, 3, false))
                };
                let from = self.rewrite(pid, regs, &mut scratch, old)?;
                let to = self.rewrite(pid, regs, &mut scratch, new)?;
                let exchange = nr == libc::SYS_renameat2 && a(4) as u32 & libc::RENAME_EXCHANGE != 0;
                if let (Some(f), Some(t)) = (&from, &to) {
                    self.may_rename(pid, f, t, exchange)?;
                    self.root.writable(f)?;
                    self.root.writable(t)?;
                }
                let replaced = match (&from, to) {
                    (Some(f), Some(t)) if !exchange => self.last_link(&t, Some(f)).map(|inode| (t, inode)),
                    _ => None,
                };
                // The new name holds the moved entry if the rename worked: the replaced inode is
                // gone when the name no longer leads to it.
                run(replaced.map(|(host, inode)| After::Forget { host, inode }))
            }
            libc::SYS_chmod | libc::SYS_fchmodat | libc::SYS_fchmodat2 | libc::SYS_fchmod => {
                let (target, mode) = match nr {
                    libc::SYS_chmod => (self.target(pid, regs, p(0, true))?, a(1)),
                    libc::SYS_fchmod => (Target::Fd(a(0) as i32), a(1)),
                    libc::SYS_fchmodat => (self.target(pid, regs, at(0, 1, true))?, a(2)),
                    _ => {
                        let t = self.target(pid, regs, at(0, 1, nofollow_flag(3)).empty_path(a(3)))?;
                        (t, a(2))
                    }
                };
                self.chmod(pid, target, mode as u32 & 0o7777).map(Entry::Skip)
            }
            libc::SYS_chown | libc::SYS_lchown | libc::SYS_fchown | libc::SYS_fchownat => {
                let (target, uid, gid) = match nr {
                    libc::SYS_chown | libc::SYS_lchown => {
                        let t = self.target(pid, regs, p(0, nr == libc::SYS_chown))?;
                        (t, a(1), a(2))
                    }
                    libc::SYS_fchown => (Target::Fd(a(0) as i32), a(1), a(2)),
                    _ => {
                        let t = self.target(pid, regs, at(0, 1, nofollow_flag(4)).empty_path(a(4)))?;
                        (t, a(2), a(3))
                    }
                };
                self.chown(pid, target, uid as u32, gid as u32).map(Entry::Skip)
            }
            libc::SYS_bind | libc::SYS_connect => {
                self.socket_path(pid, regs, &mut scratch, (1, 2), nr == libc::SYS_connect)?;
                run(None)
            }
            libc::SYS_sendto => {
                self.socket_path(pid, regs, &mut scratch, (4, 5), true)?;
                run(None)
            }
            libc::SYS_sendmsg => {
                self.sendmsg_name(pid, regs, &mut scratch)?;
                run(None)
            }
            libc::SYS_getsockopt if a(1) as i32 == libc::SOL_SOCKET && a(2) as i32 == libc::SO_PEERCRED => {
                match self.peer_creds(pid, a(0) as i32, a(3), a(4)) {
                    Some(r) => r.map(Entry::Skip),
                    None => run(None),
                }
            }
            libc::SYS_getsockopt => run(None),
            libc::SYS_execve | libc::SYS_execveat => {
                let (arg, argv_i) =
                    if nr == libc::SYS_execve { (p(0, true), 1) } else { (at(0, 1, true), 2) };
                self.exec(pid, regs, &mut scratch, arg, argv_i)?;
                run(None)
            }
            libc::SYS_capget | libc::SYS_capset => self.caps_call(pid, regs),
            libc::SYS_uname => uname(pid, a(0)).map(Entry::Skip),
            // no_new_privs as the step set it, not as the tracer's filter needs it (see
            // [`Creds::no_new_privs`]); the real flag is set already, so setting it runs. The
            // dumpable flag is answered, not set (see [`Creds::dumpable`]), and so is keepcaps,
            // which only the emulated ids use.
            libc::SYS_prctl => match a(0) as i32 {
                libc::PR_GET_DUMPABLE => Ok(Entry::Skip(i64::from(self.creds(pid).dumpable))),
                libc::PR_GET_KEEPCAPS => Ok(Entry::Skip(i64::from(self.creds(pid).keep_caps))),
                libc::PR_SET_KEEPCAPS if a(1) <= 1 => {
                    self.creds_mut(pid).keep_caps = a(1) == 1;
                    Ok(Entry::Skip(0))
                }
                libc::PR_SET_DUMPABLE if a(1) <= 1 => {
                    self.creds_mut(pid).dumpable = a(1) == 1;
                    Ok(Entry::Skip(0))
                }
                libc::PR_GET_NO_NEW_PRIVS => Ok(Entry::Skip(i64::from(self.creds(pid).no_new_privs))),
                libc::PR_SET_NO_NEW_PRIVS => {
                    if a(1) == 1 && (2..5).all(|i| a(i) == 0) {
                        self.creds_mut(pid).no_new_privs = true;
                    }
                    run(None)
                }
                _ => run(None),
            },
            _ => self.creds_call(pid, regs).map(Entry::Skip),
        }
    }

    /// Reads path argument `arg`, makes it the machine's path and points the call at it.
    /// `None` when the call acts on a descriptor (an empty path with `AT_EMPTY_PATH`).
    fn rewrite(
        &mut self,
        pid: Pid,
        regs: &mut Regs,
        scratch: &mut Scratch,
        arg: Arg,
    ) -> Result<Option<Vec<u8>>, Errno> {
        let host = self.host_path(pid, regs, arg)?;
        if let Some(host) = &host {
            let addr = scratch.put_cstr(host)?;
            regs.set_arg(arg.path, addr);
        }
        Ok(host)
    }

    /// The machine path for path argument `arg`; `None` for an empty path (`AT_EMPTY_PATH`, or
    /// `ENOENT`, which the kernel reports itself).
    fn host_path(&mut self, pid: Pid, regs: &Regs, arg: Arg) -> Result<Option<Vec<u8>>, Errno> {
        let guest = mem::read_cstr(pid, regs.arg(arg.path))?;
        if guest.is_empty() {
            return Ok(None);
        }
        let dirfd = arg.dirfd.map(|i| regs.arg(i) as i32);
        let host = self.machine_path(pid, dirfd, &guest, arg.follow)?;
        // Followed, a step's `/proc/PID/exe` is its program, not the loader that runs it.
        if arg.follow
            && let Some(program) = self.program(&host)
        {
            return Ok(Some(program));
        }
        Ok(Some(host))
    }

    /// The machine's path for `guest`, a path process `pid` named relative to `dirfd` (none:
    /// its working directory), with `/proc/self` made the process's own.
    fn machine_path(
        &mut self,
        pid: Pid,
        dirfd: Option<i32>,
        guest: &[u8],
        follow: bool,
    ) -> Result<Vec<u8>, Errno> {
        let abs = self.root.absolute(pid, dirfd, guest)?;
        let host = self.root.to_host(&abs, follow)?;
        if self.debug {
            self.log(format!(
                "{pid} {:?} is {:?}",
                String::from_utf8_lossy(&abs),
                String::from_utf8_lossy(&host)
            ));
        }
        Ok(paths::own_proc(pid, host))
    }

    /// The program of the traced process whose `exe` link `host` is (`/proc/PID/exe`,
    /// `/proc/PID/task/TID/exe`), when the kernel's link names its loader instead.
    fn program(&self, host: &[u8]) -> Option<Vec<u8>> {
        let pid = paths::exe_link_pid(host)?;
        self.procs.get(&pid)?.exe.clone()
    }

    /// What a call the tracer makes itself (stat, readlink, chmod, chown) acts on.
    fn target(&mut self, pid: Pid, regs: &Regs, arg: Arg) -> Result<Target, Errno> {
        let follow = arg.follow;
        match (self.host_path(pid, regs, arg)?, arg.dirfd) {
            // Followed, `/proc/self/fd/N` is the descriptor (glibc's `fchmodat` with
            // `AT_SYMLINK_NOFOLLOW` chmods an `O_PATH` descriptor so), not a machine path.
            (Some(host), _)
                if follow
                    && let Some((p, fd)) = paths::fd_link(&host)
                    && p == pid =>
            {
                Ok(Target::Fd(fd))
            }
            (Some(host), _) => Ok(Target::Path(host, follow)),
            (None, Some(fd)) if arg.empty => Ok(Target::Fd(regs.arg(fd) as i32)),
            // `stat("")` (glibc's `newfstatat(AT_FDCWD, "", buf, 0)`) is not the working directory.
            (None, _) => Err(Errno::ENOENT),
        }
    }

    /// What a traced process must read in the `/proc` file at `host` where the kernel's would
    /// show what the tracer changed: a traced process's status with the ids it emulates
    /// ([`Creds::status_text`]), or the command line of one run through its loader without the
    /// loader's arguments ([`exec::cmdline_as_named`]). `None` for any other file.
    fn proc_file_as_seen(&self, host: &[u8]) -> Result<Option<(&'static std::ffi::CStr, Vec<u8>)>, Errno> {
        if let Some(who) = paths::status_of(host)
            && self.procs.contains_key(&who)
        {
            let real = std::fs::read_to_string(path(host)).map_err(io_errno)?;
            return Ok(Some((c"status", self.creds(who).status_text(&real).into_bytes())));
        }
        if let Some(who) = paths::cmdline_of(host)
            && self.procs.get(&who).is_some_and(|p| p.exe.is_some())
        {
            let named = std::fs::read(path(host)).ok().and_then(|r| exec::cmdline_as_named(&r));
            return Ok(named.map(|text| (c"cmdline", text)));
        }
        Ok(None)
    }

    /// Search permission on the way to `target` (see [`super::dac`]).
    fn reach(&self, pid: Pid, target: &Target) -> Result<(), Errno> {
        match target {
            Target::Path(host, _) => self.permit(pid, host, false, 0),
            Target::Fd(_) => Ok(()),
        }
    }

    /// The inode at `host` (not followed) when it is in the root and this name is its last
    /// (a directory, or a file with one link) and it is not `same` (a rename onto itself).
    fn last_link(&self, host: &[u8], same: Option<&[u8]>) -> Option<(u64, u64)> {
        if !self.root.holds(host) {
            return None;
        }
        let md = std::fs::symlink_metadata(path(host)).ok()?;
        if let Some(s) = same.and_then(|s| std::fs::symlink_metadata(path(s)).ok())
            && (s.dev(), s.ino()) == (md.dev(), md.ino())
        {
            return None;
        }
        (md.is_dir() || md.nlink() <= 1).then_some((md.dev(), md.ino()))
    }

    /// The owner a new entry gets: the creating process's filesystem ids.
    fn made_owner(&self, pid: Pid, mode: u32, rdev: u64) -> Owner {
        let c = self.creds(pid);
        Owner { uid: c.uid[3], gid: c.gid[3], mode, rdev }
    }

    /// Work at exit for a creation at `host`: needed when the disk cannot say the truth (a mode
    /// widened so the caller can use it, a creator other than the step's user, or a group from a
    /// setgid directory).
    fn made(&self, pid: Pid, host: Vec<u8>, mode: u32, rdev: u64, widened: bool) -> Option<After> {
        if !self.root.holds(&host) {
            return None;
        }
        let c = self.creds(pid);
        let setgid_group = self.setgid_parent(&host);
        let other = (c.uid[3], setgid_group.unwrap_or(c.gid[3])) != self.owners.default;
        if !widened && !other {
            return None;
        }
        let umask = if mode & libc::S_IFMT == libc::S_IFLNK { 0 } else { umask(pid) };
        let mut owner = self.made_owner(pid, mode & !umask, rdev);
        // As the kernel does (`inode_init_owner`): the directory's group, and a directory keeps
        // passing it on.
        if let Some(gid) = setgid_group {
            owner.gid = gid;
            if mode & libc::S_IFMT == libc::S_IFDIR {
                owner.mode |= libc::S_ISGID;
            }
        }
        Some(After::Made { host, owner })
    }

    /// The group of the directory `host` is made in, when that directory is setgid.
    fn setgid_parent(&self, host: &[u8]) -> Option<u32> {
        let md = std::fs::metadata(path(host).parent()?).ok()?;
        let dir = self.owners.view((md.dev(), md.ino()), Owner::of(&md));
        (md.is_dir() && dir.mode & libc::S_ISGID != 0).then_some(dir.gid)
    }

    /// `chmod`: the disk gets the mode with the owner's read and write (and, for directories,
    /// search) bits, so the caller can still use the entry as root could; the step and the layer
    /// see the mode asked for.
    fn chmod(&mut self, pid: Pid, target: Target, mode: u32) -> Result<i64, Errno> {
        let host = target.host(pid);
        let follow = target.follows();
        self.reach(pid, &target)?;
        let md = stat(&host, follow)?;
        if !self.root.holds(&host) && !matches!(target, Target::Fd(_)) {
            // The machine's /dev, /proc or /sys. A container's are mounts of its own, which its
            // root may chmod (`chmod 1777 /dev/shm`) and no layer holds; these the step may not
            // change: root's chmod succeeds and, as far as the image goes, does the same.
            return if self.checked(pid).is_none() { Ok(0) } else { Err(Errno::EPERM) };
        }
        self.root.writable(&host)?;
        let inode = (md.dev(), md.ino());
        let now = self.owners.view(inode, Owner::of(&md));
        let mode = match self.checked(pid) {
            Some(s) if !s.owns(&now) => return Err(Errno::EPERM),
            Some(s) => s.chmod_mode(&now, mode),
            None => mode,
        };
        if md.file_type().is_symlink() {
            return Err(Errno::EOPNOTSUPP);
        }
        let forced = mode | if md.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(path(&host), std::os::unix::fs::PermissionsExt::from_mode(forced))
            .map_err(io_errno)?;
        self.owners.set(inode, Owner { mode: (now.mode & libc::S_IFMT) | mode, ..now });
        Ok(0)
    }

    /// `chown`: recorded, never made (the caller cannot give files away).
    fn chown(&mut self, pid: Pid, target: Target, uid: u32, gid: u32) -> Result<i64, Errno> {
        let host = target.host(pid);
        self.reach(pid, &target)?;
        let md = stat(&host, target.follows())?;
        self.root.writable(&host)?;
        let inode = (md.dev(), md.ino());
        let now = self.owners.view(inode, Owner::of(&md));
        if self.checked(pid).is_some_and(|s| !s.may_chown(&now, uid, gid)) {
            return Err(Errno::EPERM);
        }
        let mut next = now;
        if uid != u32::MAX {
            next.uid = uid;
        }
        if gid != u32::MAX {
            next.gid = gid;
        }
        // As the kernel does: a chown of a non-directory drops setuid, setgid when the group
        // can execute, and the file's capabilities.
        if (uid != u32::MAX || gid != u32::MAX) && !md.is_dir() && !md.file_type().is_symlink() {
            next.mode &= !libc::S_ISUID;
            if next.mode & 0o010 != 0 {
                next.mode &= !libc::S_ISGID;
            }
            self.owners.set_capability(inode, None);
        }
        self.owners.set(inode, next);
        Ok(0)
    }

    /// The extended attribute calls: their paths rewritten into the root, and a regular file's
    /// `security.capability` there answered from the record ([`super::fake::Owners`]), as root
    /// would find it: the caller may not set one (`setcap` needs `CAP_SETFCAP`), and the layer
    /// is written from the record. Other attributes are the disk's.
    fn xattr(&mut self, pid: Pid, regs: &mut Regs, scratch: &mut Scratch) -> Result<Entry, Errno> {
        let nr = regs.nr();
        let args: [u64; 5] = std::array::from_fn(|i| regs.arg(i));
        let a = |i: usize| args[i];
        let target = match nr {
            libc::SYS_fsetxattr | libc::SYS_fgetxattr | libc::SYS_flistxattr | libc::SYS_fremovexattr => {
                Target::Fd(a(0) as i32)
            }
            _ => {
                let follow = !matches!(
                    nr,
                    libc::SYS_lsetxattr | libc::SYS_lgetxattr | libc::SYS_llistxattr | libc::SYS_lremovexattr
                );
                match self.rewrite(pid, regs, scratch, p(0, follow))? {
                    Some(host) => Target::Path(host, follow),
                    // An empty path: the kernel's ENOENT.
                    None => return Ok(Entry::Run(None)),
                }
            }
        };
        let list = matches!(nr, libc::SYS_listxattr | libc::SYS_llistxattr | libc::SYS_flistxattr);
        let name = if list { Vec::new() } else { mem::read_cstr(pid, a(1))? };
        if name == ACL_ACCESS_XATTR.as_bytes()
            && matches!(nr, libc::SYS_setxattr | libc::SYS_lsetxattr | libc::SYS_fsetxattr)
        {
            return self.acl_access(pid, target, a(2), a(3) as usize);
        }
        if !list && name != CAPABILITY_XATTR.as_bytes() {
            return Ok(Entry::Run(None));
        }
        let Some(inode) = self.recorded_file(pid, &target) else { return Ok(Entry::Run(None)) };
        let reply = |bytes: &[u8], (addr, size): (u64, u64)| -> Result<Entry, Errno> {
            if size != 0 {
                if (size as usize) < bytes.len() {
                    return Err(Errno::ERANGE);
                }
                mem::write(pid, addr, bytes)?;
            }
            Ok(Entry::Skip(bytes.len() as i64))
        };
        match nr {
            libc::SYS_getxattr | libc::SYS_lgetxattr | libc::SYS_fgetxattr => {
                let cap = self.owners.capability(inode).ok_or(Errno::ENODATA)?;
                reply(cap, (a(2), a(3)))
            }
            libc::SYS_listxattr | libc::SYS_llistxattr | libc::SYS_flistxattr => {
                let host = path(&target.host(pid)).to_owned();
                let names = if target.follows() { xattr::list_deref(&host) } else { xattr::list(&host) };
                let mut out = Vec::new();
                for name in names.map_err(io_errno)?.filter(|n| n.as_bytes() != CAPABILITY_XATTR.as_bytes()) {
                    out.extend_from_slice(name.as_bytes());
                    out.push(0);
                }
                if self.owners.capability(inode).is_some() {
                    out.extend_from_slice(CAPABILITY_XATTR.as_bytes());
                    out.push(0);
                }
                reply(&out, (a(1), a(2)))
            }
            _ if self.creds(pid).caps.effective & CAP_SETFCAP == 0 => Err(Errno::EPERM),
            libc::SYS_setxattr | libc::SYS_lsetxattr | libc::SYS_fsetxattr => {
                let (size, flags) = (a(3) as usize, a(4) as i32);
                if flags & !(libc::XATTR_CREATE | libc::XATTR_REPLACE) != 0 {
                    return Err(Errno::EINVAL);
                }
                let cap = capability_as_set(&xattr_value(pid, a(2), size)?)?;
                let had = self.owners.capability(inode).is_some();
                if flags & libc::XATTR_CREATE != 0 && had {
                    return Err(Errno::EEXIST);
                }
                if flags & libc::XATTR_REPLACE != 0 && !had {
                    return Err(Errno::ENODATA);
                }
                self.owners.set_capability(inode, Some(cap));
                Ok(Entry::Skip(0))
            }
            _ => match self.owners.set_capability(inode, None) {
                true => Ok(Entry::Skip(0)),
                false => Err(Errno::ENODATA),
            },
        }
    }

    /// A `system.posix_acl_access` set (`cp -p`, `sed -i`, `tar` keep a mode so, through libacl):
    /// the mode it gives is recorded as a chmod's would be, since the disk's mode is not what
    /// the step sees. An ACL that is only a mode is not kept, as the kernel keeps none; one with
    /// named users or groups goes to the disk as well.
    fn acl_access(&mut self, pid: Pid, target: Target, addr: u64, size: usize) -> Result<Entry, Errno> {
        let (perms, only_mode) = acl_mode(&xattr_value(pid, addr, size)?)?;
        let md = stat(&target.host(pid), target.follows())?;
        let now = self.owners.view((md.dev(), md.ino()), Owner::of(&md));
        let done = self.chmod(pid, target, (now.mode & 0o7000) | perms)?;
        Ok(if only_mode { Entry::Skip(done) } else { Entry::Run(None) })
    }

    /// A file at `host` is opened for writing or truncated: it loses its capabilities, as the
    /// kernel takes them from a file when it is written (when opened to be, here: the tracer
    /// does not see the writes).
    fn written(&mut self, host: &[u8], follow: bool) {
        if self.owners.has_capabilities()
            && let Ok(md) = stat(host, follow)
            && md.is_file()
        {
            self.owners.set_capability((md.dev(), md.ino()), None);
        }
    }

    /// The inode of `target` when it is a regular file in the root (whose capabilities the
    /// record holds).
    fn recorded_file(&self, pid: Pid, target: &Target) -> Option<(u64, u64)> {
        let host = match target {
            Target::Path(host, _) => host.clone(),
            Target::Fd(_) => std::fs::read_link(path(&target.host(pid))).ok()?.into_os_string().into_vec(),
        };
        let md = stat(&target.host(pid), target.follows()).ok()?;
        (md.is_file() && self.root.holds(&host)).then_some((md.dev(), md.ino()))
    }

    /// Points a `bind`, `connect` or `sendto` to a Unix socket's path (the address and its length
    /// are arguments `addr_i` and `len_i`) at the machine's path for it (see [`Self::unix_name`]).
    fn socket_path(
        &mut self,
        pid: Pid,
        regs: &mut Regs,
        scratch: &mut Scratch,
        (addr_i, len_i): (usize, usize),
        follow: bool,
    ) -> Result<(), Errno> {
        if let Some(out) = self.unix_name(pid, regs.arg(addr_i), regs.arg(len_i) as usize, follow)? {
            regs.set_arg(addr_i, scratch.put(&out)?);
            regs.set_arg(len_i, out.len() as u64);
        }
        Ok(())
    }

    /// Points a `sendmsg`'s destination, when it is a Unix socket's path, at the machine's path
    /// for it: the call gets a copy of its `struct msghdr` naming the new address (the kernel
    /// writes nothing back into it).
    fn sendmsg_name(&mut self, pid: Pid, regs: &mut Regs, scratch: &mut Scratch) -> Result<(), Errno> {
        // struct msghdr (x86-64, 56 bytes): msg_name (a pointer) at 0, msg_namelen (u32) at 8.
        let mut hdr = [0u8; 56];
        mem::read(pid, regs.arg(1), &mut hdr)?;
        let name = u64::from_ne_bytes(hdr[..8].try_into().map_err(|_| Errno::EFAULT)?);
        let len = u32::from_ne_bytes(hdr[8..12].try_into().map_err(|_| Errno::EFAULT)?);
        if let Some(out) = self.unix_name(pid, name, len as usize, true)? {
            hdr[..8].copy_from_slice(&scratch.put(&out)?.to_ne_bytes());
            hdr[8..12].copy_from_slice(&(out.len() as u32).to_ne_bytes());
            regs.set_arg(1, scratch.put(&hdr)?);
        }
        Ok(())
    }

    /// `getsockopt(SO_PEERCRED)`: the peer's ids as the tracer emulates them when the peer is a
    /// process of the step (a server checking who connected: PostgreSQL's peer authentication
    /// of `psql` run through `su postgres`), not the machine's user that every tracee really is.
    /// The tracer reads the kernel's answer on its own copy of the socket (`pidfd_getfd`);
    /// `None` lets the call run as it is (a peer outside the step, no pidfd).
    fn peer_creds(&self, pid: Pid, fd: i32, optval: u64, optlen: u64) -> Option<Result<i64, Errno>> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: plain system calls; a descriptor they return is owned here.
        let own = |r: libc::c_long| (r >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r as i32) });
        let pidfd = own(unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) })?;
        let sock = own(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })?;
        let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` and `len` are valid for the kernel to write.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return None;
        }
        let peer = self.procs.get(&Pid::from_raw(cred.pid))?;
        let ids = [cred.pid as u32, peer.creds.uid[1], peer.creds.gid[1]];
        Some(write_ucred(pid, optval, optlen, ids))
    }

    /// The address to give the kernel instead of the `len` bytes at `addr` when they name a Unix
    /// socket by its path: the machine's path for it, so the step makes its sockets in its root
    /// (where its `ls` and `unlink` look) and finds them there. Other addresses (IP, abstract
    /// sockets, none) are left as they are. A machine path too long for `sun_path` goes through
    /// the tracer's descriptor of the root instead (`/proc/TRACER/fd/N/…`, which the kernel
    /// follows to the same directory).
    fn unix_name(&mut self, pid: Pid, addr: u64, len: usize, follow: bool) -> Result<Option<Vec<u8>>, Errno> {
        // struct sockaddr_un: a 2-byte family, then up to 108 bytes of path.
        const SUN_PATH: usize = 108;
        // Malformed addresses are the kernel's to refuse.
        if addr == 0 || len <= 2 || len > 2 + SUN_PATH {
            return Ok(None);
        }
        let mut sa = vec![0u8; len];
        mem::read(pid, addr, &mut sa)?;
        let (family, guest) = sa.split_at(2);
        if u16::from_ne_bytes([family[0], family[1]]) != libc::AF_UNIX as u16 || guest[0] == 0 {
            return Ok(None);
        }
        let guest = &guest[..guest.iter().position(|b| *b == 0).unwrap_or(guest.len())];
        let mut host = self.machine_path(pid, None, guest, follow)?;
        if host.len() >= SUN_PATH {
            host = self.root.via_fd(&host).filter(|h| h.len() < SUN_PATH).ok_or(Errno::ENAMETOOLONG)?;
        }
        Ok(Some([family, &host, &[0]].concat()))
    }

    /// Rewrites an exec so the kernel runs the root's program (see [`super::exec`]).
    fn exec(
        &mut self,
        pid: Pid,
        regs: &mut Regs,
        scratch: &mut Scratch,
        arg: Arg,
        argv_i: usize,
    ) -> Result<(), Errno> {
        let guest = mem::read_cstr(pid, regs.arg(arg.path))?;
        if guest.is_empty() {
            // fexecve: the descriptor's program, as it is.
            let p = self.proc_mut(pid);
            p.next_exe = None;
            p.next_setid = None;
            return Ok(());
        }
        let dirfd = arg.dirfd.map(|i| regs.arg(i) as i32);
        // The machine's /proc is the step's: its own process, and its program rather than the
        // loader, are what it re-executes through `/proc/self/exe`.
        let abs = paths::own_proc(pid, self.root.absolute(pid, dirfd, &guest)?);
        let abs = match self.program(&abs) {
            Some(program) => self.root.to_guest(&program),
            None => abs,
        };
        let argv = mem::read_ptrs(pid, regs.arg(argv_i), 1 << 20)?;
        let argv0 = match argv.first() {
            Some(p) => mem::read_cstr(pid, *p)?,
            None => Vec::new(),
        };
        if self.checked(pid).is_some() {
            let named = self.root.to_host(&abs, true)?;
            self.permit(pid, &named, true, MAY_EXEC)?;
        }
        let plan = super::exec::plan(&self.root, &mut self.loaders, &abs, &argv0)?;
        let host = scratch.put_cstr(&self.names.exec_path(plan.host, &guest))?;
        let mut ptrs = Vec::with_capacity(plan.head.len() + argv.len());
        for h in &plan.head {
            ptrs.push(scratch.put_cstr(h)?);
        }
        ptrs.extend(argv.iter().skip(1));
        ptrs.push(0);
        let bytes: Vec<u8> = ptrs.iter().flat_map(|p| p.to_ne_bytes()).collect();
        let array = scratch.put(&bytes)?;
        regs.set_arg(arg.path, host);
        regs.set_arg(argv_i, array);
        let setid = plan.setid_file.and_then(|f| self.setid(&f));
        let p = self.proc_mut(pid);
        p.next_exe = plan.program;
        p.next_setid = setid;
        Ok(())
    }

    /// What the set-user-ID and set-group-ID bits of the program at `host` give a process that
    /// runs it, as recorded (the disk has neither the owner nor, for a file a step made, the bits
    /// a non-root user could not set): its owner; its group when the group may execute it (else
    /// the bit means mandatory locking).
    fn setid(&self, host: &[u8]) -> Option<(Option<u32>, Option<u32>)> {
        let md = std::fs::metadata(path(host)).ok()?;
        let o = self.owners.view((md.dev(), md.ino()), Owner::of(&md));
        let uid = (o.mode & libc::S_ISUID != 0).then_some(o.uid);
        let gid = (o.mode & libc::S_ISGID != 0 && o.mode & 0o010 != 0).then_some(o.gid);
        (uid.is_some() || gid.is_some()).then_some((uid, gid))
    }

    /// The identity calls: answered from the process's emulated credentials (a change of uid
    /// changes its capabilities as the kernel's would).
    fn creds_call(&mut self, pid: Pid, regs: &Regs) -> Result<i64, Errno> {
        let old = self.creds(pid).uid;
        let r = self.ids_call(pid, regs);
        let c = self.creds_mut(pid);
        if c.uid != old {
            c.uids_changed(old);
        }
        r
    }

    fn ids_call(&mut self, pid: Pid, regs: &Regs) -> Result<i64, Errno> {
        let a = |i: usize| regs.arg(i) as u32;
        let c = self.creds_mut(pid);
        // CAP_SETUID and CAP_SETGID, as the kernel checks them (root has both; setpriv keeps
        // them across its change of uid to change the gids after).
        let (any_uid, any_gid) = (c.may_set_uids(), c.may_set_gids());
        // A refused change is EPERM, as the kernel says it.
        let ok = |done: bool| if done { Ok(0) } else { Err(Errno::EPERM) };
        Ok(match regs.nr() {
            libc::SYS_getuid => c.uid[0].into(),
            libc::SYS_geteuid => c.uid[1].into(),
            libc::SYS_getgid => c.gid[0].into(),
            libc::SYS_getegid => c.gid[1].into(),
            libc::SYS_getresuid | libc::SYS_getresgid => {
                let ids = if regs.nr() == libc::SYS_getresuid { c.uid } else { c.gid };
                for (i, id) in ids.iter().take(3).enumerate() {
                    mem::write(pid, regs.arg(i), &id.to_ne_bytes())?;
                }
                0
            }
            libc::SYS_getgroups => {
                let groups = c.groups.clone();
                let size = regs.arg(0) as usize;
                if size != 0 {
                    if size < groups.len() {
                        return Err(Errno::EINVAL);
                    }
                    let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
                    mem::write(pid, regs.arg(1), &bytes)?;
                }
                groups.len() as i64
            }
            libc::SYS_setgroups => {
                if !any_gid {
                    return Err(Errno::EPERM);
                }
                let n = (regs.arg(0) as usize).min(65536);
                let mut bytes = vec![0u8; n * 4];
                mem::read(pid, regs.arg(1), &mut bytes)?;
                let mut groups: Vec<u32> =
                    bytes.chunks(4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect();
                // Sorted, as the kernel's `set_groups` keeps them.
                groups.sort_unstable();
                self.creds_mut(pid).groups = groups;
                0
            }
            libc::SYS_setuid => ok(Creds::set_one(&mut c.uid, any_uid, a(0)))?,
            libc::SYS_setgid => ok(Creds::set_one(&mut c.gid, any_gid, a(0)))?,
            libc::SYS_setreuid => ok(Creds::set_re(&mut c.uid, any_uid, a(0), a(1)))?,
            libc::SYS_setregid => ok(Creds::set_re(&mut c.gid, any_gid, a(0), a(1)))?,
            libc::SYS_setresuid => ok(Creds::set_res(&mut c.uid, any_uid, a(0), a(1), a(2)))?,
            libc::SYS_setresgid => ok(Creds::set_res(&mut c.gid, any_gid, a(0), a(1), a(2)))?,
            libc::SYS_setfsuid => Creds::set_fs(&mut c.uid, any_uid, a(0)).into(),
            libc::SYS_setfsgid => Creds::set_fs(&mut c.gid, any_gid, a(0)).into(),
            _ => return Err(Errno::ENOSYS),
        })
    }

    /// `capget` and `capset`, answered from and made to the process's emulated capabilities
    /// (the machine's are the caller's: none, for a non-root user), so programs that raise a
    /// capability before using it (`setcap` raises `CAP_SETFCAP`) run as under root. Another
    /// process's are the kernel's to say unless the tracer knows it.
    fn caps_call(&mut self, pid: Pid, regs: &Regs) -> Result<Entry, Errno> {
        // struct __user_cap_header_struct { u32 version; int pid; }, then one (version 1) or
        // two (versions 2, 3) struct __user_cap_data_struct { u32 effective, permitted,
        // inheritable; }, the low 32 bits first.
        const V1: u32 = 0x1998_0330;
        const V2: u32 = 0x2007_1026;
        const V3: u32 = 0x2008_0522;
        let (hdr, data) = (regs.arg(0), regs.arg(1));
        let mut h = [0u8; 8];
        mem::read(pid, hdr, &mut h)?;
        let version = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
        let target = i32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
        let get = regs.nr() == libc::SYS_capget;
        let words = match version {
            V1 => 1,
            V2 | V3 => 2,
            _ => {
                // The kernel answers with the version it prefers.
                mem::write(pid, hdr, &V3.to_ne_bytes())?;
                return if get && data == 0 { Ok(Entry::Skip(0)) } else { Err(Errno::EINVAL) };
            }
        };
        if target < 0 {
            return Err(Errno::EINVAL);
        }
        let who = if target == 0 { pid } else { Pid::from_raw(target) };
        if !self.procs.contains_key(&who) {
            return Ok(Entry::Run(None));
        }
        if get {
            if data == 0 {
                return Ok(Entry::Skip(0));
            }
            let c = self.creds(who).caps;
            let mut out = Vec::with_capacity(12 * words);
            for w in 0..words {
                for set in [c.effective, c.permitted, c.inheritable] {
                    out.extend_from_slice(&((set >> (32 * w)) as u32).to_ne_bytes());
                }
            }
            mem::write(pid, data, &out)?;
            return Ok(Entry::Skip(0));
        }
        if who != pid {
            return Err(Errno::EPERM);
        }
        let mut raw = vec![0u8; 12 * words];
        mem::read(pid, data, &mut raw)?;
        let word = |w: usize, i: usize| {
            let at = 12 * w + 4 * i;
            u64::from(u32::from_ne_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]])) << (32 * w)
        };
        let sum = |i: usize| (0..words).map(|w| word(w, i)).fold(0, |a, b| a | b);
        let new = Caps { effective: sum(0), permitted: sum(1), inheritable: sum(2) };
        let c = self.creds_mut(pid);
        c.caps = c.caps.set(new).ok_or(Errno::EPERM)?;
        Ok(Entry::Skip(0))
    }

    /// Settles what a call left to check, once it has run.
    pub fn check(&mut self, after: After) {
        match after {
            After::Made { host, owner } => {
                if let Ok(md) = std::fs::symlink_metadata(path(&host))
                    && self.owners.get((md.dev(), md.ino())).is_none()
                {
                    self.owners.set((md.dev(), md.ino()), owner);
                }
            }
            After::Served(file) => drop(file),
            After::Forget { host, inode } => {
                let still =
                    std::fs::symlink_metadata(path(&host)).is_ok_and(|md| (md.dev(), md.ino()) == inode);
                if !still {
                    self.owners.forget(inode);
                }
            }
        }
    }

    /// `stat`, `lstat`, `fstat`, `newfstatat`: made by the tracer, with the recorded owner, mode
    /// and device number, written to the step's buffer at `addr`.
    fn stat(&self, pid: Pid, target: Target, addr: u64) -> Result<i64, Errno> {
        self.reach(pid, &target)?;
        let md = stat(&target.host(pid), target.follows())?;
        let v = self.owners.view((md.dev(), md.ino()), Owner::of(&md));
        // struct stat as x86-64's kernel writes it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_dev = md.dev();
        st.st_ino = md.ino();
        st.st_nlink = md.nlink();
        st.st_mode = v.mode;
        st.st_uid = v.uid;
        st.st_gid = v.gid;
        st.st_rdev = v.rdev;
        st.st_size = md.size() as i64;
        st.st_blksize = md.blksize() as i64;
        st.st_blocks = md.blocks() as i64;
        st.st_atime = md.atime();
        st.st_atime_nsec = md.atime_nsec();
        st.st_mtime = md.mtime();
        st.st_mtime_nsec = md.mtime_nsec();
        st.st_ctime = md.ctime();
        st.st_ctime_nsec = md.ctime_nsec();
        mem::write(pid, addr, mem::bytes_of(&st))?;
        Ok(0)
    }

    /// `statx`: made by the tracer (the kernel's own call on the machine path), with the recorded
    /// owner, mode and device number.
    fn statx(&self, pid: Pid, target: Target, flags: i32, mask: u32, addr: u64) -> Result<i64, Errno> {
        self.reach(pid, &target)?;
        let host = std::ffi::CString::new(target.host(pid)).map_err(|_| Errno::EINVAL)?;
        let mut flags = flags & !(libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW);
        if !target.follows() {
            flags |= libc::AT_SYMLINK_NOFOLLOW;
        }
        let mut b = [0u8; 256];
        // SAFETY: statx writes at most 256 bytes (struct statx) into `b`.
        let r = unsafe {
            libc::syscall(libc::SYS_statx, libc::AT_FDCWD, host.as_ptr(), flags, mask, b.as_mut_ptr())
        };
        if r != 0 {
            return Err(Errno::last());
        }
        let u32_at = |b: &[u8], o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        // struct statx: uid@20 gid@24 mode(u16)@28 ino@32 rdev_major@128 rdev_minor@132
        // dev_major@136 dev_minor@140.
        let dev = nix::sys::stat::makedev(u32_at(&b, 136).into(), u32_at(&b, 140).into());
        let rdev = nix::sys::stat::makedev(u32_at(&b, 128).into(), u32_at(&b, 132).into());
        let mut ino = [0u8; 8];
        ino.copy_from_slice(&b[32..40]);
        let mode = u16::from_ne_bytes([b[28], b[29]]) as u32;
        let disk = Owner { uid: u32_at(&b, 20), gid: u32_at(&b, 24), mode, rdev };
        let v = self.owners.view((dev, u64::from_ne_bytes(ino)), disk);
        b[20..24].copy_from_slice(&v.uid.to_ne_bytes());
        b[24..28].copy_from_slice(&v.gid.to_ne_bytes());
        b[28..30].copy_from_slice(&(v.mode as u16).to_ne_bytes());
        b[128..132].copy_from_slice(&(nix::sys::stat::major(v.rdev) as u32).to_ne_bytes());
        b[132..136].copy_from_slice(&(nix::sys::stat::minor(v.rdev) as u32).to_ne_bytes());
        mem::write(pid, addr, &b)?;
        Ok(0)
    }
}

impl Arg {
    /// The call has no directory argument at `dirfd` (inotify's first argument is its own fd).
    fn no_dirfd(self) -> Arg {
        Arg { dirfd: None, ..self }
    }

    /// An empty path names the directory argument when `flags` hold `AT_EMPTY_PATH`.
    fn empty_path(self, flags: u64) -> Arg {
        Arg { empty: flags as i32 & libc::AT_EMPTY_PATH != 0, ..self }
    }
}

/// What chmod and chown act on.
enum Target {
    /// A machine path; whether its last component is followed.
    Path(Vec<u8>, bool),
    /// A descriptor of the calling process.
    Fd(i32),
}

impl Target {
    fn host(&self, pid: Pid) -> Vec<u8> {
        match self {
            Target::Path(p, _) => p.clone(),
            Target::Fd(libc::AT_FDCWD) => format!("/proc/{pid}/cwd").into_bytes(),
            Target::Fd(fd) => format!("/proc/{pid}/fd/{fd}").into_bytes(),
        }
    }

    fn follows(&self) -> bool {
        match self {
            Target::Path(_, f) => *f,
            Target::Fd(_) => true,
        }
    }
}

fn stat(host: &[u8], follow: bool) -> Result<std::fs::Metadata, Errno> {
    let p = path(host);
    if follow { std::fs::metadata(p) } else { std::fs::symlink_metadata(p) }.map_err(io_errno)
}

/// The `size` bytes of an attribute value a `*setxattr` call passes at `addr`, as the kernel
/// takes them (at most `XATTR_SIZE_MAX`, which the libc crate does not export).
fn xattr_value(pid: Pid, addr: u64, size: usize) -> Result<Vec<u8>, Errno> {
    if size > 65536 {
        return Err(Errno::E2BIG);
    }
    let mut value = vec![0u8; size];
    mem::read(pid, addr, &mut value)?;
    Ok(value)
}

/// Writes a `struct ucred` (`ids`: pid, uid, gid) as `getsockopt` does: as much as the caller's
/// length allows, and the length written.
fn write_ucred(pid: Pid, optval: u64, optlen: u64, ids: [u32; 3]) -> Result<i64, Errno> {
    let mut len = [0u8; 4];
    mem::read(pid, optlen, &mut len)?;
    let want = usize::try_from(i32::from_ne_bytes(len)).map_err(|_| Errno::EINVAL)?;
    let cred: Vec<u8> = ids.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let n = cred.len().min(want);
    mem::write(pid, optval, &cred[..n])?;
    mem::write(pid, optlen, &(n as u32).to_ne_bytes())?;
    Ok(0)
}

/// `uname`: the machine's, named as BuildKit names a step's host (`gethostname`, `hostname`),
/// as a UTS namespace would.
fn uname(pid: Pid, addr: u64) -> Result<i64, Errno> {
    // SAFETY: a plain C struct the call fills.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid utsname to write.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(Errno::last());
    }
    u.nodename = [0; 65];
    for (d, s) in u.nodename.iter_mut().zip(crate::sandbox::HOSTNAME.bytes()) {
        *d = s as libc::c_char;
    }
    mem::write(pid, addr, mem::bytes_of(&u))?;
    Ok(0)
}

/// How a `utimensat` whose `times` argument is at `addr` changes times (`None`: it leaves both
/// as they are, which anyone may).
fn utimens_touch(pid: Pid, addr: u64) -> Result<Option<Touch>, Errno> {
    if addr == 0 {
        return Ok(Some(Touch::Now));
    }
    // Two struct timespec { i64 tv_sec; i64 tv_nsec; }.
    let mut b = [0u8; 32];
    mem::read(pid, addr, &mut b)?;
    let nsec = |at: usize| i64::from_ne_bytes(b[at..at + 8].try_into().unwrap_or_default());
    Ok(match (nsec(8), nsec(24)) {
        (libc::UTIME_OMIT, libc::UTIME_OMIT) => None,
        (libc::UTIME_NOW | libc::UTIME_OMIT, libc::UTIME_NOW | libc::UTIME_OMIT) => Some(Touch::Now),
        _ => Some(Touch::Given),
    })
}

/// The process's umask, from `/proc/PID/status`.
fn umask(pid: Pid) -> u32 {
    std::fs::read(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let s = String::from_utf8_lossy(&s).into_owned();
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:").and_then(|v| u32::from_str_radix(v.trim(), 8).ok()))
        })
        .unwrap_or(0o022)
}

/// `text` as a file of the tracer's that a traced process opens instead of a `/proc` file of
/// its own (`/proc/PID/status` with the ids it emulates, `/proc/PID/cmdline` without the
/// loader): a memfd, and the name to open it by.
fn serve(what: &std::ffi::CStr, text: &[u8]) -> Result<(std::os::fd::OwnedFd, Vec<u8>), Errno> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let fd = nix::sys::memfd::memfd_create(what, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(text).map_err(io_errno)?;
    let name = format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd());
    Ok((file.into(), name.into_bytes()))
}
