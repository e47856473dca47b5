//! Waiting on many descriptors: `poll`, `ppoll`, `select`, `pselect6`, the
//! `epoll` family, `eventfd`/`eventfd2` and `timerfd_*`.
//!
//! Every descriptor involved is one of the program's virtual ones: an epoll
//! instance, an eventfd or a timerfd is a host descriptor the monitor owns,
//! held in the program's table like a file or a pipe (so it counts against
//! the program's descriptor limit and its `[limits] open-files`). The
//! program never learns a host number: `poll`/`select` translate each
//! virtual number to its host descriptor and back, `epoll_ctl` registers
//! the host descriptor of a virtual one and passes `epoll_event.data`
//! through untouched (the host kernel hands it back as the program gave it),
//! and only descriptors of the program's table can be named, so nothing the
//! monitor holds for itself (ring doorbells, trace and audit files, the
//! trees) can be put in a wait set.
//!
//! # Closing a descriptor that is in an epoll set
//!
//! Linux keys an epoll registration on (open file description, fd number)
//! and drops it when the description is released (its last descriptor is
//! closed). Each virtual descriptor owns its own host descriptor, and `dup`
//! of a virtual descriptor is a host `dup` (the same description), so the
//! host kernel applies exactly that rule: `close` of a registered virtual
//! descriptor whose description lives on (a dup of it) keeps the
//! registration, which then still reports events with its `data`, and
//! `EPOLL_CTL_DEL` through the dup fails with `ENOENT`, as natively.
//!
//! # Blocking without holding the service
//!
//! A call that may block is served in two steps: [`prepare`] (with the
//! service: arguments copied out once and checked, virtual numbers
//! translated, host descriptors *held* through their `Arc`, see
//! [`super::fdtable::FdTable::hold`]) returns a [`Pending`] wait that owns
//! everything it needs; [`Pending::finish`] (without the service) blocks in
//! the host call and writes the results into program memory.
//! [`super::Service::begin`] exposes the split, so that a worker serving one
//! program thread can release a service-wide lock across the wait;
//! [`super::Service::handle`] runs both steps.
//!
//! # Stopping a wait
//!
//! The wait is one host call on the worker thread serving the program's
//! call (`ppoll`, `epoll_wait`, `epoll_pwait2`), so it only blocks that
//! worker. When the program is stopped (it ended, a time or CPU limit, a
//! policy kill, a protocol violation) the ring worker's
//! [`crate::ring::StopHandle::stop`] kicks the worker thread
//! ([`crate::kick::Kickable`], a signal without `SA_RESTART` repeated every
//! 5 ms until the worker leaves): the host call fails with `EINTR` at once,
//! the program gets `EINTR`, and the worker sees its stop flag. A kick
//! landing just before the host call blocks is repeated, so no wait
//! outlives a stop by more than a few milliseconds.
//!
//! # Signal masks
//!
//! `ppoll`, `pselect6`, `epoll_pwait` and `epoll_pwait2` take a signal mask
//! to hold during the wait. It is checked as Linux checks it (`sigsetsize`
//! must be 8: `EINVAL`; the mask must be readable) and copied into
//! [`Pending::sigmask`], but never given to the host call: the host mask is
//! the monitor's (it must keep the kick signal). Signal delivery to the
//! program (issue 13, signals) hooks in [`Pending::finish`]: install
//! [`Pending::sigmask`] as the thread's program mask for the wait, and kick
//! the worker when a signal the mask leaves open arrives (the wait then
//! ends with `EINTR`, as natively).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::fdtable::Entry;
use super::{host, Fail, Service, Sys};
use crate::memory::{GuestMemory, HostPieces};

/// `sizeof(struct epoll_event)` on x86-64 (packed: `u32 events`, `u64 data`).
const EPOLL_EVENT: u64 = 12;
/// Linux's `EP_MAX_EVENTS`: more is `EINVAL`.
const EP_MAX_EVENTS: i32 = i32::MAX / EPOLL_EVENT as i32;
/// Most events one `epoll_wait` whose array is in several host pieces
/// returns (its bounce buffer: 48 KiB).
const BOUNCE_EVENTS: i32 = 4096;
/// `sizeof(sigset_t)` as the kernel has it.
const SIGSET: u64 = 8;
/// `select`: the bits that make a descriptor readable, writable or
/// exceptional (Linux's `POLLIN_SET`, `POLLOUT_SET`, `POLLEX_SET`).
const POLLIN_SET: i16 = libc::POLLIN | libc::POLLRDNORM | libc::POLLRDBAND | libc::POLLHUP | libc::POLLERR;
const POLLOUT_SET: i16 = libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND | libc::POLLERR;
const POLLEX_SET: i16 = libc::POLLPRI;

/// A wait prepared with the service, finished without it (see the module
/// documentation).
#[derive(Debug)]
pub struct Pending {
    /// The program's signal mask during the wait (`ppoll`, `pselect6`,
    /// `epoll_pwait`, `epoll_pwait2` with a mask): checked and copied,
    /// not applied yet (signal delivery hooks here).
    pub sigmask: Option<u64>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Poll(PollWait),
    Select(SelectWait),
    Epoll(EpollWait),
}

/// How long a wait may block.
#[derive(Clone, Copy, Debug)]
enum Timeout {
    /// No timeout.
    Forever,
    /// At most this long (zero: do not block).
    For(libc::timespec),
}

impl Timeout {
    fn is_zero(&self) -> bool {
        matches!(self, Timeout::For(t) if t.tv_sec == 0 && t.tv_nsec == 0)
    }
}

/// Where a remaining time is written back when the wait ends (Linux's
/// `poll_select_finish`): `ppoll` and `pselect6` (a timespec), `select` (a
/// timeval). Not written for a zero timeout; a failed write is ignored,
/// as the kernel does for a timeout in read-only memory.
#[derive(Clone, Copy, Debug)]
enum WriteBack {
    None,
    Timespec(u64),
    Timeval(u64),
}

