//! BuildKit's build checks: `hako build --check` (buildx `--call=check`) prints them and exits 1
//! when there are any, and a build prints them as `WARN:` lines on stderr.

use std::path::Path;

use crate::common::{run, text};

const DF: &str = "# syntax=docker/dockerfile-upstream:master\nARG TAG=1\nFROM busybox:${TAG}${VERSION} as base\nENV A 1\nFROM base AS Next\nENTRYPOINT [\"/app\"] # the server\nCMD echo hi\n";

fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs_err::write(dir.path().join("Dockerfile"), dockerfile).expect("write");
    dir
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("utf-8")
}

#[test]
fn check_prints_buildkits_warnings_and_exits_1() {
    let dir = context(DF);
    let out = run(&["build", "--check", path(dir.path())], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("Check complete, 7 warnings have been found!\n"), "{stdout}");
    for expected in [
        "\nWARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n'as' and 'FROM' keywords' casing do not match\nDockerfile:3\n--------------------\n   1 |     # syntax=docker/dockerfile-upstream:master\n   2 |     ARG TAG=1\n   3 | >>> FROM busybox:${TAG}${VERSION} as base\n   4 |     ENV A 1\n   5 |     FROM base AS Next\n--------------------\n",
        "\nWARNING: UndefinedArgInFrom - https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/\nFROM argument 'VERSION' is not declared\n",
        "\nWARNING: LegacyKeyValueFormat - https://docs.docker.com/go/dockerfile/rule/legacy-key-value-format/\n\"ENV key=value\" should be used instead of legacy \"ENV key value\" format\n",
        "\nWARNING: StageNameCasing - https://docs.docker.com/go/dockerfile/rule/stage-name-casing/\nStage name 'Next' should be lowercase\n",
        "\nWARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\nJSON arguments recommended for CMD to prevent unintended behavior related to OS signals\n",
        "\nWARNING: ExecFormTrailingText\n",
        "\nWARNING: FrontendNotRun\n",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    // `--call=check` is the buildx spelling.
    let out = run(&["build", "--call=check", path(dir.path())], None);
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(1), stdout));
}

#[test]
fn check_without_findings_exits_0() {
    let dir = context("# syntax=docker/dockerfile:1.7\nFROM busybox AS base\nENV A=1\nCMD [\"sh\"]\n");
    let out = run(&["build", "--check", path(dir.path())], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Check complete, no warnings found.\n");
}

#[test]
fn check_directive_skips_rules() {
    let dir = context("# check=skip=JSONArgsRecommended,FromAsCasing\nFROM busybox as base\nCMD echo hi\n");
    let out = run(&["build", "--check", path(dir.path())], None);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "Check complete, no warnings found.\n".into())
    );
    let dir = context("# check=skip=all\nFROM busybox as base\nCMD echo hi\n");
    assert_eq!(run(&["build", "--check", path(dir.path())], None).status.code(), Some(0));
}

#[test]
fn a_build_prints_the_warnings_as_buildkit_does() {
    let dir = context(DF);
    let out = run(&["build", "--dry-run", path(dir.path())], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    for line in [
        "WARN: FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 3)\n",
        "WARN: UndefinedArgInFrom: FROM argument 'VERSION' is not declared (line 3)\n",
        "WARN: LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format (line 4)\n",
        "WARN: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 7)\n",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
}

#[test]
fn error_true_fails_the_build_and_the_build_arg_overrides_the_directive() {
    let dir = context("# check=error=true\nFROM busybox as base\n");
    let out = run(&["build", "--dry-run", path(dir.path())], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: lint violation found for rules: FromAsCasing"),
        "{}",
        text(&out.stderr)
    );
    // BUILDKIT_DOCKERFILE_CHECK replaces the directive (and is no unused build-arg).
    let out = run(
        &[
            "build",
            "--dry-run",
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=skip=FromAsCasing",
            path(dir.path()),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("warning"), "{}", text(&out.stderr));
    let dir = context("# check=skip=all\nFROM busybox as base\n");
    let out = run(
        &[
            "build",
            "--check",
            "--build-arg",
            "BUILDKIT_DOCKERFILE_CHECK=skip=JSONArgsRecommended",
            path(dir.path()),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "the directive's skip=all no longer applies");
    let dir = context("# check=skip\nFROM busybox\n");
    let out = run(&["build", "--dry-run", path(dir.path())], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("invalid check option \"skip\""), "{}", text(&out.stderr));
}
