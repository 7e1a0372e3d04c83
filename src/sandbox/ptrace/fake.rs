//! What the step is made to believe: that it runs as root (or its USER) and that `chown`,
//! `chmod`, `mknod` and `setcap` did what they would do for root. The disk cannot hold it (the
//! files all belong to the unprivileged caller, who may not set file capabilities), so the truth
//! is kept here, by inode, and the layer is written from it (what fakeroot and Charliecloud's
//! seccomp mode do).

use std::collections::HashMap;

use crate::layer::walkdiff::Owner;

/// The owners, modes, device numbers and file capabilities of the root's entries, by (device,
/// inode).
#[derive(Debug, Default)]
pub struct Owners {
    map: HashMap<(u64, u64), Owner>,
    /// Regular files' `security.capability`, as the kernel would return it to root: the only
    /// record of them (the disk's are not consulted, so a step's `removexattr` holds as root).
    caps: HashMap<(u64, u64), Box<[u8]>>,
    /// The caller's real uid and gid: what the disk says for everything the step made.
    pub real: (u32, u32),
    /// The step's user and group: who made an entry the table does not know.
    pub default: (u32, u32),
}

impl Owners {
    /// An empty table.
    pub fn new(real: (u32, u32), default: (u32, u32)) -> Owners {
        Owners { map: HashMap::new(), caps: HashMap::new(), real, default }
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
        self.caps.remove(&inode);
    }

    /// The capabilities of a regular file, if it has any.
    pub fn capability(&self, inode: (u64, u64)) -> Option<&[u8]> {
        self.caps.get(&inode).map(|c| &**c)
    }

    /// Whether any file has capabilities (most trees have none: nothing to look up).
    pub fn has_capabilities(&self) -> bool {
        !self.caps.is_empty()
    }

