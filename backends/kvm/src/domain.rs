//! Building a domain's memory before boot: the image's pages, the stack, the
//! `brk` heap and the arena, the boot page and the ring, the system area
//! (descriptor tables, kernel stacks, proxy-kernel) and the page tables
//! that map all of it. Everything here only writes guest memory; the vCPU
//! is set up in `vcpu.rs`.

use std::mem::offset_of;

use cabin_abi::boot::{auxv, BootInfo, AT_CABIN_BOOT, BOOT_MAGIC, BOOT_VERSION, PROTECTABLE_RANGES};
use cabin_abi::hypercall::PORT_DOORBELL;
use cabin_abi::layout::LOWEST_PROGRAM_ADDRESS;
use cabin_abi::ring::RingPtr;
use cabin_abi::thread::{MAX_THREADS, RING_REGION_BYTES};
use cabin_image::elf::{ElfFile, ElfKind};
use cabin_proxy_kernel::header::{Header, HeaderError};
use thiserror::Error;

use super::descriptors;
use super::initstack::{self, StackSpec};
use super::layout::*;
use super::memory::{MemoryError, PhysMemory};
use super::paging::{PageTables, PagingError, Perms};
use cabin_monitor::memory::{GuestMemory, Region, RegionKind};

/// `PT_PHDR`.
const PT_PHDR: u32 = 6;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// Boot-information flag: the domain is a KVM guest (the libos waits on the
/// ring with the `out` doorbell and sets FS with `wrfsbase`).
pub use cabin_abi::boot::BOOT_FLAG_KVM;

/// Errors of this module.
#[derive(Debug, Error)]
pub enum DomainError {
    /// The image is not a loadable static executable.
    #[error("invalid image: {0}")]
    Elf(#[from] cabin_image::elf::ElfError),
    /// A page of the image is both writable and executable.
    #[error("image page {0:#x} would be both writable and executable; Cabin keeps W^X")]
    WritableCode(u64),
    /// Guest memory is too small for the image, stack and arena.
    #[error("--mem {mem} bytes is too small: the image needs {need} bytes; help: pass a larger --mem")]
    TooSmall {
        /// Memory configured.
        mem: u64,
        /// Memory needed before the arena.
        need: u64,
    },
    /// `--mem` outside the accepted range.
    #[error("--mem must be between {min} and {max} bytes (got {got})")]
    BadMemSize {
        /// Value given.
        got: u64,
        /// Minimum.
        min: u64,
        /// Maximum.
        max: u64,
    },
    /// The arguments and environment do not fit on the stack.
    #[error("arguments and environment are too large for the program's stack")]
    StackTooSmall,
    /// The embedded proxy-kernel is malformed (a build bug).
    #[error("the embedded proxy-kernel is malformed: {0:?}")]
    ProxyKernel(cabin_proxy_kernel::header::HeaderError),
    /// Page-table construction failed.
    #[error(transparent)]
    Paging(#[from] PagingError),
    /// Guest memory access failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The monitor's view of a guest does not lie in its memory (a Cabin
    /// bug): a child process cannot be made from it.
    #[error("the program's memory view does not fit its guest memory; no child process made")]
    ViewOutsideMemory,
}

/// What the program runs with (argument vector, environment, identity).
#[derive(Clone, Debug)]
pub struct ProgramSpec {
    /// `argv`, `argv[0]` first.
    pub args: Vec<Vec<u8>>,
    /// `envp` (`KEY=VALUE`).
    pub env: Vec<Vec<u8>>,
    /// Process id the program sees.
    pub pid: u32,
    /// Parent process id the program sees.
    pub ppid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Testing: make the libos take the trap path for every call
    /// (`BOOT_FLAG_FORCE_TRAP`).
    pub force_trap: bool,
    /// Let the libos read ahead (`BOOT_FLAG_READ_AHEAD`).
    pub read_ahead: bool,
    /// A memory limit is set (`BOOT_FLAG_MEMORY_LIMIT`): the libos stops a
    /// program that asks for more memory than the guest has, instead of
    /// returning ENOMEM.
    pub memory_limit: bool,
}

/// What a guest-physical range of a domain holds. The KVM backend needs
/// none of this to run (its page tables say it all); the SEV-SNP backend
/// derives each page's RMP permissions for VMPL1 from it (`cabin-snp`,
/// `plan.rs`), so the one builder states it once, as it places each range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Image pages of an executable segment (ring 3, never writable).
    ImageCode,
    /// Image pages of a writable segment.
    ImageData,
    /// Image pages of a read-only, non-executable segment.
    ImageRodata,
    /// A user read-write area: stack, `brk` heap or arena.
    UserData,
    /// The boot-information page (user read-write).
    BootPage,
    /// The ring region (user read-write).
    Ring,
    /// The GDT (supervisor).
    Gdt,
    /// The IDT (supervisor).
    Idt,
    /// The TSSs and their I/O bitmaps (supervisor).
    Tss,
    /// A vCPU's ring-0 stacks (supervisor read-write).
    KernelStack,
    /// The proxy-kernel (supervisor read and execute).
    ProxyKernel,
    /// The page-table pool (not mapped in the guest; the monitor edits it).
    PageTables,
    /// A vCPU's `#VC` calling area (supervisor read-write; SEV-SNP: the
    /// proxy-kernel's requests to VMPL0, `cabin_proxy_kernel::vc`).
    VcArea,
}

/// One guest-physical range of a domain and what it holds
/// ([`Guest::placed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// First guest-physical address (page aligned).
    pub gpa: u64,
    /// Length in bytes (a multiple of the page size).
    pub len: u64,
    /// What it holds.
    pub role: Role,
}

