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
use crate::sysnames;
use fdtable::{Entry, FdTable, MAX_FDS};
use fs::{FsPolicy, PathError, Refusal};

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
}

/// The identity `uname` reports (documented in docs/syscalls.md).
pub const UNAME: [&str; 6] =
    ["Linux", "cabin", "6.1.0-cabin", "#1 SMP PREEMPT_DYNAMIC Cabin", "x86_64", "(none)"];

const IOV_MAX: u64 = 1024;
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
    pub fn with_stdio(policy: FsPolicy, cwd: Vec<u8>, pid: u32, stdio: [RawFd; 3]) -> Service {
        let mut fds = FdTable::default();
        for (i, host_fd) in stdio.into_iter().enumerate() {
            if let Ok(fd) = dup_cloexec(host_fd) {
                fds.insert_at(i as u64, Entry { fd, cloexec: false, path: None });
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
            stats: ServiceStats::default(),
            reports: Vec::new(),
            print_reports: true,
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

    /// Whether to copy every call's path argument for the trace (see
    /// [`CallNote`]); off by default, so an untraced run copies nothing.
    pub fn set_record_paths(&mut self, on: bool) {
        self.record_paths = on;
    }

    /// What the last call noticed (its path, a refusal); leaves it empty.
    pub fn take_note(&mut self) -> CallNote {
        std::mem::take(&mut self.note)
    }

    /// Serves one forwarded call.
    pub fn handle(&mut self, mem: &GuestMemory, nr: u64, a: [u64; 6]) -> Result<i64, Violation> {
        self.stats.per_nr.add(nr, 1);
        if self.note.path.is_some() || self.note.refusal.is_some() {
            self.note = CallNote::default();
        }
        match self.dispatch(mem, nr, &a) {
            Ok(v) => Ok(v),
            Err(Fail::Errno(e)) => Ok(-(e as i64)),
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
    /// makes it a `denied` record), `EACCES` for the program.
    fn deny(&mut self, why: Refusal, prog: Option<&[u8]>, resolved: &[u8]) -> Fail {
        self.stats.denied += 1;
        if let Some(p) = prog {
            self.note.path = Some(p.to_vec());
        }
        self.note.refusal = Some(PathRefusal { why, resolved: resolved.to_vec() });
        Fail::Errno(libc::EACCES)
    }

    /// A change to `abs` (program path `prog`), which no writable tree holds.
    fn deny_write(&mut self, prog: &[u8], abs: &[u8]) -> Fail {
        let why = if self.policy.locate(abs).is_some() { Refusal::ReadOnly } else { Refusal::Outside };
        self.deny(why, Some(prog), abs)
    }

    /// A change through descriptor `vfd` that is not under a writable tree.
    fn deny_fd(&mut self, vfd: u64) -> Fail {
        let path = self.fds.get(vfd).and_then(|e| e.path.clone());
        let why = match &path {
            Some(p) if self.policy.locate(p).is_some() => Refusal::ReadOnly,
            _ => Refusal::Outside,
        };
        let resolved = path.unwrap_or_else(|| format!("fd {vfd}").into_bytes());
        self.deny(why, None, &resolved)
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

    /// As [`Self::target`], for a path already copied out.
    fn target_path(&mut self, dirfd: u64, path: &[u8], flags: i32) -> Result<Target, Fail> {
        if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            if dirfd as i32 == AT_FDCWD {
                let cwd = self.cwd.clone();
                let fd = self.policy.open_path(&cwd, true).map_err(|e| self.path_fail(e, Some(b""), &cwd))?;
                return Ok(Target::Owned(fd));
            }
            return Ok(Target::Borrowed(self.vfd(dirfd)?));
        }
        let abs = self.absolute(dirfd, path)?;
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        match self.policy.open_path(&abs, follow) {
            Ok(fd) => Ok(Target::Owned(fd)),
            Err(PathError::Denied(why)) => match self.policy.open_ancestor(&abs) {
                Some(fd) => Ok(Target::Owned(fd)),
                None => Err(self.deny(why, Some(path), &abs)),
            },
            Err(e) => Err(self.path_fail(e, Some(path), &abs)),
        }
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
                // SAFETY: [p, p+a[2]) is checked readable program memory.
                host(unsafe { libc::write(fd, p.cast(), a[2] as usize) } as i64)
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
                // SAFETY: as for write.
                host(unsafe { libc::pwrite(fd, p.cast(), a[2] as usize, a[3] as i64) } as i64)
            }
            libc::SYS_readv | libc::SYS_writev | libc::SYS_preadv | libc::SYS_pwritev => {
                let fd = self.vfd(a[0])?;
                let write_to_guest = n == libc::SYS_readv || n == libc::SYS_preadv;
                let iov = self.iovecs(mem, a[1], a[2], write_to_guest)?;
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
                host(r as i64)
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
                self.stat_fd(mem, t.raw(), a[1])
            }
            libc::SYS_newfstatat => {
                let t = self.target(mem, a[0], a[1], a[3] as i32)?;
                self.stat_fd(mem, t.raw(), a[2])
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
                let path = self.fds.get(a[0]).and_then(|e| e.path.clone());
                let e = Entry { fd: dup_cloexec(fd)?, cloexec: false, path };
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
                if a[1] >= MAX_FDS as u64 {
                    return Err(Fail::Errno(libc::EBADF));
                }
                let path = self.fds.get(a[0]).and_then(|e| e.path.clone());
                let e = Entry { fd: dup_cloexec(fd)?, cloexec: flags & libc::O_CLOEXEC != 0, path };
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
                let vr = self.fds.insert(Entry { fd: r, cloexec, path: None }, 0);
                let vw = self.fds.insert(Entry { fd: w, cloexec, path: None }, 0);
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
                let fd = self.vfd(a[0])?;
                if !self.fd_writable_dir(a[0]) {
                    return Err(self.deny_fd(a[0]));
                }
                // SAFETY: touches no memory.
                host(unsafe { libc::fchmod(fd, a[1] as u32) } as i64)
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
                    let lim = rlimit(a[1])?;
                    mem.write(a[3], &lim)?;
                }
                Ok(0)
            }
            libc::SYS_getrlimit => {
                let lim = rlimit(a[0])?;
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
                if a[2] == 0 {
                    // SAFETY: no memory argument.
                    return host(
                        unsafe { libc::sendfile(out, inp, std::ptr::null_mut(), a[3] as usize) } as i64
                    );
                }
                let mut off = mem.read_u64(a[2])? as i64;
                // SAFETY: `off` is a local.
                let r = host(unsafe { libc::sendfile(out, inp, &mut off, a[3] as usize) } as i64)?;
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
                let (o0, o1) = offs.split_at_mut(1);
                let pin = if a[1] != 0 { &mut o0[0] as *mut i64 } else { std::ptr::null_mut() };
                let pout = if a[3] != 0 { &mut o1[0] as *mut i64 } else { std::ptr::null_mut() };
                // SAFETY: offset pointers are locals or null.
                let r = host(unsafe { libc::copy_file_range(inp, pin, out, pout, a[4] as usize, 0) } as i64)?;
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
                let fd = self
                    .policy
                    .open(&abs, libc::O_WRONLY, 0)
                    .map_err(|e| self.path_fail(e, Some(&path), &abs))?;
                // SAFETY: touches no memory.
                host(unsafe { libc::ftruncate(fd.as_raw_fd(), a[1] as i64) } as i64)
            }
            libc::SYS_chown | libc::SYS_lchown | libc::SYS_fchownat => {
                let (dirfd, paddr, uid, gid, flags) = match n {
                    libc::SYS_fchownat => (a[0], a[1], a[2], a[3], a[4] as i32),
                    libc::SYS_lchown => (AT_FDCWD as u64, a[0], a[1], a[2], libc::AT_SYMLINK_NOFOLLOW),
                    _ => (AT_FDCWD as u64, a[0], a[1], a[2], 0),
                };
                let path = self.read_path(mem, paddr)?;
                if !path.is_empty() {
                    let abs = self.absolute(dirfd, &path)?;
                    if !self.policy.writable(&abs) {
                        return Err(self.deny_write(&path, &abs));
                    }
                } else if !self.fd_writable_dir(dirfd) {
                    return Err(self.deny_fd(dirfd));
                }
                let t = self.target_path(
                    dirfd,
                    &path,
                    flags & (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH),
                )?;
                // SAFETY: the path is "" (AT_EMPTY_PATH on our fd).
                host(unsafe {
                    libc::fchownat(t.raw(), c"".as_ptr(), uid as u32, gid as u32, libc::AT_EMPTY_PATH)
                } as i64)
            }
            libc::SYS_fchown => {
                let fd = self.vfd(a[0])?;
                if !self.fd_writable_dir(a[0]) {
                    return Err(self.deny_fd(a[0]));
                }
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

    fn openat(&mut self, mem: &GuestMemory, dirfd: u64, paddr: u64, flags: u64, mode: u64) -> Sys {
        let path = self.read_path(mem, paddr)?;
        let abs = self.absolute(dirfd, &path)?;
        let flags = flags as i32;
        let cloexec = flags & libc::O_CLOEXEC != 0;
        let fd = match special_device(&abs) {
            Some(Special::Std(v)) => dup_cloexec(self.vfd(v)?)?,
            Some(Special::Dev(p)) => {
                let c = std::ffi::CString::new(p).map_err(|_| Fail::Errno(libc::EINVAL))?;
                let fl = (flags & libc::O_ACCMODE) | libc::O_CLOEXEC | libc::O_NOFOLLOW;
                // SAFETY: opens a fixed device path.
                let r = unsafe { libc::open(c.as_ptr(), fl) };
                host(r as i64)?;
                // SAFETY: fresh descriptor.
                unsafe { OwnedFd::from_raw_fd(r) }
            }
            None => {
                let m = mode as u32 & !self.umask & 0o7777;
                self.policy
                    .open(&abs, flags & !libc::O_CLOEXEC, m)
                    .map_err(|e| self.path_fail(e, Some(&path), &abs))?
            }
        };
        let e = Entry { fd, cloexec, path: Some(fs::normalize(&abs)) };
        self.fds.insert(e, 0).map(|v| v as i64).ok_or(Fail::Errno(libc::EMFILE))
    }

    fn stat_fd(&self, mem: &GuestMemory, fd: RawFd, out: u64) -> Sys {
        // SAFETY: stat is plain data; fstat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: writes `st`.
        host(unsafe { libc::fstat(fd, &mut st) } as i64)?;
        mem.write(out, pod_bytes(&st))?;
        Ok(0)
    }

    fn fd_writable_dir(&self, vfd: u64) -> bool {
        match self.fds.get(vfd).and_then(|e| e.path.as_ref()) {
            Some(p) => self.policy.writable(p),
            None => false,
        }
    }

    fn fcntl(&mut self, a: &[u64; 6]) -> Sys {
        let fd = self.vfd(a[0])?;
        match a[1] as i32 {
            libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
                let min = usize::try_from(a[2]).map_err(|_| Fail::Errno(libc::EINVAL))?;
                if min >= MAX_FDS {
                    return Err(Fail::Errno(libc::EINVAL));
                }
                let path = self.fds.get(a[0]).and_then(|e| e.path.clone());
                let e = Entry { fd: dup_cloexec(fd)?, cloexec: a[1] as i32 == libc::F_DUPFD_CLOEXEC, path };
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
        if self.policy.locate(&abs).is_some_and(|(_, rel)| rel == b".")
            || self.policy.open_ancestor(&abs).is_some()
        {
            // An allowed directory itself: it exists (`mkdir -p` relies on EEXIST).
            return Err(Fail::Errno(libc::EEXIST));
        }
        let (dir, name) = self.policy.parent(&abs, true).map_err(|e| self.path_fail(e, Some(&path), &abs))?;
        // SAFETY: as for unlinkat.
        host(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as u32 & 0o7777) } as i64)
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
            // Static glibc reads this link while it starts (for $ORIGIN);
            // outside the allowed trees it answers as a system without
            // /proc would, instead of a denial in every run's audit log.
            let abs = self.absolute(dirfd, &path)?;
            if fs::normalize(&abs) == b"/proc/self/exe" && self.policy.locate(&abs).is_none() {
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
            if !self.policy.writable(&abs) && special_device(&abs).is_none() {
                return Err(self.deny_write(&path, &abs));
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
        if !self.policy.writable(&abs) {
            return Err(self.deny_write(&path, &abs));
        }
        let t = self.target_path(dirfd, &path, 0)?;
        chmod_via_proc(t.raw(), mode as u32 & 0o7777)
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
            if !self.fd_writable_dir(a[0]) {
                return Err(self.deny_fd(a[0]));
            }
            Target::Borrowed(self.vfd(a[0])?)
        } else {
            let path = self.read_path(mem, a[1])?;
            let abs = self.absolute(a[0], &path)?;
            if !self.policy.writable(&abs) {
                return Err(self.deny_write(&path, &abs));
            }
            self.target_path(a[0], &path, a[3] as i32 & libc::AT_SYMLINK_NOFOLLOW)?
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
        if n > MAX_FDS as u64 {
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

/// A host fd to act on with `AT_EMPTY_PATH`: freshly opened, or a program fd.
enum Target {
    Owned(OwnedFd),
    Borrowed(RawFd),
}

impl Target {
    fn raw(&self) -> RawFd {
        match self {
            Target::Owned(fd) => fd.as_raw_fd(),
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
        b"/dev/stdin" | b"/proc/self/fd/0" => Special::Std(0),
        b"/dev/stdout" | b"/proc/self/fd/1" => Special::Std(1),
        b"/dev/stderr" | b"/proc/self/fd/2" => Special::Std(2),
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

/// The limits the program sees, as two little-endian u64 (cur, max).
fn rlimit(res: u64) -> Result<[u8; 16], Fail> {
    let (cur, max) = match res as u32 {
        r if r == libc::RLIMIT_STACK => (crate::layout::STACK_SIZE, crate::layout::STACK_SIZE),
        r if r == libc::RLIMIT_NOFILE => (MAX_FDS as u64, MAX_FDS as u64),
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
