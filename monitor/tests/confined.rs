//! End-to-end tests of the process backend: small C programs are compiled
//! (`gcc -static`), turned into images by the rewriter, and run confined.
//!
//! Needs `gcc` with static glibc; without it every test says so on stderr
//! and returns early (counted as not run, never as a pass of the feature).

mod common;

use cabin_monitor::{EndReason, RunConfig};
use cabin_process as process;

fn cfg(args: &[&str]) -> RunConfig {
    RunConfig { args: args.iter().map(|s| s.to_string()).collect(), quiet: true, ..RunConfig::default() }
}

#[test]
fn garbage_on_the_ring_ends_the_program_and_the_monitor_survives() {
    let t = tempfile::tempdir().unwrap();
    let Some(img) = common::image("scribble", t.path()) else { return };
    for _ in 0..3 {
        let o = process::run(&img, &cfg(&["scribble"])).expect("monitor survives");
        assert_eq!(o.exit_code, 137, "{:?}", o.reason);
        assert!(matches!(o.reason, EndReason::ProtocolViolation(_)), "{:?}", o.reason);
    }
}

#[test]
fn wild_pointers_and_lengths_end_the_program() {
    let t = tempfile::tempdir().unwrap();
    let Some(img) = common::image("wildptr", t.path()) else { return };
    for args in [&["wildptr"][..], &["wildptr", "huge"]] {
        let o = process::run(&img, &cfg(args)).expect("monitor survives");
        assert_eq!(o.exit_code, 137, "{:?}", o.reason);
        match &o.reason {
            EndReason::ProtocolViolation(m) => assert!(m.contains("write"), "{m}"),
            r => panic!("{r:?}"),
        }
    }
}

#[test]
fn escapes_from_the_allowed_dir_fail() {
    let t = tempfile::tempdir().unwrap();
    let Some(img) = common::image("escape", t.path()) else { return };
    let root = t.path().canonicalize().unwrap();
    let dir = root.join("allowed");
    std::fs::create_dir(&dir).unwrap();
    let secret = root.join("secret");
    std::fs::write(&secret, "SECRET").unwrap();
    std::fs::write(dir.join("ok.txt"), "fine").unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("abs")).unwrap();
    std::os::unix::fs::symlink("../secret", dir.join("rel")).unwrap();
    let mut c = cfg(&["escape", dir.to_str().unwrap(), secret.to_str().unwrap()]);
    c.allow_write.push(dir.clone());
    let o = process::run(&img, &c).expect("run");
    assert_eq!(o.exit_code, 0, "an escape attempt succeeded: {:?}", o.reason);
    assert!(o.stats["syscalls"]["denied"].as_u64().unwrap_or(0) >= 5, "{}", o.stats);
}

#[test]
fn faults_end_with_128_plus_signal_and_a_report() {
    let t = tempfile::tempdir().unwrap();
    let Some(img) = common::image("fault", t.path()) else { return };
    let o = process::run(&img, &cfg(&["fault"])).expect("run");
    assert_eq!(o.exit_code, 139);
    match o.reason {
        EndReason::Signal { signo: 11, addr: Some(0x10), rip: Some(_), .. } => {}
        r => panic!("{r:?}"),
    }
}

#[test]
fn invalid_images_are_refused() {
    let e = process::run(b"not an elf", &cfg(&["x"])).unwrap_err();
    assert!(matches!(e, cabin_monitor::RunError::ImageRejected(_)), "{e}");
    // A plain static executable (no libos, no manifest) is not an image.
    let t = tempfile::tempdir().unwrap();
    let ok = common::compile("fault", t.path()).is_some();
    if ok {
        let e = process::run(&std::fs::read(t.path().join("fault")).unwrap(), &cfg(&["plain"])).unwrap_err();
        assert!(e.to_string().contains("not a Cabin image"), "{e}");
    }
}

fn files_case(force_trap_path: bool) {
    let t = tempfile::tempdir().unwrap();
    let Some(img) = common::image("files", t.path()) else { return };
    let root = t.path().canonicalize().unwrap();
    let (rd, wr) = (root.join("in"), root.join("out"));
    std::fs::create_dir(&rd).unwrap();
    std::fs::create_dir(&wr).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(rd.join("data"), &data).unwrap();
    let mut c = cfg(&["files", rd.join("data").to_str().unwrap(), wr.join("copy").to_str().unwrap()]);
    c.allow_read.push(rd);
    c.allow_write.push(wr);
    c.force_trap_path = force_trap_path;
    let o = process::run(&img, &c).expect("run");
    assert_eq!(o.exit_code, 0, "{:?} {}", o.reason, o.stats);
    let trapped = o.stats["syscalls"]["trapped"].as_u64().unwrap_or(0);
    let total = o.stats["syscalls"]["total"].as_u64().unwrap_or(0);
    if force_trap_path {
        // Everything but the final exit_group (and the libos's own set-up)
        // arrived through SIGSYS.
        assert!(trapped + 5 >= total && total > 1000, "{}", o.stats);
    } else {
        assert_eq!(trapped, 0, "{}", o.stats);
    }
}

#[test]
fn file_operations_through_rewritten_sites() {
    files_case(false);
}

#[test]
fn file_operations_through_the_trap_path_only() {
    files_case(true);
}
