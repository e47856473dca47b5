//! The program's threads as the monitor sees them: its own table of thread
//! slots (never the libos's), one ring worker per live slot, started on
//! demand on a scoped thread, and the answers to thread submissions
//! (docs/threads.md).
//!
//! A worker that accepts a `clone` ([`ThreadHost::start`]) validates the
//! request against this table and asks the domain to start the thread
//! ([`Domain::spawn_thread`]); the first time a slot is used, it resets the
//! slot's ring and starts its worker. A worker whose thread exits frees its
//! slot before answering ([`ThreadHost::exit`]) and goes on serving its
//! ring, where the slot's next thread continues (its libos takes the ring's
//! indices as they are): a program that creates and joins threads in a loop
//! pays no host thread and no ring reset per thread. A ring whose slot is
//! free is served like any other (every ring is hostile anyway). At the end
//! of the run [`Threads::stop_all`] stops every worker; no worker can start
//! after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Scope;

use cabin_abi::thread::{is_thread_flags, ThreadStart, MAX_THREADS};

use crate::boot::BootPage;
use crate::domain::{Domain, SpawnedBy, StopCause, Stopper};
use crate::memory::{GuestMemory, RegionKind};
use crate::placement::Placement;
use crate::procs::{Ended, ForkError};
use crate::ring::{Shared, StopHandle, ThreadHost, Worker, WorkerEnd, WorkerStats};
use crate::site_map::SiteMap;
use crate::tree::{self, Tree};
use crate::watch::ThreadClocks;

/// The monitor's table of thread slots.
#[derive(Debug)]
struct Table {
    /// Starts minus exits of each slot: in use when positive. A thread's
    /// exit may be served before its start (the process backend's libos
    /// does not wait for the start's answer, and the two are on different
    /// rings): the exit then counts -1 (never lower) and the start brings
    /// the slot back to 0, free.
    used: [i8; MAX_THREADS],
    /// The stop handle of each ring's worker (from the slot's first use).
    stops: Vec<Option<StopHandle>>,
    /// Slots in use.
    live: usize,
    /// The run is ending: no worker starts any more.
    stopping: bool,
}

/// Everything the workers of one run share about threads.
pub struct Threads<'a, D: Domain> {
    domain: &'a D,
    mem: &'a GuestMemory,
    shared: &'a Shared,
    stopper: Arc<dyn Stopper>,
    placement: Option<&'a Placement>,
    clocks: ThreadClocks,
    sites: SiteMap,
    /// Most live threads (`[limits] threads`, at most the rings there are).
    limit: usize,
    rings: usize,
    table: Mutex<Table>,
    /// How the workers ended (`Stopped` is not kept).
    ends: Mutex<Vec<WorkerEnd>>,
    stats: Mutex<WorkerStats>,
    /// A worker panicked (a monitor bug): its message.
    panicked: Mutex<Option<String>>,
    /// The domain failed to start a thread (a backend failure).
    failed: AtomicBool,
    /// The process tree this program is a process of (none: forks are
    /// `ENOSYS`, waits `ECHILD`).
    procs: Option<Procs<'a>>,
    /// Where an accepted `execve` leaves the process's new domain for its
    /// run thread (none: the root, whose exec is not built yet: `ENOSYS`).
    exec: Option<&'a ExecSlot>,
}

/// The new image of a process whose `execve` was accepted, left by the
/// worker that served it for the process's run thread, which builds and
/// runs its domain in place of the old one (stopped).
#[derive(Debug)]
pub struct Execed {
    /// The image (checked: an intact Cabin image).
    pub image: Arc<Vec<u8>>,
    /// How to build its domain (the new argv and envp).
    pub spec: crate::domain::DomainSpec,
    /// The path as the program gave it (messages).
    pub path: Vec<u8>,
    /// The signals the old image ignored (they stay ignored).
    pub sig_ignored: u64,
}

/// At most one accepted `execve` per domain.
pub type ExecSlot = Mutex<Option<Execed>>;

