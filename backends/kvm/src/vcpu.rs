//! The VM and its one vCPU: memory slot, CPUID, control registers, MSRs,
//! XCR0 and the ring-3 start state, all set from the host before the first
//! `KVM_RUN` (guest ring 0 is emulated here and costly, so the proxy-kernel
//! does no start-up work at all: the vCPU starts directly in ring 3 at the
//! image's entry).

use std::sync::OnceLock;

use kvm_bindings::{
    kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, kvm_userspace_memory_region, kvm_xcrs, CpuId, Msrs,
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
#[derive(Clone, Debug, Error)]
pub enum Unusable {
    /// /dev/kvm cannot be opened.
    #[error("cannot open /dev/kvm: {0}")]
    Open(#[source] kvm_ioctls::Error),
    /// KVM refuses to create a VM.
    #[error("cannot create a VM: {0}")]
    CreateVm(#[source] kvm_ioctls::Error),
}

/// Whether /dev/kvm can be opened and a VM created: looked at once per
/// process (`cabinc run --backend auto` asks, to choose a backend; each
/// check makes and destroys a VM, about 1 ms; the session's own check only
/// opens /dev/kvm, `KvmDomain::available`). A failure is not kept: the
/// next call tries again. (The VM made here was kept for the first
/// [`create_vm`] for a while; a process that asks and then builds nothing,
/// as a test harness does, then held an idle VM: not done.)
pub fn kvm_usable() -> Result<(), Unusable> {
    static USABLE: OnceLock<()> = OnceLock::new();
    if USABLE.get().is_some() {
        return Ok(());
    }
    let kvm = Kvm::new().map_err(Unusable::Open)?;
    VMS_MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    kvm.create_vm().map_err(Unusable::CreateVm)?;
    let _ = USABLE.set(());
    Ok(())
}

/// `/dev/kvm` and the CPU tables [`open`] computed, once per process.
static OPENED: OnceLock<(Kvm, CpuId, CpuFeatures)> = OnceLock::new();

/// Opens KVM and reads the CPU features (before the domain is built, which
/// needs `AT_HWCAP`). The first call of a process opens `/dev/kvm` and
/// queries KVM's and the host's CPUID (neither changes while the process
/// lives); later ones (the execute-only decision, every domain, every
/// `execve` of a tree) get a `dup` of that descriptor and a copy of the tables.
pub fn open() -> Result<(Kvm, CpuId, CpuFeatures), VcpuError> {
    if let Some((kvm, cpuid, f)) = OPENED.get() {
        return Ok((dup(kvm)?, cpuid.clone(), *f));
    }
    let (kvm, cpuid, f) = open_uncached()?;
    let _ = OPENED.set((dup(&kvm)?, cpuid.clone(), f));
    Ok((kvm, cpuid, f))
}

/// Another descriptor of the same `/dev/kvm`.
fn dup(kvm: &Kvm) -> Result<Kvm, VcpuError> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: dup of a descriptor we own; the result is checked.
    let fd = unsafe { libc::fcntl(kvm.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(VcpuError::Kvm {
            what: "dup of the /dev/kvm descriptor",
            err: kvm_ioctls::Error::last(),
        });
    }
    // SAFETY: `fd` is a fresh descriptor of /dev/kvm that nothing else owns.
    Ok(unsafe { Kvm::from_raw_fd(fd) })
}

/// [`open`] without the cache.
pub(crate) fn open_uncached() -> Result<(Kvm, CpuId, CpuFeatures), VcpuError> {
    let kvm = Kvm::new().map_err(kvm_err("open /dev/kvm"))?;
    let mut cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm_err("GET_SUPPORTED_CPUID"))?;
    offer_host_protections(&mut cpuid, core::arch::x86_64::__cpuid_count(7, 0).ebx);
    // The program gets the CPU it has natively (docs/kvm.md, "The CPU a
    // program sees"), and CR4/XCR0 follow that table: KVM's supported
    // table may leave out what its guests use anyway (this machine's nested
    // KVM lists no XSAVE, so CR4.OSXSAVE was never set and KVM hid
    // OSXSAVE, and with it AVX, from every program). XCR0 stays within
    // what KVM supports, which SET_XCRS checks.
    let supported = CpuFeatures::from_cpuid(&cpuid);
    match_host(&mut cpuid, &host_cpuid)?;
    let f = CpuFeatures { xcr0_supported: supported.xcr0_supported, ..CpuFeatures::from_cpuid(&cpuid) };
    Ok((kvm, cpuid, f))
}

/// CPUID.1:ECX.OSXSAVE.
const OSXSAVE: u32 = 1 << 27;
/// CPUID.1:ECX bits that need XSAVE enabled by the kernel: FMA (12),
/// XSAVE (26), OSXSAVE (27), AVX (28), F16C (29).
const XSAVE_DEPENDENT: u32 = (1 << 12) | (1 << 26) | OSXSAVE | (1 << 28) | (1 << 29);
/// CPUID.7.0:ECX bits of PKU (3) and OSPKE (4).
const PKU_OSPKE: u32 = (1 << 3) | (1 << 4);
/// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`: the entry is for one subleaf.
const SIGNIFICANT_INDEX: u32 = 1;

/// The CPU as a native program sees it, for the leaves a program reads:
/// `host(leaf, subleaf)` is the host's CPUID (the monitor runs natively,
/// so its CPUID is the program's native one). What is copied and what is
/// kept from KVM's table, and why, is listed in docs/kvm.md ("The CPU a
/// program sees").
pub fn match_host(cpuid: &mut CpuId, host: &dyn Fn(u32, u32) -> [u32; 4]) -> Result<(), VcpuError> {
    let mut set = |leaf: u32, sub: u32, regs: [u32; 4], keep: [u32; 4]| -> Result<(), VcpuError> {
        let e = cpuid.as_mut_slice().iter_mut().find(|e| e.function == leaf && e.index == sub);
        match e {
            Some(e) => {
                let mix = |old: u32, i: usize| (old & keep[i]) | (regs[i] & !keep[i]);
                (e.eax, e.ebx, e.ecx, e.edx) = (mix(e.eax, 0), mix(e.ebx, 1), mix(e.ecx, 2), mix(e.edx, 3));
                Ok(())
            }
            None => {
                let flags = if matches!(leaf, 7 | 0xd) { SIGNIFICANT_INDEX } else { 0 };
                let [eax, ebx, ecx, edx] = regs;
                let e = kvm_bindings::kvm_cpuid_entry2 {
                    function: leaf,
                    index: sub,
                    flags,
                    eax,
                    ebx,
                    ecx,
                    edx,
                    ..Default::default()
                };
                cpuid.push(e).map_err(|_| VcpuError::Kvm {
                    what: "CPUID table full",
                    err: kvm_ioctls::Error::new(libc::E2BIG),
                })
            }
        }
    };
    let none = [0; 4];
    // Leaf 1: family/model, features; EBX[31:24] (the APIC id) stays the
    // vCPU's. OSXSAVE follows the guest's CR4.
    let mut l1 = host(1, 0);
    let xsave = l1[2] & (1 << 26) != 0;
    if xsave {
        l1[2] |= OSXSAVE;
    } else {
        l1[2] &= !XSAVE_DEPENDENT;
    }
    set(1, 0, l1, [0, 0xff00_0000, 0, 0])?;
    // Leaf 7: structured extended features; PKU/OSPKE stay the guest's
    // (CR4.PKE is never set for the program).
    let l7 = host(7, 0);
    set(7, 0, l7, [0, 0, PKU_OSPKE, 0])?;
    for sub in 1..=l7[0].min(3) {
        set(7, sub, host(7, sub), none)?;
    }
    // Leaf 0xD: XSAVE state components as the host reports them.
    if xsave {
        for sub in 0..64 {
            let r = host(0xd, sub);
            if sub < 2 || r != none {
                set(0xd, sub, r, none)?;
            }
        }
    }
    let max_ext = host(0x8000_0000, 0)[0];
    if max_ext >= 0x8000_0001 {
        set(0x8000_0001, 0, host(0x8000_0001, 0), [!0, !0, 0, 0])?;
    }
    for leaf in 0x8000_0002..=0x8000_0004u32.min(max_ext) {
        set(leaf, 0, host(leaf, 0), none)?;
    }
    if max_ext >= 0x8000_0008 {
        set(0x8000_0008, 0, host(0x8000_0008, 0), [0, 0, !0, !0])?;
    }
    Ok(())
}

/// The host's CPUID.
pub fn host_cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
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

/// A segment register as the CPU holds it: what both KVM's `kvm_segment`
/// and an SEV-ES/SNP save area's segment (`cabin-snp`) are made from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Base address.
    pub base: u64,
    /// Limit (bytes, as loaded: already scaled by G).
    pub limit: u32,
    /// Descriptor type (4 bits).
    pub type_: u8,
    /// S: code or data (not a system segment).
    pub s: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Present.
    pub present: bool,
    /// L: 64-bit code.
    pub l: bool,
    /// D/B: default operand size 32 bits.
    pub db: bool,
    /// G: limit in 4 KiB units.
    pub g: bool,
}

impl Segment {
    fn flat(selector: u16, code: bool, dpl: u8) -> Segment {
        Segment {
            selector,
            base: 0,
            limit: 0xffff_ffff,
            type_: if code { 11 } else { 3 },
            s: true,
            dpl,
            present: true,
            l: code,
            db: !code,
            g: true,
        }
    }

    fn kvm(&self) -> kvm_segment {
        kvm_segment {
            base: self.base,
            limit: self.limit,
            selector: self.selector,
            type_: self.type_,
            present: u8::from(self.present),
            dpl: self.dpl,
            db: u8::from(self.db),
            s: u8::from(self.s),
            l: u8::from(self.l),
            g: u8::from(self.g),
            avl: 0,
            unusable: 0,
            padding: 0,
        }
    }
}

/// A descriptor-table register (GDTR, IDTR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableReg {
    /// Base (guest-virtual).
    pub base: u64,
    /// Limit (size - 1).
    pub limit: u16,
}

