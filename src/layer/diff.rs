//! Turning an overlayfs upper directory into layer entries: after a RUN step the overlay's
//! `upperdir` *is* the layer, once its overlay-specific encodings are translated to OCI ones.
//!
//! - A character device 0/0 is an overlay whiteout: it becomes `<dir>/.wh.<name>`, an empty
//!   regular file (mode 0, owned 0:0, mtime = the clamp or 0). The kernel hard-links all its
//!   whiteouts to one inode (with a spare in the workdir), so whiteouts are recognised *before*
//!   hard links are grouped and never become [`Kind::Hardlink`] entries.
//! - A directory whose `trusted.overlay.opaque` (root mounts) or `user.overlay.opaque` (`userxattr`
//!   mounts) is `y` hides everything below it in the lower layers. Both namespaces are accepted
//!   whichever [`XattrPrefix`] is configured; the value `x` (recent kernels: "holds xwhiteouts",
//!   made by tools for *lower* layers) is not opaque. Without the lower layers its entry is
//!   followed by `<dir>/.wh..wh..opq`. Given them ([`DiffOptions::lowers`]), hako writes what
//!   BuildKit's overlay differ writes: nothing more for a directory the lower layers lack (the
//!   kernel marks every new directory opaque), else a `.wh.<name>` for each name the lower layers
//!   hold there and the step's directory lacks, and so on down every directory inside it.
//! - Hard links between paths of the upper directory become one file (the first path in layer
//!   order holds the data) and [`Kind::Hardlink`] entries naming it. A copied-up file whose lower
//!   twin was not copied up is a plain file (overlay with `index=off` breaks such links).
//! - Every other entry keeps its `lstat` metadata (mode with setuid/setgid/sticky, numeric owner,
//!   mtime floored to seconds and clamped) and its capabilities; other xattrs (`impure`, `origin`,
//!   `uuid`…, and the step's own) are not carried.
//! - Given the lower layers, an entry that is the one they show there ([`same_dirent`], BuildKit's
//!   `sameDirent`: only copied up, by a no-op `chmod` or `chown`, or a directory whose only change
//!   is its mtime) is left out, as BuildKit's overlay differ leaves it out, unless it is the
//!   parent of a written entry or a hard link of one.
//!
//! The overlay must be mounted with `redirect_dir=off,metacopy=off,index=off` (as root; `userxattr`
//! implies `redirect_dir=nofollow`, which creates no redirects): a directory carrying an
//! `overlay.redirect` xattr, or a file carrying `overlay.metacopy`, keeps its content in a lower
//! layer, so it fails the diff with [`DiffError::Unsupported`] rather than silently losing data.
//!
//! Not part of the layer: the upper directory itself (its metadata is the sandbox's, not the
//! step's, so the base image's root stays as it was), sockets (skipped and counted: no layer
//! format carries them), and the overlay `workdir` (the kernel refuses a workdir inside the
//! upperdir, so it is never met when walking `upper` alone — never walk their common parent). A
//! name starting with `.wh.` cannot be represented in an OCI layer and fails the diff, as do
//! names that are not UTF-8 and a filesystem mounted inside the upper directory.
//!
//! Entries come out in [`super::tar_order`] (BuildKit's, as in the COPY layers: parents before
//! children), so the same upper directory always gives the same layer.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::index::{Kind, Meta};
use super::pyc::Sources;
use super::writer::LayerWriter;

/// The OCI whiteout prefix.
const WH_PREFIX: &str = ".wh.";
/// The OCI opaque-directory marker.
pub(super) const WH_OPAQUE: &str = ".wh..wh..opq";

/// Which xattr namespace the overlay used for its private attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrPrefix {
    /// `trusted.overlay.*`: a mount made with `CAP_SYS_ADMIN` in the initial user namespace.
    #[default]
    Trusted,
    /// `user.overlay.*`: a mount made with `userxattr` (rootless, in a user namespace).
    User,
}

impl XattrPrefix {
    /// The namespace with its trailing dot: `trusted.overlay.` or `user.overlay.`.
    pub fn namespace(self) -> &'static str {
        match self {
            XattrPrefix::Trusted => "trusted.overlay.",
            XattrPrefix::User => "user.overlay.",
        }
    }

    fn other(self) -> XattrPrefix {
        match self {
            XattrPrefix::Trusted => XattrPrefix::User,
            XattrPrefix::User => XattrPrefix::Trusted,
        }
    }
}

