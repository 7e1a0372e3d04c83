//! The builder: walks a [`Plan`] stage by stage, turning each step into image config changes and
//! layers in the store. Stages are built in plan order (dependencies first); a stage's filesystem
//! is known from its layers' headers ([`FsIndex`](crate::layer::index::FsIndex)) and materialised
//! on disk only when another stage copies from it.

mod cached;
mod config;
mod copy;
mod copy_step;
mod fetch;
pub mod progress;
mod rootfs;
mod run;
mod stage;
pub mod users;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

pub use copy::{CopyError, apply_chmod, resolve_in_root};
pub use progress::{Event, Reporter};
pub use run::{DEFAULT_PATH, SecretSource};

use crate::context::Context;
use crate::digest::Digest;
use crate::dockerfile::instructions::Dockerfile;
use crate::dockerfile::{Diagnostic, Pos};
use crate::image::manifest::Image;
use crate::layer::Compression;
use crate::plan::Plan;
use crate::store::Store;

/// How the builder keeps the layers it makes unless its outputs want them compressed
/// ([`Options::compress_for`]): uncompressed, so a local build never waits for gzip
/// (BuildKit's snapshotter does the same); outputs that need compressed layers compress them
/// once, when they are written ([`crate::layer::compress`]).
pub const LOCAL: Compression = Compression::None;

/// The epoch used when `SOURCE_DATE_EPOCH` is not set: 1980-01-01T00:00:00Z. Image and history
/// timestamps are this, and file times in new layers are clamped to it, so an image depends on
/// content only. Not the Unix epoch: ZIP (and so jars, wheels, Python's `zipfile`) cannot store a
/// time before 1980, and a later step that zips copied files would fail. See
/// `docs/REPRODUCIBILITY.md`.
pub const DEFAULT_EPOCH: i64 = 315_532_800;

/// Build settings that are not part of the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `SOURCE_DATE_EPOCH`: timestamps in the config and history, and the clamp for file mtimes
    /// ([`DEFAULT_EPOCH`] when unset; see [`Options::epoch`]).
    pub source_date_epoch: Option<i64>,
    /// `rewrite-timestamp=false` on the outputs: file times in new layers are left as they are
    /// instead of being clamped to the epoch (the image is then not reproducible).
    pub keep_file_times: bool,
    /// `--label`s for the final image.
    pub labels: BTreeMap<String, String>,
    /// `--isolation`.
    pub isolation: crate::sandbox::Isolation,
    /// `--secret`s by id.
    pub secrets: BTreeMap<String, SecretSource>,
    /// `--ssh` agent sockets by id.
    pub ssh: BTreeMap<String, std::path::PathBuf>,
    /// `--no-cache`: run every step (results are still recorded).
    pub no_cache: bool,
    /// `--no-cache-filter`: run every step of these stages (names, as BuildKit matches them:
    /// case-insensitively).
    pub no_cache_filter: Vec<String>,
    /// The compression and level every image output asks for, when they agree (OCI and docker
    /// archives, pushes). New layers are then made in it instead of [`LOCAL`]: each is read,
    /// hashed and written once, as it is made, instead of written plain and read back at export
    /// to be compressed. A later build that finds them in the cache uses them as they are.
    pub compress_for: Option<crate::layer::Codec>,
}

impl Options {
    /// The build's epoch: `SOURCE_DATE_EPOCH`, else [`DEFAULT_EPOCH`]. Image and history
    /// timestamps, and the time of files the builder makes itself (WORKDIR, heredocs, parents).
    pub fn epoch(&self) -> i64 {
        self.source_date_epoch.unwrap_or(DEFAULT_EPOCH)
    }

    /// The compression new layers are made in: [`Options::compress_for`], else [`LOCAL`].
    pub fn layer_codec(&self) -> crate::layer::Codec {
        self.compress_for.unwrap_or(crate::layer::Codec::from(LOCAL))
    }

    /// The latest file time new layers may hold: the epoch, or none with `rewrite-timestamp=false`.
    /// An input of every step's cache key.
    pub fn clamp(&self) -> Option<i64> {
        (!self.keep_file_times).then(|| self.epoch())
    }
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile or context asks for something impossible (exit 1).
    #[error("{0}")]
    Input(Diagnostic),
    /// A feature that is not built yet (exit 2).
    #[error("{0}")]
    NotSupported(Diagnostic),
    /// The machine cannot do what the step needs (no user namespaces, no overlayfs…); exit 2.
    #[error("{0}")]
    Environment(Diagnostic),
    /// Store, I/O or other internal failure (exit 2).
    #[error("{0}")]
    Internal(String),
    /// Not run: a stage built at the same time failed (that failure is the one reported).
    #[error("cancelled: another stage failed")]
    Cancelled,
}

