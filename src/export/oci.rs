//! The OCI image layout exporter (`--output type=oci`): `oci-layout`, `index.json` and
//! `blobs/sha256/…`, as a directory (`tar=false`) or a tar stream.
//!
//! `index.json` has one entry per name, as BuildKit writes it: the same manifest descriptor
//! annotated with `io.containerd.image.name` (the full name, `docker.io/library/app:latest`) and
//! `org.opencontainers.image.ref.name` (the tag, `latest`), so `skopeo … oci:DIR:TAG` and
//! `umoci … --image DIR:TAG` find it by tag.

use std::collections::HashSet;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use oci_spec::image::Descriptor;
use serde_json::Value;
use tempfile::NamedTempFile;

use super::{
    Blob, BlobReader, ExportError, IMAGE_NAME, OCI_LAYOUT, Prepared, Result, TarStream, canonical_json,
    io_err, new_index,
};
use crate::store::pagecache::WriteBehind;
use crate::store::{REF_NAME, Store};

/// Writes the image `manifest` names (with its config and layers) into the OCI layout directory
/// `dir`, creating it if needed. An existing layout is merged into: its index entries are kept
/// unless they carry a ref name (tag) this export writes, and blobs already present (with the right
/// size) are left alone. Blobs are hard-linked from the store when it is on the same filesystem,
/// else copied (and verified); `index.json` is replaced atomically, after every blob is in place.
pub fn write_layout_dir(store: &Store, manifest: &Descriptor, names: &[String], dir: &Path) -> Result<()> {
    let Prepared { blobs, entries, .. } = Prepared::new(store, manifest, names)?;
    if let (Ok(a), Ok(b)) = (dir.canonicalize(), store.root().canonicalize())
        && a == b
    {
        return Err(ExportError::Destination {
            path: dir.to_path_buf(),
            reason: "is hako's own store; export somewhere else".into(),
        });
    }
    let index_path = dir.join("index.json");
    let existing = read_existing_index(dir)?;
    let blob_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blob_dir).map_err(io_err(&blob_dir))?;
    for b in blobs.unique() {
        place_blob(store, b, &blob_dir)?;
    }
    let layout = dir.join("oci-layout");
    if !layout.exists() {
        write_atomic(&layout, OCI_LAYOUT)?;
    }
    let index = match existing {
        Some(old) => merge_index(old, entries, &index_path)?,
        None => new_index(entries),
    };
    write_atomic(&index_path, &canonical_json(&index))
}

/// Streams the image as an OCI layout tar (`oci-archive:`) to `out`: `blobs/`, `blobs/sha256/`,
/// the layers, the config and the manifest, then `index.json` and `oci-layout` (after the blobs,
/// as in BuildKit's archives). The same image and names always give the same bytes.
pub fn write_layout_tar(
    store: &Store,
    manifest: &Descriptor,
    names: &[String],
    out: &mut dyn Write,
) -> Result<()> {
    layout_tar(store, manifest, names, out, None)
}

/// [`write_layout_tar`], going on after the blobs `present` when given (see
/// [`TarStream::resume`]).
pub(crate) fn layout_tar(
    store: &Store,
    manifest: &Descriptor,
    names: &[String],
    out: &mut dyn Write,
    present: Option<&[crate::digest::Digest]>,
) -> Result<()> {
    let Prepared { blobs, entries, .. } = Prepared::new(store, manifest, names)?;
    let index = new_index(entries);
    // Only now: nothing, not even the end of an archive, is written for a refused image.
    let mut tar = TarStream::resume(out, present);
    tar.blob_dirs()?;
    for b in blobs.unique() {
        tar.blob(store, b)?;
    }
    tar.file("index.json", &canonical_json(&index))?;
    tar.file("oci-layout", OCI_LAYOUT)?;
    tar.finish()
}