#[derive(Debug)]
struct PollWait {
    /// The program's array, for `revents`.
    addr: u64,
    pfds: Vec<libc::pollfd>,
    /// Entries whose descriptor is not open: `POLLNVAL`.
    invalid: Vec<bool>,
    /// Keeps every host descriptor in `pfds` open during the wait.
    _held: Vec<Arc<OwnedFd>>,
    timeout: Timeout,
    write_back: WriteBack,
}

#[derive(Debug)]
struct SelectWait {
    /// `nfds`, clipped to the descriptor table.
    n: usize,
    /// The three sets' addresses (0: absent).
    sets: [u64; 3],
    /// For each entry of `pfds`: its virtual number and which sets asked.
    want: Vec<(usize, u8)>,
    pfds: Vec<libc::pollfd>,
    _held: Vec<Arc<OwnedFd>>,
    timeout: Timeout,
    write_back: WriteBack,
}

#[derive(Debug)]
struct EpollWait {
    ep: Arc<OwnedFd>,
    /// The program's event array, checked writable for `max` events; or,
    /// when that array is in several host pieces, `bounce`'s buffer.
    events: *mut u8,
    /// A bounce buffer for `max` events and the array's pieces the events
    /// are copied out through (None: the kernel writes `events` directly).
    bounce: Option<(Vec<u8>, HostPieces)>,
    max: i32,
    timeout: Timeout,
}

// SAFETY: `events` points into the program memory mapping, which outlives
// every call served on it (the service never outlives the domain's memory),
// or into `bounce`'s own heap buffer (moves with it); the pointer is only
// handed to the host kernel.
unsafe impl Send for EpollWait {}

fn timespec(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec { tv_sec: sec, tv_nsec: nsec }
}

fn bad(e: i32) -> Fail {
    Fail::Errno(e)
}

/// Reads a `struct timespec` and checks it as `poll_select_set_timeout`
/// does (`EINVAL` for a negative or unnormalised one).
fn read_timespec(mem: &GuestMemory, addr: u64) -> Result<libc::timespec, Fail> {
    let b = mem.read(addr, 16)?;
    let sec = i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    let nsec = i64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(bad(libc::EINVAL));
    }
    Ok(timespec(sec, nsec))
}

/// An optional timespec timeout (NULL: forever).
fn timespec_timeout(mem: &GuestMemory, addr: u64) -> Result<Timeout, Fail> {
    if addr == 0 {
        return Ok(Timeout::Forever);
    }
    Ok(Timeout::For(read_timespec(mem, addr)?))
}

/// A millisecond timeout (`poll`, `epoll_wait`): negative is forever.
fn ms_timeout(ms: i32) -> Timeout {
    if ms < 0 {
        return Timeout::Forever;
    }
    Timeout::For(timespec(i64::from(ms / 1000), i64::from(ms % 1000) * 1_000_000))
}

/// A signal mask argument: NULL is none; else `size` must be 8 (`EINVAL`)
/// and the mask readable.
fn sigmask(mem: &GuestMemory, addr: u64, size: u64) -> Result<Option<u64>, Fail> {
    if addr == 0 {
        return Ok(None);
    }
    if size != SIGSET {
        return Err(bad(libc::EINVAL));
    }
    Ok(Some(mem.read_u64(addr)?))
}

/// Holds the host descriptor of virtual `vfd` (`None`: not open).
fn hold(s: &Service, vfd: i32) -> Option<Arc<OwnedFd>> {
    u64::try_from(vfd).ok().and_then(|v| s.fds.hold(v))
}

/// The table's handlers for the calls that wait: prepare, then finish at
/// once (what [`super::Service::handle`] does; [`super::Service::begin`]
/// lets a caller release the service in between).
macro_rules! waiting_handlers {
    ($($name:ident),*) => {$(
        pub(super) fn $name(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
            match prepare(s, mem, cabin_abi::syscalls::nr::$name, a) {
                Some(p) => p?.finish(mem),
                None => Err(Fail::Errno(libc::ENOSYS)),
            }
        }
    )*};
}

waiting_handlers!(poll, ppoll, select, pselect6, epoll_wait, epoll_pwait, epoll_pwait2);

/// Prepares blocking call `nr`, or `None` when it is not one.
pub(super) fn prepare(
    s: &mut Service,
    mem: &GuestMemory,
    nr: u64,
    a: &[u64; 6],
) -> Option<Result<Pending, Fail>> {
    use cabin_abi::syscalls::nr;
    Some(match nr {
        nr::poll => prepare_poll(s, mem, a[0], a[1] as u32, ms_timeout(a[2] as i32), WriteBack::None, None),
        nr::ppoll => (|| {
            let timeout = timespec_timeout(mem, a[2])?;
            let mask = sigmask(mem, a[3], a[4])?;
            let wb = if a[2] == 0 { WriteBack::None } else { WriteBack::Timespec(a[2]) };
            prepare_poll(s, mem, a[0], a[1] as u32, timeout, wb, mask)
        })(),
        nr::select => (|| {
            let (timeout, wb) = if a[4] == 0 {
                (Timeout::Forever, WriteBack::None)
            } else {
                (select_timeval(mem, a[4])?, WriteBack::Timeval(a[4]))
            };
            prepare_select(s, mem, a[0] as i32, [a[1], a[2], a[3]], timeout, wb, None)
        })(),
        nr::pselect6 => (|| {
            let timeout = timespec_timeout(mem, a[4])?;
            let mask = if a[5] == 0 {
                None
            } else {
                // struct { const sigset_t *ss; size_t ss_len; }
                let b = mem.read(a[5], 16)?;
                let ss = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
                let len = u64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
                sigmask(mem, ss, len)?
            };
            let wb = if a[4] == 0 { WriteBack::None } else { WriteBack::Timespec(a[4]) };
            prepare_select(s, mem, a[0] as i32, [a[1], a[2], a[3]], timeout, wb, mask)
        })(),
        nr::epoll_wait => prepare_epoll(s, mem, a, ms_timeout(a[3] as i32), None),
        nr::epoll_pwait => (|| {
            let mask = sigmask(mem, a[4], a[5])?;
            prepare_epoll(s, mem, a, ms_timeout(a[3] as i32), mask)
        })(),
        nr::epoll_pwait2 => (|| {
            let timeout = timespec_timeout(mem, a[3])?;
            let mask = sigmask(mem, a[4], a[5])?;
            prepare_epoll(s, mem, a, timeout, mask)
        })(),
        _ => return None,
    })
}

