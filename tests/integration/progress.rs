//! `--progress`: BuildKit's plain format on a cold build and a cached rebuild, JSON progress that
//! stays JSON through every kind of failure, and quiet builds.

use std::process::Output;

use crate::cache::cached;
use crate::common::text;
use crate::run::{Dir, Mode, build, modes, ok};

/// Three steps (WORKDIR, COPY, RUN) around config-only instructions, which are no steps.
const DF: &str =
    "FROM busybox\nENV GREETING=hi\nWORKDIR /w\nCOPY a.txt .\nLABEL x=y\nRUN cat a.txt\nCMD [\"sh\"]\n";

/// Root mode and a context holding `Dockerfile` (= `df`) and `a.txt`, or `None` when not root.
fn setup(what: &str, df: &str) -> Option<(Mode, Dir, String)> {
    let mode = modes(what).into_iter().find(|m| matches!(m, Mode::Root))?;
    let dir = Dir::new(&mode);
    dir.write(&mode, &[("ctx/Dockerfile", df), ("ctx/a.txt", "hello from a.txt\n")]);
    let ctx = dir.path().join("ctx").to_str().expect("utf-8").to_string();
    Some((mode, dir, ctx))
}

/// The `#N` vertex whose name line is `#N NAME`.
pub(crate) fn vertex(stderr: &str, name: &str) -> String {
    stderr
        .lines()
        .find_map(|l| {
            let (id, rest) = l.split_once(' ')?;
            (id.starts_with('#') && rest == name).then(|| id.to_string())
        })
        .unwrap_or_else(|| panic!("no `#N {name}` line in:\n{stderr}"))
}

/// Whether `#N DONE x.xs` ends vertex `id`.
fn done(stderr: &str, id: &str) -> bool {
    stderr.lines().any(|l| {
        l.strip_prefix(&format!("{id} DONE "))
            .and_then(|t| t.strip_suffix('s'))
            .is_some_and(|t| t.parse::<f64>().is_ok() && t.contains('.'))
    })
}

#[test]
fn plain_cold_then_cached() {
    let Some((mode, dir, ctx)) = setup("plain progress", DF) else { return };
    let cold = build(&dir, &mode, &[&ctx]);
    ok(&cold, "cold build");
    let err = text(&cold.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.first().copied(), Some("#1 [internal] load build definition from Dockerfile"), "{err}");
    let context = vertex(&err, "[internal] load build context");
    assert!(err.contains(&format!("{context} transferring context: ")), "the context's size:\n{err}");
    let steps = ["[2/4] WORKDIR /w", "[3/4] COPY a.txt .", "[4/4] RUN cat a.txt"];
    for name in steps {
        let id = vertex(&err, name);
        assert!(done(&err, &id), "{name} ends with DONE:\n{err}");
    }
    assert!(
        !err.contains("ENV GREETING") && !err.contains("LABEL x"),
        "config-only instructions are no steps:\n{err}"
    );
    // RUN output: `#N 0.123 text`, seconds since the step started.
    let run = vertex(&err, "[4/4] RUN cat a.txt");
    let output =
        lines.iter().find_map(|l| l.strip_prefix(&format!("{run} "))?.strip_suffix(" hello from a.txt"));
    assert!(output.is_some_and(|t| t.parse::<f64>().is_ok() && t.len() >= 5), "RUN output line:\n{err}");
    let export = vertex(&err, "exporting to image");
    assert!(done(&err, &export), "{err}");
    assert!(err.contains(&format!("{export} writing image sha256:")), "{err}");
    let digest = text(&cold.stdout).trim().to_string();
    let summary = lines.last().copied().unwrap_or_default();
    assert!(summary.starts_with(&format!("Built {digest} (")), "summary: {summary}");
    assert!(summary.ends_with("3 steps run, 0 cached"), "summary: {summary}");

    let again = build(&dir, &mode, &[&ctx]);
    ok(&again, "cached rebuild");
    let err = text(&again.stderr);
    assert_eq!(cached(&again), ["2", "3", "4"], "{err}");
    for name in steps {
        let id = vertex(&err, name);
        assert!(err.lines().any(|l| l == format!("{id} CACHED")), "{name}: CACHED:\n{err}");
        assert!(!done(&err, &id), "{name}: a cached step has no DONE:\n{err}");
    }
    assert!(err.trim_end().ends_with("0 steps run, 3 cached"), "{err}");
}

/// A stage built on scratch or on another stage has no FROM step: its first step is 1, as in
/// BuildKit (`[c 1/2] COPY …`, checked against dockerd 26.1's BuildKit); an image's FROM is 1.
#[test]
fn stages_on_scratch_or_a_stage_count_from_their_first_step() {
    let df = "FROM scratch AS s\nCOPY a.txt /f\nFROM busybox AS b\nRUN true\n\
              FROM b AS c\nCOPY --from=s /f /g\nRUN cat /g\n";
    let Some((mode, dir, ctx)) = setup("stage step numbers", df) else { return };
    let out = build(&dir, &mode, &[&ctx]);
    ok(&out, "three stages");
    let err = text(&out.stderr);
    for name in
        ["[s 1/1] COPY a.txt /f", "[b 2/2] RUN true", "[c 1/2] COPY --from=s /f /g", "[c 2/2] RUN cat /g"]
    {
        let id = vertex(&err, name);
        assert!(done(&err, &id), "{name} ends with DONE:\n{err}");
    }
    assert!(err.lines().any(|l| l.contains(" [b 1/2] FROM ")), "an image's FROM is step 1:\n{err}");
    // Every step but the FROM ran, the first steps of s and c too.
    assert!(err.contains(": 4 steps run, 0 cached"), "{err}");
}

