//! Anonymous memory served inside the domain, from the arena the monitor
//! mapped up front (no system call, no monitor round trip).
//!
//! - `brk` moves a break inside its own reserved range.
//! - `mmap` of anonymous memory (and private read-only file mappings, whose
//!   bytes are read over the ring) comes from a page allocator: a bump
//!   pointer plus a sorted free list of extents that coalesces on free.
//!   Memory handed out is always zero, as the kernel's would be.
//! - Protections are real (`mprotect`, and the `prot` of `mmap`) inside the
//!   ranges the monitor names protectable in the boot page (arena, `brk`
//!   range, stack, the image's RELRO pages): the libos asks the backend
//!   (process: a native `mprotect`, which the seccomp filter allows only
//!   there and only without `PROT_EXEC`; KVM: the
//!   `cabin_abi::hypercall::DOORBELL_PROTECT` exit, after which the
//!   monitor edits the page tables). [`Prots`] remembers the pages that are
//!   not read-write, so that memory given back is made read-write again
//!   before the allocator zeroes or reuses it. `PROT_EXEC` is refused with
//!   `EACCES` everywhere (no new code ever appears); a request to make
//!   anything outside the protectable ranges writable (code, boot page,
//!   ring) is refused with `EACCES`; dropping permissions there succeeds
//!   without effect, as before.
//! - With a memory limit (`BOOT_FLAG_MEMORY_LIMIT`), a request the `brk`
//!   range and the arena cannot satisfy does not return `ENOMEM`: the
//!   program asked for more than the policy allows, so the libos stops it
//!   (exit status 137), recording `ABORT_MEMORY`, the bytes asked for and
//!   the bytes in use in the boot page for the monitor's message. So that
//!   the whole limit serves `mmap` as well as `brk`, the part of the `brk`
//!   range above the highest break is handed to `mmap` once the arena runs
//!   out (the break cannot grow after that). A `brk` that passes its range
//!   only fails (as Linux's does) while `mmap` could still serve the same
//!   growth, since allocators then fall back to `mmap`.
//!
//! The allocator logic ([`Arena`], [`Mem`]) is plain data so host tests
//! drive it; only the wrappers at the bottom touch the global state, the
//! boot page and the ring.

use core::ptr::addr_of_mut;

use cabin_abi::boot::ABORT_MEMORY;

use super::errno;
use super::shared;
use super::thread::Lock;

const PAGE: u64 = 4096;
const PROT_EXEC: u64 = 4;
const MAP_SHARED: u64 = 0x01;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;
const MADV_DONTNEED: u64 = 4;
const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
/// `PROT_*` bits the libos accepts (besides `PROT_EXEC`, refused).
const PROT_RW: u64 = PROT_READ | PROT_WRITE;

/// Most free extents remembered; beyond that, freed memory leaks.
const MAX_FREE: usize = 256;

/// A page allocator over `[start, end)`.
#[derive(Debug)]
pub struct Arena {
    start: u64,
    end: u64,
    /// Next page not allocated now; everything above `high` is still zero.
    bump: u64,
    /// Highest value `bump` ever had: pages below it may have been touched.
    high: u64,
    /// Free extents below `bump`, sorted by address, non-adjacent.
    free: Extents<(), MAX_FREE>,
}

fn page_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE - 1)? & !(PAGE - 1))
}

impl Arena {
    /// An empty arena (no memory).
    pub const EMPTY: Arena = Arena { start: 0, end: 0, bump: 0, high: 0, free: Extents::empty(()) };

    /// An arena over `[start, start + len)`; both page aligned.
    pub fn new(start: u64, len: u64) -> Option<Arena> {
        if !start.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return None;
        }
        let end = start.checked_add(len)?;
        Some(Arena { start, end, bump: start, high: start, free: Extents::empty(()) })
    }

    /// Bytes of the arena ever handed out (its high-water mark): what the
    /// program may have touched, and so what the host may have committed.
    pub fn used(&self) -> u64 {
        self.high - self.start
    }

    /// Whether [`Arena::alloc`] of `len` bytes would succeed now.
    pub fn can_alloc(&self, len: u64) -> bool {
        if len == 0 || !len.is_multiple_of(PAGE) {
            return false;
        }
        self.free.extents().iter().any(|&(_, l, ())| l >= len)
            || self.bump.checked_add(len).is_some_and(|e| e <= self.end)
    }

    fn set_bump(&mut self, bump: u64) {
        self.bump = bump;
        self.high = self.high.max(bump);
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
        if let Some(i) = self.free.extents().iter().position(|&(_, l, ())| l >= len) {
            let (a, _, ()) = self.free.extents()[i];
            self.free.take_front(i, len);
            return Some((a, true));
        }
        let a = self.bump;
        let e = a.checked_add(len)?;
        if e > self.end {
            return None;
        }
        // Pages below the high-water mark were handed out before (and given
        // back to the bump pointer by `free`): they may hold old data.
        let dirty = a < self.high;
        self.set_bump(e);
        Some((a, dirty))
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
        if addr >= self.bump {
            return;
        }
        let end = (addr + len).min(self.bump);
        // A full list leaks the range rather than corrupt anything.
        if !self.free.insert(addr, end - addr, ()) {
            return;
        }
        // An extent ending at the bump pointer (merged with its
        // neighbours) gives its pages back to it.
        if let Some(&(a, l, ())) = self.free.extents().last() {
            if a + l == self.bump {
                self.bump = a;
                self.free.cut(a, l);
            }
        }
    }

    /// Removes `[addr, addr+len)` from the free list (it becomes allocated),
    /// splitting extents as needed.
    pub fn take(&mut self, addr: u64, len: u64) {
        self.free.cut(addr, len);
    }

    /// Marks `[addr, addr+len)` allocated for `MAP_FIXED` and reports
    /// whether it may hold old data.
    pub fn take_fixed(&mut self, addr: u64, len: u64) -> bool {
        self.take(addr, len);
        if addr + len > self.bump {
            let dirty = addr < self.high;
            // Pages between the old bump and addr become free extents.
            let old = self.bump;
            self.set_bump(addr + len);
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
                    self.set_bump(e);
                    return true;
                }
            }
            return false;
        }
        match self.free.extents().iter().position(|&(a, l, ())| a == end && l >= extra) {
            Some(i) => {
                self.free.take_front(i, extra);
                true
            }
            None => false,
        }
    }
}

/// What an extent of [`Extents`] carries: `at(off)` is its value `off`
/// bytes into the extent (a protection is the same everywhere, an address
/// moves with the offset), so that cutting and merging work for both.
pub trait ExtentValue: Copy + PartialEq {
    /// The value `off` bytes into an extent that starts with `self`.
    fn at(self, off: u64) -> Self;
}

/// A protection (`PROT_*` bits): the same over the whole extent.
impl ExtentValue for u8 {
    fn at(self, _off: u64) -> u8 {
        self
    }
}

/// Nothing (the arena's free extents): every extent continues its neighbour.
impl ExtentValue for () {
    fn at(self, _off: u64) {}
}

/// An address (of the arena pages behind a commit): moves with the offset.
impl ExtentValue for u64 {
    fn at(self, off: u64) -> u64 {
        self + off
    }
}