impl BuildError {
    /// The diagnostic to render, if the error points into the Dockerfile.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            BuildError::Input(d) | BuildError::NotSupported(d) | BuildError::Environment(d) => Some(d),
            BuildError::Internal(_) | BuildError::Cancelled => None,
        }
    }
}

impl From<crate::store::StoreError> for BuildError {
    fn from(e: crate::store::StoreError) -> Self {
        BuildError::Internal(e.to_string())
    }
}

impl From<crate::image::manifest::ImageError> for BuildError {
    fn from(e: crate::image::manifest::ImageError) -> Self {
        BuildError::Internal(e.to_string())
    }
}

impl From<std::io::Error> for BuildError {
    fn from(e: std::io::Error) -> Self {
        BuildError::Internal(e.to_string())
    }
}

/// Everything a build reads.
pub struct Builder<'a> {
    /// Where blobs go.
    pub store: &'a Store,
    /// The typed Dockerfile (for messages).
    pub dockerfile: &'a Dockerfile,
    /// The plan to execute.
    pub plan: &'a Plan,
    /// The build context.
    pub context: &'a Context,
    /// Settings.
    pub options: Options,
    /// Progress events go here.
    pub reporter: &'a dyn Reporter,
    /// Base images (layouts and registries).
    pub bases: &'a Bases<'a>,
    /// Temporary directories to remove when the build ends.
    pub temps: Mutex<Vec<std::path::PathBuf>>,
    /// Whole stage trees extracted for `COPY --from` (most copies extract only what they read).
    pub whole_trees: std::sync::atomic::AtomicUsize,
    /// Idle sandbox helpers: a RUN takes one (or starts one) and gives it back, so stages that
    /// run at the same time each have their own.
    pub sandboxes: Mutex<Vec<crate::sandbox::Sandbox>>,
    /// What runs RUN steps instead of the sandbox helper (the builder's tests put a fake here).
    pub executor: Mutex<Option<Box<dyn crate::sandbox::Executor + Send>>>,
    /// The build context as RUN bind mounts see it (`.dockerignore` applied), made on first use.
    pub mount_context: std::sync::OnceLock<String>,
    /// Content digests of context files, with the store's stat cache.
    pub sums: crate::context::checksum::FileSums,
    /// Records imported from `--cache-from`.
    pub imported: crate::cache::remote::Imported,
    /// Every step result this build used (hits and runs), for `--cache-to`.
    pub used: Mutex<Vec<crate::cache::remote::Used>>,
    /// New versions of layers made in this build (changed COPYs), for the sandbox's snapshots.
    pub successors: Mutex<Vec<crate::sandbox::protocol::Successor>>,
    /// `ADD <url>` downloads made in this build, by URL and checksum.
    pub fetched: Mutex<std::collections::HashMap<(String, Option<String>), fetch::Fetched>>,
    /// An archive output written as the image's layers are made (see [`crate::export::spool`]):
    /// RUN steps of the image's stages copy their blob into it.
    pub spool: Mutex<Option<crate::export::spool::Spool>>,
    /// The isolation line was printed (once per build, however many helpers start).
    said_isolation: std::sync::atomic::AtomicBool,
    /// A stage failed: stages built at the same time start no further step (BuildKit cancels
    /// them too), so the failure is reported without waiting for their remaining steps.
    failed: std::sync::atomic::AtomicBool,
}

/// Locks `m`; a panic in another stage's thread does not hide its data from the error path.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<'a> Builder<'a> {
    /// A builder for `plan`; its run-time state (sandbox, downloads, the context stat cache kept
    /// in `store`) starts empty. Set `imported` for `--cache-from`, and `executor` to run RUN
    /// steps without the sandbox (tests).
    pub fn new(
        store: &'a Store,
        dockerfile: &'a Dockerfile,
        plan: &'a Plan,
        context: &'a Context,
        options: Options,
        reporter: &'a dyn Reporter,
        bases: &'a Bases<'a>,
    ) -> Builder<'a> {
        Builder {
            store,
            dockerfile,
            plan,
            context,
            options,
            reporter,
            bases,
            temps: Default::default(),
            whole_trees: Default::default(),
            sandboxes: Default::default(),
            executor: Default::default(),
            mount_context: Default::default(),
            sums: crate::context::checksum::FileSums::load(store),
            imported: Default::default(),
            used: Default::default(),
            fetched: Default::default(),
            successors: Default::default(),
            spool: Default::default(),
            said_isolation: Default::default(),
            failed: Default::default(),
        }
    }
}

