//! Name resolution of a static glibc program (issue 19):
//! `tests/programs/resolve.c` calls `getaddrinfo` for `localhost` (NSS
//! "files": /etc/nsswitch.conf and /etc/hosts, read under `--allow-read
//! /etc`) and for a name only a DNS server knows, asked of a loopback DNS
//! stub this test runs natively (NSS "dns": UDP to 127.0.0.1:PORT under a
//! `[network] connect` rule naming exactly that port); a name the stub does
//! not know fails as natively. The confined run on each backend must print
//! what the native run prints, and the stub must have been asked.
//!
//! Needs `gcc` with static glibc (NOT RUN otherwise) and a host whose
//! /etc/nsswitch.conf says `hosts: files dns` and whose /etc/hosts names
//! `localhost` (NOT RUN otherwise); the KVM variant says `KVM test NOT RUN`
//! where /dev/kvm is not usable.

#[macro_use]
mod common;

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cabin_monitor::RunConfig;
use cabin_policy::net::{parse_rule, NetPolicy};
use common::Backend;

on_both_backends!(getaddrinfo_resolves_through_hosts_and_a_dns_stub);

const NAME: &str = "service.cabin-test.example";

fn built() -> Option<&'static (PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = common::scratch_dir("resolve");
        let exe = common::compile("resolve", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
        Some((exe, img))
    })
    .as_ref()
}

/// A DNS server on 127.0.0.1 that knows one name: `NAME` A 127.0.0.42.
/// Other names: NXDOMAIN; other types: no answer. Stops when told or
/// after two minutes, whichever is first.
struct Stub {
    port: u16,
    asked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stub {
    fn start() -> Stub {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the stub");
        sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let port = sock.local_addr().expect("addr").port();
        let (asked, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (a, s) = (asked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut b = [0u8; 512];
            while !s.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(120) {
                let Ok((n, from)) = sock.recv_from(&mut b) else { continue };
                if let Some(reply) = answer(&b[..n]) {
                    a.fetch_add(1, Ordering::Relaxed);
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        Stub { port, asked, stop, thread: Some(thread) }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reply to DNS query `q` (one question), or `None` for garbage.
fn answer(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let l = *q.get(i)? as usize;
        i += 1;
        if l == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + l)?).to_lowercase());
        i += l;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let end = i + 4;
    q.get(..end)?;
    let known = labels.join(".") == NAME;
    let has_answer = known && qtype == 1;
    let mut r = Vec::with_capacity(end + 16);
    r.extend_from_slice(&q[..2]); // id
    let rcode = if known { 0 } else { 3 }; // NOERROR / NXDOMAIN
    r.extend_from_slice(&[0x81, 0x80 | rcode]); // response, RD, RA
    r.extend_from_slice(&[0, 1, 0, u8::from(has_answer), 0, 0, 0, 0]);
    r.extend_from_slice(&q[12..end]);
    if has_answer {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 42]);
    }
    Some(r)
}

/// Whether this host resolves `localhost` through files then DNS.
fn host_fits() -> bool {
    let nss = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let fits = nss.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.first() == Some(&"hosts:") && w.get(1) == Some(&"files") && w.get(2) == Some(&"dns")
    }) && hosts
        .lines()
        .any(|l| l.split_whitespace().next() == Some("127.0.0.1") && l.contains("localhost"));
    if !fits {
        println!("resolve test NOT RUN: /etc/nsswitch.conf does not say `hosts: files dns` or /etc/hosts lacks localhost");
    }
    fits
}

fn getaddrinfo_resolves_through_hosts_and_a_dns_stub(b: Backend) {
    let Some((exe, img)) = built() else { return };
    if !host_fits() {
        return;
    }
    let native = {
        let stub = Stub::start();
        let o = std::process::Command::new(exe)
            .args([&stub.port.to_string(), NAME])
            .output()
            .expect("run natively");
        assert_eq!(o.status.code(), Some(0), "natively: {}", String::from_utf8_lossy(&o.stderr));
        assert!(stub.asked.load(Ordering::Relaxed) > 0, "natively: the stub was not asked");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(native.contains(&format!("{NAME}: 127.0.0.42 port 80")), "natively:\n{native}");
    let stub = Stub::start();
    let t = tempfile::tempdir().expect("tempdir");
    let out_path = t.path().join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let rule = format!("127.0.0.1:{}", stub.port);
    let cfg = RunConfig {
        args: vec!["resolve".into(), stub.port.to_string(), NAME.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        allow_read: vec!["/etc".into()],
        network: NetPolicy { connect: vec![parse_rule(&rule).expect("rule")], ..NetPolicy::default() },
        ..RunConfig::default()
    };
    let r = b.run(img, &cfg).expect("the run happens");
    drop(out);
    let got = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert_eq!(got, native, "{b:?}: confined output differs ({:?})", r.reason);
    assert_eq!(r.exit_code, 0, "{b:?}: {:?}", r.reason);
    assert!(stub.asked.load(Ordering::Relaxed) > 0, "{b:?}: the stub was not asked");
}
