//! samples/rust-http (issue 19): a hyper/tokio HTTP/1.1 server and a std::net
//! HTTP/1.1 client built with `cargo cabin build`, run confined on both
//! backends against native peers on 127.0.0.1 (ports chosen free at run
//! time):
//!
//! - the confined server answers a native client (curl when installed, else
//!   the sample's client run natively) with the same status and bytes as the
//!   native server (the raw answers too, headers included, the date masked),
//!   stays up under `wrk` (when installed) and stops on SIGTERM as natively;
//! - the confined client fetches from a native server (a tiny one in this
//!   test) and prints what the native client prints, with the same status;
//! - without a network policy the server's bind fails with EACCES and the
//!   refusal is in the audit log (`--audit`) with the address; the client's
//!   connect likewise.
//!
//! The sample is built once per test binary into `CARGO_TARGET_TMPDIR`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn cabinc() -> Option<PathBuf> {
    let c = Path::new(env!("CARGO_BIN_EXE_cargo-cabin")).with_file_name("cabinc");
    if !c.is_file() {
        cabin_tests::not_run("cabinc run", &format!("{} is not built", c.display()));
        return None;
    }
    Some(c)
}

/// The confined backends to try: process, and kvm when usable (else NOT RUN).
fn backends() -> Vec<&'static str> {
    let kvm_usable = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(|_| ());
    let mut b = vec!["process"];
    if cabin_tests::kvm_available(kvm_usable) {
        b.push("kvm");
    }
    b
}

/// The sample's debug build directory (x86_64-unknown-linux-gnu/debug), built
/// once; `None` (NOT RUN) when crates.io cannot be reached.
fn built() -> Option<&'static Path> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rust-http");
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/rust-http");
            let o = Command::new(env!("CARGO_BIN_EXE_cargo-cabin"))
                .args(["cabin", "build"])
                .current_dir(&dir)
                .env("CARGO_TARGET_DIR", &target)
                .env_remove("RUSTFLAGS")
                .output()
                .expect("cargo-cabin");
            let (_, err) = text(&o);
            if !o.status.success() && (err.contains("failed to download") || err.contains("failed to get")) {
                cabin_tests::not_run("rust-http sample", &format!("crates.io is not reachable: {err}"));
                return None;
            }
            assert!(o.status.success(), "cargo cabin build failed: {err}");
            Some(target.join("x86_64-unknown-linux-gnu/debug"))
        })
        .as_deref()
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0)).expect("bind 0").local_addr().expect("addr").port()
}

