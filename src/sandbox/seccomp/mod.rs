//! Docker's default seccomp profile, for RUN steps in namespace isolation (root and rootless), as
//! docker build and BuildKit run them: `unshare`, `mount`, `keyctl`, `bpf` and the other calls
//! the profile leaves out fail with `EPERM` (`clone3` with `ENOSYS`, so that libc falls back to
//! `clone`, whose namespace flags are refused).
//!
//! The profile is moby's (`docker-default.json`, Apache-2.0, license beside it), resolved here for
//! x86-64 (`amd64`), the running kernel and the step's capabilities as moby resolves it, and
//! compiled to BPF by `seccompiler` (pure Rust: libcontainer's own seccomp support needs the C
//! libseccomp, which the static musl build does without). One filter allows what the profile
//! allows and refuses the rest with the default errno; one more per other errno returns it for its
//! calls — the kernel takes the most recently installed filter's errno when two refuse.
//!
//! Docker installs the filter without `no_new_privs` (setuid programs keep working), which the
//! kernel permits only to a process holding `CAP_SYS_ADMIN`. libcontainer drops capabilities before
//! it hands over to the executor, so the step's spec keeps `CAP_SYS_ADMIN` that far and the
//! executor ([`install_and_drop_admin`]) installs the filters, then drops it from every set,
//! then execs the step.
//!
//! The filters cover both x86 ABIs a process can call an x86-64 kernel with, as Docker's does:
//! 64-bit calls by x86-64's numbers, 32-bit ones (`int 0x80`, i386 programs) by i386's, each part
//! compiled by seccompiler and joined under one architecture check. x32 calls (x86-64's with bit 30
//! set, on kernels built with x32) fail with the default errno, where Docker allows them.
//!
//! Not filtered: chroot and ptrace isolation (run inside a CI container, which has its own
//! filter).

#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

/// Docker's default profile, as moby ships it.
const PROFILE: &str = include_str!("docker-default.json");

/// Why the profile could not be compiled or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile does not parse (a bad vendored file).
    #[error("Docker's seccomp profile: {0}")]
    Profile(#[from] serde_json::Error),
    /// The profile names an action or comparison hako does not know.
    #[error("Docker's seccomp profile: {0}")]
    Unsupported(String),
    /// seccompiler refused the rules.
    #[error("compiling Docker's seccomp profile: {0}")]
    Compile(#[from] seccompiler::BackendError),
    /// The kernel refused the filter.
    #[error("installing Docker's seccomp profile: {0}")]
    Install(nix::errno::Errno),
    /// Dropping `CAP_SYS_ADMIN` after installing failed.
    #[error("dropping CAP_SYS_ADMIN after installing the seccomp filter: {0}")]
    Caps(String),
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    syscalls: Vec<Group>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Group {
    names: Vec<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// What a call gets when its rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// It runs.
    Allow,
    /// It fails with this errno.
    Errno(u32),
}

/// When a rule matches: always, or when any one of these lists of conditions all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Whatever the arguments.
    Always,
    /// Per alternative, conditions on the arguments that must all hold.
    Any(Vec<Vec<Cond>>),
}

/// A comparison of one argument, as libseccomp makes it (all 64 bits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    /// Argument index (0–5).
    pub index: u8,
    /// The comparison.
    pub op: SeccompCmpOp,
    /// The value compared with (for a masked comparison, the expected value after the mask).
    pub value: u64,
}

/// The profile resolved for one architecture, kernel and capability set: per action, the calls
/// (by name) it applies to and when.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The errno of calls no rule allows.
    pub default_errno: u32,
    /// Rules by action, then by call name.
    pub rules: BTreeMap<Action, BTreeMap<String, When>>,
}

/// Resolves `profile` (JSON) as moby does for a step on `arch` (Go's name: `amd64`) with
/// bounding capabilities `caps` (`CAP_…` names) under kernel `kernel` (major, minor).
pub fn resolve(
    profile: &str,
    arch: &str,
    caps: &[String],
    kernel: (u32, u32),
) -> Result<Resolved, SeccompError> {
    let p: Profile = serde_json::from_str(profile)?;
    if p.default_action != "SCMP_ACT_ERRNO" {
        return Err(SeccompError::Unsupported(format!("default action {}", p.default_action)));
    }
    let default_errno = p.default_errno_ret.unwrap_or(nix::libc::EPERM as u32);
    let mut rules: BTreeMap<Action, BTreeMap<String, When>> = BTreeMap::new();
    for g in &p.syscalls {
        if !applies(g, arch, caps, kernel) {
            continue;
        }
        let action = match g.action.as_str() {
            "SCMP_ACT_ALLOW" => Action::Allow,
            "SCMP_ACT_ERRNO" => Action::Errno(g.errno_ret.unwrap_or(nix::libc::EPERM as u32)),
            other => return Err(SeccompError::Unsupported(format!("action {other}"))),
        };
        let conds = g.args.iter().map(cond).collect::<Result<Vec<_>, _>>()?;
        let by_name = rules.entry(action).or_default();
        for name in &g.names {
            let when = by_name.entry(name.clone()).or_insert_with(|| When::Any(Vec::new()));
            match (when, conds.is_empty()) {
                (w, true) => *w = When::Always,
                (When::Any(alts), false) => alts.push(conds.clone()),
                (When::Always, false) => {}
            }
        }
    }
    Ok(Resolved { default_errno, rules })
}