/// A guest's memory and start state, ready to boot.
#[derive(Debug)]
pub struct Guest {
    /// The program's view of `phys` (its user regions, typed), for the
    /// syscall service and the monitor's own reads. Declared first: dropped
    /// before the mapping it points into.
    pub view: GuestMemory,
    /// Guest-physical memory.
    pub phys: PhysMemory,
    /// CR3.
    pub cr3: u64,
    /// Entry point (the libos `cabin_start`).
    pub entry: u64,
    /// Initial stack pointer.
    pub rsp: u64,
    /// `MSR_LSTAR`: the proxy-kernel's `syscall` entry.
    pub lstar: u64,
    /// `MSR_CSTAR`: the proxy-kernel's entry for `syscall` from 32-bit
    /// code, which ends the program.
    pub cstar: u64,
    /// `MSR_SYSENTER_EIP`: the proxy-kernel's `sysenter` entry, which ends
    /// the program (never reached: `SYSENTER_CS` is 0).
    pub sysenter_eip: u64,
    /// Ring-0 addresses of the proxy-kernel: `[start, end)`.
    pub kernel_text: (u64, u64),
    /// The ring, in host memory.
    pub ring: RingPtr,
    /// Page-table statistics: 4 KiB and 2 MiB leaf entries.
    pub leaves: (u64, u64),
    /// Length of the `brk` range.
    pub brk_len: u64,
    /// Length of the arena.
    pub arena_len: u64,
    /// The page tables, which `mprotect` edits while the program runs
    /// (`crate::protect`).
    pub pt: std::sync::Mutex<PageTables>,
    /// The ranges whose protection the program may change: the monitor's
    /// own copy of what it wrote into `BootInfo::protectable`.
    pub protectable: [[u64; 2]; PROTECTABLE_RANGES],
    /// Guest-physical address of the arena's first page (the arena is
    /// one run of guest-physical memory at `ARENA_VA`).
    pub arena_gpa: u64,
    /// Every guest-physical range the builder placed, with its role, in
    /// the order placed (image pages in address order first).
    pub placed: Vec<Placed>,
    /// Protection key of the code pages (0: execute-only not enforced);
    /// `vcpu::setup` sets CR4.PKE and loads PKRU when it is not 0
    /// (`crate::pku`).
    pub code_pkey: u8,
    /// The tree's shared window (docs/processes.md, "Shared memory"): one
    /// more memory slot of the VM ([`SHARED_SLOT`] at [`SHARED_GPA`]),
    /// mapped at [`SHARED_VA`]; every VM of the tree holds the same one.
    pub shared: Option<std::sync::Arc<cabin_monitor::shm::SharedWindow>>,
    /// Live shared file mappings (`crate::files`): the view's file
    /// window's mapper, and more memory slots of the VM.
    pub files: std::sync::Arc<crate::files::GuestFiles>,
}

