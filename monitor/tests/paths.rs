//! Path-rule guarantees, end to end: a table of path cases and a rename
//! race, each run confined (process backend; KVM backend too where /dev/kvm
//! is usable) with `--audit`.
//!
//! The probes are tests/programs/paths.c (compiled with `gcc -static`,
//! turned into an image by the rewriter). Every case gets a fresh fixture:
//!
//! ```text
//! R/secret, R/outdir/f        outside: secret markers, never to be read or changed
//! R/hardsrc                   outside, hard-linked beforehand as R/ro/hard
//! R/ro/                       --allow-read tree (symlinks in, out, chains, loops, ...)
//! R/rw/                       --allow-write tree
//! ```
//!
//! A case expects one of three results for its last step:
//! - `Ok`: it works, with the data read when it reads;
//! - `Refused`: the path rules refuse it (`EACCES`), and the audit log holds
//!   exactly one `denied` record for it, with a `[paths]` rule and the path;
//! - `Fails(errno)`: the error the kernel gives natively (`ENOENT`, `ELOOP`
//!   of a real loop, `ENAMETOOLONG`, `ENOTDIR`, ...): not a refusal, no
//!   audit record.
//!
//! Cases that are not `Refused` also run natively (same fixture, same
//! arguments) and must print the same. After every case the outside files
//! are unchanged and nothing new appeared outside; no output ever holds a
//! secret marker.
//!
//! Two expectations worth stating:
//! - A hard link placed in an allowed tree beforehand (by whoever set up the
//!   tree) names its inode from inside the tree, so reading it is allowed:
//!   path rules are about names, like a bind mount. The program cannot make
//!   such a link itself: `link` needs both names under a writable tree, and
//!   never follows a symlink for the old name.
//! - A path is resolved beneath the allowed tree that its absolute spelling
//!   names first, so `..` above that tree is refused even when the path
//!   would come back into it (or into another allowed tree): `ro/../ro/x`
//!   and `rw/../ro/x` are refused, where native Linux would open them.
//!
//! The rename race (`rename_race_*`) swaps, from a host thread, a directory
//! of the read-only tree with a symlink pointing outside (`RENAME_EXCHANGE`)
//! while the confined program opens and reads through it in a loop:
//! zero secret reads, and one audit record per denial the program saw.
//! `CABIN_PATH_RACE_ITERS` sets the iterations (default 100 000 on the
//! process backend, about 17 s on two busy cores; 20 000 on KVM, where
//! 100 000 took 79 s here: run it with CABIN_PATH_RACE_ITERS=100000).
//!
//! Needs `gcc` with static glibc; without it every test says so on stderr
//! and returns early (counted as not run). The KVM variants print `KVM test
//! NOT RUN` where /dev/kvm is not usable (they fail with CABIN_REQUIRE_KVM=1).

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use cabin_monitor::trace::record::path_text;
use cabin_monitor::trace::{TraceFormat, TraceOptions};
use cabin_monitor::GateConfig;
use cabin_monitor::{RunConfig, RunOutcome};
use common::Backend;
use serde_json::Value;

const SECRET: &str = "SECRET-MARKER-1";
const SECRET2: &str = "SECRET-MARKER-2";

/// The compiled probe (native executable, image), built once.
fn probe() -> Option<&'static (PathBuf, Vec<u8>)> {
    static PROBE: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let dir = common::scratch_dir("paths-probe");
            let exe = common::compile("paths", &dir)?;
            let image = common::rewrite(&std::fs::read(&exe).expect("read compiled probe"));
            Some((exe, image))
        })
        .as_ref()
}

