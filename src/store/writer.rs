//! Writing a blob. Once a blob passes one chunk, its bytes are hashed and written on a thread of
//! their own, so whoever produces them (a tar walk that hashes its own diff id, a compressor, a
//! download) runs beside the hashing instead of taking turns with it: a big layer costs one
//! SHA-256 per core rather than two on one. The file is written behind ([`super::pagecache`]), so
//! the sync before the rename waits for the last few MiB rather than for the whole blob.
//!
//! A blob may also be teed: its bytes copied, as they are written, into another file at an
//! offset (an archive output being written while the build runs, see
//! [`crate::export::spool`]), so that output need not read the blob back.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tempfile::NamedTempFile;

use super::pagecache::WriteBehind;
use super::{Result, Store, StoreError};
use crate::digest::{Digest, HashingWriter};

/// Bytes gathered before they go to the writing thread; a smaller blob never starts one.
pub(super) const CHUNK: usize = 1 << 20;
/// Chunks queued for the writing thread before the producer waits (bounds memory).
const QUEUED: usize = 4;

/// A blob being written: digested as it streams; discarded unless committed.
pub struct BlobWriter {
    /// Taken by [`BlobWriter::commit`].
    tmp: Option<NamedTempFile>,
    buf: Vec<u8>,
    len: u64,
    sink: Sink,
    store: Store,
}

/// Where full chunks go: written here until the first one fills, then on a thread.
enum Sink {
    Here(Out),
    Thread {
        chunks: mpsc::SyncSender<Vec<u8>>,
        /// Written chunks coming back, so a big blob cycles through a few buffers.
        spare: mpsc::Receiver<Vec<u8>>,
        thread: JoinHandle<io::Result<Out>>,
        /// The thread writing the tee; says whether all of it was written.
        tee: Option<JoinHandle<bool>>,
    },
    /// Finished, or failed.
    Gone,
}

/// The file, hashed as it is written.
type Out = HashingWriter<Files>;

/// Where a blob's bytes are copied as well (see the module doc).
#[derive(Debug)]
pub struct Tee {
    /// The file, opened for writing. Written at positions, never through its offset, which it
    /// may share with another process's descriptor.
    pub file: File,
    /// Where the blob's first byte goes.
    pub offset: u64,
}

/// A [`Tee`]'s file written from its offset on.
struct At {
    file: File,
    pos: u64,
}

