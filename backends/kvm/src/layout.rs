//! Every guest address of a KVM domain, in one place.
//!
//! Guest-physical memory is one host mapping of `--mem` bytes registered as
//! KVM memory slot 0 at guest-physical address 0. Its low 16 MiB hold the
//! system area (descriptor tables, kernel stacks, proxy-kernel, boot page,
//! ring, page tables); the image's pages start at [`IMAGE_GPA`] (the
//! address the measurement assumes, `cabin_abi::layout`), followed by the
//! program's stack, its `brk` heap and the anonymous-memory arena, which
//! takes the rest.
//!
//! ```text
//! GPA                      contents                         guest-virtual address
//! 0x0000_0000              (unused, never mapped)
//! 0x0000_1000  GDT_GPA     GDT (Linux selectors, one TSS    KERNEL_VA_BASE + GPA   supervisor RW NX
//!                          descriptor per vCPU)
//! 0x0000_2000  IDT_GPA     IDT, 256 gates (all vCPUs)       KERNEL_VA_BASE + GPA   supervisor RW NX
//! 0x0000_4000  TSS_GPA     TSS k + I/O bitmap at            KERNEL_VA_BASE + GPA   supervisor RW NX
//!                          TSS_GPA + k * TSS_STRIDE
//! 0x0004_0000  VC_GPA      per-vCPU #VC blocks (SEV-SNP;     KERNEL_VA_BASE + GPA   supervisor RW NX
//!                          mapped on KVM too, never used there): vCPU k's at + k * VC_STRIDE:
//!                          guard page, #VC stack (TSS.IST3), calling area (GHCB layout)
//! 0x0010_0000  PK_GPA      proxy-kernel blob                PK_VA                  supervisor RX
//! 0x0020_0000  BOOT_GPA    boot-information page            BOOT_VA                user RW NX
//! 0x0020_1000  RING_GPA    the ring                         RING_VA                user RW NX
//! 0x0040_0000  PT_GPA      page-table pool (not mapped)
//! 0x00d0_0000  VCPU_STACKS_GPA  per-vCPU ring-0 stacks:     KERNEL_VA_BASE + GPA   supervisor RW NX
//!                          vCPU k's block at + k * VCPU_STACKS_STRIDE (guard pages unmapped)
//! 0x00f0_0000              manifest (measurement only; not loaded)
//! 0x0100_0000  IMAGE_GPA   image pages, in address order    link address (+ PIE_BASE for static-PIE)
//! after image              stack, STACK_SIZE                STACK_TOP_VA - STACK_SIZE
//!                          brk heap                         first 2 MiB boundary after the image
//!                          arena (rest of memory)           ARENA_VA
//! ```

use cabin_abi::layout::{IMAGE_GPA_BASE, MANIFEST_GPA};

/// Page size.
pub const PAGE: u64 = 4096;
/// Size of a large (2 MiB) page.
pub const LARGE_PAGE: u64 = 2 << 20;

/// Guest memory from here on is asked to be backed by 2 MiB host pages
/// (`memory::PhysMemory::new`); the system area below stays on 4 KiB pages.
/// A multiple of [`LARGE_PAGE`].
pub const HUGE_PAGES_FROM: u64 = IMAGE_GPA;
const _: () = assert!(HUGE_PAGES_FROM.is_multiple_of(LARGE_PAGE));

/// Base of the supervisor window: the system area's guest-physical address
/// `gpa` is visible to ring 0 at `KERNEL_VA_BASE + gpa`.
pub const KERNEL_VA_BASE: u64 = 0xffff_ffff_8000_0000;

/// Most vCPUs a domain runs: one per program thread (issue 13). Every
/// vCPU's TSS and ring-0 stacks are laid out and mapped before boot, so
/// starting a thread never touches ring 0.
pub const MAX_VCPUS: usize = 64;