/// Builds the fixture under `root` (canonical).
fn fixture(root: &Path) {
    use std::os::unix::fs::symlink;
    let w = |p: &str, d: &str| std::fs::write(root.join(p), d).expect("fixture write");
    let l = |target: &str, p: &str| symlink(target, root.join(p)).expect("fixture symlink");
    for d in ["outdir", "ro", "ro/sub", "rw", "rw/sub"] {
        std::fs::create_dir(root.join(d)).expect("fixture dir");
    }
    w("secret", &format!("{SECRET}\n"));
    w("outdir/f", &format!("{SECRET2}\n"));
    w("hardsrc", "hard-linked-in\n");
    w("ro/ok.txt", "ro-ok\n");
    w("ro/sub/deep.txt", "deep\n");
    l(root.join("secret").to_str().expect("utf-8 root"), "ro/abs");
    l("../secret", "ro/rel");
    l("../outdir", "ro/reldir");
    l("chain2", "ro/chain1");
    l("sub/chain3", "ro/chain2");
    l("../../secret", "ro/sub/chain3");
    l("good2", "ro/good1");
    l("sub/../ok.txt", "ro/good2");
    l("loop2", "ro/loop1");
    l("loop1", "ro/loop2");
    l("selfloop", "ro/selfloop");
    l("sub", "ro/dirlink");
    l("/proc/self/root", "ro/procroot");
    std::fs::hard_link(root.join("hardsrc"), root.join("ro/hard")).expect("fixture hard link");
    let odd = root.join("ro").join(OsStr::from_bytes(b"\xff\xfe.bin"));
    std::fs::write(odd, "bytes-ok\n").expect("non-UTF-8 name");
    w("rw/existing.txt", "rw-ok\n");
    l("../created_outside", "rw/dangling_rel");
    l(root.join("created_outside2").to_str().expect("utf-8"), "rw/dangling_abs");
    l(root.join("secret").to_str().expect("utf-8"), "rw/abs_out");
}

/// Everything outside the two trees: name -> content or link target.
fn outside(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p == root.join("ro") || p == root.join("rw") {
                continue;
            }
            let ft = e.file_type().expect("file type");
            let v = if ft.is_symlink() {
                std::fs::read_link(&p).expect("readlink").into_os_string().into_encoded_bytes()
            } else if ft.is_dir() {
                stack.push(p.clone());
                b"<dir>".to_vec()
            } else {
                std::fs::read(&p).expect("read outside file")
            };
            m.insert(p, v);
        }
    }
    m
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Works; the last line is `ok` + this (`{R}` is the root), or any `ok…` line.
    Ok(Option<&'static str>),
    /// The path rules refuse it: `EACCES` and exactly one audit record.
    Refused,
    /// This errno, as natively; no audit record.
    Fails(i32),
}

struct Case {
    name: &'static str,
    /// Steps, arguments separated by spaces, steps by ` -- `. `{R}` is the
    /// fixture root; `{X255}`/`{X300}` that many `x`; `{EMPTY}` an empty
    /// argument; `{PAD4095}`/`{PAD4096}` a `padread` making a path of
    /// exactly that many bytes that names R/ro/ok.txt.
    steps: &'static str,
    expect: Expect,
    /// Also allow reading /proc (magic-link cases).
    proc_allowed: bool,
    /// Whether a native run prints the same (not for refusals, nor for
    /// what the monitor answers itself).
    native_same: bool,
}

const fn case(name: &'static str, steps: &'static str, expect: Expect) -> Case {
    Case { name, steps, expect, proc_allowed: false, native_same: !matches!(expect, Expect::Refused) }
}

const fn proc_case(name: &'static str, steps: &'static str, expect: Expect) -> Case {
    Case { proc_allowed: true, ..case(name, steps, expect) }
}

/// A case the monitor answers differently from native Linux on purpose.
const fn emulated_case(name: &'static str, steps: &'static str, expect: Expect) -> Case {
    Case { native_same: false, ..case(name, steps, expect) }
}

use Expect::{Fails, Ok as Works, Refused};

