//! Differential tests of `cabinc run` on every backend: each sample, in every
//! flavour, runs natively and confined (`--backend process` and
//! `--backend kvm`), and the two runs must give byte-identical stdout, stderr,
//! exit status and written files.
//!
//! KVM-tier tests need a usable /dev/kvm. Where there is none they print
//! `KVM test NOT RUN: …` and count as not run (they return without
//! asserting); with `CABIN_REQUIRE_KVM=1` they fail instead.

use std::path::{Path, PathBuf};

use cabin_tests::tempfile::TempDir;
use cabin_tests::{diff_runs, run, Cabinc, Invocation, Output, Rng, Sample, Samples};

fn cabinc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cabinc"))
}

fn tempdir() -> TempDir {
    cabin_tests::tempfile::tempdir().expect("creating a temporary directory")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Process,
    Kvm,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Process => "process",
            Backend::Kvm => "kvm",
        }
    }
}

/// Whether the backend can run here; says NOT RUN when it cannot
/// (`cabin_tests::kvm_available` names the test by its thread; `_test` stays
/// for the reader).
fn available(backend: Backend, _test: &str) -> bool {
    let open = || {
        let kvm = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm");
        kvm.map(drop).map_err(|e| e.to_string())
    };
    backend == Backend::Process || cabin_tests::kvm_available(open)
}

/// One differential case: program arguments and stdin, plus the files the
/// program is given in a fresh working directory.
struct Case {
    inv: Invocation,
    files: Vec<(&'static str, Vec<u8>)>,
    run_flags: Vec<String>,
}

impl Case {
    fn new(inv: Invocation) -> Self {
        Self { inv, files: Vec::new(), run_flags: Vec::new() }
    }

    /// Extra `cabinc run` flags (e.g. another allowed directory).
    fn run_flag(mut self, flag: &str) -> Self {
        self.run_flags.push(flag.to_string());
        self
    }

    fn file(mut self, name: &'static str, data: Vec<u8>) -> Self {
        self.files.push((name, data));
        self
    }
}

fn fresh_dir(case: &Case) -> TempDir {
    let d = tempdir();
    for (name, data) in &case.files {
        std::fs::write(d.path().join(name), data).expect("writing an input file");
    }
    d
}

/// Sorted (name, contents) of the regular files in `dir`.
fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("reading the work dir")
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    v.sort();
    v
}

/// Runs the native binary and the confined image in fresh, identical work
/// directories (given to the program with --allow-write) and compares.
fn compare(sample: &Sample, image: &Path, backend: Backend, case: &Case) -> Result<(), String> {
    let argv0 = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let native_dir = fresh_dir(case);
    let native_inv = case.inv.clone().arg0(&argv0).cwd(native_dir.path());
    let native: Output = run(&sample.path, &native_inv);

    let confined_dir = fresh_dir(case);
    let mut inv = Invocation::new()
        .args(["run", "-q", "--backend", backend.name()])
        .arg("--allow-write")
        .arg(confined_dir.path())
        .args(case.run_flags.iter())
        .arg(image)
        .arg("--")
        .args(case.inv.args.iter())
        .stdin(case.inv.stdin.clone())
        .cwd(confined_dir.path());
    inv = inv.timeout(std::time::Duration::from_secs(60));
    let confined = run(&cabinc_path(), &inv);
    diff_runs(&native, &confined)?;
    let (a, b) = (files_in(native_dir.path()), files_in(confined_dir.path()));
    if a != b {
        let names = |v: &[(String, Vec<u8>)]| {
            v.iter().map(|(n, d)| format!("{n} ({} bytes)", d.len())).collect::<Vec<_>>()
        };
        return Err(format!("written files differ: native {:?} vs confined {:?}", names(&a), names(&b)));
    }
    Ok(())
}

