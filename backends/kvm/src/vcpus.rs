//! One vCPU per program thread (issue 13): [`Vcpus`] owns the VM and runs
//! vCPU k on a host thread of its own, each with its own TSS and ring-0
//! stacks (`layout::MAX_VCPUS` of them, built before boot) and its own
//! service (the gate of ring k).
//!
//! How a run ends, whichever vCPU decides it:
//!
//! - `exit` of one thread ([`LoopEnd::ThreadExit`]) ends only its vCPU; the
//!   last thread's `exit` ends the program with that thread's status (as
//!   Linux: measured, a main thread's `exit(5)` then another's `exit(3)` is
//!   status 3);
//! - `exit_group`, a fault, a protocol violation or a backend error in any
//!   vCPU ends the program: the first such end is the program's, every other
//!   vCPU is kicked out of `KVM_RUN` ([`Shared::end_program`]) and leaves
//!   its loop with [`LoopEnd::Stopped`];
//! - a stop from the session ([`Shared::worker_ended`]) kicks every vCPU,
//!   whose gate then reports it.
//!
//! A vCPU whose thread ended stays in its slot (KVM cannot destroy one vCPU
//! of a VM), and so does its host thread: it waits (sleeps, no CPU) up to
//! [`PARK_IDLE`] for the slot's next thread, which it starts on the same
//! vCPU with [`vcpu::restart`] (one ioctl: the registers travel in the
//! vCPU's `kvm_run` page) instead of a new host thread and six reset
//! ioctls (docs/kvm.md, "Threads"). After that time, or when the program
//! ends, it leaves the vCPU in the slot, and the next thread gets a new host
//! thread and the full reset ([`vcpu::setup`]). Nothing here runs guest
//! ring 0: a vCPU starts directly in ring 3.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cabin_monitor::placement::CpuSet;
use kvm_bindings::{kvm_sregs, CpuId};
use kvm_ioctls::{VcpuFd, VmFd};

use thiserror::Error;

use super::domain::Guest;
use super::layout::MAX_VCPUS;
use super::ring::Shared;
use super::vcpu::{self, CpuFeatures, VcpuError, VcpuStart};
use super::{run_loop, GuestError, KvmError, KvmStats, LoopEnd, Prepared, SyscallService};

/// How long the host thread of an ended thread keeps its vCPU for the
/// slot's next thread. A program that starts threads in a loop starts the
/// next within microseconds; a parked host thread costs no CPU, and at most
/// one waits per slot (so no more than the program's most threads at once).
pub const PARK_IDLE: Duration = Duration::from_secs(1);

/// A thread start handed to the host thread parked on its slot.
struct Handoff {
    start: VcpuStart,
    service: Box<dyn SyscallService + Send>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff").field("start", &self.start).finish_non_exhaustive()
    }
}

/// Makes each vCPU's service (in a run: the gate of the vCPU's ring).
pub trait ServiceFactory: Send + Sync + std::fmt::Debug {
    /// The service of vCPU `slot`; `Err` refuses the slot.
    fn service(&self, slot: usize) -> Result<Box<dyn SyscallService + Send>, SpawnError>;
}

/// Why a vCPU was not started.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SpawnError {
    /// The slot is out of range, or has no ring.
    #[error("no vCPU slot {0} (a domain runs at most {MAX_VCPUS} threads)")]
    NoSuchSlot(usize),
    /// The slot's vCPU is running a thread.
    #[error("vCPU slot {0} is in use")]
    InUse(usize),
    /// The program is ending (or has ended): no new thread starts.
    #[error("the program is ending")]
    Ending,
    /// The start state was refused or KVM failed to set up the vCPU.
    #[error("starting vCPU {slot}: {why}")]
    Setup {
        /// The slot.
        slot: usize,
        /// What failed.
        why: String,
    },
}

#[derive(Debug, Default)]
struct Slot {
    /// A thread runs (or is being started) on this slot.
    busy: bool,
    /// The vCPU of a thread that ended, kept for the next one.
    parked: Option<VcpuFd>,
    /// The host thread of the slot's last thread holds the vCPU and waits
    /// for the next thread ([`Vcpus::park`]); `parked` is `None` then.
    warm: bool,
    /// The next thread's start, for the waiting host thread.
    handoff: Option<Handoff>,
    /// `CLONE_CHILD_CLEARTID`: the word cleared and woken when the thread
    /// has ended (its vCPU out of its loop).
    clear_tid: Option<u64>,
}

