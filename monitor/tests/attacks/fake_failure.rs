//! A program must not be able to make its end look like a failure of Cabin
//! (exit 125, no audit `exit` record, no `--stats`): misusing the KVM ring
//! doorbell (a value Cabin does not define, a wide or string `out`, an
//! `in`) or scribbling on the process backend's loader status word (which
//! lies in memory the program can write) ends it as the program's own
//! fault or exit, with every record written.
//!
//! `programs/attack_fake_failure.c`, one attempt per run, each with
//! `--stats` and an audit log.

use std::os::fd::AsRawFd;
use std::sync::OnceLock;

use cabin_monitor::trace::TraceOptions;
use cabin_monitor::GateConfig;
use cabin_monitor::RunConfig;
use serde_json::Value;

use crate::common::{self, Backend};

/// The exit code, the audit `exit` record's reason, and a piece of its message.
type Expected = (i32, &'static str, &'static str);

/// The attack image, built once per test binary (`None`: no gcc, not run).
fn image() -> Option<&'static [u8]> {
    static IMG: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMG.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        common::image("attack_fake_failure", t.path())
    })
    .as_deref()
}

fn attempt(b: Backend, args: &[&str], expected: Expected) {
    let Some(img) = image() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let audit = t.path().join("audit.jsonl");
    let stats = t.path().join("stats.json");
    let out_path = t.path().join("out.txt");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let mut argv = vec!["attack_fake_failure".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let cfg = RunConfig {
        args: argv,
        quiet: true,
        stats: Some(stats.clone()),
        stdio: Some([0, out.as_raw_fd(), 2]),
        arena_bytes: 64 << 20,
        gate: GateConfig {
            trace: TraceOptions { audit: Some(audit.clone()), ..TraceOptions::default() },
            ..GateConfig::default()
        },
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).unwrap_or_else(|e| panic!("{args:?}: a Cabin error (exit 125): {e}"));
    let (code, why, message) = expected;
    assert_eq!(o.exit_code, code, "{args:?}: {:?}", o.reason);

    let log = std::fs::read_to_string(&audit).expect("audit log written");
    let exits: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|r| r["type"] == "exit")
        .collect();
    assert_eq!(exits.len(), 1, "{args:?}: one exit record:\n{log}");
    assert_eq!(exits[0]["exit_code"], code, "{log}");
    assert_eq!(exits[0]["reason"], why, "{log}");
    let got = exits[0]["message"].as_str().unwrap_or_default();
    assert!(got.contains(message), "{args:?}: exit message {got:?} lacks {message:?}");

    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats written")).expect("JSON");
    assert_eq!(s["exit_code"], code, "{s}");
}

fn kvm_or(b: Backend, kvm: Expected, process: Expected) -> Expected {
    if b == Backend::Kvm {
        kvm
    } else {
        process
    }
}

/// On KVM a ring-protocol violation (137), or #GP (SIGSEGV) for a wide
/// `out`, which also touches ports 0xE1..0xE3 that the I/O bitmap denies; a
/// process may not use ports at all (#GP: SIGSEGV).
fn doorbell_misuse_is_the_programs_fault(b: Backend) {
    let fault = (139, "signal", "SIGSEGV");
    let violation = (137, "protocol-violation", "doorbell");
    for (what, kvm) in [
        ("doorbell-value", violation),
        ("doorbell-zero", violation),
        ("doorbell-wide", fault),
        ("doorbell-in", violation),
        ("doorbell-outs", violation),
    ] {
        attempt(b, &[what], kvm_or(b, kvm, fault));
    }
}

/// The loader status word says "failed while mapping" or "seccomp failed"
/// after the program ran: its end is its own (on KVM the address is not
/// mapped: SIGSEGV).
fn loader_status_word_is_not_believed(b: Backend) {
    let at = format!("{:#x}", cabin_process::layout::LOADER_ADDR);
    attempt(b, &["loader-status", &at], kvm_or(b, (139, "signal", "SIGSEGV"), (0, "exited", "")));
    attempt(b, &["loader-status-125", &at], kvm_or(b, (139, "signal", "SIGSEGV"), (125, "exited", "")));
}

on_both_backends!(doorbell_misuse_is_the_programs_fault, loader_status_word_is_not_believed);
