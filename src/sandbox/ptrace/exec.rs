//! `execve` inside the root. The kernel resolves two more paths itself, on the machine: a
//! script's `#!` interpreter and a dynamic executable's `PT_INTERP` (`/lib64/ld-linux-x86-64.so.2`).
//! Neither is a system call the tracer sees, so the exec is rewritten: a script becomes its
//! interpreter with the script as an argument (as the kernel would do), and a dynamic executable
//! becomes its dynamic loader run as a command (`ld.so [--argv0 NAME] PROGRAM ARGS…`), which then
//! opens the program and its libraries through calls the tracer translates (PRoot's approach
//! before it grew its own loader). Static executables run as they are. The kernel's
//! `/proc/PID/exe` then names the loader; the tracer answers for it with the program
//! ([`Plan::program`]), so a program that finds its files or re-executes itself through it works.
//!
//! The kernel names a process after the last component of the path its exec was given (`comm`,
//! which `ps -o comm`, `pgrep`, `pidof`, `killall` and `start-stop-daemon --name` match): the
//! loader's, or a symlink's target's, once the path is rewritten. So the kernel is given a
//! symlink to what it must run, named as the step named the program ([`Names`]).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use nix::errno::Errno;

use super::io_errno;
use super::paths::{Root, path};

/// How the kernel must be asked to run an exec.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// The machine path to exec.
    pub host: Vec<u8>,
    /// The arguments that replace the original `argv[0]` (the rest follow unchanged).
    pub head: Vec<Vec<u8>>,
    /// The machine path of the program when it runs through its loader: what the step's
    /// `/proc/self/exe` must name, as the kernel's names the loader. `None` when the kernel runs
    /// the program itself.
    pub program: Option<Vec<u8>>,
    /// The machine path of the file the exec named when that file is the program (not a script,
    /// whose set-user-ID and set-group-ID bits the kernel ignores): the file whose bits the
    /// tracer applies ([`super::fake::Creds::exec`]).
    pub setid_file: Option<Vec<u8>>,
}

/// Which dynamic loaders accept `--argv0` (glibc ≥ 2.33), by machine path.
#[derive(Default)]
pub struct Loaders(HashMap<Vec<u8>, bool>);

impl Loaders {
    fn takes_argv0(&mut self, host: &[u8]) -> bool {
        *self
            .0
            .entry(host.to_vec())
            .or_insert_with(|| std::fs::read(path(host)).is_ok_and(|b| b.windows(7).any(|w| w == b"--argv0")))
    }
}

/// Symlinks that make the kernel name a process as the step's exec named its program: for
/// `/usr/bin/sleep` run through its loader, `DIR/N/sleep -> /…/root/lib64/ld-linux-x86-64.so.2`,
/// one directory `N` per machine path run. Made in a directory of the step's run, outside its
/// root, as first needed.
pub struct Names {
    dir: PathBuf,
    targets: HashMap<Vec<u8>, usize>,
    made: HashSet<(usize, Vec<u8>)>,
}

impl Names {
    /// Symlinks to be made under `dir` (created when first needed).
    pub fn new(dir: PathBuf) -> Names {
        Names { dir, targets: HashMap::new(), made: HashSet::new() }
    }

    /// The path to give the kernel to run machine path `host` as a process named after the last
    /// component of `guest` (what the step passed); `host` itself when that is its name already,
    /// or when no link can be made (the process is then named as before).
    pub fn exec_path(&mut self, host: Vec<u8>, guest: &[u8]) -> Vec<u8> {
        let name = last_component(guest);
        if name.is_empty() || name == b"." || name == b".." || last_component(&host) == name {
            return host;
        }
        let next = self.targets.len();
        let n = *self.targets.entry(host.clone()).or_insert(next);
        let link = self.dir.join(n.to_string()).join(path(name));
        if !self.made.contains(&(n, name.to_vec())) {
            let made = link.parent().is_some_and(|d| std::fs::create_dir_all(d).is_ok())
                && match std::os::unix::fs::symlink(path(&host), &link) {
                    Ok(()) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::AlreadyExists,
                };
            if !made {
                return host;
            }
            self.made.insert((n, name.to_vec()));
        }
        link.into_os_string().into_encoded_bytes()
    }
}

/// What follows the last `/` of `p` (trailing slashes included: then nothing).
fn last_component(p: &[u8]) -> &[u8] {
    p.rsplit(|b| *b == b'/').next().unwrap_or(p)
}

