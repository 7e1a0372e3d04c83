//! Instructions that change only the image config (ENV, LABEL, USER, CMD, …): a pure function of
//! the config and the expanded instruction, so they need no cache — they are applied again on
//! every build, and they do not change the cache key of the filesystem that later steps start from.

use std::collections::BTreeMap;

use crate::dockerfile::instructions::Health;
use crate::image::config::{Empty, Healthcheck, ImageConfig};
use crate::plan::{Op, config_argv};

/// Applies `op` to `config` if it only changes the config; returns false for the instructions
/// that also produce a layer (RUN, COPY/ADD, WORKDIR — whose config part, the working directory,
/// is applied here too). `cmd_set` records whether this stage set CMD (ENTRYPOINT resets an
/// inherited CMD, not one set in the same stage).
pub fn apply(config: &mut ImageConfig, op: &Op, cmd_set: &mut bool) -> bool {
    if let Op::Env(pairs) = op {
        let mut env = config.env_pairs();
        for (k, v) in pairs {
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        config.set_env_pairs(&env);
        return true;
    }
    if let Op::Maintainer(m) = op {
        config.author = Some(m.clone());
        return true;
    }
    let cfg = &mut config.config;
    match op {
        Op::Label(pairs) => {
            cfg.labels.get_or_insert_with(BTreeMap::new).extend(pairs.iter().cloned());
        }
        Op::Arg(_) | Op::Env(_) | Op::Maintainer(_) => {}
        Op::User(u) => cfg.user = Some(u.clone()),
        Op::Volume(v) => {
            cfg.volumes.get_or_insert_with(BTreeMap::new).extend(v.iter().map(|p| (p.clone(), Empty {})));
        }
        Op::Expose(ports) => {
            cfg.exposed_ports
                .get_or_insert_with(BTreeMap::new)
                .extend(ports.iter().map(|p| (p.clone(), Empty {})));
        }
        Op::StopSignal(s) => cfg.stop_signal = Some(s.clone()),
        Op::Healthcheck(h) => cfg.healthcheck = Some(healthcheck(h)),
        Op::Shell(s) => cfg.shell = Some(s.clone()),
        Op::Cmd(c) => {
            cfg.cmd = Some(config_argv(c, cfg.shell.as_deref().unwrap_or_default()));
            // BuildKit marks every CMD so (for Windows' command lines), whatever its form.
            cfg.args_escaped = Some(true);
            *cmd_set = true;
        }
        Op::Entrypoint(c) => {
            cfg.entrypoint = Some(config_argv(c, cfg.shell.as_deref().unwrap_or_default()));
            if !*cmd_set {
                cfg.cmd = None;
            }
        }
        Op::Onbuild(t) => cfg.on_build.get_or_insert_with(Vec::new).push(t.clone()),
        Op::Workdir(dir) => {
            cfg.working_dir = Some(dir.clone());
            return false;
        }
        Op::Copy(_) | Op::Run { .. } => return false,
    }
    true
}

fn healthcheck(h: &Health) -> Healthcheck {
    match h {
        Health::None => Healthcheck { test: vec!["NONE".into()], ..Healthcheck::default() },
        Health::Check { test, interval, timeout, start_period, start_interval, retries } => Healthcheck {
            test: test.clone(),
            interval: *interval,
            timeout: *timeout,
            start_period: *start_period,
            start_interval: *start_interval,
            retries: *retries,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::instructions::CommandLine;

    fn cl(args: &[&str], shell_form: bool) -> CommandLine {
        CommandLine { args: args.iter().map(|s| s.to_string()).collect(), shell_form, files: vec![] }
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_only() {
        let mut c = ImageConfig::default();
        c.config.cmd = Some(vec!["inherited".into()]);
        let mut set = false;
        assert!(apply(&mut c, &Op::Entrypoint(cl(&["/e"], false)), &mut set));
        assert_eq!(c.config.cmd, None);
        assert_eq!(c.config.args_escaped, None, "ENTRYPOINT leaves ArgsEscaped");
        assert!(apply(&mut c, &Op::Cmd(cl(&["x"], true)), &mut set));
        assert!(apply(&mut c, &Op::Entrypoint(cl(&["/f"], false)), &mut set));
        assert_eq!(c.config.cmd, Some(vec!["/bin/sh".into(), "-c".into(), "x".into()]));
        assert_eq!(c.config.args_escaped, Some(true), "as BuildKit's dispatchCmd sets it");
    }

    #[test]
    fn shell_forms_run_one_argument_even_when_bare() {
        let mut c = ImageConfig::default();
        let mut set = false;
        apply(&mut c, &Op::Cmd(cl(&[], true)), &mut set);
        assert_eq!(c.config.cmd, Some(vec!["/bin/sh".into(), "-c".into(), String::new()]));
        apply(&mut c, &Op::Shell(vec!["bash".into(), "-ec".into()]), &mut set);
        apply(&mut c, &Op::Entrypoint(cl(&["run", "me"], true)), &mut set);
        assert_eq!(c.config.entrypoint, Some(vec!["bash".into(), "-ec".into(), "run me".into()]));
        apply(&mut c, &Op::Cmd(cl(&[], false)), &mut set);
        assert_eq!(c.config.cmd, Some(vec![]), "CMD [] (written as no Cmd, see image::config)");
    }

    #[test]
    fn layer_steps_are_not_config_only() {
        let mut c = ImageConfig::default();
        let mut set = false;
        assert!(!apply(&mut c, &Op::Workdir("/w".into()), &mut set));
        assert_eq!(c.config.working_dir.as_deref(), Some("/w"));
        assert!(apply(&mut c, &Op::Env(vec![("A".into(), "1".into())]), &mut set));
        assert_eq!(c.env_pairs(), vec![("A".to_string(), "1".to_string())]);
    }
}
