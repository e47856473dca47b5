//! Live shared file mappings on KVM (issue 14; docs/kvm.md, "Live shared
//! file mappings").
//!
//! `cabin_monitor::service::filemap` decides every mapping (the
//! descriptor's access mode, the kind of file, never `PROT_EXEC`, the
//! policy) and places it in the process's file-mapping range
//! ([`FILEMAP_VA`]); [`GuestFiles`] then carries it out in the VM: the
//! monitor maps the file itself (`MAP_SHARED`, writable only when the
//! descriptor is open read-write), registers that mapping as one more KVM
//! memory slot (read-only to KVM otherwise) at guest-physical addresses
//! that are never reused within the VM ([`FILE_GPA`]..[`FILE_GPA_END`]),
//! and writes 4 KiB user, never executable leaves over the range. The
//! guest's loads and stores are then the file's page-cache pages: every
//! process mapping the file, in the tree or native, sees them at once.
//!
//! Unmapping is: clear the leaves, then take the file's pages away from
//! the slot by mapping fresh inaccessible memory over that part of the
//! monitor's mapping (`MAP_FIXED`). The kernel tells KVM (its MMU
//! notifier), which drops the translations of exactly those pages on every
//! vCPU before the call returns; the slot stays, empty, for the next
//! mapping of the same access ([`Slot::mapped`] 0), which maps its file
//! over the same host range: no slot change, whose cost on a host without
//! EPT is every shadow page of the VM (docs/kvm.md, "Recycled file
//! slots"). A slot whose host mapping is shared (a forked child's VM has
//! it as its own slot, or the monitor is copying through it) cannot be
//! emptied in place: it is deleted (KVM drops every cached translation of
//! the VM), and only then the monitor's mapping (an [`Arc`]) may go.
//! A guest access past the file's end is an MMIO exit at the slot's
//! address: the run loop makes it `SIGBUS` ([`GuestFiles::fault_at`]).
//!
//! Bounds: [`FILE_SLOTS`] slots a VM (`ENOMEM` past them, never a silent
//! copy), the range's length, the guest-physical range's lifetime total,
//! and the page-table pool.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use cabin_monitor::memory::{FileMapper, HostRange};

use crate::domain::Guest;
use crate::layout::{FILE_GPA, FILE_GPA_END, FILE_SLOTS, FILE_SLOT_FIRST, PAGE};
use crate::paging::{PagingError, Perms};

const PROT_WRITE: u64 = 2;

/// The monitor's own mapping of (part of) a file; unmapped when the last
/// VM holding it deleted its slot.
#[derive(Debug)]
struct HostMap {
    ptr: usize,
    len: usize,
}

impl Drop for HostMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes at `ptr`, made by `map`;
        // every slot pointing at it was deleted before its last holder
        // dropped it.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// One memory slot: a host mapping at guest-physical `gpa`.
#[derive(Debug, Clone)]
struct Slot {
    id: u32,
    gpa: u64,
    /// The slot's size ([`span`] of the first mapping it was made for).
    len: u64,
    host: Arc<HostMap>,
    /// The descriptor was open read-write: the slot is writable to KVM and
    /// `mprotect` may make the pages writable.
    may_write: bool,
    /// Bytes at the start of the host range that are (or were, before a
    /// partial unmap emptied part of them) the file's; the rest is
    /// inaccessible anonymous memory. 0: the slot is free for the next
    /// mapping of the same access.
    mapped: u64,
    /// Emptying part of the host range failed (the kernel may have unmapped
    /// it first): never reused, deleted once no piece uses it, and its host
    /// range never unmapped (something of the monitor's may live there).
    broken: bool,
}

/// Smallest slot made: a slot can take any later mapping that fits, so
/// small ones are rounded up to be reused.
const MIN_SPAN: u64 = 64 << 10;

/// The size of a new slot for a mapping of `len` bytes: the next power of
/// two, at least [`MIN_SPAN`] (the part past the file is inaccessible
/// host memory that costs nothing; KVM's bookkeeping for a slot is 8
/// bytes per page).
fn span(len: u64) -> u64 {
    len.checked_next_power_of_two().unwrap_or(len).max(MIN_SPAN)
}

