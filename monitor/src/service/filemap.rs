//! Shared file mappings that are the files' own pages (process backend;
//! docs/processes.md, "Shared file mappings").
//!
//! The libos forwards a shared file mapping the program asks for as
//! `mmap(0, len, prot, MAP_SHARED, fd, off)`. The monitor checks it as Linux
//! does (`PROT_WRITE` only on a descriptor open read-write, `PROT_READ`
//! only on a readable one, `EACCES`; then a regular file or memfd, `ENODEV`
//! otherwise; never `PROT_EXEC`), picks an address in the
//! process's file-mapping range ([`FileWindow`], first fit), records the
//! mapping and sends the file on the process's channel: one
//! [`FileMapGrant`] with the host descriptor in `SCM_RIGHTS`. The libos
//! receives it (its descriptor lands below `RESERVE_FD`), maps it natively
//! there — the one form the seccomp filter allows for such descriptors —
//! and closes it. Every process mapping the file (in the tree or native)
//! then shares its pages: atomics and futexes work across them.
//!
//! The descriptor the child holds is the same open file description as the
//! program's own, so the kernel itself refuses a writable native mapping of
//! a read-only one; the filter allows nothing but `mmap` (in the range,
//! shared, fixed, not executable) and `close` on it: no `read`, `write`,
//! `ftruncate`, `fchmod` reach the host through it.
//!
//! Bounds: [`MAX_MAPS`] mappings a process and the range's length (the
//! memory bound, at most 64 GiB) in bytes: past either `ENOMEM`. At most
//! one grant is in flight on a channel (a program that never takes one
//! gets `ENOMEM` for the next; nothing piles up in the monitor's name).
//!
//! A forked child's host process starts with none of them: its service
//! holds its parent's table ([`FileMaps`] is cloned with the service) and
//! its libos asks for each again (`fd` = [`FILEMAP_RESEND`]). `execve`
//! drops them all; so does the end of the process.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use cabin_abi::boot::{FileMapGrant, FILEMAP_RESEND};

use super::{Fail, Service, Sys};
use crate::memory::{FileWindow, GuestMemory};

/// Most shared file mappings one process has at once (`ENOMEM` past them,
/// as past Linux's `vm.max_map_count`).
pub const MAX_MAPS: usize = 256;
const PAGE: u64 = 4096;

/// One mapping: `[addr, addr+len)` shows `file` from `off`.
#[derive(Debug, Clone)]
struct Map {
    addr: u64,
    len: u64,
    prot: u64,
    off: u64,
    file: Arc<OwnedFd>,
}

/// A process's shared file mappings, sorted by address.
#[derive(Debug, Clone, Default)]
pub struct FileMaps {
    maps: Vec<Map>,
}

impl FileMaps {
    /// First fit of `len` bytes in `[start, start+wlen)`.
    fn place(&self, start: u64, wlen: u64, len: u64) -> Option<u64> {
        let mut at = start;
        for m in &self.maps {
            if m.addr.checked_sub(at).is_some_and(|gap| gap >= len) {
                return Some(at);
            }
            at = at.max(m.addr + m.len);
        }
        (start + wlen).checked_sub(at).filter(|&room| room >= len).map(|_| at)
    }

    /// Records a new mapping of `len` bytes; its address.
    fn add(&mut self, w: (u64, u64), len: u64, prot: u64, off: u64, file: Arc<OwnedFd>) -> Option<u64> {
        if self.maps.len() >= MAX_MAPS {
            return None;
        }
        let addr = self.place(w.0, w.1, len)?;
        let i = self.maps.partition_point(|m| m.addr < addr);
        self.maps.insert(i, Map { addr, len, prot, off, file });
        Some(addr)
    }

    /// Forgets `[addr, addr+len)` (page aligned): mappings wholly inside go,
    /// one cut keeps the parts outside (a cut in the middle needs one more
    /// entry: `false`, nothing changed, when there is no room).
    fn remove(&mut self, addr: u64, len: u64) -> bool {
        let end = addr.saturating_add(len);
        let splits = self.maps.iter().filter(|m| m.addr < addr && end < m.addr + m.len).count();
        if self.maps.len() + splits > MAX_MAPS {
            return false;
        }
        let mut out = Vec::with_capacity(self.maps.len() + splits);
        for m in self.maps.drain(..) {
            let m_end = m.addr + m.len;
            if m_end <= addr || end <= m.addr {
                out.push(m);
                continue;
            }
            if m.addr < addr {
                out.push(Map { len: addr - m.addr, ..m.clone() });
            }
            if end < m_end {
                out.push(Map { addr: end, len: m_end - end, off: m.off + (end - m.addr), ..m });
            }
        }
        self.maps = out;
        true
    }

