//! The VMPL1 VMSA: the save area from which the CPU starts the confined
//! domain's vCPU at VMPL1, built from the same [`CpuState`] the KVM backend
//! loads into its vCPU (`cabin_kvm::vcpu::cpu_state`).
//!
//! Layout: AMD64 Architecture Programmer's Manual, Vol. 2 (pub. 24593),
//! Appendix B, Table B-4 "VMSA Layout, State Save Area for SEV-ES" (the
//! state save area of Table B-2 at offset 0 of a 4 KiB page, with the
//! SEV-ES/SNP additions: VMPL at 0xCA, SEV_FEATURES at 0x3B0, XCR0 at
//! 0x3E8, the x87/SSE area from 0x400). Segment attributes use the VMCB
//! encoding (Table B-2 notes): type 3:0, S 4, DPL 6:5, P 7, AVL 8, L 9,
//! D/B 10, G 11. Every offset is a named constant below; the test
//! `matches_the_sev_crates_vmsa_page` writes the reset state virtee's `sev`
//! crate writes (`sev::measurement::vmsa::VMSA`) and compares all 4096
//! bytes.

use cabin_kvm::vcpu::{CpuState, Segment, TableReg};

/// Size of a VMSA page.
pub const VMSA_SIZE: usize = 4096;

/// Field offsets (Table B-4).
pub mod off {
    /// ES; then CS, SS, DS, FS, GS, GDTR, LDTR, IDTR, TR, 16 bytes each.
    pub const ES: usize = 0x000;
    /// CS.
    pub const CS: usize = 0x010;
    /// SS.
    pub const SS: usize = 0x020;
    /// DS.
    pub const DS: usize = 0x030;
    /// FS.
    pub const FS: usize = 0x040;
    /// GS.
    pub const GS: usize = 0x050;
    /// GDTR.
    pub const GDTR: usize = 0x060;
    /// LDTR.
    pub const LDTR: usize = 0x070;
    /// IDTR.
    pub const IDTR: usize = 0x080;
    /// TR.
    pub const TR: usize = 0x090;
    /// VMPL the save area runs at (SEV-SNP).
    pub const VMPL: usize = 0x0ca;
    /// CPL.
    pub const CPL: usize = 0x0cb;
    /// EFER.
    pub const EFER: usize = 0x0d0;
    /// CR4.
    pub const CR4: usize = 0x148;
    /// CR3.
    pub const CR3: usize = 0x150;
    /// CR0.
    pub const CR0: usize = 0x158;
    /// DR7.
    pub const DR7: usize = 0x160;
    /// DR6.
    pub const DR6: usize = 0x168;
    /// RFLAGS.
    pub const RFLAGS: usize = 0x170;
    /// RIP.
    pub const RIP: usize = 0x178;
    /// RSP.
    pub const RSP: usize = 0x1d8;
    /// RAX.
    pub const RAX: usize = 0x1f8;
    /// STAR.
    pub const STAR: usize = 0x200;
    /// LSTAR.
    pub const LSTAR: usize = 0x208;
    /// CSTAR.
    pub const CSTAR: usize = 0x210;
    /// SFMASK.
    pub const SFMASK: usize = 0x218;
    /// KERNEL_GS_BASE.
    pub const KERNEL_GS_BASE: usize = 0x220;
    /// SYSENTER_CS.
    pub const SYSENTER_CS: usize = 0x228;
    /// SYSENTER_ESP.
    pub const SYSENTER_ESP: usize = 0x230;
    /// SYSENTER_EIP.
    pub const SYSENTER_EIP: usize = 0x238;
    /// G_PAT.
    pub const G_PAT: usize = 0x268;
    /// RCX.
    pub const RCX: usize = 0x308;
    /// RDX.
    pub const RDX: usize = 0x310;
    /// RSI.
    pub const RSI: usize = 0x330;
    /// RDI.
    pub const RDI: usize = 0x338;
    /// SEV_FEATURES.
    pub const SEV_FEATURES: usize = 0x3b0;
    /// XCR0.
    pub const XCR0: usize = 0x3e8;
    /// MXCSR.
    pub const MXCSR: usize = 0x408;
    /// x87 FCW.
    pub const X87_FCW: usize = 0x410;
}

