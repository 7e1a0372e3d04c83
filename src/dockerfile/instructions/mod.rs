//! Typed, validated instructions: the raw parse tree ([`crate::dockerfile::parser`]) becomes global
//! `ARG`s plus build stages of typed commands. Every instruction of the Dockerfile reference is
//! covered with all its flags; every rejection carries the file position and a message a person can
//! act on. Values are still unexpanded: the planner expands them with the right ARG/ENV scope.

mod convert;
mod duration;
pub use duration::parse_go_duration;
mod flags;
pub mod mount;
mod suggest;

use convert::Cx;
pub use mount::{Mount, MountType, Sharing, parse_mount};
pub use suggest::closest as closest_word;

use super::error::{Diagnostic, Pos, Warning, locate};
use super::parser::{Ast, Node};

/// Instruction keywords, upper case, as the Dockerfile reference lists them.
pub const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Where an instruction is in the Dockerfile, and its text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loc {
    /// First physical line.
    pub start_line: usize,
    /// Last physical line.
    pub end_line: usize,
    /// Column of the keyword.
    pub col: usize,
    /// The instruction text with continuations joined (as BuildKit records it in history).
    pub original: String,
}

impl Loc {
    fn of(node: &Node) -> Loc {
        Loc {
            start_line: node.start_line,
            end_line: node.end_line,
            col: node.col,
            original: node.original.clone(),
        }
    }

    /// Where the keyword starts.
    pub fn pos(&self) -> Pos {
        Pos::new(self.start_line, self.col)
    }
}

/// A parsed and validated Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `ARG`s before the first `FROM` (usable in `FROM` lines, re-declarable in stages).
    pub meta_args: Vec<(Vec<ArgDecl>, Loc)>,
    /// Build stages in file order.
    pub stages: Vec<Stage>,
    /// The escape token in force.
    pub escape: char,
    /// The `# syntax=` directive (recorded, not acted upon).
    pub syntax: Option<String>,
    /// Non-fatal findings from parsing and validation, build checks included.
    pub warnings: Vec<Warning>,
    /// Which build checks are on (`# check=…`; the CLI may replace it from a build arg). The
    /// warnings above hold every rule's findings; this says which to show.
    pub checks: super::checks::Config,
    /// The Dockerfile text, so later stages can point at the word an error is about.
    pub source: String,
}

impl Dockerfile {
    /// Where `needle` appears in the instruction at `loc` (after its keyword), or the keyword.
    pub fn locate(&self, loc: &Loc, needle: &str) -> Pos {
        let keyword_len = loc.original.split_whitespace().next().map_or(0, |k| k.chars().count());
        self.source
            .lines()
            .nth(loc.start_line.saturating_sub(1))
            .and_then(|text| {
                let skip = loc.col.saturating_sub(1) + keyword_len;
                let start = text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i);
                let byte = start + text.get(start..)?.find(needle)?;
                Some(Pos::new(loc.start_line, text[..byte].chars().count() + 1))
            })
            .or_else(|| locate(&self.source, loc.start_line + 1, loc.end_line, needle))
            .filter(|_| !needle.is_empty())
            .unwrap_or_else(|| loc.pos())
    }
}

/// One build stage: a `FROM` and the commands after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages (0-based), what `COPY --from=0` refers to.
    pub index: usize,
    /// The base as written (`busybox`, `${BASE}`, `scratch`, another stage's name).
    pub base: String,
    /// Stage name from `AS name`, lower-cased.
    pub name: Option<String>,
    /// `--platform` as written.
    pub platform: Option<String>,
    /// A doc comment above the `FROM` that starts with the stage name.
    pub doc: Option<String>,
    /// Where the `FROM` is.
    pub loc: Loc,
    /// The commands of the stage.
    pub commands: Vec<Instruction>,
}

/// A typed command with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// What it does.
    pub kind: Kind,
    /// Where it is.
    pub loc: Loc,
}