/// Replaces `[at, at+len)` of the monitor's memory with fresh inaccessible
/// anonymous memory (`MAP_FIXED`), which makes KVM (its MMU notifier) drop
/// every translation of the pages that were there, on every vCPU, before
/// it returns. `false`: the kernel refused (the range may then be gone).
///
/// # Safety
///
/// `[at, at+len)` must be part of one of our [`HostMap`]s.
unsafe fn empty(at: u64, len: u64) -> bool {
    let Ok(n) = usize::try_from(len) else { return false };
    // SAFETY: the caller's range is ours; nothing of the monitor lives
    // there but the file pages it replaces.
    let p = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            n,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    p as u64 == at
}

/// A mapped piece of the program's range: `[addr, addr+len)` shows the
/// slot's pages from `gpa`.
#[derive(Debug, Clone, Copy)]
struct Piece {
    addr: u64,
    len: u64,
    gpa: u64,
    slot: u32,
    prot: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct State {
    slots: Vec<Slot>,
    pieces: Vec<Piece>,
    next_gpa: u64,
}

/// A guest's live shared file mappings (the KVM [`FileMapper`]).
#[derive(Debug)]
pub struct GuestFiles {
    /// The guest whose page tables the mappings are written into (set
    /// once it is shared: [`GuestFiles::bind`]).
    guest: OnceLock<Weak<Guest>>,
    /// The monitor's own descriptor of the VM ([`GuestFiles::attach`]).
    vm: OnceLock<OwnedFd>,
    state: Mutex<State>,
}

impl State {
    fn in_use(&self, id: u32) -> bool {
        self.pieces.iter().any(|p| p.slot == id)
    }
}

impl Default for GuestFiles {
    fn default() -> Self {
        GuestFiles::with(State { slots: Vec::new(), pieces: Vec::new(), next_gpa: FILE_GPA })
    }
}

/// `KVM_SET_USER_MEMORY_REGION` (`_IOW(KVMIO, 0x46, struct
/// kvm_userspace_memory_region)`).
const KVM_SET_USER_MEMORY_REGION: libc::c_ulong = 0x4020_ae46;

/// Sets (or, `size` 0, deletes) memory slot `slot` of the VM `vm`.
///
/// # Safety
///
/// `host..host+size` must stay mapped as long as the slot exists.
pub(crate) unsafe fn set_region(vm: RawFd, slot: u32, flags: u32, gpa: u64, size: u64, host: u64) -> bool {
    let region = kvm_bindings::kvm_userspace_memory_region {
        slot,
        flags,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: host,
    };
    // SAFETY: the ioctl reads the region struct; the caller keeps the host
    // range mapped while the slot exists.
    unsafe { libc::ioctl(vm, KVM_SET_USER_MEMORY_REGION, &raw const region) == 0 }
}

impl GuestFiles {
    fn with(st: State) -> GuestFiles {
        GuestFiles { guest: OnceLock::new(), vm: OnceLock::new(), state: Mutex::new(st) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The child's table for a fork: the same host mappings at the same
    /// guest-physical addresses (its page tables are a copy of the
    /// parent's), registered as its own slots when its VM is made
    /// ([`GuestFiles::attach`]). The guard keeps the parent's table as it
    /// is while the caller copies the page tables (locked after it, as
    /// `map` and `unmap` do).
    pub(crate) fn fork_of(&self) -> (MutexGuard<'_, State>, GuestFiles) {
        let st = self.lock();
        let mut copy = st.clone();
        // Free slots stay the parent's: the child gets its own when it maps.
        copy.slots.retain(|s| st.in_use(s.id));
        let child = GuestFiles::with(copy);
        (st, child)
    }

    /// Says which guest the mappings are for (once it is shared).
    pub fn bind(g: &Arc<Guest>) {
        let _ = g.files.guest.set(Arc::downgrade(g));
    }

    /// Registers every slot in the new VM `vm` (a forked child's inherited
    /// mappings) and keeps a descriptor of it for later slots.
    pub(crate) fn attach(&self, vm: RawFd) -> Result<(), std::io::Error> {
        // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor of the VM.
        let fd = unsafe { libc::fcntl(vm, libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = self.lock();
        for s in &st.slots {
            // SAFETY: `s.host` maps `s.len` bytes for as long as this table
            // holds it, and the slot is deleted before (Drop).
            if !unsafe {
                set_region(fd.as_raw_fd(), s.id, flags_of(s.may_write), s.gpa, s.len, s.host.ptr as u64)
            } {
                return Err(std::io::Error::last_os_error());
            }
        }
        let _ = self.vm.set(fd);
        Ok(())
    }

    /// The guest-virtual address of file-slot address `gpa`, when a piece
    /// maps it now (`None`: a deleted slot, or outside every slot).
    pub fn fault_at(&self, gpa: u64) -> Option<u64> {
        let st = self.lock();
        st.pieces.iter().find(|p| gpa >= p.gpa && gpa - p.gpa < p.len).map(|p| p.addr + (gpa - p.gpa))
    }

    /// Whether a piece maps guest-virtual `va` now.
    pub fn maps(&self, va: u64) -> bool {
        self.lock().pieces.iter().any(|p| va >= p.addr && va - p.addr < p.len)
    }

    /// When page tables that file unmaps emptied wait for a full flush
    /// (`pt` is the guest's, locked by the caller): flushes the VM (every
    /// cached translation dropped) and makes them reusable. Whether it did.
    pub(crate) fn reclaim(&self, pt: &mut crate::paging::PageTables) -> bool {
        let Some(vm) = self.vm.get() else { return false };
        if pt.retired() == 0 || !crate::flush_tlb_fd(vm.as_raw_fd()) {
            return false;
        }
        pt.reclaim();
        true
    }

    /// Whether `gpa` lies in the file slots' guest-physical range.
    pub fn is_file_gpa(gpa: u64) -> bool {
        (FILE_GPA..FILE_GPA_END).contains(&gpa)
    }

    /// Number of slots, free ones included (tests, `--stats`).
    pub fn slots(&self) -> usize {
        self.lock().slots.len()
    }

    /// `mprotect` of `[addr, addr+len)` (page aligned, in the range): all
    /// of it must be mapped (`ENOMEM`), writable only where the descriptor
    /// was open read-write (`EACCES`, as Linux). 0 or `-errno`; the caller
    /// flushes the TLB on success.
    pub fn protect(&self, g: &Guest, addr: u64, len: u64, prot: u64) -> i64 {
        let mut st = self.lock();
        let Some(end) = addr.checked_add(len) else { return -i64::from(libc::ENOMEM) };
        if !covered(&st.pieces, addr, end) {
            return -i64::from(libc::ENOMEM);
        }
        let may = |p: &Piece| st.slots.iter().any(|s| s.id == p.slot && s.may_write);
        if prot & PROT_WRITE != 0 && st.pieces.iter().any(|p| overlaps(p, addr, end) && !may(p)) {
            return -i64::from(libc::EACCES);
        }
        let mut pt = g.pt.lock().unwrap_or_else(|e| e.into_inner());
        if pt.protect(&g.phys, addr, len, prot & PROT_WRITE != 0, prot != 0).is_err() {
            return -i64::from(libc::ENOMEM);
        }
        split(&mut st.pieces, addr);
        split(&mut st.pieces, end);
        for p in st.pieces.iter_mut().filter(|p| p.addr >= addr && p.addr + p.len <= end) {
            p.prot = prot;
        }
        0
    }
}

/// The guest-virtual address in `[lo, hi)` that the instruction `code` (at
/// `rip`) accesses, given the vCPU's registers: how the run loop finds
/// where a ring-3 access failed when KVM answers `EFAULT` without saying
/// (a page of a file mapping past the file's end, on this host). `None`
/// when it cannot be decoded or touches nothing there.
pub fn access_in(
    code: &[u8],
    rip: u64,
    r: &kvm_bindings::kvm_regs,
    s: &kvm_bindings::kvm_sregs,
    lo: u64,
    hi: u64,
) -> Option<u64> {
    use iced_x86::{Decoder, DecoderOptions, OpKind, Register};
    let ins = Decoder::with_ip(64, code, rip, DecoderOptions::NONE).decode();
    if ins.is_invalid() {
        return None;
    }
    let value = |reg: Register, _: usize, _: usize| -> Option<u64> {
        let v = match reg {
            Register::ES | Register::CS | Register::SS | Register::DS => return Some(0),
            Register::FS => return Some(s.fs.base),
            Register::GS => return Some(s.gs.base),
            _ => match reg.full_register() {
                Register::RAX => r.rax,
                Register::RBX => r.rbx,
                Register::RCX => r.rcx,
                Register::RDX => r.rdx,
                Register::RSI => r.rsi,
                Register::RDI => r.rdi,
                Register::RSP => r.rsp,
                Register::RBP => r.rbp,
                Register::R8 => r.r8,
                Register::R9 => r.r9,
                Register::R10 => r.r10,
                Register::R11 => r.r11,
                Register::R12 => r.r12,
                Register::R13 => r.r13,
                Register::R14 => r.r14,
                Register::R15 => r.r15,
                Register::RIP => r.rip,
                _ => return None,
            },
        };
        let high = matches!(reg, Register::AH | Register::BH | Register::CH | Register::DH);
        Some(match reg.size() {
            8 => v,
            4 => v & 0xffff_ffff,
            2 => v & 0xffff,
            1 if high => (v >> 8) & 0xff,
            1 => v & 0xff,
            _ => return None,
        })
    };
    (0..ins.op_count())
        .filter(|&i| {
            matches!(
                ins.op_kind(i),
                OpKind::Memory
                    | OpKind::MemorySegSI
                    | OpKind::MemorySegESI
                    | OpKind::MemorySegRSI
                    | OpKind::MemorySegDI
                    | OpKind::MemorySegEDI
                    | OpKind::MemorySegRDI
                    | OpKind::MemoryESDI
                    | OpKind::MemoryESEDI
                    | OpKind::MemoryESRDI
            )
        })
        .filter_map(|i| ins.virtual_address(i, 0, value))
        .find(|a| (lo..hi).contains(a))
}

fn flags_of(may_write: bool) -> u32 {
    if may_write {
        0
    } else {
        kvm_bindings::KVM_MEM_READONLY
    }
}

fn overlaps(p: &Piece, addr: u64, end: u64) -> bool {
    p.addr < end && addr < p.addr + p.len
}

/// Whether the sorted `pieces` cover `[addr, end)` without a hole.
fn covered(pieces: &[Piece], addr: u64, end: u64) -> bool {
    let mut at = addr;
    for p in pieces.iter().filter(|p| overlaps(p, addr, end)) {
        if p.addr > at {
            return false;
        }
        at = at.max(p.addr + p.len);
    }
    at >= end
}

/// Splits the piece that contains `at` (not at its start) in two.
fn split(pieces: &mut Vec<Piece>, at: u64) {
    if let Some(i) = pieces.iter().position(|p| p.addr < at && at < p.addr + p.len) {
        let p = pieces[i];
        let head = at - p.addr;
        pieces[i].len = head;
        pieces.insert(i + 1, Piece { addr: at, len: p.len - head, gpa: p.gpa + head, ..p });
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOMEM)
}

/// Makes a new, free slot for a mapping of `len` bytes (its index in
/// `st.slots`): an inaccessible host range of [`span`]`(len)` bytes
/// registered at the next guest-physical addresses. When every slot
/// number is taken, a free slot is deleted first (KVM then drops every
/// cached translation of the VM); none free: `ENOMEM`.
fn new_slot(st: &mut State, vm: RawFd, len: u64, may_write: bool) -> Result<usize, i32> {
    let size = span(len);
    let gpa = st.next_gpa;
    if gpa.checked_add(size).is_none_or(|e| e > FILE_GPA_END) {
        return Err(libc::ENOMEM);
    }
    if st.slots.len() >= FILE_SLOTS as usize {
        let j = st.slots.iter().position(|s| !st.in_use(s.id)).ok_or(libc::ENOMEM)?;
        delete(st, vm, j);
    }
    let id = (FILE_SLOT_FIRST..FILE_SLOT_FIRST + FILE_SLOTS)
        .find(|id| st.slots.iter().all(|s| s.id != *id))
        .ok_or(libc::ENOMEM)?;
    let ulen = usize::try_from(size).map_err(|_| libc::ENOMEM)?;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a fresh inaccessible anonymous mapping of our own.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), ulen, libc::PROT_NONE, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(errno());
    }
    let host = Arc::new(HostMap { ptr: p as usize, len: ulen });
    // SAFETY: `host` stays mapped while the slot exists (the table holds
    // it; the slot is deleted before the table lets go of it).
    if !unsafe { set_region(vm, id, flags_of(may_write), gpa, size, host.ptr as u64) } {
        return Err(libc::ENOMEM);
    }
    st.next_gpa = gpa + size;
    st.slots.push(Slot { id, gpa, len: size, host, may_write, mapped: 0, broken: false });
    Ok(st.slots.len() - 1)
}

/// Deletes slot `st.slots[j]` (KVM drops every cached translation of the
/// VM), then lets go of its host mapping (unmapped with its last holder;
/// never, for a [`Slot::broken`] one: its range may hold something else).
fn delete(st: &mut State, vm: RawFd, j: usize) {
    let s = st.slots.remove(j);
    // SAFETY: deletes the slot (size 0) before its host mapping may go.
    unsafe { set_region(vm, s.id, 0, s.gpa, 0, 0) };
    if s.broken {
        std::mem::forget(s.host);
    }
}

impl FileMapper for GuestFiles {
    fn map(&self, addr: u64, len: u64, prot: u64, may_write: bool, off: u64, fd: i32) -> Result<(), i32> {
        let g = self.guest.get().and_then(Weak::upgrade).ok_or(libc::ENOMEM)?;
        let vm = self.vm.get().ok_or(libc::ENOMEM)?.as_raw_fd();
        let mut st = self.lock();
        if len == 0 || !len.is_multiple_of(PAGE) {
            return Err(libc::ENOMEM);
        }
        if st.slots.iter().filter(|s| st.in_use(s.id)).count() >= FILE_SLOTS as usize {
            return Err(libc::ENOMEM);
        }
        let hprot = libc::PROT_READ | if may_write { libc::PROT_WRITE } else { 0 };
        let ulen = usize::try_from(len).map_err(|_| libc::ENOMEM)?;
        let hoff = libc::off_t::try_from(off).map_err(|_| libc::EOVERFLOW)?;
        // A free slot of the same access that takes it (the smallest), whose
        // host range no one else holds; else a new one.
        let free = st
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.may_write == may_write
                    && s.len >= len
                    && !s.broken
                    && !st.in_use(s.id)
                    && Arc::strong_count(&s.host) == 1
            })
            .min_by_key(|(_, s)| s.len)
            .map(|(i, _)| i);
        let i = match free {
            Some(i) => i,
            None => new_slot(&mut st, vm, len, may_write)?,
        };
        let (id, gpa, at) = (st.slots[i].id, st.slots[i].gpa, st.slots[i].host.ptr);
        // SAFETY: the start of the free slot's own host range (no leaf
        // points there, no one else holds it) becomes a shared mapping of
        // the checked descriptor, never executable; the kernel refuses a
        // writable one of a read-only descriptor.
        let p = unsafe {
            libc::mmap(at as *mut libc::c_void, ulen, hprot, libc::MAP_SHARED | libc::MAP_FIXED, fd, hoff)
        };
        if p as usize != at {
            let e = errno();
            // The kernel may have unmapped the range before failing:
            // something of the monitor's could be placed there next, so the
            // slot goes and the range is never touched again.
            st.slots[i].broken = true;
            delete(&mut st, vm, i);
            return Err(e);
        }
        st.slots[i].mapped = len;
        let perms = Perms { user: true, write: prot & PROT_WRITE != 0, exec: false, pkey: 0 };
        let mut pt = g.pt.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = pt.set_leaves(&g.phys, addr, gpa, len, perms);
        if matches!(done, Err(PagingError::PoolExhausted(_))) && self.reclaim(&mut pt) {
            // Tables earlier unmaps emptied, reusable after that flush.
            let _ = pt.clear_leaves(&g.phys, addr, len);
            done = pt.set_leaves(&g.phys, addr, gpa, len, perms);
        }
        let done = done.and_then(|replaced| {
            if prot == 0 {
                pt.protect(&g.phys, addr, len, false, false)?;
            }
            Ok(replaced)
        });
        match done {
            Ok(replaced) => {
                if replaced {
                    crate::flush_tlb_fd(vm);
                }
            }
            Err(_) => {
                let _ = pt.clear_leaves(&g.phys, addr, len);
                let _ = pt.prune(&g.phys, addr, len);
                drop(pt);
                // SAFETY: the part of the slot's own range mapped above.
                if unsafe { empty(at as u64, len) } {
                    st.slots[i].mapped = 0;
                    crate::flush_tlb_fd(vm);
                } else {
                    st.slots[i].broken = true;
                    delete(&mut st, vm, i);
                }
                return Err(libc::ENOMEM);
            }
        }
        let i = st.pieces.partition_point(|q| q.addr < addr);
        st.pieces.insert(i, Piece { addr, len, gpa, slot: id, prot });
        Ok(())
    }

