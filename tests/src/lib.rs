//! Shared helpers for Cabin's end-to-end and differential tests.
//!
//! The integration tests of `cabinc` (in `cabinc/tests/`) use this crate to
//! build the sample programs of `samples/` once per source version, run a
//! program natively and as a Cabin image with the same arguments and input,
//! and compare what came out byte for byte. It also wraps the external tools
//! the tests rely on (`readelf`, `objdump`) and the `cabinc` command line.
//!
//! Everything here is test code: a helper that cannot do its job panics
//! with a message that says what to install or fix, so a missing tool is a
//! failed test, never a silently passing one.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use serde_json;
pub use tempfile;

pub mod json_schema;
pub mod not_run;

pub use not_run::{kvm_available, not_run};

/// Default time limit for one program run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The root of the Cabin workspace (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo target directory the tests run under (`$CARGO_TARGET_DIR`, or
/// `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

// ---------------------------------------------------------------------------
// Samples
// ---------------------------------------------------------------------------

/// How a sample program was compiled and linked (see `samples/build.sh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavour {
    /// glibc, `gcc -static -O2` (ET_EXEC).
    Glibc,
    /// glibc, `gcc -static-pie -O2`.
    GlibcPie,
    /// musl, `musl-gcc -static -O2` (ET_EXEC).
    Musl,
    /// musl static-pie (rcrt1.o).
    MuslPie,
    /// Rust, `-C target-feature=+crt-static` for x86_64-unknown-linux-gnu.
    Rust,
}

impl Flavour {
    /// Every flavour, in build order.
    pub const ALL: [Flavour; 5] =
        [Flavour::Glibc, Flavour::GlibcPie, Flavour::Musl, Flavour::MuslPie, Flavour::Rust];

    /// Flavours whose absence fails the tests (CI installs their toolchains).
    /// musl static-pie is assembled by hand and may be skipped.
    pub const REQUIRED: [Flavour; 4] = [Flavour::Glibc, Flavour::GlibcPie, Flavour::Musl, Flavour::Rust];

    /// The file-name suffix `build.sh` gives binaries of this flavour.
    pub fn suffix(self) -> &'static str {
        match self {
            Flavour::Glibc => "glibc",
            Flavour::GlibcPie => "glibc-pie",
            Flavour::Musl => "musl",
            Flavour::MuslPie => "musl-pie",
            Flavour::Rust => "rust",
        }
    }

    /// The flavour with the given suffix.
    pub fn from_suffix(suffix: &str) -> Option<Flavour> {
        Flavour::ALL.into_iter().find(|f| f.suffix() == suffix)
    }

    /// Whether binaries of this flavour are position independent (ET_DYN).
    pub fn is_pie(self) -> bool {
        matches!(self, Flavour::GlibcPie | Flavour::MuslPie | Flavour::Rust)
    }
}

/// One built sample binary.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Program name (`hello`, `sha256`, `hello-rs`, ...).
    pub name: String,
    /// How it was built.
    pub flavour: Flavour,
    /// Absolute path of the binary.
    pub path: PathBuf,
}

impl Sample {
    /// `name.flavour`, the binary's file name; used in messages.
    pub fn label(&self) -> String {
        format!("{}.{}", self.name, self.flavour.suffix())
    }
}

/// The sample binaries built by `samples/build.sh`.
#[derive(Debug)]
pub struct Samples {
    /// Directory holding the binaries and `MANIFEST`.
    pub dir: PathBuf,
    /// Every sample binary meant to be run and confined.
    pub built: Vec<Sample>,
    /// Inputs that `cabinc build` must refuse (`refuse/` in the build dir),
    /// by file name, e.g. `hello.dynamic`, `wrpkru.glibc`.
    pub refuse: BTreeMap<String, PathBuf>,
    /// Lines of `SKIPPED`: flavours the build skipped and why.
    pub skipped: Vec<String>,
}

