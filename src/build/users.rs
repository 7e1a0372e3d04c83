//! `--chown` and `USER` names resolved through the image's own `/etc/passwd` and `/etc/group`, as
//! Docker does: numbers are taken as they are, names must exist in the image.

/// A `user[:group]` spec that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The name is not in the image's passwd/group file.
    #[error("unable to find {what} {name:?} in the image's {file}")]
    Unknown {
        /// `user` or `group`.
        what: &'static str,
        /// The name.
        name: String,
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
    },
    /// The spec is empty or malformed.
    #[error("invalid user spec {0:?}: expected USER[:GROUP] with names or numeric ids")]
    Invalid(String),
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`) to numeric ids, as BuildKit's file
/// operations do (`--chown`, WORKDIR's owner): without a group, a uid's group is the same
/// number and a name's is its passwd group. `passwd`/`group` are the files' contents, or `None`
/// when the image has none.
pub fn resolve_chown(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<(u32, u32), UserError> {
    let (user, grp) = split_spec(spec)?;
    let unknown = || UserError::Unknown { what: "user", name: user.to_string(), file: "/etc/passwd" };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => {
            (lookup(passwd, user, 2).ok_or_else(unknown)?, lookup(passwd, user, 3).ok_or_else(unknown)?)
        }
    };
    let gid = match grp {
        None => primary,
        Some(g) => group_id(group, g)?,
    };
    Ok((uid, gid))
}

/// Resolves a `USER` spec for running a step, with runc's rules (which Docker and BuildKit use):
/// a name must be in `/etc/passwd` and brings its primary group and the groups that list it as a
/// member; a numeric uid need not exist (its group is then the passwd entry's, or 0);
/// `user:group` sets the primary group and no other. The supplementary groups always hold the
/// primary one too, as BuildKit and containerd set them since CVE-2023-25173 (else a step could
/// shed its primary group and reach files denied to that group).
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u32, u32, Vec<u32>), UserError> {
    let (user, grp) = split_spec(spec)?;
    let entry = passwd.and_then(|p| {
        p.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)))
    });
    let (name, uid, mut gid) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => {
            let uid = f[2].parse().map_err(|_| UserError::Invalid(spec.to_string()))?;
            let gid = f[3].parse().map_err(|_| UserError::Invalid(spec.to_string()))?;
            (Some(f[0]), uid, gid)
        }
        (None, Ok(n)) => (None, n, 0),
        (None, Err(_)) => {
            return Err(UserError::Unknown { what: "user", name: user.to_string(), file: "/etc/passwd" });
        }
    };
    let mut groups = Vec::new();
    match grp {
        Some(g) => {
            gid = group_id(group, g)?;
        }
        None => {
            if let (Some(name), Some(group)) = (name, group) {
                for line in group.lines() {
                    let f: Vec<&str> = line.split(':').collect();
                    if f.len() > 3
                        && f[3].split(',').any(|m| m == name)
                        && let Ok(id) = f[2].parse::<u32>()
                        && id != gid
                        && !groups.contains(&id)
                    {
                        groups.push(id);
                    }
                }
            }
        }
    }
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    Ok((uid, gid, groups))
}

/// `user[:group]`, both parts non-empty.
fn split_spec(spec: &str) -> Result<(&str, Option<&str>), UserError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || grp == Some("") {
        return Err(UserError::Invalid(spec.to_string()));
    }
    Ok((user, grp))
}

/// A group given as a number, or as a name in the image's `/etc/group`.
fn group_id(group: Option<&str>, g: &str) -> Result<u32, UserError> {
    match g.parse::<u32>() {
        Ok(n) => Ok(n),
        Err(_) => lookup(group, g, 2).ok_or_else(|| UserError::Unknown {
            what: "group",
            name: g.to_string(),
            file: "/etc/group",
        }),
    }
}

/// Field `field` (the id) of the line whose first field is `name`.
fn lookup(file: Option<&str>, name: &str, field: usize) -> Option<u32> {
    file?.lines().find_map(|line| {
        let parts: Vec<&str> = line.split(':').collect();
        (parts.first() == Some(&name)).then(|| parts.get(field)?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nwww:x:33:44::/var/www:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\n";

    #[test]
    fn runc_user_rules() {
        let r = |s: &str| resolve_user(s, Some(PASSWD), Some(GROUP));
        // The primary group is among the supplementary ones, as BuildKit sets them.
        assert_eq!(r("app"), Ok((1000, 1000, vec![1000, 50])));
        assert_eq!(r("1000"), Ok((1000, 1000, vec![1000, 50])), "a uid in passwd brings its groups");
        assert_eq!(r("4242"), Ok((4242, 0, vec![0])), "an unknown uid runs with group 0");
        assert_eq!(r("app:root"), Ok((1000, 0, vec![0])));
        assert_eq!(r("0:5"), Ok((0, 5, vec![5])));
        assert_eq!(r("root"), Ok((0, 0, vec![0])));
        assert!(matches!(r("nobody"), Err(UserError::Unknown { what: "user", .. })));
        assert!(matches!(r("app:wheel"), Err(UserError::Unknown { what: "group", .. })));
        assert!(matches!(resolve_user("app", None, None), Err(UserError::Unknown { .. })));
    }

    #[test]
    fn docker_chown_rules() {
        let r = |s: &str| resolve_chown(s, Some(PASSWD), Some(GROUP));
        assert_eq!(r("1000"), Ok((1000, 1000)));
        assert_eq!(r("55:66"), Ok((55, 66)));
        assert_eq!(r("app"), Ok((1000, 1000)));
        assert_eq!(r("app:staff"), Ok((1000, 50)));
        assert_eq!(r("www"), Ok((33, 44)), "a name without a group takes its passwd group (BuildKit)");
        assert_eq!(r("0:staff"), Ok((0, 50)));
        assert_eq!(
            r("nobody"),
            Err(UserError::Unknown { what: "user", name: "nobody".into(), file: "/etc/passwd" })
        );
        assert!(matches!(r("app:wheel"), Err(UserError::Unknown { what: "group", .. })));
        assert!(matches!(r(""), Err(UserError::Invalid(_))));
        assert!(matches!(r("app:"), Err(UserError::Invalid(_))));
        assert!(matches!(resolve_chown("app", None, None), Err(UserError::Unknown { .. })));
    }
}