const CASES: &[Case] = &[
    // Plain names and `..`.
    case("plain_read_inside", "read {R}/ro/ok.txt", Works(Some("ro-ok\\x0a"))),
    case("absolute_path_outside", "read {R}/secret", Refused),
    case("dotdot_out", "read {R}/ro/../secret", Refused),
    case("dotdot_deep_out", "read {R}/ro/sub/../../secret", Refused),
    case("dotdot_stays_inside", "read {R}/ro/sub/../ok.txt", Works(Some("ro-ok\\x0a"))),
    case("dotdot_out_and_back_in", "read {R}/ro/../ro/ok.txt", Refused),
    case("dotdot_into_other_allowed_tree", "read {R}/rw/../ro/ok.txt", Refused),
    case("double_slash_and_dot", "read {R}//ro/.//sub/./deep.txt", Works(Some("deep\\x0a"))),
    case("dot_and_dotdot_out", "read {R}/ro/./sub/.././../secret", Refused),
    // Symlinks.
    case("absolute_symlink_out", "read {R}/ro/abs", Refused),
    case("relative_symlink_out", "read {R}/ro/rel", Refused),
    case("symlinked_dir_out", "read {R}/ro/reldir/f", Refused),
    case("symlink_chain_out", "read {R}/ro/chain1", Refused),
    case("symlink_chain_inside", "read {R}/ro/good1", Works(Some("ro-ok\\x0a"))),
    case("symlinked_dir_inside", "read {R}/ro/dirlink/deep.txt", Works(Some("deep\\x0a"))),
    case("symlink_loop", "read {R}/ro/loop1", Fails(libc::ELOOP)),
    case("symlink_self_loop", "read {R}/ro/selfloop", Fails(libc::ELOOP)),
    case("symlink_to_proc_root", "read {R}/ro/procroot{R}/secret", Refused),
    case("readlink_of_link_out_is_text", "readlink {R}/ro/abs", Works(Some("{R}/secret"))),
    case("lstat_of_link_out", "lstat {R}/ro/abs", Works(None)),
    case("own_symlink_out_then_read", "symlink {R}/secret {R}/rw/mine -- read {R}/rw/mine", Refused),
    // /proc, not allowed.
    case("proc_self_fd", "read /proc/self/fd/3", Refused),
    case("proc_self_cwd", "read /proc/self/cwd/secret", Refused),
    case("proc_self_root", "read /proc/self/root{R}/secret", Refused),
    case("proc_self_exe", "read /proc/self/exe", Refused),
    // Static glibc reads this link at start-up: answered as without /proc.
    emulated_case("readlink_proc_self_exe", "readlink /proc/self/exe", Fails(libc::ENOENT)),
    // /proc allowed: magic links are still never followed.
    proc_case("proc_allowed_system_file", "stat /proc/cpuinfo", Works(Some("size=0"))),
    // /proc/self is the monitor: never served, even as metadata.
    proc_case("proc_allowed_self_file", "stat /proc/self/status", Refused),
    // (fd 2 itself is the program's own; a path through it meets the magic link.)
    proc_case("proc_allowed_fd_magic_link", "read /proc/thread-self/fd/2/x", Refused),
    proc_case("proc_allowed_cwd_magic_link", "read /proc/self/cwd", Refused),
    proc_case("proc_allowed_root_magic_link", "read /proc/self/root{R}/secret", Refused),
    proc_case("proc_allowed_exe_magic_link", "read /proc/self/exe", Refused),
    // Hard links.
    case("hard_link_placed_inside_beforehand", "read {R}/ro/hard", Works(Some("hard-linked-in\\x0a"))),
    case("hard_link_from_outside_in", "link {R}/secret {R}/rw/stolen", Refused),
    case("hard_link_from_inside_out", "link {R}/rw/existing.txt {R}/exported", Refused),
    case(
        "hard_link_inside",
        "link {R}/rw/existing.txt {R}/rw/copy -- read {R}/rw/copy",
        Works(Some("rw-ok\\x0a")),
    ),
    case("hard_link_follow_symlink_out", "linkf {R}/rw/abs_out {R}/rw/hl -- read {R}/rw/hl", Refused),
    // NUL bytes inside the buffer: the path ends at the first one.
    case("nul_truncates_inside", "read {R}/ro/ok.txt\\0/../../secret", Works(Some("ro-ok\\x0a"))),
    case("nul_after_outside_path", "read {R}/secret\\0{R}/ro/ok.txt", Refused),
    case("nul_first_byte_is_empty_path", "read \\0{R}/ro/ok.txt", Fails(libc::ENOENT)),
    // Lengths.
    case("path_of_4095_bytes", "{PAD4095}", Works(Some("ro-ok\\x0a"))),
    case("path_of_4096_bytes", "{PAD4096}", Fails(libc::ENAMETOOLONG)),
    case("path_far_over_path_max", "padread {R}/ro/ 3000 ok.txt", Fails(libc::ENAMETOOLONG)),
    case("component_of_255_bytes", "write {R}/rw/{X255} data -- read {R}/rw/{X255}", Works(Some("data"))),
    case("component_over_name_max", "read {R}/ro/{X300}", Fails(libc::ENAMETOOLONG)),
    // Trailing slashes.
    case("trailing_slash_on_file", "read {R}/ro/ok.txt/", Fails(libc::ENOTDIR)),
    case("trailing_slash_on_dir", "opendir {R}/ro/sub/", Works(None)),
    case("trailing_slash_create", "write {R}/rw/newf/ x", Fails(libc::EISDIR)),
    // Names that are not UTF-8.
    case("non_utf8_read_inside", "read {R}/ro/\\xff\\xfe.bin", Works(Some("bytes-ok\\x0a"))),
    case(
        "non_utf8_create_inside",
        "write {R}/rw/\\xfe\\xff-new data -- read {R}/rw/\\xfe\\xff-new",
        Works(Some("data")),
    ),
    case("non_utf8_create_outside", "write {R}/\\xfe\\xff-new data", Refused),
    case("empty_path", "read {EMPTY}", Fails(libc::ENOENT)),
    // Writes, creation and changes.
    case("write_to_read_only_tree", "append {R}/ro/ok.txt x", Refused),
    case("create_in_read_only_tree", "write {R}/ro/new x", Refused),
    case(
        "create_in_read_write_tree",
        "write {R}/rw/new.txt hello -- read {R}/rw/new.txt",
        Works(Some("hello")),
    ),
    case("create_outside", "write {R}/new x", Refused),
    case("write_outside_through_dotdot", "write {R}/rw/sub/../../secret x", Refused),
    case("truncate_read_only", "truncate {R}/ro/ok.txt", Refused),
    case("chmod_read_only", "chmod {R}/ro/ok.txt", Refused),
    case("creat_through_dangling_relative_symlink_out", "write {R}/rw/dangling_rel x", Refused),
    case("creat_through_dangling_absolute_symlink_out", "write {R}/rw/dangling_abs x", Refused),
    case("excl_create_existing", "creat_excl {R}/rw/existing.txt x", Fails(libc::EEXIST)),
    // Rename, unlink, mkdir across the boundary.
    case("rename_out", "rename {R}/rw/existing.txt {R}/moved", Refused),
    case("rename_in", "rename {R}/secret {R}/rw/stolen", Refused),
    case("rename_read_only_to_rw", "rename {R}/ro/ok.txt {R}/rw/x", Refused),
    case(
        "rename_inside",
        "rename {R}/rw/existing.txt {R}/rw/renamed -- read {R}/rw/renamed",
        Works(Some("rw-ok\\x0a")),
    ),
    case("exchange_with_outside", "exchange {R}/rw/existing.txt {R}/secret", Refused),
    case("unlink_outside", "unlink {R}/secret", Refused),
    case("unlink_read_only", "unlink {R}/ro/ok.txt", Refused),
    case("unlink_inside", "unlink {R}/rw/existing.txt -- read {R}/rw/existing.txt", Fails(libc::ENOENT)),
    case("mkdir_outside", "mkdir {R}/newdir", Refused),
    case("mkdir_dotdot_out", "mkdir {R}/rw/../newdir", Refused),
    case("mkdir_inside", "mkdir {R}/rw/newdir -- opendir {R}/rw/newdir", Works(None)),
    case("rmdir_the_tree_itself", "rmdir {R}/rw", Refused),
    // Directory descriptors and the working directory.
    case("openat_dirfd_dotdot_out", "readat {R}/ro/sub ../../secret", Refused),
    case("openat_dirfd_inside", "readat {R}/ro/sub ../ok.txt", Works(Some("ro-ok\\x0a"))),
    case("openat_dirfd_absolute_out", "readat {R}/ro {R}/secret", Refused),
    case("openat_dirfd_symlink_out", "readat {R}/ro rel", Refused),
    case("cwd_relative_inside", "chdir {R}/ro/sub -- read ../ok.txt", Works(Some("ro-ok\\x0a"))),
    case("cwd_relative_out", "chdir {R}/ro/sub -- read ../../secret", Refused),
    case("cwd_climb_out", "chdir {R}/ro -- chdir ..", Refused),
    case("cwd_through_symlinked_dir", "chdir {R}/ro/dirlink -- read ../ok.txt", Works(Some("ro-ok\\x0a"))),
    case("fchdir_then_out", "fchdir {R}/ro/sub -- read ../../secret", Refused),
    case("stat_outside", "stat {R}/secret", Refused),
    case("stat_ancestor_of_tree", "stat {R}", Works(None)),
    case("stat_ancestor_spelled_with_dotdot", "stat {R}/ro/..", Refused),
];

