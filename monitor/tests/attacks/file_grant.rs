//! File grants (issue 18): a file in `--allow-read`/`--allow-write` grants
//! exactly that object, nothing else in its directory. The program tries
//! to reach its siblings and its directory through the granted name (`..`,
//! `/.`, an `O_PATH` descriptor of the file as a `dirfd`), to change names
//! (unlink, rename, link, create), and to win a race against a host thread
//! that swaps the granted name for a symlink to a secret or for another
//! file (the object granted at start decides, so the name never leads to
//! another object).
//!
//! Fixture (fresh for every case):
//!
//! ```text
//! R/d/f        --allow-read   GRANTED
//! R/d/w        --allow-write  W-ORIG
//! R/d/sib      SECRET (the sibling), R/d/sub/x, R/other/hl (hard link to d/f)
//! ```
//!
//! After every case everything but `R/d/w` is unchanged.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cabin_monitor::RunConfig;

use crate::common::Backend;
use crate::pathprobe::{self, diff, refused, snapshot};

fn fixture(r: &Path) {
    for d in ["d/sub", "other"] {
        std::fs::create_dir_all(r.join(d)).expect("fixture dir");
    }
    for (p, c) in [("d/f", "GRANTED"), ("d/w", "W-ORIG"), ("d/sib", "SECRET"), ("d/sub/x", "SECRET-X")] {
        std::fs::write(r.join(p), c).expect("fixture file");
    }
    std::fs::hard_link(r.join("d/f"), r.join("other/hl")).expect("fixture hard link");
}

fn config(r: &Path) -> RunConfig {
    RunConfig { allow_read: vec![r.join("d/f")], allow_write: vec![r.join("d/w")], ..RunConfig::default() }
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Refused by the path rules with this errno and a `[paths]` record.
    Refused(i32),
    /// Fails as natively, with this errno (not a policy refusal).
    Native(i32),
    /// Works: the last line is exactly this.
    Prints(&'static str),
}

use Expect::{Native, Prints, Refused};
const EACCES: Expect = Refused(libc::EACCES);

/// (name, steps with `{D}` = R/d and `{R}`, expectation).
const CASES: &[(&str, &str, Expect)] = &[
    ("reads_the_granted_file", "read {D}/f", Prints("ok GRANTED")),
    ("sibling_refused", "read {D}/sib", EACCES),
    ("directory_listing_refused", "opendir {D}", EACCES),
    ("directory_as_dirfd_refused", "readat {D} sib", EACCES),
    ("dotdot_from_the_file", "read {D}/f/../sib", EACCES),
    ("directory_via_file_dotdot", "opendir {D}/f/..", EACCES),
    ("deeper_via_file_dotdot", "read {D}/f/../sub/x", EACCES),
    ("file_as_directory_slash", "read {D}/f/", Native(libc::ENOTDIR)),
    ("file_as_directory_dot", "read {D}/f/.", Native(libc::ENOTDIR)),
    ("opath_dirfd_dotdot", "opathat {D}/f ../sib", EACCES),
    ("opath_dirfd_dot", "opathat {D}/f .", Native(libc::ENOTDIR)),
    ("opath_then_read_it", "opathat {D}/sub/.. f", EACCES),
    ("hard_link_elsewhere_not_a_granted_name", "read {R}/other/hl", EACCES),
    ("read_grant_not_writable", "write {D}/f X", EACCES),
    ("read_grant_not_truncated", "truncate {D}/f", EACCES),
    ("read_grant_not_chmod", "chmodm {D}/f 777", EACCES),
    ("no_unlink", "unlink {D}/f", EACCES),
    ("no_unlink_of_write_grant", "unlink {D}/w", EACCES),
    ("no_rename_of_write_grant", "rename {D}/w {D}/w2", EACCES),
    ("no_rename_over_grant", "rename {D}/w {D}/f", EACCES),
    ("no_link_of_grant", "link {D}/w {D}/hl2", EACCES),
    ("no_create_beside", "write {D}/new X", EACCES),
    ("no_create_excl_over", "creat_excl {D}/w X", Native(libc::EEXIST)),
    ("write_grant_writes", "write {D}/w NEW -- read {D}/w", Prints("ok NEW")),
    ("write_grant_chmod", "chmodm {D}/w 600", Prints("ok")),
];

fn steps(s: &str, r: &Path) -> String {
    let r = r.to_str().expect("utf-8 temp dir");
    s.replace("{D}", &format!("{r}/d")).replace("{R}", r)
}

/// Everything but the write grant.
fn protected(r: &Path) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    let w = r.join("d/w");
    snapshot(r).into_iter().filter(|(p, _)| *p != w).collect()
}

fn file_grants(b: Backend) {
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
            Native(e) if o.last() != format!("err {e}") => bad(format!("expected err {e}")),
            Native(_) => {}
            Prints(want) if o.last() != *want => bad(format!("expected {want:?}")),
            Prints(_) => {}
        }
        let d = diff(&before, &protected(&r));
        if !d.is_empty() {
            bad(format!("CHANGED something not granted for writing:\n    {}", d.join("\n    ")));
        }
    }
    assert!(problems.is_empty(), "{} of {} cases failed on {b:?}:\n{}", problems.len(), CASES.len(), {
        problems.join("\n")
    });
}

/// A host thread waits until the program has started (it wrote `GO` to
/// `go`: its policy, and so the grant, is set up), then swaps
/// (`RENAME_EXCHANGE`) `a` and `b` until stopped.
fn swapper(
    go: std::path::PathBuf,
    a: std::path::PathBuf,
    b: std::path::PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) && std::fs::read(&go).ok().as_deref() != Some(b"GO") {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
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

/// While a host thread swaps the granted name with a symlink to the
/// sibling (or with a regular file holding the secret), the program opens
/// and reads the granted name in a loop: it reads the granted object or
/// is refused, never the secret (`race` exits 3 on an escape).
fn file_grant_swaps(b: Backend) {
    if pathprobe::image().is_none() {
        return;
    }
    let iters = if b == Backend::Process { 3000 } else { 1000 };
    let mut problems = Vec::new();
    for impostor in ["symlink", "file"] {
        let (_t, r) = pathprobe::tempdir();
        fixture(&r);
        match impostor {
            "symlink" => symlink("sib", r.join("d/alt")).expect("alt"),
            _ => std::fs::write(r.join("d/alt"), "SECRET-IMPOSTOR").expect("alt"),
        }
        let stop = Arc::new(AtomicBool::new(false));
        let cfg = config(&r);
        let sw = swapper(r.join("d/w"), r.join("d/f"), r.join("d/alt"), stop.clone());
        let s = format!("write {{D}}/w GO -- race {{D}}/f {iters} SECRET");
        let o = pathprobe::run(b, &steps(&s, &r), cfg);
        stop.store(true, Ordering::Relaxed);
        let swaps = sw.join().expect("swapper");
        println!("swap race on {b:?} with a {impostor}: {} ({swaps} swaps)", o.last());
        if o.exit != 0 || !o.last().starts_with("race") || !o.last().ends_with("escapes 0") {
            problems.push(format!("{impostor}: exit {} output {:?}", o.exit, o.lines));
        }
        let denied = o.denials.iter().filter(|r| r["served"] == "denied").count();
        if denied > 0
            && !o.denials.iter().any(|r| r["rule"].as_str().is_some_and(|s| s.starts_with("[paths] ")))
        {
            problems.push(format!("{impostor}: refusals without a [paths] record"));
        }
    }
    assert!(problems.is_empty(), "on {b:?}:\n{}", problems.join("\n"));
}

on_both_backends!(file_grants, file_grant_swaps);