impl Samples {
    /// The samples, built on first use in this process (and cached on disk
    /// under `target/cabin-samples/<hash of samples/>` across processes).
    pub fn get() -> &'static Samples {
        static SAMPLES: OnceLock<Samples> = OnceLock::new();
        SAMPLES.get_or_init(build_samples)
    }

    /// The binary of `name` in `flavour`, if it was built.
    pub fn find(&self, name: &str, flavour: Flavour) -> Option<&Sample> {
        self.built.iter().find(|s| s.name == name && s.flavour == flavour)
    }

    /// The binary of `name` in `flavour`; panics when it was not built.
    pub fn path(&self, name: &str, flavour: Flavour) -> &Path {
        match self.find(name, flavour) {
            Some(s) => &s.path,
            None => panic!(
                "sample {name}.{} was not built (skipped flavours: {:?}); see samples/build.sh",
                flavour.suffix(),
                self.skipped
            ),
        }
    }

    /// Every built flavour of `name`; panics when a required flavour is missing
    /// or none was built at all, and says NOT RUN ([`not_run`]) for an
    /// optional flavour (musl static-pie) that was not built.
    pub fn flavours_of(&self, name: &str) -> Vec<&Sample> {
        let found: Vec<&Sample> = self.built.iter().filter(|s| s.name == name).collect();
        assert!(!found.is_empty(), "no flavour of sample {name:?} was built; skipped: {:?}", self.skipped);
        let is_rust = found.iter().any(|s| s.flavour == Flavour::Rust);
        for flavour in Flavour::REQUIRED {
            let applies = (flavour == Flavour::Rust) == is_rust;
            if applies && !found.iter().any(|s| s.flavour == flavour) {
                panic!(
                    "sample {name}.{} is missing but required (install gcc, musl-tools and a Rust \
                     toolchain); skipped: {:?}",
                    flavour.suffix(),
                    self.skipped
                );
            }
        }
        let optional = Flavour::ALL.into_iter().filter(|f| !Flavour::REQUIRED.contains(f));
        for flavour in optional.filter(|&f| (f == Flavour::Rust) == is_rust) {
            if !found.iter().any(|s| s.flavour == flavour) {
                let why =
                    format!("sample {name}.{} was not built; skipped: {:?}", flavour.suffix(), self.skipped);
                not_run(&format!("{} flavour", flavour.suffix()), &why);
            }
        }
        found
    }

    /// A must-refuse input by file name (`hello.dynamic`, `wrpkru.glibc`).
    pub fn refuse(&self, file: &str) -> &Path {
        match self.refuse.get(file) {
            Some(p) => p,
            None => panic!("refuse/{file} was not built (is gcc installed?); skipped: {:?}", self.skipped),
        }
    }
}

/// Hash of everything under `samples/` that affects the build.
fn samples_source_hash(dir: &Path) -> String {
    fn walk(dir: &Path, root: &Path, files: &mut Vec<(String, PathBuf)>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" || name == "Cargo.lock" {
                continue;
            }
            if path.is_dir() {
                walk(&path, root, files);
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
                files.push((rel, path));
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    files.sort();
    let mut hasher = Sha256::new();
    for (rel, path) in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        hasher.update((data.len() as u64).to_le_bytes());
        hasher.update(&data);
    }
    hex::encode(&hasher.finalize()[..8])
}

