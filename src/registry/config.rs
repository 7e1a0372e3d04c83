//! How each registry is reached: mirrors to try first, plain HTTP or HTTPS, certificates not
//! checked, extra CA certificates. Read from hako's config file in the shape of BuildKit's
//! `buildkitd.toml` (`[registry."docker.io"] mirrors = ["mirror.example"]`, `http`, `insecure`,
//! `ca`), then the command line's `--registry-mirror` (Docker Hub's, as dockerd's flag) and
//! `--insecure-registry` on top.
//!
//! The file is `$HAKO_CONFIG` (which must exist), else `$XDG_CONFIG_HOME/hako/config.toml`, else
//! `~/.config/hako/config.toml` (both optional). Sections other than `[registry."…"]` are
//! ignored, so a `buildkitd.toml` can be used as it is; a key hako does not know inside a registry
//! section is an error, never silently dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Failures reading the config file or a flag, each naming the file or flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a key hako does not know (the message has the line).
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value that does not make sense (a mirror with a path, an empty name).
    #[error("{origin}: {message}")]
    Invalid {
        /// The file and section, or the flag.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

type Result<T> = std::result::Result<T, ConfigError>;

/// One `[registry."HOST"]` section.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    /// Hosts to try, in order, before the registry itself (pulls only).
    #[serde(default)]
    mirrors: Vec<String>,
    /// `true`: plain HTTP; `false`: HTTPS even for a loopback registry.
    http: Option<bool>,
    /// HTTPS without checking the certificate.
    #[serde(default)]
    insecure: bool,
    /// PEM files of CA certificates to trust for this registry, besides the system's.
    #[serde(default)]
    ca: Vec<PathBuf>,
}

/// The file: only its `registry` table is read.
#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    registry: BTreeMap<String, Section>,
}

/// A mirror: where to send a pull before the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port]`.
    pub host: String,
    /// Given as `http://…`: reached over plain HTTP.
    pub plain_http: bool,
}

/// How to reach one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    /// HTTPS with any certificate accepted (`insecure = true`).
    pub skip_verify: bool,
    /// Extra CA certificate files.
    pub ca: Vec<PathBuf>,
}

/// Every registry's settings.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// By registry, Docker Hub's aliases under `docker.io`.
    hosts: BTreeMap<String, Host>,
}

#[derive(Debug, Clone, Default)]
struct Host {
    mirrors: Vec<Mirror>,
    http: Option<bool>,
    insecure: bool,
    ca: Vec<PathBuf>,
}

/// The config file hako reads: `$HAKO_CONFIG`, else `$XDG_CONFIG_HOME/hako/config.toml`, else
/// `~/.config/hako/config.toml`; and whether it must exist (only when named by `HAKO_CONFIG`).
pub fn default_path() -> Option<(PathBuf, bool)> {
    let set = |v: &str| std::env::var_os(v).filter(|p| !p.is_empty()).map(PathBuf::from);
    if let Some(p) = set("HAKO_CONFIG") {
        return Some((p, true));
    }
    let dir = set("XDG_CONFIG_HOME").or_else(|| set("HOME").map(|h| h.join(".config")))?;
    Some((dir.join("hako/config.toml"), false))
}

