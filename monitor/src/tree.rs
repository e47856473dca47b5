//! The running process tree (issue 14, docs/processes.md): the table of
//! [`crate::procs`] behind a mutex, the live processes' stoppers and signal
//! words, `wait4`/`waitid` served from it, `SIGCHLD` to a parent whose child
//! ended, and the end of the run (every process stopped).
//!
//! The session makes one [`Tree`] per run once the root process exists; a
//! worker's fork submission ([`crate::ring::ThreadHost::fork`]) allocates
//! the child's pid here, and the child's run thread reports its end here
//! ([`Tree::ended`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cabin_policy::trace::record::{LimitHit, LimitKind};

use cabin_abi::boot::{SigPosted, SIG_IGNORED_NOCLDSTOP, SIG_IGNORED_NOCLDWAIT};
use cabin_abi::syscalls::nr;

use crate::boot::SignalBox;
use crate::domain::{DomainEnd, StopCause, Stopper};
use crate::gate::Stop;
use crate::memory::GuestMemory;
use crate::procs::{Ended, Event, ForkError, ProcessTree, Select, Want};
use crate::ring::{Shared, StopHandle};
use crate::service::Violation;
use crate::shm::{SharedWindow, Shm};
use crate::sysv::{Ipc, SemOp, Step};
use crate::treemem::Meter;
use crate::watch::TreeCpu;
use cabin_policy::limits::MemoryBound;

/// The limit record of a tree past its memory bound: `resident` bytes in
/// `processes` processes.
fn tree_memory_hit(resident: u64, processes: usize, bound: &MemoryBound, time_ns: u64) -> LimitHit {
    use cabin_policy::limits::size;
    LimitHit {
        time_ns,
        limit: LimitKind::Memory,
        value: resident,
        max: bound.bytes,
        action: format!(
            "the process tree holds {} of {} ({processes} processes and the shared memory); every \
             process was stopped (limit set by {}, which bounds the whole tree)",
            size(resident),
            size(bound.bytes),
            bound.source
        ),
    }
}

/// How often a blocked wait looks at its worker's stop flag.
const WAIT_STEP: Duration = Duration::from_millis(20);
/// How often [`Tree::rewake_until_taken`] wakes a process again whose
/// libos has not taken a posted signal, and for how long at most.
const REWAKE_STEP: Duration = Duration::from_millis(10);
const REWAKE_FOR: Duration = Duration::from_secs(2);

/// A live process: how to stop it and where its signals go.
struct Member {
    stopper: Arc<dyn Stopper>,
    signals: SignalBox,
    /// Interrupts its main worker out of a blocking host call (a posted
    /// signal must reach a program blocked in `pause`, `read`...).
    interrupt: Option<StopHandle>,
    /// Another process sent it `SIGKILL`: an image an `execve` left
    /// waiting must not start.
    killed: bool,
    /// How much host memory its domain holds (the tree's memory bound).
    meter: Option<Arc<dyn Meter>>,
}

/// The run's process tree.
pub struct Tree {
    table: Mutex<ProcessTree>,
    /// Signalled at every end (blocked waits look again).
    changed: Condvar,
    members: Mutex<BTreeMap<u32, Member>>,
    /// The first policy or limit stop of a child process (the whole tree
    /// ends with it, as the root's would).
    stop: Mutex<Option<Stop>>,
    /// The run is ending: no process starts any more.
    ending: AtomicBool,
    /// A `setpgid`, `setsid` or `tcsetpgrp` was asked for: until then every
    /// process is in the root's group, the terminal's foreground, so
    /// [`Tree::background`] answers without the table's lock (it runs
    /// before every forwarded `read` and `write`).
    groups_moved: AtomicBool,
    uid: u32,
    /// When the run started (limit records' time).
    t0: Instant,
    /// The tree's System V semaphores and message queues.
    ipc: Mutex<Ipc>,
    /// Signalled when `ipc` changed or a process got a signal (blocked
    /// `semop`, `msgsnd`, `msgrcv` look again).
    ipc_changed: Condvar,
    /// What the child processes' calls add to the run's statistics.
    totals: Mutex<Totals>,
    /// The tree's shared window (`None`: the backend has none, SysV shared
    /// memory is `ENOSYS`) and the segments in it.
    window: Option<Arc<SharedWindow>>,
    shm: Mutex<Shm>,
    /// The tree's memory bound (docs/processes.md, "One memory bound for
    /// the tree"); `None`: not bounded as a whole.
    memory: Option<MemoryBound>,
    /// Bytes of fork copies under way (counted until the child's own meter
    /// does); held while a fork's room is measured, so two forks never
    /// take the same room.
    pending: Mutex<u64>,
    /// The thread in [`Tree::watch_memory`], woken by a fork: a lone
    /// process with nothing in the shared window is bounded by its own
    /// domain, so the watcher looks only rarely until the tree grows.
    watcher: Mutex<Option<std::thread::Thread>>,
    /// The CPU time of every process of the tree (`[limits] cpu-time`
    /// bounds the tree, docs/policy.md).
    cpu: TreeCpu,
}

/// The calls of the tree's child processes (`--stats` totals the tree).
#[derive(Debug, Default)]
pub struct Totals {
    /// Forwarded calls per number.
    pub forwarded: cabin_policy::per_call::CallCounts,
    /// Calls the libos served, per number (every image of every child).
    pub local: Vec<u64>,
    /// Calls refused.
    pub denied: u64,
    /// Each child: its pid, forwarded and local calls.
    pub processes: Vec<(u32, u64, u64)>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("table", &self.table).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a domain's end reads in its parent's `wait`.
pub fn ended_of(end: &Result<DomainEnd, crate::config::RunError>) -> Ended {
    match end {
        Ok(DomainEnd::Exited(code)) => Ended::Exited(*code as u8),
        Ok(DomainEnd::Fault { signo, .. }) => Ended::Killed(*signo),
        _ => Ended::Killed(libc::SIGKILL),
    }
}

impl Tree {
    /// A tree whose root process has pid `root` (parent outside:
    /// `outside_ppid`), at most `limit` processes, run by user `uid`.
    pub fn new(root: u32, outside_ppid: u32, limit: usize, uid: u32, t0: Instant) -> Tree {
        Tree {
            table: Mutex::new(ProcessTree::new(root, outside_ppid, limit)),
            changed: Condvar::new(),
            members: Mutex::default(),
            stop: Mutex::default(),
            ending: AtomicBool::new(false),
            groups_moved: AtomicBool::new(false),
            uid,
            t0,
            ipc: Mutex::default(),
            ipc_changed: Condvar::new(),
            totals: Mutex::default(),
            window: None,
            shm: Mutex::new(Shm::new(0)),
            memory: None,
            pending: Mutex::new(0),
            watcher: Mutex::new(None),
            cpu: TreeCpu::default(),
        }
    }

    /// The tree's memory bound: every process's resident memory, the
    /// shared window and the copies of forks under way, together.
    pub fn with_memory(mut self, bound: MemoryBound) -> Tree {
        self.memory = Some(bound);
        self
    }

