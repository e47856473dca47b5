//! Trace and audit records: every record type validates against the JSON
//! Schema shipped in docs/trace-schema.json; the text trace reads like
//! strace; the audit log keeps only events and respects its size cap.

use cabin_monitor::gate::{Admit, Gate};
use cabin_monitor::service::fs::Refusal;
use cabin_monitor::trace::record::path_text;
use cabin_monitor::trace::{
    AuditLog, ExitInfo, LimitHit, LimitKind, Served, StartInfo, SyscallRecord, TraceFormat, TraceOptions,
    Tracer,
};
use cabin_policy::note::{CallNote, PathRefusal};
use cabin_policy::{names, Limits};
use cabin_tests::SharedBuf;
use serde_json::Value;

fn nr(name: &str) -> u64 {
    names::number(name).unwrap_or_else(|| panic!("{name}"))
}

fn schema() -> cabin_tests::json_schema::Validator {
    cabin_tests::json_schema::trace_schema()
}

fn start_info() -> StartInfo {
    StartInfo {
        image: "busybox.cabin".into(),
        measurement: Some("ab".repeat(48)),
        backend: "process".into(),
        policy_digest: Some(format!("sha256:{}", "0f".repeat(32))),
        policy_mode: Some("enforce".into()),
        version: "0.1.0".into(),
        args: vec!["busybox".into(), "cat".into(), "/data/a".into()],
        unix_time_ns: 1_764_000_000_000_000_000,
    }
}

/// A run exercising every record type and every way of serving.
fn sample_run(t: &mut Tracer) {
    t.start(&start_info());
    let mut open = SyscallRecord::new(
        nr("openat"),
        [(-100i64) as u64, 0x7ffd_1000, 0o2000000, 0, 0, 0],
        3,
        Served::Forwarded,
    );
    open.time_ns = 1_500;
    open.duration_ns = 2_100;
    open.site = Some(0x401a2c);
    open.path = Some("/data/a".into());
    t.syscall(&open);
    let mut read = SyscallRecord::new(nr("read"), [3, 0x7ffd_2000, 4096, 0, 0, 0], 12, Served::Forwarded);
    read.time_ns = 4_000;
    t.syscall(&read);
    t.syscall(&SyscallRecord::new(nr("brk"), [0; 6], 0x4c_0000, Served::Local));
    let mut enoent =
        SyscallRecord::new(nr("openat"), [(-100i64) as u64, 0x7ffd_1000, 0, 0, 0, 0], -2, Served::Trapped);
    enoent.path = Some(path_text(b"/data/missing\n\"x\"\xff"));
    t.syscall(&enoent);
    let mut denied = SyscallRecord::new(nr("socket"), [2, 1, 0, 0, 0, 0], -1, Served::Denied);
    denied.rule = Some("`deny` entry `@network` (line 12)".into());
    denied.site = Some(0x40_2000);
    t.syscall(&denied);
    let mut complain =
        SyscallRecord::new(nr("getdents64"), [3, 0x1000, 4096, 0, 0, 0], 48, Served::Forwarded);
    complain.complain = true;
    complain.rule = Some("the default action".into());
    t.syscall(&complain);
    t.syscall(&SyscallRecord::new(999, [u64::MAX, 0, 1, 0, 0, 0], -38, Served::Forwarded));
    t.limit(&LimitHit {
        time_ns: 9_000,
        limit: LimitKind::BytesWritten,
        value: 1 << 30,
        max: 1 << 30,
        action: "stopped the program".into(),
    });
    t.violation(9_500, "read: buffer 0xdead0000+4096 is outside the program's memory");
    let mut killed = SyscallRecord::new(nr("execve"), [0x1000, 0x2000, 0x3000, 0, 0, 0], 0, Served::Killed);
    killed.ret = None;
    killed.rule = Some("`kill` entry `execve` (line 13)".into());
    t.syscall(&killed);
    t.exit(&ExitInfo {
        exit_code: 159,
        reason: "killed".into(),
        message: Some("execve is killed by the policy".into()),
        time_ns: 10_000,
    });
}

fn records(jsonl: &str) -> Vec<Value> {
    jsonl.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

#[test]
fn jsonl_trace_validates_against_the_schema() {
    let buf = SharedBuf::default();
    let mut t = Tracer::disabled().with_jsonl(Box::new(buf.clone()));
    sample_run(&mut t);
    assert!(t.error().is_none());
    let recs = records(&buf.text());
    let schema = schema();
    for r in &recs {
        let errors: Vec<String> = schema.errors(r).iter().map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{r}\n{}", errors.join("\n"));
    }
    let types: Vec<&str> = recs.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "start",
            "syscall",
            "syscall",
            "syscall",
            "syscall",
            "syscall",
            "syscall",
            "syscall",
            "limit",
            "violation",
            "syscall",
            "exit"
        ]
    );
    assert_eq!(recs[1]["args"][0], "0xffffffffffffff9c", "64-bit values as hex strings");
    assert_eq!(recs[1]["ret"], "0x3");
    assert_eq!(recs[4]["errno"], "ENOENT");
    assert_eq!(recs[4]["ret"], "0xfffffffffffffffe");
    assert_eq!(recs[7]["name"], "syscall_999");
    assert!(recs[10].get("ret").is_none(), "a killed call returns nothing");
    let s = &recs[11]["summary"];
    assert_eq!(s["total"], 8);
    assert_eq!(s["local"], 1);
    assert_eq!(s["trapped"], 1);
    assert_eq!(s["denied"], 1);
    assert_eq!(s["killed"], 1);
    assert_eq!(s["complained"], 1);
    assert_eq!(s["per_syscall"]["openat"], 2);

    // The schema rejects what it should: a bad hex value, an unknown field, an unknown type.
    let mut bad = recs[1].clone();
    bad["args"][0] = Value::String("0x00ff".into());
    assert!(!schema.is_valid(&bad));
    let mut bad = recs[1].clone();
    bad["extra"] = Value::Bool(true);
    assert!(!schema.is_valid(&bad));
    assert!(!schema.is_valid(&serde_json::json!({"type": "syscalls"})));
}

