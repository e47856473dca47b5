//! The OCI runtime (`cabinc oci`, `cabin-runc`; issue 20): runc's command
//! line driven directly (create / start / state / ps / kill / delete, the
//! init's stdio and exit status, errors and clean-up) on both backends,
//! and a real containerd (Debian's package) driving it through its runc
//! shim: NOT RUN only where containerd cannot start.
//!
//! Needs gcc with a static libc (the program is compiled per test).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cabin_tests::tempfile::TempDir;

/// A bound on every wait for a container (a hang fails, never stalls).
const WAIT: Duration = Duration::from_secs(120);

const PROGRAM: &str = r#"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static volatile sig_atomic_t got;
static void on(int s) { got = s; }
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "hello") == 0) {
        printf("hello from cabin, argc=%d\n", argc);
        return 3;
    }
    if (argc > 2 && strcmp(argv[1], "cat") == 0) {
        FILE *f = fopen(argv[2], "r");
        if (!f) { printf("open %s: %s\n", argv[2], strerror(errno)); return 1; }
        char b[256];
        size_t n = fread(b, 1, sizeof b - 1, f);
        b[n] = 0;
        printf("%s", b);
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "write") == 0) {
        FILE *f = fopen(argv[2], "w");
        if (!f) { printf("write %s: %s\n", argv[2], strerror(errno)); return 1; }
        fputs("x", f);
        fclose(f);
        printf("wrote %s\n", argv[2]);
        return 0;
    }
    if (argc > 2 && strcmp(argv[1], "mkdir") == 0) {
        if (mkdir(argv[2], 0700) != 0) { printf("mkdir: %s\n", strerror(errno)); return 1; }
        printf("made %s\n", argv[2]);
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on;
    sigaction(SIGTERM, &sa, 0);
    printf("ready\n");
    fflush(stdout);
    while (!got) pause();
    printf("got signal %d\n", (int)got);
    return 7;
}
"#;

fn tempdir() -> TempDir {
    cabin_tests::tempfile::tempdir().expect("tempdir")
}

fn describe(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The backends to run on here (KVM only where usable; says NOT RUN otherwise).
fn backends() -> Vec<&'static str> {
    let kvm = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(drop);
    if cabin_tests::kvm_available(kvm) {
        vec!["process", "kvm"]
    } else {
        vec!["process"]
    }
}

/// Compiles the test program static into `path`.
fn compile(dir: &Path, path: &Path, extra: &[&str]) {
    let c = dir.join("app.c");
    std::fs::write(&c, PROGRAM).expect("write the C source");
    let o = Command::new("gcc").args(["-O1", "-o"]).arg(path).arg(&c).args(extra).output().expect("run gcc");
    assert!(o.status.success(), "gcc failed: {}", describe(&o));
}

/// Runs `cmd` to its end with stdout and stderr captured, bounded by
/// [`WAIT`] (killed and failed past it: a hang fails, never stalls). The
/// output is what arrived once the command ended and its pipes closed (a
/// container's init may hold them a little longer).
fn bounded_output(cmd: &mut Command) -> Output {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let status = bounded_wait(&mut child, &format!("{cmd:?}"));
    let deadline = Instant::now() + WAIT;
    while !(out.is_finished() && err.is_finished()) {
        assert!(Instant::now() < deadline, "the output of {cmd:?} did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    Output { status, stdout: out.join().expect("stdout"), stderr: err.join().expect("stderr") }
}

/// Waits for `child`, bounded by [`WAIT`] (killed and failed past it).
fn bounded_wait(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {}s", WAIT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cabinc` as `cabin-runc` (a symbolic link in `dir`), as the shim runs it.
fn runc_link(dir: &Path) -> PathBuf {
    let link = dir.join("cabin-runc");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cabinc"), &link).expect("symlink cabin-runc");
    }
    link
}

/// A runc command line with `--root` and a JSON `--log`.
struct Runc {
    exe: PathBuf,
    root: PathBuf,
    log: PathBuf,
    cache: PathBuf,
}

impl Runc {
    fn new(t: &Path) -> Runc {
        Runc { exe: runc_link(t), root: t.join("state"), log: t.join("log.json"), cache: t.join("cache") }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--root").arg(&self.root).arg("--log").arg(&self.log).args(["--log-format", "json"]);
        c.args(args)
            .env("XDG_CACHE_HOME", &self.cache)
            .env("CABIN_OCI_POLICY_DIR", self.root.with_file_name("policies"));
        c
    }

    fn out(&self, args: &[&str]) -> Output {
        bounded_output(self.cmd(args).stdin(Stdio::null()))
    }

    fn ok(&self, args: &[&str]) -> Output {
        let o = self.out(args);
        assert!(o.status.success(), "cabin-runc {args:?}: {}", describe(&o));
        o
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let o = self.ok(&["state", id]);
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("state is not JSON ({e}): {}", describe(&o)))
    }
}

/// A bundle: rootfs/bin/app (the program) and config.json.
fn bundle(t: &Path, name: &str, args: &[&str], annotations: serde_json::Value) -> PathBuf {
    let b = t.join(name);
    std::fs::create_dir_all(b.join("rootfs/bin")).expect("mkdir rootfs");
    compile(t, &b.join("rootfs/bin/app"), &["-static"]);
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": { "args": args, "env": ["PATH=/bin"], "cwd": "/", "user": { "uid": 0, "gid": 0 } },
        "root": { "path": "rootfs" },
        "mounts": [ { "destination": "/proc", "type": "proc", "source": "proc" } ],
        "annotations": annotations,
        "linux": { "namespaces": [ { "type": "pid" } ] }
    });
    std::fs::write(b.join("config.json"), serde_json::to_vec_pretty(&config).expect("json")).expect("config");
    b
}

