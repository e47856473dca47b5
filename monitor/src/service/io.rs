//! Reading and writing descriptors: `read`, `write` and their positioned and
//! vectored forms, `lseek`, `sendfile`, `copy_file_range`; and the
//! write limits (`[limits] bytes-written`, `file-size`) every call that
//! writes or resizes a file goes through.
//!
//! Data buffers are handed to the host kernel directly in the monitor's
//! view of program memory, after the range check: the monitor never
//! interprets those bytes.

use std::os::fd::RawFd;

use super::{host, Fail, Service, Sys, IOV_MAX, MAX_COPY};
use crate::memory::{GuestMemory, HostPieces, HostRange};

/// A checked data buffer: one host range (the fast path, as before) or the
/// host pieces of a range that straddles non-contiguous commits of the
/// reservation space or adjacent regions ([`GuestMemory::host_pieces`]).
pub(super) enum Buf {
    One(*mut u8),
    Many(HostPieces),
}

/// `[addr, addr+len)` checked as a buffer the call reads (`write` false)
/// or fills (`write` true), whatever its layout.
pub(super) fn buffer(mem: &GuestMemory, addr: u64, len: u64, write: bool) -> Result<Buf, Fail> {
    if len != 0 && mem.file_window().is_some_and(|w| addr >= w.start && addr < w.start + w.len) {
        // A buffer starting in the shared file mappings: only `read`,
        // `write`, `pread64` and `pwrite64` reach them ([`bounce`]);
        // elsewhere the program's own EFAULT (docs/processes.md, "Shared
        // file mappings").
        return Err(Fail::Errno(libc::EFAULT));
    }
    match mem.host_range(addr, len, write) {
        Ok(p) => Ok(Buf::One(p)),
        // The single-range error stands when the pieces fail too.
        Err(e) => mem.host_pieces(addr, len, write).map(Buf::Many).map_err(|_| Fail::from(e)),
    }
}

/// The first `len` bytes of `b` through host descriptor `fd`: `op` says
/// which way (and `off` the position for the positioned ones). One piece:
/// the plain call; several: its vectored form over the pieces (at most
/// `IOV_MAX` of them: beyond, a short transfer, which is legal).
pub(super) fn transfer(fd: RawFd, b: &Buf, len: usize, op: Vectored, off: i64) -> Sys {
    let r = match b {
        // SAFETY: [p, p+len) is checked program memory with the access
        // `op` needs (len <= the checked length).
        Buf::One(p) => unsafe {
            match op {
                Vectored::Readv => libc::read(fd, p.cast(), len),
                Vectored::Writev => libc::write(fd, p.cast(), len),
                Vectored::Preadv => libc::pread(fd, p.cast(), len, off),
                Vectored::Pwritev => libc::pwrite(fd, p.cast(), len, off),
            }
        },
        Buf::Many(pc) => {
            let iov = pc.iovecs(len, IOV_MAX as usize);
            let cnt = iov.len() as i32;
            // SAFETY: every iovec is a checked piece of program memory with
            // the access `op` needs; the array lives across the call.
            unsafe {
                match op {
                    Vectored::Readv => libc::readv(fd, iov.as_ptr(), cnt),
                    Vectored::Writev => libc::writev(fd, iov.as_ptr(), cnt),
                    Vectored::Preadv => libc::preadv(fd, iov.as_ptr(), cnt, off),
                    Vectored::Pwritev => libc::pwritev(fd, iov.as_ptr(), cnt, off),
                }
            }
        }
    };
    host(r as i64)
}

/// Whether `[addr, addr+len)` (not empty) lies wholly in the process's
/// shared file mappings' range.
fn in_files(mem: &GuestMemory, addr: u64, len: u64) -> bool {
    len != 0 && mem.file_window().is_some_and(|w| w.holds(addr, len))
}

/// Most bytes one call moves through [`bounce`] (a short count beyond, as
/// the kernel may give).
const BOUNCE_MAX: usize = 1 << 20;

