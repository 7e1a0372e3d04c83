//! Parallel gzip, as pigz writes it: the stream is cut into 1 MiB blocks compressed on all cores
//! (rayon), each a raw deflate segment ended by a sync flush, so the segments concatenate into one
//! deflate stream inside one gzip member, followed by the CRC-32 and length of the whole. Any gzip
//! reader reads it. Blocks that do not compress (random bytes, already-compressed files) are
//! stored rather than deflated, so such a layer costs a copy instead of a futile compression.
//!
//! Hand-written rather than taken from a crate (`gzp`): the output must depend only on the data
//! and the level, never on the number of cores, so blob digests are the same on every machine,
//! and incompressible blocks must be stored. Blocks are compressed independently (no shared
//! dictionary), which costs well under 1% of size at 1 MiB.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc;

use flate2::{Compress, FlushCompress};

/// Input bytes per block.
const BLOCK: usize = 1 << 20;
/// Bytes sampled at the start of a block to decide whether it compresses: a quick look, then a
/// longer one when the quick one is not clear.
const SAMPLES: [usize; 2] = [8 << 10, 32 << 10];
/// An empty stored deflate block: what a sync flush writes.
const SYNC_FLUSH: [u8; 5] = [0, 0, 0, 0xff, 0xff];
/// The most a stored deflate block holds.
const STORED_MAX: usize = 65_535;

/// A gzip encoder compressing blocks in parallel (see the module doc). Call [`finish`](Self::finish)
/// to write the end of the stream; dropping it without does not.
pub struct ParGzEncoder<W: Write> {
    inner: W,
    level: u32,
    block: Vec<u8>,
    /// Blocks being compressed, in stream order.
    pending: VecDeque<mpsc::Receiver<io::Result<Segment>>>,
    /// Blocks allowed in flight before `write` waits for the oldest (bounds memory).
    in_flight: usize,
    crc: crc32fast::Hasher,
    len: u64,
}

/// The gzip header flate2 writes too: no name, no mtime (reproducible), unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// A final, empty fixed-Huffman deflate block: ends the stream after the sync-flushed segments.
const LAST_BLOCK: [u8; 2] = [0x03, 0x00];
/// The length of an empty tar: its two zero blocks.
const EMPTY_TAR_LEN: u64 = 1024;
/// The deflate stream Go's compress/gzip writes for an empty tar at its default level (one fixed
/// Huffman block, then a final empty stored block). Behind the same header and trailer as ours,
/// it makes BuildKit's empty layer, `sha256:4f4fb700…` (32 bytes): what BuildKit writes for a
/// step that changes nothing, and the most common blob in registries, which therefore already
/// hold it. Hand-written, at every level: only Go's encoder makes these bytes, and a digest
/// shared with BuildKit is worth more than a level's choice on 1 KiB of zeros.
const EMPTY_TAR_DEFLATE: [u8; 14] =
    [0x62, 0x18, 0x05, 0xa3, 0x60, 0x14, 0x8c, 0x58, 0x00, 0x08, 0x00, 0x00, 0xff, 0xff];

impl<W: Write> ParGzEncoder<W> {
    /// An encoder at `level` (0–9) writing to `inner`.
    pub fn new(mut inner: W, level: u32) -> io::Result<ParGzEncoder<W>> {
        inner.write_all(&HEADER)?;
        Ok(ParGzEncoder {
            inner,
            level: level.min(9),
            block: Vec::with_capacity(BLOCK),
            pending: VecDeque::new(),
            in_flight: rayon::current_num_threads() * 2,
            crc: crc32fast::Hasher::new(),
            len: 0,
        })
    }

