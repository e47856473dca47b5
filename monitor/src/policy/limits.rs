//! Resource limits the monitor itself can see: bytes written, file size,
//! open descriptors, and a wall-clock watchdog. Memory and CPU time are
//! enforced by the backend (arena size, `RLIMIT_CPU` of the child or vCPU
//! time); this module only gives them the words for the record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{names, Limits};
use crate::trace::{LimitHit, LimitKind};

/// EFBIG: what a write past `file-size` returns (as `RLIMIT_FSIZE` does,
/// without the signal).
pub const EFBIG: i32 = 27;

/// What a limit check says about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitCheck {
    /// Go on.
    Ok,
    /// Refuse this call with `-errno` (the program continues).
    Refuse(i32, LimitHit),
    /// Stop the program.
    Stop(LimitHit),
}

/// Running totals for the limits in a policy.
#[derive(Debug, Clone, Default)]
pub struct LimitState {
    limits: Limits,
    written: u64,
}

fn is_write_family(name: &str) -> bool {
    matches!(
        name,
        "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" | "sendfile" | "copy_file_range" | "splice"
    )
}

impl LimitState {
    /// Totals for `limits`, all zero.
    pub fn new(limits: &Limits) -> LimitState {
        LimitState { limits: limits.clone(), written: 0 }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes the program has written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Before serving call `nr`: a write whose length is known from its
    /// registers that would pass `bytes-written` stops the program; a
    /// positional write or truncate past `file-size` is refused with EFBIG.
    /// `open_fds` is the number of descriptors the program holds (when the
    /// caller knows it): a call that creates one when `open-files` are
    /// already open stops the program.
    pub fn before(&self, time_ns: u64, nr: u64, args: &[u64; 6], open_fds: Option<u64>) -> LimitCheck {
        let Some(name) = names::name(nr) else { return LimitCheck::Ok };
        if let Some(max) = self.limits.bytes_written {
            let len = match name {
                "write" | "pwrite64" => Some(args[2]),
                _ => None,
            };
            if let Some(len) = len {
                let total = self.written.saturating_add(len);
                if total > max {
                    return LimitCheck::Stop(LimitHit {
                        time_ns,
                        limit: LimitKind::BytesWritten,
                        value: total,
                        max,
                        action: format!(
                            "stopped the program ({name} of {len} bytes after {} written)",
                            self.written
                        ),
                    });
                }
            }
        }
        if let Some(max) = self.limits.file_size {
            let end = match name {
                "pwrite64" => args[3].checked_add(args[2]),
                "ftruncate" => Some(args[1]),
                "truncate" => Some(args[1]),
                "fallocate" => args[2].checked_add(args[3]),
                _ => None,
            };
            if let Some(end) = end {
                if end > max {
                    return LimitCheck::Refuse(
                        EFBIG,
                        LimitHit {
                            time_ns,
                            limit: LimitKind::FileSize,
                            value: end,
                            max,
                            action: format!("{name} returned EFBIG"),
                        },
                    );
                }
            }
        }
        if let (Some(max), Some(open)) = (self.limits.open_files, open_fds) {
            let creates = matches!(
                name,
                "open"
                    | "openat"
                    | "openat2"
                    | "creat"
                    | "dup"
                    | "dup2"
                    | "dup3"
                    | "pipe"
                    | "pipe2"
                    | "socket"
                    | "socketpair"
                    | "accept"
                    | "accept4"
                    | "eventfd"
                    | "eventfd2"
                    | "epoll_create"
                    | "epoll_create1"
                    | "memfd_create"
                    | "timerfd_create"
                    | "signalfd"
                    | "signalfd4"
            ) || (name == "fcntl" && matches!(args[1], 0 | 1030)); // F_DUPFD, F_DUPFD_CLOEXEC
            if creates && open >= max {
                return LimitCheck::Stop(LimitHit {
                    time_ns,
                    limit: LimitKind::OpenFiles,
                    value: open + 1,
                    max,
                    action: format!("stopped the program ({name} with {open} descriptors open)"),
                });
            }
        }
        LimitCheck::Ok
    }

    /// After serving call `nr` with result `ret`: counts written bytes; a
    /// total past `bytes-written` (from a call whose length was not known
    /// before, like `writev`) stops the program.
    pub fn after(&mut self, time_ns: u64, nr: u64, ret: i64) -> LimitCheck {
        let Some(name) = names::name(nr) else { return LimitCheck::Ok };
        if ret > 0 && is_write_family(name) {
            self.written = self.written.saturating_add(ret as u64);
            if let Some(max) = self.limits.bytes_written {
                if self.written > max {
                    return LimitCheck::Stop(LimitHit {
                        time_ns,
                        limit: LimitKind::BytesWritten,
                        value: self.written,
                        max,
                        action: "stopped the program".into(),
                    });
                }
            }
        }
        LimitCheck::Ok
    }
}

/// The one-line stderr message for a limit hit.
pub fn message(hit: &LimitHit) -> String {
    let unit = |v: u64| match hit.limit {
        LimitKind::CpuTime | LimitKind::WallTime => format!("{:.3} s", v as f64 / 1e9),
        LimitKind::OpenFiles => format!("{v} descriptors"),
        _ => format!("{v} bytes"),
    };
    format!(
        "cabin: limit {} reached ({} > {}): {}; help: raise [limits] {} in the policy if the program needs more",
        hit.limit.as_str(),
        unit(hit.value),
        unit(hit.max),
        hit.action,
        hit.limit.as_str()
    )
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
    use std::time::Instant;

    fn nr(n: &str) -> u64 {
        names::number(n).unwrap_or(u64::MAX)
    }

    #[test]
    fn bytes_written_stops_before_and_after() {
        let l = Limits { bytes_written: Some(100), ..Limits::default() };
        let mut s = LimitState::new(&l);
        assert_eq!(s.before(0, nr("write"), &[1, 0, 60, 0, 0, 0], None), LimitCheck::Ok);
        assert_eq!(s.after(0, nr("write"), 60), LimitCheck::Ok);
        assert!(matches!(s.before(0, nr("write"), &[1, 0, 41, 0, 0, 0], None), LimitCheck::Stop(_)));
        assert_eq!(s.after(0, nr("writev"), 40), LimitCheck::Ok);
        let LimitCheck::Stop(hit) = s.after(0, nr("writev"), 1) else { panic!("writev past the limit") };
        assert_eq!((hit.value, hit.max), (101, 100));
        assert!(message(&hit).starts_with("cabin: limit bytes-written reached (101 bytes > 100 bytes)"));
    }

    #[test]
    fn file_size_refuses_with_efbig() {
        let l = Limits { file_size: Some(4096), ..Limits::default() };
        let s = LimitState::new(&l);
        assert_eq!(s.before(0, nr("ftruncate"), &[3, 4096, 0, 0, 0, 0], None), LimitCheck::Ok);
        assert!(matches!(
            s.before(0, nr("ftruncate"), &[3, 4097, 0, 0, 0, 0], None),
            LimitCheck::Refuse(EFBIG, _)
        ));
        assert!(matches!(
            s.before(0, nr("pwrite64"), &[3, 0, 10, 4090, 0, 0], None),
            LimitCheck::Refuse(EFBIG, _)
        ));
        assert!(matches!(s.before(0, nr("pwrite64"), &[3, 0, 10, u64::MAX, 0, 0], None), LimitCheck::Ok));
    }

    #[test]
    fn open_files_stop_the_program() {
        let l = Limits { open_files: Some(8), ..Limits::default() };
        let s = LimitState::new(&l);
        assert_eq!(s.before(0, nr("openat"), &[0; 6], Some(7)), LimitCheck::Ok);
        assert!(matches!(s.before(0, nr("openat"), &[0; 6], Some(8)), LimitCheck::Stop(_)));
        assert!(matches!(s.before(0, nr("fcntl"), &[3, 1030, 0, 0, 0, 0], Some(8)), LimitCheck::Stop(_)));
        assert_eq!(s.before(0, nr("read"), &[0; 6], Some(8)), LimitCheck::Ok);
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
        assert!(hit.load(Ordering::SeqCst));
        drop(w);
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
