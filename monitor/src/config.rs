//! What a caller asks of a confined run, and what it gets back.

use std::path::PathBuf;

use thiserror::Error;

/// Everything `cabinc run` passes to a backend.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    /// `argv`, including `argv[0]` (the program name the program sees).
    pub args: Vec<String>,
    /// The environment, `KEY=VALUE` each. Clean (empty) by default;
    /// `--env K=V` adds entries.
    pub env: Vec<String>,
    /// Directories the program may read (`--allow-read DIR`).
    pub allow_read: Vec<PathBuf>,
    /// Directories the program may read and write (`--allow-write DIR`).
    pub allow_write: Vec<PathBuf>,
    /// `[paths] set-id`: let the program make set-uid/set-gid files and
    /// `chown` to other owners (default: never).
    pub allow_set_id: bool,
    /// The network the program may use: the policy's `[network]` plus
    /// `--allow-connect`/`--allow-listen` (default: none). The socket
    /// calls ask it (`connect_allowed`, `listen_allowed`,
    /// `unix_path_allowed`, `abstract_allowed`); see docs/networking.md.
    pub network: cabin_policy::net::NetPolicy,
    /// `[paths] exec = "images"`: `execve` of a plain static executable is
    /// `ENOEXEC` (by default it runs through the image cache).
    pub exec_images_only: bool,
    /// The image cache `execve` of a plain executable uses (`None`: the
    /// default, `$XDG_CACHE_HOME/cabin/images`; tests name their own).
    pub image_cache: Option<PathBuf>,
    /// The launch measurement the front end already found checked against
    /// the image's pages (the verified-measurement cache,
    /// `cabin_rewriter::verified`): the session then only checks that the
    /// image records this one, and hashes its pages otherwise.
    pub measurement_checked: Option<[u8; cabin_image::measure::DIGEST_LEN]>,
    /// The image's bytes, shared, when the front end holds them in an
    /// `Arc` (the very bytes it passes to the session; any others are
    /// ignored): kept for `execve("/proc/self/exe")` without a copy of the
    /// whole image at every start.
    pub image_shared: Option<std::sync::Arc<Vec<u8>>>,
    /// Where to write the statistics JSON (`--stats FILE`), if anywhere.
    pub stats: Option<PathBuf>,
    /// Refuse to run where execute-only code cannot be enforced.
    pub require_execute_only: bool,
    /// Do not print the one-line execute-only notice on stderr.
    pub quiet: bool,
    /// Print one hint on stderr at the first call the path rules refuse
    /// (`cabin: denied read of PATH: outside --allow-read; add --allow-read
    /// DIR`): `cabinc run` sets it unless `-q`. Later refusals go to the
    /// trace and audit log only.
    pub path_hint: bool,
    /// `--mem`: the bound on the program's memory in bytes (0 = not given;
    /// see [`cabin_policy::limits::MemoryBound`]). The name is historical:
    /// the arena is what the bound leaves after the image, stack and heap.
    pub arena_bytes: u64,
    /// Policy, trace and audit (`--policy`, `--trace`, `--audit`); default: none (crate::gate).
    pub gate: GateConfig,
    /// The host descriptors that serve the program's fds 0, 1 and 2
    /// (duplicated at start); `None` = the monitor's own stdin/out/err.
    pub stdio: Option<[i32; 3]>,
    /// Testing: make every call take the seccomp-trap (SIGSYS) slow path,
    /// as if every site had been left as a trap site.
    pub force_trap_path: bool,
    /// Deliver SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to this
    /// process to the program (`cabinc run`; docs/signals.md). The session
    /// blocks them in its threads while the program runs.
    pub forward_signals: bool,
    /// Whether the program and the ring worker get CPUs of their own
    /// (`--cpus`; default: split, see [`crate::placement`]).
    pub cpu_placement: crate::placement::CpuPlacement,
    /// A view of the file system (`--root`, `--bind`, `--tmpfs`,
    /// `--chdir`, or the policy file's `[view]`): the program sees only
    /// what the view shows, under the view's paths. `None`: host paths
    /// under [`RunConfig::allow_read`]/[`RunConfig::allow_write`], as
    /// before. With a view, `allow_read`/`allow_write` must be empty (bind
    /// the directories instead). See docs/views.md.
    pub view: Option<View>,
}

