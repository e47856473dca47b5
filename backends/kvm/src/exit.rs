//! What a VM exit means: pure functions from the exit (port, data and the
//! registers) to an action, so tests can feed made-up exits without a VM.

use cabin_abi::hypercall::{
    fault, DOORBELL_COMMIT, DOORBELL_EXIT, DOORBELL_FUTEX, DOORBELL_PROTECT, DOORBELL_WAIT, DOORBELL_WAKE,
    PORT_DOORBELL, PORT_FAULT, PORT_SYSCALL,
};
use cabin_proxy_kernel::trap::{page_fault_access, signal_for, vector, vector_name};

/// The registers an exit handler looks at (a copy of `kvm_regs`' fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// `rax`.
    pub rax: u64,
    /// `rdi`.
    pub rdi: u64,
    /// `rsi`.
    pub rsi: u64,
    /// `rdx`.
    pub rdx: u64,
    /// `rcx`.
    pub rcx: u64,
    /// `r8`.
    pub r8: u64,
    /// `r9`.
    pub r9: u64,
    /// `r10`.
    pub r10: u64,
    /// `r11`.
    pub r11: u64,
    /// `rip`.
    pub rip: u64,
}

impl From<&kvm_bindings::kvm_regs> for Regs {
    fn from(r: &kvm_bindings::kvm_regs) -> Regs {
        Regs {
            rax: r.rax,
            rdi: r.rdi,
            rsi: r.rsi,
            rdx: r.rdx,
            rcx: r.rcx,
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            rip: r.rip,
        }
    }
}

/// A fault the proxy-kernel reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultReport {
    /// Exception vector.
    pub vector: u64,
    /// Error code.
    pub error: u64,
    /// Faulting `rip`.
    pub rip: u64,
    /// `cr2` (the fault address for page faults).
    pub cr2: u64,
    /// `cs` of the faulting code (ring = `cs & 3`).
    pub cs: u64,
    /// `rsp` of the faulting code.
    pub rsp: u64,
    /// RFLAGS of the faulting code.
    pub rflags: u64,
    /// The proxy-kernel's reason code (`cabin_abi::hypercall::fault`).
    pub reason: u64,
}

impl FaultReport {
    /// Reads the report out of the [`PORT_FAULT`] registers.
    pub fn from_regs(r: &Regs) -> FaultReport {
        FaultReport {
            vector: r.rdi,
            error: r.rsi,
            rip: r.rdx,
            cr2: r.rcx,
            cs: r.r8,
            rsp: r.r9,
            rflags: r.r10,
            reason: r.r11,
        }
    }

    /// Whether ring 0 (the proxy-kernel itself) faulted: a Cabin bug.
    pub fn in_kernel(&self) -> bool {
        self.cs & 3 != 3 || self.reason == fault::REASON_KERNEL_PANIC
    }

    /// The signal that ends the program. `int N` through a gate closed to
    /// ring 3 (`int_n`: the instruction's vector, when the fault was #GP or
    /// #UD at an `int N`; this host delivers #UD, ordinary KVM #GP) ends it
    /// with SIGSEGV, as on Linux; so does `int 0x80`, as on a Linux kernel
    /// without IA-32 emulation.
    pub fn signal_for_run(&self, int_n: Option<u8>) -> u32 {
        if int_n.is_some() {
            return cabin_proxy_kernel::trap::signal::SIGSEGV;
        }
        self.signal()
    }

    /// The signal that ends the program.
    pub fn signal(&self) -> u32 {
        match self.reason {
            fault::REASON_BAD_GATE_RETURN | fault::REASON_COMPAT_SYSCALL | fault::REASON_SYSENTER => {
                cabin_proxy_kernel::trap::signal::SIGSEGV
            }
            _ => signal_for(self.vector),
        }
    }

    /// What the program's handler sees (`si_signo`, `si_code`, `si_addr`),
    /// as Linux fills them for this exception.
    pub fn siginfo(&self, int_n: Option<u8>) -> (u64, u64, u64) {
        const SI_KERNEL: u64 = 0x80;
        let signo = u64::from(self.signal_for_run(int_n));
        if int_n.is_some() || self.reason != fault::REASON_EXCEPTION {
            return (signo, SI_KERNEL, 0);
        }
        let (code, addr) = match self.vector {
            vector::PF => {
                let code = if self.error & cabin_proxy_kernel::trap::pf::PK != 0 {
                    4 // SEGV_PKUERR
                } else if self.error & cabin_proxy_kernel::trap::pf::PRESENT != 0 {
                    2 // SEGV_ACCERR
                } else {
                    1 // SEGV_MAPERR
                };
                (code, self.cr2)
            }
            vector::UD => (2, self.rip),              // ILL_ILLOPN
            vector::DE => (1, self.rip),              // FPE_INTDIV
            vector::XM | vector::MF => (7, self.rip), // FPE_FLTINV
            vector::DB => (2, self.rip),              // TRAP_TRACE
            vector::AC => (1, 0),                     // BUS_ADRALN
            _ => (SI_KERNEL, 0),
        };
        (signo, code, addr)
    }

