//! Guest-physical layout constants shared by the measurement and the backends.
//!
//! A Cabin image is measured as if its pages were placed in guest-physical
//! memory at [`IMAGE_GPA_BASE`] + (link-time address − lowest loadable page),
//! followed by its manifest at [`MANIFEST_GPA`]. Backends that build a real
//! domain (KVM, SNP) use the same addresses, so the digest the rewriter
//! records is the digest the firmware computes at launch.

/// Guest-physical address of the image's lowest loadable page.
pub const IMAGE_GPA_BASE: u64 = 0x0100_0000; // 16 MiB
/// Guest-physical address of the manifest pages.
pub const MANIFEST_GPA: u64 = 0x00f0_0000; // 15 MiB
/// Largest manifest the layout leaves room for.
pub const MANIFEST_MAX: u64 = IMAGE_GPA_BASE - MANIFEST_GPA;

/// Lowest address any backend maps for a program: nothing lives in the first
/// 64 KiB of a domain (Linux's default `vm.mmap_min_addr`), so a null or
/// small pointer always faults, and on KVM no `syscall` or trap can find
/// program code or data at a small address. Images with a segment below it
/// are refused (`cabinc build` and both loaders, with the same message); the
/// libos refuses a fixed mapping below it with `EPERM`, as Linux does.
pub const LOWEST_PROGRAM_ADDRESS: u64 = 0x1_0000;
