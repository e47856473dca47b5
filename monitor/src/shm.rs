//! The tree's shared window and System V shared memory (issue 14,
//! docs/processes.md, "Shared memory"): one memfd per run, the same
//! address range in every process of the tree ([`SharedWindow`]), and the
//! segments `shmget` carves out of it ([`Shm`]).
//!
//! The window is bounded when it is made (its size sealed: it can neither
//! grow nor shrink, so the monitor's own mapping of it never faults) and
//! lives as long as the run's last domain holds it. A segment is a page
//! range of the window; every process sees it at `window start + its
//! offset`, so `shmat` has one address per segment. Nothing else of the
//! host is reached: a key names only the tree's segments.
//!
//! [`Shm`] is pure bookkeeping on copied values, under the tree's lock:
//! every input is program-chosen, nothing here panics on one, and the
//! table is bounded ([`MAX_SEGMENTS`] segments, [`MAX_ATTACHES`]
//! attachments a process, the window's bytes).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::config::RunError;

/// Most segments the tree may hold (`shmget` past it: `ENOSPC`, as
/// Linux's `SHMMNI`).
pub const MAX_SEGMENTS: usize = 128;
/// Most attachments one process may hold (`shmat` past it: `ENOMEM`).
pub const MAX_ATTACHES: usize = 64;
/// The largest window (its address space in every domain).
pub const MAX_WINDOW: u64 = 64 << 30;
/// `sizeof(struct shmid64_ds)` on x86-64.
pub const SHMID_DS: usize = 112;

const PAGE: u64 = 4096;
const IPC_PRIVATE: i32 = 0;
const IPC_CREAT: u32 = 0o1000;
const IPC_EXCL: u32 = 0o2000;
/// `shmat` flags.
pub const SHM_RDONLY: u32 = 0o10000;
/// See [`SHM_RDONLY`].
pub const SHM_RND: u32 = 0o20000;
/// See [`SHM_RDONLY`].
pub const SHM_REMAP: u32 = 0o40000;
/// See [`SHM_RDONLY`].
pub const SHM_EXEC: u32 = 0o100000;
/// The mode bit `IPC_STAT` shows on a removed segment still attached.
const SHM_DEST: u32 = 0o1000;
/// `shmctl` commands.
pub const IPC_RMID: i32 = 0;
/// See [`IPC_RMID`].
pub const IPC_SET: i32 = 1;
/// See [`IPC_RMID`].
pub const IPC_STAT: i32 = 2;