/// Waits (bounded) until `f` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Makes this test process a child subreaper (as the shim is), so the
/// init that `create` leaves behind is ours to reap: its status is the
/// container's exit status.
fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Is `pid` a live (not zombie) process?
fn alive_pid(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| t.rfind(')').map(|i| t[i + 1..].split_whitespace().next() != Some("Z")))
        .unwrap_or(false)
}

/// Reaps `pid` (bounded); its exit status (128 + N for a signal N).
fn reap(pid: i32) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
        assert!(r == 0, "waitpid({pid}): {}", std::io::Error::last_os_error());
        assert!(Instant::now() < deadline, "the init {pid} did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// create → state created (pid = pid file, stdio = create's) → start →
/// running, ps lists the init → kill TERM reaches the program's handler →
/// stopped, exit status 7 → delete removes everything. On both backends.
#[test]
fn create_start_kill_delete_on_both_backends() {
    become_subreaper();
    for backend in backends() {
        let t = tempdir();
        let runc = Runc::new(t.path());
        let b = bundle(t.path(), "bundle", &["app"], serde_json::json!({ "dev.cabin.backend": backend }));
        let id = format!("c-{backend}");
        let pid_file = t.path().join("init.pid");
        let out_file = t.path().join("stdout");
        let stdout = std::fs::File::create(&out_file).expect("stdout file");
        let mut o = runc
            .cmd(&["create", "--bundle", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), &id])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(std::fs::File::create(t.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("create");
        let o = bounded_wait(&mut o, "create");
        // The init keeps create's stdio: files, so nothing waits for their end.
        let err = || std::fs::read_to_string(t.path().join("stderr")).unwrap_or_default();
        assert!(o.success(), "{backend}: create: {o:?}: {}", err());
        let pid: i32 = std::fs::read_to_string(&pid_file).expect("pid file").trim().parse().expect("a pid");
        let s = runc.state(&id);
        assert_eq!(s["status"], "created", "{backend}: {s}");
        assert_eq!(s["pid"], pid, "{backend}: {s}");
        assert_eq!(s["id"], id.as_str());
        assert_eq!(s["bundle"], b.to_str().unwrap());
        assert_eq!(s["annotations"]["dev.cabin.backend"], backend);
        assert!(s["ociVersion"].as_str().is_some());
        // Not started: the program has not run.
        assert_eq!(std::fs::read_to_string(&out_file).expect("read"), "");
        let again = runc.out(&["create", "--bundle", b.to_str().unwrap(), &id]);
        assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("exists"));

        runc.ok(&["start", &id]);
        wait_until("ready", || std::fs::read_to_string(&out_file).unwrap_or_default().contains("ready"));
        assert_eq!(runc.state(&id)["status"], "running");
        let twice = runc.out(&["start", &id]);
        assert!(!twice.status.success(), "{backend}: a second start: {}", describe(&twice));
        let ps = runc.ok(&["ps", "--format", "json", &id]);
        let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).expect("ps json");
        assert!(pids.contains(&pid), "{backend}: ps {pids:?} lacks {pid}");
        let refused = runc.out(&["delete", &id]);
        assert!(
            !refused.status.success(),
            "{backend}: delete of a running container: {}",
            describe(&refused)
        );

        runc.ok(&["kill", &id, "15"]);
        assert_eq!(reap(pid), 7, "{backend}: the exit status is the program's");
        let out = std::fs::read_to_string(&out_file).expect("read");
        assert_eq!(out, "ready\ngot signal 15\n", "{backend}");
        assert_eq!(runc.state(&id)["status"], "stopped");
        let k = runc.out(&["kill", &id, "TERM"]);
        assert!(!k.status.success(), "{backend}: kill of a stopped container");
        runc.ok(&["delete", &id]);
        assert!(!runc.root.join(&id).exists(), "{backend}: delete leaves nothing");
        let gone = runc.out(&["state", &id]);
        assert!(String::from_utf8_lossy(&gone.stderr).contains("does not exist"), "{}", describe(&gone));
    }
}

