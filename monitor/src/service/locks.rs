//! File locks taken on the real host file, so confined and unconfined
//! processes coordinate: `fcntl` record locks (`F_GETLK`, `F_SETLK`,
//! `F_SETLKW`), open-file-description locks (`F_OFD_GETLK`, `F_OFD_SETLK`,
//! `F_OFD_SETLKW`) and `flock` (docs/syscalls.md, "File locks").
//!
//! The monitor is one host process for every confined program it serves,
//! and POSIX record locks belong to a host *process*: taken on the host as
//! POSIX locks, two confined processes of one tree would never conflict,
//! and any `close` the monitor makes of the file would drop them. So a
//! program's POSIX locks are served as OFD locks on a *lock description*:
//! one host open file description per (program, file), opened again from
//! the program's descriptor and never shown to it ([`LockOwners`]). That
//! gives POSIX semantics as the program sees them:
//!
//! - the owner is the process: locks through any descriptor of the file
//!   are one set (they replace, split and merge, never conflict);
//! - closing *any* descriptor of the file releases them all (the table
//!   calls [`LockOwners::released_by_close`] for every entry it drops);
//! - OFD locks and `flock` of the program are taken on its own descriptor
//!   (a duplicate of the program's open file description), so they conflict
//!   with its POSIX locks as on Linux.
//!
//! The lock description is opened with the access mode of the descriptor
//! that first needed it, never more (the monitor must not hold a file open
//! for writing that the program only opened for reading: that would, for
//! one, make the host's `execve` of it fail with `ETXTBSY`).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use super::{host, Fail, Sys};
use crate::memory::GuestMemory;

/// `struct flock` on x86-64: `l_type` (i16), `l_whence` (i16), padding,
/// `l_start` (i64), `l_len` (i64), `l_pid` (i32), padding.
pub(super) const FLOCK_SIZE: usize = 32;

/// The host lock description of one file, for one program.
#[derive(Debug)]
struct Owner {
    fd: Arc<OwnedFd>,
    /// Its access mode (`O_RDONLY`, `O_WRONLY`, `O_RDWR`).
    mode: i32,
    /// Whether a lock was ever set through it (it may hold some).
    used: bool,
}

/// A program's POSIX lock descriptions, by file (`st_dev`, `st_ino`). At
/// most one per file the program has open: each is dropped when the
/// program closes any descriptor of its file.
#[derive(Debug, Default)]
pub struct LockOwners {
    files: HashMap<(u64, u64), Owner>,
}

/// What serves a POSIX lock request on a descriptor.
#[derive(Debug)]
pub(super) enum LockOn {
    /// The program's lock description of a regular file or directory.
    Owner(Arc<OwnedFd>),
    /// Anything else (pipe, terminal, socket): OFD locks on the program's
    /// own descriptor.
    Own,
}

impl LockOwners {
    /// The lock description for the file of the program's host descriptor
    /// `prog`, opened on first use; `write`: the request needs write access
    /// (an `F_WRLCK`); `set`: a lock is being set through it (after which
    /// it may hold locks); `read_write`: finds a descriptor of the program
    /// open for reading and writing on a file (`st_dev`, `st_ino`).
    fn owner(
        &mut self,
        prog: RawFd,
        write: bool,
        set: bool,
        read_write: impl Fn(u64, u64) -> Option<RawFd>,
    ) -> Result<LockOn, Fail> {
        let st = fstat(prog)?;
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFREG && kind != libc::S_IFDIR {
            return Ok(LockOn::Own);
        }
        // SAFETY: touches no memory.
        let fl = host(unsafe { libc::fcntl(prog, libc::F_GETFL) } as i64)? as i32;
        if fl & libc::O_PATH != 0 {
            return Err(Fail::Errno(libc::EBADF));
        }
        let mode = fl & libc::O_ACCMODE;
        let key = (st.st_dev, st.st_ino);
        if let Some(o) = self.files.get_mut(&key) {
            let short = write && o.mode == libc::O_RDONLY && mode != libc::O_RDONLY;
            if !short {
                o.used |= set;
                return Ok(LockOn::Owner(o.fd.clone()));
            }
            if o.used {
                // Read locks set through a read-only description cannot
                // move to a writable one atomically (docs/syscalls.md).
                return Err(Fail::Errno(libc::ENOLCK));
            }
        }
        // As much access as the program has to the file through one of its
        // descriptors: a later write lock through another descriptor then
        // needs no other description.
        let (from, mode) = match (mode, kind == libc::S_IFDIR) {
            (libc::O_RDWR, _) | (_, true) => (prog, mode),
            _ => read_write(st.st_dev, st.st_ino).map_or((prog, mode), |fd| (fd, libc::O_RDWR)),
        };
        let fd = Arc::new(reopen(from, mode, kind == libc::S_IFDIR)?);
        self.files.insert(key, Owner { fd: fd.clone(), mode, used: set });
        Ok(LockOn::Owner(fd))
    }

