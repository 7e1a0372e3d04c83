//! Layers: writing them reproducibly ([`writer`]), reading them back ([`open_layer`]), applying
//! them safely to a directory ([`extract`]), indexing their metadata ([`index`]), recognising ADD
//! archives ([`archive`]) and turning an overlayfs upperdir into a layer ([`diff`], for RUN).
//! [`rootpath`] resolves paths inside a root (symlinks never lead out of it), on disk or in an
//! index, for everything above that reads or writes an image's filesystem.

pub mod archive;
pub mod compress;
pub mod delta;
pub mod diff;
pub mod extract;
pub mod index;
pub mod pgzip;
pub mod pyc;
pub mod rootpath;
pub mod times;
pub mod walkdiff;
pub mod writer;

use std::io::{BufReader, Read};

pub use writer::{Codec, Compression, LayerWriter, LevelError, append_content};

use crate::image::manifest::Layer;
use crate::store::pagecache::DropBehind;
use crate::store::{Store, StoreError};

/// Opens a stored layer as an uncompressed tar stream, by its media type.
pub fn open_layer(store: &Store, layer: &Layer) -> Result<Box<dyn Read>, StoreError> {
    let file = BufReader::with_capacity(1 << 20, DropBehind::new(store.open_blob(&layer.digest)?));
    // Docker's media type `application/vnd.docker.image.rootfs.diff.tar.gzip` reads as gzip;
    // anything unknown is sniffed.
    Ok(match Compression::of_media_type(&layer.media_type) {
        Some(Compression::Zstd) => Box::new(zstd::Decoder::with_buffer(file)?),
        Some(Compression::Gzip) => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Some(Compression::None) => Box::new(file),
        None => sniff(file)?,
    })
}

/// The order of entries in every layer hako writes, BuildKit's: a walk of the tree that reads
/// each directory's names in byte order and goes into a directory right after its entry, i.e.
/// paths compared component by component (`a`, `a/b`, `a-b`, `a.txt`). Parents come first.
pub fn tar_order(a: &str, b: &str) -> std::cmp::Ordering {
    // No name holds a NUL byte, so `/` as NUL sorts a directory's contents before its siblings.
    fn key(s: &str) -> impl Iterator<Item = u8> + '_ {
        s.bytes().map(|c| if c == b'/' { 0 } else { c })
    }
    key(a).cmp(key(b))
}

/// Reads until `buf` is full or the stream ends; how many bytes were read.
pub(crate) fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The directories above a relative layer path, outermost first (`a/b/c` → `a`, `a/b`).
pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Adds the directories above the relative layer path `path` to `set`, innermost first, stopping
/// at one already there: whoever added it added its own (the diffs' parents of written entries).
pub(crate) fn add_parents(set: &mut std::collections::HashSet<String>, path: &str) {
    let mut p = path;
    while let Some((parent, _)) = p.rsplit_once('/') {
        if !set.insert(parent.to_string()) {
            break;
        }
        p = parent;
    }
}

fn sniff(mut file: BufReader<DropBehind<fs_err::File>>) -> Result<Box<dyn Read>, StoreError> {
    use std::io::BufRead;
    let head = file.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::with_buffer(file)?)
    } else {
        Box::new(file)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn layer_order_is_a_walk_with_each_directorys_names_sorted() {
        let mut paths = vec!["a0", "a.txt", "a/b/c", "a-b", "a", "a/b", "b", "a/b.x", "a/b/c/d"];
        paths.sort_by(|x, y| super::tar_order(x, y));
        assert_eq!(paths, ["a", "a/b", "a/b/c", "a/b/c/d", "a/b.x", "a-b", "a.txt", "a0", "b"]);
    }
}
