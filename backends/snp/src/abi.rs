//! The ioctl ABI of `/dev/cabin-vmpl` (`module/cabin_vmpl.h`), mirrored:
//! one `#[repr(C)]` struct per request and the ioctl numbers, computed the
//! way Linux's `_IOR`/`_IOW`/`_IOWR` do. The test `abi_matches_the_c_header`
//! (tests/module.rs) compiles the C header and compares every size, offset
//! and number; the layout tests here pin them without a compiler.

/// The module's ABI version.
pub const VERSION: u32 = 1;
/// The ioctl type byte.
pub const MAGIC: u64 = 0xCB;
/// Domain memory is taken in chunks of this size.
pub const CHUNK: u64 = 2 << 20;
/// Largest domain.
pub const MAX_MEM: u64 = 4 << 30;
/// The device.
pub const DEVICE: &str = "/dev/cabin-vmpl";

/// `CABIN_VMPL_GET_INFO`'s answer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// [`VERSION`].
    pub version: u32,
    /// The VMPL the guest kernel runs at (must be 0).
    pub vmpl: u32,
    /// `MSR_AMD64_SEV` (bit 2: SNP active).
    pub sev_status: u64,
    /// GHCB hypervisor features.
    pub hv_features: u64,
}

/// `CABIN_VMPL_SETUP`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// Bytes, a multiple of [`CHUNK`].
    pub mem_size: u64,
    /// 0.
    pub flags: u64,
}

/// `CABIN_VMPL_GET_CHUNKS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chunks {
    /// In: entries at `uaddr`; out: chunks of the domain.
    pub count: u64,
    /// A `u64` array: the guest-physical address of each chunk.
    pub uaddr: u64,
}

/// `CABIN_VMPL_GRANT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// Domain offset (the domain's own guest-physical address).
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// VMPL1 permissions (`VmplPerms` bits).
    pub perms: u8,
    /// Zero.
    pub pad: [u8; 7],
}

/// `CABIN_VMPL_CREATE_VCPU`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vcpu {
    /// Address of 4096 bytes: the VMSA image.
    pub vmsa_uaddr: u64,
    /// vCPU index.
    pub vcpu: u32,
    /// Zero.
    pub pad: u32,
}

/// Why `CABIN_VMPL_RUN` returned.
pub mod exit_reason {
    /// VMPL1 executed `VMGEXIT` (the doorbell).
    pub const VMGEXIT: u32 = 1;
    /// VMPL1 faulted.
    pub const FAULT: u32 = 2;
    /// A signal is pending for the monitor's thread.
    pub const SIGNAL: u32 = 3;
    /// VMPL1 halted or shut down.
    pub const HALT: u32 = 4;
}

/// `CABIN_VMPL_RUN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// In: the vCPU.
    pub vcpu: u32,
    /// Out: [`exit_reason`].
    pub reason: u32,
    /// Out: VMPL1's guest exit code.
    pub exit_code: u64,
    /// Out: exit info 1.
    pub exit_info1: u64,
    /// Out: exit info 2.
    pub exit_info2: u64,
    /// Out: RIP.
    pub rip: u64,
    /// Out: RAX.
    pub rax: u64,
    /// Out: RDI.
    pub rdi: u64,
    /// Out: RSI.
    pub rsi: u64,
    /// Out: RDX.
    pub rdx: u64,
}

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

/// Linux's `_IOC(dir, type, nr, size)` (x86: nr 0..7, type 8..15, size
/// 16..29, dir 30..31).
pub const fn ioc(dir: u64, ty: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (ty << 8) | nr
}

/// `CABIN_VMPL_GET_INFO`: `_IOR(MAGIC, 0, Info)`.
pub const GET_INFO: u64 = ioc(IOC_READ, MAGIC, 0, size_of::<Info>());
/// `CABIN_VMPL_SETUP`: `_IOW(MAGIC, 1, Setup)`.
pub const SETUP: u64 = ioc(IOC_WRITE, MAGIC, 1, size_of::<Setup>());
/// `CABIN_VMPL_GET_CHUNKS`: `_IOWR(MAGIC, 2, Chunks)`.
pub const GET_CHUNKS: u64 = ioc(IOC_READ | IOC_WRITE, MAGIC, 2, size_of::<Chunks>());
/// `CABIN_VMPL_GRANT`: `_IOW(MAGIC, 3, Grant)`.
pub const GRANT: u64 = ioc(IOC_WRITE, MAGIC, 3, size_of::<Grant>());
/// `CABIN_VMPL_CREATE_VCPU`: `_IOW(MAGIC, 4, Vcpu)`.
pub const CREATE_VCPU: u64 = ioc(IOC_WRITE, MAGIC, 4, size_of::<Vcpu>());
/// `CABIN_VMPL_RUN`: `_IOWR(MAGIC, 5, Run)`.
pub const RUN: u64 = ioc(IOC_READ | IOC_WRITE, MAGIC, 5, size_of::<Run>());

