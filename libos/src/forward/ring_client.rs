//! The libos end of the ring: put one request, wait for its completion
//! (or post one without waiting: a thread start or exit, a `close` whose
//! answer is known; the next request consumes its completion).
//!
//! Waiting spins briefly (a forwarded call usually completes within a few
//! microseconds while the monitor's worker is polling), then sleeps on the
//! completion doorbell with `futex`, so an idle program costs no CPU. The
//! protocol is described in `cabin_abi::ring` and docs/ring.md.

use core::sync::atomic::{AtomicU64, Ordering};

use cabin_abi::ring::{pending, RingPtr, MAX_POSTED, RING_ENTRIES, STATE_DEAD};

use super::thread;
use crate::sys::syscall6;

/// Spins on the completion queue before going to sleep when the worker may
/// share our CPU (no spin budget from the monitor): a quick call completes
/// within a few hundred nanoseconds while the worker polls; anything slower
/// is better waited for in `futex`, which leaves the CPU to the worker.
const SPIN_ITERATIONS: u32 = 300;

/// TSC ticks per microsecond assumed when the monitor gave no TSC rate (the
/// process backend): a spin budget only needs the right order of magnitude.
const DEFAULT_TICKS_PER_US: u64 = 2_000;

const NR_FUTEX: u64 = 202;
const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;

/// How many TSC ticks to spin for a completion before sleeping (0: spin
/// `SPIN_ITERATIONS` polls only). Set from the monitor's spin budget.
static SPIN_TICKS: AtomicU64 = AtomicU64::new(0);

/// Reads the (validated) main ring's head. Called once by `init`, after the
/// main thread's block names the ring. Each thread's ring and its cached
/// `sq_head` (the monitor's head as last read: re-read only when it says the
/// queue may be full, so the hot path never pulls the monitor's line) are
/// in its block.
pub(super) fn set_ring(r: RingPtr) {
    thread::current().sq_head_seen.store(r.sq_head().load(Ordering::Acquire), Ordering::Relaxed);
}

/// Sets how long to spin for a completion: `spin_ns` from the monitor
/// (`BootInfo::spin_ns`, 0: short spins), converted with the TSC rate when
/// known (`tsc_khz`, 0: unknown). Called once by `init`.
pub(super) fn set_spin(spin_ns: u64, tsc_khz: u64) {
    let per_us = if tsc_khz >= 1_000 { tsc_khz / 1_000 } else { DEFAULT_TICKS_PER_US };
    // At most a millisecond, whatever the boot page says.
    let ticks = (spin_ns.min(1_000_000) / 1_000).saturating_mul(per_us);
    SPIN_TICKS.store(ticks, Ordering::Relaxed);
}

/// The ring is corrupted: it cannot carry a message any more, so record
/// the reason in the boot block for the monitor and stop.
fn ring_broken() -> ! {
    super::record_abort(cabin_abi::boot::ABORT_RING);
    crate::sys::exit_group(137)
}

