//! Views of the file system (issue 20; docs/views.md), end to end on both
//! backends: the path probe (tests/programs/paths.c) run under `--root`,
//! `--bind` (read-write and read-only), `--tmpfs` and `--chdir`
//! (`RunConfig::view`).
//!
//! Fixture (fresh for every test), T a temp dir:
//!
//! ```text
//! T/secret                  outside the view: SECRET, never read or changed
//! T/root/                   --root: etc/passwd "inside", work/, abs -> /etc/passwd,
//!                           up -> ../../../../etc/passwd, chain -> abs, magic -> /proc/self/root/etc/passwd
//! T/data/                   --bind T/data:/data: f "data", out -> /etc/hostname, rel -> ../secret
//! T/ro/                     --bind T/ro:/ro:ro: f "ro"
//! ```
//!
//! The root-only cases also run natively in a `chroot` of T/root (the test
//! runs as root; elsewhere the native half says NOT RUN) and must print the
//! same. The bind and tmpfs cases check their expected lines (what Linux
//! answers for bind mounts and a tmpfs).

#[macro_use]
mod common;
#[path = "attacks/pathprobe.rs"]
#[allow(dead_code)]
mod pathprobe;

use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use cabin_monitor::{Bind, RunConfig, Tmpfs, View};
use common::Backend;

const SECRET: &str = "SECRET-VIEW";

fn fixture(t: &Path) {
    for d in ["root/etc", "root/work", "root/data", "root/ro", "data", "ro"] {
        std::fs::create_dir_all(t.join(d)).expect("fixture dir");
    }
    for (p, c) in [("secret", SECRET), ("root/etc/passwd", "inside"), ("data/f", "data"), ("ro/f", "ro")] {
        std::fs::write(t.join(p), c).expect("fixture file");
    }
    for (target, link) in [
        ("/etc/passwd", "root/abs"),
        ("../../../../etc/passwd", "root/up"),
        ("abs", "root/chain"),
        ("/proc/self/root/etc/passwd", "root/magic"),
        ("/etc/hostname", "data/out"),
        ("../secret", "data/rel"),
    ] {
        symlink(target, t.join(link)).expect("fixture symlink");
    }
}

fn view(t: &Path) -> View {
    View {
        root: Some(t.join("root")),
        binds: vec![
            Bind { src: t.join("data"), dst: "/data".into(), readonly: false },
            Bind { src: t.join("ro"), dst: "/ro".into(), readonly: true },
        ],
        ..View::default()
    }
}

fn run(b: Backend, steps: &str, v: View) -> pathprobe::Outcome {
    let o = pathprobe::run(b, steps, RunConfig { view: Some(v), ..RunConfig::default() });
    assert!(o.lines.iter().all(|l| !l.contains(SECRET)), "a secret leaked: {:?}", o.lines);
    o
}

/// The probe natively in a chroot of `root` (as root only): its lines.
fn native_chroot(root: &Path, steps: &str, cwd: &str) -> Option<Vec<String>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        cabin_tests::not_run("native chroot", "needs root");
        return None;
    }
    let exe = pathprobe_exe()?;
    // A hard link opens nothing for writing: a fork in another test's
    // thread cannot hold it open (ETXTBSY at exec); a copy is the fallback.
    if std::fs::hard_link(exe, root.join("probe")).is_err() {
        std::fs::copy(exe, root.join("probe")).expect("copy the probe into the root");
    }
    let root_c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).expect("root path");
    let cwd_c = std::ffi::CString::new(cwd).expect("cwd");
    let mut cmd = std::process::Command::new("/probe");
    cmd.args(steps.split(' '));
    // SAFETY: chroot and chdir are async-signal-safe and read only the two
    // C strings made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(cwd_c.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut tries = 0;
    let o = loop {
        match cmd.output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => break r.expect("run the probe in a chroot"),
        }
    };
    std::fs::remove_file(root.join("probe")).expect("remove the probe");
    Some(String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
}

fn pathprobe_exe() -> Option<&'static PathBuf> {
    static EXE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let dir = common::scratch_dir("views-native");
        common::compile("paths", &dir)
    })
    .as_ref()
}

fn ready() -> bool {
    if pathprobe::image().is_none() {
        cabin_tests::not_run("gcc", "no static gcc");
        return false;
    }
    true
}

