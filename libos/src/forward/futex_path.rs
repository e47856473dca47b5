//! The program's `futex` fast path (docs/threads.md, "Futex fast path").
//!
//! A thread hand-off through a futex costs little natively (the kernel
//! parks and wakes a task) but a lot confined, above all on KVM, where a
//! forwarded wait parks the vCPU behind the doorbell and the wake travels
//! worker → host futex → worker → doorbell → vCPU (~170 µs each way on a
//! nested host). Two things keep most hand-offs in ring 3:
//!
//! - **No call for a word that already differs** (both backends): such a
//!   `FUTEX_WAIT`/`WAIT_BITSET` is `EAGAIN`, as the kernel answers.
//! - **Spin before waiting** (KVM): `FUTEX_WAIT`/`WAIT_BITSET` without a
//!   timeout first watches the word for a bounded, TSC-timed window
//!   ([`SPIN_NS`]) and returns 0 as soon as it differs from `val`. A futex
//!   wait may return spuriously; every user (glibc, musl, Rust std, Go)
//!   re-checks its condition. After the window the wait is forwarded as
//!   before, so a thread that really blocks uses no CPU after the spin. A
//!   thread whose spins keep running out pauses spinning
//!   ([`MISSES_BEFORE_PAUSE`], [`PROBE_EVERY`]). The process backend does
//!   not spin: its native block and wake cost a few µs, and spinning there
//!   measured slower on a loaded host (docs/performance.md).
//! - **Skip a wake nobody needs** (KVM, where a wake is a forwarded call):
//!   the libos counts, per hash bucket of the word's address, the program's
//!   threads that sleep in the monitor ([`SLEEPERS`]). A `FUTEX_WAKE` or
//!   `WAKE_BITSET` whose bucket holds no sleeper returns 0 without a
//!   forward.
//!
//! Why a skipped wake is never lost (the classic store-buffer argument):
//!
//! ```text
//!   waiter W                               waker K
//!   SLEEPERS[b] += 1   (SeqCst RMW)        *word = new   (the program's store)
//!   forward WAIT(word, val):               fence(SeqCst)
//!     the monitor's host futex checks      n = SLEEPERS[b]   (SeqCst load)
//!     *word == val under its lock          n == 0 → skip, else forward WAKE
//! ```
//!
//! In the single total order of SeqCst operations either K's load comes
//! after W's increment (K forwards the wake; if W is not queued in the host
//! futex yet, the host's value check runs after K's store and sees `new`,
//! so W does not sleep), or K's load comes before it: then K's store, which
//! precedes K's fence, is visible to everything W does after its increment,
//! including the monitor's value check (ordered after it through the ring's
//! release/acquire hand-off), so W finds `*word != val` and does not sleep.
//! A wake whose target has not started waiting yet is not owed to it (the
//! kernel loses such a wake too: the value check is what makes it safe).
//!
//! Requeues move sleepers from one word to another, so the count of the
//! target word's bucket would be wrong: the first `REQUEUE`/`CMP_REQUEUE`
//! (or any operation this module does not know) switches the skip off for
//! the rest of the run ([`NO_SKIP`], set before the requeue is forwarded).
//! glibc ≥ 2.25, musl, Rust std and Go never requeue.
//!
//! The process backend keeps its native wakes: a `futex` from a trap site
//! (a `syscall` the rewriter could not rewrite) reaches the kernel without
//! passing here, so the libos cannot count every sleeper there; a native
//! wake is cheap anyway.
//!
//! Attacker: the counts are the program's own memory. A program that
//! corrupts them only loses its own wake-ups (its timed waits still end at
//! their timeouts) or forwards wakes it need not; the monitor serves every
//! forwarded futex as before and trusts nothing here (docs/threat-model.md).

use core::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::{errno, nr};

/// How long a futex wait watches its word in ring 3 before it blocks. A
/// hand-off between two running threads takes well under a microsecond;
/// blocking and waking costs a few µs natively and ~170 µs on nested KVM
/// per direction. A thread that really waits pays this much CPU once.
pub(crate) const SPIN_NS: u64 = 50_000;

/// A thread whose last `MISSES_BEFORE_PAUSE` spins all ran out stops
/// spinning (its hand-offs come slower than the window: the partner is not
/// running, say on a host with more runnable threads than CPUs, where a
/// spin only takes the CPU from the thread it waits for), and spins again
/// on every `PROBE_EVERY`-th wait to see whether that changed.
const MISSES_BEFORE_PAUSE: u32 = 4;
const PROBE_EVERY: u32 = 64;

/// Sleeper-count buckets (a power of two).
const BUCKETS: usize = 128;

