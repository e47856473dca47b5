//! The addresses a program names (`connect`, `bind`, `sendto`, `sendmsg`,
//! `sendmmsg`), copied once out of its memory, parsed, checked against the
//! run's network rules ([`NetRules`]) and rebuilt by the monitor: the host
//! kernel only ever sees an address the monitor built from a checked copy,
//! never the program's bytes (docs/networking.md).
//!
//! - IP addresses: a destination is checked after normalisation: an IPv6
//!   address carrying an IPv4 one (mapped `::ffff:a.b.c.d`, compatible
//!   `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) is matched as that IPv4
//!   address, and the unspecified address (`0.0.0.0`, `::`), which Linux
//!   connects to the local host, as the loopback address.
//! - Unix socket paths: usable when the policy names them, or when this run
//!   bound them (the socket file the run made, by device and inode: a
//!   symlink or another socket put at the name later is not it). The host
//!   connects through an `O_PATH` descriptor of the checked file
//!   (`/proc/self/fd/N`), so a swap after the check changes nothing.
//!   Binding a path needs write access under the path trees and goes
//!   through the checked parent directory the same way.
//! - Abstract names: usable when the policy names them or this run bound
//!   them; binding one needs the policy to name it (a program must not
//!   squat a name a host daemon's clients connect to); autobind (the kernel
//!   picks a name) is allowed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{errno, Fail};
use crate::memory::GuestMemory;

/// `sizeof(struct sockaddr_storage)`.
pub(super) const ADDR_MAX: usize = 128;
/// `sizeof(struct sockaddr_un)`.
const SUN_LEN_MAX: usize = 110;
/// `offsetof(struct sockaddr_un, sun_path)`.
const SUN_PATH_AT: usize = 2;

/// What the run's network policy allows (`cabin_policy::net::NetPolicy`
/// implements it; tests may give their own). Addresses reach it already
/// normalised (see the module docs).
pub trait NetRules: std::fmt::Debug + Send + Sync {
    /// May the program connect (or send datagrams) to `addr`?
    fn connect_allowed(&self, addr: &SocketAddr) -> bool;
    /// May the program bind `addr` (port 0: an ephemeral port)?
    fn listen_allowed(&self, addr: &SocketAddr) -> bool;
    /// May the program use the unix socket at absolute `path`?
    fn unix_path_allowed(&self, path: &Path) -> bool;
    /// May the program use the abstract unix name `name` (without its NUL)?
    fn abstract_allowed(&self, name: &[u8]) -> bool;
}

impl NetRules for cabin_policy::net::NetPolicy {
    fn connect_allowed(&self, addr: &SocketAddr) -> bool {
        cabin_policy::net::NetPolicy::connect_allowed(self, addr)
    }
    fn listen_allowed(&self, addr: &SocketAddr) -> bool {
        cabin_policy::net::NetPolicy::listen_allowed(self, addr)
    }
    fn unix_path_allowed(&self, path: &Path) -> bool {
        cabin_policy::net::NetPolicy::unix_path_allowed(self, path)
    }
    fn abstract_allowed(&self, name: &[u8]) -> bool {
        cabin_policy::net::NetPolicy::abstract_allowed(self, name)
    }
}

/// No network at all (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNetwork;

impl NetRules for NoNetwork {
    fn connect_allowed(&self, _: &SocketAddr) -> bool {
        false
    }
    fn listen_allowed(&self, _: &SocketAddr) -> bool {
        false
    }
    fn unix_path_allowed(&self, _: &Path) -> bool {
        false
    }
    fn abstract_allowed(&self, _: &[u8]) -> bool {
        false
    }
}

/// What the processes of one run have bound, shared by the tree: unix
/// socket files (device, inode), abstract names, and the host names of
/// path sockets bound through a checked directory (`/proc/self/fd/N/name`)
/// with the program's path for each, to report the program's own name back.
#[derive(Debug, Default)]
pub struct Bound {
    inner: Mutex<BoundInner>,
}

