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
/// Confined, `clone` and `clone3` take the thread path: every register of
/// the site is saved ([`CloneFrame`]) and `cabin_clone` starts a thread whose
/// trampoline restores them (docs/threads.md), or serves the call as any
/// other.
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
        "lea rsp, [rbx + {args}]",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop r10",
        "pop r8",
        "pop r9",
        "pop rbx",
        "popfq",
        "ret",
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
        // Confined: clone and clone3 save every register.
        "6:",
        "cmp rax, {nr_clone}",
        "je 5f",
        "cmp rax, {nr_clone3}",
        "jne 2b",
        "5:",
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
        clone = sym cabin_clone,
        nr_sigreturn = const nr::rt_sigreturn,
        nr_clone = const nr::clone,
        dispatch = sym cabin_dispatch,
        args = const offset_of!(SyscallFrame, args),
        ret = const offset_of!(EntryFrame, ret),
        sigreturn_rsp = const RET_AFTER_PUSHFQ as u64 + ENTRY_RSP_OFFSET,
        ret_after_pushfq = const RET_AFTER_PUSHFQ,
        child_slot = const ENTRY_RSP_OFFSET,
    )
}