/// Every register a vCPU of a domain starts with, independent of how the
/// hypervisor takes it: KVM's `set_sregs`/`set_msrs`/`set_regs` here, an
/// SEV-SNP VMPL1 save area in `cabin-snp` (so both backends start the same
/// CPU). Registers not named here start zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    /// CS.
    pub cs: Segment,
    /// SS, DS, ES (flat user data).
    pub ss: Segment,
    /// DS.
    pub ds: Segment,
    /// ES.
    pub es: Segment,
    /// FS (base: the program's TLS).
    pub fs: Segment,
    /// GS (base: the libos thread block).
    pub gs: Segment,
    /// TR: this vCPU's TSS.
    pub tr: Segment,
    /// LDTR (null, usable).
    pub ldt: Segment,
    /// GDTR.
    pub gdt: TableReg,
    /// IDTR.
    pub idt: TableReg,
    /// CR0.
    pub cr0: u64,
    /// CR3: the domain's page tables.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
    /// XCR0, where the CPU has XSAVE.
    pub xcr0: Option<u64>,
    /// FPU control word.
    pub fcw: u16,
    /// MXCSR.
    pub mxcsr: u32,
    /// `MSR_STAR`.
    pub star: u64,
    /// `MSR_LSTAR`.
    pub lstar: u64,
    /// `MSR_CSTAR`.
    pub cstar: u64,
    /// `MSR_SFMASK`.
    pub sfmask: u64,
    /// `MSR_SYSENTER_CS`.
    pub sysenter_cs: u64,
    /// `MSR_SYSENTER_ESP`.
    pub sysenter_esp: u64,
    /// `MSR_SYSENTER_EIP`.
    pub sysenter_eip: u64,
    /// `MSR_KERNEL_GS_BASE`.
    pub kernel_gs_base: u64,
    /// The start registers (`rip`, `rsp`, `rax`, `rdi`, `rsi`, `rdx`; the
    /// FS and GS bases are also in `fs` and `gs`).
    pub start: VcpuStart,
    /// RFLAGS.
    pub rflags: u64,
}