    /// One line describing the fault (without a trailing newline).
    pub fn message(&self, int_n: Option<u8>) -> String {
        let sig = cabin_monitor::config::signal_name(self.signal_for_run(int_n) as i32);
        match self.reason {
            fault::REASON_BAD_GATE_RETURN => {
                return format!(
                    "program killed by {sig}: system-call gate entered with a non-canonical return address \
                     (rip {:#x})",
                    self.rip
                )
            }
            fault::REASON_COMPAT_SYSCALL => {
                let at = self.rip;
                return format!(
                    "program killed by {sig}: `syscall` from 32-bit code is not supported (return address {at:#x})"
                );
            }
            fault::REASON_SYSENTER => return format!("program killed by {sig}: `sysenter` is not supported"),
            _ => {}
        }
        if self.in_kernel() {
            return format!(
                "proxy-kernel fault: {} (error {:#x}) at rip {:#x}, cr2 {:#x}, reason {}",
                vector_name(self.vector),
                self.error,
                self.rip,
                self.cr2,
                self.reason
            );
        }
        match int_n {
            Some(0x80) => {
                return format!(
                    "program killed by {sig}: int 0x80 (32-bit system call) is not supported at rip {:#x}",
                    self.rip
                )
            }
            Some(n) => {
                return format!(
                    "program killed by {sig}: int {n:#x}: the gate is closed to programs at rip {:#x}",
                    self.rip
                )
            }
            None => {}
        }
        match self.vector {
            vector::PF => format!(
                "program killed by {sig}: {}: {} at {:#x} (rip {:#x})",
                vector_name(self.vector),
                page_fault_access(self.error),
                self.cr2,
                self.rip
            ),
            vector::GP if self.error != 0 => format!(
                "program killed by {sig}: {} (error {:#x}) at rip {:#x}",
                vector_name(self.vector),
                self.error,
                self.rip
            ),
            _ => format!("program killed by {sig}: {} at rip {:#x}", vector_name(self.vector), self.rip),
        }
    }
}

