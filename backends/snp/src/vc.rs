//! VMPL0's side of the `#VC` protocol (`cabin_proxy_kernel::vc`): what the
//! monitor does when VMPL1 hands it the vCPU with a request in the calling
//! area. Pure (guest memory through closures and a copied page), so the
//! decisions are tested on any host; `backend.rs` applies them.
//!
//! Every request is copied once out of the calling area and validated
//! ([`read_request`]); the instruction at `rip` is read once (at most 15
//! bytes) and decoded here, at VMPL0, which may read the program's
//! execute-only code. A port instruction becomes exactly the I/O exit the
//! KVM backend decodes (`cabin_kvm::exit::decode_out` / `decode_in`), so the
//! doorbell, the slow-path gate and the fault report are served by the same
//! rules on both backends; `cpuid` is answered from the SNP CPUID table
//! with the domain's XCR0; `rdtsc`/`rdtscp` with VMPL0's TSC (the same
//! vCPU's). Anything else from ring 3 ends the program with a one-line
//! reason; from ring 0 it is a Cabin bug.

use cabin_kvm::domain::Guest;
use cabin_kvm::exit::{decode_in, decode_out, IoAction, Regs};
use cabin_kvm::{LoopEnd, ProgramMemory, Served, SyscallService};
use cabin_proxy_kernel::vc::{
    cpuid as cp, decode_io, decode_len, exit, exit_name, ghcb, write_cpuid_page, CpuidEntry, CpuidTable,
    DecodeError, Ghcb, GhcbView, MAX_INSN, RESPONSE_FLUSH_TLB,
};

/// One request, copied out of the calling area and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The `#VC` error code: the SVM exit code.
    pub exit_code: u64,
    /// The interrupted `cs`.
    pub cs: u64,
    /// `rip` of the instruction that raised the `#VC`.
    pub rip: u64,
    /// The general registers (as the KVM backend's exit decoders take them).
    pub regs: Regs,
    /// `rbx`.
    pub rbx: u64,
    /// The interrupted `rsp`.
    pub rsp: u64,
}

impl Request {
    /// Whether ring 3 raised the `#VC`.
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// Why a calling area holds no usable request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Nothing is marked valid: VMPL1 exited without a request (only the
    /// proxy-kernel writes requests; ring 3 cannot reach the area).
    Empty,
    /// A field the proxy-kernel always writes is missing.
    Missing(usize),
}

/// Reads the request in a copy of the calling area.
pub fn read_request(page: &[u8; ghcb::SIZE]) -> Result<Request, RequestError> {
    let v = GhcbView::new(page);
    if v.is_empty() {
        return Err(RequestError::Empty);
    }
    let get = |off| v.get(off).ok_or(RequestError::Missing(off));
    let regs = Regs {
        rax: get(ghcb::RAX)?,
        rdi: get(ghcb::RDI)?,
        rsi: get(ghcb::RSI)?,
        rdx: get(ghcb::RDX)?,
        rcx: get(ghcb::RCX)?,
        r8: get(ghcb::R8)?,
        r9: get(ghcb::R9)?,
        r10: get(ghcb::R10)?,
        r11: get(ghcb::R11)?,
        rip: get(ghcb::RIP)?,
    };
    Ok(Request {
        exit_code: get(ghcb::SW_EXIT_CODE)?,
        cs: get(ghcb::SW_EXIT_INFO_1)?,
        rip: regs.rip,
        regs,
        rbx: get(ghcb::RBX)?,
        rsp: get(ghcb::RSP)?,
    })
}

/// Writes VMPL0's response into the calling area: the registers that change
/// (`cabin_proxy_kernel::vc::RESPONSE_REGS`), each marked valid, nothing
/// else.
pub fn write_response(page: &mut [u8; ghcb::SIZE], set: &[(usize, u64)]) {
    let mut g = Ghcb::new(page);
    g.begin();
    for &(off, v) in set {
        g.set(off, v);
    }
}

