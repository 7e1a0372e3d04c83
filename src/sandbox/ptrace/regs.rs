//! A stopped tracee's registers as a system call sees them (x86-64).

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::sandbox::seccomp::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};

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

    /// Which table the call is made through: `arch` as the kernel says it
    /// ([`stop_kind`]), else as the code segment says (a 32-bit program's is `__USER32_CS`;
    /// `int 0x80` from 64-bit code is then missed, taken for x86-64).
    pub fn abi(&self, arch: Option<u32>) -> Abi {
        const USER32_CS: u64 = 0x23;
        let arch = arch.unwrap_or(if self.r.cs == USER32_CS { AUDIT_ARCH_I386 } else { AUDIT_ARCH_X86_64 });
        Abi::of(arch, self.r.orig_rax)
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

/// The system call ABIs an x86-64 kernel serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    /// The native one: the only one the tracer serves.
    X86_64,
    /// 32-bit x86 (a 32-bit program, or `int 0x80`).
    I386,
    /// x86-64's instructions with 32-bit pointers: x86-64's entry, numbers with bit 30 set.
    X32,
}

impl Abi {
    /// The ABI of call `nr` made with `arch` (`seccomp_data.arch`, `AUDIT_ARCH_*`).
    pub fn of(arch: u32, nr: u64) -> Abi {
        const X32_BIT: u64 = 0x4000_0000;
        match arch {
            AUDIT_ARCH_X86_64 if nr & X32_BIT != 0 && nr != u64::MAX => Abi::X32,
            AUDIT_ARCH_X86_64 => Abi::X86_64,
            _ => Abi::I386,
        }
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

/// Asks the kernel which kind of system-call stop `pid` is in, and the call's `arch`
/// (`AUDIT_ARCH_*`), when it can say.
pub fn stop_kind(pid: Pid) -> (StopKind, Option<u32>) {
    const PTRACE_GET_SYSCALL_INFO: nix::libc::c_uint = 0x420e;
    // struct ptrace_syscall_info begins with `__u8 op`, then `__u32 arch` at byte 4; 88 bytes
    // cover every variant.
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
        return (StopKind::Unknown, None);
    }
    let kind = match info[0] as u8 {
        1 => StopKind::Entry,
        2 => StopKind::Exit,
        3 => StopKind::Seccomp,
        _ => return (StopKind::Unknown, None),
    };
    (kind, Some((info[0] >> 32) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_s_abi_comes_from_its_arch_and_number() {
        assert_eq!(Abi::of(AUDIT_ARCH_X86_64, 2), Abi::X86_64);
        assert_eq!(Abi::of(AUDIT_ARCH_X86_64, 0x4000_0001), Abi::X32);
        // A skipped call's number, -1, is not an x32 call.
        assert_eq!(Abi::of(AUDIT_ARCH_X86_64, u64::MAX), Abi::X86_64);
        // i386's numbers are small: 4 is its write, x86-64's stat.
        assert_eq!(Abi::of(AUDIT_ARCH_I386, 4), Abi::I386);
    }
}
