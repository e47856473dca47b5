//! Attacks on threads (docs/threads.md): thread submissions forged on the
//! ring (slots out of range or in use, bad pointers, sizes, operations and
//! flag sets), `clone`/`clone3` with forbidden flag sets, a thread that
//! requeues and wakes the ring doorbells, more threads than the domain has
//! rings, and a thread flag on a call that is not a thread operation. The
//! monitor refuses each, keeps its own table, and survives.
//!
//! On KVM (until it runs threads) a forged start is refused with EAGAIN and
//! `pthread_create` fails; those cases say NOT RUN there.

use std::os::fd::AsRawFd;

use cabin_monitor::{EndReason, RunConfig};

use crate::common::{self, Backend};

on_both_backends!(
    forged_thread_requests_are_refused,
    forbidden_clone_flags,
    doorbell_requeue,
    thread_limit,
    policy_thread_limit,
    thread_flag_on_another_call
);

fn run(b: Backend, case: &str) -> Option<(String, cabin_monitor::RunOutcome)> {
    run_with(b, case, cabin_monitor::GateConfig::default())
}

fn run_with(
    b: Backend,
    case: &str,
    gate: cabin_monitor::GateConfig,
) -> Option<(String, cabin_monitor::RunOutcome)> {
    let t = tempfile::tempdir().expect("tempdir");
    let img = common::image("attack_threads", t.path())?;
    let path = t.path().join("out");
    let out = std::fs::File::create(&path).expect("output file");
    let cfg = RunConfig {
        args: vec!["attack_threads".into(), case.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        gate,
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the monitor survives");
    Some((std::fs::read_to_string(&path).expect("output"), o))
}

fn forged_thread_requests_are_refused(b: Backend) {
    let Some((out, o)) = run(b, "forged") else { return };
    assert_eq!(o.exit_code, 0, "{out} {:?}", o.reason);
    // "never started" asks for slot 7 with entry, stack and thread block 0:
    // the process backend's monitor accepts it (the libos would start the
    // native thread, and a forged one never comes); the KVM domain starts
    // the thread itself and refuses a start state outside the program's
    // code and writable memory, so there is nothing to cancel.
    let never =
        if b == Backend::Kvm { "never started: -22\ncancel: -22\n" } else { "never started: 0\ncancel: 0\n" };
    assert_eq!(
        out,
        format!(
            "slot 0: -22\nslot 64: -22\nslot 1000000: -22\nslot in use: -16\nfork flags: -22\nvm only: -22\n\
             bad op: -22\nbad pointer: -14\nbad size: -22\n{never}cancel again: -22\n\
             cancel a live thread's slot 0: -22\nsignal slot 64: -22\nsignal slot 1000000: -22\n\
             signal a free slot: -22\nsignal the reader 1000 times: 1000 answered 0\njoined\n"
        )
    );
}

fn forbidden_clone_flags(b: Backend) {
    let Some((out, o)) = run(b, "flags") else { return };
    assert_eq!(o.exit_code, 0, "{out}");
    // Child processes are another issue: refused with a clear errno.
    assert_eq!(
        out,
        "clone vm|sigchld: -1 errno 38\nclone thread without sighand: -1 errno 38\n\
         clone thread|newcgroup: -1 errno 38\nclone3 vm|vfork: -1 errno 38\n\
         clone3 thread without a stack: -1 errno 22\n"
    );
}

fn doorbell_requeue(b: Backend) {
    let Some((out, o)) = run(b, "requeue") else { return };
    // Delayed at most, never stalled: every call is served.
    assert_eq!((out.as_str(), o.exit_code), ("calls served 30\n", 0));
}

fn thread_limit(b: Backend) {
    let Some((out, o)) = run(b, "limit") else { return };
    let want = cabin_abi::thread::MAX_THREADS - 1;
    assert_eq!(out, format!("created {want} more threads, then EAGAIN\nall joined\n"));
    assert_eq!(o.exit_code, 0);
}

/// `[limits] threads = 4`: the main thread and 3 more, then EAGAIN (the
/// program goes on).
fn policy_thread_limit(b: Backend) {
    let p = cabin_policy::Policy::parse(
        "threads.toml",
        "version = 1\n[default]\naction = \"allow\"\n[limits]\nthreads = 4\n",
    )
    .expect("policy");
    let gate = cabin_monitor::GateConfig { policy: Some(p), ..Default::default() };
    let Some((out, o)) = run_with(b, "limit", gate) else { return };
    let want = 3;
    assert_eq!(out, format!("created {want} more threads, then EAGAIN\nall joined\n"));
    assert_eq!(o.exit_code, 0);
}

fn thread_flag_on_another_call(b: Backend) {
    let Some((out, o)) = run(b, "notthread") else { return };
    assert_eq!(o.exit_code, 137, "{out}");
    match &o.reason {
        EndReason::ProtocolViolation(m) => assert!(m.contains("not clone or exit"), "{m}"),
        r => panic!("{r:?}"),
    }
}
