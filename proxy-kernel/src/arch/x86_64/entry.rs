//! The blob header, the 256 vector stubs, the common trap entry and the
//! `syscall` entry, in assembly; and the Rust trap handler they call.
//!
//! Every stub pushes an error code (0 where the CPU pushes none: the list in
//! `.if` below is [`crate::trap::has_error_code`]) and its vector, then
//! jumps to `pk_common`, which pushes the general registers in the order of
//! [`TrapFrame`], calls [`pk_trap`] and returns with `iretq`. The kernel
//! stack is the TSS's `RSP0` (traps from ring 3) or the current one.
//!
//! `pk_syscall_entry` is the `MSR_LSTAR` target where `syscall` works as
//! architected (ordinary KVM): it runs in ring 0 on the program's stack, so
//! it touches no memory at all: one hypercall with the program's registers
//! as they are, then `sysretq` to `rcx`/`r11`, which the `syscall`
//! instruction itself set (a program cannot forge them on this path). The
//! monitor never redirects a call made on this path (it would change the
//! `sysretq` target); only the page-fault form of the gate redirects.
//!
//! `pk_compat_syscall_entry` (`MSR_CSTAR`: `syscall` from 32-bit code) and
//! `pk_sysenter_entry` (`MSR_SYSENTER_EIP`) are the other two ways into
//! ring 0 without an IDT gate. Cabin has no 32-bit system calls and no
//! `sysenter`, so both only report the program's fault and stop, touching
//! no memory (they run on whatever stack the program left, with whatever
//! `RFLAGS.AC` it chose). The GDT has no 32-bit code segment and
//! `SYSENTER_CS` is 0, so neither should ever run; they are there so that
//! every entry MSR names proxy-kernel code that ends the program.
//!
//! Ring 0 never reads or writes user memory: the stubs and `pk_common`
//! use only the kernel stack (`TSS.RSP0`, or the IST stack), the trap frame
//! on it and registers; the hypercalls pass registers. So SMAP needs no
//! `stac`/`clac` here, and a program that sets `RFLAGS.AC` before trapping
//! gains nothing.

use core::arch::{asm, global_asm};
use core::mem::offset_of;

use cabin_abi::hypercall::fault::{
    LEGACY_ENTRY_CS, REASON_BAD_GATE_RETURN, REASON_COMPAT_SYSCALL, REASON_EXCEPTION, REASON_KERNEL_PANIC,
    REASON_SYSENTER,
};
use cabin_abi::hypercall::{PORT_FAULT, PORT_SYSCALL};

use super::hypercall;
use crate::header::{MAGIC, STUB_SIZE, VECTORS, VERSION};
use crate::trap::{
    classify, gate_redirect, gate_return, signal_redirect, vector, Trap, TrapFrame, SAVED_GPRS,
};

const _: () = {
    assert!(offset_of!(TrapFrame, r15) == 0);
    assert!(offset_of!(TrapFrame, rax) == (SAVED_GPRS - 1) * 8);
    assert!(offset_of!(TrapFrame, vector) == SAVED_GPRS * 8);
    assert!(STUB_SIZE == 16);
};