    /// The program closed (or replaced) a descriptor whose host descriptor
    /// is `fd`: its POSIX locks on that file are released, as Linux
    /// releases a process's locks when it closes any descriptor of the file.
    pub(super) fn released_by_close(&mut self, fd: RawFd) {
        if self.files.is_empty() {
            return;
        }
        if let Ok(st) = fstat(fd) {
            // Dropping the only descriptor of the lock description releases
            // its locks (unless a blocked `F_SETLKW` holds it for a moment).
            self.files.remove(&(st.st_dev, st.st_ino));
        }
    }

    /// How many lock descriptions are open (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.files.len()
    }
}

fn fstat(fd: RawFd) -> Result<libc::stat, Fail> {
    super::fs::fstat(fd).map_err(|_| Fail::Errno(libc::EBADF))
}

/// A new open file description of the file `fd` names, through the
/// monitor's own `/proc/self/fd` (the object, whatever its name now).
fn reopen(fd: RawFd, mode: i32, dir: bool) -> Result<OwnedFd, Fail> {
    let flags = if dir { libc::O_RDONLY | libc::O_DIRECTORY } else { mode }
        | libc::O_CLOEXEC
        | libc::O_NOCTTY
        | libc::O_NONBLOCK;
    let path =
        std::ffi::CString::new(format!("/proc/self/fd/{fd}")).map_err(|_| Fail::Errno(libc::ENOLCK))?;
    // SAFETY: a NUL-terminated path; returns a new descriptor or -1.
    let r = unsafe { libc::open(path.as_ptr(), flags) };
    if r < 0 {
        return Err(Fail::Errno(libc::ENOLCK));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// A program's `struct flock`, copied out once.
#[derive(Clone, Copy, Debug)]
struct Flock {
    bytes: [u8; FLOCK_SIZE],
}

impl Flock {
    fn read(mem: &GuestMemory, addr: u64) -> Result<Flock, Fail> {
        let mut bytes = [0u8; FLOCK_SIZE];
        mem.read_into(addr, &mut bytes)?;
        Ok(Flock { bytes })
    }
    fn i16_at(&self, at: usize) -> i16 {
        i16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }
    fn l_type(&self) -> i16 {
        self.i16_at(0)
    }
    fn l_whence(&self) -> i16 {
        self.i16_at(2)
    }
    fn l_start(&self) -> i64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[8..16]);
        i64::from_le_bytes(b)
    }
    fn set_l_type(&mut self, t: i16) {
        self.bytes[0..2].copy_from_slice(&t.to_le_bytes());
    }
    fn set_start(&mut self, whence: i16, start: i64) {
        self.bytes[2..4].copy_from_slice(&whence.to_le_bytes());
        self.bytes[8..16].copy_from_slice(&start.to_le_bytes());
    }
    fn set_l_pid(&mut self, pid: i32) {
        self.bytes[24..28].copy_from_slice(&pid.to_le_bytes());
    }
    fn as_host(&mut self) -> *mut libc::flock {
        // The kernel reads and writes exactly `struct flock`.
        self.bytes.as_mut_ptr().cast()
    }
}

const _: () = assert!(std::mem::size_of::<libc::flock>() == FLOCK_SIZE);

/// Whether a lock of type `t` may be set through host descriptor `fd` (its
/// access mode: `F_RDLCK` needs read, `F_WRLCK` write access).
fn mode_allows(fd: RawFd, t: i16) -> bool {
    // SAFETY: touches no memory.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let mode = fl & libc::O_ACCMODE;
    fl >= 0
        && fl & libc::O_PATH == 0
        && !(t == libc::F_RDLCK as i16 && mode == libc::O_WRONLY)
        && !(t == libc::F_WRLCK as i16 && mode == libc::O_RDONLY)
}

