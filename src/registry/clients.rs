//! HTTP clients for registries, one per host and [`Transport`]: plain HTTP, or HTTPS trusting the
//! system's CA certificates (or those `SSL_CERT_FILE`/`SSL_CERT_DIR` name: reqwest's rustls
//! verifier reads them through rustls-native-certs, as OpenSSL does) plus the host's own `ca`
//! files, or accepting any certificate (`insecure = true`).

use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};

use super::config::Transport;
use super::retry;

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A `ca` file could not be read.
    #[error("reading the CA certificates {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `ca` file holds no PEM certificate.
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The TLS set-up failed (no CA certificates at all, a certificate that does not parse).
    #[error("{0}")]
    Tls(String),
}

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The PEM certificates in `transport.ca`, one [`Certificate`] each (reqwest reads one
/// certificate from a PEM, and a CA file is often a bundle).
fn ca_certificates(transport: &Transport) -> Result<Vec<Certificate>, ClientError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    for path in &transport.ca {
        let text = fs_err::read_to_string(path)
            .map_err(|source| ClientError::Read { path: path.clone(), source })?;
        let before = out.len();
        let mut rest = text.as_str();
        while let Some(start) = rest.find(BEGIN) {
            let Some(len) = rest[start..].find(END) else { break };
            let end = start + len + END.len();
            out.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: format!("{}\n", &rest[start..end]).into_bytes(),
            });
            rest = &rest[end..];
        }
        if out.len() == before {
            return Err(ClientError::NoCertificate { path: path.clone() });
        }
    }
    Ok(out)
}

/// An oci-client that reaches its registry as `transport` says.
pub fn oci(transport: &Transport) -> Result<oci_client::Client, ClientError> {
    let config = ClientConfig {
        protocol: if transport.plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
        // Without TLS no certificate store is needed (reqwest otherwise insists on one).
        accept_invalid_certificates: transport.plain_http || transport.skip_verify,
        extra_root_certificates: ca_certificates(transport)?,
        // One streamed PUT per blob: fastest and constant memory (see ../shared/FACTS.md).
        use_monolithic_push: true,
        connect_timeout: Some(CONNECT_TIMEOUT),
        // A stalled download is cut and made again instead of hanging the build.
        read_timeout: Some(retry::idle_timeout()),
        ..ClientConfig::default()
    };
    oci_client::Client::try_from(config).map_err(|e| ClientError::Tls(e.to_string()))
}

/// A plain reqwest client with the same TLS settings (for `hako login`'s checks), and the URL
/// scheme to use with it.
pub fn http(transport: &Transport) -> Result<(reqwest::Client, &'static str), ClientError> {
    let certs = ca_certificates(transport)?
        .iter()
        .map(|c| reqwest::Certificate::from_pem(&c.data))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(transport.plain_http || transport.skip_verify)
        .tls_certs_merge(certs)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(retry::idle_timeout())
        .build()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok((client, if transport.plain_http { "http" } else { "https" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_split_into_certificates_and_bad_ones_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("bundle.pem");
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        fs_err::write(&bundle, format!("# two\n{cert}\n\n{cert}\n")).expect("write");
        let t = |p: &std::path::Path| Transport { ca: vec![p.to_path_buf()], ..Transport::default() };
        let certs = ca_certificates(&t(&bundle)).expect("read");
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].data, format!("{cert}\n").into_bytes());

        let empty = dir.path().join("empty.pem");
        fs_err::write(&empty, "not a certificate").expect("write");
        let e = ca_certificates(&t(&empty)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("empty.pem") && e.contains("no PEM certificate"), "{e}");
        let e = ca_certificates(&t(&dir.path().join("gone.pem"))).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("gone.pem")));
    }
}
