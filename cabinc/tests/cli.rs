//! The command-line conventions of `cabinc` (issue 18): exit statuses, one
//! `--format json` everywhere, `-` for stdout, sizes with units, build safety,
//! the denied-path hint, notices only with `-v`, the build warning for sites
//! of refused calls, generated policies that grant only what the run used,
//! completions and manual pages, finding the catalog, and `cabinc bench`'s
//! warnings. Runs go through both backends where they run a program (KVM:
//! NOT RUN without a usable /dev/kvm).
//!
//! Needs gcc with a static libc (the programs are compiled per test).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cabin_tests::tempfile::TempDir;

fn cabinc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cabinc"));
    c.env_remove("CABIN_CATALOG").env_remove("CABIN_CATALOG_PATH");
    c
}

fn tempdir() -> TempDir {
    cabin_tests::tempfile::tempdir().expect("tempdir")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn describe(o: &Output) -> String {
    let (out, err) = text(o);
    format!("status {:?}\nstdout: {out}\nstderr: {err}", o.status.code())
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(o)))
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

/// Compiles `src` static with gcc into `dir/name`.
fn compile(dir: &Path, name: &str, src: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).expect("write the C source");
    let exe = dir.join(name);
    let o = Command::new("gcc").args(["-static", "-O1", "-o"]).arg(&exe).arg(&c).output().expect("run gcc");
    assert!(o.status.success(), "gcc failed: {}", describe(&o));
    exe
}

/// Compiles and builds `src`; returns (executable, image).
fn image(dir: &Path, name: &str, src: &str) -> (PathBuf, PathBuf) {
    let exe = compile(dir, name, src);
    let img = dir.join(format!("{name}.cabin"));
    let o = cabinc().arg("build").arg(&exe).arg("-o").arg(&img).output().expect("cabinc build");
    assert!(o.status.success(), "{}", describe(&o));
    (exe, img)
}

const EXIT3: &str = r#"
#include <stdio.h>
int main(int argc, char **argv) { printf("argc=%d argv0=%s\n", argc, argv[0]); return 3; }
"#;

/// Usage errors of `cabinc run` exit 125 (2 is a program's status too); of
/// the other subcommands 2; the program's own status passes through and
/// cabinc's own errors in `run` are 125; `--help` says so.
#[test]
fn exit_statuses() {
    let t = tempdir();
    let (_, img) = image(t.path(), "exit3", EXIT3);
    for args in [
        &["run", "--no-such-option"][..],
        &["run"],
        &["run", "--backend", "vax", "x"],
        &["run", "--mem", "12X", "x"],
    ] {
        let o = cabinc().args(args).output().expect("cabinc");
        assert_eq!(o.status.code(), Some(125), "{args:?}: {}", describe(&o));
    }
    let o = cabinc().args(["inspect", "--no-such-option"]).output().expect("cabinc");
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    let o = cabinc().arg("--help").output().expect("cabinc");
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o).0.contains("uses 125 for every error of its own, usage errors included"),
        "{}",
        text(&o).0
    );
    let o = cabinc().args(["run", "--help"]).output().expect("cabinc");
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    for backend in backends() {
        let o = cabinc().args(["run", "--backend", backend]).arg(&img).output().expect("run");
        assert_eq!(o.status.code(), Some(3), "{backend}: {}", describe(&o));
        let o = cabinc()
            .args(["run", "--backend", backend, "--env", "NOEQUALS"])
            .arg(&img)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(125), "{backend}: {}", describe(&o));
        let o = cabinc()
            .args(["run", "--backend", backend])
            .arg(t.path().join("missing.cabin"))
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(127), "{backend}: {}", describe(&o));
    }
}

/// `--format json` is accepted by every subcommand that prints a report and
/// prints JSON; the old spellings still work and are hidden from `--help`.
#[test]
fn format_json_everywhere() {
    let t = tempdir();
    let exe = compile(t.path(), "exit3", EXIT3);
    let img = t.path().join("exit3.cabin");
    let o = cabinc()
        .arg("build")
        .arg(&exe)
        .arg("-o")
        .arg(&img)
        .args(["--format", "json"])
        .output()
        .expect("build");
    let v = json(&o);
    assert_eq!(v["success"], true, "{v}");
    assert!(v["refused_calls"].is_array(), "{v}");
    // The old flag, hidden.
    let o = cabinc()
        .arg("build")
        .arg(&exe)
        .arg("-o")
        .arg(&img)
        .args(["--message-format", "json"])
        .output()
        .expect("build");
    assert_eq!(json(&o)["success"], true);
    let help = text(&cabinc().args(["build", "--help"]).output().expect("help")).0;
    assert!(help.contains("--format") && !help.contains("--message-format"), "{help}");
    let help = text(&cabinc().args(["run", "--help"]).output().expect("help")).0;
    assert!(help.contains("--format") && !help.contains("--trace-format"), "{help}");

    let policy = t.path().join("p.toml");
    std::fs::write(&policy, "version = 1\n[default]\naction = \"allow\"\n[syscalls]\ndeny = [\"socket\"]\n")
        .expect("w");
    let p = policy.to_str().expect("utf-8");
    let i = img.to_str().expect("utf-8");
    let cases: &[&[&str]] = &[
        &["inspect", i, "--format", "json"],
        &["measure", i, "--format", "json"],
        &["policy", "check", p, "--format", "json"],
        &["policy", "explain", p, "--format", "json"],
        &["policy", "groups", "--format", "json"],
        &["syscalls", "--format", "json"],
        &["catalog", "list", "--format", "json"],
    ];
    for args in cases {
        let o = cabinc().args(*args).env("CABIN_CACHE_DIR", t.path().join("cache")).output().expect("cabinc");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", describe(&o));
        let v = json(&o);
        assert!(v.is_object() || v.is_array(), "{args:?}: {v}");
    }
    let m = json(&cabinc().args(["measure", i, "--format", "json"]).output().expect("measure"));
    assert_eq!(m["measurement"].as_str().map(str::len), Some(96));
    let s = json(&cabinc().args(["syscalls", "--format", "json"]).output().expect("syscalls"));
    let fork = s.as_array().and_then(|a| a.iter().find(|r| r["name"] == "fork")).expect("fork row");
    assert_eq!(fork["refused"], true);
    let c = json(&cabinc().args(["policy", "check", p, "--format", "json"]).output().expect("check"));
    assert_eq!(c["ok"], true);

    // A run's trace as JSON lines with --format json.
    for backend in backends() {
        let trace = t.path().join(format!("{backend}.jsonl"));
        let o = cabinc()
            .args(["run", "--backend", backend, "--format", "json"])
            .arg(format!("--trace={}", trace.display()))
            .arg(&img)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
        let lines = std::fs::read_to_string(&trace).expect("trace");
        for l in lines.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        }
        assert!(lines.contains("\"type\":\"exit\""), "{lines}");
    }
}

