//! The difference between two versions of one layer, as a layer: `delta(old, new)` stacked on a
//! filesystem whose top layer is `old` gives the same files as that filesystem with `new` in
//! `old`'s place. A COPY whose sources changed by one file makes a new 5,000-file layer; its
//! sandbox snapshot can then be the old layer's snapshot plus a one-file delta, instead of 5,000
//! new inodes written again (ext4 inode allocation right after mass deletions is what made such
//! rebuilds slow).
//!
//! Only the layers hako writes for COPY/ADD are compared: entries in layer order, no whiteouts,
//! no hard links, no PAX records. Anything else (or a directory that became a file, or the
//! reverse) gives `None`, and the caller extracts `new` whole as before.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use super::{ancestors, read_up_to};

/// What a delta holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeltaStats {
    /// Entries of `new`.
    pub entries: u64,
    /// Entries of `new` written to the delta: added, changed, or the parent directory of one.
    pub written: u64,
    /// Whiteouts written (paths of `old` that `new` does not have).
    pub removed: u64,
}

/// One tar entry as compared: everything the header says about it, by value.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
    link: Option<Vec<u8>>,
    dev: (Option<u32>, Option<u32>),
}

impl Head {
    fn is_dir(&self) -> bool {
        self.kind == b'5'
    }
}

/// A tar stream read in path order, one entry ahead.
struct Cursor<'a, R: Read> {
    entries: tar::Entries<'a, R>,
    last: Option<String>,
}

type Next<'a, R> = Option<(String, Head, tar::Entry<'a, R>)>;

impl<'a, R: Read> Cursor<'a, R> {
    /// The next entry; `Ok(None)` at the end, `Err(None)` when the layer is not one this compares.
    fn next(&mut self) -> Result<Next<'a, R>, Option<io::Error>> {
        let Some(entry) = self.entries.next() else { return Ok(None) };
        let mut entry = entry.map_err(Some)?;
        if entry.header().entry_type().is_pax_local_extensions()
            || entry.header().entry_type().is_hard_link()
            || entry.pax_extensions().map_err(Some)?.is_some()
        {
            return Err(None);
        }
        let path = name(&entry.path_bytes());
        let base = path.rsplit('/').next().unwrap_or("");
        if base.starts_with(".wh.") || self.last.as_ref().is_some_and(|l| super::tar_order(l, &path).is_ge())
        {
            return Err(None); // a whiteout, or not in the order hako writes layers
        }
        let h = entry.header();
        let head = Head {
            kind: h.entry_type().as_byte(),
            mode: h.mode().map_err(|_| None)?,
            uid: h.uid().map_err(|_| None)?,
            gid: h.gid().map_err(|_| None)?,
            mtime: h.mtime().map_err(|_| None)?,
            size: entry.size(),
            link: entry.link_name_bytes().map(|l| l.into_owned()),
            dev: (h.device_major().ok().flatten(), h.device_minor().ok().flatten()),
        };
        self.last = Some(path.clone());
        Ok(Some((path, head, entry)))
    }
}

/// A tar path as a relative path without `./` or a trailing `/` (the root is `""`).
fn name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    s.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').to_string()
}

/// Whether two readers give the same bytes (both are read to their end).
fn same_content(mut a: impl Read, mut b: impl Read) -> io::Result<bool> {
    let (mut x, mut y) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    loop {
        let n = read_up_to(&mut a, &mut x)?;
        let m = read_up_to(&mut b, &mut y)?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Writes to `out` the delta that turns layer `old` into layer `new` (see the module doc), reading
/// `new` twice (`open_new` is called twice). `Ok(None)`: these layers cannot be compared this way,
/// or more than `max_written` entries would be written; `out` then holds nothing useful.
pub fn delta<R: Read, N: Read>(
    old: R,
    open_new: impl Fn() -> io::Result<N>,
    out: impl Write,
    max_written: u64,
) -> io::Result<Option<DeltaStats>> {
    let Some((keep, removed, entries)) = compare(old, open_new()?)? else { return Ok(None) };
    if keep.len() as u64 > max_written {
        return Ok(None);
    }
    let mut stats = DeltaStats { entries, ..DeltaStats::default() };
    let mut tar = tar::Builder::new(out);
    let mut new = tar::Archive::new(open_new()?);
    for entry in new.entries()? {
        let mut entry = entry?;
        let path = name(&entry.path_bytes());
        if !keep.contains(&path) {
            continue;
        }
        let mut header = entry.header().clone();
        let to = tar_path(&path, header.entry_type().is_dir());
        match entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()) {
            Some(link) => tar.append_link(&mut header, to, link)?,
            None => tar.append_data(&mut header, to, &mut entry)?,
        }
        stats.written += 1;
    }
    for path in &removed {
        let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
        let wh = if dir.is_empty() { format!(".wh.{base}") } else { format!("{dir}/.wh.{base}") };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o644);
        header.set_mtime(0);
        tar.append_data(&mut header, wh, io::empty())?;
        stats.removed += 1;
    }
    tar.into_inner()?.flush()?;
    Ok(Some(stats))
}

