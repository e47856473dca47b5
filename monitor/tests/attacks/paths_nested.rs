//! Nested trees (issue 11, items 2 and 3): a read-only tree inside a
//! writable one stays read-only whatever the path's spelling (`W/d/../ro`,
//! a symlink `W/l -> ro`, a renamed or swapped component), tree roots are
//! never removed, renamed or replaced, and no change ever reaches a
//! directory outside the trees through a swapped middle component (the old
//! fallback that opened ancestors of trees by host path).
//!
//! Fixture (fresh for every case), `W` = R/w:
//!
//! ```text
//! R/secret, R/outd/b/x         outside
//! R/w/          --allow-write  mine.txt, d/, l -> ro, a/b/
//! R/w/ro/       --allow-read   f, sub/g, empty/, w3/ (--allow-write: three levels)
//! R/w/ero/      --allow-read   (empty)
//! R/w/a/b/ro3/  --allow-read   h (three levels below W)
//! R/r/          --allow-read   w2/ (--allow-write: write inside read)
//! ```
//!
//! After every case the read-only trees and everything outside are
//! unchanged (names, contents, modes, owners, times).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cabin_monitor::RunConfig;

use crate::common::Backend;
use crate::pathprobe::{self, diff, refused, snapshot};

fn fixture(r: &Path) {
    for d in ["outd/b", "w/d", "w/a/b/ro3", "w/ro/sub", "w/ro/empty", "w/ro/w3", "w/ero", "r/w2"] {
        std::fs::create_dir_all(r.join(d)).expect("fixture dir");
    }
    for (p, c) in [
        ("secret", "SECRET"),
        ("outd/b/x", "OUT"),
        ("w/mine.txt", "mine"),
        ("w/ro/f", "RO-ORIG"),
        ("w/ro/sub/g", "RO-G"),
        ("w/a/b/ro3/h", "RO3"),
        ("r/data", "R-DATA"),
    ] {
        std::fs::write(r.join(p), c).expect("fixture file");
    }
    symlink("ro", r.join("w/l")).expect("fixture symlink");
}

fn config(r: &Path) -> RunConfig {
    RunConfig {
        allow_read: vec![r.join("w/ro"), r.join("w/ero"), r.join("w/a/b/ro3"), r.join("r")],
        allow_write: vec![r.join("w"), r.join("w/ro/w3"), r.join("r/w2")],
        ..RunConfig::default()
    }
}

