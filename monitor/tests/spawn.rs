//! Processes that run other programs (issue 14, docs/processes.md): a
//! three-stage pipeline built with pipe/fork/dup2/exec of busybox applets,
//! a producer killed by `SIGPIPE` when its reader is gone, and
//! `posix_spawn` with file actions (`addopen`, `adddup2`, `addclose`,
//! `addchdir_np`) and `POSIX_SPAWN_SETPGROUP`. Run natively and confined
//! (`spawn.c`); output and exit status must be equal, on both backends
//! (on KVM each process is a VM of its own). Busybox is Debian's
//! busybox-static, a plain static executable: confined, each exec of it
//! goes through the image cache (built once, then hits).
//!
//! `popen` and `system` exec `/bin/sh` at that fixed path: they are tested
//! through `cabinc run` in `cabinc/tests/shells.rs` (`popen_and_system`),
//! where a static shell is placed at `/bin/sh` in a private mount
//! namespace.
//!
//! Without /bin/busybox this test fails (install busybox-static): a missing
//! input is never a pass.

mod common;

use std::path::Path;

use common::{live_children, native, Backend};

const BUSYBOX: &str = "/bin/busybox";

/// Runs `img` confined with `args`, reading (and executing from) `dir`,
/// writing `dir/w`, the image cache in `dir/cache`: (stdout, stderr, status).
fn confined_in(b: Backend, img: &[u8], args: &[&str], dir: &Path) -> (String, String, i32) {
    let cfg = cabin_monitor::RunConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        quiet: true,
        allow_read: vec![dir.join("bin")],
        allow_write: vec![dir.join("w")],
        image_cache: Some(dir.join("cache")),
        ..Default::default()
    };
    common::confined_captured(b, img, cfg, dir)
}

fn spawn_cases(b: Backend) {
    assert!(Path::new(BUSYBOX).is_file(), "{BUSYBOX} is missing: install busybox-static");
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("spawn", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let bin = t.path().join("bin");
    let w = t.path().join("w");
    std::fs::create_dir(&bin).expect("mkdir");
    std::fs::create_dir(&w).expect("mkdir");
    let bb = bin.join("busybox");
    std::fs::copy(BUSYBOX, &bb).expect("copy busybox");
    let (bb, dir) = (bb.to_str().expect("utf-8"), w.to_str().expect("utf-8"));
    for args in [&["spawn", "pipeline", bb][..], &["spawn", "sigpipe", bb], &["spawn", "spawn", bb, dir]] {
        let want = native(&exe, args);
        assert_eq!(want.1, 0, "native {args:?}: {want:?}");
        let (out, err, code) = confined_in(b, &img, args, t.path());
        assert_eq!((out, code), want, "{b:?} confined vs native, {args:?}; stderr: {err}");
        assert_eq!(live_children(), Vec::<String>::new(), "{args:?} left processes behind");
    }
    // Every exec was of the one busybox: one cache entry.
    let entries = std::fs::read_dir(t.path().join("cache")).expect("the cache").count();
    assert_eq!(entries, 1, "one image of busybox in the cache");
}

/// One test per backend, one at a time: each checks that no child of this
/// test process is left.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    spawn_cases(Backend::Process);
}

#[test]
fn kvm() {
    if !Backend::Kvm.available("spawn") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    spawn_cases(Backend::Kvm);
}