#[derive(Debug, Default)]
struct BoundInner {
    files: HashSet<(u64, u64)>,
    abstract_names: HashSet<Vec<u8>>,
    host_names: HashMap<Vec<u8>, Vec<u8>>,
    /// IP addresses datagrams came from (as the program was told), oldest
    /// first: the program may answer them (`sendto`, `sendmsg`), as it may
    /// answer on a TCP connection it accepted.
    peers: VecDeque<SocketAddr>,
    peer_set: HashSet<SocketAddr>,
}

/// Most names [`Bound`] remembers of each kind (a program binding without
/// end must not grow the monitor without bound): past it, binds of named
/// paths and abstract names are refused `ENOBUFS` (the oldest are not
/// forgotten: the run may still be using them), autobinds are served but
/// not remembered, and the oldest datagram senders are forgotten.
const BOUND_MAX: usize = 4096;

impl Bound {
    fn lock(&self) -> std::sync::MutexGuard<'_, BoundInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn has_file(&self, dev: u64, ino: u64) -> bool {
        self.lock().files.contains(&(dev, ino))
    }

    fn has_abstract(&self, name: &[u8]) -> bool {
        self.lock().abstract_names.contains(name)
    }

    fn room(&self) -> bool {
        let b = self.lock();
        b.files.len() < BOUND_MAX && b.abstract_names.len() < BOUND_MAX && b.host_names.len() < BOUND_MAX
    }

    fn add_file(&self, dev: u64, ino: u64, host: Vec<u8>, prog: Vec<u8>) {
        let mut b = self.lock();
        if b.files.len() < BOUND_MAX && b.host_names.len() < BOUND_MAX {
            b.files.insert((dev, ino));
            b.host_names.insert(host, prog);
        }
    }

    /// Remembers an abstract name the run bound (not past [`BOUND_MAX`]:
    /// an autobound name then stays unknown, so the run cannot connect to
    /// it by name; nothing else is lost).
    fn add_abstract(&self, name: Vec<u8>) {
        let mut b = self.lock();
        if b.abstract_names.len() < BOUND_MAX {
            b.abstract_names.insert(name);
        }
    }

    /// A datagram came from the IP address in `addr[..alen]` and the
    /// program was told: it may answer it. The [`BOUND_MAX`] most recent
    /// senders are remembered.
    pub(super) fn note_sender(&self, addr: &[u8; ADDR_MAX], alen: usize) {
        let Ok(Addr::Inet(sa)) = Addr::parse(&addr[..alen.min(ADDR_MAX)]) else { return };
        let key = destination(&sa);
        let mut b = self.lock();
        if b.peer_set.contains(&key) {
            return;
        }
        if b.peers.len() >= BOUND_MAX {
            if let Some(old) = b.peers.pop_front() {
                b.peer_set.remove(&old);
            }
        }
        b.peers.push_back(key);
        b.peer_set.insert(key);
    }

    fn has_sender(&self, key: &SocketAddr) -> bool {
        self.lock().peer_set.contains(key)
    }

    /// The program's name for an address the host reports: a path socket
    /// bound through a checked directory is shown by the program's path.
    pub(super) fn program_name(&self, addr: &mut [u8; ADDR_MAX], alen: &mut usize) {
        if *alen <= SUN_PATH_AT || u16::from_le_bytes([addr[0], addr[1]]) != libc::AF_UNIX as u16 {
            return;
        }
        let path = &addr[SUN_PATH_AT..*alen];
        let path = &path[..path.iter().position(|&c| c == 0).unwrap_or(path.len())];
        if !path.starts_with(b"/proc/self/fd/") {
            return;
        }
        let Some(prog) = self.lock().host_names.get(path).cloned() else { return };
        let n = prog.len().min(SUN_LEN_MAX - SUN_PATH_AT - 1);
        addr[SUN_PATH_AT..].fill(0);
        addr[SUN_PATH_AT..SUN_PATH_AT + n].copy_from_slice(&prog[..n]);
        *alen = SUN_PATH_AT + n + 1;
    }
}

/// A socket address as the program gave it, parsed from a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Addr {
    /// `AF_INET` or `AF_INET6`.
    Inet(SocketAddr),
    /// `AF_UNIX` with a path (up to its NUL or the length).
    UnixPath(Vec<u8>),
    /// `AF_UNIX` with an abstract name (the bytes after the leading NUL).
    Abstract(Vec<u8>),
    /// `AF_UNIX` with no name at all (`bind`: the kernel picks one).
    UnixUnnamed,
    /// `AF_UNSPEC` (`connect`: dissolve a datagram association).
    Unspec,
}

