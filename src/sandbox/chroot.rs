//! `--isolation=chroot`: steps for machines that allow no namespaces and no mounts, only root
//! (kaniko's model: hako runs as root inside a throwaway CI container whose seccomp profile denies
//! `unshare` and `mount`).
//!
//! The step's root is a copy of its parent's filesystem (the copy snapshotter). What a mount
//! would provide is put *into* that copy for the step's duration and taken out again before the
//! diff ([`Injections`]): device nodes in `/dev`, `/etc/hosts` and `/etc/resolv.conf`, cache
//! directories (moved in and back), tmpfs targets (empty directories), secrets (files, on disk in
//! the copy for the duration of the step) and bind sources (copied in). Whatever was at such a path
//! is moved aside and back, and the parent directories get their times back, so none of it shows
//! in the layer. The command runs in a new session, chrooted, with the step's user and groups:
//! no pid, network, uts or ipc isolation, and no `/proc` or `/sys` unless the image has them.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

/// What to put at a path for the duration of a step.
pub enum Content {
    /// An empty directory with this mode.
    Dir(u32),
    /// A file.
    File {
        /// Bytes.
        data: Vec<u8>,
        /// Mode.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// A character device (major, minor), mode 0666; an empty regular file where device nodes
    /// cannot be made (no CAP_MKNOD, as in podman's default set), so writes still land somewhere
    /// that is taken away after the step.
    Char(u64, u64),
    /// A host directory moved in, and moved back afterwards (a cache).
    MoveIn(PathBuf),
    /// A host file or directory copied in (a bind source).
    CopyIn(PathBuf),
}

struct Done {
    target: PathBuf,
    /// Where the original entry waits.
    aside: Option<PathBuf>,
    /// Where a moved-in directory goes back to.
    back: Option<PathBuf>,
    /// The first directory created to hold the target (removed when empty).
    stub: Option<PathBuf>,
    /// Existing directories above the target, with their metadata before.
    parents: Vec<(PathBuf, std::fs::Metadata)>,
}

/// The paths put into a root for one step.
pub struct Injections {
    root: PathBuf,
    aside: PathBuf,
    done: Vec<Done>,
    /// Device nodes could not be made; empty files stand in for them.
    pub no_devices: bool,
    /// Give files their owners (off under ptrace isolation: the caller cannot, and records them).
    pub chown: bool,
}

impl Injections {
    /// Injections into `root`; originals wait in `aside` (same filesystem, outside the root).
    pub fn new(root: &Path, aside: &Path) -> Injections {
        Injections {
            root: root.to_path_buf(),
            aside: aside.to_path_buf(),
            done: Vec::new(),
            no_devices: false,
            chown: true,
        }
    }

