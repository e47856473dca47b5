//! The direct data plane of connected sockets (process backend;
//! docs/networking.md, "The direct data plane"), with
//! `tests/programs/netsock.c`:
//!
//! - `data_calls_match_native`: every data call the libos makes natively,
//!   and the cases around them (blocking waits and long blocking writes
//!   finished by the monitor, `EAGAIN`, `EPIPE` with and without `SIGPIPE`,
//!   `poll`/`epoll` over a socket and a pipe, `dup`, `dup2` onto stderr and
//!   of a pipe over the socket, close and reuse of the number, `fork`,
//!   `shutdown`), equal to the native run on both backends (KVM forwards
//!   everything);
//! - `data_calls_match_native_with_a_trace`: the same with a JSON trace
//!   (process backend), where no socket is handed over and every read and
//!   write on the accepted socket is in the trace;
//! - `a_policy_that_refuses_a_data_call_still_binds` (process backend): a
//!   policy that denies `sendto` refuses the program's `send` on a
//!   connected socket, and no socket is handed over;
//! - `forged_native_calls_reach_only_the_sockets_given` (process backend):
//!   the native forms forged through an unrewritten `syscall` on numbers
//!   outside the range, without the mark, with an address, `MSG_FASTOPEN`,
//!   `MSG_ERRQUEUE`, `dup3`/`dup2` out of the range, `connect` and
//!   `setsockopt(SO_BINDTODEVICE)`, a socket passed with `SCM_RIGHTS` by its
//!   native number, a UDP socket connected elsewhere, and the native copies
//!   gone after `dup2`, `close` and in a forked child; the monitor survives
//!   and the program ends normally.
//!
//! Needs `gcc` with static glibc (NOT RUN otherwise); KVM variants say
//! `KVM test NOT RUN` where /dev/kvm is not usable.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::OnceLock;

use cabin_monitor::RunConfig;
use cabin_policy::net::{parse_rule, NetPolicy};
use common::Backend;

on_both_backends!(data_calls_match_native);

fn built() -> Option<&'static (PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = common::scratch_dir("netsock");
        let exe = common::compile("netsock", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
        Some((exe, img))
    })
    .as_ref()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("addr").port()
}

/// Connect to and listen on 127.0.0.1:`port` only.
fn policy(port: u16) -> NetPolicy {
    let rule = |s: String| parse_rule(&s).unwrap_or_else(|e| panic!("{s}: {e}"));
    NetPolicy {
        connect: vec![rule(format!("127.0.0.1:{port}"))],
        listen: vec![rule(format!("127.0.0.1:{port}"))],
        ..NetPolicy::default()
    }
}

/// Runs `args` (after the program name) confined on `b` with `policy(port)`
/// and `gate`; (stdout, exit code, reason).
fn confined(
    b: Backend,
    img: &[u8],
    args: &[String],
    port: u16,
    gate: cabin_monitor::GateConfig,
) -> (String, i32) {
    let t = tempfile::tempdir().expect("tempdir");
    let out_path = t.path().join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let mut all = vec!["netsock".to_string()];
    all.extend(args.iter().cloned());
    let cfg = RunConfig {
        args: all,
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        network: policy(port),
        gate,
        ..RunConfig::default()
    };
    let r = b.run(img, &cfg).expect("the run happens");
    drop(out);
    let got = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert_eq!(r.exit_code, 0, "{b:?} {args:?}: {:?}\n{got}", r.reason);
    (got, r.exit_code)
}

