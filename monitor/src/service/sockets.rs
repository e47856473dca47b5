//! Sockets: `socket` (`AF_UNIX`, `AF_INET`, `AF_INET6`), `socketpair`
//! (`AF_UNIX`), `bind`, `listen`, `accept`/`accept4`, `connect`,
//! `shutdown`, the sends and receives (`sendmmsg`/`recvmmsg` included),
//! `getsockname`/`getpeername` and the socket options of a list
//! ([`option_allowed`]). Every address a program names is checked by
//! [`super::net`] against the run's network rules (docs/networking.md).
//!
//! Host sockets are the monitor's (`O_CLOEXEC`, like every descriptor it
//! holds), kept in the program's table like the two ends of a pipe
//! ([`super::fds`]): `read`, `write`, `poll`, `select`, `epoll`, `fcntl`,
//! `dup`, `close` work on them unchanged, because they act on the host
//! descriptor behind a virtual one.
//!
//! # What the program cannot do through them
//!
//! - Name an address the rules do not allow (`EACCES`, noted for the
//!   gate's `denied` record). A destination on a stream or seqpacket
//!   socket is never read (Linux never uses one: a unix stream socket says
//!   `EISCONN`). Addresses the host reports (`accept`, `recvfrom`,
//!   `recvmsg`, `getsockname`, `getpeername`) are copied out through a
//!   buffer of the monitor's, truncated to the program's length as Linux
//!   truncates, a path socket the run bound shown by the program's path.
//! - Pass control messages other than `SCM_RIGHTS` and `SCM_CREDENTIALS`
//!   on unix sockets ([`super::cmsg`]): a send's control data is copied
//!   once, checked as Linux checks it and rebuilt with the host
//!   descriptors behind the program's numbers (a number that is not the
//!   program's is `EBADF`; credentials other than its own `EPERM`); a
//!   receive's descriptors become the monitor's the moment the host call
//!   returns and enter the program's table under the lock, so the program
//!   only ever sees its own numbers and nothing leaks.
//! - Use flags beyond the ones listed in [`SEND_FLAGS`] and [`RECV_FLAGS`]
//!   (`EOPNOTSUPP`: `MSG_OOB`, `MSG_ERRQUEUE`, ...), or options beyond the
//!   list (`ENOPROTOOPT`).
//!
//! Every send carries `MSG_NOSIGNAL` to the host (the monitor must not get
//! SIGPIPE); the libos posts SIGPIPE to the program for `EPIPE` when the
//! program did not ask for `MSG_NOSIGNAL`, as the kernel would.
//!
//! The `*_on` forms run on a host descriptor without the service: sends,
//! receives, `accept` and `connect` can block, so
//! [`super::Service::begin_blocking`] serves them like `read` of a pipe
//! (a destination checked under the lock and carried over).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::cmsg::{self, RecvControl, SendControl};
use super::fdtable::Entry;
use super::io::{clip_iovecs, iovecs};
use super::net::{self, Addr, Bound, Checked, HostAddr, ADDR_MAX};
use super::{errno, host, Fail, Service, Sys, IOV_MAX};
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

/// `sendto(fd, buf, len, flags, dest, destlen)` with the write limits; a
/// destination is checked against the network rules first.
pub(super) fn sendto(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    check_send_flags(a[3] as i32)?;
    let dest = sendto_dest(s, mem, a)?;
    let len = s.write_allowance("sendto", fd, a[2], None)?;
    let r = send_on(fd, mem, a, len, dest.as_ref());
    s.count_written(r)
}

/// The checked destination of a `sendto` (`None`: none given).
pub(super) fn sendto_dest(
    s: &mut Service,
    mem: &GuestMemory,
    a: &[u64; 6],
) -> Result<Option<HostAddr>, Fail> {
    // A null address or a zero length names no destination (as Linux
    // takes them for unix sockets; UDP would say EINVAL).
    if a[4] == 0 || a[5] == 0 {
        return Ok(None);
    }
    let fd = s.vfd(a[0])?;
    send_dest(s, "sendto", fd, mem, a[4], a[5])
}

/// The destination of a send on `fd`, checked: on a stream or seqpacket
/// socket Linux never uses one (a unix stream socket says `EISCONN`, or
/// `EOPNOTSUPP` unconnected; TCP and unix seqpacket ignore it), so it is
/// dropped unread, as there; on a datagram socket it is checked.
fn send_dest(
    s: &mut Service,
    call: &str,
    fd: RawFd,
    mem: &GuestMemory,
    at: u64,
    len: u64,
) -> Result<Option<HostAddr>, Fail> {
    match (sock_int(fd, libc::SO_TYPE), sock_int(fd, libc::SO_DOMAIN)) {
        (Some(libc::SOCK_STREAM), Some(libc::AF_UNIX)) => {
            let mut addr = [0u8; ADDR_MAX];
            let mut alen = ADDR_MAX as libc::socklen_t;
            // SAFETY: `addr` holds `alen` bytes.
            let connected = unsafe { libc::getpeername(fd, addr.as_mut_ptr().cast(), &mut alen) } == 0;
            Err(Fail::Errno(if connected { libc::EISCONN } else { libc::EOPNOTSUPP }))
        }
        (Some(libc::SOCK_STREAM | libc::SOCK_SEQPACKET), _) => Ok(None),
        // Not a socket: Linux's answer before it looks at the address.
        (None, _) => Err(Fail::Errno(libc::ENOTSOCK)),
        _ => s.destination(call, mem, at, len).map(Some),
    }
}

