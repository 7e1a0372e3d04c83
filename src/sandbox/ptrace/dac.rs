//! Permission checks for a step that does not run as root (`USER app`): the machine's user owns
//! every file of the root, so the kernel lets the step's processes do what the image's owners and
//! modes would refuse them (write to root's `/usr`, read `/root`, `chown` a file away). The
//! tracer checks what the kernel would check against the recorded owners and modes, with the
//! step's emulated ids and capabilities, and refuses as the kernel would (`EACCES`, `EPERM`).
//! A process with root's capabilities skips every check, as the kernel's do; so a root step pays
//! nothing for them.
//!
//! The rules are the kernel's, hand-written here because no crate models them:
//! `generic_permission` (owner, group, other bits, then `CAP_DAC_OVERRIDE` and
//! `CAP_DAC_READ_SEARCH`), `may_delete`'s sticky directories, `inode_owner_or_capable`,
//! `chown_ok`/`chgrp_ok` and `setattr_prepare`'s setgid rule. POSIX ACLs beyond the mode are not
//! modelled (a tracer-recorded ACL is only ever a mode, see [`super::fake::acl_mode`]).

use std::os::unix::fs::MetadataExt;

use nix::errno::Errno;
use nix::libc;
use nix::unistd::Pid;

use super::Tracer;
use super::fake::Creds;
use super::io_errno;
use super::paths::path;
use crate::layer::walkdiff::Owner;

/// Execute, or search a directory (the kernel's `MAY_EXEC`; `access`'s `X_OK`).
pub const MAY_EXEC: u32 = 1;
/// Write (`MAY_WRITE`, `W_OK`).
pub const MAY_WRITE: u32 = 2;
/// Read (`MAY_READ`, `R_OK`).
pub const MAY_READ: u32 = 4;

const CAP_CHOWN: u64 = 1 << 0;
const CAP_DAC_OVERRIDE: u64 = 1 << 1;
const CAP_DAC_READ_SEARCH: u64 = 1 << 2;
const CAP_FOWNER: u64 = 1 << 3;
const CAP_FSETID: u64 = 1 << 4;
const CAP_MKNOD: u64 = 1 << 27;

/// Who a check is made for: the ids and capabilities the kernel would use.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    uid: u32,
    gid: u32,
    groups: &'a [u32],
    caps: u64,
}