/// How to exec the step's `guest` (as the call named it) with `argv0`.
pub fn plan(root: &Root, loaders: &mut Loaders, guest: &[u8], argv0: &[u8]) -> Result<Plan, Errno> {
    let mut head = vec![argv0.to_vec()];
    let mut current = guest.to_vec();
    // The kernel allows a few levels of interpreters (BINPRM_MAX_RECURSION is 4).
    for level in 0..5 {
        let host = root.to_host(&current, true)?;
        let mut f = std::fs::File::open(path(&host)).map_err(io_errno)?;
        let md = f.metadata().map_err(io_errno)?;
        if !md.is_file() {
            return Err(Errno::EACCES);
        }
        if md.permissions().mode() & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        let mut buf = vec![0u8; 256];
        let n = crate::layer::read_up_to(&mut f, &mut buf).map_err(io_errno)?;
        buf.truncate(n);
        if let Some((interp, arg)) = shebang(&buf) {
            let mut next = vec![interp.clone()];
            next.extend(arg);
            next.push(current.clone());
            next.extend(head.drain(1..));
            head = next;
            current = interp;
            continue;
        }
        if !buf.starts_with(b"\x7fELF") {
            return Err(Errno::ENOEXEC);
        }
        let Some(ld) = pt_interp(&mut f, &buf).map_err(io_errno)? else {
            let setid_file = (level == 0).then(|| host.clone());
            return Ok(Plan { host, head, program: None, setid_file });
        };
        let ld_host = root.to_host(&ld, true)?;
        let mut next = vec![ld.clone()];
        if loaders.takes_argv0(&ld_host) {
            next.push(b"--argv0".to_vec());
            next.push(head[0].clone());
            // The program as the kernel would open it, symlinks resolved: ld.so takes `$ORIGIN`
            // (the JRE's `$ORIGIN/../lib`) from the path it is given, where the kernel's loader
            // reads `/proc/self/exe`. (Without `--argv0` that path is also the program's
            // `argv[0]`, so it stays as the step named it.)
            next.push(root.to_guest(&host));
        } else {
            next.push(current.clone());
        }
        next.extend(head.drain(1..));
        let setid_file = (level == 0).then(|| host.clone());
        return Ok(Plan { host: ld_host, head: next, program: Some(host), setid_file });
    }
    Err(Errno::ELOOP)
}

/// A process's `/proc/PID/cmdline` as the step named its program. The kernel's shows the
/// loader the exec was rewritten to (`ld.so --argv0 NAME PROGRAM ARGS…`); `ps` and `pgrep -f`
/// must see `NAME ARGS…`, what the kernel would show had it run the program itself. `None` when
/// `real` is not of that form (a process that wrote over its arguments, as `setproctitle` does).
pub fn cmdline_as_named(real: &[u8]) -> Option<Vec<u8>> {
    let fields: Vec<&[u8]> = real.strip_suffix(b"\0").unwrap_or(real).split(|b| *b == 0).collect();
    let [_loader, b"--argv0", name, _program, rest @ ..] = fields.as_slice() else { return None };
    let mut out = Vec::with_capacity(real.len());
    for field in std::iter::once(name).chain(rest) {
        out.extend_from_slice(field);
        out.push(0);
    }
    Some(out)
}

/// A `#!` line's interpreter and its one optional argument (the kernel's split: the first word,
/// then the rest of the line, trimmed).
fn shebang(buf: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let line = buf.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(line.len())];
    let trim = |s: &[u8]| -> Vec<u8> {
        let start = s.iter().position(|b| !b" \t".contains(b)).unwrap_or(s.len());
        let end = s.iter().rposition(|b| !b" \t\r".contains(b)).map_or(start, |e| e + 1);
        s[start..end.max(start)].to_vec()
    };
    let line = trim(line);
    if line.is_empty() {
        return None;
    }
    match line.iter().position(|b| b" \t".contains(b)) {
        Some(i) => {
            let arg = trim(&line[i..]);
            Some((line[..i].to_vec(), (!arg.is_empty()).then_some(arg)))
        }
        None => Some((line, None)),
    }
}

