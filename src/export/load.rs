//! `--load`: a docker archive handed to the local Docker engine, through its API on the socket
//! `DOCKER_HOST` names (else `/var/run/docker.sock`) when the engine answers a ping, else to
//! `podman load` when podman is installed. The engine is found before the build starts, so a
//! build that could not be loaded fails at once rather than at its end.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Neither a Docker engine nor podman.
    #[error("no Docker engine answers on {docker} and podman is not installed")]
    NoEngine {
        /// Where the Docker engine was looked for (and why it did not answer).
        docker: String,
    },
    /// `DOCKER_HOST` names something hako cannot speak to.
    #[error("not supported yet: DOCKER_HOST={0} (hako speaks to unix:// and plain tcp:// engines)")]
    Unsupported(String),
    /// The engine refused the archive or the connection broke.
    #[error("loading into {engine}: {reason}")]
    Failed {
        /// Which engine.
        engine: String,
        /// What it said.
        reason: String,
    },
}

/// Where `--load` sends the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// A Docker engine API endpoint.
    Docker(Endpoint),
    /// `podman load` (the podman binary found on `PATH`).
    Podman(PathBuf),
}

/// A Docker API endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix://PATH`.
    Unix(PathBuf),
    /// `tcp://HOST:PORT`, without TLS.
    Tcp(String),
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Docker(Endpoint::Unix(p)) => write!(f, "the Docker engine at unix://{}", p.display()),
            Engine::Docker(Endpoint::Tcp(a)) => write!(f, "the Docker engine at tcp://{a}"),
            Engine::Podman(_) => f.write_str("podman's image store (podman load)"),
        }
    }
}

/// The engine `--load` uses: the Docker engine if it answers, else podman.
pub fn find_engine() -> Result<Engine, LoadError> {
    let endpoint = docker_endpoint()?;
    let docker = match &endpoint {
        Endpoint::Unix(p) => format!("unix://{}", p.display()),
        Endpoint::Tcp(a) => format!("tcp://{a}"),
    };
    let reason = match ping(&endpoint) {
        Ok(()) => return Ok(Engine::Docker(endpoint)),
        Err(e) => e,
    };
    if let Some(podman) = on_path("podman") {
        return Ok(Engine::Podman(podman));
    }
    Err(LoadError::NoEngine { docker: format!("{docker} ({reason})") })
}

/// `DOCKER_HOST`, else the default socket.
fn docker_endpoint() -> Result<Endpoint, LoadError> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    if host.is_empty() {
        return Ok(Endpoint::Unix(PathBuf::from("/var/run/docker.sock")));
    }
    if let Some(path) = host.strip_prefix("unix://") {
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    let tls = std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
    match host.strip_prefix("tcp://") {
        Some(addr) if !tls => Ok(Endpoint::Tcp(addr.trim_end_matches('/').to_string())),
        _ => Err(LoadError::Unsupported(host)),
    }
}

/// A connection to the endpoint, with timeouts so a dead engine cannot hang the build.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn connect(endpoint: &Endpoint, timeout: Option<Duration>) -> std::io::Result<Box<dyn Conn>> {
    Ok(match endpoint {
        Endpoint::Unix(p) => {
            let s = std::os::unix::net::UnixStream::connect(p)?;
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(timeout)?;
            Box::new(s)
        }
        Endpoint::Tcp(a) => {
            let s = std::net::TcpStream::connect(a)?;
            s.set_read_timeout(timeout)?;
            s.set_write_timeout(timeout)?;
            Box::new(s)
        }
    })
}

/// `GET /_ping`: whether an engine answers 200.
fn ping(endpoint: &Endpoint) -> Result<(), String> {
    let mut c = connect(endpoint, Some(Duration::from_secs(3))).map_err(|e| e.to_string())?;
    c.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let (status, _) = response(&mut c).map_err(|e| e.to_string())?;
    if status == 200 { Ok(()) } else { Err(format!("/_ping answered {status}")) }
}

/// The status code and body of an HTTP/1.1 response read to its end (`Connection: close`).
fn response(c: &mut dyn Conn) -> std::io::Result<(u16, String)> {
    let mut raw = Vec::new();
    c.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}

/// Loads the docker archive at `archive`; returns what the engine said it loaded.
pub fn load(engine: &Engine, archive: &Path) -> Result<String, LoadError> {
    let failed = |reason: String| LoadError::Failed { engine: engine.to_string(), reason };
    match engine {
        Engine::Docker(endpoint) => {
            let size = std::fs::metadata(archive).map_err(|e| failed(e.to_string()))?.len();
            let mut file = std::fs::File::open(archive).map_err(|e| failed(e.to_string()))?;
            // No timeout: a large image takes the engine a while to unpack.
            let mut c = connect(endpoint, None).map_err(|e| failed(e.to_string()))?;
            let head = format!(
                "POST /images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-tar\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
            );
            c.write_all(head.as_bytes()).map_err(|e| failed(e.to_string()))?;
            std::io::copy(&mut file, &mut c).map_err(|e| failed(e.to_string()))?;
            c.flush().map_err(|e| failed(e.to_string()))?;
            let (status, body) = response(&mut c).map_err(|e| failed(e.to_string()))?;
            // The body is a JSON message stream; an `error` in it is a failure even under 200.
            let messages: Vec<serde_json::Value> =
                body.lines().filter_map(|l| serde_json::from_str(l.trim()).ok()).collect();
            if let Some(e) = messages.iter().find_map(|m| m.get("error").and_then(|e| e.as_str())) {
                return Err(failed(e.to_string()));
            }
            if status != 200 {
                return Err(failed(format!("status {status}: {}", body.trim())));
            }
            Ok(messages
                .iter()
                .filter_map(|m| m.get("stream").and_then(|s| s.as_str()))
                .collect::<String>()
                .trim()
                .to_string())
        }
        Engine::Podman(podman) => {
            let out = std::process::Command::new(podman)
                .arg("load")
                .arg("-i")
                .arg(archive)
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| failed(e.to_string()))?;
            if !out.status.success() {
                return Err(failed(String::from_utf8_lossy(&out.stderr).trim().to_string()));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
    }
}

/// `name` found on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}
