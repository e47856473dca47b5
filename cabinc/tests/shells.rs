//! Shells (issue 14): busybox `sh` (Debian's busybox-static) and Debian's
//! `bash-static` run `-c` scripts with external commands (busybox applets:
//! busybox `sh` runs them through `/proc/self/exe`, bash through `PATH`
//! (links to a copy of /bin/busybox, a plain static executable built
//! through the image cache), pipelines, `$(...)`, subshells, here-docs, a background
//! job and `wait`: stdout and exit status identical to native, on both
//! backends (KVM: NOT RUN, printed, only where /dev/kvm is not usable).
//! Also `popen`/`system` with a static `/bin/sh`, and job control on a
//! terminal the run was given.
//!
//! The script's last command is external: the shell execs it in its own
//! process, the root (the root process's exec, docs/processes.md).
//!
//! Without /bin/busybox or /bin/bash-static these tests fail (install
//! busybox-static and bash-static): a missing input is never a pass.

use std::path::Path;
use std::process::{Command, Output};

const BUSYBOX: &str = "/bin/busybox";
const BASH: &str = "/bin/bash-static";

const SCRIPT: &str = concat!(
    "cd \"$DIR\"\n",
    "echo hi | cat\n",
    "x=$(echo sub | tr a-z A-Z); echo \"got $x\"\n",
    "(echo subshell; exit 3); echo \"subshell status $?\"\n",
    "cat <<END\n",
    "here-doc $x\n",
    "  two\n",
    "END\n",
    "sleep 0.1 & wait $!; echo \"background status $?\"\n",
    "printf 'b\\na\\nc\\n' | sort | head -2 | wc -l\n",
    "echo data > f; wc -c < f; ls\n",
    "for i in 1 2 3; do echo $i; done | tr '\\n' ' '; echo\n",
    "false | cat; echo \"pipeline status $?\"\n",
    "y=$( (echo inner; echo deeper >&2) 2>&1 | sort -r ); echo $y\n",
    "echo end > f; cat f\n",
);

fn require(path: &str, package: &str) {
    assert!(Path::new(path).is_file(), "{path} is missing: install {package} (apt-get install {package})");
}

