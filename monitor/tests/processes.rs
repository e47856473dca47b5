//! Child processes (issue 14, docs/processes.md): C programs that fork,
//! wait, pipe and signal, run natively and confined; output and exit status
//! must be equal. Process backend only for now: the KVM backend cannot make
//! child processes yet (its fork and exec are `ENOSYS`, which
//! `exec_not_yet` checks), so its tests are owed, not here
//! (docs/processes.md, "Status").
//!
//! All cases run one after the other in one test, so that the check "no
//! host process of the run is left" (every confined process is a child of
//! this test process) sees no other test's processes.

mod common;

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use common::Backend;

/// Runs `img` confined with `args`; (stdout, exit status).
fn confined(b: Backend, img: &[u8], args: &[&str]) -> (String, i32) {
    let t = tempfile::tempdir().expect("tempdir");
    let path = t.path().join("out");
    let out = std::fs::File::create(&path).expect("output file");
    let cfg = cabin_monitor::RunConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..Default::default()
    };
    let o = b.run(img, &cfg).expect("the monitor runs the program");
    (std::fs::read_to_string(&path).expect("read the output"), o.exit_code)
}

fn native(exe: &Path, args: &[&str]) -> (String, i32) {
    let o = Command::new(exe).args(&args[1..]).output().expect("run natively");
    (String::from_utf8_lossy(&o.stdout).into_owned(), o.status.code().unwrap_or(-1))
}

/// Host processes whose parent is this test process and that are not
/// zombies (each confined process is one).
fn live_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
        if field("PPid:").as_deref() == Some(me.as_str())
            && !field("State:").unwrap_or_default().starts_with('Z')
        {
            found.push(format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                field("State:").unwrap_or_default()
            ));
        }
    }
    found
}

const CASES: &[&str] =
    &["fork", "cow", "pipe", "statuses", "many", "nested", "wnohang", "vfork", "sigchld", "orphan", "kill"];

fn cases_equal_native(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("procs", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    for case in CASES {
        let args = ["procs", case];
        let got = confined(b, &img, &args);
        let want = native(&exe, &args);
        assert_eq!(got, want, "confined vs native, case {case}");
        assert_eq!(live_children(), Vec::<String>::new(), "case {case} left processes behind");
    }
}

/// A fork bomb under `processes = 8` is stopped with the limit's message
/// and a `limit` audit record, and nothing of it remains.
fn fork_bomb_stops_at_the_limit(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("attack_forkbomb", t.path()) else { return };
    let bomb = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let audit = t.path().join("audit.jsonl");
    let policy = "version = 1\n[default]\naction = \"allow\"\n[limits]\nprocesses = 8\n";
    let cfg = cabin_monitor::RunConfig {
        args: vec!["attack_forkbomb".into()],
        quiet: true,
        gate: cabin_monitor::GateConfig {
            policy: Some(cabin_policy::Policy::parse("p.toml", policy).expect("the policy parses")),
            trace: cabin_monitor::trace::TraceOptions { audit: Some(audit.clone()), ..Default::default() },
            ..Default::default()
        },
        ..Default::default()
    };
    let o = b.run(&bomb, &cfg).expect("the monitor runs the program");
    assert_eq!(o.exit_code, 137, "stopped by the limit: {:?}", o.reason);
    let text = std::fs::read_to_string(&audit).expect("the audit log");
    let limit = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["type"] == "limit")
        .unwrap_or_else(|| panic!("no limit record in {text}"));
    assert_eq!((limit["limit"].as_str(), limit["max"].as_str()), (Some("processes"), Some("0x8")), "{limit}");
    assert_eq!(live_children(), Vec::<String>::new(), "the fork bomb left processes behind");
}

/// A child that scribbles over its ring reaches only its own: its parent
/// is still served, its memory untouched; `kill` outside the tree is
/// `ESRCH`.
fn a_child_cannot_reach_its_parents_ring(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("attack_fork", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let (out, code) = confined(b, &img, &["attack_fork"]);
    assert_eq!(
        (out.as_str(), code),
        (
            "child reaped: 1\nparent still served; its data: the parent's data\nkill outside the tree refused: 4 of 4\n",
            0
        ),
        "confined"
    );
    assert_eq!(live_children(), Vec::<String>::new(), "the attack left processes behind");
}

/// Runs `img` confined with `args`, reading (and executing from) `dir`;
/// (stdout, stderr, exit status).
fn confined_in(b: Backend, img: &[u8], args: &[&str], dir: &Path) -> (String, String, i32) {
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let out = std::fs::File::create(&out_path).expect("output file");
    let err = std::fs::File::create(&err_path).expect("error file");
    let cfg = cabin_monitor::RunConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        quiet: true,
        allow_read: vec![dir.to_path_buf()],
        allow_write: vec![dir.join("w")],
        stdio: Some([0, out.as_raw_fd(), err.as_raw_fd()]),
        ..Default::default()
    };
    let o = b.run(img, &cfg).expect("the monitor runs the program");
    let read = |p: &Path| std::fs::read_to_string(p).expect("read the output");
    (read(&out_path), read(&err_path), o.exit_code)
}

