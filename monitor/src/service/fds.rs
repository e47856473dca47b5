//! The program's descriptor table: `close`, `dup`, `dup2`, `dup3`, `fcntl`,
//! `pipe`, `pipe2`, and `ioctl` (terminal requests only). Every program
//! descriptor is virtual: an entry of [`super::fdtable::FdTable`] holding
//! one of the monitor's own.

use std::os::fd::{FromRawFd, OwnedFd};

use super::fdtable::Entry;
use super::locks;
use super::{dup_cloexec, host, Fail, Service, Sys};
use crate::memory::GuestMemory;

pub(super) fn close(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    s.fds.remove(a[0]).ok_or(Fail::Errno(libc::EBADF))?;
    Ok(0)
}

pub(super) fn dup(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    let (path, change) = s.fds.get(a[0]).map(|e| (e.path.clone(), e.change)).unwrap_or_default();
    let e = Entry { fd: dup_cloexec(fd)?.into(), cloexec: false, path, change };
    s.fds.insert(e, 0).map(|v| v as i64).ok_or(Fail::Errno(libc::EMFILE))
}

pub(super) fn dup2(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    dup_to(s, a, 0)
}

pub(super) fn dup3(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let flags = a[2] as i32;
    if a[0] == a[1] || flags & !libc::O_CLOEXEC != 0 {
        return Err(Fail::Errno(libc::EINVAL));
    }
    dup_to(s, a, flags)
}

/// `dup2(a[0], a[1])` with `dup3`'s `flags`.
fn dup_to(s: &mut Service, a: &[u64; 6], flags: i32) -> Sys {
    let fd = s.vfd(a[0])?;
    if a[0] == a[1] {
        return Ok(a[1] as i64);
    }
    if a[1] >= s.fds.max() as u64 {
        return Err(Fail::Errno(libc::EBADF));
    }
    let (path, change) = s.fds.get(a[0]).map(|e| (e.path.clone(), e.change)).unwrap_or_default();
    let e = Entry { fd: dup_cloexec(fd)?.into(), cloexec: flags & libc::O_CLOEXEC != 0, path, change };
    s.fds.insert_at(a[1], e);
    Ok(a[1] as i64)
}

pub(super) fn pipe(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    make_pipe(s, mem, a[0], 0)
}

pub(super) fn pipe2(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    make_pipe(s, mem, a[0], a[1] as i32)
}

/// A pipe whose two virtual fds are written at `out`.
fn make_pipe(s: &mut Service, mem: &GuestMemory, out: u64, flags: i32) -> Sys {
    if flags & !(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_DIRECT) != 0 {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let mut p = [0i32; 2];
    // SAFETY: pipe2 writes two ints into `p`.
    host(unsafe { libc::pipe2(p.as_mut_ptr(), (flags & !libc::O_CLOEXEC) | libc::O_CLOEXEC) } as i64)?;
    // SAFETY: fresh descriptors we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    let cloexec = flags & libc::O_CLOEXEC != 0;
    let vr = s.fds.insert(Entry { fd: r.into(), cloexec, path: None, change: None }, 0);
    let vw = s.fds.insert(Entry { fd: w.into(), cloexec, path: None, change: None }, 0);
    let (Some(vr), Some(vw)) = (vr, vw) else {
        if let Some(v) = vr {
            s.fds.remove(v);
        }
        return Err(Fail::Errno(libc::EMFILE));
    };
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&(vr as i32).to_le_bytes());
    bytes[4..].copy_from_slice(&(vw as i32).to_le_bytes());
    if let Err(e) = mem.write(out, &bytes) {
        s.fds.remove(vr);
        s.fds.remove(vw);
        return Err(e.into());
    }
    Ok(0)
}

