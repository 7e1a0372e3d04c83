//! Planning one stage: its base, then each instruction expanded in the stage's ARG/ENV scope the way
//! BuildKit's dispatcher does (which instructions expand, which build args each step used, where
//! `--from` and mount sources point, relative paths against WORKDIR).

use std::collections::{BTreeMap, BTreeSet};

use super::scope::{EnvList, PROXY_ARGS, Scope, resolve_arg};
use super::values::{check_chmod, check_reference, check_signal, expose_ports, join_path};
use super::{BaseImages, CopyOp, Op, Options, Platform, Source, StagePlan, StageState, Step};
use crate::dockerfile::Diagnostic;
use crate::dockerfile::instructions::{ArgDecl, Copy, Dockerfile, Kind, Loc, MountType, Stage, parse_mount};
use crate::dockerfile::shell::{Lexer, Options as LexOptions, ShellError};

/// An expansion error, pointing at the word in the instruction.
pub fn err(df: &Dockerfile, loc: &Loc, word: &str, e: ShellError) -> Diagnostic {
    Diagnostic::new(format!("cannot expand `{word}`: {e}"), df.locate(loc, word))
        .with_width(word.chars().count())
}

/// RUN's `--network`, `--security` and `--device`, checked while planning so `--dry-run` reports
/// them (the frontend checks `--network`'s values). As BuildKit, `--network=host` and
/// `--security=insecure` need their entitlement (`--allow`). What hako cannot do yet (`--device`)
/// says `not supported yet` (the CLI exits 2 for it).
fn check_run_flags(
    run: &crate::dockerfile::instructions::Run,
    opts: &Options,
    loc: &Loc,
) -> Result<(), Diagnostic> {
    if !run.devices.is_empty() {
        return Err(fail(loc, "not supported yet: RUN --device"));
    }
    let entitled = |e: &str| opts.entitlements.contains(e);
    if run.network.as_deref() == Some("host") && !entitled("network.host") {
        return Err(fail(
            loc,
            "RUN --network=host needs the network.host entitlement, which this build does not allow",
        )
        .with_hint("allow it with --allow network.host (as docker buildx build)"));
    }
    if run.security.as_deref() == Some("insecure") && !entitled("security.insecure") {
        return Err(fail(
            loc,
            "RUN --security=insecure needs the security.insecure entitlement, which this build does not allow",
        )
        .with_hint("allow it with --allow security.insecure (as docker buildx build)"));
    }
    Ok(())
}

fn fail(loc: &Loc, msg: impl Into<String>) -> Diagnostic {
    Diagnostic::new(msg, loc.pos())
}

