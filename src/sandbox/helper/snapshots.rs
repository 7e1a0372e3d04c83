//! Where a step's filesystem comes from: overlay snapshots per chain id, or, for the copy
//! snapshotter, plain trees (the previous step's, taken by rename, or the layers applied anew).

use super::*;

impl Ctx {
    /// Mounts and unmounts a small overlay, to know whether steps can use overlay snapshots.
    pub(super) fn probe_overlay(&mut self) -> Result<(), String> {
        let name = self.next_name("probe");
        let dir = self.runs.join(name);
        let lower = dir.join("lower");
        fs_err::create_dir_all(&lower).map_err(|e| e.to_string())?;
        let r = overlay::mount_overlay(&dir.join("o"), &[lower], Upper::Volatile, self.flavor)
            .and_then(|m| m.unmount())
            .map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    /// The filesystem of `layers` at `dir`: an overlay of their snapshots (with an upper
    /// directory when `writable`), or, for the copy snapshotter, the layers applied to a new
    /// directory.
    pub(super) fn tree(
        &mut self,
        layers: &[LayerRef],
        dir: &Path,
        writable: bool,
        out: &mut impl Write,
    ) -> Result<Tree, Fail> {
        fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
        if !self.copy {
            let lowers: Vec<PathBuf> = self.snapshots(layers, out)?.into_iter().rev().collect();
            // A writable tree is a step's root, whose upper becomes a snapshot unsynced (see
            // `forget_earlier_boots`), or an rw bind mount's, which is thrown away.
            let upper = if writable { Upper::Volatile } else { Upper::None };
            let mount =
                overlay::mount_overlay(dir, &lowers, upper, self.flavor).map_err(|e| e.to_string())?;
            return Ok(Tree::Overlay { mount, lowers });
        }
        let root = dir.join("copy");
        let start = match writable.then(|| self.take_tree(layers, &root, |_| Some(()))).flatten() {
            Some((n, ())) => n,
            None => {
                fs_err::create_dir_all(&root).map_err(|e| e.to_string())?;
                0
            }
        };
        self.apply_layers(&layers[start..], &root)?;
        Ok(Tree::Plain(root))
    }

    /// Takes the kept tree of the longest prefix of `layers` that has one and that `accept`
    /// takes (given the prefix's tree id; ptrace isolation also needs the tree's index), moving it
    /// to `root`; returns how many of `layers` it holds and what `accept` gave. The tree the
    /// previous step of a stage left is the next step's parent, or its parent's when a COPY came
    /// between: the caller applies the layers above it instead of extracting them all. Taken by
    /// rename, so no other build can have it at the same time.
    pub(super) fn take_tree<T>(
        &self,
        layers: &[LayerRef],
        root: &Path,
        mut accept: impl FnMut(&str) -> Option<T>,
    ) -> Option<(usize, T)> {
        let ids = overlay::chain_ids(layers);
        for (i, id) in ids.iter().enumerate().rev() {
            let kept = self.trees.join(id);
            if !kept.is_dir() {
                continue;
            }
            if let Some(t) = accept(id)
                && std::fs::rename(&kept, root).is_ok()
            {
                return Some((i + 1, t));
            }
        }
        None
    }

    /// Applies `layers` to the directory `root`, in order.
    pub(super) fn apply_layers(&self, layers: &[LayerRef], root: &Path) -> Result<(), String> {
        for layer in layers {
            let reader = self.open(layer)?;
            let times = Times::load(&self.store, &layer.diff_id);
            apply_layer(reader, root, self.apply_options(times.as_ref()))
                .map_err(|e| format!("extracting layer {}: {e}", layer.digest))?;
        }
        Ok(())
    }

    /// Keeps a copy-snapshotter tree whose content is the filesystem of `layers`, for the next
    /// step; only the few most recent are kept. `owners` (ptrace isolation) records what its
    /// entries' owners, modes and devices really are: kept beside it as the tree's index, which
    /// the layers of later steps apply to.
    pub(super) fn keep_tree(
        &self,
        tree: &Path,
        layers: &[LayerRef],
        owners: Option<&crate::layer::walkdiff::Record>,
    ) {
        const KEEP: usize = 3;
        let id = tree_id(layers);
        if let Some(record) = owners {
            let index = crate::layer::walkdiff::index_of(record);
            let written = serde_json::to_vec(&index).map_err(std::io::Error::other).and_then(|bytes| {
                let tmp = self.owners.join(format!(".{id}.{}", std::process::id()));
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, self.owners_file(&id))
            });
            if written.is_err() {
                return;
            }
        }
        if std::fs::rename(tree, self.trees.join(&id)).is_err() {
            return;
        }
        let Ok(rd) = std::fs::read_dir(&self.trees) else { return };
        let mut all: Vec<(i64, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                use std::os::unix::fs::MetadataExt;
                // rename updates ctime: the newest is the most recently kept.
                e.metadata().ok().map(|m| (m.ctime() * 1_000_000_000 + m.ctime_nsec(), e.path()))
            })
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (t, old) in all.into_iter().skip(KEEP) {
            // Taken out of the cache by rename first, so no build can take it while it goes.
            let doomed = self.runs.join(format!("evict-{}-{t}", std::process::id()));
            if std::fs::rename(&old, &doomed).is_ok() {
                let _ = std::fs::remove_dir_all(&doomed);
                if let Some(name) = old.file_name() {
                    let _ = std::fs::remove_file(self.owners.join(name).with_extension("json"));
                }
            }
        }
    }

    /// The snapshot directories of `layers`, bottom first, extracting the missing ones.
    pub(super) fn snapshots(
        &mut self,
        layers: &[LayerRef],
        out: &mut impl Write,
    ) -> Result<Vec<PathBuf>, String> {
        let ids = overlay::chain_ids(layers);
        let mut paths: Vec<PathBuf> = Vec::with_capacity(layers.len());
        for (i, (layer, id)) in layers.iter().zip(&ids).enumerate() {
            let path = self.snapshots.join(id);
            if path.is_dir() {
                paths.push(path);
                continue;
            }
            // Another helper (a stage built beside this one, or another build) may be making the
            // same snapshot — two stages FROM one base do at once: wait for it, then use it,
            // rather than doing the same work twice on the same cores. The lock only saves work:
            // a snapshot appears by an atomic rename either way.
            let lock = self.locks.join(id);
            let held = crate::store::Lock::exclusive(&lock).map_err(|e| e.to_string())?;
            let made = self.make_snapshot(&layers[..i], layer, id, &path, &mut paths, out);
            // Removed while held: a helper that waited on it finds the snapshot made and takes it.
            let _ = std::fs::remove_file(&lock);
            drop(held);
            made?;
        }
        Ok(paths)
    }

    /// Adds the snapshot directories of `layer` (over `parent`, whose directories are `paths`),
    /// chain id `id`, to `paths`: one another helper made meanwhile, a derived one, or `layer`
    /// extracted whole into `path`.
    fn make_snapshot(
        &mut self,
        parent: &[LayerRef],
        layer: &LayerRef,
        id: &str,
        path: &Path,
        paths: &mut Vec<PathBuf>,
        out: &mut impl Write,
    ) -> Result<(), String> {
        if path.is_dir() {
            paths.push(path.to_path_buf());
            return Ok(());
        }
        if let Some(pair) = self.derived_snapshot(id) {
            paths.extend(pair);
            return Ok(());
        }
        if let Some(pair) = self.derive(parent, layer, paths, out) {
            paths.extend(pair);
            return Ok(());
        }
        let name = self.next_name("snap");
        let tmp = self.runs.join(name);
        fs_err::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        let reader = self.open(layer)?;
        let r = self.extract(layer, reader, paths, &tmp, out);
        let r = r.and_then(|()| rename_into_place(&tmp.join("upper"), path));
        let _ = std::fs::remove_dir_all(&tmp);
        r?;
        paths.push(path.to_path_buf());
        Ok(())
    }

    /// The two directories of derived snapshot `id` (its base's snapshot, then its delta), when it
    /// exists and its base is still there.
    fn derived_snapshot(&self, id: &str) -> Option<[PathBuf; 2]> {
        let dir = self.derived.join(id);
        let bytes = std::fs::read(dir.join(DERIVED_META)).ok()?;
        let d: Derived = serde_json::from_slice(&bytes).ok()?;
        let base = self.snapshots.join(&d.base_chain);
        (base.is_dir() && dir.join("upper").is_dir()).then(|| [base, dir.join("upper")])
    }

    /// Makes the snapshot of `layer` (over `parent`, whose snapshot directories are `below`) as
    /// the snapshot of the layer it replaces plus their difference, when the request names one,
    /// that one has a whole snapshot here, and the difference is small. `None`: extract whole.
    ///
    /// A COPY whose sources changed by one file would otherwise write all its files again; on
    /// ext4 just after many deletions (another build's cleanup) that costs seconds.
    fn derive(
        &mut self,
        parent: &[LayerRef],
        layer: &LayerRef,
        below: &[PathBuf],
        out: &mut impl Write,
    ) -> Option<[PathBuf; 2]> {
        let succ = self.successors.iter().find(|s| s.layer.diff_id == layer.diff_id)?;
        let mut old_chain: Vec<LayerRef> = parent.to_vec();
        old_chain.push(succ.replaces.clone());
        let old_id = overlay::chain_ids(&old_chain).pop()?;
        // Always from a whole snapshot, so a snapshot is at most two directories deep.
        let (base_chain, base_layer) = if self.snapshots.join(&old_id).is_dir() {
            (old_id, succ.replaces.clone())
        } else {
            let meta = std::fs::read(self.derived.join(&old_id).join(DERIVED_META)).ok()?;
            let d: Derived = serde_json::from_slice(&meta).ok()?;
            (d.base_chain, d.base_layer)
        };
        let base = self.snapshots.join(&base_chain);
        if !base.is_dir() {
            return None;
        }
        let id = overlay::chain_ids(&[parent, std::slice::from_ref(layer)].concat()).pop()?;
        let name = self.next_name("derive");
        let tmp = self.runs.join(name);
        let r = self.derive_into(&tmp, &base, &base_layer, layer, below, out);
        let done = r.and_then(|()| {
            let meta = Derived { base_chain, base_layer };
            let bytes = serde_json::to_vec(&meta).map_err(|e| e.to_string())?;
            fs_err::write(tmp.join("d").join(DERIVED_META), bytes).map_err(|e| e.to_string())?;
            rename_into_place(&tmp.join("d"), &self.derived.join(&id))
        });
        let _ = std::fs::remove_dir_all(&tmp);
        done.ok()?;
        self.derived_snapshot(&id)
    }

    /// Writes the delta of `old` → `new` and applies it over `below` + `base`, leaving the
    /// delta's directory at `tmp/d/upper`.
    fn derive_into(
        &self,
        tmp: &Path,
        base: &Path,
        old: &LayerRef,
        new: &LayerRef,
        below: &[PathBuf],
        out: &mut impl Write,
    ) -> Result<(), String> {
        fs_err::create_dir_all(tmp.join("x")).map_err(|e| e.to_string())?;
        fs_err::create_dir_all(tmp.join("d")).map_err(|e| e.to_string())?;
        let delta_path = tmp.join("delta.tar");
        let file = std::io::BufWriter::new(fs_err::File::create(&delta_path).map_err(|e| e.to_string())?);
        // Worth it only when most of the layer stays: otherwise extracting it whole is as cheap
        // and keeps the snapshot one directory.
        let max = (new.size / 512 / 4).max(16);
        let stats = crate::layer::delta::delta(
            self.open(old)?,
            || self.open(new).map_err(std::io::Error::other),
            file,
            max,
        )
        .map_err(|e| e.to_string())?
        .ok_or("not comparable")?;
        if stats.written > stats.entries / 2 {
            return Err("most of the layer changed".into());
        }
        let mut lowers = below.to_vec();
        lowers.push(base.to_path_buf());
        let reader = std::io::BufReader::new(fs_err::File::open(&delta_path).map_err(|e| e.to_string())?);
        self.extract(new, Box::new(reader), &lowers, &tmp.join("x"), out)?;
        fs_err::rename(tmp.join("x").join("upper"), tmp.join("d").join("upper")).map_err(|e| e.to_string())
    }

    /// Where the owners of kept tree `id` are (ptrace isolation).
    pub(super) fn owners_file(&self, id: &str) -> PathBuf {
        self.owners.join(format!("{id}.json"))
    }

    /// A stored layer as an uncompressed tar stream.
    pub(super) fn open(&self, layer: &LayerRef) -> Result<Box<dyn std::io::Read>, String> {
        let l = layer.to_layer().map_err(|e| e.to_string())?;
        crate::layer::open_layer(&self.store, &l).map_err(|e| e.to_string())
    }

    /// Applies `reader` (the tar of `layer`, or a delta of it) over the snapshots `below` into
    /// `tmp/upper`.
    pub(super) fn extract(
        &self,
        layer: &LayerRef,
        reader: Box<dyn std::io::Read>,
        below: &[PathBuf],
        tmp: &Path,
        out: &mut impl Write,
    ) -> Result<(), String> {
        let times = Times::load(&self.store, &layer.diff_id);
        let opts = self.apply_options(times.as_ref());
        let report = if below.is_empty() {
            let upper = tmp.join("upper");
            fs_err::create_dir_all(&upper).map_err(|e| e.to_string())?;
            apply_layer(reader, &upper, opts)
        } else {
            let lowers: Vec<PathBuf> = below.iter().rev().cloned().collect();
            let m = overlay::mount_overlay(tmp, &lowers, Upper::Volatile, self.flavor)
                .map_err(|e| e.to_string())?;
            let r = apply_layer(reader, m.path(), opts);
            m.unmount().map_err(|e| format!("unmounting {}: {e}", tmp.display()))?;
            r
        }
        .map_err(|e| format!("extracting layer {}: {e}", layer.digest))?;
        if report.skipped_devices > 0 {
            let note = format!(
                "{} device node(s) of layer {} not created (a user namespace cannot make device nodes)",
                report.skipped_devices, layer.digest
            );
            reply(out, &Reply::Note(note)).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// What a derived snapshot is made of: `<derived>/<chain id>/upper` over the whole snapshot
/// `<snapshots>/<base_chain>`, whose top layer is `base_layer`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Derived {
    base_chain: String,
    base_layer: LayerRef,
}

const DERIVED_META: &str = "derived.json";

/// The key of a copy-snapshotter tree holding the filesystem of `layers`: their chain id.
pub(super) fn tree_id(layers: &[LayerRef]) -> String {
    overlay::chain_ids(layers).pop().unwrap_or_else(|| "empty".into())
}

/// The file in a mode's sandbox directory naming the boot its snapshots were made in.
const BOOT_FILE: &str = "boot-id";

/// Snapshots, derived snapshots, copy-snapshotter trees and their owner records are a cache of
/// the store's blobs, and nothing makes them durable: a step's upper is mounted volatile and
/// renamed into place unsynced, as an extracted layer is. Within the boot that wrote them the page
/// cache keeps them whole (a killed build included); after a crash they can be torn. So they are
/// trusted only in the boot that made them: before a helper uses any, this compares `boot-id` with
/// the kernel's, and when they differ (or the file is missing: an older hako, or a wiped sandbox)
/// moves `dirs` aside, removes them, and records this boot. After a reboot the first step of each
/// base extracts its layers again; in exchange no step waits for its upper to reach the disk, nor
/// for every other dirty page of the filesystem (`syncfs`), which on a busy CI machine can be
/// seconds per step. The blobs, which records name, are still synced.
///
/// Where the kernel says no boot id (no /proc), snapshots are trusted as they are.
pub(super) fn forget_earlier_boots(base: &Path, dirs: &[&Path], locks: &Path) -> Result<(), String> {
    if let Some(boot) = boot_id() {
        set_aside_earlier_boot(base, dirs, locks, &boot)?;
    }
    // Outside the lock, so other helpers need not wait for it; whatever could not be removed is
    // tried again by the next helper.
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(STALE) {
                wipe(&e.path());
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
    Ok(())
}

/// Where the snapshots of an earlier boot go before they are removed.
const STALE: &str = "stale-";

/// Moves `dirs` aside (under [`STALE`] names) unless `base` records `boot`, then records it.
fn set_aside_earlier_boot(base: &Path, dirs: &[&Path], locks: &Path, boot: &str) -> Result<(), String> {
    let file = base.join(BOOT_FILE);
    let _held = crate::store::Lock::exclusive(&locks.join(BOOT_FILE)).map_err(|e| e.to_string())?;
    if std::fs::read_to_string(&file).is_ok_and(|b| b.trim() == boot) {
        return Ok(());
    }
    for (i, dir) in dirs.iter().enumerate() {
        let empty = std::fs::read_dir(dir).map(|mut rd| rd.next().is_none()).unwrap_or(true);
        if empty {
            continue;
        }
        // Aside first, so nothing from the earlier boot is left under its name even when some
        // of it cannot be removed.
        let stale = base.join(format!("{STALE}{}-{i}", std::process::id()));
        fs_err::rename(dir, &stale).map_err(|e| e.to_string())?;
        fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    // The moves reach the disk before the file that says this boot's content is all there is.
    fs_err::File::open(base).and_then(|d| d.sync_all()).map_err(|e| e.to_string())?;
    let tmp = base.join(format!(".{BOOT_FILE}.{}", std::process::id()));
    let written = fs_err::write(&tmp, format!("{boot}\n"))
        .and_then(|()| fs_err::File::open(&tmp)?.sync_all())
        .and_then(|()| fs_err::rename(&tmp, &file));
    written.map_err(|e| e.to_string())
}

/// This boot's id, as the kernel gives it.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// Removes everything under `dir` (keeping `dir`): entries and bytes removed, and what could not
/// be removed (another mode's files this helper's ids cannot reach), with why.
pub fn wipe(dir: &Path) -> (u64, u64, Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    let (mut entries, mut bytes, mut left) = (0u64, 0u64, Vec::new());
    // Deepest first, so directories are empty when their turn comes.
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>, left: &mut Vec<String>) {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => return left.push(format!("{}: {e}", dir.display())),
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            if m.is_dir() {
                // Directories made unreadable by a step still belong to someone in this namespace.
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700));
                walk(&p, out, left);
            }
            out.push((p, m));
        }
    }
    let mut all = Vec::new();
    walk(dir, &mut all, &mut left);
    for (p, m) in all {
        let r = if m.is_dir() { std::fs::remove_dir(&p) } else { std::fs::remove_file(&p) };
        match r {
            Ok(()) => {
                entries += 1;
                bytes += m.blocks() * 512;
            }
            Err(e) => {
                if left.len() < 20 {
                    left.push(format!("{}: {e}", p.display()));
                }
            }
        }
    }
    (entries, bytes, left)
}

