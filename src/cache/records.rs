//! Step records: what a step with a given key produced — a layer, or nothing (a RUN that changed
//! no file, a WORKDIR that existed) — stored as small JSON files under `<store>/cache/steps/`.
//!
//! A record is written only after its layer blob is committed (the blob writer syncs it before
//! renaming it into place), with temp file + rename, so a build killed at any point never leaves
//! a record that names a missing blob or half a record; records are not synced themselves (one
//! torn by a power loss does not parse, and is a miss). Two builds writing the same record write
//! the same result (keys are content-based), so the last rename winning is harmless. A record's
//! layer is plain, or in the compression its build's outputs asked for
//! ([`crate::build::Options::compress_for`]); either is a hit for any build.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::key::CacheKey;
use crate::digest::Digest;
use crate::image::manifest::Layer;
use crate::store::{Store, StoreError};

/// Where [`Records::previous`] hints live, under the store.
pub const LINEAGE: &str = "cache/lineage";

/// The record format version (a record of another version is a miss).
const RECORD_VERSION: u32 = 1;

/// A step's result as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Format version.
    pub v: u32,
    /// The layer, if the step made one.
    pub layer: Option<LayerRecord>,
}

/// A layer descriptor in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Blob digest.
    pub digest: String,
    /// Uncompressed digest.
    pub diff_id: String,
    /// Blob size.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

impl LayerRecord {
    /// The record of `layer`.
    pub fn of(layer: &Layer) -> LayerRecord {
        LayerRecord {
            digest: layer.digest.to_string(),
            diff_id: layer.diff_id.to_string(),
            size: layer.size,
            media_type: layer.media_type.to_string(),
        }
    }

    /// Back to a layer; `None` when a field is malformed.
    pub fn to_layer(&self) -> Option<Layer> {
        Some(Layer {
            digest: Digest::parse(&self.digest).ok()?,
            diff_id: Digest::parse(&self.diff_id).ok()?,
            size: self.size,
            media_type: self.media_type.as_str().into(),
        })
    }
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// The step made this layer.
    Layer(Layer),
    /// The step made no layer.
    Empty,
}

/// A record file and what it holds (or why it cannot be read).
pub type Listed = (PathBuf, Result<Record, String>);

impl Hit {
    /// The layer, if the step made one.
    pub fn layer(&self) -> Option<&Layer> {
        match self {
            Hit::Layer(l) => Some(l),
            Hit::Empty => None,
        }
    }

    /// The layer, if the step made one.
    pub fn into_layer(self) -> Option<Layer> {
        match self {
            Hit::Layer(l) => Some(l),
            Hit::Empty => None,
        }
    }
}

/// The step records of a store.
pub struct Records<'a> {
    store: &'a Store,
}

impl<'a> Records<'a> {
    /// The records of `store`.
    pub fn new(store: &'a Store) -> Records<'a> {
        Records { store }
    }

    /// The directory holding the records.
    pub fn dir(store: &Store) -> PathBuf {
        store.root().join("cache/steps")
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        Records::dir(self.store).join(format!("{}.json", key.hex()))
    }

    /// The recorded result of `key`, if any and if its blob is still in the store (a record whose
    /// blob was removed, or that cannot be read, is a miss).
    pub fn get(&self, key: &CacheKey) -> Option<Hit> {
        let path = self.path(key);
        let bytes = std::fs::read(&path).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        if record.v != RECORD_VERSION {
            return None;
        }
        let hit = match record.layer {
            None => Hit::Empty,
            Some(l) => {
                let layer = l.to_layer()?;
                let on_disk = std::fs::metadata(self.store.blob_path(&layer.digest)).ok()?;
                if on_disk.len() != layer.size {
                    return None;
                }
                Hit::Layer(layer)
            }
        };
        touch(&path);
        Some(hit)
    }

    /// Records that `key` made `layer` (or nothing).
    pub fn put(&self, key: &CacheKey, layer: Option<&Layer>) -> Result<(), StoreError> {
        let record = Record { v: RECORD_VERSION, layer: layer.map(LayerRecord::of) };
        let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        fs_err::create_dir_all(Records::dir(self.store))?;
        self.store.write_cache_file(&self.path(key), &bytes)
    }

    /// The layer the step of shape `shape` (its key without the inputs found at build time, see
    /// [`super::key::shape`]) made when it last ran, if its blob is still here. A COPY whose
    /// sources changed can then have its sandbox snapshot made as the old one plus a delta.
    pub fn previous(&self, shape: &CacheKey) -> Option<Layer> {
        let bytes = std::fs::read(self.lineage_path(shape)).ok()?;
        let layer = serde_json::from_slice::<LayerRecord>(&bytes).ok()?.to_layer()?;
        self.store.blob_path(&layer.digest).exists().then_some(layer)
    }

    /// Notes that the step of shape `shape` just made `layer` (best effort: a hint, not a record).
    pub fn set_previous(&self, shape: &CacheKey, layer: &Layer) {
        let Ok(bytes) = serde_json::to_vec(&LayerRecord::of(layer)) else { return };
        let path = self.lineage_path(shape);
        if path.parent().is_some_and(|d| fs_err::create_dir_all(d).is_ok()) {
            let _ = self.store.write_cache_file(&path, &bytes);
        }
    }

    fn lineage_path(&self, shape: &CacheKey) -> PathBuf {
        self.store.root().join(LINEAGE).join(format!("{}.json", shape.hex()))
    }

    /// Every record: (file name, record or why it cannot be read).
    pub fn list(store: &Store) -> Result<Vec<Listed>, StoreError> {
        let dir = Records::dir(store);
        let mut out = Vec::new();
        let rd = match fs_err::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in rd {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let parsed = fs_err::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()));
            out.push((path, parsed));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// A record's mtime says when it was last used (`prune --filter until=` reads it). Best effort:
/// a read-only store still serves hits.
fn touch(path: &std::path::Path) {
    if let Ok(f) = std::fs::File::options().write(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}
