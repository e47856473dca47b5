//! What a backend is to the monitor: a [`Domain`], the confined program's
//! memory and CPU(s), built from an image and a [`DomainSpec`] that the
//! [`crate::session::Session`] hands it, started, run until the program ends,
//! and stoppable from another thread.
//!
//! The session does everything a run needs that does not depend on how the
//! domain is made (image check, policy gate, ring worker, service, limits,
//! placement, end-of-run records, statistics); a backend implements only
//! this trait. The order of calls is fixed (monitor/DESIGN.md, "Session and
//! Domain"):
//!
//! 1. [`Domain::available`] and [`Domain::execute_only`], before anything is
//!    built;
//! 2. [`Domain::build`]: memory, boot page, ring, initial stack; nothing runs;
//! 3. [`Domain::memory`], [`Domain::ring`], [`Domain::entry`]: the session
//!    writes its words into the boot page and makes the worker;
//! 4. [`Domain::stopper`], on the thread that will call `run`;
//! 5. [`Domain::start`]: the program exists ([`Domain::program_pid`],
//!    [`Domain::cpu_clock`]) and may run; the worker serves the ring from
//!    another thread from now on;
//! 6. [`Domain::run`], on the calling thread, until the program ends or the
//!    stopper stops it; then the worker is stopped;
//! 7. [`Domain::fixed_bytes`], [`Domain::trapped_calls`], [`Domain::stats`]
//!    for the records, and drop.
//!
//! Threads (issue 13, docs/threads.md): the ring region holds
//! [`cabin_abi::thread::MAX_THREADS`] rings ([`Domain::thread_ring`]). When
//! a worker accepts a thread submission, the session resets the slot's ring,
//! starts a worker for it and calls [`Domain::spawn_thread`] (from that
//! worker's thread, while [`Domain::run`] runs on another).

use std::sync::Arc;

use cabin_abi::ring::{RingPtr, RING_BYTES};
use cabin_abi::syscalls::CallSet;
use cabin_abi::thread::{ThreadStart, MAX_THREADS};
use cabin_image::elf::ElfFile;
use cabin_policy::limits::MemoryBound;

use crate::config::RunError;
use crate::memory::GuestMemory;
use crate::placement::CpuSet;
use crate::ring::WorkerStats;

/// Everything the session decides about a domain before it is built.
#[derive(Debug, Clone)]
pub struct DomainSpec {
    /// `argv`, `argv[0]` first (never empty).
    pub args: Vec<String>,
    /// The environment, `KEY=VALUE` each.
    pub env: Vec<String>,
    /// The bound on the program's memory (`[limits] memory`, `--mem`, or the
    /// default): the domain's memory is sized to it.
    pub memory: MemoryBound,
    /// `--mem` as given (0: not given), for backends that round it their own
    /// way (KVM: 2 MiB pages).
    pub mem_arg: u64,
    /// `[limits] memory`, if the policy sets one.
    pub memory_limit: Option<u64>,
    /// `BOOT_FLAG_FORCE_TRAP`: every call takes the slow path (testing,
    /// `--forwarding sync`).
    pub force_trap: bool,
    /// `BOOT_FLAG_READ_AHEAD`: the libos may read ahead.
    pub read_ahead: bool,
    /// The locally served calls the policy does not plainly allow (also in
    /// the boot page; the process backend's seccomp filter traps such clock
    /// reads).
    pub check_local: CallSet,
    /// The CPUs the program runs on (`None`: left to the scheduler).
    pub program_cpus: Option<CpuSet>,
    /// Every CPU the run may use (the monitor's own set before placement):
    /// where a program with threads runs once it has a second one.
    pub all_cpus: Option<CpuSet>,
    /// The user and group ids the program sees.
    pub ids: (u32, u32),
    /// The most threads the program may have at once (`[limits] threads`,
    /// default and at most [`MAX_THREADS`]); the boot page's `thread_limit`.
    pub threads: u32,
    /// The tree's shared window (docs/processes.md, "Shared memory"), made
    /// by the session when the backend has one ([`Domain::SHARED_WINDOW`]):
    /// every domain of the tree maps it at the same address.
    pub shared: Option<Arc<crate::shm::SharedWindow>>,
}

