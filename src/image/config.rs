//! The image configuration JSON (OCI image-spec config, plus the Docker fields BuildKit writes:
//! `Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`). oci-spec's `ImageConfiguration` cannot carry
//! those extensions, so the config is our own serde type; unknown fields of a base image's config
//! are kept (`extra`) so a rebuilt image loses nothing it inherited.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole image config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author (MAINTAINER).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// CPU variant (`v7`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Execution defaults.
    #[serde(default)]
    pub config: RunConfig,
    /// Layer diff IDs.
    pub rootfs: RootFs,
    /// One entry per instruction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields we do not model, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `rootfs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layers, base first.
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs { kind: "layers".into(), diff_ids: Vec::new() }
    }
}

/// An empty JSON object (`ExposedPorts`/`Volumes` values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `config`: what a container of the image runs by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// USER.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// EXPOSE (`80/tcp` → `{}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// ENV as `KEY=value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// VOLUME.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// WORKDIR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// LABEL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// STOPSIGNAL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Windows-only quoting hint: kept when inherited, set by every CMD (as BuildKit does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// HEALTHCHECK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// ONBUILD triggers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// SHELL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Fields we do not model, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Docker's healthcheck (durations in nanoseconds, as Go marshals `time.Duration`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    /// Interval.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// Timeout.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Start period.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Start interval.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// Retries.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Comment (`buildkit.dockerfile.v0` in BuildKit's images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The instruction made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Parses a config blob.
    pub fn from_json(bytes: &[u8]) -> Result<ImageConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The canonical bytes hako writes (field order fixed by the struct, maps sorted), so the same
    /// build always gives the same config digest.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail (no non-string map keys, no custom code).
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// ENV as (name, value) pairs.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .flatten()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect()
    }

    /// Sets ENV from pairs (keeps order).
    pub fn set_env_pairs(&mut self, pairs: &[(String, String)]) {
        self.config.env = Some(pairs.iter().map(|(k, v)| format!("{k}={v}")).collect());
    }
}

/// RFC 3339 UTC for a Unix time (what `created` fields hold).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_unknown_fields() {
        let json = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"Custom":1},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created_by":"x","empty_layer":true}],"moby.buildkit.buildinfo.v1":"e30="}"#;
        let c = ImageConfig::from_json(json).expect("parse");
        assert_eq!(c.env_pairs(), [("PATH".to_string(), "/bin".to_string())]);
        assert!(c.extra.contains_key("moby.buildkit.buildinfo.v1"));
        assert!(c.config.extra.contains_key("Custom"));
        let again = ImageConfig::from_json(&c.to_json()).expect("reparse");
        assert_eq!(again, c);
        assert!(c.history[0].empty_layer);
    }

    #[test]
    fn canonical_json_shape() {
        let mut c = ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..Default::default() };
        c.created = Some(rfc3339(0));
        c.config.healthcheck = Some(Healthcheck { test: vec!["NONE".into()], ..Default::default() });
        assert_eq!(
            String::from_utf8(c.to_json()).expect("utf-8"),
            r#"{"created":"1970-01-01T00:00:00Z","architecture":"amd64","os":"linux","config":{"Healthcheck":{"Test":["NONE"]}},"rootfs":{"type":"layers","diff_ids":[]}}"#
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