/// `-` is stdout for every output path: `build -o -`, `--plan -`,
/// `run --stats -`, `--trace=-`, `--audit -`, `policy generate -o -`.
#[test]
fn dash_is_stdout() {
    let t = tempdir();
    let (exe, img) = image(t.path(), "exit3", EXIT3);
    let o = cabinc().arg("build").arg(&exe).args(["-o", "-"]).current_dir(t.path()).output().expect("build");
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(o.stdout, std::fs::read(&img).expect("image"), "the image on stdout");
    assert!(!t.path().join("-").exists());
    let o = cabinc()
        .arg("build")
        .arg(&exe)
        .args(["-o"])
        .arg(t.path().join("b.cabin"))
        .args(["--plan", "-"])
        .output()
        .expect("build");
    assert!(json(&o)["sites"].is_array(), "{}", describe(&o));
    for backend in backends() {
        let o = cabinc()
            .args(["run", "--backend", backend, "--stats", "-"])
            .arg(&img)
            .current_dir(t.path())
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
        let out = text(&o).0;
        let (first, stats) = out.split_once('\n').expect("program line");
        assert_eq!(first, "argc=1 argv0=exit3.cabin");
        let v: serde_json::Value = serde_json::from_str(stats).unwrap_or_else(|e| panic!("{e}: {stats}"));
        assert!(v.is_object(), "{v}");
        assert!(!t.path().join("-").exists(), "no file named -");
        let o = cabinc()
            .args(["run", "--backend", backend, "--format", "json", "--trace=-"])
            .arg(&img)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
        let out = text(&o).0;
        assert!(out.lines().any(|l| l.starts_with('{') && l.contains("\"type\":\"start\"")), "{out}");
        let o = cabinc()
            .args(["run", "--backend", backend, "--audit", "-", "--arg0", "named"])
            .arg(&img)
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
        let out = text(&o).0;
        assert!(out.lines().any(|l| l == "argc=1 argv0=named"), "{}", describe(&o));
        assert!(
            out.lines().any(|l| l.starts_with('{') && l.contains("\"audit_dropped\"")),
            "{}",
            describe(&o)
        );
    }
}

/// Sizes take units: `--mem 1G`, `1GiB`, `512M`; `--audit-max-bytes 64K`.
#[test]
fn sizes_take_units() {
    let t = tempdir();
    let (_, img) = image(t.path(), "exit3", EXIT3);
    for backend in backends() {
        for mem in ["1G", "1GiB", "512M", "300MB"] {
            let o = cabinc()
                .args(["run", "--backend", backend, "--mem", mem, "--audit-max-bytes", "64K"])
                .arg(&img)
                .output()
                .expect("run");
            assert_eq!(o.status.code(), Some(3), "--mem {mem}: {}", describe(&o));
        }
    }
    let o = cabinc().args(["run", "--mem", "1Q"]).arg(&img).output().expect("run");
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o).1.contains("unknown size unit"), "{}", describe(&o));
}

/// `-o` defaults to NAME.cabin in the current directory; the input is never
/// overwritten (by its own name, a hard link or a symlink); a failed build
/// leaves nothing behind.
#[test]
fn build_output_is_safe() {
    let t = tempdir();
    let exe = compile(t.path(), "prog", EXIT3);
    let out_dir = t.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let o = cabinc().arg("build").arg(&exe).current_dir(&out_dir).output().expect("build");
    assert!(o.status.success(), "{}", describe(&o));
    assert!(out_dir.join("prog.cabin").is_file(), "{}", describe(&o));
    assert!(text(&o).1.contains("prog.cabin"), "{}", describe(&o));

    let before = std::fs::read(&exe).expect("input");
    let link = t.path().join("hard");
    std::fs::hard_link(&exe, &link).expect("hard link");
    let sym = t.path().join("sym");
    std::os::unix::fs::symlink(&exe, &sym).expect("symlink");
    for out in [&exe, &link, &sym] {
        let o = cabinc().arg("build").arg(&exe).arg("-o").arg(out).output().expect("build");
        assert_eq!(o.status.code(), Some(1), "-o {}: {}", out.display(), describe(&o));
        assert!(text(&o).1.contains("would overwrite the program it rewrites"), "{}", describe(&o));
    }
    assert_eq!(std::fs::read(&exe).expect("input"), before, "the input is unchanged");

    // A failed build (not an ELF) writes no output and leaves no temporary file.
    let bad = t.path().join("bad");
    std::fs::write(&bad, b"not an executable").expect("w");
    let dir = t.path().join("fail");
    std::fs::create_dir(&dir).expect("mkdir");
    let o = cabinc().arg("build").arg(&bad).arg("-o").arg(dir.join("bad.cabin")).output().expect("build");
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0, "nothing left behind");
}

