//! The monitor's ring worker: takes submissions off the ring, hands each to
//! the [`Service`], posts the completion.
//!
//! Polls while requests keep coming, spins for [`SPIN`] after the last one
//! (less after a run's first few calls: [`FIRST_SPIN`], doubled by each
//! call served), then sleeps on the submission doorbell (futex) so an idle program costs
//! no CPU. [`Worker::stop`] (called when the child has exited) wakes it.
//!
//! The worker keeps its own copies of the indices it owns (`sq_head`,
//! `cq_tail`). On the hot path it reads only the submission slot at its head
//! (published by its sequence number, see `cabin_abi::ring`); the indices the
//! domain owns are read off the hot path: `cq_head` when the completion
//! queue may be full, `sq_tail` before sleeping, where it must agree with the
//! slots. Impossible values end the program as a protocol violation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cabin_abi::ring::{
    pending, RingPtr, RING_ENTRIES, STATE_DEAD, SUB_CHECK, SUB_FORK, SUB_THREAD, SUB_TRAPPED,
};
use cabin_abi::syscalls::{self, nr, Serve};
use cabin_abi::thread::{ThreadStart, THREAD_OP_CANCEL, THREAD_OP_SIGNAL, THREAD_OP_START};

use cabin_policy::limits::WriteLimits;

use crate::gate::{Admit, Gate, Stop};
use crate::kick::Kickable;
use crate::memory::GuestMemory;
use crate::service::blocking::Begin;
use crate::service::Begun;
use crate::service::{Service, Violation};
use crate::site_map::SiteMap;

/// How long the worker polls an empty ring before sleeping. Long enough to
/// stay awake across the compute between a program's calls (a wolfCrypt block
/// takes tens of µs; at 50 µs the worker slept between blocks and every call
/// paid a doorbell exit), short enough that an idle program costs no CPU.
pub const SPIN: Duration = Duration::from_micros(1000);

/// What a worker's spin grows from: after its k-th call served the worker
/// spins for `FIRST_SPIN · 2^k`, capped at its spin ([`SPIN`] or less): 32 µs
/// after the first call, the full 1 ms from the sixth on. A short program (`busybox true`: two or three calls before
/// its exit) made its worker spin 1 ms after each of them, most of a
/// millisecond of CPU per call taken from the rest of the start on a busy
/// machine (docs/performance.md, "Process-backend start-up", s30-pstart);
/// a program that keeps calling pays at most a few doorbell wake-ups while
/// the spin grows.
pub const FIRST_SPIN: Duration = Duration::from_micros(16);

/// How long the worker of a thread's ring other than the main one polls
/// before sleeping: those workers share the CPUs with the program's threads
/// (only the main ring's worker has a CPU of its own), so a long spin
/// would take the CPU from the very thread whose next call it waits for.
pub const THREAD_SPIN: Duration = Duration::from_micros(20);

/// Longest doorbell sleep: the bound on how long a program that requeues
/// the doorbell away from the worker (or a lost wake-up) delays a call.
pub const DOORBELL_TIMEOUT: Duration = Duration::from_millis(250);

/// How the domain broke the ring protocol (or, through the service, the
/// contract of a request). The program is ended with the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingViolation {
    /// A submission's flags hold bits the ABI does not define.
    #[error("submission with unknown flags {0:#x}")]
    UnknownFlags(u32),
    /// A check-only submission for a call the libos does not serve itself.
    #[error("check-only submission for system call {0}, which the libos does not serve")]
    CheckNotLocal(u64),
    /// The submission tail is nowhere near the head.
    #[error("submission tail {tail} is impossible for head {head} ({RING_ENTRIES} slots)")]
    ImpossibleTail {
        /// The domain's `sq_tail`.
        tail: u32,
        /// The worker's head.
        head: u32,
    },
    /// The submission tail claims a slot that was never published.
    #[error("submission tail {tail} is ahead of head {head} but slot {head} was never published")]
    UnpublishedSlot {
        /// The domain's `sq_tail`.
        tail: u32,
        /// The worker's head.
        head: u32,
    },
    /// The completion head is nowhere near the tail.
    #[error("completion head {head} is impossible for tail {tail}")]
    ImpossibleCompletionHead {
        /// The domain's `cq_head`.
        head: u32,
        /// The worker's tail.
        tail: u32,
    },
    /// A thread submission for a call that is not a thread operation.
    #[error("thread submission for system call {0}, which is not clone or exit")]
    NotAThreadCall(u64),
    /// A fork submission for a call that is not `clone`, or with other flags.
    #[error("fork submission for system call {0} (flags {1:#x}), which is not a plain clone")]
    NotAForkCall(u64, u32),
    /// The domain lets the completion queue fill up.
    #[error("completion queue full: the domain does not consume completions")]
    CompletionQueueFull,
    /// The service refused a request no correct program makes (a wild
    /// pointer, an impossible length).
    #[error(transparent)]
    Request(#[from] Violation),
}

/// Why serving stopped before the ring ran dry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum Interrupt {
    /// The domain broke the protocol.
    #[error(transparent)]
    Violation(#[from] RingViolation),
    /// The policy or a limit stops the program.
    #[error("{}", .0.message)]
    Stop(Stop),
}

/// How a worker loop ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerEnd {
    /// [`Worker::stop`] was called.
    Stopped,
    /// The domain broke the protocol; the ring is marked dead.
    Violation(RingViolation),
    /// The policy killed the program or a limit stopped it (message already printed).
    Policy(Stop),
}

/// Counters the worker keeps.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkerStats {
    /// Requests served.
    pub forwarded: u64,
    /// Of which arrived through the trap path.
    pub trapped: u64,
    /// Times the worker was preempted while spinning and went on with the
    /// brief spin only (0 or 1 per worker; `--stats`: `spin_preempted`).
    pub spin_preempted: u64,
}

/// The service and the gate (policy, limits, trace), shared by the
/// workers of every ring of one program. One lock: a call holds it while it
/// is decided and served, but never across a host call that can block for
/// long once the program has threads ([`crate::service::blocking`]).
#[derive(Debug)]
pub struct Shared {
    inner: Mutex<Served>,
    /// The program has (had) more than one thread: blocking calls are
    /// served without the lock.
    threaded: AtomicBool,
    /// A child process's service (docs/processes.md): the tree's gate is
    /// the root's, in the root process's `Shared` (locked after this
    /// one's, never the other way round, and never across a call).
    root: Option<Arc<Shared>>,
}

/// What [`Shared`] guards.
#[derive(Debug)]
pub struct Served {
    /// The system-call service.
    pub service: Service,
    /// Policy, limits and trace around each call (none: serve everything).
    pub gate: Option<Gate>,
}

impl Shared {
    /// Shares `service` and `gate` (the service learns what the gate needs
    /// of it: paths for a tracer, the write limits).
    pub fn new(mut service: Service, gate: Option<Gate>) -> Shared {
        service.set_record_paths(gate.as_ref().is_some_and(Gate::wants_paths));
        service.set_write_limits(gate.as_ref().and_then(|g| WriteLimits::new(g.limits())));
        service.set_native_sockets(
            native_sockets_wanted() && gate.as_ref().is_none_or(Gate::allows_native_sockets),
        );
        Shared { inner: Mutex::new(Served { service, gate }), threaded: AtomicBool::new(false), root: None }
    }

