//! The site address of a refused call on the slow paths the `cabinc` tests do
//! not reach: the process backend's forced trap path (`force_trap_path`: a
//! rewritten site re-issues its call, which traps) and the KVM gate redirect
//! (a trap site's `syscall` sent back into the libos). Either way the trace
//! record names the program's `syscall` instruction, as `objdump` shows it.
//!
//! Needs `musl-gcc` (Debian package musl-tools) and `objdump`; without them
//! the tests say so on stderr and return (counted as not run, never as a
//! pass). The KVM test prints `KVM test NOT RUN` where /dev/kvm is not usable
//! (and fails instead with CABIN_REQUIRE_KVM=1).

use std::path::Path;

use cabin_monitor::trace::{TraceFormat, TraceOptions};
use cabin_monitor::GateConfig;
use cabin_monitor::RunConfig;
use cabin_policy::Policy;
use serde_json::Value;
use {cabin_kvm as kvm, cabin_process as process};

/// The site program (cabin_tests::site_program) and the address of
/// `raw_uname`'s `syscall`.
fn program(dir: &Path) -> Option<(Vec<u8>, u64)> {
    let (exe, addr) = cabin_tests::site_program(dir)?;
    Some((std::fs::read(&exe).expect("read the program"), addr))
}

fn image(input: &[u8], trap_all_sites: bool) -> Vec<u8> {
    let opts = cabin_rewriter::pipeline::BuildOptions { trap_all_sites, ..Default::default() };
    cabin_rewriter::pipeline::build_image(input, &opts, &mut |_| {}).expect("build the image").image
}

/// Runs `img` denying `uname` with a JSON-lines trace; returns the uname
/// record.
fn denied_uname(img: &[u8], dir: &Path, force_trap_path: bool, on_kvm: bool) -> Value {
    let policy = "version = 1\n[default]\naction = \"allow\"\n[syscalls]\ndeny = [\"uname\"]\n";
    let trace = dir.join(if on_kvm { "kvm.jsonl" } else { "process.jsonl" });
    let cfg = RunConfig {
        args: vec!["site".into()],
        quiet: true,
        force_trap_path,
        gate: GateConfig {
            policy: Some(Policy::parse("p.toml", policy).unwrap_or_else(|e| panic!("{e}"))),
            trace: TraceOptions {
                trace: Some(Some(trace.clone())),
                format: TraceFormat::Jsonl,
                ..TraceOptions::default()
            },
            ..GateConfig::default()
        },
        ..RunConfig::default()
    };
    let o = if on_kvm { kvm::run(img, &cfg) } else { process::run(img, &cfg) }.expect("runs");
    assert_eq!(o.exit_code, 0, "{:?}", o.reason);
    let text = std::fs::read_to_string(&trace).expect("read the trace");
    let recs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let uname: Vec<&Value> = recs.iter().filter(|r| r["type"] == "syscall" && r["name"] == "uname").collect();
    assert_eq!(uname.len(), 1, "{text}");
    assert_eq!(uname[0]["served"], "denied", "{text}");
    uname[0].clone()
}

#[test]
fn forced_trap_path_reports_the_program_site() {
    let t = tempfile::tempdir().expect("tempdir");
    let Some((input, addr)) = program(t.path()) else { return };
    let rec = denied_uname(&image(&input, false), t.path(), true, false);
    assert_eq!(rec["site"], format!("{addr:#x}"), "{rec}");
}

#[test]
fn kvm_gate_redirect_reports_the_program_site() {
    if !cabin_tests::kvm_available(kvm::usable) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let Some((input, addr)) = program(t.path()) else { return };
    let rec = denied_uname(&image(&input, true), t.path(), false, true);
    assert_eq!(rec["site"], format!("{addr:#x}"), "{rec}");
}