/// Global descriptor table: the Linux selectors, then one TSS descriptor
/// per vCPU (`descriptors::tss_selector`).
pub const GDT_GPA: u64 = 0x1000;
/// Interrupt descriptor table (one for all vCPUs: the proxy-kernel keeps no
/// per-CPU state, its stacks come from each vCPU's TSS).
pub const IDT_GPA: u64 = 0x2000;
/// Task-state segments: vCPU k's TSS and I/O permission bitmap at
/// `TSS_GPA + k * TSS_STRIDE`.
pub const TSS_GPA: u64 = 0x4000;
/// Distance between two vCPUs' TSSs (a TSS never crosses a page).
pub const TSS_STRIDE: u64 = 0x100;
/// Per-vCPU ring-0 stacks: vCPU k's block at
/// `VCPU_STACKS_GPA + k * VCPU_STACKS_STRIDE`, laid out as (offsets in the
/// block) guard page, IST1 stack, guard page, page-fault stack, guard page,
/// kernel stack. Guard pages are left unmapped: a ring-0 stack overflow
/// faults (a proxy-kernel fault, a Cabin bug) instead of writing into the
/// neighbouring stack or the next vCPU's.
pub const VCPU_STACKS_GPA: u64 = 0xd0_0000;
/// Size of one vCPU's stack block.
pub const VCPU_STACKS_STRIDE: u64 = 0x8000;
/// Offset in a vCPU's block of its stack for double faults, NMIs and
/// machine checks (`TSS.IST1`).
pub const IST_OFFSET: u64 = 0x1000;
/// Size of the IST1 stack.
pub const IST_SIZE: u64 = 0x1000;
/// Offset in a vCPU's block of its stack for page faults (`TSS.IST2`): a
/// page fault in ring 0 never runs on a stack the program chose (see
/// `descriptors::ist_for`). The slow-path gate arrives here on this
/// project's nested KVM.
pub const PF_IST_OFFSET: u64 = 0x3000;
/// Size of the page-fault stack.
pub const PF_IST_SIZE: u64 = 0x1000;
/// Offset in a vCPU's block of its kernel stack (`TSS.RSP0`, traps from
/// ring 3).
pub const KSTACK_OFFSET: u64 = 0x5000;
/// Size of the kernel stack.
pub const KSTACK_SIZE: u64 = 0x3000;
/// Per-vCPU `#VC` blocks (SEV-SNP, `cabin_proxy_kernel::vc`): vCPU k's at
/// `VC_GPA + k * VC_STRIDE`: a guard page (unmapped), the `#VC` stack
/// (`TSS.IST3`: a `#VC` can arrive in ring 0 on the program's stack, at
/// the `syscall` entry's `out`, and inside another trap's handler) and,
/// right above the stack's top, the vCPU's calling area: the page the
/// proxy-kernel's `#VC` handler writes its request to VMPL0 into. Both are
/// supervisor-only: ring 3 can neither read nor forge a request. KVM maps
/// them too (one layout for both backends); no `#VC` ever happens there.
pub const VC_GPA: u64 = 0x4_0000;
/// Size of one vCPU's `#VC` block.
pub const VC_STRIDE: u64 = 3 * PAGE;
/// Offset in a block of the `#VC` stack (one page; its top is the calling area).
pub const VC_STACK_OFFSET: u64 = PAGE;
/// Offset in a block of the calling area.
pub const VC_AREA_OFFSET: u64 = 2 * PAGE;
/// The proxy-kernel blob.
pub const PK_GPA: u64 = 0x10_0000;
/// Largest proxy-kernel blob (guest-physical room; see also [`PK_VA`]).
pub const PK_MAX: u64 = 0x10_0000;
/// Where ring 0 sees the proxy-kernel: in the upper half, at an address
/// whose low 32 bits are 0, so that every proxy-kernel address cut to 32
/// bits lies below [`cabin_abi::layout::LOWEST_PROGRAM_ADDRESS`], where
/// nothing is ever mapped. KVM's instruction emulator (which runs every
/// ring-0 entry on this project's nested KVM) cuts `CSTAR` to 32 bits for
/// a `syscall` from 32-bit code; such a jump then faults at once instead of
/// finding program code (`cabin_proxy_kernel::trap::classify`).
pub const PK_VA: u64 = 0xffff_fffe_0000_0000;
/// The boot-information page.
pub const BOOT_GPA: u64 = 0x20_0000;
/// The ring.
pub const RING_GPA: u64 = 0x20_1000;
/// Bytes reserved for the ring.
pub const RING_MAX: u64 = 0x1f_f000;
// Room for the whole ring, site hints included.
const _: () = assert!(RING_MAX >= cabin_abi::thread::RING_REGION_BYTES as u64);
/// First page of the page-table pool.
pub const PT_GPA: u64 = 0x40_0000;
/// End of the page-table pool (the per-vCPU stacks follow it).
pub const PT_END: u64 = VCPU_STACKS_GPA;
/// The image's lowest loadable page.
pub const IMAGE_GPA: u64 = IMAGE_GPA_BASE;

