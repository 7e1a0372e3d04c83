//! Step cache keys: a versioned, canonical encoding of everything a step's result depends on,
//! hashed with sha256. The encoding is a compatibility contract (records written by one hako are
//! read by the next, and remote caches are shared between versions), so it is spelled out field
//! by field here — never derived from `Debug` or serde output, which change when a struct does —
//! and pinned by golden tests: a change to it must change [`KEY_VERSION`].
//!
//! What goes in (see docs/CACHE.md):
//! - the key of the filesystem the step starts from (the previous layer-producing step, or the
//!   stage's base: a base image's diff ids, another stage's key, or scratch) — config-only
//!   instructions (ENV, LABEL, CMD, …) are not steps of the filesystem and do not change it, so
//!   inserting a LABEL does not invalidate what follows, as in BuildKit;
//! - the instruction after expansion, as typed fields (a changed comment or spacing in the
//!   Dockerfile changes nothing here);
//! - the build args the step uses, the platform, and the clamp of file times (the build's epoch,
//!   or none with `rewrite-timestamp=false`);
//! - inputs found at build time, as labelled digests: the content checksum of COPY/ADD and bind
//!   mount sources, the key of a `--from` stage, the digest of a `--from` image or an ADD URL's
//!   content. Secret and ssh ids are keyed, never their values; cache mounts by id, never contents.
//! - Proxy variables (`HTTP_PROXY`, …) are left out of RUN's environment here, as BuildKit leaves
//!   them out of its keys: a different proxy gives the same result.

use std::collections::BTreeMap;
use std::fmt;

use crate::digest::Digest;
use crate::dockerfile::instructions::{CommandLine, InlineFile, Mount, MountType, Sharing};
use crate::plan::scope::PROXY_ARGS;
use crate::plan::{CopyOp, Op, Platform, Source};

/// The version of the key encoding and of what steps mean; part of every key. v2: COPY no longer
/// gives an existing destination directory the source's owner, and WORKDIR's missing parents
/// belong to the USER — the same inputs now make a different layer, so v1 records must not hit.
/// v3: a step that changes nothing makes an empty layer (v2 recorded none), and layers are
/// written in BuildKit's order, through the destination's links, with hard links, per-name
/// whiteouts and file capabilities — so a v2 record would give another image than a build
/// without it. v4: a `.pyc` beside its clamped source records the clamped time (`layer::pyc`), so
/// a v3 record of a Python step would give an image whose `.pyc` files are stale.
pub const KEY_VERSION: &str = "hako.cache.key.v4";

/// A step cache key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(Digest);

impl CacheKey {
    /// The 64 hex digits (used as a file name).
    pub fn hex(&self) -> &str {
        self.0.hex()
    }

    /// Parses `sha256:<hex>`.
    pub fn parse(s: &str) -> Result<CacheKey, crate::digest::BadDigest> {
        Digest::parse(s).map(CacheKey)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Builds a key from labelled fields: each is `label NUL length(u64 LE) bytes`, so no two field
/// lists encode alike.
pub struct KeyBuilder {
    buf: Vec<u8>,
}

impl KeyBuilder {
    /// A key of kind `kind` (`step`, `base-image`, …), starting with the version.
    pub fn new(kind: &str) -> KeyBuilder {
        let mut k = KeyBuilder { buf: Vec::with_capacity(512) };
        k.field("version", KEY_VERSION).field("kind", kind);
        k
    }

    /// Adds a field.
    pub fn field(&mut self, label: &str, value: impl AsRef<[u8]>) -> &mut KeyBuilder {
        let value = value.as_ref();
        self.buf.extend_from_slice(label.as_bytes());
        self.buf.push(0);
        self.buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
        self.buf.extend_from_slice(value);
        self
    }

    /// Adds a list of fields under one label: its length, then each item.
    pub fn list<I, T>(&mut self, label: &str, items: I) -> &mut KeyBuilder
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        let items: Vec<T> = items.into_iter().collect();
        self.field(label, (items.len() as u64).to_le_bytes());
        for i in &items {
            self.field("item", i);
        }
        self
    }

    fn flag(&mut self, label: &str, v: bool) -> &mut KeyBuilder {
        self.field(label, if v { "1" } else { "0" })
    }

    fn opt(&mut self, label: &str, v: Option<impl ToString>) -> &mut KeyBuilder {
        match v {
            Some(v) => self.field(label, format!("+{}", v.to_string())),
            None => self.field(label, "-"),
        }
    }

    /// The key.
    pub fn finish(&self) -> CacheKey {
        CacheKey(Digest::of(&self.buf))
    }
}

/// The key of a stage that starts from nothing.
pub fn scratch(platform: &Platform) -> CacheKey {
    KeyBuilder::new("scratch").field("platform", platform.to_string()).finish()
}

/// The key of a stage that starts from an image: its layers' diff ids (the filesystem; the
/// config reaches steps through the planned values) and the platform.
pub fn base_image(diff_ids: &[Digest], platform: &Platform) -> CacheKey {
    KeyBuilder::new("base-image")
        .list("diff-ids", diff_ids.iter().map(Digest::to_string))
        .field("platform", platform.to_string())
        .finish()
}

/// Everything a layer-producing step's key is made of.
#[derive(Clone, Copy)]
pub struct StepInputs<'a> {
    /// The key of the filesystem the step starts from.
    pub parent: &'a CacheKey,
    /// The expanded operation (RUN, COPY/ADD or WORKDIR).
    pub op: &'a Op,
    /// The build args the step uses.
    pub used_args: &'a BTreeMap<String, String>,
    /// The stage's platform.
    pub platform: &'a Platform,
    /// The clamp of file times in the layer (`build::Options::clamp`).
    pub clamp: Option<i64>,
    /// Inputs found at build time, as (label, digest or key) in a fixed order.
    pub found: &'a [(String, String)],
}