#[test]
fn text_trace_reads_like_strace() {
    let buf = SharedBuf::default();
    let mut t = Tracer::disabled().with_text(Box::new(buf.clone()));
    sample_run(&mut t);
    let text = buf.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12, "{text}");
    assert_eq!(lines[0], "cabin trace: busybox.cabin on the process backend, policy sha256:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f");
    assert_eq!(
        lines[1],
        "[1] 0.000001 openat(AT_FDCWD, \"/data/a\", O_RDONLY|O_CLOEXEC, 0o0) = 3 <forwarded 2.1us> @0x401a2c"
    );
    assert_eq!(lines[2], "[1] 0.000004 read(3, 0x7ffd2000, 4096) = 12 <forwarded 0ns>");
    assert_eq!(lines[3], "[1] 0.000000 brk(NULL) = 0x4c0000 <local 0ns>");
    assert_eq!(
        lines[4],
        "[1] 0.000000 openat(AT_FDCWD, \"/data/missing\\x0a\\\"x\\\"\\xff\", O_RDONLY, 0o0) = -1 ENOENT <trapped 0ns>"
    );
    assert_eq!(
        lines[5],
        "[1] 0.000000 socket(2, 0x1, 0) = -1 EPERM <denied by `deny` entry `@network` (line 12) 0ns> @0x402000"
    );
    assert!(
        lines[6].ends_with("<forwarded by the default action, allowed in complain mode 0ns>"),
        "{}",
        lines[6]
    );
    assert_eq!(
        lines[7],
        "[1] 0.000000 syscall_999(0xffffffffffffffff, 0x0, 0x1) = -1 ENOSYS <forwarded 0ns>"
    );
    assert!(lines[8].starts_with("--- limit bytes-written reached"), "{}", lines[8]);
    assert!(lines[9].starts_with("--- protocol violation: read: buffer"), "{}", lines[9]);
    assert!(
        lines[10].starts_with("[1] 0.000000 execve(0x1000, 0x2000, 0x3000) = ? <killed by"),
        "{}",
        lines[10]
    );
    assert!(lines[11].starts_with("+++ killed with 159"), "{}", lines[11]);
}

