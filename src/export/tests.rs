//! Exporter tests on a small two-layer image built in a temporary store. The checks with
//! independent tools (skopeo, umoci, podman) are in `tests/integration/export.rs`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use oci_spec::image::{Descriptor, MediaType};
use serde_json::Value;

use super::docker::write_docker_archive;
use super::oci::{write_layout_dir, write_layout_tar};
use super::*;
use crate::image::config::{ImageConfig, RootFs};
use crate::image::manifest::{Image, Layer, oci_digest};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    manifest: Descriptor,
    config: Digest,
    layers: Vec<Digest>,
}

/// A gzip layer holding `files`, and its diff ID.
fn layer(files: &[(&str, &[u8])]) -> (Vec<u8>, Digest) {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).expect("tar entry");
    }
    let tar = b.into_inner().expect("tar");
    let diff_id = Digest::of(&tar);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    (gz.finish().expect("gzip"), diff_id)
}

fn fixture_in(dir: tempfile::TempDir) -> Fixture {
    let store = Store::open(&dir.path().join("store")).expect("store");
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for files in [&[("etc/hako-release", &b"hako test\n"[..])][..], &[("hello.txt", b"hello\n")]] {
        let (gz, diff_id) = layer(files);
        let (digest, size) = store.put_bytes(&gz).expect("put layer");
        diff_ids.push(diff_id.to_string());
        layers.push(Layer { digest, diff_id, size, media_type: MediaType::ImageLayerGzip });
    }
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs { diff_ids, ..RootFs::default() },
        ..ImageConfig::default()
    };
    let layer_digests = layers.iter().map(|l| l.digest.clone()).collect();
    let written = Image { config, layers }.write(&store).expect("write image");
    Fixture {
        _dir: dir,
        store,
        manifest: written.manifest,
        config: written.config_digest,
        layers: layer_digests,
    }
}

fn fixture() -> Fixture {
    fixture_in(tempfile::tempdir().expect("tempdir"))
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn oci_tar(f: &Fixture, n: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    write_layout_tar(&f.store, &f.manifest, &names(n), &mut out).expect("oci tar");
    out
}

/// (path, mode, mtime, uid, gid, content) of every entry.
type Entry = (String, u32, u64, u64, u64, Vec<u8>);

fn entries(tar_bytes: &[u8]) -> Vec<Entry> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .expect("entries")
        .map(|e| {
            let mut e = e.expect("entry");
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            (
                path,
                h.mode().expect("mode"),
                h.mtime().expect("mtime"),
                h.uid().expect("uid"),
                h.gid().expect("gid"),
                data,
            )
        })
        .collect()
}

fn file<'a>(es: &'a [Entry], path: &str) -> &'a [u8] {
    &es.iter().find(|e| e.0 == path).unwrap_or_else(|| panic!("no {path} in the archive")).5
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("json")
}

/// (ref name, image name) of each index entry, and checks each entry names the manifest.
fn index_names(f: &Fixture, index: &Value) -> Vec<(Option<String>, Option<String>)> {
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            assert_eq!(m["digest"], f.manifest.digest().to_string());
            assert_eq!(m["size"], f.manifest.size());
            assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
            let a = |k: &str| {
                m.get("annotations").and_then(|a| a.get(k)).and_then(Value::as_str).map(str::to_string)
            };
            (a(REF_NAME), a(IMAGE_NAME))
        })
        .collect()
}

/// The blobs in the order archives hold them: the layers, the config, the manifest.
fn blob_entries(f: &Fixture) -> Vec<String> {
    let mut v: Vec<String> = f.layers.iter().map(|l| format!("blobs/sha256/{}", l.hex())).collect();
    v.push(format!("blobs/sha256/{}", f.config.hex()));
    v.push(format!("blobs/sha256/{}", Digest::parse(f.manifest.digest().as_ref()).expect("d").hex()));
    v
}

#[test]
fn oci_tar_layout_and_order() {
    let f = fixture();
    let es = entries(&oci_tar(&f, &["registry.io/app:1.2", "app"]));
    // Blobs first, layers before what names them, as BuildKit's archives (and a spooled one).
    let mut want = names(&["blobs/", "blobs/sha256/"]);
    want.extend(blob_entries(&f));
    want.extend(names(&["index.json", "oci-layout"]));
    assert_eq!(es.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), want);
    for (path, mode, mtime, uid, gid, _) in &es {
        let dir = path.ends_with('/');
        assert_eq!((*mode, *mtime, *uid, *gid), (if dir { 0o755 } else { 0o644 }, 0, 0, 0), "{path}");
    }
    assert_eq!(file(&es, "oci-layout"), OCI_LAYOUT);
    for b in blob_entries(&f) {
        let hex = b.rsplit('/').next().expect("hex");
        assert_eq!(Digest::of(file(&es, &b)).hex(), hex, "{b} content");
    }
    assert_eq!(
        index_names(&f, &json(file(&es, "index.json"))),
        [
            (Some("1.2".into()), Some("registry.io/app:1.2".into())),
            (Some("latest".into()), Some("docker.io/library/app:latest".into())),
        ]
    );
}

