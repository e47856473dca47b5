//! Child processes (issue 14, docs/processes.md): C programs that fork,
//! wait, pipe and signal, run natively and confined; output and exit status
//! must be equal, on both backends (on KVM each child is a new VM).
//!
//! All cases run one after the other in one test, so that the check "no
//! host process of the run is left" (every confined process is a child of
//! this test process) sees no other test's processes.

mod common;

use std::path::Path;
use std::process::Command;

use common::{confined, executable, live_children, native, Backend};

/// What a KVM run could leave behind in this process: its threads (every
/// vCPU and run thread) and its KVM descriptors (`anon_inode:kvm-vm`,
/// `kvm-vcpu:N`).
#[derive(Debug, PartialEq, Eq)]
struct Held {
    threads: usize,
    kvm_fds: usize,
}

fn held() -> Held {
    let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
    let kvm_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("anon_inode:kvm"))
                })
                .count()
        })
        .unwrap_or(0);
    Held { threads, kvm_fds }
}

/// Checked from outside after a run: no host process of it, and (KVM) no
/// more threads or KVM descriptors than before it (`before`).
fn nothing_left(before: &Held, what: &str) {
    assert_eq!(live_children(), Vec::<String>::new(), "{what} left processes behind");
    // A joined thread leaves /proc/self/task a moment later.
    let mut now = held();
    for _ in 0..50 {
        if now.threads <= before.threads && now.kvm_fds == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        now = held();
    }
    assert!(now.threads <= before.threads, "{what} left threads behind: {now:?}, before {before:?}");
    assert_eq!(now.kvm_fds, 0, "{what} left KVM descriptors open");
}

/// The tests of this file one at a time: each counts this process's
/// threads and children.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const CASES: &[&str] = &[
    "fork",
    "cow",
    "pipe",
    "statuses",
    "many",
    "nested",
    "wnohang",
    "vfork",
    "vforkwait",
    "sigchld",
    "chldorder",
    "orphan",
    "kill",
    "snapshot",
    "threadfork",
];