/// Plans `stage` (all earlier stages are in `done`). Returns the plan and the ARG names it declared.
#[allow(clippy::too_many_arguments)]
pub fn stage(
    stage: &Stage,
    done: &[StagePlan],
    df: &Dockerfile,
    opts: &Options,
    globals: &EnvList,
    lexer: &Lexer,
    images: &dyn BaseImages,
    default_platform: &Platform,
) -> Result<(StagePlan, Vec<String>), Diagnostic> {
    let loc = &stage.loc;
    let base =
        lexer.process_word_with_matches(&stage.base, globals).map_err(|e| err(df, loc, &stage.base, e))?;
    let mut used: BTreeMap<String, String> =
        base.matched.iter().filter_map(|k| Some((k.clone(), globals.get(k)?.to_string()))).collect();
    if base.value.is_empty() {
        return Err(fail(loc, format!("base name ({}) should not be blank", stage.base))
            .with_hint("set the ARG it uses with --build-arg or give the ARG a default"));
    }
    let platform = match &stage.platform {
        None => default_platform.clone(),
        Some(raw) => {
            let p = lexer.process_word_with_matches(raw, globals).map_err(|e| err(df, loc, raw, e))?;
            if p.value.is_empty() {
                return Err(fail(loc, format!("empty platform value from expression {raw}")));
            }
            used.extend(p.matched.iter().filter_map(|k| Some((k.clone(), globals.get(k)?.to_string()))));
            Platform::parse(&p.value)
                .map_err(|e| fail(loc, format!("failed to parse platform {raw}: {e}")))?
        }
    };

    let name = stage.name.clone();
    let context_override = name.as_ref().and_then(|n| opts.build_contexts.get(n));
    let source = if let Some(value) = context_override {
        // A named context replaces the stage of the same name entirely (buildx semantics).
        Source::Context { name: name.clone().unwrap_or_default(), value: value.clone() }
    } else if let Some(parent) = done.iter().find(|s| s.name.as_deref() == Some(base.value.as_str())) {
        Source::Stage(parent.index)
    } else if let Some((name, value)) = named_context(opts, &base.value) {
        Source::Context { name, value }
    } else if base.value == "scratch" {
        Source::Scratch
    } else {
        check_reference(&base.value).map_err(|e| {
            let lower = base.value.to_lowercase();
            let diag = fail(loc, e);
            // BuildKit stores stage names lower-cased and matches FROM against them exactly (only
            // --from, mount from= and --target ignore case), so `FROM Build` is an image name.
            if done.iter().any(|s| s.name.as_deref() == Some(lower.as_str())) {
                diag.with_hint(format!(
                    "stage names are lower-case: to build on that stage, write `FROM {lower}`"
                ))
            } else {
                diag
            }
        })?;
        Source::Image(base.value.clone())
    };
    let mut state = match &source {
        Source::Stage(i) => done[*i].final_state.clone(),
        Source::Image(r) => images.config(r, &platform),
        Source::Context { value, .. } => images.config(value, &platform),
        _ => StageState::default(),
    };
    if !matches!(source, Source::Stage(_)) {
        with_default_path(&mut state.env, &platform);
    }

    let mut cx = StageCx {
        lexer,
        df,
        opts,
        globals,
        index: stage.index,
        scope: match &source {
            Source::Stage(i) => done[*i].final_scope.inherited(),
            _ => Scope::new(state.env.clone()),
        },
        state,
        deps: BTreeSet::new(),
    };
    if let Source::Stage(i) = source {
        cx.deps.insert(i);
    }
    let mut steps = Vec::new();
    if context_override.is_none() {
        // The base's ONBUILD triggers run first, as if written right after FROM (Docker's rule);
        // the new image does not carry them on.
        for trigger in std::mem::take(&mut cx.state.onbuild) {
            let ins = crate::dockerfile::instructions::parse_trigger(&trigger, loc)?;
            let mut step = cx.step(&ins.kind, &ins.loc)?;
            step.display = format!("ONBUILD {}", step.display);
            step.trigger = true;
            steps.push(step);
        }
        for ins in &stage.commands {
            steps.push(cx.step(&ins.kind, &ins.loc)?);
        }
    }
    cx.state.env = cx.scope.image_env.clone();
    let declared = cx.scope.declared.clone();
    let final_scope = cx.scope;
    let plan = StagePlan {
        index: stage.index,
        name,
        base: source,
        platform,
        loc: loc.clone(),
        used_args: used,
        steps,
        deps: cx.deps.into_iter().collect(),
        needed: false,
        final_state: cx.state,
        final_scope,
    };
    Ok((plan, declared))
}

struct StageCx<'a> {
    lexer: &'a Lexer,
    df: &'a Dockerfile,
    opts: &'a Options,
    globals: &'a EnvList,
    index: usize,
    scope: Scope,
    state: StageState,
    deps: BTreeSet<usize>,
}

