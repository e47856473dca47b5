//! 4-level x86-64 page tables, built by the monitor before boot.
//!
//! The guest never edits its page tables on the hot path (a ring-0 page
//! fault costs ~50 µs here), so everything is mapped up front: permissions
//! are set on the last level only (upper levels allow everything), and
//! large, 2 MiB-aligned ranges use 2 MiB pages. Tables come from a pool of
//! guest-physical pages ([`crate::layout::PT_GPA`]).

use thiserror::Error;

use super::layout::{LARGE_PAGE, PAGE};
use super::memory::{MemoryError, PhysMemory};

/// Present.
pub const PTE_P: u64 = 1 << 0;
/// Writable.
pub const PTE_W: u64 = 1 << 1;
/// User-accessible.
pub const PTE_U: u64 = 1 << 2;
/// Accessed (set up front so the CPU never has to write it).
pub const PTE_A: u64 = 1 << 5;
/// Dirty (likewise).
pub const PTE_D: u64 = 1 << 6;
/// Large page (in a PDE).
pub const PTE_PS: u64 = 1 << 7;
/// Global.
pub const PTE_G: u64 = 1 << 8;
/// Not executable.
pub const PTE_NX: u64 = 1 << 63;
/// Protection-key field (bits 59..62).
pub const PTE_PKEY_SHIFT: u64 = 59;
/// Software bit (ignored by the CPU): a program page made `PROT_NONE`.
/// Its entry keeps the address and flags with [`PTE_P`] clear, so that a
/// later `mprotect` can make it present again, and a fault on it is
/// `SEGV_ACCERR` rather than `SEGV_MAPERR`.
pub const PTE_SOFT_NONE: u64 = 1 << 9;
/// Address bits of an entry.
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Errors of this module.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PagingError {
    /// The page-table pool is exhausted.
    #[error("out of page-table pages (pool of {0} pages)")]
    PoolExhausted(u64),
    /// Address or length not page aligned, or not canonical.
    #[error("cannot map {va:#x}+{len:#x}: not page aligned or not canonical")]
    BadRange {
        /// Virtual address.
        va: u64,
        /// Length.
        len: u64,
    },
    /// A protection change reached a page that is not a program data page
    /// (unmapped, supervisor-only or executable).
    #[error("{0:#x} is not a program data page")]
    NotProtectable(u64),
    /// A page is mapped twice.
    #[error("{0:#x} is already mapped")]
    AlreadyMapped(u64),
    /// An entry or a new mapping lies outside the relocated domain.
    #[error("address {0:#x} is not in the relocated domain")]
    Unrelocatable(u64),
    /// Guest memory access failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// Permissions of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    /// Ring 3 may access it.
    pub user: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Protection key (0 = default).
    pub pkey: u8,
}

impl Perms {
    /// Leaf-entry flag bits.
    pub fn bits(&self) -> u64 {
        let mut f = PTE_P | PTE_A | PTE_D;
        if self.user {
            f |= PTE_U;
        } else {
            f |= PTE_G;
        }
        if self.write {
            f |= PTE_W;
        }
        if !self.exec {
            f |= PTE_NX;
        }
        f | (u64::from(self.pkey & 0xf) << PTE_PKEY_SHIFT)
    }
}

/// Where the tables' entries point when they do not hold domain addresses
/// (the SEV-SNP backend relocates the domain to the pages its guest kernel
/// module took, with the C-bit: `cabin_snp::domain::Relocation`). Both
/// directions: the entry address of a domain address, and back.
pub trait Relocate: std::fmt::Debug + Send + Sync {
    /// The address an entry holds for domain address `gpa` (`None`: not in
    /// the domain).
    fn to_entry(&self, gpa: u64) -> Option<u64>;
    /// The domain address of an entry's address `addr` (`None`: not one of
    /// the domain's).
    fn to_domain(&self, addr: u64) -> Option<u64>;
}

