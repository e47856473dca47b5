//! SQLite (issue 14): the real `sqlite3` shell, built from the sqlite3-src
//! crate's sources in cargo's registry (`scripts/setup.sh` fetches them;
//! without them the test says NOT RUN), confined on both backends:
//!
//! - WAL mode in one confined process (the WAL index is a shared mapping of
//!   the `-shm` file: docs/syscalls.md "Shared mappings"): output equal to
//!   native, and the database intact for a native `sqlite3` afterwards;
//! - two writers, one native and one confined, on a database in rollback
//!   journal mode: while one holds a write transaction the other gets
//!   "database is locked", in both directions, and the final database has
//!   both writers' rows;
//! - WAL mode between two confined processes at once: a reader's snapshot
//!   and then the writer's rows, through the `-shm` file both map shared.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use cabin_monitor::RunConfig;
use common::Backend;

/// The sources: `shell.c` and `sqlite3.c` of the newest sqlite3-src in the
/// registry.
fn sources() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .flatten()
        .flat_map(|index| std::fs::read_dir(index.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("sqlite3-src-")))
        .map(|p| p.join("source"))
        .filter(|p| p.join("shell.c").is_file() && p.join("sqlite3.c").is_file())
        .collect();
    found.sort();
    found.pop()
}

/// The shell (native executable and image), built once.
fn built() -> Option<&'static (PathBuf, Vec<u8>)> {
    static B: OnceLock<Option<(PathBuf, Vec<u8>)>> = OnceLock::new();
    B.get_or_init(|| {
        let Some(src) = sources() else {
            eprintln!(
                "sqlite test NOT RUN: no sqlite3-src sources in cargo's registry; help: run scripts/setup.sh"
            );
            return None;
        };
        let dir = cabin_tests::target_dir().join("sqlite-shell");
        std::fs::create_dir_all(&dir).ok()?;
        let exe = dir.join("sqlite3");
        let stamp = dir.join("built-from");
        let from = src.display().to_string();
        if !exe.is_file() || std::fs::read_to_string(&stamp).ok().as_deref() != Some(&from) {
            let out = Command::new("gcc")
                .args(["-static", "-O1", "-DSQLITE_OMIT_LOAD_EXTENSION", "-DSQLITE_THREADSAFE=0", "-o"])
                .arg(&exe)
                .arg(src.join("shell.c"))
                .arg(src.join("sqlite3.c"))
                .arg("-lm")
                .output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => panic!("gcc failed for the sqlite3 shell: {}", String::from_utf8_lossy(&o.stderr)),
                Err(e) => {
                    eprintln!("sqlite test NOT RUN: gcc is not available ({e})");
                    return None;
                }
            }
            std::fs::write(&stamp, &from).ok()?;
        }
        let img = common::rewrite(&std::fs::read(&exe).ok()?);
        Some((exe, img))
    })
    .as_ref()
}

const SHELL: [&str; 4] = ["sqlite3", "-batch", "-init", "/dev/null"];

