//! The VM and its one vCPU: memory slot, CPUID, control registers, MSRs,
//! XCR0 and the ring-3 start state, all set from the host before the first
//! `KVM_RUN` (guest ring 0 is emulated here and costly, so the proxy-kernel
//! does no start-up work at all: the vCPU starts directly in ring 3 at the
//! image's entry).

use kvm_bindings::{
    kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_userspace_memory_region, kvm_xcrs, CpuId, Msrs,
    KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use thiserror::Error;

use super::descriptors::{tss_selector, GDT_BYTES, IDT_BYTES, TSS_BYTES, USER_CS, USER_SS};
use super::domain::Guest;
use super::layout::{kernel_stack_top, kernel_va, tss_gpa, GDT_GPA, IDT_GPA, MAX_VCPUS};

/// Errors of this module.
#[derive(Debug, Error)]
pub enum VcpuError {
    /// A vCPU's start state was refused before it reached KVM: a slot out
    /// of range or an address that is not a canonical user address.
    #[error("vCPU start state refused: {0}")]
    BadStart(&'static str),
    /// A KVM ioctl failed.
    #[error("KVM {what} failed: {err}")]
    Kvm {
        /// Which call.
        what: &'static str,
        /// The error (its errno kept).
        #[source]
        err: kvm_ioctls::Error,
    },
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuError {
    move |err| VcpuError::Kvm { what, err }
}

/// CR0: PG | AM | WP | NE | ET | MP | PE.
pub const CR0: u64 = 0x8005_0033;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.PGE.
pub const CR4_PGE: u64 = 1 << 7;
/// CR4.OSFXSR.
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// CR4.UMIP: `sgdt`, `sidt`, `sldt`, `smsw`, `str` fault in ring 3 (as on Linux).
pub const CR4_UMIP: u64 = 1 << 11;
/// CR4.FSGSBASE.
pub const CR4_FSGSBASE: u64 = 1 << 16;
/// CR4.OSXSAVE.
pub const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4.SMEP: ring 0 never executes a user page.
pub const CR4_SMEP: u64 = 1 << 20;
/// CR4.SMAP: ring 0 never reads or writes a user page (the proxy-kernel
/// never does, so it never needs `stac`).
pub const CR4_SMAP: u64 = 1 << 21;
/// EFER: SCE | LME | LMA | NXE.
pub const EFER: u64 = 0xd01;
/// XCR0 components the program may use: x87, SSE, AVX, and AVX-512's
/// opmask/ZMM_Hi256/Hi16_ZMM — never PKRU (bit 9), so `xrstor` cannot load it.
pub const XCR0_ALLOWED: u64 = 0x7 | 0xe0;
/// `SFMASK`: TF, IF, DF, IOPL, NT, AC cleared on `syscall`.
pub const SFMASK: u64 = 0x47700;
/// `SYSENTER_CS`: 0, so `sysenter` raises #GP (on Intel; AMD has no
/// `sysenter` in long mode and raises #UD) instead of entering ring 0.
pub const SYSENTER_CS: u64 = 0;
/// Initial ring-3 RFLAGS: IF and the reserved bit 1.
pub const RFLAGS: u64 = 0x202;

const MSR_SYSENTER_CS: u32 = 0x174;
const MSR_SYSENTER_ESP: u32 = 0x175;
const MSR_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SFMASK: u32 = 0xc000_0084;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// What the host CPU offers, from KVM's supported CPUID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// CPUID.1:EDX (Linux's `AT_HWCAP` on x86).
    pub leaf1_edx: u32,
    /// CPUID.1:ECX.
    pub leaf1_ecx: u32,
    /// CPUID.7.0:EBX.
    pub leaf7_ebx: u32,
    /// CPUID.7.0:ECX.
    pub leaf7_ecx: u32,
    /// CPUID.0xD.0: supported XCR0 bits.
    pub xcr0_supported: u64,
}

impl CpuFeatures {
    /// Reads the features out of a CPUID table.
    pub fn from_cpuid(c: &CpuId) -> CpuFeatures {
        let mut f = CpuFeatures::default();
        for e in c.as_slice() {
            match (e.function, e.index) {
                (1, _) => {
                    f.leaf1_edx = e.edx;
                    f.leaf1_ecx = e.ecx;
                }
                (7, 0) => {
                    f.leaf7_ebx = e.ebx;
                    f.leaf7_ecx = e.ecx;
                }
                (0xd, 0) => f.xcr0_supported = u64::from(e.eax) | (u64::from(e.edx) << 32),
                _ => {}
            }
        }
        f
    }

    /// XSAVE available.
    pub fn xsave(&self) -> bool {
        self.leaf1_ecx & (1 << 26) != 0
    }

    /// FSGSBASE instructions available.
    pub fn fsgsbase(&self) -> bool {
        self.leaf7_ebx & 1 != 0
    }

    /// Supervisor-mode execution prevention (CPUID.7.0:EBX bit 7).
    pub fn smep(&self) -> bool {
        self.leaf7_ebx & (1 << 7) != 0
    }

    /// Supervisor-mode access prevention (CPUID.7.0:EBX bit 20).
    pub fn smap(&self) -> bool {
        self.leaf7_ebx & (1 << 20) != 0
    }

    /// User-mode instruction prevention (CPUID.7.0:ECX bit 2).
    pub fn umip(&self) -> bool {
        self.leaf7_ecx & (1 << 2) != 0
    }

    /// CR4 for the guest: SMEP, SMAP and UMIP wherever the vCPU has them.
    pub fn cr4(&self) -> u64 {
        let mut cr4 = CR4_PAE | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        for (has, bit) in [
            (self.xsave(), CR4_OSXSAVE),
            (self.fsgsbase(), CR4_FSGSBASE),
            (self.smep(), CR4_SMEP),
            (self.smap(), CR4_SMAP),
            (self.umip(), CR4_UMIP),
        ] {
            if has {
                cr4 |= bit;
            }
        }
        cr4
    }

    /// XCR0 for the guest (x87 always; AVX-512 only as a whole).
    pub fn xcr0(&self) -> u64 {
        let mut x = self.xcr0_supported & XCR0_ALLOWED;
        if x & 0xe0 != 0xe0 {
            x &= !0xe0;
        }
        if x & 0x4 != 0 && x & 0x2 == 0 {
            x &= !0x4;
        }
        x | 1
    }

    /// `AT_HWCAP2`: bit 1 = FSGSBASE usable (as Linux reports it).
    pub fn hwcap2(&self) -> u64 {
        if self.fsgsbase() {
            2
        } else {
            0
        }
    }
}

/// Why /dev/kvm cannot be used.
#[derive(Debug, Error)]
pub enum Unusable {
    /// /dev/kvm cannot be opened.
    #[error("cannot open /dev/kvm: {0}")]
    Open(#[source] kvm_ioctls::Error),
    /// KVM refuses to create a VM.
    #[error("cannot create a VM: {0}")]
    CreateVm(#[source] kvm_ioctls::Error),
}

/// Whether /dev/kvm can be opened and a VM created.
pub fn kvm_usable() -> Result<(), Unusable> {
    let kvm = Kvm::new().map_err(Unusable::Open)?;
    kvm.create_vm().map_err(Unusable::CreateVm)?;
    Ok(())
}

/// Opens KVM and reads the CPU features (before the domain is built, which
/// needs `AT_HWCAP`).
pub fn open() -> Result<(Kvm, CpuId, CpuFeatures), VcpuError> {
    let kvm = Kvm::new().map_err(kvm_err("open /dev/kvm"))?;
    let mut cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm_err("GET_SUPPORTED_CPUID"))?;
    offer_host_protections(&mut cpuid, core::arch::x86_64::__cpuid_count(7, 0).ebx);
    let f = CpuFeatures::from_cpuid(&cpuid);
    Ok((kvm, cpuid, f))
}

/// CPUID.7.0:EBX bits of SMEP (7) and SMAP (20).
const SMEP_SMAP: u32 = (1 << 7) | (1 << 20);

/// Adds to the vCPU's CPUID table the SMEP and SMAP bits the host CPU has
/// (`host_leaf7_ebx`). KVM accepts a CR4 bit only if the table names the
/// feature, and this project's nested KVM leaves both out of its supported
/// table although its guests see the host's CPUID anyway and it enforces
/// both (measured: with them, ring 0 neither runs nor touches a user page).
/// On ordinary KVM the supported table already has them.
fn offer_host_protections(cpuid: &mut CpuId, host_leaf7_ebx: u32) {
    for e in cpuid.as_mut_slice() {
        if e.function == 7 && e.index == 0 {
            e.ebx |= host_leaf7_ebx & SMEP_SMAP;
        }
    }
}

/// The VM and vCPU of a domain.
#[derive(Debug)]
pub struct Machine {
    /// The vCPU.
    pub vcpu: VcpuFd,
    /// The VM (kept alive for the vCPU).
    pub vm: VmFd,
}

fn seg(selector: u16, code: bool, dpl: u8) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 11 } else { 3 },
        present: 1,
        dpl,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// The ring-3 state a vCPU starts in: a program thread's first
/// instruction, stack, TLS (`FS`) and libos thread block (`GS`), and the
/// argument registers its entry expects. Everything else starts zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuStart {
    /// First instruction.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// `rax` (a new thread's `clone` returns 0 in it).
    pub rax: u64,
    /// `rdi`.
    pub rdi: u64,
    /// `rsi`.
    pub rsi: u64,
    /// `rdx`.
    pub rdx: u64,
    /// `FS` base (the program's TLS).
    pub fs_base: u64,
    /// `GS` base (the libos thread block).
    pub gs_base: u64,
}

impl VcpuStart {
    /// Refuses a start state the CPU would not enter ring 3 with (a
    /// non-canonical or upper-half address would fail the VM entry or the
    /// MSR write in the host, or point into the supervisor window).
    pub fn check(&self) -> Result<(), VcpuError> {
        use cabin_proxy_kernel::trap::is_user_canonical;
        for (v, what) in [
            (self.rip, "rip is not a user address"),
            (self.rsp, "rsp is not a user address"),
            (self.fs_base, "FS base is not a user address"),
            (self.gs_base, "GS base is not a user address"),
        ] {
            if !is_user_canonical(v) {
                return Err(VcpuError::BadStart(what));
            }
        }
        Ok(())
    }
}

/// Creates the VM for `d`: its one memory slot is the guest's memory.
pub fn create_vm(kvm: &Kvm, d: &Guest) -> Result<VmFd, VcpuError> {
    let vm = kvm.create_vm().map_err(kvm_err("CREATE_VM"))?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: d.phys.size(),
        userspace_addr: d.phys.host_base(),
    };
    // SAFETY: the region is the Guest's PhysMemory mapping, which the
    // caller keeps alive for as long as the VM (the Machine or the
    // `Vcpus` that owns the VM holds the Guest, and every vCPU thread has
    // ended before either is dropped).
    unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err("SET_USER_MEMORY_REGION"))?;
    Ok(vm)
}

