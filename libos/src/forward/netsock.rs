//! The direct data plane of connected TCP sockets (process backend;
//! docs/networking.md, "The direct data plane").
//!
//! Right after an `accept`, `accept4` or `connect` gave the program a
//! descriptor `v` (after a non-blocking `connect`'s `EINPROGRESS`: at the
//! first data call on `v`), the libos asks the monitor for the host socket behind it
//! (a forwarded `fcntl(v, NET_GRANT_CMD)`). The monitor answers 0 and sends
//! it on the file channel only for a connected TCP socket of a run that
//! needs to see none of its data calls (no trace, no limits, a policy that
//! allows them plainly); the libos puts it at `NET_NATIVE_BASE + v` (`dup3`
//! with `O_CLOEXEC`, the one form the filter allows) and from then on makes
//! the program's `read`, `write`, `readv`, `writev`, `recvfrom` and `sendto`
//! (with no address) on `v` natively, always with `MSG_DONTWAIT` and
//! `MSG_NOSIGNAL`: `recvfrom`/`sendto` with a NULL address, `recvmsg`/
//! `sendmsg` with the libos's own header (no address, no control data), all
//! with `NET_NATIVE_MAGIC`. Nothing natively names an address or carries a
//! descriptor; everything else on `v` (`connect`, `bind`, `setsockopt`,
//! `shutdown`, `sendmsg`/`recvmsg` of the program, `poll`/`epoll`, ...)
//! stays forwarded, on the monitor's descriptor for the same socket, so
//! readiness and options are the socket's own.
//!
//! Semantics kept: a native call that would block (`EAGAIN` on a socket the
//! program did not make non-blocking: `F_GETFL` natively) is forwarded, so
//! the monitor blocks as before (signals, timeouts, the run's end); a short
//! send on such a socket is finished by forwarded writes; `EPIPE` posts
//! `SIGPIPE` as a forwarded write does; `EBADF` (the native number is gone)
//! forwards the call.
//!
//! The table is the libos's own and only its: `close`, `dup2`/`dup3` onto
//! `v` and `close_range` over it drop the native copy before the call is
//! forwarded (so a later descriptor at `v` is never served by an old
//! socket); a forked child's host process has none (`after_fork`), an
//! `execve` starts a new host process. A hostile program that makes the
//! native calls itself reaches only sockets it was given, on numbers of
//! the range, in the forms above.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::filemap::MsgHdr;
use cabin_abi::boot::{NetGrant, NET_GRANT_CMD, NET_NATIVE_BASE, NET_NATIVE_COUNT, NET_NATIVE_MAGIC};

use super::{errno, nr};

const MSG_PEEK: u64 = 0x2;
const MSG_DONTWAIT: u64 = 0x40;
const MSG_NOSIGNAL: u64 = 0x4000;
const MSG_MORE: u64 = 0x8000;
const O_NONBLOCK: i64 = 0o4000;
const O_CLOEXEC: u64 = 0o2000000;
const F_GETFL: u64 = 3;
const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;
const EBADF: i64 = 9;
const EINPROGRESS: i64 = 115;

/// The program's flags a native receive keeps (others: forwarded).
const RECV_FLAGS: u64 = MSG_PEEK | MSG_DONTWAIT;
/// The program's flags a native send keeps (others: forwarded).
const SEND_FLAGS: u64 = MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE;

const COUNT: usize = NET_NATIVE_COUNT as usize;

/// `NATIVE[v]`: the host socket behind `v` is at `NET_NATIVE_BASE + v`.
static NATIVE: [AtomicBool; COUNT] = [const { AtomicBool::new(false) }; COUNT];
/// `GEN[v]`: bumped before every call that closes or replaces `v`, so a
/// grant racing with one (another thread closing the number the accept just
/// returned) drops its copy instead of keeping a socket the number no longer
/// names.
static GEN: [AtomicU32; COUNT] = [const { AtomicU32::new(0) }; COUNT];
/// `PENDING[v]`: a non-blocking `connect` on `v` answered `EINPROGRESS`; the
/// socket is asked for at its first data call (by then the program has
/// waited for the connection, as it must before using it).
static PENDING: [AtomicBool; COUNT] = [const { AtomicBool::new(false) }; COUNT];
/// The monitor hands out sockets (cleared at its first `EINVAL`: a run that
/// must see every call, or a monitor without it).
static ON: AtomicBool = AtomicBool::new(false);