/// `bin/` holding a copy of /bin/busybox hard-linked as each applet the
/// script runs (what bash finds on PATH: one input, one cache entry; a
/// symbolic link out of the allowed trees would be refused by the path
/// rules), and the script's directory `w/`.
fn setup(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
    for a in ["cat", "tr", "sort", "head", "wc", "ls", "sleep"] {
        std::fs::hard_link(bin.join("busybox"), bin.join(a)).expect("link");
    }
    std::fs::create_dir(dir.join("w")).expect("mkdir");
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `shell ARGS... -c SCRIPT` natively and confined; both outputs.
fn both(shell: &str, shell_args: &[&str], backend: &str) -> (Output, Output) {
    let t = cabin_tests::tempfile::tempdir().expect("tempdir");
    setup(t.path());
    let dir = t.path().join("w");
    let bin = t.path().join("bin");
    let (dir_s, bin_s) = (dir.to_str().expect("utf-8"), bin.to_str().expect("utf-8"));
    let env = [("PATH", bin_s), ("DIR", dir_s), ("TMPDIR", dir_s)];
    let native = Command::new(shell)
        .args(shell_args)
        .args(["-c", SCRIPT])
        .env_clear()
        .envs(env)
        .output()
        .expect("native");
    for e in std::fs::read_dir(&dir).expect("dir") {
        std::fs::remove_file(e.expect("entry").path()).expect("clean the directory");
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_cabinc"));
    c.env("XDG_CACHE_HOME", t.path().join("cache"))
        .args(["run", "-q", "--backend", backend, "--allow-read"])
        .arg(&bin)
        .args(["--allow-read", BUSYBOX, "--allow-write"])
        .arg(&dir);
    for (k, v) in env {
        c.arg("--env").arg(format!("{k}={v}"));
    }
    let confined = c.arg(shell).args(shell_args).args(["-c", SCRIPT]).output().expect("cabinc run");
    (native, confined)
}

fn check(shell: &str, shell_args: &[&str]) {
    let backends = backends();
    for backend in backends {
        let (native, confined) = both(shell, shell_args, backend);
        assert!(native.status.success(), "native: {}", show(&native));
        assert!(String::from_utf8_lossy(&native.stdout).ends_with("end\n"), "native: {}", show(&native));
        assert_eq!(
            (&confined.stdout, confined.status.code()),
            (&native.stdout, native.status.code()),
            "{backend}: confined vs native\nnative: {}\nconfined: {}",
            show(&native),
            show(&confined)
        );
    }
}

#[test]
fn busybox_sh_equal_native() {
    require(BUSYBOX, "busybox-static");
    check(BUSYBOX, &["sh"]);
}

#[test]
fn bash_static_equal_native() {
    require(BUSYBOX, "busybox-static");
    require(BASH, "bash-static");
    check(BASH, &[]);
}

/// `cabinc run --backend BACKEND` of busybox with a policy and an audit
/// file: (stdout, stderr, status, audit).
fn run_busybox(backend: &str, policy: &str, script: &str) -> (String, String, Option<i32>, String) {
    let t = cabin_tests::tempfile::tempdir().expect("tempdir");
    let bb = std::fs::canonicalize(BUSYBOX).expect("busybox");
    let p = t.path().join("policy.toml");
    std::fs::write(&p, policy).expect("write the policy");
    let audit = t.path().join("audit.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_cabinc"))
        .env("XDG_CACHE_HOME", t.path().join("cache"))
        .args(["run", "-q", "--backend", backend, "--allow-read"])
        .arg(&bb)
        .arg("--policy")
        .arg(&p)
        .arg("--audit")
        .arg(&audit)
        .arg(&bb)
        .args(["sh", "-c", &script.replace("BB", bb.to_str().expect("utf-8"))])
        .output()
        .expect("cabinc run");
    let a = std::fs::read_to_string(&audit).unwrap_or_default();
    (String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into(), o.status.code(), a)
}

/// The root process's own exec (a shell's `exec`, and the last command
/// of `sh -c`): the same pid, the new image's status; the run's limits
/// go on across it: a wall-time limit stops the new image. Both backends.
/// That the cpu-time limit counts the replaced images' CPU time too is
/// `monitor/tests/tree_cpu.rs` `chain`, on both backends, with spins
/// measured by the program's own CPU clock: the shell spin of a fixed
/// count this test used took 580-990 ms of CPU for the same count within
/// minutes at load 7, so no split of it into two images could stay below
/// a limit alone and pass it together every time (its misses were the
/// spin's, not the watch's: docs/policy.md, "cpu-time").
#[test]
fn root_exec_keeps_the_runs_limits() {
    require(BUSYBOX, "busybox-static");
    let allow = "version = 1\n[default]\naction = \"allow\"\n";
    let backends = backends();
    for &backend in backends {
        let (out, err, code, _) = run_busybox(backend, allow, "echo $$; exec BB sh -c 'echo $$; exit 5'");
        let pids: Vec<&str> = out.lines().collect();
        assert_eq!((pids.len(), code), (2, Some(5)), "{out}{err}");
        assert_eq!(pids[0], pids[1], "the same pid after exec");
        let (out, err, code, _) = run_busybox(backend, allow, "echo first; BB echo last");
        assert_eq!((out.as_str(), code), ("first\nlast\n", Some(0)), "{err}");
        let wall = format!("{allow}[limits]\nwall-time = \"2s\"\n");
        let (out, err, code, audit) = run_busybox(backend, &wall, "exec BB sleep 30");
        assert_eq!((out.as_str(), code), ("", Some(137)), "{err}");
        assert!(audit.contains("\"limit\":\"wall-time\""), "{audit}");
    }
}

/// `popen`/`pclose` (read and write modes, `O_CLOEXEC`, statuses) and
/// `system()` (a status, `system(NULL)`, a pipeline, a shell killed by a
/// signal) from a static C program (`monitor/tests/programs/spawn.c`),
/// equal to native on both backends. glibc execs `/bin/sh` at that fixed
/// path; on this host it is dash, a dynamic executable Cabin refuses. So
/// both runs happen in a private mount namespace (`unshare -m`, whose
/// mounts never reach the host) in which busybox-static is bind-mounted
/// over `/bin/sh`, and the confined run is given `--allow-read /bin/sh`
/// (a file grant, reached by the name it was given: docs/processes.md,
/// "popen and system"). Then, outside the namespace, what a user with a
/// dynamic `/bin/sh` sees: the shell's exec fails and `pclose` says 127.
#[test]
fn popen_and_system() {
    require(BUSYBOX, "busybox-static");
    let probe = Command::new("unshare").args(["-m", "--propagation", "private", "true"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        cabin_tests::not_run(
            "namespace",
            "unshare -m (a private mount namespace) is not available here: /bin/sh cannot be made a static shell",
        );
        return;
    }
    let t = cabin_tests::tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitor/tests/programs/spawn.c");
    let exe = t.path().join("spawn");
    if cabin_tests::compile_static_c("gcc", "gcc", &src, &exe).is_none() {
        return;
    }
    let cache = t.path().join("cache");
    // `unshare -m` makes every mount private (its default propagation);
    // the bind mount lives as long as the command.
    let with_static_sh = |args: &[&std::ffi::OsStr]| -> Output {
        Command::new("unshare")
            .args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                "mount --bind \"$0\" /bin/sh && exec \"$@\"",
                BUSYBOX,
            ])
            .args(args)
            .env("XDG_CACHE_HOME", &cache)
            .output()
            .expect("unshare")
    };
    let backends = backends();
    let cabinc = Path::new(env!("CARGO_BIN_EXE_cabinc"));
    for case in ["popen", "system"] {
        let native = with_static_sh(&[exe.as_os_str(), case.as_ref()]);
        assert_eq!(native.status.code(), Some(0), "native: {}", show(&native));
        for backend in backends {
            let confined = with_static_sh(&[
                cabinc.as_os_str(),
                "run".as_ref(),
                "-q".as_ref(),
                "--backend".as_ref(),
                backend.as_ref(),
                "--allow-read".as_ref(),
                "/bin/sh".as_ref(),
                exe.as_os_str(),
                case.as_ref(),
            ]);
            assert_eq!(
                (&confined.stdout, confined.status.code()),
                (&native.stdout, native.status.code()),
                "{case} on {backend}: confined vs native\nnative: {}\nconfined: {}",
                show(&native),
                show(&confined)
            );
        }
    }
    // The host's own /bin/sh (dash here: dynamic): the exec is refused
    // (ENOEXEC, a `cabin:` line on stderr), glibc's vfork child ends with
    // 127 and `system` says so; the program goes on.
    if std::fs::read("/bin/sh").is_ok_and(|b| b.len() > 20 && b.windows(12).any(|w| w == b"/ld-linux-x8")) {
        let o = Command::new(cabinc)
            .env("XDG_CACHE_HOME", &cache)
            .args(["run", "-q", "--backend", "process", "--allow-read", "/bin/sh"])
            .arg(&exe)
            .arg("system")
            .output()
            .expect("cabinc run");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.starts_with("system: exited 127\na shell is available: 0\n"),
            "a dynamic /bin/sh: {}",
            show(&o)
        );
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    }
}

