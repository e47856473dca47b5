//! Threads of a confined program: how many, where their rings are, and the
//! two thread submissions the libos puts on a ring (docs/threads.md).
//!
//! Every program thread has a *slot* `k` in `0..MAX_THREADS` (slot 0 is the
//! main thread) and its own ring: ring `k` lies at `BootInfo::ring + k *
//! RING_BYTES` ([`ring_offset`]). A slot is in use from the monitor's
//! acceptance of the [`ThreadStart`] that claimed it until the thread's
//! exit submission; the monitor keeps its own table of slots and never
//! trusts the libos's.
//!
//! Creating a thread: the libos of the parent thread reserves a free slot
//! `k` in its own table, fills a [`ThreadStart`] in its memory and submits,
//! on the parent's ring with the flag `crate::ring::SUB_THREAD`, `nr =
//! clone` (56) with `args[0]` = the address of the `ThreadStart`, `args[1]`
//! = `size_of::<ThreadStart>()` and the other arguments 0. The monitor
//! copies the structure once, validates it (op, slot range, slot free in its
//! table, the flags a [`THREAD_FLAGS_REQUIRED`] set with nothing outside
//! [`THREAD_FLAGS_ALLOWED`], the thread limit), starts a worker for ring `k`
//! at the slot's first thread, and asks the domain to start the thread. The
//! completion is:
//!
//! - `-errno`: refused (`EAGAIN`: no free slot or the thread limit;
//!   `EINVAL`: a malformed request; `EFAULT`: a bad pointer; `EBUSY`: the
//!   slot is in use), nothing was started and slot `k` stays free in the
//!   monitor's table;
//! - `0`: accepted, and the libos starts the native thread itself (process
//!   backend: a native `clone` with the same flags, child stack
//!   [`ThreadStart::stack`], entry through the libos's thread trampoline;
//!   the process backend's libos does not wait for this answer, see
//!   docs/threads.md). If that native `clone` fails, the libos sends a
//!   [`THREAD_OP_CANCEL`] `ThreadStart` for slot `k` on the parent's ring,
//!   which frees it;
//! - `> 0`: the domain started the thread (KVM backend: a vCPU at
//!   [`ThreadStart::entry`] with `rsp` = [`ThreadStart::stack`], GS base =
//!   [`ThreadStart::gs_base`], FS base = [`ThreadStart::tls`] when
//!   `CLONE_SETTLS`), and the value is its thread id.
//!
//! Ending a thread: `nr = exit` (60) with `SUB_THREAD`, `args[0]` = status,
//! on the thread's own ring. The monitor frees the slot, then answers 0 (the
//! ring's worker serves on, for the slot's next thread); the libos frees its
//! own slot once the answer is there. Rings are never reset once in use: a
//! slot's next thread continues with the ring's indices. Of the main thread
//! alone, `exit` ends the program (the libos issues `exit_group`).

/// Most threads a program can have at once (rings in the ring region).
pub const MAX_THREADS: usize = 64;

/// Bytes of the ring region: [`MAX_THREADS`] rings of
/// [`crate::ring::RING_BYTES`], contiguous.
pub const RING_REGION_BYTES: usize = MAX_THREADS * crate::ring::RING_BYTES;

/// Offset of ring `slot` from the start of the ring region.
pub const fn ring_offset(slot: usize) -> usize {
    slot * crate::ring::RING_BYTES
}

/// `clone` flag bits (Linux `sched.h`).
pub mod clone_flags {
    /// Share the address space.
    pub const CLONE_VM: u64 = 0x0000_0100;
    /// Share the filesystem information.
    pub const CLONE_FS: u64 = 0x0000_0200;
    /// Share the descriptor table.
    pub const CLONE_FILES: u64 = 0x0000_0400;
    /// Share signal handlers.
    pub const CLONE_SIGHAND: u64 = 0x0000_0800;
    /// Same thread group.
    pub const CLONE_THREAD: u64 = 0x0001_0000;
    /// Share System V semaphore undo lists.
    pub const CLONE_SYSVSEM: u64 = 0x0004_0000;
    /// Set the new thread's FS base (`tls`).
    pub const CLONE_SETTLS: u64 = 0x0008_0000;
    /// Store the child's tid at `parent_tid` (in the parent).
    pub const CLONE_PARENT_SETTID: u64 = 0x0010_0000;
    /// Clear (and futex-wake) `child_tid` when the child exits.
    pub const CLONE_CHILD_CLEARTID: u64 = 0x0020_0000;
    /// Store the child's tid at `child_tid` (in the child).
    pub const CLONE_CHILD_SETTID: u64 = 0x0100_0000;
}

use clone_flags::*;

/// The flags every thread-creating `clone` has (glibc, musl, Rust std, Go).
pub const THREAD_FLAGS_REQUIRED: u64 = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD;

