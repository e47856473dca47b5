//! Anonymous memory served inside the domain, from the arena the monitor
//! mapped up front (no system call, no monitor round trip).
//!
//! - `brk` moves a break inside its own reserved range.
//! - `mmap` of anonymous memory (and private read-only file mappings, whose
//!   bytes are read over the ring) comes from a page allocator: a bump
//!   pointer plus a sorted free list of extents that coalesces on free.
//!   Memory handed out is always zero, as the kernel's would be.
//! - `mprotect` cannot change the arena's hardware protection (the domain
//!   cannot issue `mprotect`): it checks the request and succeeds without
//!   effect, except that any request for `PROT_EXEC` is refused with
//!   `EACCES`, so no new code ever appears.
//!
//! The allocator logic ([`Arena`]) is plain data so host tests drive it.

use super::errno;
use super::Global;

const PAGE: u64 = 4096;
const PROT_EXEC: u64 = 4;
const MAP_SHARED: u64 = 0x01;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
const MADV_DONTNEED: u64 = 4;
const PROT_WRITE: u64 = 2;

/// Most free extents remembered; beyond that, freed memory leaks.
const MAX_FREE: usize = 256;

/// A page allocator over `[start, end)`.
#[derive(Debug)]
pub struct Arena {
    start: u64,
    end: u64,
    /// Next never-allocated page; everything above is still zero.
    bump: u64,
    /// Free extents below `bump`, sorted by address, non-adjacent.
    free: [(u64, u64); MAX_FREE],
    nfree: usize,
}

fn page_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE - 1)? & !(PAGE - 1))
}

impl Arena {
    /// An empty arena (no memory).
    pub const EMPTY: Arena = Arena { start: 0, end: 0, bump: 0, free: [(0, 0); MAX_FREE], nfree: 0 };

    /// An arena over `[start, start + len)`; both page aligned.
    pub fn new(start: u64, len: u64) -> Option<Arena> {
        if !start.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return None;
        }
        let end = start.checked_add(len)?;
        Some(Arena { start, end, bump: start, free: [(0, 0); MAX_FREE], nfree: 0 })
    }

    /// Whether `[addr, addr+len)` lies inside the arena.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        match addr.checked_add(len) {
            Some(e) => addr >= self.start && e <= self.end,
            None => false,
        }
    }

    /// Allocates `len` bytes (page multiple). Returns the address and
    /// whether the memory may be dirty (reused) and must be zeroed.
    pub fn alloc(&mut self, len: u64) -> Option<(u64, bool)> {
        if len == 0 || !len.is_multiple_of(PAGE) {
            return None;
        }
        for i in 0..self.nfree {
            let (a, l) = self.free[i];
            if l >= len {
                if l == len {
                    self.remove(i);
                } else {
                    self.free[i] = (a + len, l - len);
                }
                return Some((a, true));
            }
        }
        let a = self.bump;
        let e = a.checked_add(len)?;
        if e > self.end {
            return None;
        }
        self.bump = e;
        Some((a, false))
    }

    fn remove(&mut self, i: usize) {
        self.free.copy_within(i + 1..self.nfree, i);
        self.nfree -= 1;
    }

    /// Returns `[addr, addr+len)` (page multiples, inside the arena) to the
    /// allocator. Parts that were not allocated are tolerated.
    pub fn free(&mut self, addr: u64, len: u64) {
        if len == 0 || !self.contains(addr, len) {
            return;
        }
        // Cut the range out of any overlapping free extent first, so that
        // the list never holds overlapping extents.
        self.take(addr, len);
        let end = addr + len;
        if addr >= self.bump {
            return;
        }
        let end = end.min(self.bump);
        // Insert sorted.
        let mut i = 0;
        while i < self.nfree && self.free[i].0 < addr {
            i += 1;
        }
        if self.nfree == MAX_FREE {
            return; // leak rather than corrupt
        }
        self.free.copy_within(i..self.nfree, i + 1);
        self.free[i] = (addr, end - addr);
        self.nfree += 1;
        // Coalesce with the next and the previous extent.
        if i + 1 < self.nfree && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.remove(i);
            i -= 1;
        }
        // An extent ending at the bump pointer gives its pages back to it.
        if self.free[i].0 + self.free[i].1 == self.bump {
            self.bump = self.free[i].0;
            self.remove(i);
        }
    }

    /// Removes `[addr, addr+len)` from the free list (it becomes allocated),
    /// splitting extents as needed. Moves the bump pointer past the range.
    pub fn take(&mut self, addr: u64, len: u64) {
        let end = addr.saturating_add(len);
        let mut i = 0;
        while i < self.nfree {
            let (a, l) = self.free[i];
            let e = a + l;
            if e <= addr || a >= end {
                i += 1;
                continue;
            }
            // Overlap: keep the parts outside [addr, end).
            let left = (a < addr).then(|| (a, addr - a));
            let right = (e > end).then(|| (end, e - end));
            match (left, right) {
                (Some(lf), Some(rt)) => {
                    self.free[i] = lf;
                    if self.nfree < MAX_FREE {
                        self.free.copy_within(i + 1..self.nfree, i + 2);
                        self.free[i + 1] = rt;
                        self.nfree += 1;
                    }
                    i += 2;
                }
                (Some(x), None) | (None, Some(x)) => {
                    self.free[i] = x;
                    i += 1;
                }
                (None, None) => self.remove(i),
            }
        }
    }

    /// Marks `[addr, addr+len)` allocated for `MAP_FIXED` and reports
    /// whether it may hold old data.
    pub fn take_fixed(&mut self, addr: u64, len: u64) -> bool {
        self.take(addr, len);
        if addr + len > self.bump {
            let dirty = addr < self.bump;
            // Pages between the old bump and addr become free extents.
            let old = self.bump;
            self.bump = addr + len;
            if addr > old {
                self.free(old, addr - old);
            }
            return dirty;
        }
        true
    }

    /// Tries to grow the allocation `[addr, addr+old)` in place to `new`.
    pub fn grow_in_place(&mut self, addr: u64, old: u64, new: u64) -> bool {
        let Some(end) = addr.checked_add(old) else { return false };
        let extra = new - old;
        if end == self.bump {
            if let Some(e) = self.bump.checked_add(extra) {
                if e <= self.end {
                    self.bump = e;
                    return true;
                }
            }
            return false;
        }
        for i in 0..self.nfree {
            let (a, l) = self.free[i];
            if a == end && l >= extra {
                if l == extra {
                    self.remove(i);
                } else {
                    self.free[i] = (a + extra, l - extra);
                }
                return true;
            }
        }
        false
    }
}

