//! What a KVM start costs in VMs: a run makes exactly one VM, its domain's
//! (the session's check that KVM works opens /dev/kvm and makes none: each
//! VM made and destroyed cost about 1 ms of a start, docs/performance.md
//! "Start-up"). Its own test binary with one test, since the count is
//! process-wide. Prints `KVM test NOT RUN` where /dev/kvm is not usable
//! (fails instead with CABIN_REQUIRE_KVM=1).

mod common;

use cabin_monitor::RunConfig;
use common::Backend;

#[test]
fn kvm_a_run_makes_one_vm() {
    // The gate opens /dev/kvm only: `cabin_kvm::usable` would make (and
    // count) the VM this test is about.
    let open = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(drop);
    if !cabin_tests::kvm_available(open) {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let Some(fault) = common::image("fault", t.path()) else { return };
    let cfg = RunConfig { args: vec!["fault".into()], quiet: true, ..Default::default() };
    for run in 1..=2u64 {
        let out = Backend::Kvm.run(&fault, &cfg).expect("run");
        assert_eq!(out.exit_code, 139, "{out:?}");
        assert_eq!(cabin_kvm::vms_made(), run, "VMs made by {run} runs");
    }
}
