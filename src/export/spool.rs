//! An archive output (`type=oci` or `type=docker` to a file) written while the build runs, so a
//! big layer goes to it as it is made instead of being read back from the store at the end.
//!
//! Archives hold their blobs first, the image's layers in order (`ImageBlobs::unique`),
//! and a layer's blob is written only after the layers below it. So while the build makes the
//! target image's layers, one after the other, the archive can grow with them: before a step
//! that makes one, [`Spool::prepare`] appends the layers below it that it lacks (from the store)
//! and says where the new blob's bytes go; the step's blob writer copies them there as it writes
//! the store's blob; [`Spool::teed`] then writes the entry's header before them, now that the
//! size and digest are known. At the end, `Spool::finish` appends what is missing (any layers
//! left, the config, the manifest, `index.json`…) and gives the file its name.
//!
//! The bytes are those the exporter writes in one go: when the image's blobs do not start with
//! what was spooled (a stage that turned out not to be the image's, a recompressed output),
//! finishing starts the archive over.
//!
//! The file has no name until it is finished (`O_TMPFILE` in the destination's directory): the
//! destination is often inside the build context, where a growing temporary file would be seen by
//! `COPY .` and bind mounts; and a failed or killed build leaves nothing behind. The steps'
//! sandbox helpers get the descriptor when they start: they may run in a user namespace where no
//! path or `/proc` entry of the builder's could be opened. Where `O_TMPFILE` is not supported,
//! the archive is written at the end, as any other output.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;

use super::{Blob, BlobReader, ExportError, ImageBlobs, Result, TarStream, io_err};
use crate::digest::Digest;
use crate::store::Store;
use crate::store::pagecache::WriteBehind;

/// Bytes of a tar header, and the unit entries are padded to.
const BLOCK: u64 = 512;

/// An archive being written while the build runs (see the module doc).
#[derive(Debug)]
pub struct Spool {
    /// Unnamed until [`Spool::finish`].
    file: File,
    dest: PathBuf,
    /// Where the whole entries end: the `blobs/` directories, then each blob in [`Spool::present`].
    /// What lies beyond is unfinished and is written over.
    end: u64,
    /// The blobs the archive holds, in order.
    present: Vec<Digest>,
    /// A blob's bytes are being copied in after the header to be written at `end`.
    teeing: bool,
}

