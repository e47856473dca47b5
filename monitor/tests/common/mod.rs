//! Helpers shared by the monitor's integration tests: the C programs in
//! `tests/programs/`, compiled statically with gcc and rewritten into Cabin
//! images in-process. Each test file uses a part of this module.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `monitor/tests/programs`.
pub fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

/// Compiles `tests/programs/NAME.c` into `DIR/NAME`; `None` when gcc is
/// missing (said as NOT RUN by `cabin_tests::compile_static_c`).
pub fn compile(name: &str, dir: &Path) -> Option<PathBuf> {
    let exe = dir.join(name);
    cabin_tests::compile_static_c("gcc", "gcc", &programs().join(format!("{name}.c")), &exe)?;
    Some(exe)
}

/// Rewrites the static executable `input` into a Cabin image (default options).
pub fn rewrite(input: &[u8]) -> Vec<u8> {
    let opts = cabin_rewriter::pipeline::BuildOptions::default();
    cabin_rewriter::pipeline::build_image(input, &opts, &mut |_| {}).expect("build image").image
}

/// Writes `bytes` to `path` as an executable file (0755): an image or a
/// program a confined process will `execve`.
pub fn executable(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Compiles `tests/programs/NAME.c` and builds its image; `None` when gcc is missing.
pub fn image(name: &str, dir: &Path) -> Option<Vec<u8>> {
    let exe = compile(name, dir)?;
    Some(rewrite(&std::fs::read(&exe).expect("read compiled program")))
}

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `process::run`.
    Process,
    /// `kvm::run` (its guest memory sized from `cfg.arena_bytes`, `--mem`).
    Kvm,
}

impl Backend {
    /// Runs `img` confined on this backend.
    pub fn run(
        self,
        img: &[u8],
        cfg: &cabin_monitor::RunConfig,
    ) -> Result<cabin_monitor::RunOutcome, cabin_monitor::RunError> {
        let _watch = Watchdog::start(self);
        match self {
            Backend::Process => cabin_process::run(img, cfg),
            Backend::Kvm => cabin_kvm::run(img, cfg),
        }
    }

    /// Whether this backend can run here. Where /dev/kvm is not usable the
    /// KVM backend says `KVM test NOT RUN` (`cabin_tests::kvm_available`,
    /// which names the test by its thread; `_test` stays for the reader) and
    /// the caller returns (never a pass); with CABIN_REQUIRE_KVM=1 it panics
    /// instead.
    pub fn available(self, _test: &str) -> bool {
        self == Backend::Process || cabin_tests::kvm_available(cabin_kvm::usable)
    }
}

/// How long one confined run of a test may take before the test binary
/// ends itself (CABIN_TEST_RUN_LIMIT seconds, default 300): a run that hangs
/// (a lost wake-up, a livelock) then fails the suite with the test's name
/// instead of stalling CI until its own limit.
struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Watchdog {
    fn start(b: Backend) -> Watchdog {
        let secs = std::env::var("CABIN_TEST_RUN_LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(300u64);
        let name = std::thread::current().name().unwrap_or("a test").to_string();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(std::time::Duration::from_secs(secs))
            {
                let msg = format!(
                    "error: {name}: a confined run on {b:?} did not end within {secs} s \
                     (CABIN_TEST_RUN_LIMIT); ending the test binary so the suite fails instead of hanging\n"
                );
                // Straight to fd 2: libtest captures this thread's eprintln.
                // SAFETY: writes a live buffer of its length to stderr.
                unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
                std::process::exit(124);
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the watchdog thread, which then ends.
        self.0.take();
    }
}

/// Each named test function `fn NAME(b: Backend)` once per backend, as
/// `NAME::process` and `NAME::kvm`; the KVM one only where /dev/kvm is
/// usable (see [`Backend::available`]). The test file declares
/// `#[macro_use] mod common;` and has `Backend` in scope.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn process() {
                super::$name(super::Backend::Process);
            }
            #[test]
            fn kvm() {
                if !super::Backend::Kvm.available(stringify!($name)) {
                    return;
                }
                super::$name(super::Backend::Kvm);
            }
        }
    )*};
}

/// Runs `img` confined with `args` (`args[0]` the program name); its
/// (stdout, exit status).
pub fn confined(b: Backend, img: &[u8], args: &[&str]) -> (String, i32) {
    let t = tempfile::tempdir().expect("tempdir");
    let path = t.path().join("out");
    let out = std::fs::File::create(&path).expect("output file");
    let cfg = cabin_monitor::RunConfig {
        args: args.iter().map(|s| s.to_string()).collect(),
        quiet: true,
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..Default::default()
    };
    let o = b.run(img, &cfg).expect("the monitor runs the program");
    (std::fs::read_to_string(&path).expect("read the output"), o.exit_code)
}

/// Runs `exe` natively with `args[1..]`; its (stdout, exit status).
pub fn native(exe: &Path, args: &[&str]) -> (String, i32) {
    let o = Command::new(exe).args(&args[1..]).output().expect("run natively");
    (String::from_utf8_lossy(&o.stdout).into_owned(), o.status.code().unwrap_or(-1))
}

/// Host processes whose parent is this test process and that are not
/// zombies (each confined process is one).
pub fn live_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else { continue };
        let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
        if field("PPid:").as_deref() == Some(me.as_str())
            && !field("State:").unwrap_or_default().starts_with('Z')
        {
            found.push(format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                field("State:").unwrap_or_default()
            ));
        }
    }
    found
}

/// Swaps the names `a` and `b` at once (`renameat2(RENAME_EXCHANGE)`): the
/// host side of the rename races in the path tests. Panics if refused.
#[allow(dead_code)]
pub fn exchange(a: &std::ffi::CStr, b: &std::ffi::CStr) {
    // SAFETY: renameat2 reads the two NUL-terminated paths.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(r, 0, "RENAME_EXCHANGE: {}", std::io::Error::last_os_error());
}

/// Runs `img` confined with `cfg`, its stdout and stderr in files of `dir`:
/// (stdout, stderr, exit status).
#[allow(dead_code)]
pub fn confined_captured(
    b: Backend,
    img: &[u8],
    mut cfg: cabin_monitor::RunConfig,
    dir: &Path,
) -> (String, String, i32) {
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let out = std::fs::File::create(&out_path).expect("output file");
    let err = std::fs::File::create(&err_path).expect("error file");
    cfg.stdio = Some([0, out.as_raw_fd(), err.as_raw_fd()]);
    let o = b.run(img, &cfg).expect("the monitor runs the program");
    let read = |p: &Path| std::fs::read_to_string(p).expect("read the output");
    (read(&out_path), read(&err_path), o.exit_code)
}

/// A directory for what a test binary builds once and keeps for all its
/// tests (a compiled program, its image): `$TMPDIR/cabin-TAG-PID`, removed
/// when the test binary exits. (These directories were left behind, one per
/// test binary run: hundreds in /tmp after a day of runs.)
pub fn scratch_dir(tag: &str) -> PathBuf {
    static DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    extern "C" fn remove_all() {
        // At exit: a test that panicked while holding the lock leaves the
        // directories behind rather than aborting the exit.
        if let Ok(dirs) = DIRS.try_lock() {
            for d in dirs.iter() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("cabin-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if dirs.is_empty() {
        // SAFETY: `remove_all` is an `extern "C" fn()` that touches only
        // the static above; registering it once per process.
        unsafe { libc::atexit(remove_all) };
    }
    dirs.push(dir.clone());
    dir
}
