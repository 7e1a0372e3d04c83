//! Registry credentials, looked up as docker and podman do: `REGISTRY_AUTH_FILE` (podman's
//! variable) when set, else `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (`auths` with a
//! base64 `auth`, `credHelpers`, `credsStore` through `docker-credential-*` helpers), else
//! `$XDG_RUNTIME_DIR/containers/auth.json`; anonymous (with token auth) when none has an entry.

use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

/// Credentials for one registry, and where they came from (for error messages).
pub struct Creds {
    /// What oci-client sends.
    pub auth: RegistryAuth,
    /// `anonymous`, or the user and the file/helper that provided it.
    pub source: String,
}

/// One credential source: docker's config or podman's auth file.
type Lookup = fn(&str) -> Result<DockerCredential, CredentialRetrievalError>;

/// Looks up credentials for `registry` (`host[:port]`).
pub fn credentials(registry: &str) -> Creds {
    let lookups: Vec<(&str, Lookup)> = if std::env::var_os("REGISTRY_AUTH_FILE").is_some() {
        vec![("REGISTRY_AUTH_FILE", docker_credential::get_podman_credential)]
    } else {
        vec![
            ("docker config.json", docker_credential::get_credential),
            ("containers auth.json", docker_credential::get_podman_credential),
        ]
    };
    for (source, lookup) in lookups {
        // Docker keys Docker Hub as its v1 URL; other registries by host[:port].
        let keys = if registry == "docker.io" || registry == "index.docker.io" {
            vec!["https://index.docker.io/v1/".to_string(), registry.to_string()]
        } else {
            vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")]
        };
        for key in keys {
            match lookup(&key) {
                Ok(DockerCredential::UsernamePassword(user, pass)) => {
                    return Creds {
                        source: format!("user {user:?} from {source}"),
                        auth: RegistryAuth::Basic(user, pass),
                    };
                }
                Ok(DockerCredential::IdentityToken(token)) => {
                    return Creds {
                        source: format!("an identity token from {source}"),
                        auth: RegistryAuth::Bearer(token),
                    };
                }
                Err(_) => continue,
            }
        }
    }
    Creds { auth: RegistryAuth::Anonymous, source: "no credentials".into() }
}

/// A registry error made readable: what happened, and what to do about it.
pub struct Explained {
    /// Which registry, what failed.
    pub reason: String,
    /// What to do (`hako login`, a CA to trust), when hako knows.
    pub hint: Option<String>,
}

/// How to log in to `registry` (Docker Hub by its short name).
pub fn login_command(registry: &str) -> String {
    format!("hako login {}", super::config::normalize(registry))
}

/// What to do when `registry`'s certificate is not trusted.
pub fn tls_hint(registry: &str) -> String {
    format!(
        "if its certificate is signed by your own CA, point SSL_CERT_FILE (a PEM bundle) or SSL_CERT_DIR at it, or list it as `ca = [\"FILE\"]` in [registry.\"{registry}\"] of hako's config file ($HAKO_CONFIG or ~/.config/hako/config.toml)"
    )
}

/// Whether `lower` (an error text) carries HTTP status `code`, as oci-client (`code: 401`) and
/// reqwest (`(401 Unauthorized)`) write it; not a port or a digest that happens to hold the digits.
fn status_in(lower: &str, code: &str) -> bool {
    [format!("code: {code}"), format!("({code} "), format!("status {code}"), format!(" {code} ")]
        .iter()
        .any(|p| lower.contains(p.as_str()))
}

/// Turns an oci-client error into a sentence that says which registry, what failed and what to do.
pub fn explain(e: &OciDistributionError, registry: &str, creds: &Creds) -> Explained {
    use oci_client::errors::OciErrorCode;
    let text = super::retry::chain(e);
    let lower = text.to_lowercase();
    let plain = |reason: String| Explained { reason, hint: None };
    let denied = match e {
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|x| matches!(x.code, OciErrorCode::Denied | OciErrorCode::Unauthorized)),
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        _ => false,
    };
    if denied
        || matches!(
            e,
            OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. }
        )
        || status_in(&lower, "401")
        || lower.contains("unauthorized")
        || lower.contains("denied")
    {
        return Explained {
            reason: format!("registry {registry} refused access with {} ({text})", creds.source),
            hint: Some(format!(
                "log in with `{}` (it writes ~/.docker/config.json, or REGISTRY_AUTH_FILE when set), as a user allowed to do this",
                login_command(registry)
            )),
        };
    }
    if super::retry::certificate_rejected(e) {
        return Explained {
            reason: format!("registry {registry}'s TLS certificate was not accepted: {text}"),
            hint: Some(tls_hint(registry)),
        };
    }
    if lower.contains("connection refused")
        || lower.contains("dns")
        || lower.contains("error sending request")
    {
        return plain(format!("cannot reach registry {registry}: {text}"));
    }
    if lower.contains("manifest unknown") || lower.contains("not found") || status_in(&lower, "404") {
        return plain(format!("not found on registry {registry}: {text}"));
    }
    plain(format!("registry {registry}: {text}"))
}

#[cfg(test)]
mod explain_tests {
    use super::*;

    fn anonymous() -> Creds {
        Creds { auth: RegistryAuth::Anonymous, source: "no credentials".into() }
    }

    /// A port holding "401" (127.0.0.1:40195) is no 401: a missing tag there is "not found",
    /// with no login hint. It was "refused access" whenever the test registry got such a port.
    #[test]
    fn status_codes_are_not_read_out_of_ports() {
        let missing = OciDistributionError::GenericError(Some(
            "Registry error: url http://127.0.0.1:40195/v2/base/busybox/manifests/nope, envelope: OCI API \
             errors: [OCI API error: manifest unknown]"
                .into(),
        ));
        let e = explain(&missing, "127.0.0.1:40195", &anonymous());
        assert!(e.reason.starts_with("not found on registry"), "{}", e.reason);
        assert!(e.hint.is_none());
        let refused = OciDistributionError::ServerError {
            code: 401,
            url: "http://127.0.0.1:5000/v2/".into(),
            message: "no".into(),
        };
        assert!(explain(&refused, "127.0.0.1:5000", &anonymous()).hint.is_some(), "a real 401 hints login");
        let gone = OciDistributionError::GenericError(Some(
            "Server error: url http://r:4040/x, code: 404, message: x".into(),
        ));
        assert!(explain(&gone, "r:4040", &anonymous()).reason.starts_with("not found"));
    }
}
