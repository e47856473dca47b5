//! What the proxy-kernel does with a trap: pure logic, shared with the
//! monitor and tested on the host.
//!
//! Every vector's stub pushes the same [`TrapFrame`] and calls the kernel's
//! one handler, which asks [`classify`] whether the trap is the slow-path
//! system-call gate or an exception. A gate call is forwarded to the monitor
//! and returns to the instruction after the `syscall` with the state
//! [`gate_return`] allows; an exception is reported and ends the program,
//! with the signal [`signal_for`] names (the monitor makes the exit status
//! 128 + that signal).

/// Vector numbers of the x86 exceptions.
pub mod vector {
    /// Divide error.
    pub const DE: u64 = 0;
    /// Debug.
    pub const DB: u64 = 1;
    /// Non-maskable interrupt.
    pub const NMI: u64 = 2;
    /// Breakpoint (`int3`).
    pub const BP: u64 = 3;
    /// Overflow (`into`).
    pub const OF: u64 = 4;
    /// Bound range.
    pub const BR: u64 = 5;
    /// Invalid opcode.
    pub const UD: u64 = 6;
    /// Device not available.
    pub const NM: u64 = 7;
    /// Double fault.
    pub const DF: u64 = 8;
    /// Invalid TSS.
    pub const TS: u64 = 10;
    /// Segment not present.
    pub const NP: u64 = 11;
    /// Stack-segment fault.
    pub const SS: u64 = 12;
    /// General protection.
    pub const GP: u64 = 13;
    /// Page fault.
    pub const PF: u64 = 14;
    /// x87 floating-point error.
    pub const MF: u64 = 16;
    /// Alignment check.
    pub const AC: u64 = 17;
    /// Machine check.
    pub const MC: u64 = 18;
    /// SIMD floating-point exception.
    pub const XM: u64 = 19;
    /// Virtualisation exception.
    pub const VE: u64 = 20;
    /// Control-protection exception.
    pub const CP: u64 = 21;
    /// VMM communication exception (`#VC`, SEV-ES/SNP).
    pub const VC_EXCEPTION: u64 = 29;
}

/// Page-fault error-code bits.
pub mod pf {
    /// The page was present (a protection fault).
    pub const PRESENT: u64 = 1 << 0;
    /// The access was a write.
    pub const WRITE: u64 = 1 << 1;
    /// The access came from ring 3.
    pub const USER: u64 = 1 << 2;
    /// The access was an instruction fetch.
    pub const FETCH: u64 = 1 << 4;
    /// Protection-key violation.
    pub const PK: u64 = 1 << 5;
}

/// Whether the CPU pushes an error code for `vector`.
pub const fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// The stack of the common trap handler, lowest address first: the general
/// registers the entry pushes, then the vector and error code the stub
/// pushes, then the frame the CPU pushes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapFrame {
    /// `r15` at the trap.
    pub r15: u64,
    /// `r14`.
    pub r14: u64,
    /// `r13`.
    pub r13: u64,
    /// `r12`.
    pub r12: u64,
    /// `r11` (after `syscall`: the program's RFLAGS).
    pub r11: u64,
    /// `r10` (fourth system-call argument).
    pub r10: u64,
    /// `r9`.
    pub r9: u64,
    /// `r8`.
    pub r8: u64,
    /// `rbp`.
    pub rbp: u64,
    /// `rdi`.
    pub rdi: u64,
    /// `rsi`.
    pub rsi: u64,
    /// `rdx`.
    pub rdx: u64,
    /// `rcx` (after `syscall`: the return address).
    pub rcx: u64,
    /// `rbx`.
    pub rbx: u64,
    /// `rax` (system-call number in, result out).
    pub rax: u64,
    /// Vector number (pushed by the stub).
    pub vector: u64,
    /// Error code (pushed by the CPU, or 0 by the stub).
    pub error: u64,
    /// Interrupted `rip`.
    pub rip: u64,
    /// Interrupted `cs`.
    pub cs: u64,
    /// Interrupted RFLAGS.
    pub rflags: u64,
    /// Interrupted `rsp`.
    pub rsp: u64,
    /// Interrupted `ss`.
    pub ss: u64,
}

/// Number of general registers the common entry pushes.
pub const SAVED_GPRS: usize = 15;

/// What a trap is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// A `syscall` from ring 3 that arrived as a page fault at the `LSTAR`
    /// address (this project's nested KVM; or a jump to that address, which
    /// is handled the same way and is harmless: see [`gate_return`]).
    SyscallGate,
    /// A `syscall` from compatibility (32-bit) mode that arrived the same
    /// way at the `CSTAR` address: a program fault (Cabin has no 32-bit
    /// system calls), never a kernel one.
    CompatSyscall,
    /// Anything else: the program (or, with a ring-0 `cs`, the kernel) faulted.
    Exception,
}

