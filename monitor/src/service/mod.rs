//! The system-call service: one forwarded request in, one result out.
//!
//! [`Service::handle`] is a function of (service state, program memory,
//! call number, arguments): no ring, no child process, so tests drive it
//! directly. It copies what it needs out of program memory once, through
//! the checked [`GuestMemory`], acts on host descriptors it owns, and
//! returns the value for `rax` — or a [`Violation`] when the request is
//! malformed in a way no correct program produces (a pointer or length
//! outside the program's memory), which ends the program.
//!
//! A call the path rules refuse returns `EACCES` and leaves a [`CallNote`]
//! (the program's path, the resolved path, why) that the ring worker hands
//! to the gate ([`crate::gate::Gate::served_with`]), which records
//! it as a `denied` call. Paths of allowed calls are copied into the note
//! only while a tracer wants them ([`Service::set_record_paths`]).
//!
//! The calls the monitor serves are one table, number → handler
//! (`table.rs`, handlers by topic in `io.rs`, `fds.rs`, `files.rs`,
//! `names.rs`, `time.rs`, `process.rs`, `sockets.rs`, ...); they and their rules are listed in
//! docs/syscalls.md, and [`serves`] answers which exist. A call without a
//! handler gets `ENOSYS` (never `EPERM`, so C libraries fall back)
//! and is reported once on stderr with its name and number; numbers that
//! are not x86-64 system calls (512 and up) are reported once in all, and
//! counted ([`Service::finish_reports`] says how many at the end). Nothing
//! is kept per call number beyond the fixed tables of [`cabin_policy::per_call`].

pub mod blocking;
pub mod fdtable;
pub mod fs;

mod cmsg;
mod events;
pub mod exec;
mod fds;
mod filemap;
mod files;
mod io;
mod locks;
mod names;
pub mod net;
mod process;
mod sockets;
mod table;
mod time;
mod timers;

pub use table::{served, serves};

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::memory::{GuestMemory, MemError};
use crate::sysnames;
use crate::trace::LimitHit;
use cabin_policy::limits::{WriteLimits, EFBIG};
use cabin_policy::note::{CallNote, PathRefusal};
use cabin_policy::per_call::{CallCounts, CallSet, Distinct};
use fdtable::{Entry, FdTable};
use fs::{Access, FsPolicy, PathError, Refusal};

/// A request that ends the program.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

/// Why one call failed.
#[derive(Debug)]
enum Fail {
    /// Return `-errno`.
    Errno(i32),
    /// End the program.
    Violation(String),
    /// A write limit was hit: the gate stops the program.
    Limit(LimitHit),
}

impl From<MemError> for Fail {
    fn from(e: MemError) -> Fail {
        Fail::Violation(e.to_string())
    }
}

type Sys = Result<i64, Fail>;

/// Counters for `--stats`.
#[derive(Clone, Debug, Default)]
pub struct ServiceStats {
    /// Forwarded calls per number (numbers from 512 up share one counter).
    pub per_nr: CallCounts,
    /// Calls refused by the filesystem policy or not implemented.
    pub denied: u64,
}

/// A call (number, first argument) the service answers with a panic in
/// tests only (unit tests, or the `panic-test-call` feature a backend's
/// tests turn on): how the backends behave when the monitor fails.
#[cfg(any(test, feature = "panic-test-call"))]
pub const PANIC_TEST_CALL: (u64, u64) = (511, 0xdead_beef_c0de_0001);

/// The identity `uname` reports (documented in docs/syscalls.md).
pub const UNAME: [&str; 6] =
    ["Linux", "cabin", "6.1.0-cabin", "#1 SMP PREEMPT_DYNAMIC Cabin", "x86_64", "(none)"];

const IOV_MAX: u64 = 1024;
/// Most bytes one `sendfile` or `copy_file_range` moves (a short count, as
/// the kernel gives too): bounds the work of one call the monitor may not
/// be able to interrupt (see `[limits] cpu-time` in docs/policy.md).
const MAX_COPY: u64 = 64 << 20;
const PATH_MAX: usize = 4096;
const AT_FDCWD: i32 = -100;

