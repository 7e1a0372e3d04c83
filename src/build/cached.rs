//! The step cache around the steps that produce layers (WORKDIR, COPY/ADD, RUN): each step's key
//! is computed from its planned operation and the inputs found now (file checksums, the keys of
//! `--from` stages, image layers, downloads); a recorded result is reused, otherwise the step runs
//! and its result is recorded.
//!
//! The key of the filesystem *after* a step is derived from the step's key and the layer it gave
//! ([`key::after`]), so when a step runs again (`--no-cache-filter`, or a record lost) and gives a
//! different layer, the steps after it miss instead of stacking old layers on a new one; when it
//! gives the same layer (reproducible steps), they still hit.

use std::path::Path;

use super::copy::{self, Ownership, SourceRoot};
use super::fetch::Fetched;
use super::progress::Event;
use super::rootfs::StageOut;
use super::stage::{image_key, named_context_image};
use super::{BuildError, Builder, copy_step, input_error, run};
use crate::cache::remote::Used;
use crate::cache::{CacheKey, Hit, KeyBuilder, Records, StepInputs, key};
use crate::context::dockerignore::PatternMatcher;
use crate::dockerfile::Pos;
use crate::dockerfile::instructions::{Mount, MountType};
use crate::image::manifest::{Image, Layer};
use crate::layer::index::{FsIndex, Kind};
use crate::plan::{CopyOp, Op, Source, StagePlan, Step};
use crate::sandbox::protocol::{LayerRef, Successor};

/// Runs step number `n` (1-based) of stage `sp`, or takes its result from the cache.
pub fn layer_step(
    b: &Builder<'_>,
    sp: &StagePlan,
    out: &mut StageOut,
    step: &Step,
    n: usize,
    done: &mut [Option<StageOut>],
) -> Result<Option<Layer>, BuildError> {
    let label = sp.label();
    let pos = step.loc.pos();
    let mut fetched: Vec<(String, Fetched)> = Vec::new();
    let mut found: Vec<(String, String)> = Vec::new();
    match &step.op {
        Op::Copy(c) => {
            copy_step::check(c, pos)?;
            for url in copy_step::urls(c) {
                let f =
                    b.fetch(url, c.checksum.as_deref()).map_err(|e| input_error(format!("ADD: {e}"), pos))?;
                found.push(("url".into(), f.digest.to_string()));
                fetched.push((url.to_string(), f));
            }
            found.extend(copy_inputs(b, c, done, pos)?);
        }
        Op::Run { mounts, .. } => found.extend(mount_inputs(b, mounts, done, pos)?),
        // WORKDIR makes its directory owned by the USER of the moment, a config value.
        Op::Workdir(_) => {
            found.push(("user".into(), out.image.config.config.user.clone().unwrap_or_default()))
        }
        _ => {}
    }
    let inputs = StepInputs {
        parent: &out.key,
        op: &step.op,
        used_args: &step.used_args,
        platform: &sp.platform,
        clamp: b.options.clamp(),
        found: &found,
    };
    let (step_key, shape) = (key::step(&inputs), key::shape(&inputs));
    let records = Records::new(b.store);
    if let Some(hit) = lookup(b, sp, &records, &step_key) {
        b.reporter.event(&Event::Cached { stage: &label, n });
        let layer = hit.into_layer();
        if layer.is_some() {
            out.forget_index();
        }
        return Ok(finish(b, sp, out, step_key, layer));
    }
    out.ran = true;
    let layer = match &step.op {
        Op::Workdir(dir) => copy_step::workdir(b, out, dir, step.loc.pos())?,
        Op::Copy(c) => {
            let layer = copy_step::copy_step(b, out, c, &step.loc, done, &fetched)?;
            note_successor(b, &records, &shape, &layer);
            Some(layer)
        }
        Op::Run { .. } => {
            let layer = run::run_step(b, out, &step.op, &step.loc, (sp.index, &label, n), done)?;
            if layer.is_some() {
                out.forget_index();
            }
            layer
        }
        _ => None,
    };
    if let Err(e) = records.put(&step_key, layer.as_ref()) {
        b.reporter.event(&Event::Warning(&format!("the step's result was not recorded in the cache: {e}")));
    }
    Ok(finish(b, sp, out, step_key, layer))
}