impl<'a> Subject<'a> {
    /// The process as file operations see it: its filesystem ids and effective capabilities.
    pub fn of(c: &'a Creds) -> Subject<'a> {
        Subject { uid: c.uid[3], gid: c.gid[3], groups: &c.groups, caps: c.caps.effective }
    }

    /// The process as `access` and `faccessat` see it: its real ids, with root's permitted
    /// capabilities if the real uid is root and none otherwise (`access_override_creds`).
    /// `faccessat2` with `AT_EACCESS` uses [`Subject::of`].
    pub fn real(c: &'a Creds) -> Subject<'a> {
        let caps = if c.uid[0] == 0 { c.caps.permitted } else { 0 };
        Subject { uid: c.uid[0], gid: c.gid[0], groups: &c.groups, caps }
    }

    /// Whether no check can refuse it anything the tracer checks (root's capabilities).
    pub fn exempt(&self) -> bool {
        let all = CAP_DAC_OVERRIDE | CAP_FOWNER | CAP_CHOWN | CAP_FSETID;
        self.caps & all == all
    }

    fn has(&self, cap: u64) -> bool {
        self.caps & cap != 0
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Whether it may do `want` (a mix of [`MAY_READ`], [`MAY_WRITE`], [`MAY_EXEC`]) to an
    /// entry with owner, group and mode `o` (`generic_permission`).
    pub fn may(&self, o: &Owner, want: u32) -> bool {
        let bits = if self.uid == o.uid {
            o.mode >> 6
        } else if self.in_group(o.gid) {
            o.mode >> 3
        } else {
            o.mode
        };
        if want & !bits & 0o7 == 0 {
            return true;
        }
        if o.mode & libc::S_IFMT == libc::S_IFDIR {
            return (want & MAY_WRITE == 0 && self.has(CAP_DAC_READ_SEARCH)) || self.has(CAP_DAC_OVERRIDE);
        }
        if want == MAY_READ && self.has(CAP_DAC_READ_SEARCH) {
            return true;
        }
        // Even root executes only what some execute bit allows.
        (want & MAY_EXEC == 0 || o.mode & 0o111 != 0) && self.has(CAP_DAC_OVERRIDE)
    }

    /// Whether it may make a hard link to `o` where `fs.protected_hardlinks` is on
    /// (`may_linkat`): as its owner (or with `CAP_FOWNER`), or to a regular file that is not
    /// set-user-ID or set-group-ID executable and that it may read and write.
    pub fn may_hardlink(&self, o: &Owner) -> bool {
        let safe = o.mode & libc::S_IFMT == libc::S_IFREG
            && o.mode & libc::S_ISUID == 0
            && o.mode & (libc::S_ISGID | libc::S_IXGRP) != (libc::S_ISGID | libc::S_IXGRP)
            && self.may(o, MAY_READ | MAY_WRITE);
        safe || self.owns(o)
    }

    /// Whether it owns `o` or may act as its owner (`CAP_FOWNER`): chmod, setting times.
    pub fn owns(&self, o: &Owner) -> bool {
        self.uid == o.uid || self.has(CAP_FOWNER)
    }

    /// Whether it may remove or rename `victim` from directory `dir`, search and write in `dir`
    /// allowed (`may_delete`): in a sticky directory (`/tmp`) only the entry's or the
    /// directory's owner may; else `EPERM`.
    pub fn may_unlink_from(&self, dir: &Owner, victim: &Owner) -> Result<(), Errno> {
        if !self.may(dir, MAY_WRITE | MAY_EXEC) {
            return Err(Errno::EACCES);
        }
        let sticky = dir.mode & libc::S_ISVTX != 0;
        if sticky && self.uid != victim.uid && self.uid != dir.uid && !self.has(CAP_FOWNER) {
            return Err(Errno::EPERM);
        }
        Ok(())
    }

    /// Whether it may give `o` owner `uid` and group `gid` (`u32::MAX`: unchanged), as
    /// `chown_ok` and `chgrp_ok` say: the owner may only change the group, to one of its own.
    pub fn may_chown(&self, o: &Owner, uid: u32, gid: u32) -> bool {
        if self.has(CAP_CHOWN) {
            return true;
        }
        let uid_ok = uid == u32::MAX || (self.uid == o.uid && uid == o.uid);
        let gid_ok = gid == u32::MAX || (self.uid == o.uid && (gid == o.gid || self.in_group(gid)));
        uid_ok && gid_ok
    }

    /// The mode a permitted `chmod` of `o` to `mode` sets: the setgid bit of a file whose group
    /// is not the caller's is dropped without `CAP_FSETID` (`setattr_prepare`).
    pub fn chmod_mode(&self, o: &Owner, mode: u32) -> u32 {
        if !self.in_group(o.gid) && !self.has(CAP_FSETID) { mode & !libc::S_ISGID } else { mode }
    }
}

/// How a call may change an entry's times (`utimensat` and the older calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// To the current time: its owner, or whoever may write to it.
    Now,
    /// To given times: its owner only.
    Given,
}

impl Tracer {
    /// Who `pid`'s file operations are checked for, unless it has root's capabilities (a root
    /// step: then nothing is checked).
    pub(super) fn checked(&self, pid: Pid) -> Option<Subject<'_>> {
        Some(Subject::of(self.creds(pid))).filter(|s| !s.exempt())
    }

    /// The owner, group and mode the step sees for the entry at machine path `host`.
    fn seen(&self, host: &[u8], follow: bool) -> Result<Owner, Errno> {
        let p = path(host);
        let md =
            if follow { std::fs::metadata(p) } else { std::fs::symlink_metadata(p) }.map_err(io_errno)?;
        Ok(self.owners.view((md.dev(), md.ino()), Owner::of(&md)))
    }

    /// Search permission on every directory of the root on the way to `host` (nothing to check
    /// outside the root: the machine's `/proc`, `/dev`, `/sys` are the kernel's to check).
    fn search(&self, s: &Subject, host: &[u8]) -> Result<(), Errno> {
        for dir in self.root.dirs_to(host).into_iter().flatten() {
            // Most directories let everyone search them: no need to work out whose bits apply.
            if let Ok(o) = self.seen(dir, true)
                && o.mode & 0o111 != 0o111
                && !s.may(&o, MAY_EXEC)
            {
                return Err(Errno::EACCES);
            }
        }
        Ok(())
    }

    /// That `s` may do `want` to the entry at `host` (followed if `follow`) and reach it.
    /// A missing entry is the kernel's to report.
    pub(super) fn allow(&self, s: &Subject, host: &[u8], follow: bool, want: u32) -> Result<(), Errno> {
        if !self.root.holds(host) {
            return Ok(());
        }
        self.search(s, host)?;
        match self.seen(host, follow) {
            Ok(o) if want != 0 && !s.may(&o, want) => Err(Errno::EACCES),
            _ => Ok(()),
        }
    }

    /// [`Tracer::allow`] for `pid`, unless it has root's capabilities.
    pub(super) fn permit(&self, pid: Pid, host: &[u8], follow: bool, want: u32) -> Result<(), Errno> {
        match self.checked(pid) {
            Some(s) => self.allow(&s, host, follow, want),
            None => Ok(()),
        }
    }

    /// `access`, `faccessat` and `faccessat2` asking for `mode` (`R_OK`, `W_OK`, `X_OK`; `F_OK`
    /// is 0): as the process's real ids may, or its effective ones with `AT_EACCESS`. What the
    /// checks allow still goes to the kernel, which says whether the entry is there.
    pub(super) fn may_access(
        &self,
        pid: Pid,
        host: &[u8],
        follow: bool,
        mode: u32,
        eaccess: bool,
    ) -> Result<(), Errno> {
        let c = self.creds(pid);
        let s = if eaccess { Subject::of(c) } else { Subject::real(c) };
        if s.exempt() { Ok(()) } else { self.allow(&s, host, follow, mode & 0o7) }
    }

    /// An `open` of `host` with `flags`: read or write permission as the access mode and
    /// `O_TRUNC` ask, or, for a file `O_CREAT` makes, write permission in its directory.
    pub(super) fn may_open(&self, pid: Pid, host: &[u8], flags: i32, follow: bool) -> Result<(), Errno> {
        let Some(s) = self.checked(pid) else { return Ok(()) };
        if !self.root.holds(host) {
            return Ok(());
        }
        self.search(&s, host)?;
        if flags & libc::O_PATH != 0 {
            return Ok(());
        }
        match self.seen(host, follow) {
            // O_EXCL on an existing entry is the kernel's EEXIST.
            Ok(_) if flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL => Ok(()),
            // A directory opened to write, or with O_CREAT, is the kernel's EISDIR, before any
            // permission check.
            Ok(o)
                if o.mode & libc::S_IFMT == libc::S_IFDIR
                    && (flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_CREAT != 0) =>
            {
                Ok(())
            }
            Ok(o) => {
                let acc = flags & libc::O_ACCMODE;
                let mut want = 0;
                if acc != libc::O_WRONLY {
                    want |= MAY_READ;
                }
                if acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
                    want |= MAY_WRITE;
                }
                if s.may(&o, want) { Ok(()) } else { Err(Errno::EACCES) }
            }
            Err(_) if flags & libc::O_CREAT != 0 => self.dir_writable(&s, host),
            Err(_) => Ok(()),
        }
    }

