//! The program's memory as the monitor sees it, the same on every backend: a
//! set of typed regions of the program's address space ([`RegionKind`]:
//! code, read-only data, data, stack, `brk` heap, arena, ring, boot page,
//! system pages), each backed by host memory the monitor mapped (the process
//! backend maps the domain's memfd; the KVM backend its guest-physical
//! memory, each region at the guest-physical pages it built the page tables
//! for). A program address goes to a host address in one step, without a
//! page-table walk.
//!
//! Every access names a guest address and a length. Both are checked —
//! overflow-safe — to lie inside one region whose kind allows the access
//! ([`RegionKind::access`]: system-call buffers only in data, stack, heap and
//! arena; read-only data only for reading), before any byte moves. Reads copy out (the program may change
//! its memory at any time, so the monitor never keeps a reference into it
//! and never reads the same bytes twice to make a decision).

use thiserror::Error;

/// Why a guest range was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum MemError {
    /// Not inside one region with the needed permission.
    #[error("{len} bytes at {addr:#x} are outside the program's {what} memory")]
    Fault {
        /// Guest address.
        addr: u64,
        /// Length.
        len: u64,
        /// "readable" or "writable".
        what: &'static str,
    },
    /// A string has no terminating NUL within the limit.
    #[error("string at {addr:#x} is longer than {max} bytes")]
    TooLong {
        /// Guest address.
        addr: u64,
        /// Limit.
        max: usize,
    },
}

/// What system calls may do with a region's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Buffers may be read and written (data, bss, stack, heap).
    ReadWrite,
    /// Buffers may only be read (read-only data).
    ReadOnly,
    /// Not usable as a buffer (code, the ring, the boot page).
    Nothing,
}

/// What a region of the program's address space holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    /// The image's code (execute-only, or readable with
    /// `--allow-readable-code`: never a system-call buffer either way).
    Code,
    /// The image's read-only data.
    Rodata,
    /// The image's writable data and bss.
    Data,
    /// The program's stack.
    Stack,
    /// The `brk` heap.
    Brk,
    /// The anonymous-memory arena the libos hands out for `mmap`.
    Arena,
    /// The shared ring (`cabin_abi::ring`): the monitor reads it through
    /// atomics only, never as a buffer.
    Ring,
    /// The boot page (`cabin_abi::boot::BootInfo`, see `crate::boot`).
    BootPage,
    /// Pages the backend needs in the program's address space for itself
    /// (the process backend's loader scratch and entry stub).
    System,
    /// The reservation space: address space the libos hands out for
    /// `PROT_NONE` reservations, without memory. Its `host` is never used:
    /// the parts the program commits are arena pages mapped there
    /// ([`GuestMemory::alias`]), and only those are buffers.
    Reserve,
    /// The tree's shared window (docs/processes.md, "Shared memory"): the
    /// same memfd in every process of the tree, at the same address.
    Shared,
}

impl RegionKind {
    /// What system calls may do with the region's bytes.
    pub const fn access(self) -> Access {
        match self {
            RegionKind::Data
            | RegionKind::Stack
            | RegionKind::Brk
            | RegionKind::Arena
            | RegionKind::Shared => Access::ReadWrite,
            RegionKind::Rodata => Access::ReadOnly,
            RegionKind::Code
            | RegionKind::Ring
            | RegionKind::BootPage
            | RegionKind::System
            | RegionKind::Reserve => Access::Nothing,
        }
    }
}

/// Removes `[start, end)` from the sorted, non-overlapping `list`,
/// splitting ranges that reach past it.
fn cut(list: &mut Vec<Region>, start: u64, end: u64) {
    let mut out = Vec::with_capacity(list.len() + 1);
    for r in list.drain(..) {
        let r_end = r.start + r.len;
        if r_end <= start || r.start >= end {
            out.push(r);
            continue;
        }
        if r.start < start {
            out.push(Region { len: start - r.start, ..r });
        }
        if r_end > end {
            // SAFETY: end - r.start < r.len: inside the range's host mapping.
            let host = unsafe { r.host.add((end - r.start) as usize) };
            out.push(Region { start: end, len: r_end - end, host, kind: r.kind });
        }
    }
    *list = out;
}

/// One guest range.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// First guest address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Host address of the first byte.
    pub host: *mut u8,
    /// What it holds (and so what system-call buffers in it may do).
    pub kind: RegionKind,
}

/// Most aliases remembered (committed parts of the reservation space
/// that are not contiguous with a neighbour): bounds the monitor's memory.
pub const MAX_ALIASES: usize = 4096;

/// The program's memory.
#[derive(Debug)]
pub struct GuestMemory {
    regions: Vec<Region>,
    /// Committed parts of [`RegionKind::Reserve`] regions: guest ranges
    /// whose bytes are arena pages (`host` inside an arena region), sorted,
    /// non-overlapping, adjacent ones merged when their hosts are too.
    aliases: std::sync::RwLock<Vec<Region>>,
    /// Process backend: the process's file-mapping range and the monitor's
    /// end of its file channel (docs/processes.md, "Shared file mappings";
    /// `None`: shared file mappings are the libos's copies).
    file_window: Option<FileWindow>,
}