fn native_data() -> Option<String> {
    let (exe, _) = built()?;
    let out = std::process::Command::new(exe)
        .args(["data", &free_port().to_string()])
        .output()
        .expect("run natively");
    assert_eq!(out.status.code(), Some(0), "natively: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn same(b: Backend, native: &str, got: &str) {
    for (i, (a, c)) in native.lines().zip(got.lines()).enumerate() {
        assert_eq!(a, c, "{b:?}: line {} differs\n{got}", i + 1);
    }
    assert_eq!(native.lines().count(), got.lines().count(), "{b:?}:\n{got}\n--- native:\n{native}");
}

fn data_calls_match_native(b: Backend) {
    let Some(native) = native_data() else { return };
    let Some((_, img)) = built() else { return };
    let port = free_port();
    let (got, _) = confined(b, img, &["data".into(), port.to_string()], port, Default::default());
    same(b, &native, &got);
}

#[test]
fn data_calls_match_native_with_a_trace() {
    let Some(native) = native_data() else { return };
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let trace = t.path().join("trace.jsonl");
    let gate = cabin_monitor::GateConfig {
        trace: cabin_monitor::trace::TraceOptions {
            trace: Some(Some(trace.clone())),
            format: cabin_monitor::trace::TraceFormat::Jsonl,
            ..Default::default()
        },
        ..Default::default()
    };
    let port = free_port();
    let (got, _) = confined(Backend::Process, img, &["data".into(), port.to_string()], port, gate);
    same(Backend::Process, &native, &got);
    let text = std::fs::read_to_string(&trace).expect("the trace");
    let count = |name: &str| text.lines().filter(|l| l.contains(&format!("\"name\":\"{name}\""))).count();
    // Every read and write of the accepted socket went to the monitor.
    assert!(
        count("recvfrom") >= 4 && count("readv") >= 1 && count("writev") >= 2,
        "{}",
        &text[..text.len().min(4000)]
    );
    assert!(count("sendto") >= 2, "sendto: {}", count("sendto"));
}

#[test]
fn forged_native_calls_reach_only_the_sockets_given() {
    let Some((_, img)) = built() else { return };
    let (port, other) = (free_port(), free_port());
    let (got, _) = confined(
        Backend::Process,
        img,
        &["attack".into(), port.to_string(), other.to_string()],
        port,
        Default::default(),
    );
    let want = "\
native copy, marked, peek: 3
native copy, no mark: -1 EBADF
native copy, the file mark: -1 EBADF
the program's number, marked: 3
the channel, marked: -1 EBADF
the domain memfd, marked: -1 EBADF
past the range, marked: -1 EBADF
below the range, marked: -1 EBADF
native copy with an address: -1 EBADF
native copy with MSG_FASTOPEN: -1 EBADF
native copy, MSG_ERRQUEUE: -1 EBADF
dup3 of the native copy onto 1: -1 EBADF
dup3 of the native copy over another: -1 EBADF
dup3 of a number below 1000 into the range: -1 EBADF
dup2 of the native copy onto 0: -1 EBADF
connect of the native copy: -1 EBADF
fcntl F_SETFL of the native copy: -1 EBADF
SO_BINDTODEVICE on the native copy: -1 EBADF
SO_BINDTODEVICE on the socket: -1 ENOPROTOOPT
connect of the connected socket elsewhere: -1 EACCES
connect AF_UNSPEC (dissolve): 0
then connect elsewhere: -1 EACCES
UDP connect to the allowed port: 0
UDP connect elsewhere: -1 EACCES
UDP socket's number in the range, marked: -1 EBADF
SCM_RIGHTS of the native number, marked: -1 EBADF
SCM_RIGHTS of the native number: -1 EBADF
SCM_RIGHTS of the socket: 1
native copy after dup2 over it: -1 EBADF
the dup still reads the socket: 3
native copy of a new socket: 4
a forked child has no native copy but reads the socket: yes
native copy of a non-blocking connect before its first data call: -1 EBADF
its first data call: 2
native copy after it: 1
native copy after close: -1 EBADF
still here
";
    assert_eq!(got, want);
}

#[test]
fn a_policy_that_refuses_a_data_call_still_binds() {
    let Some((_, img)) = built() else { return };
    let port = free_port();
    let text = format!(
        "version = 1\n[default]\naction = \"allow\"\n[syscalls]\ndeny = [\"sendto\"]\n[network]\n\
         connect = [\"127.0.0.1:{port}\"]\nlisten = [\"127.0.0.1:{port}\"]\n"
    );
    let policy = cabin_policy::Policy::parse("test.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let gate = cabin_monitor::GateConfig { policy: Some(policy), ..Default::default() };
    let (got, _) = confined(Backend::Process, img, &["deny".into(), port.to_string()], port, gate);
    assert_eq!(got, "send: -1 EPERM\nwrite: 1\nread: 1\nnative copy: -1 EBADF\n");
}