/// Classifies a trap. `cr2` is the fault address register at entry,
/// `syscall_entry` the address in `MSR_LSTAR` and `compat_entry` the one in
/// `MSR_CSTAR`.
pub fn classify(f: &TrapFrame, cr2: u64, syscall_entry: u64, compat_entry: u64) -> Trap {
    let user_fetch = pf::USER | pf::FETCH;
    let fetch_fault_at = |entry: u64| {
        f.vector == vector::PF
            && f.cs & 3 == 3
            && f.rip == entry
            && cr2 == entry
            && f.error & user_fetch == user_fetch
    };
    // KVM's instruction emulator (which runs every entry into ring 0 on
    // the nested KVM this project is tested on) jumps to CSTAR cut to 32
    // bits for a `syscall` from 32-bit code, in ring 0. The monitor places
    // the proxy-kernel where that address lies below the lowest program
    // address, where nothing is mapped: the jump faults at once (on a
    // stack of the kernel's: #PF has an IST stack).
    let cut = compat_entry & 0xffff_ffff;
    let cut_compat_entry = f.vector == vector::PF
        && f.cs & 3 == 0
        && f.rip == cut
        && cr2 == cut
        && f.error & (pf::FETCH | pf::USER | pf::PRESENT) == pf::FETCH;
    if fetch_fault_at(syscall_entry) {
        Trap::SyscallGate
    } else if fetch_fault_at(compat_entry) || cut_compat_entry {
        Trap::CompatSyscall
    } else {
        Trap::Exception
    }
}

/// RFLAGS bits ring 3 may set itself (CF PF AF ZF SF TF DF OF AC ID).
pub const USER_RFLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | (1 << 18) | (1 << 21);
/// RFLAGS bits ring 3 always runs with: bit 1 (reserved, 1) and IF.
pub const FORCED_RFLAGS: u64 = 0x2 | 0x200;

/// Whether `addr` is a canonical 48-bit lower-half (user) address.
pub const fn is_user_canonical(addr: u64) -> bool {
    addr < 0x0000_8000_0000_0000
}

/// The state the gate returns to ring 3 with, from the `rcx` (return
/// address) and `r11` (RFLAGS) that `syscall` left: the address must be a
/// canonical user address (else `None`: the program is ended), and only
/// flags a program may set itself survive, so that a program that jumps to
/// the gate with made-up `rcx`/`r11` gains nothing it could not do with a
/// plain `jmp` (no IOPL, no NT, no VM, interrupts on).
pub fn gate_return(rcx: u64, r11: u64) -> Option<(u64, u64)> {
    if !is_user_canonical(rcx) {
        return None;
    }
    Some((rcx, (r11 & USER_RFLAGS) | FORCED_RFLAGS))
}

/// Bytes below `rsp` the interrupted code may be using (SysV red zone).
pub const RED_ZONE: u64 = 128;

/// The state for a redirected gate call: resume ring 3 at `target` (the
/// libos's trap entry) with `rsp` lowered past the red zone, RFLAGS
/// sanitised as in [`gate_return`]. `None` (end the program) when the target
/// is not a canonical user address or `rsp` would wrap.
pub fn gate_redirect(target: u64, rsp: u64, r11: u64) -> Option<(u64, u64, u64)> {
    if !is_user_canonical(target) {
        return None;
    }
    let new_rsp = rsp.checked_sub(RED_ZONE)?;
    Some((target, new_rsp, (r11 & USER_RFLAGS) | FORCED_RFLAGS))
}

/// The state a program fault resumes ring 3 with when the monitor redirects
/// it to the libos's signal entry `target`: `None` (stop) unless `target` is
/// a canonical user address; RFLAGS keeps only what ring 3 may set, without
/// TF (the entry must not single-step; the libos gets the program's own
/// RFLAGS from the monitor).
pub fn signal_redirect(target: u64, rflags: u64) -> Option<(u64, u64)> {
    if target == 0 || !is_user_canonical(target) {
        return None;
    }
    Some((target, (rflags & USER_RFLAGS & !0x100) | FORCED_RFLAGS))
}

/// Linux signal numbers the monitor reports.
pub mod signal {
    /// Illegal instruction.
    pub const SIGILL: u32 = 4;
    /// Trace/breakpoint trap.
    pub const SIGTRAP: u32 = 5;
    /// Bus error.
    pub const SIGBUS: u32 = 7;
    /// Floating-point exception.
    pub const SIGFPE: u32 = 8;
    /// Segmentation fault.
    pub const SIGSEGV: u32 = 11;
}