    /// What the live processes' domains and the shared window hold now,
    /// how many processes hold it, and what process `pid`'s domain holds
    /// of it (each meter read once: a KVM meter walks its guest memory).
    fn domains_resident(&self, pid: u32) -> (u64, usize, u64) {
        let meters: Vec<(u32, Arc<dyn Meter>)> =
            lock(&self.members).iter().filter_map(|(&p, m)| Some((p, m.meter.clone()?))).collect();
        let mut sum = self.window.as_ref().map_or(0, |w| w.allocated());
        let mut own = 0;
        for (p, m) in &meters {
            let r = m.resident();
            sum = sum.saturating_add(r);
            if *p == pid {
                own = r;
            }
        }
        (sum, meters.len(), own)
    }

    /// The tree's resident memory now (what its bound counts).
    pub fn resident(&self) -> u64 {
        let pending = *lock(&self.pending);
        self.domains_resident(0).0.saturating_add(pending)
    }

    /// Room for a fork of `parent`: its copy (the parent's resident memory)
    /// is counted as the tree's until [`Tree::fork_done`]. `None`: the copy
    /// would take the tree past its memory bound (the fork is `ENOMEM`).
    pub fn fork_room(&self, parent: u32) -> Option<u64> {
        let Some(bound) = &self.memory else { return Some(0) };
        let mut pending = lock(&self.pending);
        let (now, _, copy) = self.domains_resident(parent);
        if now.saturating_add(*pending).saturating_add(copy) > bound.bytes {
            return None;
        }
        *pending += copy;
        // A second process: the watcher looks at its usual pace again.
        if let Some(w) = lock(&self.watcher).as_ref() {
            w.unpark();
        }
        Some(copy)
    }

    /// A fork's copy is the child's own now (its meter counts it), or
    /// there is no child: the room [`Tree::fork_room`] took is given back.
    pub fn fork_done(&self, room: u64) {
        let mut pending = lock(&self.pending);
        *pending = pending.saturating_sub(room);
    }

    /// Whether process `pid` may replace its image with one of `image`
    /// bytes: the tree without its present domain, plus the new image,
    /// must fit the bound (else its `execve` is `ENOMEM`, before anything
    /// changes).
    pub fn exec_fits(&self, pid: u32, image: u64) -> bool {
        let Some(bound) = &self.memory else { return true };
        let pending = *lock(&self.pending);
        let (now, _, own) = self.domains_resident(pid);
        now.saturating_add(pending).saturating_sub(own).saturating_add(image) <= bound.bytes
    }

    /// Watches the tree's memory until `done` (the calling thread is
    /// unparked then): the sum is read every [`crate::treemem::step`] and
    /// the whole tree is stopped with the memory limit's message (the root's
    /// gate records it) once it passes the bound.
    pub fn watch_memory(&self, root: &Shared, done: &AtomicBool) {
        let Some(bound) = self.memory.clone() else { return };
        *lock(&self.watcher) = Some(std::thread::current());
        while !done.load(Ordering::SeqCst) && !self.ending.load(Ordering::SeqCst) {
            let (domains, processes, _) = self.domains_resident(0);
            let resident = domains.saturating_add(*lock(&self.pending));
            if resident > bound.bytes {
                let hit = tree_memory_hit(resident, processes, &bound, self.t0.elapsed().as_nanos() as u64);
                self.stop_at_limit(root, &hit);
                // Every process at once, not after the root's end: each
                // one touching meanwhile would add to the overshoot.
                self.stop_all();
                return;
            }
            let alone = processes <= 1 && self.window.as_ref().is_none_or(|w| w.allocated() == 0);
            let step =
                if alone { crate::treemem::STEP_ALONE } else { crate::treemem::step(resident, bound.bytes) };
            std::thread::park_timeout(step);
        }
    }

    /// The CPU time of the tree's processes: each adds its images and
    /// threads here as they start; `[limits] cpu-time` reads the sum.
    pub fn cpu(&self) -> &TreeCpu {
        &self.cpu
    }

    /// The tree's shared window (docs/processes.md, "Shared memory"):
    /// System V segments are ranges of it.
    pub fn with_window(mut self, window: Option<Arc<SharedWindow>>) -> Tree {
        self.shm = Mutex::new(Shm::new(window.as_ref().map_or(0, |w| w.len())));
        self.window = window;
        self
    }

    /// Process `pid` holds no segment any more (it ended or exec'd):
    /// removed segments nobody holds go back to the host.
    fn shm_detach_all(&self, pid: u32) {
        let freed = lock(&self.shm).detach_all(pid);
        if let Some(w) = &self.window {
            for (off, len) in freed {
                w.release(off, len);
            }
        }
    }

    /// The root's pid.
    pub fn root(&self) -> u32 {
        lock(&self.table).root()
    }

    /// `getppid` of `pid`.
    pub fn ppid(&self, pid: u32) -> Option<u32> {
        lock(&self.table).ppid(pid)
    }

    /// A new child of `parent`: its pid.
    pub fn fork_pid(&self, parent: u32) -> Result<u32, ForkError> {
        if self.ending.load(Ordering::SeqCst) {
            return Err(ForkError::NoCaller);
        }
        let child = lock(&self.table).fork(parent)?;
        // The child holds its parent's shared-memory attachments.
        lock(&self.shm).forked(parent, child);
        Ok(child)
    }

    /// A child whose domain could not be made: forgotten (no `SIGCHLD`, no
    /// zombie).
    pub fn discard(&self, pid: u32) {
        self.shm_detach_all(pid);
        lock(&self.table).ended(pid, Ended::Killed(libc::SIGKILL), true);
        self.changed.notify_all();
    }

    /// Process `pid` runs: how to stop it and post it signals. `false`
    /// when the run is ending (it must not start; call [`Tree::ended`]).
    pub fn join(
        &self,
        pid: u32,
        stopper: Arc<dyn Stopper>,
        signals: SignalBox,
        meter: Option<Arc<dyn Meter>>,
    ) -> bool {
        let mut m = lock(&self.members);
        if self.ending.load(Ordering::SeqCst) {
            return false;
        }
        m.insert(pid, Member { stopper, signals, interrupt: None, killed: false, meter });
        true
    }

    /// Process `pid` runs a new domain (an `execve`): how to stop it and
    /// post it signals from now on. `false`: it was killed meanwhile (or
    /// the run is ending), the new domain must not start.
    pub fn set_signals(
        &self,
        pid: u32,
        stopper: Arc<dyn Stopper>,
        signals: SignalBox,
        meter: Option<Arc<dyn Meter>>,
    ) -> bool {
        let mut members = lock(&self.members);
        if self.ending.load(Ordering::SeqCst) {
            return false;
        }
        match members.get_mut(&pid) {
            Some(m) if !m.killed => {
                m.stopper = stopper;
                m.signals = signals;
                m.interrupt = None;
                m.meter = meter;
                true
            }
            _ => false,
        }
    }

    /// How to interrupt process `pid`'s main worker (once it runs).
    pub fn set_interrupt(&self, pid: u32, handle: StopHandle) {
        if let Some(m) = lock(&self.members).get_mut(&pid) {
            m.interrupt = Some(handle);
        }
    }

