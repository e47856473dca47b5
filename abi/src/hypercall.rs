//! Hypercalls: how code in a KVM (or, later, SEV-SNP) domain calls the monitor.
//!
//! A hypercall is an `out` to one of the I/O ports below, which ends the
//! vCPU's run with an I/O exit that the monitor handles before resuming it.
//! Arguments travel in general-purpose registers, which the monitor reads
//! and writes while the vCPU is stopped. Each port has one meaning and one
//! register convention:
//!
//! | port | from | registers in | registers out |
//! |---|---|---|---|
//! | [`PORT_DOORBELL`] | ring 3 (libos) | `eax` = [`DOORBELL_WAIT`] or [`DOORBELL_WAKE`] | none |
//! | [`PORT_DOORBELL`] | ring 3 (libos) | `eax` = [`DOORBELL_PROTECT`], `rdi, rsi, rdx` = address, length, `PROT_*` | `rax` = 0 or `-errno` |
//! | [`PORT_DOORBELL`] | ring 3 (libos) | `eax` = [`DOORBELL_EXIT`], `rdi` = exit status | never resumed |
//! | [`PORT_DOORBELL`] | ring 3 (libos) | `eax` = [`DOORBELL_FUTEX`], `rdi, rsi, rdx, r10, r8, r9` = `futex` arguments | `rax` = result or `-errno` |
//! | [`PORT_SYSCALL`] | ring 0 (proxy-kernel) | `rax` = number, `rdi, rsi, rdx, r10, r8, r9` = arguments, `rcx` = return address | `rax` = result; or `rcx` changed: redirect (below) |
//! | [`PORT_FAULT`] | ring 0 (proxy-kernel) | see [`fault`] | never resumed; or, for a ring-3 exception, `rax` = where ring 3 resumes (the libos's signal entry) |
//!
//! The domain's I/O permission bitmap lets ring 3 reach [`PORT_DOORBELL`]
//! only; an `out` to any other port from ring 3 faults (#GP) instead of
//! exiting, so the ring-0 ports can only be used by the proxy-kernel.

/// Ring 3 → monitor: ring doorbell (wake the worker and/or wait for a
/// completion). The only port ring 3 may use.
pub const PORT_DOORBELL: u16 = 0xE0;
/// Proxy-kernel → monitor: serve one system call synchronously (slow path).
///
/// Redirect: when the monitor returns with `rcx` changed, it did not serve
/// the call; the proxy-kernel then resumes ring 3 at the new `rcx` (the
/// libos's trap entry, see `crate::boot::BootInfo::kvm_trap_entry`) with
/// every register as at the `syscall`, `rcx` = the return address and `rsp`
/// lowered by the red zone (128 bytes), as a trampoline would call the libos.
/// Only the page-fault form of the gate can redirect.
pub const PORT_SYSCALL: u16 = 0xE1;
/// Proxy-kernel → monitor: the program took a fault. The monitor ends it,
/// or (a ring-3 exception the program has a handler for: docs/signals.md)
/// resumes the vCPU with `rax` = the libos's signal entry, having written
/// the fault into the boot page's `sig_mailbox`; the proxy-kernel then
/// returns to ring 3 there with every register as at the fault but `rip`
/// and RFLAGS (sanitised, TF cleared).
pub const PORT_FAULT: u16 = 0xE2;

