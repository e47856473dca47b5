//! Signals sent from outside to `cabinc run` reach the program
//! (docs/signals.md), on both backends, as they reach the program run
//! natively: same output, same exit status. The program
//! (`monitor/tests/programs/outside.c`) says "ready" once its handlers are
//! in place; the test then signals `cabinc` (or the native process).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn cabinc() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cabinc"))
}

/// The program and its image, in `dir`; `None` (NOT RUN) without gcc.
fn build(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let src = cabin_tests::workspace_root().join("monitor/tests/programs/outside.c");
    let exe = dir.join("outside");
    cabin_tests::compile_static_c("gcc", "gcc", &src, &exe)?;
    let img = dir.join("outside.cabin");
    let out =
        Command::new(cabinc()).arg("build").arg(&exe).arg("-o").arg(&img).output().expect("cabinc build");
    assert!(out.status.success(), "cabinc build: {}", String::from_utf8_lossy(&out.stderr));
    Some((exe, img))
}

/// Runs `cmd`, waits for "ready", sends `signals` (each so many times, a
/// pause between kinds), then
/// optionally writes `stdin` and closes it; returns stdout and the status a
/// shell shows.
fn drive(mut cmd: Command, signals: &[(i32, u32)], stdin: Option<&[u8]>) -> (String, i32) {
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn");
    let pid = child.id() as i32;
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("read ready");
    assert_eq!(first, "ready\n", "the program did not get ready");
    for &(s, times) in signals {
        // A blocked read or pause must be in place: give it a moment.
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..times {
            // SAFETY: signals our own child.
            unsafe { libc::kill(pid, s) };
        }
    }
    let mut stdin_pipe = child.stdin.take();
    if let Some(data) = stdin {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(p) = stdin_pipe.as_mut() {
            let _ = p.write_all(data);
        }
    }
    drop(stdin_pipe);
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the run did not end after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read stdout");
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    (rest, code)
}

fn case(backend: &str, name: &str, signals: &[(i32, u32)], stdin: Option<&[u8]>) {
    if backend == "kvm" && !cabin_tests::kvm_available(cabin_kvm_open) {
        return;
    }
    let t = cabin_tests::tempfile::tempdir().expect("tempdir");
    let Some((exe, img)) = build(t.path()) else { return };
    let mut native = Command::new(&exe);
    native.arg(name);
    let want = drive(native, signals, stdin);
    let mut confined = Command::new(cabinc());
    confined.args(["run", "-q", "--backend", backend]).arg(&img).arg("--").arg(name);
    let got = drive(confined, signals, stdin);
    assert_eq!(got, want, "{name} on {backend}: confined (left) vs native (right)");
}

fn cabin_kvm_open() -> Result<(), String> {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(drop).map_err(|e| e.to_string())
}

macro_rules! both {
    ($name:ident, $case:expr, $signals:expr, $stdin:expr) => {
        mod $name {
            #[test]
            fn process() {
                super::case("process", $case, $signals, $stdin);
            }
            #[test]
            fn kvm() {
                super::case("kvm", $case, $signals, $stdin);
            }
        }
    };
}

both!(sigint_handler_shuts_down_gracefully, "pause", &[(libc::SIGINT, 1)], None);
both!(sigterm_handler_shuts_down_gracefully, "pause", &[(libc::SIGTERM, 1)], None);
both!(signal_interrupts_a_compute_loop, "spin", &[(libc::SIGUSR1, 1)], None);
// A signal the main thread blocks goes to a thread that does not, here
// one spinning in program code (KVM: its vCPU is sent to the signal
// entry; process: the wake signal goes to every thread).
both!(a_signal_blocked_by_main_reaches_a_spinning_thread, "threads-spin", &[(libc::SIGUSR1, 1)], None);
both!(sigint_without_handler_ends_with_130, "default", &[(libc::SIGINT, 1)], None);
both!(sigterm_without_handler_ends_with_143, "default", &[(libc::SIGTERM, 1)], None);
both!(ignored_sighup_then_sigusr2, "ignore", &[(libc::SIGHUP, 1), (libc::SIGUSR2, 1)], None);
// Thousands of signals sent to `cabinc` stay bounded: the run ends
// cleanly on the SIGTERM that follows them.
both!(a_signal_storm_from_outside_stays_bounded, "storm", &[(libc::SIGUSR1, 5000), (libc::SIGTERM, 1)], None);
both!(sa_restart_restarts_a_blocked_pipe_read, "restart", &[(libc::SIGUSR1, 1)], Some(b"data\n"));
both!(without_sa_restart_a_blocked_read_fails_with_eintr, "eintr", &[(libc::SIGUSR1, 1)], Some(b"data\n"));
