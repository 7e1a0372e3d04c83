//! The steps that write files the builder makes itself: WORKDIR (a missing directory, owned by
//! the current USER) and COPY/ADD (from the context, a stage, an image, a named context, URLs,
//! local archives and heredocs), each as one layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::copy::{self, Entries, Ownership, SourceRoot};
use super::fetch::{self, Fetched};
use super::progress::Event;
use super::rootfs::StageOut;
use super::stage::{image_stage, named_context_image};
use super::{BuildError, Builder, input_error, users};
use crate::dockerfile::instructions::Loc;
use crate::dockerfile::{Diagnostic, Pos};
use crate::image::manifest::Layer;
use crate::layer::extract::{ApplyOptions, apply_layer};
use crate::layer::index::{FsIndex, Kind, Meta};
use crate::layer::times::Times;
use crate::layer::{LayerWriter, pyc};
use crate::plan::{CopyOp, Source};

/// WORKDIR creates its directory when missing, and its missing parents, owned by the current
/// USER (BuildKit's `Mkdir` with `WithParents` and `WithUser`; a name not in the stage's passwd
/// is root, as there); an existing directory is left as it is, and the layer is empty, as
/// BuildKit's is. `WORKDIR /` makes no layer (BuildKit makes no `Mkdir` for it).
pub fn workdir(
    b: &Builder<'_>,
    out: &mut StageOut,
    dir: &str,
    pos: Pos,
) -> Result<Option<Layer>, BuildError> {
    let rel = copy::clean(&landing(out.index(b)?, dir, pos)?);
    if rel.is_empty() {
        return Ok(None);
    }
    if out.index(b)?.is_dir(&rel) {
        return write_layer(b, out, Entries::new(), (0, 0)).map(Some);
    }
    let user = out.image.config.config.user.clone().filter(|u| !u.is_empty());
    let (uid, gid) = match user {
        Some(u) => chown_ids(b, out, &u).unwrap_or((0, 0)),
        None => (0, 0),
    };
    let meta =
        Meta { kind: Kind::Dir, mode: 0o755, uid, gid, mtime: b.options.epoch(), size: 0, capability: None };
    let mut entries = Entries::new();
    entries.insert(rel, copy::Entry { meta, content: copy::Content::None });
    write_layer(b, out, entries, (uid, gid)).map(Some)
}