/// Sorted, non-overlapping extents `(start, len, value)` of at most `N`,
/// neighbours merged when one continues the other (same start + len, and
/// the value continues: [`ExtentValue::at`]).
#[derive(Debug)]
pub struct Extents<V, const N: usize> {
    ext: [(u64, u64, V); N],
    n: usize,
}

impl<V: ExtentValue, const N: usize> Extents<V, N> {
    const fn empty(zero: V) -> Self {
        Extents { ext: [(0, 0, zero); N], n: 0 }
    }

    /// The extents.
    pub fn extents(&self) -> &[(u64, u64, V)] {
        &self.ext[..self.n]
    }

    /// Whether one range can be cut out and one extent added (a split adds
    /// at most two extents: the new one and a right part).
    fn room(&self) -> bool {
        self.n + 2 <= N
    }

    /// The first extent overlapping `[addr, addr+len)`, cut to it.
    pub fn first_overlap(&self, addr: u64, len: u64) -> Option<(u64, u64, V)> {
        let end = addr.saturating_add(len);
        self.extents().iter().find(|&&(a, l, _)| a < end && a + l > addr).map(|&(a, l, v)| {
            let s = a.max(addr);
            (s, (a + l).min(end) - s, v.at(s - a))
        })
    }

    /// Takes `len` bytes (at most its length) off the front of extent `i`,
    /// removing it when nothing is left.
    fn take_front(&mut self, i: usize, len: u64) {
        let (a, l, v) = self.ext[i];
        if len >= l {
            self.ext.copy_within(i + 1..self.n, i);
            self.n -= 1;
        } else {
            self.ext[i] = (a + len, l - len, v.at(len));
        }
    }

    /// Forgets `[addr, addr+len)`: cuts it out of every extent it overlaps
    /// (a split that finds the table full keeps only the left part).
    fn cut(&mut self, addr: u64, len: u64) {
        let end = addr.saturating_add(len);
        let mut i = 0;
        while i < self.n {
            let (a, l, v) = self.ext[i];
            let e = a + l;
            if e <= addr || a >= end {
                i += 1;
                continue;
            }
            let left = (a < addr).then(|| (a, addr - a, v));
            let right = (e > end).then(|| (end, e - end, v.at(end - a)));
            match (left, right) {
                (Some(lf), Some(rt)) => {
                    self.ext[i] = lf;
                    if self.n < N {
                        self.ext.copy_within(i + 1..self.n, i + 2);
                        self.ext[i + 1] = rt;
                        self.n += 1;
                    }
                    i += 2;
                }
                (Some(x), None) | (None, Some(x)) => {
                    self.ext[i] = x;
                    i += 1;
                }
                (None, None) => {
                    self.ext.copy_within(i + 1..self.n, i);
                    self.n -= 1;
                }
            }
        }
    }

    /// Adds `[addr, addr+len)` with `v` (not overlapping any extent now),
    /// merged with the neighbours it continues. `false` when full.
    fn insert(&mut self, addr: u64, len: u64, v: V) -> bool {
        if self.n >= N {
            return false;
        }
        let i = self.extents().partition_point(|x| x.0 < addr);
        self.ext.copy_within(i..self.n, i + 1);
        self.ext[i] = (addr, len, v);
        self.n += 1;
        let joins = |x: (u64, u64, V), y: (u64, u64, V)| x.0 + x.1 == y.0 && x.2.at(x.1) == y.2;
        if i + 1 < self.n && joins(self.ext[i], self.ext[i + 1]) {
            self.ext[i].1 += self.ext[i + 1].1;
            self.ext.copy_within(i + 2..self.n, i + 1);
            self.n -= 1;
        }
        if i > 0 && joins(self.ext[i - 1], self.ext[i]) {
            self.ext[i - 1].1 += self.ext[i].1;
            self.ext.copy_within(i + 1..self.n, i);
            self.n -= 1;
        }
        true
    }
}

/// Most extents of non-read-write pages remembered; a change that would
/// need more fails with `ENOMEM`, as Linux's does past its map count.
const MAX_PROTS: usize = 512;

/// The pages whose protection is not read-write: extents `(start, len,
/// prot)`, adjacent ones with equal `prot` merged.
pub type Prots = Extents<u8, MAX_PROTS>;

impl Prots {
    /// Everything read-write.
    pub const EMPTY: Prots = Extents::empty(0);

    /// Whether [`Prots::set`] can succeed (room for the split).
    pub fn can_set(&self) -> bool {
        self.room()
    }

    /// Records that `[addr, addr+len)` now has `prot` (page multiples).
    pub fn set(&mut self, addr: u64, len: u64, prot: u8) -> bool {
        if !self.can_set() {
            return false;
        }
        self.cut(addr, len);
        if prot as u64 == PROT_READ | PROT_WRITE || len == 0 {
            return true;
        }
        self.insert(addr, len, prot)
    }
}

/// Most committed extents of the reservation space remembered.
const MAX_COMMITS: usize = 1024;

/// The committed parts of the reservation space: `(va, len, arena
/// address)`, merged when both addresses continue.
pub type Commits = Extents<u64, MAX_COMMITS>;

impl Commits {
    /// Nothing committed.
    pub const EMPTY: Commits = Extents::empty(0);

    /// Whether there is room to add one extent (after a removal).
    pub fn has_room(&self) -> bool {
        self.room()
    }

    /// Forgets `[va, va+len)`.
    pub fn remove(&mut self, va: u64, len: u64) {
        self.cut(va, len);
    }

    /// Records `[va, va+len)` committed with the arena pages at `phys`
    /// (the range is not committed now). `false` when the table is full.
    pub fn add(&mut self, va: u64, len: u64, phys: u64) -> bool {
        self.insert(va, len, phys)
    }
}

/// A request for memory beyond the limit: how many bytes more it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit(pub u64);

/// The domain's anonymous memory: the arena and the `brk` range.
#[derive(Debug)]
pub struct Mem {
    arena: Arena,
    /// With a limit, once the arena runs out: the part of the `brk` range
    /// above the highest break, handed over to `mmap` (the break can then
    /// no longer grow), so that the whole limit serves either. Empty until
    /// then.
    spill: Arena,
    brk_start: u64,
    brk_end: u64,
    brk_cur: u64,
    /// Highest break ever set.
    brk_high: u64,
    /// A memory limit is set: exhaustion stops the program.
    limited: bool,
}

/// How a mapping request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// The value to return (an address or `-errno`).
    Ret(i64),
    /// Anonymous-looking memory at this address; the caller fills it from
    /// the file (private file mapping) before returning it.
    File(u64),
}

impl Mem {
    /// No memory.
    pub const EMPTY: Mem = Mem {
        arena: Arena::EMPTY,
        spill: Arena::EMPTY,
        brk_start: 0,
        brk_end: 0,
        brk_cur: 0,
        brk_high: 0,
        limited: false,
    };

    /// The arena over `[arena, arena + arena_len)` and the `brk` range
    /// `[brk, brk + brk_len)`; `limited`: a memory limit is set. `None` if
    /// either is malformed.
    pub fn new(arena: u64, arena_len: u64, brk: u64, brk_len: u64, limited: bool) -> Option<Mem> {
        let arena = Arena::new(arena, arena_len)?;
        let brk_end = brk.checked_add(brk_len)?;
        Some(Mem {
            arena,
            spill: Arena::EMPTY,
            brk_start: brk,
            brk_end,
            brk_cur: brk,
            brk_high: brk,
            limited,
        })
    }

