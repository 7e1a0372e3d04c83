//! The CI examples run as their jobs run, in the conditions each claims (issue 11 item 5, issue 12
//! item 5), against a local registry behind htpasswd auth:
//!
//! - `examples/gitlab-ci/.gitlab-ci.yml`: the `build` job's script in hako's own image, as root,
//!   under Docker's default seccomp profile (what GitLab's docker executor gives a job);
//! - `examples/kubernetes/job.yaml`: the Job's container with its securityContext reproduced by
//!   podman (non-root, no new privileges, Docker's default profile standing in for
//!   RuntimeDefault, every capability dropped, a read-only root filesystem) and its volumes (the
//!   ConfigMap and the Secret in the kubelet's `..data` layout, an emptyDir store);
//! - `examples/github-actions/workflow.yml`: the job's `run` steps as scripts on this machine, as
//!   the unprivileged test user, with a runner's environment.
//!
//! Each job runs twice with an empty store, as on stateless CI runners: the first pushes the image
//! and the registry cache, the second gets every step from that cache (`CACHED`, no step output)
//! and pushes the same image. The jobs are read from the YAML (PyYAML), so what runs is what the
//! examples say; the test supplies only what CI would: predefined variables, credentials, the
//! registry's address, and a base image in that registry (standing in for Docker Hub).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{skip, text};
use crate::examples::{configmap_volume, examples_dir, parse_yaml};
use crate::registry_fixture::{PASS, Registry, USER, auth_json, base64};
use crate::run::{LockedDown, have};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Docker's default seccomp profile (`../shared/ci-profiles`).
fn profile() -> PathBuf {
    repo().join("../shared/ci-profiles/docker-default-seccomp.json")
}

/// The static hako (scripts/build-static.sh), what the examples install or put in an image.
fn static_hako() -> PathBuf {
    repo().join("target/x86_64-unknown-linux-musl/release/hako")
}

/// Whether this machine can run `what` in a container: root (podman runs as root here), podman,
/// runc, the seccomp profile and the static binary; says why not.
fn can_run_containers(what: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        skip(&format!("{what}: needs root to run podman"));
        return false;
    }
    if !have("podman") || !have("runc") || !profile().is_file() {
        skip(&format!("{what}: needs podman, runc and ../shared/ci-profiles"));
        return false;
    }
    if !static_hako().is_file() {
        skip(&format!(
            "{what}: no static binary (scripts/build-static.sh makes it; scripts/test.sh runs it)"
        ));
        return false;
    }
    true
}

/// hako's own image (dist/Dockerfile, built by scripts/build-image.sh from the static binary) in
/// `ld`'s directory; returns podman's name for it.
fn hako_image(ld: &LockedDown) -> String {
    let out = Command::new(repo().join("scripts/build-image.sh"))
        .arg(ld.dir.join("image"))
        .output()
        .expect("build-image");
    assert!(out.status.success(), "scripts/build-image.sh: {}{}", text(&out.stdout), text(&out.stderr));
    format!("oci:{}/image:latest", ld.dir.display())
}

/// The documents of `examples/<rel>`; `None` (said why) without PyYAML.
fn example_yaml(rel: &str) -> Option<Vec<Value>> {
    let docs = parse_yaml(&[examples_dir().join(rel)])?;
    Some(docs[0].as_array().expect("documents").clone())
}

/// A YAML scalar as the string CI gives a variable (numbers and booleans as written).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => v.to_string(),
        other => panic!("not a scalar: {other}"),
    }
}

/// A YAML mapping of variables as name → value (empty when absent).
fn variables(v: &Value) -> BTreeMap<String, String> {
    v.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), scalar(v))).collect()
}

/// `cp -a src dst`.
fn copy_tree(src: &Path, dst: &Path) {
    fs_err::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
    let o = Command::new("cp").arg("-a").arg(src).arg(dst).output().expect("cp");
    assert!(o.status.success(), "cp -a {}: {}", src.display(), text(&o.stderr));
}

