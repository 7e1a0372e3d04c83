//! Key tests: golden values pin the encoding (a change must bump `KEY_VERSION`), and planned
//! Dockerfiles show which edits change a step's key and which do not.

use std::collections::BTreeMap;

use super::*;
use crate::dockerfile::instructions::from_ast;
use crate::dockerfile::parse;
use crate::plan::{Options, Plan, Unresolved, plan};

fn planned(src: &str, build_args: &[(&str, &str)]) -> Plan {
    let ast = parse(src).expect("parse");
    let df = from_ast(&ast, src).expect("typed");
    let opts = Options {
        build_args: build_args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        target: None,
        platform: Some(Platform::parse("linux/amd64").expect("platform")),
        build_contexts: BTreeMap::new(),
        ..Options::default()
    };
    plan(&df, &opts, &Unresolved).expect("plan")
}

/// The keys of the layer-producing steps of the last stage, chained from scratch as the builder
/// chains them (results stand in as "no layer").
fn keys(src: &str, build_args: &[(&str, &str)]) -> Vec<String> {
    let p = planned(src, build_args);
    let sp = p.stages.last().expect("a stage");
    let mut parent = scratch(&sp.platform);
    let mut out = Vec::new();
    for s in &sp.steps {
        if !matches!(s.op, Op::Run { .. } | Op::Copy(_) | Op::Workdir(_)) {
            continue;
        }
        let k = step(&StepInputs {
            parent: &parent,
            op: &s.op,
            used_args: &s.used_args,
            platform: &sp.platform,
            clamp: None,
            found: &[],
        });
        out.push(k.to_string());
        parent = after(&k, None);
    }
    out
}

const DF: &str = "FROM scratch\nARG V=1\nWORKDIR /app\nCOPY a b/\nRUN echo $V\n";

#[test]
fn golden_keys_pin_the_encoding() {
    // If this fails, the key encoding changed: bump KEY_VERSION (old records must not be read
    // with a new meaning) and update these values.
    let p = Platform::parse("linux/amd64").expect("platform");
    assert_eq!(
        scratch(&p).to_string(),
        "sha256:31302a892fc614ba82ef8585561f476218f64101b901ac10fc01b9337f5c1c1a"
    );
    let diff = Digest::of(b"layer");
    assert_eq!(
        base_image(std::slice::from_ref(&diff), &p).to_string(),
        "sha256:f7ba3f773be950cc3790544193f85bb8c198ab546c0e3b4844aa589c7863e053"
    );
    assert_eq!(
        keys(DF, &[]),
        vec![
            "sha256:340211225db76b3e23355f1816d7d5d52f674627c8b54dae70896bd077a47794",
            "sha256:336488ed3241a4128df45d0279b7fa66f6bb52196dff56eb161f4dbe623939b0",
            "sha256:50fcde15fbe43b82269e75e682bd712b22487a37956bf64fa35371a1e607ee9e",
        ]
    );
}

#[test]
fn comments_spacing_and_config_instructions_do_not_change_keys() {
    let edited = "# a comment\nFROM scratch\nARG V=1\nLABEL x=y\nWORKDIR   /app\n\n# another\nCOPY   a  b/\nRUN echo $V\n";
    assert_eq!(keys(DF, &[]), keys(edited, &[]));
}

#[test]
fn a_used_build_arg_changes_keys_an_unused_one_does_not() {
    let base = keys(DF, &[]);
    assert_ne!(keys(DF, &[("V", "2")])[2], base[2], "RUN sees V");
    assert_eq!(keys(DF, &[("V", "2")])[..2], base[..2], "steps before the ARG is used");
    assert_eq!(keys(DF, &[("UNUSED", "x")]), base);
}

#[test]
fn proxy_args_do_not_change_keys() {
    assert_eq!(keys(DF, &[("HTTP_PROXY", "http://proxy:3128")]), keys(DF, &[]));
}

#[test]
fn each_input_changes_the_key() {
    let p = planned(DF, &[]);
    let sp = &p.stages[0];
    let run = sp.steps.iter().find(|s| matches!(s.op, Op::Run { .. })).expect("a RUN");
    let parent = scratch(&sp.platform);
    let found = vec![("from".to_string(), "sha256:aa".to_string())];
    let base = StepInputs {
        parent: &parent,
        op: &run.op,
        used_args: &run.used_args,
        platform: &sp.platform,
        clamp: None,
        found: &found,
    };
    let k = step(&base);
    let other_parent = after(&parent, None);
    assert_ne!(step(&StepInputs { parent: &other_parent, ..base }), k, "parent");
    assert_ne!(step(&StepInputs { clamp: Some(1), ..base }), k, "SOURCE_DATE_EPOCH");
    let arm = Platform::parse("linux/arm64").expect("platform");
    assert_ne!(step(&StepInputs { platform: &arm, ..base }), k, "platform");
    let found2 = vec![("from".to_string(), "sha256:bb".to_string())];
    assert_ne!(step(&StepInputs { found: &found2, ..base }), k, "found inputs");
    assert_ne!(after(&k, None), after(&k, Some(&Digest::of(b"x"))), "results key what follows");
    // --add-host, --shm-size and --ulimit change what a RUN sees, so they key it.
    let Op::Run { options, .. } = &run.op else { panic!("a RUN") };
    assert!(options.is_default(), "no flags: keys as before them");
    for change in [
        |o: &mut crate::sandbox::protocol::StepOptions| o.extra_hosts.push(("h".into(), "1.2.3.4".into())),
        |o: &mut crate::sandbox::protocol::StepOptions| o.shm_size = 1 << 27,
        |o: &mut crate::sandbox::protocol::StepOptions| {
            o.ulimits.push(crate::sandbox::protocol::Ulimit { name: "nofile".into(), soft: 1, hard: 2 })
        },
    ] {
        let mut op = run.op.clone();
        if let Op::Run { options, .. } = &mut op {
            change(options);
        }
        assert_ne!(step(&StepInputs { op: &op, ..base }), k, "{op:?}");
    }
}

#[test]
fn fields_cannot_run_into_each_other() {
    let a = KeyBuilder::new("t").field("x", "ab").field("y", "c").finish();
    let b = KeyBuilder::new("t").field("x", "a").field("y", "bc").finish();
    assert_ne!(a, b);
}
