//! The copy-based snapshotter's diff: where overlayfs cannot be mounted, a step runs on a plain
//! copy of its parent's filesystem, and its layer is found by comparing the tree after the step
//! with a record taken before it (containerd's "naive" diff).
//!
//! An entry is written when it is new or no longer the entry it was by BuildKit's rule
//! ([`same_stamp`], the overlay diff's `same_dirent`): a directory whose only change is its mtime,
//! or a file given its own mode or owner again, is not; a written entry's parent directories
//! are, with their current metadata, as are the parents of a whiteout. A path that is gone
//! becomes a whiteout in its parent, unless the parent itself is gone. A directory removed and
//! made again is written with its new entries and a whiteout for each name it lost, as the
//! overlay diff writes the opaque directory overlayfs makes of it, so both snapshotters give
//! byte-identical layers. Hard links of written files are written too, as links (continuity's
//! walking differ writes the group). Sockets are skipped and counted. Entries come out in layer
//! order ([`super::tar_order`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::add_parents;
use super::diff::{DiffError, DiffSummary, io_err, join, marker_meta, node_kind, walk, write_entries};
use super::index::{Kind, Meta};
use super::writer::LayerWriter;

/// What `lstat` said about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    rdev: u64,
    link: Option<std::ffi::OsString>,
    /// Birth time, where the filesystem keeps one: ext4 gives a directory removed and made again
    /// the inode number it just freed, so the number alone cannot tell it is new.
    born: Option<std::time::SystemTime>,
    /// A regular file's capabilities: `setcap` changes nothing else a stamp holds.
    capability: Option<Box<[u8]>>,
}

impl Stamp {
    /// The entry's owner, mode and device number, as recorded.
    pub fn owner(&self) -> Owner {
        Owner { uid: self.uid, gid: self.gid, mode: self.mode, rdev: self.rdev }
    }

    /// The entry's device and inode numbers.
    pub fn inode(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// What a layer says about an entry beyond its content: owner, `st_mode` (type and permission
/// bits) and device number. Usually what `lstat` reports; under ptrace isolation the disk cannot
/// hold other owners or device nodes, so the step's emulated view is recorded instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `st_mode`: the file type bits and the permission bits.
    pub mode: u32,
    /// The device number of a character or block device, else 0.
    pub rdev: u64,
}

impl Owner {
    /// What `lstat` says.
    pub fn of(md: &fs::Metadata) -> Owner {
        Owner { uid: md.uid(), gid: md.gid(), mode: md.mode(), rdev: md.rdev() }
    }
}

/// A record of a tree: relative path → stamp (the root itself is not recorded).
pub type Record = BTreeMap<String, Stamp>;

/// The index of the tree `record` was taken of, as the layers that make that tree would give it:
/// entries as recorded (owners, modes and devices as the record says, symlink targets, sizes,
/// mtimes to the second); hard links as the files they are; sockets, which no layer holds, left
/// out. Later layers then apply to it as to the index of their parents
/// ([`super::index::FsIndex::apply_tar`]).
pub fn index_of(record: &Record) -> super::index::FsIndex {
    use nix::libc::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG};
    let mut index = super::index::FsIndex::new();
    for (path, st) in record {
        let (major, minor) = (nix::sys::stat::major(st.rdev) as u32, nix::sys::stat::minor(st.rdev) as u32);
        let kind = match st.mode & S_IFMT {
            S_IFDIR => Kind::Dir,
            S_IFLNK => {
                Kind::Symlink(st.link.as_ref().map_or_else(String::new, |l| l.to_string_lossy().into_owned()))
            }
            S_IFCHR => Kind::Char(major, minor),
            S_IFBLK => Kind::Block(major, minor),
            S_IFIFO => Kind::Fifo,
            S_IFREG => Kind::File,
            _ => continue,
        };
        let size = if kind == Kind::File { st.size } else { 0 };
        let capability = st.capability.clone();
        let meta = Meta {
            kind,
            mode: st.mode & 0o7777,
            uid: st.uid,
            gid: st.gid,
            mtime: st.mtime.0,
            size,
            capability,
        };
        index.insert(path, meta);
    }
    index
}