/// A data buffer wholly in the process's shared file mappings (process
/// backend, `filemap.rs`): the monitor has no view of those pages (they are
/// the files', mapped in the child only), so the bytes go through a buffer
/// of the monitor's, copied from or to the child with `process_vm_readv`/
/// `process_vm_writev`: a page past a file's end (or not mapped) is a short
/// count or `EFAULT`, never a fault in the monitor. `None`: not such a
/// buffer (the caller checks it as usual).
fn bounce(fd: RawFd, mem: &GuestMemory, addr: u64, len: u64, op: Vectored, off: i64) -> Option<Sys> {
    let w = mem.file_window().filter(|w| len != 0 && w.holds(addr, len))?;
    let fills = matches!(op, Vectored::Readv | Vectored::Preadv);
    // Where the pages are, looked up right before the copy (after a read
    // that may block: a mapping unmapped meanwhile is EFAULT) and held
    // (the monitor's mapping, on KVM) until it is done.
    let look = || w.remote_pieces(addr, len, fills).ok_or(Fail::Errno(libc::EFAULT));
    if w.pid.load(std::sync::atomic::Ordering::SeqCst) <= 0 {
        return Some(Err(Fail::Errno(libc::EFAULT)));
    }
    let mut tmp = vec![0u8; (len as usize).min(BOUNCE_MAX)];
    // The first `n` bytes of the buffer's host pieces (one per mapping it
    // crosses), as iovecs.
    let remote = |pieces: &[(HostRange, u64)], mut n: usize| -> Vec<libc::iovec> {
        let mut v = Vec::with_capacity(pieces.len());
        for (h, len) in pieces {
            let k = (*len as usize).min(n);
            if k == 0 {
                break;
            }
            v.push(libc::iovec { iov_base: h.addr as *mut libc::c_void, iov_len: k });
            n -= k;
        }
        v
    };
    let local = |b: &mut [u8], n: usize| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: n };
    Some(match op {
        Vectored::Readv | Vectored::Preadv => {
            let r = match op {
                // SAFETY: `tmp` is ours, `tmp.len()` bytes.
                Vectored::Readv => unsafe { libc::read(fd, tmp.as_mut_ptr().cast(), tmp.len()) },
                // SAFETY: as above.
                _ => unsafe { libc::pread(fd, tmp.as_mut_ptr().cast(), tmp.len(), off) },
            };
            let Ok(n) = host(r as i64).map(|n| n as usize) else { return Some(host(r as i64)) };
            if n == 0 {
                return Some(Ok(0));
            }
            let (pid, to) = match look() {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            let (l, r) = (local(&mut tmp, n), remote(&to, n));
            // SAFETY: reads our buffer, writes the child's memory through
            // the kernel (checked there).
            let done = unsafe { libc::process_vm_writev(pid, &l, 1, r.as_ptr(), r.len() as u64, 0) };
            if done <= 0 {
                Err(Fail::Errno(libc::EFAULT))
            } else {
                Ok(done as i64)
            }
        }
        Vectored::Writev | Vectored::Pwritev => {
            let n = tmp.len();
            let (pid, from) = match look() {
                Ok(x) => x,
                Err(e) => return Some(Err(e)),
            };
            let (l, r) = (local(&mut tmp, n), remote(&from, n));
            // SAFETY: reads the child's memory through the kernel, writes
            // our buffer.
            let got = unsafe { libc::process_vm_readv(pid, &l, 1, r.as_ptr(), r.len() as u64, 0) };
            drop(from);
            if got <= 0 {
                return Some(Err(Fail::Errno(libc::EFAULT)));
            }
            let r = match op {
                // SAFETY: the first `got` bytes of `tmp` are filled.
                Vectored::Writev => unsafe { libc::write(fd, tmp.as_ptr().cast(), got as usize) },
                // SAFETY: as above.
                _ => unsafe { libc::pwrite(fd, tmp.as_ptr().cast(), got as usize, off) },
            };
            host(r as i64)
        }
    })
}

