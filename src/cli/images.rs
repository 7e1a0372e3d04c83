//! The images kept in the store, as Docker's image commands treat its image store: `hako images`,
//! `hako tag`, `hako push`, `hako save` and `hako rmi`.

use std::io::IsTerminal;
use std::path::Path;

use super::progress::go_size;
use super::{Failure, ImagesArgs, PushArgs, RmiArgs, SaveArgs, TagArgs, print_stdout};
use crate::export::spec::OutputSpec;
use crate::image::manifest::Image;
use crate::image::reference::ImageName;
use crate::image::stored::{self, Kept};
use crate::store::Store;

/// The store, read as it is: one that does not exist yet keeps no images (nothing is created).
fn open(root: Option<&Path>) -> Result<Store, Failure> {
    Ok(Store::open_readonly(&super::build::store_root(root)?))
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::usage(format!("error: {e}"))
}

/// The kept images `reference` names; an error (exit 1) when there is none.
fn find(store: &Store, reference: &str) -> Result<Vec<Kept>, Failure> {
    let found = stored::find(store, reference).map_err(failed)?;
    if found.is_empty() {
        return Err(Failure::user(format!(
            "error: no such image in the store: {reference}\nhint: `hako images` lists the kept images; `hako build -t NAME` keeps one"
        )));
    }
    Ok(found)
}

/// One image, for commands that act on one: several names of the same image are one image.
fn find_one(store: &Store, reference: &str) -> Result<Kept, Failure> {
    let found = find(store, reference)?;
    let first = found[0].clone();
    if found.iter().any(|k| k.descriptor.digest() != first.descriptor.digest()) {
        return Err(Failure::user(format!(
            "error: {reference} is ambiguous: it matches several images; give more of the ID or a name"
        )));
    }
    Ok(first)
}

/// `REPOSITORY` and `TAG` of a kept name.
fn repo_tag(name: &str) -> (String, String) {
    match ImageName::parse(name) {
        Ok(n) => (n.familiar_repository(), n.tag_or_latest().unwrap_or("<none>").to_string()),
        Err(_) => (name.to_string(), "<none>".to_string()),
    }
}

/// What `hako images` shows of one image.
struct Row {
    repository: String,
    tag: String,
    id: String,
    digest: String,
    created: String,
    size: u64,
}

fn row(store: &Store, k: &Kept) -> Result<Row, Failure> {
    let (repository, tag) = repo_tag(&k.name);
    let digest = k.digest().map_err(failed)?;
    let bytes = store.read_blob(&digest).map_err(|e| failed(format!("{}: {e}", k.name)))?;
    let manifest: oci_spec::image::ImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| failed(format!("{}: manifest {digest}: {e}", k.name)))?;
    let id = crate::image::manifest::our_digest(manifest.config().digest()).map_err(failed)?;
    let config = store.read_blob(&id).map_err(|e| failed(format!("{}: {e}", k.name)))?;
    let created = serde_json::from_slice::<serde_json::Value>(&config)
        .ok()
        .and_then(|c| c["created"].as_str().map(|s| s.chars().take(10).collect()))
        .unwrap_or_default();
    let size = manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
    Ok(Row { repository, tag, id: id.to_string(), digest: digest.to_string(), created, size })
}

