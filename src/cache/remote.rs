//! Remote caches (`--cache-to`, `--cache-from`, buildx's syntax and meanings): step records and
//! the layers they name, shared through a registry (`type=registry,ref=R`), a directory
//! (`type=local,dest=DIR` / `src=DIR`) or the image's own config (`type=inline`), so stateless CI
//! runners get cache hits from the registry they already push to.
//!
//! Format (docs/CACHE.md): an OCI image manifest whose config has media type
//! [`CONFIG_MEDIA_TYPE`] — a JSON list of records (key, layer compression, index of its layer in
//! the manifest's `layers`, or none) — and whose layers are the recorded layer blobs. Plain tags,
//! no referrers API (distribution 2.8 has none). `type=inline` puts the same list, with indexes
//! into the image's own layers, under [`INLINE_KEY`] in the image config.
//!
//! Import is lazy: only the manifest and the config are read at the start; a layer is pulled when
//! its step hits. A cache that is missing or unreachable is a warning, never a failed build.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use serde::{Deserialize, Serialize};

use super::key::CacheKey;
use super::records::{Hit, LayerRecord};
use crate::digest::Digest;
use crate::image::manifest::{Layer, oci_digest, our_digest};
use crate::layer::Codec;
use crate::layer::compress::ExportCompression;
use crate::registry::Registry;
use crate::store::Store;

/// The media type of a cache manifest's config.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.hako.cache.config.v1+json";
/// The image config key holding an inline cache.
pub const INLINE_KEY: &str = "hako.cache.v1";
/// The tag a local cache's layout names its manifest with.
const LOCAL_NAME: &str = "hako-cache:latest";
const FORMAT_VERSION: u32 = 1;

/// Where a cache goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A registry reference.
    Registry(String),
    /// An OCI layout directory.
    Local(PathBuf),
    /// The built image's config.
    Inline,
}

/// A parsed `--cache-to` or `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// Where.
    pub target: Target,
    /// `mode=max`: the records of every stage built, not only the final image's.
    pub max: bool,
    /// `ignore-error=true`: an export failure is a warning.
    pub ignore_error: bool,
    /// `cache-mounts=true` (hako's own; BuildKit cannot, moby/buildkit#1474): the contents of
    /// the build's `RUN --mount=type=cache` directories travel with the cache.
    pub cache_mounts: bool,
    /// `compression=`, `compression-level=`, `force-compression=`: how the cache's layers are
    /// compressed (gzip unless told).
    pub compression: ExportCompression,
}

/// Parses a `--cache-to` (`export`) or `--cache-from` value: `type=registry,ref=R`,
/// `type=local,dest=DIR|src=DIR`, `type=inline`, or a bare reference (a registry cache).
pub fn parse_spec(s: &str, export: bool) -> Result<CacheSpec, String> {
    if !s.contains('=') {
        return Ok(CacheSpec {
            target: Target::Registry(s.to_string()),
            max: false,
            ignore_error: false,
            cache_mounts: false,
            compression: ExportCompression::default(),
        });
    }
    // An unknown type first: its options are not ours to judge.
    if let Some(t) = s.split(',').find_map(|f| f.trim().strip_prefix("type="))
        && !matches!(t, "registry" | "local" | "inline")
    {
        return Err(format!("not supported yet: type={t} (registry, local and inline are)"));
    }
    let (mut kind, mut reference, mut dir, mut max, mut ignore_error) = (None, None, None, false, false);
    let mut cache_mounts = false;
    let (mut compression, mut level, mut force) = (None, None, None);
    for field in s.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| format!("{field:?}: expected KEY=VALUE"))?;
        match (k.trim(), v.trim()) {
            ("type", v) => kind = Some(v.to_string()),
            ("ref", v) => reference = Some(v.to_string()),
            ("dest", v) if export => dir = Some(PathBuf::from(v)),
            ("src", v) if !export => dir = Some(PathBuf::from(v)),
            ("mode", "min") => max = false,
            ("mode", "max") => max = true,
            ("mode", other) => return Err(format!("mode={other}: expected min or max")),
            ("ignore-error", v) => ignore_error = v == "true",
            ("cache-mounts", v) if export => cache_mounts = v == "true",
            ("compression", v) if export => compression = Some(v),
            ("compression-level", v) if export => level = Some(v),
            ("force-compression", v) if export => force = Some(v),
            // An import reads layers in whatever compression they are, as BuildKit's does.
            ("compression" | "compression-level" | "force-compression", _) => {}
            // Accepted for buildx compatibility: hako always writes OCI manifests.
            ("oci-mediatypes" | "image-manifest", _) => {}
            (other, _) => return Err(format!("unknown option {other:?}")),
        }
    }
    let target = match kind.as_deref() {
        Some("registry") => Target::Registry(reference.ok_or("type=registry needs ref=REFERENCE")?),
        Some("local") => Target::Local(dir.ok_or(if export {
            "type=local needs dest=DIR"
        } else {
            "type=local needs src=DIR"
        })?),
        Some("inline") => Target::Inline,
        None => Target::Registry(reference.ok_or("give type=registry,ref=REFERENCE")?),
        Some(other) => {
            return Err(format!("not supported yet: type={other} (registry, local and inline are)"));
        }
    };
    if cache_mounts && target == Target::Inline {
        return Err(
            "cache-mounts=true needs type=registry or type=local (an image config cannot hold them)".into()
        );
    }
    let compression = ExportCompression::parse(compression, level, force).map_err(|e| e.to_string())?;
    Ok(CacheSpec { target, max, ignore_error, cache_mounts, compression })
}