#[derive(Debug)]
struct State {
    slots: Vec<Slot>,
    /// vCPUs started and not yet out of their loop.
    live: usize,
    /// How the program ended (the first end wins).
    end: Option<Result<LoopEnd, KvmError>>,
    /// Host threads of vCPUs other than 0, joined when finished.
    threads: Vec<JoinHandle<()>>,
    /// Counters of every vCPU whose loop has ended.
    stats: KvmStats,
    /// vCPUs started over the run.
    started: u64,
    /// The CPUs of the thread that runs vCPU 0 (the program's placement),
    /// which every other vCPU thread takes.
    affinity: Option<CpuSet>,
    /// Every CPU of the run ([`Vcpus::set_all_cpus`]): at the program's
    /// first thread, vCPU 0's thread and every later vCPU thread move there
    /// (taken then: `None` once done).
    widen: Option<CpuSet>,
    /// The host thread id of the thread that runs vCPU 0.
    main_tid: Option<libc::pid_t>,
    /// Every vCPU has left its loop ([`Vcpus::wait_all`]): parked host
    /// threads end.
    closing: bool,
    /// How long an ended thread's host thread waits for the slot's next
    /// thread ([`PARK_IDLE`]; tests set 0 to take the full reset).
    park_idle: Duration,
}

/// The VM and its vCPUs.
#[derive(Debug)]
pub struct Vcpus {
    vm: VmFd,
    cpuid: CpuId,
    features: CpuFeatures,
    guest: Arc<Guest>,
    shared: Arc<Shared>,
    factory: Box<dyn ServiceFactory>,
    timeout: Option<Duration>,
    start: Instant,
    state: Mutex<State>,
    changed: Condvar,
    /// One per slot: wakes the host thread parked on it.
    wake: Vec<Condvar>,
    /// KVM loads a restarted vCPU's registers from its `kvm_run` page
    /// (KVM_CAP_SYNC_REGS with general and system registers).
    sync_regs: bool,
    /// The session's CPU clocks, which every vCPU thread but the run
    /// thread (which the session joins itself) joins while it runs.
    clocks: Mutex<Option<cabin_monitor::watch::ThreadClocks>>,
}

impl Vcpus {
    /// Creates the VM for the prepared guest and vCPU 0 at the image's
    /// entry (not yet running). `timeout` ends a run that takes longer
    /// (tests).
    pub(crate) fn new(
        p: &Prepared,
        shared: Arc<Shared>,
        factory: Box<dyn ServiceFactory>,
        timeout: Option<Duration>,
    ) -> Result<Arc<Vcpus>, KvmError> {
        let vm = vcpu::create_vm(&p.kvm, &p.guest)?;
        let state = State {
            slots: (0..MAX_VCPUS).map(|_| Slot::default()).collect(),
            live: 0,
            end: None,
            threads: Vec::new(),
            stats: KvmStats::default(),
            started: 0,
            affinity: None,
            widen: None,
            main_tid: None,
            closing: false,
            park_idle: PARK_IDLE,
        };
        let sync_regs = vcpu::sync_regs_supported(&vm);
        let v = Vcpus {
            vm,
            cpuid: p.cpuid.clone(),
            features: p.features,
            guest: p.guest.clone(),
            shared,
            factory,
            timeout,
            start: p.start,
            state: Mutex::new(state),
            changed: Condvar::new(),
            wake: (0..MAX_VCPUS).map(|_| Condvar::new()).collect(),
            sync_regs,
            clocks: Mutex::new(None),
        };
        let main = VcpuStart { rip: v.guest.entry, rsp: v.guest.rsp, ..VcpuStart::default() };
        let (fd, _) = v.prepare(0, None, &main).map_err(|(e, _)| e)?;
        v.lock().slots[0].parked = Some(fd);
        Ok(Arc::new(v))
    }

