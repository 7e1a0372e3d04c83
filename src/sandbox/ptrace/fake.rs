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

    /// `setresuid`/`setresgid` on `ids` (`u32::MAX` leaves one as it is); the filesystem id
    /// follows the effective one. Never refused: the step is root as far as it can tell.
    pub fn set_res(ids: &mut [u32; 4], r: u32, e: u32, s: u32) {
        for (i, v) in [r, e, s].into_iter().enumerate() {
            if v != u32::MAX {
                ids[i] = v;
            }
        }
        ids[3] = ids[1];
    }

    /// `setuid`/`setgid`: as root every id changes; otherwise only the effective one.
    pub fn set_one(ids: &mut [u32; 4], v: u32, privileged: bool) {
        if privileged {
            *ids = [v; 4];
        } else {
            ids[1] = v;
            ids[3] = v;
        }
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
        Creds::set_res(&mut c.uid, u32::MAX, 1000, u32::MAX);
        assert_eq!(c.uid, [0, 1000, 0, 1000]);
        Creds::set_one(&mut c.gid, 50, true);
        assert_eq!(c.gid, [50; 4]);
    }
}