impl Spool {
    /// Starts the archive for `dest` as an unnamed file in its directory, with the `blobs/`
    /// directories.
    pub fn create(dest: &Path) -> Result<Spool> {
        // Readable too: where it cannot be linked into place, it is copied (`name`).
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_TMPFILE)
            .open(dir_of(dest))
            .map_err(io_err(dest))?;
        // What `TarStream::blob_dirs` writes: a header each, no content.
        let mut head = Vec::new();
        for dir in ["blobs/", "blobs/sha256/"] {
            head.extend_from_slice(TarStream::header(dir, tar::EntryType::Directory, 0)?.as_bytes());
        }
        file.write_all(&head).map_err(io_err(dest))?;
        Ok(Spool {
            file,
            dest: dest.to_path_buf(),
            end: head.len() as u64,
            present: Vec::new(),
            teeing: false,
        })
    }

    /// The archive's final name.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The archive's file, for the sandbox helpers to write blobs into (at positions: its
    /// offset is shared with theirs).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Readies the archive for a step on `layers` (bottom first) that makes a layer of the
    /// image: appends those it lacks, and says where in the file the new layer's blob goes.
    /// None when the archive holds other blobs than `layers` start with, or a blob cannot be
    /// appended (the export then writes it).
    pub fn prepare(&mut self, store: &Store, layers: &[Blob]) -> Option<u64> {
        self.teeing = false;
        let mut want: Vec<&Blob> = Vec::new();
        for l in layers {
            if !want.iter().any(|w| w.digest == l.digest) {
                want.push(l);
            }
        }
        let held = self.present.len();
        if want.len() < held || want[..held].iter().zip(&self.present).any(|(w, p)| &w.digest != p) {
            return None;
        }
        for b in &want[held..] {
            if self.append(store, b).is_err() {
                return None;
            }
        }
        self.teeing = true;
        Some(self.end + BLOCK)
    }

    /// The step given the last [`Spool::prepare`]'s offset copied all of `blob` there: its header
    /// goes before it, its padding after. A blob the archive holds already is left where it was.
    pub fn teed(&mut self, blob: &Blob) -> Result<()> {
        if !std::mem::take(&mut self.teeing) || self.present.contains(&blob.digest) {
            return Ok(());
        }
        let header = TarStream::header(&blob.entry(), tar::EntryType::Regular, blob.size)?;
        let path = &self.dest;
        self.file.write_all_at(header.as_bytes(), self.end).map_err(io_err(path))?;
        let data_end = self.end + BLOCK + blob.size;
        let pad = padding(blob.size);
        self.file.write_all_at(&[0; BLOCK as usize][..pad as usize], data_end).map_err(io_err(path))?;
        self.end = data_end + pad;
        self.present.push(blob.digest.clone());
        Ok(())
    }

    /// Appends `blob` from the store as a whole entry.
    fn append(&mut self, store: &Store, blob: &Blob) -> Result<()> {
        let path = self.dest.clone();
        let mut file = &self.file;
        file.seek(SeekFrom::Start(self.end)).map_err(io_err(&path))?;
        let mut out = BufWriter::with_capacity(1 << 20, WriteBehind::unpaced_from(file, self.end));
        let header = TarStream::header(&blob.entry(), tar::EntryType::Regular, blob.size)?;
        let mut reader = BlobReader::open(store, blob)?;
        out.write_all(header.as_bytes())
            .and_then(|()| crate::layer::append_content(&mut out, &mut reader, blob.size, &mut Vec::new()))
            .and_then(|()| out.flush())
            .map_err(|source| reader.blame(ExportError::Io { path: path.clone(), source }))?;
        self.end += BLOCK + blob.size + padding(blob.size);
        self.present.push(blob.digest.clone());
        Ok(())
    }

    /// Finishes the archive of the image `manifest` names with `write` (the exporter, given the
    /// file to go on writing and the blobs it holds, if any) and gives it its name. Starts over
    /// when the image's blobs do not begin with those spooled.
    pub(crate) fn finish(
        self,
        store: &Store,
        manifest: &Descriptor,
        write: impl FnOnce(&mut dyn Write, Option<&[Digest]>) -> Result<()>,
    ) -> Result<()> {
        self.finish_linking(store, manifest, write, link)
    }

    /// [`Spool::finish`], naming the file with `link` (the tests make it fail).
    pub(super) fn finish_linking(
        mut self,
        store: &Store,
        manifest: &Descriptor,
        write: impl FnOnce(&mut dyn Write, Option<&[Digest]>) -> Result<()>,
        link: fn(&File, &Path) -> io::Result<()>,
    ) -> Result<()> {
        let order: Vec<Digest> =
            ImageBlobs::read(store, manifest)?.unique().into_iter().map(|b| b.digest.clone()).collect();
        if !order.starts_with(&self.present) {
            self.present.clear();
            self.end = 0;
        }
        let path = self.dest.clone();
        let mut file = &self.file;
        file.set_len(self.end).map_err(io_err(&path))?;
        file.seek(SeekFrom::Start(self.end)).map_err(io_err(&path))?;
        {
            let mut out = WriteBehind::unpaced_from(file, self.end);
            write(&mut out, (self.end > 0).then_some(&self.present[..]))?;
            out.flush().map_err(io_err(&path))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io_err(&path))?;
        // A name beside the destination, then the destination's: it is replaced at once, as
        // `write::to` replaces it.
        let dir = dir_of(&self.dest);
        let persisted = match tempfile::Builder::new().make_in(dir, |p| link(&self.file, p)) {
            Ok(named) => named.persist(&self.dest).map(drop).map_err(|e| e.error),
            // Nowhere to link it from (no /proc, and not root): copied, as a last resort.
            Err(_) => {
                let mut copy = tempfile::NamedTempFile::new_in(dir).map_err(io_err(&path))?;
                let mut from = &self.file;
                from.seek(SeekFrom::Start(0))
                    .and_then(|_| io::copy(&mut from, &mut WriteBehind::unpaced(copy.as_file_mut())))
                    .and_then(|_| copy.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)))
                    .map_err(io_err(&path))?;
                copy.persist(&self.dest).map(drop).map_err(|e| e.error)
            }
        };
        persisted.map_err(|source| ExportError::Io { path, source })
    }
}

/// The zeros after `size` bytes of content that end its last block.
fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// The directory `dest` is in.
fn dir_of(dest: &Path) -> &Path {
    dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Gives the unnamed `file` the name `to`: by its descriptor where that is allowed (with
/// CAP_DAC_READ_SEARCH), else through `/proc/self/fd`, as open(2) describes for `O_TMPFILE`.
fn link(file: &File, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let to = CString::new(to.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let fd = file.as_raw_fd();
    // SAFETY: plain system calls with NUL-terminated paths that outlive them.
    let by_fd = unsafe {
        nix::libc::linkat(fd, c"".as_ptr(), nix::libc::AT_FDCWD, to.as_ptr(), nix::libc::AT_EMPTY_PATH)
    };
    if by_fd == 0 {
        return Ok(());
    }
    let proc = CString::new(format!("/proc/self/fd/{fd}")).map_err(io::Error::other)?;
    // SAFETY: as above.
    let by_proc = unsafe {
        nix::libc::linkat(
            nix::libc::AT_FDCWD,
            proc.as_ptr(),
            nix::libc::AT_FDCWD,
            to.as_ptr(),
            nix::libc::AT_SYMLINK_FOLLOW,
        )
    };
    if by_proc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