/// Process backend with a file channel: ask for sockets.
pub(super) fn init(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

fn native(v: u64) -> Option<u64> {
    let i = usize::try_from(v).ok().filter(|&i| i < COUNT)?;
    NATIVE[i].load(Ordering::Acquire).then_some(NET_NATIVE_BASE + v)
}

/// Drops the native copy of `v`, if any (before a call that closes or
/// replaces `v` is forwarded).
fn forget(v: u64) {
    let Some(i) = usize::try_from(v).ok().filter(|&i| i < COUNT) else { return };
    GEN[i].fetch_add(1, Ordering::SeqCst);
    PENDING[i].store(false, Ordering::Relaxed);
    if NATIVE[i].swap(false, Ordering::SeqCst) {
        // SAFETY: closes the libos's own copy in the range; touches no memory.
        unsafe { crate::sys::syscall6(nr::close, &[NET_NATIVE_BASE + v, NET_NATIVE_MAGIC, 0, 0, 0, 0]) };
    }
}

/// A forked child: its host process holds none of its parent's copies.
pub(super) fn after_fork() {
    for n in NATIVE.iter().chain(&PENDING) {
        n.store(false, Ordering::Relaxed);
    }
}

/// Before call `nr` is served: drops the native copies of the descriptors
/// it closes or replaces.
pub(super) fn before(nr_: u64, a: &[u64; 6]) {
    match nr_ {
        nr::close => forget(a[0] as u32 as u64),
        nr::dup2 | nr::dup3 => forget(a[1] as u32 as u64),
        nr::close_range if a[2] & CLOSE_RANGE_CLOEXEC == 0 => {
            let (lo, hi) = (a[0] as u32 as u64, (a[1] as u32 as u64).min(NET_NATIVE_COUNT - 1));
            for v in lo..=hi {
                forget(v);
            }
        }
        _ => {}
    }
}

/// After `accept`/`accept4`/`connect` gave `v` (`r` its result): asks for
/// the socket and installs it.
pub(super) fn after(nr_: u64, a: &[u64; 6], r: i64) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let v = match nr_ {
        nr::accept | nr::accept4 if r >= 0 => r as u64,
        nr::connect if r == 0 => a[0] as u32 as u64,
        nr::connect if r == -EINPROGRESS => {
            if let Some(p) = PENDING.get(a[0] as u32 as usize) {
                p.store(true, Ordering::Relaxed);
            }
            return;
        }
        _ => return,
    };
    grant(v);
}

/// Asks for the socket behind `v` and installs it.
fn grant(v: u64) {
    if v >= NET_NATIVE_COUNT {
        return;
    }
    let generation = GEN[v as usize].load(Ordering::SeqCst);
    let _one = super::filemap::CHANNEL.lock();
    let g = super::forward(nr::fcntl, &[v, NET_GRANT_CMD, 0, 0, 0, 0], 0);
    if g == -errno::EINVAL || g == -errno::EPERM || g == -errno::ENOSYS {
        // The run wants every call seen (or the policy refuses the ask).
        ON.store(false, Ordering::Relaxed);
        return;
    }
    if g != 0 {
        return;
    }
    let Ok((grant, fd)) = super::filemap::receive::<NetGrant>() else { return };
    if grant.vfd == v && grant.magic == NET_NATIVE_MAGIC {
        // SAFETY: moves a descriptor the monitor sent into the range;
        // touches no memory; the filter allows exactly this form.
        let d = unsafe {
            crate::sys::syscall6(nr::dup3, &[fd, NET_NATIVE_BASE + v, O_CLOEXEC, NET_NATIVE_MAGIC, 0, 0])
        };
        if d == (NET_NATIVE_BASE + v) as i64 {
            NATIVE[v as usize].store(true, Ordering::SeqCst);
            if GEN[v as usize].load(Ordering::SeqCst) != generation {
                // Closed or replaced meanwhile: the number names another
                // file now (or none).
                forget(v);
            }
        }
    }
    super::filemap::close(fd);
}

/// Whether the socket at native `h` is non-blocking.
fn nonblocking(h: u64) -> bool {
    // SAFETY: F_GETFL reads the descriptor's flags, no memory.
    let fl = unsafe { crate::sys::syscall6(nr::fcntl, &[h, F_GETFL, NET_NATIVE_MAGIC, 0, 0, 0]) };
    fl >= 0 && fl & O_NONBLOCK != 0
}

