//! RUN steps: everything the builder resolves before handing a step to the sandbox (argv, user,
//! environment, mounts), and what it does with the result (a layer, or a located error with the
//! step's last output lines).

use std::collections::VecDeque;
use std::path::PathBuf;

use super::progress::Event;
use super::rootfs::StageOut;
use super::{BuildError, Builder, input_error, users};
use crate::dockerfile::instructions::{CommandLine, Loc, Mount, MountType, Sharing};
use crate::dockerfile::{Diagnostic, Pos};
use crate::export::Blob;
use crate::image::manifest::Layer;
use crate::plan::{Op, Source};
use crate::sandbox::SandboxError;
use crate::sandbox::protocol::{BindFrom, Exit, LayerRef, MountRequest, Network, Process, RunRequest};

pub use crate::sandbox::DEFAULT_PATH;

/// How many output lines a failing step's error shows.
const TAIL: usize = 10;

/// Where `--secret id=…` values come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `src=FILE`.
    File(PathBuf),
    /// `env=VAR`.
    Env(String),
}

/// Runs a RUN step of stage number `stage`, `label`; returns its layer, if it changed anything.
pub fn run_step(
    b: &Builder<'_>,
    out: &mut StageOut,
    op: &Op,
    loc: &Loc,
    (stage, label, n): (usize, &str, usize),
    done: &[Option<StageOut>],
) -> Result<Option<Layer>, BuildError> {
    let Op::Run { command, .. } = op else {
        return Err(BuildError::Internal("run_step called for another instruction".into()));
    };
    let pos = loc.pos();
    let mut req = request(b, out, op, pos, done)?;
    req.tee = tee(b, stage, &out.image.layers);
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut named_proc = false;
    let mut on_output = |line: &str| {
        b.reporter.event(&Event::Output { stage: label, n, text: line });
        // `/dev/stderr`, `/dev/fd/N` (bash's `<(…)`) are links into /proc.
        named_proc |= ["/proc", "/dev/std", "/dev/fd"].iter().any(|p| line.contains(p));
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(line.trim_end_matches('\n').to_string());
    };
    let mut on_note = |n: &str| b.reporter.event(&Event::Note(n));
    let mut isolation = None;
    let result = {
        let mut fake = super::lock(&b.executor);
        match fake.as_mut() {
            Some(executor) => executor.run(&req, &mut on_output, &mut on_note),
            None => {
                drop(fake);
                b.with_sandbox(|sb| {
                    isolation = Some(sb.isolation);
                    sb.run(&req, &mut on_output, &mut on_note)
                })
                .map_err(|e| environment(e, pos))?
            }
        }
    }
    .map_err(|e| match e {
        SandboxError::Refused(msg) => input_error(format!("RUN: {msg}"), pos),
        other => environment(other, pos),
    })?;
    for n in &result.notes {
        b.reporter.event(&Event::Note(n));
    }
    if result.exit != Exit::Code(0) {
        let how = match result.exit {
            Exit::Code(c) => format!("exit {c}"),
            Exit::Signal(s) => format!("killed by signal {s}"),
        };
        let mut d = Diagnostic::new(format!("RUN failed ({how}): {}", command_text(command)), pos);
        if !tail.is_empty() {
            let lines: Vec<String> = tail.iter().map(|l| format!("  | {l}")).collect();
            d = d.with_hint(format!("the step's last output lines:\n{}", lines.join("\n")));
        }
        if named_proc && isolation == Some(crate::sandbox::Isolation::Chroot) {
            d = d.with_hint(
                "the step's output names /proc (or /dev/stdin, /dev/stdout, /dev/stderr, /dev/fd, links into \
                 it), which --isolation=chroot cannot give a step (no mounts: rustc, for one, needs \
                 /proc/self/exe); --isolation=ptrace runs it with the machine's /proc",
            );
        }
        return Err(BuildError::Input(d));
    }
    let layer = result
        .layer
        .map(|l| l.to_layer().map_err(|e| BuildError::Internal(format!("layer from the sandbox: {e}"))))
        .transpose()?;
    if let Some(l) = &layer {
        // The helper hashed the blob as it wrote it.
        b.store.note_written(&l.digest);
        if result.teed
            && let Some(spool) = super::lock(&b.spool).as_mut()
            && let Err(e) = spool.teed(&Blob { digest: l.digest.clone(), size: l.size })
        {
            b.reporter.event(&Event::Warning(&format!("the archive will be written at the end: {e}")));
        }
    }
    Ok(layer)
}

