//! Escapes from a view of the file system (docs/views.md): a program that
//! owns its domain tries to reach the host outside its `--root`, binds and
//! tmpfs, by `..`, absolute symlinks, symlink chains (its own too),
//! `/proc/self/root` and other magic links, and rename/link across binds.
//! Every attempt reads nothing outside and changes nothing outside.
//!
//! Fixture (fresh for every case), R a temp dir:
//!
//! ```text
//! R/secret, R/etc/passwd     outside: SECRET markers
//! R/root/                    --root (writable): etc/passwd "inside"
//! R/data/                    --bind R/data:/data: f, abs -> /etc/passwd (host's!), c1 -> c2 -> ../secret
//! R/ro/                      --bind R/ro:/ro:ro: f
//! /proc                      --bind /proc:/proc:ro
//! ```

use std::os::unix::fs::symlink;
use std::path::Path;

use cabin_monitor::{Bind, RunConfig, View};

use crate::common::Backend;
use crate::pathprobe::{self, diff, snapshot};

fn fixture(r: &Path) {
    for d in ["etc", "root/etc", "data", "ro"] {
        std::fs::create_dir_all(r.join(d)).expect("fixture dir");
    }
    for (p, c) in [
        ("secret", "SECRET"),
        ("etc/passwd", "SECRET-PASSWD"),
        ("root/etc/passwd", "inside"),
        ("data/f", "data"),
        ("ro/f", "ro"),
    ] {
        std::fs::write(r.join(p), c).expect("fixture file");
    }
    let abs = r.join("etc/passwd");
    symlink(&abs, r.join("data/abs")).expect("symlink");
    symlink("c2", r.join("data/c1")).expect("symlink");
    symlink("../secret", r.join("data/c2")).expect("symlink");
}

fn config(r: &Path) -> RunConfig {
    RunConfig {
        view: Some(View {
            root: Some(r.join("root")),
            binds: vec![
                Bind { src: r.join("data"), dst: "/data".into(), readonly: false },
                Bind { src: r.join("ro"), dst: "/ro".into(), readonly: true },
                Bind { src: "/proc".into(), dst: "/proc".into(), readonly: true },
            ],
            ..View::default()
        }),
        ..RunConfig::default()
    }
}