/// Everything a program must never change: the read-only trees (less the
/// writable trees inside them) and everything outside the trees. A case may
/// move W/a (an ancestor of a read-only tree, inside W) to W/a2: its
/// content is compared under its old name.
fn protected(r: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    let w = r.join("w");
    let moved = r.join("w/a2");
    let ro_parts = [r.join("w/ro"), r.join("w/ero"), r.join("w/a/b/ro3")];
    let writable_inside = [r.join("w/ro/w3"), r.join("r/w2")];
    snapshot(r)
        .into_iter()
        .map(|(p, v)| match p.strip_prefix(&moved) {
            Ok(rest) if moved.exists() => (r.join("w/a").join(rest), v),
            _ => (p, v),
        })
        .filter(|(p, _)| {
            let in_w = p.starts_with(&w) && !ro_parts.iter().any(|d| p.starts_with(d));
            !in_w && !writable_inside.iter().any(|d| p.starts_with(d))
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Refused by the path rules with this errno and a `[paths]` record.
    Refused(i32),
    /// Works: the last line starts with `ok`.
    Works,
}

use Expect::{Refused, Works};
const EACCES: Expect = Refused(libc::EACCES);

/// (name, steps with `{R}` and `{W}`, expectation).
const CASES: &[(&str, &str, Expect)] = &[
    // Opens that change the file, through `..` and through a symlink.
    ("write_via_dotdot", "write {W}/d/../ro/f X", EACCES),
    ("write_via_symlink", "write {W}/l/f X", EACCES),
    ("create_via_symlink", "write {W}/l/new X", EACCES),
    ("create_via_dotdot", "write {W}/d/../ro/new X", EACCES),
    ("append_via_symlink", "append {W}/l/f X", EACCES),
    ("open_for_writing_via_dotdot", "openw {W}/d/../ro/f", EACCES),
    ("truncate_via_symlink", "truncate {W}/l/f", EACCES),
    ("create_through_own_symlink", "symlink ro/new2 {W}/mylink -- write {W}/mylink X", EACCES),
    // Names: unlink, rmdir, mkdir, rename (both sides, exchange), link, symlink.
    ("unlink_via_symlink", "unlink {W}/l/f", EACCES),
    ("unlink_via_dotdot", "unlink {W}/d/../ro/f", EACCES),
    ("rmdir_via_symlink", "rmdir {W}/l/empty", EACCES),
    ("rmdir_tree_root_via_dotdot", "rmdir {W}/d/../ero", EACCES),
    ("mkdir_via_symlink", "mkdir {W}/l/newdir", EACCES),
    ("rename_out_of_read_only", "rename {W}/l/f {W}/stolen", EACCES),
    ("rename_into_read_only", "rename {W}/mine.txt {W}/l/f", EACCES),
    ("exchange_with_read_only", "exchange {W}/mine.txt {W}/d/../ro/f", EACCES),
    ("rename_tree_root_away", "rename {W}/d/../ro {W}/moved", EACCES),
    ("rename_over_tree_root", "mkdir {W}/e -- rename {W}/e {W}/d/../ero", EACCES),
    ("link_read_only_file_out", "link {W}/l/f {W}/hl", EACCES),
    ("link_into_read_only", "link {W}/mine.txt {W}/l/hl", EACCES),
    ("symlink_into_read_only", "symlink x {W}/l/s", EACCES),
    // Metadata through a path.
    ("chmod_via_symlink", "chmodm {W}/l/f 777", EACCES),
    ("chmod_tree_root_via_symlink", "chmodm {W}/l 700", EACCES),
    ("chown_via_symlink", "chown {W}/l/f 12345 12345", EACCES),
    ("utimes_via_symlink", "utimes {W}/l/f", EACCES),
    ("utimes_dir_via_dotdot", "utimes {W}/d/../ro/sub", EACCES),
    // Metadata through a descriptor opened read-only through the symlink.
    ("fchmod_of_read_only_file", "fchmod {W}/l/f 777", EACCES),
    ("fchown_of_read_only_file", "fchown {W}/l/f 12345 12345", EACCES),
    ("futimens_of_read_only_file", "futimens {W}/l/f", EACCES),
    // A read-only tree three levels down: its ancestors inside W are W's,
    // and a symlink swapped into one of them never leads a change outside.
    (
        "chmod_through_swapped_ancestor",
        "rename {W}/a {W}/a2 -- symlink {R}/outd {W}/a -- chmodm {W}/a/b 700",
        EACCES,
    ),
    (
        "chown_through_swapped_ancestor",
        "rename {W}/a {W}/a2 -- symlink {R}/outd {W}/a -- chown {W}/a/b 12345 12345",
        EACCES,
    ),
    (
        "utimes_through_swapped_ancestor",
        "rename {W}/a {W}/a2 -- symlink {R}/outd {W}/a -- utimes {W}/a/b",
        EACCES,
    ),
    ("rel_swapped_ancestor", "rename {W}/a {W}/a2 -- symlink ../outd {W}/a -- utimes {W}/a/b", EACCES),
    ("write_below_read_only_three_down", "write {W}/a/b/ro3/h X", EACCES),
    // What stays allowed: the writable tree inside the read-only one, and W itself.
    ("write_in_writable_inside_read_only_via_symlink", "write {W}/l/w3/new X -- read {W}/l/w3/new", Works),
    ("write_in_writable_inside_read_tree", "write {R}/r/w2/new X -- read {R}/r/w2/new", Works),
    ("rename_ancestor_of_tree_inside_w", "rename {W}/a {W}/a2 -- read {W}/a2/b/ro3/h", Works),
    ("moved_tree_stays_read_only", "rename {W}/a {W}/a2 -- mkdir {W}/a -- write {W}/a2/b/ro3/h X", EACCES),
    (
        "moved_tree_old_name_is_not_it",
        "rename {W}/a {W}/a2 -- mkdir {W}/a -- mkdir {W}/a/b -- write {W}/a/b/new X",
        Works,
    ),
    ("write_in_w_via_dotdot", "write {W}/d/../new X -- read {W}/new", Works),
    ("chmod_in_w", "chmodm {W}/mine.txt 600", Works),
    ("read_through_symlink", "read {W}/l/f", Works),
];

fn steps(s: &str, r: &Path) -> String {
    let r = r.to_str().expect("utf-8 temp dir");
    s.replace("{W}", &format!("{r}/w")).replace("{R}", r)
}

fn nested_trees(b: Backend) {
    if pathprobe::image().is_none() {
        return;
    }
    let mut problems = Vec::new();
    for (name, s, expect) in CASES {
        let (_t, r) = pathprobe::tempdir();
        fixture(&r);
        let before = protected(&r);
        let o = pathprobe::run(b, &steps(s, &r), config(&r));
        let mut bad =
            |m: String| problems.push(format!("{name}: {m}\n  steps: {s}\n  output: {:?}", o.lines));
        if o.exit != 0 {
            bad(format!("exit {}", o.exit));
        }
        let n = s.split(" -- ").count();
        if o.lines.len() != n || o.lines[..n - 1].iter().any(|l| !l.starts_with("ok")) {
            bad("a set-up step failed or output is missing".into());
        }
        match expect {
            Refused(e) => {
                if let Err(m) = refused(&o, *e) {
                    bad(m);
                }
            }
            Works if !o.last().starts_with("ok") => bad("expected ok".into()),
            Works => {}
        }
        let d = diff(&before, &protected(&r));
        if !d.is_empty() {
            bad(format!("CHANGED a read-only tree or the outside:\n    {}", d.join("\n    ")));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} cases failed on {b:?}:\n{}",
        problems.len(),
        CASES.len(),
        problems.join("\n")
    );
}

/// A host thread swaps (`RENAME_EXCHANGE`) `a` and `b` until stopped.
fn swapper(a: PathBuf, b: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        use std::os::unix::ffi::OsStrExt;
        let ca = std::ffi::CString::new(a.as_os_str().as_bytes()).expect("no NUL");
        let cb = std::ffi::CString::new(b.as_os_str().as_bytes()).expect("no NUL");
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            crate::common::exchange(&ca, &cb);
            n += 1;
        }
        n
    })
}