/// `cabinc build` warns about sites of calls the backends refuse (ENOSYS),
/// naming the call and where; JSON lists them.
#[test]
fn build_warns_about_refused_call_sites() {
    let t = tempdir();
    let src = r#"
int main(int argc, char **argv) {
    long r = 0;
    if (argc > 5) {
        /* fork (57) by a constant-number site; never reached */
        __asm__ volatile("mov $57, %%eax\n\tsyscall" : "=a"(r) : : "rcx", "r11", "memory");
    }
    return (int)r;
}
"#;
    let exe = compile(t.path(), "forker", src);
    let o = cabinc().arg("build").arg(&exe).arg("-o").arg(t.path().join("f.cabin")).output().expect("build");
    assert!(o.status.success(), "{}", describe(&o));
    let err = text(&o).1;
    assert!(
        err.contains("warning: ") && err.contains("calls the backends refuse") && err.contains("fork"),
        "{err}"
    );
    let o = cabinc()
        .arg("build")
        .arg(&exe)
        .arg("-o")
        .arg(t.path().join("f.cabin"))
        .args(["--format", "json"])
        .output()
        .expect("build");
    let v = json(&o);
    let names: Vec<&str> =
        v["refused_calls"].as_array().expect("list").iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(names.contains(&"fork"), "{v}");
}

const TWO_DENIALS: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 1) {
        /* A hostile path: control bytes for the terminal, then 20 000 more refusals. */
        for (int i = 0; i < 20000; i++) open(argv[1], O_RDONLY);
        return 0;
    }
    const char *paths[] = { "/etc/hostname", "/etc/passwd", "/etc/hostname" };
    for (int i = 0; i < 3; i++) {
        int fd = open(paths[i], O_RDONLY);
        printf("%s: %s\n", paths[i], fd < 0 ? strerror(errno) : "opened");
    }
    int fd = open("/tmp/cabin-cli-never-allowed", O_WRONLY | O_CREAT, 0600);
    printf("create: %s\n", fd < 0 ? strerror(errno) : "created");
    return 0;
}
"#;

/// The first path the path rules refuse gets one hint on stderr, naming the
/// path and the option to add; later refusals none; `-q` none at all. The
/// program still sees EACCES.
#[test]
fn denied_path_hint_once() {
    let t = tempdir();
    let (_, img) = image(t.path(), "denials", TWO_DENIALS);
    for backend in backends() {
        let o = cabinc().args(["run", "--backend", backend]).arg(&img).output().expect("run");
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{backend}: {}", describe(&o));
        assert_eq!(out.matches("Permission denied").count(), 4, "{backend}: {out}");
        let hints: Vec<&str> = err.lines().filter(|l| l.starts_with("cabin: denied")).collect();
        assert_eq!(
            hints,
            vec!["cabin: denied read of /etc/hostname: outside --allow-read; add --allow-read /etc"],
            "{backend}: {err}"
        );
        let o = cabinc().args(["run", "-q", "--backend", backend]).arg(&img).output().expect("run");
        assert!(!text(&o).1.contains("cabin: denied"), "{backend}: {}", describe(&o));
        // A program cannot write to the terminal through the hint, nor make more than one.
        let o = cabinc()
            .args(["run", "--backend", backend])
            .arg(&img)
            .args(["--", "/etc/\x1b[2J\x1b]0;owned\x07"])
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(0), "{backend}: {}", describe(&o));
        assert!(
            !o.stderr.contains(&0x1b) && !o.stderr.contains(&0x07),
            "{backend}: raw control bytes: {}",
            describe(&o)
        );
        let err = text(&o).1;
        assert_eq!(err.lines().count(), 1, "{backend}: {err}");
        assert!(
            err.starts_with("cabin: denied read of /etc/\\x1b[2J\\x1b]0;owned\\x07: outside --allow-read"),
            "{backend}: {err}"
        );
    }
}

/// The backend and execute-only notices print only with `-v`.
#[test]
fn notices_only_with_verbose() {
    let t = tempdir();
    let (_, img) = image(t.path(), "exit3", EXIT3);
    for backend in backends() {
        let o = cabinc().args(["run", "--backend", backend]).arg(&img).output().expect("run");
        assert_eq!(o.status.code(), Some(3));
        assert!(!text(&o).1.contains("cabin: "), "{backend}: {}", describe(&o));
        let o = cabinc().args(["run", "-v", "--backend", backend]).arg(&img).output().expect("run");
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(text(&o).1.matches("cabin: execute-only").count(), 1, "{backend}: {}", describe(&o));
    }
    let o = cabinc().args(["run", "-v", "--backend", "auto"]).arg(&img).output().expect("run");
    assert_eq!(text(&o).1.matches("cabin: backend").count(), 1, "{}", describe(&o));
}