    /// Process `pid` ended `how`: a zombie for its parent (or reaped by the
    /// monitor), blocked waits look again, and the parent gets `SIGCHLD`.
    pub fn ended(&self, pid: u32, how: Ended) {
        let parent_reaps = |ppid: u32| {
            lock(&self.members).get(&ppid).map(|m| {
                let ignored = m.signals.ignored();
                ignored & (SIG_IGNORED_NOCLDWAIT | 1 << (libc::SIGCHLD - 1)) != 0
            })
        };
        lock(&self.members).remove(&pid);
        self.shm_detach_all(pid);
        // SEM_UNDO: its adjustments are applied at its end.
        if lock(&self.ipc).exited(pid) {
            self.ipc_changed.notify_all();
        }
        let (parent, orphans, outside) = {
            let mut table = lock(&self.table);
            let orphans = table.live_children(pid);
            // SIGCHLD ignored or SA_NOCLDWAIT: no zombie (as Linux); the
            // parent's word is the libos's, a lie changes only its own.
            let auto = table.ppid_of(pid).and_then(parent_reaps).unwrap_or(false);
            let parent = table.ended(pid, how, auto);
            // SIGCHLD is posted with the zombie, under the table's lock, and
            // before any wait wakes (as Linux's exit_notify): a handler's
            // `waitpid` finds the zombie, and a parent that `wait`s takes
            // the signal on its way out of that call. Posted after the wake,
            // it reached a parent already inside its next call (a fork
            // loop), which took it only at that call's end, interrupted
            // every 10 ms by `rewake_until_taken` meanwhile.
            let posted = parent.filter(|&ppid| self.post_to_parent(pid, ppid, Event::Ended(how)));
            (posted, orphans, table.ppid(table.root()).unwrap_or(0))
        };
        self.changed.notify_all();
        // Its children are the monitor's now: their getppid says so, and
        // those that asked get their parent-death signal.
        for (child, deathsig) in orphans {
            if let Some(m) = lock(&self.members).get(&child) {
                m.signals.set_ppid(outside);
            }
            if deathsig != 0 && !self.ending.load(Ordering::SeqCst) {
                self.signal(pid, child, u64::from(deathsig), libc::SI_USER);
            }
        }
        // Wakes the parent again until its libos has taken the SIGCHLD.
        if let Some(ppid) = parent {
            self.rewake_until_taken(ppid, libc::SIGCHLD as u32);
        }
    }

    /// Posts `SIGCHLD` for `event` of child `pid` to its parent `ppid`
    /// (`si_code` `CLD_*`, `si_status`), unless the parent ignores
    /// `SIGCHLD`, or set `SA_NOCLDSTOP` and the event is a stop or a
    /// continue; then wakes it until its libos has taken it, unless `by`
    /// (the process whose call caused the event, 0: none) is set: a call
    /// must not wait for another libos (two processes inside calls, each
    /// waiting for the other to take a signal, would both wait the 2 s:
    /// a parent continuing a child that stops itself again at once); the
    /// parent's own libos looks on its way out of its call, and a stopped
    /// process's wait wakes its parent again ([`Tree::stop_self`]). A `SIGCHLD` still waiting to be taken keeps its words
    /// (standard signals do not queue: Linux keeps the first `siginfo`).
    fn notify_parent(&self, pid: u32, ppid: u32, event: Event, by: u32) {
        if !self.post_to_parent(pid, ppid, event) {
            return;
        }
        self.changed.notify_all();
        if by == 0 {
            self.rewake_until_taken(ppid, libc::SIGCHLD as u32);
        }
    }

    /// The posting half of [`Tree::notify_parent`]: `SIGCHLD` for `event` of
    /// child `pid` into the words of its parent `ppid`, which is woken and
    /// its worker interrupted. `false`: nothing was posted (the run ends,
    /// no such parent, or it ignores this `SIGCHLD`). Takes the members'
    /// lock only (callers may hold the table's: that order is the tree's).
    fn post_to_parent(&self, pid: u32, ppid: u32, event: Event) -> bool {
        if self.ending.load(Ordering::SeqCst) {
            return false;
        }
        let members = lock(&self.members);
        let Some(m) = members.get(&ppid) else { return false };
        let ignored = m.signals.ignored();
        if ignored & 1 << (libc::SIGCHLD - 1) != 0 {
            // Ignored: nothing to post (nor to wait for).
            return false;
        }
        if !matches!(event, Event::Ended(_)) && ignored & SIG_IGNORED_NOCLDSTOP != 0 {
            return false;
        }
        let (code, status) = event.siginfo();
        let words = SigPosted { code, pid, uid: self.uid, pad: 0, value: u64::from(status as u32) };
        let fresh = !m.signals.waiting(libc::SIGCHLD as u32);
        if fresh {
            m.signals.post(libc::SIGCHLD as u32, words);
        }
        if fresh {
            m.stopper.wake_for_signal(libc::SIGCHLD);
        } else {
            m.stopper.rewake();
        }
        if let Some(h) = &m.interrupt {
            h.interrupt();
        }
        true
    }

    /// Wakes process `pid` once more if signal `sig` (or anything) still
    /// waits for its libos: what a caller that must not block in
    /// [`Tree::rewake_until_taken`] does at each step of its own wait.
    fn rewake_once(&self, pid: u32, sig: u32) {
        if let Some(m) = lock(&self.members).get(&pid) {
            if m.signals.waiting(sig) || m.signals.attention() {
                m.stopper.rewake();
                if let Some(h) = &m.interrupt {
                    h.interrupt();
                }
            }
        }
    }

    /// Job control: process `pid` stops (`sig`: the stop signal whose
    /// default action it is). Every thread of it stops
    /// ([`Stopper::pause`]), its parent's `wait` with `WUNTRACED` reports it
    /// once and the parent gets `SIGCHLD` (`CLD_STOPPED`). A stopped
    /// process does not stop again. `by`: the process whose call stops it
    /// (0: none).
    pub fn stop_process(&self, pid: u32, sig: i32, by: u32) {
        let parent = {
            let mut table = lock(&self.table);
            if self.ending.load(Ordering::SeqCst) || !table.stop(pid, sig) {
                return;
            }
            if let Some(m) = lock(&self.members).get(&pid) {
                m.stopper.pause(true);
            }
            table.ppid_of(pid)
        };
        self.changed.notify_all();
        if let Some(ppid) = parent {
            self.notify_parent(pid, ppid, Event::Stopped(sig), by);
        }
    }

    /// Job control: a stopped process `pid` continues (`SIGCONT`): its
    /// threads run again, what was posted to it meanwhile is looked at, its
    /// parent's `wait` with `WCONTINUED` reports it once and the parent
    /// gets `SIGCHLD` (`CLD_CONTINUED`). `false`: it was not stopped.
    /// `by`: the process whose call continues it (0: none).
    pub fn continue_process(&self, pid: u32, by: u32) -> bool {
        let parent = {
            let mut table = lock(&self.table);
            if !table.cont(pid) {
                return false;
            }
            if let Some(m) = lock(&self.members).get(&pid) {
                m.stopper.pause(false);
                // Signals posted while it was stopped wait for it now.
                m.stopper.rewake();
                if let Some(h) = &m.interrupt {
                    h.interrupt();
                }
            }
            table.ppid_of(pid)
        };
        self.changed.notify_all();
        if let Some(ppid) = parent {
            self.notify_parent(pid, ppid, Event::Continued, by);
        }
        true
    }

    /// Whether process `pid` is stopped (job control).
    pub fn is_stopped(&self, pid: u32) -> bool {
        lock(&self.table).is_stopped(pid)
    }

