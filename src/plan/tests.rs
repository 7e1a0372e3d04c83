//! Planner tests: ARG/ENV scoping, stage references, the graph, target pruning and errors.

use super::*;
use crate::dockerfile::instructions::from_ast;
use crate::dockerfile::parse;

fn plan_with(src: &str, build_args: &[(&str, &str)], target: Option<&str>) -> Result<Plan, Diagnostic> {
    let ast = parse(src)?;
    let df = from_ast(&ast, src)?;
    let opts = Options {
        build_args: build_args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        target: target.map(str::to_string),
        platform: Some(Platform::parse("linux/amd64").expect("platform")),
        build_contexts: BTreeMap::new(),
        ..Options::default()
    };
    plan(&df, &opts, &Unresolved)
}

fn ok(src: &str) -> Plan {
    plan_with(src, &[], None).unwrap_or_else(|e| panic!("{}", e.message))
}

fn env_of(step: &Step) -> &EnvList {
    match &step.op {
        Op::Run { env, .. } => env,
        op => panic!("not a RUN: {op:?}"),
    }
}

#[test]
fn global_args_reach_from_but_not_stages_unless_redeclared() {
    let src = "ARG BASE=busy\nARG TAG=1\nFROM ${BASE}box:$TAG\nRUN a\nARG TAG\nRUN b\n";
    let p = ok(src);
    let s = &p.stages[0];
    assert_eq!(s.base, Source::Image("busybox:1".into()));
    assert_eq!(s.used_args, BTreeMap::from([("BASE".into(), "busy".into()), ("TAG".into(), "1".into())]));
    assert_eq!(env_of(&s.steps[0]).get("TAG"), None, "global ARG is not visible before re-declaration");
    assert_eq!(env_of(&s.steps[2]).get("TAG"), Some("1"), "re-declared ARG takes the global value");
    assert_eq!(s.steps[2].used_args, BTreeMap::from([("TAG".into(), "1".into())]));
}

#[test]
fn build_args_override_defaults_everywhere() {
    let src = "ARG V=global\nFROM img:$V\nARG V=stage\nARG W=${V}-w\nENV E=$W\nRUN x\n";
    let p = plan_with(src, &[("V", "cli")], None).expect("plan");
    let s = &p.stages[0];
    assert_eq!(s.base, Source::Image("img:cli".into()));
    assert_eq!(s.steps[2].op, Op::Env(vec![("E".into(), "cli-w".into())]));
    assert_eq!(s.steps[2].used_args, BTreeMap::from([("W".into(), "cli-w".into())]));
    let env = env_of(&s.steps[3]);
    assert_eq!((env.get("V"), env.get("W"), env.get("E")), (Some("cli"), Some("cli-w"), Some("cli-w")));
    assert!(p.unused_build_args.is_empty());
}

#[test]
fn env_and_arg_values_are_inherited_from_parent_stages() {
    let src = "FROM scratch AS a\nARG X=1\nENV Y=$X\nWORKDIR /w\nFROM a\nRUN echo\nCOPY f rel/\n";
    let p = ok(src);
    let b = &p.stages[1];
    assert_eq!(b.base, Source::Stage(0));
    let env = env_of(&b.steps[0]);
    // The parent's ARG values are part of the state the child starts from (BuildKit: the stage's
    // LLB env), but never of the image config.
    assert_eq!((env.get("Y"), env.get("X")), (Some("1"), Some("1")));
    assert_eq!(b.final_state.env.get("X"), None);
    let Op::Copy(c) = &b.steps[1].op else { panic!() };
    assert_eq!((c.dest.as_str(), c.dest_raw.as_str()), ("/w/rel", "rel/"));
    assert_eq!(p.order, [0, 1]);
}

#[test]
fn platform_args_and_from_platform() {
    let src = "FROM --platform=$BUILDPLATFORM img AS b\nARG TARGETARCH\nARG BUILDOS\nRUN x\nFROM --platform=linux/arm64 img\n";
    let p = ok(src);
    let env = env_of(&p.stages[0].steps[2]);
    assert_eq!((env.get("TARGETARCH"), env.get("BUILDOS")), (Some("amd64"), Some("linux")));
    assert_eq!(
        p.stages[0].used_args.get("BUILDPLATFORM").map(String::as_str),
        Some(&*Platform::host().to_string())
    );
    assert_eq!(p.stages[1].platform.to_string(), "linux/arm64");
}