/// The backends to compare with native: the process backend, and KVM where
/// `/dev/kvm` is usable (`cabin_tests::kvm_available` says NOT RUN, or
/// fails under `CABIN_REQUIRE_KVM=1`, where it is not).
fn backends() -> &'static [&'static str] {
    let kvm = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(drop);
    if cabin_tests::kvm_available(kvm) {
        &["process", "kvm"]
    } else {
        &["process"]
    }
}

/// `monitor/tests/programs/jobs.c` compiled into `dir`; `None` (said as
/// NOT RUN) without gcc.
fn jobs_program(dir: &Path) -> Option<std::path::PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitor/tests/programs/jobs.c");
    let exe = dir.join("jobs");
    cabin_tests::compile_static_c("gcc", "gcc", &src, &exe)?;
    Some(exe)
}

/// Runs `cmd` as the session leader of a new pseudo-terminal (its stdin
/// and stdout; stderr to a file), the terminal its controlling one, as a
/// login shell's is: (what it wrote to the terminal, with `\r\n` as `\n`,
/// its status, its stderr).
fn on_a_terminal(cmd: Command, dir: &Path) -> (String, Option<i32>, String) {
    on_a_terminal_typing(cmd, dir, None)
}

/// [`on_a_terminal`], typing Ctrl-C on the terminal once the output holds
/// `interrupt_after`.
fn on_a_terminal_typing(
    cmd: Command,
    dir: &Path,
    interrupt_after: Option<&str>,
) -> (String, Option<i32>, String) {
    match interrupt_after {
        Some(w) => on_a_terminal_keys(cmd, dir, &[(w, b"\x03")]),
        None => on_a_terminal_keys(cmd, dir, &[]),
    }
}

