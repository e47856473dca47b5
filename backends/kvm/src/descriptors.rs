//! GDT, TSS (with its I/O permission bitmap) and IDT of a KVM domain, as
//! bytes the monitor writes into guest memory before boot.
//!
//! Selectors follow Linux's layout, which this project's nested KVM
//! requires (the `STAR`-derived user selectors must equal the host's):
//! kernel CS 0x10, kernel SS 0x18, user CS 0x33, user SS 0x2b, and
//! `STAR = 0x0023_0010_0000_0000`. Unlike Linux's, the GDT has **no 32-bit
//! code segment**: slots 0x08 (kernel code32) and 0x20 (user code32) are
//! null, so a far jump, call, return or `iretq` to them raises #GP and a
//! program can never run in compatibility mode (where `syscall` would enter
//! ring 0 through `MSR_CSTAR`). `sysret` still takes 0x23 as its base: in
//! 64-bit mode it loads CS = 0x33 and SS = 0x2b with fixed attributes and
//! reads no descriptor. The only code segment ring 3 can use is 0x33.
//!
//! The TSS's I/O bitmap lets ring 3 use exactly one port, the ring
//! doorbell; every other `in`/`out` from ring 3 faults. Every IDT gate has
//! DPL 0 except `int3`'s.

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x10;
/// Kernel data/stack selector.
pub const KERNEL_SS: u16 = 0x18;
/// Base of `sysret`'s selector arithmetic (Linux's user 32-bit code
/// selector); its GDT slot is null: there is no 32-bit code segment.
pub const USER_CS32: u16 = 0x23;
/// User data/stack selector.
pub const USER_SS: u16 = 0x2b;
/// User 64-bit code selector.
pub const USER_CS: u16 = 0x33;
/// Selector of vCPU 0's TSS; vCPU k's is [`tss_selector`]`(k)`.
pub const TSS_SEL: u16 = 0x40;
/// `MSR_STAR` value for this layout.
pub const STAR: u64 = ((USER_CS32 as u64) << 48) | ((KERNEL_CS as u64) << 32);

/// Number of GDT bytes ([`gdt`] output): eight 8-byte slots, then one
/// 16-byte TSS descriptor per vCPU.
pub const GDT_BYTES: usize = TSS_SEL as usize + 16 * crate::layout::MAX_VCPUS;

/// The TR selector of vCPU `k` (each vCPU has a TSS of its own: its own
/// ring-0 and IST stacks).
pub const fn tss_selector(k: usize) -> u16 {
    TSS_SEL + 16 * k as u16
}
/// Offset of the I/O permission bitmap inside the TSS.
pub const IOPB_OFFSET: usize = 0x68;
/// Ports covered by the bitmap (all above are denied by the TSS limit).
pub const IOPB_PORTS: usize = 256;
/// Size of the TSS including the bitmap and its terminating 0xff byte.
pub const TSS_BYTES: usize = IOPB_OFFSET + IOPB_PORTS / 8 + 1;

/// Type of a busy 64-bit TSS, what TR holds on hardware (and what VMX
/// requires of a 64-bit guest's TR).
pub const TSS_TYPE_BUSY: u8 = 11;
/// Type of an available 64-bit TSS.
pub const TSS_TYPE_AVAILABLE: u8 = 9;

/// The type to give TR in `KVM_SET_SREGS`: busy, except when this host is
/// itself a guest of QEMU's TCG (hypervisor CPUID signature
/// `TCGTCGTCGTCG`): TCG emulates only SVM, and its I/O-permission check
/// accepts only an *available* TSS in TR, so with a busy one every ring-3
/// `out` to the doorbell port raised #GP in the nested guest (the QEMU tier
/// of docs/execute-only.md). SVM itself does not check TR's type.
pub fn tr_type() -> u8 {
    if host_is_qemu_tcg() {
        TSS_TYPE_AVAILABLE
    } else {
        TSS_TYPE_BUSY
    }
}

/// Whether CPUID says this machine is a QEMU TCG guest.
fn host_is_qemu_tcg() -> bool {
    // CPUID.1:ECX bit 31: running under a hypervisor, whose leaves start
    // at 0x4000_0000 (EBX, ECX, EDX: its signature).
    if core::arch::x86_64::__cpuid(1).ecx & (1 << 31) == 0 {
        return false;
    }
    let h = core::arch::x86_64::__cpuid(0x4000_0000);
    let mut sig = [0u8; 12];
    sig[..4].copy_from_slice(&h.ebx.to_le_bytes());
    sig[4..8].copy_from_slice(&h.ecx.to_le_bytes());
    sig[8..].copy_from_slice(&h.edx.to_le_bytes());
    &sig == b"TCGTCGTCGTCG"
}

