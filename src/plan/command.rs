//! A RUN step's command line as it is executed, from its shell or exec form and its heredocs.

use crate::dockerfile::instructions::{CommandLine, InlineFile};

/// The argv of a step and, for a heredoc script with a `#!` line, the file to provide for it
/// (BuildKit runs it from `/dev/pipes/NAME`). Shell form goes through `shell` (`/bin/sh -c` when
/// empty); a command that is one heredoc runs its body; one with heredoc redirections gets them
/// back, as BuildKit's dispatchRun rebuilds it.
pub fn run_argv(c: &CommandLine, shell: &[String]) -> (Vec<String>, Option<(String, Vec<u8>)>) {
    let with_shell = |s: String| with_shell(shell, s);
    if !c.shell_form {
        return (c.args.clone(), None);
    }
    let text = c.args.first().cloned().unwrap_or_default();
    if c.files.is_empty() {
        return (with_shell(text), None);
    }
    if let (true, Some(f)) = (is_heredoc_word(&text), c.files.first()) {
        let data = body(f);
        if data.starts_with("#!") {
            let path = format!("/dev/pipes/{}", f.name);
            return (vec![path.clone()], Some((path, data.into_bytes())));
        }
        return (with_shell(data), None);
    }
    // A command with heredoc redirections: the shell gets the whole thing back.
    let mut full = text;
    for f in &c.files {
        full.push('\n');
        full.push_str(&f.data);
        full.push_str(&f.name);
    }
    (with_shell(full), None)
}

/// `text` run through `shell` (`/bin/sh -c` when the stage has none), as BuildKit's `withShell`.
pub(super) fn with_shell(shell: &[String], text: String) -> Vec<String> {
    let mut v: Vec<String> =
        if shell.is_empty() { vec!["/bin/sh".into(), "-c".into()] } else { shell.to_vec() };
    v.push(text);
    v
}

/// CMD's or ENTRYPOINT's argv as the image config gets it (and its history shows it): the exec
/// form as written; the shell form's words joined into one argument to the shell, as BuildKit's
/// `withShell` (so a bare `CMD` runs `/bin/sh -c ""`).
pub fn config_argv(c: &CommandLine, shell: &[String]) -> Vec<String> {
    if c.shell_form { with_shell(shell, c.args.join(" ")) } else { c.args.clone() }
}

fn body(f: &InlineFile) -> String {
    if f.chomp {
        f.data.lines().map(|l| format!("{}\n", l.trim_start_matches('\t'))).collect()
    } else {
        f.data.clone()
    }
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`: a command that is nothing but one heredoc.
pub(super) fn is_heredoc_word(s: &str) -> bool {
    let Some(rest) = s.trim().strip_prefix("<<") else { return false };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name = rest.trim_matches(|c| c == '"' || c == '\'');
    !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// What BuildKit adds to the name of a RUN that is one heredoc: ` (first line...)`, the body's
/// first line after trimming, `...` when more follow.
pub(super) fn heredoc_summary(c: &CommandLine) -> Option<String> {
    let (true, Some(first), Some(f)) = (c.shell_form, c.args.first(), c.files.first()) else { return None };
    if !is_heredoc_word(first) {
        return None;
    }
    let doc = f.data.trim().replace("\r\n", "\n");
    let mut lines = doc.split('\n');
    let line = lines.next().unwrap_or_default();
    Some(format!(" ({line}{})", if lines.next().is_some() { "..." } else { "" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cl(text: &str, files: &[(&str, &str)]) -> CommandLine {
        CommandLine {
            args: vec![text.into()],
            shell_form: true,
            files: files
                .iter()
                .map(|(n, d)| InlineFile { name: (*n).into(), data: (*d).into(), chomp: false, expand: true })
                .collect(),
        }
    }

    #[test]
    fn shell_exec_and_heredoc_forms() {
        let sh = vec!["/bin/sh".to_string(), "-c".into()];
        assert_eq!(run_argv(&cl("echo hi", &[]), &sh).0, ["/bin/sh", "-c", "echo hi"]);
        let exec = CommandLine { args: vec!["/bin/true".into()], shell_form: false, files: vec![] };
        assert_eq!(run_argv(&exec, &sh).0, ["/bin/true"]);
        assert_eq!(
            run_argv(&cl("<<EOF", &[("EOF", "echo a\necho b\n")]), &sh).0,
            ["/bin/sh", "-c", "echo a\necho b\n"]
        );
        let (args, file) = run_argv(&cl("<<EOF", &[("EOF", "#!/bin/sh\necho x\n")]), &sh);
        assert_eq!(args, ["/dev/pipes/EOF"]);
        assert_eq!(file.unwrap().0, "/dev/pipes/EOF");
        assert_eq!(
            run_argv(&cl("python3 <<EOT", &[("EOT", "print(1)\n")]), &sh).0,
            ["/bin/sh", "-c", "python3 <<EOT\nprint(1)\nEOT"]
        );
        let pwsh = vec!["pwsh".to_string(), "-c".into()];
        assert_eq!(run_argv(&cl("x", &[]), &pwsh).0, ["pwsh", "-c", "x"]);
    }

    #[test]
    fn heredoc_words() {
        assert!(is_heredoc_word("<<EOF"));
        assert!(is_heredoc_word("<<-EOF"));
        assert!(is_heredoc_word("<<\"EOF\""));
        assert!(!is_heredoc_word("cat <<EOF"));
        assert!(!is_heredoc_word("<<"));
    }

    #[test]
    fn heredoc_summaries_as_buildkit_names_the_step() {
        assert_eq!(
            heredoc_summary(&cl("<<EOF", &[("EOF", "echo one\necho two\n")])).as_deref(),
            Some(" (echo one...)")
        );
        assert_eq!(heredoc_summary(&cl("<<EOF", &[("EOF", "\n  only  \n")])).as_deref(), Some(" (only)"));
        assert_eq!(heredoc_summary(&cl("python3 <<EOT", &[("EOT", "print(1)\n")])), None, "a redirection");
        assert_eq!(heredoc_summary(&cl("echo hi", &[])), None);
    }
}