    /// Puts `content` at `target` (absolute in the step).
    pub fn add(&mut self, target: &str, content: Content) -> Result<(), String> {
        let rel = target.trim_start_matches('/');
        let (parent_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if name.is_empty() || name == "." || name == ".." {
            return Err(format!("cannot place anything at {target}"));
        }
        let parents = existing_parents(&self.root, parent_rel);
        let stub =
            super::overlay::missing_stub(&self.root, &format!("/{parent_rel}")).map(|s| self.root.join(s));
        let parent = crate::layer::rootpath::resolve_in_root(&self.root, parent_rel)
            .map_err(|e| format!("{target}: {e}"))?;
        fs_err::create_dir_all(&parent).map_err(|e| e.to_string())?;
        let path = parent.join(name);
        let mut aside = None;
        if std::fs::symlink_metadata(&path).is_ok() {
            fs_err::create_dir_all(&self.aside).map_err(|e| e.to_string())?;
            let a = self.aside.join(self.done.len().to_string());
            fs_err::rename(&path, &a).map_err(|e| e.to_string())?;
            aside = Some(a);
        }
        let mut back = None;
        let made = match content {
            Content::Dir(mode) => std::fs::create_dir(&path)
                .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))),
            Content::File { data, mode, uid, gid } => std::fs::write(&path, data)
                .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)))
                .and_then(|()| match self.chown {
                    true => std::os::unix::fs::chown(&path, Some(uid), Some(gid)),
                    false => Ok(()),
                }),
            Content::Char(major, minor) => {
                match mknod(&path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(major, minor)) {
                    Ok(()) => {}
                    Err(nix::errno::Errno::EPERM) => {
                        self.no_devices = true;
                        std::fs::write(&path, b"").map_err(|e| format!("preparing {target}: {e}"))?;
                    }
                    Err(e) => return Err(format!("preparing {target} for the step: {e}")),
                }
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            }
            Content::MoveIn(src) => {
                back = Some(src.clone());
                std::fs::rename(&src, &path)
            }
            Content::CopyIn(src) => super::overlay::copy_tree(&src, &path),
        };
        self.done.push(Done { target: path.clone(), aside, back, stub, parents });
        made.map_err(|e| format!("preparing {target} for the step: {e}"))
    }

    /// Takes everything out again, last first, and gives parent directories their times back.
    pub fn undo(mut self) -> Result<(), String> {
        let mut first_error = None;
        while let Some(d) = self.done.pop() {
            let r = (|| -> std::io::Result<()> {
                match &d.back {
                    Some(back) => std::fs::rename(&d.target, back)?,
                    None => match std::fs::symlink_metadata(&d.target) {
                        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&d.target)?,
                        Ok(_) => std::fs::remove_file(&d.target)?,
                        Err(_) => {}
                    },
                }
                if let Some(a) = &d.aside {
                    std::fs::rename(a, &d.target)?;
                }
                if let Some(stub) = &d.stub {
                    remove_empty_dirs(stub);
                }
                for (p, m) in d.parents.iter().rev() {
                    if std::fs::symlink_metadata(p).is_ok_and(|now| now.is_dir() && now.ino() == m.ino()) {
                        super::overlay::restore_times(p, m)?;
                    }
                }
                Ok(())
            })();
            if let Err(e) = r {
                first_error.get_or_insert(format!("cleaning {} after the step: {e}", d.target.display()));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn existing_parents(root: &Path, rel: &str) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut p = root.to_path_buf();
    if let Ok(m) = std::fs::symlink_metadata(&p) {
        out.push((p.clone(), m));
    }
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => out.push((p.clone(), m)),
            _ => break,
        }
    }
    out
}