    /// Bytes of the `brk` range and the arena in use (high-water marks).
    pub fn used(&self) -> u64 {
        let brk = page_up(self.brk_high).unwrap_or(self.brk_end).min(self.brk_end) - self.brk_start;
        brk.saturating_add(self.arena.used()).saturating_add(self.spill.used())
    }

    /// The part of the `brk` range that can still be handed to `mmap`
    /// (limit only, once): `(start, len)`.
    fn spare_brk(&self) -> Option<(u64, u64)> {
        if !self.limited || self.spill.end != 0 {
            return None;
        }
        let start = page_up(self.brk_high)?;
        (start < self.brk_end).then(|| (start, self.brk_end - start))
    }

    /// Hands the spare part of the `brk` range to `mmap`.
    fn spill_brk(&mut self) -> bool {
        let Some((start, len)) = self.spare_brk() else { return false };
        let Some(spill) = Arena::new(start, len) else { return false };
        self.spill = spill;
        self.brk_end = start;
        true
    }

    /// Allocates `len` bytes (page multiple) from the arena, then from the
    /// spilled `brk` range.
    fn alloc(&mut self, len: u64) -> Option<(u64, bool)> {
        if let Some(r) = self.arena.alloc(len) {
            return Some(r);
        }
        if let Some(r) = self.spill.alloc(len) {
            return Some(r);
        }
        if self.spill_brk() {
            return self.spill.alloc(len);
        }
        None
    }

    /// Whether [`Mem::alloc`] of `len` bytes would succeed.
    fn can_alloc(&self, len: u64) -> bool {
        self.arena.can_alloc(len)
            || self.spill.can_alloc(len)
            || self.spare_brk().is_some_and(|(_, l)| len.is_multiple_of(PAGE) && len <= l)
    }

    /// The allocator that owns `[addr, addr+len)`.
    fn owner(&mut self, addr: u64, len: u64) -> Option<&mut Arena> {
        if len == 0 {
            None
        } else if self.arena.contains(addr, len) {
            Some(&mut self.arena)
        } else if self.spill.end != 0 && self.spill.contains(addr, len) {
            Some(&mut self.spill)
        } else {
            None
        }
    }

    /// `brk(addr)`: the new break, or the old one on failure; `Err` when a
    /// limit is set and neither the range nor the arena can give the growth.
    pub fn brk(&mut self, addr: u64) -> Result<u64, OverLimit> {
        if addr < self.brk_start {
            return Ok(self.brk_cur);
        }
        if addr > self.brk_end {
            if self.limited {
                // An allocator falls back to mmap when brk fails: stop only
                // when that cannot work either.
                let growth = page_up(addr - self.brk_cur).unwrap_or(!(PAGE - 1));
                if !self.can_alloc(growth) {
                    return Err(OverLimit(growth));
                }
            }
            return Ok(self.brk_cur);
        }
        if addr < self.brk_cur {
            // Shrinking: clear what is given back so a later grow sees zeros.
            zero(addr, self.brk_cur - addr);
        }
        self.brk_cur = addr;
        self.brk_high = self.brk_high.max(addr);
        Ok(addr)
    }

    /// `mmap`, except the reading of a private file mapping's bytes.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        off: u64,
    ) -> Result<Mapped, OverLimit> {
        if prot & PROT_EXEC != 0 {
            return Ok(Mapped::Ret(-errno::EACCES));
        }
        let Some(len) = page_up(len).filter(|&l| l != 0) else { return Ok(Mapped::Ret(-errno::EINVAL)) };
        let anonymous = flags & MAP_ANONYMOUS != 0;
        if !anonymous && !off.is_multiple_of(PAGE) {
            return Ok(Mapped::Ret(-errno::EINVAL));
        }
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        let start = if fixed {
            // Nothing is ever mapped in the lowest 64 KiB: EPERM, as
            // Linux answers below vm.mmap_min_addr.
            if addr < cabin_abi::layout::LOWEST_PROGRAM_ADDRESS {
                return Ok(Mapped::Ret(-errno::EPERM));
            }
            // A fixed address outside the arena is no request for more
            // memory the limit could grant: ENOMEM as before.
            if !addr.is_multiple_of(PAGE) {
                return Ok(Mapped::Ret(-errno::ENOMEM));
            }
            let Some(owner) = self.owner(addr, len) else { return Ok(Mapped::Ret(-errno::ENOMEM)) };
            if owner.take_fixed(addr, len) {
                zero(addr, len);
            }
            addr
        } else {
            match self.alloc(len) {
                Some((a, dirty)) => {
                    if dirty {
                        zero(a, len);
                    }
                    a
                }
                None if self.limited => return Err(OverLimit(len)),
                None => return Ok(Mapped::Ret(-errno::ENOMEM)),
            }
        };
        Ok(if anonymous { Mapped::Ret(start as i64) } else { Mapped::File(start) })
    }

    /// Gives `[addr, addr+len)` back (a failed file mapping).
    fn release(&mut self, addr: u64, len: u64) {
        if let Some(owner) = self.owner(addr, len) {
            owner.free(addr, len);
        }
    }

    /// `munmap`.
    pub fn munmap(&mut self, addr: u64, len: u64) -> i64 {
        let Some(len) = page_up(len).filter(|&l| l != 0) else { return -errno::EINVAL };
        if !addr.is_multiple_of(PAGE) {
            return -errno::EINVAL;
        }
        match self.owner(addr, len) {
            Some(owner) => {
                owner.free(addr, len);
                0
            }
            // Not arena memory (image, stack): Linux would unmap it; refusing
            // keeps the domain's layout fixed. Programs rarely notice.
            None => -errno::EINVAL,
        }
    }

    /// `mremap`.
    pub fn mremap(&mut self, old: u64, old_len: u64, new_len: u64, flags: u64) -> Result<i64, OverLimit> {
        let (Some(old_len), Some(new_len)) = (page_up(old_len), page_up(new_len)) else {
            return Ok(-errno::EINVAL);
        };
        if !old.is_multiple_of(PAGE) || old_len == 0 || new_len == 0 || flags & MREMAP_FIXED != 0 {
            return Ok(-errno::EINVAL);
        }
        let Some(owner) = self.owner(old, old_len) else { return Ok(-errno::EFAULT) };
        if new_len <= old_len {
            owner.free(old + new_len, old_len - new_len);
            return Ok(old as i64);
        }
        if owner.grow_in_place(old, old_len, new_len) {
            zero(old + old_len, new_len - old_len);
            return Ok(old as i64);
        }
        if flags & MREMAP_MAYMOVE == 0 {
            // The program forbade moving: ENOMEM, as Linux says.
            return Ok(-errno::ENOMEM);
        }
        let Some((new, dirty)) = self.alloc(new_len) else {
            return if self.limited { Err(OverLimit(new_len - old_len)) } else { Ok(-errno::ENOMEM) };
        };
        // SAFETY: both ranges are allocated arena memory and do not overlap
        // (the new one was free).
        unsafe { core::ptr::copy_nonoverlapping(old as *const u8, new as *mut u8, old_len as usize) };
        if dirty {
            zero(new + old_len, new_len - old_len);
        }
        self.release(old, old_len);
        Ok(new as i64)
    }

    /// `madvise(MADV_DONTNEED)` on arena memory zeroes it.
    fn dontneed(&mut self, addr: u64, len: u64) {
        if self.owner(addr, len).is_some() {
            zero(addr, len);
        }
    }
}