    /// Sets (`Some`) or removes a regular file's capabilities; returns whether it had any.
    pub fn set_capability(&mut self, inode: (u64, u64), cap: Option<Box<[u8]>>) -> bool {
        match cap {
            Some(c) => self.caps.insert(inode, c).is_some(),
            None => self.caps.remove(&inode).is_some(),
        }
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

/// What the kernel keeps of a `security.capability` that root writes (`cap_convert_nscap`), as
/// root then reads it back: a v2 value (20 bytes) as it is; a v3 value (24 bytes, with the uid
/// that is root for it) whose root is 0 as the v2 value root reads; anything else is `EINVAL`.
pub fn capability_as_set(value: &[u8]) -> Result<Box<[u8]>, nix::errno::Errno> {
    const REVISION_MASK: u32 = 0xff00_0000;
    const REVISION_2: u32 = 0x0200_0000;
    const REVISION_3: u32 = 0x0300_0000;
    let le32 = |at: usize| value.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let magic = le32(0).ok_or(nix::errno::Errno::EINVAL)?;
    match (value.len(), magic & REVISION_MASK) {
        (20, REVISION_2) => Ok(value.into()),
        (24, REVISION_3) if le32(20) == Some(0) => {
            let mut v2 = value[..20].to_vec();
            v2[..4].copy_from_slice(&((magic & !REVISION_MASK) | REVISION_2).to_le_bytes());
            Ok(v2.into_boxed_slice())
        }
        (24, REVISION_3) => Ok(value.into()),
        _ => Err(nix::errno::Errno::EINVAL),
    }
}

/// The name of a POSIX access ACL, which sets a file's permission bits as it is set.
pub const ACL_ACCESS_XATTR: &str = "system.posix_acl_access";

/// The permission bits a `system.posix_acl_access` value gives a file (the kernel's
/// `posix_acl_equiv_mode`: the owner's, the mask's or else the owning group's, and others'), and
/// whether the ACL is only that (then the kernel keeps no ACL, only the mode). Malformed values
/// are `EINVAL`.
pub fn acl_mode(value: &[u8]) -> Result<(u32, bool), nix::errno::Errno> {
    const VERSION: u32 = 2;
    let (head, entries) = value.split_at_checked(4).ok_or(nix::errno::Errno::EINVAL)?;
    if u32::from_le_bytes([head[0], head[1], head[2], head[3]]) != VERSION || entries.len() % 8 != 0 {
        return Err(nix::errno::Errno::EINVAL);
    }
    let (mut mode, mut only_mode) = (0u32, true);
    for e in entries.chunks_exact(8) {
        let (tag, perm) =
            (u16::from_le_bytes([e[0], e[1]]), u32::from(u16::from_le_bytes([e[2], e[3]])) & 0o7);
        match tag {
            0x01 => mode |= perm << 6,
            0x04 => mode |= perm << 3,
            0x20 => mode |= perm,
            0x10 => {
                mode = (mode & !0o070) | (perm << 3);
                only_mode = false;
            }
            0x02 | 0x08 => only_mode = false,
            _ => return Err(nix::errno::Errno::EINVAL),
        }
    }
    Ok((mode, only_mode))
}

/// Docker's default capabilities as a mask (`CAP_CHOWN`, `DAC_OVERRIDE`, `FOWNER`, `FSETID`,
/// `KILL`, `SETGID`, `SETUID`, `SETPCAP`, `NET_BIND_SERVICE`, `NET_RAW`, `SYS_CHROOT`, `MKNOD`,
/// `AUDIT_WRITE`, `SETFCAP`: bits 0, 1, 3–8, 10, 13, 18, 27, 29, 31): what a root step has in
/// docker build, and the bounding set of an emulated one.
pub const DOCKER_CAP_MASK: u64 = 0xa804_25fb;

/// `CAP_SETGID`, `CAP_SETUID`: changing gids and groups, and uids, to any value needs them.
pub const CAP_SETGID: u64 = 1 << 6;
/// See [`CAP_SETGID`].
pub const CAP_SETUID: u64 = 1 << 7;

/// `CAP_SETFCAP`: setting a file's capabilities needs it.
pub const CAP_SETFCAP: u64 = 1 << 31;

/// A process's emulated capability sets (bit N is capability N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// What it may use now.
    pub effective: u64,
    /// What it may make effective.
    pub permitted: u64,
    /// What an exec may pass on.
    pub inheritable: u64,
}

impl Caps {
    /// What `capset` may make of `self`, as the kernel's `cap_capset` allows (without
    /// `CAP_SETPCAP` the inheritable set may gain only permitted capabilities; with it, any in the
    /// bounding set); `None` is `EPERM`.
    pub fn set(self, new: Caps) -> Option<Caps> {
        let inheritable_limit =
            self.inheritable | if self.effective & (1 << 8) != 0 { DOCKER_CAP_MASK } else { self.permitted };
        let ok = new.inheritable & !inheritable_limit == 0
            && new.permitted & !self.permitted == 0
            && new.effective & !new.permitted == 0;
        ok.then_some(new)
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
    /// Capabilities: Docker's for root, none for another user, changed by `capset`, uid changes
    /// and exec as the kernel changes them.
    pub caps: Caps,
    /// `PR_SET_NO_NEW_PRIVS` as the process set it: a Docker step starts without it (the
    /// tracer's own filter needs the real flag, which `sudo` refuses to run under).
    pub no_new_privs: bool,
    /// `PR_SET_DUMPABLE` as the process set it (and exec resets it). Not made: a process that is
    /// not dumpable hides its `/proc/PID` from the tracer, which reads its working directory and
    /// descriptors there (sudo makes itself so).
    pub dumpable: bool,
    /// `PR_SET_KEEPCAPS`: a change of uids away from root keeps the permitted set (setpriv,
    /// daemons dropping to a user with a capability). An exec clears it.
    pub keep_caps: bool,
}

impl Creds {
    /// A process running as `uid`:`gid` with `groups`.
    pub fn new(uid: u32, gid: u32, mut groups: Vec<u32>) -> Creds {
        // The kernel keeps them sorted (`groups_sort`), so `getgroups` and `id` list them so.
        groups.sort_unstable();
        let mut c = Creds {
            uid: [uid; 4],
            gid: [gid; 4],
            groups,
            caps: Caps::default(),
            no_new_privs: false,
            dumpable: true,
            keep_caps: false,
        };
        c.exec(None);
        c
    }