    /// The libos of `caller` took a stop signal whose default action
    /// applies (`kill(own pid, sig)`, which the libos otherwise serves
    /// itself): the process stops, and this call returns once it is
    /// continued (the calling thread resumes where the signal found it),
    /// ended, or the run ends. A forged request stops only the caller.
    /// As Linux, `SIGTSTP`, `SIGTTIN` and `SIGTTOU` do nothing to a process
    /// of an orphaned group ([`ProcessTree::orphaned_group`]).
    fn stop_self(&self, caller: u32, sig: i32, stop: &AtomicBool) -> i64 {
        if sig != libc::SIGSTOP && lock(&self.table).orphaned_group(caller) {
            return 0;
        }
        self.stop_process(caller, sig, caller);
        let parent = lock(&self.table).ppid_of(caller);
        let mut steps = 0u32;
        let mut table = lock(&self.table);
        while table.is_stopped(caller) && !stop.load(Ordering::SeqCst) && !self.ending.load(Ordering::SeqCst)
        {
            table = self.changed.wait_timeout(table, WAIT_STEP).unwrap_or_else(PoisonError::into_inner).0;
            // Its parent's SIGCHLD, for at most 2 s (a lost wake-up: see
            // `rewake_until_taken`).
            if let Some(ppid) = parent.filter(|_| steps < 100) {
                steps += 1;
                drop(table);
                self.rewake_once(ppid, libc::SIGCHLD as u32);
                table = lock(&self.table);
            }
        }
        0
    }