global_asm!(
    ".section .text.pk_header,\"ax\"",
    ".globl __pk_base",
    "__pk_base:",
    ".quad {magic}",
    ".long {version}",
    ".long {vectors}",
    ".quad pk_vectors - __pk_base",
    ".quad {stub_size}",
    ".quad pk_syscall_entry - __pk_base",
    ".quad __pk_end - __pk_base",
    ".quad pk_compat_syscall_entry - __pk_base",
    ".quad pk_sysenter_entry - __pk_base",
    ".p2align 4",
    "pk_vectors:",
    ".set pk_vec, 0",
    ".rept {vectors}",
    ".p2align 4",
    ".if (pk_vec == 8) || (pk_vec == 10) || (pk_vec == 11) || (pk_vec == 12) || (pk_vec == 13) || (pk_vec == 14) || (pk_vec == 17) || (pk_vec == 21) || (pk_vec == 29) || (pk_vec == 30)",
    ".else",
    "push 0",
    ".endif",
    "push pk_vec",
    ".if pk_vec == {vc}",
    "jmp pk_vc_common",
    ".else",
    "jmp pk_common",
    ".endif",
    ".set pk_vec, pk_vec + 1",
    ".endr",
    ".p2align 4",
    "pk_common:",
    "push rax",
    "push rbx",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rbp",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov rdi, rsp",
    "cld",
    "call {trap}",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rbp",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbx",
    "pop rax",
    "add rsp, 16",
    "iretq",
    ".p2align 4",
    ".globl pk_syscall_entry",
    "pk_syscall_entry:",
    "out {port_syscall}, al",
    "sysretq",
    // #VC (SEV-ES/SNP only; never on KVM): the same frame as pk_common, on
    // the vCPU's #VC stack (TSS.IST3), handled by pk_vc.
    ".p2align 4",
    "pk_vc_common:",
    "push rax",
    "push rbx",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rbp",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov rdi, rsp",
    "cld",
    "call {vc_trap}",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rbp",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbx",
    "pop rax",
    "add rsp, 16",
    "iretq",
    // `syscall` from 32-bit code: report (vector #GP, rip = the return
    // address in rcx, rflags from r11, the program's rsp) and stop.
    ".p2align 4",
    ".globl pk_compat_syscall_entry",
    "pk_compat_syscall_entry:",
    "mov rdx, rcx",
    "mov r10, r11",
    "mov r11d, {reason_compat}",
    "jmp pk_legacy_report",
    // `sysenter`: no return address or flags were saved.
    ".p2align 4",
    ".globl pk_sysenter_entry",
    "pk_sysenter_entry:",
    "xor edx, edx",
    "xor r10d, r10d",
    "mov r11d, {reason_sysenter}",
    "pk_legacy_report:",
    "mov edi, {gp}",
    "xor esi, esi",
    "xor ecx, ecx",
    "mov r8d, {legacy_cs}",
    "mov r9, rsp",
    "xor eax, eax",
    "out {port_fault}, al",
    "2:",
    "cli",
    "hlt",
    "jmp 2b",
    magic = const MAGIC,
    version = const VERSION,
    vectors = const VECTORS,
    stub_size = const STUB_SIZE,
    port_syscall = const PORT_SYSCALL,
    port_fault = const PORT_FAULT,
    reason_compat = const REASON_COMPAT_SYSCALL,
    reason_sysenter = const REASON_SYSENTER,
    legacy_cs = const LEGACY_ENTRY_CS,
    gp = const crate::trap::vector::GP,
    trap = sym pk_trap,
    vc_trap = sym pk_vc,
    vc = const crate::trap::vector::VC_EXCEPTION,
);

fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading cr2 has no side effect; we run in ring 0.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