/// What the program sees as its file system: `root` as `/`, each bind's
/// host directory (or file) at its view path, a fresh memory-backed
/// directory at each tmpfs path, and `chdir` as its starting directory.
/// Everything else does not exist for the program (`ENOENT`, as in a
/// container). Paths the program names and reports (`getcwd`, fd paths)
/// are view paths; the trace records view and host path.
///
/// Resolution never leaves the view: the root is resolved with
/// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (so `..` at `/`
/// stays at `/` and absolute symlinks resolve inside the root), each bind
/// and tmpfs with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` from its host
/// directory (a symlink or `..` leaving it is refused, as for the allowed
/// trees). Renaming or linking across two of them is `EXDEV`, a write
/// under a read-only one `EROFS`, as Linux answers for mounts.
///
/// This API is stable: OCI `root` maps to `root`/`root_readonly`, OCI
/// `mounts` of type bind to `binds` (option `ro` to `readonly`) and of
/// type tmpfs to `tmpfs` (option `size=` to `size`), `process.cwd` to
/// `chdir`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The host directory the program sees as `/`. `None`: an empty
    /// directory made by the monitor (read-only; holding only the mount
    /// points of `binds` and `tmpfs`), removed at the end.
    pub root: Option<PathBuf>,
    /// Whether `/` itself (not the binds and tmpfs in it) is read-only
    /// (`EROFS` for a change).
    pub root_readonly: bool,
    /// Host paths shown at view paths (later entries over earlier ones at
    /// equal paths; a longer view path wins inside a shorter one).
    pub binds: Vec<Bind>,
    /// Memory-backed directories.
    pub tmpfs: Vec<Tmpfs>,
    /// The program's starting directory, a view path (absolute); `None`:
    /// `/`.
    pub chdir: Option<PathBuf>,
}

/// One `--bind SRC:DST[:ro]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// The host path (a directory or a file; resolved once at start).
    pub src: PathBuf,
    /// Where the program sees it: an absolute view path, not `/`.
    pub dst: PathBuf,
    /// A change under it is `EROFS`.
    pub readonly: bool,
}

/// One `--tmpfs DST[:SIZE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tmpfs {
    /// Where the program sees it: an absolute view path, not `/`.
    pub dst: PathBuf,
    /// Its capacity in bytes (data and metadata, as the kernel's tmpfs
    /// counts them); writes past it are `ENOSPC`. Counted against the
    /// memory limit.
    pub size: u64,
}

impl Tmpfs {
    /// The size when none is given (`--tmpfs DST`): 64 MiB.
    pub const DEFAULT_SIZE: u64 = 64 << 20;
}

impl RunConfig {
    /// May the libos read ahead of the program (`BOOT_FLAG_READ_AHEAD`)?
    /// Not when a policy, trace or audit must see each call as the program
    /// made it, nor on the synchronous path, which is there to measure them.
    pub fn read_ahead(&self) -> bool {
        self.gate.policy.is_none()
            && self.gate.trace.trace.is_none()
            && self.gate.trace.audit.is_none()
            && !self.force_trap_path
    }
}

/// What `cabinc run` passes to a backend for policy, trace and audit (one
/// field of [`RunConfig`]). The default: no policy, no trace, no audit.
#[derive(Debug, Clone, Default)]
pub struct GateConfig {
    /// `--policy FILE`, checked (with `--allow-read`/`--allow-write` already added to its paths).
    pub policy: Option<cabin_policy::Policy>,
    /// `--trace`, `--trace-format`, `--audit`.
    pub trace: crate::trace::TraceOptions,
    /// What the `start` record says (image, measurement, version, args);
    /// the backend fills in `backend`.
    pub start: cabin_policy::trace::StartInfo,
}