/// [`on_a_terminal`], typing each key (in order) once the output holds its
/// text.
fn on_a_terminal_keys(mut cmd: Command, dir: &Path, keys: &[(&str, &[u8])]) -> (String, Option<i32>, String) {
    use std::io::Read;
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two new descriptors; no name, termios or size.
    let r =
        unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: two fresh descriptors we own.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    let err_path = dir.join("terminal-stderr");
    cmd.stdin(slave.try_clone().expect("dup"))
        .stdout(slave)
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    // SAFETY: between fork and exec: setsid and ioctl only (async-signal-safe).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn on the terminal");
    drop(cmd);
    let mut out = Vec::new();
    let mut master = std::fs::File::from(master);
    let mut buf = [0u8; 4096];
    let mut typed = 0;
    // EIO once every descriptor of the terminal's other side is closed.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        while let Some((w, key)) = keys.get(typed) {
            if !String::from_utf8_lossy(&out).contains(w) {
                break;
            }
            master.write_all(key).expect("type a key");
            typed += 1;
        }
    }
    let status = child.wait().expect("wait");
    let text = String::from_utf8_lossy(&out).replace("\r\n", "\n");
    (text, status.code(), std::fs::read_to_string(&err_path).unwrap_or_default())
}

/// Job control on the terminal the run was given (`jobs.c tty`): the
/// foreground group moves to a child's group and back with `tcsetpgrp`,
/// `tcgetpgrp`/`tcgetsid` see it, and the refusals are Linux's (a negative
/// group `EINVAL`, a wild pointer `EFAULT`, a process of another session
/// `ENOTTY`, a group of another session `EPERM`); equal to native, both
/// backends. Natively the program leads the terminal's session; confined,
/// `cabinc` does and the tree keeps the foreground group (the host
/// terminal's own foreground group is never changed by the program).
#[test]
fn job_control_on_a_terminal() {
    let t = cabin_tests::tempfile::tempdir().expect("tempdir");
    let Some(exe) = jobs_program(t.path()) else { return };
    let mut native = Command::new(&exe);
    native.arg("tty");
    let want = on_a_terminal(native, t.path());
    assert_eq!(want.1, Some(0), "native: {want:?}");
    assert!(want.0.ends_with("the foreground is still ours: 1\n"), "native: {want:?}");
    let backends = backends();
    for backend in backends {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cabinc"));
        c.env("XDG_CACHE_HOME", t.path().join("cache"))
            .args(["run", "-q", "--backend", backend])
            .arg(&exe)
            .arg("tty");
        let got = on_a_terminal(c, t.path());
        assert_eq!((&got.0, got.1), (&want.0, want.1), "{backend}: confined vs native; stderr: {}", got.2);
    }
    // Ctrl-C while a job is in the foreground reaches the job, not the
    // program that put it there (`jobs.c ctrlc`; before, `cabinc`
    // forwarded it to the root, which died of it).
    let mut native = Command::new(&exe);
    native.arg("ctrlc");
    let want = on_a_terminal_typing(native, t.path(), Some("ready"));
    assert_eq!(want.1, Some(0), "native: {want:?}");
    assert!(want.0.contains("the foreground job: killed by 2\n"), "native: {want:?}");
    for backend in backends {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cabinc"));
        c.env("XDG_CACHE_HOME", t.path().join("cache"))
            .args(["run", "-q", "--backend", backend])
            .arg(&exe)
            .arg("ctrlc");
        let got = on_a_terminal_typing(c, t.path(), Some("ready"));
        assert_eq!(
            (&got.0, got.1),
            (&want.0, want.1),
            "{backend}: Ctrl-C, confined vs native; stderr: {}",
            got.2
        );
    }
    // Ctrl-Z stops the foreground job (its parent sees it with WUNTRACED,
    // continues it), Ctrl-\\ then ends it with SIGQUIT, and neither reaches
    // the program that put it there (`jobs.c ctrlz`; before, `cabinc`
    // forwarded neither: Ctrl-Z stopped `cabinc` itself).
    let keys: &[(&str, &[u8])] = &[("ready", b"\x1a"), ("continued: 1", b"\x1c")];
    let mut native = Command::new(&exe);
    native.arg("ctrlz");
    let want = on_a_terminal_keys(native, t.path(), keys);
    assert_eq!(want.1, Some(0), "native: {want:?}");
    assert!(want.0.contains("stopped by 20\n"), "native: {want:?}");
    assert!(want.0.contains("the foreground job: killed by 3\n"), "native: {want:?}");
    for backend in backends {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cabinc"));
        c.env("XDG_CACHE_HOME", t.path().join("cache"))
            .args(["run", "-q", "--backend", backend])
            .arg(&exe)
            .arg("ctrlz");
        let got = on_a_terminal_keys(c, t.path(), keys);
        assert_eq!(
            (&got.0, got.1),
            (&want.0, want.1),
            "{backend}: Ctrl-Z and Ctrl-\\, confined vs native; stderr: {}",
            got.2
        );
    }
}

