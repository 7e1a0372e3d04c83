//! The final filesystem as plain files (`--output type=local,dest=DIR`) or as one tar
//! (`type=tar`): the image's layers applied in order, whiteouts honoured, never writing outside
//! the destination.

use std::io::Write;
use std::path::Path;

use crate::image::manifest::Image;
use crate::layer::extract::{ApplyOptions, apply_layer};
use crate::layer::index::{FsIndex, Kind};
use crate::layer::pyc::Sources;
use crate::layer::{LayerWriter, open_layer};
use crate::store::Store;

/// Errors of the filesystem exporters.
#[derive(Debug, thiserror::Error)]
pub enum FsExportError {
    /// Store or I/O failure.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// I/O (fs-err messages name the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A layer could not be applied.
    #[error("applying layer {digest}: {message}")]
    Apply {
        /// The layer.
        digest: String,
        /// Why.
        message: String,
    },
}

/// Writes the image's filesystem into `dest` (created if missing). Files belong to the caller;
/// device nodes are skipped.
pub fn write_local(store: &Store, image: &Image, dest: &Path) -> Result<(), FsExportError> {
    fs_err::create_dir_all(dest)?;
    for layer in &image.layers {
        apply_layer(open_layer(store, layer)?, dest, ApplyOptions::default())
            .map_err(|e| FsExportError::Apply { digest: layer.digest.to_string(), message: e.to_string() })?;
    }
    Ok(())
}

/// Streams the image's filesystem as one uncompressed, deterministic tar (owners and modes as in
/// the image, paths in [`crate::layer::tar_order`]).
pub fn write_tar(
    store: &Store,
    image: &Image,
    clamp: Option<i64>,
    out: &mut dyn Write,
) -> Result<(), FsExportError> {
    let tmp = store.temp_dir("flatten-")?;
    let root = tmp.path().join("root");
    write_local(store, image, &root)?;
    let mut index = FsIndex::new();
    for layer in &image.layers {
        index
            .apply_tar(open_layer(store, layer)?)
            .map_err(|e| FsExportError::Apply { digest: layer.digest.to_string(), message: e.to_string() })?;
    }
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    // In layer order, as BuildKit's tar exporter walks the tree.
    let mut entries: Vec<_> = index
        .walk("")
        .filter(|(path, _)| !path.is_empty())
        .map(|(path, meta)| (path, meta, root.join(path)))
        .collect();
    entries.sort_by(|a, b| crate::layer::tar_order(a.0, b.0));
    // The clamp reaches the base image's files here too: their `.pyc` files must follow.
    let pycs = Sources::of(entries.iter().map(|(p, m, f)| (*p, *m, Some(f.as_path()))), clamp);
    for &(path, meta, ref file) in &entries {
        let mut h = LayerWriter::header(meta, clamp);
        match &meta.kind {
            Kind::File => {
                let mut f = fs_err::File::open(file)?;
                tar.append_data(&mut h, path, pycs.content(path, &mut f)?)?;
            }
            Kind::Dir => tar.append_data(&mut h, format!("{path}/"), std::io::empty())?,
            // A flattened tree has no layer order to keep link targets ahead of links (and a
            // later layer may have removed a target), so hard links become plain copies.
            Kind::Hardlink(_) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(meta.size);
                let mut f = fs_err::File::open(file)?;
                tar.append_data(&mut h, path, &mut f)?;
            }
            Kind::Symlink(t) => tar.append_link(&mut h, path, t)?,
            _ => tar.append_data(&mut h, path, std::io::empty())?,
        }
    }
    tar.finish()?;
    Ok(())
}
