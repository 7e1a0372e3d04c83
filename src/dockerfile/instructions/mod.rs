//! Typed, validated instructions: the raw parse tree ([`crate::dockerfile::parser`]) becomes global
//! `ARG`s plus build stages of typed commands. Every instruction of the Dockerfile reference is
//! covered with all its flags; every rejection carries the file position and a message a person can
//! act on. Values are still unexpanded: the planner expands them with the right ARG/ENV scope.

mod duration;
mod flags;
pub mod mount;
mod suggest;

use flags::{FlagKind, Flags};
pub use mount::{Mount, MountType, Sharing, parse_mount};
pub use suggest::closest as closest_word;

use super::error::{Diagnostic, Pos, Warning, locate};
use super::parser::{Ast, Heredoc, Node, heredoc_from_word};

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
    /// Non-fatal findings from parsing and validation.
    pub warnings: Vec<Warning>,
    /// The Dockerfile text, so later stages can point at the word an error is about.
    pub source: String,
}

impl Dockerfile {
    /// Where `needle` appears in the instruction at `loc` (after its keyword), or the keyword.
    pub fn locate(&self, loc: &Loc, needle: &str) -> Pos {
        let keyword_len =
            loc.original.split_whitespace().next().map_or(0, |k| k.chars().count());
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
        source: source.to_string(),
    };
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

/// Conversion context for one node.
struct Cx<'a> {
    node: &'a Node,
    source: &'a str,
}