/// `SIGTTIN`/`SIGTTOU` for the background groups of the terminal the run
/// was given (`jobs.c ttin`; docs/processes.md, "Job control"): a
/// background read stops the reader (`WUNTRACED` sees 21) and, continued in
/// the foreground, it reads what is typed; `SIGTTIN` ignored or blocked
/// `EIO`, with a handler `EINTR`; with `TOSTOP` a background write stops the
/// writer (22) or goes through with `SIGTTOU` ignored or blocked; a
/// background `tcsetpgrp` stops the caller; an orphaned group's read `EIO`
/// and `tcsetpgrp` `ENOTTY`. Equal to native, both backends. Before, each
/// read or write went through and nothing stopped.
#[test]
fn background_jobs_stop_on_the_terminal() {
    let t = cabin_tests::tempfile::tempdir().expect("tempdir");
    let Some(exe) = jobs_program(t.path()) else { return };
    let keys: &[(&str, &[u8])] = &[("continued in the foreground", b"x\n")];
    let mut native = Command::new(&exe);
    native.arg("ttin");
    let want = on_a_terminal_keys(native, t.path(), keys);
    assert_eq!(want.1, Some(0), "native: {want:?}");
    assert!(want.0.starts_with("a background reader: stopped by 21\n"), "native: {want:?}");
    assert!(want.0.contains("a background writer: stopped by 22\n"), "native: {want:?}");
    let backends = backends();
    for backend in backends {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cabinc"));
        c.env("XDG_CACHE_HOME", t.path().join("cache"))
            .args(["run", "-q", "--backend", backend])
            .arg(&exe)
            .arg("ttin");
        let got = on_a_terminal_keys(c, t.path(), keys);
        assert_eq!((&got.0, got.1), (&want.0, want.1), "{backend}: confined vs native; stderr: {}", got.2);
    }
}

