//! One `--output`, whatever its type: dispatches to the exporters, writing a file destination
//! atomically (temp file + rename, so a failed export never leaves half an archive) or to stdout.

use std::io::Write;
use std::path::Path;

use oci_spec::image::Descriptor;

use super::spec::OutputSpec;
use super::spool::Spool;
use crate::image::manifest::Image;
use crate::store::Store;
use crate::store::pagecache::WriteBehind;

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The OCI or docker exporter failed.
    #[error(transparent)]
    Export(#[from] super::ExportError),
    /// The filesystem exporter failed.
    #[error(transparent)]
    Fs(#[from] super::fs::FsExportError),
    /// Tagging in the store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The destination could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The destination.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `name=` that cannot name a kept image.
    #[error("name {0:?}: {1}")]
    Name(String, crate::image::reference::ReferenceError),
    /// The spec lacks what its type needs.
    #[error("{0}")]
    Spec(&'static str),
}

/// Writes the image as `spec` says: `manifest` (in the store) is the image as this output ships
/// it — the caller compresses its layers as the spec's [`compression`](OutputSpec::compression)
/// asks — and `image` its layers and config; `tags` name it where the spec gives no `name=`.
/// Registry outputs are pushed by the caller, after every local output is written. An archive
/// output started during the build ([`Spool`], made for this spec's `dest`) is finished instead
/// of written anew.
pub fn write_output(
    store: &Store,
    manifest: &Descriptor,
    image: &Image,
    spec: &OutputSpec,
    tags: &[String],
    clamp: Option<i64>,
    spool: Option<Spool>,
) -> Result<(), WriteError> {
    let names = {
        let n = spec.names();
        if n.is_empty() { tags.to_vec() } else { n }
    };
    let spool = spool.filter(|s| spec.archive_file() == Some(s.dest()));
    match spec {
        OutputSpec::Oci { dest, tar: false, .. } => {
            let dir = dest.as_ref().ok_or(WriteError::Spec("type=oci,tar=false needs dest=DIR"))?;
            Ok(super::oci::write_layout_dir(store, manifest, &names, dir)?)
        }
        OutputSpec::Oci { dest, .. } => archive(store, manifest, dest.as_deref(), spool, |w, present| {
            super::oci::layout_tar(store, manifest, &names, w, present)
        }),
        OutputSpec::Docker { dest, .. } => archive(store, manifest, dest.as_deref(), spool, |w, present| {
            super::docker::docker_archive(store, manifest, &names, w, present)
        }),
        OutputSpec::Local { dest } => Ok(super::fs::write_local(store, image, dest)?),
        OutputSpec::Tar { dest } => {
            to(dest.as_deref(), |w| Ok(super::fs::write_tar(store, image, clamp, w)?))
        }
        OutputSpec::Image { push: false, .. } => {
            for n in &names {
                // Kept under Docker's familiar name, as `-t` names are.
                let name = crate::image::stored::store_name(n).map_err(|e| WriteError::Name(n.clone(), e))?;
                store.tag(&name, manifest)?;
            }
            Ok(())
        }
        OutputSpec::Registry { .. } | OutputSpec::Image { push: true, .. } => Ok(()),
    }
}

/// An image archive made by `write` (an exporter, given the writer and the blobs it holds
/// already): finished from `spool`, started during the build for this output, or else written
/// whole to `dest`.
fn archive(
    store: &Store,
    manifest: &Descriptor,
    dest: Option<&Path>,
    spool: Option<Spool>,
    write: impl FnOnce(&mut dyn Write, Option<&[crate::digest::Digest]>) -> super::Result<()>,
) -> Result<(), WriteError> {
    match spool {
        Some(s) => Ok(s.finish(store, manifest, write)?),
        None => to(dest, |w| Ok(write(w, None)?)),
    }
}

/// Runs `f` on the destination file (written atomically) or on stdout (`None` or `-`).
fn to(
    dest: Option<&Path>,
    f: impl FnOnce(&mut dyn Write) -> Result<(), WriteError>,
) -> Result<(), WriteError> {
    let Some(p) = dest.filter(|p| p.as_os_str() != "-") else {
        return f(&mut std::io::stdout().lock());
    };
    let io = |source| WriteError::Io { path: p.to_path_buf(), source };
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    {
        // Written behind: an archive is read by whatever takes it next, not by this build.
        let mut w = std::io::BufWriter::new(WriteBehind::unpaced(tmp.as_file_mut()));
        f(&mut w)?;
        w.flush().map_err(io)?;
    }
    tmp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(io)?;
    tmp.persist(p).map_err(|e| io(e.error))?;
    Ok(())
}
