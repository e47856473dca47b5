//! Hostile use of the network calls (issue 19), `tests/programs/attack_network.c`
//! under a policy naming one loopback port (ALLOWED) for connect and
//! listen, with a native listener on another (DENIED: TCP and UDP), a host
//! daemon's unix socket in the run's writable tree (a stand-in for the
//! docker socket) and a host abstract name: every way around the rules is
//! refused (`EACCES`, one audit record naming the address each), hostile
//! lengths and families get Linux's errnos, options that reach past the
//! socket `ENOPROTOOPT`, and nothing ever reaches the native listeners. A
//! thread rewriting the destination while another sends cannot make the
//! monitor send to an address it did not check; a wild address pointer
//! ends the program (137), never the monitor.

use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::path::Path;
use std::sync::OnceLock;

use cabin_monitor::trace::TraceOptions;
use cabin_monitor::{EndReason, GateConfig, RunConfig, RunOutcome};
use cabin_policy::net::{parse_rule, NetPolicy};
use serde_json::Value;

use crate::common::{self, Backend};

on_both_backends!(
    every_way_around_the_network_rules_is_refused_and_audited,
    a_destination_rewritten_during_the_send_is_never_used,
    wild_address_pointers_end_the_program
);

/// The compiled program's image, built once.
fn built() -> Option<&'static Vec<u8>> {
    static B: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = common::scratch_dir("attack-network");
        let exe = common::compile("attack_network", &dir)?;
        Some(common::rewrite(&std::fs::read(&exe).expect("read program")))
    })
    .as_ref()
}

/// The native side: listeners the program must never reach.
struct Host {
    allowed: u16,
    denied: u16,
    tcp: std::net::TcpListener,
    udp: std::net::UdpSocket,
    _daemon: std::os::unix::net::UnixListener,
    _abstract: std::os::unix::net::UnixListener,
}

impl Host {
    fn new(dir: &Path) -> Host {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp listener");
        let denied = tcp.local_addr().expect("addr").port();
        tcp.set_nonblocking(true).expect("nonblocking");
        let udp = std::net::UdpSocket::bind(("127.0.0.1", denied)).expect("udp on the same port");
        udp.set_nonblocking(true).expect("nonblocking");
        let allowed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let daemon = std::os::unix::net::UnixListener::bind(dir.join("daemon.sock")).expect("daemon socket");
        let name = std::os::unix::net::SocketAddr::from_abstract_name(
            format!("cabin-host-daemon-{}", std::process::id()).as_bytes(),
        )
        .expect("abstract");
        // The program names "cabin-host-daemon" exactly: bind that too when
        // free (another run of this test may hold it: then the pid one).
        let exact =
            std::os::unix::net::SocketAddr::from_abstract_name(b"cabin-host-daemon").expect("abstract");
        let abs = std::os::unix::net::UnixListener::bind_addr(&exact)
            .or_else(|_| std::os::unix::net::UnixListener::bind_addr(&name))
            .expect("abstract listener");
        Host { allowed, denied, tcp, udp, _daemon: daemon, _abstract: abs }
    }

    /// Nothing reached the DENIED port.
    fn untouched(&self, what: &str) {
        assert!(self.tcp.accept().is_err(), "{what}: a connection reached the DENIED port");
        let mut b = [0u8; 16];
        assert!(self.udp.recv_from(&mut b).is_err(), "{what}: a datagram reached the DENIED port");
    }
}

