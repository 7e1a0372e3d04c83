//! A step under `--isolation=ptrace` (see [`crate::sandbox::ptrace`]): the copy snapshotter's
//! tree, what mounts would provide put into it (as chroot isolation does), the step run under
//! the tracer, and the layer written from the owners the step was made to see.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicI32, Ordering};

use super::step::{forward, make_cwd};
use super::*;
use crate::layer::index::{FsIndex, Meta};
use crate::layer::walkdiff::{Owner, record_as};
use crate::sandbox::chroot::Injections;
use crate::sandbox::ptrace::fake::Owners;

impl Ctx {
    pub(super) fn run_traced(
        &mut self,
        req: &RunRequest,
        dir: &Path,
        out: &mut impl Write,
    ) -> Result<RunResult, Fail> {
        self.refuse_without_namespaces(req)?;
        let rootfs = dir.join("rootfs");
        let (root, known) = self.traced_tree(&req.layers, &rootfs)?;
        let real = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        let mut owners = Owners::new(real, (req.process.uid, req.process.gid));
        let before = record_as(&root, &mut |rel, abs, md| {
            let (o, cap) = match known.get(rel) {
                Some(meta) => (believed(Some(&meta.owner()), md), meta.capability.clone()),
                None => (believed(None, md), None),
            };
            let inode = (md.dev(), md.ino());
            owners.set(inode, o);
            let cap = cap.filter(|_| md.is_file());
            if cap.is_some() {
                owners.set_capability(inode, cap.clone());
            }
            usable(abs, md);
            (o, cap)
        })
        .map_err(|e| e.to_string())?;
        // The root directory itself, which the record leaves out, is root's as well (else it would
        // show as the step's user, who the caller is on disk).
        if let Ok(md) = std::fs::metadata(&root) {
            owners.set((md.dev(), md.ino()), believed(None, &md));
        }
        // What the runtime would create (the working directory) is root's.
        make_cwd(&root, &req.process.cwd)?;
        claim_new(&root, &req.process.cwd, &mut owners, 0, 0);

        let mut inj = Injections::new(&root, &dir.join("aside"));
        inj.chown = false;
        let mut held = Held::default();
        let exe = match self.inject_mounts(req, dir, &root, &mut inj, &mut held, out) {
            Ok((exe, owned)) => {
                for (target, uid, gid) in owned {
                    claim(&root, &target, &mut owners, uid, gid);
                }
                self.claim_stage_binds(&root, req, &mut owners);
                exe
            }
            Err(e) => {
                let _ = inj.undo();
                return Err(e);
            }
        };

        let started = Instant::now();
        let ran = self.execute_traced(&root, req, &exe, owners, out);
        let run_ms = started.elapsed().as_secs_f64() * 1000.0;
        let undone = inj.undo();
        drop(held);
        let (exit, owners) = ran?;
        undone?;
        let after = record_as(&root, &mut |_, _, md| {
            let inode = (md.dev(), md.ino());
            let cap = owners.capability(inode).filter(|_| md.is_file()).map(Box::from);
            (owners.view(inode, Owner::of(md)), cap)
        })
        .map_err(|e| e.to_string())?;
        self.finish(
            req,
            exit,
            run_ms,
            &rootfs,
            Changes::Copy { root: &root, before: &before, after: Some(after) },
        )
    }

    /// The tree of `layers` for a traced step and what its entries' owners, modes, devices and
    /// capabilities are: the kept tree of the longest prefix of `layers` with its index, or an
    /// empty one, with the layers above it applied to both (the disk cannot hold the layers'
    /// owners, devices and capabilities: their headers say them).
    fn traced_tree(
        &mut self,
        layers: &[LayerRef],
        rootfs: &Path,
    ) -> Result<(PathBuf, BTreeMap<String, Meta>), Fail> {
        fs_err::create_dir_all(rootfs).map_err(|e| e.to_string())?;
        let root = rootfs.join("copy");
        let kept = self.take_tree(layers, &root, |id| {
            let bytes = std::fs::read(self.owners_file(id)).ok()?;
            serde_json::from_slice::<FsIndex>(&bytes).ok()
        });
        let (start, mut index) = match kept {
            Some(kept) => kept,
            None => {
                fs_err::create_dir_all(&root).map_err(|e| e.to_string())?;
                (0, FsIndex::new())
            }
        };
        let above = &layers[start..];
        self.apply_layers(above, &root)?;
        self.index_layers(&mut index, above)?;
        let known =
            index.walk("").filter(|(p, _)| !p.is_empty()).map(|(p, m)| (p.to_string(), m.clone())).collect();
        Ok((root, known))
    }

    /// Applies the headers of `layers` to `index`: what their tree's entries' owners, modes,
    /// devices and capabilities are.
    fn index_layers(&self, index: &mut FsIndex, layers: &[LayerRef]) -> Result<(), String> {
        for layer in layers {
            index.apply_tar(self.open(layer)?).map_err(|e| format!("reading layer {}: {e}", layer.digest))?;
        }
        Ok(())
    }

