//! The vCPU thread's side of the ring: the ring doorbell, the slow-path gate
//! (which puts the trapped call on the same ring, so one worker and one
//! service serve everything), and stopping the vCPU from the worker thread.
//!
//! Hot path: the libos publishes a submission and spins on the completion
//! queue while the monitor's worker thread (`cabin_monitor::ring::Worker`) polls;
//! neither side exits. Only when the worker has gone to sleep (idle for
//! `cabin_monitor::ring::SPIN`) does the libos ring the doorbell (`out` from ring 3,
//! [`cabin_abi::hypercall::DOORBELL_WAKE`]), and only when its own spin runs
//! out does it ask to wait ([`cabin_abi::hypercall::DOORBELL_WAIT`]): the
//! vCPU thread then sleeps on the completion doorbell with `futex`, exactly
//! where the process backend's libos would.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cabin_abi::ring::{pending, RingPtr, MAX_POSTED, RING_ENTRIES, STATE_DEAD, SUB_TRAPPED};
use cabin_abi::syscalls::nr;

use super::layout::MAX_VCPUS;
use super::{ProgramMemory, Served, SyscallService};

/// The libos's trap entry, as it published it in the boot page (KVM mode),
/// if it is a plausible user address.
fn trap_entry(mem: &ProgramMemory<'_>) -> Option<u64> {
    cabin_monitor::boot::BootPage::of(mem.mem).ok()?.kvm_trap_entry()
}

fn futex(addr: *mut u32, op: i32, val: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as i64 });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: futex on a word of the ring (host mapping alive for the run);
    // WAIT only reads it, WAKE touches no memory; tsp is null or a local.
    unsafe {
        libc::syscall(libc::SYS_futex, addr, op, val, tsp, 0usize, 0u32);
    }
}

/// Polls of the completion queue before a gate call's vCPU thread sleeps:
/// the call was put on the ring here, nobody spun for it yet.
const GATE_SPINS: u32 = 2000;

/// Shared between the vCPU threads and the threads that stop them (ring
/// workers, the session's stopper, watchdogs).
#[derive(Debug)]
pub struct Shared {
    /// Set when the worker has ended (protocol violation) or the session
    /// stopped the program.
    pub worker_done: AtomicBool,
    /// The violation message, if any.
    pub violation: Mutex<Option<String>>,
    /// Set once the program is ending (`exit_group`, a fault, the last
    /// thread's `exit`): every vCPU leaves its loop at its next exit or
    /// kick ([`crate::vcpus`]).
    pub ending: AtomicBool,
    /// `pthread_t` of each vCPU's thread while it is inside its run loop (0:
    /// none). Kicks are sent under this lock, and a thread clears its entry
    /// under it before it leaves, so a kicked thread is always alive.
    threads: Mutex<Vec<u64>>,
    /// Each vCPU's wake word: every kick changes it and wakes it, so a vCPU
    /// thread sleeping in a program futex (`DOORBELL_FUTEX`, in a host
    /// `futex_waitv` over the program's word and this one) always wakes.
    wake_words: Box<[AtomicU32]>,
    /// Job control: 1 while the program is stopped (every vCPU waits on it
    /// outside `KVM_RUN`, [`RingGate::hold`]), 0 while it runs.
    paused: AtomicU32,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            worker_done: AtomicBool::new(false),
            violation: Mutex::new(None),
            ending: AtomicBool::new(false),
            threads: Mutex::new(vec![0; MAX_VCPUS]),
            wake_words: (0..MAX_VCPUS).map(|_| AtomicU32::new(0)).collect(),
            paused: AtomicU32::new(0),
        }
    }
}

/// Installs the kick handler ([`cabin_monitor::kick`]) so that `KVM_RUN` returns
/// `EINTR` when the vCPU thread is kicked.
pub fn install_kick_handler() {
    cabin_monitor::kick::install();
}