fn prepare_poll(
    s: &Service,
    mem: &GuestMemory,
    addr: u64,
    nfds: u32,
    timeout: Timeout,
    write_back: WriteBack,
    sigmask: Option<u64>,
) -> Result<Pending, Fail> {
    // Linux: more than RLIMIT_NOFILE entries is EINVAL (the program's limit
    // is its table size, at most 1024: the copy below is at most 8 KiB).
    if nfds as usize > s.fds.max() {
        return Err(bad(libc::EINVAL));
    }
    let n = nfds as usize;
    let raw = mem.read(addr, n * 8)?;
    let mut pfds = Vec::with_capacity(n);
    let mut invalid = vec![false; n];
    let mut held = Vec::with_capacity(n);
    for (i, c) in raw.chunks_exact(8).enumerate() {
        let vfd = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let events = i16::from_le_bytes([c[4], c[5]]);
        let fd = if vfd < 0 {
            -1
        } else if let Some(h) = hold(s, vfd) {
            let raw = h.as_raw_fd();
            held.push(h);
            raw
        } else {
            invalid[i] = true;
            -1
        };
        pfds.push(libc::pollfd { fd, events, revents: 0 });
    }
    Ok(Pending {
        sigmask,
        kind: Kind::Poll(PollWait { addr, pfds, invalid, _held: held, timeout, write_back }),
    })
}

/// `select`'s timeval, normalised as Linux does (`tv_usec` beyond a second
/// carries into `tv_sec`), then checked (`EINVAL` when negative).
fn select_timeval(mem: &GuestMemory, addr: u64) -> Result<Timeout, Fail> {
    let b = mem.read(addr, 16)?;
    let sec = i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    let usec = i64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
    let sec = sec.wrapping_add(usec / 1_000_000);
    let nsec = (usec % 1_000_000) * 1000;
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(bad(libc::EINVAL));
    }
    Ok(Timeout::For(timespec(sec, nsec)))
}

fn prepare_select(
    s: &Service,
    mem: &GuestMemory,
    nfds: i32,
    sets: [u64; 3],
    timeout: Timeout,
    write_back: WriteBack,
    sigmask: Option<u64>,
) -> Result<Pending, Fail> {
    if nfds < 0 {
        return Err(bad(libc::EINVAL));
    }
    // Linux clips nfds to the size of the descriptor table (at most 1024
    // here: 128 bytes a set).
    let n = (nfds as usize).min(s.fds.linux_size());
    let bytes = n.div_ceil(64) * 8;
    let mut bits = [[0u8; 128]; 3];
    for (k, &p) in sets.iter().enumerate() {
        if p != 0 {
            mem.read_into(p, &mut bits[k][..bytes])?;
        }
    }
    let mut want = Vec::new();
    let mut pfds = Vec::new();
    let mut held = Vec::new();
    for fd in 0..n {
        let (byte, bit) = (fd / 8, 1u8 << (fd % 8));
        let w = (0..3).fold(0u8, |w, k| if bits[k][byte] & bit != 0 { w | 1 << k } else { w });
        if w == 0 {
            continue;
        }
        // A descriptor in a set that is not open: EBADF, nothing written.
        let h = hold(s, fd as i32).ok_or(bad(libc::EBADF))?;
        let mut events = 0;
        if w & 1 != 0 {
            events |= libc::POLLIN | libc::POLLRDNORM | libc::POLLRDBAND;
        }
        if w & 2 != 0 {
            events |= libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND;
        }
        if w & 4 != 0 {
            events |= libc::POLLPRI;
        }
        pfds.push(libc::pollfd { fd: h.as_raw_fd(), events, revents: 0 });
        held.push(h);
        want.push((fd, w));
    }
    Ok(Pending {
        sigmask,
        kind: Kind::Select(SelectWait { n, sets, want, pfds, _held: held, timeout, write_back }),
    })
}

fn prepare_epoll(
    s: &Service,
    mem: &GuestMemory,
    a: &[u64; 6],
    timeout: Timeout,
    sigmask: Option<u64>,
) -> Result<Pending, Fail> {
    let mut max = a[2] as i32;
    if max <= 0 || max > EP_MAX_EVENTS {
        return Err(bad(libc::EINVAL));
    }
    // The host kernel writes the events straight into the program's array
    // (the monitor never reads them): checked writable for all of them.
    let bytes = max as u64 * EPOLL_EVENT;
    let (events, bounce) = match super::io::buffer(mem, a[1], bytes, true)? {
        super::io::Buf::One(p) => (p, None),
        // In pieces: the kernel fills a bounce buffer of at most
        // BOUNCE_EVENTS events (fewer than asked is legal), copied out
        // after the wait.
        super::io::Buf::Many(pc) => {
            max = max.min(BOUNCE_EVENTS);
            let mut v = vec![0u8; max as usize * EPOLL_EVENT as usize];
            (v.as_mut_ptr(), Some((v, pc)))
        }
    };
    let ep = hold(s, a[0] as i32).ok_or(bad(libc::EBADF))?;
    Ok(Pending { sigmask, kind: Kind::Epoll(EpollWait { ep, events, bounce, max, timeout }) })
}

/// Host `ppoll` on `pfds` with `ts` (None: forever), which the host updates
/// to the time left. No signal mask: the monitor's own stays (see the
/// module documentation).
fn host_ppoll(pfds: &mut [libc::pollfd], ts: &mut Option<libc::timespec>) -> Sys {
    let tsp = ts.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut libc::timespec);
    // SAFETY: `pfds` is our own array of `len` entries; `tsp` is null or a
    // local the kernel may update; no signal mask.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            pfds.as_mut_ptr(),
            pfds.len() as u64,
            tsp,
            std::ptr::null::<u8>(),
            8usize,
        )
    };
    host(r)
}