/// The records a cache carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// Format version.
    pub v: u32,
    /// One per step.
    pub records: Vec<RemoteRecord>,
    /// Cache mounts that travel (`cache-mounts=true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<RemoteMount>,
}

/// A cache mount's contents in a cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteMount {
    /// The cache's key (the hashed `id`, as the sandbox names its directory).
    pub key: String,
    /// The index of its layer among the manifest's layers.
    pub layer: usize,
    /// That layer's diff id.
    pub diff_id: String,
}

/// A step record in a cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRecord {
    /// The step's key.
    pub key: String,
    /// The layer compression (`gzip`, `zstd`, `none`).
    pub compression: String,
    /// The compression level, when not the compression's default: an importer remembers the
    /// blob as that level's (older caches have none: they were made at the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
    /// The index of its layer among the manifest's (or, inline, the image's) layers.
    pub layer: Option<usize>,
    /// The layer's diff id (a manifest names only blobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
}

/// A step's result as the build used it (hit or run), for export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Used {
    /// The step's key.
    pub key: CacheKey,
    /// Its layer, as the store keeps it.
    pub layer: Option<Layer>,
    /// The stage it belongs to.
    pub stage: usize,
}

/// The records of `used` (in `stages`), with their layers indexed into `layers` (extended with
/// the layers not in it yet), which ship compressed with `codec`.
pub fn records(used: &[Used], stages: &HashSet<usize>, layers: &mut Vec<Layer>, codec: Codec) -> CacheConfig {
    let mut seen = HashSet::new();
    let mut records = Vec::new();
    for u in used.iter().filter(|u| stages.contains(&u.stage)) {
        if !seen.insert(u.key.clone()) {
            continue;
        }
        let layer = u.layer.as_ref().map(|l| match layers.iter().position(|x| x.digest == l.digest) {
            Some(i) => i,
            None => {
                layers.push(l.clone());
                layers.len() - 1
            }
        });
        records.push(RemoteRecord {
            key: u.key.to_string(),
            compression: codec.compression().name().into(),
            level: (!codec.is_default_level()).then(|| codec.level()),
            layer,
            diff_id: u.layer.as_ref().map(|l| l.diff_id.to_string()),
        });
    }
    CacheConfig { v: FORMAT_VERSION, records, mounts: Vec::new() }
}

/// Adds cache mounts (key, contents as a layer) to `config` and their layers to `layers`.
pub fn add_mounts(config: &mut CacheConfig, layers: &mut Vec<Layer>, mounts: Vec<(String, Layer)>) {
    for (key, layer) in mounts {
        config.mounts.push(RemoteMount { key, layer: layers.len(), diff_id: layer.diff_id.to_string() });
        layers.push(layer);
    }
}

