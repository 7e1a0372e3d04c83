//! The OCI runtime spec of one RUN step.
//!
//! Pure: everything it needs comes in a [`StepSpec`], so the shape of the container (namespaces,
//! mounts, capabilities) is unit-tested without running anything.

use std::collections::HashSet;
use std::path::PathBuf;

use super::protocol::Process;
use libcontainer::oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceBuilder, LinuxDeviceCgroupBuilder,
    LinuxDeviceType, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder, get_default_mounts, get_rootless_mounts,
};

/// A mount the step asked for, with its source already prepared by the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepMount {
    /// A bind mount of a host path (a directory or a file).
    Bind {
        /// Host path.
        source: PathBuf,
        /// Path in the container.
        target: String,
        /// Read-only.
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Path in the container.
        target: String,
        /// `size=` in bytes (0: the kernel's default, half of RAM).
        size: u64,
    },
}

/// Everything that varies between steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    /// The merged overlay (or copied) root filesystem.
    pub root: PathBuf,
    /// The process (ids are those inside the container).
    pub process: Process,
    /// The hostname (BuildKit uses `buildkitsandbox`).
    pub hostname: String,
    /// `None`: the host's network namespace; `Some(path)`: join that namespace (a private one with
    /// loopback up, for `--network=none`).
    pub netns: Option<PathBuf>,
    /// The helper runs inside its own user namespace (rootless): `/sys` is bind-mounted and devpts
    /// gets no `gid=5`, as a non-initial user namespace requires.
    pub rootless: bool,
    /// `linux.cgroupsPath`, absolute (libcontainer otherwise assumes systemd).
    pub cgroups_path: String,
    /// `/etc/resolv.conf` and `/etc/hosts` for the step, and the step's `--mount`s, in order.
    pub mounts: Vec<StepMount>,
    /// `--shm-size` (bytes; 0: the default 64 MiB) and `--ulimit`s.
    pub options: super::protocol::StepOptions,
    /// A seccomp filter goes in before the exec: the process keeps `CAP_SYS_ADMIN` until then,
    /// which installing it without `no_new_privs` needs (see [`super::seccomp`]).
    pub seccomp: bool,
    /// `RUN --security=insecure`: what the step gets instead of the sandbox's limits.
    pub privileged: Option<Privileged>,
}

/// A privileged step, as BuildKit's insecure mode makes it (`docker run --privileged`): every
/// capability the helper holds in all five sets (ambient too, so a USER keeps them), no masked
/// or read-only paths, `/sys` writable, every device allowed by the device cgroup, and the device
/// nodes BuildKit adds. No seccomp filter (the helper installs none for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileged {
    /// The capabilities.
    pub caps: HashSet<Capability>,
    /// Device nodes to make in the step's `/dev`: path, block (`true`) or char, major, minor.
    /// None in a user namespace, which cannot make them.
    pub devices: Vec<(String, bool, i64, i64)>,
}

/// The device nodes BuildKit's insecure mode adds outside a user namespace: `/dev/kmsg`, `cuse`,
/// `fuse`, `kvm`, `net/tun`, `loop-control`, and loop devices 0 to `free_loop + 7`.
pub fn privileged_devices(free_loop: i64) -> Vec<(String, bool, i64, i64)> {
    let mut d: Vec<(String, bool, i64, i64)> = [
        ("/dev/kmsg", 1, 11),
        ("/dev/cuse", 10, 203),
        ("/dev/fuse", 10, 229),
        ("/dev/kvm", 10, 232),
        ("/dev/net/tun", 10, 200),
        ("/dev/loop-control", 10, 237),
    ]
    .into_iter()
    .map(|(p, major, minor)| (p.to_string(), false, major, minor))
    .collect();
    d.extend((0..=free_loop + 7).map(|i| (format!("/dev/loop{i}"), true, 7, i)));
    d
}

/// Docker's default capability set: what a RUN step gets in docker build and BuildKit.
pub const DOCKER_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// [`DOCKER_CAPS`] by their names in a seccomp profile (`CAP_CHOWN`, …).
pub fn docker_cap_names() -> Vec<String> {
    DOCKER_CAPS
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok().and_then(|v| v.as_str().map(String::from)))
        .collect()
}

