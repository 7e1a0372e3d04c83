//! Build planning: typed instructions + build options → a [`Plan`]: each stage's base, its steps
//! with every value expanded in the right ARG/ENV scope, the build args each step uses (an input of
//! its cache key), the stage dependency graph, and which stages `--target` needs.
//!
//! Planning never touches the network or the kernel. What it needs to know about base images (their
//! ENV, so later expansions see it) comes through [`BaseImages`], which the builder backs with the
//! image store and a dry run backs with nothing.

mod command;
pub use command::{config_argv, run_argv};
mod display;
mod expand;
mod history;
pub use expand::with_default_path;
mod values;
pub use values::{apply_chmod, check_reference, context_key, join_path};
mod graph;
pub mod scope;

use std::collections::BTreeMap;

/// Platforms are image objects (manifests select by them); the planner uses them for
/// `--platform` and the `TARGETPLATFORM` family.
pub use crate::image::platform::{self, Platform};
use scope::{EnvList, platform_args, resolve_arg};

use crate::dockerfile::instructions::{CommandLine, Dockerfile, Health, InlineFile, Loc, Mount};
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::{Diagnostic, Warning};

/// What the planner needs from outside: the build's options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--build-arg` values (already resolved from the environment for bare names).
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// The platform to build for (default: the host's).
    pub platform: Option<Platform>,
    /// `--build-context NAME=VALUE`.
    pub build_contexts: BTreeMap<String, String>,
    /// `--network`: the network of RUN steps that name none (`None` or `default`: the default).
    pub network: Option<String>,
    /// `--allow`: the entitlements granted (`network.host`, `security.insecure`).
    pub entitlements: std::collections::BTreeSet<String>,
    /// `--add-host`, `--shm-size`, `--ulimit`: for every RUN step.
    pub step_options: crate::sandbox::protocol::StepOptions,
}

/// Facts about base images the planner needs: the config values later instructions read (ENV for
/// expansion, WORKDIR for relative paths, USER and SHELL for RUN).
pub trait BaseImages {
    /// The config of `reference` for `platform`, or the defaults when unknown.
    fn config(&self, reference: &str, platform: &Platform) -> StageState;
}

/// A [`BaseImages`] that knows nothing (dry runs): images are treated as having an empty config.
pub struct Unresolved;

impl BaseImages for Unresolved {
    fn config(&self, _reference: &str, _platform: &Platform) -> StageState {
        StageState::default()
    }
}

/// Where a stage's root filesystem, or a `COPY --from`/`RUN --mount from=` source, comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The empty filesystem.
    Scratch,
    /// An image reference, as expanded.
    Image(String),
    /// Another stage (by index).
    Stage(usize),
    /// A named `--build-context`.
    Context {
        /// The context name.
        name: String,
        /// Its value (directory, `docker-image://…`, `oci-layout://…`).
        value: String,
    },
    /// The main build context (COPY without `--from`).
    BuildContext,
}

/// One planned step: a typed operation with every value expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Where it comes from in the Dockerfile.
    pub loc: Loc,
    /// What it does.
    pub op: Op,
    /// Build args (name → value) whose values this step depends on: part of its cache key.
    pub used_args: BTreeMap<String, String>,
    /// The instruction as shown in progress output.
    pub display: String,
    /// Its image history entry (`created_by`) as BuildKit writes it; `None` for ONBUILD, which
    /// has none.
    pub history: Option<String>,
    /// One of the base image's ONBUILD triggers, run as if written right after FROM.
    pub trigger: bool,
}

/// An expanded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `RUN`.
    Run {
        /// The command (shell form is run through `shell`).
        command: CommandLine,
        /// The stage's SHELL at this point.
        shell: Vec<String>,
        /// The environment the command sees (image ENV + ARG values + proxy build args).
        env: EnvList,
        /// Expanded, parsed mounts with their resolved sources.
        mounts: Vec<(Mount, Source)>,
        /// `--network`.
        network: String,
        /// `--security`.
        security: String,
        /// `--device` specs.
        devices: Vec<String>,
        /// Working directory.
        workdir: String,
        /// User.
        user: String,
        /// The build's `--add-host`, `--shm-size` and `--ulimit`.
        options: crate::sandbox::protocol::StepOptions,
    },
    /// `COPY` or `ADD`.
    Copy(CopyOp),
    /// `ENV` pairs.
    Env(Vec<(String, String)>),
    /// `LABEL` pairs.
    Label(Vec<(String, String)>),
    /// `ARG` names and values.
    Arg(Vec<(String, Option<String>)>),
    /// `WORKDIR`, made absolute.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `EXPOSE` ports, `port/proto`.
    Expose(Vec<String>),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Health),
    /// `SHELL`.
    Shell(Vec<String>),
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `ONBUILD` trigger.
    Onbuild(String),
    /// `MAINTAINER`.
    Maintainer(String),
}