/// Serves a data call on a native socket natively; `None`: not one (or a
/// form that stays forwarded), forward it.
pub(super) fn serve(nr_: u64, a: &[u64; 6]) -> Option<i64> {
    if !matches!(nr_, nr::read | nr::write | nr::readv | nr::writev | nr::recvfrom | nr::sendto) {
        return None;
    }
    let v = a[0] as u32 as u64;
    if let Some(p) = PENDING.get(v as usize) {
        if p.load(Ordering::Relaxed) && p.swap(false, Ordering::Relaxed) && ON.load(Ordering::Relaxed) {
            grant(v);
        }
    }
    let h = native(v)?;
    let (send, asked_nowait, raises_sigpipe) = match nr_ {
        nr::read | nr::readv => (false, false, false),
        nr::write | nr::writev => (true, false, true),
        nr::recvfrom if a[4] == 0 && a[3] & !RECV_FLAGS == 0 => (false, a[3] & MSG_DONTWAIT != 0, false),
        nr::sendto if a[4] == 0 && a[3] & !SEND_FLAGS == 0 => {
            (true, a[3] & MSG_DONTWAIT != 0, a[3] & MSG_NOSIGNAL == 0)
        }
        _ => return None,
    };
    let r = match nr_ {
        nr::read => call(nr::recvfrom, [h, a[1], a[2], MSG_DONTWAIT, 0, NET_NATIVE_MAGIC]),
        nr::write => call(nr::sendto, [h, a[1], a[2], MSG_DONTWAIT | MSG_NOSIGNAL, 0, NET_NATIVE_MAGIC]),
        nr::recvfrom => call(nr::recvfrom, [h, a[1], a[2], a[3] | MSG_DONTWAIT, 0, NET_NATIVE_MAGIC]),
        nr::sendto => {
            call(nr::sendto, [h, a[1], a[2], a[3] | MSG_DONTWAIT | MSG_NOSIGNAL, 0, NET_NATIVE_MAGIC])
        }
        _ => {
            let mut msg =
                MsgHdr { name: 0, namelen: 0, iov: a[1], iovlen: a[2], control: 0, controllen: 0, flags: 0 };
            let (n, f) =
                if send { (nr::sendmsg, MSG_DONTWAIT | MSG_NOSIGNAL) } else { (nr::recvmsg, MSG_DONTWAIT) };
            call(n, [h, &raw mut msg as u64, f, NET_NATIVE_MAGIC, 0, 0])
        }
    };
    if r == -errno::EAGAIN {
        if asked_nowait || nonblocking(h) {
            return Some(r);
        }
        // It would block: the monitor waits, as before.
        return None;
    }
    if r == -EBADF || r == -errno::EINTR {
        return None;
    }
    if r == -errno::EPIPE && raises_sigpipe {
        super::signals::sigpipe();
        return Some(r);
    }
    if send && r >= 0 && !asked_nowait {
        return Some(finish_send(nr_, a, r, h));
    }
    Some(r)
}

/// A native send took `done` bytes; on a blocking socket the rest is sent by
/// forwarded writes (which block as the program's call would have).
fn finish_send(nr_: u64, a: &[u64; 6], done: i64, h: u64) -> i64 {
    let total = match nr_ {
        nr::writev => iov_total(a[1], a[2]),
        _ => a[2],
    };
    if done as u64 >= total || nonblocking(h) {
        return done;
    }
    let mut sent = done as u64;
    let pieces: &[(u64, u64)] = &[(a[1], a[2])];
    let mut rest = |base: u64, len: u64, skip: u64| -> bool {
        if skip >= len {
            return true;
        }
        let r = super::forward(nr::write, &[a[0], base + skip, len - skip, 0, 0, 0], 0);
        if r > 0 {
            sent += r as u64;
        }
        r >= 0 && r as u64 == len - skip
    };
    if nr_ == nr::writev {
        let mut skip = done as u64;
        for i in 0..a[2].min(1024) {
            // SAFETY: the program's iovec array, which the native call
            // just read; a bad one faults in the program's own domain.
            let (base, len) = unsafe {
                let p = (a[1] as *const u64).add(2 * i as usize);
                (p.read_volatile(), p.add(1).read_volatile())
            };
            let s = skip.min(len);
            skip -= s;
            if !rest(base, len, s) {
                break;
            }
        }
    } else {
        let (base, len) = pieces[0];
        rest(base, len, done as u64);
    }
    sent as i64
}

fn iov_total(iov: u64, n: u64) -> u64 {
    let mut t = 0u64;
    for i in 0..n.min(1024) {
        // SAFETY: as in `finish_send`.
        let len = unsafe { (iov as *const u64).add(2 * i as usize + 1).read_volatile() };
        t = t.saturating_add(len);
    }
    t
}

fn call(n: u64, args: [u64; 6]) -> i64 {
    // SAFETY: a data call on a connected socket the monitor handed over,
    // with the program's own buffers (a bad one is EFAULT, as natively);
    // the filter allows exactly these forms.
    unsafe { crate::sys::syscall6(n, &args) }
}