/// Whose CPU time is the program's own: what its `clock()`,
/// `CLOCK_PROCESS_CPUTIME_ID`, `getrusage` and `times` report. Never the
/// monitor's ring workers (their polling is not the program's work).
#[derive(Debug, Clone)]
pub enum ProgramCpu {
    /// A host process of its own (the process backend): all its threads.
    Process(i32),
    /// Monitor threads that run the program (KVM: the vCPU threads, guest
    /// time included): those that joined as program threads.
    Threads(crate::watch::ThreadClocks),
}

impl ProgramCpu {
    /// The program's CPU time so far.
    pub fn process(&self) -> Duration {
        match self {
            ProgramCpu::Process(pid) => crate::watch::process_cpu_time(*pid).unwrap_or_default(),
            ProgramCpu::Threads(c) => c.program_used(),
        }
    }

    /// The CPU time of the program thread whose call the calling monitor
    /// thread serves; the process's where the monitor cannot tell threads
    /// apart (the process backend, whose libos reads thread clocks natively).
    pub fn thread(&self) -> Duration {
        match self {
            ProgramCpu::Process(_) => self.process(),
            ProgramCpu::Threads(c) => c.program_thread_used(crate::watch::serving_slot()).unwrap_or_default(),
        }
    }
}

/// The monitor's per-program service state.
#[derive(Debug)]
pub struct Service {
    fds: FdTable,
    /// Shared by the processes of the tree (set up once, before the run).
    policy: std::sync::Arc<FsPolicy>,
    cwd: Vec<u8>,
    umask: u32,
    pid: u32,
    /// The CPUs the program may use (`sched_getaffinity`), in order; never
    /// empty.
    cpus: Vec<usize>,
    /// The thread name (`PR_SET_NAME`), bookkeeping only.
    comm: Vec<u8>,
    /// Numbers already reported as not supported (those from 512 up once
    /// in all).
    reported: CallSet,
    /// Distinct unsupported numbers from 512 up, for the summary at the end.
    other_numbers: Distinct,
    /// Copy each call's path argument into `note` (a tracer wants it).
    record_paths: bool,
    /// What the current (or last) call noticed.
    note: CallNote,
    /// `[limits] bytes-written` and `file-size`, applied before each write.
    write_limits: Option<WriteLimits>,
    /// Counters.
    pub stats: ServiceStats,
    /// Where "not implemented" reports go (stderr; tests capture): at
    /// most one per number below 512, one for all others, and the summary.
    pub reports: Vec<String>,
    /// Whether to print reports on stderr as they happen.
    pub print_reports: bool,
    /// The program's timers (`alarm`, `setitimer`, POSIX timers), shared
    /// with the session's timer thread; `None`: timer calls are `ENOSYS`.
    pub timers: Option<std::sync::Arc<crate::timers::Timers>>,
    /// Where the program's own CPU time is read (`None`: not known yet,
    /// CPU-time clocks read 0).
    program_cpu: Option<ProgramCpu>,
    /// The network rules and what the run has bound (shared by the tree).
    net: net::Network,
    /// The image the process runs (what `execve("/proc/self/exe")` runs
    /// again; `None` in tests and before the run sets it).
    pub(crate) exe: Option<std::sync::Arc<Vec<u8>>>,
    /// Shared file mappings that are the files' own pages (process
    /// backend; inherited at fork, dropped at exec).
    filemaps: filemap::FileMaps,
    /// Connected TCP sockets may be handed to the process for native data
    /// calls (`fcntl(v, NET_GRANT_CMD)`; docs/networking.md, "The direct
    /// data plane").
    native_sockets: bool,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Turns a libc return value into a result.
fn host(r: i64) -> Sys {
    if r < 0 {
        Err(Fail::Errno(errno()))
    } else {
        Ok(r)
    }
}

fn dup_cloexec(fd: RawFd) -> Result<OwnedFd, Fail> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor and touches no memory.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(Fail::Errno(errno()));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

impl Service {
    /// A service with stdin, stdout and stderr passed through (as virtual
    /// fds 0, 1, 2, each a duplicate of the monitor's own), the given
    /// filesystem policy and initial working directory.
    pub fn new(policy: FsPolicy, cwd: Vec<u8>, pid: u32) -> Service {
        Service::with_stdio(policy, cwd, pid, [0, 1, 2])
    }

