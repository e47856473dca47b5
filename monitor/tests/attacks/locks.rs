//! Hostile lock requests (`fcntl` record and OFD locks, `flock`;
//! docs/syscalls.md "File locks"), with `programs/attack_locks.c`:
//!
//! - hostile `struct flock` values (overflowing starts and lengths, bad
//!   types and `l_whence`, every lock command) get Linux's errnos (compared
//!   with a native run); `flock` takes the low 32 bits of its operation;
//! - a `struct flock` pointer outside the program's memory ends the program
//!   (137), never the monitor, also for `F_SETLKW` (prepared to wait without
//!   the service lock);
//! - `F_SETLKW` on a lock that never comes (held by a native process) is
//!   still ended by the run's wall-time limit (from the main thread and from
//!   a second one, whose wait runs without the service lock) and by a signal
//!   whose default action ends the program (as Ctrl-C's SIGINT does);
//! - lock descriptions are bounded by the program's descriptor table: a
//!   program locking file after file meets `EMFILE`, as natively.

use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use cabin_monitor::{EndReason, RunConfig, RunOutcome};

use crate::common::{self, Backend};

on_both_backends!(
    hostile_flock_values_get_linux_errnos,
    wild_flock_pointers_end_the_program,
    a_lock_that_never_comes_ends_with_the_time_limit,
    a_lock_that_never_comes_ends_with_a_signal,
    lock_descriptions_are_bounded_by_the_descriptor_table
);

fn built() -> Option<&'static (PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = common::scratch_dir("attack-locks");
        let exe = common::compile("attack_locks", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
        Some((exe, img))
    })
    .as_ref()
}

fn run(b: Backend, img: &[u8], args: &[&str], dir: &Path, policy: Option<&str>) -> (RunOutcome, String) {
    let out_path = dir.join(format!("out-{}", args[0]));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let mut cfg = RunConfig {
        args: std::iter::once("attack_locks").chain(args.iter().copied()).map(String::from).collect(),
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        allow_write: vec![dir.to_path_buf()],
        ..RunConfig::default()
    };
    if let Some(p) = policy {
        cfg.gate.policy =
            Some(cabin_policy::Policy::parse("locks.toml", p).unwrap_or_else(|e| panic!("{e}")));
    }
    let o = b.run(img, &cfg).expect("the monitor survives the run");
    drop(out);
    (o, std::fs::read_to_string(&out_path).unwrap_or_default())
}

fn hostile_flock_values_get_linux_errnos(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().to_str().expect("utf-8");
    let native = Command::new(exe).args(["values", d]).output().expect("run natively");
    let want = String::from_utf8_lossy(&native.stdout).into_owned();
    assert!(native.status.success(), "{want}");
    let (o, got) = run(b, img, &["values", d], t.path(), None);
    assert_eq!(o.exit_code, 0, "{:?}: {got}", o.reason);
    assert_eq!(got, want, "{b:?}: confined (left) vs native (right)");
}

fn wild_flock_pointers_end_the_program(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().to_str().expect("utf-8");
    for mode in ["wild-getlk", "wild-setlk", "wild-setlkw", "wild-ofd"] {
        let (o, out) = run(b, img, &[mode, d], t.path(), None);
        assert_eq!(o.exit_code, 137, "{mode}: {:?} {out}", o.reason);
        assert!(matches!(o.reason, EndReason::ProtocolViolation(_)), "{mode}: {:?}", o.reason);
        assert!(!out.contains("returned"), "{mode}: the call never returns: {out}");
    }
}

/// A native process holding a write lock on `file` until it is killed.
fn holder(exe: &Path, file: &Path) -> Child {
    let mut c = Command::new(exe)
        .args(["hold-native", file.to_str().expect("utf-8")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the holder");
    let mut line = String::new();
    std::io::BufReader::new(c.stdout.take().expect("stdout")).read_line(&mut line).expect("holder says held");
    assert_eq!(line, "held\n");
    c
}

fn a_lock_that_never_comes_ends_with_the_time_limit(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let file = t.path().join("never.db");
    let mut h = holder(exe, &file);
    let policy = "version = 1\n[default]\naction = \"allow\"\n[limits]\nwall-time = \"2s\"\n";
    for mode in ["never", "never-thread"] {
        let (o, out) = run(b, img, &[mode, file.to_str().expect("utf-8")], t.path(), Some(policy));
        assert_eq!(out, "waiting\n", "{mode}");
        assert_eq!(o.exit_code, 137, "{mode}: {:?}", o.reason);
    }
    let _ = h.kill();
    let _ = h.wait();
}

fn a_lock_that_never_comes_ends_with_a_signal(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let file = t.path().join("never.db");
    let mut h = holder(exe, &file);
    let f = file.to_str().expect("utf-8");
    let native = Command::new(exe).args(["never-alarm", f]).output().expect("run natively");
    assert_eq!(native.status.code(), None, "killed by SIGALRM");
    let (o, out) = run(b, img, &["never-alarm", f], t.path(), None);
    assert_eq!(out, "waiting\n");
    assert_eq!(o.exit_code, 128 + libc::SIGALRM, "{:?}", o.reason);
    let _ = h.kill();
    let _ = h.wait();
}

fn lock_descriptions_are_bounded_by_the_descriptor_table(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let (o, out) = run(b, img, &["many", t.path().to_str().expect("utf-8")], t.path(), None);
    assert_eq!(o.exit_code, 0, "{:?}: {out}", o.reason);
    assert!(out.contains("Too many open files"), "{out}");
    let n: usize = out
        .strip_prefix("stopped after ")
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((16..=1024).contains(&n), "{n}");
}
