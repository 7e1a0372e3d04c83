//! Pulling and pushing images with oci-client: manifests (OCI and Docker schema 2, indexes with
//! platform selection), blobs streamed straight between the network and the store with their
//! digests verified, blobs the registry already has skipped, cross-repository mounts, and
//! credentials from `~/.docker/config.json`, credential helpers or `REGISTRY_AUTH_FILE`.
//! Pulls try the registry's mirrors first (`config`), then the registry itself. `hako login`'s
//! check (`login`) and the file it writes (`authfile`) live here too.
//!
//! oci-client is async; hako drives it from a private current-thread tokio runtime, so the rest
//! of the program stays synchronous and the runtime starts no threads of its own. Several threads
//! may `block_on` it at once (a build resolves bases while their layers come): tokio's
//! current-thread scheduler hands its driver from one to the next.

mod auth;
pub mod authfile;
mod clients;
pub mod config;
pub mod login;
mod mirrors;
pub mod retry;
pub mod roots;

use std::collections::HashMap;
use std::io::Read;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context as TaskContext, Poll};

use futures_util::{StreamExt, TryStreamExt};
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use crate::digest::Digest;
use crate::image::manifest::{DOCKER_MANIFEST, Image, our_digest, select};
use crate::image::platform::Platform;
use crate::image::reference::ImageName;
use crate::store::{BlobWriter, Store};

/// Blobs of one image pulled at the same time (docker's default is 3 per pull).
const PULL_CONCURRENCY: usize = 3;

/// Docker's manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Registry failures, each naming the registry and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A reference that does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference {
        /// As given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The registry could not be reached or answered with an error.
    #[error("{action} {reference}: {reason}")]
    Remote {
        /// What hako was doing (`pulling`, `pushing`).
        action: &'static str,
        /// The image.
        reference: String,
        /// The error, made readable.
        reason: String,
        /// What to do about it (`hako login …`), when hako knows.
        hint: Option<String>,
    },
    /// The content does not describe a usable image.
    #[error("{reference}: {reason}")]
    Content {
        /// The image.
        reference: String,
        /// Why.
        reason: String,
    },
    /// Local store failure.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The HTTP client could not be set up (no CA certificates for HTTPS, a `ca` file that does
    /// not read).
    #[error("cannot set up HTTPS for {registry}: {reason}")]
    Tls {
        /// The registry.
        registry: String,
        /// What failed.
        reason: String,
    },
    /// The async runtime could not start.
    #[error("starting the network runtime: {0}")]
    Runtime(std::io::Error),
}

type Result<T> = std::result::Result<T, RegistryError>;

impl RegistryError {
    /// What the user can do about this error (a `hint:` line), when hako knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Remote { hint, .. } => hint.clone(),
            _ => None,
        }
    }
}

/// A connection to registries.
pub struct Registry {
    /// How each registry is reached, and its mirrors.
    config: config::Config,
    /// A client per scheme and host, made on first use: a build that never talks to a registry must not
    /// depend on CA certificates being installed.
    clients: Mutex<HashMap<String, Client>>,
    rt: tokio::runtime::Runtime,
    /// Where each pulled blob came from (for cross-repository mounts on push).
    origins: Mutex<HashMap<Digest, Reference>>,
}

/// Media types hako accepts for manifests.
const ACCEPT: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    DOCKER_LIST,
    DOCKER_MANIFEST,
];