#[test]
fn oci_tar_is_byte_identical() {
    let f = fixture();
    let n = ["app:1", "example.com/x/y:2"];
    let first = oci_tar(&f, &n);
    assert_eq!(first, oci_tar(&f, &n));
    // The same image built in another store exports to the same bytes too.
    assert_eq!(first, oci_tar(&fixture(), &n));
    assert_eq!(first.len() % 512, 0);
}

#[test]
fn no_names_give_one_plain_entry() {
    let f = fixture();
    let index = json(file(&entries(&oci_tar(&f, &[])), "index.json"));
    assert_eq!(index_names(&f, &index), [(None, None)]);
    assert!(index["manifests"][0].get("annotations").is_none());
    // Duplicate names (after normalisation) give one entry; the store's own annotations go.
    let mut desc = f.manifest.clone();
    desc.set_annotations(Some([(REF_NAME.to_string(), "app:1".to_string())].into()));
    let mut out = Vec::new();
    write_layout_tar(&f.store, &desc, &names(&["app", "docker.io/library/app:latest"]), &mut out)
        .expect("tar");
    assert_eq!(
        index_names(&f, &json(file(&entries(&out), "index.json"))),
        [(Some("latest".into()), Some("docker.io/library/app:latest".into()))]
    );
}

fn read_index(dir: &Path) -> Value {
    json(&fs_err::read(dir.join("index.json")).expect("index.json"))
}

#[test]
fn layout_dir_links_blobs_and_merges() {
    let f = fixture();
    let dir = f._dir.path().join("out/layout");
    write_layout_dir(&f.store, &f.manifest, &names(&["app:1.0"]), &dir).expect("export");
    assert_eq!(fs_err::read(dir.join("oci-layout")).expect("oci-layout"), OCI_LAYOUT);
    for hex in blob_entries(&f) {
        let exported = fs_err::metadata(dir.join(&hex)).expect("blob");
        let stored = fs_err::metadata(f.store.root().join(&hex)).expect("stored");
        assert_eq!(exported.ino(), stored.ino(), "{hex} is hard-linked");
    }
    assert_eq!(
        index_names(&f, &read_index(&dir)),
        [(Some("1.0".into()), Some("docker.io/library/app:1.0".into()))]
    );

    // A blob already present is left alone (here: a copy with its own inode).
    let layer = dir.join(&blob_entries(&f)[0]);
    let copy = fs_err::read(&layer).expect("read");
    fs_err::remove_file(&layer).expect("rm");
    fs_err::write(&layer, &copy).expect("copy");
    let ino = fs_err::metadata(&layer).expect("meta").ino();

    // Another tag is added beside the first; a foreign entry is kept.
    let mut index = read_index(&dir);
    index["manifests"].as_array_mut().expect("list").push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", "1".repeat(64)),
        "size": 7,
        "annotations": {REF_NAME: "other"},
    }));
    fs_err::write(dir.join("index.json"), serde_json::to_vec(&index).expect("json")).expect("write");
    write_layout_dir(&f.store, &f.manifest, &names(&["app:2.0"]), &dir).expect("export again");
    assert_eq!(fs_err::metadata(&layer).expect("meta").ino(), ino, "present blob not rewritten");
    let refs: Vec<Option<String>> = read_index(&dir)["manifests"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["annotations"][REF_NAME].as_str().map(String::from))
        .collect();
    assert_eq!(refs, [Some("1.0".into()), Some("other".into()), Some("2.0".into())]);

    // The same tag again replaces its entry instead of adding one.
    write_layout_dir(&f.store, &f.manifest, &names(&["registry.io/app:1.0"]), &dir).expect("retag");
    let index = read_index(&dir);
    let tags: Vec<(&str, &str)> = index["manifests"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| {
            (
                m["annotations"][REF_NAME].as_str().unwrap_or(""),
                m["annotations"][IMAGE_NAME].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(tags, [("other", ""), ("2.0", "docker.io/library/app:2.0"), ("1.0", "registry.io/app:1.0")]);

    // Unnamed exports are not duplicated either.
    write_layout_dir(&f.store, &f.manifest, &[], &dir).expect("unnamed");
    write_layout_dir(&f.store, &f.manifest, &[], &dir).expect("unnamed again");
    assert_eq!(read_index(&dir)["manifests"].as_array().expect("list").len(), 4);
    // Nothing is left behind but the layout.
    let mut top: Vec<String> = fs_err::read_dir(&dir)
        .expect("ls")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["blobs", "index.json", "oci-layout"]);
    assert_eq!(
        fs_err::read_dir(dir.join("blobs/sha256")).expect("ls").count(),
        4,
        "the foreign entry has no blob here"
    );
}

#[test]
fn layout_dir_copies_across_filesystems_and_replaces_bad_blobs() {
    let f = fixture();
    let shm = Path::new("/dev/shm");
    let other_fs = shm.is_dir()
        && fs_err::metadata(shm).map(|m| m.dev()).ok()
            != fs_err::metadata(f.store.root()).map(|m| m.dev()).ok();
    if !other_fs {
        eprintln!("skipping: no second filesystem (/dev/shm) to force a copy");
        return;
    }
    let out = tempfile::tempdir_in(shm).expect("tempdir on /dev/shm");
    let dir = out.path().join("layout");
    fs_err::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
    // A truncated blob under the final name is replaced.
    let layer = dir.join(&blob_entries(&f)[1]);
    fs_err::write(&layer, b"trunc").expect("write");
    write_layout_dir(&f.store, &f.manifest, &names(&["app"]), &dir).expect("export");
    for hex in blob_entries(&f) {
        let data = fs_err::read(dir.join(&hex)).expect("blob");
        assert_eq!(Digest::of(&data).hex(), hex.rsplit('/').next().expect("hex"));
        let mode = fs_err::metadata(dir.join(&hex)).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o644, "{hex}");
    }
    assert_eq!(index_names(&f, &read_index(&dir)).len(), 1);
    assert_eq!(fs_err::read_dir(dir.join("blobs/sha256")).expect("ls").count(), 4, "no temporary files left");
}

