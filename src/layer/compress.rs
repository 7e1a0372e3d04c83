//! Compressing stored layers when an output needs them. The builder keeps its layers
//! uncompressed in the store (a local rebuild never pays for gzip, as BuildKit's snapshotter
//! keeps snapshots uncompressed); an OCI or docker archive, a push or a remote cache asks for the
//! image with compressed layers, and each layer is compressed once per compression and level: the
//! result is remembered in `<store>/cache/compressed/<diff id>.<compression>[-<level>].json` (no
//! level in the name for the default one) for the next export.
//!
//! What an output asks for is buildx's `compression`, `compression-level` and
//! `force-compression` ([`ExportCompression`]). As in BuildKit, a layer that came compressed
//! (a base image's) ships as it came unless `force-compression=true` asks for it in the output's
//! compression; a layer already in that compression ships as it is whatever its level.

use std::path::PathBuf;

use super::writer::{Codec, LevelError, compress_tar};
use super::{Compression, open_layer};
use crate::digest::Digest;
use crate::image::manifest::{Image, Layer};
use crate::store::{Store, StoreError};

/// How an output wants its layers compressed: buildx's `compression=`, `compression-level=` and
/// `force-compression=`. The default is gzip at level 6, without force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ExportCompression {
    /// The compression and level of the layers hako compresses.
    pub codec: Codec,
    /// `force-compression=true`: layers that came compressed otherwise (a base image's) are
    /// compressed again as `codec`.
    pub force: bool,
}

/// A compression option hako cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// A compression buildx does not name.
    #[error("invalid compression {0:?}: expected gzip, zstd or uncompressed")]
    Unknown(String),
    /// eStargz, which buildx names but hako does not write.
    #[error("not supported yet: compression=estargz")]
    Estargz,
    /// A level that is not a number.
    #[error("invalid compression-level {0:?}: expected a number")]
    NotANumber(String),
    /// A level that does not fit the compression.
    #[error(transparent)]
    Level(#[from] LevelError),
    /// A `force-compression` that is not a boolean.
    #[error("invalid force-compression {0:?}: expected true or false")]
    NotABool(String),
}

impl ExportCompression {
    /// The options as buildx spells them: `compression` (`gzip`, `zstd`, `uncompressed`; gzip
    /// when absent), `compression-level` (an integer in the compression's range), and
    /// `force-compression` (Go's boolean spellings; empty is true, as in BuildKit).
    pub fn parse(
        compression: Option<&str>,
        level: Option<&str>,
        force: Option<&str>,
    ) -> Result<ExportCompression, OptionError> {
        let compression = match compression {
            None | Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some("uncompressed") => Compression::None,
            Some("estargz") => return Err(OptionError::Estargz),
            Some(other) => return Err(OptionError::Unknown(other.to_string())),
        };
        let level = level
            .map(|l| l.trim().parse::<i64>().map_err(|_| OptionError::NotANumber(l.to_string())))
            .transpose()?;
        let force = match force {
            None => false,
            Some("" | "1" | "t" | "T" | "TRUE" | "true" | "True") => true,
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => false,
            Some(other) => return Err(OptionError::NotABool(other.to_string())),
        };
        Ok(ExportCompression { codec: Codec::new(compression, level)?, force })
    }

    /// The compression hako compresses layers with.
    pub fn compression(self) -> Compression {
        self.codec.compression()
    }
}

impl From<Compression> for ExportCompression {
    /// `compression` at its default level, without force.
    fn from(compression: Compression) -> ExportCompression {
        ExportCompression { codec: Codec::from(compression), force: false }
    }
}

/// What is remembered of a compressed layer.
#[derive(serde::Serialize, serde::Deserialize)]
struct Known {
    digest: String,
    size: u64,
}