/// Where in the spooled archive a step of stage `stage` on `layers` copies its layer's blob,
/// when the stage's layers are the image's (see [`crate::export::spool`]).
fn tee(b: &Builder<'_>, stage: usize, layers: &[Layer]) -> Option<u64> {
    let mut guard = super::lock(&b.spool);
    let spool = guard.as_mut()?;
    if !b.image_stages().contains(&stage) {
        return None;
    }
    let blobs: Vec<Blob> = layers.iter().map(|l| Blob { digest: l.digest.clone(), size: l.size }).collect();
    spool.prepare(b.store, &blobs)
}

/// The step as the executor takes it: argv, environment, user, mounts with their sources.
fn request(
    b: &Builder<'_>,
    out: &mut StageOut,
    op: &Op,
    pos: Pos,
    done: &[Option<StageOut>],
) -> Result<RunRequest, BuildError> {
    let Op::Run { command, shell, env, mounts, network, security, workdir, user, options, .. } = op else {
        return Err(BuildError::Internal("not a RUN".into()));
    };
    // The planner refused every other value.
    let network = if network == "none" { Network::None } else { Network::Host };
    let (uid, gid, groups) = resolve_user(b, out, user).map_err(|e| {
        BuildError::Input(Diagnostic::new(format!("RUN as USER {user}: {e}"), pos).with_hint(
            "create the user in an earlier step (e.g. RUN adduser) or give numeric ids, USER 1000:1000",
        ))
    })?;
    let mut envs: Vec<String> = env.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !env.0.iter().any(|(k, _)| k == "PATH") {
        envs.push(format!("PATH={DEFAULT_PATH}"));
    }
    let mut requests = Vec::new();
    for (m, source) in mounts {
        if let Some(r) = mount_request(b, m, source, done, &mut envs, pos)? {
            requests.push(r);
        }
    }
    let (args, script) = crate::plan::run_argv(command, shell);
    if let Some((target, data)) = script {
        requests.push(MountRequest::Secret { data, target, mode: 0o755, uid: 0, gid: 0 });
    }
    let cwd = if workdir.is_empty() { "/".into() } else { workdir.clone() };
    let layers: Vec<LayerRef> = out.image.layers.iter().map(LayerRef::from_layer).collect();
    let successors = super::lock(&b.successors)
        .iter()
        .filter(|s| layers.iter().any(|l| l.diff_id == s.layer.diff_id))
        .cloned()
        .collect();
    Ok(RunRequest {
        layers,
        successors,
        process: Process { args, env: envs, cwd, uid, gid, groups },
        network,
        mounts: requests,
        commit: true,
        clamp: b.options.clamp(),
        compression: b.options.layer_codec().compression().name().into(),
        level: b.options.layer_codec().level(),
        options: options.clone(),
        insecure: security == "insecure",
        tee: None,
    })
}

fn environment(e: SandboxError, pos: Pos) -> BuildError {
    BuildError::Environment(Diagnostic::new(format!("cannot run the step: {e}"), pos))
}

fn command_text(c: &CommandLine) -> String {
    if c.shell_form { c.args.join(" ") } else { format!("{:?}", c.args) }
}

/// USER → uid, primary gid and supplementary groups, through the image's passwd and group files
/// (Docker's rules: a name must exist; a numeric uid need not, its group is then 0).
fn resolve_user(
    b: &Builder<'_>,
    out: &mut StageOut,
    spec: &str,
) -> Result<(u32, u32, Vec<u32>), users::UserError> {
    if spec.is_empty() {
        // Root, in group 0 (among its supplementary groups too, as in BuildKit).
        return Ok((0, 0, vec![0]));
    }
    let passwd = out.read_file(b, "etc/passwd");
    let group = out.read_file(b, "etc/group");
    users::resolve_user(spec, passwd.as_deref(), group.as_deref())
}

/// A `--mount` as the helper needs it; `None` for an optional secret that was not given.
fn mount_request(
    b: &Builder<'_>,
    m: &Mount,
    source: &Source,
    done: &[Option<StageOut>],
    env: &mut Vec<String>,
    pos: Pos,
) -> Result<Option<MountRequest>, BuildError> {
    let target = m.target.clone().unwrap_or_default();
    Ok(Some(match m.kind {
        MountType::Bind => {
            let from = bind_from(b, source, done, pos)?;
            MountRequest::Bind {
                from,
                source: m.source.clone().unwrap_or_else(|| ".".into()),
                target,
                rw: !m.readonly,
            }
        }
        MountType::Cache => {
            // BuildKit: `from` (a stage, context or image) is what a new cache starts with; a
            // cache that travelled with `--cache-from` (cache-mounts=true) comes before that.
            let key = cache_dir_key(m);
            let seed = match (imported_mount(b, &key), &m.from) {
                (Some(layer), _) => Some((BindFrom::Layers(vec![LayerRef::from_layer(&layer)]), ".".into())),
                (None, Some(_)) => {
                    Some((bind_from(b, source, done, pos)?, m.source.clone().unwrap_or_else(|| ".".into())))
                }
                (None, None) => None,
            };
            MountRequest::Cache {
                key,
                target,
                sharing: match m.sharing.unwrap_or(Sharing::Shared) {
                    Sharing::Shared => "shared",
                    Sharing::Private => "private",
                    Sharing::Locked => "locked",
                }
                .into(),
                mode: m.mode.unwrap_or(0o755),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
                readonly: m.readonly,
                seed,
            }
        }
        MountType::Tmpfs => MountRequest::Tmpfs { target, size: m.size.unwrap_or(0) },
        MountType::Secret => return secret_mount(b, m, target, env, pos),
        MountType::Ssh => return ssh_mount(b, m, target, env, pos),
    }))
}

