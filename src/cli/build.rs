//! `hako build`: reads the Dockerfile and context, plans, builds, and writes the outputs.
//! Options whose feature is not built yet are refused, never ignored.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::{BuildArgs, Failure, ProgressMode, interrupt, print_stdout, progress};
use crate::build::{BuildError, Builder, Event, Reporter};
use crate::cache::remote::{self, Target};
use crate::context::Context;
use crate::dockerfile::instructions::from_ast;
use crate::dockerfile::{Diagnostic, Warning, parse_bytes};
use crate::export::spec::{OutputSpec, parse_output};
use crate::layer::compress::ExportCompression;
use crate::plan::{self, Platform};
use crate::store::Store;

/// Runs `hako build`. With JSON progress a failure is printed here as one JSON event, so that
/// nothing but JSON reaches stderr (the exit status is unchanged).
pub fn run(args: BuildArgs) -> Result<(), Failure> {
    let mode = if args.quiet { ProgressMode::Quiet } else { args.progress };
    let reporter: std::sync::Arc<dyn Reporter + Send> = progress::reporter(mode).into();
    interrupt::watch(reporter.clone(), progress::is_json(mode));
    let result = build(args, reporter.as_ref());
    if interrupt::canceled() {
        // A signal stopped it (the steps failed as their processes got it too): its thread
        // reports that and ends the process.
        interrupt::wait_for_the_end();
    }
    reporter.finish();
    match result {
        Err(f) if progress::is_json(mode) && !f.text.is_empty() => {
            let _ = std::io::stderr().write_all(progress::failure_json(&f).as_bytes());
            Err(Failure { text: String::new(), code: f.code })
        }
        r => r,
    }
}

/// The build, reporting to `reporter`; every message of it goes there (or is the failure).
fn build(args: BuildArgs, reporter: &dyn Reporter) -> Result<(), Failure> {
    refuse_unbuilt(&args)?;
    super::buildx::attestations(&args)?;
    let annotations = super::buildx::annotations(&args)?;
    // Found before building: a build that cannot be loaded fails now, not at its end.
    let load = if args.load && !args.dry_run && !args.check {
        Some(crate::export::load::find_engine().map_err(|e| {
            Failure::usage(format!(
                "error: --load: {e}\nhint: start Docker or install podman, or write an archive with -o type=docker,dest=FILE"
            ))
        })?)
    } else {
        None
    };
    let check_only = match args.call.as_deref() {
        None | Some("build") => args.check,
        Some("check") => true,
        Some(other) => {
            return Err(Failure::not_supported(&format!("--call={other} (hako knows build and check)")));
        }
    };
    let cache_from = cache_specs(&args.cache_from, false)?;
    let cache_to = cache_specs(&args.cache_to, true)?;
    let outputs = outputs(&args)?;
    let annotations = manifest_annotations(annotations, &outputs)?;
    let pushes = push_names(&args, &outputs)?;
    let mut options = plan_options(&args)?;
    // A dry run or a check builds nothing: no steps to show, only findings and errors.
    let building = !args.dry_run && !check_only;
    let input = read_input(&args)?;
    if building {
        // Started once read: a Dockerfile that cannot be read is the failure's message alone.
        let definition = format!("[internal] load build definition from {}", file_name(&args.file));
        reporter.event(&Event::Task { name: &definition });
        let size =
            format!("transferring dockerfile: {} done", progress::go_size(input.dockerfile.len() as u64));
        reporter.event(&Event::TaskStatus { name: &definition, text: &size });
        reporter.event(&Event::TaskDone { name: &definition });
    }
    let source = String::from_utf8_lossy(&input.dockerfile).into_owned();
    // A located error: the input's fault (exit 1), or a feature not built yet (exit 2).
    let located = |d: Diagnostic| {
        let text = format!("error: {}", d.render(&input.name, &source));
        if d.message.starts_with("not supported yet") { Failure::usage(text) } else { Failure::user(text) }
    };
    let ast = parse_bytes(&input.dockerfile).map_err(located)?;
    let mut df = from_ast(&ast, &source).map_err(located)?;
    // BuildKit's frontend reads its check options from this build arg (replacing `# check=`);
    // it is not an ARG of the Dockerfile.
    if let Some(v) = options.build_args.remove("BUILDKIT_DOCKERFILE_CHECK") {
        df.checks = crate::dockerfile::checks::Config::parse(&v).map_err(|e| {
            Failure::usage(format!("error: failed to parse build-arg:BUILDKIT_DOCKERFILE_CHECK: {e}"))
        })?;
    }
    print_warnings(reporter, &input.name, &df.warnings);
    if check_only {
        let plan = plan::plan(&df, &options, &plan::Unresolved).map_err(located)?;
        return check_report(&input.name, &source, &df, &plan.warnings);
    }

    // A real build knows its base images (so `$PATH` in ENV expands against the base's PATH); a
    // dry run reads nothing and treats bases as empty.
    let store = if args.dry_run { None } else { Some(open_store(&args)?) };
    // Held while the build runs (base images are imported while planning): `hako prune` must not
    // remove a blob before the record or image that needs it is written.
    let _build_lock = match &store {
        Some(s) => Some(
            crate::store::Lock::shared(&s.root().join("locks/build"))
                .map_err(|e| Failure::usage(format!("error: {e}")))?,
        ),
        None => None,
    };
    let registry = super::registry_config(&args.registry_mirrors, &args.insecure_registries)?;
    let registry = std::sync::Arc::new(
        crate::registry::Registry::new(registry).map_err(|e| Failure::usage(format!("error: {e}")))?,
    );
    let bases = store.as_ref().map(|s| {
        let mut bases = crate::build::Bases::new(s, Some(std::sync::Arc::clone(&registry)));
        bases.pull = args.pull;
        bases
    });
    let plan = match &bases {
        Some(bases) => plan::plan(&df, &options, &Metadata { bases, reporter, seen: Default::default() }),
        None => plan::plan(&df, &options, &plan::Unresolved),
    }
    .map_err(|d| {
        print_checks(reporter, &df.checks.findings(&df.warnings));
        located(d)
    })?;
    let findings = df.checks.findings(df.warnings.iter().chain(&plan.warnings));
    print_checks(reporter, &findings);
    if df.checks.error && !findings.is_empty() {
        return Err(lint_violation(&findings));
    }
    if !plan.unused_build_args.is_empty() {
        reporter.event(&Event::Warning(&format!(
            "build-arg {} {} not consumed by any ARG in the Dockerfile",
            plan.unused_build_args.join(", "),
            if plan.unused_build_args.len() == 1 { "was" } else { "were" }
        )));
    }
    if args.dry_run {
        return print_stdout(&plan.to_string());
    }

    let (Some(store), Some(bases)) = (store.as_ref(), bases.as_ref()) else {
        return Err(Failure::usage("error: no store"));
    };
    let ignore_task = "[internal] load .dockerignore";
    reporter.event(&Event::Task { name: ignore_task });
    let ignore_file = input.context.ignore_file();
    let context = input.context.into_context(store)?;
    let ignore_size = ignore_file.and_then(|f| std::fs::metadata(f).ok()).map_or(0, |m| m.len());
    let text = format!("transferring context: {} done", progress::go_size(ignore_size));
    reporter.event(&Event::TaskStatus { name: ignore_task, text: &text });
    reporter.event(&Event::TaskDone { name: ignore_task });
    let context_task = "[internal] load build context";
    reporter.event(&Event::Task { name: context_task });
    let text = format!("transferring context: {} done", progress::go_size(context_size(&context)));
    reporter.event(&Event::TaskStatus { name: context_task, text: &text });
    reporter.event(&Event::TaskDone { name: context_task });
    let build_options = crate::build::Options {
        source_date_epoch: source_date_epoch(&options)?,
        keep_file_times: keep_file_times(&outputs)?,
        labels: labels(&args)?,
        isolation: isolation(args.isolation),
        secrets: secrets(&args.secrets)?,
        ssh: ssh(&args.ssh)?,
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        compress_for: compress_for(&outputs, &pushes),
    };
    let spool = spool(&outputs, build_options.layer_codec());
    let mut builder = Builder::new(store, &df, &plan, &context, build_options, reporter, bases);
    builder.imported = import_caches(reporter, store, &registry, &cache_from);
    builder.spool = std::sync::Mutex::new(spool);
    let built = builder.build();
    let image = built.map_err(|e| match &e {
        BuildError::Input(d) => located(d.clone()),
        BuildError::NotSupported(d) => Failure::usage(format!("error: {}", d.render(&input.name, &source))),
        BuildError::Environment(d) => Failure::usage(format!("error: {}", d.render(&input.name, &source))),
        BuildError::Internal(msg) => Failure::usage(format!("error: {msg}")),
        BuildError::Cancelled => Failure::usage("error: the build was cancelled".to_string()),
    })?;
    deliver(
        &args,
        &builder,
        image,
        &Delivery {
            outputs: &outputs,
            pushes: &pushes,
            cache_to: &cache_to,
            annotations: &annotations,
            load: load.as_ref(),
        },
        &registry,
    )
}

