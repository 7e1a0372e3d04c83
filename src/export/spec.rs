//! The buildx `--output` syntax: one CSV record of `key=value` fields (a field or a value may be
//! double-quoted, so `"name=a,b"` and `name="a,b"` both carry two names), with the shorthands
//! `-o DIR` (`type=local,dest=DIR`) and `-o -` (`type=tar,dest=-`).
//!
//! As in buildx, keys are case-insensitive and trimmed, values are taken verbatim, a repeated key's
//! last value wins, and `type=registry` is `type=image,push=true`. Unlike BuildKit, which ignores
//! options it does not know, every option hako does not implement is an error, so nothing the user
//! asked for is silently dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::layer::compress::ExportCompression;

/// A parsed `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// An OCI image layout: a tar (to `dest`, or stdout when `dest` is none) or, with `tar=false`,
    /// a directory (`dest` then always set).
    Oci {
        /// The file or directory; none for stdout.
        dest: Option<PathBuf>,
        /// Write a tar (default) rather than a directory.
        tar: bool,
        /// The `name=` option as given (comma-separated names; see [`OutputSpec::names`]).
        name: Option<String>,
        /// `compression=`, `compression-level=`, `force-compression=`.
        compression: ExportCompression,
        /// The options every image output takes.
        image: ImageOptions,
    },
    /// A `docker load` archive, to `dest` or stdout.
    Docker {
        /// The file; none for stdout.
        dest: Option<PathBuf>,
        /// The `name=` option as given.
        name: Option<String>,
        /// `compression=`, `compression-level=`, `force-compression=`.
        compression: ExportCompression,
        /// The options every image output takes.
        image: ImageOptions,
    },
    /// The final stage's filesystem, into a directory.
    Local {
        /// The directory.
        dest: PathBuf,
    },
    /// The final stage's filesystem as a tar, to `dest` or stdout.
    Tar {
        /// The file; none for stdout.
        dest: Option<PathBuf>,
    },
    /// An image pushed to a registry (`type=registry`, or `type=image` with `push=true`).
    Registry {
        /// The `name=` option as given.
        name: Option<String>,
        /// Always true.
        push: bool,
        /// `compression=`, `compression-level=`, `force-compression=`.
        compression: ExportCompression,
        /// The options every image output takes.
        image: ImageOptions,
    },
    /// An image kept in hako's store (`type=image` without push).
    Image {
        /// The `name=` option as given.
        name: Option<String>,
        /// Always false.
        push: bool,
        /// The options every image output takes.
        image: ImageOptions,
    },
}

/// The options of the outputs that write an image (OCI and docker archives, registries, the
/// store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOptions {
    /// `rewrite-timestamp=`: `Some(false)` keeps file times as made (see
    /// [`OutputSpec::rewrite_timestamp`]).
    pub rewrite_timestamp: Option<bool>,
    /// `annotation.KEY=VALUE`, `annotation-manifest.KEY=VALUE` (also with the one platform built,
    /// `annotation-manifest[linux/amd64].KEY`): annotations of the image manifest, as buildx's
    /// `--annotation` gives them.
    pub annotations: BTreeMap<String, String>,
}

impl OutputSpec {
    /// The options of an output that writes an image; none for the others.
    pub fn image_options(&self) -> Option<&ImageOptions> {
        match self {
            OutputSpec::Oci { image, .. }
            | OutputSpec::Docker { image, .. }
            | OutputSpec::Registry { image, .. }
            | OutputSpec::Image { image, .. } => Some(image),
            OutputSpec::Local { .. } | OutputSpec::Tar { .. } => None,
        }
    }

    /// buildx's `rewrite-timestamp` for image outputs. hako clamps file times in new layers to
    /// the build's epoch by default (what `rewrite-timestamp=true` asks of BuildKit), when the
    /// layers are made; `false` asks for the real times. `None`: not given.
    pub fn rewrite_timestamp(&self) -> Option<bool> {
        self.image_options().and_then(|o| o.rewrite_timestamp)
    }

