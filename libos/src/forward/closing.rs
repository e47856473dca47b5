//! `close` answered at once (issue 15; docs/syscalls.md, "close").
//!
//! A forwarded `close` costs a ring round trip whose answer is known in
//! advance when the descriptor is open: the monitor's `close` removes it
//! from the tree's table and answers 0 (the host's own `close` error is
//! dropped, as Linux releases the number whatever that error says). So the
//! libos puts such a `close` on the ring without waiting
//! ([`super::ring_client::post_known`]) and answers 0; the thread's next
//! request consumes the completion. The monitor still serves, traces and
//! audits the call, and serves it before anything the thread asks later
//! (each ring is served in order): a descriptor number the program reuses
//! at once (`close(3); open(...)` gets 3) is free by the time the `open` is
//! served.
//!
//! What the libos must know for that answer to be the monitor's:
//!
//! - the descriptor is open: [`OPEN`] holds the numbers this process's
//!   `open`, `openat`, `openat2` and `creat` returned (below [`FDS`]),
//!   cleared by every `close` and `close_range` the libos sees (its own
//!   too). A number the libos knows nothing of takes the ordinary round
//!   trip, which answers `EBADF` where Linux does;
//! - no other thread or process changes this table: the set is used while
//!   the process has one thread ([`disable`] before the second starts). A
//!   child process gets a copy of the table and of the set (no
//!   `CLONE_FILES`: the fork path refuses it);
//! - the policy cannot refuse `close`: the monitor then puts `close` in
//!   the boot page's `check_local`, and every `close` takes the round trip.
//!
//! What differs from a `close` that waits: a `close` that would end the
//! program (a tree limit, a policy stop) ends it once the monitor serves
//! it, a few instructions later, before any later request of the thread is
//! served; and its effect on another process (a pipe's end closed, a lock
//! released) lands when the monitor serves it, microseconds later, not
//! before the `close` returns — which that process can only tell by memory
//! it shares with this one, watched without a system call.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::nr;

/// Descriptors tracked; higher ones always take the round trip.
pub(super) const FDS: u64 = 1024;

/// Bit `fd`: `fd` is open in this process's table (the libos saw it
/// returned by an open and not closed since).
static OPEN: [AtomicU64; (FDS / 64) as usize] = [const { AtomicU64::new(0) }; (FDS / 64) as usize];

/// Whether [`OPEN`] is kept and used (until the second thread starts).
static ON: AtomicBool = AtomicBool::new(true);

fn bit(fd: u64) -> Option<(&'static AtomicU64, u64)> {
    (fd < FDS).then(|| (&OPEN[(fd / 64) as usize], 1 << (fd % 64)))
}

/// Stops answering `close` locally, for good: called while the caller is
/// the only thread, before a second one starts.
pub(super) fn disable() {
    ON.store(false, Ordering::Relaxed);
    for w in &OPEN {
        w.store(0, Ordering::Relaxed);
    }
}

/// `close(fd)` from the program: posted and answered 0 when `fd` is known
/// open (and forgotten); `None`: the caller forwards it and waits.
/// `refusable`: the policy may refuse `close`.
pub(super) fn close(fd: u64, refusable: bool, site: u64) -> Option<i64> {
    if !ON.load(Ordering::Relaxed) || refusable {
        return None;
    }
    let (word, mask) = bit(fd)?;
    if word.fetch_and(!mask, Ordering::Relaxed) & mask == 0 {
        return None;
    }
    if !super::ring_client::post_known(nr::close, &[fd, 0, 0, 0, 0, 0], site) {
        return None;
    }
    Some(0)
}

/// After a forwarded call `nr` with `args` returned `r` (the program's or
/// the libos's own): learns descriptors opened, forgets those closed.
pub(super) fn after(nr_: u64, args: &[u64; 6], r: i64) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    match nr_ {
        nr::open | nr::openat | nr::openat2 | nr::creat if r >= 0 => {
            if let Some((word, mask)) = bit(r as u64) {
                word.fetch_or(mask, Ordering::Relaxed);
            }
        }
        nr::close => forget(args[0]),
        nr::close_range => {
            for w in &OPEN {
                w.store(0, Ordering::Relaxed);
            }
        }
        _ => {}
    }
}

/// `fd` may be closed: it takes the round trip next time.
fn forget(fd: u64) {
    if let Some((word, mask)) = bit(fd) {
        word.fetch_and(!mask, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_descriptors_seen_opened_are_known() {
        disable();
        ON.store(true, Ordering::Relaxed);
        after(nr::openat, &[0; 6], 5);
        after(nr::open, &[0; 6], -2);
        after(nr::openat, &[0; 6], FDS as i64);
        let known = |fd: u64| bit(fd).is_some_and(|(w, m)| w.load(Ordering::Relaxed) & m != 0);
        assert!(known(5));
        assert!(!known(FDS));
        // A refusable close is never answered here, and keeps the number known.
        assert_eq!(close(5, true, 0), None);
        assert!(known(5));
        // A close the libos forwarded itself forgets it.
        after(nr::close, &[5, 0, 0, 0, 0, 0], 0);
        assert!(!known(5));
        // close_range forgets everything.
        after(nr::openat2, &[0; 6], 7);
        after(nr::close_range, &[100, 200, 0, 0, 0, 0], 0);
        assert!(!known(7));
        // Off for good once threads start.
        after(nr::openat, &[0; 6], 9);
        disable();
        after(nr::openat, &[0; 6], 9);
        assert!(!known(9));
        assert_eq!(close(9, false, 0), None);
    }
}