/// The planner's view of base images, reporting each image it resolves as BuildKit's
/// `[internal] load metadata for REF` step.
struct Metadata<'a> {
    bases: &'a crate::build::Bases<'a>,
    reporter: &'a dyn Reporter,
    seen: std::cell::RefCell<std::collections::HashSet<String>>,
}

impl plan::BaseImages for Metadata<'_> {
    fn config(&self, reference: &str, platform: &Platform) -> plan::StageState {
        if !self.seen.borrow_mut().insert(reference.to_string()) {
            return self.bases.config(reference, platform);
        }
        let name = format!("[internal] load metadata for {reference}");
        self.reporter.event(&Event::Task { name: &name });
        let state = self.bases.config(reference, platform);
        self.reporter.event(&Event::TaskDone { name: &name });
        state
    }
}

/// The size of the files in the build context that `.dockerignore` keeps (what BuildKit would
/// transfer; hako reads them in place). A stat walk, without following symlinks.
fn context_size(context: &Context) -> u64 {
    let ignore = context.ignore();
    let mut total = 0;
    let mut dirs = vec![(context.root().to_path_buf(), String::new())];
    while let Some((dir, rel)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let rel = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            let Ok(meta) = entry.metadata() else { continue };
            let excluded = ignore.is_some_and(|m| m.is_excluded(&rel).unwrap_or(false));
            if meta.is_dir() {
                if !(excluded && ignore.is_some_and(|m| m.can_skip_dir(&rel))) {
                    dirs.push((entry.path(), rel));
                }
            } else if !excluded {
                total += meta.len();
            }
        }
    }
    total
}

/// `docker.io/library/app:1` for `app:1`, as BuildKit's `naming to` shows names.
fn full_name(name: &str) -> String {
    crate::image::reference::ImageName::parse(name).map_or_else(|_| name.to_string(), |n| n.full())
}

/// The Dockerfile's file name as BuildKit names it in `load build definition from …`.
fn file_name(file: &Option<String>) -> String {
    match file.as_deref() {
        None | Some("-") => "Dockerfile".to_string(),
        Some(f) => {
            Path::new(f).file_name().map_or_else(|| f.to_string(), |n| n.to_string_lossy().into_owned())
        }
    }
}