#[test]
fn audit_keeps_only_events_and_validates() {
    let buf = SharedBuf::default();
    let mut t = Tracer::disabled().with_audit(Box::new(buf.clone()), 1 << 20);
    sample_run(&mut t);
    let recs = records(&buf.text());
    let schema = schema();
    for r in &recs {
        assert!(schema.is_valid(r), "{r}");
    }
    let kinds: Vec<String> = recs
        .iter()
        .map(|r| {
            format!(
                "{}{}",
                r["type"].as_str().unwrap_or("?"),
                r["served"].as_str().map(|s| format!(":{s}")).unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        ["start", "syscall:denied", "syscall:forwarded", "limit", "violation", "syscall:killed", "exit"]
    );
    assert_eq!(recs[2]["complain"], true);
    assert_eq!(recs[6]["audit_dropped"], 0);
}

#[test]
fn audit_cap_is_kept_and_reaching_it_is_recorded() {
    let cap = 8192;
    let buf = SharedBuf::default();
    let mut t = Tracer::disabled().with_audit(Box::new(buf.clone()), cap);
    t.start(&start_info());
    let mut denied = SyscallRecord::new(nr("socket"), [2, 1, 0, 0, 0, 0], -1, Served::Denied);
    denied.rule = Some("the default action".into());
    for i in 0..1000 {
        denied.time_ns = i;
        t.syscall(&denied);
    }
    t.exit(&ExitInfo { exit_code: 0, reason: "exited".into(), message: None, time_ns: 2000 });
    let text = buf.text();
    assert!(text.len() as u64 <= cap, "{} bytes > cap {cap}", text.len());
    let recs = records(&text);
    let truncated: Vec<&Value> = recs.iter().filter(|r| r["type"] == "audit-truncated").collect();
    assert_eq!(truncated.len(), 1, "exactly one truncation record");
    let last = recs.last().expect("records");
    assert_eq!(last["type"], "exit", "the exit record still fits");
    let written = recs.iter().filter(|r| r["type"] == "syscall").count() as u64;
    assert_eq!(last["audit_dropped"].as_u64(), Some(1000 - written));
    assert_eq!(last["summary"]["denied"], 1000, "the summary counts everything");
    let schema = schema();
    for r in &recs {
        assert!(schema.is_valid(r), "{r}");
    }
}

#[test]
fn audit_log_alone_counts_drops() {
    let mut a = AuditLog::new(Vec::new(), 4096);
    let v = serde_json::json!({"type": "violation", "t_ns": 1, "message": "x".repeat(600)});
    for _ in 0..10 {
        a.record(&v, 1).expect("vec writes");
    }
    assert!(a.written() <= 4096);
    assert!(a.dropped() > 0);
}

#[test]
fn tracer_opens_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("run.jsonl");
    let audit = dir.path().join("audit.jsonl");
    let opts = TraceOptions {
        trace: Some(Some(trace.clone())),
        format: TraceFormat::Jsonl,
        audit: Some(audit.clone()),
        audit_cap: 0,
    };
    let mut t = Tracer::open(&opts).expect("opens");
    sample_run(&mut t);
    drop(t);
    let jsonl = std::fs::read_to_string(&trace).expect("trace written");
    assert_eq!(jsonl.lines().count(), 12);
    let audit = std::fs::read_to_string(&audit).expect("audit written");
    assert_eq!(audit.lines().count(), 7);
    // And a policy generated from it allows the run.
    let (p, _) = cabin_policy::generate::from_trace("run.jsonl", &jsonl).expect("generates");
    let c = p.compile();
    assert!(c.decide(nr("openat"), &[0; 6]).serves());
    assert!(c.decide(nr("execve"), &[0; 6]).serves(), "killed in the run, allowed by the generated policy");
    assert!(!c.decide(nr("write"), &[0; 6]).serves());
}

/// A refusal by the path rules, as the service notes it and the gate records
/// it: one `denied` record with a `[paths]` rule and the escaped path, in
/// the trace and in the audit log; an allowed call carries its path too.
#[test]
fn path_refusals_are_denials_in_trace_and_audit() {
    let (trace, audit) = (SharedBuf::default(), SharedBuf::default());
    let tracer =
        Tracer::disabled().with_jsonl(Box::new(trace.clone())).with_audit(Box::new(audit.clone()), 1 << 20);
    let mut g = Gate::new(None, &Limits::default(), tracer).quiet();
    assert!(g.wants_paths());
    g.start(&start_info());
    let args = [(-100i64) as u64, 0x1000, 0, 0, 0, 0];
    let Admit::Serve(t) = g.admit(nr("openat"), &args, false, Some(0x401000), None) else { panic!("serve") };
    let note = CallNote {
        path: Some(b"../secret\xff".to_vec()),
        refusal: Some(PathRefusal { why: Refusal::Escape, resolved: b"/data/in/../secret\xff".to_vec() }),
        network: None,
        addr: None,
        limit: None,
        host_path: None,
    };
    assert!(g.served_with(t, -13, note).is_none());
    let Admit::Serve(t) = g.admit(nr("openat"), &args, false, Some(0x401000), None) else { panic!("serve") };
    let note = CallNote {
        path: Some(b"/data/in/a".to_vec()),
        refusal: None,
        network: None,
        addr: None,
        limit: None,
        host_path: None,
    };
    assert!(g.served_with(t, 3, note).is_none());
    g.finish(0, "exited", None);

    let schema = schema();
    let recs = records(&trace.text());
    for r in &recs {
        assert!(schema.is_valid(r), "{r}");
    }
    assert_eq!(recs[1]["served"], "denied");
    assert_eq!(recs[1]["errno"], "EACCES");
    assert_eq!(recs[1]["site"], "0x401000");
    assert_eq!(recs[1]["path"], "../secret\\xff");
    assert_eq!(
        recs[1]["rule"],
        "[paths] /data/in/../secret\\xff: resolution left the allowed tree (`..` or a symlink)"
    );
    assert_eq!(recs[2]["served"], "forwarded");
    assert_eq!(recs[2]["path"], "/data/in/a");
    assert_eq!(recs[3]["summary"]["denied"], 1);
    let audit = records(&audit.text());
    let kinds: Vec<&str> = audit.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(kinds, ["start", "syscall", "exit"], "exactly one audit record for the refusal");
    assert_eq!(audit[1]["served"], "denied");

    // The schema holds paths to their escaped, bounded form.
    let mut bad = recs[2].clone();
    bad["path"] = Value::String("/raw\ncontrol".into());
    assert!(!schema.is_valid(&bad), "raw control characters");
    bad["path"] = Value::String("x".repeat(2000));
    assert!(!schema.is_valid(&bad), "over-long");
    bad["path"] = Value::String(path_text(&[b'a'; 5000]));
    assert!(schema.is_valid(&bad), "cut paths validate");
    bad["path"] = Value::String(path_text(b"/\xc3\x28\\\x7f\xe2\x82\xac"));
    assert!(schema.is_valid(&bad), "{bad}");
}