/// Removes `dir` if it holds nothing but empty directories.
fn remove_empty_dirs(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_dirs(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The device nodes a step gets in `/dev` (as Docker's defaults), with their numbers.
pub const DEVICES: [(&str, u64, u64); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// Finds `arg0` inside `root` the way execvp would (through `PATH` from `env` when it has no
/// slash); returns the path to exec after chroot.
pub fn find_executable(root: &Path, arg0: &str, env: &[String]) -> Option<String> {
    let runnable = |p: &str| {
        crate::layer::rootpath::resolve_in_root(root, p.trim_start_matches('/'))
            .ok()
            .and_then(|abs| std::fs::metadata(abs).ok())
            .is_some_and(|m| m.is_file() && m.mode() & 0o111 != 0)
    };
    if arg0.contains('/') {
        return runnable(arg0).then(|| arg0.to_string());
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(super::DEFAULT_PATH);
    path.split(':').filter(|d| !d.is_empty()).map(|d| format!("{d}/{arg0}")).find(|p| runnable(p))
}

/// Kills every process whose root directory is `root` or below it, until none is left: what a
/// step left running when its first process ended (a daemon it started, a background job still
/// holding its output), which the end of a pid namespace kills in the other modes, as in
/// BuildKit. Without a pid namespace a step's processes are known by the root they are chrooted
/// into, which a daemon's `setsid` and double fork do not change. Returns how many were killed.
pub fn kill_rooted(root: &Path) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let Ok(root) = std::fs::canonicalize(root) else { return 0 };
    let inside = |p: &Path| p.strip_prefix(&root).is_ok();
    let mut killed = 0;
    // Each round kills what it found; a process forked meanwhile is found by the next.
    for _ in 0..100 {
        let Ok(procs) = std::fs::read_dir("/proc") else { return killed };
        let found: Vec<i32> = procs
            .flatten()
            .filter_map(|e| std::str::from_utf8(e.file_name().as_bytes()).ok()?.parse().ok())
            .filter(|pid: &i32| std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| inside(&r)))
            .collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            if nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
        // A killed process keeps its root until it is gone.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    killed
}

/// Starts `cmd` (its executable resolved to `exe` inside the root) chrooted into `root` in a new
/// session, with stdout and stderr on `output`.
pub fn spawn(
    root: &Path,
    exe: &str,
    cmd: &super::protocol::Process,
    output: &OwnedFd,
) -> Result<Pid, String> {
    let c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} holds a NUL byte"));
    let exe = c(exe)?;
    let args = cmd.args.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    let env = cmd.env.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    let root = c(&root.to_string_lossy())?;
    let cwd = c(&cmd.cwd)?;
    let groups: Vec<Gid> = cmd.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
    // SAFETY: the helper is single-threaded, so the child may do anything before exec.
    match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            use super::child_fail as fail;
            super::child_start(null.as_fd(), output.as_fd());
            if let Err(e) = nix::unistd::chroot(root.as_c_str()) {
                fail("chroot", e);
            }
            if let Err(e) = nix::unistd::chdir(cwd.as_c_str()) {
                fail("chdir to the working directory", e);
            }
            if let Err(e) = nix::unistd::setgroups(&groups) {
                fail("setgroups", e);
            }
            if let Err(e) = nix::unistd::setgid(Gid::from_raw(cmd.gid)) {
                fail("setgid", e);
            }
            if let Err(e) = nix::unistd::setuid(Uid::from_raw(cmd.uid)) {
                fail("setuid", e);
            }
            let e = nix::unistd::execve(&exe, &args, &env).err().unwrap_or(nix::errno::Errno::UnknownErrno);
            fail("exec", e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injections_leave_no_trace() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hosts"), "original").unwrap();
        let cache = t.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let before = crate::layer::walkdiff::record(&root).unwrap();
        let mut inj = Injections::new(&root, &t.path().join("aside"));
        inj.add("/etc/hosts", Content::File { data: b"ours".to_vec(), mode: 0o644, uid: 0, gid: 0 }).unwrap();
        inj.add("/etc/resolv.conf", Content::File { data: b"r".to_vec(), mode: 0o644, uid: 0, gid: 0 })
            .unwrap();
        inj.add("/var/cache/apt", Content::MoveIn(cache.clone())).unwrap();
        inj.add("/tmpfs", Content::Dir(0o1777)).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("etc/hosts")).unwrap(), "ours");
        std::fs::write(root.join("var/cache/apt/pkg"), "kept in the cache").unwrap();
        inj.undo().unwrap();
        assert_eq!(std::fs::read_to_string(root.join("etc/hosts")).unwrap(), "original");
        assert!(cache.join("pkg").exists(), "the cache went back with its new file");
        let after = crate::layer::walkdiff::record(&root).unwrap();
        assert_eq!(before, after, "the root is as it was, times included");
    }

    #[test]
    fn executables_are_found_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(bin.join("data"), "").unwrap();
        let env = vec!["PATH=/bin:/usr/bin".to_string()];
        assert_eq!(find_executable(t.path(), "tool", &env).as_deref(), Some("/usr/bin/tool"));
        assert_eq!(find_executable(t.path(), "/usr/bin/tool", &env).as_deref(), Some("/usr/bin/tool"));
        assert_eq!(find_executable(t.path(), "data", &env), None, "not executable");
        assert_eq!(find_executable(t.path(), "sh", &env), None);
    }
}