/// How protections are applied, from the boot page.
struct Protection {
    /// The protectable ranges (`[start, len]`, empty entries `[0, 0]`).
    ranges: [[u64; 2]; cabin_abi::boot::PROTECTABLE_RANGES],
    /// KVM backend: ask the monitor with the doorbell exit.
    kvm: bool,
    /// The non-read-write pages.
    prots: Prots,
}

/// The reservation space (`BootInfo::reserve_start`): address space for
/// `PROT_NONE` reservations, committed page range by page range with arena
/// pages.
struct Reserve {
    /// Address-space allocator (no memory behind it).
    va: Arena,
    /// What is committed, with which arena pages.
    commits: Commits,
    /// Process backend: offset of the arena's first byte in the memfd.
    file_offset: u64,
}

/// Everything the memory calls share between the program's threads: the
/// arena and `brk` range, the protection record and the reservation space.
///
/// One lock for the three: a call reads and changes them together (a
/// commit takes arena pages, maps them and records their protection), and
/// the lock is held across the backend call that applies a change (KVM:
/// the doorbell exit; process: the native `mprotect`/`mmap`/`munmap` and
/// the forwarded note to the monitor), so that two threads never see the
/// record and the hardware disagree, nor interleave a protect with the
/// reuse of the same pages. Only the `pread` that fills a private file
/// mapping runs without it (it can take long; the pages are the caller's
/// alone until `mmap` returns).
struct State {
    mem: Mem,
    prot: Protection,
    resv: Reserve,
}

static STATE: Lock<State> = Lock::new(State {
    mem: Mem::EMPTY,
    prot: Protection {
        ranges: [[0; 2]; cabin_abi::boot::PROTECTABLE_RANGES],
        kvm: false,
        prots: Prots::EMPTY,
    },
    resv: Reserve { va: Arena::EMPTY, commits: Commits::EMPTY, file_offset: 0 },
});

/// Sets up the reservation space (`len` 0: none).
pub(super) fn init_reserve(start: u64, len: u64, file_offset: u64) {
    if len == 0 {
        return;
    }
    if let Some(va) = Arena::new(start, len) {
        let mut s = STATE.lock();
        s.resv.va = va;
        s.resv.file_offset = file_offset;
    }
}

/// A new child process (docs/processes.md; process backend): its memory
/// is a copy, but its mappings are the fresh ones the monitor made (every
/// range read-write). Maps the committed parts of the reservation space
/// again (the monitor of the child records them again) and gives every
/// page whose protection is not read-write its protection again (guard
/// pages, RELRO). `false` if the backend refuses one.
pub(super) fn after_fork() -> bool {
    let s = STATE.lock();
    if s.prot.kvm {
        return true;
    }
    let mut ok = true;
    for &(va, len, phys) in s.resv.commits.extents() {
        ok &= backend_commit(&s, va, len, PROT_RW, phys) == 0;
    }
    for &(addr, len, prot) in s.prot.prots.extents() {
        ok &= apply(&s, addr, len, u64::from(prot)) == 0;
    }
    ok
}

/// Whether `[addr, addr+len)` lies in the reservation space.
fn in_reserve(s: &State, addr: u64, len: u64) -> bool {
    s.resv.va.end != 0 && s.resv.va.contains(addr, len)
}

/// The backend maps the arena pages at `phys` over `[va, va+len)` of the
/// reservation space with `prot` (or, `phys` 0, removes the mapping).
fn backend_commit(s: &State, va: u64, len: u64, prot: u64, phys: u64) -> i64 {
    if s.prot.kvm {
        // The monitor maps or unmaps reservation pages only (never the
        // libos's own memory).
        return super::doorbell::ring(cabin_abi::hypercall::DOORBELL_COMMIT, [va, len, prot, phys, 0, 0]);
    }
    let fd = cabin_abi::boot::RESERVE_FD;
    if phys == 0 {
        super::forward(super::nr::munmap, &[va, len, 0, 0, 0, 0], 0);
        // SAFETY: unmaps part of the reservation space, which holds no
        // libos memory.
        return unsafe { crate::sys::syscall6(super::nr::munmap, &[va, len, 0, 0, 0, 0]) };
    }
    let shared_fixed = MAP_SHARED | MAP_FIXED;
    let r = super::forward(super::nr::mmap, &[va, len, prot, shared_fixed, fd, phys], 0);
    if r != 0 {
        return r;
    }
    let off = s.resv.file_offset + (phys - s.mem.arena.start);
    // SAFETY: maps arena pages of the domain memfd over reservation space
    // (no libos memory there); the seccomp filter allows exactly this.
    let r = unsafe { crate::sys::syscall6(super::nr::mmap, &[va, len, prot, shared_fixed, fd, off]) };
    if r < 0 {
        super::forward(super::nr::munmap, &[va, len, 0, 0, 0, 0], 0);
        return r;
    }
    0
}

/// Commits `[va, va+len)` (not committed now) with fresh zeroed arena
/// pages and protection `prot`. Over the memory limit: stops the program.
fn commit(s: &mut State, va: u64, len: u64, prot: u64) -> i64 {
    if !s.resv.commits.has_room() {
        return -errno::ENOMEM;
    }
    // Arena pages only (not the spilled `brk` range): the backends map
    // arena pages into the reservation space and nothing else.
    let (phys, dirty) = match s.mem.arena.alloc(len) {
        Some(x) => x,
        None if s.mem.limited => over_limit(OverLimit(len), s.mem.used()),
        None => return -errno::ENOMEM,
    };
    if dirty {
        zero(phys, len);
    }
    let r = backend_commit(s, va, len, prot, phys);
    if r != 0 {
        s.mem.arena.free(phys, len);
        return r;
    }
    // Room checked above.
    s.resv.commits.add(va, len, phys);
    s.prot.prots.set(va, len, prot as u8);
    0
}

/// Releases every committed part of `[va, va+len)`: unmapped again, its
/// arena pages given back.
fn decommit(s: &mut State, va: u64, len: u64) {
    while let Some((a, l, phys)) = s.resv.commits.first_overlap(va, len) {
        backend_commit(s, a, l, 0, 0);
        s.resv.commits.remove(a, l);
        s.mem.release(phys, l);
    }
    s.prot.prots.set(va, len, PROT_RW as u8);
}

