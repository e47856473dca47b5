//! `futex` for a domain whose program cannot reach the host kernel itself
//! (KVM: the program's threads are vCPUs): served by the monitor on its
//! own mapping of the program's memory. The ring worker of the calling
//! thread blocks in a host `futex` on the host address of the program's
//! word; a wake from another thread is a host wake on the same address. So
//! the host kernel does the queueing, the value check under its lock, the
//! timeouts and the requeues, and the words stay the program's.
//!
//! Served: `FUTEX_WAIT`, `WAKE`, `WAIT_BITSET`, `WAKE_BITSET`, `REQUEUE`,
//! `CMP_REQUEUE`, `WAKE_OP`, with `FUTEX_PRIVATE_FLAG` (every futex of a
//! confined program is private to it: the monitor always uses private host
//! futexes, keyed by its own address space) and `FUTEX_CLOCK_REALTIME`.
//! The priority-inheritance operations (`LOCK_PI`, `LOCK_PI2`,
//! `TRYLOCK_PI`, `UNLOCK_PI`) keep their protocol on the word (owner tid,
//! `FUTEX_WAITERS`, `FUTEX_OWNER_DIED`) but are emulated with plain host
//! futexes: the owner tids are the program's virtual tids, which the host
//! kernel must never look up (it would attach to an unrelated host task),
//! and a confined program has no real-time priorities to inherit.
//! `WAIT_REQUEUE_PI`/`CMP_REQUEUE_PI` (unused by glibc ≥ 2.25 and musl) are
//! `ENOSYS`.
//!
//! Every word must be 4-aligned (`EINVAL`) and lie in the program's
//! readable (writable for the operations that store) data, stack, heap or
//! arena (`EFAULT`): never its code, boot page or rings, so a program cannot
//! requeue or wake the monitor's own doorbell waiters.
//!
//! A wait blocks the calling worker; the caller makes it kickable (a kick
//! ends the wait with `EINTR` when the run stops).

use std::sync::atomic::{AtomicU32, Ordering};

use crate::memory::{GuestMemory, HostRange};

/// Linux's futex operation numbers and flags.
pub mod op {
    /// Wait while the word equals `val`.
    pub const WAIT: i32 = 0;
    /// Wake up to `val` waiters.
    pub const WAKE: i32 = 1;
    /// Move waiters to another word.
    pub const REQUEUE: i32 = 3;
    /// `REQUEUE` if the word equals `val3`.
    pub const CMP_REQUEUE: i32 = 4;
    /// Operate on a second word and wake on both.
    pub const WAKE_OP: i32 = 5;
    /// Take a PI lock.
    pub const LOCK_PI: i32 = 6;
    /// Release a PI lock.
    pub const UNLOCK_PI: i32 = 7;
    /// Try a PI lock.
    pub const TRYLOCK_PI: i32 = 8;
    /// `WAIT` with a bit set and an absolute timeout.
    pub const WAIT_BITSET: i32 = 9;
    /// `WAKE` of the waiters whose bit set meets `val3`.
    pub const WAKE_BITSET: i32 = 10;
    /// PI condition-variable wait.
    pub const WAIT_REQUEUE_PI: i32 = 11;
    /// PI condition-variable requeue.
    pub const CMP_REQUEUE_PI: i32 = 12;
    /// `LOCK_PI` with a monotonic (or `CLOCK_REALTIME`) timeout.
    pub const LOCK_PI2: i32 = 13;
    /// The futex is private to the process.
    pub const PRIVATE_FLAG: i32 = 128;
    /// Timeouts are on `CLOCK_REALTIME`.
    pub const CLOCK_REALTIME: i32 = 256;
    /// The bit set that matches every waiter.
    pub const BITSET_MATCH_ANY: u32 = u32::MAX;
}

/// PI word: the owner's tid.
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// PI word: the owner died (robust futexes).
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// PI word: someone waits (unlock must go through the monitor).
pub const FUTEX_WAITERS: u32 = 0x8000_0000;

/// `LOCK_PI` gives up with `EAGAIN` (which glibc retries) after this many
/// changes of the word under it without a wait: a thread hammering the
/// word delays only its own program, and the worker gets to look for a
/// stop between attempts.
const PI_RETRIES: u32 = 100_000;

const NS_PER_SEC: i64 = 1_000_000_000;

fn neg(errno: i32) -> i64 {
    -i64::from(errno)
}

/// The live host word at `addr`: 4-aligned, in the program's readable (with
/// `write`, writable) memory.
fn word(mem: &GuestMemory, addr: u64, write: bool) -> Result<*mut u32, i64> {
    if !addr.is_multiple_of(4) {
        return Err(neg(libc::EINVAL));
    }
    mem.host_range(addr, 4, write).map(|p| p.cast::<u32>()).map_err(|_| neg(libc::EFAULT))
}