/// Whether a step printed a line containing `needle` (BuildKit's plain format: `#7 0.052 text`).
fn step_said(log: &str, needle: &str) -> bool {
    log.lines().any(|l| {
        let mut words = l.splitn(3, ' ');
        words.next().is_some_and(|w| w.starts_with('#') && w[1..].parse::<u32>().is_ok())
            && words.next().is_some_and(|w| w.parse::<f64>().is_ok())
            && words.next().is_some_and(|rest| rest.contains(needle))
    })
}

/// The digest the log says it pushed `reference` as (`pushing manifest for REF@sha256:… done`).
fn pushed(log: &str, reference: &str) -> String {
    let prefix = format!("pushing manifest for {reference}@");
    log.lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, rest)| rest.split_whitespace().next().unwrap_or("")))
        .unwrap_or_else(|| panic!("the log says no push of {reference}:\n{log}"))
        .to_string()
}

/// The two runs of a job: the first ran `marker`'s step, pushed `reference` (to the registry's
/// `path`) and the cache; the second, with an empty store, got every step from the registry cache
/// and pushed the same image. `what` names the job in messages.
fn check_cold_then_cached(
    what: &str,
    reg: &Registry,
    path: &str,
    (first, second): (&Output, &Output),
    marker: &str,
) {
    let log1 = format!("{}{}", text(&first.stdout), text(&first.stderr));
    let log2 = format!("{}{}", text(&second.stdout), text(&second.stderr));
    assert!(first.status.success(), "{what}, first run: {:?}\n{log1}", first.status);
    assert!(step_said(&log1, marker), "{what}: the first run ran the RUN step ({marker:?}):\n{log1}");
    assert!(log1.contains("not found; building without it"), "{what}: no cache yet at first:\n{log1}");
    let reference = reg.image(path);
    let digest = pushed(&log1, &reference);
    assert_eq!(reg.digest_of(path), digest, "{what}: the registry has what the first run pushed");

    assert!(second.status.success(), "{what}, second run: {:?}\n{log2}", second.status);
    assert!(
        log2.contains("CACHED") && log2.contains(": 0 steps run, "),
        "{what}: the second run got every step from the registry cache:\n{log2}"
    );
    assert!(!step_said(&log2, marker), "{what}: the second run did not run the RUN step again:\n{log2}");
    assert_eq!(pushed(&log2, &reference), digest, "{what}: both runs push the same image");
    assert_eq!(reg.digest_of(path), digest, "{what}");
}

/// A file of the image at `path` in the registry, as its layers say (later layers win): owner,
/// mode and contents. Read from a `skopeo copy` of it (which checks every blob).
fn pushed_file(reg: &Registry, path: &str, file: &str, scratch: &Path) -> (u64, u64, u32, Vec<u8>) {
    let layout = scratch.join(format!("pulled-{}", path.replace(['/', ':'], "-")));
    let out = reg.copy_to_layout(path, &layout, "pulled");
    assert!(out.status.success(), "skopeo copy {path}: {}", text(&out.stderr));
    let blob = |digest: &str| fs_err::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..]));
    let json =
        |digest: &str| -> Value { serde_json::from_slice(&blob(digest).expect("blob")).expect("json") };
    let index: Value =
        serde_json::from_slice(&fs_err::read(layout.join("index.json")).expect("index")).expect("json");
    let manifest = json(index["manifests"][0]["digest"].as_str().expect("manifest digest"));
    let mut found = None;
    for layer in manifest["layers"].as_array().expect("layers") {
        let data = blob(layer["digest"].as_str().expect("layer digest")).expect("layer");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").to_string_lossy().trim_start_matches("./").to_string();
            if name.trim_end_matches('/') == file {
                let h = entry.header();
                let meta = (h.uid().expect("uid"), h.gid().expect("gid"), h.mode().expect("mode"));
                let mut body = Vec::new();
                entry.read_to_end(&mut body).expect("read");
                found = Some((meta.0, meta.1, meta.2, body));
            }
        }
    }
    found.unwrap_or_else(|| panic!("{file} is not in {path}"))
}

