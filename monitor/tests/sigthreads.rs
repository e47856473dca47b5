//! Signals aimed at one thread, the process-wide pending set and queued
//! real-time signals (issue 13), end to end: `tests/programs/sigthreads.c`
//! prints what Linux decides (several `sigqueue`d SIGRTMIN instances each
//! delivered in order with its value, `sigwaitinfo` taking them one by one,
//! a standard signal collapsing; `pthread_kill` to a thread blocked in a
//! pipe read, spinning in program code, in `sigsuspend`, or blocking the
//! signal; `kill` to the process while the sender blocks it;
//! `pthread_sigqueue` with a value); the confined run on each backend must
//! print the same lines and end with the same status as the native run.
//!
//! Needs `gcc` with static glibc (NOT RUN otherwise); the KVM variants say
//! `KVM test NOT RUN` where /dev/kvm is not usable.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;

use cabin_monitor::RunConfig;
use common::Backend;

fn thread_signals_match_native(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("sigthreads", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
    let native = std::process::Command::new(&exe).output().expect("run natively");
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    assert_eq!(native.status.code(), Some(5), "natively: {native_out}");
    let out_path = t.path().join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["sigthreads".into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the run happens");
    drop(out);
    let got = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert_eq!(got, native_out, "{b:?}: confined vs native ({:?})", o.reason);
    assert_eq!(o.exit_code, 5, "{:?}", o.reason);
}

on_both_backends!(thread_signals_match_native);
