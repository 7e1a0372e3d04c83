//! Checking a login against a registry before it is kept, as `docker login` does: `GET /v2/`;
//! when the registry asks for HTTP basic auth, the same request with the credentials; when it
//! asks for a token (`WWW-Authenticate: Bearer realm=…,service=…`), a token request to the realm
//! with the credentials. A 200 accepts them, a 401 or 403 refuses them.

use std::collections::BTreeMap;

use super::clients;
use super::config::{Config, normalize};
use super::retry::{self, Transient};

/// Why a login was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The registry said the credentials are wrong.
    #[error("registry {registry} refused the login of user {user:?}: {detail}")]
    Refused {
        /// The registry.
        registry: String,
        /// The user.
        user: String,
        /// Its answer (status, URL).
        detail: String,
    },
    /// The registry could not be reached (after retries).
    #[error("cannot reach registry {registry}: {reason}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// Why.
        reason: String,
    },
    /// The registry answered something a registry does not.
    #[error("registry {registry}: {detail}")]
    Unexpected {
        /// The registry.
        registry: String,
        /// What it answered.
        detail: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up HTTPS for {registry}: {source}")]
    Client {
        /// The registry.
        registry: String,
        /// Why.
        source: clients::ClientError,
    },
}

impl LoginError {
    /// What the user can do about it, when hako knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            LoginError::Refused { .. } => Some(
                "check the user name and the password (registries that use tokens want the token as the password)"
                    .into(),
            ),
            LoginError::Unreachable { registry, reason } if reason.contains("certificate") => {
                Some(super::auth::tls_hint(registry))
            }
            _ => None,
        }
    }
}

/// The host to ask: Docker Hub's API for its names, the host itself otherwise.
fn api_host(registry: &str) -> String {
    match normalize(registry).as_str() {
        "docker.io" => "index.docker.io".to_string(),
        other => other.to_string(),
    }
}

/// What a `WWW-Authenticate` header asks for.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    /// `basic` or `bearer` (lowercase).
    scheme: String,
    /// Its parameters (`realm`, `service`, …), names lowercase.
    params: BTreeMap<String, String>,
}

/// Parses `Scheme k="v", k2=v2` (RFC 7235; quoted values may hold commas and `\"`).
fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some((name, after)) = rest.split_once('=') else { break };
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(name.trim().to_ascii_lowercase(), value);
        rest = next;
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

/// One attempt's failure.
#[derive(Debug)]
enum Attempt {
    Http(reqwest::Error),
    Status { status: reqwest::StatusCode, url: String },
    Bad(String),
}

impl Transient for Attempt {
    fn transient(&self) -> bool {
        match self {
            Attempt::Http(e) => e.transient(),
            Attempt::Status { status, .. } => status.is_server_error() || status.as_u16() == 429,
            Attempt::Bad(_) => false,
        }
    }
}

/// Checks `user`/`password` against `registry` (reached as `config` says).
pub fn verify(config: &Config, registry: &str, user: &str, password: &str) -> Result<(), LoginError> {
    let host = api_host(registry);
    let transport = config.transport(&host);
    let (client, scheme) =
        clients::http(&transport).map_err(|source| LoginError::Client { registry: host.clone(), source })?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        LoginError::Unexpected {
            registry: host.clone(),
            detail: format!("starting the network runtime: {e}"),
        }
    })?;
    let url = format!("{scheme}://{host}/v2/");
    let result = rt.block_on(retry::retry(|| attempt(&client, &url, user, password)));
    result.map_err(|f| match f.error {
        Attempt::Status { status, url } if matches!(status.as_u16(), 401 | 403) => LoginError::Refused {
            registry: host.clone(),
            user: user.to_string(),
            detail: format!("{status} from {url}"),
        },
        Attempt::Http(e) => {
            let tries = if f.attempts > 1 {
                format!(" (gave up after {} attempts)", f.attempts)
            } else {
                String::new()
            };
            LoginError::Unreachable { registry: host.clone(), reason: format!("{}{tries}", retry::chain(&e)) }
        }
        Attempt::Status { status, url } => {
            LoginError::Unexpected { registry: host.clone(), detail: format!("{status} from {url}") }
        }
        Attempt::Bad(detail) => LoginError::Unexpected { registry: host.clone(), detail },
    })
}

/// One check, from the first `GET /v2/`.
async fn attempt(client: &reqwest::Client, url: &str, user: &str, password: &str) -> Result<(), Attempt> {
    let status_error =
        |r: &reqwest::Response| Attempt::Status { status: r.status(), url: r.url().to_string() };
    let first = client.get(url).send().await.map_err(Attempt::Http)?;
    if first.status().is_success() {
        // The registry needs no login; docker accepts it too.
        return Ok(());
    }
    if first.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(status_error(&first));
    }
    let header = first.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|h| h.to_str().ok());
    let challenge = header
        .and_then(parse_challenge)
        .ok_or_else(|| Attempt::Bad(format!("{url} answered 401 without a WWW-Authenticate challenge")))?;
    let answer = match challenge.scheme.as_str() {
        "basic" => client.get(url).basic_auth(user, Some(password)).send().await.map_err(Attempt::Http)?,
        "bearer" => {
            let realm = challenge
                .params
                .get("realm")
                .ok_or_else(|| Attempt::Bad(format!("{url} asked for a token without naming a realm")))?;
            let mut query = vec![("account", user), ("client_id", "hako"), ("offline_token", "true")];
            if let Some(service) = challenge.params.get("service") {
                query.push(("service", service));
            }
            client
                .get(realm)
                .query(&query)
                .basic_auth(user, Some(password))
                .send()
                .await
                .map_err(Attempt::Http)?
        }
        other => {
            return Err(Attempt::Bad(format!(
                "{url} asks for {other} authentication, which hako does not speak"
            )));
        }
    };
    if answer.status().is_success() { Ok(()) } else { Err(status_error(&answer)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn challenges_parse_as_registries_send_them() {
        let c =
            parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#);
        assert_eq!(
            c,
            Some(Challenge {
                scheme: "bearer".into(),
                params: params(&[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io")
                ])
            })
        );
        let c = parse_challenge(r#"Basic realm="hako-test""#);
        assert_eq!(c, Some(Challenge { scheme: "basic".into(), params: params(&[("realm", "hako-test")]) }));
        let c = parse_challenge(
            r#"Bearer realm="https://r/t?a=1,b", scope="repository:x:pull", Error=insufficient_scope"#,
        );
        assert_eq!(
            c.map(|c| c.params),
            Some(params(&[
                ("error", "insufficient_scope"),
                ("realm", "https://r/t?a=1,b"),
                ("scope", "repository:x:pull")
            ]))
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="a \"b\"""#).map(|c| c.params),
            Some(params(&[("realm", "a \"b\"")]))
        );
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn docker_hub_is_asked_at_its_api_host() {
        assert_eq!(api_host("docker.io"), "index.docker.io");
        assert_eq!(api_host("registry-1.docker.io"), "index.docker.io");
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
