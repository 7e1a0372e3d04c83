//! Exporters: an OCI image layout as a directory or a tar ([`oci`]), the `docker load` archive
//! ([`docker`]), the final filesystem as files or a tar ([`fs`]), and the buildx `--output` syntax
//! that selects them ([`spec`]).
//!
//! Every exporter reads the image from the [`Store`] by its manifest descriptor: the manifest blob
//! names the config and the layers. Archives are streamed (blob contents go from the store files to
//! the output in bounded buffers, each blob's digest checked as it passes) and are deterministic:
//! the same image and names give the same bytes.

pub mod docker;
pub mod fs;
pub mod load;
pub mod oci;
pub use crate::image::reference;
pub mod spec;
pub mod spool;
pub mod write;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use serde_json::Value;

use crate::digest::{BadDigest, Digest, HashingReader};
use crate::image::manifest::DOCKER_MANIFEST;
use crate::store::pagecache::DropBehind;
use crate::store::{REF_NAME, Store, StoreError};
use reference::ImageName;

/// The containerd annotation holding an image's full name in an OCI layout's `index.json`.
pub const IMAGE_NAME: &str = "io.containerd.image.name";

/// The `oci-layout` file's content.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Export failures.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The output stream failed (a closed pipe, a full disk).
    #[error("writing {entry} to the output: {source}")]
    Output {
        /// The archive entry being written.
        entry: String,
        /// Why.
        source: io::Error,
    },
    /// The store failed (a missing blob; its I/O errors name the path).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A blob in the store does not match its descriptor.
    #[error("{path}: blob is corrupt: {reason}")]
    Corrupt {
        /// The blob file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// Bad JSON in a manifest or an existing `index.json`.
    #[error("{what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A descriptor digest that hako cannot use.
    #[error(transparent)]
    Digest(#[from] BadDigest),
    /// An image name that is not a valid reference.
    #[error("invalid image name {name:?}: {reason}")]
    Name {
        /// The name as given.
        name: String,
        /// Why.
        reason: String,
    },
    /// An existing destination that cannot be merged into.
    #[error("{path}: {reason}")]
    Destination {
        /// The destination.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Something hako does not export yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),
}

/// Result of export operations.
pub type Result<T> = std::result::Result<T, ExportError>;

/// Attaches a path to an I/O error.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.to_path_buf(), source }
}

/// A blob of the image: its digest and size as the manifest records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

impl Blob {
    /// `blobs/sha256/<hex>`.
    pub fn entry(&self) -> String {
        format!("blobs/sha256/{}", self.digest.hex())
    }
}

/// The blobs an image manifest ties together.
#[derive(Debug, Clone)]
pub(crate) struct ImageBlobs {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl ImageBlobs {
    /// Reads the manifest `desc` names from the store (verified) and lists its blobs, each checked
    /// to be present with the size its descriptor gives, so nothing is written for an image whose
    /// blobs are not all there.
    pub fn read(store: &Store, desc: &Descriptor) -> Result<ImageBlobs> {
        match desc.media_type() {
            MediaType::ImageManifest => {}
            MediaType::ImageIndex => {
                return Err(ExportError::Unsupported("exporting a multi-platform image index".into()));
            }
            other if other.to_string() == DOCKER_MANIFEST => {}
            other => return Err(ExportError::Unsupported(format!("exporting a {other} manifest"))),
        }
        let manifest = Blob { digest: Digest::parse(desc.digest().as_ref())?, size: desc.size() };
        let bytes = store.read_blob(&manifest.digest)?;
        if bytes.len() as u64 != manifest.size {
            return Err(ExportError::Corrupt {
                path: store.blob_path(&manifest.digest),
                reason: format!("{} bytes, its descriptor says {}", bytes.len(), manifest.size),
            });
        }
        let parsed: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|source| ExportError::Json { what: format!("manifest {}", manifest.digest), source })?;
        let blob = |d: &Descriptor| -> Result<Blob> {
            Ok(Blob { digest: Digest::parse(d.digest().as_ref())?, size: d.size() })
        };
        let blobs = ImageBlobs {
            config: blob(parsed.config())?,
            layers: parsed.layers().iter().map(blob).collect::<Result<_>>()?,
            manifest,
        };
        for b in blobs.unique() {
            check_size(store, b)?;
        }
        Ok(blobs)
    }

    /// Every blob once, in the order archives hold them: the layers in order, the config, then
    /// the manifest. Layers come first so that an archive can be written while the build makes
    /// them ([`spool`]), and it is the same order whether it was or not.
    pub fn unique(&self) -> Vec<&Blob> {
        let mut seen = HashSet::new();
        self.layers
            .iter()
            .chain(std::iter::once(&self.config))
            .chain(std::iter::once(&self.manifest))
            .filter(|b| seen.insert(&b.digest))
            .collect()
    }
}

/// Checks that a blob is in the store with the expected size.
fn check_size(store: &Store, b: &Blob) -> Result<()> {
    let path = store.blob_path(&b.digest);
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Err(StoreError::Missing(b.digest.clone()).into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::Missing(b.digest.clone()).into());
        }
        Err(e) => return Err(ExportError::Io { path, source: e }),
    };
    if meta.len() != b.size {
        return Err(ExportError::Corrupt {
            path,
            reason: format!("{} bytes, its descriptor says {}", meta.len(), b.size),
        });
    }
    Ok(())
}

