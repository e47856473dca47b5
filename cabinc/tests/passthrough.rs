//! Differential tests of `cabinc build` in passthrough mode: every sample
//! program of `samples/`, in every flavour `samples/build.sh` produces
//! (glibc static, glibc static-pie, musl static, musl static-pie, Rust
//! crt-static), is turned into an image, and the image run as an ordinary
//! process must give byte-identical stdout, stderr and exit status to the
//! original. Also checks that code segments become execute-only, that
//! `inspect`/`measure` report sensible data and that builds are reproducible.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use cabin_tests::serde_json::Value;
use cabin_tests::tempfile::TempDir;
use cabin_tests::{
    compare_runs, count_site_instructions, dir_entries, expect_exit, load_headers, run, run_both_and_compare,
    with_common_arg0, Cabinc, Flavour, Invocation, Rng, Sample, Samples, EXIT_REFUSED,
};

fn cabinc() -> Cabinc {
    Cabinc::new(env!("CARGO_BIN_EXE_cabinc"))
}

fn tempdir() -> TempDir {
    cabin_tests::tempfile::tempdir().expect("creating a temporary directory")
}

/// Builds `sample` into `<tempdir>/<label>.cabin`.
fn build_image(sample: &Sample, extra: &[&str]) -> (TempDir, PathBuf) {
    let dir = tempdir();
    let image = dir.path().join(format!("{}.cabin", sample.label()));
    cabinc().build_ok(&sample.path, &image, extra);
    (dir, image)
}

/// Every executable PT_LOAD of the image is exactly `  E` (execute-only).
fn assert_execute_only(image: &Path, label: &str) {
    let loads = load_headers(image);
    assert!(loads.iter().any(|l| l.executable()), "{label}: image has no executable LOAD: {loads:?}");
    for l in &loads {
        if l.executable() {
            assert_eq!(
                l.flags, "  E",
                "{label}: executable LOAD at {:#x} must be execute-only (flags `  E`), got {:?}",
                l.vaddr, l.flags
            );
        }
    }
}

/// Runs `check` for every built flavour of `name`, then fails listing every
/// flavour that failed (so one broken flavour does not hide the others).
fn for_each_flavour(name: &str, check: impl Fn(&Sample)) {
    let failed = flavour_failures(name, check);
    assert!(failed.is_empty(), "{name}: {} flavour(s) failed:\n\n{}", failed.len(), failed.join("\n\n"));
}

/// Runs `check` for every built flavour of `name`; returns the failures.
fn flavour_failures(name: &str, check: impl Fn(&Sample)) -> Vec<String> {
    let samples = Samples::get();
    let mut failed = Vec::new();
    let mut passed = Vec::new();
    for sample in samples.flavours_of(name) {
        match catch_unwind(AssertUnwindSafe(|| check(sample))) {
            Ok(()) => passed.push(sample.label()),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{}: {}", sample.label(), msg));
            }
        }
    }
    eprintln!("{name}: passed {passed:?}");
    failed
}

/// Builds each flavour of `name`, checks execute-only, and compares native
/// and image runs for each invocation.
fn differential(name: &str, invocations: &[Invocation]) {
    for_each_flavour(name, |sample| {
        let (_dir, image) = build_image(sample, &[]);
        assert_execute_only(&image, &sample.label());
        for inv in invocations {
            run_both_and_compare(&sample.path, &image, inv);
        }
    });
}

#[test]
fn hello_identical() {
    differential(
        "hello",
        &[
            Invocation::new(),
            Invocation::new().args(["one", "two words", "", "ünïcödé", "--flag=x"]),
            Invocation::new().args((0..200).map(|i| format!("arg{i}"))),
        ],
    );
}

#[test]
fn exitcode_identical() {
    differential(
        "exitcode",
        &[
            Invocation::new(),
            Invocation::new().arg("0"),
            Invocation::new().arg("1"),
            Invocation::new().arg("255"),
        ],
    );
}

#[test]
fn sha256_identical() {
    let mut rng = Rng::new(256);
    let invocations: Vec<Invocation> = [0usize, 3, 55, 56, 63, 64, 65, 4096, 1 << 20]
        .iter()
        .map(|&n| Invocation::new().stdin(rng.bytes(n)))
        .collect();
    differential("sha256", &invocations);
}

#[test]
fn sysloop_identical() {
    differential("sysloop", &[Invocation::new(), Invocation::new().arg("1000"), Invocation::new().arg("0")]);
}

