//! Applying an OCI image layer (an uncompressed tar changeset) onto a directory, safely.
//!
//! Follows the image-spec's "Applying Changesets" plus what Docker and containerd do in practice:
//! an entry replaces whatever is at its path (a directory over a directory only updates metadata),
//! `.wh.NAME` removes `NAME` from the lower layers, `.wh..wh..opq` empties a directory of everything
//! the lower layers put there, and directory metadata is applied last, deepest first.
//!
//! Nothing is ever written outside `root`, whatever the archive holds. Names with a `..` component
//! are an error (a hostile layer fails the apply), and symbolic links met in *parent* components,
//! whether this layer or an earlier one made them, are resolved inside `root` as if it were the
//! filesystem root: `/x` means `root/x` and `..` stops at `root` (chroot semantics, like
//! containerd's `fs.RootPath`). So `link -> /` followed by `link/evil` writes `root/evil`. The last
//! component of an entry is never followed, and files are created with `O_EXCL | O_NOFOLLOW`.
//! Hard-link targets are resolved the same way and must be a regular file or symlink inside `root`.
//!
//! Details: whiteouts never hide what the same layer wrote (image-spec: they apply to lower layers
//! only), so an opaque marker keeps this layer's entries whether they come before or after it.
//! Missing parents are created `0o755`, root-owned (with `chown`), mtime 0, like the index's
//! implicit directories. Directories stay owner-writable (`0o700`) until the end, so a read-only
//! directory in the layer does not stop a non-root caller filling it. A hard link's own header
//! metadata is not applied (it shares the target's inode). Nothing here calls
//! `tar::Entry::unpack`: every write is made by this module.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, futimens, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use tar::EntryType;

pub use super::rootpath::MAX_SYMLINK_HOPS;
use super::rootpath::{Disk, Step, Walk};
use super::times::Times;

/// What [`apply_layer`] may do beyond writing files the caller owns.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions<'t> {
    /// Set owners from the tar headers (needs root or a user namespace that maps them); otherwise
    /// files belong to the caller.
    pub chown: bool,
    /// Create device nodes (char/block); otherwise they are skipped and counted (rootless cannot
    /// mknod).
    pub devices: bool,
    /// The real times of the layer's regular files that the clamp moved ([`Times`]), given to
    /// them instead of the headers' own.
    pub times: Option<&'t Times>,
}

/// What [`apply_layer`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Entries written: files, directories (the root's own metadata included), links, nodes.
    pub entries: u64,
    /// Whiteout entries met (`.wh.NAME` and `.wh..wh..opq`), whether or not they removed anything.
    pub whiteouts: u64,
    /// Char/block devices not created because [`ApplyOptions::devices`] was off (whatever a lower
    /// layer had at that path is still removed: the path is left empty).
    pub skipped_devices: u64,
    /// Names of entries deliberately not materialised: entry types this module does not write
    /// (volume labels, multi-volume parts, unknown type flags) and AUFS `.wh..wh.*` metadata.
    /// Hostile names are not listed here: they fail the apply with [`ExtractError::UnsafePath`].
    pub skipped_unsafe: Vec<String>,
    /// Entries [`apply_layer_selected`] was told to leave out.
    pub unselected: u64,
}

