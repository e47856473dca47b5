//! The SNP domain of a real image (compiled C, rewritten by `cabinc`'s
//! rewriter), built by the KVM backend's builder: its launch digest, VMPL1's
//! permission plan checked page by page through the RMP model, the
//! relocation to the module's pages, and the VMPL1 VMSA. No SEV-SNP
//! hardware needed.

use cabin_image::image::Image;
use cabin_image::measure::VmplPerms;
use cabin_kvm::domain::{ProgramSpec, Role};
use cabin_kvm::layout::{PT_END, PT_GPA};
use cabin_kvm::vcpu::{cpu_state, CpuFeatures, VcpuStart};
use cabin_snp::domain::{build, relocate_page_tables, Relocation, SnpGuest};
use cabin_snp::plan::adjusts;
use cabin_snp::rmp::{Access, PageSize, Rmp, RmpAdjust, DOMAIN_VMPL, LARGE_PAGE, PAGE};
use cabin_snp::vmsa::{off, VmsaFields};

const MEM: u64 = 64 << 20;

fn program() -> ProgramSpec {
    ProgramSpec {
        args: vec![b"files".to_vec()],
        env: vec![b"A=1".to_vec()],
        pid: 7,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        force_trap: false,
        read_ahead: false,
        memory_limit: true,
    }
}

fn features() -> CpuFeatures {
    // This machine's CPUID.7.0 (AMD EPYC): SMEP, SMAP, FSGSBASE, UMIP.
    CpuFeatures {
        leaf1_edx: 0x178b_fbff,
        leaf1_ecx: 1 << 26,
        leaf7_ebx: 0x219c_03ab,
        leaf7_ecx: 0x604,
        xcr0_supported: 0x7,
    }
}

/// A real image: monitor/tests/programs/files.c, static, rewritten.
fn image(dir: &std::path::Path) -> Option<Vec<u8>> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../monitor/tests/programs/files.c");
    let exe = dir.join("files");
    cabin_tests::compile_static_c("gcc", "gcc", &src, &exe)?;
    let input = std::fs::read(&exe).expect("read compiled program");
    let opts = cabin_rewriter::pipeline::BuildOptions::default();
    Some(cabin_rewriter::pipeline::build_image(&input, &opts, &mut |_| {}).expect("build image").image)
}

fn built() -> Option<(Vec<u8>, SnpGuest)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(dir.path())?;
    let snp = build(&img, MEM, &program(), [7; 16], &features()).expect("build the SNP domain");
    Some((img, snp))
}

#[test]
fn launch_digest_of_the_built_domain_is_cabinc_measure() {
    let Some((img, snp)) = built() else { return };
    let parsed = Image::parse(&img).expect("image");
    let digest = cabin_snp::launch::digest(&snp.guest.phys, &snp.launch).expect("digest");
    assert_eq!(digest, parsed.measurement, "the digest recorded by cabinc build");
    assert_eq!(digest, parsed.compute_measurement().expect("measure"), "what cabinc measure prints");
    // A byte of the domain's image pages changes it: the digest reads the
    // builder's memory, not the file.
    let first = snp.launch.iter().find(|p| p.page_type.has_contents()).expect("a page with contents");
    let b = snp.guest.phys.read_u64(first.gpa).expect("read");
    snp.guest.phys.write_u64(first.gpa, b ^ 1).expect("write");
    assert_ne!(cabin_snp::launch::digest(&snp.guest.phys, &snp.launch).expect("digest"), digest);
}

/// The plan applied to the RMP model through the encoded RMPADJUST operands.
fn rmp_of(snp: &SnpGuest) -> Rmp {
    let mut rmp = Rmp::new(MEM + LARGE_PAGE);
    for a in adjusts(&snp.grants) {
        rmp.rmpadjust(0, a.encode().expect("encode")).expect("VMPL0 grants");
    }
    rmp
}