/// Creates the VM and vCPU 0 for `d` and sets the ring-3 start state (the
/// image's entry and initial stack).
pub fn create(kvm: &Kvm, cpuid: &CpuId, f: &CpuFeatures, d: &Guest) -> Result<Machine, VcpuError> {
    let vm = create_vm(kvm, d)?;
    let mut vcpu = vm.create_vcpu(0).map_err(kvm_err("CREATE_VCPU"))?;
    let start = VcpuStart { rip: d.entry, rsp: d.rsp, ..VcpuStart::default() };
    setup(&mut vcpu, cpuid, f, d, 0, &start, true)?;
    Ok(Machine { vcpu, vm })
}

/// Sets every register of vCPU `slot` (new, or reused after its thread
/// ended) from the host: segments, descriptor tables and its own TSS,
/// control registers (SMEP, SMAP, UMIP), XCR0, FPU, the entry MSRs, and the
/// ring-3 start state `start`. Every vCPU gets the same protections; only
/// the TSS (so its ring-0 stacks), `SYSENTER_ESP` and the start state
/// differ. `fresh`: the vCPU has never run, so its CPUID table is set (KVM
/// refuses to change it once the vCPU has run; a reused vCPU keeps the one
/// it got when it was new).
pub fn setup(
    vcpu: &mut VcpuFd,
    cpuid: &CpuId,
    f: &CpuFeatures,
    d: &Guest,
    slot: usize,
    start: &VcpuStart,
    fresh: bool,
) -> Result<(), VcpuError> {
    if slot >= MAX_VCPUS {
        return Err(VcpuError::BadStart("no such vCPU slot"));
    }
    start.check()?;
    vcpu.set_kvm_immediate_exit(0);
    if fresh {
        vcpu.set_cpuid2(cpuid).map_err(kvm_err("SET_CPUID2"))?;
    }

    let mut s = vcpu.get_sregs().map_err(kvm_err("GET_SREGS"))?;
    s.cs = seg(USER_CS, true, 3);
    let data = seg(USER_SS, false, 3);
    s.ss = data;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.fs.base = start.fs_base;
    s.gs.base = start.gs_base;
    s.tr = kvm_segment {
        base: kernel_va(tss_gpa(slot)),
        limit: (TSS_BYTES - 1) as u32,
        selector: tss_selector(slot),
        type_: super::descriptors::tr_type(),
        present: 1,
        ..Default::default()
    };
    s.ldt = kvm_segment { selector: 0, type_: 2, present: 1, limit: 0xffff, ..Default::default() };
    s.gdt.base = kernel_va(GDT_GPA);
    s.gdt.limit = (GDT_BYTES - 1) as u16;
    s.idt.base = kernel_va(IDT_GPA);
    s.idt.limit = (IDT_BYTES - 1) as u16;
    s.cr0 = CR0;
    s.cr2 = 0;
    s.cr3 = d.cr3;
    // Execute-only (crate::pku): CR4.PKE where code pages carry a key.
    s.cr4 = crate::pku::cr4(f.cr4(), d.code_pkey);
    s.efer = EFER;
    // No interrupt pending from a previous thread on this vCPU.
    s.interrupt_bitmap = [0; 4];
    vcpu.set_sregs(&s).map_err(kvm_err("SET_SREGS"))?;

    if f.xsave() {
        let mut x = kvm_xcrs { nr_xcrs: 1, ..Default::default() };
        x.xcrs[0].xcr = 0;
        x.xcrs[0].value = f.xcr0();
        vcpu.set_xcrs(&x).map_err(kvm_err("SET_XCRS"))?;
    }
    let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    vcpu.set_fpu(&fpu).map_err(kvm_err("SET_FPU"))?;
    // Execute-only (crate::pku): PKRU denies data access to the code key.
    crate::pku::load_pkru(vcpu, d.code_pkey)?;

    // Every way into ring 0 without an IDT gate names proxy-kernel code:
    // `syscall` (LSTAR: the gate), `syscall` from 32-bit code (CSTAR) and
    // `sysenter` (SYSENTER_EIP, unreachable with SYSENTER_CS = 0) end the
    // program. See docs/kvm.md, "Ring 0". The proxy-kernel keeps no
    // per-CPU data (no `swapgs`): KERNEL_GS_BASE stays 0, GS is the libos's.
    let msr = |index: u32, data: u64| kvm_msr_entry { index, data, ..Default::default() };
    let msrs = Msrs::from_entries(&[
        msr(MSR_STAR, super::descriptors::STAR),
        msr(MSR_LSTAR, d.lstar),
        msr(MSR_CSTAR, d.cstar),
        msr(MSR_SFMASK, SFMASK),
        msr(MSR_SYSENTER_CS, SYSENTER_CS),
        msr(MSR_SYSENTER_ESP, kernel_stack_top(slot)),
        msr(MSR_SYSENTER_EIP, d.sysenter_eip),
        msr(MSR_FS_BASE, start.fs_base),
        msr(MSR_GS_BASE, start.gs_base),
        msr(MSR_KERNEL_GS_BASE, 0),
    ])
    .map_err(|_| VcpuError::Kvm {
        what: "building the MSR list",
        err: kvm_ioctls::Error::new(libc::EINVAL),
    })?;
    let written = vcpu.set_msrs(&msrs).map_err(kvm_err("SET_MSRS"))?;
    if written != msrs.as_slice().len() {
        return Err(VcpuError::Kvm { what: "SET_MSRS (short)", err: kvm_ioctls::Error::new(libc::EINVAL) });
    }

    let regs = kvm_regs {
        rip: start.rip,
        rsp: start.rsp,
        rax: start.rax,
        rdi: start.rdi,
        rsi: start.rsi,
        rdx: start.rdx,
        rflags: RFLAGS,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm_err("SET_REGS"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr4_and_xcr0_follow_the_cpu() {
        let f = CpuFeatures {
            leaf1_ecx: 1 << 26,
            leaf7_ebx: 1,
            xcr0_supported: 0x2ff, // x87 SSE AVX MPX(2) AVX-512(3) PKRU
            ..Default::default()
        };
        assert_eq!(f.cr4() & (CR4_OSXSAVE | CR4_FSGSBASE), CR4_OSXSAVE | CR4_FSGSBASE);
        assert_eq!(f.xcr0(), 0xe7, "x87|SSE|AVX|AVX-512, no MPX, never PKRU");
        let old = CpuFeatures { xcr0_supported: 0x7, ..f };
        assert_eq!(old.xcr0(), 0x7);
        let none = CpuFeatures::default();
        assert_eq!(none.cr4() & CR4_OSXSAVE, 0);
        assert_eq!(none.cr4() & (CR4_SMEP | CR4_SMAP | CR4_UMIP), 0);
        assert_eq!(none.xcr0(), 1);
        assert_eq!(f.hwcap2(), 2);
    }

    #[test]
    fn host_smep_smap_are_offered_to_the_guest() {
        let entry = |function, ebx| kvm_bindings::kvm_cpuid_entry2 { function, ebx, ..Default::default() };
        let mut c = CpuId::from_entries(&[entry(1, 0), entry(7, 0x1)]).expect("CPUID table");
        offer_host_protections(&mut c, 0x219c_03ab); // this machine: SMEP and SMAP, among others
        let f = CpuFeatures::from_cpuid(&c);
        assert!(f.smep() && f.smap());
        assert_eq!(f.leaf7_ebx, 0x1 | SMEP_SMAP, "nothing but SMEP and SMAP is added");
        let mut none = CpuId::from_entries(&[entry(7, 0x1)]).expect("CPUID table");
        offer_host_protections(&mut none, 0x1);
        assert!(!CpuFeatures::from_cpuid(&none).smep(), "not where the host lacks them");
    }

    #[test]
    fn smep_smap_umip_wherever_the_cpu_has_them() {
        let smep = CpuFeatures { leaf7_ebx: 1 << 7, ..Default::default() };
        assert_eq!(smep.cr4() & (CR4_SMEP | CR4_SMAP | CR4_UMIP), CR4_SMEP);
        let smap = CpuFeatures { leaf7_ebx: 1 << 20, ..Default::default() };
        assert_eq!(smap.cr4() & (CR4_SMEP | CR4_SMAP | CR4_UMIP), CR4_SMAP);
        let umip = CpuFeatures { leaf7_ecx: 1 << 2, ..Default::default() };
        assert_eq!(umip.cr4() & (CR4_SMEP | CR4_SMAP | CR4_UMIP), CR4_UMIP);
        // This machine's CPUID.7.0:EBX as kvm-probe read it (AMD EPYC).
        let epyc = CpuFeatures { leaf7_ebx: 0x219c_03ab, leaf7_ecx: 0x604, ..Default::default() };
        assert_eq!(epyc.cr4() & (CR4_SMEP | CR4_SMAP | CR4_UMIP), CR4_SMEP | CR4_SMAP | CR4_UMIP);
    }
}