    /// As [`Service::new`], with fds 0, 1, 2 served by duplicates of the
    /// given host descriptors.
    pub fn with_stdio(mut policy: FsPolicy, cwd: Vec<u8>, pid: u32, stdio: [RawFd; 3]) -> Service {
        let mut fds = FdTable::default();
        for (i, host_fd) in stdio.into_iter().enumerate() {
            // The run's terminal opens like /dev/tty (docs/syscalls.md).
            // SAFETY: isatty touches no memory.
            if unsafe { libc::isatty(host_fd) } == 1 {
                if let Ok(st) = fs::fstat(host_fd) {
                    policy.add_safe_device(st.st_rdev);
                }
            }
            if let Ok(fd) = dup_cloexec(host_fd) {
                fds.insert_at(i as u64, Entry { fd: fd.into(), cloexec: false, path: None, change: None });
            }
        }
        // SAFETY: umask only swaps the process's mask; read it and put it back.
        let umask = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        };
        Service {
            fds,
            policy: std::sync::Arc::new(policy),
            cwd,
            umask,
            pid,
            cpus: vec![0],
            comm: b"program".to_vec(),
            reported: CallSet::default(),
            other_numbers: Distinct::default(),
            record_paths: false,
            note: CallNote::default(),
            write_limits: None,
            stats: ServiceStats::default(),
            reports: Vec::new(),
            print_reports: true,
            timers: None,
            program_cpu: None,
            net: net::Network::default(),
            exe: None,
            filemaps: filemap::FileMaps::default(),
            native_sockets: false,
        }
    }

    /// The network the program may use (default: none; docs/networking.md).
    pub fn set_network(&mut self, net: net::Network) {
        self.net = net;
    }

    /// Where the program's CPU-time clocks, `getrusage` and `times` are
    /// read (docs/syscalls.md, "CPU time").
    pub fn set_program_cpu(&mut self, cpu: ProgramCpu) {
        self.program_cpu = Some(cpu);
    }

    /// Sizes the program's descriptor table (its `RLIMIT_NOFILE`): see
    /// [`fdtable::program_capacity`].
    pub fn set_fd_capacity(&mut self, n: usize) {
        self.fds.set_max(n);
    }

    /// A child process's service (fork, docs/processes.md): its parent's
    /// descriptor table (the same host descriptors: shared open file
    /// descriptions), working directory, umask, CPUs, name, policy and
    /// write limits; its own counters and reports; no timers (POSIX: a
    /// child inherits none); `pid` its pid.
    pub fn fork(&self, pid: u32) -> Service {
        Service {
            fds: self.fds.fork(),
            policy: self.policy.clone(),
            cwd: self.cwd.clone(),
            umask: self.umask,
            pid,
            cpus: self.cpus.clone(),
            comm: self.comm.clone(),
            reported: self.reported.clone(),
            other_numbers: Distinct::default(),
            record_paths: self.record_paths,
            note: CallNote::default(),
            write_limits: self.write_limits.clone(),
            stats: ServiceStats::default(),
            reports: Vec::new(),
            print_reports: self.print_reports,
            timers: None,
            // Set by the child's run once its host process exists.
            program_cpu: None,
            net: self.net.clone(),
            exe: self.exe.clone(),
            filemaps: self.filemaps.clone(),
            native_sockets: self.native_sockets,
        }
    }

    /// How many descriptors the program holds (for `[limits] open-files`).
    pub fn open_fds(&self) -> u64 {
        self.fds.open_count() as u64
    }

    /// Sets the pid the program sees (for `prlimit64(pid, ...)` checks).
    pub fn set_pid(&mut self, pid: u32) {
        self.pid = pid;
    }