/// Where COPY, ADD and WORKDIR write `dest` (absolute; a trailing `/` kept): BuildKit resolves it
/// in the stage's filesystem first (continuity's `RootPath`), so `COPY x /bin/` on a base whose
/// `/bin` links to `usr/bin` writes `usr/bin/x`, under the real directories, and leaves the link
/// out of the layer. Too many links on the way fail the step, as there.
fn landing(index: &FsIndex, dest: &str, pos: Pos) -> Result<String, BuildError> {
    match index.root_path(dest) {
        Some(p) if p.is_empty() => Ok("/".to_string()),
        Some(p) if dest.ends_with('/') => Ok(format!("/{p}/")),
        Some(p) => Ok(format!("/{p}")),
        None => Err(input_error(
            format!("{dest}: too many levels of symbolic links in the image (a link loop on the way)"),
            pos,
        )),
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The URL sources of an ADD (downloaded before the step's cache key is known: their content is
/// part of it).
pub fn urls(c: &CopyOp) -> Vec<&str> {
    if c.add { c.sources.iter().map(String::as_str).filter(|s| is_url(s)).collect() } else { Vec::new() }
}

/// The sources of a COPY/ADD that are paths (everything but an ADD's URLs).
pub fn paths(c: &CopyOp) -> Vec<String> {
    c.sources.iter().filter(|s| !(c.add && is_url(s))).cloned().collect()
}

/// A COPY/ADD selection error as the build reports it: located input errors, I/O as internal.
pub fn failed(c: &CopyOp, pos: Pos) -> impl Fn(copy::CopyError) -> BuildError + '_ {
    move |e| match e {
        copy::CopyError::Io(io) => BuildError::Internal(io.to_string()),
        other => input_error(format!("{} failed: {other}", if c.add { "ADD" } else { "COPY" }), pos),
    }
}

/// What COPY/ADD refuses before looking at any file.
pub fn check(c: &CopyOp, pos: Pos) -> Result<(), BuildError> {
    let is_git = |s: &String| {
        s.starts_with("git@") || s.starts_with("git://") || s.ends_with(".git") || s.contains(".git#")
    };
    if c.add && c.sources.iter().any(is_git) {
        return Err(BuildError::NotSupported(Diagnostic::new(
            "not supported yet: ADD of a git repository",
            pos,
        )));
    }
    if c.checksum.is_some() && !(c.add && c.sources.len() == 1 && c.sources.iter().all(|s| is_url(s))) {
        return Err(input_error("--checksum needs exactly one http(s) source", pos));
    }
    Ok(())
}

/// Runs a COPY/ADD step that passed [`check`]: `fetched` holds the downloads of its URLs (see
/// [`urls`]).
pub fn copy_step(
    b: &Builder<'_>,
    out: &mut StageOut,
    c: &CopyOp,
    loc: &Loc,
    done: &mut [Option<StageOut>],
    fetched: &[(String, Fetched)],
) -> Result<Layer, BuildError> {
    let pos = loc.pos();
    let chown = match &c.chown {
        Some(spec) => {
            Some(chown_ids(b, out, spec).map_err(|e| input_error(format!("--chown={spec}: {e}"), pos))?)
        }
        None => None,
    };
    let own = Ownership { chown, chmod: c.chmod.clone() };
    let dest = if c.dest_raw.ends_with('/') { format!("{}/", c.dest) } else { c.dest.clone() };
    // `--link` too: dockerd's BuildKit copies it as any COPY. BuildKit with a merge-capable
    // snapshotter takes its destination as written and makes real directories there, which over
    // a usr-merged base's `/bin` link leaves an image without `/bin`; the layer written here
    // works either way.
    let dest = landing(out.index(b)?, &dest, pos)?;
    let mut archives: Vec<(PathBuf, crate::layer::archive::Archive)> = Vec::new();
    let mut sources = paths(c);
    if c.add && c.unpack != Some(false) && c.from == Source::BuildContext {
        sources.retain(|s| match local_archive(b, s) {
            Some(found) => {
                archives.push(found);
                false
            }
            None => true,
        });
    }
    let mut entries = source_entries(b, out, c, &sources, &dest, &own, done, pos)?;
    let several = c.sources.len() + c.inline.len() > 1;
    let dest_is_dir = dest.ends_with('/') || out.index(b)?.is_dir(&copy::clean(&dest));
    for (url, fetched) in fetched {
        let path = if several || dest_is_dir {
            let name = fetch::file_name(url).ok_or_else(|| {
                input_error(format!("ADD {url}: the URL names no file; give a destination file name"), pos)
            })?;
            copy::clean(&format!("{dest}/{name}"))
        } else {
            copy::clean(&dest)
        };
        let mut mtime = fetched.mtime.unwrap_or_else(|| b.options.epoch());
        if let Some(c) = b.options.clamp() {
            mtime = mtime.min(c);
        }
        // Docker gives downloaded files mode 0600.
        let meta =
            file_meta(&own, 0o600, mtime, fetched.size).map_err(|e| input_error(e.to_string(), pos))?;
        entries.insert(
            path,
            copy::Entry { meta, content: copy::Content::File(b.store.blob_path(&fetched.digest)) },
        );
    }
    for (path, kind) in &archives {
        entries.extend(unpack_archive(b, out, path, *kind, &dest, &own, c, pos)?);
    }
    // Heredoc sources follow the same destination rule as files: a lone source whose destination
    // does not end in `/` (and is not an existing directory) is written at the destination itself.
    let lone = c.sources.is_empty() && c.inline.len() == 1;
    for f in &c.inline {
        let path = if lone && !dest_is_dir {
            copy::clean(&dest)
        } else {
            copy::clean(&format!("{dest}/{}", f.name))
        };
        let mtime = b.options.epoch();
        let meta = file_meta(&own, 0o644, mtime, f.data.len() as u64)
            .map_err(|e| input_error(e.to_string(), pos))?;
        entries
            .insert(path, copy::Entry { meta, content: copy::Content::Bytes(f.data.clone().into_bytes()) });
    }
    write_layer(b, out, entries, own.chown.unwrap_or((0, 0)))
}

/// A file COPY/ADD makes itself (a download, a heredoc): `mode` unless `--chmod`, root unless
/// `--chown`.
fn file_meta(own: &Ownership, mode: u32, mtime: i64, size: u64) -> Result<Meta, copy::CopyError> {
    let mode = match &own.chmod {
        Some(m) => copy::apply_chmod(m, mode, false)?,
        None => mode,
    };
    let (uid, gid) = own.chown.unwrap_or((0, 0));
    Ok(Meta { kind: Kind::File, mode, uid, gid, mtime, size, capability: None })
}

/// The stage or image a `--from` names, resolved, with what to call it in messages.
fn from_stage<'d>(
    b: &Builder<'_>,
    c: &CopyOp,
    done: &'d mut [Option<StageOut>],
    image: &'d mut Option<StageOut>,
    pos: Pos,
) -> Result<Option<(&'d mut StageOut, String)>, BuildError> {
    let platform = &b.plan.target_platform;
    Ok(match &c.from {
        Source::Stage(j) => {
            let src = done
                .get_mut(*j)
                .and_then(Option::as_mut)
                .ok_or_else(|| BuildError::Internal(format!("stage {j} not built")))?;
            Some((src, format!("stage {}", b.plan.stages[*j].label())))
        }
        Source::Context { name, value } if value.contains("://") => {
            let found = named_context_image(b, name, value, platform, pos)?;
            Some((image.insert(image_stage(found, platform)), format!("build context {name}")))
        }
        Source::Image(r) => {
            let found = b
                .bases
                .image(r, platform)
                .map_err(|e| e.input_error(format!("COPY --from={r}: {e}"), pos))?;
            Some((image.insert(image_stage(found, platform)), format!("image {r}")))
        }
        _ => None,
    })
}

/// The sources of every COPY/ADD `--from` stage `j` in the stages this build needs.
pub(super) fn copied_from(b: &Builder<'_>, j: usize) -> Vec<String> {
    let needed = b.plan.order.iter().map(|&k| &b.plan.stages[k]);
    let copies = needed.flat_map(|s| &s.steps).filter_map(|step| match &step.op {
        crate::plan::Op::Copy(c) if c.from == Source::Stage(j) => Some(paths(c)),
        _ => None,
    });
    copies.flatten().collect()
}

/// The entries the (non-URL, non-archive) `sources` give, from wherever the step copies.
#[allow(clippy::too_many_arguments)]
fn source_entries(
    b: &Builder<'_>,
    out: &mut StageOut,
    c: &CopyOp,
    sources: &[String],
    dest: &str,
    own: &Ownership,
    done: &mut [Option<StageOut>],
    pos: Pos,
) -> Result<Entries, BuildError> {
    let clamp = b.options.clamp();
    let mut image = None;
    let failed = failed(c, pos);
    if let Some((src, name)) = from_stage(b, c, done, &mut image, pos)? {
        // Only the paths the sources name are extracted, unless they name the whole tree: for a
        // stage, the paths every copy of it in this build names, extracted once for them all.
        src.index(b)?;
        let selected = match c.from {
            Source::Stage(j) => src.copy_files(b, &copied_from(b, j)),
            _ => {
                let keys = src.made_index().and_then(|index| copy::selection(index, sources));
                keys.and_then(|keys| src.selected_files(b, &keys).ok())
            }
        };
        let target = out.index(b)?;
        let src = &*src;
        let index = src.made_index().ok_or_else(|| BuildError::Internal("no index".into()))?;
        let collect = |dir: &Path| {
            let root = SourceRoot { dir, index: Some(index), ignore: None, name: name.clone() };
            copy::collect(&root, sources, dest, target, own, c.parents, &c.excludes, clamp)
        };
        // Should the selection fail, or its tree not answer as the whole one would
        // (`selection`'s reading of the index and the walk in `collect` disagree), the whole
        // tree answers instead.
        let entries = match selected.map(|dir| collect(&dir)) {
            Some(Ok(entries)) => Ok(entries),
            _ => collect(&src.rootfs(b)?),
        };
        // An image (unlike a stage) lives only for this step, but the entries point at its
        // extracted files: they must outlive it until the layer is written.
        if let Some(image) = image.take() {
            image.keep_files(b);
        }
        return entries.map_err(failed);
    }
    let (dir, ignore, name) = match &c.from {
        Source::BuildContext if sources.is_empty() => return Ok(Entries::new()),
        Source::BuildContext => {
            (b.context.root().to_path_buf(), b.context.ignore(), "the build context".into())
        }
        Source::Context { name, value } => (PathBuf::from(value), None, format!("build context {name}")),
        _ => return Ok(Entries::new()),
    };
    let root = SourceRoot { dir: &dir, index: None, ignore, name };
    let target = out.index(b)?;
    copy::collect(&root, sources, dest, target, own, c.parents, &c.excludes, clamp).map_err(failed)
}

/// An ADD source that is a local tar archive (by content), unless hidden by `.dockerignore`.
fn local_archive(b: &Builder<'_>, src: &str) -> Option<(PathBuf, crate::layer::archive::Archive)> {
    if crate::context::glob::has_meta(src) {
        return None;
    }
    let rel = copy::clean(src);
    if b.context.ignore().is_some_and(|ig| ig.is_excluded(&rel).unwrap_or(false)) {
        return None;
    }
    let path = copy::resolve_in_root(b.context.root(), &rel).ok()?;
    if !path.is_file() {
        return None;
    }
    crate::layer::archive::sniff(&path).ok().flatten().map(|k| (path, k))
}

/// ADD of a local archive: its tree (owners and modes from the archive, unless `--chown`/`--chmod`)
/// goes into the destination directory.
#[allow(clippy::too_many_arguments)]
fn unpack_archive(
    b: &Builder<'_>,
    out: &mut StageOut,
    path: &Path,
    kind: crate::layer::archive::Archive,
    dest: &str,
    own: &Ownership,
    c: &CopyOp,
    pos: Pos,
) -> Result<Entries, BuildError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bad =
        |e: &dyn std::fmt::Display| input_error(format!("ADD {name}: cannot unpack the archive: {e}"), pos);
    let tmp = b.store.temp_dir("add-")?;
    let root = tmp.path().join("root");
    fs_err::create_dir(&root)?;
    let reader = crate::layer::archive::open(path, kind)?;
    apply_layer(reader, &root, ApplyOptions::default()).map_err(|e| bad(&e))?;
    // Directories the archive implies but does not hold are made now: the clamp makes that the epoch.
    let made = Meta { mtime: b.options.epoch(), ..Meta::implicit_dir() };
    let mut index = FsIndex::with_implicit_dirs(made.clone());
    index.apply_tar(crate::layer::archive::open(path, kind)?).map_err(|e| bad(&e))?;
    // Docker's untar (BuildKit's, too) skips an archive's `./` entry: the destination is as
    // `mkdir -p` leaves it, its mtime the time its entries were made.
    index.insert("", made);
    let src = SourceRoot { dir: &root, index: Some(&index), ignore: None, name: format!("archive {name}") };
    let dir_dest = if dest.ends_with('/') { dest.to_string() } else { format!("{dest}/") };
    let entries = copy::collect(
        &src,
        &[".".to_string()],
        &dir_dest,
        out.index(b)?,
        own,
        false,
        &c.excludes,
        b.options.clamp(),
    )
    .map_err(|e| bad(&e))?;
    // The files must outlive this function: keep the directory until the layer is written.
    let kept = tmp.keep();
    b.keep_temp(kept);
    Ok(entries)
}