impl Registry {
    /// A connection that reaches each registry as `config` says (plain HTTP for loopback
    /// registries unless configured otherwise, HTTPS everywhere else) and pulls through its
    /// mirrors.
    pub fn new(config: config::Config) -> Result<Registry> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RegistryError::Runtime)?;
        Ok(Registry { config, clients: Mutex::new(HashMap::new()), rt, origins: Mutex::new(HashMap::new()) })
    }

    /// Parses `reference` with Docker's grammar ([`ImageName`]) into oci-client's form: a bare
    /// name gets the `latest` tag, a digest is kept (with its tag, if any).
    fn parse(reference: &str) -> Result<Reference> {
        let name = ImageName::parse(reference).map_err(|e| RegistryError::Reference {
            reference: reference.to_string(),
            reason: e.to_string(),
        })?;
        let (registry, repository) = (name.domain().to_string(), name.path().to_string());
        Ok(match (name.tag(), name.digest()) {
            (Some(tag), Some(digest)) => {
                Reference::with_tag_and_digest(registry, repository, tag.to_string(), digest.to_string())
            }
            (None, Some(digest)) => Reference::with_digest(registry, repository, digest.to_string()),
            (tag, None) => Reference::with_tag(registry, repository, tag.unwrap_or("latest").to_string()),
        })
    }

    /// The parsed reference, its client and credentials.
    fn session(&self, reference: &str) -> Result<Session> {
        let r = Registry::parse(reference)?;
        let transport = self.config.transport(r.resolve_registry());
        self.session_at(r, &transport)
    }

    /// `r` with the client for its registry, reached as `transport` says, and its credentials.
    fn session_at(&self, r: Reference, transport: &config::Transport) -> Result<Session> {
        let registry = r.resolve_registry().to_string();
        let scheme = if transport.plain_http { "http" } else { "https" };
        let key = format!("{scheme}://{registry}");
        let cached = self.clients.lock().ok().and_then(|c| c.get(&key).cloned());
        let client = match cached {
            Some(c) => c,
            None => {
                let c = clients::oci(transport).map_err(|e| {
                    let reason = match e {
                        clients::ClientError::Tls(e) => format!(
                            "{e}; install CA certificates (Debian: ca-certificates) or point SSL_CERT_FILE at a bundle"
                        ),
                        other => other.to_string(),
                    };
                    RegistryError::Tls { registry: registry.clone(), reason }
                })?;
                if let Ok(mut cache) = self.clients.lock() {
                    cache.insert(key, c.clone());
                }
                c
            }
        };
        let creds = auth::credentials(&registry);
        Ok(Session { r, client, creds })
    }

    /// Pulls `reference` for `platform` into the store, from a mirror or the registry; returns
    /// the image and its manifest digest.
    pub fn pull(&self, store: &Store, reference: &str, platform: &Platform) -> Result<(Image, Digest)> {
        let (image, digest) = self.pull_config(store, reference, platform)?;
        self.pull_layers(store, reference, &image)?;
        Ok((image, digest))
    }

    /// The first half of [`pull`](Registry::pull): the manifest for `platform` and the image
    /// config, into the store, from a mirror or the registry; the layers are left to
    /// [`pull_layers`](Registry::pull_layers), so a build can plan (and other stages run) while
    /// they come.
    pub fn pull_config(
        &self,
        store: &Store,
        reference: &str,
        platform: &Platform,
    ) -> Result<(Image, Digest)> {
        self.through_mirrors(reference, |_| true, |s| self.config_from(s, store, reference, platform))
    }

    /// The second half of [`pull`](Registry::pull): the layers of `image` (pulled from
    /// `reference` by [`pull_config`](Registry::pull_config)) that the store lacks, a few at a
    /// time, from a mirror or the registry, and returns those it fetched. Blobs are named by
    /// digest, so any mirror that has them serves.
    pub fn pull_layers(&self, store: &Store, reference: &str, image: &Image) -> Result<Vec<Fetched>> {
        let missing: Vec<Blob> = image
            .layers
            .iter()
            .filter(|l| !store.has_blob(&l.digest))
            .map(|l| Blob { media_type: l.media_type.to_string(), digest: l.digest.clone(), size: l.size })
            .collect();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        self.through_mirrors(
            reference,
            |_| true,
            |session| {
                let Session { r, client, creds } = session;
                let remote = |e| attempt_error("pulling", reference, &r, &creds, e);
                self.rt.block_on(async {
                    auth_with_retries(&client, &r, &creds, RegistryOperation::Pull).await.map_err(remote)?;
                    // Blobs an earlier mirror's attempt got are not fetched again.
                    let left = missing.iter().filter(|b| !store.has_blob(&b.digest)).cloned().collect();
                    fetch_blobs(&client, &r, &creds, store, reference, left).await
                })
            },
        )
    }

    /// The manifest for `platform` (through an index) and the config, from one registry or mirror.
    fn config_from(
        &self,
        session: Session,
        store: &Store,
        reference: &str,
        platform: &Platform,
    ) -> Result<(Image, Digest)> {
        let Session { r, client, creds } = session;
        let remote = |e| attempt_error("pulling", reference, &r, &creds, e);
        let (client, creds) = (&client, &creds);
        self.rt.block_on(async {
            auth_with_retries(client, &r, creds, RegistryOperation::Pull).await.map_err(remote)?;
            let (mut bytes, mut digest) = manifest_with_retries(client, &r, creds).await.map_err(remote)?;
            let mut manifest_ref = r.clone();
            // An index: pick the platform's manifest and fetch it by digest.
            for _ in 0..4 {
                let kind: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| content(reference, e))?;
                let mt = kind["mediaType"].as_str().unwrap_or_default();
                let is_index = mt == DOCKER_LIST
                    || mt.ends_with("image.index.v1+json")
                    || kind.get("manifests").is_some();
                if !is_index {
                    break;
                }
                let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| content(reference, e))?;
                let entry = select(index.manifests(), platform).ok_or_else(|| RegistryError::Content {
                    reference: reference.to_string(),
                    reason: format!(
                        "no image for {platform} in its index (it has {})",
                        platforms(index.manifests())
                    ),
                })?;
                manifest_ref = r.clone_with_digest(entry.digest().to_string());
                (bytes, digest) =
                    manifest_with_retries(client, &manifest_ref, creds).await.map_err(remote)?;
            }
            let manifest_digest = Digest::parse(&digest).map_err(|e| content(reference, e))?;
            if Digest::of(&bytes) != manifest_digest {
                return Err(content(reference, "manifest digest mismatch"));
            }
            let manifest: ImageManifest =
                serde_json::from_slice(&bytes).map_err(|e| content(reference, e))?;
            store.put_bytes(&bytes)?;
            let config = manifest.config();
            let mut missing = Vec::new();
            for desc in std::iter::once(config).chain(manifest.layers()) {
                let d = our_digest(desc.digest()).map_err(|e| content(reference, e))?;
                if let Ok(mut o) = self.origins.lock() {
                    o.insert(d.clone(), r.clone());
                }
                if desc == config && !store.has_blob(&d) {
                    missing.push(Blob {
                        media_type: desc.media_type().to_string(),
                        digest: d,
                        size: desc.size(),
                    });
                }
            }
            fetch_blobs(client, &manifest_ref, creds, store, reference, missing).await?;
            let image = Image::load(store, &manifest_digest).map_err(|e| content(reference, e))?;
            Ok((image, manifest_digest))
        })
    }

    /// Fetches the manifest `reference` names as it is (an index is not resolved), with its
    /// digest verified, from a mirror or the registry; `None` when none has it.
    pub fn manifest(&self, reference: &str) -> Result<Option<(Vec<u8>, Digest)>> {
        self.through_mirrors(reference, Option::is_some, |s| self.manifest_from(s, reference))
    }

    fn manifest_from(&self, session: Session, reference: &str) -> Result<Option<(Vec<u8>, Digest)>> {
        let Session { r, client, creds } = session;
        let remote = |e| attempt_error("pulling", reference, &r, &creds, e);
        let (client, creds) = (&client, &creds);
        self.rt.block_on(async {
            auth_with_retries(client, &r, creds, RegistryOperation::Pull).await.map_err(remote)?;
            let (bytes, digest) = match manifest_with_retries(client, &r, creds).await {
                Ok(found) => found,
                Err(f) if matches!(&f.error, Attempt::Remote(e) if is_not_found(e)) => return Ok(None),
                Err(f) => return Err(remote(f)),
            };
            let digest = Digest::parse(&digest).map_err(|e| content(reference, e))?;
            if Digest::of(&bytes) != digest {
                return Err(content(reference, "manifest digest mismatch"));
            }
            Ok(Some((bytes.to_vec(), digest)))
        })
    }

    /// Pulls blob `digest` (of `size` bytes) from the repository of `reference` (or a mirror's)
    /// into the store, verified while it streams; nothing to do when the store has it.
    pub fn blob(&self, store: &Store, reference: &str, digest: &Digest, size: u64) -> Result<()> {
        if store.has_blob(digest) {
            return Ok(());
        }
        self.through_mirrors(reference, |_| true, |s| self.blob_from(s, store, reference, digest, size))
    }

    fn blob_from(
        &self,
        session: Session,
        store: &Store,
        reference: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let Session { r, client, creds } = session;
        let remote = |e| attempt_error("pulling", reference, &r, &creds, e);
        let (client, creds) = (&client, &creds);
        self.rt.block_on(async {
            auth_with_retries(client, &r, creds, RegistryOperation::Pull).await.map_err(remote)?;
            let desc =
                OciDescriptor { digest: digest.to_string(), size: size as i64, ..OciDescriptor::default() };
            let (got, n) = blob_with_retries(client, &r, &desc, store, digest).await.map_err(remote)?;
            if n != size {
                return Err(content(reference, format!("blob {got} has {n} bytes, expected {size}")));
            }
            if let Ok(mut o) = self.origins.lock() {
                o.insert(digest.clone(), r.clone());
            }
            Ok(())
        })
    }

    /// Pushes the image `manifest` (already in the store) as `name`: blobs the registry has are
    /// skipped, blobs pulled from another repository of the same registry are mounted, the rest is
    /// streamed from the store. Returns the pushed manifest's digest.
    pub fn push(&self, store: &Store, manifest: &Descriptor, name: &str) -> Result<Digest> {
        let Session { r, client, creds } = self.session(name)?;
        let remote = |e| attempt_error("pushing", name, &r, &creds, e);
        let (client, r_ref, creds_ref) = (&client, &r, &creds);
        let manifest_digest = our_digest(manifest.digest()).map_err(|e| content(name, e))?;
        let bytes = store.read_blob(&manifest_digest)?;
        let parsed: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| content(name, e))?;
        let mut blobs = parsed.layers().clone();
        blobs.push(parsed.config().clone());
        self.rt.block_on(async {
            auth_with_retries(client, r_ref, creds_ref, RegistryOperation::Push).await.map_err(remote)?;
            // Every blob is in the registry before the manifest is pushed: a push that fails
            // midway leaves no manifest naming a missing blob.
            for desc in &blobs {
                let d = our_digest(desc.digest()).map_err(|e| content(name, e))?;
                let ds = d.to_string();
                let exists =
                    retry::retry(|| async { client.blob_exists(r_ref, &ds).await.map_err(Attempt::Remote) })
                        .await
                        .map_err(remote)?;
                if exists {
                    continue;
                }
                let origin = self.origins.lock().ok().and_then(|o| o.get(&d).cloned());
                if let Some(src) = origin.filter(|s| {
                    s.resolve_registry() == r.resolve_registry() && s.repository() != r.repository()
                }) && client.mount_blob(&r, &src, &d.to_string()).await.is_ok()
                {
                    continue;
                }
                retry::retry(|| async {
                    let file = store.open_blob(&d).map_err(Attempt::Store)?;
                    client
                        .push_blob_stream(r_ref, chunks(file), &ds, Some(desc.size()))
                        .await
                        .map_err(Attempt::Remote)
                })
                .await
                .map_err(remote)?;
            }
            let media_type = match manifest.media_type() {
                MediaType::ImageManifest => "application/vnd.oci.image.manifest.v1+json".to_string(),
                other => other.to_string(),
            };
            let header: reqwest::header::HeaderValue =
                media_type.parse().map_err(|_| content(name, "bad manifest media type"))?;
            // Push the exact stored bytes so the registry's digest is the one we computed.
            retry::retry(|| async {
                client.push_manifest_raw(r_ref, bytes.clone(), header.clone()).await.map_err(Attempt::Remote)
            })
            .await
            .map_err(remote)?;
            Ok(manifest_digest)
        })
    }
}

