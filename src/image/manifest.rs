//! Manifests, indexes and descriptors (oci-spec types), conversion between our [`Digest`] and
//! oci-spec's, platform selection from an index, and importing images from an OCI layout.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::image::{
    Descriptor, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType, Platform as OciPlatform,
};

use super::config::ImageConfig;
use super::platform::Platform;
use crate::digest::Digest;
use crate::store::{REF_NAME, Store, StoreError};

/// Image-level failures.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Store/IO failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad JSON in a manifest, index or config.
    #[error("{what} {digest}: {source}")]
    Json {
        /// Which object.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A digest that is not sha256.
    #[error("{0}")]
    Digest(#[from] crate::digest::BadDigest),
    /// The layout or index does not contain what was asked for.
    #[error("{0}")]
    NotFound(String),
    /// A media type hako cannot use.
    #[error("unsupported media type {0}")]
    MediaType(String),
}

/// Result of image operations.
pub type Result<T> = std::result::Result<T, ImageError>;

/// A layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Digest of the blob as stored (compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Blob size.
    pub size: u64,
    /// Layer media type.
    pub media_type: MediaType,
}

impl Layer {
    /// Its descriptor.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(self.media_type.clone(), self.size, oci_digest(&self.digest))
    }
}

/// An image in the store: its layers and config (the manifest is derived).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Config.
    pub config: ImageConfig,
    /// Layers, base first.
    pub layers: Vec<Layer>,
}

/// A written image: the manifest's descriptor and bytes.
#[derive(Debug, Clone)]
pub struct Written {
    /// Manifest descriptor (media type, digest, size).
    pub manifest: Descriptor,
    /// Config digest (the image ID).
    pub config_digest: Digest,
}

/// Our digest as an oci-spec digest.
pub fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    // A validated sha256 digest always converts.
    d.to_string().parse().unwrap_or_else(|_| unreachable!("sha256 digests are valid oci digests"))
}

/// An oci-spec digest as ours (sha256 only).
pub fn our_digest(d: &oci_spec::image::Digest) -> Result<Digest> {
    Ok(Digest::parse(d.as_ref())?)
}

impl Image {
    /// Writes the config and manifest to the store. Layers must already be there.
    pub fn write(&self, store: &Store) -> Result<Written> {
        self.write_annotated(store, &std::collections::BTreeMap::new())
    }

    /// [`Image::write`] with `annotations` in the manifest (`--annotation`; none: no field).
    pub fn write_annotated(
        &self,
        store: &Store,
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<Written> {
        let config_bytes = self.config.to_json();
        let (config_digest, config_size) = store.put_bytes(&config_bytes)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(MediaType::ImageConfig, config_size, oci_digest(&config_digest)))
            .layers(self.layers.iter().map(Layer::descriptor).collect::<Vec<_>>())
            .build()
            .map_err(|e| ImageError::NotFound(format!("building the manifest: {e}")))?;
        let mut manifest = manifest;
        if !annotations.is_empty() {
            manifest.set_annotations(Some(annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect()));
        }
        let json_err = |source| ImageError::Json { what: "manifest", digest: String::new(), source };
        let bytes = if annotations.is_empty() {
            serde_json::to_vec(&manifest).map_err(json_err)?
        } else {
            // oci-spec keeps annotations in a HashMap: through a Value (sorted keys) the same
            // annotations always give the same bytes.
            serde_json::to_vec(&serde_json::to_value(&manifest).map_err(json_err)?).map_err(json_err)?
        };
        let (digest, size) = store.put_bytes(&bytes)?;
        let mut desc = Descriptor::new(MediaType::ImageManifest, size, oci_digest(&digest));
        desc.set_platform(Some(oci_platform(&self.config)));
        Ok(Written { manifest: desc, config_digest })
    }

    /// Loads the image a manifest in the store describes.
    pub fn load(store: &Store, manifest_digest: &Digest) -> Result<Image> {
        let bytes = store.read_blob(manifest_digest)?;
        let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
            what: "manifest",
            digest: manifest_digest.to_string(),
            source,
        })?;
        let config_digest = our_digest(manifest.config().digest())?;
        let config_bytes = store.read_blob(&config_digest)?;
        let config = ImageConfig::from_json(&config_bytes).map_err(|source| ImageError::Json {
            what: "config",
            digest: config_digest.to_string(),
            source,
        })?;
        if config.rootfs.diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::NotFound(format!(
                "image {manifest_digest}: {} layers but {} diff_ids in its config",
                manifest.layers().len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (desc, diff_id) in manifest.layers().iter().zip(&config.rootfs.diff_ids) {
            layers.push(Layer {
                digest: our_digest(desc.digest())?,
                diff_id: Digest::parse(diff_id)?,
                size: desc.size(),
                media_type: desc.media_type().clone(),
            });
        }
        Ok(Image { config, layers })
    }
}