/// One struct's C name, size, and (field, offset) pairs.
pub type StructLayout = (&'static str, usize, Vec<(&'static str, usize)>);

/// Every struct's layout: what the C header test compares.
pub fn layout() -> Vec<StructLayout> {
    use std::mem::offset_of;
    vec![
        (
            "cabin_vmpl_info",
            size_of::<Info>(),
            vec![
                ("version", offset_of!(Info, version)),
                ("vmpl", offset_of!(Info, vmpl)),
                ("sev_status", offset_of!(Info, sev_status)),
                ("hv_features", offset_of!(Info, hv_features)),
            ],
        ),
        (
            "cabin_vmpl_setup",
            size_of::<Setup>(),
            vec![("mem_size", offset_of!(Setup, mem_size)), ("flags", offset_of!(Setup, flags))],
        ),
        (
            "cabin_vmpl_chunks",
            size_of::<Chunks>(),
            vec![("count", offset_of!(Chunks, count)), ("uaddr", offset_of!(Chunks, uaddr))],
        ),
        (
            "cabin_vmpl_grant",
            size_of::<Grant>(),
            vec![
                ("offset", offset_of!(Grant, offset)),
                ("len", offset_of!(Grant, len)),
                ("perms", offset_of!(Grant, perms)),
            ],
        ),
        (
            "cabin_vmpl_vcpu",
            size_of::<Vcpu>(),
            vec![("vmsa_uaddr", offset_of!(Vcpu, vmsa_uaddr)), ("vcpu", offset_of!(Vcpu, vcpu))],
        ),
        (
            "cabin_vmpl_run",
            size_of::<Run>(),
            vec![
                ("vcpu", offset_of!(Run, vcpu)),
                ("reason", offset_of!(Run, reason)),
                ("exit_code", offset_of!(Run, exit_code)),
                ("exit_info1", offset_of!(Run, exit_info1)),
                ("exit_info2", offset_of!(Run, exit_info2)),
                ("rip", offset_of!(Run, rip)),
                ("rax", offset_of!(Run, rax)),
                ("rdi", offset_of!(Run, rdi)),
                ("rsi", offset_of!(Run, rsi)),
                ("rdx", offset_of!(Run, rdx)),
            ],
        ),
    ]
}

/// The ioctl numbers by their C names.
pub fn ioctls() -> [(&'static str, u64); 6] {
    [
        ("CABIN_VMPL_GET_INFO", GET_INFO),
        ("CABIN_VMPL_SETUP", SETUP),
        ("CABIN_VMPL_GET_CHUNKS", GET_CHUNKS),
        ("CABIN_VMPL_GRANT", GRANT),
        ("CABIN_VMPL_CREATE_VCPU", CREATE_VCPU),
        ("CABIN_VMPL_RUN", RUN),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_pinned() {
        assert_eq!(size_of::<Info>(), 24);
        assert_eq!(size_of::<Setup>(), 16);
        assert_eq!(size_of::<Chunks>(), 16);
        assert_eq!(size_of::<Grant>(), 24);
        assert_eq!(size_of::<Vcpu>(), 16);
        assert_eq!(size_of::<Run>(), 72);
        // _IOR('\xcb', 0, 24 bytes) = 0x8018_cb00, and so on.
        assert_eq!(GET_INFO, 0x8018_cb00);
        assert_eq!(SETUP, 0x4010_cb01);
        assert_eq!(GET_CHUNKS, 0xc010_cb02);
        assert_eq!(GRANT, 0x4018_cb03);
        assert_eq!(CREATE_VCPU, 0x4010_cb04);
        assert_eq!(RUN, 0xc048_cb05);
    }
}
