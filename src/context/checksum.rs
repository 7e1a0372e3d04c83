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

/// File digests with a stat cache.
pub struct FileSums {
    path: Option<PathBuf>,
    known: Mutex<HashMap<PathBuf, Known>>,
    dirty: AtomicBool,
}

impl FileSums {
    /// A stat cache kept in `path` (loaded now; a missing or unreadable file starts empty).
    pub fn load(path: PathBuf) -> FileSums {
        let known = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<HashMap<PathBuf, Known>>(&b).ok())
            .unwrap_or_default();
        FileSums { path: Some(path), known: Mutex::new(known), dirty: AtomicBool::new(false) }
    }

    /// A stat cache that is never saved.
    pub fn in_memory() -> FileSums {
        FileSums { path: None, known: Mutex::default(), dirty: AtomicBool::new(false) }
    }

    /// The content digests of `files` (regular files, absolute or relative to the working
    /// directory), in order, hashed in parallel.
    pub fn digests(&self, files: &[&Path]) -> io::Result<Vec<Digest>> {
        files.par_iter().map(|p| self.digest(p)).collect()
    }

    fn digest(&self, path: &Path) -> io::Result<Digest> {
        // Context paths are absolute already (no getcwd per file); relative ones are made so.
        let key = if path.is_absolute() { path.to_path_buf() } else { std::path::absolute(path)? };
        let md = fs_err::metadata(&key)?;
        let stat = Stat::of(&md);
        if let Ok(known) = self.known.lock()
            && let Some(k) = known.get(&key)
            && k.stat == stat
            && let Ok(d) = Digest::parse(&k.digest)
        {
            return Ok(d);
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
        Ok(digest)
    }

    /// Writes the stat cache back (atomically: temp file + rename) if it learned anything.
    /// Entries for files that no longer exist are dropped.
    pub fn save(&self) -> io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Ok(mut known) = self.known.lock() else { return Ok(()) };
        known.retain(|p, _| p.exists());
        let bytes = serde_json::to_vec(&*known).map_err(io::Error::other)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        fs_err::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
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
        let cache = dir.path().join("sums.json");
        let sums = FileSums::load(cache.clone());
        let d = sums.digests(&[f.as_path()]).unwrap();
        assert_eq!(d[0], Digest::of(b"hello"));
        sums.save().unwrap();
        assert!(cache.is_file());
        // A remembered file whose stat changed is read again.
        std::fs::write(&f, b"world").unwrap();
        let again = FileSums::load(cache);
        assert_eq!(again.digests(&[f.as_path()]).unwrap()[0], Digest::of(b"world"));
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