/// The platform of a config, as an index entry records it.
pub fn oci_platform(c: &ImageConfig) -> OciPlatform {
    let mut p = OciPlatform::default();
    p.set_architecture(c.architecture.as_str().into());
    p.set_os(c.os.as_str().into());
    p.set_variant(c.variant.clone());
    p
}

/// Picks the manifest for `platform` from an index's entries (an entry without a platform matches
/// only when it is the only one, as for single-image layouts).
pub fn select<'a>(manifests: &'a [Descriptor], platform: &Platform) -> Option<&'a Descriptor> {
    let images: Vec<&Descriptor> = manifests
        .iter()
        .filter(|m| {
            matches!(m.media_type(), MediaType::ImageManifest | MediaType::ImageIndex | MediaType::Other(_))
        })
        .collect();
    let fits = |m: &&Descriptor| {
        m.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == platform.os
                && p.architecture().to_string() == platform.arch
                && (platform.variant.is_empty() || p.variant().as_deref().unwrap_or("") == platform.variant)
        })
    };
    images.iter().copied().find(|m| fits(m)).or_else(|| match images.as_slice() {
        [only] if only.platform().is_none() => Some(*only),
        _ => None,
    })
}

/// Imports an image from an OCI layout directory (`oci-layout://DIR[:TAG|@DIGEST]`) into the store,
/// verifying every blob's digest as it is copied. Returns the image and its manifest digest.
pub fn import_layout(
    store: &Store,
    dir: &Path,
    reference: Option<&str>,
    platform: &Platform,
) -> Result<(Image, Digest)> {
    let index_path = dir.join("index.json");
    let bytes = fs_err::read(&index_path).map_err(StoreError::Io)?;
    let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
        what: "index",
        digest: index_path.display().to_string(),
        source,
    })?;
    let entries: Vec<Descriptor> = match reference {
        Some(r) if r.starts_with("sha256:") => {
            let want = Digest::parse(r)?;
            index
                .manifests()
                .iter()
                .filter(|m| our_digest(m.digest()).ok().as_ref() == Some(&want))
                .cloned()
                .collect()
        }
        Some(tag) => index
            .manifests()
            .iter()
            .filter(|m| {
                m.annotations().as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str) == Some(tag)
            })
            .cloned()
            .collect(),
        None => index.manifests().clone(),
    };
    let layout = Store::open_readonly(dir);
    let mut desc = select(&entries, platform).cloned().ok_or_else(|| {
        let names: Vec<String> = index
            .manifests()
            .iter()
            .filter_map(|m| m.annotations().as_ref().and_then(|a| a.get(REF_NAME)).cloned())
            .collect();
        ImageError::NotFound(format!(
            "no image {}for {platform} in OCI layout {} (tags: {})",
            reference.map(|r| format!("{r} ")).unwrap_or_default(),
            dir.display(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        ))
    })?;
    // Follow a nested index (multi-platform image under one tag).
    let mut seen: HashMap<String, ()> = HashMap::new();
    while *desc.media_type() == MediaType::ImageIndex {
        if seen.insert(desc.digest().to_string(), ()).is_some() {
            return Err(ImageError::NotFound("index refers to itself".into()));
        }
        let d = our_digest(desc.digest())?;
        let inner: ImageIndex = serde_json::from_slice(&copy_blob(store, &layout, &d, desc.size())?)
            .map_err(|source| ImageError::Json { what: "index", digest: d.to_string(), source })?;
        desc = select(inner.manifests(), platform)
            .cloned()
            .ok_or_else(|| ImageError::NotFound(format!("no manifest for {platform} in index {d}")))?;
    }
    if !matches!(desc.media_type(), MediaType::ImageManifest)
        && desc.media_type().to_string() != DOCKER_MANIFEST
    {
        return Err(ImageError::MediaType(desc.media_type().to_string()));
    }
    let manifest_digest = our_digest(desc.digest())?;
    let manifest_bytes = copy_blob(store, &layout, &manifest_digest, desc.size())?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|source| {
        ImageError::Json { what: "manifest", digest: manifest_digest.to_string(), source }
    })?;
    copy_blob(store, &layout, &our_digest(manifest.config().digest())?, manifest.config().size())?;
    for l in manifest.layers() {
        let d = our_digest(l.digest())?;
        if !store.has_blob(&d) {
            let mut f = layout.open_blob(&d)?;
            store.put_reader(&mut f, Some((&d, l.size())))?;
        }
    }
    Ok((Image::load(store, &manifest_digest)?, manifest_digest))
}

/// Docker's schema 2 manifest media type (accepted from layouts written by `docker save`).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Copies a small blob (verified) and returns its bytes.
fn copy_blob(store: &Store, from: &Store, d: &Digest, size: u64) -> Result<Vec<u8>> {
    let bytes = from.read_blob(d)?;
    if bytes.len() as u64 != size {
        return Err(StoreError::SizeMismatch {
            digest: d.clone(),
            expected: size,
            actual: bytes.len() as u64,
        }
        .into());
    }
    store.put_bytes(&bytes)?;
    Ok(bytes)
}
