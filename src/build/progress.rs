//! Build progress as events; the CLI decides how to show them (plain lines, JSON, a TTY display).
//! The library never prints.

/// Something that happened during a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A stage's base is being prepared.
    Base {
        /// Stage label (`build`, `stage-2`).
        stage: &'a str,
        /// What the base is.
        what: &'a str,
    },
    /// A step starts.
    Step {
        /// Stage label.
        stage: &'a str,
        /// 1-based step number in the stage.
        n: usize,
        /// Steps in the stage.
        total: usize,
        /// The instruction.
        text: &'a str,
    },
    /// A step's result was taken from the cache.
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
    /// A note worth showing (fallbacks, skipped device nodes).
    Note(&'a str),
    /// Something that may make the result differ from what the user expects (e.g. owners
    /// squashed by a single-id user namespace).
    Warning(&'a str),
}

/// Receives progress events.
pub trait Reporter {
    /// Called for each event, in order.
    fn event(&self, e: &Event<'_>);

    /// The build is over (successfully or not): settle the display before other output follows.
    fn finish(&self) {}
}

/// Discards events.
pub struct Quiet;

impl Reporter for Quiet {
    fn event(&self, _e: &Event<'_>) {}
}
