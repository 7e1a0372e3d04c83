//! `hako login` and `hako logout` against the htpasswd registry (`registry_fixture`) and a small
//! token server: the password checked before it is kept, the entry docker writes (and hako's own
//! pulls then read), REGISTRY_AUTH_FILE and DOCKER_CONFIG, credential helpers, the exit codes, and
//! the `hako login` hint on refused pulls and pushes.
//!
//! Every run gets a private HOME, DOCKER_CONFIG and XDG_RUNTIME_DIR, so the machine's own logins
//! are never read or written.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use crate::common::{feed_stdin, hako, text};
use crate::registry_fixture::{PASS, Registry, USER, base64};

/// A private home: `home/.docker` is DOCKER_CONFIG.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["home/.docker", "run"] {
            fs_err::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        Home { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config_json(&self) -> PathBuf {
        self.path("home/.docker/config.json")
    }

    /// `hako ARGS…` with the private environment, `stdin` fed in (or none), `env` on top.
    fn run(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> Output {
        let mut cmd = hako();
        cmd.args(args);
        for var in ["REGISTRY_AUTH_FILE", "HAKO_ROOT", "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR"] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", self.path("home"))
            .env("DOCKER_CONFIG", self.path("home/.docker"))
            .env("XDG_CONFIG_HOME", self.path("home/.config"))
            .env("XDG_RUNTIME_DIR", self.path("run"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hako");
        if let Some(input) = stdin {
            feed_stdin(&mut child, input.as_bytes());
        }
        child.wait_with_output().expect("wait for hako")
    }

    /// `hako login -u USER --password-stdin HOST` with `password` piped in.
    fn login(&self, host: &str, password: &str, env: &[(&str, &Path)]) -> Output {
        self.run(&["login", "-u", USER, "--password-stdin", host], Some(&format!("{password}\n")), env)
    }

    /// `hako build` of examples/hello FROM `base`, in its own store, `env` on top.
    fn build_from(&self, root: &str, base: &str, extra: &[&str], env: &[(&str, &Path)]) -> Output {
        let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello");
        let root = self.path(root);
        let root = root.to_str().expect("utf-8");
        let base = format!("BASE={base}");
        let mut args = vec!["build", "--progress=plain", "--root", root, "--build-arg", &base];
        args.extend_from_slice(extra);
        args.push(hello);
        self.run(&args, None, env)
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(path).expect("read json")).expect("json")
}

fn status(out: &Output, code: i32, what: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: wrong exit status; stdout:\n{}\nstderr:\n{err}",
        text(&out.stdout)
    );
    err
}

#[test]
fn login_checks_the_password_and_writes_what_docker_and_hako_read() {
    let Some(reg) = Registry::start_with_auth() else { return };
    let home = Home::new();
    let host = reg.host();
    // Keys of the user's config that login must keep.
    let before = serde_json::json!({
        "auths": { "other.example": { "auth": base64(b"a:b") } },
        "proxies": { "default": { "noProxy": "*.internal" } },
        "credHelpers": { "gcr.io": "gcloud" },
    });
    fs_err::write(home.config_json(), before.to_string()).expect("write config.json");

    // A wrong password: refused by the registry, exit 1, nothing written.
    let out = home.login(&host, "wrong-password", &[]);
    let err = status(&out, 1, "a wrong password");
    assert!(err.contains(&format!("registry {host} refused the login of user \"{USER}\"")), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(read_json(&home.config_json()), before, "a refused login changed config.json");

    // Not logged in: a pull is refused, and the hint names `hako login HOST`.
    let out = home.build_from("root1", &reg.base(), &[], &[]);
    let err = status(&out, 1, "a pull before logging in");
    assert!(err.contains(&format!("hint: log in with `hako login {host}`")), "{err}");

    // The right password: checked, kept as docker keeps it (mode 0600, other keys untouched).
    let out = home.login(&host, PASS, &[]);
    let err = status(&out, 0, "the right password");
    assert_eq!(text(&out.stdout), "Login Succeeded\n");
    assert!(err.contains("unencrypted"), "no warning that the password is kept in plain text:\n{err}");
    let after = read_json(&home.config_json());
    assert_eq!(
        after["auths"][&host],
        serde_json::json!({ "auth": base64(format!("{USER}:{PASS}").as_bytes()) })
    );
    assert_eq!(after["auths"]["other.example"], before["auths"]["other.example"]);
    assert_eq!((&after["proxies"], &after["credHelpers"]), (&before["proxies"], &before["credHelpers"]));
    let mode = fs_err::metadata(home.config_json()).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = fs_err::read_dir(home.path("home/.docker")).expect("ls").collect();
    assert_eq!(leftovers.len(), 1, "a temporary file was left behind: {leftovers:?}");

    // hako's pulls and pushes read that login.
    let name = reg.image("app/login:1");
    let out = home.build_from("root2", &reg.base(), &["-t", &name, "--push"], &[]);
    status(&out, 0, "pull and push after hako login");
    let _ = reg.digest_of("app/login:1");

    // -p works, with docker's warning.
    let out = home.run(&["login", "-u", USER, "-p", PASS, &host], None, &[]);
    let err = status(&out, 0, "-p");
    assert!(err.contains("Using --password via the CLI is insecure. Use --password-stdin."), "{err}");

    // logout removes the entry (and only it); a second logout says there is none.
    let out = home.run(&["logout", &host], None, &[]);
    status(&out, 0, "logout");
    assert_eq!(text(&out.stdout), format!("Removing login credentials for {host}\n"));
    let after = read_json(&home.config_json());
    assert!(after["auths"].get(&host).is_none(), "{after}");
    assert_eq!(after["auths"]["other.example"], before["auths"]["other.example"]);
    let out = home.run(&["logout", &host], None, &[]);
    status(&out, 0, "a second logout");
    assert_eq!(text(&out.stdout), format!("Not logged in to {host}\n"));

    // A push refused for want of a login also ends with the hint.
    let name = reg.image("app/login:2");
    let out = home.build_from("root2", &reg.base(), &["-t", &name, "--push"], &[]);
    let err = status(&out, 1, "a push after logout");
    assert!(err.contains(&format!("hint: log in with `hako login {host}`")), "{err}");

    // REGISTRY_AUTH_FILE (podman's variable) is where login writes when it is set.
    let auth_file = home.path("podman/auth.json");
    let out = home.login(&host, PASS, &[("REGISTRY_AUTH_FILE", &auth_file)]);
    status(&out, 0, "login into REGISTRY_AUTH_FILE");
    assert_eq!(read_json(&auth_file)["auths"][&host]["auth"], base64(format!("{USER}:{PASS}").as_bytes()));
    assert!(read_json(&home.config_json())["auths"].get(&host).is_none(), "wrote config.json too");

    // DOCKER_CONFIG names the directory of config.json.
    let other = home.path("other-docker");
    let out = home.login(&host, PASS, &[("DOCKER_CONFIG", &other)]);
    status(&out, 0, "login into DOCKER_CONFIG");
    assert!(read_json(&other.join("config.json"))["auths"][&host].is_object());
}

#[test]
fn login_needs_a_password_it_can_read() {
    let home = Home::new();
    // No terminal to ask on: a usage error that says what to do.
    let out = home.run(&["login", "-u", USER, "127.0.0.1:1"], None, &[]);
    let err = status(&out, 2, "no password and no terminal");
    assert!(err.contains("--password-stdin"), "{err}");
    // --password-stdin needs -u (as docker's), and not with -p.
    let out = home.run(&["login", "--password-stdin", "127.0.0.1:1"], Some("x\n"), &[]);
    status(&out, 2, "--password-stdin without -u");
    let out = home.run(&["login", "-u", "u", "-p", "x", "--password-stdin", "127.0.0.1:1"], Some("x\n"), &[]);
    status(&out, 2, "-p with --password-stdin");
    let out = home.login("127.0.0.1:1", "", &[]);
    let err = status(&out, 2, "an empty password");
    assert!(err.contains("password is empty"), "{err}");
    // A registry that cannot be reached: exit 1, nothing written.
    let out = home.login("127.0.0.1:1", "x", &[]);
    let err = status(&out, 1, "an unreachable registry");
    assert!(err.contains("cannot reach registry 127.0.0.1:1"), "{err}");
    assert!(!home.config_json().exists());
}

#[test]
fn login_goes_to_the_credential_helper_docker_config_names() {
    let Some(reg) = Registry::start_with_auth() else { return };
    let home = Home::new();
    let host = reg.host();
    // A credential store keeping one login in a file, as docker-credential-pass would in pass.
    let bin = home.path("bin");
    fs_err::create_dir_all(&bin).expect("mkdir");
    let kept = home.path("helper-store.json");
    let helper = bin.join("docker-credential-hakotest");
    fs_err::write(
        &helper,
        format!(
            "#!/bin/sh\nf={}\ncase \"$1\" in\n  store) cat > \"$f\" ;;\n  get) read s; [ -f \"$f\" ] || {{ echo 'credentials not found'; exit 1; }}; cat \"$f\" ;;\n  erase) read s; rm \"$f\" ;;\n  *) exit 1 ;;\nesac\n",
            kept.display()
        ),
    )
    .expect("write helper");
    fs_err::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    fs_err::write(home.config_json(), r#"{"credsStore":"hakotest"}"#).expect("write config.json");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let path = PathBuf::from(path);

    let out = home.login(&host, PASS, &[("PATH", &path)]);
    let err = status(&out, 0, "login through credsStore");
    assert!(!err.contains("unencrypted"), "warned about plain text with a helper:\n{err}");
    let stored = read_json(&kept);
    assert_eq!(stored, serde_json::json!({"ServerURL": host, "Username": USER, "Secret": PASS}));
    // As docker: an empty entry in auths, no password in the file.
    let config = read_json(&home.config_json());
    assert_eq!(config["auths"][&host], serde_json::json!({}));
    assert!(!fs_err::read_to_string(home.config_json()).expect("read").contains(&base64(PASS.as_bytes())));

    // hako's pull gets the login back from the helper.
    let out = home.build_from("root", &reg.base(), &[], &[("PATH", &path)]);
    status(&out, 0, "a pull with the helper's login");

    let out = home.run(&["logout", &host], None, &[("PATH", &path)]);
    status(&out, 0, "logout through the helper");
    assert!(!kept.exists(), "the helper still keeps the login");
}

/// A registry front that only answers `GET /v2/` with a token challenge and hands out tokens at
/// `/token` for `USER`/`PASS`; records each token request's query.
fn token_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let queries = Arc::new(Mutex::new(Vec::new()));
    let (seen, realm) = (queries.clone(), format!("http://{host}/token"));
    let good = format!("Basic {}", base64(format!("{USER}:{PASS}").as_bytes()));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut request = String::new();
            let mut authorization = None;
            let _ = reader.read_line(&mut request);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    authorization = Some(v.trim().to_string());
                }
            }
            let target = request.split_whitespace().nth(1).unwrap_or_default().to_string();
            let (status, headers, body) = if target == "/v2/" {
                let challenge =
                    format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"hako-test\"\r\n");
                ("401 Unauthorized", challenge, "{}")
            } else if let Some(query) = target.strip_prefix("/token?") {
                if let Ok(mut q) = seen.lock() {
                    q.push(query.to_string());
                }
                if authorization.as_deref() == Some(good.as_str()) {
                    ("200 OK", String::new(), r#"{"token":"t"}"#)
                } else {
                    ("401 Unauthorized", String::new(), "{}")
                }
            } else {
                ("404 Not Found", String::new(), "{}")
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (host, queries)
}

#[test]
fn login_to_a_token_registry_asks_its_realm() {
    let (host, queries) = token_server();
    let home = Home::new();
    let out = home.login(&host, "wrong-password", &[]);
    let err = status(&out, 1, "a wrong password at the token realm");
    assert!(err.contains("refused the login") && err.contains("/token"), "{err}");
    let out = home.login(&host, PASS, &[]);
    status(&out, 0, "the right password at the token realm");
    let q = queries.lock().map(|q| q.clone()).unwrap_or_default();
    assert!(
        q.iter().all(|q| q.contains("service=hako-test") && q.contains(&format!("account={USER}"))),
        "{q:?}"
    );
    assert_eq!(q.len(), 2, "{q:?}");
}

#[test]
fn login_and_logout_help_name_docker_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_hako")).args(["login", "--help"]).output().expect("run");
    let help = text(&out.stdout);
    for flag in ["--username", "--password-stdin", "--password", "SERVER"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}