/// Makes `layer` known as the successor of the layer this COPY made last time, if it differs, so
/// the sandbox can make its snapshot from the old one's plus the difference.
fn note_successor(b: &Builder<'_>, records: &Records<'_>, shape: &CacheKey, layer: &Layer) {
    if let Some(old) = records.previous(shape).filter(|old| old.diff_id != layer.diff_id) {
        super::lock(&b.successors)
            .push(Successor { layer: LayerRef::from_layer(layer), replaces: LayerRef::from_layer(&old) });
    }
    records.set_previous(shape, layer);
}

/// The recorded result of `key`: the store's own records, else an imported cache's (its layer
/// pulled now and recorded locally). A cache that cannot give the layer is a warning and a miss.
fn lookup(b: &Builder<'_>, sp: &StagePlan, records: &Records<'_>, key: &CacheKey) -> Option<Hit> {
    if !b.use_cache(sp) {
        return None;
    }
    if let Some(hit) = records.get(key) {
        return Some(hit);
    }
    let imported = b.imported.get(b.store, b.bases.registry(), key)?.and_then(|hit| match hit {
        (Hit::Layer(l), level) => {
            crate::layer::compress::to_local(b.store, &l, b.options.compress_for, level)
                .map(Hit::Layer)
                .map_err(|e| e.to_string())
        }
        (Hit::Empty, _) => Ok(Hit::Empty),
    });
    match imported {
        Ok(hit) => {
            if let Err(e) = records.put(key, hit.layer()) {
                b.reporter.event(&Event::Warning(&format!("an imported result was not recorded: {e}")));
            }
            Some(hit)
        }
        Err(e) => {
            b.reporter.event(&Event::Warning(&format!(
                "the cache had this step but its layer could not be pulled: {e}"
            )));
            None
        }
    }
}

/// Records the step's result as used (for `--cache-to`) and moves the stage's key past it.
fn finish(
    b: &Builder<'_>,
    sp: &StagePlan,
    out: &mut StageOut,
    step_key: CacheKey,
    layer: Option<Layer>,
) -> Option<Layer> {
    out.key = key::after(&step_key, layer.as_ref().map(|l| &l.diff_id));
    super::lock(&b.used).push(Used { key: step_key, layer: layer.clone(), stage: sp.index });
    layer
}

/// What a COPY/ADD reads besides its own text: the checksum of the selected context files, the
/// key of a `--from` stage, or the layers of a `--from` image.
fn copy_inputs(
    b: &Builder<'_>,
    c: &CopyOp,
    done: &[Option<StageOut>],
    pos: Pos,
) -> Result<Vec<(String, String)>, BuildError> {
    let failed = copy_step::failed(c, pos);
    let value = match &c.from {
        Source::BuildContext => {
            let sources = copy_step::paths(c);
            if sources.is_empty() {
                return Ok(Vec::new());
            }
            let what = (b.context.root(), b.context.ignore(), "the build context");
            content(b, what, &sources, c.parents, &c.excludes).map_err(failed)?
        }
        Source::Context { name, value } if !value.contains("://") => {
            let what = (Path::new(value.as_str()), None, name.as_str());
            content(b, what, &c.sources, c.parents, &c.excludes).map_err(failed)?
        }
        other => source_key(b, other, done, pos, "COPY --from")?,
    };
    Ok(vec![("from".into(), value)])
}