/// The GDT: null, null (Linux's kernel code32), kernel code64, kernel data,
/// null (Linux's user code32), user data, user code64, null, then one TSS
/// descriptor (two slots) per vCPU, vCPU k's based at `tss_base(k)`.
/// Accessed bits are preset so the CPU never writes the table.
pub fn gdt(tss_base: impl Fn(usize) -> u64) -> Vec<u8> {
    let tss_limit = (TSS_BYTES - 1) as u64;
    let tss = |base: u64| {
        let lo = (tss_limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (0x8bu64 << 40) // present, DPL 0, type 11: busy 64-bit TSS (TR is loaded from the host)
            | (((tss_limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56);
        [lo, base >> 32]
    };
    let segments: [u64; 8] = [
        0,
        0,                     // 0x08 (no kernel code32)
        0x00af_9b00_0000_ffff, // 0x10 kernel code64 (L)
        0x00cf_9300_0000_ffff, // 0x18 kernel data
        0,                     // 0x20 (no user code32: sysret's base only)
        0x00cf_f300_0000_ffff, // 0x2b user data
        0x00af_fb00_0000_ffff, // 0x33 user code64 (L)
        0,
    ];
    let tsses = (0..crate::layout::MAX_VCPUS).flat_map(|k| tss(tss_base(k)));
    let out: Vec<u8> = segments.into_iter().chain(tsses).flat_map(u64::to_le_bytes).collect();
    debug_assert_eq!(out.len(), GDT_BYTES);
    out
}

/// The TSS: `RSP0` (traps from ring 3), `IST1` (double fault, NMI, machine
/// check), `IST2` (page faults), `IST3` (`#VC`, SEV-SNP) and an I/O bitmap that allows ring 3 only
/// `doorbell_port`.
pub fn tss(rsp0: u64, ist1: u64, ist2: u64, ist3: u64, doorbell_port: u16) -> [u8; TSS_BYTES] {
    let mut t = [0u8; TSS_BYTES];
    t[4..12].copy_from_slice(&rsp0.to_le_bytes());
    t[0x24..0x2c].copy_from_slice(&ist1.to_le_bytes());
    t[0x2c..0x34].copy_from_slice(&ist2.to_le_bytes());
    t[0x34..0x3c].copy_from_slice(&ist3.to_le_bytes());
    t[0x66..0x68].copy_from_slice(&(IOPB_OFFSET as u16).to_le_bytes());
    for b in &mut t[IOPB_OFFSET..] {
        *b = 0xff;
    }
    let p = usize::from(doorbell_port);
    if p < IOPB_PORTS {
        t[IOPB_OFFSET + p / 8] &= !(1u8 << (p % 8));
    }
    t
}

/// Bytes of a full IDT.
pub const IDT_BYTES: usize = 256 * 16;

/// Which IST stack a vector uses (0 = none). Page faults have their own:
/// the one ring-0 page fault a program can provoke (a `syscall` from 32-bit
/// code, which this machine's nested KVM sends to the low 32 bits of
/// `CSTAR`, see `cabin_proxy_kernel::trap::classify`) arrives with the
/// program's `rsp`, and must not be delivered onto it.
pub fn ist_for(vector: u8) -> u8 {
    match vector {
        2 | 8 | 18 => 1, // NMI, #DF, #MC
        14 => 2,         // #PF
        29 => 3,         // #VC (SEV-ES/SNP only): `cabin_kvm::layout::VC_GPA`
        _ => 0,
    }
}

/// Descriptor privilege level of a vector's gate: 3 for `int3` (so it
/// raises #BP and SIGTRAP, as on Linux), 0 for everything else (a ring-3
/// `int N` then raises #GP).
pub fn dpl_for(vector: u8) -> u8 {
    if vector == 3 {
        3
    } else {
        0
    }
}

/// The IDT: 64-bit interrupt gates (interrupts stay off in ring 0) to
/// `handler(vector)`, kernel CS.
pub fn idt(handler: impl Fn(u8) -> u64) -> Vec<u8> {
    let mut out = vec![0u8; IDT_BYTES];
    for v in 0..=255u8 {
        let h = handler(v);
        let attr = 0x80u64 | (u64::from(dpl_for(v)) << 5) | 0xe; // present, DPL, interrupt gate
        let lo = (h & 0xffff)
            | (u64::from(KERNEL_CS) << 16)
            | (u64::from(ist_for(v)) << 32)
            | (attr << 40)
            | (((h >> 16) & 0xffff) << 48);
        let hi = h >> 32;
        let at = usize::from(v) * 16;
        out[at..at + 8].copy_from_slice(&lo.to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&hi.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TR is busy (as hardware and VMX want it) except on a QEMU TCG host.
    #[test]
    fn tr_is_busy_except_under_qemu_tcg() {
        let want = if host_is_qemu_tcg() { TSS_TYPE_AVAILABLE } else { TSS_TYPE_BUSY };
        assert_eq!(tr_type(), want);
    }

    fn q(b: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
    }

    #[test]
    fn star_matches_linux() {
        assert_eq!(STAR, 0x0023_0010_0000_0000);
        // sysret: CS = base + 16, SS = base + 8 (RPL 3).
        assert_eq!(USER_CS32 + 16, USER_CS);
        assert_eq!(USER_CS32 + 8, USER_SS);
    }

    #[test]
    fn gdt_layout() {
        let g = gdt(|k| 0xffff_ffff_8000_4000 + 0x100 * k as u64);
        assert_eq!(g.len(), GDT_BYTES);
        assert_eq!(q(&g, 2) >> 53 & 1, 1, "kernel CS is long mode");
        assert_eq!(q(&g, 6) >> 45 & 3, 3, "user CS has DPL 3");
        assert_eq!(q(&g, 6) >> 53 & 1, 1, "user CS is long mode");
        assert_eq!(q(&g, 5) >> 45 & 3, 3, "user SS has DPL 3");
        // The only code segments: kernel 0x10 and user 0x33, both long mode.
        let code: Vec<usize> =
            (0..GDT_BYTES / 8).filter(|&i| q(&g, i) >> 47 & 1 == 1 && q(&g, i) >> 43 & 3 == 3).collect();
        assert_eq!(code, vec![2, 6], "present code segments");
        assert_eq!(q(&g, 1), 0, "no kernel code32");
        assert_eq!(q(&g, 4), 0, "no user code32");
        let lo = q(&g, 8);
        let base = ((lo >> 16) & 0xff_ffff) | (((lo >> 56) & 0xff) << 24) | (q(&g, 9) << 32);
        assert_eq!(base, 0xffff_ffff_8000_4000);
        assert_eq!(lo & 0xffff, (TSS_BYTES - 1) as u64);
        // Every vCPU's TSS descriptor names its own TSS; none is a code segment.
        for k in 0..crate::layout::MAX_VCPUS {
            let i = usize::from(tss_selector(k)) / 8;
            let lo = q(&g, i);
            let base = ((lo >> 16) & 0xff_ffff) | (((lo >> 56) & 0xff) << 24) | (q(&g, i + 1) << 32);
            assert_eq!(base, 0xffff_ffff_8000_4000 + 0x100 * k as u64, "vCPU {k}");
            assert_eq!((lo >> 40) & 0xff, 0x8b, "vCPU {k}: present busy 64-bit TSS, DPL 0");
        }
    }

    #[test]
    fn tss_allows_only_the_doorbell() {
        let t = tss(0x1000, 0x2000, 0x3000, 0x4000, 0xe0);
        assert_eq!(u64::from_le_bytes(t[4..12].try_into().expect("8")), 0x1000);
        assert_eq!(u64::from_le_bytes(t[0x34..0x3c].try_into().expect("8")), 0x4000, "IST3: #VC");
        assert_eq!(u64::from_le_bytes(t[0x24..0x2c].try_into().expect("8")), 0x2000);
        assert_eq!(u64::from_le_bytes(t[0x2c..0x34].try_into().expect("8")), 0x3000);
        let allowed: Vec<usize> =
            (0..IOPB_PORTS).filter(|p| t[IOPB_OFFSET + p / 8] & (1 << (p % 8)) == 0).collect();
        assert_eq!(allowed, vec![0xe0]);
        assert_eq!(t[TSS_BYTES - 1], 0xff, "terminator byte");
    }

    #[test]
    fn idt_gates() {
        let i = idt(|v| 0xffff_ffff_8010_0030 + u64::from(v) * 16);
        let gate = |v: usize| (q(&i, v * 2), q(&i, v * 2 + 1));
        let (lo, hi) = gate(14);
        let off = (lo & 0xffff) | (((lo >> 48) & 0xffff) << 16) | (hi << 32);
        assert_eq!(off, 0xffff_ffff_8010_0030 + 14 * 16);
        assert_eq!((lo >> 16) & 0xffff, u64::from(KERNEL_CS));
        assert_eq!((lo >> 40) & 0xff, 0x8e);
        assert_eq!((gate(3).0 >> 40) & 0xff, 0xee, "int3 reachable from ring 3");
        assert_eq!((gate(0x80).0 >> 40) & 0xff, 0x8e, "int 0x80 is not a gate");
        assert_eq!((gate(8).0 >> 32) & 7, 1, "#DF on IST1");
        assert_eq!((gate(14).0 >> 32) & 7, 2, "#PF on IST2");
        assert_eq!((gate(29).0 >> 32) & 7, 3, "#VC on IST3");
        assert_eq!((gate(13).0 >> 32) & 7, 0, "#GP on RSP0");
        // Only int3 is open to ring 3: not int1/icebp's #DB, not into's #OF, not int 0x80.
        let open: Vec<usize> = (0..256).filter(|&v| (gate(v).0 >> 45) & 3 != 0).collect();
        assert_eq!(open, vec![3]);
    }
}