/// What a build's result goes to.
struct Delivery<'a> {
    outputs: &'a [OutputSpec],
    /// The names to push, each with the compression its output asks for.
    pushes: &'a [(String, ExportCompression)],
    cache_to: &'a [remote::CacheSpec],
    /// `--annotation`s of the manifest.
    annotations: &'a BTreeMap<String, String>,
    /// `--load`: the engine to load the image into.
    load: Option<&'a crate::export::load::Engine>,
}

/// Writes the built image, its tags, outputs, pushes, cache exports, `--iidfile` and
/// `--metadata-file`.
fn deliver(
    args: &BuildArgs,
    builder: &Builder<'_>,
    image: crate::image::manifest::Image,
    to: &Delivery<'_>,
    registry: &crate::registry::Registry,
) -> Result<(), Failure> {
    let store = builder.store;
    let reporter = builder.reporter;
    let root = store.root().to_path_buf();
    let (outputs, pushes, cache_to) = (to.outputs, to.pushes, to.cache_to);
    let mut image = image;
    // One vertex per exporter, named as BuildKit names it; the image written to the store (and
    // compressed for the first output or push that ships it) is reported in the first.
    let first = outputs.first().map_or(IMAGE_VERTEX, exporter_vertex);
    reporter.event(&Event::Task { name: first });
    let mut image_open = first == IMAGE_VERTEX;
    let say = |name: &str, text: String| reporter.event(&Event::TaskStatus { name, text: &text });
    // Which compression "the" image has (the digest printed and in `--metadata-file`): the
    // first push's, else the first archive's; none when nothing ships compressed layers.
    let primary = pushes.first().map(|(_, c)| *c).or_else(|| {
        outputs
            .iter()
            .find(|o| matches!(o, OutputSpec::Oci { .. } | OutputSpec::Docker { .. }))?
            .compression()
    });
    if cache_to.iter().any(|c| c.target == Target::Inline) {
        inline_cache(builder, &mut image, primary.unwrap_or_default());
    }
    let started = std::time::Instant::now();
    let written = image
        .write_annotated(store, to.annotations)
        .map_err(|e| Failure::usage(format!("error: writing the image: {e}")))?;
    // The store keeps the image as built (uncompressed layers); archives and registries get it
    // with compressed layers, as each asks, each layer compressed once per compression and level.
    let mut shipped = Shipped { store, image: &image, annotations: to.annotations, made: Vec::new() };
    let (shipped_descriptor, size) = match primary {
        Some(c) => shipped.get(c).map(|(w, size)| (w.manifest.clone(), size))?,
        None => (written.manifest.clone(), image.layers.iter().map(|l| l.size).sum()),
    };
    say(
        first,
        format!(
            "exporting layers ({} layers, {}) {:.1}s done",
            image.layers.len(),
            progress::go_size(size),
            started.elapsed().as_secs_f64()
        ),
    );
    if first == IMAGE_VERTEX {
        say(first, format!("writing image {} done", written.config_digest));
    }
    for tag in &args.tags {
        // Kept under Docker's familiar name (`app` as `app:latest`), so any spelling finds it.
        let name = crate::image::stored::store_name(tag)
            .map_err(|e| Failure::usage(format!("error: -t {tag}: {e}")))?;
        store
            .tag(&name, &written.manifest)
            .map_err(|e| Failure::usage(format!("error: tagging {tag}: {e}")))?;
        say(first, format!("naming to {} done", full_name(tag)));
    }
    let digest = shipped_descriptor.digest().to_string();
    for (i, out) in outputs.iter().enumerate() {
        let vertex = exporter_vertex(out);
        if i > 0 {
            reporter.event(&Event::Task { name: vertex });
        }
        image_open |= vertex == IMAGE_VERTEX;
        let clamp = builder.options.clamp();
        let manifest = match out {
            OutputSpec::Oci { compression, .. } | OutputSpec::Docker { compression, .. } => {
                let (w, _) = shipped.get(*compression)?;
                say(vertex, format!("exporting manifest {} done", w.manifest.digest()));
                say(vertex, format!("exporting config {} done", w.config_digest));
                w.manifest.clone()
            }
            _ => written.manifest.clone(),
        };
        let started = std::time::Instant::now();
        let spool = {
            let mut s = crate::build::lock(&builder.spool);
            s.take_if(|s| out.archive_file() == Some(s.dest()))
        };
        crate::export::write::write_output(store, &manifest, &image, out, &args.tags, clamp, spool)
            .map_err(|e| Failure::usage(format!("error: writing the output: {e}")))?;
        let sending = match out {
            OutputSpec::Oci { tar: false, .. } | OutputSpec::Image { .. } | OutputSpec::Registry { .. } => {
                None
            }
            OutputSpec::Local { .. } => Some("copying files"),
            OutputSpec::Oci { .. } | OutputSpec::Docker { .. } | OutputSpec::Tar { .. } => {
                Some("sending tarball")
            }
        };
        if let Some(what) = sending {
            say(vertex, format!("{what} {:.1}s done", started.elapsed().as_secs_f64()));
        }
        if vertex != IMAGE_VERTEX {
            reporter.event(&Event::TaskDone { name: vertex });
        }
    }
    if (to.load.is_some() || !pushes.is_empty()) && !image_open {
        reporter.event(&Event::Task { name: IMAGE_VERTEX });
        image_open = true;
    }
    if let Some(engine) = to.load {
        let said = load_image(store, &written.manifest, &image, &args.tags, engine)?;
        reporter.event(&Event::Note(&said));
    }
    for (name, compression) in pushes {
        let started = std::time::Instant::now();
        let full = full_name(name);
        say(IMAGE_VERTEX, format!("pushing layers to {full}"));
        let (pushed, shipped_size) = shipped.get(*compression)?;
        let manifest = pushed.manifest.clone();
        registry.push(store, &manifest, name).map_err(|e| super::registry_failure(&e))?;
        say(
            IMAGE_VERTEX,
            format!(
                "pushing layers to {full} {} {:.1}s done",
                progress::go_size(shipped_size),
                started.elapsed().as_secs_f64()
            ),
        );
        say(IMAGE_VERTEX, format!("pushing manifest for {full}@{} done", manifest.digest()));
    }
    if image_open {
        reporter.event(&Event::TaskDone { name: IMAGE_VERTEX });
    }
    for spec in cache_to.iter().filter(|c| c.target != Target::Inline) {
        let stages =
            if spec.max { builder.plan.order.iter().copied().collect() } else { builder.image_stages() };
        let mut layers = Vec::new();
        let mut config =
            remote::records(&crate::build::lock(&builder.used), &stages, &mut layers, spec.compression.codec);
        if spec.cache_mounts {
            match builder.cache_mount_layers() {
                Ok(mounts) => remote::add_mounts(&mut config, &mut layers, mounts),
                Err(e) => {
                    reporter.event(&Event::Warning(&format!("cache mounts left out of the cache: {e}")))
                }
            }
        }
        let task = "exporting cache";
        reporter.event(&Event::Task { name: task });
        match remote::export(store, registry, spec, &config, &layers) {
            Ok(what) => {
                reporter.event(&Event::TaskStatus { name: task, text: &format!("exported {what} done") });
                reporter.event(&Event::TaskDone { name: task });
            }
            Err(e) if spec.ignore_error => {
                reporter.event(&Event::Warning(&format!("exporting the cache failed: {e}")));
                reporter.event(&Event::TaskDone { name: task });
            }
            Err(e) => {
                return Err(Failure::user(format!(
                    "error: exporting the cache: {e}\nhint: add ignore-error=true to --cache-to to keep going without it"
                )));
            }
        }
    }
    if let Some(path) = &args.iidfile {
        fs_err::write(path, written.config_digest.to_string())
            .map_err(|e| Failure::usage(format!("error: {e}")))?;
    }
    if let Some(path) = &args.metadata_file {
        let meta = super::metadata::metadata(
            &shipped_descriptor,
            &written.config_digest.to_string(),
            &args.tags,
            &super::metadata::build_ref(),
        );
        let text = serde_json::to_string_pretty(&meta)
            .map_err(|e| Failure::usage(format!("error: --metadata-file: {e}")))?;
        fs_err::write(path, text).map_err(|e| Failure::usage(format!("error: {e}")))?;
    }
    if outputs.is_empty() && !args.push {
        if args.tags.is_empty() {
            reporter.event(&Event::Note(&format!(
                "image kept in the store {} (untagged; give -t to name it)",
                root.display()
            )));
        } else {
            reporter.event(&Event::Note(&format!(
                "image kept in the store {} as {}",
                root.display(),
                args.tags.join(", ")
            )));
        }
    }
    reporter.event(&Event::Result {
        digest: &digest,
        config: &written.config_digest.to_string(),
        size,
        tags: &args.tags,
    });
    if outputs.is_empty() && !args.push {
        print_stdout(&format!("{digest}\n"))?;
    }
    Ok(())
}

