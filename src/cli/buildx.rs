//! The `docker buildx build` flags scripts pass, read with buildx's meanings: `--network`,
//! `--allow`, `--add-host`, `--shm-size`, `--ulimit`, `--annotation`, and the attestation flags
//! (`--provenance`, `--sbom`, `--attest`), which hako accepts only when they ask for none.

use std::collections::{BTreeMap, BTreeSet};

use super::{BuildArgs, Failure};
use crate::sandbox::protocol::{StepOptions, Ulimit};

/// `--network` and `--allow`: the default network of RUN steps and the entitlements granted. As
/// buildx, `--network=host` also grants `network.host`.
pub fn network_and_entitlements(args: &BuildArgs) -> Result<(Option<String>, BTreeSet<String>), Failure> {
    let mut granted = BTreeSet::new();
    for e in &args.allow {
        match e.as_str() {
            "network.host" | "security.insecure" => {
                granted.insert(e.clone());
            }
            "" => {}
            other => {
                return Err(Failure::usage(format!(
                    "error: --allow {other}: unknown entitlement (hako knows network.host and security.insecure)"
                )));
            }
        }
    }
    let network = match args.network.as_deref() {
        None | Some("default" | "") => None,
        Some("none") => Some("none".to_string()),
        Some("host") => {
            granted.insert("network.host".into());
            Some("host".to_string())
        }
        Some(other) => {
            return Err(Failure::usage(format!(
                "error: --network {other}: network mode not supported (default, host or none)"
            )));
        }
    };
    Ok((network, granted))
}

/// `--add-host`, `--shm-size` and `--ulimit`.
pub fn step_options(args: &BuildArgs) -> Result<StepOptions, Failure> {
    let mut o = StepOptions::default();
    for h in &args.add_hosts {
        o.extra_hosts.push(add_host(h).map_err(|e| Failure::usage(format!("error: --add-host {h}: {e}")))?);
    }
    if let Some(s) = &args.shm_size {
        o.shm_size = ram_in_bytes(s).map_err(|e| Failure::usage(format!("error: --shm-size {s}: {e}")))?;
    }
    for u in &args.ulimits {
        let parsed = ulimit(u).map_err(|e| Failure::usage(format!("error: --ulimit {u}: {e}")))?;
        // A later one for the same resource replaces the earlier, as Docker's map does.
        o.ulimits.retain(|x| x.name != parsed.name);
        o.ulimits.push(parsed);
    }
    if args.isolation == super::args::IsolationMode::Chroot && (o.shm_size > 0 || !o.ulimits.is_empty()) {
        return Err(Failure::not_supported("--shm-size and --ulimit with --isolation=chroot"));
    }
    Ok(o)
}

/// `HOST:IP` (Docker also takes `HOST=IP`); the IP may be IPv6, so the name ends at the first `:`.
fn add_host(s: &str) -> Result<(String, String), String> {
    let (host, ip) =
        s.split_once('=').or_else(|| s.split_once(':')).ok_or_else(|| "expected HOST:IP".to_string())?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("invalid host name {host:?}"));
    }
    if ip == "host-gateway" {
        return Err("not supported yet: host-gateway (give the address)".into());
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<std::net::IpAddr>().map_err(|_| format!("invalid IP address {ip:?}"))?;
    Ok((host.to_string(), ip.to_string()))
}

/// Docker's `RAMInBytes`: a number with an optional binary unit (`b`, `k`, `m`, `g`, `t`, `p`,
/// optionally followed by `b` or `ib`, any case).
fn ram_in_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| "expected a size such as 64m or 1g".to_string())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit =
        unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty())).unwrap_or(&unit);
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        other => return Err(format!("unknown unit {other:?}")),
    };
    Ok((n * mult as f64) as u64)
}

