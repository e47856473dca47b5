//! The GHCB protocol values the SNP backend uses: the GHCB MSR protocol
//! (requests written to `MSR_SEV_GHCB` before a `VMGEXIT`, without a GHCB
//! page) and the software exit codes of a `VMGEXIT` with a GHCB.
//!
//! Source: AMD, "SEV-ES Guest-Hypervisor Communication Block
//! Standardization", publication 56421, revision 2.03: §2.3.1 "GHCB MSR
//! Protocol" (the GHCBInfo codes in bits 11:0 and the data layout of each
//! request/response) and §4 "GHCB Protocol", the table of supported
//! Non-Automatic Exit (NAE) events (the `SW_EXITCODE` values). Cross-read
//! against Linux `arch/x86/include/asm/sev-common.h` and
//! `arch/x86/include/uapi/asm/svm.h`.
//!
//! Only the values: the module (`module/cabin_vmpl.c`) issues them; the
//! Rust side builds and decodes them so tests pin both.

/// `MSR_SEV_GHCB` (MSR `0xC001_0130`): the GHCB's guest-physical address, or
/// an MSR-protocol request.
pub const MSR_SEV_GHCB: u32 = 0xC001_0130;

/// Bits 11:0 of the GHCB MSR: the GHCBInfo (request / response code).
pub const GHCB_INFO_MASK: u64 = 0xfff;

/// GHCBInfo codes (§2.3.1).
pub mod info {
    /// SEV information response (hypervisor → guest).
    pub const SEV_INFO_RESP: u64 = 0x001;
    /// SEV information request.
    pub const SEV_INFO_REQ: u64 = 0x002;
    /// CPUID request.
    pub const CPUID_REQ: u64 = 0x004;
    /// CPUID response.
    pub const CPUID_RESP: u64 = 0x005;
    /// AP reset hold request.
    pub const AP_RESET_HOLD_REQ: u64 = 0x006;
    /// AP reset hold response.
    pub const AP_RESET_HOLD_RESP: u64 = 0x007;
    /// Register GHCB GPA request (SNP): GHCBData[63:12] = the GHCB's frame number.
    pub const REGISTER_GHCB_GPA_REQ: u64 = 0x012;
    /// Register GHCB GPA response.
    pub const REGISTER_GHCB_GPA_RESP: u64 = 0x013;
    /// SNP page state change request.
    pub const PSC_REQ: u64 = 0x014;
    /// SNP page state change response.
    pub const PSC_RESP: u64 = 0x015;
    /// SNP run-at-VMPL request: GHCBData[39:32] = the VMPL to run.
    pub const RUN_VMPL_REQ: u64 = 0x016;
    /// SNP run-at-VMPL response: GHCBData[63:32] = 0 on success.
    pub const RUN_VMPL_RESP: u64 = 0x017;
    /// Hypervisor feature support request.
    pub const HV_FEATURES_REQ: u64 = 0x080;
    /// Hypervisor feature support response: GHCBData[63:12] = the feature bitmap.
    pub const HV_FEATURES_RESP: u64 = 0x081;
    /// Termination request: GHCBData[15:12] reason set, [23:16] reason code.
    pub const TERMINATE_REQ: u64 = 0x100;
}

/// Hypervisor feature bits (response to [`info::HV_FEATURES_REQ`], §2.3.1
/// "Hypervisor Feature Support"): bit 0 SEV-SNP, bit 1 AP creation.
pub mod hv_features {
    /// The hypervisor supports SEV-SNP.
    pub const SNP: u64 = 1 << 0;
    /// The hypervisor supports the AP creation NAE event (needed to create
    /// the VMPL1 vCPU from its VMSA).
    pub const AP_CREATION: u64 = 1 << 1;
}

/// `SW_EXITCODE`s of a `VMGEXIT` with a GHCB (the NAE event table). Architectural exit
/// codes (`SVM_EXIT_*`) used as NAE events are listed too.
pub mod exit {
    /// `CPUID` (an architectural exit code).
    pub const CPUID: u64 = 0x72;
    /// `IOIO` (an architectural exit code): the ring doorbell is an `out`.
    pub const IOIO: u64 = 0x7b;
    /// `MSR` (an architectural exit code).
    pub const MSR: u64 = 0x7c;
    /// `VMMCALL` (an architectural exit code).
    pub const VMMCALL: u64 = 0x81;
    /// MMIO read.
    pub const MMIO_READ: u64 = 0x8000_0001;
    /// MMIO write.
    pub const MMIO_WRITE: u64 = 0x8000_0002;
    /// NMI complete.
    pub const NMI_COMPLETE: u64 = 0x8000_0003;
    /// AP HLT loop.
    pub const AP_HLT_LOOP: u64 = 0x8000_0004;
    /// AP jump table.
    pub const AP_JUMP_TABLE: u64 = 0x8000_0005;
    /// Page state change (GHCB page).
    pub const PSC: u64 = 0x8000_0010;
    /// SNP guest request (the attestation report path of /dev/sev-guest).
    pub const GUEST_REQUEST: u64 = 0x8000_0011;
    /// SNP extended guest request (report and certificates).
    pub const EXT_GUEST_REQUEST: u64 = 0x8000_0012;
    /// AP creation: SW_EXITINFO1[31:0] = the operation, [63:32] the APIC id;
    /// SW_EXITINFO2 = the VMSA's GPA; RAX = the VMSA's SEV_FEATURES.
    pub const AP_CREATION: u64 = 0x8000_0013;
    /// Run the vCPU at another VMPL (SVSM-style protocol).
    pub const SNP_RUN_VMPL: u64 = 0x8000_0018;
    /// Hypervisor feature support.
    pub const HV_FEATURES: u64 = 0x8000_fffd;
    /// Termination request.
    pub const TERM_REQUEST: u64 = 0x8000_fffe;
    /// Unsupported event.
    pub const UNSUPPORTED: u64 = 0x8000_ffff;
}