/// One repository reached for one request.
struct Session {
    r: Reference,
    client: Client,
    creds: auth::Creds,
}

/// A registry error, named by what was being done and explained (credentials, hints).
fn remote_error(
    action: &'static str,
    reference: &str,
    r: &Reference,
    creds: &auth::Creds,
    e: oci_client::errors::OciDistributionError,
) -> RegistryError {
    let explained = auth::explain(&e, r.resolve_registry(), creds);
    RegistryError::Remote {
        action,
        reference: reference.to_string(),
        reason: explained.reason,
        hint: explained.hint,
    }
}

/// One attempt's failure: the registry's, or the store's. A store error is never retried, except a
/// digest mismatch: the bytes that came were not the blob, so they are fetched again.
#[derive(Debug)]
enum Attempt {
    Remote(oci_client::errors::OciDistributionError),
    Store(crate::store::StoreError),
}

impl retry::Transient for Attempt {
    fn transient(&self) -> bool {
        match self {
            Attempt::Remote(e) => e.transient(),
            Attempt::Store(e) => matches!(e, crate::store::StoreError::DigestMismatch { .. }),
        }
    }
}

/// The error after the last attempt, saying how many were made.
fn attempt_error(
    action: &'static str,
    reference: &str,
    r: &Reference,
    creds: &auth::Creds,
    f: retry::Failed<Attempt>,
) -> RegistryError {
    let e = match f.error {
        Attempt::Remote(e) => remote_error(action, reference, r, creds, e),
        Attempt::Store(e) => RegistryError::Store(e),
    };
    match e {
        RegistryError::Remote { action, reference, reason, hint } if f.attempts > 1 => {
            RegistryError::Remote {
                action,
                reference,
                reason: format!("{reason} (gave up after {} attempts)", f.attempts),
                hint,
            }
        }
        other => other,
    }
}

