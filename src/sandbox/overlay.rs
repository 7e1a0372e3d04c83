//! Snapshots and overlay mounts, on the helper's side.
//!
//! Each layer of a parent filesystem is extracted once into a *snapshot*: the upper directory of
//! an overlay whose lower directories are the snapshots beneath it. Applying the layer through the
//! overlay lets the kernel turn the layer's whiteouts into its own (char 0/0 devices, opaque
//! xattrs), and files land with their real owners because the helper is root in its namespace.
//! Snapshots are keyed by the layer's *chain id* (OCI image-spec: the digest of the layer and
//! everything below it), since the same layer over a different parent leaves a different upper.
//! A RUN step's upper directory becomes the snapshot of the layer made from it, so layers built
//! here are never extracted again.
//!
//! Snapshots live in `<store>/sandbox/<mode>/snapshots/<chain-id hex>`; each is written under a
//! temporary name and renamed into place, so a killed build never leaves a half snapshot under a
//! real name and two builds racing for the same one both succeed.

use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::protocol::LayerRef;

/// The kernel's limit on overlay lower directories.
pub const MAX_LOWER: usize = 500;

/// Chain ids of `layers` (bottom first), as hex.
pub fn chain_ids(layers: &[LayerRef]) -> Vec<String> {
    crate::digest::chain_ids(layers.iter().map(|l| l.diff_id.as_str()))
}

/// Which overlay features the mount uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Real root: `trusted.overlay.*` xattrs; redirect_dir, metacopy and index off so the upper
    /// directory holds only plain files, whiteouts and opaque markers.
    Root,
    /// Inside a user namespace: `userxattr` (`user.overlay.*`), which also turns redirects off.
    UserNs,
}

/// The mount data for an overlay. Lower directories are given relative to the current directory
/// (the caller `chdir`s into a directory of short symlinks) so hundreds of layers fit the one-page
/// limit of mount options.
pub fn options(lowers: &[String], upper: Option<&str>, work: Option<&str>, flavor: Flavor) -> String {
    let mut o = format!("lowerdir={}", lowers.join(":"));
    if let (Some(u), Some(w)) = (upper, work) {
        o.push_str(&format!(",upperdir={u},workdir={w}"));
    }
    match flavor {
        Flavor::Root => o.push_str(",redirect_dir=off,metacopy=off,index=off"),
        Flavor::UserNs => o.push_str(",userxattr"),
    }
    o
}

/// Whether an overlay has an upper directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper {
    /// Read-only: no upper directory.
    None,
    /// Mounted `volatile` where the kernel has it (5.10 and later): neither unmounting nor an
    /// fsync inside waits for the upper directory to reach the disk. Nothing syncs it later
    /// either: snapshots are trusted only in the boot that made them (see the helper's
    /// `forget_earlier_boots`).
    Volatile,
}

/// Whether the kernel refused `volatile` once: later mounts do without.
static NO_VOLATILE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A mounted overlay; unmounted on drop.
pub struct Mounted {
    target: PathBuf,
}

impl Mounted {
    /// The merged view.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting failure.
    pub fn unmount(mut self) -> io::Result<()> {
        let t = std::mem::take(&mut self.target);
        umount2(&t, MntFlags::empty()).map_err(io::Error::from)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.target.as_os_str().is_empty() {
            let _ = umount2(&self.target, MntFlags::MNT_DETACH);
        }
    }
}