impl StageCx<'_> {
    fn step(&mut self, kind: &Kind, loc: &Loc) -> Result<Step, Diagnostic> {
        let mut used = BTreeMap::new();
        // The SHELL before the step: a SHELL instruction's own entry does not go through it.
        let shell = self.state.shell.clone();
        // ARG's entry shows the defaults as written, expanded before the ARGs are declared.
        let arg_history = match kind {
            Kind::Arg(decls) => Some(self.arg_history(decls)),
            _ => None,
        };
        let (op, display) = self.op(kind, loc, &mut used)?;
        let history = arg_history.or_else(|| super::history::created_by(&op, &shell, &self.scope));
        Ok(Step { loc: loc.clone(), op, used_args: used, display, history, trigger: false })
    }

    /// BuildKit's history entry of an ARG: each default as expanded (not the value a --build-arg
    /// or a global gives it). A default that fails to expand fails the build only where used.
    fn arg_history(&self, decls: &[ArgDecl]) -> String {
        let shown: Vec<String> = decls
            .iter()
            .map(|d| match &d.default {
                None => d.name.clone(),
                Some(raw) => {
                    let v = self.lexer.process_word(raw, &self.scope.env).unwrap_or_else(|_| raw.clone());
                    format!("{}={v}", d.name)
                }
            })
            .collect();
        format!("ARG {}", shown.join(" "))
    }

    /// A step's name in the progress output, as BuildKit's `processCmdEnv` and `uppercaseCmd`
    /// make it: the instruction as written (`original`, on one line), its keyword upper-cased, the
    /// stage's variables expanded over the whole text. RUN's name keeps its quotes and leaves
    /// unset variables as written (`raw`, BuildKit's RawQuotes and SkipUnsetEnv); COPY's, ADD's and
    /// WORKDIR's lose their quotes and expand unset variables to nothing. Text that does not expand
    /// is shown as written.
    fn step_name(&self, original: &str, raw: bool) -> String {
        let lexer = if raw {
            self.lexer.with_options(LexOptions {
                raw_quotes: true,
                skip_unset_env: true,
                ..LexOptions::default()
            })
        } else {
            *self.lexer
        };
        let text = lexer.process_word(original, &self.scope.env).unwrap_or_else(|_| original.to_string());
        match text.split_once(' ') {
            Some((keyword, rest)) => format!("{} {rest}", keyword.to_uppercase()),
            None => text.to_uppercase(),
        }
    }

    /// Expands one word, recording which ARGs it used.
    fn word(&self, w: &str, loc: &Loc, used: &mut BTreeMap<String, String>) -> Result<String, Diagnostic> {
        let r =
            self.lexer.process_word_with_matches(w, &self.scope.env).map_err(|e| err(self.df, loc, w, e))?;
        for name in r.matched {
            if self.scope.is_arg(&name)
                && let Some(v) = self.scope.env.get(&name)
            {
                used.insert(name, v.to_string());
            }
        }
        Ok(r.value)
    }

    fn words(
        &self,
        w: &str,
        loc: &Loc,
        used: &mut BTreeMap<String, String>,
    ) -> Result<Vec<String>, Diagnostic> {
        let r = self.lexer.process_words(w, &self.scope.env).map_err(|e| err(self.df, loc, w, e))?;
        // process_words has no match tracking; record ARGs the word mentions by name.
        for (name, v) in self.scope.arg_values() {
            if w.contains(&format!("${name}")) || w.contains(&format!("${{{name}")) {
                used.insert(name, v);
            }
        }
        Ok(r)
    }

    fn op(
        &mut self,
        kind: &Kind,
        loc: &Loc,
        used: &mut BTreeMap<String, String>,
    ) -> Result<(Op, String), Diagnostic> {
        Ok(match kind {
            Kind::Env(pairs) | Kind::Label(pairs) => {
                // Every pair is expanded against the environment before the instruction, as
                // BuildKit expands the whole command before applying it: `ENV a=2 b=$a` gives
                // `b` the previous `a`.
                let mut out = Vec::new();
                for kv in pairs {
                    out.push((self.word(&kv.key, loc, used)?, self.word(&kv.value, loc, used)?));
                }
                if matches!(kind, Kind::Env(_)) {
                    for (k, v) in &out {
                        self.scope.set_env(k, v);
                    }
                }
                let text = out
                    .iter()
                    .map(|(k, v)| format!("{k}={}", display_quote(v)))
                    .collect::<Vec<_>>()
                    .join(" ");
                match kind {
                    Kind::Env(_) => (Op::Env(out), format!("ENV {text}")),
                    _ => (Op::Label(out), format!("LABEL {text}")),
                }
            }
            Kind::Arg(decls) => {
                // Like ENV: all defaults are expanded before any of the ARGs is declared.
                let mut out = Vec::new();
                for d in decls {
                    let default = match &d.default {
                        Some(raw) if !self.opts.build_args.contains_key(&d.name) => {
                            Some(self.word(raw, loc, used)?)
                        }
                        _ => None,
                    };
                    out.push((
                        d.name.clone(),
                        resolve_arg(&d.name, default, &self.opts.build_args, self.globals),
                    ));
                }
                for (name, value) in &out {
                    self.scope.declare_arg(name, value.clone());
                }
                let text = out
                    .iter()
                    .map(|(k, v)| v.as_ref().map_or(k.clone(), |v| format!("{k}={v}")))
                    .collect::<Vec<_>>()
                    .join(" ");
                (Op::Arg(out), format!("ARG {text}"))
            }
            Kind::Workdir(raw) => {
                let w = self.word(raw, loc, used)?;
                let abs = join_path(&self.state.workdir, &w);
                let shown = self.step_name(&one_line(&loc.original), false);
                self.state.workdir = abs.clone();
                (Op::Workdir(abs), shown)
            }
            Kind::User(raw) => {
                let u = self.word(raw, loc, used)?;
                if u.is_empty() {
                    return Err(fail(loc, format!("USER `{raw}` expands to an empty string")));
                }
                self.state.user = u.clone();
                (Op::User(u.clone()), format!("USER {u}"))
            }
            Kind::Volume(vols) => {
                let mut out = Vec::new();
                for v in vols {
                    out.push(self.word(v, loc, used)?);
                }
                let text = format!("VOLUME {}", json_list(&out));
                (Op::Volume(out), text)
            }
            Kind::Expose(ports) => {
                let (mut out, mut words) = (Vec::new(), Vec::new());
                for p in ports {
                    for w in self.words(p, loc, used)? {
                        out.extend(expose_ports(&w).map_err(|e| fail(loc, e))?);
                        words.push(w);
                    }
                }
                // Shown as written (a range stays one word, as in BuildKit's progress).
                let text = format!("EXPOSE {}", words.join(" "));
                (Op::Expose(out), text)
            }
            Kind::StopSignal(raw) => {
                let s = self.word(raw, loc, used)?;
                check_signal(&s).map_err(|e| fail(loc, e))?;
                (Op::StopSignal(s.clone()), format!("STOPSIGNAL {s}"))
            }
            Kind::Shell(sh) => {
                self.state.shell = sh.clone();
                (Op::Shell(sh.clone()), format!("SHELL {}", json_list(sh)))
            }
            Kind::Cmd(c) => (Op::Cmd(c.clone()), format!("CMD {}", command_text(c))),
            Kind::Entrypoint(c) => (Op::Entrypoint(c.clone()), format!("ENTRYPOINT {}", command_text(c))),
            Kind::Healthcheck(h) => (Op::Healthcheck(h.clone()), one_line(&loc.original)),
            Kind::Onbuild(t) => {
                self.state.onbuild.push(t.clone());
                (Op::Onbuild(t.clone()), format!("ONBUILD {}", one_line(t)))
            }
            Kind::Maintainer(m) => (Op::Maintainer(m.clone()), format!("MAINTAINER {m}")),
            Kind::Copy(c) => self.copy(c, false, loc, used)?,
            Kind::Add(c) => self.copy(c, true, loc, used)?,
            Kind::Run(run) => {
                check_run_flags(run, self.opts, loc)?;
                let mut mounts = Vec::new();
                let mut ssh_count = 0;
                for spec in &run.mounts {
                    let expand = |w: &str| -> Result<String, String> {
                        self.word(w, loc, &mut BTreeMap::new()).map_err(|d| d.message)
                    };
                    let mut m = parse_mount(spec, &expand).map_err(|e| {
                        fail(loc, e).with_hint("see the RUN --mount reference for the keys each type accepts")
                    })?;
                    let source = match &m.from {
                        Some(from) => self.mount_source(from, m.target.as_deref().unwrap_or(""), loc)?,
                        None => Source::BuildContext,
                    };
                    mount_defaults(&mut m, &self.state.workdir, &mut ssh_count).map_err(|e| {
                        fail(loc, e).with_hint(
                            "a relative or missing target is under WORKDIR; give target= a directory other than /",
                        )
                    })?;
                    mounts.push((m, source));
                }
                // Every ARG in scope is in the command's environment, so all of them key the step.
                used.extend(self.scope.arg_values());
                let mut env = self.scope.env.clone();
                for name in PROXY_ARGS {
                    if let Some(v) = self.opts.build_args.get(name) {
                        env.set(name, v);
                    }
                }
                let op = Op::Run {
                    command: run.command.clone(),
                    shell: self.state.shell.clone(),
                    env,
                    mounts,
                    // A RUN that names no network gets the build's --network.
                    network: run
                        .network
                        .clone()
                        .or_else(|| self.opts.network.clone())
                        .unwrap_or_else(|| "default".into()),
                    security: run.security.clone().unwrap_or_else(|| "sandbox".into()),
                    devices: run.devices.clone(),
                    workdir: self.state.workdir.clone(),
                    user: self.state.user.clone(),
                    options: self.opts.step_options.clone(),
                };
                let summary = super::command::heredoc_summary(&run.command).unwrap_or_default();
                (op, self.step_name(&format!("{}{summary}", one_line(&loc.original)), true))
            }
        })
    }

    fn copy(
        &mut self,
        c: &Copy,
        add: bool,
        loc: &Loc,
        used: &mut BTreeMap<String, String>,
    ) -> Result<(Op, String), Diagnostic> {
        let from = match &c.from {
            None => Source::BuildContext,
            Some(f) => self.copy_source(f, loc)?,
        };
        if let Source::Stage(i) = from {
            self.deps.insert(i);
        }
        let mut sources = Vec::new();
        for s in &c.sources {
            sources.push(self.word(s, loc, used)?);
        }
        let mut inline = c.inline.clone();
        for f in &mut inline {
            if f.expand {
                let lexer = self.lexer.with_options(crate::dockerfile::shell::Options {
                    raw_quotes: true,
                    raw_escapes: true,
                    skip_unset_env: false,
                });
                f.data = lexer
                    .process_word(&f.data, &self.scope.env)
                    .map_err(|e| err(self.df, loc, &f.name, e))?;
            }
        }
        let dest_raw = self.word(&c.dest, loc, used)?;
        let opt =
            |v: &Option<String>, used: &mut BTreeMap<String, String>| -> Result<Option<String>, Diagnostic> {
                v.as_ref().map(|v| self.word(v, loc, used)).transpose()
            };
        let chown = opt(&c.chown, used)?;
        let chmod = opt(&c.chmod, used)?;
        if let Some(m) = &chmod {
            check_chmod(m).map_err(|e| fail(loc, e))?;
        }
        let checksum = opt(&c.checksum, used)?;
        let mut excludes = Vec::new();
        for e in &c.excludes {
            excludes.push(self.word(e, loc, used)?);
        }
        let dest = join_path(&self.state.workdir, &dest_raw);
        let shown = self.step_name(&one_line(&loc.original), false);
        let op = CopyOp {
            add,
            from,
            sources,
            inline,
            dest,
            dest_raw,
            chown,
            chmod,
            link: c.link,
            parents: c.parents,
            excludes,
            checksum,
            keep_git_dir: c.keep_git_dir,
            unpack: c.unpack,
        };
        Ok((Op::Copy(op), shown))
    }

    /// `COPY --from=`: a stage index or name (any stage, cycles are checked later), a named
    /// context, or an image. Variables are not allowed, as in BuildKit.
    fn copy_source(&self, from: &str, loc: &Loc) -> Result<Source, Diagnostic> {
        let no_env = EnvList::default();
        if self.lexer.process_word(from, &no_env).ok().as_deref() != Some(from) {
            return Err(fail(
                loc,
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
            ));
        }
        if let Ok(i) = from.parse::<usize>() {
            return if i < self.df.stages.len() {
                Ok(Source::Stage(i))
            } else {
                Err(fail(loc, format!("invalid stage index {i}")).with_hint(format!(
                    "the Dockerfile has {} stage(s), numbered from 0",
                    self.df.stages.len()
                )))
            };
        }
        let lower = from.to_lowercase();
        if let Some(s) = self.df.stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Ok(Source::Stage(s.index));
        }
        if let Some((name, value)) = named_context(self.opts, from) {
            return Ok(Source::Context { name, value });
        }
        check_reference(from)
            .map_err(|e| fail(loc, format!("--from={from} is not a stage, named context or image: {e}")))?;
        Ok(Source::Image(from.to_string()))
    }

    /// `RUN --mount from=`: like `--from`, but a stage must be defined before this step.
    fn mount_source(&mut self, from: &str, target: &str, loc: &Loc) -> Result<Source, Diagnostic> {
        let source = self.copy_source(from, loc)?;
        if let Source::Stage(i) = source {
            if i >= self.index {
                return Err(fail(
                    loc,
                    format!(
                        "cannot mount from stage \"{from}\" to \"{target}\", stage needs to be defined before current command"
                    ),
                ));
            }
            self.deps.insert(i);
        }
        Ok(source)
    }
}

