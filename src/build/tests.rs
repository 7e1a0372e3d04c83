//! The builder with a fake executor: stage logic and the step cache without namespaces. The fake
//! "runs" a step by writing a layer with one file, `/ran`, holding the command and the number of
//! files in its parent layers — so a test sees what ran, and on what.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::dockerfile::instructions::from_ast;
use crate::dockerfile::parse;
use crate::image::config::ImageConfig;
use crate::layer::LayerWriter;
use crate::layer::index::Meta;
use crate::sandbox::protocol::{Exit, LayerRef, RunRequest, RunResult};
use crate::sandbox::{Executor, SandboxError};

struct Fake {
    store: Store,
    runs: Arc<AtomicUsize>,
    exit: i32,
}

impl Executor for Fake {
    fn run(
        &mut self,
        req: &RunRequest,
        output: &mut dyn FnMut(&str),
        _note: &mut dyn FnMut(&str),
    ) -> Result<RunResult, SandboxError> {
        self.runs.fetch_add(1, Ordering::Relaxed);
        output("fake output\n");
        // `RUN pause MS` takes that long.
        let cmd = req.process.args.join(" ");
        if let Some(ms) = cmd.split("pause ").nth(1).and_then(|m| m.split_whitespace().next()?.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let exit = self.exit;
        let body = format!("{} on {} layers\n", req.process.args.join(" "), req.layers.len());
        let mut w = LayerWriter::new(&self.store, crate::layer::Compression::Gzip, Some(0))
            .map_err(|e| SandboxError::Helper(e.to_string()))?;
        let meta = Meta::file(body.len() as u64);
        w.add("ran", &meta, Some(&mut body.as_bytes())).map_err(|e| SandboxError::Helper(e.to_string()))?;
        let layer = w.finish().map_err(|e| SandboxError::Helper(e.to_string()))?;
        let layer = (exit == 0).then(|| LayerRef::from_layer(&layer));
        Ok(RunResult { exit: Exit::Code(exit), layer, notes: Vec::new(), run_ms: 0.0, teed: false })
    }
}

/// A store, a context with `a.txt`, and a way to build a Dockerfile in them.
struct Bench {
    dir: tempfile::TempDir,
    store: Store,
    runs: Arc<AtomicUsize>,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("ctx")).expect("ctx");
        std::fs::write(dir.path().join("ctx/a.txt"), "one\n").expect("write");
        let store = Store::open(&dir.path().join("store")).expect("store");
        Bench { dir, store, runs: Arc::new(AtomicUsize::new(0)) }
    }

    fn build(&self, src: &str, exit: i32, no_cache: bool) -> Result<Image, BuildError> {
        self.build_counting(src, exit, no_cache).0
    }

    /// [`build`](Bench::build), and how many whole stage trees it extracted.
    fn build_counting(&self, src: &str, exit: i32, no_cache: bool) -> (Result<Image, BuildError>, usize) {
        self.build_at(src, exit, no_cache, 0)
    }

    /// [`build_counting`](Bench::build_counting) with `SOURCE_DATE_EPOCH` = `epoch`.
    fn build_at(
        &self,
        src: &str,
        exit: i32,
        no_cache: bool,
        epoch: i64,
    ) -> (Result<Image, BuildError>, usize) {
        let ast = parse(src).expect("parse");
        let df = from_ast(&ast, src).expect("typed");
        let bases = Bases::new(&self.store, None);
        let opts = crate::plan::Options::default();
        let plan = crate::plan::plan(&df, &opts, &bases).expect("plan");
        let context = Context::from_dir(&self.dir.path().join("ctx"), None).expect("context");
        let fake = Fake { store: self.store.clone(), runs: self.runs.clone(), exit };
        let options = Options { source_date_epoch: Some(epoch), no_cache, ..Options::default() };
        let builder = Builder::new(&self.store, &df, &plan, &context, options, &progress::Quiet, &bases);
        *super::lock(&builder.executor) = Some(Box::new(fake));
        let image = builder.build();
        (image, builder.whole_trees.load(Ordering::Relaxed))
    }

    fn ran(&self) -> usize {
        self.runs.swap(0, Ordering::Relaxed)
    }
}

const DF: &str = "FROM scratch\nCOPY a.txt /a.txt\nRUN make\nLABEL x=1\n";

