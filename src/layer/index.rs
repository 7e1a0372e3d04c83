//! An in-memory metadata index of an image's filesystem, built from layer tar headers alone.
//!
//! [`FsIndex::apply_tar`] reads a layer the way [`super::extract::apply_layer`] writes one (same
//! name rules, whiteouts, opaque directories, and symlinked parents resolved inside the root by
//! the same walk, [`super::rootpath`], over the index instead of the disk), so
//! after the same layers the index describes what extraction produces, without touching a disk:
//! a hard link is recorded as [`Kind::Hardlink`] carrying its target's metadata (one inode), and
//! device nodes are always recorded (the index describes the image, not a rootless extraction).
//!
//! Keys are normalised relative paths: no leading `/`, no trailing `/`, no `.` components; the
//! root is `""`. Names that are not UTF-8 are stored lossily (U+FFFD).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::convert::Infallible;
use std::io::{self, Read};
use std::ops::Bound;

use tar::EntryType;

use super::extract::{EntryName, classify, clean_components, entry_capability, entry_mtime, entry_owner};
use super::rootpath::{Node, Step, Tree, Walk};

/// What a filesystem entry is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, with its target as written.
    Symlink(String),
    /// A hard link to the (normalised, resolved) path of an earlier entry. The target is named as
    /// it was at link time (a later layer may remove or replace it); the [`Meta`] is the link's
    /// own, copied from the target then, as the two shared one inode.
    Hardlink(String),
    /// A character device (major, minor).
    Char(u32, u32),
    /// A block device (major, minor).
    Block(u32, u32),
    /// A named pipe.
    Fifo,
}

/// An entry's metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// What it is.
    pub kind: Kind,
    /// Permission bits plus setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, in seconds since the epoch (floored).
    pub mtime: i64,
    /// Content size for files and hard links to them; 0 for everything else.
    pub size: u64,
    /// A regular file's capabilities: its `security.capability` xattr, the one extended
    /// attribute a layer carries (as containerd's and moby's archives carry only it, in a PAX
    /// record), so `setcap` in a step, or a package whose install runs it, survives into the
    /// image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<Box<[u8]>>,
}

/// The extended attribute holding a file's capabilities.
pub const CAPABILITY_XATTR: &str = "security.capability";
/// Its PAX record in a layer, as Go's archive/tar names xattrs.
pub const CAPABILITY_PAX: &str = "SCHILY.xattr.security.capability";

/// The capabilities of the regular file at `path` (its `security.capability`), if it has any.
/// None also where they cannot be read (a filesystem without xattrs): there are none to keep.
pub fn read_capability(path: &std::path::Path) -> Option<Box<[u8]>> {
    match xattr::get(path, CAPABILITY_XATTR) {
        Ok(Some(v)) if !v.is_empty() => Some(v.into_boxed_slice()),
        _ => None,
    }
}

impl Meta {
    /// The entry's owner, `st_mode` and device number (a hard link is a regular file: hard links
    /// to symlinks are rare and their index entries do not say).
    pub fn owner(&self) -> super::walkdiff::Owner {
        use nix::libc::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG};
        let (kind, rdev) = match self.kind {
            Kind::File | Kind::Hardlink(_) => (S_IFREG, 0),
            Kind::Dir => (S_IFDIR, 0),
            Kind::Symlink(_) => (S_IFLNK, 0),
            Kind::Char(a, b) => (S_IFCHR, nix::sys::stat::makedev(a.into(), b.into())),
            Kind::Block(a, b) => (S_IFBLK, nix::sys::stat::makedev(a.into(), b.into())),
            Kind::Fifo => (S_IFIFO, 0),
        };
        super::walkdiff::Owner { uid: self.uid, gid: self.gid, mode: kind | self.mode, rdev }
    }

    /// A regular file of `size` bytes: `0o644`, root's, mtime 0 (what fixtures write).
    pub fn file(size: u64) -> Self {
        Meta { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, mtime: 0, size, capability: None }
    }

    /// What a directory created implicitly (a missing parent) gets: `0o755`, root, mtime 0.
    pub fn implicit_dir() -> Self {
        Meta { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0, capability: None }
    }
}