    /// As the session's signal poster does: interrupts process `pid`'s
    /// worker out of a blocking call and wakes it again until its libos has
    /// taken signal `sig` (at most 2 s, on the sender's thread). Once is not
    /// enough: a kick that lands just before the worker blocks (in `pause`,
    /// a `read`) is lost, and the target would sleep on with the signal
    /// posted (the "SIGTERM reported as SIGKILL" hang of docs/processes.md:
    /// the killed child never ended, and the run's end stopped it). The
    /// member is looked up again at every step: its boot page is used only
    /// while it is a member (a domain leaves before it is dropped).
    ///
    /// A stopped target takes nothing until it is continued, which wakes it
    /// again ([`Tree::continue_process`]): the wait ends there (else a
    /// parent continuing a child that stops itself again at once, each
    /// waiting for the other's libos, would both wait the 2 s).
    ///
    /// It looks often at first (50 µs, doubling up to the 10 ms between
    /// wakes): a parent takes its `SIGCHLD` on its way out of the `wait` the
    /// post woke, within microseconds, and the ended child's thread (which
    /// runs this from [`Tree::ended`]) then goes on to free its domain at
    /// once instead of 10 ms later.
    fn rewake_until_taken(&self, pid: u32, sig: u32) {
        let t0 = Instant::now();
        let mut next_wake = REWAKE_STEP;
        let mut nap = Duration::from_micros(50);
        loop {
            if self.is_stopped(pid) {
                return;
            }
            {
                let members = lock(&self.members);
                let Some(m) = members.get(&pid) else { return };
                // Taken (the common case): nothing more to do. Looked at
                // before waking again, so a signal taken during the sleep
                // costs the target no further interruption.
                if !m.signals.waiting(sig) && !m.signals.attention() {
                    return;
                }
                // Not at once: the first wake and interrupt were the
                // poster's own; then one every REWAKE_STEP.
                if t0.elapsed() >= next_wake {
                    next_wake += REWAKE_STEP;
                    m.stopper.rewake();
                    if let Some(h) = &m.interrupt {
                        h.interrupt();
                    }
                }
            }
            if t0.elapsed() >= REWAKE_FOR {
                return;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(REWAKE_STEP);
        }
    }

    /// `kill(target, sig)` from `caller` (`ProcessTree::kill_targets`):
    /// `SIGKILL` stops a process, signal 0 only checks, any other is posted
    /// to it as a signal sent by `caller` (`SI_USER`); `EINVAL` for a number
    /// that is no signal, `ESRCH` when no process of the tree matches.
    /// Job control: `SIGSTOP` stops a process at once, `SIGCONT` continues
    /// a stopped one (and is posted: a handler runs); `SIGTSTP`, `SIGTTIN`
    /// and `SIGTTOU` are posted, and the target's libos asks for the stop
    /// when their default action applies: `kill` of the caller's own pid
    /// with a stop signal, which it otherwise serves itself, is that
    /// request ([`Tree::stop_self`]; `stop`: the worker's stop flag).
    pub fn kill(&self, caller: u32, target: i32, sig: u64, stop: &AtomicBool) -> i64 {
        if sig > 64 {
            return -i64::from(libc::EINVAL);
        }
        if target > 0 && target as u32 == caller && is_stop_signal(sig) {
            return self.stop_self(caller, sig as i32, stop);
        }
        let targets = match lock(&self.table).kill_targets(caller, target) {
            Ok(t) => t,
            Err(e) => return -i64::from(e),
        };
        if sig == 0 {
            return 0;
        }
        let mut me = false;
        for pid in targets {
            if pid == caller {
                // The caller's own libos raises it (synchronously, before
                // the call returns: `libos::forward::serve`).
                me = true;
                continue;
            }
            self.signal(caller, pid, sig, libc::SI_USER);
        }
        i64::from(me)
    }

    /// Sends `sig` from `from` to process `pid` (`code`: `SI_USER`, or
    /// `SI_KERNEL` from the terminal), posted as any other signal, with
    /// job control: `SIGSTOP` stops it without its libos (and is not
    /// posted: nothing catches it), `SIGCONT` continues it once posted.
    fn signal(&self, from: u32, pid: u32, sig: u64, code: i32) {
        if sig == libc::SIGSTOP as u64 {
            self.stop_process(pid, libc::SIGSTOP, from);
            return;
        }
        self.post(from, pid, sig, code);
        if sig == libc::SIGCONT as u64 {
            // After the post: the SIGCONT is there when the process
            // resumes, and its handler runs before anything else (as Linux
            // makes it pending with the continue).
            self.continue_process(pid, from);
        }
    }

    /// Posts `sig` from `from` to process `pid` (`SIGKILL`: stops it), and
    /// interrupts its blocking call or wait.
    fn post(&self, from: u32, pid: u32, sig: u64, code: i32) {
        {
            let mut members = lock(&self.members);
            let Some(m) = members.get_mut(&pid) else { return };
            if sig == libc::SIGKILL as u64 {
                m.killed = true;
                m.stopper.stop(StopCause::Policy("killed by another process of the tree".into()));
                return;
            }
            let words = SigPosted { code, pid: from, uid: self.uid, pad: 0, value: 0 };
            // As Linux: SIGCONT discards the stop signals not yet taken,
            // a stop signal a SIGCONT not yet taken (the libos does the
            // same with its own pending set).
            if sig == libc::SIGCONT as u64 {
                m.signals.discard(STOP_SIGNALS);
            } else if is_stop_signal(sig) {
                m.signals.discard(1 << (libc::SIGCONT - 1));
            }
            let fresh = !m.signals.waiting(sig as u32);
            m.signals.post(sig as u32, words);
            if fresh {
                m.stopper.wake_for_signal(sig as i32);
            } else {
                m.stopper.rewake();
            }
            if let Some(h) = &m.interrupt {
                h.interrupt();
            }
        }
        // A wait4 or semop it is blocked in looks at its signals now.
        self.changed.notify_all();
        self.ipc_changed.notify_all();
        if self.is_stopped(pid) {
            // Taken once it is continued ([`Tree::continue_process`]
            // wakes it then); the sender does not wait for that.
            return;
        }
        self.rewake_until_taken(pid, sig as u32);
    }

    /// Process `pid` replaced its image (`execve`): its parent's `setpgid`
    /// on it is `EACCES` from now on.
    pub fn execed(&self, pid: u32) {
        lock(&self.table).execed(pid);
        // Its segments are detached (the new image starts without them).
        self.shm_detach_all(pid);
    }

    /// The process-group, session and parent-death calls of `caller`,
    /// served from the tree: `getpgrp`, `getpgid`, `getsid`, `setpgid`,
    /// `setsid`, and `prctl`'s `PR_SET_PDEATHSIG`/`PR_GET_PDEATHSIG`
    /// (`None`: another `prctl`, which the service serves).
    pub fn group_call(
        &self,
        mem: &GuestMemory,
        caller: u32,
        nr_: u64,
        a: &[u64; 6],
    ) -> Option<Result<i64, Violation>> {
        let answer = |r: Result<u32, i32>| Some(Ok(r.map_or_else(|e| -i64::from(e), i64::from)));
        let mut table = lock(&self.table);
        match nr_ {
            n if n == nr::getpgrp => answer(table.pgid(caller, 0)),
            n if n == nr::getpgid => answer(pid_arg(a[0]).and_then(|p| table.pgid(caller, p))),
            n if n == nr::getsid => answer(pid_arg(a[0]).and_then(|p| table.sid(caller, p))),
            n if n == nr::setpgid => {
                self.groups_moved.store(true, Ordering::Release);
                answer(table.setpgid(caller, a[0] as i32, a[1] as i32).map(|()| 0))
            }
            n if n == nr::setsid => {
                self.groups_moved.store(true, Ordering::Release);
                answer(table.setsid(caller))
            }
            n if n == nr::prctl => match a[0] as i32 {
                libc::PR_SET_PDEATHSIG => {
                    if a[1] > 64 {
                        return answer(Err(libc::EINVAL));
                    }
                    table.set_pdeathsig(caller, a[1] as u8);
                    answer(Ok(0))
                }
                libc::PR_GET_PDEATHSIG => {
                    let sig = i32::from(table.pdeathsig(caller));
                    drop(table);
                    let wrote = mem.write(a[1], &sig.to_le_bytes());
                    Some(match wrote {
                        Ok(()) => Ok(0),
                        Err(_) => Ok(-i64::from(libc::EFAULT)),
                    })
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Job control on the run's terminal (`ioctl` `TIOCGPGRP`, `TIOCSPGRP`,
    /// `TIOCGSID`: `tcgetpgrp`, `tcsetpgrp`, `tcgetsid`) from `caller`,
    /// served from the tree (docs/processes.md, "Terminals"): `ctty` says
    /// whether the descriptor is the monitor's controlling terminal (else
    /// its errno: `EBADF`, `ENOTTY`). The host terminal's foreground group
    /// is never changed. `None`: another request, which the service serves.
    pub fn terminal(
        &self,
        mem: &GuestMemory,
        caller: u32,
        a: &[u64; 6],
        ctty: Result<(), i32>,
    ) -> Option<Result<i64, Violation>> {
        let req = a[1] as u32 as u64;
        if req != libc::TIOCGPGRP && req != libc::TIOCSPGRP && req != libc::TIOCGSID {
            return None;
        }
        let fail = |e: i32| Some(Ok(-i64::from(e)));
        if let Err(e) = ctty {
            return fail(e);
        }
        if req == libc::TIOCSPGRP {
            // Copied once; the kernel's order: EFAULT, EINVAL, then the
            // session and group checks.
            let mut b = [0u8; 4];
            if mem.read_into(a[2], &mut b).is_err() {
                return fail(libc::EFAULT);
            }
            let pgrp = i32::from_le_bytes(b);
            if pgrp < 0 {
                return fail(libc::EINVAL);
            }
            self.groups_moved.store(true, Ordering::Release);
            return match lock(&self.table).set_tty_pgrp(caller, pgrp as u32) {
                Ok(()) => Some(Ok(0)),
                Err(e) => fail(e),
            };
        }
        let v = {
            let table = lock(&self.table);
            if req == libc::TIOCGPGRP {
                table.tty_pgrp(caller)
            } else {
                table.tty_sid(caller)
            }
        };
        match v {
            Ok(v) => match mem.write(a[2], &(v as i32).to_le_bytes()) {
                Ok(()) => Some(Ok(0)),
                Err(_) => fail(libc::EFAULT),
            },
            Err(e) => fail(e),
        }
    }

    /// Whether `caller` is in a background group of the run's terminal
    /// (`Some(orphaned)`), for the `SIGTTIN`/`SIGTTOU` checks of its
    /// terminal calls ([`crate::procs::ProcessTree::background`]).
    pub fn background(&self, caller: u32) -> Option<bool> {
        if !self.groups_moved.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.table).background(caller)
    }

    /// A signal the terminal sent `cabinc` (Ctrl-C: `SI_KERNEL`)
    /// while the program had put another process group than the root's in
    /// the terminal's foreground (`tcsetpgrp`): it goes to that group's
    /// live members instead of the root, as the kernel sends it to the
    /// terminal's foreground group. `false`: no such job, the caller posts
    /// it to the root as before.
    pub fn terminal_signal(&self, sig: i32) -> bool {
        let Some(job) = lock(&self.table).foreground_job() else { return false };
        for pid in job {
            self.signal(0, pid, sig as u64, libc::SI_KERNEL);
        }
        true
    }

    /// A child process was stopped by the policy or a limit: the whole tree
    /// ends (the first stop is the run's).
    pub fn stopped_by(&self, stop: Stop) {
        lock(&self.stop).get_or_insert(stop.clone());
        let root = self.root();
        if let Some(m) = lock(&self.members).get(&root) {
            m.stopper.stop(StopCause::Policy(stop.message));
        }
    }

    /// A fork past the `processes` limit: the tree's gate records the hit
    /// and says so, and the whole tree stops with it.
    pub fn limit_hit(&self, root: &Shared, limit: usize) {
        let hit = LimitHit {
            time_ns: self.t0.elapsed().as_nanos() as u64,
            limit: LimitKind::Processes,
            value: limit as u64 + 1,
            max: limit as u64,
            action: "stopped the program and every process it started".into(),
        };
        self.stop_at_limit(root, &hit);
    }

    /// The tree passed a limit of its own (`hit`): the root's gate records
    /// it (audit, trace, message) and the run ends with its stop; without a
    /// gate the message is printed here. Every process is stopped.
    fn stop_at_limit(&self, root: &Shared, hit: &LimitHit) {
        let stop = root.lock().gate.as_mut().map(|g| g.limit_hit(hit));
        let stop = stop.unwrap_or_else(|| {
            let message = cabin_policy::limits::message(hit);
            eprintln!("{message}");
            Stop { exit_code: 137, reason: "limit", message }
        });
        self.stopped_by(stop);
    }

    /// Child process `pid` served `forwarded` calls (`denied` refused) and
    /// its libos `local` ones (per number; every image it ran): added to
    /// the run's totals.
    pub fn add_totals(
        &self,
        pid: u32,
        forwarded: &cabin_policy::per_call::CallCounts,
        local: &[u64],
        denied: u64,
    ) {
        let mut t = lock(&self.totals);
        for (nr, n) in forwarded.known() {
            t.forwarded.add(nr, n);
        }
        t.forwarded.add(u64::MAX, forwarded.other());
        if t.local.len() < local.len() {
            t.local.resize(local.len(), 0);
        }
        for (a, b) in t.local.iter_mut().zip(local) {
            *a = a.saturating_add(*b);
        }
        t.denied = t.denied.saturating_add(denied);
        t.processes.push((pid, forwarded.total(), local.iter().sum()));
    }

    /// The children's totals (once, at the end of the run).
    pub fn take_totals(&self) -> Totals {
        std::mem::take(&mut *lock(&self.totals))
    }

    /// The child's stop that ended the tree, if any.
    pub fn take_stop(&self) -> Option<Stop> {
        lock(&self.stop).take()
    }

    /// The run ends: every live process is stopped and none starts.
    pub fn stop_all(&self) {
        let members = {
            let m = lock(&self.members);
            self.ending.store(true, Ordering::SeqCst);
            m.values().map(|m| m.stopper.clone()).collect::<Vec<_>>()
        };
        for s in members {
            s.stop(StopCause::Policy("the program ended".into()));
        }
        self.changed.notify_all();
        self.ipc_changed.notify_all();
    }

    /// `wait4` (`nr`) or `waitid` of process `caller`; a blocked wait ends
    /// with `EINTR` when `stop` is set (its worker is stopping).
    pub fn wait(
        &self,
        mem: &GuestMemory,
        caller: u32,
        nr_: u64,
        a: &[u64; 6],
        stop: &AtomicBool,
    ) -> Result<i64, Violation> {
        let req = match parse_wait(nr_, a) {
            Ok(r) => r,
            Err(e) => return Ok(-i64::from(e)),
        };
        let mut table = lock(&self.table);
        loop {
            let which = match req.which {
                Which::Wait4(pid) => match Select::from_wait4(&table, caller, pid) {
                    Some(w) => w,
                    None => return Ok(-i64::from(libc::ECHILD)),
                },
                Which::Select(w) => w,
            };
            match table.wait(caller, which, req.want) {
                Err(e) => return Ok(-i64::from(e)),
                Ok(Some((pid, event))) => {
                    if !req.nowait {
                        match event {
                            Event::Ended(_) => {
                                table.reap(caller, pid);
                            }
                            _ => table.reported(caller, pid),
                        }
                    }
                    drop(table);
                    self.report(mem, &req, Some((pid, event)))?;
                    return Ok(if nr_ == nr::waitid { 0 } else { i64::from(pid) });
                }
                Ok(None) if req.nohang => {
                    drop(table);
                    self.report(mem, &req, None)?;
                    return Ok(0);
                }
                Ok(None) => {
                    if stop.load(Ordering::SeqCst) || self.ending.load(Ordering::SeqCst) {
                        return Ok(-i64::from(libc::EINTR));
                    }
                    // A signal for the caller (posted by the tree, the
                    // session or a timer) ends the wait: the libos then
                    // runs the handler and restarts it or returns EINTR
                    // (SA_RESTART), or makes it again when the signal is
                    // ignored or blocked (docs/signals.md).
                    if lock(&self.members).get(&caller).is_some_and(|m| m.signals.attention()) {
                        return Ok(-i64::from(libc::EINTR));
                    }
                    table =
                        self.changed.wait_timeout(table, WAIT_STEP).unwrap_or_else(PoisonError::into_inner).0;
                }
            }
        }
    }

    /// Writes what a wait found: `wait4`'s status word and zeroed
    /// `rusage`; `waitid`'s `siginfo_t` (zeroed `si_pid` when nothing was
    /// found, as Linux leaves it for `WNOHANG`).
    fn report(&self, mem: &GuestMemory, req: &WaitReq, found: Option<(u32, Event)>) -> Result<(), Violation> {
        let fault = |e: crate::memory::MemError| Violation(format!("wait: {e}"));
        match req.out {
            Out::Wait4 { status, rusage } => {
                if let (Some((_, how)), true) = (found, status != 0) {
                    mem.write(status, &how.wait_status().to_le_bytes()).map_err(fault)?;
                }
                if rusage != 0 {
                    mem.write(rusage, &[0u8; RUSAGE_SIZE]).map_err(fault)?;
                }
            }
            Out::Waitid { info, rusage } => {
                if info != 0 {
                    let mut b = [0u8; 128];
                    if let Some((pid, how)) = found {
                        let (code, status) = how.siginfo();
                        b[0..4].copy_from_slice(&libc::SIGCHLD.to_le_bytes());
                        b[8..12].copy_from_slice(&code.to_le_bytes());
                        b[16..20].copy_from_slice(&pid.to_le_bytes());
                        b[20..24].copy_from_slice(&self.uid.to_le_bytes());
                        b[24..28].copy_from_slice(&status.to_le_bytes());
                    }
                    mem.write(info, &b).map_err(fault)?;
                }
                if rusage != 0 {
                    mem.write(rusage, &[0u8; RUSAGE_SIZE]).map_err(fault)?;
                }
            }
        }
        Ok(())
    }
}

impl Tree {
    /// Whether a blocked call of `caller` must end now: its worker stops,
    /// the run ends (`EINTR`), or a signal was posted for it (`EINTR`,
    /// which its libos turns into a handler and `EINTR`, or makes the call
    /// again when the signal is ignored or blocked: docs/signals.md).
    fn interrupted(&self, caller: u32, stop: &AtomicBool) -> bool {
        stop.load(Ordering::SeqCst)
            || self.ending.load(Ordering::SeqCst)
            || lock(&self.members).get(&caller).is_some_and(|m| m.signals.attention())
    }

    /// Runs `f` on the IPC table until it is done, blocking (without any
    /// lock) while it says [`Step::Block`]: `Err(EINTR)` when interrupted,
    /// `Err(EAGAIN)` past `deadline`, `Err(EIDRM)` when `exists` says the
    /// object went away meanwhile.
    fn ipc_blocking<T>(
        &self,
        caller: u32,
        stop: &AtomicBool,
        deadline: Option<Instant>,
        exists: impl Fn(&Ipc) -> bool,
        mut f: impl FnMut(&mut Ipc) -> Step<T>,
        mut waiting: impl FnMut(&mut Ipc, bool),
    ) -> Result<T, i32> {
        let mut ipc = lock(&self.ipc);
        let mut blocked = false;
        let out = loop {
            if blocked && !exists(&ipc) {
                break Err(libc::EIDRM);
            }
            match f(&mut ipc) {
                Step::Done(v) => break Ok(v),
                Step::Block => {}
            }
            if !blocked {
                blocked = true;
                waiting(&mut ipc, true);
            }
            drop(ipc);
            if self.interrupted(caller, stop) {
                ipc = lock(&self.ipc);
                break Err(libc::EINTR);
            }
            ipc = lock(&self.ipc);
            let step = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left.min(WAIT_STEP),
                    _ => break Err(libc::EAGAIN),
                },
                None => WAIT_STEP,
            };
            ipc = self.ipc_changed.wait_timeout(ipc, step).unwrap_or_else(PoisonError::into_inner).0;
        };
        if blocked {
            waiting(&mut ipc, false);
        }
        drop(ipc);
        if out.is_ok() {
            // What it changed may let others go on.
            self.ipc_changed.notify_all();
        }
        out
    }

    /// System V IPC of `caller` (`semget`, `semop`, `semtimedop`,
    /// `semctl`, `msgget`, `msgsnd`, `msgrcv`, `msgctl`; shared memory:
    /// [`Tree::shm`]), served from the tree's private table ([`crate::sysv`]):
    /// arguments copied once, blocking without any lock (ended by a signal,
    /// the worker's stop or the run's end with `EINTR`, by `IPC_RMID` with
    /// `EIDRM`).
    pub fn sysv(
        &self,
        mem: &GuestMemory,
        caller: u32,
        nr_: u64,
        a: &[u64; 6],
        stop: &AtomicBool,
    ) -> Result<i64, Violation> {
        let err = |e: i32| Ok(-i64::from(e));
        // SAFETY: getgid has no preconditions and touches no memory.
        let gid = unsafe { libc::getgid() };
        let id = a[0] as i32;
        match nr_ {
            n if n == nr::semget => {
                Ok(lock(&self.ipc).semget(a[0] as i32, a[1] as i32, a[2] as u32, self.uid, gid))
            }
            n if n == nr::msgget => Ok(lock(&self.ipc).msgget(a[0] as i32, a[1] as u32, self.uid, gid)),
            n if n == nr::semop || n == nr::semtimedop => {
                let count = a[2];
                if count == 0 {
                    return err(libc::EINVAL);
                }
                if count > crate::sysv::MAX_SEMOPS as u64 {
                    return err(libc::E2BIG);
                }
                let Ok(raw) = mem.read(a[1], count as usize * 6) else { return err(libc::EFAULT) };
                let ops = SemOp::parse(&raw);
                let deadline = if n == nr::semtimedop && a[3] != 0 {
                    let Ok(ts) = mem.read(a[3], 16) else { return err(libc::EFAULT) };
                    let sec = i64::from_le_bytes(ts[0..8].try_into().unwrap_or([0; 8]));
                    let nsec = i64::from_le_bytes(ts[8..16].try_into().unwrap_or([0; 8]));
                    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
                        return err(libc::EINVAL);
                    }
                    let d = Duration::from_secs(sec as u64) + Duration::from_nanos(nsec as u64);
                    Some(
                        Instant::now()
                            .checked_add(d)
                            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 32)),
                    )
                } else {
                    None
                };
                let r = self.ipc_blocking(
                    caller,
                    stop,
                    deadline,
                    |ipc| ipc.has_set(id),
                    |ipc| ipc.try_semop(caller, id, &ops),
                    |ipc, add| ipc.semop_waiting(id, &ops, add),
                );
                Ok(r.unwrap_or_else(|e| -i64::from(e)))
            }
            n if n == nr::semctl => {
                let cmd = (a[2] as i32) & !0x100; // IPC_64
                let reads = lock(&self.ipc).semctl_reads(id, cmd);
                let input = if reads > 0 {
                    match mem.read(a[3], reads) {
                        Ok(b) => b,
                        Err(_) => return err(libc::EFAULT),
                    }
                } else {
                    Vec::new()
                };
                let (r, out) = lock(&self.ipc).semctl(caller, id, a[1] as i32, cmd, a[3], &input);
                self.ipc_changed.notify_all();
                if r >= 0 && !out.is_empty() && mem.write(a[3], &out).is_err() {
                    return err(libc::EFAULT);
                }
                Ok(r)
            }
            n if n == nr::msgsnd => {
                let size = a[2];
                if size > crate::sysv::MSGMAX as u64 {
                    return err(libc::EINVAL);
                }
                let Ok(m) = mem.read(a[1], 8 + size as usize) else { return err(libc::EFAULT) };
                let mtype = i64::from_le_bytes(m[0..8].try_into().unwrap_or([0; 8]));
                let flags = a[3] as u32;
                let r = self.ipc_blocking(
                    caller,
                    stop,
                    None,
                    |ipc| ipc.has_queue(id),
                    |ipc| ipc.try_msgsnd(caller, id, mtype, &m[8..], flags),
                    |_, _| {},
                );
                Ok(r.unwrap_or_else(|e| -i64::from(e)))
            }
            n if n == nr::msgrcv => {
                if (a[2] as i64) < 0 {
                    return err(libc::EINVAL);
                }
                let size = (a[2] as usize).min(crate::sysv::MSGMAX);
                let (typ, flags) = (a[3] as i64, a[4] as u32);
                let r = self.ipc_blocking(
                    caller,
                    stop,
                    None,
                    |ipc| ipc.has_queue(id),
                    |ipc| match ipc.try_msgrcv(caller, id, size, typ, flags) {
                        Step::Done(Err(e)) => Step::Done(Err(e)),
                        other => other,
                    },
                    |_, _| {},
                );
                match r {
                    Err(e) | Ok(Err(e)) => err(e),
                    Ok(Ok((t, text))) => {
                        let mut out = t.to_le_bytes().to_vec();
                        out.extend_from_slice(&text);
                        if mem.write(a[1], &out).is_err() {
                            return err(libc::EFAULT);
                        }
                        Ok(text.len() as i64)
                    }
                }
            }
            n if n == nr::msgctl => {
                let cmd = (a[1] as i32) & !0x100;
                let input = if cmd == crate::sysv::IPC_SET {
                    match mem.read(a[2], crate::sysv::MSQID_DS) {
                        Ok(b) => b,
                        Err(_) => return err(libc::EFAULT),
                    }
                } else {
                    Vec::new()
                };
                let (r, out) = lock(&self.ipc).msgctl(id, cmd, &input);
                self.ipc_changed.notify_all();
                if r >= 0 && !out.is_empty() && mem.write(a[2], &out).is_err() {
                    return err(libc::EFAULT);
                }
                Ok(r)
            }
            n if matches!(n, nr::shmget | nr::shmat | nr::shmdt | nr::shmctl) => {
                self.shm(mem, caller, n, a, gid)
            }
            _ => err(libc::ENOSYS),
        }
    }

