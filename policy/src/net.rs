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
            Some(p) => self.unix.iter().any(|u| *u == p),
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
}
