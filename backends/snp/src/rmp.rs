//! The RMP as VMPL1 sees it: the `RMPADJUST` operand encoding, and a small
//! model of the Reverse Map Table entries of guest pages that answers "may
//! VMPL1 at CPL 3 / CPL 0 read, write or execute this GPA" and follows the
//! instruction's rules (who may grant what).
//!
//! Facts (AMD64 Architecture Programmer's Manual, Vol. 3, pub. 24594, the
//! `RMPADJUST` instruction page; Vol. 2, pub. 24593, §15.36 "Secure Nested
//! Paging", its subsections on Virtual Machine Privilege Levels and on RMP
//! and VMPL access checks; checked against Linux
//! `arch/x86/include/asm/sev.h` and OVMF's `SevSnpRmpAdjust`):
//!
//! - `RMPADJUST` (`F3 0F 01 FE`, CPL 0 only): `RAX` = guest-virtual address
//!   of the page, `RCX` bit 0 = page size (0: 4 KiB, 1: 2 MiB), `RDX` =
//!   attributes: bits 7:0 target VMPL, bits 15:8 permission mask, bit 16
//!   VMSA. Result in `RAX` (0 success, 1 `FAIL_INPUT`, 2 `FAIL_PERMISSION`,
//!   6 `FAIL_SIZEMISMATCH`).
//! - Permission mask bits: 0 read, 1 write, 2 execute at CPL 3
//!   (execute-user), 3 execute at CPL 0..2 (execute-supervisor): the bits of
//!   [`VmplPerms`], the same byte the launch measurement records.
//! - The target VMPL must be numerically greater (less privileged) than the
//!   caller's, and the mask may only hold permissions the caller itself has
//!   on the page; VMPL0 has every permission on every validated page.
//!   Setting the VMSA bit needs VMPL0.
//! - Read and write permission do not depend on CPL; only execute does.
//!   (The guest's own page tables add the U/S split on top: the model
//!   answers for the RMP alone.)

use cabin_image::measure::VmplPerms;
use thiserror::Error;

/// 4 KiB.
pub const PAGE: u64 = 4096;
/// 2 MiB.
pub const LARGE_PAGE: u64 = 2 << 20;

/// `RDX` bit 16: the page becomes (or stops being) a VMSA.
pub const RMPADJUST_VMSA: u64 = 1 << 16;
/// `RDX` bits 15:8: the permission mask.
pub const RMPADJUST_PERMS_SHIFT: u64 = 8;
/// `RDX` bits 7:0: the target VMPL.
pub const RMPADJUST_VMPL_MASK: u64 = 0xff;
/// Number of VMPLs.
pub const VMPLS: u8 = 4;

/// The VMPL the confined domain runs at.
pub const DOMAIN_VMPL: u8 = 1;

/// Page size operand of `RMPADJUST` (`RCX` bit 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB.
    Small = 0,
    /// 2 MiB.
    Large = 1,
}

impl PageSize {
    /// Bytes.
    pub fn bytes(self) -> u64 {
        match self {
            PageSize::Small => PAGE,
            PageSize::Large => LARGE_PAGE,
        }
    }
}

/// One `RMPADJUST`: which page, for which VMPL, which permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RmpAdjust {
    /// The page's guest address (the instruction takes a virtual address;
    /// the module passes its direct-map address of this GPA).
    pub gpa: u64,
    /// Page size.
    pub size: PageSize,
    /// Target VMPL (1..3).
    pub target_vmpl: u8,
    /// Permissions granted to the target VMPL.
    pub perms: VmplPerms,
    /// Make the page a VMSA of the target VMPL.
    pub vmsa: bool,
}

/// The three register operands of one `RMPADJUST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operands {
    /// `RAX`: the page address.
    pub rax: u64,
    /// `RCX`: the page size.
    pub rcx: u64,
    /// `RDX`: the attributes.
    pub rdx: u64,
}