/// Ownership overrides: the `(uid, gid)` to record for a path (relative, no leading `/`), or
/// `None` to keep what `lstat` says.
pub type OwnershipFn<'a> = &'a dyn Fn(&str) -> Option<(u32, u32)>;

/// How to read an upper directory.
#[derive(Clone, Copy, Default)]
pub struct DiffOptions<'a> {
    /// `SOURCE_DATE_EPOCH`: no mtime is later than this; whiteouts get exactly this (else 0).
    pub clamp: Option<i64>,
    /// Which overlay xattr namespace marks opaque directories (the other is accepted too).
    pub xattr_prefix: XattrPrefix,
    /// Owners to record instead of the ones on disk (a rootless build records the ids a step
    /// asked for but could not set). Asked for every entry except whiteouts and the second and
    /// later paths of a hard link, which take the first path's metadata.
    pub ownership: Option<OwnershipFn<'a>>,
    /// The step's lower directories, top first (overlay snapshots: whiteouts as 0/0 devices,
    /// opaque directories by xattr). Given, an opaque directory gets no `.wh..wh..opq`, as with
    /// BuildKit's overlay differ, which compares with the base: none at all when the lower layers
    /// have no directory there (the kernel marks opaque every directory a step creates inside one
    /// that the lower layers have, to spare lookups below, so a RUN that installs packages would
    /// otherwise carry one marker per new directory), else one whiteout per name they hold there
    /// that the step's directory does not, in it and in every directory below it. When the lower
    /// layers cannot be read there, the marker is written. `None`: every opaque directory gets
    /// its marker.
    pub lowers: Option<&'a [PathBuf]>,
}

impl fmt::Debug for DiffOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiffOptions")
            .field("clamp", &self.clamp)
            .field("xattr_prefix", &self.xattr_prefix)
            .field("ownership", &self.ownership.map(|_| "Fn"))
            .field("lowers", &self.lowers)
            .finish()
    }
}

/// One layer entry: its path in the layer, its metadata (mtime already clamped), and for a
/// regular file holding data, the file in the upper directory to read it from.
pub type DiffEntry = (String, Meta, Option<PathBuf>);

/// What [`write_diff`] wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiffSummary {
    /// Entries written, whiteouts and opaque markers included.
    pub entries: u64,
    /// `.wh.<name>` entries (opaque markers not included).
    pub whiteouts: u64,
    /// Directories marked opaque (one `.wh..wh..opq` each; see [`DiffOptions::lowers`]).
    pub opaque_dirs: u64,
    /// [`Kind::Hardlink`] entries.
    pub hardlinks: u64,
    /// Sockets left out of the layer.
    pub skipped_sockets: u64,
    /// Entries left out as the lower layers' own, only copied up (see [`same_dirent`]).
    pub unchanged: u64,
}

/// Why an upper directory could not be turned into a layer. Each variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A filesystem operation on the upper directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"read directory"`, `"lstat"`…).
        op: &'static str,
        /// The file, under the upper directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// A file name (or symlink target) that is not UTF-8: layer entries are named by `str`.
    #[error("{}: name or symlink target is not UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A name starting with `.wh.`, which every layer reader takes for a whiteout.
    #[error("{}: names starting with `.wh.` are reserved for whiteouts and cannot be stored in a layer", path.display())]
    ReservedName {
        /// The file.
        path: PathBuf,
    },
    /// An overlay xattr meaning part of the entry lives in a lower layer (the mount had
    /// `redirect_dir` or `metacopy` on).
    #[error("{}: has overlay xattr `{xattr}`; mount the overlay with redirect_dir=off,metacopy=off", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The xattr found.
        xattr: String,
    },
    /// Another filesystem is mounted inside the upper directory.
    #[error("{}: another filesystem is mounted here", path.display())]
    MountPoint {
        /// The mount point.
        path: PathBuf,
    },
    /// Adding an entry to the layer failed (reading its content or writing the blob).
    #[error("writing layer entry {path:?}: {source}")]
    Write {
        /// The entry's path in the layer.
        path: String,
        /// The error.
        source: io::Error,
    },
}

type Result<T, E = DiffError> = std::result::Result<T, E>;

