//! Program threads (docs/threads.md): the per-thread libos blocks found
//! through the GS base, `clone`/`clone3` of a thread flag set, thread exit,
//! thread identity and the robust list, and the lock the libos's shared
//! state uses.
//!
//! Each thread's GS base points at its slot's [`Block`] (`gs:[0]` is the
//! block's own address). The block holds the slot, the thread's ring and the
//! thread's own libos state; every field is atomic, so other threads may read
//! it (the tids, for `tgkill`) and the program scribbling on it only
//! confuses its own libos.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use cabin_abi::link::trampoline::ENTRY_RSP_OFFSET;
use cabin_abi::ring::{RingPtr, RING_BYTES, SUB_THREAD};
use cabin_abi::thread::{
    clone_flags::CLONE_SETTLS, is_thread_flags, ThreadStart, MAX_THREADS, THREAD_OP_CANCEL, THREAD_OP_SIGNAL,
    THREAD_OP_START,
};

use super::{errno, nr};
use crate::sys::syscall6;

/// One thread's libos state. `repr(C)`: the KVM trap entry reaches
/// [`Block::kvm_trapped`] and [`Block::kvm_trap_after`] at fixed offsets
/// from GS.
#[repr(C, align(64))]
pub(crate) struct Block {
    /// The block's own address (`mov rax, gs:[0]`).
    self_addr: AtomicU64,
    /// The thread's slot.
    pub(crate) slot: AtomicU64,
    /// KVM: non-zero while `cabin_kvm_trap_entry` runs a redirected call.
    pub(crate) kvm_trapped: AtomicU64,
    /// KVM: the address after the trapping instruction of that call.
    pub(crate) kvm_trap_after: AtomicU64,
    /// The thread's ring (its base; 0: none yet).
    ring: AtomicU64,
    /// The monitor's `sq_head` on this ring as last read.
    pub(crate) sq_head_seen: AtomicU32,
    /// The thread's id (0: not known yet).
    tid: AtomicU32,
    /// The FS base last set (`ARCH_GET_FS`).
    pub(crate) fs_base: AtomicU64,
    /// While `dispatch` re-issues a call in force-trap mode: its site hint.
    pub(crate) forced_site: AtomicU64,
    /// `set_tid_address` / `CLONE_CHILD_CLEARTID` word.
    clear_tid: AtomicU64,
    /// `set_robust_list` head.
    robust_head: AtomicU64,
    /// The ring index of the thread's exit submission (see [`EXITING`]).
    exit_index: AtomicU32,
    /// The ring index + 1 of the request this thread posted without
    /// waiting for its answer (`ring_client::post`), not consumed yet (0:
    /// none).
    pub(crate) posted: AtomicU32,
    /// The `ThreadStart` of this thread's last posted start, as words: it
    /// must outlive the post (the monitor reads it later); the thread
    /// rewrites it only after its next post drained the answer.
    start: [AtomicU64; ThreadStart::SIZE / 8],
    /// The thread's blocked signals (docs/signals.md; a new thread inherits
    /// its creator's).
    pub(crate) sigmask: AtomicU64,
    /// The thread's futex waits since its last spin that saw its word
    /// change (`futex_path`: the spin is left out while it does not pay).
    pub(crate) futex_misses: AtomicU32,
    /// The thread's forwarded readiness waits (`epoll_wait`, `poll`,
    /// `select`...) since the last whose long completion spin saw the
    /// answer (`ring_client`: the spin is left out while it does not pay).
    pub(crate) wait_misses: AtomicU32,
    /// The thread's alternate signal stack (`stack_t`: `ss_sp`, `ss_flags`,
    /// `ss_size`): per thread, as on Linux. A new thread starts without one
    /// (Go gives every thread its own and takes a signal on any other stack
    /// for a foreign thread's); a fork child keeps its parent's (same block).
    pub(crate) altstack: [AtomicU64; 3],
    /// The program's stack pointer at the call being served (`sigaltstack`'s
    /// `SS_ONSTACK` test).
    pub(crate) site_rsp: AtomicU64,
    /// The last forwarded call of this thread that the monitor interrupted
    /// for a signal: its number + 1 (0: none; `signals::take_interrupted`).
    pub(crate) interrupted_call: AtomicU64,
    /// The mask an `rt_sigsuspend` of this thread puts back once its
    /// signal's frame is built (bit 63 = valid; `signals::suspend_epilogue`).
    pub(crate) suspend_restore: AtomicU64,
}