/// Whether `after` is the entry `before` was, as BuildKit's differ decides it (`sameDirent`):
/// the same type, mode, owner, device number and capabilities; for all but directories the same
/// size, mtime and link target, and the same inode, or a new one whose mtime has nanoseconds
/// (BuildKit compares the content of one that has none, which a record no longer holds: it
/// counts as changed). The link count is not compared: a hard link made to a file changes it.
fn same_stamp(before: &Stamp, after: &Stamp) -> bool {
    let meta = |s: &Stamp| (s.mode, s.uid, s.gid, s.rdev);
    if meta(before) != meta(after) || before.capability != after.capability {
        return false;
    }
    if after.mode & nix::libc::S_IFMT == nix::libc::S_IFDIR {
        return true;
    }
    if (before.size, before.mtime, &before.link) != (after.size, after.mtime, &after.link) {
        return false;
    }
    (before.dev, before.ino, before.born) == (after.dev, after.ino, after.born) || after.mtime.1 != 0
}

/// Records every entry under `root`. Names must be UTF-8 (as in any layer).
pub fn record(root: &Path) -> Result<Record, DiffError> {
    record_as(root, &mut |_, abs, md| {
        let capability = if md.file_type().is_file() { super::index::read_capability(abs) } else { None };
        (Owner::of(md), capability)
    })
}

/// What a record holds of an entry beyond what `lstat` says of its content: its owner, mode and
/// device number, and a regular file's capabilities.
pub type Seen = (Owner, Option<Box<[u8]>>);

/// Records every entry under `root`, with what `seen` gives for each (relative path, path,
/// `lstat`).
pub fn record_as(
    root: &Path,
    seen: &mut dyn FnMut(&str, &Path, &fs::Metadata) -> Seen,
) -> Result<Record, DiffError> {
    let mut out = Record::new();
    let root_dev = fs::symlink_metadata(root).map_err(io_err("lstat", root))?.dev();
    walk(root, |rel, name, abs, md| {
        // Filesystems mounted inside (a step's /proc, /dev) are not part of the tree.
        if md.dev() != root_dev {
            return Ok(false);
        }
        let link = if md.file_type().is_symlink() {
            Some(fs::read_link(abs).map_err(io_err("read link", abs))?.into_os_string())
        } else {
            None
        };
        let path = join(rel, name);
        let (o, capability) = seen(&path, abs, md);
        let stamp = Stamp {
            dev: md.dev(),
            ino: md.ino(),
            mode: o.mode,
            nlink: md.nlink(),
            uid: o.uid,
            gid: o.gid,
            size: md.len(),
            mtime: (md.mtime(), md.mtime_nsec()),
            rdev: o.rdev,
            link,
            born: md.created().ok(),
            capability,
        };
        out.insert(path, stamp);
        Ok(true)
    })?;
    Ok(out)
}

/// Writes what changed under `root` since `before` to `writer` (see the module docs).
pub fn write_changes(
    root: &Path,
    before: &Record,
    writer: &mut LayerWriter,
    clamp: Option<i64>,
) -> Result<DiffSummary, DiffError> {
    write_recorded_changes(root, before, &record(root)?, writer, clamp)
}