/// `SEV_FEATURES` bit 0: SNP active (required in every SNP VMSA).
pub const SEV_FEATURE_SNP_ACTIVE: u64 = 1 << 0;
/// `SEV_FEATURES` bit 2: ReflectVC (a `#VC` exits to the hypervisor
/// instead of reaching the guest's handler).
pub const SEV_FEATURE_REFLECT_VC: u64 = 1 << 2;
/// `SEV_FEATURES` bit 9: SecureTSC (`rdtsc` is not intercepted: no `#VC`).
pub const SEV_FEATURE_SECURE_TSC: u64 = 1 << 9;
/// `SEV_STATUS` (MSR `0xC001_0131`) bit 2: SEV-SNP active.
pub const SEV_STATUS_SNP: u64 = 1 << 2;

/// Why VMPL0's `SEV_STATUS` cannot give the VMPL1 VMSA its features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SevFeaturesError {
    /// `SEV_STATUS` does not say SNP is active (bit 2).
    #[error("SEV_STATUS {0:#x} does not have SEV-SNP active (bit 2)")]
    NotSnp(u64),
}

/// `SEV_FEATURES` of the VMPL1 VMSA from VMPL0's `SEV_STATUS` (bring-up
/// checklist 5). `SEV_STATUS` bits 63:2 are the running guest's own
/// `SEV_FEATURES` bits 61:0 (APM vol. 2 §15.34.10, "SEV_STATUS MSR"; Linux
/// starts its APs with `vmsa->sev_features = sev_status >> 2`), and a
/// hypervisor may refuse a VMSA whose features differ from the ones it
/// launched the guest with (restricted/alternate injection, DebugSwap,
/// SecureTSC, ...), so VMPL1 gets VMPL0's, with two exceptions: SNPActive
/// is always set, and ReflectVC is always clear: the proxy-kernel handles
/// its own `#VC`s (`cabin_proxy_kernel::vc`); reflected, they would reach
/// the hypervisor, which cannot serve VMPL1's doorbell.
pub fn sev_features_from_status(sev_status: u64) -> Result<u64, SevFeaturesError> {
    if sev_status & SEV_STATUS_SNP == 0 {
        return Err(SevFeaturesError::NotSnp(sev_status));
    }
    Ok(((sev_status >> 2) | SEV_FEATURE_SNP_ACTIVE) & !SEV_FEATURE_REFLECT_VC)
}

/// DR6 and DR7 at reset.
pub const DR6_RESET: u64 = 0xffff_0ff0;
/// DR7 at reset.
pub const DR7_RESET: u64 = 0x400;
/// The PAT at reset (WB, WT, UC-, UC, repeated).
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

/// One segment as the VMSA holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmsaSegment {
    /// Selector.
    pub selector: u16,
    /// Attributes (VMCB encoding).
    pub attrib: u16,
    /// Limit.
    pub limit: u32,
    /// Base.
    pub base: u64,
}

impl VmsaSegment {
    /// The VMCB encoding of a segment register.
    pub fn from_segment(s: &Segment) -> VmsaSegment {
        let attrib = u16::from(s.type_ & 0xf)
            | u16::from(s.s) << 4
            | u16::from(s.dpl & 3) << 5
            | u16::from(s.present) << 7
            | u16::from(s.l) << 9
            | u16::from(s.db) << 10
            | u16::from(s.g) << 11;
        VmsaSegment { selector: s.selector, attrib, limit: s.limit, base: s.base }
    }

    /// A descriptor-table register (no selector or attributes).
    pub fn from_table(t: &TableReg) -> VmsaSegment {
        VmsaSegment { limit: u32::from(t.limit), base: t.base, ..VmsaSegment::default() }
    }
}