/// Where a static-PIE image is loaded.
pub const PIE_BASE: u64 = 0x0000_5555_5555_4000;
/// The boot-information page, as the program sees it.
pub const BOOT_VA: u64 = 0x0000_7ff0_0000_0000;
/// The ring, as the program sees it.
pub const RING_VA: u64 = BOOT_VA + (RING_GPA - BOOT_GPA);
/// The anonymous-memory arena (2 MiB aligned, so it maps with large pages).
pub const ARENA_VA: u64 = 0x0000_7e00_0000_0000;
/// The reservation space (`cabin_abi::boot::BootInfo::reserve_start`):
/// guest-virtual address space without guest-physical memory, where the
/// monitor maps arena pages as the program commits them
/// (`cabin_abi::hypercall::DOORBELL_COMMIT`). Guest-physical memory stays
/// the bound; this only needs page tables (from the pool).
pub const RESERVE_VA: u64 = 0x0000_6000_0000_0000;
/// Its length (as on the process backend).
pub const RESERVE_LEN: u64 = 68 << 30;
/// The tree's shared window (docs/processes.md, "Shared memory"): the
/// same memfd in every VM of the tree, one more memory slot at
/// [`SHARED_GPA`], mapped user read-write (never executable) at this
/// address in the page tables before boot.
pub const SHARED_VA: u64 = 0x0000_5000_0000_0000;
/// Guest-physical address of the shared window's slot: above any guest
/// memory ([`MAX_MEM`]) and below the TLB-flush page (256 GiB).
pub const SHARED_GPA: u64 = 1 << 37;
/// The slot of the shared window.
pub const SHARED_SLOT: u32 = 1;
const _: () = assert!(SHARED_GPA >= MAX_MEM && SHARED_GPA + cabin_monitor::shm::MAX_WINDOW <= 1 << 38);
const _: () = assert!(SHARED_VA + cabin_monitor::shm::MAX_WINDOW <= PIE_BASE);

/// Live shared file mappings (docs/kvm.md, "Live shared file mappings"):
/// the file-mapping range of the program's address space
/// (`BootInfo::filemap_start`), as long as the memory bound, at most
/// [`FILEMAP_MAX`].
pub const FILEMAP_VA: u64 = 0x0000_4000_0000_0000;
/// Longest file-mapping range (as on the process backend).
pub const FILEMAP_MAX: u64 = 64 << 30;
/// Guest-physical addresses of file slots, `[FILE_GPA, FILE_GPA_END)`:
/// handed out by a per-VM bump pointer. A deleted slot's are never reused
/// within a VM, so a stale translation can only reach an address without a
/// slot (an MMIO exit), never another mapping; a slot kept empty for the
/// next mapping keeps its own (`files.rs`: emptying it dropped every
/// translation to the old pages first).
pub const FILE_GPA: u64 = 1 << 39;
/// End of the file slots' guest-physical addresses.
pub const FILE_GPA_END: u64 = 1 << 40;
/// First memory slot of a file mapping (0: guest memory, 1: the shared
/// window, 7: the TLB flush's page).
pub const FILE_SLOT_FIRST: u32 = 8;
/// File slots a VM has at most (`ENOMEM` past them): each slot change
/// copies KVM's slot array and zaps its shadow pages.
pub const FILE_SLOTS: u32 = 64;
// Apart from every other range; file GPAs above the TLB flush's page (2^38).
const _: () =
    assert!(FILEMAP_VA + FILEMAP_MAX <= SHARED_VA && FILE_GPA > (1 << 38) && FILE_GPA_END <= 1 << 46);

