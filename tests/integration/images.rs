//! Images kept in the store are images: a Makefile builds a base with `-t` and an app `FROM` it
//! (and `COPY --from` it) with no registry, as with `docker build`; `hako images`, `tag`, `save`
//! and `rmi` act on them; `--pull` sends the name to the registry instead.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{hako, podman_load_and_run, text};

fn busybox_layout() -> String {
    format!("oci-layout://{}/testdata/busybox", env!("CARGO_MANIFEST_DIR"))
}

/// Every registry is unreachable (a proxy on a closed port): what a build asks of the network fails
/// at once, and nothing leaves the machine.
fn offline(cmd: &mut Command) -> &mut Command {
    for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"] {
        cmd.env(var, "http://127.0.0.1:9");
    }
    cmd.env_remove("NO_PROXY").env_remove("no_proxy").env_remove("HAKO_ROOT").env_remove("SOURCE_DATE_EPOCH")
}

/// `hako ARGS… --root STORE`, offline.
fn store_cmd(store: &Path, args: &[&str]) -> Output {
    let mut cmd = hako();
    offline(&mut cmd).args(args).arg("--root").arg(store);
    cmd.output().expect("run hako")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: exit {:?}\n{}", out.status.code(), text(&out.stderr));
    text(&out.stdout)
}

/// The project: `base/` (FROM the offline busybox, tagged `acme/base:1`) and `app/` (FROM
/// `acme/base:1`, and a COPY --from it), with a Makefile that builds one then the other.
fn project(dir: &Path) {
    let w = |p: &str, s: &str| {
        let p = dir.join(p);
        fs_err::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs_err::write(p, s).expect("write");
    };
    w("base/Dockerfile", "FROM busybox\nCOPY base.txt /base.txt\n");
    w("base/base.txt", "from the base\n");
    w(
        "app/Dockerfile",
        "FROM acme/base:1\nCOPY --from=docker.io/acme/base:1 /base.txt /copied.txt\nCOPY app.txt /\nCMD [\"cat\", \"/base.txt\", \"/app.txt\"]\n",
    );
    w("app/app.txt", "the app\n");
    w(
        "Makefile",
        &format!(
            "HAKO = {hako}\nSTORE = {store}\n\n\
             app: base\n\t$(HAKO) build --progress=plain --root $(STORE) -t app:1 app\n\n\
             base:\n\t$(HAKO) build --progress=plain --root $(STORE) --build-context busybox={busybox} -t acme/base:1 base\n\n\
             .PHONY: app base\n",
            hako = env!("CARGO_BIN_EXE_hako"),
            store = dir.join("store").display(),
            busybox = busybox_layout(),
        ),
    );
}

#[test]
fn a_makefile_builds_a_base_then_an_app_on_it_with_no_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    project(dir.path());
    let mut make = Command::new("make");
    offline(&mut make).arg("-C").arg(dir.path()).arg("app");
    let out = make.output().expect("run make");
    assert!(out.status.success(), "make app:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    let store = dir.path().join("store");

    // The app's filesystem: the base's file, and the same file copied --from the kept base.
    let local = dir.path().join("local");
    let dest = format!("type=local,dest={}", local.display());
    let app = dir.path().join("app");
    let out = store_cmd(&store, &["build", "--progress=plain", "-o", &dest, app.to_str().expect("utf-8")]);
    ok(&out, "the app, again, to a directory");
    for (file, content) in
        [("base.txt", "from the base\n"), ("copied.txt", "from the base\n"), ("app.txt", "the app\n")]
    {
        assert_eq!(fs_err::read_to_string(local.join(file)).expect(file), content, "{file}");
    }

    // `hako images` lists both, with tags, IDs and sizes.
    let listed = ok(&store_cmd(&store, &["images"]), "hako images");
    let lines: Vec<&str> = listed.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID") && lines[0].ends_with("SIZE"),
        "{listed}"
    );
    for (repo, tag) in [("acme/base", "1"), ("app", "1")] {
        assert!(
            lines.iter().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() == 5
                    && cols[0] == repo
                    && cols[1] == tag
                    && cols[2].len() == 12
                    && cols[4].ends_with('B')
            }),
            "{repo}:{tag} not listed:\n{listed}"
        );
    }

    // tag, then save the new name as a docker archive that podman loads and runs.
    ok(&store_cmd(&store, &["tag", "app:1", "localhost/app:2"]), "hako tag");
    let ids = ok(&store_cmd(&store, &["images", "-q", "app"]), "images -q app");
    let listed = ok(&store_cmd(&store, &["images", "localhost/app"]), "images localhost/app");
    assert!(listed.contains(ids.trim()), "the new name is the same image:\n{listed}\n{ids}");
    let archive = dir.path().join("app.tar");
    ok(&store_cmd(&store, &["save", "-o", archive.to_str().expect("utf-8"), "localhost/app:2"]), "hako save");
    if let Some(run) =
        podman_load_and_run(dir.path(), &archive, "localhost/app:2", "podman load of hako save")
    {
        assert_eq!(text(&run.stdout), "from the base\nthe app\n");
    }
    let oci = dir.path().join("app.oci.tar");
    ok(
        &store_cmd(&store, &["save", "--format", "oci", "-o", oci.to_str().expect("utf-8"), ids.trim()]),
        "save by ID",
    );
    assert!(fs_err::metadata(&oci).expect("oci archive").len() > 0);

    // rmi removes a name; the other name stays; a missing name is an input error (exit 1).
    let out = ok(&store_cmd(&store, &["rmi", "localhost/app:2"]), "hako rmi");
    assert_eq!(out, "Untagged: localhost/app:2\n");
    let listed = ok(&store_cmd(&store, &["images"]), "hako images");
    assert!(!listed.contains("localhost/app") && listed.contains("app "), "{listed}");
    let out = store_cmd(&store, &["rmi", "localhost/app:2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no such image in the store: localhost/app:2"),
        "{}",
        text(&out.stderr)
    );

    // --pull asks the registry for the base even though the store keeps it: offline, that fails.
    let out = store_cmd(&store, &["build", "--progress=plain", "--pull", app.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "--pull must not use the kept base:\n{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("acme/base:1"), "{}", text(&out.stderr));
}
