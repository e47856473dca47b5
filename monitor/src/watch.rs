//! The time limits every backend enforces the same way: `[limits]
//! wall-time` (a [`Watchdog`]) and `cpu-time` (a [`CpuWatch`] on the
//! program's CPU clock plus the [`ThreadClocks`] of the monitor threads
//! that serve it). The backend says how to read that clock and how to
//! stop the program; [`TimeLimits::finish`] says which limit, if any, ended
//! the run, in the words of a [`LimitHit`] record.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cabin_policy::trace::{LimitHit, LimitKind};
use cabin_policy::Limits;

/// How often the CPU clock is read.
const CPU_POLL: Duration = Duration::from_millis(20);

/// The running wall-time and CPU-time watches of one run.
pub struct TimeLimits {
    wall: Option<(Duration, Watchdog)>,
    cpu: Option<(Duration, CpuWatch)>,
    cpu_used: Arc<dyn Fn() -> Option<Duration> + Send + Sync>,
    /// The CPU time the watch saw when it stopped the program (ns).
    cpu_at_stop: Arc<AtomicU64>,
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
        let cpu_at_stop = Arc::new(AtomicU64::new(0));
        let cpu = limits.cpu_time.map(|max| {
            let used = cpu_used.clone();
            let at = cpu_at_stop.clone();
            let on_expire = move |u: Duration| {
                at.store(u.as_nanos() as u64, Ordering::SeqCst);
                stop()
            };
            (max, CpuWatch::start(max, CPU_POLL, move || used(), on_expire))
        });
        TimeLimits { wall, cpu, cpu_used, cpu_at_stop, t0 }
    }

    /// Stops the watches; the limit that stopped the program, if one did.
    pub fn finish(self) -> Option<LimitHit> {
        let wall = self.wall.map(|(max, w)| (max, w.cancel()));
        let cpu = self.cpu.map(|(max, c)| (max, c.fired()));
        let (limit, max, used) = match (cpu, wall) {
            (Some((max, true)), _) => {
                // The clocks now (the program may be gone), or what the watch saw.
                let seen = Duration::from_nanos(self.cpu_at_stop.load(Ordering::SeqCst));
                (LimitKind::CpuTime, max, (self.cpu_used)().unwrap_or(seen).max(seen))
            }
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

/// The CPU clocks of the monitor threads that run or serve the program,
/// summed: the ring worker (all of its time: serving calls, and polling
/// for the next one, up to [`crate::ring::SPIN`] after each), and on KVM
/// the vCPU thread (guest time included). `[limits] cpu-time` adds them to
/// the program's own clock, so work the program hands to the monitor (a
/// 64 MiB read from /dev/zero) counts as its own. Read while a call is being
/// served, a clock includes the call so far.
#[derive(Debug, Clone, Default)]
pub struct ThreadClocks(Arc<Mutex<Clocks>>);

/// The threads' clocks; the time of threads that left is folded into
/// `retired` when their entry is reused (a program that starts and ends
/// threads in a loop keeps at most as many entries as it has at once).
#[derive(Debug, Default)]
struct Clocks {
    v: Vec<ThreadClock>,
    retired: Duration,
    /// The part of `retired` that program threads (vCPUs) used.
    retired_program: Duration,
}

#[derive(Debug)]
struct ThreadClock {
    clock: libc::clockid_t,
    /// The program thread slot this thread runs (a vCPU thread: its CPU
    /// time is the program's own, what `clock()` and `getrusage` report);
    /// `None` for the monitor's own threads (ring workers).
    program_slot: Option<usize>,
    /// The clock when the thread joined.
    start: Duration,
    /// Time counted so far (final once the thread left).
    used: Duration,
    left: bool,
}

/// Counts the calling thread in its [`ThreadClocks`] until dropped (on that
/// thread: a clock id is a thread id, which another thread may get later).
#[derive(Debug)]
#[must_use]
pub struct ClockGuard {
    clocks: ThreadClocks,
    index: usize,
}

fn read_clock(clock: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec into a local.
    (unsafe { libc::clock_gettime(clock, &mut ts) } == 0)
        .then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

impl ThreadClocks {
    /// Counts the calling thread's CPU time from now until the guard drops.
    pub fn join_this_thread(&self) -> ClockGuard {
        self.join(None)
    }

    /// As [`ThreadClocks::join_this_thread`], for the thread that runs
    /// program thread slot `slot` (a vCPU thread): its time is also the
    /// program's own ([`ThreadClocks::program_used`]).
    pub fn join_as_program_thread(&self, slot: usize) -> ClockGuard {
        self.join(Some(slot))
    }

    fn join(&self, program_slot: Option<usize>) -> ClockGuard {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: pthread_self is always valid; writes one clockid_t into a local.
        let ok = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } == 0;
        let start = if ok { read_clock(clock) } else { None };
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = ThreadClock {
            clock,
            program_slot,
            start: start.unwrap_or_default(),
            used: Duration::ZERO,
            left: start.is_none(),
        };
        let index = match c.v.iter().position(|t| t.left) {
            Some(i) => {
                let done = c.v[i].used;
                c.retired += done;
                if c.v[i].program_slot.is_some() {
                    c.retired_program += done;
                }
                c.v[i] = entry;
                i
            }
            None => {
                c.v.push(entry);
                c.v.len() - 1
            }
        };
        ClockGuard { clocks: self.clone(), index }
    }

    /// The CPU time of the threads, each from when it joined.
    pub fn used(&self) -> Duration {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let retired = c.retired;
        let live: Duration =
            c.v.iter_mut()
                .map(|c| {
                    if !c.left {
                        if let Some(now) = read_clock(c.clock) {
                            c.used = now.saturating_sub(c.start);
                        }
                    }
                    c.used
                })
                .sum();
        retired + live
    }

    /// The CPU time of the program's own threads (those that joined with
    /// [`ThreadClocks::join_as_program_thread`]), ended ones included:
    /// what the program's `CLOCK_PROCESS_CPUTIME_ID` reads.
    pub fn program_used(&self) -> Duration {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let retired = c.retired_program;
        let live: Duration =
            c.v.iter_mut().filter(|t| t.program_slot.is_some()).map(ThreadClock::update).sum();
        retired + live
    }

    /// The CPU time of the live thread running program slot `slot`: what
    /// that thread's `CLOCK_THREAD_CPUTIME_ID` reads.
    pub fn program_thread_used(&self, slot: usize) -> Option<Duration> {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        c.v.iter_mut().find(|t| !t.left && t.program_slot == Some(slot)).map(ThreadClock::update)
    }
}

impl ThreadClock {
    /// Reads a live thread's clock into `used`; returns `used`.
    fn update(&mut self) -> Duration {
        if !self.left {
            if let Some(now) = read_clock(self.clock) {
                self.used = now.saturating_sub(self.start);
            }
        }
        self.used
    }
}

thread_local! {
    /// The program thread slot whose calls this monitor thread serves (a
    /// ring worker's slot, or a vCPU thread's own).
    static SERVING_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Says that the calling thread serves the calls of program thread slot
/// `slot` (see [`serving_slot`]).
pub fn set_serving_slot(slot: usize) {
    SERVING_SLOT.with(|s| s.set(slot));
}

/// The program thread slot whose calls the calling thread serves (0 unless
/// [`set_serving_slot`] said otherwise).
pub fn serving_slot() -> usize {
    SERVING_SLOT.with(|s| s.get())
}

impl Drop for ClockGuard {
    fn drop(&mut self) {
        let mut c = self.clocks.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = c.v.get_mut(self.index) {
            if let Some(now) = read_clock(c.clock) {
                c.used = now.saturating_sub(c.start);
            }
            c.left = true;
        }
    }
}

/// The CPU time one image of a process has used so far (the process
/// backend: its host process's clock, every thread of it; the final figure
/// once it ended and was reaped).
pub trait CpuMeter: Send + Sync + std::fmt::Debug {
    /// CPU time used so far (final once the image ended).
    fn used(&self) -> Duration;
}

/// The CPU time of the whole confined tree, for `[limits] cpu-time`
/// (docs/policy.md): every process, every image an `execve` replaced,
/// every thread, and the monitor threads that serve them. Each process
/// adds its [`ThreadClocks`] (its ring workers; on KVM its vCPU threads
/// too) and each image its [`CpuMeter`] (process backend) as it starts;
/// the ledger sums them. A meter nobody else holds any more (the image
/// ended and its domain is gone, the process's threads all left) has its
/// final figure folded into one sum, so the ledger holds at most the
/// live processes' meters however many processes the run makes.
#[derive(Debug, Clone, Default)]
pub struct TreeCpu(Arc<Mutex<Ledger>>);

#[derive(Debug, Default)]
struct Ledger {
    live: Vec<Counted>,
    /// The final CPU time of the meters that were folded.
    ended: Duration,
}

#[derive(Debug)]
enum Counted {
    Image(Arc<dyn CpuMeter>),
    Threads(ThreadClocks),
}

impl Counted {
    fn used(&self) -> Duration {
        match self {
            Counted::Image(m) => m.used(),
            Counted::Threads(t) => t.used(),
        }
    }

    /// Nobody but the ledger holds it: its figure cannot change any more.
    fn finished(&self) -> bool {
        match self {
            Counted::Image(m) => Arc::strong_count(m) == 1,
            Counted::Threads(t) => Arc::strong_count(&t.0) == 1,
        }
    }
}

impl Ledger {
    fn sweep(&mut self) {
        let mut ended = Duration::ZERO;
        self.live.retain(|c| {
            let done = c.finished();
            if done {
                ended += c.used();
            }
            !done
        });
        self.ended += ended;
    }
}

impl TreeCpu {
    /// Counts an image's CPU time from now on (and after it ended).
    pub fn add_image(&self, meter: Arc<dyn CpuMeter>) {
        let mut l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        l.sweep();
        l.live.push(Counted::Image(meter));
    }

    /// Counts a process's threads' CPU time (as [`ThreadClocks::used`]).
    pub fn add_threads(&self, clocks: &ThreadClocks) {
        let mut l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        l.sweep();
        l.live.push(Counted::Threads(clocks.clone()));
    }

    /// The tree's CPU time so far. Each meter is read once, in the order it
    /// was added; an image that ends while this reads is counted by its
    /// live clock or by its final figure, never both (the process backend
    /// clears the live pid and stores the final figure under one lock).
    pub fn used(&self) -> Duration {
        let mut l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        l.sweep();
        l.ended + l.live.iter().map(Counted::used).sum::<Duration>()
    }

    /// How many meters are live (not yet folded).
    pub fn live(&self) -> usize {
        let mut l = self.0.lock().unwrap_or_else(|e| e.into_inner());
        l.sweep();
        l.live.len()
    }
}

/// Calls a function once a wall-clock duration has passed, unless cancelled
/// first (dropping the watchdog cancels it). Backends use it for
/// `[limits] wall-time`: the function stops the program.
#[derive(Debug)]
pub struct Watchdog {
    state: Arc<(Mutex<bool>, Condvar)>,
    fired: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the clock.
    pub fn start(after: Duration, on_expire: impl FnOnce() + Send + 'static) -> Watchdog {
        let state = Arc::new((Mutex::new(false), Condvar::new()));
        let fired = Arc::new(AtomicBool::new(false));
        let (s, f) = (state.clone(), fired.clone());
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*s;
            let Ok(guard) = lock.lock() else { return };
            let Ok((cancelled, _)) = cv.wait_timeout_while(guard, after, |c| !*c) else { return };
            if !*cancelled {
                f.store(true, Ordering::SeqCst);
                drop(cancelled);
                on_expire();
            }
        });
        Watchdog { state, fired, thread: Some(thread) }
    }

    /// Whether the time ran out (and the function was called).
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Stops the clock; returns whether it had already fired.
    pub fn cancel(mut self) -> bool {
        self.stop();
        self.fired()
    }

    fn stop(&mut self) {
        let (lock, cv) = &*self.state;
        if let Ok(mut c) = lock.lock() {
            *c = true;
        }
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU time used so far by process `pid` (all its threads), from its CPU
/// clock; `None` when the process is gone or the clock cannot be read.
pub fn process_cpu_time(pid: i32) -> Option<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: writes one clockid_t into a local.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec into a local.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Polls `used` every `every` and calls `on_expire` once it reaches `max`
/// (for `[limits] cpu-time`: `used` reads the program's CPU clock, see
/// [`process_cpu_time`]). Stops when dropped, or when `used` returns `None`.
#[derive(Debug)]
pub struct CpuWatch {
    stop: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CpuWatch {
    /// Starts polling.
    pub fn start(
        max: Duration,
        every: Duration,
        mut used: impl FnMut() -> Option<Duration> + Send + 'static,
        on_expire: impl FnOnce(Duration) + Send + 'static,
    ) -> CpuWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let (s, f) = (stop.clone(), fired.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match used() {
                    None => return,
                    Some(u) if u >= max => {
                        f.store(true, Ordering::SeqCst);
                        on_expire(u);
                        return;
                    }
                    Some(_) => std::thread::park_timeout(every),
                }
            }
        });
        CpuWatch { stop, fired, thread: Some(thread) }
    }

    /// Whether the limit was reached (and the function called).
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for CpuWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn thread_clocks_count_joined_threads_while_they_run_and_after() {
        let clocks = ThreadClocks::default();
        let c = clocks.clone();
        let spin = |d: Duration| {
            let t0 = Instant::now();
            let mut x = 0u64;
            while t0.elapsed() < d {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let _guard = c.join_this_thread();
            spin(Duration::from_millis(150));
            tx.send(()).ok();
            spin(Duration::from_millis(150));
        });
        rx.recv().ok();
        let during = clocks.used();
        assert!(during >= Duration::from_millis(20), "a running thread's time so far: {during:?}");
        t.join().ok();
        let after = clocks.used();
        assert!(after >= during, "{after:?} < {during:?}");
        assert_eq!(clocks.used(), after, "a thread that left keeps its final time");
        // The calling thread, from when it joined.
        let g = clocks.join_this_thread();
        assert!(clocks.used() < after + Duration::from_millis(100));
        drop(g);
    }

    #[test]
    fn the_programs_clock_counts_its_threads_never_the_workers() {
        let clocks = ThreadClocks::default();
        let spin = |d: Duration| {
            let t0 = Instant::now();
            let mut x = 0u64;
            while t0.elapsed() < d {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        };
        let c = clocks.clone();
        std::thread::spawn(move || {
            let _worker = c.join_this_thread();
            spin(Duration::from_millis(100));
        })
        .join()
        .ok();
        assert_eq!(clocks.program_used(), Duration::ZERO, "a worker's time is not the program's");
        let c = clocks.clone();
        let seen = std::thread::spawn(move || {
            let _vcpu = c.join_as_program_thread(3);
            spin(Duration::from_millis(50));
            (c.program_thread_used(3), c.program_thread_used(2))
        })
        .join()
        .expect("thread");
        assert!(seen.0.is_some_and(|t| t > Duration::ZERO), "{seen:?}");
        assert_eq!(seen.1, None, "no thread runs slot 2");
        let program = clocks.program_used();
        assert!(program > Duration::ZERO && program < clocks.used(), "{program:?} vs {:?}", clocks.used());
        // Entries are reused; the time of those that left stays counted.
        let c = clocks.clone();
        std::thread::spawn(move || drop(c.join_this_thread())).join().ok();
        let c = clocks.clone();
        std::thread::spawn(move || drop(c.join_this_thread())).join().ok();
        assert!(clocks.program_used() >= program);
        assert_eq!(clocks.program_thread_used(3), None, "slot 3's thread has left");
    }

    /// A fixed CPU figure, as a reaped image's.
    #[derive(Debug)]
    struct Fixed(Duration);
    impl CpuMeter for Fixed {
        fn used(&self) -> Duration {
            self.0
        }
    }

    #[test]
    fn the_tree_counts_every_image_and_thread_once_and_folds_the_finished() {
        let tree = TreeCpu::default();
        let ms = Duration::from_millis;
        // Two images still held (running), one no longer held by anyone.
        let a: Arc<dyn CpuMeter> = Arc::new(Fixed(ms(100)));
        let b: Arc<dyn CpuMeter> = Arc::new(Fixed(ms(200)));
        tree.add_image(a.clone());
        tree.add_image(b.clone());
        tree.add_image(Arc::new(Fixed(ms(300))));
        assert_eq!(tree.used(), ms(600));
        assert_eq!(tree.live(), 2, "the image nobody holds is folded");
        drop(a);
        assert_eq!((tree.used(), tree.live()), (ms(600), 1), "folded, not lost, not counted twice");
        // A process's threads: live while a clone is held, folded after.
        let clocks = ThreadClocks::default();
        tree.add_threads(&clocks);
        let c = clocks.clone();
        std::thread::spawn(move || {
            let _g = c.join_this_thread();
            let t0 = Instant::now();
            let mut x = 0u64;
            while t0.elapsed() < ms(50) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        })
        .join()
        .ok();
        let threads = clocks.used();
        assert!(threads > Duration::ZERO);
        assert_eq!(tree.used(), ms(600) + threads);
        assert_eq!(tree.live(), 2);
        drop(clocks);
        assert_eq!((tree.used(), tree.live()), (ms(600) + threads, 1));
        // Many short processes leave at most the live ones in the ledger.
        for _ in 0..1000 {
            tree.add_image(Arc::new(Fixed(ms(1))));
        }
        assert_eq!((tree.used(), tree.live()), (ms(1600) + threads, 1));
        drop(b);
    }

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

    #[test]
    fn cpu_watch_sees_a_spin() {
        let hit = Arc::new(AtomicBool::new(false));
        let h = hit.clone();
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let start = process_cpu_time(me).expect("own CPU clock");
        let w = CpuWatch::start(
            start + Duration::from_millis(100),
            Duration::from_millis(10),
            move || process_cpu_time(me),
            move |_| h.store(true, Ordering::SeqCst),
        );
        let t0 = Instant::now();
        let mut x = 0u64;
        while !w.fired() && t0.elapsed() < Duration::from_secs(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(w.fired(), "a CPU spin is seen within 20 s");
        // `fired` is set before the callback runs (so a backend never
        // misreads the kill it makes): join the watch before looking.
        drop(w);
        assert!(hit.load(Ordering::SeqCst));
    }

    #[test]
    fn watchdog_fires_or_is_cancelled() {
        let hit = Arc::new(AtomicBool::new(false));
        let h = hit.clone();
        let t0 = Instant::now();
        let w = Watchdog::start(Duration::from_millis(50), move || h.store(true, Ordering::SeqCst));
        while !w.fired() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(w.cancel());
        assert!(hit.load(Ordering::SeqCst));

        let hit = Arc::new(AtomicBool::new(false));
        let h = hit.clone();
        let w = Watchdog::start(Duration::from_secs(30), move || h.store(true, Ordering::SeqCst));
        let t0 = Instant::now();
        assert!(!w.cancel());
        assert!(t0.elapsed() < Duration::from_secs(1), "cancel does not wait for the timeout");
        assert!(!hit.load(Ordering::SeqCst));
    }
}
