//! Execute-only enforcement with protection keys: whether and how.
//!
//! Where the guest CPU has protection keys (CPUID.7.0:ECX.PKU), the
//! proxy-kernel's domain makes code pages unreadable yet executable:
//! - code pages carry [`CODE_PKEY`] in their page-table entries
//!   (`domain::build`, [`crate::paging::Perms::pkey`]);
//! - CR4.PKE is set ([`cr4`], called by `vcpu::setup`);
//! - PKRU denies data access to that key: loaded for each vCPU from the
//!   host with `KVM_SET_XSAVE` ([`place_pkru`], in the image `vcpu::setup` loads),
//!   since the proxy-kernel cannot run `wrpkru` in ring 0 on nested KVM;
//!   KVM keeps the guest's PKRU across exits itself (it swaps host and
//!   guest PKRU around every entry while CR4.PKE is set);
//! - XCR0 never has the PKRU component ([`guest_xcr0`]), so `xrstor` in the
//!   guest cannot load PKRU, and `wrpkru` is refused at build (and found by
//!   the scan in [`crate::backend`] before enforcement is claimed).
//!
//! This machine's CPU has no PKU, so the KVM backend reports
//! `execute_only_enforced: false` here; the functions below are unit-tested
//! with the CPUID of a CPU that has PKU. Under QEMU's TCG (which has PKU)
//! the nested KVM does not run ring 3's doorbell `out` (docs/execute-only.md).

/// The protection key given to code pages when enforcing.
pub const CODE_PKEY: u8 = 1;

/// CPUID.(EAX=7,ECX=0):ECX bit: protection keys for user pages.
pub const CPUID7_ECX_PKU: u32 = 1 << 3;
/// CR4 bit enabling protection keys for user pages.
pub const CR4_PKE: u64 = 1 << 22;

/// How the domain enforces execute-only code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecuteOnly {
    /// Not enforced: code pages are readable (no PKU).
    NotEnforced,
    /// Enforced with a protection key.
    Pkey {
        /// Key in the code pages' entries.
        pkey: u8,
        /// Initial `PKRU` (access-disable for `pkey`).
        pkru: u32,
        /// Bits to add to CR4.
        cr4: u64,
    },
}

impl ExecuteOnly {
    /// Whether execute-only is enforced.
    pub fn enforced(&self) -> bool {
        matches!(self, ExecuteOnly::Pkey { .. })
    }

    /// The key to put in code pages' entries (0 when not enforced).
    pub fn code_pkey(&self) -> u8 {
        match self {
            ExecuteOnly::Pkey { pkey, .. } => *pkey,
            ExecuteOnly::NotEnforced => 0,
        }
    }
}

/// Decides from CPUID leaf 7 subleaf 0's ECX (KVM's supported CPUID)
/// whether execute-only can be enforced, and how. `want` is false when the
/// image was not built execute-only (then nothing is enforced);
/// `allow_pkru_setup` is false when the backend cannot load PKRU into the
/// vCPU (PKRU does not fit the `KVM_SET_XSAVE` area: [`host_pkru_offset`]).
pub fn decide(cpuid7_ecx: u32, want: bool, allow_pkru_setup: bool) -> ExecuteOnly {
    if !want || cpuid7_ecx & CPUID7_ECX_PKU == 0 || !allow_pkru_setup {
        return ExecuteOnly::NotEnforced;
    }
    ExecuteOnly::Pkey { pkey: CODE_PKEY, pkru: initial_pkru(CODE_PKEY), cr4: CR4_PKE }
}

/// XSAVE state component of PKRU (its XCR0 / XSTATE_BV bit).
pub const XFEATURE_PKRU: u32 = 9;
/// Byte offset of XSTATE_BV in a standard-format XSAVE area.
const XSTATE_BV: usize = 512;
/// Bytes of `kvm_xsave::region`.
pub const XSAVE_REGION_BYTES: usize = 4096;

/// CR4 for a vCPU whose code pages carry `code_pkey` (0: not enforcing).
pub fn cr4(cr4: u64, code_pkey: u8) -> u64 {
    if code_pkey != 0 {
        cr4 | CR4_PKE
    } else {
        cr4 & !CR4_PKE
    }
}

