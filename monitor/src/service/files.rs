//! Files by descriptor or path: opening (`open`, `creat`, `openat`), status
//! (`fstat`, `stat`, `lstat`, `newfstatat`, `statx`, `statfs`, `fstatfs`),
//! directory listing, size (`truncate`, `ftruncate`, `fallocate`), and
//! syncing and advice (accepted). Path rules: [`super::fs`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::fdtable::Entry;
use super::{dup_cloexec, fs, host, special_device, Fail, Service, Special, Sys, Target, AT_FDCWD};
use crate::memory::{pod_bytes, GuestMemory};

pub(super) fn open(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.openat(mem, AT_FDCWD as u64, a[0], a[1], a[2])
}

pub(super) fn creat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let flags = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64;
    s.openat(mem, AT_FDCWD as u64, a[0], flags, a[1])
}

pub(super) fn openat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.openat(mem, a[0], a[1], a[2], a[3])
}

pub(super) fn fstat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    s.stat_fd(mem, fd, a[1])
}

pub(super) fn stat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.stat_path(mem, AT_FDCWD as u64, a[0], 0, a[1])
}

pub(super) fn lstat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.stat_path(mem, AT_FDCWD as u64, a[0], libc::AT_SYMLINK_NOFOLLOW, a[1])
}

pub(super) fn newfstatat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.stat_path(mem, a[0], a[1], a[3] as i32, a[2])
}

pub(super) fn statx(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let path = s.read_path(mem, a[1])?;
    let at = a[2] as i32;
    if !path.is_empty() || at & libc::AT_EMPTY_PATH == 0 {
        // A name in a tree's root: one host call (fs::FsPolicy::statx_in_root).
        let abs = s.absolute(a[0], &path)?;
        let follow = at & libc::AT_SYMLINK_NOFOLLOW == 0;
        if let Some(r) = s.policy.statx_in_root(&abs, follow, at, a[3] as u32) {
            let stx = r.map_err(|e| s.path_fail(e, Some(&path), &abs))?;
            mem.write(a[4], pod_bytes(&stx))?;
            return Ok(0);
        }
    }
    let t = s.target_path(a[0], &path, at)?;
    // SAFETY: statx is plain data; zeroed is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let flags = libc::AT_EMPTY_PATH | (a[2] as i32 & libc::AT_STATX_SYNC_TYPE);
    // SAFETY: statx writes the struct we pass; the path is "".
    let r = unsafe { libc::statx(t.raw(), c"".as_ptr(), flags, a[3] as u32, &mut stx) };
    host(r as i64)?;
    mem.write(a[4], pod_bytes(&stx))?;
    Ok(0)
}

pub(super) fn statfs(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let t = s.target(mem, AT_FDCWD as u64, a[0], 0)?;
    write_statfs(mem, &t, a[1])
}

pub(super) fn fstatfs(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let t = Target::Borrowed(s.vfd(a[0])?);
    write_statfs(mem, &t, a[1])
}

fn write_statfs(mem: &GuestMemory, t: &Target, out: u64) -> Sys {
    // SAFETY: statfs is plain data; fstatfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: writes `st`.
    host(unsafe { libc::fstatfs(t.raw(), &mut st) } as i64)?;
    mem.write(out, pod_bytes(&st))?;
    Ok(0)
}

/// Largest bounce buffer of a `getdents64` whose buffer is in pieces.
const BOUNCE_MAX: usize = 64 << 10;

pub(super) fn getdents64(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    match super::io::buffer(mem, a[1], a[2], true)? {
        // SAFETY: getdents64 writes at most a[2] bytes at p, checked.
        super::io::Buf::One(p) => host(unsafe { libc::syscall(libc::SYS_getdents64, fd, p, a[2] as usize) }),
        super::io::Buf::Many(pc) => {
            // Several pieces: a bounded bounce buffer (fewer entries is
            // legal), copied out through the pieces.
            let mut bounce = vec![0u8; pc.total().min(BOUNCE_MAX)];
            // SAFETY: writes at most bounce.len() bytes into our buffer.
            let n =
                host(unsafe { libc::syscall(libc::SYS_getdents64, fd, bounce.as_mut_ptr(), bounce.len()) })?;
            pc.copy_out(bounce.get(..n as usize).ok_or(Fail::Errno(libc::EIO))?);
            Ok(n)
        }
    }
}

pub(super) fn ftruncate(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    s.resize_allowed("ftruncate", fd, a[1])?;
    // SAFETY: touches no memory.
    host(unsafe { libc::ftruncate(fd, a[1] as i64) } as i64)
}

pub(super) fn truncate(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let path = s.read_path(mem, a[0])?;
    let abs = s.absolute(AT_FDCWD as u64, &path)?;
    let o = s.policy.open(&abs, libc::O_WRONLY, 0).map_err(|e| s.path_fail(e, Some(&path), &abs))?;
    s.resize_allowed("truncate", o.fd.as_raw_fd(), a[1])?;
    // SAFETY: touches no memory.
    host(unsafe { libc::ftruncate(o.fd.as_raw_fd(), a[1] as i64) } as i64)
}

pub(super) fn fallocate(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    // A negative offset or length is the kernel's EINVAL.
    if (a[2] as i64) >= 0 && (a[3] as i64) > 0 {
        s.resize_allowed("fallocate", fd, a[2].saturating_add(a[3]))?;
    }
    // SAFETY: touches no memory.
    host(unsafe { libc::fallocate(fd, a[1] as i32, a[2] as i64, a[3] as i64) } as i64)
}

pub(super) fn fsync(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    // SAFETY: touches no memory.
    host(unsafe { libc::fsync(fd) } as i64)
}

pub(super) fn fdatasync(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    // SAFETY: touches no memory.
    host(unsafe { libc::fdatasync(fd) } as i64)
}

/// `fadvise64`, `syncfs`: accepted for a valid descriptor, with
/// no effect.
pub(super) fn accept_on_fd(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.vfd(a[0])?;
    Ok(0)
}

impl Service {
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
        let e = Entry { fd: fd.into(), cloexec, path: Some(fs::normalize(&abs)), change };
        self.fds.insert(e, 0).map(|v| v as i64).ok_or(Fail::Errno(libc::EMFILE))
    }

    /// `newfstatat(dirfd, path, out, flags)`: a path's stat needs no
    /// descriptor ([`fs::FsPolicy::look`]); `AT_EMPTY_PATH` with an empty
    /// path is the descriptor's (or the cwd's).
    fn stat_path(&mut self, mem: &GuestMemory, dirfd: u64, paddr: u64, flags: i32, out: u64) -> Sys {
        let path = self.read_path(mem, paddr)?;
        if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            let t = self.target_path(dirfd, &path, flags)?;
            return self.stat_target(mem, &t, out);
        }
        let abs = self.absolute(dirfd, &path)?;
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        let st = self.policy.look(&abs, follow).map_err(|e| self.path_fail(e, Some(&path), &abs))?;
        mem.write(out, pod_bytes(&st))?;
        Ok(0)
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
}
