//! Pruning the build cache (`hako prune`): step records — all of them, those not used for a while
//! (`until`), or the least recently used until what the rest keeps fits a size (`keep_storage`) —
//! then every blob nothing references any more. Images kept in the store (named in its
//! `index.json`) keep their blobs. The caller holds the store's build lock exclusively, so no
//! build is writing a blob it has not recorded yet.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::du::files;
use super::records::{Record, Records};
use crate::digest::Digest;
use crate::store::{Store, StoreError};

/// What to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Remove only records not used for this long.
    pub until: Option<Duration>,
    /// Keep the most recently used records whose blobs fit in this many bytes.
    pub keep_storage: Option<u64>,
}

/// What was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Step records.
    pub records: u64,
    /// Kept filesystem indexes, compression memos, COPY layers' real times and the context stat
    /// cache.
    pub indexes: u64,
    /// Blobs.
    pub blobs: u64,
    /// Bytes of the blobs and files removed.
    pub bytes: u64,
}

fn age(path: &Path, now: SystemTime) -> Duration {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default()
}

/// Prunes `store` by `policy`.
pub fn prune(store: &Store, policy: &Policy) -> Result<Pruned, StoreError> {
    let now = SystemTime::now();
    let filtered = *policy != Policy::default();
    let mut out = Pruned::default();
    // Records, most recently used first.
    let mut records: Vec<(Duration, std::path::PathBuf, Option<Record>)> =
        Records::list(store)?.into_iter().map(|(path, r)| (age(&path, now), path, r.ok())).collect();
    records.sort_by_key(|r| r.0);
    let mut kept_bytes = 0u64;
    let mut kept_blobs: HashSet<String> = HashSet::new();
    for (age, path, record) in &records {
        let layer = record.as_ref().and_then(|r| r.layer.as_ref());
        let old_enough = policy.until.is_none_or(|u| *age >= u);
        let over = policy.keep_storage.is_some_and(|k| {
            let size = layer.filter(|l| !kept_blobs.contains(&l.digest)).map_or(0, |l| l.size);
            kept_bytes + size > k
        });
        let remove = record.is_none() || !filtered || (old_enough && (policy.keep_storage.is_none() || over));
        if remove {
            fs_err::remove_file(path)?;
            out.records += 1;
        } else if let Some(l) = layer
            && kept_blobs.insert(l.digest.clone())
        {
            kept_bytes += l.size;
        }
    }
    // Kept indexes, compression memos, lineage hints and the stat cache are made again on demand,
    // and without a COPY layer's real times its snapshot has the layer's own; a size policy keeps
    // them (they are small), an age policy removes the old ones.
    for dir in ["cache/index", "cache/compressed", super::records::LINEAGE, crate::layer::times::DIR] {
        for (path, size) in files(&store.root().join(dir))? {
            if !filtered || policy.until.is_some_and(|u| age(&path, now) >= u) {
                fs_err::remove_file(&path)?;
                out.bytes += size;
                out.indexes += 1;
            }
        }
    }
    if !filtered {
        let sums = store.root().join("cache/context-sums.json");
        if sums.exists() {
            fs_err::remove_file(&sums)?;
            out.indexes += 1;
        }
    }
    let mut referenced = image_blobs(store)?;
    referenced.extend(kept_blobs);
    for (path, size) in files(&store.root().join("blobs/sha256"))? {
        let name = format!("sha256:{}", path.file_name().unwrap_or_default().to_string_lossy());
        if !referenced.contains(&name) {
            fs_err::remove_file(&path)?;
            out.bytes += size;
            out.blobs += 1;
        }
    }
    Ok(out)
}

/// Every blob the images named in the store's `index.json` need: manifests (through nested
/// indexes), configs and layers.
fn image_blobs(store: &Store) -> Result<HashSet<String>, StoreError> {
    let mut out = HashSet::new();
    let index = store.index()?;
    let mut todo: Vec<String> = index.manifests().iter().map(|d| d.digest().to_string()).collect();
    while let Some(d) = todo.pop() {
        if !out.insert(d.clone()) {
            continue;
        }
        let Ok(digest) = Digest::parse(&d) else { continue };
        let Ok(bytes) = store.read_blob(&digest) else { continue };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
        let digests = |key: &str| -> Vec<String> {
            match value.get(key) {
                Some(serde_json::Value::Array(a)) => {
                    a.iter().filter_map(|x| x.get("digest")?.as_str().map(str::to_string)).collect()
                }
                Some(obj) => {
                    obj.get("digest").and_then(|x| x.as_str()).map(str::to_string).into_iter().collect()
                }
                None => Vec::new(),
            }
        };
        todo.extend(digests("manifests"));
        out.extend(digests("config"));
        out.extend(digests("layers"));
    }
    Ok(out)
}

/// Parses a size as docker does (`--keep-storage 10GB`): a number with an optional unit, `B`,
/// `KB`/`K`/`KiB`, `MB`, `GB`, `TB` (powers of 1024, as Docker's `RAMInBytes`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let scale: f64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("invalid size {s:?}: unknown unit {unit:?}")),
    };
    Ok((value * scale) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_docker_reads_them() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1kb").unwrap(), 1024);
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("1.5MiB").unwrap(), 3 << 19);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1XB").is_err());
    }
}