/// Where a process's shared file mappings live: its file-mapping range
/// `[start, start + len)` and how a mapping gets there. Process backend:
/// the monitor's end of the channel on which the files are sent
/// (`SCM_RIGHTS`), mapped natively by the child. KVM backend: a
/// [`FileMapper`] that maps the file in the monitor and gives the guest the
/// pages through a memory slot.
#[derive(Debug)]
pub struct FileWindow {
    /// First address of the range.
    pub start: u64,
    /// Its length (page multiple).
    pub len: u64,
    /// Process backend: the monitor's end of the child's
    /// `FILEMAP_CHANNEL_FD` socket pair.
    pub channel: Option<std::os::fd::OwnedFd>,
    /// KVM backend: maps and unmaps the files' pages in the guest.
    pub mapper: Option<std::sync::Arc<dyn FileMapper>>,
    /// The host pid whose memory holds the file pages while it runs (the
    /// child process on the process backend, 0 before and once it is
    /// reaped, so a late copy never reaches a reused pid; the monitor
    /// itself on KVM): the monitor never touches file pages itself, and
    /// copies a data buffer there with `process_vm_readv`/
    /// `process_vm_writev` (a page past a file's end is `EFAULT`, never a
    /// fault in the monitor).
    pub pid: std::sync::Arc<std::sync::atomic::AtomicI32>,
}

impl FileWindow {
    /// Whether `[addr, addr+len)` lies wholly in the range.
    pub fn holds(&self, addr: u64, len: u64) -> bool {
        addr >= self.start && addr.checked_add(len).is_some_and(|e| e <= self.start + self.len)
    }

    /// Where the kernel reaches `[addr, addr+len)` (wholly in the range) on
    /// the monitor's behalf: the host pid and address, for
    /// `process_vm_readv`/`process_vm_writev` or a shared host futex.
    /// `None`: no such process now, or (KVM) not inside one mapping with
    /// that access.
    pub fn remote(&self, addr: u64, len: u64, write: bool) -> Option<(i32, HostRange)> {
        let pid = self.pid.load(std::sync::atomic::Ordering::SeqCst);
        if pid <= 0 || !self.holds(addr, len) {
            return None;
        }
        match &self.mapper {
            Some(m) => m.host(addr, len, write).map(|h| (pid, h)),
            // The child's own address: its mappings are its kernel's to
            // keep; a late copy after an unmap is the kernel's EFAULT.
            None => Some((pid, HostRange { addr, keep: std::sync::Arc::new(()) })),
        }
    }
}

impl FileWindow {
    /// [`FileWindow::remote`] for a data buffer that may cross from one
    /// mapping into the next (adjacent mappings, as Linux allows): the host
    /// pid and the host pieces of `[addr, addr+len)` in order, each with
    /// its length, as far as mappings allowing `write` reach without a
    /// hole (a buffer running into an unmapped page is a short transfer,
    /// as natively). `None`: not even its first byte.
    pub fn remote_pieces(&self, addr: u64, len: u64, write: bool) -> Option<(i32, Vec<(HostRange, u64)>)> {
        let pid = self.pid.load(std::sync::atomic::Ordering::SeqCst);
        if pid <= 0 || !self.holds(addr, len) {
            return None;
        }
        match &self.mapper {
            Some(m) => Some(m.host_pieces(addr, len, write)).filter(|v| !v.is_empty()).map(|v| (pid, v)),
            // One range of the child's own address space: its kernel
            // copies across its mappings and stops at a hole.
            None => Some((pid, vec![(HostRange { addr, keep: std::sync::Arc::new(()) }, len)])),
        }
    }
}

/// An address the kernel reaches on the monitor's behalf
/// ([`FileWindow::remote`]), and what keeps it the same memory while it is
/// used: on KVM the monitor's own mapping of the file, which an `munmap`
/// by another thread of the program must not let go (the monitor would
/// map something of its own there next) while a copy or a futex wait on
/// it is in flight.
#[derive(Clone)]
pub struct HostRange {
    /// The address.
    pub addr: u64,
    /// Held as long as `addr` is used.
    pub keep: std::sync::Arc<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for HostRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostRange({:#x})", self.addr)
    }
}

/// The KVM backend's live shared file mappings (docs/kvm.md, "Live shared
/// file mappings"): the monitor maps the file itself (`MAP_SHARED`) and
/// hands the pages to the guest as a memory slot its page tables point at.
/// `service/filemap.rs` decides and records every mapping first (the
/// descriptor's access mode, the kind of file, the policy); the mapper only
/// carries it out in the VM. Errors are errno values for the program.
pub trait FileMapper: Send + Sync + std::fmt::Debug {
    /// Maps `len` bytes of host descriptor `fd` from `off` at `addr` (page
    /// aligned, free, inside the range) with `prot` (`PROT_READ`,
    /// `PROT_WRITE`); `may_write`: the descriptor is open read-write (a
    /// later `mprotect` may make it writable).
    fn map(&self, addr: u64, len: u64, prot: u64, may_write: bool, off: u64, fd: i32) -> Result<(), i32>;
    /// Unmaps whatever is mapped in `[addr, addr+len)` (page aligned).
    fn unmap(&self, addr: u64, len: u64) -> Result<(), i32>;
    /// `msync` of `[addr, addr+len)`: `ENOMEM` unless it is all mapped.
    fn sync(&self, addr: u64, len: u64, flags: i32) -> Result<(), i32>;
    /// The monitor's host address of `[addr, addr+len)` when it lies wholly
    /// in one mapping allowing `write`, with what keeps that mapping alive.
    /// Only for the kernel to access (`process_vm_*`, `futex`): a page past
    /// the file's end would be `SIGBUS` to a plain load.
    fn host(&self, addr: u64, len: u64, write: bool) -> Option<HostRange>;
    /// The monitor's host ranges of `[addr, addr+len)` mapping after
    /// mapping, each with its length, as far as mappings allowing `write`
    /// cover it without a hole (empty: not its first byte); the same use
    /// and keeping as [`FileMapper::host`].
    fn host_pieces(&self, addr: u64, len: u64, write: bool) -> Vec<(HostRange, u64)>;
}

// SAFETY: GuestMemory only holds addresses of mappings that outlive it (see
// `new`); all access goes through volatile copies.
unsafe impl Send for GuestMemory {}
// SAFETY: as for Send; concurrent copies from several threads are as safe
// as from one (the program may write concurrently anyway).
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// # Safety
    ///
    /// Each region's `host .. host+len` must be mapped readable and writable
    /// in this process for the whole life of the returned value (but for
    /// [`RegionKind::Reserve`] regions, whose `host` is never used), and
    /// regions must not overlap in guest addresses.
    pub unsafe fn new(mut regions: Vec<Region>) -> GuestMemory {
        regions.sort_by_key(|r| r.start);
        GuestMemory { regions, aliases: std::sync::RwLock::new(Vec::new()), file_window: None }
    }