/// Why a layer could not be indexed: the same failures as applying it to a directory (the
/// path rules are shared), except that indexing touches no files, so never `Io`.
pub use super::extract::ExtractError as IndexError;

/// The metadata of every path in an image's filesystem, sorted by key. Serializable, so the
/// builder can keep the index of a layer chain instead of reading the layers again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FsIndex {
    entries: BTreeMap<String, Meta>,
    /// What the root and missing parents get (not stored: an index read back is not added to).
    #[serde(skip, default = "Meta::implicit_dir")]
    implicit: Meta,
}

impl Default for FsIndex {
    /// Same as [`FsIndex::new`]: the root is always present.
    fn default() -> Self {
        Self::new()
    }
}

/// Normalises a caller's path: `/a/b/`, `a/b`, `./a/b` and `a//b/.` are all `a/b`; `..` is
/// lexical and stops at the root.
fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Records that a layer wrote `key`, and so its ancestors.
fn mark(touched: &mut HashSet<String>, key: &str) {
    let mut k = key;
    while touched.insert(k.to_string()) && !k.is_empty() {
        k = k.rfind('/').map_or("", |i| &k[..i]);
    }
}

impl Tree for FsIndex {
    type Error = Infallible;

    /// An empty symlink target is not followed (it names nothing).
    fn node(&self, rel: &[u8]) -> Result<Node, Infallible> {
        Ok(match self.entries.get(&*String::from_utf8_lossy(rel)).map(|m| &m.kind) {
            None => Node::Missing,
            Some(Kind::Dir) => Node::Dir,
            Some(Kind::Symlink(t)) if !t.is_empty() => Node::Symlink(t.as_bytes().to_vec()),
            Some(_) => Node::Other,
        })
    }
}

/// The index as a [`Tree`] that notes every key it is asked about.
struct Recording<'a> {
    index: &'a FsIndex,
    seen: RefCell<BTreeSet<String>>,
}

impl Tree for Recording<'_> {
    type Error = Infallible;

    fn node(&self, rel: &[u8]) -> Result<Node, Infallible> {
        self.seen.borrow_mut().insert(lossy(rel));
        self.index.node(rel)
    }
}

/// Runs `walk` over the index as far as it goes.
fn advance(index: &FsIndex, walk: &mut Walk, last_any: bool) -> Step {
    let Ok(step) = walk.advance(index, last_any);
    step
}

impl FsIndex {
    /// An index holding only the root directory (`0o755`, root-owned, mtime 0).
    pub fn new() -> Self {
        Self::with_implicit_dirs(Meta::implicit_dir())
    }

    /// An empty index whose root, and every parent its entries imply, have `dir`'s metadata
    /// rather than [`Meta::implicit_dir`]'s: an archive that ADD unpacks, whose missing
    /// directories Docker's untar makes at the time of the build.
    pub fn with_implicit_dirs(dir: Meta) -> Self {
        FsIndex { entries: BTreeMap::from([(String::new(), dir.clone())]), implicit: dir }
    }

    /// Applies one uncompressed layer tar stream: same name, whiteout and opaque rules as
    /// extraction. On error the index is left unchanged.
    pub fn apply_tar(&mut self, tar_stream: impl Read) -> Result<(), IndexError> {
        let mut next = self.clone();
        let mut touched = HashSet::new();
        let mut archive = tar::Archive::new(tar_stream);
        let entries = archive.entries().map_err(|source| IndexError::Tar { path: String::new(), source })?;
        let mut last = String::new();
        for entry in entries {
            let mut entry = entry.map_err(|source| IndexError::Tar { path: last.clone(), source })?;
            let name = lossy(&entry.path_bytes());
            next.apply_entry(&mut entry, &name, &mut touched)?;
            last = name;
        }
        *self = next;
        Ok(())
    }

