//! `[network]`: which addresses a confined program may reach or serve.
//!
//! The default is no network: every question answers `false` and there is
//! no resolver. A [`NetPolicy`] is built from the policy file's `[network]`
//! section and the `cabinc run` flags `--allow-connect` / `--allow-listen`
//! (docs/policy.md, docs/networking.md "Policy"), and the monitor asks it
//! once per `connect`, `sendto`/`sendmsg` with an address, and `bind`.
//!
//! Rules are written `ADDR[/PREFIX]:PORTS`, IPv6 in brackets
//! (`[ADDR]/PREFIX:PORTS` or `[ADDR/PREFIX]:PORTS`); `PORTS` is a port
//! (1..=65535), a range `LO-HI`, or `*` (every port, 0 included, so
//! that `bind` to port 0, the kernel's choice, is allowed by a `*` listen
//! rule only). Host names are refused: rules name addresses.
//!
//! IPv4 traffic written as an IPv6 address is matched as the IPv4 address
//! it carries, never against IPv6 rules: IPv4-mapped `::ffff:a.b.c.d`,
//! IPv4-compatible `::a.b.c.d` (all of `::/96` but `::` and `::1`) and the
//! NAT64 well-known prefix `64:ff9b::/96`. A rule may not be written in
//! those ranges (with a prefix of 96 or more): write the IPv4 address. An
//! address with an IPv6 zone (scope id) is refused in rules and never
//! matches at run time (which host a link-local address names depends on
//! the interface).
//!
//! Unix socket paths match exactly, after lexical normalisation only
//! (repeated `/` and `.` components dropped; a path with `..`, a relative
//! path or a NUL byte never matches): the monitor resolves the path the
//! program gave before asking. Abstract names match byte for byte (the
//! name after the leading NUL of `sun_path`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};

use crate::Loc;

/// The longest `sun_path` a socket name can use (108 bytes with the NUL).
pub const SUN_PATH_MAX: usize = 107;

/// The port used when a resolver is written without one.
pub const DNS_PORT: u16 = 53;

/// An address block: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The first address of the block (host bits are zero).
    pub addr: IpAddr,
    /// Leading bits that must match (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix: u8,
}

impl IpNet {
    /// Whether `ip` (already normalised with [`normalize_ip`]) is in the block.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask =
                    if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix.min(32))) };
                u32::from(net) & mask == u32::from(*a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask =
                    if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix.min(128))) };
                u128::from(net) & mask == u128::from(*a) & mask
            }
            _ => false,
        }
    }

    /// Whether the block is one address.
    pub fn is_single(&self) -> bool {
        match self.addr {
            IpAddr::V4(_) => self.prefix == 32,
            IpAddr::V6(_) => self.prefix == 128,
        }
    }
}

/// A range of ports, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Lowest port.
    pub lo: u16,
    /// Highest port.
    pub hi: u16,
}

impl Ports {
    /// `*`: every port, 0 included.
    pub const ANY: Ports = Ports { lo: 0, hi: u16::MAX };

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

/// One `connect` or `listen` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetRule {
    /// Which addresses.
    pub net: IpNet,
    /// Which ports.
    pub ports: Ports,
    /// Where it was written (line 0: a command-line flag).
    pub loc: Loc,
}

impl NetRule {
    /// Whether the (normalised) address matches.
    pub fn matches(&self, ip: &IpAddr, port: u16) -> bool {
        self.net.contains(ip) && self.ports.contains(port)
    }
}

impl fmt::Display for NetRule {
    /// The rule as it is written in a policy file: `10.0.0.0/8:443`, `[::1]:1000-2000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.net.addr {
            IpAddr::V4(a) => write!(f, "{a}")?,
            IpAddr::V6(a) => write!(f, "[{a}]")?,
        }
        if !self.net.is_single() {
            write!(f, "/{}", self.net.prefix)?;
        }
        let p = self.ports;
        if p == Ports::ANY {
            write!(f, ":*")
        } else if p.lo == p.hi {
            write!(f, ":{}", p.lo)
        } else {
            write!(f, ":{}-{}", p.lo, p.hi)
        }
    }
}