    /// Gives the process a file-mapping range and channel ([`FileWindow`]).
    pub fn set_file_window(&mut self, w: FileWindow) {
        self.file_window = Some(w);
    }

    /// The process's file-mapping range and channel, if it has one.
    pub fn file_window(&self) -> Option<&FileWindow> {
        self.file_window.as_ref()
    }

    /// The static region containing `addr`.
    fn region_of(&self, addr: u64) -> Option<&Region> {
        let idx = self.regions.partition_point(|r| r.start <= addr);
        idx.checked_sub(1).and_then(|i| self.regions.get(i)).filter(|r| addr - r.start < r.len)
    }

    /// Records that the program committed `[va, va+len)` of the reservation
    /// space with the arena pages at guest address `target` (the backend
    /// mapped them there, or the libos says it did: either way they are the
    /// program's own arena pages, so a lie only misdirects its own calls).
    /// `va` must lie in one [`RegionKind::Reserve`] region and `target` in
    /// one [`RegionKind::Arena`] region; page aligned.
    pub fn alias(&self, va: u64, len: u64, target: u64) -> Result<(), MemError> {
        let fault = MemError::Fault { addr: va, len, what: "committable" };
        let page = |x: u64| x.is_multiple_of(4096);
        if len == 0 || !page(va) || !page(len) || !page(target) {
            return Err(fault);
        }
        let (Some(end), Some(tend)) = (va.checked_add(len), target.checked_add(len)) else {
            return Err(fault);
        };
        let inside = |r: Option<&Region>, kind, s: u64, e: u64| {
            r.filter(|r| r.kind == kind && s >= r.start && e <= r.start + r.len).copied()
        };
        inside(self.region_of(va), RegionKind::Reserve, va, end).ok_or(fault.clone())?;
        let arena = inside(self.region_of(target), RegionKind::Arena, target, tend).ok_or(fault.clone())?;
        // SAFETY: target - arena.start < arena.len (checked above).
        let host = unsafe { arena.host.add((target - arena.start) as usize) };
        let mut a = self.aliases.write().unwrap_or_else(|e| e.into_inner());
        cut(&mut a, va, end);
        if a.len() >= MAX_ALIASES {
            return Err(fault);
        }
        let i = a.partition_point(|r| r.start < va);
        a.insert(i, Region { start: va, len, host, kind: RegionKind::Arena });
        // Merge with neighbours that continue it in both spaces.
        let joins = |x: &Region, y: &Region| {
            x.start + x.len == y.start && (x.host as usize).wrapping_add(x.len as usize) == y.host as usize
        };
        if i + 1 < a.len() && joins(&a[i], &a[i + 1]) {
            a[i].len += a[i + 1].len;
            a.remove(i + 1);
        }
        if i > 0 && joins(&a[i - 1], &a[i]) {
            a[i - 1].len += a[i].len;
            a.remove(i);
        }
        Ok(())
    }

    /// Forgets any commit of `[va, va+len)` (decommitted, unmapped).
    pub fn unalias(&self, va: u64, len: u64) {
        let mut a = self.aliases.write().unwrap_or_else(|e| e.into_inner());
        cut(&mut a, va, va.saturating_add(len));
    }

    /// The committed parts of the reservation space (tests, `--stats`).
    pub fn aliases(&self) -> Vec<(u64, u64)> {
        self.aliases.read().unwrap_or_else(|e| e.into_inner()).iter().map(|r| (r.start, r.len)).collect()
    }

    /// Bytes from `addr` to the end of the alias covering it, if one does.
    fn alias_left(&self, addr: u64) -> Option<u64> {
        let a = self.aliases.read().unwrap_or_else(|e| e.into_inner());
        let i = a.partition_point(|r| r.start <= addr).checked_sub(1)?;
        let r = a.get(i)?;
        (addr - r.start < r.len).then(|| r.len - (addr - r.start))
    }