impl Drop for Builder<'_> {
    fn drop(&mut self) {
        for dir in lock(&self.temps).drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Builder<'_> {
    /// Builds the target stage and returns its image (layers and config stored; the manifest is
    /// written by the caller's export).
    pub fn build(&self) -> Result<Image, BuildError> {
        let mut done: Vec<Option<rootfs::StageOut>> = vec![None; self.plan.stages.len()];
        for wave in self.waves() {
            if let [i] = wave[..] {
                let out = stage::build_stage(self, i, &mut done)?;
                done[i] = Some(out);
                continue;
            }
            // Independent stages at the same time, each on its own thread with its own view of
            // the stages built so far (and its own sandbox helper when it runs steps).
            let results: Vec<(usize, Result<rootfs::StageOut, BuildError>)> = std::thread::scope(|s| {
                let running: Vec<_> = wave
                    .iter()
                    .map(|&i| {
                        let mut mine = done.clone();
                        (i, s.spawn(move || stage::build_stage(self, i, &mut mine)))
                    })
                    .collect();
                running
                    .into_iter()
                    .map(|(i, h)| {
                        let r = h.join().unwrap_or_else(|_| {
                            Err(BuildError::Internal(format!("building stage {i} panicked")))
                        });
                        (i, r)
                    })
                    .collect()
            });
            // The failure itself, not a stage it cancelled.
            let mut cancelled = None;
            for (i, r) in results {
                match r {
                    Ok(out) => done[i] = Some(out),
                    Err(BuildError::Cancelled) => cancelled = Some(BuildError::Cancelled),
                    Err(e) => return Err(e),
                }
            }
            if let Some(e) = cancelled {
                return Err(e);
            }
        }
        // Steps of parallel stages were recorded as they finished: in stage order, a remote cache
        // export is the same whatever the timing.
        lock(&self.used).sort_by_key(|u| u.stage);
        if let Err(e) = self.sums.save() {
            self.reporter.event(&Event::Warning(&format!("the context checksum cache was not saved: {e}")));
        }
        let target = done
            .get_mut(self.plan.target)
            .and_then(Option::take)
            .ok_or_else(|| BuildError::Internal("the target stage was not built".into()))?;
        let mut image = target.image;
        if !self.options.labels.is_empty() {
            let labels = image.config.config.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(self.options.labels.clone());
        }
        Ok(image)
    }

    /// The needed stages in waves, in build order: a wave's stages depend only on earlier waves',
    /// so they may be built at the same time; at most as many per wave as the machine has cores.
    fn waves(&self) -> Vec<Vec<usize>> {
        let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let mut level = vec![0usize; self.plan.stages.len()];
        let mut waves: Vec<Vec<usize>> = Vec::new();
        for &i in &self.plan.order {
            let l = self.plan.stages[i]
                .deps
                .iter()
                .map(|&d| level.get(d).map_or(0, |l| l + 1))
                .max()
                .unwrap_or(0);
            level[i] = l;
            if waves.len() <= l {
                waves.resize(l + 1, Vec::new());
            }
            waves[l].push(i);
        }
        waves
            .into_iter()
            .flat_map(|w| w.chunks(jobs.max(1)).map(<[usize]>::to_vec).collect::<Vec<_>>())
            .collect()
    }

    /// Whether steps of stage `sp` may be taken from the cache.
    fn use_cache(&self, sp: &crate::plan::StagePlan) -> bool {
        let name = sp.name.as_deref().unwrap_or_default();
        !self.options.no_cache && !self.options.no_cache_filter.iter().any(|f| f.eq_ignore_ascii_case(name))
    }

    /// Downloads `url` once per build.
    fn fetch(&self, url: &str, checksum: Option<&str>) -> Result<fetch::Fetched, String> {
        let key = (url.to_string(), checksum.map(str::to_string));
        if let Some(f) = lock(&self.fetched).get(&key) {
            return Ok(f.clone());
        }
        let f = fetch::fetch(self.store, url, checksum)?;
        lock(&self.fetched).insert(key, f.clone());
        Ok(f)
    }

    /// The stages the target image's layers come from: the target and the stages it is built
    /// `FROM`, transitively (what `--cache-to …,mode=min` exports).
    pub fn image_stages(&self) -> std::collections::HashSet<usize> {
        let mut out = std::collections::HashSet::new();
        let mut i = self.plan.target;
        while out.insert(i) {
            match self.plan.stages[i].base {
                crate::plan::Source::Stage(j) => i = j,
                _ => break,
            }
        }
        out
    }

    /// Runs `f` with an idle sandbox helper, starting one when none is idle (the first start
    /// says which isolation it chose), and keeps the helper for the next step.
    fn with_sandbox<R>(
        &self,
        f: impl FnOnce(&mut crate::sandbox::Sandbox) -> R,
    ) -> Result<R, crate::sandbox::SandboxError> {
        let idle = lock(&self.sandboxes).pop();
        let mut sb = match idle {
            Some(sb) => sb,
            None => {
                let spool = lock(&self.spool);
                let tee = spool.as_ref().map(|s| std::os::fd::AsFd::as_fd(s.file()));
                let sb = crate::sandbox::Sandbox::start_with(self.store.root(), self.options.isolation, tee)?;
                drop(spool);
                if !self.said_isolation.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    if let Some(why) = &sb.chosen {
                        self.reporter.event(&Event::Note(&format!("isolation {why}")));
                    }
                    for w in &sb.warnings {
                        self.reporter.event(&Event::Warning(w));
                    }
                }
                sb
            }
        };
        let r = f(&mut sb);
        lock(&self.sandboxes).push(sb);
        Ok(r)
    }

    /// The contents of every cache mount the built stages' RUN steps use, each as a layer (for a
    /// remote cache with `cache-mounts=true`); mounts with nothing in them are left out.
    pub fn cache_mount_layers(&self) -> Result<Vec<(String, crate::image::manifest::Layer)>, String> {
        let mut keys = std::collections::BTreeSet::new();
        for &i in &self.plan.order {
            for step in &self.plan.stages[i].steps {
                if let crate::plan::Op::Run { mounts, .. } = &step.op {
                    keys.extend(mounts.iter().filter_map(|(m, _)| run::cache_mount_key(m)));
                }
            }
        }
        let mut out = Vec::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let compression = LOCAL.name();
        self.with_sandbox(|sandbox| {
            for key in keys {
                let exported = sandbox.export_cache(&key, compression, self.options.clamp());
                if let Some(l) = exported.map_err(|e| format!("cache mount {key}: {e}"))? {
                    out.push((key, l.to_layer().map_err(|e| e.to_string())?));
                }
            }
            Ok(out)
        })
        .map_err(|e| e.to_string())?
    }

    /// Removes `dir` when the build ends.
    pub fn keep_temp(&self, dir: std::path::PathBuf) {
        lock(&self.temps).push(dir);
    }

    /// The timestamp written into configs and history.
    pub fn created(&self) -> String {
        crate::image::config::rfc3339(self.options.epoch())
    }
}

