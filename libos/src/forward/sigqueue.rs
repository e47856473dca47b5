//! The signal queue (docs/signals.md, "Queued and thread-directed
//! signals"): every instance of a real-time signal (each one is delivered,
//! in order, with its own `siginfo`, as Linux queues them), and every
//! signal aimed at one thread (`tkill`, `tgkill`, `rt_tgsigqueueinfo`),
//! which only that thread may take.
//!
//! A fixed array of [`QUEUE_LEN`] entries, lock-free: each entry has a
//! state word, `0` free, [`BUSY`] while one thread writes or reads it, or
//! `seq << 16 | target << 8 | sig` when it holds a signal (`target` 0: the
//! process, `k + 1`: the thread of slot `k`; `seq` orders the entries,
//! oldest first). A push claims a free entry with a compare-and-swap, a take
//! claims a full one the same way, so a kernel handler that interrupts the
//! libos on the same thread (the process backend's wake signal) can post
//! without waiting for anyone. A full queue refuses the signal (`sigqueue`
//! then gets `EAGAIN`, as Linux past `RLIMIT_SIGPENDING`); nothing is ever
//! allocated per signal.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

/// Entries in the queue (Linux's default `RLIMIT_SIGPENDING` is far
/// larger; the libos keeps its size fixed and small).
pub(crate) const QUEUE_LEN: usize = 32;

/// The state of an entry being written or read.
const BUSY: u64 = 1;

/// The queue.
pub(crate) struct Queue {
    state: [AtomicU64; QUEUE_LEN],
    info: [UnsafeCell<[u64; 16]>; QUEUE_LEN],
    seq: AtomicU64,
}

// SAFETY: an entry's `info` is only touched by the thread that moved its
// state to BUSY (a compare-and-swap makes that thread the only one).
unsafe impl Sync for Queue {}

pub(crate) static QUEUE: Queue = Queue {
    state: [const { AtomicU64::new(0) }; QUEUE_LEN],
    info: [const { UnsafeCell::new([0; 16]) }; QUEUE_LEN],
    seq: AtomicU64::new(0),
};

fn sig_of(s: u64) -> u64 {
    s & 0xff
}

fn target_of(s: u64) -> u64 {
    (s >> 8) & 0xff
}

fn full(s: u64) -> bool {
    s > BUSY
}

impl Queue {
    /// Queues `sig` with `info` for `target` (0: the process; `k + 1`: the
    /// thread of slot `k`). `false`: the queue is full.
    pub(crate) fn push(&self, sig: u64, target: u64, info: &[u64; 16]) -> bool {
        for (i, st) in self.state.iter().enumerate() {
            if st.compare_exchange(0, BUSY, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                // SAFETY: this thread owns entry `i` (BUSY, set by it).
                unsafe { *self.info[i].get() = *info };
                let seq = (self.seq.fetch_add(1, Ordering::SeqCst) + 1) & 0xffff_ffff_ffff;
                st.store(seq << 16 | (target & 0xff) << 8 | (sig & 0xff), Ordering::SeqCst);
                return true;
            }
        }
        false
    }

    /// The signals queued for `target`, as a mask (bit `n - 1`: signal `n`).
    pub(crate) fn pending(&self, target: u64) -> u64 {
        self.state
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .filter(|&s| full(s) && target_of(s) == target)
            .fold(0, |m, s| match sig_of(s) {
                n @ 1..=64 => m | 1 << (n - 1),
                _ => m,
            })
    }

    /// Whether `sig` is queued for `target`.
    pub(crate) fn has(&self, sig: u64, target: u64) -> bool {
        self.pending(target) & (1 << (sig - 1)) != 0
    }

    /// Whether `f(target, sig)` holds for some queued entry. (A plain loop:
    /// this runs on the delivery path, on the program's stack.)
    pub(crate) fn any(&self, f: impl Fn(u64, u64) -> bool) -> bool {
        for st in &self.state {
            let s = st.load(Ordering::SeqCst);
            if full(s) && f(target_of(s), sig_of(s)) {
                return true;
            }
        }
        false
    }

    /// Takes the oldest `sig` queued for `target` into `out`; `false`: none.
    /// (`out` rather than a returned copy: the delivery path runs on the
    /// program's stack, right below a frame it may have been handed, and
    /// must stay small.)
    pub(crate) fn take(&self, sig: u64, target: u64, out: &mut [u64; 16]) -> bool {
        // Another thread may take the entry found first: look again (a
        // bounded number of times: each failure means someone else took one).
        for _ in 0..QUEUE_LEN * 2 {
            let mut best: Option<(usize, u64)> = None;
            for (i, st) in self.state.iter().enumerate() {
                let s = st.load(Ordering::SeqCst);
                if full(s) && sig_of(s) == sig && target_of(s) == target && best.is_none_or(|(_, b)| s < b) {
                    best = Some((i, s));
                }
            }
            let Some((i, s)) = best else { return false };
            if self.state[i].compare_exchange(s, BUSY, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                // SAFETY: this thread owns entry `i` (BUSY, set by it).
                *out = unsafe { *self.info[i].get() };
                self.state[i].store(0, Ordering::SeqCst);
                return true;
            }
        }
        false
    }

    /// Drops every queued `sig`, whatever its target (it became ignored).
    pub(crate) fn discard(&self, sig: u64) {
        for st in &self.state {
            let s = st.load(Ordering::SeqCst);
            if full(s)
                && sig_of(s) == sig
                && st.compare_exchange(s, BUSY, Ordering::SeqCst, Ordering::Relaxed).is_ok()
            {
                st.store(0, Ordering::SeqCst);
            }
        }
    }

    /// Drops everything queued for `target` (its thread ended).
    pub(crate) fn discard_target(&self, target: u64) {
        for st in &self.state {
            let s = st.load(Ordering::SeqCst);
            if full(s)
                && target_of(s) == target
                && st.compare_exchange(s, BUSY, Ordering::SeqCst, Ordering::Relaxed).is_ok()
            {
                st.store(0, Ordering::SeqCst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Queue {
        Queue {
            state: [const { AtomicU64::new(0) }; QUEUE_LEN],
            info: [const { UnsafeCell::new([0; 16]) }; QUEUE_LEN],
            seq: AtomicU64::new(0),
        }
    }

    #[test]
    fn instances_come_out_in_order_per_target() {
        let q = fresh();
        for v in 0..5u64 {
            assert!(q.push(34, 0, &[34, 0, 0, v, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        }
        assert!(q.push(34, 3, &[34; 16]));
        assert_eq!(q.pending(0), 1 << 33);
        assert!(q.has(34, 3) && !q.has(34, 2));
        let mut out = [0u64; 16];
        for v in 0..5u64 {
            assert!(q.take(34, 0, &mut out));
            assert_eq!(out[3], v);
        }
        assert!(!q.take(34, 0, &mut out));
        assert!(q.take(34, 3, &mut out));
        assert_eq!(out, [34; 16]);
        assert_eq!(q.pending(3), 0);
    }

    #[test]
    fn a_full_queue_refuses_and_discard_frees() {
        let q = fresh();
        for _ in 0..QUEUE_LEN {
            assert!(q.push(40, 1, &[0; 16]));
        }
        assert!(!q.push(41, 0, &[0; 16]));
        q.discard_target(1);
        assert!(q.push(41, 0, &[0; 16]));
        q.discard(41);
        assert_eq!(q.pending(0), 0);
    }
}