struct Mem {
    arena: Arena,
    brk_start: u64,
    brk_end: u64,
    brk_cur: u64,
}

static MEM: Global<Mem> = Global::new(Mem { arena: Arena::EMPTY, brk_start: 0, brk_end: 0, brk_cur: 0 });

/// Sets up the arena and the brk range. `false` if they are malformed.
pub(super) fn init(arena: u64, arena_len: u64, brk: u64, brk_len: u64) -> bool {
    let Some(a) = Arena::new(arena, arena_len) else { return false };
    let Some(brk_end) = brk.checked_add(brk_len) else { return false };
    // SAFETY: start-up, single thread.
    let m = unsafe { MEM.get() };
    m.arena = a;
    m.brk_start = brk;
    m.brk_end = brk_end;
    m.brk_cur = brk;
    true
}

fn zero(addr: u64, len: u64) {
    // SAFETY: callers pass ranges inside the arena or brk range, which the
    // monitor mapped read-write for the domain's whole life.
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, len as usize) }
}

/// `brk(addr)`: returns the new break, or the old one on failure.
pub(super) fn brk(addr: u64) -> u64 {
    // SAFETY: single thread, short-lived.
    let m = unsafe { MEM.get() };
    if addr < m.brk_start || addr > m.brk_end {
        return m.brk_cur;
    }
    if addr < m.brk_cur {
        // Shrinking: clear what is given back so a later grow sees zeros.
        zero(addr, m.brk_cur - addr);
    }
    m.brk_cur = addr;
    addr
}

/// `mmap`.
pub(super) fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, off: u64) -> i64 {
    if prot & PROT_EXEC != 0 {
        return -errno::EACCES;
    }
    let Some(len) = page_up(len).filter(|&l| l != 0) else { return -errno::EINVAL };
    let anonymous = flags & MAP_ANONYMOUS != 0;
    if !anonymous && flags & MAP_SHARED != 0 && prot & PROT_WRITE != 0 {
        return -errno::ENODEV; // a writable shared file mapping cannot be emulated
    }
    if !anonymous && !off.is_multiple_of(PAGE) {
        return -errno::EINVAL;
    }
    // SAFETY: single thread; the reference ends before the ring is used.
    let m = unsafe { MEM.get() };
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    let start = if fixed {
        if !addr.is_multiple_of(PAGE) || !m.arena.contains(addr, len) {
            return -errno::ENOMEM;
        }
        if m.arena.take_fixed(addr, len) {
            zero(addr, len);
        }
        addr
    } else {
        match m.arena.alloc(len) {
            Some((a, dirty)) => {
                if dirty {
                    zero(a, len);
                }
                a
            }
            None => return -errno::ENOMEM,
        }
    };
    if !anonymous {
        // Private file mapping: read the bytes over the ring.
        let mut done = 0u64;
        while done < len {
            let args = [fd, start + done, len - done, off.wrapping_add(done), 0, 0];
            let n = super::forward(super::nr::PREAD64, &args, 0);
            if n < 0 {
                // SAFETY: single thread; the earlier reference is dead.
                unsafe { MEM.get() }.arena.free(start, len);
                return n;
            }
            if n == 0 {
                break; // past EOF: the rest stays zero
            }
            done += n as u64;
        }
    }
    start as i64
}

