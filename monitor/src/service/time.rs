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

pub(super) fn clock_gettime(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    clock_read(mem, a, libc::clock_gettime)
}

pub(super) fn clock_getres(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    clock_read(mem, a, libc::clock_getres)
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