/// Forwards one system call made at `site` (its site hint, 0: unknown) and
/// returns the monitor's result.
pub(super) fn call(nr: u64, args: &[u64; 6], flags: u32, site: u64) -> i64 {
    // Requests this thread posted without waiting (right before this one,
    // at most `MAX_POSTED`) are answered before it, in order: their
    // completions are consumed with ours, without a wait of their own, so
    // the worker serves them and ours back to back.
    let posted = thread::current().posted.swap(0, Ordering::Relaxed);
    // A futex wait that reaches the monitor has spun on its word already
    // (`futex_path`) and ends only when another thread wakes it: a second
    // spin here would only take the CPU from that thread. On KVM it parks
    // the vCPU at once, and the park's doorbell exit wakes the worker too
    // (`DOORBELL_WAIT`), so it saves the separate wake exit.
    let futex_wait = nr == NR_FUTEX && super::futex_path::is_wait(args);
    // KVM: a thread start (`clone`) is answered only once the monitor has
    // set the new vCPU up and started its host thread, longer than a spin
    // lasts; a spin would only keep the program's CPU from the new thread.
    // It parks at once, and its doorbell exit wakes the worker: one exit.
    let thread_start = nr == super::nr::clone && flags & cabin_abi::ring::SUB_THREAD != 0;
    let park = (futex_wait || thread_start) && PORT_DOORBELL.load(Ordering::Relaxed);
    let Some((r, tail)) = submit(nr, args, flags, site, !park) else {
        return -super::errno::ENOSYS;
    };
    // Every earlier completion was consumed but those of the posted
    // requests just before ours, so ours is at `tail`, and it carries the
    // same sequence number as our submission.
    let cq_head = r.cq_head().load(Ordering::Relaxed);
    let unconsumed = tail.wrapping_sub(cq_head);
    if unconsumed != 0 && (posted != tail || unconsumed > MAX_POSTED) {
        ring_broken();
    }
    let spin = SPIN_TICKS.load(Ordering::Relaxed);
    if unconsumed != 0 {
        // Theirs first (they come before ours anyway): a KVM doorbell wait
        // resumes the program once the completion at `cq_head` is there.
        wait_completion(&r, tail.wrapping_sub(1), spin);
        r.cq_head().store(tail, Ordering::Release);
    }
    // A readiness wait is answered when a descriptor becomes ready: at once
    // on a busy server, after a real wait on a quiet one, where a long spin
    // only takes the CPU from the threads (and the client) that would make
    // it ready. It spins while its spins pay (`WaitSpin`).
    let wait = if spin > 0 && is_readiness_wait(nr) { Some(WaitSpin::of_this_thread()) } else { None };
    let spin = match wait {
        _ if futex_wait || park => 0,
        Some(w) if !w.spins() => 0,
        _ => spin,
    };
    let answered = wait_completion(&r, tail, spin);
    if let Some(w) = wait {
        w.record(spin > 0, answered);
    }
    let c = r.read_completion(tail);
    r.cq_head().store(tail.wrapping_add(1), Ordering::Release);
    if c.tag != tail.wrapping_add(1) {
        ring_broken();
    }
    c.result
}

/// Puts a request whose answer the caller already knows (`close` of a
/// descriptor the libos saw opened: `closing`) on this thread's ring and
/// returns without waiting. The monitor serves it before anything this
/// thread asks later (each ring is served in order); the thread's next
/// request consumes its completion ([`call`]), or [`drain_posted`] does.
/// `false`: no ring (start-up), nothing was sent.
pub(super) fn post_known(nr: u64, args: &[u64; 6], site: u64) -> bool {
    let me = thread::current();
    let Some(r) = me.ring() else { return false };
    let posted = me.posted.load(Ordering::Relaxed);
    if posted != 0 && posted.wrapping_sub(r.cq_head().load(Ordering::Relaxed)) >= MAX_POSTED {
        drain_posted();
    }
    let Some((_, index)) = submit(nr, args, 0, site, true) else { return false };
    me.posted.store(index.wrapping_add(1), Ordering::Relaxed);
    true
}

/// Puts one request on this thread's ring without waiting for its answer
/// (a thread's exit: docs/threads.md); its ring and its index (the
/// completion's too). `None` before start-up.
///
/// On KVM a thread's exit does not ring the worker's doorbell here: the
/// `DOORBELL_EXIT` that ends its vCPU next ([`exit_doorbell`]) wakes it.
pub(super) fn post(nr: u64, args: &[u64; 6], flags: u32) -> Option<(RingPtr, u32)> {
    drain_posted();
    let wake = !(nr == super::nr::exit && PORT_DOORBELL.load(Ordering::Relaxed));
    let (r, index) = submit(nr, args, flags, 0, wake)?;
    thread::current().posted.store(index.wrapping_add(1), Ordering::Relaxed);
    Some((r, index))
}

/// Consumes the answers to this thread's posted requests, if any (each
/// thread's completions are published and consumed in order: the last
/// one's being there means the others' are). Their values are not needed
/// (a posted start the monitor refuses is one the libos would not have
/// made; a posted `close` was answered already). If the program or the
/// KVM gate moved the ring's `cq_head` past them meanwhile, there is
/// nothing left to consume.
pub(super) fn drain_posted() {
    let me = thread::current();
    let posted = me.posted.swap(0, Ordering::Relaxed);
    let Some(r) = me.ring().filter(|_| posted != 0) else { return };
    let index = posted.wrapping_sub(1);
    if index.wrapping_sub(r.cq_head().load(Ordering::Relaxed)) < MAX_POSTED {
        wait_completion(&r, index, SPIN_TICKS.load(Ordering::Relaxed));
        r.cq_head().store(index.wrapping_add(1), Ordering::Release);
    }
}