/// Builds the spec. Errors only if oci-spec's builders reject a value.
pub fn build(s: &StepSpec) -> Result<Spec, libcontainer::oci_spec::OciSpecError> {
    // Inheritable and ambient stay empty: ambient capabilities would survive the exec of a non-root
    // USER, which Docker never grants (a privileged step excepted, as in BuildKit).
    let (caps, ambient) = match &s.privileged {
        Some(p) => (p.caps.clone(), p.caps.clone()),
        None => {
            let mut caps: HashSet<Capability> = DOCKER_CAPS.into_iter().collect();
            if s.seccomp {
                caps.insert(Capability::SysAdmin);
            }
            (caps, HashSet::new())
        }
    };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(ambient.clone())
        .ambient(ambient)
        .build()?;
    let p = &s.process;
    let mut user = UserBuilder::default().uid(p.uid).gid(p.gid);
    if !p.groups.is_empty() {
        user = user.additional_gids(p.groups.clone());
    }
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(p.args.clone())
        .env(p.env.clone())
        .cwd(PathBuf::from(&p.cwd))
        .user(user.build()?)
        .capabilities(capabilities)
        // Docker leaves no_new_privileges off; with it on, setuid tools (su, sudo) and file
        // capabilities stop working in steps.
        .no_new_privileges(false)
        // No rlimits unless --ulimit asks: the step inherits the helper's (the spec default's
        // 1024 files is lower than Docker's, and a rootless helper may not raise a hard limit).
        .rlimits(rlimits(&s.options.ulimits)?)
        .build()?;

    let mut namespaces = vec![
        ns(LinuxNamespaceType::Mount, None)?,
        ns(LinuxNamespaceType::Pid, None)?,
        ns(LinuxNamespaceType::Uts, None)?,
        ns(LinuxNamespaceType::Ipc, None)?,
    ];
    if let Some(path) = &s.netns {
        namespaces.push(ns(LinuxNamespaceType::Network, Some(path.clone()))?);
    }
    let mut linux =
        LinuxBuilder::default().namespaces(namespaces).cgroups_path(PathBuf::from(&s.cgroups_path));
    if let Some(p) = &s.privileged {
        let devices = p
            .devices
            .iter()
            .map(|(path, block, major, minor)| {
                LinuxDeviceBuilder::default()
                    .path(path)
                    .typ(if *block { LinuxDeviceType::B } else { LinuxDeviceType::C })
                    .major(*major)
                    .minor(*minor)
                    .file_mode(0o660u32)
                    .uid(0u32)
                    .gid(0u32)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let allow = |typ| LinuxDeviceCgroupBuilder::default().allow(true).typ(typ).access("rwm").build();
        linux = linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new())
            .devices(devices)
            .resources(
                LinuxResourcesBuilder::default()
                    .devices(vec![allow(LinuxDeviceType::C)?, allow(LinuxDeviceType::B)?])
                    .build()?,
            );
    }
    let linux = linux.build()?;

    let mut mounts: Vec<Mount> = if s.rootless { get_rootless_mounts() } else { get_default_mounts() };
    // A build step has no business with the cgroup tree. /dev/mqueue stays, as in BuildKit's
    // steps (containerd's default spec): the step's IPC namespace is new and owned by the user
    // namespace the helper is in, so even a rootless helper may mount its mqueue.
    mounts.retain(|m| m.destination().to_string_lossy() != "/sys/fs/cgroup");
    if s.options.shm_size > 0 {
        for m in mounts.iter_mut().filter(|m| m.destination().to_string_lossy() == "/dev/shm") {
            let mut options: Vec<String> = m
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| !o.starts_with("size="))
                .collect();
            options.push(format!("size={}", s.options.shm_size));
            m.set_options(Some(options));
        }
    }
    // /proc as containerd's default spec (BuildKit's) mounts it.
    for m in mounts.iter_mut().filter(|m| m.destination().to_string_lossy() == "/proc") {
        m.set_options(Some(vec!["nosuid".into(), "noexec".into(), "nodev".into()]));
    }
    if s.netns.is_none() {
        // sysfs may only be mounted by the owner of the network namespace: in the host's, bind it.
        // Read-only all the way down (`rro` etc.: mount_setattr with AT_RECURSIVE, which
        // libcontainer's bind mounts use anyway): the host's mounts under /sys come along, and
        // a plain `ro` would leave its cgroup hierarchies and tracefs writable to a root step, so
        // that it could move itself out of its cgroup or freeze the host's.
        for m in mounts.iter_mut().filter(|m| m.destination().to_string_lossy() == "/sys") {
            *m = MountBuilder::default()
                .destination("/sys")
                .typ("bind")
                .source("/sys")
                .options(
                    ["rbind", "ro", "nosuid", "noexec", "nodev", "rro", "rnosuid", "rnoexec", "rnodev"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()?;
        }
    }
    if s.privileged.is_some() {
        // BuildKit's insecure mode makes sysfs writable.
        for m in mounts.iter_mut().filter(|m| m.destination().to_string_lossy() == "/sys") {
            let options: Vec<String> = m
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| o != "ro" && o != "rro")
                .collect();
            m.set_options(Some(options));
        }
    }
    for m in &s.mounts {
        mounts.push(match m {
            StepMount::Bind { source, target, readonly } => {
                let mut options = vec!["rbind".to_string()];
                options.push(if *readonly { "ro" } else { "rw" }.into());
                MountBuilder::default()
                    .destination(target)
                    .typ("bind")
                    .source(source)
                    .options(options)
                    .build()?
            }
            StepMount::Tmpfs { target, size } => {
                let mut options = vec!["nosuid".to_string(), "nodev".into(), "mode=1777".into()];
                if *size > 0 {
                    options.push(format!("size={size}"));
                }
                MountBuilder::default()
                    .destination(target)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(options)
                    .build()?
            }
        });
    }

    SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(&s.root).readonly(false).build()?)
        .hostname(s.hostname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()
}

fn ns(
    typ: LinuxNamespaceType,
    path: Option<PathBuf>,
) -> Result<libcontainer::oci_spec::runtime::LinuxNamespace, libcontainer::oci_spec::OciSpecError> {
    let mut b = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(p) = path {
        b = b.path(p);
    }
    b.build()
}

/// `--ulimit`s as the spec's rlimits (`nofile` → `RLIMIT_NOFILE`).
fn rlimits(
    ulimits: &[super::protocol::Ulimit],
) -> Result<Vec<libcontainer::oci_spec::runtime::PosixRlimit>, libcontainer::oci_spec::OciSpecError> {
    use libcontainer::oci_spec::runtime::{PosixRlimitBuilder, PosixRlimitType};
    ulimits
        .iter()
        .map(|u| {
            let typ: PosixRlimitType =
                format!("RLIMIT_{}", u.name.to_ascii_uppercase()).parse().map_err(|_| {
                    libcontainer::oci_spec::OciSpecError::Other(format!("unknown ulimit {}", u.name))
                })?;
            PosixRlimitBuilder::default().typ(typ).soft(u.soft).hard(u.hard).build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> StepSpec {
        StepSpec {
            root: "/r".into(),
            process: Process {
                args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
                env: vec!["PATH=/bin".into()],
                cwd: "/".into(),
                uid: 1000,
                gid: 1000,
                groups: vec![50],
            },
            hostname: crate::sandbox::HOSTNAME.into(),
            netns: None,
            rootless: true,
            cgroups_path: "/hako/x".into(),
            mounts: vec![
                StepMount::Bind { source: "/h/hosts".into(), target: "/etc/hosts".into(), readonly: true },
                StepMount::Tmpfs { target: "/cache".into(), size: 4096 },
            ],
            options: Default::default(),
            seccomp: false,
            privileged: None,
        }
    }

    #[test]
    fn shm_size_and_ulimits_reach_the_spec() {
        let mut s = step();
        s.options.shm_size = 128 << 20;
        s.options.ulimits =
            vec![crate::sandbox::protocol::Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 }];
        let spec = build(&s).expect("spec");
        let shm = spec.mounts().iter().flatten().find(|m| m.destination().to_string_lossy() == "/dev/shm");
        let options = shm.and_then(|m| m.options().clone()).unwrap_or_default();
        assert!(options.contains(&format!("size={}", 128 << 20)), "{options:?}");
        assert_eq!(options.iter().filter(|o| o.starts_with("size=")).count(), 1, "{options:?}");
        let limits = spec.process().as_ref().and_then(|p| p.rlimits().clone()).unwrap_or_default();
        assert_eq!(limits.len(), 1);
        assert_eq!((limits[0].soft(), limits[0].hard()), (1024, 2048));
        assert_eq!(limits[0].typ().to_string(), "RLIMIT_NOFILE");
    }

    fn destinations(spec: &Spec) -> Vec<String> {
        spec.mounts().iter().flatten().map(|m| m.destination().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn docker_like_process() {
        let spec = build(&step()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.no_new_privileges(), Some(false));
        let caps = p.capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
        assert!(caps.effective().as_ref().unwrap().contains(&Capability::Chown));
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[50][..]));
        assert!(p.rlimits().as_ref().is_none_or(Vec::is_empty));
        assert_eq!(spec.hostname().as_deref(), Some("buildkitsandbox"));
    }

    #[test]
    fn a_privileged_step_has_every_capability_device_and_path() {
        let mut s = step();
        s.rootless = false;
        let caps: HashSet<Capability> =
            [Capability::SysAdmin, Capability::NetAdmin, Capability::Chown].into();
        s.privileged = Some(Privileged { caps: caps.clone(), devices: privileged_devices(2) });
        let spec = build(&s).unwrap();
        let c = spec.process().as_ref().unwrap().capabilities().clone().unwrap();
        for set in [c.bounding(), c.effective(), c.permitted(), c.inheritable(), c.ambient()] {
            assert_eq!(set.as_ref(), Some(&caps));
        }
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.masked_paths().as_deref(), Some(&[][..]));
        assert_eq!(linux.readonly_paths().as_deref(), Some(&[][..]));
        let devices = linux.devices().clone().unwrap_or_default();
        let paths: Vec<String> = devices.iter().map(|d| d.path().to_string_lossy().into_owned()).collect();
        assert!(
            paths.contains(&"/dev/fuse".to_string()) && paths.contains(&"/dev/loop9".to_string()),
            "{paths:?}"
        );
        assert!(!paths.contains(&"/dev/loop10".to_string()), "free loop 2: loop0 to loop9");
        let loop9 = devices.iter().find(|d| d.path().ends_with("loop9")).unwrap();
        assert_eq!((loop9.typ(), loop9.major(), loop9.minor()), (LinuxDeviceType::B, 7, 9));
        let rules = linux.resources().as_ref().and_then(|r| r.devices().clone()).unwrap_or_default();
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().all(|r| r.allow() && r.access().as_deref() == Some("rwm")));
        let sys =
            spec.mounts().iter().flatten().find(|m| m.destination().to_string_lossy() == "/sys").unwrap();
        let opts = sys.options().clone().unwrap_or_default();
        assert!(!opts.iter().any(|o| o == "ro" || o == "rro"), "sysfs writable: {opts:?}");

        let sandboxed = build(&step()).unwrap();
        let linux = sandboxed.linux().as_ref().unwrap();
        assert!(linux.masked_paths().as_ref().is_some_and(|m| m.iter().any(|p| p == "/proc/kcore")));
        assert!(linux.readonly_paths().as_ref().is_some_and(|m| m.iter().any(|p| p == "/proc/sys")));
    }

    #[test]
    fn a_seccomp_step_keeps_sys_admin_until_its_executor_drops_it() {
        let caps =
            |s: &StepSpec| build(s).unwrap().process().as_ref().unwrap().capabilities().clone().unwrap();
        let mut s = step();
        assert!(!caps(&s).bounding().as_ref().unwrap().contains(&Capability::SysAdmin));
        s.seccomp = true;
        let c = caps(&s);
        for set in [c.bounding(), c.effective(), c.permitted()] {
            assert!(set.as_ref().unwrap().contains(&Capability::SysAdmin));
        }
        assert!(!c.ambient().as_ref().unwrap().contains(&Capability::SysAdmin));
        // The profile is resolved for Docker's set, not the one with CAP_SYS_ADMIN.
        let names = docker_cap_names();
        assert_eq!(names.len(), DOCKER_CAPS.len());
        assert!(
            names.contains(&"CAP_SYS_CHROOT".to_string()) && names.contains(&"CAP_AUDIT_WRITE".to_string())
        );
    }

    #[test]
    fn namespaces_follow_the_network_choice() {
        let kinds = |s: &StepSpec| -> Vec<LinuxNamespaceType> {
            let spec = build(s).unwrap();
            spec.linux().as_ref().unwrap().namespaces().as_ref().unwrap().iter().map(|n| n.typ()).collect()
        };
        let host = kinds(&step());
        assert!(!host.contains(&LinuxNamespaceType::Network));
        assert!(!host.contains(&LinuxNamespaceType::User), "the helper already is in its user namespace");
        let mut none = step();
        none.netns = Some("/proc/1/ns/net".into());
        assert!(kinds(&none).contains(&LinuxNamespaceType::Network));
    }

    #[test]
    fn mounts_have_no_cgroup_tree_and_bind_sys_on_the_host_network() {
        let spec = build(&step()).unwrap();
        let d = destinations(&spec);
        assert!(!d.contains(&"/sys/fs/cgroup".to_string()));
        assert_eq!(d.iter().filter(|d| *d == "/etc/hosts").count(), 1);
        let sys =
            spec.mounts().iter().flatten().find(|m| m.destination().to_string_lossy() == "/sys").unwrap();
        assert_eq!(sys.typ().as_deref(), Some("bind"));
        let opts = sys.options().clone().unwrap_or_default();
        assert!(opts.contains(&"rro".to_string()), "the host's mounts under /sys read-only too: {opts:?}");
        let proc =
            spec.mounts().iter().flatten().find(|m| m.destination().to_string_lossy() == "/proc").unwrap();
        assert_eq!(proc.options().as_deref(), Some(&["nosuid".into(), "noexec".into(), "nodev".into()][..]));
        let tmpfs = spec.mounts().iter().flatten().find(|m| m.destination().to_string_lossy() == "/cache");
        assert!(tmpfs.unwrap().options().as_ref().unwrap().contains(&"size=4096".to_string()));
        assert_eq!(
            spec.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(std::path::Path::new("/hako/x"))
        );
    }
}