    /// Sets the metadata of `path` (normalised, taken literally: no symlink following). Missing
    /// parents, and parents that are not directories, become implicit directories (see
    /// [`FsIndex::with_implicit_dirs`]). A directory over a directory keeps its children; anything
    /// else replaces the old entry and its subtree.
    /// The root only takes directory metadata (anything else is ignored).
    pub fn insert(&mut self, path: &str, meta: Meta) {
        let key = normalize(path);
        if key.is_empty() {
            if meta.kind == Kind::Dir {
                self.entries.insert(key, meta);
            }
            return;
        }
        for (i, _) in key.match_indices('/') {
            let parent = &key[..i];
            if !self.entries.get(parent).is_some_and(|m| m.kind == Kind::Dir) {
                self.put(parent, self.implicit.clone());
            }
        }
        self.put(&key, meta);
    }

    /// Removes `path` and everything below it. Removing the root empties the index but keeps the
    /// root itself.
    pub fn remove(&mut self, path: &str) {
        let key = normalize(path);
        if key.is_empty() {
            self.entries.retain(|k, _| k.is_empty());
            return;
        }
        self.entries.remove(&key);
        // Children sort between `key/` and `key0` ('0' follows '/'). A range, not split_off and
        // append: those are linear in the whole index, and COPY inserts thousands of entries.
        let below: Vec<String> =
            self.entries.range(format!("{key}/")..format!("{key}0")).map(|(k, _)| k.clone()).collect();
        for k in below {
            self.entries.remove(&k);
        }
    }

    /// The metadata at `path` (normalised, symlinks not followed).
    pub fn get(&self, path: &str) -> Option<&Meta> {
        self.entries.get(&normalize(path))
    }

    /// Whether `path` names an existing directory, following symlinks inside the root (what
    /// COPY's and WORKDIR's "is the destination a directory" rules ask).
    pub fn is_dir(&self, path: &str) -> bool {
        self.resolve(path).and_then(|p| self.get(&p).map(|m| m.kind == Kind::Dir)).unwrap_or(false)
    }

    /// Follows symlinks in every component, the last included, inside the root (an absolute
    /// target starts again at the root, `..` stops there, at most
    /// [`super::rootpath::MAX_SYMLINK_HOPS`] links).
    /// Returns the key of what `path` names, if it exists.
    pub fn resolve(&self, path: &str) -> Option<String> {
        let mut w = Walk::new(path.as_bytes());
        match advance(self, &mut w, true) {
            Step::Done => Some(lossy(w.resolved())),
            _ => None,
        }
    }

    /// Where a write to `path` lands, as continuity's `fs.RootPath` (BuildKit's copy and mkdir)
    /// has it: symlinks followed inside the root in every component that exists, the last
    /// included; from a component that is missing (or no directory) on, the rest as written
    /// (`..` still steps back). `None` after too many links.
    pub fn root_path(&self, path: &str) -> Option<String> {
        let mut w = Walk::new(path.as_bytes());
        loop {
            match advance(self, &mut w, true) {
                Step::Done => return Some(lossy(w.resolved())),
                Step::Missing(c) | Step::NotDir(c) => w.enter(&c),
                Step::Loop => return None,
            }
        }
    }

    /// [`resolve`](FsIndex::resolve), also putting into `seen` every key the walk looked at:
    /// the directories passed and the symlinks followed, which a tree must hold for `path` to
    /// resolve in it as it does here.
    pub fn resolve_recording(&self, path: &str, seen: &mut BTreeSet<String>) -> Option<String> {
        let recording = Recording { index: self, seen: RefCell::new(std::mem::take(seen)) };
        let mut w = Walk::new(path.as_bytes());
        let Ok(step) = w.advance(&recording, true);
        *seen = recording.seen.into_inner();
        match step {
            Step::Done => Some(lossy(w.resolved())),
            _ => None,
        }
    }

