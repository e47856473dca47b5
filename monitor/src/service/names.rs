//! Calls on names in directories: removing (`unlink`, `rmdir`,
//! `unlinkat`), creating (`mkdir`, `mkdirat`, `symlink`, `symlinkat`,
//! `link`, `linkat`), renaming, reading links, checking access, and
//! changing metadata (`chmod`, `fchmod`, `fchmodat`, `chown`, `lchown`,
//! `fchown`, `fchownat`, `utimensat`). Each is decided by the path rules of
//! [`super::fs`] (the parent directory of a name, the tree of an object).

use std::os::fd::{AsRawFd, RawFd};

use super::fs::{self, Access};
use super::{host, special_device, Fail, Service, Sys, Target, AT_FDCWD, PATH_MAX};
use crate::memory::GuestMemory;

const CWD: u64 = AT_FDCWD as u64;

pub(super) fn unlink(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.unlinkat(mem, CWD, a[0], 0)
}

pub(super) fn rmdir(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.unlinkat(mem, CWD, a[0], libc::AT_REMOVEDIR as u64)
}

pub(super) fn unlinkat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.unlinkat(mem, a[0], a[1], a[2])
}

pub(super) fn mkdir(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.mkdirat(mem, CWD, a[0], a[1])
}

pub(super) fn mkdirat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.mkdirat(mem, a[0], a[1], a[2])
}

pub(super) fn rename(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.renameat2(mem, [CWD, a[0], CWD, a[1], 0])
}

pub(super) fn renameat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.renameat2(mem, [a[0], a[1], a[2], a[3], 0])
}

pub(super) fn renameat2(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.renameat2(mem, [a[0], a[1], a[2], a[3], a[4]])
}

pub(super) fn readlink(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.readlinkat(mem, CWD, a[0], a[1], a[2])
}

pub(super) fn readlinkat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.readlinkat(mem, a[0], a[1], a[2], a[3])
}

pub(super) fn access(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.faccessat(mem, CWD, a[0], a[1], 0)
}

pub(super) fn faccessat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.faccessat(mem, a[0], a[1], a[2], 0)
}

pub(super) fn faccessat2(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.faccessat(mem, a[0], a[1], a[2], a[3])
}

pub(super) fn symlink(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.symlinkat(mem, a[0], CWD, a[1])
}

pub(super) fn symlinkat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.symlinkat(mem, a[0], a[1], a[2])
}

pub(super) fn link(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.linkat(mem, [CWD, a[0], CWD, a[1]])
}

pub(super) fn linkat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.linkat(mem, [a[0], a[1], a[2], a[3]])
}

pub(super) fn chmod(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.fchmodat(mem, CWD, a[0], a[1])
}

pub(super) fn fchmodat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.fchmodat(mem, a[0], a[1], a[2])
}

pub(super) fn fchmod(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.fd_change(a[0])?;
    let mode = s.policy.creation_mode(a[1] as u32);
    // SAFETY: touches no memory.
    host(unsafe { libc::fchmod(fd, mode) } as i64)
}

pub(super) fn utimensat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.utimensat(mem, a)
}

pub(super) fn chown(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    chown_at(s, mem, [CWD, a[0], a[1], a[2]], 0)
}

pub(super) fn lchown(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    chown_at(s, mem, [CWD, a[0], a[1], a[2]], libc::AT_SYMLINK_NOFOLLOW)
}

pub(super) fn fchownat(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    chown_at(s, mem, [a[0], a[1], a[2], a[3]], a[4] as i32)
}

/// `fchownat(dirfd, path, uid, gid, flags)`.
fn chown_at(s: &mut Service, mem: &GuestMemory, [dirfd, paddr, uid, gid]: [u64; 4], flags: i32) -> Sys {
    let path = s.read_path(mem, paddr)?;
    let (t, resolved) = if !path.is_empty() {
        let abs = s.absolute(dirfd, &path)?;
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        (Target::Owned(s.change_target(&path, &abs, follow)?.0), abs)
    } else if flags & libc::AT_EMPTY_PATH == 0 {
        return Err(Fail::Errno(libc::ENOENT));
    } else if dirfd as i32 == AT_FDCWD {
        let cwd = s.cwd.clone();
        (Target::Owned(s.change_target(b"", &cwd, true)?.0), cwd)
    } else {
        let resolved = s.fds.get(dirfd).and_then(|e| e.path.clone()).unwrap_or_default();
        (Target::Borrowed(s.fd_change(dirfd)?), resolved)
    };
    s.check_owner(uid, gid, (!path.is_empty()).then_some(&path[..]), &resolved)?;
    // SAFETY: the path is "" (AT_EMPTY_PATH on our fd).
    host(unsafe { libc::fchownat(t.raw(), c"".as_ptr(), uid as u32, gid as u32, libc::AT_EMPTY_PATH) } as i64)
}

