//! `hako prune`: removes build cache — step records and the blobs only they kept
//! ([`crate::cache::prune`]), and what the sandbox keeps under `<store>/sandbox` (layer snapshots,
//! cache mounts, leftovers of killed builds). Images kept in the store stay. Rootless snapshots
//! and caches belong to the user's sub-ids, which only a helper inside the user namespace can
//! remove; root removes everything directly.

use std::io::{BufRead, IsTerminal, Write};

use super::{Failure, PruneArgs, progress::human};
use crate::cache::prune::{self, Policy};
use crate::dockerfile::instructions::parse_go_duration;
use crate::sandbox::{Isolation, Sandbox, helper::wipe};
use crate::store::{Lock, Store};

/// Runs `hako prune`.
pub fn run(args: PruneArgs) -> Result<(), Failure> {
    let root = super::build::store_root(args.root.as_deref())?;
    if !root.join("oci-layout").is_file() && !root.join("sandbox").is_dir() {
        eprintln!("nothing to prune in {}", root.display());
        return Ok(());
    }
    let policy = policy(&args)?;
    let filtered = policy != Policy::default();
    if !args.force && !confirmed(&root)? {
        return Err(Failure::user("prune cancelled"));
    }
    let store = Store::open(&root)
        .map_err(|e| Failure::usage(format!("error: opening the store {}: {e}", root.display())))?;
    let busy =
        || Failure::usage(format!("error: a build is using {}; prune when it has finished", root.display()));
    // Builds hold both locks shared while they run (the sandbox lock only once a step runs).
    let _build = Lock::try_exclusive(&root.join("locks/build"))
        .map_err(|e| Failure::usage(format!("error: {e}")))?
        .ok_or_else(busy)?;
    let _sandbox = Lock::try_exclusive(&root.join("locks/sandbox"))
        .map_err(|e| Failure::usage(format!("error: {e}")))?
        .ok_or_else(busy)?;
    let pruned = prune::prune(&store, &policy).map_err(|e| Failure::usage(format!("error: {e}")))?;
    eprintln!(
        "removed {} step records, {} indexes and {} blobs ({})",
        pruned.records,
        pruned.indexes,
        pruned.blobs,
        human(pruned.bytes)
    );
    let sandbox = root.join("sandbox");
    if (filtered && !args.all) || !sandbox.is_dir() {
        return Ok(());
    }
    let (entries, bytes, left) = if nix::unistd::geteuid().is_root() {
        wipe(&sandbox)
    } else {
        let mut sb = Sandbox::start_unlocked(&root, Isolation::Rootless).map_err(|e| {
            Failure::usage(format!("error: starting the sandbox helper to remove its files: {e}"))
        })?;
        sb.wipe().map_err(|e| Failure::usage(format!("error: {e}")))?
    };
    eprintln!("removed {entries} entries ({}) from {}", human(bytes), sandbox.display());
    if left.is_empty() {
        return Ok(());
    }
    let mut text = format!(
        "error: {} could not be removed:\n",
        if left.len() == 1 { "one entry" } else { "some entries" }
    );
    for l in &left {
        text.push_str(&format!("  {l}\n"));
    }
    text.push_str("hint: files a root build made need root to remove: run hako prune as root");
    Err(Failure::usage(text))
}

/// `--filter until=…` and `--keep-storage`.
fn policy(args: &PruneArgs) -> Result<Policy, Failure> {
    let mut policy = Policy::default();
    for f in &args.filter {
        let Some(d) = f.strip_prefix("until=").or_else(|| f.strip_prefix("until ")) else {
            return Err(Failure::usage(format!("error: --filter {f}: only until=DURATION is supported")));
        };
        let ns = parse_go_duration(d).map_err(|e| Failure::usage(format!("error: --filter {f}: {e}")))?;
        policy.until = Some(std::time::Duration::from_nanos(ns.max(0) as u64));
    }
    if let Some(k) = &args.keep_storage {
        policy.keep_storage =
            Some(prune::parse_size(k).map_err(|e| Failure::usage(format!("error: --keep-storage: {e}")))?);
    }
    Ok(policy)
}

/// Asks on the terminal, as `docker buildx prune` does; without one, -f is required.
fn confirmed(root: &std::path::Path) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "error: hako prune removes build cache (step records, snapshots, cache mounts) in {}; add -f to go ahead without a terminal to confirm on",
            root.display()
        )));
    }
    eprint!("WARNING! This will remove all dangling build cache. Are you sure you want to continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::usage(format!("error: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
