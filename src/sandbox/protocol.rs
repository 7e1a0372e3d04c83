//! What the builder and its sandbox helper say to each other: one JSON object per line, requests
//! on the helper's stdin, replies on its stdout. A request gets any number of [`Reply::Output`]
//! lines and then exactly one [`Reply::Done`] or [`Reply::Failed`].

use serde::{Deserialize, Serialize};

/// A layer as the helper needs it: where its blob is and what it contains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Blob digest (`sha256:…`).
    pub digest: String,
    /// Uncompressed digest.
    pub diff_id: String,
    /// Blob size.
    pub size: u64,
    /// Media type (tells the compression).
    pub media_type: String,
}

impl LayerRef {
    /// The wire form of an image layer.
    pub fn from_layer(l: &crate::image::manifest::Layer) -> LayerRef {
        LayerRef {
            digest: l.digest.to_string(),
            diff_id: l.diff_id.to_string(),
            size: l.size,
            media_type: l.media_type.to_string(),
        }
    }

    /// Back to an image layer.
    pub fn to_layer(&self) -> Result<crate::image::manifest::Layer, crate::digest::BadDigest> {
        Ok(crate::image::manifest::Layer {
            digest: crate::digest::Digest::parse(&self.digest)?,
            diff_id: crate::digest::Digest::parse(&self.diff_id)?,
            size: self.size,
            media_type: self.media_type.as_str().into(),
        })
    }
}

/// `--network` of a RUN step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// The host's network (BuildKit's default for RUN).
    Host,
    /// A private network namespace with only loopback.
    None,
}

/// Where a bind mount's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindFrom {
    /// A host directory (the build context, a named context).
    Host(String),
    /// An image or stage: its layers, bottom first.
    Layers(Vec<LayerRef>),
}

/// One `RUN --mount`, resolved by the builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountRequest {
    /// `type=bind`.
    Bind {
        /// The tree the source is in.
        from: BindFrom,
        /// Path inside that tree (relative; symlinks resolve inside it).
        source: String,
        /// Absolute target in the step.
        target: String,
        /// `rw`: writable, writes discarded after the step.
        rw: bool,
    },
    /// `type=cache`.
    Cache {
        /// A file-name-safe key derived from the cache id.
        key: String,
        /// Absolute target in the step.
        target: String,
        /// `shared`, `private` or `locked`.
        sharing: String,
        /// Mode, owner and group of a new cache directory.
        mode: u32,
        /// Owner of a new cache directory.
        uid: u32,
        /// Group of a new cache directory.
        gid: u32,
        /// `ro`.
        readonly: bool,
        /// `from=` and `source=`: what a new cache starts with (`None`: empty).
        seed: Option<(BindFrom, String)>,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// Absolute target.
        target: String,
        /// Bytes (0: kernel default).
        size: u64,
    },
    /// `type=secret` (as a file; secrets given as `env=` are in the request's env).
    Secret {
        /// The secret's bytes (never written outside the helper's private tmpfs).
        data: Vec<u8>,
        /// Absolute target.
        target: String,
        /// File mode.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// `type=ssh`: an agent socket on the host, bind-mounted at `target`.
    Ssh {
        /// The host socket.
        socket: String,
        /// Absolute target.
        target: String,
        /// Mode of the socket file in the step.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
}

/// The process a step runs, whatever runs it (libcontainer or chroot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// argv.
    pub args: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// User id in the step.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// What the build's command line sets for every RUN step (`--add-host`, `--shm-size`,
/// `--ulimit`); the default is what a step gets without them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOptions {
    /// `--add-host`: `(host, ip)` lines added to the step's `/etc/hosts`.
    #[serde(default)]
    pub extra_hosts: Vec<(String, String)>,
    /// `--shm-size` in bytes (0: Docker's 64 MiB).
    #[serde(default)]
    pub shm_size: u64,
    /// `--ulimit`s.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
}

impl StepOptions {
    /// Whether nothing was set (then the step's cache key is as without them).
    pub fn is_default(&self) -> bool {
        *self == StepOptions::default()
    }
}

/// One `--ulimit`: an rlimit of the step's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Lower-case name as Docker spells it (`nofile`, `nproc`, …).
    pub name: String,
    /// Soft limit (`u64::MAX`: unlimited).
    pub soft: u64,
    /// Hard limit (`u64::MAX`: unlimited).
    pub hard: u64,
}