impl Addr {
    /// Copies `len` bytes at `at` once and parses them. `EINVAL` for a
    /// length Linux refuses (negative, past `sockaddr_storage`, shorter
    /// than the family's address), `EAFNOSUPPORT` for another family.
    pub(super) fn read(mem: &GuestMemory, at: u64, len: u64) -> Result<Addr, Fail> {
        let len = len as u32 as i32;
        let Ok(len) = usize::try_from(len) else { return Err(Fail::Errno(libc::EINVAL)) };
        if !(2..=ADDR_MAX).contains(&len) {
            return Err(Fail::Errno(libc::EINVAL));
        }
        let mut b = [0u8; ADDR_MAX];
        mem.read_into(at, &mut b[..len])?;
        Addr::parse(&b[..len])
    }

    /// Parses an address copied out of program memory.
    pub(super) fn parse(b: &[u8]) -> Result<Addr, Fail> {
        let einval = Fail::Errno(libc::EINVAL);
        if b.len() < 2 {
            return Err(einval);
        }
        let family = i32::from(u16::from_le_bytes([b[0], b[1]]));
        let be16 = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
        match family {
            libc::AF_INET => {
                if b.len() < 16 {
                    return Err(einval);
                }
                let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
                Ok(Addr::Inet(SocketAddr::V4(SocketAddrV4::new(ip, be16(2)))))
            }
            libc::AF_INET6 => {
                // Linux takes the 24-byte RFC 2133 form (no scope id) too.
                if b.len() < 24 {
                    return Err(einval);
                }
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&b[8..24]);
                let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                let scope = if b.len() >= 28 { u32::from_le_bytes([b[24], b[25], b[26], b[27]]) } else { 0 };
                Ok(Addr::Inet(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), be16(2), flow, scope))))
            }
            libc::AF_UNIX => {
                if b.len() > SUN_LEN_MAX {
                    return Err(einval);
                }
                let path = &b[SUN_PATH_AT..];
                if path.is_empty() {
                    Ok(Addr::UnixUnnamed)
                } else if path[0] == 0 {
                    Ok(Addr::Abstract(path[1..].to_vec()))
                } else {
                    let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
                    Ok(Addr::UnixPath(path[..end].to_vec()))
                }
            }
            libc::AF_UNSPEC => Ok(Addr::Unspec),
            _ => Err(Fail::Errno(libc::EAFNOSUPPORT)),
        }
    }

    /// How the address is shown in a refusal, the trace and the audit log
    /// (`trace::record::addr_text`: `127.0.0.1:80`, `unix:/p`, `unix:@name`).
    pub(super) fn describe(&self) -> String {
        use cabin_policy::trace::record::{addr_text, TraceAddr};
        let t = match self {
            Addr::Inet(sa) => TraceAddr::Inet(*sa),
            Addr::UnixPath(p) => TraceAddr::Unix(p.clone()),
            Addr::Abstract(n) => TraceAddr::Abstract(n.clone()),
            Addr::UnixUnnamed => TraceAddr::Unnamed,
            Addr::Unspec => TraceAddr::Family(libc::AF_UNSPEC as u16),
        };
        addr_text(&t)
    }
}