/// `munmap`.
pub(super) fn munmap(addr: u64, len: u64) -> i64 {
    let Some(len) = page_up(len).filter(|&l| l != 0) else { return -errno::EINVAL };
    if !addr.is_multiple_of(PAGE) {
        return -errno::EINVAL;
    }
    // SAFETY: single thread, short-lived.
    let m = unsafe { MEM.get() };
    if m.arena.contains(addr, len) {
        m.arena.free(addr, len);
        0
    } else {
        // Not arena memory (image, stack): Linux would unmap it; refusing
        // keeps the domain's layout fixed. Programs rarely notice.
        -errno::EINVAL
    }
}

/// `mremap`.
pub(super) fn mremap(old: u64, old_len: u64, new_len: u64, flags: u64, _new_addr: u64) -> i64 {
    let (Some(old_len), Some(new_len)) = (page_up(old_len), page_up(new_len)) else {
        return -errno::EINVAL;
    };
    if !old.is_multiple_of(PAGE) || new_len == 0 || flags & MREMAP_FIXED != 0 {
        return -errno::EINVAL;
    }
    // SAFETY: single thread; references end before the copy below.
    let m = unsafe { MEM.get() };
    if !m.arena.contains(old, old_len) {
        return -errno::EFAULT;
    }
    if new_len <= old_len {
        m.arena.free(old + new_len, old_len - new_len);
        return old as i64;
    }
    if m.arena.grow_in_place(old, old_len, new_len) {
        zero(old + old_len, new_len - old_len);
        return old as i64;
    }
    if flags & MREMAP_MAYMOVE == 0 {
        return -errno::ENOMEM;
    }
    let Some((new, dirty)) = m.arena.alloc(new_len) else { return -errno::ENOMEM };
    // SAFETY: both ranges are allocated arena memory and do not overlap
    // (the new one was free).
    unsafe { core::ptr::copy_nonoverlapping(old as *const u8, new as *mut u8, old_len as usize) };
    if dirty {
        zero(new + old_len, new_len - old_len);
    }
    m.arena.free(old, old_len);
    new as i64
}

/// `mprotect`: refuses `PROT_EXEC`, otherwise succeeds without effect.
pub(super) fn mprotect(addr: u64, _len: u64, prot: u64) -> i64 {
    if prot & PROT_EXEC != 0 {
        return -errno::EACCES;
    }
    if !addr.is_multiple_of(PAGE) {
        return -errno::EINVAL;
    }
    0
}

/// `madvise`: `MADV_DONTNEED` zeroes arena memory (as the kernel would for
/// private anonymous memory); every other advice is accepted and ignored.
pub(super) fn madvise(addr: u64, len: u64, advice: u64) -> i64 {
    if !addr.is_multiple_of(PAGE) {
        return -errno::EINVAL;
    }
    if advice == MADV_DONTNEED {
        let Some(len) = page_up(len) else { return -errno::EINVAL };
        // SAFETY: single thread, short-lived.
        let m = unsafe { MEM.get() };
        if m.arena.contains(addr, len) {
            zero(addr, len);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = 0x10_0000;

    #[test]
    fn bump_then_reuse_and_coalesce() {
        let mut a = Arena::new(B, 16 * PAGE).unwrap();
        let (x, d) = a.alloc(2 * PAGE).unwrap();
        assert_eq!((x, d), (B, false));
        let (y, _) = a.alloc(PAGE).unwrap();
        let (z, _) = a.alloc(PAGE).unwrap();
        assert_eq!((y, z), (B + 2 * PAGE, B + 3 * PAGE));
        a.free(x, 2 * PAGE);
        a.free(y, PAGE);
        assert_eq!(a.nfree, 1);
        assert_eq!(a.free[0], (B, 3 * PAGE));
        // Freeing the last allocation returns everything to the bump pointer.
        a.free(z, PAGE);
        assert_eq!(a.nfree, 0);
        assert_eq!(a.bump, B);
        // Reuse below the bump pointer is reported dirty.
        a.alloc(4 * PAGE).unwrap();
        a.free(B, PAGE);
        assert_eq!(a.alloc(PAGE), Some((B, true)));
    }

    #[test]
    fn exhaustion_and_bad_sizes() {
        let mut a = Arena::new(B, 4 * PAGE).unwrap();
        assert!(a.alloc(0).is_none());
        assert!(a.alloc(100).is_none());
        assert!(a.alloc(5 * PAGE).is_none());
        assert!(a.alloc(4 * PAGE).is_some());
        assert!(a.alloc(PAGE).is_none());
        assert!(!a.contains(u64::MAX - 10, 100));
    }

    #[test]
    fn fixed_and_grow() {
        let mut a = Arena::new(B, 32 * PAGE).unwrap();
        assert!(!a.take_fixed(B + 4 * PAGE, PAGE));
        assert_eq!(a.bump, B + 5 * PAGE);
        // The skipped pages are free.
        assert_eq!(a.alloc(4 * PAGE), Some((B, true)));
        let (x, _) = a.alloc(PAGE).unwrap();
        assert!(a.grow_in_place(x, PAGE, 3 * PAGE));
        assert_eq!(a.bump, x + 3 * PAGE);
        // Partial free in the middle splits correctly.
        a.free(B + PAGE, PAGE);
        a.take(B + PAGE, PAGE);
        assert_eq!(a.nfree, 0);
    }
}
