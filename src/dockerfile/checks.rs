//! Build checks: BuildKit's Dockerfile linter rules (frontend/dockerfile/linter), with its rule
//! names, URLs and message texts, plus two of hako's own for what hako does differently (a
//! `# syntax=` frontend it does not run, text it ignores after an exec-form array). Findings are
//! [`Warning`]s with a rule; `# check=skip=…` (BuildKit's directive) turns rules off.
//!
//! The checks here need only the parse tree; `UndefinedArgInFrom` needs the global ARGs' values
//! and is found by the planner (it asks [`Config::enabled`] first).

use super::error::{Pos, Warning};
use super::parser::{Ast, Node};

/// A rule: its name and the documentation URL (empty for hako's own rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The rule name (`FromAsCasing`).
    pub name: &'static str,
    /// Where it is documented.
    pub url: &'static str,
}

macro_rules! rule {
    ($id:ident, $name:literal, $url:literal) => {
        #[doc = concat!("`", $name, "`.")]
        pub const $id: Rule = Rule { name: $name, url: $url };
    };
}

rule!(STAGE_NAME_CASING, "StageNameCasing", "https://docs.docker.com/go/dockerfile/rule/stage-name-casing/");
rule!(FROM_AS_CASING, "FromAsCasing", "https://docs.docker.com/go/dockerfile/rule/from-as-casing/");
rule!(
    NO_EMPTY_CONTINUATION,
    "NoEmptyContinuation",
    "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/"
);
rule!(
    JSON_ARGS_RECOMMENDED,
    "JSONArgsRecommended",
    "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
);
rule!(
    MAINTAINER_DEPRECATED,
    "MaintainerDeprecated",
    "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/"
);
rule!(
    UNDEFINED_ARG_IN_FROM,
    "UndefinedArgInFrom",
    "https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/"
);
rule!(
    LEGACY_KEY_VALUE_FORMAT,
    "LegacyKeyValueFormat",
    "https://docs.docker.com/go/dockerfile/rule/legacy-key-value-format/"
);
rule!(EXEC_FORM_TRAILING_TEXT, "ExecFormTrailingText", "");
rule!(FRONTEND_NOT_RUN, "FrontendNotRun", "");

const ALL: [Rule; 9] = [
    STAGE_NAME_CASING,
    FROM_AS_CASING,
    NO_EMPTY_CONTINUATION,
    JSON_ARGS_RECOMMENDED,
    MAINTAINER_DEPRECATED,
    UNDEFINED_ARG_IN_FROM,
    LEGACY_KEY_VALUE_FORMAT,
    EXEC_FORM_TRAILING_TEXT,
    FRONTEND_NOT_RUN,
];

/// The documentation URL of the rule named `name` (empty for hako's own rules or unknown names).
pub fn url(name: &str) -> &'static str {
    ALL.iter().find(|r| r.name == name).map_or("", |r| r.url)
}

/// Which rules are on, and whether findings fail the build: BuildKit's check options, from the
/// `# check=skip=A,B;error=true` directive or the `BUILDKIT_DOCKERFILE_CHECK` build arg (which
/// replaces the directive). `experimental=` is accepted; hako has no experimental rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    skip_all: bool,
    skip: Vec<String>,
    /// `error=true`: a build with findings fails before it starts.
    pub error: bool,
}

impl Config {
    /// Parses check options as BuildKit's `linter.ParseLintOptions` does (an unknown key, a part
    /// without `=`, or a bad boolean is an error).
    pub fn parse(value: &str) -> Result<Config, String> {
        let mut cfg = Config::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(cfg);
        }
        for part in value.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            let v = v.trim();
            match k.trim() {
                "skip" if v == "all" => cfg.skip_all = true,
                "skip" => cfg.skip.extend(v.split(',').map(|r| r.trim().to_string())),
                "experimental" => {}
                "error" => {
                    cfg.error = match v {
                        "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                        "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                        _ => return Err(format!("failed to parse check option {part:?}: invalid syntax")),
                    }
                }
                other => return Err(format!("invalid check option {other:?}")),
            }
        }
        Ok(cfg)
    }

    /// Whether `rule` is checked.
    pub fn enabled(&self, rule: &Rule) -> bool {
        self.enabled_name(rule.name)
    }

    /// Whether the rule named `name` is checked.
    pub fn enabled_name(&self, name: &str) -> bool {
        !self.skip_all && !self.skip.iter().any(|s| s == name)
    }

    /// The findings among `warnings` whose rule is on, in line order.
    pub fn findings<'a>(&self, warnings: impl IntoIterator<Item = &'a Warning>) -> Vec<&'a Warning> {
        let mut found: Vec<&Warning> =
            warnings.into_iter().filter(|w| w.rule.is_some_and(|r| self.enabled_name(r))).collect();
        found.sort_by_key(|w| w.pos.line);
        found
    }
}