/// `mmap` in or into the reservation space: `None` when the request is
/// not one (served by the arena as before).
fn reserve_mmap(s: &mut State, addr: u64, len: u64, prot: u64, flags: u64) -> Option<i64> {
    let anonymous = flags & MAP_ANONYMOUS != 0;
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    let len = page_up(len).filter(|&l| l != 0)?;
    if !anonymous || flags & MAP_SHARED != 0 || prot & PROT_EXEC != 0 {
        return None;
    }
    if fixed {
        if !addr.is_multiple_of(PAGE) || !in_reserve(s, addr, len) {
            return None;
        }
        if flags & MAP_FIXED_NOREPLACE != 0 && s.resv.commits.first_overlap(addr, len).is_some() {
            return Some(-errno::EEXIST);
        }
        decommit(s, addr, len);
        s.resv.va.take_fixed(addr, len);
        if prot != 0 {
            let r = commit(s, addr, len, prot);
            if r != 0 {
                return Some(r);
            }
        }
        return Some(addr as i64);
    }
    if prot != 0 || s.resv.va.end == 0 {
        return None;
    }
    // A reservation: address space only.
    Some(match s.resv.va.alloc(len) {
        Some((a, _)) => a as i64,
        None => -errno::ENOMEM,
    })
}

/// `mprotect` of reservation space: committed parts change protection,
/// uncommitted parts are committed when given any access.
fn reserve_mprotect(s: &mut State, addr: u64, len: u64, prot: u64) -> i64 {
    let end = addr + len;
    let mut at = addr;
    while at < end {
        let (gap, committed) = match s.resv.commits.first_overlap(at, end - at) {
            Some((a, l, _)) => (a - at, Some((a, l))),
            None => (end - at, None),
        };
        if gap != 0 && prot != 0 {
            let r = commit(s, at, gap, prot);
            if r != 0 {
                return r;
            }
        }
        match committed {
            Some((a, l)) => {
                let r = protect(s, a, l, prot);
                if r != 0 {
                    return r;
                }
                at = a + l;
            }
            None => at = end,
        }
    }
    0
}

/// Sets up the protectable ranges (from the boot page) and how to change
/// protections (`kvm`: the doorbell exit; otherwise a native `mprotect`).
pub(super) fn init_protection(ranges: [[u64; 2]; cabin_abi::boot::PROTECTABLE_RANGES], kvm: bool) {
    let mut s = STATE.lock();
    s.prot.ranges = ranges;
    s.prot.kvm = kvm;
}

/// Whether `[addr, addr+len)` lies inside one protectable range.
fn protectable(s: &State, addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else { return false };
    s.prot.ranges.iter().any(|&[st, l]| l != 0 && addr >= st && end <= st.saturating_add(l))
}

/// KVM: asks the monitor to give `[addr, addr+len)` the protection `prot`
/// (`DOORBELL_PROTECT`): it checks the range against its own list of
/// protectable ranges and file mappings. 0 or `-errno`.
pub(super) fn kvm_protect(addr: u64, len: u64, prot: u64) -> i64 {
    // The monitor changes the protection of program pages the range names
    // (never the libos's own code, stack or data: they are not protectable).
    super::doorbell::ring(cabin_abi::hypercall::DOORBELL_PROTECT, [addr, len, prot, 0, 0, 0])
}

/// Asks the backend to give `[addr, addr+len)` the protection `prot`
/// (`PROT_READ`/`PROT_WRITE` bits only). The range is protectable. The
/// caller holds the lock, so the record it updates next matches.
fn apply(s: &State, addr: u64, len: u64, prot: u64) -> i64 {
    if s.prot.kvm {
        return kvm_protect(addr, len, prot);
    }
    // SAFETY: mprotect of program memory in a protectable range (arena,
    // brk, stack, RELRO), never PROT_EXEC: the libos's own code and data
    // are outside those ranges, so its memory safety is unaffected.
    unsafe { crate::sys::syscall6(super::nr::mprotect, &[addr, len, prot, 0, 0, 0]) }
}

/// Gives `[addr, addr+len)` (page multiples) and its record `prot`.
fn protect(s: &mut State, addr: u64, len: u64, prot: u64) -> i64 {
    if !s.prot.prots.can_set() {
        return -errno::ENOMEM;
    }
    let r = apply(s, addr, len, prot);
    if r == 0 {
        s.prot.prots.set(addr, len, prot as u8);
    }
    r
}

/// Makes every non-read-write page of `[addr, addr+len)` read-write again
/// (memory the allocator is about to zero or reuse).
fn unprotect(s: &mut State, addr: u64, len: u64) {
    while let Some((a, l, _)) = s.prot.prots.first_overlap(addr, len) {
        if protect(s, a, l, PROT_RW) != 0 {
            // Cannot happen for a range the libos protected itself; forget
            // it rather than loop.
            s.prot.prots.set(a, l, PROT_RW as u8);
        }
    }
}

/// Sets up the arena and the brk range; `limited`: the monitor set a memory
/// limit (`BOOT_FLAG_MEMORY_LIMIT`). `false` if they are malformed.
pub(super) fn init(arena: u64, arena_len: u64, brk: u64, brk_len: u64, limited: bool) -> bool {
    let Some(m) = Mem::new(arena, arena_len, brk, brk_len, limited) else { return false };
    STATE.lock().mem = m;
    true
}

fn zero(addr: u64, len: u64) {
    // SAFETY: callers pass ranges inside the arena or brk range, which the
    // monitor mapped read-write for the domain's whole life (the wrappers
    // below make protected pages read-write again before any zeroing).
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, len as usize) }
}

/// The program asked for `requested` bytes more than the memory limit
/// leaves (`used` in use now): record why in the boot page (for the
/// monitor's message) and end the program with 137, as the kernel's OOM
/// killer would leave it. Callers may hold the lock: this never takes it.
fn over_limit(OverLimit(requested): OverLimit, used: u64) -> ! {
    let b = super::boot_ptr();
    if !b.is_null() {
        // SAFETY: `b` is the boot page validated by `init`; these slots are
        // the libos's to write (cabin_abi::boot::ABORT_MEMORY).
        unsafe {
            addr_of_mut!((*b).memory_request).write_volatile(requested);
            addr_of_mut!((*b).memory_used).write_volatile(used);
        }
    }
    super::record_abort(ABORT_MEMORY);
    crate::sys::exit_group(137)
}

/// `brk(addr)`: returns the new break, or the old one on failure.
pub(super) fn brk(addr: u64) -> u64 {
    let mut s = STATE.lock();
    let (cur, lowest) = (s.mem.brk_cur, s.mem.brk_start);
    if addr < cur && addr >= lowest {
        // The part given back is zeroed: make it writable first.
        let start = addr & !(PAGE - 1);
        unprotect(&mut s, start, page_up(cur).unwrap_or(cur) - start);
    }
    let r = s.mem.brk(addr);
    r.unwrap_or_else(|o| over_limit(o, s.mem.used()))
}

