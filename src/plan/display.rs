//! The human-readable plan printed by `hako build --dry-run`: stages in build order with their
//! steps (values expanded), the build args each step uses, and the stages the target skips.

use std::fmt;

use super::{Op, Plan, Source, StagePlan};

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = &self.stages[self.target];
        writeln!(f, "target: {} (stage {} of {})", describe(target), self.target, self.stages.len())?;
        writeln!(f, "platform: {} (build platform {})", self.target_platform, self.build_platform)?;
        for &i in &self.order {
            let stage = &self.stages[i];
            writeln!(f)?;
            write!(f, "stage {}: FROM {}", describe(stage), self.source(&stage.base))?;
            if stage.platform != self.target_platform {
                write!(f, " --platform={}", stage.platform)?;
            }
            writeln!(f, "  (line {})", stage.loc.start_line)?;
            args_line(f, &stage.used_args)?;
            let total = stage.steps.len();
            for (n, step) in stage.steps.iter().enumerate() {
                writeln!(f, "  [{} {}/{}] {}", stage.label(), n + 1, total, step.display)?;
                if let Op::Run { mounts, .. } = &step.op {
                    for (m, src) in mounts {
                        let mut what = format!("      mount type={}", m.kind);
                        if let Some(t) = &m.target {
                            what.push_str(&format!(" target={t}"));
                        }
                        if let Some(id) = &m.id {
                            what.push_str(&format!(" id={id}"));
                        }
                        if *src != Source::BuildContext {
                            what.push_str(&format!(" from={}", self.source(src)));
                        }
                        writeln!(f, "{what}")?;
                    }
                }
                args_line(f, &step.used_args)?;
            }
        }
        let skipped: Vec<&StagePlan> = self.stages.iter().filter(|s| !s.needed).collect();
        if !skipped.is_empty() {
            writeln!(f)?;
            for s in skipped {
                writeln!(
                    f,
                    "skipped: stage {} (line {}), not needed for the target",
                    describe(s),
                    s.loc.start_line
                )?;
            }
        }
        Ok(())
    }
}

impl Plan {
    /// Describes a source for the plan output.
    fn source(&self, s: &Source) -> String {
        match s {
            Source::Scratch => "scratch".into(),
            Source::Image(r) => format!("{r} (image)"),
            Source::Stage(i) => format!("{} (stage {i})", self.stages[*i].label()),
            Source::Context { name, value } => format!("{name} (build context {value})"),
            Source::BuildContext => "the build context".into(),
        }
    }
}

fn describe(s: &StagePlan) -> String {
    match &s.name {
        Some(n) => format!("{} \"{n}\"", s.index),
        None => s.index.to_string(),
    }
}

fn args_line(f: &mut fmt::Formatter<'_>, args: &std::collections::BTreeMap<String, String>) -> fmt::Result {
    if args.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(f, "      uses build args: {}", list.join(" "))
}