async fn auth_with_retries(
    client: &Client,
    r: &Reference,
    creds: &auth::Creds,
    op: RegistryOperation,
) -> std::result::Result<(), retry::Failed<Attempt>> {
    retry::retry(|| async { client.auth(r, &creds.auth, op).await.map(drop).map_err(Attempt::Remote) }).await
}

async fn manifest_with_retries(
    client: &Client,
    r: &Reference,
    creds: &auth::Creds,
) -> std::result::Result<(bytes::Bytes, String), retry::Failed<Attempt>> {
    retry::retry(|| async {
        client.pull_manifest_raw(r, &creds.auth, &ACCEPT).await.map_err(Attempt::Remote)
    })
    .await
}

/// Downloads a blob into the store, verified; each attempt starts a new temporary blob, so a
/// download cut midway never leaves part of one behind.
async fn blob_with_retries(
    client: &Client,
    r: &Reference,
    desc: &OciDescriptor,
    store: &Store,
    digest: &Digest,
) -> std::result::Result<(Digest, u64), retry::Failed<Attempt>> {
    retry::retry(|| async {
        let mut sink = SyncWriter { inner: store.blob_writer().map_err(Attempt::Store)? };
        client.pull_blob(r, desc, &mut sink).await.map_err(Attempt::Remote)?;
        sink.inner.commit(Some(digest)).map_err(Attempt::Store)
    })
    .await
}