/// Writes a cache of `config` (made by [`records`] with `spec.compression.codec`) and `layers` to
/// `spec`'s target (registry or local), the layers compressed as it asks; returns what was
/// written, for the log.
pub fn export(
    store: &Store,
    registry: &Registry,
    spec: &CacheSpec,
    config: &CacheConfig,
    layers: &[Layer],
) -> Result<String, String> {
    let target = &spec.target;
    // The build keeps layers uncompressed; a cache ships them compressed, each once.
    let layers = layers
        .iter()
        .map(|l| crate::layer::compress::compressed(store, l, spec.compression))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let bytes = serde_json::to_vec(config).map_err(|e| e.to_string())?;
    let (config_digest, config_size) = store.put_bytes(&bytes).map_err(|e| e.to_string())?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::Other(CONFIG_MEDIA_TYPE.into()),
            config_size,
            oci_digest(&config_digest),
        ))
        .layers(layers.iter().map(Layer::descriptor).collect::<Vec<_>>())
        .build()
        .map_err(|e| e.to_string())?;
    let bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let (digest, size) = store.put_bytes(&bytes).map_err(|e| e.to_string())?;
    let desc = Descriptor::new(MediaType::ImageManifest, size, oci_digest(&digest));
    let mut what = format!("{} records, {} layers", config.records.len(), layers.len());
    if !config.mounts.is_empty() {
        what.push_str(&format!(" ({} cache mounts)", config.mounts.len()));
    }
    match target {
        Target::Registry(r) => {
            registry.push(store, &desc, r).map_err(|e| e.to_string())?;
            Ok(format!("{what} to {r}"))
        }
        Target::Local(dir) => {
            crate::export::oci::write_layout_dir(store, &desc, &[LOCAL_NAME.to_string()], dir)
                .map_err(|e| e.to_string())?;
            Ok(format!("{what} to {}", dir.display()))
        }
        Target::Inline => Err("an inline cache is written into the image config".into()),
    }
}

/// Where an imported record's layer is fetched from.
#[derive(Debug, Clone)]
enum Origin {
    Registry(String),
    Local(PathBuf),
}

/// An imported layer and the compression level its cache records (none: the default).
type Leveled = (LayerRecord, Option<u32>);

/// The records of every `--cache-from`, the first source of a key winning.
#[derive(Debug, Default)]
pub struct Imported {
    origins: Vec<Origin>,
    /// By key: the cache's index in `origins`, and the layer with its compression level.
    hits: HashMap<String, (usize, Option<Leveled>)>,
    mounts: HashMap<String, (usize, LayerRecord)>,
}

impl Imported {
    /// Reads the manifest and records of each cache in `specs`; a cache that cannot be read is
    /// reported through `warn` and skipped.
    pub fn load(
        store: &Store,
        registry: &Registry,
        specs: &[CacheSpec],
        warn: &mut dyn FnMut(String),
    ) -> Imported {
        let mut imported = Imported::default();
        for spec in specs {
            let origin = match &spec.target {
                Target::Registry(r) => Origin::Registry(r.clone()),
                Target::Local(d) => Origin::Local(d.clone()),
                Target::Inline => continue,
            };
            match read_cache(store, registry, &origin) {
                Ok(Some((config, layers))) => imported.add(origin, config, &layers),
                Ok(None) => warn(format!("cache {} not found; building without it", origin.name())),
                Err(e) => {
                    warn(format!("cache {} could not be read, building without it: {e}", origin.name()))
                }
            }
        }
        imported
    }

    fn add(&mut self, origin: Origin, config: CacheConfig, layers: &[Descriptor]) {
        let n = self.origins.len();
        self.origins.push(origin);
        for r in config.records {
            let layer = match r.layer {
                None => None,
                Some(i) => {
                    let (Some(d), Some(diff_id)) = (layers.get(i), r.diff_id) else { continue };
                    Some((layer_record(d, diff_id), r.level))
                }
            };
            self.hits.entry(r.key).or_insert((n, layer));
        }
        for m in config.mounts {
            let Some(d) = layers.get(m.layer) else { continue };
            self.mounts.entry(m.key).or_insert((n, layer_record(d, m.diff_id)));
        }
    }

    /// The contents of cache mount `key` from a cache that carries it, pulled into the store.
    pub fn mount(
        &self,
        store: &Store,
        registry: Option<&Registry>,
        key: &str,
    ) -> Option<Result<Layer, String>> {
        let (origin, l) = self.mounts.get(key)?;
        Some(self.fetch(store, registry, &self.origins[*origin], l))
    }