/// Run one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    /// The parent filesystem's layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// What to run.
    pub process: Process,
    /// `--network`.
    pub network: Network,
    /// `--mount`s.
    pub mounts: Vec<MountRequest>,
    /// Turn the change into a layer (false: discard it, e.g. for benchmarks).
    pub commit: bool,
    /// `SOURCE_DATE_EPOCH` clamp for the layer's mtimes.
    pub clamp: Option<i64>,
    /// How the layer is made: `gzip`, `zstd` or `none`...
    pub compression: String,
    /// ...at this level (see [`crate::layer::Codec::new`]; ignored for `none`).
    #[serde(default)]
    pub level: u32,
    /// Layers that replace an earlier version of themselves (a COPY whose sources changed): their
    /// snapshot may be made from the earlier one's plus the difference.
    #[serde(default)]
    pub successors: Vec<Successor>,
    /// `--add-host`, `--shm-size`, `--ulimit`.
    #[serde(default)]
    pub options: StepOptions,
    /// `RUN --security=insecure` (entitled by `--allow security.insecure`): the step runs
    /// privileged, as `docker run --privileged` (see [`crate::sandbox::spec::Privileged`]).
    #[serde(default)]
    pub insecure: bool,
    /// Where in the archive the helper was started with ([`crate::sandbox::Sandbox::start_with`])
    /// the layer's blob is copied as it is made (see [`crate::export::spool`]).
    #[serde(default)]
    pub tee: Option<u64>,
}

impl RunRequest {
    /// How the layer is made: [`RunRequest::compression`] at [`RunRequest::level`].
    pub fn codec(&self) -> Result<crate::layer::Codec, crate::layer::LevelError> {
        use crate::layer::{Codec, Compression};
        match Compression::from_name(&self.compression) {
            Compression::None => Ok(Codec::from(Compression::None)),
            c => Codec::new(c, Some(i64::from(self.level))),
        }
    }
}

/// A layer that is a new version of another over the same parent (see [`RunRequest::successors`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Successor {
    /// The new layer.
    pub layer: LayerRef,
    /// The layer it replaces.
    pub replaces: LayerRef,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Run a step.
    Run(Box<RunRequest>),
    /// Remove every snapshot, cache mount and leftover run directory under `<store>/sandbox`
    /// (`hako prune`; the builder holds the store's sandbox lock exclusively).
    Wipe,
    /// Write the contents of cache mount `key` as a layer (for a remote cache that carries cache
    /// mounts); the helper reads it, as only it sees rootless owners as the steps do.
    ExportCache {
        /// The cache's directory name (the hashed cache id).
        key: String,
        /// `gzip`, `zstd` or `none`.
        compression: String,
        /// `SOURCE_DATE_EPOCH`.
        clamp: Option<i64>,
    },
}

/// How the step's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exit {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// The result of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// How the command ended.
    pub exit: Exit,
    /// The layer (when the command succeeded, `commit` was asked and something changed).
    pub layer: Option<LayerRef>,
    /// Things worth telling the user (fallbacks, skipped device nodes).
    pub notes: Vec<String>,
    /// Milliseconds spent in create → start → wait → delete.
    pub run_ms: f64,
    /// The layer's whole blob went to [`RunRequest::tee`] as well.
    #[serde(default)]
    pub teed: bool,
}

/// A reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Output of the step (stdout and stderr, in order), lossily UTF-8.
    Output(String),
    /// A progress note.
    Note(String),
    /// The request finished.
    Done(RunResult),
    /// The request could not be carried out (the machine, the store, the runtime).
    Failed(String),
    /// The step itself is wrong (a missing executable or mount source): the Dockerfile must change.
    Refused(String),
    /// [`Request::ExportCache`] is done: the layer, or none when the cache does not exist here.
    Exported(Option<LayerRef>),
    /// [`Request::Wipe`] is done: entries removed and the bytes they used; what could not be
    /// removed, with why.
    Wiped {
        /// Files, directories and links removed.
        entries: u64,
        /// Their disk usage.
        bytes: u64,
        /// Paths left behind, with the error.
        left: Vec<String>,
    },
}