/// A blob a pull fetched.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// How long it took to come.
    pub elapsed: std::time::Duration,
}

/// A blob to pull: what its descriptor says.
#[derive(Clone)]
struct Blob {
    media_type: String,
    digest: Digest,
    size: u64,
}

/// Downloads `blobs` into the store, a few at a time, as docker pull does: one connection rarely
/// fills the link, and each blob is hashed and written on its own thread (`store::BlobWriter`).
async fn fetch_blobs(
    client: &Client,
    r: &Reference,
    creds: &auth::Creds,
    store: &Store,
    reference: &str,
    blobs: Vec<Blob>,
) -> Result<Vec<Fetched>> {
    let remote = |e| attempt_error("pulling", reference, r, creds, e);
    futures_util::stream::iter(blobs)
        .map(|blob| async move {
            let started = std::time::Instant::now();
            let oci_desc = OciDescriptor {
                media_type: blob.media_type,
                digest: blob.digest.to_string(),
                size: blob.size as i64,
                ..OciDescriptor::default()
            };
            let (got, size) =
                blob_with_retries(client, r, &oci_desc, store, &blob.digest).await.map_err(remote)?;
            if size != blob.size {
                return Err(content(
                    reference,
                    format!("blob {got} has {size} bytes, its manifest says {}", blob.size),
                ));
            }
            Ok(Fetched { digest: got, size, elapsed: started.elapsed() })
        })
        .buffer_unordered(PULL_CONCURRENCY)
        .try_collect::<Vec<Fetched>>()
        .await
}