/// Offset of [`Block::kvm_trapped`] from GS.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) const KVM_TRAPPED_OFFSET: usize = core::mem::offset_of!(Block, kvm_trapped);
/// Offset of [`Block::kvm_trap_after`] from GS.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) const KVM_TRAP_AFTER_OFFSET: usize = core::mem::offset_of!(Block, kvm_trap_after);

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Block = Block {
    self_addr: AtomicU64::new(0),
    slot: AtomicU64::new(0),
    kvm_trapped: AtomicU64::new(0),
    kvm_trap_after: AtomicU64::new(0),
    ring: AtomicU64::new(0),
    sq_head_seen: AtomicU32::new(0),
    tid: AtomicU32::new(0),
    fs_base: AtomicU64::new(0),
    forced_site: AtomicU64::new(0),
    clear_tid: AtomicU64::new(0),
    robust_head: AtomicU64::new(0),
    exit_index: AtomicU32::new(0),
    posted: AtomicU32::new(0),
    start: [const { AtomicU64::new(0) }; ThreadStart::SIZE / 8],
    sigmask: AtomicU64::new(0),
    futex_misses: AtomicU32::new(0),
    wait_misses: AtomicU32::new(0),
    altstack: [AtomicU64::new(0), AtomicU64::new(super::signals::SS_DISABLE), AtomicU64::new(0)],
    site_rsp: AtomicU64::new(0),
    interrupted_call: AtomicU64::new(0),
    suspend_restore: AtomicU64::new(0),
};

static BLOCKS: [Block; MAX_THREADS] = [EMPTY; MAX_THREADS];

/// Slots in use in the libos's table (bit `k`: slot `k`).
static USED: AtomicU64 = AtomicU64::new(0);
/// Slots whose thread has exited without waiting for the monitor's answer
/// (bit `k`: slot `k`, still set in [`USED`]): reusable once the answer to
/// its exit submission is on its ring (the monitor frees its own slot first).
static EXITING: AtomicU64 = AtomicU64::new(0);
/// Threads alive (started and not exited).
static LIVE: AtomicU32 = AtomicU32::new(1);
/// Domain address of ring 0, rings in the region, the thread limit.
static RING_BASE: AtomicU64 = AtomicU64::new(0);
static RING_COUNT: AtomicU32 = AtomicU32::new(1);
static LIMIT: AtomicU32 = AtomicU32::new(1);
/// Process backend: native `futex`, `arch_prctl(ARCH_SET_GS)` and `clone`.
pub(super) static PROCESS: AtomicBool = AtomicBool::new(false);

/// The calling thread's block.
#[inline(always)]
pub(crate) fn current() -> &'static Block {
    #[cfg(target_os = "none")]
    {
        let p: u64;
        // SAFETY: reads one word at the GS base; the libos set GS to a block
        // at start-up (slot 0) and in the thread trampoline.
        unsafe {
            core::arch::asm!("mov {}, gs:[0]", out(reg) p, options(nostack, readonly, preserves_flags));
        }
        let base = BLOCKS.as_ptr() as u64;
        let off = p.wrapping_sub(base);
        let size = core::mem::size_of::<Block>() as u64;
        match BLOCKS.get((off / size) as usize) {
            Some(b) if off.is_multiple_of(size) => b,
            // The program moved GS: its libos cannot find its thread.
            _ => crate::die(b"cabin: the GS base no longer points at a libos thread block; stopping\n"),
        }
    }
    #[cfg(not(target_os = "none"))]
    {
        &BLOCKS[0]
    }
}

impl Block {
    /// The thread's ring (`None` before start-up).
    pub(crate) fn ring(&self) -> Option<RingPtr> {
        match self.ring.load(Ordering::Relaxed) {
            0 => None,
            // SAFETY: set from the boot page's validated ring region (64-byte
            // aligned rings, mapped for the domain's life).
            r => Some(unsafe { RingPtr::new(r as *mut u8) }),
        }
    }

    fn reset(&'static self, slot: usize, fs_base: u64) {
        let ring = RING_BASE.load(Ordering::Relaxed) + (slot * RING_BYTES) as u64;
        self.self_addr.store(self as *const Block as u64, Ordering::Relaxed);
        self.slot.store(slot as u64, Ordering::Relaxed);
        self.kvm_trapped.store(0, Ordering::Relaxed);
        self.kvm_trap_after.store(0, Ordering::Relaxed);
        self.ring.store(ring, Ordering::Relaxed);
        self.sq_head_seen.store(0, Ordering::Relaxed);
        self.tid.store(0, Ordering::Relaxed);
        self.fs_base.store(fs_base, Ordering::Relaxed);
        self.forced_site.store(0, Ordering::Relaxed);
        self.clear_tid.store(0, Ordering::Relaxed);
        self.robust_head.store(0, Ordering::Relaxed);
        self.exit_index.store(0, Ordering::Relaxed);
        self.posted.store(0, Ordering::Relaxed);
        self.futex_misses.store(0, Ordering::Relaxed);
        self.wait_misses.store(0, Ordering::Relaxed);
        for (w, v) in self.altstack.iter().zip([0, super::signals::SS_DISABLE, 0]) {
            w.store(v, Ordering::Relaxed);
        }
        self.site_rsp.store(0, Ordering::Relaxed);
        self.interrupted_call.store(0, Ordering::Relaxed);
        self.suspend_restore.store(0, Ordering::Relaxed);
        // Slot 0 is set up before GS points anywhere; others by their creator.
        let mask = if slot == 0 { 0 } else { current().sigmask.load(Ordering::SeqCst) };
        self.sigmask.store(mask, Ordering::SeqCst);
    }
}

