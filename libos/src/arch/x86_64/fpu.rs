//! The FP/vector state instructions of the signal paths, the only ones in
//! the libos (`rewriter/tests/libos_blob.rs` allows them in these
//! functions and nowhere else): a handler's frame holds the program's FP
//! state in Linux's layout, and the program's `rt_sigreturn` puts it back.
//! The rest of the libos never touches FP state (soft-float), so the live
//! registers are always the program's own outside a kernel handler.
//!
//! Encoded as bytes: the `x86_64-unknown-none` target disables the
//! features these mnemonics belong to.

#![cfg_attr(not(target_os = "none"), allow(dead_code))]

use core::arch::asm;

/// `xsave64 [dst]` of the features in `mask`.
///
/// # Safety
///
/// `dst` must be 64-byte aligned and writable for the XSAVE size of
/// `mask`, its XSAVE header zeroed; XSAVE must be usable.
#[inline(never)]
pub unsafe fn cabin_fpu_xsave(dst: *mut u8, mask: u64) {
    // SAFETY: by the contract.
    unsafe {
        asm!(".byte 0x48, 0x0f, 0xae, 0x27", in("rdi") dst, in("eax") mask as u32, in("edx") (mask >> 32) as u32,
            options(nostack, preserves_flags))
    }
}

/// `xrstor64 [src]` of the features in `mask`.
///
/// # Safety
///
/// `src` must be a 64-byte aligned, valid standard-format XSAVE area.
#[inline(never)]
pub unsafe fn cabin_fpu_xrstor(src: *const u8, mask: u64) {
    // SAFETY: by the contract.
    unsafe {
        asm!(".byte 0x48, 0x0f, 0xae, 0x2f", in("rdi") src, in("eax") mask as u32, in("edx") (mask >> 32) as u32,
            options(nostack, preserves_flags, readonly))
    }
}

/// `fxsave64 [dst]`.
///
/// # Safety
///
/// `dst` must be 16-byte aligned and writable for 512 bytes.
#[inline(never)]
pub unsafe fn cabin_fpu_fxsave(dst: *mut u8) {
    // SAFETY: by the contract.
    unsafe { asm!(".byte 0x48, 0x0f, 0xae, 0x07", in("rdi") dst, options(nostack, preserves_flags)) }
}

/// `fxrstor64 [src]`.
///
/// # Safety
///
/// `src` must be a 16-byte aligned legacy area with a valid MXCSR.
#[inline(never)]
pub unsafe fn cabin_fpu_fxrstor(src: *const u8) {
    // SAFETY: by the contract.
    unsafe {
        asm!(".byte 0x48, 0x0f, 0xae, 0x0f", in("rdi") src, options(nostack, preserves_flags, readonly))
    }
}

pub use cabin_fpu_fxrstor as fxrstor;
pub use cabin_fpu_fxsave as fxsave;
pub use cabin_fpu_xrstor as xrstor;
pub use cabin_fpu_xsave as xsave;

/// `xgetbv` with `ecx` = 0: XCR0, the features XSAVE saves.
///
/// # Safety
///
/// XSAVE must be usable (CPUID.1:ECX.XSAVE).
#[inline(never)]
pub unsafe fn cabin_fpu_xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: by the contract; reads a register only.
    unsafe {
        asm!(".byte 0x0f, 0x01, 0xd0", in("ecx") 0u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags))
    };
    u64::from(lo) | u64::from(hi) << 32
}
