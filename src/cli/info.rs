//! `hako info`: what this machine lets hako do, without building — the version, the store, the
//! kernel, the seccomp filter steps get, and the isolation `--isolation=auto` picks here with why
//! the better modes are not available (the same probes and the same line a build prints).

use super::{Failure, InfoArgs, print_stdout};
use crate::sandbox::Isolation;
use crate::sandbox::probe::{self, Probe};

/// Runs `hako info`.
pub fn run(args: InfoArgs) -> Result<(), Failure> {
    let root = super::build::store_root(args.root.as_deref())?;
    let p = probe::probe();
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname
        .map(|u| {
            format!(
                "{} {} {}",
                u.sysname().to_string_lossy(),
                u.release().to_string_lossy(),
                u.machine().to_string_lossy()
            )
        })
        .unwrap_or_else(|| "unknown".into());
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| p.euid.to_string(), |u| format!("{} (uid {})", u.name, p.euid));
    let store = if root.join("oci-layout").is_file() { "" } else { " (not created yet)" };
    let auto = match probe::choose(Isolation::Auto, &p) {
        Ok((_, why)) => why,
        Err(why) => format!("none — {why}"),
    };
    let roots = match crate::registry::roots::bundled_in_use() {
        Some(f) => format!("hako's built-in roots (the machine has no CA certificates; {})", f.display()),
        None => "the machine's (SSL_CERT_FILE, SSL_CERT_DIR or the system bundle)".into(),
    };
    let seccomp = match crate::sandbox::seccomp::default_programs(&crate::sandbox::spec::docker_cap_names()) {
        Ok(Some(_)) => "Docker's default profile, for rootless and root steps".to_string(),
        Ok(None) => "none: this kernel (or architecture) has no seccomp filter support".to_string(),
        Err(e) => format!("none: {e}"),
    };
    let text = format!(
        "hako {}\nstore:      {}{store}\nkernel:     {kernel}\nuser:       {user}\nca roots:   {roots}\n\
         seccomp:    {seccomp}\nisolation:  {auto}\n{}",
        env!("CARGO_PKG_VERSION"),
        root.display(),
        modes(&p),
    );
    print_stdout(&text)
}

/// One line per `--isolation` mode: available here, or why not.
fn modes(p: &Probe) -> String {
    let root = p.euid == 0;
    let line = |name: &str, state: String| format!("  {name:<9} {state}\n");
    let probed = |r: &Result<(), probe::Failure>| match r {
        Ok(()) => "available".to_string(),
        Err(f) => format!("not available: {f}"),
    };
    let rootless = match (&p.userns, &p.subids) {
        (Ok(()), Err(why)) if !root => format!("available, owners squashed: {why}"),
        _ => probed(&p.userns),
    };
    let mut out = line("rootless", rootless);
    out.push_str(&line("root", if root { probed(&p.namespaces) } else { "needs root".into() }));
    out.push_str(&line(
        "chroot",
        if root { "available (no namespaces)".into() } else { "needs root".into() },
    ));
    out.push_str(&line("ptrace", probed(&p.ptrace)));
    out
}