#[test]
fn hello_rs_identical() {
    let text = "first line\nsecond line with more words\n\nünïcödé last line without newline";
    differential(
        "hello-rs",
        &[
            Invocation::new(),
            Invocation::new().arg("0").stdin(text),
            Invocation::new().arg("255").stdin(Rng::new(9).bytes(100_000)),
            Invocation::new().arg("not-a-number").stdin(text),
            // Unwinding: a panicking thread and a caught panic.
            Invocation::new().arg("panic"),
        ],
    );
}

#[test]
fn signals_identical() {
    // Handlers that return (rt_sigreturn via the libc restorer), siglongjmp,
    // EPIPE, SIGCHLD, and finally death by SIGUSR1: status must match too.
    differential("signals", &[Invocation::new()]);
}

#[test]
fn tricky_identical() {
    // Sites in awkward places: 3-byte function, syscall as jump target,
    // jump target right after, rip-relative neighbour, int $0x80, ...
    differential("tricky", &[Invocation::new()]);
}

#[test]
fn memory_identical() {
    // brk, mmap/mremap/mprotect/munmap, large mallocs, private file mapping.
    differential("memory", &[Invocation::new()]);
}

#[test]
fn vfork_identical() {
    differential("vfork", &[Invocation::new()]);
}

#[test]
fn fork_identical() {
    differential("fork", &[Invocation::new()]);
}

#[test]
fn threads_identical() {
    differential("threads", &[Invocation::new(), Invocation::new()]);
}

/// Stripped programs (no symbol table, like distribution binaries) give the
/// rewriter fewer hints; they must behave identically too.
#[test]
fn stripped_identical() {
    cabin_tests::require_tool("strip", "binutils");
    let mut failed = Vec::new();
    for name in ["signals", "hello", "fork", "threads", "tricky", "vfork", "memory", "hello-rs"] {
        failed.extend(flavour_failures(name, |sample| {
            let dir = tempdir();
            let stripped = dir.path().join(sample.label());
            let st = std::process::Command::new("strip")
                .arg("--strip-all")
                .arg("-o")
                .arg(&stripped)
                .arg(&sample.path)
                .status()
                .expect("running strip");
            assert!(st.success(), "strip failed on {}", sample.label());
            let image = dir.path().join(format!("{}.cabin", sample.label()));
            cabinc().build_ok(&stripped, &image, &[]);
            assert_execute_only(&image, &sample.label());
            let arg: &[&str] = if name == "hello-rs" { &["panic"] } else { &[] };
            run_both_and_compare(&stripped, &image, &Invocation::new().args(arg).stdin("stripped\n"));
        }));
    }
    assert!(failed.is_empty(), "{} stripped program(s) failed:\n\n{}", failed.len(), failed.join("\n\n"));
}

/// filecopy writes a file: run native and image in separate directories with
/// the same relative paths, compare outputs and the copied files.
#[test]
fn filecopy_identical() {
    for_each_flavour("filecopy", |sample| {
        let (_dir, image) = build_image(sample, &[]);
        assert_execute_only(&image, &sample.label());
        let mut rng = Rng::new(512);
        for size in [0usize, 1, 511, 512, 513, 4096, 100_003] {
            let data = rng.bytes(size);
            let native_dir = tempdir();
            let image_dir = tempdir();
            for d in [&native_dir, &image_dir] {
                std::fs::write(d.path().join("in"), &data).expect("writing input");
            }
            let inv = Invocation::new().args(["in", "out"]);
            let inv = with_common_arg0(&sample.path, &inv);
            let native = run(&sample.path, &inv.clone().cwd(native_dir.path()));
            let confined = run(&image, &inv.clone().cwd(image_dir.path()));
            compare_runs(&native, &confined);
            expect_exit(&native, 0, "native filecopy");
            let copied = std::fs::read(image_dir.path().join("out")).expect("image wrote no `out`");
            assert!(copied == data, "{}: image copy of {size} bytes differs", sample.label());
            assert_eq!(dir_entries(native_dir.path()), dir_entries(image_dir.path()));
        }
        // Errors: a missing input gives the same message and status.
        let d = tempdir();
        let inv = with_common_arg0(&sample.path, &Invocation::new().args(["missing", "out"]).cwd(d.path()));
        compare_runs(&run(&sample.path, &inv), &run(&image, &inv));
        assert!(!d.path().join("out").exists());
    });
}