/// Arguments of a case for fixture root `root`.
fn args(c: &Case, root: &Path) -> Vec<Vec<u8>> {
    let r = root.to_str().expect("utf-8 temp dir");
    let pad = |total: usize| -> Vec<Vec<u8>> {
        // R/ro/ + "./" x n + ok.txt, exactly `total` bytes (a doubled slash evens it out).
        let (mut pre, suf) = (format!("{r}/ro/"), "ok.txt");
        if (total - pre.len() - suf.len()) % 2 == 1 {
            pre.push('/');
        }
        let n = (total - pre.len() - suf.len()) / 2;
        ["padread".to_string(), pre, n.to_string(), suf.to_string()].map(String::into_bytes).to_vec()
    };
    let mut out = vec![b"paths".to_vec()];
    for a in c.steps.split(' ') {
        match a {
            "{PAD4095}" => out.extend(pad(4095)),
            "{PAD4096}" => out.extend(pad(4096)),
            "{EMPTY}" => out.push(Vec::new()),
            a => out.push(
                a.replace("{R}", r)
                    .replace("{X255}", &"x".repeat(255))
                    .replace("{X300}", &"x".repeat(300))
                    .into_bytes(),
            ),
        }
    }
    out
}

/// The probe's unescaping (\xNN, \0, \\), up to the first NUL: the path
/// the kernel (and the monitor) sees.
fn as_kernel_sees(a: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    let mut i = 0;
    while i < a.len() {
        if a[i] == b'\\' && a.get(i + 1) == Some(&b'x') && i + 3 < a.len() {
            let h = std::str::from_utf8(&a[i + 2..i + 4]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            o.push(h.unwrap_or(0));
            i += 4;
        } else if a[i] == b'\\' && a.get(i + 1) == Some(&b'0') {
            break;
        } else if a[i] == b'\\' && a.get(i + 1) == Some(&b'\\') {
            o.push(b'\\');
            i += 2;
        } else {
            o.push(a[i]);
            i += 1;
        }
    }
    o
}

/// A fresh canonical fixture root.
fn fresh() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().canonicalize().expect("canonical");
    fixture(&root);
    (t, root)
}