    /// How many records were imported.
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    /// Whether nothing was imported.
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// The imported result of `key`, its layer pulled into the store now (verified by digest), in
    /// whatever compression the cache has it, with the compression level the cache records when
    /// it is not the default.
    pub fn get(
        &self,
        store: &Store,
        registry: Option<&Registry>,
        key: &CacheKey,
    ) -> Option<Result<(Hit, Option<u32>), String>> {
        let (origin, layer) = self.hits.get(&key.to_string())?;
        let Some((l, level)) = layer else { return Some(Ok((Hit::Empty, None))) };
        Some(self.fetch(store, registry, &self.origins[*origin], l).map(|l| (Hit::Layer(l), *level)))
    }

    /// Pulls the blob of `l` from `origin` into the store (verified by digest).
    fn fetch(
        &self,
        store: &Store,
        registry: Option<&Registry>,
        origin: &Origin,
        l: &LayerRecord,
    ) -> Result<Layer, String> {
        let digest = Digest::parse(&l.digest).map_err(|e| e.to_string())?;
        match origin {
            Origin::Registry(r) => {
                let registry = registry.ok_or("registry access is off")?;
                registry.blob(store, r, &digest, l.size).map_err(|e| e.to_string())?
            }
            Origin::Local(dir) if !store.has_blob(&digest) => {
                let mut f = Store::open_readonly(dir).open_blob(&digest).map_err(|e| e.to_string())?;
                store.put_reader(&mut f, Some((&digest, l.size))).map_err(|e| e.to_string())?;
            }
            Origin::Local(_) => {}
        }
        l.to_layer().ok_or_else(|| format!("a malformed record for layer {}", l.digest))
    }
}

/// A cache manifest's layer descriptor as a record (a manifest names no diff ids: the cache's
/// records carry them).
fn layer_record(d: &Descriptor, diff_id: String) -> LayerRecord {
    LayerRecord {
        digest: d.digest().to_string(),
        diff_id,
        size: d.size(),
        media_type: d.media_type().to_string(),
    }
}

impl Origin {
    fn name(&self) -> String {
        match self {
            Origin::Registry(r) => r.clone(),
            Origin::Local(d) => d.display().to_string(),
        }
    }
}

/// Reads a blob of the cache being imported.
type BlobFetch<'a> = Box<dyn Fn(&Descriptor) -> Result<Vec<u8>, String> + 'a>;