/// A page-table builder over a pool `[pool, pool_end)` of guest memory.
/// `Clone` for a child process's VM: the tables themselves are guest
/// memory, copied with it; this is the pool's bookkeeping.
#[derive(Debug, Clone)]
pub struct PageTables {
    root: u64,
    next: u64,
    end: u64,
    /// `None`: entries hold domain addresses (the KVM backend, and every
    /// domain while it is built).
    reloc: Option<std::sync::Arc<dyn Relocate>>,
    /// 4 KiB leaf entries written.
    pub small: u64,
    /// 2 MiB leaf entries written.
    pub large: u64,
    /// Tables [`PageTables::prune`] emptied and unlinked, not yet reusable:
    /// until every cached translation of the VM is dropped, a vCPU (KVM's
    /// shadow of the tables, on a host without EPT) may still walk through
    /// them from the addresses they served ([`PageTables::reclaim`]).
    retired: Vec<u64>,
    /// Emptied (all-zero) tables reused before the pool's untouched pages.
    free: Vec<u64>,
}

fn index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * (level - 1))) & 0x1ff
}

impl PageTables {
    /// Starts an empty hierarchy; the root (PML4) is the pool's first page.
    /// The pool must be zeroed.
    pub fn new(pool: u64, pool_end: u64) -> Result<PageTables, PagingError> {
        if !pool.is_multiple_of(PAGE) || pool_end <= pool {
            return Err(PagingError::PoolExhausted(0));
        }
        Ok(PageTables {
            root: pool,
            next: pool + PAGE,
            end: pool_end,
            reloc: None,
            small: 0,
            large: 0,
            retired: Vec::new(),
            free: Vec::new(),
        })
    }

    /// From now on the tables' entries hold addresses relocated by `r`
    /// (they were rewritten so: `cabin_snp::domain::relocate_page_tables`);
    /// every later edit reads and writes them through it. The tables
    /// themselves stay at their domain addresses in the pool.
    pub fn relocated(&mut self, r: std::sync::Arc<dyn Relocate>) {
        self.reloc = Some(r);
    }

    /// The address to write into an entry for domain address `gpa`.
    fn out(&self, gpa: u64) -> Result<u64, PagingError> {
        match &self.reloc {
            None => Ok(gpa),
            Some(r) => r.to_entry(gpa).ok_or(PagingError::Unrelocatable(gpa)),
        }
    }

    /// The domain address an entry `e` points at.
    fn target(&self, e: u64) -> Result<u64, PagingError> {
        let a = e & PTE_ADDR;
        match &self.reloc {
            None => Ok(a),
            Some(r) => r.to_domain(a).ok_or(PagingError::Unrelocatable(a)),
        }
    }

    /// Guest-physical address of the PML4 (the value for CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Pages of the pool in use (tables, the root included).
    pub fn used_pages(&self) -> u64 {
        (self.next - self.root) / PAGE - (self.retired.len() + self.free.len()) as u64
    }

    /// Tables emptied but not reusable before the next full flush.
    pub fn retired(&self) -> usize {
        self.retired.len()
    }

    /// Makes the retired tables reusable. Call only after every cached
    /// translation of the VM was dropped since they were retired (a slot
    /// deletion, `flush_tlb`), with no [`PageTables::prune`] in between.
    pub fn reclaim(&mut self) {
        self.free.append(&mut self.retired);
    }

    fn alloc(&mut self) -> Result<u64, PagingError> {
        if let Some(p) = self.free.pop() {
            return Ok(p);
        }
        if self.next >= self.end {
            return Err(PagingError::PoolExhausted((self.end - self.root) / PAGE));
        }
        let p = self.next;
        self.next += PAGE;
        Ok(p)
    }

    /// The table that `level`'s entry for `va` points at, creating it.
    fn child(&mut self, mem: &PhysMemory, table: u64, va: u64, level: u32) -> Result<u64, PagingError> {
        let slot = table + index(va, level) * 8;
        let e = mem.read_u64(slot)?;
        if e & PTE_P != 0 {
            if e & PTE_PS != 0 {
                return Err(PagingError::AlreadyMapped(va));
            }
            return self.target(e);
        }
        let t = self.alloc()?;
        mem.write_u64(slot, self.out(t)? | PTE_P | PTE_W | PTE_U | PTE_A)?;
        Ok(t)
    }