/// Threads of the program sleeping in the monitor on a word of each bucket
/// (KVM). Incremented before a wait is forwarded, decremented after its
/// answer.
static SLEEPERS: [AtomicU32; BUCKETS] = [const { AtomicU32::new(0) }; BUCKETS];

/// Set for good by the first operation that can move sleepers between
/// words (requeue) or that this path does not model: wakes are forwarded
/// from then on.
static NO_SKIP: AtomicBool = AtomicBool::new(false);

/// TSC ticks of the spin window (0: no spin). Set once by [`init`].
static SPIN_TICKS: AtomicU64 = AtomicU64::new(0);

/// Whether wakes may be skipped (KVM). Set once by [`init`].
static SKIP_WAKES: AtomicBool = AtomicBool::new(false);

/// Whether forwarded waits and wakes go to the vCPU's own host thread
/// through the doorbell port (`DOORBELL_FUTEX`, KVM) instead of the ring.
/// Set by [`init`]; cleared for good when the monitor answers `ENOSYS`
/// (a host without `futex_waitv`).
static DIRECT: AtomicBool = AtomicBool::new(false);

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_WAKE_OP: u64 = 5;
const FUTEX_LOCK_PI: u64 = 6;
const FUTEX_UNLOCK_PI: u64 = 7;
const FUTEX_TRYLOCK_PI: u64 = 8;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_LOCK_PI2: u64 = 13;
/// The operation's number, without `FUTEX_PRIVATE_FLAG` and
/// `FUTEX_CLOCK_REALTIME`.
const FUTEX_CMD_MASK: u64 = 0x7f;

/// The lowest address the fast path reads: a word on the zero page is the
/// program's error, answered by the kernel or the monitor (`EFAULT`).
const LOWEST: u64 = 4096;
/// The end of the lower canonical half: the program's addresses.
const USER_END: u64 = 0x0000_8000_0000_0000;

/// Sets the spin window from the TSC rate (`tsc_khz`, 0: unknown, assume
/// 2 GHz) and whether wakes may be skipped (`skip_wakes`: the KVM backend).
/// Called once by `init`, before the program runs.
pub(super) fn init(tsc_khz: u64, kvm: bool) {
    let per_us = if tsc_khz >= 1_000 { tsc_khz / 1_000 } else { 2_000 };
    let ns = if kvm { SPIN_NS } else { 0 };
    SPIN_TICKS.store((ns / 1_000).saturating_mul(per_us), Ordering::Relaxed);
    SKIP_WAKES.store(kvm, Ordering::Relaxed);
    DIRECT.store(kvm, Ordering::Relaxed);
}

/// The bucket of the word at `addr`.
fn bucket(addr: u64) -> &'static AtomicU32 {
    // Fibonacci hashing of the word index: neighbouring words spread out.
    let h = (addr >> 2).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BUCKETS.trailing_zeros());
    &SLEEPERS[h as usize & (BUCKETS - 1)]
}

/// Whether the fast path may read the word at `addr` (4-aligned, not on
/// the zero page, a user address). Anything else goes to the kernel or the
/// monitor, which answer `EINVAL`/`EFAULT`.
fn readable(addr: u64) -> bool {
    addr.is_multiple_of(4) && (LOWEST..USER_END - 4).contains(&addr)
}

/// Is `futex(a)` a wait (it completes when woken or timed out)?
pub(super) fn is_wait(a: &[u64; 6]) -> bool {
    matches!(a[1] & FUTEX_CMD_MASK, FUTEX_WAIT | FUTEX_WAIT_BITSET)
}

/// Is this a plain wait (`WAIT` or `WAIT_BITSET` with a non-zero bit set)
/// without a timeout, which the spin may serve?
fn spinnable(a: &[u64; 6]) -> bool {
    let cmd = a[1] & FUTEX_CMD_MASK;
    let plain = cmd == FUTEX_WAIT || (cmd == FUTEX_WAIT_BITSET && a[5] as u32 != 0);
    plain && a[3] == 0 && readable(a[0])
}

/// The fast path of `futex(a)`, before the call goes to the kernel
/// (process backend) or the monitor (KVM): `Some(result)` when it is served
/// here, `None` to make the call as usual ([`forward`] on KVM).
pub(super) fn fast(a: &[u64; 6]) -> Option<i64> {
    let cmd = a[1] & FUTEX_CMD_MASK;
    if spinnable(a) {
        return spin(a[0], a[2] as u32);
    }
    if matches!(cmd, FUTEX_WAKE | FUTEX_WAKE_BITSET)
        && SKIP_WAKES.load(Ordering::Relaxed)
        && readable(a[0])
        && (cmd == FUTEX_WAKE || a[5] as u32 != 0)
    {
        // The program's store to the word came before this call; order it
        // before the count's load (the waiter's side is its SeqCst
        // increment, see the module's comment).
        fence(Ordering::SeqCst);
        // A word of the tree's shared window or of a shared file mapping
        // may have sleepers in other processes, which this process's
        // counts do not see: never skipped.
        if !NO_SKIP.load(Ordering::SeqCst)
            && bucket(a[0]).load(Ordering::SeqCst) == 0
            && !super::shm::overlaps(a[0], 4)
            && !super::filemap::overlaps(a[0], 4)
        {
            return Some(0);
        }
    }
    None
}