/// Why a layer could not be applied. Each variant names the entry or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The archive itself is unreadable (bad header, truncated data).
    #[error("reading layer archive at entry {path:?}: {source}")]
    Tar {
        /// The entry being read, or the last one read whole when the next header is bad.
        path: String,
        /// The reader's error.
        source: io::Error,
    },
    /// An entry name (or hard-link target) that could reach outside the root, or means nothing.
    #[error("unsafe path {path:?} in layer: {reason}")]
    UnsafePath {
        /// The name as written in the archive.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Resolving a path went through more than [`MAX_SYMLINK_HOPS`] symbolic links.
    #[error("too many levels of symbolic links resolving {path:?}")]
    SymlinkLoop {
        /// The entry name.
        path: String,
    },
    /// [`apply_layer_selected`]: an entry's path goes through a symlink the selection left out,
    /// so where it lands cannot be known from the files written.
    #[error("{path:?} goes through the symlink {link:?}, which was not selected")]
    Unselected {
        /// The entry name.
        path: String,
        /// The symlink left out.
        link: String,
    },
    /// A parent component of an entry exists and is neither a directory nor a symlink to one.
    #[error("{path:?}: parent {parent:?} is not a directory")]
    NotADirectory {
        /// The entry name.
        path: String,
        /// The offending component, relative to the root.
        parent: String,
    },
    /// A hard link whose target is missing, outside the root, or not a file or symlink.
    #[error("hard link {path:?} -> {target:?}: {reason}")]
    BadHardlink {
        /// The entry name.
        path: String,
        /// The link target as written in the archive.
        target: String,
        /// What is wrong with the target.
        reason: &'static str,
    },
    /// A header field this module cannot honour (an id over 32 bits, a link without a target…).
    #[error("invalid entry {path:?}: {reason}")]
    InvalidEntry {
        /// The entry name.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`"create"`, `"chmod"`…).
        op: &'static str,
        /// The file, under the root.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
}

/// Applies one uncompressed layer tar stream onto `root`, which must be an existing directory
/// (not a symlink).
///
/// The content is streamed entry by entry, never buffered whole. On error the root is left
/// partly updated (as with any extractor); nothing outside it has been touched.
pub fn apply_layer(
    tar_stream: impl Read,
    root: &Path,
    opts: ApplyOptions<'_>,
) -> Result<ApplyReport, ExtractError> {
    apply_layer_selected(tar_stream, root, opts, &mut Selection::new(&|_| true))
}

/// What [`apply_layer_selected`] writes, over the layers of one tree.
pub struct Selection<'k> {
    keep: &'k dyn Fn(&Path) -> bool,
    /// Symlinks left out so far, by resolved path: no later entry may go through one.
    left_out: HashSet<PathBuf>,
}

impl<'k> Selection<'k> {
    /// The entries whose resolved paths (relative to the root) `keep` accepts.
    pub fn new(keep: &'k dyn Fn(&Path) -> bool) -> Selection<'k> {
        Selection { keep, left_out: HashSet::new() }
    }
}

/// [`apply_layer`], writing only what `selection` keeps (give each layer of a tree the same
/// one): an entry other than a directory is skipped unless it accepts the entry's resolved path
/// (relative to the root), and what a lower layer left there is removed, as writing it would
/// have. Directories are always written. A caller that selects the symlinks its paths go through
/// gets those paths resolving as in the whole tree; an entry whose own path goes through a
/// symlink left out fails with [`ExtractError::Unselected`] rather than land elsewhere. That is
/// what lets a caller read a few files of a big filesystem (`COPY --from`) without writing the
/// rest.
pub fn apply_layer_selected(
    tar_stream: impl Read,
    root: &Path,
    opts: ApplyOptions<'_>,
    selection: &mut Selection<'_>,
) -> Result<ApplyReport, ExtractError> {
    match fs::symlink_metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(io_err("open root", root, io::Error::from_raw_os_error(nix::libc::ENOTDIR))),
        Err(e) => return Err(io_err("open root", root, e)),
    }
    let mut x = Extractor {
        root,
        opts,
        selection,
        report: ApplyReport::default(),
        touched: HashSet::new(),
        dirs: HashMap::new(),
    };
    let mut archive = tar::Archive::new(tar_stream);
    let entries = archive.entries().map_err(|source| ExtractError::Tar { path: String::new(), source })?;
    let mut last = String::new();
    for entry in entries {
        let mut entry = entry.map_err(|source| ExtractError::Tar { path: last.clone(), source })?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        x.apply_entry(&mut entry, &name)?;
        last = name;
    }
    x.finish()?;
    Ok(x.report)
}