fn read_audit(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("audit log")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
        .collect()
}

fn schema() -> cabin_tests::json_schema::Validator {
    cabin_tests::json_schema::trace_schema()
}

/// Runs the probe confined with `args` (strings: RunConfig takes UTF-8;
/// the probe unescapes), stdout to a file; returns (outcome, stdout).
fn run_confined(
    b: Backend,
    img: &[u8],
    args: &[Vec<u8>],
    root: &Path,
    proc_allowed: bool,
    gate: GateConfig,
    out_file: &Path,
) -> (RunOutcome, String) {
    let fo = std::fs::File::create(out_file).expect("stdout file");
    let mut allow_read = vec![root.join("ro")];
    if proc_allowed {
        allow_read.push(PathBuf::from("/proc"));
    }
    let cfg = RunConfig {
        args: args.iter().map(|a| String::from_utf8(a.clone()).expect("escaped args are UTF-8")).collect(),
        allow_read,
        allow_write: vec![root.join("rw")],
        quiet: true,
        stdio: Some([0, fo.as_raw_fd(), 2]),
        gate,
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).unwrap_or_else(|e| panic!("{b:?} run failed: {e}"));
    drop(fo);
    (o, std::fs::read_to_string(out_file).expect("stdout"))
}

fn audit_gate(audit: &Path) -> GateConfig {
    GateConfig {
        trace: TraceOptions {
            trace: None,
            format: TraceFormat::Jsonl,
            audit: Some(audit.to_path_buf()),
            audit_cap: 1 << 30,
        },
        ..GateConfig::default()
    }
}