/// The IP address a destination is checked as: IPv4 carried in IPv6 as
/// IPv4, the unspecified address as the loopback one (what Linux connects
/// to).
pub(super) fn destination(sa: &SocketAddr) -> SocketAddr {
    let ip = match sa.ip() {
        IpAddr::V6(v6) => match embedded_v4(&v6) {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    let ip = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    match (sa, ip) {
        (SocketAddr::V6(s6), IpAddr::V6(v6)) => {
            SocketAddr::V6(SocketAddrV6::new(v6, s6.port(), 0, s6.scope_id()))
        }
        (_, ip) => SocketAddr::new(ip, sa.port()),
    }
}

/// The IPv4 address an IPv6 one carries: mapped (`::ffff:0:0/96`),
/// compatible (`::/96` but `::` and `::1`), NAT64 (`64:ff9b::/96`).
pub(super) fn embedded_v4(a: &Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let mapped = s[..6] == [0, 0, 0, 0, 0, 0xffff];
    let compatible = s[..6] == [0; 6] && !a.is_unspecified() && !a.is_loopback();
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (mapped || compatible || nat64).then_some(low)
}

/// An address for the host kernel, built by the monitor from a checked
/// copy; holds the `O_PATH` descriptor a unix path address goes through.
#[derive(Debug)]
pub(super) struct HostAddr {
    bytes: [u8; ADDR_MAX],
    len: usize,
    _hold: Option<OwnedFd>,
}

impl HostAddr {
    pub(super) fn ptr(&self) -> *const libc::sockaddr {
        self.bytes.as_ptr().cast()
    }

    pub(super) fn len(&self) -> libc::socklen_t {
        self.len as libc::socklen_t
    }

    /// An IP address in the host's layout.
    pub(super) fn inet(sa: &SocketAddr) -> HostAddr {
        let mut b = [0u8; ADDR_MAX];
        let len = match sa {
            SocketAddr::V4(v4) => {
                b[..2].copy_from_slice(&(libc::AF_INET as u16).to_le_bytes());
                b[2..4].copy_from_slice(&v4.port().to_be_bytes());
                b[4..8].copy_from_slice(&v4.ip().octets());
                16
            }
            SocketAddr::V6(v6) => {
                b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_le_bytes());
                b[2..4].copy_from_slice(&v6.port().to_be_bytes());
                b[4..8].copy_from_slice(&v6.flowinfo().to_be_bytes());
                b[8..24].copy_from_slice(&v6.ip().octets());
                b[24..28].copy_from_slice(&v6.scope_id().to_le_bytes());
                28
            }
        };
        HostAddr { bytes: b, len, _hold: None }
    }

    /// A unix address: `sun_path` = `name` (a leading NUL for abstract
    /// names), or no name at all when empty.
    fn unix(name: &[u8], abstract_name: bool) -> Result<HostAddr, Fail> {
        let mut b = [0u8; ADDR_MAX];
        b[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_le_bytes());
        let extra = usize::from(abstract_name);
        // A path keeps room for its NUL; an abstract name may fill sun_path.
        let room = SUN_LEN_MAX - SUN_PATH_AT - usize::from(!abstract_name);
        if name.len() + extra > room {
            return Err(Fail::Errno(libc::ENAMETOOLONG));
        }
        b[SUN_PATH_AT + extra..SUN_PATH_AT + extra + name.len()].copy_from_slice(name);
        let len = if name.is_empty() && !abstract_name {
            SUN_PATH_AT
        } else {
            SUN_PATH_AT + extra + name.len() + usize::from(!abstract_name)
        };
        Ok(HostAddr { bytes: b, len, _hold: None })
    }

    fn unspec() -> HostAddr {
        let mut b = [0u8; ADDR_MAX];
        b[..2].copy_from_slice(&(libc::AF_UNSPEC as u16).to_le_bytes());
        HostAddr { bytes: b, len: 16, _hold: None }
    }

    /// The socket file behind `file` (an `O_PATH` descriptor), reached
    /// through its `/proc/self/fd` link.
    fn through(file: OwnedFd) -> Result<HostAddr, Fail> {
        let name = format!("/proc/self/fd/{}", file.as_raw_fd());
        let mut h = HostAddr::unix(name.as_bytes(), false)?;
        h._hold = Some(file);
        Ok(h)
    }
}

/// Why a network address was refused (the trace's rule, the audit log).
pub(super) fn refusal_rule(call: &str, addr: &Addr, why: &str) -> String {
    format!("[network] {call} {}: {why}", addr.describe())
}

/// `stat` of an open descriptor.
fn fstat(fd: RawFd) -> Result<libc::stat, Fail> {
    // SAFETY: stat is plain data; fstat writes one into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(Fail::Errno(errno()));
    }
    Ok(st)
}