#[test]
fn a_rebuild_runs_nothing_and_gives_the_same_image() {
    let b = Bench::new();
    let first = b.build(DF, 0, false).expect("build");
    assert_eq!((b.ran(), first.layers.len()), (1, 2));
    let again = b.build(DF, 0, false).expect("rebuild");
    assert_eq!(b.ran(), 0, "every step hits");
    assert_eq!(again, first);
    b.build(DF, 0, true).expect("--no-cache");
    assert_eq!(b.ran(), 1, "--no-cache runs the step");
}

#[test]
fn a_changed_file_reruns_what_follows_and_a_label_does_not() {
    let b = Bench::new();
    b.build(DF, 0, false).expect("build");
    b.ran();
    b.build(&DF.replace("LABEL x=1", "LABEL x=2"), 0, false).expect("label");
    assert_eq!(b.ran(), 0, "a config instruction after the step changes nothing");
    b.build(&DF.replace("COPY", "LABEL y=1\nCOPY"), 0, false).expect("label before");
    assert_eq!(b.ran(), 0, "nor before it");
    std::fs::write(b.dir.path().join("ctx/a.txt"), "two\n").expect("write");
    b.build(DF, 0, false).expect("changed");
    assert_eq!(b.ran(), 1, "the COPY changed, so the RUN on it runs");
    b.build(&DF.replace("RUN make", "RUN make all"), 0, false).expect("changed command");
    assert_eq!(b.ran(), 1);
}

#[test]
fn a_failed_step_is_not_recorded() {
    let b = Bench::new();
    let err = b.build(DF, 3, false).expect_err("exit 3 fails");
    assert!(err.to_string().contains("RUN failed (exit 3): make"), "{err}");
    assert!(matches!(err, BuildError::Input(_)));
    b.build(DF, 0, false).expect("build");
    assert_eq!(b.ran(), 2, "the failed step ran again");
}

#[test]
fn a_scratch_stage_has_path_and_a_working_dir() {
    let b = Bench::new();
    let image = b.build("FROM scratch\nENV PATH=$PATH:/opt\nLABEL x=1\n", 0, false).expect("build");
    let c = &image.config.config;
    assert_eq!(c.env, Some(vec![format!("PATH={DEFAULT_PATH}:/opt")]));
    assert_eq!(c.working_dir.as_deref(), Some("/"));
}

#[test]
fn a_base_image_without_path_gets_the_default_one() {
    let linux = crate::plan::Platform::parse("linux/amd64").expect("platform");
    let mut config = ImageConfig::default();
    config.set_env_pairs(&[("A".into(), "1".into())]);
    stage::ensure_path(&mut config, &linux);
    assert_eq!(config.config.env, Some(vec!["A=1".to_string(), format!("PATH={DEFAULT_PATH}")]));
    config.set_env_pairs(&[("PATH".into(), "/x".into())]);
    stage::ensure_path(&mut config, &linux);
    assert_eq!(config.config.env, Some(vec!["PATH=/x".to_string()]), "an image's own PATH is kept");
    let mut windows = ImageConfig::default();
    stage::ensure_path(&mut windows, &crate::plan::Platform::parse("windows/amd64").expect("platform"));
    assert_eq!(windows.config.env, None, "left to the OS, as BuildKit does");
}

#[test]
fn an_exec_form_followed_by_a_comment_is_still_the_exec_form() {
    let b = Bench::new();
    let image = b
        .build("FROM scratch\nENTRYPOINT [\"/app\"] # the server\nCMD [\"-v\"]]\n", 0, false)
        .expect("build");
    let c = &image.config.config;
    assert_eq!(c.entrypoint, Some(vec!["/app".to_string()]));
    assert_eq!(c.cmd, Some(vec!["-v".to_string()]));
}

/// Reproducible by default: the epoch is SOURCE_DATE_EPOCH, else 1980-01-01, and new layers'
/// file times are clamped to it unless the outputs ask for real times (then no clamp: the step
/// key's clamp input tells the two apart).
#[test]
fn the_epoch_and_the_clamp() {
    let o = Options::default();
    assert_eq!((o.epoch(), o.clamp()), (315_532_800, Some(315_532_800)));
    assert_eq!(crate::image::config::rfc3339(DEFAULT_EPOCH), "1980-01-01T00:00:00Z");
    let o = Options { source_date_epoch: Some(86_400), ..Options::default() };
    assert_eq!((o.epoch(), o.clamp()), (86_400, Some(86_400)));
    let o = Options { keep_file_times: true, ..o };
    assert_eq!((o.epoch(), o.clamp()), (86_400, None));
}

