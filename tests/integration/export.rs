//! The exporters checked by independent tools: skopeo (`oci:`, `oci-archive:`, `docker-archive:`,
//! copying verifies every digest and diff ID), umoci (unpacks the layout into a rootfs) and podman
//! (`podman load`). A test whose tool is not installed says so on stderr and returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::Compression;
use flate2::write::GzEncoder;
use hako::digest::Digest;
use hako::export::docker::write_docker_archive;
use hako::export::oci::{write_layout_dir, write_layout_tar};
use hako::image::config::{ImageConfig, RootFs};
use hako::image::manifest::{Image, Layer};
use hako::store::Store;
use oci_spec::image::{Descriptor, MediaType};
use serde_json::Value;

use crate::common::{dir_names, text};

const NAMES: [&str; 2] = ["example.com/hako/app:1.0", "app"];

/// A two-layer image in a fresh store under `dir`.
struct Built {
    store: Store,
    manifest: Descriptor,
    config: Digest,
    diff_ids: Vec<String>,
}

fn gzip_layer(files: &[(&str, &[u8])]) -> (Vec<u8>, Digest) {
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

fn build(dir: &Path) -> Built {
    let store = Store::open(&dir.join("store")).expect("store");
    let mut layers = Vec::new();
    for files in [&[("etc/hako-release", &b"hako test\n"[..])][..], &[("hello.txt", b"hello from hako\n")]] {
        let (gz, diff_id) = gzip_layer(files);
        let (digest, size) = store.put_bytes(&gz).expect("put layer");
        layers.push(Layer { digest, diff_id, size, media_type: MediaType::ImageLayerGzip });
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        rootfs: RootFs { diff_ids: diff_ids.clone(), ..RootFs::default() },
        ..ImageConfig::default()
    };
    let written = Image { config, layers }.write(&store).expect("write image");
    Built { store, manifest: written.manifest, config: written.config_digest, diff_ids }
}

fn names() -> Vec<String> {
    NAMES.iter().map(|s| s.to_string()).collect()
}

/// The tool's path, or `None` after saying on stderr that the test is skipped.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        crate::common::skip(&format!("{name} is not installed"));
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs `cmd`, failing the test (with its stderr) unless it succeeds; returns stdout.
fn check(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{s}"))
}

fn write_file(path: &Path, f: impl FnOnce(&mut dyn std::io::Write)) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    f(&mut file);
    std::io::Write::flush(&mut file).expect("flush");
}

/// The blob files skopeo's `dir:` transport wrote (named by hex digest).
fn dir_blobs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = dir_names(dir).into_iter().filter(|n| n.len() == 64).collect();
    v.sort();
    v
}

#[test]
fn skopeo_reads_the_layout_dir() {
    let Some(skopeo) = tool("skopeo") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = build(tmp.path());
    let layout = tmp.path().join("layout");
    write_layout_dir(&img.store, &img.manifest, &names(), &layout).expect("export");
    for tag in ["1.0", "latest"] {
        let inspect = json(&check(
            Command::new(&skopeo).args(["inspect"]).arg(format!("oci:{}:{tag}", layout.display())),
        ));
        assert_eq!(inspect["Digest"], img.manifest.digest().to_string(), "{tag}");
        assert_eq!(inspect["Architecture"], "amd64");
        assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(2));
    }
    let config = json(&check(
        Command::new(&skopeo).args(["inspect", "--config"]).arg(format!("oci:{}:1.0", layout.display())),
    ));
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(img.diff_ids));
    // Copying reads and verifies every blob.
    let copy = tmp.path().join("copy");
    check(
        Command::new(&skopeo)
            .args(["copy", "-q"])
            .arg(format!("oci:{}:1.0", layout.display()))
            .arg(format!("dir:{}", copy.display())),
    );
    assert_eq!(dir_blobs(&copy).len(), 3, "config and two layers");
    assert!(dir_blobs(&copy).contains(&img.config.hex().to_string()));
}

#[test]
fn skopeo_copies_the_oci_archive() {
    let Some(skopeo) = tool("skopeo") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = build(tmp.path());
    let archive = tmp.path().join("image.oci.tar");
    write_file(&archive, |out| write_layout_tar(&img.store, &img.manifest, &names(), out).expect("export"));
    let inspect = json(&check(
        Command::new(&skopeo).arg("inspect").arg(format!("oci-archive:{}:latest", archive.display())),
    ));
    assert_eq!(inspect["Digest"], img.manifest.digest().to_string());
    let copy = tmp.path().join("copy");
    check(
        Command::new(&skopeo)
            .args(["copy", "-q"])
            .arg(format!("oci-archive:{}:1.0", archive.display()))
            .arg(format!("dir:{}", copy.display())),
    );
    assert!(dir_blobs(&copy).contains(&img.config.hex().to_string()));
    let manifest = json(&std::fs::read_to_string(copy.join("manifest.json")).expect("manifest.json"));
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(2));
    // A tag the archive does not have is refused (the check above is not vacuous).
    let out =
        run(Command::new(&skopeo).arg("inspect").arg(format!("oci-archive:{}:nope", archive.display())));
    assert!(!out.status.success(), "skopeo found a tag that is not there");
}