    /// An alias covering `[addr, end)`: its host address.
    fn alias_host(&self, addr: u64, end: u64) -> Option<*mut u8> {
        let a = self.aliases.read().unwrap_or_else(|e| e.into_inner());
        let i = a.partition_point(|r| r.start <= addr).checked_sub(1)?;
        let r = a.get(i)?;
        // SAFETY: addr - r.start < r.len: inside the alias's arena range.
        (end <= r.start + r.len).then(|| unsafe { r.host.add((addr - r.start) as usize) })
    }

    /// The same view with one more region (the tree's shared window, added
    /// to a KVM guest's view once it is built).
    ///
    /// # Safety
    ///
    /// As for [`GuestMemory::new`]: `r`'s host range must stay mapped as
    /// long as the returned value, and must not overlap another region.
    pub unsafe fn with_region(self, r: Region) -> GuestMemory {
        let GuestMemory { mut regions, aliases, file_window } = self;
        regions.push(r);
        regions.sort_by_key(|r| r.start);
        GuestMemory { regions, aliases, file_window }
    }

    /// The same view over a copy of its backing memory (a KVM child
    /// process, docs/processes.md): every region and alias whose host range
    /// lies in `[from, from+len)` moved to the same offset from `to`.
    /// `None` when a region or alias (other than a [`RegionKind::Reserve`]
    /// region, whose host is never used, and the [`RegionKind::Shared`]
    /// window, which is the tree's and not copied) lies outside
    /// `[from, from+len)`.
    ///
    /// # Safety
    ///
    /// `to .. to+len` must be mapped readable and writable in this process
    /// for the whole life of the returned value (as [`GuestMemory::new`]).
    pub unsafe fn rebased(&self, from: *const u8, len: usize, to: *mut u8) -> Option<GuestMemory> {
        let (from, to) = (from as usize, to as usize);
        let move_one = |r: &Region| -> Option<Region> {
            if matches!(r.kind, RegionKind::Reserve | RegionKind::Shared) {
                return Some(*r);
            }
            let off = (r.host as usize).checked_sub(from)?;
            let end = off.checked_add(usize::try_from(r.len).ok()?)?;
            (end <= len).then(|| Region { host: (to + off) as *mut u8, ..*r })
        };
        let regions = self.regions.iter().map(move_one).collect::<Option<Vec<_>>>()?;
        let aliases = self.aliases.read().unwrap_or_else(|e| e.into_inner());
        let aliases = aliases.iter().map(move_one).collect::<Option<Vec<_>>>()?;
        // A copy (KVM) has no file channel of its own.
        Some(GuestMemory { regions, aliases: std::sync::RwLock::new(aliases), file_window: None })
    }

    /// Regions, sorted by guest address.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The host address of `[addr, addr+len)` if it lies in one region with
    /// the needed access. A zero-length range is always accepted (and gets a
    /// dangling but non-null pointer).
    pub fn host_range(&self, addr: u64, len: u64, write: bool) -> Result<*mut u8, MemError> {
        let what = if write { "writable" } else { "readable" };
        let fault = MemError::Fault { addr, len, what };
        if len == 0 {
            return Ok(std::ptr::NonNull::<u8>::dangling().as_ptr());
        }
        let end = addr.checked_add(len).ok_or(fault.clone())?;
        let idx = self.regions.partition_point(|r| r.start <= addr);
        let r = idx.checked_sub(1).and_then(|i| self.regions.get(i)).ok_or(fault.clone())?;
        if r.kind == RegionKind::Reserve {
            return self.alias_host(addr, end).ok_or(fault);
        }
        let r_end = r.start + r.len;
        if end > r_end {
            return Err(fault);
        }
        let ok = match r.kind.access() {
            Access::ReadWrite => true,
            Access::ReadOnly => !write,
            Access::Nothing => false,
        };
        if !ok {
            return Err(fault);
        }
        let off = usize::try_from(addr - r.start).map_err(|_| fault.clone())?;
        // SAFETY: off < r.len, so the result stays inside the mapping.
        Ok(unsafe { r.host.add(off) })
    }

    /// The host pieces of `[addr, addr+len)`, in guest order, when every
    /// byte of it is program memory with the needed access, whatever its
    /// layout: across adjacent regions and across committed runs of the
    /// reservation space that are not contiguous in the arena. Pieces that
    /// continue each other in host memory are merged; a zero-length range
    /// has no piece. Every piece lies inside a static region's host mapping
    /// (an alias's host is inside an arena region), which stays mapped for
    /// the life of `self`: a later `unalias` (the program unmapping) only
    /// makes the pieces point at arena pages the program no longer uses,
    /// never at memory the monitor lost. At most one piece per region and
    /// per alias ([`MAX_ALIASES`]): bounded.
    pub fn host_pieces(&self, addr: u64, len: u64, write: bool) -> Result<HostPieces, MemError> {
        let what = if write { "writable" } else { "readable" };
        let fault = MemError::Fault { addr, len, what };
        let end = addr.checked_add(len).ok_or(fault.clone())?;
        let mut out: Vec<(*mut u8, usize)> = Vec::new();
        let aliases = self.aliases.read().unwrap_or_else(|e| e.into_inner());
        let mut a = addr;
        while a < end {
            let r = self.region_of(a).ok_or(fault.clone())?;
            let (host, avail) = if r.kind == RegionKind::Reserve {
                let i = aliases.partition_point(|x| x.start <= a).checked_sub(1).ok_or(fault.clone())?;
                let x = aliases.get(i).filter(|x| a - x.start < x.len).ok_or(fault.clone())?;
                // SAFETY: a - x.start < x.len: inside the alias's arena range.
                (unsafe { x.host.add((a - x.start) as usize) }, x.len - (a - x.start))
            } else {
                let ok = match r.kind.access() {
                    Access::ReadWrite => true,
                    Access::ReadOnly => !write,
                    Access::Nothing => false,
                };
                if !ok {
                    return Err(fault);
                }
                // SAFETY: a - r.start < r.len: inside the region's mapping.
                (unsafe { r.host.add((a - r.start) as usize) }, r.len - (a - r.start))
            };
            let n = avail.min(end - a);
            let n_us = usize::try_from(n).map_err(|_| fault.clone())?;
            match out.last_mut() {
                Some(last) if (last.0 as usize).wrapping_add(last.1) == host as usize => last.1 += n_us,
                _ => out.push((host, n_us)),
            }
            a += n;
        }
        Ok(HostPieces(out))
    }

