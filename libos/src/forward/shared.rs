//! Writable shared file mappings (`MAP_SHARED` with `PROT_WRITE`) by
//! copy-in and write-back (docs/syscalls.md, "Shared mappings").
//!
//! The pages of such a mapping are arena pages, filled with `pread64` over
//! the ring like a private file mapping's. What the program writes there
//! reaches the file when it calls `msync` (`MS_SYNC` or `MS_ASYNC`), when it
//! unmaps the pages (`munmap`, a `MAP_FIXED` mapping over them), when
//! `madvise(MADV_DONTNEED)` drops them, and when it ends with `exit_group`:
//! each written back with `pwrite64` over the ring (never past the file's
//! end, which a mapping does not move). The libos keeps a duplicate of the
//! program's descriptor for each mapping (`F_DUPFD_CLOEXEC`, numbered from
//! [`DUP_FLOOR`] up so the numbers the program gets from `open` stay the
//! native ones), closed with the mapping's last page.
//!
//! This is the copy path: KVM's for every shared file mapping (the guest's
//! memory is the memory slots set up before boot), and the process
//! backend's for `MAP_FIXED` ones only. Other shared file mappings on the
//! process backend are the file's own pages (`filemap.rs`).
//!
//! The table is small and fixed ([`MAX_SHARED`] mappings; `ENOMEM` past
//! it, as Linux answers past `vm.max_map_count`).

use super::errno;
use super::nr;
use super::thread::Lock;

/// Most writable shared file mappings at once.
pub(super) const MAX_SHARED: usize = 64;
/// Duplicates are numbered from here (or from half the program's descriptor
/// limit, when that is lower).
const DUP_FLOOR: u64 = 900;

const F_GETFL: u64 = 3;
const F_DUPFD_CLOEXEC: u64 = 1030;
const O_ACCMODE: i64 = 3;
const O_RDWR: i64 = 2;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const RLIMIT_NOFILE: u64 = 7;
const EIO: i64 = 5;

/// One mapping: `[addr, addr+len)` holds the file's bytes from `off`.
#[derive(Clone, Copy, Debug)]
struct Shared {
    addr: u64,
    len: u64,
    fd: u64,
    off: u64,
}

const FREE: Shared = Shared { addr: 0, len: 0, fd: 0, off: 0 };

static TABLE: Lock<[Shared; MAX_SHARED]> = Lock::new([FREE; MAX_SHARED]);

/// Checks that `fd` may be mapped shared and writable, as Linux does
/// (`EACCES` unless it is open read-write; `ENODEV`
/// unless it is a regular file, memfds included), and returns a duplicate
/// the mapping keeps.
pub(super) fn open(fd: u64) -> Result<u64, i64> {
    let fl = super::forward(nr::fcntl, &[fd, F_GETFL, 0, 0, 0, 0], 0);
    if fl < 0 {
        return Err(fl);
    }
    if fl & O_ACCMODE != O_RDWR {
        return Err(-errno::EACCES);
    }
    let mut st = [0u64; 18];
    let r = super::forward(nr::fstat, &[fd, st.as_mut_ptr() as u64, 0, 0, 0, 0], 0);
    if r < 0 {
        return Err(r);
    }
    // st_mode: the u32 at byte 24.
    if (st[3] as u32) & S_IFMT != S_IFREG {
        return Err(-errno::ENODEV);
    }
    let mut rl = [0u64; 2];
    let floor = if super::forward(nr::getrlimit, &[RLIMIT_NOFILE, rl.as_mut_ptr() as u64, 0, 0, 0, 0], 0) == 0
    {
        DUP_FLOOR.min(rl[0] / 2)
    } else {
        DUP_FLOOR
    };
    let dup = super::forward(nr::fcntl, &[fd, F_DUPFD_CLOEXEC, floor, 0, 0, 0], 0);
    if dup < 0 {
        return Err(if dup == -errno::EMFILE || dup == -errno::EINVAL { -errno::ENOMEM } else { dup });
    }
    Ok(dup as u64)
}

/// Records a mapping made with [`open`]'s duplicate; `false` (the caller
/// undoes the mapping) when the table is full.
pub(super) fn record(addr: u64, len: u64, fd: u64, off: u64) -> bool {
    let mut t = TABLE.lock();
    match t.iter_mut().find(|s| s.len == 0) {
        Some(slot) => {
            *slot = Shared { addr, len, fd, off };
            true
        }
        None => false,
    }
}

