//! The two assembly entry points of the image.
//!
//! Neither saves vector registers: the libos is built soft-float for
//! `x86_64-unknown-none`, so no code reached from here touches x87, SSE or
//! AVX state, and the program's vector registers survive untouched.
//!
//! `cabin_syscall_entry` (generic path) builds an [`EntryFrame`] on the
//! program's stack (below the trampoline's red-zone skip) by pushing, in this
//! order: RFLAGS, rbx, r9, r8, r10, rdx, rsi, rdi, rax. The `const` checks
//! below tie that order to the struct.

use core::arch::naked_asm;
use core::mem::{offset_of, size_of};

use cabin_abi::link::trampoline::ENTRY_RSP_OFFSET;

use crate::dispatch::{cabin_dispatch, SyscallFrame, CONFINED};
use crate::forward::signals::{
    cabin_signal_exit, cabin_signal_kvm, cabin_signal_late, cabin_signal_return, Ctx, ATTENTION, CTX_SIZE,
};
use crate::forward::thread::{cabin_clone, CloneFrame};
use crate::rt::{cabin_relocate, cabin_rust_start};
use crate::sys::nr;

unsafe extern "C" {
    /// First byte of the blob (linker script).
    static __cabin_libos_base: u8;
    /// Start of the blob's relocation table (linker script).
    static __cabin_rela_start: u8;
    /// End of the blob's relocation table (linker script).
    static __cabin_rela_end: u8;
    /// End of the blob's code (linker script).
    static __cabin_libos_text_end: u8;
    /// First instruction of the exit window (below).
    static cabin_exit_window_start: u8;
    /// Past the last instruction of the exit window.
    static cabin_exit_window_end: u8;
}

/// The libos's code, `[start, end)`.
pub fn libos_text() -> [u64; 2] {
    // SAFETY: only the addresses of linker-script symbols are taken.
    unsafe { [&raw const __cabin_libos_base as u64, &raw const __cabin_libos_text_end as u64] }
}

/// Whether `rip` is in the exit window of `cabin_syscall_entry`: after its
/// last look at the attention word, every register but `rcx`/`r11` (which
/// a call clobbers) and RFLAGS is the program's again and the return
/// address is at `rsp`.
pub fn in_exit_window(rip: u64) -> bool {
    // SAFETY: only the addresses of two labels are taken.
    let (start, end) =
        unsafe { (&raw const cabin_exit_window_start as u64, &raw const cabin_exit_window_end as u64) };
    (start..end).contains(&rip)
}

/// The KVM signal entry's address (published in the boot page).
pub fn kvm_signal_entry() -> u64 {
    cabin_kvm_signal_entry as unsafe extern "C" fn() as usize as u64
}

/// The stack of `cabin_syscall_entry` after its pushes, lowest address first.
#[repr(C)]
struct EntryFrame {
    call: SyscallFrame,
    rbx: u64,
    rflags: u64,
    /// The trampoline's return address, pushed by its `call`.
    ret: u64,
}

const _: () = {
    assert!(offset_of!(EntryFrame, call) == 0);
    assert!(offset_of!(SyscallFrame, nr) == 0);
    assert!(offset_of!(SyscallFrame, args) == 8);
    assert!(offset_of!(EntryFrame, rbx) == 7 * 8);
    assert!(offset_of!(EntryFrame, rflags) == 8 * 8);
    assert!(offset_of!(EntryFrame, ret) == 9 * 8);
    assert!(size_of::<EntryFrame>() == 10 * 8);
};

const _: () = {
    // `cabin_clone`'s frame: rax, then the 12 registers pushed in the
    // reverse of their order in `CloneFrame::regs`, then RFLAGS and `ret`.
    assert!(offset_of!(CloneFrame, regs) == 8);
    assert!(offset_of!(CloneFrame, rflags) == 13 * 8);
    assert!(offset_of!(CloneFrame, ret) == 14 * 8);
};

/// Offset of the return address once only RFLAGS has been pushed.
const RET_AFTER_PUSHFQ: usize = offset_of!(EntryFrame, ret) - offset_of!(EntryFrame, rflags);