impl Cx<'_> {
    fn err(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(message, self.node.pos()).with_width(self.node.keyword.chars().count())
    }

    /// An error pointing at `needle` after the keyword, or at the keyword when not found.
    fn err_at(&self, message: impl Into<String>, needle: &str) -> Diagnostic {
        let (line, col) = (self.node.start_line, self.node.col);
        let skip = col.saturating_sub(1) + self.node.keyword.chars().count();
        let on_first_line = self.source.lines().nth(line.saturating_sub(1)).and_then(|text| {
            let start = text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i);
            let byte = start + text.get(start..)?.find(needle)?;
            Some(Pos::new(line, text[..byte].chars().count() + 1))
        });
        let pos = on_first_line.or_else(|| locate(self.source, line + 1, self.node.end_line, needle));
        match pos {
            Some(pos) if !needle.is_empty() => {
                Diagnostic::new(message, pos).with_width(needle.chars().count())
            }
            _ => self.err(message),
        }
    }

    fn flags(&self, spec: &[(&str, FlagKind)]) -> Result<Flags, Diagnostic> {
        Flags::parse(&self.node.flags, spec).map_err(|e| {
            // Point at the exact word when it is written as parsed (no quotes), else at its name.
            let name = e.word.split('=').next().unwrap_or(&e.word);
            let written = self.node.original.contains(e.word.as_str());
            let mut d = self.err_at(e.message, if written { &e.word } else { name });
            if !spec.is_empty() {
                let names: Vec<String> = spec.iter().map(|(n, _)| format!("--{n}")).collect();
                d = d.with_hint(format!("{} accepts {}", self.node.name(), names.join(", ")));
            } else {
                d = d.with_hint(format!("{} takes no flags", self.node.name()));
            }
            d
        })
    }

    fn args(&self) -> &[String] {
        &self.node.args
    }

    fn exactly_one(&self, what: &str) -> Result<String, Diagnostic> {
        match self.args() {
            [one] => Ok(one.clone()),
            _ => Err(self.err(format!("{what} requires exactly one argument"))),
        }
    }

    fn at_least_one(&self, what: &str) -> Result<(), Diagnostic> {
        if self.args().is_empty() {
            return Err(self.err(format!("{what} requires at least one argument")));
        }
        Ok(())
    }

    fn stage(&self, index: usize) -> Result<Stage, Diagnostic> {
        let flags = self.flags(&[("platform", FlagKind::String)])?;
        let args = self.args();
        let name = match args {
            [_] => None,
            [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                let lower = name.to_lowercase();
                if !valid_stage_name(&lower) {
                    return Err(self.err_at(
                        format!(
                            "invalid name for build stage: \"{name}\", name can't start with a number or contain symbols"
                        ),
                        name,
                    )
                    .with_hint("stage names match [a-z][a-z0-9-_.]*"));
                }
                Some(lower)
            }
            [] => {
                return Err(self
                    .err("FROM requires either one or three arguments")
                    .with_hint("write `FROM <image> [AS <name>]`"));
            }
            _ => {
                return Err(self
                    .err_at("FROM requires either one or three arguments", &args[1])
                    .with_hint("write `FROM <image> [AS <name>]`"));
            }
        };
        let doc = name.as_deref().and_then(|n| doc_comment(&self.node.comments, n));
        Ok(Stage {
            index,
            base: args[0].clone(),
            name,
            platform: flags.string("platform"),
            doc,
            loc: Loc::of(self.node),
            commands: Vec::new(),
        })
    }

    fn command(&self) -> Result<Kind, Diagnostic> {
        use FlagKind::{Bool, String as Str, Strings};
        let keyword = self.node.name();
        Ok(match keyword.as_str() {
            "RUN" => {
                let f = self.flags(&[
                    ("mount", Strings),
                    ("network", Str),
                    ("security", Str),
                    ("device", Strings),
                ])?;
                let mounts = f.strings("mount");
                for m in &mounts {
                    mount::check_unexpanded(m).map_err(|e| self.err_at(e, m))?;
                }
                let network = f.string("network");
                if let Some(n) = &network
                    && !matches!(n.as_str(), "default" | "none" | "host")
                {
                    return Err(self
                        .err_at(format!("network mode \"{n}\" not supported"), n)
                        .with_hint("use --network=default, none or host"));
                }
                let security = f.string("security");
                if let Some(s) = &security
                    && !matches!(s.as_str(), "sandbox" | "insecure")
                {
                    return Err(self
                        .err_at(format!("security mode \"{s}\" not supported"), s)
                        .with_hint("use --security=sandbox or insecure"));
                }
                let devices = f.strings("device");
                for d in &devices {
                    check_device(d).map_err(|e| self.err_at(e, d))?;
                }
                Kind::Run(Run { command: self.command_line(), mounts, network, security, devices })
            }
            "CMD" => {
                self.flags(&[])?;
                Kind::Cmd(self.command_line())
            }
            "ENTRYPOINT" => {
                self.flags(&[])?;
                Kind::Entrypoint(self.command_line())
            }
            "COPY" => {
                let f = self.flags(&[
                    ("from", Str),
                    ("chown", Str),
                    ("chmod", Str),
                    ("link", Bool),
                    ("parents", Bool),
                    ("exclude", Strings),
                ])?;
                let mut c = self.sources_and_dest("COPY")?;
                c.from = f.string("from");
                c.chown = f.string("chown");
                c.chmod = f.string("chmod");
                c.link = f.bool("link").unwrap_or(false);
                c.parents = f.bool("parents").unwrap_or(false);
                c.excludes = f.strings("exclude");
                Kind::Copy(c)
            }
            "ADD" => {
                let f = self.flags(&[
                    ("chown", Str),
                    ("chmod", Str),
                    ("link", Bool),
                    ("keep-git-dir", Bool),
                    ("checksum", Str),
                    ("unpack", Bool),
                    ("exclude", Strings),
                ])?;
                let mut c = self.sources_and_dest("ADD")?;
                c.chown = f.string("chown");
                c.chmod = f.string("chmod");
                c.link = f.bool("link").unwrap_or(false);
                c.keep_git_dir = f.bool("keep-git-dir");
                c.checksum = f.string("checksum");
                c.unpack = f.bool("unpack");
                c.excludes = f.strings("exclude");
                Kind::Add(c)
            }
            "ENV" => {
                self.flags(&[])?;
                Kind::Env(self.key_values("ENV")?)
            }
            "LABEL" => {
                self.flags(&[])?;
                Kind::Label(self.key_values("LABEL")?)
            }
            "ARG" => {
                self.flags(&[])?;
                self.at_least_one("ARG")?;
                let mut decls = Vec::new();
                for word in self.args() {
                    let (name, default) = match word.split_once('=') {
                        Some((n, v)) => (n.to_string(), Some(v.to_string())),
                        None => (word.clone(), None),
                    };
                    if name.is_empty() {
                        return Err(self.err_at("ARG names can not be blank", word));
                    }
                    let doc = doc_comment(&self.node.comments, &name);
                    decls.push(ArgDecl { name, default, doc });
                }
                Kind::Arg(decls)
            }
            "WORKDIR" => {
                self.flags(&[])?;
                Kind::Workdir(self.exactly_one("WORKDIR")?)
            }
            "USER" => {
                self.flags(&[])?;
                Kind::User(self.exactly_one("USER")?)
            }
            "STOPSIGNAL" => {
                self.flags(&[])?;
                Kind::StopSignal(self.exactly_one("STOPSIGNAL")?)
            }
            "MAINTAINER" => {
                self.flags(&[])?;
                Kind::Maintainer(self.exactly_one("MAINTAINER")?)
            }
            "VOLUME" => {
                self.flags(&[])?;
                self.at_least_one("VOLUME")?;
                let mut vols = Vec::new();
                for v in self.args() {
                    let v = super::gostr::trim_space(v);
                    if v.is_empty() {
                        return Err(self.err("VOLUME specified can not be an empty string"));
                    }
                    vols.push(v.to_string());
                }
                Kind::Volume(vols)
            }
            "EXPOSE" => {
                self.flags(&[])?;
                self.at_least_one("EXPOSE")?;
                let mut ports = self.args().to_vec();
                ports.sort();
                Kind::Expose(ports)
            }
            "HEALTHCHECK" => self.healthcheck()?,
            "SHELL" => {
                self.flags(&[])?;
                let line = self.command_line();
                if line.args.is_empty() {
                    return Err(self.err("SHELL requires at least one argument"));
                }
                if line.shell_form {
                    return Err(self
                        .err("SHELL requires the arguments to be in JSON form")
                        .with_hint("write e.g. SHELL [\"/bin/bash\", \"-c\"]"));
                }
                Kind::Shell(line.args)
            }
            "ONBUILD" => {
                self.flags(&[])?;
                let Some(trigger) = &self.node.onbuild else {
                    return Err(self.err("ONBUILD requires at least one argument"));
                };
                let inner = trigger.name();
                match inner.as_str() {
                    "ONBUILD" => {
                        return Err(self.err_at(
                            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                            &trigger.keyword,
                        ));
                    }
                    "FROM" | "MAINTAINER" => {
                        return Err(self.err_at(
                            format!("{inner} isn't allowed as an ONBUILD trigger"),
                            &trigger.keyword,
                        ));
                    }
                    _ => {}
                }
                Kind::Onbuild(onbuild_expression(self.node, trigger))
            }
            _ => {
                let mut msg = format!("unknown instruction \"{}\"", self.node.keyword);
                if let Some(s) = suggest::closest(&self.node.keyword, KEYWORDS) {
                    msg.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(self
                    .err(msg)
                    .with_hint("see https://docs.docker.com/reference/dockerfile/ for the instructions"));
            }
        })
    }

    fn command_line(&self) -> CommandLine {
        let args = self.node.args.clone();
        let files = self
            .node
            .heredocs
            .iter()
            .map(|h| InlineFile {
                name: h.name.clone(),
                data: h.content.clone(),
                chomp: h.chomp,
                expand: h.expand,
            })
            .collect();
        if self.node.json {
            CommandLine { args, shell_form: false, files }
        } else {
            // Shell form is one command string (BuildKit joins with spaces; there is only one).
            let joined = if args.is_empty() { Vec::new() } else { vec![args.join(" ")] };
            CommandLine { args: joined, shell_form: true, files }
        }
    }

    fn sources_and_dest(&self, what: &str) -> Result<Copy, Diagnostic> {
        let args = self.args();
        if args.len() < 2 {
            return Err(self
                .err(format!(
                    "{what} requires at least two arguments, but only one was provided. Destination could not be determined"
                ))
                .with_hint(format!("write `{what} <src>... <dest>`")));
        }
        let (dest, srcs) = args.split_last().unwrap_or((&args[0], &[]));
        if heredoc_from_word(dest).ok().flatten().is_some() {
            return Err(self.err_at(format!("{what} cannot accept a heredoc as a destination"), dest));
        }
        let mut c = Copy { dest: dest.clone(), json: self.node.json, ..Copy::default() };
        for src in srcs {
            match heredoc_from_word(src).ok().flatten() {
                Some(doc) => {
                    let body = self.node.heredocs.iter().find(|h| h.name == doc.name);
                    let mut data = body.map(|h: &Heredoc| h.content.clone()).unwrap_or_default();
                    if doc.chomp {
                        data = chomp_tabs(&data);
                    }
                    c.inline.push(InlineFile { name: doc.name, data, chomp: doc.chomp, expand: doc.expand });
                }
                None => c.sources.push(src.clone()),
            }
        }
        Ok(c)
    }

    fn key_values(&self, what: &str) -> Result<Vec<KeyValue>, Diagnostic> {
        let args = self.args();
        if args.is_empty() {
            return Err(self.err(format!("{what} requires at least one argument")));
        }
        if !args.len().is_multiple_of(3) {
            return Err(self.err(format!("Bad input to {what}, too many arguments")));
        }
        let mut out = Vec::new();
        for triple in args.chunks(3) {
            if triple[0].is_empty() {
                return Err(self.err(format!("{what} names can not be blank")));
            }
            out.push(KeyValue {
                key: triple[0].clone(),
                value: triple[1].clone(),
                legacy: triple[2].is_empty(),
            });
        }
        Ok(out)
    }

    fn healthcheck(&self) -> Result<Kind, Diagnostic> {
        use FlagKind::String as Str;
        let args = self.args();
        let Some(kind) = args.first() else {
            return Err(self.err("HEALTHCHECK requires at least one argument"));
        };
        let f = self.flags(&[
            ("interval", Str),
            ("timeout", Str),
            ("start-period", Str),
            ("start-interval", Str),
            ("retries", Str),
        ])?;
        let kind_upper = kind.to_uppercase();
        if kind_upper == "NONE" {
            if args.len() > 1 {
                return Err(self.err("HEALTHCHECK NONE takes no arguments"));
            }
            return Ok(Kind::Healthcheck(Health::None));
        }
        if kind_upper != "CMD" {
            return Err(self.err_at(format!("Unknown type \"{kind_upper}\" in HEALTHCHECK (try CMD)"), kind));
        }
        let cmd = &args[1..];
        if cmd.is_empty() {
            return Err(self.err("Missing command after HEALTHCHECK CMD"));
        }
        let test = if self.node.json {
            std::iter::once("CMD".to_string()).chain(cmd.iter().cloned()).collect()
        } else {
            vec!["CMD-SHELL".to_string(), cmd.join(" ")]
        };
        let duration = |name: &str| -> Result<i64, Diagnostic> {
            let Some(v) = f.string(name).filter(|v| !v.is_empty()) else { return Ok(0) };
            let ns = duration::parse_go_duration(&v).map_err(|e| self.err_at(e, &format!("--{name}")))?;
            if ns != 0 && ns < 1_000_000 {
                return Err(
                    self.err_at(format!("Interval \"{name}\" cannot be less than 1ms"), &format!("--{name}"))
                );
            }
            Ok(ns)
        };
        let retries = match f.string("retries").filter(|v| !v.is_empty()) {
            None => 0,
            Some(v) => {
                let n: i32 = v.parse().map_err(|_| {
                    self.err_at(format!("invalid value for --retries: \"{v}\" is not a number"), "--retries")
                })?;
                if n < 0 {
                    return Err(self.err_at(format!("--retries cannot be negative ({n})"), "--retries"));
                }
                i64::from(n)
            }
        };
        Ok(Kind::Healthcheck(Health::Check {
            test,
            interval: duration("interval")?,
            timeout: duration("timeout")?,
            start_period: duration("start-period")?,
            start_interval: duration("start-interval")?,
            retries,
        }))
    }
}

