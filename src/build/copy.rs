//! COPY/ADD with Docker's semantics: sources relative to a root (the context, a stage's
//! filesystem or a named context), wildcards (Go `path.Match`), a directory's *contents* are copied,
//! destination rules (trailing `/`, several sources need a directory), `--parents`, `--exclude`,
//! `--chown`, `--chmod`, and symlinks never followed out of their root.
//!
//! The result is a set of entries for the new layer (destination path → metadata + where to read
//! the content), keyed by path, plus the parent directories the layer must carry; the layer
//! writes them in [`crate::layer::tar_order`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::context::dockerignore::PatternMatcher;
use crate::context::glob;
use crate::layer::index::{FsIndex, Kind, Meta};
/// Symlinks in COPY sources are resolved by the one root-path walk the layer code uses.
pub use crate::layer::rootpath::resolve_in_root;

/// Why a COPY cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A source matched nothing.
    #[error("{0}")]
    NotFound(String),
    /// Bad destination, pattern or option.
    #[error("{0}")]
    Invalid(String),
    /// Reading the source failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, CopyError>;

/// Where sources are read from.
pub struct SourceRoot<'a> {
    /// A directory holding the files.
    pub dir: &'a Path,
    /// Ownership and metadata of the files when they come from an image (`COPY --from`); `None`
    /// for the build context (files become root-owned, as in Docker).
    pub index: Option<&'a FsIndex>,
    /// `.dockerignore` rules (build context only).
    pub ignore: Option<&'a PatternMatcher>,
    /// What to call the root in messages ("the build context", "stage build").
    pub name: String,
}

/// One file or directory to write into the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Metadata as it will be in the image.
    pub meta: Meta,
    /// A regular file's content.
    pub content: Content,
}

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Not a regular file.
    None,
    /// A file on disk (read while the layer is written).
    File(PathBuf),
    /// Bytes from the Dockerfile (heredocs).
    Bytes(Vec<u8>),
}

/// How the copied entries are owned and moded.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    /// `--chown` resolved to ids.
    pub chown: Option<(u32, u32)>,
    /// `--chmod` as written.
    pub chmod: Option<String>,
}

/// The entries of one COPY, keyed by destination path (relative, no leading `/`).
pub type Entries = BTreeMap<String, Entry>;

/// Resolves `sources` against `root` and lays them out under `dest` (absolute, as written, so a
/// trailing `/` is visible). `target` is the destination image's filesystem (to know whether the
/// destination is an existing directory).
#[allow(clippy::too_many_arguments)]
pub fn collect(
    root: &SourceRoot<'_>,
    sources: &[String],
    dest: &str,
    target: &FsIndex,
    own: &Ownership,
    parents: bool,
    excludes: &[String],
    clamp_mtime: Option<i64>,
) -> Result<Entries> {
    let exclude = if excludes.is_empty() {
        None
    } else {
        Some(PatternMatcher::new(excludes).map_err(|e| CopyError::Invalid(format!("--exclude: {e}")))?)
    };
    // Each match, with the source that found it.
    let mut matched: Vec<(String, usize)> = Vec::new();
    // A wildcard that matched several files, for the message below.
    let mut spread: Option<(&str, usize)> = None;
    for (i, src) in sources.iter().enumerate() {
        let found = matches_for(root, src)?;
        if found.is_empty() && !glob::has_meta(src) {
            return Err(not_found(root, src));
        }
        if found.len() > 1 {
            spread = spread.or(Some((src, found.len())));
        }
        matched.extend(found.into_iter().map(|f| (f, i)));
    }
    let dest_is_dir_syntax = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    let dest_clean = clean(dest);
    let several = matched.len() > 1;
    if several && !dest_is_dir_syntax && !target.is_dir(&dest_clean) {
        let mut msg = "when using COPY with more than one source file, the destination must be a directory and end with a /".to_string();
        if let Some((src, n)) = spread {
            // The usual surprise: `n\?pe` in a Dockerfile is the pattern `n?pe` (the escape
            // character removes an unquoted backslash, as in BuildKit), matching `nope` too.
            msg.push_str(&format!(
                " (\"{src}\" matched {n} files; to match a literal ?, * or [ write it as a class, e.g. [?]: an unquoted backslash is removed by the Dockerfile's escape character)"
            ));
        }
        return Err(CopyError::Invalid(msg));
    }
    let into_dir = dest_is_dir_syntax || several || target.is_dir(&dest_clean);
    let mut out = Entries::new();
    let mut walker = Walker {
        root,
        out: &mut out,
        own,
        exclude: exclude.as_ref(),
        clamp: clamp_mtime,
        target,
        links: HashMap::new(),
    };
    for (n, (rel, source)) in matched.iter().enumerate() {
        let src_path = resolve_in_root(root.dir, rel)?;
        let to = if parents {
            join(&dest_clean, rel)
        } else if std::fs::metadata(&src_path).is_ok_and(|m| m.is_dir()) || !into_dir {
            dest_clean.clone()
        } else {
            join(&dest_clean, rel.rsplit('/').next().unwrap_or(rel))
        };
        if std::fs::metadata(&src_path)?.is_dir() {
            walker.dir_contents(rel, &to, !parents)?;
        } else {
            walker.one(rel, &to, true)?;
        }
        if matched.get(n + 1).is_none_or(|(_, next)| next != source) {
            walker.link_copies();
        }
    }
    Ok(out)
}