/// The view's file-mapping range (docs/kvm.md, "Live shared file
/// mappings"): [`FILEMAP_VA`], as long as guest memory (at most
/// [`FILEMAP_MAX`]), served by `files`.
fn file_window(
    size: u64,
    files: &std::sync::Arc<crate::files::GuestFiles>,
) -> cabin_monitor::memory::FileWindow {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    cabin_monitor::memory::FileWindow {
        start: FILEMAP_VA,
        len: filemap_len(size),
        channel: None,
        mapper: Some(files.clone()),
        pid: std::sync::Arc::new(std::sync::atomic::AtomicI32::new(pid)),
    }
}

fn filemap_len(size: u64) -> u64 {
    size.min(FILEMAP_MAX) & !(PAGE - 1)
}

// SAFETY: every field is Sync except `ring`, a `RingPtr`: Copy and Send, so
// a shared reference to it only ever yields a copy another thread could
// have been sent; all accesses through it are atomic or volatile copies.
unsafe impl Sync for Guest {}

impl Guest {
    /// A child process's guest (issue 14, docs/processes.md): a copy of
    /// this guest's memory as it is now (its touched pages: image, stack,
    /// heap, arena, boot page, and the system area: page tables, GDT, IDT,
    /// TSSs, ring-0 stacks, proxy-kernel), the same page-table bookkeeping
    /// and committed reservation pages, every ring of the ring region reset,
    /// the boot page's `pid`/`ppid` set to `pid`/`ppid` and its signal
    /// mailbox free (the parent's other threads do not exist in the child).
    /// It starts (vCPU 0) at `entry` with `rsp = sp`: the libos's child start
    /// and the frame it left, which the monitor checked to be this guest's
    /// code and writable memory.
    ///
    /// The parent's page tables are locked for the copy, so no `mprotect`
    /// or commit of another parent thread lands half in it; its other
    /// threads' plain writes may (a multithreaded fork, docs/processes.md).
    /// The copy is the child's own memory: nothing of the parent is shared
    /// (snapshot semantics, unlike a private mapping of shared pages).
    pub fn fork_copy(&self, entry: u64, sp: u64, pid: u32, ppid: u32) -> Result<(Guest, u64), DomainError> {
        // The file table first, then the page tables (as `files.rs` takes
        // them): no mapping changes half-way through the copy.
        let (_files, files) = self.files.fork_of();
        let files = std::sync::Arc::new(files);
        let pt = self.pt.lock().unwrap_or_else(|e| e.into_inner());
        let ring_len = page_up(RING_REGION_BYTES as u64);
        // The ring region is not copied: the child's rings start fresh.
        let (phys, copied) = PhysMemory::copy_of(&self.phys, RING_GPA..RING_GPA + ring_len)?;
        let pt = pt.clone();
        let size = usize::try_from(phys.size()).map_err(|_| DomainError::ViewOutsideMemory)?;
        // SAFETY: `phys` maps `size` bytes read-write and is moved into the
        // returned Guest next to the view, which is declared (so dropped)
        // before it; every region of our view lies in our `phys` mapping of
        // the same size (program_view built it so).
        let mut view = unsafe {
            self.view.rebased(self.phys.host_base() as *const u8, size, phys.host_base() as *mut u8)
        }
        .ok_or(DomainError::ViewOutsideMemory)?;
        view.set_file_window(file_window(phys.size(), &files));
        // SAFETY: RING_GPA..+ring_len lies inside the child's guest memory
        // (checked by host_ptr), page aligned, alive as long as `phys`,
        // which the child's Guest owns together with the RingPtr.
        let ring = unsafe { RingPtr::new(phys.host_ptr(RING_GPA, ring_len)?) };
        for k in 0..MAX_THREADS {
            // SAFETY: ring k of the region (MAX_THREADS rings of RING_BYTES
            // from `ring`), inside the mapping just checked; nothing runs in
            // the child yet. The region is zero (not copied, above).
            unsafe { RingPtr::new(ring.base().add(cabin_abi::thread::ring_offset(k))) }.init_zeroed();
        }
        let at = |off: usize| BOOT_GPA + off as u64;
        phys.write(at(offset_of!(BootInfo, pid)), &pid.to_le_bytes())?;
        phys.write(at(offset_of!(BootInfo, ppid)), &ppid.to_le_bytes())?;
        if let Ok(boot) = cabin_monitor::boot::BootPage::of(&view) {
            boot.release_mailbox();
        }
        let guest = Guest {
            view,
            phys,
            cr3: self.cr3,
            entry,
            rsp: sp,
            lstar: self.lstar,
            cstar: self.cstar,
            sysenter_eip: self.sysenter_eip,
            kernel_text: self.kernel_text,
            ring,
            leaves: self.leaves,
            brk_len: self.brk_len,
            arena_len: self.arena_len,
            pt: std::sync::Mutex::new(pt),
            protectable: self.protectable,
            arena_gpa: self.arena_gpa,
            placed: self.placed.clone(),
            code_pkey: self.code_pkey,
            shared: self.shared.clone(),
            files,
        };
        Ok((guest, copied))
    }