/// `--load`: the image as a docker archive (layers as the store keeps them: the engine unpacks
/// them at once, so compressing would only cost time), handed to `engine`; returns what to say.
fn load_image(
    store: &Store,
    manifest: &oci_spec::image::Descriptor,
    image: &crate::image::manifest::Image,
    tags: &[String],
    engine: &crate::export::load::Engine,
) -> Result<String, Failure> {
    let failed = |e: String| Failure::usage(format!("error: --load: {e}"));
    let tmp = store.temp_dir("load-").map_err(|e| failed(e.to_string()))?;
    let archive = tmp.path().join("image.tar");
    let spec = OutputSpec::Docker {
        dest: Some(archive.clone()),
        name: None,
        compression: ExportCompression::default(),
        image: Default::default(),
    };
    crate::export::write::write_output(store, manifest, image, &spec, tags, None, None)
        .map_err(|e| failed(format!("writing the archive: {e}")))?;
    let said = crate::export::load::load(engine, &archive).map_err(|e| failed(e.to_string()))?;
    Ok(format!("loaded into {engine}{}", if said.is_empty() { String::new() } else { format!(": {said}") }))
}

fn open_store(args: &BuildArgs) -> Result<Store, Failure> {
    let root = store_root(args.root.as_deref())?;
    Store::open(&root)
        .map_err(|e| Failure::usage(format!("error: opening the store {}: {e}", root.display())))
}

/// The store directory: `--root`/`HAKO_ROOT`, else the default location.
pub fn store_root(root: Option<&Path>) -> Result<PathBuf, Failure> {
    root.map(Path::to_path_buf)
        .or_else(Store::default_root)
        .ok_or_else(|| Failure::usage("error: no store location: set --root, XDG_CACHE_HOME or HOME"))
}

/// `--cache-from` (`export` false) or `--cache-to` values.
fn cache_specs(values: &[String], export: bool) -> Result<Vec<remote::CacheSpec>, Failure> {
    let flag = if export { "--cache-to" } else { "--cache-from" };
    values
        .iter()
        .map(|v| remote::parse_spec(v, export).map_err(|e| Failure::usage(format!("error: {flag} {v}: {e}"))))
        .collect()
}

/// Reads the records of every `--cache-from` (warnings for those that cannot be read).
fn import_caches(
    reporter: &dyn Reporter,
    store: &Store,
    registry: &crate::registry::Registry,
    specs: &[remote::CacheSpec],
) -> remote::Imported {
    if specs.is_empty() {
        return remote::Imported::default();
    }
    let task = "importing cache manifests";
    reporter.event(&Event::Task { name: task });
    let imported =
        remote::Imported::load(store, registry, specs, &mut |w| reporter.event(&Event::Warning(&w)));
    reporter
        .event(&Event::TaskStatus { name: task, text: &format!("{} cache records done", imported.len()) });
    reporter.event(&Event::TaskDone { name: task });
    imported
}

