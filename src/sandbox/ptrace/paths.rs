//! Paths between the step and the machine: the step names paths in its own root (`/etc/passwd`);
//! the kernel must be given the machine's (`<root>/etc/passwd`). Resolution follows symlinks as
//! if the root were `/` ([`crate::layer::rootpath`], the one implementation of that walk), so an
//! absolute link in the image (`/etc/alternatives/x -> /usr/bin/y`) stays inside it.
//!
//! `/proc`, `/dev` and `/sys` are the machine's own, as the mounts a container gets: the step's
//! `/dev/null` is the real one, `/proc/self` is the process itself, and listing `/proc` finds the
//! processes. What the root has below them (a heredoc script hako puts in `/dev/pipes`) stays
//! visible.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::Pid;

/// Top-level directories taken from the machine rather than the root.
const HOST_DIRS: [&[u8]; 3] = [b"proc", b"dev", b"sys"];

/// The root a step sees as `/`.
pub struct Root {
    host: PathBuf,
    /// `host` as bytes, without a trailing slash.
    prefix: Vec<u8>,
    /// The root's directory, open in the tracer: `/proc/TRACER/fd/N` is a short name for it.
    dir: Option<std::fs::File>,
    /// What read-only mounts would hold (a bind mount without `rw`, a secret), as machine paths.
    read_only: Vec<Vec<u8>>,
}

impl Root {
    /// The root at `host` (absolute).
    pub fn new(host: &Path) -> Root {
        let mut prefix = host.as_os_str().as_bytes().to_vec();
        while prefix.len() > 1 && prefix.ends_with(b"/") {
            prefix.pop();
        }
        // Close-on-exec, as std opens every file: no program of the step holds it.
        let dir = std::fs::File::open(host).ok();
        Root { host: host.to_path_buf(), prefix, dir, read_only: Vec::new() }
    }

    /// Makes the step's paths `targets` (in the root, there now) read-only, as mounts: a call
    /// that would change what is at or below one fails with `EROFS` ([`Root::writable`]).
    pub fn set_read_only(&mut self, targets: &[String]) {
        self.read_only = targets.iter().filter_map(|t| self.to_host(t.as_bytes(), true).ok()).collect();
    }

    /// Whether any path is read-only (most steps have no such mount).
    pub fn has_read_only(&self) -> bool {
        !self.read_only.is_empty()
    }

    /// `EROFS` for a change at `host` when a read-only mount would hold it.
    pub fn writable(&self, host: &[u8]) -> Result<(), Errno> {
        let host = host.strip_suffix(b"/").unwrap_or(host);
        match self.read_only.iter().any(|r| below(host, r).is_some()) {
            true => Err(Errno::EROFS),
            false => Ok(()),
        }
    }

