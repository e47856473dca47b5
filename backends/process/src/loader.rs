//! The domain's memory for the process backend: which ranges exist, where
//! they live in the shared memfd, and their initial contents (image
//! segments, boot page, ring, initial stack).
//!
//! All domain memory is one memfd, mapped `MAP_SHARED` both in the monitor
//! (read-write, one contiguous view, through which [`GuestMemory`] reads
//! and writes program memory) and in the child (each range at its domain
//! address with its own protection: code `PROT_EXEC` only, read-only data
//! `PROT_READ`, the rest read-write).
//!
//! The memfd is the program's memory bound ([`MemoryBound`]: `[limits]
//! memory`, `--mem`, or the default, as on KVM): image pages, boot page,
//! ring, loader scratch and stack are taken off it, an eighth of the rest
//! becomes the `brk` range and the remainder the arena, and the memfd is
//! sealed against growing. The libos is told (`BOOT_FLAG_MEMORY_LIMIT`) to
//! stop the program when it asks for more (and hands the unused part of the
//! `brk` range to `mmap` once the arena runs out, so the split costs the
//! program nothing).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use cabin_abi::boot::{
    auxv, BootInfo, AT_CABIN_BOOT, BOOT_FLAG_FORCE_TRAP, BOOT_FLAG_MEMORY_LIMIT, BOOT_FLAG_PROCESS,
    BOOT_MAGIC, BOOT_VERSION, PROTECTABLE_RANGES,
};
use cabin_abi::layout::LOWEST_PROGRAM_ADDRESS;
use cabin_abi::ring::RingPtr;
use cabin_image::elf::{ElfFile, ElfKind, PF_R, PF_W, PF_X, PT_GNU_RELRO};

use cabin_policy::limits::MemoryBound;

use crate::layout::*;
use cabin_monitor::config::RunError;
use cabin_monitor::domain::DomainSpec;
use cabin_monitor::memory::{GuestMemory, Region, RegionKind};
use cabin_monitor::shm::SharedWindow;

/// One range of the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRange {
    /// Domain address (page aligned).
    pub guest: u64,
    /// Length (page multiple).
    pub len: u64,
    /// `PROT_*` for the child's mapping.
    pub prot: i32,
    /// Offset in the memfd.
    pub offset: u64,
    /// What it holds.
    pub kind: RegionKind,
}

/// The domain's memory, mapped in the monitor.
#[derive(Debug)]
pub struct DomainMemory {
    /// The memfd (closed in the child before the program runs).
    pub memfd: OwnedFd,
    /// The monitor's view of the whole memfd.
    pub host_base: *mut u8,
    /// Its length.
    pub total: u64,
    /// The ranges, in the order the child maps them.
    pub ranges: Vec<MapRange>,
    /// Domain address of the program's entry (the libos's `cabin_start`).
    pub entry: u64,
    /// Initial stack pointer (points at `argc`).
    pub sp: u64,
    /// Length of the `brk` range.
    pub brk_len: u64,
    /// Length of the arena.
    pub arena_len: u64,
    /// The bound on the program's memory the memfd was sized from.
    pub bound: MemoryBound,
    /// The ranges whose protection the program may change
    /// ([`BootInfo::protectable`]; the seccomp filter is built from them).
    pub protectable: [[u64; 2]; PROTECTABLE_RANGES],
    /// Offset of the arena in the memfd (it is the memfd's last range, so
    /// every offset from here on is arena or past the end).
    pub arena_file_offset: u64,
}

// SAFETY: `host_base` is the monitor's shared mapping of the memfd, alive
// until drop; the monitor only reaches program memory through it with
// checked, volatile-or-atomic copies (GuestMemory, RingPtr, the boot page),
// which are made for the program's concurrent writes, so sharing the
// pointer between the monitor's threads adds nothing.
unsafe impl Sync for DomainMemory {}
// SAFETY: as for Sync: the mapping is not tied to the thread that made it.
unsafe impl Send for DomainMemory {}

impl Drop for DomainMemory {
    fn drop(&mut self) {
        // SAFETY: host_base/total is the mapping created in `build`, and no
        // reference into it outlives the DomainMemory (the GuestMemory and
        // RingPtr users are dropped first: see `ProcessDomain`).
        unsafe { libc::munmap(self.host_base.cast(), self.total as usize) };
    }
}

impl DomainMemory {
    /// The monitor's host pointer for domain address `guest` (which must lie
    /// in one of the ranges).
    pub fn host(&self, guest: u64) -> Option<*mut u8> {
        let r = self.ranges.iter().find(|r| guest >= r.guest && guest - r.guest < r.len)?;
        // SAFETY: offset + (guest - r.guest) < total by construction.
        Some(unsafe { self.host_base.add((r.offset + guest - r.guest) as usize) })
    }