impl Shared {
    fn threads(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The calling thread runs vCPU `slot` from now on (kicks reach it).
    pub fn enter_vcpu(&self, slot: usize) {
        install_kick_handler();
        if let Some(t) = self.threads().get_mut(slot) {
            *t = cabin_monitor::kick::current_thread();
        }
    }

    /// The calling thread has left vCPU `slot`'s loop (no kick reaches it
    /// from now on).
    pub fn leave_vcpu(&self, slot: usize) {
        if let Some(t) = self.threads().get_mut(slot) {
            *t = 0;
        }
    }

    /// Called by the worker thread when it ends on its own, or by the
    /// session's stopper: records why and kicks every vCPU.
    pub fn worker_ended(&self, violation: Option<String>) {
        if let Ok(mut v) = self.violation.lock() {
            *v = violation;
        }
        self.worker_done.store(true, Ordering::SeqCst);
        self.kick_all();
    }

    /// The program is ending: every vCPU leaves its loop.
    pub fn end_program(&self) {
        self.ending.store(true, Ordering::SeqCst);
        self.kick_all();
    }

    /// Kicks every vCPU thread inside its loop out of `KVM_RUN` (or out of
    /// a doorbell wait). Once is enough (the kick sets `immediate_exit`, see
    /// [`cabin_monitor::kick`]); the caller sets the reason (`worker_done`,
    /// `ending`, a deadline) before, and the run loop checks it after
    /// `EINTR`, and once before its first `KVM_RUN` (a kick that came
    /// earlier).
    pub fn kick_all(&self) {
        let threads = self.threads();
        for (slot, &t) in threads.iter().enumerate().filter(|(_, &t)| t != 0) {
            if let Some(w) = self.wake_words.get(slot) {
                // Before the signal: a sleeper that read the word earlier
                // finds it changed (or is woken), whenever it blocks.
                w.fetch_add(1, Ordering::SeqCst);
                futex(w.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, u32::MAX >> 1, None);
            }
            // SAFETY: `t` is inside its run loop: it clears its entry under
            // this lock before it leaves, so it has not exited.
            unsafe { cabin_monitor::kick::kick(t) };
        }
    }

    /// Job control: `true` stops the program (every vCPU leaves `KVM_RUN`
    /// and waits in [`RingGate::hold`] before it enters again), `false`
    /// continues it.
    pub fn pause(&self, on: bool) {
        self.paused.store(u32::from(on), Ordering::SeqCst);
        if on {
            self.kick_all();
        } else {
            futex(self.paused.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, u32::MAX >> 1, None);
        }
    }

    /// vCPU `slot`'s wake word (see the field), if the slot exists.
    pub fn wake_word(&self, slot: usize) -> Option<&AtomicU32> {
        self.wake_words.get(slot)
    }

    fn violation(&self) -> String {
        self.violation
            .lock()
            .ok()
            .and_then(|v| v.clone())
            .unwrap_or_else(|| "the ring worker stopped".to_string())
    }

    fn stopped(&self) -> bool {
        self.worker_done.load(Ordering::SeqCst) || self.ending.load(Ordering::SeqCst)
    }
}

/// The vCPU thread's service: gate calls go onto the ring, doorbells wake
/// the worker or wait for a completion.
#[derive(Debug)]
pub struct RingGate {
    ring: RingPtr,
    shared: Arc<Shared>,
    /// The vCPU slot whose ring this is.
    slot: usize,
    /// Gate calls redirected into the libos.
    pub redirects: u64,
    /// Doorbell exits that asked to wait for a completion.
    pub doorbell_waits: u64,
}

impl RingGate {
    /// A gate over `ring`, the ring of vCPU `slot`.
    pub fn new(ring: RingPtr, shared: Arc<Shared>, slot: usize) -> RingGate {
        RingGate { ring, shared, slot, redirects: 0, doorbell_waits: 0 }
    }

    fn wake_worker(&self) {
        let r = self.ring;
        r.sq_doorbell().fetch_add(1, Ordering::SeqCst);
        if r.sq_sleeping().load(Ordering::SeqCst) != 0 {
            futex(r.sq_doorbell().as_ptr(), libc::FUTEX_WAKE, 1, None);
        }
    }