    /// The service of a child process of the tree whose root process is
    /// served by `root` (whose gate decides every call of the tree).
    pub fn child(service: Service, root: Arc<Shared>) -> Shared {
        let mut service = service;
        {
            let r = root.lock();
            service.set_record_paths(r.gate.as_ref().is_some_and(Gate::wants_paths));
            service.set_native_sockets(
                native_sockets_wanted() && r.gate.as_ref().is_none_or(Gate::allows_native_sockets),
            );
        }
        Shared {
            inner: Mutex::new(Served { service, gate: None }),
            threaded: AtomicBool::new(false),
            root: Some(root),
        }
    }

    /// Runs `f` on the tree's gate (this process's, or the root's for a
    /// child process); `None` when there is none. `served` is this
    /// process's locked state.
    fn with_gate<R>(&self, served: &mut Served, f: impl FnOnce(&mut Gate, &Service) -> R) -> Option<R> {
        if let Some(g) = served.gate.as_mut() {
            return Some(f(g, &served.service));
        }
        let root = self.root.as_ref()?;
        let mut r = root.lock();
        r.gate.as_mut().map(|g| f(g, &served.service))
    }

    /// Locks the shared state (a worker that panicked while holding it is a
    /// monitor bug reported on its own; the state stays usable).
    pub fn lock(&self) -> MutexGuard<'_, Served> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The program has a second thread from now on.
    pub fn set_threaded(&self) {
        self.threaded.store(true, Ordering::Relaxed);
    }

    /// The service and the gate, once every worker is done.
    pub fn into_inner(self) -> Served {
        self.inner.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a worker asks of the session about program threads (thread
/// submissions, docs/threads.md). Every answer is the completion value.
pub trait ThreadHost {
    /// A validated-in-form [`ThreadStart`] with op `THREAD_OP_START` from
    /// the thread of slot `from`: check it against the monitor's own table,
    /// start the ring's worker and the thread.
    fn start(&self, from: usize, start: &ThreadStart) -> i64;
    /// `THREAD_OP_CANCEL` of slot `slot` from the thread of slot `from`.
    fn cancel(&self, from: usize, slot: usize) -> i64;
    /// `THREAD_OP_SIGNAL` for slot `slot` from the thread of slot `from`:
    /// the libos queued a signal for that thread; interrupt its worker and
    /// wake the domain's threads once.
    fn signal(&self, from: usize, slot: usize) -> i64;
    /// The thread of slot `slot` ends: free its slot (before its completion
    /// is published, so the libos can reuse the slot as soon as it sees it).
    /// The worker goes on serving the ring, for the slot's next thread.
    fn exit(&self, slot: usize);
    /// A fork submission (`SUB_FORK`, docs/processes.md) from the thread of
    /// slot `from` of process `pid`, with its arguments: the child's pid or
    /// `-errno`. Without a process tree: `ENOSYS`.
    fn fork(&self, _from: usize, _pid: u32, _args: &[u64; 6]) -> i64 {
        -i64::from(libc::ENOSYS)
    }
    /// `execve`/`execveat` (`nr`) from the thread of slot `from` of process
    /// `pid` (docs/processes.md): on success the process's domain is
    /// replaced and the answer is never seen; otherwise `-errno`. Without
    /// a process tree, or on a backend that cannot exec: `ENOSYS`.
    fn exec(&self, _mem: &GuestMemory, _from: usize, _pid: u32, _nr: u64, _args: &[u64; 6]) -> i64 {
        -i64::from(libc::ENOSYS)
    }
    /// `kill(target, sig)` from process `pid` to other processes of its
    /// tree: 0 or `-errno` (no process of the tree: `ESRCH`); 1 when the
    /// caller is among the targets (`kill(0)`, its own group): its libos
    /// then raises the signal itself, before the call returns.
    fn kill(&self, pid: u32, target: i32, _sig: u64, _stop: &AtomicBool) -> i64 {
        lone_kill(pid, target)
    }
    /// A process-group, session or parent-death call (`getpgrp`,
    /// `getpgid`, `getsid`, `setpgid`, `setsid`, `prctl`'s
    /// `PR_SET_PDEATHSIG`/`PR_GET_PDEATHSIG`) of process `pid`, served from
    /// its process tree; `None`: the service serves it (no tree: one
    /// process; another `prctl`).
    fn group_call(
        &self,
        _mem: &GuestMemory,
        _pid: u32,
        _nr: u64,
        _args: &[u64; 6],
    ) -> Option<Result<i64, Violation>> {
        None
    }
    /// Whether process `pid` is in a background group of the run's
    /// terminal: `Some(orphaned)`; `None` without a tree, in the foreground
    /// or without the terminal.
    fn background(&self, _pid: u32) -> Option<bool> {
        None
    }
    /// Job control on the run's terminal (`ioctl` `TIOCGPGRP`/`TIOCSPGRP`/
    /// `TIOCGSID`) of process `pid`, served from its tree; `ctty`: whether
    /// the descriptor is the monitor's controlling terminal (else its
    /// errno). `None`: the service serves it (no tree; another request).
    fn terminal(
        &self,
        _mem: &GuestMemory,
        _pid: u32,
        _args: &[u64; 6],
        _ctty: Result<(), i32>,
    ) -> Option<Result<i64, Violation>> {
        None
    }
    /// System V IPC (`semget`, `semop`, `semtimedop`, `semctl`, `msgget`,
    /// `msgsnd`, `msgrcv`, `msgctl`, `shm*`) of process `pid`, served from
    /// its tree outside the service lock; `stop` ends a blocking one
    /// (`EINTR`). Without a process tree: `ENOSYS`.
    fn sysv(
        &self,
        _mem: &GuestMemory,
        _pid: u32,
        _nr: u64,
        _args: &[u64; 6],
        _stop: &AtomicBool,
    ) -> Result<i64, Violation> {
        Ok(-i64::from(libc::ENOSYS))
    }
    /// `wait4` or `waitid` (`nr`) of process `pid`, served outside the
    /// service lock; `stop` ends a blocking wait (`EINTR`). Without a
    /// process tree there is no child: `ECHILD`.
    fn wait(
        &self,
        _mem: &GuestMemory,
        _pid: u32,
        _nr: u64,
        _args: &[u64; 6],
        _stop: &AtomicBool,
    ) -> Result<i64, Violation> {
        Ok(-i64::from(libc::ECHILD))
    }
}

/// `kill(target, _)` from process `pid` of a program without a process
/// tree: its own group (`0`, `-pid`) and "every process" (`-1`) reach only
/// itself, which its libos signals (the answer 1, see [`ThreadHost::kill`]
/// and `Tree::kill`); any other target is `ESRCH`.
pub fn lone_kill(pid: u32, target: i32) -> i64 {
    if target == 0 || target == -1 || i64::from(target) == -i64::from(pid) {
        1
    } else {
        -i64::from(libc::ESRCH)
    }
}

/// Shared handle to stop a worker from another thread.
#[derive(Clone, Debug)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    ring: RingPtr,
    serving: Arc<Kickable>,
}

// SAFETY: RingPtr is Send (atomics/volatile only); the flag is an Arc.
unsafe impl Sync for StopHandle {}

impl StopHandle {
    /// Asks the worker to stop and wakes it, also out of a host call it
    /// is blocked in while serving (a `read` of a pipe, a `nanosleep`),
    /// which then fails with `EINTR`. Call it from the thread that joins the
    /// worker's thread (or from any thread when the worker runs on one that
    /// outlives the call).
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.ring.sq_doorbell().fetch_add(1, Ordering::SeqCst);
        futex(self.ring.sq_doorbell().as_ptr(), libc::FUTEX_WAKE, i32::MAX as u32, None);
        self.serving.kick_until_left(Duration::from_secs(2));
    }

    /// Interrupts the host call the worker is blocked in, if any (it fails
    /// with `EINTR`, which the libos turns into a signal's `EINTR` or a
    /// restart: docs/signals.md). Same caller rule as [`StopHandle::stop`].
    pub fn interrupt(&self) {
        self.serving.kick_once();
    }
}

/// What a submission asks for (its flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An ordinary call.
    Call,
    /// Check-only (`SUB_CHECK`).
    Check,
    /// A thread operation (`SUB_THREAD`).
    Thread,
    /// A child process (`SUB_FORK`).
    Fork,
}