/// An `RMPADJUST` the encoder or the model refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum RmpError {
    /// Bad operands (`FAIL_INPUT`): unaligned address, reserved bits set,
    /// a target VMPL out of range, a mask with unknown bits.
    #[error("RMPADJUST refused its input (FAIL_INPUT) for page {0:#x}")]
    Input(u64),
    /// The caller may not grant this (`FAIL_PERMISSION`): target not less
    /// privileged than the caller, permissions the caller lacks, the VMSA
    /// bit below VMPL0, or a page not validated for the guest.
    #[error("RMPADJUST refused the permission change (FAIL_PERMISSION) for page {0:#x}")]
    Permission(u64),
    /// A 2 MiB adjust on a page the RMP holds as 4 KiB pages, or a range
    /// outside the model.
    #[error("RMPADJUST page size does not match the RMP (FAIL_SIZEMISMATCH) for page {0:#x}")]
    SizeMismatch(u64),
}

impl RmpAdjust {
    /// The register operands (validated: an operand the CPU would refuse is
    /// refused here first).
    pub fn encode(&self) -> Result<Operands, RmpError> {
        if !self.gpa.is_multiple_of(self.size.bytes())
            || self.target_vmpl == 0
            || self.target_vmpl >= VMPLS
            || self.perms.0 & !VmplPerms::ALL != 0
        {
            return Err(RmpError::Input(self.gpa));
        }
        let rdx = u64::from(self.target_vmpl)
            | (u64::from(self.perms.0) << RMPADJUST_PERMS_SHIFT)
            | if self.vmsa { RMPADJUST_VMSA } else { 0 };
        Ok(Operands { rax: self.gpa, rcx: self.size as u64, rdx })
    }

    /// Reads operands back, refusing reserved bits: what the instruction
    /// does with registers a caller (possibly hostile) chose.
    pub fn decode(op: Operands) -> Result<RmpAdjust, RmpError> {
        let size = match op.rcx {
            0 => PageSize::Small,
            1 => PageSize::Large,
            _ => return Err(RmpError::Input(op.rax)),
        };
        let known = RMPADJUST_VMPL_MASK | (0xff << RMPADJUST_PERMS_SHIFT) | RMPADJUST_VMSA;
        let perms = ((op.rdx >> RMPADJUST_PERMS_SHIFT) & 0xff) as u8;
        let a = RmpAdjust {
            gpa: op.rax,
            size,
            target_vmpl: (op.rdx & RMPADJUST_VMPL_MASK) as u8,
            perms: VmplPerms(perms),
            vmsa: op.rdx & RMPADJUST_VMSA != 0,
        };
        if op.rdx & !known != 0 || op.rdx & RMPADJUST_VMPL_MASK >= u64::from(VMPLS) {
            return Err(RmpError::Input(op.rax));
        }
        // Re-encoding checks alignment, the mask and target 0.
        a.encode()?;
        Ok(a)
    }
}

/// A data or instruction access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read (also: a page-table walk reading an entry).
    Read,
    /// A data write.
    Write,
    /// An instruction fetch at this CPL.
    Execute {
        /// 3: user; 0..2: supervisor.
        cpl: u8,
    },
}

/// The RMP entry of one guest page, as far as VMPLs are concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Assigned to and validated by this guest (VMPL0 has all permissions).
    pub validated: bool,
    /// The page is a VMSA.
    pub vmsa: bool,
    /// Permissions of VMPL1, VMPL2, VMPL3.
    pub perms: [VmplPerms; 3],
}

/// The RMP entries of guest pages `[0, pages * 4 KiB)`.
#[derive(Clone, Debug)]
pub struct Rmp {
    entries: Vec<Entry>,
}

impl Rmp {
    /// `bytes` of guest memory, every page validated (by the guest kernel at
    /// VMPL0), lower VMPLs with no permissions: the state a page is in when
    /// the module takes it.
    pub fn new(bytes: u64) -> Rmp {
        let e = Entry { validated: true, ..Entry::default() };
        Rmp { entries: vec![e; (bytes / PAGE) as usize] }
    }

    /// The entry of the page holding `gpa`.
    pub fn entry(&self, gpa: u64) -> Option<Entry> {
        self.entries.get((gpa / PAGE) as usize).copied()
    }

