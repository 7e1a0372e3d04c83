//! `hako build`: reads the Dockerfile and context, plans the build, and (for now) prints the plan
//! with `--dry-run`. Options whose feature is not built yet are refused, never ignored.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{BuildArgs, Failure, print_stdout};
use crate::dockerfile::instructions::from_ast;
use crate::dockerfile::{Diagnostic, Warning, parse_bytes};
use crate::plan::{self, Platform};

/// Runs `hako build`.
pub fn run(args: BuildArgs) -> Result<(), Failure> {
    refuse_unbuilt(&args)?;
    let options = plan_options(&args)?;
    let input = read_input(&args)?;
    let source = String::from_utf8_lossy(&input.dockerfile).into_owned();
    let located = |d: Diagnostic| Failure::user(format!("error: {}", d.render(&input.name, &source)));
    let ast = parse_bytes(&input.dockerfile).map_err(located)?;
    let df = from_ast(&ast, &source).map_err(located)?;
    print_warnings(&input.name, &df.warnings);
    let plan = plan::plan(&df, &options, &plan::Unresolved).map_err(located)?;
    if !plan.unused_build_args.is_empty() {
        eprintln!(
            "warning: build-arg {} {} not consumed by any ARG in the Dockerfile",
            plan.unused_build_args.join(", "),
            if plan.unused_build_args.len() == 1 { "was" } else { "were" }
        );
    }
    if !args.dry_run {
        return Err(Failure::not_supported("building images (use --dry-run to see the plan)"));
    }
    print_stdout(&plan.to_string())
}

/// Options accepted on the command line whose feature does not exist yet.
fn refuse_unbuilt(args: &BuildArgs) -> Result<(), Failure> {
    let checks: [(bool, &str); 8] = [
        (!args.outputs.is_empty(), "--output"),
        (args.push, "--push"),
        (args.iidfile.is_some(), "--iidfile"),
        (args.metadata_file.is_some(), "--metadata-file"),
        (!args.secrets.is_empty(), "--secret"),
        (!args.ssh.is_empty(), "--ssh"),
        (!args.cache_from.is_empty(), "--cache-from"),
        (!args.cache_to.is_empty(), "--cache-to"),
    ];
    if let Some((_, flag)) = checks.iter().find(|(used, _)| *used) {
        return Err(Failure::not_supported(flag));
    }
    if args.platforms.len() > 1 {
        return Err(Failure::not_supported("building for several platforms at once (give one --platform)"));
    }
    Ok(())
}

/// Turns the command line into planner options.
fn plan_options(args: &BuildArgs) -> Result<plan::Options, Failure> {
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            // `--build-arg NAME` takes the value from the environment, and is skipped when unset (as docker does).
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let platform = match args.platforms.first() {
        Some(p) => Some(Platform::parse(p).map_err(|e| Failure::usage(format!("error: --platform: {e}")))?),
        None => None,
    };
    let mut build_contexts = BTreeMap::new();
    for c in &args.build_contexts {
        let Some((name, value)) = c.split_once('=').filter(|(n, v)| !n.is_empty() && !v.is_empty()) else {
            return Err(Failure::usage(format!("error: --build-context {c}: expected NAME=VALUE")));
        };
        build_contexts.insert(name.to_string(), value.to_string());
    }
    for tag in &args.tags {
        crate::plan::check_reference(tag).map_err(|e| Failure::usage(format!("error: -t {tag}: {e}")))?;
    }
    Ok(plan::Options { build_args, target: args.target.clone(), platform, build_contexts })
}

/// The Dockerfile to build, with the name to show in messages.
struct Input {
    name: String,
    dockerfile: Vec<u8>,
}

/// Finds the Dockerfile: `-f -` (stdin), `-f PATH`, `CONTEXT/Dockerfile`, or inside a context tar
/// read from stdin (`CONTEXT` = `-`). A stdin that is not a tar archive is the Dockerfile itself,
/// with an empty context (as `docker build - < Dockerfile`).
fn read_input(args: &BuildArgs) -> Result<Input, Failure> {
    let file = args.file.as_deref();
    if args.context == "-" {
        if file == Some("-") {
            return Err(Failure::usage("error: cannot read both the context and the Dockerfile from stdin"));
        }
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::usage(format!("error: reading the context from stdin: {e}")))?;
        let name = file.unwrap_or("Dockerfile");
        return match context_tar_entry(&buf, name)? {
            Some(dockerfile) => Ok(Input { name: name.to_string(), dockerfile }),
            None if is_archive(&buf) => Err(Failure::user(format!(
                "error: the context archive on stdin has no `{name}`\nhint: name the Dockerfile inside the archive with -f"
            ))),
            None => Ok(Input { name: "Dockerfile".into(), dockerfile: buf }),
        };
    }
    let context = Path::new(&args.context);
    if !context.is_dir() {
        return Err(Failure::usage(format!(
            "error: build context `{}` is not a directory\nhint: pass a directory, or `-` to read a tar archive from stdin",
            args.context
        )));
    }
    let path = match file {
        Some("-") => {
            let (name, dockerfile) = read_dockerfile_arg("-")?;
            return Ok(Input { name, dockerfile });
        }
        Some(f) => PathBuf::from(f),
        None => context.join("Dockerfile"),
    };
    let dockerfile = fs_err::read(&path).map_err(|e| {
        let hint = if file.is_none() { "\nhint: name the Dockerfile with -f PATH" } else { "" };
        Failure::usage(format!("error: reading the Dockerfile: {e}{hint}"))
    })?;
    Ok(Input { name: path.display().to_string(), dockerfile })
}

fn is_archive(buf: &[u8]) -> bool {
    buf.starts_with(&[0x1f, 0x8b]) || buf.get(257..262) == Some(b"ustar")
}

/// Reads `name` out of a (possibly gzip-compressed) tar archive; `None` when `buf` is not an
/// archive or has no such entry.
fn context_tar_entry(buf: &[u8], name: &str) -> Result<Option<Vec<u8>>, Failure> {
    if !is_archive(buf) {
        return Ok(None);
    }
    let reader: Box<dyn Read + '_> = if buf.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(buf))
    } else {
        Box::new(buf)
    };
    let bad =
        |e: std::io::Error| Failure::user(format!("error: reading the context archive from stdin: {e}"));
    let want = name.trim_start_matches("./");
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.to_string_lossy().trim_start_matches("./").to_string();
        if path == want {
            let mut out = Vec::new();
            entry.read_to_end(&mut out).map_err(bad)?;
            return Ok(Some(out));
        }
    }
    Ok(None)
}

fn print_warnings(name: &str, warnings: &[Warning]) {
    for w in warnings {
        match w.pos.line {
            0 => eprintln!("warning: {name}: {}", w.message),
            line => eprintln!("warning: {name}:{line}: {}", w.message),
        }
    }
}

/// Reads a Dockerfile named on the command line (`-` is stdin). Returns the display name and bytes.
pub fn read_dockerfile_arg(file: &str) -> Result<(String, Vec<u8>), Failure> {
    if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::usage(format!("error: reading the Dockerfile from stdin: {e}")))?;
        return Ok(("Dockerfile".to_string(), buf));
    }
    let bytes = fs_err::read(file).map_err(|e| Failure::usage(format!("error: {e}")))?;
    Ok((file.to_string(), bytes))
}
