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
//!
//! The process backend (boot flag `BOOT_FLAG_TSC_CLOCK`: the host's TSC is
//! invariant) serves the same clocks the same way, with no system call on
//! the way (a native read under seccomp costs ~640 ns; the host's vDSO,
//! which the child does not keep, ~40 ns). No one tells it the TSC's rate,
//! so it calibrates: reads stay native for the first [`CALIBRATE_NS`] of
//! the program's clock use, then the rate is the TSC ticks over the
//! `CLOCK_MONOTONIC_RAW` nanoseconds since the first read, refined at every
//! re-anchoring. Each clock is re-anchored by a native read every
//! [`REANCHOR_NS`] (so NTP's slewing and steps of the host's clocks show
//! within that), and the monotonic clocks never go back: a read is at least
//! the last one returned, by any thread (all reads take one lock).

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

/// `CLOCK_REALTIME_COARSE`.
const CLOCK_REALTIME_COARSE: u64 = 5;
/// `CLOCK_MONOTONIC_RAW`: the calibration's reference.
const CLOCK_MONOTONIC_RAW: u64 = 4;
/// Process backend: how long reads stay native before the TSC's rate is
/// taken (the rate's error is about the bracketing of one native read,
/// ~1 µs, over this).
pub(crate) const CALIBRATE_NS: u64 = 10_000_000;
/// Process backend: how often each clock is anchored again by a native read.
pub(crate) const REANCHOR_NS: u64 = 50_000_000;

#[derive(Debug)]
struct Clock {
    /// Nanoseconds per TSC tick, as a 32.32 fixed-point number (0: off, or
    /// not calibrated yet).
    mult: u64,
    /// Per clock id: `(tsc, ns)` at its anchor; `ns == u64::MAX`: none yet.
    anchor: [(u64, u64); CLOCKS],
    /// Process backend: anchors are native reads, the rate is calibrated
    /// here, anchors are refreshed every `reanchor` ticks.
    native: bool,
    /// Process backend: `(tsc, CLOCK_MONOTONIC_RAW ns)` of the first read,
    /// the calibration's baseline; `ns == u64::MAX`: none yet.
    base: (u64, u64),
    /// Process backend: ticks between re-anchorings.
    reanchor: u64,
    /// The last value returned per clock (the monotonic ones never go back).
    last: [u64; CLOCKS],
}

static CLOCK: Lock<Clock> = Lock::new(Clock {
    mult: 0,
    anchor: [(0, u64::MAX); CLOCKS],
    native: false,
    base: (0, u64::MAX),
    reanchor: 0,
    last: [0; CLOCKS],
});

/// Process backend: serves clock reads from the TSC once calibrated (see
/// the module documentation).
pub(crate) fn init_native() {
    CLOCK.lock().native = true;
}

/// A native `clock_gettime(id)` bracketed by two `rdtsc`s: `(tsc, ns)`,
/// tried again when the bracket is wide ([`anchor`]; before calibration,
/// `width` 0: the narrowest of all tries).
fn native_read(id: u64, mult: u64) -> Result<(u64, u64), i64> {
    let width = if mult == 0 { 0 } else { ((u128::from(ANCHOR_WIDTH_NS) << 32) / u128::from(mult)) as u64 };
    anchor(width, || {
        let mut ts = [0i64; 2];
        let before = rdtsc();
        // SAFETY: clock_gettime writes one timespec into a local; the seccomp
        // filter allows it (the caller checked the policy allows it plainly).
        let r = unsafe { crate::sys::syscall6(nr::clock_gettime, &[id, ts.as_mut_ptr() as u64, 0, 0, 0, 0]) };
        let after = rdtsc();
        if r != 0 {
            return Err(r);
        }
        Ok((before, after, (ts[0] as u64).wrapping_mul(NS_PER_SEC).wrapping_add(ts[1] as u64)))
    })
}