/// `-v` says per tree how device opens are kept out: by the kernel (a
/// nodev clone of the tree's mount, which root can always make) or by the
/// monitor's probe (a pseudo file system such as `/proc`).
#[test]
fn verbose_says_how_device_opens_are_refused() {
    let t = tempdir();
    let (_, img) = image(t.path(), "exit3", EXIT3);
    let data = t.path().canonicalize().expect("canonical").join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let o = cabinc()
        .args(["run", "-v", "--backend", "process", "--allow-read"])
        .arg(&data)
        .args(["--allow-read", "/proc"])
        .arg(&img)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    let err = text(&o).1;
    let tree = format!("cabin: device opens in {}: refused by the ", data.display());
    assert!(err.contains(&tree), "{}", describe(&o));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(err.contains(&format!("{tree}kernel (")), "{}", describe(&o));
    }
    assert!(
        err.contains("cabin: device opens in /proc: refused by the probe (a pseudo file system"),
        "{}",
        describe(&o)
    );
}

/// A policy generated from a trace grants no `.` for an empty-path
/// `newfstatat`, no `/proc/self` for a failed readlink, the file read (not
/// its directory), and directories only where the run used them.
#[test]
fn policy_generate_grants_only_what_was_used() {
    let t = tempdir();
    let data = t.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("in.txt"), "hello\n").expect("w");
    let src = format!(
        r#"
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {{
    char buf[64];
    struct stat st;
    int fd = open("{}/in.txt", O_RDONLY);
    fstatat(fd, "", &st, 0x1000 /* AT_EMPTY_PATH */);
    ssize_t n = read(fd, buf, sizeof buf);
    printf("%zd\n", n);
    return readlink("/proc/self/exe", buf, sizeof buf) > 0;
}}
"#,
        data.display()
    );
    let (_, img) = image(t.path(), "reader", &src);
    let trace = t.path().join("run.jsonl");
    let o = cabinc()
        .args(["run", "--backend", "process", "--format", "json"])
        .arg(format!("--trace={}", trace.display()))
        .arg("--allow-read")
        .arg(&data)
        .arg(&img)
        .output()
        .expect("run");
    assert_eq!(text(&o).0, "6\n", "{}", describe(&o));
    let o = cabinc()
        .args(["policy", "generate", "--from-trace"])
        .arg(&trace)
        .args(["-o", "-"])
        .output()
        .expect("generate");
    assert!(o.status.success(), "{}", describe(&o));
    let policy = text(&o).0;
    let read_line = policy.lines().find(|l| l.starts_with("read = ")).unwrap_or_else(|| panic!("{policy}"));
    // The file the run read is granted alone, not its directory (issue 18).
    assert_eq!(read_line, format!("read = [\"{}\"]", data.join("in.txt").display()), "{policy}");
    assert!(!policy.contains("\".\"") && !policy.contains("/proc/self\""), "{policy}");
    assert!(text(&o).1.contains("in.txt"), "the report names the file grant: {}", describe(&o));
    // And the generated policy runs the program as before.
    let p = t.path().join("gen.toml");
    std::fs::write(&p, &policy).expect("write policy");
    let o =
        cabinc().args(["run", "--backend", "process", "--policy"]).arg(&p).arg(&img).output().expect("run");
    assert_eq!(text(&o).0, "6\n", "{}", describe(&o));
}

/// `cabinc completions SHELL` and `cabinc man DIR`.
#[test]
fn completions_and_manual_pages() {
    let o = cabinc().args(["completions", "bash"]).output().expect("completions");
    assert!(o.status.success() && text(&o).0.contains("_cabinc"), "{}", describe(&o));
    let o = cabinc().args(["completions", "zsh"]).output().expect("completions");
    assert!(o.status.success() && text(&o).0.contains("#compdef cabinc"), "{}", describe(&o));
    let t = tempdir();
    let o = cabinc().arg("man").arg(t.path()).output().expect("man");
    assert!(o.status.success(), "{}", describe(&o));
    for page in ["cabinc.1", "cabinc-run.1", "cabinc-build.1", "cabinc-policy.1"] {
        let text = std::fs::read_to_string(t.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let run = std::fs::read_to_string(t.path().join("cabinc-run.1")).expect("page");
    assert!(run.contains("allow\\-read"), "{run}");
    assert!(run.contains("cabinc\\-run \\- Run an image confined"), "{run}");
}

/// The catalog is found from `$CABIN_CATALOG`, or beside an installed
/// binary (PREFIX/share/cabin/catalog), never from a compiled-in checkout;
/// with none, a clear error.
#[test]
fn catalog_is_found_from_the_install_or_the_environment() {
    let t = cabin_tests::tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let home = t.path().join("home");
    std::fs::create_dir(&home).expect("mkdir");
    let env = |c: &mut Command| {
        c.env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("CABIN_CACHE_DIR", home.join("cache"));
    };
    // An "installed" cabinc: PREFIX/bin/cabinc (a hard link) without a catalog.
    let prefix = t.path().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).expect("mkdir");
    let bin = prefix.join("bin/cabinc");
    std::fs::hard_link(env!("CARGO_BIN_EXE_cabinc"), &bin).expect("hard link");
    let mut c = Command::new(&bin);
    env(&mut c);
    let o = c.args(["catalog", "list"]).env_remove("CABIN_CATALOG").output().expect("list");
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(
        text(&o).1.contains("no catalog entries found") && text(&o).1.contains("CABIN_CATALOG"),
        "{}",
        describe(&o)
    );
    // With PREFIX/share/cabin/catalog it lists that.
    let share = prefix.join("share/cabin/catalog");
    std::fs::create_dir_all(&share).expect("mkdir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog");
    std::fs::copy(repo.join("syscalls.toml"), share.join("syscalls.toml")).expect("copy");
    let mut c = Command::new(&bin);
    env(&mut c);
    let o = c.args(["catalog", "list"]).env_remove("CABIN_CATALOG").output().expect("list");
    assert!(o.status.success(), "{}", describe(&o));
    assert!(text(&o).0.contains("syscalls") && !text(&o).0.contains("wolfcrypt"), "{}", describe(&o));
    // $CABIN_CATALOG wins.
    let mut c = Command::new(&bin);
    env(&mut c);
    let o = c.args(["catalog", "list"]).env("CABIN_CATALOG", &repo).output().expect("list");
    assert!(text(&o).0.contains("wolfcrypt"), "{}", describe(&o));
}

/// `cabinc bench` warns when `--runs 1` is used (and when the machine is
/// loaded: unit-tested in bench::stats).
#[test]
fn bench_warns_about_one_run() {
    let t = tempdir();
    let o = cabinc()
        .args(["bench", "--runs", "1", "--backend", "passthrough", "no-such-entry", "--out"])
        .arg(t.path())
        .env("CABIN_CACHE_DIR", t.path().join("cache"))
        .output()
        .expect("bench");
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(text(&o).1.contains("--runs 1: one run per side"), "{}", describe(&o));
}

/// Reads the file argv[1] (prints it), then tries argv[2] (a sibling) and
/// lists argv[3] (the directory): prints each errno.
const ONE_FILE: &str = r#"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    char b[256];
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { printf("granted: errno %d\n", errno); return 1; }
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    b[n > 0 ? n : 0] = 0;
    printf("granted: %s", b);
    fd = open(argv[2], O_RDONLY);
    printf("sibling: %s\n", fd < 0 ? "refused" : "READ");
    DIR *d = opendir(argv[3]);
    printf("listing: %s\n", d ? "LISTED" : "refused");
    return 0;
}
"#;