/// `--root`: `..` past `/`, absolute and relative symlinks and a chain stay
/// inside; the host's files do not exist (ENOENT, no denial); getcwd is the
/// view's. Equal to a native chroot.
fn root_is_slash(b: Backend) {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    fixture(t.path());
    let root_only = View { root: Some(t.path().join("root")), ..View::default() };
    for (steps, want) in [
        ("read /etc/passwd", "ok inside"),
        ("read /../../../etc/passwd", "ok inside"),
        ("read /abs", "ok inside"),
        ("read /up", "ok inside"),
        ("read /chain", "ok inside"),
        ("read /magic", "err 2"),
        ("read /etc/hostname", "err 2"),
        ("stat /usr/bin/env", "err 2"),
        ("read /proc/self/status", "err 2"),
        ("chdir /work -- getcwd", "ok /work"),
        ("chdir /work -- chdir ../.. -- getcwd", "ok /"),
        ("chdir /work -- read ../etc/passwd", "ok inside"),
    ] {
        let o = run(b, steps, root_only.clone());
        assert_eq!(o.last(), want, "{steps}: {:?}", o.lines);
        assert!(o.denials.is_empty(), "{steps}: not a denial: {:?}", o.denials);
        if let Some(native) = native_chroot(&t.path().join("root"), steps, "/") {
            assert_eq!(o.lines, native, "{steps}: confined and native (chroot) differ");
        }
    }
    assert_eq!(std::fs::read_to_string(t.path().join("secret")).expect("secret"), SECRET);
}

/// `--bind` read-write and read-only: reached at its view path, `..` at the
/// mount point is its parent, a symlink out of a bind is refused (EACCES and
/// an audit record, as for an allowed tree), a change under `:ro` is EROFS,
/// rename/link across binds EXDEV, a mount point EBUSY.
fn binds(b: Backend) {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    fixture(t.path());
    for (steps, want, denied) in [
        ("read /data/f", "ok data", false),
        ("read /data/../etc/passwd", "ok inside", false),
        ("read /ro/f", "ok ro", false),
        ("read /data/out", "err 13", true),
        ("read /data/rel", "err 13", true),
        ("write /ro/f x", "err 30", true),
        ("write /ro/new x", "err 30", true),
        ("mkdir /ro/d", "err 30", true),
        ("write /data/new hello -- read /data/new", "ok hello", false),
        ("rename /data/f /etc/f", "err 18", false),
        ("link /data/f /ro/f2", "err 30", true),
        ("link /data/f /work/f", "err 18", false),
        ("rmdir /data", "err 16", false),
        ("chdir /data -- getcwd", "ok /data", false),
    ] {
        let o = run(b, steps, view(t.path()));
        assert_eq!(o.last(), want, "{steps}: {:?}", o.lines);
        assert_eq!(!o.denials.is_empty(), denied, "{steps}: {:?}", o.denials);
    }
    assert_eq!(
        std::fs::read_to_string(t.path().join("data/new")).expect("written through the bind"),
        "hello"
    );
    assert!(!t.path().join("ro/new").exists() && !t.path().join("root/etc/f").exists());
    assert_eq!(std::fs::read_to_string(t.path().join("data/f")).expect("data/f"), "data");
}

/// `--tmpfs`: memory-backed, empty, bounded (ENOSPC at its size), gone at
/// the end; `--chdir` starts the program there; without `--root` the root
/// is empty and read-only.
fn tmpfs_and_chdir(b: Backend) {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    fixture(t.path());
    let v = View {
        tmpfs: vec![Tmpfs { dst: "/tmp".into(), size: 256 << 10 }],
        chdir: Some("/tmp".into()),
        ..View::default()
    };
    let o = run(b, "getcwd -- write a hi -- read /tmp/a -- fill /tmp/big 1048576", v.clone());
    assert_eq!(o.lines[..3], ["ok /tmp", "ok", "ok hi"], "{:?}", o.lines);
    let last = o.last().to_string();
    let written: u64 =
        last.strip_prefix("err 28 after ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{last}"));
    assert!(written <= 256 << 10, "wrote {written} bytes into a 256K tmpfs");
    // A second run sees a fresh, empty tmpfs; the root is read-only.
    let o = run(b, "read /tmp/a -- write /x y -- stat /data", v);
    assert_eq!(o.lines, ["err 2", "err 30", "err 2"], "{:?}", o.lines);
    // With binds and a root: chdir into a bind.
    let mut v = view(t.path());
    v.chdir = Some("/data".into());
    let o = run(b, "getcwd -- read f", v);
    assert_eq!(o.lines, ["ok /data", "ok data"]);
}

