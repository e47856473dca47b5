//! What the monitor's syscall service noticed about one call, handed to the
//! gate for the trace and audit log ([`CallNote`]), and why the path rules
//! refused a path ([`Refusal`]). Plain records: the service fills them, the
//! gate reads them, neither knows the other.

use crate::trace::LimitHit;

const EPERM: i32 = 1;
const EACCES: i32 = 13;
const EROFS: i32 = 30;

/// Why the path rules refused a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The path names nothing under any allowed tree.
    Outside,
    /// A change (write, create, truncate, remove, rename, chmod, ...) under a
    /// tree that is allowed for reading only.
    ReadOnly,
    /// Resolution left the allowed tree: `..` above it, an absolute symlink,
    /// or a symlink pointing out (the kernel's `EXDEV` under
    /// `RESOLVE_BENEATH`).
    Escape,
    /// Resolution met a magic link (`/proc/*/fd/*`, `/proc/*/root`, ...).
    MagicLink,
    /// The allowed tree itself cannot be removed, renamed or linked through
    /// its parent.
    TreeItself,
    /// A device node outside the safe list (opened, or changed at all).
    Device,
    /// A process's entry in `/proc` (`/proc/self`, `/proc/<pid>`, ...) or a
    /// `/proc` entry outside the system-wide list.
    Proc,
    /// A change on a kernel pseudo filesystem (`/proc`, `/sys`, cgroup), or
    /// any access to one that is not served (debugfs, tracefs, bpf, ...).
    Pseudo,
    /// `chown` to an owner or group other than the program's own (`[paths]
    /// set-id` allows it).
    Owner,
    /// The name of a file grant now names another object than the one
    /// granted at start (replaced, renamed over, swapped for a symlink):
    /// grants are objects, not names.
    Replaced,
    /// A change under a read-only part of a view (a `--bind SRC:DST:ro`, a
    /// read-only root): `EROFS`, as Linux answers for a read-only mount.
    ReadOnlyView,
}

impl Refusal {
    /// The reason in words (the trace's rule says `[paths] ` and this).
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::Outside => "outside the allowed trees",
            Refusal::ReadOnly => "under a read-only tree",
            Refusal::Escape => "resolution left the allowed tree (`..` or a symlink)",
            Refusal::MagicLink => "resolution met a magic link (/proc/*/fd, /proc/*/root, ...)",
            Refusal::TreeItself => "an allowed tree itself cannot be changed through its parent",
            Refusal::Device => "a device outside the safe list (/dev/null, zero, full, random, urandom, the tty)",
            Refusal::Proc => "a process's /proc entry (the monitor's or another's) or /proc outside its system-wide files",
            Refusal::Pseudo => "a kernel pseudo filesystem (/proc, /sys, cgroup: never writable; debugfs, bpf, ...: not served)",
            Refusal::Owner => "chown to another owner or group than the program's own ([paths] set-id allows it)",
            Refusal::Replaced => "the granted file's name now names another object than the one granted at start",
            Refusal::ReadOnlyView => "under a read-only part of the view (a read-only bind or root)",
        }
    }

    /// The errno the program gets: `EPERM` for an owner change (what an
    /// unprivileged `chown` gets natively), `EROFS` under a read-only part
    /// of a view, `EACCES` for the rest.
    pub fn errno(self) -> i32 {
        match self {
            Refusal::Owner => EPERM,
            Refusal::ReadOnlyView => EROFS,
            _ => EACCES,
        }
    }
}

/// A call the path rules refused: why, and what was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRefusal {
    /// Why.
    pub why: Refusal,
    /// What the monitor refused: the absolute path it resolved the
    /// program's path to (the program's path joined to its cwd or dirfd),
    /// or, for a call on a descriptor, the descriptor's path.
    pub resolved: Vec<u8>,
}

impl PathRefusal {
    /// The rule as the trace and audit log show it: `[paths] PATH: why`.
    pub fn rule(&self) -> String {
        format!("[paths] {}: {}", crate::trace::record::path_text(&self.resolved), self.why.describe())
    }
}

/// What the service noticed about the call it served last, for the trace
/// and audit log: taken by the ring worker after `Service::handle` and
/// handed to the gate. Empty (and free) unless paths are recorded or the
/// call was refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallNote {
    /// The path argument as the program passed it (up to its NUL): the
    /// first one read when `Service::set_record_paths` is on; for a
    /// refused call, always the refused one.
    pub path: Option<Vec<u8>>,
    /// In a view: where `path` lies on the host (by its spelling), for the
    /// trace.
    pub host_path: Option<Vec<u8>>,
    /// Set when the path rules refused the call (it returned `EACCES`).
    pub refusal: Option<PathRefusal>,
    /// Set when the network rules refused the call (it returned `EACCES`):
    /// the rule as the trace and audit log show it, naming the address
    /// (`[network] connect 10.0.0.1:80: ...`).
    pub network: Option<String>,
    /// The socket address the call named or got (`trace::record::addr_text`):
    /// set for a network refusal, and for allowed socket calls while paths
    /// are recorded (a tracer wants them); the record's `addr`.
    pub addr: Option<String>,
    /// Set when a write limit stopped the call before it ran (it returned
    /// `EFBIG`, which the program never sees: the gate stops it).
    pub limit: Option<LimitHit>,
}