/// Docker Hub's names all mean `docker.io`; other registries are keyed as written.
pub fn normalize(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// Whether `host[:port]` is a loopback address (reached over plain HTTP unless configured).
pub fn loopback(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .map_or(host, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    matches!(name, "localhost" | "127.0.0.1" | "[::1]" | "::1") || name.starts_with("127.")
}

impl Config {
    /// Reads the config file at [`default_path`] (none there is an empty config, unless
    /// `HAKO_CONFIG` named it).
    pub fn load() -> Result<Config> {
        match default_path() {
            Some((path, required)) => Config::load_from(&path, required),
            None => Ok(Config::default()),
        }
    }

    /// Reads `path`; a missing file is an empty config unless `required`.
    pub fn load_from(path: &Path, required: bool) -> Result<Config> {
        let text = match fs_err::read_to_string(path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(ConfigError::Read { path: path.to_path_buf(), source: e }),
        };
        let config = Config::parse(&text, path)?;
        // A CA file that is not there is a mistake in the file, said now rather than at the
        // first pull from that registry.
        for (name, host) in &config.hosts {
            for ca in &host.ca {
                fs_err::metadata(ca).map_err(|e| ConfigError::Invalid {
                    origin: format!("{} [registry.{name:?}]", path.display()),
                    message: format!("ca: {e}"),
                })?;
            }
        }
        Ok(config)
    }

    /// Parses the text of the file at `path` (relative `ca` paths are taken from its directory).
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let file: File = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::default();
        for (name, section) in file.registry {
            let origin = format!("{} [registry.{name:?}]", path.display());
            let key = host_name(&name)
                .map_err(|message| ConfigError::Invalid { origin: origin.clone(), message })?;
            let mirrors = section
                .mirrors
                .iter()
                .map(|m| parse_mirror(m))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|message| ConfigError::Invalid { origin: origin.clone(), message })?;
            let host = config.hosts.entry(normalize(&key)).or_default();
            host.mirrors.extend(mirrors);
            host.http = section.http.or(host.http);
            host.insecure |= section.insecure;
            host.ca.extend(section.ca.iter().map(|p| base.join(p)));
        }
        Ok(config)
    }

    /// Adds `--registry-mirror` hosts (for Docker Hub, tried before the file's mirrors) and
    /// `--insecure-registry` hosts (plain HTTP).
    pub fn with_flags(mut self, mirrors: &[String], insecure: &[String]) -> Result<Config> {
        let mut flagged = Vec::new();
        for m in mirrors {
            flagged.push(parse_mirror(m).map_err(|message| ConfigError::Invalid {
                origin: format!("--registry-mirror {m}"),
                message,
            })?);
        }
        let hub = self.hosts.entry("docker.io".to_string()).or_default();
        flagged.append(&mut hub.mirrors);
        hub.mirrors = flagged;
        for h in insecure {
            let key = host_name(h).map_err(|message| ConfigError::Invalid {
                origin: format!("--insecure-registry {h}"),
                message,
            })?;
            self.hosts.entry(normalize(&key)).or_default().http = Some(true);
        }
        Ok(self)
    }

    /// The mirrors of `registry`, in the order to try them.
    pub fn mirrors(&self, registry: &str) -> &[Mirror] {
        self.hosts.get(&normalize(registry)).map_or(&[], |h| &h.mirrors)
    }

    /// How to reach `host`: plain HTTP for loopback hosts and those configured so (`http = true`,
    /// `--insecure-registry`), unless `http = false`; HTTPS otherwise.
    pub fn transport(&self, host: &str) -> Transport {
        let h = self.hosts.get(&normalize(host));
        Transport {
            plain_http: h.and_then(|h| h.http).unwrap_or_else(|| loopback(host)),
            skip_verify: h.is_some_and(|h| h.insecure),
            ca: h.map(|h| h.ca.clone()).unwrap_or_default(),
        }
    }

    /// How to reach `mirror`: as its own section says, and plain HTTP when given as `http://…`.
    pub fn mirror_transport(&self, mirror: &Mirror) -> Transport {
        let mut t = self.transport(&mirror.host);
        t.plain_http |= mirror.plain_http;
        t
    }
}

/// A registry name as the config and flags give it: `host[:port]`, a `https://` or `http://`
/// prefix and a trailing `/` dropped (as docker accepts them).
fn host_name(s: &str) -> std::result::Result<String, String> {
    let bare = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let bare = bare.trim_end_matches('/');
    if bare.is_empty() || bare.contains(char::is_whitespace) {
        return Err(format!("{s:?} is not a registry host"));
    }
    if bare.contains('/') {
        return Err(format!("{s:?}: give a host[:port], without a path"));
    }
    Ok(bare.to_string())
}