    /// How the output wants its layers compressed: for the outputs that ship compressed layers
    /// (OCI and docker archives, registries), none for the others.
    pub fn compression(&self) -> Option<ExportCompression> {
        match self {
            OutputSpec::Oci { compression, .. }
            | OutputSpec::Docker { compression, .. }
            | OutputSpec::Registry { compression, .. } => Some(*compression),
            OutputSpec::Image { .. } | OutputSpec::Local { .. } | OutputSpec::Tar { .. } => None,
        }
    }

    /// The file an image archive (OCI or docker, not a directory) goes to; none for stdout
    /// and the other outputs.
    pub fn archive_file(&self) -> Option<&std::path::Path> {
        match self {
            OutputSpec::Oci { dest: Some(d), tar: true, .. } | OutputSpec::Docker { dest: Some(d), .. } => {
                Some(d.as_path()).filter(|d| d.as_os_str() != "-")
            }
            _ => None,
        }
    }

    /// The image names of the `name=` option (split at commas, blanks dropped).
    pub fn names(&self) -> Vec<String> {
        let name = match self {
            OutputSpec::Oci { name, .. }
            | OutputSpec::Docker { name, .. }
            | OutputSpec::Registry { name, .. }
            | OutputSpec::Image { name, .. } => name.as_deref(),
            OutputSpec::Local { .. } | OutputSpec::Tar { .. } => None,
        };
        name.unwrap_or("").split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect()
    }
}

/// The options of outputs that ship compressed layers.
const COMPRESSION_KEYS: [&str; 3] = ["compression", "compression-level", "force-compression"];

/// Output types buildx accepts.
const TYPES: &str = "oci, docker, local, tar, image, registry";

/// The annotation key of output option `option` when it annotates the image manifest:
/// `annotation.KEY`, `annotation-manifest.KEY`, or `annotation-manifest[PLATFORM].KEY` (hako builds
/// one platform, so every platform named is it).
fn manifest_annotation(option: &str) -> Option<&str> {
    if let Some(key) = option.strip_prefix("annotation.") {
        return Some(key);
    }
    let rest = option.strip_prefix("annotation-manifest")?;
    let rest = match rest.strip_prefix('[') {
        Some(r) => &r[r.find(']')? + 1..],
        None => rest,
    };
    rest.strip_prefix('.')
}

/// Parses one `--output` value.
pub fn parse_output(s: &str) -> Result<OutputSpec, String> {
    let fields = split_csv(s)?;
    if fields.len() == 1 && fields[0] == s && !s.starts_with("type=") {
        // buildx: a lone field that is not `type=…` is a destination.
        return Ok(if s == "-" {
            OutputSpec::Tar { dest: None }
        } else {
            OutputSpec::Local { dest: s.into() }
        });
    }
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    for field in &fields {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!("invalid output option {field:?} in {s:?}: expected key=value"));
        };
        attrs.insert(key.trim().to_ascii_lowercase(), value.to_string());
    }
    let Some(kind) = attrs.remove("type") else {
        return Err(format!("output {s:?} has no type= (one of {TYPES})"));
    };
    let mut o = Opts { kind: &kind, attrs };
    let spec = match kind.as_str() {
        "oci" => {
            let dest = o.dest();
            let tar = o.bool("tar")?.unwrap_or(true);
            let name = o.name();
            let compression = o.compression()?;
            let image = o.image_options()?;
            if !tar && dest.is_none() {
                return Err("type=oci,tar=false needs dest= (the layout directory)".into());
            }
            OutputSpec::Oci { dest, tar, name, compression, image }
        }
        "docker" => {
            let dest = o.dest();
            let name = o.name();
            let compression = o.compression()?;
            let image = o.image_options()?;
            OutputSpec::Docker { dest, name, compression, image }
        }
        "local" => match o.attrs.remove("dest").filter(|d| !d.is_empty()) {
            None => return Err("type=local needs dest= (a directory)".into()),
            Some(d) if d == "-" => {
                return Err("type=local writes a directory; use type=tar,dest=- for stdout".into());
            }
            Some(d) => OutputSpec::Local { dest: d.into() },
        },
        "tar" => OutputSpec::Tar { dest: o.dest() },
        "image" | "registry" => {
            let push = o.bool("push")?.unwrap_or(kind == "registry");
            let name = o.name();
            let image = o.image_options()?;
            if push {
                let compression = o.compression()?;
                OutputSpec::Registry { name, push, compression, image }
            } else {
                if let Some(key) = COMPRESSION_KEYS.iter().find(|k| o.attrs.contains_key(**k)) {
                    return Err(format!(
                        "output option {key} needs push=true: the store keeps layers uncompressed"
                    ));
                }
                OutputSpec::Image { name, push, image }
            }
        }
        "cacheonly" => return Err("not supported yet: output type cacheonly".into()),
        other => return Err(format!("unknown output type {other:?}: valid types are {TYPES}")),
    };
    o.finish()?;
    Ok(spec)
}

