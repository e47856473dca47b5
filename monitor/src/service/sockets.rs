//! Sockets: `socketpair` for `AF_UNIX` (stream, datagram, seqpacket;
//! `SOCK_NONBLOCK`, `SOCK_CLOEXEC`), and the calls that use a connected
//! socket: `sendto`, `recvfrom`, `sendmsg`, `recvmsg`, `shutdown`,
//! `getsockname`, `getpeername`. `socket`, `bind`, `connect`, `listen`,
//! `accept` and socket options are the networking issue's (issue 19): this
//! module is its base.
//!
//! A socket pair is two host sockets the monitor creates (`O_CLOEXEC`, like
//! every descriptor it holds) and keeps in the program's table like the two
//! ends of a pipe ([`super::fds`]): `read`, `write`, `poll`, `select`,
//! `epoll`, `fcntl`, `dup`, `close` work on them unchanged, because they act
//! on the host descriptor behind a virtual one.
//!
//! # What the program cannot do through them
//!
//! - Name an address. A pair is connected: `sendto`/`sendmsg` with a
//!   destination address get `EISCONN` (Linux's answer on a connected stream
//!   socket; on a datagram pair Linux would send to that address, which
//!   needs the names of issue 19). Addresses the host reports
//!   (`recvfrom`, `recvmsg`, `getsockname`, `getpeername`: an unnamed
//!   `AF_UNIX` socket) are copied out through a buffer of the monitor's,
//!   truncated to the program's length as Linux truncates.
//! - Pass control messages. `sendmsg` with `msg_controllen` other than 0 is
//!   `EINVAL` (refused, not stripped: a program sending `SCM_RIGHTS` would
//!   otherwise wait forever for a descriptor that never arrives, and the
//!   descriptors it names are virtual numbers the host kernel must never
//!   see). `recvmsg` never gives the host a control buffer (none can have
//!   been sent) and reports `msg_controllen` 0.
//! - Use flags beyond the ones listed in [`SEND_FLAGS`] and [`RECV_FLAGS`]
//!   (`EOPNOTSUPP`: `MSG_OOB`, `MSG_ERRQUEUE`, ...).
//!
//! Every send carries `MSG_NOSIGNAL` to the host (the monitor must not get
//! SIGPIPE); the libos posts SIGPIPE to the program for `EPIPE` when the
//! program did not ask for `MSG_NOSIGNAL`, as the kernel would.
//!
//! The `*_on` forms run on a host descriptor without the service: sends and
//! receives can block (a blocking socket pair), so
//! [`super::Service::begin_blocking`] serves them like `read` of a pipe.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::fdtable::Entry;
use super::io::{clip_iovecs, iovecs};
use super::{host, Fail, Service, Sys, IOV_MAX};
use crate::memory::GuestMemory;

/// Flags a send may carry.
pub const SEND_FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE | libc::MSG_EOR;
/// Flags a receive may carry.
pub const RECV_FLAGS: i32 = libc::MSG_DONTWAIT
    | libc::MSG_PEEK
    | libc::MSG_TRUNC
    | libc::MSG_WAITALL
    | libc::MSG_CMSG_CLOEXEC
    | libc::MSG_NOSIGNAL;

/// `struct msghdr` as x86-64 Linux lays it out: 56 bytes.
const MSGHDR_LEN: usize = 56;
/// `sizeof(struct sockaddr_storage)`: the longest address the host reports.
const ADDR_MAX: usize = 128;