    /// The ids and capabilities after an exec of a program whose set-user-ID and set-group-ID
    /// bits give `setid` (its owner, its group; none without the bits), as the kernel computes
    /// them (`begin_new_exec`, `cap_bprm_creds_from_file`): the bits make the effective ids the
    /// file's unless the process has no_new_privs; the saved and filesystem ids become the
    /// effective ones; a real or effective root gets the bounding set, effective if the effective
    /// uid is root; another user keeps none. (A non-root user's program gains none from its file
    /// capabilities either: the tracer records those, the kernel does not honour them for the
    /// caller.)
    pub fn exec(&mut self, setid: Option<(Option<u32>, Option<u32>)>) {
        if let Some((uid, gid)) = setid.filter(|_| !self.no_new_privs) {
            self.uid[1] = uid.unwrap_or(self.uid[1]);
            self.gid[1] = gid.unwrap_or(self.gid[1]);
        }
        self.uid[2] = self.uid[1];
        self.uid[3] = self.uid[1];
        self.gid[2] = self.gid[1];
        self.gid[3] = self.gid[1];
        // A program that runs with other effective ids is not dumpable (suid_dumpable 0).
        self.dumpable = self.uid[0] == self.uid[1] && self.gid[0] == self.gid[1];
        self.keep_caps = false;
        let root = self.uid[0] == 0 || self.uid[1] == 0;
        let permitted = if root { DOCKER_CAP_MASK | self.caps.inheritable } else { 0 };
        let effective = if self.uid[1] == 0 { permitted } else { 0 };
        self.caps = Caps { effective, permitted, ..self.caps };
    }

    /// Adjusts the capabilities after the uids changed from `old`, as the kernel's
    /// `cap_emulate_setxuid` does: leaving root for good (no real, effective or saved uid 0)
    /// clears the effective set and, unless [`Creds::keep_caps`], the permitted one; an effective uid leaving 0 clears the effective
    /// set, one becoming 0 restores it from the permitted set.
    pub fn uids_changed(&mut self, old: [u32; 4]) {
        let had_root = old[..3].contains(&0);
        if had_root && !self.uid[..3].contains(&0) {
            if !self.keep_caps {
                self.caps.permitted = 0;
            }
            self.caps.effective = 0;
        }
        if old[1] == 0 && self.uid[1] != 0 {
            self.caps.effective = 0;
        } else if old[1] != 0 && self.uid[1] == 0 {
            self.caps.effective = self.caps.permitted;
        }
    }

    /// Whether the process may set any uid (`CAP_SETUID` effective: root, or a process that kept
    /// its capabilities across a change of uid, as setpriv does).
    pub fn may_set_uids(&self) -> bool {
        self.caps.effective & CAP_SETUID != 0
    }

    /// Whether the process may set any gid and the groups (`CAP_SETGID` effective).
    pub fn may_set_gids(&self) -> bool {
        self.caps.effective & CAP_SETGID != 0
    }

