//! Where things live in a process domain's address space, and the sizes of
//! the areas the monitor provides. Every magic address of the process
//! backend is here (the sizes all backends share are in
//! `cabin_monitor::layout`).
//!
//! ```text
//! PIE_BASE        static-PIE images are loaded here (ET_EXEC at their own addresses)
//! DOMAIN_BASE     boot page | ring | loader page(s) | stub  (one memfd, shared)
//! STACK_TOP       8 MiB stack below it, guard gap under it
//! BRK_BASE        brk heap
//! ARENA_BASE      anonymous-memory arena
//! RESERVE_BASE    reservation space (address space only)
//! SHARED_BASE     the tree's shared window (SysV segments; nothing above it)
//! FILEMAP_BASE    shared file mappings, the files' own pages (nothing above it)
//! ```
//!
//! All of it lies far from where Linux places a PIE monitor (0x55.., 0x56..)
//! and its mmap area (0x7f..), and inside the 47-bit user space.

pub use cabin_monitor::layout::{page_down, page_up, PAGE, STACK_SIZE};
/// Load bias for static-PIE images.
pub const PIE_BASE: u64 = 0x0000_1000_0000_0000;
/// Start of the monitor-provided areas.
pub const DOMAIN_BASE: u64 = 0x0000_2000_0000_0000;
/// The boot-information page.
pub const BOOT_ADDR: u64 = DOMAIN_BASE;
/// The ring region: one ring per thread slot
/// ([`cabin_abi::thread::RING_REGION_BYTES`]).
pub const RING_ADDR: u64 = DOMAIN_BASE + PAGE;
/// Bytes reserved for the ring region.
pub const RING_SIZE: u64 = (cabin_abi::thread::RING_REGION_BYTES as u64).div_ceil(PAGE) * PAGE;
// Room for every ring, site hints included.
const _: () = assert!(RING_SIZE >= cabin_abi::thread::RING_REGION_BYTES as u64);
/// Scratch the child's loader uses (seccomp program, unmap list).
pub const LOADER_ADDR: u64 = RING_ADDR + RING_SIZE;
/// Size of the loader scratch.
pub const LOADER_SIZE: u64 = 16 * PAGE;
/// The one page of monitor code the child keeps: a copy of the entry stub
/// (`process::enter_domain`) that unmaps everything else, installs the
/// seccomp filter and jumps to the program. Mapped execute-only.
pub const STUB_ADDR: u64 = LOADER_ADDR + LOADER_SIZE;
/// Highest user address (one past) with 4-level paging.
pub const USER_TOP_47: u64 = 0x0000_7fff_ffff_f000;
/// Highest user address (one past) with 5-level paging.
pub const USER_TOP_56: u64 = 0x00ff_ffff_ffff_f000;
/// Lowest address of the stack (an unmapped guard gap lies below).
pub const STACK_BASE: u64 = DOMAIN_BASE + (1 << 30);
/// One past the highest stack address.
pub const STACK_TOP: u64 = STACK_BASE + STACK_SIZE;
/// Start of the `brk` heap.
pub const BRK_BASE: u64 = DOMAIN_BASE + (4 << 30);
/// Largest `brk` heap.
pub const BRK_SIZE: u64 = 1 << 30;
/// Start of the anonymous-memory arena.
pub const ARENA_BASE: u64 = DOMAIN_BASE + (8 << 30);
/// The reservation space: address space for `PROT_NONE` reservations,
/// committed with arena pages of the memfd (`cabin_abi::boot::BootInfo::reserve_start`).
/// Not mapped at start; the highest range of the domain (the seccomp
/// filter's `mmap` and `munmap` rules rely on nothing lying above it).
pub const RESERVE_BASE: u64 = DOMAIN_BASE + (1 << 40);
/// Its length: a 64 GiB reservation (a JVM-like heap, Go's arenas) fits.
/// It also bounds the kernel's page tables for it (a program that maps an
/// arena page at every page of it: `2 * RESERVE_LEN / 512`).
pub const RESERVE_LEN: u64 = 68 << 30;

const _: () = assert!(RESERVE_BASE + 2 * RESERVE_LEN <= USER_TOP_47);

/// The tree's shared window (docs/processes.md, "Shared memory"): the same
/// memfd at the same address in every process of the tree, mapped piece by
/// piece by the libos (`shmat`). Above the reservation space and the twice
/// its length the filter's reservation rules can reach; nothing lies above
/// it either, up to twice its largest length (the filter's window rules
/// allow a mapping that starts in it to be as long as it).
pub const SHARED_BASE: u64 = DOMAIN_BASE + (2 << 40);

const _: () = assert!(SHARED_BASE >= RESERVE_BASE + 2 * RESERVE_LEN);
const _: () = assert!(SHARED_BASE + 2 * cabin_monitor::shm::MAX_WINDOW <= USER_TOP_47);

/// The process's file-mapping range (docs/processes.md, "Shared file
/// mappings"): shared file mappings the monitor accepted, each the file's
/// own pages, mapped natively by the libos with the descriptor the monitor
/// sends. Its length is the memory bound, at most [`FILEMAP_MAX`]; nothing
/// lies above it up to twice that (the filter's rules allow a mapping that
/// starts in it to be as long as it).
pub const FILEMAP_BASE: u64 = DOMAIN_BASE + (3 << 40);
/// Largest file-mapping range.
pub const FILEMAP_MAX: u64 = 64 << 30;

const _: () = assert!(FILEMAP_BASE >= SHARED_BASE + 2 * cabin_monitor::shm::MAX_WINDOW);
const _: () = assert!(FILEMAP_BASE + 2 * FILEMAP_MAX <= USER_TOP_47);