/// Every command that can appear in a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `COPY`.
    Copy(Copy),
    /// `ADD` (same shape as COPY, with ADD's own flags).
    Add(Copy),
    /// `ENV` pairs.
    Env(Vec<KeyValue>),
    /// `LABEL` pairs.
    Label(Vec<KeyValue>),
    /// `ARG` declarations.
    Arg(Vec<ArgDecl>),
    /// `WORKDIR path`.
    Workdir(String),
    /// `USER user[:group]`.
    User(String),
    /// `VOLUME` paths.
    Volume(Vec<String>),
    /// `EXPOSE` ports (`80`, `53/udp`), sorted as written.
    Expose(Vec<String>),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Health),
    /// `SHELL` (always exec form).
    Shell(Vec<String>),
    /// `ONBUILD` trigger text, recorded in the image config.
    Onbuild(String),
    /// `MAINTAINER` (deprecated; becomes a label-less author field).
    Maintainer(String),
}

impl Kind {
    /// The instruction keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Kind::Run(_) => "RUN",
            Kind::Cmd(_) => "CMD",
            Kind::Entrypoint(_) => "ENTRYPOINT",
            Kind::Copy(_) => "COPY",
            Kind::Add(_) => "ADD",
            Kind::Env(_) => "ENV",
            Kind::Label(_) => "LABEL",
            Kind::Arg(_) => "ARG",
            Kind::Workdir(_) => "WORKDIR",
            Kind::User(_) => "USER",
            Kind::Volume(_) => "VOLUME",
            Kind::Expose(_) => "EXPOSE",
            Kind::StopSignal(_) => "STOPSIGNAL",
            Kind::Healthcheck(_) => "HEALTHCHECK",
            Kind::Shell(_) => "SHELL",
            Kind::Onbuild(_) => "ONBUILD",
            Kind::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// A command for `RUN`, `CMD`, `ENTRYPOINT`: shell form (run through the stage's `SHELL`) or exec form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandLine {
    /// Exec form: the argv. Shell form: one string, the command text.
    pub args: Vec<String>,
    /// Shell form (prepend the stage's shell).
    pub shell_form: bool,
    /// Heredoc bodies (`RUN <<EOF`), materialised for the step.
    pub files: Vec<InlineFile>,
}

/// A heredoc attached to a command or used as a COPY/ADD source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    /// The heredoc name (for COPY: the file name).
    pub name: String,
    /// The body.
    pub data: String,
    /// `<<-`: strip leading tabs (already applied for COPY/ADD).
    pub chomp: bool,
    /// Whether variables in the body are expanded.
    pub expand: bool,
}

/// `RUN` with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// What to run.
    pub command: CommandLine,
    /// `--mount` specs as written (expanded and parsed with [`parse_mount`] by the planner).
    pub mounts: Vec<String>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `--security=sandbox|insecure`.
    pub security: Option<String>,
    /// `--device` specs.
    pub devices: Vec<String>,
}

/// `COPY`/`ADD` sources, destination and flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    /// Source paths/globs/URLs as written.
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`).
    pub inline: Vec<InlineFile>,
    /// Destination as written.
    pub dest: String,
    /// `--from` (COPY only): stage name, stage index, image or named context.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod` (octal or symbolic).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// `--checksum` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: Option<bool>,
    /// `--unpack` (ADD only).
    pub unpack: Option<bool>,
    /// Written as a JSON array.
    pub json: bool,
}

/// An `ENV` or `LABEL` pair, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Key as written.
    pub key: String,
    /// Value as written (quotes still present).
    pub value: String,
    /// Legacy `ENV key value` form.
    pub legacy: bool,
}