fn build_samples() -> Samples {
    let src = workspace_root().join("samples");
    let cache = target_dir().join("cabin-samples");
    let key = samples_source_hash(&src);
    let dir = cache.join(&key);
    if !dir.join(".complete").exists() {
        std::fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("creating {}: {e}", cache.display()));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = cache.join(format!("tmp-{}-{nanos}", std::process::id()));
        let output = Command::new("bash")
            .arg(src.join("build.sh"))
            .arg(&tmp)
            .env("CABIN_SAMPLES_RUST_TARGET", cache.join("rust-target"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running bash samples/build.sh: {e}"));
        if !output.status.success() {
            panic!(
                "samples/build.sh {} failed ({}):\n{}{}",
                tmp.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::fs::write(tmp.join(".complete"), b"")
            .unwrap_or_else(|e| panic!("writing {}/.complete: {e}", tmp.display()));
        // Another test process may have won the race; then use its copy.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
            assert!(dir.join(".complete").exists(), "could not install samples into {}", dir.display());
        }
        remove_stale_sample_builds(&cache, &key);
    }
    read_samples_dir(&dir)
}

/// Removes sample builds of older source versions (16-hex-digit directories).
fn remove_stale_sample_builds(cache: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(cache) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != keep && name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Reads the `MANIFEST` and `SKIPPED` files a `samples/build.sh` run left in `dir`.
pub fn read_samples_dir(dir: &Path) -> Samples {
    let manifest = std::fs::read_to_string(dir.join("MANIFEST"))
        .unwrap_or_else(|e| panic!("reading {}/MANIFEST: {e}", dir.display()));
    let skipped = std::fs::read_to_string(dir.join("SKIPPED")).unwrap_or_default();
    let mut built = Vec::new();
    let mut refuse = BTreeMap::new();
    for line in manifest.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, flavour, file] = fields[..] else {
            panic!("bad MANIFEST line {line:?} in {}", dir.display());
        };
        let path = dir.join(file);
        if let Some(rest) = file.strip_prefix("refuse/") {
            refuse.insert(rest.to_string(), path);
        } else {
            let flavour = Flavour::from_suffix(flavour)
                .unwrap_or_else(|| panic!("unknown flavour {flavour:?} in {}/MANIFEST", dir.display()));
            built.push(Sample { name: name.to_string(), flavour, path });
        }
    }
    Samples { dir: dir.to_path_buf(), built, refuse, skipped: skipped.lines().map(str::to_string).collect() }
}

// ---------------------------------------------------------------------------
// Running programs
// ---------------------------------------------------------------------------

/// How to run a program: arguments, standard input, working directory.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Arguments after argv[0].
    pub args: Vec<OsString>,
    /// Bytes fed to standard input (then closed).
    pub stdin: Vec<u8>,
    /// Working directory; the test process's if `None`.
    pub cwd: Option<PathBuf>,
    /// argv[0]; the program path if `None`. Differential runs set it so the
    /// native and the confined program see the same argv.
    pub arg0: Option<OsString>,
    /// Extra environment variables.
    pub env: Vec<(OsString, OsString)>,
    /// The run is killed and the test fails after this long.
    pub timeout: Duration,
}

impl Default for Invocation {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            stdin: Vec::new(),
            cwd: None,
            arg0: None,
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Invocation {
    /// No arguments, empty stdin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Sets standard input.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = data.into();
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets argv[0].
    pub fn arg0(mut self, arg0: impl AsRef<OsStr>) -> Self {
        self.arg0 = Some(arg0.as_ref().to_os_string());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Sets the time limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// What a finished program produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// The program that ran.
    pub program: PathBuf,
    /// Its arguments (after argv[0]).
    pub args: Vec<OsString>,
    /// Everything written to standard output.
    pub stdout: Vec<u8>,
    /// Everything written to standard error.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub status: ExitStatus,
}

impl Output {
    /// Exit code, `None` when killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Standard output as (lossy) text.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as (lossy) text.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The command line, for messages.
    pub fn command_line(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&shell_quote(&a.to_string_lossy()));
        }
        s
    }

    /// Command, status and (abridged) output, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {}\nstdout ({} bytes):\n{}\nstderr ({} bytes):\n{}",
            self.command_line(),
            describe_status(self.status),
            self.stdout.len(),
            abridge(&self.stdout),
            self.stderr.len(),
            abridge(&self.stderr)
        )
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+%@".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `exit N` or `signal N`.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => {
            format!("killed by signal {sig}{}", if status.core_dumped() { " (core)" } else { "" })
        }
        _ => format!("{status}"),
    }
}

/// At most 2 KiB of `data` as text, with a note when cut.
pub fn abridge(data: &[u8]) -> String {
    const MAX: usize = 2048;
    if data.len() <= MAX {
        String::from_utf8_lossy(data).into_owned()
    } else {
        format!("{}\n[... {} more bytes]", String::from_utf8_lossy(&data[..MAX]), data.len() - MAX)
    }
}

