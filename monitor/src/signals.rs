//! Signals sent to `cabinc run` reach the confined program
//! (docs/signals.md): the session blocks them in its threads and one
//! thread waits for them ([`forward_until`]); each is posted into the
//! domain's boot page ([`crate::boot::SignalBox`]) and the domain is woken
//! ([`Poster::post`]). The libos then does what Linux would: the program's
//! handler, or the default action (128 + signal, or nothing).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cabin_abi::boot::{si_code, SigPosted};

use crate::boot::SignalBox;
use crate::domain::Stopper;
use crate::tree::Tree;

/// The signals `cabinc run` forwards to the program: those a user sends a
/// command, and the terminal's job-control keys (Ctrl-C, Ctrl-\\, Ctrl-Z)
/// with `SIGCONT` (docs/processes.md, "Job control").
pub const FORWARDED: [i32; 8] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGQUIT,
    libc::SIGTSTP,
    libc::SIGCONT,
];

/// Where a signal `cabinc run` received goes before it is posted to the
/// root (`true`: delivered already, not posted):
/// - from the terminal (`SI_KERNEL`: Ctrl-C, Ctrl-\\, Ctrl-Z) while the
///   program put another process group than the root's in the
///   foreground (`tcsetpgrp`): to that job ([`Tree::terminal_signal`]), as
///   the kernel sends it to the terminal's foreground group;
/// - `SIGCONT` continues a stopped root (and is posted: its handler runs);
/// - `SIGINT`, `SIGTERM`, `SIGHUP` and `SIGQUIT` continue a stopped root
///   first, then are posted: a stopped root would keep them pending for
///   ever (`cabinc` itself never stops: the shell sees it running, so
///   nothing else could continue the root), and Ctrl-C must still end the
///   run.
pub fn route(tree: &Tree, sig: i32, code: i32) -> bool {
    if code == libc::SI_KERNEL
        && matches!(sig, libc::SIGINT | libc::SIGQUIT | libc::SIGTSTP)
        && tree.terminal_signal(sig)
    {
        return true;
    }
    if matches!(sig, libc::SIGCONT | libc::SIGINT | libc::SIGTERM | libc::SIGHUP | libc::SIGQUIT) {
        tree.continue_process(tree.root(), 0);
    }
    false
}

/// How long a posted signal may wait for the libos to take it before the
/// poster stops waking the domain (the program may keep it blocked).
const TAKE_WAIT: Duration = Duration::from_secs(2);

fn forwarded_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// The calling thread's signal mask before [`block`], to put back.
#[derive(Debug)]
pub struct Blocked(libc::sigset_t);

/// Blocks [`FORWARDED`] in the calling thread (and so in every thread it
/// starts from now on), so that only [`forward_until`] receives them.
pub fn block() -> Blocked {
    let set = forwarded_set();
    // SAFETY: a zeroed sigset_t is a valid output buffer.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: changes the calling thread's mask only; both sets are locals.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    Blocked(old)
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: puts back the calling thread's own earlier mask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Posts signals into one domain and wakes it.
pub struct Poster<'a> {
    /// The boot page's signal words.
    pub signals: SignalBox,
    /// The domain's stopper (its wake-up).
    pub stopper: Arc<dyn Stopper>,
    /// Interrupts the ring workers out of a blocking host call.
    pub interrupt: &'a (dyn Fn() + Sync),
}

impl std::fmt::Debug for Poster<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster").field("signals", &self.signals).finish_non_exhaustive()
    }
}

impl Poster<'_> {
    /// Posts `sig` (`si_code` SI_USER from user `uid`, `si_pid` 0: the
    /// sender is outside the domain) and wakes the domain until the libos
    /// has taken it (or [`TAKE_WAIT`] passed).
    pub fn post(&self, sig: i32, uid: u32) {
        let words = SigPosted { code: si_code::SI_USER, pid: 0, uid, pad: 0, value: 0 };
        self.post_now(sig, words);
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        // Until the libos took it, and, with threads, until a thread that
        // does not block it has it (the libos keeps the attention word set
        // while one could: on KVM the kick sends a vCPU spinning in program
        // code to the signal entry).
        while (self.signals.waiting(sig as u32) || self.signals.attention()) && waited < TAKE_WAIT {
            std::thread::sleep(step);
            waited += step;
            (self.interrupt)();
            self.stopper.rewake();
        }
    }
}

