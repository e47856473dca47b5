//! ripgrep (issue 13), built static from crates.io by the test (`cargo
//! install ripgrep --locked` for `x86_64-unknown-linux-gnu` with
//! `+crt-static`, cached under the target directory's `tmp/ripgrep-static`
//! so later runs reuse it), rewritten into an image and run confined with
//! `-j4` over a generated tree (allowed for reading only): its output,
//! sorted (the threads' order is not fixed), and its exit status equal the
//! native run's on both backends. Without network (no crates.io) the test
//! says NOT RUN.

#[macro_use]
mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cabin_monitor::RunConfig;
use common::Backend;

/// The static `rg`, built once per test binary (and kept across runs).
fn ripgrep() -> Option<&'static PathBuf> {
    static RG: OnceLock<Option<PathBuf>> = OnceLock::new();
    RG.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ripgrep-static");
        let exe = root.join("bin/rg");
        if exe.is_file() {
            return Some(exe);
        }
        let build = root.join("build");
        let o = Command::new(env!("CARGO"))
            .args(["install", "ripgrep", "--locked", "--root"])
            .arg(&root)
            .args(["--target", "x86_64-unknown-linux-gnu"])
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_TARGET_DIR", &build)
            .output()
            .expect("cargo runs");
        let err = String::from_utf8_lossy(&o.stderr);
        if !o.status.success() {
            let offline =
                ["failed to download", "failed to get", "Couldn't resolve", "failed to query", "network"];
            if offline.iter().any(|w| err.contains(w)) {
                cabin_tests::not_run("ripgrep", &format!("crates.io is not reachable: {err}"));
                return None;
            }
            panic!("cargo install ripgrep failed: {err}");
        }
        // The installed binary is all later runs need.
        let _ = std::fs::remove_dir_all(&build);
        assert!(exe.is_file(), "{err}");
        Some(exe)
    })
    .as_ref()
}

/// A tree of 40 directories × 25 files, some lines with "needle", a file
/// that `.ignore` excludes, a hidden one (skipped by default), and a binary
/// file with a match (reported as such).
fn make_tree(root: &Path) {
    for d in 0..40 {
        let dir = root.join(format!("dir{d:02}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..25 {
            let mut text = String::new();
            for l in 0..30 {
                if (d * 7 + f * 3 + l) % 29 == 0 {
                    text.push_str(&format!("line {l} has a needle in file {f} of dir {d}\n"));
                } else {
                    text.push_str(&format!("line {l} is hay {}\n", d * f + l));
                }
            }
            std::fs::write(dir.join(format!("f{f:02}.txt")), text).expect("write");
        }
    }
    std::fs::write(root.join(".ignore"), "ignored.txt\n").expect("write");
    std::fs::write(root.join("ignored.txt"), "needle in an ignored file\n").expect("write");
    std::fs::write(root.join(".hidden"), "needle in a hidden file\n").expect("write");
    std::fs::write(root.join("blob.bin"), b"\0\x01needle\0binary\n").expect("write");
}

fn sorted(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort_unstable();
    v
}

fn ripgrep_j4_matches_native(b: Backend) {
    let Some(rg) = ripgrep() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let tree = t.path().join("tree");
    make_tree(&tree);
    let tree_s = tree.to_str().expect("utf-8 path").to_string();
    let args = ["-j4", "--no-heading", "-n", "needle", tree_s.as_str()];
    let native = Command::new(rg).args(args).output().expect("native rg");
    let native_out = String::from_utf8_lossy(&native.stdout).into_owned();
    assert_eq!(native.status.code(), Some(0), "{}", String::from_utf8_lossy(&native.stderr));
    assert!(native_out.lines().count() > 100, "{native_out}");
    assert!(!native_out.contains("ignored") && !native_out.contains("hidden"), "{native_out}");

    let img = common::rewrite(&std::fs::read(rg).expect("read rg"));
    let out_path = t.path().join("stdout");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let cfg = RunConfig {
        args: std::iter::once("rg").chain(args).map(String::from).collect(),
        allow_read: vec![tree.clone()],
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("the run happens");
    drop(out);
    let got = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert_eq!(o.exit_code, 0, "{b:?}: {:?}\n{got}", o.reason);
    assert_eq!(sorted(&got), sorted(&native_out), "{b:?}: sorted output differs from native");
}

on_both_backends!(ripgrep_j4_matches_native);