/// What a process needs to make children (docs/processes.md).
#[derive(Debug, Clone)]
pub struct Procs<'a> {
    /// The run's process tree.
    pub tree: &'a Tree,
    /// The root process's service and the tree's gate.
    pub root: Arc<Shared>,
    /// How the root's domain was built: an `execve`'s new domain is built
    /// the same way with the new arguments.
    pub spec: Arc<crate::domain::DomainSpec>,
}

impl<D: Domain> std::fmt::Debug for Threads<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads").field("limit", &self.limit).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<'a, D: Domain + Sync> Threads<'a, D> {
    /// The thread state of a run of `domain`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        domain: &'a D,
        mem: &'a GuestMemory,
        shared: &'a Shared,
        stopper: Arc<dyn Stopper>,
        placement: Option<&'a Placement>,
        clocks: ThreadClocks,
        sites: SiteMap,
        limit: usize,
    ) -> Threads<'a, D> {
        let rings = domain.ring_count().clamp(1, MAX_THREADS);
        let mut used = [0; MAX_THREADS];
        used[0] = 1;
        Threads {
            domain,
            mem,
            shared,
            stopper,
            placement,
            clocks,
            sites,
            limit: limit.clamp(1, rings),
            rings,
            table: Mutex::new(Table {
                used,
                stops: (0..MAX_THREADS).map(|_| None).collect(),
                live: 1,
                stopping: false,
            }),
            ends: Mutex::default(),
            stats: Mutex::default(),
            panicked: Mutex::default(),
            failed: AtomicBool::new(false),
            procs: None,
            exec: None,
        }
    }

    /// This program is a process of a tree: its workers serve forks and
    /// waits ([`ThreadHost::fork`], [`ThreadHost::wait`]).
    pub fn set_procs(&mut self, procs: Procs<'a>) {
        self.procs = Some(procs);
    }

    /// An accepted `execve` leaves the new domain in `slot`.
    pub fn set_exec(&mut self, slot: &'a ExecSlot) {
        self.exec = Some(slot);
    }

    /// Starts the main thread's worker (slot 0) on `worker`, in `scope`.
    pub fn start_main<'scope>(&'scope self, scope: &'scope Scope<'scope, '_>, mut worker: Worker) {
        worker.slot = 0;
        worker.set_sites(self.sites.clone());
        lock(&self.table).stops[0] = Some(worker.stop_handle());
        self.spawn_worker(scope, worker);
    }

    fn spawn_worker<'scope>(&'scope self, scope: &'scope Scope<'scope, '_>, mut worker: Worker) {
        scope.spawn(move || {
            // The main ring's worker has a CPU of its own; the others run
            // anywhere (they would inherit the spawning worker's one CPU).
            match (worker.slot, self.placement) {
                (0, Some(p)) => p.worker.apply(0),
                (_, Some(p)) => p.all().apply(0),
                _ => true,
            };
            let _clock = self.clocks.join_this_thread();
            crate::watch::set_serving_slot(worker.slot);
            let host = Host { threads: self, scope };
            // A panic here is a monitor bug; the program would otherwise
            // wait for a completion forever. Stop it and report it.
            let end = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                worker.run(self.mem, self.shared, Some(&host))
            })) {
                Ok(end) => end,
                Err(payload) => {
                    let why = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    lock(&self.panicked).get_or_insert(why);
                    self.stopper.stop(StopCause::WorkerFailed);
                    return;
                }
            };
            match &end {
                WorkerEnd::Violation(v) => self.stopper.stop(StopCause::Violation(v.to_string())),
                WorkerEnd::Policy(stop) => self.stopper.stop(StopCause::Policy(stop.message.clone())),
                WorkerEnd::Stopped => {}
            }
            {
                let mut st = lock(&self.stats);
                st.forwarded += worker.stats.forwarded;
                st.trapped += worker.stats.trapped;
                st.spin_preempted += worker.stats.spin_preempted;
            }
            if end != WorkerEnd::Stopped {
                lock(&self.ends).push(end);
            }
        });
    }

    /// The main ring's worker's handle (after [`Threads::start_main`]).
    pub fn main_stop_handle(&self) -> Option<StopHandle> {
        lock(&self.table).stops[0].clone()
    }

    /// Interrupts every worker out of the host call it is blocked in (a
    /// signal was posted: docs/signals.md).
    pub fn interrupt_all(&self) {
        for s in lock(&self.table).stops.iter().flatten() {
            s.interrupt();
        }
    }

    /// Stops every worker (the program has ended); none starts after this.
    pub fn stop_all(&self) {
        let stops: Vec<StopHandle> = {
            let mut t = lock(&self.table);
            t.stopping = true;
            t.stops.iter_mut().filter_map(Option::take).collect()
        };

        for s in stops {
            s.stop();
        }
    }

    /// How the workers ended: the first violation or policy stop, else
    /// `Stopped`; their summed counters; a worker's panic message, if any;
    /// whether the domain failed to start a thread.
    pub fn finish(&self) -> (WorkerEnd, WorkerStats, Option<String>, bool) {
        let end = lock(&self.ends).first().cloned().unwrap_or(WorkerEnd::Stopped);
        (end, *lock(&self.stats), lock(&self.panicked).clone(), self.failed.load(Ordering::SeqCst))
    }

    /// A start the domain refused: the slot is free again (and, if the
    /// start was to make its worker, it has none).
    fn unstart(&self, slot: usize, fresh_worker: bool) {
        self.free(slot);
        if fresh_worker {
            lock(&self.table).stops[slot] = None;
        }
    }

    fn free(&self, slot: usize) {
        let mut t = lock(&self.table);
        if let Some(u) = t.used.get(slot).copied() {
            if u > 0 {
                t.live -= 1;
            }
            t.used[slot] = (u - 1).max(-1);
        }
    }
}