fn set_gs(addr: u64) -> bool {
    if PROCESS.load(Ordering::Relaxed) {
        const ARCH_SET_GS: u64 = 0x1001;
        // SAFETY: sets this thread's GS base to a libos block; the filter
        // allows it; no memory is touched.
        return unsafe { syscall6(nr::arch_prctl, &[ARCH_SET_GS, addr, 0, 0, 0, 0]) } == 0;
    }
    #[cfg(target_os = "none")]
    // SAFETY: KVM ring 3 with CR4.FSGSBASE (the monitor enables it); sets
    // only this thread's GS base.
    unsafe {
        core::arch::asm!("wrgsbase {}", in(reg) addr, options(nostack, preserves_flags));
    }
    true
}

/// Start-up (main thread, slot 0): the ring region, the limits, block 0 and
/// the GS base. `false` if GS cannot be set.
pub(super) fn init(ring: u64, ring_count: u32, limit: u32, pid: u32, process: bool) -> bool {
    RING_BASE.store(ring, Ordering::Relaxed);
    let count = ring_count.clamp(1, MAX_THREADS as u32);
    RING_COUNT.store(count, Ordering::Relaxed);
    LIMIT.store(limit.clamp(1, count), Ordering::Relaxed);
    PROCESS.store(process, Ordering::Relaxed);
    USED.store(1, Ordering::Relaxed);
    let b = &BLOCKS[0];
    b.reset(0, 0);
    b.tid.store(pid, Ordering::Relaxed);
    set_gs(b as *const Block as u64)
}

/// Rings in the ring region (more than 1: the program can have threads).
pub(super) fn ring_count() -> u32 {
    RING_COUNT.load(Ordering::Relaxed)
}

/// Reserves a free slot (not 0), within the limit.
fn reserve() -> Option<usize> {
    let count = RING_COUNT.load(Ordering::Relaxed) as usize;
    let limit = LIMIT.load(Ordering::Relaxed);
    let mut cur = USED.load(Ordering::Acquire);
    loop {
        if cur.count_ones() >= limit {
            return None;
        }
        let k = (1..count).find(|&k| cur & (1 << k) == 0)?;
        match USED.compare_exchange_weak(cur, cur | (1 << k), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(k),
            Err(now) => cur = now,
        }
    }
}

fn release(slot: usize) {
    USED.fetch_and(!(1u64 << slot), Ordering::Release);
}

/// Frees the slots of exited threads whose exit the monitor has answered.
fn reclaim() {
    let exiting = EXITING.load(Ordering::Acquire);
    for k in (0..MAX_THREADS).filter(|k| exiting & (1 << k) != 0) {
        let b = &BLOCKS[k];
        let index = b.exit_index.load(Ordering::Relaxed);
        if let Some(r) = b.ring().filter(|r| r.completion_ready(index)) {
            // The ring goes on for the slot's next thread (the monitor does
            // not reset it): consume the exit's answer for the thread that
            // could not.
            r.cq_head().store(index.wrapping_add(1), Ordering::Release);
            EXITING.fetch_and(!(1u64 << k), Ordering::AcqRel);
            release(k);
        }
    }
}

/// Most times a `clone` waits (yielding) for the slot of an exited thread
/// whose exit the monitor has not answered yet, before it answers `EAGAIN`.
const RECLAIM_TRIES: u32 = 100_000;

/// A free slot, waiting for exited threads' slots when that is all there is.
fn reserve_waiting() -> Option<usize> {
    for _ in 0..RECLAIM_TRIES {
        reclaim();
        if let Some(k) = reserve() {
            return Some(k);
        }
        if EXITING.load(Ordering::Acquire) == 0 {
            return None;
        }
        yield_now();
    }
    None
}

fn yield_now() {
    if PROCESS.load(Ordering::Relaxed) {
        // SAFETY: sched_yield touches no memory.
        unsafe { syscall6(nr::sched_yield, &[0; 6]) };
    } else {
        core::hint::spin_loop();
    }
}

/// The registers of a `clone`/`clone3` site, as `cabin_syscall_entry`
/// pushed them (lowest address first), then RFLAGS and the trampoline's
/// return address.
#[repr(C)]
#[derive(Debug)]
pub struct CloneFrame {
    /// The call number (`rax`).
    pub nr: u64,
    /// `rdi, rsi, rdx, r10, r8, r9, r15, r14, r13, r12, rbp, rbx`.
    pub regs: [u64; 12],
    /// RFLAGS at the site.
    pub rflags: u64,
    /// The trampoline's return address.
    pub ret: u64,
}

/// Words of the frame the thread trampoline pops: GS base, the 12 registers,
/// RFLAGS; the return address follows.
const CHILD_WORDS: u64 = 14;

/// A thread-creating request, from `clone` or `clone3`.
struct Req {
    flags: u64,
    stack: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
}

/// `clone3`'s `struct clone_args` (first 64 bytes, `CLONE_ARGS_SIZE_VER0`).
fn clone3_req(args: u64, size: u64) -> Result<Option<Req>, i64> {
    if !(64..=4096).contains(&size) || args == 0 || !args.is_multiple_of(8) {
        return Err(-errno::EINVAL);
    }
    let mut w = [0u64; 11];
    let n = if size >= 88 { 11 } else { 8 };
    for (i, word) in w.iter_mut().enumerate().take(n) {
        // SAFETY: the program's own `clone_args`, read as the kernel would;
        // a bad pointer faults in the program's own domain.
        *word = unsafe { (args as *const u64).add(i).read_volatile() };
    }
    let [flags, _pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, _] =
        w;
    let flags = flags | exit_signal;
    if !is_thread_flags(flags) || set_tid != 0 || set_tid_size != 0 {
        return Ok(None);
    }
    if stack == 0 || stack_size == 0 {
        return Err(-errno::EINVAL);
    }
    Ok(Some(Req { flags, stack: stack.wrapping_add(stack_size), ptid: parent_tid, ctid: child_tid, tls }))
}