/// The state vCPU `slot` of `d` starts in: ring 3 at `start`, with the
/// domain's descriptor tables, its own TSS, the protections the CPU has
/// (`f`) and the proxy-kernel's entry MSRs. Every vCPU gets the same
/// protections; only the TSS (so its ring-0 stacks), `SYSENTER_ESP` and the
/// start state differ.
pub fn cpu_state(f: &CpuFeatures, d: &Guest, slot: usize, start: &VcpuStart) -> Result<CpuState, VcpuError> {
    if slot >= MAX_VCPUS {
        return Err(VcpuError::BadStart("no such vCPU slot"));
    }
    start.check()?;
    let data = Segment::flat(USER_SS, false, 3);
    Ok(CpuState {
        cs: Segment::flat(USER_CS, true, 3),
        ss: data,
        ds: data,
        es: data,
        fs: Segment { base: start.fs_base, ..data },
        gs: Segment { base: start.gs_base, ..data },
        tr: Segment {
            selector: tss_selector(slot),
            base: kernel_va(tss_gpa(slot)),
            limit: (TSS_BYTES - 1) as u32,
            type_: super::descriptors::tr_type(),
            present: true,
            ..Segment::default()
        },
        ldt: Segment { selector: 0, type_: 2, present: true, limit: 0xffff, ..Segment::default() },
        gdt: TableReg { base: kernel_va(GDT_GPA), limit: (GDT_BYTES - 1) as u16 },
        idt: TableReg { base: kernel_va(IDT_GPA), limit: (IDT_BYTES - 1) as u16 },
        cr0: CR0,
        cr3: d.cr3,
        // Execute-only (crate::pku): CR4.PKE where code pages carry a key.
        cr4: crate::pku::cr4(f.cr4(), d.code_pkey),
        efer: EFER,
        xcr0: f.xsave().then(|| f.xcr0()),
        fcw: 0x37f,
        mxcsr: 0x1f80,
        // Every way into ring 0 without an IDT gate names proxy-kernel
        // code: `syscall` (LSTAR: the gate), `syscall` from 32-bit code
        // (CSTAR) and `sysenter` (SYSENTER_EIP, unreachable with
        // SYSENTER_CS = 0) end the program. See docs/kvm.md, "Ring 0". The
        // proxy-kernel keeps no per-CPU data (no `swapgs`): KERNEL_GS_BASE
        // stays 0, GS is the libos's.
        star: super::descriptors::STAR,
        lstar: d.lstar,
        cstar: d.cstar,
        sfmask: SFMASK,
        sysenter_cs: SYSENTER_CS,
        sysenter_esp: kernel_stack_top(slot),
        sysenter_eip: d.sysenter_eip,
        kernel_gs_base: 0,
        start: *start,
        rflags: RFLAGS,
    })
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

/// VMs this process asked KVM for (the domains' and [`kvm_usable`]'s):
/// each costs about 0.5 ms to make and as much to destroy on the machines
/// this is measured on (docs/performance.md, "Start-up").
static VMS_MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many VMs this process has asked KVM for (tests: a run makes one).
pub fn vms_made() -> u64 {
    VMS_MADE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Creates the VM for `d`: its one memory slot is the guest's memory.
pub fn create_vm(kvm: &Kvm, d: &Guest) -> Result<VmFd, VcpuError> {
    VMS_MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    if let Some(w) = &d.shared {
        let region = kvm_userspace_memory_region {
            slot: crate::layout::SHARED_SLOT,
            flags: 0,
            guest_phys_addr: crate::layout::SHARED_GPA,
            memory_size: w.len(),
            userspace_addr: w.host() as u64,
        };
        // SAFETY: the tree's shared window, mapped by the monitor for as
        // long as `w` lives; the Guest holds `w` as long as the VM (as for
        // slot 0); SHARED_GPA lies above guest memory (layout).
        unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err("SET_USER_MEMORY_REGION"))?;
    }
    // Live shared file mappings: a forked child's inherited ones become
    // slots of its VM; later ones are added by `files.rs`.
    {
        use std::os::fd::AsRawFd;
        d.files.attach(vm.as_raw_fd()).map_err(|e| VcpuError::Kvm {
            what: "SET_USER_MEMORY_REGION (file slots)",
            err: kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::ENOMEM)),
        })?;
    }
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

