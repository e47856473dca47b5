//! Where the program and the ring worker run: on different CPUs.
//!
//! A forwarded call is a round trip between the program's CPU and the
//! worker's, and the worker spins between calls, so the two must never share
//! a CPU. The scheduler does not know that: when one side wakes the other
//! from `futex`, it likes to put the wakee on the waker's CPU, and the two
//! then take turns on one CPU while the other idles, until load balancing
//! separates them milliseconds later. On this project's 2-vCPU test machine
//! that made `busybox sha256sum` of 100 MB take 530-575 ms in about a quarter
//! of runs instead of 477-500 ms.
//!
//! So by default ([`CpuPlacement::Split`]) the worker gets one CPU of the
//! monitor's allowed set and the program (its process, or the vCPU thread)
//! the others. The worker's CPU is picked by the monitor's pid, so that
//! several confined programs started at once spread their workers over the
//! machine instead of piling them onto one CPU. With fewer than two allowed
//! CPUs nothing is pinned.
//!
//! That is right for an idle machine only. When other work wants the CPUs,
//! the worker's spin takes CPU time from it (a spinning worker doubles the
//! run's CPU time: `busybox sha256sum` of 100 MB used 1.05-1.12 s of CPU for
//! 0.56 s of wall time), the load balancer then sees the worker's CPU full
//! and moves the other work onto the program's one CPU, and a pinned program
//! cannot move away from it: under two CPU hogs the same run took 1.20-1.38 s
//! against 0.76-0.90 s natively. [`CpuPlacement::Auto`] (`--cpus auto`,
//! opt-in) splits only when the machine is idle at the start ([`busy`]),
//! and otherwise pins nothing and has the worker spin briefly only
//! ([`crate::ring::THREAD_SPIN`], the libos not at all): 0.98-1.07 s under
//! the same two hogs; its worker also drops to the brief spin for the rest
//! of the run as soon as it is preempted while spinning. It is not the
//! default because the brief spins cost programs that make calls back to
//! back: under `--load 2` a call with no gap took 27-47 µs instead of
//! 0.8-1.0 µs (docs/performance.md, "A busy machine").

use std::mem::size_of;

/// How the program and the worker are placed on CPUs (`cabinc run --cpus`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuPlacement {
    /// [`CpuPlacement::Split`] on an idle machine; on a busy one ([`busy`],
    /// looked at once, at the start) nothing pinned and brief spins only.
    Auto,
    /// Worker on one CPU, program on the rest (when at least two are allowed).
    #[default]
    Split,
    /// Leave it to the scheduler (and spin briefly only).
    Shared,
}

/// Whether other work wants the CPUs this process may use: the machine's
/// runnable tasks (the `running` count of `/proc/loadavg`, this thread
/// included) leave fewer than two of the allowed CPUs for the program and its
/// worker, at each of three samples 100 µs apart (one quiet sample is enough
/// to call the machine idle, so an idle start costs one read of a small
/// file). `false` when it cannot be read.
pub fn busy() -> bool {
    let Some(cpus) = CpuSet::current().map(|s| s.cpus().len()) else { return false };
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        let Some(running) = std::fs::read_to_string("/proc/loadavg").ok().as_deref().and_then(runnable)
        else {
            return false;
        };
        if !others_leave_too_little(running.saturating_sub(1), cpus) {
            return false;
        }
    }
    true
}

/// The runnable count of a `/proc/loadavg` line (`0.50 0.40 0.30 3/412 9999`).
fn runnable(loadavg: &str) -> Option<usize> {
    loadavg.split_whitespace().nth(3)?.split('/').next()?.parse().ok()
}

/// With `others` runnable tasks besides ours, are fewer than two of `cpus`
/// left for the program and its worker?
fn others_leave_too_little(others: usize, cpus: usize) -> bool {
    cpus < others + 2
}

/// A set of CPUs (the kernel's `cpu_set_t`).
#[derive(Clone, Copy)]
pub struct CpuSet(libc::cpu_set_t);

impl std::fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.cpus()).finish()
    }
}

impl CpuSet {
    fn empty() -> CpuSet {
        // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
        CpuSet(unsafe { std::mem::zeroed() })
    }

