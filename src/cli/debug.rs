//! `hako debug …`: developer views of the frontend (the BuildKit-compatible parse dump).

use super::{DebugCommand, Failure, print_stdout};
use crate::dockerfile::{dump::dump, parse_bytes};

/// Runs a `hako debug` subcommand.
pub fn run(cmd: DebugCommand) -> Result<(), Failure> {
    match cmd {
        DebugCommand::Dump { file } => {
            let (name, bytes) = super::build::read_dockerfile_arg(&file)?;
            let ast = parse_bytes(&bytes).map_err(|d| {
                Failure::user(format!("error: {}", d.render(&name, &String::from_utf8_lossy(&bytes))))
            })?;
            print_stdout(&dump(&ast))
        }
        DebugCommand::SandboxBench { layout, runs, root, isolation } => {
            sandbox_bench(&layout, runs, root, isolation)
        }
    }
}

fn sandbox_bench(
    layout: &std::path::Path,
    runs: usize,
    root: Option<std::path::PathBuf>,
    isolation: super::args::IsolationMode,
) -> Result<(), Failure> {
    use crate::sandbox::protocol::{LayerRef, Network, Process, RunRequest};
    let fail = |e: &dyn std::fmt::Display| Failure::usage(format!("error: {e}"));
    let tmp = match &root {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("hako-bench-").tempdir().map_err(|e| fail(&e))?),
    };
    let store_dir = root.unwrap_or_else(|| tmp.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_default());
    let store = crate::store::Store::open(&store_dir).map_err(|e| fail(&e))?;
    let (image, _) =
        crate::image::manifest::import_layout(&store, layout, None, &crate::plan::Platform::host())
            .map_err(|e| fail(&e))?;
    let mut sandbox = crate::sandbox::Sandbox::start(&store_dir, super::build::isolation(isolation))
        .map_err(|e| fail(&e))?;
    let req = RunRequest {
        layers: image.layers.iter().map(LayerRef::from_layer).collect(),
        process: Process {
            args: vec!["/bin/true".into()],
            env: vec![format!("PATH={}", crate::build::DEFAULT_PATH)],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        },
        network: Network::Host,
        mounts: Vec::new(),
        commit: false,
        clamp: None,
        compression: "none".into(),
        level: 0,
        successors: Vec::new(),
        options: Default::default(),
        insecure: false,
        tee: None,
    };
    let mut runtime = Vec::new();
    let mut whole = Vec::new();
    for i in 0..=runs {
        let started = std::time::Instant::now();
        let r = sandbox.run(&req, &mut |_| {}, &mut |_| {}).map_err(|e| fail(&e))?;
        if i > 0 {
            whole.push(started.elapsed().as_secs_f64() * 1000.0);
            runtime.push(r.run_ms);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let mut mode = match sandbox.isolation {
        crate::sandbox::Isolation::Chroot => "chroot",
        crate::sandbox::Isolation::Ptrace => "ptrace",
        crate::sandbox::Isolation::Rootless => "rootless",
        _ => "root",
    }
    .to_string();
    if std::env::var("HAKO_SNAPSHOTTER").as_deref() == Ok("copy") {
        mode.push_str(" (copy snapshotter)");
    }
    print_stdout(&format!(
        "{mode}: median of {runs}: create+start+wait+delete {:.1} ms, whole step (overlay, mounts, cleanup) {:.1} ms\n",
        median(&mut runtime),
        median(&mut whole)
    ))
}