/// The host word at `addr` for a host `futex` call and the flag to call it
/// with: a word of the program's own memory is a private futex of the
/// monitor ([`word`]); a word of a live shared file mapping (KVM) is a
/// shared one on the monitor's mapping of the file, which the host kernel
/// keys by the file's page, so waiters in other processes of the tree and
/// in native processes meet it (the monitor never loads such a word
/// itself: a page past the file's end would be `SIGBUS`; the kernel
/// answers `EFAULT`). The third part keeps that mapping the monitor's
/// while the caller's host call runs (an `munmap` by another thread must
/// not let the address be reused under a waiter): hold it until then.
fn key(mem: &GuestMemory, addr: u64, write: bool) -> Result<(*mut u32, i32, Option<HostRange>), i64> {
    if !addr.is_multiple_of(4) {
        return Err(neg(libc::EINVAL));
    }
    if let Some(w) = mem.file_window().filter(|w| w.mapper.is_some() && w.holds(addr, 4)) {
        return match w.remote(addr, 4, write) {
            Some((_, h)) => Ok((h.addr as *mut u32, 0, Some(h))),
            None => Err(neg(libc::EFAULT)),
        };
    }
    word(mem, addr, write).map(|w| (w, op::PRIVATE_FLAG, None))
}

/// The word as an atomic.
///
/// # Safety
///
/// `p` comes from [`word`] on a `GuestMemory` that outlives the use.
unsafe fn atomic<'a>(p: *mut u32) -> &'a AtomicU32 {
    // SAFETY: 4-aligned (checked by `word`), inside a mapping that stays
    // alive (the caller's contract); the program may write it concurrently,
    // which is what atomics are for.
    unsafe { AtomicU32::from_ptr(p) }
}

/// A copied and checked `struct timespec` at `addr` (0: none).
fn timespec(mem: &GuestMemory, addr: u64) -> Result<Option<libc::timespec>, i64> {
    if addr == 0 {
        return Ok(None);
    }
    let mut b = [0u8; 16];
    mem.read_into(addr, &mut b).map_err(|_| neg(libc::EFAULT))?;
    let sec = i64::from_le_bytes(b[..8].try_into().map_err(|_| neg(libc::EFAULT))?);
    let nsec = i64::from_le_bytes(b[8..].try_into().map_err(|_| neg(libc::EFAULT))?);
    if sec < 0 || !(0..NS_PER_SEC).contains(&nsec) {
        return Err(neg(libc::EINVAL));
    }
    Ok(Some(libc::timespec { tv_sec: sec, tv_nsec: nsec }))
}

/// One host futex call on host words of ours; `-errno` on failure.
fn host(uaddr: *mut u32, op: i32, val: u32, timeout_or_val2: usize, uaddr2: *mut u32, val3: u32) -> i64 {
    // SAFETY: `uaddr` and `uaddr2` (or null) are live words of the
    // program's memory in our own mapping (`word`), `timeout_or_val2` is a
    // count or the address of a local timespec; the host kernel reads and
    // (WAKE_OP) writes only those words.
    let r = unsafe { libc::syscall(libc::SYS_futex, uaddr, op, val, timeout_or_val2, uaddr2, val3) };
    if r < 0 {
        neg(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL))
    } else {
        r
    }
}

/// Serves `futex(a[0] uaddr, a[1] op, a[2] val, a[3] timeout or val2,
/// a[4] uaddr2, a[5] val3)` for the thread whose tid (as the program sees
/// it) is `tid`. Returns the value for `rax` (`-errno` on failure).
pub fn futex(mem: &GuestMemory, tid: u32, a: [u64; 6]) -> i64 {
    match serve(mem, tid, a) {
        Ok(v) | Err(v) => v,
    }
}

