//! Networking under policy (issue 19), end to end on loopback:
//! `tests/programs/network.c` prints what Linux decides for TCP client and
//! server (a server thread), shutdown semantics, EADDRINUSE, ECONNREFUSED,
//! non-blocking connect with poll and SO_ERROR, an epoll-driven accept
//! loop, UDP (with sendmmsg/recvmmsg), IPv6, unix stream/dgram/seqpacket
//! sockets on paths the run binds (and autobind), socket options
//! (SO_RCVTIMEO honoured by a blocking receive) and ENOTSOCK; the confined
//! run on each backend, under a network policy naming exactly the loopback
//! ports the test picked, must print the same lines and exit as the native
//! run.
//!
//! Needs `gcc` with static glibc (NOT RUN otherwise); the KVM variants say
//! `KVM test NOT RUN` where /dev/kvm is not usable; the IPv6 case says
//! `IPv6 test NOT RUN` where the host has no `::1`.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cabin_monitor::RunConfig;
use cabin_policy::net::{parse_rule, NetPolicy};
use common::Backend;

on_both_backends!(
    tcp,
    nonblocking_connect,
    epoll_accept_loop,
    udp,
    ipv6,
    unix_sockets,
    socket_options,
    not_sockets,
    threads_blocked_in_accept_and_recv_stall_nothing,
    receives_show_the_peer_in_the_trace
);

/// The compiled program and its image, built once.
fn built() -> Option<&'static (PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = common::scratch_dir("network");
        let exe = common::compile("network", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
        Some((exe, img))
    })
    .as_ref()
}

/// A loopback port free on 127.0.0.1 (and on ::1 when the host has it) now.
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let p = l.local_addr().expect("addr").port();
        drop(l);
        if !has_ipv6() || std::net::TcpListener::bind(("::1", p)).is_ok() {
            return p;
        }
    }
}

fn has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// The policy the confined runs get: connect to both ports, listen on
/// both, on 127.0.0.1 and ::1 only.
fn policy(port: u16, other: u16) -> NetPolicy {
    let rule = |s: String| parse_rule(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
    NetPolicy {
        connect: vec![
            rule(format!("127.0.0.1:{port}")),
            rule(format!("127.0.0.1:{other}")),
            rule(format!("[::1]:{port}")),
            rule(format!("[::1]:{other}")),
        ],
        listen: vec![
            rule(format!("127.0.0.1:{port}")),
            rule(format!("[::1]:{port}")),
            rule(format!("127.0.0.1:{other}")),
        ],
        ..NetPolicy::default()
    }
}

/// Runs MODE natively and confined (each with ports of its own) and
/// compares.
fn matches_native(b: Backend, mode: &str) {
    let Some((exe, img)) = built() else { return };
    let native = {
        let t = tempfile::tempdir().expect("tempdir");
        let (p, o) = (free_port(), free_port());
        let out = std::process::Command::new(exe)
            .args([mode, &p.to_string(), &o.to_string(), path_str(t.path())])
            .output()
            .expect("run natively");
        assert_eq!(out.status.code(), Some(0), "natively: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let t = tempfile::tempdir().expect("tempdir");
    let (p, o) = (free_port(), free_port());
    let out_path = t.path().join("stdout");
    let sock_dir = t.path().join("socks");
    std::fs::create_dir(&sock_dir).expect("dir");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["network".into(), mode.into(), p.to_string(), o.to_string(), path_str(&sock_dir).into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        allow_write: vec![sock_dir.clone()],
        network: policy(p, o),
        ..RunConfig::default()
    };
    let r = b.run(img, &cfg).expect("the run happens");
    drop(out);
    let got = std::fs::read_to_string(&out_path).unwrap_or_default();
    if got != native {
        for (i, (a, c)) in native.lines().zip(got.lines()).enumerate() {
            if a != c {
                panic!(
                    "{b:?} {mode}: line {} differs:\n native: {a}\n cabin:  {c}\n(exit {} {:?})\n{got}",
                    i + 1,
                    r.exit_code,
                    r.reason
                );
            }
        }
        panic!("{b:?} {mode}: outputs differ in length:\n{got}\n--- native:\n{native}\n{:?}", r.reason);
    }
    assert_eq!(r.exit_code, 0, "{b:?} {mode}: {:?}", r.reason);
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

fn tcp(b: Backend) {
    matches_native(b, "tcp");
}

fn nonblocking_connect(b: Backend) {
    matches_native(b, "nonblock");
}

fn epoll_accept_loop(b: Backend) {
    matches_native(b, "epoll");
}

fn udp(b: Backend) {
    matches_native(b, "udp");
}

fn ipv6(b: Backend) {
    if !has_ipv6() {
        println!("IPv6 test NOT RUN: the host has no ::1");
        return;
    }
    matches_native(b, "ipv6");
}

fn unix_sockets(b: Backend) {
    matches_native(b, "unix");
}

fn socket_options(b: Backend) {
    matches_native(b, "options");
}

fn not_sockets(b: Backend) {
    matches_native(b, "notsock");
}

/// One thread blocked in `accept` and one in `recv` (served without the
/// service lock) while the main thread makes a UDP exchange and ends the
/// run with `exit`: nothing waits for them.
fn threads_blocked_in_accept_and_recv_stall_nothing(b: Backend) {
    matches_native(b, "blocked");
}

/// The UDP exchange with a JSON trace: `recvfrom`, `recvmsg` and
/// `recvmmsg` records carry the peer the host reported (`addr`), as
/// `connect` and `sendto` carry the address the program named.
fn receives_show_the_peer_in_the_trace(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let (p, o) = (free_port(), free_port());
    let out = std::fs::File::create(t.path().join("stdout")).expect("stdout file");
    let trace = t.path().join("trace.jsonl");
    let cfg = RunConfig {
        args: vec!["network".into(), "udp".into(), p.to_string(), o.to_string(), path_str(t.path()).into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        network: policy(p, o),
        gate: cabin_monitor::GateConfig {
            trace: cabin_monitor::trace::TraceOptions {
                trace: Some(Some(trace.clone())),
                format: cabin_monitor::trace::TraceFormat::Jsonl,
                ..Default::default()
            },
            ..Default::default()
        },
        ..RunConfig::default()
    };
    let r = b.run(img, &cfg).expect("the run happens");
    assert_eq!(r.exit_code, 0, "{b:?}: {:?}", r.reason);
    let text = std::fs::read_to_string(&trace).expect("trace written");
    let recs: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r: &serde_json::Value| r["type"] == "syscall")
        .collect();
    let addr_of = |name: &str| -> Vec<String> {
        recs.iter()
            .filter(|r| r["name"] == name)
            .filter_map(|r| r["addr"].as_str().map(str::to_string))
            .collect()
    };
    // The client's ephemeral port is the kernel's: the address is 127.0.0.1.
    for call in ["recvfrom", "recvmsg"] {
        let got = addr_of(call);
        assert!(got.iter().any(|a| a.starts_with("127.0.0.1:")), "{b:?}: no peer on {call}: {got:?}\n{text}");
    }
    assert!(addr_of("sendto").contains(&format!("127.0.0.1:{p}")), "{b:?}: sendto shows the destination");
}