pub(super) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DiffError + 'a {
    move |source| DiffError::Io { op, path: path.to_path_buf(), source }
}

/// Walks `upper` and writes its entries (see the module docs) to `writer`, in layer order.
pub fn write_diff(upper: &Path, writer: &mut LayerWriter, opts: &DiffOptions) -> Result<DiffSummary> {
    let (entries, summary) = collect(upper, opts)?;
    write_entries(
        entries.iter().map(|(path, meta, source)| (path.as_str(), meta, source.as_deref())),
        writer,
    )?;
    Ok(summary)
}

/// Writes layer entries in the order given; a regular file's data is read from its path (never
/// through a symlink put in its place since the walk).
pub(super) fn write_entries<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a Meta, Option<&'a Path>)>,
    writer: &mut LayerWriter,
) -> Result<()> {
    let entries: Vec<(&str, &Meta, Option<&Path>)> = entries.into_iter().collect();
    let pycs = Sources::of(entries.iter().copied(), writer.clamp());
    for (path, meta, source) in entries {
        let written = match source {
            Some(src) => {
                let mut file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(src)
                    .map_err(io_err("open", src))?;
                pycs.content(path, &mut file).and_then(|mut r| writer.add(path, meta, Some(&mut r)))
            }
            None => writer.add(path, meta, None),
        };
        written.map_err(|source| DiffError::Write { path: path.to_string(), source })?;
    }
    Ok(())
}

/// The entries [`write_diff`] would write, in order: path in the layer, metadata (mtime already
/// clamped), and for regular files holding data the file to read it from.
pub fn diff_entries(upper: &Path, opts: &DiffOptions) -> Result<Vec<DiffEntry>> {
    Ok(collect(upper, opts)?.0)
}

/// One entry found by the walk, before hard links are resolved.
struct Found {
    path: String,
    meta: Meta,
    source: Option<PathBuf>,
    /// `(dev, ino)` of a regular file or symlink with more than one link.
    inode: Option<(u64, u64)>,
    /// A whiteout or opaque marker (fixed metadata, no ownership override).
    marker: bool,
    /// The lower layers show this very entry there ([`same_dirent`]): only copied up, it is
    /// written only as the parent of an entry that is.
    same: bool,
}