#[test]
fn copy_from_resolves_names_indexes_forward_refs_and_images() {
    let src = "FROM scratch AS one\nCOPY --from=later /x /\nFROM scratch AS later\nCOPY --from=alpine:3 /c /d\nFROM scratch\nCOPY --from=ONE /e /f\nCOPY --from=1 /g /h\n";
    let p = ok(src);
    let from = |s: usize, i: usize| match &p.stages[s].steps[i].op {
        Op::Copy(c) => c.from.clone(),
        _ => panic!(),
    };
    assert_eq!(from(0, 0), Source::Stage(1), "forward reference by name");
    assert_eq!(from(1, 0), Source::Image("alpine:3".into()));
    assert_eq!(from(2, 0), Source::Stage(0), "names match case-insensitively");
    assert_eq!(from(2, 1), Source::Stage(1), "by index");
    assert_eq!(p.order, [1, 0, 2], "dependencies first");
}

#[test]
fn cycles_and_bad_references_are_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "FROM busybox AS stage0\nCOPY --from=stage0 f1 /sub/\n",
            "circular dependency detected on stage: stage0",
        ),
        (
            "FROM busybox AS stage0\nCOPY --from=stage2 f1 /sub/\nFROM busybox AS stage1\nCOPY --from=stage0 f2 /sub/\nFROM busybox AS stage2\nCOPY --from=stage1 f2 /sub/\n",
            "circular dependency detected on stage: stage0",
        ),
        ("FROM a\nCOPY --from=5 x y\n", "invalid stage index 5"),
        ("ARG S=a\nFROM a\nCOPY --from=$S x y\n", "variable expansion is not supported for --from"),
        (
            "FROM scratch AS a\nRUN --mount=from=b,target=/x true\nFROM scratch AS b\n",
            "cannot mount from stage \"b\" to \"/x\", stage needs to be defined before current command",
        ),
        ("ARG B\nFROM $B\n", "base name ($B) should not be blank"),
        ("FROM --platform=beos/amd64 img\n", "failed to parse platform beos/amd64"),
        ("FROM Busybox\n", "repository name \"Busybox\" must be lowercase"),
        ("FROM a\nEXPOSE 99999\n", "invalid containerPort: 99999"),
        ("FROM a\nSTOPSIGNAL SIGNOPE\n", "invalid signal: SIGNOPE"),
        ("FROM a\nCOPY --chmod=999 a b\n", "invalid chmod parameter: 999"),
        ("FROM a\nRUN --mount=type=cache true\n", "invalid mount target \"/\""),
        ("FROM a\nWORKDIR /w\nRUN --mount=type=tmpfs,target=.. true\n", "invalid mount target \"/\""),
        (
            "FROM a\nRUN --mount=type=bind,target=/x,size=1 true\n",
            "unexpected key 'size' for mount type 'bind'",
        ),
        ("FROM a\nUSER $NOPE\n", "USER `$NOPE` expands to an empty string"),
        ("FROM a\nENV X=${Y:?required}\n", "cannot expand `${Y:?required}`: Y: required"),
    ];
    for (src, msg) in cases {
        match plan_with(src, &[], None) {
            Ok(_) => panic!("{src:?} should fail with {msg:?}"),
            Err(e) => assert!(e.message.contains(msg), "{src:?}: {:?} does not contain {msg:?}", e.message),
        }
    }
}

#[test]
fn target_prunes_and_orders() {
    let src = "FROM scratch AS deps\nFROM scratch AS build\nCOPY --from=deps / /\nFROM scratch AS test\nCOPY --from=build / /\nFROM scratch AS final\nCOPY --from=build / /\n";
    let p = plan_with(src, &[], Some("FINAL")).expect("plan");
    assert_eq!(p.order, [0, 1, 3]);
    assert!(!p.stages[2].needed);
    let text = p.to_string();
    assert!(text.contains("skipped: stage 2 \"test\""), "{text}");
    let p = plan_with(src, &[], Some("build")).expect("plan");
    assert_eq!(p.order, [0, 1]);
    let e = plan_with(src, &[], Some("tset")).unwrap_err();
    assert_eq!(e.message, "target stage \"tset\" could not be found (did you mean test?)");
    assert_eq!(e.hints, ["stages named in this Dockerfile: deps, build, test, final"]);
}