fn memo(store: &Store, diff_id: &Digest, codec: Codec) -> PathBuf {
    let name = codec.compression().name();
    let file = if codec.is_default_level() {
        format!("{}.{name}.json", diff_id.hex())
    } else {
        format!("{}.{name}-{}.json", diff_id.hex(), codec.level())
    };
    store.root().join("cache/compressed").join(file)
}

/// Whether `layer`'s blob ships as it is — by its media type's compression, so a base layer with
/// Docker's gzip media type ships as it came (same blob, same digest as upstream): when it is in
/// the wanted compression already (its level unknown, as BuildKit does not look either), or came
/// compressed otherwise and no force asks for a change. An uncompressed layer (the builder's own)
/// is always compressed as asked.
fn ships_as_is(layer: &Layer, want: ExportCompression) -> bool {
    match Compression::of_media_type(&layer.media_type) {
        Some(c) if c == want.compression() => true,
        Some(Compression::None) | None => false,
        Some(_) => !want.force,
    }
}

/// `layer`'s tar stored again compressed with `codec`, checked to be the same tar.
fn recompress(store: &Store, layer: &Layer, codec: Codec) -> Result<Layer, StoreError> {
    let out = compress_tar(store, &mut open_layer(store, layer)?, codec)?;
    if out.diff_id != layer.diff_id {
        return Err(StoreError::DigestMismatch { expected: layer.diff_id.clone(), actual: out.diff_id });
    }
    Ok(out)
}

/// `layer` as an output that wants `want` ships it: itself when [it ships as it is](ships_as_is),
/// else its blob compressed with `want.codec` (made once, then remembered).
pub fn compressed(store: &Store, layer: &Layer, want: ExportCompression) -> Result<Layer, StoreError> {
    if ships_as_is(layer, want) {
        return Ok(layer.clone());
    }
    let path = memo(store, &layer.diff_id, want.codec);
    let known = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Known>(&b).ok());
    if let Some(k) = known
        && let Ok(digest) = Digest::parse(&k.digest)
        && std::fs::metadata(store.blob_path(&digest)).is_ok_and(|m| m.len() == k.size)
    {
        return Ok(Layer {
            digest,
            diff_id: layer.diff_id.clone(),
            size: k.size,
            media_type: want.compression().media_type(),
        });
    }
    let out = recompress(store, layer, want.codec)?;
    remember(store, &out, want.codec);
    Ok(out)
}

/// `layer` (from a remote cache) kept as the builder keeps its own: as it is when it is plain or
/// in `keep` (the build's [`crate::build::Options::compress_for`]), else stored again plain,
/// with its compressed blob remembered for the next export, so a store that imported a layer
/// has the same image as the store that built it. `level` is the level the blob was compressed
/// at when not its compression's default (a remote cache says); a blob whose level is not
/// known as valid is neither kept nor remembered, as an output at another level must not ship it.
pub fn to_local(
    store: &Store,
    layer: &Layer,
    keep: Option<Codec>,
    level: Option<u32>,
) -> Result<Layer, StoreError> {
    let codec = match Compression::of_media_type(&layer.media_type) {
        Some(Compression::None) => return Ok(layer.clone()),
        Some(from) => Codec::new(from, level.map(i64::from)).ok(),
        None => None,
    };
    if codec.is_some() && codec == keep {
        return Ok(layer.clone());
    }
    let out = recompress(store, layer, Codec::from(Compression::None))?;
    if let Some(codec) = codec {
        remember(store, layer, codec);
    }
    Ok(out)
}

fn remember(store: &Store, layer: &Layer, codec: Codec) {
    // Best effort: without it the next export compresses again.
    if let Ok(bytes) = serde_json::to_vec(&Known { digest: layer.digest.to_string(), size: layer.size }) {
        let _ = fs_err::create_dir_all(store.root().join("cache/compressed"));
        let _ = store.write_cache_file(&memo(store, &layer.diff_id, codec), &bytes);
    }
}