    /// The first mapping at or above `addr`.
    fn next(&self, addr: u64) -> Option<&Map> {
        self.maps.iter().find(|m| m.addr >= addr)
    }

    /// Every mapping dropped (`execve`).
    pub fn clear(&mut self) {
        self.maps.clear();
    }

    /// How many mappings there are.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.maps.len()
    }

    /// Whether there are none.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }
}

/// Sends `m` on the channel: the grant, the descriptor in `SCM_RIGHTS`.
/// `false` when it cannot go now (a grant not yet taken, a full or closed
/// channel).
fn send(w: &FileWindow, m: &Map) -> bool {
    let grant = FileMapGrant { addr: m.addr, len: m.len, prot: m.prot, off: m.off };
    // SAFETY: FileMapGrant is plain `repr(C)` data of four u64s, no padding.
    let bytes =
        unsafe { std::slice::from_raw_parts((&raw const grant).cast::<u8>(), size_of::<FileMapGrant>()) };
    send_fd(w, bytes, m.file.as_raw_fd())
}

/// Sends `bytes` with descriptor `fd` in `SCM_RIGHTS` on the child's
/// channel; `false` when a message is still in flight (at most one at a
/// time: nothing piles up in the monitor's name) or the send failed.
pub(super) fn send_fd(w: &FileWindow, bytes: &[u8], fd: std::os::fd::RawFd) -> bool {
    let Some(ch) = w.channel.as_ref().map(AsRawFd::as_raw_fd) else { return false };
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int.
    if unsafe { libc::ioctl(ch, libc::TIOCOUTQ, &mut queued) } != 0 || queued != 0 {
        return false;
    }
    let mut iov = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
    // CMSG_SPACE(sizeof(int)): a header and one descriptor, 8-aligned.
    let mut control = [0u64; 3];
    // SAFETY: plain data; a zeroed msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: `msg` points at `control`, which has room for one header and
    // one descriptor (CMSG_FIRSTHDR is not null).
    unsafe {
        let h = libc::CMSG_FIRSTHDR(&msg);
        (*h).cmsg_level = libc::SOL_SOCKET;
        (*h).cmsg_type = libc::SCM_RIGHTS;
        (*h).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize;
        libc::CMSG_DATA(h).cast::<libc::c_int>().write_unaligned(fd);
    }
    // SAFETY: every pointer in `msg` is valid for the call (the kernel only
    // reads `bytes`).
    let n = unsafe { libc::sendmsg(ch, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    n == bytes.len() as isize
}

pub(super) fn in_window(mem: &GuestMemory, addr: u64) -> bool {
    mem.file_window().is_some_and(|w| addr >= w.start && addr - w.start < w.len)
}

/// `mmap(0, len, prot, MAP_SHARED, fd, off)` from the libos (or, with
/// `MAP_FIXED` and `fd` [`FILEMAP_RESEND`], the resend of the first mapping
/// at or above `addr`). `ENOSYS`: no file-mapping range (the libos copies).
pub(super) fn mmap(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let Some(w) = mem.file_window() else { return Err(Fail::Errno(libc::ENOSYS)) };
    let flags = a[3] & 0xffff_ffff;
    let fixed = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
    if flags == fixed && a[4] & 0xffff_ffff == FILEMAP_RESEND {
        let m = s.filemaps.next(a[0]).ok_or(Fail::Errno(libc::ENOENT))?.clone();
        return if send(w, &m) { Ok(m.addr as i64) } else { Err(Fail::Errno(libc::ENOMEM)) };
    }
    let (len, prot, vfd, off) = (a[1], a[2], a[4], a[5]);
    if flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE | libc::MAP_ANONYMOUS) as u64 != 0
        || flags & libc::MAP_SHARED as u64 == 0
    {
        return Err(Fail::Errno(libc::EINVAL));
    }
    if prot & libc::PROT_EXEC as u64 != 0 {
        return Err(Fail::Errno(libc::EACCES));
    }
    if prot & !3 != 0 || len == 0 || !off.is_multiple_of(PAGE) {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let len = len.checked_next_multiple_of(PAGE).ok_or(Fail::Errno(libc::ENOMEM))?;
    if off.checked_add(len).is_none() {
        return Err(Fail::Errno(libc::EOVERFLOW));
    }
    let file = s.fds.hold(vfd).ok_or(Fail::Errno(libc::EBADF))?;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL reads the descriptor's flags, no memory.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 || fl & libc::O_PATH != 0 {
        return Err(Fail::Errno(libc::EBADF));
    }
    // Linux's order: the descriptor's access mode first, then whether the
    // object can be mapped at all.
    let mode = fl & libc::O_ACCMODE;
    let writable = prot & libc::PROT_WRITE as u64 != 0;
    if mode == libc::O_WRONLY || writable && mode != libc::O_RDWR {
        return Err(Fail::Errno(libc::EACCES));
    }
    let st = super::fs::fstat(fd).map_err(|_| Fail::Errno(libc::EBADF))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Fail::Errno(libc::ENODEV));
    }
    if len > w.len {
        return Err(Fail::Errno(libc::ENOMEM));
    }
    let addr = s.filemaps.add((w.start, w.len), len, prot, off, file).ok_or(Fail::Errno(libc::ENOMEM))?;
    if let Some(mapper) = &w.mapper {
        // KVM: the monitor maps the file itself and gives the guest its
        // pages (a memory slot); nothing is sent.
        if let Err(e) = mapper.map(addr, len, prot, mode == libc::O_RDWR, off, fd) {
            s.filemaps.remove(addr, len);
            return Err(Fail::Errno(e));
        }
        return Ok(addr as i64);
    }
    let m = s.filemaps.next(addr).cloned();
    if !m.as_ref().is_some_and(|m| send(w, m)) {
        s.filemaps.remove(addr, len);
        return Err(Fail::Errno(libc::ENOMEM));
    }
    Ok(addr as i64)
}