/// Image entry point. `rsp` points at `argc` as the kernel left it.
///
/// Applies the blob's relocations, calls the Rust start-up with the entry
/// `rsp` and the load base, then
/// enters the program with `rsp` exactly as on entry, `rdx` = 0 (no atexit
/// function) and every other general-purpose register zero. The target
/// address travels in the unused word just below the initial stack, because
/// no signal handler can exist yet to overwrite it.
///
/// # Safety
///
/// Only the kernel or a Cabin monitor may jump here, with a fresh process's
/// initial stack.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabin_start() -> ! {
    naked_asm!(
        "mov rbx, rsp",
        "and rsp, -16",
        "lea rdi, [rip + {base}]",
        "lea rsi, [rip + {rela_start}]",
        "lea rdx, [rip + {rela_end}]",
        "call {relocate}",
        "mov rdi, rbx",
        "lea rsi, [rip + {base}]",
        "call {start}",
        "mov rsp, rbx",
        "mov [rsp - 8], rax",
        "xor eax, eax",
        "xor ebx, ebx",
        "xor ecx, ecx",
        "xor edx, edx",
        "xor esi, esi",
        "xor edi, edi",
        "xor ebp, ebp",
        "xor r8d, r8d",
        "xor r9d, r9d",
        "xor r10d, r10d",
        "xor r11d, r11d",
        "xor r12d, r12d",
        "xor r13d, r13d",
        "xor r14d, r14d",
        "xor r15d, r15d",
        "jmp qword ptr [rsp - 8]",
        base = sym __cabin_libos_base,
        rela_start = sym __cabin_rela_start,
        rela_end = sym __cabin_rela_end,
        relocate = sym cabin_relocate,
        start = sym cabin_rust_start,
    )
}