/// `tcflush`, `tcflow`, `tcdrain` and the old `TCSETA` stop a background
/// group's caller with `SIGTTOU` (Linux's `tty_check_change`) and go
/// through with it ignored or in the foreground; the window size is set
/// from anywhere: equal to native on both backends (docs/processes.md,
/// "Job control").
#[test]
fn background_terminal_controls_stop_as_natively() {
    let t = cabin_tests::tempfile::tempdir().expect("tempdir");
    let Some(exe) = jobs_program(t.path()) else { return };
    let mut native = Command::new(&exe);
    native.arg("ttctl");
    let want = on_a_terminal(native, t.path());
    assert_eq!(want.1, Some(0), "native: {want:?}");
    for call in ["tcflush", "tcflow", "tcdrain", "TCSETA"] {
        assert!(want.0.contains(&format!("a background {call}: stopped by 22\n")), "native: {want:?}");
        assert!(want.0.contains(&format!("background {call}, SIGTTOU ignored: ok\n")), "native: {want:?}");
    }
    assert!(want.0.ends_with("the size: 34 rows\n"), "native: {want:?}");
    for backend in backends() {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cabinc"));
        c.env("XDG_CACHE_HOME", t.path().join("cache"))
            .args(["run", "-q", "--backend", backend])
            .arg(&exe)
            .arg("ttctl");
        let got = on_a_terminal(c, t.path());
        assert_eq!((&got.0, got.1), (&want.0, want.1), "{backend}: confined vs native; stderr: {}", got.2);
    }
}

/// `TIOCSTI` (a byte pushed into the terminal's input queue, as if typed:
/// the shell that started the run would read it) is refused with `EIO`, as
/// Linux refuses it when `dev.tty.legacy_tiocsti` is off, whatever the
/// host's setting.
#[test]
fn typing_into_the_terminal_is_refused() {
    let t = cabin_tests::tempfile::tempdir().expect("tempdir");
    let Some(exe) = jobs_program(t.path()) else { return };
    for backend in backends() {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cabinc"));
        c.env("XDG_CACHE_HOME", t.path().join("cache"))
            .args(["run", "-q", "--backend", backend])
            .arg(&exe)
            .arg("tiocsti");
        let got = on_a_terminal(c, t.path());
        assert_eq!((got.0.as_str(), got.1), ("TIOCSTI: EIO\n", Some(0)), "{backend}: stderr: {}", got.2);
    }
}

/// bash-static's job control (`set -m`) on a background job: `kill -STOP
/// %1` stops it and `wait` returns 128 + SIGSTOP, `jobs` shows it
/// stopped, `kill -CONT` lets it finish; equal to native
/// (docs/processes.md, "Job control"), on both backends.
#[test]
fn bash_static_job_control() {
    require(BUSYBOX, "busybox-static");
    require(BASH, "bash-static");
    const JOBS: &str = "set -m; sleep 1 & kill -STOP %1; wait %1; echo \"stopped: $?\"; jobs; \
                        kill -CONT %1; wait %1; echo \"ended: $?\"";
    let t = cabin_tests::tempfile::tempdir().expect("tempdir");
    setup(t.path());
    let bin = t.path().join("bin");
    let path = format!("PATH={}", bin.to_str().expect("utf-8"));
    let native =
        Command::new(BASH).args(["-c", JOBS]).env_clear().env("PATH", &bin).output().expect("native");
    let want = String::from_utf8_lossy(&native.stdout).to_string();
    assert_eq!(
        want,
        "stopped: 147\n[1]+  Stopped                 sleep 1\nended: 0\n",
        "native: {}",
        show(&native)
    );
    let backends = backends();
    for backend in backends {
        let confined = Command::new(env!("CARGO_BIN_EXE_cabinc"))
            .env("XDG_CACHE_HOME", t.path().join("cache"))
            .args(["run", "-q", "--backend", backend, "--allow-read"])
            .arg(&bin)
            .args(["--env", &path, BASH, "-c", JOBS])
            .output()
            .expect("cabinc run");
        assert_eq!(
            (String::from_utf8_lossy(&confined.stdout).to_string(), confined.status.code()),
            (want.clone(), native.status.code()),
            "{backend}: confined vs native: {}",
            show(&confined)
        );
    }
}