/// What every exporter starts from: the normalised names, the image's blobs (all present, checked
/// before anything is written) and its `index.json` entries under those names.
pub(crate) struct Prepared {
    pub names: Vec<ImageName>,
    pub blobs: ImageBlobs,
    pub entries: Vec<Value>,
}

impl Prepared {
    /// Reads what exporting `manifest` under `names` needs.
    pub fn new(store: &Store, manifest: &Descriptor, names: &[String]) -> Result<Prepared> {
        let names = parse_names(names)?;
        let blobs = ImageBlobs::read(store, manifest)?;
        let entries = index_entries(manifest, &names)?;
        Ok(Prepared { names, blobs, entries })
    }
}

/// Parses and normalises `names`, dropping duplicates (same full name), keeping their order.
fn parse_names(names: &[String]) -> Result<Vec<ImageName>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for n in names {
        let parsed =
            ImageName::parse(n).map_err(|e| ExportError::Name { name: n.clone(), reason: e.to_string() })?;
        if seen.insert(parsed.full()) {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// The `index.json` entries for `manifest` under `names`, as BuildKit writes them: one per name,
/// annotated with the full name (`io.containerd.image.name`) and the tag
/// (`org.opencontainers.image.ref.name`; absent for a digest-only name); one plain entry when there
/// are no names. Annotations the descriptor carried (such as the store's own ref name) are dropped.
fn index_entries(manifest: &Descriptor, names: &[ImageName]) -> Result<Vec<Value>> {
    let mut plain = manifest.clone();
    plain.set_annotations(None);
    let base = serde_json::to_value(&plain)
        .map_err(|source| ExportError::Json { what: "manifest descriptor".into(), source })?;
    if names.is_empty() {
        return Ok(vec![base]);
    }
    Ok(names
        .iter()
        .map(|n| {
            let mut entry = base.clone();
            let mut annotations = serde_json::Map::new();
            annotations.insert(IMAGE_NAME.into(), Value::String(n.full()));
            if let Some(tag) = n.tag_or_latest() {
                annotations.insert(REF_NAME.into(), Value::String(tag.into()));
            }
            if let Value::Object(o) = &mut entry {
                o.insert("annotations".into(), Value::Object(annotations));
            }
            entry
        })
        .collect())
}

/// A fresh `index.json` holding `entries`.
pub(crate) fn new_index(entries: Vec<Value>) -> Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageIndex.to_string(),
        "manifests": entries,
    })
}

/// JSON with every object's keys sorted (whatever serde_json's map type), so documents built from
/// hash maps serialise identically every time.
pub(crate) fn canonical_json(v: &Value) -> Vec<u8> {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&o[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // Serialising a `Value` cannot fail (its keys are strings).
    serde_json::to_vec(&sorted(v)).unwrap_or_default()
}

/// Reads a store blob, checking its size and digest as it streams; a mismatch becomes an error at
/// the end of the blob. The failure itself is kept in `failure` (the `io::Error` that the reader
/// returns is only the signal), so callers can tell a bad blob from a failing output.
pub(crate) struct BlobReader {
    /// Taken when the blob has been read whole.
    inner: Option<HashingReader<DropBehind<File>>>,
    path: PathBuf,
    digest: Digest,
    /// Hashed as this process wrote it: not hashed again.
    fresh: bool,
    remaining: u64,
    pub failure: Option<ExportError>,
}

impl BlobReader {
    /// Opens `blob` in `store`.
    pub fn open(store: &Store, blob: &Blob) -> Result<BlobReader> {
        let path = store.blob_path(&blob.digest);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ExportError::Store(StoreError::Missing(blob.digest.clone()))
            } else {
                ExportError::Io { path: path.clone(), source: e }
            }
        })?;
        Ok(BlobReader {
            inner: Some(HashingReader::new(DropBehind::new(file))),
            fresh: store.is_fresh(&blob.digest),
            path,
            digest: blob.digest.clone(),
            remaining: blob.size,
            failure: None,
        })
    }

    fn fail(&mut self, e: ExportError) -> io::Error {
        let signal = io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        self.failure = Some(e);
        signal
    }

    /// The error to report for a failed copy: the blob's own failure if it had one.
    pub fn blame(&mut self, other: ExportError) -> ExportError {
        self.failure.take().unwrap_or(other)
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let Some(inner) = self.inner.as_mut() else { return Ok(0) };
        let max = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read =
            if self.fresh { inner.get_mut().read(&mut buf[..max]) } else { inner.read(&mut buf[..max]) };
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let err = ExportError::Io { path: self.path.clone(), source: e };
                return Err(self.fail(err));
            }
        };
        if n == 0 {
            let err = ExportError::Corrupt {
                path: self.path.clone(),
                reason: format!("ended {} bytes early", self.remaining),
            };
            return Err(self.fail(err));
        }
        self.remaining -= n as u64;
        if self.remaining == 0
            && let Some(done) = self.inner.take()
            && !self.fresh
        {
            let (actual, _) = done.finish();
            if actual != self.digest {
                let err = ExportError::Corrupt {
                    path: self.path.clone(),
                    reason: format!("content hashes to {actual}, expected {}", self.digest),
                };
                return Err(self.fail(err));
            }
        }
        Ok(n)
    }
}

