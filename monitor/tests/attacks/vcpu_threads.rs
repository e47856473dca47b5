//! Threads against the domain's CPUs (`programs/attack_vcpu_threads.c`; on
//! KVM each thread is a vCPU, backends/kvm/src/vcpus.rs): a thread's fault
//! ends the whole program with 128 + signal while another thread waits;
//! `exit_group` stops threads that spin in ring 3 without ever making a call
//! (KVM: every other vCPU is kicked out of `KVM_RUN`), also when a thread
//! other than main calls it; the main thread's `exit` first leaves the
//! others running and the program's status is the last thread's, as
//! natively;
//! a 64th thread beyond the rings is refused with `EAGAIN`, never a monitor
//! failure. Every run must end (no hang) with the monitor intact.

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::OnceLock;

use cabin_monitor::RunConfig;

use crate::common::{self, Backend};

/// The compiled program and its image.
type Program = (std::path::PathBuf, Vec<u8>);

/// (the compiled program, its image), built once per test binary.
fn program() -> Option<&'static Program> {
    static P: OnceLock<Option<(tempfile::TempDir, Program)>> = OnceLock::new();
    P.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        let exe = common::compile("attack_vcpu_threads", t.path())?;
        let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
        Some((t, (exe, img)))
    })
    .as_ref()
    .map(|(_, p)| p)
}