    /// The process id the program sees (its main thread's tid).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether descriptor `vfd` of the program is the monitor's controlling
    /// terminal (the terminal the run was given): `EBADF` for no
    /// descriptor, `ENOTTY` for anything else (a file, a pipe, a terminal
    /// that is not the controlling one), as Linux answers job-control
    /// requests on it.
    pub fn controlling_tty(&self, vfd: u64) -> Result<(), i32> {
        let fd = self.fds.host(vfd).ok_or(libc::EBADF)?;
        // SAFETY: isatty touches no memory.
        if unsafe { libc::isatty(fd) } != 1 {
            return Err(libc::ENOTTY);
        }
        let mut pgrp: libc::pid_t = 0;
        // SAFETY: TIOCGPGRP writes one pid_t into `pgrp`; it fails with
        // ENOTTY unless `fd` is the caller's controlling terminal.
        if unsafe { libc::ioctl(fd, libc::TIOCGPGRP, &mut pgrp) } < 0 {
            return Err(libc::ENOTTY);
        }
        Ok(())
    }

    /// Whether descriptor `vfd` is the monitor's controlling terminal with
    /// `TOSTOP` set in its modes (then a background process's `write` of it
    /// is Linux's `SIGTTOU` case; docs/processes.md, "Job control").
    pub fn tty_tostop(&self, vfd: u64) -> bool {
        let Some(fd) = self.fds.host(vfd) else { return false };
        // SAFETY: a zeroed termios is valid; tcgetattr writes one.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: writes one termios into `t`.
        unsafe { libc::tcgetattr(fd, &mut t) == 0 && t.c_lflag & libc::TOSTOP != 0 }
    }

    /// The CPUs the program may use (the session's placement, or the
    /// monitor's own affinity); ignored when empty.
    pub fn set_cpus(&mut self, cpus: Vec<usize>) {
        if !cpus.is_empty() {
            self.cpus = cpus;
        }
    }

    /// Whether to copy every call's path argument for the trace (see
    /// [`CallNote`]); off by default, so an untraced run copies nothing.
    pub fn set_record_paths(&mut self, on: bool) {
        self.record_paths = on;
    }

    /// Whether connected TCP sockets may be handed to the process for
    /// native data calls (docs/networking.md, "The direct data plane"):
    /// only when no call of theirs must be seen (no trace or audit stream,
    /// no limits, the data calls allowed plainly: [`crate::gate::Gate::allows_native_sockets`]).
    pub fn set_native_sockets(&mut self, on: bool) {
        self.native_sockets = on;
    }

    /// Applies `[limits] bytes-written` and `file-size` (see
    /// [`WriteLimits`]) from now on; `None`: no write limits.
    pub fn set_write_limits(&mut self, limits: Option<WriteLimits>) {
        self.write_limits = limits;
    }

    /// Bytes the program has written through any descriptor (counted only
    /// under a write limit; 0 otherwise).
    pub fn bytes_written(&self) -> u64 {
        self.write_limits.as_ref().map_or(0, WriteLimits::written)
    }

    /// What the last call noticed (its path, a refusal); leaves it empty.
    pub fn take_note(&mut self) -> CallNote {
        std::mem::take(&mut self.note)
    }

    /// Serves one forwarded call: [`Service::begin`], then, for a call
    /// that waits, [`Waiting::finish`].
    pub fn handle(&mut self, mem: &GuestMemory, nr: u64, a: [u64; 6]) -> Result<i64, Violation> {
        match self.begin(mem, nr, a) {
            Begun::Done(r) => r,
            Begun::Wait(w) => w.finish(mem),
        }
    }