    /// Executes `RMPADJUST` with operands `op` at VMPL `caller` (with the
    /// instruction's checks; a refused call changes nothing).
    pub fn rmpadjust(&mut self, caller: u8, op: Operands) -> Result<(), RmpError> {
        let a = RmpAdjust::decode(op)?;
        if caller >= VMPLS {
            return Err(RmpError::Input(a.gpa));
        }
        if a.target_vmpl <= caller || (a.vmsa && caller != 0) {
            return Err(RmpError::Permission(a.gpa));
        }
        let first = (a.gpa / PAGE) as usize;
        let n = (a.size.bytes() / PAGE) as usize;
        let range = first..first.checked_add(n).ok_or(RmpError::SizeMismatch(a.gpa))?;
        let pages = self.entries.get(range.clone()).ok_or(RmpError::SizeMismatch(a.gpa))?;
        for e in pages {
            if !e.validated {
                return Err(RmpError::Permission(a.gpa));
            }
            let have = if caller == 0 { VmplPerms::ALL } else { e.perms[usize::from(caller - 1)].0 };
            if a.perms.0 & !have != 0 {
                return Err(RmpError::Permission(a.gpa));
            }
        }
        for e in &mut self.entries[range] {
            e.perms[usize::from(a.target_vmpl - 1)] = a.perms;
            if caller == 0 {
                e.vmsa = a.vmsa;
            }
        }
        Ok(())
    }

    /// Whether `vmpl` may make `access` to `gpa` as far as the RMP is
    /// concerned. A VMSA page is never accessible to lower VMPLs' ordinary
    /// accesses (the CPU uses it; software of that VMPL must not).
    pub fn allows(&self, vmpl: u8, gpa: u64, access: Access) -> bool {
        let Some(e) = self.entry(gpa) else { return false };
        if !e.validated {
            return false;
        }
        if vmpl == 0 {
            return true;
        }
        if vmpl >= VMPLS || e.vmsa {
            return false;
        }
        let p = e.perms[usize::from(vmpl - 1)].0;
        let need = match access {
            Access::Read => VmplPerms::READ,
            Access::Write => VmplPerms::WRITE,
            Access::Execute { cpl: 3 } => VmplPerms::EXEC_USER,
            Access::Execute { .. } => VmplPerms::EXEC_SUPERVISOR,
        };
        p & need != 0
    }