/// One name of an `ARG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default as written (quotes still present), if any.
    pub default: Option<String>,
    /// A doc comment above the ARG that starts with the name.
    pub doc: Option<String>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD …`.
    Check {
        /// `["CMD", …]` (exec form) or `["CMD-SHELL", "…"]`.
        test: Vec<String>,
        /// `--interval` in nanoseconds (0 = unset).
        interval: i64,
        /// `--timeout` in nanoseconds.
        timeout: i64,
        /// `--start-period` in nanoseconds.
        start_period: i64,
        /// `--start-interval` in nanoseconds.
        start_interval: i64,
        /// `--retries`.
        retries: i64,
    },
}

/// Converts a parse tree into stages of typed instructions. `source` is the Dockerfile text (to
/// point at flags and arguments inside multi-line instructions).
pub fn from_ast(ast: &Ast, source: &str) -> Result<Dockerfile, Diagnostic> {
    let mut df = Dockerfile {
        meta_args: Vec::new(),
        stages: Vec::new(),
        escape: ast.escape,
        syntax: ast.syntax().map(str::to_string),
        warnings: ast.warnings.clone(),
        checks: super::checks::Config::default(),
        source: source.to_string(),
    };
    if let Some(d) = ast.directives.iter().find(|d| d.name == "check") {
        // BuildKit refuses check options it cannot read ("failed to parse check options").
        df.checks = super::checks::Config::parse(&d.value).map_err(|e| {
            Diagnostic::new(format!("failed to parse check options: {e}"), Pos::new(d.line, 1))
                .with_hint("write `# check=skip=<rule>[,<rule>…][;error=true]` or `# check=skip=all`")
        })?;
    }
    df.warnings.extend(super::checks::run(ast));
    for node in &ast.nodes {
        let cx = Cx { node, source };
        if node.keyword.eq_ignore_ascii_case("FROM") {
            let index = df.stages.len();
            df.stages.push(cx.stage(index)?);
            continue;
        }
        let kind = cx.command()?;
        if let Some(trigger) = &node.onbuild
            && let Err(e) = (Cx { node: trigger, source }).command()
        {
            df.warnings.push(Warning {
                message: format!(
                    "ONBUILD trigger will fail when this image is used as a base: {}",
                    e.message
                ),
                pos: node.pos(),
                ..Warning::default()
            });
        }
        match (df.stages.last_mut(), kind) {
            (None, Kind::Arg(args)) => df.meta_args.push((args, Loc::of(node))),
            (None, kind) => {
                return Err(Diagnostic::new(
                    format!("{} must come after a FROM: no build stage in current context", kind.keyword()),
                    node.pos(),
                )
                .with_width(node.keyword.chars().count())
                .with_hint("only ARG may appear before the first FROM"));
            }
            (Some(stage), kind) => stage.commands.push(Instruction { kind, loc: Loc::of(node) }),
        }
    }
    if df.stages.is_empty() {
        let pos = ast.nodes.last().map_or(Pos::default(), |n| n.pos());
        return Err(Diagnostic::new("the Dockerfile has no FROM: there is no stage to build", pos)
            .with_hint("add `FROM <image>` (or `FROM scratch`) before the instructions"));
    }
    Ok(df)
}

/// Parses an ONBUILD trigger (as recorded in an image config) into an instruction, located at
/// `at` (the FROM line that runs it, as BuildKit reports trigger errors).
pub fn parse_trigger(text: &str, at: &Loc) -> Result<Instruction, Diagnostic> {
    let located = |message: String| Diagnostic::new(format!("ONBUILD trigger {text:?}: {message}"), at.pos());
    let ast = super::parser::parse(text).map_err(|d| located(d.message))?;
    let [node] = ast.nodes.as_slice() else {
        return Err(located("an ONBUILD trigger must be a single instruction".into()));
    };
    let name = node.name();
    if matches!(name.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
        return Err(located(format!("{name} isn't allowed as an ONBUILD trigger")));
    }
    let kind = (Cx { node, source: text }).command().map_err(|d| located(d.message))?;
    // Placed at the FROM line that inherits it (errors point there, as BuildKit's do), but shown
    // as its own text: BuildKit names the step `ONBUILD RUN …`.
    Ok(Instruction { kind, loc: Loc { original: Loc::of(node).original, ..at.clone() } })
}

#[cfg(test)]
mod tests;