    /// `host`, a path in the root, named through the tracer's descriptor of the root
    /// (`/proc/TRACER/fd/N/rest`): a shorter name any process of the same user can use, for
    /// where a path's length is limited (a Unix socket's 108 bytes).
    pub fn via_fd(&self, host: &[u8]) -> Option<Vec<u8>> {
        let rest = below(host, &self.prefix)?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.dir.as_ref()?);
        Some([format!("/proc/{}/fd/{fd}", std::process::id()).as_bytes(), rest].concat())
    }

    /// The machine's path for the step's absolute path `guest`. The last component is followed
    /// when it is a symlink only if `follow`. A trailing slash is kept (the kernel then insists on
    /// a directory).
    pub fn to_host(&self, guest: &[u8], follow: bool) -> Result<Vec<u8>, Errno> {
        let trailing = guest.len() > 1 && guest.ends_with(b"/");
        let (parent, last) = match split_last(guest) {
            // `.`, `..` and trailing slashes name directories: always followed.
            Some((parent, last)) if !follow && !trailing && last != b"." && last != b".." => {
                (parent, Some(last))
            }
            _ => (guest, None),
        };
        let mut rel = crate::layer::rootpath::resolve_in_root_bytes(&self.host, parent)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::ELOOP)))?;
        if let Some(last) = last {
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(last);
        }
        let first = rel.split(|b| *b == b'/').next().unwrap_or_default();
        // The directories themselves are the machine's, as mounts are, so listing `/proc` finds
        // the processes (`ps`, `pidof`) and `stat -f` its file system. Below them, what the root
        // itself has wins (a RUN heredoc's script in /dev/pipes, put there for the step).
        let machine = HOST_DIRS.contains(&first)
            && (rel.len() == first.len()
                || std::fs::symlink_metadata(self.host.join(OsStr::from_bytes(&rel))).is_err());
        let mut out = if machine {
            let mut v = b"/".to_vec();
            v.extend_from_slice(&rel);
            v
        } else {
            let mut v = self.prefix.clone();
            if !rel.is_empty() {
                v.push(b'/');
                v.extend_from_slice(&rel);
            }
            v
        };
        if trailing {
            out.push(b'/');
        }
        Ok(out)
    }

    /// The step's path for a machine path: inside the root, relative to it; `/proc`, `/dev` and
    /// `/sys` as they are; anything else (outside the step's view) as it is.
    pub fn to_guest(&self, host: &[u8]) -> Vec<u8> {
        match below(host, &self.prefix) {
            Some([]) => b"/".to_vec(),
            Some(rest) => rest.to_vec(),
            None => host.to_vec(),
        }
    }

    /// The directories a lookup of `host` searches in the root, from the root down to the one
    /// holding its last component (trailing slashes ignored); `None` when `host` is not in it.
    /// `host` is a path [`Root::to_host`] gave, so none of them is a symlink.
    pub fn dirs_to<'a>(&self, host: &'a [u8]) -> Option<impl Iterator<Item = &'a [u8]>> {
        let rest = below(host, &self.prefix)?;
        let end = rest.len() - rest.iter().rev().take_while(|b| **b == b'/').count();
        let base = self.prefix.len();
        Some(rest[..end].iter().enumerate().filter(|(_, b)| **b == b'/').map(move |(i, _)| &host[..base + i]))
    }

    /// Whether `host` is inside the root (not one of the machine's directories).
    pub fn holds(&self, host: &[u8]) -> bool {
        below(host, &self.prefix).is_some()
    }

    /// The step's absolute path for `path` as process `pid` passed it, relative to `dirfd`
    /// (`AT_FDCWD`: its working directory).
    pub fn absolute(&self, pid: Pid, dirfd: Option<i32>, path: &[u8]) -> Result<Vec<u8>, Errno> {
        if path.starts_with(b"/") {
            return Ok(path.to_vec());
        }
        let base = match dirfd {
            None | Some(nix::libc::AT_FDCWD) => format!("/proc/{pid}/cwd"),
            Some(fd) if fd >= 0 => format!("/proc/{pid}/fd/{fd}"),
            Some(_) => return Err(Errno::EBADF),
        };
        let dir = std::fs::read_link(&base).map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ENOENT) if dirfd.is_some_and(|d| d >= 0) => Errno::EBADF,
            Some(n) => Errno::from_raw(n),
            None => Errno::EIO,
        })?;
        let mut guest = self.to_guest(dir.as_os_str().as_bytes());
        if !guest.ends_with(b"/") {
            guest.push(b'/');
        }
        guest.extend_from_slice(path);
        Ok(guest)
    }
}

/// `host` with `/proc/self` and `/proc/thread-self` made process `pid`'s own: the tracer makes
/// some calls itself, where they would name the tracer.
pub fn own_proc(pid: Pid, host: Vec<u8>) -> Vec<u8> {
    if let Some(rest) = below(&host, b"/proc/self") {
        return [format!("/proc/{pid}").as_bytes(), rest].concat();
    }
    if let Some(rest) = below(&host, b"/proc/thread-self") {
        return [format!("/proc/{pid}/task/{pid}").as_bytes(), rest].concat();
    }
    host
}

/// What follows `dir` in `path` when `path` is `dir` itself (empty) or below it (`/…`), not a
/// sibling that only shares its name's start (`/rootx` for `/root`).
fn below<'a>(path: &'a [u8], dir: &[u8]) -> Option<&'a [u8]> {
    path.strip_prefix(dir).filter(|rest| rest.is_empty() || rest.starts_with(b"/"))
}

/// The process (or thread) whose `exe` link `host` is: `/proc/PID/exe` or
/// `/proc/PID/task/TID/exe`.
pub fn exe_link_pid(host: &[u8]) -> Option<Pid> {
    proc_file_of(host, b"exe")
}

