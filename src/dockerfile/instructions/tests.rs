//! Unit tests for typed instructions: every validation error with its message and position, and the
//! shapes that valid instructions produce.

use super::*;
use crate::dockerfile::parse;

fn typed(src: &str) -> Result<Dockerfile, Diagnostic> {
    let ast = parse(src)?;
    from_ast(&ast, src)
}

fn only_command(src: &str) -> Kind {
    let df = typed(&format!("FROM scratch\n{src}\n")).unwrap_or_else(|e| panic!("{src}: {}", e.message));
    df.stages[0].commands[0].kind.clone()
}

/// Every rejection: (Dockerfile, expected message, line, column).
#[test]
fn every_validation_error_has_its_message_and_position() {
    let cases: &[(&str, &str, usize, usize)] = &[
        ("FROM a\nCOPPY . /app", "unknown instruction \"COPPY\" (did you mean COPY?)", 2, 1),
        ("FROM a\n  foo bar", "unknown instruction \"foo\"", 2, 3),
        ("RUN x", "RUN must come after a FROM: no build stage in current context", 1, 1),
        ("ARG a", "the Dockerfile has no FROM: there is no stage to build", 1, 1),
        ("FROM", "FROM requires either one or three arguments", 1, 1),
        ("FROM a b", "FROM requires either one or three arguments", 1, 8),
        ("FROM a AS b c", "FROM requires either one or three arguments", 1, 8),
        (
            "FROM a AS 1x",
            "invalid name for build stage: \"1x\", name can't start with a number or contain symbols",
            1,
            11,
        ),
        (
            "FROM a AS b$",
            "invalid name for build stage: \"b$\", name can't start with a number or contain symbols",
            1,
            11,
        ),
        ("FROM --plat=x a", "unknown flag: --plat (did you mean --platform?)", 1, 6),
        ("FROM --platform a", "missing a value on flag: --platform", 1, 6),
        ("FROM a\nMAINTAINER --boo joe@example.com", "unknown flag: --boo", 2, 12),
        ("FROM a\nMAINTAINER", "MAINTAINER requires exactly one argument", 2, 1),
        ("FROM a\nWORKDIR", "WORKDIR requires exactly one argument", 2, 1),
        ("FROM a\nUSER", "USER requires exactly one argument", 2, 1),
        ("FROM a\nSTOPSIGNAL", "STOPSIGNAL requires exactly one argument", 2, 1),
        ("FROM a\nENV", "ENV requires at least one argument", 2, 1),
        ("FROM a\nLABEL", "LABEL requires at least one argument", 2, 1),
        ("FROM a\nENV =x", "ENV names can not be blank", 2, 1),
        ("FROM a\nLABEL =x", "LABEL names can not be blank", 2, 1),
        ("FROM a\nARG", "ARG requires at least one argument", 2, 1),
        ("FROM a\nARG =x", "ARG names can not be blank", 2, 5),
        ("FROM a\nONBUILD", "ONBUILD requires at least one argument", 2, 1),
        ("FROM a\nONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", 2, 9),
        ("FROM a\nONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger", 2, 9),
        ("FROM a\nONBUILD MAINTAINER x", "MAINTAINER isn't allowed as an ONBUILD trigger", 2, 9),
        ("FROM a\nHEALTHCHECK", "HEALTHCHECK requires at least one argument", 2, 1),
        ("FROM a\nHEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments", 2, 1),
        ("FROM a\nHEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD", 2, 1),
        ("FROM a\nHEALTHCHECK CONNECT TCP 7000", "Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)", 2, 13),
        ("FROM a\nHEALTHCHECK --interval=1ns CMD x", "Interval \"interval\" cannot be less than 1ms", 2, 13),
        ("FROM a\nHEALTHCHECK --timeout=5 CMD x", "time: missing unit in duration \"5\"", 2, 13),
        ("FROM a\nHEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)", 2, 13),
        (
            "FROM a\nHEALTHCHECK --retries=x CMD x",
            "invalid value for --retries: \"x\" is not a number",
            2,
            13,
        ),
        ("FROM a\nSHELL []", "SHELL requires at least one argument", 2, 1),
        ("FROM a\nSHELL bash -c", "SHELL requires the arguments to be in JSON form", 2, 1),
        ("FROM a\nVOLUME", "VOLUME requires at least one argument", 2, 1),
        ("FROM a\nVOLUME [\"\"]", "VOLUME specified can not be an empty string", 2, 1),
        ("FROM a\nEXPOSE", "EXPOSE requires at least one argument", 2, 1),
        (
            "FROM a\nCOPY onlyone",
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined",
            2,
            1,
        ),
        (
            "FROM a\nCOPY ",
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined",
            2,
            1,
        ),
        (
            "FROM a\nADD x",
            "ADD requires at least two arguments, but only one was provided. Destination could not be determined",
            2,
            1,
        ),
        ("FROM a\nCOPY x <<EOF\nhi\nEOF", "COPY cannot accept a heredoc as a destination", 2, 8),
        ("FROM a\nCOPY --from=a --from=b x y", "duplicate flag specified: --from", 2, 15),
        ("FROM a\nCOPY --link=maybe x y", "expecting boolean value for flag --link, not: maybe", 2, 6),
        ("FROM a\nADD --from=x a b", "unknown flag: --from", 2, 5),
        ("FROM a\nCOPY --checksum=sha256:0 a b", "unknown flag: --checksum", 2, 6),
        ("FROM a\nRUN --network=bridge x", "network mode \"bridge\" not supported", 2, 15),
        ("FROM a\nRUN --security=x true", "security mode \"x\" not supported", 2, 16),
        (
            "FROM a\nRUN --mount=type=bind,from=$X true",
            "'from' doesn't support variable expansion, define alias stage instead",
            2,
            13,
        ),
        (
            "FROM a\nRUN --device=a=1,b=2 true",
            "invalid device spec \"a=1,b=2\": device name already set",
            2,
            14,
        ),
        ("FROM a\nRUN --mount true", "missing a value on flag: --mount", 2, 5),
        ("FROM a\nCMD --x [\"a\"]", "unknown flag: --x", 2, 5),
        ("FROM a\nENV --x a=b", "unknown flag: --x", 2, 5),
    ];
    for (src, msg, line, col) in cases {
        let err = match typed(src) {
            Ok(_) => panic!("{src:?} should fail with {msg:?}"),
            Err(e) => e,
        };
        assert_eq!(&err.message, msg, "{src:?}");
        assert_eq!((err.pos.line, err.pos.col), (*line, *col), "{src:?}: position of {msg:?}");
    }
}