fn path_table(b: Backend) {
    let Some((exe, img)) = probe() else { return };
    let schema = schema();
    let scratch = tempfile::tempdir().expect("scratch");
    let (mut refused, mut works, mut fails) = (0, 0, 0);
    let mut problems = Vec::new();
    for c in CASES {
        let (_t, root) = fresh();
        let before = outside(&root);
        let argv = args(c, &root);
        let audit = scratch.path().join(format!("{}.audit.jsonl", c.name));
        let (o, out) = run_confined(
            b,
            img,
            &argv,
            &root,
            c.proc_allowed,
            audit_gate(&audit),
            &scratch.path().join("out"),
        );
        let mut bad =
            |m: String| problems.push(format!("{}: {m}\n  args: {:?}\n  output: {out:?}", c.name, c.steps));
        if o.exit_code != 0 {
            bad(format!("exit {} ({:?})", o.exit_code, o.reason));
            continue;
        }
        let lines: Vec<&str> = out.lines().collect();
        let Some((last, setup)) = lines.split_last() else {
            bad("no output".into());
            continue;
        };
        if let Some(s) = setup.iter().find(|l| !l.starts_with("ok")) {
            bad(format!("a setup step failed: {s}"));
        }
        if out.contains("SECRET-MARKER") {
            bad("READ A SECRET".into());
        }
        if outside(&root) != before {
            bad("CHANGED SOMETHING OUTSIDE the allowed trees".into());
        }
        let r = root.to_str().unwrap_or_default();
        let recs = read_audit(&audit);
        for rec in &recs {
            let errors: Vec<String> = schema.errors(rec).iter().map(|e| e.to_string()).collect();
            if !errors.is_empty() {
                bad(format!("audit record does not validate: {rec} ({})", errors.join("; ")));
            }
        }
        let denials: Vec<&Value> = recs.iter().filter(|r| r["type"] == "syscall").collect();
        match c.expect {
            Works(want) => {
                works += 1;
                match want {
                    Some(w) if *last != format!("ok {}", w.replace("{R}", r)) => {
                        bad(format!("expected ok {w}"))
                    }
                    None if !last.starts_with("ok") => bad("expected ok".into()),
                    _ => {}
                }
            }
            Fails(e) => {
                fails += 1;
                if *last != format!("err {e}") {
                    bad(format!("expected err {e} ({})", std::io::Error::from_raw_os_error(e)));
                }
            }
            Refused => {
                refused += 1;
                if *last != format!("err {}", libc::EACCES) {
                    bad("expected a refusal (err 13)".into());
                }
            }
        }
        let want_records = usize::from(matches!(c.expect, Refused));
        if denials.len() != want_records {
            bad(format!("{} audit records, expected {want_records}: {denials:?}", denials.len()));
        }
        if let Some(d) = denials.first() {
            let rule = d["rule"].as_str().unwrap_or_default();
            let path = d["path"].as_str().unwrap_or_default();
            let known: Vec<String> = argv.iter().map(|a| path_text(&as_kernel_sees(a))).collect();
            if d["served"] != "denied" || !rule.starts_with("[paths] ") || !known.iter().any(|k| k == path) {
                bad(format!("audit record lacks the rule or the path: {d}"));
            }
        }
        // Not refused: the native run prints the same.
        if c.native_same {
            let (_t2, root2) = fresh();
            let argv2 = args(c, &root2);
            let nat = Command::new(exe)
                .args(argv2[1..].iter().map(|a| OsStr::from_bytes(a)))
                .current_dir(&root2)
                .output()
                .expect("native run");
            let native =
                String::from_utf8_lossy(&nat.stdout).replace(root2.to_str().unwrap_or_default(), "{R}");
            if native != out.replace(r, "{R}") {
                bad(format!("native run printed {native:?}"));
            }
        }
    }
    println!(
        "path table on {b:?}: {} cases ({works} allowed, {refused} refused with one audit record each, {fails} failing with an ordinary errno and no audit record)",
        CASES.len()
    );
    assert!(CASES.len() >= 40);
    assert!(
        problems.is_empty(),
        "{} of {} cases failed:\n{}",
        problems.len(),
        CASES.len(),
        problems.join("\n")
    );
}