/// Who starts a thread the monitor accepted ([`Domain::spawn_thread`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnedBy {
    /// The libos starts it itself with a native `clone` (process backend):
    /// the monitor answers the submission with 0.
    Libos,
    /// The domain started it; the monitor answers with this thread id.
    Domain {
        /// The new thread's id as the program sees it (`gettid`).
        tid: u32,
    },
    /// The domain cannot start it; the monitor answers `-errno` (and frees
    /// the slot). The KVM backend answers `EAGAIN` until it runs threads.
    Refused {
        /// The errno the program sees.
        errno: i32,
    },
}

/// What a backend can do about execute-only code for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecuteOnly {
    /// Whether the program's code will be execute-only.
    pub enforced: bool,
    /// The one-line notice (`cabin: …`) `cabinc run` prints unless quiet.
    pub notice: &'static str,
}

/// Why the session stops a program from another thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopCause {
    /// The program broke the ring protocol; the message says how.
    Violation(String),
    /// The policy killed it or a limit stopped it; the message was printed.
    Policy(String),
    /// A `[limits]` time limit ran out.
    TimeLimit,
    /// The ring worker failed (a Cabin bug).
    WorkerFailed,
}

impl StopCause {
    /// The cause in words (what a KVM domain reports if the stop interrupts a
    /// call waiting for the ring).
    pub fn message(&self) -> String {
        match self {
            StopCause::Violation(m) | StopCause::Policy(m) => m.clone(),
            StopCause::TimeLimit => "a time limit was reached".into(),
            StopCause::WorkerFailed => "the ring worker failed".into(),
        }
    }
}

/// Stops a running program from any thread (time limits, the worker ending
/// on a violation or a policy stop). Stopping twice, or after the program
/// ended, does nothing harmful.
pub trait Stopper: Send + Sync + std::fmt::Debug {
    /// Ends the program as soon as possible; [`Domain::run`] then returns.
    fn stop(&self, cause: StopCause);

    /// Makes the program look at a signal the monitor just posted in its
    /// boot page (docs/signals.md): the process backend sends the child
    /// that signal (the libos's handler takes it), the KVM backend kicks
    /// the vCPU (the monitor then sends it to the libos's signal entry).
    /// Called once per posted signal; harmless after the program ended.
    fn wake_for_signal(&self, sig: i32) {
        let _ = sig;
    }

    /// Called again while a posted signal has not been taken, or was taken
    /// by a thread that blocks it while another does not (the attention
    /// word): wakes what a lost wake-up may have missed and every thread
    /// (KVM: kicks every vCPU again; the process backend sends its wake
    /// signal to every thread of the child).
    fn rewake(&self) {}

    /// Job control (docs/processes.md, "Job control"): `true` stops every
    /// thread of the program until `pause(false)` continues it (the process
    /// backend: `SIGSTOP`/`SIGCONT` to its host process; KVM: every vCPU
    /// held outside `KVM_RUN`). A stopped program can still be ended with
    /// [`Stopper::stop`]. A backend without it keeps running (the tree
    /// still reports the stop).
    fn pause(&self, on: bool) {
        let _ = on;
    }
}

/// Whose CPU clock is the program's (for `[limits] cpu-time`; the ring
/// worker's clock is always added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuClock {
    /// A host process: all its threads.
    Process(i32),
    /// The thread that calls [`Domain::run`] (a vCPU thread: guest time
    /// included).
    RunThread,
}