impl Pending {
    /// Blocks in the host call and writes the results into program memory
    /// (needs no service: see the module documentation).
    pub(super) fn finish(self, mem: &GuestMemory) -> Sys {
        // Signal delivery (issue 13) hooks here: `self.sigmask` is the
        // program's mask for the duration of the wait.
        match self.kind {
            Kind::Poll(w) => w.finish(mem),
            Kind::Select(w) => w.finish(mem),
            Kind::Epoll(w) => w.finish(),
        }
    }
}

/// Writes the time left `ts` at `wb` unless the timeout was zero; a write
/// that fails is ignored (Linux: "sticky" timeouts in read-only memory).
fn write_back(mem: &GuestMemory, wb: WriteBack, timeout: &Timeout, ts: &Option<libc::timespec>) {
    let Some(t) = ts else { return };
    if timeout.is_zero() {
        return;
    }
    let (addr, sub) = match wb {
        WriteBack::None => return,
        WriteBack::Timespec(p) => (p, t.tv_nsec),
        WriteBack::Timeval(p) => (p, t.tv_nsec / 1000),
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&t.tv_sec.to_le_bytes());
    b[8..].copy_from_slice(&sub.to_le_bytes());
    let _ = mem.write(addr, &b);
}

impl PollWait {
    fn finish(mut self, mem: &GuestMemory) -> Sys {
        let nval = self.invalid.iter().filter(|&&b| b).count();
        // An entry that is not open makes the call return at once.
        let mut ts = match self.timeout {
            _ if nval > 0 => Some(timespec(0, 0)),
            Timeout::Forever => None,
            Timeout::For(t) => Some(t),
        };
        let r = host_ppoll(&mut self.pfds, &mut ts);
        // Linux writes every `revents` back, also when interrupted, then
        // the time left (the order matters when they overlap).
        for (i, p) in self.pfds.iter().enumerate() {
            let revents = if self.invalid[i] { libc::POLLNVAL } else { p.revents };
            mem.write(self.addr + i as u64 * 8 + 6, &revents.to_le_bytes())?;
        }
        write_back(mem, self.write_back, &self.timeout, &ts);
        Ok(r? + nval as i64)
    }
}

impl SelectWait {
    fn finish(mut self, mem: &GuestMemory) -> Sys {
        let mut ts = match self.timeout {
            Timeout::Forever => None,
            Timeout::For(t) => Some(t),
        };
        let mut out = [[0u8; 128]; 3];
        let count = loop {
            let r = host_ppoll(&mut self.pfds, &mut ts);
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    write_back(mem, self.write_back, &self.timeout, &ts);
                    return Err(e);
                }
            };
            let mut count = 0i64;
            for (p, &(fd, w)) in self.pfds.iter_mut().zip(&self.want) {
                let (byte, bit) = (fd / 8, 1u8 << (fd % 8));
                for (k, set) in [POLLIN_SET, POLLOUT_SET, POLLEX_SET].into_iter().enumerate() {
                    if w & (1 << k) != 0 && p.revents & set != 0 {
                        out[k][byte] |= bit;
                        count += 1;
                    }
                }
                // Only in the exceptional set, and hung up or in error
                // (which poll always reports, select does not): leave it
                // out of the next rounds rather than spin on it.
                if w == 4 && p.revents & POLLEX_SET == 0 && p.revents != 0 {
                    p.fd = -1;
                }
                p.revents = 0;
            }
            // Ready for poll but for none of the sets asked: wait again
            // for the time left.
            if count > 0 || r == 0 || matches!(ts, Some(t) if t.tv_sec == 0 && t.tv_nsec == 0) {
                break count;
            }
        };
        // The sets (in, out, except: the last wins where they overlap),
        // then the time left, as Linux writes them.
        let bytes = self.n.div_ceil(64) * 8;
        for (k, &p) in self.sets.iter().enumerate() {
            if p != 0 {
                mem.write(p, &out[k][..bytes])?;
            }
        }
        write_back(mem, self.write_back, &self.timeout, &ts);
        Ok(count)
    }
}

impl EpollWait {
    fn finish(self) -> Sys {
        let ep = self.ep.as_raw_fd();
        let r = match self.timeout {
            Timeout::For(t) if t.tv_sec >= i64::from(i32::MAX / 1000) || t.tv_nsec % 1_000_000 != 0 => {
                // SAFETY: `events` is checked writable program memory for
                // `max` events; `t` is a local; no signal mask.
                unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait2,
                        ep,
                        self.events,
                        self.max,
                        &t,
                        std::ptr::null::<u8>(),
                        8usize,
                    )
                }
            }
            t => {
                let ms = match t {
                    Timeout::Forever => -1,
                    Timeout::For(t) => (t.tv_sec * 1000 + t.tv_nsec / 1_000_000) as i32,
                };
                // SAFETY: as above.
                unsafe { libc::epoll_wait(ep, self.events.cast(), self.max, ms) as i64 }
            }
        };
        let r = host(r)?;
        // The kernel returns at most `max`; a larger count would be a
        // host bug the program must not see.
        if r > i64::from(self.max) {
            return Err(Fail::Errno(libc::EIO));
        }
        if let Some((v, pc)) = &self.bounce {
            pc.copy_out(v.get(..r as usize * EPOLL_EVENT as usize).ok_or(Fail::Errno(libc::EIO))?);
        }
        Ok(r)
    }
}

// ---- creating and controlling: no wait --------------------------------

/// Puts a fresh host descriptor into the program's table (`EMFILE` when
/// full; the host descriptor is then closed).
fn install(s: &mut Service, fd: OwnedFd, cloexec: bool) -> Sys {
    let e = Entry { fd: fd.into(), cloexec, path: None, change: None };
    s.fds.insert(e, 0).map(|v| v as i64).ok_or(Fail::Errno(libc::EMFILE))
}

