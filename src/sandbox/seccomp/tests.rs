use super::*;

/// Docker's default capabilities, by the profile's names.
fn docker_caps() -> Vec<String> {
    [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
    .map(String::from)
    .to_vec()
}

fn allowed(r: &Resolved, name: &str) -> Option<When> {
    r.rules.get(&Action::Allow).and_then(|m| m.get(name)).cloned()
}

#[test]
fn docker_caps_refuse_namespaces_mounts_and_keyrings() {
    let r = resolve(PROFILE, "amd64", &docker_caps(), (6, 1)).unwrap();
    assert_eq!(r.default_errno, 1, "EPERM for what no rule allows");
    for name in ["unshare", "mount", "umount2", "setns", "keyctl", "add_key", "bpf", "sethostname", "reboot"]
    {
        assert_eq!(allowed(&r, name), None, "{name}");
    }
    for name in ["read", "execve", "chroot", "fchownat", "mknodat", "ptrace", "arch_prctl"] {
        assert_eq!(allowed(&r, name), Some(When::Always), "{name}");
    }
    // clone only without namespace flags; clone3 fails with ENOSYS so that libc uses clone.
    let ns_flags = 0x7E02_0000;
    assert_eq!(
        allowed(&r, "clone"),
        Some(When::Any(vec![vec![Cond { index: 0, op: SeccompCmpOp::MaskedEq(ns_flags), value: 0 }]]))
    );
    assert_eq!(allowed(&r, "clone3"), None);
    assert_eq!(r.rules[&Action::Errno(38)].get("clone3"), Some(&When::Always));
    // Each value of personality and each socket family range is one alternative.
    assert!(matches!(allowed(&r, "personality"), Some(When::Any(a)) if a.len() == 5));
    assert!(matches!(allowed(&r, "socket"), Some(When::Any(a)) if a.len() == 3));
}

#[test]
fn capabilities_architecture_and_kernel_select_rules() {
    let mut caps = docker_caps();
    caps.push("CAP_SYS_ADMIN".into());
    let admin = resolve(PROFILE, "amd64", &caps, (6, 1)).unwrap();
    for name in ["unshare", "mount", "clone", "clone3", "setns"] {
        assert_eq!(allowed(&admin, name), Some(When::Always), "{name} with CAP_SYS_ADMIN");
    }
    assert!(!admin.rules.contains_key(&Action::Errno(38)), "clone3 is allowed, not ENOSYS");

    let old = resolve(PROFILE, "amd64", &docker_caps(), (4, 4)).unwrap();
    assert_eq!(allowed(&old, "ptrace"), None, "ptrace needs 4.8");
    let arm = resolve(PROFILE, "arm64", &docker_caps(), (6, 1)).unwrap();
    assert_eq!(allowed(&arm, "arch_prctl"), None, "arch_prctl is x86's");
    let without_chroot: Vec<String> = docker_caps().into_iter().filter(|c| c != "CAP_SYS_CHROOT").collect();
    let r = resolve(PROFILE, "amd64", &without_chroot, (6, 1)).unwrap();
    assert_eq!(allowed(&r, "chroot"), None);
}

#[test]
fn kernel_versions_parse() {
    assert_eq!(parse_kernel("4.8"), Some((4, 8)));
    assert_eq!(parse_kernel("6.18.44-fc-v1272"), Some((6, 18)));
    assert_eq!(parse_kernel("5"), Some((5, 0)));
    assert_eq!(parse_kernel("x.y"), None);
}

#[test]
fn unknown_actions_and_comparisons_are_refused() {
    let p = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_LOG"}]}"#;
    assert!(matches!(resolve(p, "amd64", &[], (6, 1)), Err(SeccompError::Unsupported(_))));
    let p = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}"#;
    assert!(matches!(resolve(p, "amd64", &[], (6, 1)), Err(SeccompError::Unsupported(_))));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn every_call_of_the_profile_has_its_number_or_none_on_each_x86_abi() {
    let p: Profile = serde_json::from_str(PROFILE).unwrap();
    for (abi, calls, absent) in
        [("x86-64", x86_64::CALLS, x86_64::NOT_ON_X86_64), ("i386", x86::CALLS, x86::NOT_ON_I386)]
    {
        let known: std::collections::BTreeSet<&str> = calls.iter().map(|c| c.0).collect();
        assert_eq!(known.len(), calls.len(), "{abi}: a name twice");
        for n in p.syscalls.iter().flat_map(|g| &g.names) {
            let here = known.contains(n.as_str());
            let not = absent.contains(&n.as_str());
            assert!(here != not, "{abi}: {n}: {here} in its calls, {not} in its absent ones");
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_profile_compiles_to_an_allow_filter_and_an_enosys_one() {
    let r = resolve(PROFILE, "amd64", &docker_caps(), (6, 1)).unwrap();
    let programs = compile(&r).unwrap();
    assert_eq!(programs.len(), 2);
    assert!(programs.iter().all(|p| p.len() < 4096), "the kernel's limit");
}

/// Runs classic BPF `p` on a call as the kernel would, for the instructions seccompiler and
/// [`by_arch`] emit: the value it returns.
#[cfg(target_arch = "x86_64")]
fn run_bpf(p: &[seccompiler::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    use nix::libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W,
    };
    // struct seccomp_data: nr, arch, instruction pointer, then the arguments (little-endian).
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let i = &p[pc];
        let code = u32::from(i.code);
        pc += 1;
        match code {
            c if c == BPF_LD | BPF_W | BPF_ABS => {
                let k = i.k as usize;
                acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
            }
            c if c == BPF_ALU | BPF_AND | BPF_K => acc &= i.k,
            c if c == BPF_JMP | BPF_JA => pc += i.k as usize,
            c if c == BPF_RET | BPF_K => return i.k,
            c if c & 0x07 == BPF_JMP => {
                let taken = match c & 0xf0 {
                    op if op == BPF_JEQ => acc == i.k,
                    op if op == BPF_JGE => acc >= i.k,
                    op if op == BPF_JGT => acc > i.k,
                    op => panic!("jump {op:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            c => panic!("instruction {c:#x}"),
        }
    }
}

/// The filters decide 64-bit and 32-bit calls alike, each by its own numbers, and kill calls of
/// any other architecture.
#[cfg(target_arch = "x86_64")]
#[test]
fn both_x86_abis_get_the_profile_and_others_are_killed() {
    use nix::libc::{EPERM, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS};
    let r = resolve(PROFILE, "amd64", &docker_caps(), (6, 1)).unwrap();
    let programs = compile(&r).unwrap();
    assert_eq!(programs.len(), 2);
    let verdict = |arch: u32, nr: u32, args: [u64; 6]| -> u32 {
        // The kernel takes the most restrictive; among errnos, the last installed filter's.
        let all: Vec<u32> = programs.iter().map(|p| run_bpf(p, arch, nr, args)).collect();
        all.iter().rev().copied().find(|v| *v != SECCOMP_RET_ALLOW).unwrap_or(SECCOMP_RET_ALLOW)
    };
    let (x64, i386) = (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386);
    let eperm = SECCOMP_RET_ERRNO | EPERM as u32;
    let enosys = SECCOMP_RET_ERRNO | nix::libc::ENOSYS as u32;
    let none = [0u64; 6];
    let newuser = [0x1000_0000u64, 0, 0, 0, 0, 0];
    // (name, x86-64 number, i386 number, arguments, verdict)
    for (name, n64, n32, args, want) in [
        ("write", 1, 4, none, SECCOMP_RET_ALLOW),
        ("socketcall", u32::MAX, 102, none, SECCOMP_RET_ALLOW),
        ("fcntl64", u32::MAX, 221, none, SECCOMP_RET_ALLOW),
        ("unshare", 272, 310, newuser, eperm),
        ("mount", 165, 21, none, eperm),
        ("clone3", 435, 435, none, enosys),
        ("clone, no namespace", 56, 120, none, SECCOMP_RET_ALLOW),
        ("clone, CLONE_NEWUSER", 56, 120, newuser, eperm),
        ("personality(0xffffffff)", 135, 136, [0xffff_ffff, 0, 0, 0, 0, 0], SECCOMP_RET_ALLOW),
        ("personality(1)", 135, 136, [1, 0, 0, 0, 0, 0], eperm),
    ] {
        if n64 != u32::MAX {
            assert_eq!(verdict(x64, n64, args), want, "x86-64 {name}");
        }
        assert_eq!(verdict(i386, n32, args), want, "i386 {name}");
    }
    // i386's number 4 is x86-64's stat: the right table is used for each.
    assert_eq!(verdict(x64, 4, none), SECCOMP_RET_ALLOW);
    // Another architecture's calls (say arm's, as a process cannot make here) are killed.
    assert_eq!(verdict(0x4000_0028, 4, none), SECCOMP_RET_KILL_PROCESS);
}