    /// Write and search permission in the directory holding `host`'s last component (the
    /// search on the way to it checked already).
    fn dir_writable(&self, s: &Subject, host: &[u8]) -> Result<(), Errno> {
        let Some(dir) = self.root.dirs_to(host).and_then(Iterator::last) else { return Ok(()) };
        match self.seen(dir, true) {
            Ok(o) if !s.may(&o, MAY_WRITE | MAY_EXEC) => Err(Errno::EACCES),
            _ => Ok(()),
        }
    }

    /// Making an entry at `host` (`mkdir`, `mknod`, `symlink`, `link`'s new name): write and
    /// search permission in its directory. An entry already there is the kernel's `EEXIST`,
    /// which it gives before checking write permission: `mkdir -p /app/x` as a user who may not
    /// write to `/` must find `/app` there, not be refused it.
    pub(super) fn may_create(&self, pid: Pid, host: &[u8]) -> Result<(), Errno> {
        let Some(s) = self.checked(pid) else { return Ok(()) };
        self.search(&s, host)?;
        if self.seen(host, false).is_ok() {
            return Ok(());
        }
        self.dir_writable(&s, host)
    }

    /// Making a device node (`mknod` of a character or block device), once [`Tracer::may_create`]
    /// allowed the entry: `CAP_MKNOD`, as `vfs_mknod` asks, or `EPERM`.
    pub(super) fn may_make_device(&self, pid: Pid) -> Result<(), Errno> {
        if self.creds(pid).caps.effective & CAP_MKNOD != 0 { Ok(()) } else { Err(Errno::EPERM) }
    }