/// The `index.json` of an existing layout at `dir`, if there is one; refuses a directory whose
/// `oci-layout` or `index.json` is not an OCI layout's, rather than overwrite it.
fn read_existing_index(dir: &Path) -> Result<Option<Value>> {
    let not_layout = |path: &Path, why: String| ExportError::Destination {
        path: path.to_path_buf(),
        reason: format!("not an OCI image layout ({why}); refusing to overwrite it"),
    };
    let layout = dir.join("oci-layout");
    match std::fs::read(&layout) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|source| ExportError::Json { what: layout.display().to_string(), source })?;
            if !v.get("imageLayoutVersion").is_some_and(Value::is_string) {
                return Err(not_layout(&layout, "no imageLayoutVersion".into()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ExportError::Io { path: layout, source: e }),
    }
    let path = dir.join("index.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|source| ExportError::Json { what: path.display().to_string(), source })?;
            if !v.get("manifests").is_some_and(Value::is_array) {
                return Err(not_layout(&path, "no manifests list".into()));
            }
            Ok(Some(v))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExportError::Io { path, source: e }),
    }
}

fn annotation<'a>(entry: &'a Value, key: &str) -> Option<&'a str> {
    entry.get("annotations")?.get(key)?.as_str()
}

/// `old` with `entries` added: an old entry is dropped when it has a ref name that one of the new
/// entries has, or when it has none and a new entry without one names the same manifest and
/// image name (a repeated unnamed or digest-only export).
fn merge_index(mut old: Value, entries: Vec<Value>, path: &Path) -> Result<Value> {
    let refs: HashSet<&str> = entries.iter().filter_map(|e| annotation(e, REF_NAME)).collect();
    let unnamed: Vec<(Option<&str>, Option<&str>)> = entries
        .iter()
        .filter(|e| annotation(e, REF_NAME).is_none())
        .map(|e| (e.get("digest").and_then(Value::as_str), annotation(e, IMAGE_NAME)))
        .collect();
    let replaced = |e: &Value| match annotation(e, REF_NAME) {
        Some(r) => refs.contains(r),
        None => unnamed.contains(&(e.get("digest").and_then(Value::as_str), annotation(e, IMAGE_NAME))),
    };
    let Some(list) = old.get_mut("manifests").and_then(Value::as_array_mut) else {
        return Err(ExportError::Destination {
            path: path.to_path_buf(),
            reason: "no manifests list".into(),
        });
    };
    list.retain(|e| !replaced(e));
    list.extend(entries.iter().cloned());
    Ok(old)
}

/// Puts one blob into `blob_dir`: kept if present with the right size, else hard-linked from the
/// store, else copied through a verified stream.
fn place_blob(store: &Store, b: &Blob, blob_dir: &Path) -> Result<()> {
    let dest = blob_dir.join(b.digest.hex());
    match std::fs::symlink_metadata(&dest) {
        Ok(m) if m.is_file() && m.len() == b.size => return Ok(()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ExportError::Io { path: dest, source: e }),
    }
    let src = store.blob_path(&b.digest);
    // A wrong-sized file under the name is corrupt: replace it (the link cannot overwrite).
    if dest.exists() {
        std::fs::remove_file(&dest).map_err(io_err(&dest))?;
    }
    match std::fs::hard_link(&src, &dest) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        // Another filesystem (EXDEV), or links not permitted: copy instead.
        Err(_) => {}
    }
    let mut reader = BlobReader::open(store, b)?;
    let mut tmp = NamedTempFile::new_in(blob_dir).map_err(io_err(blob_dir))?;
    let tmp_path = tmp.path().to_path_buf();
    // Synced by `finish_file`, as a blob is: written behind the same way.
    io::copy(&mut reader, &mut WriteBehind::paced(tmp.as_file_mut()))
        .map_err(|source| reader.blame(ExportError::Io { path: tmp_path.clone(), source }))?;
    finish_file(tmp, &dest)
}

/// Writes `bytes` to `path` atomically (temporary file beside it, fsync, rename), mode 0644.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.write_all(bytes).map_err(io_err(&tmp_path))?;
    finish_file(tmp, path)
}

fn finish_file(tmp: NamedTempFile, path: &Path) -> Result<()> {
    let tmp_path = tmp.path().to_path_buf();
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io_err(&tmp_path))?;
    tmp.as_file().sync_all().map_err(io_err(&tmp_path))?;
    tmp.persist(path).map_err(|e| ExportError::Io { path: path.to_path_buf(), source: e.error })?;
    Ok(())
}