/// XCR0 for the guest: never the PKRU component, so that `xrstor` cannot
/// load PKRU from memory the program controls.
pub fn guest_xcr0(xcr0: u64) -> u64 {
    xcr0 & !(1u64 << XFEATURE_PKRU)
}

/// The initial PKRU of every vCPU: access-disable for every key but 0
/// (`cabin_abi::pkru::PKRU_AD_ALL_BUT_0`, Linux's default), so the code key
/// (`code_pkey`, when code pages carry one) is denied data access and every
/// page of key 0 is open. The same value whether or not code carries a key:
/// the PKRU check after every `xrstor` (`cabin_abi::pkru::PKRU_CHECK`) ends
/// the program when XCR0 enables PKRU and PKRU lacks one of these bits, and
/// on some hosts the guest's XCR0 does enable PKRU whatever the vCPU was
/// given (a pagetable-based nested KVM runs the guest with the host's XCR0:
/// docs/kvm.md, "PKRU on hosts whose XCR0 the guest shares").
pub fn initial_pkru(_code_pkey: u8) -> u32 {
    cabin_abi::pkru::PKRU_AD_ALL_BUT_0
}

/// Where PKRU lives in the standard XSAVE layout, from CPUID.(0xD, 9):
/// `(size, offset)` = (EAX, EBX). `None` when the component is absent or
/// would not fit in `kvm_xsave::region`.
pub fn pkru_offset(leaf_d_9: (u32, u32)) -> Option<usize> {
    let (size, offset) = (leaf_d_9.0 as usize, leaf_d_9.1 as usize);
    // The component is 8 bytes on the CPUs seen (PKRU and padding).
    let fits = size >= 4 && offset >= XSTATE_BV + 64 && offset % 4 == 0 && offset + 4 <= XSAVE_REGION_BYTES;
    fits.then_some(offset)
}

/// Writes `pkru` into a `kvm_xsave` region (standard format) at `offset`
/// and marks the component present in XSTATE_BV, so that `KVM_SET_XSAVE`
/// loads it into the vCPU.
pub fn put_pkru(region: &mut [u32; XSAVE_REGION_BYTES / 4], offset: usize, pkru: u32) -> bool {
    if pkru_offset((4, offset as u32)).is_none() {
        return false;
    }
    region[offset / 4] = pkru;
    let bv = XSTATE_BV / 4;
    region[bv] |= 1 << XFEATURE_PKRU;
    true
}

/// PKRU's offset on this host (KVM's XSAVE layout is the host's). Asked
/// once: `cpuid` is a VM exit when the monitor itself runs in a VM (every
/// thread start asked it, docs/performance.md).
pub fn host_pkru_offset() -> Option<usize> {
    static OFFSET: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        let c = core::arch::x86_64::__cpuid_count(0xd, XFEATURE_PKRU);
        pkru_offset((c.eax, c.ebx))
    })
}