/// A mirror as dockerd's `--registry-mirror` and buildkitd.toml take it: `host[:port]`,
/// optionally `https://` or `http://` (plain HTTP); a path is not supported yet.
fn parse_mirror(s: &str) -> std::result::Result<Mirror, String> {
    let host = host_name(s).map_err(|e| {
        if e.contains("without a path") {
            format!("mirror {s:?}: mirrors with a path are not supported yet (give host[:port])")
        } else {
            format!("mirror {e}")
        }
    })?;
    Ok(Mirror { host, plain_http: s.starts_with("http://") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/hako/config.toml"))
    }

    #[test]
    fn buildkitd_shape_is_read_and_other_sections_are_ignored() -> Result<()> {
        let c = parse(
            r#"
debug = true
[worker.oci]
  enabled = true
[registry."docker.io"]
  mirrors = ["mirror.example", "http://10.0.0.5:5000/"]
[registry."reg.example:5000"]
  http = true
[registry."127.0.0.1:5000"]
  http = false
  ca = ["certs/ca.pem", "/abs/ca.pem"]
[registry."self-signed.example"]
  insecure = true
"#,
        )?;
        let m = |host: &str, plain_http| Mirror { host: host.into(), plain_http };
        assert_eq!(c.mirrors("docker.io"), [m("mirror.example", false), m("10.0.0.5:5000", true)]);
        assert_eq!(c.mirrors("index.docker.io"), c.mirrors("docker.io"), "Docker Hub's aliases");
        assert!(c.mirrors("quay.io").is_empty());
        assert!(c.transport("reg.example:5000").plain_http);
        let local = c.transport("127.0.0.1:5000");
        assert!(!local.plain_http, "http = false turns HTTPS on for a loopback registry");
        assert_eq!(local.ca, [PathBuf::from("/etc/hako/certs/ca.pem"), PathBuf::from("/abs/ca.pem")]);
        let t = c.transport("self-signed.example");
        assert!(t.skip_verify && !t.plain_http);
        assert!(c.mirror_transport(&c.mirrors("docker.io")[1]).plain_http);
        assert_eq!(c.mirror_transport(&c.mirrors("docker.io")[0]), Transport::default());
        Ok(())
    }

    #[test]
    fn loopback_is_plain_http_unless_configured() {
        let c = Config::default();
        for h in ["localhost:5000", "127.0.0.1:35123", "127.0.0.1", "localhost", "[::1]:5000"] {
            assert!(c.transport(h).plain_http, "{h}");
        }
        for h in ["registry.example.com", "docker.io", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!c.transport(h).plain_http, "{h}");
        }
    }

    #[test]
    fn flags_add_hub_mirrors_first_and_insecure_hosts() -> Result<()> {
        let c = parse("[registry.\"docker.io\"]\nmirrors = [\"file.example\"]\n")?
            .with_flags(&["https://flag.example".into()], &["reg.example:5000".into()])?;
        let hosts: Vec<&str> = c.mirrors("docker.io").iter().map(|m| m.host.as_str()).collect();
        assert_eq!(hosts, ["flag.example", "file.example"]);
        assert!(c.transport("reg.example:5000").plain_http);
        Ok(())
    }

    #[test]
    fn mistakes_are_errors_that_say_where() {
        let err = |text: &str| parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        let e = err("[registry.\"docker.io\"]\nmirror = [\"x\"]\n");
        assert!(e.contains("/etc/hako/config.toml") && e.contains("mirror"), "{e}");
        let e = err("[registry.\"docker.io\"]\nmirrors = [\"mirror.example/prefix\"]\n");
        assert!(e.contains("not supported yet") && e.contains("[registry.\"docker.io\"]"), "{e}");
        let e = err("[registry.\"docker.io\"\n");
        assert!(e.contains("line 1") || e.contains("1:"), "{e}");
        let e = Config::default().with_flags(&["".into()], &[]).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.starts_with("--registry-mirror")));
    }

    #[test]
    fn a_ca_file_that_is_not_there_is_named_when_the_file_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        fs_err::write(&path, "[registry.\"r.example\"]\nca = [\"ca.pem\"]\n").expect("write");
        let e = Config::load_from(&path, true).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("[registry.\"r.example\"]") && e.contains("ca.pem"), "{e}");
        fs_err::write(dir.path().join("ca.pem"), "").expect("write");
        assert!(Config::load_from(&path, true).is_ok());
    }

    #[test]
    fn a_missing_file_is_empty_unless_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("none.toml");
        assert!(Config::load_from(&path, false).is_ok_and(|c| c.hosts.is_empty()));
        let e = Config::load_from(&path, true).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("none.toml"), "{e}");
    }
}