/// A secret mount (a file, or `env=` only); `None` for an optional secret that was not given.
fn secret_mount(
    b: &Builder<'_>,
    m: &Mount,
    target: String,
    env: &mut Vec<String>,
    pos: Pos,
) -> Result<Option<MountRequest>, BuildError> {
    let id = m.id.clone().unwrap_or_default();
    let Some(data) = secret(b, &id, pos)? else {
        let hint = format!("pass it with --secret id={id},src=FILE or --secret id={id},env=VAR");
        return not_given(m, format!("secret {id:?}"), hint, pos);
    };
    if let Some(var) = &m.env {
        let value = String::from_utf8(data.clone()).map_err(|_| {
            input_error(format!("secret {id:?} is not UTF-8 text, so it cannot be env={var}"), pos)
        })?;
        env.retain(|e| !e.starts_with(&format!("{var}=")));
        env.push(format!("{var}={value}"));
        if m.target.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(MountRequest::Secret {
        data,
        target,
        mode: m.mode.unwrap_or(0o400),
        uid: m.uid.unwrap_or(0),
        gid: m.gid.unwrap_or(0),
    }))
}

/// A secret or agent that was not given: an error when the mount is `required`, else no mount.
fn not_given(m: &Mount, what: String, hint: String, pos: Pos) -> Result<Option<MountRequest>, BuildError> {
    if m.required {
        return Err(hinted(format!("{what} is required but was not given"), hint, pos));
    }
    Ok(None)
}

/// An ssh agent mount; `None` for an optional agent that was not given.
fn ssh_mount(
    b: &Builder<'_>,
    m: &Mount,
    target: String,
    env: &mut Vec<String>,
    pos: Pos,
) -> Result<Option<MountRequest>, BuildError> {
    let id = m.id.clone().unwrap_or_else(|| "default".into());
    let Some(socket) = b.options.ssh.get(&id) else {
        let hint = format!("pass it with --ssh {id} (the agent in $SSH_AUTH_SOCK) or --ssh {id}=SOCKET");
        return not_given(m, format!("ssh agent {id:?}"), hint, pos);
    };
    if !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
        env.push(format!("SSH_AUTH_SOCK={target}"));
    }
    Ok(Some(MountRequest::Ssh {
        socket: absolute(socket)?,
        target,
        mode: m.mode.unwrap_or(0o600),
        uid: m.uid.unwrap_or(0),
        gid: m.gid.unwrap_or(0),
    }))
}

/// The files a bind mount (or a cache's seed) takes its source from.
fn bind_from(
    b: &Builder<'_>,
    source: &Source,
    done: &[Option<StageOut>],
    pos: Pos,
) -> Result<BindFrom, BuildError> {
    let layers = |image: &crate::image::manifest::Image| {
        BindFrom::Layers(image.layers.iter().map(LayerRef::from_layer).collect())
    };
    Ok(match source {
        Source::BuildContext => BindFrom::Host(context_for_mounts(b)?),
        Source::Context { value, .. } if !value.contains("://") => {
            BindFrom::Host(absolute(std::path::Path::new(value))?)
        }
        Source::Stage(j) => {
            let s = done
                .get(*j)
                .and_then(Option::as_ref)
                .ok_or_else(|| BuildError::Internal(format!("stage {j} not built")))?;
            layers(&s.image)
        }
        Source::Image(r) => {
            let image = b
                .bases
                .image(r, &b.plan.target_platform)
                .map_err(|e| e.input_error(format!("--mount from={r}: {e}"), pos))?;
            layers(&image)
        }
        Source::Context { name, value } => {
            let image = b
                .bases
                .image(value, &b.plan.target_platform)
                .map_err(|e| input_error(format!("--mount from={name}: {e}"), pos))?;
            layers(&image)
        }
        Source::Scratch => BindFrom::Layers(Vec::new()),
    })
}

