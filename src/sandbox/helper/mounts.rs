//! What a step mounts: `/etc/hosts` and `resolv.conf`, its `--mount`s (bind, cache, tmpfs, secret,
//! ssh), and the private network namespace of `--network=none`.

use super::*;

impl Ctx {
    /// `/etc/resolv.conf` (the host's) and `/etc/hosts` for the step: bind-mounted read-only, as
    /// BuildKit mounts them (a step that writes to them fails as in docker build), so they never
    /// reach the layer.
    pub(super) fn etc_files(
        &self,
        dir: &Path,
        extra_hosts: &[(String, String)],
    ) -> Result<Vec<StepMount>, String> {
        let mut mounts = Vec::new();
        for (target, data) in etc_contents(extra_hosts, None) {
            let source = dir.join(target.rsplit('/').next().unwrap_or(target));
            fs_err::write(&source, data).map_err(|e| e.to_string())?;
            let _ = std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o644));
            mounts.push(StepMount::Bind { source, target: target.into(), readonly: true });
        }
        Ok(mounts)
    }

    pub(super) fn prepare_mount(
        &mut self,
        m: &MountRequest,
        dir: &Path,
        held: &mut Held,
        out: &mut impl Write,
    ) -> Result<StepMount, Fail> {
        fs_err::create_dir_all(dir).map_err(|e| e.to_string())?;
        Ok(match m {
            MountRequest::Bind { from, source, target, rw } => {
                let merged = match from {
                    // A read-only host directory is bound as it is.
                    BindFrom::Host(p) if !*rw => Tree::Plain(PathBuf::from(p)),
                    BindFrom::Host(p) if self.copy => {
                        // Writes must not reach the context: they go to a throwaway copy.
                        let copy = dir.join("copy");
                        overlay::copy_tree(Path::new(p), &copy)
                            .map_err(|e| format!("copying {p} for an rw bind mount: {e}"))?;
                        Tree::Plain(copy)
                    }
                    BindFrom::Host(p) => {
                        let lowers = vec![PathBuf::from(p)];
                        let mount = overlay::mount_overlay(dir, &lowers, Upper::Volatile, self.flavor)
                            .map_err(|e| e.to_string())?;
                        Tree::Overlay { mount, lowers }
                    }
                    BindFrom::Layers(layers) => self.tree(layers, dir, *rw, out)?,
                };
                let src = source_in(merged.path(), source, "--mount source")?;
                held.trees.push(merged);
                StepMount::Bind { source: src, target: target.clone(), readonly: !*rw }
            }
            MountRequest::Cache { key, target, sharing, mode, uid, gid, readonly, seed } => {
                let new = NewCache { mode: *mode, uid: *uid, gid: *gid, seed: seed.as_ref() };
                let path = self.cache_dir(key, sharing, new, dir, held, out)?;
                StepMount::Bind { source: path, target: target.clone(), readonly: *readonly }
            }
            MountRequest::Tmpfs { target, size } => StepMount::Tmpfs { target: target.clone(), size: *size },
            MountRequest::Secret { data, target, mode, uid, gid } => {
                // The secret lives only in a tmpfs of this helper's private mount namespace. A
                // bind mount keeps its source's noexec, so an executable file (a RUN heredoc with
                // a #! line) needs an exec tmpfs.
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
                if mode & 0o111 == 0 {
                    flags |= MsFlags::MS_NOEXEC;
                }
                mount(Some("tmpfs"), dir, Some("tmpfs"), flags, Some("mode=0700,size=1m"))
                    .map_err(|e| format!("mounting a tmpfs for a secret: {e}"))?;
                held.tmpfs.push(dir.to_path_buf());
                let file = dir.join("secret");
                let mut f = std::fs::OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .mode(0o600)
                    .open(&file)
                    .map_err(|e| e.to_string())?;
                f.write_all(data).map_err(|e| e.to_string())?;
                drop(f);
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| e.to_string())?;
                if !self.squash {
                    std::os::unix::fs::chown(&file, Some(*uid), Some(*gid)).map_err(|e| e.to_string())?;
                }
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())?;
                StepMount::Bind { source: file, target: target.clone(), readonly: true }
            }
            MountRequest::Ssh { socket, target, .. } => {
                // The user's own agent socket is bound in, so the step sees its owner and mode
                // (the caller, 0600 as ssh-agent makes it: BuildKit's defaults); BuildKit proxies
                // the agent instead, which is what a non-default uid/gid/mode would need.
                std::fs::metadata(socket)
                    .map_err(|e| Fail::Input(format!("ssh agent socket {socket}: {e}")))?;
                StepMount::Bind { source: PathBuf::from(socket), target: target.clone(), readonly: false }
            }
        })
    }

    /// The directory of cache `key`. A new one is a copy of its seed (`from=`, `source=`) or an
    /// empty directory with the given mode and owner. `locked` waits for other users; `private`
    /// gets a throwaway directory under `dir` when another step has it.
    /// Cache mount `key` as a layer (`None` when it does not exist or is empty), read under its
    /// lock so no `sharing=locked` step changes it meanwhile.
    pub(super) fn export_cache(
        &self,
        key: &str,
        compression: &str,
        clamp: Option<i64>,
    ) -> Result<Option<LayerRef>, String> {
        let path = self.caches.join(key);
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_hexdigit()) || !path.is_dir() {
            return Ok(None);
        }
        let lock = self.cache_lock(key)?;
        let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| format!("locking cache {key}: {e}"))?;
        let compression = crate::layer::Compression::from_name(compression);
        let mut w =
            crate::layer::LayerWriter::new(&self.store, compression, clamp).map_err(|e| e.to_string())?;
        let empty = crate::layer::walkdiff::Record::new();
        let summary = crate::layer::walkdiff::write_changes(&path, &empty, &mut w, clamp)
            .map_err(|e| format!("reading cache mount {key}: {e}"))?;
        if summary.entries == 0 {
            return Ok(None);
        }
        Ok(Some(LayerRef::from_layer(&w.finish().map_err(|e| e.to_string())?)))
    }

    /// The lock file of cache `key` (flock'd for `sharing=locked`/`private` and for export).
    fn cache_lock(&self, key: &str) -> Result<std::fs::File, String> {
        let lock_path = self.caches.join(format!("{key}.lock"));
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("{}: {e}", lock_path.display()))
    }

    pub(super) fn cache_dir(
        &mut self,
        key: &str,
        sharing: &str,
        new: NewCache<'_>,
        dir: &Path,
        held: &mut Held,
        out: &mut impl Write,
    ) -> Result<PathBuf, Fail> {
        let mut path = self.caches.join(key);
        let lock = self.cache_lock(key)?;
        match sharing {
            "locked" => {
                nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
                    .map(|l| held.locks.push(l))
                    .map_err(|(_, e)| format!("locking cache {key}: {e}"))?;
            }
            "private" => match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(l) => held.locks.push(l),
                // In use by another step: this one gets a fresh, throwaway cache.
                Err(_) => path = dir.join("private"),
            },
            _ => {}
        }
        if path.exists() {
            return Ok(path);
        }
        let tmp = dir.join("new-cache");
        match new.seed {
            Some((from, source)) => {
                let tree = match from {
                    BindFrom::Host(p) => Tree::Plain(PathBuf::from(p)),
                    BindFrom::Layers(layers) => self.tree(layers, &dir.join("seed"), false, out)?,
                };
                let src = source_in(tree.path(), source, "cache mount source")?;
                if !src.is_dir() {
                    return Err(Fail::Input(format!("cache mount source {source:?} is not a directory")));
                }
                overlay::copy_tree(&src, &tmp)
                    .map_err(|e| format!("seeding cache {key} from {source}: {e}"))?;
            }
            None => {
                fs_err::create_dir_all(&tmp).map_err(|e| e.to_string())?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(new.mode))
                    .map_err(|e| e.to_string())?;
                if !self.squash {
                    std::os::unix::fs::chown(&tmp, Some(new.uid), Some(new.gid))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        rename_into_place(&tmp, &path)?;
        Ok(path)
    }

    /// The path of a network namespace with only loopback, made once per helper by a child that
    /// holds it open and dies with the helper.
    pub(super) fn none_netns(&mut self) -> Result<PathBuf, String> {
        if let Some((_, p)) = &self.netns {
            return Ok(p.clone());
        }
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        // SAFETY: the helper is single-threaded; the child only makes syscalls and exits.
        match unsafe { nix::unistd::fork() }.map_err(|e| e.to_string())? {
            nix::unistd::ForkResult::Child => {
                drop(r);
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                // libcontainer leaves the helper non-dumpable, which makes /proc/<pid>/ns/* of a
                // child belong to the host's root: unreachable from this user namespace.
                let _ = nix::sys::prctl::set_dumpable(true);
                let ok = unshare(CloneFlags::CLONE_NEWNET).is_ok() && loopback_up().is_ok();
                let _ = nix::unistd::write(&w, if ok { b"y" } else { b"n" });
                drop(w);
                if !ok {
                    unsafe { nix::libc::_exit(1) };
                }
                loop {
                    nix::unistd::pause();
                }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let mut b = [0u8; 1];
                let mut f = std::fs::File::from(r);
                let ok = f.read_exact(&mut b).is_ok() && b[0] == b'y';
                if !ok {
                    return Err("cannot create a network namespace for --network=none".into());
                }
                let p = PathBuf::from(format!("/proc/{child}/ns/net"));
                self.netns = Some((child, p.clone()));
                Ok(p)
            }
        }
    }
}

