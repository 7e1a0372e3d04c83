//! Reading and writing a stopped tracee's memory: `process_vm_readv`/`writev` (allowed by
//! Docker's default seccomp profile on kernels ≥ 4.8), falling back to `/proc/PID/mem`.

use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;

use super::io_errno;

/// The longest path a tracee may pass (Linux's `PATH_MAX`).
pub const PATH_MAX: usize = 4096;

/// A plain C struct (`stat`, `utsname`, `siginfo_t`: no pointers to follow, no padding a reader
/// would trust) as its bytes, to write into a tracee or read fields at offsets.
pub fn bytes_of<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: `value` is a live `T` of `size_of::<T>()` bytes, borrowed for the slice's life.
    unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// Reads `buf.len()` bytes at `addr`.
pub fn read(pid: Pid, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    if buf.is_empty() {
        return Ok(());
    }
    let len = buf.len();
    let remote = [RemoteIoVec { base: addr as usize, len }];
    match process_vm_readv(pid, &mut [IoSliceMut::new(buf)], &remote) {
        Ok(n) if n == len => Ok(()),
        Ok(_) => Err(Errno::EFAULT),
        Err(Errno::ENOSYS | Errno::EPERM) => proc_mem(pid)?.read_exact_at(buf, addr).map_err(io_errno),
        Err(e) => Err(e),
    }
}

/// Writes `data` at `addr`.
pub fn write(pid: Pid, addr: u64, data: &[u8]) -> Result<(), Errno> {
    if data.is_empty() {
        return Ok(());
    }
    let remote = [RemoteIoVec { base: addr as usize, len: data.len() }];
    match process_vm_writev(pid, &[IoSlice::new(data)], &remote) {
        Ok(n) if n == data.len() => Ok(()),
        Ok(_) => Err(Errno::EFAULT),
        Err(Errno::ENOSYS | Errno::EPERM) => {
            let f =
                std::fs::OpenOptions::new().write(true).open(format!("/proc/{pid}/mem")).map_err(io_errno)?;
            f.write_all_at(data, addr).map_err(io_errno)
        }
        Err(e) => Err(e),
    }
}

/// Reads a NUL-terminated string at `addr` (without the NUL), at most [`PATH_MAX`] bytes.
/// Reads page by page, so a string ending just before an unmapped page is read whole.
pub fn read_cstr(pid: Pid, addr: u64) -> Result<Vec<u8>, Errno> {
    if addr == 0 {
        return Err(Errno::EFAULT);
    }
    let mut out = Vec::new();
    let mut at = addr;
    loop {
        let to_page_end = 4096 - (at % 4096) as usize;
        let mut chunk = vec![0u8; to_page_end.min(PATH_MAX + 1 - out.len())];
        read(pid, at, &mut chunk)?;
        if let Some(i) = chunk.iter().position(|b| *b == 0) {
            out.extend_from_slice(&chunk[..i]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk);
        if out.len() > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        at += chunk.len() as u64;
    }
}

/// Reads a NULL-terminated array of pointers (an `argv`), at most `max` of them.
pub fn read_ptrs(pid: Pid, addr: u64, max: usize) -> Result<Vec<u64>, Errno> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    loop {
        let mut b = [0u8; 8];
        read(pid, addr + 8 * out.len() as u64, &mut b)?;
        let p = u64::from_ne_bytes(b);
        if p == 0 {
            return Ok(out);
        }
        out.push(p);
        if out.len() > max {
            return Err(Errno::E2BIG);
        }
    }
}

fn proc_mem(pid: Pid) -> Result<std::fs::File, Errno> {
    std::fs::File::open(format!("/proc/{pid}/mem")).map_err(io_errno)
}

/// Space below a tracee's stack pointer for the strings a rewritten call needs: it grows down
/// from below the red zone (128 bytes on x86-64), 16-byte aligned. The memory is the tracee's
/// own stack, unused while it is stopped in a system call; it is only read by that call.
pub struct Scratch {
    pid: Pid,
    next: u64,
}

impl Scratch {
    /// Scratch space below `sp`.
    pub fn new(pid: Pid, sp: u64) -> Scratch {
        Scratch { pid, next: sp.saturating_sub(128 + 256) & !15 }
    }

    /// Copies `data` into the tracee; returns its address.
    pub fn put(&mut self, data: &[u8]) -> Result<u64, Errno> {
        let at = self.next.checked_sub(data.len() as u64).ok_or(Errno::EFAULT)? & !15;
        write(self.pid, at, data)?;
        self.next = at;
        Ok(at)
    }

    /// Copies a string and its NUL; returns its address.
    pub fn put_cstr(&mut self, s: &[u8]) -> Result<u64, Errno> {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s);
        v.push(0);
        self.put(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_its_own_memory() {
        // process_vm_readv on ourselves needs no ptrace: the same calls a tracer makes.
        let me = nix::unistd::getpid();
        let s = b"/etc/passwd\0rest".to_vec();
        assert_eq!(read_cstr(me, s.as_ptr() as u64).unwrap(), b"/etc/passwd");
        let mut target = vec![0u8; 8];
        write(me, target.as_mut_ptr() as u64, b"abc").unwrap();
        assert_eq!(&target[..3], b"abc");
        let a = b"a\0".to_vec();
        let ptrs: Vec<u64> = vec![a.as_ptr() as u64, a.as_ptr() as u64, 0];
        assert_eq!(read_ptrs(me, ptrs.as_ptr() as u64, 10).unwrap().len(), 2);
        assert_eq!(read_cstr(me, 0), Err(Errno::EFAULT));
    }
}
