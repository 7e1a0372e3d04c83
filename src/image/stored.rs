//! Images kept in the store by name, as Docker's image store keeps them: `-t` names and
//! `hako tag` write them, `hako images`/`push`/`save`/`rmi` read them, and a `FROM` or
//! `COPY --from` that names one uses it without the network.
//!
//! Names are kept in Docker's familiar `repo:tag` form (`app:latest` for `app`,
//! `registry.example/team/app:1`), so `app`, `app:latest` and `docker.io/library/app:latest` are
//! one image, as for `docker images`. Entries written under another spelling (older stores) are
//! matched by normalising them too.

use oci_spec::image::{Descriptor, ImageIndex, MediaType};

use super::manifest::{DOCKER_MANIFEST, Image, ImageError, Result, our_digest, select};
use super::platform::Platform;
use super::reference::{ImageName, ReferenceError};
use crate::digest::Digest;
use crate::store::Store;

/// The name an image is kept under: Docker's familiar `repo:tag`. A name with a digest cannot
/// name a kept image (Docker: "refusing to create a tag with a digest reference").
pub fn store_name(reference: &str) -> std::result::Result<String, ReferenceError> {
    let name = ImageName::parse(reference)?;
    if name.digest().is_some() {
        return Err(ReferenceError::Invalid("a tag cannot have a digest (@sha256:…)".into()));
    }
    name.familiar_tagged().ok_or_else(|| ReferenceError::Invalid("no tag".into()))
}

/// A kept image: its name and the descriptor `index.json` holds for it.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The name (familiar `repo:tag`, or as written by an older store).
    pub name: String,
    /// The manifest (or index) descriptor.
    pub descriptor: Descriptor,
}

impl Kept {
    /// The manifest digest.
    pub fn digest(&self) -> Result<Digest> {
        our_digest(self.descriptor.digest())
    }
}

/// Every named image in the store.
pub fn list(store: &Store) -> Result<Vec<Kept>> {
    Ok(store.named()?.into_iter().map(|(name, descriptor)| Kept { name, descriptor }).collect())
}

/// The images `reference` names: the one kept under that name, or, for a digest or an image ID
/// (`sha256:…`, or a prefix of at least 4 hex digits, as Docker accepts), every name of the
/// image whose manifest or config has that digest.
pub fn find(store: &Store, reference: &str) -> Result<Vec<Kept>> {
    let kept = list(store)?;
    // A name first; a short hex ID also parses as a name, so it falls through when none matches.
    if let Ok(wanted) = store_name(reference) {
        let named: Vec<Kept> =
            kept.iter().filter(|k| store_name(&k.name).ok().as_deref() == Some(&wanted)).cloned().collect();
        if !named.is_empty() {
            return Ok(named);
        }
    }
    let hex = reference.rsplit_once('@').map_or(reference, |(_, d)| d);
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for k in kept {
        let manifest = k.digest()?;
        let config = config_digest(store, &k.descriptor).ok();
        if manifest.hex().starts_with(hex) || config.is_some_and(|c| c.hex().starts_with(hex)) {
            out.push(k);
        }
    }
    Ok(out)
}

/// The config digest (the image ID) of a kept manifest.
pub fn config_digest(store: &Store, desc: &Descriptor) -> Result<Digest> {
    let d = our_digest(desc.digest())?;
    let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&store.read_blob(&d)?)
        .map_err(|source| ImageError::Json { what: "manifest", digest: d.to_string(), source })?;
    our_digest(manifest.config().digest())
}

/// The kept image `reference` names, for `platform`, if the store has one under that name: what
/// `FROM name:tag` uses before asking a registry. A kept image built for another platform is not
/// used (the registry is asked, as containerd's platform matcher would have it).
pub fn base(store: &Store, reference: &str, platform: &Platform) -> Result<Option<(Image, Digest)>> {
    let Some(kept) = find_named(store, reference)? else { return Ok(None) };
    let mut desc = kept.descriptor;
    // A kept index (several platforms under one name): the platform's manifest.
    for _ in 0..4 {
        if *desc.media_type() != MediaType::ImageIndex {
            break;
        }
        let d = our_digest(desc.digest())?;
        let index: ImageIndex = serde_json::from_slice(&store.read_blob(&d)?)
            .map_err(|source| ImageError::Json { what: "index", digest: d.to_string(), source })?;
        match select(index.manifests(), platform) {
            Some(m) => desc = m.clone(),
            None => return Ok(None),
        }
    }
    if !matches!(desc.media_type(), MediaType::ImageManifest)
        && desc.media_type().to_string() != DOCKER_MANIFEST
    {
        return Ok(None);
    }
    let digest = our_digest(desc.digest())?;
    let image = Image::load(store, &digest)?;
    let c = &image.config;
    let fits = c.os == platform.os
        && c.architecture == platform.arch
        && (platform.variant.is_empty() || c.variant.as_deref().unwrap_or("") == platform.variant);
    Ok(fits.then_some((image, digest)))
}

/// The image kept under the name `reference` (not a digest or ID).
fn find_named(store: &Store, reference: &str) -> Result<Option<Kept>> {
    let Ok(wanted) = store_name(reference) else { return Ok(None) };
    Ok(list(store)?.into_iter().find(|k| store_name(&k.name).ok().as_deref() == Some(&wanted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_in_docker_familiar_form() {
        assert_eq!(store_name("app").as_deref(), Ok("app:latest"));
        assert_eq!(store_name("docker.io/library/app:1").as_deref(), Ok("app:1"));
        assert_eq!(store_name("localhost:5000/a/b").as_deref(), Ok("localhost:5000/a/b:latest"));
        assert!(
            store_name("app@sha256:0000000000000000000000000000000000000000000000000000000000000000")
                .is_err()
        );
        assert!(store_name("App").is_err());
    }

    #[test]
    fn finds_by_any_spelling_of_a_name_and_by_digest_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let (d, n) = store.put_bytes(br#"{"schemaVersion":2}"#).expect("blob");
        let desc = Descriptor::new(MediaType::ImageManifest, n, super::super::manifest::oci_digest(&d));
        store.tag("app", &desc).expect("tag"); // as an older store wrote it
        store.tag("other:1", &desc).expect("tag");
        let names = |r: &str| find(&store, r).expect("find").into_iter().map(|k| k.name).collect::<Vec<_>>();
        assert_eq!(names("app:latest"), ["app"]);
        assert_eq!(names("docker.io/library/app"), ["app"]);
        assert_eq!(names(&d.hex()[..12]), ["app", "other:1"]);
        assert_eq!(names(&d.to_string()), ["app", "other:1"]);
        assert!(names("nope").is_empty());
    }
}