/// `clone`/`clone3` from a rewritten site (called by `cabin_syscall_entry`
/// with the site's full register frame): a thread flag set starts a thread
/// (docs/threads.md), any other goes the way it always went.
///
/// # Safety
///
/// Only `cabin_syscall_entry` calls this, with the frame it pushed.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) unsafe extern "C" fn cabin_clone(f: *mut CloneFrame) -> i64 {
    // SAFETY: the entry's frame on the program's stack, ours for this call.
    let f = unsafe { &mut *f };
    let args = [f.regs[0], f.regs[1], f.regs[2], f.regs[3], f.regs[4], f.regs[5]];
    // A child process (issue 14): `fork`, `vfork`, a process `clone`.
    match super::fork::request(f.nr, &args) {
        Ok(Some(p)) => return super::fork::fork(f, &p),
        Err(e) => return e,
        Ok(None) => {}
    }
    let req = if f.nr == nr::clone {
        let [flags, stack, ptid, ctid, tls, _] = args;
        if is_thread_flags(flags) {
            if stack == 0 {
                return -errno::EINVAL;
            }
            Ok(Some(Req { flags, stack, ptid, ctid, tls }))
        } else {
            Ok(None)
        }
    } else {
        clone3_req(args[0], args[1])
    };
    match req {
        Err(e) => e,
        Ok(None) => super::serve(f.nr, &args, false, f.ret),
        Ok(Some(r)) => spawn(f, &r),
    }
}

/// Posts `ts` from the calling thread (block `me`) without waiting; the
/// request lives in `me` until the answer is drained. `false`: no ring.
fn post_start(me: &Block, ts: &ThreadStart) -> bool {
    // The answer to the previous posted start first, so its request is read.
    super::ring_client::drain_posted();
    let words = [
        u64::from(ts.op) | u64::from(ts.slot) << 32,
        ts.flags,
        ts.entry,
        ts.stack,
        ts.tls,
        ts.parent_tid,
        ts.child_tid,
        ts.gs_base,
        ts.arg,
        0,
        0,
        0,
    ];
    for (w, v) in me.start.iter().zip(words) {
        w.store(v, Ordering::Relaxed);
    }
    let args = [me.start.as_ptr() as u64, ThreadStart::SIZE as u64, 0, 0, 0, 0];
    super::ring_client::post(nr::clone, &args, SUB_THREAD).is_some()
}

fn thread_call(ts: &ThreadStart, site: u64) -> i64 {
    let args = [ts as *const ThreadStart as u64, ThreadStart::SIZE as u64, 0, 0, 0, 0];
    let r = super::ring_client::call(nr::clone, &args, SUB_THREAD, site);
    if r < -4095 {
        crate::die(b"cabin: the monitor's answer to a thread request is not a tid or -errno; stopping\n");
    }
    r
}

fn spawn(f: &CloneFrame, r: &Req) -> i64 {
    // Read-ahead keeps one stage for the whole program: it ends before the
    // second thread exists (while this is the only thread); so does the
    // local answer to `close` (one thread's table view).
    super::readahead::disable();
    super::closing::disable();
    let Some(k) = reserve_waiting() else { return -errno::EAGAIN };
    let me = current();
    let b = &BLOCKS[k];
    let fs = if r.flags & CLONE_SETTLS != 0 { r.tls } else { me.fs_base.load(Ordering::Relaxed) };
    b.reset(k, fs);
    // Nothing queued for an earlier thread of this slot is the new one's.
    super::sigqueue::QUEUE.discard_target(k as u64 + 1);
    // The trampoline's frame, just below where the trampoline's `ret` slot
    // sits for the child's stack (as for a passthrough clone).
    let ret_slot = r.stack.wrapping_sub(ENTRY_RSP_OFFSET);
    let frame = ret_slot.wrapping_sub(CHILD_WORDS * 8);
    let mut words = [0u64; CHILD_WORDS as usize + 1];
    words[0] = b as *const Block as u64;
    words[1..13].copy_from_slice(&f.regs);
    words[13] = f.rflags;
    words[14] = f.ret;
    for (i, w) in words.iter().enumerate() {
        // SAFETY: the program's child stack, which it handed to clone for
        // the new thread; a bad one faults in the program's own domain.
        unsafe { (frame as *mut u64).add(i).write_volatile(*w) };
    }
    let mut ts = ThreadStart {
        op: THREAD_OP_START,
        slot: k as u32,
        flags: r.flags,
        entry: thread_entry(),
        stack: frame,
        tls: if r.flags & CLONE_SETTLS != 0 { r.tls } else { 0 },
        parent_tid: r.ptid,
        child_tid: r.ctid,
        gs_base: b as *const Block as u64,
        arg: 0,
        reserved: [0; 3],
    };
    if !PROCESS.load(Ordering::Relaxed) {
        // KVM: the domain starts the thread before it answers, and the
        // thread's tid is pid + slot (the monitor's virtual tid): known
        // before the thread can ask for it.
        b.tid.store(super::state().pid.wrapping_add(k as u32), Ordering::Relaxed);
    }
    // Process backend: the monitor's answer is not awaited: it can only
    // refuse what this libos does not ask (a slot in its own table is free
    // in the monitor's too, since the monitor frees a slot before it answers
    // the exit; the thread limit is the boot page's), and the process's
    // threads are the kernel's to make anyway. Every ring was set up before
    // the program ran, so the thread may use its ring at once.
    let answer = if PROCESS.load(Ordering::Relaxed) {
        if !post_start(me, &ts) {
            release(k);
            return -errno::EAGAIN;
        }
        0
    } else {
        thread_call(&ts, f.ret)
    };
    if answer < 0 {
        release(k);
        return answer;
    }
    LIVE.fetch_add(1, Ordering::AcqRel);
    if answer > 0 {
        b.tid.store(answer as u32, Ordering::Relaxed);
        return answer;
    }
    // SAFETY: a thread clone of this process, with the program's flags and
    // tid pointers, its TLS, and a child stack holding the trampoline's
    // frame; the child continues in `cabin_thread_start` only.
    let t = unsafe { native_clone(r.flags, frame, r.ptid, r.ctid, r.tls) };
    if t < 0 {
        LIVE.fetch_sub(1, Ordering::AcqRel);
        ts.op = THREAD_OP_CANCEL;
        // After the start's answer (drained first): the slot is the
        // monitor's to free.
        thread_call(&ts, f.ret);
        release(k);
        return t;
    }
    b.tid.store(t as u32, Ordering::Relaxed);
    t
}