    /// From now on, every vCPU thread started by [`Vcpus::spawn`] counts its
    /// CPU time on `clocks` (`[limits] cpu-time`).
    pub fn join_clocks(&self, clocks: &cabin_monitor::watch::ThreadClocks) {
        *self.clocks.lock().unwrap_or_else(|e| e.into_inner()) = Some(clocks.clone());
    }

    /// Where the program's vCPU threads run once it has a second thread:
    /// `all`, every CPU of the run. A single-threaded program stays on the
    /// CPUs it was placed on (`--cpus split`: one CPU, the ring worker on
    /// the other); a program with threads must not have them all share one
    /// CPU: a futex hand-off between two threads of one CPU can never be
    /// seen by the waiter's ring-3 spin (the waker is not running while the
    /// waiter spins), so every hand-off paid a VM exit, a host sleep and a
    /// wake-up, and every thread start waited for the parent to leave the
    /// CPU (docs/threads.md, "CPU placement of threads"). The process
    /// backend widens its process the same way.
    pub fn set_all_cpus(&self, all: Option<CpuSet>) {
        self.lock().widen = all;
    }

    /// vCPU 0 (the main thread's, before it runs), for set-up reads.
    pub fn with_main<R>(&self, f: impl FnOnce(&VcpuFd) -> R) -> Option<R> {
        self.lock().slots[0].parked.as_ref().map(f)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held leaves counters at worst; the
        // state stays usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates vCPU `slot` (or resets its parked one) with `start`; returns
    /// it with the system registers it got. On a failure the vCPU, if it
    /// exists, comes back for the slot.
    fn prepare(
        &self,
        slot: usize,
        parked: Option<VcpuFd>,
        start: &VcpuStart,
    ) -> Result<(VcpuFd, kvm_sregs), (KvmError, Option<VcpuFd>)> {
        let fresh = parked.is_none();
        let mut fd = match parked {
            Some(fd) => fd,
            None => self
                .vm
                .create_vcpu(slot as u64)
                .map_err(|err| (KvmError::Vcpu(VcpuError::Kvm { what: "CREATE_VCPU", err }), None))?,
        };
        match vcpu::setup(&mut fd, &self.cpuid, &self.features, &self.guest, slot, start, fresh) {
            Ok(sregs) => Ok((fd, sregs)),
            Err(e) => Err((e.into(), Some(fd))),
        }
    }

    /// Runs vCPU 0 (the program's main thread) on the calling thread, then
    /// waits until every vCPU has left its loop; returns how the program
    /// ended. Call once.
    pub fn run_main(self: &Arc<Self>) -> Result<LoopEnd, KvmError> {
        let fd = {
            let mut st = self.lock();
            st.affinity = CpuSet::current();
            // SAFETY: gettid has no preconditions.
            st.main_tid = Some(unsafe { libc::gettid() });
            match st.slots[0].parked.take() {
                Some(fd) if !st.slots[0].busy => {
                    st.slots[0].busy = true;
                    st.live += 1;
                    st.started += 1;
                    Some(fd)
                }
                other => {
                    st.slots[0].parked = other;
                    None
                }
            }
        };
        let dog = self.timeout.map(|limit| {
            let shared = self.shared.clone();
            cabin_monitor::watch::Watchdog::start(limit.saturating_sub(self.start.elapsed()), move || {
                shared.kick_all()
            })
        });
        match fd {
            Some(fd) => {
                self.lock().stats.boot_ns = self.start.elapsed().as_nanos() as u64;
                self.run(0, fd);
            }
            None => {
                let e = GuestError::Stopped { what: "vCPU 0 is not ready (run twice?)".into(), state: None };
                let mut st = self.lock();
                self.record(&mut st, Err(e.into()));
            }
        }
        let end = self.wait_all();
        if let Some(d) = dog {
            d.cancel();
        }
        end
    }

    /// Starts a thread of the program on vCPU `slot` with `start`, on a new
    /// host thread; returns once the vCPU is set up (it may already be
    /// running). Refused for a slot out of range or in use, a bad start
    /// state, or a program that is ending.
    pub fn spawn(self: &Arc<Self>, slot: usize, start: VcpuStart) -> Result<(), SpawnError> {
        self.spawn_when_free(slot, start, None, Duration::ZERO)
    }

    /// [`Vcpus::spawn`], waiting up to `wait` for the slot's previous thread
    /// to leave its vCPU (the monitor frees a slot at the thread's exit
    /// submission, just before the vCPU stops); `clear_tid` is the thread's
    /// `CLONE_CHILD_CLEARTID` word.
    pub fn spawn_when_free(
        self: &Arc<Self>,
        slot: usize,
        start: VcpuStart,
        clear_tid: Option<u64>,
        wait: Duration,
    ) -> Result<(), SpawnError> {
        if slot >= MAX_VCPUS {
            return Err(SpawnError::NoSuchSlot(slot));
        }
        start.check().map_err(|e| SpawnError::Setup { slot, why: e.to_string() })?;
        let service = self.factory.service(slot)?;
        let parked = {
            let mut st = self.lock();
            let deadline = Instant::now() + wait;
            loop {
                if st.end.is_some() || self.shared.ending.load(Ordering::SeqCst) {
                    return Err(SpawnError::Ending);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if !st.slots[slot].busy {
                    break;
                }
                if left.is_zero() {
                    return Err(SpawnError::InUse(slot));
                }
                st = self.changed.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
            }
            if let Some(all) = st.widen.take() {
                // The program's first thread: vCPU 0's thread and every
                // vCPU thread from now on run on all of the run's CPUs.
                if let Some(tid) = st.main_tid {
                    all.apply(tid);
                }
                st.affinity = Some(all);
            }
            st.slots[slot].busy = true;
            st.slots[slot].clear_tid = clear_tid;
            st.live += 1;
            st.started += 1;
            if st.slots[slot].warm {
                // The slot's last host thread still holds the vCPU and
                // waits: it starts the thread (the answer does not wait).
                st.slots[slot].warm = false;
                st.slots[slot].handoff = Some(Handoff { start, service });
                st.stats.warm_starts += 1;
                drop(st);
                self.wake[slot].notify_one();
                return Ok(());
            }
            st.slots[slot].parked.take()
        };
        // The vCPU is set up here, on the calling thread (KVM takes a vCPU's
        // ioctls from any thread), so the answer does not wait for the new
        // host thread to be scheduled: on a loaded host that wait was most
        // of a thread's start (docs/performance.md).
        let fd = match self.prepare(slot, parked, &start) {
            Ok(prepared) => prepared,
            Err((e, fd)) => {
                self.unreserve(slot, fd);
                return Err(SpawnError::Setup { slot, why: e.to_string() });
            }
        };
        let (tx, rx) = mpsc::channel::<(VcpuFd, kvm_sregs)>();
        let this = self.clone();
        let spawned = std::thread::Builder::new().name(format!("cabin-vcpu{slot}")).spawn(move || {
            let affinity = this.lock().affinity;
            if let Some(set) = affinity {
                // vCPU threads are started from a ring worker's thread,
                // whose CPU they would otherwise inherit.
                set.apply(0);
            }
            let clocks = this.clocks.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let _clock = clocks.as_ref().map(|c| c.join_as_program_thread(slot));
            cabin_monitor::watch::set_serving_slot(slot);
            if let Ok((fd, sregs)) = rx.recv() {
                this.serve_slot(slot, fd, sregs, service);
            }
            this.reap();
        });
        match spawned {
            Ok(h) => {
                self.lock().threads.push(h);
                // The thread is alive until it has received the vCPU (it
                // only waits for it), so the send cannot fail.
                if let Err(mpsc::SendError((fd, _))) = tx.send(fd) {
                    self.unreserve(slot, Some(fd));
                    return Err(SpawnError::Setup { slot, why: "the vCPU thread died".into() });
                }
                Ok(())
            }
            Err(e) => {
                self.unreserve(slot, Some(fd.0));
                Err(SpawnError::Setup { slot, why: format!("no host thread: {e}") })
            }
        }
    }

    /// Joins the host threads of vCPUs whose loop has ended. Called by a
    /// vCPU thread once its own loop has ended, never on a thread's start:
    /// a thread whose loop has ended may still be tearing down (its signal
    /// stack, glibc's `madvise` of its stack, the exit), and the creator's
    /// `clone` used to wait for that (docs/threads.md, "KVM: one vCPU per
    /// thread"). Each handle is taken out under the lock, so it is joined
    /// once; the caller's own is not finished yet; `wait_all` joins the
    /// rest. Memory stays bounded for a program that starts and joins
    /// threads forever: every thread's end reaps those ended before it.
    fn reap(&self) {
        let done: Vec<_> = {
            let mut st = self.lock();
            let (done, running): (Vec<_>, Vec<_>) =
                std::mem::take(&mut st.threads).into_iter().partition(|h| h.is_finished());
            st.threads = running;
            done
        };
        for h in done {
            let _ = h.join();
        }
    }

    /// Gives back a slot reserved by [`Vcpus::spawn`] whose vCPU never ran.
    fn unreserve(&self, slot: usize, fd: Option<VcpuFd>) {
        let mut st = self.lock();
        st.slots[slot].busy = false;
        if fd.is_some() {
            st.slots[slot].parked = fd;
        }
        st.live -= 1;
        st.started -= 1;
        drop(st);
        self.changed.notify_all();
    }

    fn run(&self, slot: usize, fd: VcpuFd) {
        match self.factory.service(slot) {
            Ok(service) => {
                let (fd, r, stats) = self.run_with_service(slot, fd, service);
                self.finish(slot, Some(fd), r, stats);
            }
            Err(e) => {
                let e = GuestError::Stopped { what: format!("vCPU {slot} has no service: {e}"), state: None };
                self.finish(slot, Some(fd), Err(e.into()), KvmStats::default());
            }
        }
    }

    /// Runs the threads of slot `slot` on the calling (host) thread: the
    /// first on `fd`, set up with `sregs`; after a thread's own end, the
    /// slot's next ones on the same vCPU ([`Vcpus::park`]).
    fn serve_slot(
        &self,
        slot: usize,
        mut fd: VcpuFd,
        sregs: kvm_sregs,
        mut service: Box<dyn SyscallService + Send>,
    ) {
        loop {
            let (back, r, stats) = self.run_with_service(slot, fd, service);
            if !matches!(r, Ok(LoopEnd::ThreadExit(_))) {
                self.finish(slot, Some(back), r, stats);
                return;
            }
            self.finish(slot, None, r, stats);
            let Some((back, next)) = self.park(slot, back) else { return };
            fd = back;
            service = next.service;
            if let Err(e) =
                vcpu::restart(&mut fd, &self.features, &self.guest, slot, &next.start, &sregs, self.sync_regs)
            {
                // The clone was answered: its thread cannot start, so the
                // program ends (this never happened; KVM took the same
                // state for the slot's first thread).
                self.finish(slot, Some(fd), Err(e.into()), KvmStats::default());
                return;
            }
        }
    }

    /// Keeps `fd` on the calling host thread for slot `slot`'s next thread,
    /// up to [`PARK_IDLE`]; returns it with the thread's start, or `None`
    /// with the vCPU left in the slot (for a new host thread and a full
    /// reset) when none came in time or the program is ending.
    fn park(&self, slot: usize, fd: VcpuFd) -> Option<(VcpuFd, Handoff)> {
        let mut st = self.lock();
        let deadline = Instant::now() + st.park_idle;
        loop {
            // A start handed over is always taken (its `live` is counted):
            // a program ending meanwhile stops it at its first look.
            if let Some(h) = st.slots[slot].handoff.take() {
                return Some((fd, h));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if st.end.is_some() || st.closing || self.shared.ending.load(Ordering::SeqCst) || left.is_zero() {
                // Under the lock, so a start sees either the waiting host
                // thread or the vCPU in the slot, never neither.
                st.slots[slot].warm = false;
                st.slots[slot].parked = Some(fd);
                return None;
            }
            st = self.wake[slot].wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Runs vCPU `slot` on the calling thread until its thread or the
    /// program ends; returns the vCPU, how it ended and its counters.
    fn run_with_service(
        &self,
        slot: usize,
        mut fd: VcpuFd,
        mut service: Box<dyn SyscallService + Send>,
    ) -> (VcpuFd, Result<LoopEnd, KvmError>, KvmStats) {
        // Registered before the loop's first look at `ending`: a kick after
        // this reaches the thread, and an end recorded before it is seen.
        self.shared.enter_vcpu(slot);
        let mut stats = KvmStats::default();
        let r = run_loop(
            &mut fd,
            &self.vm,
            &self.guest,
            self.timeout,
            &mut *service,
            &mut stats,
            self.start,
            &self.shared.ending,
        );
        self.shared.leave_vcpu(slot);
        let (redirects, waits) = service.counters();
        stats.gate_redirects += redirects;
        stats.doorbell_waits += waits;
        (fd, r, stats)
    }

    /// Records the end of slot `slot`'s thread; `fd` goes back to the slot,
    /// or `None`: the calling host thread keeps it and waits for the slot's
    /// next thread ([`Vcpus::park`]).
    fn finish(&self, slot: usize, fd: Option<VcpuFd>, r: Result<LoopEnd, KvmError>, stats: KvmStats) {
        let mut st = self.lock();
        st.stats.add(&stats);
        let clear_tid = st.slots[slot].clear_tid.take();
        match fd {
            Some(fd) => st.slots[slot].parked = Some(fd),
            None => st.slots[slot].warm = true,
        }
        match r {
            Ok(LoopEnd::Stopped) => {}
            Ok(LoopEnd::ThreadExit(code)) => {
                // The thread's vCPU runs no more: its joiner may free its
                // stack now (Linux clears the word as the thread dies).
                if let Some(addr) = clear_tid {
                    self.clear_and_wake(addr);
                }
                if st.live == 1 {
                    self.record(&mut st, Ok(LoopEnd::Exited(code)));
                }
            }
            other => self.record(&mut st, other),
        }
        st.slots[slot].busy = false;
        st.live -= 1;
        drop(st);
        self.changed.notify_all();
    }

    /// `CLONE_CHILD_CLEARTID` at a thread's end: writes 0 to the tid word
    /// and wakes one waiter on it (a joiner blocked in the monitor's futex
    /// service waits on the same host address). A word outside the
    /// program's writable memory is ignored, as Linux ignores it.
    fn clear_and_wake(&self, addr: u64) {
        if !addr.is_multiple_of(4) {
            return;
        }
        let Ok(host) = self.guest.view.host_range(addr, 4, true) else { return };
        // SAFETY: `host` is 4 writable, 4-aligned bytes of the guest's
        // mapping (checked above), alive as long as `self.guest`.
        let word = unsafe { std::sync::atomic::AtomicU32::from_ptr(host.cast::<u32>()) };
        word.store(0, Ordering::SeqCst);
        // SAFETY: futex wake on a live word of our own mapping; touches no memory.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                host,
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
                0usize,
                0usize,
                0u32,
            )
        };
    }

    /// Changes the word slot `slot`'s thread clears at its end
    /// (`set_tid_address` in that thread; 0: none).
    pub fn set_clear_tid(&self, slot: usize, addr: u64) {
        if let Some(s) = self.lock().slots.get_mut(slot) {
            s.clear_tid = (addr != 0).then_some(addr);
        }
    }

    /// Records how the program ended (unless an end came first) and stops
    /// every vCPU.
    fn record(&self, st: &mut State, end: Result<LoopEnd, KvmError>) {
        if st.end.is_none() {
            st.end = Some(end);
        }
        self.shared.end_program();
        for parked in &self.wake {
            parked.notify_all();
        }
    }

    fn wait_all(&self) -> Result<LoopEnd, KvmError> {
        let mut st = self.lock();
        while st.live > 0 {
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.closing = true;
        for parked in &self.wake {
            parked.notify_all();
        }
        let threads = std::mem::take(&mut st.threads);
        let end = st.end.take();
        drop(st);
        for h in threads {
            let _ = h.join();
        }
        end.unwrap_or_else(|| {
            Err(GuestError::Stopped { what: "every vCPU stopped without an end".into(), state: None }.into())
        })
    }

    /// The counters of every vCPU that has left its loop, and how many
    /// vCPUs were started.
    pub fn stats(&self) -> (KvmStats, u64) {
        let st = self.lock();
        (st.stats.clone(), st.started)
    }

    /// vCPUs running now (tests).
    pub fn live(&self) -> usize {
        self.lock().live
    }
}

#[cfg(test)]
#[path = "vcpus_tests.rs"]
mod tests;