/// How a program ended, as the domain saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEnd {
    /// `exit`/`exit_group` (or the libos's own exit) with this status.
    Exited(i32),
    /// A fatal signal or fault; the exit status is 128 + `signo`.
    Fault {
        /// Signal number.
        signo: i32,
        /// Fault address, when known.
        addr: Option<u64>,
        /// `rip` at the fault, when known.
        rip: Option<u64>,
        /// `si_code` of a SIGSEGV (`SEGV_MAPERR` 1: nothing mapped there;
        /// `SEGV_ACCERR` 2: mapped, access not allowed: a guard page, a
        /// `PROT_NONE` or read-only page), when known: what a handler would
        /// see in its `siginfo`.
        code: Option<i32>,
        /// The one line `cabinc run` prints (without `cabin: `), if any.
        report: Option<String>,
    },
    /// The program broke the protocol in a way the domain itself noticed
    /// (a misused doorbell, a trapped call the ring could not carry); the
    /// message says how.
    Violation(String),
}

/// A confined program's domain, as a backend builds and runs it. See the
/// module documentation for the order of calls.
pub trait Domain: Sized {
    /// The backend's name (`--stats`, the trace's `start` record).
    const BACKEND: &'static str;

    /// Where the tree's shared window lies in every domain of this backend
    /// (`None`: the backend has none yet; SysV shared memory is then
    /// `ENOSYS` and shared anonymous memory is private to a process).
    const SHARED_WINDOW: Option<u64> = None;

    /// Whether the backend can run on this machine (`Err` says why).
    fn available() -> Result<(), RunError> {
        Ok(())
    }

