//! The contract between the rewriter and the libos it links into an image.
//!
//! The libos exports a writable [`LinkInfo`] under the symbol
//! [`LINK_INFO_SYMBOL`]. The rewriter fills it at build time; the libos reads
//! it at start-up. Every address in it is stored as an offset from the
//! libos's own load address (the address of its first byte, symbol
//! [`LIBOS_BASE_SYMBOL`]), so the same image works whether the program is
//! position-dependent or static-PIE and whatever base the loader picked.
//!
//! Symbols the libos must export:
//! - [`START_SYMBOL`]: the image's entry point. Runs with the kernel's (or
//!   the monitor's) initial stack, initialises the libos, repairs the
//!   auxiliary vector (`AT_ENTRY`, `AT_PHDR`) and jumps to the original entry.
//! - [`SYSCALL_ENTRY_SYMBOL`]: called by every rewritten site's trampoline
//!   (see [`trampoline`]).

/// Symbol of the libos entry point.
pub const START_SYMBOL: &str = "cabin_start";
/// Symbol called by trampolines.
pub const SYSCALL_ENTRY_SYMBOL: &str = "cabin_syscall_entry";
/// Symbol of the [`LinkInfo`] block.
pub const LINK_INFO_SYMBOL: &str = "CABIN_LINK_INFO";
/// Symbol at the libos's first byte (its load base).
pub const LIBOS_BASE_SYMBOL: &str = "__cabin_libos_base";

/// Magic value of [`LinkInfo::magic`]: "CABINLNK".
pub const LINK_INFO_MAGIC: u64 = u64::from_le_bytes(*b"CABINLNK");

/// Link-time facts the rewriter hands to the libos.
///
/// Offsets are signed and relative to the libos load base; an unset offset
/// is 0 and marked by the matching flag.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// [`LINK_INFO_MAGIC`].
    pub magic: u64,
    /// [`crate::ABI_VERSION`] of the rewriter that wrote this block.
    pub abi_version: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// The program's original entry point, relative to the libos base.
    pub original_entry: i64,
    /// The program headers as loaded (the image's PHDR table), relative to
    /// the libos base. The libos rewrites `AT_PHDR` to point here.
    pub phdr: i64,
    /// Number of program headers in that table.
    pub phnum: u64,
    /// Reserved for later versions; zero.
    pub reserved: [u64; 3],
}

/// Image was built with execute-only code.
pub const FLAG_EXECUTE_ONLY: u32 = 1 << 0;
/// The program is static-PIE (`ET_DYN`).
pub const FLAG_PIE: u32 = 1 << 1;

impl LinkInfo {
    /// Size of the encoded block in bytes.
    pub const SIZE: usize = core::mem::size_of::<LinkInfo>();

    /// An unfilled block, as the libos carries it before the rewriter runs.
    pub const EMPTY: LinkInfo = LinkInfo {
        magic: 0,
        abi_version: 0,
        flags: 0,
        original_entry: 0,
        phdr: 0,
        phnum: 0,
        reserved: [0; 3],
    };

    /// Little-endian encoding, as the rewriter stores it in the image.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..8].copy_from_slice(&self.magic.to_le_bytes());
        out[8..12].copy_from_slice(&self.abi_version.to_le_bytes());
        out[12..16].copy_from_slice(&self.flags.to_le_bytes());
        out[16..24].copy_from_slice(&self.original_entry.to_le_bytes());
        out[24..32].copy_from_slice(&self.phdr.to_le_bytes());
        out[32..40].copy_from_slice(&self.phnum.to_le_bytes());
        for (i, r) in self.reserved.iter().enumerate() {
            out[40 + 8 * i..48 + 8 * i].copy_from_slice(&r.to_le_bytes());
        }
        out
    }
}

/// The trampoline calling convention.
///
/// A rewritten site jumps to a per-site trampoline which:
/// 1. runs the instructions displaced from before the site,
/// 2. `lea rsp, [rsp - RED_ZONE]` (never touch the interrupted code's red zone),
/// 3. `call cabin_syscall_entry` with the system-call number in `rax` and the
///    arguments in `rdi, rsi, rdx, r10, r8, r9`, exactly as for `syscall`,
/// 4. `lea rsp, [rsp + RED_ZONE]`,
/// 5. runs the instructions displaced from after the site, and
/// 6. jumps back to the first byte after the patch window.
///
/// `cabin_syscall_entry` returns the result in `rax` and preserves every
/// other register, the flags and all vector state, as the kernel does across
/// `syscall` (the kernel clobbers `rcx` and `r11`; the entry may too).
pub mod trampoline {
    /// Bytes below `rsp` that the interrupted code may be using (SysV red zone).
    pub const RED_ZONE: i32 = 128;
    /// Bytes the trampoline's `call` and the stack adjustment occupy: the
    /// entry's return address sits at `site_rsp - RED_ZONE - 8`.
    pub const ENTRY_RSP_OFFSET: u64 = RED_ZONE as u64 + 8;
}