    /// Hands the current block to the pool.
    fn dispatch(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let (tx, rx) = mpsc::channel();
        let level = self.level;
        rayon::spawn(move || {
            let _ = tx.send(deflate(block, level));
        });
        self.pending.push_back(rx);
        while self.pending.len() > self.in_flight {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else { return Ok(()) };
        let stopped = || io::Error::other("a compression thread stopped");
        let bytes = loop {
            // On a thread of the pool itself (an encoder used inside a parallel job), waiting
            // would block a thread the block may need: run pending jobs meanwhile instead.
            if rayon::current_thread_index().is_none() {
                break rx.recv().map_err(|_| stopped())?;
            }
            match rx.try_recv() {
                Ok(r) => break r,
                Err(mpsc::TryRecvError::Empty) => {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::thread::yield_now();
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => return Err(stopped()),
            }
        }?;
        match bytes {
            Segment::Deflated(bytes) => self.inner.write_all(&bytes),
            Segment::Stored(block) => write_stored(&mut self.inner, &block),
        }
    }

    /// Compresses what is left, writes the end of the stream and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.len == EMPTY_TAR_LEN && self.pending.is_empty() && self.block.iter().all(|&b| b == 0) {
            // An empty tar: Go's bytes for it, so the layer is BuildKit's empty layer.
            self.inner.write_all(&EMPTY_TAR_DEFLATE)?;
        } else {
            if !self.block.is_empty() {
                self.dispatch()?;
            }
            while !self.pending.is_empty() {
                self.write_oldest()?;
            }
            self.inner.write_all(&LAST_BLOCK)?;
        }
        let crc = self.crc.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        // ISIZE: the length modulo 2^32, as RFC 1952 says.
        self.inner.write_all(&((self.len & 0xffff_ffff) as u32).to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        if self.block.len() == BLOCK {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `block` as stored deflate blocks ending in a sync flush: framed here exactly as zlib
/// frames level 0 (blocks of 65,535 bytes, then the empty block of the flush), rather than by
/// zlib, which would copy every byte once more. The same bytes as before, so blob digests did
/// not change.
fn write_stored(out: &mut impl Write, block: &[u8]) -> io::Result<()> {
    for piece in block.chunks(STORED_MAX) {
        let len = piece.len() as u16;
        // BFINAL 0, BTYPE 00, padded to the byte; LEN and its complement.
        let [l0, l1] = len.to_le_bytes();
        let [n0, n1] = (!len).to_le_bytes();
        out.write_all(&[0, l0, l1, n0, n1])?;
        out.write_all(piece)?;
    }
    out.write_all(&SYNC_FLUSH)
}

/// A block's part of the deflate stream: byte-aligned, not final.
enum Segment {
    /// Compressed, ending in a sync flush.
    Deflated(Vec<u8>),
    /// The block itself, to be framed as stored deflate blocks.
    Stored(Vec<u8>),
}

/// One block as a segment of the deflate stream.
fn deflate(data: Vec<u8>, level: u32) -> io::Result<Segment> {
    if level == 0 || !compresses(&data) {
        return Ok(Segment::Stored(data));
    }
    let mut c = Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 64);
    loop {
        let done = c.total_in() as usize;
        c.compress_vec(&data[done..], &mut out, FlushCompress::Sync).map_err(io::Error::other)?;
        // Finished when all input is in and the flush fitted (room was left).
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            return Ok(Segment::Deflated(out));
        }
        out.reserve(64 << 10);
    }
}

/// Whether a block's start shrinks by at least 2% at the fastest level. A quick look decides
/// when it is clear (random bytes grow, text halves): the fastest level emits incompressible
/// bytes one literal at a time, slowly enough that sampling 32 KiB of every random MiB took a
/// tenth of a 1 GiB layer's time.
fn compresses(data: &[u8]) -> bool {
    let mut percent = 100;
    for (i, sample) in SAMPLES.iter().map(|&n| &data[..data.len().min(n)]).enumerate() {
        if sample.is_empty() {
            return true;
        }
        let mut c = Compress::new(flate2::Compression::new(1), false);
        let mut out = Vec::with_capacity(sample.len() + 1024);
        percent = match c.compress_vec(sample, &mut out, FlushCompress::Finish) {
            Ok(_) if c.total_in() as usize == sample.len() => out.len() * 100 / sample.len(),
            _ => return true,
        };
        let last = i + 1 == SAMPLES.len() || sample.len() == data.len();
        if last || !(90..100).contains(&percent) {
            break;
        }
    }
    percent < 98
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // The single-member decoder: the output is one gzip member, as registries expect.
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("valid gzip");
        out
    }

    fn gzip(data: &[u8], level: u32, chunk: usize) -> Vec<u8> {
        let mut e = ParGzEncoder::new(Vec::new(), level).unwrap();
        for part in data.chunks(chunk.max(1)) {
            e.write_all(part).unwrap();
        }
        e.finish().unwrap()
    }

    /// Text-like bytes that compress, then random bytes that do not.
    fn mixed(len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len / 2).map(|i| b"layer data "[i % 11]).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        v.extend((0..len - len / 2).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        v
    }

    #[test]
    fn round_trips_any_size_and_write_pattern() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 12_345] {
            let data = mixed(len);
            for chunk in [7, 65_536, BLOCK * 2] {
                assert_eq!(gunzip(&gzip(&data, 6, chunk)), data, "len {len}, writes of {chunk}");
            }
        }
    }

    /// An empty tar compresses to BuildKit's empty layer, byte for byte, at every level.
    #[test]
    fn an_empty_tar_is_buildkits_empty_layer() {
        let empty = [0u8; EMPTY_TAR_LEN as usize];
        for level in [0, 1, 6, 9] {
            for chunk in [512, 1024] {
                let out = gzip(&empty, level, chunk);
                assert_eq!(gunzip(&out), empty, "level {level}");
                assert_eq!(
                    crate::digest::Digest::of(&out).to_string(),
                    "sha256:4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1",
                    "level {level}, writes of {chunk}"
                );
            }
        }
        let mut almost = empty;
        almost[1023] = 1;
        assert_eq!(gunzip(&gzip(&almost, 6, 1024)), almost, "other bytes of that length are compressed");
    }

    #[test]
    fn output_depends_only_on_data_and_level() {
        let data = mixed(5 * BLOCK);
        let a = gzip(&data, 6, 4096);
        let b = gzip(&data, 6, 1 << 22);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let c = one.install(|| gzip(&data, 6, 4096));
        assert_eq!(a, b);
        assert_eq!(a, c, "the same bytes on one core as on many");
    }

    /// Stored blocks framed by hand are zlib's level 0, byte for byte.
    #[test]
    fn stored_blocks_are_framed_as_zlib_frames_them() {
        for len in [1, 1000, STORED_MAX, STORED_MAX + 1, 200_000, BLOCK] {
            let data = mixed(len);
            let mut c = Compress::new(flate2::Compression::new(0), false);
            let mut zlib = Vec::with_capacity(len + len / 64 + 64);
            c.compress_vec(&data, &mut zlib, FlushCompress::Sync).unwrap();
            let mut ours = Vec::new();
            write_stored(&mut ours, &data).unwrap();
            assert!(ours == zlib, "{len} bytes");
        }
    }

    #[test]
    fn every_level_round_trips_and_keeps_incompressible_blocks_stored() {
        let data = mixed(2 * BLOCK + 777);
        let sizes: Vec<usize> = (0..=9)
            .map(|level| {
                let out = gzip(&data, level, 65_536);
                assert_eq!(gunzip(&out), data, "level {level}");
                // Random bytes cost ~5 bytes per 64 KiB at every level: stored, not deflated.
                assert!(out.len() < data.len() / 2 + data.len() / 100 || level == 0, "level {level}");
                out.len()
            })
            .collect();
        assert!(sizes[0] > data.len(), "level 0 stores everything: {sizes:?}");
        assert!(sizes[9] <= sizes[1], "{sizes:?}");
    }

    #[test]
    fn incompressible_blocks_are_stored_and_text_is_compressed() {
        let data = mixed(4 * BLOCK);
        let out = gzip(&data, 6, 65_536);
        // Half compresses to almost nothing, half is stored with ~5 bytes per 64 KiB.
        assert!(out.len() < data.len() / 2 + data.len() / 100, "{} of {}", out.len(), data.len());
        assert!(out.len() > data.len() / 2, "random bytes cannot shrink");
    }
}