    /// Sleeps until the completion queue has an entry past `head`, the ring
    /// is dead, or the worker ended, after a spin of `spins` polls. Returns
    /// false in the last two cases.
    fn wait_completion(&self, head: u32, spins: u32) -> bool {
        let r = self.ring;
        for _ in 0..spins {
            if r.completion_ready(head) {
                return true;
            }
            std::hint::spin_loop();
        }
        loop {
            let seen = r.cq_doorbell().load(Ordering::SeqCst);
            r.cq_waiting().store(1, Ordering::SeqCst);
            if r.completion_ready(head) {
                r.cq_waiting().store(0, Ordering::SeqCst);
                return true;
            }
            if r.state().load(Ordering::SeqCst) == STATE_DEAD || self.shared.stopped() {
                return false;
            }
            futex(r.cq_doorbell().as_ptr(), libc::FUTEX_WAIT, seen, Some(Duration::from_millis(100)));
        }
    }

    /// Puts one trapped call on the ring on the program's behalf (the vCPU
    /// is stopped, so the libos cannot touch the ring meanwhile) and waits
    /// for its completion.
    fn forward(&mut self, nr: u64, args: [u64; 6]) -> Served {
        let r = self.ring;
        let tail = r.sq_tail().load(Ordering::SeqCst);
        let head = r.sq_head().load(Ordering::SeqCst);
        match pending(head, tail, RING_ENTRIES) {
            Ok(n) if n < RING_ENTRIES => {}
            _ => return Served::Violation(format!("ring indices corrupted (sq head {head}, tail {tail})")),
        }
        // The libos leaves no completion unconsumed between calls but those
        // of the requests it posted without waiting (at most `MAX_POSTED`,
        // answered in order before ours: consumed with ours), so ours is at
        // `tail` and carries our submission's sequence number.
        let cq_head = r.cq_head().load(Ordering::SeqCst);
        if tail.wrapping_sub(cq_head) > MAX_POSTED {
            return Served::Violation(format!("ring indices corrupted (sq tail {tail}, cq head {cq_head})"));
        }
        // Site unknown here (0): never leave the slot's last hint behind.
        r.write_site_hint(tail, 0);
        r.publish_submission(tail, SUB_TRAPPED, nr, &args);
        r.sq_tail().store(tail.wrapping_add(1), Ordering::SeqCst);
        self.wake_worker();
        if !self.wait_completion(tail, GATE_SPINS) {
            return Served::Violation(self.shared.violation());
        }
        let c = r.read_completion(tail);
        r.cq_head().store(tail.wrapping_add(1), Ordering::SeqCst);
        if c.tag != tail.wrapping_add(1) {
            return Served::Violation("ring completion out of order (gate call)".into());
        }
        Served::Return(c.result)
    }
}

impl SyscallService for RingGate {
    fn serve(&mut self, nr: u64, args: [u64; 6], mem: &ProgramMemory<'_>) -> Served {
        match nr {
            // `exit` ends the calling thread (its vCPU); the last thread's
            // ends the program.
            nr::exit => Served::ThreadExit((args[0] & 0xff) as i32),
            // `exit_group`: the other call that ends something here.
            nr::exit_group => Served::Exit((args[0] & 0xff) as i32),
            // `rt_sigreturn` (also always served) is the libos's, as any
            // trapped call: redirected below, where the trap entry hands it
            // the frame at the site's rsp. (It once fell in with
            // `exit_group` here and ended the program with status `rdi`.)
            // The libos's own raw calls are exit_group and, in `die`, write:
            // never redirect those (a broken ring would loop).
            nr::write => self.forward(nr, args),
            _ => match trap_entry(mem) {
                Some(entry) if mem.can_redirect => {
                    self.redirects += 1;
                    Served::Redirect(entry)
                }
                _ => self.forward(nr, args),
            },
        }
    }

    fn doorbell(&mut self, wait: bool) -> Served {
        self.wake_worker();
        if wait {
            self.doorbell_waits += 1;
            let head = self.ring.cq_head().load(Ordering::SeqCst);
            // No spin: the libos parks only after its own spin ran out, or
            // at once for a call known to take longer than a spin (a
            // thread start, a futex wait); a second spin here, ~50 µs of
            // `pause` on this host, only kept the CPU from the worker that
            // serves the call (docs/threads.md, "Waiting").
            if !self.wait_completion(head, 0) {
                return Served::Violation(self.shared.violation());
            }
        }
        Served::Return(0)
    }

