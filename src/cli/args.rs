//! clap definitions. Flag names and meanings follow `docker buildx build` so existing scripts work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// hako: build container images from Dockerfiles, with no daemon.
#[derive(Debug, Parser)]
#[command(name = "hako", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and a context (like `docker buildx build`).
    Build(Box<BuildArgs>),
    /// Remove build cache (like `docker buildx prune`): step records, the sandbox's snapshots and
    /// cache mounts, and blobs no kept image needs; `--filter until=` and `--keep-storage` keep
    /// what was used recently. Rootless snapshots belong to your sub-ids, so this is how to free
    /// that space (or before removing the store with `rm -rf`).
    Prune(PruneArgs),
    /// Show what the store holds for the build cache (like `docker buildx du`); `--verify`
    /// checks every blob against its digest and every step record against its blob.
    Du(DuArgs),
    /// What this machine lets hako do: the store, the kernel, and the isolation `--isolation=auto`
    /// picks here and why the others are not available.
    Info(InfoArgs),
    /// List the images kept in the store, with their tags and sizes (like `docker images`).
    Images(ImagesArgs),
    /// Give a kept image another name: `hako tag SOURCE TARGET` (like `docker tag`).
    Tag(TagArgs),
    /// Push a kept image to a registry, without building again (like `docker push`).
    Push(PushArgs),
    /// Write a kept image to a docker-archive or OCI archive (like `docker save`).
    Save(SaveArgs),
    /// Remove names of kept images (like `docker rmi`); `hako prune` frees their blobs.
    Rmi(RmiArgs),
    /// Log in to a registry (like `docker login`): check the credentials with the registry, then
    /// keep them where docker and podman read them (REGISTRY_AUTH_FILE, else
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json, or the credential helper it names).
    Login(LoginArgs),
    /// Log out from a registry (like `docker logout`): remove its login from that file or helper.
    Logout(LogoutArgs),
    /// Developer tools for the Dockerfile frontend.
    Debug {
        /// Which tool.
        #[command(subcommand)]
        command: DebugCommand,
    },
}

/// `hako prune` options.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,

    /// With a filter or --keep-storage, also remove the sandbox's snapshots and cache mounts (they
    /// go anyway without one).
    #[arg(short, long)]
    pub all: bool,

    /// Remove only cache not used for this long (`until=24h`, Go durations as buildx).
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,

    /// Keep the most recently used cache that fits in this much (`10GB`, `512MB`).
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,

    /// hako's store [default: $XDG_CACHE_HOME/hako, else ~/.cache/hako].
    #[arg(long, value_name = "DIR", env = "HAKO_ROOT")]
    pub root: Option<PathBuf>,
}

/// `hako du` options.
#[derive(Debug, Args)]
pub struct DuArgs {
    /// Check every blob, step record and kept index; exit 1 if anything is wrong.
    #[arg(long)]
    pub verify: bool,

    /// hako's store [default: $XDG_CACHE_HOME/hako, else ~/.cache/hako].
    #[arg(long, value_name = "DIR", env = "HAKO_ROOT")]
    pub root: Option<PathBuf>,
}

/// `hako images` options.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images whose name matches (`REPOSITORY` or `REPOSITORY:TAG`).
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub filter: Option<String>,

    /// Print only image IDs.
    #[arg(short, long)]
    pub quiet: bool,

    /// Show the manifest digests.
    #[arg(long)]
    pub digests: bool,

    /// `table` (the default) or `json` (one object per line, as `docker images --format json`).
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub format: String,

    /// Show full image IDs.
    #[arg(long)]
    pub no_trunc: bool,

    /// hako's store [default: $XDG_CACHE_HOME/hako, else ~/.cache/hako].
    #[arg(long, value_name = "DIR", env = "HAKO_ROOT")]
    pub root: Option<PathBuf>,
}

/// `hako tag` options.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// A kept image: its name, image ID or digest.
    #[arg(value_name = "SOURCE")]
    pub source: String,

    /// The new name (`NAME[:TAG]`).
    #[arg(value_name = "TARGET")]
    pub target: String,

    /// hako's store [default: $XDG_CACHE_HOME/hako, else ~/.cache/hako].
    #[arg(long, value_name = "DIR", env = "HAKO_ROOT")]
    pub root: Option<PathBuf>,
}

