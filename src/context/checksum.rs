//! Content digests of context files for cache keys, hashed in parallel and remembered in a stat
//! cache kept in the store: a file whose device, inode, size, mtime and ctime (nanoseconds) are
//! unchanged since it was hashed is not read again, so a no-op rebuild of a large context costs
//! one `lstat` per file.
//!
//! As git does for its index ("racy git"), a file modified within the last two seconds is hashed
//! but not remembered: a write in the same clock tick as the hash could leave mtime unchanged.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingWriter};
use crate::store::{Store, StoreError};

/// What a remembered digest was computed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stat {
    fn of(md: &std::fs::Metadata) -> Stat {
        Stat {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime_ns: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    stat: Stat,
    digest: String,
}

/// A file's content digest and owner (from the one `stat` the stat cache needs anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSum {
    /// sha256 of the content.
    pub digest: Digest,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// File digests with a stat cache.
pub struct FileSums {
    /// Where the stat cache is kept: the store and the file in it.
    home: Option<(Store, PathBuf)>,
    known: Mutex<HashMap<PathBuf, Known>>,
    dirty: AtomicBool,
}

impl FileSums {
    /// The stat cache kept in `store` (loaded now; a missing or unreadable one starts empty).
    pub fn load(store: &Store) -> FileSums {
        let path = store.root().join("cache/context-sums.json");
        let known = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<HashMap<PathBuf, Known>>(&b).ok())
            .unwrap_or_default();
        FileSums {
            home: Some((store.clone(), path)),
            known: Mutex::new(known),
            dirty: AtomicBool::new(false),
        }
    }

    /// A stat cache that is never saved.
    pub fn in_memory() -> FileSums {
        FileSums { home: None, known: Mutex::default(), dirty: AtomicBool::new(false) }
    }

    /// The content digests and owners of `files` (regular files, absolute or relative to the
    /// working directory), in order, hashed in parallel.
    pub fn digests(&self, files: &[&Path]) -> io::Result<Vec<FileSum>> {
        files.par_iter().map(|p| self.digest(p)).collect()
    }

    fn digest(&self, path: &Path) -> io::Result<FileSum> {
        // Context paths are absolute already (no getcwd per file); relative ones are made so.
        let key = if path.is_absolute() { path.to_path_buf() } else { std::path::absolute(path)? };
        let md = fs_err::metadata(&key)?;
        let stat = Stat::of(&md);
        let sum = |digest| FileSum { digest, uid: md.uid(), gid: md.gid() };
        if let Ok(known) = self.known.lock()
            && let Some(k) = known.get(&key)
            && k.stat == stat
            && let Ok(d) = Digest::parse(&k.digest)
        {
            return Ok(sum(d));
        }
        let mut w = HashingWriter::new(io::sink());
        io::copy(&mut fs_err::File::open(&key)?, &mut w)?;
        let (_, digest, _) = w.finish();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        // A later write sets mtime to its own time, so only a recent mtime can hide one.
        let settled = now - stat.mtime_ns > 2_000_000_000;
        if settled && let Ok(mut known) = self.known.lock() {
            known.insert(key, Known { stat, digest: digest.to_string() });
            self.dirty.store(true, Ordering::Relaxed);
        }
        Ok(sum(digest))
    }

    /// Writes the stat cache back (temp file + rename, as the store's other cache files) if it
    /// learned anything. Entries for files that no longer exist are dropped.
    pub fn save(&self) -> Result<(), StoreError> {
        let Some((store, path)) = &self.home else { return Ok(()) };
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Ok(mut known) = self.known.lock() else { return Ok(()) };
        known.retain(|p, _| p.exists());
        let bytes = serde_json::to_vec(&*known).map_err(io::Error::other)?;
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        store.write_cache_file(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_content_digests_and_survive_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, b"hello").unwrap();
        // Old enough to be remembered.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(old).unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let sums = FileSums::load(&store);
        let d = sums.digests(&[f.as_path()]).unwrap();
        assert_eq!(d[0].digest, Digest::of(b"hello"));
        assert_eq!(d[0].uid, std::fs::metadata(&f).unwrap().uid());
        sums.save().unwrap();
        assert!(store.root().join("cache/context-sums.json").is_file());
        // A remembered file whose stat changed is read again.
        std::fs::write(&f, b"world").unwrap();
        let again = FileSums::load(&store);
        assert_eq!(again.digests(&[f.as_path()]).unwrap()[0].digest, Digest::of(b"world"));
    }

    #[test]
    fn a_fresh_file_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, b"x").unwrap();
        let sums = FileSums::in_memory();
        sums.digests(&[f.as_path()]).unwrap();
        assert!(sums.known.lock().unwrap().is_empty());
    }
}
