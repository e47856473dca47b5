//! The Cabin libos: the small `no_std` runtime that the rewriter links into
//! every Cabin image.
//!
//! It provides the image entry point (`cabin_start`), which checks the
//! link-time facts the rewriter left in [`link`], repairs the auxiliary
//! vector and jumps to the program's original entry, and the system-call
//! entry (`cabin_syscall_entry`) that every rewritten site's trampoline
//! calls. Started by the kernel it runs in *passthrough* mode and performs
//! each system call itself; started by a Cabin monitor (auxv `AT_CABIN_BOOT`)
//! it runs *confined* and hands calls to [`forward`].
//!
//! The image build compiles it for `x86_64-unknown-none`: soft-float, so the
//! compiler emits no SSE/AVX instruction and the entry never has to save
//! vector state. It must never use floating point, `core::fmt` or a heap;
//! the few absolute addresses the compiler may put in statics are fixed up
//! by [`reloc`] at start. Raw `syscall` instructions live in [`sys`] only.
//! The pure logic ([`stack`], [`link`], [`dispatch`], [`reloc`]) also builds
//! and unit-tests on the host. Decisions: `libos/DESIGN.md`.
#![cfg_attr(not(test), no_std)]

mod arch;
pub mod dispatch;
pub mod forward;
pub mod link;
pub mod reloc;
pub mod stack;

#[cfg(target_os = "none")]
mod rt;

pub use arch::x86_64::sys;

/// Exit status of a program the libos has to stop (bad image, panic, ...).
pub const EXIT_LIBOS_FAILURE: u64 = 127;

/// Writes `msg` to standard error and ends the whole program with
/// [`EXIT_LIBOS_FAILURE`].
pub fn die(msg: &[u8]) -> ! {
    sys::write_all(sys::STDERR, msg);
    sys::exit_group(EXIT_LIBOS_FAILURE)
}

#[cfg(all(not(test), target_os = "none"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The panic message is deliberately not formatted: core::fmt would grow
    // the blob and pull in data that needs run-time relocation.
    die(b"cabin: internal error in the libos (panic)\n")
}