/// A server started by a test; stopped (SIGTERM, SIGKILL after 20 s) by
/// [`Server::stop`] or, failing that, killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    /// Starts `cmd` and waits (at most 60 s) until 127.0.0.1:`port` accepts
    /// a connection; `Err` with the output when the server exits first.
    fn start(mut cmd: Command, port: u16) -> Result<Server, (Option<i32>, String, String)> {
        let child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let mut s = Server { child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if s.child.try_wait().expect("try_wait").is_some() {
                let (code, out, err) = s.stop();
                return Err((code, out, err));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(s);
            }
            assert!(Instant::now() < deadline, "the server did not listen on {port} within 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited in 20 s: status and output.
    fn stop(&mut self) -> (Option<i32>, String, String) {
        if self.child.try_wait().expect("try_wait").is_none() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.child.try_wait().expect("try_wait").is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let status = self.child.wait().expect("wait");
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut out).expect("stdout");
        }
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).expect("stderr");
        }
        (status.code(), out, err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a native client gets from `url`: curl's body and status code when
/// curl is installed, else the sample's client run natively (body and exit
/// status).
fn fetch(dir: &Path, url: &str) -> (Vec<u8>, String) {
    let curl =
        Command::new("curl").args(["-s", "-S", "--max-time", "60", "-w", "\n%{http_code}", url]).output();
    match curl {
        Ok(o) if o.status.code() != Some(127) => {
            assert!(o.status.success(), "curl {url}: {}", text(&o).1);
            let mut body = o.stdout;
            let nl = body.iter().rposition(|&b| b == b'\n').expect("curl's -w line");
            let code = String::from_utf8_lossy(&body[nl + 1..]).into_owned();
            body.truncate(nl);
            (body, format!("HTTP {code}"))
        }
        _ => {
            let o = Command::new(dir.join("http-client")).arg(url).output().expect("http-client");
            (o.stdout, format!("exit {:?}", o.status.code()))
        }
    }
}

const PATHS: [&str; 4] = ["/", "/bytes/100000", "/bytes/0", "/nope"];

/// The whole answer to a raw `GET path` (`Connection: close`), status line,
/// headers and body, with the `date` header's value masked (it differs
/// from second to second).
fn raw(port: u16, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut a = Vec::new();
    s.read_to_end(&mut a).expect("receive");
    if let Some(i) = a.windows(8).position(|w| w.eq_ignore_ascii_case(b"\r\ndate: ")) {
        if let Some(n) = a[i + 8..].windows(2).position(|w| w == b"\r\n") {
            a.splice(i + 8..i + 8 + n, *b"(masked)");
        }
    }
    a
}

/// The confined server answers curl (or the native client) as the native
/// server does on both backends, survives wrk's 32 connections, and stops
/// on SIGTERM with status 0 like the native one.
#[test]
fn confined_server_answers_as_the_native_one() {
    let (Some(cabinc), Some(dir)) = (cabinc(), built()) else { return };
    let port = free_port();
    let mut native = Command::new(dir.join("http-server"));
    native.args([format!("127.0.0.1:{port}"), "2".into()]).env_clear();
    let mut srv = Server::start(native, port).expect("native server");
    let want: Vec<_> = PATHS.iter().map(|p| fetch(dir, &format!("http://127.0.0.1:{port}{p}"))).collect();
    let want_raw: Vec<_> = PATHS.iter().map(|p| raw(port, p)).collect();
    assert!(want_raw[0].starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&want_raw[0]));
    assert!(want_raw[0].ends_with(b"\r\n\r\nHello, world!"), "{}", String::from_utf8_lossy(&want_raw[0]));
    let (code, out, err) = srv.stop();
    assert_eq!(code, Some(0), "native server: {out}{err}");
    assert_eq!(want[0], (b"Hello, world!".to_vec(), want[0].1.clone()));
    assert_eq!(want[1].0.len(), 100_000);
    let wrk = Command::new("wrk").arg("--version").output().is_ok();
    if !wrk {
        cabin_tests::not_run("wrk load on the confined server", "wrk is not installed (apt-get install wrk)");
    }
    for backend in backends() {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut c = Command::new(&cabinc);
        c.args(["run", "-q", "--backend", backend, "--allow-listen", &addr])
            .arg(dir.join("http-server.cabin"))
            .args(["--", &addr, "2"]);
        let mut srv = Server::start(c, port).unwrap_or_else(|e| panic!("{backend}: server ended: {e:?}"));
        for (p, w) in PATHS.iter().zip(&want) {
            let got = fetch(dir, &format!("http://{addr}{p}"));
            assert!(got == *w, "{backend} {p}: {:?} != {:?}", got.1, w.1);
        }
        for (p, w) in PATHS.iter().zip(&want_raw) {
            let got = raw(port, p);
            assert!(got == *w, "{backend} {p}: the raw answers differ");
        }
        if wrk {
            let o = Command::new("wrk")
                .args(["-t2", "-c32", "-d1s", &format!("http://{addr}/")])
                .output()
                .expect("wrk");
            let (wout, werr) = text(&o);
            assert!(o.status.success() && wout.contains("Requests/sec:"), "{backend}: wrk: {wout}{werr}");
            assert!(!wout.contains("Non-2xx"), "{backend}: wrk: {wout}");
            // Still serving, the same bytes.
            assert_eq!(fetch(dir, &format!("http://{addr}/")), want[0], "{backend} after wrk");
        }
        let (code, out, err) = srv.stop();
        assert_eq!(code, Some(0), "{backend}: {out}{err}");
        assert!(out.starts_with(&format!("listening on {addr}\nserved ")), "{backend}: {out}");
        assert!(!err.contains("cabin:"), "{backend}: {err}");
    }
}