/// Closes a duplicate no mapping uses.
pub(super) fn close(fd: u64) {
    super::forward(nr::close, &[fd, 0, 0, 0, 0, 0], 0);
}

/// Whether any writable shared file mapping overlaps `[addr, addr+len)`.
pub(super) fn overlaps(addr: u64, len: u64) -> bool {
    let end = addr.saturating_add(len);
    TABLE.lock().iter().any(|s| s.len != 0 && s.addr < end && addr < s.addr + s.len)
}

/// Writes the pages of `[addr, addr+len)` that belong to writable shared
/// file mappings back to their files; the first error.
pub(super) fn write_back(addr: u64, len: u64) -> i64 {
    let end = addr.saturating_add(len);
    let copy = *TABLE.lock();
    let mut ret = 0;
    for s in copy.iter().filter(|s| s.len != 0 && s.addr < end && addr < s.addr + s.len) {
        let from = s.addr.max(addr);
        let to = (s.addr + s.len).min(end);
        let r = write_range(s.fd, from, to - from, s.off + (from - s.addr));
        if r < 0 && ret == 0 {
            ret = r;
        }
    }
    ret
}

/// Writes `len` bytes at `addr` to `fd` at `off`, no further than the
/// file's end.
fn write_range(fd: u64, addr: u64, len: u64, off: u64) -> i64 {
    let mut st = [0u64; 18];
    let r = super::forward(nr::fstat, &[fd, st.as_mut_ptr() as u64, 0, 0, 0, 0], 0);
    if r < 0 {
        return r;
    }
    // st_size: the i64 at byte 48.
    let size = st[6];
    if off >= size {
        return 0;
    }
    let len = len.min(size - off);
    let mut done = 0;
    while done < len {
        let n = super::forward(nr::pwrite64, &[fd, addr + done, len - done, off + done, 0, 0], 0);
        if n <= 0 {
            return if n == 0 { -EIO } else { n };
        }
        done += n as u64;
    }
    0
}

/// Forgets the mappings' pages in `[addr, addr+len)` (after
/// [`write_back`]; they are about to be unmapped or replaced): a mapping
/// cut in two keeps one duplicate for both halves; one that loses its last
/// page closes its duplicate if no other mapping uses it. `false`: a cut
/// needs a table slot there is none of (nothing changed).
pub(super) fn forget(addr: u64, len: u64) -> bool {
    let end = addr.saturating_add(len);
    let mut closing = [0u64; MAX_SHARED];
    let mut n = 0;
    {
        let mut t = TABLE.lock();
        let splits = t.iter().filter(|s| s.len != 0 && s.addr < addr && end < s.addr + s.len).count();
        if splits > t.iter().filter(|s| s.len == 0).count() {
            return false;
        }
        for i in 0..MAX_SHARED {
            let s = t[i];
            if s.len == 0 || !(s.addr < end && addr < s.addr + s.len) {
                continue;
            }
            let s_end = s.addr + s.len;
            let head = Shared { len: addr.saturating_sub(s.addr).min(s.len), ..s };
            let tail_start = end.max(s.addr);
            let tail =
                Shared { addr: tail_start, len: s_end - tail_start, off: s.off + (tail_start - s.addr), ..s };
            match (head.len != 0, end < s_end) {
                (true, true) => {
                    t[i] = head;
                    if let Some(free) = t.iter_mut().find(|x| x.len == 0) {
                        *free = tail;
                    }
                }
                (true, false) => t[i] = head,
                (false, true) => t[i] = tail,
                (false, false) => {
                    t[i] = FREE;
                    if !t.iter().any(|x| x.len != 0 && x.fd == s.fd) {
                        closing[n] = s.fd;
                        n += 1;
                    }
                }
            }
        }
    }
    for &fd in &closing[..n] {
        close(fd);
    }
    true
}

/// Reads the files' bytes again into the mappings' pages of
/// `[addr, addr+len)` (dropped by `MADV_DONTNEED`) with `fill(fd, start,
/// len, off)`.
pub(super) fn refill(addr: u64, len: u64, fill: fn(u64, u64, u64, u64) -> i64) {
    let end = addr.saturating_add(len);
    let copy = *TABLE.lock();
    for s in copy.iter().filter(|s| s.len != 0 && s.addr < end && addr < s.addr + s.len) {
        let from = s.addr.max(addr);
        let to = (s.addr + s.len).min(end);
        fill(s.fd, from, to - from, s.off + (from - s.addr));
    }
}

/// The program ends (`exit_group`): every mapping's pages reach its file.
pub(super) fn write_back_all() {
    write_back(0, u64::MAX);
}
