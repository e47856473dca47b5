//! Child processes (issue 14, docs/processes.md): C programs that fork,
//! wait, pipe and signal, run natively and confined; output and exit status
//! must be equal. Process backend only for now: the KVM backend cannot make
//! child processes yet (its fork is `ENOSYS`), so its tests are owed, not
//! here (docs/processes.md, "Status").
//!
//! All cases run one after the other in one test, so that the check "no
//! host process of the run is left" (every confined process is a child of
//! this test process) sees no other test's processes.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use common::Backend;

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

/// Host processes whose parent is this test process and that are not
/// zombies (each confined process is one).
fn live_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
        if field("PPid:").as_deref() == Some(me.as_str())
            && !field("State:").unwrap_or_default().starts_with('Z')
        {
            found.push(format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                field("State:").unwrap_or_default()
            ));
        }
    }
    found
}

const CASES: &[&str] =
    &["fork", "cow", "pipe", "statuses", "many", "nested", "wnohang", "vfork", "sigchld", "orphan", "kill"];

fn cases_equal_native(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("procs", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    for case in CASES {
        let args = ["procs", case];
        let got = confined(b, &img, &args);
        let want = native(&exe, &args);
        assert_eq!(got, want, "confined vs native, case {case}");
        assert_eq!(live_children(), Vec::<String>::new(), "case {case} left processes behind");
    }
}

/// A fork bomb under `processes = 8` is stopped with the limit's message
/// and a `limit` audit record, and nothing of it remains.
fn fork_bomb_stops_at_the_limit(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("attack_forkbomb", t.path()) else { return };
    let bomb = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let audit = t.path().join("audit.jsonl");
    let policy = "version = 1\n[default]\naction = \"allow\"\n[limits]\nprocesses = 8\n";
    let cfg = cabin_monitor::RunConfig {
        args: vec!["attack_forkbomb".into()],
        quiet: true,
        gate: cabin_monitor::GateConfig {
            policy: Some(cabin_policy::Policy::parse("p.toml", policy).expect("the policy parses")),
            trace: cabin_monitor::trace::TraceOptions { audit: Some(audit.clone()), ..Default::default() },
            ..Default::default()
        },
        ..Default::default()
    };
    let o = b.run(&bomb, &cfg).expect("the monitor runs the program");
    assert_eq!(o.exit_code, 137, "stopped by the limit: {:?}", o.reason);
    let text = std::fs::read_to_string(&audit).expect("the audit log");
    let limit = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["type"] == "limit")
        .unwrap_or_else(|| panic!("no limit record in {text}"));
    assert_eq!((limit["limit"].as_str(), limit["max"].as_str()), (Some("processes"), Some("0x8")), "{limit}");
    assert_eq!(live_children(), Vec::<String>::new(), "the fork bomb left processes behind");
}

/// A child that scribbles over its ring reaches only its own: its parent
/// is still served, its memory untouched; `kill` outside the tree is
/// `ESRCH`.
fn a_child_cannot_reach_its_parents_ring(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("attack_fork", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let (out, code) = confined(b, &img, &["attack_fork"]);
    assert_eq!(
        (out.as_str(), code),
        (
            "child reaped: 1\nparent still served; its data: the parent's data\nkill outside the tree refused: 4 of 4\n",
            0
        ),
        "confined"
    );
    assert_eq!(live_children(), Vec::<String>::new(), "the attack left processes behind");
}

/// Process backend: every case, then the fork bomb. (KVM: owed, see the
/// module docs.)
#[test]
fn process() {
    cases_equal_native(Backend::Process);
    a_child_cannot_reach_its_parents_ring(Backend::Process);
    fork_bomb_stops_at_the_limit(Backend::Process);
}
