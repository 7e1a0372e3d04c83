//! Compressing stored layers when an output needs them. The builder keeps its layers
//! uncompressed in the store (a local rebuild never pays for gzip, as BuildKit's snapshotter
//! keeps snapshots uncompressed); an OCI or docker archive, a push or a remote cache asks for the
//! image with compressed layers, and each layer is compressed once: the result is remembered in
//! `<store>/cache/compressed/<diff id>.<compression>.json` for the next export.

use std::path::PathBuf;

use super::{Compression, open_layer, writer::compress_tar};
use crate::digest::Digest;
use crate::image::manifest::{Image, Layer};
use crate::store::{Store, StoreError};

/// What is remembered of a compressed layer.
#[derive(serde::Serialize, serde::Deserialize)]
struct Known {
    digest: String,
    size: u64,
}

fn memo(store: &Store, diff_id: &Digest, to: Compression) -> PathBuf {
    store.root().join("cache/compressed").join(format!("{}.{}.json", diff_id.hex(), to.name()))
}

/// Whether `layer`'s blob is compressed as `to` already — by its media type's compression, so a
/// base layer with Docker's gzip media type ships as it came (same blob, same digest as upstream).
fn is(layer: &Layer, to: Compression) -> bool {
    Compression::of_media_type(&layer.media_type) == Some(to)
}

/// `layer`'s tar stored again compressed as `to`, checked to be the same tar.
fn recompress(store: &Store, layer: &Layer, to: Compression) -> Result<Layer, StoreError> {
    let out = compress_tar(store, &mut open_layer(store, layer)?, to)?;
    if out.diff_id != layer.diff_id {
        return Err(StoreError::DigestMismatch { expected: layer.diff_id.clone(), actual: out.diff_id });
    }
    Ok(out)
}

/// `layer` as a blob compressed with `to` (itself when it already is).
pub fn compressed(store: &Store, layer: &Layer, to: Compression) -> Result<Layer, StoreError> {
    if is(layer, to) {
        return Ok(layer.clone());
    }
    let path = memo(store, &layer.diff_id, to);
    let known = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Known>(&b).ok());
    if let Some(k) = known
        && let Ok(digest) = Digest::parse(&k.digest)
        && std::fs::metadata(store.blob_path(&digest)).is_ok_and(|m| m.len() == k.size)
    {
        return Ok(Layer {
            digest,
            diff_id: layer.diff_id.clone(),
            size: k.size,
            media_type: to.media_type(),
        });
    }
    let out = recompress(store, layer, to)?;
    remember(store, &out, to);
    Ok(out)
}

/// `layer` kept as the builder keeps its own (`local`): a layer that came compressed (from a remote
/// cache) is stored again as `local`, and its compressed blob is remembered for the next export,
/// so a store that imported a layer has the same image as the store that built it.
pub fn to_local(store: &Store, layer: &Layer, local: Compression) -> Result<Layer, StoreError> {
    if is(layer, local) {
        return Ok(layer.clone());
    }
    let out = recompress(store, layer, local)?;
    if let Some(from) = Compression::of_media_type(&layer.media_type) {
        remember(store, layer, from);
    }
    Ok(out)
}

fn remember(store: &Store, layer: &Layer, as_: Compression) {
    // Best effort: without it the next export compresses again.
    if let Ok(bytes) = serde_json::to_vec(&Known { digest: layer.digest.to_string(), size: layer.size }) {
        let _ = fs_err::create_dir_all(store.root().join("cache/compressed"));
        let _ = store.write_cache_file(&memo(store, &layer.diff_id, as_), &bytes);
    }
}

/// `image` with every layer compressed as `to`.
pub fn compressed_image(store: &Store, image: &Image, to: Compression) -> Result<Image, StoreError> {
    let layers = image.layers.iter().map(|l| compressed(store, l, to)).collect::<Result<Vec<_>, _>>()?;
    Ok(Image { config: image.config.clone(), layers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::LayerWriter;
    use crate::layer::index::{Kind, Meta};

    fn layer(store: &Store, c: Compression) -> Layer {
        let mut w = LayerWriter::new(store, c, Some(0)).unwrap();
        let meta = Meta { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 2 };
        w.add("f", &meta, Some(&mut &b"hi"[..])).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn a_layer_is_compressed_once_and_a_compressed_one_ships_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let plain = layer(&store, Compression::None);
        let gz = compressed(&store, &plain, Compression::Gzip).unwrap();
        assert_eq!(
            (gz.diff_id.clone(), gz.media_type.clone()),
            (plain.diff_id.clone(), Compression::Gzip.media_type())
        );
        assert_eq!(compressed(&store, &plain, Compression::Gzip).unwrap(), gz, "remembered");
        // A base layer with Docker's gzip media type is gzip already: the same blob ships.
        let docker =
            Layer { media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(), ..gz.clone() };
        assert_eq!(compressed(&store, &docker, Compression::Gzip).unwrap(), docker);
        // Back to the store's form: the same tar.
        assert_eq!(to_local(&store, &gz, Compression::None).unwrap(), plain);
    }
}
