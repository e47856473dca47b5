//! Job control in the confined tree (issue 14, docs/processes.md, "Process
//! groups and sessions"): process groups and sessions served from the
//! tree, `kill` of groups, waits for groups, `SIGCHLD` auto-reap, a wait
//! interrupted by a signal, the parent-death signal, `tcgetpgrp`/
//! `tcsetpgrp`/`tcgetsid` without a controlling terminal (`ENOTTY`, as
//! Linux; with one: `cabinc/tests/shells.rs` `job_control_on_a_terminal`).
//! C cases run natively and confined; output and exit status must be
//! equal, on both backends (on KVM each child is a VM of its own).
//!
//! One test runs every case in turn, so that "no host process of the run
//! is left" sees no other test's processes.

mod common;

use std::os::fd::AsRawFd;

use common::{confined, live_children, native, Backend};

const CASES: &[&str] = &["groups", "session", "kill0", "autoreap", "waitintr", "pdeath", "sigterm", "notty"];

fn cases_equal_native(b: Backend) {
    if !b.available("jobs") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("jobs", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    for case in CASES {
        let args = ["jobs", case];
        let got = confined(b, &img, &args);
        let want = native(&exe, &args);
        assert_eq!(got, want, "confined vs native, case {case}");
        assert_eq!(live_children(), Vec::<String>::new(), "case {case} left processes behind");
    }
    // kill(-1) reaches every process of the tree but the caller, and
    // nothing outside it (natively it would reach every process of the
    // user: confined only).
    let got = confined(b, &img, &["jobs", "killall"]);
    assert_eq!(
        got,
        ("the caller: exited 0\nits sibling: exited 9\nthe root got it: 1\n".to_string(), 0),
        "kill(-1) confined"
    );
    assert_eq!(live_children(), Vec::<String>::new(), "kill(-1) left processes behind");
}

/// Trace records carry the (virtual) pid of the process that made the
/// call (in `tid`): a run whose child calls `setpgid` shows the root's pid
/// and the child's, and the child's `setpgid(0, 0)` under the child's; the
/// statistics total the tree and list each process.
fn trace_records_carry_the_pid(b: Backend) {
    if !b.available("jobs") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("jobs", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let trace = t.path().join("trace.jsonl");
    let out = std::fs::File::create(t.path().join("out")).expect("output file");
    let cfg = cabin_monitor::RunConfig {
        args: vec!["jobs".into(), "groups".into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        gate: cabin_monitor::GateConfig {
            trace: cabin_monitor::trace::TraceOptions {
                trace: Some(Some(trace.clone())),
                format: cabin_monitor::trace::TraceFormat::Jsonl,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let o = b.run(&img, &cfg).expect("the monitor runs the program");
    assert_eq!(o.exit_code, 0);
    // `--stats` totals the tree and lists each process: the child's own
    // setpgid(0, 0) is counted with the parent's setpgid(child, child).
    let procs = o.stats["processes"].as_array().cloned().unwrap_or_default();
    assert_eq!(procs.len(), 3, "root, child and grandchild: {}", o.stats);
    assert_eq!(o.stats["per_syscall"]["setpgid"]["forwarded"], 2, "{}", o.stats);
    let listed: u64 = procs.iter().map(|p| p["forwarded"].as_u64().unwrap_or(0)).sum();
    assert_eq!(o.stats["syscalls"]["forwarded"].as_u64(), Some(listed), "{}", o.stats);
    let text = std::fs::read_to_string(&trace).expect("the trace");
    let calls: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["type"] == "syscall")
        .collect();
    let tid = |r: &serde_json::Value| r["tid"].as_u64().unwrap_or(0);
    let fork = calls.iter().find(|r| r["name"] == "clone" || r["name"] == "fork").expect("a fork record");
    let root = tid(fork);
    // The child's own setpgid(0, 0) (the parent's names the child).
    let child_setpgid = calls
        .iter()
        .find(|r| r["name"] == "setpgid" && r["args"][0] == "0x0")
        .unwrap_or_else(|| panic!("no setpgid(0, 0) in {text}"));
    let child = tid(child_setpgid);
    assert!(root > 1 && child > 1 && root != child, "root {root}, child {child}");
    let tids: std::collections::BTreeSet<u64> = calls.iter().map(tid).collect();
    assert!(tids.len() >= 3, "root, child and grandchild: {tids:?}");
}

/// The two tests one at a time: each checks that no child of this test
/// process is left, which the other's running cases would break.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cases_equal_native(Backend::Process);
    trace_records_carry_the_pid(Backend::Process);
}

/// KVM: the same cases (each child a new VM).
#[test]
fn kvm() {
    if !Backend::Kvm.available("jobs") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cases_equal_native(Backend::Kvm);
    trace_records_carry_the_pid(Backend::Kvm);
}