/// `munmap(addr, len)` of the file-mapping range from the libos: those
/// pages are no longer the process's (the libos unmaps them natively; on
/// KVM the mapper takes them out of the guest).
pub(super) fn munmap(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if !a[0].is_multiple_of(PAGE) {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let len = a[1].checked_next_multiple_of(PAGE).filter(|&l| l != 0).ok_or(Fail::Errno(libc::EINVAL))?;
    if !s.filemaps.remove(a[0], len) {
        return Err(Fail::Errno(libc::ENOMEM));
    }
    match mem.file_window().and_then(|w| w.mapper.as_ref()) {
        Some(m) => m.unmap(a[0], len).map(|()| 0).map_err(Fail::Errno),
        None => Ok(0),
    }
}

/// `msync(addr, len, flags)` forwarded by the libos on KVM (the process
/// backend's libos makes it natively): the host `msync` of the monitor's
/// mappings (`ENOMEM` over a hole, as Linux).
pub(super) fn msync(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let Some(m) = mem.file_window().and_then(|w| w.mapper.as_ref()) else {
        return Err(Fail::Errno(libc::ENOSYS));
    };
    if !a[0].is_multiple_of(PAGE) {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let len = a[1].checked_next_multiple_of(PAGE).ok_or(Fail::Errno(libc::ENOMEM))?;
    m.sync(a[0], len, a[2] as i32).map(|()| 0).map_err(Fail::Errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<OwnedFd> {
        Arc::new(std::fs::File::open("/dev/null").map(OwnedFd::from).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn mappings_are_placed_first_fit_cut_and_bounded() {
        let mut t = FileMaps::default();
        let w = (1 << 40, 16 * PAGE);
        let a = t.add(w, 4 * PAGE, 3, 0, file());
        let b = t.add(w, 4 * PAGE, 1, 0, file());
        assert_eq!((a, b), (Some(w.0), Some(w.0 + 4 * PAGE)));
        assert_eq!(t.add(w, 9 * PAGE, 3, 0, file()), None, "past the range");
        assert!(t.remove(w.0 + PAGE, PAGE), "a cut in the middle");
        assert_eq!(t.len(), 3);
        let tail = t.next(w.0 + PAGE).map(|m| (m.addr, m.len, m.off));
        assert_eq!(tail, Some((w.0 + 2 * PAGE, 2 * PAGE, 2 * PAGE)), "the tail keeps its file offset");
        assert_eq!(t.add(w, PAGE, 3, 0, file()), Some(w.0 + PAGE), "the hole is reused");
        assert!(t.remove(w.0, 16 * PAGE));
        assert!(t.is_empty());
        for i in 0..MAX_MAPS as u64 {
            assert_eq!(t.add((w.0, 1 << 30), PAGE, 1, 0, file()), Some(w.0 + i * PAGE));
        }
        assert_eq!(t.add((w.0, 1 << 30), PAGE, 1, 0, file()), None, "past MAX_MAPS");
    }
}