/// What the monitor does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A port instruction: serve it as the KVM backend serves this I/O
    /// exit, then resume at `next_rip` (unless serving ends the program).
    Io {
        /// The port.
        port: u16,
        /// `in` (else `out`).
        is_in: bool,
        /// The bytes written (`out`), `size` of them.
        data: [u8; 4],
        /// Operand size.
        size: u8,
        /// The instruction's end.
        next_rip: u64,
    },
    /// `cpuid`: resume at `next_rip` with `rax`/`rbx`/`rcx`/`rdx` = `out`.
    Cpuid {
        /// eax, ebx, ecx, edx.
        out: [u32; 4],
        /// The instruction's end.
        next_rip: u64,
    },
    /// `rdtsc` (`rdtscp`: also `rcx` = TSC_AUX): resume at `next_rip`.
    Rdtsc {
        /// `rdtscp`.
        aux: bool,
        /// The instruction's end.
        next_rip: u64,
    },
    /// The proxy-kernel halted (`hlt` after a report the monitor did not
    /// resume from): the vCPU is done.
    Halted,
    /// The program broke the rules: it ends with this report.
    Violation(String),
    /// The proxy-kernel did what only a Cabin bug explains.
    Invalid(String),
}

/// What the monitor knows when deciding: how to read the instruction at
/// an address (returns the bytes read), the CPUID table, the domain's XCR0
/// and CR4.OSXSAVE.
pub struct Context<'a> {
    /// Reads up to `buf.len()` bytes of the instruction at `rip` (the
    /// program's view, or the proxy-kernel's text), returning how many.
    pub read_code: &'a dyn Fn(u64, &mut [u8]) -> usize,
    /// The SNP CPUID table (the launch's, copied), if the monitor has one.
    pub cpuid: Option<CpuidTable<'a>>,
    /// The vCPU's XCR0.
    pub xcr0: u64,
    /// The vCPU's CR4.OSXSAVE.
    pub osxsave: bool,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("cpuid", &self.cpuid.is_some())
            .field("xcr0", &self.xcr0)
            .field("osxsave", &self.osxsave)
            .finish_non_exhaustive()
    }
}

fn blame(req: &Request, what: String) -> Decision {
    if req.from_user() {
        Decision::Violation(what)
    } else {
        Decision::Invalid(what)
    }
}

fn decode_error(e: DecodeError) -> &'static str {
    match e {
        DecodeError::Truncated => "an instruction that cannot be read whole",
        DecodeError::Rep => "a rep/lock-prefixed instruction",
        DecodeError::String => "string port I/O (ins/outs)",
        DecodeError::Mismatch => "an instruction that does not match the exit",
    }
}

/// Decides what to do with `req`.
pub fn decide(req: &Request, cx: &Context<'_>) -> Decision {
    let mut code = [0u8; MAX_INSN];
    let n = (cx.read_code)(req.rip, &mut code).min(MAX_INSN);
    let code = &code[..n];
    let name = exit_name(req.exit_code);
    let bad = |e: DecodeError| {
        blame(
            req,
            format!(
                "program killed: #VC for {name} (exit code {:#x}) at rip {:#x}: {}",
                req.exit_code,
                req.rip,
                decode_error(e)
            ),
        )
    };
    let next = |len: u8| req.rip.wrapping_add(u64::from(len));
    match req.exit_code {
        exit::IOIO => match decode_io(code) {
            Ok(io) => {
                let mut data = [0u8; 4];
                if io.out {
                    data.copy_from_slice(&(req.regs.rax as u32).to_le_bytes());
                }
                Decision::Io {
                    port: io.port(req.regs.rdx),
                    is_in: !io.out,
                    data,
                    size: io.size,
                    next_rip: next(io.len),
                }
            }
            Err(e) => bad(e),
        },
        exit::CPUID => match decode_len(exit::CPUID, code) {
            Ok(len) => {
                let (leaf, sub) = (req.regs.rax as u32, req.regs.rcx as u32);
                match cx.cpuid.and_then(|t| t.lookup(leaf, sub, cx.xcr0, 0, cx.osxsave)) {
                    Some(out) => Decision::Cpuid { out, next_rip: next(len) },
                    None => blame(
                        req,
                        format!(
                            "program killed: cpuid leaf {leaf:#x} sub-leaf {sub:#x} cannot be answered from \
                             the SNP CPUID table (rip {:#x})",
                            req.rip
                        ),
                    ),
                }
            }
            Err(e) => bad(e),
        },
        exit::RDTSC | exit::RDTSCP => match decode_len(req.exit_code, code) {
            Ok(len) => Decision::Rdtsc { aux: req.exit_code == exit::RDTSCP, next_rip: next(len) },
            Err(e) => bad(e),
        },
        exit::HLT if !req.from_user() => Decision::Halted,
        c => blame(
            req,
            format!(
                "program killed: #VC for {name} (exit code {c:#x}) at rip {:#x} is not served on SEV-SNP",
                req.rip
            ),
        ),
    }
}