/// Every field this backend writes into a VMSA; the rest stays zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct VmsaFields {
    pub es: VmsaSegment,
    pub cs: VmsaSegment,
    pub ss: VmsaSegment,
    pub ds: VmsaSegment,
    pub fs: VmsaSegment,
    pub gs: VmsaSegment,
    pub gdtr: VmsaSegment,
    pub ldtr: VmsaSegment,
    pub idtr: VmsaSegment,
    pub tr: VmsaSegment,
    pub vmpl: u8,
    pub cpl: u8,
    pub efer: u64,
    pub cr4: u64,
    pub cr3: u64,
    pub cr0: u64,
    pub dr7: u64,
    pub dr6: u64,
    pub rflags: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rax: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub g_pat: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub sev_features: u64,
    pub xcr0: u64,
    pub mxcsr: u32,
    pub x87_fcw: u16,
}

impl VmsaFields {
    /// The VMSA that starts `c` at `vmpl` with `sev_features` (which must
    /// equal VMPL0's, as read from its own VMSA or `SEV_STATUS`, except the
    /// bits the APM lets differ; the module checks at bring-up).
    pub fn from_cpu(c: &CpuState, vmpl: u8, sev_features: u64) -> VmsaFields {
        VmsaFields {
            es: VmsaSegment::from_segment(&c.es),
            cs: VmsaSegment::from_segment(&c.cs),
            ss: VmsaSegment::from_segment(&c.ss),
            ds: VmsaSegment::from_segment(&c.ds),
            fs: VmsaSegment::from_segment(&c.fs),
            gs: VmsaSegment::from_segment(&c.gs),
            gdtr: VmsaSegment::from_table(&c.gdt),
            ldtr: VmsaSegment::from_segment(&c.ldt),
            idtr: VmsaSegment::from_table(&c.idt),
            tr: VmsaSegment::from_segment(&c.tr),
            vmpl,
            cpl: c.ss.dpl,
            efer: c.efer,
            cr4: c.cr4,
            cr3: c.cr3,
            cr0: c.cr0,
            dr7: DR7_RESET,
            dr6: DR6_RESET,
            rflags: c.rflags,
            rip: c.start.rip,
            rsp: c.start.rsp,
            rax: c.start.rax,
            star: c.star,
            lstar: c.lstar,
            cstar: c.cstar,
            sfmask: c.sfmask,
            kernel_gs_base: c.kernel_gs_base,
            sysenter_cs: c.sysenter_cs,
            sysenter_esp: c.sysenter_esp,
            sysenter_eip: c.sysenter_eip,
            g_pat: PAT_RESET,
            rcx: 0,
            rdx: c.start.rdx,
            rsi: c.start.rsi,
            rdi: c.start.rdi,
            sev_features: sev_features | SEV_FEATURE_SNP_ACTIVE,
            // XCR0 bit 0 (x87) is always set; a CPU without XSAVE keeps it.
            xcr0: c.xcr0.unwrap_or(1),
            mxcsr: c.mxcsr,
            x87_fcw: c.fcw,
        }
    }