#[cfg(target_os = "none")]
fn thread_entry() -> u64 {
    cabin_thread_start as unsafe extern "C" fn() -> ! as usize as u64
}

#[cfg(not(target_os = "none"))]
fn thread_entry() -> u64 {
    0
}

#[cfg(target_os = "none")]
unsafe fn native_clone(flags: u64, sp: u64, ptid: u64, ctid: u64, tls: u64) -> i64 {
    // SAFETY: forwarded from the caller.
    unsafe { cabin_native_clone(flags, sp, ptid, ctid, tls) }
}

#[cfg(not(target_os = "none"))]
unsafe fn native_clone(_flags: u64, _sp: u64, _ptid: u64, _ctid: u64, _tls: u64) -> i64 {
    -errno::ENOSYS
}

/// The native `clone` of a thread: the child, on the stack `sp` that holds
/// the trampoline's frame, continues in [`cabin_thread_start`].
///
/// # Safety
///
/// `sp` must hold the frame `spawn` writes.
#[cfg(target_os = "none")]
#[unsafe(naked)]
unsafe extern "C" fn cabin_native_clone(flags: u64, sp: u64, ptid: u64, ctid: u64, tls: u64) -> i64 {
    core::arch::naked_asm!(
        "mov r10, rcx",
        "mov eax, {nr_clone}",
        "syscall",
        "test rax, rax",
        "jz {start}",
        "ret",
        nr_clone = const nr::clone,
        start = sym cabin_thread_start,
    )
}

/// Where a new thread starts (`ThreadStart::entry`): `rsp` at the frame
/// `spawn` wrote. Sets the GS base to the thread's block (process: the
/// native call; KVM: `wrgsbase`, the vCPU may have set it already),
/// restores the program's registers and RFLAGS, and returns to the
/// program's call site with `rax` = 0 and `rsp` the program's child stack.
///
/// # Safety
///
/// Entered only by a new thread, on the frame `spawn` wrote.
#[cfg(target_os = "none")]
#[unsafe(naked)]
unsafe extern "C" fn cabin_thread_start() -> ! {
    core::arch::naked_asm!(
        "cmp byte ptr [rip + {process}], 0",
        "je 1f",
        "mov eax, {nr_arch_prctl}",
        "mov edi, 0x1001",
        "mov rsi, [rsp]",
        "syscall",
        "test rax, rax",
        "jz 2f",
        "and rsp, -16",
        "call {failed}",
        "1:",
        "mov rax, [rsp]",
        "wrgsbase rax",
        "2:",
        "add rsp, 8",
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
        "xor eax, eax",
        "popfq",
        "ret",
        process = sym PROCESS,
        nr_arch_prctl = const nr::arch_prctl,
        failed = sym thread_start_failed,
    )
}

#[cfg(target_os = "none")]
extern "C" fn thread_start_failed() -> ! {
    crate::die(b"cabin: a new thread could not set its GS base; stopping\n")
}