/// The process (or thread) whose status file `host` is: `/proc/PID/status` or
/// `/proc/PID/task/TID/status`.
pub fn status_of(host: &[u8]) -> Option<Pid> {
    proc_file_of(host, b"status")
}

/// The process (or thread) whose command line `host` is: `/proc/PID/cmdline` or
/// `/proc/PID/task/TID/cmdline`.
pub fn cmdline_of(host: &[u8]) -> Option<Pid> {
    proc_file_of(host, b"cmdline")
}

/// The process (or thread) whose `/proc` file `name` `host` is (`/proc/PID/NAME`,
/// `/proc/PID/task/TID/NAME`).
fn proc_file_of(host: &[u8], name: &[u8]) -> Option<Pid> {
    let parts: Vec<&[u8]> = host.strip_prefix(b"/proc/")?.split(|b| *b == b'/').collect();
    let id = match parts.as_slice() {
        [pid, file] | [_, b"task", pid, file] if *file == name => pid,
        _ => return None,
    };
    number(id).map(Pid::from_raw)
}

/// The process and descriptor whose link `host` is: `/proc/PID/fd/N` (or
/// `/proc/PID/task/TID/fd/N`, the process's).
pub fn fd_link(host: &[u8]) -> Option<(Pid, i32)> {
    let parts: Vec<&[u8]> = host.strip_prefix(b"/proc/")?.split(|b| *b == b'/').collect();
    match parts.as_slice() {
        [pid, b"fd", fd] | [pid, b"task", _, b"fd", fd] => Some((Pid::from_raw(number(pid)?), number(fd)?)),
        _ => None,
    }
}

/// A /proc name's number: digits only (`+1` parses too, and names nothing there).
fn number(id: &[u8]) -> Option<i32> {
    let id = std::str::from_utf8(id).ok()?;
    id.bytes().all(|b| b.is_ascii_digit()).then(|| id.parse().ok()).flatten()
}

/// Splits `a/b/c` (trailing slashes ignored) into `a/b` and `c`; `None` for the root.
fn split_last(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut end = p.len();
    while end > 0 && p[end - 1] == b'/' {
        end -= 1;
    }
    if end == 0 {
        return None;
    }
    let p = &p[..end];
    match p.iter().rposition(|b| *b == b'/') {
        Some(i) => Some((&p[..i + 1], &p[i + 1..])),
        None => Some((b"", p)),
    }
}