/// An entry name, classified. Shared with the index so both read layers alike.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EntryName<'a> {
    /// `.`, `./` or `/`: the root directory itself.
    Root,
    /// An ordinary entry: its components (none empty, `.` or `..`).
    Path(Vec<&'a [u8]>),
    /// `dir/.wh.NAME`: remove `dir/NAME` from the lower layers.
    Whiteout {
        /// Components of the directory.
        dir: Vec<&'a [u8]>,
        /// The name to remove.
        name: &'a [u8],
    },
    /// `dir/.wh..wh..opq`: hide everything the lower layers put in `dir`.
    Opaque(Vec<&'a [u8]>),
    /// AUFS metadata (`.wh..wh.plnk/…` and the like): not materialised.
    AufsMeta,
}

const WH_PREFIX: &[u8] = b".wh.";
const WH_META_PREFIX: &[u8] = b".wh..wh.";
const WH_OPAQUE: &[u8] = b".wh..wh..opq";

/// Splits an archive name into components: leading `/` and `./`, empty and `.` components are
/// dropped; `..`, a NUL byte or an empty name is refused.
pub(super) fn clean_components(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.is_empty() {
        return Err("empty name");
    }
    if raw.contains(&0) {
        return Err("NUL byte in name");
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("`..` component"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Classifies an archive name (see [`EntryName`]).
pub(super) fn classify(raw: &[u8]) -> Result<EntryName<'_>, &'static str> {
    let mut comps = clean_components(raw)?;
    let Some(last) = comps.pop() else { return Ok(EntryName::Root) };
    if comps.iter().any(|c| c.starts_with(WH_META_PREFIX)) {
        return Ok(EntryName::AufsMeta);
    }
    if last == WH_OPAQUE {
        return Ok(EntryName::Opaque(comps));
    }
    if last.starts_with(WH_META_PREFIX) {
        return Ok(EntryName::AufsMeta);
    }
    if let Some(name) = last.strip_prefix(WH_PREFIX) {
        return match name {
            b"" | b"." | b".." => Err("whiteout of an empty, `.` or `..` name"),
            name => Ok(EntryName::Whiteout { dir: comps, name }),
        };
    }
    comps.push(last);
    Ok(EntryName::Path(comps))
}

/// The entry's modification time as (seconds, nanoseconds): the PAX `mtime` record when there is
/// a valid one (it may be negative or fractional), else the header field.
pub(super) fn entry_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<(i64, u32)> {
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if ext.key_bytes() == b"mtime"
                && let Some(t) = parse_pax_time(ext.value_bytes())
            {
                return Ok(t);
            }
        }
    }
    let secs = entry.header().mtime()?;
    Ok((i64::try_from(secs).unwrap_or(i64::MAX), 0))
}

/// The capabilities (`security.capability`) an entry's PAX header carries, if any.
pub(super) fn entry_capability<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<Box<[u8]>> {
    let pax = entry.pax_extensions().ok()??;
    pax.flatten()
        .find(|e| e.key_bytes() == super::index::CAPABILITY_PAX.as_bytes())
        .map(|e| e.value_bytes().to_vec().into_boxed_slice())
        .filter(|v| !v.is_empty())
}

/// Parses a PAX time (`-?digits(.digits)?`) into (seconds, nanoseconds ≥ 0), flooring.
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut nanos = 0u32;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(match (neg, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    })
}

/// A header's owner, checked to fit a Linux id.
pub(super) fn entry_owner(header: &tar::Header) -> Result<(u32, u32), String> {
    let uid = header.uid().map_err(|e| e.to_string())?;
    let gid = header.gid().map_err(|e| e.to_string())?;
    match (u32::try_from(uid), u32::try_from(gid)) {
        (Ok(u), Ok(g)) => Ok((u, g)),
        _ => Err(format!("owner {uid}:{gid} does not fit 32 bits")),
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> ExtractError {
    ExtractError::Io { op, path: path.to_path_buf(), source }
}

fn unsafe_path(path: &str, reason: &'static str) -> ExtractError {
    ExtractError::UnsafePath { path: path.to_string(), reason }
}

fn invalid(path: &str, reason: impl Into<String>) -> ExtractError {
    ExtractError::InvalidEntry { path: path.to_string(), reason: reason.into() }
}

fn lstat(path: &Path) -> Result<Option<fs::Metadata>, ExtractError> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("lstat", path, e)),
    }
}