/// Whether `cmd` is one of the record-lock commands of `fcntl`.
pub(super) fn is_lock_cmd(cmd: i32) -> bool {
    matches!(
        cmd,
        libc::F_GETLK
            | libc::F_SETLK
            | libc::F_SETLKW
            | libc::F_OFD_GETLK
            | libc::F_OFD_SETLK
            | libc::F_OFD_SETLKW
    )
}

/// Whether `cmd` is a POSIX (process-owned) record-lock command.
pub(super) fn is_posix(cmd: i32) -> bool {
    matches!(cmd, libc::F_GETLK | libc::F_SETLK | libc::F_SETLKW)
}

/// Serves record-lock command `cmd` of the program's `fcntl(fd, cmd, addr)`:
/// `prog` is the host descriptor of the program's `fd`, `lock` the one the
/// lock is taken on (the program's lock description for a POSIX command,
/// `prog` itself for an OFD one). May block (`F_SETLKW`, `F_OFD_SETLKW`):
/// the caller runs it where a signal or a stop interrupts it (`EINTR`).
pub(super) fn fcntl_lock(prog: RawFd, lock: RawFd, mem: &GuestMemory, cmd: i32, addr: u64) -> Sys {
    let given = Flock::read(mem, addr)?;
    let posix = is_posix(cmd);
    let mut req = given;
    if posix {
        // The owner is the process, not a pid the program names.
        req.set_l_pid(0);
    }
    let (t, whence) = (req.l_type(), req.l_whence());
    if ![libc::F_RDLCK, libc::F_WRLCK, libc::F_UNLCK].contains(&(t as i32)) {
        return Err(Fail::Errno(libc::EINVAL));
    }
    if whence == libc::SEEK_CUR as i16 && lock != prog {
        // The lock description has an offset of its own: make the start
        // absolute from the program's offset, as the kernel would.
        // SAFETY: touches no memory.
        let cur = host(unsafe { libc::lseek(prog, 0, libc::SEEK_CUR) })?;
        let start = cur.checked_add(req.l_start()).ok_or(Fail::Errno(libc::EOVERFLOW))?;
        req.set_start(libc::SEEK_SET as i16, start);
    }
    // SAFETY: touches no memory.
    let fl = host(unsafe { libc::fcntl(prog, libc::F_GETFL) } as i64)? as i32;
    let setting = !matches!(cmd, libc::F_GETLK | libc::F_OFD_GETLK);
    if fl & libc::O_PATH != 0 || (setting && !mode_allows(prog, t)) {
        return Err(Fail::Errno(libc::EBADF));
    }
    let host_cmd = match cmd {
        libc::F_GETLK | libc::F_OFD_GETLK => libc::F_OFD_GETLK,
        libc::F_SETLK | libc::F_OFD_SETLK => libc::F_OFD_SETLK,
        _ => libc::F_OFD_SETLKW,
    };
    // SAFETY: the kernel reads (and for a GETLK writes) one `struct flock`
    // in `req`, a local.
    host(unsafe { libc::fcntl(lock, host_cmd, req.as_host()) } as i64)?;
    if host_cmd == libc::F_OFD_GETLK {
        // No conflict: Linux changes only `l_type`; a conflict: the
        // holder's lock, absolute (`SEEK_SET`), with its pid (-1 for an OFD
        // lock, which a lock of a confined process is on the host).
        let mut out = if req.l_type() == libc::F_UNLCK as i16 { given } else { req };
        out.set_l_type(req.l_type());
        mem.write(addr, &out.bytes)?;
    }
    Ok(0)
}

/// `flock(fd, op)` on the program's host descriptor (a duplicate of its
/// open file description, which owns the lock). May block without
/// `LOCK_NB`.
pub(super) fn flock_on(fd: RawFd, op: u64) -> Sys {
    // The kernel's `unsigned int cmd`: the low 32 bits.
    // SAFETY: touches no memory.
    host(unsafe { libc::flock(fd, op as u32 as i32) } as i64)
}

/// Whether `flock(_, op)` may block.
pub(super) fn flock_blocks(op: u64) -> bool {
    let op = op as u32 as i32;
    op & libc::LOCK_NB == 0 && op & (libc::LOCK_SH | libc::LOCK_EX) != 0
}