/// Docker's `ParseUlimit`: `NAME=SOFT[:HARD]`, `-1` for unlimited, soft at most hard.
fn ulimit(s: &str) -> Result<Ulimit, String> {
    const NAMES: [&str; 15] = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let (name, values) = s.split_once('=').ok_or_else(|| "expected NAME=SOFT[:HARD]".to_string())?;
    if !NAMES.contains(&name) {
        return Err(format!("invalid ulimit type {name:?}"));
    }
    let value = |v: &str| -> Result<u64, String> {
        match v.parse::<i64>() {
            Ok(-1) => Ok(u64::MAX),
            Ok(n) if n >= 0 => Ok(n as u64),
            _ => Err(format!("invalid ulimit value {v:?}")),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        return Err(format!("the soft limit {soft} is above the hard limit {hard}"));
    }
    Ok(Ulimit { name: name.to_string(), soft, hard })
}

/// `--annotation [TYPE:]KEY=VALUE`: annotations of the image manifest (buildx's default type).
/// Index and descriptor annotations need an index hako does not write for one platform.
pub fn annotations(args: &BuildArgs) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for a in &args.annotations {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("error: --annotation {a}: expected KEY=VALUE")))?;
        let key = match k.split_once(':') {
            // `manifest:`, or `manifest[linux/amd64]:` for the one platform built.
            Some((typ, key)) if typ == "manifest" || typ.starts_with("manifest[") => key,
            Some((typ @ ("index" | "manifest-descriptor" | "index-descriptor"), _)) => {
                return Err(Failure::not_supported(&format!(
                    "--annotation {a}: {typ} annotations (manifest annotations are built)"
                )));
            }
            Some((typ, _)) if typ.starts_with("index[") || typ.contains("descriptor") => {
                return Err(Failure::not_supported(&format!("--annotation {a}: {typ} annotations")));
            }
            // A key with a colon of its own (`org.example:x`) is a plain key.
            _ => k,
        };
        if key.is_empty() {
            return Err(Failure::usage(format!("error: --annotation {a}: the key is empty")));
        }
        out.insert(key.to_string(), v.to_string());
    }
    Ok(out)
}

/// `--provenance`, `--sbom` and `--attest`: accepted when they ask for no attestation (what hako
/// makes); an attestation asked for is refused as not supported yet, never silently left out.
pub fn attestations(args: &BuildArgs) -> Result<(), Failure> {
    let wanted = |kind: &str, value: &str, flag: &str| -> Result<(), Failure> {
        if attestation_enabled(value).map_err(|e| Failure::usage(format!("error: {flag} {value}: {e}")))? {
            return Err(Failure::not_supported(&format!(
                "{flag}={value}: {kind} attestations (give {flag}=false)"
            )));
        }
        Ok(())
    };
    if let Some(v) = &args.provenance {
        wanted("provenance", v, "--provenance")?;
    }
    if let Some(v) = &args.sbom {
        wanted("SBOM", v, "--sbom")?;
    }
    for a in &args.attest {
        let mut typ = None;
        let mut rest = Vec::new();
        for field in a.split(',') {
            match field.split_once('=') {
                Some(("type", t)) => typ = Some(t),
                _ => rest.push(field),
            }
        }
        let kind = match typ {
            Some(t @ ("provenance" | "sbom")) => t,
            Some(t) => {
                return Err(Failure::usage(format!(
                    "error: --attest {a}: unknown type {t:?} (provenance or sbom)"
                )));
            }
            None => {
                return Err(Failure::usage(format!(
                    "error: --attest {a}: needs type=provenance or type=sbom"
                )));
            }
        };
        // Without other fields, `type=X` alone asks for the attestation.
        let value = if rest.is_empty() { "true".to_string() } else { rest.join(",") };
        wanted(kind, &value, "--attest")?;
    }
    Ok(())
}

/// Whether a buildx attestation value asks for one: Go's `ParseBool` values, else `KEY=VALUE`
/// fields where only `disabled=true` turns it off.
fn attestation_enabled(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => return Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "disabled" => return Ok(false),
        _ => {}
    }
    let mut enabled = true;
    for field in value.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("expected true, false or KEY=VALUE, not {field:?}"))?;
        if k == "disabled" {
            enabled = !matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True");
        }
    }
    Ok(enabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_hosts_and_ulimits_parse_as_docker_parses_them() {
        assert_eq!(ram_in_bytes("64m"), Ok(64 << 20));
        assert_eq!(ram_in_bytes("1g"), Ok(1 << 30));
        assert_eq!(ram_in_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(ram_in_bytes("512MB"), Ok(512 << 20));
        assert_eq!(ram_in_bytes("1024"), Ok(1024));
        assert!(ram_in_bytes("lots").is_err());
        assert_eq!(add_host("h:1.2.3.4"), Ok(("h".into(), "1.2.3.4".into())));
        assert_eq!(add_host("v6:::1"), Ok(("v6".into(), "::1".into())));
        assert_eq!(add_host("h=10.0.0.1"), Ok(("h".into(), "10.0.0.1".into())));
        assert!(add_host("h:nope").is_err());
        assert_eq!(ulimit("nofile=1024:2048"), Ok(Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 }));
        assert_eq!(ulimit("core=-1").map(|u| u.hard), Ok(u64::MAX));
        assert!(ulimit("nofile=2:1").is_err());
        assert!(ulimit("files=1").is_err());
    }

    #[test]
    fn attestations_off_are_accepted_and_on_are_not() {
        for off in ["false", "0", "disabled", "disabled=true", "mode=max,disabled=true"] {
            assert_eq!(attestation_enabled(off), Ok(false), "{off}");
        }
        for on in ["true", "1", "mode=max", "mode=min,disabled=false", "generator=x"] {
            assert_eq!(attestation_enabled(on), Ok(true), "{on}");
        }
    }
}