/// Watches the word at `addr` (checked by [`readable`]) for the spin
/// window: `EAGAIN` if it differs at once (the kernel's answer), 0 if it
/// changes within the window (a wake-up the caller re-checks), `None` if it
/// still holds `val` (block as usual).
fn spin(addr: u64, val: u32) -> Option<i64> {
    // SAFETY: a 4-aligned user address the program gave as its futex word
    // (`readable`); the load is atomic, as the kernel's own read of the word
    // is. A word on an unmapped page faults in the program's own domain
    // (SIGSEGV where the kernel would answer EFAULT: docs/threads.md).
    let word = unsafe { AtomicU32::from_ptr(addr as *mut u32) };
    if word.load(Ordering::Acquire) != val {
        return Some(-errno::EAGAIN);
    }
    let ticks = SPIN_TICKS.load(Ordering::Relaxed);
    if ticks == 0 {
        return None;
    }
    let misses = &super::thread::current().futex_misses;
    let m = misses.load(Ordering::Relaxed);
    misses.store(m.wrapping_add(1), Ordering::Relaxed);
    if !should_spin(m) {
        return None;
    }
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < ticks {
        for _ in 0..16 {
            core::hint::spin_loop();
            if word.load(Ordering::Acquire) != val {
                misses.store(0, Ordering::Relaxed);
                return Some(0);
            }
        }
    }
    None
}

/// Whether a wait spins after `misses` waits without a spin that paid
/// (also the rule of `ring_client` for a forwarded readiness wait).
pub(super) fn should_spin(misses: u32) -> bool {
    misses < MISSES_BEFORE_PAUSE || misses.is_multiple_of(PROBE_EVERY)
}

/// KVM: forwards `futex(a)` (which [`fast`] did not serve) with the
/// sleeper count kept: a wait counts itself in its word's bucket while the
/// monitor has it; a requeue (or an operation not modelled here) switches
/// the wake skip off first.
pub(super) fn forward(a: &[u64; 6], flags: u32, site: u64) -> i64 {
    let cmd = a[1] & FUTEX_CMD_MASK;
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET if readable(a[0]) => {
            let b = bucket(a[0]);
            b.fetch_add(1, Ordering::SeqCst);
            let r = match direct(a) {
                Some(r) => r,
                None => super::forward_from(nr::futex, a, flags, site),
            };
            b.fetch_sub(1, Ordering::SeqCst);
            r
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => match direct(a) {
            Some(r) => r,
            None => super::forward_from(nr::futex, a, flags, site),
        },
        // These neither move sleepers nor sleep on a word a plain wake
        // targets (PI waiters are woken by UNLOCK_PI, always forwarded;
        // a wait on a word the fast path may not read is the monitor's
        // EINVAL/EFAULT); WAKE_OP wakes (always forwarded) but moves nobody.
        FUTEX_WAIT | FUTEX_WAIT_BITSET | FUTEX_WAKE_OP | FUTEX_LOCK_PI | FUTEX_LOCK_PI2 | FUTEX_UNLOCK_PI
        | FUTEX_TRYLOCK_PI => super::forward_from(nr::futex, a, flags, site),
        _ => {
            // REQUEUE, CMP_REQUEUE, the requeue-PI pair, unknown numbers:
            // from now on every wake goes to the monitor.
            NO_SKIP.store(true, Ordering::SeqCst);
            super::forward_from(nr::futex, a, flags, site)
        }
    }
}