/// An `int` socket option of host socket `fd`.
fn sock_int(fd: RawFd, name: i32) -> Option<i32> {
    let mut v = 0i32;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v` holds `len` bytes.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, name, (&mut v as *mut i32).cast(), &mut len) };
    (r == 0).then_some(v)
}

/// `sendto` on host descriptor `fd` to an already checked destination,
/// without write limits (the service lock may be dropped).
pub(super) fn sendto_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6], dest: Option<&HostAddr>) -> Sys {
    send_on(fd, mem, a, a[2], dest)
}

fn check_send_flags(flags: i32) -> Result<(), Fail> {
    if flags & !SEND_FLAGS != 0 {
        return Err(Fail::Errno(libc::EOPNOTSUPP));
    }
    Ok(())
}

/// `sendto` of the first `len` of the `a[2]` bytes at `a[1]`.
fn send_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6], len: u64, dest: Option<&HostAddr>) -> Sys {
    let flags = a[3] as i32;
    check_send_flags(flags)?;
    match super::io::buffer(mem, a[1], a[2], false)? {
        super::io::Buf::One(p) => {
            let (to, tolen) = dest.map_or((std::ptr::null(), 0), |d| (d.ptr(), d.len()));
            // SAFETY: [p, p+a[2]) is checked readable program memory; len <= a[2];
            // `to` is null or an address the monitor built, live across the call.
            host(unsafe { libc::sendto(fd, p.cast(), len as usize, flags | libc::MSG_NOSIGNAL, to, tolen) }
                as i64)
        }
        // Several pieces: sendmsg over them (at most IOV_MAX: short is legal).
        super::io::Buf::Many(pc) => {
            sendmsg_host(fd, &mut pc.iovecs(len as usize, IOV_MAX as usize), dest, None, flags)
        }
    }
}

pub(super) fn recvfrom(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let bound = s.bound();
    let (n, peer) = recvfrom_on(s.vfd(a[0])?, mem, a, &bound, s.wants_addr())?;
    s.note_peer(peer);
    Ok(n)
}

/// `recvfrom(fd, buf, len, flags, src, srclen)` on host descriptor `fd`
/// (the service lock may be dropped); with the peer's address for the
/// trace when `peer` (and the program asked for it).
pub(super) fn recvfrom_on(
    fd: RawFd,
    mem: &GuestMemory,
    a: &[u64; 6],
    bound: &Bound,
    peer: bool,
) -> Result<(i64, Option<String>), Fail> {
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
    let mut peer_text = None;
    if let Some(want) = want {
        let mut alen = alen as usize;
        bound.note_sender(&addr, alen);
        bound.program_name(&mut addr, &mut alen);
        if peer {
            peer_text = Addr::parse(&addr[..alen.min(ADDR_MAX)]).ok().map(|p| p.describe());
        }
        addr_out(mem, a[4], a[5], &addr, alen, want)?;
    }
    Ok((n, peer_text))
}

/// The program's `struct msghdr`, copied once.
struct MsgHdr {
    name: u64,
    namelen: u32,
    iov: u64,
    iovlen: u64,
    control: u64,
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
            control: u64_at(32),
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

/// `sendmsg(fd, msg, flags)` with the write limits; a destination
/// (`msg_name`) is checked against the network rules first.
pub(super) fn sendmsg(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.vfd(a[0])?;
    let (m, mut iov) = sendmsg_args(mem, a[1], a[2] as i32)?;
    let mut control = s.send_control(fd, mem, &m)?;
    let dest = sendmsg_dest(s, fd, mem, &m)?;
    let total = iov.iter().map(|v| v.iov_len as u64).sum();
    let len = s.write_allowance("sendmsg", fd, total, None)?;
    clip_iovecs(&mut iov, len);
    let r = sendmsg_host(fd, &mut iov, dest.as_ref(), control.as_mut(), a[2] as i32);
    s.count_written(r)
}

/// What a `sendmsg` sends besides data, checked under the lock from one
/// copy of the program's `msghdr`: the destination (`None`: none given)
/// and the control data rebuilt for the host.
#[derive(Debug)]
pub struct SendPrep {
    /// The `msghdr` (for `sendmmsg`: of this message).
    at: u64,
    dest: Option<HostAddr>,
    control: Option<SendControl>,
}

/// Prepares the `sendmsg` of the program's `msghdr` at `a[1]` on `a[0]`.
pub(super) fn sendmsg_prepare(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Result<SendPrep, Fail> {
    let fd = s.vfd(a[0])?;
    check_send_flags(a[2] as i32)?;
    let m = MsgHdr::read(mem, a[1])?;
    let control = s.send_control(fd, mem, &m)?;
    let dest = sendmsg_dest(s, fd, mem, &m)?;
    Ok(SendPrep { at: a[1], dest, control })
}

fn sendmsg_dest(s: &mut Service, fd: RawFd, mem: &GuestMemory, m: &MsgHdr) -> Result<Option<HostAddr>, Fail> {
    if m.name == 0 || m.namelen == 0 {
        return Ok(None);
    }
    send_dest(s, "sendmsg", fd, mem, m.name, u64::from(m.namelen))
}

/// `sendmsg` on host descriptor `fd` with what [`sendmsg_prepare`] checked
/// (the `msg_name` and `msg_control` read now are ignored), without write
/// limits (the service lock may be dropped).
pub(super) fn sendmsg_on(fd: RawFd, mem: &GuestMemory, flags: i32, prep: &mut SendPrep) -> Sys {
    let (_, mut iov) = sendmsg_args(mem, prep.at, flags)?;
    sendmsg_host(fd, &mut iov, prep.dest.as_ref(), prep.control.as_mut(), flags)
}

/// The checked arguments of a `sendmsg`: its header and iovecs.
fn sendmsg_args(mem: &GuestMemory, at: u64, flags: i32) -> Result<(MsgHdr, Vec<libc::iovec>), Fail> {
    check_send_flags(flags)?;
    let m = MsgHdr::read(mem, at)?;
    let iov = m.iovecs(mem, false)?;
    Ok((m, iov))
}

fn sendmsg_host(
    fd: RawFd,
    iov: &mut [libc::iovec],
    dest: Option<&HostAddr>,
    control: Option<&mut SendControl>,
    flags: i32,
) -> Sys {
    let mut h = host_msghdr(iov, None);
    if let Some(d) = dest {
        h.msg_name = d.ptr() as *mut libc::c_void;
        h.msg_namelen = d.len();
    }
    if let Some(c) = control {
        (h.msg_control, h.msg_controllen) = c.host();
    }
    // SAFETY: `h` names only `iov`, whose entries point into checked
    // readable program memory, an address and control data the monitor
    // built (read only; the descriptors it names held open); all live
    // across the call.
    host(unsafe { libc::sendmsg(fd, &h, flags | libc::MSG_NOSIGNAL) } as i64)
}

pub(super) fn recvmsg(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let bound = s.bound();
    let r = recvmsg_on(s.vfd(a[0])?, mem, a, &bound, s.wants_addr())?;
    s.note_peer(r.peer.clone());
    received(s, mem, r)
}

/// A message the host delivered into program memory, whose control data
/// (descriptors: the monitor's until then), `msg_controllen` and
/// `msg_flags` are yet to be given to the program, under the lock
/// ([`received`]).
#[derive(Debug)]
pub struct Received {
    /// The byte count.
    n: i64,
    /// The program's `msghdr`.
    at: u64,
    /// `recvmmsg`: write the count to the `mmsghdr`'s `msg_len` too.
    mmsg: bool,
    /// Where the program wants control data, and how much room it has.
    control_at: u64,
    control_room: u64,
    control: Option<RecvControl>,
    /// `msg_flags` as the host set them.
    flags: i32,
    /// The peer's address for the trace (only when a tracer wants it).
    pub(super) peer: Option<String>,
}

/// `recvmsg(fd, msg, flags)` on host descriptor `fd` (the service lock may
/// be dropped). Writes back the address when `msg_name` is set and
/// `msg_namelen`; the rest is [`received`]'s.
pub(super) fn recvmsg_on(
    fd: RawFd,
    mem: &GuestMemory,
    a: &[u64; 6],
    bound: &Bound,
    peer: bool,
) -> Result<Received, Fail> {
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
    // The monitor's own control buffer, as long as the program's (at most
    // RECV_MAX): the host truncates it exactly as it would the program's.
    let mut control = vec![0u8; m.controllen.min(cmsg::RECV_MAX as u64) as usize];
    if !control.is_empty() {
        h.msg_control = control.as_mut_ptr().cast();
        h.msg_controllen = control.len();
    }
    // Received descriptors are always the monitor's O_CLOEXEC ones.
    let host_flags = flags | libc::MSG_CMSG_CLOEXEC;
    // SAFETY: `h` names `iov` (checked writable program memory), `addr`
    // and `control` (the monitor's), all live across the call.
    let n = host(unsafe { libc::recvmsg(fd, &mut h, host_flags) } as i64)?;
    // Every descriptor delivered is owned from here on (closed on any
    // early return below).
    let rc = (!control.is_empty())
        .then(|| RecvControl::take(&control, h.msg_controllen, flags & libc::MSG_CMSG_CLOEXEC != 0));
    let mut alen = if m.name != 0 { h.msg_namelen as usize } else { 0 };
    let mut peer_text = None;
    if m.name != 0 {
        bound.note_sender(&addr, alen);
        bound.program_name(&mut addr, &mut alen);
        if peer {
            peer_text = Addr::parse(&addr[..alen.min(ADDR_MAX)]).ok().map(|p| p.describe());
        }
        let keep = alen.min(m.namelen as usize).min(ADDR_MAX);
        mem.write(m.name, &addr[..keep])?;
    }
    mem.write(a[1] + 8, &(alen as u32).to_le_bytes())?;
    Ok(Received {
        n,
        at: a[1],
        mmsg: false,
        control_at: m.control,
        control_room: m.controllen,
        control: rc,
        // The host reports the MSG_CMSG_CLOEXEC the monitor always asks
        // for; the program sees it only when it asked.
        flags: (h.msg_flags & !libc::MSG_CMSG_CLOEXEC) | (flags & libc::MSG_CMSG_CLOEXEC),
        peer: peer_text,
    })
}

/// Finishes a [`Received`] message under the lock: its descriptors enter
/// the program's table, the control data (the program's numbers) goes to
/// `msg_control`, with `msg_controllen` and `msg_flags` (`MSG_CTRUNC` when
/// the host truncated or the table filled up).
pub(super) fn received(s: &mut Service, mem: &GuestMemory, r: Received) -> Sys {
    let (bytes, full) = match r.control {
        Some(c) => c.install(&mut s.fds),
        None => (Vec::new(), false),
    };
    // Never longer than the host wrote, which fit the program's room.
    let len = (bytes.len() as u64).min(r.control_room);
    if len > 0 {
        mem.write(r.control_at, &bytes[..len as usize])?;
    }
    mem.write(r.at + 40, &len.to_le_bytes())?;
    let mflags = if full { r.flags | libc::MSG_CTRUNC } else { r.flags };
    mem.write(r.at + 48, &mflags.to_le_bytes())?;
    if r.mmsg {
        mem.write(r.at + 56, &(r.n as u32).to_le_bytes())?;
    }
    Ok(r.n)
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
    let mut alen = alen as usize;
    s.net.bound.program_name(&mut addr, &mut alen);
    addr_out(mem, a[1], a[2], &addr, alen, want)?;
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

impl Service {
    /// The program's address at `at` (`len` bytes), copied once, checked
    /// against the network rules for `call` and rebuilt for the host; a
    /// refusal is noted (`EACCES`).
    pub(super) fn destination(
        &mut self,
        call: &str,
        mem: &GuestMemory,
        at: u64,
        len: u64,
    ) -> Result<HostAddr, Fail> {
        let addr = Addr::read(mem, at, len)?;
        self.note_addr(&addr);
        let abs = self.unix_abs(&addr)?;
        match self.net.destination(call, &addr, abs.as_deref(), &self.policy)? {
            Checked::Host(h) => Ok(h),
            Checked::Refused(rule) => Err(self.deny_net(rule, addr.describe())),
        }
    }

    /// Notes the address for the trace, when a tracer wants it.
    fn note_addr(&mut self, addr: &Addr) {
        if self.record_paths && self.note.addr.is_none() {
            self.note.addr = Some(addr.describe());
        }
    }

    /// A unix path address made absolute against the working directory.
    fn unix_abs(&self, addr: &Addr) -> Result<Option<Vec<u8>>, Fail> {
        match addr {
            Addr::UnixPath(p) => Ok(Some(super::fs::normalize(&self.absolute_of(AT_FDCWD_ARG, p)?))),
            _ => Ok(None),
        }
    }

    /// The host descriptor of `vfd` when it is a socket (`ENOTSOCK`
    /// otherwise, before any address is looked at, as Linux).
    pub(super) fn socket_fd(&self, vfd: u64) -> Result<RawFd, Fail> {
        let fd = self.vfd(vfd)?;
        let st = super::fs::fstat(fd).map_err(|_| Fail::Errno(libc::EBADF))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(Fail::Errno(libc::ENOTSOCK));
        }
        Ok(fd)
    }

    /// The control data of a `sendmsg` on host socket `fd`, checked and
    /// rebuilt for the host ([`cmsg::send_control`]).
    fn send_control(&self, fd: RawFd, mem: &GuestMemory, m: &MsgHdr) -> Result<Option<SendControl>, Fail> {
        cmsg::send_control(&self.fds, &cmsg::Sender { pid: self.pid }, fd, mem, m.control, m.controllen)
    }

    /// Notes a peer's address the host reported (`recvfrom`, `recvmsg`)
    /// for the trace, when a tracer wants it.
    pub(super) fn note_peer(&mut self, peer: Option<String>) {
        if let Some(p) = peer {
            if self.record_paths && self.note.addr.is_none() {
                self.note.addr = Some(p);
            }
        }
    }

    /// Whether peer addresses are wanted for the trace.
    pub(super) fn wants_addr(&self) -> bool {
        self.record_paths
    }

    /// What the run has bound (to show the program its own unix names).
    pub(super) fn bound(&self) -> std::sync::Arc<Bound> {
        self.net.bound.clone()
    }
}

/// `AT_FDCWD` as a call argument.
const AT_FDCWD_ARG: u64 = libc::AT_FDCWD as i64 as u64;

/// `socket(domain, type, protocol)`: `AF_UNIX`, `AF_INET`, `AF_INET6`;
/// stream, datagram, seqpacket (`SOCK_NONBLOCK`, `SOCK_CLOEXEC`). Raw and
/// packet sockets, other families and protocols other than TCP and UDP
/// for IP are refused with what an unprivileged program gets natively.
pub(super) fn socket(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let (domain, ty, protocol) = (a[0] as i32, a[1] as i32, a[2] as i32);
    let flags = ty & (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let kind = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    match domain {
        libc::AF_UNIX => {}
        libc::AF_INET | libc::AF_INET6 => match (kind, protocol) {
            (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) | (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => {}
            (libc::SOCK_RAW | SOCK_PACKET, _) => return Err(Fail::Errno(libc::EPERM)),
            (libc::SOCK_STREAM | libc::SOCK_DGRAM, _) => return Err(Fail::Errno(libc::EPROTONOSUPPORT)),
            (k, _) if !(0..SOCK_MAX).contains(&k) => return Err(Fail::Errno(libc::EINVAL)),
            _ => return Err(Fail::Errno(libc::ESOCKTNOSUPPORT)),
        },
        _ => return Err(Fail::Errno(libc::EAFNOSUPPORT)),
    }
    // SAFETY: touches no memory.
    let r = host(unsafe {
        libc::socket(domain, kind | (flags & libc::SOCK_NONBLOCK) | libc::SOCK_CLOEXEC, protocol)
    } as i64)?;
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
    let e = Entry { fd: fd.into(), cloexec: flags & libc::SOCK_CLOEXEC != 0, path: None, change: None };
    s.fds.insert(e, 0).map(|v| v as i64).ok_or(Fail::Errno(libc::EMFILE))
}

/// `bind(fd, addr, len)` under the listen rules and, for unix paths, the
/// path trees (docs/networking.md).
pub(super) fn bind(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.socket_fd(a[0])?;
    let addr = Addr::read(mem, a[1], a[2])?;
    s.note_addr(&addr);
    let abs = s.unix_abs(&addr)?;
    match net::bind(&s.net, &s.policy, fd, &addr, abs.as_deref())? {
        None => Ok(0),
        Some(rule) => Err(s.deny_net(rule, addr.describe())),
    }
}

/// `listen(fd, backlog)`: on an address the listen rules allow.
pub(super) fn listen(s: &mut Service, _mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.socket_fd(a[0])?;
    if let Some((rule, addr)) = net::listen_allowed(&s.net, fd)? {
        return Err(s.deny_net(rule, addr));
    }
    // SAFETY: touches no memory.
    host(unsafe { libc::listen(fd, a[1] as i32) } as i64)
}

/// `connect(fd, addr, len)` to an address the connect rules allow (stream
/// and datagram sockets alike).
pub(super) fn connect(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.socket_fd(a[0])?;
    let dest = s.destination("connect", mem, a[1], a[2])?;
    connect_on(fd, &dest)
}

/// `connect` of host socket `fd` to a checked address (the service lock
/// may be dropped: it can block).
pub(super) fn connect_on(fd: RawFd, dest: &HostAddr) -> Sys {
    // SAFETY: `dest` is an address the monitor built, live across the call.
    host(unsafe { libc::connect(fd, dest.ptr(), dest.len()) } as i64)
}

/// The flags `accept4` takes.
const ACCEPT_FLAGS: i32 = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;

pub(super) fn accept(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.socket_fd(a[0])?;
    let got = accept_on(fd, mem, a, 0)?;
    accepted(s, mem, a, got)
}

pub(super) fn accept4(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.socket_fd(a[0])?;
    let got = accept_on(fd, mem, a, a[3] as i32)?;
    accepted(s, mem, a, got)
}

/// A connection the host accepted, not yet in the program's table.
#[derive(Debug)]
pub struct Accepted {
    fd: OwnedFd,
    cloexec: bool,
    addr: [u8; ADDR_MAX],
    alen: usize,
    want: Option<usize>,
}

/// The host `accept4` on `fd` (the service lock may be dropped: it
/// blocks). The program's address length is read first, so a bad one
/// loses no connection.
pub(super) fn accept_on(fd: RawFd, mem: &GuestMemory, a: &[u64; 6], flags: i32) -> Result<Accepted, Fail> {
    if flags & !ACCEPT_FLAGS != 0 {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let want = if a[1] != 0 { Some(addr_len_in(mem, a[2])?) } else { None };
    let mut addr = [0u8; ADDR_MAX];
    let mut alen = ADDR_MAX as libc::socklen_t;
    // SAFETY: `addr` holds `alen` bytes.
    let r = unsafe {
        libc::accept4(
            fd,
            addr.as_mut_ptr().cast(),
            &mut alen,
            (flags & libc::SOCK_NONBLOCK) | libc::SOCK_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(Fail::Errno(errno()));
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(r) };
    Ok(Accepted { fd, cloexec: flags & libc::SOCK_CLOEXEC != 0, addr, alen: alen as usize, want })
}

/// Puts an accepted connection in the program's table and reports its
/// peer's address.
pub(super) fn accepted(s: &mut Service, mem: &GuestMemory, a: &[u64; 6], mut got: Accepted) -> Sys {
    s.net.bound.program_name(&mut got.addr, &mut got.alen);
    if let Ok(peer) = Addr::parse(&got.addr[..got.alen.min(ADDR_MAX)]) {
        s.note_addr(&peer);
    }
    let e = Entry { fd: got.fd.into(), cloexec: got.cloexec, path: None, change: None };
    let v = s.fds.insert(e, 0).ok_or(Fail::Errno(libc::EMFILE))?;
    if let Some(want) = got.want {
        if let Err(e) = addr_out(mem, a[1], a[2], &got.addr, got.alen, want) {
            s.fds.remove(v);
            return Err(e);
        }
    }
    Ok(v as i64)
}

/// Whether the program may get (`set` false) or set socket option
/// `(level, name)`: the common options of stream and datagram sockets.
/// Anything else is `ENOPROTOOPT`, never passed through: options that
/// reach past the socket (`SO_BINDTODEVICE`, `SO_ATTACH_FILTER`,
/// `IP_HDRINCL`, `TCP_ULP`, `TCP_REPAIR`, `SO_MARK`, ...) or report host
/// identities (`SO_PEERCRED`) are not served.
fn option_allowed(level: i32, name: i32, set: bool) -> bool {
    match level {
        libc::SOL_SOCKET => match name {
            libc::SO_REUSEADDR
            | libc::SO_REUSEPORT
            | libc::SO_KEEPALIVE
            | libc::SO_RCVBUF
            | libc::SO_SNDBUF
            | libc::SO_LINGER
            | libc::SO_BROADCAST
            | libc::SO_OOBINLINE
            | libc::SO_RCVLOWAT
            | libc::SO_RCVTIMEO
            | libc::SO_SNDTIMEO
            | SO_RCVTIMEO_NEW
            | SO_SNDTIMEO_NEW
            | libc::SO_PRIORITY => true,
            libc::SO_ERROR | libc::SO_TYPE | libc::SO_DOMAIN | libc::SO_PROTOCOL | libc::SO_ACCEPTCONN => {
                !set
            }
            _ => false,
        },
        libc::IPPROTO_TCP => {
            matches!(
                name,
                libc::TCP_NODELAY
                    | libc::TCP_MAXSEG
                    | libc::TCP_CORK
                    | libc::TCP_KEEPIDLE
                    | libc::TCP_KEEPINTVL
                    | libc::TCP_KEEPCNT
                    | libc::TCP_SYNCNT
                    | libc::TCP_LINGER2
                    | libc::TCP_DEFER_ACCEPT
                    | libc::TCP_QUICKACK
                    | libc::TCP_USER_TIMEOUT
                    | libc::TCP_NOTSENT_LOWAT
            ) || (name == libc::TCP_INFO && !set)
        }
        libc::IPPROTO_IP => {
            // IP_RECVERR: glibc's resolver sets it on its DNS socket and
            // gives up when it fails; its only other effect is the error
            // queue, which only MSG_ERRQUEUE (not served) reads.
            matches!(name, libc::IP_TOS | libc::IP_TTL | libc::IP_MTU_DISCOVER | libc::IP_RECVERR)
                || (name == libc::IP_MTU && !set)
        }
        libc::IPPROTO_IPV6 => {
            matches!(
                name,
                libc::IPV6_V6ONLY
                    | libc::IPV6_UNICAST_HOPS
                    | libc::IPV6_TCLASS
                    | libc::IPV6_MTU_DISCOVER
                    | libc::IPV6_RECVERR
            )
        }
        _ => false,
    }
}

/// `SO_RCVTIMEO_NEW`, `SO_SNDTIMEO_NEW` (the same layout as the old ones on x86-64).
const SO_RCVTIMEO_NEW: i32 = 66;
const SO_SNDTIMEO_NEW: i32 = 67;
/// The longest option value served (`struct tcp_info` is the largest).
const OPT_MAX: usize = 512;

/// `setsockopt(fd, level, name, value, len)` for the options of
/// [`option_allowed`]. `SO_RCVTIMEO`/`SO_SNDTIMEO` are set on the host
/// socket, which every blocking call the monitor makes on the program's
/// behalf uses, so they are honoured there (docs/networking.md).
pub(super) fn setsockopt(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.socket_fd(a[0])?;
    let (level, name) = (a[1] as i32, a[2] as i32);
    if !option_allowed(level, name, true) {
        return Err(Fail::Errno(libc::ENOPROTOOPT));
    }
    let Ok(len) = usize::try_from(a[4] as u32 as i32) else { return Err(Fail::Errno(libc::EINVAL)) };
    let len = len.min(OPT_MAX);
    let mut v = [0u8; OPT_MAX];
    mem.read_into(a[3], &mut v[..len])?;
    // SAFETY: `v` holds `len` bytes copied from the program.
    host(unsafe { libc::setsockopt(fd, level, name, v.as_ptr().cast(), len as libc::socklen_t) } as i64)
}

/// `getsockopt(fd, level, name, value, len)` for the options of
/// [`option_allowed`], through a buffer of the monitor's.
pub(super) fn getsockopt(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let fd = s.socket_fd(a[0])?;
    let (level, name) = (a[1] as i32, a[2] as i32);
    if !option_allowed(level, name, false) {
        return Err(Fail::Errno(libc::ENOPROTOOPT));
    }
    let want = addr_len_in(mem, a[4])?.min(OPT_MAX);
    let mut v = [0u8; OPT_MAX];
    let mut len = want as libc::socklen_t;
    // SAFETY: `v` holds `len` bytes.
    host(unsafe { libc::getsockopt(fd, level, name, v.as_mut_ptr().cast(), &mut len) } as i64)?;
    let len = (len as usize).min(want);
    mem.write(a[3], &v[..len])?;
    mem.write(a[4], &(len as u32).to_le_bytes())?;
    Ok(0)
}

/// `struct mmsghdr`: a `msghdr` and the count of one message (64 bytes).
const MMSGHDR_LEN: u64 = 64;
/// Most messages one `sendmmsg`/`recvmmsg` handles (`UIO_MAXIOV`, as Linux).
const MMSG_MAX: u64 = 1024;

/// `sendmmsg(fd, msgvec, vlen, flags)`: each message as `sendmsg` (its
/// destination and control data checked), until one fails; the count
/// sent, or the first error when none was.
pub(super) fn sendmmsg(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    let vlen = a[2].min(MMSG_MAX);
    let mut sent = 0u64;
    for i in 0..vlen {
        let at = a[1].checked_add(i * MMSGHDR_LEN).ok_or(Fail::Errno(libc::EFAULT))?;
        let r = sendmsg(s, mem, &[a[0], at, a[3], 0, 0, 0]);
        match r {
            Ok(n) => {
                mem.write(at + 56, &(n as u32).to_le_bytes())?;
                sent += 1;
            }
            Err(e) if sent == 0 => return Err(e),
            Err(Fail::Errno(_)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(sent as i64)
}

/// Prepares a `sendmmsg` to run without the lock (no write limits): each
/// message's destination and control data checked now, from one copy of
/// its header; stops at the first message that fails (its error when it
/// is the first).
pub(super) fn sendmmsg_prepare(
    s: &mut Service,
    mem: &GuestMemory,
    a: &[u64; 6],
) -> Result<Vec<SendPrep>, Fail> {
    let vlen = a[2].min(MMSG_MAX);
    let mut preps = Vec::new();
    for i in 0..vlen {
        let at = a[1].checked_add(i * MMSGHDR_LEN).ok_or(Fail::Errno(libc::EFAULT))?;
        match sendmsg_prepare(s, mem, &[a[0], at, a[3], 0, 0, 0]) {
            Ok(p) => preps.push(p),
            Err(e) if i == 0 => return Err(e),
            Err(Fail::Errno(_)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(preps)
}

/// `sendmmsg` on host descriptor `fd` of what [`sendmmsg_prepare`] checked
/// (the service lock may be dropped).
pub(super) fn sendmmsg_on(fd: RawFd, mem: &GuestMemory, flags: i32, preps: &mut [SendPrep]) -> Sys {
    let mut sent = 0u64;
    for p in preps.iter_mut() {
        match sendmsg_on(fd, mem, flags, p) {
            Ok(n) => {
                mem.write(p.at + 56, &(n as u32).to_le_bytes())?;
                sent += 1;
            }
            Err(e) if sent == 0 => return Err(e),
            Err(Fail::Errno(_)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(sent as i64)
}

/// `recvmmsg(fd, msgvec, vlen, flags, timeout)`: each message as
/// `recvmsg`; after the first, the rest without waiting (`MSG_WAITFORONE`
/// behaviour; the timeout is not served: `EINVAL` when given).
pub(super) fn recvmmsg(s: &mut Service, mem: &GuestMemory, a: &[u64; 6]) -> Sys {
    if a[4] != 0 {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let fd = s.vfd(a[0])?;
    let bound = s.bound();
    let got = recvmmsg_on(fd, mem, a, &bound, s.wants_addr())?;
    let n = got.len() as i64;
    for r in got {
        s.note_peer(r.peer.clone());
        received(s, mem, r)?;
    }
    Ok(n)
}

/// The receives of a `recvmmsg` on host descriptor `fd` (the service lock
/// may be dropped): at least one message, or the error of the first. Each
/// is finished by [`received`] under the lock.
pub(super) fn recvmmsg_on(
    fd: RawFd,
    mem: &GuestMemory,
    a: &[u64; 6],
    bound: &Bound,
    peer: bool,
) -> Result<Vec<Received>, Fail> {
    let flags = a[3] as i32 & !MSG_WAITFORONE;
    let vlen = a[2].min(MMSG_MAX);
    let mut got = Vec::new();
    for i in 0..vlen {
        let at = a[1].checked_add(i * MMSGHDR_LEN).ok_or(Fail::Errno(libc::EFAULT))?;
        let f = if got.is_empty() { flags } else { flags | libc::MSG_DONTWAIT };
        match recvmsg_on(fd, mem, &[a[0], at, f as u64, 0, 0, 0], bound, peer && got.is_empty()) {
            Ok(mut r) => {
                r.mmsg = true;
                got.push(r);
            }
            Err(e) if got.is_empty() => return Err(e),
            Err(Fail::Errno(_)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// `MSG_WAITFORONE` (`recvmmsg` only).
const MSG_WAITFORONE: i32 = 0x10000;

/// `SOCK_PACKET` (obsolete packet sockets; refused like raw ones).
const SOCK_PACKET: i32 = 10;
/// Socket types are below this (Linux's `SOCK_MAX`): `EINVAL` past it.
const SOCK_MAX: i32 = 11;

/// `fcntl(v, NET_GRANT_CMD)` (process backend; docs/networking.md, "The
/// direct data plane"): the libos asks, right after an `accept`/`accept4`/
/// `connect` returned `v`, for the host socket behind `v`, to make its data
/// calls natively. Sent (one [`cabin_abi::boot::NetGrant`] with the socket in
/// `SCM_RIGHTS` on the file channel, answer 0) only when the run lets the
/// program use sockets natively ([`Service::set_native_sockets`]: no trace,
/// no limits, the data calls allowed plainly), the domain has a channel,
/// `v` fits the range and is a connected TCP socket (IPv4 or IPv6): its
/// peer was checked at `connect`/`listen`, and nothing the filter lets the
/// libos do natively on it names an address. Anything else: `EINVAL`,
/// `EOPNOTSUPP` or `ENOTCONN`, nothing sent, and the libos keeps
/// forwarding.
pub(super) fn net_grant(s: &mut Service, mem: &GuestMemory, v: u64) -> Sys {
    use cabin_abi::boot::{NetGrant, NET_NATIVE_COUNT, NET_NATIVE_MAGIC};
    let Some(w) = mem.file_window().filter(|_| s.native_sockets) else {
        return Err(Fail::Errno(libc::EINVAL));
    };
    let file = s.fds.hold(v).ok_or(Fail::Errno(libc::EBADF))?;
    if v >= NET_NATIVE_COUNT {
        return Err(Fail::Errno(libc::EINVAL));
    }
    let fd = file.as_raw_fd();
    let opt = |level: i32, name: i32| -> Option<i32> {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: writes one int and its length into locals.
        let r = unsafe { libc::getsockopt(fd, level, name, (&raw mut v).cast(), &mut len) };
        (r == 0).then_some(v)
    };
    let domain = opt(libc::SOL_SOCKET, libc::SO_DOMAIN).ok_or(Fail::Errno(libc::ENOTSOCK))?;
    let tcp = matches!(domain, libc::AF_INET | libc::AF_INET6)
        && opt(libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && opt(libc::SOL_SOCKET, libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP);
    if !tcp {
        return Err(Fail::Errno(libc::EOPNOTSUPP));
    }
    // Connected: a peer (a connect still in progress has none yet).
    // SAFETY: writes a sockaddr_storage and its length into locals.
    let connected = unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        libc::getpeername(fd, (&raw mut ss).cast(), &mut len) == 0
    };
    if !connected {
        return Err(Fail::Errno(libc::ENOTCONN));
    }
    let g = NetGrant { vfd: v, magic: NET_NATIVE_MAGIC };
    // SAFETY: NetGrant is plain `repr(C)` data of two u64s, no padding.
    let bytes = unsafe { std::slice::from_raw_parts((&raw const g).cast::<u8>(), size_of::<NetGrant>()) };
    if !super::filemap::send_fd(w, bytes, fd) {
        return Err(Fail::Errno(libc::ENOMEM));
    }
    Ok(0)
}