/// The trace names both paths: `path` the program's (view) path, `host_path`
/// where it lies on the host; records stay valid against the schema.
fn trace_names_view_and_host_paths(b: Backend) {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    fixture(t.path());
    let trace = t.path().join("run.jsonl");
    let out = t.path().join("out");
    let fo = std::fs::File::create(&out).expect("stdout file");
    let cfg = RunConfig {
        args: ["paths", "read", "/data/f", "--", "write", "/ro/f", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        view: Some(view(t.path())),
        quiet: true,
        stdio: Some([0, std::os::fd::AsRawFd::as_raw_fd(&fo), 2]),
        gate: cabin_monitor::GateConfig {
            trace: cabin_monitor::trace::TraceOptions {
                trace: Some(Some(trace.clone())),
                format: cabin_monitor::trace::TraceFormat::Jsonl,
                audit: None,
                audit_cap: 0,
            },
            ..Default::default()
        },
        ..RunConfig::default()
    };
    let o = b.run(pathprobe::image().expect("image"), &cfg).expect("run");
    assert_eq!(o.exit_code, 0);
    assert_eq!(std::fs::read_to_string(&out).expect("out"), "ok data\nerr 30\n");
    let schema = cabin_tests::json_schema::trace_schema();
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
        .expect("trace")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    for r in &recs {
        assert!(schema.is_valid(r), "{r}");
    }
    let opens: Vec<_> = recs.iter().filter(|r| r["name"] == "openat").collect();
    assert_eq!(opens.len(), 2, "{recs:?}");
    let host = |p: &str| t.path().join(p).display().to_string();
    assert_eq!(
        (opens[0]["path"].as_str(), opens[0]["host_path"].as_str()),
        (Some("/data/f"), Some(&*host("data/f")))
    );
    assert_eq!(
        (opens[1]["path"].as_str(), opens[1]["host_path"].as_str()),
        (Some("/ro/f"), Some(&*host("ro/f")))
    );
    assert_eq!(opens[1]["served"], "denied");
    assert_eq!(opens[1]["errno"], "EROFS");
}

/// A tmpfs's size is taken from the memory bound (docs/views.md): with
/// `--mem 128M` and a 48M tmpfs, a memory bomb is stopped (137) before
/// 80 MiB; without the tmpfs, at 90 MiB or more. (KVM needs 64M left.)
fn tmpfs_counts_against_memory(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(img) = common::image("membomb", t.path()) else {
        cabin_tests::not_run("gcc", "no static gcc");
        return;
    };
    let most = |view: Option<View>| {
        let out = t.path().join("out");
        let fo = std::fs::File::create(&out).expect("stdout file");
        let cfg = RunConfig {
            args: vec!["membomb".into()],
            arena_bytes: 128 << 20,
            view,
            quiet: true,
            stdio: Some([0, std::os::fd::AsRawFd::as_raw_fd(&fo), 2]),
            ..RunConfig::default()
        };
        let o = b.run(&img, &cfg).expect("run");
        assert_eq!(o.exit_code, 137, "stopped at the bound: {:?}", o.reason);
        let text = std::fs::read_to_string(&out).expect("out");
        text.lines().filter_map(|l| l.split(' ').next()?.parse::<u64>().ok()).max().unwrap_or(0)
    };
    let with =
        most(Some(View { tmpfs: vec![Tmpfs { dst: "/t".into(), size: 48 << 20 }], ..View::default() }));
    let without = most(None);
    assert!(with < 80 && without >= 90, "MiB reached: {with} with a 48M tmpfs, {without} without");
}

/// Bad views end before the program runs, with one line naming the path.
#[test]
fn bad_views_are_refused_before_the_run() {
    if !ready() {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    fixture(t.path());
    let img = pathprobe::image().expect("image");
    for (v, needle) in [
        (View { root: Some(t.path().join("missing")), ..View::default() }, "missing"),
        (View { chdir: Some("/nowhere".into()), ..view(t.path()) }, "/nowhere"),
        (View { tmpfs: vec![Tmpfs { dst: "/t".into(), size: 1 << 40 }], ..View::default() }, "tmpfs"),
    ] {
        let cfg = RunConfig { view: Some(v), quiet: true, ..RunConfig::default() };
        let e = Backend::Process.run(img, &cfg).expect_err("refused").to_string();
        assert!(e.contains(needle) && e.contains("help:") && !e.contains('\n'), "{e}");
    }
    let cfg =
        RunConfig { view: Some(view(t.path())), allow_read: vec![t.path().into()], ..RunConfig::default() };
    let e = Backend::Process.run(img, &cfg).expect_err("refused").to_string();
    assert!(e.contains("--bind"), "{e}");
}

on_both_backends!(
    root_is_slash,
    binds,
    tmpfs_and_chdir,
    trace_names_view_and_host_paths,
    tmpfs_counts_against_memory
);