/// Mounts an overlay at `dir/merged` over `lowers` (top first), with `dir/upper` and `dir/work`
/// unless `upper` is [`Upper::None`]. `dir` must be empty apart from what this creates. With one
/// lower directory and no upper, overlayfs refuses; the lower is bind-mounted read-only instead.
pub fn mount_overlay(dir: &Path, lowers: &[PathBuf], upper: Upper, flavor: Flavor) -> io::Result<Mounted> {
    let writable = upper != Upper::None;
    if lowers.len() > MAX_LOWER {
        return Err(io::Error::other(format!(
            "{} layers: overlayfs stacks at most {MAX_LOWER}; squash some layers of the base image",
            lowers.len()
        )));
    }
    let merged = dir.join("merged");
    fs_err::create_dir_all(&merged)?;
    let links = dir.join("l");
    fs_err::create_dir_all(&links)?;
    let mut names = Vec::new();
    for (i, l) in lowers.iter().enumerate() {
        let name = format!("l/{i}");
        symlink(l, dir.join(&name))?;
        names.push(name);
    }
    if names.is_empty() {
        fs_err::create_dir_all(dir.join("empty"))?;
        names.push("empty".into());
    }
    if !writable && names.len() == 1 {
        let src = if lowers.is_empty() { dir.join("empty") } else { lowers[0].clone() };
        mount(Some(&src), &merged, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(io::Error::from)?;
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, &merged, None::<&str>, ro, None::<&str>).map_err(io::Error::from)?;
        return Ok(Mounted { target: merged });
    }
    let data = if writable {
        fs_err::create_dir_all(dir.join("upper"))?;
        fs_err::create_dir_all(dir.join("work"))?;
        options(&names, Some("upper"), Some("work"), flavor)
    } else {
        options(&names, None, None, flavor)
    };
    // Every upper is volatile (see `Upper::Volatile`).
    let volatile = writable && !NO_VOLATILE.load(std::sync::atomic::Ordering::Relaxed);
    let cwd = std::env::current_dir()?;
    std::env::set_current_dir(dir)?;
    let with = |data: &str| mount(Some("overlay"), "merged", Some("overlay"), MsFlags::empty(), Some(data));
    let mut r = if volatile { with(&format!("{data},volatile")) } else { with(&data) };
    if volatile && r == Err(nix::errno::Errno::EINVAL) {
        // A kernel before 5.10: unmounting syncs, as it always did.
        r = with(&data);
        if r.is_ok() {
            NO_VOLATILE.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::env::set_current_dir(cwd)?;
    r.map_err(|e| io::Error::other(format!("mounting overlayfs ({data}): {e}")))?;
    Ok(Mounted { target: merged })
}

/// Paths a mount target will create in the root (`/a/b` where only `/a` exists: `a/b`), so they
/// can be removed after the step and stay out of its layer. Only the first missing component
/// matters: everything under it is new too.
pub fn missing_stub(root: &Path, target: &str) -> Option<String> {
    let mut rel = PathBuf::new();
    for c in Path::new(target).components() {
        if let std::path::Component::Normal(n) = c {
            rel.push(n);
            if std::fs::symlink_metadata(root.join(&rel)).is_err() {
                return Some(rel.to_string_lossy().into_owned());
            }
        }
    }
    None
}

/// The directories above a stub, with their metadata before the step: creating the stub copies
/// them up into the upper directory, and [`prune_copied_up`] takes them out again.
pub fn ancestors(root: &Path, stub: &str) -> Vec<(String, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut p = Path::new(stub).parent();
    while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(m) = std::fs::symlink_metadata(root.join(dir)) {
            out.push((dir.to_string_lossy().into_owned(), m));
        }
        p = dir.parent();
    }
    out
}

/// Removes from `upper` the directories listed (deepest first) that the step only copied up: still
/// empty there, not opaque, and with the mode, owner and mtime they had before.
pub fn prune_copied_up(upper: &Path, dirs: &[(String, std::fs::Metadata)]) {
    use std::os::unix::fs::MetadataExt;
    let mut order: Vec<&(String, std::fs::Metadata)> = dirs.iter().collect();
    order.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.matches('/').count()));
    for (rel, before) in order {
        let p = upper.join(rel);
        let Ok(now) = std::fs::symlink_metadata(&p) else { continue };
        let same = now.is_dir()
            && now.mode() == before.mode()
            && now.uid() == before.uid()
            && now.gid() == before.gid()
            && now.mtime() == before.mtime()
            && now.mtime_nsec() == before.mtime_nsec();
        let opaque = xattr::list(&p)
            .map(|mut l| l.any(|n| n.to_string_lossy().ends_with("overlay.opaque")))
            .unwrap_or(true);
        // rmdir fails on a non-empty directory, which is what must stay. Removing an entry
        // touches the parent, which gets its old times back so it can go too.
        if same && !opaque && std::fs::remove_dir(&p).is_ok() {
            let parent = Path::new(rel).parent().map(|p| p.to_string_lossy().into_owned());
            if let Some((prel, pm)) = parent.and_then(|pr| dirs.iter().find(|(r, _)| *r == pr)) {
                let _ = restore_times(&upper.join(prel), pm);
            }
        }
    }
}