    /// Checked access to program memory for the service.
    pub fn guest_memory(&self) -> GuestMemory {
        self.guest_memory_with(None)
    }

    /// The monitor's view, with the tree's shared window (docs/processes.md,
    /// "Shared memory") at its address when there is one: a buffer there is
    /// the window's bytes at the same offset, whatever the process mapped.
    pub fn guest_memory_with(&self, shared: Option<&std::sync::Arc<SharedWindow>>) -> GuestMemory {
        let mut regions: Vec<Region> = self
            .ranges
            .iter()
            .map(|r| Region {
                start: r.guest,
                len: r.len,
                // SAFETY: offset < total.
                host: unsafe { self.host_base.add(r.offset as usize) },
                kind: r.kind,
            })
            .collect();
        // The reservation space: no host pages of its own (committed parts
        // are aliases of arena pages, `GuestMemory::alias`).
        regions.push(Region {
            start: RESERVE_BASE,
            len: RESERVE_LEN,
            host: std::ptr::null_mut(),
            kind: RegionKind::Reserve,
        });
        if let Some(w) = shared {
            regions.push(Region { start: w.start(), len: w.len(), host: w.host(), kind: RegionKind::Shared });
        }
        // SAFETY: the mapping lives as long as the DomainMemory, which its
        // ProcessDomain keeps alive longer than the GuestMemory (declared
        // before it, so dropped first), and so does the shared window (an
        // Arc the ProcessDomain holds); ranges do not overlap (laid out one
        // after the other; the window lies above the reservation space).
        unsafe { GuestMemory::new(regions) }
    }

    /// Length of the process's file-mapping range (docs/processes.md,
    /// "Shared file mappings"): the memory bound, at most
    /// [`FILEMAP_MAX`], in pages.
    pub fn filemap_len(&self) -> u64 {
        page_down(self.bound.bytes).min(FILEMAP_MAX)
    }

    /// The ring, through the monitor's view.
    pub fn ring(&self) -> RingPtr {
        let p = self.host(RING_ADDR).unwrap_or(std::ptr::null_mut());
        // SAFETY: the ring range is RING_SIZE >= RING_BYTES, page aligned,
        // mapped for the life of the DomainMemory.
        unsafe { RingPtr::new(p) }
    }

    /// The boot page, through the monitor's view.
    pub fn boot(&self) -> *mut BootInfo {
        self.host(BOOT_ADDR).unwrap_or(std::ptr::null_mut()).cast()
    }

    /// Bytes of the domain that the program cannot grow: image pages, boot
    /// page, ring, loader scratch, entry stub and stack.
    pub fn fixed_bytes(&self) -> u64 {
        self.total - self.brk_len - self.arena_len
    }

    /// For `--stats`: the host side of the domain's memory, the memfd's size
    /// and what the host actually committed to it (checked against the
    /// limit).
    pub fn stats_json(&self) -> serde_json::Value {
        serde_json::json!({
            "limit_bytes": self.bound.bytes,
            "domain_bytes": self.total,
            "committed_bytes": self.committed_bytes(),
            "brk_bytes": self.brk_len,
            "arena_bytes": self.arena_len,
        })
    }

    /// Bytes of the memfd the host has committed so far (its allocated
    /// blocks), `None` if `fstat` fails.
    pub fn committed_bytes(&self) -> Option<u64> {
        // SAFETY: an all-zero `stat` is a valid value to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes one `stat` into a local.
        if unsafe { libc::fstat(self.memfd.as_raw_fd(), &mut st) } != 0 {
            return None;
        }
        Some((st.st_blocks as u64).saturating_mul(512))
    }
}

/// Sizes of the `brk` range and the arena for a domain whose other parts
/// take `fixed` bytes, so that everything fits in `bound`: an eighth of
/// what is left is the `brk` range (at least a page, at most [`BRK_SIZE`]),
/// the rest the arena.
pub fn memory_split(fixed: u64, bound: &MemoryBound) -> Result<(u64, u64), RunError> {
    const MIN_LEFT: u64 = 16 * PAGE;
    let limit = bound.bytes;
    let left = page_down(limit.saturating_sub(fixed));
    if left < MIN_LEFT {
        return Err(RunError::Layout(format!(
            "the memory bound of {limit} bytes ({}) leaves no room for the program's heap: the image, its \
             stack and the monitor's pages already take {fixed} bytes; help: raise it to at least {} \
             ([limits] memory or --mem)",
            bound.source,
            fixed + MIN_LEFT
        )));
    }
    let brk = page_down(left / 8).clamp(PAGE, BRK_SIZE);
    Ok((brk, left - brk))
}