/// Builds every flavour of `name` and compares each case on `backend`.
fn differential(name: &str, backend: Backend, build_flags: &[&str], cases: &[Case]) {
    let test = format!("{name} on {}", backend.name());
    if !available(backend, &test) {
        return;
    }
    let cabinc = Cabinc::new(cabinc_path());
    let mut failures = Vec::new();
    let mut ran = 0;
    for sample in Samples::get().flavours_of(name) {
        let dir = tempdir();
        let image = dir.path().join(format!("{}.cabin", sample.label()));
        cabinc.build_ok(&sample.path, &image, build_flags);
        for case in cases {
            ran += 1;
            if let Err(e) = compare(sample, &image, backend, case) {
                failures.push(format!("{} {:?}: {e}", sample.label(), case.inv.args));
            }
        }
    }
    assert!(ran > 0, "{test}: no sample flavours were built");
    assert!(
        failures.is_empty(),
        "{test}: {} of {ran} runs differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{test}: {ran} runs identical");
}

fn hello_cases() -> Vec<Case> {
    vec![Case::new(Invocation::new()), Case::new(Invocation::new().args(["one", "two words", "", "ünïcödé"]))]
}

fn exitcode_cases() -> Vec<Case> {
    ["0", "1", "42", "255"].iter().map(|c| Case::new(Invocation::new().arg(c))).collect()
}

fn sha256_cases() -> Vec<Case> {
    let mut rng = Rng::new(7);
    [0usize, 64, 4096, 1 << 20].iter().map(|&n| Case::new(Invocation::new().stdin(rng.bytes(n)))).collect()
}

fn filecopy_cases() -> Vec<Case> {
    let mut rng = Rng::new(11);
    vec![
        Case::new(Invocation::new().args(["in.bin", "out.bin"])).file("in.bin", rng.bytes(300_000)),
        Case::new(Invocation::new().args(["empty", "out.bin"])).file("empty", Vec::new()),
        Case::new(Invocation::new().args(["missing", "out.bin"])),
    ]
}

fn sysloop_cases() -> Vec<Case> {
    vec![Case::new(Invocation::new().arg("2000"))]
}

fn hello_rs_cases() -> Vec<Case> {
    vec![Case::new(Invocation::new().arg("3").stdin("a line\nanother line\n"))]
}