/// `--cache-to type=inline`: the records of the image's own steps, in its config, as the image
/// ships with `shipped` (the compression its layers get where it is pushed).
fn inline_cache(
    builder: &Builder<'_>,
    image: &mut crate::image::manifest::Image,
    shipped: ExportCompression,
) {
    let mut layers = image.layers.clone();
    let mut config = remote::records(
        &crate::build::lock(&builder.used),
        &builder.image_stages(),
        &mut layers,
        shipped.codec,
    );
    // Only records whose layer is one of the image's can travel inside it.
    config.records.retain(|r| r.layer.is_none_or(|i| i < image.layers.len()));
    if let Ok(value) = serde_json::to_value(&config) {
        image.config.extra.insert(remote::INLINE_KEY.to_string(), value);
    }
}

/// Options accepted on the command line whose feature does not exist yet.
fn refuse_unbuilt(args: &BuildArgs) -> Result<(), Failure> {
    if args.platforms.len() > 1 {
        return Err(Failure::not_supported("building for several platforms at once (give one --platform)"));
    }
    Ok(())
}

fn outputs(args: &BuildArgs) -> Result<Vec<OutputSpec>, Failure> {
    let mut out = Vec::new();
    for o in &args.outputs {
        let spec = parse_output(o).map_err(|e| {
            if e.starts_with("not supported yet") {
                Failure::usage(format!("error: {e}"))
            } else {
                Failure::usage(format!("error: --output {o}: {e}"))
            }
        })?;
        out.push(spec);
    }
    Ok(out)
}

/// The names to push, each with the compression its output asks for: every `-t` with `--push`
/// (buildx's shorthand for `--output type=registry`: gzip), and the names of `type=registry`
/// outputs (their `name=`, else the `-t` tags). A name given twice is pushed once, as first asked.
fn push_names(args: &BuildArgs, outputs: &[OutputSpec]) -> Result<Vec<(String, ExportCompression)>, Failure> {
    let mut names: Vec<(String, ExportCompression)> = Vec::new();
    if args.push {
        if args.tags.is_empty() {
            return Err(Failure::usage("error: --push needs at least one -t NAME to push to"));
        }
        names.extend(args.tags.iter().map(|t| (t.clone(), ExportCompression::default())));
    }
    for o in outputs {
        if let OutputSpec::Registry { compression, .. } = o {
            let n = o.names();
            if n.is_empty() && args.tags.is_empty() {
                return Err(Failure::usage("error: --output type=registry needs name=NAME or -t NAME"));
            }
            let n = if n.is_empty() { args.tags.clone() } else { n };
            names.extend(n.into_iter().map(|n| (n, *compression)));
        }
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|(n, _)| seen.insert(n.clone()));
    Ok(names)
}

/// The vertex of the image exporter (the store, `type=image`, pushes), as BuildKit names it.
const IMAGE_VERTEX: &str = "exporting to image";

/// BuildKit's name for the vertex of `out`'s exporter.
fn exporter_vertex(out: &OutputSpec) -> &'static str {
    match out {
        OutputSpec::Oci { .. } => "exporting to oci image format",
        OutputSpec::Docker { .. } => "exporting to docker image format",
        OutputSpec::Local { .. } => "exporting to client directory",
        OutputSpec::Tar { .. } => "exporting to client tarball",
        OutputSpec::Image { .. } | OutputSpec::Registry { .. } => IMAGE_VERTEX,
    }
}

/// The image with its layers compressed for each compression outputs ask for, each made once and
/// written to the store (with `--annotation`s), with its layers' total size.
struct Shipped<'a> {
    store: &'a Store,
    image: &'a crate::image::manifest::Image,
    annotations: &'a BTreeMap<String, String>,
    made: Vec<(ExportCompression, crate::image::manifest::Written, u64)>,
}

impl Shipped<'_> {
    fn get(&mut self, want: ExportCompression) -> Result<(&crate::image::manifest::Written, u64), Failure> {
        let i = match self.made.iter().position(|(c, ..)| *c == want) {
            Some(i) => i,
            None => {
                let compressed = crate::layer::compress::compressed_image(self.store, self.image, want)
                    .map_err(|e| Failure::usage(format!("error: compressing the layers: {e}")))?;
                let size = compressed.layers.iter().map(|l| l.size).sum();
                let written = compressed
                    .write_annotated(self.store, self.annotations)
                    .map_err(|e| Failure::usage(format!("error: writing the image: {e}")))?;
                self.made.push((want, written, size));
                self.made.len() - 1
            }
        };
        let (_, written, size) = &self.made[i];
        Ok((written, *size))
    }
}

/// The archive written while the build runs (see [`crate::export::spool`]): the first OCI or
/// docker archive to a file that takes the layers as they are made. None when it cannot be
/// started: the export then writes it, or says why not.
fn spool(outputs: &[OutputSpec], layers: crate::layer::Codec) -> Option<crate::export::spool::Spool> {
    let out = outputs.iter().find(|o| {
        o.archive_file().is_some() && o.compression().is_some_and(|c| c.codec == layers && !c.force)
    })?;
    crate::export::spool::Spool::create(out.archive_file()?).ok()
}