    /// Maps the tree's shared window `w` into this guest before it boots:
    /// user read-write, never executable, at [`SHARED_VA`] over the slot
    /// at [`SHARED_GPA`] (which `vcpu::create_vm` registers); the view gets
    /// it as a [`RegionKind::Shared`] region and the boot page says where
    /// it is. The whole window is mapped: `shmat` needs no exit, and a
    /// detached segment stays reachable by the process until it ends
    /// (docs/processes.md).
    pub fn attach_window(
        &mut self,
        w: std::sync::Arc<cabin_monitor::shm::SharedWindow>,
    ) -> Result<(), DomainError> {
        if w.start() != SHARED_VA {
            return Err(DomainError::Paging(PagingError::BadRange { va: w.start(), len: w.len() }));
        }
        {
            let pt = self.pt.get_mut().unwrap_or_else(|e| e.into_inner());
            pt.map(&self.phys, SHARED_VA, SHARED_GPA, w.len(), USER_RW)?;
            self.leaves = (pt.small, pt.large);
        }
        self.phys.write_u64(BOOT_GPA + offset_of!(BootInfo, shared_start) as u64, SHARED_VA)?;
        self.phys.write_u64(BOOT_GPA + offset_of!(BootInfo, shared_len) as u64, w.len())?;
        let view = std::mem::replace(&mut self.view, {
            // SAFETY: an empty view holds nothing.
            unsafe { GuestMemory::new(Vec::new()) }
        });
        let r = Region { start: SHARED_VA, len: w.len(), host: w.host(), kind: RegionKind::Shared };
        // SAFETY: the window's mapping lives as long as `w`, which this
        // Guest holds (field `shared`) as long as its view; SHARED_VA lies
        // apart from every other region (layout).
        self.view = unsafe { view.with_region(r) };
        self.shared = Some(w);
        Ok(())
    }
}

fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

fn page_up(x: u64) -> u64 {
    (x + PAGE - 1) & !(PAGE - 1)
}

fn align_up(x: u64, a: u64) -> u64 {
    (x + a - 1) & !(a - 1)
}

const KERNEL_RW: Perms = Perms { user: false, write: true, exec: false, pkey: 0 };
const KERNEL_RX: Perms = Perms { user: false, write: false, exec: true, pkey: 0 };
const USER_RW: Perms = Perms { user: true, write: true, exec: false, pkey: 0 };