/// What a step sees at `/etc/resolv.conf` (the host's) and `/etc/hosts` (localhost and the
/// step's hostname, then the `--add-host` lines), by path. `machine_name`: the hostname the step
/// has where it cannot have its own (chroot isolation), so that it resolves as its own name does
/// in a container (sudo, `hostname -f`).
pub(super) fn etc_contents(
    extra_hosts: &[(String, String)],
    machine_name: Option<&str>,
) -> [(&'static str, Vec<u8>); 2] {
    let names = match machine_name {
        Some(m) if m != HOSTNAME && !m.is_empty() => format!("{HOSTNAME} {m}"),
        _ => HOSTNAME.to_string(),
    };
    let mut hosts = format!("127.0.0.1\tlocalhost {names}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (host, ip) in extra_hosts {
        hosts.push_str(&format!("{ip}\t{host}\n"));
    }
    [
        ("/etc/resolv.conf", std::fs::read("/etc/resolv.conf").unwrap_or_default()),
        ("/etc/hosts", hosts.into_bytes()),
    ]
}

/// `source` inside `tree` (symlinks resolved within it), which must exist; `what` names it in
/// errors (`--mount source`).
pub(super) fn source_in(tree: &Path, source: &str, what: &str) -> Result<PathBuf, Fail> {
    let src = crate::layer::rootpath::resolve_in_root(tree, source.trim_start_matches('/'))
        .map_err(|e| Fail::Input(format!("{what} {source}: {e}")))?;
    if std::fs::symlink_metadata(&src).is_err() {
        return Err(Fail::Input(format!("{what} {source:?} does not exist")));
    }
    Ok(src)
}

/// Brings `lo` up in the current network namespace.
pub(super) fn loopback_up() -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: plain ioctls on a socket we own, with an ifreq we initialise.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r != 0 { Err(err) } else { Ok(()) }
    }
}

/// How a cache directory that does not exist yet is made.
pub(super) struct NewCache<'a> {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) seed: Option<&'a (BindFrom, String)>,
}

/// Mounts and locks that must outlive the container and go right after it.
#[derive(Default)]
pub(super) struct Held {
    pub(super) trees: Vec<Tree>,
    pub(super) tmpfs: Vec<PathBuf>,
    pub(super) locks: Vec<nix::fcntl::Flock<std::fs::File>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for p in &self.tmpfs {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
