//! Clocks and sleeping: `nanosleep`, `clock_nanosleep` (the worker sleeps;
//! the remaining time is reported as 0), and the clock reads the libos
//! forwards when the policy does not plainly allow them (`clock_gettime`,
//! `clock_getres`, `gettimeofday`, `time`).

use super::{host, Fail, Service, Sys};
use crate::memory::{pod_bytes, GuestMemory};

pub(super) fn nanosleep(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    nanosleep_on(mem, a)
}

/// `nanosleep` (touches no service state: the lock may be dropped).
pub(super) fn nanosleep_on(mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let ts = timespec(mem, a[0])?;
    // SAFETY: nanosleep reads `ts`; no remainder requested.
    host(unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) } as i64)?;
    if a[1] != 0 {
        mem.write(a[1], &[0u8; 16])?;
    }
    Ok(0)
}

/// `pause`: the libos's wait for a signal (it forwards `pause` for
/// `pause`, `rt_sigsuspend` and `rt_sigtimedwait` once nothing it holds is
/// deliverable). The worker sleeps until the monitor interrupts it because
/// it posted a signal (docs/signals.md), or stops the run: `EINTR`.
pub(super) fn pause(_s: &mut Service, _mem: &GuestMemory, _a: &[u64; 6]) -> Sys {
    pause_on()
}

/// `pause` (touches no service state: the lock may be dropped).
pub(super) fn pause_on() -> Sys {
    // SAFETY: pause has no arguments; it returns only on a signal (a kick).
    host(unsafe { libc::pause() } as i64)?;
    Ok(0)
}

pub(super) fn clock_nanosleep(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    clock_nanosleep_on(mem, a)
}

/// `clock_nanosleep` (touches no service state: the lock may be dropped).
pub(super) fn clock_nanosleep_on(mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let ts = timespec(mem, a[2])?;
    // SAFETY: reads `ts`; no remainder requested.
    let r = unsafe { libc::clock_nanosleep(a[0] as i32, a[1] as i32, &ts, std::ptr::null_mut()) };
    if r != 0 {
        return Err(Fail::Errno(r));
    }
    Ok(0)
}

/// Which of the program's CPU-time clocks a clock id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CpuClockOf {
    /// `CLOCK_PROCESS_CPUTIME_ID`, or the program's own process clock.
    Process,
    /// `CLOCK_THREAD_CPUTIME_ID`, or the calling thread's own clock.
    Thread,
}

/// `CLOCK_PROCESS_CPUTIME_ID`.
const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
/// `CLOCK_THREAD_CPUTIME_ID`.
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

/// The CPU-time clock `id` names, `None` for a clock that is not a CPU-time
/// one. A dynamic CPU clock (`clock_getcpuclockid`, `pthread_getcpuclockid`:
/// negative, `~pid << 3 | per_thread << 2 | kind`) is the program's when its
/// pid is 0 or the program's own (process clock) or its tid is 0 (thread
/// clock); any other is `EINVAL`: the host's processes and the monitor's
/// threads are not the program's to measure.
pub(super) fn cpu_clock_of(id: u64, pid: u32) -> Option<Result<CpuClockOf, Fail>> {
    let id = id as i32;
    match id {
        CLOCK_PROCESS_CPUTIME_ID => Some(Ok(CpuClockOf::Process)),
        CLOCK_THREAD_CPUTIME_ID => Some(Ok(CpuClockOf::Thread)),
        id if id < 0 => {
            let who = !(id >> 3);
            let per_thread = id & 4 != 0;
            Some(match (id & 3, per_thread) {
                (3, _) => Err(Fail::Errno(libc::EINVAL)),
                (_, true) if who == 0 => Ok(CpuClockOf::Thread),
                (_, false) if who == 0 || who as u32 == pid => Ok(CpuClockOf::Process),
                _ => Err(Fail::Errno(libc::EINVAL)),
            })
        }
        _ => None,
    }
}

/// The program's CPU time on `clock`.
fn cpu_time(s: &Service, clock: CpuClockOf) -> std::time::Duration {
    match (&s.program_cpu, clock) {
        (None, _) => std::time::Duration::ZERO,
        (Some(c), CpuClockOf::Process) => c.process(),
        (Some(c), CpuClockOf::Thread) => c.thread(),
    }
}

pub(super) fn clock_gettime(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if let Some(clock) = cpu_clock_of(a[0], s.pid) {
        let t = cpu_time(s, clock?);
        let ts = [t.as_secs(), u64::from(t.subsec_nanos())];
        mem.write(a[1], pod_bytes(&ts))?;
        return Ok(0);
    }
    clock_read(mem, a, libc::clock_gettime)
}

pub(super) fn clock_getres(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if let Some(clock) = cpu_clock_of(a[0], s.pid) {
        clock?;
        if a[1] != 0 {
            mem.write(a[1], pod_bytes(&[0u64, 1]))?;
        }
        return Ok(0);
    }
    clock_read(mem, a, libc::clock_getres)
}

