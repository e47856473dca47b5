//! Execute-only enforcement with protection keys: whether and how.
//!
//! Where the guest CPU has protection keys (CPUID.7.0:ECX.PKU), the
//! proxy-kernel's domain can make code pages unreadable yet executable:
//! code pages carry [`CODE_PKEY`] in their page-table entries and the
//! program starts with `PKRU` denying data access to that key. The program
//! cannot lift it: the rewriter refuses images containing `wrpkru`, and
//! XCR0 lacks the PKRU bit, so `xrstor` cannot load `PKRU` either.
//!
//! This machine's CPU has no PKU, so the KVM backend reports
//! `execute_only_enforced: false`; [`decide`] is the whole policy, kept
//! pure so a test can feed it the CPUID of a CPU that has PKU (e.g.
//! `qemu-system-x86_64 -cpu max`).

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

/// Decides from CPUID leaf 7 subleaf 0's ECX whether execute-only can be
/// enforced, and how. `want` is false when the image was not built
/// execute-only (then nothing is enforced).
///
/// Enforcing also needs the proxy-kernel to set `PKRU` from ring 0 before
/// the program runs (`wrpkru` is not emulated in ring 0 here); that code
/// path is not built yet, so today this answers `NotEnforced` unless
/// `allow_pkru_setup` says the backend can load `PKRU` itself.
pub fn decide(cpuid7_ecx: u32, want: bool, allow_pkru_setup: bool) -> ExecuteOnly {
    if !want || cpuid7_ecx & CPUID7_ECX_PKU == 0 || !allow_pkru_setup {
        return ExecuteOnly::NotEnforced;
    }
    // PKRU: two bits per key, AD (access disable) is the low one.
    let pkru = 1u32 << (2 * u32::from(CODE_PKEY));
    ExecuteOnly::Pkey { pkey: CODE_PKEY, pkru, cr4: CR4_PKE }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pku_no_enforcement() {
        assert_eq!(decide(0, true, true), ExecuteOnly::NotEnforced);
        assert!(!decide(0, true, true).enforced());
    }

    #[test]
    fn pku_cpu_enforces_with_access_disabled_code_key() {
        let d = decide(CPUID7_ECX_PKU, true, true);
        assert_eq!(d, ExecuteOnly::Pkey { pkey: 1, pkru: 0b0100, cr4: CR4_PKE });
        assert!(d.enforced());
        assert_eq!(d.code_pkey(), 1);
    }

    #[test]
    fn not_wanted_or_not_supported_by_backend() {
        assert_eq!(decide(CPUID7_ECX_PKU, false, true), ExecuteOnly::NotEnforced);
        assert_eq!(decide(CPUID7_ECX_PKU, true, false), ExecuteOnly::NotEnforced);
    }
}