fn prot_of(flags: u32) -> (i32, RegionKind) {
    if flags & PF_X != 0 && flags & PF_R != 0 {
        // Built with --allow-readable-code: the image says its code is read
        // as data. Still never a valid system-call buffer.
        (libc::PROT_READ | libc::PROT_EXEC, RegionKind::Code)
    } else if flags & PF_X != 0 {
        (libc::PROT_EXEC, RegionKind::Code)
    } else if flags & PF_W != 0 {
        (libc::PROT_READ | libc::PROT_WRITE, RegionKind::Data)
    } else {
        (libc::PROT_READ, RegionKind::Rodata)
    }
}

/// Lays out and fills the domain for `elf`.
pub fn build(elf: &ElfFile<'_>, spec: &DomainSpec) -> Result<DomainMemory, RunError> {
    let layout_err = |m: String| RunError::Layout(m);
    let bias = match elf.kind {
        ElfKind::Exec => 0,
        ElfKind::StaticPie => PIE_BASE.wrapping_sub(page_down(elf.min_vaddr())),
    };
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut ranges = Vec::new();
    let mut offset = 0u64;
    let mut copies = Vec::new(); // (memfd offset, file range)
                                 // (`ElfFile::parse` already refused an ET_EXEC segment below
                                 // LOWEST_PROGRAM_ADDRESS, with the message the KVM loader gives too.)
    for seg in elf.loads().filter(|s| s.memsz > 0) {
        let start = page_down(seg.vaddr + bias);
        let end = page_up(seg.vaddr + bias + seg.memsz)
            .ok_or_else(|| layout_err("segment end overflows".into()))?;
        if start < LOWEST_PROGRAM_ADDRESS || end > DOMAIN_BASE {
            return Err(layout_err(format!(
                "segment at {start:#x}..{end:#x} lies outside {LOWEST_PROGRAM_ADDRESS:#x}..{DOMAIN_BASE:#x}"
            )));
        }
        let (prot, kind) = prot_of(seg.flags);
        ranges.push(MapRange { guest: start, len: end - start, prot, offset, kind });
        let lead = (seg.vaddr + bias) - start;
        let file_start =
            seg.offset.checked_sub(lead).ok_or_else(|| layout_err("segment misaligned".into()))?;
        let file_end = seg.offset + seg.filesz;
        copies.push((offset, file_start as usize, file_end as usize));
        offset += end - start;
    }
    let bound = spec.memory.clone();
    let fixed = offset + PAGE + RING_SIZE + LOADER_SIZE + PAGE + STACK_SIZE;
    let (brk_len, arena_len) = memory_split(fixed, &bound)?;
    for (guest, len, prot, kind) in [
        (BOOT_ADDR, PAGE, rw, RegionKind::BootPage),
        (RING_ADDR, RING_SIZE, rw, RegionKind::Ring),
        (LOADER_ADDR, LOADER_SIZE, rw, RegionKind::System),
        (STUB_ADDR, PAGE, libc::PROT_EXEC, RegionKind::System),
        (STACK_BASE, STACK_SIZE, rw, RegionKind::Stack),
        (BRK_BASE, brk_len, rw, RegionKind::Brk),
        (ARENA_BASE, arena_len, rw, RegionKind::Arena),
    ] {
        ranges.push(MapRange { guest, len, prot, offset, kind });
        offset += len;
    }
    let total = offset;

    let (memfd, base) = new_memfd(total)?;
    let protectable = [
        [ARENA_BASE, arena_len],
        [BRK_BASE, brk_len],
        [STACK_BASE, STACK_SIZE],
        relro_pages(elf, bias, &ranges).unwrap_or([0, 0]),
        [RESERVE_BASE, RESERVE_LEN],
    ];
    let arena_file_offset = ranges.iter().find(|r| r.kind == RegionKind::Arena).map_or(0, |r| r.offset);
    let mut d = DomainMemory {
        protectable,
        arena_file_offset,
        memfd,
        host_base: base,
        total,
        ranges,
        entry: elf.entry.wrapping_add(bias),
        sp: 0,
        brk_len,
        arena_len,
        bound,
    };
    for (off, fs, fe) in copies {
        let bytes =
            elf.data.get(fs..fe).ok_or_else(|| RunError::InvalidImage("segment past end of file".into()))?;
        // Written into the memfd, not copied through the monitor's mapping:
        // a copy would take a page fault per 4 KiB page of the monitor's
        // view (about half of the process backend's start-up here,
        // docs/performance.md "Start-up"), pages the monitor never reads
        // again. The segment's range is at least as long as its file bytes
        // plus the lead, so the write stays inside the memfd (sealed
        // against growing: a write past its end would fail).
        write_at(&d.memfd, bytes, off)?;
    }
    d.populate_system();
    // Every ring of the region, before anything runs: a thread may use its
    // ring before the monitor has seen its start (docs/threads.md). The
    // memfd is new, so the region reads zero: each ring needs its header
    // only (`RingPtr::init_zeroed`, tested equal to `init` on zero memory),
    // not 384 KiB written over (s30-pstart).
    d.init_fresh_rings();
    write_boot(&d, spec);
    let phdr = phdr_vaddr(elf).map(|v| v + bias).unwrap_or(0);
    d.sp = build_stack(&d, spec, elf, phdr)?;
    Ok(d)
}