fn open_path(dir: Option<RawFd>, name: &CString, follow: bool) -> Result<OwnedFd, Fail> {
    let flags = libc::O_PATH | libc::O_CLOEXEC | if follow { 0 } else { libc::O_NOFOLLOW };
    // SAFETY: `name` is a NUL-terminated string; openat touches no other memory.
    let r = unsafe { libc::openat(dir.unwrap_or(libc::AT_FDCWD), name.as_ptr(), flags) };
    if r < 0 {
        return Err(Fail::Errno(errno()));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

fn is_socket(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFSOCK
}

/// Where a checked check went: an address for the host, or a refusal
/// (the rule text) for the caller to note.
pub(super) enum Checked {
    Host(HostAddr),
    Refused(String),
}

/// The run's network: its rules and what it has bound.
#[derive(Debug, Clone)]
pub struct Network {
    pub(super) rules: Arc<dyn NetRules>,
    pub(super) bound: Arc<Bound>,
}

impl Default for Network {
    fn default() -> Network {
        Network { rules: Arc::new(NoNetwork), bound: Arc::default() }
    }
}

impl Network {
    /// A run's network under `rules`, nothing bound yet.
    pub fn new(rules: Arc<dyn NetRules>) -> Network {
        Network { rules, bound: Arc::default() }
    }

    /// The address to connect or send to for the program's `addr` (`abs`:
    /// a unix path made absolute by the caller), or why not.
    pub(super) fn destination(
        &self,
        call: &str,
        addr: &Addr,
        abs: Option<&[u8]>,
        fs: &super::fs::FsPolicy,
    ) -> Result<Checked, Fail> {
        let refuse = |why: &str| Ok(Checked::Refused(refusal_rule(call, addr, why)));
        match addr {
            Addr::Inet(sa) => {
                let key = destination(sa);
                // A send may answer a datagram's sender (`connect` may not).
                let answer = call != "connect" && self.bound.has_sender(&key);
                if answer || self.rules.connect_allowed(&key) {
                    Ok(Checked::Host(HostAddr::inet(sa)))
                } else {
                    refuse("not allowed by the policy's connect rules")
                }
            }
            Addr::Unspec => Ok(Checked::Host(HostAddr::unspec())),
            Addr::UnixUnnamed => Ok(Checked::Host(HostAddr::unix(b"", false)?)),
            Addr::Abstract(name) => {
                if self.rules.abstract_allowed(name) || self.bound.has_abstract(name) {
                    Ok(Checked::Host(HostAddr::unix(name, true)?))
                } else {
                    refuse("an abstract name neither named by the policy nor bound by this run")
                }
            }
            Addr::UnixPath(_) => {
                let abs = abs.unwrap_or_default();
                let c = CString::new(abs).map_err(|_| Fail::Errno(libc::EINVAL))?;
                if self.rules.unix_path_allowed(as_path(abs)) {
                    // Named by the policy: the host's own path (symlinks
                    // followed as they would be natively).
                    return Ok(Checked::Host(HostAddr::through(open_path(None, &c, true)?)?));
                }
                // Bound by this run: the very socket file it made.
                if let Ok((dir, name)) = fs.parent(abs, false) {
                    if let Ok(file) = open_path(Some(dir.as_raw_fd()), &name, false) {
                        let st = fstat(file.as_raw_fd())?;
                        if is_socket(&st) && self.bound.has_file(st.st_dev, st.st_ino) {
                            return Ok(Checked::Host(HostAddr::through(file)?));
                        }
                    }
                }
                refuse("a unix socket neither named by the policy nor bound by this run")
            }
        }
    }
}

/// A program path as a `Path` (unix: any bytes).
fn as_path(b: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(b))
}

/// Binds host socket `fd` to the program's `addr` when the rules allow
/// (`abs`: a unix path made absolute). `Ok(None)`: bound; `Ok(Some(rule))`:
/// refused.
pub(super) fn bind(
    net: &Network,
    fs: &super::fs::FsPolicy,
    fd: RawFd,
    addr: &Addr,
    abs: Option<&[u8]>,
) -> Result<Option<String>, Fail> {
    let refused = |why: &str| Ok(Some(refusal_rule("bind", addr, why)));
    let host_bind = |h: &HostAddr| -> Result<(), Fail> {
        // SAFETY: `h` holds `h.len()` bytes of a sockaddr the monitor built.
        if unsafe { libc::bind(fd, h.ptr(), h.len()) } != 0 {
            return Err(Fail::Errno(errno()));
        }
        Ok(())
    };
    match addr {
        Addr::Inet(sa) => {
            // Port 0 is the ephemeral port the kernel would pick at the
            // first connect or send anyway; listening on it is checked at
            // `listen`.
            if sa.port() != 0 && !net.rules.listen_allowed(&listen_key(sa)) {
                return refused("not allowed by the policy's listen rules");
            }
            host_bind(&HostAddr::inet(sa))?;
        }
        // Linux binds AF_UNSPEC like AF_INET (0.0.0.0 and the port given):
        // not an address the program may use unchecked.
        Addr::Unspec => return Err(Fail::Errno(libc::EAFNOSUPPORT)),
        Addr::UnixUnnamed => {
            host_bind(&HostAddr::unix(b"", false)?)?;
            if let Some(Addr::Abstract(name)) = local_name(fd) {
                net.bound.add_abstract(name);
            }
        }
        Addr::Abstract(name) => {
            if !net.rules.abstract_allowed(name) {
                return refused("an abstract name the policy does not name");
            }
            if !net.bound.room() {
                return Err(Fail::Errno(libc::ENOBUFS));
            }
            host_bind(&HostAddr::unix(name, true)?)?;
            net.bound.add_abstract(name.clone());
        }
        Addr::UnixPath(_) => {
            let abs = abs.unwrap_or_default();
            if !net.bound.room() {
                return Err(Fail::Errno(libc::ENOBUFS));
            }
            let (dir, name) = if net.rules.unix_path_allowed(as_path(abs)) {
                // Named by the policy: its parent as the host resolves it.
                let p = as_path(abs);
                let parent =
                    p.parent().map(|p| p.as_os_str().as_encoded_bytes().to_vec()).unwrap_or(b"/".to_vec());
                let file =
                    p.file_name().map(|n| n.as_encoded_bytes().to_vec()).ok_or(Fail::Errno(libc::EINVAL))?;
                let pc = CString::new(parent).map_err(|_| Fail::Errno(libc::EINVAL))?;
                let nc = CString::new(file).map_err(|_| Fail::Errno(libc::EINVAL))?;
                (open_path(None, &pc, true)?, nc)
            } else {
                match fs.parent(abs, true) {
                    Ok(p) => p,
                    Err(super::fs::PathError::Errno(e)) => return Err(Fail::Errno(e)),
                    Err(super::fs::PathError::Denied(why)) => {
                        return refused(&format!("[paths]: {}", why.describe()));
                    }
                }
            };
            let host = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            let host = [host, name.as_bytes().to_vec()].concat();
            host_bind(&HostAddr::unix(&host, false)?)?;
            // The file just made: remembered by identity.
            let file = open_path(Some(dir.as_raw_fd()), &name, false)?;
            let st = fstat(file.as_raw_fd())?;
            net.bound.add_file(st.st_dev, st.st_ino, host, abs.to_vec());
        }
    }
    Ok(None)
}

/// The address a listen rule is asked about for a bound address.
fn listen_key(sa: &SocketAddr) -> SocketAddr {
    match sa.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), sa.port()),
            None => *sa,
        },
        _ => *sa,
    }
}

