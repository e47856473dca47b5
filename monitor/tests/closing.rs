//! `close` answered by the libos at once (issue 15, `libos/src/forward/closing.rs`): the program
//! (`tests/programs/closing.c`, which passes natively first) gets what Linux gives it — a closed
//! number free for the very next open, `EBADF` for numbers never opened, closed twice, closed by
//! `close_range` or by a child, a lock released before the next request is served, closes with
//! threads — while the monitor still serves (and traces) every `close`, and a policy that may
//! refuse `close` gets its answer to the program.
//!
//! Each test runs on the process backend and on the KVM backend (which prints `KVM test NOT RUN`
//! and returns where /dev/kvm is not usable).

#[macro_use]
mod common;

use std::path::{Path, PathBuf};

use cabin_monitor::trace::{TraceFormat, TraceOptions};
use cabin_monitor::{GateConfig, RunConfig, RunOutcome};
use cabin_policy::Policy;
use common::Backend;
use serde_json::Value;

on_both_backends!(
    closes_answer_as_linux_does,
    the_monitor_serves_and_traces_every_close,
    a_policy_that_refuses_a_close_gets_its_errno
);

/// The directories of one run: a read tree with `data.bin`, a write tree.
struct Dirs {
    _t: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    scratch: PathBuf,
}

fn dirs() -> Dirs {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().to_path_buf();
    let data = root.join("data");
    let scratch = root.join("scratch");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::create_dir(&scratch).expect("mkdir");
    std::fs::write(data.join("data.bin"), vec![7u8; 4096]).expect("write data.bin");
    Dirs { _t: t, root, data, scratch }
}

fn policy(text: &str) -> Policy {
    Policy::parse("closing.toml", text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Runs the program (natively first, where it must pass too) with `mode` ("" or "deny").
fn run(b: Backend, d: &Dirs, mode: &str, gate: GateConfig) -> Option<RunOutcome> {
    let img = common::image("closing", &d.root)?;
    let file = d.data.join("data.bin").display().to_string();
    let scratch = d.scratch.display().to_string();
    let mut args = vec!["closing".to_string(), file, scratch];
    if !mode.is_empty() {
        args.push(mode.into());
    }
    if mode.is_empty() {
        let exe = common::compile("closing", &d.root)?;
        let st = std::process::Command::new(&exe).args(&args[1..]).output().expect("run natively");
        assert!(st.status.success(), "natively: {}", String::from_utf8_lossy(&st.stderr));
    }
    let cfg = RunConfig {
        args,
        allow_read: vec![d.data.clone()],
        allow_write: vec![d.scratch.clone()],
        quiet: true,
        gate,
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("runs");
    assert_eq!(o.exit_code, 0, "{b:?} {mode}: {:?} (the program printed what differed on stderr)", o.reason);
    Some(o)
}

fn closes_answer_as_linux_does(b: Backend) {
    let d = dirs();
    run(b, &d, "", GateConfig::default());
}

fn trace_to(path: &Path) -> TraceOptions {
    TraceOptions {
        trace: Some(Some(path.to_path_buf())),
        format: TraceFormat::Jsonl,
        ..TraceOptions::default()
    }
}

/// A trace's "0x..." value (`u64::MAX` when absent).
fn hex(v: &Value) -> u64 {
    v.as_str().and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()).unwrap_or(u64::MAX)
}

/// The `close` records of a JSON-lines trace: (fd, ret).
fn closes(path: &Path) -> Vec<(u64, i64)> {
    let text = std::fs::read_to_string(path).expect("trace");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["type"] == "syscall" && r["name"] == "close")
        .map(|r| (hex(&r["args"][0]), hex(&r["ret"]) as i64))
        .collect()
}

/// A trace has every `close` the program made, with the result the program got, as many as when
/// every `close` waits for the monitor (a policy that may refuse `close` turns the local answer
/// off); the last one, right before the program ends, too.
fn the_monitor_serves_and_traces_every_close(b: Backend) {
    let d = dirs();
    let fast = d.root.join("fast.jsonl");
    if run(b, &d, "", GateConfig { trace: trace_to(&fast), ..GateConfig::default() }).is_none() {
        return;
    }
    let slow = d.root.join("slow.jsonl");
    // Refuses only a number the program never closes: every close takes the round trip.
    let p = policy(
        "version = 1\n[default]\naction = \"allow\"\n[[rule]]\nsyscall = \"close\"\naction = \"deny\"\nerrno = \"EACCES\"\narg = 0\nop = \"eq\"\nvalue = 999999\n",
    );
    run(b, &d, "", GateConfig { policy: Some(p), trace: trace_to(&slow), ..GateConfig::default() });
    let (fast, slow) = (closes(&fast), closes(&slow));
    assert!(fast.len() > 6_000, "{b:?}: only {} close records", fast.len());
    assert_eq!(fast.len(), slow.len(), "{b:?}: close records with the local answer and without");
    let zero = |v: &[(u64, i64)]| v.iter().filter(|c| c.1 == 0).count();
    assert_eq!(zero(&fast), zero(&slow), "{b:?}: closes that succeeded");
    // The program's last call before it returns from main is a close that succeeds.
    let last = fast.last().expect("a close");
    assert_eq!(last.1, 0, "{b:?}: the last close {last:?}");
}

/// `close(7)` refused by the policy: the program gets `EACCES` and 7 stays open.
fn a_policy_that_refuses_a_close_gets_its_errno(b: Backend) {
    let d = dirs();
    let p = policy(
        "version = 1\n[default]\naction = \"allow\"\n[[rule]]\nsyscall = \"close\"\naction = \"deny\"\nerrno = \"EACCES\"\narg = 0\nop = \"eq\"\nvalue = 7\n",
    );
    run(b, &d, "deny", GateConfig { policy: Some(p), ..GateConfig::default() });
}
