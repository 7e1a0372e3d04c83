//! A real registry for the pull/push tests: Debian's `docker-registry` (CNCF distribution 2.8) on a
//! free loopback port, with its storage in a temporary directory, optionally behind htpasswd auth
//! or serving HTTPS with a certificate from a CA made for it, seeded with the offline busybox base
//! from `testdata/busybox`. Killed (and reaped) on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::text;

/// The user of the htpasswd registry (an unusual name, so messages that name it can be checked).
pub const USER: &str = "hako-tester";
/// Their password.
pub const PASS: &str = "s3cret-pass";

/// A running `docker-registry serve`.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    auth: bool,
}

/// What the registry is started with.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Anonymous,
    Htpasswd,
    Tls,
}

/// Whether `tool` is on PATH; says why the caller skips when it is not.
pub fn installed(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        crate::common::skip(&format!("{tool} is not installed (scripts/install-deps.sh installs {package})"));
    }
    found
}

/// A loopback port nothing listens on (bound, read, released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// `GET /v2/` over HTTP/1.0; the status code, or None while nothing answers.
fn v2_status(port: u16) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    // "HTTP/1.1 200 OK"
    String::from_utf8_lossy(&head).split_whitespace().nth(1)?.parse().ok()
}

/// Standard base64 (for `auth` entries of config.json), so no crate is needed.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A docker/podman auth file body giving `user:pass` for `host`.
pub fn auth_json(host: &str, user: &str, pass: &str) -> String {
    serde_json::json!({ "auths": { host: { "auth": base64(format!("{user}:{pass}").as_bytes()) } } })
        .to_string()
}

impl Registry {
    /// An anonymous registry with `base/busybox:latest`; None (after saying why) when
    /// `docker-registry` or `skopeo` is missing.
    pub fn start() -> Option<Registry> {
        Registry::launch(Mode::Anonymous)
    }

    /// A registry behind htpasswd auth (`USER`/`PASS`) with `base/busybox:latest`; None when a
    /// tool is missing.
    pub fn start_with_auth() -> Option<Registry> {
        Registry::launch(Mode::Htpasswd)
    }

    /// An anonymous registry that speaks HTTPS only, with a certificate for `127.0.0.1` signed by
    /// a CA made for it ([`Registry::ca`]); None when a tool is missing.
    pub fn start_tls() -> Option<Registry> {
        Registry::launch(Mode::Tls)
    }