/// `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// A comment line above an instruction that documents `name` (`# name does X`).
fn doc_comment(comments: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name} ");
    comments.iter().find_map(|c| c.strip_prefix(&prefix).map(str::to_string))
}

/// Removes leading tabs from every line (`<<-`).
fn chomp_tabs(s: &str) -> String {
    s.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

/// The trigger text recorded for `ONBUILD`: the instruction minus the ONBUILD keyword, with heredoc
/// bodies appended so the trigger can be re-parsed on its own.
fn onbuild_expression(node: &Node, trigger: &Node) -> String {
    let original = super::gostr::trim_space(&node.original);
    let after = original.get(node.keyword.len()..).unwrap_or("");
    let mut expr = after.trim_start_matches(super::gostr::is_space).to_string();
    for h in &trigger.heredocs {
        expr.push('\n');
        expr.push_str(&h.content);
        expr.push_str(&h.name);
    }
    expr
}

/// `RUN --device=name[=value][,required[=bool]]`.
fn check_device(spec: &str) -> Result<(), String> {
    let mut name_seen = false;
    for field in spec.split(',') {
        let (key, value) = field.split_once('=').map_or((field, None), |(k, v)| (k, Some(v)));
        match key.to_lowercase().as_str() {
            "required" => {
                if let Some(v) = value
                    && !matches!(v.to_lowercase().as_str(), "true" | "false" | "1" | "0" | "t" | "f")
                {
                    return Err(format!("invalid value for required: {v}"));
                }
            }
            _ if key.is_empty() => return Err(format!("invalid device spec \"{spec}\": empty name")),
            _ => {
                if name_seen {
                    return Err(format!("invalid device spec \"{spec}\": device name already set"));
                }
                name_seen = true;
            }
        }
    }
    if !name_seen {
        return Err(format!("invalid device spec \"{spec}\": device name required"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
