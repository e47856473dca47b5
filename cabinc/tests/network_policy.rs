//! The policy side of networking (issue 19): `cabinc run --allow-connect /
//! --allow-listen` (accepted on both backends, refused with the entry and
//! the reason), `policy check` / `explain` showing `[network]`, errors that
//! name the line and the entry, and `policy generate --from-trace` writing
//! `[network]` from the `addr` of socket-call records. The socket calls
//! themselves are served by the monitor (monitor/tests); these tests need
//! no network.
//!
//! Needs gcc with a static libc (one program is compiled).

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

fn backends() -> Vec<&'static str> {
    let kvm = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").map(drop);
    if cabin_tests::kvm_available(kvm) {
        vec!["process", "kvm"]
    } else {
        vec!["process"]
    }
}

fn image(dir: &Path, name: &str, src: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, src).expect("write the C source");
    let exe = dir.join(name);
    let o = Command::new("gcc").args(["-static", "-O1", "-o"]).arg(&exe).arg(&c).output().expect("run gcc");
    assert!(o.status.success(), "gcc failed: {}", describe(&o));
    let img = dir.join(format!("{name}.cabin"));
    let o = cabinc().arg("build").arg(&exe).arg("-o").arg(&img).output().expect("cabinc build");
    assert!(o.status.success(), "{}", describe(&o));
    img
}

const HELLO: &str = r#"
#include <stdio.h>
int main(void) { printf("hello\n"); return 3; }
"#;

const POLICY: &str = r#"version = 1
[default]
action = "allow"

[network]
connect = ["127.0.0.1:8080", "10.0.0.0/8:443", "[::1]:1000-2000"]
listen = ["0.0.0.0:8080", "[::1]:*"]
unix = ["/run/app//app.sock"]
abstract = ["app-bus"]
resolver = "127.0.0.53"
"#;

/// Bad `--allow-connect` / `--allow-listen` values are usage errors of
/// `run` (exit 125) naming the value and what is wrong, before any image is
/// read.
#[test]
fn run_refuses_bad_network_flags() {
    for (flag, value, says) in [
        ("--allow-connect", "example.com:443", "host name"),
        ("--allow-connect", "127.0.0.1:0", "port 0"),
        ("--allow-connect", "10.0.0.0/33:80", "longer than the address"),
        ("--allow-connect", "127.0.0.1:90-80", "reversed"),
        ("--allow-connect", "[fe80::1%eth0]:80", "zone"),
        ("--allow-listen", "::1:80", "brackets"),
        ("--allow-listen", "[::ffff:127.0.0.1]:80", "write the IPv4 address"),
        ("--allow-listen", "127.0.0.1", "no port"),
    ] {
        let o = cabinc().args(["run", flag, value, "/nonexistent.cabin"]).output().expect("run");
        let err = text(&o).1;
        assert_eq!(o.status.code(), Some(125), "{flag} {value}: {}", describe(&o));
        assert!(err.contains(value) && err.contains(says), "{flag} {value}: {err}");
        assert!(!err.contains("nonexistent"), "the flag is checked first: {err}");
    }
}

/// Good flags, with and without a policy file, run the program as before
/// on both backends (a program that uses no network is unaffected).
#[test]
fn run_accepts_network_flags_on_both_backends() {
    let t = tempdir();
    let img = image(t.path(), "hello", HELLO);
    let p = t.path().join("p.toml");
    std::fs::write(&p, POLICY).expect("policy");
    for backend in backends() {
        for with_policy in [false, true] {
            let mut c = cabinc();
            c.args(["run", "-q", "--backend", backend]);
            c.args(["--allow-connect", "127.0.0.1:*", "--allow-connect", "[::1]:8080"]);
            c.args(["--allow-listen", "0.0.0.0/0:8000-8100"]);
            if with_policy {
                c.arg("--policy").arg(&p);
            }
            let o = c.arg(&img).output().expect("run");
            assert_eq!(o.status.code(), Some(3), "{backend} policy={with_policy}: {}", describe(&o));
            assert_eq!(text(&o).0, "hello\n", "{backend}");
        }
    }
}