/// A worker over one ring.
#[derive(Debug)]
pub struct Worker {
    ring: RingPtr,
    stop: Arc<AtomicBool>,
    sq_head: u32,
    cq_tail: u32,
    /// The domain's `cq_head` as last read (re-read when the completion
    /// queue may be full).
    cq_head_seen: u32,
    /// Counters.
    pub stats: WorkerStats,
    /// The thread slot whose ring this is (0: the main thread).
    pub slot: usize,
    /// How long to poll an empty ring before sleeping ([`SPIN`] unless set).
    pub spin: Duration,
    /// Whether a preemption during the spin shortens it ([`Worker::adaptive`]).
    adaptive: bool,
    /// The spin the calls served so far earned ([`FIRST_SPIN`], doubled by
    /// each pass that served a call): the spin is the shorter of this and
    /// `spin`.
    pub earned_spin: Duration,
    /// The thread inside [`Worker::run`], for [`StopHandle::stop`].
    serving: Arc<Kickable>,
    /// Turns a slot's site hint into the call site (read only when the gate
    /// asks for a site: a refusal or a trace record).
    sites: SiteMap,
    /// The last submission served was a thread's start or exit
    /// (`SUB_THREAD`): the worker then sleeps without its idle spin
    /// ([`Worker::run`]).
    after_thread_op: bool,
}

/// Whether the calling thread was preempted during a spin: its involuntary
/// context switches (`getrusage(RUSAGE_THREAD)`), read when a spin starts and
/// then every [`Preemption::EVERY`] of spinning (a read is a system call).
#[derive(Default)]
struct Preemption {
    /// Involuntary switches at the spin's start (`None`: not read yet).
    at_start: Option<i64>,
    /// How far into the spin the next read is due.
    next: Duration,
}

impl Preemption {
    const EVERY: Duration = Duration::from_micros(100);

    fn involuntary() -> Option<i64> {
        // SAFETY: an all-zero rusage is valid; getrusage fills the local.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: writes only `u`.
        (unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } == 0).then_some(u.ru_nivcsw)
    }

    /// A spin starts.
    fn start(&mut self) {
        self.at_start = None;
        self.next = Self::EVERY;
    }

    /// `spun` into the spin: was the thread preempted since it started?
    fn check(&mut self, spun: Duration) -> bool {
        if spun < self.next {
            return false;
        }
        self.next = spun + Self::EVERY;
        let Some(now) = Self::involuntary() else { return false };
        match self.at_start {
            None => {
                self.at_start = Some(now);
                false
            }
            Some(before) => now > before,
        }
    }
}

fn futex(addr: *mut u32, op: i32, val: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as i64 });
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: futex on a word of the shared ring mapping (alive while the
    // worker exists); WAIT reads it, WAKE touches no memory; `tsp` is null
    // or a local.
    unsafe {
        libc::syscall(libc::SYS_futex, addr, op, val, tsp, 0usize, 0u32);
    }
}

impl Worker {
    /// The worker of a run placed on CPUs of their own (`true`: it spins for
    /// [`SPIN`] after a call) or not (`false`: [`THREAD_SPIN`] only, since
    /// its spin takes a CPU the program or other work may need).
    pub fn placed(mut self, own_cpu: bool) -> Worker {
        if !own_cpu {
            self.spin = self.spin.min(THREAD_SPIN);
        }
        self
    }

    /// With `on` (`--cpus auto`), a worker preempted while it spins drops
    /// to the [`THREAD_SPIN`] spin for the rest of the run.
    pub fn adaptive(mut self, on: bool) -> Worker {
        self.adaptive = on;
        self
    }

    /// A worker for `ring`, which the monitor initialised.
    pub fn new(ring: RingPtr) -> Worker {
        Worker {
            ring,
            stop: Arc::new(AtomicBool::new(false)),
            sq_head: ring.sq_head().load(Ordering::SeqCst),
            cq_tail: ring.cq_tail().load(Ordering::SeqCst),
            cq_head_seen: ring.cq_head().load(Ordering::SeqCst),
            stats: WorkerStats::default(),
            slot: 0,
            spin: SPIN,
            adaptive: false,
            earned_spin: FIRST_SPIN,
            serving: Arc::default(),
            sites: SiteMap::default(),
            after_thread_op: false,
        }
    }

    /// The image's trampolines, so that denial messages and trace records
    /// show the program's call site rather than a trampoline address.
    /// Without it, hints are shown as they are.
    pub fn set_sites(&mut self, sites: SiteMap) {
        self.sites = sites;
    }