fn escape(b: Backend) {
    if pathprobe::image().is_none() {
        cabin_tests::not_run("gcc", "no static gcc");
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    let r = t.path().canonicalize().expect("canonical");
    fixture(&r);
    let host_abs = r.join("etc/passwd").display().to_string();
    let outside = |r: &Path| {
        let mut s = snapshot(&r.join("etc"));
        s.extend(snapshot(&r.join("ro")));
        s.insert(r.join("secret"), std::fs::read_to_string(r.join("secret")).unwrap_or_default());
        s
    };
    let cases: Vec<(String, &str)> = vec![
        // `..` past the root stays at the root.
        ("read /../../../../secret".into(), "err 2"),
        ("read /../../etc/passwd".into(), "ok inside"),
        (format!("read /../../../..{host_abs}"), "err 2"),
        // The host's absolute path means nothing in the view.
        (format!("read {host_abs}"), "err 2"),
        // Absolute symlink and a relative chain out of a bind: refused.
        ("read /data/abs".into(), "err 13"),
        ("read /data/c1".into(), "err 13"),
        // A change follows links itself, from the view's top (as the
        // allowed trees do): `/data/c2 -> ../secret` is the view's /secret,
        // made in the root, never R/secret (the snapshot checks it).
        ("write /data/c1 x".into(), "ok"),
        ("read /data/../../secret".into(), "err 2"),
        // The program's own links: out of the bind refused, in the root inside.
        ("symlink ../../secret /data/mine -- read /data/mine".into(), "err 13"),
        (format!("symlink {host_abs} /data/m2 -- read /data/m2"), "err 13"),
        (format!("symlink {host_abs} /l -- read /l"), "err 2"),
        ("symlink /data/../../secret /l2 -- read /l2".into(), "err 2"),
        // Magic links, /proc/self/root and friends.
        ("read /proc/self/root/etc/passwd".into(), "err 13"),
        ("read /proc/1/root/etc/passwd".into(), "err 13"),
        ("symlink /proc/self/root /data/pr -- read /data/pr/etc/passwd".into(), "err 13"),
        // In the root, links resolve inside it: its own /proc is not the bind.
        ("symlink /proc/self/cwd /pc -- read /pc/etc/passwd".into(), "err 2"),
        // The program's own /proc links name view paths, never the host's.
        ("chdir /data -- readlink /proc/self/cwd".into(), "ok /data"),
        ("readlink /proc/thread-self/cwd".into(), "ok /"),
        ("readlink /proc/self/fd/99".into(), "err 2"),
        ("fdlink /data/f".into(), "ok /data/f"),
        ("chdir /data -- fdlink ../data/./f".into(), "ok /data/f"),
        ("readlink /proc/self/fd/../cwd".into(), "ok /"),
        ("readlink /proc/1/cwd".into(), "err 13"),
        // Across binds: EXDEV, read-only: EROFS; nothing moves out.
        ("rename /data/f /ro/f".into(), "err 30"),
        ("rename /data/f /f".into(), "err 18"),
        ("rename /ro/f /data/g".into(), "err 30"),
        ("link /data/f /g".into(), "err 18"),
        ("exchange /data/f /etc/passwd".into(), "err 18"),
        ("rename /data /x".into(), "err 16"),
        ("rmdir /proc".into(), "err 16"),
        ("write /proc/sys/kernel/hostname x".into(), "err 30"),
    ];
    for (steps, want) in cases {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path().canonicalize().expect("canonical");
        fixture(&r);
        let before = outside(&r);
        let o = pathprobe::run(b, &steps, config(&r));
        assert_eq!(o.last(), want, "{steps}: {:?}", o.lines);
        assert!(o.lines.iter().all(|l| !l.contains("SECRET")), "{steps}: leaked {:?}", o.lines);
        let d = diff(&before, &outside(&r));
        assert!(d.is_empty(), "{steps}: changed outside: {d:?}");
        assert_eq!(o.exit, 0, "{steps}: the probe ends normally");
    }
}

/// A host thread swaps (RENAME_EXCHANGE) a directory of a bind, and one of
/// the root, with a symlink pointing out, while the program reads through
/// it in a loop: no read ever returns the secret outside (the kernel
/// resolves each open in one piece, `RESOLVE_BENEATH` / `RESOLVE_IN_ROOT`).
fn swap_race(b: Backend) {
    if pathprobe::image().is_none() {
        cabin_tests::not_run("gcc", "no static gcc");
        return;
    }
    for (tree, steps) in [("data", "race /data/d/f 3000 SECRET"), ("root", "race /d/f 3000 SECRET")] {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path().canonicalize().expect("canonical");
        fixture(&r);
        std::fs::create_dir_all(r.join("outd")).expect("outd");
        std::fs::write(r.join("outd/f"), "SECRET-OUT").expect("outd/f");
        std::fs::create_dir_all(r.join(tree).join("d")).expect("d");
        std::fs::write(r.join(tree).join("d/f"), "good").expect("d/f");
        symlink("../../../../../../../../outd", r.join(tree).join("evil")).expect("evil");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (a, b, stop) = (r.join(tree).join("d"), r.join(tree).join("evil"), stop.clone());
            std::thread::spawn(move || {
                let ca = std::ffi::CString::new(a.as_os_str().as_encoded_bytes()).expect("no NUL");
                let cb = std::ffi::CString::new(b.as_os_str().as_encoded_bytes()).expect("no NUL");
                let mut swaps = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    crate::common::exchange(&ca, &cb);
                    swaps += 1;
                }
                swaps
            })
        };
        let o = pathprobe::run(b, steps, config(&r));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let swaps = swapper.join().expect("swapper");
        assert!(swaps > 0, "{tree}: the swapper ran");
        assert_eq!(o.exit, 0, "{tree}: {:?}", o.lines);
        assert!(o.last().ends_with("escapes 0"), "{tree}: {:?}", o.lines);
        assert!(o.lines.iter().all(|l| !l.contains("SECRET-OUT")), "{tree}: {:?}", o.lines);
    }
}

on_both_backends!(escape, swap_race);