/// What to do about an I/O exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoAction {
    /// Serve the system call in the registers (from the proxy-kernel).
    Syscall {
        /// Number.
        nr: u64,
        /// Arguments.
        args: [u64; 6],
    },
    /// The proxy-kernel reported a fault.
    Fault(FaultReport),
    /// Ring doorbell: wake the worker; if `wait`, return once a completion
    /// is pending.
    Doorbell {
        /// Wait for a completion.
        wait: bool,
    },
    /// Change the protection of program pages (`mprotect`): the
    /// registers, untrusted (the program can make this exit itself).
    Protect {
        /// `rdi`.
        addr: u64,
        /// `rsi`.
        len: u64,
        /// `rdx`: `PROT_*`.
        prot: u64,
    },
    /// Commit (or, `target` 0, release) part of the reservation space:
    /// the registers, untrusted.
    Commit {
        /// `rdi`.
        addr: u64,
        /// `rsi`.
        len: u64,
        /// `rdx`: `PROT_*`.
        prot: u64,
        /// `r10`: arena address of the pages, or 0.
        target: u64,
    },
    /// End the calling thread's vCPU (`DOORBELL_EXIT`), as a raw `exit`:
    /// the status from `rdi`, untrusted (any value is a status).
    ThreadExit {
        /// The low 8 bits of `rdi`.
        code: i32,
    },
    /// A `futex` call served by the vCPU thread (`DOORBELL_FUTEX`): the
    /// registers as the system call's arguments, untrusted.
    Futex {
        /// `rdi, rsi, rdx, r10, r8, r9`.
        args: [u64; 6],
    },
    /// The program used the doorbell port in a way Cabin does not define
    /// (any other value, width or direction): a protocol violation that
    /// ends it (exit 137), never a Cabin error.
    Violation(&'static str),
    /// The proxy-kernel used a port wrongly: only a Cabin bug explains it.
    Invalid(&'static str),
}

fn in_kernel_text(r: &Regs, kernel_text: (u64, u64)) -> bool {
    r.rip >= kernel_text.0 && r.rip <= kernel_text.1
}

/// What went wrong, blamed on whoever ran the instruction: the program
/// (`rip` outside the proxy-kernel: ring 3) or the proxy-kernel.
fn misuse(r: &Regs, kernel_text: (u64, u64), what: &'static str) -> IoAction {
    if in_kernel_text(r, kernel_text) {
        IoAction::Invalid(what)
    } else {
        IoAction::Violation(what)
    }
}

/// Decodes an `out` exit. `kernel_text` is the proxy-kernel's address range:
/// the ring-0 ports must be used from there (the I/O bitmap already stops
/// ring 3; this check makes a mistake there visible rather than exploitable).
pub fn decode_out(port: u16, data: &[u8], r: &Regs, kernel_text: (u64, u64)) -> IoAction {
    let from_kernel = in_kernel_text(r, kernel_text);
    match port {
        PORT_SYSCALL if from_kernel => {
            IoAction::Syscall { nr: r.rax, args: [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9] }
        }
        PORT_FAULT if from_kernel => IoAction::Fault(FaultReport::from_regs(r)),
        PORT_SYSCALL | PORT_FAULT => IoAction::Violation("hypercall port used outside the proxy-kernel"),
        PORT_DOORBELL => match data {
            [v] if u32::from(*v) == DOORBELL_WAKE => IoAction::Doorbell { wait: false },
            [v] if u32::from(*v) == DOORBELL_WAIT => IoAction::Doorbell { wait: true },
            [v] if u32::from(*v) == DOORBELL_PROTECT => {
                IoAction::Protect { addr: r.rdi, len: r.rsi, prot: r.rdx }
            }
            [v] if u32::from(*v) == DOORBELL_COMMIT => {
                IoAction::Commit { addr: r.rdi, len: r.rsi, prot: r.rdx, target: r.r10 }
            }
            [v] if u32::from(*v) == DOORBELL_EXIT => IoAction::ThreadExit { code: (r.rdi & 0xff) as i32 },
            [v] if u32::from(*v) == DOORBELL_FUTEX => {
                IoAction::Futex { args: [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9] }
            }
            _ => misuse(r, kernel_text, "malformed doorbell (not one byte of 1 to 6)"),
        },
        _ => misuse(r, kernel_text, "write to an unknown I/O port"),
    }
}

/// Decodes an `in` exit: Cabin defines none (the I/O bitmap lets ring 3
/// reach the doorbell port, for `out` only).
pub fn decode_in(port: u16, r: &Regs, kernel_text: (u64, u64)) -> IoAction {
    match port {
        PORT_DOORBELL => misuse(r, kernel_text, "read (`in`) from the doorbell port"),
        _ => misuse(r, kernel_text, "read (`in`) from an unknown I/O port"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KT: (u64, u64) = (0xffff_ffff_8010_0000, 0xffff_ffff_8010_2000);

    #[test]
    fn syscall_hypercall() {
        let r = Regs {
            rax: 1,
            rdi: 2,
            rsi: 3,
            rdx: 4,
            r10: 5,
            r8: 6,
            r9: 7,
            rip: KT.0 + 0x40,
            ..Regs::default()
        };
        assert_eq!(
            decode_out(PORT_SYSCALL, &[1], &r, KT),
            IoAction::Syscall { nr: 1, args: [2, 3, 4, 5, 6, 7] }
        );
        let user = Regs { rip: 0x401000, ..r };
        assert!(matches!(decode_out(PORT_SYSCALL, &[1], &user, KT), IoAction::Violation(_)));
    }

    #[test]
    fn doorbell_values() {
        let r = Regs { rip: 0x401000, ..Regs::default() };
        assert_eq!(decode_out(PORT_DOORBELL, &[2], &r, KT), IoAction::Doorbell { wait: true });
        assert_eq!(decode_out(PORT_DOORBELL, &[1], &r, KT), IoAction::Doorbell { wait: false });
        let mut exiting = r;
        exiting.rdi = 0x1_2345;
        assert_eq!(decode_out(PORT_DOORBELL, &[5], &exiting, KT), IoAction::ThreadExit { code: 0x45 });
        // From ring 3 every misuse is the program's: a protocol violation (137), not a Cabin error.
        assert!(matches!(decode_out(PORT_DOORBELL, &[9], &r, KT), IoAction::Violation(_)));
        assert!(matches!(decode_out(PORT_DOORBELL, &[0], &r, KT), IoAction::Violation(_)));
        assert!(matches!(decode_out(PORT_DOORBELL, &[2, 0, 0, 0], &r, KT), IoAction::Violation(_)));
        assert!(matches!(decode_out(PORT_DOORBELL, &[], &r, KT), IoAction::Violation(_)));
        assert!(matches!(decode_out(0x3f8, b"a", &r, KT), IoAction::Violation(_)));
        assert!(matches!(decode_in(PORT_DOORBELL, &r, KT), IoAction::Violation(_)));
        assert!(matches!(decode_in(0x3f8, &r, KT), IoAction::Violation(_)));
        // From the proxy-kernel the same is a Cabin bug.
        let k = Regs { rip: KT.0 + 0x10, ..r };
        assert!(matches!(decode_out(PORT_DOORBELL, &[9], &k, KT), IoAction::Invalid(_)));
        assert!(matches!(decode_out(0x3f8, b"a", &k, KT), IoAction::Invalid(_)));
        assert!(matches!(decode_in(PORT_DOORBELL, &k, KT), IoAction::Invalid(_)));
    }

    #[test]
    fn fault_messages() {
        let f = FaultReport {
            vector: 14,
            error: 7,
            rip: 0x401005,
            cr2: 0x401000,
            cs: 0x33,
            rsp: 0,
            rflags: 0,
            reason: 0,
        };
        assert_eq!(f.signal(), 11);
        assert_eq!(f.siginfo(None), (11, 2, 0x401000), "SEGV_ACCERR at cr2");
        assert_eq!(FaultReport { error: 4, ..f }.siginfo(None), (11, 1, 0x401000), "SEGV_MAPERR");
        assert_eq!(FaultReport { vector: 6, ..f }.siginfo(None), (4, 2, 0x401005), "ILL_ILLOPN at rip");
        assert_eq!(FaultReport { vector: 0, ..f }.siginfo(None), (8, 1, 0x401005), "FPE_INTDIV");
        assert_eq!(FaultReport { vector: 13, ..f }.siginfo(None), (11, 0x80, 0), "#GP: SI_KERNEL");
        assert_eq!(FaultReport { vector: 6, ..f }.siginfo(Some(0x80)), (11, 0x80, 0), "int 0x80");
        assert_eq!(
            f.message(None),
            "program killed by SIGSEGV: page fault (#PF): write to a read-only page at 0x401000 (rip 0x401005)"
        );
        let ud = FaultReport { vector: 6, error: 0, cr2: 0, ..f };
        assert_eq!(ud.signal(), 4);
        assert_eq!(ud.message(None), "program killed by SIGILL: invalid opcode (#UD) at rip 0x401005");
        assert!(ud.message(Some(0x80)).contains("int 0x80"));
        assert!(ud.message(Some(0x80)).contains("SIGSEGV"));
        assert_eq!(ud.signal_for_run(Some(0x80)), 11);
        assert_eq!(ud.signal_for_run(Some(0x20)), 11, "int N through a closed gate is SIGSEGV, as on Linux");
        assert_eq!(
            ud.message(Some(0x20)),
            "program killed by SIGSEGV: int 0x20: the gate is closed to programs at rip 0x401005"
        );
        let k = FaultReport { cs: 0x10, ..f };
        assert!(k.in_kernel());
        assert!(k.message(None).starts_with("proxy-kernel fault"));
    }

    #[test]
    fn legacy_entries_are_program_faults() {
        let compat = FaultReport {
            vector: 13,
            error: 0,
            rip: 0x401234,
            cr2: 0,
            cs: fault::LEGACY_ENTRY_CS,
            rsp: 0x7fff_0000,
            rflags: 0x202,
            reason: fault::REASON_COMPAT_SYSCALL,
        };
        assert!(!compat.in_kernel(), "a compat syscall is the program's fault, never a Cabin error");
        assert_eq!(compat.signal(), 11);
        assert_eq!(
            compat.message(None),
            "program killed by SIGSEGV: `syscall` from 32-bit code is not supported (return address 0x401234)"
        );
        let sysenter = FaultReport { rip: 0, reason: fault::REASON_SYSENTER, ..compat };
        assert!(!sysenter.in_kernel());
        assert_eq!(sysenter.signal(), 11);
        assert_eq!(sysenter.message(None), "program killed by SIGSEGV: `sysenter` is not supported");
    }
}
