//! Writing a layer: entries → tar → (uncompressed digest = diff_id) → gzip/zstd → (blob digest) →
//! a temporary file in the store, renamed into place when done. Nothing is held in memory.
//!
//! Reproducible by construction: the caller adds entries in sorted order, headers carry only path,
//! mode, numeric uid/gid, mtime (clamped to the build's epoch unless the user keeps real times), size and link target —
//! no user/group names, no atime/ctime, no xattrs but a file's capabilities (a PAX record, the one
//! xattr BuildKit's layers carry) — and the compressors write no timestamps.

use std::io::{self, Read, Write};

use oci_spec::image::MediaType;

use super::index::{Kind, Meta};
use crate::digest::ThreadedHasher;
use crate::image::manifest::Layer;
use crate::store::{BlobWriter, Store, StoreError, Tee};

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// gzip (the default, what every registry and runtime accepts).
    #[default]
    Gzip,
    /// zstd (smaller and faster; needs containerd ≥ 1.5 / podman ≥ 3 to run).
    Zstd,
    /// No compression.
    None,
}

impl Compression {
    /// Its name in outputs, records and the helper protocol: `gzip`, `zstd` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }

    /// The compression [`Compression::name`] names (gzip for anything else).
    pub fn from_name(name: &str) -> Compression {
        match name {
            "zstd" => Compression::Zstd,
            "none" => Compression::None,
            _ => Compression::Gzip,
        }
    }

    /// The compression a layer media type says (`None` for one hako does not know).
    pub fn of_media_type(mt: &MediaType) -> Option<Compression> {
        let s = mt.to_string();
        if s.ends_with("+zstd") || s.ends_with(".zstd") {
            Some(Compression::Zstd)
        } else if s.ends_with("gzip") {
            Some(Compression::Gzip)
        } else if s.ends_with(".tar") || s.ends_with("layer.v1.tar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// The OCI layer media type.
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
            Compression::None => MediaType::ImageLayer,
        }
    }

    /// The level used when none is given: gzip's 6 and zstd's 3, as BuildKit (and the `gzip`
    /// and `zstd` tools) default to; 0 for no compression.
    pub fn default_level(self) -> u32 {
        match self {
            Compression::Gzip => 6,
            Compression::Zstd => 3,
            Compression::None => 0,
        }
    }

    /// The levels `compression-level=` may give, as buildx documents them: gzip 0–9, zstd 0–22;
    /// none for no compression.
    pub fn levels(self) -> Option<(u32, u32)> {
        match self {
            Compression::Gzip => Some((0, 9)),
            Compression::Zstd => Some((0, 22)),
            Compression::None => None,
        }
    }
}

/// The highest zstd level hako compresses with (see [`Codec::new`]).
const ZSTD_MAX_LEVEL: u32 = 19;

/// The input each zstd worker compresses at a time. zstd's default (4 windows, 8 MiB at level 3)
/// took peak memory past 64 MiB on two cores; 2 MiB keeps it near the gzip path's while the
/// workers stay busy. Part of the format's framing: changing it changes zstd blob digests.
const ZSTD_JOB_SIZE: u32 = 2 << 20;

/// A compression at a level: what a compressed blob is made with. The same tar, compression and
/// level give the same bytes on every machine, whatever its number of cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Codec {
    compression: Compression,
    level: u32,
}

/// A `compression-level` that does not fit the compression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    /// Outside the compression's levels.
    #[error("compression-level={level} is out of range for {compression}: expected {min} to {max}")]
    OutOfRange {
        /// The compression's name.
        compression: &'static str,
        /// The level asked for.
        level: i64,
        /// Its lowest level.
        min: u32,
        /// Its highest level.
        max: u32,
    },
    /// A level for no compression.
    #[error("compression-level does not apply to compression=uncompressed")]
    Uncompressed,
}