/// Why a network rule was refused (the parser adds the place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// What is wrong, naming the entry.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.help {
            write!(f, "; help: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleError {}

fn rule_err(entry: &str, what: impl fmt::Display, help: Option<&str>) -> RuleError {
    RuleError { message: format!("bad network rule `{entry}`: {what}"), help: help.map(str::to_string) }
}

const SYNTAX_HELP: &str =
    "write ADDR[/PREFIX]:PORTS, e.g. \"127.0.0.1:8080\", \"10.0.0.0/8:443\", \"[::1]:1000-2000\", \"0.0.0.0/0:*\"";

/// The longest rule text looked at (anything longer is an error, not parsed).
const RULE_MAX: usize = 128;

/// Parses one `connect` / `listen` rule: `ADDR[/PREFIX]:PORTS`.
pub fn parse_rule(text: &str) -> Result<NetRule, RuleError> {
    let shown: String = text.chars().take(RULE_MAX).collect();
    let e = |what: &str, help: Option<&str>| rule_err(&shown, what, help);
    if text.len() > RULE_MAX {
        return Err(e("too long", Some(SYNTAX_HELP)));
    }
    let t = text.trim();
    if t.is_empty() {
        return Err(e("empty", Some(SYNTAX_HELP)));
    }
    if t.contains('%') {
        return Err(e(
            "IPv6 zone ids (`%eth0`) are not allowed: which host a link-local address names depends on the interface",
            Some("name a global or loopback address"),
        ));
    }
    // Split the address (with its prefix) from the ports.
    let (addr_part, prefix_part, ports_part) = if let Some(rest) = t.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err(e("`[` without `]`", Some(SYNTAX_HELP)));
        };
        let inside = &rest[..close];
        let after = &rest[close + 1..];
        let (addr, mut prefix) = match inside.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (inside, None),
        };
        let after = if let Some(a) = after.strip_prefix('/') {
            if prefix.is_some() {
                return Err(e("two prefixes", Some(SYNTAX_HELP)));
            }
            let (p, rest) = a.split_once(':').unwrap_or((a, ""));
            prefix = Some(p);
            if rest.is_empty() {
                return Err(e("no port", Some(SYNTAX_HELP)));
            }
            rest
        } else if let Some(rest) = after.strip_prefix(':') {
            rest
        } else {
            return Err(e("no port after `]`", Some(SYNTAX_HELP)));
        };
        (addr, prefix, after)
    } else {
        let Some((left, ports)) = t.rsplit_once(':') else {
            return Err(e("no port", Some(SYNTAX_HELP)));
        };
        if left.contains(':') {
            return Err(e(
                "an IPv6 address needs brackets",
                Some("write e.g. \"[::1]:8080\" or \"[fd00::]/8:443\""),
            ));
        }
        let (addr, prefix) = match left.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (left, None),
        };
        (addr, prefix, ports)
    };
    let addr: IpAddr = match addr_part.parse() {
        Ok(a) => a,
        Err(_) if looks_like_host(addr_part) => return Err(host_err(&shown, addr_part)),
        Err(_) if addr_part == "*" => return Err(e(
            "`*` is not an address",
            Some(
                "write 0.0.0.0/0 for every IPv4 address or [::]/0 for every IPv6 one, e.g. \"0.0.0.0/0:443\"",
            ),
        )),
        Err(_) => return Err(e(&format!("`{addr_part}` is not an IP address"), Some(SYNTAX_HELP))),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix_part {
        None => max,
        Some(p) => {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(e(&format!("prefix `/{p}` is not a number"), Some(SYNTAX_HELP)));
            }
            match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(e(
                        &format!("prefix /{p} is longer than the address ({max} bits)"),
                        Some(&format!("use /0../{max}")),
                    ))
                }
            }
        }
    };
    let net = masked(addr, prefix);
    if net != addr {
        return Err(e(
            &format!("{addr}/{prefix} has bits set after the prefix"),
            Some(&format!("write the block's first address: {}", show_net(net, prefix))),
        ));
    }
    if let IpAddr::V6(v6) = addr {
        if prefix >= 96 && embeds_ipv4(&v6).is_some() {
            let v4 = embeds_ipv4(&v6).unwrap_or(Ipv4Addr::UNSPECIFIED);
            return Err(e(
                "this IPv6 address carries an IPv4 address, and IPv4 traffic is only matched against IPv4 rules",
                Some(&format!("write the IPv4 address: \"{}\"", show_net(IpAddr::V4(v4), prefix - 96))),
            ));
        }
    }
    let ports = parse_ports(ports_part).map_err(|w| e(&w, Some(SYNTAX_HELP)))?;
    Ok(NetRule { net: IpNet { addr, prefix }, ports, loc: Loc::default() })
}