/// Puts the initial PKRU ([`initial_pkru`]) into `image`, the XSAVE image
/// a vCPU's start loads (`vcpu::setup`, one `KVM_SET_XSAVE` for the whole
/// state), wherever the host's XSAVE layout has the PKRU component: `true`
/// when placed. Required when code pages carry a key (`code_pkey` != 0: an
/// error ends the start); otherwise done as well, so that a guest whose
/// XCR0 enables PKRU regardless (see [`initial_pkru`]) starts with the PKRU
/// the check expects. A host without the component has no PKRU to load.
pub fn place_pkru(
    image: &mut kvm_bindings::kvm_xsave,
    code_pkey: u8,
) -> Result<bool, crate::vcpu::VcpuError> {
    let err =
        |what: &'static str| crate::vcpu::VcpuError::Kvm { what, err: kvm_ioctls::Error::new(libc::EINVAL) };
    let Some(offset) = host_pkru_offset() else {
        return if code_pkey == 0 { Ok(false) } else { Err(err("locating PKRU in the XSAVE area")) };
    };
    if !put_pkru(&mut image.region, offset, initial_pkru(code_pkey)) {
        return Err(err("placing PKRU"));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr4_has_pke_exactly_when_code_carries_a_key() {
        assert_eq!(cr4(0x3000, 1), 0x3000 | CR4_PKE);
        assert_eq!(cr4(0x3000 | CR4_PKE, 0), 0x3000);
    }

    #[test]
    fn guest_xcr0_never_has_pkru() {
        assert_eq!(guest_xcr0(0x2e7), 0x0e7);
        assert_eq!(guest_xcr0(0x7), 0x7);
    }

    #[test]
    fn initial_pkru_denies_every_key_but_0() {
        // The code key's access-disable bit is among them, and the PKRU
        // check after every xrstor accepts the value.
        assert_eq!(initial_pkru(1), 0x5555_5554);
        assert_ne!(initial_pkru(CODE_PKEY) & (1 << (2 * u32::from(CODE_PKEY))), 0);
        assert_eq!(initial_pkru(0), cabin_abi::pkru::PKRU_AD_ALL_BUT_0);
        // decide() agrees.
        let ExecuteOnly::Pkey { pkru, .. } = decide(CPUID7_ECX_PKU, true, true) else { panic!("enforced") };
        assert_eq!(pkru, initial_pkru(CODE_PKEY));
    }

    #[test]
    fn pkru_goes_into_the_xsave_region_and_xstate_bv() {
        // CPUs with PKU (and QEMU's TCG) report CPUID.(0xD, 9) = (8 bytes, offset 2688).
        assert_eq!(pkru_offset((8, 2688)), Some(2688));
        assert_eq!(pkru_offset((4, 2688)), Some(2688));
        assert_eq!(pkru_offset((0, 0)), None, "no PKRU component");
        assert_eq!(pkru_offset((4, 4096)), None, "past the region");
        assert_eq!(pkru_offset((4, 100)), None, "inside the legacy area");
        let mut region = [0u32; XSAVE_REGION_BYTES / 4];
        region[128] = 0x3; // x87 | SSE present
        assert!(put_pkru(&mut region, 2688, initial_pkru(CODE_PKEY)));
        assert_eq!(region[2688 / 4], 0x5555_5554);
        assert_eq!(region[128], 0x3 | 1 << 9);
        assert!(!put_pkru(&mut region, 4094, 1));
    }

    #[test]
    fn the_vcpu_xcr0_never_has_pkru() {
        let f = crate::vcpu::CpuFeatures { xcr0_supported: 0x2e7, ..Default::default() };
        assert_eq!(f.xcr0() & (1 << XFEATURE_PKRU), 0);
        assert_eq!(guest_xcr0(f.xcr0()), f.xcr0());
    }

    #[test]
    fn code_pages_carry_the_key_in_their_entries() {
        let code = crate::paging::Perms { user: true, write: false, exec: true, pkey: CODE_PKEY };
        let data = crate::paging::Perms { user: true, write: true, exec: false, pkey: 0 };
        let key = |p: crate::paging::Perms| (p.bits() >> crate::paging::PTE_PKEY_SHIFT) & 0xf;
        assert_eq!(key(code), u64::from(CODE_PKEY));
        assert_eq!(key(data), 0);
    }

    #[test]
    fn no_pku_no_enforcement() {
        assert_eq!(decide(0, true, true), ExecuteOnly::NotEnforced);
        assert!(!decide(0, true, true).enforced());
    }

    #[test]
    fn pku_cpu_enforces_with_access_disabled_code_key() {
        let d = decide(CPUID7_ECX_PKU, true, true);
        assert_eq!(d, ExecuteOnly::Pkey { pkey: 1, pkru: 0x5555_5554, cr4: CR4_PKE });
        assert!(d.enforced());
        assert_eq!(d.code_pkey(), 1);
    }

    #[test]
    fn not_wanted_or_not_supported_by_backend() {
        assert_eq!(decide(CPUID7_ECX_PKU, false, true), ExecuteOnly::NotEnforced);
        assert_eq!(decide(CPUID7_ECX_PKU, true, false), ExecuteOnly::NotEnforced);
    }
}