/// Builds the domain for `image` with `mem_size` bytes of guest memory.
/// `random` fills `AT_RANDOM`; `hwcap`/`hwcap2` are the CPU capability words.
pub fn build(
    image: &[u8],
    mem_size: u64,
    program: &ProgramSpec,
    random: [u8; 16],
    hwcap: (u64, u64),
    code_pkey: u8,
) -> Result<Guest, DomainError> {
    if !(MIN_MEM..=MAX_MEM).contains(&mem_size) || !mem_size.is_multiple_of(LARGE_PAGE) {
        return Err(DomainError::BadMemSize { got: mem_size, min: MIN_MEM, max: MAX_MEM });
    }
    let elf = ElfFile::parse(image)?;
    let pk = Header::parse(super::PROXY_KERNEL).map_err(DomainError::ProxyKernel)?;
    let mem = PhysMemory::new(mem_size)?;
    let mut pt = PageTables::new(PT_GPA, PT_END)?;
    // The program's regions: (va, len, gpa, kind).
    let mut space: Vec<(u64, u64, u64, RegionKind)> = Vec::new();
    let mut placed: Vec<Placed> = Vec::new();

    // --- the image's pages, at IMAGE_GPA + (page - lowest page) ---
    let base = match elf.kind {
        ElfKind::Exec => 0,
        ElfKind::StaticPie => PIE_BASE,
    };
    let loads: Vec<_> = elf.loads().filter(|s| s.memsz > 0).copied().collect();
    let lowest = loads.iter().map(|s| page_down(s.vaddr)).min().unwrap_or(0);
    let highest = loads.iter().map(|s| page_up(s.end())).max().unwrap_or(0);
    // Per page: (writable, executable), the union over the segments touching it.
    let mut pages: std::collections::BTreeMap<u64, (bool, bool)> = Default::default();
    for s in &loads {
        let bytes = elf.bytes(s);
        mem.write(IMAGE_GPA + (s.vaddr - lowest), bytes)?;
        let mut p = page_down(s.vaddr);
        while p < s.end() {
            let e = pages.entry(p).or_insert((false, false));
            e.0 |= s.flags & PF_W != 0;
            e.1 |= s.flags & PF_X != 0;
            p += PAGE;
        }
    }
    // Map runs of pages with equal permissions.
    let mut run: Option<(u64, u64, (bool, bool))> = None;
    let mut flush = |run: (u64, u64, (bool, bool)), pt: &mut PageTables| -> Result<(), DomainError> {
        let (start, end, (w, x)) = run;
        if w && x {
            return Err(DomainError::WritableCode(start));
        }
        let perms = Perms { user: true, write: w, exec: x, pkey: if x { code_pkey } else { 0 } };
        pt.map(&mem, base + start, IMAGE_GPA + (start - lowest), end - start, perms)?;
        let (kind, role) = match (x, w) {
            (true, _) => (RegionKind::Code, Role::ImageCode),
            (false, true) => (RegionKind::Data, Role::ImageData),
            (false, false) => (RegionKind::Rodata, Role::ImageRodata),
        };
        space.push((base + start, end - start, IMAGE_GPA + (start - lowest), kind));
        placed.push(Placed { gpa: IMAGE_GPA + (start - lowest), len: end - start, role });
        Ok(())
    };
    for (&p, &perm) in &pages {
        run = match run {
            Some((s, e, r)) if e == p && r == perm => Some((s, p + PAGE, r)),
            Some(r) => {
                flush(r, &mut pt)?;
                Some((p, p + PAGE, perm))
            }
            None => Some((p, p + PAGE, perm)),
        };
    }
    if let Some(r) = run {
        flush(r, &mut pt)?;
    }
    let image_end_gpa = IMAGE_GPA + (highest - lowest);

    // --- stack, brk heap, arena ---
    let stack_gpa = align_up(image_end_gpa, LARGE_PAGE);
    let brk_gpa = stack_gpa + STACK_SIZE;
    let brk_len = align_up((mem_size / 8).max(LARGE_PAGE), LARGE_PAGE);
    let arena_gpa = align_up(brk_gpa + brk_len, LARGE_PAGE);
    let need = arena_gpa + LARGE_PAGE;
    if need > mem_size {
        return Err(DomainError::TooSmall { mem: mem_size, need });
    }
    let arena_len = (mem_size - arena_gpa) & !(LARGE_PAGE - 1);
    let stack_va = STACK_TOP_VA - STACK_SIZE;
    let brk_va = align_up(base + highest, LARGE_PAGE);
    let user_areas = [
        (stack_va, stack_gpa, STACK_SIZE, RegionKind::Stack),
        (brk_va, brk_gpa, brk_len, RegionKind::Brk),
        (ARENA_VA, arena_gpa, arena_len, RegionKind::Arena),
    ];
    for (va, gpa, len, kind) in user_areas {
        pt.map(&mem, va, gpa, len, USER_RW)?;
        space.push((va, len, gpa, kind));
        placed.push(Placed { gpa, len, role: Role::UserData });
    }

    // --- boot page and ring (user RW NX) ---
    let ring_len = page_up(RING_REGION_BYTES as u64);
    pt.map(&mem, BOOT_VA, BOOT_GPA, PAGE, USER_RW)?;
    pt.map(&mem, RING_VA, RING_GPA, ring_len, USER_RW)?;
    space.push((BOOT_VA, PAGE, BOOT_GPA, RegionKind::BootPage));
    space.push((RING_VA, ring_len, RING_GPA, RegionKind::Ring));
    placed.push(Placed { gpa: BOOT_GPA, len: PAGE, role: Role::BootPage });
    placed.push(Placed { gpa: RING_GPA, len: ring_len, role: Role::Ring });
    // SAFETY: RING_GPA..+ring_len lies inside guest memory (checked by
    // host_ptr), is page (so 64-byte) aligned and stays mapped as long as
    // `mem`, which the Domain owns together with the RingPtr.
    let ring = unsafe { RingPtr::new(mem.host_ptr(RING_GPA, ring_len)?) };
    ring.init();
    // The image's RELRO pages, when they are whole data pages (at most 64,
    // as on the process backend).
    let relro = elf
        .segments
        .iter()
        .find(|s| s.p_type == cabin_image::elf::PT_GNU_RELRO && s.memsz > 0)
        .map(|s| (page_down(s.vaddr), page_up(s.vaddr + s.memsz).min(page_down(s.vaddr) + 64 * PAGE)))
        .filter(|&(s, e)| {
            e > s && (s..e).step_by(PAGE as usize).all(|p| pages.get(&p) == Some(&(true, false)))
        })
        .map_or([0, 0], |(s, e)| [base + s, e - s]);
    let protectable =
        [[ARENA_VA, arena_len], [brk_va, brk_len], [stack_va, STACK_SIZE], relro, [RESERVE_VA, RESERVE_LEN]];
    write_boot_info(&mem, program, brk_va, brk_len, arena_len, &protectable)?;

    // --- system area (supervisor only) ---
    // One GDT and IDT for all vCPUs; each vCPU its own TSS and stacks, all
    // written and mapped now (starting a thread never runs ring 0).
    mem.write(GDT_GPA, &descriptors::gdt(|k| kernel_va(tss_gpa(k))))?;
    for k in 0..MAX_VCPUS {
        let tss = descriptors::tss(
            kernel_stack_top(k),
            ist_stack_top(k),
            pf_stack_top(k),
            vc_stack_top(k),
            PORT_DOORBELL,
        );
        mem.write(tss_gpa(k), &tss)?;
    }
    // Every proxy-kernel address cut to 32 bits must lie below the lowest
    // program address (layout::PK_VA).
    let pk_va = PK_VA;
    let pk_len = page_up(pk.size);
    if pk_len > LOWEST_PROGRAM_ADDRESS || pk_len > PK_MAX {
        return Err(DomainError::ProxyKernel(HeaderError::BadLayout));
    }
    mem.write(IDT_GPA, &descriptors::idt(|v| pk_va + pk.vector_offset(v)))?;
    mem.write(PK_GPA, super::PROXY_KERNEL)?;
    let tss_len = page_up(tss_gpa(MAX_VCPUS) - TSS_GPA);
    for (gpa, len, role) in
        [(GDT_GPA, PAGE, Role::Gdt), (IDT_GPA, PAGE, Role::Idt), (TSS_GPA, tss_len, Role::Tss)]
    {
        pt.map(&mem, kernel_va(gpa), gpa, len, KERNEL_RW)?;
        placed.push(Placed { gpa, len, role });
    }
    for k in 0..MAX_VCPUS {
        for (gpa, len) in vcpu_stacks(k) {
            pt.map(&mem, kernel_va(gpa), gpa, len, KERNEL_RW)?;
            placed.push(Placed { gpa, len, role: Role::KernelStack });
        }
        // The #VC stack and, above its top, the calling area (SEV-SNP).
        pt.map(&mem, kernel_va(vc_stack_gpa(k)), vc_stack_gpa(k), PAGE, KERNEL_RW)?;
        placed.push(Placed { gpa: vc_stack_gpa(k), len: PAGE, role: Role::KernelStack });
        pt.map(&mem, kernel_va(vc_area_gpa(k)), vc_area_gpa(k), PAGE, KERNEL_RW)?;
        placed.push(Placed { gpa: vc_area_gpa(k), len: PAGE, role: Role::VcArea });
    }
    pt.map(&mem, pk_va, PK_GPA, pk_len, KERNEL_RX)?;
    placed.push(Placed { gpa: PK_GPA, len: pk_len, role: Role::ProxyKernel });
    placed.push(Placed { gpa: PT_GPA, len: PT_END - PT_GPA, role: Role::PageTables });

    // --- the initial stack ---
    let phdr = elf
        .segments
        .iter()
        .find(|s| s.p_type == PT_PHDR)
        .map(|s| s.vaddr)
        .or_else(|| {
            loads
                .iter()
                .find(|s| elf.phoff >= s.offset && elf.phoff - s.offset < s.filesz)
                .map(|s| s.vaddr + (elf.phoff - s.offset))
        })
        .unwrap_or(0);
    let aux = [
        (auxv::AT_PHDR, if phdr == 0 { 0 } else { base + phdr }),
        (auxv::AT_PHENT, 56),
        (auxv::AT_PHNUM, u64::from(elf.phnum)),
        (auxv::AT_PAGESZ, PAGE),
        (auxv::AT_BASE, 0),
        (auxv::AT_ENTRY, base + elf.entry),
        (auxv::AT_UID, u64::from(program.uid)),
        (auxv::AT_EUID, u64::from(program.uid)),
        (auxv::AT_GID, u64::from(program.gid)),
        (auxv::AT_EGID, u64::from(program.gid)),
        (auxv::AT_SECURE, 0),
        (auxv::AT_HWCAP, hwcap.0),
        (auxv::AT_HWCAP2, hwcap.1),
        (auxv::AT_CLKTCK, 100),
        (AT_CABIN_BOOT, BOOT_VA),
    ];
    let spec = StackSpec { args: &program.args, env: &program.env, random, platform: b"x86_64", auxv: &aux };
    let st = initstack::build(STACK_TOP_VA, &spec, STACK_SIZE / 4).ok_or(DomainError::StackTooSmall)?;
    let mut view = program_view(&mem, &space)?;
    view.write(st.rsp, &st.bytes).map_err(|_| DomainError::StackTooSmall)?;
    let files = std::sync::Arc::new(crate::files::GuestFiles::default());
    view.set_file_window(file_window(mem.size(), &files));
    mem.write_u64(BOOT_GPA + offset_of!(BootInfo, filemap_start) as u64, FILEMAP_VA)?;
    mem.write_u64(BOOT_GPA + offset_of!(BootInfo, filemap_len) as u64, filemap_len(mem.size()))?;

    let leaves = (pt.small, pt.large);
    Ok(Guest {
        cr3: pt.root(),
        entry: base + elf.entry,
        rsp: st.rsp,
        lstar: pk_va + pk.syscall_entry,
        cstar: pk_va + pk.compat_syscall_entry,
        sysenter_eip: pk_va + pk.sysenter_entry,
        kernel_text: (pk_va, pk_va + pk.size),
        ring,
        leaves,
        brk_len,
        arena_len,
        view,
        phys: mem,
        pt: std::sync::Mutex::new(pt),
        protectable,
        arena_gpa,
        placed,
        code_pkey,
        shared: None,
        files,
    })
}

