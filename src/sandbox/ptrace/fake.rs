//! What the step is made to believe: that it runs as root (or its USER) and that `chown`,
//! `chmod` and `mknod` did what they would do for root. The disk cannot hold it (the files all
//! belong to the unprivileged caller), so the truth is kept here, by inode, and the layer is
//! written from it (what fakeroot and Charliecloud's seccomp mode do).

use std::collections::HashMap;

use crate::layer::walkdiff::Owner;

/// The owners, modes and device numbers of the root's entries, by (device, inode).
#[derive(Debug, Default)]
pub struct Owners {
    map: HashMap<(u64, u64), Owner>,
    /// The caller's real uid and gid: what the disk says for everything the step made.
    pub real: (u32, u32),
    /// The step's user and group: who made an entry the table does not know.
    pub default: (u32, u32),
}

impl Owners {
    /// An empty table.
    pub fn new(real: (u32, u32), default: (u32, u32)) -> Owners {
        Owners { map: HashMap::new(), real, default }
    }

    /// Records `owner` for the inode.
    pub fn set(&mut self, inode: (u64, u64), owner: Owner) {
        self.map.insert(inode, owner);
    }

    /// The recorded entry of an inode.
    pub fn get(&self, inode: (u64, u64)) -> Option<&Owner> {
        self.map.get(&inode)
    }

    /// Forgets an inode (its last link is gone: the number may be reused).
    pub fn forget(&mut self, inode: (u64, u64)) {
        self.map.remove(&inode);
    }

    /// What the step should see for an entry the disk describes as `disk`: the recorded truth,
    /// else the disk with the caller's ids shown as the step's user (the step made it).
    pub fn view(&self, inode: (u64, u64), disk: Owner) -> Owner {
        if let Some(o) = self.map.get(&inode) {
            return *o;
        }
        Owner {
            uid: if disk.uid == self.real.0 { self.default.0 } else { disk.uid },
            gid: if disk.gid == self.real.1 { self.default.1 } else { disk.gid },
            ..disk
        }
    }
}

/// A process's emulated credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    /// Real, effective, saved and filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gid: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl Creds {
    /// A process running as `uid`:`gid` with `groups`.
    pub fn new(uid: u32, gid: u32, groups: Vec<u32>) -> Creds {
        Creds { uid: [uid; 4], gid: [gid; 4], groups }
    }

    /// Whether the process may change ids freely: its effective uid is 0 (it has CAP_SETUID and
    /// CAP_SETGID as far as it can tell).
    pub fn privileged(&self) -> bool {
        self.uid[1] == 0
    }

    /// `setresuid`/`setresgid` on `ids` (`u32::MAX` leaves one as it is), with the kernel's rule:
    /// unprivileged, each new id must be one of the current real, effective or saved ones (apt
    /// checks that a dropped uid cannot be regained). The filesystem id follows the effective one.
    pub fn set_res(ids: &mut [u32; 4], privileged: bool, r: u32, e: u32, s: u32) -> bool {
        let allowed = |v: u32| v == u32::MAX || privileged || ids[..3].contains(&v);
        if !(allowed(r) && allowed(e) && allowed(s)) {
            return false;
        }
        for (i, v) in [r, e, s].into_iter().enumerate() {
            if v != u32::MAX {
                ids[i] = v;
            }
        }
        ids[3] = ids[1];
        true
    }

    /// `setreuid`/`setregid`: unprivileged, the real id may become the real or effective one and
    /// the effective any of the three; the saved id follows the effective one when the real one is
    /// set or the effective one changes to other than the real one.
    pub fn set_re(ids: &mut [u32; 4], privileged: bool, r: u32, e: u32) -> bool {
        let old = *ids;
        let ok_r = r == u32::MAX || privileged || r == old[0] || r == old[1];
        let ok_e = e == u32::MAX || privileged || old[..3].contains(&e);
        if !(ok_r && ok_e) {
            return false;
        }
        if r != u32::MAX {
            ids[0] = r;
        }
        if e != u32::MAX {
            ids[1] = e;
        }
        if r != u32::MAX || (e != u32::MAX && e != old[0]) {
            ids[2] = ids[1];
        }
        ids[3] = ids[1];
        true
    }

    /// `setuid`/`setgid`: privileged, every id changes; otherwise the effective (and filesystem)
    /// id, to the real or saved one only.
    pub fn set_one(ids: &mut [u32; 4], privileged: bool, v: u32) -> bool {
        if privileged {
            *ids = [v; 4];
            true
        } else if v == ids[0] || v == ids[2] {
            ids[1] = v;
            ids[3] = v;
            true
        } else {
            false
        }
    }

    /// `setfsuid`/`setfsgid`: privileged any id, else one of the other three; returns the old one
    /// (as the call does, whether or not it changed).
    pub fn set_fs(ids: &mut [u32; 4], privileged: bool, v: u32) -> u32 {
        let old = ids[3];
        if v != u32::MAX && (privileged || ids.contains(&v)) {
            ids[3] = v;
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_entries_belong_to_the_step_user() {
        let mut o = Owners::new((1000, 1000), (0, 0));
        let disk = Owner { uid: 1000, gid: 1000, mode: 0o100644, rdev: 0 };
        assert_eq!(o.view((1, 2), disk).uid, 0);
        let other = Owner { uid: 0, gid: 5, ..disk };
        assert_eq!(o.view((1, 3), other), other, "the machine's files keep their owners");
        o.set((1, 2), Owner { uid: 42, gid: 7, mode: 0o20620, rdev: 0x503 });
        assert_eq!(o.view((1, 2), disk).uid, 42);
        o.forget((1, 2));
        assert_eq!(o.view((1, 2), disk).uid, 0);
        let mut c = Creds::new(0, 0, vec![]);
        assert!(Creds::set_res(&mut c.uid, true, u32::MAX, 1000, u32::MAX));
        assert_eq!(c.uid, [0, 1000, 0, 1000]);
        assert!(Creds::set_one(&mut c.gid, true, 50));
        assert_eq!(c.gid, [50; 4]);
    }

    #[test]
    fn a_dropped_uid_cannot_be_regained() {
        // apt's privilege drop: setresuid(_apt, _apt, _apt), then it checks setuid(0) fails.
        let mut c = Creds::new(0, 0, vec![]);
        let root = c.privileged();
        assert!(Creds::set_res(&mut c.uid, root, 42, 42, 42));
        assert!(!c.privileged());
        let root = c.privileged();
        assert!(!Creds::set_one(&mut c.uid, root, 0), "setuid(0) is refused");
        let root = c.privileged();
        assert!(!Creds::set_res(&mut c.uid, root, u32::MAX, 0, u32::MAX));
        assert_eq!(c.uid, [42; 4]);
        // seteuid to an unprivileged id and back, with root kept as the saved id: allowed.
        let mut d = Creds::new(0, 0, vec![]);
        assert!(Creds::set_re(&mut d.uid, true, u32::MAX, 1000));
        assert_eq!(d.uid, [0, 1000, 1000, 1000], "the saved id follows a new effective id");
        let mut e = Creds::new(0, 0, vec![]);
        assert!(Creds::set_res(&mut e.uid, true, u32::MAX, 1000, u32::MAX));
        let root = e.privileged();
        assert!(Creds::set_res(&mut e.uid, root, u32::MAX, 0, u32::MAX), "back to the saved 0");
        assert_eq!(Creds::set_fs(&mut e.uid, true, 7), 0);
        assert_eq!(e.uid[3], 7);
    }
}
