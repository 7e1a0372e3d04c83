//! Resolving a path inside a root as if the root were `/` (chroot semantics, like containerd's
//! `fs.RootPath`): the one implementation of this security-critical walk, used on the disk
//! ([`resolve_in_root`], layer extraction) and on an in-memory index ([`super::index::FsIndex`]).
//!
//! The walk takes components one at a time. `.` and empty components are skipped; `..` drops the
//! last resolved component and stops at the root; a symbolic link is replaced by its target's
//! components (an absolute target starts again at the root), at most [`MAX_SYMLINK_HOPS`] links
//! per walk. So nothing the tree contains can lead the walk outside the root. What to do when a
//! component is missing or is not a directory is the caller's policy: [`Walk::advance`] stops and
//! says so, and the caller may [`Walk::enter`] the component (after creating it, or lexically) and
//! advance again.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How many symbolic links one path may go through before resolution gives up (Linux's limit).
pub const MAX_SYMLINK_HOPS: u32 = 40;

/// What a tree holds at a path, the final component not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Nothing.
    Missing,
    /// A directory: the walk enters it.
    Dir,
    /// A symbolic link with this target: the walk follows it.
    Symlink(Vec<u8>),
    /// Anything else (a file, a device, a link the tree does not follow).
    Other,
}

/// A tree paths are resolved in: the disk below a directory, or an index of one.
pub trait Tree {
    /// Why a path could not be looked at.
    type Error;

    /// What is at `rel`: resolved components joined by `/`, no leading `/`, `""` for the root.
    /// A final symlink is reported, not followed.
    fn node(&self, rel: &[u8]) -> Result<Node, Self::Error>;
}

/// Where [`Walk::advance`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every component is resolved.
    Done,
    /// This component does not exist (it is no longer pending).
    Missing(Vec<u8>),
    /// This component exists but is not a directory or a symlink, and more components follow
    /// (or the caller wants only directories).
    NotDir(Vec<u8>),
    /// More than [`MAX_SYMLINK_HOPS`] symbolic links were followed.
    Loop,
}

/// A resolution in progress: the components resolved so far (real directories, or whatever the
/// caller entered) and those still to go.
#[derive(Debug, Clone)]
pub struct Walk {
    /// Resolved components joined by `/`.
    path: Vec<u8>,
    /// Where each resolved component starts in `path` (its `/` included), for `..`.
    starts: Vec<usize>,
    pending: VecDeque<Vec<u8>>,
    hops: u32,
}

impl Walk {
    /// A walk from the root over `path`'s components (split on `/`; a leading `/` means nothing).
    pub fn new(path: &[u8]) -> Walk {
        Walk::from_components(path.split(|b| *b == b'/'))
    }

    /// A walk from the root over already split components.
    pub fn from_components<'a>(comps: impl IntoIterator<Item = &'a [u8]>) -> Walk {
        let pending = comps.into_iter().filter(|c| !c.is_empty() && *c != b".").map(<[u8]>::to_vec).collect();
        Walk { path: Vec::new(), starts: Vec::new(), pending, hops: 0 }
    }

    /// The components resolved so far, joined by `/` (`""` for the root).
    pub fn resolved(&self) -> &[u8] {
        &self.path
    }

    /// The path of `component` below what is resolved so far.
    pub fn child(&self, component: &[u8]) -> Vec<u8> {
        let mut p = self.path.clone();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(component);
        p
    }

    /// Whether no component is left to resolve.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes `component` as resolved without looking at the tree (after the caller created it,
    /// or to carry on lexically past a missing one).
    pub fn enter(&mut self, component: &[u8]) {
        self.starts.push(self.path.len());
        if !self.path.is_empty() {
            self.path.push(b'/');
        }
        self.path.extend_from_slice(component);
    }

    /// Drops the last resolved component (`..`); at the root, nothing happens.
    fn leave(&mut self) {
        if let Some(start) = self.starts.pop() {
            self.path.truncate(start);
        }
    }

    /// Resolves pending components until all are done or one cannot be entered. Every component
    /// must be a directory or a symlink to one, except the last when `last_any` is set (then a
    /// final file is resolved too). A final symlink is always followed.
    pub fn advance<T: Tree + ?Sized>(&mut self, tree: &T, last_any: bool) -> Result<Step, T::Error> {
        while let Some(c) = self.pending.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    self.leave();
                    continue;
                }
                _ => {}
            }
            match tree.node(&self.child(&c))? {
                Node::Missing => return Ok(Step::Missing(c)),
                Node::Dir => self.enter(&c),
                Node::Symlink(target) => {
                    self.hops += 1;
                    if self.hops > MAX_SYMLINK_HOPS {
                        return Ok(Step::Loop);
                    }
                    if target.starts_with(b"/") {
                        self.path.clear();
                        self.starts.clear();
                    }
                    for part in target.split(|b| *b == b'/').rev() {
                        if !part.is_empty() && part != b"." {
                            self.pending.push_front(part.to_vec());
                        }
                    }
                }
                Node::Other if last_any && self.pending.is_empty() => self.enter(&c),
                Node::Other => return Ok(Step::NotDir(c)),
            }
        }
        Ok(Step::Done)
    }
}

