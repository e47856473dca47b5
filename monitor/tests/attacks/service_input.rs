//! Crafted arguments aimed at the monitor's own code: a string that runs
//! across two adjacent segments (`attack_name_boundary.c`) made the
//! `PR_SET_NAME` handler slice out of bounds and panic the monitor. The
//! program must get the kernel's answer (the first 15 bytes) and the run
//! must end normally. (Run-time input at large is fuzzed: fuzz/, docs/fuzzing.md.)

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use cabin_monitor::RunConfig;

use crate::common::{self, Backend};

on_both_backends!(a_thread_name_across_two_segments_is_cut_at_15_bytes);

/// Compiles the program with its two sections placed as two adjacent
/// segments; `None` when gcc is missing (said as NOT RUN).
fn build(dir: &Path) -> Option<Vec<u8>> {
    let src = common::programs().join("attack_name_boundary.c");
    let exe: PathBuf = dir.join("attack_name_boundary");
    let out = match Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(["-Wl,--section-start=.cabin_name_ro=0x5ffff8", "-Wl,--section-start=.cabin_name_rw=0x600000"])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            cabin_tests::not_run("gcc", &format!("gcc is not available ({e}); help: apt-get install gcc"));
            return None;
        }
    };
    assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
    Some(common::rewrite(&std::fs::read(&exe).expect("read program")))
}

fn a_thread_name_across_two_segments_is_cut_at_15_bytes(b: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(img) = build(dir.path()) else { return };
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).expect("out");
    let cfg = RunConfig {
        args: vec!["attack_name_boundary".into()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the monitor survives the run");
    let text = std::fs::read_to_string(&out_path).expect("read out");
    assert_eq!(o.exit_code, 0, "{:?}: {text}", o.reason);
    assert!(text.contains("head 0x5ffff8 tail 0x600000"), "the name straddles the boundary: {text}");
    assert!(text.contains("set 0 name \"cabin-name-that\" (15 bytes)"), "{text}");
}