/// Takes ownership of a host call's new descriptor.
fn owned(r: i64) -> Result<OwnedFd, Fail> {
    let fd = host(r)? as RawFd;
    // SAFETY: a fresh descriptor the host call just made, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn epoll_create(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if a[0] as i32 <= 0 {
        return Err(bad(libc::EINVAL));
    }
    create_epoll(s, 0)
}

pub(super) fn epoll_create1(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let flags = a[0] as i32;
    if flags & !libc::EPOLL_CLOEXEC != 0 {
        return Err(bad(libc::EINVAL));
    }
    create_epoll(s, flags)
}

fn create_epoll(s: &mut Service, flags: i32) -> Sys {
    // SAFETY: no memory argument.
    let fd = owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as i64)?;
    install(s, fd, flags & libc::EPOLL_CLOEXEC != 0)
}

pub(super) fn epoll_ctl(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let op = a[1] as i32;
    // Linux copies the event first for every op but DEL (whose event may
    // be NULL), then looks at the descriptors, then at the op.
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    if op != libc::EPOLL_CTL_DEL {
        let b = mem.read(a[3], EPOLL_EVENT as usize)?;
        ev.events = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        ev.u64 = u64::from_le_bytes(b[4..12].try_into().unwrap_or([0; 8]));
    }
    let (ep, target) = (host_or_bad(s, a[0]), host_or_bad(s, a[2]));
    if ep < 0 || target < 0 {
        return Err(bad(libc::EBADF));
    }
    // The host kernel decides the rest as it does natively: EPERM for a
    // file that cannot be polled, EINVAL for a non-epoll `epfd`, the same
    // file, a bad op or flags, EEXIST, ENOENT, ELOOP, ENOSPC
    // (max_user_watches).
    // SAFETY: `ev` is a local; the descriptors are the program's, held by
    // the table for the call.
    host(unsafe { libc::epoll_ctl(ep, op, target, &mut ev) } as i64)
}

pub(super) fn eventfd(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    make_eventfd(s, a[0] as u32, 0)
}

pub(super) fn eventfd2(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    make_eventfd(s, a[0] as u32, a[1] as i32)
}

fn make_eventfd(s: &mut Service, init: u32, flags: i32) -> Sys {
    if flags & !(libc::EFD_CLOEXEC | libc::EFD_NONBLOCK | libc::EFD_SEMAPHORE) != 0 {
        return Err(bad(libc::EINVAL));
    }
    // SAFETY: no memory argument.
    let fd = owned(unsafe { libc::eventfd(init, flags | libc::EFD_CLOEXEC) } as i64)?;
    install(s, fd, flags & libc::EFD_CLOEXEC != 0)
}

pub(super) fn timerfd_create(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let (clock, flags) = (a[0] as i32, a[1] as i32);
    if flags & !(libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) != 0 {
        return Err(bad(libc::EINVAL));
    }
    // The host checks the clock (EINVAL; EPERM for the alarm clocks
    // without CAP_WAKE_ALARM).
    // SAFETY: no memory argument.
    let fd = owned(unsafe { libc::timerfd_create(clock, flags | libc::TFD_CLOEXEC) } as i64)?;
    install(s, fd, flags & libc::TFD_CLOEXEC != 0)
}

/// A program descriptor for a call that checks its other arguments before
/// the descriptor: the host descriptor, or -1 (which the host answers
/// `EBADF` after those checks, in Linux's order).
/// (Descriptor arguments are C `int`s: the upper half of the register is
/// ignored, as the kernel does.)
fn host_or_bad(s: &Service, vfd: u64) -> RawFd {
    u64::try_from(vfd as i32).ok().and_then(|v| s.fds.host(v)).unwrap_or(-1)
}

pub(super) fn timerfd_settime(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let b = mem.read(a[2], 32)?;
    let word = |i: usize| i64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let new =
        libc::itimerspec { it_interval: timespec(word(0), word(1)), it_value: timespec(word(2), word(3)) };
    let mut old = libc::itimerspec { it_interval: timespec(0, 0), it_value: timespec(0, 0) };
    let fd = host_or_bad(s, a[0]);
    // SAFETY: `new` and `old` are locals.
    host(unsafe { libc::timerfd_settime(fd, a[1] as i32, &new, &mut old) } as i64)?;
    if a[3] != 0 {
        mem.write(a[3], &itimerspec_bytes(&old))?;
    }
    Ok(0)
}

pub(super) fn timerfd_gettime(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let mut cur = libc::itimerspec { it_interval: timespec(0, 0), it_value: timespec(0, 0) };
    let fd = host_or_bad(s, a[0]);
    // SAFETY: `cur` is a local.
    host(unsafe { libc::timerfd_gettime(fd, &mut cur) } as i64)?;
    mem.write(a[1], &itimerspec_bytes(&cur))?;
    Ok(0)
}

