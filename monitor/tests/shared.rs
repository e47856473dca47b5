//! Shared memory within one confined process (issue 14; docs/syscalls.md
//! "Shared mappings"), with `programs/shared.c`, natively and confined on
//! both backends; output and exit status must be the same: writable
//! `MAP_SHARED` file mappings (what is written reaches the file at `msync`,
//! `munmap`, a `MAP_FIXED` mapping over it, `MADV_DONTNEED`, and at exit;
//! never past the file's end), the errnos of what may not be mapped shared
//! and writable (a read-only descriptor: `EACCES`), `MAP_SHARED |
//! MAP_ANONYMOUS`, `memfd_create`, and `shm_open`/`sem_open` when the run
//! may write `/dev/shm`.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cabin_monitor::RunConfig;
use common::Backend;

fn built() -> Option<&'static (PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = cabin_tests::target_dir().join("shared-test");
        std::fs::create_dir_all(&dir).ok()?;
        let exe = common::compile("shared", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).ok()?);
        Some((exe, img))
    })
    .as_ref()
}

fn native(exe: &Path, args: &[&str]) -> (String, i32) {
    let out = Command::new(exe).args(args).output().expect("run natively");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code().unwrap_or(-1))
}

fn confined(b: Backend, img: &[u8], args: &[&str], dir: &Path, write: &[&Path]) -> (String, i32) {
    let path = dir.join(format!("out-{b:?}-{}", args[0]));
    let out = std::fs::File::create(&path).expect("stdout file");
    let cfg = RunConfig {
        args: std::iter::once("shared").chain(args.iter().copied()).map(String::from).collect(),
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        allow_write: write.iter().map(|p| p.to_path_buf()).collect(),
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).expect("confined run");
    drop(out);
    (std::fs::read_to_string(&path).unwrap_or_default(), o.exit_code)
}

/// Runs `case DIR` natively and confined (each in a fresh directory) and
/// compares.
fn same_as_native(b: Backend, case: &str) {
    let Some((exe, img)) = built() else { return };
    let (n, c) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let want = native(exe, &[case, n.path().to_str().expect("utf-8")]);
    assert_eq!(want.1, 0, "{}", want.0);
    let got = confined(b, img, &[case, c.path().to_str().expect("utf-8")], c.path(), &[c.path()]);
    assert_eq!(got, want, "{b:?} {case}: confined (left) vs native (right)");
}

fn writable_shared_file_mappings(b: Backend) {
    same_as_native(b, "file");
}
/// `MAP_FIXED` over a shared file mapping: the live file mappings of both
/// backends (the process backend's since s27-shm, KVM's since s29-fmap)
/// refuse it with `ENOMEM` and stay as they are (docs/syscalls.md, "Shared
/// mappings": the one documented difference; natively the mapping is
/// replaced), the file keeping what was written.
fn map_fixed_over_a_shared_file_mapping(b: Backend) {
    let Some((_, img)) = built() else { return };
    let c = tempfile::tempdir().expect("tempdir");
    let got = confined(b, img, &["fixedover", c.path().to_str().expect("utf-8")], c.path(), &[c.path()]);
    assert_eq!(got, ("fixed over it: ENOMEM\nfile at 400: fixed\n".to_string(), 0), "{b:?}");
}
fn what_may_not_be_mapped_shared_and_writable(b: Backend) {
    same_as_native(b, "errors");
}
fn shared_anonymous_memory(b: Backend) {
    same_as_native(b, "anon");
}
fn memfd_create_and_its_mappings(b: Backend) {
    same_as_native(b, "memfd");
}

/// Pages written through a mapping the program never unmapped reach the
/// file when it exits.
fn exit_writes_mappings_back(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().to_str().expect("utf-8");
    let want = native(exe, &["exit", d]);
    let shown = native(exe, &["show", d]);
    std::fs::remove_file(t.path().join("exit.dat")).expect("remove");
    let got = confined(b, img, &["exit", d], t.path(), &[t.path()]);
    assert_eq!(got, want);
    assert_eq!(native(exe, &["show", d]), shown, "{b:?}: the file after the confined run");
    assert!(shown.0.contains("written before exit"), "{}", shown.0);
}

/// `shm_open` and `sem_open` (glibc: files under /dev/shm, mapped shared)
/// when the run may write /dev/shm (`--allow-write /dev/shm`).
fn shm_open_and_sem_open_under_dev_shm(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("shm test NOT RUN: no /dev/shm");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let name = format!("/cabin-test-{}-{b:?}", std::process::id());
    let want = native(exe, &["shm", &name]);
    assert_eq!(want.1, 0, "{}", want.0);
    let got = confined(b, img, &["shm", &name], t.path(), &[shm]);
    assert_eq!(got, want, "{b:?}: confined (left) vs native (right)");
    let refused = confined(b, img, &["shm", &name], t.path(), &[]);
    assert!(refused.0.starts_with("shm_open: EACCES\n"), "without /dev/shm allowed: {}", refused.0);
}

on_both_backends!(
    writable_shared_file_mappings,
    map_fixed_over_a_shared_file_mapping,
    what_may_not_be_mapped_shared_and_writable,
    shared_anonymous_memory,
    memfd_create_and_its_mappings,
    exit_writes_mappings_back,
    shm_open_and_sem_open_under_dev_shm,
);