fn syscall_entry_address() -> u64 {
    let v: u64;
    // SAFETY: a RIP-relative `lea` of a symbol in this blob; no memory access.
    unsafe { asm!("lea {}, [rip + pk_syscall_entry]", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

fn compat_entry_address() -> u64 {
    let v: u64;
    // SAFETY: as above.
    unsafe {
        asm!("lea {}, [rip + pk_compat_syscall_entry]", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// The Rust half of every trap.
///
/// # Safety
///
/// Called only by `pk_common`, with `frame` pointing at the [`TrapFrame`] it
/// just built on the kernel stack.
unsafe extern "C" fn pk_trap(frame: *mut TrapFrame) {
    // SAFETY: by this function's contract the frame is valid, exclusive and
    // lives until we return.
    let f = unsafe { &mut *frame };
    let cr2 = read_cr2();
    match classify(f, cr2, syscall_entry_address(), compat_entry_address()) {
        Trap::SyscallGate => {
            let Some((rip, rflags)) = gate_return(f.rcx, f.r11) else {
                hypercall::fault(f, cr2, REASON_BAD_GATE_RETURN)
            };
            let (rax, rcx) = hypercall::syscall(f.rax, [f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9], f.rcx);
            if rcx == f.rcx {
                f.rax = rax;
                f.rip = rip;
                f.rflags = rflags;
            } else {
                // Redirect into the libos's trap entry; rax (the number),
                // the arguments and rcx (the return address) stay as they are.
                let Some((rip, rsp, rflags)) = gate_redirect(rcx, f.rsp, f.r11) else {
                    hypercall::fault(f, cr2, REASON_BAD_GATE_RETURN)
                };
                f.rip = rip;
                f.rsp = rsp;
                f.rflags = rflags;
            }
        }
        Trap::CompatSyscall => {
            // Reported as the CSTAR entry reports it: the return address
            // `syscall` saved in rcx, flags from r11.
            let g = TrapFrame {
                rip: f.rcx,
                rflags: f.r11,
                cs: LEGACY_ENTRY_CS,
                vector: vector::GP,
                error: 0,
                ..*f
            };
            hypercall::fault(&g, 0, REASON_COMPAT_SYSCALL)
        }
        Trap::Exception if f.cs & 3 == 3 => {
            // A program fault: the monitor may send ring 3 to the libos's
            // signal entry (the program's handler), every register as at
            // the fault but `rip` and RFLAGS, which the monitor keeps for
            // the libos. Nothing of user memory is touched here.
            let target = hypercall::fault_or_redirect(f, cr2, REASON_EXCEPTION);
            match signal_redirect(target, f.rflags) {
                Some((rip, rflags)) => {
                    f.rip = rip;
                    f.rflags = rflags;
                }
                None => hypercall::halt_forever(),
            }
        }
        Trap::Exception => hypercall::fault(f, cr2, REASON_EXCEPTION),
    }
}

/// The Rust half of a `#VC` (SEV-ES/SNP: vector 29, error code = the exit
/// code; see [`crate::vc`]). Nothing is served here: the trap goes to VMPL0
/// as a request in this vCPU's calling area, and the registers VMPL0 sends
/// back (results, `rip` past the instruction) are applied to the frame.
/// VMPL0 ends the program instead of answering when it must not go on.
///
/// # Safety
///
/// Called only by `pk_vc_common`, with `frame` pointing at the
/// [`TrapFrame`] it built on the vCPU's `#VC` stack (`TSS.IST3`), whose top
/// is the vCPU's calling area (`cabin_kvm::layout::vc_stack_top`).
unsafe extern "C" fn pk_vc(frame: *mut TrapFrame) {
    let area = (frame as usize).wrapping_add(core::mem::size_of::<TrapFrame>());
    if area % crate::vc::ghcb::SIZE != 0 {
        // Not on the #VC stack (cannot happen: the gate has an IST). No
        // request to write: VMPL0 finds none and ends the program.
        loop {
            hypercall::run_vmpl0();
        }
    }
    // SAFETY: by this function's contract the frame is valid and exclusive;
    // `area` is the page right above the #VC stack, mapped supervisor
    // read-write for this vCPU alone (its calling area) and not otherwise
    // referenced while the handler runs (a nested #VC would reuse the
    // stack and area, but nothing here raises one).
    let (f, page) = unsafe { (&mut *frame, &mut *(area as *mut [u8; crate::vc::ghcb::SIZE])) };
    let mut g = crate::vc::Ghcb::new(page);
    crate::vc::write_request(&mut g, f);
    loop {
        hypercall::run_vmpl0();
        if crate::vc::apply_response(&g.view(), f) {
            if crate::vc::response_flushes(&g.view()) {
                // SAFETY: rewriting CR3 with its own value only drops this
                // vCPU's cached non-global (user) translations: the monitor
                // edited the page tables.
                unsafe {
                    asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack, preserves_flags))
                };
            }
            return;
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    let f = TrapFrame::default();
    hypercall::fault(&f, 0, REASON_KERNEL_PANIC)
}