/// Whether group `g` is part of the profile for this step (moby's `includes`/`excludes`: every
/// included capability held, none of the excluded; the architecture listed or not excluded; the
/// kernel at least `minKernel`, or below an excluded one).
fn applies(g: &Group, arch: &str, caps: &[String], kernel: (u32, u32)) -> bool {
    let (inc, exc) = (&g.includes, &g.excludes);
    inc.caps.iter().all(|c| caps.contains(c))
        && (inc.arches.is_empty() || inc.arches.iter().any(|a| a == arch))
        && inc.min_kernel.as_deref().is_none_or(|k| parse_kernel(k).is_some_and(|k| kernel >= k))
        && !exc.caps.iter().any(|c| caps.contains(c))
        && !exc.arches.iter().any(|a| a == arch)
        && exc.min_kernel.as_deref().is_none_or(|k| parse_kernel(k).is_some_and(|k| kernel < k))
}

fn cond(a: &Arg) -> Result<Cond, SeccompError> {
    let (op, value) = match a.op.as_str() {
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, a.value),
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, a.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, a.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, a.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, a.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, a.value),
        // libseccomp: (arg & value) == valueTwo.
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
        other => return Err(SeccompError::Unsupported(format!("comparison {other}"))),
    };
    Ok(Cond { index: a.index, op, value })
}

/// `"4.8"` → (4, 8).
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// The running kernel's version, (0, 0) when `uname` says something unexpected.
fn kernel_version() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| parse_kernel(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

/// Compiles `r` for x86-64 and for its 32-bit calls: the allow filter first, then one per other
/// errno, in the order they must be installed.
#[cfg(target_arch = "x86_64")]
pub fn compile(r: &Resolved) -> Result<Vec<BpfProgram>, SeccompError> {
    let native: BTreeMap<&str, i64> = x86_64::CALLS.iter().copied().collect();
    let i386: BTreeMap<&str, i64> = x86::CALLS.iter().copied().collect();
    let mut programs = Vec::new();
    for (action, calls) in &r.rules {
        let (matched, mismatched) = match action {
            Action::Allow => (SeccompAction::Allow, SeccompAction::Errno(r.default_errno)),
            Action::Errno(e) => (SeccompAction::Errno(*e), SeccompAction::Allow),
        };
        let body = |numbers: &BTreeMap<&str, i64>| -> Result<BpfProgram, SeccompError> {
            let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
            for (name, when) in calls {
                // Calls the architecture does not have, as libseccomp skips them.
                let Some(&nr) = numbers.get(name.as_str()) else { continue };
                rules.insert(nr, seccomp_rules(when)?);
            }
            let filter = SeccompFilter::new(
                rules,
                mismatched.clone(),
                matched.clone(),
                seccompiler::TargetArch::x86_64,
            )?;
            without_arch_check(BpfProgram::try_from(filter)?)
        };
        programs.push(by_arch(body(&native)?, body(&i386)?));
    }
    // BTreeMap order puts Allow first: errno filters are installed after it and so win ties.
    Ok(programs)
}

/// linux/audit.h's `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`) and
/// `AUDIT_ARCH_I386` (`EM_386 | __AUDIT_ARCH_LE`): what `seccomp_data.arch` says of a call, which
/// `libc` does not export.
pub(crate) const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "x86_64")]
pub(crate) const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;

/// seccompiler's program without the architecture check it starts with (load the architecture,
/// go on if it is the target's, else kill), which [`by_arch`] replaces: what follows loads the
/// call's number itself and returns on every path.
#[cfg(target_arch = "x86_64")]
fn without_arch_check(mut p: BpfProgram) -> Result<BpfProgram, SeccompError> {
    use nix::libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_KILL_PROCESS};
    let check = [
        (BPF_LD | BPF_W | BPF_ABS, ARCH_OFFSET),
        (BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64),
        (BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    ];
    let starts = p.len() > check.len()
        && p.iter().zip(check).all(|(i, (code, k))| u32::from(i.code) == code && i.k == k);
    if !starts {
        return Err(SeccompError::Unsupported("a seccompiler program without its architecture check".into()));
    }
    p.drain(..check.len());
    Ok(p)
}

/// Where `struct seccomp_data` holds the architecture.
#[cfg(target_arch = "x86_64")]
const ARCH_OFFSET: u32 = 4;

