//! The program's own state and its view of the system: working directory
//! (`getcwd`, `chdir`, `fchdir`), `umask`, `prctl` (name bookkeeping),
//! limits (`prlimit64`, `getrlimit`, `setrlimit`), usage and times,
//! `sched_getaffinity`/`sched_setaffinity`/`getcpu` (the CPUs the session gives the
//! program), `sysinfo`, `uname` ([`super::UNAME`]),
//! `getgroups`, `getrandom`, and `wait4`/`waitid` (no children: `ECHILD`).

use super::{fs, host, Fail, Service, Sys, AT_FDCWD, UNAME};
use crate::memory::{pod_bytes, GuestMemory};

pub(super) fn getcwd(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let mut v = s.cwd.clone();
    v.push(0);
    if (v.len() as u64) > a[1] {
        return Err(Fail::Errno(libc::ERANGE));
    }
    mem.write(a[0], &v)?;
    Ok(v.len() as i64)
}

pub(super) fn chdir(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let path = s.read_path(mem, a[0])?;
    let abs = s.absolute(AT_FDCWD as u64, &path)?;
    s.chdir(fs::normalize(&abs), Some(&path))
}

pub(super) fn fchdir(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let path = s.fds.get(a[0]).ok_or(Fail::Errno(libc::EBADF))?.path.clone();
    let path = path.ok_or(Fail::Errno(libc::ENOTDIR))?;
    s.chdir(path, None)
}

pub(super) fn umask(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let old = s.umask;
    s.umask = a[0] as u32 & 0o777;
    // SAFETY: sets the monitor's umask, which applies to the files
    // it creates for the program (and nothing else is created
    // while a program runs).
    unsafe { libc::umask(s.umask) };
    Ok(old as i64)
}

pub(super) fn prctl(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    match a[0] as i32 {
        libc::PR_SET_NAME => {
            // As the kernel: up to its NUL, at most 15 bytes, across
            // adjacent regions (nothing past the NUL is read).
            let (name, _) = mem.read_until_nul(a[1], 15)?;
            s.comm = name;
            Ok(0)
        }
        libc::PR_GET_NAME => {
            let mut name = [0u8; 16];
            name[..s.comm.len().min(15)].copy_from_slice(&s.comm[..s.comm.len().min(15)]);
            mem.write(a[1], &name)?;
            Ok(0)
        }
        libc::PR_GET_DUMPABLE => Ok(0),
        libc::PR_SET_DUMPABLE | libc::PR_SET_PDEATHSIG => Ok(0),
        _ => Err(Fail::Errno(libc::EINVAL)),
    }
}

pub(super) fn prlimit64(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if a[0] != 0 && a[0] != u64::from(s.pid) {
        return Err(Fail::Errno(libc::EPERM));
    }
    if a[3] != 0 {
        let lim = rlimit(a[1], s.fds.max())?;
        mem.write(a[3], &lim)?;
    }
    Ok(0)
}

pub(super) fn getrlimit(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let lim = rlimit(a[0], s.fds.max())?;
    mem.write(a[1], &lim)?;
    Ok(0)
}

/// Bytes of the affinity mask the program sees: enough words (of 8 bytes,
/// as the kernel copies) for its highest CPU.
fn mask_bytes(cpus: &[usize]) -> usize {
    (cpus.iter().max().copied().unwrap_or(0) / 64 + 1) * 8
}