pub(super) fn fcntl(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    match a[1] as i32 {
        cmd if cmd as u64 == cabin_abi::boot::NET_GRANT_CMD => super::sockets::net_grant(s, mem, a[0]),
        cmd if locks::is_lock_cmd(cmd) => {
            let lock = s.lock_target(fd, mem, cmd, a[2])?;
            locks::fcntl_lock(fd, locks::raw(&lock, fd), mem, cmd, a[2])
        }
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let min = usize::try_from(a[2]).map_err(|_| Fail::Errno(libc::EINVAL))?;
            if min >= s.fds.max() {
                return Err(Fail::Errno(libc::EINVAL));
            }
            let (path, change) = s.fds.get(a[0]).map(|e| (e.path.clone(), e.change)).unwrap_or_default();
            let cloexec = a[1] as i32 == libc::F_DUPFD_CLOEXEC;
            let e = Entry { fd: dup_cloexec(fd)?.into(), cloexec, path, change };
            s.fds.insert(e, min).map(|v| v as i64).ok_or(Fail::Errno(libc::EMFILE))
        }
        libc::F_GETFD => Ok(i64::from(s.fds.get(a[0]).is_some_and(|e| e.cloexec))),
        libc::F_SETFD => {
            if let Some(e) = s.fds.get_mut(a[0]) {
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
        _ => Err(Fail::Errno(libc::EINVAL)),
    }
}

/// `sizeof(struct termio)` on x86-64.
const TERMIO: usize = 18;

pub(super) fn ioctl(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
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
        // The old `struct termio` forms (18 bytes on x86-64).
        r if r == libc::TCGETA => {
            if !tty {
                return Err(Fail::Errno(libc::ENOTTY));
            }
            let mut t = [0u8; TERMIO];
            // SAFETY: TCGETA writes a struct termio into `t`.
            host(unsafe { libc::ioctl(fd, libc::TCGETA, t.as_mut_ptr()) } as i64)?;
            mem.write(a[2], &t)?;
            Ok(0)
        }
        r if r == libc::TCSETA || r == libc::TCSETAW || r == libc::TCSETAF => {
            if !tty {
                return Err(Fail::Errno(libc::ENOTTY));
            }
            let mut t = [0u8; TERMIO];
            mem.read_into(a[2], &mut t)?;
            // SAFETY: reads a struct termio from `t`.
            host(unsafe { libc::ioctl(fd, r as _, t.as_ptr()) } as i64)
        }
        // `tcflush`, `tcflow`, `tcdrain`/`tcsendbreak` and the break
        // controls: integer arguments, no memory (a background group's are
        // stopped first: `crate::ring`'s `background_tty`).
        r if r == libc::TCFLSH
            || r == libc::TCXONC
            || r == libc::TCSBRK
            || r == libc::TCSBRKP
            || r == libc::TIOCSBRK
            || r == libc::TIOCCBRK =>
        {
            if !tty {
                return Err(Fail::Errno(libc::ENOTTY));
            }
            // SAFETY: these requests take an integer argument (or none).
            host(unsafe { libc::ioctl(fd, r as _, a[2] as libc::c_ulong) } as i64)
        }
        // Typing into the terminal's input queue as if the user had:
        // refused as Linux refuses it without `dev.tty.legacy_tiocsti`
        // (a confined program must not run commands in the shell that
        // started it).
        r if r == libc::TIOCSTI => Err(Fail::Errno(if tty { libc::EIO } else { libc::ENOTTY })),
        r if r == libc::TIOCSWINSZ => {
            if !tty {
                return Err(Fail::Errno(libc::ENOTTY));
            }
            let mut w = [0u8; 8];
            mem.read_into(a[2], &mut w)?;
            // SAFETY: reads a struct winsize (8 bytes) from `w`.
            host(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, w.as_ptr()) } as i64)
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
            mem.write(a[2], &(s.pid as i32).to_le_bytes())?;
            Ok(0)
        }
        r if r == libc::FIOCLEX || r == libc::FIONCLEX => {
            if let Some(e) = s.fds.get_mut(a[0]) {
                e.cloexec = r == libc::FIOCLEX;
            }
            Ok(0)
        }
        _ => Err(Fail::Errno(libc::ENOTTY)),
    }
}

/// `signalfd4` as the libos forwards it (`fd` -1, no mask: docs/signals.md):
/// a placeholder descriptor, a host eventfd, so the program's signalfd has a
/// number of the program's table like any other; the libos serves its
/// reads from its own pending set and closes it like any descriptor.
pub(super) fn signalfd4(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if a[0] as i32 != -1 || a[1] != 0 || a[3] & !(libc::O_CLOEXEC as u64) != 0 {
        return Err(Fail::Errno(libc::EINVAL));
    }
    // SAFETY: eventfd takes integers and returns a new descriptor or -1.
    let fd = host(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) } as i64)?;
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cloexec = a[3] & libc::O_CLOEXEC as u64 != 0;
    let v = s
        .fds
        .insert(Entry { fd: fd.into(), cloexec, path: None, change: None }, 0)
        .ok_or(Fail::Errno(libc::EMFILE))?;
    Ok(v as i64)
}

/// `flock(fd, op)` (`LOCK_SH`, `LOCK_EX`, `LOCK_UN`, `LOCK_NB`) on the real
/// file: the lock belongs to the program's open file description, as
/// natively.
pub(super) fn flock(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    locks::flock_on(fd, a[1])
}

/// `memfd_create(name, flags)`: a host memfd in the program's table (an
/// anonymous regular file: `ftruncate`, reads and writes, `mmap` as any
/// file; it counts against `[limits] file-size` and `bytes-written` like
/// one). `MFD_CLOEXEC`, `MFD_ALLOW_SEALING`, `MFD_NOEXEC_SEAL`; the rest
/// (`MFD_HUGETLB` and its sizes, `MFD_EXEC`: an executable memfd is for
/// `execve`) is `EINVAL`. The name is Linux's: at most 249 bytes.
pub(super) fn memfd_create(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    const MFD_CLOEXEC: u64 = 1;
    const MFD_ALLOW_SEALING: u64 = 2;
    const MFD_NOEXEC_SEAL: u64 = 8;
    const NAME_MAX: usize = 249;
    if a[1] & !(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL) != 0 {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let name = match mem.read_cstr(a[0], NAME_MAX) {
        Ok(n) if n.len() <= NAME_MAX => n,
        Ok(_) | Err(crate::memory::MemError::TooLong { .. }) => return Err(Fail::Errno(libc::EINVAL)),
        Err(e) => return Err(e.into()),
    };
    let name = std::ffi::CString::new(name).map_err(|_| Fail::Errno(libc::EINVAL))?;
    let flags = (a[1] & (MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL)) as u32 | libc::MFD_CLOEXEC;
    // SAFETY: a NUL-terminated name; returns a new descriptor or -1.
    let fd = host(unsafe { libc::memfd_create(name.as_ptr(), flags) } as i64)?;
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cloexec = a[1] & MFD_CLOEXEC != 0;
    let v = s
        .fds
        .insert(Entry { fd: fd.into(), cloexec, path: None, change: None }, 0)
        .ok_or(Fail::Errno(libc::EMFILE))?;
    Ok(v as i64)
}