pub(super) fn socketpair(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let (domain, ty, protocol) = (a[0] as i32, a[1] as i32, a[2] as i32);
    match domain {
        libc::AF_UNIX => {}
        // Linux's answer for the families whose sockets cannot be paired.
        libc::AF_INET | libc::AF_INET6 => return Err(Fail::Errno(libc::EOPNOTSUPP)),
        _ => return Err(Fail::Errno(libc::EAFNOSUPPORT)),
    }
    let flags = ty & (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let kind = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    // Which kinds and protocols exist is the host kernel's answer (the same
    // as the native one); the monitor's descriptors are always O_CLOEXEC.
    let mut sv = [0i32; 2];
    // SAFETY: socketpair writes two ints into `sv`.
    host(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | (flags & libc::SOCK_NONBLOCK) | libc::SOCK_CLOEXEC,
            protocol,
            sv.as_mut_ptr(),
        )
    } as i64)?;
    // SAFETY: fresh descriptors we own.
    let (x, y) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
    let cloexec = flags & libc::SOCK_CLOEXEC != 0;
    let vx = s.fds.insert(Entry { fd: x.into(), cloexec, path: None, change: None }, 0);
    let vy = s.fds.insert(Entry { fd: y.into(), cloexec, path: None, change: None }, 0);
    let (Some(vx), Some(vy)) = (vx, vy) else {
        if let Some(v) = vx {
            s.fds.remove(v);
        }
        return Err(Fail::Errno(libc::EMFILE));
    };
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&(vx as i32).to_le_bytes());
    bytes[4..].copy_from_slice(&(vy as i32).to_le_bytes());
    if let Err(e) = mem.write(a[3], &bytes) {
        s.fds.remove(vx);
        s.fds.remove(vy);
        return Err(e.into());
    }
    Ok(0)
}

/// `sendto(fd, buf, len, flags, dest, destlen)` with the write limits.
pub(super) fn sendto(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    let len = s.write_allowance("sendto", fd, a[2], None)?;
    let r = send_on(fd, mem, a, len);
    s.count_written(r)
}

/// `sendto` on host descriptor `fd` without write limits (the service lock
/// may be dropped).
pub(super) fn sendto_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    send_on(fd, mem, a, a[2])
}

/// `sendto` of the first `len` of the `a[2]` bytes at `a[1]`.
fn send_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6], len: u64) -> Sys {
    let flags = a[3] as i32;
    if flags & !SEND_FLAGS != 0 {
        return Err(Fail::Errno(libc::EOPNOTSUPP));
    }
    if a[4] != 0 && a[5] != 0 {
        return Err(Fail::Errno(libc::EISCONN));
    }
    match super::io::buffer(mem, a[1], a[2], false)? {
        super::io::Buf::One(p) => {
            // SAFETY: [p, p+a[2]) is checked readable program memory; len <= a[2].
            host(unsafe { libc::send(fd, p.cast(), len as usize, flags | libc::MSG_NOSIGNAL) } as i64)
        }
        // Several pieces: sendmsg over them (at most IOV_MAX: short is legal).
        super::io::Buf::Many(pc) => sendmsg_host(fd, &mut pc.iovecs(len as usize, IOV_MAX as usize), flags),
    }
}

pub(super) fn recvfrom(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    recvfrom_on(s.vfd(a[0])?, mem, a)
}

/// `recvfrom(fd, buf, len, flags, src, srclen)` on host descriptor `fd`
/// (the service lock may be dropped).
pub(super) fn recvfrom_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let flags = a[3] as i32;
    if flags & !RECV_FLAGS != 0 {
        return Err(Fail::Errno(libc::EOPNOTSUPP));
    }
    let b = super::io::buffer(mem, a[1], a[2], true)?;
    // The address length is read before anything is received, so a bad one
    // consumes no data.
    let want = if a[4] != 0 { Some(addr_len_in(mem, a[5])?) } else { None };
    let mut addr = [0u8; ADDR_MAX];
    let mut alen = ADDR_MAX as libc::socklen_t;
    let n = match &b {
        // SAFETY: [p, p+a[2]) is checked writable program memory; `addr`
        // holds `alen` bytes.
        super::io::Buf::One(p) => host(unsafe {
            libc::recvfrom(fd, p.cast(), a[2] as usize, flags, addr.as_mut_ptr().cast(), &mut alen)
        } as i64)?,
        // Several pieces: recvmsg over them (at most IOV_MAX: short is legal).
        super::io::Buf::Many(pc) => {
            let mut iov = pc.iovecs(a[2] as usize, IOV_MAX as usize);
            let mut h = host_msghdr(&mut iov, Some(&mut addr));
            // SAFETY: `h` names `iov` (checked writable program memory) and
            // `addr`, both live across the call; no control buffer.
            let n = host(unsafe { libc::recvmsg(fd, &mut h, flags) } as i64)?;
            alen = h.msg_namelen;
            n
        }
    };
    if let Some(want) = want {
        addr_out(mem, a[4], a[5], &addr, alen as usize, want)?;
    }
    Ok(n)
}

