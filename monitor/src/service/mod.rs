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
//! to the gate ([`crate::policy::gate::Gate::served_with`]), which records
//! it as a `denied` call. Paths of allowed calls are copied into the note
//! only while a tracer wants them ([`Service::set_record_paths`]).
//!
//! The supported calls and their rules are listed in docs/syscalls.md; a
//! call not listed gets `ENOSYS` (never `EPERM`, so C libraries fall back)
//! and is reported once on stderr with its name and number; numbers that
//! are not x86-64 system calls (512 and up) are reported once in all, and
//! counted ([`Service::finish_reports`] says how many at the end). Nothing
//! is kept per call number beyond the fixed tables of [`crate::per_call`].

pub mod fdtable;
pub mod fs;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::memory::{pod_bytes, GuestMemory, MemError};
use crate::per_call::{CallCounts, CallSet, Distinct};
use crate::policy::limits::{WriteLimits, EFBIG};
use crate::sysnames;
use crate::trace::LimitHit;
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

/// A call the path rules refused: why, and what was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRefusal {
    /// Why.
    pub why: Refusal,
    /// What the monitor refused: the absolute path it resolved the
    /// program's path to (the program's path joined to its cwd or dirfd),
    /// or, for a call on a descriptor, the descriptor's path.
    pub resolved: Vec<u8>,
}

impl PathRefusal {
    /// The rule as the trace and audit log show it: `[paths] PATH: why`.
    pub fn rule(&self) -> String {
        format!("[paths] {}: {}", crate::trace::record::path_text(&self.resolved), self.why.describe())
    }
}

/// What the service noticed about the call it served last, for the trace
/// and audit log: taken by the ring worker after [`Service::handle`] and
/// handed to the gate. Empty (and free) unless paths are recorded or the
/// call was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallNote {
    /// The path argument as the program passed it (up to its NUL): the
    /// first one read when [`Service::set_record_paths`] is on; for a
    /// refused call, always the refused one.
    pub path: Option<Vec<u8>>,
    /// Set when the path rules refused the call (it returned `EACCES`).
    pub refusal: Option<PathRefusal>,
    /// Set when a write limit stopped the call before it ran (it returned
    /// `EFBIG`, which the program never sees: the gate stops it).
    pub limit: Option<LimitHit>,
}

/// A call (number, first argument) the service answers with a panic in
/// unit tests only: how the backends behave when the monitor fails.
#[cfg(test)]
pub(crate) const PANIC_TEST_CALL: (u64, u64) = (511, 0xdead_beef_c0de_0001);

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