/// [`PORT_DOORBELL`] value: new submissions are on the ring; wake the
/// monitor's worker and return at once.
pub const DOORBELL_WAKE: u32 = 1;
/// [`PORT_DOORBELL`] value: wake the worker, and return only once the
/// completion queue holds an entry the libos has not consumed yet.
pub const DOORBELL_WAIT: u32 = 2;
/// [`PORT_DOORBELL`] value: change the protection of program pages, as
/// `mprotect` would: `rdi` = address, `rsi` = length, `rdx` = `PROT_*`
/// (`PROT_READ`, `PROT_WRITE` or none; never `PROT_EXEC`). The monitor
/// checks the range lies inside one protectable range of the domain
/// (`crate::boot::BootInfo::protectable`, its own copy), edits the page
/// tables, makes the vCPU's TLB forget the old entries before it resumes,
/// and returns the result in `rax` (0 or `-errno`, as `mprotect`).
pub const DOORBELL_PROTECT: u32 = 3;
/// [`PORT_DOORBELL`] value: commit part of the reservation space
/// (`crate::boot::BootInfo::reserve_start`): `rdi` = address, `rsi` =
/// length, `rdx` = `PROT_*` (read/write bits only), `r10` = the arena
/// address of the pages to map there, or 0 to release the range (it
/// becomes unmapped reservation again). The monitor checks both ranges
/// against its own layout, edits the page tables and flushes the TLB
/// when a mapping is replaced or removed; `rax` = 0 or `-errno`.
pub const DOORBELL_COMMIT: u32 = 4;
/// [`PORT_DOORBELL`] value: end the calling thread (its vCPU), as a raw
/// `exit` system call would, without the ring-0 trap of the slow-path
/// gate: `rdi` = the exit status (its low 8 bits count). The monitor wakes
/// the ring's worker first (the libos posts the thread's exit on its ring
/// without ringing: docs/threads.md) and never resumes the vCPU; the last
/// thread's end is the program's, as with `exit`.
pub const DOORBELL_EXIT: u32 = 5;
/// [`PORT_DOORBELL`] value: a `futex` call of the calling thread served by
/// its vCPU's own host thread, without the ring (docs/threads.md, "Futex
/// fast path"): `rdi, rsi, rdx, r10, r8, r9` = `uaddr, op, val, timeout,
/// uaddr2, val3` as the system call takes them; `rax` = its result.
/// Served: `FUTEX_WAIT`, `FUTEX_WAIT_BITSET` with the bit set matching
/// every waker (the vCPU thread sleeps on the host futex of the word, and
/// wakes for a wake on it, its timeout, or a kick of the vCPU: then
/// `-EINTR`), `FUTEX_WAKE`, `FUTEX_WAKE_BITSET`; any other operation is
/// `-ENOSYS` (the libos sends it on the ring). The word is checked as the
/// ring's `futex` checks it (the program's data, 4-aligned: `EFAULT`,
/// `EINVAL`).
pub const DOORBELL_FUTEX: u32 = 6;

pub mod fault {
    //! Register convention of [`super::PORT_FAULT`]: `rdi` = vector, `rsi` = error code (0 when the vector has none),
    //! `rdx` = faulting `rip`, `rcx` = `cr2`, `r8` = `cs` of the interrupted
    //! code, `r9` = its `rsp`, `r10` = its `rflags`, `r11` = the
    //! proxy-kernel's reason code (`REASON_*`).

    /// An exception the program caused (or a ring-0 fault: see `cs`).
    pub const REASON_EXCEPTION: u64 = 0;
    /// The slow-path gate found a return state it must not restore
    /// (non-canonical return address).
    pub const REASON_BAD_GATE_RETURN: u64 = 1;
    /// The proxy-kernel itself panicked (a bug in it).
    pub const REASON_KERNEL_PANIC: u64 = 2;
    /// `syscall` from compatibility (32-bit) mode reached the `MSR_CSTAR`
    /// entry, or arrived as a page fault at it: the program is ended
    /// (Cabin has no 32-bit system-call ABI). `rdx` = the return address
    /// `syscall` saved; `cs` = 3 (ring 3, selector not known).
    pub const REASON_COMPAT_SYSCALL: u64 = 3;
    /// `sysenter` reached the `MSR_SYSENTER_EIP` entry (it never should:
    /// `SYSENTER_CS` is 0, so the instruction raises #GP): the program is
    /// ended. `rdx` = 0 (`sysenter` saves no return address); `cs` = 3.
    pub const REASON_SYSENTER: u64 = 4;
    /// `cs` reported with [`REASON_COMPAT_SYSCALL`] and [`REASON_SYSENTER`]:
    /// requested privilege level 3, the program's.
    pub const LEGACY_ENTRY_CS: u64 = 3;
}