/// The TSC's rate, 32.32 ns per tick, from `base` and a later `(tsc, ns)`
/// of the same clock, once `CALIBRATE_NS` have passed; `None` before, or if
/// the rate is not a TSC's (1 MHz to 100 GHz).
pub(crate) fn rate(base: (u64, u64), now: (u64, u64)) -> Option<u64> {
    let (dt, dns) = (now.0.checked_sub(base.0)?, now.1.checked_sub(base.1)?);
    if dns < CALIBRATE_NS || dt == 0 {
        return None;
    }
    let mult = ((u128::from(dns) << 32) / u128::from(dt)) as u64;
    // 1 MHz .. 100 GHz: 1000 .. 0.01 ns per tick.
    ((1u64 << 32) / 100..=1000u64 << 32).contains(&mult).then_some(mult)
}

/// Reads `CLOCK_MONOTONIC_RAW` natively: the first read is the baseline,
/// later ones give [`rate`].
fn calibrate(c: &mut Clock) -> Option<u64> {
    let now = native_read(CLOCK_MONOTONIC_RAW, c.mult).ok()?;
    if c.base.1 == u64::MAX {
        c.base = now;
        return None;
    }
    rate(c.base, now)
}

/// Process backend: nanoseconds on clock `id` now; `None`: read it
/// natively (not calibrated yet, or calibration failed).
fn now_native(c: &mut Clock, id: u64) -> Option<Result<u64, i64>> {
    if c.mult == 0 {
        c.mult = calibrate(c)?;
        c.reanchor = ((u128::from(REANCHOR_NS) << 32) / u128::from(c.mult)) as u64;
    }
    let idx = id as usize;
    let tsc = rdtsc();
    if c.anchor[idx].1 == u64::MAX || tsc.saturating_sub(c.anchor[idx].0) >= c.reanchor {
        match native_read(id, c.mult) {
            Ok(a) => c.anchor[idx] = a,
            Err(e) => return Some(Err(e)),
        }
        if let Some(m) = calibrate(c) {
            c.mult = m;
        }
    }
    let (at, ans) = c.anchor[idx];
    // A thread on another CPU may read a TSC a little behind the anchor's.
    let ticks = rdtsc().saturating_sub(at);
    Some(Ok(ans.wrapping_add(((u128::from(ticks) * u128::from(c.mult)) >> 32) as u64)))
}

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
    if c.anchor[id as usize].1 == u64::MAX {
        let width = ((u128::from(ANCHOR_WIDTH_NS) << 32) / u128::from(c.mult.max(1))) as u64;
        c.anchor[id as usize] = anchor(width, || {
            let mut ts = [0i64; 2];
            let before = rdtsc();
            let r = forward(nr::clock_gettime, &[id, ts.as_mut_ptr() as u64, 0, 0, 0, 0], 0);
            let after = rdtsc();
            if r != 0 {
                return Err(r);
            }
            Ok((before, after, (ts[0] as u64).wrapping_mul(NS_PER_SEC).wrapping_add(ts[1] as u64)))
        })?;
    }
    let slot = c.anchor[id as usize];
    let ticks = rdtsc().wrapping_sub(slot.0);
    let elapsed = ((u128::from(ticks) * u128::from(c.mult)) >> 32) as u64;
    Ok(slot.1.wrapping_add(elapsed))
}

/// How far apart the two `rdtsc`s around an anchoring read may be before
/// the read is tried again: the anchor is their midpoint, so its error is
/// at most half of this.
const ANCHOR_WIDTH_NS: u64 = 20_000;
/// Most tries of an anchoring read.
const ANCHOR_TRIES: usize = 8;

