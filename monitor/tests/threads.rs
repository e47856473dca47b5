//! Program threads (issue 13, docs/threads.md): C programs using pthreads,
//! run natively and confined; output and exit status must be equal, on
//! both backends (KVM: one vCPU per thread).

#[macro_use]
mod common;

use std::path::Path;

use common::{confined, native, Backend};

/// The compiled `threads` program (once per test binary).
fn program(dir: &Path) -> Option<(std::path::PathBuf, Vec<u8>)> {
    let exe = common::compile("threads", dir)?;
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    Some((exe, img))
}

/// One case: equal to native, on either backend.
fn case(b: Backend, name: &str) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some((exe, img)) = program(t.path()) else { return };
    let args = ["threads", name];
    let (out, code) = confined(b, &img, &args);
    let want = native(&exe, &args);
    assert_eq!((out, code), want, "confined vs native, case {name}");
}

fn mutex(b: Backend) {
    case(b, "mutex");
}
fn contend64(b: Backend) {
    case(b, "contend64");
}
fn condvar(b: Backend) {
    case(b, "condvar");
}
fn rwlock(b: Backend) {
    case(b, "rwlock");
}
fn barrier(b: Backend) {
    case(b, "barrier");
}
fn semaphores(b: Backend) {
    case(b, "sem");
}
fn tls(b: Backend) {
    case(b, "tls");
}
fn cancellation(b: Backend) {
    case(b, "cancel");
}
fn robust_mutex(b: Backend) {
    case(b, "robust");
}
fn detach_join(b: Backend) {
    case(b, "detach");
}
fn exit_while_others_block_in_read(b: Backend) {
    case(b, "pipe");
}
fn identity_and_affinity(b: Backend) {
    case(b, "ids");
}

/// `case`, but a run that has not ended after `limit` fails the test
/// instead of hanging it (a lost futex wake-up hangs the program).
fn case_within(b: Backend, name: &'static str, limit: std::time::Duration) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some((exe, img)) = program(t.path()) else { return };
    let args = ["threads", name];
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(confined(b, &img, &args));
    });
    let got = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("case {name} still runs after {limit:?}: lost wake-up?"));
    assert_eq!(got, native(&exe, &args), "confined vs native, case {name}");
}

/// The futex fast path (docs/threads.md): requeue, WAKE_OP and bit sets
/// stay right when wakes may be skipped.
fn futex_operations(b: Backend) {
    case_within(b, "futexops", std::time::Duration::from_secs(120));
}

/// A wake skipped wrongly hangs this case: hand-offs among four threads on
/// one word and two on another, some after the spin window ran out.
fn futex_no_lost_wakeups(b: Backend) {
    case_within(b, "futexstress", std::time::Duration::from_secs(300));
}

on_both_backends!(
    mutex,
    contend64,
    condvar,
    rwlock,
    barrier,
    semaphores,
    tls,
    cancellation,
    robust_mutex,
    detach_join,
    exit_while_others_block_in_read,
    identity_and_affinity,
    futex_operations,
    futex_no_lost_wakeups
);