/// System-call entry for trampolines (convention: `cabin_abi::link::trampoline`).
///
/// In: `rax` = number, arguments in `rdi, rsi, rdx, r10, r8, r9`, return
/// address at `[rsp]`, the site's `rsp` at `rsp + ENTRY_RSP_OFFSET`.
/// Out: `rax` = result; `rcx`, `r11` clobbered; everything else, RFLAGS
/// included, as on entry.
///
/// The generic path calls `cabin_dispatch(frame, ret)`: `ret` is the
/// trampoline's return address, which the confined path leaves in the ring as
/// the call's site hint (the monitor maps it back to the site).
///
/// Passthrough fast paths, taken before anything but RFLAGS is pushed:
/// - `rt_sigreturn`: issued with `rsp` back at the site's value, since the
///   kernel finds the signal frame there. Never returns.
/// - `clone` with a new stack (`rsi != 0`): the trampoline's return address is
///   stored at `rsi - ENTRY_RSP_OFFSET` and the child gets that as its stack,
///   so the child's `ret` lands in the trampoline, whose `lea rsp, [rsp +
///   RED_ZONE]` then yields exactly the requested stack. The call is issued
///   with the site's RFLAGS and registers, so the child starts with them
///   (and `rax` = 0). Afterwards parent and child do the same thing: put
///   back `rsi` (without touching flags) and `ret` — the parent from its
///   unchanged stack, the child from the slot on its new one.
///
/// Confined, `clone`, `clone3`, `fork` and `vfork` take the thread path:
/// every register of the site is saved ([`CloneFrame`]) and `cabin_clone`
/// starts a thread whose trampoline restores them (docs/threads.md), asks
/// the monitor for a child process that starts from the same frame
/// (docs/processes.md), or serves the call as any other.
///
/// # Safety
///
/// Only trampolines written by the Cabin rewriter may call this.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabin_syscall_entry() {
    naked_asm!(
        "pushfq",
        "cmp byte ptr [rip + {confined}], 0",
        "jne 6f",
        "cmp rax, {nr_sigreturn}",
        "je 3f",
        "cmp rax, {nr_clone}",
        "jne 2f",
        "test rsi, rsi",
        "jnz 4f",
        "jmp 2f",
        // Confined: the program's rt_sigreturn is the libos's; clone and
        // clone3 take the thread path.
        "6:",
        "cmp rax, {nr_sigreturn}",
        "je 8f",
        "cmp rax, {nr_clone}",
        "je 9f",
        "cmp rax, {nr_clone3}",
        "je 9f",
        // fork and vfork too (a child process starts from this frame).
        "cmp rax, {nr_fork}",
        "je 9f",
        "cmp rax, {nr_vfork}",
        "je 9f",
        // Generic path: save, call Rust with the frame, restore.
        "2:",
        "cld",
        "push rbx",
        "push r9",
        "push r8",
        "push r10",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rax",
        "mov rbx, rsp",
        "and rsp, -16",
        "mov rdi, rbx",
        "mov rsi, [rbx + {ret}]",
        "call {dispatch}",
        "mov rcx, [rip + {attention}]",
        "cmp qword ptr [rcx], 0",
        "jne 5f",
        "lea rsp, [rbx + {args}]",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop r10",
        "pop r8",
        "pop r9",
        "pop rbx",
        "popfq",
        // The exit window: a signal that arrives from here on is taken by
        // the kernel handler as if the program were at the return address.
        ".globl cabin_exit_window_start",
        ".hidden cabin_exit_window_start",
        "cabin_exit_window_start:",
        "mov rcx, [rip + {attention}]",
        "mov rcx, [rcx]",
        "jrcxz 7f",
        "jmp {late}",
        "7:",
        "ret",
        ".globl cabin_exit_window_end",
        ".hidden cabin_exit_window_end",
        "cabin_exit_window_end:",
        // rt_sigreturn: back to the site's rsp, registers as at the site.
        "3:",
        "lea rsp, [rsp + {sigreturn_rsp}]",
        "syscall",
        "ud2",
        // clone with a child stack.
        "4:",
        "mov rcx, [rsp + {ret_after_pushfq}]",
        "mov [rsi - {child_slot}], rcx",
        "lea rsi, [rsi - {child_slot}]",
        "popfq",
        "syscall",
        "lea rsi, [rsi + {child_slot}]",
        "ret",
        // Signals to take on the way out: the program's context from the
        // entry frame (rbx) and the callee-saved registers, below the entry
        // frame (the handler's frame then goes below this code's stack:
        // `signals::build_frame`).
        "5:",
        "lea rsp, [rbx - 16]",
        "and rsp, -16",
        "push 0",
        "lea rcx, [rbx + {frame_end}]",
        "push rcx",
        "push qword ptr [rbx + {rflags}]",
        "push 0",
        "push qword ptr [rbx + {ret}]",
        "push rax",
        "push qword ptr [rbx + {rbx_off}]",
        "push qword ptr [rbx + {ret}]",
        "push qword ptr [rbx + {rdx_off}]",
        "push qword ptr [rbx + {rsi_off}]",
        "push qword ptr [rbx + {rdi_off}]",
        "push rbp",
        "push qword ptr [rbx + {r8_off}]",
        "push qword ptr [rbx + {r9_off}]",
        "push qword ptr [rbx + {r10_off}]",
        "push qword ptr [rbx + {rflags}]",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov rdi, rsp",
        "mov rsi, [rbx]",
        "call {exit}",
        "mov rdi, rsp",
        "jmp {restore}",
        // The program's rt_sigreturn (confined): its rsp is the ucontext.
        "8:",
        "lea rdi, [rsp + {sigreturn_rsp}]",
        "jmp {sigreturn}",
        // Confined: clone and clone3 save every register.
        "9:",
        "cld",
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "push r9",
        "push r8",
        "push r10",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rax",
        "mov rbx, rsp",
        "and rsp, -16",
        "mov rdi, rbx",
        "call {clone}",
        "lea rsp, [rbx + 8]",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop r10",
        "pop r8",
        "pop r9",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "popfq",
        "ret",
        confined = sym CONFINED,
        nr_clone3 = const nr::clone3,
        nr_fork = const nr::fork,
        nr_vfork = const nr::vfork,
        clone = sym cabin_clone,
        nr_sigreturn = const nr::rt_sigreturn,
        nr_clone = const nr::clone,
        dispatch = sym cabin_dispatch,
        attention = sym ATTENTION,
        late = sym cabin_late_signal_entry,
        exit = sym cabin_signal_exit,
        restore = sym cabin_signal_restore,
        sigreturn = sym cabin_sigreturn_entry,
        args = const offset_of!(SyscallFrame, args),
        ret = const offset_of!(EntryFrame, ret),
        rflags = const offset_of!(EntryFrame, rflags),
        rbx_off = const offset_of!(EntryFrame, rbx),
        rdi_off = const offset_of!(SyscallFrame, args),
        rsi_off = const offset_of!(SyscallFrame, args) + 8,
        rdx_off = const offset_of!(SyscallFrame, args) + 16,
        r10_off = const offset_of!(SyscallFrame, args) + 24,
        r8_off = const offset_of!(SyscallFrame, args) + 32,
        r9_off = const offset_of!(SyscallFrame, args) + 40,
        frame_end = const size_of::<EntryFrame>(),
        sigreturn_rsp = const RET_AFTER_PUSHFQ as u64 + ENTRY_RSP_OFFSET,
        ret_after_pushfq = const RET_AFTER_PUSHFQ,
        child_slot = const ENTRY_RSP_OFFSET,
    )
}