    /// `shmget`, `shmat`, `shmdt`, `shmctl` of `caller` on the tree's
    /// window (`ENOSYS` without one). `shmat` answers the segment's window
    /// address, which the caller's libos then maps (process backend:
    /// natively, `SHARED_FD`); `shmdt` answers the bytes the libos unmaps
    /// there (the libos answers the program 0). Nothing a process says
    /// reaches beyond the window: the window range of a segment comes from
    /// the table, never from the program.
    fn shm(&self, mem: &GuestMemory, caller: u32, n: u64, a: &[u64; 6], gid: u32) -> Result<i64, Violation> {
        let err = |e: i32| Ok(-i64::from(e));
        let Some(w) = &self.window else { return err(libc::ENOSYS) };
        let id = a[0] as i32;
        match n {
            n if n == nr::shmget => {
                Ok(lock(&self.shm).shmget(a[0] as i32, a[1], a[2] as u32, caller, self.uid, gid))
            }
            n if n == nr::shmat => match lock(&self.shm).shmat(caller, id, a[1], a[2] as u32, w.start()) {
                Ok(at) => Ok((w.start() + at.off) as i64),
                Err(e) => err(e),
            },
            n if n == nr::shmdt => {
                let Some(off) = a[0].checked_sub(w.start()).filter(|&o| o < w.len()) else {
                    return err(libc::EINVAL);
                };
                let r = lock(&self.shm).shmdt(caller, off);
                match r {
                    Ok((len, freed)) => {
                        if let Some((o, l)) = freed {
                            w.release(o, l);
                        }
                        Ok(len as i64)
                    }
                    Err(e) => err(e),
                }
            }
            _ => {
                let cmd = (a[1] as i32) & !0x100; // IPC_64
                let input = if cmd == crate::shm::IPC_SET {
                    match mem.read(a[2], 48) {
                        Ok(b) => b,
                        Err(_) => return err(libc::EFAULT),
                    }
                } else {
                    Vec::new()
                };
                let (r, out, freed) = lock(&self.shm).shmctl(id, cmd, &input);
                if let Some((o, l)) = freed {
                    w.release(o, l);
                }
                if r >= 0 && !out.is_empty() && mem.write(a[2], &out).is_err() {
                    return err(libc::EFAULT);
                }
                Ok(r)
            }
        }
    }
}