#[test]
fn unused_build_args_are_reported_and_proxies_are_free() {
    let p = plan_with(
        "FROM a\nARG USED\nRUN x\n",
        &[("USED", "1"), ("NOPE", "2"), ("HTTP_PROXY", "http://p")],
        None,
    )
    .expect("plan");
    assert_eq!(p.unused_build_args, ["NOPE"]);
    let run = &p.stages[0].steps[1];
    assert_eq!(env_of(run).get("HTTP_PROXY"), Some("http://p"), "proxy args reach RUN");
    assert!(!run.used_args.contains_key("HTTP_PROXY"), "proxy args stay out of cache keys");
}

#[test]
fn run_mounts_get_buildkit_defaults() {
    let src = "FROM a AS s\nWORKDIR /w\nRUN --mount=type=cache,target=c --mount=type=secret,id=tok --mount=type=ssh --mount=type=bind,from=s,target=/m true\n";
    let e = plan_with(src, &[], None).unwrap_err();
    assert!(e.message.contains("stage needs to be defined before"), "{}", e.message);
    let src = "FROM a AS s\nFROM a\nWORKDIR /w\nRUN --mount=type=cache,target=c --mount=type=secret,id=tok --mount=type=ssh --mount=type=bind,from=s,target=/m true\n";
    let p = ok(src);
    let Op::Run { mounts, .. } = &p.stages[1].steps[1].op else { panic!() };
    let summary: Vec<(MountTypeName, Option<String>, Option<String>)> =
        mounts.iter().map(|(m, _)| (m.kind.as_str(), m.id.clone(), m.target.clone())).collect();
    assert_eq!(
        summary,
        [
            // BuildKit's default cache id is the target as written, cleaned (not joined).
            ("cache", Some("c".into()), Some("/w/c".into())),
            ("secret", Some("tok".into()), Some("/run/secrets/tok".into())),
            ("ssh", Some("default".into()), Some("/run/buildkit/ssh_agent.0".into())),
            ("bind", None, Some("/m".into())),
        ]
    );
    assert_eq!(mounts[3].1, Source::Stage(0));
    assert_eq!(p.stages[1].deps, [0]);
}

type MountTypeName = &'static str;

/// BuildKit joins bind/cache/tmpfs targets with the working directory, and a missing target is
/// the working directory itself (BuildKit's own Dockerfile: `RUN --mount=from=binaries tar c .`).
#[test]
fn run_mount_targets_default_to_the_workdir() {
    let src = "FROM a AS bin\nFROM a\nWORKDIR /work\nRUN --mount=from=bin tar c .\nRUN --mount=type=cache,target=./x/../y true\n";
    let p = ok(src);
    let Op::Run { mounts, .. } = &p.stages[1].steps[1].op else { panic!() };
    let targets: Vec<Option<String>> = mounts.iter().map(|(m, _)| m.target.clone()).collect();
    assert_eq!(targets, [Some("/work".into())]);
    assert_eq!(mounts[0].1, Source::Stage(0));
    let Op::Run { mounts, .. } = &p.stages[1].steps[2].op else { panic!() };
    assert_eq!((mounts[0].0.id.as_deref(), mounts[0].0.target.as_deref()), (Some("y"), Some("/work/y")));
}

#[test]
fn build_contexts_override_images_and_stages() {
    let src = "FROM alpine AS base\nRUN x\nFROM base\nCOPY --from=extra /a /b\n";
    let ast = parse(src).expect("parse");
    let df = from_ast(&ast, src).expect("typed");
    let opts = Options {
        build_contexts: BTreeMap::from([
            ("alpine".into(), "docker-image://mirror/alpine".into()),
            ("extra".into(), "./extra".into()),
        ]),
        ..Options::default()
    };
    let p = plan(&df, &opts, &Unresolved).expect("plan");
    assert_eq!(
        p.stages[0].base,
        Source::Context { name: "alpine".into(), value: "docker-image://mirror/alpine".into() }
    );
    let Op::Copy(c) = &p.stages[1].steps[0].op else { panic!() };
    assert_eq!(c.from, Source::Context { name: "extra".into(), value: "./extra".into() });
    let opts = Options {
        build_contexts: BTreeMap::from([("base".into(), "./prebuilt".into())]),
        ..Options::default()
    };
    let p = plan(&df, &opts, &Unresolved).expect("plan");
    assert!(p.stages[0].steps.is_empty(), "a context named like a stage replaces the stage");
}