    /// Starts serving one forwarded call. Calls that may wait on many
    /// descriptors (`poll`, `ppoll`, `select`, `pselect6`, `epoll_wait`,
    /// `epoll_pwait`, `epoll_pwait2`) come back as a [`Waiting`] that owns
    /// what it waits on (the host descriptors, held open): finish it
    /// without the service, so that a worker can release a lock on the
    /// service across the host wait. Everything else is done here.
    pub fn begin(&mut self, mem: &GuestMemory, nr: u64, a: [u64; 6]) -> Begun {
        self.stats.per_nr.add(nr, 1);
        if self.note.path.is_some()
            || self.note.refusal.is_some()
            || self.note.limit.is_some()
            || self.note.network.is_some()
            || self.note.addr.is_some()
        {
            self.note = CallNote::default();
        }
        let r = match events::prepare(self, mem, nr, &a) {
            Some(Ok(pending)) => return Begun::Wait(Waiting { nr, pending }),
            Some(Err(f)) => Err(f),
            None => self.dispatch(mem, nr, &a),
        };
        Begun::Done(conclude(nr, r, &mut self.note))
    }

    fn vfd(&self, vfd: u64) -> Result<RawFd, Fail> {
        self.fds.host(vfd).ok_or(Fail::Errno(libc::EBADF))
    }

    /// `prog`: the path the program passed (`None` for a call on a
    /// descriptor); `resolved`: what the monitor made of it.
    fn path_fail(&mut self, e: PathError, prog: Option<&[u8]>, resolved: &[u8]) -> Fail {
        match e {
            // In a view what lies outside does not exist (as in a container).
            PathError::Denied(Refusal::Outside) if self.policy.is_view() => Fail::Errno(libc::ENOENT),
            PathError::Denied(why) => self.deny(why, prog, resolved),
            PathError::Errno(e) => Fail::Errno(e),
        }
    }

    /// A refusal by the path rules: counted, noted for the gate (which
    /// makes it a `denied` record), `EACCES` (`EPERM` for an owner) for the
    /// program.
    fn deny(&mut self, why: Refusal, prog: Option<&[u8]>, resolved: &[u8]) -> Fail {
        self.stats.denied += 1;
        if let Some(p) = prog {
            self.note.path = Some(p.to_vec());
        }
        self.note.refusal = Some(PathRefusal { why, resolved: resolved.to_vec() });
        if self.policy.is_view() {
            self.note.host_path = self.policy.host_path(resolved);
        }
        Fail::Errno(why.errno())
    }

    /// A refusal by the network rules (`rule` names the address): counted,
    /// noted for the gate (a `denied` record), `EACCES` for the program.
    fn deny_net(&mut self, rule: String, addr: String) -> Fail {
        self.stats.denied += 1;
        self.note.network = Some(rule);
        self.note.addr = Some(addr);
        Fail::Errno(libc::EACCES)
    }

    /// The host descriptor of `vfd` when the program may change the
    /// metadata of what it names (`fchmod`, `fchown`, `futimens`): not a
    /// device, not on a pseudo filesystem, and in a writable tree by what
    /// was opened (a file opened read-only through `W/link -> ro/f` is
    /// `ro/f`'s, not `W`'s).
    fn fd_change(&mut self, vfd: u64) -> Result<RawFd, Fail> {
        let e = self.fds.get(vfd).ok_or(Fail::Errno(libc::EBADF))?;
        let (fd, path, change) = (e.fd.as_raw_fd(), e.path.clone(), e.change);
        let resolved = path.clone().unwrap_or_else(|| format!("fd {vfd}").into_bytes());
        let st = fs::fstat(fd).map_err(|e| self.path_fail(e, None, &resolved))?;
        self.policy.check_object(fd, &st, Access::Alter).map_err(|e| self.path_fail(e, None, &resolved))?;
        match (change, &path) {
            (_, None) => Err(self.deny(Refusal::Outside, None, &resolved)),
            (Some(true), _) => Ok(fd),
            (Some(false), Some(p)) => {
                let why = match self.policy.locate(p) {
                    Some(_) if self.policy.is_view() => Refusal::ReadOnlyView,
                    Some(_) => Refusal::ReadOnly,
                    None => Refusal::Outside,
                };
                Err(self.deny(why, None, &resolved))
            }
            (None, Some(p)) => {
                self.policy.fd_changeable(p, &st).map_err(|e| self.path_fail(e, None, &resolved))?;
                Ok(fd)
            }
        }
    }