/// The compression new layers are made in ([`crate::build::Options::compress_for`]): the one
/// every image output asks for (OCI and docker archives, pushes), when they all ask for the
/// same; none when no image ships or the outputs disagree (each then compresses its own). A
/// cache export does not decide it: a build that only exports its cache keeps its layers plain,
/// as a build without outputs does, so both give the same image.
fn compress_for(
    outputs: &[OutputSpec],
    pushes: &[(String, ExportCompression)],
) -> Option<crate::layer::Codec> {
    let mut wanted = (outputs.iter().filter_map(OutputSpec::compression))
        .chain(pushes.iter().map(|(_, c)| *c))
        .map(|c| c.codec);
    let first = wanted.next()?;
    (wanted.all(|c| c == first) && first.compression() != crate::layer::Compression::None).then_some(first)
}

/// The image manifest's annotations: each image output's `annotation.*` options with
/// `--annotation`'s over them (buildx sets the flag's on every output). hako writes one manifest
/// for all outputs, so they must agree.
fn manifest_annotations(
    flags: BTreeMap<String, String>,
    outputs: &[OutputSpec],
) -> Result<BTreeMap<String, String>, Failure> {
    let mut each = outputs.iter().filter_map(OutputSpec::image_options).map(|o| {
        let mut all = o.annotations.clone();
        all.extend(flags.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    });
    let Some(first) = each.next() else { return Ok(flags) };
    if each.any(|other| other != first) {
        return Err(Failure::usage(
            "error: outputs ask for different annotations; hako writes one image manifest for all of them",
        ));
    }
    Ok(first)
}

/// `rewrite-timestamp=false` on an image output: file times in new layers are kept. The layers
/// are made once for every output, so the outputs must agree.
fn keep_file_times(outputs: &[OutputSpec]) -> Result<bool, Failure> {
    let asked: Vec<bool> = outputs.iter().filter_map(OutputSpec::rewrite_timestamp).collect();
    if asked.windows(2).any(|w| w[0] != w[1]) {
        return Err(Failure::usage(
            "error: outputs ask for different rewrite-timestamp values; the layers are made once for all of them",
        ));
    }
    Ok(asked.first() == Some(&false))
}

/// The build's epoch: the `SOURCE_DATE_EPOCH` build arg, which BuildKit's frontend reads (buildx
/// sets it from the environment, as `plan_options` does).
fn source_date_epoch(options: &plan::Options) -> Result<Option<i64>, Failure> {
    match options.build_args.get(plan::scope::EPOCH_ARG) {
        Some(v) if !v.is_empty() => v.parse::<i64>().map(Some).map_err(|_| {
            Failure::usage(format!("error: SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))
        }),
        _ => Ok(None),
    }
}

fn labels(args: &BuildArgs) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            return Err(Failure::usage(format!("error: --label {l}: expected KEY=VALUE")));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The sandbox setting for `--isolation`.
pub fn isolation(mode: super::args::IsolationMode) -> crate::sandbox::Isolation {
    match mode {
        super::args::IsolationMode::Auto => crate::sandbox::Isolation::Auto,
        super::args::IsolationMode::Rootless => crate::sandbox::Isolation::Rootless,
        super::args::IsolationMode::Root => crate::sandbox::Isolation::Root,
        super::args::IsolationMode::Chroot => crate::sandbox::Isolation::Chroot,
        super::args::IsolationMode::Ptrace => crate::sandbox::Isolation::Ptrace,
    }
}

/// `--secret` as buildx parses it: `id=NAME` with `src=FILE` (or `source=`), `env=VAR`, and
/// `type=file|env`; with neither, the environment variable NAME if set, else the file NAME.
fn secrets(specs: &[String]) -> Result<BTreeMap<String, crate::build::SecretSource>, Failure> {
    use crate::build::SecretSource;
    let mut out = BTreeMap::new();
    for spec in specs {
        let bad = |why: &str| Failure::usage(format!("error: --secret {spec}: {why}"));
        let (mut id, mut typ, mut src, mut env) = (None, None, None, None);
        for field in spec.split(',') {
            let (k, v) = field.split_once('=').ok_or_else(|| bad("expected KEY=VALUE fields"))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "id" => id = Some(v.to_string()),
                "type" => typ = Some(v.to_string()),
                "src" | "source" => src = Some(v.to_string()),
                "env" => env = Some(v.to_string()),
                other => return Err(bad(&format!("unknown key {other:?} (expected id, type, src or env)"))),
            }
        }
        let source = match (typ.as_deref(), src, env) {
            (Some("env"), Some(v), None) | (_, None, Some(v)) => SecretSource::Env(v),
            (Some("file") | None, Some(p), None) => SecretSource::File(p.into()),
            (Some(t), _, _) if t != "file" && t != "env" => return Err(bad("type must be file or env")),
            (_, Some(_), Some(_)) => return Err(bad("give src or env, not both")),
            (typ, None, None) => {
                let id = id.clone().ok_or_else(|| bad("needs id=NAME"))?;
                if typ == Some("env") || (typ.is_none() && std::env::var_os(&id).is_some()) {
                    SecretSource::Env(id)
                } else {
                    SecretSource::File(id.into())
                }
            }
            (Some(_), Some(p), None) => SecretSource::File(p.into()),
        };
        let id = match (id, &source) {
            (Some(id), _) => id,
            (None, SecretSource::File(p)) => {
                p.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| bad("needs id=NAME"))?
            }
            (None, SecretSource::Env(v)) => v.clone(),
        };
        if id.is_empty() {
            return Err(bad("the id is empty"));
        }
        out.insert(id, source);
    }
    Ok(out)
}

/// `--ssh default` (the agent in `$SSH_AUTH_SOCK`) or `--ssh ID=SOCKET`.
fn ssh(specs: &[String]) -> Result<BTreeMap<String, PathBuf>, Failure> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, paths) = spec.split_once('=').unwrap_or((spec.as_str(), ""));
        let path = if paths.is_empty() {
            std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(PathBuf::from).ok_or_else(|| {
                Failure::usage(format!(
                    "error: --ssh {spec}: SSH_AUTH_SOCK is not set; start an agent (eval $(ssh-agent); ssh-add) or give --ssh {id}=SOCKET"
                ))
            })?
        } else {
            PathBuf::from(paths)
        };
        use std::os::unix::fs::FileTypeExt;
        match std::fs::metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {}
            Ok(_) => {
                return Err(Failure::not_supported(&format!(
                    "--ssh {spec}: key files (give the socket of an ssh-agent holding the key)"
                )));
            }
            Err(e) => return Err(Failure::usage(format!("error: --ssh {spec}: {}: {e}", path.display()))),
        }
        out.insert(id.to_string(), path);
    }
    Ok(out)
}

