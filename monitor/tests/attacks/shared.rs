//! Hostile shared mappings (docs/syscalls.md "Shared mappings"), with
//! `programs/attack_shared.c`:
//!
//! - a file outside the allowed trees cannot be mapped (the `open` is
//!   refused, so there is no descriptor to map);
//! - a file opened read-only cannot be mapped shared and writable (`EACCES`
//!   as Linux, also with `MAP_SHARED_VALIDATE`), so no write can reach it;
//! - `MAP_FIXED` shared file mappings over the program's code, the libos,
//!   the stack, the lowest pages or the top of user space fail, and the
//!   program runs on;
//! - the table of writable shared mappings is bounded (`ENOMEM` past it,
//!   every duplicate closed again once they are unmapped);
//! - a program that closes or replaces the libos's duplicates only writes
//!   its own pages to files it opened for writing itself; hostile `msync`,
//!   `munmap`, `mremap` ranges leave the monitor intact.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cabin_monitor::{RunConfig, RunOutcome};

use crate::common::{self, Backend};

on_both_backends!(
    files_outside_the_trees_cannot_be_mapped,
    read_only_files_cannot_be_mapped_for_writing,
    fixed_shared_mappings_cannot_replace_the_domain,
    the_shared_mapping_table_is_bounded,
    replaced_duplicates_and_hostile_ranges
);

fn built() -> Option<&'static (PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = common::scratch_dir("attack-shared");
        let exe = common::compile("attack_shared", &dir)?;
        let img = common::rewrite(&std::fs::read(&exe).expect("read program"));
        Some((exe, img))
    })
    .as_ref()
}

fn run(
    b: Backend,
    img: &[u8],
    args: &[&str],
    out_dir: &Path,
    read: &[&Path],
    write: &[&Path],
) -> (RunOutcome, String) {
    let out_path = out_dir.join(format!("out-{}", args[0]));
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: std::iter::once("attack_shared").chain(args.iter().copied()).map(String::from).collect(),
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        allow_read: read.iter().map(|p| p.to_path_buf()).collect(),
        allow_write: write.iter().map(|p| p.to_path_buf()).collect(),
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).expect("the monitor survives the run");
    drop(out);
    (o, std::fs::read_to_string(&out_path).unwrap_or_default())
}

fn files_outside_the_trees_cannot_be_mapped(b: Backend) {
    let Some((_, img)) = built() else { return };
    let (t, outside) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let f = outside.path().join("secret");
    std::fs::write(&f, vec![b's'; 8192]).expect("write");
    let (o, out) = run(b, img, &["outside", f.to_str().expect("utf-8")], t.path(), &[], &[t.path()]);
    assert_eq!(o.exit_code, 0, "{:?}", o.reason);
    assert_eq!(out, format!("open: errno {}\nmmap: errno {}\n", libc::EACCES, libc::EBADF));
    assert_eq!(std::fs::read(&f).expect("read"), vec![b's'; 8192]);
}

fn read_only_files_cannot_be_mapped_for_writing(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let (t, ro) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let f = ro.path().join("ro.dat");
    std::fs::write(&f, vec![b'r'; 8192]).expect("write");
    let fs = f.to_str().expect("utf-8");
    let native = std::process::Command::new(exe).args(["readonly", fs]).output().expect("native");
    let want = String::from_utf8_lossy(&native.stdout).into_owned();
    // Read-only through the tree, and read-only by the file's own mode in a
    // writable tree: the same answer.
    let (o, out) = run(b, img, &["readonly", fs], t.path(), &[ro.path()], &[t.path()]);
    assert_eq!((o.exit_code, out), (0, want.clone()));
    let (o, out) = run(b, img, &["readonly", fs], t.path(), &[], &[ro.path(), t.path()]);
    assert_eq!((o.exit_code, out), (0, want));
    assert_eq!(std::fs::read(&f).expect("read"), vec![b'r'; 8192]);
}

fn fixed_shared_mappings_cannot_replace_the_domain(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let (o, out) = run(b, img, &["over", t.path().to_str().expect("utf-8")], t.path(), &[], &[t.path()]);
    assert_eq!(o.exit_code, 0, "{:?}: {out}", o.reason);
    assert!(out.ends_with("still running\n"), "{out}");
    assert_eq!(out.lines().filter(|l| l.ends_with(": ok")).count(), 0, "{out}");
}

fn the_shared_mapping_table_is_bounded(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let (o, out) = run(b, img, &["many", t.path().to_str().expect("utf-8")], t.path(), &[], &[t.path()]);
    assert_eq!(o.exit_code, 0, "{:?}: {out}", o.reason);
    // The copy path's table (KVM) holds 64; the process backend's mappings
    // are the files' own pages, bounded at 256 (filemap.rs tests that).
    let bound = match b {
        Backend::Kvm => format!("mapping 64: errno {}\n", libc::ENOMEM),
        Backend::Process => String::new(),
    };
    assert_eq!(out, format!("{bound}after unmapping them all: ok\ndescriptors left: next is 4\n",));
}

fn replaced_duplicates_and_hostile_ranges(b: Backend) {
    let Some((_, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().to_str().expect("utf-8");
    for mode in ["dups", "ranges"] {
        let (o, out) = run(b, img, &[mode, d], t.path(), &[], &[t.path()]);
        assert_eq!(o.exit_code, 0, "{mode}: {:?}: {out}", o.reason);
        assert!(out.ends_with("still running\n"), "{mode}: {out}");
    }
}
