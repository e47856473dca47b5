//! `[limits] memory` on a real memory bomb: a C program that mallocs and
//! touches 1 MiB chunks forever (tests/programs/membomb.c, `gcc -static`),
//! which glibc serves with `mmap`, and the same with 4000-byte chunks,
//! which it serves from the `brk` heap first.
//!
//! With `memory = "64M"` the libos stops it (exit 137) at the first request
//! the domain's memory cannot give, the monitor prints one line and writes
//! one `limit` record, and the host never holds more than the limit for
//! the domain (the memfd's size and its committed blocks, from `--stats`).
//!
//! Needs `gcc` with static glibc; without it the test says so on stderr and
//! returns early (counted as not run, never as a pass). The KVM variant
//! prints `KVM test NOT RUN` where /dev/kvm is not usable.

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use cabin_monitor::trace::TraceOptions;
use cabin_monitor::GateConfig;
use cabin_monitor::{EndReason, RunConfig};
use cabin_policy::Policy;
use common::Backend;
use serde_json::Value;

const LIMIT: u64 = 64 << 20;

fn schema() -> cabin_tests::json_schema::Validator {
    cabin_tests::json_schema::trace_schema()
}

/// CLOCK_MONOTONIC in nanoseconds (the clock the bomb stamps its lines with).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec into a local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn memory_bomb_is_stopped_at_the_limit_process() {
    memory_bomb_is_stopped_at_the_limit(Backend::Process);
}

#[test]
fn small_block_memory_bomb_is_stopped_at_the_limit_process() {
    bomb(Backend::Process, 4000);
}

#[test]
fn memory_bomb_is_stopped_at_the_limit_kvm() {
    if !Backend::Kvm.available("memory_bomb_is_stopped_at_the_limit") {
        return;
    }
    memory_bomb_is_stopped_at_the_limit(Backend::Kvm);
}

fn memory_bomb_is_stopped_at_the_limit(b: Backend) {
    bomb(b, 1 << 20);
}

/// Runs the bomb with `chunk`-byte blocks under a 64M limit and checks the
/// stop, the message, the records and the host's memory.
fn bomb(b: Backend, chunk: u64) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(img) = common::image("membomb", t.path()) else { return };
    let text = "version = 1\n[default]\naction = \"allow\"\n[limits]\nmemory = \"64M\"\n";
    let policy = Policy::parse("bomb.toml", text).unwrap_or_else(|e| panic!("{e}"));
    let audit = t.path().join("audit.jsonl");
    let stats = t.path().join("stats.json");
    let out_path = t.path().join("out.txt");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: vec!["membomb".into(), chunk.to_string()],
        quiet: true,
        stats: Some(stats.clone()),
        stdio: Some([0, out.as_raw_fd(), 2]),
        // What cabinc passes when the policy sets the limit and --mem is not given.
        arena_bytes: LIMIT,
        gate: GateConfig {
            policy: Some(policy),
            trace: TraceOptions { audit: Some(audit.clone()), ..TraceOptions::default() },
            ..GateConfig::default()
        },
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("runs");
    let end_ns = monotonic_ns();
    drop(out);

    // Stopped by Cabin, as a limit, not by its own out-of-memory path.
    assert_eq!(o.exit_code, 137, "{:?}", o.reason);
    assert_eq!(o.reason, EndReason::Signal { signo: 9, addr: None, rip: None, code: None });
    let printed = std::fs::read_to_string(&out_path).expect("stdout");
    assert!(!printed.contains("malloc failed"), "the program saw ENOMEM:\n{printed}");
    let last = printed.lines().last().expect("the bomb allocated something");
    let (mib, at_ns) = last.split_once(' ').expect("'<MiB> <ns>'");
    let mib: u64 = mib.parse().expect("MiB");
    let at_ns: u64 = at_ns.parse().expect("ns");
    assert!(mib << 20 <= LIMIT, "{mib} MiB allocated under a 64 MiB limit");
    // What the domain cannot grow comes off the limit first: image, 8 MiB
    // stack, monitor pages (and on KVM the 16 MiB system area, and 2 MiB
    // alignment); the rest serves the bomb (the libos hands the unused brk
    // range to mmap once the arena runs out).
    let least = if b == Backend::Process { 50 } else { 32 };
    assert!(mib >= least, "only {mib} MiB allocated before the stop: the limit is used poorly");
    let latency = Duration::from_nanos(end_ns.saturating_sub(at_ns));
    eprintln!("memory bomb ({b:?}, {chunk}-byte blocks): {mib} MiB allocated; stopped {latency:?} after its last allocation");
    assert!(latency < Duration::from_secs(2), "stopped {latency:?} after reaching the limit");

    // One limit record, and the exit record says why.
    let log = std::fs::read_to_string(&audit).expect("audit log");
    let recs: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let schema = schema();
    for r in &recs {
        let errs: Vec<String> = schema.errors(r).iter().map(|e| e.to_string()).collect();
        assert!(errs.is_empty(), "{r}: {errs:?}");
    }
    let limits: Vec<&Value> = recs.iter().filter(|r| r["type"] == "limit").collect();
    assert_eq!(limits.len(), 1, "{log}");
    assert_eq!(limits[0]["limit"], "memory", "{log}");
    let action = limits[0]["action"].as_str().unwrap_or_default();
    assert!(action.starts_with("the program asked for "), "{action}");
    assert!(action
        .ends_with("of 64 MiB in use; the program was stopped (limit set by bomb.toml [limits] memory)"));
    let exit = recs.iter().find(|r| r["type"] == "exit").expect("exit record");
    assert_eq!(exit["reason"], "limit", "{log}");
    assert_eq!(exit["exit_code"], 137, "{log}");
    let message = exit["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("cabin: memory limit reached: the program asked for"), "{message}");

    // The host held no more than the limit for the domain.
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("JSON");
    if b == Backend::Kvm {
        let guest = s["kvm"]["mem_bytes"].as_u64().expect("kvm.mem_bytes");
        eprintln!("memory bomb (kvm): guest memory {guest} bytes");
        assert!(guest <= LIMIT, "the guest has {guest} bytes, over the limit");
    } else {
        let m = &s["memory"];
        eprintln!("memory bomb (process): domain memory {m}");
        assert_eq!(m["limit_bytes"], LIMIT);
        let domain = m["domain_bytes"].as_u64().expect("domain_bytes");
        let committed = m["committed_bytes"].as_u64().expect("committed_bytes");
        assert!(domain <= LIMIT, "the memfd is {domain} bytes, over the limit");
        assert!(committed <= LIMIT, "the host committed {committed} bytes, over the limit");
        assert!(committed >= mib << 20, "the bomb's {mib} MiB are in the memfd ({committed})");
    }
}
