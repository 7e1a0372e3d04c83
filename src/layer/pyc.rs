//! Python's cached bytecode kept fresh when the clamp moves its source's mtime.
//!
//! A `.pyc` that Python writes by default (PEP 552's timestamp-based kind) records its source's
//! mtime and size, and Python uses it only while the `.py` still has both. Clamping file times in
//! a layer moves the `.py`'s mtime to the build's epoch, but the `.pyc` that `pip install`,
//! `py3compile` (Debian's postinst) or `compileall` wrote beside it in the same step still
//! records the real time. Every `.pyc` of such a layer would be stale: Python would compile the
//! module again at every start where it cannot write (a non-root user), or write a new `.pyc`
//! where it can. So a `.pyc` that matched its source, both in the same layer, records the
//! source's clamped mtime instead. Only those bytes change; the `.pyc` is valid for the `.py` as
//! the image holds it, as it was for the `.py` the step left.
//!
//! Hand-written: no crate rewrites `.pyc` headers, and BuildKit's `rewrite-timestamp=true` does
//! not (its images have the same stale `.pyc` files). A `.pyc` whose source is in another layer is
//! left as it is: which mtime that layer gave the source is not known here.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::index::{Kind, Meta};

/// Python 3.7's first magic number: from it on, the header is magic, flags, mtime, size.
const FIRST_PEP552_MAGIC: u16 = 3390;
/// The header's length: magic, flags, then the source's mtime and size (little-endian `u32`s).
const HEADER: usize = 16;

/// The source a cached `.pyc` was compiled from (`importlib.util.source_from_cache`):
/// `d/__pycache__/m.cpython-311.pyc` and `d/__pycache__/m.cpython-311.opt-1.pyc` are `d/m.py`.
pub fn source_of(pyc: &str) -> Option<String> {
    let (dir, file) = pyc.rsplit_once('/').unwrap_or(("", pyc));
    let stem = file.strip_suffix(".pyc")?;
    let parent = match dir.rsplit_once('/') {
        Some((parent, "__pycache__")) => Some(parent),
        None if dir == "__pycache__" => None,
        _ => return None,
    };
    let parts: Vec<&str> = stem.split('.').collect();
    let name = match parts.as_slice() {
        [name, tag] if !tag.is_empty() => name,
        [name, tag, opt] if !tag.is_empty() && opt.starts_with("opt-") => name,
        _ => return None,
    };
    if name.is_empty() {
        return None;
    }
    Some(match parent {
        Some(p) => format!("{p}/{name}.py"),
        None => format!("{name}.py"),
    })
}

/// A `.py` in the layer whose mtime the clamp moves: what its `.pyc` may record, and what it
/// should record instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// The source's real mtime, in seconds.
    mtime: i64,
    /// The source's size.
    size: u64,
    /// The source's mtime in the layer.
    clamped: i64,
}

/// The `.pyc` files among a layer's entries whose source is in the layer too, and has its mtime
/// clamped.
#[derive(Debug, Default)]
pub struct Sources {
    /// Layer path of the `.pyc` → its source.
    pycs: HashMap<String, Source>,
    /// The layer paths of those sources (the files, symlinks followed).
    sources: HashSet<String>,
}

/// Symlinks followed from a `.py` to the file Python stats, as the kernel's limit of 40 is more
/// than a layer's sources need.
const MAX_LINKS: usize = 8;

impl Sources {
    /// Finds them among a layer's `entries` (layer path, metadata, and for a regular file the file
    /// on disk holding its content), reading the sources' real times from disk. A `.py` that is a
    /// symlink counts as the file it leads to in the same layer (Debian's `sitecustomize.py`
    /// leads to `/etc`): Python stats through it. Nothing without a clamp.
    pub fn of<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a Meta, Option<&'a Path>)>,
        clamp: Option<i64>,
    ) -> Sources {
        let Some(clamp) = clamp else { return Sources::default() };
        let entries: Vec<_> = entries.into_iter().collect();
        // Most layers hold no Python: they cost one pass over their names.
        if !entries.iter().any(|(p, ..)| p.ends_with(".pyc")) {
            return Sources::default();
        }
        let entries: HashMap<&str, (&Meta, Option<&Path>)> =
            entries.into_iter().map(|(p, m, f)| (p.trim_start_matches('/'), (m, f))).collect();
        let mut out = Sources::default();
        for (pyc, (meta, _)) in &entries {
            if meta.kind != Kind::File {
                continue;
            }
            let Some(mut source) = source_of(pyc) else { continue };
            let mut file = None;
            for _ in 0..MAX_LINKS {
                match entries.get(source.as_str()) {
                    Some((Meta { kind: Kind::File, .. }, Some(f))) => file = Some(*f),
                    Some((Meta { kind: Kind::Symlink(target), .. }, _)) => {
                        if let Some(next) = follow(&source, target) {
                            source = next;
                            continue;
                        }
                    }
                    _ => {}
                }
                break;
            }
            // A source that cannot be read now is left alone, as is its `.pyc`.
            let Some(Ok(md)) = file.map(std::fs::symlink_metadata) else { continue };
            if md.is_file() && md.mtime() > clamp {
                out.pycs
                    .insert(pyc.to_string(), Source { mtime: md.mtime(), size: md.size(), clamped: clamp });
                out.sources.insert(source);
            }
        }
        out
    }

    /// The source of the `.pyc` at `path` in the layer, if it needs restamping.
    pub fn get(&self, path: &str) -> Option<&Source> {
        self.pycs.get(path.trim_start_matches('/'))
    }

    /// The content of the layer's file at `path`, read from `file`: restamped when it is one of
    /// these `.pyc` files ([`restamped`]), else as it is.
    pub fn content<'r>(&self, path: &str, file: &'r mut dyn Read) -> io::Result<Content<'r>> {
        match self.get(path) {
            Some(source) => restamped(file, source),
            None => Ok(io::Cursor::new(Vec::new()).chain(file)),
        }
    }

    /// Whether the file at `path` in the layer is the source of a `.pyc` that may be restamped:
    /// a snapshot must keep its clamped time too ([`super::times`]), or the `.pyc` would be stale
    /// there.
    pub fn is_source(&self, path: &str) -> bool {
        self.sources.contains(path.trim_start_matches('/'))
    }
}

