//! Many faulting KVM runs in one monitor process leak neither descriptors
//! nor memory. Its own test binary with one test: RSS is process-wide, and
//! other tests running beside it in one process made it grow (22 -> 97 MB
//! once) without any leak of ours.
//!
//! `CABIN_KVM_LOOP` sets the number of runs (default 300). Prints
//! `KVM test NOT RUN` where /dev/kvm is not usable (fails instead with
//! CABIN_REQUIRE_KVM=1).

mod common;

use cabin_monitor::RunConfig;
use common::Backend;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn kvm_many_faulting_runs_leak_nothing() {
    if !Backend::Kvm.available("kvm_many_faulting_runs_leak_nothing") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let Some(fault) = common::image("fault", t.path()) else { return };
    let Some(wild) = common::image("wildptr", t.path()) else { return };
    let null = std::fs::File::create(t.path().join("out")).expect("output file");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
    let cfg = |name: &str| RunConfig {
        args: vec![name.into()],
        quiet: true,
        stdio: Some([0, fd, fd]),
        ..Default::default()
    };
    let runs: [(&[u8], RunConfig, i32); 2] = [(&fault, cfg("fault"), 139), (&wild, cfg("wildptr"), 137)];
    let n: usize = std::env::var("CABIN_KVM_LOOP").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    // Warm up (thread pools, allocator arenas, the kick handler).
    for (img, c, _) in &runs {
        let _ = Backend::Kvm.run(img, c);
    }
    let (fds0, rss0) = (open_fds(), rss_kib());
    for i in 0..n {
        let (img, c, code) = &runs[i % runs.len()];
        let out = Backend::Kvm.run(img, c).expect("run");
        assert_eq!(out.exit_code, *code, "{out:?}");
    }
    let (fds1, rss1) = (open_fds(), rss_kib());
    eprintln!("kvm loop: {n} runs, fds {fds0} -> {fds1}, rss {rss0} KiB -> {rss1} KiB");
    assert!(fds1 <= fds0 + 2, "descriptor leak: {fds0} -> {fds1}");
    assert!(rss1 < rss0 + 16 * 1024, "memory growth: {rss0} KiB -> {rss1} KiB");
}
