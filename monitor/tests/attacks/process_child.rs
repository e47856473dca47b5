//! The process backend's child holds nothing of the monitor (issue 11, item
//! 11): no monitor code, data, heap or stack is mapped in it, it holds no
//! capability, and it runs with no_new_privs under seccomp.
//!
//! The test process *is* the monitor here (`process::run` forks from it), so
//! the addresses of one of its functions, a static, a heap block and a stack
//! variable are the monitor's: a confined program that reads any of them
//! must die with SIGSEGV at that address. On KVM the guest has no mapping of
//! host memory at all; the same probes run there (an address that happens to
//! fall in one of the guest's own regions is skipped, and said so).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use cabin_monitor::{EndReason, RunConfig};

use crate::common::{self, Backend};

on_both_backends!(monitor_memory_is_unmapped_in_the_domain);

/// A static of the monitor process (the test binary's data).
static MONITOR_STATIC: [u8; 64] = [0x5a; 64];

/// `(what, address)` of monitor memory: text, read-only data, data, heap,
/// this thread's stack and the main thread's stack.
fn monitor_addresses() -> Vec<(&'static str, u64)> {
    let heap = Box::new([0xa5u8; 256]);
    let local = [0x3cu8; 64];
    let main_stack = std::fs::read_to_string("/proc/self/maps")
        .expect("maps")
        .lines()
        .find(|l| l.ends_with("[stack]"))
        .and_then(|l| l.split('-').next().and_then(|s| u64::from_str_radix(s, 16).ok()))
        .expect("a [stack] mapping");
    let v = vec![
        ("monitor text (process::run)", cabin_process::run as *const () as u64),
        ("monitor text (the seccomp filter builder)", cabin_process::seccomp::filter as *const () as u64),
        ("monitor read-only data (the system-call table)", cabin_abi::syscalls::TABLE.as_ptr() as u64),
        ("monitor data (a static)", MONITOR_STATIC.as_ptr() as u64),
        ("monitor heap", heap.as_ptr() as u64),
        ("monitor stack (this thread)", local.as_ptr() as u64),
        ("monitor stack (main thread)", main_stack + 64),
    ];
    std::hint::black_box((&heap, &local));
    v
}

/// Whether `addr` lies where the KVM guest maps its own memory (a probe
/// there would read the guest's memory, not the host's: not a probe of the
/// monitor).
fn in_kvm_guest_region(addr: u64) -> bool {
    use cabin_kvm::layout::*;
    let regions = [
        (ARENA_VA, MAX_MEM),
        (BOOT_VA, RING_MAX + PAGE),
        (STACK_TOP_VA - STACK_SIZE - LARGE_PAGE, STACK_SIZE + LARGE_PAGE),
        (PIE_BASE, 1 << 32),
    ];
    regions.iter().any(|&(s, l)| addr >= s && addr - s < l)
}

fn monitor_memory_is_unmapped_in_the_domain(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(img) = common::image("attack_monitor_memory", t.path()) else { return };
    for (what, addr) in monitor_addresses() {
        if b == Backend::Kvm && in_kvm_guest_region(addr) {
            cabin_tests::not_run(
                "KVM layout",
                &format!("{what} at {addr:#x} lies in a region of the guest's own"),
            );
            continue;
        }
        let out_path = t.path().join("out.txt");
        let out = std::fs::File::create(&out_path).expect("stdout file");
        let cfg = RunConfig {
            args: vec!["attack_monitor_memory".into(), "read".into(), format!("{addr:x}")],
            quiet: true,
            stdio: Some([0, out.as_raw_fd(), 2]),
            ..RunConfig::default()
        };
        let o = b.run(&img, &cfg).expect("runs");
        drop(out);
        let printed = std::fs::read_to_string(&out_path).unwrap_or_default();
        assert_eq!(
            o.exit_code, 139,
            "{b:?}: the program read {what} at {addr:#x} ({:?}, printed {printed:?})",
            o.reason
        );
        match o.reason {
            EndReason::Signal { signo: 11, addr: Some(a), .. } => {
                assert_eq!(a, addr, "{b:?}: {what}: SIGSEGV at another address")
            }
            r => panic!("{b:?}: {what}: ended by {r:?}, not by SIGSEGV at {addr:#x}"),
        }
    }
}