#[test]
fn hints_say_what_to_do() {
    let e = typed("FROM a\nCOPY --form=x a b").unwrap_err();
    assert_eq!(e.message, "unknown flag: --form (did you mean --from?)");
    assert_eq!(e.hints, ["COPY accepts --from, --chown, --chmod, --link, --parents, --exclude"]);
    let e = typed("FROM a\nSTOPSIGNAL --x 9").unwrap_err();
    assert_eq!(e.hints, ["STOPSIGNAL takes no flags"]);
    let e = typed("FROM a\nCOPPY x y").unwrap_err();
    let rendered = e.render("Dockerfile", "FROM a\nCOPPY x y");
    assert!(rendered.starts_with("Dockerfile:2:1: unknown instruction \"COPPY\" (did you mean COPY?)\n  |\n2 | COPPY x y\n  | ^^^^^\n"), "{rendered}");
}

#[test]
fn stages_and_meta_args() {
    let df = typed("# syntax=docker/dockerfile:1\n# BASE the base image\nARG BASE=alpine\n# builder compiles\nFROM --platform=$BUILDPLATFORM ${BASE} AS Builder\nRUN make\nFROM scratch\nCOPY --from=builder /out /\n").expect("ok");
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.meta_args.len(), 1);
    assert_eq!(
        df.meta_args[0].0[0],
        ArgDecl { name: "BASE".into(), default: Some("alpine".into()), doc: Some("the base image".into()) }
    );
    assert_eq!(df.stages.len(), 2);
    let s = &df.stages[0];
    assert_eq!(
        (s.index, s.base.as_str(), s.name.as_deref(), s.platform.as_deref()),
        (0, "${BASE}", Some("builder"), Some("$BUILDPLATFORM"))
    );
    assert_eq!(s.doc.as_deref(), Some("compiles"));
    assert_eq!(s.commands.len(), 1);
    assert_eq!(df.stages[1].name, None);
    match &df.stages[1].commands[0].kind {
        Kind::Copy(c) => {
            assert_eq!(c.from.as_deref(), Some("builder"));
            assert_eq!((c.sources.as_slice(), c.dest.as_str()), (&["/out".to_string()][..], "/"));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn command_forms() {
    let Kind::Run(r) = only_command("RUN --mount=type=cache,target=/c --network=none echo hi") else {
        panic!()
    };
    assert_eq!(r.command, CommandLine { args: vec!["echo hi".into()], shell_form: true, files: vec![] });
    assert_eq!(
        (r.mounts.as_slice(), r.network.as_deref()),
        (&["type=cache,target=/c".to_string()][..], Some("none"))
    );
    let Kind::Cmd(c) = only_command("CMD [\"a\", \"b c\"]") else { panic!() };
    assert_eq!(c, CommandLine { args: vec!["a".into(), "b c".into()], shell_form: false, files: vec![] });
    let Kind::Entrypoint(e) = only_command("ENTRYPOINT []") else { panic!() };
    assert!(e.args.is_empty() && !e.shell_form);
    let Kind::Shell(s) = only_command("SHELL [\"/bin/bash\", \"-c\"]") else { panic!() };
    assert_eq!(s, ["/bin/bash", "-c"]);
}

#[test]
fn heredocs_become_inline_files() {
    let Kind::Run(r) = only_command("RUN <<EOF\necho hi\nEOF") else { panic!() };
    assert_eq!(r.command.args, ["<<EOF"]);
    assert_eq!(
        r.command.files,
        [InlineFile { name: "EOF".into(), data: "echo hi\n".into(), chomp: false, expand: true }]
    );
    let Kind::Copy(c) = only_command("COPY <<-'A' foo.txt /dst/\n\tline $X\n\tA") else { panic!() };
    assert_eq!(c.sources, ["foo.txt"]);
    assert_eq!(
        c.inline,
        [InlineFile { name: "A".into(), data: "line $X\n".into(), chomp: true, expand: false }]
    );
    assert_eq!(c.dest, "/dst/");
}

#[test]
fn env_label_arg_shapes() {
    let Kind::Env(e) = only_command("ENV A=1 B=\"x y\"") else { panic!() };
    assert_eq!(e[1], KeyValue { key: "B".into(), value: "\"x y\"".into(), legacy: false });
    let Kind::Env(e) = only_command("ENV A 1 2") else { panic!() };
    assert_eq!(e, [KeyValue { key: "A".into(), value: "1 2".into(), legacy: true }]);
    let Kind::Label(l) = only_command("LABEL a.b=c") else { panic!() };
    assert_eq!(l[0].key, "a.b");
    let Kind::Arg(a) = only_command("ARG X Y=2") else { panic!() };
    assert_eq!(a[0].default, None);
    assert_eq!(a[1].default.as_deref(), Some("2"));
}

#[test]
fn copy_and_add_flags() {
    let Kind::Copy(c) = only_command(
        "COPY --from=0 --chown=1:2 --chmod=755 --link --parents --exclude=*.md --exclude=x a b /d/",
    ) else {
        panic!()
    };
    assert_eq!(
        (c.from.as_deref(), c.chown.as_deref(), c.chmod.as_deref()),
        (Some("0"), Some("1:2"), Some("755"))
    );
    assert!(c.link && c.parents);
    assert_eq!(c.excludes, ["*.md", "x"]);
    assert_eq!(c.sources, ["a", "b"]);
    let Kind::Add(a) =
        only_command("ADD --checksum=sha256:abc --keep-git-dir=false --unpack https://x/y.tgz /")
    else {
        panic!()
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!((a.keep_git_dir, a.unpack), (Some(false), Some(true)));
}

#[test]
fn healthcheck_forms() {
    assert_eq!(only_command("HEALTHCHECK NONE"), Kind::Healthcheck(Health::None));
    let Kind::Healthcheck(Health::Check { test, interval, retries, .. }) =
        only_command("HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://x/ || exit 1")
    else {
        panic!()
    };
    assert_eq!(test, ["CMD-SHELL", "curl -f http://x/ || exit 1"]);
    assert_eq!((interval, retries), (5_000_000_000, 3));
    let Kind::Healthcheck(Health::Check { test, .. }) = only_command("HEALTHCHECK cmd [\"a\", \"b\"]") else {
        panic!()
    };
    assert_eq!(test, ["CMD", "a", "b"]);
}

#[test]
fn onbuild_and_misc() {
    assert_eq!(only_command("ONBUILD RUN echo hi"), Kind::Onbuild("RUN echo hi".into()));
    assert_eq!(
        only_command("onbuild copy <<EOF /x\nbody\nEOF"),
        Kind::Onbuild("copy <<EOF /x\nbody\nEOF".into())
    );
    assert_eq!(
        only_command("EXPOSE 8080 80/tcp 53/udp"),
        Kind::Expose(vec!["53/udp".into(), "80/tcp".into(), "8080".into()])
    );
    assert_eq!(only_command("VOLUME /a /b"), Kind::Volume(vec!["/a".into(), "/b".into()]));
    assert_eq!(only_command("USER 1000:1000"), Kind::User("1000:1000".into()));
    assert_eq!(only_command("WORKDIR /app"), Kind::Workdir("/app".into()));
    assert_eq!(only_command("STOPSIGNAL SIGKILL"), Kind::StopSignal("SIGKILL".into()));
    let df = typed("FROM a\nONBUILD COPPY x y\n").expect("a bad trigger is only a warning");
    assert!(df.warnings.iter().any(|w| w.message.contains("ONBUILD trigger will fail")));
}

#[test]
fn odd_shapes_never_panic() {
    for kw in KEYWORDS {
        for args in [
            "",
            "foo=bar",
            "a b c",
            "0 0",
            "[",
            "[\"a\"]",
            "--x",
            "<<EOF",
            "= =",
            "\"",
            "--mount=type=secret",
        ] {
            let _ = typed(&format!("FROM a\n{kw} {args}\n"));
            let _ = typed(&format!("{kw} {args}\n"));
        }
    }
}