/// The System V calls the tree serves ([`Tree::sysv`]; the ring worker
/// hands them over outside the service table): semaphores, message queues
/// and shared memory.
pub const SYSV_CALLS: [u64; 12] = [
    nr::semget,
    nr::semop,
    nr::semtimedop,
    nr::semctl,
    nr::msgget,
    nr::msgsnd,
    nr::msgrcv,
    nr::msgctl,
    nr::shmget,
    nr::shmat,
    nr::shmdt,
    nr::shmctl,
];

/// Whether call `nr` is one of [`SYSV_CALLS`].
pub fn serves(nr: u64) -> bool {
    SYSV_CALLS.contains(&nr)
}

/// The stop signals (`SIGSTOP`, `SIGTSTP`, `SIGTTIN`, `SIGTTOU`), one bit
/// each (bit `n - 1` for signal `n`).
pub const STOP_SIGNALS: u64 =
    1 << (libc::SIGSTOP - 1) | 1 << (libc::SIGTSTP - 1) | 1 << (libc::SIGTTIN - 1) | 1 << (libc::SIGTTOU - 1);

/// Whether `sig` is a stop signal.
pub fn is_stop_signal(sig: u64) -> bool {
    (1..=64).contains(&sig) && STOP_SIGNALS & 1 << (sig - 1) != 0
}

