//! ARG/ENV scoping as BuildKit's dispatcher does it: global ARGs (before the first FROM) are visible
//! only to FROM lines unless a stage re-declares them; a stage's ARG takes its value from
//! `--build-arg`, else its default (expanded), else the global value; ARG and ENV values form one
//! ordered environment for expansion and for RUN, while only ENV reaches the image config.

use std::collections::BTreeMap;

use super::platform::Platform;

/// The build arg that sets the build's epoch, as BuildKit's frontend reads it (buildx fills it from
/// the environment variable of the same name). It is never reported as unused.
pub const EPOCH_ARG: &str = "SOURCE_DATE_EPOCH";

/// Build arguments every build knows without a declaration in the Dockerfile (and that stay out of
/// the image history and cache keys): the proxy variables.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// An ordered list of `NAME=value` where setting an existing name replaces it in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList(pub Vec<(String, String)>);

impl EnvList {
    /// Sets `name` (replacing, keeping its position) .
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.0.push((name.to_string(), value.to_string())),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl crate::dockerfile::shell::Env for EnvList {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

/// The automatic platform arguments (`BUILDPLATFORM`, `TARGETARCH`, …, `TARGETSTAGE`); a
/// `--build-arg` of the same name overrides one.
pub fn platform_args(
    build: &Platform,
    target: &Platform,
    target_stage: &str,
    overrides: &BTreeMap<String, String>,
) -> EnvList {
    let stage = if target_stage.is_empty() { "default" } else { target_stage };
    let mut env = EnvList::default();
    for (k, v) in [
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", build.arch.clone()),
        ("BUILDVARIANT", build.variant.clone()),
        ("TARGETPLATFORM", target.to_string()),
        ("TARGETOS", target.os.clone()),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", target.arch.clone()),
        ("TARGETVARIANT", target.variant.clone()),
        ("TARGETSTAGE", stage.to_string()),
    ] {
        env.set(k, overrides.get(k).map_or(v.as_str(), String::as_str));
    }
    env
}

/// The variable scope of one stage while its instructions are planned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// What expansion and RUN see: inherited ENV, then ARG and ENV values in instruction order.
    pub env: EnvList,
    /// Only ENV values: what the image config records.
    pub image_env: EnvList,
    /// ARGs declared in this stage so far, with their values (`None`: declared without a value).
    pub args: Vec<(String, Option<String>)>,
    /// Names of the ARGs this stage declared, in order (not its parent stage's): the unused
    /// `--build-arg` warning looks them up, and BuildKit's history lists them before each RUN's
    /// command.
    pub declared: Vec<String>,
}

impl Scope {
    /// A stage scope that inherits `image_env` (the base image's ENV).
    pub fn new(image_env: EnvList) -> Scope {
        Scope { env: image_env.clone(), image_env, args: Vec::new(), declared: Vec::new() }
    }

    /// The scope a stage built `FROM` this one starts with: BuildKit's child stage starts from the
    /// parent's state, whose environment holds the parent's ARG values as well as its ENV (only
    /// ENV is in the image config). The ARGs count as the child's, so steps using them are keyed
    /// by them; the names were declared by the parent, not the child.
    pub fn inherited(&self) -> Scope {
        Scope { declared: Vec::new(), ..self.clone() }
    }

    /// Records `ENV name=value`.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.set(name, value);
        self.image_env.set(name, value);
    }

    /// Declares an ARG with its resolved value (see [`resolve_arg`]).
    pub fn declare_arg(&mut self, name: &str, value: Option<String>) {
        if let Some(v) = &value {
            self.env.set(name, v);
        }
        match self.args.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.args.push((name.to_string(), value)),
        }
        if !self.declared.iter().any(|k| k == name) {
            self.declared.push(name.to_string());
        }
    }

    /// This stage's ARGs with their values now, as BuildKit's history shows them before a RUN:
    /// the environment's value (a later ENV of the same name wins), else empty.
    pub fn history_args(&self) -> Vec<(String, String)> {
        self.declared.iter().map(|k| (k.clone(), self.env.get(k).unwrap_or_default().to_string())).collect()
    }

    /// ARGs with values that are in scope (they are part of every later RUN's environment and
    /// cache key).
    pub fn arg_values(&self) -> BTreeMap<String, String> {
        self.args.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect()
    }

    /// Whether `name` is an ARG of this stage (as opposed to an ENV or unknown).
    pub fn is_arg(&self, name: &str) -> bool {
        self.args.iter().any(|(k, _)| k == name)
    }
}

/// The value an `ARG name[=default]` takes: `--build-arg` wins, then the default (already expanded
/// by the caller), then — only when neither is given — the global value of the same name.
pub fn resolve_arg(
    name: &str,
    expanded_default: Option<String>,
    build_args: &BTreeMap<String, String>,
    globals: &EnvList,
) -> Option<String> {
    if let Some(v) = build_args.get(name) {
        return Some(v.clone());
    }
    if expanded_default.is_some() {
        return expanded_default;
    }
    globals.get(name).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_list_replaces_in_place() {
        let mut e = EnvList::default();
        e.set("A", "1");
        e.set("B", "2");
        e.set("A", "3");
        assert_eq!(e.0, [("A".into(), "3".into()), ("B".into(), "2".into())]);
    }

    #[test]
    fn arg_precedence() {
        let build: BTreeMap<String, String> = [("X".to_string(), "cli".to_string())].into();
        let mut globals = EnvList::default();
        globals.set("X", "global");
        globals.set("Y", "global-y");
        assert_eq!(resolve_arg("X", Some("default".into()), &build, &globals).as_deref(), Some("cli"));
        assert_eq!(resolve_arg("Y", Some("default".into()), &build, &globals).as_deref(), Some("default"));
        assert_eq!(resolve_arg("Y", None, &build, &globals).as_deref(), Some("global-y"));
        assert_eq!(resolve_arg("Z", None, &build, &globals), None);
    }

    #[test]
    fn platform_args_follow_platforms_and_overrides() {
        let build = Platform::parse("linux/amd64").expect("p");
        let target = Platform::parse("linux/arm/v7").expect("p");
        let overrides: BTreeMap<String, String> = [("BUILDOS".to_string(), "custom".to_string())].into();
        let env = platform_args(&build, &target, "", &overrides);
        assert_eq!(env.get("TARGETPLATFORM"), Some("linux/arm/v7"));
        assert_eq!(env.get("TARGETVARIANT"), Some("v7"));
        assert_eq!(env.get("BUILDOS"), Some("custom"));
        assert_eq!(env.get("TARGETSTAGE"), Some("default"));
    }

    #[test]
    fn scope_keeps_args_out_of_the_image_env() {
        let mut s = Scope::new(EnvList(vec![("PATH".into(), "/bin".into())]));
        s.declare_arg("V", Some("1".into()));
        s.declare_arg("NOVAL", None);
        s.set_env("E", "2");
        assert_eq!(s.env.get("V"), Some("1"));
        assert_eq!(s.image_env.get("V"), None);
        assert_eq!(s.image_env.get("E"), Some("2"));
        assert_eq!(s.arg_values().len(), 1);
        assert!(s.is_arg("NOVAL") && !s.is_arg("E"));
    }
}