/// Races: while a host thread swaps a component of the program's path
/// between a harmless directory and a way into the read-only tree (or out
/// of every tree), the program changes through it in a loop. Whatever the
/// interleaving, the read-only trees and the outside never change.
fn nested_races(b: Backend) {
    if pathprobe::image().is_none() {
        return;
    }
    let iters = if b == Backend::Process { 3000 } else { 1000 };
    // (symlink target, program step): `W/sw` is a real directory or, swapped
    // with `W/alt`, a symlink to the target.
    let races: &[(&str, &str)] = &[
        ("ro", "write {W}/sw/f X"),
        ("ro", "chmodm {W}/sw/f 777"),
        ("ro", "unlink {W}/sw/f"),
        ("ro", "utimes {W}/sw/sub"),
        ("ro", "rename {W}/mine.txt {W}/sw/f"),
        ("../outd", "chmodm {W}/sw/b 700"),
        ("../outd", "utimes {W}/sw/b"),
    ];
    let mut problems = Vec::new();
    for (target, s) in races {
        let (_t, r) = pathprobe::tempdir();
        fixture(&r);
        std::fs::create_dir_all(r.join("w/sw/sub")).expect("sw");
        std::fs::create_dir_all(r.join("w/sw/b")).expect("sw/b");
        std::fs::write(r.join("w/sw/f"), "SW").expect("sw/f");
        symlink(target, r.join("w/alt")).expect("alt");
        let before = protected(&r);
        let stop = Arc::new(AtomicBool::new(false));
        let sw = swapper(r.join("w/sw"), r.join("w/alt"), stop.clone());
        let o = pathprobe::run(b, &steps(&format!("repeat {iters} {s}"), &r), config(&r));
        stop.store(true, Ordering::Relaxed);
        let swaps = sw.join().expect("swapper");
        println!("race on {b:?}: {s} -> {} ({swaps} swaps)", o.last());
        if o.exit != 0 || !o.last().starts_with("repeat") {
            problems.push(format!("{s}: exit {} output {:?}", o.exit, o.lines));
        }
        let d = diff(&before, &protected(&r));
        if !d.is_empty() {
            problems.push(format!("{s}: CHANGED a read-only tree or the outside:\n    {}", d.join("\n    ")));
        }
    }
    assert!(problems.is_empty(), "on {b:?}:\n{}", problems.join("\n"));
}

on_both_backends!(nested_trees, nested_races);
