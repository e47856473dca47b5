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

/// Spins on the completion queue before going to sleep. Short: a quick
/// call completes within a few hundred nanoseconds while the worker polls;
/// a slow one (real I/O) is better waited for in `futex`, which also
/// leaves the CPU to the worker when both share one (measured: longer
/// spins and `sched_yield` in the loop were slower on a loaded machine).
const SPIN_ITERATIONS: u32 = 300;

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

/// The ring is corrupted: it cannot carry a message any more, so record
/// the reason in the boot block for the monitor and stop.
fn ring_broken() -> ! {
    super::record_abort(cabin_abi::boot::ABORT_RING);
    crate::sys::exit_group(137)
}

/// Forwards one system call made at `site` (its site hint, 0: unknown) and
/// returns the monitor's result.
pub(super) fn call(nr: u64, args: &[u64; 6], flags: u32, site: u64) -> i64 {
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
    r.write_site_hint(tail, site);
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

/// KVM domain: wait and wake with the ring-3 doorbell port instead of futex.
static PORT_DOORBELL: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Switches ring waits to the doorbell port (KVM backend). Called once by `init`.
pub(super) fn use_port_doorbell() {
    PORT_DOORBELL.store(true, Ordering::Relaxed);
}

/// `out` to the doorbell port: the vCPU exits to the monitor, which wakes its
/// worker and, for a wait, resumes the program only once a completion is
/// pending (`cabin_abi::hypercall`).
fn port_doorbell(value: u32) {
    // SAFETY: an `out` to the one port the domain's I/O bitmap allows ring 3;
    // it touches no memory and the monitor changes no register.
    unsafe {
        core::arch::asm!(
            "out {port}, al",
            port = const cabin_abi::hypercall::PORT_DOORBELL,
            in("al") value as u8,
            options(nomem, nostack, preserves_flags),
        );
    }
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
    // SAFETY: futex on a ring doorbell word (shared, so no PRIVATE flag):
    // WAIT only reads the word, WAKE touches no memory. The seccomp filter
    // allows exactly these two operations on exactly these two words.
    unsafe {
        syscall6(NR_FUTEX, &[addr, op, val, 0, 0, 0]);
    }
}