/// `listen`: a socket bound to a port the listen rules allow (at `bind`),
/// or to an ephemeral port (bound with port 0, or not bound: the kernel
/// picks one now) when the rules allow port 0 on its address.
pub(super) fn listen_allowed(net: &Network, fd: RawFd) -> Result<Option<(String, String)>, Fail> {
    match local_name(fd) {
        Some(Addr::Inet(sa)) => {
            let key = listen_key(&sa);
            let eph = SocketAddr::new(key.ip(), 0);
            if net.rules.listen_allowed(&key) || net.rules.listen_allowed(&eph) {
                Ok(None)
            } else {
                let addr = Addr::Inet(sa);
                Ok(Some((
                    refusal_rule("listen", &addr, "not allowed by the policy's listen rules"),
                    addr.describe(),
                )))
            }
        }
        _ => Ok(None),
    }
}

/// The host socket's own address, parsed.
fn local_name(fd: RawFd) -> Option<Addr> {
    let mut b = [0u8; ADDR_MAX];
    let mut len = ADDR_MAX as libc::socklen_t;
    // SAFETY: `b` holds `len` bytes.
    if unsafe { libc::getsockname(fd, b.as_mut_ptr().cast(), &mut len) } != 0 {
        return None;
    }
    Addr::parse(&b[..(len as usize).min(ADDR_MAX)]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(b: &[u8]) -> Result<Addr, Fail> {
        Addr::parse(b)
    }

    #[test]
    fn addresses_parse_as_linux_sizes_them() {
        let mut b = [0u8; 16];
        b[..2].copy_from_slice(&(libc::AF_INET as u16).to_le_bytes());
        b[2..4].copy_from_slice(&80u16.to_be_bytes());
        b[4..8].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(v4(&b).ok(), Some(Addr::Inet("10.0.0.1:80".parse().unwrap())));
        assert!(matches!(v4(&b[..15]), Err(Fail::Errno(libc::EINVAL))));
        assert!(matches!(v4(&b[..1]), Err(Fail::Errno(libc::EINVAL))));
        let mut u = [0u8; 110];
        u[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_le_bytes());
        u[2..].fill(b'a');
        assert_eq!(
            Addr::parse(&u).ok(),
            Some(Addr::UnixPath(vec![b'a'; 108])),
            "unterminated: up to the length"
        );
        let mut big = [0u8; 111];
        big[..110].copy_from_slice(&u);
        assert!(matches!(Addr::parse(&big), Err(Fail::Errno(libc::EINVAL))));
        assert_eq!(Addr::parse(&u[..2]).ok(), Some(Addr::UnixUnnamed));
        u[2] = 0;
        assert_eq!(Addr::parse(&u[..5]).ok(), Some(Addr::Abstract(b"aa".to_vec())));
        let mut x = [0u8; 16];
        x[0] = 17; // AF_PACKET
        assert!(matches!(Addr::parse(&x), Err(Fail::Errno(libc::EAFNOSUPPORT))));
    }

    #[test]
    fn destinations_are_normalised() {
        let d = |s: &str| destination(&s.parse().unwrap()).to_string();
        assert_eq!(d("[::ffff:10.1.2.3]:80"), "10.1.2.3:80");
        assert_eq!(d("[::10.1.2.3]:80"), "10.1.2.3:80");
        assert_eq!(d("[64:ff9b::10.1.2.3]:80"), "10.1.2.3:80");
        assert_eq!(d("0.0.0.0:80"), "127.0.0.1:80");
        assert_eq!(d("[::]:80"), "[::1]:80");
        assert_eq!(d("[::ffff:0.0.0.0]:80"), "127.0.0.1:80");
        assert_eq!(d("[::1]:80"), "[::1]:80");
        assert_eq!(d("[2001:db8::1]:80"), "[2001:db8::1]:80");
    }

    #[test]
    fn what_the_run_bound_stays_bounded() {
        let b = Bound::default();
        for i in 0..(BOUND_MAX as u32 + 100) {
            b.add_abstract(i.to_le_bytes().to_vec());
            let sa: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(i)), 9);
            let h = HostAddr::inet(&sa);
            b.note_sender(&h.bytes, h.len);
        }
        let inner = b.lock();
        assert_eq!(inner.abstract_names.len(), BOUND_MAX);
        assert_eq!((inner.peers.len(), inner.peer_set.len()), (BOUND_MAX, BOUND_MAX));
        drop(inner);
        let last = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(BOUND_MAX as u32 + 99)), 9);
        assert!(b.has_sender(&last), "the most recent sender is kept");
        assert!(!b.has_sender(&SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0)), 9)), "the oldest is forgotten");
        assert!(!b.room());
    }

    #[test]
    fn host_addresses_round_trip() {
        for s in ["127.0.0.1:5", "[::1]:7"] {
            let sa: SocketAddr = s.parse().unwrap();
            let h = HostAddr::inet(&sa);
            assert_eq!(Addr::parse(&h.bytes[..h.len]).ok(), Some(Addr::Inet(sa)));
        }
        let h = HostAddr::unix(b"name", true).unwrap();
        assert_eq!(Addr::parse(&h.bytes[..h.len]).ok(), Some(Addr::Abstract(b"name".to_vec())));
        assert!(HostAddr::unix(&[b'a'; 108], false).is_err());
    }
}