/// Addresses (lowercase hex, no leading zeros) of the instructions in `main`
/// that read code bytes, and of the bytes they read, from `objdump -d`.
fn code_read_addresses(binary: &Path) -> Vec<String> {
    let out = std::process::Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(binary)
        .output()
        .expect("running objdump (install binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut addrs = Vec::new();
    let mut in_main = false;
    for line in text.lines() {
        if line.ends_with(">:") {
            in_main = line.ends_with("<main>:");
            continue;
        }
        if in_main && line.contains("movzbl") && line.contains("(%rip)") && line.contains("<main") {
            if let Some((addr, _)) = line.trim_start().split_once(':') {
                addrs.push(addr.trim().trim_start_matches('0').to_string());
            }
            if let Some((_, target)) = line.rsplit_once('#') {
                if let Some(t) = target.split_whitespace().next() {
                    addrs.push(t.trim_start_matches('0').to_string());
                }
            }
        }
    }
    addrs
}

#[test]
fn readcode_refused_without_flag() {
    for_each_flavour("readcode", |sample| {
        let expected = code_read_addresses(&sample.path);
        assert!(!expected.is_empty(), "test bug: no code reads found in main of {}", sample.label());
        let dir = tempdir();
        let image = dir.path().join("readcode.cabin");
        let out = cabinc().build(&sample.path, &image, &[]);
        expect_exit(&out, EXIT_REFUSED, "building readcode without --allow-readable-code");
        let stderr = out.stderr_str().to_lowercase();
        assert!(
            expected.iter().any(|a| stderr.contains(a.as_str())),
            "the refusal must list the code-reading addresses (any of {expected:?}):\n{}",
            out.describe()
        );
        assert!(
            stderr.contains("--allow-readable-code"),
            "the refusal should say how to override (--allow-readable-code):\n{}",
            out.describe()
        );
        assert_eq!(dir_entries(dir.path()), Vec::<String>::new(), "a refused build left files behind");
    });
}

#[test]
fn readcode_allowed_with_flag() {
    for_each_flavour("readcode", |sample| {
        let (_dir, image) = build_image(sample, &["--allow-readable-code"]);
        let loads = load_headers(&image);
        assert!(
            loads.iter().any(|l| l.executable() && l.readable()),
            "{}: with --allow-readable-code the program's code must stay readable: {loads:?}",
            sample.label()
        );
        let report = cabinc().inspect_json(&image);
        assert_eq!(report["execute_only"], Value::Bool(false), "inspect: {report:#}");
        run_both_and_compare(&sample.path, &image, &Invocation::new());
    });
}

/// A JSON number or a hex/decimal string, as u64.
fn json_u64(v: &Value, what: &str) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or_else(|| panic!("{what}: {n} is not a u64")),
        Value::String(s) => {
            let parsed = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{what}: {s:?} is not a number"))
        }
        other => panic!("{what}: expected a number, got {other}"),
    }
}

/// e_entry of an ELF file.
fn elf_entry(path: &Path) -> u64 {
    let data = std::fs::read(path).expect("reading ELF");
    let bytes: [u8; 8] = data[24..32].try_into().expect("ELF header");
    u64::from_le_bytes(bytes)
}