fn collect(upper: &Path, opts: &DiffOptions) -> Result<(Vec<DiffEntry>, DiffSummary)> {
    let root = fs::symlink_metadata(upper).map_err(io_err("lstat", upper))?;
    if !root.is_dir() {
        return Err(io_err("open upper directory", upper)(io::Error::from_raw_os_error(nix::libc::ENOTDIR)));
    }
    let mut summary = DiffSummary::default();
    let mut found = Vec::new();
    // Directories that replace a lower directory whole (an opaque one, and every directory inside
    // it), and for each the names the lower layers hold there.
    let mut replaced: HashSet<String> = HashSet::new();
    let mut hidden: Vec<(String, BTreeSet<String>)> = Vec::new();
    // Directories of the step the lower layers do not show (see `lower_entry`).
    let mut new_dirs: HashSet<String> = HashSet::new();
    walk(upper, |rel, name, abs, md| {
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            found.push(marker(join(rel, &format!("{WH_PREFIX}{name}")), opts.clamp));
            summary.whiteouts += 1;
            return Ok(false);
        }
        if name.starts_with(WH_PREFIX) {
            return Err(DiffError::ReservedName { path: abs.to_path_buf() });
        }
        if md.dev() != root.dev() {
            return Err(DiffError::MountPoint { path: abs.to_path_buf() });
        }
        let path = join(rel, name);
        let mut source = None;
        let kind = if ft.is_dir() {
            let opaque = check_xattrs(abs, opts.xattr_prefix)?;
            let below = match opts.lowers {
                None if opaque => Below::Unsure,
                Some(lowers) if opaque || replaced.contains(rel) => below(lowers, &path, true),
                _ => Below::Nothing,
            };
            match below {
                Below::Nothing => {}
                Below::Unsure => {
                    found.push(marker(join(&path, WH_OPAQUE), opts.clamp));
                    summary.opaque_dirs += 1;
                }
                Below::Dir(names) => {
                    replaced.insert(path.clone());
                    hidden.push((path.clone(), names));
                }
            }
            Kind::Dir
        } else if ft.is_file() {
            check_xattrs(abs, opts.xattr_prefix)?;
            source = Some(abs.to_path_buf());
            Kind::File
        } else if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(io_err("read link", abs))?;
            let target = target.into_os_string().into_string();
            Kind::Symlink(target.map_err(|_| DiffError::NotUtf8 { path: abs.to_path_buf() })?)
        } else if let Some(node) = node_kind(md.mode(), md.rdev()) {
            node
        } else {
            summary.skipped_sockets += 1;
            return Ok(false);
        };
        let linkable = matches!(kind, Kind::File | Kind::Symlink(_)) && md.nlink() > 1;
        let inode = linkable.then(|| (md.dev(), md.ino()));
        let mtime = clamp(md.mtime(), opts.clamp);
        let size = if kind == Kind::File { md.len() } else { 0 };
        let capability = if kind == Kind::File { super::index::read_capability(abs) } else { None };
        let meta =
            Meta { kind, mode: md.mode() & 0o7777, uid: md.uid(), gid: md.gid(), mtime, size, capability };
        // Below a directory the lower layers lack, nothing is theirs: no lookup.
        let lower = match opts.lowers {
            Some(l) if !new_dirs.contains(rel) => lower_entry(l, &path),
            _ => None,
        };
        if lower.is_none() && ft.is_dir() {
            new_dirs.insert(path.clone());
        }
        // An owner the step asked for but could not set is a change the disk does not show.
        let same = lower.is_some_and(|lo| same_dirent(&lo, abs, md, meta.capability.as_deref()))
            && opts.ownership.is_none_or(|f| f(&path).is_none());
        found.push(Found { path, meta, source, inode, marker: false, same });
        Ok(md.is_dir())
    })?;
    let have: HashSet<&str> = found.iter().map(|f| f.path.as_str()).collect();
    let mut whiteouts = Vec::new();
    for (dir, names) in &hidden {
        for name in names {
            let wh = join(dir, &format!("{WH_PREFIX}{name}"));
            if !have.contains(join(dir, name).as_str()) && !have.contains(wh.as_str()) {
                whiteouts.push(marker(wh, opts.clamp));
            }
        }
    }
    summary.whiteouts += whiteouts.len() as u64;
    found.extend(whiteouts);
    // As BuildKit's differ: an entry the step only copied up (a no-op `chmod`, `chown`, a
    // directory whose only change is its mtime) is left out, unless an entry below it is written,
    // which needs it as its parent (containerd's `includeParents`), or it shares its inode with
    // one that is (a hard link made to it: continuity's walking differ writes the whole group,
    // so the link survives).
    let linked: HashSet<(u64, u64)> = found.iter().filter(|f| !f.same).filter_map(|f| f.inode).collect();
    for f in found.iter_mut().filter(|f| f.same && f.inode.is_some_and(|i| linked.contains(&i))) {
        f.same = false;
    }
    let mut parents: HashSet<String> = HashSet::new();
    for f in found.iter().filter(|f| !f.same) {
        super::add_parents(&mut parents, &f.path);
    }
    let before = found.len();
    found.retain(|f| !f.same || parents.contains(&f.path));
    summary.unchanged = (before - found.len()) as u64;
    found.sort_by(|a, b| super::tar_order(&a.path, &b.path));

    // Holders come before the other paths of their inode in layer order.
    let mut holders: HashMap<(u64, u64), (String, Meta)> = HashMap::new();
    let mut out = Vec::with_capacity(found.len());
    for Found { path, mut meta, mut source, inode, marker, .. } in found {
        if let Some((holder, held)) = inode.and_then(|i| holders.get(&i)) {
            meta = Meta { kind: Kind::Hardlink(holder.clone()), ..held.clone() };
            source = None;
            summary.hardlinks += 1;
        } else {
            if let (false, Some(f)) = (marker, opts.ownership)
                && let Some((uid, gid)) = f(&path)
            {
                (meta.uid, meta.gid) = (uid, gid);
            }
            if let Some(i) = inode {
                holders.insert(i, (path.clone(), meta.clone()));
            }
        }
        out.push((path, meta, source));
    }
    summary.entries = out.len() as u64;
    Ok((out, summary))
}