/// `image` with every layer as an output that wants `want` ships it.
pub fn compressed_image(store: &Store, image: &Image, want: ExportCompression) -> Result<Image, StoreError> {
    let layers = image.layers.iter().map(|l| compressed(store, l, want)).collect::<Result<Vec<_>, _>>()?;
    Ok(Image { config: image.config.clone(), layers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::LayerWriter;
    use crate::layer::index::Meta;

    fn layer(store: &Store, c: Compression) -> Layer {
        let mut w = LayerWriter::new(store, c, Some(0)).unwrap();
        // Enough text that levels differ in what they find.
        let text: Vec<u8> =
            (0..200_000u32).flat_map(|i| format!("line {} of {}\n", i % 977, i % 13).into_bytes()).collect();
        let meta = Meta::file(text.len() as u64);
        w.add("f", &meta, Some(&mut &text[..])).unwrap();
        w.finish().unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn want(compression: &str, level: Option<&str>, force: Option<&str>) -> ExportCompression {
        ExportCompression::parse(Some(compression), level, force).unwrap()
    }

    #[test]
    fn a_layer_is_compressed_once_and_a_compressed_one_ships_as_it_is() {
        let (_dir, store) = store();
        let plain = layer(&store, Compression::None);
        let gzip = ExportCompression::default();
        let gz = compressed(&store, &plain, gzip).unwrap();
        assert_eq!(
            (gz.diff_id.clone(), gz.media_type.clone()),
            (plain.diff_id.clone(), Compression::Gzip.media_type())
        );
        assert_eq!(compressed(&store, &plain, gzip).unwrap(), gz, "remembered");
        assert!(store.root().join(format!("cache/compressed/{}.gzip.json", plain.diff_id.hex())).is_file());
        // A base layer with Docker's gzip media type is gzip already: the same blob ships.
        let docker =
            Layer { media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(), ..gz.clone() };
        assert_eq!(compressed(&store, &docker, gzip).unwrap(), docker);
        // Back to the store's form: the same tar.
        assert_eq!(to_local(&store, &gz, None, None).unwrap(), plain);
    }

    #[test]
    fn each_level_makes_its_own_blob_of_the_same_tar() {
        let (_dir, store) = store();
        let plain = layer(&store, Compression::None);
        let mut digests = Vec::new();
        for (c, level) in
            [("gzip", None), ("gzip", Some("1")), ("gzip", Some("9")), ("zstd", None), ("zstd", Some("19"))]
        {
            let w = want(c, level, None);
            let out = compressed(&store, &plain, w).unwrap();
            assert_eq!((&out.diff_id, &out.media_type), (&plain.diff_id, &w.compression().media_type()));
            // Remembered per level: asked again, the same blob without compressing again.
            assert_eq!(compressed(&store, &plain, w).unwrap(), out, "{c} {level:?}");
            digests.push(out.digest.clone());
        }
        let sizes: Vec<u64> = digests.iter().map(|d| store.blob_path(d).metadata().unwrap().len()).collect();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), 5, "five blobs");
        assert!(sizes[2] < sizes[1], "gzip 9 is smaller than gzip 1: {sizes:?}");
        // The default level named explicitly is the default blob.
        assert_eq!(
            compressed(&store, &plain, want("gzip", Some("6"), None)).unwrap(),
            compressed(&store, &plain, ExportCompression::default()).unwrap()
        );
        assert_eq!(
            compressed(&store, &plain, want("zstd", Some("0"), None)).unwrap(),
            compressed(&store, &plain, want("zstd", Some("1"), None)).unwrap(),
            "zstd 0 is its fastest level, 1"
        );
    }

    #[test]
    fn force_compression_recompresses_layers_that_came_compressed_otherwise() {
        let (_dir, store) = store();
        let plain = layer(&store, Compression::None);
        let base = compressed(&store, &plain, ExportCompression::default()).unwrap();
        let base_zstd = compressed(&store, &plain, want("zstd", None, None)).unwrap();
        // Without force, a base layer ships as it came, whatever the output's compression.
        assert_eq!(compressed(&store, &base, want("zstd", None, None)).unwrap(), base);
        assert_eq!(compressed(&store, &base, want("uncompressed", None, None)).unwrap(), base);
        // With force, in the output's compression: the same blob a layer of ours gets.
        assert_eq!(compressed(&store, &base, want("zstd", None, Some("true"))).unwrap(), base_zstd);
        assert_eq!(compressed(&store, &base, want("uncompressed", None, Some(""))).unwrap(), plain);
        // In the output's compression already: ships as it is, whatever its level.
        assert_eq!(compressed(&store, &base, want("gzip", Some("9"), Some("true"))).unwrap(), base);
        // Our own uncompressed layers are compressed with or without force.
        assert_eq!(compressed(&store, &plain, want("zstd", None, Some("1"))).unwrap(), base_zstd);
    }

    #[test]
    fn an_imported_blob_is_remembered_at_its_own_level_only() {
        let (_dir, store) = store();
        let plain = layer(&store, Compression::None);
        let nine = compressed(&store, &plain, want("gzip", Some("9"), None)).unwrap();
        fs_err::remove_dir_all(store.root().join("cache/compressed")).unwrap();
        // Kept as it is only by a build that makes its layers at that level.
        let keep = |level| Some(Codec::new(Compression::Gzip, Some(level)).unwrap());
        assert_eq!(to_local(&store, &nine, keep(9), Some(9)).unwrap(), nine);
        assert_eq!(to_local(&store, &nine, keep(6), Some(9)).unwrap(), plain);
        assert!(!store.root().join(format!("cache/compressed/{}.gzip.json", plain.diff_id.hex())).exists());
        assert!(store.root().join(format!("cache/compressed/{}.gzip-9.json", plain.diff_id.hex())).is_file());
        assert_eq!(compressed(&store, &plain, want("gzip", Some("9"), None)).unwrap(), nine);
        assert_ne!(compressed(&store, &plain, ExportCompression::default()).unwrap(), nine);
    }

    #[test]
    fn options_as_buildx_spells_them() {
        let parse = |c: Option<&str>, l: Option<&str>, f: Option<&str>| ExportCompression::parse(c, l, f);
        assert_eq!(parse(None, None, None), Ok(ExportCompression::default()));
        let w = parse(Some("zstd"), Some("22"), Some("True")).unwrap();
        assert_eq!((w.compression(), w.codec.level(), w.force), (Compression::Zstd, 19, true), "ultra is 19");
        assert_eq!(parse(Some("zstd"), Some("0"), None).unwrap().codec.level(), 1, "0 is the fastest");
        let w = parse(None, Some("0"), Some("false")).unwrap();
        assert_eq!((w.compression(), w.codec.level(), w.force), (Compression::Gzip, 0, false));
        assert_eq!(parse(Some("uncompressed"), None, None), Ok(ExportCompression::from(Compression::None)));
        let errors = [
            (
                parse(Some("lz4"), None, None),
                "invalid compression \"lz4\": expected gzip, zstd or uncompressed",
            ),
            (parse(Some("estargz"), None, None), "not supported yet: compression=estargz"),
            (parse(None, Some("fast"), None), "invalid compression-level \"fast\": expected a number"),
            (parse(None, Some("10"), None), "compression-level=10 is out of range for gzip: expected 0 to 9"),
            (parse(None, Some("-1"), None), "compression-level=-1 is out of range for gzip: expected 0 to 9"),
            (
                parse(Some("zstd"), Some("23"), None),
                "compression-level=23 is out of range for zstd: expected 0 to 22",
            ),
            (
                parse(Some("uncompressed"), Some("3"), None),
                "compression-level does not apply to compression=uncompressed",
            ),
            (parse(None, None, Some("yes")), "invalid force-compression \"yes\": expected true or false"),
        ];
        for (got, want) in errors {
            assert_eq!(got.map_err(|e| e.to_string()), Err(want.to_string()));
        }
    }
}
