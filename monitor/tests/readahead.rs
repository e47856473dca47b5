//! Read-ahead in the libos (`libos/src/forward/readahead.rs`): a program that
//! streams a file in small reads gets every byte and every offset Linux
//! would give it (`tests/programs/readahead.c` checks them itself, and
//! passes natively), while far fewer reads reach the monitor. With a trace
//! on, the monitor sees each of the program's reads again.
//!
//! Each test runs on the process backend and on the KVM backend (which
//! prints `KVM test NOT RUN` and returns where /dev/kvm is not usable).

#[macro_use]
mod common;

use std::path::Path;

use cabin_monitor::trace::{TraceFormat, TraceOptions};
use cabin_monitor::GateConfig;
use cabin_monitor::{RunConfig, RunOutcome};
use common::Backend;
use serde_json::Value;

/// The program's own `read` calls in one run: its 918 checked reads, the
/// one past the end and the 11 of the second file.
const PROGRAM_READS: u64 = 930;

fn pattern_file(path: &Path) {
    let n: u64 = 4 * 1024 * 1024 + 12345;
    let bytes: Vec<u8> = (0..n).map(|i| ((i.wrapping_mul(2_654_435_761) >> 13) & 0xff) as u8).collect();
    std::fs::write(path, bytes).expect("write the pattern file");
}

fn forwarded(o: &RunOutcome, name: &str) -> u64 {
    o.stats["per_syscall"][name]["forwarded"].as_u64().unwrap_or(0)
}

fn run(b: Backend, gate: GateConfig) -> Option<RunOutcome> {
    let t = tempfile::tempdir().expect("tempdir");
    let img = common::image("readahead", t.path())?;
    let data = t.path().join("data");
    let scratch = t.path().join("scratch");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::create_dir(&scratch).expect("mkdir");
    let file = data.join("pattern.bin");
    pattern_file(&file);
    // The program passes natively first: it checks Linux's behaviour itself.
    let native = common::compile("readahead", t.path())?;
    let st = std::process::Command::new(&native).arg(&file).arg(&scratch).output().expect("run natively");
    assert!(st.status.success(), "natively: {}", String::from_utf8_lossy(&st.stderr));
    let cfg = RunConfig {
        args: vec!["readahead".into(), file.display().to_string(), scratch.display().to_string()],
        allow_read: vec![data],
        allow_write: vec![scratch],
        quiet: true,
        gate,
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("runs");
    assert_eq!(o.exit_code, 0, "{:?} (the program printed what differed on stderr)", o.reason);
    Some(o)
}

fn streaming_reads_match_linux_and_mostly_stay_in_the_domain(b: Backend) {
    let Some(o) = run(b, GateConfig::default()) else { return };
    let reads = forwarded(&o, "read");
    let readvs = forwarded(&o, "readv");
    println!("{b:?}: {reads} reads and {readvs} readvs forwarded for {PROGRAM_READS} reads by the program");
    assert!(readvs > 0, "read-ahead never engaged: {}", o.stats["per_syscall"]);
    assert!(reads + readvs < PROGRAM_READS / 2, "{reads} + {readvs}: {}", o.stats["per_syscall"]);
}

fn a_trace_sees_every_read_of_the_program(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let trace = TraceOptions {
        trace: Some(Some(t.path().join("run.jsonl"))),
        format: TraceFormat::Jsonl,
        audit: None,
        audit_cap: 0,
    };
    let Some(o) = run(b, GateConfig { trace, ..GateConfig::default() }) else { return };
    assert_eq!(forwarded(&o, "read"), PROGRAM_READS, "{}", o.stats["per_syscall"]);
    assert_eq!(forwarded(&o, "readv"), 0);
    let text = std::fs::read_to_string(t.path().join("run.jsonl")).expect("trace");
    let traced = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["name"] == "read")
        .count() as u64;
    assert_eq!(traced, PROGRAM_READS);
}

on_both_backends!(
    streaming_reads_match_linux_and_mostly_stay_in_the_domain,
    a_trace_sees_every_read_of_the_program
);
