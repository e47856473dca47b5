//! Getting a monitor thread out of a blocking call: one real-time signal
//! whose handler is installed (vmm-sys-util's `register_signal_handler`)
//! without `SA_RESTART`, so the host call the thread is blocked in fails
//! with `EINTR`.
//!
//! - A vCPU thread ([`VcpuKickTarget`]): the handler also sets
//!   `kvm_run.immediate_exit` of the vCPU that thread runs (as Firecracker
//!   does). A kick that lands while the thread is inside `KVM_RUN` makes it
//!   return `EINTR`; one that lands while the thread is handling an exit
//!   makes its next `KVM_RUN` return `EINTR` at once. So one kick is always
//!   enough; the run loop clears the flag when it sees `EINTR`, then checks
//!   why it was kicked.
//! - A thread blocked in a host call it makes for the program (the ring
//!   worker serving a `read` or `nanosleep`, [`Kickable`]): the call fails
//!   with `EINTR`. A host call has no `immediate_exit`: a kick that lands
//!   just before the thread blocks is lost, so
//!   [`Kickable::kick_until_left`] repeats it until the thread has left.

use std::ffi::{c_int, c_void};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// The signal used for kicks.
fn kick_signal() -> c_int {
    SIGRTMIN() + 2
}

thread_local! {
    /// `kvm_run.immediate_exit` of the vCPU the calling thread runs, while
    /// a [`VcpuKickTarget`] is alive on it (null otherwise). Const-initialised
    /// with no destructor: reading it is a plain TLS access, safe in a
    /// signal handler.
    static IMMEDIATE_EXIT: AtomicPtr<u8> = const { AtomicPtr::new(std::ptr::null_mut()) };
    /// The wake word of the vCPU the calling thread runs (the one its
    /// program-futex sleeps also wait on: `crate::futex::direct`), while a
    /// [`VcpuKickTarget`] is alive on it (null otherwise). The handler
    /// changes it, so a kick that lands between the sleeper's last look
    /// at `immediate_exit` and its `futex_waitv` makes that wait return at
    /// once instead of being lost.
    static WAKE_WORD: AtomicPtr<AtomicU32> = const { AtomicPtr::new(std::ptr::null_mut()) };
}

extern "C" fn on_kick(_: c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
    let flag = IMMEDIATE_EXIT.with(|p| p.load(Ordering::Relaxed));
    if !flag.is_null() {
        // SAFETY: set by `VcpuKickTarget::enter` on this very thread (a
        // signal handler runs on the thread it interrupts), whose caller
        // keeps the kvm_run mapping alive until the target is dropped, which
        // clears the pointer first. The kernel reads the byte at KVM_RUN entry.
        unsafe { flag.write_volatile(1) };
    }
    let word = WAKE_WORD.with(|p| p.load(Ordering::Relaxed));
    if !word.is_null() {
        // SAFETY: set by `VcpuKickTarget::set_wake_word` on this thread,
        // whose caller keeps the word alive until the target is dropped,
        // which clears the pointer first. An atomic add is
        // async-signal-safe.
        unsafe { (*word).fetch_add(1, Ordering::SeqCst) };
    }
}

/// Installs the kick handler once for the process.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SA_SIGINFO, every signal blocked while it runs, no SA_RESTART.
        register_signal_handler(kick_signal(), on_kick).expect("SIGRTMIN+2 is a valid real-time signal");
    });
}

/// A `pthread_t` that [`kick`]'s caller vouches for.
struct Target(libc::pthread_t);

// SAFETY: a `Target` lives only inside `kick`, whose caller guarantees the
// thread has not exited (so its handle is valid) for that long.
unsafe impl Killable for Target {
    fn pthread_handle(&self) -> libc::pthread_t {
        self.0
    }
}

/// The calling thread's `pthread_t`, for [`kick`].
pub fn current_thread() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

