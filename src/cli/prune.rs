//! `hako prune`: removes what the sandbox keeps under `<store>/sandbox` (layer snapshots, cache
//! mounts, leftovers of killed builds). Everything there can be made again from the store's blobs.
//! Rootless snapshots and caches belong to the user's sub-ids, which only a helper inside the user
//! namespace can remove; root removes everything directly.

use std::io::{BufRead, IsTerminal, Write};

use super::{Failure, PruneArgs, progress::human};
use crate::sandbox::{Isolation, Sandbox, helper::wipe};
use crate::store::{Lock, Store};

/// Runs `hako prune`.
pub fn run(args: PruneArgs) -> Result<(), Failure> {
    let root = super::build::store_root(args.root.as_deref())?;
    let sandbox = root.join("sandbox");
    if !sandbox.is_dir() {
        eprintln!("nothing to prune in {}", root.display());
        return Ok(());
    }
    if !args.force && !confirmed(&sandbox)? {
        return Err(Failure::user("prune cancelled"));
    }
    Store::open(&root)
        .map_err(|e| Failure::usage(format!("error: opening the store {}: {e}", root.display())))?;
    let lock_path = root.join("locks/sandbox");
    let _lock = Lock::try_exclusive(&lock_path)
        .map_err(|e| Failure::usage(format!("error: {e}")))?
        .ok_or_else(|| {
            Failure::usage(format!("error: a build is using {}; prune when it has finished", root.display()))
        })?;
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

/// Asks on the terminal, as `docker buildx prune` does; without one, -f is required.
fn confirmed(sandbox: &std::path::Path) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "error: hako prune removes every snapshot and cache mount in {}; add -f to go ahead without a terminal to confirm on",
            sandbox.display()
        )));
    }
    eprint!(
        "WARNING! This will remove all build snapshots and cache mounts. Are you sure you want to continue? [y/N] "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| Failure::usage(format!("error: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