/// Runs `program` as `inv` says, capturing stdout, stderr and the status.
/// Panics when the program cannot be started or exceeds the time limit.
pub fn run(program: &Path, inv: &Invocation) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(&inv.args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(arg0) = &inv.arg0 {
        cmd.arg0(arg0);
    }
    if let Some(cwd) = &inv.cwd {
        cmd.current_dir(cwd);
    }
    for (k, v) in &inv.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let stdin = child.stdin.take();
    let data = inv.stdin.clone();
    let writer = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            // The program may exit without reading everything: ignore EPIPE.
            let _ = stdin.write_all(&data);
        }
    });
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + inv.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} {:?} did not finish within {:?}; killed it",
                    program.display(),
                    inv.args,
                    inv.timeout
                );
            }
            Err(e) => panic!("waiting for {}: {e}", program.display()),
        }
    };
    let _ = writer.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Output { program: program.to_path_buf(), args: inv.args.clone(), stdout, stderr, status }
}

/// Differences between two runs (stdout, stderr, status), or `Ok` when
/// they are byte-identical.
pub fn diff_runs(native: &Output, image: &Output) -> Result<(), String> {
    let mut msg = String::new();
    if native.status.code() != image.status.code() || native.status.signal() != image.status.signal() {
        let _ = writeln!(
            msg,
            "status differs: native {} vs image {}",
            describe_status(native.status),
            describe_status(image.status)
        );
    }
    for (what, a, b) in [("stdout", &native.stdout, &image.stdout), ("stderr", &native.stderr, &image.stderr)]
    {
        if a != b {
            let first = a.iter().zip(b.iter()).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
            let _ = writeln!(
                msg,
                "{what} differs (native {} bytes, image {} bytes, first difference at byte {first})",
                a.len(),
                b.len()
            );
        }
    }
    if msg.is_empty() {
        Ok(())
    } else {
        Err(format!("{msg}--- native ---\n{}\n--- image ---\n{}", native.describe(), image.describe()))
    }
}

/// Asserts that two runs gave byte-identical stdout and stderr and the
/// same exit status.
pub fn compare_runs(native: &Output, image: &Output) {
    if let Err(msg) = diff_runs(native, image) {
        panic!("native and image runs differ:\n{msg}");
    }
}

/// Runs `native` and `image` with the same invocation (same argv[0],
/// defaulting to the native binary's file name) and asserts identical results.
/// Returns the native run.
pub fn run_both_and_compare(native: &Path, image: &Path, inv: &Invocation) -> Output {
    let inv = with_common_arg0(native, inv);
    let a = run(native, &inv);
    let b = run(image, &inv);
    compare_runs(&a, &b);
    a
}

/// `inv` with argv[0] set to the native binary's file name unless already set.
pub fn with_common_arg0(native: &Path, inv: &Invocation) -> Invocation {
    let mut inv = inv.clone();
    if inv.arg0.is_none() {
        inv.arg0 = Some(native.file_name().map(OsStr::to_os_string).unwrap_or_else(|| native.into()));
    }
    inv
}

/// Names of the entries of `dir` (sorted), for "nothing was left behind" checks.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// cabinc
// ---------------------------------------------------------------------------

/// Exit status of `cabinc` on success.
pub const EXIT_OK: i32 = 0;
/// Exit status of `cabinc` for refused or malformed input.
pub const EXIT_REFUSED: i32 = 1;
/// Exit status of `cabinc` for a usage error.
pub const EXIT_USAGE: i32 = 2;

/// The `cabinc` binary under test.
#[derive(Debug, Clone)]
pub struct Cabinc {
    /// Path of the binary (`env!("CARGO_BIN_EXE_cabinc")` in cabinc's tests).
    pub path: PathBuf,
}

