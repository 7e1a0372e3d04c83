//! Building one stage: its base image, then each step as config changes and layers.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::copy::{self, Entries, Ownership, SourceRoot};
use super::progress::Event;
use super::{BuildError, Builder, fetch, input_error, users};
use crate::dockerfile::instructions::{CommandLine, Health, Loc};
use crate::dockerfile::{Diagnostic, Pos};
use crate::image::config::{Empty, Healthcheck, History, ImageConfig};
use crate::image::manifest::{Image, Layer};
use crate::layer::extract::{ApplyOptions, apply_layer};
use crate::layer::index::{FsIndex, Kind, Meta};
use crate::layer::{LayerWriter, open_layer};
use crate::plan::{CopyOp, Op, Platform, Source, StagePlan};

/// A built stage.
#[derive(Clone)]
pub struct StageOut {
    /// The image so far.
    pub image: Image,
    /// Its filesystem metadata.
    pub index: FsIndex,
    /// Its files on disk, extracted on first use (`COPY --from`).
    rootfs: Rc<OnceCell<tempfile::TempDir>>,
}

impl StageOut {
    fn new(image: Image, index: FsIndex) -> StageOut {
        StageOut { image, index, rootfs: Rc::new(OnceCell::new()) }
    }

    /// The stage's files, extracted into the store's temp area on first use.
    fn rootfs(&self, b: &Builder<'_>) -> Result<PathBuf, BuildError> {
        if let Some(dir) = self.rootfs.get() {
            return Ok(dir.path().join("root"));
        }
        let dir = b.store.temp_dir("rootfs-")?;
        let root = dir.path().join("root");
        fs_err::create_dir(&root)?;
        for layer in &self.image.layers {
            let reader = open_layer(b.store, layer)?;
            let report = apply_layer(reader, &root, ApplyOptions { chown: false, devices: false })
                .map_err(|e| BuildError::Internal(format!("extracting layer {}: {e}", layer.digest)))?;
            if report.skipped_devices > 0 {
                let note = format!(
                    "{} device node(s) in layer {} not extracted (not needed to copy files)",
                    report.skipped_devices, layer.digest
                );
                b.reporter.event(&Event::Note(&note));
            }
        }
        let path = dir.path().join("root");
        let _ = self.rootfs.set(dir);
        Ok(path)
    }
}