impl Write for At {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for At {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The blob's file and the tee. A failed write to the tee ends the tee, not the blob: whoever
/// reads the tee writes the blob there again.
struct Files {
    blob: WriteBehind<File>,
    tee: TeeOut,
}

/// The state of a blob's tee.
enum TeeOut {
    /// There is none.
    None,
    /// Written here, beside the blob (until the writing thread starts).
    Here(WriteBehind<At>),
    /// Written whole, on a thread of its own.
    Done,
    /// Abandoned after a failure.
    Failed,
}

impl Write for Files {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.blob.write(buf)?;
        if let TeeOut::Here(t) = &mut self.tee
            && t.write_all(&buf[..n]).is_err()
        {
            self.tee = TeeOut::Failed;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.blob.flush()
    }
}

impl BlobWriter {
    /// A writer for a new blob in `store`'s temporary directory.
    pub(super) fn new(store: &Store, tee: Option<Tee>) -> Result<BlobWriter> {
        let tmp = NamedTempFile::new_in(store.root.join("tmp"))?;
        let file = tmp.reopen()?;
        let tee = match tee {
            Some(t) => TeeOut::Here(WriteBehind::unpaced_from(At { file: t.file, pos: t.offset }, t.offset)),
            None => TeeOut::None,
        };
        let files = Files { blob: WriteBehind::paced(file), tee };
        Ok(BlobWriter {
            tmp: Some(tmp),
            buf: Vec::with_capacity(CHUNK),
            len: 0,
            sink: Sink::Here(HashingWriter::new(files)),
            store: store.clone(),
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sends the full buffer to the writing thread, starting it the first time.
    fn hand_off(&mut self) -> io::Result<()> {
        if let Sink::Here(_) = self.sink {
            let Sink::Here(out) = std::mem::replace(&mut self.sink, Sink::Gone) else { unreachable!() };
            self.sink = start(out)?;
        }
        let Sink::Thread { chunks, spare, .. } = &self.sink else { return Err(failed_earlier()) };
        let next = spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, next);
        if chunks.send(chunk).is_err() {
            // The thread stopped on an error: that error is the one to report.
            return Err(match self.take_out() {
                Err(e) => e,
                Ok(_) => failed_earlier(),
            });
        }
        Ok(())
    }

    /// Writes what is buffered and ends the writing thread: the file, hashed.
    fn take_out(&mut self) -> io::Result<Out> {
        let rest = std::mem::take(&mut self.buf);
        match std::mem::replace(&mut self.sink, Sink::Gone) {
            Sink::Here(mut out) => {
                out.write_all(&rest)?;
                Ok(out)
            }
            Sink::Thread { chunks, thread, tee, .. } => {
                // A failed send means the thread already stopped, with its error.
                let _ = chunks.send(rest);
                drop(chunks);
                let out =
                    thread.join().map_err(|_| io::Error::other("the thread writing a blob panicked"))?;
                // The tee's thread ends with the blob's, which holds its sender.
                let teed = tee.map(|t| t.join().unwrap_or(false));
                let mut out = out?;
                match teed {
                    Some(true) => out.get_mut().tee = TeeOut::Done,
                    Some(false) => out.get_mut().tee = TeeOut::Failed,
                    None => {}
                }
                Ok(out)
            }
            Sink::Gone => Err(failed_earlier()),
        }
    }

    /// Flushes, syncs and checks the content, then moves it to its final name. With `expected`, a
    /// mismatch discards the content and fails.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        self.commit_teed(expected).map(|(digest, len, _)| (digest, len))
    }

    /// [`BlobWriter::commit`], and whether every byte also reached the tee (false without one).
    pub fn commit_teed(mut self, expected: Option<&Digest>) -> Result<(Digest, u64, bool)> {
        let (files, digest, len) = self.take_out()?.finish();
        let teed = matches!(files.tee, TeeOut::Here(_) | TeeOut::Done);
        let file = files.blob.into_inner();
        // Temporary files start 0600; blobs are shared content (layouts hard-link them).
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        file.sync_data()?;
        if let Some(exp) = expected
            && exp != &digest
        {
            return Err(StoreError::DigestMismatch { expected: exp.clone(), actual: digest });
        }
        let path = self.store.blob_path(&digest);
        if let Some(tmp) = self.tmp.take()
            && !path.is_file()
        {
            tmp.persist(&path).map_err(|e| e.error)?;
            self.store.note_written(&digest);
        }
        Ok((digest, len, teed))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.len += n as u64;
        if self.buf.len() == CHUNK {
            self.hand_off()?;
        }
        Ok(n)
    }

    /// Nothing to do: the content reaches the file by [`BlobWriter::commit`], which is what
    /// makes it a blob.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BlobWriter {
    /// Ends the writing thread before the temporary file goes away.
    fn drop(&mut self) {
        if let Sink::Thread { chunks, thread, tee, .. } = std::mem::replace(&mut self.sink, Sink::Gone) {
            drop(chunks);
            let _ = thread.join();
            if let Some(t) = tee {
                let _ = t.join();
            }
        }
    }
}

/// Starts the thread that hashes and writes the chunks it is sent, and the tee's, if there is
/// one: a copy and another file's writeback, which would otherwise slow the hashing.
fn start(mut out: Out) -> io::Result<Sink> {
    let (chunks, incoming) = mpsc::sync_channel::<Vec<u8>>(QUEUED);
    let (give_back, spare) = mpsc::channel::<Vec<u8>>();
    let (to_tee, tee) = match std::mem::replace(&mut out.get_mut().tee, TeeOut::None) {
        TeeOut::Here(mut file) => {
            let (to_tee, teed) = mpsc::sync_channel::<Vec<u8>>(QUEUED);
            let give_back = give_back.clone();
            let spawned = std::thread::Builder::new().name("blob-tee".into()).spawn(move || {
                let mut ok = true;
                for mut chunk in teed {
                    ok = ok && file.write_all(&chunk).is_ok();
                    chunk.clear();
                    let _ = give_back.send(chunk);
                }
                ok
            });
            match spawned {
                Ok(t) => (Some(to_tee), Some(t)),
                Err(_) => {
                    out.get_mut().tee = TeeOut::Failed;
                    (None, None)
                }
            }
        }
        other => {
            out.get_mut().tee = other;
            (None, None)
        }
    };
    let thread = std::thread::Builder::new().name("blob-writer".into()).spawn(move || {
        for mut chunk in incoming {
            out.write_all(&chunk)?;
            // To the tee's thread, which gives it back; a stopped one has given up (and says so).
            if let Some(t) = &to_tee {
                match t.send(chunk) {
                    Ok(()) => continue,
                    Err(mpsc::SendError(c)) => chunk = c,
                }
            }
            chunk.clear();
            let _ = give_back.send(chunk);
        }
        Ok(out)
    })?;
    Ok(Sink::Thread { chunks, spare, thread, tee })
}

fn failed_earlier() -> io::Error {
    io::Error::other("the blob could not be written (an earlier write failed)")
}
