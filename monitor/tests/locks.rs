//! File locks on the real host file (issue 14; docs/syscalls.md "File
//! locks"), with `programs/locks.c`, natively and confined on both backends;
//! output and exit status must be the same:
//!
//! - in one process: POSIX locks owned by the process (two descriptors of a
//!   file never conflict; closing any descriptor releases them), `SEEK_CUR`,
//!   OFD locks per open file description and against POSIX locks, `flock`,
//!   the errnos of bad requests;
//! - against a native helper process that holds a lock: `F_SETLK` gets
//!   `EAGAIN`, `F_GETLK` reports the helper's lock and pid, `F_SETLKW` waits
//!   until the helper unlocks (the helper writes its state file before it
//!   unlocks, and the program reads it once it has the lock), for POSIX,
//!   OFD and `flock` locks and SQLite's lock sequence;
//! - waits interrupted by a signal (`EINTR`, or restarted with
//!   `SA_RESTART`); a wait in a second thread while the main thread's calls
//!   are served.

#[macro_use]
mod common;

use std::io::BufRead;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

use cabin_monitor::RunConfig;
use common::Backend;

/// One run at a time in this test binary: the tests run as threads of one
/// process, and a process-backend run forks its child, which holds copies
/// of every descriptor the process has until it closes them; a descriptor
/// another test's monitor closed meanwhile would keep its open file
/// description, and with it its `flock` and OFD locks, a moment longer.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The program (native executable and image), built once.
fn built() -> Option<&'static (PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = cabin_tests::target_dir().join("locks-test");
        std::fs::create_dir_all(&dir).ok()?;
        let exe = common::compile("locks", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).ok()?);
        Some((exe, img))
    })
    .as_ref()
}

/// The native helper: holds a lock of `kind` on `file` until `file.go`
/// exists; returns once it holds it.
fn helper(exe: &Path, file: &Path, kind: &str) -> Child {
    let _ = std::fs::remove_file(file.with_extension("db.state"));
    let mut c = Command::new(exe)
        .args(["hold", file.to_str().expect("utf-8 path"), kind])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the helper");
    let mut line = String::new();
    let out = c.stdout.take().expect("helper stdout");
    std::io::BufReader::new(out).read_line(&mut line).expect("helper says held");
    assert_eq!(line, "held\n", "the helper took its lock");
    c
}

fn native(exe: &Path, args: &[String]) -> (String, i32) {
    let out = Command::new(exe).args(&args[1..]).output().expect("run natively");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code().unwrap_or(-1))
}

fn confined(b: Backend, img: &[u8], args: &[String], dir: &Path, policy: Option<&str>) -> (String, i32) {
    let path = dir.join(format!("out-{b:?}-{}", args[1]));
    let out = std::fs::File::create(&path).expect("stdout file");
    let mut cfg = RunConfig {
        args: args.to_vec(),
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        allow_write: vec![dir.to_path_buf()],
        ..RunConfig::default()
    };
    if let Some(p) = policy {
        cfg.gate.policy =
            Some(cabin_policy::Policy::parse("locks.toml", p).unwrap_or_else(|e| panic!("{e}")));
    }
    let o = b.run(img, &cfg).expect("confined run");
    drop(out);
    (std::fs::read_to_string(&path).unwrap_or_default(), o.exit_code)
}

fn args(v: &[&str]) -> Vec<String> {
    std::iter::once("locks").chain(v.iter().copied()).map(String::from).collect()
}

fn reap(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn locks_within_one_process(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let _one = serial();
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().to_str().expect("utf-8").to_owned();
    let want = native(exe, &args(&["local", &dir]));
    assert_eq!(want.1, 0, "{}", want.0);
    let got = confined(b, img, &args(&["local", &dir]), t.path(), None);
    assert_eq!(got, want, "{b:?}: confined (left) vs native (right)");
}

/// The program against a native helper holding a lock of `kind`.
fn against_native(b: Backend, kind: &str) {
    let Some((exe, img)) = built() else { return };
    let _one = serial();
    let t = tempfile::tempdir().expect("tempdir");
    let file = t.path().join("shared.db");
    let f = file.to_str().expect("utf-8").to_owned();
    let run = |confine: bool| {
        let h = helper(exe, &file, kind);
        let a = args(&["contend", &f, kind, &h.id().to_string()]);
        let got = if confine { confined(b, img, &a, t.path(), None) } else { native(exe, &a) };
        reap(h);
        got
    };
    let want = run(false);
    assert_eq!(want.1, 0, "{}", want.0);
    assert!(want.0.contains("helper state once locked: released"), "{}", want.0);
    let got = run(true);
    assert_eq!(got, want, "{b:?} {kind}: confined (left) vs native (right)");
}

fn posix_lock_held_by_a_native_process(b: Backend) {
    against_native(b, "posix");
}
fn ofd_lock_held_by_a_native_process(b: Backend) {
    against_native(b, "ofd");
}
fn flock_held_by_a_native_process(b: Backend) {
    against_native(b, "flock");
}
fn sqlite_lock_sequence_against_a_native_reader(b: Backend) {
    against_native(b, "shared");
}

/// A second thread waits (KVM and process: without the service lock) while
/// the main thread's calls are served.
fn a_thread_waits_while_the_others_run(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let _one = serial();
    for kind in ["posix", "flock"] {
        let t = tempfile::tempdir().expect("tempdir");
        let file = t.path().join("shared.db");
        let f = file.to_str().expect("utf-8").to_owned();
        let run = |confine: bool| {
            let h = helper(exe, &file, kind);
            let a = args(&["thread", &f, kind]);
            let got = if confine { confined(b, img, &a, t.path(), None) } else { native(exe, &a) };
            reap(h);
            got
        };
        let want = run(false);
        assert_eq!(want.1, 0, "{}", want.0);
        let got = run(true);
        assert_eq!(got, want, "{b:?} {kind}: confined (left) vs native (right)");
    }
}

fn lock_waits_are_interrupted_by_signals(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let _one = serial();
    let t = tempfile::tempdir().expect("tempdir");
    let file = t.path().join("shared.db");
    let f = file.to_str().expect("utf-8").to_owned();
    let run = |confine: bool| {
        let h = helper(exe, &file, "posix");
        let a = args(&["eintr", &f]);
        let got = if confine { confined(b, img, &a, t.path(), None) } else { native(exe, &a) };
        reap(h);
        got
    };
    let want = run(false);
    assert_eq!(want.1, 0, "{}", want.0);
    let got = run(true);
    assert_eq!(got, want, "{b:?}: confined (left) vs native (right)");
}

on_both_backends!(
    locks_within_one_process,
    posix_lock_held_by_a_native_process,
    ofd_lock_held_by_a_native_process,
    flock_held_by_a_native_process,
    sqlite_lock_sequence_against_a_native_reader,
    lock_waits_are_interrupted_by_signals,
    a_thread_waits_while_the_others_run,
);