/// Where base images come from: `oci-layout://DIR[:TAG|@DIGEST]` layouts (imported into the
/// store, every blob verified), images kept in the store under the name (as `docker build`
/// uses its image store; not with `pull`), and registry references (pulled, when a registry
/// client is given). Each image is resolved once per build; the planner asks for configs (so
/// ENV PATH=/x:$PATH sees the base's PATH) and the builder for the image itself.
///
/// A pull from a registry is in two parts, as BuildKit's: resolving (manifest and config)
/// happens when the planner asks, and the layers then come on a thread of their own, so the
/// build plans, loads its context and runs other stages meanwhile; a stage waits for its base's
/// layers at its `FROM` ([`image`](Bases::image)).
pub struct Bases<'a> {
    /// The store images are imported into.
    pub store: &'a Store,
    /// Registry access (None: registry references are refused); shared with the layer downloads.
    registry: Option<Arc<crate::registry::Registry>>,
    /// `--pull`: names always go to the registry, even when the store keeps an image so named.
    pub pull: bool,
    cache: Mutex<std::collections::HashMap<(String, String), Resolved>>,
    /// Layer downloads started by resolving, by manifest digest (two names for one image share one).
    layers: Mutex<std::collections::HashMap<Digest, Arc<LayerPull>>>,
}

/// The layers of one pulled image, coming on their own thread.
struct LayerPull {
    thread: Mutex<Option<std::thread::JoinHandle<Pulled>>>,
    result: OnceLock<Pulled>,
    /// A `FROM` has claimed showing this pull (stages on one base share BuildKit's vertex).
    shown: std::sync::atomic::AtomicBool,
}