/// What a RUN's bind mounts (and cache mounts seeded `from=`) read: checksums of context files,
/// stage keys, image layers.
fn mount_inputs(
    b: &Builder<'_>,
    mounts: &[(Mount, Source)],
    done: &[Option<StageOut>],
    pos: Pos,
) -> Result<Vec<(String, String)>, BuildError> {
    let mut found = Vec::new();
    for (i, (m, source)) in mounts.iter().enumerate() {
        let reads = m.kind == MountType::Bind || (m.kind == MountType::Cache && m.from.is_some());
        if !reads {
            continue;
        }
        let sub = vec![m.source.clone().unwrap_or_else(|| ".".into())];
        let failed = |e: copy::CopyError| match e {
            copy::CopyError::NotFound(_) => {
                input_error(format!("RUN: --mount source {:?} does not exist", sub[0]), pos)
            }
            other => input_error(format!("RUN --mount: {other}"), pos),
        };
        let value = match source {
            Source::BuildContext => {
                let what = (b.context.root(), b.context.ignore(), "the build context");
                content(b, what, &sub, false, &[]).map_err(failed)?
            }
            Source::Context { name, value } if !value.contains("://") => {
                content(b, (Path::new(value.as_str()), None, name.as_str()), &sub, false, &[])
                    .map_err(failed)?
            }
            other => source_key(b, other, done, pos, "--mount from")?,
        };
        found.push((format!("mount-{i}"), value));
    }
    Ok(found)
}

/// The key of a stage, image or image context that files are read from.
fn source_key(
    b: &Builder<'_>,
    source: &Source,
    done: &[Option<StageOut>],
    pos: Pos,
    what: &str,
) -> Result<String, BuildError> {
    let platform = &b.plan.target_platform;
    let image_key = |image: Image| image_key(&image, platform).to_string();
    Ok(match source {
        Source::Stage(j) => done
            .get(*j)
            .and_then(Option::as_ref)
            .map(|s| s.key.to_string())
            .ok_or_else(|| BuildError::Internal(format!("stage {j} not built")))?,
        Source::Image(r) => image_key(
            b.bases.metadata(r, platform).map_err(|e| e.input_error(format!("{what}={r}: {e}"), pos))?,
        ),
        Source::Context { name, value } => image_key(named_context_image(b, name, value, platform, pos)?),
        Source::Scratch | Source::BuildContext => "scratch".into(),
    })
}

/// The checksum of what `sources` select under a directory (`dir`, its `.dockerignore`, its name
/// for messages): every entry's relative path, type, mode, owner, size, link target and content
/// digest — never its mtime. The selection is COPY's own (wildcards, `--parents`, `--exclude`,
/// `.dockerignore`), so exactly the files a step reads are keyed, and a missing source fails here
/// with the message the step would give.
fn content(
    b: &Builder<'_>,
    (dir, ignore, name): (&Path, Option<&PatternMatcher>, &str),
    sources: &[String],
    parents: bool,
    excludes: &[String],
) -> Result<String, copy::CopyError> {
    let root = SourceRoot { dir, index: None, ignore, name: name.to_string() };
    let own = Ownership::default();
    let entries = copy::collect(&root, sources, "/", &FsIndex::new(), &own, parents, excludes, None)?;
    let files: Vec<&Path> = entries
        .values()
        .filter_map(|e| match &e.content {
            copy::Content::File(p) => Some(p.as_path()),
            _ => None,
        })
        .collect();
    let sums = b.sums.digests(&files)?;
    let mut sums = sums.iter();
    let mut k = KeyBuilder::new("content");
    for (path, e) in &entries {
        let m = &e.meta;
        let kind = match &m.kind {
            Kind::File => "file".to_string(),
            Kind::Dir => "dir".to_string(),
            Kind::Symlink(t) => format!("symlink:{t}"),
            Kind::Hardlink(t) => format!("hardlink:{t}"),
            Kind::Char(a, z) => format!("char:{a}:{z}"),
            Kind::Block(a, z) => format!("block:{a}:{z}"),
            Kind::Fifo => "fifo".to_string(),
        };
        k.field("path", path).field("kind", kind).field("mode", format!("{:o}", m.mode));
        // Only regular files have a sum (in `files` order).
        if let copy::Content::File(_) = &e.content
            && let Some(sum) = sums.next()
        {
            k.field("owner", format!("{}:{}", sum.uid, sum.gid)).field("size", m.size.to_string());
            k.field("digest", sum.digest.to_string());
        }
    }
    Ok(k.finish().to_string())
}