/// `--allow-read FILE` grants that file alone (issue 18): the program reads
/// it and is refused its sibling and its directory's listing, on both
/// backends; `policy check` and `explain` show the grant as a file.
#[test]
fn allow_read_one_file() {
    let t = tempdir();
    let (_, img) = image(t.path(), "onefile", ONE_FILE);
    let data = t.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    std::fs::write(data.join("f.txt"), "hello\n").expect("f.txt");
    std::fs::write(data.join("secret.txt"), "secret\n").expect("secret.txt");
    let (f, s) = (data.join("f.txt"), data.join("secret.txt"));
    for backend in backends() {
        let o = cabinc()
            .args(["run", "-q", "--backend", backend, "--allow-read"])
            .arg(&f)
            .arg(&img)
            .arg("--")
            .args([&f, &s, &data])
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(0), "{backend}: {}", describe(&o));
        assert_eq!(text(&o).0, "granted: hello\nsibling: refused\nlisting: refused\n", "{backend}");
    }
    let p = t.path().join("p.toml");
    let toml = format!("version = 1\n[default]\naction = \"allow\"\n[paths]\nread = [{:?}]\n", f.display());
    std::fs::write(&p, toml).expect("policy");
    let o = cabinc().args(["policy", "check"]).arg(&p).output().expect("check");
    assert!(text(&o).0.contains("0 read and 0 write trees, 1 read and 0 write files"), "{}", describe(&o));
    let o = cabinc().args(["policy", "explain"]).arg(&p).output().expect("explain");
    assert!(text(&o).0.contains("(file: only this object"), "{}", describe(&o));
}

/// A server workload (`[server]`, issue 19) end to end: busybox httpd is the
/// server on a free `{port}`, busybox wget the client; the score (with its
/// own duration unit) comes from the client's output on native and
/// passthrough runs, and the server is stopped after each run. A client that
/// is not installed is one error naming the package.
#[test]
fn bench_server_workload() {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        cabin_tests::not_run(
            "bench server workload",
            "/bin/busybox is missing (apt-get install busybox-static)",
        );
        return;
    }
    let t = tempdir();
    let cat = t.path().join("catalog");
    let www = t.path().join("www");
    std::fs::create_dir_all(&cat).expect("catalog dir");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("score.txt"), "answer 1.5s\n").expect("score.txt");
    let manifest = |client: &str| {
        format!(
            r#"format = 1
name = "busybox-httpd"
description = "busybox httpd under busybox wget"
source = {{ path = "/bin" }}
build = {{ commands = ["cp {{source}}/busybox {{out}}"] }}
[run]
args = ["httpd", "-f", "-p", "127.0.0.1:{{port}}", "-h", {www:?}]
timeout_secs = 60
[server]
client = [{client}, "wget", "-q", "-O", "-", "http://127.0.0.1:{{port}}/score.txt"]
client_package = "busybox-static"
stop_timeout_secs = 5
[[scores]]
kind = "regex"
name = "answer"
regex = '^answer (?P<value>[0-9.]+)(?P<unit>ms|s)$'
unit = "ms"
higher_is_better = false
"#,
            www = www.display().to_string()
        )
    };
    std::fs::write(cat.join("busybox-httpd.toml"), manifest("\"/bin/busybox\"")).expect("manifest");
    let bench = |out: &str| {
        cabinc()
            .args(["bench", "busybox-httpd", "--runs", "2", "--backend", "passthrough", "--catalog"])
            .arg(&cat)
            .arg("--out")
            .arg(t.path().join(out))
            .env("CABIN_CACHE_DIR", t.path().join("cache"))
            .output()
            .expect("bench")
    };
    let o = bench("out");
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("out/bench.json")).expect("bench.json"))
            .expect("json");
    let item = &report["items"][0];
    assert_eq!(item["score"], "answer", "{report}");
    assert_eq!(
        (item["native"].as_f64(), item["confined"].as_f64()),
        (Some(1500.0), Some(1500.0)),
        "{report}"
    );
    assert_eq!(item["runs"], 2, "{report}");

    std::fs::write(cat.join("busybox-httpd.toml"), manifest("\"cabin-no-such-load-generator\""))
        .expect("manifest");
    let o = bench("out2");
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let line = "error: the load generator `cabin-no-such-load-generator` of busybox-httpd is not installed\nhelp: apt-get install busybox-static\n";
    assert_eq!(text(&o).1.matches(line).count(), 1, "{}", describe(&o));
    assert!(!text(&o).1.contains("Running"), "no run starts: {}", describe(&o));
}