/// Every flag a thread-creating `clone` may carry (the low byte, the exit
/// signal, must be 0 for a thread).
pub const THREAD_FLAGS_ALLOWED: u64 = THREAD_FLAGS_REQUIRED
    | CLONE_SYSVSEM
    | CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID
    | CLONE_CHILD_SETTID;

/// Is `flags` a thread set Cabin creates (all of [`THREAD_FLAGS_REQUIRED`],
/// nothing outside [`THREAD_FLAGS_ALLOWED`], no exit signal)?
pub const fn is_thread_flags(flags: u64) -> bool {
    flags & THREAD_FLAGS_REQUIRED == THREAD_FLAGS_REQUIRED && flags & !THREAD_FLAGS_ALLOWED == 0
}

/// [`ThreadStart::op`]: claim slot `slot` and start a thread there.
pub const THREAD_OP_START: u32 = 1;
/// [`ThreadStart::op`]: the libos could not start the native thread of an
/// accepted [`THREAD_OP_START`] for `slot`: free the slot (only valid for a
/// slot started by a request from the same ring whose thread has never
/// submitted anything on its own ring).
pub const THREAD_OP_CANCEL: u32 = 2;
/// [`ThreadStart::op`]: the libos queued a signal for the thread of `slot`
/// (`tgkill`, `tkill`, `rt_tgsigqueueinfo` from another thread): interrupt
/// that thread's worker out of a blocking host call and wake the domain's
/// threads once, so that it takes the signal (docs/signals.md). Only
/// `op` and `slot` are read; the answer is 0, or `EINVAL` for a slot that
/// is not a started thread's.
pub const THREAD_OP_SIGNAL: u32 = 3;

/// A thread submission's payload, in the submitting libos's memory. All of
/// it is untrusted: the monitor copies it once and validates every field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadStart {
    /// `THREAD_OP_*`.
    pub op: u32,
    /// The slot (`0 < slot < MAX_THREADS`).
    pub slot: u32,
    /// The `clone` flags as the program gave them.
    pub flags: u64,
    /// Where the new thread starts (the libos's thread trampoline).
    pub entry: u64,
    /// The new thread's initial `rsp` (on the program's child stack, below
    /// the frame the libos prepared there for the trampoline).
    pub stack: u64,
    /// The new thread's FS base (`CLONE_SETTLS`; else 0).
    pub tls: u64,
    /// `CLONE_PARENT_SETTID`: where the tid goes (in the parent).
    pub parent_tid: u64,
    /// `CLONE_CHILD_SETTID` / `CLONE_CHILD_CLEARTID`: the child's tid word.
    pub child_tid: u64,
    /// The new thread's GS base: the libos's thread block for `slot`.
    pub gs_base: u64,
    /// The value of `rdi` the trampoline receives (the libos's use).
    pub arg: u64,
    /// Reserved, zero.
    pub reserved: [u64; 3],
}

const _: () = assert!(core::mem::size_of::<ThreadStart>() == 96);

impl ThreadStart {
    /// Size in bytes (the submission's `args[1]`).
    pub const SIZE: usize = core::mem::size_of::<ThreadStart>();

    /// Decodes a copy of the structure (little-endian, the layout above).
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> ThreadStart {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(w)
        };
        ThreadStart {
            op: u32_at(0),
            slot: u32_at(4),
            flags: u64_at(8),
            entry: u64_at(16),
            stack: u64_at(24),
            tls: u64_at(32),
            parent_tid: u64_at(40),
            child_tid: u64_at(48),
            gs_base: u64_at(56),
            arg: u64_at(64),
            reserved: [u64_at(72), u64_at(80), u64_at(88)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_flag_sets() {
        // glibc's pthread_create (clone3 and clone) and musl.
        let glibc =
            THREAD_FLAGS_REQUIRED | CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
        assert!(is_thread_flags(glibc));
        // Go: no SETTID/CLEARTID, no SYSVSEM.
        assert!(is_thread_flags(THREAD_FLAGS_REQUIRED | CLONE_SYSVSEM | CLONE_SETTLS));
        // fork-like and vfork-like sets, an exit signal, stray bits: no.
        assert!(!is_thread_flags(17));
        assert!(!is_thread_flags(glibc | 17));
        assert!(!is_thread_flags(glibc & !CLONE_VM));
        assert!(!is_thread_flags(glibc | 0x4000)); // CLONE_VFORK
        assert!(!is_thread_flags(glibc | 0x8000_0000)); // CLONE_IO
        assert_eq!(ring_offset(3), 3 * crate::ring::RING_BYTES);
        let mut b = [0u8; ThreadStart::SIZE];
        b[0] = 1;
        b[4] = 5;
        b[56] = 0x40;
        let t = ThreadStart::from_bytes(&b);
        assert_eq!((t.op, t.slot, t.gs_base), (THREAD_OP_START, 5, 0x40));
    }
}