fn serve(mem: &GuestMemory, tid: u32, a: [u64; 6]) -> Result<i64, i64> {
    let full = a[1] as i32;
    let realtime = full & op::CLOCK_REALTIME != 0;
    let cmd = full & !(op::PRIVATE_FLAG | op::CLOCK_REALTIME);
    let (uaddr, val, val3) = (a[0], a[2] as u32, a[5] as u32);
    // Linux: CLOCK_REALTIME only with the operations that wait with a timeout.
    if realtime && !matches!(cmd, op::WAIT | op::WAIT_BITSET | op::LOCK_PI2 | op::WAIT_REQUEUE_PI) {
        return Err(neg(libc::ENOSYS));
    }
    let clock = if realtime { op::CLOCK_REALTIME } else { 0 };
    let null = std::ptr::null_mut();
    match cmd {
        op::WAIT => {
            let (w, private, _keep) = key(mem, uaddr, false)?;
            let ts = timespec(mem, a[3])?;
            let tsp = ts.as_ref().map_or(0, |t| t as *const libc::timespec as usize);
            // A relative timeout, whatever the clock flag says (as Linux).
            Ok(host(w, libc::FUTEX_WAIT | private, val, tsp, null, 0))
        }
        op::WAIT_BITSET => {
            if val3 == 0 {
                return Err(neg(libc::EINVAL));
            }
            let (w, private, _keep) = key(mem, uaddr, false)?;
            let ts = timespec(mem, a[3])?;
            let tsp = ts.as_ref().map_or(0, |t| t as *const libc::timespec as usize);
            // Absolute, on the host's clock: the libos anchors its clocks
            // on the host's (KVM: forwarded reads extrapolated by the TSC).
            Ok(host(w, libc::FUTEX_WAIT_BITSET | private | clock, val, tsp, null, val3))
        }
        op::WAKE => {
            let (w, private, _keep) = key(mem, uaddr, false)?;
            Ok(host(w, libc::FUTEX_WAKE | private, val, 0, null, 0))
        }
        op::WAKE_BITSET => {
            if val3 == 0 {
                return Err(neg(libc::EINVAL));
            }
            let (w, private, _keep) = key(mem, uaddr, false)?;
            Ok(host(w, libc::FUTEX_WAKE_BITSET | private, val, 0, null, val3))
        }
        op::REQUEUE | op::CMP_REQUEUE => {
            let (w, private, _keep) = key(mem, uaddr, false)?;
            let (w2, _, _keep2) = key(mem, a[4], false)?;
            let host_op = if cmd == op::REQUEUE { libc::FUTEX_REQUEUE } else { libc::FUTEX_CMP_REQUEUE };
            // The fourth argument is the requeue count here (Linux: val2).
            let val2 = (a[3] as u32) as usize;
            Ok(host(w, host_op | private, val, val2, w2, val3))
        }
        op::WAKE_OP => {
            let (w, private, _keep) = key(mem, uaddr, false)?;
            let (w2, _, _keep2) = key(mem, a[4], true)?;
            let val2 = (a[3] as u32) as usize;
            // The host kernel decodes and checks the operation in val3
            // (ENOSYS for an unknown one) and applies it to our word.
            Ok(host(w, libc::FUTEX_WAKE_OP | private, val, val2, w2, val3))
        }
        op::LOCK_PI | op::LOCK_PI2 => {
            let w = word(mem, uaddr, true)?;
            let ts = timespec(mem, a[3])?;
            // LOCK_PI: absolute CLOCK_REALTIME; LOCK_PI2: CLOCK_MONOTONIC
            // unless the flag says otherwise.
            let clock = if cmd == op::LOCK_PI || realtime { op::CLOCK_REALTIME } else { 0 };
            lock_pi(w, tid, ts, clock)
        }
        op::TRYLOCK_PI => {
            let w = word(mem, uaddr, true)?;
            // SAFETY: from `word` on `mem`, alive for this call.
            let a = unsafe { atomic(w) };
            let v = a.load(Ordering::SeqCst);
            match v & FUTEX_TID_MASK {
                0 => match a.compare_exchange(
                    v,
                    tid | (v & FUTEX_OWNER_DIED),
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => Ok(0),
                    Err(_) => Err(neg(libc::EAGAIN)),
                },
                t if t == tid & FUTEX_TID_MASK => Err(neg(libc::EDEADLK)),
                _ => Err(neg(libc::EAGAIN)),
            }
        }
        op::UNLOCK_PI => {
            let w = word(mem, uaddr, true)?;
            // SAFETY: from `word` on `mem`, alive for this call.
            let a = unsafe { atomic(w) };
            let mut v = a.load(Ordering::SeqCst);
            loop {
                if v & FUTEX_TID_MASK != tid & FUTEX_TID_MASK {
                    return Err(neg(libc::EPERM));
                }
                match a.compare_exchange(v, 0, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => break,
                    Err(now) => v = now,
                }
            }
            if v & FUTEX_WAITERS != 0 {
                host(w, libc::FUTEX_WAKE | op::PRIVATE_FLAG, 1, 0, null, 0);
            }
            Ok(0)
        }
        op::WAIT_REQUEUE_PI | op::CMP_REQUEUE_PI => Err(neg(libc::ENOSYS)),
        _ => Err(neg(libc::ENOSYS)),
    }
}