/// Bytes at the top of the stack the monitor writes (arguments,
/// environment, auxiliary vector) that are put in place up front.
const STACK_PREFAULT: u64 = 4 * PAGE;

/// Writes `bytes` at `offset` of `memfd` (all of them).
fn write_at(memfd: &OwnedFd, bytes: &[u8], offset: u64) -> Result<(), RunError> {
    // SAFETY: a live slice.
    unsafe { write_raw_at(memfd, bytes.as_ptr(), bytes.len(), offset) }
}

/// Writes the `len` bytes at `from` at `offset` of `memfd` (all of them),
/// by `pwrite`: the kernel reads them, so memory that other threads (the
/// program's) may write meanwhile is never seen as a Rust slice.
///
/// # Safety
///
/// `[from, from + len)` is mapped and readable for the call.
unsafe fn write_raw_at(
    memfd: &OwnedFd,
    mut from: *const u8,
    mut len: usize,
    mut offset: u64,
) -> Result<(), RunError> {
    while len > 0 {
        // SAFETY: the caller's contract: `len` readable bytes at `from`.
        let n = unsafe { libc::pwrite(memfd.as_raw_fd(), from.cast(), len, offset as libc::off_t) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(RunError::host("writing into the domain memfd"));
        }
        if n == 0 {
            return Err(RunError::Layout("the domain memfd took no more bytes".into()));
        }
        // SAFETY: n <= len: still inside the caller's range.
        from = unsafe { from.add(n as usize) };
        len -= n as usize;
        offset += n as u64;
    }
    Ok(())
}