#[test]
fn vmpl1_permissions_hold_their_invariants_on_every_page() {
    let Some((img, snp)) = built() else { return };
    let xo =
        Image::parse(&img).expect("image").elf.exec_segments().all(|s| s.flags == cabin_image::elf::PF_X);
    assert!(xo, "cabinc build makes code segments execute-only");
    let rmp = rmp_of(&snp);
    let role_of =
        |gpa: u64| snp.guest.placed.iter().find(|p| (p.gpa..p.gpa + p.len).contains(&gpa)).map(|p| p.role);
    let manifest =
        |gpa: u64| snp.launch.iter().any(|p| p.gpa == gpa && gpa < cabin_abi::layout::IMAGE_GPA_BASE);
    let (mut code, mut untouched) = (0, 0);
    for gpa in (0..MEM + LARGE_PAGE).step_by(PAGE as usize) {
        let r = rmp.allows(DOMAIN_VMPL, gpa, Access::Read);
        let w = rmp.allows(DOMAIN_VMPL, gpa, Access::Write);
        let xu = rmp.allows(DOMAIN_VMPL, gpa, Access::Execute { cpl: 3 });
        let xs = rmp.allows(DOMAIN_VMPL, gpa, Access::Execute { cpl: 0 });
        assert!(!(w && (xu || xs)), "{gpa:#x} writable and executable at VMPL1");
        assert!(!(xu && xs), "{gpa:#x} executable in both rings");
        match role_of(gpa) {
            Some(Role::ImageCode) => {
                code += 1;
                assert!(xu && !r && !w && !xs, "program code {gpa:#x} must be execute-user only");
            }
            Some(Role::PageTables) => {
                assert!(r && !w && !xu && !xs, "page table {gpa:#x} writable or executable")
            }
            Some(Role::Gdt | Role::Idt | Role::Tss) => {
                assert!(r && !w && !xu && !xs, "descriptor table {gpa:#x}")
            }
            Some(Role::ProxyKernel) => assert!(r && xs && !w && !xu, "proxy-kernel {gpa:#x}"),
            Some(Role::ImageRodata) => assert!(r && !w && !xu && !xs, "rodata {gpa:#x}"),
            Some(
                Role::ImageData
                | Role::UserData
                | Role::BootPage
                | Role::Ring
                | Role::KernelStack
                | Role::VcArea,
            ) => {
                assert!(r && w && !xu && !xs, "data {gpa:#x}")
            }
            None if manifest(gpa) => assert!(r && !w && !xu && !xs, "manifest {gpa:#x}"),
            None => {
                untouched += 1;
                let e = rmp.entry(gpa).expect("entry");
                assert_eq!(e.perms, [VmplPerms::NONE; 3], "VMPL0-only page {gpa:#x} was touched");
            }
        }
        // Only the proxy-kernel runs in ring 0.
        if xs {
            assert_eq!(role_of(gpa), Some(Role::ProxyKernel));
        }
    }
    assert!(code > 0 && untouched > 0, "{code} code pages, {untouched} VMPL0-only pages");
    // Page 0 and the memory past the domain stay VMPL0's.
    assert!(!rmp.allows(DOMAIN_VMPL, 0, Access::Read));
    assert!(!rmp.allows(DOMAIN_VMPL, MEM, Access::Read));
}

#[test]
fn the_plan_grants_the_measured_permissions() {
    let Some((_, snp)) = built() else { return };
    let rmp = rmp_of(&snp);
    for p in &snp.launch {
        assert_eq!(rmp.entry(p.gpa).expect("entry").perms[0], p.vmpl1, "page {:#x}", p.gpa);
    }
    // 2 MiB adjusts where possible (the arena), 4 KiB elsewhere.
    let a = adjusts(&snp.grants);
    assert!(a.iter().any(|a| a.size == PageSize::Large));
    assert!(a.iter().all(|a| a.target_vmpl == 1 && !a.vmsa));
}