/// BuildKit's `UndefinedArgInFrom` check: variables a FROM line (its base or `--platform`) uses
/// that are neither global ARGs (`declared`, with or without a value) nor automatic platform args.
pub fn undefined_args_in_from(
    stage: &Stage,
    df: &Dockerfile,
    globals: &EnvList,
    declared: &[String],
    lexer: &Lexer,
) -> Vec<crate::dockerfile::Warning> {
    let rule = crate::dockerfile::checks::UNDEFINED_ARG_IN_FROM;
    if !df.checks.enabled(&rule) {
        return Vec::new();
    }
    let known: BTreeSet<&str> = declared.iter().map(String::as_str).chain(globals.names()).collect();
    let mut unmatched = BTreeSet::new();
    for word in std::iter::once(&stage.base).chain(stage.platform.as_ref()) {
        if let Ok(r) = lexer.process_word_with_matches(word, globals) {
            unmatched.extend(r.unmatched.into_iter().filter(|n| !known.contains(n.as_str())));
        }
    }
    unmatched
        .into_iter()
        .map(|name| {
            let mut message = format!("FROM argument '{name}' is not declared");
            if let Some(s) = crate::dockerfile::instructions::closest_word(&name, known.iter().copied()) {
                message.push_str(&format!(" (did you mean {s}?)"));
            }
            crate::dockerfile::Warning {
                message,
                pos: stage.loc.pos(),
                rule: Some(rule.name),
                end_line: stage.loc.end_line,
            }
        })
        .collect()
}

