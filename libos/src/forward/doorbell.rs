//! The KVM domain's ring-3 doorbell: one `out` to
//! `cabin_abi::hypercall::PORT_DOORBELL` with the operation in `eax` and its
//! arguments in the system call's argument registers. The vCPU exits to the
//! monitor, which serves the operation (`backends/kvm/src/exit.rs`) and
//! writes at most `rax` before it resumes the vCPU (or never resumes it:
//! `DOORBELL_EXIT`). Only the KVM backend has the port; the process backend
//! never calls this.

/// Rings the doorbell with `op` (a `cabin_abi::hypercall::DOORBELL_*`) and
/// the arguments `a` in `rdi, rsi, rdx, r10, r8, r9`; the monitor's `rax`
/// (0 or `-errno` for the operations that answer, unspecified otherwise).
pub(super) fn ring(op: u32, a: [u64; 6]) -> i64 {
    let r: u64;
    // SAFETY: an `out` to the one port the domain's I/O bitmap allows ring
    // 3. The monitor may read and write program memory the operation names
    // (a futex word and its timeout, reservation pages it maps, protections
    // it changes: never the libos's own memory), so this is not `nomem`; it
    // changes no register but `rax`.
    unsafe {
        core::arch::asm!(
            "out {port}, al",
            port = const cabin_abi::hypercall::PORT_DOORBELL,
            inlateout("rax") u64::from(op) => r,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            options(nostack, preserves_flags),
        );
    }
    r as i64
}