/// Makes `[offset, offset + len)` of the monitor's view of the memfd present
/// and writable with one `madvise(MADV_POPULATE_WRITE)` (Linux 5.14) rather
/// than a page fault per page. Only a hint: where the kernel refuses, the
/// pages fault in as they are written.
fn populate(d: &DomainMemory, offset: u64, len: u64) {
    let (start, end) = (page_down(offset), page_up(offset + len).unwrap_or(d.total).min(d.total));
    if end > start {
        // SAFETY: a range of the monitor's own mapping of the memfd (inside
        // `total`); populating changes no byte of it.
        unsafe {
            libc::madvise(
                d.host_base.add(start as usize).cast(),
                (end - start) as usize,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }
}

/// A new memfd of `total` bytes, sealed against growing and shrinking, and
/// the monitor's read-write shared mapping of it.
fn new_memfd(total: u64) -> Result<(OwnedFd, *mut u8), RunError> {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: memfd_create reads the NUL-terminated name.
    let fd =
        unsafe { libc::memfd_create(c"cabin-domain".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(RunError::host("memfd_create"));
    }
    // SAFETY: a fresh descriptor we own.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: touches no memory.
    if unsafe { libc::ftruncate(memfd.as_raw_fd(), total as i64) } != 0 {
        return Err(RunError::host("ftruncate of the domain memfd"));
    }
    // The domain's memory never changes size: seal it so nothing (the
    // child holds no descriptor, but defence in depth) can grow it.
    let seals = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: touches no memory.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(RunError::host("sealing the domain memfd"));
    }
    // SAFETY: a new shared mapping of our memfd, placed by the kernel.
    let base = unsafe {
        libc::mmap(std::ptr::null_mut(), total as usize, rw, libc::MAP_SHARED, memfd.as_raw_fd(), 0)
    };
    if base == libc::MAP_FAILED {
        return Err(RunError::host("mmap of the domain memory"));
    }
    Ok((memfd, base.cast()))
}

/// Copies the pages of `src` (mapped at `src_base`, `total` bytes) that
/// hold data into the same offsets of the memfd `dst` (written, not copied
/// through a mapping of it, which would take a page fault per page); holes
/// (pages never touched) are skipped, so an untouched arena costs nothing,
/// and so is `skip` (offsets; the ring region, which the child gets fresh).
/// The number of bytes copied.
///
/// # Safety
///
/// `src_base` is a mapping of `src` of at least `total` bytes, alive for
/// the call; `dst` is at least `total` bytes long.
unsafe fn copy_touched(
    src: &OwnedFd,
    src_base: *const u8,
    dst: &OwnedFd,
    total: u64,
    skip: std::ops::Range<u64>,
) -> Result<u64, RunError> {
    let fd = src.as_raw_fd();
    let mut at = 0i64;
    let mut copied = 0u64;
    while (at as u64) < total {
        if skip.contains(&(at as u64)) {
            at = skip.end as i64;
            continue;
        }
        // SAFETY: lseek touches no memory.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            // ENXIO: no data past `at`.
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return Err(RunError::host("lseek(SEEK_DATA) on the domain memfd"));
        }
        if skip.contains(&(data as u64)) {
            at = skip.end as i64;
            continue;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < data {
            return Err(RunError::host("lseek(SEEK_HOLE) on the domain memfd"));
        }
        let mut end = (hole as u64).min(total);
        if (data as u64) < skip.start && end > skip.start {
            end = skip.start;
        }
        let len = end.saturating_sub(data as u64) as usize;
        // SAFETY: [data, end) lies inside the source mapping (end <= total),
        // alive for the call (the caller's contract); the program's other
        // threads may write it meanwhile (a multithreaded fork), which only
        // decides which bytes the kernel copies.
        unsafe { write_raw_at(dst, src_base.add(data as usize), len, data as u64)? };
        copied += len as u64;
        at = end as i64;
    }
    Ok(copied)
}

impl DomainMemory {
    /// A copy of this domain's memory for a child process (issue 14,
    /// docs/processes.md, "Monitor-side fork"): a new memfd of the same
    /// size and seals holding the pages the program touched (holes stay
    /// holes), the same layout, and every ring of the ring region in its
    /// initial state (the parent's requests in flight are not the
    /// child's): the region is not copied at all, the child's fresh zero
    /// pages get only each ring's header. The boot page is the parent's copy: the caller rewrites the
    /// child's words (pid, ppid). Other threads of the program keep running
    /// during the copy (a multithreaded fork, docs/processes.md).
    pub fn fork_copy(&self) -> Result<DomainMemory, RunError> {
        let (memfd, base) = new_memfd(self.total)?;
        let d = DomainMemory {
            memfd,
            host_base: base,
            total: self.total,
            ranges: self.ranges.clone(),
            entry: self.entry,
            sp: self.sp,
            brk_len: self.brk_len,
            arena_len: self.arena_len,
            bound: self.bound.clone(),
            protectable: self.protectable,
            arena_file_offset: self.arena_file_offset,
        };
        let rings = self
            .ranges
            .iter()
            .find(|r| r.kind == RegionKind::Ring)
            .map_or(0..0, |r| r.offset..r.offset + r.len);
        // SAFETY: our live mapping of `self.memfd`, `total` bytes; the new
        // memfd is as long.
        unsafe { copy_touched(&self.memfd, self.host_base, &d.memfd, self.total, rings)? };
        d.populate_system();
        d.init_fresh_rings();
        Ok(d)
    }

    /// Writes every ring's header into the ring region of a fresh memfd
    /// (all zero: `RingPtr::init_zeroed`).
    fn init_fresh_rings(&self) {
        for k in 0..cabin_abi::thread::MAX_THREADS {
            // SAFETY: as in `reset_rings`; the region is fresh zero pages
            // of this memfd (new in `build`; `fork_copy` skipped it in the
            // copy).
            unsafe {
                cabin_abi::ring::RingPtr::new(self.ring().base().add(cabin_abi::thread::ring_offset(k)))
            }
            .init_zeroed();
        }
    }

    /// Puts the pages the monitor writes before the program runs in place
    /// in its view with one call each instead of a page fault each: the boot
    /// page, every ring, the loader scratch and the entry stub (one run of
    /// the memfd) and the top of the stack.
    fn populate_system(&self) {
        if let (Some(first), Some(stack)) = (
            self.ranges.iter().find(|r| r.kind == RegionKind::BootPage),
            self.ranges.iter().find(|r| r.kind == RegionKind::Stack),
        ) {
            let top = STACK_PREFAULT.min(stack.len);
            populate(self, first.offset, stack.offset.saturating_sub(first.offset));
            populate(self, stack.offset + stack.len - top, top);
        }
    }

    /// Writes every ring of the region fresh, whatever it held (tests: a
    /// parent whose rings are in use).
    #[cfg(test)]
    fn reset_rings(&self) {
        for k in 0..cabin_abi::thread::MAX_THREADS {
            // SAFETY: ring k of the region, inside the RING_SIZE mapping
            // (RING_SIZE >= RING_REGION_BYTES), 64-byte aligned, alive as
            // long as `self`; nothing runs in the domain yet.
            unsafe {
                cabin_abi::ring::RingPtr::new(self.ring().base().add(cabin_abi::thread::ring_offset(k)))
            }
            .init();
        }
    }
}

/// Most RELRO pages the program may protect (the seccomp filter holds one
/// rule per page: see `seccomp::rules`). glibc's static RELRO is a few pages.
pub const MAX_RELRO_PAGES: u64 = 64;

/// The image's RELRO pages (`PT_GNU_RELRO`, rounded out to pages, at most
/// [`MAX_RELRO_PAGES`]) as `[start, len]`, when they lie inside one
/// writable, non-executable range of the image.
pub fn relro_pages(elf: &ElfFile<'_>, bias: u64, ranges: &[MapRange]) -> Option<[u64; 2]> {
    let relro = elf.segments.iter().find(|s| s.p_type == PT_GNU_RELRO && s.memsz > 0)?;
    let start = page_down(relro.vaddr.checked_add(bias)?);
    let end = page_up(relro.vaddr.checked_add(bias)?.checked_add(relro.memsz)?)?;
    let end = end.min(start.checked_add(MAX_RELRO_PAGES * PAGE)?);
    let inside = ranges.iter().any(|r| {
        r.kind == RegionKind::Data
            && r.prot & libc::PROT_EXEC == 0
            && start >= r.guest
            && end <= r.guest + r.len
    });
    (inside && end > start).then_some([start, end - start])
}

/// Domain address of the program headers: the PT_LOAD containing `e_phoff`.
fn phdr_vaddr(elf: &ElfFile<'_>) -> Option<u64> {
    elf.loads()
        .find(|s| elf.phoff >= s.offset && elf.phoff < s.offset + s.filesz)
        .map(|s| s.vaddr + (elf.phoff - s.offset))
}

fn write_boot(d: &DomainMemory, spec: &DomainSpec) {
    let b = d.boot();
    let (uid, gid) = spec.ids;
    // SAFETY: getpid has no preconditions.
    let ppid = unsafe { libc::getpid() };
    // SAFETY: `b` is the page-aligned boot page in our mapping (zeroed
    // memfd memory); BootInfo fits in a page (checked in the abi).
    unsafe {
        b.write(BootInfo {
            magic: BOOT_MAGIC,
            version: BOOT_VERSION,
            flags: BOOT_FLAG_PROCESS
                | if spec.force_trap { BOOT_FLAG_FORCE_TRAP } else { 0 }
                | BOOT_FLAG_MEMORY_LIMIT
                | if spec.read_ahead { cabin_abi::boot::BOOT_FLAG_READ_AHEAD } else { 0 }
                | if invariant_tsc() { cabin_abi::boot::BOOT_FLAG_TSC_CLOCK } else { 0 },
            ring: RING_ADDR,
            ring_size: RING_SIZE,
            arena_start: ARENA_BASE,
            arena_len: d.arena_len,
            brk_start: BRK_BASE,
            brk_len: d.brk_len,
            pid: 0, // written by the child
            ppid: ppid as u32,
            uid,
            gid,
            // The process backend's libos calibrates the TSC itself
            // (BOOT_FLAG_TSC_CLOCK) against the host kernel's clocks, which
            // the seccomp filter lets it read.
            tsc_khz: 0,
            fault_signo: 0,
            fault_addr: 0,
            fault_rip: 0,
            trapped: 0,
            abort: 0,
            memory_request: 0,
            memory_used: 0,
            spin_ns: 0,
            ring_count: cabin_abi::thread::MAX_THREADS as u32,
            thread_limit: spec.threads,
            sig_ignored: 0,
            kvm_trap_entry: 0,
            local_counts: [0; cabin_abi::boot::LOCAL_COUNT_SLOTS],
            check_local: cabin_abi::syscalls::CallSet::EMPTY,
            sig_incoming: 0,
            sig_attention: 0,
            sig_handled: 0,
            kvm_signal_entry: 0,
            libos_text: [0; 2],
            sig_mailbox_busy: 0,
            sig_mailbox: cabin_abi::boot::SigMailbox::default(),
            sig_posted: [cabin_abi::boot::SigPosted::default(); 64],
            fault_code: 0,
            protectable: d.protectable,
            reserve_start: RESERVE_BASE,
            reserve_len: RESERVE_LEN,
            arena_file_offset: d.arena_file_offset,
            shared_start: spec.shared.as_ref().map_or(0, |w| w.start()),
            shared_len: spec.shared.as_ref().map_or(0, |w| w.len()),
            filemap_start: FILEMAP_BASE,
            filemap_len: d.filemap_len(),
        })
    };
}

/// Builds argc/argv/envp/auxv and the strings at the top of the stack;
/// returns the initial stack pointer.
fn build_stack(d: &DomainMemory, spec: &DomainSpec, elf: &ElfFile<'_>, phdr: u64) -> Result<u64, RunError> {
    let mut top = STACK_TOP - 16;
    let mut strings: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut push = |s: &[u8], top: &mut u64| -> Result<u64, RunError> {
        *top = top.checked_sub(s.len() as u64).filter(|t| *t > STACK_BASE + (1 << 20)).ok_or_else(|| {
            RunError::Layout("arguments and environment do not fit in 1 MiB... of stack".into())
        })?;
        strings.push((*top, s.to_vec()));
        Ok(*top)
    };
    let args: Vec<String> = if spec.args.is_empty() { vec!["program".into()] } else { spec.args.clone() };
    let cstr = |s: &str| [s.as_bytes(), b"\0"].concat();
    let execfn = push(&cstr(&args[0]), &mut top)?;
    let mut argv = Vec::new();
    for a in &args {
        argv.push(push(&cstr(a), &mut top)?);
    }
    let mut envp = Vec::new();
    for e in &spec.env {
        envp.push(push(&cstr(e), &mut top)?);
    }
    let platform = push(b"x86_64\0", &mut top)?;
    let mut random = [0u8; 16];
    // SAFETY: getrandom writes 16 bytes into `random`.
    unsafe { libc::getrandom(random.as_mut_ptr().cast(), 16, 0) };
    let random_at = push(&random, &mut top)?;

    // SAFETY: getauxval has no preconditions.
    let (hwcap, hwcap2, minsig) =
        unsafe { (libc::getauxval(libc::AT_HWCAP), libc::getauxval(libc::AT_HWCAP2), libc::getauxval(51)) };
    let (uid, gid) = (u64::from(spec.ids.0), u64::from(spec.ids.1));
    let mut aux = vec![
        (auxv::AT_PHDR, phdr),
        (auxv::AT_PHENT, 56),
        (auxv::AT_PHNUM, u64::from(elf.phnum)),
        (auxv::AT_PAGESZ, PAGE),
        (auxv::AT_BASE, 0),
        (8, 0), // AT_FLAGS
        (auxv::AT_ENTRY, d.entry),
        (auxv::AT_UID, uid),
        (auxv::AT_EUID, uid),
        (auxv::AT_GID, gid),
        (auxv::AT_EGID, gid),
        (auxv::AT_SECURE, 0),
        (auxv::AT_RANDOM, random_at),
        (auxv::AT_HWCAP, hwcap),
        (auxv::AT_HWCAP2, hwcap2),
        (auxv::AT_CLKTCK, 100),
        (auxv::AT_PLATFORM, platform),
        (auxv::AT_EXECFN, execfn),
        (AT_CABIN_BOOT, BOOT_ADDR),
    ];
    if minsig != 0 {
        aux.push((auxv::AT_MINSIGSTKSZ, minsig));
    }
    let mut words: Vec<u64> = Vec::new();
    words.push(argv.len() as u64);
    words.extend(&argv);
    words.push(0);
    words.extend(&envp);
    words.push(0);
    for (t, v) in aux {
        words.push(t);
        words.push(v);
    }
    words.extend([auxv::AT_NULL, 0]);
    let sp = (top - 8 * words.len() as u64) & !15;
    let mem = d.guest_memory();
    let werr = |_| RunError::Layout("initial stack does not fit".into());
    for (at, s) in &strings {
        mem.write(*at, s).map_err(werr)?;
    }
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write(sp, &bytes).map_err(werr)?;
    Ok(sp)
}

/// Whether the host's TSC is invariant (CPUID 0x8000_0007 EDX bit 8:
/// constant rate, never stops), so the libos may serve clock reads from it
/// (`BOOT_FLAG_TSC_CLOCK`).
fn invariant_tsc() -> bool {
    // Leaf 0x8000_0000 says whether the extended leaf exists.
    core::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0007
        && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_of(base: *mut u8, n: u64) -> *mut u8 {
        // SAFETY: tests only ask for pages inside their mappings.
        unsafe { base.add((n * PAGE) as usize) }
    }

    fn committed(fd: &OwnedFd) -> u64 {
        // SAFETY: an all-zero `stat` is a valid value to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes one `stat` into a local.
        assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
        st.st_blocks as u64 * 512
    }

    #[test]
    fn the_copy_holds_touched_pages_only_and_is_the_childs_own() {
        let total = 64 * PAGE;
        let (src, sb) = new_memfd(total).expect("memfd");
        let (dst, db) = new_memfd(total).expect("memfd");
        // SAFETY: pages 3, 4 and 40 of the source mapping.
        unsafe {
            page_of(sb, 3).write(1);
            page_of(sb, 4).add(4095).write(2);
            page_of(sb, 40).add(7).write(3);
        }
        // SAFETY: sb maps src, `total` bytes; dst is as long.
        let copied = unsafe { copy_touched(&src, sb, &dst, total, 0..0) }.expect("copy");
        assert_eq!(copied, 3 * PAGE);
        assert_eq!(committed(&dst), 3 * PAGE, "holes stay holes");
        // SAFETY: reads and writes inside the mappings.
        unsafe {
            assert_eq!(
                (page_of(db, 3).read(), page_of(db, 4).add(4095).read(), page_of(db, 40).add(7).read()),
                (1, 2, 3)
            );
            page_of(sb, 3).write(9);
            page_of(db, 40).add(7).write(8);
            assert_eq!(page_of(db, 3).read(), 1, "the parent's later write is not the child's");
            assert_eq!(page_of(sb, 40).add(7).read(), 3, "the child's write is not the parent's");
            libc::munmap(sb.cast(), total as usize);
            libc::munmap(db.cast(), total as usize);
        }
    }

    #[test]
    fn an_untouched_memfd_copies_nothing() {
        let total = 16 * PAGE;
        let (src, sb) = new_memfd(total).expect("memfd");
        let (dst, db) = new_memfd(total).expect("memfd");
        // SAFETY: as above.
        assert_eq!(unsafe { copy_touched(&src, sb, &dst, total, 0..0) }.expect("copy"), 0);
        // SAFETY: our mappings.
        unsafe {
            libc::munmap(sb.cast(), total as usize);
            libc::munmap(db.cast(), total as usize);
        }
    }

    #[test]
    fn a_fork_copy_resets_every_ring_and_keeps_the_rest() {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let ring = MapRange { guest: RING_ADDR, len: RING_SIZE, prot: rw, offset: 0, kind: RegionKind::Ring };
        let data =
            MapRange { guest: STACK_BASE, len: PAGE, prot: rw, offset: RING_SIZE, kind: RegionKind::Stack };
        let total = RING_SIZE + PAGE;
        let (memfd, host_base) = new_memfd(total).expect("memfd");
        let parent = DomainMemory {
            memfd,
            host_base,
            total,
            ranges: vec![ring, data],
            entry: 0x40_1000,
            sp: STACK_BASE + 64,
            brk_len: 0,
            arena_len: 0,
            bound: MemoryBound::new(0, None, "test"),
            protectable: [[0, 0]; PROTECTABLE_RANGES],
            arena_file_offset: 0,
        };
        parent.reset_rings();
        let last = cabin_abi::thread::MAX_THREADS - 1;
        // SAFETY: ring `last` of the parent's region (see reset_rings).
        let r = unsafe { RingPtr::new(parent.ring().base().add(cabin_abi::thread::ring_offset(last))) };
        r.publish_submission(0, 0, 57, &[1, 2, 3, 4, 5, 6]);
        r.sq_tail().store(1, std::sync::atomic::Ordering::SeqCst);
        parent.ring().cq_head().store(5, std::sync::atomic::Ordering::SeqCst);
        let stack = parent.host(STACK_BASE).expect("stack");
        // SAFETY: a byte of the parent's stack range.
        unsafe { stack.add(100).write(42) };
        // A byte of ring `last`'s header padding, which `init` never writes
        // (the parent's program could leave anything there).
        // SAFETY: inside ring `last` of the region.
        let pad = unsafe { parent.ring().base().add(cabin_abi::thread::ring_offset(last) + 20) };
        // SAFETY: as above.
        unsafe { pad.write(0x5a) };

        let child = parent.fork_copy().expect("fork copy");
        // SAFETY: as for `r`, in the child's region.
        let cr = unsafe { RingPtr::new(child.ring().base().add(cabin_abi::thread::ring_offset(last))) };
        assert!(cr.check_header().is_ok());
        assert_eq!(cr.sq_tail().load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(!cr.submission_ready(0), "the parent's request is not the child's");
        assert_eq!(child.ring().cq_head().load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(r.sq_tail().load(std::sync::atomic::Ordering::SeqCst), 1, "the parent's ring untouched");
        // Nothing of the parent's ring region reaches the child: not copied,
        // only the headers are written into fresh pages.
        let off = pad as usize - parent.host_base as usize;
        // SAFETY: the same offset in both region mappings.
        assert_eq!(unsafe { child.host_base.add(off).read() }, 0, "the parent's ring bytes are not copied");
        // SAFETY: the same byte in the child's stack.
        assert_eq!(unsafe { child.host(STACK_BASE).expect("stack").add(100).read() }, 42);
        assert_eq!(
            (child.entry, child.sp, child.ranges.clone()),
            (parent.entry, parent.sp, parent.ranges.clone())
        );
        assert_ne!(child.host_base, parent.host_base);
    }
}