    /// A handle that stops this worker.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { flag: self.stop.clone(), ring: self.ring, serving: self.serving.clone() }
    }

    /// Serves the ring until stopped, until its thread exits or until the
    /// domain breaks the protocol. `threads`: the session's answer to thread
    /// submissions (none: threads are refused with `EAGAIN`).
    pub fn run(&mut self, mem: &GuestMemory, shared: &Shared, threads: Option<&dyn ThreadHost>) -> WorkerEnd {
        self.serving.enter();
        let end = self.serve_until_end(mem, shared, threads);
        self.serving.leave();
        end
    }

    /// One pass of [`Worker::run`]'s loop without waiting: serves what is
    /// published, then holds the domain to the protocol as `run` does before
    /// it sleeps. `Some(end)` when the loop would end there (the ring is then
    /// marked dead). For fuzzing and tests, which drive the worker without
    /// threads (fuzz/fuzz_targets/ring.rs).
    #[doc(hidden)]
    pub fn step(&mut self, mem: &GuestMemory, shared: &Shared) -> Option<WorkerEnd> {
        let checked = self.serve_available(mem, shared, None).and_then(|_| Ok(self.check_idle_tail()?));
        if let Err(why) = checked {
            return Some(self.end_with(why, shared));
        }
        None
    }

    fn serve_until_end(
        &mut self,
        mem: &GuestMemory,
        shared: &Shared,
        threads: Option<&dyn ThreadHost>,
    ) -> WorkerEnd {
        let r = self.ring;
        // Asleep on the doorbell from the start, not spinning: before its
        // first call the program is still starting (on KVM the proxy-kernel
        // boots in emulated ring 0, then the libc's start-up), and a spin
        // through that only takes a CPU from it (docs/performance.md,
        // "Start-up"). The first call rings the doorbell; the spin starts
        // after it.
        let mut idle_since: Option<Instant> = Instant::now().checked_sub(self.spin);
        let mut idle_spins: u32 = 0;
        let mut preempted = Preemption::default();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return WorkerEnd::Stopped;
            }
            match self.serve_available(mem, shared, threads) {
                Err(why) => return self.end_with(why, shared),
                Ok(n) if n > 0 => {
                    self.earned_spin = self.earned_spin.saturating_mul(2).min(self.spin);
                    // After a thread's exit its ring has no thread; after a
                    // start the creator goes on (process backend: it did
                    // not wait) or parks its next call anyway (KVM), and
                    // the new thread wants a CPU: a spin here only takes
                    // one from the program (on a 2-CPU host, create+join
                    // paid two 20 µs spins per thread). Sleep at once: the
                    // next submission rings the doorbell.
                    idle_since =
                        if self.after_thread_op { Instant::now().checked_sub(self.spin) } else { None };
                    idle_spins = 0;
                    continue;
                }
                Ok(_) => {}
            }
            // Poll; look at the clock only every 64 polls (a clock read costs
            // more than a poll and delays noticing the next call).
            idle_spins = idle_spins.wrapping_add(1);
            if !idle_spins.is_multiple_of(64) {
                std::hint::spin_loop();
                continue;
            }
            let since = *idle_since.get_or_insert_with(|| {
                preempted.start();
                Instant::now()
            });
            // Once the program has threads, they may run on every CPU, this
            // worker's too: every worker then polls briefly only.
            let spin =
                if shared.threaded.load(Ordering::Relaxed) { self.spin.min(THREAD_SPIN) } else { self.spin };
            let spin = spin.min(self.earned_spin);
            let spun = since.elapsed();
            if spun < spin {
                // Preempted while spinning: other work wants this CPU, and the
                // spin takes time from it (and makes the load balancer crowd
                // the program's CPU). Poll briefly only from now on.
                if self.adaptive && self.spin > THREAD_SPIN && preempted.check(spun) {
                    self.spin = THREAD_SPIN;
                    self.stats.spin_preempted += 1;
                }
                std::hint::spin_loop();
                continue;
            }
            // Before sleeping, hold the domain to the protocol: its tail must
            // agree with the slots (nothing published past our head).
            if let Err(v) = self.check_idle_tail() {
                return self.end_with(v.into(), shared);
            }
            // Sleep: announce, re-check, wait on the value read before. The
            // wait has a timeout: the program may requeue or wake the
            // doorbell word itself (docs/threads.md), which may only delay
            // its own calls. A wake-up that finds nothing to do goes back to
            // sleep without spinning again, so an idle ring costs no CPU.
            let seen = r.sq_doorbell().load(Ordering::SeqCst);
            r.sq_sleeping().store(1, Ordering::SeqCst);
            if !r.submission_ready(self.sq_head) && !self.stop.load(Ordering::SeqCst) {
                futex(r.sq_doorbell().as_ptr(), libc::FUTEX_WAIT, seen, Some(DOORBELL_TIMEOUT));
            }
            r.sq_sleeping().store(0, Ordering::SeqCst);
            idle_spins = 0;
            idle_since =
                if r.submission_ready(self.sq_head) { None } else { Instant::now().checked_sub(self.spin) };
        }
    }

    /// Ends the loop after a protocol violation or a policy stop: the ring
    /// is marked dead.
    fn end_with(&mut self, why: Interrupt, shared: &Shared) -> WorkerEnd {
        self.ring.state().store(STATE_DEAD, Ordering::SeqCst);
        match why {
            Interrupt::Stop(stop) => WorkerEnd::Policy(stop),
            Interrupt::Violation(v) => {
                let mut guard = shared.lock();
                shared.with_gate(&mut guard, |g, _| g.violation(&v.to_string()));
                WorkerEnd::Violation(v)
            }
        }
    }

    /// With nothing published at our head, the domain's `sq_tail` must not
    /// be ahead of it: the libos publishes a slot before it advances its
    /// tail, so a tail ahead of an unpublished slot, or one further off than
    /// the queue is long, is a protocol violation. A tail *behind* the head
    /// is normal: the worker may have served a slot whose tail store the
    /// libos has not made yet.
    fn check_idle_tail(&self) -> Result<(), RingViolation> {
        let r = self.ring;
        let tail = r.sq_tail().load(Ordering::SeqCst);
        let ahead = tail.wrapping_sub(self.sq_head);
        let behind = self.sq_head.wrapping_sub(tail);
        if ahead > RING_ENTRIES && behind > RING_ENTRIES {
            return Err(RingViolation::ImpossibleTail { tail, head: self.sq_head });
        }
        if ahead > 0 && ahead <= RING_ENTRIES && !r.submission_ready(self.sq_head) {
            return Err(RingViolation::UnpublishedSlot { tail, head: self.sq_head });
        }
        Ok(())
    }

    /// Is there room for one more completion? Reads the domain's `cq_head`
    /// only when the cached copy says the queue may be full.
    fn completion_room(&mut self) -> Result<(), RingViolation> {
        if matches!(pending(self.cq_head_seen, self.cq_tail, RING_ENTRIES), Ok(n) if n < RING_ENTRIES) {
            return Ok(());
        }
        let cq_head = self.ring.cq_head().load(Ordering::SeqCst);
        let used = pending(cq_head, self.cq_tail, RING_ENTRIES)
            .map_err(|_| RingViolation::ImpossibleCompletionHead { head: cq_head, tail: self.cq_tail })?;
        self.cq_head_seen = cq_head;
        if used >= RING_ENTRIES {
            return Err(RingViolation::CompletionQueueFull);
        }
        Ok(())
    }

    /// Serves every submission published so far; returns how many.
    fn serve_available(
        &mut self,
        mem: &GuestMemory,
        shared: &Shared,
        threads: Option<&dyn ThreadHost>,
    ) -> Result<u32, Interrupt> {
        let r = self.ring;
        let mut n = 0;
        while r.submission_ready(self.sq_head) {
            let s = r.read_submission(self.sq_head);
            if s.flags & !(SUB_TRAPPED | SUB_CHECK | SUB_THREAD | SUB_FORK) != 0 {
                return Err(RingViolation::UnknownFlags(s.flags).into());
            }
            // Check-only: the policy's decision on a call the libos serves
            // itself, never performed here.
            let check = s.flags & SUB_CHECK != 0;
            if check && syscalls::serve(s.nr) != Serve::Local {
                return Err(RingViolation::CheckNotLocal(s.nr).into());
            }
            let thread = s.flags & SUB_THREAD != 0;
            if thread && (check || !matches!(s.nr, nr::clone | nr::exit)) {
                return Err(RingViolation::NotAThreadCall(s.nr).into());
            }
            let fork = s.flags & SUB_FORK != 0;
            if fork && (check || thread || s.nr != nr::clone) {
                return Err(RingViolation::NotAForkCall(s.nr, s.flags).into());
            }
            self.completion_room()?;
            let trapped = s.flags & SUB_TRAPPED != 0;
            let kind = match (check, thread, fork) {
                (true, ..) => Kind::Check,
                (_, true, _) => Kind::Thread,
                (.., true) => Kind::Fork,
                _ => Kind::Call,
            };
            let result = self.serve_one(mem, shared, threads, &s, kind, trapped)?;
            self.after_thread_op = thread;
            self.stats.forwarded += 1;
            if trapped {
                self.stats.trapped += 1;
            }
            let exit = thread && s.nr == nr::exit;
            let (slot, tail) = (self.cq_tail, self.cq_tail.wrapping_add(1));
            self.cq_tail = tail;
            self.sq_head = self.sq_head.wrapping_add(1);
            if exit {
                // The indices first: once the completion is published the
                // libos may give the slot (and so this ring) to a new thread,
                // whose ring the monitor resets; nothing here may touch the
                // ring after that but the doorbell.
                r.cq_tail().store(self.cq_tail, Ordering::Release);
                r.sq_head().store(self.sq_head, Ordering::Release);
                if let Some(t) = threads {
                    t.exit(self.slot);
                }
                r.publish_completion(slot, result);
            } else {
                // The completion slot first (what the libos polls), then the
                // indices, on our own lines.
                r.publish_completion(slot, result);
                r.cq_tail().store(self.cq_tail, Ordering::Release);
                r.sq_head().store(self.sq_head, Ordering::Release);
            }
            if r.cq_waiting().load(Ordering::SeqCst) != 0 {
                r.cq_doorbell().fetch_add(1, Ordering::SeqCst);
                futex(r.cq_doorbell().as_ptr(), libc::FUTEX_WAKE, i32::MAX as u32, None);
            }
            n += 1;
            if n == RING_ENTRIES {
                // Let the loop look at the stop flag between full laps.
                break;
            }
        }
        Ok(n)
    }

    /// Decides and serves one submission; the completion value.
    #[allow(clippy::too_many_arguments)]
    fn serve_one(
        &mut self,
        mem: &GuestMemory,
        shared: &Shared,
        threads: Option<&dyn ThreadHost>,
        s: &cabin_abi::ring::Submission,
        kind: Kind,
        trapped: bool,
    ) -> Result<i64, Interrupt> {
        let r = self.ring;
        let (slot, sites) = (self.sq_head, &self.sites);
        let check = kind == Kind::Check;
        let mut guard = shared.lock();
        let admitted = shared.with_gate(&mut guard, |g, service| {
            g.set_caller(service.pid());
            // The site hint is read only if the gate needs it.
            let site = || sites.site(r.read_site_hint(slot));
            let fds = g.counts_fds().then(|| service.open_fds());
            g.admit_lazy(s.nr, &s.args, trapped, site, fds)
        });
        let ticket = match admitted {
            None => None,
            Some(Admit::Serve(t)) => Some(t),
            Some(Admit::Return(ret)) => return Ok(ret),
            Some(Admit::Stop(stop)) => return Err(Interrupt::Stop(stop)),
        };
        let ret = if check {
            0
        } else if let Some(code) = threads.and_then(|t| background_tty(&guard.service, t, s)) {
            // Job control: a background process's terminal call (the libos
            // decides on the signal, `TTY_BACKGROUND_READ`).
            guard.service.stats.per_nr.add(s.nr, 1);
            code
        } else if kind == Kind::Fork {
            // The copy of the domain and the child's start: not under the
            // service lock (the tree takes it to fork the service).
            let pid = guard.service.pid();
            guard.service.stats.per_nr.add(nr::clone, 1);
            drop(guard);
            let ret = match threads {
                Some(t) => t.fork(self.slot, pid, &s.args),
                None => -i64::from(libc::ENOSYS),
            };
            guard = shared.lock();
            ret
        } else if matches!(s.nr, nr::execve | nr::execveat) {
            // An exec reads the image and builds a domain: not under the
            // service lock (the host takes it for the path and the table).
            let pid = guard.service.pid();
            guard.service.stats.per_nr.add(s.nr, 1);
            drop(guard);
            let ret = match threads {
                Some(t) => t.exec(mem, self.slot, pid, s.nr, &s.args),
                None => -i64::from(libc::ENOSYS),
            };
            guard = shared.lock();
            ret
        } else if s.nr == nr::kill {
            // A signal to another process of the tree (the libos serves its
            // own): never a host pid.
            let pid = guard.service.pid();
            guard.service.stats.per_nr.add(s.nr, 1);
            drop(guard);
            let ret = match threads {
                Some(t) => t.kill(pid, s.args[0] as i32, s.args[1], &self.stop),
                None => lone_kill(pid, s.args[0] as i32),
            };
            guard = shared.lock();
            ret
        } else if matches!(s.nr, nr::wait4 | nr::waitid) {
            // A wait for a child blocks without the service lock.
            let pid = guard.service.pid();
            guard.service.stats.per_nr.add(s.nr, 1);
            drop(guard);
            let ret = match threads {
                Some(t) => t.wait(mem, pid, s.nr, &s.args, &self.stop).map_err(RingViolation::from)?,
                None => -i64::from(libc::ECHILD),
            };
            guard = shared.lock();
            ret
        } else if matches!(
            s.nr,
            nr::semget
                | nr::semop
                | nr::semtimedop
                | nr::semctl
                | nr::msgget
                | nr::msgsnd
                | nr::msgrcv
                | nr::msgctl
                | nr::shmget
                | nr::shmat
                | nr::shmdt
                | nr::shmctl
        ) {
            // The tree's own SysV objects (never the host's); a blocking
            // operation waits without the service lock.
            let pid = guard.service.pid();
            guard.service.stats.per_nr.add(s.nr, 1);
            drop(guard);
            let ret = match threads {
                Some(t) => t.sysv(mem, pid, s.nr, &s.args, &self.stop).map_err(RingViolation::from)?,
                None => -i64::from(libc::ENOSYS),
            };
            guard = shared.lock();
            ret
        } else if let Some(r) = match threads {
            // Groups and sessions are the tree's (its table lock only: the
            // tree never takes a service lock under it).
            Some(t)
                if matches!(
                    s.nr,
                    nr::getpgrp | nr::getpgid | nr::getsid | nr::setpgid | nr::setsid | nr::prctl
                ) =>
            {
                t.group_call(mem, guard.service.pid(), s.nr, &s.args)
            }
            // The terminal's foreground group is the tree's too.
            Some(t)
                if s.nr == nr::ioctl
                    && matches!(
                        s.args[1] as u32 as u64,
                        libc::TIOCGPGRP | libc::TIOCSPGRP | libc::TIOCGSID
                    ) =>
            {
                let ctty = guard.service.controlling_tty(s.args[0]);
                t.terminal(mem, guard.service.pid(), &s.args, ctty)
            }
            _ => None,
        } {
            guard.service.stats.per_nr.add(s.nr, 1);
            r.map_err(RingViolation::from)?
        } else if kind == Kind::Thread {
            // Thread operations take the session's own locks (and may start
            // a vCPU): not under the service lock.
            drop(guard);
            let ret = self.thread_call(mem, threads, s);
            guard = shared.lock();
            ret
        } else if s.nr == nr::futex {
            // A futex the libos forwards (KVM: its threads are vCPUs) is
            // served on the monitor's mapping, without the service lock:
            // this worker blocks in a host futex on the program's word
            // (kickable: the stop ends the wait). The caller's tid is the
            // one the KVM domain gives slot k (pid + k), which PI words hold.
            guard.service.stats.per_nr.add(nr::futex, 1);
            let tid = guard.service.pid().wrapping_add(self.slot as u32);
            drop(guard);
            let ret = crate::futex::futex(mem, tid, s.args);
            guard = shared.lock();
            ret
        } else if shared.threaded.load(Ordering::Relaxed) {
            match guard.service.begin_blocking(mem, s.nr, s.args) {
                // A wait on many descriptors (poll, select, epoll_wait...)
                // is prepared under the lock and waited for without it.
                Begin::Handle => match guard.service.begin(mem, s.nr, s.args) {
                    Begun::Done(r) => r.map_err(RingViolation::from)?,
                    Begun::Wait(w) => {
                        drop(guard);
                        let ret = w.finish(mem).map_err(RingViolation::from)?;
                        guard = shared.lock();
                        ret
                    }
                },
                Begin::Done(ret) => ret,
                Begin::Run(call) => {
                    drop(guard);
                    let ran = call.run(mem).map_err(RingViolation::from)?;
                    guard = shared.lock();
                    guard.service.finish_blocking(mem, ran).map_err(RingViolation::from)?
                }
            }
        } else {
            guard.service.handle(mem, s.nr, s.args).map_err(RingViolation::from)?
        };
        if let Some(t) = ticket {
            let note = if check { None } else { Some(guard.service.take_note()) };
            let stop = shared
                .with_gate(&mut guard, |g, service| {
                    g.set_caller(service.pid());
                    match note {
                        None => {
                            g.checked(t);
                            None
                        }
                        Some(note) => g.served_with(t, ret, note),
                    }
                })
                .flatten();
            if let Some(stop) = stop {
                return Err(Interrupt::Stop(stop));
            }
        }
        Ok(ret)
    }

    /// A thread submission (`SUB_THREAD`): `clone` with a [`ThreadStart`],
    /// or `exit` of this ring's thread.
    fn thread_call(
        &self,
        mem: &GuestMemory,
        threads: Option<&dyn ThreadHost>,
        s: &cabin_abi::ring::Submission,
    ) -> i64 {
        if s.nr == nr::exit {
            return 0;
        }
        let Some(host) = threads else { return -i64::from(libc::EAGAIN) };
        if s.args[1] != ThreadStart::SIZE as u64 {
            return -i64::from(libc::EINVAL);
        }
        let mut b = [0u8; ThreadStart::SIZE];
        match mem.read(s.args[0], ThreadStart::SIZE) {
            Ok(bytes) if bytes.len() == b.len() => b.copy_from_slice(&bytes),
            _ => return -i64::from(libc::EFAULT),
        }
        let start = ThreadStart::from_bytes(&b);
        match start.op {
            THREAD_OP_START => host.start(self.slot, &start),
            THREAD_OP_CANCEL => host.cancel(self.slot, start.slot as usize),
            THREAD_OP_SIGNAL => host.signal(self.slot, start.slot as usize),
            _ => -i64::from(libc::EINVAL),
        }
    }
}