/// One past the highest byte of the program's stack.
pub const STACK_TOP_VA: u64 = 0x0000_7fff_ffe0_0000;
/// Size of the program's stack (mapped up front).
pub const STACK_SIZE: u64 = 8 << 20;

/// Default guest memory: the default bound on a program's memory
/// ([`cabin_monitor::layout::DEFAULT_MEMORY`]), the same on every backend.
pub const DEFAULT_MEM: u64 = cabin_monitor::layout::DEFAULT_MEMORY;
/// Smallest guest memory accepted.
pub const MIN_MEM: u64 = 64 << 20;
/// Largest guest memory accepted (bounded by the page-table pool).
pub const MAX_MEM: u64 = 4 << 30;

/// Guest-physical address of vCPU `k`'s TSS.
pub const fn tss_gpa(k: usize) -> u64 {
    TSS_GPA + k as u64 * TSS_STRIDE
}

/// Guest-physical address of vCPU `k`'s stack block.
pub const fn vcpu_stacks_gpa(k: usize) -> u64 {
    VCPU_STACKS_GPA + k as u64 * VCPU_STACKS_STRIDE
}

/// `TSS.RSP0` of vCPU `k`: top of its kernel stack, as ring 0 sees it.
pub const fn kernel_stack_top(k: usize) -> u64 {
    KERNEL_VA_BASE + vcpu_stacks_gpa(k) + KSTACK_OFFSET + KSTACK_SIZE
}

/// `TSS.IST1` of vCPU `k`: top of its IST stack.
pub const fn ist_stack_top(k: usize) -> u64 {
    KERNEL_VA_BASE + vcpu_stacks_gpa(k) + IST_OFFSET + IST_SIZE
}

/// `TSS.IST2` of vCPU `k`: top of its page-fault stack.
pub const fn pf_stack_top(k: usize) -> u64 {
    KERNEL_VA_BASE + vcpu_stacks_gpa(k) + PF_IST_OFFSET + PF_IST_SIZE
}

/// The mapped stacks of vCPU `k`: (guest-physical address, length) each.
pub const fn vcpu_stacks(k: usize) -> [(u64, u64); 3] {
    let b = vcpu_stacks_gpa(k);
    [(b + IST_OFFSET, IST_SIZE), (b + PF_IST_OFFSET, PF_IST_SIZE), (b + KSTACK_OFFSET, KSTACK_SIZE)]
}

/// Guest-physical address of vCPU `k`'s `#VC` stack (one page).
pub const fn vc_stack_gpa(k: usize) -> u64 {
    VC_GPA + k as u64 * VC_STRIDE + VC_STACK_OFFSET
}

/// Guest-physical address of vCPU `k`'s calling area (one page).
pub const fn vc_area_gpa(k: usize) -> u64 {
    VC_GPA + k as u64 * VC_STRIDE + VC_AREA_OFFSET
}

/// `TSS.IST3` of vCPU `k`: top of its `#VC` stack = its calling area's
/// ring-0 address (the handler finds the area from its frame).
pub const fn vc_stack_top(k: usize) -> u64 {
    KERNEL_VA_BASE + vc_stack_gpa(k) + PAGE
}

/// Ring-0 address of a system-area guest-physical address.
pub const fn kernel_va(gpa: u64) -> u64 {
    KERNEL_VA_BASE + gpa
}

