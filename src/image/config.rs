//! The image configuration JSON (OCI image-spec config, plus the Docker fields BuildKit writes:
//! `Healthcheck`, `OnBuild`, `Shell`, `ArgsEscaped`). oci-spec's `ImageConfiguration` cannot carry
//! those extensions, so the config is our own serde type. Unknown fields are kept (`extra`) so a
//! config read and written again loses nothing; a stage built on an image drops them, as BuildKit
//! does ([`ImageConfig::as_base`]). Written as Go's `encoding/json` writes Docker's image structs:
//! their field order, and empty values left out (`omitempty`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A whole image config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author (MAINTAINER).
    #[serde(skip_serializing_if = "omit")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// Operating system version (Windows images).
    #[serde(rename = "os.version", skip_serializing_if = "omit")]
    pub os_version: Option<String>,
    /// Operating system features (Windows images).
    #[serde(rename = "os.features", skip_serializing_if = "omit")]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (`v7`).
    #[serde(skip_serializing_if = "omit")]
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
    #[serde(skip_serializing_if = "omit")]
    pub user: Option<String>,
    /// EXPOSE (`80/tcp` → `{}`).
    #[serde(skip_serializing_if = "omit")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// ENV as `KEY=value`.
    #[serde(skip_serializing_if = "omit")]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT.
    #[serde(skip_serializing_if = "omit")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(skip_serializing_if = "omit")]
    pub cmd: Option<Vec<String>>,
    /// VOLUME.
    #[serde(skip_serializing_if = "omit")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// WORKDIR.
    #[serde(skip_serializing_if = "omit")]
    pub working_dir: Option<String>,
    /// LABEL.
    #[serde(skip_serializing_if = "omit")]
    pub labels: Option<BTreeMap<String, String>>,
    /// STOPSIGNAL.
    #[serde(skip_serializing_if = "omit")]
    pub stop_signal: Option<String>,
    /// Windows-only quoting hint: kept when inherited, set by every CMD (as BuildKit does).
    #[serde(skip_serializing_if = "omit")]
    pub args_escaped: Option<bool>,
    /// HEALTHCHECK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// ONBUILD triggers.
    #[serde(skip_serializing_if = "omit")]
    pub on_build: Option<Vec<String>>,
    /// SHELL.
    #[serde(skip_serializing_if = "omit")]
    pub shell: Option<Vec<String>>,
    /// Fields we do not model, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Docker's healthcheck (durations in nanoseconds, as Go marshals `time.Duration`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", "…"]`; empty (inherit) in some bases' configs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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

/// Go's `omitempty` for an optional field: absent, or an empty string, list or map, or false —
/// all left out by BuildKit's `json.Marshal`, so a base's `"User": ""` or a `CMD []` gives the
/// config bytes (and digest) BuildKit's does.
fn omit<T: GoEmpty>(v: &Option<T>) -> bool {
    v.as_ref().is_none_or(GoEmpty::is_go_empty)
}

/// Values `omitempty` leaves out.
trait GoEmpty {
    fn is_go_empty(&self) -> bool;
}

impl GoEmpty for String {
    fn is_go_empty(&self) -> bool {
        self.is_empty()
    }
}

impl GoEmpty for bool {
    fn is_go_empty(&self) -> bool {
        !*self
    }
}

impl<T> GoEmpty for Vec<T> {
    fn is_go_empty(&self) -> bool {
        self.is_empty()
    }
}

impl<K, V> GoEmpty for BTreeMap<K, V> {
    fn is_go_empty(&self) -> bool {
        self.is_empty()
    }
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction.
    #[serde(skip_serializing_if = "omit")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(skip_serializing_if = "omit")]
    pub author: Option<String>,
    /// Comment (`buildkit.dockerfile.v0` in BuildKit's images).
    #[serde(skip_serializing_if = "omit")]
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

