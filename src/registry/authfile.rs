//! Writing and removing logins where `docker login` and `podman login` keep them, so that what
//! `hako login` writes is what hako (`auth.rs`), docker and podman read: `REGISTRY_AUTH_FILE` when
//! set (podman's rule), else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
//!
//! An entry is `auths.<key>.auth` = base64 of `user:password`, the key being the registry's
//! `host[:port]` (Docker Hub's is `https://index.docker.io/v1/`, as docker writes it). When the
//! file names a credential helper for the registry (`credHelpers`) or for all (`credsStore`), the
//! login goes to `docker-credential-<name> store` instead, as docker does. Every other key of
//! the file is kept; the file is replaced atomically (temporary file, then rename) with mode 0600.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

/// Docker Hub's key in `auths`, as `docker login` writes it.
pub const HUB_KEY: &str = "https://index.docker.io/v1/";

/// Failures reading or writing the auth file or talking to a credential helper.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// Neither `REGISTRY_AUTH_FILE`, `DOCKER_CONFIG` nor `HOME` is set.
    #[error("no place for credentials: set HOME, DOCKER_CONFIG or REGISTRY_AUTH_FILE")]
    NoLocation,
    /// The file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not the JSON object docker writes.
    #[error("{path} is not a docker config file (a JSON object): {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} {action} failed: {reason}")]
    Helper {
        /// Its name (after `docker-credential-`).
        helper: String,
        /// `store` or `erase`.
        action: &'static str,
        /// What it said, or why it could not run.
        reason: String,
    },
}

type Result<T> = std::result::Result<T, AuthFileError>;

/// Where a login was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// In the file, in plain base64.
    File(PathBuf),
    /// By `docker-credential-<name>`.
    Helper(String),
}

/// The file `hako login` writes: `REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn location() -> Result<PathBuf> {
    let set = |v: &str| std::env::var_os(v).filter(|p| !p.is_empty()).map(PathBuf::from);
    if let Some(file) = set("REGISTRY_AUTH_FILE") {
        return Ok(file);
    }
    let dir = set("DOCKER_CONFIG").or_else(|| set("HOME").map(|h| h.join(".docker")));
    dir.map(|d| d.join("config.json")).ok_or(AuthFileError::NoLocation)
}

/// The `auths` key for a registry as given on the command line: Docker Hub's names are its v1
/// URL; for the others a `https://`/`http://` prefix and anything after the host are dropped, as
/// `docker login` does.
pub fn key_for(server: &str) -> String {
    let bare = server.strip_prefix("https://").or_else(|| server.strip_prefix("http://")).unwrap_or(server);
    let host = bare.split('/').next().unwrap_or(bare);
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => HUB_KEY.to_string(),
        other => other.to_string(),
    }
}

/// Reads the file at `path` as a JSON object (none there: an empty one).
fn read(path: &Path) -> Result<Map<String, Value>> {
    let text = match fs_err::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(e.into()),
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AuthFileError::Format { path: path.to_path_buf(), reason: "not an object".into() }),
        Err(e) => Err(AuthFileError::Format { path: path.to_path_buf(), reason: e.to_string() }),
    }
}

