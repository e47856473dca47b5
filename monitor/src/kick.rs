//! Getting a monitor thread out of a blocking host call: a real-time signal
//! whose handler does nothing, installed without `SA_RESTART`, so the call
//! the thread is blocked in (`KVM_RUN`, or a `read`/`nanosleep` the syscall
//! service is serving) returns `EINTR`.
//!
//! A [`Kickable`] names one thread while it is inside the section that may
//! block; [`Kickable::kick_until_left`] signals it until it has left.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

/// The signal used for kicks.
fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 2
}

extern "C" fn on_kick(_: i32) {}

/// Installs the (empty) kick handler once for the process.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: installs a handler that does nothing; the sigaction struct
        // is fully initialised (zeroed, then the fields set).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as extern "C" fn(i32) as usize;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Sends one kick to `thread` (a `pthread_t`).
///
/// # Safety
///
/// `thread` must be a thread of this process that has not been joined or
/// detached-and-exited.
pub unsafe fn kick(thread: u64) {
    // SAFETY: by the caller's contract the thread id is valid.
    unsafe { libc::pthread_kill(thread as libc::pthread_t, kick_signal()) };
}

/// The thread currently inside a section that may block, if any.
#[derive(Debug, Default)]
pub struct Kickable {
    thread: AtomicU64,
}

impl Kickable {
    /// The calling thread enters the section (installs the handler).
    pub fn enter(&self) {
        install();
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.thread.store(me as u64, Ordering::SeqCst);
    }

    /// The calling thread has left the section.
    pub fn leave(&self) {
        self.thread.store(0, Ordering::SeqCst);
    }

    /// Kicks the thread in the section every 5 ms until it leaves (at most
    /// `max`); returns whether it left. The caller must be the one that
    /// joins that thread (or the thread must outlive this call), so the id
    /// stays valid while it is kicked.
    pub fn kick_until_left(&self, max: Duration) -> bool {
        let step = Duration::from_millis(5);
        let mut waited = Duration::ZERO;
        loop {
            let t = self.thread.load(Ordering::SeqCst);
            if t == 0 {
                return true;
            }
            if waited >= max {
                return false;
            }
            // SAFETY: `t` is inside the section (not yet left, so not yet
            // joined: see the contract above).
            unsafe { kick(t) };
            std::thread::sleep(step);
            waited += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_kick_ends_a_blocking_sleep() {
        let k = Arc::new(Kickable::default());
        let k2 = k.clone();
        let t0 = Instant::now();
        let h = std::thread::spawn(move || {
            k2.enter();
            let ts = libc::timespec { tv_sec: 10, tv_nsec: 0 };
            // SAFETY: nanosleep with a local timespec and no remainder.
            let r = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            let e = std::io::Error::last_os_error().raw_os_error();
            k2.leave();
            (r, e)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(k.kick_until_left(Duration::from_secs(5)));
        let (r, e) = h.join().expect("join");
        assert_eq!((r, e), (-1, Some(libc::EINTR)));
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