macro_rules! differential_tests {
    ($($test:ident: $sample:literal, $flags:expr, $cases:expr;)*) => {
        mod process {
            use super::*;
            $( #[test] fn $test() { differential($sample, Backend::Process, $flags, &$cases); } )*
        }
        mod kvm {
            use super::*;
            $( #[test] fn $test() { differential($sample, Backend::Kvm, $flags, &$cases); } )*
        }
    };
}

/// Every site left as a trap site: the whole program runs on the slow path.
#[test]
fn all_trap_sites_on_process() {
    differential("sha256", Backend::Process, &["--trap-all-sites"], &sha256_cases());
    differential("filecopy", Backend::Process, &["--trap-all-sites"], &filecopy_cases());
}

/// The same on KVM, where the slow path is the proxy-kernel's gate.
#[test]
fn all_trap_sites_on_kvm() {
    differential("sha256", Backend::Kvm, &["--trap-all-sites"], &sha256_cases());
    differential("filecopy", Backend::Kvm, &["--trap-all-sites"], &filecopy_cases());
}

/// `int 0x80` is served on the process backend (SIGSYS slow path) ...
#[test]
fn tricky_with_int80_on_process() {
    differential("tricky", Backend::Process, &[], &[Case::new(Invocation::new())]);
}

/// ... and ends the program on KVM with SIGSEGV and a one-line report.
#[test]
fn int80_ends_the_program_on_kvm() {
    if !available(Backend::Kvm, "int80_ends_the_program_on_kvm") {
        return;
    }
    let sample = Samples::get().flavours_of("tricky")[0];
    let dir = tempdir();
    let image = dir.path().join("tricky.cabin");
    Cabinc::new(cabinc_path()).build_ok(&sample.path, &image, &[]);
    let out = run(&cabinc_path(), &Invocation::new().args(["run", "-q", "--backend", "kvm"]).arg(&image));
    assert_eq!(out.code(), Some(139), "{}", out.describe());
    let err = out.stderr_str();
    assert!(err.contains("int 0x80") && err.lines().count() == 1, "one-line report expected: {err:?}");
}

/// Attacks on the boundary (monitor/tests/attacks) end, through `cabinc
/// run`, with the program's status and exactly one line on stderr, never
/// 125: `int 0x20` (a closed gate), `syscall` from 32-bit code, a
/// malformed KVM doorbell.
fn attack_ends_with_one_line(backend: Backend, program: &str, attempt: &str, status: i32, needle: &str) {
    let dir = tempdir();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../monitor/tests/programs/{program}.c"));
    let exe = dir.path().join(program);
    if cabin_tests::compile_static_c("gcc", "gcc", &src, &exe).is_none() {
        return;
    }
    let image = dir.path().join(format!("{program}.cabin"));
    Cabinc::new(cabinc_path()).build_ok(&exe, &image, &[]);
    let inv =
        Invocation::new().args(["run", "-q", "--backend", backend.name()]).arg(&image).arg("--").arg(attempt);
    let out = run(&cabinc_path(), &inv);
    assert_eq!(out.code(), Some(status), "{attempt}: {}", out.describe());
    let err = out.stderr_str();
    assert!(err.contains(needle) && err.lines().count() == 1, "{attempt}: one-line report expected: {err:?}");
}

#[test]
fn attacks_end_with_one_line_on_process() {
    attack_ends_with_one_line(Backend::Process, "attack_ring0", "int:32", 139, "SIGSEGV");
}

#[test]
fn attacks_end_with_one_line_on_kvm() {
    if !available(Backend::Kvm, "attacks_end_with_one_line_on_kvm") {
        return;
    }
    attack_ends_with_one_line(Backend::Kvm, "attack_ring0", "int:32", 139, "int 0x20: the gate is closed");
    attack_ends_with_one_line(Backend::Kvm, "attack_ring0", "compat-syscall", 139, "SIGSEGV");
    attack_ends_with_one_line(
        Backend::Kvm,
        "attack_fake_failure",
        "doorbell-value",
        137,
        "malformed doorbell",
    );
}

differential_tests! {
    hello: "hello", &[], hello_cases();
    exitcode: "exitcode", &[], exitcode_cases();
    sha256: "sha256", &[], sha256_cases();
    filecopy: "filecopy", &[], filecopy_cases();
    sysloop: "sysloop", &[], sysloop_cases();
    hello_rs: "hello-rs", &[], hello_rs_cases();
    // The memory sample maps a scratch file it creates in /tmp.
    memory: "memory", &[], [Case::new(Invocation::new()).run_flag("--allow-write=/tmp")];
    tricky: "tricky", &[], [Case::new(Invocation::new().arg("--no-int80"))];
    readcode: "readcode", &["--allow-readable-code"], [Case::new(Invocation::new())];
}

/// `cabinc run` exit statuses for images it must not run: 127 missing,
/// 126 not an ELF at all or modified after the build (measurement
/// mismatch). (A plain static ELF runs through the image cache: cli.rs.)
#[test]
fn run_refuses_missing_plain_and_modified_images() {
    let dir = tempdir();
    let sample = Samples::get().flavours_of("hello")[0];
    let image = dir.path().join("hello.cabin");
    Cabinc::new(cabinc_path()).build_ok(&sample.path, &image, &[]);
    let run_img = |p: &Path| {
        run(
            &cabinc_path(),
            &Invocation::new()
                .args(["run", "-q", "--backend", "process"])
                .arg(p)
                .env("XDG_CACHE_HOME", dir.path().join("cache")),
        )
    };

    let missing = run_img(&dir.path().join("nope.cabin"));
    assert_eq!(missing.code(), Some(127), "{}", missing.describe());

    let text = dir.path().join("text");
    std::fs::write(&text, "not a program\n").expect("write");
    let plain = run_img(&text);
    assert_eq!(plain.code(), Some(126), "{}", plain.describe());
    assert!(plain.stderr_str().contains("not a runnable Cabin image"), "{}", plain.stderr_str());

    let mut bytes = std::fs::read(&image).expect("image");
    let modified = dir.path().join("modified.cabin");
    // Flip a byte of the first code page: the measurement no longer matches.
    let code_off = 0x1000 + 0x40;
    bytes[code_off] ^= 0xff;
    std::fs::write(&modified, &bytes).expect("write");
    let out = run_img(&modified);
    assert_eq!(out.code(), Some(126), "{}", out.describe());
    assert!(out.stderr_str().contains("measurement"), "{}", out.stderr_str());
}
