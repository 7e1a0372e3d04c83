//! Build progress as events; the CLI decides how to show them (plain lines, JSON, a TTY display).
//! The library never prints.
//!
//! Steps are counted as BuildKit counts them: in each stage `FROM` is step 1 of `total`, and only
//! the instructions that touch the filesystem (RUN, COPY, ADD, WORKDIR) are steps after it; the
//! config-only ones (ENV, LABEL, CMD, ARG, …) produce no events. A step is known by its stage label
//! and number (`stage`, `n`): every event of a step carries both, so a renderer can tell apart
//! steps that run at the same time. Work that is not a Dockerfile step (reading the Dockerfile,
//! resolving a base, exporting) is a *task*, known by its name.

/// Something that happened during a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A step starts (`n` = 1: the stage's `FROM`, for an image base).
    Step {
        /// Stage label (`build`, `stage-2`): with `n`, the step's identity.
        stage: &'a str,
        /// The stage as BuildKit shows it in the step's name: its label, or empty when the
        /// Dockerfile has a single stage (`[2/3] RUN …`).
        shown: &'a str,
        /// 1-based step number in the stage (`FROM` is 1).
        n: usize,
        /// Steps in the stage, `FROM` included.
        total: usize,
        /// The instruction.
        text: &'a str,
    },
    /// A step's result was taken from the cache (it ends the step).
    Cached {
        /// Stage label.
        stage: &'a str,
        /// 1-based step number in the stage.
        n: usize,
    },
    /// A step made a layer.
    Layer {
        /// Stage label.
        stage: &'a str,
        /// Layer digest.
        digest: &'a str,
        /// Compressed size.
        size: u64,
        /// Entries in the layer.
        entries: u64,
    },
    /// Output of a RUN step (one line, or a piece of a very long one, newline included).
    Output {
        /// Stage label.
        stage: &'a str,
        /// 1-based step number in the stage.
        n: usize,
        /// The text.
        text: &'a str,
    },
    /// A status line of a running step (`resolve docker.io/library/busybox:latest@sha256:… done`).
    StepStatus {
        /// Stage label.
        stage: &'a str,
        /// 1-based step number in the stage.
        n: usize,
        /// The line.
        text: &'a str,
    },
    /// A blob a step downloaded (a base image's layer, pulled for its `FROM`).
    Download {
        /// Stage label.
        stage: &'a str,
        /// 1-based step number in the stage.
        n: usize,
        /// The blob's digest.
        digest: &'a str,
        /// Its size.
        size: u64,
        /// How long it took, in milliseconds.
        millis: u64,
    },
    /// A step finished (ran, or was already ended by [`Event::Cached`]).
    Done {
        /// Stage label.
        stage: &'a str,
        /// 1-based step number in the stage.
        n: usize,
    },
    /// A step failed; the build stops with an error that says more.
    Failed {
        /// Stage label.
        stage: &'a str,
        /// 1-based step number in the stage.
        n: usize,
        /// One line: what went wrong.
        message: &'a str,
    },
    /// Work that is not a Dockerfile step starts (`[internal] load build context`,
    /// `exporting to image`).
    Task {
        /// Its name, which is also its identity.
        name: &'a str,
    },
    /// A status line of a running task (`naming to docker.io/library/app:1 done`).
    TaskStatus {
        /// The task's name.
        name: &'a str,
        /// The line.
        text: &'a str,
    },
    /// A task finished.
    TaskDone {
        /// The task's name.
        name: &'a str,
    },
    /// A build check's finding (`WARN: FromAsCasing: … (line 3)`).
    Check {
        /// The rule (empty for hako's own findings without one).
        rule: &'a str,
        /// The message.
        message: &'a str,
        /// 1-based Dockerfile line, 0 when unknown.
        line: usize,
    },
    /// The built image (the last event of a successful build).
    Result {
        /// Manifest digest.
        digest: &'a str,
        /// Config digest (the image ID).
        config: &'a str,
        /// Size of the image's layers.
        size: u64,
        /// Names it was given.
        tags: &'a [String],
    },
    /// A note worth showing (fallbacks, skipped device nodes).
    Note(&'a str),
    /// Something that may make the result differ from what the user expects (e.g. owners
    /// squashed by a single-id user namespace).
    Warning(&'a str),
}

/// Receives progress events.
/// `Sync`: stages that run at the same time report from their own threads.
pub trait Reporter: Sync {
    /// Called for each event, in order.
    fn event(&self, e: &Event<'_>);

    /// The build is over (successfully or not): settle the display before other output follows.
    fn finish(&self) {}

    /// The build is being stopped by a signal (Ctrl-C, a CI job's cancel): show the running steps
    /// as canceled, and nothing after.
    fn cancel(&self) {}
}

/// Discards events.
pub struct Quiet;

impl Reporter for Quiet {
    fn event(&self, _e: &Event<'_>) {}
}