    fn unmap(&self, addr: u64, len: u64) -> Result<(), i32> {
        let g = self.guest.get().and_then(Weak::upgrade).ok_or(libc::EINVAL)?;
        let vm = self.vm.get().ok_or(libc::EINVAL)?.as_raw_fd();
        let end = addr.checked_add(len).ok_or(libc::EINVAL)?;
        let mut st = self.lock();
        if !st.pieces.iter().any(|p| overlaps(p, addr, end)) {
            return Ok(());
        }
        {
            let mut pt = g.pt.lock().unwrap_or_else(|e| e.into_inner());
            split(&mut st.pieces, addr);
            split(&mut st.pieces, end);
            for p in st.pieces.iter().filter(|p| p.addr >= addr && p.addr + p.len <= end) {
                pt.clear_leaves(&g.phys, p.addr, p.len).map_err(|_| libc::EINVAL)?;
                // The tables this emptied go back to the pool (after the
                // next full flush: `PageTables::reclaim`).
                pt.prune(&g.phys, p.addr, p.len).map_err(|_| libc::EINVAL)?;
            }
        }
        let (gone, kept): (Vec<Piece>, Vec<Piece>) =
            st.pieces.drain(..).partition(|p| p.addr >= addr && p.addr + p.len <= end);
        st.pieces = kept;
        // The leaves are gone; now the translations KVM (and every vCPU's
        // TLB) may still hold: emptying the pages' host range drops exactly
        // those (the MMU notifier). A slot whose host range someone else
        // holds (a forked child's VM, a copy in flight) cannot be emptied:
        // deleted when no piece uses it, else one flush of the VM.
        let mut flush = false;
        let mut deleted = false;
        for p in &gone {
            let Some(j) = st.slots.iter().position(|s| s.id == p.slot) else { continue };
            let own = Arc::strong_count(&st.slots[j].host) == 1 && !st.slots[j].broken;
            if !st.in_use(p.slot) {
                let s = &mut st.slots[j];
                if s.mapped == 0 {
                    continue; // emptied for an earlier piece of this call
                }
                // SAFETY: the file part of the slot's own host range; no
                // leaf points into the slot any more.
                if own && unsafe { empty(s.host.ptr as u64, s.mapped) } {
                    s.mapped = 0;
                } else {
                    s.broken |= own;
                    delete(&mut st, vm, j);
                    deleted = true;
                }
            } else {
                let s = &mut st.slots[j];
                let at = s.host.ptr as u64 + (p.gpa - s.gpa);
                // SAFETY: part of the slot's own host range whose leaves
                // were just cleared.
                if !(own && unsafe { empty(at, p.len) }) {
                    // Broken: the range may have lost its mapping; the slot
                    // goes once its last piece does, its range untouched.
                    s.broken |= own;
                    flush = true;
                }
            }
        }
        if flush && !deleted {
            crate::flush_tlb_fd(vm);
        }
        if flush || deleted {
            // Every cached translation was just dropped.
            g.pt.lock().unwrap_or_else(|e| e.into_inner()).reclaim();
        }
        Ok(())
    }

