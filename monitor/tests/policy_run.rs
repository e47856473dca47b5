//! Policy, trace, audit and limits on real runs of Debian's busybox-static,
//! each test on the process backend and on the KVM backend.
//!
//! Needs /bin/busybox (Debian package busybox-static); without it every test
//! says so on stderr and returns early (counted as not run, never as a pass).
//! The KVM variants print `KVM test NOT RUN` and return where /dev/kvm is
//! not usable (they fail instead with CABIN_REQUIRE_KVM=1).

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cabin_monitor::trace::{TraceFormat, TraceOptions};
use cabin_monitor::GateConfig;
use cabin_monitor::{RunConfig, RunOutcome};
use cabin_policy::Policy;
use common::Backend;
use serde_json::Value;

fn busybox() -> Option<Vec<u8>> {
    let input = match std::fs::read("/bin/busybox") {
        Ok(b) => b,
        Err(e) => {
            cabin_tests::not_run(
                "busybox",
                &format!("/bin/busybox is not available ({e}); help: apt-get install busybox-static"),
            );
            return None;
        }
    };
    let opts = cabin_rewriter::pipeline::BuildOptions::default();
    let built =
        cabin_rewriter::pipeline::build_image(&input, &opts, &mut |_| {}).expect("build busybox image");
    Some(built.image)
}

fn schema() -> cabin_tests::json_schema::Validator {
    cabin_tests::json_schema::trace_schema()
}

fn policy(text: &str) -> Policy {
    Policy::parse("test.toml", text).unwrap_or_else(|e| panic!("{e}"))
}

on_both_backends!(
    busybox_cat_traced_in_text_and_jsonl,
    denial_is_audited_and_kill_exits_159,
    cpu_spin_and_output_flood_are_stopped_within_2s_of_the_limit,
    fd_exhaustion_is_stopped_at_the_limit,
    wall_time_stops_a_program_blocked_in_a_served_call,
);

fn run(b: Backend, img: &[u8], args: &[&str], read: &[PathBuf], gate: GateConfig) -> RunOutcome {
    let cfg = RunConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        allow_read: read.to_vec(),
        quiet: true,
        gate,
        ..RunConfig::default()
    };
    b.run(img, &cfg).expect("runs")
}

fn traced(dir: &Path, name: &str, format: TraceFormat, audit: bool) -> TraceOptions {
    TraceOptions {
        trace: Some(Some(dir.join(name))),
        format,
        audit: audit.then(|| dir.join("audit.jsonl")),
        audit_cap: 0,
    }
}

