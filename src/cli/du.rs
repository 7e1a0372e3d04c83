//! `hako du`: what the store holds for the build cache, and `--verify`.

use super::{DuArgs, Failure, print_stdout, progress::human};
use crate::cache::du;
use crate::store::Store;

/// Runs `hako du`.
pub fn run(args: DuArgs) -> Result<(), Failure> {
    let root = super::build::store_root(args.root.as_deref())?;
    if !root.join("oci-layout").is_file() {
        return Err(Failure::usage(format!("error: {} is not a hako store", root.display())));
    }
    let store = Store::open_readonly(&root);
    let failed = |e: crate::store::StoreError| Failure::usage(format!("error: {}: {e}", root.display()));
    let u = du::usage(&store).map_err(failed)?;
    let text = format!(
        "step records      {:>8}  naming {} layers, {}\n\
         blobs             {:>8}  {}\n\
         filesystem index  {:>8}  {}\n\
         sandbox                   {}  (snapshots and cache mounts; `hako prune` frees them)\n",
        u.records,
        u.record_layers,
        human(u.record_bytes),
        u.blobs,
        human(u.blob_bytes),
        u.indexes,
        human(u.index_bytes),
        human(u.sandbox_bytes),
    );
    print_stdout(&text)?;
    if !args.verify {
        return Ok(());
    }
    let problems = du::verify(&store).map_err(failed)?;
    if problems.is_empty() {
        return print_stdout("verified: every blob matches its digest and every record its blob\n");
    }
    let mut text = format!("error: {} problem(s) in {}:\n", problems.len(), root.display());
    for p in &problems {
        text.push_str(&format!("  {p}\n"));
    }
    text.push_str(
        "hint: a build that reads a bad record runs its step again; `hako prune` removes the sandbox's files",
    );
    Err(Failure::user(text))
}