    fn sync(&self, addr: u64, len: u64, flags: i32) -> Result<(), i32> {
        let end = addr.checked_add(len).ok_or(libc::ENOMEM)?;
        let st = self.lock();
        if !covered(&st.pieces, addr, end) {
            return Err(libc::ENOMEM);
        }
        for p in st.pieces.iter().filter(|p| overlaps(p, addr, end)) {
            let Some(s) = st.slots.iter().find(|s| s.id == p.slot) else { continue };
            let (a, e) = (addr.max(p.addr), end.min(p.addr + p.len));
            let h = s.host.ptr as u64 + (p.gpa - s.gpa) + (a - p.addr);
            // SAFETY: msync of part of our own mapping; changes no memory.
            if unsafe { libc::msync(h as *mut libc::c_void, (e - a) as usize, flags) } != 0 {
                return Err(errno());
            }
        }
        Ok(())
    }

    fn host(&self, addr: u64, len: u64, write: bool) -> Option<HostRange> {
        let st = self.lock();
        let end = addr.checked_add(len)?;
        let p = st.pieces.iter().find(|p| addr >= p.addr && end <= p.addr + p.len)?;
        if p.prot == 0 || write && p.prot & PROT_WRITE == 0 {
            return None;
        }
        let s = st.slots.iter().find(|s| s.id == p.slot)?;
        let at = s.host.ptr as u64 + (p.gpa - s.gpa) + (addr - p.addr);
        // The mapping stays ours (never reused by the monitor for anything
        // else) as long as the caller holds this, even if the program
        // unmaps it meanwhile from another thread.
        Some(HostRange { addr: at, keep: s.host.clone() })
    }