#[test]
fn path_table_process() {
    path_table(Backend::Process);
}

#[test]
fn path_table_kvm() {
    if Backend::Kvm.available("path_table_kvm") {
        path_table(Backend::Kvm);
    }
}

/// A run with a jsonl trace: forwarded path calls carry the `path` field
/// (non-UTF-8 bytes escaped), and the records validate.
#[test]
fn trace_records_carry_the_path() {
    let Some((_, img)) = probe() else { return };
    let (_t, root) = fresh();
    let scratch = tempfile::tempdir().expect("scratch");
    let trace = scratch.path().join("run.jsonl");
    let gate = GateConfig {
        trace: TraceOptions {
            trace: Some(Some(trace.clone())),
            format: TraceFormat::Jsonl,
            audit: None,
            audit_cap: 0,
        },
        ..GateConfig::default()
    };
    let r = root.to_str().expect("utf-8");
    let argv: Vec<Vec<u8>> =
        ["paths", "read", &format!("{r}/ro/\\xff\\xfe.bin"), "--", "read", &format!("{r}/secret")]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
    let (o, out) =
        run_confined(Backend::Process, img, &argv, &root, false, gate, &scratch.path().join("out"));
    assert_eq!(o.exit_code, 0, "{:?}", o.reason);
    assert_eq!(out, format!("ok bytes-ok\\x0a\nerr {}\n", libc::EACCES));
    let recs = read_audit(&trace);
    let schema = schema();
    for rec in &recs {
        assert!(schema.is_valid(rec), "{rec}");
    }
    let opens: Vec<&Value> = recs.iter().filter(|r| r["name"] == "openat").collect();
    assert_eq!(opens.len(), 2, "{recs:?}");
    assert_eq!(opens[0]["path"], format!("{r}/ro/\\xff\\xfe.bin"));
    assert_eq!(opens[0]["served"], "forwarded");
    assert_eq!(opens[1]["path"], format!("{r}/secret"));
    assert_eq!(opens[1]["served"], "denied");
    assert_eq!(opens[1]["rule"], format!("[paths] {r}/secret: outside the allowed trees"));
    assert_eq!(opens[1]["errno"], "EACCES");
}