/// A worker's view of [`Threads`], able to start sibling workers in the
/// run's scope.
struct Host<'scope, 'env, 'a, D: Domain> {
    threads: &'scope Threads<'a, D>,
    scope: &'scope Scope<'scope, 'env>,
}

const fn errno(e: i32) -> i64 {
    -(e as i64)
}

impl<D: Domain + Sync> ThreadHost for Host<'_, '_, '_, D> {
    fn start(&self, _from: usize, start: &ThreadStart) -> i64 {
        let t = self.threads;
        let slot = start.slot as usize;
        if slot == 0 || slot >= t.rings || !is_thread_flags(start.flags) {
            return errno(libc::EINVAL);
        }
        let Some(ring) = t.domain.thread_ring(slot) else { return errno(libc::EINVAL) };
        let worker = {
            let mut table = lock(&t.table);
            if table.stopping || table.live >= t.limit {
                return errno(libc::EAGAIN);
            }
            if table.used[slot] > 0 {
                return errno(libc::EBUSY);
            }
            table.used[slot] += 1;
            if table.used[slot] > 0 {
                table.live += 1;
            }
            if table.stops[slot].is_some() {
                // The slot's worker serves on, for this thread too.
                None
            } else {
                // The slot's first thread: no worker has served this ring
                // yet; start one (and set the ring up if the backend did
                // not: the process backend sets every ring up before the
                // program runs, since its libos does not wait for this
                // answer and the thread may already be using its ring).
                if ring.check_header().is_err() {
                    ring.init();
                }
                let mut worker = Worker::new(ring);
                worker.slot = slot;
                worker.spin = crate::ring::THREAD_SPIN;
                worker.set_sites(t.sites.clone());
                table.stops[slot] = Some(worker.stop_handle());
                Some(worker)
            }
        };
        t.shared.set_threaded();
        let answer = match t.domain.spawn_thread(start) {
            Ok(SpawnedBy::Libos) => 0,
            Ok(SpawnedBy::Domain { tid }) => i64::from(tid),
            Ok(SpawnedBy::Refused { errno: e }) => {
                t.unstart(slot, worker.is_some());
                return errno(e);
            }
            Err(e) => {
                eprintln!("cabin: starting a thread failed: {e}");
                t.failed.store(true, Ordering::SeqCst);
                t.unstart(slot, worker.is_some());
                t.stopper.stop(StopCause::WorkerFailed);
                return errno(libc::EAGAIN);
            }
        };
        if let Some(w) = worker {
            t.spawn_worker(self.scope, w);
        }
        answer
    }

    fn cancel(&self, _from: usize, slot: usize) -> i64 {
        let t = self.threads;
        if slot == 0 || slot >= t.rings {
            return errno(libc::EINVAL);
        }
        let mut table = lock(&t.table);
        if table.used[slot] <= 0 {
            return errno(libc::EINVAL);
        }
        // The thread never ran; the ring's worker waits for the slot's next.
        table.used[slot] = 0;
        table.live -= 1;
        0
    }

    fn signal(&self, _from: usize, slot: usize) -> i64 {
        let t = self.threads;
        if slot >= t.rings {
            return errno(libc::EINVAL);
        }
        {
            let table = lock(&t.table);
            if slot != 0 && table.used[slot] <= 0 {
                return errno(libc::EINVAL);
            }
            // Out of a blocking host call: the libos then looks at what is
            // pending for it (docs/signals.md, "Blocking calls").
            if let Some(s) = &table.stops[slot] {
                s.interrupt();
            }
        }
        // A thread running program code: the process backend's wake signal
        // to every thread of the child, or a kick of every vCPU (each takes
        // only what is its own, or the process's). Once: a thread that
        // misses it takes the signal at its next call.
        t.stopper.rewake();
        0
    }

    fn exit(&self, slot: usize) {
        self.threads.free(slot);
        self.threads.domain.thread_exited(slot);
    }

    fn fork(&self, _from: usize, pid: u32, args: &[u64; 6]) -> i64 {
        let t = self.threads;
        let Some(procs) = t.procs.clone() else { return errno(libc::ENOSYS) };
        let [entry, frame, flags, ..] = *args;
        // The child starts in the libos (code of this domain) on the frame
        // the libos left (writable memory of this domain): a lie only
        // makes the program's own child fault.
        let in_code =
            t.mem.regions().iter().any(|r| r.kind == RegionKind::Code && entry.wrapping_sub(r.start) < r.len);
        if !in_code || !frame.is_multiple_of(8) || t.mem.host_range(frame, FRAME_BYTES, true).is_err() {
            return errno(libc::EINVAL);
        }
        let child = match procs.tree.fork_pid(pid) {
            Ok(c) => c,
            Err(ForkError::Limit { limit }) => {
                procs.tree.limit_hit(&procs.root, limit);
                return errno(libc::EAGAIN);
            }
            Err(ForkError::NoCaller) => return errno(libc::EAGAIN),
        };
        // The tree's memory bound: the copy must fit (docs/processes.md,
        // "One memory bound for the tree"), else ENOMEM as Linux's fork
        // when it cannot allocate.
        let Some(room) = procs.tree.fork_room(pid) else {
            procs.tree.discard(child);
            return errno(libc::ENOMEM);
        };
        // From now on the tree's processes share the root's gate lock: no
        // process may hold its service lock across a blocking host call
        // (a parent reading a pipe its child is about to write).
        t.shared.set_threaded();
        procs.root.set_threaded();
        let service = t.shared.lock().service.fork(child);
        let (reply, answer) = std::sync::mpsc::channel();
        let (done, ended) = std::sync::mpsc::channel::<()>();
        let parent = t.domain;
        let (sites, limit) = (t.sites.clone(), t.limit);
        let tree = procs.tree;
        self.scope.spawn(move || {
            run_child(
                parent,
                ChildStart { entry, sp: frame, pid: child, ppid: pid },
                service,
                procs,
                sites,
                limit,
                reply,
                done,
            )
        });
        let answer = answer.recv().unwrap_or(errno(libc::EAGAIN));
        // The child's meter counts its copy now (or there is no child).
        tree.fork_done(room);
        if answer > 0 && flags & CLONE_VFORK != 0 {
            // vfork: the parent goes on once the child has ended (it has
            // no exec yet); the child's thread drops `done` at its end.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = ended.recv_timeout(VFORK_STEP) {}
        }
        answer
    }

    fn exec(&self, mem: &GuestMemory, _from: usize, pid: u32, nr: u64, args: &[u64; 6]) -> i64 {
        let t = self.threads;
        let (Some(procs), Some(slot)) = (t.procs.clone(), t.exec) else { return errno(libc::ENOSYS) };
        // Path, permission, image and measurement, argv and envp: checked
        // and copied once, under the service lock (the cwd, the table).
        let prepared = t.shared.lock().service.exec_prepare(mem, nr, args);
        // A plain static executable: its image from the image cache, built
        // there the first time (without the service lock: a build takes
        // up to seconds, and the process's other threads go on).
        let prepared = prepared.and_then(|mut r| {
            if r.kind == crate::service::exec::ExecKind::Plain && D::CAN_EXEC {
                crate::service::exec::build_plain(&mut r)?;
            }
            Ok(r)
        });
        let req = match prepared {
            Ok(r) => r,
            Err(f) => {
                if let Some(m) = f.message {
                    eprintln!("{m}");
                }
                return errno(f.errno);
            }
        };
        if !D::CAN_EXEC {
            return errno(libc::ENOSYS);
        }
        // The new image must fit the tree's memory bound beside the other
        // processes (its present domain goes).
        if !procs.tree.exec_fits(pid, req.image.len() as u64) {
            return errno(libc::ENOMEM);
        }
        let image = Arc::new(req.image);
        let mut spec = (*procs.spec).clone();
        // Linux (5.18+) gives a program exec'd with no argv an empty argv[0].
        spec.args = if req.args.is_empty() { vec![String::new()] } else { req.args };
        spec.env = req.env;
        spec.program_cpus = spec.all_cpus;
        {
            let mut s = lock(slot);
            if s.is_some() {
                // Another thread's exec won: this process is being replaced.
                return errno(libc::EAGAIN);
            }
            // SA_NOCLDWAIT and SA_NOCLDSTOP do not survive an exec (Linux
            // clears every disposition's flags).
            let sig_ignored = BootPage::of(t.mem).map_or(0, |b| b.sig_ignored())
                & !(cabin_abi::boot::SIG_IGNORED_NOCLDWAIT | cabin_abi::boot::SIG_IGNORED_NOCLDSTOP);
            *s = Some(Execed { image: image.clone(), spec, path: req.path, sig_ignored });
        }
        // The point of no return, as Linux's: descriptors marked
        // FD_CLOEXEC close, and the old domain (every thread of it) ends.
        {
            let mut shared = t.shared.lock();
            shared.service.exec_done();
            shared.service.set_exe(image);
        }
        procs.tree.execed(pid);
        t.stopper.stop(StopCause::Policy("replaced by execve".into()));
        0
    }

    fn kill(&self, pid: u32, target: i32, sig: u64, stop: &AtomicBool) -> i64 {
        match &self.threads.procs {
            Some(p) => p.tree.kill(pid, target, sig, stop),
            None => crate::ring::lone_kill(pid, target),
        }
    }

    fn sysv(
        &self,
        mem: &GuestMemory,
        pid: u32,
        nr: u64,
        args: &[u64; 6],
        stop: &AtomicBool,
    ) -> Result<i64, crate::service::Violation> {
        match &self.threads.procs {
            Some(p) => p.tree.sysv(mem, pid, nr, args, stop),
            None => Ok(errno(libc::ENOSYS)),
        }
    }

    fn group_call(
        &self,
        mem: &GuestMemory,
        pid: u32,
        nr: u64,
        args: &[u64; 6],
    ) -> Option<Result<i64, crate::service::Violation>> {
        self.threads.procs.as_ref()?.tree.group_call(mem, pid, nr, args)
    }

    fn background(&self, pid: u32) -> Option<bool> {
        self.threads.procs.as_ref()?.tree.background(pid)
    }

    fn terminal(
        &self,
        mem: &GuestMemory,
        pid: u32,
        args: &[u64; 6],
        ctty: Result<(), i32>,
    ) -> Option<Result<i64, crate::service::Violation>> {
        self.threads.procs.as_ref()?.tree.terminal(mem, pid, args, ctty)
    }

    fn wait(
        &self,
        mem: &GuestMemory,
        pid: u32,
        nr: u64,
        args: &[u64; 6],
        stop: &AtomicBool,
    ) -> Result<i64, crate::service::Violation> {
        match &self.threads.procs {
            Some(p) => p.tree.wait(mem, pid, nr, args, stop),
            None => Ok(errno(libc::ECHILD)),
        }
    }
}