#[test]
fn heredoc_copy_bodies_expand_unless_quoted() {
    let src = "FROM a\nARG N=world\nCOPY <<EOF <<'RAW' /d/\nhello $N \"q\"\nEOF\nkeep $N\nRAW\n";
    let p = ok(src);
    let Op::Copy(c) = &p.stages[0].steps[1].op else { panic!() };
    assert_eq!(c.inline[0].data, "hello world \"q\"\n");
    assert_eq!(c.inline[1].data, "keep $N\n");
}

#[test]
fn display_is_stable() {
    let p = ok(
        "ARG B=busybox\nFROM $B AS base\nENV A=\"x y\"\nWORKDIR app\nFROM base\nCOPY --from=base --chmod=755 a* /app/\nEXPOSE 80 53/udp\nCMD [\"sh\"]\n",
    );
    let text = p.to_string();
    let expected = "target: 1 (stage 1 of 2)\nplatform: linux/amd64 (build platform HOST)\n\nstage 0 \"base\": FROM busybox (image)  (line 2)\n      uses build args: B=busybox\n  [base 1/2] ENV A=\"x y\"\n  [base 2/2] WORKDIR app\n\nstage 1: FROM base (stage 0)  (line 5)\n  [stage-1 1/3] COPY --from=base --chmod=755 a* /app/\n  [stage-1 2/3] EXPOSE 53/udp 80\n  [stage-1 3/3] CMD [\"sh\"]\n"
        .replace("HOST", &Platform::host().to_string());
    assert_eq!(text, expected);
}

#[test]
fn steps_are_named_as_buildkit_names_them() {
    // As dockerd 26.1's BuildKit showed them (`#N [2/5] …`): RUN keeps quotes and unset
    // variables, COPY and WORKDIR lose quotes and expand unset variables to nothing; the keyword
    // is upper-cased; a relative WORKDIR stays as written.
    let p = plan_with(
        "FROM scratch\nARG A=1 B\nENV D=/dst\nrun echo \"$A $B\" '$D' ${NOPE:-x} $NOPE > /ab\nCOPY --chmod=600 \"f$A.txt\" $D/ $NOPE\nWORKDIR sub$A\ncopy a b\n",
        &[("B", "bee")],
        None,
    )
    .expect("plan");
    let shown: Vec<&str> =
        p.stages[0].steps.iter().filter(|s| s.history.is_some()).map(|s| s.display.as_str()).collect();
    assert_eq!(
        shown,
        [
            "ARG A=1 B=bee",
            "ENV D=/dst",
            "RUN echo \"1 bee\" '$D' ${NOPE:-x} $NOPE > /ab",
            "COPY --chmod=600 f1.txt /dst/ ",
            "WORKDIR sub1",
            "COPY a b",
        ]
    );
}

#[test]
fn onbuild_triggers_run_in_stages_built_on_the_declaring_one() {
    let p = ok(
        "FROM scratch AS a\nONBUILD ARG V=7\nONBUILD ENV X=$V\nONBUILD RUN  echo  hi\nFROM a AS b\nENV Y=1\nFROM b\n",
    );
    let b = &p.stages[1];
    let shown: Vec<&str> = b.steps.iter().map(|s| s.display.as_str()).collect();
    // A RUN trigger shows its own text, not the FROM line's that runs it.
    assert_eq!(shown, ["ONBUILD ARG V=7", "ONBUILD ENV X=7", "ONBUILD RUN  echo  hi", "ENV Y=1"]);
    assert!(b.final_state.onbuild.is_empty(), "triggers do not pass on to grandchildren");
    assert!(p.stages[2].steps.is_empty());
    let e = plan_with("FROM scratch AS a\nONBUILD COPPY x y\nFROM a\n", &[], None).unwrap_err();
    assert!(e.message.contains("ONBUILD trigger \"COPPY x y\": unknown instruction"), "{}", e.message);
    assert_eq!(e.pos.line, 3, "trigger errors point at the FROM that runs them");
}