/// `run` (no --detach) passes stdout and the status through and deletes
/// the container; `delete` of a created container ends its init; a
/// running one goes with --force.
#[test]
fn run_and_forced_delete() {
    become_subreaper();
    let t = tempdir();
    let runc = Runc::new(t.path());
    let b = bundle(t.path(), "bundle", &["/bin/app", "hello", "x"], serde_json::json!({}));
    let o = runc.out(&["run", "--bundle", b.to_str().unwrap(), "r1"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from cabin, argc=3\n");
    assert!(!runc.root.join("r1").exists());

    // Created, never started: delete ends the waiting init.
    let mut c = runc
        .cmd(&["create", "--bundle", b.to_str().unwrap(), "r2"])
        .stdout(Stdio::null())
        .spawn()
        .expect("create");
    assert!(bounded_wait(&mut c, "create").success());
    let pid = runc.state("r2")["pid"].as_i64().expect("pid") as i32;
    runc.ok(&["delete", "r2"]);
    assert!(reap(pid) >= 128, "the init was killed");
    assert!(!runc.root.join("r2").exists());

    // Running: --force.
    let b2 = bundle(t.path(), "bundle2", &["/bin/app"], serde_json::json!({}));
    let mut c = runc
        .cmd(&["create", "--bundle", b2.to_str().unwrap(), "r3"])
        .stdout(Stdio::null())
        .spawn()
        .expect("create");
    assert!(bounded_wait(&mut c, "create").success());
    let pid = runc.state("r3")["pid"].as_i64().expect("pid") as i32;
    runc.ok(&["start", "r3"]);
    runc.ok(&["delete", "--force", "r3"]);
    assert_eq!(reap(pid), 128 + libc::SIGKILL);
    assert!(!runc.root.join("r3").exists());
}

/// `exec` runs another program in a running container (its view, policy
/// and backend): waited for, its stdout and status passed through; with
/// --detach and --pid-file its pid is given and it is reaped with its
/// status; `kill --all` reaches it with the init; refused in a container
/// that is not running; the exec'd plan file is gone once read. Both
/// backends.
#[test]
fn exec_runs_another_program_in_a_running_container() {
    become_subreaper();
    for backend in backends() {
        let t = tempdir();
        let runc = Runc::new(t.path());
        let b =
            bundle(t.path(), "bundle", &["/bin/app"], serde_json::json!({ "dev.cabin.backend": backend }));
        std::fs::write(b.join("rootfs/motd"), "in the rootfs\n").expect("write");
        let mut c = runc
            .cmd(&["create", "--bundle", b.to_str().unwrap(), "x"])
            .stdout(Stdio::null())
            .spawn()
            .expect("create");
        assert!(bounded_wait(&mut c, "create").success());
        let o = runc.out(&["exec", "x", "/bin/app", "hello"]);
        assert!(String::from_utf8_lossy(&o.stderr).contains("not running"), "{backend}: {}", describe(&o));
        let init = runc.state("x")["pid"].as_i64().expect("pid") as i32;
        runc.ok(&["start", "x"]);

        let process = t.path().join("process.json");
        std::fs::write(&process, r#"{"args":["/bin/app","cat","motd"],"env":["PATH=/bin"],"cwd":"/"}"#)
            .expect("process");
        let o = runc.out(&["exec", "--process", process.to_str().unwrap(), "x"]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "in the rootfs\n", "{backend}: {}", describe(&o));
        assert_eq!(o.status.code(), Some(0));
        let o = runc.out(&["exec", "x", "/bin/app", "hello", "there"]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "hello from cabin, argc=3\n",
            "{backend}: {}",
            describe(&o)
        );
        assert_eq!(o.status.code(), Some(3));

        // Detached: a waiting program, ended with the container by kill --all.
        let pid_file = t.path().join("exec.pid");
        std::fs::write(&process, r#"{"args":["/bin/app"],"env":["PATH=/bin"],"cwd":"/"}"#).expect("process");
        let mut c = runc
            .cmd(&[
                "exec",
                "--detach",
                "--pid-file",
                pid_file.to_str().unwrap(),
                "--process",
                process.to_str().unwrap(),
                "x",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("exec");
        assert!(bounded_wait(&mut c, "exec --detach").success());
        let pid: i32 = std::fs::read_to_string(&pid_file).expect("pid").parse().expect("pid");
        assert!(alive_pid(pid), "{backend}: the exec'd process runs");
        runc.ok(&["kill", "--all", "x", "KILL"]);
        assert_eq!(reap(pid), 128 + libc::SIGKILL, "{backend}: kill --all reached the exec'd process");
        assert_eq!(reap(init), 128 + libc::SIGKILL, "{backend}");
        let left: Vec<_> = std::fs::read_dir(runc.root.join("x"))
            .expect("state dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("exec-"))
            .collect();
        assert!(left.is_empty(), "{backend}: exec plans left: {left:?}");
        runc.ok(&["delete", "x"]);
    }
}

/// Bad bundles: one-line errors naming the field, on stderr and as a JSON
/// line in --log; nothing left in the state root; a dynamic entrypoint
/// refused; ids that would leave the root refused.
#[test]
fn bad_bundles_are_refused_with_the_field_and_leave_nothing() {
    let t = tempdir();
    let runc = Runc::new(t.path());
    let b = bundle(t.path(), "bundle", &["/bin/app"], serde_json::json!({}));
    let config = std::fs::read_to_string(b.join("config.json")).expect("config");
    let cases: &[(&str, &str)] = &[
        (r#""cwd": "/""#, r#""cwd": "/", "terminal": true"#),
        (r#""uid": 0"#, r#""uid": 1000"#),
        (r#""path": "rootfs""#, r#""path": "nope""#),
        (r#""type": "proc""#, r#""type": "nfs""#),
        (r#""args": ["#, r#""args": ["/bin/missing", "#),
    ];
    let fields = ["process.terminal", "process.user", "root.path", "mounts[0]", "process.args[0]"];
    for ((from, to), field) in cases.iter().zip(fields) {
        assert!(config.contains(from), "{from}");
        std::fs::write(b.join("config.json"), config.replacen(from, to, 1)).expect("config");
        let _ = std::fs::remove_file(&runc.log);
        let o = runc.out(&["create", "--bundle", b.to_str().unwrap(), "bad"]);
        assert_eq!(o.status.code(), Some(1), "{field}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{field}: {err}");
        assert!(err.contains(field), "{field}: {err}");
        let log = std::fs::read_to_string(&runc.log).expect("log");
        let line: serde_json::Value =
            serde_json::from_str(log.lines().next().expect("a line")).expect("JSON line");
        assert_eq!(line["level"], "error");
        assert!(line["msg"].as_str().is_some_and(|m| m.contains(field)), "{line}");
        assert!(!runc.root.join("bad").exists(), "{field}: a refused create leaves nothing");
    }
    std::fs::write(b.join("config.json"), "{ not json").expect("config");
    let o = runc.out(&["create", "--bundle", b.to_str().unwrap(), "bad"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("config.json"), "{}", describe(&o));

    // A dynamic entrypoint.
    std::fs::write(b.join("config.json"), &config).expect("config");
    compile(t.path(), &b.join("rootfs/bin/app"), &[]);
    let o = runc.out(&["create", "--bundle", b.to_str().unwrap(), "dyn"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("dynamically linked"), "{}", describe(&o));
    assert!(!runc.root.join("dyn").exists());

    for id in ["..", "a/b", "../escape"] {
        let o = runc.out(&["create", "--bundle", b.to_str().unwrap(), id]);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("invalid container id"),
            "{id}: {}",
            describe(&o)
        );
    }
    let o = runc.out(&["delete", "nothing-here"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"), "{}", describe(&o));
    // A damaged record: state says so, delete --force still cleans up.
    std::fs::create_dir_all(runc.root.join("damaged")).expect("mkdir");
    std::fs::write(runc.root.join("damaged/state.json"), "{ half").expect("write");
    let o = runc.out(&["state", "damaged"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("damaged"), "{}", describe(&o));
    assert!(!runc.out(&["delete", "damaged"]).status.success());
    runc.ok(&["delete", "--force", "damaged"]);
    assert!(!runc.root.join("damaged").exists());
}

/// Attacks from inside: the container's program cannot read its bundle's
/// config.json nor write its runtime state (both outside its view: their
/// host paths do not exist for it); an
/// image whose entrypoint is a symbolic link out of the rootfs (absolute,
/// or through `..`) does not make the runtime read a host file.
#[test]
fn a_container_cannot_reach_its_bundle_state_or_host_files() {
    let t = tempdir();
    let runc = Runc::new(t.path());
    let b = bundle(t.path(), "bundle", &["/bin/app"], serde_json::json!({}));
    let config = std::fs::read_to_string(b.join("config.json")).expect("config");
    let with_args = |args: &[&str]| {
        let mut v: serde_json::Value = serde_json::from_str(&config).expect("json");
        v["process"]["args"] = serde_json::json!(args);
        std::fs::write(b.join("config.json"), serde_json::to_vec(&v).expect("json")).expect("config");
    };
    let cfg = b.join("config.json");
    with_args(&["/bin/app", "cat", cfg.to_str().unwrap()]);
    let o = runc.out(&["run", "--bundle", b.to_str().unwrap(), "a1"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("open "), "{}", describe(&o));
    let state = runc.root.join("a2/state.json");
    with_args(&["/bin/app", "write", state.to_str().unwrap()]);
    let o = runc.out(&["run", "--bundle", b.to_str().unwrap(), "a2"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("write "), "{}", describe(&o));

    // Entrypoints that are links out of the rootfs: resolved inside it.
    let outside = t.path().join("outside-app");
    compile(t.path(), &outside, &["-static"]);
    let link = b.join("rootfs/bin/link");
    std::os::unix::fs::symlink(&outside, &link).expect("symlink");
    std::os::unix::fs::symlink("../../../outside-app", b.join("rootfs/bin/up")).expect("symlink");
    for entry in ["/bin/link", "/bin/up", "/../../outside-app"] {
        with_args(&[entry, "hello"]);
        let o = runc.out(&["create", "--bundle", b.to_str().unwrap(), "a3"]);
        assert_eq!(o.status.code(), Some(1), "{entry}: {}", describe(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("process.args[0]"), "{entry}: {}", describe(&o));
        assert!(!runc.root.join("a3").exists());
    }
}

/// The annotations: `dev.cabin.policy` (a policy file of the node's
/// policy directory, CABIN_OCI_POLICY_DIR: mkdir denied with EPERM) and `linux.seccomp` in the spec (mkdir denied with ENOSPC, as an
/// imported profile); a bad policy file is refused at create, naming the
/// annotation.
#[test]
fn policy_annotation_and_spec_seccomp_apply() {
    let t = tempdir();
    let runc = Runc::new(t.path());
    let target = t.path().join("made");
    std::fs::create_dir_all(t.path().join("policies")).expect("mkdir");
    let policy = t.path().join("policies/policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n[default]\naction = \"allow\"\n[syscalls]\ndeny = [\"mkdir\", \"mkdirat\"]\ndeny-errno = \"EPERM\"\n",
    )
    .expect("policy");
    let b = bundle(
        t.path(),
        "b1",
        &["/bin/app", "mkdir", target.to_str().unwrap()],
        serde_json::json!({ "dev.cabin.policy": policy.to_str().unwrap() }),
    );
    let o = runc.out(&["run", "--bundle", b.to_str().unwrap(), "p1"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "mkdir: Operation not permitted\n", "{}", describe(&o));

    let b = bundle(t.path(), "b2", &["/bin/app", "mkdir", target.to_str().unwrap()], serde_json::json!({}));
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).expect("config")).expect("json");
    v["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [ { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28 } ]
    });
    std::fs::write(b.join("config.json"), serde_json::to_vec(&v).expect("json")).expect("config");
    let o = runc.out(&["run", "--bundle", b.to_str().unwrap(), "p2"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "mkdir: No space left on device\n", "{}", describe(&o));
    assert!(!target.exists());

    std::fs::write(&policy, "version = 1\n[default]\naction = \"sometimes\"\n").expect("policy");
    let b = bundle(t.path(), "b3", &["/bin/app"], serde_json::json!({ "dev.cabin.policy": "policy.toml" }));
    let o = runc.out(&["create", "--bundle", b.to_str().unwrap(), "p3"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("annotations.dev.cabin.policy"), "{}", describe(&o));
    assert!(!runc.root.join("p3").exists());

    // Attack from the pod's author: the annotation names a host file
    // outside the node's policy directory (its content would come back in
    // the parse error; /dev/zero would be read without end), directly,
    // through `..` or through a link in the directory: refused without
    // reading it, naming the annotation.
    let secret = t.path().join("secret.txt");
    std::fs::write(&secret, "TOPSECRET=1\n").expect("secret");
    std::os::unix::fs::symlink(&secret, t.path().join("policies/link.toml")).expect("symlink");
    let names = [secret.to_str().unwrap(), "/dev/zero", "../secret.txt", "link.toml", "/etc/shadow"];
    for name in names {
        let b = bundle(t.path(), "b4", &["/bin/app"], serde_json::json!({ "dev.cabin.policy": name }));
        let o = runc.out(&["create", "--bundle", b.to_str().unwrap(), "p4"]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", describe(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("is not one of the node's policies"), "{name}: {err}");
        assert!(!err.contains("TOPSECRET"), "{name}: {err}");
        assert!(!runc.root.join("p4").exists());
    }
}

/// The spec's root, mounts and cwd are the program's view: a tmpfs mount
/// takes a write (its size= bound is the monitor's, tested in views.rs), a
/// bind shows its source, the
/// cwd is the starting directory (a relative path resolves there), and the
/// rootfs is `/`. Both backends.
#[test]
fn root_mounts_and_cwd_make_the_view() {
    let t = tempdir();
    let runc = Runc::new(t.path());
    let shared = t.path().join("shared");
    std::fs::create_dir_all(&shared).expect("mkdir");
    std::fs::write(shared.join("file"), "from the bind\n").expect("write");
    let b = bundle(t.path(), "bundle", &["/bin/app"], serde_json::json!({}));
    std::fs::write(b.join("rootfs/motd"), "in the rootfs\n").expect("write");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).expect("config")).expect("json");
    v["mounts"] = serde_json::json!([
        { "destination": "/proc", "type": "proc", "source": "proc" },
        { "destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=64k"] },
        { "destination": "/data", "type": "bind", "source": shared, "options": ["rbind", "rw"] }
    ]);
    v["process"]["cwd"] = serde_json::json!("/data");
    let cases: &[(&[&str], &str, i32)] = &[
        (&["/bin/app", "cat", "/motd"], "in the rootfs\n", 0),
        (&["/bin/app", "cat", "file"], "from the bind\n", 0),
        (&["/bin/app", "write", "/scratch/x"], "wrote /scratch/x\n", 0),
        (&["/bin/app", "write", "/data/new"], "wrote /data/new\n", 0),
    ];
    for backend in backends() {
        v["annotations"] = serde_json::json!({ "dev.cabin.backend": backend });
        let _ = std::fs::remove_file(shared.join("new"));
        for (i, (args, out, code)) in cases.iter().enumerate() {
            v["process"]["args"] = serde_json::json!(args);
            std::fs::write(b.join("config.json"), serde_json::to_vec(&v).expect("json")).expect("config");
            let o = runc.out(&["run", "--bundle", b.to_str().unwrap(), &format!("v{i}-{backend}")]);
            assert_eq!(String::from_utf8_lossy(&o.stdout), *out, "{backend} {args:?}: {}", describe(&o));
            assert_eq!(o.status.code(), Some(*code), "{backend} {args:?}");
        }
    }
    assert!(shared.join("new").exists(), "a write through a rw bind lands in its source");
    // A bad size names the field.
    v["mounts"][1]["options"] = serde_json::json!(["size=lots"]);
    std::fs::write(b.join("config.json"), serde_json::to_vec(&v).expect("json")).expect("config");
    let o = runc.out(&["create", "--bundle", b.to_str().unwrap(), "badsize"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("mounts[1].options"), "{}", describe(&o));
}

/// Receives one descriptor (SCM_RIGHTS) from the first connection to `listener`.
fn receive_fd(listener: &std::os::unix::net::UnixListener) -> std::fs::File {
    use std::os::fd::{AsRawFd, FromRawFd};
    let (stream, _) = listener.accept().expect("accept");
    let mut data = [0u8; 64];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; it then points at `iov` and
    // `control`, alive for the recvmsg call, with their sizes.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: recvmsg writes into the buffers `msg` names.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, 0) };
    assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
    assert_eq!(&data[..n as usize], b"/dev/ptmx");
    // SAFETY: the kernel filled `control` (msg_controllen says how much);
    // CMSG_FIRSTHDR checks it holds a header.
    let fd = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS, "no descriptor sent");
        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>())
    };
    // SAFETY: the descriptor SCM_RIGHTS just gave this process.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

/// `process.terminal` with `--console-socket`: the terminal's master
/// arrives on the socket (SCM_RIGHTS, as runc sends it) and the program
/// writes to the terminal (isatty true: `\n` becomes `\r\n`); without a
/// console socket a terminal is refused naming the field. Both backends.
#[test]
fn a_terminal_goes_to_the_console_socket() {
    use std::io::Read;
    become_subreaper();
    for backend in backends() {
        let t = tempdir();
        let runc = Runc::new(t.path());
        let b = bundle(
            t.path(),
            "bundle",
            &["/bin/app", "hello"],
            serde_json::json!({ "dev.cabin.backend": backend }),
        );
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.join("config.json")).expect("config")).expect("json");
        v["process"]["terminal"] = serde_json::json!(true);
        std::fs::write(b.join("config.json"), serde_json::to_vec(&v).expect("json")).expect("config");
        let o = runc.out(&["create", "--bundle", b.to_str().unwrap(), "noconsole"]);
        assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("process.terminal"), "{}", describe(&o));

        let sock = t.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let receiver = std::thread::spawn(move || receive_fd(&listener));
        let pid_file = t.path().join("pid");
        let o = runc.out(&[
            "create",
            "--bundle",
            b.to_str().unwrap(),
            "--console-socket",
            sock.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            "tty",
        ]);
        assert!(o.status.success(), "{backend}: {}", describe(&o));
        let mut master = receiver.join().expect("the master");
        let pid: i32 = std::fs::read_to_string(&pid_file).expect("pid").parse().expect("pid");
        runc.ok(&["start", "tty"]);
        let status = reap(pid);
        // The slave is closed with the init: reading ends (EIO) after the output.
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(String::from_utf8_lossy(&out), "hello from cabin, argc=2\r\n", "{backend}");
        assert_eq!(status, 3, "{backend}");
        runc.ok(&["delete", "tty"]);
    }
}

/// `cabin-runc --version`, `features`, and `cabinc oci` as the same thing.
#[test]
fn version_and_features() {
    let t = tempdir();
    let runc = Runc::new(t.path());
    let o = runc.ok(&["--version"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("cabin-runc version "));
    let f: serde_json::Value = serde_json::from_slice(&runc.ok(&["features"]).stdout).expect("features JSON");
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    let o = bounded_output(Command::new(env!("CARGO_BIN_EXE_cabinc")).args(["oci", "features"]));
    assert!(o.status.success(), "{}", describe(&o));
    // runc's commands Cabin does not serve: one clear line, exit 1, also in --log.
    let o = runc.out(&["pause", "id"]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("`pause` is not supported by cabin-runc"),
        "{}",
        describe(&o)
    );
    assert!(std::fs::read_to_string(&runc.log).expect("log").contains("not supported"));
}

// ---------------------------------------------------------------------------
// containerd: Debian's containerd with its own root, state, socket and
// config under a temp dir; its runc shim drives `cabin-runc`.

/// A containerd of this test's own; killed (by its pid) when dropped.
struct Containerd {
    child: std::process::Child,
    dir: PathBuf,
    address: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the containerd this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `name` is on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        .unwrap_or(None)
}

impl Containerd {
    /// Starts containerd; `None` (NOT RUN printed) where it cannot start.
    fn start(t: &Path) -> Option<Containerd> {
        let (Some(bin), Some(_)) = (which("containerd"), which("ctr")) else {
            cabin_tests::not_run(
                "containerd",
                "containerd and ctr are not installed (apt-get install containerd)",
            );
            return None;
        };
        let dir = t.join("ctrd");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let address = dir.join("c.sock");
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{a}\"\n[ttrpc]\n  address = \"{a}.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n",
            d = dir.display(),
            a = address.display()
        );
        std::fs::write(dir.join("config.toml"), config).expect("config");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("log");
        let child = Command::new(bin)
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("XDG_CACHE_HOME", t.join("cache"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let mut c = Containerd { child, dir, address };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if c.ctr(&["version"]).status.success() {
                return Some(c);
            }
            let log = std::fs::read_to_string(c.dir.join("containerd.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
            if let Ok(Some(st)) = c.child.try_wait() {
                cabin_tests::not_run("containerd", &format!("containerd could not start ({st}): {tail}"));
                return None;
            }
            if Instant::now() > deadline {
                cabin_tests::not_run("containerd", &format!("containerd did not answer within 60s: {tail}"));
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.address).args(["--namespace", "cabin"]).args(args);
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        bounded_output(self.ctr_cmd(args).stdin(Stdio::null()))
    }
}

/// Writes `rootfs` as an OCI image layout tarball named `name` (one
/// uncompressed layer); returns the tarball.
fn image_tarball(t: &Path, rootfs: &Path, name: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let lay = t.join("layout");
    let blobs = lay.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let layer = t.join("layer.tar");
    let o = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .output()
        .expect("tar");
    assert!(o.status.success(), "tar: {}", describe(&o));
    let blob = |bytes: &[u8]| -> (String, usize) {
        let d = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&d), bytes).expect("blob");
        (format!("sha256:{d}"), bytes.len())
    };
    let (layer_digest, layer_size) = blob(&std::fs::read(&layer).expect("layer"));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": ["/bin/app"], "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] }
    });
    let (config_digest, config_size) = blob(&serde_json::to_vec(&config).expect("json"));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": [ { "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size } ]
    });
    let (manifest_digest, manifest_size) = blob(&serde_json::to_vec(&manifest).expect("json"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [ {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest" }
        } ]
    });
    std::fs::write(lay.join("index.json"), serde_json::to_vec(&index).expect("json")).expect("index");
    std::fs::write(lay.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let tarball = t.join("image.tar");
    let o = Command::new("tar").arg("-C").arg(&lay).arg("-cf").arg(&tarball).arg(".").output().expect("tar");
    assert!(o.status.success(), "tar: {}", describe(&o));
    tarball
}

/// containerd's runc shim runs an image built here from a local tarball
/// with `cabin-runc`, each case on both backends: stdout and the exit
/// code, `ctr task ps`, `ctr task kill` reaching the program's SIGTERM
/// handler, a seccomp profile applied, a bind mount, a read-only rootfs
/// refusing a write.
#[test]
fn containerd_runs_cabin_containers() {
    let t = tempdir();
    let Some(ctrd) = Containerd::start(t.path()) else { return };
    let rootfs = t.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    compile(t.path(), &rootfs.join("bin/app"), &["-static"]);
    let name = "docker.io/cabin/app:latest";
    let tarball = image_tarball(t.path(), &rootfs, name);
    let o = ctrd.ctr(&["image", "import", "--snapshotter", "native", tarball.to_str().unwrap()]);
    assert!(o.status.success(), "ctr image import: {}", describe(&o));
    let runc = runc_link(t.path());
    let runc_root = t.path().join("runc-root");
    let run_args = |id: &str, extra: &[&str], args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> =
            ["run", "--rm", "--snapshotter", "native", "--runtime", "io.containerd.runc.v2"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        v.push("--runc-binary".into());
        v.push(runc.display().to_string());
        // The runtime's state under the temp dir too (the shim's default is
        // /run/containerd/runc/NAMESPACE, shared with the host's containerd).
        v.push("--runc-root".into());
        v.push(runc_root.display().to_string());
        v.extend(extra.iter().map(|s| s.to_string()));
        v.push(name.into());
        v.push(id.into());
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let ctr_run = |id: &str, extra: &[&str], args: &[&str]| -> Output {
        let a = run_args(id, extra, args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ctrd.ctr(&a)
    };

    for backend in backends() {
        let ann = format!("dev.cabin.backend={backend}");
        let o = ctr_run(&format!("hello-{backend}"), &["--annotation", &ann], &["/bin/app", "hello"]);
        assert_eq!(o.status.code(), Some(3), "{backend}: {}", describe(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from cabin, argc=2\n", "{backend}");
    }

    for backend in backends() {
        let ann = format!("dev.cabin.backend={backend}");
        // kill: SIGTERM reaches the handler; ps lists the init.
        let out_file = t.path().join(format!("kill-{backend}.out"));
        let a = run_args(&format!("killme-{backend}"), &["--annotation", &ann], &["/bin/app"]);
        let mut child = ctrd
            .ctr_cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_file).expect("out"))
            .stderr(std::fs::File::create(t.path().join(format!("kill-{backend}.err"))).expect("err"))
            .spawn()
            .expect("ctr run");
        wait_until("ready", || std::fs::read_to_string(&out_file).unwrap_or_default().contains("ready"));
        let ps = ctrd.ctr(&["task", "ps", &format!("killme-{backend}")]);
        assert!(ps.status.success(), "ctr task ps: {}", describe(&ps));
        let listed = String::from_utf8_lossy(&ps.stdout);
        assert!(
            listed
                .lines()
                .skip(1)
                .any(|l| l.split_whitespace().next().is_some_and(|p| p.parse::<u32>().is_ok())),
            "{listed}"
        );
        // ctr task exec: another program in the running container.
        let e =
            ctrd.ctr(&["task", "exec", "--exec-id", "e1", &format!("killme-{backend}"), "/bin/app", "hello"]);
        assert_eq!(
            String::from_utf8_lossy(&e.stdout),
            "hello from cabin, argc=2\n",
            "{backend}: {}",
            describe(&e)
        );
        assert_eq!(e.status.code(), Some(3), "{backend}: {}", describe(&e));
        let k = ctrd.ctr(&["task", "kill", &format!("killme-{backend}")]);
        assert!(k.status.success(), "ctr task kill: {}", describe(&k));
        let status = bounded_wait(&mut child, "ctr run after ctr task kill");
        assert_eq!(std::fs::read_to_string(&out_file).expect("out"), "ready\ngot signal 15\n");
        assert_eq!(
            status.code(),
            Some(7),
            "{}",
            std::fs::read_to_string(t.path().join(format!("kill-{backend}.err"))).unwrap_or_default()
        );

        // seccomp: a profile denying mkdir with EPERM.
        let profile = t.path().join("seccomp.json");
        std::fs::write(
            &profile,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        )
        .expect("profile");
        let target = t.path().join("made-by-the-container");
        let prof = format!("--seccomp-profile={}", profile.display());
        let o = ctr_run(
            &format!("seccomp-{backend}"),
            &["--annotation", &ann, "--seccomp", &prof],
            &["/bin/app", "mkdir", target.to_str().unwrap()],
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "mkdir: Operation not permitted\n",
            "{}",
            describe(&o)
        );
        assert_eq!(o.status.code(), Some(1));

        // A bind mount (read-only) at /data: its file is readable there, a
        // write under it is EROFS; without the mount /data does not exist.
        let shared = t.path().join("shared");
        std::fs::create_dir_all(&shared).expect("mkdir");
        let _ = std::fs::remove_file(shared.join("new"));
        std::fs::write(shared.join("file"), "bound\n").expect("write");
        let mount = format!("type=bind,src={},dst=/data,options=rbind:ro", shared.display());
        let o = ctr_run(
            &format!("bind-{backend}"),
            &["--annotation", &ann, "--mount", &mount],
            &["/bin/app", "cat", "/data/file"],
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "bound\n", "{}", describe(&o));
        assert_eq!(o.status.code(), Some(0));
        let o = ctr_run(
            &format!("nobind-{backend}"),
            &["--annotation", &ann],
            &["/bin/app", "cat", "/data/file"],
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "open /data/file: No such file or directory\n",
            "{}",
            describe(&o)
        );
        let o = ctr_run(
            &format!("bindro-{backend}"),
            &["--annotation", &ann, "--mount", &mount],
            &["/bin/app", "write", "/data/new"],
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "write /data/new: Read-only file system\n",
            "{}",
            describe(&o)
        );
        assert!(!shared.join("new").exists());
        // The host path of the bind's source is not in the container's view.
        let host = shared.join("file");
        let o = ctr_run(
            &format!("hostpath-{backend}"),
            &["--annotation", &ann, "--mount", &mount],
            &["/bin/app", "cat", host.to_str().unwrap()],
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("No such file or directory"), "{}", describe(&o));

        // A read-only rootfs refuses a write (EROFS) that a writable one takes.
        let o = ctr_run(
            &format!("ro-{backend}"),
            &["--annotation", &ann, "--read-only"],
            &["/bin/app", "write", "/new-file"],
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "write /new-file: Read-only file system\n",
            "{}",
            describe(&o)
        );
        assert_eq!(o.status.code(), Some(1));
        let o =
            ctr_run(&format!("rw-{backend}"), &["--annotation", &ann], &["/bin/app", "write", "/new-file"]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "wrote /new-file\n", "{}", describe(&o));
        assert_eq!(o.status.code(), Some(0), "a write to a writable rootfs: {}", describe(&o));
    }
}

/// podman (`--runtime cabin-runc`, its own root and runroot under a temp
/// dir, vfs storage, no network) runs the same image from the tarball:
/// stdout and the exit code on both backends, a seccomp profile applied.
/// NOT RUN without podman.
#[test]
fn podman_runs_cabin_containers() {
    let Some(podman) = which("podman") else {
        cabin_tests::not_run("podman", "podman is not installed (apt-get install podman)");
        return;
    };
    let t = tempdir();
    let rootfs = t.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    compile(t.path(), &rootfs.join("bin/app"), &["-static"]);
    let tarball = image_tarball(t.path(), &rootfs, "docker.io/cabin/app:latest");
    let runc = runc_link(t.path());
    let podman_run = |extra: &[&str], args: &[&str]| -> Output {
        let mut c = Command::new(&podman);
        c.arg("--root").arg(t.path().join("proot")).arg("--runroot").arg(t.path().join("prun"));
        c.args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        c.arg("--runtime").arg(&runc).env("XDG_CACHE_HOME", t.path().join("cache"));
        c.args(["run", "--rm", "--network", "none"]).args(extra);
        c.arg(format!("oci-archive:{}", tarball.display())).args(args);
        bounded_output(c.stdin(Stdio::null()))
    };
    for backend in backends() {
        let ann = format!("dev.cabin.backend={backend}");
        let o = podman_run(&["--annotation", &ann], &["hello"]);
        assert_eq!(o.status.code(), Some(3), "{backend}: {}", describe(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from cabin, argc=2\n", "{backend}");
    }
    let profile = t.path().join("seccomp.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .expect("profile");
    let target = t.path().join("made-by-the-container");
    let opt = format!("seccomp={}", profile.display());
    let o = podman_run(&["--security-opt", &opt], &["mkdir", target.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "mkdir: Operation not permitted\n", "{}", describe(&o));
    assert_eq!(o.status.code(), Some(1));
}
