//! The service's system-call table: number → handler, one entry per call
//! the monitor serves (gVisor's shape: one table, handlers grouped by topic
//! in their own files). Numbers come from the one system-call table,
//! [`cabin_abi::syscalls`]; a call without an entry is answered `ENOSYS` and
//! reported once. `cabinc syscalls`, docs/syscalls.md's check and the tests
//! ask [`serves`] which calls exist.

use cabin_abi::syscalls::{nr, SLOTS};

use super::{accept, events, fds, files, io, names, process, sockets, time, timers, Service, Sys};
use crate::memory::GuestMemory;

/// Serves one call: the service, the program's memory, the six arguments.
/// `Ok`: the value for `rax`; `Err`: an errno, a violation or a limit hit.
pub(super) type Handler = fn(&mut Service, &GuestMemory, &[u64; 6]) -> Sys;

/// Every call the monitor serves, by topic.
const REGISTERED: &[(u64, Handler)] = &[
    // Reading and writing (io.rs).
    (nr::read, io::read),
    (nr::write, io::write),
    (nr::pread64, io::pread64),
    (nr::pwrite64, io::pwrite64),
    (nr::readv, io::readv),
    (nr::writev, io::writev),
    (nr::preadv, io::preadv),
    (nr::pwritev, io::pwritev),
    (nr::lseek, io::lseek),
    (nr::sendfile, io::sendfile),
    (nr::copy_file_range, io::copy_file_range),
    // The descriptor table (fds.rs).
    (nr::close, fds::close),
    (nr::dup, fds::dup),
    (nr::dup2, fds::dup2),
    (nr::dup3, fds::dup3),
    (nr::fcntl, fds::fcntl),
    (nr::pipe, fds::pipe),
    (nr::pipe2, fds::pipe2),
    (nr::ioctl, fds::ioctl),
    (nr::flock, fds::flock),
    (nr::memfd_create, fds::memfd_create),
    // Sockets under the network rules (sockets.rs, net.rs).
    (nr::socket, sockets::socket),
    (nr::bind, sockets::bind),
    (nr::listen, sockets::listen),
    (nr::connect, sockets::connect),
    (nr::accept, sockets::accept),
    (nr::accept4, sockets::accept4),
    (nr::setsockopt, sockets::setsockopt),
    (nr::getsockopt, sockets::getsockopt),
    (nr::sendmmsg, sockets::sendmmsg),
    (nr::recvmmsg, sockets::recvmmsg),
    (nr::socketpair, sockets::socketpair),
    (nr::sendto, sockets::sendto),
    (nr::recvfrom, sockets::recvfrom),
    (nr::sendmsg, sockets::sendmsg),
    (nr::recvmsg, sockets::recvmsg),
    (nr::shutdown, sockets::shutdown),
    (nr::getsockname, sockets::getsockname),
    (nr::getpeername, sockets::getpeername),
    // Files by descriptor or path (files.rs).
    (nr::open, files::open),
    (nr::creat, files::creat),
    (nr::openat, files::openat),
    (nr::fstat, files::fstat),
    (nr::stat, files::stat),
    (nr::lstat, files::lstat),
    (nr::newfstatat, files::newfstatat),
    (nr::statx, files::statx),
    (nr::statfs, files::statfs),
    (nr::fstatfs, files::fstatfs),
    (nr::getdents64, files::getdents64),
    (nr::ftruncate, files::ftruncate),
    (nr::truncate, files::truncate),
    (nr::fallocate, files::fallocate),
    (nr::fsync, files::fsync),
    (nr::fdatasync, files::fdatasync),
    (nr::fadvise64, files::accept_on_fd),
    (nr::syncfs, files::accept_on_fd),
    (nr::sync, accept),
    // Names in directories and metadata (names.rs).
    (nr::unlink, names::unlink),
    (nr::rmdir, names::rmdir),
    (nr::unlinkat, names::unlinkat),
    (nr::mkdir, names::mkdir),
    (nr::mkdirat, names::mkdirat),
    (nr::rename, names::rename),
    (nr::renameat, names::renameat),
    (nr::renameat2, names::renameat2),
    (nr::link, names::link),
    (nr::linkat, names::linkat),
    (nr::symlink, names::symlink),
    (nr::symlinkat, names::symlinkat),
    (nr::readlink, names::readlink),
    (nr::readlinkat, names::readlinkat),
    (nr::access, names::access),
    (nr::faccessat, names::faccessat),
    (nr::faccessat2, names::faccessat2),
    (nr::chmod, names::chmod),
    (nr::fchmod, names::fchmod),
    (nr::fchmodat, names::fchmodat),
    (nr::chown, names::chown),
    (nr::lchown, names::lchown),
    (nr::fchown, names::fchown),
    (nr::fchownat, names::fchownat),
    (nr::utimensat, names::utimensat),
    // Waiting on many descriptors, event and timer descriptors (events.rs).
    (nr::poll, events::poll),
    (nr::ppoll, events::ppoll),
    (nr::select, events::select),
    (nr::pselect6, events::pselect6),
    (nr::epoll_create, events::epoll_create),
    (nr::epoll_create1, events::epoll_create1),
    (nr::epoll_ctl, events::epoll_ctl),
    (nr::epoll_wait, events::epoll_wait),
    (nr::epoll_pwait, events::epoll_pwait),
    (nr::epoll_pwait2, events::epoll_pwait2),
    (nr::eventfd, events::eventfd),
    (nr::eventfd2, events::eventfd2),
    (nr::timerfd_create, events::timerfd_create),
    (nr::timerfd_settime, events::timerfd_settime),
    (nr::timerfd_gettime, events::timerfd_gettime),
    // Clocks and sleeping (time.rs).
    (nr::nanosleep, time::nanosleep),
    (nr::pause, time::pause),
    (nr::signalfd4, fds::signalfd4),
    // Timers that post signals (timers.rs).
    (nr::alarm, timers::alarm),
    (nr::setitimer, timers::setitimer),
    (nr::getitimer, timers::getitimer),
    (nr::timer_create, timers::timer_create),
    (nr::timer_settime, timers::timer_settime),
    (nr::timer_gettime, timers::timer_gettime),
    (nr::timer_getoverrun, timers::timer_getoverrun),
    (nr::timer_delete, timers::timer_delete),
    (nr::clock_nanosleep, time::clock_nanosleep),
    (nr::clock_gettime, time::clock_gettime),
    (nr::clock_getres, time::clock_getres),
    (nr::gettimeofday, time::gettimeofday),
    (nr::time, time::time),
    // The program's own state and its view of the system (process.rs).
    (nr::getcwd, process::getcwd),
    (nr::chdir, process::chdir),
    (nr::fchdir, process::fchdir),
    (nr::umask, process::umask),
    (nr::prctl, process::prctl),
    (nr::prlimit64, process::prlimit64),
    (nr::getrlimit, process::getrlimit),
    (nr::setrlimit, accept),
    (nr::getrusage, time::getrusage),
    (nr::times, time::times),
    (nr::sched_getaffinity, process::sched_getaffinity),
    (nr::sched_setaffinity, process::sched_setaffinity),
    (nr::getcpu, process::getcpu),
    (nr::sysinfo, process::sysinfo),
    (nr::uname, process::uname),
    (nr::getgroups, process::getgroups),
    (nr::getrandom, process::getrandom),
    (nr::wait4, process::no_children),
    (nr::getpgrp, process::lone_getpgrp),
    (nr::getpgid, process::lone_getpgid),
    (nr::getsid, process::lone_getpgid),
    (nr::setpgid, process::lone_setpgid),
    (nr::setsid, process::lone_setsid),
    (nr::waitid, process::no_children),
    // Commits of the reservation space the libos tells the monitor about
    // (process backend; `cabin_abi::boot::RESERVE_FD`).
    (nr::mmap, process::reserve_commit),
    (nr::munmap, process::reserve_release),
    // KVM's live shared file mappings (filemap.rs).
    (nr::msync, super::filemap::msync),
];