/// `hako push` options.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The kept image to push, by its name (`NAME[:TAG]`): the name says where it goes.
    #[arg(value_name = "NAME[:TAG]")]
    pub name: String,

    /// Reach this registry (`HOST[:PORT]`) over plain HTTP; loopback registries always are; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,

    /// Layer compression for the registry: `gzip` (the default), `zstd` or `uncompressed`.
    #[arg(long, value_name = "ALGORITHM", default_value = "gzip")]
    pub compression: String,

    /// Compression level: gzip 0–9 (default 6), zstd 0–22 (default 3), as `compression-level=` of `--output`.
    #[arg(long, value_name = "N")]
    pub compression_level: Option<String>,

    /// Compress base-image layers that came in another compression too, as `force-compression=true`.
    #[arg(long)]
    pub force_compression: bool,

    /// hako's store [default: $XDG_CACHE_HOME/hako, else ~/.cache/hako].
    #[arg(long, value_name = "DIR", env = "HAKO_ROOT")]
    pub root: Option<PathBuf>,
}

/// `hako save` options.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The kept image: its name, image ID or digest.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// `docker` (a docker-archive, what `docker load` reads; the default) or `oci` (an OCI layout tar).
    #[arg(long, value_name = "FORMAT", default_value = "docker")]
    pub format: String,

    /// hako's store [default: $XDG_CACHE_HOME/hako, else ~/.cache/hako].
    #[arg(long, value_name = "DIR", env = "HAKO_ROOT")]
    pub root: Option<PathBuf>,
}

/// `hako rmi` options.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Kept images: names, image IDs or digests.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,

    /// Remove every name of an image given by ID even when it has several.
    #[arg(short, long)]
    pub force: bool,

    /// hako's store [default: $XDG_CACHE_HOME/hako, else ~/.cache/hako].
    #[arg(long, value_name = "DIR", env = "HAKO_ROOT")]
    pub root: Option<PathBuf>,
}

/// `hako login` options.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (`HOST[:PORT]`) [default: Docker Hub].
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,

    /// The user name (asked for on a terminal when not given).
    #[arg(short, long)]
    pub username: Option<String>,

    /// The password or token; visible to other users of the machine: prefer --password-stdin.
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,

    /// Read the password or token from stdin (`echo "$TOKEN" | hako login -u USER --password-stdin SERVER`).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,

    /// Reach this registry (`HOST[:PORT]`) over plain HTTP; loopback registries always are; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

/// `hako logout` options.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (`HOST[:PORT]`) [default: Docker Hub].
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

/// `hako info` options.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// hako's store [default: $XDG_CACHE_HOME/hako, else ~/.cache/hako].
    #[arg(long, value_name = "DIR", env = "HAKO_ROOT")]
    pub root: Option<PathBuf>,
}

/// `hako debug` subcommands.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Print a Dockerfile's parse tree in BuildKit's dump format (`-` reads stdin).
    Dump {
        /// The Dockerfile.
        file: String,
    },
    /// Measure the sandbox's per-step cost: run `/bin/true` N times on an image's filesystem and
    /// print the median of create → start → wait → delete, and of the whole step (overlay and
    /// mounts included).
    SandboxBench {
        /// An OCI layout directory holding the base image (its only or first image).
        layout: PathBuf,
        /// Steps to time (after one warm-up step that extracts the snapshots).
        #[arg(short = 'n', long, default_value_t = 50)]
        runs: usize,
        /// Store to use (default: a temporary one).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// `auto`, `rootless` or `root`.
        #[arg(long, value_enum, default_value_t = IsolationMode::Auto, value_name = "MODE")]
        isolation: IsolationMode,
    },
}

/// How build progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProgressMode {
    /// `tty` when stderr is a terminal, `plain` otherwise.
    #[default]
    Auto,
    /// Live progress: a line per running step, the log scrolling above.
    Tty,
    /// BuildKit's plain format (`#5 [build 2/3] RUN …`, `#5 DONE 1.2s`, `#5 CACHED`).
    Plain,
    /// One JSON object per line (each with a timestamp), failures included.
    Json,
    /// The same as `json` (buildx's raw BuildKit status stream has no hako equivalent).
    Rawjson,
    /// Nothing but errors (as `-q`).
    Quiet,
}

/// `hako build` options.
#[derive(Debug, Args)]
#[command(after_help = "\
CONTEXT is a directory, or `-` to read a tar archive of the context from stdin (as `docker build -`).