/// A pid argument (`getpgid`, `getsid`): a negative one names no process.
fn pid_arg(a: u64) -> Result<u32, i32> {
    let p = a as i32;
    if p < 0 {
        Err(libc::ESRCH)
    } else {
        Ok(p as u32)
    }
}

/// `sizeof(struct rusage)` on x86-64.
const RUSAGE_SIZE: usize = 144;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    /// `wait4`'s pid argument (resolved against the caller's group).
    Wait4(i32),
    Select(Select),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Wait4 { status: u64, rusage: u64 },
    Waitid { info: u64, rusage: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WaitReq {
    which: Which,
    want: Want,
    nohang: bool,
    nowait: bool,
    out: Out,
}

const WNOHANG: u64 = 1;
const WUNTRACED: u64 = 2;
const WEXITED: u64 = 4;
const WCONTINUED: u64 = 8;
const WNOWAIT: u64 = 0x0100_0000;
const WNOTHREAD: u64 = 0x2000_0000;
const WALL: u64 = 0x4000_0000;
const WCLONE: u64 = 0x8000_0000;
const P_ALL: u64 = 0;
const P_PID: u64 = 1;
const P_PGID: u64 = 2;

/// The checked arguments of a wait; `Err(errno)` as Linux answers them.
/// `wait4` always takes ends, stops with `WUNTRACED`, continues with
/// `WCONTINUED`; `waitid` takes what `WEXITED`, `WSTOPPED` (the same bit
/// as `WUNTRACED`) and `WCONTINUED` ask for, at least one.
fn parse_wait(nr_: u64, a: &[u64; 6]) -> Result<WaitReq, i32> {
    if nr_ == nr::wait4 {
        let options = a[2] & 0xffff_ffff;
        if options & !(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE) != 0 {
            return Err(libc::EINVAL);
        }
        return Ok(WaitReq {
            which: Which::Wait4(a[0] as i32),
            want: Want {
                exited: true,
                stopped: options & WUNTRACED != 0,
                continued: options & WCONTINUED != 0,
            },
            nohang: options & WNOHANG != 0,
            nowait: false,
            out: Out::Wait4 { status: a[1], rusage: a[3] },
        });
    }
    let options = a[3] & 0xffff_ffff;
    if options & !(WNOHANG | WUNTRACED | WEXITED | WCONTINUED | WNOWAIT | WNOTHREAD | WALL | WCLONE) != 0
        || options & (WEXITED | WUNTRACED | WCONTINUED) == 0
    {
        return Err(libc::EINVAL);
    }
    let id = a[1] as u32;
    let which = match a[0] & 0xffff_ffff {
        P_ALL => Which::Select(Select::Any),
        P_PID if (id as i32) > 0 => Which::Select(Select::Pid(id)),
        // The caller's own group (Linux 5.4).
        P_PGID if id == 0 => Which::Wait4(0),
        P_PGID if (id as i32) > 0 => Which::Select(Select::Group(id)),
        _ => return Err(libc::EINVAL),
    };
    Ok(WaitReq {
        which,
        want: Want {
            exited: options & WEXITED != 0,
            stopped: options & WUNTRACED != 0,
            continued: options & WCONTINUED != 0,
        },
        nohang: options & WNOHANG != 0,
        nowait: options & WNOWAIT != 0,
        out: Out::Waitid { info: a[2], rusage: a[4] },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_arguments_as_linux_checks_them() {
        let w = parse_wait(nr::wait4, &[u64::MAX, 0x1000, 1, 0, 0, 0]).expect("valid");
        assert_eq!((w.which, w.nohang), (Which::Wait4(-1), true));
        assert_eq!(parse_wait(nr::wait4, &[1, 0, 0x10, 0, 0, 0]), Err(libc::EINVAL));
        let w = parse_wait(nr::waitid, &[P_PID, 7, 0, WEXITED | WNOWAIT, 0, 0]).expect("valid");
        assert_eq!((w.which, w.nowait), (Which::Select(Select::Pid(7)), true));
        assert_eq!(parse_wait(nr::waitid, &[P_PID, 0, 0, WEXITED, 0, 0]), Err(libc::EINVAL));
        assert_eq!(parse_wait(nr::waitid, &[P_ALL, 0, 0, 0, 0, 0]), Err(libc::EINVAL), "no event asked");
        let w = parse_wait(nr::waitid, &[P_ALL, 0, 0, WUNTRACED | WNOHANG, 0, 0]).expect("valid");
        assert_eq!(w.want, Want { exited: false, stopped: true, continued: false }, "WSTOPPED only");
        let w = parse_wait(nr::wait4, &[u64::MAX, 0, WUNTRACED | WCONTINUED, 0, 0, 0]).expect("valid");
        assert_eq!(w.want, Want { exited: true, stopped: true, continued: true });
        assert_eq!(parse_wait(nr::wait4, &[u64::MAX, 0, 0, 0, 0, 0]).map(|w| w.want), Ok(Want::EXITED));
        assert_eq!(parse_wait(nr::waitid, &[9, 0, 0, WEXITED, 0, 0]), Err(libc::EINVAL), "P_PIDFD not yet");
        let w = parse_wait(nr::waitid, &[P_PGID, 0, 0, WEXITED, 0, 0]).expect("valid");
        assert_eq!(w.which, Which::Wait4(0), "the caller's own group");
    }
}
