//! Calls that can block for long (`read`, `readv`, `write`, `writev` of a
//! pipe or terminal, `recvfrom`, `recvmsg`, `recvmmsg`, `sendto`,
//! `sendmsg`, `sendmmsg`, `accept`,
//! `accept4`, `connect` of a socket, `nanosleep`, `clock_nanosleep`, the libos's `pause` wait for a
//! signal, a lock wait: `fcntl` `F_SETLKW`/`F_OFD_SETLKW`, `flock` without
//! `LOCK_NB`), served without the
//! service lock once the program has threads, so that one thread blocked in
//! a `read` of a pipe does not stall the calls of the others
//! (docs/threads.md).
//!
//! [`Service::begin_blocking`] runs under the lock: it counts the call and
//! takes a duplicate of the host descriptor (so a `close` by another thread
//! meanwhile cannot make the call act on a reused descriptor number that
//! now names something else) and, for `connect` and a send with a
//! destination or control data, checks them and keeps the monitor's copy
//! (with the host descriptors a `SCM_RIGHTS` message names, held open);
//! [`Blocking::run`] then runs without the lock and touches only the
//! duplicate, that copy and checked program memory. What it returns is
//! finished under the lock by [`Service::finish_blocking`] (an accepted
//! connection, and descriptors a receive got, enter the table there).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::io::{read_on, vectored_on, write_on, Vectored};
use super::locks::{self, LockOn};
use super::net::{Bound, HostAddr};
use super::sockets::{
    accept_on, accepted, connect_on, received, recvfrom_on, recvmmsg_on, recvmsg_on, sendmmsg_on,
    sendmmsg_prepare, sendmsg_on, sendmsg_prepare, sendto_dest, sendto_on, Accepted, Received, SendPrep,
};
use super::time::{clock_nanosleep_on, nanosleep_on, pause_on};
use super::{dup_cloexec, Fail, Service, Sys, Violation};
use crate::memory::GuestMemory;
use crate::sysnames;
use cabin_abi::syscalls::nr;

/// A call prepared under the lock, to be run without it.
#[derive(Debug)]
pub struct Blocking {
    nr: u64,
    a: [u64; 6],
    fd: Option<OwnedFd>,
    /// For a POSIX `F_SETLKW`: the program's lock description of the file
    /// (kept open for the wait).
    lock: Option<LockOn>,
    /// For `connect`, `sendto`: the destination, checked under the lock
    /// (what the program's memory says now is not looked at again).
    dest: Option<HostAddr>,
    /// For `sendmsg` (one) and `sendmmsg` (each message): destination and
    /// control data, checked under the lock.
    sends: Vec<SendPrep>,
    /// For receives: what the run has bound (to show unix names).
    bound: Option<Arc<Bound>>,
    /// For receives: the peer's address is wanted for the trace.
    peer: bool,
}

/// What a [`Blocking`] call did, to be finished under the lock by
/// [`Service::finish_blocking`].
#[derive(Debug)]
pub enum Ran {
    /// The value for `rax`.
    Value(i64),
    /// `accept`/`accept4` got a connection: it enters the table under the lock.
    Accepted(Accepted, [u64; 6]),
    /// `recvfrom` got data from this peer (for the trace).
    From(i64, Option<String>),
    /// `recvmsg` (one message) or `recvmmsg` (`true`: the count is the
    /// value): control data and descriptors enter the program under the lock.
    Received(Vec<Received>, bool),
}

/// What [`Service::begin_blocking`] decided.
#[derive(Debug)]
pub enum Begin {
    /// Not a call served this way: serve it with [`Service::handle`].
    Handle,
    /// Answered already (a bad descriptor).
    Done(i64),
    /// Run it without the lock.
    Run(Box<Blocking>),
}

impl Service {
    /// Under the service lock: prepares call `nr` to run without it, when it
    /// is one that can block for long (and, for writes, no write limit
    /// applies: those are counted under the lock).
    pub fn begin_blocking(&mut self, mem: &GuestMemory, nr: u64, a: [u64; 6]) -> Begin {
        let needs_fd = match nr {
            nr::read | nr::readv | nr::recvfrom | nr::recvmsg => true,
            // With a timeout: not served (EINVAL from the ordinary call).
            nr::recvmmsg if a[4] == 0 => true,
            nr::accept | nr::accept4 | nr::connect => true,
            nr::fcntl if matches!(a[1] as i32, libc::F_SETLKW | libc::F_OFD_SETLKW) => true,
            nr::flock if locks::flock_blocks(a[1]) => true,
            nr::write | nr::writev | nr::sendto | nr::sendmsg | nr::sendmmsg
                if self.write_limits.is_none() =>
            {
                true
            }
            nr::nanosleep | nr::clock_nanosleep | nr::pause => false,
            _ => return Begin::Handle,
        };
        if nr == nr::fcntl && mem.read(a[2], locks::FLOCK_SIZE).is_err() {
            // A bad `struct flock` pointer: the ordinary call reports it.
            return Begin::Handle;
        }
        self.stats.per_nr.add(nr, 1);
        self.note = Default::default();
        if matches!(nr, nr::accept | nr::accept4 | nr::connect) {
            if let Err(e) = self.socket_fd(a[0]) {
                return fail_now(e);
            }
        }
        // The destination and control data are checked now, under the
        // lock, from one copy.
        let dest = match nr {
            nr::connect => self.destination("connect", mem, a[1], a[2]).map(Some),
            nr::sendto => sendto_dest(self, mem, &a),
            _ => Ok(None),
        };
        let dest = match dest {
            Ok(d) => d,
            Err(e) => return fail_now(e),
        };
        let sends = match nr {
            nr::sendmsg => sendmsg_prepare(self, mem, &a).map(|p| vec![p]),
            nr::sendmmsg => sendmmsg_prepare(self, mem, &a),
            _ => Ok(Vec::new()),
        };
        let sends = match sends {
            Ok(s) => s,
            Err(e) => return fail_now(e),
        };
        let receive = matches!(nr, nr::recvfrom | nr::recvmsg | nr::recvmmsg);
        let bound = receive.then(|| self.bound());
        let peer = receive && self.wants_addr();
        let mut lock = None;
        let fd = if needs_fd {
            let host = match self.vfd(a[0]) {
                Ok(fd) => fd,
                Err(_) => return Begin::Done(-i64::from(libc::EBADF)),
            };
            if nr == nr::fcntl {
                match self.lock_target(host, mem, a[1] as i32, a[2]) {
                    Ok(l) => lock = Some(l),
                    Err(Fail::Errno(e)) => return Begin::Done(-i64::from(e)),
                    Err(_) => return Begin::Done(-i64::from(libc::EFAULT)),
                }
            }
            match dup_cloexec(host) {
                Ok(fd) => Some(fd),
                Err(Fail::Errno(e)) => return Begin::Done(-i64::from(e)),
                Err(_) => return Begin::Done(-i64::from(libc::EIO)),
            }
        } else {
            None
        };
        Begin::Run(Box::new(Blocking { nr, a, fd, lock, dest, sends, bound, peer }))
    }