pub(super) fn read(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    read_on(s.vfd(a[0])?, mem, a)
}

/// `read` on host descriptor `fd` (the service lock may be dropped).
pub(super) fn read_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if let Some(r) = bounce(fd, mem, a[1], a[2], Vectored::Readv, 0) {
        return r;
    }
    let b = buffer(mem, a[1], a[2], true)?;
    transfer(fd, &b, a[2] as usize, Vectored::Readv, 0)
}

/// `write` on host descriptor `fd` without write limits (the service lock
/// may be dropped).
pub(super) fn write_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if let Some(r) = bounce(fd, mem, a[1], a[2], Vectored::Writev, 0) {
        return r;
    }
    let b = buffer(mem, a[1], a[2], false)?;
    transfer(fd, &b, a[2] as usize, Vectored::Writev, 0)
}

pub(super) fn write(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    if in_files(mem, a[1], a[2]) {
        let len = s.write_allowance("write", fd, a[2], None)?;
        let r = bounce(fd, mem, a[1], len, Vectored::Writev, 0).unwrap_or(Ok(0));
        return s.count_written(r);
    }
    let b = buffer(mem, a[1], a[2], false)?;
    let len = s.write_allowance("write", fd, a[2], None)?;
    let r = transfer(fd, &b, len as usize, Vectored::Writev, 0);
    s.count_written(r)
}

pub(super) fn pread64(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    if let Some(r) = bounce(fd, mem, a[1], a[2], Vectored::Preadv, a[3] as i64) {
        return r;
    }
    let b = buffer(mem, a[1], a[2], true)?;
    transfer(fd, &b, a[2] as usize, Vectored::Preadv, a[3] as i64)
}

pub(super) fn pwrite64(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    if in_files(mem, a[1], a[2]) {
        let len = s.write_allowance("pwrite64", fd, a[2], Some(a[3] as i64))?;
        let r = bounce(fd, mem, a[1], len, Vectored::Pwritev, a[3] as i64).unwrap_or(Ok(0));
        return s.count_written(r);
    }
    let b = buffer(mem, a[1], a[2], false)?;
    let len = s.write_allowance("pwrite64", fd, a[2], Some(a[3] as i64))?;
    let r = transfer(fd, &b, len as usize, Vectored::Pwritev, a[3] as i64);
    s.count_written(r)
}

/// The four vectored calls.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Vectored {
    Readv,
    Writev,
    Preadv,
    Pwritev,
}

pub(super) fn readv(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    vectored(s, mem, a, Vectored::Readv)
}

pub(super) fn writev(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    vectored(s, mem, a, Vectored::Writev)
}

pub(super) fn preadv(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    vectored(s, mem, a, Vectored::Preadv)
}

pub(super) fn pwritev(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    vectored(s, mem, a, Vectored::Pwritev)
}

/// `readv`/`writev` on host descriptor `fd` without write limits (the
/// service lock may be dropped).
pub(super) fn vectored_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6], op: Vectored) -> Sys {
    let write_to_guest = matches!(op, Vectored::Readv | Vectored::Preadv);
    let iov = iovecs(mem, a[1], a[2], write_to_guest)?;
    let cnt = iov.len() as i32;
    // SAFETY: every iovec points into checked program memory with the
    // needed permission; the array lives across the call.
    let r = unsafe {
        match op {
            Vectored::Readv => libc::readv(fd, iov.as_ptr(), cnt),
            Vectored::Writev => libc::writev(fd, iov.as_ptr(), cnt),
            Vectored::Preadv => libc::preadv(fd, iov.as_ptr(), cnt, a[3] as i64),
            Vectored::Pwritev => libc::pwritev(fd, iov.as_ptr(), cnt, a[3] as i64),
        }
    };
    host(r as i64)
}

