//! How a confined program learns that a Cabin monitor started it.
//!
//! A monitor that loads an image itself (process, KVM and SNP backends) adds
//! an auxiliary-vector entry of type [`AT_CABIN_BOOT`] whose value is the
//! address of the boot-information block. When the entry is absent, the
//! kernel started the image directly and the libos runs in *passthrough*
//! mode, performing each system call itself.

/// Auxiliary-vector type carrying the boot-information address.
/// Chosen far above Linux's own `AT_*` numbers (which stay below 64).
pub const AT_CABIN_BOOT: u64 = 0x4341_4249; // "CABI"

/// Standard auxiliary-vector types the libos and loaders use.
pub mod auxv {
    /// End of vector.
    pub const AT_NULL: u64 = 0;
    /// Address of the program headers.
    pub const AT_PHDR: u64 = 3;
    /// Size of one program header.
    pub const AT_PHENT: u64 = 4;
    /// Number of program headers.
    pub const AT_PHNUM: u64 = 5;
    /// Page size.
    pub const AT_PAGESZ: u64 = 6;
    /// Interpreter base (0 for static programs).
    pub const AT_BASE: u64 = 7;
    /// Program entry point.
    pub const AT_ENTRY: u64 = 9;
    /// Real user id.
    pub const AT_UID: u64 = 11;
    /// Effective user id.
    pub const AT_EUID: u64 = 12;
    /// Real group id.
    pub const AT_GID: u64 = 13;
    /// Effective group id.
    pub const AT_EGID: u64 = 14;
    /// Platform string address.
    pub const AT_PLATFORM: u64 = 15;
    /// CPU capability bits.
    pub const AT_HWCAP: u64 = 16;
    /// Clock ticks per second.
    pub const AT_CLKTCK: u64 = 17;
    /// Secure mode.
    pub const AT_SECURE: u64 = 23;
    /// Address of 16 random bytes.
    pub const AT_RANDOM: u64 = 25;
    /// More CPU capability bits.
    pub const AT_HWCAP2: u64 = 26;
    /// File name of the program.
    pub const AT_EXECFN: u64 = 31;
    /// vDSO base.
    pub const AT_SYSINFO_EHDR: u64 = 33;
    /// Minimum signal stack size.
    pub const AT_MINSIGSTKSZ: u64 = 51;
}