/// The response registers for a served `cpuid`.
pub fn cpuid_response(out: [u32; 4], next_rip: u64) -> [(usize, u64); 5] {
    [
        (ghcb::RAX, u64::from(out[0])),
        (ghcb::RBX, u64::from(out[1])),
        (ghcb::RCX, u64::from(out[2])),
        (ghcb::RDX, u64::from(out[3])),
        (ghcb::RIP, next_rip),
    ]
}

/// The response registers for `rdtsc`/`rdtscp` reading `tsc` (TSC_AUX 0:
/// one vCPU).
pub fn rdtsc_response(tsc: u64, aux: bool, next_rip: u64) -> Vec<(usize, u64)> {
    let mut r = vec![(ghcb::RAX, tsc & 0xffff_ffff), (ghcb::RDX, tsc >> 32), (ghcb::RIP, next_rip)];
    if aux {
        r.push((ghcb::RCX, 0));
    }
    r
}

/// What serving one request comes to.
#[derive(Debug)]
pub enum Step {
    /// Resume VMPL1 with these registers changed.
    Resume(Vec<(usize, u64)>),
    /// The program (its only thread) ends.
    End(LoopEnd),
    /// A Cabin bug (the proxy-kernel misbehaved): the run fails.
    Bug(String),
}

/// Serves `req` as decided, through `service` (the ring gate of the vCPU's
/// thread) exactly as the KVM backend's run loop serves the same I/O exit
/// (`cabin_kvm::exit::decode_out`): the slow-path gate, the fault report,
/// the doorbell and the thread-exit doorbell. `tsc` reads the TSC.
///
/// `DOORBELL_PROTECT`/`DOORBELL_COMMIT` edit the page tables with the KVM
/// backend's own checks (`cabin_kvm::protect`/`commit`) through the
/// relocation the tables carry (`PageTables::relocated`), and ask the
/// proxy-kernel to flush its TLB; the RMP is never touched, so a data page
/// stays non-executable at VMPL1 whatever the tables say. Not served yet on
/// SNP: a program fault always ends the program (no redirect to the
/// libos's signal entry).
pub fn serve(
    req: &Request,
    decision: Decision,
    guest: &Guest,
    service: &mut dyn SyscallService,
    tsc: &dyn Fn() -> u64,
) -> Step {
    let (port, is_in, data, size, next_rip) = match decision {
        Decision::Io { port, is_in, data, size, next_rip } => (port, is_in, data, size, next_rip),
        Decision::Cpuid { out, next_rip } => return Step::Resume(cpuid_response(out, next_rip).to_vec()),
        Decision::Rdtsc { aux, next_rip } => return Step::Resume(rdtsc_response(tsc(), aux, next_rip)),
        Decision::Halted => return Step::Bug("the proxy-kernel halted".into()),
        Decision::Violation(m) => return Step::End(LoopEnd::Violation(m)),
        Decision::Invalid(m) => return Step::Bug(m),
    };
    let regs = &req.regs;
    let action = if is_in {
        decode_in(port, regs, guest.kernel_text)
    } else {
        decode_out(port, &data[..usize::from(size).min(4)], regs, guest.kernel_text)
    };
    let resume = |set: &[(usize, u64)]| {
        let mut v = set.to_vec();
        v.push((ghcb::RIP, next_rip));
        Step::Resume(v)
    };
    match action {
        IoAction::Syscall { nr, args } => {
            // The `syscall` entry stub cannot redirect (as on KVM).
            let can_redirect = !(guest.lstar..guest.lstar + 16).contains(&regs.rip);
            let pm = ProgramMemory { mem: &guest.view, can_redirect };
            match service.serve(nr, args, &pm) {
                Served::Return(v) => resume(&[(ghcb::RAX, v as u64)]),
                Served::Redirect(t) if can_redirect => resume(&[(ghcb::RCX, t)]),
                Served::Redirect(_) => {
                    Step::End(LoopEnd::Violation("redirect of a non-redirectable call".into()))
                }
                Served::Exit(c) => Step::End(LoopEnd::Exited(c)),
                Served::ThreadExit(c) => Step::End(LoopEnd::ThreadExit(c)),
                Served::Violation(m) => Step::End(LoopEnd::Violation(m)),
            }
        }
        IoAction::Fault(f) => {
            if f.in_kernel() {
                return Step::Bug(f.message(None));
            }
            let status = 128 + f.signal() as i32;
            Step::End(LoopEnd::Fault { status, fault: f, report: f.message(None), code: None })
        }
        IoAction::Doorbell { wait } => match service.doorbell(wait) {
            Served::Violation(m) => Step::End(LoopEnd::Violation(m)),
            Served::Exit(c) => Step::End(LoopEnd::Exited(c)),
            Served::ThreadExit(c) => Step::End(LoopEnd::ThreadExit(c)),
            Served::Return(_) | Served::Redirect(_) => resume(&[]),
        },
        IoAction::Futex { args } => {
            // The futex doorbell (docs/kvm.md "Futex doorbell"): served on
            // this thread as on KVM; one vCPU, so nothing kicks it but the
            // program's end (its wait then ends with the run).
            let pm = ProgramMemory { mem: &guest.view, can_redirect: false };
            match service.futex(args, &pm, &|| false) {
                Served::Return(v) => resume(&[(ghcb::RAX, v as u64)]),
                Served::Exit(c) => Step::End(LoopEnd::Exited(c)),
                Served::ThreadExit(c) => Step::End(LoopEnd::ThreadExit(c)),
                Served::Violation(m) => Step::End(LoopEnd::Violation(m)),
                Served::Redirect(_) => Step::End(LoopEnd::Violation("redirect of a futex doorbell".into())),
            }
        }
        IoAction::ThreadExit { code } => match service.doorbell(false) {
            Served::Violation(m) => Step::End(LoopEnd::Violation(m)),
            Served::Exit(c) => Step::End(LoopEnd::Exited(c)),
            _ => Step::End(LoopEnd::ThreadExit(code)),
        },
        IoAction::Protect { addr, len, prot } => {
            let r = cabin_kvm::protect(guest, addr, len, prot);
            resume(&[
                (ghcb::RAX, r as u64),
                (ghcb::SW_EXIT_INFO_2, if r == 0 { RESPONSE_FLUSH_TLB } else { 0 }),
            ])
        }
        IoAction::Commit { addr, len, prot, target } => {
            let (r, flush) = cabin_kvm::commit(guest, addr, len, prot, target);
            resume(&[
                (ghcb::RAX, r as u64),
                (ghcb::SW_EXIT_INFO_2, if flush { RESPONSE_FLUSH_TLB } else { 0 }),
            ])
        }
        IoAction::Violation(why) => {
            Step::End(LoopEnd::Violation(format!("{why} (port {port:#x}, rip {:#x})", regs.rip)))
        }
        IoAction::Invalid(why) => Step::Bug(format!("{why} (port {port:#x}, rip {:#x})", regs.rip)),
    }
}

