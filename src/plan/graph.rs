//! The stage graph: which stage `--target` names, cycle detection over every stage (as BuildKit
//! validates the whole file), and the build order of the stages the target needs.

use super::StagePlan;
use crate::dockerfile::instructions::Dockerfile;
use crate::dockerfile::{Diagnostic, Pos};

/// The index of the target stage: `--target` by name (case-insensitive), else the last stage.
pub fn resolve_target(df: &Dockerfile, target: Option<&str>) -> Result<usize, Diagnostic> {
    let last = df.stages.len().saturating_sub(1);
    let Some(name) = target else { return Ok(last) };
    let lower = name.to_lowercase();
    if let Some(s) = df.stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
        return Ok(s.index);
    }
    let names: Vec<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
    let mut msg = format!("target stage \"{name}\" could not be found");
    if let Some(s) = crate::dockerfile::instructions::closest_word(name, names.iter().copied()) {
        msg.push_str(&format!(" (did you mean {s}?)"));
    }
    let hint = if names.is_empty() {
        "the Dockerfile names no stages: add `AS <name>` to a FROM line".to_string()
    } else {
        format!("stages named in this Dockerfile: {}", names.join(", "))
    };
    Err(Diagnostic::new(msg, Pos::default()).with_hint(hint))
}

/// Marks the stages the target needs and returns them in build order (dependencies first, ties in
/// file order). Fails on a dependency cycle anywhere in the file.
pub fn build_order(stages: &mut [StagePlan], target: usize) -> Result<Vec<usize>, Diagnostic> {
    // Cycle check over all stages: 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; stages.len()];
    for start in 0..stages.len() {
        check_cycles(stages, start, &mut state)?;
    }
    let mut order = Vec::new();
    let mut seen = vec![false; stages.len()];
    visit(stages, target, &mut seen, &mut order);
    for &i in &order {
        stages[i].needed = true;
    }
    Ok(order)
}

fn check_cycles(stages: &[StagePlan], start: usize, state: &mut [u8]) -> Result<(), Diagnostic> {
    // Iterative DFS so a hostile file with thousands of chained stages cannot overflow the stack.
    let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
    if state[start] == 2 {
        return Ok(());
    }
    state[start] = 1;
    while let Some(&mut (node, ref mut next)) = stack.last_mut() {
        if let Some(&dep) = stages[node].deps.get(*next) {
            *next += 1;
            match state.get(dep).copied() {
                Some(1) => {
                    let s = &stages[dep];
                    return Err(Diagnostic::new(
                        format!("circular dependency detected on stage: {}", s.label()),
                        Pos::new(s.loc.start_line, s.loc.col),
                    )
                    .with_hint("a stage cannot copy from or build on a stage that (indirectly) uses it"));
                }
                Some(0) => {
                    state[dep] = 1;
                    stack.push((dep, 0));
                }
                _ => {}
            }
        } else {
            state[node] = 2;
            stack.pop();
        }
    }
    Ok(())
}

fn visit(stages: &[StagePlan], node: usize, seen: &mut [bool], order: &mut Vec<usize>) {
    let mut stack: Vec<(usize, usize)> = vec![(node, 0)];
    seen[node] = true;
    while let Some(&mut (n, ref mut next)) = stack.last_mut() {
        if let Some(&dep) = stages[n].deps.get(*next) {
            *next += 1;
            if !seen[dep] {
                seen[dep] = true;
                stack.push((dep, 0));
            }
        } else {
            order.push(n);
            stack.pop();
        }
    }
}