/// The options of one output, consumed as they are interpreted; what is left is refused.
struct Opts<'a> {
    kind: &'a str,
    attrs: BTreeMap<String, String>,
}

impl Opts<'_> {
    /// `dest`, none when absent, empty or `-` (stdout).
    fn dest(&mut self) -> Option<PathBuf> {
        self.attrs.remove("dest").filter(|d| !d.is_empty() && d != "-").map(PathBuf::from)
    }

    fn name(&mut self) -> Option<String> {
        self.attrs.remove("name").filter(|n| !n.trim().is_empty())
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, String> {
        self.attrs.remove(key).map(|v| parse_bool(key, &v)).transpose()
    }

    /// `compression`, `compression-level` and `force-compression`.
    fn compression(&mut self) -> Result<ExportCompression, String> {
        let [c, level, force] = COMPRESSION_KEYS.map(|k| self.attrs.remove(k));
        ExportCompression::parse(c.as_deref(), level.as_deref(), force.as_deref()).map_err(|e| e.to_string())
    }

    /// The options of image outputs: OCI media types (the only ones hako writes),
    /// `rewrite-timestamp` and the manifest's annotations. Annotations of an index or of a
    /// descriptor are left, so refused: hako writes no index of its own for one platform.
    fn image_options(&mut self) -> Result<ImageOptions, String> {
        if self.bool("oci-mediatypes")? == Some(false) {
            return Err(
                "not supported yet: output option oci-mediatypes=false (hako writes OCI media types)".into(),
            );
        }
        let rewrite_timestamp = self.bool("rewrite-timestamp")?;
        let mut annotations = BTreeMap::new();
        let keys: Vec<String> = self.attrs.keys().filter(|k| k.starts_with("annotation")).cloned().collect();
        for option in keys {
            let Some(key) = manifest_annotation(&option) else { continue };
            if key.is_empty() {
                return Err(format!("output option {option}: the annotation's key is empty"));
            }
            let key = key.to_string();
            if let Some(value) = self.attrs.remove(&option) {
                annotations.insert(key, value);
            }
        }
        Ok(ImageOptions { rewrite_timestamp, annotations })
    }

    /// Refuses whatever was not consumed.
    fn finish(self) -> Result<(), String> {
        let Some(key) = self.attrs.keys().next() else { return Ok(()) };
        let elsewhere: &[&str] = match key.as_str() {
            "dest" => &["oci", "docker", "local", "tar"],
            "name" | "oci-mediatypes" | "rewrite-timestamp" => &["oci", "docker", "image", "registry"],
            "push" => &["image", "registry"],
            "compression" | "compression-level" | "force-compression" => {
                &["oci", "docker", "image", "registry"]
            }
            "tar" => &["oci"],
            k if manifest_annotation(k).is_some() => &["oci", "docker", "image", "registry"],
            _ => &[],
        };
        let not_here = !elsewhere.is_empty() && !elsewhere.contains(&self.kind);
        // BuildKit's docker exporter takes `tar`; hako's does not yet.
        if not_here && !(key == "tar" && self.kind == "docker") {
            return Err(format!("output option {key} does not apply to type={}", self.kind));
        }
        Err(format!("not supported yet: output option {key}"))
    }
}