fn executable(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `execve` (docs/processes.md, "execve"): fork+exec+wait of a second
/// image, `posix_spawn`, vfork+exec, exec from a thread, `O_CLOEXEC`, and
/// the failures (`ENOENT`, `EACCES`, `ENOEXEC`, `E2BIG`, `EFAULT`), equal
/// to native (natively the plain ELF is exec'd, confined its image).
fn exec_equal_native(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("exec", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let d = t.path().join("w");
    std::fs::create_dir(&d).expect("mkdir");
    let image = t.path().join("exec.cabin");
    executable(&image, &img);
    let dir = d.to_str().expect("utf-8");
    let want = native(&exe, &["exec", "run", exe.to_str().expect("utf-8"), dir]);
    let (out, err, code) =
        confined_in(b, &img, &["exec", "run", image.to_str().expect("utf-8"), dir], t.path());
    assert_eq!((out, code), want, "confined vs native; stderr: {err}");
    assert_eq!(live_children(), Vec::<String>::new(), "exec left processes behind");
}

/// An exec cannot leave the allowed trees, run a modified image, a plain or
/// dynamic ELF, and argv changing under another thread harms no one.
fn exec_attacks(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("exec", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let d = t.path().join("w");
    std::fs::create_dir(&d).expect("mkdir");
    let image = t.path().join("exec.cabin");
    executable(&image, &img);
    // The same image with one byte of its last page changed: its recorded
    // measurement no longer checks.
    let mut modified = img.clone();
    let at = modified.len() / 2;
    modified[at] ^= 0x5a;
    executable(&d.join("modified.cabin"), &modified);
    executable(&d.join("plain"), &std::fs::read(&exe).expect("read"));
    let dynamic = t.path().join("dynamic");
    let built = Command::new("gcc")
        .args(["-x", "c", "-", "-o"])
        .arg(d.join("dynamic"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(b"int main(void){return 0;}\n")?;
            c.wait()
        });
    assert!(built.map(|s| s.success()).unwrap_or(false), "gcc builds a dynamic program");
    let _ = dynamic;
    let dir = d.to_str().expect("utf-8");
    let (out, err, code) =
        confined_in(b, &img, &["exec", "attack", image.to_str().expect("utf-8"), dir], t.path());
    assert_eq!(
        (out.as_str(), code),
        (
            "outside the trees: EACCES\nescape with ..: EACCES\nmodified image: ENOEXEC\ndynamic ELF: ENOEXEC\n\
             plain static ELF: ENOEXEC\nattack done\n",
            0
        ),
        "stderr: {err}"
    );
    // The one-line reasons for the dynamic ELF and the modified image go
    // to the monitor's stderr (as `cabinc run`'s own lines), not the
    // program's: seen in this test's output.
    assert_eq!(live_children(), Vec::<String>::new(), "the exec attacks left processes behind");
}

/// The root process's exec is not built yet: `ENOSYS`, and the root goes
/// on (docs/processes.md, "Status"). On KVM every exec (and fork) is
/// `ENOSYS`.
fn exec_not_yet(b: Backend) {
    if !b.available("exec_not_yet") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("exec", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let image = t.path().join("exec.cabin");
    executable(&image, &img);
    std::fs::create_dir(t.path().join("w")).expect("mkdir");
    let (out, err, code) = confined_in(b, &img, &["exec", "root", image.to_str().expect("utf-8")], t.path());
    let want = match b {
        Backend::Process => "root exec: ENOSYS\nhello argc=2 [hello] CABIN_T=(none) fd5=closed fd6=closed usr1=default usr2=default\n",
        Backend::Kvm => "root exec: ENOSYS\nfork: ENOSYS\n",
    };
    assert_eq!((out.as_str(), code), (want, 0), "stderr: {err}");
    assert_eq!(live_children(), Vec::<String>::new(), "left processes behind");
}

/// A child sends its parent a blocked signal 3000 times (three rounds):
/// every kill makes the monitor wake the parent with its real-time wake
/// signal, queued by the host, each taken in the resume window of the
/// previous one's return. Before the fix the nested handlers went one
/// kernel frame further down the libos's alternate stack each time until
/// the kernel killed the parent with a SIGSEGV (every run of this failed
/// on s25-base); now output and status equal the native run's. Process
/// backend only: the kernel handlers and their return are its alone.
fn a_storm_of_wakes_does_not_overflow_the_signal_stack(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("wakestorm", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let args = ["wakestorm", "3"];
    assert_eq!(confined(b, &img, &args), native(&exe, &args), "confined vs native");
    assert_eq!(live_children(), Vec::<String>::new(), "the storm left processes behind");
}

/// Process backend: every case, then the fork bomb; then KVM's exec. (KVM: owed, see the
/// module docs.)
#[test]
fn process() {
    cases_equal_native(Backend::Process);
    exec_equal_native(Backend::Process);
    exec_attacks(Backend::Process);
    exec_not_yet(Backend::Process);
    // KVM (in this one test: a test running beside it would make host
    // processes, gcc's, that the checks above would count): exec and fork
    // are ENOSYS there, the program goes on.
    exec_not_yet(Backend::Kvm);
    a_child_cannot_reach_its_parents_ring(Backend::Process);
    fork_bomb_stops_at_the_limit(Backend::Process);
    a_storm_of_wakes_does_not_overflow_the_signal_stack(Backend::Process);
}
