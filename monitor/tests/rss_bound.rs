//! A program that feeds the monitor a million distinct system-call numbers
//! (`tests/programs/attack_numbers.c`: `syscall(100000 + i)`, plus a few far
//! out of range) must leave the monitor's memory and stderr bounded: under
//! 64 MiB peak RSS and fewer than 100 stderr lines, on both backends, with no
//! policy and with a deny-by-default policy and `--audit` (issue 11, item 6).
//!
//! Its own test binary, and each run in a process of its own: the test
//! re-runs this binary (`child::run`, ignored otherwise) once per backend and
//! configuration, reads the child's peak RSS (`VmHWM` of the process that ran
//! the monitor) from its stdout and counts its stderr lines, so neither other
//! tests' memory nor libtest's output capture pollutes the numbers.

#[macro_use]
#[allow(unused_macros)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cabin_monitor::trace::TraceOptions;
use cabin_monitor::GateConfig;
use cabin_monitor::RunConfig;
use cabin_policy::Policy;
use common::Backend;
use serde_json::Value;

/// Distinct numbers from 100000; the program adds 11 more far out of range.
const NUMBERS: u64 = 1_000_000;
const CALLS: u64 = NUMBERS + 11;
const MAX_RSS_KB: u64 = 64 * 1024;
const MAX_STDERR_LINES: usize = 100;
const CHILD_ENV: &str = "CABIN_RSS_BOUND_CHILD";

/// Deny by default: every made-up number is refused by the policy (and
/// audited) before it reaches the service.
const POLICY: &str = r#"version = 1
[default]
action = "deny"
[syscalls]
allow = ["read", "write", "close", "exit_group", "fstat", "newfstatat", "arch_prctl", "set_tid_address", "set_robust_list", "rseq", "prlimit64", "getrandom", "readlink", "@memory", "@time"]
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// No policy, no trace: the service answers ENOSYS.
    Plain,
    /// The policy above and `--audit`.
    PolicyAudit,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::PolicyAudit => "policy-audit",
        }
    }
}

#[test]
fn a_million_distinct_numbers_leave_the_monitor_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(img) = common::image("attack_numbers", dir.path()) else {
        cabin_tests::not_run("gcc", "gcc is not available to build attack_numbers.c");
        return;
    };
    let img_path = dir.path().join("attack_numbers.cabin");
    std::fs::write(&img_path, img).expect("write image");
    let mut ran = 0;
    for b in [Backend::Process, Backend::Kvm] {
        if !b.available("a_million_distinct_numbers_leave_the_monitor_bounded") {
            continue;
        }
        for mode in [Mode::Plain, Mode::PolicyAudit] {
            check_run(b, mode, &img_path, dir.path());
            ran += 1;
        }
    }
    assert!(ran >= 2, "the process backend always runs");
}