/// Adds `PATH` to a base's environment when it has none (`FROM scratch`, an image without one), as
/// BuildKit does for every stage so RUN and `$PATH` see the usual directories; the image config
/// gets it too (the builder adds the same). Windows bases are left to the OS, as in BuildKit.
pub fn with_default_path(env: &mut EnvList, platform: &Platform) {
    if platform.os != "windows" && env.get("PATH").is_none() {
        env.set("PATH", crate::sandbox::DEFAULT_PATH);
    }
}

/// The `--build-context` whose name matches `reference` after BuildKit's normalisation.
fn named_context(opts: &Options, reference: &str) -> Option<(String, String)> {
    let key = super::values::context_key(reference);
    opts.build_contexts
        .iter()
        .find(|(name, _)| super::values::context_key(name) == key)
        .map(|(name, value)| (name.clone(), value.clone()))
}

/// BuildKit's defaults for mount ids and targets.
fn mount_defaults(
    m: &mut crate::dockerfile::instructions::Mount,
    workdir: &str,
    ssh_count: &mut usize,
) -> Result<(), String> {
    match m.kind {
        MountType::Secret => {
            if m.id.is_none() {
                m.id = m.source.clone().or_else(|| m.target.as_deref().map(basename));
            }
            let id = m.id.clone().unwrap_or_default();
            if m.target.is_none() && m.env.is_none() {
                m.target = Some(format!("/run/secrets/{}", basename(&id)));
            }
        }
        MountType::Ssh => {
            m.id.get_or_insert_with(|| "default".into());
            if m.target.is_none() {
                m.target = Some(format!("/run/buildkit/ssh_agent.{ssh_count}"));
            }
            *ssh_count += 1;
        }
        MountType::Bind | MountType::Cache | MountType::Tmpfs => {
            // As BuildKit (convert_runmount.go): the target is joined with the working directory,
            // a missing one is the working directory itself, and the default cache id is the
            // target as written, cleaned (Go's path.Clean), not the joined path.
            let t = m.target.clone().unwrap_or_default();
            let abs = join_path(workdir, &t);
            if abs == "/" {
                return Err("invalid mount target \"/\"".into());
            }
            if m.kind == MountType::Cache && m.id.is_none() {
                m.id = Some(go_clean(&t));
            }
            m.target = Some(abs);
        }
    }
    if let Some(t) = &m.target
        && !t.starts_with('/')
    {
        m.target = Some(join_path(workdir, t));
    }
    Ok(())
}

/// Go's `path.Clean`: `.`/`..` resolved lexically, `.` for an empty result.
fn go_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            x => parts.push(x),
        }
    }
    match (rooted, parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".into(),
        (false, false) => parts.join("/"),
    }
}

fn basename(p: &str) -> String {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_string()
}

/// A JSON array as the image history shows exec-form lists.
fn json_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| crate::dockerfile::gostr::quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

fn command_text(c: &crate::dockerfile::instructions::CommandLine) -> String {
    if c.shell_form { c.args.join(" ") } else { json_list(&c.args) }
}

fn display_quote(v: &str) -> String {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '"') {
        crate::dockerfile::gostr::quote(v)
    } else {
        v.to_string()
    }
}

/// Collapses an instruction's text onto one line for progress output.
fn one_line(s: &str) -> String {
    let t = crate::dockerfile::gostr::trim_space(s);
    match t.split_once('\n') {
        Some((first, _)) => format!("{first} …"),
        None => t.to_string(),
    }
}
