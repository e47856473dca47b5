//! End-to-end tests of `cargo cabin build` and `cargo cabin run` on samples/rust-cargo-cabin.
//! Each test builds the sample into its own temporary target directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/rust-cargo-cabin")
}

fn cargo_cabin(target: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cargo-cabin"));
    c.arg("cabin").args(args).current_dir(sample()).env("CARGO_TARGET_DIR", target).env_remove("RUSTFLAGS");
    c
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn build_writes_a_static_image_beside_the_executable() {
    let t = tempfile::tempdir().expect("tmp");
    let o = cargo_cabin(t.path(), &["build"]).output().expect("cargo-cabin");
    let (_, err) = text(&o);
    assert!(o.status.success(), "cargo cabin build failed: {err}");
    let dir = t.path().join("x86_64-unknown-linux-gnu/debug");
    let exe = dir.join("rust-cargo-cabin");
    let image = dir.join("rust-cargo-cabin.cabin");
    assert!(exe.is_file() && image.is_file(), "{err}");
    let bytes = std::fs::read(&image).expect("image");
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert!(err.contains("rust-cargo-cabin.cabin"), "{err}");
    // The image runs as an ordinary process too (passthrough).
    let o =
        Command::new(&image).args(["--exit", "4", "x"]).env("GREETING", "hey").output().expect("run image");
    assert_eq!(o.status.code(), Some(4));
    assert!(text(&o).0.starts_with("hey from rust-cargo-cabin: 3 argument(s)"), "{}", text(&o).0);
}

#[test]
fn run_without_cabinc_run_falls_back_to_passthrough_and_says_so() {
    let t = tempfile::tempdir().expect("tmp");
    let o = cargo_cabin(t.path(), &["run", "--", "--exit", "3", "a"])
        .env("CABINC", "/nonexistent/cabinc")
        .env("GREETING", "yo")
        .output()
        .expect("cargo-cabin");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(out.starts_with("yo from rust-cargo-cabin: 3 argument(s)"), "{out}");
    assert!(err.contains("passthrough mode, NOT confined"), "{err}");
}

#[test]
fn run_confined_when_cabinc_run_exists() {
    // cabinc is built into the same target directory as cargo-cabin in this workspace.
    let cabinc = Path::new(env!("CARGO_BIN_EXE_cargo-cabin")).with_file_name("cabinc");
    let has_run =
        Command::new(&cabinc).args(["run", "--help"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !has_run {
        cabin_tests::not_run("cabinc run", &format!("{} has no `run` subcommand", cabinc.display()));
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    let allowed = sample().join("data/input.txt").canonicalize().expect("sample data");
    let outside = sample().join("Cargo.toml").canonicalize().expect("sample manifest");
    let (allowed, outside) = (allowed.to_str().expect("utf-8"), outside.to_str().expect("utf-8"));
    let o = cargo_cabin(t.path(), &["run", "--", "--file", allowed, "--file", outside, "--exit", "5"])
        .env("CABINC", &cabinc)
        .output()
        .expect("run");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    // The policy file sets GREETING=hello and the confined environment is otherwise clean.
    assert!(out.starts_with("hello from rust-cargo-cabin: 6 argument(s)"), "{out}\n{err}");
    assert!(!err.contains("NOT confined"), "{err}");
    // The policy allows data/ and nothing else of the package.
    assert!(out.contains(&format!("{allowed}: 33 bytes")), "{out}\n{err}");
    assert!(err.contains(&format!("cannot read {outside}")), "{out}\n{err}");
}

/// `--help` among the cargo arguments shows cargo cabin's help (it was passed
/// to cargo, which printed its own and built nothing), for both subcommands.
#[test]
fn help_is_shown_not_passed_to_cargo() {
    for args in
        [&["cabin", "run", "--help"][..], &["cabin", "run", "--release", "--help"], &["cabin", "build", "-h"]]
    {
        let o = Command::new(env!("CARGO_BIN_EXE_cargo-cabin")).args(args).output().expect("run");
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(out.contains("Usage: cargo cabin"), "{args:?}: {out}");
        assert!(!err.contains("no executable"), "{err}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_cargo-cabin"))
        .args(["cabin", "run", "--help"])
        .output()
        .expect("run");
    let out = text(&o).0;
    assert!(out.contains("--allow-read DIR") && out.contains("argv[0]"), "{out}");
}

/// `cabinc run` options on the command line (`--allow-read`, `--env`) reach
/// `cabinc run` and add to the package's settings; argv[0] is the
/// executable's path as `cargo run` gives it.
#[test]
fn run_options_on_the_command_line_and_cargo_run_argv0() {
    let cabinc = Path::new(env!("CARGO_BIN_EXE_cargo-cabin")).with_file_name("cabinc");
    if !cabinc.is_file() {
        cabin_tests::not_run("cabinc run", &format!("{} is not built", cabinc.display()));
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    let manifest = sample().join("Cargo.toml").canonicalize().expect("sample manifest");
    let dir = sample().canonicalize().expect("sample dir");
    let manifest = manifest.to_str().expect("utf-8");
    let o =
        cargo_cabin(t.path(), &["run", "--allow-read", dir.to_str().expect("utf-8"), "--env=GREETING=cli"])
            .args(["--", "--argv0", "--file", manifest])
            .env("CABINC", &cabinc)
            .output()
            .expect("run");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    // --env from the command line comes after the settings' GREETING=hello: it wins.
    assert!(out.starts_with("cli from rust-cargo-cabin"), "{out}\n{err}");
    assert!(out.contains(&format!("{manifest}: ")), "the command line's --allow-read: {out}\n{err}");
    let exe = t.path().join("x86_64-unknown-linux-gnu/debug/rust-cargo-cabin");
    assert!(out.contains(&format!("argv[0]: {}", exe.display())), "{out}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let o =
        Command::new(env!("CARGO_BIN_EXE_cargo-cabin")).args(["cabin", "frobnicate"]).output().expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("usage: cargo cabin build"));
}

/// samples/rust-threads (issue 13): `std::thread`, mpsc channels, `Mutex`,
/// `Condvar` and scoped threads, built with `cargo cabin build`; confined
/// output and status equal the native run on both backends (KVM: one vCPU
/// per thread). `--mem 2G`: glibc's malloc reserves
/// 128 MiB per thread arena, which the domain still counts as used (lazily
/// committed reservations are another part of issue 13).
#[test]
fn rust_threads_run_confined_as_natively() {
    let cabinc = Path::new(env!("CARGO_BIN_EXE_cargo-cabin")).with_file_name("cabinc");
    if !cabinc.is_file() {
        cabin_tests::not_run("cabinc run", &format!("{} is not built", cabinc.display()));
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/rust-threads");
    let o = Command::new(env!("CARGO_BIN_EXE_cargo-cabin"))
        .args(["cabin", "build"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", t.path())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo-cabin");
    assert!(o.status.success(), "cargo cabin build failed: {}", text(&o).1);
    let exe = t.path().join("x86_64-unknown-linux-gnu/debug/rust-threads");
    let native = Command::new(&exe).output().expect("native run");
    assert_eq!(native.status.code(), Some(0));
    let image = exe.with_extension("cabin");
    let run = |backend: &str| {
        Command::new(&cabinc)
            .args(["run", "-q", "--backend", backend, "--mem", "2G"])
            .arg(&image)
            .output()
            .expect("cabinc run")
    };
    let confined = run("process");
    assert_eq!(
        (text(&confined).0, confined.status.code()),
        (text(&native).0, Some(0)),
        "{}",
        text(&confined).1
    );
    let kvm_usable = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(|_| ());
    if cabin_tests::kvm_available(kvm_usable) {
        let kvm = run("kvm");
        assert_eq!((text(&kvm).0, kvm.status.code()), (text(&native).0, Some(0)), "{}", text(&kvm).1);
    }
}

/// Runs `cmd` with stdout piped, waits until it prints "waiting for
/// ctrl-c" (its Ctrl-C handler is installed by then), sends SIGINT to the
/// process `cmd` started (`cabinc run` for a confined run), and returns
/// everything it printed and its exit status.
fn interrupt_when_waiting(mut cmd: Command) -> (String, Option<i32>, String) {
    use std::io::{BufRead, Read};
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut out = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).expect("read stdout") == 0 {
            break;
        }
        out.push_str(&line);
        if line == "waiting for ctrl-c\n" {
            let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
            assert!(sent.success());
            break;
        }
    }
    stdout.read_to_string(&mut out).expect("read stdout");
    let mut err = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut err).expect("read stderr");
    let status = child.wait().expect("wait");
    (out, status.code(), err)
}

/// samples/rust-tokio (issue 13): a tokio multi-thread runtime (4 workers)
/// with timers, an interval, channels, and `tokio::signal::ctrl_c`, whose
/// signal driver is an AF_UNIX socket pair (mio's `UnixStream::pair`) under
/// epoll with an eventfd waker. Built with `cargo cabin build`; SIGINT sent
/// to `cabinc run` while the program waits for Ctrl-C: the graceful
/// shutdown's output and the exit status (7) equal the native run's, on
/// both backends.
#[test]
fn tokio_ctrl_c_shuts_down_gracefully_as_natively() {
    let cabinc = Path::new(env!("CARGO_BIN_EXE_cargo-cabin")).with_file_name("cabinc");
    if !cabinc.is_file() {
        cabin_tests::not_run("cabinc run", &format!("{} is not built", cabinc.display()));
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/rust-tokio");
    let o = Command::new(env!("CARGO_BIN_EXE_cargo-cabin"))
        .args(["cabin", "build"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", t.path())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo-cabin");
    let (_, err) = text(&o);
    if !o.status.success() && (err.contains("failed to download") || err.contains("failed to get")) {
        cabin_tests::not_run("tokio sample", &format!("crates.io is not reachable: {err}"));
        return;
    }
    assert!(o.status.success(), "cargo cabin build failed: {err}");
    let exe = t.path().join("x86_64-unknown-linux-gnu/debug/rust-tokio");
    let native = interrupt_when_waiting(Command::new(&exe));
    assert_eq!(native.1, Some(7), "natively: {native:?}");
    assert!(native.0.ends_with("shutdown complete\n"), "{native:?}");
    let image = exe.with_extension("cabin");
    let run = |backend: &str| {
        let mut c = Command::new(&cabinc);
        c.args(["run", "-q", "--backend", backend]).arg(&image);
        interrupt_when_waiting(c)
    };
    let confined = run("process");
    assert_eq!((&confined.0, confined.1), (&native.0, native.1), "process: {}", confined.2);
    let kvm_usable = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(|_| ());
    if cabin_tests::kvm_available(kvm_usable) {
        let kvm = run("kvm");
        assert_eq!((&kvm.0, kvm.1), (&native.0, native.1), "kvm: {}", kvm.2);
    }
}
