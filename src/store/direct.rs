//! Writing a big file past the page cache (`O_DIRECT`), where the file system allows it: the
//! disk reads the bytes from the writer's own buffer, so no page-cache page is filled, dirtied,
//! written back and dropped on the way.
//!
//! A blob and an archive's copy of it are streamed once and read later, if at all (see
//! [`super::pagecache`]). Through the page cache, each costs a copy into fresh pages, their
//! writeback and their reclaim, on the cores that are hashing the same bytes; on a VM whose free
//! memory the host reclaims, every fresh page costs a host fault as well. A 1 GiB layer written
//! to the store and teed into an archive took 0.5 s more than written to the store alone.
//!
//! Direct I/O needs the buffer, the position and the length aligned as the file system says
//! (`statx` `STATX_DIOALIGN`, Linux ≥ 6.1). Full chunks are ([`Chunk`]); the last, short one is
//! written through the page cache, as is everything on a file system, kernel or position that
//! does not allow it. Hand-written: neither std nor nix offers aligned buffers or `STATX_DIOALIGN`.

use std::fs::File;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Bytes in a [`Chunk`].
pub(crate) const CHUNK: usize = 1 << 20;

/// The alignment of a [`Chunk`]'s bytes: a page, more than any disk asks for.
const ALIGN: usize = 4096;

#[repr(C, align(4096))]
struct Bytes([u8; CHUNK]);

/// A buffer of [`CHUNK`] bytes aligned for direct I/O, filled from its start. Allocated at the
/// first byte and never zeroed: a blob of a few hundred bytes touches one page of it.
pub(crate) struct Chunk {
    bytes: Option<Box<MaybeUninit<Bytes>>>,
    len: usize,
}

impl Chunk {
    /// An empty chunk (nothing allocated yet).
    pub(crate) fn new() -> Chunk {
        Chunk { bytes: None, len: 0 }
    }

    /// Appends what fits of `data`; says how much that was.
    pub(crate) fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(CHUNK - self.len);
        if n == 0 {
            return 0;
        }
        let bytes = self.bytes.get_or_insert_with(Box::new_uninit);
        // SAFETY: `len + n <= CHUNK`, so the copy stays inside the buffer, which `data` (a
        // shared borrow) cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), bytes.as_mut_ptr().cast::<u8>().add(self.len), n)
        };
        self.len += n;
        n
    }

    /// Whether it holds [`CHUNK`] bytes.
    pub(crate) fn is_full(&self) -> bool {
        self.len == CHUNK
    }

    /// Empties it (keeping its buffer).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// The bytes it holds.
    pub(crate) fn bytes(&self) -> &[u8] {
        match &self.bytes {
            // SAFETY: `push` wrote the first `len` bytes.
            Some(b) => unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u8>(), self.len) },
            None => &[],
        }
    }
}

/// A file written at increasing positions from `pos`: directly while the writes are aligned,
/// through the page cache from the first one that is not (the end of the file), or everywhere
/// where direct I/O is not available.
pub(crate) struct Direct {
    /// The file as given, for writes through the page cache.
    file: File,
    /// The same file opened for direct I/O, and its alignments (memory, position and length).
    direct: Option<(File, usize, u64)>,
    pos: u64,
}

impl Direct {
    /// Writes to `file` from `pos`. `path` names the file (a descriptor's `/proc/self/fd` link
    /// will do) so it can be opened again for direct I/O: a description of its own, as the
    /// flag belongs to the description and `file`'s may be shared.
    pub(crate) fn new(file: File, path: &Path, pos: u64) -> Direct {
        let direct = dio_align(file.as_fd())
            .filter(|&(mem, off)| mem as usize <= ALIGN && pos.is_multiple_of(off))
            .and_then(|(mem, off)| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(nix::libc::O_DIRECT | nix::libc::O_CLOEXEC)
                    .open(path)
                    .ok()?;
                Some((f, mem as usize, off))
            });
        Direct { file, direct, pos }
    }

    /// Writes to `file` from `pos`, opening it again for direct I/O through `/proc/self/fd`.
    pub(crate) fn reopened(file: File, pos: u64) -> Direct {
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        Direct::new(file, Path::new(&path), pos)
    }

    /// Whether writes go directly to the disk (until one is not aligned).
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The file as given.
    pub(crate) fn into_inner(self) -> File {
        self.file
    }
}