/// One field of /proc/PID/status.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in /proc/PID/status:\n{status}"))
}

/// Whether this process may drop bounding-set capabilities (CAP_SETPCAP in
/// its effective set): only then can the monitor empty its child's.
fn has_cap_setpcap() -> bool {
    const CAP_SETPCAP: u32 = 8;
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    u64::from_str_radix(status_field(&status, "CapEff"), 16).is_ok_and(|e| e & (1 << CAP_SETPCAP) != 0)
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    // SAFETY: both are fresh descriptors we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Process backend only (the child process is that backend's domain): while
/// the program blocks on a pipe read, its /proc entries show no capability,
/// no_new_privs, seccomp filtering, and no mapping but the domain's memory
/// (one memfd), the one-page entry stub among it, and `[vsyscall]`.
#[test]
fn process_child_holds_no_capability_and_only_domain_mappings() {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(img) = common::image("attack_monitor_memory", t.path()) else { return };
    let (in_r, mut in_w) = {
        let (r, w) = pipe();
        (r, std::fs::File::from(w))
    };
    let (out_r, out_w) = pipe();
    let cfg = RunConfig {
        args: vec!["attack_monitor_memory".into(), "wait".into()],
        quiet: true,
        stdio: Some([in_r.as_raw_fd(), out_w.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let run = std::thread::spawn(move || {
        let o = cabin_process::run(&img, &cfg);
        drop((in_r, out_w));
        o
    });
    let mut line = String::new();
    BufReader::new(std::fs::File::from(out_r)).read_line(&mut line).expect("the program's pid");
    let pid: u32 = line.trim().parse().unwrap_or_else(|_| panic!("pid line {line:?}"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("child status");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("child maps");
    in_w.write_all(b"x").expect("release the program");
    drop(in_w);
    let o = run.join().expect("run thread").expect("runs");
    assert_eq!(o.exit_code, 0, "{:?}", o.reason);

    for key in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(status_field(&status, key), "0000000000000000", "{key} of the child:\n{status}");
    }
    if has_cap_setpcap() {
        assert_eq!(status_field(&status, "CapBnd"), "0000000000000000", "CapBnd of the child:\n{status}");
    } else {
        cabin_tests::not_run(
            "CAP_SETPCAP",
            "the CapBnd check: this process lacks CAP_SETPCAP, so no child of it can empty its bounding set",
        );
    }
    assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{status}");
    assert_eq!(status_field(&status, "Seccomp"), "2", "{status}");

    let mut exec_pages = Vec::new();
    for l in maps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let path = f.get(5..).map(|p| p.join(" ")).unwrap_or_default();
        assert!(
            path == "/memfd:cabin-domain (deleted)" || path == "[vsyscall]",
            "the child maps something that is not the domain's memory: {l}\n{maps}"
        );
        if path != "[vsyscall]" && f[1].contains('x') {
            exec_pages.push(l.to_string());
        }
    }
    assert_eq!(maps.lines().filter(|l| l.ends_with("[vsyscall]")).count(), 1, "{maps}");
    // Executable: the image's code (below the monitor-provided areas) and
    // the one-page entry stub among those areas, nothing else.
    let stubs: Vec<(u64, u64)> = exec_pages
        .iter()
        .filter_map(|l| {
            let (s, e) = l.split_whitespace().next()?.split_once('-')?;
            Some((u64::from_str_radix(s, 16).ok()?, u64::from_str_radix(e, 16).ok()?))
        })
        .filter(|&(s, _)| s >= cabin_process::layout::DOMAIN_BASE)
        .collect();
    assert!(
        stubs.len() == 1 && stubs[0].1 - stubs[0].0 == 4096,
        "the monitor-provided areas hold executable pages other than the one-page stub: {stubs:x?}\n{maps}"
    );
}