#[test]
fn inspect_json_and_measure() {
    let samples = Samples::get();
    for flavour in [Flavour::Glibc, Flavour::GlibcPie, Flavour::Musl] {
        let sample = samples.find("hello", flavour).expect("hello sample");
        let (_dir, image) = build_image(sample, &[]);
        let r = cabinc().inspect_json(&image);
        let label = sample.label();
        for key in [
            "format_version",
            "measurement",
            "entry",
            "original_entry",
            "execute_only",
            "sites",
            "forbidden",
            "segments",
        ] {
            assert!(r.get(key).is_some(), "{label}: inspect JSON lacks {key:?}: {r:#}");
        }
        assert!(r["format_version"].is_u64(), "{label}: format_version: {}", r["format_version"]);
        assert_eq!(r["execute_only"], Value::Bool(true), "{label}");
        let measurement =
            r["measurement"].as_str().unwrap_or_else(|| panic!("{label}: measurement not a string"));
        assert!(
            measurement.len() == 96 && measurement.bytes().all(|b| b.is_ascii_hexdigit()),
            "{label}: measurement {measurement:?} is not 96 hex digits"
        );
        let measured = cabinc().measure(&image);
        assert_eq!(measured.to_lowercase(), measurement.to_lowercase(), "{label}: measure vs inspect");
        assert_eq!(
            json_u64(&r["original_entry"], "original_entry"),
            elf_entry(&sample.path),
            "{label}: original_entry must be the input's e_entry"
        );
        json_u64(&r["entry"], "entry");
        let sites = &r["sites"];
        let total = json_u64(&sites["total"], "sites.total");
        let rewritten = json_u64(&sites["rewritten"], "sites.rewritten");
        let trap = json_u64(&sites["trap"], "sites.trap");
        let list = sites["list"].as_array().unwrap_or_else(|| panic!("{label}: sites.list not an array"));
        assert!(total > 0, "{label}: a libc program has syscall sites");
        assert_eq!(total as usize, list.len(), "{label}: sites.total vs sites.list");
        assert_eq!(rewritten + trap, total, "{label}: rewritten + trap must be total");
        for site in list {
            for key in ["addr", "tactic", "reason"] {
                assert!(site.get(key).is_some(), "{label}: site lacks {key:?}: {site}");
            }
        }
        let forbidden =
            r["forbidden"].as_array().unwrap_or_else(|| panic!("{label}: forbidden not an array"));
        // Noted instructions (xrstor family in libc) may be listed; wrpkru never
        // (images containing it are refused).
        for f in forbidden {
            json_u64(&f["addr"], "forbidden[].addr");
            let insn = f["insn"].as_str().unwrap_or_else(|| panic!("{label}: forbidden[].insn: {f}"));
            assert_ne!(insn, "wrpkru", "{label}: an image must never contain wrpkru");
            assert!(f["explanation"].is_string(), "{label}: forbidden[].explanation: {f}");
        }
        // Issue 16: every sample's xrstors are masked, so its image can be
        // run execute-only where the CPU has protection keys.
        assert_eq!(r["unchecked_pkru_writer"], Value::Null, "{label}: {:#}", r["forbidden"]);
        let segments = r["segments"].as_array().unwrap_or_else(|| panic!("{label}: segments not an array"));
        assert!(!segments.is_empty(), "{label}: no segments");
        for seg in segments {
            json_u64(&seg["vaddr"], "segments[].vaddr");
            json_u64(&seg["memsz"], "segments[].memsz");
            assert!(seg["perms"].is_string(), "{label}: segments[].perms: {seg}");
        }
        let text = cabinc().run([
            std::ffi::OsStr::new("inspect"),
            image.as_os_str(),
            "--format".as_ref(),
            "text".as_ref(),
        ]);
        expect_exit(&text, 0, "cabinc inspect --format text");
        assert!(!text.stdout.is_empty(), "inspect --format text printed nothing");
    }
}

/// The number of sites inspect reports equals the number of system-call
/// instructions (`syscall`, `sysenter`, `int $0x80`) objdump finds in the input.
#[test]
fn sites_match_objdump() {
    let samples = Samples::get();
    let mut failures = Vec::new();
    for sample in &samples.built {
        if sample.name == "readcode" {
            continue;
        }
        let (_dir, image) = build_image(sample, &[]);
        let r = cabinc().inspect_json(&image);
        let total = json_u64(&r["sites"]["total"], "sites.total");
        let objdump = count_site_instructions(&sample.path) as u64;
        if total != objdump {
            failures
                .push(format!("{}: inspect sites.total {total}, objdump syscalls {objdump}", sample.label()));
        }
    }
    assert!(failures.is_empty(), "site counts differ:\n{}", failures.join("\n"));
}

/// Building the same input twice gives byte-identical images.
#[test]
fn builds_are_deterministic() {
    let samples = Samples::get();
    for name in ["hello", "sha256", "hello-rs"] {
        for sample in samples.flavours_of(name) {
            let dir = tempdir();
            let a = dir.path().join("a.cabin");
            let b = dir.path().join("b.cabin");
            cabinc().build_ok(&sample.path, &a, &[]);
            cabinc().build_ok(&sample.path, &b, &[]);
            let (da, db) = (std::fs::read(&a).expect("read a"), std::fs::read(&b).expect("read b"));
            assert!(da == db, "{}: two builds differ ({} vs {} bytes)", sample.label(), da.len(), db.len());
            // The input's name and directory must not leak into the image.
            let moved = dir.path().join("elsewhere-input");
            std::fs::copy(&sample.path, &moved).expect("copying input");
            let c = dir.path().join("c.cabin");
            cabinc().build_ok(&moved, &c, &[]);
            let dc = std::fs::read(&c).expect("read c");
            assert!(da == dc, "{}: building from another path changes the image", sample.label());
        }
    }
}

/// `--message-format json` prints one JSON object on stdout.
#[test]
fn build_message_format_json() {
    let sample = Samples::get().find("hello", Flavour::Glibc).expect("hello.glibc");
    let dir = tempdir();
    let image = dir.path().join("hello.cabin");
    let out = cabinc().build(&sample.path, &image, &["--message-format", "json"]);
    expect_exit(&out, 0, "cabinc build --message-format json");
    let v: Value = cabin_tests::serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("--message-format json: stdout is not one JSON value ({e}):\n{}", out.describe())
    });
    assert!(v.is_object(), "expected a JSON object, got {v}");
}