impl Cabinc {
    /// Wraps the binary at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Runs `cabinc ARGS...`.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&self.path, &Invocation::new().args(args).timeout(Duration::from_secs(600)))
    }

    /// Runs `cabinc build INPUT -o OUTPUT EXTRA...`.
    pub fn build(&self, input: &Path, output: &Path, extra: &[&str]) -> Output {
        let mut args: Vec<OsString> = vec!["build".into(), input.into(), "-o".into(), output.into()];
        args.extend(extra.iter().map(OsString::from));
        self.run(args)
    }

    /// `build` that must succeed and leave an executable file at `output`.
    pub fn build_ok(&self, input: &Path, output: &Path, extra: &[&str]) -> Output {
        let out = self.build(input, output, extra);
        assert_eq!(out.code(), Some(EXIT_OK), "cabinc build failed:\n{}", out.describe());
        assert!(
            output.is_file(),
            "cabinc build exited 0 but wrote no {}:\n{}",
            output.display(),
            out.describe()
        );
        out
    }

    /// `cabinc inspect IMAGE --format json`, parsed.
    pub fn inspect_json(&self, image: &Path) -> serde_json::Value {
        let out =
            self.run([OsStr::new("inspect"), image.as_os_str(), OsStr::new("--format"), OsStr::new("json")]);
        assert_eq!(out.code(), Some(EXIT_OK), "cabinc inspect failed:\n{}", out.describe());
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("cabinc inspect --format json printed invalid JSON ({e}):\n{}", out.describe())
        })
    }

    /// `cabinc measure IMAGE`: the printed line, checked to be 96 hex digits.
    pub fn measure(&self, image: &Path) -> String {
        let out = self.run([OsStr::new("measure"), image.as_os_str()]);
        assert_eq!(out.code(), Some(EXIT_OK), "cabinc measure failed:\n{}", out.describe());
        let text = out.stdout_str();
        let m = text.trim_end_matches('\n');
        assert!(
            m.len() == 96 && m.bytes().all(|b| b.is_ascii_hexdigit()),
            "cabinc measure must print exactly 96 hex digits, printed {text:?}"
        );
        m.to_string()
    }
}

/// Asserts `out` exited with `code`; `what` names the step for the message.
pub fn expect_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(out.code(), Some(code), "{what}: expected exit {code}:\n{}", out.describe());
}

// ---------------------------------------------------------------------------
// External tools
// ---------------------------------------------------------------------------

/// Panics unless `tool` can be run (`tool --version`); `package` says what to install.
pub fn require_tool(tool: &str, package: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "`{tool}` is needed by this test: install {package}");
}

/// Compiles the C file `src` with `compiler` (`gcc`, `musl-gcc`) as a
/// static executable (`-static -O1`) at `out`. `None` when the compiler is
/// not installed: that is said as NOT RUN ([`not_run`], tier `COMPILER`)
/// with the Debian package to install, and the caller returns without
/// passing. A compile error panics.
pub fn compile_static_c(compiler: &str, package: &str, src: &Path, out: &Path) -> Option<()> {
    match Command::new(compiler).args(["-static", "-O1", "-o"]).arg(out).arg(src).output() {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => panic!("{compiler} failed for {}: {}", src.display(), String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            not_run(compiler, &format!("{compiler} is not available ({e}); help: apt-get install {package}"));
            None
        }
    }
}

/// The address of the first `syscall` instruction in function `func` of
/// the executable `exe`, as `objdump -d` shows it (panics when objdump is
/// missing or the function has none).
pub fn syscall_address(exe: &Path, func: &str) -> u64 {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(exe)
        .output()
        .unwrap_or_else(|e| panic!("objdump is needed by this test ({e}): install binutils"));
    assert!(out.status.success(), "objdump -d {} failed", exe.display());
    let dis = String::from_utf8_lossy(&out.stdout);
    // "  40113e:\tsyscall" — the first `syscall` after `<func>:`.
    let header = format!("<{func}>:");
    dis.lines()
        .skip_while(|l| !l.ends_with(&header))
        .find(|l| l.trim_end().ends_with("syscall"))
        .and_then(|l| l.split(':').next())
        .and_then(|a| u64::from_str_radix(a.trim(), 16).ok())
        .unwrap_or_else(|| panic!("objdump shows no syscall in {func} of {}", exe.display()))
}