/// Sends one kick to `thread` (a `pthread_t`).
///
/// # Safety
///
/// `thread` must be a thread of this process that has not exited (nor been
/// joined or detached-and-exited).
pub unsafe fn kick(thread: u64) {
    // Fails only for an invalid signal number, which the kick signal is not.
    let _ = Target(thread as libc::pthread_t).kill(kick_signal());
}

/// The calling thread runs a vCPU until this is dropped (on the same
/// thread): a kick makes its current or next `KVM_RUN` return `EINTR`.
#[derive(Debug)]
#[must_use]
pub struct VcpuKickTarget {
    /// Not `Send`: it must be dropped on the thread that entered.
    _this_thread: PhantomData<*const ()>,
}

impl VcpuKickTarget {
    /// Marks the calling thread as running the vCPU whose
    /// `kvm_run.immediate_exit` byte is at `immediate_exit`, and installs
    /// the kick handler.
    ///
    /// # Safety
    ///
    /// `immediate_exit` must stay mapped and writable until the returned
    /// value is dropped.
    pub unsafe fn enter(immediate_exit: *mut u8) -> VcpuKickTarget {
        install();
        IMMEDIATE_EXIT.with(|p| p.store(immediate_exit, Ordering::SeqCst));
        VcpuKickTarget { _this_thread: PhantomData }
    }
}

impl VcpuKickTarget {
    /// From now on (until this target is dropped) a kick of the calling
    /// thread also adds one to `word`, the vCPU's wake word.
    ///
    /// # Safety
    ///
    /// `word` must stay alive until the returned value is dropped.
    pub unsafe fn set_wake_word(&self, word: *const AtomicU32) {
        WAKE_WORD.with(|p| p.store(word.cast_mut(), Ordering::SeqCst));
    }
}

impl Drop for VcpuKickTarget {
    fn drop(&mut self) {
        IMMEDIATE_EXIT.with(|p| p.store(std::ptr::null_mut(), Ordering::SeqCst));
        WAKE_WORD.with(|p| p.store(std::ptr::null_mut(), Ordering::SeqCst));
    }
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
        self.thread.store(current_thread(), Ordering::SeqCst);
    }

    /// The calling thread has left the section.
    pub fn leave(&self) {
        self.thread.store(0, Ordering::SeqCst);
    }

    /// Kicks the thread in the section once, if there is one: a host call it
    /// is blocked in fails with `EINTR` (a kick that lands just before it
    /// blocks is lost: callers that must be sure repeat it).
    pub fn kick_once(&self) {
        let t = self.thread.load(Ordering::SeqCst);
        if t != 0 {
            // SAFETY: the caller's contract as for `kick_until_left`: the
            // thread in the section is not joined while it is kicked.
            unsafe { kick(t) };
        }
    }

    /// Kicks the thread in the section until it leaves (at most `max`),
    /// looking again after 20 µs, then twice as long each time up to every
    /// 5 ms (a kicked thread normally leaves within microseconds: a fixed
    /// 5 ms first step cost every process end 5 ms, measured on the KVM
    /// fork benchmark); returns whether it left. The caller must be the one
    /// that joins that thread (or the thread must outlive this call), so
    /// the id stays valid while it is kicked.
    pub fn kick_until_left(&self, max: Duration) -> bool {
        let mut step = Duration::from_micros(20);
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
            step = (step * 2).min(Duration::from_millis(5));
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

    #[test]
    fn a_kick_outside_kvm_run_sets_immediate_exit_while_the_target_lives() {
        let mut flag = 0u8;
        {
            // SAFETY: `flag` outlives the target.
            let _target = unsafe { VcpuKickTarget::enter(&mut flag) };
            // A kick to itself is handled before pthread_kill returns.
            // SAFETY: the calling thread is alive.
            unsafe { kick(current_thread()) };
        }
        assert_eq!(std::hint::black_box(flag), 1);
        // Once the target is dropped, a kick writes nothing.
        flag = 0;
        // SAFETY: the calling thread is alive.
        unsafe { kick(current_thread()) };
        assert_eq!(std::hint::black_box(flag), 0);
    }
}