/// The program's `struct msghdr`, copied once.
struct MsgHdr {
    name: u64,
    namelen: u32,
    iov: u64,
    iovlen: u64,
    controllen: u64,
}

impl MsgHdr {
    fn read(mem: &GuestMemory, at: u64) -> Result<MsgHdr, Fail> {
        let mut b = [0u8; MSGHDR_LEN];
        mem.read_into(at, &mut b)?;
        let u64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(w)
        };
        let mut n = [0u8; 4];
        n.copy_from_slice(&b[8..12]);
        Ok(MsgHdr {
            name: u64_at(0),
            namelen: u32::from_le_bytes(n),
            iov: u64_at(16),
            iovlen: u64_at(24),
            controllen: u64_at(40),
        })
    }

    /// The iovecs, checked (`EMSGSIZE` past `IOV_MAX`, as Linux).
    fn iovecs(&self, mem: &GuestMemory, write: bool) -> Result<Vec<libc::iovec>, Fail> {
        if self.iovlen > IOV_MAX {
            return Err(Fail::Errno(libc::EMSGSIZE));
        }
        iovecs(mem, self.iov, self.iovlen, write)
    }
}

/// A host `msghdr` with iovecs and nothing else.
fn host_msghdr(iov: &mut [libc::iovec], name: Option<&mut [u8; ADDR_MAX]>) -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is "no name, no control".
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_iov = iov.as_mut_ptr();
    h.msg_iovlen = iov.len();
    if let Some(name) = name {
        h.msg_name = name.as_mut_ptr().cast();
        h.msg_namelen = ADDR_MAX as libc::socklen_t;
    }
    h
}

/// `sendmsg(fd, msg, flags)` with the write limits.
pub(super) fn sendmsg(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    let mut iov = sendmsg_args(mem, a)?;
    let total = iov.iter().map(|v| v.iov_len as u64).sum();
    let len = s.write_allowance("sendmsg", fd, total, None)?;
    clip_iovecs(&mut iov, len);
    let r = sendmsg_host(fd, &mut iov, a[2] as i32);
    s.count_written(r)
}

/// `sendmsg` on host descriptor `fd` without write limits (the service lock
/// may be dropped).
pub(super) fn sendmsg_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let mut iov = sendmsg_args(mem, a)?;
    sendmsg_host(fd, &mut iov, a[2] as i32)
}

/// The checked arguments of a `sendmsg`.
fn sendmsg_args(mem: &GuestMemory, a: &[u64; 6]) -> Result<Vec<libc::iovec>, Fail> {
    if a[2] as i32 & !SEND_FLAGS != 0 {
        return Err(Fail::Errno(libc::EOPNOTSUPP));
    }
    let m = MsgHdr::read(mem, a[1])?;
    if m.name != 0 && m.namelen != 0 {
        return Err(Fail::Errno(libc::EISCONN));
    }
    if m.controllen != 0 {
        return Err(Fail::Errno(libc::EINVAL));
    }
    m.iovecs(mem, false)
}

fn sendmsg_host(fd: RawFd, iov: &mut [libc::iovec], flags: i32) -> Sys {
    let h = host_msghdr(iov, None);
    // SAFETY: `h` names only `iov`, whose entries point into checked
    // readable program memory; both live across the call.
    host(unsafe { libc::sendmsg(fd, &h, flags | libc::MSG_NOSIGNAL) } as i64)
}

pub(super) fn recvmsg(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    recvmsg_on(s.vfd(a[0])?, mem, a)
}