/// Swaps `a` and `b` (RENAME_EXCHANGE) until `stop`; returns the count.
fn swapper(
    a: PathBuf,
    b: PathBuf,
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let ca = std::ffi::CString::new(a.as_os_str().as_bytes()).expect("no NUL");
        let cb = std::ffi::CString::new(b.as_os_str().as_bytes()).expect("no NUL");
        while !stop.load(Ordering::Relaxed) {
            common::exchange(&ca, &cb);
            swaps.fetch_add(1, Ordering::Relaxed);
        }
    })
}

fn rename_race(b: Backend) {
    let Some((_, img)) = probe() else { return };
    // One race at a time: each keeps two or three threads busy.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let default = if b == Backend::Process { 100_000 } else { 20_000 };
    let iters: u64 =
        std::env::var("CABIN_PATH_RACE_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (_t, root) = fresh();
    // ro/sw is a real directory (holding f = GOOD) or a symlink to
    // ../outdir (holding f = the secret), swapped with ro/alt.
    std::fs::create_dir(root.join("ro/sw")).expect("sw");
    std::fs::write(root.join("ro/sw/f"), "GOOD\n").expect("good");
    std::os::unix::fs::symlink("../outdir", root.join("ro/alt")).expect("alt");
    let scratch = tempfile::tempdir().expect("scratch");
    let audit = scratch.path().join("race.audit.jsonl");
    let r = root.to_str().expect("utf-8");
    let path = format!("{r}/ro/sw/f");
    let argv: Vec<Vec<u8>> =
        ["paths".to_string(), "race".into(), path.clone(), iters.to_string(), SECRET2.into()]
            .map(String::into_bytes)
            .to_vec();
    let before = outside(&root);
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let sw = swapper(root.join("ro/sw"), root.join("ro/alt"), stop.clone(), swaps.clone());
    let t0 = Instant::now();
    let (o, out) = run_confined(b, img, &argv, &root, false, audit_gate(&audit), &scratch.path().join("out"));
    let wall = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    sw.join().expect("swapper");
    let line = out.lines().last().unwrap_or_default().to_string();
    let nums: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    let [n, good, denied, other, escapes] = nums[..] else { panic!("race output: {out:?} ({:?})", o.reason) };
    let recs = read_audit(&audit);
    let events: Vec<&Value> = recs.iter().filter(|r| r["type"] == "syscall").collect();
    let audited = events.iter().filter(|r| r["served"] == "denied").count() as u64;
    let with_rule = events
        .iter()
        .filter(|r| r["rule"].as_str().is_some_and(|s| s.starts_with("[paths] ")) && r["path"] == path)
        .count() as u64;
    println!(
        "rename race on {b:?}: {n} iterations, {good} good reads, {denied} denials, {other} other errors, \
         {escapes} escapes, {audited} audit records, {} swaps, wall {:.2} s",
        swaps.load(Ordering::Relaxed),
        wall.as_secs_f64()
    );
    assert_eq!(o.exit_code, 0, "{:?}: {out}", o.reason);
    assert_eq!(n, iters);
    assert_eq!(escapes, 0, "the program read the outside secret");
    assert!(!out.contains("SECRET-MARKER"));
    assert_eq!(good + denied + other, iters);
    assert_eq!(audited, denied, "one audit record per denial");
    assert_eq!(with_rule, audited, "every denial names a [paths] rule");
    assert_eq!(outside(&root), before);
    if iters >= 1000 {
        assert!(denied > 0 && good > 0, "the race did not race: {line}");
    }
}

#[test]
fn rename_race_process() {
    rename_race(Backend::Process);
}

#[test]
fn rename_race_kvm() {
    if Backend::Kvm.available("rename_race_kvm") {
        rename_race(Backend::Kvm);
    }
}