/// Compiles the site program (`tests/src/site.c`: one `uname` through a raw
/// `syscall` in `raw_uname`) with musl-gcc into `DIR/site`; returns its path
/// and the address of that `syscall`, or `None` when musl-gcc is missing
/// (said as NOT RUN).
pub fn site_program(dir: &Path) -> Option<(PathBuf, u64)> {
    let src = dir.join("site.c");
    std::fs::write(&src, include_str!("site.c")).expect("write the site program");
    let exe = dir.join("site");
    compile_static_c("musl-gcc", "musl-tools", &src, &exe)?;
    let addr = syscall_address(&exe, "raw_uname");
    Some((exe, addr))
}

/// A `Write` whose bytes a test can read back (clones share the buffer).
#[derive(Clone, Debug, Default)]
pub struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().map(|b| b.clone()).unwrap_or_default()).unwrap_or_default()
    }
}

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One `LOAD` line of `readelf -lW`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadHeader {
    /// p_offset.
    pub offset: u64,
    /// p_vaddr.
    pub vaddr: u64,
    /// p_filesz.
    pub filesz: u64,
    /// p_memsz.
    pub memsz: u64,
    /// Flags exactly as readelf prints them: three characters, `R`/`W`/`E`
    /// or a space each (`"R E"`, `"RW "`, `"  E"`).
    pub flags: String,
    /// p_align.
    pub align: u64,
}

impl LoadHeader {
    /// PF_R.
    pub fn readable(&self) -> bool {
        self.flags.as_bytes().first() == Some(&b'R')
    }
    /// PF_W.
    pub fn writable(&self) -> bool {
        self.flags.as_bytes().get(1) == Some(&b'W')
    }
    /// PF_X.
    pub fn executable(&self) -> bool {
        self.flags.as_bytes().get(2) == Some(&b'E')
    }
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// Parses the program header table of `readelf -lW` output; returns the
/// PT_LOAD entries in file order.
pub fn parse_readelf_loads(text: &str) -> Vec<LoadHeader> {
    let mut loads = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with("LOAD ") {
            continue;
        }
        // LOAD off vaddr paddr filesz memsz FLG align, where FLG is three
        // columns that may be blank: cut it out by position.
        let fields: Vec<(usize, &str)> = split_with_positions(line);
        assert!(fields.len() >= 7, "unexpected readelf LOAD line {line:?}");
        let num = |i: usize| {
            parse_hex(fields[i].1)
                .unwrap_or_else(|| panic!("bad number {:?} in readelf line {line:?}", fields[i].1))
        };
        let memsz_end = fields[5].0 + fields[5].1.len();
        let (align_pos, align) = fields[fields.len() - 1];
        let between = &line[memsz_end..align_pos];
        // `between` is " FLG " (one separator space each side).
        let flags = between.strip_prefix(' ').unwrap_or(between);
        let flags: String = flags.chars().take(3).collect();
        assert!(
            flags.len() == 3 && flags.chars().all(|c| " RWE".contains(c)),
            "cannot read flags {between:?} in readelf line {line:?}"
        );
        loads.push(LoadHeader {
            offset: num(1),
            vaddr: num(2),
            filesz: num(4),
            memsz: num(5),
            flags,
            align: parse_hex(align).unwrap_or_else(|| panic!("bad align in readelf line {line:?}")),
        });
    }
    loads
}

