//! Control messages of `sendmsg`/`recvmsg` (`msg_control`): `SCM_RIGHTS`
//! (descriptors) and, on sends, `SCM_CREDENTIALS` (docs/networking.md,
//! "Control messages").
//!
//! A send's control data is copied out of program memory once, checked as
//! Linux checks it (`__scm_send`: each header's length at least a header
//! and within the buffer, `EINVAL`; at most [`SCM_MAX_FD`] descriptors in
//! all, `EINVAL`; a number that is not one of the program's descriptors,
//! `EBADF`; credentials other than the program's own, `EPERM`; a buffer
//! past the host's `optmem_max`, `ENOBUFS`; one that is not readable,
//! `EFAULT`) and rebuilt by the monitor with
//! the host descriptors behind the program's numbers ([`SendControl`],
//! which holds them open until the send is done). The host kernel never
//! sees a number the program wrote.
//!
//! A receive gives the host a control buffer of the monitor's, as long as
//! the program's (at most [`RECV_MAX`]: room for every descriptor one
//! message can carry), so the host truncates (`MSG_CTRUNC`, the extra
//! descriptors closed) exactly as it would natively. The descriptors it
//! delivers are the monitor's at once ([`RecvControl`]: closed if the
//! program never gets them); they enter the program's table under the
//! service lock ([`RecvControl::install`]), each at the lowest free number
//! as Linux does, and the program sees its own numbers. A full table ends
//! the installing as on Linux: the descriptors that fit are delivered, the
//! rest closed, `MSG_CTRUNC` set.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};

use super::fdtable::{Entry, FdTable};
use super::Fail;
use crate::memory::GuestMemory;

/// `sizeof(struct cmsghdr)` on x86-64 (`cmsg_len` is a `size_t`).
const HDR: usize = 16;
/// `sizeof(struct ucred)`: pid, uid, gid.
const UCRED_LEN: usize = 12;
/// Most descriptors one message carries (Linux's `SCM_MAX_FD`).
pub(super) const SCM_MAX_FD: usize = 253;
/// The longest control buffer the host gets for a receive: one message
/// carries at most [`SCM_MAX_FD`] descriptors (1032 bytes) and one set of
/// credentials; more room than that is never used.
pub(super) const RECV_MAX: usize = 4096;
/// The longest send control buffer copied, whatever `optmem_max` says.
const SEND_MAX: usize = 1 << 20;

/// `CMSG_ALIGN`.
fn align(n: usize) -> usize {
    (n + 7) & !7
}

/// The host's `net.core.optmem_max` (a longer send control buffer is
/// `ENOBUFS` natively), read once.
fn optmem_max() -> usize {
    static M: OnceLock<usize> = OnceLock::new();
    *M.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/optmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(20480)
    })
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(w)
}

fn i32_at(b: &[u8], o: usize) -> i32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[o..o + 4]);
    i32::from_le_bytes(w)
}

fn push_hdr(out: &mut Vec<u8>, len: usize, level: i32, ty: i32) {
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(&level.to_le_bytes());
    out.extend_from_slice(&ty.to_le_bytes());
}

fn pad(out: &mut Vec<u8>) {
    out.resize(align(out.len()), 0);
}

/// A send's control data rebuilt for the host: host descriptor numbers,
/// the descriptors held open until the send is done.
#[derive(Debug)]
pub struct SendControl {
    bytes: Vec<u8>,
    _hold: Vec<Arc<OwnedFd>>,
}

impl SendControl {
    /// The buffer and its length for a host `msghdr` (null and 0 when no
    /// control message is left: only ignored ones were given).
    pub(super) fn host(&mut self) -> (*mut libc::c_void, usize) {
        if self.bytes.is_empty() {
            (std::ptr::null_mut(), 0)
        } else {
            (self.bytes.as_mut_ptr().cast(), self.bytes.len())
        }
    }
}

/// Who the sending program is, for `SCM_CREDENTIALS`: its pid as it sees
/// it (the host's is put in its place) and the uids and gids it has.
pub(super) struct Sender {
    pub(super) pid: u32,
}