/// Reads up to `buf.len()` bytes of the instruction at `rip` in `guest`:
/// from the proxy-kernel's text (at its guest-physical copy) or the
/// program's memory (the monitor's view, which reads execute-only code
/// too), stopping at the first byte that is not there. Returns how many.
pub fn read_code(guest: &Guest, rip: u64, buf: &mut [u8]) -> usize {
    let (ks, ke) = guest.kernel_text;
    for (i, b) in buf.iter_mut().enumerate() {
        let Some(at) = rip.checked_add(i as u64) else { return i };
        let mut one = [0u8; 1];
        let ok = if (ks..ke).contains(&at) {
            guest.phys.read(cabin_kvm::layout::PK_GPA + (at - ks), &mut one).is_ok()
        } else {
            // `peek`: code included (execute-only to VMPL1, not to VMPL0).
            guest.view.peek(at, 1).map(|v| one[0] = v[0]).is_ok()
        };
        if !ok {
            return i;
        }
        *b = one[0];
    }
    buf.len()
}

/// A CPUID table in the SNP CPUID page format built from `cpuid(leaf,
/// sub)` as VMPL0 sees it (inside an SNP guest the guest kernel answers
/// from the firmware-checked CPUID page), for the leaves a program asks
/// at start: the basic leaves up to 0x1f (sub-leaves of 4, 7, 0xB, 0xD
/// as they exist), and the extended ones up to 0x8000_0021. Sub-leaves 0 and
/// 1 of 0xD are recorded for XCR0 = x87|SSE ([`CpuidTable::lookup`]
/// recomputes their sizes for the domain's XCR0). At most 64 entries (the
/// page's limit): later leaves are left out (their answer is zeros).
pub fn cpuid_table_from(cpuid: &dyn Fn(u32, u32) -> [u32; 4]) -> Vec<u8> {
    let mut entries: Vec<CpuidEntry> = Vec::new();
    let mut add = |leaf: u32, sub: u32, xcr0_in: u64| {
        if entries.len() < cp::MAX_ENTRIES {
            entries.push(CpuidEntry { eax_in: leaf, ecx_in: sub, xcr0_in, xss_in: 0, out: cpuid(leaf, sub) });
        }
    };
    let max = cpuid(0, 0)[0].min(0x1f);
    for leaf in 0..=max {
        match leaf {
            0x4 => {
                for sub in 0..8 {
                    add(leaf, sub, 0);
                    if cpuid(leaf, sub)[0] & 0x1f == 0 {
                        break;
                    }
                }
            }
            0x7 => {
                for sub in 0..=cpuid(7, 0)[0].min(2) {
                    add(leaf, sub, 0);
                }
            }
            0xb | 0x1f => {
                for sub in 0..4 {
                    add(leaf, sub, 0);
                }
            }
            0xd => {
                add(leaf, 0, 3);
                add(leaf, 1, 3);
                let d0 = cpuid(0xd, 0);
                let d1 = cpuid(0xd, 1);
                let supported =
                    u64::from(d0[0]) | u64::from(d0[3]) << 32 | u64::from(d1[2]) | u64::from(d1[3]) << 32;
                for sub in 2..63 {
                    if supported & (1u64 << sub) != 0 {
                        add(leaf, sub, 0);
                    }
                }
            }
            _ => add(leaf, 0, 0),
        }
    }
    let max_ext = cpuid(0x8000_0000, 0)[0].clamp(0x8000_0000, 0x8000_0021);
    for leaf in 0x8000_0000..=max_ext {
        add(leaf, 0, 0);
    }
    let mut page = vec![0u8; ghcb::SIZE];
    // At most 64 entries of 48 bytes after the 16-byte header: fits.
    write_cpuid_page(&mut page, &entries);
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use cabin_proxy_kernel::trap::TrapFrame;
    use cabin_proxy_kernel::vc::write_request;

    const USER_RIP: u64 = 0x40_1000;
    const KERNEL_RIP: u64 = 0xffff_fffe_0000_1234;

    fn request(exit_code: u64, cs: u64, rip: u64, rax: u64) -> [u8; ghcb::SIZE] {
        let f = TrapFrame { error: exit_code, cs, rip, rax, rdx: 0xe1, rcx: 0xd, ..TrapFrame::default() };
        let mut page = [0u8; ghcb::SIZE];
        write_request(&mut Ghcb::new(&mut page), &f);
        page
    }

    fn code_at(bytes: &'static [u8]) -> impl Fn(u64, &mut [u8]) -> usize {
        move |_, buf: &mut [u8]| {
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            n
        }
    }

    fn cx<'a>(read: &'a dyn Fn(u64, &mut [u8]) -> usize, t: Option<CpuidTable<'a>>) -> Context<'a> {
        Context { read_code: read, cpuid: t, xcr0: 3, osxsave: true }
    }

    fn decide_on(page: &[u8; ghcb::SIZE], code: &'static [u8]) -> Decision {
        let read = code_at(code);
        decide(&read_request(page).expect("request"), &cx(&read, None))
    }

    #[test]
    fn the_doorbell_out_becomes_the_kvm_io_exit() {
        // `out 0xe0, al` with al = DOORBELL_WAIT from ring 3.
        let d = decide_on(&request(exit::IOIO, 0x33, USER_RIP, 2), &[0xe6, 0xe0]);
        assert_eq!(
            d,
            Decision::Io { port: 0xe0, is_in: false, data: [2, 0, 0, 0], size: 1, next_rip: USER_RIP + 2 }
        );
        // `out dx, al` (dx = 0xe1, the syscall port) from ring 0: 1 byte.
        let d = decide_on(&request(exit::IOIO, 0x10, KERNEL_RIP, 60), &[0xee]);
        assert_eq!(
            d,
            Decision::Io { port: 0xe1, is_in: false, data: [60, 0, 0, 0], size: 1, next_rip: KERNEL_RIP + 1 }
        );
        // `in al, 0xe0`: an `in` (the KVM decoder refuses it as on KVM).
        let d = decide_on(&request(exit::IOIO, 0x33, USER_RIP, 0), &[0xe4, 0xe0]);
        assert!(matches!(d, Decision::Io { is_in: true, port: 0xe0, .. }), "{d:?}");
    }

    #[test]
    fn hostile_port_instructions_end_the_program() {
        for code in [&[0xf3u8, 0x6e][..], &[0x6e], &[0xf3, 0xe6, 0xe0], &[0x90], &[0xe6], &[]] {
            let page = request(exit::IOIO, 0x33, USER_RIP, 2);
            let read = move |_: u64, buf: &mut [u8]| {
                buf[..code.len()].copy_from_slice(code);
                code.len()
            };
            let d = decide(&read_request(&page).expect("request"), &cx(&read, None));
            assert!(matches!(&d, Decision::Violation(m) if m.contains("port I/O")), "{code:x?}: {d:?}");
        }
        // The same from ring 0 is a Cabin bug, not the program's doing.
        let d = decide_on(&request(exit::IOIO, 0x10, KERNEL_RIP, 0), &[0x90]);
        assert!(matches!(d, Decision::Invalid(_)), "{d:?}");
    }

    #[test]
    fn unexpected_exit_codes_end_the_program_never_loop() {
        for code in [exit::MSR, exit::VMMCALL, exit::NPF, exit::WBINVD, exit::HLT, 0, u64::MAX, 0x8000_0018] {
            let d = decide_on(&request(code, 0x33, USER_RIP, 0), &[0x0f, 0x01, 0xd9]);
            let Decision::Violation(m) = d else { panic!("exit {code:#x}: {d:?}") };
            assert!(m.starts_with("program killed: #VC for ") && !m.contains('\n'), "{m}");
        }
        assert_eq!(decide_on(&request(exit::HLT, 0x10, KERNEL_RIP, 0), &[0xf4]), Decision::Halted);
        assert!(matches!(decide_on(&request(exit::MSR, 0x10, KERNEL_RIP, 0), &[]), Decision::Invalid(_)));
    }

    #[test]
    fn cpuid_and_rdtsc_are_served_by_value() {
        let mut page = [0u8; 4096];
        let e = |eax_in, ecx_in, xcr0_in, out| CpuidEntry { eax_in, ecx_in, xcr0_in, xss_in: 0, out };
        assert!(write_cpuid_page(
            &mut page,
            &[
                e(0xd, 0, 1, [3, 0x240, 0x240, 0]),
                e(0xd, 2, 0, [0x100, 0x240, 0, 0]),
                e(1, 0, 0, [1, 2, 0, 4])
            ]
        ));
        let t = CpuidTable::parse(&page);
        let read = code_at(&[0x0f, 0xa2]);
        let mut req = read_request(&request(exit::CPUID, 0x33, USER_RIP, 1)).expect("request");
        assert_eq!(
            decide(&req, &cx(&read, t)),
            Decision::Cpuid { out: [1, 2, cp::OSXSAVE, 4], next_rip: USER_RIP + 2 }
        );
        // Leaf 0xD sized for the domain's XCR0 (x87|SSE|AVX).
        req.regs.rax = 0xd;
        req.regs.rcx = 0;
        let c = Context { xcr0: 7, ..cx(&read, t) };
        assert_eq!(decide(&req, &c), Decision::Cpuid { out: [3, 0x340, 0x240, 0], next_rip: USER_RIP + 2 });
        // An XCR0 feature the table cannot size, or no table: the program ends.
        let c = Context { xcr0: 0x207, ..cx(&read, t) };
        assert!(matches!(decide(&req, &c), Decision::Violation(m) if m.contains("CPUID table")));
        assert!(matches!(decide(&req, &cx(&read, None)), Decision::Violation(_)));
        assert_eq!(cpuid_response([1, 2, 3, 4], 9)[4], (ghcb::RIP, 9));
        // rdtsc / rdtscp.
        let d = decide_on(&request(exit::RDTSC, 0x33, USER_RIP, 0), &[0x0f, 0x31]);
        assert_eq!(d, Decision::Rdtsc { aux: false, next_rip: USER_RIP + 2 });
        let d = decide_on(&request(exit::RDTSCP, 0x33, USER_RIP, 0), &[0x0f, 0x01, 0xf9]);
        assert_eq!(d, Decision::Rdtsc { aux: true, next_rip: USER_RIP + 3 });
        assert!(matches!(
            decide_on(&request(exit::RDTSC, 0x33, USER_RIP, 0), &[0x0f, 0xa2]),
            Decision::Violation(_)
        ));
        assert_eq!(
            rdtsc_response(0x1_2345_6789, true, 7),
            vec![(ghcb::RAX, 0x2345_6789), (ghcb::RDX, 1), (ghcb::RIP, 7), (ghcb::RCX, 0)]
        );
    }

    #[test]
    fn the_cpuid_table_of_this_host_answers_as_cpuid() {
        let host = |leaf: u32, sub: u32| {
            let r = core::arch::x86_64::__cpuid_count(leaf, sub);
            [r.eax, r.ebx, r.ecx, r.edx]
        };
        let page = cpuid_table_from(&host);
        let t = CpuidTable::parse(&page).expect("a table");
        assert!(t.entry(0).is_some());
        assert_eq!(t.lookup(0, 0, 3, 0, true), Some(host(0, 0)));
        assert_eq!(t.lookup(0x8000_0000, 0, 3, 0, true), Some(host(0x8000_0000, 0)));
        assert_eq!(t.lookup(7, 0, 3, 0, true), Some(host(7, 0)));
        // 0xD sub-leaf 0 for XCR0 = x87|SSE is the legacy area's size.
        assert_eq!(t.lookup(0xd, 0, 3, 0, true).map(|o| o[1]), Some(cp::XSAVE_LEGACY));
        // With AVX (where the host has it), as the host's table says for AVX.
        if host(0xd, 0)[0] & 4 != 0 {
            let avx = host(0xd, 2);
            assert_eq!(
                t.lookup(0xd, 0, 7, 0, true).map(|o| o[1]),
                Some(cp::XSAVE_LEGACY.max(avx[0] + avx[1]))
            );
        }
    }

    #[test]
    fn requests_are_checked_and_responses_marked() {
        // No request (VMPL1 exited without one), or a partial one.
        assert_eq!(read_request(&[0u8; ghcb::SIZE]), Err(RequestError::Empty));
        let mut page = request(exit::IOIO, 0x33, USER_RIP, 2);
        page[ghcb::VALID_BITMAP + ghcb::RIP / 64] &= !(1 << ((ghcb::RIP / 8) % 8));
        assert_eq!(read_request(&page), Err(RequestError::Missing(ghcb::RIP)));
        // A response carries only what it sets; the request is gone.
        let mut page = request(exit::IOIO, 0x33, USER_RIP, 2);
        write_response(&mut page, &[(ghcb::RIP, USER_RIP + 2)]);
        let v = GhcbView::new(&page);
        assert_eq!(v.get(ghcb::RIP), Some(USER_RIP + 2));
        assert_eq!(v.get(ghcb::RAX), None);
        assert_eq!(v.get(ghcb::SW_EXIT_CODE), None);
        assert!(read_request(&page).is_err(), "a response is not a request");
    }
}