/// Go's `strconv.ParseBool`, which buildx and BuildKit use.
fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid value {v:?} for output option {key}: expected true or false")),
    }
}

/// Splits one CSV record as Go's `encoding/csv` does (a field that starts with `"` runs to the
/// closing quote, `""` inside being a quote), and also accepts a quoted value after `key=`.
fn split_csv(s: &str) -> Result<Vec<String>, String> {
    if s.is_empty() {
        return Err("empty output specification".into());
    }
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        let mut quoted_value = false;
        if chars.peek() == Some(&'"') {
            chars.next();
            read_quoted(&mut chars, &mut field, s)?;
            quoted_value = true;
        }
        loop {
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => break,
                Some(c) if quoted_value => {
                    return Err(format!("unexpected {c:?} after a closing quote in output {s:?}"));
                }
                Some('"') if field.ends_with('=') && field.matches('=').count() == 1 => {
                    read_quoted(&mut chars, &mut field, s)?;
                    quoted_value = true;
                }
                Some('"') => {
                    return Err(format!("stray quote in output {s:?}: quote a whole field or value"));
                }
                Some('\n' | '\r') => return Err(format!("line break in output {s:?}")),
                Some(c) => field.push(c),
            }
        }
        fields.push(field);
    }
}

/// Reads up to (and consumes) the closing quote.
fn read_quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    field: &mut String,
    s: &str,
) -> Result<(), String> {
    loop {
        match chars.next() {
            None => return Err(format!("unterminated quote in output {s:?}")),
            Some('"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            Some('"') => return Ok(()),
            Some(c) => field.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Compression;

    /// The default: gzip at its default level, without force.
    fn gz() -> ExportCompression {
        ExportCompression::default()
    }

    fn ok(s: &str) -> OutputSpec {
        parse_output(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        match parse_output(s) {
            Ok(spec) => panic!("{s} parsed as {spec:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn shorthands() {
        assert_eq!(ok("out"), OutputSpec::Local { dest: "out".into() });
        assert_eq!(ok("./a b/c"), OutputSpec::Local { dest: "./a b/c".into() });
        assert_eq!(ok("-"), OutputSpec::Tar { dest: None });
        // As in buildx, any lone field not starting with `type=` is a path.
        assert_eq!(ok("dest=x"), OutputSpec::Local { dest: "dest=x".into() });
    }

    #[test]
    fn oci() {
        let stdout = OutputSpec::Oci {
            dest: None,
            tar: true,
            name: None,
            compression: gz(),
            image: Default::default(),
        };
        assert_eq!(ok("type=oci"), stdout);
        assert_eq!(ok("type=oci,dest=-"), stdout);
        assert_eq!(
            ok("type=oci,dest=out.tar,name=app:1"),
            OutputSpec::Oci {
                dest: Some("out.tar".into()),
                tar: true,
                name: Some("app:1".into()),
                compression: gz(),
                image: ImageOptions::default()
            }
        );
        assert_eq!(
            ok("type=oci,dest=dir,tar=false,compression=zstd,oci-mediatypes=true,rewrite-timestamp=false"),
            OutputSpec::Oci {
                dest: Some("dir".into()),
                tar: false,
                name: None,
                compression: ExportCompression::from(Compression::Zstd),
                image: ImageOptions { rewrite_timestamp: Some(false), ..Default::default() }
            }
        );
        assert_eq!(ok("type=docker,rewrite-timestamp=true").rewrite_timestamp(), Some(true));
        assert_eq!(ok("type=image,rewrite-timestamp=0").rewrite_timestamp(), Some(false));
        assert_eq!(
            ok(" TYPE =oci,Tar=0,dest=d"),
            OutputSpec::Oci {
                dest: Some("d".into()),
                tar: false,
                name: None,
                compression: gz(),
                image: ImageOptions::default()
            }
        );
    }

    #[test]
    fn manifest_annotations_as_buildx_names_them() {
        let spec = ok("type=oci,annotation.org.opencontainers.image.title=hako,\
            annotation-manifest.a=1,annotation-manifest[linux/amd64].b=2,\"annotation.c=x,y\"");
        let want: BTreeMap<String, String> =
            [("org.opencontainers.image.title", "hako"), ("a", "1"), ("b", "2"), ("c", "x,y")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(spec.image_options().map(|o| &o.annotations), Some(&want));
        for s in [
            "type=docker,annotation.a=1",
            "type=registry,name=r/a,annotation.a=1",
            "type=image,annotation.a=1",
        ] {
            assert_eq!(ok(s).image_options().map(|o| o.annotations.len()), Some(1), "{s}");
        }
        assert_eq!(ok("type=tar").image_options(), None);
    }

    #[test]
    fn compression_options_of_the_outputs_that_ship_layers() {
        let want = |c, l, f| ExportCompression::parse(c, l, f).expect("valid");
        let zstd9 = want(Some("zstd"), Some("9"), Some("true"));
        for s in [
            "type=oci,compression=zstd,compression-level=9,force-compression=true",
            "type=docker,compression=zstd,compression-level=9,force-compression=1",
            "type=registry,name=r/a,compression=zstd,compression-level=9,force-compression=",
            "type=image,name=r/a,push=true,Compression=zstd,compression-level= 9,force-compression=T",
        ] {
            assert_eq!(ok(s).compression(), Some(zstd9), "{s}");
        }
        assert_eq!(ok("type=oci,compression-level=1").compression(), Some(want(None, Some("1"), None)));
        assert_eq!(ok("type=docker").compression(), Some(gz()));
        assert_eq!(ok("type=image,name=a").compression(), None);
        assert_eq!(ok("type=local,dest=d").compression(), None);
    }

    #[test]
    fn quoted_names() {
        for s in [r#"type=oci,"name=a:1,b:2""#, r#"type=oci,name="a:1,b:2""#, r#""type=oci","name=a:1,b:2""#]
        {
            let spec = ok(s);
            assert_eq!(spec.names(), ["a:1", "b:2"], "{s}");
        }
        assert_eq!(
            ok(r#"type=oci,dest="x,""y""",tar=false"#),
            OutputSpec::Oci {
                dest: Some(r#"x,"y""#.into()),
                tar: false,
                name: None,
                compression: gz(),
                image: ImageOptions::default()
            }
        );
        assert_eq!(ok(r#"type=image,"name= a , ,b""#).names(), ["a", "b"]);
        assert!(ok("type=tar").names().is_empty());
    }

    #[test]
    fn docker_local_tar() {
        assert_eq!(
            ok("type=docker"),
            OutputSpec::Docker { dest: None, name: None, compression: gz(), image: ImageOptions::default() }
        );
        assert_eq!(
            ok("type=docker,dest=img.tar,name=app"),
            OutputSpec::Docker {
                dest: Some("img.tar".into()),
                name: Some("app".into()),
                compression: gz(),
                image: ImageOptions::default()
            }
        );
        assert_eq!(ok("type=local,dest=out"), OutputSpec::Local { dest: "out".into() });
        assert_eq!(ok("type=tar,dest=fs.tar"), OutputSpec::Tar { dest: Some("fs.tar".into()) });
        assert_eq!(ok("type=tar"), OutputSpec::Tar { dest: None });
        assert_eq!(ok("type=tar,dest=-"), OutputSpec::Tar { dest: None });
    }

    #[test]
    fn registry_and_image() {
        let reg = |name: &str| OutputSpec::Registry {
            name: Some(name.into()),
            push: true,
            compression: gz(),
            image: ImageOptions::default(),
        };
        let img = |name: &str| OutputSpec::Image {
            name: Some(name.into()),
            push: false,
            image: ImageOptions::default(),
        };
        assert_eq!(ok("type=registry,name=r.io/app"), reg("r.io/app"));
        assert_eq!(ok("type=image,name=r.io/app,push=true"), reg("r.io/app"));
        assert_eq!(ok("type=image,name=app"), img("app"));
        assert_eq!(ok("type=image,name=app,push=false"), img("app"));
        assert_eq!(ok("type=registry,name=app,push=false"), img("app"));
        assert_eq!(
            ok("type=registry"),
            OutputSpec::Registry {
                name: None,
                push: true,
                compression: gz(),
                image: ImageOptions::default()
            }
        );
    }

    #[test]
    fn errors() {
        let cases = [
            ("", "empty output specification"),
            ("type=oci,", "invalid output option \"\""),
            ("type=oci,dest", "invalid output option \"dest\""),
            ("name=a,dest=b", "has no type="),
            (
                "type=foo",
                "unknown output type \"foo\": valid types are oci, docker, local, tar, image, registry",
            ),
            ("type=cacheonly", "not supported yet: output type cacheonly"),
            ("type=local", "type=local needs dest="),
            ("type=local,dest=", "type=local needs dest="),
            ("type=local,dest=-", "use type=tar,dest=- for stdout"),
            ("type=oci,tar=false", "type=oci,tar=false needs dest="),
            ("type=oci,tar=maybe", "invalid value \"maybe\" for output option tar"),
            ("type=image,push=yes", "invalid value \"yes\" for output option push"),
            ("type=oci,compression=lz4", "invalid compression \"lz4\""),
            ("type=oci,compression=estargz", "not supported yet: compression=estargz"),
            (
                "type=oci,compression-level=10",
                "compression-level=10 is out of range for gzip: expected 0 to 9",
            ),
            ("type=registry,compression=zstd,compression-level=x", "invalid compression-level \"x\""),
            ("type=docker,force-compression=maybe", "invalid force-compression \"maybe\""),
            (
                "type=oci,compression=uncompressed,compression-level=1",
                "compression-level does not apply to compression=uncompressed",
            ),
            ("type=image,name=a,compression=zstd", "output option compression needs push=true"),
            ("type=image,name=a,force-compression=true", "output option force-compression needs push=true"),
            ("type=local,dest=d,compression=zstd", "output option compression does not apply to type=local"),
            ("type=tar,compression-level=1", "output option compression-level does not apply to type=tar"),
            ("type=oci,oci-mediatypes=false", "not supported yet: output option oci-mediatypes=false"),
            (
                "type=local,dest=d,rewrite-timestamp=false",
                "output option rewrite-timestamp does not apply to type=local",
            ),
            ("type=local,dest=d,annotation.a=x", "output option annotation.a does not apply to type=local"),
            ("type=oci,annotation.=x", "output option annotation.: the annotation's key is empty"),
            ("type=image,annotation-index.foo=x", "not supported yet: output option annotation-index.foo"),
            (
                "type=oci,annotation-manifest-descriptor.foo=x",
                "not supported yet: output option annotation-manifest-descriptor.foo",
            ),
            ("type=image,push-by-digest=true", "not supported yet: output option push-by-digest"),
            ("type=docker,tar=false,dest=d", "not supported yet: output option tar"),
            ("type=local,dest=d,platform-split=true", "not supported yet: output option platform-split"),
            ("type=local,dest=d,name=x", "output option name does not apply to type=local"),
            ("type=tar,push=true", "output option push does not apply to type=tar"),
            ("type=oci,push=true", "output option push does not apply to type=oci"),
            ("type=registry,dest=x", "output option dest does not apply to type=registry"),
            ("type=image,tar=true", "output option tar does not apply to type=image"),
            ("type=oci,name=\"a", "unterminated quote"),
            ("type=oci,name=\"a\"b", "unexpected 'b' after a closing quote"),
            ("type=oci,na\"me=a", "stray quote"),
            ("type=oci\ndest=x", "line break"),
        ];
        for (input, want) in cases {
            let e = err(input);
            assert!(e.contains(want), "{input:?}: {e:?} does not contain {want:?}");
        }
    }
}
