//! A static Go program (Debian's `golang-go`, `CGO_ENABLED=0`;
//! tests/programs/go: goroutines, channels, `time.Sleep`, file I/O) builds
//! into an execute-only image (issue 13): Go's linker puts the ELF headers
//! and notes in its text segment, and the rewriter no longer counts what it
//! decodes there as code reading code. Without `go` the test says NOT RUN.
//!
//! It also runs (`go_program_runs_like_linux`, both backends): the runtime's
//! threads, its signal set-up, its heap in committed reservation space and
//! its network poller (epoll) all work, and the output and status equal the
//! native run's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cabin_monitor::RunConfig;
use common::Backend;

/// Builds the Go program into `dir`; `None` (said as NOT RUN) without `go`.
fn build(dir: &Path) -> Option<PathBuf> {
    let src = common::programs().join("go");
    let exe = dir.join("gotest");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .current_dir(&src)
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "-mod=mod")
        .output();
    match out {
        Ok(o) if o.status.success() => Some(exe),
        Ok(o) => panic!("go build failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            cabin_tests::not_run(
                "go",
                &format!("go is not available ({e}); help: apt-get install golang-go"),
            );
            None
        }
    }
}

#[test]
fn a_static_go_program_builds_execute_only() {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = build(t.path()) else { return };
    let input = std::fs::read(&exe).expect("read");
    let opts = cabin_rewriter::pipeline::BuildOptions::default();
    let built =
        cabin_rewriter::pipeline::build_image(&input, &opts, &mut |_| {}).expect("builds execute-only");
    let elf = cabin_image::elf::ElfFile::parse(&built.image).expect("image");
    assert!(
        elf.exec_segments().all(|s| s.flags & cabin_image::elf::PF_R == 0),
        "the image's code is execute-only"
    );
}

fn go_program_runs_like_linux(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = build(t.path()) else { return };
    let native_dir = t.path().join("native");
    let dir = t.path().join("confined");
    std::fs::create_dir_all(&native_dir).expect("mkdir");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let native = Command::new(&exe).env("OUT", &native_dir).output().expect("native run");
    assert!(native.status.success());
    let img = common::rewrite(&std::fs::read(&exe).expect("read"));
    let cfg = RunConfig {
        args: vec!["gotest".into()],
        env: vec![format!("OUT={}", dir.display())],
        allow_write: vec![dir.clone()],
        quiet: true,
        ..RunConfig::default()
    };
    let o = b.run(&img, &cfg).expect("runs");
    assert_eq!(o.exit_code, 0, "{:?}", o.reason);
    assert_eq!(
        std::fs::read(dir.join("go-out.txt")).expect("written"),
        std::fs::read(native_dir.join("go-out.txt")).expect("written natively")
    );
}

#[test]
fn go_program_runs_like_linux_process() {
    go_program_runs_like_linux(Backend::Process);
}

#[test]
fn go_program_runs_like_linux_kvm() {
    if Backend::Kvm.available("go_program_runs_like_linux") {
        go_program_runs_like_linux(Backend::Kvm);
    }
}
