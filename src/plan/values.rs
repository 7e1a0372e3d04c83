//! Value checks and normalisation the planner applies after expansion: paths against WORKDIR,
//! image references, EXPOSE ports, STOPSIGNAL names and `--chmod` modes.

use crate::image::reference::{ImageName, ReferenceError};

/// Joins `p` onto `base` unless absolute, and cleans `.`/`..` (never above `/`). A trailing `/`
/// is dropped (callers keep the raw form where it matters).
pub fn join_path(base: &str, p: &str) -> String {
    let full = if p.starts_with('/') { p.to_string() } else { format!("{base}/{p}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in full.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Checks an image reference with Docker's grammar ([`ImageName`]), in the words BuildKit uses
/// (`invalid reference format: …`).
pub fn check_reference(r: &str) -> Result<(), String> {
    if r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid reference format: \"{r}\" contains whitespace"));
    }
    match ImageName::parse(r) {
        Ok(_) => Ok(()),
        Err(ReferenceError::Uppercase(_)) => {
            // Named as written, without tag or digest (`Busybox`, not `library/Busybox`).
            let name = r.split('@').next().unwrap_or(r);
            let repo = match name.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => repo,
                _ => name,
            };
            Err(format!("invalid reference format: repository name \"{repo}\" must be lowercase"))
        }
        Err(e) => Err(format!("invalid reference format: \"{r}\": {e}")),
    }
}

/// The key a `--build-context` name and a FROM / `--from` reference are compared by, as BuildKit
/// normalises them: Docker Hub's `docker.io/library/` and `docker.io/` prefixes and a `:latest`
/// tag are dropped, so `busybox`, `busybox:latest` and `docker.io/library/busybox` all match.
pub fn context_key(name: &str) -> String {
    let n = name.strip_prefix("docker.io/").or_else(|| name.strip_prefix("index.docker.io/")).unwrap_or(name);
    let n = n.strip_prefix("library/").filter(|_| n.len() != name.len()).unwrap_or(n);
    n.strip_suffix(":latest").unwrap_or(n).to_string()
}

/// `80`, `80/tcp`, `8000-8002/udp` → each port as `port/proto`, a range expanded into its ports
/// (Docker's nat.ParsePortSpecs, which BuildKit's EXPOSE uses: `8000/udp 8001/udp 8002/udp`).
pub fn expose_ports(p: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto \"{proto}\" in EXPOSE {p} (use tcp, udp or sctp)"));
    }
    let port = |n: &str| n.parse::<u16>().ok().filter(|n| *n > 0);
    let range = match ports.split_once('-') {
        Some((a, b)) => port(a).zip(port(b)).filter(|(a, b)| a <= b),
        None => port(ports).map(|n| (n, n)),
    };
    let Some((first, last)) = range else {
        return Err(format!(
            "invalid containerPort: {ports} (EXPOSE takes PORT[/PROTO] or FROM-TO[/PROTO], ports 1-65535)"
        ));
    };
    Ok((first..=last).map(|n| format!("{n}/{proto}")).collect())
}

const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE",
    "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
    "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
];

/// STOPSIGNAL takes a number or a signal name, with or without `SIG`, or `RTMIN+n`.
pub fn check_signal(s: &str) -> Result<(), String> {
    if s.parse::<u8>().is_ok_and(|n| n > 0 && n <= 64) {
        return Ok(());
    }
    let upper = s.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name)
        || name.strip_prefix("RTMIN+").is_some_and(|n| n.parse::<u8>().is_ok_and(|n| n <= 30))
    {
        return Ok(());
    }
    Err(format!("invalid signal: {s} (use a name such as SIGTERM or a number)"))
}

/// `--chmod`: octal (`755`, `0644`) or symbolic (`u+x,go-w`, `a=rX`, `g=u`).
pub fn check_chmod(m: &str) -> Result<(), String> {
    apply_chmod(m, 0o644, false).map(|_| ())
}