/// The control data of a send on host socket `sock`: `len` bytes at `at`
/// in program memory, copied once, checked and rebuilt (see the module
/// docs). `None`: nothing for the host (no buffer, or one shorter than a
/// header, which Linux reads as no control message).
pub(super) fn send_control(
    fds: &FdTable,
    who: &Sender,
    sock: RawFd,
    mem: &GuestMemory,
    at: u64,
    len: u64,
) -> Result<Option<SendControl>, Fail> {
    if len == 0 {
        return Ok(None);
    }
    if len > i32::MAX as u64 || len as usize > optmem_max().min(SEND_MAX) {
        return Err(Fail::Errno(libc::ENOBUFS));
    }
    let domain = sock_int(sock, libc::SO_DOMAIN).ok_or(Fail::Errno(libc::ENOTSOCK))?;
    // An unreadable control buffer is Linux's EFAULT (a null one with a
    // length is a plausible slip, not an attack on the monitor).
    let b = mem.read(at, len as usize).map_err(|_| Fail::Errno(libc::EFAULT))?;
    let unix = domain == libc::AF_UNIX;
    let stream_ip = !unix && sock_int(sock, libc::SO_TYPE) == Some(libc::SOCK_STREAM);
    let mut out = Vec::new();
    let mut hold = Vec::new();
    let mut off = 0;
    while off + HDR <= b.len() {
        let clen = u64_at(&b, off);
        let (level, ty) = (i32_at(&b, off + 8), i32_at(&b, off + 12));
        if clen < HDR as u64 || clen > (b.len() - off) as u64 {
            return Err(Fail::Errno(libc::EINVAL));
        }
        let clen = clen as usize;
        let data = &b[off + HDR..off + clen];
        match (level, ty) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) if unix => {
                let n = data.len() / 4;
                if n > 0 {
                    if hold.len() + n > SCM_MAX_FD {
                        return Err(Fail::Errno(libc::EINVAL));
                    }
                    push_hdr(&mut out, HDR + 4 * n, libc::SOL_SOCKET, libc::SCM_RIGHTS);
                    for i in 0..n {
                        let vfd = i32_at(data, 4 * i);
                        let held = u64::try_from(vfd)
                            .ok()
                            .and_then(|v| fds.hold(v))
                            .ok_or(Fail::Errno(libc::EBADF))?;
                        out.extend_from_slice(&held.as_raw_fd().to_le_bytes());
                        hold.push(held);
                    }
                    pad(&mut out);
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if unix => {
                if clen != HDR + UCRED_LEN {
                    return Err(Fail::Errno(libc::EINVAL));
                }
                let (pid, uid, gid) = (i32_at(data, 0), i32_at(data, 4) as u32, i32_at(data, 8) as u32);
                // SAFETY: these calls have no preconditions and touch no memory.
                let (hpid, ruid, euid, rgid, egid) = unsafe {
                    (libc::getpid(), libc::getuid(), libc::geteuid(), libc::getgid(), libc::getegid())
                };
                // The program's own identity only (it has no CAP_SYS_ADMIN,
                // CAP_SETUID or CAP_SETGID for this, whatever the monitor has).
                if pid as u32 != who.pid || (uid != ruid && uid != euid) || (gid != rgid && gid != egid) {
                    return Err(Fail::Errno(libc::EPERM));
                }
                push_hdr(&mut out, HDR + UCRED_LEN, libc::SOL_SOCKET, libc::SCM_CREDENTIALS);
                out.extend_from_slice(&hpid.to_le_bytes());
                out.extend_from_slice(&uid.to_le_bytes());
                out.extend_from_slice(&gid.to_le_bytes());
                pad(&mut out);
            }
            // Unix sockets ignore other levels; TCP ignores all but
            // SOL_SOCKET ones (none of which are served).
            (l, _) if l != libc::SOL_SOCKET && (unix || stream_ip) => {}
            // SOL_SOCKET messages that are not served (SO_MARK, SCM_TXTIME,
            // ...), descriptors on IP sockets, IP-level ones on UDP
            // (IP_PKTINFO, IP_TTL, ...): Linux's EINVAL for the first two,
            // not served for the last.
            _ => return Err(Fail::Errno(libc::EINVAL)),
        }
        off += align(clen);
    }
    Ok(Some(SendControl { bytes: out, _hold: hold }))
}

