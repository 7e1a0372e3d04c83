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

/// Turns an oci-client error into a sentence that says which registry, what failed and what to do.
pub fn explain(e: &OciDistributionError, registry: &str, creds: &Creds) -> String {
    let text = e.to_string();
    let lower = text.to_lowercase();
    if matches!(
        e,
        OciDistributionError::AuthenticationFailure(_) | OciDistributionError::UnauthorizedError { .. }
    ) || lower.contains("401")
        || lower.contains("unauthorized")
    {
        return format!(
            "registry {registry} refused access with {} ({text}); log in with `docker login {registry}` or set REGISTRY_AUTH_FILE",
            creds.source
        );
    }
    if lower.contains("connection refused")
        || lower.contains("dns")
        || lower.contains("error sending request")
    {
        return format!("cannot reach registry {registry}: {text}");
    }
    if lower.contains("manifest unknown") || lower.contains("not found") || lower.contains("404") {
        return format!("not found on registry {registry}: {text}");
    }
    format!("registry {registry}: {text}")
}
