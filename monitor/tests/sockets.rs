//! AF_UNIX socket pairs (`socketpair`, `sendto`, `recvfrom`, `sendmsg`,
//! `recvmsg`, `shutdown`, `getsockname`, `getpeername`), end to end:
//! `tests/programs/sockets.c` prints what Linux decides for each case
//! (stream, datagram and seqpacket pairs, scatter/gather, truncation,
//! flags, poll and epoll readiness, shutdown, EPIPE with and without
//! SIGPIPE, ENOTSOCK on pipes, a thread blocked in `recv` while another
//! keeps calling); the confined run on each backend must print the same
//! lines and end with the same status as the native run.
//!
//! Needs `gcc` with static glibc (NOT RUN otherwise); the KVM variants say
//! `KVM test NOT RUN` where /dev/kvm is not usable.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;

use cabin_monitor::RunConfig;
use common::Backend;

fn sockets_match_native(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("sockets", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
    let native = std::process::Command::new(&exe).output().expect("run natively");
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    assert_eq!(native.status.code(), Some(3), "natively: {native_out}");
    let out_path = t.path().join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["sockets".into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the run happens");
    drop(out);
    let got = std::fs::read_to_string(&out_path).unwrap_or_default();
    if got != native_out {
        for (i, (a, c)) in native_out.lines().zip(got.lines()).enumerate() {
            if a != c {
                panic!(
                    "{b:?}: line {} differs:\n native: {a}\n cabin:  {c}\n(exit {} {:?})",
                    i + 1,
                    o.exit_code,
                    o.reason
                );
            }
        }
        panic!("{b:?}: outputs differ in length:\n{got}\n--- native:\n{native_out}\n{:?}", o.reason);
    }
    assert_eq!(o.exit_code, 3, "{:?}", o.reason);
}

on_both_backends!(sockets_match_native);