/// Walks the tree under `root` (the root itself excluded), calling `visit` with each entry's
/// parent (relative, `""` at the top), name, path and `lstat`; `visit` returns whether to go into
/// a directory. Names must be UTF-8, as in any layer.
pub(super) fn walk(
    root: &Path,
    mut visit: impl FnMut(&str, &str, &Path, &fs::Metadata) -> Result<bool>,
) -> Result<()> {
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let abs = entry.path();
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| DiffError::NotUtf8 { path: abs.clone() })?;
            let md = fs::symlink_metadata(&abs).map_err(io_err("lstat", &abs))?;
            if visit(&rel, name, &abs, &md)? && md.is_dir() {
                stack.push((abs.clone(), join(&rel, name)));
            }
        }
    }
    Ok(())
}

pub(super) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") }
}

fn clamp(mtime: i64, clamp: Option<i64>) -> i64 {
    clamp.map_or(mtime, |c| mtime.min(c))
}

/// A whiteout or opaque marker: an empty file, mode 0, owned by root, mtime = the clamp or 0.
fn marker(path: String, clamp: Option<i64>) -> Found {
    Found { path, meta: marker_meta(clamp), source: None, inode: None, marker: true, same: false }
}

/// The metadata of a whiteout or opaque marker.
pub(super) fn marker_meta(clamp: Option<i64>) -> Meta {
    Meta { kind: Kind::File, mode: 0, uid: 0, gid: 0, mtime: clamp.unwrap_or(0), size: 0, capability: None }
}

/// A device node or FIFO from `st_mode` and `st_rdev`; `None` for anything else (sockets, which
/// no layer format carries, and the kinds the callers handle themselves).
pub(super) fn node_kind(mode: u32, rdev: u64) -> Option<Kind> {
    use nix::sys::stat::{SFlag, major, minor};
    // glibc's dev_t encoding holds 32-bit majors and minors: no truncation.
    let (maj, min) = (major(rdev) as u32, minor(rdev) as u32);
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFCHR => Some(Kind::Char(maj, min)),
        SFlag::S_IFBLK => Some(Kind::Block(maj, min)),
        SFlag::S_IFIFO => Some(Kind::Fifo),
        _ => None,
    }
}

/// What the overlay of some lower layers has at a path.
#[derive(Debug, PartialEq, Eq)]
enum Below {
    /// No directory: nothing there, or a whiteout or a non-directory hides it.
    Nothing,
    /// A directory holding these names (when asked for them; else none).
    Dir(BTreeSet<String>),
    /// Not known: a lower missing, an entry unreadable, a name that is not UTF-8.
    Unsure,
}

/// What the overlay of `lowers` (top first) has at `rel`, by overlayfs's lookup: the topmost
/// layer with an entry at `rel` decides whether it is a directory; a whiteout or a non-directory
/// at `rel` or above it hides everything below, and so does an opaque directory for the layers
/// below its own. With `list`, the directory's names as the merged view shows them: every layer's
/// down to the first that is opaque there, less those a higher layer whited out.
fn below(lowers: &[PathBuf], rel: &str, list: bool) -> Below {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Below::Unsure;
    }
    let mut names = BTreeSet::new();
    let mut whited = HashSet::new();
    let mut dir = false;
    for lower in lowers {
        if !lower.is_dir() {
            return Below::Unsure;
        }
        let mut p = lower.clone();
        let mut hides_below = false;
        let mut here = true;
        for part in &parts {
            p.push(part);
            let md = match fs::symlink_metadata(&p) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    here = false;
                    break;
                }
                Err(_) => return Below::Unsure,
            };
            if !md.is_dir() {
                // A whiteout, or a non-directory: hides `rel` in this layer and below.
                return if dir { Below::Dir(names) } else { Below::Nothing };
            }
            hides_below |= is_opaque(&p);
        }
        if here {
            if !list {
                return Below::Dir(names);
            }
            dir = true;
            let Ok(entries) = fs::read_dir(&p) else { return Below::Unsure };
            for entry in entries {
                let Ok(entry) = entry else { return Below::Unsure };
                let Ok(name) = entry.file_name().into_string() else { return Below::Unsure };
                let Ok(md) = entry.metadata() else { return Below::Unsure };
                if md.file_type().is_char_device() && md.rdev() == 0 {
                    whited.insert(name);
                } else if !whited.contains(&name) {
                    names.insert(name);
                }
            }
        }
        if hides_below {
            break;
        }
    }
    if dir { Below::Dir(names) } else { Below::Nothing }
}