/// Calls that wait for one of many descriptors to become ready (their
/// answer may take as long as their timeout).
fn is_readiness_wait(nr: u64) -> bool {
    use super::nr;
    matches!(
        nr,
        nr::epoll_wait
            | nr::epoll_pwait
            | nr::epoll_pwait2
            | nr::poll
            | nr::ppoll
            | nr::select
            | nr::pselect6
    )
}

/// The long completion spin of a thread's forwarded readiness waits, kept
/// while it pays: after `futex_path`'s number of waits in a row whose spin
/// ran out, the thread's waits sleep after the short spin only, probing
/// with the long one now and then (the rule of `futex_path::should_spin`).
#[derive(Clone, Copy)]
struct WaitSpin(&'static core::sync::atomic::AtomicU32);

impl WaitSpin {
    fn of_this_thread() -> WaitSpin {
        WaitSpin(&thread::current().wait_misses)
    }

    /// Whether this wait spins long.
    fn spins(self) -> bool {
        super::futex_path::should_spin(self.0.load(Ordering::Relaxed))
    }

    /// Counts a wait that `spun` long (or not) and was `answered` before
    /// it slept: an answer within the spin resets the count.
    fn record(self, spun: bool, answered: bool) {
        let m = self.0.load(Ordering::Relaxed);
        self.0.store(if spun && answered { 0 } else { m.wrapping_add(1) }, Ordering::Relaxed);
    }
}

/// Publishes one submission on this thread's ring and, with `wake`, wakes
/// the worker if it may sleep (without: the caller's next doorbell wait
/// does); the ring and the submission's index.
fn submit(nr: u64, args: &[u64; 6], flags: u32, site: u64, wake: bool) -> Option<(RingPtr, u32)> {
    // This thread's ring: only this thread submits on it.
    let me = thread::current();
    let r = me.ring()?;
    // Our own line (the KVM gate also advances it, but only while the
    // program is stopped).
    let tail = r.sq_tail().load(Ordering::Relaxed);
    let seen = me.sq_head_seen.load(Ordering::Relaxed);
    if !matches!(pending(seen, tail, RING_ENTRIES), Ok(n) if n < RING_ENTRIES) {
        let seen = r.sq_head().load(Ordering::Acquire);
        me.sq_head_seen.store(seen, Ordering::Relaxed);
        match pending(seen, tail, RING_ENTRIES) {
            Ok(n) if n < RING_ENTRIES => {}
            _ => ring_broken(),
        }
    }
    r.write_site_hint(tail, site);
    r.publish_submission(tail, flags, nr, args);
    r.sq_tail().store(tail.wrapping_add(1), Ordering::Release);
    if wake && r.sq_sleeping().load(Ordering::SeqCst) != 0 {
        r.sq_doorbell().fetch_add(1, Ordering::SeqCst);
        futex(r.sq_doorbell().as_ptr() as u64, FUTEX_WAKE, 1);
    }
    Some((r, tail))
}

/// Returns once completion `index` is published: spins (`spin_ticks` TSC
/// ticks, or `SPIN_ITERATIONS` polls when 0), then sleeps on the doorbell.
/// `true` when it was published before the sleep.
fn wait_completion(r: &RingPtr, index: u32, spin_ticks: u64) -> bool {
    for _ in 0..SPIN_ITERATIONS {
        if r.completion_ready(index) {
            return true;
        }
        core::hint::spin_loop();
    }
    if spin_ticks > 0 {
        let start = rdtsc();
        while rdtsc().wrapping_sub(start) < spin_ticks {
            for _ in 0..32 {
                if r.completion_ready(index) {
                    return true;
                }
                core::hint::spin_loop();
            }
        }
    }
    loop {
        let seen = r.cq_doorbell().load(Ordering::SeqCst);
        r.cq_waiting().store(1, Ordering::SeqCst);
        if r.completion_ready(index) {
            break;
        }
        if r.state().load(Ordering::SeqCst) == STATE_DEAD {
            ring_broken();
        }
        futex(r.cq_doorbell().as_ptr() as u64, FUTEX_WAIT, seen as u64);
    }
    r.cq_waiting().store(0, Ordering::SeqCst);
    false
}

/// KVM domain: wait and wake with the ring-3 doorbell port instead of futex.
static PORT_DOORBELL: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Switches ring waits to the doorbell port (KVM backend). Called once by `init`.
pub(super) fn use_port_doorbell() {
    PORT_DOORBELL.store(true, Ordering::Relaxed);
}

/// The doorbell: the vCPU exits to the monitor, which wakes its worker and,
/// for a wait, resumes the program only once a completion is pending
/// (`cabin_abi::hypercall`).
fn port_doorbell(value: u32) {
    super::doorbell::ring(value, [0; 6]);
}

/// KVM: ends the calling thread's vCPU with `status` through the doorbell
/// port (`DOORBELL_EXIT`: one exit from ring 3, where a raw `exit` would
/// take the slow-path gate's ring-0 trap first), having woken the worker
/// for the exit posted on the ring. Returns only on the process backend
/// (no doorbell port): the caller then exits natively.
pub(super) fn exit_doorbell(status: u64) {
    if !PORT_DOORBELL.load(Ordering::Relaxed) {
        return;
    }
    // The monitor ends this vCPU and never resumes it (were it resumed,
    // the caller falls back to the raw `exit`).
    super::doorbell::ring(cabin_abi::hypercall::DOORBELL_EXIT, [status, 0, 0, 0, 0, 0]);
}

fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` reads the time-stamp counter; no memory, no faults
    // (neither backend disables it for the program).
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn futex(addr: u64, op: u64, val: u64) {
    if PORT_DOORBELL.load(Ordering::Relaxed) {
        let kind = if op == FUTEX_WAKE {
            cabin_abi::hypercall::DOORBELL_WAKE
        } else {
            cabin_abi::hypercall::DOORBELL_WAIT
        };
        port_doorbell(kind);
        return;
    }
    // A wait ends after 200 ms at most: another thread of the program
    // may have requeued it off the doorbell (docs/threads.md); the caller
    // re-checks the ring either way.
    let timeout: [i64; 2] = [0, 200_000_000];
    let t = if op == FUTEX_WAIT { timeout.as_ptr() as u64 } else { 0 };
    // SAFETY: futex on a ring doorbell word (shared, so no PRIVATE flag):
    // WAIT only reads the word and the timeout (a local), WAKE touches no
    // memory.
    unsafe {
        syscall6(NR_FUTEX, &[addr, op, val, t, 0, 0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_waits_are_told_apart() {
        use super::super::nr;
        for n in
            [nr::epoll_wait, nr::epoll_pwait, nr::epoll_pwait2, nr::poll, nr::ppoll, nr::select, nr::pselect6]
        {
            assert!(is_readiness_wait(n), "{n}");
        }
        for n in [nr::read, nr::recvfrom, nr::write, nr::accept4, nr::futex, nr::epoll_ctl] {
            assert!(!is_readiness_wait(n), "{n}");
        }
    }

    #[test]
    fn a_readiness_wait_spins_while_its_spins_pay() {
        let w = WaitSpin(Box::leak(Box::new(core::sync::atomic::AtomicU32::new(0))));
        // Waits answered within the spin keep it.
        for _ in 0..100 {
            assert!(w.spins());
            w.record(true, true);
        }
        // Four misses in a row: the long spin stops...
        for _ in 0..4 {
            assert!(w.spins());
            w.record(true, false);
        }
        assert!(!w.spins());
        // ...and waits that did not spin never bring it back by themselves
        // (an answer found by the short spin says nothing about the long one)...
        let mut probes = 0;
        for _ in 0..200 {
            let spun = w.spins();
            probes += u32::from(spun);
            w.record(spun, !spun);
        }
        // ...but a probe now and then does, and one that pays restores it.
        assert!(probes >= 2, "{probes}");
        while !w.spins() {
            w.record(false, true);
        }
        w.record(true, true);
        assert!(w.spins());
        w.record(true, false);
        assert!(w.spins());
    }
}