    /// Copies `out.len()` bytes from guest `addr`.
    pub fn read_into(&self, addr: u64, out: &mut [u8]) -> Result<(), MemError> {
        let p = match self.host_range(addr, out.len() as u64, false) {
            Ok(p) => p,
            Err(e) => {
                // Several pieces (or none valid: the first error stands).
                let pieces = self.host_pieces(addr, out.len() as u64, false).map_err(|_| e)?;
                pieces.copy_in(out);
                return Ok(());
            }
        };
        // SAFETY: host_range checked that the source lies in a mapped
        // region; `out` is a distinct host buffer.
        unsafe { volatile_copy(p, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copies `len` bytes from guest `addr` into a new buffer.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemError> {
        let mut v = vec![0u8; len];
        self.read_into(addr, &mut v)?;
        Ok(v)
    }

    /// Copies `data` to guest `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let p = match self.host_range(addr, data.len() as u64, true) {
            Ok(p) => p,
            Err(e) => {
                let pieces = self.host_pieces(addr, data.len() as u64, true).map_err(|_| e)?;
                pieces.copy_out(data);
                return Ok(());
            }
        };
        // SAFETY: host_range checked that the destination lies in a mapped,
        // writable region; `data` is a distinct host buffer.
        unsafe { volatile_copy(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// Reads a little-endian u64.
    pub fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read_into(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian u64.
    pub fn write_u64(&self, addr: u64, v: u64) -> Result<(), MemError> {
        self.write(addr, &v.to_le_bytes())
    }

    /// Copies `len` bytes from guest `addr` whatever the region's kind
    /// (code included, still bounds-checked): for the monitor's own
    /// diagnostics (the instruction at a fault), never for a system call's
    /// buffer.
    pub fn peek(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemError> {
        let fault = MemError::Fault { addr, len: len as u64, what: "mapped" };
        let end = addr.checked_add(len as u64).ok_or(fault.clone())?;
        let idx = self.regions.partition_point(|r| r.start <= addr);
        let r = idx.checked_sub(1).and_then(|i| self.regions.get(i)).ok_or(fault.clone())?;
        if end > r.start + r.len {
            return Err(fault);
        }
        let off = usize::try_from(addr - r.start).map_err(|_| fault.clone())?;
        let mut out = vec![0u8; len];
        // SAFETY: [addr, end) lies inside region `r`, mapped for the life of
        // `self` (see `new`); `out` is a distinct host buffer.
        unsafe { volatile_copy(r.host.add(off), out.as_mut_ptr(), len) };
        Ok(out)
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without NUL):
    /// `TooLong` when none of the first `max + 1` bytes is a NUL. The string
    /// may run across adjacent readable regions; no byte past the first
    /// `max + 1` is read.
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<Vec<u8>, MemError> {
        match self.read_until_nul(addr, max.saturating_add(1))? {
            (s, true) => Ok(s),
            (_, false) => Err(MemError::TooLong { addr, max }),
        }
    }

    /// Reads bytes from `addr` up to the first NUL or `limit` bytes,
    /// whichever comes first, across adjacent readable regions (as the
    /// kernel's `strncpy_from_user`). Returns the bytes before the NUL and
    /// whether a NUL ended them; never more than `limit` bytes.
    pub fn read_until_nul(&self, addr: u64, limit: usize) -> Result<(Vec<u8>, bool), MemError> {
        const CHUNK: usize = 256;
        // One allocation for the usual path (a chunk), grown for longer ones.
        let mut out = Vec::with_capacity(CHUNK.min(limit));
        let mut a = addr;
        while out.len() < limit {
            let idx = self.regions.partition_point(|r| r.start <= a);
            let r = idx.checked_sub(1).and_then(|i| self.regions.get(i));
            let avail = match r {
                // Committed reservation space: as far as the alias reaches.
                Some(r) if a - r.start < r.len && r.kind == RegionKind::Reserve => match self.alias_left(a) {
                    Some(left) => left,
                    None => return Err(MemError::Fault { addr: a, len: 1, what: "readable" }),
                },
                Some(r) if a - r.start < r.len && r.kind.access() != Access::Nothing => r.len - (a - r.start),
                _ => return Err(MemError::Fault { addr: a, len: 1, what: "readable" }),
            };
            // Stay inside the region and inside the limit.
            let chunk = (limit - out.len()).min(CHUNK).min(usize::try_from(avail).unwrap_or(CHUNK));
            let mut buf = [0u8; CHUNK];
            self.read_into(a, &mut buf[..chunk])?;
            if let Some(n) = buf[..chunk].iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..n]);
                return Ok((out, true));
            }
            out.extend_from_slice(&buf[..chunk]);
            a = match a.checked_add(chunk as u64) {
                Some(next) => next,
                None => break,
            };
        }
        Ok((out, false))
    }
}

/// The host pieces of a checked guest range ([`GuestMemory::host_pieces`]):
/// `(host address, length)` in guest order, each inside a mapping that
/// outlives the [`GuestMemory`] that made it. Only `GuestMemory` makes one,
/// so holding one is proof of the check.
#[derive(Debug, Default)]
pub struct HostPieces(Vec<(*mut u8, usize)>);

// SAFETY: the pieces are addresses in mappings that outlive the memory
// (see `host_pieces`); copies through them are volatile-safe from any thread.
unsafe impl Send for HostPieces {}

impl HostPieces {
    /// The pieces.
    pub fn as_slice(&self) -> &[(*mut u8, usize)] {
        &self.0
    }

    /// Total bytes.
    pub fn total(&self) -> usize {
        self.0.iter().map(|p| p.1).sum()
    }

    /// The pieces as host iovecs for the first `limit` bytes and at most
    /// `max` iovecs (a prefix: a short transfer is legal).
    pub fn iovecs(&self, limit: usize, max: usize) -> Vec<libc::iovec> {
        let mut left = limit;
        let mut v = Vec::with_capacity(self.0.len().min(max));
        for &(p, n) in self.0.iter().take(max) {
            if left == 0 {
                break;
            }
            let n = n.min(left);
            v.push(libc::iovec { iov_base: p.cast(), iov_len: n });
            left -= n;
        }
        v
    }

    /// Copies `data` (at most the pieces' total) into the pieces, in order.
    pub fn copy_out(&self, mut data: &[u8]) {
        for &(p, n) in &self.0 {
            let k = n.min(data.len());
            // SAFETY: the piece is `n >= k` bytes of checked, mapped
            // program memory (see `host_pieces`); `data` is a host buffer.
            unsafe { volatile_copy(data.as_ptr(), p, k) };
            data = &data[k..];
            if data.is_empty() {
                break;
            }
        }
    }

    /// Fills `out` (at most the pieces' total) from the pieces, in order.
    pub fn copy_in(&self, mut out: &mut [u8]) {
        for &(p, n) in &self.0 {
            let k = n.min(out.len());
            let (head, tail) = std::mem::take(&mut out).split_at_mut(k);
            // SAFETY: as for copy_out, the other way.
            unsafe { volatile_copy(p, head.as_mut_ptr(), k) };
            out = tail;
            if out.is_empty() {
                break;
            }
        }
    }
}

/// Byte copy that the compiler may not merge with other accesses (one side
/// is memory the program can change at any time).
///
/// # Safety
///
/// `src` must be readable and `dst` writable for `len` bytes; they must not
/// overlap.
unsafe fn volatile_copy(src: *const u8, dst: *mut u8, len: usize) {
    // A plain memcpy is what we want for speed; the copy is made exactly
    // once and the result only ever used from `dst`, so tearing by a
    // concurrent writer cannot make the monitor read two different values.
    // SAFETY: forwarded from the caller.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Views a plain-old-data value as bytes (the one place the monitor does
/// this). Only used for kernel ABI structs made of integers.
pub fn pod_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is Copy plain data (callers pass libc structs of integers);
    // reading its bytes, padding included, is what the kernel does too.
    // Padding bytes of libc structs we fill are zero-initialised by callers.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn reservation_aliases_reach_arena_pages_only() {
        let buf: &'static mut [u8] = Box::leak(vec![0u8; 8 * 4096].into_boxed_slice());
        let p = buf.as_mut_ptr();
        const ARENA: u64 = 0x100_0000;
        const RESV: u64 = 0x1000_0000;
        let regions = vec![
            Region { start: 0x1000, len: 4096, host: p, kind: RegionKind::Code },
            // SAFETY: inside the leaked buffer.
            Region { start: ARENA, len: 4 * 4096, host: unsafe { p.add(4096) }, kind: RegionKind::Arena },
            Region { start: RESV, len: 1 << 30, host: std::ptr::null_mut(), kind: RegionKind::Reserve },
        ];
        // SAFETY: the buffer is leaked (lives forever); Reserve has no host.
        let m = unsafe { GuestMemory::new(regions) };
        assert!(m.read(RESV, 8).is_err(), "uncommitted reservation is no buffer");
        assert!(m.alias(RESV, 4096, 0x1000).is_err(), "code is not an arena page");
        assert!(m.alias(ARENA, 4096, ARENA).is_err(), "only the reservation space takes aliases");
        assert!(m.alias(RESV, 8 * 4096, ARENA).is_err(), "past the arena");
        assert!(m.alias(RESV + 1, 4096, ARENA).is_err());
        m.alias(RESV + 4096, 4096, ARENA + 4096).expect("commit");
        m.alias(RESV, 4096, ARENA).expect("commit");
        assert_eq!(m.aliases(), vec![(RESV, 2 * 4096)], "contiguous in both spaces: one");
        m.write(RESV + 4090, b"0123456789").expect("across the two pages");
        assert_eq!(m.read(ARENA + 4090, 10).expect("arena"), b"0123456789");
        m.unalias(RESV, 4096);
        assert!(m.read(RESV, 1).is_err());
        assert_eq!(m.read(RESV + 4096, 4).expect("still committed"), b"6789");
        // A path or name the program keeps in committed reservation space
        // (a thread's malloc arena) is read like any other string.
        m.write(RESV + 4200, b"in a commit\0").expect("a committed page is writable");
        assert_eq!(m.read_cstr(RESV + 4200, 64).expect("a string in a commit"), b"in a commit");
    }

    /// A buffer across two commits that are adjacent in the reservation
    /// space but not in the arena, and across adjacent plain regions: one
    /// host piece per run, every piece checked; the single-range check
    /// refuses it (what killed the HTTP server), the pieces serve it.
    #[test]
    fn host_pieces_cross_non_contiguous_commits_and_regions() {
        let buf: &'static mut [u8] = Box::leak(vec![0u8; 8 * 4096].into_boxed_slice());
        let p = buf.as_mut_ptr();
        const ARENA: u64 = 0x100_0000;
        const RESV: u64 = 0x1000_0000;
        let regions = vec![
            Region { start: ARENA - 4096, len: 4096, host: p, kind: RegionKind::Data },
            // SAFETY: inside the leaked buffer.
            Region { start: ARENA, len: 4 * 4096, host: unsafe { p.add(4096) }, kind: RegionKind::Arena },
            Region {
                start: ARENA + 4 * 4096,
                len: 4096,
                // SAFETY: inside the leaked buffer.
                host: unsafe { p.add(5 * 4096) },
                kind: RegionKind::Rodata,
            },
            Region { start: RESV, len: 1 << 30, host: std::ptr::null_mut(), kind: RegionKind::Reserve },
        ];
        // SAFETY: the buffer is leaked (lives forever); Reserve has no host.
        let m = unsafe { GuestMemory::new(regions) };
        // Guest RESV | RESV+4096 backed by arena pages 3 then 1: adjacent
        // in the guest, apart (and out of order) in the arena.
        m.alias(RESV, 4096, ARENA + 3 * 4096).expect("commit");
        m.alias(RESV + 4096, 4096, ARENA + 4096).expect("commit");
        assert_eq!(m.aliases().len(), 2, "not contiguous in the arena: two aliases");
        assert!(m.host_range(RESV + 4000, 200, true).is_err(), "one alias cannot cover it");
        let pc = m.host_pieces(RESV + 4000, 200, true).expect("two valid pieces");
        assert_eq!(pc.as_slice().len(), 2);
        assert_eq!(pc.as_slice()[0].1, 96);
        assert_eq!(pc.as_slice()[1].1, 104);
        assert_eq!(pc.total(), 200);
        // SAFETY: inside the leaked buffer.
        assert_eq!(pc.as_slice()[1].0, unsafe { p.add(2 * 4096) }, "second piece: arena page 1");
        let data: Vec<u8> = (0..200u8).collect();
        m.write(RESV + 4000, &data).expect("write through the pieces");
        assert_eq!(m.read(RESV + 4000, 200).expect("read through the pieces"), data);
        assert_eq!(m.read(ARENA + 3 * 4096 + 4000, 96).expect("arena page 3"), &data[..96]);
        assert_eq!(m.read(ARENA + 4096, 104).expect("arena page 1"), &data[96..]);
        // iovecs: a prefix by bytes and by count.
        let v = pc.iovecs(150, 1024);
        assert_eq!((v.len(), v[1].iov_len), (2, 54));
        assert_eq!(pc.iovecs(200, 1).len(), 1, "at most max iovecs");
        // Past the commit: the whole range fails, not a prefix.
        assert!(m.host_pieces(RESV + 4096, 4097, false).is_err(), "uncommitted tail");
        m.unalias(RESV + 4096, 4096);
        assert!(m.host_pieces(RESV + 4000, 200, true).is_err(), "a piece gone");
        // Plain regions: data | arena are one host run (merged); rodata
        // after the arena is readable, never writable.
        let pc = m.host_pieces(ARENA - 8, 4 * 4096 + 16, false).expect("three regions readable");
        assert_eq!(pc.as_slice().len(), 1, "host-contiguous pieces merge");
        assert!(m.host_pieces(ARENA - 8, 4 * 4096 + 16, true).is_err(), "rodata is not writable");
        // Zero length: no piece; lengths near u64::MAX: a fault, no loop.
        assert_eq!(m.host_pieces(0, 0, true).expect("empty").as_slice().len(), 0);
        assert!(m.host_pieces(ARENA, u64::MAX, false).is_err());
        assert!(m.host_pieces(u64::MAX - 2, 3, false).is_err());
        assert!(m.host_pieces(ARENA, u64::MAX - ARENA, false).is_err());
    }

    /// A memory of two regions backed by a leaked host buffer (tests only).
    pub(crate) fn test_memory() -> GuestMemory {
        let buf: &'static mut [u8] = Box::leak(vec![0u8; 3 * 4096].into_boxed_slice());
        let p = buf.as_mut_ptr();
        let regions = vec![
            Region { start: 0x1000, len: 4096, host: p, kind: RegionKind::Data },
            // SAFETY: inside the leaked buffer.
            Region { start: 0x10000, len: 4096, host: unsafe { p.add(4096) }, kind: RegionKind::Rodata },
            // SAFETY: inside the leaked buffer.
            Region { start: 0x20000, len: 4096, host: unsafe { p.add(8192) }, kind: RegionKind::System },
        ];
        // SAFETY: the buffer is leaked (lives forever) and regions do not overlap.
        unsafe { GuestMemory::new(regions) }
    }

    #[test]
    fn checked_ranges() {
        let m = test_memory();
        assert!(m.write(0x1000, &[1, 2, 3]).is_ok());
        assert_eq!(m.read(0x1000, 3).unwrap(), vec![1, 2, 3]);
        assert!(m.read(0x1ffe, 2).is_ok());
        assert!(m.read(0x1fff, 2).is_err(), "crosses the end");
        assert!(m.read(0xfff, 2).is_err(), "starts before");
        assert!(m.read(u64::MAX - 1, 4).is_err(), "overflow");
        assert!(m.write(0x10000, &[1]).is_err(), "read-only");
        assert!(m.read(0x10000, 1).is_ok());
        assert!(m.read(0x20000, 1).is_err(), "no access");
        assert!(m.read(0xdead_0000, 0).is_ok(), "empty range");
        assert!(m.host_range(0x1000, u64::MAX, false).is_err());
    }

    #[test]
    fn strings() {
        let m = test_memory();
        m.write(0x1000, b"hello\0").unwrap();
        assert_eq!(m.read_cstr(0x1000, 100).unwrap(), b"hello");
        m.write(0x1000, &[b'a'; 4096]).unwrap();
        assert!(m.read_cstr(0x1000, 8192).is_err(), "runs off the region");
        assert!(matches!(m.read_cstr(0x1000, 10), Err(MemError::TooLong { .. })));
    }

    /// Three adjacent readable regions (read-write, read-only, read-write)
    /// of one page each at 0x1000, then a gap, then one unusable page, all
    /// backed by a leaked host buffer (tests only).
    pub(crate) fn adjacent_memory() -> GuestMemory {
        let buf: &'static mut [u8] = Box::leak(vec![0u8; 4 * 4096].into_boxed_slice());
        let p = buf.as_mut_ptr();
        let at = |i: usize| {
            // SAFETY: i < 4, inside the leaked buffer of four pages.
            unsafe { p.add(i * 4096) }
        };
        let regions = vec![
            Region { start: 0x1000, len: 4096, host: at(0), kind: RegionKind::Data },
            Region { start: 0x2000, len: 4096, host: at(1), kind: RegionKind::Rodata },
            Region { start: 0x3000, len: 4096, host: at(2), kind: RegionKind::Data },
            Region { start: 0x5000, len: 4096, host: at(3), kind: RegionKind::System },
        ];
        // SAFETY: the buffer is leaked (lives forever) and regions do not overlap.
        unsafe { GuestMemory::new(regions) }
    }

    /// Writes `data` at `addr` through the host side, whatever the
    /// region's access (the read-only page of `adjacent_memory`).
    pub(crate) fn poke(m: &GuestMemory, addr: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            let a = addr + i as u64;
            let r = m.regions().iter().find(|r| a >= r.start && a < r.start + r.len).unwrap();
            // SAFETY: inside the region's leaked host buffer.
            unsafe { *r.host.add((a - r.start) as usize) = *b };
        }
    }

    #[test]
    fn strings_across_adjacent_regions_keep_their_limit() {
        let m = adjacent_memory();
        // 20 bytes before the end of the first region, NUL 10 bytes into the next.
        poke(&m, 0x2000 - 20, &[b'x'; 30]);
        poke(&m, 0x2000 + 10, &[0]);
        assert_eq!(m.read_cstr(0x2000 - 20, 30).unwrap(), vec![b'x'; 30]);
        assert_eq!(m.read_cstr(0x2000 - 20, 29), Err(MemError::TooLong { addr: 0x2000 - 20, max: 29 }));
        assert_eq!(m.read_cstr(0x2000 - 20, 15), Err(MemError::TooLong { addr: 0x2000 - 20, max: 15 }));
        // Never longer than its limit, wherever the NUL lies.
        for max in 0..40 {
            if let Ok(s) = m.read_cstr(0x2000 - 20, max) {
                assert!(s.len() <= max, "{} bytes for max {max}", s.len());
            }
        }
        // A prefix of at most `limit` bytes, across the boundary.
        assert_eq!(m.read_until_nul(0x2000 - 5, 15).unwrap(), (vec![b'x'; 15], false));
        assert_eq!(m.read_until_nul(0x2000 - 5, 16).unwrap(), (vec![b'x'; 15], true));
        // Across three regions (read-write, read-only, read-write).
        poke(&m, 0x1000, &[b'y'; 3 * 4096]);
        poke(&m, 0x3000 + 100, &[0]);
        assert_eq!(m.read_cstr(0x1f00, 8192).unwrap().len(), 0x100 + 4096 + 100);
        assert!(matches!(m.read_cstr(0x1f00, 4096), Err(MemError::TooLong { .. })));
        // Running into the gap faults; a string that ends before it does not.
        poke(&m, 0x3000 + 100, b"y");
        assert!(matches!(m.read_cstr(0x3ff0, 100), Err(MemError::Fault { addr: 0x4000, .. })));
        assert!(matches!(m.read_cstr(0x3ff0, 10), Err(MemError::TooLong { .. })), "stops at its limit");
        assert!(matches!(m.read_cstr(0x5000, 10), Err(MemError::Fault { .. })), "unusable region");
        assert!(matches!(m.read_cstr(u64::MAX, 10), Err(MemError::Fault { .. })));
        assert_eq!(m.read_until_nul(0x1000, 0).unwrap(), (Vec::new(), false));
    }
}
