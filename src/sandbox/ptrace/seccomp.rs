//! The seccomp filter a traced step runs under: only the system calls the tracer rewrites or
//! emulates stop the tracee (`SECCOMP_RET_TRACE`); every other call runs at full speed, as in
//! PRoot. Calls of another ABI (i386, from a 32-bit program or through `int 0x80`, and x32) trap
//! (`SECCOMP_RET_TRAP`: the call does not run, the process gets `SIGSYS`): their numbers and
//! structures differ and the tracer only serves x86-64's, so such a program is stopped at its first
//! call, the tracer saying why ([`super::Tracer::foreign_call`]), rather than running on with every
//! call refused until it fails in some way of its own.

use nix::libc::sock_filter;

use crate::sandbox::seccomp::AUDIT_ARCH_X86_64;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_TRAP: u32 = 0x0003_0000;
const X32_BIT: u32 = 0x4000_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Where argument `i`'s low 32 bits are in `struct seccomp_data` (x86-64 is little-endian): after
/// `nr`, `arch` and `instruction_pointer`, six 8-byte arguments.
fn arg_low(i: u32) -> u32 {
    16 + 8 * i
}

/// When a call is traced only for some values of one argument.
#[derive(Debug, Clone, Copy)]
pub enum ArgTest {
    /// Argument `i` is not null (a pointer given).
    NotNull(u32),
    /// Argument `i`'s low 32 bits are this value (an option, a level).
    Is(u32, u32),
}

impl ArgTest {
    /// Its instructions in the program.
    fn len(self) -> usize {
        match self {
            ArgTest::NotNull(_) => 5,
            ArgTest::Is(..) => 3,
        }
    }
}

/// The program that traces the calls numbered `traced`, and the calls of `traced_when` when
/// their argument passes the test.
pub fn program(traced: &[i64], traced_when: &[(i64, ArgTest)]) -> Vec<sock_filter> {
    // Layout: [0] ld arch, [1] jeq arch, [2] ld nr, [3] jge x32, [4..4+n] jeq nr, then each
    // argument test (a jeq nr past it, its loads and jumps), then allow, trace, trap.
    let allow = 4 + traced.len() + traced_when.iter().map(|(_, t)| t.len()).sum::<usize>();
    let (trace, trap) = (allow + 1, allow + 2);
    // A jump's offset counts from the next instruction.
    let to = |from: usize, target: usize| -> u8 {
        u8::try_from(target - from - 1).expect("seccomp program too long for BPF jumps")
    };
    let mut p = Vec::with_capacity(trap + 1);
    p.push(stmt(LD_W_ABS, 4));
    p.push(jump(JEQ_K, AUDIT_ARCH_X86_64, 0, to(1, trap)));
    p.push(stmt(LD_W_ABS, 0));
    p.push(jump(JGE_K, X32_BIT, to(3, trap), 0));
    for nr in traced {
        let at = p.len();
        p.push(jump(JEQ_K, *nr as u32, to(at, trace), 0));
    }
    // Another call goes on to the next test with the number still loaded; this one's verdict
    // is final once its argument is loaded.
    for (nr, test) in traced_when {
        let at = p.len();
        p.push(jump(JEQ_K, *nr as u32, 0, to(at, at + test.len())));
        match *test {
            ArgTest::NotNull(arg) => {
                p.push(stmt(LD_W_ABS, arg_low(arg)));
                p.push(jump(JEQ_K, 0, 0, to(at + 2, trace)));
                p.push(stmt(LD_W_ABS, arg_low(arg) + 4));
                p.push(jump(JEQ_K, 0, to(at + 4, allow), to(at + 4, trace)));
            }
            ArgTest::Is(arg, value) => {
                p.push(stmt(LD_W_ABS, arg_low(arg)));
                p.push(jump(JEQ_K, value, to(at + 2, trace), to(at + 2, allow)));
            }
        }
    }
    p.push(stmt(RET_K, RET_ALLOW));
    p.push(stmt(RET_K, RET_TRACE));
    p.push(stmt(RET_K, RET_TRAP));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `p` as the kernel would on one call: its arch, number and arguments.
    fn run(p: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend(nr.to_le_bytes());
        data.extend(arch.to_le_bytes());
        data.extend(0u64.to_le_bytes());
        for a in args {
            data.extend(a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let at = i.k as usize;
                    acc = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
                }
                JEQ_K | JGE_K => {
                    let yes = if i.code == JEQ_K { acc == i.k } else { acc >= i.k };
                    pc += usize::from(if yes { i.jt } else { i.jf });
                }
                RET_K => return i.k,
                other => panic!("unknown instruction {other:#x}"),
            }
        }
    }

    #[test]
    fn calls_are_traced_allowed_or_refused_as_listed() {
        let p = program(&[2, 4, 257], &[(44, ArgTest::NotNull(4)), (55, ArgTest::Is(2, 17))]);
        let x86_64 = |nr, args| run(&p, AUDIT_ARCH_X86_64, nr, args);
        for nr in [2, 4, 257] {
            assert_eq!(x86_64(nr, [0; 6]), RET_TRACE, "call {nr}");
        }
        assert_eq!(x86_64(0, [1; 6]), RET_ALLOW, "read");
        assert_eq!(x86_64(44, [3, 1, 1, 0, 0, 0]), RET_ALLOW, "sendto without an address");
        assert_eq!(x86_64(44, [3, 1, 1, 0, 0x7ffd_0000_1000, 16]), RET_TRACE, "sendto to an address");
        assert_eq!(x86_64(44, [3, 1, 1, 0, 0x7000_0000_0000, 16]), RET_TRACE, "an address above 4 GiB");
        assert_eq!(x86_64(44, [3, 1, 1, 0, 0x1000, 16]), RET_TRACE, "an address below 4 GiB");
        assert_eq!(x86_64(55, [3, 1, 17, 0x1000, 0x2000, 0]), RET_TRACE, "getsockopt SO_PEERCRED");
        assert_eq!(x86_64(55, [3, 1, 4, 0x1000, 0x2000, 0]), RET_ALLOW, "getsockopt SO_ERROR");
        assert_eq!(
            x86_64(55, [3, 1, 0x1_0000_0011, 0, 0, 0]),
            RET_TRACE,
            "the low 32 bits, as the kernel's int"
        );
        assert_eq!(x86_64(X32_BIT | 2, [0; 6]), RET_TRAP, "x32");
        assert_eq!(run(&p, crate::sandbox::seccomp::AUDIT_ARCH_I386, 5, [0; 6]), RET_TRAP, "i386");
    }
}