const ARGS: &str = r#"
#include <stdio.h>
int main(int argc, char **argv) { for (int i = 0; i < argc; i++) printf("[%s]", argv[i]); printf("\n"); return 3; }
"#;

/// Whether every entry in `dir` is a valid image of the input its name's
/// hash names (what an attack on the build must never break).
fn entries_check(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("cache dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp-"), "a temporary file was left: {name}");
        if name == "verified" && p.is_dir() {
            // The verified-measurement cache's own directory
            // (docs/measurement.md), not an image.
            continue;
        }
        let digest: [u8; 32] = hex::decode(&name[..64]).expect("hex").try_into().expect("32 bytes");
        let image = std::fs::read(&p).expect("read");
        cabin_rewriter::cache::check_entry(&image, &digest).unwrap_or_else(|e| panic!("{name}: {e}"));
        n += 1;
    }
    n
}

/// `cabinc run ./prog a b` (issue 20): a plain static ELF runs through the
/// image cache on both backends, arguments after it (options too) go to
/// the program, a `--` after the image is dropped; `-v` says "building"
/// the first time and "from the cache" after (the entry's mtime
/// unchanged); a dynamic ELF is refused with `cabinc build`'s words;
/// `cabinc cache list|clean`.
#[test]
fn run_plain_executables_through_the_cache() {
    let t = tempdir();
    let prog = compile(t.path(), "args", ARGS);
    let cache = t.path().join("cache");
    let images = cache.join("cabin").join("images");
    let run = |extra: &[&str], args: &[&str]| {
        cabinc()
            .env("XDG_CACHE_HOME", &cache)
            .current_dir(t.path())
            .arg("run")
            .args(extra)
            .arg("./args")
            .args(args)
            .output()
            .expect("cabinc run")
    };
    let o = run(&["-q"], &["a", "-v", "--", "b c"]);
    assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
    assert_eq!(text(&o), ("[args][a][-v][--][b c]\n".into(), String::new()), "quiet: no building message");
    // cabinc's own options end at the image: right after it they are the program's.
    let o = run(&["-q"], &["-v", "--backend", "x"]);
    assert_eq!(text(&o).0, "[args][-v][--backend][x]\n", "{}", describe(&o));
    let o = run(&["-q"], &["--", "--", "x"]);
    assert_eq!(text(&o).0, "[args][--][x]\n", "{}", describe(&o));
    assert_eq!(entries_check(&images), 1);
    let entry = std::fs::read_dir(&images).expect("dir").next().expect("entry").expect("entry").path();
    let mtime = || std::fs::metadata(&entry).and_then(|m| m.modified()).expect("mtime");
    let before = mtime();
    std::fs::remove_dir_all(&cache).expect("rm");
    for (i, backend) in backends().into_iter().enumerate() {
        let o = run(&["-v", "--backend", backend], &["--", "x"]);
        assert_eq!(o.status.code(), Some(3), "{backend}: {}", describe(&o));
        let (out, err) = text(&o);
        assert_eq!(out, "[args][x]\n", "{backend}");
        if i == 0 {
            assert!(err.contains("cabin: building ./args (cached for next time"), "{backend}: {err}");
        } else {
            assert!(err.contains("from the cache") && !err.contains("building"), "{backend}: {err}");
        }
    }
    let _ = before;
    let before = mtime();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let o = run(&["-v", "--backend", "process"], &[]);
    assert!(text(&o).1.contains("from the cache"), "{}", describe(&o));
    assert_eq!(mtime(), before, "a hit does not rewrite the entry");
    // An image still runs as it is (with or without `--`).
    let img = t.path().join("args.cabin");
    let b = cabinc().arg("build").arg(&prog).arg("-o").arg(&img).output().expect("build");
    assert!(b.status.success(), "{}", describe(&b));
    let o = cabinc()
        .args(["run", "-q", "--backend", "process"])
        .arg(&img)
        .args(["--", "-q"])
        .output()
        .expect("run");
    assert_eq!(text(&o).0, "[args.cabin][-q]\n", "{}", describe(&o));
    // A dynamic ELF: `cabinc build`'s error line, exit 126.
    let dynamic = t.path().join("dyn");
    let c = t.path().join("args.c");
    let g = Command::new("gcc").arg("-o").arg(&dynamic).arg(&c).output().expect("gcc");
    assert!(g.status.success(), "{}", describe(&g));
    let o = cabinc().env("XDG_CACHE_HOME", &cache).arg("run").arg(&dynamic).output().expect("run");
    assert_eq!(o.status.code(), Some(126), "{}", describe(&o));
    let b = cabinc()
        .arg("build")
        .arg(&dynamic)
        .arg("-o")
        .arg(t.path().join("dyn.cabin"))
        .output()
        .expect("build");
    let error_line = |o: &Output| text(o).1.lines().find(|l| l.starts_with("error:")).map(str::to_owned);
    assert!(error_line(&o).is_some_and(|l| l.contains("dynamically linked")), "{}", describe(&o));
    assert_eq!(error_line(&o), error_line(&b), "the same words as cabinc build");
    // list and clean.
    let l = cabinc()
        .env("XDG_CACHE_HOME", &cache)
        .args(["cache", "list", "--format", "json"])
        .output()
        .expect("list");
    let v = json(&l);
    assert_eq!(v["entries"].as_array().map(Vec::len), Some(1), "{v}");
    let c = cabinc().env("XDG_CACHE_HOME", &cache).args(["cache", "clean"]).output().expect("clean");
    assert!(c.status.success() && text(&c).0.contains("removed 1 file"), "{}", describe(&c));
    assert_eq!(entries_check(&images), 0);
}