fn itimerspec_bytes(t: &libc::itimerspec) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, v) in [t.it_interval.tv_sec, t.it_interval.tv_nsec, t.it_value.tv_sec, t.it_value.tv_nsec]
        .into_iter()
        .enumerate()
    {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::super::fs::FsPolicy;
    use super::*;
    use crate::memory::tests::test_memory;
    use cabin_abi::syscalls::nr;

    fn service() -> Service {
        let mut s = Service::new(FsPolicy::default(), b"/".to_vec(), 42);
        s.print_reports = false;
        s
    }

    const E: fn(i32) -> Result<i64, super::super::Violation> = |e| Ok(-i64::from(e));

    /// A pipe: (read end, write end) as virtual numbers.
    fn pipe(s: &mut Service, m: &GuestMemory) -> (u64, u64) {
        assert_eq!(s.handle(m, nr::pipe2, [0x1f00, 0, 0, 0, 0, 0]), Ok(0));
        let b = m.read(0x1f00, 8).unwrap();
        (u64::from(b[0]), u64::from(b[4]))
    }

    fn pollfd(m: &GuestMemory, at: u64, fd: i32, events: i16) {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&fd.to_le_bytes());
        b[4..6].copy_from_slice(&events.to_le_bytes());
        m.write(at, &b).unwrap();
    }

    fn revents(m: &GuestMemory, at: u64) -> i16 {
        let b = m.read(at + 6, 2).unwrap();
        i16::from_le_bytes([b[0], b[1]])
    }

    fn epoll_event(m: &GuestMemory, at: u64, events: u32, data: u64) {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&events.to_le_bytes());
        b[4..].copy_from_slice(&data.to_le_bytes());
        m.write(at, &b).unwrap();
    }

    fn read_event(m: &GuestMemory, at: u64) -> (u32, u64) {
        let b = m.read(at, 12).unwrap();
        (u32::from_le_bytes(b[..4].try_into().unwrap()), u64::from_le_bytes(b[4..].try_into().unwrap()))
    }

    #[test]
    fn poll_translates_descriptors_and_reports_invalid_ones() {
        let m = test_memory();
        let mut s = service();
        let (r, w) = pipe(&mut s, &m);
        pollfd(&m, 0x1000, r as i32, libc::POLLIN);
        pollfd(&m, 0x1008, w as i32, libc::POLLOUT);
        pollfd(&m, 0x1010, 700, libc::POLLIN);
        pollfd(&m, 0x1018, -1, libc::POLLIN);
        assert_eq!(s.handle(&m, nr::poll, [0x1000, 4, 0, 0, 0, 0]), Ok(2));
        assert_eq!(revents(&m, 0x1000), 0);
        assert_eq!(revents(&m, 0x1008), libc::POLLOUT);
        assert_eq!(revents(&m, 0x1010), libc::POLLNVAL);
        assert_eq!(revents(&m, 0x1018), 0);
        m.write(0x1e00, b"x").unwrap();
        assert_eq!(s.handle(&m, nr::write, [w, 0x1e00, 1, 0, 0, 0]), Ok(1));
        // nfds is an unsigned int: the upper half is ignored.
        assert_eq!(s.handle(&m, nr::poll, [0x1000, (1 << 32) | 1, u64::MAX, 0, 0, 0]), Ok(1));
        assert_eq!(revents(&m, 0x1000), libc::POLLIN);
    }

    #[test]
    fn poll_bounds() {
        let m = test_memory();
        let mut s = service();
        assert_eq!(s.handle(&m, nr::poll, [0x1000, 1025, 0, 0, 0, 0]), E(libc::EINVAL));
        assert_eq!(s.handle(&m, nr::poll, [0x1000, u32::MAX.into(), 0, 0, 0, 0]), E(libc::EINVAL));
        // 1024 entries do not fit the 4 KiB test memory: a wild pointer.
        assert!(s.handle(&m, nr::poll, [0x1000, 1024, 0, 0, 0, 0]).is_err());
        assert_eq!(s.handle(&m, nr::poll, [0, 0, 0, 0, 0, 0]), Ok(0));
        // ppoll: a bad timespec, a bad mask size.
        m.write(0x1100, &[0xff; 16]).unwrap();
        assert_eq!(s.handle(&m, nr::ppoll, [0x1000, 0, 0x1100, 0, 0, 0]), E(libc::EINVAL));
        m.write(0x1100, &[0; 16]).unwrap();
        assert_eq!(s.handle(&m, nr::ppoll, [0x1000, 0, 0x1100, 0x1200, 7, 0]), E(libc::EINVAL));
        assert_eq!(s.handle(&m, nr::ppoll, [0x1000, 0, 0x1100, 0x1200, 8, 0]), Ok(0));
        assert!(s.handle(&m, nr::ppoll, [0x1000, 0, 0x1100, 0x20000, 8, 0]).is_err(), "mask not readable");
        // A timeout in read-only memory is read, and its write-back skipped.
        assert_eq!(s.handle(&m, nr::ppoll, [0x1000, 0, 0x10000, 0, 0, 0]), Ok(0));
    }

    #[test]
    fn ppoll_writes_back_the_time_left() {
        let m = test_memory();
        let mut s = service();
        let (r, _w) = pipe(&mut s, &m);
        pollfd(&m, 0x1000, r as i32, libc::POLLIN);
        let mut ts = [0u8; 16];
        ts[8..].copy_from_slice(&2_000_000i64.to_le_bytes()); // 2 ms
        m.write(0x1100, &ts).unwrap();
        assert_eq!(s.handle(&m, nr::ppoll, [0x1000, 1, 0x1100, 0, 0, 0]), Ok(0));
        assert_eq!(m.read(0x1100, 16).unwrap(), [0u8; 16], "the whole timeout was used");
    }

    #[test]
    fn select_maps_sets_both_ways() {
        let m = test_memory();
        let mut s = service();
        let (r, w) = pipe(&mut s, &m);
        let (r2, _w2) = pipe(&mut s, &m);
        let set = |at: u64, fds: &[u64]| {
            let mut b = [0u8; 128];
            for &f in fds {
                b[f as usize / 8] |= 1 << (f % 8);
            }
            m.write(at, &b).unwrap();
        };
        set(0x1000, &[r, r2]);
        set(0x1080, &[w]);
        // timeval {1, 500000}: not written back when the call ends early?
        // It is (Linux writes the time left whenever the timeout was not 0).
        let mut tv = [0u8; 16];
        tv[..8].copy_from_slice(&1i64.to_le_bytes());
        tv[8..].copy_from_slice(&500_000i64.to_le_bytes());
        m.write(0x1200, &tv).unwrap();
        let nfds = r.max(w).max(r2) + 1;
        assert_eq!(s.handle(&m, nr::select, [nfds, 0x1000, 0x1080, 0, 0x1200, 0]), Ok(1));
        assert_eq!(m.read(0x1000, 8).unwrap(), [0u8; 8]);
        assert_eq!(m.read(0x1080, 1).unwrap()[0], 1 << (w % 8));
        let left = m.read(0x1200, 16).unwrap();
        let sec = i64::from_le_bytes(left[..8].try_into().unwrap());
        let usec = i64::from_le_bytes(left[8..].try_into().unwrap());
        assert!(sec <= 1 && (0..1_000_000).contains(&usec), "{sec} {usec}");
        // A closed descriptor in a set: EBADF, nothing written.
        set(0x1000, &[r, 40]);
        assert_eq!(s.handle(&m, nr::select, [41, 0x1000, 0, 0, 0, 0]), E(libc::EBADF));
        // Negative nfds, a negative or unnormalised timeval.
        assert_eq!(s.handle(&m, nr::select, [u64::MAX, 0, 0, 0, 0, 0]), E(libc::EINVAL));
        tv[8..].copy_from_slice(&(-1i64).to_le_bytes());
        m.write(0x1200, &tv).unwrap();
        assert_eq!(s.handle(&m, nr::select, [0, 0, 0, 0, 0x1200, 0]), E(libc::EINVAL));
        tv[..8].copy_from_slice(&0i64.to_le_bytes());
        tv[8..].copy_from_slice(&1_000_000i64.to_le_bytes()); // carries into tv_sec
        m.write(0x1200, &tv).unwrap();
        set(0x1000, &[]);
        // nfds is an int; a huge one is clipped to the table (128 bytes a set).
        assert_eq!(s.handle(&m, nr::select, [0x8000_0000, 0x1000, 0, 0, 0x1200, 0]), E(libc::EINVAL));
        assert_eq!(s.handle(&m, nr::select, [1 << 40, 0x1000, 0, 0, 0x1200, 0]), Ok(0));
        assert_eq!(s.handle(&m, nr::select, [100_000, 0x1000, 0, 0, 0x1200, 0]), Ok(0));
        // A set that runs off program memory for the clipped size.
        assert!(s.handle(&m, nr::select, [1024, 0x1ffc, 0, 0, 0x1200, 0]).is_err());
    }

    #[test]
    fn epoll_returns_the_programs_data_and_follows_close() {
        let m = test_memory();
        let mut s = service();
        let ep = s.handle(&m, nr::epoll_create1, [libc::EPOLL_CLOEXEC as u64, 0, 0, 0, 0, 0]).unwrap() as u64;
        let (r, w) = pipe(&mut s, &m);
        epoll_event(&m, 0x1000, libc::EPOLLIN as u32, 0xfeed_f00d_dead_beef);
        assert_eq!(s.handle(&m, nr::epoll_ctl, [ep, 1, r, 0x1000, 0, 0]), Ok(0));
        assert_eq!(s.handle(&m, nr::epoll_ctl, [ep, 1, r, 0x1000, 0, 0]), E(libc::EEXIST));
        assert_eq!(s.handle(&m, nr::epoll_wait, [ep, 0x1100, 8, 0, 0, 0]), Ok(0));
        m.write(0x1e00, b"x").unwrap();
        s.handle(&m, nr::write, [w, 0x1e00, 1, 0, 0, 0]).unwrap();
        assert_eq!(s.handle(&m, nr::epoll_wait, [ep, 0x1100, 8, 0, 0, 0]), Ok(1));
        assert_eq!(read_event(&m, 0x1100), (libc::EPOLLIN as u32, 0xfeed_f00d_dead_beef));
        // A dup keeps the description (and the registration) alive.
        let d = s.handle(&m, nr::dup, [r, 0, 0, 0, 0, 0]).unwrap() as u64;
        assert_eq!(s.handle(&m, nr::close, [r, 0, 0, 0, 0, 0]), Ok(0));
        assert_eq!(s.handle(&m, nr::epoll_wait, [ep, 0x1100, 8, 0, 0, 0]), Ok(1));
        assert_eq!(s.handle(&m, nr::epoll_ctl, [ep, 2, d, 0, 0, 0]), E(libc::ENOENT));
        // The last close drops it.
        assert_eq!(s.handle(&m, nr::close, [d, 0, 0, 0, 0, 0]), Ok(0));
        assert_eq!(s.handle(&m, nr::epoll_wait, [ep, 0x1100, 8, 0, 0, 0]), Ok(0));
    }

    #[test]
    fn epoll_bounds_and_foreign_descriptors() {
        let m = test_memory();
        let mut s = service();
        let ep = s.handle(&m, nr::epoll_create, [1, 0, 0, 0, 0, 0]).unwrap() as u64;
        assert_eq!(s.handle(&m, nr::epoll_create, [0, 0, 0, 0, 0, 0]), E(libc::EINVAL));
        assert_eq!(s.handle(&m, nr::epoll_create1, [1, 0, 0, 0, 0, 0]), E(libc::EINVAL));
        for max in [0u64, u64::MAX, (i32::MAX / 12 + 1) as u64] {
            assert_eq!(s.handle(&m, nr::epoll_wait, [ep, 0x1000, max, 0, 0, 0]), E(libc::EINVAL), "{max}");
        }
        // The largest valid count: the array must be program memory.
        assert!(s.handle(&m, nr::epoll_wait, [ep, 0x1000, (i32::MAX / 12) as u64, 0, 0, 0]).is_err());
        assert!(s.handle(&m, nr::epoll_wait, [ep, 0x10000, 1, 0, 0, 0]).is_err(), "read-only array");
        assert_eq!(s.handle(&m, nr::epoll_wait, [77, 0x1000, 1, 0, 0, 0]), E(libc::EBADF));
        // Not an epoll descriptor: the host's EINVAL.
        assert_eq!(s.handle(&m, nr::epoll_wait, [1, 0x1000, 1, 0, 0, 0]), E(libc::EINVAL));
        // Host descriptors the monitor holds are not the program's: every
        // number the monitor may use is EBADF unless the program has it.
        epoll_event(&m, 0x1100, libc::EPOLLIN as u32, 1);
        let monitor_fd = std::fs::File::open("/dev/null").unwrap();
        let hfd = monitor_fd.as_raw_fd() as u64;
        assert!(hfd > 3);
        assert_eq!(s.handle(&m, nr::epoll_ctl, [ep, 1, hfd + 100, 0x1100, 0, 0]), E(libc::EBADF));
        assert_eq!(s.handle(&m, nr::epoll_ctl, [ep, 1, u64::MAX, 0x1100, 0, 0]), E(libc::EBADF));
        // Itself; a bad op; DEL with a NULL event; a wild event pointer.
        let (r, _w) = pipe(&mut s, &m);
        assert_eq!(s.handle(&m, nr::epoll_ctl, [ep, 1, ep, 0x1100, 0, 0]), E(libc::EINVAL));
        assert_eq!(s.handle(&m, nr::epoll_ctl, [ep, 9, r, 0x1100, 0, 0]), E(libc::EINVAL));
        assert_eq!(s.handle(&m, nr::epoll_ctl, [ep, 2, r, 0, 0, 0]), E(libc::ENOENT));
        assert!(s.handle(&m, nr::epoll_ctl, [ep, 1, r, 0xdead_0000, 0, 0]).is_err());
        // The upper half of a descriptor argument is ignored (a C int).
        assert_eq!(s.handle(&m, nr::epoll_ctl, [ep | 1 << 32, 1, r | 7 << 32, 0x1100, 0, 0]), Ok(0));
        // Mask sizes.
        assert_eq!(s.handle(&m, nr::epoll_pwait, [ep, 0x1000, 1, 0, 0x1100, 16]), E(libc::EINVAL));
        assert_eq!(s.handle(&m, nr::epoll_pwait, [ep, 0x1000, 1, 0, 0x1100, 8]), Ok(0));
        m.write(0x1200, &[0xff; 16]).unwrap();
        assert_eq!(s.handle(&m, nr::epoll_pwait2, [ep, 0x1000, 1, 0x1200, 0, 0]), E(libc::EINVAL));
        m.write(0x1200, &[0; 16]).unwrap();
        assert_eq!(s.handle(&m, nr::epoll_pwait2, [ep, 0x1000, 1, 0x1200, 0, 0]), Ok(0));
    }

    #[test]
    fn eventfd_and_timerfd() {
        let m = test_memory();
        let mut s = service();
        let e = s.handle(&m, nr::eventfd2, [3, libc::EFD_NONBLOCK as u64, 0, 0, 0, 0]).unwrap() as u64;
        assert_eq!(s.handle(&m, nr::eventfd2, [0, 0x4000_0000, 0, 0, 0, 0]), E(libc::EINVAL));
        assert_eq!(s.handle(&m, nr::read, [e, 0x1000, 8, 0, 0, 0]), Ok(8));
        assert_eq!(m.read_u64(0x1000).unwrap(), 3);
        assert_eq!(s.handle(&m, nr::read, [e, 0x1000, 8, 0, 0, 0]), E(libc::EAGAIN));
        let t =
            s.handle(&m, nr::timerfd_create, [libc::CLOCK_MONOTONIC as u64, 0, 0, 0, 0, 0]).unwrap() as u64;
        assert_eq!(s.handle(&m, nr::timerfd_create, [99, 0, 0, 0, 0, 0]), E(libc::EINVAL));
        // 1 ns, then every 1 ms.
        let its: [i64; 4] = [0, 1_000_000, 0, 1];
        let b: Vec<u8> = its.iter().flat_map(|v| v.to_le_bytes()).collect();
        m.write(0x1100, &b).unwrap();
        assert_eq!(s.handle(&m, nr::timerfd_settime, [t, 0, 0x1100, 0x1200, 0, 0]), Ok(0));
        assert_eq!(m.read(0x1200, 32).unwrap(), [0u8; 32], "no previous setting");
        assert_eq!(s.handle(&m, nr::read, [t, 0x1000, 8, 0, 0, 0]), Ok(8));
        assert!(m.read_u64(0x1000).unwrap() >= 1);
        assert_eq!(s.handle(&m, nr::timerfd_gettime, [t, 0x1300, 0, 0, 0, 0]), Ok(0));
        assert_eq!(i64::from_le_bytes(m.read(0x1308, 8).unwrap().try_into().unwrap()), 1_000_000);
        // Bad flags come before a bad descriptor, as in Linux.
        assert_eq!(s.handle(&m, nr::timerfd_settime, [77, 0xff, 0x1100, 0, 0, 0]), E(libc::EINVAL));
        assert_eq!(s.handle(&m, nr::timerfd_settime, [77, 0, 0x1100, 0, 0, 0]), E(libc::EBADF));
        assert_eq!(s.handle(&m, nr::timerfd_gettime, [e, 0x1300, 0, 0, 0, 0]), E(libc::EINVAL));
    }

    #[test]
    fn waits_count_against_the_descriptor_table() {
        let m = test_memory();
        let mut s = service();
        s.set_fd_capacity(16);
        let mut made = 0;
        while s.handle(&m, nr::eventfd, [0, 0, 0, 0, 0, 0]).unwrap() >= 0 {
            made += 1;
        }
        assert_eq!(made, 13);
        assert_eq!(s.handle(&m, nr::epoll_create1, [0, 0, 0, 0, 0, 0]), E(libc::EMFILE));
        assert_eq!(s.handle(&m, nr::timerfd_create, [1, 0, 0, 0, 0, 0]), E(libc::EMFILE));
        // poll's bound follows the table size too.
        assert_eq!(s.handle(&m, nr::poll, [0x1000, 17, 0, 0, 0, 0]), E(libc::EINVAL));
    }

    #[test]
    fn a_wait_is_prepared_then_finished_and_a_kick_ends_it() {
        use crate::kick::Kickable;
        use std::time::Duration;
        let k = Arc::new(Kickable::default());
        let k2 = k.clone();
        let h = std::thread::spawn(move || {
            let m = test_memory();
            let mut s = service();
            let (r, _w) = pipe(&mut s, &m);
            pollfd(&m, 0x1000, r as i32, libc::POLLIN);
            // Forever, with a mask: prepared, then finished without the service.
            let super::super::Begun::Wait(w) = s.begin(&m, nr::ppoll, [0x1000, 1, 0, 0x1100, 8, 0]) else {
                panic!("ppoll should wait");
            };
            assert_eq!(w.sigmask(), Some(0));
            k2.enter();
            let r = w.finish(&m);
            k2.leave();
            drop(s);
            r
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(k.kick_until_left(Duration::from_secs(10)));
        assert_eq!(h.join().unwrap(), E(libc::EINTR));
    }
}
