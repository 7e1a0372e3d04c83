//! `RUN --mount=…` specifications with BuildKit's keys, defaults and checks. Values are expanded
//! by the caller's expander first (mount options see the ARG/ENV scope of their step).

use std::fmt;

use super::suggest::closest;

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    /// A directory from the context, a stage or an image (read-only unless `rw`).
    Bind,
    /// A persistent cache directory, kept across builds and never part of a layer.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A secret file (or env var) from `--secret`.
    Secret,
    /// An SSH agent socket from `--ssh`.
    Ssh,
}

impl MountType {
    const ALL: [(&str, MountType); 5] = [
        ("bind", MountType::Bind),
        ("cache", MountType::Cache),
        ("tmpfs", MountType::Tmpfs),
        ("secret", MountType::Secret),
        ("ssh", MountType::Ssh),
    ];

    /// The spelling used in Dockerfiles.
    pub fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, t)| *t == self).map_or("bind", |(n, _)| n)
    }
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Everyone uses the same directory at once.
    Shared,
    /// A second concurrent user gets a fresh directory.
    Private,
    /// Users take turns.
    Locked,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount type (default `bind`).
    pub kind: MountType,
    /// Stage or image to take the files from.
    pub from: Option<String>,
    /// Path inside `from` (or the context).
    pub source: Option<String>,
    /// Where the mount appears in the step.
    pub target: Option<String>,
    /// Read-only (bind, secret and ssh default to read-only; cache and tmpfs to read-write).
    pub readonly: bool,
    /// tmpfs size limit in bytes.
    pub size: Option<u64>,
    /// Cache or secret or ssh id.
    pub id: Option<String>,
    /// Cache sharing mode.
    pub sharing: Option<Sharing>,
    /// Secret/ssh must be provided.
    pub required: bool,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
    /// File mode (octal in the Dockerfile).
    pub mode: Option<u32>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
}

const ALL_KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Checks done when the Dockerfile is parsed, before expansion: `from` cannot use variables.
pub fn check_unexpanded(spec: &str) -> Result<(), String> {
    for field in csv_fields(spec)? {
        if let Some((key, value)) = field.split_once('=')
            && key.eq_ignore_ascii_case("from")
            && value.find('$').is_some_and(|i| i + 1 != value.len())
        {
            return Err(format!(
                "'{}' doesn't support variable expansion, define alias stage instead",
                key.to_lowercase()
            ));
        }
    }
    Ok(())
}

