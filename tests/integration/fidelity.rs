//! BuildKit fidelity checked on real builds (issue 10): what a stage inherits from its parent
//! stage, how multi-pair ENV expands, PATH and WorkingDir of a scratch stage, exec forms.

use std::path::Path;
use std::process::Output;

use crate::build::config_of;
use crate::common::{hako, text};

const DF: &str = r#"FROM busybox AS base
ARG NAME=app
ENV a=one
FROM base AS dev
ARG NAME="$NAME-dev"
ENV a=two b=$a
RUN echo "$NAME $a $b" > /out
FROM scratch
COPY --from=dev /out /
ENTRYPOINT ["/app"] # the server
"#;

fn build(dir: &Path, output: &str) -> Output {
    let busybox = format!("busybox=oci-layout://{}/testdata/busybox", env!("CARGO_MANIFEST_DIR"));
    hako()
        .args(["build", "--progress=plain", "--root"])
        .arg(dir.join("store"))
        .args(["--build-context", &busybox, "-o", output])
        .arg(dir.join("ctx"))
        .output()
        .expect("run hako")
}

#[test]
fn stage_args_env_pairs_path_and_exec_forms_as_buildkit() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs_err::create_dir(dir.path().join("ctx")).expect("mkdir");
    fs_err::write(dir.path().join("ctx/Dockerfile"), DF).expect("write");
    let files = dir.path().join("files");
    let out = build(dir.path(), &format!("type=local,dest={}", files.display()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs_err::read_to_string(files.join("out")).expect("out"), "app-dev two one\n");
    assert!(text(&out.stderr).contains("WARN: ExecFormTrailingText:"), "{}", text(&out.stderr));
    let layout = dir.path().join("layout");
    let out = build(dir.path(), &format!("type=oci,dest={},tar=false,name=fid", layout.display()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c = config_of(&layout, "latest");
    assert_eq!(
        c["config"]["Env"],
        serde_json::json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    );
    assert_eq!(c["config"]["WorkingDir"], "/");
    assert_eq!(c["config"]["Entrypoint"], serde_json::json!(["/app"]));
}