/// Turns the command line into planner options.
fn plan_options(args: &BuildArgs) -> Result<plan::Options, Failure> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            // `--build-arg NAME` takes the value from the environment, and is skipped when unset (as docker does).
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    // As buildx: the environment's SOURCE_DATE_EPOCH is the build arg unless one is given, so a
    // Dockerfile's `ARG SOURCE_DATE_EPOCH` sees it, and `--build-arg SOURCE_DATE_EPOCH` sets the
    // epoch too (see `source_date_epoch`).
    if !build_args.contains_key(plan::scope::EPOCH_ARG)
        && let Ok(v) = std::env::var(plan::scope::EPOCH_ARG)
    {
        build_args.insert(plan::scope::EPOCH_ARG.to_string(), v);
    }
    let platform = match args.platforms.first() {
        Some(p) => Some(Platform::parse(p).map_err(|e| Failure::usage(format!("error: --platform: {e}")))?),
        None => None,
    };
    let mut build_contexts = BTreeMap::new();
    for c in &args.build_contexts {
        let Some((name, value)) = c.split_once('=').filter(|(n, v)| !n.is_empty() && !v.is_empty()) else {
            return Err(Failure::usage(format!("error: --build-context {c}: expected NAME=VALUE")));
        };
        build_contexts.insert(name.to_string(), value.to_string());
    }
    for tag in &args.tags {
        crate::plan::check_reference(tag).map_err(|e| Failure::usage(format!("error: -t {tag}: {e}")))?;
    }
    let (network, entitlements) = super::buildx::network_and_entitlements(args)?;
    Ok(plan::Options {
        build_args,
        target: args.target.clone(),
        platform,
        build_contexts,
        network,
        entitlements,
        step_options: super::buildx::step_options(args)?,
    })
}

/// Where the context comes from.
enum ContextInput {
    Dir(PathBuf, Option<PathBuf>),
    Unpacked(tempfile::TempDir, String),
    Empty,
}

impl ContextInput {
    /// The `.dockerignore` that applies, if any.
    fn ignore_file(&self) -> Option<PathBuf> {
        use crate::context::dockerignore::find_ignore_file;
        match self {
            ContextInput::Dir(dir, df) => find_ignore_file(dir, df.as_deref()),
            ContextInput::Unpacked(tmp, df) => find_ignore_file(tmp.path(), Some(Path::new(df))),
            ContextInput::Empty => None,
        }
    }

    fn into_context(self, store: &Store) -> Result<Context, Failure> {
        let bad = |e: crate::context::ContextError| Failure::user(format!("error: build context: {e}"));
        match self {
            ContextInput::Dir(dir, df) => Context::from_dir(&dir, df.as_deref()).map_err(bad),
            ContextInput::Unpacked(tmp, df) => Context::from_unpacked(tmp, &df).map_err(bad),
            ContextInput::Empty => {
                let tmp = store.temp_dir("context-").map_err(|e| Failure::usage(format!("error: {e}")))?;
                Ok(Context::empty(tmp))
            }
        }
    }
}

/// The Dockerfile to build, with the name to show in messages, and the context.
struct Input {
    name: String,
    dockerfile: Vec<u8>,
    context: ContextInput,
}

/// Finds the Dockerfile and context: `-f -` (stdin), `-f PATH`, `CONTEXT/Dockerfile`, or inside a
/// context tar read from stdin (`CONTEXT` = `-`), which is unpacked (safely) as it streams. A stdin
/// that is not a tar archive is the Dockerfile itself, with an empty context.
fn read_input(args: &BuildArgs) -> Result<Input, Failure> {
    let file = args.file.as_deref();
    if args.context == "-" {
        if file == Some("-") {
            return Err(Failure::usage("error: cannot read both the context and the Dockerfile from stdin"));
        }
        // Peek at the first 512 bytes (one tar header) to tell an archive from a Dockerfile.
        let mut stdin = BufReader::with_capacity(1 << 16, std::io::stdin().lock());
        let mut head = Vec::with_capacity(512);
        while head.len() < 512 {
            let buf = stdin.fill_buf().map_err(|e| Failure::usage(format!("error: reading stdin: {e}")))?;
            if buf.is_empty() {
                break;
            }
            let n = buf.len().min(512 - head.len());
            head.extend_from_slice(&buf[..n]);
            stdin.consume(n);
        }
        let stdin = std::io::Cursor::new(head.clone()).chain(stdin);
        let name = file.unwrap_or("Dockerfile");
        if !crate::context::is_archive(&head) {
            let mut buf = Vec::new();
            let mut stdin = stdin;
            stdin.read_to_end(&mut buf).map_err(|e| Failure::usage(format!("error: reading stdin: {e}")))?;
            return Ok(Input { name: "Dockerfile".into(), dockerfile: buf, context: ContextInput::Empty });
        }
        let tmp = crate::context::unpack_stream(&head, stdin)
            .map_err(|e| Failure::user(format!("error: reading the context archive from stdin: {e}")))?;
        let path = crate::build::resolve_in_root(tmp.path(), name)
            .map_err(|e| Failure::user(format!("error: the context archive: {e}")))?;
        let dockerfile = fs_err::read(&path).map_err(|_| {
            Failure::user(format!(
                "error: the context archive on stdin has no `{name}`\nhint: name the Dockerfile inside the archive with -f"
            ))
        })?;
        return Ok(Input {
            name: name.to_string(),
            dockerfile,
            context: ContextInput::Unpacked(tmp, name.to_string()),
        });
    }
    let context = Path::new(&args.context);
    if !context.is_dir() {
        return Err(Failure::usage(format!(
            "error: build context `{}` is not a directory\nhint: pass a directory, or `-` to read a tar archive from stdin",
            args.context
        )));
    }
    let path = match file {
        Some("-") => {
            let (name, dockerfile) = read_dockerfile_arg("-")?;
            return Ok(Input { name, dockerfile, context: ContextInput::Dir(context.to_path_buf(), None) });
        }
        Some(f) => PathBuf::from(f),
        None => context.join("Dockerfile"),
    };
    // A Dockerfile that is not there is the build's input failing (exit 1, as buildx), not a
    // misused command line.
    let dockerfile = fs_err::read(&path).map_err(|e| {
        let hint = if file.is_none() { "\nhint: name the Dockerfile with -f PATH" } else { "" };
        Failure::user(format!("error: reading the Dockerfile: {e}{hint}"))
    })?;
    Ok(Input {
        name: path.display().to_string(),
        dockerfile,
        context: ContextInput::Dir(context.to_path_buf(), Some(path)),
    })
}

