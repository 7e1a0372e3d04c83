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
    let uid = nix::unistd::getuid().as_raw();
    let path = std::env::temp_dir().join(format!("hako-{uid}-roots-{}.pem", env!("CARGO_PKG_VERSION")));
    if !path.is_file() {
        // Written whole under a unique name, then renamed: a concurrent hako never reads half.
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, bundled_pem()).ok()?;
        std::fs::rename(&tmp, &path).ok()?;
    }
    // SAFETY: the caller promises no other thread runs (none reads the environment meanwhile).
    unsafe { std::env::set_var("SSL_CERT_FILE", &path) };
    let _ = BUNDLED.set(path.clone());
    Some(path)
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
}