/// The blobs a layer pull fetched, or why it failed.
type Pulled = Result<Vec<crate::registry::Fetched>, BaseError>;

impl LayerPull {
    /// Starts pulling `image`'s missing layers (it was resolved from `reference`).
    fn start(
        registry: Arc<crate::registry::Registry>,
        store: Store,
        reference: String,
        image: Image,
    ) -> LayerPull {
        let job = move || {
            registry
                .pull_layers(&store, &reference, &image)
                .map_err(|e| BaseError { message: e.to_string(), hint: e.hint() })
        };
        let pending = LayerPull {
            thread: Mutex::new(None),
            result: OnceLock::new(),
            shown: std::sync::atomic::AtomicBool::new(false),
        };
        match std::thread::Builder::new().name("pull-layers".into()).spawn(job.clone()) {
            Ok(handle) => *lock(&pending.thread) = Some(handle),
            // Without a thread to spare, the layers are pulled here and now.
            Err(_) => {
                let _ = pending.result.set(job());
            }
        }
        pending
    }

    /// Waits for the layers: the blobs fetched, once every one is in the store.
    fn wait(&self) -> &Pulled {
        self.result.get_or_init(|| match lock(&self.thread).take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err("pulling the layers failed unexpectedly".to_string().into()),
            None => Err("the layer pull never started".to_string().into()),
        })
    }
}

/// A base as a `FROM` uses it (see [`Bases::from`]).
pub struct BaseFrom {
    /// The reference as BuildKit's `FROM` line shows it.
    pub shown: String,
    resolved: Resolved,
    pull: Option<Arc<LayerPull>>,
    /// Whether this `FROM` shows the pull.
    pub claimed: bool,
}

impl BaseFrom {
    /// The image, once its layers are in the store, with the blobs this build pulled for it when
    /// this `FROM` [claimed](BaseFrom::claimed) the pull (none otherwise, and none when the
    /// image was in the store already or came from a layout).
    pub fn wait(self) -> Result<(Image, Vec<crate::registry::Fetched>), BaseError> {
        let (image, _) = self.resolved?;
        let fetched = match &self.pull {
            Some(pull) => pull.wait().clone()?,
            None => Vec::new(),
        };
        Ok((image, if self.claimed { fetched } else { Vec::new() }))
    }
}

/// A resolved base: the image and, for a name, the manifest digest it resolved to.
type Resolved = Result<(Image, Option<Digest>), BaseError>;

/// Why a base image could not be had, and what to do about it when the registry's answer says
/// (`hako login …`).
#[derive(Debug, Clone)]
pub struct BaseError {
    /// What failed.
    pub message: String,
    /// A `hint:` line for the diagnostic.
    pub hint: Option<String>,
}

impl std::fmt::Display for BaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for BaseError {
    fn from(message: String) -> Self {
        BaseError { message, hint: None }
    }
}

impl BaseError {
    /// `diagnostic` with this error's hint, if any, else `otherwise`.
    pub fn hinted(&self, diagnostic: Diagnostic, otherwise: Option<String>) -> Diagnostic {
        match self.hint.clone().or(otherwise) {
            Some(h) => diagnostic.with_hint(h),
            None => diagnostic,
        }
    }

    /// A located input error saying `message`, with this error's hint.
    pub fn input_error(&self, message: String, pos: Pos) -> BuildError {
        BuildError::Input(self.hinted(Diagnostic::new(message, pos), None))
    }
}

