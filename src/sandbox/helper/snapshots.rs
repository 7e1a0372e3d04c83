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
        let r = overlay::mount_overlay(&dir.join("o"), &[lower], true, self.flavor)
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
            let m = overlay::mount_overlay(dir, &lowers, writable, self.flavor).map_err(|e| e.to_string())?;
            return Ok(Tree::Overlay(m));
        }
        let root = dir.join("copy");
        // The tree the previous step of this stage left is this step's parent: take it (a
        // rename, so no other build can have it at the same time) instead of extracting.
        if writable && std::fs::rename(self.trees.join(tree_id(layers)), &root).is_ok() {
            return Ok(Tree::Plain(root));
        }
        fs_err::create_dir_all(&root).map_err(|e| e.to_string())?;
        let opts = ApplyOptions { chown: !self.squash, devices: !self.rootless };
        for layer in layers {
            let l = layer.to_layer().map_err(|e| e.to_string())?;
            let reader = crate::layer::open_layer(&self.store, &l).map_err(|e| e.to_string())?;
            apply_layer(reader, &root, opts)
                .map_err(|e| format!("extracting layer {}: {e}", layer.digest))?;
        }
        Ok(Tree::Plain(root))
    }

    /// Keeps a copy-snapshotter tree whose content is the filesystem of `layers`, for the next
    /// step; only the few most recent are kept.
    pub(super) fn keep_tree(&self, tree: &Path, layers: &[LayerRef]) {
        const KEEP: usize = 3;
        if std::fs::rename(tree, self.trees.join(tree_id(layers))).is_err() {
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
        for (layer, id) in layers.iter().zip(&ids) {
            let path = self.snapshots.join(id);
            if !path.is_dir() {
                let name = self.next_name("snap");
                let tmp = self.runs.join(name);
                fs_err::create_dir_all(&tmp).map_err(|e| e.to_string())?;
                let r = self.extract(layer, &paths, &tmp, out);
                let r = r.and_then(|()| rename_into_place(&tmp.join("upper"), &path));
                let _ = std::fs::remove_dir_all(&tmp);
                r?;
            }
            paths.push(path);
        }
        Ok(paths)
    }

    pub(super) fn extract(
        &self,
        layer: &LayerRef,
        below: &[PathBuf],
        tmp: &Path,
        out: &mut impl Write,
    ) -> Result<(), String> {
        let l = layer.to_layer().map_err(|e| e.to_string())?;
        let reader = crate::layer::open_layer(&self.store, &l).map_err(|e| e.to_string())?;
        let opts = ApplyOptions { chown: !self.squash, devices: !self.rootless };
        let report = if below.is_empty() {
            let upper = tmp.join("upper");
            fs_err::create_dir_all(&upper).map_err(|e| e.to_string())?;
            apply_layer(reader, &upper, opts)
        } else {
            let lowers: Vec<PathBuf> = below.iter().rev().cloned().collect();
            let m = overlay::mount_overlay(tmp, &lowers, true, self.flavor).map_err(|e| e.to_string())?;
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

/// The key of a copy-snapshotter tree holding the filesystem of `layers`: their chain id.
pub(super) fn tree_id(layers: &[LayerRef]) -> String {
    overlay::chain_ids(layers).pop().unwrap_or_else(|| "empty".into())
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

/// A filesystem tree for a step's root or a bind mount's source.
pub(super) enum Tree {
    /// Mounted overlay (unmounted on drop).
    Overlay(Mounted),
    /// A plain directory (a copy, or a host directory).
    Plain(PathBuf),
}

impl Tree {
    pub(super) fn path(&self) -> &Path {
        match self {
            Tree::Overlay(m) => m.path(),
            Tree::Plain(p) => p,
        }
    }
}