/// The layer path a symlink at `link` leads to, taken lexically in the layer (`..` stops at its
/// root, as the kernel's walk does at `/` of a container).
fn follow(link: &str, target: &str) -> Option<String> {
    let base = if target.starts_with('/') { "" } else { link.rsplit_once('/').map_or("", |(d, _)| d) };
    let mut parts: Vec<&str> = Vec::new();
    for part in base.split('/').chain(target.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A file's content as a layer writer reads it ([`Sources::content`]): the header, perhaps
/// restamped, then the rest.
pub type Content<'r> = io::Chain<io::Cursor<Vec<u8>>, &'r mut dyn Read>;

/// `pyc`'s bytes, with the header's source mtime set to the clamped one when the header is a
/// timestamp-based one that matches `source` (anything else passes through unchanged).
fn restamped<'r>(pyc: &'r mut dyn Read, source: &Source) -> io::Result<Content<'r>> {
    let mut head = Vec::with_capacity(HEADER);
    Read::take(&mut *pyc, HEADER as u64).read_to_end(&mut head)?;
    if let Ok(header) = <&mut [u8; HEADER]>::try_from(head.as_mut_slice()) {
        restamp(header, source);
    }
    Ok(io::Cursor::new(head).chain(pyc))
}

/// Rewrites the mtime of a PEP 552 timestamp-based header that records `source` as it is on
/// disk (Python compares the low 32 bits of both); returns whether it did.
fn restamp(header: &mut [u8; HEADER], source: &Source) -> bool {
    let word = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let magic = u16::from_le_bytes([header[0], header[1]]);
    let matches = header[2..4] == *b"\r\n"
        && magic >= FIRST_PEP552_MAGIC
        && word(4) == 0
        && word(8) == source.mtime as u32
        && word(12) == source.size as u32;
    if matches {
        header[8..12].copy_from_slice(&(source.clamped as u32).to_le_bytes());
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_pyc_names_its_source() {
        let cases = [
            (
                "usr/lib/python3/dist-packages/yaml/__pycache__/nodes.cpython-311.pyc",
                Some("usr/lib/python3/dist-packages/yaml/nodes.py"),
            ),
            ("app/__pycache__/m.cpython-311.opt-2.pyc", Some("app/m.py")),
            ("__pycache__/m.pypy39.pyc", Some("m.py")),
            // Legacy and sourceless `.pyc` files are not checked against a source.
            ("app/m.pyc", None),
            ("app/__pycache__/m.pyc", None),
            ("app/__pycache__/m.cpython-311.opt-1.extra.pyc", None),
            ("app/__pycache__/.cpython-311.pyc", None),
            ("app/__pycache__/m.cpython-311.py", None),
        ];
        for (pyc, source) in cases {
            assert_eq!(source_of(pyc).as_deref(), source, "{pyc}");
        }
    }

    #[test]
    fn a_link_is_followed_within_the_layer() {
        assert_eq!(
            follow("usr/lib/python3.11/site.py", "/etc/python3.11/site.py").as_deref(),
            Some("etc/python3.11/site.py")
        );
        assert_eq!(follow("usr/lib/a.py", "../../etc/a.py").as_deref(), Some("etc/a.py"));
        assert_eq!(follow("a.py", "../../../etc/a.py").as_deref(), Some("etc/a.py"));
        assert_eq!(follow("usr/a.py", "./b/./c.py").as_deref(), Some("usr/b/c.py"));
        assert_eq!(follow("a.py", "/"), None);
    }

    fn header(magic: u16, flags: u32, mtime: u32, size: u32) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[0..2].copy_from_slice(&magic.to_le_bytes());
        h[2..4].copy_from_slice(b"\r\n");
        h[4..8].copy_from_slice(&flags.to_le_bytes());
        h[8..12].copy_from_slice(&mtime.to_le_bytes());
        h[12..16].copy_from_slice(&size.to_le_bytes());
        h
    }

    const SOURCE: Source = Source { mtime: 1_700_000_000, size: 42, clamped: 315_532_800 };

    #[test]
    fn only_a_matching_timestamp_header_is_restamped() {
        let mut h = header(3495, 0, 1_700_000_000, 42);
        assert!(restamp(&mut h, &SOURCE));
        assert_eq!(h, header(3495, 0, 315_532_800, 42));
        for (what, mut h) in [
            ("hash-based", header(3495, 1, 1_700_000_000, 42)),
            ("checked hash-based", header(3495, 3, 1_700_000_000, 42)),
            ("another mtime", header(3495, 0, 1_700_000_001, 42)),
            ("another size", header(3495, 0, 1_700_000_000, 43)),
            ("Python 3.6's header", header(3379, 0, 1_700_000_000, 42)),
        ] {
            let before = h;
            assert!(!restamp(&mut h, &SOURCE), "{what}");
            assert_eq!(h, before, "{what}");
        }
        let mut not_pyc = header(3495, 0, 1_700_000_000, 42);
        not_pyc[3] = b'x';
        assert!(!restamp(&mut not_pyc, &SOURCE));
    }

    #[test]
    fn the_stream_keeps_its_length_and_body() {
        let mut bytes = header(3495, 0, 1_700_000_000, 42).to_vec();
        bytes.extend_from_slice(b"code object");
        let mut out = Vec::new();
        restamped(&mut bytes.as_slice(), &SOURCE).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), bytes.len());
        assert_eq!(&out[8..12], &315_532_800u32.to_le_bytes());
        assert_eq!(&out[16..], b"code object");
        // Shorter than a header: passed through.
        let mut short = Vec::new();
        restamped(&mut &b"\xa7\r\r\n"[..], &SOURCE).unwrap().read_to_end(&mut short).unwrap();
        assert_eq!(short, b"\xa7\r\r\n");
    }

    #[test]
    fn sources_are_the_clamped_py_files_beside_their_pyc() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("m.py"), "X = 1\n").unwrap();
        std::fs::write(d.join("old.py"), "Y = 2\n").unwrap();
        std::fs::write(d.join("m.pyc"), "").unwrap();
        let set = |name: &str, secs: u64| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            std::fs::File::options().write(true).open(d.join(name)).unwrap().set_modified(t).unwrap();
        };
        set("m.py", 1_700_000_000);
        set("old.py", 100);
        let (m, old, pyc) = (d.join("m.py"), d.join("old.py"), d.join("m.pyc"));
        let file =
            |size| Meta { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, mtime: 0, size, capability: None };
        let link = |to: &str| Meta { kind: Kind::Symlink(to.into()), size: 0, ..file(0) };
        let (py, pyc_meta, up, etc) = (file(6), file(0), link("../etc/site.py"), link("/app/m.py"));
        let files = [
            ("app/m.py", &py, Some(m.as_path())),
            ("app/__pycache__/m.cpython-311.pyc", &pyc_meta, Some(pyc.as_path())),
            ("app/old.py", &py, Some(old.as_path())),
            ("app/__pycache__/old.cpython-311.pyc", &pyc_meta, Some(pyc.as_path())),
            ("app/__pycache__/gone.cpython-311.pyc", &pyc_meta, Some(pyc.as_path())),
            // site.py → ../etc/site.py → /app/m.py
            ("lib/site.py", &up, None),
            ("etc/site.py", &etc, None),
            ("lib/__pycache__/site.cpython-311.pyc", &pyc_meta, Some(pyc.as_path())),
        ];
        let found = Sources::of(files, Some(315_532_800));
        assert_eq!(
            found.get("app/__pycache__/m.cpython-311.pyc"),
            Some(&Source { mtime: 1_700_000_000, size: 6, clamped: 315_532_800 })
        );
        assert_eq!(
            found.get("lib/__pycache__/site.cpython-311.pyc"),
            found.get("app/__pycache__/m.cpython-311.pyc")
        );
        // Not moved by the clamp; no source in the layer.
        assert_eq!(found.get("app/__pycache__/old.cpython-311.pyc"), None);
        assert_eq!(found.get("app/__pycache__/gone.cpython-311.pyc"), None);
        assert_eq!(Sources::of(files, None).get("app/__pycache__/m.cpython-311.pyc"), None);
    }
}
