//! A stage's state while it builds and once it is built ([`StageOut`]): its image so far, the cache
//! key of its filesystem, the filesystem's metadata index — made only when a step needs it, from
//! an index kept in the store for the layer chain when there is one — and its files on disk,
//! extracted only when another stage copies from it.
//!
//! Indexes are kept under `<store>/cache/index/<chain id>.v2.json` (written atomically): a rebuild
//! whose steps hit the cache never reads a layer, and a miss after hits starts from the kept
//! index of the longest chain prefix instead of decompressing every layer from the base up.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::progress::Event;
use super::{BuildError, Builder};
use crate::cache::CacheKey;
use crate::image::manifest::Image;
use crate::layer::extract::{ApplyOptions, Selection, apply_layer, apply_layer_selected};
use crate::layer::index::{FsIndex, Kind};
use crate::layer::open_layer;
use crate::layer::times::Times;
use crate::store::Store;

/// Keeps `index` as that of layer chain `chain` (best effort: it is a cache; written atomically).
fn keep(store: &Store, index: &FsIndex, chain: &str) {
    let Ok(bytes) = serde_json::to_vec(index) else { return };
    let dir = index_dir(store);
    if fs_err::create_dir_all(&dir).is_ok() {
        let _ = store.write_cache_file(&index_file(&dir, chain), &bytes);
    }
}

/// The kept index of chain `chain` in `dir`. Versioned: a v1 index (`<chain>.json`) has no file
/// capabilities, which a COPY --from would then drop; it is never read again (`hako prune`
/// removes it).
fn index_file(dir: &std::path::Path, chain: &str) -> PathBuf {
    dir.join(format!("{chain}.v2.json"))
}

/// A stage being built, or built.
#[derive(Clone)]
pub struct StageOut {
    /// The image so far.
    pub image: Image,
    /// The cache key of the filesystem so far.
    pub key: CacheKey,
    /// Its filesystem metadata, when made (always that of `image.layers`).
    index: Option<FsIndex>,
    /// Its files on disk, extracted on first use (`COPY --from`).
    rootfs: Arc<OnceLock<tempfile::TempDir>>,
    /// Its files for the copies other stages make of it, selected for all of them (see
    /// [`copy_files`](StageOut::copy_files)); `None` inside: the whole tree serves instead.
    copies: Arc<OnceLock<Option<PathBuf>>>,
    /// Whether a step of this stage ran in this build (was not taken from the cache).
    pub ran: bool,
    /// How many of the layers are the base image's: that chain's index is worth keeping too,
    /// as other stages start from the same base.
    base_layers: usize,
}

fn index_dir(store: &Store) -> PathBuf {
    store.root().join("cache/index")
}

impl StageOut {
    /// A stage starting from `image`, whose filesystem has cache key `key`.
    pub fn new(image: Image, key: CacheKey) -> StageOut {
        let base_layers = image.layers.len();
        StageOut {
            image,
            key,
            index: None,
            rootfs: Arc::new(OnceLock::new()),
            copies: Arc::new(OnceLock::new()),
            ran: false,
            base_layers,
        }
    }

    /// A new stage starting where this one ends (`FROM stage`): same image, key and index, its own
    /// extracted files.
    pub fn fork(&self) -> StageOut {
        StageOut {
            rootfs: Arc::new(OnceLock::new()),
            copies: Arc::new(OnceLock::new()),
            ran: false,
            ..self.clone()
        }
    }

    /// The layers changed without the index following: it is made again when next needed.
    pub fn forget_index(&mut self) {
        self.index = None;
    }

    /// The filesystem index, made now if needed.
    pub fn index(&mut self, b: &Builder<'_>) -> Result<&mut FsIndex, BuildError> {
        let index = match self.index.take() {
            Some(index) => index,
            None => self.load_index(b)?,
        };
        Ok(self.index.insert(index))
    }

    /// Keeps the index of the current layer chain in the store, if it is made.
    pub fn keep_index(&self, b: &Builder<'_>) {
        if let (Some(index), Some(chain)) = (&self.index, self.chain_ids().pop()) {
            keep(b.store, index, &chain);
        }
    }

    fn chain_ids(&self) -> Vec<String> {
        let diff_ids: Vec<String> = self.image.layers.iter().map(|l| l.diff_id.to_string()).collect();
        crate::digest::chain_ids(diff_ids.iter().map(String::as_str))
    }