fn timespec((secs, nanos): (i64, u32)) -> TimeSpec {
    TimeSpec::new(secs, i64::from(nanos))
}

/// Sets atime and mtime of `path` without following a final symlink.
fn set_times(path: &Path, mtime: (i64, u32)) -> Result<(), ExtractError> {
    let t = timespec(mtime);
    utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| io_err("set times of", path, e.into()))
}

/// Removes whatever is at `path` (a directory recursively; symlinks are never followed).
fn remove_any(path: &Path, meta: &fs::Metadata) -> Result<(), ExtractError> {
    if meta.is_dir() {
        fs::remove_dir_all(path).map_err(|e| io_err("remove directory", path, e))
    } else {
        fs::remove_file(path).map_err(|e| io_err("remove", path, e))
    }
}

/// Deferred directory metadata, applied once every entry is written.
struct DirMeta {
    mode: u32,
    mtime: (i64, u32),
}

/// What an entry will become, decided before anything on disk changes.
enum Plan {
    Dir,
    File,
    Hardlink(PathBuf),
    Symlink(Vec<u8>),
    /// A FIFO or device node: its type and device number.
    Node(SFlag, nix::libc::dev_t),
}

/// Header fields every written entry uses.
struct Attrs {
    mode: u32,
    owner: (u32, u32),
    mtime: (i64, u32),
    /// A regular file's capabilities.
    capability: Option<Box<[u8]>>,
}

struct Extractor<'r, 's> {
    root: &'r Path,
    opts: ApplyOptions<'r>,
    /// Which entries to write (see [`apply_layer_selected`]).
    selection: &'r mut Selection<'s>,
    report: ApplyReport,
    /// Paths (relative, resolved) this layer wrote, and all their ancestors: whiteouts and opaque
    /// markers only remove what the lower layers put there.
    touched: HashSet<PathBuf>,
    /// Directory metadata to apply at the end, keyed by resolved relative path.
    dirs: HashMap<PathBuf, DirMeta>,
}