/// Build-check findings during a build, as BuildKit's progress shows them
/// (`WARN: FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 3)`).
fn print_checks(reporter: &dyn Reporter, findings: &[&Warning]) {
    for w in findings {
        let rule = w.rule.unwrap_or_default();
        reporter.event(&Event::Check { rule, message: &w.message, line: w.pos.line });
    }
}

/// `# check=error=true`: BuildKit fails the build when there are findings.
fn lint_violation(findings: &[&Warning]) -> Failure {
    let mut rules: Vec<&str> = findings.iter().filter_map(|w| w.rule).collect();
    rules.sort_unstable();
    rules.dedup();
    Failure::user(format!(
        "error: lint violation found for rules: {}\nhint: fix them, or drop error=true from the check options",
        rules.join(", ")
    ))
}

/// `--check`: the findings as buildx prints `--call=check` results (rule, URL, message, and the
/// Dockerfile lines around the instruction), on stdout; exit 1 when there are any.
fn check_report(
    name: &str,
    source: &str,
    df: &crate::dockerfile::instructions::Dockerfile,
    planned: &[Warning],
) -> Result<(), Failure> {
    let found = df.checks.findings(df.warnings.iter().chain(planned));
    if found.is_empty() {
        return print_stdout("Check complete, no warnings found.\n");
    }
    let mut out = match found.len() {
        1 => "Check complete, 1 warning has been found!\n".to_string(),
        n => format!("Check complete, {n} warnings have been found!\n"),
    };
    let lines: Vec<&str> = source.split('\n').collect();
    // buildx names the Dockerfile by its file name.
    let file = Path::new(name).file_name().map_or(name.into(), |f| f.to_string_lossy());
    for w in &found {
        let rule = w.rule.unwrap_or_default();
        let url = crate::dockerfile::checks::url(rule);
        out.push_str(&format!("\nWARNING: {rule}"));
        if !url.is_empty() {
            out.push_str(&format!(" - {url}"));
        }
        out.push_str(&format!("\n{}\n", w.message));
        out.push_str(&source_excerpt(&file, &lines, w.pos.line, w.end_line.max(w.pos.line)));
    }
    print_stdout(&out)?;
    if df.checks.error {
        return Err(lint_violation(&found));
    }
    Err(Failure { text: String::new(), code: super::EXIT_USER })
}

/// BuildKit's `errdefs.Source.Print`: the lines `start..=end` marked `>>>`, with up to four lines
/// of context for one line (two for a range).
fn source_excerpt(name: &str, lines: &[&str], start: usize, end: usize) -> String {
    if start < 1 || start > lines.len() {
        return String::new();
    }
    let (mut first, mut last) = (start, end.min(lines.len()));
    let pad = if first == last { 4 } else { 2 };
    let mut p = 0;
    while p < pad {
        if first > 1 {
            first -= 1;
            p += 1;
        }
        if last != lines.len() {
            last += 1;
            p += 1;
        }
        p += 1;
    }
    let mut out = format!("{name}:{start}\n--------------------\n");
    for (i, line) in lines.iter().enumerate().take(last).skip(first - 1) {
        let n = i + 1;
        let mark = if (start..=end).contains(&n) { ">>>" } else { "   " };
        out.push_str(&format!(" {n:3} | {mark} {line}\n"));
    }
    out.push_str("--------------------\n");
    out
}

fn print_warnings(reporter: &dyn Reporter, name: &str, warnings: &[Warning]) {
    for w in warnings.iter().filter(|w| w.rule.is_none()) {
        let text = match w.pos.line {
            0 => format!("{name}: {}", w.message),
            line => format!("{name}:{line}: {}", w.message),
        };
        reporter.event(&Event::Warning(&text));
    }
}

/// Reads a Dockerfile named on the command line (`-` is stdin). Returns the display name and bytes.
pub fn read_dockerfile_arg(file: &str) -> Result<(String, Vec<u8>), Failure> {
    if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::usage(format!("error: reading the Dockerfile from stdin: {e}")))?;
        return Ok(("Dockerfile".to_string(), buf));
    }
    let bytes = fs_err::read(file).map_err(|e| Failure::usage(format!("error: {e}")))?;
    Ok((file.to_string(), bytes))
}