/// An anchor `(tsc, ns)` from `read` (`(tsc before, tsc after, ns)`): the
/// narrowest of up to [`ANCHOR_TRIES`] reads, the first one narrower than
/// `width` ticks taken at once. A read that waited (a forwarded call that
/// woke a sleeping ring worker on a loaded machine took 50 ms, measured)
/// would otherwise put the anchor tens of milliseconds off.
pub(crate) fn anchor(
    width: u64,
    mut read: impl FnMut() -> Result<(u64, u64, u64), i64>,
) -> Result<(u64, u64), i64> {
    let mut best: Option<(u64, u64, u64)> = None;
    for _ in 0..ANCHOR_TRIES {
        let (before, after, ns) = read()?;
        let w = after.saturating_sub(before);
        if best.is_none_or(|b| w < b.0) {
            best = Some((w, before / 2 + after / 2, ns));
        }
        if w <= width {
            break;
        }
    }
    let (_, tsc, ns) = best.unwrap_or_default();
    Ok((tsc, ns))
}

/// Serves `nr` when it is a clock read this module handles; `None`: forward it.
pub(crate) fn serve(call: u64, a: &[u64; 6]) -> Option<i64> {
    // Under the lock, released at the end of the statement or scope.
    let mut c = CLOCK.lock();
    if c.mult == 0 && !c.native {
        return None;
    }
    let (id, out) = match call {
        nr::clock_gettime if served(a[0]) => (a[0], a[1]),
        nr::gettimeofday if a[1] == 0 => (CLOCK_REALTIME, a[0]),
        nr::time => (CLOCK_REALTIME, a[0]),
        _ => return None,
    };
    let read = if c.native { now_native(&mut c, id)? } else { now(&mut c, id) };
    let mut ns = match read {
        Ok(ns) => ns,
        Err(e) => return Some(e),
    };
    // The monotonic clocks never go back, on either backend: a new anchor
    // (process backend) may be a little behind the last extrapolation, and
    // two threads on two CPUs (KVM: two vCPUs) read TSCs a few tens of
    // nanoseconds apart on a host whose CPUs' counters are not exactly in
    // step (seen: 20-70 ns back on this nested host). Reads take one lock,
    // so each is at least the last one returned, by any thread, as Linux's
    // vDSO keeps its TSC reads at least its last cycle count. The realtime
    // clocks follow the host's, steps included, as natively.
    if id != CLOCK_REALTIME && id != CLOCK_REALTIME_COARSE {
        let idx = id as usize;
        ns = ns.max(c.last[idx]);
        c.last[idx] = ns;
    }
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
    fn calibration_waits_and_refuses_what_is_not_a_tsc() {
        use super::{rate, CALIBRATE_NS};
        let base = (1_000_000, 5_000_000_000);
        // 2.445428 GHz over 20 ms.
        let ticks = 2_445_428 * 20;
        let m = rate(base, (base.0 + ticks, base.1 + 20_000_000)).expect("a rate");
        let ns = ((u128::from(2_445_428_000u64) * u128::from(m)) >> 32) as u64;
        assert!(ns.abs_diff(1_000_000_000) <= 1, "{ns}");
        assert_eq!(rate(base, (base.0 + ticks, base.1 + CALIBRATE_NS - 1)), None, "too early");
        assert_eq!(rate(base, (base.0 - 1, base.1 + 20_000_000)), None, "TSC went back");
        assert_eq!(rate(base, (base.0 + 10, base.1 + 20_000_000)), None, "not a TSC: 500 Hz");
        assert_eq!(rate(base, (base.0 + ticks, base.1 - 1)), None, "clock went back");
    }

    #[test]
    fn an_anchor_is_the_narrowest_read() {
        use super::anchor;
        // Widths 1000, 30, 500: the second is narrower than 50 and taken.
        let mut reads = [(0u64, 1000u64, 7u64), (2000, 2030, 8), (3000, 3500, 9)].into_iter();
        assert_eq!(anchor(50, || Ok(reads.next().unwrap_or((0, 0, 0)))), Ok((2015, 8)));
        // None narrow enough: the narrowest of the eight tries.
        let mut n = 0u64;
        let got = anchor(0, || {
            n += 1;
            Ok((n * 1000, n * 1000 + 100 - n, n))
        });
        assert_eq!(got, Ok((8000 + 46, 8)));
        // A failed read is the answer.
        assert_eq!(anchor(50, || Err(-22)), Err(-22));
    }

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