const _: () = {
    assert!(PK_GPA + PK_MAX <= BOOT_GPA);
    assert!(RING_GPA + RING_MAX <= PT_GPA);
    assert!(GDT_GPA + PAGE <= IDT_GPA && IDT_GPA + PAGE <= TSS_GPA);
    assert!(GDT_GPA + super::descriptors::GDT_BYTES as u64 <= IDT_GPA);
    assert!(tss_gpa(MAX_VCPUS) <= KERNEL_LOW_END && TSS_STRIDE >= super::descriptors::TSS_BYTES as u64);
    assert!(PAGE.is_multiple_of(TSS_STRIDE));
    // Guard page, IST1, guard page, #PF stack, guard page, kernel stack: each in order, no overlap.
    assert!(IST_OFFSET >= PAGE && IST_OFFSET + IST_SIZE + PAGE <= PF_IST_OFFSET);
    assert!(PF_IST_OFFSET + PF_IST_SIZE + PAGE <= KSTACK_OFFSET);
    assert!(KSTACK_OFFSET + KSTACK_SIZE <= VCPU_STACKS_STRIDE);
    assert!(VCPU_STACKS_STRIDE.is_multiple_of(PAGE));
    assert!(vcpu_stacks_gpa(MAX_VCPUS) <= MANIFEST_GPA);
    assert!(tss_gpa(MAX_VCPUS) <= VC_GPA && VC_GPA + MAX_VCPUS as u64 * VC_STRIDE <= PK_GPA);
    assert!(vc_stack_top(0) == KERNEL_VA_BASE + vc_area_gpa(0));
    assert!(PK_VA as u32 == 0 && PK_VA >= KERNEL_VA_BASE - (1 << 33));
    assert!(PT_END <= IMAGE_GPA);
    assert!(ARENA_VA.is_multiple_of(LARGE_PAGE));
    assert!(STACK_TOP_VA.is_multiple_of(LARGE_PAGE) && STACK_SIZE.is_multiple_of(LARGE_PAGE));
    // Enough page tables for MAX_MEM mapped with 4 KiB pages, plus upper levels.
    assert!((PT_END - PT_GPA) / PAGE >= MAX_MEM / LARGE_PAGE + 64);
};

/// End of the low system area that holds the descriptor tables.
const KERNEL_LOW_END: u64 = PK_GPA;

/// Guest memory for a KVM domain. `mem` is `--mem` (0 = not given), `limit`
/// `[limits] memory`. With a limit, the guest is the limit rounded down to
/// 2 MiB (so the host never maps more for it), and no larger than `--mem`;
/// without, `--mem` rounded up to 2 MiB, or the default. The KVM domain
/// builder refuses sizes outside its range (`MIN_MEM..=MAX_MEM`) with a
/// message that names them.
pub fn guest_memory(mem: u64, limit: Option<u64>) -> u64 {
    let round_up = |m: u64| m.checked_next_multiple_of(LARGE_PAGE).unwrap_or(u64::MAX);
    match (limit, mem) {
        (Some(l), 0) => l & !(LARGE_PAGE - 1),
        (Some(l), m) => l.min(round_up(m)) & !(LARGE_PAGE - 1),
        (None, 0) => DEFAULT_MEM,
        (None, m) => round_up(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_guest_memory_stays_within_the_limit() {
        assert_eq!(guest_memory(0, None), DEFAULT_MEM);
        assert_eq!(guest_memory(100 << 20, None), 100 << 20);
        assert_eq!(guest_memory((99 << 20) + 1, None), 100 << 20);
        assert_eq!(guest_memory(0, Some(64 << 20)), 64 << 20);
        assert_eq!(guest_memory(0, Some((65 << 20) + 7)), 64 << 20);
        assert_eq!(guest_memory(64 << 20, Some(64 << 20)), 64 << 20, "what cabinc passes");
        assert_eq!(guest_memory(1 << 30, Some(128 << 20)), 128 << 20);
        assert_eq!(guest_memory(96 << 20, Some(128 << 20)), 96 << 20);
    }
}
