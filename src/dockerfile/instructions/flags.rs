//! Instruction flags (`--name[=value]`) with BuildKit's rules: each instruction accepts its own
//! set, string flags need a value, booleans accept `--b`, `--b=true|false`, only repeatable flags
//! may be given twice.

use std::collections::BTreeMap;

use super::suggest::closest;

/// How a flag takes values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--x` or `--x=true|false`.
    Bool,
    /// `--x=value`, once.
    String,
    /// `--x=value`, repeatable.
    Strings,
}

/// Parsed flag values of one instruction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    values: BTreeMap<String, Vec<String>>,
    /// Flag names in the order they were used.
    pub used: Vec<String>,
}

impl Flags {
    /// Parses `words` against the accepted `spec`.
    pub fn parse(words: &[String], spec: &[(&str, FlagKind)]) -> Result<Flags, FlagError> {
        let mut flags = Flags::default();
        for word in words {
            if word == "--" {
                break;
            }
            let Some(body) = word.strip_prefix("--") else {
                return Err(FlagError::new(format!("arg should start with -- : {word}"), word));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let flag_name = format!("--{name}");
            let Some(&(_, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                let mut e = FlagError::new(format!("unknown flag: {flag_name}"), word);
                if let Some(s) = closest(name, spec.iter().map(|(n, _)| *n)) {
                    e.message.push_str(&format!(" (did you mean --{s}?)"));
                }
                return Err(e);
            };
            if flags.values.contains_key(name) && kind != FlagKind::Strings {
                return Err(FlagError::new(format!("duplicate flag specified: {flag_name}"), word));
            }
            let value = match (kind, value) {
                (FlagKind::Bool, Some("")) | (FlagKind::String | FlagKind::Strings, None) => {
                    return Err(FlagError::new(format!("missing a value on flag: {flag_name}"), word));
                }
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some(v)) => match v.to_lowercase().as_str() {
                    "true" => "true".to_string(),
                    "false" => "false".to_string(),
                    _ => {
                        return Err(FlagError::new(
                            format!("expecting boolean value for flag {flag_name}, not: {v}"),
                            word,
                        ));
                    }
                },
                (_, Some(v)) => v.to_string(),
            };
            flags.values.entry(name.to_string()).or_default().push(value);
            if !flags.used.iter().any(|u| u == name) {
                flags.used.push(name.to_string());
            }
        }
        Ok(flags)
    }

    /// The value of a string flag, if given.
    pub fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last()).cloned()
    }

    /// All values of a repeatable flag.
    pub fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    /// A boolean flag: `None` when not given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.values.get(name).and_then(|v| v.last()).map(|v| v == "true")
    }
}

/// A bad flag, with the word to point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    /// What is wrong.
    pub message: String,
    /// The flag word as written (for locating it in the file).
    pub word: String,
}

impl FlagError {
    fn new(message: String, word: &str) -> Self {
        FlagError { message, word: word.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::FlagKind::*;
    use super::*;

    const SPEC: &[(&str, FlagKind)] = &[("b", Bool), ("str", String), ("mount", Strings)];

    fn p(words: &[&str]) -> Result<Flags, std::string::String> {
        let words: Vec<std::string::String> = words.iter().map(|w| w.to_string()).collect();
        Flags::parse(&words, SPEC).map_err(|e| e.message)
    }

    #[test]
    fn bflag_rules() {
        let f = p(&["--b", "--str=x", "--mount=a", "--mount=b"]).expect("ok");
        assert_eq!(f.bool("b"), Some(true));
        assert_eq!(f.string("str").as_deref(), Some("x"));
        assert_eq!(f.strings("mount"), ["a", "b"]);
        assert_eq!(f.used, ["b", "str", "mount"]);
        assert_eq!(p(&["--b=FALSE"]).expect("ok").bool("b"), Some(false));
        assert_eq!(p(&["--str="]).expect("ok").string("str").as_deref(), Some(""));
        assert_eq!(p(&["--str"]).unwrap_err(), "missing a value on flag: --str");
        assert_eq!(p(&["--b="]).unwrap_err(), "missing a value on flag: --b");
        assert_eq!(p(&["--b=yes"]).unwrap_err(), "expecting boolean value for flag --b, not: yes");
        assert_eq!(p(&["--str=a", "--str=b"]).unwrap_err(), "duplicate flag specified: --str");
        assert_eq!(p(&["--boo"]).unwrap_err(), "unknown flag: --boo");
        assert_eq!(p(&["--mout=x"]).unwrap_err(), "unknown flag: --mout (did you mean --mount?)");
        assert_eq!(p(&["-x"]).unwrap_err(), "arg should start with -- : -x");
    }
}