/// The disk below a directory. A path that does not exist, or goes through a non-directory,
/// is [`Node::Missing`]; other `lstat` failures are errors.
#[derive(Debug, Clone, Copy)]
pub struct Disk<'a>(pub &'a Path);

impl Disk<'_> {
    /// The path of `rel` on the disk.
    pub fn path(&self, rel: &[u8]) -> PathBuf {
        self.0.join(OsStr::from_bytes(rel))
    }
}

/// A path on the disk that could not be looked at.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct DiskError {
    /// What was being done (`"lstat"`, `"read link"`).
    pub op: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The system's error.
    pub source: io::Error,
}

/// Reads what is at `abs` without following it; `lstat` failures go to `on_error`.
fn disk_node(
    abs: PathBuf,
    on_error: impl FnOnce(io::Error) -> Result<Node, io::Error>,
) -> Result<Node, DiskError> {
    match std::fs::symlink_metadata(&abs) {
        Ok(m) if m.is_dir() => Ok(Node::Dir),
        Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&abs) {
            Ok(t) => Ok(Node::Symlink(t.into_os_string().into_encoded_bytes())),
            Err(source) => Err(DiskError { op: "read link", path: abs, source }),
        },
        Ok(_) => Ok(Node::Other),
        Err(e) => on_error(e).map_err(|source| DiskError { op: "lstat", path: abs, source }),
    }
}

impl Tree for Disk<'_> {
    type Error = DiskError;

    fn node(&self, rel: &[u8]) -> Result<Node, DiskError> {
        disk_node(self.path(rel), |e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Ok(Node::Missing),
            _ => Err(e),
        })
    }
}

/// The disk, where a path that cannot be `lstat`ed for any reason counts as missing (the walk
/// goes on lexically and the caller's own open reports the problem).
struct LenientDisk<'a>(Disk<'a>);

impl Tree for LenientDisk<'_> {
    type Error = DiskError;

    fn node(&self, rel: &[u8]) -> Result<Node, DiskError> {
        disk_node(self.0.path(rel), |_| Ok(Node::Missing))
    }
}

/// Resolves `rel` inside `root`, following symlinks as if `root` were `/` (so nothing outside it
/// is ever reached). The last component is followed too. Missing components and components
/// below a non-directory are kept as written (the path need not exist).
pub fn resolve_in_root(root: &Path, rel: &str) -> io::Result<PathBuf> {
    let resolved = resolve_in_root_bytes(root, rel.as_bytes()).map_err(|e| {
        if e.raw_os_error() == Some(nix::libc::ELOOP) {
            io::Error::other(format!("too many levels of symbolic links: {rel}"))
        } else {
            e
        }
    })?;
    Ok(Disk(root).path(&resolved))
}