/// A stage that fails stops the stages built beside it at their next step: the build reports the
/// failure without running what they had left (BuildKit cancels them too).
#[test]
fn a_failing_stage_cancels_the_stages_beside_it() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return; // one core: stages run one at a time, nothing to cancel
    }
    let b = Bench::new();
    let df = "FROM scratch AS slow\nCOPY a.txt /a\nRUN pause 400\nRUN pause 3000 never\n\
              FROM scratch AS bad\nCOPY nosuch.txt /b\n\
              FROM scratch\nCOPY --from=slow /ran /s\nCOPY --from=bad /ran /b\n";
    let started = std::time::Instant::now();
    let err = b.build(df, 0, false).expect_err("a stage fails");
    assert!(!matches!(err, BuildError::Cancelled), "the failure is reported, not the cancellation: {err:?}");
    assert!(started.elapsed() < std::time::Duration::from_millis(2500), "took {:?}", started.elapsed());
    // At most the step already running when the other stage failed; never `pause 3000`.
    assert!(b.ran() <= 1, "a cancelled stage started no further step");
}

/// One layer entry as these tests look at it.
struct Row {
    name: String,
    mode: u32,
    mtime: u64,
    /// A hard link's or symlink's target.
    link: Option<String>,
    size: u64,
    file: bool,
    body: Vec<u8>,
}

/// A layer's entries, in order.
fn layer_rows(store: &Store, layer: &crate::image::manifest::Layer) -> Vec<Row> {
    let mut archive = tar::Archive::new(crate::layer::open_layer(store, layer).expect("open layer"));
    let entries = archive.entries().expect("entries");
    entries
        .map(|e| {
            let mut e = e.expect("entry");
            let h = e.header().clone();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body).expect("read");
            Row {
                name: e.path().expect("path").to_string_lossy().into_owned(),
                mode: h.mode().expect("mode"),
                mtime: h.mtime().expect("mtime"),
                link: e.link_name().expect("link").map(|l| l.to_string_lossy().into_owned()),
                size: e.size(),
                file: h.entry_type().is_file(),
                body,
            }
        })
        .collect()
}

/// The names in a layer, in order.
fn layer_names(store: &Store, layer: &crate::image::manifest::Layer) -> Vec<String> {
    layer_rows(store, layer).into_iter().map(|r| r.name).collect()
}

/// Each entry of a layer: name, mode and mtime.
fn layer_metas(store: &Store, layer: &crate::image::manifest::Layer) -> Vec<(String, u32, u64)> {
    layer_rows(store, layer).into_iter().map(|r| (r.name, r.mode, r.mtime)).collect()
}

