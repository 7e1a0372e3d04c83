//! Streaming big files without growing the page cache: blobs and archives are written behind
//! (writeback starts as the file grows, and what is on disk is dropped from the cache) and read
//! with what was read dropped behind.
//!
//! A build's layer is in memory once already, as the step's upper directory. Its blob is read
//! again only by an export or a push, once, and an archive is read by whatever takes it next, so
//! caching them only evicts what the build and the user read (the way `dd oflag=nocache` and
//! backup tools stream). It also bounds the dirty memory a big layer leaves, so the sync that
//! makes a blob durable waits for the last few MiB rather than the whole file; and on a VM whose
//! free memory the host reclaims (a balloon with free-page reporting), every fresh page-cache page
//! costs a host fault: writing a GiB through new pages took 2.5 s here, through a few recycled
//! ones 0.9 s, disk write included. WSL2 and microVM-based CI runners reclaim the same way.
//!
//! The price: a big blob read again soon (a COPY layer extracted for the next RUN, a pulled base
//! extracted) comes from the disk, at the disk's speed. Blobs under one window (8 MiB) are never
//! dropped.
//!
//! Hand-written: nix wraps neither `sync_file_range` nor `posix_fadvise`'s ranges as needed here.
//! Every call is advice: when one fails, the data is still written or read, only cached.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};

/// Writeback is started, and what is written before it dropped, every this many bytes.
pub(crate) const WINDOW: u64 = 8 << 20;

/// A writer that has the kernel write its pages out as the file grows, and drops from the page
/// cache what has reached the disk.
pub(crate) struct WriteBehind<W> {
    inner: W,
    /// Whether it waits for the disk (see [`WriteBehind::paced`]).
    paced: bool,
    written: u64,
    /// [started, written) is dirty, not yet handed to writeback.
    started: u64,
    /// [dropped, started) is being written out.
    dropped: u64,
}

impl<W: Write + AsFd> WriteBehind<W> {
    /// Wraps `inner`, a file written from its start and synced when done (a blob): each window
    /// is dropped once it is on disk, waiting for it, which paces the writer to the disk. The
    /// sync needs that wait anyway, and no more than two windows are ever in the page cache.
    pub(crate) fn paced(inner: W) -> WriteBehind<W> {
        WriteBehind { inner, paced: true, written: 0, started: 0, dropped: 0 }
    }

    /// Wraps `inner`, a file written from its start and not synced (an archive): never waits
    /// for the disk. A window is dropped a window after its writeback started, as far as it is
    /// clean by then; on a disk slower than the writer the rest stays cached, as any file's.
    pub(crate) fn unpaced(inner: W) -> WriteBehind<W> {
        WriteBehind::unpaced_from(inner, 0)
    }

    /// [`WriteBehind::unpaced`] for a file written from `offset` on (the part of an archive a
    /// step's layer goes to while the build runs).
    pub(crate) fn unpaced_from(inner: W, offset: u64) -> WriteBehind<W> {
        WriteBehind { inner, paced: false, written: offset, started: offset, dropped: offset }
    }

    /// The file.
    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write + AsFd> Write for WriteBehind<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        let pending = self.written - self.started;
        if pending >= WINDOW {
            let fd = self.inner.as_fd().as_raw_fd();
            sync_range(fd, self.started, pending, nix::libc::SYNC_FILE_RANGE_WRITE);
            // Paced: the window before this one, once on disk. Unpaced: the one before that,
            // as far as it is clean.
            let upto = if self.paced { self.started } else { self.started.saturating_sub(WINDOW) };
            if upto > self.dropped {
                let len = upto - self.dropped;
                if self.paced {
                    let wait = nix::libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | nix::libc::SYNC_FILE_RANGE_WRITE
                        | nix::libc::SYNC_FILE_RANGE_WAIT_AFTER;
                    sync_range(fd, self.dropped, len, wait);
                }
                drop_range(fd, self.dropped, len);
                self.dropped = upto;
            }
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that drops from the page cache what it has read, a window at a time.
pub(crate) struct DropBehind<R> {
    inner: R,
    read: u64,
    dropped: u64,
}

impl<R: Read + AsFd> DropBehind<R> {
    /// Wraps `inner`, a file read from its start.
    pub(crate) fn new(inner: R) -> DropBehind<R> {
        DropBehind { inner, read: 0, dropped: 0 }
    }
}

impl<R: Read + AsFd> Read for DropBehind<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read - self.dropped >= WINDOW {
            drop_range(self.inner.as_fd().as_raw_fd(), self.dropped, self.read - self.dropped);
            self.dropped = self.read;
        }
        Ok(n)
    }
}

fn sync_range(fd: RawFd, offset: u64, len: u64, flags: u32) {
    // SAFETY: a plain syscall on a descriptor the caller keeps open; no memory is passed.
    unsafe {
        nix::libc::sync_file_range(fd, offset as nix::libc::off64_t, len as nix::libc::off64_t, flags);
    }
}

/// Drops the clean pages of the range (dirty ones stay).
fn drop_range(fd: RawFd, offset: u64, len: u64) {
    // SAFETY: as above.
    unsafe {
        nix::libc::posix_fadvise(
            fd,
            offset as nix::libc::off_t,
            len as nix::libc::off_t,
            nix::libc::POSIX_FADV_DONTNEED,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What goes through either wrapper arrives whole and in order, across many windows and with
    /// writes that straddle their edges.
    #[test]
    fn content_passes_through_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(3 * WINDOW as usize + 12_345)).map(|i| (i * 7 % 251) as u8).collect();
        for make in [WriteBehind::paced, WriteBehind::unpaced] {
            let mut w = make(std::fs::File::create(&path).unwrap());
            for piece in data.chunks(1_000_003) {
                w.write_all(piece).unwrap();
            }
            w.flush().unwrap();
            w.into_inner().sync_all().unwrap();
            let mut back = Vec::new();
            DropBehind::new(std::fs::File::open(&path).unwrap()).read_to_end(&mut back).unwrap();
            assert!(back == data, "the file differs from what was written");
        }
    }
}