/// Writes the changes from `before` to `after` (records of `root`, taken before and after a
/// step) to `writer`, with the owners and modes the records hold.
pub fn write_recorded_changes(
    root: &Path,
    before: &Record,
    after: &Record,
    writer: &mut LayerWriter,
    clamp: Option<i64>,
) -> Result<DiffSummary, DiffError> {
    let mut summary = DiffSummary::default();
    // What the overlay diff writes (see `diff::same_dirent`): what changed, less what is the
    // same entry as before (a directory whose only change is its mtime, a no-op `chmod`), plus
    // the hard links of what is written, plus the parents of both and of every whiteout. A
    // directory removed and made again is written with its new entries and a whiteout for each
    // name it lost, as the overlay diff writes the directory overlayfs marks opaque.
    let linkable = |st: &Stamp| {
        let t = st.mode & nix::libc::S_IFMT;
        (t == nix::libc::S_IFREG || t == nix::libc::S_IFLNK) && st.nlink > 1
    };
    let changed: Vec<&String> = after
        .iter()
        .filter(|(p, st)| before.get(*p).is_none_or(|b| !same_stamp(b, st)))
        .map(|(p, _)| p)
        .collect();
    let linked: HashSet<(u64, u64)> =
        changed.iter().filter_map(|p| after.get(*p)).filter(|st| linkable(st)).map(Stamp::inode).collect();
    let mut wanted: HashSet<String> = HashSet::new();
    let group = after.iter().filter(|(_, st)| linkable(st) && linked.contains(&st.inode())).map(|(p, _)| p);
    for path in changed.into_iter().chain(group) {
        wanted.insert(path.clone());
        add_parents(&mut wanted, path);
    }
    // path → (metadata, file to read); whiteouts have no file.
    let mut entries: BTreeMap<String, (Meta, Option<std::path::PathBuf>)> = BTreeMap::new();
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        let (parent, name) = path.rsplit_once('/').map_or(("", path.as_str()), |(d, n)| (d, n));
        // A parent that is gone, or is no longer a directory (a symlink or a file where it was),
        // takes its entries with it: a whiteout below it would name a path through a symlink,
        // which an extractor follows (deleting what the link points to), or below a file.
        let is_dir = |st: &Stamp| st.mode & nix::libc::S_IFMT == nix::libc::S_IFDIR;
        if !parent.is_empty() && !after.get(parent).is_some_and(is_dir) {
            continue;
        }
        add_parents(&mut wanted, path);
        let wh = if parent.is_empty() { format!(".wh.{name}") } else { format!("{parent}/.wh.{name}") };
        entries.insert(wh, (marker_meta(clamp), None));
        summary.whiteouts += 1;
    }
    // In layer order, so a hard link's holder is the first of its paths the layer holds.
    let mut wanted: Vec<String> = wanted.into_iter().collect();
    wanted.sort_by(|a, b| super::tar_order(a, b));
    let mut holders: HashMap<(u64, u64), (String, Meta)> = HashMap::new();
    for path in &wanted {
        let Some(st) = after.get(path) else { continue };
        let abs = root.join(path);
        let mut source = None;
        // The record's st_mode tells the type: no second lstat.
        let kind = match st.mode & nix::libc::S_IFMT {
            nix::libc::S_IFDIR => Kind::Dir,
            nix::libc::S_IFREG => {
                source = Some(abs);
                Kind::File
            }
            nix::libc::S_IFLNK => {
                let target = st.link.clone().unwrap_or_default().into_string();
                Kind::Symlink(target.map_err(|_| DiffError::NotUtf8 { path: abs })?)
            }
            _ => match node_kind(st.mode, st.rdev) {
                Some(node) => node,
                None => {
                    summary.skipped_sockets += 1;
                    continue;
                }
            },
        };
        let mtime = clamp.map_or(st.mtime.0, |c| st.mtime.0.min(c));
        let size = if kind == Kind::File { st.size } else { 0 };
        let capability = if kind == Kind::File { st.capability.clone() } else { None };
        let mut meta =
            Meta { kind, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime, size, capability };
        if matches!(meta.kind, Kind::File | Kind::Symlink(_)) && st.nlink > 1 {
            let key = (st.dev, st.ino);
            if let Some((holder, held)) = holders.get(&key) {
                meta = Meta { kind: Kind::Hardlink(holder.clone()), ..held.clone() };
                source = None;
                summary.hardlinks += 1;
            } else {
                holders.insert(key, (path.clone(), meta.clone()));
            }
        }
        entries.insert(path.clone(), (meta, source));
    }
    let mut entries: Vec<_> = entries.into_iter().collect();
    entries.sort_by(|a, b| super::tar_order(&a.0, &b.0));
    write_entries(
        entries.iter().map(|(path, (meta, source))| (path.as_str(), meta, source.as_deref())),
        writer,
    )?;
    summary.entries = entries.len() as u64;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Compression;
    use std::io::Read;

    /// The layer's entries as `path kind` lines.
    fn layer_of(root: &Path, before: &Record) -> Vec<String> {
        let store_dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(store_dir.path()).unwrap();
        let mut w = LayerWriter::new(&store, Compression::None, None).unwrap();
        write_changes(root, before, &mut w, None).unwrap();
        let layer = w.finish().unwrap();
        let mut data = Vec::new();
        store.open_blob(&layer.digest).unwrap().read_to_end(&mut data).unwrap();
        let mut a = tar::Archive::new(&data[..]);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| format!(" -> {}", l.display())).unwrap_or_default();
                format!("{}{link}", e.path().unwrap().display())
            })
            .collect()
    }

    /// A recorded tree's index holds what its layers' headers would: kinds, link targets, sizes,
    /// and the owners, modes and devices the record says, not the disk's.
    #[test]
    fn a_records_index_is_the_tree_as_layers_say_it() {
        use crate::layer::index::{Kind, Meta};
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("etc/app")).unwrap();
        fs::write(r.join("etc/app/conf"), "12345").unwrap();
        fs::write(r.join("dev-null"), "").unwrap();
        std::os::unix::fs::symlink("app/conf", r.join("etc/link")).unwrap();
        let record = record_as(r, &mut |path, _, md| match path {
            "etc/app/conf" => (Owner { uid: 42, gid: 4242, mode: 0o100640, rdev: 0 }, Some([1u8, 2].into())),
            "dev-null" => {
                (Owner { uid: 0, gid: 0, mode: 0o020666, rdev: nix::sys::stat::makedev(1, 3) }, None)
            }
            _ => (Owner::of(md), None),
        })
        .unwrap();
        let index = index_of(&record);
        let mtime = |p: &str| fs::symlink_metadata(r.join(p)).unwrap().mtime();
        let me = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        assert_eq!(
            index.get("etc/app/conf"),
            Some(&Meta {
                kind: Kind::File,
                mode: 0o640,
                uid: 42,
                gid: 4242,
                mtime: mtime("etc/app/conf"),
                size: 5,
                capability: Some([1u8, 2].into())
            })
        );
        assert_eq!(index.get("dev-null").map(|m| (&m.kind, m.mode)), Some((&Kind::Char(1, 3), 0o666)));
        assert_eq!(index.get("etc/link").map(|m| &m.kind), Some(&Kind::Symlink("app/conf".into())));
        assert_eq!(index.get("etc").map(|m| (&m.kind, m.uid, m.gid)), Some((&Kind::Dir, me.0, me.1)));
        assert_eq!(index.len(), 5, "five entries below the root");
    }

    #[test]
    fn changes_deletions_and_links() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("keep/sub")).unwrap();
        fs::create_dir_all(r.join("gone/deep")).unwrap();
        fs::write(r.join("keep/sub/same"), "same").unwrap();
        fs::write(r.join("keep/edit"), "old").unwrap();
        fs::write(r.join("gone/deep/f"), "x").unwrap();
        fs::write(r.join("lone"), "x").unwrap();
        let before = record(r).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(r.join("keep/edit"), "new!").unwrap();
        fs::remove_dir_all(r.join("gone")).unwrap();
        fs::remove_file(r.join("lone")).unwrap();
        fs::write(r.join("keep/sub/a"), "a").unwrap();
        fs::hard_link(r.join("keep/sub/a"), r.join("keep/sub/b")).unwrap();
        let entries = layer_of(r, &before);
        assert_eq!(
            entries,
            [
                ".wh.gone",
                ".wh.lone",
                "keep/",
                "keep/edit",
                "keep/sub/",
                "keep/sub/a",
                "keep/sub/b -> keep/sub/a"
            ]
        );
        assert!(layer_of(r, &record(r).unwrap()).is_empty(), "nothing changed: empty layer");
    }

    /// A directory removed and made again is written as the overlay diff writes what overlayfs
    /// makes of it: with its new entries (a file moved back in unchanged is the one the base has,
    /// which BuildKit's differ leaves out) and a whiteout for each name it lost, below it too; a
    /// directory where a file was needs none.
    #[test]
    fn a_directory_made_again_is_written_whole_with_whiteouts() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("redo/sub")).unwrap();
        fs::write(r.join("redo/old"), "old").unwrap();
        fs::write(r.join("redo/sub/f"), "f").unwrap();
        fs::write(r.join("redo/kept"), "kept").unwrap();
        fs::write(r.join("was-a-file"), "x").unwrap();
        let before = record(r).unwrap();
        fs::rename(r.join("redo/kept"), r.join("kept")).unwrap();
        fs::remove_dir_all(r.join("redo")).unwrap();
        fs::create_dir(r.join("redo")).unwrap();
        fs::write(r.join("redo/new"), "new").unwrap();
        fs::create_dir(r.join("redo/sub")).unwrap();
        fs::rename(r.join("kept"), r.join("redo/kept")).unwrap();
        fs::remove_file(r.join("was-a-file")).unwrap();
        fs::create_dir(r.join("was-a-file")).unwrap();
        assert_eq!(
            layer_of(r, &before),
            ["redo/", "redo/.wh.old", "redo/new", "redo/sub/", "redo/sub/.wh.f", "was-a-file/"]
        );
    }

    /// A directory replaced by a symlink or a file is written as that entry alone: no whiteouts
    /// below it (one below a symlink would delete, on extraction, what the link points to).
    #[test]
    fn a_directory_replaced_by_a_link_or_a_file_has_no_whiteouts_below_it() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("html/sub")).unwrap();
        fs::write(r.join("html/index.html"), "default").unwrap();
        fs::create_dir_all(r.join("conf")).unwrap();
        fs::write(r.join("conf/a.conf"), "a").unwrap();
        fs::create_dir_all(r.join("app")).unwrap();
        fs::write(r.join("app/index.html"), "mine").unwrap();
        let before = record(r).unwrap();
        fs::remove_dir_all(r.join("html")).unwrap();
        std::os::unix::fs::symlink("/app", r.join("html")).unwrap();
        fs::remove_dir_all(r.join("conf")).unwrap();
        fs::write(r.join("conf"), "now a file").unwrap();
        assert_eq!(layer_of(r, &before), ["conf", "html -> /app"]);
    }
}