    /// A hard link `new` to `old` (`link`, `linkat`), in the kernel's order: search on both
    /// ways, `EEXIST` for a `new` already there, `fs.protected_hardlinks`'s rule for `old`
    /// (`EPERM`), then write permission in `new`'s directory.
    pub(super) fn may_link(&self, pid: Pid, old: &[u8], new: &[u8]) -> Result<(), Errno> {
        let Some(s) = self.checked(pid) else { return Ok(()) };
        if self.root.holds(old) {
            self.search(&s, old)?;
        }
        self.search(&s, new)?;
        if self.seen(new, false).is_ok() {
            return Ok(());
        }
        if protected_hardlinks()
            && self.root.holds(old)
            && let Ok(o) = self.seen(old, false)
            && !s.may_hardlink(&o)
        {
            return Err(Errno::EPERM);
        }
        self.dir_writable(&s, new)
    }

    /// Removing the entry at `host` (`unlink`, `rmdir`, a rename's old name or the entry it
    /// replaces): write and search permission in its directory, and the sticky bit's rule.
    pub(super) fn may_remove(&self, pid: Pid, host: &[u8]) -> Result<(), Errno> {
        let Some(s) = self.checked(pid) else { return Ok(()) };
        let Some(dir) = self.root.dirs_to(host).and_then(Iterator::last) else { return Ok(()) };
        self.search(&s, host)?;
        match (self.seen(dir, true), self.seen(host, false)) {
            (Ok(d), Ok(victim)) => s.may_unlink_from(&d, &victim),
            // Not there: the kernel's ENOENT.
            _ => Ok(()),
        }
    }

    /// A rename of `from` to `to` (`exchange`: each to the other's place): removing the one,
    /// making or replacing the other, and for a directory that changes parents, write
    /// permission on it (its `..` changes).
    pub(super) fn may_rename(&self, pid: Pid, from: &[u8], to: &[u8], exchange: bool) -> Result<(), Errno> {
        let Some(s) = self.checked(pid) else { return Ok(()) };
        if !self.root.holds(from) || !self.root.holds(to) {
            return Ok(());
        }
        self.may_remove(pid, from)?;
        if self.seen(to, false).is_ok() { self.may_remove(pid, to) } else { self.may_create(pid, to) }?;
        let parent = |h| self.root.dirs_to(h).and_then(Iterator::last);
        if parent(from) == parent(to) {
            return Ok(());
        }
        let moved = if exchange { &[from, to][..] } else { &[from][..] };
        for h in moved {
            if let Ok(o) = self.seen(h, false)
                && o.mode & libc::S_IFMT == libc::S_IFDIR
                && !s.may(&o, MAY_WRITE)
            {
                return Err(Errno::EACCES);
            }
        }
        Ok(())
    }

    /// Setting the times of the entry at `host` (a path in the root, or a process's
    /// `/proc/PID/fd/N`) as `how` says: `EPERM` or `EACCES` if refused.
    pub(super) fn may_touch(&self, pid: Pid, host: &[u8], follow: bool, how: Touch) -> Result<(), Errno> {
        let Some(s) = self.checked(pid) else { return Ok(()) };
        self.search(&s, host)?;
        let Ok(o) = self.seen(host, follow) else { return Ok(()) };
        match how {
            _ if s.owns(&o) => Ok(()),
            Touch::Now if s.may(&o, MAY_WRITE) => Ok(()),
            Touch::Now => Err(Errno::EACCES),
            Touch::Given => Err(Errno::EPERM),
        }
    }
}