/// One program that runs `native` for x86-64 calls and `i386` for 32-bit ones, and kills a process
/// making any other kind of call, as libseccomp's filters do for an architecture they were not
/// built for. Docker's filter covers both, so 32-bit programs (i386 packages, old toolchains) run
/// in its containers under the same rules. BPF jumps only forward: the i386 part follows the
/// native one, reached over it with an unconditional jump.
#[cfg(target_arch = "x86_64")]
fn by_arch(native: BpfProgram, i386: BpfProgram) -> BpfProgram {
    use nix::libc::{
        BPF_ABS, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SECCOMP_RET_KILL_PROCESS,
    };
    use seccompiler::sock_filter;
    let stmt = |code: u32, k: u32| sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter { code: (BPF_JMP | BPF_JEQ | BPF_K) as u16, jt, jf, k };
    let mut p = Vec::with_capacity(native.len() + i386.len() + 5);
    p.push(stmt(BPF_LD | BPF_W | BPF_ABS, ARCH_OFFSET));
    // x86-64: on to the native part, past the jump over it.
    p.push(jeq(AUDIT_ARCH_X86_64, 1, 0));
    p.push(stmt(BPF_JMP | BPF_JA, native.len() as u32));
    p.extend(native);
    // The architecture is still in the accumulator: i386 skips the kill.
    p.push(jeq(AUDIT_ARCH_I386, 1, 0));
    p.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    p.extend(i386);
    p
}

/// seccompiler's rules for `when` (an empty list: whatever the arguments).
fn seccomp_rules(when: &When) -> Result<Vec<SeccompRule>, SeccompError> {
    let When::Any(alts) = when else { return Ok(Vec::new()) };
    alts.iter()
        .map(|conds| {
            let cs = conds
                .iter()
                .map(|c| SeccompCondition::new(c.index, SeccompCmpArgLen::Qword, c.op.clone(), c.value))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SeccompRule::new(cs)?)
        })
        .collect()
}

/// The filters of Docker's profile for a step holding `caps` (`CAP_…` names) on this machine;
/// `Ok(None)` where there is nothing to install (not x86-64, or a kernel without seccomp).
#[cfg(target_arch = "x86_64")]
pub fn default_programs(caps: &[String]) -> Result<Option<Vec<BpfProgram>>, SeccompError> {
    if !kernel_has_seccomp() {
        return Ok(None);
    }
    let r = resolve(PROFILE, "amd64", caps, kernel_version())?;
    Ok(Some(compile(&r)?))
}

/// No filter off x86-64: hako has only its system call numbers.
#[cfg(not(target_arch = "x86_64"))]
pub fn default_programs(_caps: &[String]) -> Result<Option<Vec<BpfProgram>>, SeccompError> {
    Ok(None)
}

/// Whether the kernel has seccomp (`PR_GET_SECCOMP` fails with `EINVAL` without it).
pub fn kernel_has_seccomp() -> bool {
    // SAFETY: a plain prctl query.
    unsafe { nix::libc::prctl(nix::libc::PR_GET_SECCOMP, 0, 0, 0, 0) >= 0 }
}

/// Installs `programs` on the calling process, without `no_new_privs` (needs `CAP_SYS_ADMIN`),
/// then drops `CAP_SYS_ADMIN` from its bounding, effective and permitted sets. Called in a step's
/// init process just before it execs the step.
pub fn install_and_drop_admin(programs: &[BpfProgram]) -> Result<(), SeccompError> {
    for p in programs {
        load(as_kernel(p), false).map_err(SeccompError::Install)?;
    }
    use caps::{CapSet, Capability};
    for set in [CapSet::Bounding, CapSet::Effective, CapSet::Permitted] {
        caps::drop(None, set, Capability::CAP_SYS_ADMIN).map_err(|e| SeccompError::Caps(e.to_string()))?;
    }
    Ok(())
}

/// Installs `prog` on the calling thread (and what it starts): the one place hako loads a
/// seccomp filter, for steps here and for ptrace's tracing filter. With `no_new_privs`, sets it
/// first, as a caller without `CAP_SYS_ADMIN` must; without, the caller needs that capability.
/// Allocation-free: ptrace calls it in a forked child before exec.
pub fn load(prog: &[nix::libc::sock_filter], no_new_privs: bool) -> Result<(), nix::errno::Errno> {
    use nix::libc;
    let len = u16::try_from(prog.len()).map_err(|_| nix::errno::Errno::EINVAL)?;
    let fprog = libc::sock_fprog { len, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: plain prctl calls; the kernel copies the program during the call, `prog` outlives it.
    unsafe {
        if no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(nix::errno::Errno::last());
        }
        if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog) != 0 {
            return Err(nix::errno::Errno::last());
        }
    }
    Ok(())
}

/// seccompiler's program as the kernel's instructions, which its `#[repr(C)]` `sock_filter`
/// has the fields and layout of.
fn as_kernel(p: &BpfProgram) -> &[nix::libc::sock_filter] {
    // SAFETY: same size, alignment and field order (code u16, jt u8, jf u8, k u32).
    unsafe { std::slice::from_raw_parts(p.as_ptr().cast::<nix::libc::sock_filter>(), p.len()) }
}

#[cfg(test)]
mod tests;
