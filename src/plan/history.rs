//! A step's image history entry (`created_by`), as BuildKit's Dockerfile frontend writes it: each
//! dispatcher's commit message, often Go's `%v` or `%q` of the values it set (`EXPOSE map[80/tcp:{}]`,
//! `CMD ["/bin/sh" "-c" "x"]`), with ` # buildkit` after a RUN, COPY or ADD. `docker history`,
//! image scanners and anyone diffing two builders' images read these strings, so they are kept
//! byte for byte; Go's formatting rules are hand-written here because no crate reproduces them.

use super::Op;
use super::command::{config_argv, run_argv, with_shell};
use super::scope::Scope;
use crate::dockerfile::instructions::Health;

/// The `created_by` of `op`'s history entry, or `None` for an instruction BuildKit records none
/// for (ONBUILD) and for ARG, whose entry the planner writes from the instruction. `shell` is the
/// stage's SHELL at the step; `scope` gives the ARGs the stage declared so far, which BuildKit
/// lists before a RUN's command (`|2 A=1 B=2 …`).
pub fn created_by(op: &Op, shell: &[String], scope: &Scope) -> Option<String> {
    Some(match op {
        Op::Run { command, .. } => {
            let (mut args, script) = run_argv(command, shell);
            if script.is_some() {
                // BuildKit runs a `#!` heredoc through the shell: `sh -c /dev/pipes/EOF`.
                args = with_shell(shell, args.join(" "));
            }
            let run_args = scope.history_args();
            let mut words: Vec<String> = Vec::new();
            if !run_args.is_empty() {
                words.push(format!("|{}", run_args.len()));
                words.extend(run_args.iter().map(|(k, v)| format!("{k}={v}")));
            }
            words.extend(args);
            format!("RUN {} # buildkit", words.join(" "))
        }
        Op::Copy(c) => {
            let mut m = String::from(if c.add { "ADD" } else { "COPY" });
            if c.parents {
                m.push_str(" --parents");
            }
            if let Some(v) = &c.chown {
                m.push_str(&format!(" --chown={v}"));
            }
            if let Some(v) = &c.chmod {
                m.push_str(&format!(" --chmod={v}"));
            }
            for s in &c.sources {
                m.push_str(&format!(" {s}"));
            }
            for f in &c.inline {
                m.push_str(&format!(" <<{}", f.name));
            }
            format!("{m} {} # buildkit", c.dest_raw)
        }
        Op::Env(pairs) => pairs.iter().fold("ENV".to_string(), |m, (k, v)| format!("{m} {k}={v}")),
        Op::Label(pairs) => pairs.iter().fold("LABEL".to_string(), |m, (k, v)| format!("{m} {k}={v}")),
        // ARG's entry shows each default as written (expanded), which only the instruction has:
        // the planner writes it (see `expand.rs`).
        Op::Arg(_) => return None,
        Op::Workdir(dir) => format!("WORKDIR {dir}"),
        Op::User(u) => format!("USER {u}"),
        Op::Volume(v) => format!("VOLUME [{}]", v.join(" ")),
        Op::Expose(ports) => {
            // Go prints a map with its keys sorted; a port set's values are empty structs.
            let mut keys: Vec<&str> = ports.iter().map(String::as_str).collect();
            keys.sort_unstable();
            keys.dedup();
            let each: Vec<String> = keys.iter().map(|k| format!("{k}:{{}}")).collect();
            format!("EXPOSE map[{}]", each.join(" "))
        }
        Op::StopSignal(s) => format!("STOPSIGNAL {s}"),
        Op::Healthcheck(h) => format!("HEALTHCHECK {}", healthcheck(h)),
        Op::Shell(s) => format!("SHELL [{}]", s.join(" ")),
        Op::Cmd(c) => format!("CMD {}", quote_list(&config_argv(c, shell))),
        Op::Entrypoint(c) => format!("ENTRYPOINT {}", quote_list(&config_argv(c, shell))),
        Op::Onbuild(_) => return None,
        Op::Maintainer(m) => format!("MAINTAINER {m}"),
    })
}