    fn futex(&mut self, args: [u64; 6], mem: &ProgramMemory<'_>, kicked: &dyn Fn() -> bool) -> Served {
        let Some(wake) = self.shared.wake_word(self.slot) else {
            return Served::Return(-i64::from(libc::ENOSYS));
        };
        // The wake word first, then why a kick may have come: a kick (or a
        // kick handler run on this thread) after this read changes the
        // word, so the sleep below cannot miss it; one before it set the
        // flags looked at here.
        let seen = wake.load(Ordering::SeqCst);
        if self.shared.stopped() || kicked() {
            return Served::Return(-i64::from(libc::EINTR));
        }
        Served::Return(cabin_monitor::futex::direct(mem.mem, args, wake, seen))
    }

    fn wake_word(&self) -> Option<*const AtomicU32> {
        self.shared.wake_word(self.slot).map(|w| w as *const AtomicU32)
    }

    /// While the program is stopped (job control), waits here, outside
    /// `KVM_RUN`; a stop of the program (its end, `SIGKILL`) ends the wait
    /// within 20 ms, and its kick then ends the loop.
    fn hold(&mut self) {
        while self.shared.paused.load(Ordering::SeqCst) != 0 && !self.shared.stopped() {
            futex(
                self.shared.paused.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                1,
                Some(std::time::Duration::from_millis(20)),
            );
        }
    }

    fn interrupted(&mut self) -> Option<Served> {
        if self.shared.worker_done.load(Ordering::SeqCst) {
            return Some(Served::Violation(self.shared.violation()));
        }
        None
    }

    fn counters(&self) -> (u64, u64) {
        (self.redirects, self.doorbell_waits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cabin_abi::ring::RING_BYTES;

    #[repr(C, align(64))]
    struct Area([u8; RING_BYTES]);

    /// A ring with `posted` requests the libos left unconsumed (their
    /// completions published), and a gate on it.
    fn gate_with_posted(posted: u32) -> (Box<Area>, RingGate) {
        let mut area = Box::new(Area([0; RING_BYTES]));
        // SAFETY: the boxed area is aligned, RING_BYTES long, and outlives
        // every use in the test (returned alongside the gate).
        let r = unsafe { RingPtr::new(area.0.as_mut_ptr()) };
        r.init();
        for i in 0..posted {
            r.publish_submission(i, 0, nr::close, &[3 + u64::from(i), 0, 0, 0, 0, 0]);
            r.publish_completion(i, 0);
        }
        r.sq_tail().store(posted, Ordering::SeqCst);
        r.sq_head().store(posted, Ordering::SeqCst);
        (area, RingGate::new(r, Arc::new(Shared::default()), 0))
    }

    /// Serves the one submission at `index` of the ring at `area` with
    /// `result` from another thread.
    fn serve_later(area: &Area, index: u32, result: i64) -> std::thread::JoinHandle<()> {
        let addr = area.0.as_ptr() as usize;
        std::thread::spawn(move || {
            // SAFETY: the same ring area, alive until the test joins this thread.
            let r = unsafe { RingPtr::new(addr as *mut u8) };
            while !r.submission_ready(index) {
                std::thread::yield_now();
            }
            r.publish_completion(index, result);
        })
    }

    /// A trapped call after closes the libos posted (at most `MAX_POSTED`)
    /// gets its own answer and consumes theirs; more unconsumed completions
    /// than that are a protocol violation, not a wait or a panic.
    #[test]
    fn the_gate_consumes_posted_completions_with_its_own() {
        for posted in [0, 1, MAX_POSTED] {
            let (area, mut gate) = gate_with_posted(posted);
            let server = serve_later(&area, posted, 42);
            match gate.forward(nr::getppid, [0; 6]) {
                Served::Return(42) => {}
                other => panic!("{posted} posted: {other:?}"),
            }
            server.join().expect("server");
            assert_eq!(gate.ring.cq_head().load(Ordering::SeqCst), posted + 1);
        }
        let (_area, mut gate) = gate_with_posted(MAX_POSTED + 1);
        match gate.forward(nr::getppid, [0; 6]) {
            Served::Violation(m) => assert!(m.contains("ring indices corrupted"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