/// `mmap`.
pub(super) fn mmap(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, off: u64) -> i64 {
    if prot & !(PROT_RW | PROT_EXEC) != 0 {
        return -errno::EINVAL;
    }
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    if flags & (MAP_SHARED | MAP_ANONYMOUS) == MAP_SHARED | MAP_ANONYMOUS
        && !fixed
        && prot & PROT_EXEC == 0
        && page_up(len).is_some_and(|l| l != 0)
    {
        // Shared with the children it forks: a segment of the tree's
        // window when there is one (else arena memory, as before).
        if let Some(r) = super::shm::anonymous(len, prot) {
            return r;
        }
    }
    if flags & MAP_ANONYMOUS == 0
        && flags & MAP_SHARED != 0
        && !fixed
        && prot & PROT_EXEC == 0
        && page_up(len).is_some_and(|l| l != 0)
        && off.is_multiple_of(PAGE)
    {
        // The file's own pages (filemap.rs), where the monitor serves them
        // (else the copy below).
        if let Some(r) = super::filemap::map(len, prot, fd, off) {
            return r;
        }
    }
    let shared_file = flags & MAP_ANONYMOUS == 0 && flags & MAP_SHARED != 0 && prot & PROT_WRITE != 0;
    // A writable shared file mapping (shared.rs): a duplicate of the
    // descriptor, checked as Linux checks it, for the write-back.
    let dup = if shared_file
        && prot & PROT_EXEC == 0
        && page_up(len).is_some_and(|l| l != 0)
        && off.is_multiple_of(PAGE)
    {
        match shared::open(fd) {
            Ok(d) => Some(d),
            Err(e) => return e,
        }
    } else {
        None
    };
    if fixed && shared::overlaps(addr, len) {
        // The pages a fixed mapping replaces reach their file first.
        shared::write_back(addr, len);
        if !shared::forget(addr, page_up(len).unwrap_or(len)) {
            if let Some(d) = dup {
                shared::close(d);
            }
            return -errno::ENOMEM;
        }
    }
    let r = mmap_inner(addr, len, prot, flags, fd, off);
    match dup {
        Some(d) if r >= 0 => {
            if !shared::record(r as u64, page_up(len).unwrap_or(0), d, off) {
                shared::close(d);
                munmap(r as u64, len);
                return -errno::ENOMEM;
            }
            r
        }
        Some(d) => {
            shared::close(d);
            r
        }
        None => r,
    }
}

fn mmap_inner(addr: u64, len: u64, prot: u64, flags: u64, fd: u64, off: u64) -> i64 {
    let start = {
        let mut s = STATE.lock();
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 && prot & PROT_EXEC == 0 {
            if let Some(l) = page_up(len) {
                unprotect(&mut s, addr & !(PAGE - 1), l);
            }
        }
        if let Some(r) = reserve_mmap(&mut s, addr, len, prot, flags) {
            return r;
        }
        let r = s.mem.mmap(addr, len, prot, flags, off);
        match r {
            Ok(Mapped::Ret(v)) if v >= 0 && prot != PROT_RW => {
                let Some(l) = page_up(len) else { return -errno::EINVAL };
                return protect_new(&mut s, v as u64, l, prot);
            }
            Ok(Mapped::Ret(v)) => return v,
            Ok(Mapped::File(start)) => start,
            Err(o) => over_limit(o, s.mem.used()),
        }
    };
    // File mapping: read the bytes over the ring, without the lock.
    let Some(len) = page_up(len) else { return -errno::EINVAL };
    let r = fill(fd, start, len, off);
    if r < 0 {
        STATE.lock().mem.release(start, len);
        return r;
    }
    if prot != PROT_RW {
        return protect_new(&mut STATE.lock(), start, len, prot);
    }
    start as i64
}

/// Reads the file's bytes from `off` into `[start, start+len)` (what lies
/// past the file's end stays as it is: zero in fresh pages).
fn fill(fd: u64, start: u64, len: u64, off: u64) -> i64 {
    let mut done = 0u64;
    while done < len {
        let args = [fd, start + done, len - done, off.wrapping_add(done), 0, 0];
        let n = super::forward(super::nr::pread64, &args, 0);
        if n < 0 {
            return n;
        }
        if n == 0 {
            break; // past EOF: the rest stays zero
        }
        done += n as u64;
    }
    0
}

/// `msync`: the pages of writable shared file mappings in the range reach
/// their files (shared.rs); flags and alignment checked as Linux does.
pub(super) fn msync(addr: u64, len: u64, flags: u64) -> i64 {
    const MS_ASYNC: u64 = 1;
    const MS_INVALIDATE: u64 = 2;
    const MS_SYNC: u64 = 4;
    if !addr.is_multiple_of(PAGE)
        || flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
        || flags & (MS_ASYNC | MS_SYNC) == MS_ASYNC | MS_SYNC
    {
        return -errno::EINVAL;
    }
    let Some(len) = page_up(len) else { return -errno::ENOMEM };
    if len != 0 && super::filemap::overlaps(addr, len) {
        return super::filemap::msync(addr, len, flags);
    }
    if len == 0 || !shared::overlaps(addr, len) {
        return 0;
    }
    shared::write_back(addr, len)
}

/// The program ends: writable shared file mappings reach their files.
pub(super) fn at_exit() {
    shared::write_back_all();
}

/// Gives a new mapping at `start` its protection; undoes it on failure.
fn protect_new(s: &mut State, start: u64, len: u64, prot: u64) -> i64 {
    if !protectable(s, start, len) {
        // Arena memory is always protectable; a monitor that says
        // otherwise only loses the protection.
        return start as i64;
    }
    let r = protect(s, start, len, prot);
    if r != 0 {
        s.mem.release(start, len);
        return r;
    }
    start as i64
}

/// `munmap`.
pub(super) fn munmap(addr: u64, len: u64) -> i64 {
    super::readahead::memory_changed();
    if super::shm::overlaps(addr, len) {
        return super::shm::munmap(addr, len);
    }
    if super::filemap::overlaps(addr, len) {
        return super::filemap::munmap(addr, len);
    }
    if addr.is_multiple_of(PAGE) && page_up(len).is_some_and(|l| l != 0) && shared::overlaps(addr, len) {
        // Unmapped pages of a writable shared file mapping reach the file.
        shared::write_back(addr, len);
        if !shared::forget(addr, page_up(len).unwrap_or(len)) {
            return -errno::ENOMEM;
        }
    }
    let mut s = STATE.lock();
    if let Some(l) = page_up(len).filter(|&l| l != 0) {
        if addr.is_multiple_of(PAGE) && in_reserve(&s, addr, l) {
            decommit(&mut s, addr, l);
            s.resv.va.free(addr, l);
            return 0;
        }
    }
    if addr.is_multiple_of(PAGE) {
        if let Some(l) = page_up(len) {
            if s.mem.owner(addr, l).is_some() {
                unprotect(&mut s, addr, l);
            }
        }
    }
    s.mem.munmap(addr, len)
}

/// `mremap`. The protection of a moved or shrunk mapping becomes
/// read-write (Linux keeps it; programs that mremap protected memory are
/// not known).
pub(super) fn mremap(old: u64, old_len: u64, new_len: u64, flags: u64, _new_addr: u64) -> i64 {
    super::readahead::memory_changed();
    if shared::overlaps(old, old_len.max(1)) || super::filemap::overlaps(old, old_len.max(1)) {
        // A shared file mapping does not move (docs/syscalls.md).
        return -errno::EINVAL;
    }
    let mut s = STATE.lock();
    if old.is_multiple_of(PAGE) {
        if let (Some(o), Some(n)) = (page_up(old_len), page_up(new_len)) {
            if s.mem.owner(old, o.max(n)).is_some() {
                unprotect(&mut s, old, o.max(n));
            }
        }
    }
    let r = s.mem.mremap(old, old_len, new_len, flags);
    r.unwrap_or_else(|o| over_limit(o, s.mem.used()))
}