fn busybox_cat_traced_in_text_and_jsonl(b: Backend) {
    let Some(img) = busybox() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let data = t.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("a.txt"), "hello\n").expect("write");
    let file = data.join("a.txt");
    let file = file.to_str().expect("utf-8 path");

    let g =
        GateConfig { trace: traced(t.path(), "run.txt", TraceFormat::Text, false), ..GateConfig::default() };
    let o = run(b, &img, &["busybox", "cat", file], std::slice::from_ref(&data), g);
    assert_eq!(o.exit_code, 0, "{:?}", o.reason);
    let text = std::fs::read_to_string(t.path().join("run.txt")).expect("text trace");
    assert!(text.starts_with("cabin trace: "), "{text}");
    assert!(text.contains("openat(AT_FDCWD, "), "{text}");
    // Each line starts with the pid of the process that made the call.
    let pid_first = |l: &str| {
        l.strip_prefix('[')
            .and_then(|r| r.split_once("] "))
            .is_some_and(|(n, _)| n.parse::<u32>().is_ok_and(|n| n > 1))
    };
    assert!(text.lines().any(|l| pid_first(l) && l.contains("<forwarded ")), "{text}");
    assert!(text.trim_end().ends_with("+++"), "{text}");

    let g = GateConfig {
        trace: traced(t.path(), "run.jsonl", TraceFormat::Jsonl, false),
        ..GateConfig::default()
    };
    let o = run(b, &img, &["busybox", "cat", file], std::slice::from_ref(&data), g);
    assert_eq!(o.exit_code, 0, "{:?}", o.reason);
    let jsonl = std::fs::read_to_string(t.path().join("run.jsonl")).expect("jsonl trace");
    let schema = schema();
    let recs: Vec<Value> =
        jsonl.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    for r in &recs {
        let errs: Vec<String> = schema.errors(r).iter().map(|e| e.to_string()).collect();
        assert!(errs.is_empty(), "{r}: {errs:?}");
    }
    assert_eq!(recs.first().map(|r| r["type"].clone()), Some(Value::from("start")));
    assert_eq!(recs.last().map(|r| r["type"].clone()), Some(Value::from("exit")));
    assert!(recs.iter().any(|r| r["name"] == "openat"));

    // The least policy generated from the trace lets the same run through, and only it.
    let (p, _) = cabin_policy::generate::from_trace("run.jsonl", &jsonl).expect("generate");
    let g = GateConfig { policy: Some(p.clone()), ..GateConfig::default() };
    assert_eq!(run(b, &img, &["busybox", "cat", file], std::slice::from_ref(&data), g).exit_code, 0);
    let g = GateConfig { policy: Some(p), ..GateConfig::default() };
    assert_ne!(
        run(b, &img, &["busybox", "ls", "-l", data.to_str().unwrap_or("")], std::slice::from_ref(&data), g)
            .exit_code,
        0
    );
}

fn denial_is_audited_and_kill_exits_159(b: Backend) {
    let Some(img) = busybox() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    // uname is served by the monitor; deny it, then kill it.
    let g = GateConfig {
        policy: Some(policy("version = 1\n[default]\naction = \"allow\"\n[syscalls]\ndeny = [\"uname\"]\n")),
        trace: TraceOptions { audit: Some(t.path().join("audit.jsonl")), ..TraceOptions::default() },
        ..GateConfig::default()
    };
    let _ = run(b, &img, &["busybox", "uname"], &[], g);
    let audit = std::fs::read_to_string(t.path().join("audit.jsonl")).expect("audit");
    let recs: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let denials: Vec<&Value> = recs.iter().filter(|r| r["served"] == "denied").collect();
    assert_eq!(denials.len(), 1, "{audit}");
    assert_eq!(denials[0]["name"], "uname");
    assert_eq!(denials[0]["errno"], "EPERM");
    let schema = schema();
    assert!(recs.iter().all(|r| schema.is_valid(r)), "{audit}");

    let g = GateConfig {
        policy: Some(policy("version = 1\n[default]\naction = \"allow\"\n[syscalls]\nkill = [\"uname\"]\n")),
        ..GateConfig::default()
    };
    let o = run(b, &img, &["busybox", "uname"], &[], g);
    assert_eq!(o.exit_code, 159, "{:?}", o.reason);
}