/// `struct futex_waitv` (Linux 5.16+, `futex_waitv(2)`).
#[repr(C)]
struct WaitV {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// `futex_waitv` flags of one word: 32 bits, private to this process (the
/// monitor's own futexes on the program's words are all private, so its
/// wakes match: [`serve`]).
const FUTEX2_U32_PRIVATE: u32 = 0x02 | op::PRIVATE_FLAG as u32;
/// A shared one (a word of a live shared file mapping: [`key`]).
const FUTEX2_U32: u32 = 0x02;

/// A futex operation the vCPU thread itself serves for its own thread
/// (KVM's `DOORBELL_FUTEX`, docs/threads.md "Futex fast path"), with the
/// same arguments as [`futex`]:
///
/// - `FUTEX_WAIT`, and `FUTEX_WAIT_BITSET` with the bit set that matches
///   every waker: the calling (vCPU) thread sleeps in one host
///   `futex_waitv` over the program's word and `interrupt`, its own wake
///   word, which every kick of the vCPU (a signal posted for the program,
///   its end, a stop) changes and wakes. `seen` is `interrupt`'s value read
///   before the caller last looked at why it could be kicked, so a kick
///   after that look is never lost. Timeouts as `futex(2)`: relative on
///   `CLOCK_MONOTONIC` for `WAIT`, absolute on the flag's clock for
///   `WAIT_BITSET`. A woken sleeper answers 0, an interrupted one `EINTR`
///   (the libos makes the call again unless a signal is there to take).
/// - `FUTEX_WAKE`, `FUTEX_WAKE_BITSET`: as [`futex`] (they never block).
/// - Anything else: `ENOSYS` (the libos sends those on the ring).
///
/// Wakes from the ring's workers (`futex`), the monitor's
/// `CLONE_CHILD_CLEARTID` wake and requeues reach these sleepers: all are
/// private host futexes on the same host address (shared ones on the
/// monitor's mapping for a word of a live shared file mapping: [`key`]).
pub fn direct(mem: &GuestMemory, a: [u64; 6], interrupt: &AtomicU32, seen: u32) -> i64 {
    match serve_direct(mem, a, interrupt, seen) {
        Ok(v) | Err(v) => v,
    }
}

fn serve_direct(mem: &GuestMemory, a: [u64; 6], interrupt: &AtomicU32, seen: u32) -> Result<i64, i64> {
    let full = a[1] as i32;
    let realtime = full & op::CLOCK_REALTIME != 0;
    let cmd = full & !(op::PRIVATE_FLAG | op::CLOCK_REALTIME);
    let (uaddr, val, val3) = (a[0], a[2] as u32, a[5] as u32);
    match cmd {
        op::WAKE | op::WAKE_BITSET => Ok(futex(mem, 0, a)),
        op::WAIT | op::WAIT_BITSET => {
            if cmd == op::WAIT_BITSET && val3 != op::BITSET_MATCH_ANY {
                // futex_waitv has no bit sets: the ring serves those.
                return Err(neg(libc::ENOSYS));
            }
            // A word of a live shared file mapping waits as a shared futex
            // (`key`), the monitor's mapping held meanwhile.
            let (w, private, _keep) = key(mem, uaddr, false)?;
            let flags = if private == 0 { FUTEX2_U32 } else { FUTEX2_U32_PRIVATE };
            let ts = timespec(mem, a[3])?;
            let (deadline, clock) = match (ts, cmd) {
                (None, _) => (None, libc::CLOCK_MONOTONIC),
                // Relative, on the monotonic clock whatever the flag says
                // (as Linux): made absolute for futex_waitv.
                (Some(rel), op::WAIT) => (Some(add(now(libc::CLOCK_MONOTONIC), rel)), libc::CLOCK_MONOTONIC),
                (Some(abs), _) => {
                    (Some(abs), if realtime { libc::CLOCK_REALTIME } else { libc::CLOCK_MONOTONIC })
                }
            };
            Ok(wait_or_interrupt(w, flags, val, interrupt, seen, deadline, clock))
        }
        _ => Err(neg(libc::ENOSYS)),
    }
}

fn now(clock: libc::clockid_t) -> libc::timespec {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a local timespec; the clocks used here always exist.
    unsafe { libc::clock_gettime(clock, &mut t) };
    t
}

/// `a + b`, both valid timespecs (saturating: a far deadline is no deadline).
fn add(a: libc::timespec, b: libc::timespec) -> libc::timespec {
    let mut sec = a.tv_sec.saturating_add(b.tv_sec);
    let mut nsec = a.tv_nsec + b.tv_nsec;
    if nsec >= NS_PER_SEC {
        nsec -= NS_PER_SEC;
        sec = sec.saturating_add(1);
    }
    libc::timespec { tv_sec: sec, tv_nsec: nsec }
}

/// Sleeps on the host word `w` while it holds `val` and `interrupt` holds
/// `seen`, until a wake on either, the absolute `deadline` on `clock`, or a
/// signal to the calling thread: 0 (woken on `w`), `EAGAIN` (`w` differed),
/// `ETIMEDOUT`, `EINTR` (interrupted: `interrupt` changed or a signal).
fn wait_or_interrupt(
    w: *mut u32,
    flags: u32,
    val: u32,
    interrupt: &AtomicU32,
    seen: u32,
    deadline: Option<libc::timespec>,
    clock: libc::clockid_t,
) -> i64 {
    let waiters = [
        WaitV { val: u64::from(val), uaddr: w as u64, flags, reserved: 0 },
        WaitV {
            val: u64::from(seen),
            uaddr: interrupt.as_ptr() as u64,
            flags: FUTEX2_U32_PRIVATE,
            reserved: 0,
        },
    ];
    let tsp = deadline.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: two live, 4-aligned words of our own address space (the
    // program's word from `word`, alive for this call; `interrupt` borrowed),
    // a local array of the count passed, a local timespec or null; the
    // kernel only reads them.
    let r = unsafe { libc::syscall(libc::SYS_futex_waitv, waiters.as_ptr(), 2u32, 0u32, tsp, clock) };
    if r == 0 {
        return 0;
    }
    if r > 0 {
        return neg(libc::EINTR);
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL);
    if errno == libc::EAGAIN && interrupt.load(Ordering::SeqCst) != seen {
        return neg(libc::EINTR);
    }
    neg(errno)
}

/// `LOCK_PI`: take the lock word for `tid`, or mark it `FUTEX_WAITERS` and
/// wait on it until it is released (or the absolute `deadline` passes).
fn lock_pi(w: *mut u32, tid: u32, deadline: Option<libc::timespec>, clock: i32) -> Result<i64, i64> {
    // SAFETY: from `word` on the caller's memory, alive for this call.
    let a = unsafe { atomic(w) };
    let me = tid & FUTEX_TID_MASK;
    if me == 0 {
        return Err(neg(libc::EINVAL));
    }
    let tsp = deadline.as_ref().map_or(0, |t| t as *const libc::timespec as usize);
    // After a wait, others may still wait: keep FUTEX_WAITERS so the owner's
    // unlock comes here and wakes the next one.
    let mut waited = false;
    for _ in 0..PI_RETRIES {
        let v = a.load(Ordering::SeqCst);
        let owner = v & FUTEX_TID_MASK;
        if owner == 0 {
            let new = me | (v & FUTEX_OWNER_DIED) | if waited { FUTEX_WAITERS } else { 0 };
            if a.compare_exchange(v, new, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                return Ok(0);
            }
            continue;
        }
        if owner == me {
            return Err(neg(libc::EDEADLK));
        }
        let marked = v | FUTEX_WAITERS;
        if v != marked && a.compare_exchange(v, marked, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            continue;
        }
        let r = host(
            w,
            libc::FUTEX_WAIT_BITSET | op::PRIVATE_FLAG | clock,
            marked,
            tsp,
            std::ptr::null_mut(),
            op::BITSET_MATCH_ANY,
        );
        waited = true;
        match r {
            r if r == neg(libc::ETIMEDOUT) || r == neg(libc::EINTR) => return Err(r),
            _ => {}
        }
    }
    Err(neg(libc::EAGAIN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Region, RegionKind};
    use std::sync::Arc;
    use std::time::Duration;

    /// A program memory of one data page at 0x10000 and one "ring" page at
    /// 0x20000, over a host buffer.
    struct Mem {
        mem: GuestMemory,
        _buf: Box<[u64; 1024]>,
    }

    const DATA: u64 = 0x1_0000;
    const RING: u64 = 0x2_0000;

    fn mem() -> Arc<Mem> {
        let mut buf = Box::new([0u64; 1024]);
        let host = buf.as_mut_ptr().cast::<u8>();
        let regions = vec![
            Region { start: DATA, len: 4096, host, kind: RegionKind::Data },
            // SAFETY: the second half of the same buffer.
            Region { start: RING, len: 4096, host: unsafe { host.add(4096) }, kind: RegionKind::Ring },
        ];
        // SAFETY: the buffer outlives the GuestMemory (same struct, field
        // order drops `mem` first); regions do not overlap.
        let mem = unsafe { GuestMemory::new(regions) };
        Arc::new(Mem { mem, _buf: buf })
    }

    fn at(m: &Mem, addr: u64) -> &AtomicU32 {
        // SAFETY: `addr` is in the data page.
        unsafe { atomic(word(&m.mem, addr, true).expect("word")) }
    }

    fn f(m: &Mem, a: [u64; 6]) -> i64 {
        futex(&m.mem, 1001, a)
    }

    /// A relative timespec in the data page at 0x10100.
    fn put_timeout(m: &Mem, addr: u64, sec: i64, nsec: i64) -> u64 {
        let mut b = sec.to_le_bytes().to_vec();
        b.extend_from_slice(&nsec.to_le_bytes());
        m.mem.write(addr, &b).expect("timespec");
        addr
    }

    fn now(clock: libc::clockid_t) -> (i64, i64) {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a local timespec.
        unsafe { libc::clock_gettime(clock, &mut t) };
        (t.tv_sec, t.tv_nsec)
    }

    const P: u64 = op::PRIVATE_FLAG as u64;

    #[test]
    fn wait_refuses_a_changed_word_and_times_out() {
        let m = mem();
        at(&m, DATA).store(5, Ordering::SeqCst);
        assert_eq!(f(&m, [DATA, op::WAIT as u64 | P, 4, 0, 0, 0]), neg(libc::EAGAIN));
        let ts = put_timeout(&m, DATA + 0x100, 0, 1_000_000);
        assert_eq!(f(&m, [DATA, op::WAIT as u64 | P, 5, ts, 0, 0]), neg(libc::ETIMEDOUT));
        // Absolute deadlines on both clocks, already past.
        let (s, n) = now(libc::CLOCK_MONOTONIC);
        let ts = put_timeout(&m, DATA + 0x100, s, n);
        assert_eq!(
            f(&m, [DATA, op::WAIT_BITSET as u64 | P, 5, ts, 0, u32::MAX as u64]),
            neg(libc::ETIMEDOUT)
        );
        let (s, n) = now(libc::CLOCK_REALTIME);
        let ts = put_timeout(&m, DATA + 0x100, s, n);
        let rt = (op::WAIT_BITSET | op::CLOCK_REALTIME) as u64 | P;
        assert_eq!(f(&m, [DATA, rt, 5, ts, 0, u32::MAX as u64]), neg(libc::ETIMEDOUT));
    }

    #[test]
    fn bad_words_and_arguments_are_errors_not_crashes() {
        let m = mem();
        assert_eq!(f(&m, [DATA + 2, op::WAKE as u64, 1, 0, 0, 0]), neg(libc::EINVAL), "misaligned");
        assert_eq!(f(&m, [0x5000, op::WAKE as u64, 1, 0, 0, 0]), neg(libc::EFAULT), "unmapped");
        assert_eq!(f(&m, [u64::MAX - 3, op::WAKE as u64, 1, 0, 0, 0]), neg(libc::EFAULT), "wraps");
        assert_eq!(f(&m, [RING, op::WAIT as u64, 0, 0, 0, 0]), neg(libc::EFAULT), "the ring is not a futex");
        assert_eq!(f(&m, [RING, op::WAKE as u64, 1, 0, 0, 0]), neg(libc::EFAULT));
        assert_eq!(
            f(&m, [DATA, op::REQUEUE as u64, 0, 1, RING, 0]),
            neg(libc::EFAULT),
            "nor a requeue target"
        );
        assert_eq!(f(&m, [DATA, op::WAKE_OP as u64, 0, 1, RING, 0]), neg(libc::EFAULT));
        let ts = put_timeout(&m, DATA + 0x100, 0, NS_PER_SEC);
        assert_eq!(f(&m, [DATA, op::WAIT as u64, 0, ts, 0, 0]), neg(libc::EINVAL), "tv_nsec too large");
        let ts = put_timeout(&m, DATA + 0x100, -1, 0);
        assert_eq!(f(&m, [DATA, op::WAIT as u64, 0, ts, 0, 0]), neg(libc::EINVAL), "negative");
        assert_eq!(f(&m, [DATA, op::WAIT as u64, 0, 0x5000, 0, 0]), neg(libc::EFAULT), "timeout pointer");
        assert_eq!(f(&m, [DATA, op::WAIT_BITSET as u64, 0, 0, 0, 0]), neg(libc::EINVAL), "empty bit set");
        assert_eq!(f(&m, [DATA, op::WAKE_BITSET as u64, 1, 0, 0, 0]), neg(libc::EINVAL));
        assert_eq!(f(&m, [DATA, (op::WAKE | op::CLOCK_REALTIME) as u64, 1, 0, 0, 0]), neg(libc::ENOSYS));
        assert_eq!(f(&m, [DATA, 99, 1, 0, 0, 0]), neg(libc::ENOSYS));
        assert_eq!(f(&m, [DATA, op::CMP_REQUEUE_PI as u64, 1, 0, DATA + 4, 0]), neg(libc::ENOSYS));
        // A WAKE_OP with an operation the kernel does not know.
        assert_eq!(f(&m, [DATA, op::WAKE_OP as u64, 1, 1, DATA + 4, 0x7000_0000]), neg(libc::ENOSYS));
    }

    /// Starts a thread that waits on `addr` (op `a[1]`) and returns its result.
    fn waiter(m: &Arc<Mem>, a: [u64; 6]) -> std::thread::JoinHandle<i64> {
        let m = m.clone();
        std::thread::spawn(move || futex(&m.mem, 1002, a))
    }

    /// Wakes `addr` with `a` until `n` waiters have been woken in all.
    fn wake_until(m: &Mem, a: [u64; 6], n: i64) {
        let mut woken = 0;
        while woken < n {
            let r = f(m, a);
            assert!(r >= 0, "{r}");
            woken += r;
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn wake_wakes_a_waiter_on_the_same_word() {
        let m = mem();
        let h = waiter(&m, [DATA, op::WAIT as u64 | P, 0, 0, 0, 0]);
        wake_until(&m, [DATA, op::WAKE as u64 | P, 1, 0, 0, 0], 1);
        assert_eq!(h.join().expect("join"), 0);
        // Bit sets: a waiter on bit 1 is woken by a wake on bits 1|2, not by bit 4.
        let h = waiter(&m, [DATA, op::WAIT_BITSET as u64 | P, 0, 0, 0, 1]);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(f(&m, [DATA, op::WAKE_BITSET as u64 | P, 1, 0, 0, 4]), 0);
        wake_until(&m, [DATA, op::WAKE_BITSET as u64 | P, 1, 0, 0, 3], 1);
        assert_eq!(h.join().expect("join"), 0);
    }

    #[test]
    fn requeue_moves_waiters_and_cmp_requeue_checks_the_word() {
        let m = mem();
        let (a, b) = (DATA, DATA + 8);
        at(&m, a).store(7, Ordering::SeqCst);
        assert_eq!(f(&m, [a, op::CMP_REQUEUE as u64 | P, 0, 1, b, 6]), neg(libc::EAGAIN), "word is 7, not 6");
        let h1 = waiter(&m, [a, op::WAIT as u64 | P, 7, 0, 0, 0]);
        let h2 = waiter(&m, [a, op::WAIT as u64 | P, 7, 0, 0, 0]);
        // Wake none, requeue both to b (the count includes both once they wait).
        let mut moved = 0;
        while moved < 2 {
            let r = f(&m, [a, op::CMP_REQUEUE as u64 | P, 0, 2, b, 7]);
            assert!(r >= 0, "{r}");
            moved += r;
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(f(&m, [a, op::WAKE as u64 | P, 2, 0, 0, 0]), 0, "nobody waits on a any more");
        wake_until(&m, [b, op::WAKE as u64 | P, 2, 0, 0, 0], 2);
        assert_eq!((h1.join().expect("join"), h2.join().expect("join")), (0, 0));
        // Plain REQUEUE: wake one, requeue nothing.
        let h = waiter(&m, [a, op::WAIT as u64 | P, 7, 0, 0, 0]);
        wake_until(&m, [a, op::REQUEUE as u64 | P, 1, 0, b, 0], 1);
        assert_eq!(h.join().expect("join"), 0);
    }

    #[test]
    fn wake_op_changes_the_second_word_and_wakes_both() {
        let m = mem();
        let (a, b) = (DATA, DATA + 8);
        at(&m, b).store(1, Ordering::SeqCst);
        // FUTEX_OP(FUTEX_OP_ADD 1, oparg 5, FUTEX_OP_CMP_EQ 0, cmparg 1): *b += 5, wake b if old == 1.
        let wake_op = (1u64 << 28) | (5 << 12) | 1;
        assert_eq!(f(&m, [a, op::WAKE_OP as u64 | P, 1, 1, b, wake_op]), 0, "nobody waits");
        assert_eq!(at(&m, b).load(Ordering::SeqCst), 6);
        let h = waiter(&m, [b, op::WAIT as u64 | P, 6, 0, 0, 0]);
        // FUTEX_OP(FUTEX_OP_SET, 6, FUTEX_OP_CMP_EQ, 6): *b stays 6 however
        // often it runs, and wakes b's waiter once it waits.
        let wake_op6 = (6u64 << 12) | 6;
        wake_until(&m, [a, op::WAKE_OP as u64 | P, 1, 1, b, wake_op6], 1);
        assert_eq!(h.join().expect("join"), 0);
    }

    /// Wakes the interrupt word as a kick does.
    fn kick(w: &AtomicU32) {
        w.fetch_add(1, Ordering::SeqCst);
        host(w.as_ptr(), libc::FUTEX_WAKE | op::PRIVATE_FLAG, i32::MAX as u32, 0, std::ptr::null_mut(), 0);
    }

    #[test]
    fn direct_wait_is_woken_by_a_ring_wake_or_a_kick() {
        let m = mem();
        let irq = Arc::new(AtomicU32::new(7));
        // Woken by a wake served as the ring's worker serves it.
        let (m2, i2) = (m.clone(), irq.clone());
        let h = std::thread::spawn(move || direct(&m2.mem, [DATA, op::WAIT as u64 | P, 0, 0, 0, 0], &i2, 7));
        wake_until(&m, [DATA, op::WAKE as u64 | P, 1, 0, 0, 0], 1);
        assert_eq!(h.join().expect("join"), 0);
        // A WAIT_BITSET matching every waker, woken by a WAKE_BITSET.
        let any = u64::from(op::BITSET_MATCH_ANY);
        let (m2, i2) = (m.clone(), irq.clone());
        let h = std::thread::spawn(move || {
            direct(&m2.mem, [DATA, op::WAIT_BITSET as u64 | P, 0, 0, 0, any], &i2, 7)
        });
        wake_until(&m, [DATA, op::WAKE_BITSET as u64 | P, 1, 0, 0, 2], 1);
        assert_eq!(h.join().expect("join"), 0);
        // A kick of the sleeper: EINTR, the word untouched.
        let (m2, i2) = (m.clone(), irq.clone());
        let h = std::thread::spawn(move || direct(&m2.mem, [DATA, op::WAIT as u64 | P, 0, 0, 0, 0], &i2, 7));
        std::thread::sleep(Duration::from_millis(20));
        kick(&irq);
        assert_eq!(h.join().expect("join"), neg(libc::EINTR));
        // A kick that came before the wait (the value seen is stale): the
        // wait does not sleep.
        assert_eq!(direct(&m.mem, [DATA, op::WAIT as u64 | P, 0, 0, 0, 0], &irq, 7), neg(libc::EINTR));
        // A changed word: EAGAIN, as the kernel answers.
        at(&m, DATA).store(3, Ordering::SeqCst);
        assert_eq!(direct(&m.mem, [DATA, op::WAIT as u64 | P, 0, 0, 0, 0], &irq, 8), neg(libc::EAGAIN));
    }

    #[test]
    fn direct_wait_times_out_and_refuses_what_it_does_not_serve() {
        let m = mem();
        let irq = AtomicU32::new(0);
        let d = |a: [u64; 6]| direct(&m.mem, a, &irq, 0);
        let ts = put_timeout(&m, DATA + 0x100, 0, 2_000_000);
        assert_eq!(d([DATA, op::WAIT as u64 | P, 0, ts, 0, 0]), neg(libc::ETIMEDOUT), "relative");
        let (s, n) = now(libc::CLOCK_MONOTONIC);
        let ts = put_timeout(&m, DATA + 0x100, s, n);
        let any = u64::from(op::BITSET_MATCH_ANY);
        assert_eq!(d([DATA, op::WAIT_BITSET as u64 | P, 0, ts, 0, any]), neg(libc::ETIMEDOUT), "absolute");
        let (s, n) = now(libc::CLOCK_REALTIME);
        let ts = put_timeout(&m, DATA + 0x100, s, n);
        let rt = (op::WAIT_BITSET | op::CLOCK_REALTIME) as u64 | P;
        assert_eq!(d([DATA, rt, 0, ts, 0, any]), neg(libc::ETIMEDOUT), "realtime");
        // Hostile arguments: errors, never a sleep on a monitor word.
        assert_eq!(d([DATA, op::WAIT_BITSET as u64, 0, 0, 0, 1]), neg(libc::ENOSYS), "a bit set: the ring's");
        assert_eq!(d([DATA, op::CMP_REQUEUE as u64, 0, 1, DATA + 4, 0]), neg(libc::ENOSYS));
        assert_eq!(d([DATA, op::LOCK_PI as u64, 0, 0, 0, 0]), neg(libc::ENOSYS));
        assert_eq!(d([DATA + 1, op::WAIT as u64, 0, 0, 0, 0]), neg(libc::EINVAL), "misaligned");
        assert_eq!(d([RING, op::WAIT as u64, 0, 0, 0, 0]), neg(libc::EFAULT), "the ring is not a futex");
        assert_eq!(d([0x5000, op::WAIT as u64, 0, 0, 0, 0]), neg(libc::EFAULT), "unmapped");
        assert_eq!(d([u64::MAX - 3, op::WAKE as u64, 1, 0, 0, 0]), neg(libc::EFAULT), "wraps");
        assert_eq!(d([DATA, op::WAIT as u64, 0, 0x5000, 0, 0]), neg(libc::EFAULT), "timeout pointer");
        let ts = put_timeout(&m, DATA + 0x100, 0, NS_PER_SEC);
        assert_eq!(d([DATA, op::WAIT as u64, 0, ts, 0, 0]), neg(libc::EINVAL), "tv_nsec too large");
        // A huge relative timeout saturates instead of wrapping into the past.
        let ts = put_timeout(&m, DATA + 0x100, i64::MAX, 999_999_999);
        at(&m, DATA).store(1, Ordering::SeqCst);
        assert_eq!(d([DATA, op::WAIT as u64, 0, ts, 0, 0]), neg(libc::EAGAIN));
    }

    #[test]
    fn pi_lock_keeps_the_owner_protocol_without_the_host_knowing_the_tids() {
        let m = mem();
        let w = DATA + 0x40;
        let lock = |tid: u32| futex(&m.mem, tid, [w, op::LOCK_PI as u64 | P, 0, 0, 0, 0]);
        let unlock = |tid: u32| futex(&m.mem, tid, [w, op::UNLOCK_PI as u64 | P, 0, 0, 0, 0]);
        let trylock = |tid: u32| futex(&m.mem, tid, [w, op::TRYLOCK_PI as u64 | P, 0, 0, 0, 0]);
        assert_eq!(lock(1001), 0);
        assert_eq!(at(&m, w).load(Ordering::SeqCst), 1001);
        assert_eq!(lock(1001), neg(libc::EDEADLK));
        assert_eq!(trylock(1002), neg(libc::EAGAIN));
        assert_eq!(unlock(1002), neg(libc::EPERM), "only the owner unlocks");
        assert_eq!(unlock(1001), 0);
        assert_eq!(at(&m, w).load(Ordering::SeqCst), 0);
        assert_eq!(trylock(1002), 0);
        assert_eq!(unlock(1002), 0);
        // A dead owner's lock is taken with OWNER_DIED kept.
        at(&m, w).store(FUTEX_OWNER_DIED, Ordering::SeqCst);
        assert_eq!(lock(1003), 0);
        assert_eq!(at(&m, w).load(Ordering::SeqCst), FUTEX_OWNER_DIED | 1003);
        at(&m, w).store(0, Ordering::SeqCst);
        // LOCK_PI2 with a past monotonic deadline on a held lock times out.
        assert_eq!(lock(1001), 0);
        let (s, n) = now(libc::CLOCK_MONOTONIC);
        let ts = put_timeout(&m, DATA + 0x100, s, n);
        assert_eq!(futex(&m.mem, 1004, [w, op::LOCK_PI2 as u64 | P, 0, ts, 0, 0]), neg(libc::ETIMEDOUT));
        assert_eq!(at(&m, w).load(Ordering::SeqCst), 1001 | FUTEX_WAITERS, "the waiter marked it");
        assert_eq!(unlock(1001), 0);
    }

    #[test]
    fn pi_lock_under_contention_is_mutual_exclusion() {
        let m = mem();
        let w = DATA + 0x40;
        let counter = DATA + 0x80;
        let threads: Vec<_> = (0..4u32)
            .map(|i| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let tid = 2000 + i;
                    for _ in 0..500 {
                        // As glibc: the uncontended path in "user space", the rest here.
                        let a = at(&m, w);
                        if a.compare_exchange(0, tid, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                            assert_eq!(futex(&m.mem, tid, [w, op::LOCK_PI as u64 | P, 0, 0, 0, 0]), 0);
                        }
                        let c = at(&m, counter);
                        // Not atomic as a whole: only the lock makes it right.
                        let v = c.load(Ordering::Relaxed);
                        std::hint::spin_loop();
                        c.store(v + 1, Ordering::Relaxed);
                        if a.compare_exchange(tid, 0, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                            assert_eq!(futex(&m.mem, tid, [w, op::UNLOCK_PI as u64 | P, 0, 0, 0, 0]), 0);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        assert_eq!(at(&m, counter).load(Ordering::SeqCst), 2000);
        assert_eq!(at(&m, w).load(Ordering::SeqCst) & FUTEX_TID_MASK, 0);
    }
}