/// The key of a step.
pub fn step(i: &StepInputs<'_>) -> CacheKey {
    let mut k = declared("step", i);
    k.field("found", (i.found.len() as u64).to_le_bytes());
    for (label, value) in i.found {
        k.field(label, value);
    }
    k.finish()
}

/// The step's *shape*: its key without the inputs found at build time. Two builds where only a
/// COPY's source files differ give its step the same shape (a name for "this COPY, at this point
/// of this Dockerfile"), so the new layer can be made known as a successor of the old.
pub fn shape(i: &StepInputs<'_>) -> CacheKey {
    declared("shape", i).finish()
}

/// The key inputs the Dockerfile and the options declare.
fn declared(tag: &str, i: &StepInputs<'_>) -> KeyBuilder {
    let mut k = KeyBuilder::new(tag);
    k.field("parent", i.parent.to_string());
    k.list("used-args", i.used_args.iter().map(|(n, v)| format!("{n}={v}")));
    k.field("platform", i.platform.to_string());
    k.opt("clamp", i.clamp);
    op(&mut k, i.op);
    k
}

/// The key of the filesystem after a step with key `step` that made the layer with diff id
/// `layer`, or nothing: results, not only inputs, key what follows.
pub fn after(step: &CacheKey, layer: Option<&Digest>) -> CacheKey {
    KeyBuilder::new("after")
        .field("step", step.to_string())
        .field("layer", layer.map_or_else(|| "-".to_string(), Digest::to_string))
        .finish()
}

fn op(k: &mut KeyBuilder, op: &Op) {
    match op {
        Op::Run { command, shell, env, mounts, network, security, devices, workdir, user, options } => {
            k.field("op", "run");
            command_line(k, command);
            k.list("shell", shell);
            let env = env.0.iter().filter(|(n, _)| !PROXY_ARGS.contains(&n.as_str()));
            k.list("env", env.map(|(n, v)| format!("{n}={v}")));
            k.field("mounts", (mounts.len() as u64).to_le_bytes());
            for (m, source) in mounts {
                mount(k, m, source);
            }
            k.field("network", network).field("security", security).list("devices", devices);
            k.field("workdir", workdir).field("user", user);
            // Only when set, so keys made without these flags stay as they were.
            if !options.is_default() {
                k.list("add-host", options.extra_hosts.iter().map(|(h, ip)| format!("{h}:{ip}")));
                k.field("shm-size", options.shm_size.to_le_bytes());
                k.list("ulimit", options.ulimits.iter().map(|u| format!("{}={}:{}", u.name, u.soft, u.hard)));
            }
        }
        Op::Copy(c) => copy(k, c),
        Op::Workdir(dir) => {
            // The directory is created owned by the USER at that point (resolved through the
            // parent filesystem, which the parent key covers).
            k.field("op", "workdir").field("dir", dir);
        }
        // Config-only instructions are not keyed steps; keep the encoding total all the same.
        other => {
            k.field("op", "config").field("debug", format!("{other:?}"));
        }
    }
}

fn command_line(k: &mut KeyBuilder, c: &CommandLine) {
    k.list("args", &c.args).flag("shell-form", c.shell_form);
    inline_files(k, &c.files);
}

fn inline_files(k: &mut KeyBuilder, files: &[InlineFile]) {
    k.field("files", (files.len() as u64).to_le_bytes());
    for f in files {
        k.field("name", &f.name).field("data", &f.data).flag("chomp", f.chomp).flag("expand", f.expand);
    }
}

fn source(k: &mut KeyBuilder, label: &str, s: &Source) {
    let text = match s {
        Source::Scratch => "scratch".to_string(),
        Source::Image(r) => format!("image:{r}"),
        Source::Stage(i) => format!("stage:{i}"),
        // Not the value: a directory or layout path differs between machines, and what is read
        // from it is keyed by content (the step's found inputs).
        Source::Context { name, .. } => format!("context:{name}"),
        Source::BuildContext => "build-context".to_string(),
    };
    k.field(label, text);
}

fn mount(k: &mut KeyBuilder, m: &Mount, from: &Source) {
    let kind = match m.kind {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    };
    k.field("mount", kind);
    source(k, "from", from);
    k.opt("from-name", m.from.as_ref()).opt("source", m.source.as_ref()).opt("target", m.target.as_ref());
    k.flag("readonly", m.readonly).opt("size", m.size).opt("id", m.id.as_ref());
    let sharing = m.sharing.map(|s| match s {
        Sharing::Shared => "shared",
        Sharing::Private => "private",
        Sharing::Locked => "locked",
    });
    k.opt("sharing", sharing).flag("required", m.required).opt("env", m.env.as_ref());
    k.opt("mode", m.mode).opt("uid", m.uid).opt("gid", m.gid);
}

fn copy(k: &mut KeyBuilder, c: &CopyOp) {
    k.field("op", if c.add { "add" } else { "copy" });
    source(k, "from", &c.from);
    k.list("sources", &c.sources);
    inline_files(k, &c.inline);
    k.field("dest", &c.dest).flag("dest-dir", c.dest_raw.ends_with('/'));
    k.opt("chown", c.chown.as_ref()).opt("chmod", c.chmod.as_ref());
    k.flag("link", c.link).flag("parents", c.parents).list("excludes", &c.excludes);
    k.opt("checksum", c.checksum.as_ref()).opt("keep-git-dir", c.keep_git_dir).opt("unpack", c.unpack);
}

#[cfg(test)]
mod tests;