    /// Whether this backend will run `image`'s code execute-only.
    fn execute_only(image: &ElfFile<'_>) -> ExecuteOnly;

    /// Builds the domain for `image` (an intact Cabin image: the session has
    /// checked it). Nothing runs yet.
    fn build(image: &ElfFile<'_>, spec: &DomainSpec) -> Result<Self, RunError>;

    /// The program's memory, typed regions (boot page and ring included).
    fn memory(&self) -> &GuestMemory;

    /// The ring of the main thread (slot 0), through the monitor's mapping.
    fn ring(&self) -> RingPtr;

    /// How many rings the ring region holds (the boot page's `ring_count`);
    /// 1 for a domain that cannot run threads.
    fn ring_count(&self) -> usize {
        1
    }

    /// The ring of thread slot `slot` (ring `slot` of the region), if the
    /// region has it.
    fn thread_ring(&self, slot: usize) -> Option<RingPtr> {
        if slot >= self.ring_count().min(MAX_THREADS) {
            return None;
        }
        // SAFETY: the region is `ring_count` contiguous rings of RING_BYTES
        // from `ring()` in the monitor's mapping (the backends map it so),
        // alive as long as the domain; RING_BYTES is a multiple of 64.
        Some(unsafe { RingPtr::new(self.ring().base().add(slot * RING_BYTES)) })
    }

    /// Starts the program thread the monitor accepted: `start` is validated
    /// (op [`cabin_abi::thread::THREAD_OP_START`], slot in range and free, a
    /// thread flag set) and its ring was reset; its worker runs. Called from
    /// a ring worker's thread while [`Domain::run`] runs. Errors are the
    /// backend's own failures (they stop the program); a thread the domain
    /// cannot start is [`SpawnedBy::Refused`].
    fn spawn_thread(&self, start: &ThreadStart) -> Result<SpawnedBy, RunError>;

    /// A thread's exit submission was served (slot `slot` is free again in
    /// the monitor's table). The process backend has nothing to do (the
    /// native thread ends itself); KVM stops the vCPU.
    fn thread_exited(&self, _slot: usize) {}

    /// A child process's domain (issue 14, docs/processes.md): a copy of
    /// this domain's memory with every ring reset and the boot page's
    /// `pid`/`ppid` set, which [`Domain::start`] will start at `entry` with
    /// `rsp = sp` (a libos routine and the frame it left; checked by the
    /// monitor to be this domain's code and writable memory) instead of the
    /// program's entry. Called on a worker's thread while the forking thread
    /// waits and [`Domain::run`] runs. `Ok(None)`: this backend cannot make
    /// child processes (the fork is `ENOSYS`).
    fn fork_child(&self, _entry: u64, _sp: u64, _pid: u32, _ppid: u32) -> Result<Option<Self>, RunError>
    where
        Self: Sized,
    {
        Ok(None)
    }

    /// How the tree's memory bound reads this domain's resident memory
    /// (docs/processes.md, "One memory bound for the tree"): called once the
    /// domain is built, on any thread; the meter may outlive the domain.
    /// `None`: the domain is not counted (a backend without memory of its
    /// own).
    fn meter(&self) -> Option<Arc<dyn crate::treemem::Meter>> {
        None
    }

    /// Whether [`Domain::exec_image`] builds domains (else `execve` is
    /// `ENOSYS`, checked before the caller's process is touched).
    const CAN_EXEC: bool = false;

    /// A new domain for an `execve` of `image` by process `pid` (parent
    /// `ppid`) of a tree (docs/processes.md): built from `spec` as
    /// [`Domain::build`] does, its boot page naming the same virtual pid and
    /// parent; not started. `None`: this backend cannot exec yet (the
    /// program gets `ENOSYS`).
    fn exec_image(
        _image: &ElfFile<'_>,
        _spec: &DomainSpec,
        _pid: u32,
        _ppid: u32,
    ) -> Result<Option<Self>, RunError>
    where
        Self: Sized,
    {
        Ok(None)
    }

    /// The program's entry point in the domain (the libos's `cabin_start`).
    fn entry(&self) -> u64;

    /// A handle that stops the program. Called once, before
    /// [`Domain::start`], on the thread that will call [`Domain::run`].
    fn stopper(&self) -> Arc<dyn Stopper>;

    /// Starts the program (after this, [`Domain::program_pid`] and
    /// [`Domain::cpu_clock`] are known); set-up failures are errors.
    fn start(&mut self) -> Result<(), RunError>;

    /// The process id the syscall service answers for the program.
    fn program_pid(&self) -> u32;

    /// Whose CPU time is the program's.
    fn cpu_clock(&self) -> CpuClock;

    /// The clocks of the threads whose CPU time is the program's
    /// ([`CpuClock::RunThread`]): a domain that runs the program on more
    /// threads of its own than the one calling [`Domain::run`] (KVM: one
    /// vCPU thread per program thread) has each of them join these, so
    /// `[limits] cpu-time` counts them all. Called once, after
    /// [`Domain::start`] and before [`Domain::run`].
    fn join_clocks(&self, _clocks: &crate::watch::ThreadClocks) {}

    /// The CPU time of this image's host process ([`CpuClock::Process`]),
    /// live while it runs and final once [`Domain::run`] reaped it, for the
    /// tree's `[limits] cpu-time` ([`crate::watch::TreeCpu`]). `None`: the
    /// program runs on threads that join the clocks ([`Domain::join_clocks`]
    /// and the thread calling [`Domain::run`]).
    fn cpu_meter(&self) -> Option<Arc<dyn crate::watch::CpuMeter>> {
        None
    }

    /// Runs (or waits for) the program until it ends. Errors are the
    /// backend's own failures (a Cabin bug or a host failure), never the
    /// program's. Takes `&self`: the ring worker reads [`Domain::memory`]
    /// from another thread meanwhile.
    fn run(&self) -> Result<DomainEnd, RunError>;

    /// Bytes of the domain the program cannot grow (image, stack, boot page,
    /// ring, system area), for the memory-limit record.
    fn fixed_bytes(&self) -> u64;

    /// Calls that arrived through the slow path, when the domain counts them
    /// itself (`None`: the larger of the worker's and the libos's counts).
    fn trapped_calls(&self) -> Option<u64> {
        None
    }

    /// The backend's own `--stats` entries.
    fn stats(&self, worker: &WorkerStats) -> Vec<(&'static str, serde_json::Value)>;
}

/// The name of a SIGSEGV `si_code` for reports (`SEGV_MAPERR`, `SEGV_ACCERR`).
pub fn segv_code_name(code: i32) -> Option<&'static str> {
    match code {
        1 => Some("SEGV_MAPERR"),
        2 => Some("SEGV_ACCERR"),
        3 => Some("SEGV_BNDERR"),
        4 => Some("SEGV_PKUERR"),
        _ => None,
    }
}