/// The signal Linux would deliver for an exception in user mode.
pub fn signal_for(vector: u64) -> u32 {
    use signal::*;
    match vector {
        vector::DE | vector::MF | vector::XM => SIGFPE,
        vector::DB | vector::BP => SIGTRAP,
        vector::UD => SIGILL,
        vector::SS | vector::AC | vector::MC => SIGBUS,
        _ => SIGSEGV,
    }
}

/// Short name of an exception vector, for the one-line fault report.
pub fn vector_name(vector: u64) -> &'static str {
    match vector {
        vector::DE => "divide error (#DE)",
        vector::DB => "debug trap (#DB)",
        vector::NMI => "non-maskable interrupt",
        vector::BP => "breakpoint (#BP)",
        vector::OF => "overflow (#OF)",
        vector::BR => "bound range exceeded (#BR)",
        vector::UD => "invalid opcode (#UD)",
        vector::NM => "device not available (#NM)",
        vector::DF => "double fault (#DF)",
        vector::TS => "invalid TSS (#TS)",
        vector::NP => "segment not present (#NP)",
        vector::SS => "stack-segment fault (#SS)",
        vector::GP => "general protection fault (#GP)",
        vector::PF => "page fault (#PF)",
        vector::MF => "x87 floating-point error (#MF)",
        vector::AC => "alignment check (#AC)",
        vector::MC => "machine check (#MC)",
        vector::XM => "SIMD floating-point exception (#XM)",
        vector::VE => "virtualisation exception (#VE)",
        vector::CP => "control-protection exception (#CP)",
        vector::VC_EXCEPTION => "VMM communication exception (#VC)",
        32..=255 => "unexpected interrupt",
        _ => "reserved exception",
    }
}