    /// The 4 KiB page.
    pub fn to_page(&self) -> Box<[u8; VMSA_SIZE]> {
        let mut p = Box::new([0u8; VMSA_SIZE]);
        let mut put = |at: usize, bytes: &[u8]| p[at..at + bytes.len()].copy_from_slice(bytes);
        for (at, s) in [
            (off::ES, self.es),
            (off::CS, self.cs),
            (off::SS, self.ss),
            (off::DS, self.ds),
            (off::FS, self.fs),
            (off::GS, self.gs),
            (off::GDTR, self.gdtr),
            (off::LDTR, self.ldtr),
            (off::IDTR, self.idtr),
            (off::TR, self.tr),
        ] {
            put(at, &s.selector.to_le_bytes());
            put(at + 2, &s.attrib.to_le_bytes());
            put(at + 4, &s.limit.to_le_bytes());
            put(at + 8, &s.base.to_le_bytes());
        }
        put(off::VMPL, &[self.vmpl]);
        put(off::CPL, &[self.cpl]);
        for (at, v) in [
            (off::EFER, self.efer),
            (off::CR4, self.cr4),
            (off::CR3, self.cr3),
            (off::CR0, self.cr0),
            (off::DR7, self.dr7),
            (off::DR6, self.dr6),
            (off::RFLAGS, self.rflags),
            (off::RIP, self.rip),
            (off::RSP, self.rsp),
            (off::RAX, self.rax),
            (off::STAR, self.star),
            (off::LSTAR, self.lstar),
            (off::CSTAR, self.cstar),
            (off::SFMASK, self.sfmask),
            (off::KERNEL_GS_BASE, self.kernel_gs_base),
            (off::SYSENTER_CS, self.sysenter_cs),
            (off::SYSENTER_ESP, self.sysenter_esp),
            (off::SYSENTER_EIP, self.sysenter_eip),
            (off::G_PAT, self.g_pat),
            (off::RCX, self.rcx),
            (off::RDX, self.rdx),
            (off::RSI, self.rsi),
            (off::RDI, self.rdi),
            (off::SEV_FEATURES, self.sev_features),
            (off::XCR0, self.xcr0),
        ] {
            put(at, &v.to_le_bytes());
        }
        put(off::MXCSR, &self.mxcsr.to_le_bytes());
        put(off::X87_FCW, &self.x87_fcw.to_le_bytes());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sev::measurement::vcpu_types::CpuType;
    use sev::measurement::vmsa::{GuestFeatures, VMMType, VMSA};

    /// The reset state QEMU gives an SEV-SNP vCPU, as virtee's `sev` crate
    /// writes it (`build_save_area`, VMMType::QEMU), for a vCPU starting at
    /// `eip`.
    fn qemu_reset(eip: u64, rdx: u64) -> VmsaFields {
        let seg = |selector, attrib, base| VmsaSegment { selector, attrib, limit: 0xffff, base };
        let data = seg(0, 0x93, 0);
        VmsaFields {
            es: data,
            cs: seg(0xf000, 0x9b, eip & 0xffff_0000),
            ss: data,
            ds: data,
            fs: data,
            gs: data,
            gdtr: seg(0, 0, 0),
            idtr: seg(0, 0, 0),
            ldtr: seg(0, 0x82, 0),
            tr: seg(0, 0x8b, 0),
            efer: 0x1000,
            cr4: 0x40,
            cr0: 0x10,
            dr7: DR7_RESET,
            dr6: DR6_RESET,
            rflags: 2,
            rip: eip & 0xffff,
            g_pat: PAT_RESET,
            rdx,
            sev_features: 1,
            xcr0: 1,
            mxcsr: 0x1f80,
            x87_fcw: 0x37f,
            ..VmsaFields::default()
        }
    }

    #[test]
    fn matches_the_sev_crates_vmsa_page() {
        let cpu = CpuType::EpycV4;
        let rdx = cpu.sig() as u64;
        // BSP at the reset vector, and an AP at another address (two pages).
        let v = VMSA::new(0x8123_4567, cpu, VMMType::QEMU, None, GuestFeatures::default());
        let pages = v.pages(2).expect("sev VMSA pages");
        assert_eq!(pages.len(), 2);
        assert_eq!(&pages[0][..], &qemu_reset(0xffff_fff0, rdx).to_page()[..], "BSP page");
        assert_eq!(&pages[1][..], &qemu_reset(0x8123_4567, rdx).to_page()[..], "AP page");
    }

    #[test]
    fn offsets_follow_table_b4() {
        // Segments are 16 bytes apart; the fields the table names where it names them.
        let segs =
            [off::ES, off::CS, off::SS, off::DS, off::FS, off::GS, off::GDTR, off::LDTR, off::IDTR, off::TR];
        assert!(segs.windows(2).all(|w| w[1] - w[0] == 16));
        assert_eq!((off::VMPL, off::CPL, off::EFER), (0xca, 0xcb, 0xd0));
        assert_eq!(
            (off::CR4, off::CR3, off::CR0, off::DR7, off::DR6, off::RFLAGS, off::RIP),
            (0x148, 0x150, 0x158, 0x160, 0x168, 0x170, 0x178)
        );
        assert_eq!(
            (off::RSP, off::RAX, off::STAR, off::LSTAR, off::CSTAR, off::SFMASK),
            (0x1d8, 0x1f8, 0x200, 0x208, 0x210, 0x218)
        );
        assert_eq!(
            (off::KERNEL_GS_BASE, off::SYSENTER_CS, off::SYSENTER_ESP, off::SYSENTER_EIP),
            (0x220, 0x228, 0x230, 0x238)
        );
        assert_eq!((off::G_PAT, off::RCX, off::RDX, off::RSI, off::RDI), (0x268, 0x308, 0x310, 0x330, 0x338));
        assert_eq!((off::SEV_FEATURES, off::XCR0, off::MXCSR, off::X87_FCW), (0x3b0, 0x3e8, 0x408, 0x410));
    }

    #[test]
    fn sev_features_come_from_sev_status() {
        // SEV | SEV-ES | SNP only: SNPActive only.
        assert_eq!(sev_features_from_status(0x7), Ok(SEV_FEATURE_SNP_ACTIVE));
        // + DebugSwap (status bit 7 = feature bit 5) and SecureTSC (status
        // bit 11 = feature bit 9) pass through.
        assert_eq!(
            sev_features_from_status(0x7 | (1 << 7) | (1 << 11)),
            Ok(1 | (1 << 5) | SEV_FEATURE_SECURE_TSC)
        );
        // RestrictedInjection (status bit 5 = feature bit 3) passes; ReflectVC
        // (status bit 4 = feature bit 2) never does.
        assert_eq!(sev_features_from_status(0x7 | (1 << 5) | (1 << 4)), Ok(1 | (1 << 3)));
        // Not an SNP guest (SEV-ES only, or nothing): refused.
        assert_eq!(sev_features_from_status(0x3), Err(SevFeaturesError::NotSnp(0x3)));
        assert_eq!(sev_features_from_status(0), Err(SevFeaturesError::NotSnp(0)));
        // Every bit above: shifted, nothing lost but ReflectVC.
        assert_eq!(sev_features_from_status(u64::MAX), Ok((u64::MAX >> 2) & !SEV_FEATURE_REFLECT_VC));
        // And the VMSA page carries them.
        let f = VmsaFields::default();
        let page = VmsaFields { sev_features: sev_features_from_status(0x87).expect("snp"), ..f }.to_page();
        assert_eq!(page[off::SEV_FEATURES..off::SEV_FEATURES + 8], 0x21u64.to_le_bytes());
    }

    #[test]
    fn vmcb_attribute_encoding() {
        // 64-bit ring-3 code: type 0xb, S, DPL 3, P, L, G = 0xafb; ring-3 data
        // (flat, D/B): type 3, S, DPL 3, P, DB, G = 0xcf3; a 64-bit TSS: 0x8b.
        let code =
            Segment { type_: 11, s: true, dpl: 3, present: true, l: true, g: true, ..Segment::default() };
        assert_eq!(VmsaSegment::from_segment(&code).attrib, 0xafb);
        let data =
            Segment { type_: 3, s: true, dpl: 3, present: true, db: true, g: true, ..Segment::default() };
        assert_eq!(VmsaSegment::from_segment(&data).attrib, 0xcf3);
        let tss = Segment { type_: 11, present: true, ..Segment::default() };
        assert_eq!(VmsaSegment::from_segment(&tss).attrib, 0x8b);
    }
}