/// `recvmsg(fd, msg, flags)` on host descriptor `fd` (the service lock may
/// be dropped). Writes back `msg_namelen`, `msg_controllen` (0) and
/// `msg_flags`, and the address when `msg_name` is set.
pub(super) fn recvmsg_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let flags = a[2] as i32;
    if flags & !RECV_FLAGS != 0 {
        return Err(Fail::Errno(libc::EOPNOTSUPP));
    }
    let m = MsgHdr::read(mem, a[1])?;
    if (m.namelen as i32) < 0 {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let mut iov = m.iovecs(mem, true)?;
    let mut addr = [0u8; ADDR_MAX];
    let mut h = host_msghdr(&mut iov, (m.name != 0).then_some(&mut addr));
    // SAFETY: `h` names `iov` (checked writable program memory) and `addr`,
    // both live across the call; no control buffer.
    let n = host(unsafe { libc::recvmsg(fd, &mut h, flags) } as i64)?;
    let alen = if m.name != 0 { h.msg_namelen as usize } else { 0 };
    if m.name != 0 {
        let keep = alen.min(m.namelen as usize).min(ADDR_MAX);
        mem.write(m.name, &addr[..keep])?;
    }
    let at = a[1];
    mem.write(at + 8, &(alen as u32).to_le_bytes())?;
    mem.write(at + 40, &0u64.to_le_bytes())?;
    // Nothing the host could set about control data applies.
    let mflags = h.msg_flags & !libc::MSG_CTRUNC;
    mem.write(at + 48, &mflags.to_le_bytes())?;
    Ok(n)
}

pub(super) fn shutdown(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    // SAFETY: touches no memory; the host checks `how`.
    host(unsafe { libc::shutdown(fd, a[1] as i32) } as i64)
}

pub(super) fn getsockname(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    sock_name(s, mem, a, false)
}

pub(super) fn getpeername(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    sock_name(s, mem, a, true)
}

/// `getsockname`/`getpeername(fd, addr, addrlen)`: the host call first (a
/// descriptor that is not a socket is `ENOTSOCK` whatever the pointers, as
/// on Linux), then the address copied out.
fn sock_name(s: &mut Service, mem: &GuestMemory, a: &[u64; 6], peer: bool) -> Sys {
    let fd = s.vfd(a[0])?;
    let mut addr = [0u8; ADDR_MAX];
    let mut alen = ADDR_MAX as libc::socklen_t;
    // SAFETY: `addr` holds `alen` bytes.
    host(unsafe {
        if peer {
            libc::getpeername(fd, addr.as_mut_ptr().cast(), &mut alen)
        } else {
            libc::getsockname(fd, addr.as_mut_ptr().cast(), &mut alen)
        }
    } as i64)?;
    let want = addr_len_in(mem, a[2])?;
    addr_out(mem, a[1], a[2], &addr, alen as usize, want)?;
    Ok(0)
}

/// The program's address-buffer length at `at` (`EFAULT` for a null
/// pointer, `EINVAL` when negative, as Linux).
fn addr_len_in(mem: &GuestMemory, at: u64) -> Result<usize, Fail> {
    if at == 0 {
        return Err(Fail::Errno(libc::EFAULT));
    }
    let mut b = [0u8; 4];
    mem.read_into(at, &mut b)?;
    usize::try_from(i32::from_le_bytes(b)).map_err(|_| Fail::Errno(libc::EINVAL))
}

/// Writes the host's address (`addr[..alen]`) to the program's buffer at
/// `to` truncated to `want` bytes, and the full length to `len_at`.
fn addr_out(
    mem: &GuestMemory,
    to: u64,
    len_at: u64,
    addr: &[u8; ADDR_MAX],
    alen: usize,
    want: usize,
) -> Result<(), Fail> {
    let keep = alen.min(want).min(ADDR_MAX);
    if keep > 0 {
        mem.write(to, &addr[..keep])?;
    }
    mem.write(len_at, &(alen as u32).to_le_bytes())?;
    Ok(())
}