/// What a page fault's error code says was attempted, e.g. "write to a
/// read-only page" (for the one-line report).
pub fn page_fault_access(error: u64) -> &'static str {
    let present = error & pf::PRESENT != 0;
    if error & pf::PK != 0 {
        "access denied by protection key"
    } else if error & pf::FETCH != 0 {
        if present {
            "execute of a non-executable page"
        } else {
            "execute of an unmapped address"
        }
    } else if error & pf::WRITE != 0 {
        if present {
            "write to a read-only page"
        } else {
            "write to an unmapped address"
        }
    } else if present {
        "read of a protected page"
    } else {
        "read of an unmapped address"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSTAR: u64 = 0xffff_fffe_0000_1080;
    const CSTAR: u64 = 0xffff_fffe_0000_1090;

    fn frame(vector: u64, error: u64, rip: u64, cs: u64) -> TrapFrame {
        TrapFrame { vector, error, rip, cs, ..TrapFrame::default() }
    }

    #[test]
    fn frame_layout_matches_the_push_order() {
        assert_eq!(core::mem::size_of::<TrapFrame>(), (SAVED_GPRS + 7) * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, rax), (SAVED_GPRS - 1) * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, vector), SAVED_GPRS * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, rip), (SAVED_GPRS + 2) * 8);
    }

    #[test]
    fn syscall_arriving_as_page_fault_at_lstar_is_the_gate() {
        // What this project's nested KVM delivers: #PF, error 0x15, rip = cr2 = LSTAR.
        assert_eq!(classify(&frame(14, 0x15, LSTAR, 0x33), LSTAR, LSTAR, CSTAR), Trap::SyscallGate);
        // Not-present variant (error 0x14) counts too.
        assert_eq!(classify(&frame(14, 0x14, LSTAR, 0x33), LSTAR, LSTAR, CSTAR), Trap::SyscallGate);
    }

    #[test]
    fn compat_syscall_arriving_at_cstar_is_a_program_fault() {
        // From 32-bit code (cs 0x23) or whatever cs the host reports, as long as it is ring 3.
        assert_eq!(classify(&frame(14, 0x15, CSTAR, 0x23), CSTAR, LSTAR, CSTAR), Trap::CompatSyscall);
        assert_eq!(classify(&frame(14, 0x14, CSTAR, 0x33), CSTAR, LSTAR, CSTAR), Trap::CompatSyscall);
        // A ring-0 fault there is the kernel's own.
        assert_eq!(classify(&frame(14, 0x11, CSTAR, 0x10), CSTAR, LSTAR, CSTAR), Trap::Exception);
        // KVM's emulator: ring 0 at CSTAR cut to 32 bits, where nothing is mapped.
        let cut = CSTAR & 0xffff_ffff;
        assert_eq!(classify(&frame(14, 0x10, cut, 0x10), cut, LSTAR, CSTAR), Trap::CompatSyscall);
        // ... but not if something were mapped there, nor from ring 3, nor for a data access.
        assert_eq!(classify(&frame(14, 0x11, cut, 0x10), cut, LSTAR, CSTAR), Trap::Exception);
        assert_eq!(classify(&frame(14, 0x14, cut, 0x33), cut, LSTAR, CSTAR), Trap::Exception);
        assert_eq!(classify(&frame(14, 0x00, 0x401000, 0x10), cut, LSTAR, CSTAR), Trap::Exception);
        // A data read of that address is an ordinary fault.
        assert_eq!(classify(&frame(14, 0x05, 0x401000, 0x33), CSTAR, LSTAR, CSTAR), Trap::Exception);
    }

    #[test]
    fn other_faults_are_exceptions() {
        // A data read of the gate page is not a call.
        assert_eq!(classify(&frame(14, 0x05, 0x401000, 0x33), LSTAR, LSTAR, CSTAR), Trap::Exception);
        // A fetch fault elsewhere.
        assert_eq!(classify(&frame(14, 0x15, 0x601000, 0x33), 0x601000, LSTAR, CSTAR), Trap::Exception);
        // Ring-0 fault at the entry address is a kernel bug, not a call.
        assert_eq!(classify(&frame(14, 0x11, LSTAR, 0x10), LSTAR, LSTAR, CSTAR), Trap::Exception);
        // #UD (ud2, int 0x80 on this host) and #GP are exceptions.
        assert_eq!(classify(&frame(6, 0, 0x401000, 0x33), 0, LSTAR, CSTAR), Trap::Exception);
        assert_eq!(classify(&frame(13, 0, 0x401000, 0x33), 0, LSTAR, CSTAR), Trap::Exception);
    }

    #[test]
    fn gate_return_sanitises_flags_and_address() {
        // IOPL=3, NT, VM, RF set by a hostile program are dropped; IF is forced on.
        let hostile = 0x3000 | 0x4000 | 0x2_0000 | 0x1_0000 | 0x1;
        assert_eq!(gate_return(0x401234, hostile), Some((0x401234, 0x1 | 0x202)));
        assert_eq!(gate_return(0x401234, 0x246), Some((0x401234, 0x246)));
        assert_eq!(gate_return(0xffff_8000_0000_0000, 0x202), None);
        assert_eq!(gate_return(0x0000_8000_0000_0000, 0x202), None);
    }

    #[test]
    fn gate_redirect_skips_the_red_zone() {
        assert_eq!(
            gate_redirect(0x40_1000, 0x7fff_0000, 0x3246),
            Some((0x40_1000, 0x7fff_0000 - 128, 0x246))
        );
        assert_eq!(gate_redirect(0xffff_ffff_8000_0000, 0x7fff_0000, 0x202), None);
        assert_eq!(gate_redirect(0x40_1000, 64, 0x202), None);
    }

    #[test]
    fn signal_redirect_is_a_user_jump() {
        assert_eq!(signal_redirect(0x40_1000, 0x3146), Some((0x40_1000, 0x246)));
        assert_eq!(signal_redirect(0, 0x202), None);
        assert_eq!(signal_redirect(0xffff_8000_0000_0000, 0x202), None);
        assert_eq!(signal_redirect(0x0000_8000_0000_0000, 0x202), None);
    }

    #[test]
    fn signals_match_linux() {
        assert_eq!(signal_for(vector::PF), signal::SIGSEGV);
        assert_eq!(signal_for(vector::GP), signal::SIGSEGV);
        assert_eq!(signal_for(vector::UD), signal::SIGILL);
        assert_eq!(signal_for(vector::DE), signal::SIGFPE);
        assert_eq!(signal_for(vector::BP), signal::SIGTRAP);
        assert_eq!(signal_for(vector::AC), signal::SIGBUS);
    }

    #[test]
    fn page_fault_descriptions() {
        assert_eq!(page_fault_access(0x7), "write to a read-only page");
        assert_eq!(page_fault_access(0x15), "execute of a non-executable page");
        assert_eq!(page_fault_access(0x4), "read of an unmapped address");
        assert_eq!(page_fault_access(0x25), "access denied by protection key");
    }

    #[test]
    fn error_code_vectors() {
        assert!(has_error_code(14) && has_error_code(13) && has_error_code(8));
        assert!(!has_error_code(6) && !has_error_code(0) && !has_error_code(0x80));
    }
}
