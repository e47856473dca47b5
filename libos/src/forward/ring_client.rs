//! The libos end of the ring: put one request, wait for its completion.
//!
//! Waiting spins briefly (a forwarded call usually completes within a few
//! microseconds while the monitor's worker is polling), then sleeps on the
//! completion doorbell with `futex`, so an idle program costs no CPU. The
//! protocol is described in `cabin_abi::ring` and docs/ring.md.

use core::sync::atomic::Ordering;

use cabin_abi::ring::{pending, RingPtr, Submission, RING_ENTRIES, STATE_DEAD};

use super::Global;
use crate::sys::syscall6;

/// Spins on the completion queue before going to sleep.
const SPIN_ITERATIONS: u32 = 2000;

const NR_FUTEX: u64 = 202;
const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;

struct Client {
    ring: Option<RingPtr>,
    next_tag: u32,
}

static CLIENT: Global<Client> = Global::new(Client { ring: None, next_tag: 1 });

/// Remembers the (validated) ring. Called once by `init`.
pub(super) fn set_ring(r: RingPtr) {
    // SAFETY: start-up, single thread.
    unsafe { CLIENT.get() }.ring = Some(r);
}

fn ring_broken() -> ! {
    crate::die(b"cabin: ring protocol violation (libos side); stopping\n")
}

/// Forwards one system call and returns the monitor's result.
pub(super) fn call(nr: u64, args: &[u64; 6], flags: u32) -> i64 {
    // SAFETY: single thread; the reference ends with this function and no
    // code called from here touches CLIENT.
    let client = unsafe { CLIENT.get() };
    let Some(r) = client.ring else {
        return -super::errno::ENOSYS;
    };
    let tag = client.next_tag;
    client.next_tag = client.next_tag.wrapping_add(1);

    let tail = r.sq_tail().load(Ordering::Relaxed);
    let head = r.sq_head().load(Ordering::Acquire);
    match pending(head, tail, RING_ENTRIES) {
        Ok(n) if n < RING_ENTRIES => {}
        _ => ring_broken(),
    }
    r.write_submission(tail, &Submission { tag, flags, nr, args: *args });
    r.sq_tail().store(tail.wrapping_add(1), Ordering::SeqCst);
    r.sq_doorbell().fetch_add(1, Ordering::SeqCst);
    if r.sq_sleeping().load(Ordering::SeqCst) != 0 {
        futex(r.sq_doorbell().as_ptr() as u64, FUTEX_WAKE, 1);
    }

    let cq_head = r.cq_head().load(Ordering::Relaxed);
    wait_completion(&r, cq_head);
    let c = r.read_completion(cq_head);
    r.cq_head().store(cq_head.wrapping_add(1), Ordering::Release);
    if c.tag != tag {
        ring_broken();
    }
    c.result
}

/// Returns once `cq_tail != head`.
fn wait_completion(r: &RingPtr, head: u32) {
    for _ in 0..SPIN_ITERATIONS {
        if r.cq_tail().load(Ordering::Acquire) != head {
            return;
        }
        core::hint::spin_loop();
    }
    loop {
        let seen = r.cq_doorbell().load(Ordering::SeqCst);
        r.cq_waiting().store(1, Ordering::SeqCst);
        if r.cq_tail().load(Ordering::SeqCst) != head {
            break;
        }
        if r.state().load(Ordering::SeqCst) == STATE_DEAD {
            ring_broken();
        }
        futex(r.cq_doorbell().as_ptr() as u64, FUTEX_WAIT, seen as u64);
    }
    r.cq_waiting().store(0, Ordering::SeqCst);
}

fn futex(addr: u64, op: u64, val: u64) {
    // SAFETY: futex on a ring doorbell word (shared, so no PRIVATE flag):
    // WAIT only reads the word, WAKE touches no memory. The seccomp filter
    // allows exactly these two operations on exactly these two words.
    unsafe {
        syscall6(NR_FUTEX, &[addr, op, val, 0, 0, 0]);
    }
}