/// A finding of `rule` about the instruction at `node`.
pub fn warning(rule: &Rule, message: String, node: &Node) -> Warning {
    Warning {
        message,
        pos: Pos::new(node.start_line, node.col),
        rule: Some(rule.name),
        end_line: node.end_line,
    }
}

/// The checks that need only the parse tree, in file order, every rule on (the CLI applies the
/// [`Config`] in force, which a build arg can change).
pub fn run(ast: &Ast) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut push = |rule: &Rule, message: String, node: Option<&Node>, line: usize| {
        out.push(match node {
            Some(n) => warning(rule, message, n),
            None => Warning { message, pos: Pos::new(line, 0), rule: Some(rule.name), end_line: line },
        });
    };
    if let Some(d) = ast.directives.iter().find(|d| d.name == "syntax")
        && !is_dockerfile_v1(&d.value)
    {
        push(
            &FRONTEND_NOT_RUN,
            format!(
                "The syntax directive names frontend '{}'; hako does not run frontend images and builds with its own Dockerfile frontend (docker/dockerfile:1 semantics)",
                d.value
            ),
            None,
            d.line,
        );
    }
    // Stages whose SHELL has been set (by name: a stage built FROM one inherits its SHELL). A base
    // image's own SHELL is not known here, so JSONArgsRecommended still fires on top of one.
    let mut shell_set: Vec<String> = Vec::new();
    let mut stage: Option<String> = None;
    let mut stage_has_shell = false;
    for node in &ast.nodes {
        let name = node.name();
        match name.as_str() {
            "FROM" => {
                if let [_, as_kw, named] = node.args.as_slice() {
                    if *named != named.to_lowercase() {
                        push(
                            &STAGE_NAME_CASING,
                            format!("Stage name '{named}' should be lowercase"),
                            Some(node),
                            0,
                        );
                    }
                    if !from_as_casing_matches(&node.keyword, as_kw) {
                        push(
                            &FROM_AS_CASING,
                            format!("'{as_kw}' and '{}' keywords' casing do not match", node.keyword),
                            Some(node),
                            0,
                        );
                    }
                }
                stage = node.args.get(2).map(|n| n.to_lowercase());
                stage_has_shell = node.args.first().is_some_and(|base| shell_set.contains(base));
                if let Some(s) = stage.as_ref().filter(|_| stage_has_shell) {
                    shell_set.push(s.clone());
                }
            }
            "SHELL" => {
                stage_has_shell = true;
                shell_set.extend(stage.clone());
            }
            "CMD" | "ENTRYPOINT" if !node.json && !stage_has_shell => push(
                &JSON_ARGS_RECOMMENDED,
                format!(
                    "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                ),
                Some(node),
                0,
            ),
            "ENV" | "LABEL" if node.args.chunks(3).any(|kv| kv.get(2).is_some_and(String::is_empty)) => push(
                &LEGACY_KEY_VALUE_FORMAT,
                format!("\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"),
                Some(node),
                0,
            ),
            "MAINTAINER" => push(
                &MAINTAINER_DEPRECATED,
                "Maintainer instruction is deprecated in favor of using label".into(),
                Some(node),
                0,
            ),
            _ => {}
        }
        for n in std::iter::once(node).chain(node.onbuild.as_deref()) {
            if let Some(text) = &n.ignored {
                push(
                    &EXEC_FORM_TRAILING_TEXT,
                    format!(
                        "Text after the JSON array of {} is ignored: '{text}' (BuildKit v0.15 and later read the whole line as the shell form)",
                        n.name()
                    ),
                    Some(node),
                    0,
                );
            }
        }
    }
    out
}

/// BuildKit's `doesFromCaseMatchAsCase`: a mixed-case `FROM` is another rule's business.
fn from_as_casing_matches(from: &str, as_kw: &str) -> bool {
    if from == from.to_lowercase() {
        as_kw == as_kw.to_lowercase()
    } else if from == from.to_uppercase() {
        as_kw == as_kw.to_uppercase()
    } else {
        true
    }
}

