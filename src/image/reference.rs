//! Image references as Docker parses them (`distribution/reference`'s `ParseNormalizedNamed`,
//! digests checked as `go-digest` does): the one parser for FROM / `--from` images and `-t` names
//! (the planner), pulls and pushes (the registry client) and exported names. It gives the registry
//! and repository split, the tag and digest, the fully qualified form
//! (`docker.io/library/app:latest`, the containerd image name annotation), the familiar form
//! (`app:latest`, `RepoTags`) and the tag alone (the OCI `org.opencontainers.image.ref.name`
//! annotation).
//!
//! Hand-written rather than oci-client's `Reference` (oci-spec's), which differs from Docker:
//! no bracketed IPv6 registries, a capitalised first component is not a registry, upper-case
//! repositories and 64-hex-digit names are not refused, and the length limit is on the wrong part.

use std::fmt;

/// The registry Docker assumes when a name has none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Why a reference does not parse. The messages are the reason alone: the caller names the
/// reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// An upper-case letter in the repository (normalised, as Docker names it: `library/App`).
    #[error("repository name {0:?} must be lowercase")]
    Uppercase(String),
    /// Anything else against the grammar.
    #[error("{0}")]
    Invalid(String),
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageName {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageName {
    /// Parses `s` as Docker does, normalising `app` to `docker.io/library/app`.
    pub fn parse(s: &str) -> Result<ImageName, ReferenceError> {
        let invalid = ReferenceError::Invalid;
        if s.is_empty() {
            return Err(invalid("empty image name".into()));
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(invalid("cannot specify 64-byte hexadecimal strings".into()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        if let Some(d) = digest {
            check_digest(d).map_err(invalid)?;
        }
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if last_slash.is_none_or(|sl| colon > sl) => {
                (&rest[..colon], Some(&rest[colon + 1..]))
            }
            _ => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t).map_err(invalid)?;
        }
        let (domain, remainder) = split_domain(name);
        if remainder.to_ascii_lowercase() != remainder {
            return Err(ReferenceError::Uppercase(remainder));
        }
        check_domain(&domain).map_err(invalid)?;
        for component in remainder.split('/') {
            check_path_component(component).map_err(invalid)?;
        }
        if domain.len() + 1 + remainder.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(format!(
                "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
            )));
        }
        Ok(ImageName {
            domain,
            path: remainder,
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// The registry host (`docker.io`, `registry.example:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path (`library/app`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if the name has one (see [`ImageName::tag_or_latest`]).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:…`), if the name has one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The tag, `latest` for a bare name (Docker's `TagNameOnly`), none for a name with only a digest.
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// The fully qualified repository (`docker.io/library/app`).
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker prints it (`app`, `user/app`, `registry.example/app`).
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_PREFIX) {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.repository()
        }
    }

    /// The fully qualified name with `latest` added to a bare name, as BuildKit records it in the
    /// `io.containerd.image.name` annotation (`docker.io/library/app:latest`).
    pub fn full(&self) -> String {
        let mut s = self.repository();
        if let Some(t) = self.tag_or_latest() {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The familiar `repo:tag` for `RepoTags` (`app:latest`); none for a name with only a digest.
    pub fn familiar_tagged(&self) -> Option<String> {
        self.tag_or_latest().map(|t| format!("{}:{t}", self.familiar_repository()))
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full())
    }
}

fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first == "localhost" || first.to_ascii_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_PREFIX}{remainder}");
    }
    (domain, remainder)
}

fn check_tag(t: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = t.len() <= 128
        && t.chars().next().is_some_and(word)
        && t.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok { Ok(()) } else { Err(format!("invalid tag {t:?}")) }
}

fn check_digest(d: &str) -> Result<(), String> {
    let bad = || Err(format!("invalid digest {d:?}"));
    let Some((alg, hex)) = d.split_once(':') else { return bad() };
    // go-digest: only the registered algorithms, each with its exact length of lower-case hex.
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return bad(),
    };
    if hex.len() != len || !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return bad();
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_path_component(c: &str) -> Result<(), String> {
    let bad = || Err(format!("invalid repository path component {c:?}"));
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return bad();
        }
    }
    Ok(())
}