#[test]
fn umoci_unpacks_the_layout() {
    let Some(umoci) = tool("umoci") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = build(tmp.path());
    let layout = tmp.path().join("layout");
    write_layout_dir(&img.store, &img.manifest, &names(), &layout).expect("export");
    let bundle = tmp.path().join("bundle");
    check(
        Command::new(&umoci)
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:1.0", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("hello.txt")).expect("hello.txt"), "hello from hako\n");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/hako-release")).expect("etc/hako-release"),
        "hako test\n"
    );
}

#[test]
fn skopeo_reads_the_docker_archive() {
    let Some(skopeo) = tool("skopeo") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = build(tmp.path());
    let archive = tmp.path().join("image.docker.tar");
    write_file(&archive, |out| {
        write_docker_archive(&img.store, &img.manifest, &names(), out).expect("export")
    });
    let reference = format!("docker-archive:{}", archive.display());
    let config = json(&check(Command::new(&skopeo).args(["inspect", "--config", &reference])));
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(img.diff_ids));
    let tagged = format!("{reference}:example.com/hako/app:1.0");
    let inspect = json(&check(Command::new(&skopeo).args(["inspect", &tagged])));
    assert_eq!(
        inspect["Layers"],
        serde_json::json!(img.diff_ids),
        "docker-archive layers are named by diff ID"
    );
    // Copying decompresses each layer and checks it against its diff ID.
    let copy = tmp.path().join("copy");
    check(Command::new(&skopeo).args(["copy", "-q", &reference]).arg(format!("dir:{}", copy.display())));
    assert!(dir_blobs(&copy).contains(&img.config.hex().to_string()));
}

#[test]
fn podman_loads_the_docker_archive() {
    let Some(podman) = tool("podman") else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = build(tmp.path());
    let archive = tmp.path().join("image.docker.tar");
    write_file(&archive, |out| {
        write_docker_archive(&img.store, &img.manifest, &names(), out).expect("export")
    });
    // A private podman store, so the test neither needs nor touches the machine's.
    let podman = || {
        let mut c = Command::new(&podman);
        c.arg("--root").arg(tmp.path().join("podman/root"));
        c.arg("--runroot").arg(tmp.path().join("podman/run"));
        c.args(["--storage-driver", "vfs", "--events-backend", "none"]);
        c
    };
    let smoke = run(podman().args(["images", "-q"]));
    if !smoke.status.success() {
        crate::common::skip(&format!("podman cannot run here: {}", text(&smoke.stderr).trim()));
        return;
    }
    check(podman().args(["load", "-q", "-i"]).arg(&archive));
    // podman files a short `RepoTags` name (`app:latest`) as `localhost/app:latest`, and finds it
    // again by the short name.
    for name in ["example.com/hako/app:1.0", "app:latest"] {
        let inspect = json(&check(podman().args(["image", "inspect", name])));
        assert_eq!(inspect[0]["Id"], img.config.hex(), "{name}");
        assert_eq!(inspect[0]["RootFS"]["Layers"], serde_json::json!(img.diff_ids), "{name}");
    }
}

#[test]
fn exports_are_deterministic_and_merge() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = build(tmp.path());
    let export = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        v
    };
    let oci = |out: &mut Vec<u8>| write_layout_tar(&img.store, &img.manifest, &names(), out).expect("oci");
    let docker =
        |out: &mut Vec<u8>| write_docker_archive(&img.store, &img.manifest, &names(), out).expect("docker");
    assert_eq!(export(&oci), export(&oci));
    assert_eq!(export(&docker), export(&docker));

    let layout = tmp.path().join("layout");
    write_layout_dir(&img.store, &img.manifest, &["app:old".to_string()], &layout).expect("first");
    write_layout_dir(&img.store, &img.manifest, &names(), &layout).expect("second");
    let index = json(&std::fs::read_to_string(layout.join("index.json")).expect("index.json"));
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert_eq!(refs, ["old", "1.0", "latest"]);
}