fn looks_like_host(a: &str) -> bool {
    a.chars().any(|c| c.is_ascii_alphabetic())
        && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

fn host_err(entry: &str, host: &str) -> RuleError {
    rule_err(
        entry,
        format!("`{host}` is a host name: rules name addresses only (a name could resolve to anything)"),
        Some("resolve it yourself and write the address, e.g. \"192.0.2.10:443\""),
    )
}

/// Parses the resolver: `ADDR`, `ADDR:PORT`, `[V6]` or `[V6]:PORT` (port
/// [`DNS_PORT`] when not given).
pub fn parse_resolver(text: &str) -> Result<SocketAddr, RuleError> {
    let shown: String = text.chars().take(RULE_MAX).collect();
    let e = |what: &str| {
        rule_err(&shown, what, Some("write the resolver's address, e.g. \"127.0.0.53\" or \"[::1]:53\""))
    };
    if text.len() > RULE_MAX {
        return Err(e("too long"));
    }
    let t = text.trim();
    if t.contains('%') {
        return Err(e("IPv6 zone ids (`%eth0`) are not allowed"));
    }
    if t.contains('/') {
        return Err(e("the resolver is one address, not a block"));
    }
    let addr = if let Ok(sa) = t.parse::<SocketAddr>() {
        sa
    } else if let Ok(ip) = t.parse::<IpAddr>() {
        SocketAddr::new(ip, DNS_PORT)
    } else if let Some(ip) =
        t.strip_prefix('[').and_then(|r| r.strip_suffix(']')).and_then(|r| r.parse().ok())
    {
        SocketAddr::new(IpAddr::V6(ip), DNS_PORT)
    } else {
        let host = t.rsplit_once(':').map_or(t, |(h, _)| h);
        if looks_like_host(host) {
            return Err(host_err(&shown, host));
        }
        return Err(e("not an address"));
    };
    if addr.port() == 0 {
        return Err(e("port 0"));
    }
    Ok(addr)
}

fn show_net(a: IpAddr, prefix: u8) -> String {
    match a {
        IpAddr::V4(a) if prefix == 32 => a.to_string(),
        IpAddr::V4(a) => format!("{a}/{prefix}"),
        IpAddr::V6(a) if prefix == 128 => format!("[{a}]"),
        IpAddr::V6(a) => format!("[{a}]/{prefix}"),
    }
}

fn masked(a: IpAddr, prefix: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
            IpAddr::V4(Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix.min(128))) };
            IpAddr::V6(Ipv6Addr::from(u128::from(v) & m))
        }
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port `{p}` is not a number"));
    }
    match p.parse::<u32>() {
        Ok(0) => Err("port 0 in a rule (use `*` for any port, or a port 1..=65535)".into()),
        Ok(n) if n <= 65535 => Ok(n as u16),
        _ => Err(format!("port {p} is above 65535")),
    }
}

fn parse_ports(p: &str) -> Result<Ports, String> {
    if p == "*" {
        return Ok(Ports::ANY);
    }
    match p.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
            if lo > hi {
                return Err(format!("port range {lo}-{hi} is reversed"));
            }
            Ok(Ports { lo, hi })
        }
        None => {
            let n = parse_port(p)?;
            Ok(Ports { lo: n, hi: n })
        }
    }
}

/// The IPv4 address an IPv6 address carries, if it is IPv4-mapped
/// (`::ffff:0:0/96`), IPv4-compatible (`::/96` but `::` and `::1`) or in
/// the NAT64 well-known prefix (`64:ff9b::/96`).
pub fn embeds_ipv4(a: &Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    let compatible = s[..6] == [0; 6] && !a.is_unspecified() && !a.is_loopback();
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (mapped || compatible || nat64).then_some(low)
}