impl Write for Direct {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some((f, mem, off)) = &self.direct {
            let aligned = (buf.as_ptr() as usize).is_multiple_of(*mem)
                && (buf.len() as u64).is_multiple_of(*off)
                && self.pos.is_multiple_of(*off);
            // EINVAL: the file system refused after all (some check alignment per extent).
            match aligned.then(|| f.write_at(buf, self.pos)) {
                Some(Ok(n)) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Some(Err(e)) if e.raw_os_error() != Some(nix::libc::EINVAL) => return Err(e),
                _ => self.direct = None,
            }
        }
        let n = self.file.write_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Direct {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The alignments direct I/O on `fd` needs, memory and position/length, if it has any.
fn dio_align(fd: BorrowedFd<'_>) -> Option<(u32, u64)> {
    // SAFETY: statx fills the zeroed struct it is given; the empty path with AT_EMPTY_PATH
    // names the descriptor itself.
    let mut stx: nix::libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        nix::libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_EMPTY_PATH,
            nix::libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    let known = rc == 0 && stx.stx_mask & nix::libc::STATX_DIOALIGN != 0;
    (known && stx.stx_dio_mem_align > 0 && stx.stx_dio_offset_align > 0)
        .then_some((stx.stx_dio_mem_align, u64::from(stx.stx_dio_offset_align)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(byte: u8, len: usize) -> Chunk {
        let mut c = Chunk::new();
        assert_eq!(c.push(&vec![byte; len]), len.min(CHUNK));
        c
    }

    #[test]
    fn chunks_are_aligned_and_fill_up() {
        let mut c = Chunk::new();
        assert!(c.bytes().is_empty());
        assert_eq!(c.push(&[1; 1000]), 1000);
        assert_eq!(c.bytes().as_ptr() as usize % ALIGN, 0);
        assert_eq!(c.push(&vec![2; CHUNK]), CHUNK - 1000);
        assert!(c.is_full());
        assert_eq!(&c.bytes()[998..1002], &[1, 1, 2, 2]);
        c.clear();
        assert!(c.bytes().is_empty());
    }

    /// Full chunks, then a short one, at an offset: the file holds what was written, where
    /// direct I/O is used and where it is not.
    #[test]
    fn writes_land_where_they_belong_directly_or_not() {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        for start in [0u64, 512, 4096, 1000] {
            let path = dir.path().join(format!("f{start}"));
            std::fs::write(&path, vec![9u8; start as usize]).unwrap();
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut w = Direct::reopened(file, start);
            if start == 1000 {
                assert!(!w.is_direct(), "a position no disk allows");
            }
            let chunks = [filled(1, CHUNK), filled(2, CHUNK), filled(3, 777)];
            for c in &chunks {
                w.write_all(c.bytes()).unwrap();
            }
            assert!(!w.is_direct(), "the short chunk went through the page cache");
            w.into_inner().sync_all().unwrap();
            let got = std::fs::read(&path).unwrap();
            let mut want = vec![9u8; start as usize];
            for c in &chunks {
                want.extend_from_slice(c.bytes());
            }
            assert_eq!(got.len(), want.len());
            assert!(got == want, "start {start}");
        }
    }

    /// Where the file system has direct I/O (ext4, xfs, btrfs; not tmpfs before 6.6), full
    /// chunks use it.
    #[test]
    fn aligned_writes_go_direct_where_the_file_system_allows() {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        if dio_align(file.as_fd()).is_none() {
            eprintln!("skipped: {} has no direct I/O (statx STATX_DIOALIGN)", dir.path().display());
            return;
        }
        let mut w = Direct::new(file, &path, 0);
        assert!(w.is_direct());
        w.write_all(filled(5, CHUNK).bytes()).unwrap();
        assert!(w.is_direct(), "a full, aligned chunk is written directly");
    }
}