impl Extractor<'_, '_> {
    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), ExtractError> {
        let ty = entry.header().entry_type();
        if ty.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        match classify(&raw).map_err(|reason| unsafe_path(name, reason))? {
            EntryName::AufsMeta => self.report.skipped_unsafe.push(name.to_string()),
            EntryName::Whiteout { dir, name: victim } => {
                self.report.whiteouts += 1;
                if let Some(dir) = self.resolve_dir(&dir, false, name)? {
                    self.remove_lower(&dir.join(OsStr::from_bytes(victim)))?;
                }
            }
            EntryName::Opaque(dir) => {
                self.report.whiteouts += 1;
                if let Some(dir) = self.resolve_dir(&dir, false, name)? {
                    for child in self.list(&dir)? {
                        self.remove_lower(&child)?;
                    }
                }
            }
            EntryName::Root => {
                if ty != EntryType::Directory {
                    return Err(unsafe_path(name, "the root entry must be a directory"));
                }
                let a = self.attrs(entry, name)?;
                if self.opts.chown {
                    self.chown(self.root, a.owner)?;
                }
                self.dirs.insert(PathBuf::new(), DirMeta { mode: a.mode, mtime: a.mtime });
                self.report.entries += 1;
            }
            EntryName::Path(mut comps) => {
                let Some(last) = comps.pop() else { return Ok(()) };
                let parent = self
                    .resolve_dir(&comps, true, name)?
                    .ok_or_else(|| invalid(name, "parent directory could not be created"))?;
                let rel = parent.join(OsStr::from_bytes(last));
                if ty != EntryType::Directory && !(self.selection.keep)(&rel) {
                    let abs = self.root.join(&rel);
                    if let Some(meta) = lstat(&abs)? {
                        remove_any(&abs, &meta)?;
                    }
                    if ty == EntryType::Symlink {
                        self.selection.left_out.insert(rel);
                    }
                    self.report.unselected += 1;
                    return Ok(());
                }
                self.selection.left_out.remove(&rel);
                self.write_entry(entry, &rel, name)?;
            }
        }
        Ok(())
    }

    fn attrs<R: Read>(&self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Attrs, ExtractError> {
        let bad = |e: io::Error| invalid(name, e.to_string());
        let mode = entry.header().mode().map_err(bad)? & 0o7777;
        let owner = entry_owner(entry.header()).map_err(|r| invalid(name, r))?;
        let mut mtime = entry_mtime(entry).map_err(bad)?;
        let is_file = entry.header().entry_type().is_file();
        if let Some(real) = self.opts.times.filter(|_| is_file).and_then(|t| t.get(name)) {
            mtime = real;
        }
        let capability = if is_file { entry_capability(entry) } else { None };
        Ok(Attrs { mode, owner, mtime, capability })
    }

    /// Resolves directory components inside the root, following symlinks with chroot semantics
    /// ([`rootpath::Walk`]). Missing directories are created (`create`) or end the walk with
    /// `None`; so does a non-directory when not creating (a whiteout under a file has nothing to
    /// remove).
    fn resolve_dir(
        &mut self,
        comps: &[&[u8]],
        create: bool,
        name: &str,
    ) -> Result<Option<PathBuf>, ExtractError> {
        let mut walk = Walk::from_components(comps.iter().copied());
        loop {
            let step = walk.advance(&Disk(self.root), false).map_err(|e| ExtractError::Io {
                op: e.op,
                path: e.path,
                source: e.source,
            })?;
            match step {
                Step::Done => return Ok(Some(PathBuf::from(OsStr::from_bytes(walk.resolved())))),
                Step::Loop => return Err(ExtractError::SymlinkLoop { path: name.to_string() }),
                Step::NotDir(c) if create => {
                    let parent = String::from_utf8_lossy(&walk.child(&c)).into_owned();
                    return Err(ExtractError::NotADirectory { path: name.to_string(), parent });
                }
                Step::Missing(c)
                    if self.selection.left_out.contains(Path::new(OsStr::from_bytes(&walk.child(&c)))) =>
                {
                    let link = String::from_utf8_lossy(&walk.child(&c)).into_owned();
                    return Err(ExtractError::Unselected { path: name.to_string(), link });
                }
                Step::Missing(c) if create => {
                    let rel = PathBuf::from(OsStr::from_bytes(&walk.child(&c)));
                    let abs = self.root.join(&rel);
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&abs)
                        .map_err(|e| io_err("create directory", &abs, e))?;
                    if self.opts.chown {
                        self.chown(&abs, (0, 0))?;
                    }
                    self.dirs.insert(rel.clone(), DirMeta { mode: 0o755, mtime: (0, 0) });
                    self.touch(&rel);
                    walk.enter(&c);
                }
                _ => return Ok(None),
            }
        }
    }

    /// Records that this layer wrote `rel` (and so, implicitly, its ancestors).
    fn touch(&mut self, rel: &Path) {
        for a in rel.ancestors() {
            if !self.touched.insert(a.to_path_buf()) {
                break;
            }
        }
    }

    /// The children of a resolved directory, as relative paths.
    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, ExtractError> {
        let abs = self.root.join(dir);
        let rd = fs::read_dir(&abs).map_err(|e| io_err("read directory", &abs, e))?;
        rd.map(|d| d.map(|d| dir.join(d.file_name())).map_err(|e| io_err("read directory", &abs, e)))
            .collect()
    }

    /// Removes `rel` as far as the lower layers made it: what this layer wrote stays, and a
    /// directory this layer wrote into keeps those entries but loses the rest.
    fn remove_lower(&self, rel: &Path) -> Result<(), ExtractError> {
        let abs = self.root.join(rel);
        let Some(meta) = lstat(&abs)? else { return Ok(()) };
        if !self.touched.contains(rel) {
            return remove_any(&abs, &meta);
        }
        if meta.is_dir() {
            for child in self.list(rel)? {
                self.remove_lower(&child)?;
            }
        }
        Ok(())
    }

    fn chown(&self, path: &Path, (uid, gid): (u32, u32)) -> Result<(), ExtractError> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| io_err("chown", path, e))
    }

    fn write_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        name: &str,
    ) -> Result<(), ExtractError> {
        let a = self.attrs(entry, name)?;
        // Everything about the entry is checked before anything on disk changes.
        let plan = match entry.header().entry_type() {
            EntryType::Directory => Plan::Dir,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Plan::File,
            EntryType::Link => Plan::Hardlink(self.hardlink_target(entry, name)?),
            EntryType::Symlink => match entry.link_name_bytes() {
                Some(t) if !t.is_empty() && !t.contains(&0) => Plan::Symlink(t.into_owned()),
                _ => return Err(invalid(name, "symlink with an empty target or a NUL byte")),
            },
            EntryType::Fifo => Plan::Node(SFlag::S_IFIFO, 0),
            ty @ (EntryType::Char | EntryType::Block) => {
                let h = entry.header();
                let (Ok(Some(major)), Ok(Some(minor))) = (h.device_major(), h.device_minor()) else {
                    return Err(invalid(name, "bad device numbers"));
                };
                let kind = if ty == EntryType::Char { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                Plan::Node(kind, makedev(major.into(), minor.into()))
            }
            _ => {
                self.report.skipped_unsafe.push(name.to_string());
                return Ok(());
            }
        };
        let abs = self.root.join(rel);
        if matches!(&plan, Plan::Hardlink(t) if t == rel) {
            self.touch(rel);
            self.report.entries += 1;
            return Ok(());
        }
        // The entry replaces what is there, except that a directory over a directory is merged.
        let merge = match lstat(&abs)? {
            Some(m) if m.is_dir() && matches!(plan, Plan::Dir) => {
                // Keep it writable for the entries to come; the header's mode is set at the end.
                if m.mode() & 0o700 != 0o700 {
                    let perm = fs::Permissions::from_mode(m.mode() | 0o700);
                    fs::set_permissions(&abs, perm).map_err(|e| io_err("chmod", &abs, e))?;
                }
                true
            }
            Some(m) => {
                remove_any(&abs, &m)?;
                false
            }
            None => false,
        };
        match plan {
            Plan::Dir => {
                if !merge {
                    let mut b = fs::DirBuilder::new();
                    b.mode(0o700).create(&abs).map_err(|e| io_err("create directory", &abs, e))?;
                }
                if self.opts.chown {
                    self.chown(&abs, a.owner)?;
                }
                self.dirs.insert(rel.to_path_buf(), DirMeta { mode: a.mode, mtime: a.mtime });
            }
            Plan::File => self.write_file(entry, &abs, &a, name)?,
            Plan::Hardlink(target) => {
                fs::hard_link(self.root.join(target), &abs).map_err(|e| io_err("hard link", &abs, e))?
            }
            Plan::Symlink(target) => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &abs)
                    .map_err(|e| io_err("create symlink", &abs, e))?;
                if self.opts.chown {
                    self.chown(&abs, a.owner)?;
                }
                set_times(&abs, a.mtime)?;
            }
            Plan::Node(kind, _) if kind != SFlag::S_IFIFO && !self.opts.devices => {
                self.report.skipped_devices += 1;
                return Ok(());
            }
            Plan::Node(kind, dev) => {
                mknod(&abs, kind, Mode::from_bits_truncate(0o600), dev)
                    .map_err(|e| io_err("create node", &abs, e.into()))?;
                if self.opts.chown {
                    self.chown(&abs, a.owner)?;
                }
                let perm = fs::Permissions::from_mode(a.mode);
                fs::set_permissions(&abs, perm).map_err(|e| io_err("chmod", &abs, e))?;
                set_times(&abs, a.mtime)?;
            }
        }
        self.touch(rel);
        self.report.entries += 1;
        Ok(())
    }

    /// Resolves and checks a hard link's target: inside the root, existing, a file or symlink.
    fn hardlink_target<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        name: &str,
    ) -> Result<PathBuf, ExtractError> {
        let raw = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let bad =
            |reason| ExtractError::BadHardlink { path: name.to_string(), target: shown.clone(), reason };
        let mut comps = clean_components(&raw).map_err(|reason| unsafe_path(&shown, reason))?;
        let last = comps.pop().ok_or_else(|| bad("the target is the root directory"))?;
        let dir = self.resolve_dir(&comps, false, name)?.ok_or_else(|| bad("the target does not exist"))?;
        let target = dir.join(OsStr::from_bytes(last));
        match lstat(&self.root.join(&target))? {
            None => Err(bad("the target does not exist")),
            Some(m) if m.is_file() || m.file_type().is_symlink() => Ok(target),
            Some(_) => Err(bad("the target is not a regular file or symlink")),
        }
    }

    /// Streams a regular file's content to a new file, then sets owner, mode (after the owner, as
    /// chown clears setuid) and times, all through the open descriptor.
    fn write_file<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        abs: &Path,
        a: &Attrs,
        name: &str,
    ) -> Result<(), ExtractError> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(abs)
            .map_err(|e| io_err("create", abs, e))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(ExtractError::Tar { path: name.to_string(), source }),
            };
            file.write_all(&buf[..n]).map_err(|e| io_err("write", abs, e))?;
        }
        if self.opts.chown {
            nix::unistd::fchown(&file, Some(Uid::from_raw(a.owner.0)), Some(Gid::from_raw(a.owner.1)))
                .map_err(|e| io_err("chown", abs, e.into()))?;
        }
        file.set_permissions(fs::Permissions::from_mode(a.mode)).map_err(|e| io_err("chmod", abs, e))?;
        if let Some(cap) = &a.capability {
            // After the chown, which clears capabilities. Setting them takes CAP_SETFCAP (the
            // sandbox helper has it in its namespace): without it the file is extracted without
            // them, which only matters to a step that runs it unprivileged.
            let _ = xattr::FileExt::set_xattr(&file, super::index::CAPABILITY_XATTR, cap);
        }
        let t = timespec(a.mtime);
        futimens(&file, &t, &t).map_err(|e| io_err("set times of", abs, e.into()))
    }

    /// Applies the deferred directory modes and times, deepest first, to directories that are
    /// still real directories reached without symlinks (a later entry may have replaced them).
    fn finish(&mut self) -> Result<(), ExtractError> {
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        'dirs: for (rel, meta) in dirs {
            let mut prefix = self.root.to_path_buf();
            for c in rel.components() {
                prefix.push(c);
                if !lstat(&prefix)?.is_some_and(|m| m.is_dir()) {
                    continue 'dirs;
                }
            }
            fs::set_permissions(&prefix, fs::Permissions::from_mode(meta.mode))
                .map_err(|e| io_err("chmod", &prefix, e))?;
            set_times(&prefix, meta.mtime)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
pub(super) mod tests;