/// Builds stage `i` of the plan.
pub fn build_stage(b: &Builder<'_>, i: usize, done: &[Option<StageOut>]) -> Result<StageOut, BuildError> {
    let sp = &b.plan.stages[i];
    let label = sp.label();
    let mut out = base(b, sp, done)?;
    // The base's ONBUILD triggers are steps of this stage now (see the planner); they do not pass on.
    out.image.config.config.on_build = None;
    let total = sp.steps.len();
    let mut cmd_set = false;
    for (n, step) in sp.steps.iter().enumerate() {
        b.reporter.event(&Event::Step { stage: &label, n: n + 1, total, text: &step.display });
        let cfg = &mut out.image.config.config;
        let mut layer: Option<Layer> = None;
        match &step.op {
            Op::Env(pairs) => {
                let mut env = out.image.config.env_pairs();
                for (k, v) in pairs {
                    match env.iter_mut().find(|(ek, _)| ek == k) {
                        Some(slot) => slot.1 = v.clone(),
                        None => env.push((k.clone(), v.clone())),
                    }
                }
                out.image.config.set_env_pairs(&env);
            }
            Op::Label(pairs) => {
                cfg.labels.get_or_insert_with(BTreeMap::new).extend(pairs.iter().cloned());
            }
            Op::Arg(_) => {}
            Op::User(u) => cfg.user = Some(u.clone()),
            Op::Volume(v) => {
                cfg.volumes.get_or_insert_with(BTreeMap::new).extend(v.iter().map(|p| (p.clone(), Empty {})));
            }
            Op::Expose(ports) => {
                cfg.exposed_ports
                    .get_or_insert_with(BTreeMap::new)
                    .extend(ports.iter().map(|p| (p.clone(), Empty {})));
            }
            Op::StopSignal(s) => cfg.stop_signal = Some(s.clone()),
            Op::Healthcheck(h) => cfg.healthcheck = Some(healthcheck(h)),
            Op::Shell(s) => cfg.shell = Some(s.clone()),
            Op::Cmd(c) => {
                cfg.cmd = Some(argv(c, cfg.shell.as_deref()));
                cmd_set = true;
            }
            Op::Entrypoint(c) => {
                cfg.entrypoint = Some(argv(c, cfg.shell.as_deref()));
                // An ENTRYPOINT resets an inherited CMD, unless this stage set CMD itself.
                if !cmd_set {
                    cfg.cmd = None;
                }
            }
            Op::Onbuild(t) => cfg.on_build.get_or_insert_with(Vec::new).push(t.clone()),
            Op::Maintainer(m) => out.image.config.author = Some(m.clone()),
            Op::Workdir(dir) => {
                cfg.working_dir = Some(dir.clone());
                layer = workdir(b, &mut out, dir)?;
            }
            Op::Copy(c) => layer = Some(copy_step(b, &mut out, c, &step.loc, done)?),
            Op::Run { .. } => {
                layer = super::run::run_step(b, &out, &step.op, &step.loc, (&label, n + 1), done)?;
                if let Some(l) = &layer {
                    out.index
                        .apply_tar(open_layer(b.store, l)?)
                        .map_err(|e| BuildError::Internal(format!("reading layer {}: {e}", l.digest)))?;
                }
            }
        }
        let empty_layer = layer.is_none();
        if let Some(l) = layer {
            b.reporter.event(&Event::Layer {
                stage: &label,
                digest: &l.digest.to_string(),
                size: l.size,
                entries: 0,
            });
            out.image.config.rootfs.diff_ids.push(l.diff_id.to_string());
            out.image.layers.push(l);
        }
        out.image.config.history.push(History {
            created: Some(b.created()),
            created_by: Some(step.display.clone()),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer,
            ..History::default()
        });
    }
    out.image.config.created = Some(b.created());
    Ok(out)
}

/// The stage's starting point.
fn base(b: &Builder<'_>, sp: &StagePlan, done: &[Option<StageOut>]) -> Result<StageOut, BuildError> {
    let label = sp.label();
    let at = Pos::new(sp.loc.start_line, sp.loc.col);
    match &sp.base {
        Source::Scratch => {
            b.reporter.event(&Event::Base { stage: &label, what: "scratch" });
            let config = ImageConfig {
                architecture: sp.platform.arch.clone(),
                os: sp.platform.os.clone(),
                variant: (!sp.platform.variant.is_empty()).then(|| sp.platform.variant.clone()),
                ..ImageConfig::default()
            };
            Ok(StageOut::new(Image { config, layers: Vec::new() }, FsIndex::new()))
        }
        Source::Stage(j) => done
            .get(*j)
            .and_then(Option::as_ref)
            .map(|s| StageOut::new(s.image.clone(), s.index.clone()))
            .ok_or_else(|| {
                BuildError::Internal(format!("stage {j} was not built before stage {}", sp.index))
            }),
        Source::Context { name, value } => {
            b.reporter.event(&Event::Base { stage: &label, what: value });
            let image = named_context_image(b, name, value, &sp.platform, at)?;
            indexed(b, image)
        }
        Source::Image(r) => {
            b.reporter.event(&Event::Base { stage: &label, what: r });
            let image = b.bases.image(r, &sp.platform).map_err(|e| {
                BuildError::Input(Diagnostic::new(format!("FROM {r}: {e}"), at).with_hint(format!(
                    "for an offline base, give it as an OCI layout: --build-context {}=oci-layout://DIR[:TAG]",
                    crate::plan::context_key(r.split('@').next().unwrap_or(r))
                )))
            })?;
            indexed(b, image)
        }
        Source::BuildContext => {
            Err(BuildError::Internal("a stage cannot start from the build context".into()))
        }
    }
}

/// Builds the filesystem index of an image from its layers.
fn indexed(b: &Builder<'_>, image: Image) -> Result<StageOut, BuildError> {
    let mut index = FsIndex::new();
    for layer in &image.layers {
        index
            .apply_tar(open_layer(b.store, layer)?)
            .map_err(|e| BuildError::Internal(format!("reading layer {}: {e}", layer.digest)))?;
    }
    Ok(StageOut::new(image, index))
}