    /// Under the lock again: finishes what [`Blocking::run`] did (an
    /// accepted connection enters the program's table).
    pub fn finish_blocking(&mut self, mem: &GuestMemory, ran: Ran) -> Result<i64, Violation> {
        match ran {
            Ran::Value(v) => Ok(v),
            Ran::Accepted(got, a) => {
                let r = accepted(self, mem, &a, got);
                super::conclude(nr::accept4, r, &mut self.note)
            }
            Ran::From(v, peer) => {
                self.note_peer(peer);
                Ok(v)
            }
            Ran::Received(got, mmsg) => {
                let count = got.len() as i64;
                let mut last = Ok(0);
                for r in got {
                    self.note_peer(r.peer.clone());
                    last = received(self, mem, r);
                    if last.is_err() {
                        break;
                    }
                }
                let r = if mmsg { last.map(|_| count) } else { last };
                super::conclude(if mmsg { nr::recvmmsg } else { nr::recvmsg }, r, &mut self.note)
            }
        }
    }
}

/// A failure found under the lock: the errno now; anything else (a bad
/// pointer, which ends the program) is reported by the ordinary call.
fn fail_now(e: Fail) -> Begin {
    match e {
        Fail::Errno(e) => Begin::Done(-i64::from(e)),
        _ => Begin::Handle,
    }
}

impl Blocking {
    /// Runs the call (without the service lock); finish it with
    /// [`Service::finish_blocking`].
    pub fn run(mut self, mem: &GuestMemory) -> Result<Ran, Violation> {
        let fd = self.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
        let a = &self.a;
        let dest = self.dest.as_ref();
        let bound = self.bound.clone().unwrap_or_default();
        let r: Sys = match self.nr {
            nr::accept | nr::accept4 => {
                let flags = if self.nr == nr::accept4 { a[3] as i32 } else { 0 };
                match accept_on(fd, mem, a, flags) {
                    Ok(got) => return Ok(Ran::Accepted(got, *a)),
                    Err(e) => Err(e),
                }
            }
            nr::connect => match dest {
                Some(d) => connect_on(fd, d),
                None => Err(Fail::Errno(libc::EINVAL)),
            },
            nr::read => read_on(fd, mem, a),
            nr::readv => vectored_on(fd, mem, a, Vectored::Readv),
            nr::write => write_on(fd, mem, a),
            nr::writev => vectored_on(fd, mem, a, Vectored::Writev),
            nr::nanosleep => nanosleep_on(mem, a),
            nr::recvfrom => match recvfrom_on(fd, mem, a, &bound, self.peer) {
                Ok((v, peer)) => return Ok(Ran::From(v, peer)),
                Err(e) => Err(e),
            },
            nr::recvmsg => match recvmsg_on(fd, mem, a, &bound, self.peer) {
                Ok(r) => return Ok(Ran::Received(vec![r], false)),
                Err(e) => Err(e),
            },
            nr::recvmmsg => match recvmmsg_on(fd, mem, a, &bound, self.peer) {
                Ok(got) => return Ok(Ran::Received(got, true)),
                Err(e) => Err(e),
            },
            nr::sendto => sendto_on(fd, mem, a, dest),
            nr::sendmsg => match self.sends.first_mut() {
                Some(p) => sendmsg_on(fd, mem, a[2] as i32, p),
                None => Err(Fail::Errno(libc::EINVAL)),
            },
            nr::sendmmsg => sendmmsg_on(fd, mem, a[3] as i32, &mut self.sends),
            nr::pause => pause_on(),
            nr::fcntl => {
                let on = self.lock.as_ref().map_or(fd, |l| locks::raw(l, fd));
                locks::fcntl_lock(fd, on, mem, a[1] as i32, a[2])
            }
            nr::flock => locks::flock_on(fd, a[1]),
            _ => clock_nanosleep_on(mem, a),
        };
        match r {
            Ok(v) => Ok(Ran::Value(v)),
            Err(Fail::Errno(e)) => Ok(Ran::Value(-i64::from(e))),
            Err(Fail::Limit(_)) => Ok(Ran::Value(-i64::from(libc::EFBIG))),
            Err(Fail::Violation(msg)) => {
                let name = sysnames::name(self.nr).unwrap_or("unknown");
                Err(Violation(format!("{name} (system call {}): {msg}", self.nr)))
            }
        }
    }
}
