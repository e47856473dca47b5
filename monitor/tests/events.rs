//! Waiting on many descriptors (`poll`, `ppoll`, `select`, `pselect6`, the
//! `epoll` family, `eventfd`, `timerfd`), end to end: `tests/programs/events.c`
//! prints what Linux decides for each case (readiness, level and edge
//! triggering, one-shot, nested epoll, close and dup, timeouts and the time
//! left, eventfd counters and semaphores, timer expiry counts, the errnos of
//! bad arguments); the confined run on each backend must print the same
//! lines and end with the same status as the native run.
//!
//! A wait that never ends by itself (`epoll_wait` forever) must end when the
//! program is stopped (`[limits] wall-time`): the monitor's worker is kicked
//! out of the host wait.
//!
//! Needs `gcc` with static glibc (NOT RUN otherwise); the KVM variants say
//! `KVM test NOT RUN` where /dev/kvm is not usable.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use cabin_monitor::{GateConfig, RunConfig, RunOutcome};
use common::Backend;

/// Runs the image confined with `args` (after the program name), `dir`
/// writable, under `policy` (TOML text); returns the outcome and stdout.
fn confined(b: Backend, img: &[u8], args: &[&str], dir: &Path, policy: Option<&str>) -> (RunOutcome, String) {
    let out_path = dir.join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: std::iter::once("events").chain(args.iter().copied()).map(String::from).collect(),
        allow_write: vec![dir.to_path_buf()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        gate: GateConfig {
            policy: policy.map(|t| cabin_policy::Policy::parse("events.toml", t).expect("policy")),
            ..GateConfig::default()
        },
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).expect("the run happens");
    drop(out);
    (o, std::fs::read_to_string(&out_path).unwrap_or_default())
}

fn events_match_native(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("events", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
    let native_dir = t.path().join("native");
    let cabin_dir = t.path().join("cabin");
    std::fs::create_dir(&native_dir).expect("mkdir");
    std::fs::create_dir(&cabin_dir).expect("mkdir");
    let native = std::process::Command::new(&exe).arg(&native_dir).output().expect("run natively");
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    assert!(native.status.success(), "natively: {native_out}");
    let (o, out) = confined(b, &img, &[cabin_dir.to_str().expect("utf-8 path")], &cabin_dir, None);
    if out != native_out {
        for (i, (a, c)) in native_out.lines().zip(out.lines()).enumerate() {
            if a != c {
                panic!("{b:?}: line {} differs:\n native: {a}\n cabin:  {c}\n(exit {})", i + 1, o.exit_code);
            }
        }
        panic!("{b:?}: outputs differ in length:\n{out}\n--- native:\n{native_out}");
    }
    assert_eq!(o.exit_code, native.status.code().unwrap_or(-1), "{:?}", o.reason);
    assert!(out.contains("failures 0"), "{out}");
}

fn a_stop_ends_a_wait_for_ever(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(img) = common::image("events", t.path()) else { return };
    let dir = t.path().to_path_buf();
    let policy = "version = 1\n[default]\naction = \"allow\"\n[limits]\nwall-time = \"3s\"\n";
    // A safety net so a wait the stop cannot end fails the test instead of
    // hanging it; how fast the stop is is not what this checks.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = confined(b, &img, &[dir.to_str().expect("utf-8 path"), "block"], &dir, Some(policy));
        let _ = tx.send(r);
    });
    let (o, out) = rx.recv_timeout(Duration::from_secs(120)).expect("the stop ended the wait");
    assert!(out.contains("blocking\n"), "{out}");
    assert!(!out.contains("woke"), "{out}");
    assert_eq!(o.exit_code, 137, "{:?}", o.reason);
}

on_both_backends!(events_match_native, a_stop_ends_a_wait_for_ever);
