//! The seccomp filter a traced step runs under: only the system calls the tracer rewrites or
//! emulates stop the tracee (`SECCOMP_RET_TRACE`); every other call runs at full speed, as in
//! PRoot. Calls of another ABI (i386 through `int 0x80`, x32) are refused with `ENOSYS`: their
//! numbers differ and the tracer only knows x86-64's.

use nix::libc::sock_filter;

use crate::sandbox::seccomp::AUDIT_ARCH_X86_64;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const X32_BIT: u32 = 0x4000_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The program that traces the calls numbered `traced`.
pub fn program(traced: &[u32]) -> Vec<sock_filter> {
    let n = traced.len();
    // Layout: [0] ld arch, [1] jeq arch, [2] ld nr, [3] jge x32, [4..4+n] jeq nr,
    // [4+n] allow, [5+n] trace, [6+n] errno.
    let mut p = Vec::with_capacity(n + 7);
    p.push(stmt(LD_W_ABS, 4));
    p.push(jump(JEQ_K, AUDIT_ARCH_X86_64, 0, (n + 4) as u8));
    p.push(stmt(LD_W_ABS, 0));
    p.push(jump(JGE_K, X32_BIT, (n + 2) as u8, 0));
    for (i, nr) in traced.iter().enumerate() {
        p.push(jump(JEQ_K, *nr, (n - i) as u8, 0));
    }
    p.push(stmt(RET_K, RET_ALLOW));
    p.push(stmt(RET_K, RET_TRACE));
    p.push(stmt(RET_K, RET_ERRNO | nix::libc::ENOSYS as u32));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_the_right_returns() {
        let traced = [2, 4, 257];
        let p = program(&traced);
        let at = |i: usize, off: u8| i + 1 + off as usize;
        let n = traced.len();
        assert_eq!(p[at(1, p[1].jf)].k, RET_ERRNO | nix::libc::ENOSYS as u32, "other ABIs");
        assert_eq!(p[at(3, p[3].jt)].k, RET_ERRNO | nix::libc::ENOSYS as u32, "x32");
        for i in 0..n {
            assert_eq!(p[at(4 + i, p[4 + i].jt)].k, RET_TRACE, "call {}", traced[i]);
        }
        assert_eq!(p[4 + n].k, RET_ALLOW);
    }
}