/// Removes the mount-target stubs `stubs` (relative to `root`) if they are still only empty
/// directories and empty files, restoring the parent directory's times so the step leaves no trace.
pub fn remove_stubs(root: &Path, stubs: &[(String, Option<std::fs::Metadata>)]) {
    for (rel, parent_meta) in stubs {
        let p = root.join(rel);
        if only_empty(&p) {
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
            if let (Some(parent), Some(m)) = (p.parent(), parent_meta) {
                let _ = restore_times(parent, m);
            }
        }
    }
}

fn only_empty(p: &Path) -> bool {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            std::fs::read_dir(p).map(|rd| rd.flatten().all(|e| only_empty(&e.path()))).unwrap_or(false)
        }
        Ok(m) if m.is_file() => m.len() == 0,
        _ => false,
    }
}

/// Copies the file or directory tree `src` to `dst` (which must not exist) with owners, modes,
/// times and links, as `cp -a` does.
pub(super) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let st = std::process::Command::new("cp").arg("-a").arg(src).arg(dst).status()?;
    if st.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("cp -a {} {} failed ({st})", src.display(), dst.display())))
    }
}

/// Sets `dir`'s access and modification times back to those in `m` (taken before a change).
pub(super) fn restore_times(dir: &Path, m: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let at = nix::sys::time::TimeSpec::new(m.atime(), m.atime_nsec());
    let mt = nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dir,
        &at,
        &mt,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(diff_id: &str) -> LayerRef {
        LayerRef { digest: String::new(), diff_id: diff_id.into(), size: 0, media_type: String::new() }
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        // image-spec config.md: ChainID(L0|L1) = Digest(ChainID(L0) + " " + DiffID(L1)).
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[layer(&a), layer(&b)]);
        assert_eq!(ids[0], "a".repeat(64));
        // Computed independently of the code under test.
        use sha2::Digest as _;
        let want: String =
            sha2::Sha256::digest(format!("{a} {b}").as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(ids[1], want);
        // The same layer over another parent is another snapshot.
        assert_ne!(chain_ids(&[layer(&b), layer(&b)])[1], ids[1]);
    }

    #[test]
    fn mount_options_per_flavor() {
        let l = vec!["l/1".to_string(), "l/0".to_string()];
        assert_eq!(
            options(&l, Some("upper"), Some("work"), Flavor::UserNs),
            "lowerdir=l/1:l/0,upperdir=upper,workdir=work,userxattr"
        );
        assert_eq!(
            options(&l, None, None, Flavor::Root),
            "lowerdir=l/1:l/0,redirect_dir=off,metacopy=off,index=off"
        );
    }

    #[test]
    fn stubs_are_the_first_missing_component_and_go_only_when_empty() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        assert_eq!(missing_stub(t.path(), "/etc/hosts").as_deref(), Some("etc/hosts"));
        assert_eq!(missing_stub(t.path(), "/run/secrets/x").as_deref(), Some("run"));
        assert_eq!(missing_stub(t.path(), "/etc"), None);
        std::fs::create_dir_all(t.path().join("run/secrets")).unwrap();
        std::fs::write(t.path().join("run/secrets/x"), "").unwrap();
        std::fs::write(t.path().join("etc/hosts"), "kept").unwrap();
        remove_stubs(t.path(), &[("run".into(), None), ("etc/hosts".into(), None)]);
        assert!(!t.path().join("run").exists());
        assert!(t.path().join("etc/hosts").exists(), "a stub the step filled stays");
    }

    #[test]
    fn copied_up_directories_go_only_when_unchanged_and_empty() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        for d in ["a/b", "c"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
            std::fs::create_dir_all(upper.join(d)).unwrap();
        }
        std::fs::write(upper.join("c/new"), "x").unwrap();
        let copy_times = |rel: &str| {
            let m = std::fs::metadata(lower.join(rel)).unwrap();
            restore_times(&upper.join(rel), &m).unwrap();
        };
        copy_times("a/b");
        copy_times("a");
        let mut before = ancestors(&lower, "a/b/stub");
        before.extend(ancestors(&lower, "c/stub"));
        prune_copied_up(&upper, &before);
        assert!(!upper.join("a").exists(), "a and a/b were only copied up");
        assert!(upper.join("c/new").exists(), "c holds a change");
    }
}