const _: () = assert!(CTX_SIZE == size_of::<Ctx>() && CTX_SIZE % 16 == 0);

/// The program's `rt_sigreturn`, `rdi` = its `rsp` at the call (the
/// frame's `ucontext`): on the private stack, the context is read from the
/// frame (`cabin_signal_return`), then resumed.
///
/// # Safety
///
/// Only the entry paths of this file jump here.
#[unsafe(naked)]
pub unsafe extern "C" fn cabin_sigreturn_entry() {
    naked_asm!(
        "and rsp, -16",
        "sub rsp, {ctx}",
        "mov rsi, rdi",
        "mov rdi, rsp",
        "cld",
        "call {rust}",
        "mov rdi, rsp",
        "jmp {restore}",
        ctx = const CTX_SIZE,
        rust = sym cabin_signal_return,
        restore = sym cabin_signal_restore,
    )
}

/// Saves the program's registers as a [`Ctx`] below its red zone (`rip`,
/// `cs`, `ss` and `rsp` zero: `$rust` fills them; the program's `rsp` is
/// 128 bytes above the `Ctx`) and calls `$rust` with it, then resumes the
/// (possibly changed) context. Flags are untouched until `pushfq`.
macro_rules! signal_entry_body {
    ($rust:path) => {
        naked_asm!(
            "lea rsp, [rsp - 128]",
            "push 0",
            "push 0",
            "pushfq",
            "push 0",
            "push 0",
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
            "cld",
            "mov rbx, rsp",
            "and rsp, -16",
            "mov rdi, rbx",
            "call {rust}",
            "mov rdi, rbx",
            "jmp {restore}",
            rust = sym $rust,
            restore = sym cabin_signal_restore,
        )
    };
}

/// Entered from the exit window when a signal came after the last check:
/// every register is the program's (but `rcx`), the return address at `rsp`.
///
/// # Safety
///
/// Only the exit window jumps here.
#[unsafe(naked)]
pub unsafe extern "C" fn cabin_late_signal_entry() {
    signal_entry_body!(cabin_signal_late)
}

/// KVM: where the monitor sends a vCPU it stopped in program code, every
/// register the program's, `rip` and RFLAGS in the boot page's mailbox.
///
/// # Safety
///
/// Only the monitor's redirect enters here.
#[unsafe(naked)]
pub unsafe extern "C" fn cabin_kvm_signal_entry() {
    signal_entry_body!(cabin_signal_kvm)
}

/// Resumes the program from the [`Ctx`] at `rdi` with `iretq`, in ring 3:
/// the CPU itself keeps CS/SS at ring 3 and IOPL/IF as they are.
///
/// # Safety
///
/// `rdi` must point at a complete [`Ctx`] whose `cs`/`ss` are the current
/// ones (the Rust paths set them).
#[unsafe(naked)]
pub unsafe extern "C" fn cabin_signal_restore() -> ! {
    naked_asm!(
        "mov rsp, rdi",
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
        "iretq",
    )
}
