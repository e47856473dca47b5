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

use std::mem::size_of;

/// How the program and the worker are placed on CPUs (`cabinc run --cpus`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpuPlacement {
    /// Worker on one CPU, program on the rest (when at least two are allowed).
    #[default]
    Split,
    /// Leave it to the scheduler.
    Shared,
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
        if how == CpuPlacement::Shared {
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