/// `RUSAGE_SELF`, `RUSAGE_CHILDREN`, `RUSAGE_THREAD`.
const RUSAGE_SELF: i32 = 0;
const RUSAGE_CHILDREN: i32 = -1;
const RUSAGE_THREAD: i32 = 1;

/// `getrusage`: the program's CPU time as user time (the monitor cannot
/// split a vCPU's time into the guest's user and kernel parts; a CPU-bound
/// program's is nearly all user time natively too), system time 0, every
/// other field 0; `RUSAGE_CHILDREN` all 0 (a confined program's children
/// are not its threads' time).
pub(super) fn getrusage(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let t = match a[0] as i32 {
        RUSAGE_SELF => cpu_time(s, CpuClockOf::Process),
        RUSAGE_THREAD => cpu_time(s, CpuClockOf::Thread),
        RUSAGE_CHILDREN => std::time::Duration::ZERO,
        _ => return Err(Fail::Errno(libc::EINVAL)),
    };
    let mut ru = [0u64; 18];
    ru[0] = t.as_secs();
    ru[1] = u64::from(t.subsec_micros());
    mem.write(a[1], pod_bytes(&ru))?;
    Ok(0)
}

/// `times`: the program's CPU time as user time in clock ticks; returns
/// the host's tick count, as Linux does.
pub(super) fn times(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if a[0] != 0 {
        // SAFETY: sysconf reads a constant.
        let hz = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
            hz if hz > 0 => hz as u128,
            _ => 100,
        };
        let ticks = (cpu_time(s, CpuClockOf::Process).as_nanos() * hz / 1_000_000_000) as u64;
        mem.write(a[0], pod_bytes(&[ticks, 0u64, 0, 0]))?;
    }
    // SAFETY: times(NULL) is allowed on Linux and touches no memory.
    host(unsafe { libc::times(std::ptr::null_mut()) })
}

/// `clock_gettime` or `clock_getres` (`read`) of clock `a[0]`, written at
/// `a[1]` unless it is NULL.
fn clock_read(
    mem: &GuestMemory,
    a: &[u64; 6],
    read: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
) -> Sys {
    // SAFETY: timespec is plain data.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: writes `ts`.
    let r = unsafe { read(a[0] as i32, &mut ts) };
    host(r as i64)?;
    if a[1] != 0 {
        mem.write(a[1], pod_bytes(&ts))?;
    }
    Ok(0)
}

pub(super) fn gettimeofday(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    if a[0] != 0 {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&now.as_secs().to_le_bytes());
        b[8..].copy_from_slice(&u64::from(now.subsec_micros()).to_le_bytes());
        mem.write(a[0], &b)?;
    }
    Ok(0)
}

pub(super) fn time(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    if a[0] != 0 {
        mem.write_u64(a[0], now)?;
    }
    Ok(now as i64)
}

fn timespec(mem: &GuestMemory, addr: u64) -> Result<libc::timespec, Fail> {
    let b = mem.read(addr, 16)?;
    let sec = i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    let nsec = i64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Fail::Errno(libc::EINVAL));
    }
    Ok(libc::timespec { tv_sec: sec, tv_nsec: nsec })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `clock_getcpuclockid(pid)`'s id: `~pid << 3 | 2` (CPUCLOCK_SCHED).
    fn process_clock(pid: i32) -> u64 {
        ((!pid) << 3 | 2) as i64 as u64
    }

    /// `pthread_getcpuclockid`'s id for thread `tid`: `~tid << 3 | 4 | 2`.
    fn thread_clock(tid: i32) -> u64 {
        ((!tid) << 3 | 6) as i64 as u64
    }

    #[test]
    fn cpu_clocks_are_only_the_programs_own() {
        let pid = 4242;
        let ok = |id| cpu_clock_of(id, pid).map(|r| r.ok());
        assert_eq!(ok(2), Some(Some(CpuClockOf::Process)));
        assert_eq!(ok(3), Some(Some(CpuClockOf::Thread)));
        assert_eq!(ok(process_clock(0)), Some(Some(CpuClockOf::Process)));
        assert_eq!(ok(process_clock(pid as i32)), Some(Some(CpuClockOf::Process)));
        assert_eq!(ok(thread_clock(0)), Some(Some(CpuClockOf::Thread)));
        // The monitor's or any other process's or thread's CPU time: refused.
        assert_eq!(ok(process_clock(1)), Some(None));
        assert_eq!(ok(process_clock(std::process::id() as i32)), Some(None));
        assert_eq!(ok(thread_clock(1)), Some(None));
        // Kind 3 is not a clock.
        assert_eq!(ok(((!0i32) << 3 | 3) as i64 as u64), Some(None));
        // Wall and monotonic clocks are not CPU clocks; the high half of
        // the id is ignored, as the kernel's `int` argument.
        assert_eq!(ok(0), None);
        assert_eq!(ok(1), None);
        assert_eq!(ok(0xffff_ffff_0000_0002), Some(Some(CpuClockOf::Process)));
    }
}