/// [`resolve_in_root`], giving the resolved path relative to `root` (no leading `/`, empty for
/// the root itself). Too many symlinks is `ELOOP`.
pub fn resolve_in_root_bytes(root: &Path, rel: &[u8]) -> io::Result<Vec<u8>> {
    let disk = LenientDisk(Disk(root));
    let mut walk = Walk::new(rel);
    loop {
        match walk.advance(&disk, true).map_err(|e| e.source)? {
            Step::Done => return Ok(walk.path),
            Step::Missing(c) | Step::NotDir(c) => walk.enter(&c),
            Step::Loop => return Err(io::Error::from_raw_os_error(nix::libc::ELOOP)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::convert::Infallible;
    use std::os::unix::fs::symlink;

    use super::*;

    /// A tree in memory: path → node.
    struct Map(BTreeMap<String, Node>);

    impl Tree for Map {
        type Error = Infallible;

        fn node(&self, rel: &[u8]) -> Result<Node, Infallible> {
            Ok(self.0.get(&*String::from_utf8_lossy(rel)).cloned().unwrap_or(Node::Missing))
        }
    }

    fn map(entries: &[(&str, Node)]) -> Map {
        Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn link(t: &str) -> Node {
        Node::Symlink(t.as_bytes().to_vec())
    }

    /// Resolves fully (`last_any`), returning the path or where it stopped.
    fn resolve(tree: &Map, path: &str) -> Result<String, Step> {
        let mut w = Walk::new(path.as_bytes());
        match w.advance(tree, true) {
            Ok(Step::Done) => Ok(String::from_utf8_lossy(w.resolved()).into_owned()),
            Ok(step) => Err(step),
            Err(never) => match never {},
        }
    }

    #[test]
    fn dot_dot_stops_at_the_root() {
        let t = map(&[("a", Node::Dir), ("a/b", Node::Dir), ("etc", Node::Dir)]);
        assert_eq!(resolve(&t, "../../etc").as_deref(), Ok("etc"));
        assert_eq!(resolve(&t, "a/b/../../../../etc").as_deref(), Ok("etc"));
        assert_eq!(resolve(&t, "/a/./b/..").as_deref(), Ok("a"));
        assert_eq!(resolve(&t, "..").as_deref(), Ok(""));
    }

    #[test]
    fn relative_symlinks_cannot_climb_out() {
        let t = map(&[("a", Node::Dir), ("a/up", link("../../../../..")), ("etc", Node::Dir)]);
        assert_eq!(resolve(&t, "a/up/etc").as_deref(), Ok("etc"));
        assert_eq!(resolve(&t, "a/up").as_deref(), Ok(""));
    }

    #[test]
    fn absolute_symlinks_restart_at_the_root() {
        let t = map(&[
            ("a", Node::Dir),
            ("a/b", Node::Dir),
            ("a/b/abs", link("/etc")),
            ("etc", Node::Dir),
            ("etc/passwd", Node::Other),
        ]);
        assert_eq!(resolve(&t, "a/b/abs/passwd").as_deref(), Ok("etc/passwd"));
        assert_eq!(resolve(&t, "a/b/abs/../a").as_deref(), Ok("a"));
    }

    #[test]
    fn the_last_component_is_followed() {
        let t = map(&[("usr", Node::Dir), ("usr/lib", Node::Dir), ("lib", link("usr/lib"))]);
        assert_eq!(resolve(&t, "lib").as_deref(), Ok("usr/lib"));
        let t = map(&[("f", Node::Other), ("l", link("f"))]);
        assert_eq!(resolve(&t, "l").as_deref(), Ok("f"));
        let mut w = Walk::new(b"l");
        assert_eq!(w.advance(&t, false), Ok(Step::NotDir(b"f".to_vec())));
    }

    #[test]
    fn loops_stop_after_forty_hops() {
        let t = map(&[("a", link("b")), ("b", link("a"))]);
        assert_eq!(resolve(&t, "a"), Err(Step::Loop));
        // A chain of exactly MAX_SYMLINK_HOPS links resolves; one more does not.
        let chain = |links: u32| {
            let mut t = Map((0..links).map(|i| (format!("l{i}"), link(&format!("l{}", i + 1)))).collect());
            t.0.insert(format!("l{links}"), Node::Dir);
            t
        };
        assert_eq!(resolve(&chain(MAX_SYMLINK_HOPS), "l0").as_deref(), Ok("l40"));
        assert_eq!(resolve(&chain(MAX_SYMLINK_HOPS + 1), "l0"), Err(Step::Loop));
        let t = map(&[("l0", link("l0/x"))]);
        assert_eq!(resolve(&t, "l0"), Err(Step::Loop));
    }

    #[test]
    fn missing_and_non_directories_stop_the_walk() {
        let t = map(&[("f", Node::Other), ("d", Node::Dir)]);
        let mut w = Walk::new(b"d/x/y");
        assert_eq!(w.advance(&t, true), Ok(Step::Missing(b"x".to_vec())));
        assert_eq!(w.resolved(), b"d");
        w.enter(b"x");
        assert_eq!(w.advance(&t, true), Ok(Step::Missing(b"y".to_vec())));
        let mut w = Walk::new(b"f/y");
        assert_eq!(w.advance(&t, true), Ok(Step::NotDir(b"f".to_vec())));
        assert!(!w.is_done());
        assert_eq!(w.child(b"f"), b"f");
    }

    #[test]
    fn on_disk_symlinks_stay_inside_the_root() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc"))?;
        std::fs::write(root.join("etc/passwd"), "x")?;
        symlink("/", root.join("rootlink"))?;
        symlink("../../../..", root.join("etc/up"))?;
        symlink("/etc/passwd", root.join("pw"))?;
        symlink("loop", root.join("loop"))?;
        std::fs::write(root.join("file"), "x")?;
        assert_eq!(resolve_in_root(root, "rootlink/etc/passwd")?, root.join("etc/passwd"));
        assert_eq!(resolve_in_root(root, "etc/up/etc")?, root.join("etc"));
        assert_eq!(resolve_in_root(root, "../../pw")?, root.join("etc/passwd"));
        assert_eq!(resolve_in_root(root, "missing/../etc")?, root.join("etc"));
        assert_eq!(resolve_in_root(root, "file/below")?, root.join("file/below"));
        assert_eq!(resolve_in_root(root, "")?, root.join(""));
        let err = resolve_in_root(root, "loop").err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("too many levels of symbolic links: loop"));
        Ok(())
    }

    #[test]
    fn strict_disk_reports_missing_and_dirs() -> Result<(), DiskError> {
        let io = |source| DiskError { op: "set up", path: PathBuf::new(), source };
        let dir = tempfile::tempdir().map_err(io)?;
        std::fs::create_dir(dir.path().join("d")).map_err(io)?;
        std::fs::write(dir.path().join("f"), "x").map_err(io)?;
        let disk = Disk(dir.path());
        assert_eq!(disk.node(b"d")?, Node::Dir);
        assert_eq!(disk.node(b"f")?, Node::Other);
        assert_eq!(disk.node(b"nope")?, Node::Missing);
        assert_eq!(disk.node(b"f/below")?, Node::Missing);
        Ok(())
    }
}