fn tar_path(path: &str, dir: bool) -> String {
    match (path.is_empty(), dir) {
        (true, _) => "./".into(),
        (false, true) => format!("{path}/"),
        (false, false) => path.to_string(),
    }
}

/// What `new` changes: the paths of `new` the delta must carry (changed or added entries and
/// their parent directories), the topmost removed paths, and `new`'s entry count.
type Comparison = (HashSet<String>, Vec<String>, u64);

fn compare(old: impl Read, new: impl Read) -> io::Result<Option<Comparison>> {
    let (mut a, mut b) = (tar::Archive::new(old), tar::Archive::new(new));
    let mut old = Cursor { entries: a.entries()?, last: None };
    let mut new = Cursor { entries: b.entries()?, last: None };
    let mut keep: HashSet<String> = HashSet::new();
    let mut gone: HashSet<String> = HashSet::new();
    let mut removed = Vec::new();
    let mut entries = 0u64;
    macro_rules! next {
        ($c:expr) => {
            match $c.next() {
                Ok(x) => x,
                Err(None) => return Ok(None),
                Err(Some(e)) => return Err(e),
            }
        };
    }
    let (mut x, mut y) = (next!(old), next!(new));
    loop {
        let order = match (&x, &y) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((p, ..)), Some((q, ..))) => super::tar_order(p, q),
        };
        match order {
            std::cmp::Ordering::Less => {
                let Some((path, ..)) = x.take() else { break };
                // Only the topmost removed path needs a whiteout.
                if !ancestors(&path).any(|p| gone.contains(p)) {
                    removed.push(path.clone());
                }
                gone.insert(path);
                x = next!(old);
            }
            std::cmp::Ordering::Greater => {
                let Some((path, ..)) = y.take() else { break };
                entries += 1;
                keep.insert(path);
                y = next!(new);
            }
            std::cmp::Ordering::Equal => {
                let (Some((path, h1, e1)), Some((_, h2, e2))) = (x.take(), y.take()) else { break };
                entries += 1;
                if h1.is_dir() != h2.is_dir() {
                    return Ok(None); // overlay would need an opaque directory: extract whole
                }
                let file = h1.kind == b'0' || h1.kind == b'\0';
                if h1 != h2 || (file && !same_content(e1, e2)?) {
                    keep.insert(path);
                }
                x = next!(old);
                y = next!(new);
            }
        }
    }
    // Writing or removing an entry changes its directory's times: carry the parents with their
    // metadata from `new`, so the extractor sets them back.
    let touched: Vec<String> =
        keep.iter().chain(&removed).flat_map(|p| ancestors(p).map(str::to_string)).collect();
    let root_touched = !keep.is_empty() || !removed.is_empty();
    keep.extend(touched);
    if root_touched {
        keep.insert(String::new());
    }
    Ok(Some((keep, removed, entries)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::extract::{ApplyOptions, apply_layer};
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    enum E<'a> {
        Dir(&'a str, u32),
        File(&'a str, u32, &'a str),
        Link(&'a str, &'a str),
    }

    /// A layer as hako writes one: in layer order.
    fn layer(entries: &[E<'_>]) -> Vec<u8> {
        let mut sorted: Vec<&E<'_>> = entries.iter().collect();
        let key = |e: &&E<'_>| match e {
            E::Dir(p, _) | E::File(p, ..) | E::Link(p, _) => p.to_string(),
        };
        sorted.sort_by(|a, b| crate::layer::tar_order(&key(a), &key(b)));
        let mut t = tar::Builder::new(Vec::new());
        for e in sorted {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_000);
            h.set_uid(0);
            h.set_gid(0);
            match e {
                E::Dir(p, mode) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    t.append_data(&mut h, format!("{p}/"), io::empty()).unwrap();
                }
                E::File(p, mode, body) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(body.len() as u64);
                    t.append_data(&mut h, p, body.as_bytes()).unwrap();
                }
                E::Link(p, to) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    t.append_link(&mut h, p, to).unwrap();
                }
            }
        }
        t.into_inner().unwrap()
    }

    fn apply(dir: &Path, tar: &[u8]) {
        apply_layer(tar, dir, ApplyOptions::default()).unwrap();
    }

    /// Every path under `dir` with its type, mode, mtime and content.
    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let m = p.symlink_metadata().unwrap();
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                let body = if m.is_file() { std::fs::read_to_string(&p).unwrap() } else { String::new() };
                out.push(format!("{rel} {:o} {} {body}", m.mode(), m.mtime()));
                if m.is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// `delta(old, new)` applied on `old` gives what `new` gives.
    fn check(old: &[E<'_>], new: &[E<'_>]) -> DeltaStats {
        let (a, b) = (layer(old), layer(new));
        let mut d = Vec::new();
        let stats = delta(a.as_slice(), || Ok(b.as_slice()), &mut d, u64::MAX).unwrap().expect("comparable");
        let (x, y) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        apply(x.path(), &a);
        apply(x.path(), &d);
        apply(y.path(), &b);
        assert_eq!(listing(x.path()), listing(y.path()));
        stats
    }

    #[test]
    fn one_changed_file_gives_that_file_and_its_parents() {
        let old = [
            E::Dir("app", 0o755),
            E::Dir("app/d", 0o755),
            E::File("app/d/f", 0o644, "one"),
            E::File("app/g", 0o644, "g"),
        ];
        let new = [
            E::Dir("app", 0o755),
            E::Dir("app/d", 0o755),
            E::File("app/d/f", 0o644, "two"),
            E::File("app/g", 0o644, "g"),
        ];
        let s = check(&old, &new);
        assert_eq!(s, DeltaStats { entries: 4, written: 3, removed: 0 }, "app, app/d, app/d/f");
    }

    #[test]
    fn same_size_content_change_mode_change_added_and_removed_entries() {
        let old = [
            E::Dir("a", 0o755),
            E::File("a/same", 0o644, "xx"),
            E::File("a/mode", 0o644, "m"),
            E::File("a/body", 0o644, "ab"),
            E::Dir("a/gone", 0o755),
            E::File("a/gone/inner", 0o644, "i"),
            E::File("a-b", 0o644, "sorted after a/"),
            E::Link("a/l", "same"),
        ];
        let new = [
            E::Dir("a", 0o700),
            E::File("a/same", 0o644, "xx"),
            E::File("a/mode", 0o600, "m"),
            E::File("a/body", 0o644, "ba"),
            E::File("a/new", 0o644, "n"),
            E::File("a-b", 0o644, "sorted after a/"),
            E::Link("a/l", "mode"),
        ];
        let s = check(&old, &new);
        assert_eq!(s.removed, 1, "a/gone only, not its contents");
    }

    #[test]
    fn identical_layers_give_an_empty_delta() {
        let l = [E::Dir("a", 0o755), E::File("a/f", 0o644, "f")];
        assert_eq!(check(&l, &l), DeltaStats { entries: 2, written: 0, removed: 0 });
    }

    #[test]
    fn layers_it_cannot_compare_give_none() {
        let dir_to_file = (layer(&[E::Dir("a", 0o755)]), layer(&[E::File("a", 0o644, "")]));
        let whiteout = layer(&[E::File(".wh.x", 0o644, "")]);
        let unsorted = {
            let mut t = tar::Builder::new(Vec::new());
            for p in ["b", "a"] {
                let mut h = tar::Header::new_gnu();
                h.set_size(0);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mode(0o644);
                h.set_mtime(0);
                t.append_data(&mut h, p, io::empty()).unwrap();
            }
            t.into_inner().unwrap()
        };
        let plain = layer(&[E::File("a", 0o644, "")]);
        for (old, new) in [(&dir_to_file.0, &dir_to_file.1), (&plain, &unsorted), (&plain, &whiteout)] {
            let r = delta(old.as_slice(), || Ok(new.as_slice()), io::sink(), u64::MAX).unwrap();
            assert_eq!(r, None);
        }
        let big = (layer(&[E::File("a", 0o644, "1")]), layer(&[E::File("a", 0o644, "2")]));
        let r = delta(big.0.as_slice(), || Ok(big.1.as_slice()), io::sink(), 1).unwrap();
        assert_eq!(r, None, "more than max_written entries");
    }
}