/// AP creation operations (SW_EXITINFO1[31:0] of [`exit::AP_CREATION`]).
pub mod ap_creation {
    /// Create the AP when it receives INIT.
    pub const CREATE_ON_INIT: u64 = 0;
    /// Create (and start) the AP now.
    pub const CREATE: u64 = 1;
    /// Destroy the AP.
    pub const DESTROY: u64 = 2;
}

/// The MSR-protocol word asking the hypervisor to run this vCPU at `vmpl`.
pub const fn run_vmpl_request(vmpl: u8) -> u64 {
    ((vmpl as u64) << 32) | info::RUN_VMPL_REQ
}

/// The MSR-protocol word registering the GHCB at `gpa` (4 KiB aligned).
pub const fn register_ghcb_request(gpa: u64) -> u64 {
    (gpa & !GHCB_INFO_MASK) | info::REGISTER_GHCB_GPA_REQ
}

/// The MSR-protocol termination request with a reason set and code.
pub const fn terminate_request(set: u8, code: u8) -> u64 {
    (((set & 0xf) as u64) << 12) | ((code as u64) << 16) | info::TERMINATE_REQ
}

/// A decoded MSR-protocol response the module reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrResponse {
    /// Run-at-VMPL answered with this status (0: the lower VMPL ran and
    /// came back).
    RunVmpl(u32),
    /// Hypervisor features.
    HvFeatures(u64),
    /// GHCB registered at this GPA.
    GhcbRegistered(u64),
    /// Something else (code, data).
    Other(u64, u64),
}

/// Decodes a GHCB MSR value read after a `VMGEXIT`.
pub fn decode_response(v: u64) -> MsrResponse {
    match v & GHCB_INFO_MASK {
        info::RUN_VMPL_RESP => MsrResponse::RunVmpl((v >> 32) as u32),
        info::HV_FEATURES_RESP => MsrResponse::HvFeatures(v >> 12),
        info::REGISTER_GHCB_GPA_RESP => MsrResponse::GhcbRegistered(v & !GHCB_INFO_MASK),
        code => MsrResponse::Other(code, v >> 12),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msr_protocol_values_match_the_ghcb_spec() {
        // §2.3.1: codes of every request and response we use.
        assert_eq!(
            [info::SEV_INFO_RESP, info::SEV_INFO_REQ, info::CPUID_REQ, info::CPUID_RESP],
            [0x001, 0x002, 0x004, 0x005]
        );
        assert_eq!([info::REGISTER_GHCB_GPA_REQ, info::REGISTER_GHCB_GPA_RESP], [0x012, 0x013]);
        assert_eq!(
            [info::PSC_REQ, info::PSC_RESP, info::RUN_VMPL_REQ, info::RUN_VMPL_RESP],
            [0x014, 0x015, 0x016, 0x017]
        );
        assert_eq!(
            [info::HV_FEATURES_REQ, info::HV_FEATURES_RESP, info::TERMINATE_REQ],
            [0x080, 0x081, 0x100]
        );
        assert_eq!(MSR_SEV_GHCB, 0xc001_0130);
        // Run VMPL1: GHCBData[39:32] = 1.
        assert_eq!(run_vmpl_request(1), 0x1_0000_0016);
        assert_eq!(run_vmpl_request(3), 0x3_0000_0016);
        assert_eq!(register_ghcb_request(0x12_3456_7000), 0x12_3456_7012);
        assert_eq!(terminate_request(1, 2), 0x2_1100);
        assert_eq!(decode_response(0x0000_0000_0000_0017), MsrResponse::RunVmpl(0));
        assert_eq!(decode_response(0x0000_0005_0000_0017), MsrResponse::RunVmpl(5));
        assert_eq!(
            decode_response(0x3081),
            MsrResponse::HvFeatures(hv_features::SNP | hv_features::AP_CREATION)
        );
        assert_eq!(decode_response(0xabc_d013), MsrResponse::GhcbRegistered(0xabc_d000));
        assert_eq!(decode_response(0x5), MsrResponse::Other(0x5, 0));
    }

    #[test]
    fn vmgexit_codes_match_the_ghcb_spec() {
        assert_eq!([exit::CPUID, exit::IOIO, exit::MSR, exit::VMMCALL], [0x72, 0x7b, 0x7c, 0x81]);
        assert_eq!(
            [exit::MMIO_READ, exit::MMIO_WRITE, exit::NMI_COMPLETE, exit::AP_HLT_LOOP, exit::AP_JUMP_TABLE],
            [0x8000_0001, 0x8000_0002, 0x8000_0003, 0x8000_0004, 0x8000_0005]
        );
        assert_eq!(
            [exit::PSC, exit::GUEST_REQUEST, exit::EXT_GUEST_REQUEST, exit::AP_CREATION, exit::SNP_RUN_VMPL],
            [0x8000_0010, 0x8000_0011, 0x8000_0012, 0x8000_0013, 0x8000_0018]
        );
        assert_eq!(
            [exit::HV_FEATURES, exit::TERM_REQUEST, exit::UNSUPPORTED],
            [0x8000_fffd, 0x8000_fffe, 0x8000_ffff]
        );
        assert_eq!([ap_creation::CREATE_ON_INIT, ap_creation::CREATE, ap_creation::DESTROY], [0, 1, 2]);
    }
}