/// `hako images`.
pub fn list(args: ImagesArgs) -> Result<(), Failure> {
    if !matches!(args.format.as_str(), "table" | "json") {
        return Err(Failure::usage(format!("error: --format {}: expected table or json", args.format)));
    }
    let store = open(args.root.as_deref())?;
    let mut kept = stored::list(&store).map_err(failed)?;
    if let Some(f) = &args.filter {
        // `app` lists every tag of app; `app:1` only that one.
        let wanted = ImageName::parse(f).map_err(|e| Failure::usage(format!("error: {f}: {e}")))?;
        let (repo, tag) = (wanted.familiar_repository(), wanted.tag().map(str::to_string));
        kept.retain(|k| {
            let (r, t) = repo_tag(&k.name);
            r == repo && tag.as_ref().is_none_or(|w| *w == t)
        });
    }
    let rows = kept.iter().map(|k| row(&store, k)).collect::<Result<Vec<_>, _>>()?;
    let short = |id: &str| {
        if args.no_trunc {
            id.to_string()
        } else {
            id.trim_start_matches("sha256:").chars().take(12).collect()
        }
    };
    let mut out = String::new();
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            if seen.insert(r.id.clone()) {
                out.push_str(&format!("{}\n", short(&r.id)));
            }
        }
        return print_stdout(&out);
    }
    if args.format == "json" {
        for r in &rows {
            let v = serde_json::json!({
                "Repository": r.repository, "Tag": r.tag, "ID": short(&r.id), "Digest": r.digest,
                "CreatedAt": r.created, "Size": go_size(r.size), "VirtualSize": r.size,
            });
            out.push_str(&format!("{v}\n"));
        }
        return print_stdout(&out);
    }
    let mut table = vec![{
        let mut h = vec!["REPOSITORY", "TAG"];
        if args.digests {
            h.push("DIGEST");
        }
        h.extend(["IMAGE ID", "CREATED", "SIZE"]);
        h.into_iter().map(String::from).collect::<Vec<_>>()
    }];
    for r in &rows {
        let mut line = vec![r.repository.clone(), r.tag.clone()];
        if args.digests {
            line.push(r.digest.clone());
        }
        line.extend([short(&r.id), r.created.clone(), go_size(r.size)]);
        table.push(line);
    }
    let widths: Vec<usize> =
        (0..table[0].len()).map(|c| table.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(
                |(c, cell)| {
                    if c + 1 == line.len() { cell.clone() } else { format!("{cell:<w$}", w = widths[c]) }
                },
            )
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    print_stdout(&out)
}

/// `hako tag SOURCE TARGET`.
pub fn tag(args: TagArgs) -> Result<(), Failure> {
    let store = open(args.root.as_deref())?;
    let target = stored::store_name(&args.target)
        .map_err(|e| Failure::usage(format!("error: invalid name {:?}: {e}", args.target)))?;
    let source = find_one(&store, &args.source)?;
    let _lock = build_lock(&store)?;
    store.tag(&target, &source.descriptor).map_err(failed)
}

/// `hako push NAME[:TAG]`: the kept image, with compressed layers (as a build's push makes them,
/// so the digest is the one `hako build --push` gives).
pub fn push(args: PushArgs) -> Result<(), Failure> {
    let compression = crate::layer::compress::ExportCompression::parse(
        Some(&args.compression),
        args.compression_level.as_deref(),
        Some(if args.force_compression { "true" } else { "false" }),
    )
    .map_err(|e| Failure::usage(format!("error: {e}")))?;
    let store = open(args.root.as_deref())?;
    let name = stored::store_name(&args.name)
        .map_err(|e| Failure::usage(format!("error: invalid name {:?}: {e}", args.name)))?;
    let kept = stored::list(&store)
        .map_err(failed)?
        .into_iter()
        .find(|k| stored::store_name(&k.name).ok().as_deref() == Some(&name))
        .ok_or_else(|| {
            Failure::user(format!(
                "error: no image named {} in the store\nhint: name it first: hako tag IMAGE {}",
                args.name, args.name
            ))
        })?;
    // Compressed layers and the manifest are written to the store: `hako prune` must wait.
    let _lock = build_lock(&store)?;
    let digest = kept.digest().map_err(failed)?;
    let image = Image::load(&store, &digest).map_err(failed)?;
    // The kept manifest's annotations (`--annotation`) go with it.
    let annotations: std::collections::BTreeMap<String, String> = store
        .read_blob(&digest)
        .ok()
        .and_then(|b| serde_json::from_slice::<oci_spec::image::ImageManifest>(&b).ok())
        .and_then(|m| m.annotations().clone())
        .map(|a| a.into_iter().collect())
        .unwrap_or_default();
    let shipped = crate::layer::compress::compressed_image(&store, &image, compression)
        .map_err(|e| failed(format!("compressing the layers: {e}")))?
        .write_annotated(&store, &annotations)
        .map_err(|e| failed(format!("writing the image: {e}")))?;
    let config = super::registry_config(&[], &args.insecure_registries)?;
    let registry = crate::registry::Registry::new(config).map_err(failed)?;
    // The lines `hako build --push` prints, in BuildKit's wording, so log scrapers read both.
    let full = crate::image::reference::ImageName::parse(&args.name)
        .map_or_else(|_| args.name.clone(), |n| n.full());
    let started = std::time::Instant::now();
    eprintln!("#1 pushing layers to {full}");
    let digest =
        registry.push(&store, &shipped.manifest, &args.name).map_err(|e| super::registry_failure(&e))?;
    eprintln!("#1 pushing layers to {full} {:.1}s done", started.elapsed().as_secs_f64());
    eprintln!("#1 pushing manifest for {full}@{digest} done");
    eprintln!("#1 DONE {:.1}s", started.elapsed().as_secs_f64());
    print_stdout(&format!("{digest}\n"))
}