impl Codec {
    /// `compression` at `level` (its [default](Compression::default_level) when none), checked
    /// against [`Compression::levels`]. gzip 0 stores (no compression), 9 compresses best. zstd's
    /// levels are zstd's own from 1 to 19; 0, which BuildKit reads as its fastest and zstd as its
    /// default, is 1, zstd's fastest; and zstd's "ultra" levels 20–22 are 19: their tables and
    /// windows take hundreds of MiB per stream while compressing (so per core; 700 MiB for 22
    /// on two cores here, against 130 MiB for 19) and windows of up to 128 MiB for every puller
    /// to decompress. BuildKit maps every level from 9 up to one, its encoder's best.
    pub fn new(compression: Compression, level: Option<i64>) -> Result<Codec, LevelError> {
        let Some(level) = level else { return Ok(Codec::from(compression)) };
        let Some((min, max)) = compression.levels() else { return Err(LevelError::Uncompressed) };
        let out_of_range = || LevelError::OutOfRange { compression: compression.name(), level, min, max };
        let level = u32::try_from(level).ok().filter(|l| (min..=max).contains(l)).ok_or_else(out_of_range)?;
        let level = if compression == Compression::Zstd { level.clamp(1, ZSTD_MAX_LEVEL) } else { level };
        Ok(Codec { compression, level })
    }

    /// The compression.
    pub fn compression(self) -> Compression {
        self.compression
    }

    /// The level.
    pub fn level(self) -> u32 {
        self.level
    }

    /// Whether the level is the compression's default.
    pub fn is_default_level(self) -> bool {
        self.level == self.compression.default_level()
    }
}

impl From<Compression> for Codec {
    /// `compression` at its default level.
    fn from(compression: Compression) -> Codec {
        Codec { compression, level: compression.default_level() }
    }
}

impl Default for Codec {
    /// gzip at level 6.
    fn default() -> Codec {
        Codec::from(Compression::default())
    }
}

enum Encoder {
    Gzip(super::pgzip::ParGzEncoder<BlobWriter>),
    Zstd(zstd::Encoder<'static, BlobWriter>),
    None(BlobWriter),
}

/// Where the tar goes: the encoder, and a hash of the tar itself for the diff id, on a thread of
/// its own so the walk only copies the bytes to it (with the blob's hash on another, a big layer
/// costs one SHA-256 per core, beside the walk and the compression). Uncompressed, the blob
/// writer's digest of the same bytes is the diff id, so the tar is hashed once (the blob writer
/// hashes what it stores in any case, to name the blob).
struct TarSink {
    enc: Encoder,
    diff: Option<ThreadedHasher>,
}

impl TarSink {
    fn new(store: &Store, codec: Codec, tee: Option<Tee>) -> Result<TarSink, StoreError> {
        let diff = (codec.compression != Compression::None).then(ThreadedHasher::new);
        Ok(TarSink { enc: Encoder::new(store, codec, tee)?, diff })
    }
}

impl Write for TarSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.enc.write(buf)?;
        if let Some(d) = &mut self.diff {
            d.write_all(&buf[..n])?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.enc.flush()
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::None(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::None(e) => e.flush(),
        }
    }
}

impl Encoder {
    fn new(store: &Store, codec: Codec, tee: Option<Tee>) -> Result<Encoder, StoreError> {
        let blob = match tee {
            Some(t) => store.teed_blob_writer(t)?,
            None => store.blob_writer()?,
        };
        Ok(match codec.compression {
            // On all cores, incompressible blocks stored.
            Compression::Gzip => Encoder::Gzip(super::pgzip::ParGzEncoder::new(blob, codec.level)?),
            Compression::Zstd => {
                // Levels are at most ZSTD_MAX_LEVEL (`Codec::new`).
                let mut e = zstd::Encoder::new(blob, codec.level as i32)?;
                // With any number of workers ≥ 1 zstd gives the same bytes, so the blob digest
                // does not depend on the machine.
                e.multithread(rayon::current_num_threads().max(1) as u32)?;
                e.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                Encoder::Zstd(e)
            }
            Compression::None => Encoder::None(blob),
        })
    }

    fn finish(self) -> io::Result<BlobWriter> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::None(e) => Ok(e),
        }
    }
}

/// A layer being written.
pub struct LayerWriter {
    tar: tar::Builder<TarSink>,
    compression: Compression,
    clamp: Option<i64>,
    entries: u64,
    /// File content passes through here, in reads of up to [`READ`] bytes.
    buf: Vec<u8>,
}

/// The most of a file read at once: the tar crate's copy reads 8 KiB at a time, a system call
/// per 8 KiB, which showed in the profile of a 1 GiB layer.
const READ: usize = 1 << 20;

impl LayerWriter {
    /// Starts a layer in `store`. With `clamp` (the build's epoch), no mtime is later than it.
    /// `codec` is a [`Codec`] or a [`Compression`] at its default level.
    pub fn new(
        store: &Store,
        codec: impl Into<Codec>,
        clamp: Option<i64>,
    ) -> Result<LayerWriter, StoreError> {
        LayerWriter::teed(store, codec.into(), clamp, None)
    }