#[test]
fn multi_pair_env_arg_label_expand_against_the_previous_environment() {
    // BuildKit expands every word of the instruction before applying any of it.
    let p = ok("FROM scratch\nENV a=one\nENV a=two b=$a\nARG c=three\nARG c=four d=$c\nLABEL x=$a y=$d\n");
    let s = &p.stages[0];
    assert_eq!(s.steps[1].op, Op::Env(vec![("a".into(), "two".into()), ("b".into(), "one".into())]));
    assert_eq!(
        s.steps[3].op,
        Op::Arg(vec![("c".into(), Some("four".into())), ("d".into(), Some("three".into()))])
    );
    assert_eq!(s.steps[4].op, Op::Label(vec![("x".into(), "two".into()), ("y".into(), "three".into())]));
    // Global ARGs (before the first FROM) are different: BuildKit adds each to the environment
    // before expanding the next one (buildMetaArgs), so `b` sees this `a`.
    let p = ok("ARG a=one b=$a\nFROM img:$b\n");
    assert_eq!(p.stages[0].base, Source::Image("img:one".into()));
}

#[test]
fn child_stage_args_see_the_parent_stage_arg_values() {
    let src = "FROM scratch AS base\nARG NAME=app\nFROM base AS dev\nARG NAME=\"$NAME-dev\"\nRUN x\nFROM base\nARG NAME\nRUN y\n";
    let p = ok(src);
    assert_eq!(env_of(&p.stages[1].steps[1]).get("NAME"), Some("app-dev"));
    assert_eq!(p.stages[1].steps[1].used_args.get("NAME").map(String::as_str), Some("app-dev"));
    assert_eq!(env_of(&p.stages[2].steps[1]).get("NAME"), Some("app"), "a bare re-declaration keeps it");
    let p = plan_with(src, &[("NAME", "cli")], None).expect("plan");
    assert_eq!(env_of(&p.stages[1].steps[1]).get("NAME"), Some("cli"));
}

#[test]
fn path_is_always_in_a_stage_environment() {
    let p = ok("FROM scratch\nENV PATH=$PATH:/opt/bin\nRUN x\n");
    let default = crate::sandbox::DEFAULT_PATH;
    assert_eq!(env_of(&p.stages[0].steps[1]).get("PATH"), Some(&*format!("{default}:/opt/bin")));
    assert_eq!(p.stages[0].final_state.env.get("PATH"), Some(&*format!("{default}:/opt/bin")));
}

#[test]
fn from_an_upper_case_stage_name_is_an_image_with_a_hint() {
    // BuildKit matches FROM against stage names exactly (they are stored lower-cased), while
    // COPY --from, RUN --mount from= and --target match case-insensitively.
    let e = plan_with("FROM busybox AS BUG_stage\nFROM BUG_stage\n", &[], None).unwrap_err();
    assert!(e.message.contains("must be lowercase"), "{}", e.message);
    assert!(e.hints.iter().any(|h| h.contains("FROM bug_stage")), "{:?}", e.hints);
    let p = ok(
        "FROM busybox AS BUG_stage\nFROM scratch\nCOPY --from=BUG_stage /x /x\nRUN --mount=from=BUG_stage,target=/m x\n",
    );
    let Op::Copy(c) = &p.stages[1].steps[0].op else { panic!() };
    assert_eq!(c.from, Source::Stage(0));
    let Op::Run { mounts, .. } = &p.stages[1].steps[1].op else { panic!() };
    assert_eq!(mounts[0].1, Source::Stage(0));
    assert_eq!(
        plan_with("FROM busybox AS BUG_stage\nFROM scratch\n", &[], Some("BUG_stage")).expect("plan").target,
        0
    );
}

#[test]
fn undefined_args_in_from_are_reported_as_buildkit_does() {
    let rules = |src: &str| -> Vec<String> { ok(src).warnings.into_iter().map(|w| w.message).collect() };
    assert!(rules("ARG base=scratch\nFROM $base\n").is_empty());
    assert!(rules("FROM --platform=$BUILDPLATFORM scratch\n").is_empty());
    assert!(rules("ARG DEBUG\nFROM scratch${DEBUG}\n").is_empty(), "declared without a value is fine");
    assert_eq!(
        rules("ARG tag=latest\nFROM busybox:${tag}${version} AS b\n"),
        ["FROM argument 'version' is not declared"]
    );
    assert_eq!(
        rules("ARG MY_ARCH=amd64\nFROM --platform=linux/${MYARCH:-amd64} busybox\n"),
        ["FROM argument 'MYARCH' is not declared (did you mean MY_ARCH?)"]
    );
    let w = &ok("FROM scratch\nFROM x$NOPE\n").warnings[0];
    assert_eq!((w.rule, w.pos.line), (Some("UndefinedArgInFrom"), 2));
    assert!(ok("# check=skip=UndefinedArgInFrom\nFROM x$NOPE\n").warnings.is_empty());
}

