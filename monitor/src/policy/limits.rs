//! Resource limits the monitor itself can see: bytes written, file size,
//! open descriptors, and a wall-clock watchdog. Memory and CPU time are
//! enforced by the backend (domain memory sized from the limit, the child's
//! or vCPU's CPU clock); this module only gives them the words for the
//! record ([`memory_limit_hit`] reads what the libos left when it stopped a
//! program at the memory limit).

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

/// The limit hit a backend records when the libos stopped the program at
/// the memory limit (`cabin_abi::boot::ABORT_MEMORY`), or `None` when it
/// did not: `reserved` is `BootInfo::reserved` as read after the program
/// ended, `exit_code` its exit status (the libos exits with 137), `limit`
/// `[limits] memory`, `fixed` the domain bytes the program cannot grow
/// (image, stack, boot page, ring; on KVM also the system area), and
/// `policy_file` where the limit was set.
///
/// The words come from the program's side and are untrusted: they can only
/// make the program's own end more or less informative. The amount in use
/// is clamped to the limit.
pub fn memory_limit_hit(
    reserved: &[u64; 8],
    exit_code: i32,
    limit: Option<u64>,
    fixed: u64,
    policy_file: &str,
    time_ns: u64,
) -> Option<LimitHit> {
    use cabin_abi::boot::{ABORT_MEMORY, BOOT_MEMORY_REQUEST_SLOT, BOOT_MEMORY_USED_SLOT};
    let limit = limit?;
    if reserved[0] != ABORT_MEMORY || exit_code != super::gate::LIMIT_EXIT_CODE {
        return None;
    }
    let requested = reserved[BOOT_MEMORY_REQUEST_SLOT];
    let in_use = fixed.saturating_add(reserved[BOOT_MEMORY_USED_SLOT]).min(limit);
    Some(LimitHit {
        time_ns,
        limit: LimitKind::Memory,
        value: in_use.saturating_add(requested),
        max: limit,
        action: format!(
            "the program asked for {} more with {} of {} in use; the program was stopped \
             (limit set by {policy_file} [limits] memory)",
            size(requested),
            size(in_use),
            size(limit)
        ),
    })
}

/// Guest memory for a KVM domain. `mem` is `--mem` (0 = not given), `limit`
/// `[limits] memory`. With a limit, the guest is the limit rounded down to
/// 2 MiB (so the host never maps more for it), and no larger than `--mem`;
/// without, `--mem` rounded up to 2 MiB, or the default. The KVM domain
/// builder refuses sizes outside its range (`MIN_MEM..=MAX_MEM`) with a
/// message that names them.
pub fn kvm_guest_memory(mem: u64, limit: Option<u64>) -> u64 {
    use crate::kvm::layout::{DEFAULT_MEM, LARGE_PAGE};
    let round_up = |m: u64| m.checked_next_multiple_of(LARGE_PAGE).unwrap_or(u64::MAX);
    match (limit, mem) {
        (Some(l), 0) => l & !(LARGE_PAGE - 1),
        (Some(l), m) => l.min(round_up(m)) & !(LARGE_PAGE - 1),
        (None, 0) => DEFAULT_MEM,
        (None, m) => round_up(m),
    }
}

/// `v` bytes in the largest binary unit it reaches: `256 MiB`, `255.9 MiB`.
pub fn size(v: u64) -> String {
    let (unit, name) = match v {
        _ if v >= 1 << 30 => (1u64 << 30, "GiB"),
        _ if v >= 1 << 20 => (1 << 20, "MiB"),
        _ if v >= 1 << 10 => (1 << 10, "KiB"),
        _ => return format!("{v} bytes"),
    };
    if v.is_multiple_of(unit) {
        format!("{} {name}", v / unit)
    } else {
        format!("{:.1} {name}", v as f64 / unit as f64)
    }
}

/// The one-line stderr message for a limit hit.
pub fn message(hit: &LimitHit) -> String {
    if hit.limit == LimitKind::Memory {
        // memory_limit_hit already put the whole story in the action.
        return format!(
            "cabin: memory limit reached: {}; help: raise [limits] memory if the program needs more",
            hit.action
        );
    }
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
    fn memory_abort_becomes_a_limit_hit() {
        use cabin_abi::boot::{ABORT_MEMORY, ABORT_RING, BOOT_MEMORY_REQUEST_SLOT, BOOT_MEMORY_USED_SLOT};
        let mut r = [0u64; 8];
        r[0] = ABORT_MEMORY;
        r[BOOT_MEMORY_REQUEST_SLOT] = 64 << 20;
        r[BOOT_MEMORY_USED_SLOT] = (200 << 20) + (900 << 10);
        let fixed = 55 << 20;
        let hit = memory_limit_hit(&r, 137, Some(256 << 20), fixed, "policy.toml", 5).expect("a hit");
        assert_eq!(hit.limit, LimitKind::Memory);
        assert_eq!((hit.max, hit.value), (256 << 20, (255 << 20) + (900 << 10) + (64 << 20)));
        assert_eq!(
            message(&hit),
            "cabin: memory limit reached: the program asked for 64 MiB more with 255.9 MiB of 256 MiB in use; \
             the program was stopped (limit set by policy.toml [limits] memory); help: raise [limits] memory \
             if the program needs more"
        );
        // Not a memory stop: no limit, another reason, another status.
        assert!(memory_limit_hit(&r, 137, None, fixed, "p", 0).is_none());
        assert!(memory_limit_hit(&r, 0, Some(1 << 30), fixed, "p", 0).is_none());
        r[0] = ABORT_RING;
        assert!(memory_limit_hit(&r, 137, Some(1 << 30), fixed, "p", 0).is_none());
        // Lies from the program's side stay within the limit.
        r[0] = ABORT_MEMORY;
        r[BOOT_MEMORY_USED_SLOT] = u64::MAX;
        let hit = memory_limit_hit(&r, 137, Some(64 << 20), fixed, "p", 0).expect("a hit");
        assert!(hit.action.contains("of 64 MiB in use"), "{}", hit.action);
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size((1 << 20) + 4096), "1.0 MiB");
        assert_eq!(size(3 << 30), "3 GiB");
    }

    #[test]
    fn kvm_guest_memory_stays_within_the_limit() {
        use crate::kvm::layout::DEFAULT_MEM;
        assert_eq!(kvm_guest_memory(0, None), DEFAULT_MEM);
        assert_eq!(kvm_guest_memory(100 << 20, None), 100 << 20);
        assert_eq!(kvm_guest_memory((99 << 20) + 1, None), 100 << 20);
        assert_eq!(kvm_guest_memory(0, Some(64 << 20)), 64 << 20);
        assert_eq!(kvm_guest_memory(0, Some((65 << 20) + 7)), 64 << 20);
        assert_eq!(kvm_guest_memory(64 << 20, Some(64 << 20)), 64 << 20, "what cabinc passes");
        assert_eq!(kvm_guest_memory(1 << 30, Some(128 << 20)), 128 << 20);
        assert_eq!(kvm_guest_memory(96 << 20, Some(128 << 20)), 96 << 20);
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