fn vectored(s: &mut Service, mem: &GuestMemory, a: &[u64; 6], op: Vectored) -> Sys {
    let fd = s.vfd(a[0])?;
    let write_to_guest = matches!(op, Vectored::Readv | Vectored::Preadv);
    let mut iov = iovecs(mem, a[1], a[2], write_to_guest)?;
    if !write_to_guest {
        let total = iov.iter().map(|v| v.iov_len as u64).sum();
        let (name, at) =
            if op == Vectored::Writev { ("writev", None) } else { ("pwritev", Some(a[3] as i64)) };
        let len = s.write_allowance(name, fd, total, at)?;
        clip_iovecs(&mut iov, len);
    }
    let cnt = iov.len() as i32;
    // SAFETY: every iovec points into checked program memory
    // with the needed permission; the array lives across the call.
    let r = unsafe {
        match op {
            Vectored::Readv => libc::readv(fd, iov.as_ptr(), cnt),
            Vectored::Writev => libc::writev(fd, iov.as_ptr(), cnt),
            Vectored::Preadv => libc::preadv(fd, iov.as_ptr(), cnt, a[3] as i64),
            Vectored::Pwritev => libc::pwritev(fd, iov.as_ptr(), cnt, a[3] as i64),
        }
    };
    if write_to_guest {
        host(r as i64)
    } else {
        s.count_written(host(r as i64))
    }
}

pub(super) fn lseek(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    // SAFETY: lseek touches no memory.
    host(unsafe { libc::lseek(fd, a[1] as i64, a[2] as i32) })
}

pub(super) fn sendfile(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let out = s.vfd(a[0])?;
    let inp = s.vfd(a[1])?;
    let len = s.write_allowance("sendfile", out, a[3].min(MAX_COPY), None)?;
    if a[2] == 0 {
        // SAFETY: no memory argument.
        let r = host(unsafe { libc::sendfile(out, inp, std::ptr::null_mut(), len as usize) } as i64);
        return s.count_written(r);
    }
    let mut off = mem.read_u64(a[2])? as i64;
    // SAFETY: `off` is a local.
    let r = s.count_written(host(unsafe { libc::sendfile(out, inp, &mut off, len as usize) } as i64))?;
    mem.write_u64(a[2], off as u64)?;
    Ok(r)
}

pub(super) fn copy_file_range(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let inp = s.vfd(a[0])?;
    let out = s.vfd(a[2])?;
    let mut offs = [0i64; 2];
    for (i, p) in [a[1], a[3]].into_iter().enumerate() {
        if p != 0 {
            offs[i] = mem.read_u64(p)? as i64;
        }
    }
    let at = (a[3] != 0).then_some(offs[1]);
    let len = s.write_allowance("copy_file_range", out, a[4].min(MAX_COPY), at)?;
    let (o0, o1) = offs.split_at_mut(1);
    let pin = if a[1] != 0 { &mut o0[0] as *mut i64 } else { std::ptr::null_mut() };
    let pout = if a[3] != 0 { &mut o1[0] as *mut i64 } else { std::ptr::null_mut() };
    // SAFETY: offset pointers are locals or null.
    let r = host(unsafe { libc::copy_file_range(inp, pin, out, pout, len as usize, 0) } as i64);
    let r = s.count_written(r)?;
    for (i, p) in [a[1], a[3]].into_iter().enumerate() {
        if p != 0 {
            mem.write_u64(p, offs[i] as u64)?;
        }
    }
    Ok(r)
}