/// Each output is its own vertex, named and reported as BuildKit's exporter is: an OCI archive's
/// manifest, config and `sending tarball`, a directory's `copying files`; the store's image
/// goes into the first, and no `exporting to image` vertex appears without an image output.
#[test]
fn each_output_is_a_vertex_named_as_buildkit_names_it() {
    let Some((mode, dir, ctx)) = setup("exporter vertices", DF) else { return };
    let tar = format!("type=oci,dest={}", dir.path().join("o.tar").display());
    let local = format!("type=local,dest={}", dir.path().join("out").display());
    let out = build(&dir, &mode, &["-o", &tar, "-o", &local, "-t", "app", &ctx]);
    ok(&out, "two outputs");
    let err = text(&out.stderr);
    let oci = vertex(&err, "exporting to oci image format");
    let lines: Vec<&str> = err.lines().filter_map(|l| l.strip_prefix(&format!("{oci} "))).collect();
    let has = |prefix: &str, suffix: &str| lines.iter().any(|l| l.starts_with(prefix) && l.ends_with(suffix));
    assert!(has("exporting layers (", "s done"), "{err}");
    assert!(has("naming to docker.io/library/app:latest", " done"), "{err}");
    assert!(has("exporting manifest sha256:", " done") && has("exporting config sha256:", " done"), "{err}");
    assert!(has("sending tarball ", "s done") && done(&err, &oci), "{err}");
    let client = vertex(&err, "exporting to client directory");
    assert!(err.lines().any(|l| l.starts_with(&format!("{client} copying files "))), "{err}");
    assert!(done(&err, &client), "{err}");
    assert!(!err.contains("exporting to image"), "no image exporter ran:\n{err}");
}

/// Every stderr line parses as a JSON object with a `time` and an `event`.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    let err = text(&out.stderr);
    assert!(!err.is_empty(), "no progress at all");
    err.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?} in:\n{err}"));
            assert!(v["time"].is_string() && v["event"].is_string(), "no time or event: {l}");
            v
        })
        .collect()
}

#[test]
fn json_progress_is_json_even_when_failing() {
    let Some((mode, dir, ctx)) = setup("json progress", DF) else { return };
    let out = build(&dir, &mode, &["--progress=json", &ctx]);
    ok(&out, "json build");
    let events = json_lines(&out);
    let result = events.iter().find(|v| v["event"] == "result").expect("a result event");
    assert_eq!(result["digest"].as_str(), Some(text(&out.stdout).trim()), "stdout keeps the digest");
    assert!(result["size"].as_u64().is_some_and(|s| s > 0));
    assert_eq!(result["steps_run"], 3);
    let outputs: Vec<&serde_json::Value> = events.iter().filter(|v| v["event"] == "output").collect();
    assert!(outputs.iter().any(|v| v["text"] == "hello from a.txt\n"), "{events:?}");

    let fail = |df: &str, args: &[&str], code: i32, what: &str| {
        dir.write(&mode, &[("ctx/Dockerfile", df)]);
        let mut all = vec!["--progress=json"];
        all.extend(args);
        all.push(&ctx);
        let out = build(&dir, &mode, &all);
        assert_eq!(out.status.code(), Some(code), "{what}: exit status\n{}", text(&out.stderr));
        let events = json_lines(&out);
        let last = events.last().expect("events");
        assert_eq!(
            (last["event"].as_str(), last["exit_code"].as_i64()),
            (Some("error"), Some(i64::from(code)))
        );
        assert!(last["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {last}");
        events
    };
    let events = fail("FROM busybox\nRUN echo failing && exit 3\n", &[], 1, "failing RUN");
    let step = events.iter().find(|v| v["event"] == "error" && v["id"].is_u64()).expect("the step's error");
    assert_eq!(step["name"], "[2/2] RUN echo failing && exit 3");
    fail("FROM busybox\nRUN --bogus x\n", &[], 1, "Dockerfile syntax error");
    fail("FORM busybox\n", &[], 1, "unknown instruction");
    fail(DF, &["-o", "type=nope"], 2, "bad --output");
}

#[test]
fn quiet_prints_only_the_digest_and_errors() {
    let Some((mode, dir, ctx)) = setup("quiet progress", DF) else { return };
    let out = build(&dir, &mode, &["-q", &ctx]);
    ok(&out, "-q");
    assert_eq!(text(&out.stderr), "", "nothing on stderr");
    assert!(text(&out.stdout).trim().starts_with("sha256:"));
    dir.write(&mode, &[("ctx/Dockerfile", "FROM busybox\nRUN exit 3\n")]);
    let out = build(&dir, &mode, &["--progress=quiet", &ctx]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: ") && err.contains("RUN failed"), "only the error:\n{err}");
}