    /// `/proc/PID/status` as the process would read it in a docker build: the kernel's text
    /// `real` with the ids, groups, capabilities and no_new_privs these credentials emulate (as
    /// `ps`, `pgrep -u` and psutil read them), in the kernel's format.
    pub fn status_text(&self, real: &str) -> String {
        let ids = |v: &[u32; 4]| v.map(|i| i.to_string()).join("\t");
        let mut groups: String = self.groups.iter().map(|g| format!("{g} ")).collect();
        if groups.is_empty() {
            // The kernel's trailing space, even with no group.
            groups.push(' ');
        }
        let mut out = String::with_capacity(real.len());
        for line in real.lines() {
            let key = line.split_once(':').map_or(line, |(k, _)| k);
            let line = match key {
                "Uid" => format!("Uid:\t{}", ids(&self.uid)),
                "Gid" => format!("Gid:\t{}", ids(&self.gid)),
                "Groups" => format!("Groups:\t{groups}"),
                "CapInh" => format!("CapInh:\t{:016x}", self.caps.inheritable),
                "CapPrm" => format!("CapPrm:\t{:016x}", self.caps.permitted),
                "CapEff" => format!("CapEff:\t{:016x}", self.caps.effective),
                "CapBnd" => format!("CapBnd:\t{DOCKER_CAP_MASK:016x}"),
                "CapAmb" => format!("CapAmb:\t{:016x}", 0),
                "NoNewPrivs" => format!("NoNewPrivs:\t{}", u8::from(self.no_new_privs)),
                _ => line.to_string(),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
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
    #[test]
    fn an_access_acl_gives_the_mode_the_kernel_gives() {
        use super::acl_mode;
        // setfacl's and libacl's encoding: version 2, then (tag, perm, id) entries.
        let acl = |entries: &[(u16, u16)]| {
            let mut v = 2u32.to_le_bytes().to_vec();
            for (tag, perm) in entries {
                v.extend(tag.to_le_bytes());
                v.extend(perm.to_le_bytes());
                v.extend(u32::MAX.to_le_bytes());
            }
            v
        };
        // What `cp -p` and `sed -i` write for 0755 and 0640.
        assert_eq!(acl_mode(&acl(&[(0x01, 7), (0x04, 5), (0x20, 5)])), Ok((0o755, true)));
        assert_eq!(acl_mode(&acl(&[(0x01, 6), (0x04, 4), (0x20, 0)])), Ok((0o640, true)));
        // A named user and a mask: the group bits are the mask's, and the ACL is kept.
        assert_eq!(
            acl_mode(&acl(&[(0x01, 7), (0x02, 7), (0x04, 5), (0x10, 6), (0x20, 4)])),
            Ok((0o764, false))
        );
        for bad in
            [vec![], 1u32.to_le_bytes().to_vec(), [acl(&[(0x01, 7)]), vec![0]].concat(), acl(&[(0x40, 7)])]
        {
            assert_eq!(acl_mode(&bad), Err(nix::errno::Errno::EINVAL), "{bad:?}");
        }
    }

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
    fn capabilities_are_kept_as_root_reads_them_back() {
        // cap_net_raw+ep, as setcap writes it: v2, the effective flag in the magic.
        let mut v2 = vec![0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0];
        v2.extend([0; 8]);
        assert_eq!(capability_as_set(&v2).as_deref(), Ok(&v2[..]));
        let mut v3 = v2.clone();
        v3[3] = 0x03;
        v3.extend(0u32.to_le_bytes());
        assert_eq!(capability_as_set(&v3).as_deref(), Ok(&v2[..]), "v3 for root 0 reads as v2");
        let mut other = v3.clone();
        other[20..].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(capability_as_set(&other).as_deref(), Ok(&other[..]), "another root stays v3");
        let v1 = [0x01, 0, 0, 0x01, 0, 0x20, 0, 0, 0, 0, 0, 0];
        for bad in [&v1[..], &v2[..19], &v3[..20], &[]] {
            assert_eq!(capability_as_set(bad), Err(nix::errno::Errno::EINVAL), "{bad:?}");
        }
        let mut o = Owners::new((1000, 1000), (0, 0));
        assert!(!o.set_capability((1, 2), Some(v2.clone().into())));
        assert_eq!(o.capability((1, 2)), Some(&v2[..]));
        o.forget((1, 2));
        assert_eq!(o.capability((1, 2)), None, "a reused inode number starts without");
    }

    #[test]
    fn the_mask_is_dockers_capability_set() {
        let names = crate::sandbox::spec::docker_cap_names();
        assert_eq!(names.len(), crate::sandbox::spec::DOCKER_CAPS.len());
        let mask =
            names.iter().map(|n| n.parse::<caps::Capability>().expect(n)).fold(0, |m, c| m | 1 << c.index());
        assert_eq!(mask, DOCKER_CAP_MASK, "{names:?}");
    }

    #[test]
    fn capabilities_follow_the_kernels_rules() {
        let root = Creds::new(0, 0, vec![]);
        assert_eq!(
            root.caps,
            Caps { effective: DOCKER_CAP_MASK, permitted: DOCKER_CAP_MASK, inheritable: 0 }
        );
        assert_eq!(Creds::new(65534, 65534, vec![]).caps, Caps::default(), "a USER has none");
        // setcap raises CAP_SETFCAP it already has; dropping and raising within the permitted set.
        let c = root.caps;
        assert_eq!(c.set(c), Some(c));
        let fewer = Caps { effective: CAP_SETFCAP, ..c };
        assert_eq!(c.set(fewer).and_then(|f| f.set(c)), Some(c), "effective comes back from permitted");
        assert_eq!(c.set(Caps { permitted: u64::MAX, ..c }), None, "no new permitted ones");
        assert_eq!(c.set(Caps { effective: 1 << 21, ..c }), None, "effective within permitted");
        let nobody = Caps::default();
        assert_eq!(nobody.set(Caps { effective: CAP_SETFCAP, ..nobody }), None);
        // seteuid(1000) and back keeps the permitted set; setuid(1000) as root drops all.
        let mut d = root.clone();
        let old = d.uid;
        assert!(Creds::set_res(&mut d.uid, true, u32::MAX, 1000, u32::MAX));
        d.uids_changed(old);
        assert_eq!((d.caps.effective, d.caps.permitted), (0, DOCKER_CAP_MASK));
        let old = d.uid;
        assert!(Creds::set_res(&mut d.uid, false, u32::MAX, 0, u32::MAX));
        d.uids_changed(old);
        assert_eq!(d.caps.effective, DOCKER_CAP_MASK);
        let old = d.uid;
        assert!(Creds::set_one(&mut d.uid, true, 1000));
        d.uids_changed(old);
        assert_eq!(d.caps, Caps::default());
        d.exec(None);
        assert_eq!(d.caps, Caps::default(), "an exec as another user gains none");
        // A set-user-ID root program (sudo) run by a user: root's effective and saved uid and
        // capabilities; not with no_new_privs.
        let mut u = Creds::new(1000, 1000, vec![]);
        let sudo = Some((Some(0), None));
        let mut run = u.clone();
        run.exec(sudo);
        assert_eq!((run.uid, run.gid), ([1000, 0, 0, 0], [1000; 4]));
        assert_eq!(run.caps.effective, DOCKER_CAP_MASK);
        assert!(!run.dumpable && u.dumpable);
        // setpriv --reuid: keep the permitted set across the change, then make it effective.
        let mut d = Creds::new(0, 0, vec![]);
        d.keep_caps = true;
        let old = d.uid;
        assert!(Creds::set_res(&mut d.uid, true, 100, 100, 100));
        d.uids_changed(old);
        assert_eq!((d.caps.effective, d.caps.permitted), (0, DOCKER_CAP_MASK));
        d.exec(None);
        assert_eq!((d.caps, d.keep_caps), (Caps::default(), false), "an exec ends both");
        u.no_new_privs = true;
        u.exec(sudo);
        assert_eq!((u.uid, u.caps), ([1000; 4], Caps::default()), "no_new_privs");
    }

    #[test]
    fn status_shows_the_emulated_ids_in_the_kernels_format() {
        let real = "Name:\tcat\nUmask:\t0022\nUid:\t1001\t1001\t1001\t1001\nGid:\t1001\t1001\t1001\t1001\n\
                    Groups:\t1001 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
                    CapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n\
                    NoNewPrivs:\t1\nSeccomp:\t2\n";
        let root = Creds::new(0, 0, vec![]);
        assert_eq!(
            root.status_text(real),
            "Name:\tcat\nUmask:\t0022\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t \n\
             CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n\
             CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t2\n"
        );
        let app = Creds::new(1000, 1000, vec![27, 50]);
        let text = app.status_text(real);
        assert!(text.contains("\nUid:\t1000\t1000\t1000\t1000\n"), "{text}");
        assert!(text.contains("\nGroups:\t27 50 \n"), "{text}");
        assert!(text.contains("\nCapEff:\t0000000000000000\n"), "{text}");
    }

    #[test]
    fn a_dropped_uid_cannot_be_regained() {
        // apt's privilege drop: setresuid(_apt, _apt, _apt), then it checks setuid(0) fails.
        let mut c = Creds::new(0, 0, vec![]);
        assert!(c.may_set_uids() && c.may_set_gids(), "root");
        assert!(Creds::set_res(&mut c.uid, true, 42, 42, 42));
        c.uids_changed([0; 4]);
        assert!(!c.may_set_uids() && !c.may_set_gids());
        assert!(!Creds::set_one(&mut c.uid, false, 0), "setuid(0) is refused");
        assert!(!Creds::set_res(&mut c.uid, false, u32::MAX, 0, u32::MAX));
        assert_eq!(c.uid, [42; 4]);
        // seteuid to an unprivileged id and back, with root kept as the saved id: allowed.
        let mut d = Creds::new(0, 0, vec![]);
        assert!(Creds::set_re(&mut d.uid, true, u32::MAX, 1000));
        assert_eq!(d.uid, [0, 1000, 1000, 1000], "the saved id follows a new effective id");
        let mut e = Creds::new(0, 0, vec![]);
        assert!(Creds::set_res(&mut e.uid, true, u32::MAX, 1000, u32::MAX));
        e.uids_changed([0; 4]);
        assert!(!e.may_set_uids(), "an effective uid other than 0 has no capabilities");
        assert!(Creds::set_res(&mut e.uid, false, u32::MAX, 0, u32::MAX), "back to the saved 0");
        assert_eq!(Creds::set_fs(&mut e.uid, true, 7), 0);
        assert_eq!(e.uid[3], 7);
    }
}
