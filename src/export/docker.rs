//! The `docker load` / `podman load` archive (`--output type=docker`), in the shape modern
//! `docker save` writes: an OCI layout (`oci-layout`, `index.json`, `blobs/sha256/…`) that also
//! carries the legacy `manifest.json` and `repositories`, whose paths point at the same blobs.
//!
//! Layers are written as stored (usually gzip): `docker load` (since 1.10), `podman load` and
//! skopeo's `docker-archive:` decompress them and check them against the config's diff IDs.

use std::collections::BTreeMap;
use std::io::Write;

use oci_spec::image::Descriptor;
use serde::Serialize;

use super::{ExportError, OCI_LAYOUT, Prepared, Result, TarStream, canonical_json, new_index};
use crate::store::Store;

/// One image in `manifest.json`.
#[derive(Serialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Streams the image as a `docker load` archive to `out`. `names` become `RepoTags` in their
/// familiar form (`app` → `app:latest`, `docker.io/library/app:1` → `app:1`; a name with only a
/// digest is left out) and the `index.json` entries of the embedded OCI layout. Entries are in
/// a fixed (sorted) order, owned by 0:0 with mtime 0: the same image and names give the same bytes.
pub fn write_docker_archive(
    store: &Store,
    manifest: &Descriptor,
    names: &[String],
    out: &mut dyn Write,
) -> Result<()> {
    docker_archive(store, manifest, names, out, None)
}

/// [`write_docker_archive`], going on after the blobs `present` when given (see
/// [`TarStream::resume`]).
pub(crate) fn docker_archive(
    store: &Store,
    manifest: &Descriptor,
    names: &[String],
    out: &mut dyn Write,
    present: Option<&[crate::digest::Digest]>,
) -> Result<()> {
    let Prepared { names, blobs, entries } = Prepared::new(store, manifest, names)?;
    let index = new_index(entries);

    let mut repo_tags: Vec<String> = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for n in &names {
        let (Some(tagged), Some(tag)) = (n.familiar_tagged(), n.tag_or_latest()) else { continue };
        if !repo_tags.contains(&tagged) {
            repo_tags.push(tagged);
        }
        repositories
            .entry(n.familiar_repository())
            .or_default()
            .insert(tag.to_string(), blobs.config.digest.hex().to_string());
    }
    let docker_manifest = vec![ManifestEntry {
        config: blobs.config.entry(),
        repo_tags,
        layers: blobs.layers.iter().map(|l| l.entry()).collect(),
    }];
    let manifest_json = to_json("manifest.json", &docker_manifest)?;
    let repositories_json = to_json("repositories", &repositories)?;

    let mut tar = TarStream::resume(out, present);
    tar.blob_dirs()?;
    for b in blobs.unique() {
        tar.blob(store, b)?;
    }
    tar.file("index.json", &canonical_json(&index))?;
    tar.file("manifest.json", &manifest_json)?;
    tar.file("oci-layout", OCI_LAYOUT)?;
    if !repositories.is_empty() {
        tar.file("repositories", &repositories_json)?;
    }
    tar.finish()
}

fn to_json<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| ExportError::Json { what: what.into(), source })
}
