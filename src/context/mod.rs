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

/// Whether a stream starting with `head` (its first 512 bytes, or all of it when shorter) is a
/// tar archive or gzip, as `docker build -` tells a context archive from a Dockerfile.
pub fn is_archive(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b]) || head.get(257..262) == Some(b"ustar")
}

/// Unpacks a context archive (tar, or gzip-compressed tar: `head` tells) from `reader` into a new
/// temporary directory, with the same rules as applying a layer: nothing lands outside it.
pub fn unpack_stream(
    head: &[u8],
    reader: impl std::io::Read + 'static,
) -> Result<tempfile::TempDir, ContextError> {
    let tmp = tempfile::Builder::new().prefix("hako-context-").tempdir()?;
    let reader: Box<dyn std::io::Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let opts = crate::layer::extract::ApplyOptions::default();
    crate::layer::extract::apply_layer(reader, tmp.path(), opts)
        .map_err(|e| ContextError::Archive(e.to_string()))?;
    Ok(tmp)
}

fn load_ignore(dir: &Path, dockerfile: Option<&Path>) -> Result<Option<PatternMatcher>, ContextError> {
    let Some(path) = find_ignore_file(dir, dockerfile) else { return Ok(None) };
    let text = fs_err::read_to_string(&path)?;
    let patterns = parse_ignore_file(&text);
    PatternMatcher::new(&patterns).map(Some).map_err(|source| ContextError::Ignore { path, source })
}
