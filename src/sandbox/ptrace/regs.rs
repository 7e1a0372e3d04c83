//! A stopped tracee's registers as a system call sees them (x86-64).

use nix::errno::Errno;
use nix::unistd::Pid;

/// The registers of a tracee stopped at a system call.
pub struct Regs {
    pid: Pid,
    r: nix::libc::user_regs_struct,
    dirty: bool,
}

impl Regs {
    /// Reads `pid`'s registers.
    pub fn get(pid: Pid) -> Result<Regs, Errno> {
        Ok(Regs { pid, r: nix::sys::ptrace::getregs(pid)?, dirty: false })
    }

    /// The system call number (-1 once skipped).
    pub fn nr(&self) -> i64 {
        self.r.orig_rax as i64
    }

    /// Argument `i` (0–5).
    pub fn arg(&self, i: usize) -> u64 {
        match i {
            0 => self.r.rdi,
            1 => self.r.rsi,
            2 => self.r.rdx,
            3 => self.r.r10,
            4 => self.r.r8,
            _ => self.r.r9,
        }
    }

    /// Sets argument `i`.
    pub fn set_arg(&mut self, i: usize, v: u64) {
        let r = &mut self.r;
        match i {
            0 => r.rdi = v,
            1 => r.rsi = v,
            2 => r.rdx = v,
            3 => r.r10 = v,
            4 => r.r8 = v,
            _ => r.r9 = v,
        }
        self.dirty = true;
    }

    /// The return value (at the exit of a call).
    pub fn ret(&self) -> i64 {
        self.r.rax as i64
    }

    /// Sets the return value. At the entry of a skipped call (see [`Regs::skip`]) the kernel
    /// leaves it for the tracee.
    pub fn set_ret(&mut self, v: i64) {
        self.r.rax = v as u64;
        self.dirty = true;
    }

    /// Skips the call: the tracee sees `ret` as its result.
    pub fn skip(&mut self, ret: i64) {
        self.r.orig_rax = u64::MAX;
        self.set_ret(ret);
    }

    /// The stack pointer.
    pub fn sp(&self) -> u64 {
        self.r.rsp
    }

    /// Writes changed registers back.
    pub fn put(&mut self) -> Result<(), Errno> {
        if self.dirty {
            nix::sys::ptrace::setregs(self.pid, self.r)?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// What kind of system-call stop a tracee is in (`PTRACE_GET_SYSCALL_INFO`, Linux ≥ 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// Before the call runs.
    Entry,
    /// After it returned.
    Exit,
    /// A seccomp stop (before the call runs).
    Seccomp,
    /// Not a system-call stop, or the kernel cannot tell.
    Unknown,
}

/// Asks the kernel which kind of system-call stop `pid` is in.
pub fn stop_kind(pid: Pid) -> StopKind {
    const PTRACE_GET_SYSCALL_INFO: nix::libc::c_uint = 0x420e;
    // struct ptrace_syscall_info begins with `__u8 op`; 88 bytes cover every variant.
    let mut info = [0u64; 11];
    // SAFETY: the kernel writes at most the size passed into `info`.
    let n = unsafe {
        nix::libc::ptrace(
            PTRACE_GET_SYSCALL_INFO as _,
            pid.as_raw(),
            std::mem::size_of_val(&info),
            info.as_mut_ptr(),
        )
    };
    if n <= 0 {
        return StopKind::Unknown;
    }
    match info[0] as u8 {
        1 => StopKind::Entry,
        2 => StopKind::Exit,
        3 => StopKind::Seccomp,
        _ => StopKind::Unknown,
    }
}