/// Applies a `--chmod` spec to `mode` (chmod(1) semantics): octal replaces the mode; symbolic
/// clauses `[ugoa]*([-+=]([rwxXst]*|[ugo]))+` adjust it, `X` meaning x for directories or when
/// someone already has x.
pub fn apply_chmod(spec: &str, mode: u32, is_dir: bool) -> Result<u32, String> {
    let bad =
        || format!("invalid chmod parameter: {spec} (use octal such as 0755 or symbolic such as u+x,go-w)");
    if spec.chars().all(|c| c.is_ascii_digit()) {
        return u32::from_str_radix(spec, 8).ok().filter(|v| *v <= 0o7777).ok_or_else(bad);
    }
    let mut m = mode & 0o7777;
    for clause in spec.split(',') {
        let who_len = clause.find(|c: char| !"ugoa".contains(c)).unwrap_or(clause.len());
        let who = &clause[..who_len];
        // Permission bits and special bits (setuid/setgid/sticky) each class may change.
        let (mask, special) = if who.is_empty() || who.contains('a') {
            (0o777, 0o7000)
        } else {
            who.chars().fold((0, 0), |(p, s), c| match c {
                'u' => (p | 0o700, s | 0o4000),
                'g' => (p | 0o070, s | 0o2000),
                _ => (p | 0o007, s | 0o1000),
            })
        };
        let mut rest = &clause[who_len..];
        if rest.is_empty() {
            return Err(bad());
        }
        while let Some(op) = rest.chars().next() {
            if !matches!(op, '+' | '-' | '=') {
                return Err(bad());
            }
            let end = rest[1..].find(['+', '-', '=']).map_or(rest.len(), |i| i + 1);
            let perms = &rest[1..end];
            let bits = match perms {
                // Copy another class's bits (`g=u`).
                "u" => ((m >> 6) & 0o7) * 0o111,
                "g" => ((m >> 3) & 0o7) * 0o111,
                "o" => (m & 0o7) * 0o111,
                _ => {
                    let mut bits = 0;
                    for c in perms.chars() {
                        bits |= match c {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || m & 0o111 != 0 => 0o111,
                            'X' => 0,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => return Err(bad()),
                        };
                    }
                    bits
                }
            };
            let bits = (bits & mask) | (bits & special);
            match op {
                '+' => m |= bits,
                '-' => m &= !bits,
                _ => m = (m & !(mask | special)) | bits,
            }
            rest = &rest[end..];
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_ports_signals_chmod() {
        assert_eq!(join_path("/", "app"), "/app");
        assert_eq!(join_path("/app", "../x/./y/"), "/x/y");
        assert_eq!(join_path("/a", "/b/../../c"), "/c");
        assert_eq!(expose_ports("80"), Ok(vec!["80/tcp".into()]));
        assert_eq!(expose_ports("053/UDP"), Ok(vec!["53/udp".into()]));
        assert_eq!(
            expose_ports("8000-8002"),
            Ok(vec!["8000/tcp".into(), "8001/tcp".into(), "8002/tcp".into()])
        );
        assert!(
            expose_ports("0").is_err() && expose_ports("70000").is_err() && expose_ports("80/icmp").is_err()
        );
        assert!(expose_ports("9-1").is_err());
        assert!(check_signal("SIGTERM").is_ok() && check_signal("kill").is_ok() && check_signal("9").is_ok());
        assert!(check_signal("SIGRTMIN+3").is_ok());
        assert!(check_signal("SIGFOO").is_err() && check_signal("0").is_err());
        for ok in ["755", "0644", "u+x", "go-w", "a=rX", "u+x,g+s", "ug=u"] {
            assert!(check_chmod(ok).is_ok(), "{ok}");
        }
        for bad in ["888", "77777", "u", "u+q", "x+r", ""] {
            assert!(check_chmod(bad).is_err(), "{bad}");
        }
        assert_eq!(apply_chmod("755", 0o600, false), Ok(0o755));
        assert_eq!(apply_chmod("a=rX", 0o600, true), Ok(0o555));
        assert_eq!(apply_chmod("a=rX", 0o600, false), Ok(0o444));
        assert_eq!(apply_chmod("u+s,g+w", 0o755, false), Ok(0o4775));
        assert_eq!(apply_chmod("o=", 0o777, false), Ok(0o770));
        assert_eq!(apply_chmod("+t", 0o755, true), Ok(0o1755));
        assert_eq!(apply_chmod("g+s", 0o755, true), Ok(0o2755));
        assert_eq!(apply_chmod("u+x,go-w", 0o664, false), Ok(0o744));
        assert_eq!(apply_chmod("g=u", 0o640, false), Ok(0o660));
        assert_eq!(apply_chmod("u=rw,o=", 0o4755, false), Ok(0o650), "= clears setuid too");
    }

    #[test]
    fn context_keys_match_like_buildkit() {
        for same in [
            "busybox",
            "busybox:latest",
            "docker.io/library/busybox",
            "docker.io/library/busybox:latest",
            "index.docker.io/library/busybox",
        ] {
            assert_eq!(context_key(same), "busybox", "{same}");
        }
        assert_eq!(context_key("docker.io/me/app:latest"), "me/app");
        assert_eq!(context_key("127.0.0.1:5000/base/busybox:latest"), "127.0.0.1:5000/base/busybox");
        assert_eq!(context_key("busybox:1.36"), "busybox:1.36");
        assert_eq!(
            context_key("library/busybox"),
            "library/busybox",
            "only Docker Hub's library/ is implied"
        );
    }

    #[test]
    fn references() {
        assert!(check_reference("busybox").is_ok());
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(check_reference(&format!("localhost:5000/a/b:tag@{digest}")).is_ok());
        // Docker's grammar: a short digest, a bad tag and a 64-hex name are refused.
        assert!(check_reference("localhost:5000/a/b:tag@sha256:abc").is_err());
        assert!(check_reference("app:-x").is_err());
        assert!(check_reference(&"a".repeat(64)).is_err());
        assert!(check_reference("Registry.Example.com/x").is_ok());
        assert!(check_reference("Busybox").is_err());
        assert!(check_reference("a b").is_err());
        assert!(check_reference("a$b").is_err());
    }
}