/// Linux's `tty_check_change` and `job_control` for the run's terminal
/// (docs/processes.md, "Job control"): a `read`/`readv` of it from a
/// process of a background group is answered
/// [`cabin_abi::boot::TTY_BACKGROUND_READ`] (`EIO` when the group is
/// orphaned), a `write`/`writev` of it with `TOSTOP` set, a `tcsetpgrp`,
/// `tcsetattr`, `tcflush`, `tcflow`, `tcdrain` or a break
/// [`cabin_abi::boot::TTY_BACKGROUND_WRITE`] (or `_ORPHANED`);
/// the libos turns these into `SIGTTIN`/`SIGTTOU` for its group, `EIO` or
/// the call made again. `None`: served as usual (the foreground, another
/// descriptor, no terminal, or the libos's [`cabin_abi::boot::TTY_PROCEED`]).
/// The cheap test first: the tree's table, then the descriptor.
fn background_tty(service: &Service, t: &dyn ThreadHost, s: &cabin_abi::ring::Submission) -> Option<i64> {
    use cabin_abi::boot::{
        TTY_BACKGROUND_READ, TTY_BACKGROUND_WRITE, TTY_BACKGROUND_WRITE_ORPHANED, TTY_PROCEED,
    };
    let read = match s.nr {
        nr::read | nr::readv => true,
        nr::write | nr::writev => false,
        nr::ioctl => {
            let req = s.args[1] as u32 as u64;
            // Linux's `tty_check_change` callers.
            if !matches!(
                req,
                libc::TIOCSPGRP
                    | libc::TCSETS
                    | libc::TCSETSW
                    | libc::TCSETSF
                    | libc::TCSETA
                    | libc::TCSETAW
                    | libc::TCSETAF
                    | libc::TCFLSH
                    | libc::TCXONC
                    | libc::TCSBRK
                    | libc::TCSBRKP
                    | libc::TIOCSBRK
                    | libc::TIOCCBRK
            ) {
                return None;
            }
            false
        }
        _ => return None,
    };
    // Only the libos's second try of a `SIGTTOU` call (a read is never
    // made again with it: a forged mark on a read is checked as any read).
    if !read && s.args[5] == TTY_PROCEED {
        return None;
    }
    let orphaned = t.background(service.pid())?;
    service.controlling_tty(s.args[0]).ok()?;
    if matches!(s.nr, nr::write | nr::writev) && !service.tty_tostop(s.args[0]) {
        return None;
    }
    Some(-match (read, orphaned) {
        (true, true) => i64::from(libc::EIO),
        (true, false) => TTY_BACKGROUND_READ,
        (false, false) => TTY_BACKGROUND_WRITE,
        (false, true) => TTY_BACKGROUND_WRITE_ORPHANED,
    })
}

