//! The time limits every backend enforces the same way: `[limits]
//! wall-time` (a [`Watchdog`]) and `cpu-time` (a [`CpuWatch`] on the
//! program's CPU clock). The backend says how to read that clock and how to
//! stop the program; [`TimeLimits::finish`] says which limit, if any, ended
//! the run, in the words of a [`LimitHit`] record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::limits::{CpuWatch, Watchdog};
use super::Limits;
use crate::trace::{LimitHit, LimitKind};

/// How often the CPU clock is read.
const CPU_POLL: Duration = Duration::from_millis(20);

/// The running wall-time and CPU-time watches of one run.
pub struct TimeLimits {
    wall: Option<(Duration, Watchdog)>,
    cpu: Option<(Duration, CpuWatch)>,
    cpu_used: Arc<dyn Fn() -> Option<Duration> + Send + Sync>,
    t0: Instant,
}

impl std::fmt::Debug for TimeLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeLimits").field("wall", &self.wall).field("cpu", &self.cpu).finish_non_exhaustive()
    }
}

impl TimeLimits {
    /// Starts the watches `limits` asks for (none: nothing runs). `t0`: when
    /// the program started. `cpu_used` reads the program's CPU time; `stop`
    /// stops the program (called at most once per watch, from its thread).
    pub fn start(
        limits: &Limits,
        t0: Instant,
        cpu_used: impl Fn() -> Option<Duration> + Send + Sync + 'static,
        stop: impl Fn() + Send + Sync + 'static,
    ) -> TimeLimits {
        let stop = Arc::new(stop);
        let cpu_used: Arc<dyn Fn() -> Option<Duration> + Send + Sync> = Arc::new(cpu_used);
        let wall = limits.wall_time.map(|max| {
            let stop = stop.clone();
            (max, Watchdog::start(max.saturating_sub(t0.elapsed()), move || stop()))
        });
        let cpu = limits.cpu_time.map(|max| {
            let used = cpu_used.clone();
            (max, CpuWatch::start(max, CPU_POLL, move || used(), move |_| stop()))
        });
        TimeLimits { wall, cpu, cpu_used, t0 }
    }

    /// Stops the watches; the limit that stopped the program, if one did.
    pub fn finish(self) -> Option<LimitHit> {
        let wall = self.wall.map(|(max, w)| (max, w.cancel()));
        let cpu = self.cpu.map(|(max, c)| (max, c.fired()));
        let (limit, max, used) = match (cpu, wall) {
            (Some((max, true)), _) => (LimitKind::CpuTime, max, (self.cpu_used)().unwrap_or(max)),
            (_, Some((max, true))) => (LimitKind::WallTime, max, self.t0.elapsed()),
            _ => return None,
        };
        Some(LimitHit {
            time_ns: self.t0.elapsed().as_nanos() as u64,
            limit,
            value: used.as_nanos() as u64,
            max: max.as_nanos() as u64,
            action: "stopped the program".into(),
        })
    }
}

/// The CPU clock of the calling thread (the KVM backend's vCPU thread, whose
/// CPU time includes the guest's), as a reader usable from another thread
/// while the calling thread lives.
pub fn this_thread_cpu_clock() -> Option<impl Fn() -> Option<Duration> + Send + Sync + 'static> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: pthread_self is always valid; writes one clockid_t into a local.
    if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } != 0 {
        return None;
    }
    Some(move || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: writes one timespec into a local; a clock of a thread that
        // has ended gives an error, not undefined behaviour.
        (unsafe { libc::clock_gettime(clock, &mut ts) } == 0)
            .then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn no_limits_never_fire() {
        let t = TimeLimits::start(&Limits::default(), Instant::now(), || Some(Duration::ZERO), || {});
        assert!(t.finish().is_none());
    }

    #[test]
    fn wall_and_cpu_limits_stop_once_and_say_which() {
        let stops = Arc::new(AtomicU32::new(0));
        let s = stops.clone();
        let limits = Limits { wall_time: Some(Duration::from_millis(30)), ..Limits::default() };
        let t = TimeLimits::start(
            &limits,
            Instant::now(),
            || None,
            move || {
                s.fetch_add(1, Ordering::SeqCst);
            },
        );
        std::thread::sleep(Duration::from_millis(200));
        let hit = t.finish().expect("wall time fired");
        assert_eq!((hit.limit, stops.load(Ordering::SeqCst)), (LimitKind::WallTime, 1));

        let s = stops.clone();
        let limits = Limits { cpu_time: Some(Duration::from_secs(1)), ..Limits::default() };
        let t = TimeLimits::start(
            &limits,
            Instant::now(),
            || Some(Duration::from_secs(2)),
            move || {
                s.fetch_add(1, Ordering::SeqCst);
            },
        );
        std::thread::sleep(Duration::from_millis(200));
        let hit = t.finish().expect("cpu time fired");
        assert_eq!(
            (hit.limit, hit.value, stops.load(Ordering::SeqCst)),
            (LimitKind::CpuTime, 2_000_000_000, 2)
        );
    }
}