/// A COPY or ADD that makes an entry in an existing directory changes that directory: BuildKit's
/// copy creates each file anew, so the kernel gives the directory the time of the build, which
/// the clamp makes the epoch. The directories above keep their metadata, and an archive's own
/// `./` entry changes nothing (Docker's untar skips it); the directories an archive implies are
/// made at the time of the build too.
#[test]
fn copies_touch_the_directory_they_write_into_as_buildkit_does() {
    let b = Bench::new();
    let ctx = b.dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("tree/usr/share")).expect("mkdir");
    std::fs::set_permissions(ctx.join("tree/usr/share"), std::os::unix::fs::PermissionsExt::from_mode(0o750))
        .expect("chmod");
    for d in ["tree/usr/share", "tree/usr", "tree"] {
        let t = nix::sys::time::TimeSpec::new(1000, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &ctx.join(d),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .expect("utimensat");
    }
    let mut tar = tar::Builder::new(std::fs::File::create(ctx.join("arch.tar")).expect("create"));
    let header = |kind, mode, size| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(5);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let mut dir = header(tar::EntryType::Directory, 0o700, 0);
    tar.append_data(&mut dir, "./", std::io::empty()).expect("append");
    let mut file = header(tar::EntryType::Regular, 0o644, 1);
    tar.append_data(&mut file, "deep/x", &b"x"[..]).expect("append");
    tar.finish().expect("finish");
    drop(tar);

    let epoch = 2_000_000;
    let df =
        "FROM scratch\nCOPY tree/ /\nCOPY a.txt /usr/share/\nADD arch.tar /usr/share/\nADD arch.tar /new/\n";
    let image = b.build_at(df, 0, true, epoch).0.expect("build");
    let metas: Vec<_> = image.layers.iter().map(|l| layer_metas(&b.store, l)).collect();
    let e = epoch as u64;
    assert_eq!(metas[0], [("usr/".into(), 0o755, 1000), ("usr/share/".into(), 0o750, 1000)]);
    assert_eq!(
        metas[1],
        [("usr/".into(), 0o755, 1000), ("usr/share/".into(), 0o750, e), ("usr/share/a.txt".into(), 0o644, e)]
    );
    assert_eq!(
        metas[2],
        [
            ("usr/".into(), 0o755, 1000),
            ("usr/share/".into(), 0o750, e),
            ("usr/share/deep/".into(), 0o755, e),
            ("usr/share/deep/x".into(), 0o644, 5),
        ]
    );
    assert_eq!(
        metas[3],
        [("new/".into(), 0o755, e), ("new/deep/".into(), 0o755, e), ("new/deep/x".into(), 0o644, 5)]
    );
}

/// COPY and WORKDIR write where the destination's symlinks lead, as BuildKit resolves it in the
/// stage (a usr-merged base's `/bin` is `usr/bin`), and keep hard links within one source, the
/// first path in layer order holding the data.
#[test]
fn copies_follow_the_destinations_symlinks_and_keep_hard_links() {
    let b = Bench::new();
    let ctx = b.dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("tree/usr/bin")).expect("mkdir");
    std::os::unix::fs::symlink("usr/bin", ctx.join("tree/bin")).expect("symlink");
    std::fs::create_dir_all(ctx.join("src/a")).expect("mkdir");
    std::fs::write(ctx.join("src/h"), "shared").expect("write");
    std::fs::hard_link(ctx.join("src/h"), ctx.join("src/a/h")).expect("link");
    std::fs::hard_link(ctx.join("src/h"), ctx.join("src/a-h")).expect("link");
    let df = "FROM scratch\nCOPY tree/ /\nCOPY a.txt /bin/\nWORKDIR /bin/sub\nCOPY src /s/\nCOPY src/h src/a-h /t/\n\
              COPY --link a.txt /bin/linked\n";
    let image = b.build_at(df, 0, true, 0).0.expect("build");
    let names: Vec<Vec<String>> = image.layers.iter().map(|l| layer_names(&b.store, l)).collect();
    assert_eq!(names[1], ["usr/", "usr/bin/", "usr/bin/a.txt"]);
    assert_eq!(names[2], ["usr/", "usr/bin/", "usr/bin/sub/"]);
    assert_eq!(names[3], ["s/", "s/a/", "s/a/h", "s/a-h", "s/h"]);
    let links: Vec<(String, Option<String>, u64)> = layer_rows(&b.store, &image.layers[3])
        .into_iter()
        .filter(|r| !r.name.ends_with('/'))
        .map(|r| (r.name, r.link, r.size))
        .collect();
    assert_eq!(
        links,
        [
            ("s/a/h".to_string(), None, 6),
            ("s/a-h".to_string(), Some("s/a/h".to_string()), 0),
            ("s/h".to_string(), Some("s/a/h".to_string()), 0),
        ]
    );
    let kinds: Vec<bool> = layer_rows(&b.store, &image.layers[4]).iter().map(|r| r.file).collect();
    assert_eq!(kinds, [false, true, true], "two sources: two files, as BuildKit copies each source apart");
    assert_eq!(names[5], ["usr/", "usr/bin/", "usr/bin/linked"], "--link too, as dockerd's BuildKit");
}