/// Whether a `# syntax=` value names the stable Dockerfile frontend, version 1 (what hako
/// implements): `docker/dockerfile[:1[.x[.y]]][@digest]`, optionally with `docker.io/`.
fn is_dockerfile_v1(value: &str) -> bool {
    let image = value.split('@').next().unwrap_or(value);
    let image = image.strip_prefix("docker.io/").unwrap_or(image);
    let Some(rest) = image.strip_prefix("docker/dockerfile") else { return false };
    match rest.strip_prefix(':') {
        None => rest.is_empty(),
        Some(tag) => {
            let parts: Vec<&str> = tag.split('.').collect();
            parts[0] == "1"
                && parts.len() <= 3
                && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    fn found(src: &str) -> Vec<(&'static str, usize, String)> {
        let ast = parse(src).expect("parses");
        let value = ast.directives.iter().find(|d| d.name == "check").map_or("", |d| d.value.as_str());
        let cfg = Config::parse(value).expect("check options");
        let warnings = run(&ast);
        cfg.findings(&warnings)
            .into_iter()
            .map(|w| (w.rule.unwrap_or(""), w.pos.line, w.message.clone()))
            .collect()
    }

    #[test]
    fn from_casing_rules_match_buildkits_examples() {
        let f = found(
            "FROM scratch AS BadStageName\nFROM scratch as base2\nFROM scratch AS base3\nfrom scratch AS b4\nFrom scratch as b5\n",
        );
        assert_eq!(
            f,
            [
                ("StageNameCasing", 1, "Stage name 'BadStageName' should be lowercase".to_string()),
                ("FromAsCasing", 2, "'as' and 'FROM' keywords' casing do not match".to_string()),
                ("FromAsCasing", 4, "'AS' and 'from' keywords' casing do not match".to_string()),
            ]
        );
    }

    #[test]
    fn json_args_recommended_unless_a_shell_is_set() {
        let f = found(
            "FROM a AS x\nCMD echo\nENTRYPOINT [\"e\"]\nFROM a AS y\nSHELL [\"bash\", \"-c\"]\nCMD echo\nFROM y\nENTRYPOINT e\n",
        );
        assert_eq!(f.iter().map(|(r, l, _)| (*r, *l)).collect::<Vec<_>>(), [("JSONArgsRecommended", 2)]);
        assert_eq!(
            f[0].2,
            "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals"
        );
    }

    #[test]
    fn legacy_key_value_maintainer_and_trailing_text() {
        let f = found(
            "FROM a\nENV A 1\nENV B=2\nLABEL x y z\nMAINTAINER me\nCMD [\"x\"] # why\nONBUILD RUN [\"y\"]z\n",
        );
        let rules: Vec<(&str, usize)> = f.iter().map(|(r, l, _)| (*r, *l)).collect();
        assert_eq!(
            rules,
            [
                ("LegacyKeyValueFormat", 2),
                ("LegacyKeyValueFormat", 4),
                ("MaintainerDeprecated", 5),
                ("ExecFormTrailingText", 6),
                ("ExecFormTrailingText", 7)
            ]
        );
        assert_eq!(f[1].2, "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format");
        assert!(f[3].2.starts_with("Text after the JSON array of CMD is ignored: '# why'"), "{}", f[3].2);
    }

    #[test]
    fn syntax_directive_other_than_dockerfile_1_is_reported() {
        for ok in [
            "docker/dockerfile:1",
            "docker/dockerfile:1.7",
            "docker.io/docker/dockerfile:1.4.3",
            "docker/dockerfile",
            "docker/dockerfile:1@sha256:ab",
        ] {
            assert!(found(&format!("# syntax={ok}\nFROM a\n")).is_empty(), "{ok}");
        }
        for other in [
            "docker/dockerfile:1-labs",
            "docker/dockerfile-upstream:master",
            "example.com/fe:2",
            "docker/dockerfile:2",
        ] {
            let f = found(&format!("# syntax={other}\nFROM a\n"));
            assert_eq!((f[0].0, f[0].1), ("FrontendNotRun", 1), "{other}");
        }
    }

    #[test]
    fn check_directive_skips() {
        assert!(found("# check=skip=FromAsCasing,StageNameCasing\nFROM a as B\n").is_empty());
        assert!(found("# check=skip=all;error=true\nFROM a as B\n").is_empty());
        assert_eq!(found("# check=error=true\nFROM a as b\n").len(), 1);
        assert!(Config::parse("error=true").expect("ok").error);
        assert_eq!(Config::parse("skip").unwrap_err(), "invalid check option \"skip\"");
        assert_eq!(Config::parse("colour=red").unwrap_err(), "invalid check option \"colour\"");
        assert!(Config::parse("error=maybe").is_err());
    }
}