/// Parses a mount spec, expanding each value with `expand`.
pub fn parse_mount(spec: &str, expand: &dyn Fn(&str) -> Result<String, String>) -> Result<Mount, String> {
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: true,
        size: None,
        id: None,
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut ro_auto = true;
    let parse_bool =
        |key: &str, v: &str| go_parse_bool(v).ok_or_else(|| format!("invalid value for {key}: {v}"));
    for field in csv_fields(spec)? {
        let Some((key, raw)) = field.split_once('=') else {
            match field.to_lowercase().as_str() {
                "readonly" | "ro" => (m.readonly, ro_auto) = (true, false),
                "readwrite" | "rw" => (m.readonly, ro_auto) = (false, false),
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = true,
                "required" => return Err(format!("unexpected key 'required' for mount type '{}'", m.kind)),
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let key = key.to_lowercase();
        let value = expand(raw)?;
        match key.as_str() {
            "type" => {
                let lower = value.to_lowercase();
                m.kind =
                    MountType::ALL.iter().find(|(n, _)| *n == lower).map(|(_, t)| *t).ok_or_else(|| {
                        let mut e = format!("unsupported mount type \"{value}\"");
                        if let Some(s) = closest(&value, MountType::ALL.iter().map(|(n, _)| *n)) {
                            e.push_str(&format!(" (did you mean {s}?)"));
                        }
                        e
                    })?;
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => (m.readonly, ro_auto) = (parse_bool(&key, &value)?, false),
            "readwrite" | "rw" => (m.readonly, ro_auto) = (!parse_bool(&key, &value)?, false),
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                m.required = parse_bool(&key, &value)?;
            }
            "size" if m.kind == MountType::Tmpfs => {
                m.size =
                    Some(ram_in_bytes(&value).ok_or_else(|| format!("invalid value for size: {value}"))?);
            }
            "required" | "size" => return Err(format!("unexpected key '{key}' for mount type '{}'", m.kind)),
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(format!(
                            "unsupported sharing value \"{value}\" (use shared, private or locked)"
                        ));
                    }
                });
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8).map_err(|_| format!("invalid value {value} for mode"))?,
                );
            }
            "uid" => m.uid = Some(value.parse().map_err(|_| format!("invalid value {value} for uid"))?),
            "gid" => m.gid = Some(value.parse().map_err(|_| format!("invalid value {value} for gid"))?),
            "env" => m.env = Some(value),
            _ => {
                let mut e = format!("unexpected key '{key}' in '{field}'");
                if let Some(s) = closest(&key, ALL_KEYS) {
                    e.push_str(&format!(" (did you mean {s}?)"));
                }
                return Err(e);
            }
        }
    }
    if !matches!(m.kind, MountType::Secret | MountType::Ssh | MountType::Cache) {
        for (name, set) in [("mode", m.mode.is_some()), ("uid", m.uid.is_some()), ("gid", m.gid.is_some())] {
            if set {
                return Err(format!("{name} not allowed for \"{}\" type mounts", m.kind));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err("secret mount should not have a from".into());
        }
        if m.sharing.is_some() {
            return Err("secret mount should not define sharing".into());
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() {
            return Err("invalid secret mount. one of source, target required".into());
        }
        if m.source.is_some() && m.id.is_some() {
            return Err("both source and id can't be set".into());
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!("invalid cache sharing set for {} mount", m.kind));
    }
    Ok(m)
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: `64m`, `1.5g`, `512KiB`, `100` — binary multiples.
pub fn ram_in_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let num_len = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(num_len);
    let value: f64 = num.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let exp = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return None,
    };
    let bytes = value * 1024f64.powi(exp);
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Splits one CSV record (RFC 4180 quoting: `"a,b"`, `""` for a quote), as BuildKit reads mounts.
fn csv_fields(spec: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = spec.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => {
                        return Err(format!("failed to parse csv mounts: unterminated quote in {spec:?}"));
                    }
                }
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(format!("failed to parse csv mounts: extraneous \" in field of {spec:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err(format!(
                        "failed to parse csv mounts: bare \" in non-quoted field of {spec:?}"
                    ));
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(spec: &str) -> Result<Mount, String> {
        parse_mount(spec, &|v| Ok(v.to_string()))
    }

    #[test]
    fn defaults_by_type() {
        let m = p("target=/x").expect("bind");
        assert_eq!((m.kind, m.readonly), (MountType::Bind, true));
        let m = p("type=cache,target=/root/.cache,sharing=locked,id=c,mode=0755,uid=1000").expect("cache");
        assert_eq!(
            (m.kind, m.readonly, m.sharing, m.mode, m.uid),
            (MountType::Cache, false, Some(Sharing::Locked), Some(0o755), Some(1000))
        );
        let m = p("type=tmpfs,target=/t,size=64m").expect("tmpfs");
        assert_eq!(m.size, Some(64 << 20));
        let m = p("type=secret,id=tok,env=TOKEN,required").expect("secret");
        assert!(m.required && m.readonly);
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        assert!(p("type=bind,target=/x,rw").is_ok_and(|m| !m.readonly));
        assert!(p("\"type=bind\",\"target=/a,b\"").is_ok_and(|m| m.target.as_deref() == Some("/a,b")));
    }

    #[test]
    fn rejects_like_buildkit() {
        let cases = [
            ("type=bnd", "unsupported mount type \"bnd\" (did you mean bind?)"),
            ("type=bind,mode=0700", "mode not allowed for \"bind\" type mounts"),
            ("type=bind,required", "unexpected key 'required' for mount type 'bind'"),
            ("type=cache,size=1m", "unexpected key 'size' for mount type 'cache'"),
            ("type=secret", "invalid secret mount. one of source, target required"),
            ("type=secret,id=a,source=b", "both source and id can't be set"),
            ("type=secret,id=a,from=x", "secret mount should not have a from"),
            ("type=bind,sharing=shared", "invalid cache sharing set for bind mount"),
            (
                "type=cache,sharing=maybe",
                "unsupported sharing value \"maybe\" (use shared, private or locked)",
            ),
            ("type=cache,uid=x", "invalid value x for uid"),
            ("type=cache,targte=/x", "unexpected key 'targte' in 'targte=/x' (did you mean target?)"),
            ("type=cache,ro=maybe", "invalid value for ro: maybe"),
            ("bogus", "invalid field 'bogus' must be a key=value pair"),
        ];
        for (spec, msg) in cases {
            assert_eq!(p(spec).unwrap_err(), msg, "{spec}");
        }
        assert!(p("a\"b").is_err());
        assert!(p("\"open").is_err());
    }

    #[test]
    fn from_cannot_use_variables() {
        assert!(check_unexpanded("type=bind,from=$STAGE").is_err());
        assert!(check_unexpanded("type=bind,from=stage$").is_ok());
        assert!(check_unexpanded("type=bind,from=stage,target=$X").is_ok());
    }

    #[test]
    fn ram_units() {
        assert_eq!(ram_in_bytes("100"), Some(100));
        assert_eq!(ram_in_bytes("1k"), Some(1024));
        assert_eq!(ram_in_bytes("1.5GiB"), Some(1536 << 20));
        assert_eq!(ram_in_bytes("1x"), None);
        assert_eq!(ram_in_bytes(""), None);
    }
}