/// The entry the overlay of `lowers` (top first) shows at `rel`, with its `lstat`, by overlayfs's
/// lookup: the topmost layer holding `rel` decides; a whiteout or a non-directory on the way
/// hides it and everything below; an opaque directory on the way hides the layers below it.
/// None too when a layer cannot be read there (the entry is then written, as if changed).
fn lower_entry(lowers: &[PathBuf], rel: &str) -> Option<(PathBuf, fs::Metadata)> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    'layers: for lower in lowers {
        let mut p = lower.clone();
        let mut opaque_above = false;
        for (i, part) in parts.iter().enumerate() {
            p.push(part);
            let md = match fs::symlink_metadata(&p) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !opaque_above => continue 'layers,
                Err(_) => return None,
            };
            if md.file_type().is_char_device() && md.rdev() == 0 {
                return None; // whited out
            }
            if i + 1 == parts.len() {
                return Some((p, md));
            }
            if !md.is_dir() {
                return None;
            }
            opaque_above |= is_opaque(&p);
        }
    }
    None
}

/// Whether the upper entry at `up` (`lstat` `up_md`, capabilities `up_cap` as read for its
/// entry) is the lower one `lo` as it was, by BuildKit's `sameDirent`: the same type, mode,
/// owner, device number and capabilities; for all but directories the same size and mtime, and
/// when both mtimes have no nanoseconds (they may have been truncated) the same symlink target or
/// content. Hand-written: what BuildKit's differ leaves out is what makes its layers.
fn same_dirent(lo: &(PathBuf, fs::Metadata), up: &Path, up_md: &fs::Metadata, up_cap: Option<&[u8]>) -> bool {
    let (lo, lo_md) = lo;
    if (lo_md.mode(), lo_md.uid(), lo_md.gid(), lo_md.rdev())
        != (up_md.mode(), up_md.uid(), up_md.gid(), up_md.rdev())
    {
        return false;
    }
    let is_file = lo_md.file_type().is_file();
    if is_file && super::index::read_capability(lo).as_deref() != up_cap {
        return false;
    }
    if lo_md.is_dir() {
        return true;
    }
    if lo_md.len() != up_md.len() || lo_md.mtime() != up_md.mtime() {
        return false;
    }
    if lo_md.mtime_nsec() != 0 || up_md.mtime_nsec() != 0 {
        return lo_md.mtime_nsec() == up_md.mtime_nsec();
    }
    if lo_md.file_type().is_symlink() {
        return matches!((fs::read_link(lo), fs::read_link(up)), (Ok(a), Ok(b)) if a == b);
    }
    lo_md.len() == 0 || (is_file && same_content(lo, up))
}

/// Whether two files hold the same bytes (false when either cannot be read).
fn same_content(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else { return false };
    let (mut ba, mut bb) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        let Ok(n) = fa.read(&mut ba) else { return false };
        if n == 0 {
            return matches!(fb.read(&mut bb[..1]), Ok(0));
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// Whether a lower directory is opaque (`opaque=y` in either namespace).
fn is_opaque(dir: &Path) -> bool {
    [XattrPrefix::Trusted, XattrPrefix::User]
        .iter()
        .any(|ns| matches!(xattr::get(dir, format!("{}opaque", ns.namespace())), Ok(Some(v)) if v == b"y"))
}

/// Reads the overlay xattrs of a directory or file: fails on `redirect` or `metacopy` in the
/// configured namespace, returns whether it is opaque (`opaque=y` in either namespace).
fn check_xattrs(path: &Path, prefix: XattrPrefix) -> Result<bool> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => return Ok(false),
        Err(e) => return Err(io_err("list xattrs of", path)(e)),
    };
    let mut opaque = false;
    for name in names {
        let Some(name) = name.to_str() else { continue };
        for (ns, own) in [(prefix, true), (prefix.other(), false)] {
            let Some(attr) = name.strip_prefix(ns.namespace()) else { continue };
            if own && (attr == "redirect" || attr == "metacopy") {
                return Err(DiffError::Unsupported { path: path.to_path_buf(), xattr: name.to_string() });
            }
            if attr == "opaque" {
                let value = xattr::get(path, name).map_err(io_err("read xattr of", path))?;
                opaque |= value.as_deref() == Some(b"y");
            }
        }
    }
    Ok(opaque)
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
