//! CA certificates where the machine has none. A minimal CI image (`FROM scratch` plus the static
//! hako, or busybox) often has no CA bundle; reqwest then refuses to build any HTTP client, and
//! oci-client builds one internally even for plain-HTTP registries, so every push or pull failed
//! (it panicked). With no system bundle and neither `SSL_CERT_FILE` nor `SSL_CERT_DIR` set, hako
//! uses the Mozilla roots built into it (`webpki-root-certs`), as a file named by `SSL_CERT_FILE`.

use std::path::{Path, PathBuf};

use base64::Engine;

/// Where distributions keep their CA bundle (openssl-probe's list).
const BUNDLES: [&str; 8] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
    "/etc/openssl/certs/ca-certificates.crt",
];

/// Whether the machine has CA certificates TLS clients will find.
pub fn system_has_roots() -> bool {
    if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
        return true;
    }
    BUNDLES.iter().any(|b| Path::new(b).is_file())
        || std::fs::read_dir("/etc/ssl/certs")
            .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".0"))))
}

/// The built-in roots as one PEM bundle.
pub fn bundled_pem() -> String {
    let mut out = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// With no system CA certificates, writes the built-in roots to a file in the temporary
/// directory and names it in `SSL_CERT_FILE`; returns the file when it did.
///
/// # Safety
/// Sets an environment variable: call it while the process has one thread (at start-up).
pub unsafe fn use_bundled_if_none() -> Option<PathBuf> {
    if system_has_roots() {
        return None;
    }
    let path = bundle_file(&std::env::temp_dir())?;
    // SAFETY: the caller promises no other thread runs (none reads the environment meanwhile).
    unsafe { std::env::set_var("SSL_CERT_FILE", &path) };
    let _ = BUNDLED.set(path.clone());
    Some(path)
}

/// The built-in roots as a file in `dir` (a shared temporary directory): the one this user wrote
/// before, when it is this user's and nobody else can write it, else a new one. Another user's file
/// at that name is never trusted: whoever wrote it would choose which servers hako believes.
fn bundle_file(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::getuid().as_raw();
    let name = format!("hako-{uid}-roots-{}", env!("CARGO_PKG_VERSION"));
    let path = dir.join(format!("{name}.pem"));
    let ours = |p: &Path| {
        std::fs::symlink_metadata(p)
            .is_ok_and(|m| m.file_type().is_file() && m.uid() == uid && m.mode() & 0o022 == 0)
    };
    if ours(&path) {
        return Some(path);
    }
    // Written whole under a new name (O_EXCL, mode 0600), then renamed: a concurrent hako never
    // reads half. A foreign file at the shared name cannot be replaced (the sticky bit): this
    // process then keeps a file of its own.
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).tempfile_in(dir).ok()?;
    std::io::Write::write_all(&mut tmp, bundled_pem().as_bytes()).ok()?;
    match tmp.persist(&path) {
        Ok(_) => Some(path),
        Err(e) => {
            let own = dir.join(format!("{name}-{}.pem", std::process::id()));
            e.file.persist(&own).ok().map(|_| own)
        }
    }
}

static BUNDLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The built-in roots' file, when this process uses them.
pub fn bundled_in_use() -> Option<&'static Path> {
    BUNDLED.get().map(PathBuf::as_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_pem_of_every_root() {
        let pem = bundled_pem();
        assert_eq!(
            pem.matches("-----BEGIN CERTIFICATE-----").count(),
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len()
        );
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
    }

    #[test]
    fn a_bundle_someone_else_can_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = bundle_file(dir.path()).expect("written");
        assert_eq!(std::fs::read_to_string(&first).unwrap(), bundled_pem());
        assert_eq!(bundle_file(dir.path()), Some(first.clone()), "our own file is used again");
        // Writable by others (or, for root, owned by another user): replaced, never read.
        std::fs::write(&first, "-----BEGIN CERTIFICATE-----\nATTACKER\n").unwrap();
        std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o666)).unwrap();
        let again = bundle_file(dir.path()).expect("written");
        assert_eq!(std::fs::read_to_string(&again).unwrap(), bundled_pem());
        if nix::unistd::geteuid().is_root() {
            std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o644)).unwrap();
            std::fs::write(&first, "ATTACKER").unwrap();
            std::os::unix::fs::chown(&first, Some(65534), Some(65534)).unwrap();
            let theirs = bundle_file(dir.path()).expect("written");
            assert_eq!(std::fs::read_to_string(&theirs).unwrap(), bundled_pem());
        }
    }
}