/// Skips (saying why) when podman cannot start containers on this host at all.
fn podman_refused(out: &Output, what: &str) -> bool {
    let err = text(&out.stderr);
    let refused = !out.status.success() && (err.contains("cgroup") || err.contains("OCI permission denied"));
    if refused {
        skip(&format!("{what}: podman cannot run containers here: {err}"));
    }
    refused
}

/// The GitLab example's `build` job, as GitLab's docker executor runs it: its `image` (hako's own,
/// entrypoint cleared), as root, under Docker's default seccomp profile, in the project's checkout,
/// with the YAML's variables and the predefined CI ones; the script lines run by `sh` and stop at
/// the first failure. The job writes the credentials into config.json itself, pulls the base
/// through them, and pushes the image and the cache; hako picks chroot there and says so.
#[test]
fn gitlab_job_runs_in_a_docker_executor_container() {
    const WHAT: &str = "the GitLab example job";
    if !can_run_containers(WHAT) {
        return;
    }
    let Some(docs) = example_yaml("gitlab-ci/.gitlab-ci.yml") else { return };
    let Some(reg) = Registry::start_with_auth() else { return };
    let pipeline = &docs[0];
    let job = &pipeline["build"];
    assert_eq!(job["image"]["name"], "$HAKO_IMAGE", "the job runs in hako's image");
    assert_eq!(job["image"]["entrypoint"], serde_json::json!([""]), "GitLab needs the entrypoint cleared");
    assert!(job.get("services").is_none(), "no docker-in-docker service");
    let script: Vec<String> = job["script"].as_array().expect("script").iter().map(scalar).collect();
    let mut vars = variables(&pipeline["variables"]);
    vars.extend(variables(&job["variables"]));
    assert!(vars.contains_key("BASE_IMAGE") && vars.contains_key("CONTEXT"), "{vars:?}");
    // What GitLab predefines (its registry is ours here), and BASE_IMAGE as a project CI/CD
    // variable would override it: Docker Hub is not reachable from the test.
    let project = "group/greet";
    for (k, v) in [
        ("CI", "true".to_string()),
        ("GITLAB_CI", "true".into()),
        ("CI_PROJECT_DIR", format!("/builds/{project}")),
        ("CI_REGISTRY", reg.host()),
        ("CI_REGISTRY_IMAGE", reg.image(project)),
        ("CI_REGISTRY_USER", USER.into()),
        ("CI_REGISTRY_PASSWORD", PASS.into()),
        ("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567".into()),
        ("CI_COMMIT_SHORT_SHA", "01234567".into()),
        ("BASE_IMAGE", reg.base()),
    ] {
        vars.insert(k.into(), v);
    }

    let ld = LockedDown::new("gitlab-job", profile());
    let image = hako_image(&ld);
    // The checkout: this repository's example at the path CONTEXT names.
    let checkout = ld.dir.join("checkout");
    copy_tree(&examples_dir().join("gitlab-ci"), &checkout.join(&vars["CONTEXT"]));
    fs_err::write(ld.dir.join("job.sh"), format!("set -e\n{}\n", script.join("\n"))).expect("write");
    let run = || {
        let mut cmd = ld.podman(None);
        // --network host: the registry listens on the host's loopback.
        cmd.args(["--network", "host", "--entrypoint", ""])
            .arg("-v")
            .arg(format!("{}:{}", checkout.display(), vars["CI_PROJECT_DIR"]))
            .args(["-w", &vars["CI_PROJECT_DIR"]]);
        for (k, v) in &vars {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        cmd.arg(&image).args(["sh", "/w/job.sh"]).output().expect("podman")
    };
    let first = run();
    if podman_refused(&first, WHAT) {
        return;
    }
    let second = run();
    let tag = format!("{project}:{}", vars["CI_COMMIT_SHORT_SHA"]);
    check_cold_then_cached(WHAT, &reg, &tag, (&first, &second), "Hello from a hako-built image, CI!");
    let err = text(&first.stderr);
    assert!(err.contains("isolation chroot: running as root"), "the job says it picked chroot:\n{err}");
    // The step's chown is in the pushed layer (chroot runs steps as real root).
    let (uid, gid, mode, _) = pushed_file(&reg, &tag, "var/lib/greet", &ld.dir);
    assert_eq!((uid, gid, mode & 0o7777), (1000, 1000, 0o750), "/var/lib/greet as the RUN step made it");
}

/// The Kubernetes example's Job, its pod reproduced with podman from the YAML: `runAsUser`/
/// `runAsGroup` as `--user`, `allowPrivilegeEscalation: false` as no-new-privileges,
/// `seccompProfile: RuntimeDefault` as Docker's default profile, `capabilities.drop: [ALL]` as
/// `--cap-drop ALL`, `readOnlyRootFilesystem` as `--read-only` (without podman's extra tmpfs
/// mounts); the ConfigMap context and the registry Secret (what `kubectl create secret
/// docker-registry` makes) in the kubelet's `..data` layout, read-only, the store an emptyDir.
/// Its args are run as written, with the registry and base image names pointed at the local
/// registry. hako picks ptrace there, and the step's chown is in the pushed layer.
#[test]
fn kubernetes_job_runs_in_a_restricted_pod() {
    const WHAT: &str = "the Kubernetes example Job";
    if !can_run_containers(WHAT) {
        return;
    }
    let Some(docs) = example_yaml("kubernetes/job.yaml") else { return };
    let Some(reg) = Registry::start_with_auth() else { return };
    let job = docs.iter().find(|d| d["kind"] == "Job").expect("a Job in job.yaml");
    let pod = &job["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    let c = &containers[0];
    let psc = &pod["securityContext"];
    let sc = &c["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    let (uid, gid) =
        (psc["runAsUser"].as_u64().expect("runAsUser"), psc["runAsGroup"].as_u64().expect("gid"));
    assert_ne!(uid, 0, "non-root");
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["capabilities"].get("add").is_none(), "no capability added");
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert!(sc.get("privileged").is_none_or(|p| p == false));

    let ld = LockedDown::new("k8s-job", profile());
    let image = hako_image(&ld);
    let args: Vec<String> = c["args"].as_array().expect("args").iter().map(scalar).collect();
    let host = "registry.example.com";
    assert!(args.iter().any(|a| a.contains(host)), "the Job pushes to {host}: {args:?}");
    // Where the user puts their registry and base image, the local registry's.
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.strip_prefix("--build-arg=BASE=") {
            Some(_) => format!("--build-arg=BASE={}", reg.base()),
            None => a.replace(host, &reg.host()),
        })
        .collect();
    let command: Vec<String> = c["command"].as_array().expect("command").iter().map(scalar).collect();
    assert_eq!(command.len(), 1, "one entrypoint word: {command:?}");

    let run = |attempt: &str| {
        let mut cmd = ld.bare();
        cmd.args(["--user", &format!("{uid}:{gid}"), "--security-opt", "no-new-privileges"])
            .args(["--cap-drop", "ALL", "--read-only", "--read-only-tmpfs=false"])
            // The registry listens on the host's loopback.
            .args(["--network", "host"]);
        if let Some(fs_group) = psc["fsGroup"].as_u64() {
            cmd.args(["--group-add", &fs_group.to_string()]);
        }
        for e in c["env"].as_array().into_iter().flatten() {
            cmd.arg("-e").arg(format!("{}={}", scalar(&e["name"]), scalar(&e["value"])));
        }
        for m in c["volumeMounts"].as_array().expect("volumeMounts") {
            let name = scalar(&m["name"]);
            let volume = pod["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap_or_else(|| panic!("no volume {name}"));
            let source = ld.dir.join(format!("{attempt}-{name}"));
            if volume.get("configMap").is_some() {
                configmap_volume(&examples_dir().join("kubernetes/context"), &source);
            } else if let Some(secret) = volume.get("secret") {
                // `kubectl create secret docker-registry`: `.dockerconfigjson`, here as the item's path.
                let items = secret["items"].as_array().expect("items");
                assert_eq!(items.len(), 1);
                assert_eq!(items[0]["key"], ".dockerconfigjson");
                let files = ld.dir.join(format!("{attempt}-{name}-files"));
                fs_err::create_dir_all(&files).expect("mkdir");
                let mut config: Value =
                    serde_json::from_str(&auth_json(&reg.host(), USER, PASS)).expect("json");
                config["auths"][reg.host()]["username"] = USER.into();
                config["auths"][reg.host()]["password"] = PASS.into();
                assert_eq!(config["auths"][reg.host()]["auth"], base64(format!("{USER}:{PASS}").as_bytes()));
                fs_err::write(files.join(scalar(&items[0]["path"])), config.to_string()).expect("write");
                configmap_volume(&files, &source);
            } else if volume.get("emptyDir").is_some() {
                // The kubelet makes an emptyDir world-writable.
                fs_err::create_dir_all(&source).expect("mkdir");
                let o = Command::new("chmod").arg("0777").arg(&source).output().expect("chmod");
                assert!(o.status.success());
            } else {
                panic!("volume {name}: this test knows configMap, secret and emptyDir volumes: {volume}");
            }
            let ro = if m["readOnly"] == true { ":ro" } else { "" };
            cmd.arg("-v").arg(format!("{}:{}{ro}", source.display(), scalar(&m["mountPath"])));
        }
        cmd.args(["--entrypoint", &command[0]]).arg(&image).args(&args).output().expect("podman")
    };
    let first = run("first");
    if podman_refused(&first, WHAT) {
        return;
    }
    let second = run("second");
    let tag = args
        .iter()
        .find_map(|a| a.strip_prefix("--tag="))
        .and_then(|t| t.strip_prefix(&format!("{}/", reg.host())))
        .expect("--tag=REGISTRY/…");
    check_cold_then_cached(WHAT, &reg, tag, (&first, &second), "1000     1000");
    let err = text(&first.stderr);
    assert!(
        err.contains("isolation ptrace: user namespaces are denied"),
        "the Job says it picked ptrace:\n{err}"
    );
    // Root is emulated, and what the step did is what the layer says.
    let (uid, gid, mode, body) = pushed_file(&reg, tag, "config/app.conf", &ld.dir);
    assert_eq!((uid, gid, mode & 0o7777), (1000, 1000, 0o440), "config/app.conf as the RUN step left it");
    assert_eq!(body, fs_err::read(examples_dir().join("kubernetes/context/app.conf")).expect("read"));
}

/// A GitHub Actions runner for the GitHub example's job: each `run` step in `bash -eo pipefail` as
/// the unprivileged test user, in a workspace holding the checkout, with the workflow's, job's and
/// step's `env` (the `${{ … }}` it uses filled in), the runner's variables, and `GITHUB_PATH`
/// applied between steps.
struct Runner {
    user: String,
    root: PathBuf,
    steps: Vec<(String, BTreeMap<String, String>, String)>,
}

impl Runner {
    /// Runs every step on a fresh runner (new workspace, home and RUNNER_TEMP under `root/name`),
    /// with `front` (if any) in front of PATH. The output of all the steps, and whether they all
    /// succeeded.
    fn run(&self, name: &str, front: Option<&Path>) -> Output {
        let base = self.root.join(name);
        let (workspace, home, temp) = (base.join("workspace"), base.join("home"), base.join("temp"));
        copy_tree(&examples_dir().join("github-actions"), &workspace.join("examples/github-actions"));
        fs_err::create_dir_all(&home).expect("mkdir");
        fs_err::create_dir_all(&temp).expect("mkdir");
        let github_path = base.join("github_path");
        fs_err::write(&github_path, "").expect("write");
        let o = Command::new("chown")
            .args(["-R", &format!("{0}:{0}", self.user)])
            .arg(&base)
            .output()
            .expect("chown");
        assert!(o.status.success(), "chown: {}", text(&o.stderr));
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        for (i, (step, env, script)) in self.steps.iter().enumerate() {
            let added = fs_err::read_to_string(&github_path).expect("GITHUB_PATH");
            let mut path: Vec<String> = front.iter().map(|p| p.display().to_string()).collect();
            path.extend(added.lines().rev().map(str::to_string));
            path.push("/usr/local/bin:/usr/bin:/bin".into());
            let file = base.join(format!("step-{i}.sh"));
            fs_err::write(&file, script).expect("write step");
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", &self.user, "--", "env", "-i"]);
            for (k, v) in env {
                cmd.arg(format!("{k}={v}"));
            }
            let out = cmd
                .arg(format!("PATH={}", path.join(":")))
                .arg(format!("HOME={}", home.display()))
                .arg(format!("RUNNER_TEMP={}", temp.display()))
                .arg(format!("GITHUB_WORKSPACE={}", workspace.display()))
                .arg(format!("GITHUB_PATH={}", github_path.display()))
                .args([
                    "CI=true",
                    "GITHUB_ACTIONS=true",
                    "RUNNER_OS=Linux",
                    "GITHUB_SERVER_URL=https://github.com",
                ])
                .args(["GITHUB_REPOSITORY=Example-Org/Docs-Site", &format!("GITHUB_ACTOR={USER}")])
                .arg("GITHUB_SHA=0123456789abcdef0123456789abcdef01234567")
                .args(["bash", "--noprofile", "--norc", "-eo", "pipefail"])
                .arg(&file)
                .current_dir(&workspace)
                .output()
                .expect("runuser");
            stdout.extend(format!("== step: {step}\n").bytes().chain(out.stdout));
            stderr.extend(format!("== step: {step}\n").bytes().chain(out.stderr));
            if !out.status.success() {
                return Output { status: out.status, stdout, stderr };
            }
        }
        let ok = Command::new("true").status().expect("true");
        Output { status: ok, stdout, stderr }
    }
}

/// `${{ github.actor }}` and `${{ secrets.GITHUB_TOKEN }}` as GitHub fills them in (the registry's
/// user and password here); any other expression fails the test, which would not know its value.
fn fill_expressions(value: &str) -> String {
    let filled = value.replace("${{ github.actor }}", USER).replace("${{ secrets.GITHUB_TOKEN }}", PASS);
    assert!(!filled.contains("${{"), "an expression this test cannot fill in: {value}");
    filled
}

/// The GitHub Actions example's job on this machine as the unprivileged test user (a runner's
/// user), its steps as the workflow writes them: install the static hako from `HAKO_URL` (a
/// `file://` URL here), `hako info`, credentials into config.json, build and push with the
/// registry cache. The workflow's `env` is adjusted as its comment says (the registry, the base
/// image, the binary's URL). On ubuntu-latest AppArmor leaves the runner's user no user
/// namespace, so auto picks ptrace there; this machine allows them, so the first run forces that
/// choice with a `hako` wrapper in front of PATH. The second run is as this machine allows, and
/// gets every step from the cache the ptrace run pushed.
#[test]
fn github_actions_steps_run_on_the_host_as_a_user() {
    const WHAT: &str = "the GitHub Actions example";
    let user = "hakotest";
    if !nix::unistd::geteuid().is_root() {
        skip(&format!("{WHAT}: needs root to run the steps as {user}"));
        return;
    }
    let has_user = Command::new("id").arg(user).output().is_ok_and(|o| o.status.success());
    if !has_user || !have("runuser") || !have("curl") || !have("bash") {
        skip(&format!("{WHAT}: needs runuser, curl, bash and the user {user} (scripts/test-user.sh)"));
        return;
    }
    if !static_hako().is_file() {
        skip(&format!("{WHAT}: no static binary (scripts/build-static.sh makes it)"));
        return;
    }
    let Some(docs) = example_yaml("github-actions/workflow.yml") else { return };
    let Some(reg) = Registry::start_with_auth() else { return };
    let workflow = &docs[0];
    let job = &workflow["jobs"]["image"];
    assert_eq!(job["runs-on"], "ubuntu-latest");
    assert!(job.get("container").is_none(), "the steps run on the runner itself");
    let tmp = tempfile::Builder::new().prefix("hako-gha-").tempdir().expect("tempdir");
    let dist = tmp.path().join("dist");
    fs_err::create_dir_all(&dist).expect("mkdir");
    fs_err::copy(static_hako(), dist.join("hako")).expect("copy hako");

    let mut env = variables(&workflow["env"]);
    for (k, v) in [
        ("REGISTRY", reg.host()),
        ("BASE_IMAGE", reg.base()),
        ("HAKO_URL", format!("file://{}", dist.join("hako").display())),
    ] {
        assert!(env.contains_key(k), "the workflow's env sets {k}");
        env.insert(k.into(), v);
    }
    env.extend(variables(&job["env"]));
    let mut steps = Vec::new();
    for step in job["steps"].as_array().expect("steps") {
        if let Some(uses) = step.get("uses") {
            // The checkout is the workspace the runner makes; nothing else may be needed.
            assert!(scalar(uses).starts_with("actions/checkout@"), "a step this test cannot run: {uses}");
            continue;
        }
        let mut step_env = env.clone();
        step_env.extend(variables(&step["env"]).into_iter().map(|(k, v)| (k, fill_expressions(&v))));
        let script = fill_expressions(&scalar(&step["run"]));
        steps.push((scalar(&step["name"]), step_env, script));
    }
    let runner = Runner { user: user.into(), root: tmp.path().to_path_buf(), steps };

    // ubuntu-latest's choice, forced: `hako build` with --isolation=ptrace.
    let wrapper = tmp.path().join("ubuntu-latest");
    fs_err::create_dir_all(&wrapper).expect("mkdir");
    let installed = tmp.path().join("first/temp/bin/hako");
    fs_err::write(
        wrapper.join("hako"),
        format!(
            "#!/bin/sh\nif [ \"$1\" = build ]; then shift; exec {0} build --isolation=ptrace \"$@\"; fi\nexec {0} \"$@\"\n",
            installed.display()
        ),
    )
    .expect("write wrapper");
    let o =
        Command::new("chmod").arg("0755").arg(&wrapper).arg(wrapper.join("hako")).output().expect("chmod");
    assert!(o.status.success());
    let o = Command::new("chmod").arg("0755").arg(tmp.path()).output().expect("chmod");
    assert!(o.status.success());

    let first = runner.run("first", Some(&wrapper));
    let second = runner.run("second", None);
    let path = "example-org/docs-site:latest";
    check_cold_then_cached(WHAT, &reg, path, (&first, &second), "/guide.html");
    let (out1, err1) = (text(&first.stdout), text(&first.stderr));
    // `hako info` (not wrapped) says what auto picks here, and that ptrace is available to this
    // user, as it must be on ubuntu-latest.
    assert!(out1.contains("isolation:  ") && out1.contains("  ptrace    available"), "hako info:\n{out1}");
    assert!(err1.contains("--isolation=ptrace: steps run under ptrace"), "{err1}");
    let sha = reg.digest_of("example-org/docs-site:0123456789ab");
    assert_eq!(sha, reg.digest_of(path), "both tags name one image");
    let (uid, _, _, body) = pushed_file(&reg, path, "srv/docs/sitemap.txt", tmp.path());
    assert_eq!(
        (uid, text(&body)),
        (1000, "/guide.html\n/index.html\n".into()),
        "the sitemap the RUN step wrote"
    );
}