/// KVM takes a vCPU's general and system registers through its `kvm_run`
/// page (KVM_CAP_SYNC_REGS with both): asked once per process.
pub fn sync_regs_supported(vm: &VmFd) -> bool {
    static SYNC: OnceLock<bool> = OnceLock::new();
    *SYNC.get_or_init(|| {
        let want = u64::from(kvm_bindings::KVM_SYNC_X86_REGS | kvm_bindings::KVM_SYNC_X86_SREGS);
        let caps = vm.check_extension_int(kvm_ioctls::Cap::SyncRegs);
        caps > 0 && (caps as u64) & want == want
    })
}

/// `KVM_SET_XSAVE`'s image of a thread's first FPU state: x87 control word
/// `fcw`, `mxcsr`, every register zero and every other component (AVX,
/// AVX-512, ...) in its initial state. Layout (Intel SDM vol. 1, 13.4):
/// the legacy region's FCW at byte 0, MXCSR at 24; the header's
/// XSTATE_BV at byte 512 (x87 | SSE: the two components taken from the
/// image; PKRU is left out: `pku::place_pkru` adds it).
pub(crate) fn xsave_image(fcw: u16, mxcsr: u32) -> kvm_bindings::kvm_xsave {
    let mut x = kvm_bindings::kvm_xsave::default();
    x.region[0] = u32::from(fcw);
    x.region[24 / 4] = mxcsr;
    x.region[512 / 4] = XSTATE_X87 | XSTATE_SSE;
    x
}