impl Poster<'_> {
    /// Posts `sig` with `words` and wakes the domain once (a timer: the
    /// next expiry wakes it again if this wake-up was lost).
    pub fn post_now(&self, sig: i32, words: SigPosted) {
        let fresh = !self.signals.waiting(sig as u32);
        self.signals.post(sig as u32, words);
        if fresh {
            self.stopper.wake_for_signal(sig);
        } else {
            self.stopper.rewake();
        }
        (self.interrupt)();
    }
}

/// Wakes [`forward_until`] when the run ends, so that `cabinc run` ends
/// when the program does (it waited up to 50 ms for a `sigtimedwait`
/// slice to run out).
#[derive(Debug)]
pub struct EndWake(Option<OwnedFd>);

impl EndWake {
    /// An eventfd to write at the end (none if the host has none left:
    /// then [`forward_until`] falls back to its 50 ms slices).
    pub fn new() -> EndWake {
        // SAFETY: eventfd takes no pointers; a valid result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        // SAFETY: `fd`, when valid, is ours alone.
        EndWake((fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Wakes the forwarder (after `done` was set).
    pub fn wake(&self) {
        if let Some(fd) = &self.0 {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a local to our eventfd.
            let _ = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }
}

impl Default for EndWake {
    fn default() -> Self {
        EndWake::new()
    }
}

/// Waits for the [`FORWARDED`] signals (blocked by [`block`]) and posts
/// each to the program, until `done` (and `end` woken).
///
/// The signals are read from a signalfd of the blocked set, polled with
/// `end`'s eventfd: a signalfd reads what `sigtimedwait` would take (the
/// signals pending for this thread or the process), and the poll ends at
/// once when the run does. Without a signalfd or an eventfd it waits in
/// 50 ms `sigtimedwait` slices instead.
///
/// `route(sig, code)` may deliver a signal elsewhere first (a signal from
/// the terminal to the tree's foreground job: `Tree::terminal_signal`);
/// when it answers `false` the signal is posted to the root.
pub fn forward_until(
    done: &AtomicBool,
    end: &EndWake,
    poster: &Poster,
    route: &(dyn Fn(i32, i32) -> bool + Sync),
) {
    let set = forwarded_set();
    // SAFETY: signalfd reads `set` (a local) and returns a new fd or -1.
    let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    let (Some(end_fd), true) = (&end.0, sfd >= 0) else {
        if sfd >= 0 {
            // SAFETY: our own fd, closed once.
            unsafe { libc::close(sfd) };
        }
        return forward_in_slices(done, poster, route);
    };
    // SAFETY: `sfd` is a new fd we own.
    let sfd = unsafe { OwnedFd::from_raw_fd(sfd) };
    while !done.load(Ordering::SeqCst) {
        let mut fds = [
            libc::pollfd { fd: sfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: end_fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: polls two descriptors of ours described by a local
        // array; the timeout bounds a missed wake to a second.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
        if n <= 0 || fds[0].revents & libc::POLLIN == 0 {
            continue;
        }
        loop {
            // SAFETY: a zeroed signalfd_siginfo is a valid output buffer.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let want = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: reads at most one record into the local.
            let got = unsafe {
                libc::read(sfd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), want)
            };
            if got != want as isize {
                break;
            }
            if !done.load(Ordering::SeqCst) && !route(info.ssi_signo as i32, info.ssi_code) {
                poster.post(info.ssi_signo as i32, info.ssi_uid);
            }
        }
    }
}

/// [`forward_until`] without a signalfd: 50 ms `sigtimedwait` slices.
fn forward_in_slices(done: &AtomicBool, poster: &Poster, route: &(dyn Fn(i32, i32) -> bool + Sync)) {
    let set = forwarded_set();
    let timeout = libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 };
    while !done.load(Ordering::SeqCst) {
        // SAFETY: a zeroed siginfo_t is a valid output buffer.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for signals of `set` (blocked in this thread);
        // writes `info`.
        let sig = unsafe { libc::sigtimedwait(&set, &mut info, &timeout) };
        if sig > 0 && !done.load(Ordering::SeqCst) && !route(sig, info.si_code) {
            // SAFETY: si_uid of a kill-style siginfo.
            let uid = unsafe { info.si_uid() };
            poster.post(sig, uid);
        }
    }
}