/// Attack: code at VMPL1 (the proxy-kernel's ring 0, reached by jumping
/// anywhere into it with chosen registers) runs RMPADJUST with any operands
/// on any page. It can never gain a permission, nor reach VMPL0's pages, nor
/// make a VMSA.
#[test]
fn vmpl1_cannot_raise_its_own_permissions() {
    let Some((_, snp)) = built() else { return };
    let mut rmp = rmp_of(&snp);
    let before = rmp.clone();
    let code = snp.guest.placed.iter().find(|p| p.role == Role::ImageCode).expect("code").gpa;
    let targets = [code, PT_GPA, PT_END - PAGE, 0, 0x1000, cabin_kvm::layout::PK_GPA, MEM - PAGE];
    for &gpa in &targets {
        for vmpl in 0..=4u8 {
            for perms in 0..=0x1fu8 {
                for vmsa in [false, true] {
                    for size in [PageSize::Small, PageSize::Large] {
                        let rdx = u64::from(vmpl) | (u64::from(perms) << 8) | if vmsa { 1 << 16 } else { 0 };
                        let op = cabin_snp::rmp::Operands {
                            rax: gpa & !(size.bytes() - 1),
                            rcx: size as u64,
                            rdx,
                        };
                        let _ = rmp.rmpadjust(DOMAIN_VMPL, op);
                    }
                }
            }
        }
    }
    for gpa in (0..MEM).step_by(PAGE as usize) {
        let (a, b) = (before.entry(gpa).expect("entry"), rmp.entry(gpa).expect("entry"));
        assert_eq!(a.perms[0], b.perms[0], "VMPL1's own permissions changed at {gpa:#x}");
        assert!(!b.vmsa, "VMPL1 made a VMSA at {gpa:#x}");
        // Whatever it handed to VMPL2/3 is a subset of its own.
        for lower in &b.perms[1..] {
            assert_eq!(lower.0 & !b.perms[0].0, 0, "VMPL1 granted more than it has at {gpa:#x}");
        }
    }
    // A hostile VMSA bit or a target of its own VMPL is refused outright.
    let own =
        RmpAdjust { gpa: code, size: PageSize::Small, target_vmpl: 1, perms: VmplPerms(0xf), vmsa: false };
    assert!(rmp.rmpadjust(DOMAIN_VMPL, own.encode().expect("encode")).is_err());
}

