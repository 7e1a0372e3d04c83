//! Content digests (`sha256:<hex>`) and hashing adapters, so blobs are digested while they stream
//! instead of being held in memory.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::mpsc::Receiver;

use sha2::{Digest as _, Sha256};

use crate::handoff::Handoff;

/// A validated `sha256:` digest.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

/// A string that is not a sha256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256: followed by 64 lower-case hex digits")]
pub struct BadDigest(pub String);

impl Digest {
    /// Parses `sha256:<64 lower-case hex>`; other algorithms are refused (hako writes only sha256).
    pub fn parse(s: &str) -> Result<Digest, BadDigest> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| BadDigest(s.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(BadDigest(s.to_string()));
        }
        Ok(Digest { hex: hex.to_string() })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(h: Sha256) -> Digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for b in h.finalize().iter() {
            hex.push(HEX[usize::from(b >> 4)] as char);
            hex.push(HEX[usize::from(b & 0xf)] as char);
        }
        Digest { hex }
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

/// The OCI chain ids of a stack of layers given by their diff ids (`sha256:…`, bottom first), as
/// hex: the first is its diff id, each next one `sha256("<previous chain id> <diff id>")`.
pub fn chain_ids<'a>(diff_ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut prev: Option<String> = None;
    for diff_id in diff_ids {
        let id = match &prev {
            None => diff_id.to_string(),
            Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()).to_string(),
        };
        out.push(id.trim_start_matches("sha256:").to_string());
        prev = Some(id);
    }
    out
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl std::str::FromStr for Digest {
    type Err = BadDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

/// A writer that digests and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.len)
    }

    /// The inner writer (for flushing compressors layered below).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A digest computed on a thread of its own once the bytes pass one chunk, so whoever writes them
/// (a tar walk feeding a compressor) does not take turns with the hashing: the diff id of a big
/// layer costs the writer a copy, not a SHA-256. Less than a chunk is hashed here, at the end,
/// without a thread.
pub struct ThreadedHasher {
    buf: Vec<u8>,
    state: Hashing,
}

enum Hashing {
    /// No thread (yet, or it could not be started): hashed here.
    Here(Sha256, u64),
    Thread(Handoff<Vec<u8>, (Sha256, u64)>),
}

impl ThreadedHasher {
    /// Bytes gathered before they go to the thread: small, as the hasher only needs to keep up,
    /// and every chunk in flight adds to a layer's peak memory.
    const CHUNK: usize = 256 << 10;
    /// Chunks queued before a write waits for the thread (bounds memory: with the one being
    /// filled and the one being hashed, 1.5 MiB).
    const QUEUED: usize = 4;

    /// A hasher of nothing yet.
    pub fn new() -> ThreadedHasher {
        ThreadedHasher { buf: Vec::new(), state: Hashing::Here(Sha256::new(), 0) }
    }

    /// Sends the full buffer to the thread, starting it the first time.
    fn hand_off(&mut self) {
        if let Hashing::Here(h, len) = &mut self.state {
            let (mut hasher, mut n) = (h.clone(), *len);
            let spawned =
                Handoff::spawn("diff-hasher", Self::QUEUED, move |incoming: Receiver<Vec<u8>>, give_back| {
                    for mut chunk in incoming {
                        hasher.update(&chunk);
                        n += chunk.len() as u64;
                        chunk.clear();
                        let _ = give_back.send(chunk);
                    }
                    (hasher, n)
                });
            match spawned {
                Ok(thread) => self.state = Hashing::Thread(thread),
                Err(_) => {
                    // Hashed here then, as a small stream is.
                    h.update(&self.buf);
                    *len += self.buf.len() as u64;
                    self.buf.clear();
                    return;
                }
            }
        }
        if let Hashing::Thread(thread) = &self.state {
            // The thread's loop only ends with the stream, so the send cannot fail.
            thread.send(&mut self.buf, || Vec::with_capacity(Self::CHUNK));
        }
    }

    /// The digest and the byte count of everything written.
    pub fn finish(mut self) -> (Digest, u64) {
        match std::mem::replace(&mut self.state, Hashing::Here(Sha256::new(), 0)) {
            Hashing::Here(mut h, len) => {
                h.update(&self.buf);
                (Digest::from_hasher(h), len + self.buf.len() as u64)
            }
            Hashing::Thread(thread) => {
                // The thread's loop cannot panic; were it to, its panic is re-raised here.
                let (h, len) = thread
                    .finish(std::mem::take(&mut self.buf))
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                (Digest::from_hasher(h), len)
            }
        }
    }
}

impl Default for ThreadedHasher {
    fn default() -> ThreadedHasher {
        ThreadedHasher::new()
    }
}

impl Write for ThreadedHasher {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            if self.buf.capacity() < Self::CHUNK {
                self.buf.reserve_exact(Self::CHUNK - self.buf.len());
            }
            let take = (Self::CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == Self::CHUNK {
                self.hand_off();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A reader that digests and counts what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), len: 0 }
    }

    /// The reader, to read past the hash.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The digest and byte count of everything read.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_and_hash() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(Digest::parse(EMPTY).map(|d| d.to_string()).as_deref(), Ok(EMPTY));
        for bad in [
            "",
            "sha256:",
            "sha512:00",
            &EMPTY.to_uppercase(),
            &format!("{EMPTY}0"),
            "sha256:../../etc/passwd",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_threaded_hasher_digests_what_the_plain_one_does_at_every_size() {
        let chunk = ThreadedHasher::CHUNK;
        let data: Vec<u8> = (0..3 * chunk + 7).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 7] {
            let mut t = ThreadedHasher::new();
            // Writes of odd sizes, so chunks fill across writes.
            for piece in data[..len].chunks(4099) {
                t.write_all(piece).expect("write");
            }
            assert_eq!(t.finish(), (Digest::of(&data[..len]), len as u64), "{len} bytes");
        }
    }

    #[test]
    fn hashing_adapters_agree() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello").expect("write");
        let (out, d, n) = w.finish();
        assert_eq!((out.as_slice(), n), (&b"hello"[..], 5));
        let mut r = HashingReader::new(&b"hello"[..]);
        io::copy(&mut r, &mut io::sink()).expect("read");
        assert_eq!(r.finish(), (d.clone(), 5));
        assert_eq!(d, Digest::of(b"hello"));
    }
}
