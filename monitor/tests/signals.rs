//! Signal delivery (docs/signals.md): `programs/signals.c` case by case,
//! natively and confined on both backends; output and exit status must be
//! the same. Also the forced trap path (process backend: every call through
//! SIGSYS, so deliveries happen on the libos's kernel frames).

#[macro_use]
mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::OnceLock;

use cabin_monitor::RunConfig;
use common::Backend;

/// The program (native executable and image), built once.
fn built() -> Option<&'static (std::path::PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(std::path::PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = cabin_tests::target_dir().join("signals-test");
        std::fs::create_dir_all(&dir).ok()?;
        let exe = common::compile("signals", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).ok()?);
        Some((exe, img))
    })
    .as_ref()
}

/// Native run: stdout and the status a shell shows (128 + signal).
fn native(exe: &Path, case: &str) -> (String, i32) {
    let out = std::process::Command::new(exe).arg(case).output().expect("run natively");
    let code = out.status.code().unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
    (String::from_utf8_lossy(&out.stdout).into_owned(), code)
}

fn confined(b: Backend, img: &[u8], case: &str, dir: &Path, force_trap: bool) -> (String, i32) {
    let path = dir.join(format!("{case}-{b:?}-{force_trap}.out"));
    let out = std::fs::File::create(&path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["signals".into(), case.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        force_trap_path: force_trap,
        arena_bytes: 64 << 20,
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).expect("confined run");
    drop(out);
    (std::fs::read_to_string(&path).unwrap_or_default(), o.exit_code)
}

fn same_as_native(b: Backend, case: &str) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let want = native(exe, case);
    let got = confined(b, img, case, t.path(), false);
    assert_eq!(got, want, "{case} on {b:?}: confined (left) vs native (right)");
    if b == Backend::Process {
        let trapped = confined(b, img, case, t.path(), true);
        assert_eq!(trapped, want, "{case} on {b:?} through the trap path: confined (left) vs native (right)");
    }
}

fn segv_handler_recovers_with_siglongjmp(b: Backend) {
    same_as_native(b, "segv");
}
fn handler_edits_ucontext_rip(b: Backend) {
    same_as_native(b, "skip");
}
fn signals_to_itself(b: Backend) {
    same_as_native(b, "self");
}
fn masks_and_pending(b: Backend) {
    same_as_native(b, "mask");
}
fn sigaltstack_and_ss_onstack(b: Backend) {
    same_as_native(b, "altstack");
}
fn nodefer_and_resethand(b: Backend) {
    same_as_native(b, "flags");
}
fn fp_state_survives_a_handler(b: Backend) {
    same_as_native(b, "fpu");
}
fn sigpipe_with_a_handler(b: Backend) {
    same_as_native(b, "sigpipe");
}
fn sigpipe_by_default_ends_the_program(b: Backend) {
    same_as_native(b, "sigpipe-default");
}
fn sigsuspend_and_sigtimedwait(b: Backend) {
    same_as_native(b, "suspend");
}
fn sigkill_and_sigstop_cannot_be_caught(b: Backend) {
    same_as_native(b, "refused");
}

fn alarm_setitimer_and_posix_timers(b: Backend) {
    same_as_native(b, "timers");
}
fn sa_restart_restarts_a_read_blocked_when_sigalrm_comes(b: Backend) {
    same_as_native(b, "read-restart");
}
fn without_sa_restart_the_blocked_read_fails_with_eintr(b: Backend) {
    same_as_native(b, "read-eintr");
}

fn signalfd_reads_pending_signals(b: Backend) {
    same_as_native(b, "signalfd");
}

/// A fault in a second thread reaches the handler on that thread (KVM: the
/// faulting vCPU is the one redirected).
fn a_fault_in_a_second_thread_reaches_its_handler(b: Backend) {
    same_as_native(b, "thread-segv");
}

/// Threads faulting at the same time each see their own fault (KVM: the
/// boot page's one mailbox is taken by one redirect at a time).
fn threads_faulting_at_once_each_see_their_own_fault(b: Backend) {
    same_as_native(b, "threads-segv");
}

fn sigtimedwait_with_a_timeout(b: Backend) {
    same_as_native(b, "timedwait");
}

on_both_backends!(
    a_fault_in_a_second_thread_reaches_its_handler,
    threads_faulting_at_once_each_see_their_own_fault,
    sigtimedwait_with_a_timeout,
    signalfd_reads_pending_signals,
    alarm_setitimer_and_posix_timers,
    sa_restart_restarts_a_read_blocked_when_sigalrm_comes,
    without_sa_restart_the_blocked_read_fails_with_eintr,
    segv_handler_recovers_with_siglongjmp,
    handler_edits_ucontext_rip,
    signals_to_itself,
    masks_and_pending,
    sigaltstack_and_ss_onstack,
    nodefer_and_resethand,
    fp_state_survives_a_handler,
    sigpipe_with_a_handler,
    sigpipe_by_default_ends_the_program,
    sigsuspend_and_sigtimedwait,
    sigkill_and_sigstop_cannot_be_caught,
);