/// `policy check` and `explain` show the rules (text and JSON); the
/// default is stated as no network.
#[test]
fn check_and_explain_show_the_network() {
    let t = tempdir();
    let p = t.path().join("p.toml");
    std::fs::write(&p, POLICY).expect("policy");
    let o = cabinc().args(["policy", "check"]).arg(&p).output().expect("check");
    assert!(o.status.success(), "{}", describe(&o));
    assert!(
        text(&o).0.contains("network: 3 connect, 2 listen, 1 unix, 1 abstract rules, resolver 127.0.0.53:53"),
        "{}",
        describe(&o)
    );
    let o = cabinc().args(["policy", "check", "--format", "json"]).arg(&p).output().expect("check");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        v["network"]["connect"],
        serde_json::json!(["127.0.0.1:8080", "10.0.0.0/8:443", "[::1]:1000-2000"])
    );
    assert_eq!(v["network"]["listen"], serde_json::json!(["0.0.0.0:8080", "[::1]:*"]));
    assert_eq!(v["network"]["unix"], serde_json::json!(["/run/app/app.sock"]));
    assert_eq!(v["network"]["abstract"], serde_json::json!(["app-bus"]));
    assert_eq!(v["network"]["resolver"], "127.0.0.53:53");

    let o = cabinc().args(["policy", "explain"]).arg(&p).output().expect("explain");
    let out = text(&o).0;
    for line in [
        "connect to:        10.0.0.0/8:443 (line 6)",
        "DNS resolver:      127.0.0.53:53",
        "listen on:         [::1]:* (line 7)",
        "unix socket:       /run/app/app.sock",
        "abstract socket:   @app-bus",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    std::fs::write(&p, "version = 1\n").expect("policy");
    let o = cabinc().args(["policy", "explain"]).arg(&p).output().expect("explain");
    assert!(text(&o).0.contains("Network: none"), "{}", describe(&o));
    let o = cabinc().args(["policy", "check"]).arg(&p).output().expect("check");
    assert!(text(&o).0.contains("no network"), "{}", describe(&o));
}

/// A bad entry is an error at its line and column, naming the entry.
#[test]
fn check_names_the_line_and_the_bad_entry() {
    let t = tempdir();
    let p = t.path().join("p.toml");
    for (body, at, says) in [
        (
            "connect = [\n  \"127.0.0.1:80\",\n  \"db.internal:5432\",\n]",
            ":5:3:",
            "`db.internal` is a host name",
        ),
        ("listen = [\"[::]/200:80\"]", ":3:11:", "prefix /200 is longer than the address"),
        ("connect = [\"127.0.0.1:443-80\"]", ":3:12:", "port range 443-80 is reversed"),
        ("unix = [\"/run/../docker.sock\"]", ":3:9:", "`..`"),
        ("resolver = \"10.0.0.0/8\"", ":3:12:", "not a block"),
        ("hosts = []", ":3:1:", "unknown field `hosts`"),
    ] {
        std::fs::write(&p, format!("version = 1\n[network]\n{body}\n")).expect("policy");
        let o = cabinc().args(["policy", "check"]).arg(&p).output().expect("check");
        let err = text(&o).1;
        assert_eq!(o.status.code(), Some(1), "{body}: {}", describe(&o));
        assert!(err.contains(&format!("p.toml{at}")) && err.contains(says), "{body}: {err}");
    }
}

/// `generate --from-trace` writes `[network]` from the trace's addresses,
/// and the result checks.
#[test]
fn generate_writes_the_network_a_run_used() {
    let t = tempdir();
    let trace = t.path().join("run.jsonl");
    let rec = |name: &str, nr: u32, ret: i64, served: &str, addr: &str| {
        format!(
            "{{\"type\":\"syscall\",\"nr\":{nr},\"name\":\"{name}\",\"args\":[\"0x3\",\"0x1000\",\"0x10\"],\
             \"ret\":\"{:#x}\",\"served\":\"{served}\",\"addr\":{}}}\n",
            ret as u64,
            serde_json::Value::String(addr.into())
        )
    };
    let lines = [
        rec("connect", 42, -13, "denied", "[::ffff:127.0.0.1]:8080"),
        rec("bind", 49, 0, "forwarded", "127.0.0.1:0"),
        rec("sendto", 44, 32, "forwarded", "127.0.0.53:53"),
        rec("connect", 42, 0, "forwarded", "unix:/run/app.sock"),
    ];
    std::fs::write(&trace, lines.concat()).expect("trace");
    let out = t.path().join("gen.toml");
    let o = cabinc()
        .args(["policy", "generate", "--from-trace"])
        .arg(&trace)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("gen");
    assert!(o.status.success(), "{}", describe(&o));
    let policy = std::fs::read_to_string(&out).expect("generated");
    for line in [
        "[network]",
        "connect = [\"127.0.0.1:8080\", \"127.0.0.53:53\"]",
        "listen = [\"127.0.0.1:*\"]",
        "unix = [\"/run/app.sock\"]",
    ] {
        assert!(policy.contains(line), "{line}: {policy}");
    }
    assert!(text(&o).1.contains("connect 127.0.0.1:8080"), "the refused one is reported: {}", describe(&o));
    let o = cabinc().args(["policy", "check"]).arg(&out).output().expect("check");
    assert!(o.status.success(), "{}", describe(&o));
}
