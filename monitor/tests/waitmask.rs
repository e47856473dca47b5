//! The signal mask of `ppoll`, `pselect6`, `epoll_pwait` and `epoll_pwait2`
//! is in force for the duration of the wait (issue 13), end to end:
//! `tests/programs/waitmask.c` prints what Linux decides for each call (a
//! pending signal the wait's mask unblocks: `EINTR` at once and its handler
//! runs; a timer signal during the wait: the same; the old mask is back
//! after; a mask that keeps the pending signal blocked: a normal timeout);
//! the confined run on each backend must print the same lines and end with
//! the same status as the native run (before, the mask was ignored: the
//! first case timed out).
//!
//! Needs `gcc` with static glibc (NOT RUN otherwise); the KVM variants say
//! `KVM test NOT RUN` where /dev/kvm is not usable.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;

use cabin_monitor::RunConfig;
use common::Backend;

fn wait_masks_match_native(b: Backend) {
    program_matches_native(b, "waitmask", 4);
}

/// `tests/programs/sfdpoll.c`: a signalfd is readable for `poll`,
/// `select` and `epoll` exactly while a signal of its mask is pending; a
/// thread blocked in `epoll_wait` on it wakes when another thread signals
/// the process, a `poll` on it wakes for a timer signal (before: never
/// ready).
fn signalfd_is_pollable_as_natively(b: Backend) {
    program_matches_native(b, "sfdpoll", 6);
}

/// Runs `tests/programs/NAME.c` natively and confined: same output, same
/// status (`status`).
fn program_matches_native(b: Backend, name: &str, status: i32) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile(name, t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
    let native = std::process::Command::new(&exe).output().expect("run natively");
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    assert_eq!(native.status.code(), Some(status), "natively: {native_out}");
    let out_path = t.path().join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec![name.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the run happens");
    drop(out);
    let got = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert_eq!(got, native_out, "{b:?}: confined vs native ({:?})", o.reason);
    assert_eq!(o.exit_code, status, "{:?}", o.reason);
}

on_both_backends!(wait_masks_match_native, signalfd_is_pollable_as_natively);