/// Runs one configuration in a child process and checks its numbers.
fn check_run(b: Backend, mode: Mode, img: &Path, dir: &Path) {
    let what = format!("{b:?} {}", mode.as_str());
    let exe = std::env::current_exe().expect("current exe");
    let spec = format!("{}|{}|{}|{}", backend_name(b), mode.as_str(), img.display(), dir.display());
    let out = Command::new(exe)
        .args(["--exact", "child::run", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = stderr.lines().count();
    let head: String = stderr.lines().take(20).collect::<Vec<_>>().join("\n");
    let report = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rss-child: "))
        .unwrap_or_else(|| panic!("{what}: no report from the child ({}):\n{stdout}\n{head}", out.status));
    let field = |k: &str| -> u64 {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no {k} in `{report}`"))
    };
    let (exit, hwm) = (field("exit"), field("vmhwm_kb"));
    eprintln!("{what}: exit {exit}, peak RSS {hwm} KiB, {lines} stderr lines");
    assert!(hwm < MAX_RSS_KB, "{what}: the monitor's peak RSS is {hwm} KiB (max {MAX_RSS_KB})");
    assert!(lines < MAX_STDERR_LINES, "{what}: {lines} stderr lines (max {MAX_STDERR_LINES}):\n{head}");
    assert_eq!(exit, 0, "{what}: the program saw a call succeed or did not finish:\n{stdout}\n{head}");
    assert!(out.status.success(), "{what}: child failed ({}):\n{stdout}\n{head}", out.status);
    assert_eq!(field("other"), CALLS, "{what}: every made-up number counted in one bucket");
    assert!(field("entries") < 64, "{what}: the stats list {} entries", field("entries"));
    // The rewriter turned libc's syscall() site into a libos call, which
    // forwarded every number over the ring (none took the trap path).
    assert!(field("trapped") < 16, "{what}: {} calls trapped", field("trapped"));
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Process => "process",
        Backend::Kvm => "kvm",
    }
}

fn schema() -> cabin_tests::json_schema::Validator {
    cabin_tests::json_schema::trace_schema()
}

mod child {
    use super::*;

    /// One run, in the process whose RSS is measured; prints
    /// `rss-child: exit=N vmhwm_kb=N other=N` on stdout.
    #[test]
    #[ignore = "run by a_million_distinct_numbers_leave_the_monitor_bounded in a process of its own"]
    fn run() {
        let Ok(spec) = std::env::var(CHILD_ENV) else {
            eprintln!(
                "NOT RUN: child::run only runs inside a_million_distinct_numbers_leave_the_monitor_bounded"
            );
            return;
        };
        let parts: Vec<&str> = spec.split('|').collect();
        let [backend, mode, img, dir] = parts[..] else { panic!("bad spec {spec}") };
        let (b, dir) = (if backend == "kvm" { Backend::Kvm } else { Backend::Process }, PathBuf::from(dir));
        let img = std::fs::read(img).expect("read image");
        let stats = dir.join(format!("stats-{backend}-{mode}.json"));
        let audit = dir.join(format!("audit-{backend}-{mode}.jsonl"));
        let mut gate = GateConfig::default();
        if mode == Mode::PolicyAudit.as_str() {
            gate.policy = Some(Policy::parse("rss-policy.toml", POLICY).unwrap_or_else(|e| panic!("{e}")));
            gate.trace = TraceOptions { audit: Some(audit.clone()), ..TraceOptions::default() };
        }
        let cfg = RunConfig {
            args: vec!["attack_numbers".into(), NUMBERS.to_string()],
            quiet: true,
            stats: Some(stats.clone()),
            gate,
            ..RunConfig::default()
        };
        let o = b.run(&img, &cfg).expect("run");
        let hwm = vm_hwm_kb();
        let s: Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("stats JSON");
        let other = if mode == Mode::Plain.as_str() {
            // Served (ENOSYS) by the service: in the stats, one entry.
            s["per_syscall"]["syscall_other"]["forwarded"].as_u64().unwrap_or(0)
        } else {
            // Refused by the policy: in the audit log's exit summary.
            check_audit(&audit)
        };
        let entries = s["per_syscall"].as_object().map_or(0, |o| o.len());
        let trapped = s["syscalls"]["trapped"].as_u64().unwrap_or(u64::MAX);
        println!(
            "rss-child: exit={} vmhwm_kb={hwm} other={other} entries={entries} trapped={trapped}",
            o.exit_code
        );
    }

    /// The audit log stays under its cap, is valid against the schema, and
    /// ends with an `exit` record whose summary counts the numbers in one
    /// entry; returns that count.
    fn check_audit(path: &Path) -> u64 {
        let text = std::fs::read_to_string(path).expect("audit log");
        assert!(text.len() as u64 <= cabin_monitor::trace::DEFAULT_AUDIT_CAP, "{} bytes", text.len());
        let v = schema();
        let mut last = Value::Null;
        for (i, line) in text.lines().enumerate() {
            let r: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
            // The schema on the first records and every non-syscall one (the
            // ~50000 denials between are alike).
            if i < 100 || r["type"] != "syscall" {
                if let Err(e) = v.validate(&r) {
                    panic!("audit line {} breaks the schema: {e}\n{line}", i + 1);
                }
            }
            last = r;
        }
        assert_eq!(last["type"], "exit", "{last}");
        assert!(last["audit_dropped"].as_u64().unwrap_or(0) > 0, "the cap was reached: {last}");
        last["summary"]["per_syscall"]["syscall_other"].as_u64().unwrap_or(0)
    }

    /// Peak resident set size of this process, in KiB.
    fn vm_hwm_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}