    /// Records the owners of what bind mounts from a stage put into the root (a copy, which the
    /// disk holds as the caller's), from the stage's layers' headers, as a real bind mount shows
    /// them (`cp -a` out of it keeps them). Where they cannot be read, the copy stays root's.
    fn claim_stage_binds(&self, root: &Path, req: &RunRequest, owners: &mut Owners) {
        for m in &req.mounts {
            let MountRequest::Bind { from: BindFrom::Layers(layers), source, target, .. } = m else {
                continue;
            };
            let mut index = FsIndex::new();
            let read = self.index_layers(&mut index, layers);
            let (Ok(()), Some(src), Ok(dst)) = (
                read,
                index.resolve(source.trim_start_matches('/')),
                crate::layer::rootpath::resolve_in_root(root, target.trim_start_matches('/')),
            ) else {
                continue;
            };
            let key = |rel: &str| match (src.as_str(), rel) {
                (s, "") => s.to_string(),
                ("", r) => r.to_string(),
                (s, r) => format!("{s}/{r}"),
            };
            let mut claim = |rel: &str, md: &std::fs::Metadata| {
                let o = believed(index.get(&key(rel)).map(Meta::owner).as_ref(), md);
                owners.set((md.dev(), md.ino()), o);
                o
            };
            if let Ok(md) = std::fs::symlink_metadata(&dst) {
                claim("", &md);
            }
            let _ = record_as(&dst, &mut |rel, _, md| (claim(rel, md), None));
        }
    }

    /// Runs the step under the tracer, forwarding its output; returns its exit and the owners
    /// as it left them.
    fn execute_traced(
        &self,
        root: &Path,
        req: &RunRequest,
        exe: &str,
        owners: Owners,
        out: &mut impl Write,
    ) -> Result<(Exit, Owners), Fail> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let process = super::home::with_home(root, &req.process);
        let group = AtomicI32::new(0);
        // The tracer must be the thread that forks (ptrace attaches to a thread), and output
        // must flow while it serves stops: it gets a thread, the output this one.
        let (traced, output) = std::thread::scope(|s| {
            let tracer = s.spawn(|| {
                crate::sandbox::ptrace::run(root, exe, &process, &read_only_targets(req), w, owners, |pid| {
                    group.store(pid.as_raw(), Ordering::SeqCst);
                })
            });
            let output = forward(r.as_fd(), out, &mut || {
                let pid = group.load(Ordering::SeqCst);
                if pid > 0 {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            });
            (tracer.join(), output)
        });
        let traced =
            traced.map_err(|_| Fail::Env("the tracer thread panicked".into()))?.map_err(Fail::Env)?;
        output.map_err(|e| Fail::Env(format!("forwarding the step's output: {e}")))?;
        Ok(traced)
    }
}

/// The step's paths that read-only mounts would hold, as BuildKit mounts them: a bind mount
/// without `rw`, a secret.
fn read_only_targets(req: &RunRequest) -> Vec<String> {
    req.mounts
        .iter()
        .filter_map(|m| match m {
            MountRequest::Bind { target, rw: false, .. } | MountRequest::Secret { target, .. } => {
                Some(target.clone())
            }
            _ => None,
        })
        .collect()
}

/// What an entry is believed to be: its record (the type from the disk, unless the record says
/// it is a device, which the disk holds as an empty file), else root's with the disk's mode.
fn believed(known: Option<&Owner>, md: &std::fs::Metadata) -> Owner {
    use nix::libc::{S_IFBLK, S_IFCHR, S_IFMT};
    match known {
        Some(o) if matches!(o.mode & S_IFMT, S_IFCHR | S_IFBLK) => *o,
        Some(o) => Owner { mode: (md.mode() & S_IFMT) | (o.mode & 0o7777), rdev: 0, ..*o },
        None => Owner { uid: 0, gid: 0, mode: md.mode(), rdev: 0 },
    }
}

/// Gives the caller read and write (and search, for directories) on an entry, as root has on
/// everything; the record keeps the real mode.
fn usable(path: &Path, md: &std::fs::Metadata) {
    let need = if md.is_dir() {
        0o700
    } else if md.is_file() {
        0o600
    } else {
        return;
    };
    if md.mode() & need != need {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode((md.mode() | need) & 0o7777));
    }
}

/// Records `uid`:`gid` for what is at `target` in the root now.
fn claim(root: &Path, target: &str, owners: &mut Owners, uid: u32, gid: u32) {
    if let Ok(p) = crate::layer::rootpath::resolve_in_root(root, target.trim_start_matches('/'))
        && let Ok(md) = std::fs::symlink_metadata(&p)
    {
        owners.set((md.dev(), md.ino()), Owner { uid, gid, mode: md.mode(), rdev: 0 });
    }
}

/// Records `uid`:`gid` for the directories on the way to `dir` the table does not know yet
/// (just made).
fn claim_new(root: &Path, dir: &str, owners: &mut Owners, uid: u32, gid: u32) {
    let mut at = String::new();
    for c in dir.split('/').filter(|c| !c.is_empty()) {
        at.push('/');
        at.push_str(c);
        if let Ok(p) = crate::layer::rootpath::resolve_in_root(root, at.trim_start_matches('/'))
            && let Ok(md) = std::fs::symlink_metadata(&p)
            && owners.get((md.dev(), md.ino())).is_none()
        {
            owners.set((md.dev(), md.ino()), Owner { uid, gid, mode: md.mode(), rdev: 0 });
        }
    }
}