/// The build context as a bind mount sees it: the directory itself, or, when a `.dockerignore`
/// applies, a view without what it hides (hard links where possible), made once per build — as in
/// BuildKit, where ignored files never reach the builder at all.
fn context_for_mounts(b: &Builder<'_>) -> Result<String, BuildError> {
    use super::copy::{Content, Ownership, SourceRoot};
    use crate::layer::index::Kind;
    let Some(ignore) = b.context.ignore() else { return absolute(b.context.root()) };
    if let Some(p) = b.mount_context.get() {
        return Ok(p.clone());
    }
    let tmp = b.store.temp_dir("context-")?;
    let view = tmp.path().join("context");
    fs_err::create_dir(&view)?;
    let src = SourceRoot {
        dir: b.context.root(),
        index: None,
        ignore: Some(ignore),
        name: "the build context".into(),
    };
    let empty = crate::layer::index::FsIndex::new();
    let entries =
        super::copy::collect(&src, &[".".to_string()], "/", &empty, &Ownership::default(), false, &[], None)
            .map_err(|e| BuildError::Internal(format!("preparing the build context for RUN --mount: {e}")))?;
    for (path, e) in &entries {
        let dst = view.join(path);
        match (&e.meta.kind, &e.content) {
            (Kind::Dir, _) => fs_err::create_dir_all(&dst)?,
            (Kind::File, Content::File(from)) => {
                if let Some(parent) = dst.parent() {
                    fs_err::create_dir_all(parent)?;
                }
                if std::fs::hard_link(from, &dst).is_err() {
                    fs_err::copy(from, &dst)?;
                }
            }
            (Kind::Symlink(target), _) => std::os::unix::fs::symlink(target, &dst)?,
            _ => {}
        }
    }
    let kept = tmp.keep();
    b.keep_temp(kept);
    let path = absolute(&view)?;
    let _ = b.mount_context.set(path.clone());
    Ok(path)
}

/// `p` as an absolute path string (the helper works in other directories).
fn absolute(p: &std::path::Path) -> Result<String, BuildError> {
    std::path::absolute(p)
        .map(|a| a.to_string_lossy().into_owned())
        .map_err(|e| BuildError::Internal(format!("{}: {e}", p.display())))
}

/// The key of a cache mount (`None` for other mounts).
pub(super) fn cache_mount_key(m: &Mount) -> Option<String> {
    (m.kind == MountType::Cache).then(|| cache_dir_key(m))
}

/// The directory name of a cache mount: its `id`, else its target, hashed.
fn cache_dir_key(m: &Mount) -> String {
    cache_key(m.id.as_deref().or(m.target.as_deref()).unwrap_or_default())
}

/// An imported cache mount's contents, when this store has no such cache yet (in any isolation
/// mode's tree); a layer that cannot be pulled is a warning.
fn imported_mount(b: &Builder<'_>, key: &str) -> Option<crate::image::manifest::Layer> {
    let sandbox = b.store.root().join("sandbox");
    if ["root", "rootless", "chroot", "ptrace"]
        .iter()
        .any(|m| sandbox.join(m).join("cache").join(key).exists())
    {
        return None;
    }
    match b.imported.mount(b.store, b.bases.registry(), key)? {
        Ok(layer) => Some(layer),
        Err(e) => {
            b.reporter
                .event(&Event::Warning(&format!("a cache mount from the cache could not be pulled: {e}")));
            None
        }
    }
}

/// A file-name-safe key for a cache id (ids are free text, paths included).
fn cache_key(id: &str) -> String {
    crate::digest::Digest::of(id.as_bytes()).hex()[..32].to_string()
}

/// The value of secret `id`, if it was given.
fn secret(b: &Builder<'_>, id: &str, pos: Pos) -> Result<Option<Vec<u8>>, BuildError> {
    match b.options.secrets.get(id) {
        None => Ok(None),
        Some(SecretSource::File(p)) => std::fs::read(p)
            .map(Some)
            .map_err(|e| input_error(format!("secret {id:?}: reading {}: {e}", p.display()), pos)),
        Some(SecretSource::Env(var)) => match std::env::var_os(var) {
            Some(v) => Ok(Some(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec())),
            None => Err(input_error(format!("secret {id:?}: environment variable {var} is not set"), pos)),
        },
    }
}

/// An input error with a hint.
fn hinted(message: String, hint: String, pos: Pos) -> BuildError {
    BuildError::Input(Diagnostic::new(message, pos).with_hint(hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_are_stable_and_safe() {
        assert_eq!(cache_key("/root/.cache"), cache_key("/root/.cache"));
        assert_ne!(cache_key("a"), cache_key("b"));
        assert!(cache_key("../x/y").chars().all(|c| c.is_ascii_hexdigit()));
    }
}