/// `host[:port]`, host being DNS labels, an IPv4 address or a bracketed IPv6 address.
fn check_domain(d: &str) -> Result<(), String> {
    let bad = || Err(format!("invalid registry host {d:?}"));
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else { return bad() };
        if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return bad();
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return bad(),
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(h) = host {
        let label_ok = |l: &str| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        };
        if !h.split('.').all(label_ok) {
            return bad();
        }
    }
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|x| x.is_ascii_digit()))
    {
        return bad();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn n(s: &str) -> ImageName {
        ImageName::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("app", "docker.io/library/app:latest", Some("app:latest"), Some("latest")),
            ("app:1.2", "docker.io/library/app:1.2", Some("app:1.2"), Some("1.2")),
            ("user/app", "docker.io/user/app:latest", Some("user/app:latest"), Some("latest")),
            ("docker.io/library/app:x", "docker.io/library/app:x", Some("app:x"), Some("x")),
            ("index.docker.io/app", "docker.io/library/app:latest", Some("app:latest"), Some("latest")),
            ("registry.io/app:1.2", "registry.io/app:1.2", Some("registry.io/app:1.2"), Some("1.2")),
            (
                "localhost:5000/a/b",
                "localhost:5000/a/b:latest",
                Some("localhost:5000/a/b:latest"),
                Some("latest"),
            ),
            ("localhost/app:V_1", "localhost/app:V_1", Some("localhost/app:V_1"), Some("V_1")),
            ("[::1]:5000/app", "[::1]:5000/app:latest", Some("[::1]:5000/app:latest"), Some("latest")),
            ("a.b/c__d/e-f.g", "a.b/c__d/e-f.g:latest", Some("a.b/c__d/e-f.g:latest"), Some("latest")),
        ];
        for (input, full, familiar, tag) in cases {
            let name = n(input);
            assert_eq!(name.full(), full, "{input}");
            assert_eq!(name.familiar_tagged().as_deref(), familiar, "{input}");
            assert_eq!(name.tag_or_latest(), tag, "{input}");
        }
        let digested = n(&format!("app@sha256:{HEX}"));
        assert_eq!(digested.full(), format!("docker.io/library/app@sha256:{HEX}"));
        assert_eq!(digested.familiar_tagged(), None);
        assert_eq!(digested.tag_or_latest(), None);
        let both = n(&format!("r.io/app:1@sha256:{HEX}"));
        assert_eq!(both.familiar_tagged().as_deref(), Some("r.io/app:1"));
        assert_eq!(both.digest(), Some(format!("sha256:{HEX}").as_str()));
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "",
            "App",
            "app:",
            "app:-x",
            "app@sha256:00",
            "app@md5",
            "a//b",
            "a/-b",
            "a/b_",
            "a/b...c",
            "-host.io/app",
            "host.io:port/app",
            "app:has/slash",
            HEX,
            &format!("x/{}", "a".repeat(260)),
        ] {
            assert!(ImageName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(ImageName::parse("Upper.io/app").is_ok(), "an upper-case first component is a host");
        assert!(ImageName::parse("Upper/app").is_ok(), "a capitalised first component is a host");
    }

    #[test]
    fn digests_are_checked_like_go_digest() {
        let sha512 = "f".repeat(128);
        assert!(ImageName::parse(&format!("app@sha512:{sha512}")).is_ok());
        assert!(ImageName::parse(&format!("app@sha384:{}", "0".repeat(96))).is_ok());
        for bad in [
            format!("app@sha256:{}", HEX.to_uppercase()),
            format!("app@sha512:{HEX}"),
            format!("app@md5:{HEX}"),
            format!("app@sha256:{HEX}0"),
        ] {
            assert!(ImageName::parse(&bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn errors_name_the_reason() {
        assert_eq!(
            ImageName::parse("Busybox").map_err(|e| e.to_string()),
            Err("repository name \"library/Busybox\" must be lowercase".to_string())
        );
        assert_eq!(ImageName::parse("Busybox"), Err(ReferenceError::Uppercase("library/Busybox".into())));
        assert_eq!(ImageName::parse("app:-x").map_err(|e| e.to_string()), Err("invalid tag \"-x\"".into()));
        let name = n("localhost:5000/a/b:1");
        assert_eq!((name.domain(), name.path(), name.tag()), ("localhost:5000", "a/b", Some("1")));
        assert_eq!(name.to_string(), "localhost:5000/a/b:1");
    }
}