/// `exit` of the calling thread: the main thread as the only thread ends the
/// program; any other thread tells the monitor (which frees its slot) and
/// ends natively at once (the last one ends the process with the main
/// thread's status, as Linux does). It does not wait for the answer: its
/// slot stays taken ([`EXITING`]) until the answer is on its ring.
pub(super) fn exit_thread(status: u64) -> ! {
    let b = current();
    let slot = b.slot.load(Ordering::Relaxed) as usize;
    if slot == 0 && LIVE.load(Ordering::Acquire) <= 1 {
        // A posted `close` is served (and traced) before the end.
        super::ring_client::drain_posted();
        crate::sys::exit_group(status & 0xff)
    }
    if !PROCESS.load(Ordering::Relaxed) {
        // KVM: no kernel walks the robust list at the thread's death; the
        // libos does, before the thread is gone (the process backend's
        // kernel does it natively).
        robust_exit(b);
    }
    // Signals queued for this thread alone die with it.
    super::sigqueue::QUEUE.discard_target(slot as u64 + 1);
    LIVE.fetch_sub(1, Ordering::AcqRel);
    match super::ring_client::post(nr::exit, &[status, 0, 0, 0, 0, 0], SUB_THREAD) {
        Some((_, index)) => {
            b.exit_index.store(index, Ordering::Relaxed);
            // After this, block `slot` and its ring may be another
            // thread's: touch nothing but registers.
            EXITING.fetch_or(1 << slot, Ordering::Release);
        }
        None => release(slot),
    }
    // KVM: the doorbell ends the vCPU without the gate's ring-0 trap.
    super::ring_client::exit_doorbell(status & 0xff);
    loop {
        // SAFETY: ends this thread only; touches no memory (the kernel may
        // clear the CLONE_CHILD_CLEARTID word, which is its job).
        unsafe { syscall6(nr::exit, &[status & 0xff, 0, 0, 0, 0, 0]) };
    }
}

/// Most entries of a robust list walked at a thread's exit (Linux's
/// `ROBUST_LIST_LIMIT`): a list that loops ends the walk, not the thread.
const ROBUST_LIST_LIMIT: usize = 2048;

