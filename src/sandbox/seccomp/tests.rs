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
fn every_call_of_the_profile_has_its_x86_64_number_or_none() {
    let p: Profile = serde_json::from_str(PROFILE).unwrap();
    let known: std::collections::BTreeSet<&str> = x86_64::CALLS.iter().map(|c| c.0).collect();
    assert_eq!(known.len(), x86_64::CALLS.len(), "a name twice");
    for g in &p.syscalls {
        for n in &g.names {
            let here = known.contains(n.as_str());
            let absent = x86_64::NOT_ON_X86_64.contains(&n.as_str());
            assert!(here != absent, "{n}: {} in CALLS, {} in NOT_ON_X86_64", here, absent);
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
