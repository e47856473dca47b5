//! Timers that post signals (docs/signals.md): `alarm`, `setitimer` and
//! `getitimer` (`ITIMER_REAL` only), and the POSIX timers (`timer_create`
//! with `SIGEV_SIGNAL`, `SIGEV_NONE` or `SIGEV_THREAD_ID` naming the
//! program's thread, on the realtime, monotonic and boot-time clocks). The
//! table lives in [`crate::timers::Timers`]; its thread posts the signals.

use std::time::{Duration, Instant};

use super::{Fail, Service, Sys};
use crate::memory::GuestMemory;
use crate::timers::{remaining, Timer, MAX_TIMERS, REAL, REAL_CODE};

const ITIMER_REAL: u64 = 0;
const SIGALRM: u32 = 14;
const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD_ID: i32 = 4;
const TIMER_ABSTIME: u64 = 1;

fn einval() -> Fail {
    Fail::Errno(libc::EINVAL)
}

fn words(b: &[u8]) -> impl Iterator<Item = i64> + '_ {
    b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
}

/// A `timeval` or `timespec` (`unit_ns` per fraction unit) as a duration.
fn duration(sec: i64, frac: i64, unit_ns: i64) -> Result<Duration, Fail> {
    if sec < 0 || frac < 0 || frac >= 1_000_000_000 / unit_ns {
        return Err(einval());
    }
    Ok(Duration::from_secs(sec as u64) + Duration::from_nanos((frac * unit_ns) as u64))
}

fn encode(d: Duration, unit_ns: u32) -> [i64; 2] {
    [d.as_secs() as i64, i64::from(d.subsec_nanos() / unit_ns)]
}

fn timers(s: &Service) -> Result<&crate::timers::Timers, Fail> {
    s.timers.as_deref().ok_or(Fail::Errno(libc::ENOSYS))
}

/// The current setting of `t` as (interval, value).
fn setting(t: Option<&Timer>, now: Instant) -> (Duration, Duration) {
    t.map_or((Duration::ZERO, Duration::ZERO), |t| (t.interval, remaining(t, now)))
}

/// Arms (or, with a zero value, disarms) slot `slot`; returns the old setting.
fn arm(
    s: &Service,
    slot: usize,
    value: Duration,
    interval: Duration,
    base: Timer,
) -> Result<(Duration, Duration), Fail> {
    let now = Instant::now();
    Ok(timers(s)?.with(|table| {
        let old = setting(table[slot].as_ref(), now);
        let next = (!value.is_zero()).then(|| now + value);
        let t = table[slot].get_or_insert(base);
        t.next = next;
        t.interval = if next.is_some() { interval } else { Duration::ZERO };
        t.overrun = 0;
        old
    }))
}

fn real_timer() -> Timer {
    Timer {
        signo: SIGALRM,
        code: REAL_CODE,
        value: 0,
        id: 0,
        next: None,
        interval: Duration::ZERO,
        overrun: 0,
    }
}

pub(super) fn alarm(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let secs = a[0] & 0xffff_ffff;
    let (_, old) = arm(s, REAL, Duration::from_secs(secs), Duration::ZERO, real_timer())?;
    // Linux rounds the remainder to the nearest second, and never says 0
    // for a timer that is still armed.
    let mut r = old.as_secs() + u64::from(old.subsec_micros() >= 500_000);
    if r == 0 && !old.is_zero() {
        r = 1;
    }
    Ok(r as i64)
}

pub(super) fn setitimer(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if a[0] != ITIMER_REAL {
        // ITIMER_VIRTUAL and ITIMER_PROF count CPU time (docs/signals.md).
        return Err(einval());
    }
    let (interval, value) = if a[1] == 0 {
        (Duration::ZERO, Duration::ZERO)
    } else {
        let w: Vec<i64> = words(&mem.read(a[1], 32)?).collect();
        (duration(w[0], w[1], 1000)?, duration(w[2], w[3], 1000)?)
    };
    let (oi, ov) = arm(s, REAL, value, interval, real_timer())?;
    if a[2] != 0 {
        write_pair(mem, a[2], oi, ov, 1000)?;
    }
    Ok(0)
}

fn write_pair(
    mem: &GuestMemory,
    at: u64,
    interval: Duration,
    value: Duration,
    unit_ns: u32,
) -> Result<(), Fail> {
    let mut out = Vec::with_capacity(32);
    for w in encode(interval, unit_ns).into_iter().chain(encode(value, unit_ns)) {
        out.extend_from_slice(&w.to_le_bytes());
    }
    mem.write(at, &out)?;
    Ok(())
}