/// Two `cabinc run`s of one new input at once: both run, one entry is
/// left, no temporary file; a cache directory others may write to is
/// refused (125, the reason), never used.
#[test]
fn plain_runs_race_and_unsafe_cache_dirs() {
    let t = tempdir();
    let prog = compile(t.path(), "args", ARGS);
    let cache = t.path().join("cache");
    let spawn = || {
        cabinc()
            .env("XDG_CACHE_HOME", &cache)
            .args(["run", "-q", "--backend", "process"])
            .arg(&prog)
            .arg("race")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    for o in [a.wait_with_output().expect("a"), b.wait_with_output().expect("b")] {
        assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
        assert!(text(&o).0.ends_with("[race]\n"), "{}", describe(&o));
    }
    let images = cache.join("cabin").join("images");
    assert_eq!(entries_check(&images), 1);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&images, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let o = spawn().wait_with_output().expect("run");
    assert_eq!(o.status.code(), Some(125), "{}", describe(&o));
    assert!(text(&o).1.contains("is not safe to use: others may write to it"), "{}", describe(&o));
}

/// The program named is a symbolic link swapped between two programs
/// while runs build them: each run runs one program or the other, whole,
/// and every cache entry is the image of the input its name says (the
/// input is read once; the hash and the build are of the same bytes).
#[test]
fn a_symlink_swapped_during_the_build() {
    let t = tempdir();
    let a = compile(t.path(), "args", ARGS);
    let b = compile(t.path(), "exit3", EXIT3);
    let cache = t.path().join("cache");
    let link = t.path().join("prog");
    std::os::unix::fs::symlink(&a, &link).expect("symlink");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let tmp = t.path().join("prog.new");
            let mut flip = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(if flip { &a } else { &b }, &tmp).expect("symlink");
                std::fs::rename(&tmp, &link).expect("swap");
                flip = !flip;
            }
        });
        for _ in 0..4 {
            let o = cabinc()
                .env("XDG_CACHE_HOME", &cache)
                .args(["run", "-q", "--backend", "process"])
                .arg(&link)
                .output()
                .expect("run");
            let out = text(&o).0;
            assert_eq!(o.status.code(), Some(3), "{}", describe(&o));
            assert!(out == "[prog]\n" || out == "argc=1 argv0=prog\n", "{}", describe(&o));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let n = entries_check(&cache.join("cabin").join("images"));
    assert!((1..=2).contains(&n), "{n} entries");
}

const VIEW_PROBE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char cwd[256];
    printf("cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    for (int i = 1; i < argc; i++) {
        char b[64] = {0};
        int fd = open(argv[i], O_RDONLY);
        if (fd < 0) { printf("%s: errno %d\n", argv[i], errno); continue; }
        ssize_t n = read(fd, b, sizeof b - 1);
        close(fd);
        printf("%s: %s\n", argv[i], n > 0 ? b : "");
    }
    int fd = open("/tmp/x", O_WRONLY | O_CREAT, 0644);
    printf("tmp: %s\n", fd >= 0 ? "ok" : strerror(errno));
    return 0;
}
"#;