    /// The canonical bytes hako writes, so the same build always gives the same config digest.
    ///
    /// The bytes are BuildKit's for the same config, so an image built the same way has the same
    /// config digest (Docker's image ID) from either: Go's `encoding/json` escapes `<`, `>`, `&`,
    /// U+2028 and U+2029 in strings, writes structs in field order, and BuildKit's exporter writes
    /// the config once more through a map of raw values (adding `rootfs` and `history`), which
    /// sorts the top-level keys only. The same here.
    pub fn to_json(&self) -> Vec<u8> {
        let mut fields = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut fields, GoEscapes);
        // Serialising these plain structs cannot fail (no non-string map keys, no custom code),
        // nor can reading back what was just written.
        if self.serialize(&mut ser).is_err() {
            return Vec::new();
        }
        let Ok(top) = serde_json::from_slice::<BTreeMap<String, Box<RawValue>>>(&fields) else {
            return Vec::new();
        };
        // The raw values are written as they are; the keys get Go's escapes again.
        let mut out = Vec::new();
        match top.serialize(&mut serde_json::Serializer::with_formatter(&mut out, GoEscapes)) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }

    /// This config as the start of a stage built on it, as BuildKit's frontend reads a base: into
    /// Docker's image struct, which keeps no fields it does not know. A classic builder's
    /// `container_config` and `docker_version`, a BuildKit build's `moby.buildkit.buildinfo.v1`
    /// and inline cache, a container's `Hostname` or `Image` in `config`: they describe how the
    /// base was made, not the new image, and BuildKit's image has none of them.
    pub fn as_base(&mut self) {
        self.extra.clear();
        self.config.extra.clear();
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

/// Go's `encoding/json` string escapes beyond JSON's own (its HTML-safe default).
struct GoEscapes;

impl serde_json::ser::Formatter for GoEscapes {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
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
            r#"{"architecture":"amd64","config":{"Healthcheck":{"Test":["NONE"]}},"created":"1970-01-01T00:00:00Z","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
        );
    }

    #[test]
    fn empty_values_are_left_out_as_go_leaves_them() {
        let json = br#"{"architecture":"amd64","os":"linux","author":"","config":{"User":"","Env":[],"Cmd":[],"Entrypoint":null,"WorkingDir":"","Labels":{},"ArgsEscaped":false,"OnBuild":null,"Healthcheck":{"Test":[],"Retries":0}},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"","comment":"","author":""}]}"#;
        let c = ImageConfig::from_json(json).expect("parse");
        assert_eq!(
            String::from_utf8(c.to_json()).expect("utf-8"),
            r#"{"architecture":"amd64","config":{"Healthcheck":{}},"history":[{}],"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
        );
    }

    #[test]
    fn a_base_passes_on_only_what_dockers_struct_holds() {
        let json = br#"{"architecture":"amd64","os":"windows","os.version":"10.0","container":"abc","docker_version":"20.10","moby.buildkit.buildinfo.v1":"e30=","config":{"Env":["A=1"],"Hostname":"abc","Image":"sha256:00"},"container_config":{"Cmd":["x"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let mut c = ImageConfig::from_json(json).expect("parse");
        c.as_base();
        assert_eq!(
            String::from_utf8(c.to_json()).expect("utf-8"),
            r#"{"architecture":"amd64","config":{"Env":["A=1"]},"os":"windows","os.version":"10.0","rootfs":{"type":"layers","diff_ids":[]}}"#
        );
    }

    /// What dockerd 26.1's BuildKit wrote for `LABEL x="<tag> & more"` and a bare `CMD` on a base
    /// labelled with a mail address, byte for byte (`docker save`, SOURCE_DATE_EPOCH=0).
    #[test]
    fn written_as_buildkit_writes_it() {
        let buildkit = r#"{"architecture":"amd64","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh","-c",""],"Labels":{"maint":"Jo \u003cjo@example.com\u003e \u0026 co \u2028 é","x":"\u003ctag\u003e \u0026 more"},"ArgsEscaped":true},"created":"1970-01-01T00:00:00Z","history":[{"created":"1970-01-01T00:00:00Z","created_by":"LABEL x=\u003ctag\u003e \u0026 more","comment":"buildkit.dockerfile.v0","empty_layer":true},{"created":"1970-01-01T00:00:00Z","created_by":"CMD [\"/bin/sh\" \"-c\" \"\"]","comment":"buildkit.dockerfile.v0","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:f3325006190d3929353d5f2feefaf7e3e5b181ff62a3fc502b5974557a220069"]}}"#;
        let c = ImageConfig::from_json(buildkit.as_bytes()).expect("parse");
        assert_eq!(String::from_utf8(c.to_json()).expect("utf-8"), buildkit);
    }

    #[test]
    fn unknown_top_level_keys_are_escaped_and_sorted_too() {
        let json = br#"{"z":1,"architecture":"amd64","os":"linux","a<b>":"c&d","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = ImageConfig::from_json(json).expect("parse");
        assert_eq!(
            String::from_utf8(c.to_json()).expect("utf-8"),
            r#"{"a\u003cb\u003e":"c\u0026d","architecture":"amd64","config":{},"os":"linux","rootfs":{"type":"layers","diff_ids":[]},"z":1}"#
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