/// `CABIN_NATIVE_SOCKETS=0` in the monitor's environment keeps every socket
/// call forwarded (docs/networking.md, "The direct data plane": for
/// measuring the two paths with one build, and a way out should the native
/// path ever misbehave).
fn native_sockets_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var_os("CABIN_NATIVE_SOCKETS").is_none_or(|v| v != "0"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::tests::test_memory;
    use crate::service::fs::FsPolicy;
    use cabin_abi::ring::{Submission, RING_BYTES};

    #[repr(C, align(64))]
    struct Area([u8; RING_BYTES]);

    fn setup() -> (Box<Area>, RingPtr, Shared) {
        let mut area = Box::new(Area([0; RING_BYTES]));
        // SAFETY: the boxed area is aligned, RING_BYTES long, and outlives
        // every use in the test (returned alongside the pointer).
        let r = unsafe { RingPtr::new(area.0.as_mut_ptr()) };
        r.init();
        let mut s = Service::new(FsPolicy::default(), b"/".to_vec(), 1);
        s.print_reports = false;
        (area, r, Shared::new(s, None))
    }

    fn submit(r: &RingPtr, nr: i64, args: [u64; 6]) {
        let t = r.sq_tail().load(Ordering::SeqCst);
        r.publish_submission(t, 0, nr as u64, &args);
        r.sq_tail().store(t + 1, Ordering::SeqCst);
    }

    /// A forged fork submission (docs/processes.md): a fork flag on any
    /// call but `clone`, or with the thread or check flag, is a protocol
    /// violation; a well-formed one without a process tree is `ENOSYS`,
    /// and a wait without one `ECHILD`.
    #[test]
    fn forged_fork_submissions() {
        let m = test_memory();
        for (nr, flags) in [
            (libc::SYS_read, SUB_FORK),
            (libc::SYS_clone, SUB_FORK | SUB_THREAD),
            (libc::SYS_clone, SUB_FORK | SUB_CHECK),
        ] {
            let (_a, r, s) = setup();
            let mut w = Worker::new(r);
            r.publish_submission(0, flags, nr as u64, &[0; 6]);
            r.sq_tail().store(1, Ordering::SeqCst);
            let got = w.serve_available(&m, &s, None);
            assert!(
                matches!(
                    got,
                    Err(Interrupt::Violation(
                        RingViolation::NotAForkCall(..)
                            | RingViolation::NotAThreadCall(_)
                            | RingViolation::CheckNotLocal(_)
                    ))
                ),
                "{nr} {flags:#x}: {got:?}"
            );
        }
        let (_a, r, s) = setup();
        let mut w = Worker::new(r);
        r.publish_submission(0, SUB_FORK, libc::SYS_clone as u64, &[0x40_1000, 0x1000, 17, 0, 0, 0]);
        r.sq_tail().store(1, Ordering::SeqCst);
        submit(&r, libc::SYS_wait4, [u64::MAX, 0, 0, 0, 0, 0]);
        // An exec without a process tree (or a backend that cannot) is
        // ENOSYS, whatever its pointers.
        submit(&r, libc::SYS_execve, [0xdead_0000, u64::MAX, 8, 0, 0, 0]);
        assert_eq!(w.serve_available(&m, &s, None), Ok(3));
        assert_eq!(r.read_completion(0).result, -(libc::ENOSYS as i64));
        assert_eq!(r.read_completion(1).result, -(libc::ECHILD as i64));
        assert_eq!(r.read_completion(2).result, -(libc::ENOSYS as i64));
    }

    /// A worker whose ring has seen no call yet sleeps on its doorbell at
    /// once instead of polling through the program's start-up: with a 30 s
    /// spin it is asleep within 2 s, and it still serves the first call
    /// (published with the doorbell rung, as the libos does).
    #[test]
    fn a_worker_sleeps_until_the_first_call() {
        let (_a, r, s) = setup();
        let m = test_memory();
        let mut w = Worker::new(r);
        w.spin = Duration::from_secs(30);
        let stop = w.stop_handle();
        std::thread::scope(|scope| {
            let h = scope.spawn(|| w.run(&m, &s, None));
            let t0 = Instant::now();
            while r.sq_sleeping().load(Ordering::SeqCst) == 0 && t0.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let asleep = r.sq_sleeping().load(Ordering::SeqCst) != 0;
            submit(&r, libc::SYS_getppid, [0; 6]);
            r.sq_doorbell().fetch_add(1, Ordering::SeqCst);
            futex(r.sq_doorbell().as_ptr(), libc::FUTEX_WAKE, i32::MAX as u32, None);
            let t1 = Instant::now();
            while !r.completion_ready(0) && t1.elapsed() < Duration::from_secs(5) {
                std::thread::yield_now();
            }
            let served = r.completion_ready(0);
            stop.stop();
            assert_eq!(h.join().ok(), Some(WorkerEnd::Stopped));
            assert!(asleep, "the worker polled an empty ring instead of sleeping");
            assert!(served, "the first call was not served");
        });
    }

    /// Whether the worker of `r` is asleep on its doorbell within `d`.
    fn asleep_within(r: &RingPtr, d: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < d {
            if r.sq_sleeping().load(Ordering::SeqCst) != 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    /// After a thread's exit or start (`SUB_THREAD`) the worker sleeps at
    /// once instead of polling for its spin (docs/threads.md, "Waiting"):
    /// with a 30 s spin it must be asleep on its doorbell within 2 s of
    /// serving either, while after an ordinary call it still polls.
    #[test]
    fn a_worker_sleeps_at_once_after_a_thread_exit_or_start() {
        for (nr, flags, sleeps) in [
            (libc::SYS_exit, SUB_THREAD, true),
            (libc::SYS_clone, SUB_THREAD, true),
            (libc::SYS_getppid, 0, false),
        ] {
            let (_a, r, s) = setup();
            let m = test_memory();
            let mut w = Worker::new(r);
            w.spin = Duration::from_secs(30);
            w.earned_spin = w.spin;
            let stop = w.stop_handle();
            r.publish_submission(0, flags, nr as u64, &[0; 6]);
            r.sq_tail().store(1, Ordering::SeqCst);
            std::thread::scope(|scope| {
                let h = scope.spawn(|| w.run(&m, &s, None));
                while !r.completion_ready(0) {
                    std::thread::yield_now();
                }
                let wait = if sleeps { Duration::from_secs(2) } else { Duration::from_millis(300) };
                let asleep = asleep_within(&r, wait);
                // Stopped either way (a spinning worker sees the flag).
                stop.stop();
                assert_eq!(h.join().ok(), Some(WorkerEnd::Stopped));
                assert_eq!(asleep, sleeps, "nr {nr} flags {flags:#x}: asleep");
            });
        }
    }

    /// The spin grows with the calls ([`FIRST_SPIN`]): with a 30 s spin, a
    /// worker that has served one call sleeps on its doorbell within 2 s
    /// (it polled for the whole 30 s before), and one that has served 21
    /// (16 µs · 2^21 > 30 s) still polls 300 ms after the last.
    #[test]
    fn the_spin_grows_with_the_calls() {
        for (calls, sleeps) in [(1u32, true), (21, false)] {
            let (_a, r, s) = setup();
            let m = test_memory();
            let mut w = Worker::new(r);
            w.spin = Duration::from_secs(30);
            let stop = w.stop_handle();
            std::thread::scope(|scope| {
                let h = scope.spawn(|| w.run(&m, &s, None));
                for i in 0..calls {
                    submit(&r, libc::SYS_getppid, [0; 6]);
                    r.sq_doorbell().fetch_add(1, Ordering::SeqCst);
                    futex(r.sq_doorbell().as_ptr(), libc::FUTEX_WAKE, i32::MAX as u32, None);
                    while !r.completion_ready(i) {
                        std::thread::yield_now();
                    }
                }
                let wait = if sleeps { Duration::from_secs(2) } else { Duration::from_millis(300) };
                let asleep = asleep_within(&r, wait);
                stop.stop();
                assert_eq!(h.join().ok(), Some(WorkerEnd::Stopped));
                assert_eq!(asleep, sleeps, "after {calls} calls: asleep");
            });
        }
    }

    #[test]
    fn serves_a_batch_in_order() {
        let (_a, r, s) = setup();
        let m = test_memory();
        let mut w = Worker::new(r);
        submit(&r, libc::SYS_getcwd, [0x1000, 100, 0, 0, 0, 0]);
        submit(&r, libc::SYS_uname, [0x1100, 0, 0, 0, 0, 0]);
        submit(&r, 9999, [0; 6]);
        assert_eq!(w.serve_available(&m, &s, None), Ok(3));
        let c: Vec<_> = (0..3).map(|i| r.read_completion(i)).collect();
        assert_eq!((c[0].tag, c[0].result), (1, 2));
        assert_eq!((c[1].tag, c[1].result), (2, 0));
        assert_eq!((c[2].tag, c[2].result), (3, -(libc::ENOSYS as i64)));
        assert!((0..3).all(|i| r.completion_ready(i)) && !r.completion_ready(3));
        assert_eq!(r.cq_tail().load(Ordering::SeqCst), 3);
        assert_eq!(r.sq_head().load(Ordering::SeqCst), 3);
        assert_eq!(w.stats.forwarded, 3);
        assert_eq!(w.serve_available(&m, &s, None), Ok(0), "nothing new published");
    }

    #[test]
    fn serves_many_laps_and_ignores_stale_slots() {
        let (_a, r, s) = setup();
        let m = test_memory();
        let mut w = Worker::new(r);
        for lap in 0..5u32 {
            for _ in 0..RING_ENTRIES {
                submit(&r, libc::SYS_getppid, [0; 6]);
            }
            assert_eq!(w.serve_available(&m, &s, None), Ok(RING_ENTRIES), "lap {lap}");
            // The libos consumes them.
            let t = r.cq_tail().load(Ordering::SeqCst);
            r.cq_head().store(t, Ordering::SeqCst);
        }
        // A slot holding last lap's sequence number is not published.
        let head = r.sq_head().load(Ordering::SeqCst);
        r.write_submission_raw(
            head,
            &Submission { tag: head + 1 - RING_ENTRIES, flags: 0, nr: 39, args: [0; 6] },
        );
        assert_eq!(w.serve_available(&m, &s, None), Ok(0));
    }

    #[test]
    fn unconsumed_completions_are_a_violation() {
        let (_a, r, s) = setup();
        let m = test_memory();
        let mut w = Worker::new(r);
        for _ in 0..RING_ENTRIES {
            submit(&r, libc::SYS_getppid, [0; 6]);
        }
        assert_eq!(w.serve_available(&m, &s, None), Ok(RING_ENTRIES));
        submit(&r, libc::SYS_getppid, [0; 6]);
        let e = w.serve_available(&m, &s, None).unwrap_err();
        assert_eq!(e, Interrupt::Violation(RingViolation::CompletionQueueFull));
        assert!(e.to_string().contains("completion queue full"), "{e}");
    }

    #[test]
    fn a_tail_behind_the_head_is_normal() {
        // The worker served slot 0 before the libos stored its tail.
        let (_a, r, s) = setup();
        let m = test_memory();
        let mut w = Worker::new(r);
        r.publish_submission(0, 0, libc::SYS_getppid as u64, &[0; 6]);
        assert_eq!(w.serve_available(&m, &s, None), Ok(1));
        assert_eq!(w.check_idle_tail(), Ok(()));
        r.sq_tail().store(1, Ordering::SeqCst);
        assert_eq!(w.check_idle_tail(), Ok(()));
    }

    #[test]
    fn a_tail_ahead_of_unpublished_slots_is_a_violation() {
        let (_a, r, s) = setup();
        let m = test_memory();
        let mut w = Worker::new(r);
        r.sq_tail().store(1, Ordering::SeqCst);
        match w.run(&m, &s, None) {
            WorkerEnd::Violation(e) => assert!(e.to_string().contains("never published"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.state().load(Ordering::SeqCst), STATE_DEAD);
    }

    #[test]
    fn denials_name_the_site_behind_the_hint() {
        use crate::trace::Tracer;
        use cabin_abi::note::{SiteKind, SiteRecord, Tactic, TrapReason};
        use cabin_policy::{Limits, Policy};

        let (_a, r, s) = setup();
        let m = test_memory();
        let mut w = Worker::new(r);
        let p = Policy::parse(
            "p.toml",
            "version = 1\n[default]\naction = \"allow\"\n[syscalls]\ndeny = [\"uname\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = Shared::new(
            s.into_inner().service,
            Some(Gate::new(Some(p.compile()), &Limits::default(), Tracer::disabled()).quiet()),
        );
        let site = |addr, trampoline| SiteRecord {
            addr,
            kind: SiteKind::Syscall,
            tactic: Tactic::Rewritten,
            reason: TrapReason::None,
            trampoline,
        };
        w.set_sites(SiteMap::new([site(0x40_1000, 0x50_0000), site(0x40_2000, 0x50_0040)], 0));
        // Rewritten site: the hint is the return address inside its trampoline.
        r.write_site_hint(0, 0x50_004d);
        submit(&r, libc::SYS_uname, [0x1100, 0, 0, 0, 0, 0]);
        // Trapped call: the hint is already the site.
        r.write_site_hint(1, 0x40_3000);
        submit(&r, libc::SYS_uname, [0x1100, 0, 0, 0, 0, 0]);
        assert_eq!(w.serve_available(&m, &s, None), Ok(2));
        assert_eq!(r.read_completion(0).result, -(libc::EPERM as i64));
        let g = s.lock().gate.as_ref().map(|g| g.messages.clone()).unwrap_or_default();
        // Reported once per system call: the first one, at its site.
        assert_eq!(g.len(), 1, "{g:?}");
        assert!(g[0].contains("uname (system call 63) at 0x402000:"), "{g:?}");
    }

    #[test]
    fn garbage_indices_are_a_violation() {
        let (_a, r, s) = setup();
        let m = test_memory();
        let mut w = Worker::new(r);
        r.sq_tail().store(0xdead_beef, Ordering::SeqCst);
        // run() finds it before sleeping, marks the ring dead and returns
        // instead of panicking.
        match w.run(&m, &s, None) {
            WorkerEnd::Violation(e) => {
                assert!(
                    matches!(e, RingViolation::ImpossibleTail { .. }) && e.to_string().contains("impossible"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.state().load(Ordering::SeqCst), STATE_DEAD);
    }

    #[test]
    fn wild_pointers_and_flags_are_violations() {
        let m = test_memory();
        for (flags, nr, args) in [
            (0, libc::SYS_write, [1, 0xffff_ffff_ffff_0000, 0x20000, 0, 0, 0]),
            (0, libc::SYS_read, [0, 0x1000, u64::MAX, 0, 0, 0]),
            (0, libc::SYS_openat, [libc::AT_FDCWD as u64, 0x20000, 0, 0, 0, 0]),
            (0, libc::SYS_readv, [0, 0x1000, 3, 0, 0, 0]),
            (0x80, libc::SYS_getpid, [0; 6]),
        ] {
            let (_a, r, s) = setup();
            // iovecs at 0x1000 pointing far away
            for i in 0..3u64 {
                m.write_u64(0x1000 + 16 * i, 0xdead_0000).unwrap();
                m.write_u64(0x1008 + 16 * i, 16).unwrap();
            }
            let mut w = Worker::new(r);
            let t = r.sq_tail().load(Ordering::SeqCst);
            r.publish_submission(t, flags, nr as u64, &args);
            r.sq_tail().store(t + 1, Ordering::SeqCst);
            assert!(w.serve_available(&m, &s, None).is_err(), "nr {nr} flags {flags:#x}");
        }
    }

    #[test]
    fn step_serves_and_ends_on_a_violation() {
        let (_a, r, s) = setup();
        let m = test_memory();
        let mut w = Worker::new(r);
        submit(&r, libc::SYS_getppid, [0; 6]);
        assert_eq!(w.step(&m, &s), None);
        assert_eq!(r.cq_tail().load(Ordering::SeqCst), 1);
        r.sq_tail().store(7, Ordering::SeqCst);
        assert!(matches!(w.step(&m, &s), Some(WorkerEnd::Violation(RingViolation::UnpublishedSlot { .. }))));
        assert_eq!(r.state().load(Ordering::SeqCst), STATE_DEAD);
    }

    #[test]
    fn random_rings_never_panic() {
        // Fill the whole ring with pseudo-random bytes many times; the worker
        // must either serve or report a violation, never panic.
        let m = test_memory();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            let (mut a, r, s) = setup();
            for b in a.0.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let mut w = Worker::new(r);
            let _ = w.serve_available(&m, &s, None);
        }
    }
}