    /// Maps `[va, va + len)` to `[gpa, gpa + len)` with `perms`.
    pub fn map(
        &mut self,
        mem: &PhysMemory,
        va: u64,
        gpa: u64,
        len: u64,
        perms: Perms,
    ) -> Result<(), PagingError> {
        let bad = || PagingError::BadRange { va, len };
        if !va.is_multiple_of(PAGE) || !gpa.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return Err(bad());
        }
        let end = va.checked_add(len).ok_or_else(bad)?;
        let canonical = |a: u64| !(0x0000_8000_0000_0000..0xffff_8000_0000_0000).contains(&a);
        let same_half = (va >> 63) == (end.saturating_sub(1) >> 63);
        if !canonical(va) || !canonical(end.saturating_sub(1)) || !same_half || gpa.checked_add(len).is_none()
        {
            return Err(bad());
        }
        let flags = perms.bits();
        let mut off = 0;
        while off < len {
            let (v, p) = (va + off, gpa + off);
            let pdpt = self.child(mem, self.root, v, 4)?;
            let pd = self.child(mem, pdpt, v, 3)?;
            if v % LARGE_PAGE == 0 && p % LARGE_PAGE == 0 && len - off >= LARGE_PAGE {
                let slot = pd + index(v, 2) * 8;
                if mem.read_u64(slot)? & PTE_P != 0 {
                    return Err(PagingError::AlreadyMapped(v));
                }
                mem.write_u64(slot, self.out(p)? | flags | PTE_PS)?;
                self.large += 1;
                off += LARGE_PAGE;
                continue;
            }
            let pt = self.child(mem, pd, v, 2)?;
            let slot = pt + index(v, 1) * 8;
            if mem.read_u64(slot)? & PTE_P != 0 {
                return Err(PagingError::AlreadyMapped(v));
            }
            mem.write_u64(slot, self.out(p)? | flags)?;
            self.small += 1;
            off += PAGE;
        }
        Ok(())
    }

    /// Changes the protection of the program data pages `[va, va + len)`
    /// (page aligned): `write`: writable; `present`: accessible at all
    /// (`false` = `PROT_NONE`, [`PTE_SOFT_NONE`]). Every page must be a
    /// user, non-executable leaf (present or `PROT_NONE`): anything else
    /// (code, supervisor pages, holes) fails before any entry changes, so
    /// no call can make code writable or anything executable. A 2 MiB page
    /// the range covers only in part is split into 4 KiB pages first.
    /// Returns how many leaf entries changed. The caller flushes the TLB.
    pub fn protect(
        &mut self,
        mem: &PhysMemory,
        va: u64,
        len: u64,
        write: bool,
        present: bool,
    ) -> Result<u64, PagingError> {
        let bad = || PagingError::BadRange { va, len };
        if !va.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return Err(bad());
        }
        let end = va.checked_add(len).ok_or_else(bad)?;
        // First pass: check every page (no change on failure).
        let mut v = va;
        while v < end {
            let (slot, large) = self.leaf_slot(mem, v)?.ok_or(PagingError::NotProtectable(v))?;
            let e = mem.read_u64(slot)?;
            let mapped = e & PTE_P != 0 || e & PTE_SOFT_NONE != 0;
            if !mapped || e & PTE_U == 0 || e & PTE_NX == 0 {
                return Err(PagingError::NotProtectable(v));
            }
            v = if large { (v | (LARGE_PAGE - 1)) + 1 } else { v + PAGE };
        }
        let mut changed = 0;
        let mut v = va;
        while v < end {
            let (mut slot, large) = self.leaf_slot(mem, v)?.ok_or(PagingError::NotProtectable(v))?;
            let covers = v.is_multiple_of(LARGE_PAGE) && end - v >= LARGE_PAGE;
            if large && !covers {
                self.split(mem, slot)?;
                slot = self.leaf_slot(mem, v)?.ok_or(PagingError::NotProtectable(v))?.0;
            }
            let e = mem.read_u64(slot)?;
            let mut n = e & !(PTE_P | PTE_W | PTE_SOFT_NONE);
            n |= if present { PTE_P } else { PTE_SOFT_NONE };
            if write {
                n |= PTE_W;
            }
            mem.write_u64(slot, n)?;
            changed += 1;
            v = if large && covers { v + LARGE_PAGE } else { v + PAGE };
        }
        Ok(changed)
    }

    /// Maps `[va, va + len)` to `[gpa, gpa + len)` with 4 KiB pages and
    /// `perms`, replacing what is there (only 4 KiB leaves: a range with a
    /// 2 MiB page is refused before anything changes). Returns whether a
    /// present entry was replaced (then the TLB must be flushed).
    pub fn set_leaves(
        &mut self,
        mem: &PhysMemory,
        va: u64,
        gpa: u64,
        len: u64,
        perms: Perms,
    ) -> Result<bool, PagingError> {
        let bad = || PagingError::BadRange { va, len };
        if !va.is_multiple_of(PAGE) || !gpa.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return Err(bad());
        }
        let end = va.checked_add(len).ok_or_else(bad)?;
        let mut v = va;
        while v < end {
            if let Some((_, true)) = self.leaf_slot(mem, v)? {
                return Err(PagingError::AlreadyMapped(v));
            }
            v += PAGE;
        }
        let flags = perms.bits();
        let mut replaced = false;
        let mut off = 0;
        while off < len {
            let v = va + off;
            let pdpt = self.child(mem, self.root, v, 4)?;
            let pd = self.child(mem, pdpt, v, 3)?;
            let pt = self.child(mem, pd, v, 2)?;
            let slot = pt + index(v, 1) * 8;
            replaced |= mem.read_u64(slot)? & PTE_P != 0;
            mem.write_u64(slot, self.out(gpa + off)? | flags)?;
            self.small += 1;
            off += PAGE;
        }
        Ok(replaced)
    }

    /// Removes the 4 KiB leaves of `[va, va + len)` (tables stay).
    pub fn clear_leaves(&mut self, mem: &PhysMemory, va: u64, len: u64) -> Result<(), PagingError> {
        let mut v = va;
        let end = va.saturating_add(len);
        while v < end {
            if let Some((slot, large)) = self.leaf_slot(mem, v)? {
                if large {
                    return Err(PagingError::AlreadyMapped(v));
                }
                if mem.read_u64(slot)? != 0 {
                    mem.write_u64(slot, 0)?;
                    self.small = self.small.saturating_sub(1);
                }
            }
            v += PAGE;
        }
        Ok(())
    }

    /// After [`PageTables::clear_leaves`] of `[va, va + len)`: every table
    /// under the root that this range reaches and that is now all zeros is
    /// unlinked from its parent and retired (bottom up: a directory whose
    /// last table went goes too). Returns how many.
    pub fn prune(&mut self, mem: &PhysMemory, va: u64, len: u64) -> Result<usize, PagingError> {
        let end = va.saturating_add(len);
        let mut n = 0;
        // Levels 1, 2, 3 (tables of 4 KiB leaves, directories, directory
        // pointers): the span one table of that level covers.
        for level in 1..=3u32 {
            let span = PAGE << (9 * level);
            let mut v = va & !(span - 1);
            while v < end {
                if let Some((slot, table)) = self.table_at(mem, v, level)? {
                    let mut empty = true;
                    for i in 0..512 {
                        if mem.read_u64(table + i * 8)? != 0 {
                            empty = false;
                            break;
                        }
                    }
                    if empty {
                        mem.write_u64(slot, 0)?;
                        self.retired.push(table);
                        n += 1;
                    }
                }
                v = v.saturating_add(span);
                if v == u64::MAX {
                    break;
                }
            }
        }
        Ok(n)
    }

    /// The parent's entry slot and the address of the `level` table (1:
    /// the table of 4 KiB leaves) that serves `va`, if present (never the
    /// root, never a 2 MiB page).
    fn table_at(&self, mem: &PhysMemory, va: u64, level: u32) -> Result<Option<(u64, u64)>, PagingError> {
        let mut table = self.root;
        for l in (level + 1..=4).rev() {
            let slot = table + index(va, l) * 8;
            let e = mem.read_u64(slot)?;
            if e & PTE_P == 0 || e & PTE_PS != 0 {
                return Ok(None);
            }
            table = self.target(e)?;
            if l == level + 1 {
                return Ok(Some((slot, table)));
            }
        }
        Ok(None)
    }

    /// The slot of the leaf entry for `va` and whether it is a 2 MiB page;
    /// `None` if an upper level is not present.
    fn leaf_slot(&self, mem: &PhysMemory, va: u64) -> Result<Option<(u64, bool)>, PagingError> {
        let mut table = self.root;
        for level in (2..=4).rev() {
            let slot = table + index(va, level) * 8;
            let e = mem.read_u64(slot)?;
            if level == 2 && e & PTE_PS != 0 {
                return Ok(Some((slot, true)));
            }
            if e & PTE_P == 0 {
                return Ok(None);
            }
            table = self.target(e)?;
        }
        Ok(Some((table + index(va, 1) * 8, false)))
    }

    /// Replaces the 2 MiB entry at `slot` by a table of 512 4 KiB entries
    /// with the same address range and flags.
    fn split(&mut self, mem: &PhysMemory, slot: u64) -> Result<(), PagingError> {
        let e = mem.read_u64(slot)?;
        let t = self.alloc()?;
        let flags = e & !PTE_ADDR & !PTE_PS;
        // Relocated or not, a 2 MiB page's 512 small pages are contiguous
        // (chunks are 2 MiB), so the entry addresses follow from its own.
        let base = e & PTE_ADDR & !(LARGE_PAGE - 1);
        for i in 0..512 {
            mem.write_u64(t + i * 8, (base + i * PAGE) | flags)?;
        }
        mem.write_u64(slot, self.out(t)? | PTE_P | PTE_W | PTE_U | PTE_A)?;
        self.large -= 1;
        self.small += 512;
        Ok(())
    }

    /// The leaf entry for `va`, present or not (a `PROT_NONE` page has
    /// [`PTE_SOFT_NONE`]); `None` if nothing is there.
    pub fn entry(&self, mem: &PhysMemory, va: u64) -> Result<Option<u64>, PagingError> {
        match self.leaf_slot(mem, va)? {
            Some((slot, _)) => {
                let e = mem.read_u64(slot)?;
                Ok((e != 0).then_some(e))
            }
            None => Ok(None),
        }
    }

    /// Walks the tables for `va` (tests and diagnostics): the leaf entry and
    /// whether it is a large page.
    pub fn lookup(&self, mem: &PhysMemory, va: u64) -> Result<Option<(u64, bool)>, PagingError> {
        let mut table = self.root;
        for level in (1..=4).rev() {
            let e = mem.read_u64(table + index(va, level) * 8)?;
            if e & PTE_P == 0 {
                return Ok(None);
            }
            if level == 1 || (level == 2 && e & PTE_PS != 0) {
                return Ok(Some((e, level == 2)));
            }
            table = self.target(e)?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RX_USER: Perms = Perms { user: true, write: false, exec: true, pkey: 0 };
    const RW_USER: Perms = Perms { user: true, write: true, exec: false, pkey: 0 };
    const RW_KERNEL: Perms = Perms { user: false, write: true, exec: false, pkey: 0 };

    #[test]
    fn maps_with_the_right_bits() {
        let m = PhysMemory::new(8 << 20).expect("map");
        let mut pt = PageTables::new(0x10_0000, 0x20_0000).expect("pool");
        pt.map(&m, 0x40_1000, 0x40_0000, 0x2000, RX_USER).expect("code");
        pt.map(&m, 0x7e00_0000_0000, 0x60_0000, 4 << 20, RW_USER).expect("arena");
        pt.map(&m, 0xffff_ffff_8000_1000, 0x1000, 0x1000, RW_KERNEL).expect("gdt");

        let (e, large) = pt.lookup(&m, 0x40_2abc).expect("walk").expect("mapped");
        assert!(!large);
        assert_eq!(e & PTE_ADDR, 0x40_1000);
        assert_eq!(e & (PTE_P | PTE_U | PTE_W), PTE_P | PTE_U, "code: user, not writable");
        assert_eq!(e & PTE_NX, 0, "code executable");

        let (e, large) = pt.lookup(&m, 0x7e00_0020_0010).expect("walk").expect("mapped");
        assert!(large, "2 MiB aligned arena uses large pages");
        assert_eq!(e & PTE_ADDR, 0x80_0000);
        assert_ne!(e & PTE_NX, 0, "data is never executable");
        assert_ne!(e & PTE_W, 0);

        let (e, _) = pt.lookup(&m, 0xffff_ffff_8000_1000).expect("walk").expect("mapped");
        assert_eq!(e & PTE_U, 0, "kernel pages are supervisor-only");

        assert_eq!(pt.lookup(&m, 0x40_3000).expect("walk"), None);
        assert_eq!(pt.large, 2);
        assert_eq!(pt.small, 3);
    }

    #[test]
    fn emptied_tables_are_pruned_and_reused_only_after_reclaim() {
        let m = PhysMemory::new(8 << 20).expect("map");
        let mut pt = PageTables::new(0x10_0000, 0x20_0000).expect("pool");
        let va = 0x4000_0000_0000;
        pt.map(&m, 0x40_1000, 0x40_0000, 0x1000, RW_USER).expect("a neighbour");
        let before = pt.used_pages();
        // 4 MiB + 1 page: three tables of leaves, one directory, one
        // directory pointer under a root entry of their own.
        pt.set_leaves(&m, va, 0x1000, (4 << 20) + 0x1000, RW_USER).expect("leaves");
        assert_eq!(pt.used_pages(), before + 5);
        pt.clear_leaves(&m, va, 2 << 20).expect("clear the first 2 MiB");
        assert_eq!(pt.prune(&m, va, 2 << 20).expect("prune"), 1, "only the emptied table");
        assert_eq!(
            pt.lookup(&m, va + (2 << 20)).expect("walk").map(|(e, _)| e & PTE_ADDR),
            Some(0x1000 + (2 << 20))
        );
        pt.clear_leaves(&m, va + (2 << 20), (2 << 20) + 0x1000).expect("clear the rest");
        assert_eq!(
            pt.prune(&m, va, (4 << 20) + 0x1000).expect("prune"),
            4,
            "two tables, the directory, the pointer"
        );
        assert_eq!(pt.used_pages(), before);
        assert_eq!(m.read_u64(pt.root() + index(va, 4) * 8).expect("root"), 0, "unlinked from the root");
        assert!(pt.lookup(&m, 0x40_1000).expect("walk").is_some(), "the neighbour stays");
        let next = pt.next;
        pt.set_leaves(&m, va, 0x1000, 0x1000, RW_USER).expect("again");
        assert_eq!(pt.next, next + 3 * PAGE, "retired tables are not reused before reclaim");
        pt.clear_leaves(&m, va, 0x1000).expect("clear");
        pt.prune(&m, va, 0x1000).expect("prune");
        pt.reclaim();
        pt.set_leaves(&m, va, 0x1000, 0x1000, RW_USER).expect("once more");
        assert_eq!(pt.next, next + 3 * PAGE, "reclaimed tables are reused");
        assert_eq!(pt.used_pages(), before + 3);
    }

    #[test]
    fn refuses_double_mapping_and_bad_ranges() {
        let m = PhysMemory::new(4 << 20).expect("map");
        let mut pt = PageTables::new(0x10_0000, 0x20_0000).expect("pool");
        pt.map(&m, 0x1000, 0x1000, 0x1000, RW_USER).expect("first");
        assert_eq!(pt.map(&m, 0x1000, 0x2000, 0x1000, RW_USER), Err(PagingError::AlreadyMapped(0x1000)));
        assert!(matches!(pt.map(&m, 0x1001, 0x1000, 0x1000, RW_USER), Err(PagingError::BadRange { .. })));
        assert!(matches!(
            pt.map(&m, 0x0000_8000_0000_0000, 0, 0x1000, RW_USER),
            Err(PagingError::BadRange { .. })
        ));
    }

    #[test]
    fn protect_splits_large_pages_and_never_touches_code_or_kernel_pages() {
        let m = PhysMemory::new(8 << 20).expect("map");
        let mut pt = PageTables::new(0x10_0000, 0x20_0000).expect("pool");
        pt.map(&m, 0x40_1000, 0x40_0000, 0x2000, RX_USER).expect("code");
        pt.map(&m, 0x7e00_0000_0000, 0x60_0000, 4 << 20, RW_USER).expect("arena");
        pt.map(&m, 0xffff_ffff_8000_1000, 0x1000, 0x1000, RW_KERNEL).expect("gdt");
        let a = 0x7e00_0000_0000u64;
        // One 4 KiB page of a 2 MiB page: split; the rest keeps its rights.
        assert_eq!(pt.protect(&m, a + 0x1000, 0x1000, false, false), Ok(1));
        let e = pt.entry(&m, a + 0x1000).expect("walk").expect("kept");
        assert_eq!(e & (PTE_P | PTE_SOFT_NONE), PTE_SOFT_NONE);
        assert_eq!(e & PTE_ADDR, 0x60_1000, "the address stays");
        let (e, large) = pt.lookup(&m, a + 0x2000).expect("walk").expect("mapped");
        assert!(!large);
        assert_eq!(e & (PTE_P | PTE_W | PTE_NX), PTE_P | PTE_W | PTE_NX);
        assert_eq!(pt.lookup(&m, a + 0x1000).expect("walk"), None, "not present");
        // Read-only, then read-write again.
        assert_eq!(pt.protect(&m, a + 0x1000, 0x2000, false, true), Ok(2));
        let (e, _) = pt.lookup(&m, a + 0x1000).expect("walk").expect("present again");
        assert_eq!(e & PTE_W, 0);
        assert_eq!(pt.protect(&m, a, 0x3000, true, true), Ok(3));
        // A whole 2 MiB page stays large.
        assert_eq!(pt.protect(&m, a + (2 << 20), 2 << 20, false, true), Ok(1));
        assert!(pt.lookup(&m, a + (2 << 20)).expect("walk").expect("mapped").1);
        // Code, kernel pages, holes, and ranges that reach them: refused,
        // and nothing changed.
        for (va, len) in [
            (0x40_1000, 0x1000),
            (0x40_0000, 0x1000),
            (0xffff_ffff_8000_1000, 0x1000),
            (a + (4 << 20) - 0x1000, 0x2000),
        ] {
            assert!(pt.protect(&m, va, len, true, true).is_err(), "{va:#x}");
        }
        let (e, _) = pt.lookup(&m, a + (4 << 20) - 0x1000).expect("walk").expect("mapped");
        assert_eq!(e & PTE_W, 0, "a refused call changes nothing");
        let (e, _) = pt.lookup(&m, 0x40_1000).expect("walk").expect("mapped");
        assert_eq!(e & (PTE_W | PTE_NX), 0, "code stays read-only and executable");
    }

    #[test]
    fn pool_exhaustion_is_an_error() {
        let m = PhysMemory::new(4 << 20).expect("map");
        let mut pt = PageTables::new(0x10_0000, 0x10_3000).expect("pool");
        // PML4 + PDPT + PD fit; the PT does not.
        assert_eq!(pt.map(&m, 0x1000, 0x1000, 0x1000, RW_USER), Err(PagingError::PoolExhausted(3)));
    }
}