    fn host_pieces(&self, addr: u64, len: u64, write: bool) -> Vec<(HostRange, u64)> {
        let st = self.lock();
        let Some(end) = addr.checked_add(len) else { return Vec::new() };
        let mut out = Vec::new();
        let mut at = addr;
        // The pieces are sorted; each must begin where the last one ended.
        for p in st.pieces.iter().filter(|p| overlaps(p, addr, end)) {
            if p.addr > at || p.prot == 0 || write && p.prot & PROT_WRITE == 0 {
                break;
            }
            let Some(s) = st.slots.iter().find(|s| s.id == p.slot) else { break };
            let n = end.min(p.addr + p.len) - at;
            let h = s.host.ptr as u64 + (p.gpa - s.gpa) + (at - p.addr);
            out.push((HostRange { addr: h, keep: s.host.clone() }, n));
            at += n;
        }
        out
    }
}

impl Drop for GuestFiles {
    fn drop(&mut self) {
        // Every slot goes before the host mappings it points at (which go
        // with the table, after this).
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(vm) = self.vm.get() {
            for s in &st.slots {
                // SAFETY: deletes the slot (size 0).
                unsafe { set_region(vm.as_raw_fd(), s.id, 0, s.gpa, 0, 0) };
            }
        }
        for s in st.slots.iter().filter(|s| s.broken) {
            // Never unmapped (see `Slot::broken`).
            std::mem::forget(s.host.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(addr: u64, len: u64) -> Piece {
        Piece { addr, len, gpa: FILE_GPA + addr, slot: FILE_SLOT_FIRST, prot: 3 }
    }

    #[test]
    fn the_address_a_faulting_instruction_touches_is_found() {
        let r = kvm_bindings::kvm_regs {
            rax: 0x4000_0000_1000,
            rbx: 0x10,
            rsi: 0x4000_0000_2000,
            ..Default::default()
        };
        let s = kvm_bindings::kvm_sregs::default();
        let (lo, hi) = (0x4000_0000_0000, 0x4010_0000_0000);
        // mov cl, [rax + rbx*2 + 8]
        assert_eq!(access_in(&[0x8a, 0x4c, 0x58, 0x08], 0x1000, &r, &s, lo, hi), Some(0x4000_0000_1028));
        // mov [rax], edx
        assert_eq!(access_in(&[0x89, 0x10], 0x1000, &r, &s, lo, hi), Some(0x4000_0000_1000));
        // rep movsb: the source, [rsi]
        assert_eq!(access_in(&[0xf3, 0xa4], 0x1000, &r, &s, lo, hi), Some(0x4000_0000_2000));
        // add eax, 1: nothing there
        assert_eq!(access_in(&[0x83, 0xc0, 0x01], 0x1000, &r, &s, lo, hi), None);
        assert_eq!(access_in(&[0x0f, 0xff], 0x1000, &r, &s, lo, hi), None, "not an instruction");
    }

    #[test]
    fn pieces_are_cut_and_holes_seen() {
        let mut v = vec![piece(0, 4 * PAGE), piece(6 * PAGE, 2 * PAGE)];
        assert!(covered(&v, PAGE, 3 * PAGE));
        assert!(!covered(&v, 3 * PAGE, 7 * PAGE), "a hole between the pieces");
        split(&mut v, PAGE);
        assert_eq!(v.len(), 3);
        assert_eq!(
            (v[1].addr, v[1].len, v[1].gpa),
            (PAGE, 3 * PAGE, FILE_GPA + PAGE),
            "the tail keeps its gpa"
        );
        split(&mut v, PAGE);
        assert_eq!(v.len(), 3, "a split at a piece's start changes nothing");
    }
}
