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
        let file =
            fs_err::OpenOptions::new().create(true).truncate(false).write(true).open(path)?.into_parts().0;
        let flock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, source)| StoreError::Lock { path: path.to_path_buf(), source })?;
        Ok(Lock { _flock: flock, path: path.to_path_buf() })
    }
}
