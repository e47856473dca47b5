//! The program's interval timers and POSIX timers (`alarm`, `setitimer`,
//! `timer_create`/`timer_settime`/...: docs/signals.md). The service
//! changes them ([`Timers`], from the ring worker); one session thread
//! ([`run_until`]) sleeps until the next expiry and posts the timer's
//! signal like a signal sent from outside ([`crate::signals::Poster`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use cabin_abi::boot::{si_code, SigPosted};

use crate::signals::Poster;

/// Most POSIX timers a program may have at once (Linux's default limit is
/// the pending-signal rlimit; this keeps the monitor's table small).
pub const MAX_TIMERS: usize = 64;

/// One armed or disarmed timer.
#[derive(Debug, Clone, Copy)]
pub struct Timer {
    /// Signal to post (0: `SIGEV_NONE`, nothing is posted).
    pub signo: u32,
    /// `si_code` of the posted signal (`SI_KERNEL` for `ITIMER_REAL`,
    /// `SI_TIMER` for POSIX timers).
    pub code: i32,
    /// `si_value` (POSIX timers), `si_tid` = the timer id.
    pub value: u64,
    /// The POSIX timer id (`si_timerid`).
    pub id: u32,
    /// Next expiry (`None`: disarmed).
    pub next: Option<Instant>,
    /// Period (zero: one-shot).
    pub interval: Duration,
    /// Expiries since the last one that was taken (`timer_getoverrun`).
    pub overrun: u32,
}

/// The table: slot 0 is `ITIMER_REAL` (`alarm`, `setitimer`), slots 1.. the
/// POSIX timers (id = slot - 1).
#[derive(Debug)]
pub struct Timers {
    table: Mutex<Vec<Option<Timer>>>,
    changed: Condvar,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers { table: Mutex::new(vec![None; MAX_TIMERS + 1]), changed: Condvar::new() }
    }
}

/// The slot of `ITIMER_REAL`.
pub const REAL: usize = 0;

impl Timers {
    /// Runs `f` on the table, then wakes the timer thread.
    pub fn with<R>(&self, f: impl FnOnce(&mut Vec<Option<Timer>>) -> R) -> R {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut t);
        self.changed.notify_all();
        r
    }
}

/// Remaining time of an armed timer (zero when disarmed).
pub fn remaining(t: &Timer, now: Instant) -> Duration {
    t.next.map_or(Duration::ZERO, |n| n.saturating_duration_since(now))
}

/// The timer thread: posts each expiry until `done`.
pub fn run_until(done: &AtomicBool, timers: &Timers, poster: &Poster) {
    let mut table = timers.table.lock().unwrap_or_else(|p| p.into_inner());
    while !done.load(Ordering::SeqCst) {
        let now = Instant::now();
        let mut fire = Vec::new();
        for t in table.iter_mut().flatten() {
            let Some(next) = t.next else { continue };
            if next > now {
                continue;
            }
            if t.interval.is_zero() {
                t.next = None;
            } else {
                // Missed periods count as overruns, as Linux counts them.
                let late = now.duration_since(next);
                let periods = (late.as_nanos() / t.interval.as_nanos().max(1)) as u32;
                t.next = Some(next + t.interval * (periods + 1));
                t.overrun = periods;
            }
            if t.signo != 0 {
                let words = SigPosted { code: t.code, pid: t.id, uid: t.overrun, pad: 0, value: t.value };
                fire.push((t.signo, words));
            }
        }
        let wait = table
            .iter()
            .flatten()
            .filter_map(|t| t.next)
            .min()
            .map_or(Duration::from_millis(100), |n| n.saturating_duration_since(Instant::now()))
            .min(Duration::from_millis(100));
        if !fire.is_empty() {
            drop(table);
            for (sig, words) in fire {
                poster.post_now(sig as i32, words);
            }
            table = timers.table.lock().unwrap_or_else(|p| p.into_inner());
            continue;
        }
        table = match timers.changed.wait_timeout(table, wait) {
            Ok((t, _)) => t,
            Err(p) => p.into_inner().0,
        };
    }
}

/// `si_code` of an `ITIMER_REAL` expiry.
pub const REAL_CODE: i32 = si_code::SI_KERNEL;