    /// Number of pages modelled.
    pub fn pages(&self) -> u64 {
        self.entries.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operand_encoding_matches_the_manual() {
        // VMPL1, read + execute-user, 4 KiB: RDX = 0x0501, RCX = 0.
        let a = RmpAdjust {
            gpa: 0x1234_5000,
            size: PageSize::Small,
            target_vmpl: 1,
            perms: VmplPerms(VmplPerms::READ | VmplPerms::EXEC_USER),
            vmsa: false,
        };
        assert_eq!(a.encode(), Ok(Operands { rax: 0x1234_5000, rcx: 0, rdx: 0x0501 }));
        // A VMPL1 VMSA page, no permissions: bit 16 and target 1.
        let v = RmpAdjust { vmsa: true, perms: VmplPerms::NONE, ..a };
        assert_eq!(v.encode().map(|o| o.rdx), Ok(0x1_0001));
        // All four permissions to VMPL3 on a 2 MiB page.
        let l = RmpAdjust {
            gpa: 0x4000_0000,
            size: PageSize::Large,
            target_vmpl: 3,
            perms: VmplPerms(0xf),
            vmsa: false,
        };
        assert_eq!(l.encode(), Ok(Operands { rax: 0x4000_0000, rcx: 1, rdx: 0x0f03 }));
        // Each permission bit lands at its own RDX bit.
        for (bit, rdx_bit) in [
            (VmplPerms::READ, 8),
            (VmplPerms::WRITE, 9),
            (VmplPerms::EXEC_USER, 10),
            (VmplPerms::EXEC_SUPERVISOR, 11),
        ] {
            let o = RmpAdjust { perms: VmplPerms(bit), ..a }.encode().expect("encode");
            assert_eq!(o.rdx, 1 | (1 << rdx_bit));
            assert_eq!(RmpAdjust::decode(o), Ok(RmpAdjust { perms: VmplPerms(bit), ..a }));
        }
    }

    #[test]
    fn bad_operands_are_refused() {
        let a = RmpAdjust {
            gpa: 0x1000,
            size: PageSize::Small,
            target_vmpl: 1,
            perms: VmplPerms(1),
            vmsa: false,
        };
        assert!(RmpAdjust { gpa: 0x1001, ..a }.encode().is_err());
        assert!(RmpAdjust { size: PageSize::Large, ..a }.encode().is_err(), "2 MiB needs 2 MiB alignment");
        assert!(RmpAdjust { target_vmpl: 0, ..a }.encode().is_err());
        assert!(RmpAdjust { target_vmpl: 4, ..a }.encode().is_err());
        assert!(RmpAdjust { perms: VmplPerms(0x10), ..a }.encode().is_err());
        for (rcx, rdx) in [(2, 1), (0, 1 << 17), (0, 4), (0, 0), (0, 1 | (0x10 << 8)), (u64::MAX, u64::MAX)] {
            assert!(
                RmpAdjust::decode(Operands { rax: 0x1000, rcx, rdx }).is_err(),
                "rcx {rcx:#x} rdx {rdx:#x}"
            );
        }
    }

    #[test]
    fn model_follows_the_granting_rules() {
        let mut rmp = Rmp::new(4 * LARGE_PAGE);
        let grant = |gpa, vmpl, perms: u8, vmsa| {
            RmpAdjust { gpa, size: PageSize::Small, target_vmpl: vmpl, perms: VmplPerms(perms), vmsa }
                .encode()
                .expect("encode")
        };
        // VMPL0 grants VMPL1 read + execute-user.
        rmp.rmpadjust(0, grant(0x5000, 1, VmplPerms::READ | VmplPerms::EXEC_USER, false))
            .expect("vmpl0 grants");
        assert!(rmp.allows(1, 0x5fff, Access::Read));
        assert!(!rmp.allows(1, 0x5000, Access::Write));
        assert!(rmp.allows(1, 0x5000, Access::Execute { cpl: 3 }));
        assert!(!rmp.allows(1, 0x5000, Access::Execute { cpl: 0 }));
        assert!(rmp.allows(0, 0x5000, Access::Write), "VMPL0 keeps everything");
        // VMPL1 cannot raise its own permissions, nor grant what it lacks.
        assert_eq!(rmp.rmpadjust(1, grant(0x5000, 1, 0xf, false)), Err(RmpError::Permission(0x5000)));
        assert_eq!(
            rmp.rmpadjust(1, grant(0x5000, 2, VmplPerms::WRITE, false)),
            Err(RmpError::Permission(0x5000))
        );
        assert_eq!(
            rmp.rmpadjust(1, grant(0x6000, 2, VmplPerms::READ, false)),
            Err(RmpError::Permission(0x6000))
        );
        // ... but may pass on a subset of its own to a lower VMPL.
        rmp.rmpadjust(1, grant(0x5000, 2, VmplPerms::READ, false)).expect("subset to VMPL2");
        assert!(rmp.allows(2, 0x5000, Access::Read));
        // Only VMPL0 makes VMSAs; a VMSA page is not accessible to VMPL1.
        assert_eq!(rmp.rmpadjust(1, grant(0x7000, 2, 0, true)), Err(RmpError::Permission(0x7000)));
        rmp.rmpadjust(0, grant(0x7000, 1, VmplPerms::READ, true)).expect("vmsa");
        assert!(!rmp.allows(1, 0x7000, Access::Read));
        // Ranges outside the model fail without touching anything.
        let big = RmpAdjust {
            gpa: 4 * LARGE_PAGE,
            size: PageSize::Large,
            target_vmpl: 1,
            perms: VmplPerms(1),
            vmsa: false,
        };
        assert!(rmp.rmpadjust(0, big.encode().expect("encode")).is_err());
        assert!(!rmp.allows(1, 4 * LARGE_PAGE, Access::Read));
    }
}