/// `hako save [-o FILE] IMAGE`: a docker-archive (what `docker save` writes) or an OCI layout tar.
pub fn save(args: SaveArgs) -> Result<(), Failure> {
    let dest = args.output.clone();
    if dest.is_none() && std::io::stdout().is_terminal() {
        return Err(Failure::usage(
            "error: refusing to write an archive to a terminal\nhint: give -o FILE or redirect stdout",
        ));
    }
    let spec = match args.format.as_str() {
        // The kept image as it is (layers uncompressed): the compression is not used.
        "docker" => OutputSpec::Docker {
            dest,
            name: None,
            compression: Default::default(),
            image: Default::default(),
        },
        "oci" => OutputSpec::Oci {
            dest,
            tar: true,
            name: None,
            compression: Default::default(),
            image: Default::default(),
        },
        other => return Err(Failure::usage(format!("error: --format {other}: expected docker or oci"))),
    };
    let store = open(args.root.as_deref())?;
    let kept = find_one(&store, &args.image)?;
    // Saved by name, the archive carries that name; by ID, every name the image has (`docker save
    // ID` carries none, which leaves the loaded image untagged).
    let names: Vec<String> = find(&store, &args.image)?.into_iter().map(|k| k.name).collect();
    let digest = kept.digest().map_err(failed)?;
    let image = Image::load(&store, &digest).map_err(failed)?;
    crate::export::write::write_output(&store, &kept.descriptor, &image, &spec, &names, None, None)
        .map_err(|e| failed(format!("saving {}: {e}", args.image)))
}

/// `hako rmi IMAGE…`: removes names (as `docker rmi`, an image given by ID loses every name, with
/// `-f` when it has several). Blobs stay until `hako prune`.
pub fn rmi(args: RmiArgs) -> Result<(), Failure> {
    // No build lock: removing a name never makes `hako prune` remove what a kept image needs.
    let store = open(args.root.as_deref())?;
    let mut missing = Vec::new();
    for reference in &args.images {
        let found = match find(&store, reference) {
            Ok(f) => f,
            Err(_) => {
                missing.push(reference.clone());
                continue;
            }
        };
        let by_name = stored::store_name(reference)
            .is_ok_and(|n| found.iter().all(|k| stored::store_name(&k.name).ok().as_deref() == Some(&n)));
        if !by_name && found.len() > 1 && !args.force {
            return Err(Failure::user(format!(
                "error: image {reference} has several names ({}); remove them by name, or give -f to remove all",
                found.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        for k in &found {
            if store.untag(&k.name).map_err(failed)? {
                print_stdout(&format!("Untagged: {}\n", k.name))?;
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::user(format!("error: no such image in the store: {}", missing.join(", "))))
    }
}

/// Holds `locks/build` shared, as builds do: `hako prune` (exclusive) must not remove blobs a
/// name is being written for.
fn build_lock(store: &Store) -> Result<crate::store::Lock, Failure> {
    crate::store::Lock::shared(&store.root().join("locks/build")).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::go_size as docker_size;

    /// `docker images` prints sizes with go-units' precision 3, as BuildKit's progress does.
    #[test]
    fn sizes_read_as_docker_prints_them() {
        assert_eq!(docker_size(999), "999B");
        assert_eq!(docker_size(1_000), "1kB");
        assert_eq!(docker_size(7_801_234), "7.8MB");
        assert_eq!(docker_size(123_456_789), "123MB");
        assert_eq!(docker_size(12_345_678), "12.3MB");
    }
}
