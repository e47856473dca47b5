//! Program threads (issue 13, docs/threads.md): C programs using pthreads,
//! run natively and confined; output and exit status must be equal. On the
//! KVM backend, until it runs threads (branch issue13-kvmthreads), a thread
//! is refused with EAGAIN: the tests check that the program ends cleanly
//! with `pthread_create` failing, and say that the case is NOT RUN there.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use common::Backend;

/// The compiled `threads` program (once per test binary).
fn program(dir: &Path) -> Option<(std::path::PathBuf, Vec<u8>)> {
    let exe = common::compile("threads", dir)?;
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    Some((exe, img))
}

/// Runs `img` confined with `args`; (stdout, exit status).
fn confined(b: Backend, img: &[u8], args: &[&str]) -> (String, i32) {
    let t = tempfile::tempdir().expect("tempdir");
    let path = t.path().join("out");
    let out = std::fs::File::create(&path).expect("output file");
    let cfg = cabin_monitor::RunConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..Default::default()
    };
    let o = b.run(img, &cfg).expect("the monitor runs the program");
    (std::fs::read_to_string(&path).expect("read the output"), o.exit_code)
}

fn native(exe: &Path, args: &[&str]) -> (String, i32) {
    let o = Command::new(exe).args(&args[1..]).output().expect("run natively");
    (String::from_utf8_lossy(&o.stdout).into_owned(), o.status.code().unwrap_or(-1))
}

/// One case: equal to native on the process backend; on KVM a clean
/// EAGAIN until the KVM backend runs threads.
fn case(b: Backend, name: &str) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some((exe, img)) = program(t.path()) else { return };
    let args = ["threads", name];
    let (out, code) = confined(b, &img, &args);
    if b == Backend::Kvm {
        assert_eq!(
            (out.as_str(), code),
            ("pthread_create: Resource temporarily unavailable\n", 1),
            "threads on KVM: expected a clean EAGAIN"
        );
        cabin_tests::not_run("threads on KVM", &format!("{name}: the KVM backend does not run threads yet"));
        return;
    }
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
    identity_and_affinity
);