/// An expanded `COPY`/`ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOp {
    /// `ADD` rather than `COPY`.
    pub add: bool,
    /// Where the sources are read from.
    pub from: Source,
    /// Source paths/globs/URLs.
    pub sources: Vec<String>,
    /// Heredoc sources, expanded when allowed.
    pub inline: Vec<InlineFile>,
    /// Destination, made absolute against the working directory.
    pub dest: String,
    /// Destination as written (a trailing `/` matters).
    pub dest_raw: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude`.
    pub excludes: Vec<String>,
    /// `--checksum`.
    pub checksum: Option<String>,
    /// `--keep-git-dir`.
    pub keep_git_dir: Option<bool>,
    /// `--unpack`.
    pub unpack: Option<bool>,
}

/// A planned stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan {
    /// Index among the Dockerfile's stages.
    pub index: usize,
    /// `AS name`.
    pub name: Option<String>,
    /// The base.
    pub base: Source,
    /// The platform it builds for.
    pub platform: Platform,
    /// The FROM line.
    pub loc: Loc,
    /// Build args the FROM line used (part of the base's key).
    pub used_args: BTreeMap<String, String>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Stages this one reads from (base, `COPY --from`, `RUN --mount from=`).
    pub deps: Vec<usize>,
    /// Whether the target needs it.
    pub needed: bool,
    /// The image-config state at the end of the stage (what a stage built on this one inherits).
    pub final_state: StageState,
    /// The ARG/ENV scope at the end of the stage (what a stage built on this one starts with).
    pub final_scope: scope::Scope,
}

/// The parts of a stage's image config that later instructions read while planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageState {
    /// ENV (image config order).
    pub env: EnvList,
    /// WORKDIR (absolute).
    pub workdir: String,
    /// USER (empty: root).
    pub user: String,
    /// SHELL for shell-form commands.
    pub shell: Vec<String>,
    /// ONBUILD triggers, run first by any stage built on this one.
    pub onbuild: Vec<String>,
}

impl Default for StageState {
    fn default() -> Self {
        StageState {
            onbuild: Vec::new(),
            env: EnvList::default(),
            workdir: "/".into(),
            user: String::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
        }
    }
}

impl StagePlan {
    /// `name` or `stage-N`, as BuildKit labels stages.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every stage in file order (unneeded ones too, marked).
    pub stages: Vec<StagePlan>,
    /// The target stage.
    pub target: usize,
    /// Needed stages in build order (dependencies first; the target last).
    pub order: Vec<usize>,
    /// Build platform.
    pub build_platform: Platform,
    /// Target platform.
    pub target_platform: Platform,
    /// Global (pre-FROM) ARGs and the automatic platform args, as FROM lines see them.
    pub global_args: EnvList,
    /// `--build-arg` names that no ARG consumed.
    pub unused_build_args: Vec<String>,
    /// Build-check findings that need the planner (`UndefinedArgInFrom`).
    pub warnings: Vec<Warning>,
}

/// Plans `df` with `opts`.
pub fn plan(df: &Dockerfile, opts: &Options, images: &dyn BaseImages) -> Result<Plan, Diagnostic> {
    let lexer = Lexer::new(df.escape);
    let build_platform = Platform::host();
    let target_platform = opts.platform.clone().unwrap_or_else(|| build_platform.clone());
    let target = graph::resolve_target(df, opts.target.as_deref())?;
    let target_name = df.stages[target].name.clone().unwrap_or_default();

    // Global scope: automatic platform args, then the ARGs before the first FROM.
    let mut globals = platform_args(&build_platform, &target_platform, &target_name, &opts.build_args);
    let mut declared: Vec<String> = Vec::new();
    for (decls, loc) in &df.meta_args {
        for d in decls {
            let default = match &d.default {
                Some(raw) => {
                    Some(lexer.process_word(raw, &globals).map_err(|e| expand::err(df, loc, raw, e))?)
                }
                None => None,
            };
            if let Some(v) = resolve_arg(&d.name, default, &opts.build_args, &EnvList::default()) {
                globals.set(&d.name, &v);
            }
            declared.push(d.name.clone());
        }
    }

    let mut stages: Vec<StagePlan> = Vec::with_capacity(df.stages.len());
    let mut warnings = Vec::new();
    let global_names = declared.clone();
    for stage in &df.stages {
        warnings.extend(expand::undefined_args_in_from(stage, df, &globals, &global_names, &lexer));
        let planned = expand::stage(stage, &stages, df, opts, &globals, &lexer, images, &target_platform)?;
        declared.extend(planned.1);
        stages.push(planned.0);
    }

    let order = graph::build_order(&mut stages, target)?;
    let mut unused: Vec<String> = opts
        .build_args
        .keys()
        .filter(|k| {
            // The epoch's arg sets the build's epoch whether or not an ARG reads it.
            !declared.contains(k)
                && !scope::PROXY_ARGS.contains(&k.as_str())
                && k.as_str() != scope::EPOCH_ARG
                && globals.get(k).is_none()
        })
        .cloned()
        .collect();
    unused.sort();
    Ok(Plan {
        stages,
        target,
        order,
        build_platform,
        target_platform,
        global_args: globals,
        unused_build_args: unused,
        warnings,
    })
}

#[cfg(test)]
mod tests;
