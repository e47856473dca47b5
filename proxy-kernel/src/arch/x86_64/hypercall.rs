//! The proxy-kernel's two hypercalls (protocol: `cabin_abi::hypercall`).

use core::arch::asm;

use cabin_abi::hypercall::{PORT_FAULT, PORT_SYSCALL};

use crate::trap::TrapFrame;

/// Asks the monitor to serve system call `nr` whose return address is
/// `ret_addr`; returns `(rax, rcx)`: the result, and `rcx` as the monitor
/// left it (changed = redirect, see `cabin_abi::hypercall::PORT_SYSCALL`).
pub fn syscall(nr: u64, a: [u64; 6], ret_addr: u64) -> (u64, u64) {
    let ret: u64;
    let rcx: u64;
    // SAFETY: `out` to the syscall port exits to the monitor, which reads
    // the argument registers (and the program's memory through its own
    // checks) and writes only `rax`. No guest memory is touched here.
    unsafe {
        asm!(
            "out {port}, al",
            port = const PORT_SYSCALL,
            inout("rax") nr => ret,
            inout("rcx") ret_addr => rcx,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            options(nostack, preserves_flags),
        );
    }
    (ret, rcx)
}

/// Reports the trap in `f` to the monitor, which ends the program; never
/// returns (halts if the monitor resumes the vCPU anyway).
pub fn fault(f: &TrapFrame, cr2: u64, reason: u64) -> ! {
    // SAFETY: as for `syscall`: the monitor reads registers only. The
    // monitor does not resume the vCPU after this port.
    unsafe {
        asm!(
            "out {port}, al",
            port = const PORT_FAULT,
            in("rdi") f.vector,
            in("rsi") f.error,
            in("rdx") f.rip,
            in("rcx") cr2,
            in("r8") f.cs,
            in("r9") f.rsp,
            in("r10") f.rflags,
            in("r11") reason,
            in("rax") 0u64,
            options(nostack, preserves_flags),
        );
    }
    halt_forever()
}

/// Reports a ring-3 exception in `f` to the monitor, which either ends the
/// program (never resumes) or resumes the vCPU with `rax` = where ring 3
/// continues: the libos's signal entry (`cabin_abi::hypercall::PORT_FAULT`,
/// docs/signals.md). Returns that address.
pub fn fault_or_redirect(f: &TrapFrame, cr2: u64, reason: u64) -> u64 {
    let target: u64;
    // SAFETY: as for `fault`; the monitor writes only `rax`.
    unsafe {
        asm!(
            "out {port}, al",
            port = const PORT_FAULT,
            in("rdi") f.vector,
            in("rsi") f.error,
            in("rdx") f.rip,
            in("rcx") cr2,
            in("r8") f.cs,
            in("r9") f.rsp,
            in("r10") f.rflags,
            in("r11") reason,
            inout("rax") 0u64 => target,
            options(nostack, preserves_flags),
        );
    }
    target
}

/// Stops this vCPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: `cli; hlt` only stops the vCPU (KVM then exits to the
        // monitor with a halt); no memory is touched.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// SEV-SNP: hands this vCPU to VMPL0 (GHCB MSR protocol "run VMPL"
/// request for VMPL 0, then `VMGEXIT`); returns when VMPL0 runs VMPL1
/// again. Only the `#VC` handler calls it (never reached on KVM).
pub fn run_vmpl0() {
    let req = crate::vc::RUN_VMPL0;
    // SAFETY: `wrmsr` of the GHCB MSR (not intercepted under SEV-ES/SNP)
    // and `VMGEXIT` (`rep vmmcall`, as bytes) only leave the guest; VMPL0
    // reads and writes the calling area meanwhile (hence no `nomem`).
    unsafe {
        asm!(
            "wrmsr",
            ".byte 0xf3, 0x0f, 0x01, 0xd9",
            in("ecx") crate::vc::MSR_SEV_GHCB,
            in("eax") req as u32,
            in("edx") (req >> 32) as u32,
            options(nostack),
        );
    }
}