/// An image from a named context: `oci-layout://DIR[:TAG|@DIGEST]` or `docker-image://REF`.
fn named_context_image(
    b: &Builder<'_>,
    name: &str,
    value: &str,
    platform: &Platform,
    at: Pos,
) -> Result<Image, BuildError> {
    if !value.starts_with("oci-layout://") && !value.starts_with("docker-image://") {
        return Err(BuildError::NotSupported(Diagnostic::new(
            format!(
                "not supported yet: --build-context {name}={value} as a base image (use oci-layout:// or docker-image://)"
            ),
            at,
        )));
    }
    b.bases
        .image(value, platform)
        .map_err(|e| BuildError::Input(Diagnostic::new(format!("--build-context {name}={value}: {e}"), at)))
}

/// `DIR`, `DIR:TAG` or `DIR@sha256:…`.
pub(super) fn split_layout_ref(s: &str) -> (&str, Option<&str>) {
    if let Some((dir, d)) = s.split_once('@') {
        return (dir, Some(d));
    }
    match s.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !tag.is_empty() => (dir, Some(tag)),
        _ => (s, None),
    }
}

fn argv(c: &CommandLine, shell: Option<&[String]>) -> Vec<String> {
    if c.shell_form {
        let mut v: Vec<String> =
            shell.map(<[String]>::to_vec).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        v.extend(c.args.iter().cloned());
        v
    } else {
        c.args.clone()
    }
}

fn healthcheck(h: &Health) -> Healthcheck {
    match h {
        Health::None => Healthcheck { test: vec!["NONE".into()], ..Healthcheck::default() },
        Health::Check { test, interval, timeout, start_period, start_interval, retries } => Healthcheck {
            test: test.clone(),
            interval: *interval,
            timeout: *timeout,
            start_period: *start_period,
            start_interval: *start_interval,
            retries: *retries,
        },
    }
}

/// WORKDIR creates its directory (owned by the current USER, as BuildKit does) when missing.
fn workdir(b: &Builder<'_>, out: &mut StageOut, dir: &str) -> Result<Option<Layer>, BuildError> {
    let rel = copy::clean(dir);
    if rel.is_empty() || out.index.is_dir(&rel) {
        return Ok(None);
    }
    let (uid, gid) = match out.image.config.config.user.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => chown_ids(b, out, u).unwrap_or((0, 0)),
        None => (0, 0),
    };
    let meta = Meta {
        kind: Kind::Dir,
        mode: 0o755,
        uid,
        gid,
        mtime: b.options.source_date_epoch.unwrap_or(0),
        size: 0,
    };
    let mut entries = Entries::new();
    entries.insert(rel, copy::Entry { meta, content: copy::Content::None });
    write_layer(b, out, entries).map(Some)
}