/// The monitor's per-program service state.
#[derive(Debug)]
pub struct Service {
    fds: FdTable,
    policy: FsPolicy,
    cwd: Vec<u8>,
    umask: u32,
    pid: u32,
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
                fds.insert_at(i as u64, Entry { fd, cloexec: false, path: None, change: None });
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
            policy,
            cwd,
            umask,
            pid,
            comm: b"program".to_vec(),
            reported: CallSet::default(),
            other_numbers: Distinct::default(),
            record_paths: false,
            note: CallNote::default(),
            write_limits: None,
            stats: ServiceStats::default(),
            reports: Vec::new(),
            print_reports: true,
        }
    }

    /// Sizes the program's descriptor table (its `RLIMIT_NOFILE`): see
    /// [`fdtable::program_capacity`].
    pub fn set_fd_capacity(&mut self, n: usize) {
        self.fds.set_max(n);
    }

    /// How many descriptors the program holds (for `[limits] open-files`).
    pub fn open_fds(&self) -> u64 {
        self.fds.open_count() as u64
    }

    /// Sets the pid the program sees (for `prlimit64(pid, ...)` checks).
    pub fn set_pid(&mut self, pid: u32) {
        self.pid = pid;
    }

    /// Whether to copy every call's path argument for the trace (see
    /// [`CallNote`]); off by default, so an untraced run copies nothing.
    pub fn set_record_paths(&mut self, on: bool) {
        self.record_paths = on;
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

    /// Serves one forwarded call.
    pub fn handle(&mut self, mem: &GuestMemory, nr: u64, a: [u64; 6]) -> Result<i64, Violation> {
        self.stats.per_nr.add(nr, 1);
        if self.note.path.is_some() || self.note.refusal.is_some() || self.note.limit.is_some() {
            self.note = CallNote::default();
        }
        match self.dispatch(mem, nr, &a) {
            Ok(v) => Ok(v),
            Err(Fail::Errno(e)) => Ok(-(e as i64)),
            Err(Fail::Limit(hit)) => {
                self.note.limit = Some(hit);
                Ok(-i64::from(EFBIG))
            }
            Err(Fail::Violation(msg)) => {
                let name = sysnames::name(nr).unwrap_or("unknown");
                Err(Violation(format!("{name} (system call {nr}): {msg}")))
            }
        }
    }

    fn vfd(&self, vfd: u64) -> Result<RawFd, Fail> {
        self.fds.host(vfd).ok_or(Fail::Errno(libc::EBADF))
    }

    /// `prog`: the path the program passed (`None` for a call on a
    /// descriptor); `resolved`: what the monitor made of it.
    fn path_fail(&mut self, e: PathError, prog: Option<&[u8]>, resolved: &[u8]) -> Fail {
        match e {
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
        Fail::Errno(why.errno())
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
                let why = if self.policy.locate(p).is_some() { Refusal::ReadOnly } else { Refusal::Outside };
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
    fn absolute(&self, dirfd: u64, path: &[u8]) -> Result<Vec<u8>, Fail> {
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
        if crate::per_call::slot(nr).is_none() {
            self.other_numbers.insert(nr);
        }
        if !self.reported.insert(nr) {
            return;
        }
        let msg = if crate::per_call::slot(nr).is_some() {
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
        #[cfg(test)]
        if nr == PANIC_TEST_CALL.0 && a[0] == PANIC_TEST_CALL.1 {
            panic!("a service panic made by a test");
        }
        let Ok(n) = i64::try_from(nr) else {
            self.report_unsupported(nr);
            return Err(Fail::Errno(libc::ENOSYS));
        };
        match n {
            libc::SYS_read => {
                let fd = self.vfd(a[0])?;
                let p = mem.host_range(a[1], a[2], true)?;
                // SAFETY: [p, p+a[2]) is checked writable program memory.
                host(unsafe { libc::read(fd, p.cast(), a[2] as usize) } as i64)
            }
            libc::SYS_write => {
                let fd = self.vfd(a[0])?;
                let p = mem.host_range(a[1], a[2], false)?;
                let len = self.write_allowance("write", fd, a[2], None)?;
                // SAFETY: [p, p+a[2]) is checked readable program memory; len <= a[2].
                let r = host(unsafe { libc::write(fd, p.cast(), len as usize) } as i64);
                self.count_written(r)
            }
            libc::SYS_pread64 => {
                let fd = self.vfd(a[0])?;
                let p = mem.host_range(a[1], a[2], true)?;
                // SAFETY: as for read.
                host(unsafe { libc::pread(fd, p.cast(), a[2] as usize, a[3] as i64) } as i64)
            }
            libc::SYS_pwrite64 => {
                let fd = self.vfd(a[0])?;
                let p = mem.host_range(a[1], a[2], false)?;
                let len = self.write_allowance("pwrite64", fd, a[2], Some(a[3] as i64))?;
                // SAFETY: as for write.
                let r = host(unsafe { libc::pwrite(fd, p.cast(), len as usize, a[3] as i64) } as i64);
                self.count_written(r)
            }
            libc::SYS_readv | libc::SYS_writev | libc::SYS_preadv | libc::SYS_pwritev => {
                let fd = self.vfd(a[0])?;
                let write_to_guest = n == libc::SYS_readv || n == libc::SYS_preadv;
                let mut iov = self.iovecs(mem, a[1], a[2], write_to_guest)?;
                if !write_to_guest {
                    let total = iov.iter().map(|v| v.iov_len as u64).sum();
                    let (name, at) =
                        if n == libc::SYS_writev { ("writev", None) } else { ("pwritev", Some(a[3] as i64)) };
                    let len = self.write_allowance(name, fd, total, at)?;
                    clip_iovecs(&mut iov, len);
                }
                let cnt = iov.len() as i32;
                // SAFETY: every iovec points into checked program memory
                // with the needed permission; the array lives across the call.
                let r = unsafe {
                    match n {
                        libc::SYS_readv => libc::readv(fd, iov.as_ptr(), cnt),
                        libc::SYS_writev => libc::writev(fd, iov.as_ptr(), cnt),
                        libc::SYS_preadv => libc::preadv(fd, iov.as_ptr(), cnt, a[3] as i64),
                        _ => libc::pwritev(fd, iov.as_ptr(), cnt, a[3] as i64),
                    }
                };
                if write_to_guest {
                    host(r as i64)
                } else {
                    self.count_written(host(r as i64))
                }
            }
            libc::SYS_open => self.openat(mem, AT_FDCWD as u64, a[0], a[1], a[2]),
            libc::SYS_creat => {
                let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64;
                self.openat(mem, AT_FDCWD as u64, a[0], flags, a[1])
            }
            libc::SYS_openat => self.openat(mem, a[0], a[1], a[2], a[3]),
            libc::SYS_close => {
                self.fds.remove(a[0]).ok_or(Fail::Errno(libc::EBADF))?;
                Ok(0)
            }
            libc::SYS_lseek => {
                let fd = self.vfd(a[0])?;
                // SAFETY: lseek touches no memory.
                host(unsafe { libc::lseek(fd, a[1] as i64, a[2] as i32) })
            }
            libc::SYS_fstat => {
                let fd = self.vfd(a[0])?;
                self.stat_fd(mem, fd, a[1])
            }
            libc::SYS_stat | libc::SYS_lstat => {
                let flags = if n == libc::SYS_lstat { libc::AT_SYMLINK_NOFOLLOW } else { 0 };
                let t = self.target(mem, AT_FDCWD as u64, a[0], flags)?;
                self.stat_target(mem, &t, a[1])
            }
            libc::SYS_newfstatat => {
                let t = self.target(mem, a[0], a[1], a[3] as i32)?;
                self.stat_target(mem, &t, a[2])
            }
            libc::SYS_statx => {
                let t = self.target(mem, a[0], a[1], a[2] as i32)?;
                // SAFETY: statx is plain data; zeroed is a valid value.
                let mut stx: libc::statx = unsafe { std::mem::zeroed() };
                let flags = libc::AT_EMPTY_PATH | (a[2] as i32 & libc::AT_STATX_SYNC_TYPE);
                // SAFETY: statx writes the struct we pass; the path is "".
                let r = unsafe { libc::statx(t.raw(), c"".as_ptr(), flags, a[3] as u32, &mut stx) };
                host(r as i64)?;
                mem.write(a[4], pod_bytes(&stx))?;
                Ok(0)
            }
            libc::SYS_getdents64 => {
                let fd = self.vfd(a[0])?;
                let p = mem.host_range(a[1], a[2], true)?;
                // SAFETY: getdents64 writes at most a[2] bytes at p, checked.
                host(unsafe { libc::syscall(libc::SYS_getdents64, fd, p, a[2] as usize) })
            }
            libc::SYS_fcntl => self.fcntl(a),
            libc::SYS_dup => {
                let fd = self.vfd(a[0])?;
                let (path, change) =
                    self.fds.get(a[0]).map(|e| (e.path.clone(), e.change)).unwrap_or_default();
                let e = Entry { fd: dup_cloexec(fd)?, cloexec: false, path, change };
                self.fds.insert(e, 0).map(|v| v as i64).ok_or(Fail::Errno(libc::EMFILE))
            }
            libc::SYS_dup2 | libc::SYS_dup3 => {
                let flags = if n == libc::SYS_dup3 { a[2] as i32 } else { 0 };
                if n == libc::SYS_dup3 && (a[0] == a[1] || flags & !libc::O_CLOEXEC != 0) {
                    return Err(Fail::Errno(libc::EINVAL));
                }
                let fd = self.vfd(a[0])?;
                if a[0] == a[1] {
                    return Ok(a[1] as i64);
                }
                if a[1] >= self.fds.max() as u64 {
                    return Err(Fail::Errno(libc::EBADF));
                }
                let (path, change) =
                    self.fds.get(a[0]).map(|e| (e.path.clone(), e.change)).unwrap_or_default();
                let e = Entry { fd: dup_cloexec(fd)?, cloexec: flags & libc::O_CLOEXEC != 0, path, change };
                self.fds.insert_at(a[1], e);
                Ok(a[1] as i64)
            }
            libc::SYS_pipe | libc::SYS_pipe2 => {
                let flags = if n == libc::SYS_pipe2 { a[1] as i32 } else { 0 };
                if flags & !(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_DIRECT) != 0 {
                    return Err(Fail::Errno(libc::EINVAL));
                }
                let mut p = [0i32; 2];
                // SAFETY: pipe2 writes two ints into `p`.
                host(unsafe { libc::pipe2(p.as_mut_ptr(), (flags & !libc::O_CLOEXEC) | libc::O_CLOEXEC) }
                    as i64)?;
                // SAFETY: fresh descriptors we own.
                let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
                let cloexec = flags & libc::O_CLOEXEC != 0;
                let vr = self.fds.insert(Entry { fd: r, cloexec, path: None, change: None }, 0);
                let vw = self.fds.insert(Entry { fd: w, cloexec, path: None, change: None }, 0);
                let (Some(vr), Some(vw)) = (vr, vw) else {
                    if let Some(v) = vr {
                        self.fds.remove(v);
                    }
                    return Err(Fail::Errno(libc::EMFILE));
                };
                let mut out = [0u8; 8];
                out[..4].copy_from_slice(&(vr as i32).to_le_bytes());
                out[4..].copy_from_slice(&(vw as i32).to_le_bytes());
                if let Err(e) = mem.write(a[0], &out) {
                    self.fds.remove(vr);
                    self.fds.remove(vw);
                    return Err(e.into());
                }
                Ok(0)
            }
            libc::SYS_ftruncate => {
                let fd = self.vfd(a[0])?;
                self.resize_allowed("ftruncate", fd, a[1])?;
                // SAFETY: touches no memory.
                host(unsafe { libc::ftruncate(fd, a[1] as i64) } as i64)
            }
            libc::SYS_fsync | libc::SYS_fdatasync => {
                let fd = self.vfd(a[0])?;
                // SAFETY: touches no memory.
                host(unsafe {
                    if n == libc::SYS_fsync {
                        libc::fsync(fd)
                    } else {
                        libc::fdatasync(fd)
                    }
                } as i64)
            }
            libc::SYS_fadvise64 => {
                self.vfd(a[0])?;
                Ok(0)
            }
            libc::SYS_fallocate => {
                let fd = self.vfd(a[0])?;
                // A negative offset or length is the kernel's EINVAL.
                if (a[2] as i64) >= 0 && (a[3] as i64) > 0 {
                    self.resize_allowed("fallocate", fd, a[2].saturating_add(a[3]))?;
                }
                // SAFETY: touches no memory.
                host(unsafe { libc::fallocate(fd, a[1] as i32, a[2] as i64, a[3] as i64) } as i64)
            }
            libc::SYS_unlink => self.unlinkat(mem, AT_FDCWD as u64, a[0], 0),
            libc::SYS_rmdir => self.unlinkat(mem, AT_FDCWD as u64, a[0], libc::AT_REMOVEDIR as u64),
            libc::SYS_unlinkat => self.unlinkat(mem, a[0], a[1], a[2]),
            libc::SYS_mkdir => self.mkdirat(mem, AT_FDCWD as u64, a[0], a[1]),
            libc::SYS_mkdirat => self.mkdirat(mem, a[0], a[1], a[2]),
            libc::SYS_rename => self.renameat2(mem, [AT_FDCWD as u64, a[0], AT_FDCWD as u64, a[1], 0]),
            libc::SYS_renameat => self.renameat2(mem, [a[0], a[1], a[2], a[3], 0]),
            libc::SYS_renameat2 => self.renameat2(mem, [a[0], a[1], a[2], a[3], a[4]]),
            libc::SYS_readlink => self.readlinkat(mem, AT_FDCWD as u64, a[0], a[1], a[2]),
            libc::SYS_readlinkat => self.readlinkat(mem, a[0], a[1], a[2], a[3]),
            libc::SYS_access => self.faccessat(mem, AT_FDCWD as u64, a[0], a[1], 0),
            libc::SYS_faccessat => self.faccessat(mem, a[0], a[1], a[2], 0),
            libc::SYS_faccessat2 => self.faccessat(mem, a[0], a[1], a[2], a[3]),
            libc::SYS_symlink => self.symlinkat(mem, a[0], AT_FDCWD as u64, a[1]),
            libc::SYS_symlinkat => self.symlinkat(mem, a[0], a[1], a[2]),
            libc::SYS_chmod => self.fchmodat(mem, AT_FDCWD as u64, a[0], a[1]),
            libc::SYS_fchmodat => self.fchmodat(mem, a[0], a[1], a[2]),
            libc::SYS_fchmod => {
                let fd = self.fd_change(a[0])?;
                let mode = self.policy.creation_mode(a[1] as u32);
                // SAFETY: touches no memory.
                host(unsafe { libc::fchmod(fd, mode) } as i64)
            }
            libc::SYS_utimensat => self.utimensat(mem, a),
            libc::SYS_getcwd => {
                let mut v = self.cwd.clone();
                v.push(0);
                if (v.len() as u64) > a[1] {
                    return Err(Fail::Errno(libc::ERANGE));
                }
                mem.write(a[0], &v)?;
                Ok(v.len() as i64)
            }
            libc::SYS_chdir => {
                let path = self.read_path(mem, a[0])?;
                let abs = self.absolute(AT_FDCWD as u64, &path)?;
                self.chdir(fs::normalize(&abs), Some(&path))
            }
            libc::SYS_fchdir => {
                let path = self.fds.get(a[0]).ok_or(Fail::Errno(libc::EBADF))?.path.clone();
                let path = path.ok_or(Fail::Errno(libc::ENOTDIR))?;
                self.chdir(path, None)
            }
            libc::SYS_umask => {
                let old = self.umask;
                self.umask = a[0] as u32 & 0o777;
                // SAFETY: sets the monitor's umask, which applies to the files
                // it creates for the program (and nothing else is created
                // while a program runs).
                unsafe { libc::umask(self.umask) };
                Ok(old as i64)
            }
            libc::SYS_ioctl => self.ioctl(mem, a),
            libc::SYS_nanosleep => {
                let ts = self.timespec(mem, a[0])?;
                // SAFETY: nanosleep reads `ts`; no remainder requested.
                host(unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) } as i64)?;
                if a[1] != 0 {
                    mem.write(a[1], &[0u8; 16])?;
                }
                Ok(0)
            }
            libc::SYS_clock_nanosleep => {
                let ts = self.timespec(mem, a[2])?;
                // SAFETY: reads `ts`; no remainder requested.
                let r = unsafe { libc::clock_nanosleep(a[0] as i32, a[1] as i32, &ts, std::ptr::null_mut()) };
                if r != 0 {
                    return Err(Fail::Errno(r));
                }
                Ok(0)
            }
            libc::SYS_clock_gettime | libc::SYS_clock_getres => {
                // SAFETY: timespec is plain data.
                let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
                // SAFETY: writes `ts`.
                let r = unsafe {
                    if n == libc::SYS_clock_gettime {
                        libc::clock_gettime(a[0] as i32, &mut ts)
                    } else {
                        libc::clock_getres(a[0] as i32, &mut ts)
                    }
                };
                host(r as i64)?;
                if a[1] != 0 {
                    mem.write(a[1], pod_bytes(&ts))?;
                }
                Ok(0)
            }
            libc::SYS_gettimeofday => {
                let now =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                if a[0] != 0 {
                    let mut b = [0u8; 16];
                    b[..8].copy_from_slice(&now.as_secs().to_le_bytes());
                    b[8..].copy_from_slice(&u64::from(now.subsec_micros()).to_le_bytes());
                    mem.write(a[0], &b)?;
                }
                Ok(0)
            }
            libc::SYS_time => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                if a[0] != 0 {
                    mem.write_u64(a[0], now)?;
                }
                Ok(now as i64)
            }
            libc::SYS_getrandom => {
                let p = mem.host_range(a[0], a[1], true)?;
                let flags = a[2] as u32 & (libc::GRND_NONBLOCK | libc::GRND_RANDOM);
                // SAFETY: writes at most a[1] bytes at p, checked.
                host(unsafe { libc::getrandom(p.cast(), a[1] as usize, flags) } as i64)
            }
            libc::SYS_uname => {
                let mut b = vec![0u8; 6 * 65];
                for (i, s) in UNAME.iter().enumerate() {
                    b[i * 65..i * 65 + s.len()].copy_from_slice(s.as_bytes());
                }
                mem.write(a[0], &b)?;
                Ok(0)
            }
            libc::SYS_prlimit64 => {
                if a[0] != 0 && a[0] != u64::from(self.pid) {
                    return Err(Fail::Errno(libc::EPERM));
                }
                if a[3] != 0 {
                    let lim = rlimit(a[1], self.fds.max())?;
                    mem.write(a[3], &lim)?;
                }
                Ok(0)
            }
            libc::SYS_getrlimit => {
                let lim = rlimit(a[0], self.fds.max())?;
                mem.write(a[1], &lim)?;
                Ok(0)
            }
            libc::SYS_setrlimit => Ok(0),
            libc::SYS_getrusage => {
                mem.write(a[1], &[0u8; 144])?;
                Ok(0)
            }
            libc::SYS_times => {
                if a[0] != 0 {
                    mem.write(a[0], &[0u8; 32])?;
                }
                // SAFETY: times(NULL) is allowed on Linux and touches no memory.
                host(unsafe { libc::times(std::ptr::null_mut()) })
            }
            libc::SYS_sched_getaffinity => {
                if a[1] < 8 {
                    return Err(Fail::Errno(libc::EINVAL));
                }
                mem.write(a[2], &1u64.to_le_bytes())?;
                Ok(8)
            }
            libc::SYS_sendfile => {
                let out = self.vfd(a[0])?;
                let inp = self.vfd(a[1])?;
                let len = self.write_allowance("sendfile", out, a[3].min(MAX_COPY), None)?;
                if a[2] == 0 {
                    // SAFETY: no memory argument.
                    let r =
                        host(unsafe { libc::sendfile(out, inp, std::ptr::null_mut(), len as usize) } as i64);
                    return self.count_written(r);
                }
                let mut off = mem.read_u64(a[2])? as i64;
                // SAFETY: `off` is a local.
                let r = self.count_written(host(
                    unsafe { libc::sendfile(out, inp, &mut off, len as usize) } as i64,
                ))?;
                mem.write_u64(a[2], off as u64)?;
                Ok(r)
            }
            libc::SYS_copy_file_range => {
                let inp = self.vfd(a[0])?;
                let out = self.vfd(a[2])?;
                let mut offs = [0i64; 2];
                for (i, p) in [a[1], a[3]].into_iter().enumerate() {
                    if p != 0 {
                        offs[i] = mem.read_u64(p)? as i64;
                    }
                }
                let at = (a[3] != 0).then_some(offs[1]);
                let len = self.write_allowance("copy_file_range", out, a[4].min(MAX_COPY), at)?;
                let (o0, o1) = offs.split_at_mut(1);
                let pin = if a[1] != 0 { &mut o0[0] as *mut i64 } else { std::ptr::null_mut() };
                let pout = if a[3] != 0 { &mut o1[0] as *mut i64 } else { std::ptr::null_mut() };
                // SAFETY: offset pointers are locals or null.
                let r = host(unsafe { libc::copy_file_range(inp, pin, out, pout, len as usize, 0) } as i64);
                let r = self.count_written(r)?;
                for (i, p) in [a[1], a[3]].into_iter().enumerate() {
                    if p != 0 {
                        mem.write_u64(p, offs[i] as u64)?;
                    }
                }
                Ok(r)
            }
            libc::SYS_wait4 | libc::SYS_waitid => Err(Fail::Errno(libc::ECHILD)),
            libc::SYS_sysinfo => {
                // SAFETY: sysinfo is plain data; the call fills it.
                let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
                // SAFETY: writes `si`.
                host(unsafe { libc::sysinfo(&mut si) } as i64)?;
                mem.write(a[0], pod_bytes(&si))?;
                Ok(0)
            }
            libc::SYS_poll => self.poll(mem, a),
            libc::SYS_link => self.linkat(mem, [AT_FDCWD as u64, a[0], AT_FDCWD as u64, a[1]]),
            libc::SYS_linkat => self.linkat(mem, [a[0], a[1], a[2], a[3]]),
            libc::SYS_truncate => {
                let path = self.read_path(mem, a[0])?;
                let abs = self.absolute(AT_FDCWD as u64, &path)?;
                let o = self
                    .policy
                    .open(&abs, libc::O_WRONLY, 0)
                    .map_err(|e| self.path_fail(e, Some(&path), &abs))?;
                self.resize_allowed("truncate", o.fd.as_raw_fd(), a[1])?;
                // SAFETY: touches no memory.
                host(unsafe { libc::ftruncate(o.fd.as_raw_fd(), a[1] as i64) } as i64)
            }
            libc::SYS_chown | libc::SYS_lchown | libc::SYS_fchownat => {
                let (dirfd, paddr, uid, gid, flags) = match n {
                    libc::SYS_fchownat => (a[0], a[1], a[2], a[3], a[4] as i32),
                    libc::SYS_lchown => (AT_FDCWD as u64, a[0], a[1], a[2], libc::AT_SYMLINK_NOFOLLOW),
                    _ => (AT_FDCWD as u64, a[0], a[1], a[2], 0),
                };
                let path = self.read_path(mem, paddr)?;
                let (t, resolved) = if !path.is_empty() {
                    let abs = self.absolute(dirfd, &path)?;
                    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
                    (Target::Owned(self.change_target(&path, &abs, follow)?.0), abs)
                } else if flags & libc::AT_EMPTY_PATH == 0 {
                    return Err(Fail::Errno(libc::ENOENT));
                } else if dirfd as i32 == AT_FDCWD {
                    let cwd = self.cwd.clone();
                    (Target::Owned(self.change_target(b"", &cwd, true)?.0), cwd)
                } else {
                    let resolved = self.fds.get(dirfd).and_then(|e| e.path.clone()).unwrap_or_default();
                    (Target::Borrowed(self.fd_change(dirfd)?), resolved)
                };
                self.check_owner(uid, gid, (!path.is_empty()).then_some(&path[..]), &resolved)?;
                // SAFETY: the path is "" (AT_EMPTY_PATH on our fd).
                host(unsafe {
                    libc::fchownat(t.raw(), c"".as_ptr(), uid as u32, gid as u32, libc::AT_EMPTY_PATH)
                } as i64)
            }
            libc::SYS_fchown => {
                let fd = self.fd_change(a[0])?;
                let resolved = self.fds.get(a[0]).and_then(|e| e.path.clone()).unwrap_or_default();
                self.check_owner(a[1], a[2], None, &resolved)?;
                // SAFETY: touches no memory.
                host(unsafe { libc::fchown(fd, a[1] as u32, a[2] as u32) } as i64)
            }
            libc::SYS_statfs | libc::SYS_fstatfs => {
                let t = if n == libc::SYS_statfs {
                    self.target(mem, AT_FDCWD as u64, a[0], 0)?
                } else {
                    Target::Borrowed(self.vfd(a[0])?)
                };
                // SAFETY: statfs is plain data; fstatfs fills it.
                let mut st: libc::statfs = unsafe { std::mem::zeroed() };
                // SAFETY: writes `st`.
                host(unsafe { libc::fstatfs(t.raw(), &mut st) } as i64)?;
                mem.write(a[1], pod_bytes(&st))?;
                Ok(0)
            }
            libc::SYS_flock => {
                self.vfd(a[0])?;
                Ok(0)
            }
            libc::SYS_sync => Ok(0),
            libc::SYS_syncfs => {
                self.vfd(a[0])?;
                Ok(0)
            }
            libc::SYS_getgroups => {
                // SAFETY: getgroups(0, NULL) only counts; then fills our buffer.
                let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
                let mut g = vec![0u32; n.max(0) as usize];
                // SAFETY: `g` has room for n entries.
                let n = host(unsafe { libc::getgroups(n, g.as_mut_ptr()) } as i64)? as usize;
                if a[0] == 0 {
                    return Ok(n as i64);
                }
                if (a[0] as usize) < n {
                    return Err(Fail::Errno(libc::EINVAL));
                }
                let bytes: Vec<u8> = g[..n].iter().flat_map(|x| x.to_le_bytes()).collect();
                mem.write(a[1], &bytes)?;
                Ok(n as i64)
            }
            libc::SYS_prctl => match a[0] as i32 {
                libc::PR_SET_NAME => {
                    // As the kernel: up to its NUL, at most 15 bytes, across
                    // adjacent regions (nothing past the NUL is read).
                    let (name, _) = mem.read_until_nul(a[1], 15)?;
                    self.comm = name;
                    Ok(0)
                }
                libc::PR_GET_NAME => {
                    let mut name = [0u8; 16];
                    name[..self.comm.len().min(15)].copy_from_slice(&self.comm[..self.comm.len().min(15)]);
                    mem.write(a[1], &name)?;
                    Ok(0)
                }
                libc::PR_GET_DUMPABLE => Ok(0),
                libc::PR_SET_DUMPABLE | libc::PR_SET_PDEATHSIG => Ok(0),
                _ => Err(Fail::Errno(libc::EINVAL)),
            },
            _ => {
                self.report_unsupported(nr);
                Err(Fail::Errno(libc::ENOSYS))
            }
        }
    }

    fn iovecs(&self, mem: &GuestMemory, addr: u64, cnt: u64, write: bool) -> Result<Vec<libc::iovec>, Fail> {
        if cnt > IOV_MAX {
            return Err(Fail::Errno(libc::EINVAL));
        }
        let raw = mem.read(addr, (cnt * 16) as usize)?;
        let mut out = Vec::with_capacity(cnt as usize);
        let mut total: u64 = 0;
        for c in raw.chunks_exact(16) {
            let base = u64::from_le_bytes(c[..8].try_into().unwrap_or([0; 8]));
            let len = u64::from_le_bytes(c[8..].try_into().unwrap_or([0; 8]));
            total = total.checked_add(len).ok_or(Fail::Errno(libc::EINVAL))?;
            if total > isize::MAX as u64 {
                return Err(Fail::Errno(libc::EINVAL));
            }
            let p = mem.host_range(base, len, write)?;
            out.push(libc::iovec { iov_base: p.cast(), iov_len: len as usize });
        }
        Ok(out)
    }

    /// How many of `len` bytes a write-family call `name` through host
    /// descriptor `fd` may write under the write limits (all of them when
    /// there are none). `offset`: the call's own file offset (`pwrite64`,
    /// `pwritev`, `copy_file_range` with one), else the descriptor's.
    fn write_allowance(&self, name: &str, fd: RawFd, len: u64, offset: Option<i64>) -> Result<u64, Fail> {
        let Some(w) = &self.write_limits else { return Ok(len) };
        let at = if w.file_size().is_some() && len > 0 { write_offset(fd, offset) } else { None };
        w.allow(name, len, at).map_err(Fail::Limit)
    }

    /// Counts the bytes a write-family call wrote (under a write limit).
    fn count_written(&mut self, r: Sys) -> Sys {
        if let (Some(w), Ok(n)) = (&mut self.write_limits, &r) {
            w.wrote(*n as u64);
        }
        r
    }

    /// A call that sets the size of the file behind host descriptor `fd`,
    /// or allocates its blocks, up to `end` bytes: a `file-size` hit past
    /// the limit when it is a regular file. A negative size is left to the
    /// kernel's EINVAL, another kind of file to its own error.
    fn resize_allowed(&self, name: &str, fd: RawFd, end: u64) -> Result<(), Fail> {
        match &self.write_limits {
            Some(w) if w.file_size().is_some() && (end as i64) >= 0 && is_regular(fd) => {
                w.resize(name, end).map_err(Fail::Limit)
            }
            _ => Ok(()),
        }
    }

    fn openat(&mut self, mem: &GuestMemory, dirfd: u64, paddr: u64, flags: u64, mode: u64) -> Sys {
        let path = self.read_path(mem, paddr)?;
        let abs = self.absolute(dirfd, &path)?;
        let flags = flags as i32;
        let cloexec = flags & libc::O_CLOEXEC != 0;
        let (fd, change) = match special_device(&abs) {
            Some(Special::Std(v)) => (dup_cloexec(self.vfd(v)?)?, Some(false)),
            Some(Special::Dev(p)) => {
                let c = std::ffi::CString::new(p).map_err(|_| Fail::Errno(libc::EINVAL))?;
                let fl = (flags & libc::O_ACCMODE) | libc::O_CLOEXEC | libc::O_NOFOLLOW;
                // SAFETY: opens a fixed device path.
                let r = unsafe { libc::open(c.as_ptr(), fl) };
                host(r as i64)?;
                // SAFETY: fresh descriptor.
                (unsafe { OwnedFd::from_raw_fd(r) }, Some(false))
            }
            None => {
                let m = mode as u32 & !self.umask & 0o7777;
                let o = self
                    .policy
                    .open(&abs, flags & !libc::O_CLOEXEC, m)
                    .map_err(|e| self.path_fail(e, Some(&path), &abs))?;
                (o.fd, o.change)
            }
        };
        let e = Entry { fd, cloexec, path: Some(fs::normalize(&abs)), change };
        self.fds.insert(e, 0).map(|v| v as i64).ok_or(Fail::Errno(libc::EMFILE))
    }

    /// Writes the stat of `t` (taken when it was looked up, or now).
    fn stat_target(&self, mem: &GuestMemory, t: &Target, out: u64) -> Sys {
        match t {
            Target::Inspected(_, st) => {
                mem.write(out, pod_bytes(st))?;
                Ok(0)
            }
            t => self.stat_fd(mem, t.raw(), out),
        }
    }

    fn stat_fd(&self, mem: &GuestMemory, fd: RawFd, out: u64) -> Sys {
        // SAFETY: stat is plain data; fstat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: writes `st`.
        host(unsafe { libc::fstat(fd, &mut st) } as i64)?;
        mem.write(out, pod_bytes(&st))?;
        Ok(0)
    }

    fn fcntl(&mut self, a: &[u64; 6]) -> Sys {
        let fd = self.vfd(a[0])?;
        match a[1] as i32 {
            libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
                let min = usize::try_from(a[2]).map_err(|_| Fail::Errno(libc::EINVAL))?;
                if min >= self.fds.max() {
                    return Err(Fail::Errno(libc::EINVAL));
                }
                let (path, change) =
                    self.fds.get(a[0]).map(|e| (e.path.clone(), e.change)).unwrap_or_default();
                let cloexec = a[1] as i32 == libc::F_DUPFD_CLOEXEC;
                let e = Entry { fd: dup_cloexec(fd)?, cloexec, path, change };
                self.fds.insert(e, min).map(|v| v as i64).ok_or(Fail::Errno(libc::EMFILE))
            }
            libc::F_GETFD => Ok(i64::from(self.fds.get(a[0]).is_some_and(|e| e.cloexec))),
            libc::F_SETFD => {
                if let Some(e) = self.fds.get_mut(a[0]) {
                    e.cloexec = a[2] & libc::FD_CLOEXEC as u64 != 0;
                }
                Ok(0)
            }
            libc::F_GETFL => {
                // SAFETY: touches no memory.
                host(unsafe { libc::fcntl(fd, libc::F_GETFL) } as i64)
            }
            libc::F_SETFL => {
                let allowed = libc::O_APPEND | libc::O_NONBLOCK | libc::O_NOATIME | libc::O_DIRECT;
                // SAFETY: touches no memory.
                host(unsafe { libc::fcntl(fd, libc::F_SETFL, a[2] as i32 & allowed) } as i64)
            }
            libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_SETLK | libc::F_OFD_SETLKW => Ok(0),
            _ => Err(Fail::Errno(libc::EINVAL)),
        }
    }

    fn unlinkat(&mut self, mem: &GuestMemory, dirfd: u64, paddr: u64, flags: u64) -> Sys {
        if flags & !(libc::AT_REMOVEDIR as u64) != 0 {
            return Err(Fail::Errno(libc::EINVAL));
        }
        let (dir, name) = self.parent(mem, dirfd, paddr, true)?;
        // SAFETY: unlinkat reads the name; dir is our fd.
        host(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags as i32) } as i64)
    }

    fn mkdirat(&mut self, mem: &GuestMemory, dirfd: u64, paddr: u64, mode: u64) -> Sys {
        let path = self.read_path(mem, paddr)?;
        let abs = self.absolute(dirfd, &path)?;
        if self.policy.locate(&abs).is_some_and(|(_, rel)| rel == b".") || self.policy.is_ancestor(&abs) {
            // An allowed directory itself: it exists (`mkdir -p` relies on EEXIST).
            return Err(Fail::Errno(libc::EEXIST));
        }
        let (dir, name) = self.policy.parent(&abs, true).map_err(|e| self.path_fail(e, Some(&path), &abs))?;
        let mode = self.policy.creation_mode(mode as u32);
        // SAFETY: as for unlinkat.
        host(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } as i64)
    }

    fn renameat2(&mut self, mem: &GuestMemory, a: [u64; 5]) -> Sys {
        let (od, on) = self.parent(mem, a[0], a[1], true)?;
        let (nd, nn) = self.parent(mem, a[2], a[3], true)?;
        let flags = a[4] as u32 & (libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE);
        // SAFETY: reads the two names; the fds are ours.
        host(unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                od.as_raw_fd(),
                on.as_ptr(),
                nd.as_raw_fd(),
                nn.as_ptr(),
                flags,
            )
        })
    }

    fn linkat(&mut self, mem: &GuestMemory, a: [u64; 4]) -> Sys {
        // Both names need a writable dir (a link into a writable dir to a
        // file of a read-only dir would make that file writable). The old
        // name's final symlink is never followed (AT_SYMLINK_FOLLOW is
        // ignored): following it could link a file from outside.
        let (od, on) = self.parent(mem, a[0], a[1], true)?;
        let (nd, nn) = self.parent(mem, a[2], a[3], true)?;
        // SAFETY: reads the two names; the fds are ours.
        host(unsafe { libc::linkat(od.as_raw_fd(), on.as_ptr(), nd.as_raw_fd(), nn.as_ptr(), 0) } as i64)
    }

    fn readlinkat(&mut self, mem: &GuestMemory, dirfd: u64, paddr: u64, buf: u64, size: u64) -> Sys {
        if size as i64 <= 0 {
            return Err(Fail::Errno(libc::EINVAL));
        }
        let path = self.read_path(mem, paddr)?;
        if !path.is_empty() {
            // Static glibc reads this link while it starts (for $ORIGIN).
            // The monitor's /proc/self is never served: the program has no
            // executable file of its own, and gets what a system without
            // /proc answers, instead of a denial in every run's audit log.
            let abs = self.absolute(dirfd, &path)?;
            let n = fs::normalize(&abs);
            if n == b"/proc/self/exe" || n == b"/proc/thread-self/exe" {
                return Err(Fail::Errno(libc::ENOENT));
            }
        }
        let t = self.target_path(dirfd, &path, libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH)?;
        let mut out = vec![0u8; (size as usize).min(PATH_MAX)];
        // SAFETY: writes at most out.len() bytes into `out`.
        let r = host(
            unsafe { libc::readlinkat(t.raw(), c"".as_ptr(), out.as_mut_ptr().cast(), out.len()) } as i64
        )?;
        mem.write(buf, &out[..r as usize])?;
        Ok(r)
    }

    fn faccessat(&mut self, mem: &GuestMemory, dirfd: u64, paddr: u64, mode: u64, flags: u64) -> Sys {
        let flags = flags as i32;
        let path = self.read_path(mem, paddr)?;
        let t = self.target_path(dirfd, &path, flags & (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH))?;
        if mode as i32 & libc::W_OK != 0 && !path.is_empty() {
            let abs = self.absolute(dirfd, &path)?;
            if special_device(&abs).is_none() {
                // Writable as a write would find it (ancestry, devices, /proc).
                let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
                let r = self.policy.reach_for_change(&abs, follow).and_then(|r| match &r.obj {
                    Some((o, st)) => self.policy.check_object(o.as_raw_fd(), st, Access::Write),
                    None => Ok(()),
                });
                if let Err(e) = r {
                    return Err(self.path_fail(e, Some(&path), &abs));
                }
            }
        }
        let fl = libc::AT_EMPTY_PATH | (flags & libc::AT_EACCESS);
        // SAFETY: the path is "" (AT_EMPTY_PATH on our fd).
        host(unsafe { libc::syscall(libc::SYS_faccessat2, t.raw(), c"".as_ptr(), mode as i32 & 7, fl) })
    }

    fn symlinkat(&mut self, mem: &GuestMemory, taddr: u64, dirfd: u64, paddr: u64) -> Sys {
        let target = self.read_path(mem, taddr)?;
        let target = std::ffi::CString::new(target).map_err(|_| Fail::Errno(libc::EINVAL))?;
        let (dir, name) = self.parent(mem, dirfd, paddr, true)?;
        // The link's text is never followed by the monitor except through
        // openat2(RESOLVE_BENEATH), so any text is harmless.
        // SAFETY: reads the two strings.
        host(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) } as i64)
    }

    fn fchmodat(&mut self, mem: &GuestMemory, dirfd: u64, paddr: u64, mode: u64) -> Sys {
        let path = self.read_path(mem, paddr)?;
        let abs = self.absolute(dirfd, &path)?;
        let (obj, _) = self.change_target(&path, &abs, true)?;
        chmod_via_proc(obj.as_raw_fd(), self.policy.creation_mode(mode as u32))
    }

    fn utimensat(&mut self, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
        let times = if a[2] != 0 { Some(mem.read(a[2], 32)?) } else { None };
        let mut ts = [libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW }; 2];
        if let Some(t) = &times {
            for (i, c) in t.chunks_exact(16).enumerate() {
                ts[i].tv_sec = i64::from_le_bytes(c[..8].try_into().unwrap_or([0; 8]));
                ts[i].tv_nsec = i64::from_le_bytes(c[8..].try_into().unwrap_or([0; 8]));
            }
        }
        let fd = if a[1] == 0 {
            // futimens(fd): the fd itself.
            Target::Borrowed(self.fd_change(a[0])?)
        } else {
            let path = self.read_path(mem, a[1])?;
            let abs = self.absolute(a[0], &path)?;
            let follow = a[3] as i32 & libc::AT_SYMLINK_NOFOLLOW == 0;
            Target::Owned(self.change_target(&path, &abs, follow)?.0)
        };
        let p = proc_fd_path(fd.raw());
        // SAFETY: reads the path and the two timespecs.
        host(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) } as i64)
    }

    fn chdir(&mut self, abs: Vec<u8>, prog: Option<&[u8]>) -> Sys {
        let fd = self
            .policy
            .open(&abs, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| self.path_fail(e, prog, &abs))?;
        drop(fd);
        self.cwd = abs;
        Ok(0)
    }

    fn timespec(&self, mem: &GuestMemory, addr: u64) -> Result<libc::timespec, Fail> {
        let b = mem.read(addr, 16)?;
        let sec = i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
        let nsec = i64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
        if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
            return Err(Fail::Errno(libc::EINVAL));
        }
        Ok(libc::timespec { tv_sec: sec, tv_nsec: nsec })
    }

    fn ioctl(&mut self, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
        let fd = self.vfd(a[0])?;
        // SAFETY: isatty touches no memory.
        let tty = unsafe { libc::isatty(fd) } == 1;
        let req = a[1] as u32 as u64;
        match req {
            r if r == libc::TCGETS => {
                if !tty {
                    return Err(Fail::Errno(libc::ENOTTY));
                }
                let mut t = [0u8; 64];
                // SAFETY: TCGETS writes a 36-byte kernel termios into `t`.
                host(unsafe { libc::ioctl(fd, libc::TCGETS, t.as_mut_ptr()) } as i64)?;
                mem.write(a[2], &t[..36])?;
                Ok(0)
            }
            r if r == libc::TCSETS || r == libc::TCSETSW || r == libc::TCSETSF => {
                if !tty {
                    return Err(Fail::Errno(libc::ENOTTY));
                }
                let mut t = [0u8; 64];
                mem.read_into(a[2], &mut t[..36])?;
                // SAFETY: reads a 36-byte kernel termios from `t`.
                host(unsafe { libc::ioctl(fd, r as _, t.as_ptr()) } as i64)
            }
            r if r == libc::TIOCGWINSZ => {
                if !tty {
                    return Err(Fail::Errno(libc::ENOTTY));
                }
                let mut w = [0u8; 8];
                // SAFETY: writes a struct winsize (8 bytes).
                host(unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, w.as_mut_ptr()) } as i64)?;
                mem.write(a[2], &w)?;
                Ok(0)
            }
            r if r == libc::TIOCGPGRP => {
                if !tty {
                    return Err(Fail::Errno(libc::ENOTTY));
                }
                mem.write(a[2], &(self.pid as i32).to_le_bytes())?;
                Ok(0)
            }
            r if r == libc::FIOCLEX || r == libc::FIONCLEX => {
                if let Some(e) = self.fds.get_mut(a[0]) {
                    e.cloexec = r == libc::FIOCLEX;
                }
                Ok(0)
            }
            _ => Err(Fail::Errno(libc::ENOTTY)),
        }
    }

    fn poll(&mut self, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
        let n = a[1];
        if n > self.fds.max() as u64 {
            return Err(Fail::Errno(libc::EINVAL));
        }
        let raw = mem.read(a[0], (n * 8) as usize)?;
        let mut pfds = Vec::with_capacity(n as usize);
        for c in raw.chunks_exact(8) {
            let vfd = i32::from_le_bytes(c[..4].try_into().unwrap_or([0; 4]));
            let events = i16::from_le_bytes(c[4..6].try_into().unwrap_or([0; 2]));
            let fd = if vfd < 0 { -1 } else { self.fds.host(vfd as u64).unwrap_or(i32::MAX) };
            pfds.push(libc::pollfd { fd, events, revents: 0 });
        }
        // SAFETY: poll writes `revents` of our own array.
        let r = host(unsafe { libc::poll(pfds.as_mut_ptr(), n, a[2] as i32) } as i64)?;
        for (i, p) in pfds.iter().enumerate() {
            let revents = if p.fd == i32::MAX { libc::POLLNVAL } else { p.revents };
            mem.write(a[0] + i as u64 * 8 + 6, &revents.to_le_bytes())?;
        }
        Ok(r)
    }
}

