//! Local archives that `ADD` unpacks: a tar, possibly compressed with gzip, bzip2, xz or zstd,
//! recognised by content (as Docker does), never by file name.

use std::io::{BufReader, Read};

use super::read_up_to;
use std::path::Path;

/// A recognised archive compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    /// Plain tar.
    Tar,
    /// gzip-compressed tar.
    Gzip,
    /// bzip2-compressed tar.
    Bzip2,
    /// xz-compressed tar.
    Xz,
    /// zstd-compressed tar.
    Zstd,
}

/// Whether the file at `path` is a (compressed) tar archive. A compressed file that does not hold
/// a tar is not an archive (ADD copies it as it is, like Docker).
pub fn sniff(path: &Path) -> std::io::Result<Option<Archive>> {
    let mut head = [0u8; 6];
    let n = read_up_to(&mut fs_err::File::open(path)?, &mut head)?;
    let kind = match &head[..n] {
        [0x1f, 0x8b, ..] => Archive::Gzip,
        [b'B', b'Z', b'h', ..] => Archive::Bzip2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Archive::Xz,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Archive::Zstd,
        _ => Archive::Tar,
    };
    // Look for the ustar magic in the first (decompressed) header block.
    let mut block = vec![0u8; 512];
    let got = match open(path, kind) {
        Ok(mut r) => read_up_to(&mut r, &mut block).unwrap_or(0),
        Err(_) => 0,
    };
    let is_tar = got == 512 && (&block[257..262] == b"ustar" || is_v7_tar(&block));
    Ok(is_tar.then_some(kind))
}

/// Old (v7) tar headers have no magic: accept a block whose checksum field matches.
fn is_v7_tar(block: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(&block[148..156]) else { return false };
    let Ok(sum) = u32::from_str_radix(text.trim_matches(|c: char| c == '\0' || c == ' '), 8) else {
        return false;
    };
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(b) })
        .sum();
    sum == computed && block[0] != 0
}

/// The archive's tar stream, decompressed as it is read.
pub fn open(path: &Path, kind: Archive) -> std::io::Result<Box<dyn Read>> {
    let file = BufReader::with_capacity(1 << 20, fs_err::File::open(path)?);
    Ok(match kind {
        Archive::Tar => Box::new(file),
        Archive::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Archive::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(file)),
        Archive::Xz => Box::new(lzma_rust2::XzReader::new(file, true)),
        Archive::Zstd => Box::new(zstd::Decoder::with_buffer(file)?),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn tar_bytes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "f", &b"hi"[..]).expect("append");
        b.into_inner().expect("tar")
    }

    #[test]
    fn recognises_every_compression_by_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tar = tar_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gz");
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&tar).expect("bz");
        let mut xz = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::default()).expect("xz");
        xz.write_all(&tar).expect("xz");
        let cases: Vec<(&str, Vec<u8>, Option<Archive>)> = vec![
            ("plain.tar", tar.clone(), Some(Archive::Tar)),
            ("x.tgz", gz.finish().expect("gz"), Some(Archive::Gzip)),
            ("x.tbz", bz.finish().expect("bz"), Some(Archive::Bzip2)),
            ("x.txz", xz.finish().expect("xz"), Some(Archive::Xz)),
            ("x.tzst", zstd::encode_all(&tar[..], 3).expect("zstd"), Some(Archive::Zstd)),
            ("notes.tar", b"just text, named like a tar".to_vec(), None),
            (
                "data.gz",
                {
                    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    g.write_all(b"not a tar").expect("gz");
                    g.finish().expect("gz")
                },
                None,
            ),
            ("empty", Vec::new(), None),
        ];
        for (name, bytes, want) in cases {
            let p = dir.path().join(name);
            fs_err::write(&p, &bytes).expect("write");
            assert_eq!(sniff(&p).expect("sniff"), want, "{name}");
            if let Some(kind) = want {
                let mut out = Vec::new();
                open(&p, kind).expect("open").read_to_end(&mut out).expect("read");
                assert_eq!(out, tar, "{name}");
            }
        }
    }
}