/// XSTATE_BV bits of the x87 and SSE components.
const XSTATE_X87: u32 = 1;
const XSTATE_SSE: u32 = 2;

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
) -> Result<kvm_sregs, VcpuError> {
    let c = cpu_state(f, d, slot, start)?;
    vcpu.set_kvm_immediate_exit(0);
    if fresh {
        vcpu.set_cpuid2(cpuid).map_err(kvm_err("SET_CPUID2"))?;
    }

    let mut s = vcpu.get_sregs().map_err(kvm_err("GET_SREGS"))?;
    fill_sregs(&mut s, &c);
    vcpu.set_sregs(&s).map_err(kvm_err("SET_SREGS"))?;

    if let Some(xcr0) = c.xcr0 {
        let mut x = kvm_xcrs { nr_xcrs: 1, ..Default::default() };
        x.xcrs[0].xcr = 0;
        x.xcrs[0].value = xcr0;
        vcpu.set_xcrs(&x).map_err(kvm_err("SET_XCRS"))?;
    }
    load_xsave(vcpu, &c, d)?;

    let msr = |index: u32, data: u64| kvm_msr_entry { index, data, ..Default::default() };
    let msrs = Msrs::from_entries(&[
        msr(MSR_STAR, c.star),
        msr(MSR_LSTAR, c.lstar),
        msr(MSR_CSTAR, c.cstar),
        msr(MSR_SFMASK, c.sfmask),
        msr(MSR_SYSENTER_CS, c.sysenter_cs),
        msr(MSR_SYSENTER_ESP, c.sysenter_esp),
        msr(MSR_SYSENTER_EIP, c.sysenter_eip),
        msr(MSR_FS_BASE, c.fs.base),
        msr(MSR_GS_BASE, c.gs.base),
        msr(MSR_KERNEL_GS_BASE, c.kernel_gs_base),
    ])
    .map_err(|_| VcpuError::Kvm {
        what: "building the MSR list",
        err: kvm_ioctls::Error::new(libc::EINVAL),
    })?;
    let written = vcpu.set_msrs(&msrs).map_err(kvm_err("SET_MSRS"))?;
    if written != msrs.as_slice().len() {
        return Err(VcpuError::Kvm { what: "SET_MSRS (short)", err: kvm_ioctls::Error::new(libc::EINVAL) });
    }

    vcpu.set_regs(&start_regs(&c)).map_err(kvm_err("SET_REGS"))?;
    Ok(s)
}