    /// The CPUs the calling thread may run on.
    pub fn current() -> Option<CpuSet> {
        let mut s = CpuSet::empty();
        // SAFETY: writes at most size_of::<cpu_set_t>() bytes into `s`.
        let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut s.0) };
        (r == 0).then_some(s)
    }

    /// The CPU numbers in the set, in order.
    pub fn cpus(&self) -> Vec<usize> {
        // SAFETY: CPU_ISSET reads one bit of the set; i < CPU_SETSIZE.
        (0..libc::CPU_SETSIZE as usize).filter(|&i| unsafe { libc::CPU_ISSET(i, &self.0) }).collect()
    }

    fn of(cpus: &[usize]) -> CpuSet {
        let mut s = CpuSet::empty();
        for &c in cpus {
            // SAFETY: CPU_SET writes one bit; c < CPU_SETSIZE (it came from `cpus`).
            unsafe { libc::CPU_SET(c, &mut s.0) };
        }
        s
    }

    /// Restricts thread or process `tid` (0: the calling thread) to this
    /// set. Best effort: a failure leaves the placement to the scheduler.
    /// Async-signal-safe (one system call), so the forked child may use it.
    pub fn apply(&self, tid: libc::pid_t) -> bool {
        // SAFETY: reads size_of::<cpu_set_t>() bytes from `self`.
        unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &self.0) == 0 }
    }
}

/// How long the libos may spin for a completion when the worker has a CPU
/// of its own (`cabin_abi::boot::BootInfo::spin_ns`). Long enough to cover a
/// call the monitor serves from the page cache (a 4 KiB read, a `stat`, an
/// `open`: 1-5 µs) with room to spare; a call that really blocks (a pipe
/// read, a sleep) then costs at most this much CPU before the libos sleeps.
pub const SPIN_NS: u64 = 50_000;

/// The libos's spin budget for a run placed as `p` (0: a short spin only,
/// since the worker may need the CPU the program would spin on).
pub fn spin_ns(p: Option<&Placement>) -> u64 {
    if p.is_some() {
        SPIN_NS
    } else {
        0
    }
}

/// Where one run puts its two sides.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    /// The CPUs the program runs on.
    pub program: CpuSet,
    /// The CPU the ring worker runs on.
    pub worker: CpuSet,
    /// The calling thread's set before the run (restored by [`Placement::restore`]).
    original: CpuSet,
}

impl Placement {
    /// The split for this run, or `None` when `how` is `Shared` or fewer
    /// than two CPUs are allowed.
    pub fn choose(how: CpuPlacement) -> Option<Placement> {
        if how == CpuPlacement::Shared || (how == CpuPlacement::Auto && busy()) {
            return None;
        }
        let original = CpuSet::current()?;
        let cpus = original.cpus();
        if cpus.len() < 2 {
            return None;
        }
        let worker = cpus[std::process::id() as usize % cpus.len()];
        let program: Vec<usize> = cpus.iter().copied().filter(|&c| c != worker).collect();
        Some(Placement { program: CpuSet::of(&program), worker: CpuSet::of(&[worker]), original })
    }

    /// Every CPU of the run (the calling thread's set before the run).
    pub fn all(&self) -> CpuSet {
        self.original
    }

    /// Puts back the calling thread's set from before the run.
    pub fn restore(&self) {
        self.original.apply(0);
    }

    /// For `--stats`: `{"program": [..], "worker": [..]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "program": self.program.cpus(), "worker": self.worker.cpus() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_disjoint_and_covers_the_allowed_set() {
        let Some(all) = CpuSet::current() else { return };
        match Placement::choose(CpuPlacement::Split) {
            None => assert!(all.cpus().len() < 2, "{all:?}"),
            Some(p) => {
                let (prog, work) = (p.program.cpus(), p.worker.cpus());
                assert_eq!(work.len(), 1);
                assert!(!prog.contains(&work[0]), "{p:?}");
                let mut both = [prog, work].concat();
                both.sort_unstable();
                assert_eq!(both, all.cpus());
            }
        }
        assert!(Placement::choose(CpuPlacement::Shared).is_none());
    }

    #[test]
    fn busy_reads_the_runnable_count_and_compares_it_with_the_cpus() {
        assert_eq!(runnable("0.50 0.40 0.30 3/412 9999\n"), Some(3));
        assert_eq!(runnable("garbage"), None);
        assert_eq!(runnable("1 2 3 x/4 5"), None);
        // Two CPUs: any other runnable task leaves less than both.
        assert!(!others_leave_too_little(0, 2));
        assert!(others_leave_too_little(1, 2));
        // Eight CPUs: six others still leave two.
        assert!(!others_leave_too_little(6, 8));
        assert!(others_leave_too_little(7, 8));
        // One CPU is never split anyway.
        assert!(others_leave_too_little(0, 1));
    }

    #[test]
    fn apply_and_restore_round_trip() {
        let Some(before) = CpuSet::current() else { return };
        let Some(p) = Placement::choose(CpuPlacement::Split) else { return };
        // On a thread of its own, so the test harness's thread keeps its set.
        std::thread::spawn(move || {
            assert!(p.worker.apply(0));
            assert_eq!(CpuSet::current().map(|s| s.cpus()), Some(p.worker.cpus()));
            p.restore();
            assert_eq!(CpuSet::current().map(|s| s.cpus()), Some(before.cpus()));
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
    }
}