/// The address matched against rules: the IPv4 address an IPv6 one
/// carries ([`embeds_ipv4`]), else the address itself.
pub fn normalize_ip(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => embeds_ipv4(&v6).map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// `path` with repeated `/` and `.` components removed, or `None` when it
/// is not absolute, contains `..` or a NUL byte.
pub fn normalize_unix_path(path: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if !path.is_absolute() || path.as_os_str().as_bytes().contains(&0) {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

const UNIX_HELP: &str = "write the socket's absolute path, e.g. \"/run/app/app.sock\"";

/// Checks one `[network] unix` entry: an absolute path of at most
/// [`SUN_PATH_MAX`] bytes without `..` or NUL, returned normalised.
pub fn parse_unix_path(text: &str) -> Result<PathBuf, RuleError> {
    let shown: String = text.chars().take(RULE_MAX).collect();
    let e = |what: &str| RuleError {
        message: format!("bad unix socket path `{shown}`: {what}"),
        help: Some(UNIX_HELP.to_string()),
    };
    if text.contains('\0') {
        return Err(e("a NUL byte (abstract names go in `abstract`)"));
    }
    if text.len() > SUN_PATH_MAX {
        return Err(e(&format!("longer than a socket address can hold ({SUN_PATH_MAX} bytes)")));
    }
    let p = Path::new(text);
    if !p.is_absolute() {
        return Err(e("not absolute"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(e("`..` (name the socket itself: paths are matched exactly)"));
    }
    if text.ends_with('/') {
        return Err(e("ends with `/`: a socket is not a directory"));
    }
    normalize_unix_path(p).ok_or_else(|| e("not a socket path"))
}

/// Checks one `[network] abstract` entry: the name without the leading
/// NUL, 1 to [`SUN_PATH_MAX`] bytes; `\\` is a backslash and `\xNN` any
/// byte (NUL included).
pub fn parse_abstract(text: &str) -> Result<Vec<u8>, RuleError> {
    let shown: String = text.chars().take(RULE_MAX).collect();
    let e = |what: &str| RuleError {
        message: format!("bad abstract socket name `{shown}`: {what}"),
        help: Some(
            "write the name without its leading NUL (and without ss's `@`); `\\xNN` for other bytes"
                .to_string(),
        ),
    };
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if out.len() > SUN_PATH_MAX {
            break;
        }
        if b[i] == b'\\' {
            match b.get(i + 1) {
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                }
                Some(b'x') => {
                    let hex = b.get(i + 2..i + 4).and_then(|h| std::str::from_utf8(h).ok());
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) => out.push(v),
                        None => return Err(e("`\\x` needs two hex digits")),
                    }
                    i += 4;
                }
                _ => return Err(e("unknown escape (use `\\\\` or `\\xNN`)")),
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    if out.is_empty() {
        return Err(e("empty (autobind names cannot be allowed in advance)"));
    }
    if out.len() > SUN_PATH_MAX {
        return Err(e(&format!("longer than a socket address can hold ({SUN_PATH_MAX} bytes)")));
    }
    Ok(out)
}

/// An abstract name as a policy file writes it (the inverse of [`parse_abstract`]).
pub fn abstract_text(name: &[u8]) -> String {
    let mut s = String::new();
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => s.push_str(&format!("\\x{:02x}", c as u32)),
                c => s.push(c),
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// The network a confined program may use. `Default`: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    /// Addresses it may `connect` / `sendto` (`[network] connect`, `--allow-connect`).
    pub connect: Vec<NetRule>,
    /// Addresses it may `bind` (`[network] listen`, `--allow-listen`).
    pub listen: Vec<NetRule>,
    /// Named unix sockets it may connect, send to or bind, normalised
    /// ([`normalize_unix_path`]).
    pub unix: Vec<PathBuf>,
    /// Abstract unix socket names (without the leading NUL).
    pub abstract_names: Vec<Vec<u8>>,
    /// The DNS resolver (`[network] resolver`), allowed for `connect`
    /// over UDP and TCP; [`DNS_PORT`] when written without a port.
    pub resolver: Option<SocketAddr>,
}

impl NetPolicy {
    /// Whether no network is allowed at all.
    pub fn is_empty(&self) -> bool {
        *self == NetPolicy::default()
    }

    /// May the program `connect` to (or `sendto`/`sendmsg` to) `addr`?
    /// IPv4 carried in IPv6 is matched as IPv4 (module docs); an address
    /// with an IPv6 scope id never matches. The resolver is allowed.
    pub fn connect_allowed(&self, addr: &SocketAddr) -> bool {
        let Some((ip, port)) = key(addr) else { return false };
        if let Some(r) = self.resolver {
            if key(&r) == Some((ip, port)) {
                return true;
            }
        }
        self.connect.iter().any(|r| r.matches(&ip, port))
    }

    /// May the program `bind` to `addr` (to listen, or to receive
    /// datagrams)? Port 0 (the kernel picks) matches only `*` rules.
    pub fn listen_allowed(&self, addr: &SocketAddr) -> bool {
        let Some((ip, port)) = key(addr) else { return false };
        self.listen.iter().any(|r| r.matches(&ip, port))
    }

    /// May the program use the named unix socket at `path` (already
    /// resolved by the monitor)? Exact match after lexical normalisation.
    pub fn unix_path_allowed(&self, path: &Path) -> bool {
        match normalize_unix_path(path) {
            Some(p) => self.unix.contains(&p),
            None => false,
        }
    }

    /// May the program use the abstract unix socket `name` (the bytes
    /// after the leading NUL of `sun_path`)? Exact match; the empty name
    /// (autobind) never matches.
    pub fn abstract_allowed(&self, name: &[u8]) -> bool {
        !name.is_empty() && self.abstract_names.iter().any(|n| n.as_slice() == name)
    }

    /// The DNS resolver the policy names, if any.
    pub fn resolver(&self) -> Option<SocketAddr> {
        self.resolver
    }

    /// Adds `other`'s rules (the command-line flags to the file's section).
    /// A resolver in `other` replaces this one.
    pub fn merge(&mut self, other: &NetPolicy) {
        self.connect.extend(other.connect.iter().copied());
        self.listen.extend(other.listen.iter().copied());
        self.unix.extend(other.unix.iter().cloned());
        self.abstract_names.extend(other.abstract_names.iter().cloned());
        if other.resolver.is_some() {
            self.resolver = other.resolver;
        }
    }
}

/// (normalised address, port), or `None` when the address has a scope id.
fn key(addr: &SocketAddr) -> Option<(IpAddr, u16)> {
    if let SocketAddr::V6(v6) = addr {
        if v6.scope_id() != 0 {
            return None;
        }
    }
    Some((normalize_ip(addr.ip()), addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn policy(connect: &[&str], listen: &[&str]) -> NetPolicy {
        NetPolicy {
            connect: connect.iter().map(|r| parse_rule(r).expect("rule")).collect(),
            listen: listen.iter().map(|r| parse_rule(r).expect("rule")).collect(),
            ..NetPolicy::default()
        }
    }

    #[test]
    fn default_is_no_network() {
        let p = NetPolicy::default();
        assert!(p.is_empty());
        for a in ["127.0.0.1:80", "[::1]:80", "0.0.0.0:0", "[::ffff:127.0.0.1]:80"] {
            assert!(!p.connect_allowed(&sa(a)), "{a}");
            assert!(!p.listen_allowed(&sa(a)), "{a}");
        }
        assert!(!p.unix_path_allowed(Path::new("/run/docker.sock")));
        assert!(!p.abstract_allowed(b"x"));
        assert!(!p.abstract_allowed(b""));
        assert_eq!(p.resolver(), None);
    }

    #[test]
    fn mapped_ipv6_matches_the_ipv4_rule() {
        let p = policy(&["127.0.0.1:80"], &[]);
        assert!(p.connect_allowed(&sa("127.0.0.1:80")));
        assert!(p.connect_allowed(&sa("[::ffff:127.0.0.1]:80")));
        assert!(p.connect_allowed(&sa("[::127.0.0.1]:80")), "IPv4-compatible");
        assert!(p.connect_allowed(&sa("[64:ff9b::127.0.0.1]:80")), "NAT64");
        assert!(!p.connect_allowed(&sa("127.0.0.1:81")));
        assert!(!p.connect_allowed(&sa("127.0.0.2:80")));
    }

    #[test]
    fn mapped_outside_the_block_does_not_match() {
        let p = policy(&["127.0.0.0/8:*"], &[]);
        assert!(p.connect_allowed(&sa("127.1.2.3:9")));
        assert!(!p.connect_allowed(&sa("[::ffff:10.0.0.1]:9")));
        assert!(!p.connect_allowed(&sa("10.0.0.1:9")));
    }

    #[test]
    fn ipv6_rules_never_match_ipv4_traffic() {
        let p = policy(&["[::]/0:*"], &[]);
        assert!(p.connect_allowed(&sa("[2001:db8::1]:443")));
        assert!(p.connect_allowed(&sa("[::1]:443")));
        assert!(!p.connect_allowed(&sa("[::ffff:10.0.0.1]:443")));
        assert!(!p.connect_allowed(&sa("[64:ff9b::a00:1]:443")));
        assert!(!p.connect_allowed(&sa("10.0.0.1:443")));
    }

    #[test]
    fn loopback_and_unspecified_ipv6_stay_ipv6() {
        let p = policy(&["[::1]:1000-2000"], &["[::]:8080"]);
        assert!(p.connect_allowed(&sa("[::1]:1000")));
        assert!(p.connect_allowed(&sa("[::1]:2000")));
        assert!(!p.connect_allowed(&sa("[::1]:2001")));
        assert!(!p.connect_allowed(&sa("0.0.0.1:1000")));
        assert!(p.listen_allowed(&sa("[::]:8080")));
        assert!(!p.listen_allowed(&sa("0.0.0.0:8080")));
    }

    #[test]
    fn scope_ids_never_match() {
        let p = policy(&["[fe80::]/10:*"], &[]);
        assert!(p.connect_allowed(&sa("[fe80::1]:80")));
        let scoped = SocketAddr::V6(std::net::SocketAddrV6::new("fe80::1".parse().expect("ip"), 80, 0, 2));
        assert!(!p.connect_allowed(&scoped));
    }

    #[test]
    fn port_zero_binds_need_a_star_rule() {
        let p = policy(&[], &["127.0.0.1:8080", "127.0.0.2:*"]);
        assert!(p.listen_allowed(&sa("127.0.0.1:8080")));
        assert!(!p.listen_allowed(&sa("127.0.0.1:0")));
        assert!(p.listen_allowed(&sa("127.0.0.2:0")));
        assert!(!p.connect_allowed(&sa("127.0.0.1:8080")), "listen rules do not allow connect");
    }

    #[test]
    fn resolver_is_allowed_for_connect_only() {
        let mut p = NetPolicy {
            resolver: Some(parse_resolver("127.0.0.53").expect("resolver")),
            ..NetPolicy::default()
        };
        assert_eq!(p.resolver(), Some(sa("127.0.0.53:53")));
        assert!(p.connect_allowed(&sa("127.0.0.53:53")));
        assert!(p.connect_allowed(&sa("[::ffff:127.0.0.53]:53")));
        assert!(!p.connect_allowed(&sa("127.0.0.53:54")));
        assert!(!p.listen_allowed(&sa("127.0.0.53:53")));
        p.resolver = Some(parse_resolver("[::1]:5353").expect("resolver"));
        assert!(p.connect_allowed(&sa("[::1]:5353")));
    }

    fn err(rule: &str) -> String {
        match parse_rule(rule) {
            Ok(r) => panic!("`{rule}` parsed as {r}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rules_parse_and_print_back() {
        for (text, shown) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("10.0.0.0/8:443", "10.0.0.0/8:443"),
            ("[::1]:1000-2000", "[::1]:1000-2000"),
            ("[fd00::]/8:*", "[fd00::]/8:*"),
            ("[fd00::/8]:53", "[fd00::]/8:53"),
            ("0.0.0.0/0:1-65535", "0.0.0.0/0:1-65535"),
            (" 127.0.0.1:80 ", "127.0.0.1:80"),
            ("[::]/80:1", "[::]/80:1"),
        ] {
            let r = parse_rule(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.to_string(), shown);
            assert_eq!(parse_rule(&r.to_string()), Ok(r), "round trip of {text}");
        }
    }

    #[test]
    fn hostile_rules_are_refused_with_the_entry_named() {
        for (rule, says) in [
            ("example.com:80", "host name"),
            ("localhost:80", "host name"),
            ("127.0.0.1:0", "port 0"),
            ("127.0.0.1:65536", "above 65535"),
            ("127.0.0.1:99999999999999999999", "not a number"),
            ("127.0.0.1:2000-1000", "reversed"),
            ("127.0.0.1:-", "not a number"),
            ("127.0.0.1", "no port"),
            ("10.0.0.0/33:80", "longer than the address"),
            ("10.0.0.0/255:80", "longer than the address"),
            ("10.0.0.0/99999999999999:80", "not a number"),
            ("[::]/129:80", "longer than the address"),
            ("10.0.0.1/8:80", "bits set after the prefix"),
            ("::1:80", "needs brackets"),
            ("[::1]", "no port"),
            ("[::1:80", "without `]`"),
            ("[fe80::1%eth0]:80", "zone"),
            ("[fe80::1%2]:80", "zone"),
            ("[::ffff:127.0.0.1]:80", "write the IPv4 address"),
            ("[::ffff:0:0]/96:80", "write the IPv4 address"),
            ("[64:ff9b::10.0.0.1]:80", "write the IPv4 address"),
            ("[::10.0.0.1]:80", "write the IPv4 address"),
            ("[::1]/8:80", "bits set"),
            ("", "empty"),
            ("1.2.3.4/8/8:80", "not a number"),
            ("*:80", "`*` is not an address"),
            ("127.1:80", "not an IP address"),
            ("010.0.0.1:80", "not an IP address"),
        ] {
            let e = err(rule);
            assert!(e.contains(says), "`{rule}`: {e}");
            assert!(e.contains("bad network rule"), "`{rule}`: {e}");
        }
        let long = format!("{}:80", "1".repeat(100_000));
        assert!(err(&long).contains("too long"));
        assert!(err(&long).len() < 1000, "the message stays short");
        // Any byte soup is an error, never a panic.
        for s in ["[", "]", "[]:", ":", "/:", "[/]:1", "[::]/:1", "\u{0}:1", "é:1", "1.2.3.4:\u{660}"] {
            let _ = parse_rule(s);
        }
    }

    #[test]
    fn resolver_forms() {
        assert_eq!(parse_resolver("10.0.0.2:5353"), Ok(sa("10.0.0.2:5353")));
        assert_eq!(parse_resolver("[::1]"), Ok(sa("[::1]:53")));
        assert_eq!(parse_resolver("::1"), Ok(sa("[::1]:53")));
        for (bad, says) in [
            ("dns.google", "host name"),
            ("dns.google:53", "host name"),
            ("10.0.0.0/8", "not a block"),
            ("1.1.1.1:0", "port 0"),
            ("[fe80::1%2]:53", "zone"),
            ("", "not an address"),
        ] {
            let e = parse_resolver(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "`{bad}`: {e}");
        }
    }

    #[test]
    fn unix_paths_match_exactly() {
        let p = NetPolicy {
            unix: vec![parse_unix_path("/run//app/./app.sock").expect("path")],
            ..NetPolicy::default()
        };
        assert_eq!(p.unix, vec![PathBuf::from("/run/app/app.sock")]);
        assert!(p.unix_path_allowed(Path::new("/run/app/app.sock")));
        assert!(p.unix_path_allowed(Path::new("//run/app/./app.sock")));
        assert!(!p.unix_path_allowed(Path::new("/run/app")));
        assert!(!p.unix_path_allowed(Path::new("/run/app/other.sock")));
        assert!(!p.unix_path_allowed(Path::new("/run/docker.sock")));
        assert!(
            !p.unix_path_allowed(Path::new("/run/app/x/../app.sock")),
            ".. is for the monitor to resolve"
        );
        assert!(!p.unix_path_allowed(Path::new("run/app/app.sock")), "relative");
        assert!(!p.unix_path_allowed(Path::new("/run/app/app.sock\0")));
        for (bad, says) in [
            ("run/x.sock", "not absolute"),
            ("/run/../x.sock", "`..`"),
            ("/run/x/", "ends with"),
            ("/run/\0x", "NUL"),
            ("", "not absolute"),
        ] {
            let e = parse_unix_path(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "`{bad}`: {e}");
        }
        let long = format!("/{}", "a".repeat(200));
        assert!(parse_unix_path(&long).expect_err("long").to_string().contains("longer"));
    }

    #[test]
    fn abstract_names_match_byte_for_byte() {
        let name = parse_abstract("app\\x00x\\\\y").expect("name");
        assert_eq!(name, b"app\0x\\y");
        assert_eq!(abstract_text(&name), "app\\x00x\\\\y");
        let p = NetPolicy { abstract_names: vec![name.clone()], ..NetPolicy::default() };
        assert!(p.abstract_allowed(&name));
        assert!(!p.abstract_allowed(b"app"));
        assert!(!p.abstract_allowed(b"app\0x\\y\0"));
        assert!(!p.abstract_allowed(b""));
        for (bad, says) in
            [("", "empty"), ("a\\q", "unknown escape"), ("a\\x4", "two hex"), ("a\\xzz", "two hex")]
        {
            let e = parse_abstract(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "`{bad}`: {e}");
        }
        assert!(parse_abstract(&"a".repeat(108)).is_err());
        assert!(parse_abstract(&"a".repeat(107)).is_ok());
        assert!(parse_abstract(&"é".repeat(100_000)).is_err());
    }

    #[test]
    fn policy_file_network_section() {
        let text = r#"version = 1

[network]
connect = ["127.0.0.1:8080", "10.0.0.0/8:443", "[::1]:1000-2000"]
listen = ["0.0.0.0:8080"]
unix = ["/run/app.sock"]
abstract = ["app-bus"]
resolver = "127.0.0.53"
"#;
        let p = crate::Policy::parse("t.toml", text).expect("parses");
        let n = &p.network;
        assert_eq!(n.connect.len(), 3);
        assert_eq!(n.connect[1].loc.line, 4);
        assert!(n.connect_allowed(&sa("10.1.2.3:443")));
        assert!(n.connect_allowed(&sa("[::ffff:10.1.2.3]:443")));
        assert!(n.listen_allowed(&sa("0.0.0.0:8080")));
        assert!(n.unix_path_allowed(Path::new("/run/app.sock")));
        assert!(n.abstract_allowed(b"app-bus"));
        assert_eq!(n.resolver(), Some(sa("127.0.0.53:53")));
        // Written back, it reads the same.
        let again = crate::Policy::parse("t2.toml", &crate::render::to_toml(&p, &[])).expect("round trip");
        assert_eq!(
            again.network.connect.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            n.connect.iter().map(|r| r.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(
            (&again.network.unix, &again.network.abstract_names, again.network.resolver),
            (&n.unix, &n.abstract_names, n.resolver)
        );
    }

    #[test]
    fn policy_file_errors_name_the_line_and_entry() {
        for (body, line, says) in [
            ("connect = [\n  \"127.0.0.1:80\",\n  \"example.com:443\",\n]", 5, "`example.com:443`"),
            ("listen = [\"10.0.0.0/33:80\"]", 3, "`10.0.0.0/33:80`"),
            ("connect = [\"127.0.0.1:0\"]", 3, "port 0"),
            ("unix = [\"relative.sock\"]", 3, "not absolute"),
            ("abstract = [\"\"]", 3, "empty"),
            ("resolver = \"dns.example\"", 3, "host name"),
            ("bogus = 1", 3, "unknown field"),
        ] {
            let text = format!("version = 1\n[network]\n{body}\n");
            let e = crate::Policy::parse("p.toml", &text).expect_err(body);
            let msg = e.to_string();
            assert_eq!(e.position().map(|p| p.0), Some(line), "{body}: {msg}");
            assert!(msg.starts_with(&format!("p.toml:{line}:")), "{msg}");
            assert!(msg.contains(says), "{body}: {msg}");
        }
    }

    #[test]
    fn everywhere_is_warned_about() {
        let p = crate::Policy::parse("p.toml", "version = 1\n[network]\nconnect = [\"0.0.0.0/0:*\"]\n")
            .expect("ok");
        assert!(p.warnings.iter().any(|w| w.contains("every IPv4 address")), "{:?}", p.warnings);
    }

    /// A small deterministic generator (no timing, no external crate).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Hostile text never panics any parser: byte soup built from the
    /// characters the syntax uses, and mutations of valid rules.
    #[test]
    fn parsers_never_panic_on_hostile_text() {
        let alphabet: Vec<char> = "0123456789abcdefABCDEFxX:.[]/-*%@\\ \u{0}é\u{660}ffff".chars().collect();
        let seeds = ["127.0.0.1:80", "[::ffff:10.0.0.1]/128:1-2", "10.0.0.0/8:*", "\\x00ab", "/run/a.sock"];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let text: String = if i % 2 == 0 {
                let n = (rng.next() % 40) as usize;
                (0..n).map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize]).collect()
            } else {
                let mut t: Vec<char> = seeds[i % seeds.len()].chars().collect();
                for _ in 0..1 + rng.next() % 3 {
                    let at = (rng.next() % (t.len() as u64 + 1)) as usize;
                    let c = alphabet[(rng.next() % alphabet.len() as u64) as usize];
                    match rng.next() % 3 {
                        0 if at < t.len() => t[at] = c,
                        1 if at < t.len() => {
                            t.remove(at);
                        }
                        _ => t.insert(at, c),
                    }
                }
                t.into_iter().collect()
            };
            if let Ok(r) = parse_rule(&text) {
                // What parses prints back to itself, and is never in an
                // IPv4-carrying range.
                assert_eq!(parse_rule(&r.to_string()), Ok(r), "{text:?}");
                if let IpAddr::V6(a) = r.net.addr {
                    assert!(r.net.prefix < 96 || embeds_ipv4(&a).is_none(), "{text:?}");
                }
            }
            let _ = parse_resolver(&text);
            if let Ok(n) = parse_abstract(&text) {
                assert_eq!(parse_abstract(&abstract_text(&n)), Ok(n), "{text:?}");
            }
            if let Ok(p) = parse_unix_path(&text) {
                assert_eq!(normalize_unix_path(&p), Some(p.clone()), "{text:?}");
            }
        }
    }

    /// For every IPv4 address and rule, its three IPv6 spellings match
    /// exactly when the IPv4 address does, and no IPv6 rule matches any of them.
    #[test]
    fn ipv4_in_ipv6_matches_exactly_as_ipv4() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let v6_rules = policy(&["[::]/0:*", "[::fffe:0:0]/95:*", "[64:ff9b::]/95:*"], &[]);
        for _ in 0..5_000 {
            let a = Ipv4Addr::from(rng.next() as u32);
            let prefix = (rng.next() % 33) as u8;
            let net = masked(IpAddr::V4(Ipv4Addr::from(rng.next() as u32)), prefix);
            let rule = format!("{}/{prefix}:1-1000", net);
            let p = policy(&[&rule], &[]);
            let port = (rng.next() % 2000) as u16;
            let want = p.connect_allowed(&SocketAddr::new(IpAddr::V4(a), port));
            let [b0, b1, b2, b3] = a.octets();
            let (hi, lo) = (u16::from_be_bytes([b0, b1]), u16::from_be_bytes([b2, b3]));
            let mut forms = vec![
                Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, hi, lo),
                Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
            ];
            if u32::from(a) > 1 {
                forms.push(Ipv6Addr::new(0, 0, 0, 0, 0, 0, hi, lo));
            }
            for v6 in forms {
                let sa = SocketAddr::new(IpAddr::V6(v6), port);
                assert_eq!(p.connect_allowed(&sa), want, "{sa} against {rule}");
                assert!(!v6_rules.connect_allowed(&sa), "{sa} matched an IPv6 rule");
            }
        }
    }
}
