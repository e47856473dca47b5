//! Calls that can block for long (`read`, `readv`, `write`, `writev` of a
//! pipe or terminal, `recvfrom`, `recvmsg`, `sendto`, `sendmsg` of a socket
//! pair, `nanosleep`, `clock_nanosleep`, the libos's `pause` wait for a
//! signal, a lock wait: `fcntl` `F_SETLKW`/`F_OFD_SETLKW`, `flock` without
//! `LOCK_NB`), served without the
//! service lock once the program has threads, so that one thread blocked in
//! a `read` of a pipe does not stall the calls of the others
//! (docs/threads.md).
//!
//! [`Service::begin_blocking`] runs under the lock: it counts the call and
//! takes a duplicate of the host descriptor (so a `close` by another thread
//! meanwhile cannot make the call act on a reused descriptor number that
//! now names something else); [`Blocking::run`] then runs without the lock
//! and touches only the duplicate and checked program memory.

use std::os::fd::{AsRawFd, OwnedFd};

use super::io::{read_on, vectored_on, write_on, Vectored};
use super::locks::{self, LockOn};
use super::sockets::{recvfrom_on, recvmsg_on, sendmsg_on, sendto_on};
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
}

/// What [`Service::begin_blocking`] decided.
#[derive(Debug)]
pub enum Begin {
    /// Not a call served this way: serve it with [`Service::handle`].
    Handle,
    /// Answered already (a bad descriptor).
    Done(i64),
    /// Run it without the lock.
    Run(Blocking),
}

impl Service {
    /// Under the service lock: prepares call `nr` to run without it, when it
    /// is one that can block for long (and, for writes, no write limit
    /// applies: those are counted under the lock).
    pub fn begin_blocking(&mut self, mem: &GuestMemory, nr: u64, a: [u64; 6]) -> Begin {
        let needs_fd = match nr {
            nr::read | nr::readv | nr::recvfrom | nr::recvmsg => true,
            nr::fcntl if matches!(a[1] as i32, libc::F_SETLKW | libc::F_OFD_SETLKW) => true,
            nr::flock if locks::flock_blocks(a[1]) => true,
            nr::write | nr::writev | nr::sendto | nr::sendmsg if self.write_limits.is_none() => true,
            nr::nanosleep | nr::clock_nanosleep | nr::pause => false,
            _ => return Begin::Handle,
        };
        if nr == nr::fcntl && mem.read(a[2], locks::FLOCK_SIZE).is_err() {
            // A bad `struct flock` pointer: the ordinary call reports it.
            return Begin::Handle;
        }
        self.stats.per_nr.add(nr, 1);
        self.note = Default::default();
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
        Begin::Run(Blocking { nr, a, fd, lock })
    }
}

impl Blocking {
    /// Runs the call (without the service lock).
    pub fn run(self, mem: &GuestMemory) -> Result<i64, Violation> {
        let fd = self.fd.as_ref().map_or(-1, |f| f.as_raw_fd());
        let a = &self.a;
        let r: Sys = match self.nr {
            nr::read => read_on(fd, mem, a),
            nr::readv => vectored_on(fd, mem, a, Vectored::Readv),
            nr::write => write_on(fd, mem, a),
            nr::writev => vectored_on(fd, mem, a, Vectored::Writev),
            nr::nanosleep => nanosleep_on(mem, a),
            nr::recvfrom => recvfrom_on(fd, mem, a),
            nr::recvmsg => recvmsg_on(fd, mem, a),
            nr::sendto => sendto_on(fd, mem, a),
            nr::sendmsg => sendmsg_on(fd, mem, a),
            nr::pause => pause_on(),
            nr::fcntl => {
                let on = self.lock.as_ref().map_or(fd, |l| locks::raw(l, fd));
                locks::fcntl_lock(fd, on, mem, a[1] as i32, a[2])
            }
            nr::flock => locks::flock_on(fd, a[1]),
            _ => clock_nanosleep_on(mem, a),
        };
        match r {
            Ok(v) => Ok(v),
            Err(Fail::Errno(e)) => Ok(-i64::from(e)),
            Err(Fail::Limit(_)) => Ok(-i64::from(libc::EFBIG)),
            Err(Fail::Violation(msg)) => {
                let name = sysnames::name(self.nr).unwrap_or("unknown");
                Err(Violation(format!("{name} (system call {}): {msg}", self.nr)))
            }
        }
    }
}