    /// The object `abs` (program path `prog`) names, for a metadata change
    /// (`chmod`, `chown`, `utimensat`): in a writable tree by its ancestry,
    /// not a device, not on a pseudo filesystem. `O_PATH`, with its stat.
    fn change_target(
        &mut self,
        prog: &[u8],
        abs: &[u8],
        follow: bool,
    ) -> Result<(OwnedFd, libc::stat), Fail> {
        let r = self.policy.reach_for_change(abs, follow).map_err(|e| self.path_fail(e, Some(prog), abs))?;
        let (obj, st) = r.obj.ok_or(Fail::Errno(libc::ENOENT))?;
        self.policy
            .check_object(obj.as_raw_fd(), &st, Access::Alter)
            .map_err(|e| self.path_fail(e, Some(prog), abs))?;
        Ok((obj, st))
    }

    /// `chown` may give a file only to the program's own identity (the ids
    /// `getuid`/`getgid` report: the monitor's; -1 keeps), unless `[paths]
    /// set-id` allows more.
    fn check_owner(&mut self, uid: u64, gid: u64, prog: Option<&[u8]>, resolved: &[u8]) -> Result<(), Fail> {
        if self.policy.allows_set_id() {
            return Ok(());
        }
        // SAFETY: getuid/getgid have no preconditions.
        let (me_u, me_g) = unsafe { (libc::getuid(), libc::getgid()) };
        let (u, g) = (uid as u32, gid as u32);
        if (u == u32::MAX || u == me_u) && (g == u32::MAX || g == me_g) {
            Ok(())
        } else {
            Err(self.deny(Refusal::Owner, prog, resolved))
        }
    }

    /// The absolute program path for `path` relative to `dirfd`.
    /// In a view, the host path of the first one is noted for the trace.
    fn absolute(&mut self, dirfd: u64, path: &[u8]) -> Result<Vec<u8>, Fail> {
        let abs = self.absolute_of(dirfd, path)?;
        if self.record_paths && self.note.host_path.is_none() && self.policy.is_view() {
            self.note.host_path = self.policy.host_path(&abs);
        }
        Ok(abs)
    }

    fn absolute_of(&self, dirfd: u64, path: &[u8]) -> Result<Vec<u8>, Fail> {
        if path.is_empty() {
            return Err(Fail::Errno(libc::ENOENT));
        }
        if path[0] == b'/' {
            return Ok(path.to_vec());
        }
        if dirfd as i32 == AT_FDCWD {
            return Ok(fs::join(&self.cwd, path));
        }
        let e = self.fds.get(dirfd).ok_or(Fail::Errno(libc::EBADF))?;
        match &e.path {
            Some(base) => Ok(fs::join(base, path)),
            None => Err(Fail::Errno(libc::ENOTDIR)),
        }
    }

    /// Copies a path argument out of program memory, once: up to its NUL,
    /// `ENAMETOOLONG` when it is `PATH_MAX` bytes or longer (as the kernel's
    /// `strncpy_from_user(PATH_MAX)`). Noted for the trace when asked.
    fn read_path(&mut self, mem: &GuestMemory, addr: u64) -> Result<Vec<u8>, Fail> {
        let p = match mem.read_cstr(addr, PATH_MAX) {
            Ok(p) if p.len() >= PATH_MAX => return Err(Fail::Errno(libc::ENAMETOOLONG)),
            Ok(p) => p,
            Err(MemError::TooLong { .. }) => return Err(Fail::Errno(libc::ENAMETOOLONG)),
            Err(e) => return Err(e.into()),
        };
        if self.record_paths && self.note.path.is_none() {
            self.note.path = Some(p.clone());
        }
        Ok(p)
    }

    /// `O_PATH` fd for (`dirfd`, `path`), honouring `AT_EMPTY_PATH` and
    /// `AT_SYMLINK_NOFOLLOW` in `flags`. Returns the fd to use with
    /// `AT_EMPTY_PATH` (owned when freshly opened).
    fn target(&mut self, mem: &GuestMemory, dirfd: u64, paddr: u64, flags: i32) -> Result<Target, Fail> {
        let path = self.read_path(mem, paddr)?;
        self.target_path(dirfd, &path, flags)
    }