fn cases_equal_native(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("procs", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let before = held();
    for case in CASES {
        let args = ["procs", case];
        let got = confined(b, &img, &args);
        let want = native(&exe, &args);
        assert_eq!(got, want, "confined vs native, case {case}");
        nothing_left(&before, &format!("case {case}"));
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
    let before = held();
    let o = b.run(&bomb, &cfg).expect("the monitor runs the program");
    assert_eq!(o.exit_code, 137, "stopped by the limit: {:?}", o.reason);
    let text = std::fs::read_to_string(&audit).expect("the audit log");
    let limit = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["type"] == "limit")
        .unwrap_or_else(|| panic!("no limit record in {text}"));
    assert_eq!((limit["limit"].as_str(), limit["max"].as_str()), (Some("processes"), Some("0x8")), "{limit}");
    nothing_left(&before, "the fork bomb");
}

/// A child that scribbles over its ring reaches only its own: its parent
/// is still served, its memory untouched; `kill` outside the tree is
/// `ESRCH`.
fn a_child_cannot_reach_its_parents_ring(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("attack_fork", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let ring = match b {
        Backend::Process => "0x200000001000",
        Backend::Kvm => "0x7ff000001000",
    };
    let before = held();
    let (out, code) = confined(b, &img, &["attack_fork", ring]);
    assert_eq!(
        (out.as_str(), code),
        (
            "child reaped: 1\nparent still served; its data: the parent's data\nkill outside the tree refused: 4 of 4\n",
            0
        ),
        "confined"
    );
    nothing_left(&before, "the attack");
}

/// Runs `img` confined with `args`, reading (and executing from) `dir`;
/// (stdout, stderr, exit status).
fn confined_in(b: Backend, img: &[u8], args: &[&str], dir: &Path) -> (String, String, i32) {
    confined_with(b, img, args, dir, false)
}

/// [`confined_in`], with `[paths] exec = "images"` when `images_only`.
fn confined_with(
    b: Backend,
    img: &[u8],
    args: &[&str],
    dir: &Path,
    images_only: bool,
) -> (String, String, i32) {
    let cfg = cabin_monitor::RunConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        quiet: true,
        allow_read: vec![dir.to_path_buf()],
        allow_write: vec![dir.join("w")],
        image_cache: Some(dir.join("cache")),
        exec_images_only: images_only,
        ..Default::default()
    };
    common::confined_captured(b, img, cfg, dir)
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
    let before = held();
    let want = native(&exe, &["exec", "run", exe.to_str().expect("utf-8"), dir]);
    let (out, err, code) =
        confined_in(b, &img, &["exec", "run", image.to_str().expect("utf-8"), dir], t.path());
    assert_eq!((out, code), want, "confined vs native; stderr: {err}");
    nothing_left(&before, "exec");
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
    let before = held();
    let (out, err, code) =
        confined_in(b, &img, &["exec", "attack", image.to_str().expect("utf-8"), dir], t.path());
    assert_eq!(
        (out.as_str(), code),
        (
            "outside the trees: EACCES\nescape with ..: EACCES\nmodified image: ENOEXEC\ndynamic ELF: ENOEXEC\n\
             hello argc=2 [hello] CABIN_T=(none) fd5=closed fd6=closed usr1=default usr2=default\n\
             plain static ELF: exited 7\nanother process's exe: EACCES\nthe parent's exe: EACCES\nattack done\n",
            0
        ),
        "stderr: {err}"
    );
    // The one-line reasons for the dynamic ELF and the modified image go
    // to the monitor's stderr (as `cabinc run`'s own lines), not the
    // program's: seen in this test's output.
    nothing_left(&before, "the exec attacks");
}

/// `execve` of a plain static executable (through the image cache) and of
/// `#!` scripts (Linux's argv, nesting, `ELOOP`, the failures), equal to
/// native; the cache: the second run builds nothing (its entry's mtime is
/// unchanged), a corrupted entry and a forged one (the valid image of
/// another input under the key) are refused and rebuilt; under
/// `exec = "images"` a plain executable is `ENOEXEC`.
fn exec_plain_equal_native(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("exec", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let d = t.path().join("w");
    std::fs::create_dir(&d).expect("mkdir");
    // The plain target: the program with one byte more (another input than
    // the one `img` was built from, the same behaviour).
    let mut bytes = std::fs::read(&exe).expect("read");
    bytes.push(0);
    let target = t.path().join("plain");
    executable(&target, &bytes);
    let dir = d.to_str().expect("utf-8");
    let target_s = target.to_str().expect("utf-8");
    let args = ["exec", "plain", target_s, dir];
    let want = native(&target, &args);
    let (out, err, code) = confined_in(b, &img, &args, t.path());
    assert_eq!((out, code), want.clone(), "confined vs native; stderr: {err}");
    let cache = t.path().join("cache");
    let entries = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> =
            std::fs::read_dir(&cache).expect("the cache").map(|e| e.expect("entry").path()).collect();
        v.sort();
        v
    };
    let list = entries();
    assert_eq!(list.len(), 1, "one entry (the second exec was a hit): {list:?}");
    let entry = list[0].clone();
    let name = entry.file_name().expect("name").to_string_lossy().into_owned();
    assert!(
        name.starts_with(
            &cabin_rewriter::pipeline::input_sha256(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
        "keyed by the input's hash: {name}"
    );
    let mtime = || std::fs::metadata(&entry).and_then(|m| m.modified()).expect("mtime");
    let before = mtime();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (out, err, code) = confined_in(b, &img, &args, t.path());
    assert_eq!((out, code), want.clone(), "second run; stderr: {err}");
    assert_eq!(mtime(), before, "the second run rebuilt the entry");
    // A corrupted entry: refused, said, rebuilt.
    let mut bad = std::fs::read(&entry).expect("entry");
    let at = bad.len() / 2;
    bad[at] ^= 0x5a;
    std::fs::write(&entry, &bad).expect("corrupt");
    let (out, err, code) = confined_in(b, &img, &args, t.path());
    assert_eq!((out, code), want.clone(), "corrupted entry; stderr: {err}");
    // (The `cabin: warning: ... refused` line goes to the monitor's own
    // stderr, this test's output; cabinc's tests check its words.)
    assert_ne!(std::fs::read(&entry).expect("entry"), bad, "the corrupted entry is replaced");
    // A forged entry: a valid image, of another input, under the key.
    std::fs::write(&entry, &img).expect("forge");
    let (out, err, code) = confined_in(b, &img, &args, t.path());
    assert_eq!((out, code), want, "forged entry; stderr: {err}");
    assert_ne!(std::fs::read(&entry).expect("entry"), img, "the forged entry is replaced");
    // `exec = "images"`: the plain executable (and a script whose
    // interpreter it is) is ENOEXEC.
    let (out, err, code) = confined_with(b, &img, &args, t.path(), true);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.starts_with("plain ELF: ENOEXEC\nplain ELF: exited 0\nplain ELF again: ENOEXEC\n")
            && out.contains("\nscript: ENOEXEC\n")
            && out.contains("\nscript loop: ELOOP\n"),
        "{out}"
    );
    assert_eq!(live_children(), Vec::<String>::new(), "left processes behind");
}

/// The root process's own exec: the root's domain is replaced, same pid,
/// the new image's output and status equal to native.
fn root_exec(b: Backend) {
    if !b.available("root_exec") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let Some(exe) = common::compile("exec", t.path()) else { return };
    let img = common::rewrite(&std::fs::read(&exe).expect("read the program"));
    let image = t.path().join("exec.cabin");
    executable(&image, &img);
    std::fs::create_dir(t.path().join("w")).expect("mkdir");
    let (out, err, code) = confined_in(b, &img, &["exec", "root", image.to_str().expect("utf-8")], t.path());
    let want = native(&exe, &["exec", "root", exe.to_str().expect("utf-8")]);
    assert_eq!((out, code), want, "{b:?} stderr: {err}");
    {
        // A chain of 30 images in the root, one pid: equal to native, and
        // the monitor keeps no descriptor or thread of the replaced ones.
        let fds = || std::fs::read_dir("/proc/self/fd").expect("fds").count();
        let threads = || std::fs::read_dir("/proc/self/task").expect("tasks").count();
        let (fds0, threads0) = (fds(), threads());
        let want = native(&exe, &["exec", "chain", "30", exe.to_str().expect("utf-8")]);
        let (out, err, code) =
            confined_in(b, &img, &["exec", "chain", "30", image.to_str().expect("utf-8")], t.path());
        assert_eq!((out, code), want, "stderr: {err}");
        assert!(fds() <= fds0, "descriptors left: {} > {fds0}", fds());
        assert!(threads() <= threads0 + 1, "threads left: {} > {threads0}", threads());
    }
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

/// KVM: every case, each child a new VM (in one test, as the process
/// backend's: the checks of what is left count this process's threads).
#[test]
fn kvm() {
    if !Backend::Kvm.available("processes::kvm") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cases_equal_native(Backend::Kvm);
    exec_equal_native(Backend::Kvm);
    exec_attacks(Backend::Kvm);
    exec_plain_equal_native(Backend::Kvm);
    root_exec(Backend::Kvm);
    a_child_cannot_reach_its_parents_ring(Backend::Kvm);
    fork_bomb_stops_at_the_limit(Backend::Kvm);
}

/// Process backend: every case, then the fork bomb.
#[test]
fn process() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cases_equal_native(Backend::Process);
    exec_equal_native(Backend::Process);
    exec_attacks(Backend::Process);
    exec_plain_equal_native(Backend::Process);
    root_exec(Backend::Process);
    a_child_cannot_reach_its_parents_ring(Backend::Process);
    fork_bomb_stops_at_the_limit(Backend::Process);
    a_storm_of_wakes_does_not_overflow_the_signal_stack(Backend::Process);
}