fn cpu_spin_and_output_flood_are_stopped_within_2s_of_the_limit(b: Backend) {
    let Some(img) = busybox() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    // wall-time only so that a failing run ends; the record must say cpu-time.
    let text =
        "version = 1\n[default]\naction = \"allow\"\n[limits]\ncpu-time = \"1s\"\nwall-time = \"30s\"\n";
    let g = GateConfig {
        policy: Some(policy(text)),
        trace: TraceOptions { audit: Some(t.path().join("cpu.jsonl")), ..TraceOptions::default() },
        ..GateConfig::default()
    };
    let o = run(b, &img, &["busybox", "sh", "-c", "while :; do :; done"], &[], g);
    assert_eq!(o.exit_code, 137, "{:?}", o.reason);
    let audit = std::fs::read_to_string(t.path().join("cpu.jsonl")).expect("audit");
    assert!(audit.contains("\"limit\":\"cpu-time\""), "{audit}");
    // How soon after 1 s of CPU the stop came is measured in the CPU time
    // counted at the stop (the limit record's value), not in wall time: on a
    // loaded machine 1 s of CPU takes several seconds of wall time.
    let limit = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|x| x["type"] == "limit")
        .expect("a limit record");
    let used = limit["value"].as_str().expect("a value");
    let used = u64::from_str_radix(used.trim_start_matches("0x"), 16).expect("a hex value");
    assert!((1_000_000_000..3_000_000_000).contains(&used), "{used} ns of CPU counted at the stop");

    let out = t.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let g = GateConfig {
        policy: Some(policy(&format!(
            "version = 1\n[default]\naction = \"allow\"\n[paths]\nwrite = [{:?}]\n[limits]\nbytes-written = \"1M\"\n",
            out.to_str().unwrap_or("")
        ))),
        ..GateConfig::default()
    };
    let script = format!("yes > {}/flood", out.to_str().unwrap_or(""));
    let cfg = RunConfig {
        args: vec!["busybox".into(), "sh".into(), "-c".into(), script],
        allow_write: vec![out.clone()],
        quiet: true,
        gate: g,
        ..RunConfig::default()
    };
    let t0 = Instant::now();
    let o = b.run(&img, &cfg).expect("runs");
    assert!(t0.elapsed() < Duration::from_secs(10), "stopped in {:?}", t0.elapsed());
    assert_eq!(o.exit_code, 137, "{:?}", o.reason);
    let written = std::fs::metadata(out.join("flood")).map(|m| m.len()).unwrap_or(0);
    assert!(written <= 1 << 20, "{written} bytes written past the 1M limit");
}

fn fd_exhaustion_is_stopped_at_the_limit(b: Backend) {
    let Some(img) = busybox() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let f = t.path().join("f");
    std::fs::write(&f, "x").expect("write");
    let g = GateConfig {
        policy: Some(policy("version = 1\n[default]\naction = \"allow\"\n[limits]\nopen-files = 8\n")),
        trace: TraceOptions { audit: Some(t.path().join("fd.jsonl")), ..TraceOptions::default() },
        ..GateConfig::default()
    };
    let fp = f.to_str().unwrap_or("");
    let script = format!("i=3; while :; do eval \"exec $i<{fp}\"; i=$((i+1)); done");
    let t0 = Instant::now();
    let o = run(b, &img, &["busybox", "sh", "-c", &script], &[t.path().to_path_buf()], g);
    assert!(t0.elapsed() < Duration::from_secs(5), "stopped in {:?}", t0.elapsed());
    assert_eq!(o.exit_code, 137, "{:?}", o.reason);
    let audit = std::fs::read_to_string(t.path().join("fd.jsonl")).expect("audit");
    assert!(audit.contains("\"limit\":\"open-files\""), "{audit}");
}

fn wall_time_stops_a_program_blocked_in_a_served_call(b: Backend) {
    let Some(img) = busybox() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let g = GateConfig {
        policy: Some(policy("version = 1\n[default]\naction = \"allow\"\n[limits]\nwall-time = \"1s\"\n")),
        trace: TraceOptions { audit: Some(t.path().join("wall.jsonl")), ..TraceOptions::default() },
        ..GateConfig::default()
    };
    // The monitor itself is blocked serving the nanosleep when the limit runs out.
    let t0 = Instant::now();
    let o = run(b, &img, &["busybox", "sleep", "30"], &[], g);
    assert!(t0.elapsed() < Duration::from_secs(1 + 2), "stopped in {:?}", t0.elapsed());
    assert_eq!(o.exit_code, 137, "{:?}", o.reason);
    let audit = std::fs::read_to_string(t.path().join("wall.jsonl")).expect("audit");
    assert!(audit.contains("\"limit\":\"wall-time\""), "{audit}");
    assert!(audit.contains("\"reason\":\"limit\""), "{audit}");
}