/// The descriptor a record-lock command is served on.
pub(super) fn raw(l: &LockOn, prog: RawFd) -> RawFd {
    match l {
        LockOn::Owner(fd) => fd.as_raw_fd(),
        LockOn::Own => prog,
    }
}

impl super::Service {
    /// What `fcntl(_, cmd, addr)` on the program's host descriptor `prog`
    /// locks: the program's lock description of the file for a POSIX
    /// command, its own descriptor for an OFD one.
    pub(super) fn lock_target(
        &mut self,
        prog: RawFd,
        mem: &GuestMemory,
        cmd: i32,
        addr: u64,
    ) -> Result<LockOn, Fail> {
        if !is_posix(cmd) {
            return Ok(LockOn::Own);
        }
        let t = Flock::read(mem, addr)?.l_type();
        // A lock the descriptor's mode refuses is EBADF before anything is
        // opened (`fcntl_lock` says so).
        let set = cmd != libc::F_GETLK && mode_allows(prog, t);
        self.fds.lock_owner(prog, t == libc::F_WRLCK as i16, set)
    }
}

impl super::fdtable::FdTable {
    /// [`LockOwners::owner`] of this table's lock descriptions.
    pub(super) fn lock_owner(&mut self, prog: RawFd, write: bool, set: bool) -> Result<LockOn, Fail> {
        let mut locks = std::mem::take(&mut self.locks);
        let r = locks.owner(prog, write, set, |dev, ino| self.read_write_of(dev, ino));
        self.locks = locks;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path, write: bool) -> OwnedFd {
        std::fs::OpenOptions::new().read(true).write(write).open(path).expect("open").into()
    }

    #[test]
    fn one_description_per_file_dropped_by_any_close() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("f");
        std::fs::write(&p, b"x").expect("write");
        let (a, b) = (open(&p, true), open(&p, false));
        let mut o = LockOwners::default();
        let none = |_: u64, _: u64| None;
        let LockOn::Owner(da) = o.owner(a.as_raw_fd(), true, true, none).expect("owner") else {
            panic!("a file")
        };
        let LockOn::Owner(db) = o.owner(b.as_raw_fd(), false, true, none).expect("owner") else {
            panic!("a file")
        };
        assert_eq!(o.len(), 1);
        assert!(Arc::ptr_eq(&da, &db), "one description for both descriptors");
        o.released_by_close(b.as_raw_fd());
        assert_eq!(o.len(), 0, "closing any descriptor drops it");
    }

    #[test]
    fn a_read_only_description_in_use_is_not_replaced() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("f");
        std::fs::write(&p, b"x").expect("write");
        let (ro, rw) = (open(&p, false), open(&p, true));
        let mut o = LockOwners::default();
        let none = |_: u64, _: u64| None;
        assert!(matches!(o.owner(ro.as_raw_fd(), false, false, none), Ok(LockOn::Owner(_))));
        // Not used yet: a write lock reopens it read-write.
        assert!(matches!(o.owner(rw.as_raw_fd(), true, true, none), Ok(LockOn::Owner(_))));
        let mut o = LockOwners::default();
        assert!(matches!(o.owner(ro.as_raw_fd(), false, true, none), Ok(LockOn::Owner(_))));
        assert!(matches!(o.owner(rw.as_raw_fd(), true, true, none), Err(Fail::Errno(libc::ENOLCK))));
        // Found read-write descriptor: read-write from the start.
        let mut o = LockOwners::default();
        let found = |_: u64, _: u64| Some(rw.as_raw_fd());
        assert!(matches!(o.owner(ro.as_raw_fd(), false, true, found), Ok(LockOn::Owner(_))));
        assert!(matches!(o.owner(rw.as_raw_fd(), true, true, none), Ok(LockOn::Owner(_))));
    }

    #[test]
    fn pipes_lock_on_their_own_description() {
        let mut p = [0i32; 2];
        // SAFETY: pipe writes two ints into `p`.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        // SAFETY: fresh descriptors we own.
        let (r, _w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        let mut o = LockOwners::default();
        assert!(matches!(o.owner(r.as_raw_fd(), false, true, |_, _| None), Ok(LockOn::Own)));
        assert_eq!(o.len(), 0);
    }
}
