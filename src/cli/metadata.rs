//! `--metadata-file`: the build's result with the keys buildx writes, so scripts that read
//! buildx's file (`jq -r '."containerimage.digest"'`, build-push-action's metadata output) read
//! hako's.

use std::collections::BTreeMap;
use std::io::Read;

/// What `--metadata-file` holds, with buildx's keys: the manifest's digest and descriptor
/// (media type, digest, size, and its annotations when it has any; no platform, as BuildKit's
/// exporter gives it), the config digest, the build's reference and, only when `-t` named the
/// image, `image.name` (the names as given, comma-joined, as buildx passes them to the exporter).
pub fn metadata(
    manifest: &oci_spec::image::Descriptor,
    config_digest: &str,
    tags: &[String],
    build_ref: &str,
) -> serde_json::Value {
    let mut descriptor = serde_json::json!({
        "mediaType": manifest.media_type().to_string(),
        "digest": manifest.digest().to_string(),
        "size": manifest.size(),
    });
    if let Some(annotations) = manifest.annotations().as_ref().filter(|a| !a.is_empty()) {
        let sorted: BTreeMap<_, _> = annotations.iter().collect();
        descriptor["annotations"] = serde_json::json!(sorted);
    }
    let mut meta = serde_json::json!({
        "buildx.build.ref": build_ref,
        "containerimage.config.digest": config_digest,
        "containerimage.descriptor": descriptor,
        "containerimage.digest": manifest.digest().to_string(),
    });
    if !tags.is_empty() {
        meta["image.name"] = serde_json::json!(tags.join(","));
    }
    meta
}

/// This build's reference in buildx's `builder/node/id` shape: `hako/local/` and 25 random
/// base-36 characters (buildx's ids are as long), from the kernel's random source; the clock and
/// the process id when that cannot be read.
pub fn build_ref() -> String {
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    let mut n = if random.is_ok() {
        u128::from_le_bytes(bytes)
    } else {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        nanos ^ (u128::from(std::process::id()) << 96)
    };
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = [b'0'; 25];
    for c in id.iter_mut().rev() {
        *c = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    format!("hako/local/{}", String::from_utf8_lossy(&id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(annotations: &[(&str, &str)]) -> oci_spec::image::Descriptor {
        let digest = format!("sha256:{}", "a".repeat(64));
        let mut d = oci_spec::image::Descriptor::new(
            oci_spec::image::MediaType::ImageManifest,
            482,
            digest.parse::<oci_spec::image::Digest>().expect("digest"),
        );
        d.set_platform(Some(oci_spec::image::Platform::default()));
        if !annotations.is_empty() {
            d.set_annotations(Some(
                annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ));
        }
        d
    }

    #[test]
    fn metadata_has_buildx_keys_and_image_name_only_with_tags() {
        let config = format!("sha256:{}", "b".repeat(64));
        let meta = metadata(&descriptor(&[]), &config, &[], "hako/local/x");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            meta,
            serde_json::json!({
                "buildx.build.ref": "hako/local/x",
                "containerimage.config.digest": config,
                "containerimage.descriptor": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": 482,
                },
                "containerimage.digest": digest,
            })
        );
        let tags = ["app:1".to_string(), "reg.example/app:2".to_string()];
        let meta = metadata(&descriptor(&[("b", "2"), ("a", "1")]), &config, &tags, "hako/local/x");
        assert_eq!(meta["image.name"], "app:1,reg.example/app:2");
        assert_eq!(meta["containerimage.descriptor"]["annotations"], serde_json::json!({"a": "1", "b": "2"}));
    }

    #[test]
    fn build_refs_have_buildx_shape_and_differ() {
        let (a, b) = (build_ref(), build_ref());
        let id = a.strip_prefix("hako/local/").expect("prefix");
        assert_eq!(id.len(), 25, "{a}");
        assert!(id.bytes().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()), "{a}");
        assert_ne!(a, b);
    }
}