/// Whether the machine's `fs.protected_hardlinks` is on (as on every common distribution): a
/// container shares the kernel's setting, so a step under ptrace gets the machine's.
fn protected_hardlinks() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/fs/protected_hardlinks").map_or(true, |v| v.trim() != "0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::ptrace::fake::Creds;

    fn entry(kind: u32, mode: u32, uid: u32, gid: u32) -> Owner {
        Owner { uid, gid, mode: kind | mode, rdev: 0 }
    }
    fn file(mode: u32, uid: u32, gid: u32) -> Owner {
        entry(libc::S_IFREG, mode, uid, gid)
    }
    fn dir(mode: u32, uid: u32, gid: u32) -> Owner {
        entry(libc::S_IFDIR, mode, uid, gid)
    }

    #[test]
    fn a_user_gets_the_owner_group_or_other_bits_only() {
        let app = Creds::new(1000, 1000, vec![27]);
        let s = Subject::of(&app);
        assert!(!s.exempt());
        // Root's files: readable, not writable.
        assert!(s.may(&file(0o644, 0, 0), MAY_READ));
        assert!(!s.may(&file(0o644, 0, 0), MAY_WRITE));
        assert!(!s.may(&dir(0o755, 0, 0), MAY_WRITE | MAY_EXEC));
        assert!(!s.may(&dir(0o700, 0, 0), MAY_EXEC), "/root");
        // Only the first class that matches counts: an owner denied what others may do.
        assert!(!s.may(&file(0o077, 1000, 1000), MAY_READ));
        // A supplementary group's bits.
        assert!(s.may(&file(0o660, 0, 27), MAY_READ | MAY_WRITE));
        assert!(!s.may(&file(0o640, 0, 27), MAY_WRITE));
        assert!(s.may(&dir(0o1777, 0, 0), MAY_WRITE | MAY_EXEC));
    }

    #[test]
    fn root_is_exempt_but_executes_only_what_has_an_execute_bit() {
        let root = Creds::new(0, 0, vec![]);
        let s = Subject::of(&root);
        assert!(s.exempt());
        assert!(s.may(&file(0o000, 1000, 1000), MAY_READ | MAY_WRITE));
        assert!(s.may(&dir(0o000, 1000, 1000), MAY_READ | MAY_WRITE | MAY_EXEC));
        assert!(!s.may(&file(0o644, 0, 0), MAY_EXEC));
        assert!(s.may(&file(0o100, 1000, 0), MAY_EXEC));
    }

    #[test]
    fn access_checks_the_real_ids() {
        // Set-user-ID root program run by a user: file operations are root's, `access` the user's.
        let mut c = Creds::new(1000, 1000, vec![]);
        c.exec(Some((Some(0), None)));
        assert!(Subject::of(&c).exempt());
        let real = Subject::real(&c);
        assert!(!real.exempt());
        assert!(!real.may(&file(0o600, 0, 0), MAY_READ));
        // Root calling access keeps its permitted capabilities, even with another effective uid.
        let mut c = Creds::new(0, 0, vec![]);
        Creds::set_res(&mut c.uid, true, u32::MAX, 1000, u32::MAX);
        c.uids_changed([0; 4]);
        assert!(!Subject::of(&c).exempt());
        assert!(Subject::real(&c).exempt());
    }

    #[test]
    fn sticky_directories_keep_others_entries() {
        let s_creds = Creds::new(1000, 1000, vec![]);
        let s = Subject::of(&s_creds);
        let tmp = dir(0o1777, 0, 0);
        assert_eq!(s.may_unlink_from(&tmp, &file(0o666, 1001, 1001)), Err(Errno::EPERM));
        assert_eq!(s.may_unlink_from(&tmp, &file(0o600, 1000, 1000)), Ok(()));
        assert_eq!(s.may_unlink_from(&dir(0o1777, 1000, 0), &file(0o600, 1001, 0)), Ok(()));
        assert_eq!(s.may_unlink_from(&dir(0o755, 0, 0), &file(0o666, 1000, 0)), Err(Errno::EACCES));
        let root = Creds::new(0, 0, vec![]);
        assert_eq!(Subject::of(&root).may_unlink_from(&tmp, &file(0o600, 1000, 0)), Ok(()));
    }

    #[test]
    fn an_owner_may_only_change_the_group_to_its_own() {
        let c = Creds::new(1000, 1000, vec![50]);
        let s = Subject::of(&c);
        let mine = file(0o644, 1000, 1000);
        assert!(s.may_chown(&mine, u32::MAX, 50));
        assert!(s.may_chown(&mine, 1000, 1000));
        assert!(!s.may_chown(&mine, 0, u32::MAX));
        assert!(!s.may_chown(&mine, u32::MAX, 0));
        assert!(!s.may_chown(&file(0o644, 0, 0), u32::MAX, 1000));
        assert!(Subject::of(&Creds::new(0, 0, vec![])).may_chown(&mine, 0, 0));
        assert!(s.owns(&mine) && !s.owns(&file(0o644, 0, 0)));
        assert_eq!(s.chmod_mode(&file(0o644, 1000, 0), 0o2755), 0o755);
        assert_eq!(s.chmod_mode(&file(0o644, 1000, 50), 0o2755), 0o2755);
    }
}