/// Where a write through host descriptor `fd` lands, for `[limits]
/// file-size`: `None` when `fd` is not a regular file (pipes, terminals,
/// sockets, devices have no size) or the offset is the kernel's EINVAL.
/// With `O_APPEND` the end of the file, whatever `offset` says (Linux
/// appends `pwrite` too); else `offset`, or the descriptor's position.
/// The program cannot move either between this and the write: only this
/// (single) worker thread acts on the descriptor.
fn write_offset(fd: RawFd, offset: Option<i64>) -> Option<u64> {
    let st = regular_stat(fd)?;
    // SAFETY: touches no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let at = if flags >= 0 && flags & libc::O_APPEND != 0 {
        st.st_size
    } else if let Some(off) = offset {
        off
    } else {
        // SAFETY: touches no memory.
        unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) }
    };
    u64::try_from(at).ok()
}

/// `fstat` of host descriptor `fd` when it is a regular file.
fn regular_stat(fd: RawFd) -> Option<libc::stat> {
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: writes `st`.
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG;
    ok.then_some(st)
}

fn is_regular(fd: RawFd) -> bool {
    regular_stat(fd).is_some()
}

/// Shortens `iov` to `len` bytes in all (a clipped `writev`).
fn clip_iovecs(iov: &mut Vec<libc::iovec>, len: u64) {
    let mut left = len as usize;
    for (i, v) in iov.iter_mut().enumerate() {
        if v.iov_len >= left {
            v.iov_len = left;
            iov.truncate(i + 1);
            return;
        }
        left -= v.iov_len;
    }
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

/// `/proc/self/fd/N` of one of the monitor's own descriptors: lets the
/// monitor act on an `O_PATH` fd with calls that take only a path. The
/// magic link resolves to exactly the file the fd already names.
fn proc_fd_path(fd: RawFd) -> std::ffi::CString {
    std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

fn chmod_via_proc(fd: RawFd, mode: u32) -> Sys {
    let p = proc_fd_path(fd);
    // SAFETY: reads the path.
    host(unsafe { libc::chmod(p.as_ptr(), mode) } as i64)
}

/// The limits the program sees, as two little-endian u64 (cur, max);
/// `nofile`: the size of its descriptor table.
fn rlimit(res: u64, nofile: usize) -> Result<[u8; 16], Fail> {
    let (cur, max) = match res as u32 {
        r if r == libc::RLIMIT_STACK => (crate::layout::STACK_SIZE, crate::layout::STACK_SIZE),
        r if r == libc::RLIMIT_NOFILE => (nofile as u64, nofile as u64),
        r if r < 16 => (libc::RLIM_INFINITY, libc::RLIM_INFINITY),
        _ => return Err(Fail::Errno(libc::EINVAL)),
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&cur.to_le_bytes());
    b[8..].copy_from_slice(&max.to_le_bytes());
    Ok(b)
}

#[cfg(test)]
mod tests;
