//! Job control: processes that stop and continue (issue 14,
//! docs/processes.md "Job control"): `raise(SIGSTOP)`, `SIGTSTP` with and
//! without a handler or ignored, `SIGKILL` and `SIGTERM` to a stopped
//! child, a group stopped and continued with `kill(-pgid)` (a `SIGCONT`
//! handler runs), `wait4` with `WUNTRACED`/`WCONTINUED` and `waitid` with
//! `WSTOPPED`/`WCONTINUED`/`WNOWAIT`, `SIGCHLD` codes and `SA_NOCLDSTOP`,
//! `SIGCONT` discarding a pending stop signal, a stop/continue flood, a
//! signal sent to each of 50 children as it is forked (`early`). C
//! cases (`programs/stops.c`) run natively and confined: output and exit
//! status equal, on both backends, and no host process of the run left.
//! Then the end of a run leaves no stopped process behind, a stopped root
//! included (confined only).
//!
//! One test per backend runs every case in turn, so that "no host process
//! of the run is left" sees no other test's processes.

mod common;

use common::{confined, live_children, native, Backend};

const CASES: &[&str] =
    &["selfstop", "tstp", "killstopped", "group", "waitid", "nocldstop", "flood", "handlers", "early"];

fn cases_equal_native(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("stops", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    for case in CASES {
        let args = ["stops", case];
        let got = confined(b, &img, &args);
        let want = native(&exe, &args);
        assert_eq!(got, want, "confined vs native, case {case}");
        assert_eq!(live_children(), Vec::<String>::new(), "case {case} left processes behind");
    }
    // The root ends while its child is stopped: the run's end ends it.
    let got = confined(b, &img, &["stops", "leftstopped"]);
    assert_eq!(got, ("left stopped: stopped by 19\n".to_string(), 0), "a child left stopped");
    assert_eq!(live_children(), Vec::<String>::new(), "a stopped child was left behind");
    // The root stops itself (cabinc stays waiting, docs/processes.md); a
    // limit still ends the run and every stopped process.
    let dir = t.path().join("rootstop");
    std::fs::create_dir_all(&dir).expect("dir");
    let policy = "version = 1\n[default]\naction = \"allow\"\n[limits]\nwall-time = \"2s\"\n";
    let cfg = cabin_monitor::RunConfig {
        args: vec!["stops".into(), "rootstop".into()],
        quiet: true,
        gate: cabin_monitor::GateConfig {
            policy: Some(cabin_policy::Policy::parse("stops.toml", policy).expect("policy")),
            ..Default::default()
        },
        ..Default::default()
    };
    let (out, _err, code) = common::confined_captured(b, &img, cfg, &dir);
    assert_eq!(out, "child: stopped by 19\n", "the root stopped and did not go on");
    assert_eq!(code, 137, "the wall-time limit ended the stopped tree");
    assert_eq!(live_children(), Vec::<String>::new(), "a stopped root left processes behind");
}

/// The two tests one at a time: each checks that no child of this test
/// process is left, which the other's running cases would break.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cases_equal_native(Backend::Process);
}

/// KVM: the same cases (each child a VM; a stopped VM's vCPUs are held by
/// the monitor).
#[test]
fn kvm() {
    if !Backend::Kvm.available("stops") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cases_equal_native(Backend::Kvm);
}
