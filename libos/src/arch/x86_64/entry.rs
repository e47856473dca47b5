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
    cabin_kernel_prepare, cabin_signal_exit, cabin_signal_kvm, cabin_signal_late, cabin_signal_return, Ctx,
    KernelReturn, ATTENTION, CTX_SIZE,
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
    /// First instruction of the resume window of `cabin_kernel_return`.
    static cabin_resume_window_start: u8;
    /// The `iretq` that ends the resume window.
    static cabin_resume_window_iretq: u8;
    /// Past the `iretq`.
    static cabin_resume_window_end: u8;
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

/// Bytes `cabin_kernel_return` adds to `rsp` before its `iretq` (the
/// general registers of the [`Ctx`]).
const RESUME_GPRS: u64 = 15 * 8;

/// If `rip` is in the resume window of [`cabin_kernel_return`] (after the
/// signal mask is back, before the `iretq` has resumed the program), the
/// address of the [`Ctx`] it is resuming, found from that `rsp`: a signal
/// taken there is the program's at that context, and the caller treats it
/// so (the window only reads the `Ctx`, never changes it).
pub fn resume_window_ctx(rip: u64, rsp: u64) -> Option<u64> {
    // SAFETY: only the addresses of three labels are taken.
    let (start, iretq, end) = unsafe {
        (
            &raw const cabin_resume_window_start as u64,
            &raw const cabin_resume_window_iretq as u64,
            &raw const cabin_resume_window_end as u64,
        )
    };
    if (start..iretq).contains(&rip) {
        Some(rsp)
    } else if (iretq..end).contains(&rip) {
        Some(rsp.wrapping_sub(RESUME_GPRS))
    } else {
        None
    }
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

/// Defines a process-backend kernel signal handler (`sa_handler` with
/// `SA_SIGINFO`): calls `$rust(sig, info, uc)` on the private stack, then
/// resumes the (possibly edited) context of the kernel's `ucontext` with
/// [`cabin_kernel_return`], never with the host's `rt_sigreturn`. With
/// `reuse`, `$rust` returns the address of an abandoned resume-window
/// [`KernelReturn`] for the return to resume from (0: none; see
/// [`cabin_kernel_return`]); without it, the return uses no such place.
macro_rules! kernel_handler {
    ($(#[$m:meta])* $name:ident => $rust:path) => {
        kernel_handler!($(#[$m])* $name => $rust, "xor esi, esi");
    };
    ($(#[$m:meta])* $name:ident => $rust:path, reuse) => {
        kernel_handler!($(#[$m])* $name => $rust, "mov rsi, rax");
    };
    ($(#[$m:meta])* $name:ident => $rust:path, $reuse:literal) => {
        $(#[$m])*
        ///
        /// # Safety
        ///
        /// Only the host kernel enters here, as a signal handler.
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name() {
            naked_asm!(
                // The kernel enters with rsp + 8 16-byte aligned (as after
                // a call): keep `uc` and call with the stack aligned.
                "push rdx",
                "cld",
                "call {rust}",
                "pop rdi",
                $reuse,
                "jmp {ret}",
                rust = sym $rust,
                ret = sym cabin_kernel_return,
            )
        }
    };
}

kernel_handler!(
    /// SIGSYS (the seccomp filter's trap path).
    cabin_kernel_sigsys => crate::forward::signals::on_sigsys
);
kernel_handler!(
    /// SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP.
    cabin_kernel_fault => crate::forward::signals::on_fault
);
kernel_handler!(
    /// The signals the monitor forwards and its wake signal.
    cabin_kernel_async => crate::forward::signals::on_async, reuse
);

/// Returns from a kernel signal handler to the context in the kernel's
/// `ucontext` at `rdi`, without the host's `rt_sigreturn` (which the
/// seccomp filter refuses: Linux would load PKRU from the frame's XSAVE
/// area, docs/execute-only.md):
///
/// 1. `cabin_kernel_prepare` copies the context into a [`Ctx`] below the
///    frame (RFLAGS reduced to what ring 3 may set, the current CS/SS),
///    copies `uc_sigmask`, and restores the FP/SSE/AVX state from the
///    frame's `fpstate` with an `xrstor` whose feature mask never has PKRU,
///    followed by the PKRU check (or `fxrstor`);
/// 2. `rt_sigprocmask(SIG_SETMASK, &mask, NULL, 8)` with
///    [`cabin_abi::boot::KERNEL_MASK_MAGIC`] in `r8` (the only form the
///    filter lets through);
/// 3. the resume window: the general registers from the `Ctx` (loads only:
///    `rsp` stays at the `Ctx` until one `lea`), then `iretq` in ring 3.
///
/// A signal the restored mask lets in is taken by the kernel in the resume
/// window, on the private stack below the `Ctx` (the thread is still on its
/// alternate stack); the handler sees the window's `rip` and takes the
/// signal as the program's at the `Ctx` ([`resume_window_ctx`]), so no
/// signal waits for the program's next call. The FP state is the program's
/// already there. Flags are never touched by the window's instructions.
///
/// Such a nested handler abandons the outer return: its [`KernelReturn`]
/// is never resumed. So that a stream of signals (the wake signal is a
/// real-time one: every `kill` of it is queued, and each is taken in the
/// resume window of the previous one's return) does not nest frame below
/// frame until the alternate stack overflows (the kernel then kills the
/// thread with a SIGSEGV no handler sees), the nested handler's return
/// gets the abandoned [`KernelReturn`]'s address in `rsi` and, once
/// `cabin_kernel_prepare` has read the kernel's frame, copies its own
/// [`KernelReturn`] there and resumes from it: every level of nesting
/// resumes from the same place, and the depth stays one frame.
///
/// A program that jumps into any of this with registers of its choosing
/// gets what ring 3 can do anyway: an `iretq` to ring 3 with the current
/// CS/SS, an `xrstor` that cannot load PKRU (and the check after it), a
/// native signal mask of its own (see `KERNEL_MASK_MAGIC`).
///
/// # Safety
///
/// Only the kernel handlers above jump here, `rdi` their `ucontext`,
/// `rsi` 0 or a 16-aligned place for the [`KernelReturn`] above the
/// kernel's frame (`signals::on_async` checks it).
#[unsafe(naked)]
pub unsafe extern "C" fn cabin_kernel_return() -> ! {
    naked_asm!(
        "mov rbx, rsi",
        "and rsp, -16",
        "sub rsp, {space}",
        "mov rsi, rsp",
        "call {prepare}",
        "test rbx, rbx",
        "jz 2f",
        // The abandoned outer return's place: copy the KernelReturn up
        // (source below this frame, destination above it: disjoint; DF
        // is clear, as the Rust ABI leaves it) and resume from there.
        "mov rsi, rsp",
        "mov rdi, rbx",
        "mov ecx, {space_words}",
        "rep movsq",
        "mov rsp, rbx",
        "2:",
        "mov eax, {nr_mask}",
        "mov edi, 2",
        "lea rsi, [rsp + {mask}]",
        "xor edx, edx",
        "mov r10d, 8",
        "mov r8, {magic}",
        "syscall",
        ".globl cabin_resume_window_start",
        ".hidden cabin_resume_window_start",
        "cabin_resume_window_start:",
        "mov r15, [rsp]",
        "mov r14, [rsp + 8]",
        "mov r13, [rsp + 16]",
        "mov r12, [rsp + 24]",
        "mov r11, [rsp + 32]",
        "mov r10, [rsp + 40]",
        "mov r9, [rsp + 48]",
        "mov r8, [rsp + 56]",
        "mov rbp, [rsp + 64]",
        "mov rdi, [rsp + 72]",
        "mov rsi, [rsp + 80]",
        "mov rdx, [rsp + 88]",
        "mov rcx, [rsp + 96]",
        "mov rbx, [rsp + 104]",
        "mov rax, [rsp + 112]",
        "lea rsp, [rsp + {gprs}]",
        ".globl cabin_resume_window_iretq",
        ".hidden cabin_resume_window_iretq",
        "cabin_resume_window_iretq:",
        "iretq",
        ".globl cabin_resume_window_end",
        ".hidden cabin_resume_window_end",
        "cabin_resume_window_end:",
        "ud2",
        space = const size_of::<KernelReturn>(),
        space_words = const size_of::<KernelReturn>() / 8,
        prepare = sym cabin_kernel_prepare,
        nr_mask = const nr::rt_sigprocmask,
        mask = const offset_of!(KernelReturn, mask),
        magic = const cabin_abi::boot::KERNEL_MASK_MAGIC,
        gprs = const RESUME_GPRS,
    )
}

const _: () = assert!(offset_of!(KernelReturn, ctx) == 0 && size_of::<KernelReturn>() % 16 == 0);
const _: () = assert!(offset_of!(Ctx, rip) as u64 == RESUME_GPRS && offset_of!(Ctx, rax) == 112);

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