/// Go's `%q` of the `*HealthcheckConfig` BuildKit sets: `&{[test…] interval timeout start-period
/// start-interval retries}`, durations through their `String()`, the retry count as a rune.
fn healthcheck(h: &Health) -> String {
    let none = ["NONE".to_string()];
    let (test, durations, retries) = match h {
        Health::None => (&none[..], [0; 4], 0),
        Health::Check { test, interval, timeout, start_period, start_interval, retries } => {
            (&test[..], [*interval, *timeout, *start_period, *start_interval], *retries)
        }
    };
    let durations: Vec<String> = durations.iter().map(|d| quote(&go_duration(*d))).collect();
    format!("&{{{} {} {}}}", quote_list(test), durations.join(" "), quote_rune(retries))
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn quote_list(v: &[String]) -> String {
    let each: Vec<String> = v.iter().map(|s| quote(s)).collect();
    format!("[{}]", each.join(" "))
}

/// Go's `strconv.Quote`: a double-quoted Go literal, printable characters as they are. Which
/// non-ASCII characters Go counts as printable is approximated: the control, format, separator
/// and private-use ranges a Dockerfile might plausibly hold are escaped, the rest kept.
fn quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        escape_into(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%q` of an integer: `strconv.QuoteRune` (0 is `'\x00'`, 65 is `'A'`).
fn quote_rune(n: i64) -> String {
    let c = u32::try_from(n).ok().and_then(char::from_u32).unwrap_or('\u{fffd}');
    let mut out = String::from('\'');
    escape_into(&mut out, c, '\'');
    out.push('\'');
    out
}

fn escape_into(out: &mut String, c: char, quote: char) {
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if go_printable(c) => out.push(c),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Approximately Go's `unicode.IsPrint` for non-ASCII characters (see [`quote`]).
fn go_printable(c: char) -> bool {
    !matches!(c as u32,
        0x80..=0xa0 | 0xad | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x206f | 0x3000
        | 0xd800..=0xf8ff | 0xfeff | 0xfff0..=0xfffb | 0xfffe..=0xffff | 0xf0000..)
}

/// Go's `time.Duration.String()` of `ns` nanoseconds: `0s`, `500ms`, `1.5s`, `1m30s`, `1h0m0s`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    // Below a second: the largest unit that keeps a non-zero integer part, with a fraction.
    let frac = |v: u64, unit: u64| -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let f = format!("{rest:0digits$}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let secs = frac(u % 60_000_000_000, 1_000_000_000);
    let mins = u / 60_000_000_000;
    match (mins / 60, mins % 60) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (ns, want) in [
            (0, "0s"),
            (5_000_000_000, "5s"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_661_000_000_000, "1h1m1s"),
            (500_000_000, "500ms"),
            (1_500_000, "1.5ms"),
            (2_000, "2µs"),
            (999, "999ns"),
            (60_000_000_000, "1m0s"),
        ] {
            assert_eq!(go_duration(ns), want, "{ns}");
        }
    }

    #[test]
    fn go_quoting() {
        assert_eq!(quote("echo \"$A\"\t\\"), r#""echo \"$A\"\t\\""#);
        assert_eq!(quote("é✓"), "\"é✓\"");
        assert_eq!(quote("\u{7f}\u{a0}\u{feff}"), r#""\x7f\u00a0\ufeff""#);
        assert_eq!(quote_rune(0), r"'\x00'");
        assert_eq!(quote_rune(3), r"'\x03'");
        assert_eq!(quote_rune(65), "'A'");
        assert_eq!(quote_rune(39), r"'\''");
        assert_eq!(
            quote_list(&["/bin/sh".into(), "-ec".into(), "echo $A".into()]),
            r#"["/bin/sh" "-ec" "echo $A"]"#
        );
        assert_eq!(quote_list(&[]), "[]");
    }

    #[test]
    fn healthchecks_as_go_prints_the_struct() {
        let h = Health::Check {
            test: vec!["CMD-SHELL".into(), "true".into()],
            interval: 5_000_000_000,
            timeout: 3_000_000_000,
            start_period: 0,
            start_interval: 0,
            retries: 0,
        };
        assert_eq!(healthcheck(&h), r#"&{["CMD-SHELL" "true"] "5s" "3s" "0s" "0s" '\x00'}"#);
        assert_eq!(healthcheck(&Health::None), r#"&{["NONE"] "0s" "0s" "0s" "0s" '\x00'}"#);
    }
}