/// `mprotect`: `PROT_EXEC` is refused (`EACCES`); inside the protectable
/// ranges the protection changes for real; outside them, making memory
/// writable is refused (`EACCES`: code, boot page, ring) and dropping
/// permissions succeeds without effect.
pub(super) fn mprotect(addr: u64, len: u64, prot: u64) -> i64 {
    if prot & PROT_EXEC != 0 {
        return -errno::EACCES;
    }
    if !addr.is_multiple_of(PAGE) || prot & !PROT_RW != 0 {
        return -errno::EINVAL;
    }
    let Some(len) = page_up(len) else { return -errno::ENOMEM };
    if len == 0 {
        return 0;
    }
    // PROT_WRITE alone is read-write on x86 (as Linux gives it).
    let prot = if prot == PROT_WRITE { PROT_RW } else { prot };
    if super::filemap::overlaps(addr, len) {
        return super::filemap::mprotect(addr, len, prot);
    }
    let mut s = STATE.lock();
    if in_reserve(&s, addr, len) {
        return reserve_mprotect(&mut s, addr, len, prot);
    }
    if protectable(&s, addr, len) {
        return protect(&mut s, addr, len, prot);
    }
    if prot & PROT_WRITE != 0 {
        return -errno::EACCES;
    }
    0
}

/// `madvise`: `MADV_DONTNEED` zeroes arena memory (as the kernel would for
/// private anonymous memory), protected pages included; every other advice
/// is accepted and ignored.
pub(super) fn madvise(addr: u64, len: u64, advice: u64) -> i64 {
    if !addr.is_multiple_of(PAGE) {
        return -errno::EINVAL;
    }
    if advice == MADV_DONTNEED {
        let Some(len) = page_up(len) else { return -errno::EINVAL };
        if shared::overlaps(addr, len) {
            // The file keeps what was written; the pages read it again.
            shared::write_back(addr, len);
            let r = dontneed(addr, len);
            shared::refill(addr, len, fill);
            return r;
        }
        dontneed(addr, len)
    } else {
        0
    }
}

/// `madvise(MADV_DONTNEED)` of `[addr, addr+len)`, `len` page-aligned.
fn dontneed(addr: u64, len: u64) -> i64 {
    {
        let mut s = STATE.lock();
        if in_reserve(&s, addr, len) {
            // `at < end`: at the end, an extent reaching past it overlaps
            // an empty range with length 0, and the loop would never end
            // (a thread's exit advises its stack up to the middle of the
            // stack's commit).
            let (mut at, end) = (addr, addr + len);
            while at < end {
                let Some((a, l, phys)) = s.resv.commits.first_overlap(at, end - at) else { break };
                zero(phys, l);
                at = a + l;
            }
            return 0;
        }
        if s.mem.owner(addr, len).is_none() {
            return 0;
        }
        // Zero protected parts through a read-write window, then restore.
        let mut at = addr;
        let end = addr + len;
        while at < end {
            match s.prot.prots.first_overlap(at, end - at) {
                Some((a, l, p)) => {
                    zero_range(&mut s, at, a - at);
                    if apply(&s, a, l, PROT_RW) == 0 {
                        zero(a, l);
                        apply(&s, a, l, u64::from(p));
                    }
                    at = a + l;
                }
                None => {
                    zero_range(&mut s, at, end - at);
                    at = end;
                }
            }
        }
    }
    0
}