/// Starts a new thread on a vCPU that already ran one (its host thread
/// parked it: `vcpus.rs`), from the system registers [`setup`] returned
/// for it (`template`). Ring 3 cannot change the MSRs, XCR0, CPUID or the
/// debug registers, and the proxy-kernel writes none of them on KVM (no
/// `swapgs`, no `wrmsr`, no `xsetbv`), so they are still what `setup` set;
/// what a thread can change is put back: every general register, RIP,
/// RFLAGS, the segment registers and their bases (FS, GS), CR0-CR4 and
/// EFER (ring 0 could have been mid-entry), CR2, the pending-interrupt
/// bitmap (all from `template` and `start`), and the whole extended state
/// (one `KVM_SET_XSAVE`, as `setup`). With `sync` (KVM_CAP_SYNC_REGS) the
/// registers go to KVM in the vCPU's `kvm_run` page and are loaded by the
/// next `KVM_RUN` (KVM loads them before it looks at `immediate_exit`, so
/// a kicked entry loads them too): one ioctl per start instead of six.
pub fn restart(
    vcpu: &mut VcpuFd,
    f: &CpuFeatures,
    d: &Guest,
    slot: usize,
    start: &VcpuStart,
    template: &kvm_sregs,
    sync: bool,
) -> Result<(), VcpuError> {
    let c = cpu_state(f, d, slot, start)?;
    vcpu.set_kvm_immediate_exit(0);
    let mut s = *template;
    fill_sregs(&mut s, &c);
    load_xsave(vcpu, &c, d)?;
    let regs = start_regs(&c);
    if sync {
        let r = vcpu.sync_regs_mut();
        r.regs = regs;
        r.sregs = s;
        vcpu.set_sync_dirty_reg(kvm_ioctls::SyncReg::Register);
        vcpu.set_sync_dirty_reg(kvm_ioctls::SyncReg::SystemRegister);
    } else {
        vcpu.set_sregs(&s).map_err(kvm_err("SET_SREGS"))?;
        vcpu.set_regs(&regs).map_err(kvm_err("SET_REGS"))?;
    }
    Ok(())
}

/// The system registers of `c` over `s` (which keeps what `c` does not
/// name: the APIC base, CR8).
fn fill_sregs(s: &mut kvm_sregs, c: &CpuState) {
    s.cs = c.cs.kvm();
    s.ss = c.ss.kvm();
    s.ds = c.ds.kvm();
    s.es = c.es.kvm();
    s.fs = c.fs.kvm();
    s.gs = c.gs.kvm();
    s.tr = c.tr.kvm();
    s.ldt = c.ldt.kvm();
    s.gdt.base = c.gdt.base;
    s.gdt.limit = c.gdt.limit;
    s.idt.base = c.idt.base;
    s.idt.limit = c.idt.limit;
    s.cr0 = c.cr0;
    s.cr2 = 0;
    s.cr3 = c.cr3;
    s.cr4 = c.cr4;
    s.efer = c.efer;
    // No interrupt pending from a previous thread on this vCPU.
    s.interrupt_bitmap = [0; 4];
}

/// The general registers a thread starts with: its start state, the rest 0.
fn start_regs(c: &CpuState) -> kvm_regs {
    kvm_regs {
        rip: c.start.rip,
        rsp: c.start.rsp,
        rax: c.start.rax,
        rdi: c.start.rdi,
        rsi: c.start.rsi,
        rdx: c.start.rdx,
        rflags: c.rflags,
        ..Default::default()
    }
}