pub(super) fn fchown(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.fd_change(a[0])?;
    let resolved = s.fds.get(a[0]).and_then(|e| e.path.clone()).unwrap_or_default();
    s.check_owner(a[1], a[2], None, &resolved)?;
    // SAFETY: touches no memory.
    host(unsafe { libc::fchown(fd, a[1] as u32, a[2] as u32) } as i64)
}

impl Service {
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
        let [(od, on), (nd, nn)] = self.two_parents(mem, [a[0], a[1], a[2], a[3]])?;
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

    /// The directories and final names of the two names of a `rename` or
    /// `link` (`[olddirfd, oldpath, newdirfd, newpath]`), both writable. In
    /// a view two names in different trees (mounts) are `EXDEV`, as
    /// natively across mounts, whatever the host file systems.
    fn two_parents(
        &mut self,
        mem: &GuestMemory,
        a: [u64; 4],
    ) -> Result<[(std::os::fd::OwnedFd, std::ffi::CString); 2], Fail> {
        let old = self.read_path(mem, a[1])?;
        let new = self.read_path(mem, a[3])?;
        let old_abs = self.absolute(a[0], &old)?;
        let new_abs = self.absolute(a[2], &new)?;
        let o = self.policy.parent(&old_abs, true).map_err(|e| self.path_fail(e, Some(&old), &old_abs))?;
        let n = self.policy.parent(&new_abs, true).map_err(|e| self.path_fail(e, Some(&new), &new_abs))?;
        if !self.policy.same_tree(&old_abs, &new_abs) {
            return Err(Fail::Errno(libc::EXDEV));
        }
        Ok([o, n])
    }

    fn linkat(&mut self, mem: &GuestMemory, a: [u64; 4]) -> Sys {
        // Both names need a writable dir (a link into a writable dir to a
        // file of a read-only dir would make that file writable). The old
        // name's final symlink is never followed (AT_SYMLINK_FOLLOW is
        // ignored): following it could link a file from outside.
        let [(od, on), (nd, nn)] = self.two_parents(mem, a)?;
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
            if let Some(text) = self.view_proc_link(&n) {
                // What the program's own /proc would say: view paths.
                let text = text.map_err(Fail::Errno)?;
                let text = &text[..text.len().min(size as usize)];
                mem.write(buf, text)?;
                return Ok(text.len() as i64);
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

    /// In a view with `/proc` bound (`--bind /proc:/proc`), the text of the
    /// program's own `/proc/self/cwd` and `/proc/self/fd/N` (and
    /// `thread-self`) links, `n` normalised: its working directory and the
    /// descriptor's path, both view paths (the monitor's `/proc/self` is
    /// never served); `ENOENT` for a descriptor that is not open. `None`
    /// for every other path, or a descriptor opened without a path (pipes,
    /// sockets: refused as before).
    fn view_proc_link(&self, n: &[u8]) -> Option<Result<Vec<u8>, i32>> {
        if !self.policy.proc_in_view() {
            return None;
        }
        let rest = n.strip_prefix(b"/proc/self/").or_else(|| n.strip_prefix(b"/proc/thread-self/"))?;
        if rest == b"cwd" {
            return Some(Ok(self.cwd.clone()));
        }
        let num = rest.strip_prefix(b"fd/")?;
        let vfd: u64 = std::str::from_utf8(num).ok()?.parse().ok()?;
        match self.fds.get(vfd) {
            None => Some(Err(libc::ENOENT)),
            Some(e) => e.path.clone().map(Ok),
        }
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