/// KVM: `futex(a)` served by this thread's vCPU thread through the
/// doorbell port (`DOORBELL_FUTEX`): a wait sleeps there on the host futex
/// of the word (one wake hop: the waker's wake reaches that thread
/// directly), a wake is made there (no ring worker to wake). `None` for
/// what it does not serve (bit-set waits other than "any", other
/// operations, the process backend, a monitor without it): the ring's.
/// An `EINTR` (a kick of the vCPU) is made again unless a signal is there
/// to be taken, as for the ring's calls.
fn direct(a: &[u64; 6]) -> Option<i64> {
    if !DIRECT.load(Ordering::Relaxed) {
        return None;
    }
    let cmd = a[1] & FUTEX_CMD_MASK;
    let any = cmd == FUTEX_WAIT || cmd == FUTEX_WAKE || a[5] as u32 == u32::MAX;
    if !matches!(cmd, FUTEX_WAIT | FUTEX_WAIT_BITSET | FUTEX_WAKE | FUTEX_WAKE_BITSET)
        || (cmd == FUTEX_WAIT_BITSET && !any)
    {
        return None;
    }
    let r = super::checked(nr::futex, a, &mut || port_futex(a));
    if r == -errno::ENOSYS {
        DIRECT.store(false, Ordering::Relaxed);
        return None;
    }
    Some(r)
}

/// `DOORBELL_FUTEX` with the futex arguments; the monitor's result.
fn port_futex(a: &[u64; 6]) -> i64 {
    super::doorbell::ring(cabin_abi::hypercall::DOORBELL_FUTEX, *a)
}

fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` reads the time-stamp counter; no memory, no faults
    // (neither backend disables it for the program).
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinning_pauses_after_misses_and_probes() {
        assert!((0..MISSES_BEFORE_PAUSE).all(should_spin));
        assert!(!should_spin(MISSES_BEFORE_PAUSE));
        assert!(!should_spin(PROBE_EVERY - 1));
        assert!(should_spin(PROBE_EVERY));
        assert!(should_spin(3 * PROBE_EVERY));
    }

    #[test]
    fn buckets_spread_neighbouring_words() {
        let base = 0x7000_0000u64;
        let mut seen = [false; BUCKETS];
        for i in 0..BUCKETS as u64 {
            let b = bucket(base + 4 * i) as *const AtomicU32;
            let k = (b as usize - SLEEPERS.as_ptr() as usize) / core::mem::size_of::<AtomicU32>();
            seen[k] = true;
        }
        // Fibonacci hashing of consecutive indices hits most buckets.
        assert!(seen.iter().filter(|&&s| s).count() > BUCKETS / 2);
    }

    #[test]
    fn only_plain_untimed_waits_on_user_words_spin() {
        let w = 0x10_0000u64;
        assert!(spinnable(&[w, FUTEX_WAIT | 128, 0, 0, 0, 0]));
        assert!(spinnable(&[w, FUTEX_WAIT_BITSET | 128 | 256, 0, 0, 0, u32::MAX as u64]));
        // A timeout, a zero bit set, a bad word, other operations: no spin.
        assert!(!spinnable(&[w, FUTEX_WAIT, 0, 0x1000, 0, 0]));
        assert!(!spinnable(&[w, FUTEX_WAIT_BITSET, 0, 0, 0, 0]));
        assert!(!spinnable(&[w + 2, FUTEX_WAIT, 0, 0, 0, 0]));
        assert!(!spinnable(&[0, FUTEX_WAIT, 0, 0, 0, 0]));
        assert!(!spinnable(&[USER_END, FUTEX_WAIT, 0, 0, 0, 0]));
        assert!(!spinnable(&[w, FUTEX_LOCK_PI, 0, 0, 0, 0]));
    }

    #[test]
    fn a_wait_on_a_changed_word_is_eagain_and_a_change_ends_the_spin() {
        static WORD: AtomicU32 = AtomicU32::new(5);
        let addr = WORD.as_ptr() as u64;
        init(0, true);
        assert_eq!(spin(addr, 4), Some(-errno::EAGAIN));
        std::thread::scope(|s| {
            s.spawn(|| {
                // Changes the word while the waiter spins (or before it
                // starts: then EAGAIN).
                WORD.store(6, Ordering::Release);
            });
            let r = spin(addr, 5);
            assert!(matches!(r, Some(0) | Some(-11) | None), "{r:?}");
        });
    }

    #[test]
    fn a_wake_is_skipped_only_without_sleepers_and_before_a_requeue() {
        static WORD: AtomicU32 = AtomicU32::new(0);
        let addr = WORD.as_ptr() as u64;
        init(0, true);
        let wake = [addr, FUTEX_WAKE | 128, 1, 0, 0, 0];
        assert_eq!(fast(&wake), Some(0));
        bucket(addr).fetch_add(1, Ordering::SeqCst);
        assert_eq!(fast(&wake), None, "a sleeper in the bucket: forwarded");
        bucket(addr).fetch_sub(1, Ordering::SeqCst);
        // A zero bit set is the kernel's EINVAL to give: forwarded.
        assert_eq!(fast(&[addr, FUTEX_WAKE_BITSET, 1, 0, 0, 0]), None);
    }
}
