//! The build context: a directory (or a tar stream unpacked into the store's temp area) and the
//! `.dockerignore` rules that hide parts of it from COPY/ADD.

pub mod checksum;
pub mod dockerignore;
pub mod glob;

use std::path::{Path, PathBuf};

use dockerignore::{PatternMatcher, find_ignore_file, parse_ignore_file};

/// Context failures.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// I/O (fs-err messages name the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A bad `.dockerignore`.
    #[error("{path}: {source}")]
    Ignore {
        /// The ignore file.
        path: PathBuf,
        /// Why.
        source: dockerignore::IgnoreError,
    },
    /// A context archive that cannot be unpacked safely.
    #[error("context archive: {0}")]
    Archive(String),
}

/// A build context.
pub struct Context {
    root: PathBuf,
    ignore: Option<PatternMatcher>,
    /// Keeps an unpacked tar context alive.
    _tmp: Option<tempfile::TempDir>,
}

impl Context {
    /// A directory context; the ignore file is `<Dockerfile>.dockerignore` next to the Dockerfile,
    /// else `<dir>/.dockerignore`.
    pub fn from_dir(dir: &Path, dockerfile: Option<&Path>) -> Result<Context, ContextError> {
        let ignore = load_ignore(dir, dockerfile)?;
        Ok(Context { root: dir.to_path_buf(), ignore, _tmp: None })
    }

    /// An empty context (a Dockerfile given on stdin with no context).
    pub fn empty(tmp: tempfile::TempDir) -> Context {
        Context { root: tmp.path().to_path_buf(), ignore: None, _tmp: Some(tmp) }
    }

    /// A context already unpacked (safely) into `tmp` from a tar stream; `dockerfile` is the
    /// Dockerfile's path inside it (for `<Dockerfile>.dockerignore`).
    pub fn from_unpacked(tmp: tempfile::TempDir, dockerfile: &str) -> Result<Context, ContextError> {
        let root = tmp.path().to_path_buf();
        let ignore = load_ignore(&root, Some(&root.join(dockerfile)))?;
        Ok(Context { root, ignore, _tmp: Some(tmp) })
    }

    /// The directory holding the context's files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.dockerignore` rules, if any.
    pub fn ignore(&self) -> Option<&PatternMatcher> {
        self.ignore.as_ref()
    }
}

fn load_ignore(dir: &Path, dockerfile: Option<&Path>) -> Result<Option<PatternMatcher>, ContextError> {
    let Some(path) = find_ignore_file(dir, dockerfile) else { return Ok(None) };
    let text = fs_err::read_to_string(&path)?;
    let patterns = parse_ignore_file(&text);
    PatternMatcher::new(&patterns).map(Some).map_err(|source| ContextError::Ignore { path, source })
}