fn neg(e: i32) -> i64 {
    -i64::from(e)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The tree's shared memory: one memfd, sealed at its size, mapped once in
/// the monitor; [`SharedWindow::start`] is its address in every domain.
#[derive(Debug)]
pub struct SharedWindow {
    memfd: OwnedFd,
    host: *mut u8,
    len: u64,
    start: u64,
}

// SAFETY: `host` is a shared mapping owned by the window for its whole
// life; all access goes through `GuestMemory`'s volatile copies.
unsafe impl Send for SharedWindow {}
// SAFETY: as for Send.
unsafe impl Sync for SharedWindow {}

impl SharedWindow {
    /// A window of `len` bytes (rounded up to pages, at most [`MAX_WINDOW`])
    /// at domain address `start`.
    pub fn new(start: u64, len: u64) -> Result<SharedWindow, RunError> {
        let len = len.clamp(PAGE, MAX_WINDOW).div_ceil(PAGE) * PAGE;
        // SAFETY: memfd_create reads the NUL-terminated name.
        let fd = unsafe {
            libc::memfd_create(c"cabin-shared".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if fd < 0 {
            return Err(RunError::host("memfd_create of the shared window"));
        }
        // SAFETY: a fresh descriptor we own.
        let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: touches no memory.
        if unsafe { libc::ftruncate(memfd.as_raw_fd(), len as i64) } != 0 {
            return Err(RunError::host("ftruncate of the shared window"));
        }
        // Its size never changes: the monitor's mapping of it can never
        // fault, whatever a process does with its descriptor.
        let seals = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        // SAFETY: touches no memory.
        if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(RunError::host("sealing the shared window"));
        }
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a new shared mapping of our memfd, placed by the kernel.
        let host = unsafe {
            libc::mmap(std::ptr::null_mut(), len as usize, rw, libc::MAP_SHARED, memfd.as_raw_fd(), 0)
        };
        if host == libc::MAP_FAILED {
            return Err(RunError::host("mmap of the shared window"));
        }
        Ok(SharedWindow { memfd, host: host.cast(), len, start })
    }

    /// Its address in every domain.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never empty (at least a page); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The monitor's mapping of it (`len` bytes, alive as long as `self`).
    pub fn host(&self) -> *mut u8 {
        self.host
    }

    /// The memfd (a backend hands it to its processes).
    pub fn fd(&self) -> i32 {
        self.memfd.as_raw_fd()
    }

    /// Bytes of it the host holds now (pages written and not given back):
    /// counted against the tree's memory bound.
    pub fn allocated(&self) -> u64 {
        use std::os::fd::AsFd;
        crate::treemem::fd_allocated(self.memfd.as_fd())
    }

    /// Gives `[off, off+len)` back to the host (zeroed: a later segment
    /// there starts empty).
    pub fn release(&self, off: u64, len: u64) {
        if off.checked_add(len).is_none_or(|e| e > self.len) {
            return;
        }
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: touches no memory of ours; the range is inside the memfd.
        let r = unsafe { libc::fallocate(self.memfd.as_raw_fd(), mode, off as i64, len as i64) };
        if r != 0 {
            // Punching needs no memory; if it ever fails, zero by hand.
            // SAFETY: [off, off+len) lies in our mapping (checked above).
            unsafe { std::ptr::write_bytes(self.host.add(off as usize), 0, len as usize) };
        }
    }
}

impl Drop for SharedWindow {
    fn drop(&mut self) {
        // SAFETY: our own mapping, `len` bytes; nothing uses it any more
        // (every GuestMemory that pointed into it held an Arc of us).
        unsafe { libc::munmap(self.host.cast(), self.len as usize) };
    }
}

#[derive(Debug, Clone)]
struct Segment {
    key: i32,
    uid: u32,
    gid: u32,
    mode: u32,
    seq: u16,
    /// The size asked for (`shm_segsz`).
    size: u64,
    /// Offset in the window (page aligned).
    off: u64,
    /// Bytes of the window it holds (`size` rounded up to pages).
    alloc: u64,
    nattch: u64,
    removed: bool,
    cpid: u32,
    lpid: u32,
    atime: i64,
    dtime: i64,
    ctime: i64,
}

/// What an attachment is: the segment's window offset, its bytes, and
/// whether it is read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    /// Offset in the window.
    pub off: u64,
    /// Bytes mapped (whole pages).
    pub len: u64,
    /// `SHM_RDONLY`.
    pub read_only: bool,
}

/// The tree's shared-memory segments.
#[derive(Debug)]
pub struct Shm {
    window_len: u64,
    segs: BTreeMap<i32, Segment>,
    /// Free ranges of the window: offset → length, merged.
    free: BTreeMap<u64, u64>,
    /// Bytes held by segments.
    used: u64,
    seq: u16,
    /// Each process's attachments: (window offset, segment id).
    attached: BTreeMap<u32, Vec<(u64, i32)>>,
}

impl Shm {
    /// A table over a window of `window_len` bytes (0: no window).
    pub fn new(window_len: u64) -> Shm {
        let mut free = BTreeMap::new();
        if window_len >= PAGE {
            free.insert(0, window_len / PAGE * PAGE);
        }
        Shm { window_len, segs: BTreeMap::new(), free, used: 0, seq: 0, attached: BTreeMap::new() }
    }

    /// First fit.
    fn allocate(&mut self, len: u64) -> Option<u64> {
        let (&off, &flen) = self.free.iter().find(|(_, &l)| l >= len)?;
        self.free.remove(&off);
        if flen > len {
            self.free.insert(off + len, flen - len);
        }
        Some(off)
    }

    fn give_back(&mut self, off: u64, len: u64) {
        let mut start = off;
        let mut end = off + len;
        if let Some((&p, &pl)) = self.free.range(..off).next_back() {
            if p + pl == off {
                self.free.remove(&p);
                start = p;
            }
        }
        if let Some(&nl) = self.free.get(&end) {
            self.free.remove(&end);
            end += nl;
        }
        self.free.insert(start, end - start);
    }

    /// Frees segment `id` if it is removed and unattached: the window
    /// range to give back to the host.
    fn reap(&mut self, id: i32) -> Option<(u64, u64)> {
        let s = self.segs.get(&id)?;
        if !(s.removed && s.nattch == 0) {
            return None;
        }
        let (off, alloc) = (s.off, s.alloc);
        self.segs.remove(&id);
        self.used -= alloc;
        self.give_back(off, alloc);
        Some((off, alloc))
    }

    /// `shmget(key, size, flags)` by process `pid` of user `uid`/`gid`.
    pub fn shmget(&mut self, key: i32, size: u64, flags: u32, pid: u32, uid: u32, gid: u32) -> i64 {
        if key != IPC_PRIVATE {
            if let Some((&id, s)) = self.segs.iter().find(|(_, s)| s.key == key && !s.removed) {
                if flags & IPC_CREAT != 0 && flags & IPC_EXCL != 0 {
                    return neg(libc::EEXIST);
                }
                if size > s.size {
                    return neg(libc::EINVAL);
                }
                return i64::from(id);
            }
            if flags & IPC_CREAT == 0 {
                return neg(libc::ENOENT);
            }
        }
        if size == 0 || size > self.window_len {
            return neg(libc::EINVAL);
        }
        let alloc = size.div_ceil(PAGE) * PAGE;
        if self.segs.len() >= MAX_SEGMENTS || self.used + alloc > self.window_len {
            return neg(libc::ENOSPC);
        }
        let used: std::collections::BTreeSet<i32> = self.segs.keys().map(|id| id & 0x7fff).collect();
        let Some(slot) = (0..MAX_SEGMENTS as i32).find(|s| !used.contains(s)) else {
            return neg(libc::ENOSPC);
        };
        let Some(off) = self.allocate(alloc) else { return neg(libc::ENOMEM) };
        self.seq = self.seq.wrapping_add(1) & 0x7fff;
        let id = (i32::from(self.seq) << 15) | slot;
        self.used += alloc;
        self.segs.insert(
            id,
            Segment {
                key,
                uid,
                gid,
                mode: flags & 0o777,
                seq: self.seq,
                size,
                off,
                alloc,
                nattch: 0,
                removed: false,
                cpid: pid,
                lpid: 0,
                atime: 0,
                dtime: 0,
                ctime: now(),
            },
        );
        i64::from(id)
    }

    /// `shmat(id, addr, flags)` by `pid`, the window at `start`: the
    /// attachment (mapped by the caller's side at `start + off`). `addr`
    /// must be NULL or that very address (`SHM_RND`: rounded down to a
    /// page first); any other is `EINVAL` (the segment has one address in
    /// the tree). `SHM_EXEC` is `EACCES` (no code is ever made).
    pub fn shmat(&mut self, pid: u32, id: i32, addr: u64, flags: u32, start: u64) -> Result<Attached, i32> {
        let s = self.segs.get_mut(&id).filter(|_| id >= 0).ok_or(libc::EINVAL)?;
        if flags & SHM_EXEC != 0 {
            return Err(libc::EACCES);
        }
        let want = if flags & SHM_RND != 0 { addr & !(PAGE - 1) } else { addr };
        if addr != 0 && want != start + s.off {
            return Err(libc::EINVAL);
        }
        let mine = self.attached.entry(pid).or_default();
        if mine.len() >= MAX_ATTACHES {
            return Err(libc::ENOMEM);
        }
        mine.push((s.off, id));
        s.nattch += 1;
        s.lpid = pid;
        s.atime = now();
        Ok(Attached { off: s.off, len: s.alloc, read_only: flags & SHM_RDONLY != 0 })
    }

    /// `shmdt` of window offset `off` by `pid`: the bytes it unmaps, and
    /// the window range to give back if that freed a removed segment.
    pub fn shmdt(&mut self, pid: u32, off: u64) -> Result<(u64, Option<(u64, u64)>), i32> {
        let mine = self.attached.get_mut(&pid).ok_or(libc::EINVAL)?;
        let i = mine.iter().position(|&(o, _)| o == off).ok_or(libc::EINVAL)?;
        let (_, id) = mine.remove(i);
        if mine.is_empty() {
            self.attached.remove(&pid);
        }
        let Some(s) = self.segs.get_mut(&id) else { return Err(libc::EINVAL) };
        s.nattch = s.nattch.saturating_sub(1);
        s.lpid = pid;
        s.dtime = now();
        let len = s.alloc;
        Ok((len, self.reap(id)))
    }

    /// `shmctl(id, cmd, _)`: the answer, the bytes `IPC_STAT` writes, and
    /// the window range to give back if `IPC_RMID` freed it; `set`: the
    /// `shmid64_ds` `IPC_SET` read (its first 48 bytes).
    pub fn shmctl(&mut self, id: i32, cmd: i32, set: &[u8]) -> (i64, Vec<u8>, Option<(u64, u64)>) {
        let none = Vec::new();
        let Some(s) = self.segs.get_mut(&id).filter(|_| id >= 0) else {
            return (neg(libc::EINVAL), none, None);
        };
        match cmd {
            IPC_RMID => {
                s.removed = true;
                // Its key is free for a new segment at once (Linux sets it
                // to IPC_PRIVATE).
                s.key = IPC_PRIVATE;
                s.ctime = now();
                (0, none, self.reap(id))
            }
            IPC_STAT => {
                let mut b = vec![0u8; SHMID_DS];
                let mode = s.mode | if s.removed { SHM_DEST } else { 0 };
                b[0..4].copy_from_slice(&s.key.to_le_bytes());
                b[4..8].copy_from_slice(&s.uid.to_le_bytes());
                b[8..12].copy_from_slice(&s.gid.to_le_bytes());
                b[12..16].copy_from_slice(&s.uid.to_le_bytes());
                b[16..20].copy_from_slice(&s.gid.to_le_bytes());
                b[20..24].copy_from_slice(&mode.to_le_bytes());
                b[24..26].copy_from_slice(&s.seq.to_le_bytes());
                b[48..56].copy_from_slice(&s.size.to_le_bytes());
                b[56..64].copy_from_slice(&s.atime.to_le_bytes());
                b[64..72].copy_from_slice(&s.dtime.to_le_bytes());
                b[72..80].copy_from_slice(&s.ctime.to_le_bytes());
                b[80..84].copy_from_slice(&s.cpid.to_le_bytes());
                b[84..88].copy_from_slice(&s.lpid.to_le_bytes());
                b[88..96].copy_from_slice(&s.nattch.to_le_bytes());
                (0, b, None)
            }
            IPC_SET => {
                if set.len() < 48 {
                    return (neg(libc::EFAULT), none, None);
                }
                let word = |at: usize| u32::from_le_bytes([set[at], set[at + 1], set[at + 2], set[at + 3]]);
                s.uid = word(4);
                s.gid = word(8);
                s.mode = word(20) & 0o777;
                s.ctime = now();
                (0, none, None)
            }
            _ => (neg(libc::EINVAL), none, None),
        }
    }

    /// A fork: `child` holds every attachment `parent` holds.
    pub fn forked(&mut self, parent: u32, child: u32) {
        let Some(mine) = self.attached.get(&parent).cloned() else { return };
        for &(_, id) in &mine {
            if let Some(s) = self.segs.get_mut(&id) {
                s.nattch += 1;
            }
        }
        self.attached.insert(child, mine);
    }

    /// Process `pid` ended or exec'd: its attachments are dropped. The
    /// window ranges that freed.
    pub fn detach_all(&mut self, pid: u32) -> Vec<(u64, u64)> {
        let Some(mine) = self.attached.remove(&pid) else { return Vec::new() };
        let mut freed = Vec::new();
        for (_, id) in mine {
            if let Some(s) = self.segs.get_mut(&id) {
                s.nattch = s.nattch.saturating_sub(1);
                s.lpid = pid;
                s.dtime = now();
            }
            freed.extend(self.reap(id));
        }
        freed
    }

    /// Segments held and window bytes they hold (tests, `--stats`).
    pub fn usage(&self) -> (usize, u64) {
        (self.segs.len(), self.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 0x4000_0000_0000;

    #[test]
    fn segments_are_window_ranges_freed_once_removed_and_unattached() {
        let mut t = Shm::new(16 * PAGE);
        let a = t.shmget(7, 5000, IPC_CREAT | 0o600, 1, 0, 0);
        assert!(a >= 0);
        assert_eq!(t.shmget(7, 100, 0, 1, 0, 0), a, "found by key");
        assert_eq!(t.shmget(7, 9000, 0, 1, 0, 0), neg(libc::EINVAL), "bigger than it is");
        assert_eq!(t.shmget(7, 1, IPC_CREAT | IPC_EXCL, 1, 0, 0), neg(libc::EEXIST));
        assert_eq!(t.shmget(8, 1, 0, 1, 0, 0), neg(libc::ENOENT));
        assert_eq!(t.shmget(0, 0, 0, 1, 0, 0), neg(libc::EINVAL));
        assert_eq!(t.shmget(0, 17 * PAGE, 0, 1, 0, 0), neg(libc::EINVAL), "past the window");
        let a = a as i32;
        let at = t.shmat(1, a, 0, 0, W).expect("attach");
        assert_eq!(at, Attached { off: 0, len: 2 * PAGE, read_only: false });
        assert_eq!(t.shmat(1, a, W + 4096, 0, W), Err(libc::EINVAL), "another address");
        assert_eq!(t.shmat(1, a, W + 5, SHM_RND, W), Ok(at), "rounded to its address");
        assert_eq!(t.shmat(1, a, 0, SHM_EXEC, W), Err(libc::EACCES));
        t.forked(1, 2);
        let stat = |t: &mut Shm| {
            let (r, b, _) = t.shmctl(a, IPC_STAT, &[]);
            assert_eq!(r, 0);
            u64::from_le_bytes(b[88..96].try_into().unwrap())
        };
        assert_eq!(stat(&mut t), 4, "two in the parent, two inherited");
        assert_eq!(t.shmctl(a, IPC_RMID, &[]).2, None, "still attached");
        assert!(t.shmget(7, 1, 0, 1, 0, 0) < 0, "its key is gone");
        assert_eq!(t.detach_all(2), vec![], "the child's end");
        assert_eq!(t.shmdt(1, 0).map(|r| r.0), Ok(2 * PAGE));
        assert_eq!(t.shmdt(1, 0), Ok((2 * PAGE, Some((0, 2 * PAGE)))), "the last detach frees it");
        assert_eq!(t.shmdt(1, 0), Err(libc::EINVAL));
        assert_eq!(t.shmctl(a, IPC_STAT, &[]).0, neg(libc::EINVAL));
        assert_eq!(t.usage(), (0, 0));
    }

    #[test]
    fn the_window_and_the_counts_are_bounded() {
        let mut t = Shm::new(4 * PAGE);
        assert!(t.shmget(0, 3 * PAGE, 0, 1, 0, 0) >= 0);
        assert_eq!(t.shmget(0, 2 * PAGE, 0, 1, 0, 0), neg(libc::ENOSPC), "the window is full");
        let mut t = Shm::new(1 << 30);
        for _ in 0..MAX_SEGMENTS {
            assert!(t.shmget(0, 1, 0, 1, 0, 0) >= 0);
        }
        assert_eq!(t.shmget(0, 1, 0, 1, 0, 0), neg(libc::ENOSPC), "too many segments");
        let id = *t.segs.keys().next().unwrap();
        for _ in 0..MAX_ATTACHES {
            assert!(t.shmat(3, id, 0, 0, W).is_ok());
        }
        assert_eq!(t.shmat(3, id, 0, 0, W), Err(libc::ENOMEM), "too many attachments");
        assert_eq!(t.shmat(3, -1, 0, 0, W), Err(libc::EINVAL));
        assert_eq!(t.shmctl(id, 99, &[]).0, neg(libc::EINVAL));
        assert_eq!(t.shmctl(id, IPC_SET, &[0; 4]).0, neg(libc::EFAULT));
    }

    #[test]
    fn freed_ranges_merge_and_are_reused() {
        let mut t = Shm::new(4 * PAGE);
        let ids: Vec<i32> = (0..4).map(|_| t.shmget(0, PAGE, 0, 1, 0, 0) as i32).collect();
        for &id in &ids[1..3] {
            t.shmctl(id, IPC_RMID, &[]);
        }
        let big = t.shmget(0, 2 * PAGE, 0, 1, 0, 0) as i32;
        assert!(big >= 0);
        assert_eq!(t.shmat(1, big, 0, 0, W).map(|a| a.off), Ok(PAGE), "the two freed pages, merged");
    }
}