/// WORKDIR makes a layer as BuildKit's does: its directory when missing, an empty tar when the
/// directory is there (the `Mkdir` changed nothing), none for `/` (no `Mkdir` at all).
#[test]
fn workdir_layers_are_buildkits() {
    let b = Bench::new();
    let df = "FROM scratch\nWORKDIR /\nWORKDIR /w\nWORKDIR /w\nCOPY a.txt .\n";
    let image = b.build(df, 0, true).expect("build");
    let empty_tar = Digest::of(&[0u8; 1024]).to_string();
    let diff_ids: Vec<&str> = image.config.rootfs.diff_ids.iter().map(String::as_str).collect();
    assert_eq!(diff_ids.len(), 3, "{diff_ids:?}");
    assert_eq!(layer_names(&b.store, &image.layers[0]), ["w/"]);
    assert_eq!(diff_ids[1], empty_tar, "the second WORKDIR /w");
    assert!(layer_names(&b.store, &image.layers[1]).is_empty());
    let empty: Vec<(&str, bool)> = image
        .config
        .history
        .iter()
        .map(|h| (h.created_by.as_deref().unwrap_or_default(), h.empty_layer))
        .collect();
    assert_eq!(
        empty,
        [
            ("WORKDIR /", true),
            ("WORKDIR /w", false),
            ("WORKDIR /w", false),
            ("COPY a.txt . # buildkit", false)
        ]
    );
}

/// A destination through a symlink loop fails the step where it is, as BuildKit's does.
#[test]
fn a_destination_through_a_link_loop_fails_the_step() {
    let b = Bench::new();
    let ctx = b.dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("tree")).expect("mkdir");
    std::os::unix::fs::symlink("loop", ctx.join("tree/loop")).expect("symlink");
    for (step, line) in [("COPY a.txt /loop/", 3), ("WORKDIR /loop/w", 3)] {
        let df = format!("FROM scratch\nCOPY tree/ /\n{step}\n");
        match b.build_at(&df, 0, true, 0).0 {
            Err(BuildError::Input(d)) => {
                assert!(
                    d.message.contains("/loop/") && d.message.contains("too many levels"),
                    "{}",
                    d.message
                );
                assert_eq!(d.pos.line, line, "{step}");
            }
            other => panic!("{step}: {other:?}"),
        }
    }
}

/// Several stages copy different paths of one stage whose steps ran: each copy gets exactly its
/// paths (the stage's files are extracted once, for the paths all its copies read), the
/// contents right, through a symlinked directory too.
#[test]
fn copies_of_a_stage_get_their_paths_from_one_extraction() {
    let b = Bench::new();
    let ctx = b.dir.path().join("ctx");
    for (path, body) in
        [("lib/a.so", "a"), ("lib/b.so", "b"), ("bin/tool", "tool"), ("big/1", "1"), ("big/2", "2")]
    {
        std::fs::create_dir_all(ctx.join(path).parent().expect("parent")).expect("mkdir");
        std::fs::write(ctx.join(path), body).expect("write");
    }
    std::os::unix::fs::symlink("/lib", ctx.join("libs")).expect("symlink");
    let df = "FROM scratch AS src\nCOPY . /\nRUN make\n\
              FROM scratch AS one\nCOPY --from=src /libs/a.so /x/\n\
              FROM scratch\nCOPY --from=src /bin/ /b/\nCOPY --from=src /ran /ran\nCOPY --from=one /x /y\n";
    let (image, whole) = b.build_counting(df, 0, false);
    let image = image.expect("build");
    assert_eq!(whole, 0, "no stage was extracted whole");
    let names: Vec<Vec<String>> = image.layers.iter().map(|l| layer_names(&b.store, l)).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], ["b/", "b/tool"]);
    assert_eq!(names[1], ["ran"]);
    assert_eq!(names[2], ["y/", "y/a.so"]);
    let body: Vec<u8> = layer_rows(&b.store, &image.layers[2])
        .into_iter()
        .filter(|r| r.name.rsplit('/').next() == Some("a.so"))
        .flat_map(|r| r.body)
        .collect();
    assert_eq!(body, b"a");
    // A copy of the whole stage takes the whole tree.
    let (image, whole) =
        b.build_counting("FROM scratch AS src\nCOPY . /\nFROM scratch\nCOPY --from=src / /all/\n", 0, false);
    assert_eq!(whole, 1);
    assert!(layer_names(&b.store, &image.expect("build").layers[0]).contains(&"all/big/2".to_string()));
}
