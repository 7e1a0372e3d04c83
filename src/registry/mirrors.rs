//! Pulls through mirrors: each mirror of the registry (`config`) in turn, the same repository,
//! tag and digest on the mirror's host, then the registry itself. Only reads go to mirrors.

use oci_client::Reference;

use super::{Registry, RegistryError, Result, Session};

impl Registry {
    /// Runs `f` on each mirror of `reference`'s registry in turn, then on the registry itself:
    /// the first result `found` accepts wins. The registry's own failure says what the mirrors
    /// answered.
    pub(super) fn through_mirrors<T>(
        &self,
        reference: &str,
        found: impl Fn(&T) -> bool,
        mut f: impl FnMut(Session) -> Result<T>,
    ) -> Result<T> {
        let origin = Registry::parse(reference)?;
        let mut missed = Vec::new();
        for mirror in self.config.mirrors(origin.registry()) {
            let r = on_host(&origin, &mirror.host);
            match self.session_at(r, &self.config.mirror_transport(mirror)).and_then(&mut f) {
                Ok(v) if found(&v) => return Ok(v),
                Ok(_) => missed.push(format!("not found on {}", mirror.host)),
                // The reason names the mirror already.
                Err(RegistryError::Remote { reason, .. }) => missed.push(reason),
                Err(e) => missed.push(format!("{}: {e}", mirror.host)),
            }
        }
        let transport = self.config.transport(origin.resolve_registry());
        self.session_at(origin, &transport).and_then(f).map_err(|e| match e {
            RegistryError::Remote { action, reference, reason, hint } if !missed.is_empty() => {
                RegistryError::Remote {
                    action,
                    reference,
                    reason: format!("{reason} (mirrors tried first: {})", missed.join("; ")),
                    hint,
                }
            }
            other => other,
        })
    }
}

/// `r` (repository, tag, digest) on another host: a mirror.
fn on_host(r: &Reference, host: &str) -> Reference {
    let (host, repository) = (host.to_string(), r.repository().to_string());
    match (r.tag(), r.digest()) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(host, repository, tag.to_string(), digest.to_string())
        }
        (None, Some(digest)) => Reference::with_digest(host, repository, digest.to_string()),
        (tag, None) => Reference::with_tag(host, repository, tag.unwrap_or("latest").to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_gets_the_same_repository_tag_and_digest() -> Result<()> {
        let hex = "c".repeat(64);
        let r = on_host(&Registry::parse("busybox")?, "mirror.example:5000");
        assert_eq!(r.to_string(), "mirror.example:5000/library/busybox:latest");
        let r = on_host(&Registry::parse(&format!("reg.example/a/b:1@sha256:{hex}"))?, "m");
        assert_eq!((r.registry(), r.repository(), r.tag()), ("m", "a/b", Some("1")));
        assert_eq!(r.digest(), Some(format!("sha256:{hex}").as_str()));
        Ok(())
    }
}