fn copy_step(
    b: &Builder<'_>,
    out: &mut StageOut,
    c: &CopyOp,
    loc: &Loc,
    done: &[Option<StageOut>],
) -> Result<Layer, BuildError> {
    let pos = loc.pos();
    let is_url = |s: &String| s.starts_with("http://") || s.starts_with("https://");
    let is_git = |s: &String| {
        s.starts_with("git@") || s.starts_with("git://") || s.ends_with(".git") || s.contains(".git#")
    };
    if c.add && c.sources.iter().any(is_git) {
        return Err(BuildError::NotSupported(Diagnostic::new(
            "not supported yet: ADD of a git repository",
            pos,
        )));
    }
    if c.checksum.is_some() && !(c.add && c.sources.len() == 1 && c.sources.iter().all(is_url)) {
        return Err(input_error("--checksum needs exactly one http(s) source", pos));
    }
    let chown = match &c.chown {
        Some(spec) => {
            Some(chown_ids(b, out, spec).map_err(|e| input_error(format!("--chown={spec}: {e}"), pos))?)
        }
        None => None,
    };
    let own = Ownership { chown, chmod: c.chmod.clone() };
    let clamp = b.options.source_date_epoch;
    let dest = if c.dest_raw.ends_with('/') { format!("{}/", c.dest) } else { c.dest.clone() };
    let mut archives: Vec<(PathBuf, crate::layer::archive::Archive)> = Vec::new();
    let urls: Vec<String> =
        if c.add { c.sources.iter().filter(|s| is_url(s)).cloned().collect() } else { Vec::new() };
    let mut sources: Vec<String> = c.sources.iter().filter(|s| !urls.contains(s)).cloned().collect();
    if c.add && c.unpack != Some(false) && c.from == Source::BuildContext {
        sources.retain(|s| match local_archive(b, s) {
            Some(found) => {
                archives.push(found);
                false
            }
            None => true,
        });
    }
    let mut entries = match &c.from {
        Source::BuildContext if sources.is_empty() => Ok(Entries::new()),
        Source::BuildContext => {
            let root = SourceRoot {
                dir: b.context.root(),
                index: None,
                ignore: b.context.ignore(),
                name: "the build context".into(),
            };
            copy::collect(&root, &sources, &dest, &out.index, &own, c.parents, &c.excludes, clamp)
        }
        Source::Stage(j) => {
            let src = done
                .get(*j)
                .and_then(Option::as_ref)
                .ok_or_else(|| BuildError::Internal(format!("stage {j} not built")))?;
            let dir = src.rootfs(b)?;
            let root = SourceRoot {
                dir: &dir,
                index: Some(&src.index),
                ignore: None,
                name: format!("stage {}", b.plan.stages[*j].label()),
            };
            copy::collect(&root, &c.sources, &dest, &out.index, &own, c.parents, &c.excludes, clamp)
        }
        Source::Context { name, value } if !value.contains("://") => {
            let dir = PathBuf::from(value);
            let root =
                SourceRoot { dir: &dir, index: None, ignore: None, name: format!("build context {name}") };
            copy::collect(&root, &c.sources, &dest, &out.index, &own, c.parents, &c.excludes, clamp)
        }
        Source::Context { name, value } => {
            let image = named_context_image(b, name, value, &b.plan.target_platform, pos)?;
            let src = indexed(b, image)?;
            let dir = src.rootfs(b)?;
            let root = SourceRoot {
                dir: &dir,
                index: Some(&src.index),
                ignore: None,
                name: format!("build context {name}"),
            };
            copy::collect(&root, &c.sources, &dest, &out.index, &own, c.parents, &c.excludes, clamp)
        }
        Source::Image(r) => {
            let image = b
                .bases
                .image(r, &b.plan.target_platform)
                .map_err(|e| input_error(format!("COPY --from={r}: {e}"), pos))?;
            let src = indexed(b, image)?;
            let dir = src.rootfs(b)?;
            let root =
                SourceRoot { dir: &dir, index: Some(&src.index), ignore: None, name: format!("image {r}") };
            copy::collect(&root, &c.sources, &dest, &out.index, &own, c.parents, &c.excludes, clamp)
        }
        Source::Scratch => Ok(Entries::new()),
    }
    .map_err(|e| match e {
        copy::CopyError::Io(io) => BuildError::Internal(io.to_string()),
        other => input_error(format!("{} failed: {other}", if c.add { "ADD" } else { "COPY" }), pos),
    })?;
    let several = c.sources.len() + c.inline.len() > 1;
    let dest_is_dir = dest.ends_with('/') || out.index.is_dir(&copy::clean(&dest));
    for url in &urls {
        let fetched = fetch::fetch(b.store, url, c.checksum.as_deref())
            .map_err(|e| input_error(format!("ADD: {e}"), pos))?;
        let path = if several || dest_is_dir {
            let name = fetch::file_name(url).ok_or_else(|| {
                input_error(format!("ADD {url}: the URL names no file; give a destination file name"), pos)
            })?;
            copy::clean(&format!("{dest}/{name}"))
        } else {
            copy::clean(&dest)
        };
        let mut mtime = fetched.mtime.unwrap_or(0);
        if let Some(c) = clamp {
            mtime = mtime.min(c);
        }
        // Docker gives downloaded files mode 0600.
        let mode = match &own.chmod {
            Some(m) => copy::apply_chmod(m, 0o600, false).map_err(|e| input_error(e.to_string(), pos))?,
            None => 0o600,
        };
        let (uid, gid) = own.chown.unwrap_or((0, 0));
        let meta = Meta { kind: Kind::File, mode, uid, gid, mtime, size: fetched.size };
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
        let mode = match &own.chmod {
            Some(m) => copy::apply_chmod(m, 0o644, false).map_err(|e| input_error(e.to_string(), pos))?,
            None => 0o644,
        };
        let meta = Meta {
            kind: Kind::File,
            mode,
            uid: own.chown.map_or(0, |c| c.0),
            gid: own.chown.map_or(0, |c| c.1),
            mtime: clamp.unwrap_or(0),
            size: f.data.len() as u64,
        };
        entries
            .insert(path, copy::Entry { meta, content: copy::Content::Bytes(f.data.clone().into_bytes()) });
    }
    write_layer(b, out, entries)
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
    out: &StageOut,
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
    apply_layer(reader, &root, ApplyOptions { chown: false, devices: false }).map_err(|e| bad(&e))?;
    let mut index = FsIndex::new();
    index.apply_tar(crate::layer::archive::open(path, kind)?).map_err(|e| bad(&e))?;
    let src = SourceRoot { dir: &root, index: Some(&index), ignore: None, name: format!("archive {name}") };
    let dir_dest = if dest.ends_with('/') { dest.to_string() } else { format!("{dest}/") };
    let entries = copy::collect(
        &src,
        &[".".to_string()],
        &dir_dest,
        &out.index,
        own,
        false,
        &c.excludes,
        b.options.source_date_epoch,
    )
    .map_err(|e| bad(&e))?;
    // The files must outlive this function: keep the directory until the layer is written.
    let kept = tmp.keep();
    b.keep_temp(kept);
    Ok(entries)
}

