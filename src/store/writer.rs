//! Writing a blob. Once a blob passes one chunk, its bytes are hashed on a thread of their own,
//! so whoever produces them (a tar walk, whose diff id is hashed on a thread too; a compressor; a
//! download) runs beside the hashing instead of taking turns with it: a big layer's two SHA-256s
//! run on two cores, beside the walk. The file is written on another thread, directly where the
//! file system allows it ([`super::direct`]), else written behind ([`super::pagecache`]) so the sync
//! before the rename waits for the last few MiB rather than for the whole blob; either way, the
//! hashing does not wait for the disk.
//!
//! A blob may also be teed: its bytes copied, as they are written, into another file at an
//! offset (an archive output being written while the build runs, see
//! [`crate::export::spool`]), so that output need not read the blob back; on a third thread.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, mpsc};

use tempfile::NamedTempFile;

use super::direct::{Chunk, Direct};
use super::pagecache::WriteBehind;
use super::{Result, Store, StoreError};
use crate::digest::{Digest, HashingWriter};
use crate::handoff::Handoff;

/// Chunks queued for each thread before the one feeding it waits (bounds memory).
const QUEUED: usize = 4;

/// A blob being written: digested as it streams; discarded unless committed.
pub struct BlobWriter {
    /// Taken by [`BlobWriter::commit`].
    tmp: Option<NamedTempFile>,
    /// Bytes gathered before they go to the hashing thread ([`super::direct::CHUNK`]); a smaller
    /// blob never starts one.
    buf: Chunk,
    len: u64,
    sink: Sink,
    store: Store,
}

/// Where full chunks go: written here until the first one fills, then on threads.
enum Sink {
    Here(Out),
    /// The thread that hashes the chunks and hands them to the threads writing the files, whose
    /// end it waits for (see [`start`]).
    Thread(Handoff<Chunk, io::Result<Out>>),
    /// Finished, or failed.
    Gone,
}

/// The blob's bytes so far: their digest, and the files they went to.
struct Out {
    hash: HashingWriter<io::Sink>,
    files: Files,
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.files.write(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.files.flush()
    }
}

/// Where a blob's bytes are copied as well (see the module doc).
#[derive(Debug)]
pub struct Tee {
    /// The file, opened for writing. Written at positions, never through its offset, which it
    /// may share with another process's descriptor.
    pub file: File,
    /// Where the blob's first byte goes.
    pub offset: u64,
}

/// The blob's file and the tee. A failed write to the tee ends the tee, not the blob: whoever
/// reads the tee writes the blob there again.
struct Files {
    blob: WriteBehind<Direct>,
    tee: TeeOut,
}