    /// [`LayerWriter::new`] whose blob is also copied into `tee` as it is written (see
    /// [`LayerWriter::finish_teed`]).
    pub fn teed(
        store: &Store,
        codec: Codec,
        clamp: Option<i64>,
        tee: Option<Tee>,
    ) -> Result<LayerWriter, StoreError> {
        let mut tar = tar::Builder::new(TarSink::new(store, codec, tee)?);
        tar.mode(tar::HeaderMode::Complete);
        Ok(LayerWriter { tar, compression: codec.compression(), clamp, entries: 0, buf: Vec::new() })
    }

    /// The clamp of mtimes this layer was started with.
    pub fn clamp(&self) -> Option<i64> {
        self.clamp
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Appends one entry. `path` is relative (no leading `/`); `content` is read for regular files
    /// (exactly `meta.size` bytes).
    pub fn add(&mut self, path: &str, meta: &Meta, content: Option<&mut dyn Read>) -> io::Result<()> {
        let mut h = LayerWriter::header(meta, self.clamp);
        let path = path.trim_start_matches('/');
        self.entries += 1;
        if let (Kind::File, Some(cap)) = (&meta.kind, &meta.capability) {
            let records = pax_record(super::index::CAPABILITY_PAX, cap);
            self.tar.get_mut().write_all(&pax_header(path, &records))?;
        }
        match &meta.kind {
            Kind::File => {
                let mut empty = io::empty();
                let reader: &mut dyn Read = match content {
                    Some(r) => r,
                    None => &mut empty,
                };
                // Guard against files that change size while being read: never write more or
                // less than the header says.
                let mut limited = ExactReader { inner: reader.take(meta.size), remaining: meta.size };
                // The tar crate writes the header (after a GNU long-name entry if the path needs
                // one); given no data it writes no padding either, so the content and its
                // padding follow here, read in big pieces: the same bytes as its own copy.
                self.tar.append_data(&mut h, path, io::empty())?;
                append_content(self.tar.get_mut(), &mut limited, meta.size, &mut self.buf)
            }
            Kind::Dir => {
                let p = if path.is_empty() { "./".to_string() } else { format!("{path}/") };
                self.tar.append_data(&mut h, p, io::empty())
            }
            Kind::Symlink(target) => self.tar.append_link(&mut h, path, target),
            Kind::Hardlink(target) => self.tar.append_link(&mut h, path, target.trim_start_matches('/')),
            Kind::Char(..) | Kind::Block(..) | Kind::Fifo => self.tar.append_data(&mut h, path, io::empty()),
        }
    }

    /// A tar header carrying exactly what hako keeps of an entry: type, mode, numeric owner,
    /// mtime (clamped), size for files and device numbers; nothing that varies between machines.
    pub fn header(meta: &Meta, clamp: Option<i64>) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_mode(meta.mode & 0o7777);
        h.set_uid(u64::from(meta.uid));
        h.set_gid(u64::from(meta.gid));
        let mtime = match clamp {
            Some(c) => meta.mtime.min(c),
            None => meta.mtime,
        };
        h.set_mtime(mtime.max(0) as u64);
        h.set_size(0);
        let kind = match &meta.kind {
            Kind::File => {
                h.set_size(meta.size);
                tar::EntryType::Regular
            }
            Kind::Dir => tar::EntryType::Directory,
            Kind::Symlink(_) => tar::EntryType::Symlink,
            Kind::Hardlink(_) => tar::EntryType::Link,
            Kind::Char(..) => tar::EntryType::Char,
            Kind::Block(..) => tar::EntryType::Block,
            Kind::Fifo => tar::EntryType::Fifo,
        };
        h.set_entry_type(kind);
        if let Kind::Char(maj, min) | Kind::Block(maj, min) = meta.kind {
            // ustar headers have device fields; setting them cannot fail.
            let _ = h.set_device_major(maj);
            let _ = h.set_device_minor(min);
        }
        h
    }

    /// Finishes the tar and the compression and stores the blob.
    pub fn finish(self) -> Result<Layer, StoreError> {
        self.finish_teed().map(|(layer, _)| layer)
    }

    /// [`LayerWriter::finish`], and whether the whole blob reached the tee.
    pub fn finish_teed(self) -> Result<(Layer, bool), StoreError> {
        let LayerWriter { tar, compression, .. } = self;
        seal(tar.into_inner()?, compression)
    }
}