pub(super) fn getitimer(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if a[0] != ITIMER_REAL {
        return Err(einval());
    }
    let now = Instant::now();
    let (i, v) = timers(s)?.with(|t| setting(t[REAL].as_ref(), now));
    write_pair(mem, a[1], i, v, 1000)?;
    Ok(0)
}

pub(super) fn timer_create(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let clock = a[0] as i32;
    if ![libc::CLOCK_REALTIME, libc::CLOCK_MONOTONIC, libc::CLOCK_BOOTTIME].contains(&clock) {
        // CPU-time clocks and the alarm clocks: not served (docs/signals.md).
        return Err(einval());
    }
    let (signo, value, notify, tid) = if a[1] == 0 {
        (SIGALRM, None, SIGEV_SIGNAL, 0)
    } else {
        let b = mem.read(a[1], 24)?;
        let value = u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8]));
        let signo = u32::from_le_bytes(b[8..12].try_into().unwrap_or([0; 4]));
        let notify = i32::from_le_bytes(b[12..16].try_into().unwrap_or([0; 4]));
        let tid = u32::from_le_bytes(b[16..20].try_into().unwrap_or([0; 4]));
        (signo, Some(value), notify, tid)
    };
    let signo = match notify {
        SIGEV_NONE => 0,
        SIGEV_SIGNAL => signo,
        SIGEV_THREAD_ID if tid == s.pid => signo,
        // SIGEV_THREAD is the C library's (a thread of its own).
        _ => return Err(einval()),
    };
    if notify != SIGEV_NONE && !(1..=64).contains(&signo) {
        return Err(einval());
    }
    let id = timers(s)?.with(|table| {
        let slot = (1..=MAX_TIMERS).find(|&i| table[i].is_none())?;
        let id = (slot - 1) as u32;
        table[slot] = Some(Timer {
            signo,
            code: cabin_abi::boot::si_code::SI_TIMER,
            value: value.unwrap_or(u64::from(id)),
            id,
            next: None,
            interval: Duration::ZERO,
            overrun: 0,
        });
        Some(id)
    });
    let id = id.ok_or(Fail::Errno(libc::EAGAIN))?;
    if let Err(e) = mem.write(a[2], &id.to_le_bytes()) {
        timers(s)?.with(|table| table[id as usize + 1] = None);
        return Err(e.into());
    }
    Ok(0)
}

/// The table slot of POSIX timer `id`, if it exists.
fn slot(s: &Service, id: u64) -> Result<usize, Fail> {
    let slot = (id as usize).checked_add(1).filter(|&i| i <= MAX_TIMERS).ok_or_else(einval)?;
    if timers(s)?.with(|t| t[slot].is_none()) {
        return Err(einval());
    }
    Ok(slot)
}

pub(super) fn timer_settime(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let slot = slot(s, a[0] & 0xffff_ffff)?;
    let w: Vec<i64> = words(&mem.read(a[2], 32)?).collect();
    let interval = duration(w[0], w[1], 1)?;
    let mut value = duration(w[2], w[3], 1)?;
    if a[1] & TIMER_ABSTIME != 0 && !value.is_zero() {
        // An absolute expiry on the timer's clock: as a delay from now.
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: writes `now`.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let now = Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
        value = value.saturating_sub(now).max(Duration::from_nanos(1));
    }
    let base = timers(s)?.with(|t| t[slot]).ok_or_else(einval)?;
    let (oi, ov) = arm(s, slot, value, interval, base)?;
    if a[3] != 0 {
        write_pair(mem, a[3], oi, ov, 1)?;
    }
    Ok(0)
}

pub(super) fn timer_gettime(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let slot = slot(s, a[0] & 0xffff_ffff)?;
    let now = Instant::now();
    let (i, v) = timers(s)?.with(|t| setting(t[slot].as_ref(), now));
    write_pair(mem, a[1], i, v, 1)?;
    Ok(0)
}

pub(super) fn timer_getoverrun(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let slot = slot(s, a[0] & 0xffff_ffff)?;
    Ok(timers(s)?.with(|t| t[slot].map_or(0, |t| i64::from(t.overrun))))
}

pub(super) fn timer_delete(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let slot = slot(s, a[0] & 0xffff_ffff)?;
    timers(s)?.with(|t| t[slot] = None);
    Ok(0)
}