/// An `int` socket option of host socket `fd`.
fn sock_int(fd: RawFd, name: i32) -> Option<i32> {
    let mut v = 0i32;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v` holds `len` bytes.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, name, (&mut v as *mut i32).cast(), &mut len) };
    (r == 0).then_some(v)
}

/// What a receive got as control data: the descriptors (the monitor's
/// from the moment the host call returned) in the order the host listed
/// them, with the `SCM_RIGHTS` headers they came in.
#[derive(Debug)]
pub struct RecvControl {
    /// For each `SCM_RIGHTS` message, in order: its descriptors.
    rights: Vec<Vec<OwnedFd>>,
    /// The program's `MSG_CMSG_CLOEXEC`.
    cloexec: bool,
}

impl RecvControl {
    /// Takes ownership of every descriptor in `buf[..used]`, the control
    /// data the host kernel wrote for one `recvmsg` of this process.
    /// Anything but `SCM_RIGHTS` is dropped (nothing else can arrive: the
    /// options that produce other messages are not served).
    pub(super) fn take(buf: &[u8], used: usize, cloexec: bool) -> RecvControl {
        let b = &buf[..used.min(buf.len())];
        let mut rights = Vec::new();
        let mut off = 0;
        while off + HDR <= b.len() {
            let clen = u64_at(b, off);
            if clen < HDR as u64 || clen > (b.len() - off) as u64 {
                break;
            }
            let clen = clen as usize;
            if i32_at(b, off + 8) == libc::SOL_SOCKET && i32_at(b, off + 12) == libc::SCM_RIGHTS {
                let fds = (0..(clen - HDR) / 4)
                    .map(|i| i32_at(b, off + HDR + 4 * i))
                    .filter(|&fd| fd >= 0)
                    // SAFETY: the host kernel installed these descriptors in
                    // this process for this call and nobody else has their
                    // numbers: they are ours to own (and close).
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                    .collect();
                rights.push(fds);
            }
            off += align(clen);
        }
        RecvControl { rights, cloexec }
    }

    /// Puts the descriptors into the program's table and returns the
    /// control data for the program (its numbers) and whether it is
    /// truncated (the table filled up: the rest are closed, as Linux's
    /// `scm_detach_fds` stops at the first descriptor it cannot install).
    pub(super) fn install(self, fds: &mut FdTable) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut full = false;
        for msg in self.rights {
            if full {
                break; // dropped: closed
            }
            let mut nums = Vec::with_capacity(msg.len());
            let mut rest = VecDeque::from(msg);
            while let Some(fd) = rest.pop_front() {
                let e = Entry { fd: fd.into(), cloexec: self.cloexec, path: None, change: None };
                match fds.insert(e, 0) {
                    Some(v) => nums.push(v as i32),
                    None => {
                        full = true;
                        break; // the rest of `rest` are closed with it
                    }
                }
            }
            if !nums.is_empty() {
                push_hdr(&mut out, HDR + 4 * nums.len(), libc::SOL_SOCKET, libc::SCM_RIGHTS);
                for n in nums {
                    out.extend_from_slice(&n.to_le_bytes());
                }
                pad(&mut out);
            }
        }
        (out, full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_descriptors_are_owned_and_a_full_table_truncates() {
        // Three descriptors of ours in a host-style SCM_RIGHTS message.
        let mut fds = Vec::new();
        for _ in 0..3 {
            // SAFETY: a fresh descriptor; ownership passes to the buffer.
            let r = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            assert!(r >= 0);
            fds.push(r);
        }
        let mut buf = Vec::new();
        push_hdr(&mut buf, HDR + 12, libc::SOL_SOCKET, libc::SCM_RIGHTS);
        for f in &fds {
            buf.extend_from_slice(&f.to_le_bytes());
        }
        pad(&mut buf);
        let rc = RecvControl::take(&buf, buf.len(), false);
        let mut table = FdTable::default();
        table.set_max(2);
        let (out, truncated) = rc.install(&mut table);
        assert!(truncated, "only two fit");
        assert_eq!(u64_at(&out, 0), (HDR + 8) as u64);
        assert_eq!((i32_at(&out, HDR), i32_at(&out, HDR + 4)), (0, 1));
        assert_eq!(out.len(), align(HDR + 8));
    }

    #[test]
    fn malformed_host_buffers_take_nothing_past_the_end() {
        let mut buf = Vec::new();
        push_hdr(&mut buf, 4096, libc::SOL_SOCKET, libc::SCM_RIGHTS);
        let rc = RecvControl::take(&buf, buf.len(), false);
        assert!(rc.rights.is_empty());
    }
}