pub(super) fn iovecs(mem: &GuestMemory, addr: u64, cnt: u64, write: bool) -> Result<Vec<libc::iovec>, Fail> {
    if cnt > IOV_MAX {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let raw = mem.read(addr, (cnt * 16) as usize)?;
    let mut out = Vec::with_capacity(cnt as usize);
    let mut total: u64 = 0;
    for c in raw.chunks_exact(16) {
        let base = u64::from_le_bytes(c[..8].try_into().unwrap_or([0; 8]));
        let len = u64::from_le_bytes(c[8..].try_into().unwrap_or([0; 8]));
        total = total.checked_add(len).ok_or(Fail::Errno(libc::EINVAL))?;
        if total > isize::MAX as u64 {
            return Err(Fail::Errno(libc::EINVAL));
        }
        // Every iovec is checked whole; only the first IOV_MAX host pieces
        // are used (a short transfer, legal).
        match buffer(mem, base, len, write)? {
            Buf::One(p) => {
                if out.len() < IOV_MAX as usize {
                    out.push(libc::iovec { iov_base: p.cast(), iov_len: len as usize });
                }
            }
            Buf::Many(pc) => {
                let room = IOV_MAX as usize - out.len().min(IOV_MAX as usize);
                out.extend(pc.iovecs(usize::MAX, room));
            }
        }
    }
    Ok(out)
}

impl Service {
    /// How many of `len` bytes a write-family call `name` through host
    /// descriptor `fd` may write under the write limits (all of them when
    /// there are none). `offset`: the call's own file offset (`pwrite64`,
    /// `pwritev`, `copy_file_range` with one), else the descriptor's.
    pub(super) fn write_allowance(
        &self,
        name: &str,
        fd: RawFd,
        len: u64,
        offset: Option<i64>,
    ) -> Result<u64, Fail> {
        let Some(w) = &self.write_limits else { return Ok(len) };
        let at = if w.file_size().is_some() && len > 0 { write_offset(fd, offset) } else { None };
        w.allow(name, len, at).map_err(Fail::Limit)
    }

    /// Counts the bytes a write-family call wrote (under a write limit).
    pub(super) fn count_written(&mut self, r: Sys) -> Sys {
        if let (Some(w), Ok(n)) = (&mut self.write_limits, &r) {
            w.wrote(*n as u64);
        }
        r
    }

    /// A call that sets the size of the file behind host descriptor `fd`,
    /// or allocates its blocks, up to `end` bytes: a `file-size` hit past
    /// the limit when it is a regular file. A negative size is left to the
    /// kernel's EINVAL, another kind of file to its own error.
    pub(super) fn resize_allowed(&self, name: &str, fd: RawFd, end: u64) -> Result<(), Fail> {
        match &self.write_limits {
            Some(w) if w.file_size().is_some() && (end as i64) >= 0 && is_regular(fd) => {
                w.resize(name, end).map_err(Fail::Limit)
            }
            _ => Ok(()),
        }
    }
}

/// Where a write through host descriptor `fd` lands, for `[limits]
/// file-size`: `None` when `fd` is not a regular file (pipes, terminals,
/// sockets, devices have no size) or the offset is the kernel's EINVAL.
/// With `O_APPEND` the end of the file, whatever `offset` says (Linux
/// appends `pwrite` too); else `offset`, or the descriptor's position.
/// The program cannot move either between this and the write: only this
/// (single) worker thread acts on the descriptor.
fn write_offset(fd: RawFd, offset: Option<i64>) -> Option<u64> {
    let st = regular_stat(fd)?;
    // SAFETY: touches no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let at = if flags >= 0 && flags & libc::O_APPEND != 0 {
        st.st_size
    } else if let Some(off) = offset {
        off
    } else {
        // SAFETY: touches no memory.
        unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) }
    };
    u64::try_from(at).ok()
}

/// `fstat` of host descriptor `fd` when it is a regular file.
fn regular_stat(fd: RawFd) -> Option<libc::stat> {
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: writes `st`.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG;
    ok.then_some(st)
}

fn is_regular(fd: RawFd) -> bool {
    regular_stat(fd).is_some()
}

/// Shortens `iov` to `len` bytes in all (a clipped `writev`).
pub(super) fn clip_iovecs(iov: &mut Vec<libc::iovec>, len: u64) {
    let mut left = len as usize;
    for (i, v) in iov.iter_mut().enumerate() {
        if v.iov_len >= left {
            v.iov_len = left;
            iov.truncate(i + 1);
            return;
        }
        left -= v.iov_len;
    }
}