/// Bytes of the fork frame the child starts on (docs/processes.md): the GS
/// block, 12 registers, RFLAGS and the return address.
const FRAME_BYTES: u64 = 15 * 8;
/// `CLONE_VFORK`.
const CLONE_VFORK: u64 = 0x4000;
/// How often a vfork parent looks whether its child ended.
const VFORK_STEP: std::time::Duration = std::time::Duration::from_millis(50);

/// Where a child process starts and who it is.
#[derive(Debug, Clone, Copy)]
struct ChildStart {
    entry: u64,
    sp: u64,
    pid: u32,
    ppid: u32,
}

/// A child process's run thread: makes its domain from `parent`'s memory,
/// answers the fork (`reply`: the pid or `-errno`), runs it with workers of
/// its own (and children of its own) until it ends, then records its end
/// in the tree. `done` is dropped when the child has ended.
#[allow(clippy::too_many_arguments)]
fn run_child<D: Domain + Sync>(
    parent: &D,
    at: ChildStart,
    service: crate::service::Service,
    procs: Procs<'_>,
    sites: SiteMap,
    limit: usize,
    reply: std::sync::mpsc::Sender<i64>,
    done: std::sync::mpsc::Sender<()>,
) {
    let tree = procs.tree;
    let fail = |e: i32| {
        tree.discard(at.pid);
        let _ = reply.send(errno(e));
    };
    let mut domain = match parent.fork_child(at.entry, at.sp, at.pid, at.ppid) {
        Ok(Some(d)) => d,
        Ok(None) => return fail(libc::ENOSYS),
        Err(e) => {
            eprintln!("cabin: making a child process failed: {e}");
            return fail(libc::EAGAIN);
        }
    };
    let stopper = domain.stopper();
    let Ok(signals) = BootPage::of(domain.memory()).map(|b| b.signal_box()) else {
        return fail(libc::EAGAIN);
    };
    if !tree.join(at.pid, stopper.clone(), signals, domain.meter()) {
        return fail(libc::EAGAIN);
    }
    if let Err(e) = domain.start() {
        eprintln!("cabin: starting a child process failed: {e}");
        tree.ended(at.pid, Ended::Killed(libc::SIGKILL));
        let _ = reply.send(errno(libc::EAGAIN));
        return;
    }
    let _ = reply.send(i64::from(at.pid));
    let shared = Shared::child(service, procs.root.clone());
    shared.set_threaded();
    // A vfork parent waits for this to drop: at the end, or at an exec.
    let mut done = Some(done);
    let mut sites = sites;
    // The calls its libos served, over every image it runs (`--stats`).
    let mut local: Vec<u64> = Vec::new();
    // The process's threads' CPU time over all its images: its ring
    // workers, and on KVM its vCPU threads (this one included). The tree's
    // `[limits] cpu-time` counts them, and each image's host process.
    let clocks = ThreadClocks::default();
    tree.cpu().add_threads(&clocks);
    // Each turn runs one image of the process: the forked copy, then each
    // image an `execve` replaced it with (docs/processes.md, "execve").
    loop {
        domain.join_clocks(&clocks);
        if let Some(m) = domain.cpu_meter() {
            tree.cpu().add_image(m);
        }
        let run_thread = domain.cpu_clock() == crate::domain::CpuClock::RunThread;
        // The process's own CPU time (`clock()`, `getrusage`, `times`): its
        // host process's, as the root's is, or its own vCPU threads'
        // (docs/syscalls.md, "CPU time").
        let own = match domain.cpu_clock() {
            crate::domain::CpuClock::Process(pid) => crate::service::ProgramCpu::Process(pid),
            crate::domain::CpuClock::RunThread => crate::service::ProgramCpu::Threads(clocks.clone()),
        };
        shared.lock().service.set_program_cpu(own);
        let stopper = domain.stopper();
        let exec_slot: ExecSlot = Mutex::new(None);
        let worker = Worker::new(domain.ring());
        let mut threads = Threads::new(
            &domain,
            domain.memory(),
            &shared,
            stopper,
            None,
            clocks.clone(),
            sites.clone(),
            limit,
        );
        threads.set_procs(procs.clone());
        threads.set_exec(&exec_slot);
        let ran = std::thread::scope(|s| {
            threads.start_main(s, worker);
            if let Some(h) = threads.main_stop_handle() {
                tree.set_interrupt(at.pid, h);
            }
            let ran = {
                // KVM: this thread runs the process's main vCPU.
                let _clock = run_thread.then(|| clocks.join_as_program_thread(0));
                domain.run()
            };
            threads.stop_all();
            if lock(&exec_slot).is_none() {
                if let Err(e) = &ran {
                    eprintln!("cabin: a child process failed: {e}");
                }
                // Recorded before this scope waits for the process's own
                // children (their run threads live in it).
                tree.ended(at.pid, tree::ended_of(&ran));
                drop(done.take());
            }
            ran
        });
        let end = threads.finish().0;
        drop(threads);
        if let Ok(b) = BootPage::of(domain.memory()) {
            let words = b.end_words();
            local.resize(words.local_counts.len(), 0);
            for (a, &c) in local.iter_mut().zip(words.local_counts.iter()) {
                *a = a.saturating_add(u64::from(c));
            }
        }
        let execed = exec_slot.into_inner().unwrap_or_else(PoisonError::into_inner);
        let policy_stop = matches!(end, WorkerEnd::Policy(_));
        match execed {
            Some(next) if !policy_stop => {
                // The old image is gone (its host process reaped by `run`);
                // the new one starts with the same pid, parent and service.
                // Past the point of no return a failure ends the process
                // (killed by SIGKILL), as Linux's late exec failures do.
                drop(done.take());
                let ppid = tree.ppid(at.pid).unwrap_or(0);
                let built = cabin_image::image::Image::parse(&next.image)
                    .map_err(crate::config::RunError::ImageRejected)
                    .and_then(|i| D::exec_image(&i.elf, &next.spec, at.pid, ppid));
                match built {
                    Ok(Some(d)) => domain = d,
                    Ok(None) => {
                        tree.ended(at.pid, Ended::Killed(libc::SIGKILL));
                        break;
                    }
                    Err(e) => {
                        eprintln!(
                            "cabin: execve {}: building the new domain failed: {e}",
                            String::from_utf8_lossy(&next.path)
                        );
                        tree.ended(at.pid, Ended::Killed(libc::SIGKILL));
                        break;
                    }
                }
                sites = SiteMap::for_image(&next.image, domain.entry());
                let Ok(boot) = BootPage::of(domain.memory()) else {
                    tree.ended(at.pid, Ended::Killed(libc::SIGKILL));
                    break;
                };
                boot.set_spin_ns(crate::placement::spin_ns(None));
                boot.set_check_local(&procs.spec.check_local);
                boot.set_sig_ignored(next.sig_ignored);
                if !tree.set_signals(at.pid, domain.stopper(), boot.signal_box(), domain.meter()) {
                    // Killed (or the run ended) while it exec'd.
                    tree.ended(at.pid, Ended::Killed(libc::SIGKILL));
                    break;
                }
                if let Err(e) = domain.start() {
                    eprintln!("cabin: starting the image of an execve failed: {e}");
                    tree.ended(at.pid, Ended::Killed(libc::SIGKILL));
                    break;
                }
                continue;
            }
            Some(_) => {
                // Stopped by the policy while it exec'd: it ends here.
                tree.ended(at.pid, tree::ended_of(&ran));
                drop(done.take());
            }
            None => {}
        }
        if let WorkerEnd::Policy(stop) = end {
            tree.stopped_by(stop);
        }
        break;
    }
    let served = shared.lock();
    tree.add_totals(at.pid, &served.service.stats.per_nr, &local, served.service.stats.denied);
}