#[test]
fn docker_archive_manifest_and_repositories() {
    let f = fixture();
    let digest_only = format!("app@sha256:{}", "2".repeat(64));
    let n =
        names(&["app", "registry.io/team/app:1.2", "docker.io/library/app:latest", &digest_only, "app:v2"]);
    let mut out = Vec::new();
    write_docker_archive(&f.store, &f.manifest, &n, &mut out).expect("docker archive");
    let mut again = Vec::new();
    write_docker_archive(&f.store, &f.manifest, &n, &mut again).expect("docker archive");
    assert_eq!(out, again, "deterministic");
    let es = entries(&out);
    let mut want = names(&["blobs/", "blobs/sha256/"]);
    want.extend(blob_entries(&f));
    want.extend(names(&["index.json", "manifest.json", "oci-layout", "repositories"]));
    assert_eq!(es.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), want);
    let manifest = json(file(&es, "manifest.json"));
    let blobs = blob_entries(&f);
    assert_eq!(
        manifest,
        serde_json::json!([{
            "Config": blobs[2],
            "RepoTags": ["app:latest", "registry.io/team/app:1.2", "app:v2"],
            "Layers": [blobs[0], blobs[1]],
        }])
    );
    // Keys in docker's order.
    let text = String::from_utf8(file(&es, "manifest.json").to_vec()).expect("utf8");
    assert!(text.starts_with(r#"[{"Config":"#) && text.contains(r#"],"Layers":["#), "{text}");
    let repos: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_slice(file(&es, "repositories")).expect("repositories");
    let hex = f.config.hex().to_string();
    assert_eq!(
        repos,
        BTreeMap::from([
            ("app".into(), BTreeMap::from([("latest".into(), hex.clone()), ("v2".into(), hex.clone())])),
            ("registry.io/team/app".into(), BTreeMap::from([("1.2".into(), hex)])),
        ])
    );
    let index = json(file(&es, "index.json"));
    let refs = index_names(&f, &index);
    assert_eq!(refs.len(), 4);
    assert_eq!(refs[2], (None, Some(format!("docker.io/library/{digest_only}"))));

    // Without names: empty RepoTags and no repositories file.
    let mut out = Vec::new();
    write_docker_archive(&f.store, &f.manifest, &[], &mut out).expect("unnamed");
    let es = entries(&out);
    assert_eq!(json(file(&es, "manifest.json"))[0]["RepoTags"], serde_json::json!([]));
    assert!(!es.iter().any(|e| e.0 == "repositories"));
}

#[test]
fn failures_are_reported_before_writing() {
    let f = fixture();
    // An invalid name.
    let mut out = Vec::new();
    let e = write_layout_tar(&f.store, &f.manifest, &names(&["App:1"]), &mut out).unwrap_err();
    assert!(matches!(e, ExportError::Name { .. }), "{e}");
    assert!(e.to_string().contains("\"App:1\""), "{e}");
    // A missing layer: nothing is written at all.
    let layer = f.store.blob_path(&f.layers[1]);
    let saved = fs_err::read(&layer).expect("read");
    fs_err::remove_file(&layer).expect("rm");
    for result in [
        write_layout_tar(&f.store, &f.manifest, &[], &mut out),
        write_docker_archive(&f.store, &f.manifest, &[], &mut out),
        write_layout_dir(&f.store, &f.manifest, &[], &f._dir.path().join("never")),
    ] {
        let e = result.unwrap_err();
        assert!(matches!(e, ExportError::Store(StoreError::Missing(_))), "{e}");
    }
    assert!(out.is_empty());
    assert!(!f._dir.path().join("never").exists());
    // A blob of the right size whose content changed since an earlier process wrote it is
    // caught as it streams.
    f.store.forget_written();
    let mut bad = saved.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    fs_err::write(&layer, &bad).expect("corrupt");
    let e = write_layout_tar(&f.store, &f.manifest, &[], &mut out).unwrap_err();
    assert!(matches!(e, ExportError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains(&layer.display().to_string()), "names the file: {e}");
    // A wrong-sized blob is refused up front.
    fs_err::write(&layer, b"short").expect("truncate");
    let e = write_docker_archive(&f.store, &f.manifest, &[], &mut Vec::new()).unwrap_err();
    assert!(matches!(e, ExportError::Corrupt { .. }) && e.to_string().contains("5 bytes"), "{e}");
}

#[test]
fn refused_inputs_and_destinations() {
    let f = fixture();
    let index = Descriptor::new(MediaType::ImageIndex, f.manifest.size(), f.manifest.digest().clone());
    let e = write_layout_tar(&f.store, &index, &[], &mut Vec::new()).unwrap_err();
    assert_eq!(e.to_string(), "not supported yet: exporting a multi-platform image index");
    let other = Descriptor::new(MediaType::ImageManifest, 3, oci_digest(&Digest::of(b"abc")));
    assert!(matches!(
        write_layout_tar(&f.store, &other, &[], &mut Vec::new()),
        Err(ExportError::Store(StoreError::Missing(_)))
    ));

    let e = write_layout_dir(&f.store, &f.manifest, &[], f.store.root()).unwrap_err();
    assert!(e.to_string().contains("hako's own store"), "{e}");

    let dir = f._dir.path().join("notalayout");
    fs_err::create_dir_all(&dir).expect("mkdir");
    fs_err::write(dir.join("index.json"), b"{\"foo\":1}").expect("write");
    let e = write_layout_dir(&f.store, &f.manifest, &[], &dir).unwrap_err();
    assert!(e.to_string().contains("not an OCI image layout"), "{e}");
    fs_err::write(dir.join("index.json"), b"not json").expect("write");
    let e = write_layout_dir(&f.store, &f.manifest, &[], &dir).unwrap_err();
    assert!(matches!(e, ExportError::Json { .. }) && e.to_string().contains("index.json"), "{e}");
    assert!(!dir.join("blobs").exists(), "nothing written into a directory that is not a layout");

    let file_dest = f._dir.path().join("a-file");
    fs_err::write(&file_dest, b"x").expect("write");
    let e = write_layout_dir(&f.store, &f.manifest, &[], &file_dest.join("sub")).unwrap_err();
    assert!(matches!(e, ExportError::Io { .. }) && e.to_string().contains("a-file"), "{e}");
}

#[test]
fn output_errors_name_the_entry() {
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let f = fixture();
    let e = write_layout_tar(&f.store, &f.manifest, &[], &mut Broken).unwrap_err();
    assert!(matches!(e, ExportError::Output { .. }) && e.to_string().contains("pipe closed"), "{e}");
}

/// The fixture's layers as blobs.
fn layer_blobs(f: &Fixture) -> Vec<Blob> {
    f.layers
        .iter()
        .map(|d| Blob {
            digest: d.clone(),
            size: fs_err::metadata(f.store.blob_path(d)).expect("blob").len(),
        })
        .collect()
}

/// A step on `layers` whose blob is `blob`: copied into the spool where it says, as a step's blob
/// writer does, through its own descriptor (as a sandbox helper's).
fn tee_step(f: &Fixture, s: &mut spool::Spool, layers: &[Blob], blob: &Blob) {
    let offset = s.prepare(&f.store, layers).expect("a place for the step's layer");
    let file = s.file().try_clone().expect("dup");
    let mut w = f.store.teed_blob_writer(crate::store::Tee { file, offset }).expect("writer");
    std::io::Write::write_all(&mut w, &f.store.read_blob(&blob.digest).expect("blob")).expect("tee");
    assert!(w.commit_teed(Some(&blob.digest)).expect("commit").2, "teed whole");
    s.teed(blob).expect("teed");
}

/// What finishing `spool` as `format` ("oci" or "docker") writes.
fn finished(f: &Fixture, s: spool::Spool, format: &str, n: &[String]) -> Vec<u8> {
    let dest = s.dest().to_path_buf();
    s.finish(&f.store, &f.manifest, |w, p| match format {
        "oci" => oci::layout_tar(&f.store, &f.manifest, n, w, p),
        _ => docker::docker_archive(&f.store, &f.manifest, n, w, p),
    })
    .expect("finish");
    assert_eq!(
        fs_err::metadata(&dest).expect("stat").mode() & 0o777,
        0o644,
        "readable by all, as `to` leaves it"
    );
    fs_err::read(dest).expect("archive")
}

/// An archive written while the build ran (a layer teed by its step, one not teed, the rest at
/// the end) is byte for byte the archive written in one go, in either format.
#[test]
fn a_spooled_archive_is_the_archive_written_at_once() {
    let f = fixture();
    let n = names(&["app:1"]);
    let blobs = layer_blobs(&f);
    for format in ["oci", "docker"] {
        let out = tempfile::tempdir().expect("tempdir");
        let mut s = spool::Spool::create(&out.path().join("image.tar")).expect("spool");
        tee_step(&f, &mut s, &[], &blobs[0]);
        // The same layer again (a step that made an identical layer) is not added twice.
        tee_step(&f, &mut s, &blobs[..1], &blobs[0]);
        // A step whose blob did not reach the archive: written at the end.
        assert!(s.prepare(&f.store, &blobs[..1]).is_some());
        let spooled = finished(&f, s, format, &n);
        let mut at_once = Vec::new();
        match format {
            "oci" => write_layout_tar(&f.store, &f.manifest, &n, &mut at_once),
            _ => write_docker_archive(&f.store, &f.manifest, &n, &mut at_once),
        }
        .expect("archive");
        assert!(spooled == at_once, "{format}: the same bytes");
        assert_eq!(fs_err::read_dir(out.path()).expect("ls").count(), 1, "no temporary file left");
    }
}

/// A spool that took blobs the image does not start with (a stage that was not the image's)
/// starts over; a step on other layers gets no slot; a dropped spool leaves nothing.
#[test]
fn a_spool_holding_other_blobs_starts_over() {
    let f = fixture();
    let n = names(&["app:1"]);
    let blobs = layer_blobs(&f);
    let out = tempfile::tempdir().expect("tempdir");
    let mut s = spool::Spool::create(&out.path().join("image.tar")).expect("spool");
    tee_step(&f, &mut s, &blobs[1..], &blobs[0]);
    assert_eq!(s.prepare(&f.store, &blobs[..1]), None, "the archive holds another layer first");
    assert!(oci_tar(&f, &["app:1"]) == finished(&f, s, "oci", &n));

    let dropped = tempfile::tempdir().expect("tempdir");
    let s = spool::Spool::create(&dropped.path().join("image.tar")).expect("spool");
    drop(s);
    assert_eq!(fs_err::read_dir(dropped.path()).expect("ls").count(), 0, "nothing left");
}

/// Where the unnamed file cannot be linked into place (no /proc, not root), it is copied: the
/// same archive, readable by all, and nothing else left.
#[test]
fn a_spool_that_cannot_be_linked_is_copied() {
    let f = fixture();
    let n = names(&["app:1"]);
    let blobs = layer_blobs(&f);
    let out = tempfile::tempdir().expect("tempdir");
    let dest = out.path().join("image.tar");
    let mut s = spool::Spool::create(&dest).expect("spool");
    tee_step(&f, &mut s, &[], &blobs[0]);
    let cannot =
        |_: &std::fs::File, _: &Path| Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
    s.finish_linking(&f.store, &f.manifest, |w, p| oci::layout_tar(&f.store, &f.manifest, &n, w, p), cannot)
        .expect("finish");
    assert!(fs_err::read(&dest).expect("archive") == oci_tar(&f, &["app:1"]), "the same bytes");
    assert_eq!(fs_err::metadata(&dest).expect("stat").mode() & 0o777, 0o644);
    assert_eq!(fs_err::read_dir(out.path()).expect("ls").count(), 1, "no temporary file left");
}