/// Zeroes `[addr, addr+len)` of arena memory (any length, 0 included).
fn zero_range(s: &mut State, addr: u64, len: u64) {
    if len != 0 {
        s.mem.dontneed(addr, len);
    }
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
        assert_eq!(a.free.extents().len(), 1);
        assert_eq!(a.free.extents()[0], (B, 3 * PAGE, ()));
        // Freeing the last allocation returns everything to the bump pointer.
        a.free(z, PAGE);
        assert_eq!(a.free.extents().len(), 0);
        assert_eq!(a.bump, B);
        // Reuse below the bump pointer is reported dirty.
        assert_eq!(a.alloc(4 * PAGE), Some((B, true)), "pages given back to the bump pointer were used");
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

    /// A page-aligned buffer to serve as arena and brk range in host tests.
    struct Buf(*mut u8, std::alloc::Layout);

    impl Buf {
        fn new(pages: u64) -> Buf {
            let l = std::alloc::Layout::from_size_align((pages * PAGE) as usize, PAGE as usize).unwrap();
            // SAFETY: non-zero size.
            Buf(unsafe { std::alloc::alloc_zeroed(l) }, l)
        }
        fn at(&self, page: u64) -> u64 {
            self.0 as u64 + page * PAGE
        }
    }

    impl Drop for Buf {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.0, self.1) }
        }
    }

    const ANON: u64 = MAP_ANONYMOUS | 0x02; // MAP_PRIVATE

    /// 16 pages of arena, then 4 pages of brk range.
    fn mem(buf: &Buf, limited: bool) -> Mem {
        Mem::new(buf.at(0), 16 * PAGE, buf.at(16), 4 * PAGE, limited).unwrap()
    }

    #[test]
    fn without_a_limit_exhaustion_is_enomem() {
        let buf = Buf::new(20);
        let mut m = mem(&buf, false);
        assert_eq!(m.mmap(0, 16 * PAGE, 3, ANON, 0), Ok(Mapped::Ret(buf.at(0) as i64)));
        assert_eq!(m.mmap(0, PAGE, 3, ANON, 0), Ok(Mapped::Ret(-errno::ENOMEM)));
        assert_eq!(m.brk(buf.at(21)), Ok(buf.at(16)));
        assert_eq!(m.mremap(buf.at(0), PAGE, 2 * PAGE, MREMAP_MAYMOVE), Ok(-errno::ENOMEM));
        assert_eq!(m.used(), 16 * PAGE);
    }

    #[test]
    fn with_a_limit_exhaustion_stops_and_says_how_much() {
        let buf = Buf::new(20);
        let mut m = mem(&buf, true);
        assert_eq!(m.brk(buf.at(18) + 100), Ok(buf.at(18) + 100));
        assert_eq!(m.used(), 3 * PAGE, "brk high-water counts whole pages");
        let Ok(Mapped::Ret(a)) = m.mmap(0, 10 * PAGE, 3, ANON, 0) else { panic!("fits") };
        assert_eq!(a as u64, buf.at(0));
        // Past the brk range, with room left in the arena: brk only fails
        // (an allocator then falls back to mmap).
        assert_eq!(m.brk(buf.at(22)), Ok(buf.at(18) + 100));
        // The arena has 6 pages left: 7 is over the limit.
        assert_eq!(m.mmap(0, 7 * PAGE - 5, 3, ANON, 0), Err(OverLimit(7 * PAGE)));
        assert_eq!(m.used(), 13 * PAGE);
        // Growing in place works while there is room; moving past it stops.
        assert_eq!(m.mremap(buf.at(0), 10 * PAGE, 12 * PAGE, 0), Ok(buf.at(0) as i64));
        assert_eq!(m.mremap(buf.at(0), 12 * PAGE, 17 * PAGE, 0), Ok(-errno::ENOMEM), "no MREMAP_MAYMOVE");
        assert_eq!(m.mremap(buf.at(0), 12 * PAGE, 17 * PAGE, MREMAP_MAYMOVE), Err(OverLimit(5 * PAGE)));
        // brk past its range when the arena cannot give the growth either.
        assert_eq!(m.brk(buf.at(28)), Err(OverLimit(10 * PAGE)));
        // Memory given back is reused without raising the high-water mark.
        // SAFETY: inside the test buffer.
        unsafe { (buf.at(1) as *mut u8).write(7) };
        assert_eq!(m.munmap(buf.at(0), 12 * PAGE), 0);
        assert_eq!(m.mmap(0, 4 * PAGE, 3, ANON, 0), Ok(Mapped::Ret(buf.at(0) as i64)));
        // SAFETY: as above.
        assert_eq!(unsafe { (buf.at(1) as *const u8).read() }, 0, "reused memory is zero again");
        assert_eq!(m.used(), 15 * PAGE);
        // A fixed mapping outside the arena is no request for more memory.
        assert_eq!(m.mmap(buf.at(17), PAGE, 3, ANON | MAP_FIXED, 0), Ok(Mapped::Ret(-errno::ENOMEM)));
        // A reservation far beyond the limit stops the program too.
        assert_eq!(m.mmap(0, 1 << 40, 0, ANON, 0), Err(OverLimit(1 << 40)));
    }

    #[test]
    fn nothing_is_mapped_below_64_kib() {
        let buf = Buf::new(8);
        let mut m = mem(&buf, false);
        for addr in [0, PAGE, 0xf000] {
            for flags in [MAP_FIXED, MAP_FIXED_NOREPLACE] {
                assert_eq!(
                    m.mmap(addr, PAGE, 3, ANON | flags, 0),
                    Ok(Mapped::Ret(-errno::EPERM)),
                    "{addr:#x}"
                );
            }
            // A hint is only a hint: the mapping lands in the arena.
            assert_eq!(m.mmap(addr, PAGE, 3, ANON, 0), Ok(Mapped::Ret(buf.at(0) as i64)));
            assert_eq!(m.munmap(buf.at(0), PAGE), 0);
        }
    }

    #[test]
    fn with_a_limit_the_unused_brk_range_serves_mmap() {
        let buf = Buf::new(20);
        let mut m = mem(&buf, true);
        assert_eq!(m.mmap(0, 16 * PAGE, 3, ANON, 0), Ok(Mapped::Ret(buf.at(0) as i64)));
        // The arena is full: the brk range (never used) takes over.
        assert_eq!(m.mmap(0, PAGE, 3, ANON, 0), Ok(Mapped::Ret(buf.at(16) as i64)));
        // The break can no longer grow, but mmap still can: brk just fails.
        assert_eq!(m.brk(buf.at(17)), Ok(buf.at(16)));
        assert_eq!(m.mmap(0, 3 * PAGE, 3, ANON, 0), Ok(Mapped::Ret(buf.at(17) as i64)));
        assert_eq!(m.used(), 20 * PAGE);
        assert_eq!(m.mmap(0, PAGE, 3, ANON, 0), Err(OverLimit(PAGE)));
        assert_eq!(m.brk(buf.at(17)), Err(OverLimit(PAGE)));
        // Spilled memory is unmapped, remapped and grown like arena memory.
        assert_eq!(m.munmap(buf.at(17), 3 * PAGE), 0);
        assert_eq!(m.mremap(buf.at(16), PAGE, 3 * PAGE, 0), Ok(buf.at(16) as i64));
        assert_eq!(m.mmap(buf.at(19), PAGE, 3, ANON | MAP_FIXED, 0), Ok(Mapped::Ret(buf.at(19) as i64)));
        assert_eq!(m.used(), 20 * PAGE);

        // Without a limit the brk range stays the break's.
        let mut m = mem(&buf, false);
        assert_eq!(m.mmap(0, 16 * PAGE, 3, ANON, 0), Ok(Mapped::Ret(buf.at(0) as i64)));
        assert_eq!(m.mmap(0, PAGE, 3, ANON, 0), Ok(Mapped::Ret(-errno::ENOMEM)));
        assert_eq!(m.brk(buf.at(20)), Ok(buf.at(20)));
    }

    #[test]
    fn protections_split_and_merge() {
        let mut p = Prots::EMPTY;
        assert!(p.set(B, 4 * PAGE, 0));
        assert!(p.set(B + PAGE, PAGE, 1));
        assert_eq!(p.extents(), &[(B, PAGE, 0), (B + PAGE, PAGE, 1), (B + 2 * PAGE, 2 * PAGE, 0)]);
        // Back to read-write in the middle, then the same protection merges.
        assert!(p.set(B + PAGE, PAGE, 3));
        assert_eq!(p.extents(), &[(B, PAGE, 0), (B + 2 * PAGE, 2 * PAGE, 0)]);
        assert!(p.set(B + PAGE, PAGE, 0));
        assert_eq!(p.extents(), &[(B, 4 * PAGE, 0)]);
        assert_eq!(p.first_overlap(B + 3 * PAGE, 8 * PAGE), Some((B + 3 * PAGE, PAGE, 0)));
        assert_eq!(p.first_overlap(B + 4 * PAGE, PAGE), None);
        assert!(p.set(B - PAGE, 10 * PAGE, 3));
        assert!(p.extents().is_empty());
        // Full table: refused, never corrupted.
        for i in 0..(MAX_PROTS as u64) {
            p.set(B + 2 * i * PAGE, PAGE, 1);
        }
        assert!(p.n <= MAX_PROTS);
        assert!(!p.set(B + 1, PAGE, 0) || p.n <= MAX_PROTS);
    }

    #[test]
    fn commits_split_and_merge() {
        let mut c = Commits::EMPTY;
        assert!(c.add(B, 2 * PAGE, 0x1000_0000));
        assert!(c.add(B + 2 * PAGE, PAGE, 0x1000_0000 + 2 * PAGE));
        assert_eq!(c.extents(), &[(B, 3 * PAGE, 0x1000_0000)], "both addresses continue: merged");
        assert!(c.add(B + 3 * PAGE, PAGE, 0x2000_0000));
        assert_eq!(c.extents().len(), 2, "the arena address jumps: kept apart");
        assert_eq!(c.first_overlap(B + PAGE, 8 * PAGE), Some((B + PAGE, 2 * PAGE, 0x1000_0000 + PAGE)));
        c.remove(B + PAGE, PAGE);
        assert_eq!(
            c.extents(),
            &[
                (B, PAGE, 0x1000_0000),
                (B + 2 * PAGE, PAGE, 0x1000_0000 + 2 * PAGE),
                (B + 3 * PAGE, PAGE, 0x2000_0000)
            ]
        );
        c.remove(0, u64::MAX);
        assert!(c.extents().is_empty());
    }

    #[test]
    fn an_empty_range_inside_an_extent_overlaps_with_length_0() {
        // What madvise's loop guards against (`at < end`).
        let mut c = Commits::EMPTY;
        assert!(c.add(B, 4 * PAGE, 0x1000_0000));
        assert_eq!(c.first_overlap(B + PAGE, 0), Some((B + PAGE, 0, 0x1000_0000 + PAGE)));
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
        assert_eq!(a.free.extents().len(), 0);
    }
}
