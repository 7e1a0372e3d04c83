//! The local content-addressed store, under `$XDG_CACHE_HOME/hako` (or `--root`).
//!
//! The store root is itself an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`), so
//! images kept in it can be read by any OCI tool and exported by hard links. Every write goes to a
//! temporary file in `tmp/` and is renamed into place after its digest is checked, so a build killed
//! at any point (kill -9 included) never leaves a partial blob under its final name; shared state
//! (`index.json`) is only rewritten under an exclusive file lock, so concurrent builds are safe.

pub(crate) mod direct;
mod lock;
pub(crate) mod pagecache;
mod writer;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub use lock::Lock;
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};
use tempfile::NamedTempFile;
pub use writer::{BlobWriter, Tee};

use crate::digest::Digest;

/// Annotation naming an image in an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Filesystem error (fs-err messages name the path).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Content did not hash to what was expected.
    #[error("content digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the caller expected.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Content had the wrong length.
    #[error("content of {digest} has {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Expected length.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// A blob is not in the store.
    #[error("blob {0} is not in the store")]
    Missing(Digest),
    /// `index.json` is unreadable.
    #[error("{path}: {source}")]
    Index {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A lock could not be taken.
    #[error("locking {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: nix::errno::Errno,
    },
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Blobs hashed as this process wrote them, by store root ([`Store::note_written`]).
static WRITTEN: std::sync::Mutex<std::collections::BTreeSet<(PathBuf, Digest)>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// An open store.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// `$XDG_CACHE_HOME/hako`, else `$HOME/.cache/hako`.
    pub fn default_root() -> Option<PathBuf> {
        if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
            return Some(PathBuf::from(x).join("hako"));
        }
        std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache/hako"))
    }

    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        for dir in ["blobs/sha256", "tmp", "locks"] {
            fs_err::create_dir_all(root.join(dir))?;
        }
        let store = Store { root: root.to_path_buf() };
        let layout = root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(store)
    }

    /// Reads an existing OCI layout (or store) without creating anything in it.
    pub fn open_readonly(root: &Path) -> Store {
        Store { root: root.to_path_buf() }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether a blob is present.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Notes that this process saw `d` hashed as it was written into this store: by one of its
    /// own blob writers, or by its sandbox helper, which reports the digests it computed. Such a
    /// blob is [fresh](Store::is_fresh).
    pub fn note_written(&self, d: &Digest) {
        if let Ok(mut set) = WRITTEN.lock() {
            set.insert((self.root.clone(), d.clone()));
        }
    }

    /// Whether this process saw `d` hashed as it was written here ([`Store::note_written`]): an
    /// export streams it without hashing it again. Other blobs were written by an earlier
    /// process, and are checked as they are read, in case the store was damaged since.
    pub fn is_fresh(&self, d: &Digest) -> bool {
        WRITTEN.lock().is_ok_and(|set| set.contains(&(self.root.clone(), d.clone())))
    }

    /// Forgets which blobs this process wrote here, as a later process would not know.
    #[cfg(test)]
    pub fn forget_written(&self) {
        if let Ok(mut set) = WRITTEN.lock() {
            set.retain(|(root, _)| root != &self.root);
        }
    }

    /// A writer for a new blob; call [`BlobWriter::commit`] to keep it.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        BlobWriter::new(self, None)
    }

    /// A [`BlobWriter`] whose bytes are copied into `tee` as well.
    pub fn teed_blob_writer(&self, tee: Tee) -> Result<BlobWriter> {
        BlobWriter::new(self, Some(tee))
    }

    /// Stores `bytes` as a blob.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let d = Digest::of(bytes);
        if self.has_blob(&d) {
            return Ok((d, bytes.len() as u64));
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes)?;
        w.commit(Some(&d))
    }

    /// Streams `reader` into the store, verifying `expected` (digest and size) when given.
    pub fn put_reader(
        &self,
        reader: &mut dyn Read,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64)> {
        let mut w = self.blob_writer()?;
        io::copy(reader, &mut w)?;
        let (d, n) = w.commit(expected.map(|(d, _)| d))?;
        if let Some((_, size)) = expected
            && size != n
        {
            return Err(StoreError::SizeMismatch { digest: d, expected: size, actual: n });
        }
        Ok((d, n))
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<fs_err::File> {
        let path = self.blob_path(d);
        if !path.is_file() {
            return Err(StoreError::Missing(d.clone()));
        }
        Ok(fs_err::File::open(path)?)
    }

    /// Reads a (small) blob fully and checks its digest: configs, manifests, indexes.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_blob(d)?.read_to_end(&mut bytes)?;
        let actual = Digest::of(&bytes);
        if &actual != d {
            return Err(StoreError::DigestMismatch { expected: d.clone(), actual });
        }
        Ok(bytes)
    }

    /// A fresh temporary directory inside the store (same filesystem as the blobs, so results can
    /// be renamed or hard-linked into place). Removed when dropped.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        Ok(tempfile::Builder::new().prefix(prefix).tempdir_in(self.root.join("tmp"))?)
    }

    /// Takes the exclusive lock `name` (blocking until it is free).
    pub fn lock(&self, name: &str) -> Result<Lock> {
        Lock::exclusive(&self.root.join("locks").join(name))
    }

    /// Writes `bytes` to `path` atomically (temporary file in the same directory, fsync, rename).
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        let mut tmp = NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Writes a file that only speeds builds up (a step record, a kept index, a compression memo)
    /// with temp file + rename but no fsync: a torn or empty one after a power loss fails to parse
    /// and counts as a miss, while the blobs such files name are synced before they are written.
    /// An fsync each would also make every build wait for other processes' dirty pages (ext4's
    /// ordered mode), which doubled a rebuild's time beside another builder.
    pub fn write_cache_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        let mut tmp = NamedTempFile::new_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The store's `index.json` (empty when there is none yet).
    pub fn index(&self) -> Result<ImageIndex> {
        let path = self.root.join("index.json");
        match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Index { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(empty_index()),
            Err(e) => Err(e.into()),
        }
    }

    /// Names `desc` (a manifest or index) as `name` in `index.json`, replacing an older image of the
    /// same name.
    pub fn tag(&self, name: &str, desc: &Descriptor) -> Result<()> {
        let _lock = self.lock("index")?;
        let mut index = self.index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|m| {
                m.annotations().as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str) != Some(name)
            })
            .cloned()
            .collect();
        let mut named = desc.clone();
        let mut annotations = named.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME.to_string(), name.to_string());
        named.set_annotations(Some(annotations));
        manifests.push(named);
        index.set_manifests(manifests);
        let bytes = serde_json::to_vec(&index)
            .map_err(|source| StoreError::Index { path: self.root.join("index.json"), source })?;
        self.write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// Removes the name `name` from `index.json`; whether it was there. The image's blobs stay
    /// until `hako prune` finds that nothing needs them.
    pub fn untag(&self, name: &str) -> Result<bool> {
        let _lock = self.lock("index")?;
        let mut index = self.index()?;
        let before = index.manifests().len();
        let kept: Vec<Descriptor> =
            index.manifests().iter().filter(|m| ref_name(m) != Some(name)).cloned().collect();
        if kept.len() == before {
            return Ok(false);
        }
        index.set_manifests(kept);
        let bytes = serde_json::to_vec(&index)
            .map_err(|source| StoreError::Index { path: self.root.join("index.json"), source })?;
        self.write_atomic(&self.root.join("index.json"), &bytes)?;
        Ok(true)
    }

    /// Every named entry of `index.json`: its name and descriptor, in the file's order.
    pub fn named(&self) -> Result<Vec<(String, Descriptor)>> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .filter_map(|m| ref_name(m).map(|n| (n.to_string(), m.clone())))
            .collect())
    }

    /// The descriptor named `name` in `index.json`.
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .find(|m| {
                m.annotations().as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str) == Some(name)
            })
            .cloned())
    }
}

/// The `org.opencontainers.image.ref.name` annotation of an index entry.
fn ref_name(m: &Descriptor) -> Option<&str> {
    m.annotations().as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str)
}

fn empty_index() -> ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