/// The program's view of guest memory: each user region at the host address
/// of the guest-physical pages the page tables map it to.
fn program_view(mem: &PhysMemory, space: &[(u64, u64, u64, RegionKind)]) -> Result<GuestMemory, DomainError> {
    let mut regions: Vec<Region> = Vec::with_capacity(space.len());
    for &(start, len, gpa, kind) in space {
        let host = mem.host_ptr(gpa, len)?;
        regions.push(Region { start, len, host, kind });
    }
    // The reservation space: no host pages of its own; committed parts are
    // aliases of arena pages (`GuestMemory::alias`).
    regions.push(Region {
        start: RESERVE_VA,
        len: RESERVE_LEN,
        host: std::ptr::null_mut(),
        kind: RegionKind::Reserve,
    });
    regions.sort_by_key(|r| r.start);
    if let Some(w) = regions.windows(2).find(|w| w[0].start + w[0].len > w[1].start) {
        return Err(DomainError::Paging(PagingError::AlreadyMapped(w[1].start)));
    }
    // SAFETY: every region's host range lies inside `mem` (checked by
    // host_ptr), which the Guest owns and drops after the view (field
    // order); regions do not overlap in guest addresses (checked above).
    Ok(unsafe { GuestMemory::new(regions) })
}

fn write_boot_info(
    mem: &PhysMemory,
    p: &ProgramSpec,
    brk_va: u64,
    brk_len: u64,
    arena_len: u64,
    protectable: &[[u64; 2]; PROTECTABLE_RANGES],
) -> Result<(), MemoryError> {
    mem.write_u64(BOOT_GPA + offset_of!(BootInfo, reserve_start) as u64, RESERVE_VA)?;
    mem.write_u64(BOOT_GPA + offset_of!(BootInfo, reserve_len) as u64, RESERVE_LEN)?;
    for (i, [start, len]) in protectable.iter().enumerate() {
        let off = offset_of!(BootInfo, protectable) + i * 16;
        mem.write_u64(BOOT_GPA + off as u64, *start)?;
        mem.write_u64(BOOT_GPA + off as u64 + 8, *len)?;
    }
    let at = |off: usize| BOOT_GPA + off as u64;
    mem.write_u64(at(offset_of!(BootInfo, magic)), BOOT_MAGIC)?;
    mem.write(at(offset_of!(BootInfo, version)), &BOOT_VERSION.to_le_bytes())?;
    let flags = BOOT_FLAG_KVM
        | if p.force_trap { cabin_abi::boot::BOOT_FLAG_FORCE_TRAP } else { 0 }
        | if p.memory_limit { cabin_abi::boot::BOOT_FLAG_MEMORY_LIMIT } else { 0 }
        | if p.read_ahead { cabin_abi::boot::BOOT_FLAG_READ_AHEAD } else { 0 };
    mem.write(at(offset_of!(BootInfo, flags)), &flags.to_le_bytes())?;
    mem.write_u64(at(offset_of!(BootInfo, ring)), RING_VA)?;
    mem.write_u64(at(offset_of!(BootInfo, ring_size)), page_up(RING_REGION_BYTES as u64))?;
    // Every ring of the region is mapped; threads are refused (EAGAIN) by
    // `spawn_thread` until the KVM backend runs them (docs/threads.md).
    mem.write(at(offset_of!(BootInfo, ring_count)), &(MAX_THREADS as u32).to_le_bytes())?;
    mem.write(at(offset_of!(BootInfo, thread_limit)), &(MAX_THREADS as u32).to_le_bytes())?;
    mem.write_u64(at(offset_of!(BootInfo, arena_start)), ARENA_VA)?;
    mem.write_u64(at(offset_of!(BootInfo, arena_len)), arena_len)?;
    mem.write_u64(at(offset_of!(BootInfo, brk_start)), brk_va)?;
    mem.write_u64(at(offset_of!(BootInfo, brk_len)), brk_len)?;
    mem.write(at(offset_of!(BootInfo, pid)), &p.pid.to_le_bytes())?;
    mem.write(at(offset_of!(BootInfo, ppid)), &p.ppid.to_le_bytes())?;
    mem.write(at(offset_of!(BootInfo, uid)), &p.uid.to_le_bytes())?;
    mem.write(at(offset_of!(BootInfo, gid)), &p.gid.to_le_bytes())?;
    Ok(())
}