    /// The kept index of the longest chain prefix, then the remaining layers read from their tars.
    fn load_index(&self, b: &Builder<'_>) -> Result<FsIndex, BuildError> {
        let chain = self.chain_ids();
        let dir = index_dir(b.store);
        let mut start = 0;
        let mut index = FsIndex::new();
        for (i, id) in chain.iter().enumerate().rev() {
            let kept = std::fs::read(index_file(&dir, id))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<FsIndex>(&bytes).ok());
            if let Some(kept) = kept {
                index = kept;
                start = i + 1;
                break;
            }
        }
        for (i, layer) in self.image.layers.iter().enumerate().skip(start) {
            index
                .apply_tar(open_layer(b.store, layer)?)
                .map_err(|e| BuildError::Internal(format!("reading layer {}: {e}", layer.digest)))?;
            if i + 1 == self.base_layers && i + 1 < chain.len() {
                keep(b.store, &index, &chain[i]);
            }
        }
        if let Some(id) = chain.last().filter(|_| start < chain.len()) {
            keep(b.store, &index, id);
        }
        Ok(index)
    }

    /// The stage's files, extracted into the store's temp area on first use.
    pub fn rootfs(&self, b: &Builder<'_>) -> Result<PathBuf, BuildError> {
        if let Some(dir) = self.rootfs.get() {
            return Ok(dir.path().join("root"));
        }
        b.whole_trees.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = b.store.temp_dir("rootfs-")?;
        let root = dir.path().join("root");
        fs_err::create_dir(&root)?;
        for layer in &self.image.layers {
            let reader = open_layer(b.store, layer)?;
            // A COPY's files with their own times, as the stage's steps saw them.
            let times = Times::load(b.store, &layer.diff_id.to_string());
            let report =
                apply_layer(reader, &root, ApplyOptions { times: times.as_ref(), ..Default::default() })
                    .map_err(|e| BuildError::Internal(format!("extracting layer {}: {e}", layer.digest)))?;
            if report.skipped_devices > 0 {
                let note = format!(
                    "{} device node(s) in layer {} not extracted (not needed to copy files)",
                    report.skipped_devices, layer.digest
                );
                b.reporter.event(&Event::Note(&note));
            }
        }
        // Stages built at the same time may both extract a stage they copy from: the first set
        // wins and the other copy is removed, so both read the winner's files.
        let _ = self.rootfs.set(dir);
        self.rootfs
            .get()
            .map(|d| d.path().join("root"))
            .ok_or_else(|| BuildError::Internal("the stage's files were not kept".into()))
    }

    /// The stage's directories, and of its other entries only those whose paths are in `keys`
    /// (see [`copy::selection`](super::copy::selection)), extracted into a new directory the
    /// builder removes at the end of the build: what a `COPY --from` of a few paths reads,
    /// without writing the rest of the stage.
    pub fn selected_files(
        &self,
        b: &Builder<'_>,
        keys: &std::collections::BTreeSet<String>,
    ) -> Result<PathBuf, BuildError> {
        let dir = b.store.temp_dir("files-")?;
        let root = dir.path().join("root");
        fs_err::create_dir(&root)?;
        b.keep_temp(dir.keep());
        let keep = |rel: &std::path::Path| rel.to_str().is_some_and(|r| keys.contains(r));
        let mut selection = Selection::new(&keep);
        for layer in &self.image.layers {
            let reader = open_layer(b.store, layer)?;
            let times = Times::load(b.store, &layer.diff_id.to_string());
            let opts = ApplyOptions { times: times.as_ref(), ..Default::default() };
            apply_layer_selected(reader, &root, opts, &mut selection)
                .map_err(|e| BuildError::Internal(format!("extracting layer {}: {e}", layer.digest)))?;
        }
        Ok(root)
    }

    /// The files the copies other stages make of this one read (`sources`: all their sources),
    /// extracted once for all of them (see [`selected_files`](StageOut::selected_files)). `None`
    /// when the sources name the whole tree or the extraction failed: the whole tree serves then.
    pub fn copy_files(&mut self, b: &Builder<'_>, sources: &[String]) -> Option<PathBuf> {
        if let Some(made) = self.copies.get() {
            return made.clone();
        }
        self.index(b).ok()?;
        let keys = super::copy::selection(self.index.as_ref()?, sources);
        // Stages copying at the same time may both extract: the first set wins, and the other
        // tree is removed with the build's other temporary files.
        let made = keys.and_then(|keys| self.selected_files(b, &keys).ok());
        self.copies.get_or_init(|| made).clone()
    }

    /// The filesystem index, if made (see [`index`](StageOut::index)).
    pub fn made_index(&self) -> Option<&FsIndex> {
        self.index.as_ref()
    }

    /// Hands the extracted files (if any) to the builder, which removes them at the end of the
    /// build: for a stage dropped before the files copied from it are read.
    pub fn keep_files(self, b: &Builder<'_>) {
        if let Ok(cell) = Arc::try_unwrap(self.rootfs)
            && let Some(dir) = cell.into_inner()
        {
            b.keep_temp(dir.keep());
        }
    }

    /// Reads a small file from the stage's layers (topmost layer that has it), without extracting.
    pub fn read_file(&mut self, b: &Builder<'_>, path: &str) -> Option<String> {
        let index = self.index(b).ok()?;
        let resolved = index.resolve(path)?;
        index.get(&resolved).filter(|m| m.kind == Kind::File)?;
        for layer in self.image.layers.iter().rev() {
            let reader = open_layer(b.store, layer).ok()?;
            let mut archive = tar::Archive::new(reader);
            for entry in archive.entries().ok()?.flatten() {
                let mut entry = entry;
                let name = entry
                    .path()
                    .ok()?
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .trim_end_matches('/')
                    .to_string();
                if name == resolved && entry.header().entry_type().is_file() {
                    let mut s = String::new();
                    entry.by_ref().take(1 << 20).read_to_string(&mut s).ok()?;
                    return Some(s);
                }
            }
        }
        None
    }
}
