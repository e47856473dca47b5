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

/// `xrstor64 [src]` of the features in `mask`, followed by the PKRU check
/// ([`cabin_abi::pkru::PKRU_CHECK`], spelled out below: the process
/// backend refuses to claim execute-only for an image with an `xrstor` not
/// followed by exactly those bytes). A program that jumps straight to this
/// `xrstor` with a mask and area of its choosing ends there if PKRU
/// changed. PKRU is never in `mask` here (the
/// signal code leaves it out of the features it saves and restores).
///
/// # Safety
///
/// `src` must be a 64-byte aligned, valid standard-format XSAVE area.
#[inline(never)]
pub unsafe fn cabin_fpu_xrstor(src: *const u8, mask: u64) {
    // SAFETY: by the contract; the check uses 8 bytes of stack (pushfq,
    // popfq) and keeps the flags.
    unsafe {
        asm!(
            ".byte 0x48, 0x0f, 0xae, 0x2f",
            ".byte 0x9c, 0x31, 0xc9, 0x0f, 0x01, 0xd0, 0xa9, 0x00, 0x02, 0x00, 0x00, 0x74, 0x1f",
            ".byte 0x31, 0xc9, 0x0f, 0x01, 0xee, 0x25, 0x54, 0x55, 0x55, 0x55",
            ".byte 0x3d, 0x54, 0x55, 0x55, 0x55, 0x74, 0x0e",
            ".byte 0xbf, 0x8b, 0x00, 0x00, 0x00, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x0f, 0x0b, 0x9d",
            in("rdi") src,
            inout("eax") mask as u32 => _,
            inout("edx") (mask >> 32) as u32 => _,
            out("ecx") _,
            options(preserves_flags, readonly)
        )
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