/// `bytes` as a path.
pub fn path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn paths_stay_in_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("etc/alternatives")).unwrap();
        std::fs::write(r.join("usr/bin/y"), "").unwrap();
        symlink("/usr/bin/y", r.join("etc/alternatives/x")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        let root = Root::new(r);
        let host =
            |g: &str, follow: bool| String::from_utf8(root.to_host(g.as_bytes(), follow).unwrap()).unwrap();
        let at = |rel: &str| format!("{}{rel}", r.display());
        assert_eq!(host("/etc/alternatives/x", true), at("/usr/bin/y"));
        assert_eq!(host("/etc/alternatives/x", false), at("/etc/alternatives/x"), "lstat sees the link");
        assert_eq!(host("/bin/y", false), at("/usr/bin/y"), "parents are always followed");
        assert_eq!(host("/../../etc", true), at("/etc"), "`..` stops at the root");
        assert_eq!(host("/", true), at(""));
        assert_eq!(host("/new/file", true), at("/new/file"), "missing paths are kept");
        assert_eq!(host("/etc/", false), at("/etc/"), "a trailing slash is kept");
        assert_eq!(host("/dev/null", true), "/dev/null");
        assert_eq!(host("/proc/self/fd/1", false), "/proc/self/fd/1");
        std::fs::create_dir_all(r.join("dev/pipes")).unwrap();
        std::fs::write(r.join("dev/pipes/EOF"), "").unwrap();
        assert_eq!(host("/dev/pipes/EOF", true), at("/dev/pipes/EOF"), "the root's own files win");
        assert_eq!(host("/dev", true), "/dev", "the directory is the machine's");
        assert_eq!(host("/proc/", false), "/proc/");
        assert_eq!(root.to_guest(at("/usr/bin/y").as_bytes()), b"/usr/bin/y");
        assert_eq!(root.to_guest(at("").as_bytes()), b"/");
        assert_eq!(root.to_guest(b"/dev/pts/0"), b"/dev/pts/0");
        assert!(!root.holds(format!("{}x/y", r.display()).as_bytes()), "a sibling with the same prefix");
        assert_eq!(split_last(b"/a/b/"), Some((&b"/a/"[..], &b"b"[..])));
        let dirs = |h: &str| {
            root.dirs_to(h.as_bytes())
                .map(|d| d.map(|p| String::from_utf8(p.to_vec()).unwrap()).collect::<Vec<_>>())
        };
        assert_eq!(dirs(&at("/usr/bin/y")), Some(vec![at(""), at("/usr"), at("/usr/bin")]));
        assert_eq!(dirs(&at("/etc/")), Some(vec![at("")]));
        assert_eq!(dirs(&at("")), Some(vec![]));
        assert_eq!(dirs("/dev/null"), None);
        let mut root = root;
        root.set_read_only(&["/bin".into()]);
        assert_eq!(root.writable(at("/usr/bin/y").as_bytes()), Err(Errno::EROFS), "through the link");
        assert_eq!(root.writable(at("/usr/bin/").as_bytes()), Err(Errno::EROFS));
        assert_eq!(root.writable(at("/usr/binx").as_bytes()), Ok(()));
        assert_eq!(root.writable(at("/usr").as_bytes()), Ok(()));
    }

    #[test]
    fn the_roots_descriptor_names_its_paths_shorter() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("run/x")).unwrap();
        std::fs::write(t.path().join("run/x/f"), "through the descriptor").unwrap();
        let root = Root::new(t.path());
        let short = root.via_fd(format!("{}/run/x/f", t.path().display()).as_bytes()).unwrap();
        assert!(short.starts_with(format!("/proc/{}/fd/", std::process::id()).as_bytes()));
        assert_eq!(std::fs::read_to_string(path(&short)).unwrap(), "through the descriptor");
        assert_eq!(root.via_fd(b"/dev/null"), None, "only paths in the root");
        assert_eq!(root.via_fd(format!("{}x/f", t.path().display()).as_bytes()), None, "a sibling");
    }

    #[test]
    fn proc_self_is_the_step_and_exe_links_name_their_process() {
        let pid = Pid::from_raw(42);
        let own = |h: &str| String::from_utf8(own_proc(pid, h.as_bytes().to_vec())).unwrap();
        assert_eq!(own("/proc/self/exe"), "/proc/42/exe");
        assert_eq!(own("/proc/self"), "/proc/42");
        assert_eq!(own("/proc/thread-self/fd/3"), "/proc/42/task/42/fd/3");
        assert_eq!(own("/proc/selfish"), "/proc/selfish");
        assert_eq!(own("/root/proc/self"), "/root/proc/self");
        let exe = |h: &str| exe_link_pid(h.as_bytes()).map(Pid::as_raw);
        assert_eq!(exe("/proc/42/exe"), Some(42));
        assert_eq!(exe("/proc/42/task/43/exe"), Some(43));
        for no in
            ["/proc/42/exe/", "/proc/42/cwd", "/proc/+42/exe", "/proc/self/exe", "/proc//exe", "/x/42/exe"]
        {
            assert_eq!(exe(no), None, "{no}");
        }
        let fd = |h: &str| fd_link(h.as_bytes()).map(|(p, fd)| (p.as_raw(), fd));
        assert_eq!(fd("/proc/42/fd/3"), Some((42, 3)));
        assert_eq!(fd("/proc/42/task/43/fd/7"), Some((42, 7)));
        for no in ["/proc/42/fd", "/proc/42/fd/", "/proc/42/fd/x", "/proc/42/fdinfo/3", "/proc/self/fd/3"] {
            assert_eq!(fd(no), None, "{no}");
        }
        assert_eq!(split_last(b"/"), None);
        let status = |h: &str| status_of(h.as_bytes()).map(Pid::as_raw);
        assert_eq!(status("/proc/42/status"), Some(42));
        assert_eq!(status("/proc/42/task/43/status"), Some(43));
        for no in ["/proc/42/stat", "/proc/self/status", "/proc/42/status/", "/x/42/status"] {
            assert_eq!(status(no), None, "{no}");
        }
    }
}