Exit status: 0 success; 1 the build failed because of its input (a Dockerfile error, a failing step); \
2 usage error, unsupported option or internal error.

Without --output or --push the image is kept in hako's store (see --root), tagged with every -t, and its \
digest is printed on stdout. Builds are reproducible: image timestamps are SOURCE_DATE_EPOCH, else \
1980-01-01, and file mtimes in new layers are clamped to it (-o type=oci,rewrite-timestamp=false keeps them).

Registries: plain HTTP is used for loopback registries and --insecure-registry hosts; credentials come \
from REGISTRY_AUTH_FILE, else ~/.docker/config.json (auths, credHelpers, credsStore), as `hako login` writes \
them. Mirrors, plain HTTP, unchecked TLS and CA files per registry come from $HAKO_CONFIG or \
~/.config/hako/config.toml, in buildkitd.toml's shape ([registry.\"docker.io\"] mirrors = [\"HOST\"]).

RUN steps run in a sandbox: as root in new namespaces, as any other user in a user namespace that maps \
your id to 0 and your /etc/subuid and /etc/subgid ranges after it (see --isolation).

Not built yet (each fails with `not supported yet` instead of being ignored): several --platform values at \
once, attestations (--provenance, --sbom, --attest other than false), index and descriptor annotations.")]
pub struct BuildArgs {
    /// Build context: a directory, or `-` for a tar stream on stdin.
    #[arg(value_name = "CONTEXT")]
    pub context: String,

    /// Name of the Dockerfile (default: `CONTEXT/Dockerfile`; `-` reads it from stdin).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<String>,

    /// Name and optionally a tag (`name:tag`); repeatable.
    #[arg(short = 't', long = "tag", value_name = "REF")]
    pub tags: Vec<String>,

    /// Set a build-time variable (`KEY=VALUE`, or `KEY` to take it from the environment); repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Build only up to this stage.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Target platform(s) (`os/arch[/variant]`, comma-separated or repeated).
    #[arg(long = "platform", value_name = "PLATFORM", value_delimiter = ',')]
    pub platforms: Vec<String>,

    /// Set metadata for the image (`KEY=VALUE`); repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// Do not use the cache when building (every step runs; results are still recorded).
    #[arg(long)]
    pub no_cache: bool,

    /// Do not use the cache for these stages (by name); repeatable.
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,