/// Writes `entries` plus their parent directories as one layer and records them in the index.
fn write_layer(b: &Builder<'_>, out: &mut StageOut, entries: Entries) -> Result<Layer, BuildError> {
    let clamp = b.options.source_date_epoch;
    let mut all: BTreeMap<String, copy::Entry> = BTreeMap::new();
    for path in entries.keys() {
        let mut parent = path.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            if all.contains_key(p) || entries.contains_key(p) {
                continue;
            }
            let meta = out.index.get(p).cloned().unwrap_or(Meta {
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: clamp.unwrap_or(0),
                size: 0,
            });
            all.insert(p.to_string(), copy::Entry { meta, content: copy::Content::None });
        }
    }
    all.extend(entries);
    let mut w = LayerWriter::new(b.store, b.options.compression, clamp)?;
    for (path, e) in &all {
        match &e.content {
            copy::Content::File(p) => w.add(path, &e.meta, Some(&mut fs_err::File::open(p)?))?,
            copy::Content::Bytes(bytes) => w.add(path, &e.meta, Some(&mut bytes.as_slice()))?,
            copy::Content::None => w.add(path, &e.meta, None)?,
        }
        out.index.insert(path, e.meta.clone());
    }
    Ok(w.finish()?)
}

/// Resolves a `user[:group]` spec against the stage's `/etc/passwd` and `/etc/group`.
fn chown_ids(b: &Builder<'_>, out: &StageOut, spec: &str) -> Result<(u32, u32), users::UserError> {
    let numeric = spec.split(':').all(|p| p.parse::<u32>().is_ok());
    if numeric {
        return users::resolve_chown(spec, None, None);
    }
    let passwd = read_file(b, out, "etc/passwd");
    let group = read_file(b, out, "etc/group");
    users::resolve_chown(spec, passwd.as_deref(), group.as_deref())
}

/// Reads a small file from the stage's layers (topmost layer that has it), without extracting.
pub(super) fn read_file(b: &Builder<'_>, out: &StageOut, path: &str) -> Option<String> {
    let resolved = out.index.resolve(path)?;
    out.index.get(&resolved).filter(|m| m.kind == Kind::File)?;
    for layer in out.image.layers.iter().rev() {
        let reader = open_layer(b.store, layer).ok()?;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().ok()?.flatten() {
            let mut entry = entry;
            let name = entry
                .path()
                .ok()?
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            if name == resolved && entry.header().entry_type().is_file() {
                let mut s = String::new();
                entry.by_ref().take(1 << 20).read_to_string(&mut s).ok()?;
                return Some(s);
            }
        }
    }
    None
}
