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

/// Every page the page tables let ring 3 reach, as (domain GPA, bytes):
/// a walk of the whole tree from `cr3`, a leaf counting as user-accessible
/// only if every level has U/S set (the CPU's rule).
fn user_reachable(g: &cabin_kvm::domain::Guest) -> Vec<(u64, u64)> {
    user_leaves(g, g.cr3 & cabin_kvm::paging::PTE_ADDR, &|a| Some(a))
        .into_iter()
        .map(|(a, l, _)| (a, l))
        .collect()
}

/// Every user-accessible leaf of the tables rooted at domain address
/// `root`, as (domain GPA, bytes, entry), entry addresses mapped back to
/// domain addresses by `to_domain` (the relocation's inverse, or identity).
fn user_leaves(
    g: &cabin_kvm::domain::Guest,
    root: u64,
    to_domain: &dyn Fn(u64) -> Option<u64>,
) -> Vec<(u64, u64, u64)> {
    use cabin_kvm::paging::{PTE_ADDR, PTE_P, PTE_PS, PTE_U};
    fn walk(
        g: &cabin_kvm::domain::Guest,
        table: u64,
        level: u32,
        to_domain: &dyn Fn(u64) -> Option<u64>,
        out: &mut Vec<(u64, u64, u64)>,
    ) {
        for i in 0..512 {
            let e = g.phys.read_u64(table + i * 8).expect("entry");
            if e & PTE_P == 0 || e & PTE_U == 0 {
                continue;
            }
            let addr = to_domain(e & PTE_ADDR).expect("an entry outside the domain");
            if level == 1 || e & PTE_PS != 0 {
                out.push((addr, 1 << (12 + 9 * (level - 1)), e));
            } else {
                walk(g, addr, level - 1, to_domain, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(g, root, 4, to_domain, &mut out);
    out
}

#[test]
fn the_vc_calling_areas_are_not_reachable_from_ring_3() {
    // A #VC request is trusted by VMPL0 as far as its checks go; ring 3 must
    // not be able to write (or read) one: the calling areas (and the #VC
    // stacks below them) are mapped supervisor-only, and the RMP gives
    // VMPL1 no execute on them.
    let Some((_, snp)) = built() else { return };
    let g = &snp.guest;
    let user = user_reachable(g);
    assert!(!user.is_empty(), "the program has user pages");
    let vc_end =
        cabin_kvm::layout::VC_GPA + cabin_kvm::layout::MAX_VCPUS as u64 * cabin_kvm::layout::VC_STRIDE;
    for &(pa, len) in &user {
        assert!(
            pa + len <= cabin_kvm::layout::VC_GPA || pa >= vc_end,
            "user page {pa:#x}+{len:#x} in the #VC blocks"
        );
    }
    let rmp = rmp_of(&snp);
    let pt = g.pt.lock().expect("pt");
    for k in [0, 1, cabin_kvm::layout::MAX_VCPUS - 1] {
        for gpa in [cabin_kvm::layout::vc_area_gpa(k), cabin_kvm::layout::vc_stack_gpa(k)] {
            let e = pt.entry(&g.phys, cabin_kvm::layout::kernel_va(gpa)).expect("walk").expect("mapped");
            assert_eq!(e & cabin_kvm::paging::PTE_ADDR, gpa);
            assert_eq!(e & cabin_kvm::paging::PTE_U, 0, "{gpa:#x} is user-accessible");
            assert_ne!(e & cabin_kvm::paging::PTE_NX, 0, "{gpa:#x} is executable");
            assert!(rmp.allows(DOMAIN_VMPL, gpa, Access::Write));
            assert!(!rmp.allows(DOMAIN_VMPL, gpa, Access::Execute { cpl: 0 }));
            assert!(!rmp.allows(DOMAIN_VMPL, gpa, Access::Execute { cpl: 3 }));
        }
        // The #VC stack's top is the calling area (the handler finds it there),
        // and the guard page below the stack is not mapped.
        assert_eq!(
            cabin_kvm::layout::vc_stack_top(k),
            cabin_kvm::layout::kernel_va(cabin_kvm::layout::vc_area_gpa(k))
        );
        let guard = cabin_kvm::layout::vc_stack_gpa(k) - PAGE;
        assert_eq!(pt.entry(&g.phys, cabin_kvm::layout::kernel_va(guard)).expect("walk"), None);
    }
}

/// A service that records what the run loop asked of it.
#[derive(Default)]
struct Recorder {
    doorbells: Vec<bool>,
    calls: Vec<(u64, [u64; 6], bool)>,
}

impl cabin_kvm::SyscallService for Recorder {
    fn serve(&mut self, nr: u64, args: [u64; 6], mem: &cabin_kvm::ProgramMemory<'_>) -> cabin_kvm::Served {
        self.calls.push((nr, args, mem.can_redirect));
        if nr == 231 {
            cabin_kvm::Served::Exit(args[0] as i32)
        } else {
            cabin_kvm::Served::Return(1234)
        }
    }

    fn doorbell(&mut self, wait: bool) -> cabin_kvm::Served {
        self.doorbells.push(wait);
        cabin_kvm::Served::Return(0)
    }
}

fn vc_request(f: cabin_proxy_kernel::trap::TrapFrame) -> cabin_snp::vc::Request {
    use cabin_proxy_kernel::vc::{ghcb, write_request, Ghcb};
    let mut page = [0u8; ghcb::SIZE];
    write_request(&mut Ghcb::new(&mut page), &f);
    cabin_snp::vc::read_request(&page).expect("request")
}

#[test]
fn vmpl0_serves_the_vc_requests_as_the_kvm_backend_serves_its_exits() {
    use cabin_kvm::LoopEnd;
    use cabin_proxy_kernel::trap::TrapFrame;
    use cabin_proxy_kernel::vc::{exit, ghcb};
    use cabin_snp::vc::{decide, serve, Context, Step};
    let Some((_, snp)) = built() else { return };
    let g = &snp.guest;
    let user_rip = g.entry;
    let pk_rip = g.kernel_text.0 + 0x200;
    let run = |f: TrapFrame, code: &'static [u8], svc: &mut Recorder| {
        let read = move |_: u64, buf: &mut [u8]| {
            buf[..code.len()].copy_from_slice(code);
            code.len()
        };
        let cx = Context { read_code: &read, cpuid: None, xcr0: 3, osxsave: true };
        let req = vc_request(f);
        serve(&req, decide(&req, &cx), g, svc, &|| 0x5_0000_0001)
    };
    let user = |rax: u64| TrapFrame {
        error: exit::IOIO,
        cs: 0x33,
        rip: user_rip,
        rax,
        rdi: 42,
        ..TrapFrame::default()
    };
    let mut svc = Recorder::default();
    // The ring doorbell: `out 0xe0, al` from ring 3, wait and wake.
    let Step::Resume(set) = run(user(2), &[0xe6, 0xe0], &mut svc) else { panic!("doorbell wait") };
    assert_eq!(set, vec![(ghcb::RIP, user_rip + 2)], "only rip changes");
    let Step::Resume(_) = run(user(1), &[0xe6, 0xe0], &mut svc) else { panic!("doorbell wake") };
    assert_eq!(svc.doorbells, vec![true, false]);
    // DOORBELL_EXIT: the worker is woken, the thread ends with rdi's low byte.
    let s = run(user(5), &[0xe6, 0xe0], &mut svc);
    assert!(matches!(s, Step::End(LoopEnd::ThreadExit(42))), "{s:?}");
    // DOORBELL_PROTECT with a bad range (rdi = 42): -EINVAL, no flush, the
    // program goes on (valid ones: the relocated-editor test below).
    let Step::Resume(set) = run(user(3), &[0xe6, 0xe0], &mut svc) else { panic!("protect") };
    assert_eq!(set, vec![(ghcb::RAX, (-22i64) as u64), (ghcb::SW_EXIT_INFO_2, 0), (ghcb::RIP, user_rip + 2)]);
    // A malformed doorbell value, `in` from the doorbell, the kernel's
    // ports from ring 3: the program ends, as on KVM.
    for (f, code) in [
        (user(9), &[0xe6u8, 0xe0][..]),
        (user(2), &[0xe4, 0xe0]),
        (TrapFrame { rdx: 0xe1, ..user(39) }, &[0xee]),
        (TrapFrame { error: exit::VMMCALL, ..user(0) }, &[0x0f, 0x01, 0xd9]),
    ] {
        let code: &'static [u8] = Box::leak(code.to_vec().into_boxed_slice());
        let s = run(f, code, &mut svc);
        assert!(matches!(&s, Step::End(LoopEnd::Violation(m)) if !m.contains('\n')), "{f:?}: {s:?}");
    }
    // The slow-path gate from the proxy-kernel (`out 0xe1, al` in its text).
    let gate = TrapFrame {
        error: exit::IOIO,
        cs: 0x10,
        rip: pk_rip,
        rax: 39,
        rdi: 1,
        rsi: 2,
        rdx: 3,
        r10: 4,
        r8: 5,
        r9: 6,
        ..TrapFrame::default()
    };
    let Step::Resume(set) = run(gate, &[0xe6, 0xe1], &mut svc) else { panic!("gate") };
    assert_eq!(set, vec![(ghcb::RAX, 1234), (ghcb::RIP, pk_rip + 2)]);
    assert_eq!(svc.calls, vec![(39, [1, 2, 3, 4, 5, 6], true)]);
    // exit_group through the gate ends the program.
    let s = run(TrapFrame { rax: 231, rdi: 7, ..gate }, &[0xe6, 0xe1], &mut svc);
    assert!(matches!(s, Step::End(LoopEnd::Exited(7))), "{s:?}");
    // The proxy-kernel's fault report: a ring-3 page fault ends it with SIGSEGV.
    let fault = TrapFrame { rdi: 14, rsi: 4, rdx: user_rip, rcx: 0x10, r8: 0x33, r11: 0, ..gate };
    let s = run(fault, &[0xe6, 0xe2], &mut svc);
    assert!(matches!(&s, Step::End(LoopEnd::Fault { status: 139, .. })), "{s:?}");
    // The proxy-kernel halting, or faulting itself: a Cabin bug, not an end.
    assert!(matches!(run(TrapFrame { error: exit::HLT, ..gate }, &[0xf4], &mut svc), Step::Bug(_)));
    let kfault = TrapFrame { r8: 0x10, ..fault };
    assert!(matches!(run(kfault, &[0xe6, 0xe2], &mut svc), Step::Bug(_)));
    // rdtsc from ring 3: the TSC in edx:eax.
    let Step::Resume(set) = run(TrapFrame { error: exit::RDTSC, ..user(0) }, &[0x0f, 0x31], &mut svc) else {
        panic!("rdtsc")
    };
    assert_eq!(set, vec![(ghcb::RAX, 1), (ghcb::RDX, 5), (ghcb::RIP, user_rip + 2)]);
}

#[test]
fn vmpl0_reads_instructions_where_vmpl1_cannot() {
    // The program's code is execute-only at VMPL1 (the proxy-kernel cannot
    // read it); VMPL0 reads it to decode a #VC, and the proxy-kernel's text.
    let Some((_, snp)) = built() else { return };
    let g = &snp.guest;
    let mut buf = [0u8; 15];
    assert_eq!(cabin_snp::vc::read_code(g, g.entry, &mut buf), 15);
    assert_eq!(buf.to_vec(), g.view.peek(g.entry, 15).expect("the monitor's view"));
    assert!(g.view.read_into(g.entry, &mut [0u8; 15]).is_err(), "code is not a system call's buffer");
    assert_eq!(cabin_snp::vc::read_code(g, g.kernel_text.0, &mut buf), 15);
    assert_eq!(&buf[..8], b"CABINPK\0");
    assert_eq!(cabin_snp::vc::read_code(g, 0, &mut buf), 0, "nothing mapped at 0");
    assert_eq!(cabin_snp::vc::read_code(g, u64::MAX - 3, &mut buf), 0, "no wrap-around");
}

#[test]
fn mprotect_and_commits_edit_the_relocated_tables_and_never_make_data_executable() {
    use cabin_kvm::layout::{ARENA_VA, RESERVE_VA};
    use cabin_kvm::paging::{PTE_NX, PTE_P, PTE_SOFT_NONE, PTE_W};
    let Some((_, snp)) = built() else { return };
    let g = &snp.guest;
    // Relocate as the backend does: chunks in reverse order, far up, C-bit 51.
    let n = MEM / LARGE_PAGE;
    let chunks: Vec<u64> = (0..n).map(|i| 0x80_0000_0000 + (n - 1 - i) * LARGE_PAGE).collect();
    let r = Relocation::new(chunks, MEM, 51).expect("relocation");
    let root = g.cr3 & cabin_kvm::paging::PTE_ADDR;
    relocate_page_tables(&g.phys, g.cr3, &r).expect("relocate");
    g.pt.lock().expect("pt").relocated(std::sync::Arc::new(r.clone()));
    let leaf = |va: u64| {
        let pt = g.pt.lock().expect("pt");
        pt.entry(&g.phys, va).expect("walk through the relocation")
    };
    let domain_of = |e: u64| r.domain(e & cabin_kvm::paging::PTE_ADDR).expect("relocated entry");
    // mprotect(PROT_READ) of 3 pages inside the arena's first 2 MiB page:
    // it is split, the three lose W, the neighbours keep it, every address
    // stays where it was (relocated, with the C-bit).
    let a = ARENA_VA + 0x1000;
    assert_eq!(cabin_kvm::protect(g, a, 0x3000, 1), 0);
    for (va, writable) in [(ARENA_VA, true), (a, false), (a + 0x2000, false), (a + 0x3000, true)] {
        let e = leaf(va).expect("mapped");
        assert_eq!(e & PTE_W != 0, writable, "{va:#x}");
        assert_ne!(e & PTE_NX, 0, "{va:#x} executable");
        assert_ne!(e & r.c_bit(), 0, "{va:#x} lost the C-bit");
        assert_eq!(domain_of(e), g.arena_gpa + (va - ARENA_VA), "{va:#x} moved");
    }
    // PROT_NONE, then back to read-write.
    assert_eq!(cabin_kvm::protect(g, a, 0x1000, 0), 0);
    let e = leaf(a).expect("entry");
    assert_eq!((e & PTE_P, e & PTE_SOFT_NONE), (0, PTE_SOFT_NONE));
    assert_eq!(cabin_kvm::protect(g, a, 0x1000, 3), 0);
    assert_ne!(leaf(a).expect("entry") & PTE_W, 0);
    // PROT_EXEC, code, or anything outside the protectable ranges: refused.
    assert_eq!(cabin_kvm::protect(g, a, 0x1000, 4), -13);
    assert_eq!(cabin_kvm::protect(g, g.entry & !(PAGE - 1), PAGE, 3), -13);
    assert_eq!(cabin_kvm::protect(g, g.kernel_text.0, PAGE, 3), -13);
    // A commit maps arena pages into the reservation space through the
    // relocation; a release removes them.
    let (res, _) = cabin_kvm::commit(g, RESERVE_VA, 0x2000, 3, ARENA_VA + 0x10_0000);
    assert_eq!(res, 0);
    let e = leaf(RESERVE_VA + 0x1000).expect("committed");
    assert_eq!(domain_of(e), g.arena_gpa + 0x10_1000);
    assert_ne!(e & PTE_NX, 0);
    assert_eq!(cabin_kvm::commit(g, RESERVE_VA, 0x1000, 0, 0), (0, true));
    assert_eq!(leaf(RESERVE_VA), None);
    // Whatever the program asked: no user page is both writable and
    // executable at VMPL1 (page tables and RMP together), and only program
    // code is executable at all.
    let rmp = rmp_of(&snp);
    let leaves = user_leaves(g, root, &|a| r.domain(a));
    assert!(leaves.len() > 10);
    for (gpa, len, e) in leaves {
        for p in (gpa..gpa + len).step_by(PAGE as usize) {
            let w = e & PTE_W != 0 && rmp.allows(DOMAIN_VMPL, p, Access::Write);
            let x = e & PTE_NX == 0 && rmp.allows(DOMAIN_VMPL, p, Access::Execute { cpl: 3 });
            assert!(!(w && x), "{p:#x} writable and executable");
            if x {
                let role = g.placed.iter().find(|q| (q.gpa..q.gpa + q.len).contains(&p)).map(|q| q.role);
                assert_eq!(role, Some(Role::ImageCode), "{p:#x} executable but not code");
            }
        }
    }
}