/// `--root`, `--bind`, `--tmpfs`, `--chdir` (issue 20; docs/views.md) on
/// both backends, the same from a policy's `[view]`; bad values are one
/// error line naming them (and a `help:` line with the fix) and exit 125,
/// leaving nothing behind.
#[test]
fn views_from_flags_and_policy() {
    let t = tempdir();
    let (_, img) = image(t.path(), "viewprobe", VIEW_PROBE);
    let root = t.path().join("root");
    let data = t.path().join("data");
    std::fs::create_dir_all(root.join("etc")).expect("root");
    std::fs::create_dir_all(&data).expect("data");
    std::fs::write(root.join("etc/motd"), "root-motd").expect("motd");
    std::fs::write(data.join("d"), "bound").expect("d");
    let want = "cwd=/data\n/etc/motd: root-motd\nd: bound\n/etc/hostname: errno 2\ntmp: ok\n";
    for backend in backends() {
        let o = cabinc()
            .args(["run", "-q", "--backend", backend, "--root"])
            .arg(&root)
            .arg("--bind")
            .arg(format!("{}:/data:ro", data.display()))
            .args(["--tmpfs", "/tmp:1M", "--chdir", "/data"])
            .arg(&img)
            .args(["/etc/motd", "d", "/etc/hostname"])
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(0), "{backend}: {}", describe(&o));
        assert_eq!(text(&o).0, want, "{backend}");
    }
    let p = t.path().join("view.toml");
    let toml = format!(
        "version = 1\n[default]\naction = \"allow\"\n[view]\nroot = {:?}\nbind = [\"{}:/data:ro\"]\ntmpfs = [\"/tmp:1M\"]\nchdir = \"/data\"\n",
        root.display(),
        data.display()
    );
    std::fs::write(&p, toml).expect("policy");
    let o = cabinc().args(["policy", "check"]).arg(&p).output().expect("check");
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(text(&o).0.contains("a view (a root, 1 binds, 1 tmpfs)"), "{}", describe(&o));
    let o = cabinc()
        .args(["run", "-q", "--backend", "process", "--policy"])
        .arg(&p)
        .arg(&img)
        .args(["/etc/motd", "d", "/etc/hostname"])
        .output()
        .expect("run");
    assert_eq!(text(&o).0, want, "{}", describe(&o));
    // Bad values: one line naming the value and the fix, exit 125.
    let missing = t.path().join("no-such-root");
    let before: Vec<_> = std::fs::read_dir(t.path()).expect("ls").flatten().map(|e| e.path()).collect();
    for bad in [
        vec!["--root".to_string(), missing.display().to_string()],
        vec!["--bind".into(), "/etc".into()],
        vec!["--bind".into(), "/etc:rel".into()],
        vec!["--bind".into(), "/etc:/x:rx".into()],
        vec!["--tmpfs".into(), "/t:12Q".into()],
        vec!["--tmpfs".into(), "/".into()],
        vec!["--chdir".into(), "rel".into()],
        vec!["--root".to_string(), root.display().to_string(), "--chdir".into(), "/nowhere".into()],
    ] {
        let o =
            cabinc().args(["run", "-q", "--backend", "process"]).args(&bad).arg(&img).output().expect("run");
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(125), "{bad:?}: {}", describe(&o));
        // One error line (and cabinc's usual `help:` line with the fix).
        let lines: Vec<&str> = err.trim_end().lines().collect();
        assert!(lines.len() <= 2 && lines[0].starts_with("error: "), "{bad:?}: one line: {err}");
        assert!(lines.last().is_some_and(|l| l.starts_with("help: ")), "{bad:?}: says the fix: {err}");
    }
    let o = cabinc().args(["run", "-q", "--root"]).arg(&missing).arg(&img).output().expect("run");
    assert!(text(&o).1.contains("no-such-root"), "{}", describe(&o));
    let after: Vec<_> = std::fs::read_dir(t.path()).expect("ls").flatten().map(|e| e.path()).collect();
    assert_eq!(before, after, "nothing left behind");
    let bad = "version = 1\n[view]\nbind = [\"/etc:relative\"]\n";
    std::fs::write(&p, bad).expect("policy");
    let o = cabinc().args(["policy", "check"]).arg(&p).output().expect("check");
    assert_ne!(o.status.code(), Some(0), "{}", describe(&o));
    assert!(text(&o).1.contains("absolute"), "{}", describe(&o));
}

/// A catalog image is used again only when this toolchain (its rewriter
/// and libos) built it: a stamp beside the image says which did. An image
/// another cabinc built — its stamp changed here, the image's file time
/// still newer than everything — is built again, not run with the other
/// libos.
#[test]
fn a_catalog_image_built_by_another_toolchain_is_rebuilt() {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        cabin_tests::not_run(
            "a catalog image of another toolchain is rebuilt",
            "/bin/busybox is missing (apt-get install busybox-static)",
        );
        return;
    }
    let t = tempdir();
    let cat = t.path().join("catalog");
    std::fs::create_dir_all(&cat).expect("catalog dir");
    std::fs::write(
        cat.join("stamp-true.toml"),
        r#"format = 1
name = "stamp-true"
description = "busybox true"
source = { path = "/bin" }
build = { commands = ["cp {source}/busybox {out}"] }
[run]
arg0 = "busybox"
args = ["true"]
[[scores]]
kind = "wall_time"
name = "wall"
"#,
    )
    .expect("manifest");
    let cache = t.path().join("cache");
    let bench = |out: &str| {
        let o = cabinc()
            .args(["bench", "stamp-true", "--runs", "1", "--backend", "passthrough", "--catalog"])
            .arg(&cat)
            .arg("--out")
            .arg(t.path().join(out))
            .env("CABIN_CACHE_DIR", &cache)
            .output()
            .expect("bench");
        assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
        text(&o).1.contains("Built")
    };
    assert!(bench("out1"), "the first bench builds the image");
    assert!(!bench("out2"), "the second finds it fresh");
    let dir = cache.join("catalog/stamp-true/default");
    let stamp = dir.join("image.stamp");
    assert!(std::fs::read_to_string(&stamp).is_ok_and(|s| !s.is_empty()), "no stamp beside the image");
    std::fs::write(&stamp, "another toolchain").expect("stamp");
    // Newer than the executable and this cabinc, as a later build's would be.
    let image = dir.join("stamp-true.cabin");
    let bytes = std::fs::read(&image).expect("image");
    std::fs::write(&image, bytes).expect("touch image");
    assert!(bench("out3"), "an image stamped by another toolchain was used");
    assert!(!bench("out4"), "the rebuilt image is fresh again");
}