    /// As [`Self::target`], for a path already copied out: for metadata
    /// reads only (stat, readlink, access, statfs), which may also look at
    /// the directories above the trees.
    fn target_path(&mut self, dirfd: u64, path: &[u8], flags: i32) -> Result<Target, Fail> {
        if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            if dirfd as i32 == AT_FDCWD {
                let cwd = self.cwd.clone();
                let (fd, st) =
                    self.policy.inspect(&cwd, true).map_err(|e| self.path_fail(e, Some(b""), &cwd))?;
                return Ok(Target::Inspected(fd, st));
            }
            return Ok(Target::Borrowed(self.vfd(dirfd)?));
        }
        let abs = self.absolute(dirfd, path)?;
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        let (fd, st) = self.policy.inspect(&abs, follow).map_err(|e| self.path_fail(e, Some(path), &abs))?;
        Ok(Target::Inspected(fd, st))
    }

    fn parent(
        &mut self,
        mem: &GuestMemory,
        dirfd: u64,
        paddr: u64,
        write: bool,
    ) -> Result<(OwnedFd, std::ffi::CString), Fail> {
        let path = self.read_path(mem, paddr)?;
        let abs = self.absolute(dirfd, &path)?;
        self.policy.parent(&abs, write).map_err(|e| self.path_fail(e, Some(&path), &abs))
    }

    fn report_unsupported(&mut self, nr: u64) {
        self.stats.denied += 1;
        if cabin_policy::per_call::slot(nr).is_none() {
            self.other_numbers.insert(nr);
        }
        if !self.reported.insert(nr) {
            return;
        }
        let msg = if cabin_policy::per_call::slot(nr).is_some() {
            let name = sysnames::name(nr).unwrap_or("unknown");
            format!("cabin: system call {name} ({nr}) is not supported; returning ENOSYS")
        } else {
            format!(
                "cabin: system call number {nr} is not an x86-64 system call; returning ENOSYS \
                 (later such numbers are counted, not reported one by one)"
            )
        };
        self.report(msg);
    }

    fn report(&mut self, msg: String) {
        if self.print_reports {
            eprintln!("{msg}");
        }
        self.reports.push(msg);
    }

    /// At the end of a run: when the program used more than one number
    /// that is not an x86-64 system call, reports how many calls and
    /// numbers (each was answered `ENOSYS`; only the first was reported).
    pub fn finish_reports(&mut self) {
        let calls = self.stats.per_nr.other();
        if calls > 1 {
            let distinct = self.other_numbers.describe();
            self.report(format!(
                "cabin: {calls} calls used numbers that are not x86-64 system calls ({distinct} distinct); \
                 each returned ENOSYS"
            ));
        }
    }

    fn dispatch(&mut self, mem: &GuestMemory, nr: u64, a: &[u64; 6]) -> Sys {
        // Tests of what the backends do when the monitor itself fails.
        #[cfg(any(test, feature = "panic-test-call"))]
        if nr == PANIC_TEST_CALL.0 && a[0] == PANIC_TEST_CALL.1 {
            panic!("a service panic made by a test");
        }
        match table::handler(nr) {
            Some(serve) => serve(self, mem, a),
            None => {
                self.report_unsupported(nr);
                Err(Fail::Errno(libc::ENOSYS))
            }
        }
    }
}

/// How [`Service::begin`] left a call.
#[derive(Debug)]
pub enum Begun {
    /// Served: the value for `rax`, or a violation that ends the program.
    Done(Result<i64, Violation>),
    /// A wait to finish ([`Waiting::finish`]).
    Wait(Waiting),
}

/// A call that waits on descriptors, prepared by [`Service::begin`]:
/// arguments copied and checked, host descriptors held. Needs no service.
#[derive(Debug)]
pub struct Waiting {
    nr: u64,
    pending: events::Pending,
}

// A worker may hand a wait to another thread (or keep it across a lock).
const _: () = {
    const fn send<T: Send>() {}
    send::<Waiting>();
};