fn run(b: Backend, mode: &str, dir: &Path, host: &Host, audit: Option<&Path>) -> (RunOutcome, String) {
    let img = built().expect("built");
    let out_path = dir.join(format!("out-{mode}"));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let rule = |s: String| parse_rule(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let (a, d) = (host.allowed, host.denied);
    let cfg = RunConfig {
        args: vec![
            "attack_network".into(),
            mode.into(),
            a.to_string(),
            d.to_string(),
            dir.display().to_string(),
        ],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        allow_write: vec![dir.to_path_buf()],
        network: NetPolicy {
            connect: vec![rule(format!("127.0.0.1:{a}")), rule(format!("[::1]:{a}"))],
            listen: vec![rule(format!("127.0.0.1:{a}"))],
            ..NetPolicy::default()
        },
        gate: GateConfig {
            trace: TraceOptions { audit: audit.map(Path::to_path_buf), ..TraceOptions::default() },
            ..GateConfig::default()
        },
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).expect("the monitor survives the run");
    drop(out);
    (o, std::fs::read_to_string(&out_path).unwrap_or_default())
}

/// The confined answers. EACCES marks a refusal by the network rules;
/// the other errnos are Linux's for the same request (a hostile length or
/// family) or the monitor's documented ones (docs/networking.md: options
/// not served ENOPROTOOPT; AF_PACKET/AF_NETLINK EAFNOSUPPORT; raw sockets
/// EPERM; AF_UNSPEC bind EAFNOSUPPORT).
const REFUSED: &str = "\
connect 127.0.0.1:DENIED                     -1 EACCES
connect 10.255.255.1:80                      -1 EACCES
connect 0.0.0.0:DENIED                       -1 EACCES
connect [::ffff:127.0.0.1]:DENIED            -1 EACCES
connect [::ffff:127.0.0.2]:ALLOWED           -1 EACCES
connect [::ffff:10.255.255.1]:80             -1 EACCES
connect [64:ff9b::10.255.255.1]:80           -1 EACCES
connect [::]:DENIED                          -1 EACCES
connect [::1]:DENIED                         -1 EACCES
udp connect 127.0.0.1:DENIED                 -1 EACCES
udp connect 127.0.0.1:ALLOWED                0
sendto DENIED on the connected socket        -1 EACCES
sendmsg msg_name DENIED                      -1 EACCES
sendmmsg msg_name DENIED                     -1 EACCES
udp6 sendto [::ffff:127.0.0.1]:DENIED        -1 EACCES
udp6 sendto AF_INET 127.0.0.1:DENIED         -1 EACCES
bind 127.0.0.1:DENIED                        -1 EACCES
bind 127.0.0.1:0                             0
listen on the ephemeral port                 -1 EACCES
listen without bind                          -1 EACCES
bind AF_UNSPEC                               -1 EAFNOSUPPORT
connect DIR/daemon.sock                      -1 EACCES
sendto DIR/daemon.sock                       -1 EACCES
bind DIR/mine.sock                           0
unlink it                                    0
symlink it to the daemon's                   0
connect DIR/mine.sock (now a symlink)        -1 EACCES
connect ./daemon.sock                        -1 EACCES
connect @cabin-host-daemon                   -1 EACCES
bind @cabin-squat                            -1 EACCES
connect addrlen 0                            -1 EINVAL
connect addrlen 1                            -1 EINVAL
connect addrlen 15                           -1 EINVAL
connect addrlen 129                          -1 EINVAL
connect addrlen 2^31                         -1 EINVAL
connect addrlen 2^32+16                      -1 ECONNREFUSED
connect AF_INET6 address, length 16          -1 EINVAL
connect family AF_PACKET                     -1 EAFNOSUPPORT
connect unterminated sun_path                -1 EACCES
bind unterminated sun_path                   -1 ENAMETOOLONG
connect sun_path length 111                  -1 EINVAL
SO_BINDTODEVICE                              -1 ENOPROTOOPT
SO_ATTACH_FILTER                             -1 ENOPROTOOPT
SO_MARK                                      -1 ENOPROTOOPT
TCP_ULP tls                                  -1 ENOPROTOOPT
IP_HDRINCL                                   -1 ENOPROTOOPT
SO_PEERCRED                                  -1 ENOPROTOOPT
set SO_ERROR                                 -1 ENOPROTOOPT
level 9999                                   -1 ENOPROTOOPT
setsockopt negative length                   -1 EINVAL
socket AF_PACKET                             -1 EAFNOSUPPORT
socket AF_NETLINK                            -1 EAFNOSUPPORT
socket inet SOCK_RAW                         -1 EPERM
socket inet ICMP datagram                    -1 EPROTONOSUPPORT
socket inet6 stream UDP                      -1 EPROTONOSUPPORT
";

fn every_way_around_the_network_rules_is_refused_and_audited(b: Backend) {
    if built().is_none() {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let host = Host::new(t.path());
    let audit = t.path().join("audit.jsonl");
    let (o, out) = run(b, "refused", t.path(), &host, Some(&audit));
    assert_eq!(o.exit_code, 0, "{:?}: {out}", o.reason);
    if out != REFUSED {
        for (i, (want, got)) in REFUSED.lines().zip(out.lines()).enumerate() {
            assert_eq!(got, want, "{b:?}: line {}:\n{out}", i + 1);
        }
        panic!("{b:?}: lengths differ:\n{out}");
    }
    host.untouched("refused");
    // One `denied` audit record per refusal, each naming the address.
    let log = std::fs::read_to_string(&audit).expect("audit log written");
    let denied: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|r| r["type"] == "syscall" && r["served"] == "denied")
        .filter(|r| r["rule"].as_str().is_some_and(|t| t.starts_with("[network]")))
        .collect();
    let rules: Vec<String> = denied.iter().filter_map(|r| r["rule"].as_str().map(str::to_string)).collect();
    // Each record carries the address as its `addr` field too.
    let first = &denied[0];
    assert_eq!(first["addr"], format!("127.0.0.1:{}", host.denied), "{first}");
    assert!(denied.iter().all(|r| r["addr"].is_string()), "{b:?}: a record without addr");
    let refusals = out.lines().filter(|l| l.ends_with("EACCES")).count();
    assert_eq!(rules.len(), refusals, "{b:?}: one record per refusal:\n{}", rules.join("\n"));
    let d = host.denied;
    let dir = t.path().display();
    for want in [
        format!("[network] connect 127.0.0.1:{d}:"),
        "[network] connect 10.255.255.1:80:".to_string(),
        format!("[network] connect 0.0.0.0:{d}:"),
        format!("[network] connect [::ffff:127.0.0.1]:{d}:"),
        "[network] connect [64:ff9b::aff:ff01]:80:".into(),
        format!("[network] sendto 127.0.0.1:{d}:"),
        format!("[network] sendmsg 127.0.0.1:{d}:"),
        format!("[network] bind 127.0.0.1:{d}:"),
        "[network] listen 127.0.0.1:".into(),
        format!("[network] connect unix:{dir}/daemon.sock:"),
        format!("[network] sendto unix:{dir}/daemon.sock:"),
        format!("[network] connect unix:{dir}/mine.sock:"),
        "[network] connect unix:./daemon.sock:".into(),
        "[network] connect unix:@cabin-host-daemon:".into(),
        "[network] bind unix:@cabin-squat:".into(),
    ] {
        assert!(
            rules.iter().any(|r| r.starts_with(&want)),
            "{b:?}: no record {want:?} in:\n{}",
            rules.join("\n")
        );
    }
}

fn a_destination_rewritten_during_the_send_is_never_used(b: Backend) {
    if built().is_none() {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let host = Host::new(t.path());
    let (o, out) = run(b, "race", t.path(), &host, None);
    assert_eq!(o.exit_code, 0, "{:?}: {out}", o.reason);
    assert!(out.starts_with("race sent ") && out.ends_with("total 3000\n"), "{b:?}: {out}");
    host.untouched("race");
}

fn wild_address_pointers_end_the_program(b: Backend) {
    if built().is_none() {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let host = Host::new(t.path());
    for mode in ["wild-addr", "wild-sendto-addr"] {
        let (o, out) = run(b, mode, t.path(), &host, None);
        assert_eq!(o.exit_code, 137, "{mode}: {:?}: {out}", o.reason);
        assert!(matches!(o.reason, EndReason::ProtocolViolation(_)), "{mode}: {:?}", o.reason);
        assert!(out.is_empty(), "{mode}: {out}");
    }
}