/// Replaces the file at `path` with `map`: a temporary file beside it (mode 0600), synced, then
/// renamed over it, so a reader never sees half a file and a crash never leaves one. A symlink
/// is followed (the file it points to is replaced, as docker does).
fn write(path: &Path, map: &Map<String, Value>) -> Result<()> {
    let path = match fs_err::canonicalize(path) {
        Ok(real) => real,
        Err(_) => path.to_path_buf(),
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        fs_err::create_dir_all(dir)?;
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let text = serde_json::to_string_pretty(map)
        .map_err(|e| AuthFileError::Format { path: path.clone(), reason: e.to_string() })?;
    let io = |e: std::io::Error| {
        AuthFileError::Io(std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".hako-login-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(&path).map_err(|e| io(e.error))?;
    Ok(())
}

/// The credential helper the file names for `key`: its `credHelpers` entry, else `credsStore`.
fn helper_for(map: &Map<String, Value>, key: &str) -> Option<String> {
    let named = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    named(map.get("credHelpers").and_then(|h| h.get(key))).or_else(|| named(map.get("credsStore")))
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin.
fn run_helper(helper: &str, action: &'static str, input: &[u8]) -> Result<()> {
    let fail = |reason: String| AuthFileError::Helper { helper: helper.to_string(), action, reason };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(if out.stderr.is_empty() { &out.stdout } else { &out.stderr });
        return Err(fail(format!("{} ({})", said.trim(), out.status)));
    }
    Ok(())
}

/// Keeps `user`/`password` for `key` in the file at `path`, or in the credential helper it names.
pub fn store(path: &Path, key: &str, user: &str, password: &str) -> Result<Kept> {
    let mut map = read(path)?;
    if let Some(helper) = helper_for(&map, key) {
        let input = serde_json::json!({ "ServerURL": key, "Username": user, "Secret": password });
        run_helper(&helper, "store", input.to_string().as_bytes())?;
        // docker leaves an empty entry behind, so the file still lists the login.
        if map.get("credHelpers").and_then(|h| h.get(key)).is_none() {
            auths(&mut map, path)?.insert(key.to_string(), serde_json::json!({}));
            write(path, &map)?;
        }
        return Ok(Kept::Helper(helper));
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    auths(&mut map, path)?.insert(key.to_string(), serde_json::json!({ "auth": auth }));
    write(path, &map)?;
    Ok(Kept::File(path.to_path_buf()))
}

/// The `auths` object of the file (made when missing).
fn auths<'a>(map: &'a mut Map<String, Value>, path: &Path) -> Result<&'a mut Map<String, Value>> {
    map.entry("auths").or_insert_with(|| Value::Object(Map::new())).as_object_mut().ok_or_else(|| {
        AuthFileError::Format { path: path.to_path_buf(), reason: "`auths` is not an object".into() }
    })
}

/// Removes the login for `key` (and the `https://`/`http://` spellings of it docker also reads)
/// from the file and from the credential helper it names. Returns whether there was one.
pub fn erase(path: &Path, key: &str) -> Result<bool> {
    let mut map = read(path)?;
    let helper = helper_for(&map, key);
    let spellings = [key.to_string(), format!("https://{key}"), format!("http://{key}")];
    let mut removed = false;
    if let Some(auths) = map.get_mut("auths").and_then(Value::as_object_mut) {
        for k in &spellings {
            removed |= auths.remove(k).is_some();
        }
    }
    if let Some(helper) = helper {
        // A helper that has nothing for the key fails; the login is gone either way.
        if run_helper(&helper, "erase", key.as_bytes()).is_ok() {
            removed = true;
        }
    }
    if removed {
        write(path, &map)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_what_docker_login_writes() {
        for hub in ["docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/", ""]
        {
            assert_eq!(key_for(hub), HUB_KEY, "{hub}");
        }
        assert_eq!(key_for("reg.example:5000"), "reg.example:5000");
        assert_eq!(key_for("https://reg.example:5000/v2/"), "reg.example:5000");
        assert_eq!(key_for("http://127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn store_keeps_other_keys_writes_0600_and_docker_credential_reads_it() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("docker/config.json");
        fs_err::create_dir_all(dir.path().join("docker"))?;
        let before = r#"{"auths":{"other.example":{"auth":"eDp5"}},"proxies":{"default":{"httpProxy":"http://p"}},
            "credHelpers":{"gcr.io":"gcloud"}}"#;
        fs_err::write(&path, before)?;
        assert_eq!(store(&path, "reg.example:5000", "me", "pa:ss")?, Kept::File(path.clone()));
        let text = fs_err::read_to_string(&path)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| std::io::Error::other(e.to_string()))?;
        assert_eq!(v["auths"]["reg.example:5000"]["auth"], "bWU6cGE6c3M=");
        assert_eq!(v["auths"]["other.example"]["auth"], "eDp5");
        assert_eq!(v["proxies"]["default"]["httpProxy"], "http://p");
        let mode = fs_err::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let read = docker_credential::get_credential_from_reader(text.as_bytes(), "reg.example:5000");
        assert_eq!(
            read,
            Ok(docker_credential::DockerCredential::UsernamePassword("me".into(), "pa:ss".into()))
        );
        // Nothing but the file is left in the directory.
        assert_eq!(fs_err::read_dir(dir.path().join("docker"))?.count(), 1);

        // A missing file and directory are made (the directory 0700).
        let fresh = dir.path().join("new/config.json");
        store(&fresh, HUB_KEY, "u", "p")?;
        assert_eq!(fs_err::metadata(dir.path().join("new"))?.permissions().mode() & 0o777, 0o700);
        Ok(())
    }

    #[test]
    fn erase_removes_every_spelling_and_says_when_there_was_none() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("auth.json");
        fs_err::write(
            &path,
            r#"{"auths":{"r.example":{"auth":"YTpi"},"https://r.example":{"auth":"YTpi"},"k.example":{}}}"#,
        )?;
        assert!(erase(&path, "r.example")?);
        let v: Value = serde_json::from_str(&fs_err::read_to_string(&path)?)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        assert_eq!(v["auths"], serde_json::json!({"k.example": {}}));
        assert!(!erase(&path, "r.example")?);
        assert!(!erase(&dir.path().join("none.json"), "r.example")?);
        assert!(!dir.path().join("none.json").exists(), "erase made a file");
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_docker_json_is_refused_not_overwritten() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.json");
        fs_err::write(&path, "[1, 2")?;
        let e = store(&path, "r.example", "u", "p").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("config.json") && e.contains("not a docker config file"), "{e}");
        assert_eq!(fs_err::read_to_string(&path)?, "[1, 2");
        Ok(())
    }
}