struct Walker<'a, 'b> {
    root: &'a SourceRoot<'b>,
    out: &'a mut Entries,
    own: &'a Ownership,
    exclude: Option<&'a PatternMatcher>,
    clamp: Option<i64>,
    target: &'a FsIndex,
    /// Where the regular files with more than one link went, by inode.
    links: HashMap<(u64, u64), Vec<String>>,
}

impl Walker<'_, '_> {
    /// Makes the copies of one file hard links to the first of them in layer order, as fsutil's
    /// copy links a file it meets again to its first copy. Called after each source: BuildKit
    /// copies each source on its own, so links between two sources are not kept.
    fn link_copies(&mut self) {
        for (_, mut paths) in self.links.drain() {
            paths.sort_by(|a, b| crate::layer::tar_order(a, b));
            paths.dedup();
            let Some((holder, others)) = paths.split_first() else { continue };
            for p in others {
                if let Some(e) = self.out.get_mut(p)
                    && e.meta.kind == Kind::File
                {
                    (e.meta.kind, e.meta.size, e.content) =
                        (Kind::Hardlink(holder.clone()), 0, Content::None);
                }
            }
        }
    }

    /// Copies the contents of directory `rel` (relative to the root) to `to`. As fsutil does, `to`
    /// is not given the source directory's owner or mode: made 0755 and root's (or `--chown`'s,
    /// not `--chmod`ed) when missing, kept as it is when it exists; only the mtime is copied.
    /// With `--parents` (`own_dest` false) the directory is copied like any other, metadata included.
    fn dir_contents(&mut self, rel: &str, to: &str, own_dest: bool) -> Result<()> {
        if !to.is_empty() {
            self.one(rel, to, true)?;
        }
        if !to.is_empty() && own_dest {
            let existing = self.target.get(to).filter(|m| m.kind == Kind::Dir).cloned();
            if let Some(entry) = self.out.get_mut(to) {
                let (uid, gid, mode) = match existing {
                    Some(m) => (m.uid, m.gid, m.mode),
                    None => {
                        let (uid, gid) = self.own.chown.unwrap_or((0, 0));
                        (uid, gid, 0o755)
                    }
                };
                (entry.meta.uid, entry.meta.gid, entry.meta.mode) = (uid, gid, mode);
            }
        }
        // Each directory is resolved inside the root once, and its children are read through
        // the resolved path: joining a child's name to the path as written would let the host
        // resolve a symlink on the way (`abs -> /etc` would read the host's /etc). `src` stays
        // as written, for `.dockerignore`.
        let top = resolved_rel(self.root.dir, &resolve_in_root(self.root.dir, rel)?);
        let mut stack = vec![(rel.to_string(), top, to.to_string(), String::new())];
        while let Some((src, real, dst, inner)) = stack.pop() {
            let dir = self.root.dir.join(&real);
            let mut names: Vec<String> = Vec::new();
            for e in fs_err::read_dir(&dir)? {
                names.push(e?.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            for name in names {
                let child_src = join(&src, &name);
                let child_real = join(&real, &name);
                let child_inner = join(&inner, &name);
                if let Some(ig) = self.root.ignore
                    && ig.is_excluded(&child_src).map_err(ignore_error)?
                {
                    if !ig.has_exclusions() {
                        continue;
                    }
                    // A `!` exception may re-include something below: descend but skip the entry.
                    if std::fs::symlink_metadata(dir.join(&name))?.is_dir() && !ig.can_skip_dir(&child_src) {
                        stack.push((child_src, child_real, join(&dst, &name), child_inner));
                    }
                    continue;
                }
                if let Some(ex) = self.exclude
                    && ex
                        .is_excluded(&child_inner)
                        .map_err(|e| CopyError::Invalid(format!("--exclude: {e}")))?
                {
                    continue;
                }
                let child_dst = join(&dst, &name);
                let is_dir = std::fs::symlink_metadata(dir.join(&name))?.is_dir();
                self.one(&child_real, &child_dst, false)?;
                if is_dir {
                    stack.push((child_src, child_real, child_dst, child_inner));
                }
            }
        }
        Ok(())
    }

    /// Adds one entry. `follow`: the top-level source is followed if it is a symlink (within the
    /// root); anything found while walking is copied as it is, and named by `rel` with its
    /// directory already resolved.
    fn one(&mut self, rel: &str, to: &str, follow: bool) -> Result<()> {
        let path = if follow { resolve_in_root(self.root.dir, rel)? } else { self.root.dir.join(rel) };
        let md = std::fs::symlink_metadata(&path)?;
        let ft = md.file_type();
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink(fs_err::read_link(&path)?.to_string_lossy().into_owned())
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() || ft.is_block_device() {
            let (maj, min) =
                (nix::sys::stat::major(md.rdev()) as u32, nix::sys::stat::minor(md.rdev()) as u32);
            if ft.is_char_device() { Kind::Char(maj, min) } else { Kind::Block(maj, min) }
        } else {
            return Ok(()); // sockets are not copied
        };
        // fsutil's copy merges a directory only into a directory (`lstat`: a symlink to one is
        // not), and puts anything else only where no directory is; BuildKit fails the step
        // otherwise. Writing the layer anyway would hide the lower entry: a directory copied
        // onto a usr-merged base's `/lib` symlink leaves an image with no libraries.
        match (&kind, self.target.get(to).map(|m| &m.kind)) {
            (Kind::Dir, Some(Kind::Symlink(target))) => {
                return Err(CopyError::Invalid(format!(
                    "cannot copy to non-directory: /{to} (a symbolic link to {target} in the image: copy into the \
                     directory it names instead)"
                )));
            }
            (Kind::Dir, Some(other)) if *other != Kind::Dir => {
                return Err(CopyError::Invalid(format!("cannot copy to non-directory: /{to}")));
            }
            (other, Some(Kind::Dir)) if *other != Kind::Dir => {
                return Err(CopyError::Invalid(format!("cannot replace to directory /{to} with file")));
            }
            _ => {}
        }
        let (mut uid, mut gid) = (0, 0);
        let mut mode = md.mode() & 0o7777;
        let mut mtime = md.mtime();
        // A file's capabilities come along, as fsutil's copy copies xattrs (after the chown,
        // which would clear them): from the index of a stage or image, whose layers carry them.
        // Context files have none here (a checkout holds no xattrs).
        let mut capability = None;
        if let Some(index) = self.root.index
            && let Some(m) = index.get(&resolved_rel(self.root.dir, &path))
        {
            (uid, gid, mode, mtime) = (m.uid, m.gid, m.mode, m.mtime);
            capability = m.capability.clone().filter(|_| kind == Kind::File);
        }
        if let Some((u, g)) = self.own.chown {
            (uid, gid) = (u, g);
        }
        if let Some(chmod) = &self.own.chmod
            && !matches!(kind, Kind::Symlink(_))
        {
            mode = apply_chmod(chmod, mode, kind == Kind::Dir)?;
        }
        if let Some(c) = self.clamp {
            mtime = mtime.min(c);
        }
        let size = if kind == Kind::File { md.len() } else { 0 };
        if kind == Kind::File && md.nlink() > 1 {
            self.links.entry((md.dev(), md.ino())).or_default().push(to.to_string());
        }
        let content = if kind == Kind::File { Content::File(path) } else { Content::None };
        self.out.insert(
            to.to_string(),
            Entry { meta: Meta { kind, mode, uid, gid, mtime, size, capability }, content },
        );
        Ok(())
    }
}

/// The index keys a COPY of `sources` from a filesystem indexed by `index` reads (see
/// [`collect`]): what resolving each source's literal part visits, everything under what it names
/// (and, below a wildcard, what a matching symlink names, since a match is followed), the targets
/// of hard links among them, and the ancestors of all. A tree holding these and every directory
/// and symlink gives `collect` the same answer as the whole tree. `None` when a source is the
/// root itself: that is the whole tree.
pub fn selection(index: &FsIndex, sources: &[String]) -> Option<std::collections::BTreeSet<String>> {
    let mut keys = std::collections::BTreeSet::new();
    let subtree = |top: &str, keys: &mut std::collections::BTreeSet<String>| {
        for (k, m) in index.walk(top) {
            keys.insert(k.to_string());
            if let Kind::Hardlink(target) = &m.kind {
                keys.insert(target.clone());
            }
        }
    };
    for src in sources {
        let pattern = clean(src);
        let segments: Vec<&str> = pattern.split('/').collect();
        let first_wild = segments.iter().position(|s| glob::has_meta(s));
        let base = first_wild.map_or(pattern.clone(), |i| segments[..i].join("/"));
        if base.is_empty() {
            return None;
        }
        // A source that is not there is left for `collect` to report.
        let Some(top) = index.resolve_recording(&base, &mut keys) else { continue };
        subtree(&top, &mut keys);
        if let Some(i) = first_wild {
            let depth = segments.len() - i;
            let matches: Vec<String> = index
                .walk(&top)
                .filter(|(k, m)| {
                    let below = if top.is_empty() {
                        k.split('/').count()
                    } else {
                        k[top.len()..].matches('/').count()
                    };
                    matches!(m.kind, Kind::Symlink(_)) && below == depth
                })
                .map(|(k, _)| k.to_string())
                .collect();
            for k in matches {
                if let Some(found) = index.resolve_recording(&k, &mut keys) {
                    subtree(&found, &mut keys);
                }
            }
        }
    }
    let ancestors: Vec<String> =
        keys.iter().flat_map(|k| k.match_indices('/').map(|(i, _)| k[..i].to_string())).collect();
    keys.extend(ancestors);
    keys.insert(String::new());
    Some(keys)
}

/// The sources a pattern names, relative to the root, sorted. As fsutil's `ResolveWildcards`:
/// the segments before the first one with an unescaped wildcard are a literal path (followed
/// inside the root), the rest is matched segment by segment (Go `path.Match`, `\\` escapes) below
/// it. A wildcard may match nothing (BuildKit's `AllowEmptyWildcard`); a literal path must exist.
fn matches_for(root: &SourceRoot<'_>, src: &str) -> Result<Vec<String>> {
    let pattern = clean(src);
    let segments: Vec<&str> = pattern.split('/').collect();
    let Some(first_wild) = segments.iter().position(|s| glob::has_meta(s)) else {
        if pattern.is_empty() {
            return Ok(vec![String::new()]);
        }
        let visible = !excluded(root, &pattern)?
            && resolve_in_root(root.dir, &pattern).is_ok_and(|p| p.symlink_metadata().is_ok());
        return Ok(if visible { vec![pattern] } else { Vec::new() });
    };
    let base = segments[..first_wild].join("/");
    let rest = segments[first_wild..].join("/");
    glob::matches(&rest, "").map_err(|e| CopyError::Invalid(format!("COPY source {src:?}: {e}")))?;
    let depth = segments.len() - first_wild;
    let mut found = Vec::new();
    let Ok(base_dir) = resolve_in_root(root.dir, &base) else { return Ok(found) };
    let mut stack = vec![(String::new(), 0usize)];
    while let Some((dir, level)) = stack.pop() {
        let abs = if dir.is_empty() { base_dir.clone() } else { base_dir.join(&dir) };
        let Ok(rd) = std::fs::read_dir(&abs) else { continue };
        for e in rd.flatten() {
            let inner = join(&dir, &e.file_name().to_string_lossy());
            let rel = join(&base, &inner);
            if excluded(root, &rel)? {
                continue;
            }
            if level + 1 == depth {
                if glob::matches(&rest, &inner).unwrap_or(false) {
                    found.push(rel);
                }
            } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((inner, level + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Whether `.dockerignore` hides `rel`. A pattern that cannot be matched (e.g. `[Local-Only]/`,
/// an inverted range) fails the build, as in BuildKit, rather than silently hiding nothing.
fn excluded(root: &SourceRoot<'_>, rel: &str) -> Result<bool> {
    match root.ignore {
        Some(ig) => ig.is_excluded(rel).map_err(ignore_error),
        None => Ok(false),
    }
}

fn ignore_error(e: crate::context::dockerignore::IgnoreError) -> CopyError {
    CopyError::Invalid(format!(".dockerignore: {e}"))
}

fn not_found(root: &SourceRoot<'_>, src: &str) -> CopyError {
    let pattern = clean(src);
    let exists = resolve_in_root(root.dir, &pattern).is_ok_and(|p| p.symlink_metadata().is_ok());
    if exists && matches!(excluded(root, &pattern), Ok(true)) {
        CopyError::NotFound(format!(
            "\"{src}\" is excluded by .dockerignore: it exists in {} but a .dockerignore pattern hides it",
            root.name
        ))
    } else {
        CopyError::NotFound(format!("\"{src}\" not found in {}", root.name))
    }
}

/// Cleans a source or destination path: relative, no `.`/`..` above the root, no trailing `/`.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    parts.join("/")
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// The path of `abs` relative to `root` (for index lookups).
fn resolved_rel(root: &Path, abs: &Path) -> String {
    abs.strip_prefix(root).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Applies `--chmod` to a copied entry's mode.
pub fn apply_chmod(spec: &str, mode: u32, is_dir: bool) -> Result<u32> {
    crate::plan::apply_chmod(spec, mode, is_dir).map_err(CopyError::Invalid)
}

#[cfg(test)]
mod tests;