impl Waiting {
    /// The program's signal mask for the wait (`ppoll`, `pselect6`,
    /// `epoll_pwait`, `epoll_pwait2` given one), checked and copied. Not
    /// applied: signal delivery installs it for the wait (see
    /// `service/events.rs`).
    pub fn sigmask(&self) -> Option<u64> {
        self.pending.sigmask
    }

    /// Blocks in the host wait (a stop kicks the thread out of it: `EINTR`)
    /// and writes the results into program memory.
    pub fn finish(self, mem: &GuestMemory) -> Result<i64, Violation> {
        let mut note = CallNote::default();
        conclude(self.nr, self.pending.finish(mem), &mut note)
    }
}

/// A handler's result as the value for `rax` (a write-limit hit is noted
/// in `note` for the gate) or the violation that ends the program.
fn conclude(nr: u64, r: Sys, note: &mut CallNote) -> Result<i64, Violation> {
    match r {
        Ok(v) => Ok(v),
        Err(Fail::Errno(e)) => Ok(-(e as i64)),
        Err(Fail::Limit(hit)) => {
            note.limit = Some(hit);
            Ok(-i64::from(EFBIG))
        }
        Err(Fail::Violation(msg)) => {
            let name = sysnames::name(nr).unwrap_or("unknown");
            Err(Violation(format!("{name} (system call {nr}): {msg}")))
        }
    }
}

/// `sync`, `setrlimit`: accepted, with no effect.
fn accept(_s: &mut Service, _mem: &GuestMemory, _a: &[u64; 6]) -> Sys {
    Ok(0)
}

/// A host fd to act on with `AT_EMPTY_PATH`: freshly opened (with its
/// stat when it was looked up for a metadata read), or a program fd.
enum Target {
    Owned(OwnedFd),
    Inspected(OwnedFd, libc::stat),
    Borrowed(RawFd),
}

impl Target {
    fn raw(&self) -> RawFd {
        match self {
            Target::Owned(fd) | Target::Inspected(fd, _) => fd.as_raw_fd(),
            Target::Borrowed(fd) => *fd,
        }
    }
}

enum Special {
    /// `/dev/stdin` and friends: a duplicate of virtual fd 0, 1 or 2.
    Std(u64),
    /// A harmless device opened by its fixed host path.
    Dev(&'static str),
}

/// Device files every program may use without an allowed dir.
fn special_device(abs: &[u8]) -> Option<Special> {
    // The last component of the normalised path is `abs`'s own unless
    // `abs` ends in `/`, `.` or `..`: only those and the names below can
    // be special, and every other open skips the normalising copy.
    let last = abs.rsplit(|&b| b == b'/').next().unwrap_or(abs);
    if !abs.ends_with(b"/") && !abs.ends_with(b".") && !SPECIAL_NAMES.contains(&last) {
        return None;
    }
    let n = fs::normalize(abs);
    Some(match &n[..] {
        b"/dev/null" => Special::Dev("/dev/null"),
        b"/dev/zero" => Special::Dev("/dev/zero"),
        b"/dev/full" => Special::Dev("/dev/full"),
        b"/dev/random" => Special::Dev("/dev/random"),
        b"/dev/urandom" => Special::Dev("/dev/urandom"),
        b"/dev/stdin" | b"/dev/fd/0" | b"/proc/self/fd/0" | b"/proc/thread-self/fd/0" => Special::Std(0),
        b"/dev/stdout" | b"/dev/fd/1" | b"/proc/self/fd/1" | b"/proc/thread-self/fd/1" => Special::Std(1),
        b"/dev/stderr" | b"/dev/fd/2" | b"/proc/self/fd/2" | b"/proc/thread-self/fd/2" => Special::Std(2),
        _ => return None,
    })
}

/// The last components of the paths [`special_device`] knows.
const SPECIAL_NAMES: [&[u8]; 11] =
    [b"null", b"zero", b"full", b"random", b"urandom", b"stdin", b"stdout", b"stderr", b"0", b"1", b"2"];

#[cfg(test)]
mod tests;
