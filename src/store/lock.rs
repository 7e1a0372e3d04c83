//! Advisory file locks (`flock(2)`), released when the guard drops — or when the process dies, so a
//! build killed with -9 never leaves a stale lock behind.

use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::{Result, StoreError};

/// A held lock.
#[derive(Debug)]
pub struct Lock {
    _flock: Flock<std::fs::File>,
    /// The lock file.
    pub path: PathBuf,
}

impl Lock {
    /// Blocks until the exclusive lock on `path` is held (creating the file if needed).
    pub fn exclusive(path: &Path) -> Result<Lock> {
        Lock::take(path, FlockArg::LockExclusive).map(|l| l.expect("a blocking lock is always taken"))
    }

    /// Blocks until a shared lock on `path` is held (creating the file if needed).
    pub fn shared(path: &Path) -> Result<Lock> {
        Lock::take(path, FlockArg::LockShared).map(|l| l.expect("a blocking lock is always taken"))
    }

    /// The exclusive lock on `path` if nobody holds any lock on it now, else `None`.
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
        Lock::take(path, FlockArg::LockExclusiveNonblock)
    }

    fn take(path: &Path, how: FlockArg) -> Result<Option<Lock>> {
        let file =
            fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(path)?.into_parts().0;
        match Flock::lock(file, how) {
            Ok(flock) => Ok(Some(Lock { _flock: flock, path: path.to_path_buf() })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if how == FlockArg::LockExclusiveNonblock => Ok(None),
            Err((_, source)) => Err(StoreError::Lock { path: path.to_path_buf(), source }),
        }
    }
}