/// The `PT_INTERP` of a 64-bit little-endian ELF file whose first bytes are `head`.
fn pt_interp(f: &mut std::fs::File, head: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::FileExt;
    // EI_CLASS 2 (64-bit), EI_DATA 1 (little-endian): what x86-64 runs.
    if head.len() < 64 || head[4] != 2 || head[5] != 1 {
        return Ok(None);
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as u64;
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        u64::from_le_bytes(a)
    };
    let (phoff, phentsize, phnum) = (u64_at(head, 0x20), u16_at(0x36), u16_at(0x38));
    if phentsize < 56 || phnum > 256 {
        return Ok(None);
    }
    let mut ph = vec![0u8; (phentsize * phnum) as usize];
    f.read_exact_at(&mut ph, phoff)?;
    for i in 0..phnum as usize {
        let p = &ph[i * phentsize as usize..];
        if u32::from_le_bytes([p[0], p[1], p[2], p[3]]) != 3 {
            continue; // not PT_INTERP
        }
        let (off, size) = (u64_at(p, 8), u64_at(p, 32));
        if size == 0 || size > 4096 {
            return Ok(None);
        }
        let mut name = vec![0u8; size as usize];
        f.read_exact_at(&mut name, off)?;
        if let Some(nul) = name.iter().position(|b| *b == 0) {
            name.truncate(nul);
        }
        return Ok(Some(name));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cmdline_shows_the_program_not_its_loader() {
        let real = b"/lib64/ld-linux-x86-64.so.2\0--argv0\0sleep\0/usr/bin/sleep\0x300\0\0x\0";
        assert_eq!(cmdline_as_named(real).as_deref(), Some(&b"sleep\0x300\0\0x\0"[..]));
        let bare = b"/lib64/ld-linux-x86-64.so.2\0--argv0\0/bin/true\0/usr/bin/true\0";
        assert_eq!(cmdline_as_named(bare).as_deref(), Some(&b"/bin/true\0"[..]));
        // Arguments a process wrote over, or a program run without the loader, are left alone.
        assert_eq!(cmdline_as_named(b"nginx: worker process\0"), None);
        assert_eq!(cmdline_as_named(b"/bin/busybox\0sh\0-c\0x\0"), None);
    }

    #[test]
    fn shebang_lines_split_as_the_kernel_splits_them() {
        assert_eq!(shebang(b"#!/bin/sh\necho"), Some((b"/bin/sh".to_vec(), None)));
        assert_eq!(
            shebang(b"#! /usr/bin/env python3 -u \n"),
            Some((b"/usr/bin/env".to_vec(), Some(b"python3 -u".to_vec())))
        );
        assert_eq!(shebang(b"#!\n"), None);
        assert_eq!(shebang(b"\x7fELF"), None);
    }

    #[test]
    fn scripts_run_through_their_interpreter_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        // A static executable: this test binary's own ELF header would be dynamic; write a
        // minimal 64-bit ELF header with no program headers.
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x36] = 56;
        std::fs::write(r.join("bin/sh"), &elf).unwrap();
        std::fs::write(r.join("bin/script"), "#!/bin/sh -e\necho hi\n").unwrap();
        std::fs::write(r.join("bin/data"), "plain").unwrap();
        for f in ["bin/sh", "bin/script", "bin/data"] {
            std::fs::set_permissions(r.join(f), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let root = Root::new(r);
        let mut l = Loaders::default();
        let p = plan(&root, &mut l, b"/bin/script", b"script").unwrap();
        assert_eq!(p.host, format!("{}/bin/sh", r.display()).into_bytes());
        assert_eq!(p.head, [b"/bin/sh".to_vec(), b"-e".to_vec(), b"/bin/script".to_vec()]);
        assert_eq!(plan(&root, &mut l, b"/bin/sh", b"sh").unwrap().head, [b"sh".to_vec()]);
        assert_eq!(plan(&root, &mut l, b"/bin/data", b"d"), Err(Errno::ENOEXEC));
        assert_eq!(plan(&root, &mut l, b"/bin/none", b"d"), Err(Errno::ENOENT));
    }

    #[test]
    fn a_process_is_named_as_the_step_named_its_program() {
        let t = tempfile::tempdir().unwrap();
        let mut names = Names::new(t.path().join("names"));
        let ld = b"/r/lib64/ld-linux-x86-64.so.2".to_vec();
        let sleep = names.exec_path(ld.clone(), b"/usr/bin/sleep");
        assert_eq!(sleep, format!("{}/names/0/sleep", t.path().display()).into_bytes());
        assert_eq!(std::fs::read_link(path(&sleep)).unwrap(), path(&ld));
        assert_eq!(names.exec_path(ld.clone(), b"sleep"), sleep, "made once");
        let busybox = b"/r/bin/busybox".to_vec();
        let ls = names.exec_path(busybox.clone(), b"ls");
        assert_eq!(ls, format!("{}/names/1/ls", t.path().display()).into_bytes());
        assert_eq!(names.exec_path(busybox.clone(), b"/bin/busybox"), busybox, "already its name");
        assert_eq!(names.exec_path(busybox.clone(), b"/bin/"), busybox);
        let mut broken = Names::new(t.path().join("file/names"));
        std::fs::write(t.path().join("file"), "").unwrap();
        assert_eq!(broken.exec_path(busybox.clone(), b"ls"), busybox, "no link: the old name");
    }
}