/// The records and layer descriptors of a cache: a cache manifest, or an image with an inline
/// cache. `None` when it does not exist.
fn read_cache(
    store: &Store,
    registry: &Registry,
    origin: &Origin,
) -> Result<Option<(CacheConfig, Vec<Descriptor>)>, String> {
    let (manifest_bytes, blob): (Vec<u8>, BlobFetch<'_>) = match origin {
        Origin::Registry(r) => {
            let Some((bytes, _)) = registry.manifest(r).map_err(|e| e.to_string())? else { return Ok(None) };
            let r = r.clone();
            let fetch = move |d: &Descriptor| {
                let digest = our_digest(d.digest()).map_err(|e| e.to_string())?;
                registry.blob(store, &r, &digest, d.size()).map_err(|e| e.to_string())?;
                store.read_blob(&digest).map_err(|e| e.to_string())
            };
            (bytes, Box::new(fetch))
        }
        Origin::Local(dir) => {
            let layout = Store::open_readonly(dir);
            let index = match fs_err::read(dir.join("index.json")) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            let index: oci_spec::image::ImageIndex =
                serde_json::from_slice(&index).map_err(|e| e.to_string())?;
            let Some(entry) = index.manifests().first() else { return Ok(None) };
            let digest = our_digest(entry.digest()).map_err(|e| e.to_string())?;
            let bytes = layout.read_blob(&digest).map_err(|e| e.to_string())?;
            let fetch = move |d: &Descriptor| {
                let digest = our_digest(d.digest()).map_err(|e| e.to_string())?;
                layout.read_blob(&digest).map_err(|e| e.to_string())
            };
            (bytes, Box::new(fetch))
        }
    };
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| format!("not a cache manifest or image manifest: {e}"))?;
    let config_bytes = blob(manifest.config())?;
    let config: CacheConfig = if manifest.config().media_type().to_string() == CONFIG_MEDIA_TYPE {
        serde_json::from_slice(&config_bytes).map_err(|e| e.to_string())?
    } else {
        // An image: its inline cache, if it has one.
        let value: serde_json::Value = serde_json::from_slice(&config_bytes).map_err(|e| e.to_string())?;
        match value.get(INLINE_KEY) {
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| e.to_string())?,
            None => {
                return Err("an image without an inline cache (build it with --cache-to type=inline)".into());
            }
        }
    };
    if config.v != FORMAT_VERSION {
        return Err(format!("cache format version {} (this hako reads {FORMAT_VERSION})", config.v));
    }
    Ok(Some((config, manifest.layers().clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_as_buildx_writes_them() {
        let s = parse_spec("type=registry,ref=127.0.0.1:5000/app:cache,mode=max", true).unwrap();
        assert_eq!(s.target, Target::Registry("127.0.0.1:5000/app:cache".into()));
        assert!(s.max);
        let s = parse_spec("type=local,src=/tmp/c", false).unwrap();
        assert_eq!(s.target, Target::Local("/tmp/c".into()));
        assert!(parse_spec("type=local,src=/tmp/c", true).is_err(), "export needs dest=");
        assert_eq!(
            parse_spec("user/app:cache", false).unwrap().target,
            Target::Registry("user/app:cache".into())
        );
        assert_eq!(parse_spec("type=inline", true).unwrap().target, Target::Inline);
        assert!(parse_spec("type=gha", true).unwrap_err().starts_with("not supported yet"));
        assert!(parse_spec("type=registry,ref=x,bogus=1", true).is_err());
        assert!(
            parse_spec("type=registry,ref=x,ignore-error=true,oci-mediatypes=true", true)
                .unwrap()
                .ignore_error
        );
    }

    #[test]
    fn compression_options_apply_to_exports() {
        let s = "type=registry,ref=x,compression=zstd,compression-level=19,force-compression=true";
        let want = ExportCompression::parse(Some("zstd"), Some("19"), Some("true")).unwrap();
        assert_eq!(parse_spec(s, true).unwrap().compression, want);
        assert_eq!(parse_spec("x", true).unwrap().compression, ExportCompression::default());
        let e = parse_spec("type=local,dest=d,compression-level=10", true).unwrap_err();
        assert_eq!(e, "compression-level=10 is out of range for gzip: expected 0 to 9");
        assert!(parse_spec("type=local,dest=d,compression=lz4", true).unwrap_err().contains("\"lz4\""));
        // An import reads whatever compression the cache has.
        let s = "type=registry,ref=x,compression=lz4,compression-level=99";
        assert_eq!(parse_spec(s, false).unwrap().compression, ExportCompression::default());
    }

    #[test]
    fn records_index_layers_once() {
        let l = |n: &[u8]| Layer {
            digest: Digest::of(n),
            diff_id: Digest::of(n),
            size: 1,
            media_type: MediaType::ImageLayerGzip,
        };
        let k = |n: &[u8]| CacheKey::parse(&Digest::of(n).to_string()).unwrap();
        let used = vec![
            Used { key: k(b"1"), layer: Some(l(b"a")), stage: 0 },
            Used { key: k(b"2"), layer: None, stage: 0 },
            Used { key: k(b"3"), layer: Some(l(b"a")), stage: 1 },
            Used { key: k(b"4"), layer: Some(l(b"b")), stage: 2 },
        ];
        let mut layers = Vec::new();
        let c = records(&used, &HashSet::from([0, 1]), &mut layers, Codec::default());
        assert_eq!(layers.len(), 1, "a layer two records share is carried once");
        assert_eq!(c.records.iter().map(|r| r.layer).collect::<Vec<_>>(), vec![Some(0), None, Some(0)]);
        // The default level is not written (older caches read the same); another level is.
        assert!(!serde_json::to_string(&c).unwrap().contains("level"));
        let nine = Codec::new(crate::layer::Compression::Gzip, Some(9)).unwrap();
        let c = records(&used, &HashSet::from([0]), &mut layers, nine);
        assert!(c.records.iter().all(|r| r.level == Some(9) && r.compression == "gzip"));
    }
}
