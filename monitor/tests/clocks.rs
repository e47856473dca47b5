//! Wall and monotonic clocks served without a system call (issue 15): on
//! the process backend the libos calibrates the TSC against the host's
//! clocks (`BOOT_FLAG_TSC_CLOCK`), on KVM it anchors each clock once
//! (`libos/src/forward/clock.rs`). `tests/programs/clocks.c` checks that
//! reads by two threads never go back, that `gettimeofday` and `time` agree
//! with `CLOCK_REALTIME`, and that the clocks advance alike over a sleep and
//! the run; this test checks that its `CLOCK_REALTIME` at start and end lies
//! within the test's own reads around the run (50 ms of slack each side).
//! Before the narrowest-bracket anchor, KVM's anchors were off by up to half
//! a forwarded call's wait (50 ms apart between clocks on a loaded machine)
//! and the "advance alike" checks failed there.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;
use std::time::{SystemTime, UNIX_EPOCH};

use cabin_monitor::RunConfig;
use common::Backend;

fn now_ns() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

fn value(out: &str, key: &str) -> i128 {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{out}"))
}

fn clocks_agree_with_the_hosts_and_never_go_back(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("clocks", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
    let native = std::process::Command::new(&exe).output().expect("run natively");
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    println!("native:\n{native_out}");
    assert!(native.status.success(), "natively:\n{native_out}");

    let out_path = t.path().join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["clocks".into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let before = now_ns();
    let o = b.run(&img, &cfg).expect("the run happens");
    let after = now_ns();
    drop(out);
    let confined = std::fs::read_to_string(&out_path).expect("stdout");
    println!("{b:?}:\n{confined}");
    assert_eq!(o.exit_code, 0, "{b:?}: {:?}\n{confined}", o.reason);
    assert!(confined.contains("failures 0"), "{confined}");
    let slack = 50_000_000;
    let (start, end) = (value(&confined, "start "), value(&confined, "end "));
    assert!(
        before - slack <= start && start <= end && end <= after + slack,
        "{before} {start} {end} {after}"
    );
}

on_both_backends!(clocks_agree_with_the_hosts_and_never_go_back);
