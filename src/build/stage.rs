//! Building one stage: its base, then each step — config-only instructions applied to the
//! config ([`super::config`]), layer-producing ones through the step cache ([`super::cached`]).

use super::progress::Event;
use super::rootfs::StageOut;
use super::{BuildError, Builder, cached, config};
use crate::cache::key;
use crate::dockerfile::{Diagnostic, Pos};
use crate::image::config::{History, ImageConfig};
use crate::image::manifest::Image;
use crate::plan::{Op, Platform, Source, StagePlan};

/// Builds stage `i` of the plan (`done` holds the stages built before it).
pub fn build_stage(b: &Builder<'_>, i: usize, done: &mut [Option<StageOut>]) -> Result<StageOut, BuildError> {
    let sp = &b.plan.stages[i];
    let label = sp.label();
    // BuildKit drops the stage name from step names when the Dockerfile has one stage.
    let shown = if b.plan.stages.len() == 1 { String::new() } else { label.clone() };
    // BuildKit counts FROM as step 1 only when it pulls something: a stage or scratch base is
    // no step, and the stage's first step is 1 (`[c 1/2] COPY …`).
    let from_is_step = matches!(sp.base, Source::Image(_) | Source::Context { .. });
    let mut n = usize::from(from_is_step);
    // BuildKit (≥ 0.17) counts every ONBUILD trigger in the total, a config-only one too, though
    // only steps are numbered: a base with `ONBUILD ENV …` makes the last step `[2/3]`.
    let total = n + sp.steps.iter().filter(|s| is_step(&s.op) || s.trigger).count();
    let mut out = ended(b, &label, 1, base(b, sp, &shown, total, done))?;
    if from_is_step {
        b.reporter.event(&Event::Done { stage: &label, n: 1 });
    }
    // The base's ONBUILD triggers are steps of this stage now (see the planner); they do not pass on.
    out.image.config.config.on_build = None;
    let mut cmd_set = false;
    for (i, step) in sp.steps.iter().enumerate() {
        if b.failed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(BuildError::Cancelled);
        }
        let layer = if is_step(&step.op) {
            n += 1;
            b.reporter.event(&Event::Step { stage: &label, shown: &shown, n, total, text: &step.display });
            config::apply(&mut out.image.config, &step.op, &mut cmd_set);
            let layer = ended(b, &label, n, cached::layer_step(b, sp, &mut out, step, n, done))?;
            if let Some(l) = &layer {
                b.reporter.event(&Event::Layer {
                    stage: &label,
                    digest: &l.digest.to_string(),
                    size: l.size,
                    entries: 0,
                });
            }
            b.reporter.event(&Event::Done { stage: &label, n });
            layer
        } else if config::apply(&mut out.image.config, &step.op, &mut cmd_set) {
            None
        } else {
            return Err(BuildError::Internal(format!("step {} of stage {label} is not config-only", i + 1)));
        };
        let empty_layer = layer.is_none();
        if let Some(l) = layer {
            out.image.config.rootfs.diff_ids.push(l.diff_id.to_string());
            out.image.layers.push(l);
            // A step that made its layer from the index (COPY, WORKDIR) leaves it current: keep
            // it, so a later build that misses after this step need not read the layers again.
            out.keep_index(b);
        }
        if let Some(created_by) = &step.history {
            out.image.config.history.push(History {
                created: Some(b.created()),
                created_by: Some(created_by.clone()),
                comment: Some("buildkit.dockerfile.v0".into()),
                empty_layer,
                ..History::default()
            });
        }
    }
    out.image.config.created = Some(b.created());
    let copied = super::copy_step::copied_from(b, i);
    if out.ran && !copied.is_empty() {
        // Later stages copy from this one, whose steps ran, so those copies most likely run too:
        // extract what they read now, on this stage's thread beside the stages built with it,
        // rather than when the copies run. A failure is the copies' to report.
        if out.copy_files(b, &copied).is_none() {
            let _ = out.rootfs(b);
        }
    }
    Ok(out)
}

/// Whether `op` is a step as BuildKit counts them (it makes a filesystem state); the others only
/// change the image config.
fn is_step(op: &Op) -> bool {
    matches!(op, Op::Run { .. } | Op::Copy(_) | Op::Workdir(_))
}