    fn launch(mode: Mode) -> Option<Registry> {
        let auth = mode == Mode::Htpasswd;
        if !installed("docker-registry", "it") || !installed("skopeo", "it") {
            return None;
        }
        if auth && !installed("htpasswd", "apache2-utils") {
            return None;
        }
        if mode == Mode::Tls && !installed("openssl", "openssl") {
            return None;
        }
        let htpasswd = auth.then(|| {
            let out =
                Command::new("htpasswd").args(["-Bbn", "-C", "4", USER, PASS]).output().expect("htpasswd");
            assert!(out.status.success(), "htpasswd: {}", text(&out.stderr));
            out.stdout
        });
        // The port is free when chosen but may be taken before the registry binds it (tests run
        // in parallel): a registry that exits early is retried on another port.
        let mut last_failure = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            // A registry-private auth file for skopeo, so the machine's own logins are never used.
            fs_err::write(dir.path().join("skopeo-auth.json"), r#"{"auths":{}}"#).expect("write");
            let mut auth_section = String::new();
            if let Some(body) = &htpasswd {
                let file = dir.path().join("htpasswd");
                fs_err::write(&file, body).expect("write htpasswd");
                auth_section =
                    format!("auth:\n  htpasswd:\n    realm: hako-test\n    path: {}\n", file.display());
            }
            let tls_section = if mode == Mode::Tls {
                make_certificates(dir.path());
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.path().join("server.pem").display(),
                    dir.path().join("server.key").display()
                )
            } else {
                String::new()
            };
            let port = free_port();
            let config = dir.path().join("config.yml");
            fs_err::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  \
                     filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_section}{auth_section}",
                    dir.path().join("storage").display()
                ),
            )
            .expect("write config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry");
            // From here on, Drop kills and reaps it whatever happens.
            let mut registry = Registry { child, port, dir, auth };
            // Go's server answers a plain-HTTP request to its TLS port with 400.
            let want = match mode {
                Mode::Anonymous => 200,
                Mode::Htpasswd => 401,
                Mode::Tls => 400,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut status = None;
            while Instant::now() < deadline {
                status = v2_status(port);
                if status == Some(want) {
                    registry.seed_base();
                    return Some(registry);
                }
                if registry.child.try_wait().expect("try_wait").is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_failure = format!(
                "docker-registry on port {port}: GET /v2/ gave {status:?}, want {want}; its log:\n{}",
                fs_err::read_to_string(registry.dir.path().join("registry.log")).unwrap_or_default()
            );
        }
        panic!("the registry did not start: {last_failure}");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<path>`.
    pub fn image(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    /// The seeded base image, `127.0.0.1:PORT/base/busybox:latest`.
    pub fn base(&self) -> String {
        self.image("base/busybox:latest")
    }

    /// The CA certificate (PEM) that signed a TLS registry's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The registry's storage directory (`docker/registry/v2/...` inside).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// `skopeo` with this registry's private auth file.
    fn skopeo(&self) -> Command {
        let mut cmd = Command::new("skopeo");
        cmd.env("REGISTRY_AUTH_FILE", self.dir.path().join("skopeo-auth.json"));
        cmd
    }

    fn creds(&self, flag: &str) -> Vec<String> {
        if self.auth { vec![flag.to_string(), format!("{USER}:{PASS}")] } else { Vec::new() }
    }

    /// Copies `testdata/busybox` to `base/busybox:latest`.
    fn seed_base(&self) {
        let src = format!("oci:{}/testdata/busybox:latest", env!("CARGO_MANIFEST_DIR"));
        let out = self
            .skopeo()
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(self.creds("--dest-creds"))
            .arg(src)
            .arg(format!("docker://{}", self.base()))
            .output()
            .expect("run skopeo copy");
        assert!(out.status.success(), "seeding the base: {}", text(&out.stderr));
    }

    /// `skopeo inspect` of `127.0.0.1:PORT/<path>`: the manifest digest it reports.
    pub fn digest_of(&self, path: &str) -> String {
        let out = self
            .skopeo()
            .args(["inspect", "--tls-verify=false"])
            .args(self.creds("--creds"))
            .arg(format!("docker://{}", self.image(path)))
            .output()
            .expect("run skopeo inspect");
        assert!(out.status.success(), "skopeo inspect {path}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo inspect json");
        v["Digest"].as_str().expect("Digest in skopeo inspect").to_string()
    }

    /// `skopeo copy docker://127.0.0.1:PORT/<path> oci:<layout>:<tag>` (verifies every blob).
    pub fn copy_to_layout(&self, path: &str, layout: &Path, tag: &str) -> Output {
        self.skopeo()
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .args(self.creds("--src-creds"))
            .arg(format!("docker://{}", self.image(path)))
            .arg(format!("oci:{}:{tag}", layout.display()))
            .output()
            .expect("run skopeo copy")
    }
}

/// Runs `openssl ARGS…` in `dir`, panicking with its stderr if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
}

/// Writes `ca.pem` (a CA made for this registry) and `server.pem`/`server.key` (a certificate for
/// 127.0.0.1 it signed) into `dir`: P-256 keys, valid for two days.
fn make_certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let ca = [
        "-subj",
        "/CN=hako test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
    ];
    openssl(dir, &[&["req", "-x509"][..], &ec, &ca].concat());
    let ext = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
               extendedKeyUsage=serverAuth\n";
    fs_err::write(dir.join("server.ext"), ext).expect("write server.ext");
    let csr = ["-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"];
    openssl(dir, &[&["req"][..], &ec, &csr].concat());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