/// Renames `from` to `to` unless `to` already exists (another build made the same thing).
pub(super) fn rename_into_place(from: &Path, to: &Path) -> Result<(), String> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(_) if to.is_dir() => Ok(()),
        Err(e) => Err(format!("renaming {} to {}: {e}", from.display(), to.display())),
    }
}

/// Where a finished step's changes are.
pub(super) enum Changes<'a> {
    /// In the overlay's upper directory (`rootfs/upper`), over `lowers` (top first); `copied_up`
    /// are the directories copied up only to hold mount points.
    Upper {
        /// The overlay's lower directories, top first.
        lowers: &'a [PathBuf],
        /// Directories copied up for mount points, with their metadata before the step.
        copied_up: &'a [(String, std::fs::Metadata)],
    },
    /// In the copy at `root`, since `before` (to `after` when the owners on disk are not the
    /// step's: ptrace isolation).
    Copy {
        /// The copied root.
        root: &'a Path,
        /// Its record before the step.
        before: &'a crate::layer::walkdiff::Record,
        /// Its record after the step, owners as the step saw them.
        after: Option<crate::layer::walkdiff::Record>,
    },
}

/// A filesystem tree for a step's root or a bind mount's source.
pub(super) enum Tree {
    /// Mounted overlay (unmounted on drop) and its lower directories, top first.
    Overlay {
        /// The mount.
        mount: Mounted,
        /// Its lower directories, top first.
        lowers: Vec<PathBuf>,
    },
    /// A plain directory (a copy, or a host directory).
    Plain(PathBuf),
}

impl Tree {
    pub(super) fn path(&self) -> &Path {
        match self {
            Tree::Overlay { mount, .. } => mount.path(),
            Tree::Plain(p) => p,
        }
    }
}