/// Whether the registry answered that the manifest does not exist.
fn is_not_found(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::ImageManifestNotFoundError(_) => true,
        E::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|x| matches!(x.code, oci_client::errors::OciErrorCode::ManifestUnknown)),
        E::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

fn content(reference: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Content { reference: reference.to_string(), reason: e.to_string() }
}

fn platforms(entries: &[Descriptor]) -> String {
    let list: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| format!("{}/{}", p.os(), p.architecture()))
        .collect();
    if list.is_empty() { "no platforms".into() } else { list.join(", ") }
}

/// A blob file as a stream of 4 MiB chunks (each chunk is one write on the wire; small chunks
/// make pushes slow, see ../shared/FACTS.md).
fn chunks(
    file: fs_err::File,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send {
    let file = crate::store::pagecache::DropBehind::new(file);
    futures_util::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let mut buf = vec![0u8; 4 << 20];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Some((Err(oci_client::errors::OciDistributionError::IoError(e)), None)),
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some((Ok(bytes::Bytes::from(buf)), Some(file)))
    })
}

/// Lets oci-client's async blob download write into the store's synchronous blob writer (local
/// file writes; the runtime is single-threaded and only does this build's I/O).
struct SyncWriter {
    inner: BlobWriter,
}

impl tokio::io::AsyncWrite for SyncWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(std::io::Write::write(&mut self.inner, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(std::io::Write::flush(&mut self.inner))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_docker_does() -> Result<()> {
        let hex = "a".repeat(64);
        let r = Registry::parse("busybox")?;
        assert_eq!(
            (r.to_string().as_str(), r.resolve_registry()),
            ("docker.io/library/busybox:latest", "index.docker.io")
        );
        let r = Registry::parse(&format!("localhost:5000/a/b@sha256:{hex}"))?;
        assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost:5000", "a/b", None));
        assert_eq!(r.digest(), Some(format!("sha256:{hex}").as_str()));
        let r = Registry::parse(&format!("[::1]:5000/app:1@sha256:{hex}"))?;
        assert_eq!((r.registry(), r.tag()), ("[::1]:5000", Some("1")));
        let err = Registry::parse("Busybox").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "invalid image reference \"Busybox\": repository name \"library/Busybox\" must be lowercase"
            )
        );
        Ok(())
    }
}