/// Writes `entries` plus their parent directories as one layer and records them in the index.
/// Missing parents are made 0755 and owned by `owner` (BuildKit's `MkdirAll` with the step's
/// `--chown` or WORKDIR's USER); existing ones are written as they are, except that one which
/// gains or replaces a child takes the build's epoch as its mtime: BuildKit's copy creates each
/// file anew (removing one in its way), so the kernel sets that directory's mtime to the time of
/// the build, which the clamp makes the epoch.
fn write_layer(
    b: &Builder<'_>,
    out: &mut StageOut,
    entries: Entries,
    owner: (u32, u32),
) -> Result<Layer, BuildError> {
    let clamp = b.options.clamp();
    let epoch = b.options.epoch();
    let mut all: BTreeMap<String, copy::Entry> = BTreeMap::new();
    // Directories that get a new or replaced entry (an existing directory is merged, not made).
    let mut changed = std::collections::HashSet::new();
    for (path, entry) in &entries {
        let existing = out.index(b)?.get(path).map(|m| &m.kind);
        let merged = entry.meta.kind == Kind::Dir && existing == Some(&Kind::Dir);
        if let (false, Some((parent, _))) = (merged, path.rsplit_once('/')) {
            changed.insert(parent.to_string());
        }
    }
    for path in entries.keys() {
        let mut parent = path.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            if all.contains_key(p) || entries.contains_key(p) {
                continue;
            }
            let meta = match out.index(b)?.get(p) {
                Some(m) if changed.contains(p) => Meta { mtime: epoch, ..m.clone() },
                Some(m) => m.clone(),
                None => Meta {
                    kind: Kind::Dir,
                    mode: 0o755,
                    uid: owner.0,
                    gid: owner.1,
                    mtime: epoch,
                    size: 0,
                    capability: None,
                },
            };
            all.insert(p.to_string(), copy::Entry { meta, content: copy::Content::None });
        }
    }
    all.extend(entries);
    let mut all: Vec<(String, copy::Entry)> = all.into_iter().collect();
    all.sort_by(|a, b| crate::layer::tar_order(&a.0, &b.0));
    let mut w = LayerWriter::new(b.store, b.options.layer_codec(), clamp)?;
    let pycs = pyc::Sources::of(
        all.iter().map(|(path, e)| match &e.content {
            copy::Content::File(p) => (path.as_str(), &e.meta, Some(p.as_path())),
            _ => (path.as_str(), &e.meta, None),
        }),
        clamp,
    );
    // What the clamp moves, as BuildKit's snapshot keeps it: the step's view of the layer.
    let mut times = Times::new();
    let index = out.index(b)?;
    for (path, e) in &all {
        match &e.content {
            copy::Content::File(p) => {
                let mut file = fs_err::File::open(p)?;
                if let Some(real) = moved(&file, clamp)
                    && !pycs.is_source(path)
                {
                    times.insert(path, real);
                }
                w.add(path, &e.meta, Some(&mut pycs.content(path, &mut file)?))?;
            }
            copy::Content::Bytes(bytes) => w.add(path, &e.meta, Some(&mut bytes.as_slice()))?,
            copy::Content::None => w.add(path, &e.meta, None)?,
        }
        index.insert(path, e.meta.clone());
    }
    let layer = w.finish()?;
    if !times.is_empty() {
        // Without them the snapshot has the layer's times: fidelity is lost, not the build.
        if let Err(e) = times.save(b.store, &layer.diff_id.to_string()) {
            b.reporter
                .event(&Event::Warning(&format!("the real file times of a COPY layer were not kept: {e}")));
        }
    }
    Ok(layer)
}

/// The real mtime of an open source `file`, when the clamp moves it.
fn moved(file: &fs_err::File, clamp: Option<i64>) -> Option<(i64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let md = file.metadata().ok()?;
    let nsec = u32::try_from(md.mtime_nsec()).unwrap_or(0);
    clamp.filter(|c| md.mtime() > *c).map(|_| (md.mtime(), nsec))
}

/// Resolves a `user[:group]` spec against the stage's `/etc/passwd` and `/etc/group`.
fn chown_ids(b: &Builder<'_>, out: &mut StageOut, spec: &str) -> Result<(u32, u32), users::UserError> {
    let numeric = spec.split(':').all(|p| p.parse::<u32>().is_ok());
    if numeric {
        return users::resolve_chown(spec, None, None);
    }
    let passwd = out.read_file(b, "etc/passwd");
    let group = out.read_file(b, "etc/group");
    users::resolve_chown(spec, passwd.as_deref(), group.as_deref())
}