    /// Progress output on stderr (the last one given wins, as with buildx).
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, value_name = "MODE", overrides_with = "progress")]
    pub progress: ProgressMode,

    /// Suppress the build output (`--progress=quiet`); the image digest is still printed.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Output destination (`type=oci,dest=FILE`, `type=docker,dest=FILE`, `type=local,dest=DIR`, …).
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,

    /// Shorthand for `--output=type=registry`: push every `-t` tag.
    #[arg(long)]
    pub push: bool,

    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Write build result metadata (JSON) to this file.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// Secret to expose to RUN steps (`id=NAME,src=FILE` or `id=NAME,env=VAR`); repeatable.
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,

    /// SSH agent socket or keys to expose (`default` or `ID=PATH`); repeatable.
    #[arg(long = "ssh", value_name = "SPEC")]
    pub ssh: Vec<String>,

    /// How RUN steps are isolated: `rootless` (a user namespace), `root` (needs root), `chroot`
    /// (root, no namespaces: for locked-down CI containers), `ptrace` (any user, no namespaces:
    /// root emulated under ptrace), or `auto` (the best this machine allows).
    #[arg(long, value_enum, default_value_t = IsolationMode::Auto, value_name = "MODE")]
    pub isolation: IsolationMode,

    /// External cache source (`type=registry,ref=…`, `type=local,src=…`); repeatable.
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,

    /// Cache export destination (`type=registry,ref=…`, `type=local,dest=…`); repeatable.
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,

    /// Additional named build context (`NAME=VALUE`: a directory, `docker-image://REF`, `oci-layout://DIR`); repeatable.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,

    /// Print the build plan (stages, steps, expanded values, skipped stages) without building.
    #[arg(long)]
    pub dry_run: bool,

    /// Run the build checks (BuildKit's Dockerfile rules) without building: print what they find
    /// and exit 1 if they find anything, 0 if not.
    #[arg(long)]
    pub check: bool,

    /// What the build does, as buildx's `--call`: `build` (the default) or `check` (as `--check`).
    #[arg(long, value_name = "METHOD")]
    pub call: Option<String>,

    /// Reach this registry (`HOST[:PORT]`) over plain HTTP; loopback registries always are; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,

    /// Pull Docker Hub images through this mirror first (`HOST[:PORT]`, `https://HOST` or
    /// `http://HOST` for plain HTTP), as dockerd's flag; repeatable, tried in order, then Docker
    /// Hub. Other registries' mirrors go in the config file.
    #[arg(long = "registry-mirror", value_name = "HOST")]
    pub registry_mirrors: Vec<String>,

    // ── docker buildx flags scripts pass (kept together; read in `cli/buildx.rs`). A value
    // flag given twice takes the last, as buildx's ──
    /// Always ask the registry for base images, even those kept in the store under that name.
    #[arg(long)]
    pub pull: bool,

    /// Load the image into the local Docker engine (DOCKER_HOST, else /var/run/docker.sock) when
    /// one answers, else into podman's store; fails when there is neither.
    #[arg(long)]
    pub load: bool,

    /// Add an annotation to the image manifest (`KEY=VALUE` or `manifest:KEY=VALUE`); repeatable.
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,

    /// Network of RUN steps that name none: `default`, `host` (allows RUN --network=host) or `none`.
    #[arg(long, value_name = "MODE", overrides_with = "network")]
    pub network: Option<String>,

    /// Add a host-to-IP mapping to the /etc/hosts of RUN steps (`HOST:IP`); repeatable.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,

    /// Allow an entitlement: `network.host` (RUN --network=host) or `security.insecure`; repeatable.
    #[arg(long = "allow", value_name = "ENTITLEMENT", value_delimiter = ',')]
    pub allow: Vec<String>,

    /// Size of /dev/shm in RUN steps (`128m`, `1g`; bytes without a unit) [default: 64m].
    #[arg(long, value_name = "SIZE", overrides_with = "shm_size")]
    pub shm_size: Option<String>,

    /// Resource limit of RUN steps (`nofile=1024:2048`, `nproc=512`); repeatable.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,

    /// Provenance attestation: `false` (none, what hako makes); `true` or `mode=…` is refused as not supported yet.
    #[arg(long, value_name = "VALUE", overrides_with = "provenance")]
    pub provenance: Option<String>,

    /// SBOM attestation: `false` (none, what hako makes); `true` or `generator=…` is refused as not supported yet.
    #[arg(long, value_name = "VALUE", overrides_with = "sbom")]
    pub sbom: Option<String>,

    /// Attestation (`type=provenance|sbom[,disabled=true]`); only disabled ones are accepted yet; repeatable.
    #[arg(long = "attest", value_name = "SPEC")]
    pub attest: Vec<String>,

    /// hako's store (images, layers, cache) [default: $XDG_CACHE_HOME/hako, else ~/.cache/hako].
    #[arg(long, value_name = "DIR", env = "HAKO_ROOT")]
    pub root: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_buildx_style_flags() {
        let cli = Cli::try_parse_from([
            "hako",
            "build",
            "-t",
            "a:1",
            "-t",
            "b",
            "--build-arg",
            "X=1",
            "--build-arg",
            "Y",
            "--platform",
            "linux/amd64,linux/arm64",
            "-f",
            "-",
            "--progress=plain",
            "--target",
            "t",
            "--dry-run",
            ".",
        ])
        .expect("parses");
        let Command::Build(b) = cli.command else { panic!("not build") };
        assert_eq!(b.tags, ["a:1", "b"]);
        assert_eq!(b.build_args, ["X=1", "Y"]);
        assert_eq!(b.platforms, ["linux/amd64", "linux/arm64"]);
        assert_eq!(b.file.as_deref(), Some("-"));
        assert_eq!(b.progress, ProgressMode::Plain);
        assert!(b.dry_run);
        assert_eq!(b.context, ".");
    }
}

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationMode {
    /// Rootless unless running as root.
    Auto,
    /// A user namespace (also as root).
    Rootless,
    /// Real root in new namespaces.
    Root,
    /// chroot only, no namespaces: for running as root in a throwaway CI container that denies
    /// namespaces and mounts (kaniko's model).
    Chroot,
    /// Any user, no namespaces: steps under ptrace with root emulated (locked-down CI containers).
    Ptrace,
}
