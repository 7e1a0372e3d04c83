//! The user-facing examples under `examples/` keep working.
//!
//! Every `Dockerfile` under `examples/` is found by walking the directory, so adding an example
//! tests it. Each one is built with the real binary into an OCI archive. The image config in that
//! archive is then compared with what the Dockerfile's final stage sets. Those expectations come
//! from a deliberately small reading of the Dockerfile written here (not from hako's parser):
//! USER, WORKDIR, ENV, LABEL, EXPOSE, VOLUME, CMD, ENTRYPOINT, HEALTHCHECK, STOPSIGNAL.
//!
//! Also: `make image` in `examples/makefile`, the Kubernetes context built from a ConfigMap-style
//! volume (symlinks into `..data`), and every YAML file parsed (with PyYAML through python3; the
//! test says why it skips if that is missing) plus the promises the CI and Job files make.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hako::digest::Digest;
use serde_json::{Value, json};

use crate::common::{hako, text};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn examples_dir() -> PathBuf {
    repo().join("examples")
}

fn busybox_context() -> String {
    format!("busybox=oci-layout://{}", repo().join("testdata/busybox").display())
}

/// Every file under `dir` (recursively, hidden ones included, symlinks not followed) for which
/// `keep` holds, sorted.
pub(crate) fn files_under(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs_err::read_dir(&d).expect("read examples dir") {
            let entry = entry.expect("dir entry");
            let kind = entry.file_type().expect("file type");
            let path = entry.path();
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file() && keep(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn example_dockerfiles() -> Vec<PathBuf> {
    files_under(&examples_dir(), &|p| p.file_name().is_some_and(|n| n == "Dockerfile"))
}

/// `examples/<...>` for messages.
fn short(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

/// `hako build` with a fresh store in `tmp`, the offline busybox base, and an OCI archive output
/// at `tmp/x.tar` (image ID in `tmp/iid`).
fn build_example(context: &Path, tmp: &Path) -> Output {
    let mut cmd = hako();
    cmd.args(["build", "--progress=plain", "--root"])
        .arg(tmp.join("store"))
        .args(["--build-context", &busybox_context()])
        .arg("--iidfile")
        .arg(tmp.join("iid"))
        .arg("-o")
        .arg(format!("type=oci,dest={}", tmp.join("x.tar").display()))
        .arg(context)
        .env_remove("SOURCE_DATE_EPOCH");
    cmd.output().expect("run hako")
}

/// An OCI image archive, read back: the (single) image's manifest and config, blob digests checked.
struct OciImage {
    index: Value,
    manifest: Value,
    config: Value,
    config_digest: String,
    blobs: HashMap<String, Vec<u8>>,
}

fn read_oci_tar(path: &Path) -> OciImage {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut archive = tar::Archive::new(fs_err::File::open(path).expect("open OCI archive"));
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().expect("entry path").to_string_lossy().trim_start_matches("./").to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        files.insert(name, data);
    }
    let layout: Value =
        serde_json::from_slice(files.get("oci-layout").expect("oci-layout file")).expect("json");
    assert_eq!(layout["imageLayoutVersion"], "1.0.0", "{}", path.display());
    let index: Value =
        serde_json::from_slice(files.get("index.json").expect("index.json")).expect("index json");
    let mut blobs = HashMap::new();
    for (name, data) in &files {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let digest = format!("sha256:{hex}");
            assert_eq!(Digest::of(data).to_string(), digest, "blob {name} does not match its name");
            blobs.insert(digest, data.clone());
        }
    }
    let manifests = index["manifests"].as_array().expect("index manifests");
    assert_eq!(manifests.len(), 1, "one image in {}: {index}", path.display());
    let blob = |d: &Value| -> Value {
        let d = d.as_str().expect("digest string");
        serde_json::from_slice(blobs.get(d).unwrap_or_else(|| panic!("missing blob {d}"))).expect("blob json")
    };
    let manifest = blob(&manifests[0]["digest"]);
    let config_digest = manifest["config"]["digest"].as_str().expect("config digest").to_string();
    let config = blob(&manifest["config"]["digest"]);
    OciImage { index, manifest, config, config_digest, blobs }
}

/// The files of an image's layers (gzip tars), later layers winning: path -> (type, contents).
fn layer_files(img: &OciImage) -> BTreeMap<String, (tar::EntryType, Vec<u8>)> {
    let mut files = BTreeMap::new();
    for layer in img.manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().expect("layer digest");
        let gz = flate2::read::GzDecoder::new(&img.blobs[digest][..]);
        let mut archive = tar::Archive::new(gz);
        for entry in archive.entries().expect("layer entries") {
            let mut entry = entry.expect("layer entry");
            let name = entry.path().expect("path").to_string_lossy().trim_start_matches("./").to_string();
            let kind = entry.header().entry_type();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read layer entry");
            files.insert(name, (kind, data));
        }
    }
    files
}

// ---- a small, independent reading of a Dockerfile's final stage ----

/// Logical instruction lines: comments and blank lines dropped, `\` continuations joined,
/// heredoc bodies skipped.
fn logical_lines(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut heredoc: Option<String> = None;
    for line in src.lines() {
        if let Some(end) = &heredoc {
            if line.trim_start_matches('\t') == end {
                heredoc = None;
            }
            continue;
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            cur.push_str(body);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let full = std::mem::take(&mut cur);
        heredoc = heredoc_end(&full);
        out.push(full);
    }
    out
}

/// The terminator of a heredoc opened on `line` (`<<EOF`, `<<-EOF`, `<<"EOF"`).
fn heredoc_end(line: &str) -> Option<String> {
    let rest = &line[line.find("<<")? + 2..];
    let word: String = rest
        .trim_start_matches('-')
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// Whitespace-separated words; quotes group and are removed.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// `KEY=VALUE …` pairs, or the legacy `KEY VALUE` form of ENV/LABEL.
fn pairs(args: &str) -> Vec<(String, String)> {
    let w = words(args);
    if w.first().is_some_and(|first| !first.contains('=')) {
        return vec![(w[0].clone(), w[1..].join(" "))];
    }
    w.iter().filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `$NAME` / `${NAME}` replaced from `vars`; `None` if anything unknown is left.
fn expand(value: &str, vars: &HashMap<String, String>) -> Option<String> {
    let mut v = value.to_string();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        v = v.replace(&format!("${{{name}}}"), &vars[name]).replace(&format!("${name}"), &vars[name]);
    }
    (!v.contains('$')).then_some(v)
}

/// Exec form (JSON array), else shell form `["/bin/sh", "-c", …]`.
fn command_form(args: &str) -> Value {
    match serde_json::from_str::<Vec<String>>(args) {
        Ok(v) => json!(v),
        Err(_) => json!(["/bin/sh", "-c", args]),
    }
}

/// One expected config value: a JSON pointer into the config and the value, or just "present".
enum Expect {
    Eq(String, Value),
    Has(String),
    Missing(String),
}

/// What the final stage of `src` sets in the image config.
fn expectations(src: &str) -> Vec<Expect> {
    let lines = logical_lines(src);
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut start = 0;
    for (i, line) in lines.iter().enumerate() {
        let (kw, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if kw.eq_ignore_ascii_case("FROM") {
            start = i + 1;
        }
        if kw.eq_ignore_ascii_case("ARG") {
            // `ARG NAME=default` sets a default; a bare `ARG NAME` (re-declaring a global) keeps it.
            for w in words(args) {
                if let Some((k, v)) = w.split_once('=') {
                    vars.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    let mut env: BTreeMap<String, Value> = BTreeMap::new();
    let mut labels: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut out = Vec::new();
    let (mut cmd, mut entrypoint) = (None, None);
    for line in &lines[start..] {
        let (kw, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let args = args.trim();
        match kw.to_ascii_uppercase().as_str() {
            "USER" => out.push(Expect::Eq("/config/User".into(), json!(args))),
            "WORKDIR" if args.starts_with('/') && !args.contains('$') => {
                out.push(Expect::Eq("/config/WorkingDir".into(), json!(args)));
            }
            "ENV" => {
                for (k, v) in pairs(args) {
                    let expanded = expand(&v, &vars);
                    if let Some(e) = &expanded {
                        vars.insert(k.clone(), e.clone());
                    }
                    env.insert(k, expanded.map_or(Value::Null, Value::from));
                }
            }
            "LABEL" => {
                for (k, v) in pairs(args) {
                    labels.insert(k, expand(&v, &vars));
                }
            }
            "EXPOSE" => {
                for port in words(args) {
                    let port = if port.contains('/') { port } else { format!("{port}/tcp") };
                    out.push(Expect::Has(format!("/config/ExposedPorts/{}", port.replace('/', "~1"))));
                }
            }
            "VOLUME" => {
                let vols = serde_json::from_str::<Vec<String>>(args).unwrap_or_else(|_| words(args));
                for v in vols {
                    out.push(Expect::Has(format!("/config/Volumes/{}", v.replace('/', "~1"))));
                }
            }
            "CMD" => cmd = Some(command_form(args)),
            "ENTRYPOINT" => {
                entrypoint = Some(command_form(args));
                cmd = None; // BuildKit drops an inherited CMD when ENTRYPOINT is set
            }
            "STOPSIGNAL" => out.push(Expect::Eq("/config/StopSignal".into(), json!(args))),
            "HEALTHCHECK" => {
                let rest =
                    args.split_whitespace().skip_while(|w| w.starts_with("--")).collect::<Vec<_>>().join(" ");
                let test = match rest.split_once(char::is_whitespace) {
                    _ if rest.eq_ignore_ascii_case("NONE") => json!(["NONE"]),
                    Some((c, body)) if c.eq_ignore_ascii_case("CMD") => {
                        match serde_json::from_str::<Vec<String>>(body.trim()) {
                            Ok(mut v) => {
                                v.insert(0, "CMD".into());
                                json!(v)
                            }
                            Err(_) => json!(["CMD-SHELL", body.trim()]),
                        }
                    }
                    _ => panic!("unreadable HEALTHCHECK: {line}"),
                };
                out.push(Expect::Eq("/config/Healthcheck/Test".into(), test));
            }
            _ => {}
        }
    }
    for (k, v) in env {
        out.push(match v {
            Value::String(v) => Expect::Eq(format!("/config/Env/{k}"), json!(v)),
            _ => Expect::Has(format!("/config/Env/{k}")),
        });
    }
    for (k, v) in labels {
        let ptr = format!("/config/Labels/{}", k.replace('~', "~0").replace('/', "~1"));
        out.push(match v {
            Some(v) => Expect::Eq(ptr, json!(v)),
            None => Expect::Has(ptr),
        });
    }
    match (entrypoint, cmd) {
        (Some(ep), cmd) => {
            out.push(Expect::Eq("/config/Entrypoint".into(), ep));
            out.push(match cmd {
                Some(c) => Expect::Eq("/config/Cmd".into(), c),
                None => Expect::Missing("/config/Cmd".into()),
            });
        }
        (None, Some(c)) => out.push(Expect::Eq("/config/Cmd".into(), c)),
        (None, None) => {}
    }
    out
}

/// The config with `Env` turned into an object, so `/config/Env/NAME` pointers work.
fn pointer_view(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(env) = c["config"]["Env"].as_array() {
        let map: serde_json::Map<String, Value> = env
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        c["config"]["Env"] = Value::Object(map);
    }
    c
}

/// Mismatches between `config` and the expectations, one message each.
fn check_config(config: &Value, expected: &[Expect]) -> Vec<String> {
    let view = pointer_view(config);
    let mut bad = Vec::new();
    for e in expected {
        match e {
            Expect::Eq(ptr, want) => {
                let got = view.pointer(ptr);
                if got != Some(want) {
                    bad.push(format!(
                        "{ptr}: want {want}, got {}",
                        got.map_or("nothing".into(), Value::to_string)
                    ));
                }
            }
            Expect::Has(ptr) => {
                if view.pointer(ptr).is_none() {
                    bad.push(format!("{ptr}: missing"));
                }
            }
            Expect::Missing(ptr) => {
                if let Some(got) = view.pointer(ptr).filter(|v| !v.is_null()) {
                    bad.push(format!("{ptr}: want none, got {got}"));
                }
            }
        }
    }
    bad
}

#[test]
fn reader_understands_the_forms_the_examples_use() {
    let src = "# syntax=docker/dockerfile:1\nARG V=1\nFROM busybox AS a\nCOPY <<EOF /x\nUSER root\nEOF\n\
               FROM a\nARG V\nLABEL one=\"two words\" \\\n      v=\"${V}\"\nENV A=b\nEXPOSE 80 53/udp\n\
               HEALTHCHECK --interval=5s CMD [\"true\"]\nUSER app\nENTRYPOINT [\"x\"]\n";
    let got: Vec<String> = expectations(src)
        .iter()
        .map(|e| match e {
            Expect::Eq(p, v) => format!("{p}={v}"),
            Expect::Has(p) => format!("{p}?"),
            Expect::Missing(p) => format!("{p}!"),
        })
        .collect();
    assert_eq!(
        got,
        [
            "/config/ExposedPorts/80~1tcp?",
            "/config/ExposedPorts/53~1udp?",
            "/config/Healthcheck/Test=[\"CMD\",\"true\"]",
            "/config/User=\"app\"",
            "/config/Env/A=\"b\"",
            "/config/Labels/one=\"two words\"",
            "/config/Labels/v=\"1\"",
            "/config/Entrypoint=[\"x\"]",
            "/config/Cmd!",
        ]
    );
}

#[test]
fn every_example_dockerfile_builds_offline_with_the_config_it_sets() {
    let dockerfiles = example_dockerfiles();
    assert!(
        dockerfiles.iter().any(|d| d.ends_with("hello/Dockerfile")),
        "examples/hello/Dockerfile not found: {dockerfiles:?}"
    );
    let mut failures = Vec::new();
    for dockerfile in &dockerfiles {
        let name = short(dockerfile);
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = build_example(dockerfile.parent().expect("parent"), tmp.path());
        if !out.status.success() {
            failures.push(format!("{name}: hako build failed ({}):\n{}", out.status, text(&out.stderr)));
            continue;
        }
        let img = read_oci_tar(&tmp.path().join("x.tar"));
        let iid = fs_err::read_to_string(tmp.path().join("iid")).expect("iid file");
        if iid.trim() != img.config_digest {
            failures.push(format!(
                "{name}: --iidfile has {iid:?}, the archive's config is {}",
                img.config_digest
            ));
        }
        let src = fs_err::read_to_string(dockerfile).expect("read Dockerfile");
        let expected = expectations(&src);
        if expected.is_empty() {
            failures.push(format!("{name}: its final stage sets nothing this test can check"));
        }
        for problem in check_config(&img.config, &expected) {
            failures.push(format!("{name}: {problem}"));
        }
        // Without SOURCE_DATE_EPOCH, timestamps are hako's default epoch (reproducible builds).
        if img.config["created"] != "1980-01-01T00:00:00Z" {
            failures.push(format!("{name}: created is {}", img.config["created"]));
        }
        eprintln!("{name}: built, {} config values checked", expected.len());
    }
    assert!(failures.is_empty(), "{} problem(s):\n{}", failures.len(), failures.join("\n"));
}

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

/// `make -C examples/makefile TARGET` with the binary under test, output and store in `tmp`.
fn make(target: &str, tmp: &Path) -> Output {
    Command::new("make")
        .arg("-C")
        .arg(examples_dir().join("makefile"))
        .arg(target)
        .arg(format!("HAKO={}", env!("CARGO_BIN_EXE_hako")))
        .arg(format!("OUT={}", tmp.join("out").display()))
        .arg(format!("HAKO_FLAGS=--progress=plain --root {}", tmp.join("store").display()))
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("run make")
}

/// What `created` should be: the last commit's time in a git checkout, else hako's default epoch.
fn expected_created() -> Option<String> {
    let git = Command::new("git")
        .arg("-C")
        .arg(examples_dir().join("makefile"))
        .args(["log", "-1", "--format=%ct"])
        .output();
    let epoch = match git {
        Ok(o) if o.status.success() && !o.stdout.trim_ascii().is_empty() => {
            text(&o.stdout).trim().to_string()
        }
        _ => return Some("1980-01-01T00:00:00Z".into()),
    };
    let date = Command::new("date").args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"]).output();
    match date {
        Ok(o) if o.status.success() => Some(text(&o.stdout).trim().to_string()),
        _ => {
            eprintln!("not checking the timestamp: GNU date could not format {epoch}");
            None
        }
    }
}

#[test]
fn makefile_image_target_writes_the_archive_and_image_id() {
    if !have("make") {
        crate::common::skip("make is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = make("image", tmp.path());
    assert!(out.status.success(), "make image failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    let archive = tmp.path().join("out/image.oci.tar");
    let iid_file = tmp.path().join("out/image.iid");
    assert!(archive.is_file(), "no {}", archive.display());
    assert!(iid_file.is_file(), "no {}", iid_file.display());
    let iid = fs_err::read_to_string(&iid_file).expect("iid");
    let img = read_oci_tar(&archive);
    assert_eq!(iid.trim(), img.config_digest, "image ID is the config digest");
    assert_eq!(
        img.index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/hako-example/site:dev",
        "TAG default"
    );
    if let Some(created) = expected_created() {
        assert_eq!(img.config["created"], created.as_str(), "SOURCE_DATE_EPOCH from git");
    }
    let files = layer_files(&img);
    assert!(files.contains_key("www/index.html"), "{:?}", files.keys().collect::<Vec<_>>());

    let out = make("clean", tmp.path());
    assert!(out.status.success(), "make clean failed:\n{}", text(&out.stderr));
    assert!(!tmp.path().join("out").exists(), "make clean left {}", tmp.path().join("out").display());
}

/// What `kubectl create configmap --from-file=DIR` mounted as a volume looks like (a Secret's
/// volume too): the files in a timestamped hidden directory, `..data` pointing at it, and one
/// symlink per file.
pub(crate) fn configmap_volume(files: &Path, mount: &Path) {
    let data = mount.join("..2026_01_01_00_00_00.000000001");
    fs_err::create_dir_all(&data).expect("mkdir");
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.000000001", mount.join("..data")).expect("symlink");
    for file in files_under(files, &|_| true) {
        let name = file.file_name().expect("name");
        fs_err::copy(&file, data.join(name)).expect("copy");
        std::os::unix::fs::symlink(Path::new("..data").join(name), mount.join(name)).expect("symlink");
    }
}

#[test]
fn kubernetes_context_builds_from_a_configmap_volume() {
    let context = examples_dir().join("kubernetes/context");
    assert!(
        files_under(&context, &|_| true).iter().all(|f| f.parent() == Some(context.as_path())),
        "a ConfigMap holds no subdirectories: keep examples/kubernetes/context flat"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let mount = tmp.path().join("context");
    configmap_volume(&context, &mount);
    let out = build_example(&mount, tmp.path());
    assert!(out.status.success(), "build from the ConfigMap layout failed:\n{}", text(&out.stderr));
    let img = read_oci_tar(&tmp.path().join("x.tar"));
    let src = fs_err::read_to_string(context.join("Dockerfile")).expect("Dockerfile");
    let problems = check_config(&img.config, &expectations(&src));
    assert!(problems.is_empty(), "{problems:#?}");
    let files = layer_files(&img);
    for name in ["app.conf", "logging.conf"] {
        let (kind, data) =
            files.get(&format!("config/{name}")).unwrap_or_else(|| panic!("config/{name}: {files:?}"));
        assert_eq!(
            *kind,
            tar::EntryType::Regular,
            "config/{name} is a regular file, not the volume's symlink"
        );
        assert_eq!(data, &fs_err::read(context.join(name)).expect("read"), "config/{name}");
    }
    assert!(!files.keys().any(|f| f.contains("..data")), "{:?}", files.keys().collect::<Vec<_>>());
}

/// Every YAML file under examples/, parsed by PyYAML (all documents) into JSON. `None` after
/// saying why when python3 or PyYAML is missing.
fn parsed_yaml() -> Option<Vec<(PathBuf, Value)>> {
    let files = files_under(&examples_dir(), &|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"));
    assert!(!files.is_empty(), "no YAML files under examples/");
    let docs = parse_yaml(&files)?;
    Some(files.into_iter().zip(docs).collect())
}

/// `files` parsed by PyYAML, each into a JSON array of its documents (so a test reads a CI file as
/// GitLab, GitHub or kubectl would). `None` after saying why when python3 or PyYAML is missing;
/// YAML that does not parse fails the test.
pub(crate) fn parse_yaml(files: &[PathBuf]) -> Option<Vec<Value>> {
    let probe = Command::new("python3").args(["-c", "import yaml"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(_) => {
            crate::common::skip("the YAML checks: PyYAML is not installed (pip install pyyaml)");
            return None;
        }
        Err(e) => {
            crate::common::skip(&format!("the YAML checks: python3 cannot be run ({e})"));
            return None;
        }
    }
    let script = "import json, sys, yaml\n\
                  docs = [list(yaml.safe_load_all(open(p, encoding='utf-8'))) for p in sys.argv[1:]]\n\
                  json.dump(docs, sys.stdout, default=str)\n";
    let out = Command::new("python3").args(["-c", script]).args(files).output().expect("python3");
    assert!(out.status.success(), "YAML that does not parse:\n{}", text(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("json from python"))
}

/// Every string inside `v`, joined by newlines (scripts, args, run steps).
fn all_strings(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(all_strings).collect::<Vec<_>>().join("\n"),
        Value::Object(o) => o.values().map(all_strings).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// What every CI example's build does: pushes, with a registry cache it reads and writes.
const CI_BUILD_FLAGS: [&str; 5] =
    ["hako build", "--push", "--cache-from", "--cache-to", "type=registry,ref="];

fn doc<'a>(yaml: &'a [(PathBuf, Value)], rel: &str) -> &'a Value {
    let (_, docs) =
        yaml.iter().find(|(p, _)| p.ends_with(rel)).unwrap_or_else(|| panic!("no examples/{rel}"));
    docs
}

/// The YAML block of README.md's "Running in CI" section (the GitLab job), dedented, in a file
/// (with the directory that holds it).
fn readme_gitlab_job() -> (PathBuf, tempfile::TempDir) {
    let readme = fs_err::read_to_string(repo().join("README.md")).expect("README.md");
    let section = &readme[readme.find("\n## Running in CI\n").expect("README has \"Running in CI\"")..];
    let fence = section.find("```yaml\n").expect("a yaml block in \"Running in CI\"");
    let indent = section[..fence].rsplit('\n').next().expect("line").len();
    let body: Vec<&str> = section[fence..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim() != "```")
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("readme-gitlab.yml");
    fs_err::write(&file, body.join("\n")).expect("write");
    (file, dir)
}

/// The static promises of the CI files; `ci_examples` runs them. Every YAML file parses; no
/// example uses docker-in-docker, a privileged container or a Docker socket; each CI build pushes
/// with a registry cache and credentials; the Kubernetes Job is restricted; and no file under
/// examples/ says something is not built yet. README's GitLab job is the example's, shortened.
#[test]
fn yaml_examples_parse_and_keep_their_promises() {
    for file in files_under(&examples_dir(), &|_| true) {
        let Ok(body) = fs_err::read_to_string(&file) else { continue };
        for stale in
            ["not built yet", "not yet", "release with registry support", "no prebuilt", "does not publish"]
        {
            assert!(
                !body.contains(stale),
                "{} says {stale:?}: everything the examples use is built",
                short(&file)
            );
        }
    }
    let Some(yaml) = parsed_yaml() else { return };
    for (path, docs) in &yaml {
        let docs = docs.as_array().expect("documents");
        assert!(!docs.is_empty() && docs.iter().all(Value::is_object), "{}: expected mappings", short(path));
        let text = all_strings(&Value::Array(docs.clone()));
        for word in ["dind", "privileged: true", "docker.sock", "docker build"] {
            assert!(
                !text.contains(word),
                "{}: no docker-in-docker, privileges or socket ({word})",
                short(path)
            );
        }
    }

    // GitLab: one job in hako's image, credentials written as kaniko's examples do.
    let gitlab = &doc(&yaml, "gitlab-ci/.gitlab-ci.yml")[0];
    assert_eq!(gitlab["build"]["image"]["name"], "$HAKO_IMAGE");
    let script = all_strings(&gitlab["build"]["script"]);
    for needed in CI_BUILD_FLAGS.iter().chain(&[
        "$CI_REGISTRY_IMAGE",
        "$CI_REGISTRY_USER",
        "$CI_REGISTRY_PASSWORD",
        "base64",
        "~/.docker/config.json",
    ]) {
        assert!(script.contains(needed), "the GitLab job lacks {needed}");
    }

    // The README's GitLab job is this job, shortened: the same credentials line, and a build
    // line whose words are all the example's (it builds `.`, not $CONTEXT).
    let readme = readme_gitlab_job();
    let Some(parsed) = parse_yaml(std::slice::from_ref(&readme.0)) else { return };
    let short_job = &parsed[0][0]["build"];
    assert_eq!(short_job["image"]["name"], gitlab["variables"]["HAKO_IMAGE"], "README's job image");
    assert_eq!(short_job["image"]["entrypoint"], gitlab["build"]["image"]["entrypoint"]);
    assert_eq!(short_job["script"][0], gitlab["build"]["script"][0], "README's credentials line");
    let words = |v: &Value| -> Vec<String> {
        v.as_str().expect("script line").split_whitespace().map(|w| w.replace('"', "")).collect()
    };
    let example_words = words(&gitlab["build"]["script"][1]);
    for word in words(&short_job["script"][1]) {
        assert!(word == "." || example_words.contains(&word), "README's GitLab build line has {word:?}");
    }
    assert_eq!(short_job["script"].as_array().map(Vec::len), Some(2));

    // GitHub Actions: on the runner itself, the static binary, credentials from GITHUB_TOKEN.
    let workflow = &doc(&yaml, "github-actions/workflow.yml")[0];
    assert!(workflow.get("on").or_else(|| workflow.get("true")).is_some(), "workflow has no triggers");
    let job = &workflow["jobs"]["image"];
    assert_eq!(job["runs-on"], "ubuntu-latest");
    assert_eq!(job["permissions"]["packages"], "write", "pushing to ghcr.io needs packages: write");
    let steps = all_strings(&job["steps"]);
    for needed in CI_BUILD_FLAGS.iter().chain(&["$HAKO_URL", "secrets.GITHUB_TOKEN", "~/.docker/config.json"])
    {
        assert!(steps.contains(needed), "the workflow lacks {needed}");
    }

    // Kubernetes: the Job runs hako non-root, unprivileged, read-only, with an emptyDir store and
    // the registry credentials from a Secret.
    let docs = doc(&yaml, "kubernetes/job.yaml").as_array().expect("documents");
    let job = docs.iter().find(|d| d["kind"] == "Job").expect("a Job in job.yaml");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 1000);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let hako_container = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| all_strings(&c["command"]).contains("hako"))
        .expect("a container running hako");
    let sc = &hako_container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    let env = |name: &str| -> String {
        hako_container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().expect("env value").to_string())
            .unwrap_or_else(|| panic!("{name} is not set"))
    };
    let mounts = hako_container["volumeMounts"].as_array().expect("volumeMounts");
    let volume_at = |path: &str| -> &Value {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        pod["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == m["name"]).expect("volume")
    };
    let root = env("HAKO_ROOT");
    assert!(volume_at(&root).get("emptyDir").is_some(), "the store ({root}) is an emptyDir");
    let docker_config = env("DOCKER_CONFIG");
    let secret = &volume_at(&docker_config)["secret"];
    assert_eq!(secret["items"], json!([{"key": ".dockerconfigjson", "path": "config.json"}]));
    let args = hako_container["args"].as_array().expect("args");
    let context = args.last().and_then(Value::as_str).expect("context argument");
    assert!(volume_at(context).get("configMap").is_some(), "the context ({context}) is a ConfigMap");
    let args = all_strings(&hako_container["args"]);
    for needed in ["build", "--push", "--cache-from=type=registry,ref=", "--cache-to=type=registry,ref="] {
        assert!(args.contains(needed), "the Job lacks {needed}");
    }
}