/// The owner-died protocol Linux runs when a thread dies, for the thread
/// of block `b` (KVM): every robust futex on its list (and the one in
/// `list_op_pending`) that it still owns gets `FUTEX_OWNER_DIED`, keeps
/// `FUTEX_WAITERS`, loses the owner, and one waiter is woken (through the
/// monitor's futex). The list is the program's memory: a bad pointer faults
/// in the program's own domain, as the kernel's walk would stop there.
fn robust_exit(b: &Block) {
    const FUTEX_WAITERS: u32 = 0x8000_0000;
    const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
    const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
    let head = b.robust_head.load(Ordering::Relaxed);
    let tid = b.tid.load(Ordering::Relaxed);
    if head == 0 || tid == 0 {
        return;
    }
    let read = |addr: u64| {
        // SAFETY: the program registered this list with set_robust_list for
        // its own thread; a bad pointer faults in the program's domain.
        unsafe { (addr as *const u64).read_volatile() }
    };
    let death = |entry: u64, offset: i64| {
        let uaddr = (entry & !1).wrapping_add(offset as u64);
        if uaddr == 0 || !uaddr.is_multiple_of(4) {
            return;
        }
        // SAFETY: a robust futex word of the program's list (as above),
        // 4-aligned; updated atomically, as other threads may.
        let word = unsafe { AtomicU32::from_ptr(uaddr as *mut u32) };
        let mut v = word.load(Ordering::SeqCst);
        loop {
            if v & FUTEX_TID_MASK != tid {
                return;
            }
            let new = (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
            match word.compare_exchange(v, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if v & FUTEX_WAITERS != 0 {
            const FUTEX_WAKE_PRIVATE: u64 = 1 | 128;
            super::forward(nr::futex, &[uaddr, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0], 0);
        }
    };
    let offset = read(head + 8) as i64;
    let pending = read(head + 16);
    let mut entry = read(head);
    let mut n = 0;
    while entry != head && entry != 0 && n < ROBUST_LIST_LIMIT {
        let next = read(entry & !1);
        if entry != pending {
            death(entry, offset);
        }
        entry = next;
        n += 1;
    }
    if pending != 0 {
        death(pending, offset);
    }
}

/// `gettid`.
pub(super) fn gettid(pid: u32) -> i64 {
    let b = current();
    match b.tid.load(Ordering::Relaxed) {
        0 if PROCESS.load(Ordering::Relaxed) => {
            // SAFETY: gettid touches no memory.
            let t = unsafe { syscall6(nr::gettid, &[0; 6]) };
            if t > 0 {
                b.tid.store(t as u32, Ordering::Relaxed);
            }
            t
        }
        0 => i64::from(pid),
        t => i64::from(t),
    }
}

/// `set_tid_address`: records the word (and, on the process backend, gives
/// it to the kernel, which clears it and wakes it at the thread's exit).
pub(super) fn set_tid_address(addr: u64, pid: u32) -> i64 {
    let b = current();
    b.clear_tid.store(addr, Ordering::Relaxed);
    if PROCESS.load(Ordering::Relaxed) {
        // SAFETY: the kernel stores the address and writes 0 there when the
        // thread exits, as the program asked.
        unsafe { syscall6(nr::set_tid_address, &[addr, 0, 0, 0, 0, 0]) };
    }
    gettid(pid)
}

/// A new child process (docs/processes.md): the calling thread (slot 0,
/// its block kept) is the only one; its tid is the child's `pid`; the
/// kernel learns its clear-tid word and robust list again (process
/// backend: a new process knows neither).
pub(super) fn after_fork(pid: u32) {
    USED.store(1, Ordering::Relaxed);
    EXITING.store(0, Ordering::Relaxed);
    LIVE.store(1, Ordering::Relaxed);
    let b = current();
    b.tid.store(pid, Ordering::Relaxed);
    b.sq_head_seen.store(0, Ordering::Relaxed);
    b.posted.store(0, Ordering::Relaxed);
    b.forced_site.store(0, Ordering::Relaxed);
    if PROCESS.load(Ordering::Relaxed) {
        let (clear, robust) = (b.clear_tid.load(Ordering::Relaxed), b.robust_head.load(Ordering::Relaxed));
        // SAFETY: the kernel only stores these pointers (the program gave
        // them before the fork; they are its own in the child's copy).
        unsafe {
            if clear != 0 {
                syscall6(nr::set_tid_address, &[clear, 0, 0, 0, 0, 0]);
            }
            if robust != 0 {
                syscall6(nr::set_robust_list, &[robust, ROBUST_HEAD_SIZE, 0, 0, 0, 0]);
            }
        }
    }
}

/// Sets the calling thread's FS base again from its block (a new child
/// process starts with none: a new host process, or a new VM whose vCPU
/// starts with FS base 0). `false` if the kernel refuses.
pub(super) fn restore_fs() -> bool {
    const ARCH_SET_FS: u64 = 0x1002;
    let fs = current().fs_base.load(Ordering::Relaxed);
    if fs == 0 {
        return true;
    }
    if !PROCESS.load(Ordering::Relaxed) {
        if fs >= 0x0000_8000_0000_0000 {
            return false;
        }
        #[cfg(target_os = "none")]
        // SAFETY: KVM ring 3 with CR4.FSGSBASE (the monitor enables it);
        // sets only this thread's FS base to the canonical user address the
        // program set before the fork (`arch_prctl` checked it then).
        unsafe {
            core::arch::asm!("wrfsbase {}", in(reg) fs, options(nostack, preserves_flags));
        }
        return true;
    }
    // SAFETY: sets this thread's TLS pointer to the value the program set
    // before the fork; the filter allows it.
    unsafe { syscall6(nr::arch_prctl, &[ARCH_SET_FS, fs, 0, 0, 0, 0]) == 0 }
}

/// Size of `struct robust_list_head`.
const ROBUST_HEAD_SIZE: u64 = 24;

/// `set_robust_list`: records the head (process backend: and gives it to
/// the kernel, which runs the owner-died protocol at the thread's exit).
pub(super) fn set_robust_list(head: u64, len: u64) -> i64 {
    if len != ROBUST_HEAD_SIZE {
        return -errno::EINVAL;
    }
    current().robust_head.store(head, Ordering::Relaxed);
    if PROCESS.load(Ordering::Relaxed) {
        // SAFETY: the kernel only stores the pointer (and reads the list,
        // in the program's memory, when the thread exits).
        return unsafe { syscall6(nr::set_robust_list, &[head, len, 0, 0, 0, 0]) };
    }
    0
}

/// The signals every live thread blocks (docs/signals.md): a pending
/// signal outside this set can be taken by some thread, so the attention
/// word stays set (and the monitor keeps kicking vCPUs) until one does.
pub(crate) fn blocked_by_every_thread() -> u64 {
    let live = USED.load(Ordering::Acquire) & !EXITING.load(Ordering::Acquire);
    if live == 0 {
        return current().sigmask.load(Ordering::SeqCst);
    }
    BLOCKS
        .iter()
        .enumerate()
        .filter(|&(k, _)| live & (1 << k) != 0)
        .fold(!0u64, |all, (_, b)| all & b.sigmask.load(Ordering::SeqCst))
}

/// The block of the live thread `tid` of this program (0: the caller's).
fn block_of(tid: u64, pid: u32) -> Option<&'static Block> {
    if tid == 0 {
        return Some(current());
    }
    let used = USED.load(Ordering::Acquire);
    BLOCKS.iter().enumerate().find_map(|(k, b)| {
        let t = match b.tid.load(Ordering::Relaxed) {
            0 if k == 0 => pid,
            t => t,
        };
        (used & (1 << k) != 0 && u64::from(t) == tid).then_some(b)
    })
}

/// `get_robust_list(tid, head_ptr, len_ptr)` of one of the program's threads.
pub(super) fn get_robust_list(tid: u64, head_ptr: u64, len_ptr: u64, pid: u32) -> i64 {
    let Some(b) = block_of(tid, pid) else { return -errno::ESRCH };
    for p in [head_ptr, len_ptr] {
        if p == 0 || !p.is_multiple_of(8) {
            return -errno::EFAULT;
        }
    }
    // SAFETY: the program's own result pointers (see GETRESUID in `serve_local`).
    unsafe {
        (head_ptr as *mut u64).write_volatile(b.robust_head.load(Ordering::Relaxed));
        (len_ptr as *mut u64).write_volatile(ROBUST_HEAD_SIZE);
    }
    0
}

/// `tkill`/`tgkill` of thread `tid` of this program: to the calling thread,
/// the self-signal bookkeeping of `signals`; to another of its threads, the
/// signal is queued for that thread alone and the monitor wakes it
/// ([`wake_thread`]; docs/signals.md, "Queued and thread-directed
/// signals"); to any other thread, `ESRCH`.
pub(super) fn kill(tid: u64, sig: u64, pid: u32) -> i64 {
    let Some(b) = (tid != 0).then(|| block_of(tid, pid)).flatten() else { return -errno::ESRCH };
    if core::ptr::eq(b, current()) {
        return super::signals::raise(sig, cabin_abi::boot::si_code::SI_TKILL);
    }
    if sig > super::signals::NSIG {
        return -errno::EINVAL;
    }
    if sig == 0 {
        return 0;
    }
    let slot = b.slot.load(Ordering::Relaxed);
    if sig < super::signals::SIGRTMIN && super::sigqueue::QUEUE.has(sig, slot + 1) {
        // Already pending for that thread (standard signals do not queue),
        // and it was woken for it then.
        return 0;
    }
    let info = super::signals::own_info(sig, cabin_abi::boot::si_code::SI_TKILL);
    if !super::signals::post_thread(sig, slot, &info) {
        return -errno::EAGAIN;
    }
    wake_thread(slot);
    0
}

/// `rt_tgsigqueueinfo` to thread `tid` of this program (`ESRCH` for any
/// other thread).
pub(super) fn queue_to(tid: u64, sig: u64, uinfo: u64, pid: u32) -> i64 {
    let Some(b) = (tid != 0).then(|| block_of(tid, pid)).flatten() else { return -errno::ESRCH };
    super::signals::queue(sig, uinfo, Some(b.slot.load(Ordering::Relaxed)))
}

/// Asks the monitor to wake the thread of `slot` for a signal queued for it
/// (`THREAD_OP_SIGNAL`): its worker leaves a blocking host call, and the
/// domain's threads are woken once (process backend: the wake signal;
/// KVM: a kick of every vCPU).
pub(crate) fn wake_thread(slot: u64) {
    let ts = ThreadStart { op: THREAD_OP_SIGNAL, slot: slot as u32, ..ThreadStart::default() };
    let _ = thread_call(&ts, 0);
}

/// A live thread other than the caller that does not block `sig`, if any.
pub(crate) fn slot_not_blocking(sig: u64) -> Option<u64> {
    let live = USED.load(Ordering::Acquire) & !EXITING.load(Ordering::Acquire);
    let me = current().slot.load(Ordering::Relaxed);
    (0..MAX_THREADS as u64).find(|&k| {
        k != me
            && (k == 0 || live & (1 << k) != 0)
            && BLOCKS[k as usize].sigmask.load(Ordering::SeqCst) & (1 << (sig - 1)) == 0
    })
}

/// The blocked mask of the live thread of `slot`.
pub(crate) fn sigmask_of_slot(slot: u64) -> Option<u64> {
    let live = USED.load(Ordering::Acquire) & !EXITING.load(Ordering::Acquire);
    let k = usize::try_from(slot).ok().filter(|&k| k < MAX_THREADS)?;
    if live & (1 << k) == 0 && k != 0 {
        return None;
    }
    Some(BLOCKS[k].sigmask.load(Ordering::SeqCst))
}

/// A lock for the libos's shared state: spins a bounded number of times,
/// then sleeps on a futex (process backend; the KVM backend spins, as it
/// runs one thread today). Never held across a call that can block for
/// long.
pub(crate) struct Lock<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, which the lock makes
// exclusive.
unsafe impl<T: Send> Sync for Lock<T> {}

/// Spins before sleeping on a contended lock.
const LOCK_SPINS: u32 = 200;

impl<T> Lock<T> {
    pub(crate) const fn new(v: T) -> Lock<T> {
        Lock { state: AtomicU32::new(0), value: UnsafeCell::new(v) }
    }

    /// Takes the lock.
    pub(crate) fn lock(&self) -> Guard<'_, T> {
        for _ in 0..LOCK_SPINS {
            if self.state.compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return Guard { lock: self };
            }
            core::hint::spin_loop();
        }
        // 2: locked, maybe with sleepers.
        while self.state.swap(2, Ordering::Acquire) != 0 {
            if PROCESS.load(Ordering::Relaxed) {
                futex_private(self.state.as_ptr() as u64, FUTEX_WAIT, 2);
            } else {
                core::hint::spin_loop();
            }
        }
        Guard { lock: self }
    }
}

/// Exclusive access to a [`Lock`]'s value.
pub(crate) struct Guard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> core::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        if self.lock.state.swap(0, Ordering::Release) == 2 && PROCESS.load(Ordering::Relaxed) {
            futex_private(self.lock.state.as_ptr() as u64, FUTEX_WAKE, 1);
        }
    }
}

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_PRIVATE_FLAG: u64 = 128;

fn futex_private(addr: u64, op: u64, val: u64) {
    // SAFETY: a futex on a libos word: WAIT reads it, WAKE touches no
    // memory; the filter allows futex.
    unsafe { syscall6(nr::futex, &[addr, op | FUTEX_PRIVATE_FLAG, val, 0, 0, 0]) };
}
