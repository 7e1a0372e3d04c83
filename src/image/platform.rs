//! Platforms (`os/arch[/variant]`) as containerd's `platforms` package reads and normalises them, so
//! `--platform`, `FROM --platform=` and the `TARGETPLATFORM` family mean what they mean in buildx.

use std::fmt;

/// A normalised platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, `arm`, `386`, …
    pub arch: String,
    /// `v7`, `v8`, … or empty.
    pub variant: String,
}

impl Platform {
    /// The platform this binary runs on.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        let mut p = Platform { os: "linux".into(), arch: arch.into(), variant: String::new() };
        if p.arch == "arm" {
            p.variant = "v7".into();
        }
        p
    }

    /// Parses `linux/amd64`, `linux/arm/v7`, `arm64`, `linux`, `local` (containerd's rules,
    /// including architecture aliases such as `x86_64` and `aarch64`).
    pub fn parse(s: &str) -> Result<Platform, String> {
        let err = |why: &str| format!("invalid platform \"{s}\": {why}");
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s == "local" {
            return Ok(Platform::host());
        }
        let parts: Vec<String> = s.split('/').map(|p| p.to_lowercase()).collect();
        if parts.iter().any(|p| {
            p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        }) {
            return Err(err("each part must be non-empty and alphanumeric"));
        }
        let host = Platform::host();
        let p = match parts.as_slice() {
            [one] if is_known_os(one) => Platform { os: one.clone(), arch: host.arch, variant: host.variant },
            [one] => {
                let (arch, variant) = normalize_arch(one, "");
                Platform { os: host.os, arch, variant }
            }
            [os, arch] => {
                let (arch, variant) = normalize_arch(arch, "");
                Platform { os: normalize_os(os), arch, variant }
            }
            [os, arch, variant] => {
                let (arch, variant) = normalize_arch(arch, variant);
                Platform { os: normalize_os(os), arch, variant }
            }
            _ => return Err(err("expected os[/arch[/variant]]")),
        };
        if !is_known_os(&p.os) {
            return Err(err(&format!("unknown operating system \"{}\"", p.os)));
        }
        Ok(p)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

fn is_known_os(os: &str) -> bool {
    matches!(
        os,
        "aix"
            | "android"
            | "darwin"
            | "dragonfly"
            | "freebsd"
            | "hurd"
            | "illumos"
            | "ios"
            | "js"
            | "linux"
            | "nacl"
            | "netbsd"
            | "openbsd"
            | "plan9"
            | "solaris"
            | "windows"
            | "zos"
            | "wasip1"
    )
}

fn normalize_os(os: &str) -> String {
    if os == "macos" { "darwin".into() } else { os.into() }
}

/// containerd's `normalizeArch`.
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (a, v) = match (arch, variant) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8" | "") => ("arm64", ""),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", "5" | "6" | "8") => ("arm", ""),
        (a, v) => (a, v),
    };
    let v = match (a, variant) {
        ("arm", "5") => "v5",
        ("arm", "6") => "v6",
        ("arm", "8") => "v8",
        _ => v,
    };
    (a.to_string(), v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let p = |s: &str| Platform::parse(s).map(|p| p.to_string());
        assert_eq!(p("linux/amd64").as_deref(), Ok("linux/amd64"));
        assert_eq!(p("linux/x86_64").as_deref(), Ok("linux/amd64"));
        assert_eq!(p("linux/aarch64").as_deref(), Ok("linux/arm64"));
        assert_eq!(p("linux/arm64/v8").as_deref(), Ok("linux/arm64"));
        assert_eq!(p("linux/arm").as_deref(), Ok("linux/arm/v7"));
        assert_eq!(p("linux/armhf").as_deref(), Ok("linux/arm/v7"));
        assert_eq!(p("linux/arm/6").as_deref(), Ok("linux/arm/v6"));
        assert_eq!(p("Linux/AMD64").as_deref(), Ok("linux/amd64"));
        assert_eq!(p("windows/amd64").as_deref(), Ok("windows/amd64"));
        assert!(p("linux").is_ok_and(|s| s.starts_with("linux/")));
        assert!(p("").is_err());
        assert!(p("linux//amd64").is_err());
        assert!(p("beos/amd64").is_err());
        assert!(p("a/b/c/d").is_err());
        assert!(p("linux/$X").is_err());
    }
}