impl<'a> Bases<'a> {
    /// A resolver over `store` and, optionally, registries.
    pub fn new(store: &'a Store, registry: Option<Arc<crate::registry::Registry>>) -> Bases<'a> {
        Bases { store, registry, pull: false, cache: Default::default(), layers: Default::default() }
    }

    /// Registry access, if any.
    pub fn registry(&self) -> Option<&crate::registry::Registry> {
        self.registry.as_deref()
    }

    /// The image `reference` names for `platform`, with its layers in the store (waiting for a
    /// pull under way to end).
    pub fn image(&self, reference: &str, platform: &crate::plan::Platform) -> Result<Image, BaseError> {
        self.base(reference, platform, false).wait().map(|(image, _)| image)
    }

    /// A `FROM reference`: resolved once, shown as BuildKit shows it, and its layers waited for
    /// by [`BaseFrom::wait`]. The first `FROM` of a base this build pulls claims the pull: it
    /// shows `resolve …` and the blobs that come, as BuildKit's vertex does once for all the
    /// stages on that base.
    pub fn from(&self, reference: &str, platform: &crate::plan::Platform) -> BaseFrom {
        self.base(reference, platform, true)
    }

    /// [`from`](Bases::from), claiming the pull only when `claim`.
    fn base(&self, reference: &str, platform: &crate::plan::Platform, claim: bool) -> BaseFrom {
        let resolved = self.resolve(reference, platform);
        let digest = resolved.as_ref().ok().and_then(|(_, d)| d.clone());
        let bare = reference.strip_prefix("docker-image://").unwrap_or(reference);
        // The fully qualified name with the manifest digest it resolved to
        // (`docker.io/library/busybox:latest@sha256:…`); a layout reference as written.
        let shown = match (crate::image::reference::ImageName::parse(bare), &digest) {
            (Ok(name), Some(d)) if name.digest().is_none() => format!("{}@{d}", name.full()),
            (Ok(name), _) => name.full(),
            (Err(_), _) => reference.to_string(),
        };
        let pull = self.pull_of(digest);
        let claimed =
            claim && pull.as_ref().is_some_and(|p| !p.shown.swap(true, std::sync::atomic::Ordering::SeqCst));
        BaseFrom { shown, resolved, pull, claimed }
    }

    fn pull_of(&self, digest: Option<Digest>) -> Option<Arc<LayerPull>> {
        digest.and_then(|d| lock(&self.layers).get(&d).cloned())
    }

    /// The image `reference` names for `platform`, its layers perhaps still coming: enough for
    /// what needs only its manifest and config (cache keys use the config's diff ids).
    pub fn metadata(&self, reference: &str, platform: &crate::plan::Platform) -> Result<Image, BaseError> {
        self.resolve(reference, platform).map(|(image, _)| image)
    }

    /// The image and, for a name (kept or pulled), the manifest digest it resolved to.
    fn resolve(&self, reference: &str, platform: &crate::plan::Platform) -> Resolved {
        let key = (reference.to_string(), platform.to_string());
        if let Some(hit) = lock(&self.cache).get(&key) {
            return hit.clone();
        }
        let result = if let Some(rest) = reference.strip_prefix("oci-layout://") {
            let (dir, tag) = stage::split_layout_ref(rest);
            crate::image::manifest::import_layout(self.store, std::path::Path::new(dir), tag, platform)
                .map(|(image, _)| (image, None))
                .map_err(|e| BaseError::from(e.to_string()))
        } else {
            let reference = reference.strip_prefix("docker-image://").unwrap_or(reference);
            let kept = if self.pull {
                Ok(None)
            } else {
                crate::image::stored::base(self.store, reference, platform).map_err(|e| e.to_string())
            };
            match (kept, &self.registry) {
                (Ok(Some((image, digest))), _) => Ok((image, Some(digest))),
                (Err(e), _) => Err(format!("{reference} (kept in the store): {e}").into()),
                (Ok(None), Some(r)) => match r.pull_config(self.store, reference, platform) {
                    Ok((image, digest)) => {
                        lock(&self.layers).entry(digest.clone()).or_insert_with(|| {
                            Arc::new(LayerPull::start(
                                Arc::clone(r),
                                self.store.clone(),
                                reference.into(),
                                image.clone(),
                            ))
                        });
                        Ok((image, Some(digest)))
                    }
                    Err(e) => Err(BaseError { message: e.to_string(), hint: e.hint() }),
                },
                (Ok(None), None) => Err(format!("{reference}: registry access is off").into()),
            }
        };
        lock(&self.cache).insert(key, result.clone());
        result
    }
}

impl crate::plan::BaseImages for Bases<'_> {
    fn config(&self, reference: &str, platform: &crate::plan::Platform) -> crate::plan::StageState {
        let mut state = crate::plan::StageState::default();
        // A base that cannot be resolved fails later, at its FROM, with the reason.
        let Ok(image) = self.metadata(reference, platform) else { return state };
        let c = &image.config.config;
        state.env = crate::plan::scope::EnvList(image.config.env_pairs());
        if let Some(w) = c.working_dir.as_ref().filter(|w| !w.is_empty()) {
            state.workdir = w.clone();
        }
        state.user = c.user.clone().unwrap_or_default();
        if let Some(sh) = &c.shell {
            state.shell = sh.clone();
        }
        state.onbuild = c.on_build.clone().unwrap_or_default();
        state
    }
}

/// A located input error.
pub fn input_error(message: impl Into<String>, pos: Pos) -> BuildError {
    BuildError::Input(Diagnostic::new(message, pos))
}

#[cfg(test)]
mod tests;