/// One PAX record, `"<length> <key>=<value>\n"`, the length counting itself (Go's
/// `formatPAXRecord`).
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // the space, `=` and the newline
    let mut len = body + body.to_string().len();
    if len.to_string().len() + body != len {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// The extended header carrying `records` for the entry at `path`, padded to whole blocks, as
/// Go's archive/tar writes it (`writeRawFile`): named `<dir>/PaxHeaders.0/<name>` (truncated to
/// 100 bytes), typeflag `x`, zero mode, owner and mtime, ustar magic. Hand-written: the tar crate
/// writes no PAX headers, and Go's are what BuildKit's layers hold.
fn pax_header(path: &str, records: &[u8]) -> Vec<u8> {
    let (dir, file) = path.rsplit_once('/').map_or(("", path), |(d, f)| (d, f));
    let name =
        if dir.is_empty() { format!("PaxHeaders.0/{file}") } else { format!("{dir}/PaxHeaders.0/{file}") };
    // Go's toASCII drops what is not ASCII (and NULs); then the name is cut to its field.
    let mut name: Vec<u8> = name.bytes().filter(|b| b.is_ascii() && *b != 0).take(100).collect();
    while name.last() == Some(&b'/') {
        name.pop();
    }
    let mut block = [0u8; 512];
    block[..name.len()].copy_from_slice(&name);
    // Go's formatOctal: zero-padded to the field's width less one, then NUL.
    let octal = |block: &mut [u8; 512], at: usize, width: usize, value: u64| {
        let s = format!("{value:0w$o}", w = width - 1);
        block[at..at + width - 1].copy_from_slice(s.as_bytes());
        block[at + width - 1] = 0;
    };
    octal(&mut block, 100, 8, 0); // mode
    octal(&mut block, 108, 8, 0); // uid
    octal(&mut block, 116, 8, 0); // gid
    octal(&mut block, 124, 12, records.len() as u64); // size
    octal(&mut block, 136, 12, 0); // mtime
    block[156] = b'x';
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    // The checksum is taken with its own field as spaces, then written as six digits, NUL, space.
    block[148..156].copy_from_slice(b"        ");
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    octal(&mut block, 148, 7, sum);
    let mut out = block.to_vec();
    out.extend_from_slice(records);
    out.resize(512 + records.len().div_ceil(512) * 512, 0);
    out
}

/// Writes a tar entry's content after its header: `size` bytes from `content`, read in pieces of
/// up to 1 MiB through `buf` (the tar crate's own copy reads 8 KiB at a time, a system call per
/// 8 KiB), then the zeros that pad it to a 512-byte block. The caller writes the header with no
/// data (the tar crate then writes no padding), so the bytes are the same as the crate's.
pub fn append_content(
    out: &mut dyn Write,
    content: &mut dyn Read,
    size: u64,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let want = usize::try_from(size).unwrap_or(usize::MAX).min(READ);
    if buf.len() < want {
        buf.resize(want, 0);
    }
    let mut left = size;
    while left > 0 {
        let n = match content.read(&mut buf[..want]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{left} bytes short"))),
            Ok(n) => n.min(usize::try_from(left).unwrap_or(usize::MAX)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let pad = (512 - size % 512) % 512;
    out.write_all(&[0; 512][..pad as usize])
}

/// Stores the layer tar `tar` (uncompressed) compressed with `codec`; returns the blob's layer,
/// whose diff id is that of `tar`.
pub fn compress_tar(store: &Store, tar: &mut dyn Read, codec: Codec) -> Result<Layer, StoreError> {
    let mut sink = TarSink::new(store, codec, None)?;
    io::copy(tar, &mut sink)?;
    seal(sink, codec.compression).map(|(layer, _)| layer)
}

/// Finishes a layer's compression and stores its blob: the tar's digest is the diff id, the
/// compressed bytes' the blob digest. Also says whether the blob was teed whole.
fn seal(sink: TarSink, compression: Compression) -> Result<(Layer, bool), StoreError> {
    let (digest, size, teed) = sink.enc.finish()?.commit_teed(None)?;
    let diff_id = sink.diff.map_or_else(|| digest.clone(), |d| d.finish().0);
    Ok((Layer { digest, diff_id, size, media_type: compression.media_type() }, teed))
}

/// Reads exactly `remaining` bytes: pads with zeros if the source ends early (a file truncated
/// while being read), so the tar stays well-formed; the caller's `take` stops overlong sources.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        let n = if n == 0 {
            buf[..max].fill(0);
            max
        } else {
            n
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::layer::index::Meta;

    /// A file's capabilities go in a PAX header as Go's archive/tar writes it: these are the
    /// bytes of dockerd 26.1's layer for `setcap cap_net_bind_service=+ep
    /// /usr/local/bin/captrue`.
    #[test]
    fn capabilities_are_a_pax_record_as_go_writes_it() {
        let cap = [1u8, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let records = pax_record(super::super::index::CAPABILITY_PAX, &cap);
        let mut want_record = b"57 SCHILY.xattr.security.capability=".to_vec();
        want_record.extend_from_slice(&cap);
        want_record.push(b'\n');
        assert_eq!(records, want_record);
        let got = pax_header("usr/local/bin/captrue", &records);
        let mut want = [0u8; 1024];
        want[..34].copy_from_slice(b"usr/local/bin/PaxHeaders.0/captrue");
        want[100..157]
            .copy_from_slice(b"0000000\x000000000\x000000000\x0000000000071\x0000000000000\x00014260\x00 x");
        want[257..265].copy_from_slice(b"ustar\x0000");
        want[512..512 + records.len()].copy_from_slice(&records);
        assert_eq!(got, want);
        // A record whose length gains a digit with its own length (Go's second pass).
        assert!(pax_record("k", &[b'v'; 94]).starts_with(b"101 k="));
        assert_eq!(pax_record("k", &[b'v'; 94]).len(), 101);
        assert!(pax_record("k", &[b'v'; 93]).starts_with(b"99 k="));
        assert_eq!(pax_record("k", &[b'v'; 93]).len(), 99);
    }

    /// A layer with a file that compresses (several gzip blocks) and one that does not (stored
    /// blocks), written with `compression` at its default level.
    fn golden_layer(store: &Store, compression: Compression) -> Layer {
        let mut w = LayerWriter::new(store, compression, Some(0)).expect("writer");
        let text: Vec<u8> = (0..(2 << 20) + 12_345).map(|i: u32| b"golden layer "[i as usize % 13]).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let random: Vec<u8> = (0..(3 << 19))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for (path, data) in [("random.bin", &random), ("text.txt", &text)] {
            let meta = Meta::file(data.len() as u64);
            w.add(path, &meta, Some(&mut &data[..])).expect("add");
        }
        w.finish().expect("finish")
    }

    /// The default gzip and zstd blobs are pinned: a change to the compressors (a level, a block
    /// size, a flag) that changes every image digest hako makes must fail here first.
    #[test]
    fn default_compression_gives_the_same_blobs_as_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let plain = golden_layer(&store, Compression::None);
        let gzip = golden_layer(&store, Compression::Gzip);
        let zstd = golden_layer(&store, Compression::Zstd);
        assert_eq!(
            (gzip.diff_id.clone(), zstd.diff_id.clone()),
            (plain.diff_id.clone(), plain.diff_id.clone())
        );
        assert_eq!(
            plain.diff_id.to_string(),
            "sha256:068090ec4998397b8b61efb2069545467a5233c583a2c5c1cb18485baeb4b8e6"
        );
        assert_eq!(
            gzip.digest.to_string(),
            "sha256:c705148c115552041ab38085e0f29b7b79dccd7e67c5d6f280fbfbdf50a6837e"
        );
        assert_eq!(
            zstd.digest.to_string(),
            // 2 MiB zstd jobs (ZSTD_JOB_SIZE) since issue 13's memory limit.
            "sha256:0df858f297a533d3a9b47ab7e5b1040c8bae346d0f9bc7e469c064356e703d2b"
        );
    }

    /// zstd with workers: the bytes do not depend on how many (so blob digests are the same on
    /// every machine), for input long enough to be cut into several jobs.
    #[test]
    fn zstd_output_does_not_depend_on_the_number_of_workers() {
        let mut x: u64 = 1;
        let data: Vec<u8> = (0..48 << 20)
            .map(|i: u32| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                if i.is_multiple_of(3) { (x >> 59) as u8 } else { b"abc"[i as usize % 3] }
            })
            .collect();
        let with = |workers: u32| {
            let mut e = zstd::Encoder::new(Vec::new(), 3).expect("encoder");
            e.multithread(workers).expect("workers");
            e.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE)).expect("job size");
            e.write_all(&data).expect("write");
            e.finish().expect("finish")
        };
        let one = with(1);
        assert_eq!(one, with(2));
        assert_eq!(one, with(4));
    }
}
