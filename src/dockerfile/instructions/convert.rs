//! Node → typed instruction conversion: flag sets per instruction, argument counts and shapes,
//! BuildKit's messages, and positions that point at the offending word.

use super::flags::{FlagKind, Flags};
use super::{
    ArgDecl, CommandLine, Copy, Health, InlineFile, KEYWORDS, KeyValue, Kind, Loc, Run, Stage, duration,
    mount, suggest,
};
use crate::dockerfile::error::{Diagnostic, Pos, locate};
use crate::dockerfile::parser::{Heredoc, Node, heredoc_from_word};

/// Conversion context for one node.
pub(super) struct Cx<'a> {
    pub node: &'a Node,
    pub source: &'a str,
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

    pub fn stage(&self, index: usize) -> Result<Stage, Diagnostic> {
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

    pub fn command(&self) -> Result<Kind, Diagnostic> {
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
                    let v = crate::dockerfile::gostr::trim_space(v);
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
    let original = crate::dockerfile::gostr::trim_space(&node.original);
    let after = original.get(node.keyword.len()..).unwrap_or("");
    let mut expr = after.trim_start_matches(crate::dockerfile::gostr::is_space).to_string();
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
