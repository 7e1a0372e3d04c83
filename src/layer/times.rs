//! The real modification times of a layer's files whose times the clamp moved: kept beside the
//! layer, for the snapshots later steps run on.
//!
//! The clamp makes layers reproducible, but a step's view of its parent must be what BuildKit's
//! is: its snapshots keep the times COPY gave (the context's), and `rewrite-timestamp` changes
//! only the exported layers. Tools that compare times (make, cargo, Maven) with what a cache
//! mount kept from an earlier build would otherwise see every copied source as older than its
//! output, and not rebuild after an edit. So COPY keeps the real times of what it clamps here,
//! under `<store>/cache/times/<diff id>.json`, and extracting the layer into a snapshot gives
//! those files their real times. Like the other files under `cache/`, it only speeds builds up
//! or keeps their fidelity: without it (pruned, or a layer from a remote cache) a snapshot has
//! the layer's own times.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::store::Store;

/// Layer path (as the layer names it, no leading `/`) → real mtime (seconds, nanoseconds).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Times(HashMap<String, (i64, u32)>);

impl Times {
    /// No times.
    pub fn new() -> Times {
        Times::default()
    }

    /// Records `path`'s real time.
    pub fn insert(&mut self, path: &str, mtime: (i64, u32)) {
        self.0.insert(normal(path).to_string(), mtime);
    }

    /// The real time of the entry named `path` in the layer, if it has one.
    pub fn get(&self, path: &str) -> Option<(i64, u32)> {
        self.0.get(normal(path)).copied()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where the times of the layer `diff_id` are kept; `None` for a name that is not a digest.
    fn file(store: &Store, diff_id: &str) -> Option<PathBuf> {
        let hex = diff_id.strip_prefix("sha256:")?;
        let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| store.root().join(DIR).join(format!("{hex}.json")))
    }

    /// The kept times of layer `diff_id`, if any (a missing or unreadable file is none).
    pub fn load(store: &Store, diff_id: &str) -> Option<Times> {
        let bytes = std::fs::read(Times::file(store, diff_id)?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps these as the times of layer `diff_id` (temp file + rename; see
    /// [`Store::write_cache_file`]).
    pub fn save(&self, store: &Store, diff_id: &str) -> std::io::Result<()> {
        let Some(path) = Times::file(store, diff_id) else {
            return Err(std::io::Error::other(format!("not a layer digest: {diff_id}")));
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        store.write_cache_file(&path, &bytes).map_err(std::io::Error::other)
    }
}

/// Where under the store the times are kept.
pub const DIR: &str = "cache/times";

/// A layer path as entries name it: no leading `./` or `/`, no trailing `/`.
fn normal(path: &str) -> &str {
    let p = path.strip_prefix("./").unwrap_or(path);
    p.trim_start_matches('/').trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_kept_by_layer_and_named_as_entries_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(Times::load(&store, &id), None);
        let mut t = Times::new();
        t.insert("/app/src/main.rs", (1_700_000_000, 5));
        t.save(&store, &id).unwrap();
        let back = Times::load(&store, &id).unwrap();
        assert_eq!(back, t);
        for name in ["app/src/main.rs", "./app/src/main.rs", "/app/src/main.rs"] {
            assert_eq!(back.get(name), Some((1_700_000_000, 5)), "{name}");
        }
        assert_eq!(back.get("app/src"), None);
        // Only a digest names a file: nothing outside the directory.
        assert!(t.save(&store, "sha256:../../etc/passwd").is_err());
        assert_eq!(Times::load(&store, "../x"), None);
    }
}