/// Reports a failed step `n` (its message on one line) and passes the result on.
fn ended<T>(b: &Builder<'_>, label: &str, n: usize, r: Result<T, BuildError>) -> Result<T, BuildError> {
    if let Err(e) = &r {
        if matches!(e, BuildError::Cancelled) {
            return r;
        }
        b.failed.store(true, std::sync::atomic::Ordering::Relaxed);
        let message = match e.diagnostic() {
            Some(d) => d.message.clone(),
            None => e.to_string(),
        };
        let message = message.lines().next().unwrap_or_default();
        b.reporter.event(&Event::Failed { stage: label, n, message });
    }
    r
}

/// The stage's starting point.
/// Its `FROM` is step 1 (of `total`) when it is an image; a stage base or `scratch` is no step of
/// its own, as in BuildKit.
fn base(
    b: &Builder<'_>,
    sp: &StagePlan,
    shown: &str,
    total: usize,
    done: &[Option<StageOut>],
) -> Result<StageOut, BuildError> {
    let label = sp.label();
    let from = |what: &str| {
        let text = format!("FROM {what}");
        b.reporter.event(&Event::Step { stage: &label, shown, n: 1, total, text: &text });
    };
    let at = Pos::new(sp.loc.start_line, sp.loc.col);
    match &sp.base {
        Source::Scratch => {
            // BuildKit's empty image: WorkingDir `/` and the default PATH.
            let mut config = ImageConfig {
                architecture: sp.platform.arch.clone(),
                os: sp.platform.os.clone(),
                variant: (!sp.platform.variant.is_empty()).then(|| sp.platform.variant.clone()),
                ..ImageConfig::default()
            };
            config.config.working_dir = Some("/".into());
            ensure_path(&mut config, &sp.platform);
            Ok(StageOut::new(Image { config, layers: Vec::new() }, key::scratch(&sp.platform)))
        }
        Source::Stage(j) => done.get(*j).and_then(Option::as_ref).map(StageOut::fork).ok_or_else(|| {
            BuildError::Internal(format!("stage {j} was not built before stage {}", sp.index))
        }),
        Source::Context { name, value } => {
            from(value);
            let mut image = named_context_image(b, name, value, &sp.platform, at)?;
            image.config.as_base();
            ensure_path(&mut image.config, &sp.platform);
            Ok(image_stage(image, &sp.platform))
        }
        Source::Image(r) => {
            let base = b.bases.from(r, &sp.platform);
            from(&base.shown);
            if base.claimed {
                let text = format!("resolve {} done", base.shown);
                b.reporter.event(&Event::StepStatus { stage: &label, n: 1, text: &text });
            }
            let pulled = base.wait().map_err(|e| {
                let offline = format!(
                    "for an offline base, keep it in the store (hako build -t NAME, hako tag) or give it as an OCI layout: --build-context {}=oci-layout://DIR[:TAG]",
                    crate::plan::context_key(r.split('@').next().unwrap_or(r))
                );
                BuildError::Input(e.hinted(Diagnostic::new(format!("FROM {r}: {e}"), at), Some(offline)))
            })?;
            let (mut image, fetched) = pulled;
            for f in &fetched {
                let digest = f.digest.to_string();
                let millis = u64::try_from(f.elapsed.as_millis()).unwrap_or(u64::MAX);
                b.reporter.event(&Event::Download {
                    stage: &label,
                    n: 1,
                    digest: &digest,
                    size: f.size,
                    millis,
                });
            }
            image.config.as_base();
            ensure_path(&mut image.config, &sp.platform);
            Ok(image_stage(image, &sp.platform))
        }
        Source::BuildContext => {
            Err(BuildError::Internal("a stage cannot start from the build context".into()))
        }
    }
}

/// A stage (or `--from` source) starting from `image`: its cache key is that of its layers.
pub(super) fn image_stage(image: Image, platform: &Platform) -> StageOut {
    let key = image_key(&image, platform);
    StageOut::new(image, key)
}

/// The cache key of a filesystem that is `image`'s layers.
pub(super) fn image_key(image: &Image, platform: &Platform) -> key::CacheKey {
    let diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
    key::base_image(&diff_ids, platform)
}

/// An image from a named context: `oci-layout://DIR[:TAG|@DIGEST]` or `docker-image://REF`.
pub(super) fn named_context_image(
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

/// Adds the default `PATH` to a base's config that has none (BuildKit: "make sure that PATH is
/// always set"); Windows bases are left to the OS, as BuildKit does since v0.15.
pub(super) fn ensure_path(config: &mut ImageConfig, platform: &Platform) {
    let mut env = crate::plan::scope::EnvList(config.env_pairs());
    let before = env.0.len();
    crate::plan::with_default_path(&mut env, platform);
    if env.0.len() != before {
        config.set_env_pairs(&env.0);
    }
}