fn native(exe: &Path, db: &Path, sql: &str) -> (String, String, i32) {
    let out = Command::new(exe).args(&SHELL[1..]).arg(db).arg(sql).output().expect("run sqlite3 natively");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// Runs the confined shell on `db` with `sql` as its argument and `stdin`
/// (a host descriptor) as its standard input.
fn confined(b: Backend, img: &[u8], db: &Path, sql: &str, stdin: i32) -> (String, String, i32) {
    confined_as(b, img, db, sql, stdin, "")
}

/// [`confined`], its output in files named with `tag` (two runs at once).
fn confined_as(b: Backend, img: &[u8], db: &Path, sql: &str, stdin: i32, tag: &str) -> (String, String, i32) {
    let dir = db.parent().expect("a directory");
    let (out_p, err_p) = (dir.join(format!("out-{b:?}{tag}")), dir.join(format!("err-{b:?}{tag}")));
    let out = std::fs::File::create(&out_p).expect("stdout file");
    let err = std::fs::File::create(&err_p).expect("stderr file");
    let mut args: Vec<String> = SHELL.iter().map(|s| s.to_string()).collect();
    args.push(db.to_str().expect("utf-8").into());
    if !sql.is_empty() {
        args.push(sql.into());
    }
    let cfg = RunConfig {
        args,
        quiet: true,
        stdio: Some([stdin, out.as_raw_fd(), err.as_raw_fd()]),
        allow_write: vec![dir.to_path_buf()],
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).expect("confined run");
    drop((out, err));
    (
        std::fs::read_to_string(&out_p).unwrap_or_default(),
        std::fs::read_to_string(&err_p).unwrap_or_default(),
        o.exit_code,
    )
}

const WAL: &str = "PRAGMA journal_mode=WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO t(v) SELECT printf('row %d', i) FROM n;
BEGIN; UPDATE t SET v = v || '!' WHERE id % 7 = 0; COMMIT;
SELECT count(*), sum(length(v)) FROM t;
PRAGMA wal_checkpoint(TRUNCATE);
DELETE FROM t WHERE id > 1500;
SELECT count(*), max(id) FROM t;
PRAGMA integrity_check;";

fn wal_mode_in_one_confined_process(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let (n, c) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let want = native(exe, &n.path().join("wal.db"), WAL);
    assert_eq!(want.2, 0, "{want:?}");
    let db = c.path().join("wal.db");
    let got = confined(b, img, &db, WAL, 0);
    assert_eq!(got, want, "{b:?}: confined (left) vs native (right)");
    // A native shell reads what the confined one left.
    let check =
        native(exe, &db, "PRAGMA journal_mode; SELECT count(*), max(id) FROM t; PRAGMA integrity_check;");
    assert_eq!(check.0, "wal\n1500|1500\nok\n", "{check:?}");
}

/// A pipe: (read end for a program's stdin, write end).
fn pipe() -> (OwnedFd, std::fs::File) {
    let mut p = [0i32; 2];
    // SAFETY: pipe2 writes two ints into `p`.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors we own.
    unsafe { (OwnedFd::from_raw_fd(p[0]), std::fs::File::from(OwnedFd::from_raw_fd(p[1]))) }
}

fn two_writers_native_and_confined_get_database_is_locked(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let db = t.path().join("two.db");
    assert_eq!(native(exe, &db, "CREATE TABLE t(who TEXT);").2, 0);

    // 1. The native shell holds a write transaction: the confined writer is refused.
    let mut holder = Command::new(exe)
        .args(&SHELL[1..])
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("native sqlite3");
    let mut to_native = holder.stdin.take().expect("stdin");
    let mut from_native = BufReader::new(holder.stdout.take().expect("stdout"));
    writeln!(to_native, "BEGIN IMMEDIATE; INSERT INTO t VALUES('native');\n.print held").expect("write");
    let mut line = String::new();
    from_native.read_line(&mut line).expect("read");
    assert_eq!(line, "held\n");
    let refused = confined(b, img, &db, "INSERT INTO t VALUES('confined, refused');", 0);
    assert!(refused.1.contains("database is locked"), "{b:?}: {refused:?}");
    assert!(!refused.1.contains("disk I/O error"), "{b:?}: {refused:?}");
    writeln!(to_native, "COMMIT;\n.print committed").expect("write");
    line.clear();
    from_native.read_line(&mut line).expect("read");
    assert_eq!(line, "committed\n");

    // 2. The confined shell holds one (its commands come through a pipe as
    // its stdin): the native writer is refused, then the confined commits.
    let (stdin_r, mut stdin_w) = pipe();
    let db2 = db.clone();
    let img2 = img.clone();
    let run = std::thread::spawn(move || confined(b, &img2, &db2, "", stdin_r.as_raw_fd()));
    writeln!(stdin_w, "BEGIN IMMEDIATE; INSERT INTO t VALUES('confined');\n.print held").expect("write");
    // Wait until the confined shell says it holds the transaction.
    let held = shows(&t.path().join(format!("out-{b:?}")), "held");
    assert!(held, "{b:?}: the confined shell never took its transaction");
    writeln!(to_native, "INSERT INTO t VALUES('native, refused');\n.print tried").expect("write");
    line.clear();
    from_native.read_line(&mut line).expect("read");
    assert_eq!(line, "tried\n");
    writeln!(stdin_w, "COMMIT;\n.quit").expect("write");
    drop(stdin_w);
    let ended = run.join().expect("the confined run");
    assert_eq!(ended.2, 0, "{b:?}: {ended:?}");
    drop(to_native);
    let status = holder.wait_with_output().expect("native sqlite3 ends");
    let native_err = String::from_utf8_lossy(&status.stderr).into_owned();
    assert!(native_err.contains("database is locked"), "{b:?}: the native writer: {native_err}");

    let fin = native(exe, &db, "SELECT who FROM t ORDER BY rowid; PRAGMA integrity_check;");
    assert_eq!(fin.0, "native\nconfined\nok\n", "{b:?}: {fin:?}");
}

/// Whether file `path` comes to hold `word` within 30 s (a confined
/// shell's output, written as it runs).
fn shows(path: &Path, word: &str) -> bool {
    for _ in 0..3000 {
        if std::fs::read_to_string(path).unwrap_or_default().contains(word) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// WAL mode between two confined processes at once (two runs): a reader
/// holds a read transaction while a writer appends; the reader's snapshot
/// stays as it was until it ends, then it sees the new rows. Both go
/// through the WAL index, the `-shm` file both map `MAP_SHARED`: a copy
/// per process (the KVM backend before issue 14's live mappings) would
/// not show the reader the writer's commit.
fn wal_between_two_confined_processes(b: Backend) {
    let Some((exe, img)) = built() else { return };
    let t = tempfile::tempdir().expect("tempdir");
    let db = t.path().join("wal2.db");
    let setup = "PRAGMA journal_mode=WAL; CREATE TABLE t(v INTEGER); \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) \
                 INSERT INTO t SELECT i FROM n;";
    assert_eq!(native(exe, &db, setup).0, "wal\n");
    let (stdin_r, mut stdin_w) = pipe();
    let (db2, img2) = (db.clone(), img.clone());
    let reader = std::thread::spawn(move || confined_as(b, &img2, &db2, "", stdin_r.as_raw_fd(), "-reader"));
    writeln!(stdin_w, "BEGIN; SELECT count(*) FROM t;\n.print held").expect("write");
    let held = shows(&t.path().join(format!("out-{b:?}-reader")), "held");
    assert!(held, "{b:?}: the confined reader never took its transaction");
    let add = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 50) \
               INSERT INTO t SELECT 1000 + i FROM n; SELECT count(*) FROM t;";
    let writer = confined_as(b, img, &db, add, 0, "-writer");
    assert_eq!(writer, ("150\n".into(), String::new(), 0), "{b:?}: the confined writer");
    writeln!(stdin_w, "SELECT count(*) FROM t; COMMIT; SELECT count(*), sum(v) FROM t;\n.quit")
        .expect("write");
    drop(stdin_w);
    let got = reader.join().expect("the confined reader");
    assert_eq!(got, ("100\nheld\n100\n150|56325\n".into(), String::new(), 0), "{b:?}: the confined reader");
    let fin = native(exe, &db, "SELECT count(*) FROM t; PRAGMA integrity_check;");
    assert_eq!(fin.0, "150\nok\n", "{b:?}: {fin:?}");
}

on_both_backends!(
    wal_mode_in_one_confined_process,
    two_writers_native_and_confined_get_database_is_locked,
    wal_between_two_confined_processes,
);