fn split_with_positions(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, &line[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

/// Output of `readelf -lW FILE`; panics when readelf fails.
pub fn readelf_program_headers(path: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-lW")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running readelf (install binutils): {e}"));
    assert!(
        out.status.success(),
        "readelf -lW {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The PT_LOAD headers of `path`, as `readelf -lW` reports them.
pub fn load_headers(path: &Path) -> Vec<LoadHeader> {
    parse_readelf_loads(&readelf_program_headers(path))
}

/// Number of `syscall` instructions in `objdump -d` of `path` (lines
/// containing a tab followed by `syscall`).
pub fn count_syscall_instructions(path: &Path) -> usize {
    let out = Command::new("objdump")
        .arg("-d")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running objdump (install binutils): {e}"));
    assert!(
        out.status.success(),
        "objdump -d {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    count_syscall_lines(&String::from_utf8_lossy(&out.stdout))
}

/// Counts `objdump -d` lines whose mnemonic is `syscall`.
pub fn count_syscall_lines(disassembly: &str) -> usize {
    disassembly.lines().filter(|l| l.contains("\tsyscall")).count()
}

/// Number of system-call instructions of every kind Cabin treats as a site
/// (`syscall`, `sysenter`, `int $0x80`) in `objdump -d` of `path`.
pub fn count_site_instructions(path: &Path) -> usize {
    let out = Command::new("objdump")
        .arg("-d")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running objdump (install binutils): {e}"));
    assert!(out.status.success(), "objdump -d {} failed", path.display());
    count_site_lines(&String::from_utf8_lossy(&out.stdout))
}

/// Counts `objdump -d` lines with `syscall`, `sysenter` or `int $0x80`.
pub fn count_site_lines(disassembly: &str) -> usize {
    disassembly
        .lines()
        .filter(|l| {
            let Some((_, insn)) = l.rsplit_once('\t') else { return false };
            let mut words = insn.split_whitespace();
            match words.next() {
                Some("syscall" | "sysenter") => true,
                Some("int") => words.next() == Some("$0x80"),
                _ => false,
            }
        })
        .count()
}

// ---------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), for reproducible inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

const WORDS: &[&str] = &[
    "cabin",
    "monitor",
    "libos",
    "ring",
    "syscall",
    "trampoline",
    "page",
    "fault",
    "guest",
    "host",
    "kernel",
    "domain",
    "image",
    "measure",
    "policy",
    "audit",
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "Apple",
    "banana",
    "Cherry",
    "damson",
    "elder",
    "fig",
    "grape",
];

/// `lines` lines of text: words, numbers, repeats (so `uniq` has work),
/// tabs and commas (so `cut` has fields), deterministic for `seed`.
pub fn text_corpus(seed: u64, lines: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut s = String::new();
    let mut prev = String::new();
    for i in 0..lines {
        if i > 0 && rng.below(7) == 0 {
            s.push_str(&prev);
            continue;
        }
        let mut line = String::new();
        let n = 1 + rng.below(8);
        for j in 0..n {
            if j > 0 {
                line.push(if rng.below(5) == 0 {
                    '\t'
                } else if rng.below(4) == 0 {
                    ','
                } else {
                    ' '
                });
            }
            if rng.below(3) == 0 {
                let _ = write!(line, "{}", rng.below(100_000) as i64 - 20_000);
            } else {
                line.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
            }
        }
        line.push('\n');
        s.push_str(&line);
        prev = line;
    }
    s
}

/// One number per line (`count` lines), for numeric sorts and awk sums.
pub fn number_lines(seed: u64, count: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut s = String::new();
    for _ in 0..count {
        let _ = writeln!(s, "{}", rng.below(2_000_000) as i64 - 1_000_000);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readelf_flags_are_cut_by_position() {
        let text = "\
Program Headers:
  Type           Offset   VirtAddr           PhysAddr           FileSiz  MemSiz   Flg Align
  LOAD           0x000000 0x0000000000400000 0x0000000000400000 0x000190 0x000190 R   0x1000
  LOAD           0x001000 0x0000000000401000 0x0000000000401000 0x001281 0x001281   E 0x1000
  LOAD           0x003000 0x0000000000403000 0x0000000000403000 0x000044 0x000044 R E 0x1000
  LOAD           0x003fc0 0x0000000000404fc0 0x0000000000404fc0 0x000150 0x0007f8 RW  0x1000
  NOTE           0x000270 0x0000000000400270 0x0000000000400270 0x000044 0x000044 R   0x4
";
        let loads = parse_readelf_loads(text);
        let flags: Vec<&str> = loads.iter().map(|l| l.flags.as_str()).collect();
        assert_eq!(flags, ["R  ", "  E", "R E", "RW "]);
        assert!(loads[1].executable() && !loads[1].readable());
        assert!(loads[3].writable() && !loads[3].executable());
        assert_eq!(loads[3].vaddr, 0x404fc0);
        assert_eq!(loads[3].memsz, 0x7f8);
        assert_eq!(loads[3].align, 0x1000);
    }

    #[test]
    fn syscall_lines_are_counted() {
        let text = "  401000:\t0f 05                \tsyscall\n  401002:\te8 00 00 00 00       \tcall   401007 <syscall>\n  401010:\t0f 05                \tsyscall \n";
        assert_eq!(count_syscall_lines(text), 2);
        let more = format!("{text}  401020:\tcd 80                \tint    $0x80\n  401022:\tcd 03                \tint    $0x3\n");
        assert_eq!(count_site_lines(&more), 3);
    }

    #[test]
    fn corpus_is_deterministic() {
        assert_eq!(text_corpus(7, 50), text_corpus(7, 50));
        assert_ne!(text_corpus(7, 50), text_corpus(8, 50));
        assert_eq!(number_lines(1, 10).lines().count(), 10);
    }

    #[test]
    fn run_captures_everything() {
        let out = run(
            Path::new("/bin/sh"),
            &Invocation::new().args(["-c", "cat; echo err >&2; exit 7"]).stdin(&b"in\n"[..]),
        );
        assert_eq!(out.stdout, b"in\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.code(), Some(7));
    }

    #[test]
    fn diff_runs_reports_differences() {
        let a = run(Path::new("/bin/sh"), &Invocation::new().args(["-c", "echo a"]));
        let b = run(Path::new("/bin/sh"), &Invocation::new().args(["-c", "echo b; exit 3"]));
        let err = diff_runs(&a, &b).unwrap_err();
        assert!(err.contains("status differs") && err.contains("stdout differs"), "{err}");
        assert!(diff_runs(&a, &a.clone()).is_ok());
    }

    /// Builds all samples (the real build.sh) and runs each natively.
    #[test]
    fn samples_build_and_run_natively() {
        let samples = Samples::get();
        let names = [
            "hello", "filecopy", "sha256", "sysloop", "readcode", "exitcode", "signals", "fork", "threads",
            "tricky", "vfork", "memory", "hello-rs",
        ];
        for name in names {
            for s in samples.flavours_of(name) {
                let loads = load_headers(&s.path);
                assert!(loads.iter().any(LoadHeader::executable), "{} has no executable LOAD", s.label());
                let dir = tempfile::tempdir().expect("tempdir");
                std::fs::write(dir.path().join("in"), Rng::new(3).bytes(5000)).expect("write input");
                let inv = match name {
                    "filecopy" => Invocation::new().args(["in", "out"]).cwd(dir.path()),
                    "sysloop" => Invocation::new().arg("1000"),
                    "hello-rs" => Invocation::new().arg("5").stdin("a b\nc\n"),
                    "sha256" => Invocation::new().stdin("abc"),
                    _ => Invocation::new(),
                };
                let out = run(&s.path, &inv);
                let want = match name {
                    "exitcode" => Some(42),
                    "hello-rs" => Some(5),
                    "signals" => None, // ends by SIGUSR1
                    _ => Some(0),
                };
                assert_eq!(out.code(), want, "{}:\n{}", s.label(), out.describe());
                if name == "sha256" {
                    assert_eq!(
                        out.stdout_str(),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -\n"
                    );
                }
                if name == "filecopy" {
                    assert_eq!(std::fs::read(dir.path().join("out")).expect("out"), Rng::new(3).bytes(5000));
                }
            }
        }
        let dynamic = samples.refuse("hello.dynamic");
        assert!(readelf_program_headers(dynamic).contains("INTERP"));
        let wrpkru = std::fs::read(samples.refuse("wrpkru.glibc")).expect("read wrpkru sample");
        assert!(wrpkru.windows(3).any(|w| w == [0x0f, 0x01, 0xef]), "wrpkru bytes missing");
    }
}