/// How a confined run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit status to pass on: the program's own code, 128 + signal
    /// for a fault or a kill, [`EXIT_PROTOCOL_VIOLATION`] when the monitor
    /// ended the program.
    pub exit_code: i32,
    /// Why the program ended, as one line (already printed on stderr when
    /// it was not a normal exit).
    pub reason: EndReason,
    /// Statistics (also written to [`RunConfig::stats`] when set).
    pub stats: serde_json::Value,
}

/// Exit status when the monitor ended the program for breaking the ring
/// protocol (128 + SIGKILL: the program was killed).
pub const EXIT_PROTOCOL_VIOLATION: i32 = 137;

/// Why a confined program stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// `exit`/`exit_group` with this code.
    Exited(i32),
    /// Ended by a fatal signal (fault, self-sent signal or kill).
    Signal {
        /// Signal number.
        signo: i32,
        /// Fault address, when the libos recorded one.
        addr: Option<u64>,
        /// `rip` at the fault, when the libos recorded one.
        rip: Option<u64>,
        /// SIGSEGV `si_code` (1 `SEGV_MAPERR`, 2 `SEGV_ACCERR`), when known.
        code: Option<i32>,
    },
    /// The monitor stopped it: garbage on the ring, wild pointer, broken
    /// contract. The message says what.
    ProtocolViolation(String),
}

/// Short signal name ("SIGSEGV"; "signal N" for the rest).
pub fn signal_name(sig: i32) -> String {
    let n = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        s => return format!("signal {s}"),
    };
    n.to_string()
}

/// Why a run could not happen (the program never started, or the monitor
/// itself failed). `cabinc` maps [`RunError::ImageRejected`] and
/// [`RunError::InvalidImage`] to exit 126 and the rest to 125.
#[derive(Debug, Error)]
pub enum RunError {
    /// The image is not an intact Cabin image: its manifest does not
    /// decode, or the recorded launch measurement does not match its pages
    /// (edited after `cabinc build`, or a plain executable).
    #[error("not a runnable Cabin image: {0}")]
    ImageRejected(#[source] cabin_image::image::ImageError),
    /// The image does not parse or is not runnable.
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// `--require-execute-only` on a machine that cannot enforce it.
    #[error(
        "execute-only code cannot be enforced on this machine (the CPU has no protection keys); \
         help: drop --require-execute-only or use a CPU with PKU"
    )]
    ExecuteOnlyUnavailable,
    /// The view (`RunConfig::view`) cannot be set up: the message names
    /// the path and the fix.
    #[error("cannot set up the view: {0}")]
    View(String),
    /// An `--allow-read`/`--allow-write` directory cannot be used.
    #[error(transparent)]
    AllowedDirs(#[from] crate::service::fs::FsError),
    /// The program's descriptor table cannot be sized.
    #[error(transparent)]
    Descriptors(#[from] crate::service::fdtable::CapacityError),
    /// The domain layout does not fit (image overlaps the monitor's areas).
    #[error("cannot lay out the domain: {0}")]
    Layout(String),
    /// A host system call the monitor needs failed.
    #[error("{what} failed: {source}")]
    Host {
        /// What the monitor was doing.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The backend failed (a host facility it needs, or a Cabin bug in it);
    /// `source` is the backend's own typed error.
    #[error("{what} failed: {source}")]
    Backend {
        /// What the backend was doing.
        what: &'static str,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The child failed while building the domain (before the program ran).
    #[error("the confined child failed during set-up ({0}); help: run with strace -f to see which step")]
    ChildSetup(String),
    /// A part of the monitor failed in a way no program input should cause
    /// (a Cabin bug): the run was stopped instead of hanging.
    #[error("internal error: {0}; this is a Cabin bug, please report it")]
    Internal(String),
    /// Writing the statistics file failed.
    #[error("cannot write statistics to {path}: {source}")]
    Stats {
        /// The stats path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl RunError {
    /// The OS error of the last failed libc call, with context.
    pub fn host(what: &'static str) -> RunError {
        RunError::Host { what, source: std::io::Error::last_os_error() }
    }
}