/// Loads the whole extended state of a new thread.
fn load_xsave(vcpu: &mut VcpuFd, c: &CpuState, d: &Guest) -> Result<(), VcpuError> {
    // The whole extended state, not only the legacy x87/SSE part that
    // KVM_SET_FPU writes: a reused vCPU (the slot's previous thread) would
    // otherwise keep the upper halves of its vector registers (ymm, zmm,
    // opmask) for the next thread. An XSAVE image whose header names only
    // x87 and SSE puts every other component in its initial state (zero).
    // Execute-only (crate::pku): PKRU denies data access to the code key;
    // in the same image, so one KVM_SET_XSAVE loads the whole state (it
    // used to be a second KVM_GET_XSAVE and KVM_SET_XSAVE per start).
    let mut image = xsave_image(c.fcw, c.mxcsr);
    let pkru = crate::pku::place_pkru(&mut image, d.code_pkey)?;
    // SAFETY: `image` is a whole `kvm_xsave` (4096 bytes), PKRU (if placed)
    // at an offset checked to lie inside it, and the VM enables no
    // dynamically sized XSAVE feature (AMX), so KVM reads no more than that.
    match unsafe { vcpu.set_xsave(&image) } {
        Ok(()) => Ok(()),
        // Not enforcing: a KVM that refuses the PKRU component keeps PKRU
        // from the guest, whose XCR0 then has no PKRU either; the rest of
        // the state is reset without it.
        Err(_) if pkru && d.code_pkey == 0 => {
            // SAFETY: as above, without PKRU.
            unsafe { vcpu.set_xsave(&xsave_image(c.fcw, c.mxcsr)) }.map_err(kvm_err("SET_XSAVE"))
        }
        Err(e) => Err(kvm_err("SET_XSAVE")(e)),
    }
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
    fn the_program_sees_the_host_cpu_but_its_own_apic_id_and_pkeys() {
        let entry = |function, index, ebx, ecx| kvm_bindings::kvm_cpuid_entry2 {
            function,
            index,
            ebx,
            ecx,
            ..Default::default()
        };
        // KVM's table: leaf 1 with APIC id 3 and no XSAVE, leaf 7 with OSPKE.
        let mut c =
            CpuId::from_entries(&[entry(1, 0, 0x0300_0000, 0), entry(7, 0, 0, PKU_OSPKE)]).expect("table");
        let host = |leaf: u32, sub: u32| -> [u32; 4] {
            match (leaf, sub) {
                (0, 0) => [0xd, 0, 0, 0],
                (1, 0) => [0xa00f11, 0x0102_0800, 0x8400_0001, 0x178b_fbff], // hypervisor, XSAVE, SSE3
                (7, 0) => [0, 0x219c_07ab, 0x0040_0684, 0x10],
                (0xd, 0) => [7, 0x340, 0x340, 0],
                (0xd, 2) => [0x100, 0x240, 0, 0],
                (0x8000_0000, 0) => [0x8000_0001, 0, 0, 0],
                (0x8000_0001, 0) => [0, 0, 0x21, 0x0c00_0000],
                _ => [0; 4],
            }
        };
        match_host(&mut c, &host).expect("fits");
        let get = |l: u32, s: u32| c.as_slice().iter().find(|e| e.function == l && e.index == s).copied();
        let l1 = get(1, 0).expect("leaf 1");
        assert_eq!(l1.ebx, 0x0302_0800, "the vCPU's APIC id, the host's other fields");
        assert_eq!(l1.ecx, 0x8400_0001 | OSXSAVE, "hypervisor bit as natively, OSXSAVE with XSAVE");
        let l7 = get(7, 0).expect("leaf 7");
        assert_eq!((l7.ebx, l7.ecx & !PKU_OSPKE, l7.ecx & PKU_OSPKE), (0x219c_07ab, 0x0040_0684, PKU_OSPKE));
        assert_eq!(get(0xd, 2).expect("AVX state").flags, SIGNIFICANT_INDEX, "added as a subleaf");
        assert!(get(0xd, 3).is_none(), "components the host lacks stay out");
        assert_eq!(get(0x8000_0001, 0).expect("added").edx, 0x0c00_0000);
        let f = CpuFeatures::from_cpuid(&c);
        assert!(f.xsave() && f.cr4() & CR4_OSXSAVE != 0);
        // Without XSAVE on the host, nothing that needs it is shown.
        let mut c = CpuId::from_entries(&[entry(1, 0, 0, 0)]).expect("table");
        match_host(&mut c, &|l, _| {
            if l == 1 {
                [0, 0, (XSAVE_DEPENDENT & !(1 << 26)) | 1, 0]
            } else {
                [0; 4]
            }
        })
        .expect("fits");
        assert_eq!(c.as_slice()[0].ecx, 1);
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