/// A tiny native HTTP/1.1 server on 127.0.0.1: fixed answers by path (one
/// chunked), one connection at a time, until the test ends.
fn tiny_server() -> u16 {
    let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req).lines().next().unwrap_or_default().to_string();
            let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
            let big: String = (0..50_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let resp = match path.as_str() {
                "/" => "HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\nhello from the test server\n".to_string(),
                "/chunked" => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nchunk \r\n4\r\none\n\r\n0\r\n\r\n"
                    .to_string(),
                "/big" => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{big}", big.len()),
                _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot here\r\n".to_string(),
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    port
}

/// The confined client prints what the native client prints (body bytes,
/// stderr's status line for a 404, exit status) on both backends.
#[test]
fn confined_client_fetches_as_the_native_one() {
    let (Some(cabinc), Some(dir)) = (cabinc(), built()) else { return };
    let port = tiny_server();
    let addr = format!("127.0.0.1:{port}");
    for path in ["/", "/chunked", "/big", "/missing"] {
        let url = format!("http://{addr}{path}");
        let native = Command::new(dir.join("http-client")).arg(&url).output().expect("native client");
        let want = (native.stdout.clone(), text(&native).1, native.status.code());
        assert_eq!(want.2, Some(if path == "/missing" { 1 } else { 0 }), "{path}: {}", want.1);
        for backend in backends() {
            let o = Command::new(&cabinc)
                .args(["run", "-q", "--backend", backend, "--allow-connect", &addr])
                .arg(dir.join("http-client.cabin"))
                .args(["--", &url])
                .output()
                .expect("cabinc run");
            let got = (o.stdout.clone(), text(&o).1, o.status.code());
            assert!(got == want, "{backend} {path}: {:?} != {:?}", (&got.1, got.2), (&want.1, want.2));
        }
    }
}

/// No network policy: the server's bind is refused with EACCES (the
/// program says so and exits 1) and audited with the address and the rule;
/// the client's connect likewise (exit 3).
#[test]
fn without_a_policy_bind_and_connect_are_refused_and_audited() {
    let (Some(cabinc), Some(dir)) = (cabinc(), built()) else { return };
    let tiny = tiny_server();
    let t = tempfile::tempdir().expect("tmp");
    let audit = t.path().join("audit.jsonl");
    let run = |backend: &str, image: &str, args: &[&str]| {
        let o = Command::new(&cabinc)
            .args(["run", "-q", "--backend", backend, "--audit"])
            .arg(&audit)
            .arg(dir.join(image))
            .arg("--")
            .args(args)
            .output()
            .expect("cabinc run");
        let records = std::fs::read_to_string(&audit).expect("audit log");
        (o, records)
    };
    for backend in backends() {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let (o, audit) = run(backend, "http-server.cabin", &[&addr, "2"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{backend}: {out}{err}");
        assert!(
            err.contains(&format!("http-server: cannot listen on {addr}: Permission denied (os error 13)")),
            "{backend}: {err}"
        );
        let bind =
            audit.lines().find(|l| l.contains(r#""name":"bind""#)).unwrap_or_else(|| panic!("{audit}"));
        assert!(bind.contains(r#""errno":"EACCES""#) && bind.contains(r#""served":"denied""#), "{bind}");
        assert!(bind.contains(&format!("[network] bind {addr}")), "{backend}: {bind}");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "{backend}: nothing listens on {addr}");

        let url = format!("http://127.0.0.1:{tiny}/");
        let (o, audit) = run(backend, "http-client.cabin", &[&url]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(3), "{backend}: {out}{err}");
        assert!(out.is_empty(), "{backend}: {out}");
        assert!(err.contains("Permission denied (os error 13)"), "{backend}: {err}");
        let connect =
            audit.lines().find(|l| l.contains(r#""name":"connect""#)).unwrap_or_else(|| panic!("{audit}"));
        assert!(connect.contains(r#""errno":"EACCES""#), "{connect}");
        assert!(connect.contains(&format!("127.0.0.1:{tiny}")), "{backend}: {connect}");
    }
}

/// With glibc's default arenas each tokio worker mallocs from its own arena
/// in the reservation space, so hyper's read buffers straddle committed page
/// runs whose arena pages are not contiguous: the monitor passes such a
/// buffer in pieces (`GuestMemory::host_pieces`); before, `recvfrom` of one
/// was a ring protocol violation that ended the server under wrk's 32
/// connections.
#[test]
fn default_arenas_under_concurrent_load() {
    let (Some(cabinc), Some(dir)) = (cabinc(), built()) else { return };
    for backend in backends() {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut c = Command::new(&cabinc);
        c.args(["run", "-q", "--backend", backend, "--allow-listen", &addr])
            .arg(dir.join("http-server.cabin"))
            .args(["--", &addr, "2"]);
        let mut srv = Server::start(c, port).unwrap_or_else(|e| panic!("{backend}: server ended: {e:?}"));
        let o = Command::new("wrk")
            .args(["-t2", "-c32", "-d2s", &format!("http://{addr}/")])
            .output()
            .expect("wrk");
        let (code, out, err) = srv.stop();
        assert_eq!(code, Some(0), "{backend}: {out}{err}\nwrk: {}", text(&o).0);
    }
}
