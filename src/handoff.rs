//! Handing a byte stream's full chunks to a thread of its own, so whoever writes the bytes (a tar
//! walk, a compressor, a download) does not take turns with what is done to them (a SHA-256, a
//! write to disk). The chunks come back through another channel once used, so a stream of any size
//! cycles through a few buffers: memory stays bounded by the queue, not by the stream.
//!
//! Shared by the diff-id hasher ([`crate::digest::ThreadedHasher`]) and the blob writer
//! (`store::writer`), which differ in their chunks (plain vectors; buffers aligned for direct I/O)
//! and in what their thread does with them.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

/// A thread taking chunks of type `C` and ending with a `T`.
pub struct Handoff<C, T> {
    /// `None` once the stream is finished, which ends the thread's loop.
    chunks: Option<SyncSender<C>>,
    /// Chunks the thread (or a thread after it) is done with.
    spare: Receiver<C>,
    done: Option<JoinHandle<T>>,
}

impl<C: Send + 'static, T: Send + 'static> Handoff<C, T> {
    /// Starts a thread named `name` running `body` on the chunks sent to it (at most `queued`
    /// wait before a sender does) and on the sender that gives a chunk back for reuse.
    pub fn spawn(
        name: &str,
        queued: usize,
        body: impl FnOnce(Receiver<C>, Sender<C>) -> T + Send + 'static,
    ) -> std::io::Result<Handoff<C, T>> {
        let (chunks, incoming) = mpsc::sync_channel(queued);
        let (give_back, spare) = mpsc::channel();
        let done = std::thread::Builder::new().name(name.into()).spawn(move || body(incoming, give_back))?;
        Ok(Handoff { chunks: Some(chunks), spare, done: Some(done) })
    }

    /// Sends `full` to the thread and puts a chunk it gave back in its place, or `fresh()` if none
    /// is back yet. False if the thread has stopped taking chunks.
    pub fn send(&self, full: &mut C, fresh: impl FnOnce() -> C) -> bool {
        let next = self.spare.try_recv().unwrap_or_else(|_| fresh());
        let chunk = std::mem::replace(full, next);
        self.chunks.as_ref().is_some_and(|c| c.send(chunk).is_ok())
    }

    /// Sends the last chunk (unless the thread has stopped), ends the stream and waits for the
    /// thread's result; `Err` carries its panic.
    pub fn finish(mut self, last: C) -> std::thread::Result<T> {
        if let Some(c) = self.chunks.take() {
            let _ = c.send(last);
        }
        match self.done.take() {
            Some(done) => done.join(),
            // `done` is only taken here, and this takes `self`.
            None => unreachable!("a handoff finished twice"),
        }
    }
}

impl<C, T> Drop for Handoff<C, T> {
    /// Ends the stream and waits for the thread, so nothing it uses (a temporary file) goes
    /// away under it.
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(done) = self.done.take() {
            let _ = done.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reach_the_thread_in_order_and_come_back_for_reuse() {
        let h = Handoff::spawn("test", 1, |incoming: Receiver<Vec<u8>>, give_back| {
            let mut seen = Vec::new();
            for mut chunk in incoming {
                seen.extend_from_slice(&chunk);
                chunk.clear();
                let _ = give_back.send(chunk);
            }
            seen
        })
        .expect("spawn");
        let mut buf = b"ab".to_vec();
        for next in [b"cd", b"ef", b"gh"] {
            assert!(h.send(&mut buf, Vec::new));
            assert!(buf.is_empty(), "an empty chunk in place of the one sent");
            buf.extend_from_slice(next);
        }
        assert_eq!(h.finish(buf).expect("no panic"), b"abcdefgh");
    }

    #[test]
    fn a_stopped_thread_is_told_and_its_panic_carried() {
        let h = Handoff::spawn("test", 1, |incoming: Receiver<u8>, _| {
            let first = incoming.recv();
            drop(incoming);
            assert_eq!(first, Ok(1), "the panic the caller gets");
        })
        .expect("spawn");
        assert!(h.send(&mut 1, || 0));
        // The thread stops after one chunk: a send may be queued before it does, never more.
        let sent = (0..3).filter(|_| h.send(&mut 2, || 0)).count();
        assert!(sent <= 1, "{sent} chunks sent to a stopped thread");
        assert!(h.finish(3).is_ok());
        let h = Handoff::spawn("test", 1, |incoming: Receiver<u8>, _| {
            assert_eq!(incoming.recv(), Ok(0), "the panic the caller gets");
        })
        .expect("spawn");
        // The thread waits for this one, so it is taken.
        assert!(h.send(&mut 1, || 0));
        assert!(h.finish(3).is_err(), "the thread's panic");
    }
}