#[test]
fn relocation_moves_every_translation_to_the_modules_pages() {
    let Some((_, snp)) = built() else { return };
    let g = &snp.guest;
    // Chunks in reverse order, far up, C-bit 51: every address changes.
    let n = MEM / LARGE_PAGE;
    let chunks: Vec<u64> = (0..n).map(|i| 0x80_0000_0000 + (n - 1 - i) * LARGE_PAGE).collect();
    let r = Relocation::new(chunks.clone(), MEM, 51).expect("relocation");
    let vas =
        [g.entry, g.rsp, cabin_kvm::layout::BOOT_VA, cabin_kvm::layout::RING_VA, g.lstar, g.kernel_text.0];
    let pt = g.pt.lock().expect("pt");
    // `lookup` answers the leaf entry and whether it maps 2 MiB.
    let before: Vec<u64> = vas
        .iter()
        .map(|&va| {
            let (e, large) = pt.lookup(&g.phys, va).expect("walk").expect("mapped");
            let page = if large { LARGE_PAGE } else { PAGE };
            (e & cabin_kvm::paging::PTE_ADDR & !(page - 1)) + (va & (page - 1))
        })
        .collect();
    drop(pt);
    let cr3 = relocate_page_tables(&g.phys, g.cr3, &r).expect("relocate");
    assert_eq!(cr3, r.gpa(g.cr3).expect("cr3"));
    // Walk the relocated tables by hand: each table lives at the domain
    // address the relocation maps to the entry's address.
    let unreloc = |a: u64| {
        let a = a & !r.c_bit();
        let i =
            chunks.iter().position(|&c| c == a & !(LARGE_PAGE - 1)).expect("relocated into a chunk") as u64;
        i * LARGE_PAGE + a % LARGE_PAGE
    };
    for (va, want) in vas.iter().zip(before) {
        let mut table = unreloc(cr3);
        let mut level = 4;
        let pa = loop {
            let idx = (va >> (12 + 9 * (level - 1))) & 0x1ff;
            let e = g.phys.read_u64(table + idx * 8).expect("entry");
            assert!(e & cabin_kvm::paging::PTE_P != 0);
            assert!(e & r.c_bit() != 0, "entry without the C-bit");
            let addr = e & cabin_kvm::paging::PTE_ADDR & !r.c_bit();
            if level == 1 || (level == 2 && e & cabin_kvm::paging::PTE_PS != 0) {
                let page = if level == 1 { PAGE } else { LARGE_PAGE };
                break addr + (va & (page - 1));
            }
            table = unreloc(addr | r.c_bit());
            level -= 1;
        };
        assert_eq!(unreloc(pa | r.c_bit()), want, "va {va:#x}");
    }
    // A second relocation over relocated tables is refused (entries now
    // point outside the domain).
    assert!(relocate_page_tables(&g.phys, cr3 & !r.c_bit(), &r).is_err());
    // Bad module answers are refused.
    assert!(Relocation::new(chunks[1..].to_vec(), MEM, 51).is_err());
    assert!(Relocation::new(vec![0x1000; n as usize], MEM, 51).is_err());
    assert!(Relocation::new(chunks.clone(), MEM, 52).is_err());
    assert!(Relocation::new(chunks, MEM, 39).is_err(), "a chunk above the C-bit");
}

#[test]
fn vmsa_starts_the_same_cpu_as_the_kvm_backend() {
    let Some((_, snp)) = built() else { return };
    let g = &snp.guest;
    let start = VcpuStart { rip: g.entry, rsp: g.rsp, ..VcpuStart::default() };
    let kvm = cpu_state(&features(), g, 0, &start).expect("state");
    assert_eq!(snp.cpu, kvm, "one vCPU state for both backends");
    let page = snp.vmsa(0xabc_d000 | 1 << 51, 0).to_page();
    let u64_at = |o: usize| u64::from_le_bytes(page[o..o + 8].try_into().expect("8 bytes"));
    assert_eq!(page[off::VMPL], 1);
    assert_eq!(page[off::CPL], 3);
    assert_eq!(u64_at(off::RIP), g.entry);
    assert_eq!(u64_at(off::RSP), g.rsp);
    assert_eq!(u64_at(off::CR3), 0xabc_d000 | 1 << 51);
    assert_eq!(u64_at(off::CR0), kvm.cr0);
    assert_eq!(u64_at(off::CR4), kvm.cr4);
    assert_eq!(u64_at(off::EFER), kvm.efer);
    assert_eq!(u64_at(off::LSTAR), g.lstar);
    assert_eq!(u64_at(off::CSTAR), g.cstar);
    assert_eq!(u64_at(off::SYSENTER_EIP), g.sysenter_eip);
    assert_eq!(u64_at(off::SEV_FEATURES) & 1, 1, "SNP active");
    assert_eq!(u64_at(off::XCR0), kvm.xcr0.unwrap_or(1));
    // CS: user 64-bit code selector, attributes 0xafb.
    assert_eq!(u16::from_le_bytes([page[off::CS], page[off::CS + 1]]), kvm.cs.selector);
    assert_eq!(u16::from_le_bytes([page[off::CS + 2], page[off::CS + 3]]), 0xafb);
    assert_eq!(VmsaFields::from_cpu(&kvm, 1, 0).to_page(), snp.vmsa(kvm.cr3, 0).to_page());
}