/// The state of a blob's tee.
enum TeeOut {
    /// There is none.
    None,
    /// Written here, beside the blob (until the threads start).
    Here(WriteBehind<Direct>),
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
        let file = Direct::new(tmp.reopen()?, tmp.path(), 0);
        let tee = match tee {
            Some(t) => TeeOut::Here(WriteBehind::unpaced_from(Direct::reopened(t.file, t.offset), t.offset)),
            None => TeeOut::None,
        };
        let files = Files { blob: WriteBehind::paced(file), tee };
        Ok(BlobWriter {
            tmp: Some(tmp),
            buf: Chunk::new(),
            len: 0,
            sink: Sink::Here(Out { hash: HashingWriter::new(io::sink()), files }),
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

    /// Sends the full buffer to the hashing thread, starting the threads the first time.
    fn hand_off(&mut self) -> io::Result<()> {
        if let Sink::Here(_) = self.sink {
            let Sink::Here(out) = std::mem::replace(&mut self.sink, Sink::Gone) else { unreachable!() };
            self.sink = Sink::Thread(start(out)?);
        }
        let Sink::Thread(thread) = &self.sink else { return Err(failed_earlier()) };
        if !thread.send(&mut self.buf, Chunk::new) {
            // The threads stopped on an error (the file's): that error is the one to report.
            return Err(match self.take_out() {
                Err(e) => e,
                Ok(_) => failed_earlier(),
            });
        }
        Ok(())
    }

    /// Writes what is buffered and ends the threads: the files, and the digest.
    fn take_out(&mut self) -> io::Result<Out> {
        let rest = std::mem::replace(&mut self.buf, Chunk::new());
        match std::mem::replace(&mut self.sink, Sink::Gone) {
            Sink::Here(mut out) => {
                out.write_all(rest.bytes())?;
                Ok(out)
            }
            Sink::Thread(thread) => thread.finish(rest).map_err(|_| panicked())?,
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
        let Out { hash, files } = self.take_out()?;
        let (_, digest, len) = hash.finish();
        let teed = matches!(files.tee, TeeOut::Here(_) | TeeOut::Done);
        let file = files.blob.into_inner().into_inner();
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
        let n = self.buf.push(data);
        self.len += n as u64;
        if self.buf.is_full() {
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
    /// Ends the threads before the temporary file goes away.
    fn drop(&mut self) {
        self.sink = Sink::Gone;
    }
}

/// Starts the thread that hashes the chunks it is sent and hands each to one writing the blob's
/// file and, if there is one, to one writing the tee. Writes wait for the disk (direct I/O) or
/// cost a copy and its writeback; on threads of their own they overlap the hashing, and each
/// other, instead of adding to it.
fn start(out: Out) -> io::Result<Handoff<Chunk, io::Result<Out>>> {
    Handoff::spawn("blob-hasher", QUEUED, move |incoming, give_back| hash_and_write(out, incoming, give_back))
}

/// The hashing thread: starts the writing threads, feeds them and waits for them.
fn hash_and_write(
    out: Out,
    incoming: mpsc::Receiver<Chunk>,
    give_back: mpsc::Sender<Chunk>,
) -> io::Result<Out> {
    let Out { mut hash, files: Files { mut blob, tee } } = out;
    let (to_file, from_hasher) = mpsc::sync_channel::<Arc<Chunk>>(QUEUED);
    let back = give_back.clone();
    let file = std::thread::Builder::new().name("blob-file".into()).spawn(move || {
        for chunk in from_hasher {
            blob.write_all(chunk.bytes())?;
            recycle(chunk, &back);
        }
        io::Result::Ok(blob)
    })?;
    let (to_tee, tee) = match tee {
        TeeOut::Here(mut out) => {
            let (to_tee, from_hasher) = mpsc::sync_channel::<Arc<Chunk>>(QUEUED);
            let back = give_back.clone();
            let spawned = std::thread::Builder::new().name("blob-tee".into()).spawn(move || {
                let mut ok = true;
                // A failed tee is abandoned, not the blob: its chunks are still taken.
                for chunk in from_hasher {
                    ok = ok && out.write_all(chunk.bytes()).is_ok();
                    recycle(chunk, &back);
                }
                ok
            });
            match spawned {
                Ok(t) => (Some(to_tee), Some(t)),
                Err(_) => (None, None),
            }
        }
        _ => (None, None),
    };
    for chunk in incoming {
        let _ = hash.write_all(chunk.bytes());
        let chunk = Arc::new(chunk);
        // The file's thread stopped on an error, which it reports: stop taking chunks.
        if to_file.send(Arc::clone(&chunk)).is_err() {
            break;
        }
        if let Some(t) = &to_tee {
            let _ = t.send(Arc::clone(&chunk));
        }
        recycle(chunk, &give_back);
    }
    // The writing threads end with their senders.
    drop((to_file, to_tee));
    let blob = file.join().map_err(|_| panicked())?;
    let tee = match tee.map(|t| t.join().unwrap_or(false)) {
        Some(true) => TeeOut::Done,
        Some(false) => TeeOut::Failed,
        None => TeeOut::None,
    };
    Ok(Out { hash, files: Files { blob: blob?, tee } })
}

/// Gives `chunk` back to the writer for reuse if no other thread holds it.
fn recycle(chunk: Arc<Chunk>, give_back: &mpsc::Sender<Chunk>) {
    if let Some(mut c) = Arc::into_inner(chunk) {
        c.clear();
        let _ = give_back.send(c);
    }
}

fn panicked() -> io::Error {
    io::Error::other("a thread writing a blob panicked")
}

fn failed_earlier() -> io::Error {
    io::Error::other("the blob could not be written (an earlier write failed)")
}