/// A deterministic tar stream: every entry owned by 0:0, mtime 0, mode 0644 (directories 0755),
/// no user or group names, ustar headers.
pub(crate) struct TarStream<'a> {
    builder: tar::Builder<BufWriter<&'a mut dyn Write>>,
    /// Blobs the archive holds already, with the `blobs/` directories (a spooled archive's).
    present: Option<&'a [Digest]>,
}

impl<'a> TarStream<'a> {
    /// Wraps `out` (buffered: stdout's line buffering would split the stream into small writes).
    pub fn new(out: &'a mut dyn Write) -> TarStream<'a> {
        TarStream { builder: tar::Builder::new(BufWriter::with_capacity(1 << 20, out)), present: None }
    }

    /// With `present`, goes on with an archive that holds the `blobs/` directories and those
    /// blobs already, in the order the exporter writes them: they are not written again.
    pub fn resume(out: &'a mut dyn Write, present: Option<&'a [Digest]>) -> TarStream<'a> {
        TarStream { present, ..TarStream::new(out) }
    }

    pub(crate) fn header(path: &str, kind: tar::EntryType, size: u64) -> Result<tar::Header> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).map_err(|source| ExportError::Output { entry: path.into(), source })?;
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        Ok(h)
    }

    /// The `blobs/` and `blobs/sha256/` directories (unless resumed: there already).
    pub fn blob_dirs(&mut self) -> Result<()> {
        if self.present.is_some() {
            return Ok(());
        }
        self.dir("blobs/")?;
        self.dir("blobs/sha256/")
    }

    /// A directory entry (`path` ends with `/`).
    fn dir(&mut self, path: &str) -> Result<()> {
        let h = Self::header(path, tar::EntryType::Directory, 0)?;
        self.builder
            .append(&h, io::empty())
            .map_err(|source| ExportError::Output { entry: path.into(), source })
    }

    /// A file entry with `bytes`.
    pub fn file(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        let h = Self::header(path, tar::EntryType::Regular, bytes.len() as u64)?;
        self.builder.append(&h, bytes).map_err(|source| ExportError::Output { entry: path.into(), source })
    }

    /// A blob from the store, streamed and verified, at `blobs/sha256/<hex>` (unless resumed
    /// with it present).
    pub fn blob(&mut self, store: &Store, blob: &Blob) -> Result<()> {
        if self.present.is_some_and(|p| p.contains(&blob.digest)) {
            return Ok(());
        }
        let entry = blob.entry();
        let h = Self::header(&entry, tar::EntryType::Regular, blob.size)?;
        let mut reader = BlobReader::open(store, blob)?;
        let mut buf = Vec::new();
        // The header alone, then the content in big reads (a layer can be gigabytes).
        self.builder
            .append(&h, io::empty())
            .and_then(|()| {
                crate::layer::append_content(self.builder.get_mut(), &mut reader, blob.size, &mut buf)
            })
            .map_err(|source| reader.blame(ExportError::Output { entry, source }))
    }

    /// Writes the end-of-archive marker and flushes.
    pub fn finish(self) -> Result<()> {
        let out_err = |source| ExportError::Output { entry: "the end of the archive".into(), source };
        let mut out = self.builder.into_inner().map_err(out_err)?;
        out.flush().map_err(out_err)
    }
}