fn run(b: Backend, case: &str) -> Option<(String, i32)> {
    let (_, img) = program()?;
    let t = tempfile::tempdir().expect("tempdir");
    let path = t.path().join("out");
    let out = std::fs::File::create(&path).expect("output file");
    let cfg = RunConfig {
        args: vec!["attack_vcpu_threads".into(), case.into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..Default::default()
    };
    let o = b.run(img, &cfg).expect("the monitor survives and reports");
    Some((std::fs::read_to_string(&path).expect("read the output"), o.exit_code))
}

fn native(case: &str) -> (String, i32) {
    let (exe, _) = program().expect("built");
    let o = Command::new(exe).arg(case).output().expect("run natively");
    (String::from_utf8_lossy(&o.stdout).into_owned(), o.status.code().unwrap_or(-1))
}

fn a_thread_fault_ends_the_program(b: Backend) {
    let Some((out, code)) = run(b, "fault") else { return };
    assert_eq!((out.as_str(), code), ("", 128 + 11), "SIGSEGV in a thread ends every thread");
}

fn exit_group_stops_threads_spinning_in_ring_3(b: Backend) {
    let Some((out, code)) = run(b, "exit_group_spin") else { return };
    assert_eq!((out, code), native("exit_group_spin"));
    assert_eq!(code, 7);
}

fn exit_group_from_a_thread_stops_main_spinning(b: Backend) {
    let Some((out, code)) = run(b, "thread_exit_group") else { return };
    assert_eq!((out, code), native("thread_exit_group"));
    assert_eq!(code, 9);
}

fn main_exits_first_and_the_last_threads_status_is_the_programs(b: Backend) {
    let Some((out, code)) = run(b, "main_exits_first") else { return };
    assert_eq!((out, code), native("main_exits_first"));
}

fn more_threads_than_rings_is_eagain(b: Backend) {
    let Some((out, code)) = run(b, "many") else { return };
    assert_eq!((out.as_str(), code), ("created 63: Resource temporarily unavailable\n", 0));
}

/// `[limits] cpu-time` counts a thread that spins while the main thread
/// waits (KVM: a vCPU thread other than the run thread; wall-time only ends
/// a run that the cpu-time limit missed, and the record must say cpu-time).
fn cpu_time_counts_every_thread(b: Backend) {
    let Some((_, img)) = program() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let audit = t.path().join("audit.jsonl");
    let text =
        "version = 1\n[default]\naction = \"allow\"\n[limits]\ncpu-time = \"1s\"\nwall-time = \"30s\"\n";
    let cfg = RunConfig {
        args: vec!["attack_vcpu_threads".into(), "spin_thread".into()],
        quiet: true,
        gate: cabin_monitor::GateConfig {
            policy: Some(cabin_policy::Policy::parse("limits.toml", text).expect("policy")),
            trace: cabin_monitor::trace::TraceOptions { audit: Some(audit.clone()), ..Default::default() },
            ..Default::default()
        },
        ..Default::default()
    };
    let o = b.run(img, &cfg).expect("the run happens");
    let recs = std::fs::read_to_string(&audit).unwrap_or_default();
    let limits: Vec<String> = recs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["type"] == "limit")
        .map(|r| r["limit"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(limits, ["cpu-time"], "{:?}", o.reason);
    assert_eq!(o.exit_code, 137);
}

/// KVM: a thread ends its vCPU with the thread-exit doorbell
/// (`DOORBELL_EXIT`) without posting its exit: only that thread ends (its
/// joiner is woken by the monitor's `CLONE_CHILD_CLEARTID`), the program
/// goes on, starts another thread and ends with its own status; the
/// monitor neither hangs nor fails.
#[test]
fn thread_exit_doorbell_without_a_posted_exit_ends_only_that_thread() {
    if !Backend::Kvm.available("thread_exit_doorbell") {
        return;
    }
    let Some((out, code)) = run(Backend::Kvm, "doorbell_exit") else { return };
    assert_eq!((out.as_str(), code), ("joined\nsecond thread ran\n", 3));
}

/// Every thread of the program asleep in futex for ever (KVM: plain and
/// any-bit waits sleep in their vCPU threads' host futex, a one-bit wait in
/// its ring worker's): the run's wall-time limit ends it, the monitor wakes
/// every sleeper and reports, nothing hangs.
fn threads_asleep_in_futex_for_ever_end_at_the_wall_time_limit(b: Backend) {
    let Some((_, img)) = program() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let audit = t.path().join("audit.jsonl");
    let text = "version = 1\n[default]\naction = \"allow\"\n[limits]\nwall-time = \"1s\"\n";
    let cfg = RunConfig {
        args: vec!["attack_vcpu_threads".into(), "futex_forever".into()],
        quiet: true,
        gate: cabin_monitor::GateConfig {
            policy: Some(cabin_policy::Policy::parse("limits.toml", text).expect("policy")),
            trace: cabin_monitor::trace::TraceOptions { audit: Some(audit.clone()), ..Default::default() },
            ..Default::default()
        },
        ..Default::default()
    };
    let o = b.run(img, &cfg).expect("the run ends and the monitor reports");
    let recs = std::fs::read_to_string(&audit).unwrap_or_default();
    let limits: Vec<String> = recs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["type"] == "limit")
        .map(|r| r["limit"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(limits, ["wall-time"], "{:?}", o.reason);
    assert_eq!(o.exit_code, 137);
}

/// KVM: the futex doorbell (`DOORBELL_FUTEX`, which the vCPU thread serves
/// itself) with hostile arguments: a word off the program's data (zero
/// page, kernel half, code), misaligned, a bad or out-of-range timeout, the
/// operations it does not serve: each one an error for the program only,
/// never a sleep on someone else's word nor a monitor failure.
#[test]
fn futex_doorbell_with_hostile_arguments_is_only_errors() {
    if !Backend::Kvm.available("futex_doorbell") {
        return;
    }
    let Some((out, code)) = run(Backend::Kvm, "futex_doorbell") else { return };
    assert_eq!((out.as_str(), code), ("-11 -110 -22 -14 -14 -14 -14 -22 -38 -38 -38 -38 0 -22 \n", 0));
}

/// Four threads start short-lived threads as fast as they can (joined,
/// detached, or ended with a raw `exit` that glibc never sees; some wake and
/// requeue sleepers of their own tid word first) while the main thread ends
/// the program with `exit_group(7)`: starts, ends, `CLONE_CHILD_CLEARTID`
/// wakes and the end race (KVM: vCPUs and host threads reused). The
/// program ends with 7 and the monitor reports, as natively; nothing hangs.
fn threads_started_and_ended_in_a_race_with_exit_group(b: Backend) {
    let Some((out, code)) = run(b, "churn") else { return };
    assert_eq!((out.as_str(), code), ("", 7));
    assert_eq!(native("churn"), (String::new(), 7));
}

on_both_backends!(
    threads_started_and_ended_in_a_race_with_exit_group,
    threads_asleep_in_futex_for_ever_end_at_the_wall_time_limit,
    cpu_time_counts_every_thread,
    a_thread_fault_ends_the_program,
    exit_group_stops_threads_spinning_in_ring_3,
    exit_group_from_a_thread_stops_main_spinning,
    main_exits_first_and_the_last_threads_status_is_the_programs,
    more_threads_than_rings_is_eagain
);
