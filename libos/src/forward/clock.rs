//! Clock reads served in ring 3 of a KVM domain, from the TSC.
//!
//! A program timing itself (a benchmark reads the clock around every block)
//! would otherwise send each read over the ring. When the monitor vouches
//! for the TSC ([`cabin_abi::boot::BootInfo::tsc_khz`] non-zero: the host's
//! TSC is invariant), each clock is anchored once, at its first read, by one
//! forwarded `clock_gettime` bracketed by two `rdtsc`s; later reads are
//! `anchor + (tsc - anchor_tsc) · 10⁶ / tsc_khz`, a multiply and a shift.
//!
//! Served: `clock_gettime` of CLOCK_REALTIME, MONOTONIC, MONOTONIC_RAW,
//! REALTIME_COARSE, MONOTONIC_COARSE and BOOTTIME; `gettimeofday` without a
//! timezone; `time`. Everything else (CPU-time clocks, `clock_getres`,
//! settings) is forwarded. Like the program's own stores, a result pointer
//! the program got wrong faults in the program's domain.

use super::thread::Lock;
use super::{forward, nr};

/// Clock ids served here get an anchor each (ids 0..=7; CPU-time clocks 2
/// and 3 never get one).
const CLOCKS: usize = 8;

/// Whether clock id `id` is a wall or monotonic clock served here.
fn served(id: u64) -> bool {
    matches!(id, 0 | 1 | 4 | 5 | 6 | 7)
}

const NS_PER_SEC: u64 = 1_000_000_000;
/// `CLOCK_REALTIME`.
const CLOCK_REALTIME: u64 = 0;

#[derive(Debug)]
struct Clock {
    /// Nanoseconds per TSC tick, as a 32.32 fixed-point number (0: off).
    mult: u64,
    /// Per clock id: `(tsc, ns)` at its anchor; `ns == u64::MAX`: none yet.
    anchor: [(u64, u64); CLOCKS],
}

static CLOCK: Lock<Clock> = Lock::new(Clock { mult: 0, anchor: [(0, u64::MAX); CLOCKS] });

/// Turns local clock reads on for a TSC of `tsc_khz` kHz (0: off).
pub(crate) fn init(tsc_khz: u64) {
    // SAFETY: start-up, single thread, no other reference alive.
    let mut c = CLOCK.lock();
    c.mult = match tsc_khz {
        // Slower than 1 MHz or faster than 100 GHz: not a TSC to trust.
        1_000..=100_000_000 => ((1_000_000u128 << 32) / u128::from(tsc_khz)) as u64,
        _ => 0,
    };
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc reads the time-stamp counter; ring 3 may (CR4.TSD clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Nanoseconds on clock `id` now, anchoring it first if needed; `Err` with
/// the anchoring read's error.
fn now(c: &mut Clock, id: u64) -> Result<u64, i64> {
    let slot = &mut c.anchor[id as usize];
    if slot.1 == u64::MAX {
        let mut ts = [0i64; 2];
        let before = rdtsc();
        let r = forward(nr::clock_gettime, &[id, ts.as_mut_ptr() as u64, 0, 0, 0, 0], 0);
        let after = rdtsc();
        if r != 0 {
            return Err(r);
        }
        let ns = (ts[0] as u64).wrapping_mul(NS_PER_SEC).wrapping_add(ts[1] as u64);
        *slot = (before / 2 + after / 2, ns);
    }
    let ticks = rdtsc().wrapping_sub(slot.0);
    let elapsed = ((u128::from(ticks) * u128::from(c.mult)) >> 32) as u64;
    Ok(slot.1.wrapping_add(elapsed))
}

/// Serves `nr` when it is a clock read this module handles; `None`: forward it.
pub(crate) fn serve(call: u64, a: &[u64; 6]) -> Option<i64> {
    // Under the lock, released at the end of the statement or scope.
    let mut c = CLOCK.lock();
    if c.mult == 0 {
        return None;
    }
    let (id, out) = match call {
        nr::clock_gettime if served(a[0]) => (a[0], a[1]),
        nr::gettimeofday if a[1] == 0 => (CLOCK_REALTIME, a[0]),
        nr::time => (CLOCK_REALTIME, a[0]),
        _ => return None,
    };
    let ns = match now(&mut c, id) {
        Ok(ns) => ns,
        Err(e) => return Some(e),
    };
    let (sec, sub) = ((ns / NS_PER_SEC) as i64, (ns % NS_PER_SEC) as i64);
    match call {
        nr::clock_gettime if out == 0 => Some(-super::errno::EFAULT),
        nr::clock_gettime => {
            // SAFETY: the program passed this pointer for the kernel to
            // fill; a bad one faults in the program's own domain, as its
            // own store would.
            unsafe { (out as *mut [i64; 2]).write_unaligned([sec, sub]) };
            Some(0)
        }
        nr::gettimeofday => {
            if out != 0 {
                // SAFETY: as above (a `struct timeval`).
                unsafe { (out as *mut [i64; 2]).write_unaligned([sec, sub / 1000]) };
            }
            Some(0)
        }
        _ => {
            if out != 0 {
                // SAFETY: as above (a `time_t`).
                unsafe { (out as *mut i64).write_unaligned(sec) };
            }
            Some(sec)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixed_point_rate_is_exact_enough() {
        // 2.596144 GHz: one second of ticks converts to 1 s within 1 ns.
        let khz = 2_596_144u64;
        let mult = ((1_000_000u128 << 32) / u128::from(khz)) as u64;
        let ticks = khz * 1000;
        let ns = ((u128::from(ticks) * u128::from(mult)) >> 32) as u64;
        assert!(ns.abs_diff(1_000_000_000) <= 1, "{ns}");
    }
}