    /// The direct children of `dir` (normalised, not followed), sorted by name.
    pub fn children<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a Meta)> + use<'a> {
        let key = normalize(dir);
        let prefix = if key.is_empty() { key } else { format!("{key}/") };
        let mut cursor =
            if prefix.is_empty() { Bound::Excluded(String::new()) } else { Bound::Included(prefix.clone()) };
        std::iter::from_fn(move || {
            loop {
                let (k, m) = self.entries.range::<String, _>((cursor.clone(), Bound::Unbounded)).next()?;
                let rest = k.strip_prefix(prefix.as_str())?;
                match rest.find('/') {
                    None => {
                        cursor = Bound::Excluded(k.clone());
                        return Some((k.as_str(), m));
                    }
                    // A grandchild: skip the whole subtree of that child (`child/` < `child0`).
                    Some(i) => cursor = Bound::Included(format!("{prefix}{}0", &rest[..i])),
                }
            }
        })
    }

    /// `dir` itself (normalised, not followed) and everything below it, in key order: parents
    /// come before their children. Empty when `dir` does not exist.
    pub fn walk<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a str, &'a Meta)> + use<'a> {
        let key = normalize(dir);
        let below = if key.is_empty() {
            (Bound::Excluded(String::new()), Bound::Unbounded)
        } else {
            (Bound::Included(format!("{key}/")), Bound::Excluded(format!("{key}0")))
        };
        let me = self.entries.get_key_value(&key);
        let below = self.entries.range::<String, _>(below).filter(move |_| me.is_some());
        me.into_iter().chain(below).map(|(k, m)| (k.as_str(), m))
    }

    /// How many entries there are below the root (the root itself is not counted).
    pub fn len(&self) -> usize {
        self.entries.len().saturating_sub(1)
    }

    /// Whether the index holds nothing but the root.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces the entry at `key` (a directory over a directory keeps its children).
    fn put(&mut self, key: &str, meta: Meta) {
        let dir_over_dir =
            meta.kind == Kind::Dir && self.entries.get(key).is_some_and(|m| m.kind == Kind::Dir);
        if !dir_over_dir {
            self.remove(key);
        }
        self.entries.insert(key.to_string(), meta);
    }

    /// Resolves directory components like extraction does: missing ones are created (`create`)
    /// or end the walk with `None`, as does a non-directory when not creating.
    fn resolve_dir(
        &mut self,
        comps: &[&[u8]],
        create: bool,
        name: &str,
        touched: &mut HashSet<String>,
    ) -> Result<Option<String>, IndexError> {
        let mut w = Walk::from_components(comps.iter().copied());
        loop {
            match advance(self, &mut w, false) {
                Step::Done => return Ok(Some(lossy(w.resolved()))),
                Step::Loop => return Err(IndexError::SymlinkLoop { path: name.to_string() }),
                Step::NotDir(c) if create => {
                    let parent = lossy(&w.child(&c));
                    return Err(IndexError::NotADirectory { path: name.to_string(), parent });
                }
                Step::Missing(c) if create => {
                    let key = lossy(&w.child(&c));
                    self.entries.insert(key.clone(), self.implicit.clone());
                    mark(touched, &key);
                    w.enter(&c);
                }
                _ => return Ok(None),
            }
        }
    }

    /// Removes what the lower layers put at `key`, keeping what this layer wrote.
    fn remove_lower(&mut self, key: &str, touched: &HashSet<String>) {
        let Some(meta) = self.entries.get(key) else { return };
        if !touched.contains(key) {
            self.remove(key);
        } else if meta.kind == Kind::Dir {
            let kids: Vec<String> = self.children(key).map(|(k, _)| k.to_string()).collect();
            for k in kids {
                self.remove_lower(&k, touched);
            }
        }
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        touched: &mut HashSet<String>,
    ) -> Result<(), IndexError> {
        let ty = entry.header().entry_type();
        if ty.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let unsafe_path = |reason| IndexError::UnsafePath { path: name.to_string(), reason };
        match classify(&raw).map_err(unsafe_path)? {
            EntryName::AufsMeta => {}
            EntryName::Whiteout { dir, name: victim } => {
                if let Some(dir) = self.resolve_dir(&dir, false, name, touched)? {
                    self.remove_lower(&join(&dir, &lossy(victim)), touched);
                }
            }
            EntryName::Opaque(dir) => {
                if let Some(dir) = self.resolve_dir(&dir, false, name, touched)? {
                    let kids: Vec<String> = self.children(&dir).map(|(k, _)| k.to_string()).collect();
                    for k in kids {
                        self.remove_lower(&k, touched);
                    }
                }
            }
            EntryName::Root => {
                if ty != EntryType::Directory {
                    return Err(unsafe_path("the root entry must be a directory"));
                }
                let meta = meta_of(entry, Kind::Dir, name)?;
                self.entries.insert(String::new(), meta);
            }
            EntryName::Path(mut comps) => {
                let Some(last) = comps.pop() else { return Ok(()) };
                let parent = self.resolve_dir(&comps, true, name, touched)?.unwrap_or_default();
                let key = join(&parent, &lossy(last));
                let invalid =
                    |reason: &str| IndexError::InvalidEntry { path: name.to_string(), reason: reason.into() };
                let dev = |r: io::Result<Option<u32>>| {
                    r.ok().flatten().ok_or_else(|| invalid("bad device numbers"))
                };
                let kind = match ty {
                    EntryType::Directory => Kind::Dir,
                    EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
                    EntryType::Symlink => match entry.link_name_bytes() {
                        Some(t) if !t.is_empty() && !t.contains(&0) => Kind::Symlink(lossy(&t)),
                        _ => return Err(invalid("symlink with an empty target or a NUL byte")),
                    },
                    EntryType::Char => {
                        Kind::Char(dev(entry.header().device_major())?, dev(entry.header().device_minor())?)
                    }
                    EntryType::Block => {
                        Kind::Block(dev(entry.header().device_major())?, dev(entry.header().device_minor())?)
                    }
                    EntryType::Fifo => Kind::Fifo,
                    EntryType::Link => {
                        let target = self.hardlink_target(entry, name, touched)?;
                        if target != key {
                            let mut meta =
                                self.entries.get(&target).cloned().unwrap_or_else(Meta::implicit_dir);
                            meta.kind = Kind::Hardlink(target);
                            self.put(&key, meta);
                        }
                        mark(touched, &key);
                        return Ok(());
                    }
                    _ => return Ok(()),
                };
                let meta = meta_of(entry, kind, name)?;
                self.put(&key, meta);
                mark(touched, &key);
            }
        }
        Ok(())
    }

    /// Resolves and checks a hard link's target: existing, a file, hard link or symlink.
    fn hardlink_target<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        name: &str,
        touched: &mut HashSet<String>,
    ) -> Result<String, IndexError> {
        let raw = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
        let shown = lossy(&raw);
        let bad = |reason| IndexError::BadHardlink { path: name.to_string(), target: shown.clone(), reason };
        let mut comps = clean_components(&raw)
            .map_err(|reason| IndexError::UnsafePath { path: shown.clone(), reason })?;
        let last = comps.pop().ok_or_else(|| bad("the target is the root directory"))?;
        let dir = self
            .resolve_dir(&comps, false, name, touched)?
            .ok_or_else(|| bad("the target does not exist"))?;
        let target = join(&dir, &lossy(last));
        match self.entries.get(&target).map(|m| &m.kind) {
            None => Err(bad("the target does not exist")),
            Some(Kind::File | Kind::Hardlink(_) | Kind::Symlink(_)) => Ok(target),
            Some(_) => Err(bad("the target is not a regular file or symlink")),
        }
    }
}

/// Metadata from an entry's header (PAX owner, size and mtime included).
fn meta_of<R: Read>(entry: &mut tar::Entry<'_, R>, kind: Kind, name: &str) -> Result<Meta, IndexError> {
    let invalid = |reason: String| IndexError::InvalidEntry { path: name.to_string(), reason };
    let header = entry.header();
    let mode = header.mode().map_err(|e| invalid(e.to_string()))? & 0o7777;
    let (uid, gid) = entry_owner(header).map_err(invalid)?;
    let size = match header.entry_type() {
        _ if kind != Kind::File => 0,
        EntryType::GNUSparse => header.size().map_err(|e| invalid(e.to_string()))?,
        _ => entry.size(),
    };
    let (mtime, _) = entry_mtime(entry).map_err(|e| invalid(e.to_string()))?;
    let capability = if kind == Kind::File { entry_capability(entry) } else { None };
    Ok(Meta { kind, mode, uid, gid, mtime, size, capability })
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