/// Each instruction's image history entry is BuildKit's (checked against dockerd 26.1's BuildKit
/// on the same Dockerfile): RUN with the stage's ARGs before its argv, Go's `%v`/`%q` formats,
/// ARG with its default as written, no entry for ONBUILD, none of a parent stage's ARGs.
#[test]
fn history_entries_are_buildkits() {
    let src = "ARG G=g1\nFROM scratch AS a\nARG G\nARG EMPTY\nARG OVER=default\nARG X=1\nENV X=env-wins\n\
        LABEL \"with space\"=\"a b\"\nRUN [\"/bin/echo\", \"exec\"]\nRUN echo $X\n\
        RUN <<EOF\necho one\nEOF\nRUN <<'S'\n#!/bin/sh\necho x\nS\n\
        COPY --chown=1:2 --chmod=640 --link a b /d/\nCOPY <<EOF /inline\nhi\nEOF\n\
        EXPOSE 8000-8002 9000/udp 70\nVOLUME [\"/a b\", \"/c\"]\nSHELL [\"/bin/sh\", \"-ec\"]\n\
        HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD [\"curl\", \"-f\"]\n\
        CMD echo \"é\"\tx\nENTRYPOINT [\"/e\"]\nONBUILD RUN true\nWORKDIR w\nUSER 1000\nSTOPSIGNAL 9\n\
        FROM a\nHEALTHCHECK NONE\nRUN echo child\n";
    let p = plan_with(src, &[("OVER", "fromcli")], None).unwrap_or_else(|e| panic!("{}", e.message));
    let history =
        |s: usize| -> Vec<Option<String>> { p.stages[s].steps.iter().map(|s| s.history.clone()).collect() };
    let args = "|4 G=g1 EMPTY= OVER=fromcli X=env-wins";
    let want: Vec<Option<String>> = [
        Some("ARG G".to_string()),
        Some("ARG EMPTY".into()),
        Some("ARG OVER=default".into()),
        Some("ARG X=1".into()),
        Some("ENV X=env-wins".into()),
        Some("LABEL with space=a b".into()),
        Some(format!("RUN {args} /bin/echo exec # buildkit")),
        Some(format!("RUN {args} /bin/sh -c echo $X # buildkit")),
        Some(format!("RUN {args} /bin/sh -c echo one\n # buildkit")),
        Some(format!("RUN {args} /bin/sh -c /dev/pipes/S # buildkit")),
        Some("COPY --chown=1:2 --chmod=640 a b /d/ # buildkit".into()),
        Some("COPY <<EOF /inline # buildkit".into()),
        Some("EXPOSE map[70/tcp:{} 8000/tcp:{} 8001/tcp:{} 8002/tcp:{} 9000/udp:{}]".into()),
        Some("VOLUME [/a b /c]".into()),
        Some("SHELL [/bin/sh -ec]".into()),
        Some(r#"HEALTHCHECK &{["CMD" "curl" "-f"] "1m30s" "500ms" "0s" "0s" '\x03'}"#.into()),
        Some(r#"CMD ["/bin/sh" "-ec" "echo \"é\"\tx"]"#.into()),
        Some(r#"ENTRYPOINT ["/e"]"#.into()),
        None,
        Some("WORKDIR /w".into()),
        Some("USER 1000".into()),
        Some("STOPSIGNAL 9".into()),
    ]
    .into();
    assert_eq!(history(0), want);
    assert_eq!(
        history(1),
        [
            Some("RUN /bin/sh -ec true # buildkit".to_string()),
            Some(r#"HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" '\x00'}"#.into()),
            Some("RUN /bin/sh -ec echo child # buildkit".into()),
        ],
        "a child stage lists none of its parent's ARGs"
    );
}