/// [`REGISTERED`] by number, built at compile time (a number registered
/// twice, or one without a slot, does not compile).
static HANDLERS: [Option<Handler>; SLOTS] = {
    let mut t: [Option<Handler>; SLOTS] = [None; SLOTS];
    let mut i = 0;
    while i < REGISTERED.len() {
        let (n, h) = REGISTERED[i];
        assert!((n as usize) < SLOTS && t[n as usize].is_none(), "a call registered twice or out of range");
        t[n as usize] = Some(h);
        i += 1;
    }
    t
};

/// The handler of call `nr`, if the monitor serves it.
#[inline]
pub(super) fn handler(nr: u64) -> Option<Handler> {
    HANDLERS.get(usize::try_from(nr).ok()?).copied().flatten()
}

/// Whether the monitor's service implements call `nr` (otherwise it answers
/// `ENOSYS`).
pub fn serves(nr: u64) -> bool {
    handler(nr).is_some()
}

/// The numbers of the calls the service implements, in ascending order.
pub fn served() -> impl Iterator<Item = u64> {
    (0..SLOTS as u64).filter(|&n| serves(n))
}

#[cfg(test)]
mod tests {
    use cabin_abi::syscalls::{self, Serve};

    use super::*;

    /// The service serves exactly the calls the table routes to it: every
    /// handler's call is forwarded by the libos (or, for clock reads,
    /// forwarded when the policy does not plainly allow them), and no
    /// locally served call has one (it would never run).
    #[test]
    fn handlers_serve_forwarded_calls_only() {
        for n in served().filter(|&n| n != nr::mmap && n != nr::munmap && n != nr::msync) {
            let row = syscalls::get(n).unwrap_or_else(|| panic!("handler for {n}, which has no row"));
            assert!(
                matches!(row.serve, Serve::Forwarded | Serve::LocalOrForwarded),
                "{} has a handler but is {:?}",
                row.name,
                row.serve
            );
        }
        // Every clock read the libos may forward is served.
        for s in syscalls::TABLE.iter().filter(|s| s.serve == Serve::LocalOrForwarded) {
            assert!(serves(u64::from(s.nr)), "{} may be forwarded but has no handler", s.name);
        }
        assert_eq!(served().count(), REGISTERED.len());
        assert_eq!(REGISTERED.len(), 141);
    }
}