/// `sched_getaffinity`: the CPUs the program may use, for any of its threads
/// (the monitor does not know the program's thread ids; the libos refuses
/// strangers' for other calls).
pub(super) fn sched_getaffinity(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let n = mask_bytes(&s.cpus);
    if a[1] < n as u64 || !a[1].is_multiple_of(8) {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let mut mask = vec![0u8; n];
    for &c in &s.cpus {
        mask[c / 8] |= 1 << (c % 8);
    }
    mem.write(a[2], &mask)?;
    Ok(n as i64)
}

/// `sched_setaffinity`: accepted when the mask names one of the program's
/// CPUs (as Linux intersects with the allowed set), `EINVAL` otherwise. The
/// program's threads stay where the session placed them.
pub(super) fn sched_setaffinity(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let len = a[1].min(128) as usize;
    let mask = mem.read(a[2], len)?;
    let named = s.cpus.iter().any(|&c| mask.get(c / 8).is_some_and(|b| b & (1 << (c % 8)) != 0));
    if named {
        Ok(0)
    } else {
        Err(Fail::Errno(libc::EINVAL))
    }
}

/// `getcpu`: the program's first CPU, node 0 (the monitor does not see on
/// which of its CPUs a program thread runs at the moment).
pub(super) fn getcpu(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let cpu = s.cpus.first().copied().unwrap_or(0) as u32;
    if a[0] != 0 {
        mem.write(a[0], &cpu.to_le_bytes())?;
    }
    if a[1] != 0 {
        mem.write(a[1], &0u32.to_le_bytes())?;
    }
    Ok(0)
}

pub(super) fn sysinfo(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    // SAFETY: sysinfo is plain data; the call fills it.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: writes `si`.
    host(unsafe { libc::sysinfo(&mut si) } as i64)?;
    mem.write(a[0], pod_bytes(&si))?;
    Ok(0)
}

pub(super) fn uname(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let mut b = vec![0u8; 6 * 65];
    for (i, s) in UNAME.iter().enumerate() {
        b[i * 65..i * 65 + s.len()].copy_from_slice(s.as_bytes());
    }
    mem.write(a[0], &b)?;
    Ok(0)
}

pub(super) fn getgroups(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
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

pub(super) fn getrandom(_s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let flags = a[2] as u32 & (libc::GRND_NONBLOCK | libc::GRND_RANDOM);
    match super::io::buffer(mem, a[0], a[1], true)? {
        // SAFETY: writes at most a[1] bytes at p, checked.
        super::io::Buf::One(p) => host(unsafe { libc::getrandom(p.cast(), a[1] as usize, flags) } as i64),
        super::io::Buf::Many(pc) => {
            // Several pieces: a bounded bounce buffer (a short count is
            // legal), copied out through the pieces.
            let mut bounce = vec![0u8; pc.total().min(64 << 10)];
            // SAFETY: writes at most bounce.len() bytes into our buffer.
            let n = host(unsafe { libc::getrandom(bounce.as_mut_ptr().cast(), bounce.len(), flags) } as i64)?;
            pc.copy_out(bounce.get(..n as usize).ok_or(Fail::Errno(libc::EIO))?);
            Ok(n)
        }
    }
}

/// `getpgrp`, `getpgid`, `getsid`, `setpgid`, `setsid` of a program
/// without a process tree (a backend that cannot fork yet): the caller is
/// the only process there is and leads its own group and session (with a
/// tree, `crate::tree::Tree::group_call` serves them). `getpgrp`.
pub(super) fn lone_getpgrp(s: &mut Service, _mem: &GuestMemory, _a: &[u64; 6]) -> Sys {
    Ok(i64::from(s.pid))
}

/// `getpgid`, `getsid` of a lone process (see [`lone_getpgrp`]).
pub(super) fn lone_getpgid(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let p = a[0] as u32;
    if p == 0 || p == s.pid {
        Ok(i64::from(s.pid))
    } else {
        Err(Fail::Errno(libc::ESRCH))
    }
}

/// `setpgid` of a lone process (see [`lone_getpgrp`]): only into its own
/// group, where it is already.
pub(super) fn lone_setpgid(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let (pid, pgid) = (a[0] as i32, a[1] as i32);
    let me = s.pid as i32;
    if pid < 0 || pgid < 0 {
        Err(Fail::Errno(libc::EINVAL))
    } else if pid != 0 && pid != me {
        Err(Fail::Errno(libc::ESRCH))
    } else if pgid != 0 && pgid != me {
        Err(Fail::Errno(libc::EPERM))
    } else {
        Ok(0)
    }
}

/// `setsid` of a lone process: it leads its group, `EPERM` as Linux.
pub(super) fn lone_setsid(_s: &mut Service, _mem: &GuestMemory, _a: &[u64; 6]) -> Sys {
    Err(Fail::Errno(libc::EPERM))
}

/// `wait4`, `waitid`: the program has no children.
pub(super) fn no_children(_s: &mut Service, _mem: &GuestMemory, _a: &[u64; 6]) -> Sys {
    Err(Fail::Errno(libc::ECHILD))
}

impl Service {
    fn chdir(&mut self, abs: Vec<u8>, prog: Option<&[u8]>) -> Sys {
        let fd = self
            .policy
            .open(&abs, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| self.path_fail(e, prog, &abs))?;
        drop(fd);
        self.cwd = abs;
        Ok(0)
    }
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

/// `mmap(va, len, prot, MAP_SHARED | MAP_FIXED, RESERVE_FD, target)` from
/// the libos: it mapped (or is about to map) the arena pages at `target`
/// over `[va, va+len)` of the reservation space. Recorded so the monitor
/// reaches those pages ([`GuestMemory::alias`], which checks both ranges).
/// With another descriptor it is a shared file mapping (`filemap.rs`;
/// `ENOSYS` where the process has no file-mapping range).
pub(super) fn reserve_commit(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    const SHARED_FIXED: u64 = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
    if a[4] & 0xffff_ffff != cabin_abi::boot::RESERVE_FD {
        // A shared file mapping (filemap.rs).
        return super::filemap::mmap(s, mem, a);
    }
    if a[3] & 0xffff_ffff != SHARED_FIXED || a[4] & 0xffff_ffff != cabin_abi::boot::RESERVE_FD {
        return Err(Fail::Errno(libc::ENODEV));
    }
    let len = a[1].checked_next_multiple_of(4096).ok_or(Fail::Errno(libc::EINVAL))?;
    mem.alias(a[0], len, a[5]).map_err(|_| Fail::Errno(libc::EINVAL))?;
    Ok(0)
}

/// `munmap(va, len)` from the libos: that part of the reservation space is
/// no longer committed.
pub(super) fn reserve_release(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if super::filemap::in_window(mem, a[0]) {
        return super::filemap::munmap(s, mem, a);
    }
    let len = a[1].checked_next_multiple_of(4096).ok_or(Fail::Errno(libc::EINVAL))?;
    mem.unalias(a[0], len);
    Ok(0)
}
