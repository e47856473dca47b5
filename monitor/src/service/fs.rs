//! Filesystem policy: which host paths the program may reach, and how a
//! program path becomes a host file descriptor without escaping.
//!
//! The program sees host paths under their own names, but only inside the
//! directories named by `--allow-read` / `--allow-write` (the *trees*). A
//! program path is made absolute (against the virtual cwd or a directory
//! fd's path), `""` and `.` components are dropped (always no-ops), and the
//! longest tree that is a component-wise prefix is chosen (the *lexical*
//! tree). The rest is opened with `openat2(tree_fd, rest, RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)`: the kernel resolves every component, refuses
//! `..` that would leave the tree, absolute symlinks, symlinks that point
//! out, and `/proc/.../root`-style magic links — atomically, so a symlink
//! swapped during the call cannot win a race.
//!
//! **File grants.** A non-directory in `--allow-read`/`--allow-write` is a
//! file grant ([`AllowedFile`]): a path whose components are exactly the
//! file's (canonical, resolved once at start), or exactly the path the
//! grant was given as (`--allow-read /bin/sh` reaches `/usr/bin/dash` as
//! `/bin/sh` too: a spelling without `..`, never resolved again), reaches it by looking its
//! name up `O_NOFOLLOW` in its directory (held `O_PATH` from start) and
//! only when that is still the object granted at start (device, inode; the
//! object is held `O_PATH` so its inode cannot be reused): a swapped name
//! is [`Refusal::Replaced`]. Nothing else in the directory is granted, no
//! name is ever created or removed through a file grant, and its strict
//! ancestors serve metadata reads like a tree's. A writable tree that
//! covers the same path decides instead.
//!
//! **What was reached decides, not the spelling.** Every object is first
//! opened `O_PATH` (which opens no device and has no side effect) and
//! looked at ([`FsPolicy::check_object`]) before anything else happens:
//! - a device node other than the safe list (`/dev/null`, `zero`, `full`,
//!   `random`, `urandom`, `/dev/tty` and the run's own terminal) is never
//!   opened, even inside a tree; it can be looked at (`stat`), not changed;
//! - on `/proc` only the proc root and a fixed list of system-wide entries
//!   ([`PROC_SYSTEM`]) are served: every process's directory (`/proc/self`,
//!   `/proc/thread-self`, `/proc/<pid>`: the monitor's, the child's on the
//!   process backend, any host process's) is refused, so the program never
//!   sees the monitor; `/proc` and `/sys` (and cgroup) are never writable,
//!   and other kernel pseudo filesystems (debugfs, tracefs, securityfs,
//!   bpf, configfs, efivarfs, ...) are not served at all;
//! - the opened `O_PATH` descriptor is then re-opened with the program's
//!   flags through the monitor's own `/proc/self/fd/N`, so the object that
//!   was checked is the object opened, whatever a racing rename does.
//!
//! **Nested trees.** A read-only tree inside a writable one (or the other
//! way round) is governed by the *nearest tree root above the object*,
//! found by its real ancestry: trees are known by the (device, inode) of
//! their root, and a change (create, write, truncate, remove, rename, link,
//! chmod, chown, utimes) walks `..` from the directory that holds the object
//! up to the first root, whose permission decides, before any side effect.
//! The final component is handled by the monitor (a symlink is followed by
//! re-resolving its text from its directory, up to 40 times like the
//! kernel; the object is then opened with `O_NOFOLLOW`), so a change never
//! follows a link into a read-only tree. The walk is race-free against
//! programs: nothing can be moved into or out of a read-only tree without
//! write access there, and a tree root is never removed, renamed, replaced
//! or linked (checked by identity on every name operation, whatever the
//! spelling). The walk runs only when trees of both kinds exist.
//!
//! The directories above the trees (`/`, `/home`, ... above
//! `/home/me/data`) that lie in no tree are opened once at start, before
//! the program runs, and serve only metadata reads (`stat`, `access`,
//! `statfs`, `mkdir` → `EEXIST`); those inside a tree are reached through
//! it like any path. Nothing ever resolves a program-influenced path
//! without `RESOLVE_BENEATH`.
//!
//! A `stat` of a single name in a tree's root (the common case: a file
//! in the allowed directory itself) takes one host call,
//! `fstatat(root, name, AT_SYMLINK_NOFOLLOW)`, when the stat alone decides
//! ([`FsPolicy::look`]); a link to follow, a pseudo filesystem or the
//! hidden image cache's device take the general path.
//!
//! A refusal is a [`PathError::Denied`] with its [`Refusal`]; the service
//! turns it into `EACCES` (`EPERM` for an owner the program may not give)
//! and a note that the gate records as a `denied` syscall record with a
//! `[paths]` rule (and so one audit record per refused call). What the
//! kernel answers natively (`ENOENT`, `ELOOP` of a real loop, `ENOTDIR`,
//! `ENAMETOOLONG`, ...) stays a plain [`PathError::Errno`]. `ELOOP` under
//! `RESOLVE_NO_MAGICLINKS` is ambiguous; a side-effect-free `O_PATH` retry
//! under `RESOLVE_BENEATH` alone tells a magic link (`EXDEV`) from a loop.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Why a path operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The policy refuses it, for this reason. Reported to the program as
    /// [`Refusal::errno`], and to the trace and audit log as a denial.
    Denied(Refusal),
    /// The host refused it with this errno (what the program would also
    /// get natively: `ENOENT`, `ELOOP` for a real symlink loop, `ENOTDIR`,
    /// `ENAMETOOLONG`, ...). Not a denial.
    Errno(i32),
}

pub use cabin_policy::note::Refusal;

/// Why the allowed trees cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An `--allow-read`/`--allow-write` directory cannot be used.
    #[error("cannot use allowed directory {path}: {source}")]
    AllowedDir {
        /// The directory as given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `fstat` of an allowed directory failed.
    #[error("fstat of an allowed directory failed: {0}")]
    Fstat(#[source] std::io::Error),
    /// A host path of a view (its root, a bind's source) cannot be used.
    #[error("cannot use {what} {path}: {source}; help: name an existing host path (create it, or fix the spelling)")]
    ViewPath {
        /// What it is (`the root directory`, `bind source`).
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A view is not well formed (the message says what and the fix).
    #[error("{0}")]
    ViewSpec(String),
    /// A tmpfs of a view cannot be made.
    #[error(
        "cannot make the tmpfs at {path}: {source}; help: a tmpfs needs CAP_SYS_ADMIN \
         (root) or unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
    )]
    Tmpfs {
        /// Its view path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One allowed directory.
#[derive(Debug)]
pub struct AllowedDir {
    /// Canonical absolute path, components only (no trailing slash).
    comps: Vec<Vec<u8>>,
    /// `O_PATH | O_DIRECTORY` descriptor of the directory.
    fd: OwnedFd,
    /// Whether the program may create, change and remove files here.
    write: bool,
    /// A view's root: resolved with `RESOLVE_IN_ROOT` (`..` at the top
    /// stays there, absolute symlinks resolve inside), not
    /// `RESOLVE_BENEATH`.
    in_root: bool,
    /// Where it lies on the host, for the trace (a view's tree lies at
    /// another program path; a tmpfs is `tmpfs:SIZE`).
    host: Vec<u8>,
    /// What keeps device nodes from being opened for a read-only open.
    guard: DeviceGuard,
}

impl AllowedDir {
    /// `openat2` of `rel` from this tree's root, never leaving it.
    fn open2(&self, rel: &CString, flags: i32, mode: u32) -> Result<OwnedFd, PathError> {
        openat2_scoped(self.fd.as_raw_fd(), rel, flags, mode, self.in_root)
    }
}

/// What keeps a read-only open in a tree from opening a device node
/// other than the safe list (module docs, "Opens through a nodev mount").
#[derive(Debug)]
enum DeviceGuard {
    /// The kernel: this is a descriptor of the tree's root on a mount
    /// that refuses every device open (`nodev`: the tree's own mount, or
    /// a detached clone of it made `MOUNT_ATTR_NODEV` at start), and the
    /// tree's file system is no pseudo file system. An open resolved from
    /// it with `RESOLVE_NO_XDEV` never leaves that mount, so it opens no
    /// device and nothing on `/proc`, `/sys`, ...: one `openat2`.
    Kernel(OwnedFd, &'static str),
    /// The monitor's probe (`openat2(O_PATH)`, `fstat`, the check, the
    /// re-open through `/proc/self/fd`), for this reason.
    Probe(&'static str),
}

impl DeviceGuard {
    /// How this tree's opens are guarded, for `cabinc run --verbose`.
    fn describe(&self) -> &'static str {
        match self {
            DeviceGuard::Kernel(_, how) | DeviceGuard::Probe(how) => how,
        }
    }
}

/// One allowed non-directory (a *file grant*): exactly that object, by
/// its name, for reading (and writing when `write`).
#[derive(Debug)]
pub struct AllowedFile {
    /// Canonical absolute path of the file, components only.
    comps: Vec<Vec<u8>>,
    /// `O_PATH | O_DIRECTORY` descriptor of its directory (held from start:
    /// the name is looked up there, never through the program's spelling).
    dir: OwnedFd,
    /// Its final name in `dir`.
    name: CString,
    /// `O_PATH | O_NOFOLLOW` descriptor of the granted object, held so that
    /// its (device, inode) cannot be reused by another file while the run
    /// lasts.
    obj: OwnedFd,
    /// (st_dev, st_ino) of the granted object.
    id: (u64, u64),
    /// Whether the program may write (not create, remove or rename) it.
    write: bool,
    /// The paths the grant was given as (absolute, without `.`), when they
    /// differ from `comps` (a symbolic link on the way, as `/bin/sh` →
    /// `/usr/bin/dash`): the program reaches the object by those names
    /// too (glibc's `popen` and `system` exec `/bin/sh` by that name).
    /// Only a spelling without `..` becomes such an alias.
    aliases: Vec<Vec<Vec<u8>>>,
}

/// What an operation does with the object it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Metadata only (`stat`, `readlink`, `access`, `statfs`, `chdir`): any
    /// device node may be looked at.
    Look,
    /// Opened for reading.
    Read,
    /// Opened for writing, or a name created or removed in it (a
    /// directory): never on a pseudo filesystem.
    Write,
    /// Its metadata changed (`chmod`, `chown`, `utimes`): never a device.
    Alter,
}

/// An opened object and what the program may change through it.
#[derive(Debug)]
pub struct Opened {
    /// The descriptor, with the program's flags (and `O_CLOEXEC`).
    pub fd: OwnedFd,
    /// Whether the object's metadata may be changed through the descriptor
    /// (`fchmod`, `fchown`, `futimens`): known at open, or `None` when it
    /// takes a look at its ancestry ([`FsPolicy::fd_changeable`]).
    pub change: Option<bool>,
}

/// An object reached for a change, and its directory.
#[derive(Debug)]
pub struct Reached {
    /// `O_PATH` descriptor of the object (`None`: the name does not exist).
    pub obj: Option<(OwnedFd, libc::stat)>,
    /// Its directory (`O_PATH`) and the final name, when it has one.
    pub parent: Option<(OwnedFd, CString)>,
}

/// The monitor's own `/proc`.
#[derive(Debug)]
struct ProcView {
    /// `/proc/self/fd`, to re-open `O_PATH` descriptors.
    self_fd: OwnedFd,
    /// `st_dev` of the `/proc` mount.
    dev: u64,
    /// Its path (`/proc`), as `/proc/self/fd/N` links name objects there.
    path: Vec<u8>,
}

/// The set of allowed directories.
#[derive(Debug, Default)]
pub struct FsPolicy {
    dirs: Vec<AllowedDir>,
    /// File grants (module docs), one per canonical path.
    files: Vec<AllowedFile>,
    /// (st_dev, st_ino) of each tree root and whether it is writable (a
    /// directory given both ways is writable).
    roots: Vec<(u64, u64, bool)>,
    /// Trees of both kinds exist: a change finds its governing tree by
    /// walking up (see the module docs).
    mixed: bool,
    /// Directories above the trees that lie in no tree, opened at start.
    ancestors: Vec<(Vec<Vec<u8>>, OwnedFd)>,
    /// `st_rdev` of the character devices that may be opened.
    safe_devices: Vec<u64>,
    /// The monitor's `/proc` (`None` in tests built from `Default`).
    proc: Option<ProcView>,
    /// `[paths] set-id`: set-uid/set-gid bits and other owners allowed.
    set_id: bool,
    /// `[paths] exec = "images"`: `execve` runs Cabin images only, never a
    /// plain static executable through the image cache.
    exec_images_only: bool,
    /// The image cache's directory (`None`: the default).
    image_cache: Option<std::path::PathBuf>,
    /// The trees are a view's (crate::config::View): program paths are
    /// view paths, a read-only refusal is `EROFS`, a mount point is
    /// `EBUSY` for a name operation, a rename or link across two trees is
    /// `EXDEV`.
    view: bool,
    /// The image cache's directory when an allowed tree reaches it:
    /// hidden from the program ([`FsPolicy::hide_image_cache`]).
    hidden: Option<Hidden>,
}

/// The image cache's directory, hidden from the program even inside an
/// allowed tree (docs/processes.md, "The image cache"): a program must not
/// read its entries, nor forge one for the next run.
#[derive(Debug)]
struct Hidden {
    /// Its canonical path: an object whose kernel path (the monitor's
    /// `/proc/self/fd/N` link) is this or lies below it is refused.
    path: Vec<u8>,
    /// Its (st_dev, st_ino): refused under any name.
    id: (u64, u64),
    /// (st_dev, st_ino) of every directory and symbolic link on the way to
    /// it (the spelled path's and the canonical one's): a name that is one
    /// of them is never removed, renamed, replaced or linked, so the
    /// cache's path keeps naming the directory checked at start.
    above: Vec<(u64, u64)>,
    /// Its path as spelled and canonical, in components: a program path
    /// that starts with either is refused before anything is resolved (so
    /// a missing entry is refused too, not `ENOENT`).
    spellings: Vec<Vec<Vec<u8>>>,
    /// Held so that its inode cannot be reused while the run lasts.
    _fd: OwnedFd,
}

impl Hidden {
    /// Whether the path `comps` is spelled into the cache (or is it).
    fn spelled_into<C: AsRef<[u8]>>(&self, comps: &[C]) -> bool {
        self.spellings.iter().any(|sp| starts_with(comps, sp))
    }

    /// Whether the object `fd` (with its stat) is the cache or lies in it.
    fn covers(&self, fd: RawFd, st: &libc::stat) -> bool {
        if (st.st_dev, st.st_ino) == self.id {
            return true;
        }
        // An object of another file system than the cache's is not in it
        // (the cache's entries are its own files; a mount inside it is not
        // the cache's doing): most objects cost no readlink.
        if st.st_dev != self.id.0 {
            return false;
        }
        // Entries have short names: a path too long for fd_link is not one.
        fd_link(fd).is_some_and(|l| {
            l.strip_prefix(&self.path[..]).is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b'/'))
        })
    }
}

/// The `/proc` entries (first component below `/proc`) served for
/// reading: system-wide information, nothing of any process and no kernel
/// memory. Everything else under `/proc` is refused ([`Refusal::Proc`]).
pub const PROC_SYSTEM: &[&[u8]] = &[
    b"buddyinfo",
    b"cgroups",
    b"cmdline",
    b"cpuinfo",
    b"crypto",
    b"devices",
    b"diskstats",
    b"filesystems",
    b"interrupts",
    b"loadavg",
    b"meminfo",
    b"misc",
    b"partitions",
    b"pressure",
    b"softirqs",
    b"stat",
    b"swaps",
    b"sys",
    b"uptime",
    b"version",
    b"vmstat",
    b"zoneinfo",
];

/// Character devices that open anywhere: null, zero, full, random,
/// urandom (1, 3/5/7/8/9) and /dev/tty (5, 0).
const SAFE_DEVICES: [(u32, u32); 6] = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)];

/// Symlinks followed in one resolution (the kernel's limit).
const MAX_SYMLINKS: usize = 40;

/// Directory levels walked up to the governing tree before giving up.
const MAX_DEPTH: usize = 4096;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// Readable, never writable: sysfs, cgroup, cgroup2.
const READ_ONLY_PSEUDO: [i64; 3] = [0x6265_6572, 0x0027_e0eb, 0x6367_7270];
/// Not served at all: debugfs, tracefs, securityfs, bpf, configfs,
/// efivarfs, pstore, selinuxfs, smackfs, binfmt_misc, fusectl, nsfs.
const CLOSED_PSEUDO: [i64; 12] = [
    0x6462_6720,
    0x7472_6163,
    0x7363_6673,
    0xcafe_4a11,
    0x6265_6570,
    0xde5e_81e4,
    0x6165_676c,
    0xf97c_ff8c,
    0x4341_5d53,
    0x4249_4e4d,
    0x6573_5543,
    0x6e73_6673,
];

/// Splits a path into its components, dropping `""` and `.`.
pub fn components(path: &[u8]) -> Vec<Vec<u8>> {
    component_slices(path).into_iter().map(|c| c.to_vec()).collect()
}

/// [`components`] borrowed from `path` (one allocation, not one per
/// component: the lookups of every path call use it).
fn component_slices(path: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::with_capacity(16);
    v.extend(path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b"."));
    v
}

/// Whether the components `comps` begin with `prefix`.
fn starts_with<A: AsRef<[u8]>, B: AsRef<[u8]>>(comps: &[A], prefix: &[B]) -> bool {
    comps.len() >= prefix.len() && comps.iter().zip(prefix).all(|(a, b)| a.as_ref() == b.as_ref())
}

/// Joins `base` (absolute) and `path`: `path` itself when absolute.
pub fn join(base: &[u8], path: &[u8]) -> Vec<u8> {
    if path.first() == Some(&b'/') {
        return path.to_vec();
    }
    let mut v = base.to_vec();
    if v.last() != Some(&b'/') {
        v.push(b'/');
    }
    v.extend_from_slice(path);
    v
}

/// Lexically normalised absolute path (for the virtual cwd): drops `""`
/// and `.`, and lets `..` remove the previous component. Built in one
/// buffer of the input's size (every `open` records its path so).
pub fn normalize(abs: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(abs.len() + 1);
    for c in abs.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                // Back to the `/` before the last component (none: stay at the top).
                let cut = v.iter().rposition(|&b| b == b'/').unwrap_or(0);
                v.truncate(cut);
            }
            c => {
                v.push(b'/');
                v.extend_from_slice(c);
            }
        }
    }
    if v.is_empty() {
        v.push(b'/');
    }
    v
}

/// The components of a file grant's path as given (made absolute against
/// the monitor's cwd), or `None` when it holds a `..` (whose meaning
/// depends on the symbolic links before it).
fn spelled_alias(p: &std::path::Path) -> Option<Vec<Vec<u8>>> {
    let abs = if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().ok()?.join(p) };
    let bytes = abs.as_os_str().as_encoded_bytes();
    let comps = components(bytes);
    (!comps.iter().any(|c| c == b"..")).then_some(comps)
}

/// `abs` without its last component (`/` for a top-level name): the
/// spelled directory a symlink's relative text is resolved from.
fn spelled_parent(abs: &[u8]) -> &[u8] {
    let mut end = abs.len();
    while end > 1 && abs[end - 1] == b'/' {
        end -= 1;
    }
    match abs[..end].iter().rposition(|&b| b == b'/') {
        Some(0) | None => b"/",
        Some(i) => &abs[..i],
    }
}

fn cstring(b: &[u8]) -> Result<CString, PathError> {
    // Room for the NUL from the start: one allocation, not two.
    let mut v = Vec::with_capacity(b.len() + 1);
    v.extend_from_slice(b);
    CString::new(v).map_err(|_| PathError::Errno(libc::EINVAL))
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Takes ownership of a descriptor a libc call returned (or its errno).
fn owned(r: RawFd) -> Result<OwnedFd, PathError> {
    if r < 0 {
        return Err(PathError::Errno(last_errno()));
    }
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `fstat(fd)`.
pub fn fstat(fd: RawFd) -> Result<libc::stat, PathError> {
    // SAFETY: stat is plain data; zeroed is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes `st`.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(PathError::Errno(last_errno()));
    }
    Ok(st)
}

/// `openat(dirfd, name, flags)` (never resolving more than `name`, which
/// holds no `/`, or `..`).
fn openat(dirfd: RawFd, name: &std::ffi::CStr, flags: i32, mode: u32) -> Result<OwnedFd, PathError> {
    // SAFETY: openat reads the NUL-terminated name.
    owned(unsafe { libc::openat(dirfd, name.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

fn is(st: &libc::stat, kind: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == kind
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2`'s `RESOLVE_NO_MAGICLINKS`.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;
/// `openat2`'s `RESOLVE_NO_XDEV`: no mount point is crossed.
const RESOLVE_NO_XDEV: u64 = 0x01;
/// `openat2`'s `RESOLVE_IN_ROOT`.
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// `openat2(dirfd, path, flags, mode, SCOPE | RESOLVE_NO_MAGICLINKS)`,
/// where SCOPE is `RESOLVE_IN_ROOT` for a view's root (`in_root`) and
/// `RESOLVE_BENEATH` for every other tree.
fn openat2_scoped(
    dirfd: i32,
    path: &CString,
    flags: i32,
    mode: u32,
    in_root: bool,
) -> Result<OwnedFd, PathError> {
    let scope = if in_root { RESOLVE_IN_ROOT } else { RESOLVE_BENEATH };
    match openat2(dirfd, path, flags, mode, scope | RESOLVE_NO_MAGICLINKS) {
        // EXDEV: `..` or a symlink tried to leave the directory.
        Err(libc::EXDEV) => Err(PathError::Denied(Refusal::Escape)),
        // ELOOP is both a magic link refused by RESOLVE_NO_MAGICLINKS and a
        // real loop (or O_NOFOLLOW on a final symlink). Ask again with
        // O_PATH (no side effects) and RESOLVE_BENEATH alone, under which
        // the kernel refuses a magic link with EXDEV instead. Either answer
        // is a refusal; this only names it.
        Err(libc::ELOOP) => {
            let probe = libc::O_PATH | (flags & (libc::O_NOFOLLOW | libc::O_DIRECTORY));
            match openat2(dirfd, path, probe, 0, scope) {
                Err(libc::EXDEV) => Err(PathError::Denied(Refusal::MagicLink)),
                _ => Err(PathError::Errno(libc::ELOOP)),
            }
        }
        Err(e) => Err(PathError::Errno(e)),
        Ok(fd) => Ok(fd),
    }
}

/// One `openat2` call (retried on `EAGAIN`/`EINTR`); the errno on failure.
pub fn openat2(dirfd: i32, path: &CString, flags: i32, mode: u32, resolve: u64) -> Result<OwnedFd, i32> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u32 as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 { mode as u64 & 0o7777 } else { 0 },
        resolve,
    };
    loop {
        // SAFETY: openat2 reads the NUL-terminated path and the `how` struct
        // of the size passed; both live across the call.
        let r = unsafe {
            libc::syscall(libc::SYS_openat2, dirfd, path.as_ptr(), &how as *const OpenHow, size_of_how())
        };
        if r >= 0 {
            // SAFETY: the kernel just returned this new descriptor to us.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as i32) });
        }
        let e = last_errno();
        match e {
            libc::EAGAIN | libc::EINTR => continue,
            e => return Err(e),
        }
    }
}

fn size_of_how() -> usize {
    std::mem::size_of::<OpenHow>()
}

/// Whether `flags` ask to write, create or truncate.
fn wants_write(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY
        || flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_TMPFILE & !libc::O_DIRECTORY) != 0
}

/// The `/proc/self/fd/N` text of a descriptor: what its link names (the
/// monitor's own descriptor; not a program path).
fn fd_link(fd: RawFd) -> Option<Vec<u8>> {
    let p = CString::new(format!("/proc/self/fd/{fd}")).ok()?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: writes at most buf.len() bytes into buf.
    let n = unsafe { libc::readlink(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n > 0 && (n as usize) < buf.len()).then(|| buf[..n as usize].to_vec())
}

impl FsPolicy {
    /// Opens every allowed directory, the directories above them that lie
    /// in no tree, and the monitor's `/proc`. Write dirs are readable too.
    pub fn new(read: &[PathBuf], write: &[PathBuf]) -> Result<FsPolicy, FsError> {
        let mut dirs = Vec::new();
        let mut files: Vec<AllowedFile> = Vec::new();
        for (list, w) in [(read, false), (write, true)] {
            for p in list {
                let err = |source| FsError::AllowedDir { path: p.clone(), source };
                let (c, fd, st) = open_host(p).map_err(err)?;
                let comps = components(c.as_bytes());
                if is(&st, libc::S_IFDIR) {
                    dirs.push(AllowedDir {
                        comps,
                        fd,
                        write: w,
                        in_root: false,
                        host: c.as_bytes().to_vec(),
                        guard: UNSET,
                    });
                    continue;
                }
                let f = grant_file(&c, &st, comps.clone(), w).map_err(err)?;
                let alias = spelled_alias(p).filter(|a| *a != comps);
                match files.iter_mut().find(|f: &&mut AllowedFile| f.comps == comps) {
                    Some(f) => {
                        f.write |= w;
                        if let Some(a) = alias {
                            if !f.aliases.contains(&a) {
                                f.aliases.push(a);
                            }
                        }
                    }
                    None => files.push(AllowedFile { aliases: alias.into_iter().collect(), ..f }),
                }
            }
        }
        let mut p = FsPolicy::of_trees(dirs, files, false)?;
        p.ancestors = p.open_ancestors();
        Ok(p)
    }

    /// The trees of a view (crate::config::View; docs/views.md): its root
    /// (or an empty read-only one) at `/`, resolved `RESOLVE_IN_ROOT`; each
    /// bind and tmpfs at its view path, resolved `RESOLVE_BENEATH`. No
    /// directory above them exists: everything is in the root.
    pub fn with_view(view: &crate::config::View) -> Result<FsPolicy, FsError> {
        let spec = |m: String| FsError::ViewSpec(m);
        let dst_comps = |flag: &str, p: &std::path::Path| -> Result<Vec<Vec<u8>>, FsError> {
            let b = p.as_os_str().as_encoded_bytes();
            let c = components(b);
            if b.first() != Some(&b'/') {
                return Err(spec(format!(
                    "{flag} {}: the view path must be absolute; help: write /{}",
                    p.display(),
                    p.display()
                )));
            }
            if c.is_empty() {
                return Err(spec(format!(
                    "{flag} {}: the view path cannot be /; help: use --root for /",
                    p.display()
                )));
            }
            if c.iter().any(|c| c == b"..") || b.contains(&0) {
                return Err(spec(format!(
                    "{flag} {}: the view path must not contain `..`; help: write it plainly",
                    p.display()
                )));
            }
            Ok(c)
        };
        let mut dirs: Vec<AllowedDir> = Vec::new();
        let mut files: Vec<AllowedFile> = Vec::new();
        // Later entries over earlier ones at an equal view path.
        let put_dir = |dirs: &mut Vec<AllowedDir>, files: &mut Vec<AllowedFile>, d: AllowedDir| {
            dirs.retain(|o| o.comps != d.comps);
            files.retain(|o| o.comps != d.comps);
            dirs.push(d);
        };
        let mut mount_points: Vec<(Vec<Vec<u8>>, bool)> = Vec::new();
        for b in &view.binds {
            let comps = dst_comps("--bind", &b.dst)?;
            let err = |source| FsError::ViewPath { what: "bind source", path: b.src.clone(), source };
            let (c, fd, st) = open_host(&b.src).map_err(err)?;
            let dir = is(&st, libc::S_IFDIR);
            mount_points.push((comps.clone(), dir));
            if dir {
                let d = AllowedDir {
                    comps,
                    fd,
                    write: !b.readonly,
                    in_root: false,
                    host: c.as_bytes().to_vec(),
                    guard: UNSET,
                };
                put_dir(&mut dirs, &mut files, d);
            } else {
                let f = grant_file(&c, &st, comps.clone(), !b.readonly).map_err(err)?;
                dirs.retain(|o| o.comps != comps);
                files.retain(|o| o.comps != comps);
                files.push(f);
            }
        }
        for t in &view.tmpfs {
            let comps = dst_comps("--tmpfs", &t.dst)?;
            let fd = make_tmpfs(t.size).map_err(|source| FsError::Tmpfs { path: t.dst.clone(), source })?;
            mount_points.push((comps.clone(), true));
            let host = format!("tmpfs:{}", t.size).into_bytes();
            put_dir(
                &mut dirs,
                &mut files,
                AllowedDir { comps, fd, write: true, in_root: false, host, guard: UNSET },
            );
        }
        let root = match &view.root {
            Some(r) => {
                let err = |source| FsError::ViewPath { what: "the root directory", path: r.clone(), source };
                let (c, fd, st) = open_host(r).map_err(err)?;
                if !is(&st, libc::S_IFDIR) {
                    return Err(err(std::io::Error::from_raw_os_error(libc::ENOTDIR)));
                }
                AllowedDir {
                    comps: Vec::new(),
                    fd,
                    write: !view.root_readonly,
                    in_root: true,
                    host: c.as_bytes().to_vec(),
                    guard: UNSET,
                }
            }
            None => {
                // An empty root in memory holding only the mount points, so
                // that listing `/` shows them as a container's would.
                let path = PathBuf::from("/");
                let fd = make_tmpfs(1 << 20).map_err(|source| FsError::Tmpfs { path, source })?;
                for (comps, dir) in &mount_points {
                    make_mount_point(fd.as_raw_fd(), comps, *dir);
                }
                AllowedDir {
                    comps: Vec::new(),
                    fd,
                    write: false,
                    in_root: true,
                    host: b"(empty root)".to_vec(),
                    guard: UNSET,
                }
            }
        };
        dirs.push(root);
        FsPolicy::of_trees(dirs, files, true)
    }

    /// The policy of these trees and file grants (no ancestors yet).
    fn of_trees(mut dirs: Vec<AllowedDir>, files: Vec<AllowedFile>, view: bool) -> Result<FsPolicy, FsError> {
        // Longest first, so the most specific dir decides; on equal paths a
        // write grant wins over a read grant.
        dirs.sort_by(|a, b| b.comps.len().cmp(&a.comps.len()).then(b.write.cmp(&a.write)));
        device_guards(&mut dirs);
        let mut roots: Vec<(u64, u64, bool)> = Vec::new();
        for d in &dirs {
            let st = fstat(d.fd.as_raw_fd()).map_err(|_| FsError::Fstat(std::io::Error::last_os_error()))?;
            match roots.iter_mut().find(|r| (r.0, r.1) == (st.st_dev, st.st_ino)) {
                Some(r) => r.2 |= d.write,
                None => roots.push((st.st_dev, st.st_ino, d.write)),
            }
        }
        let mixed = roots.iter().any(|r| r.2) && roots.iter().any(|r| !r.2);
        Ok(FsPolicy {
            dirs,
            files,
            roots,
            mixed,
            ancestors: Vec::new(),
            safe_devices: SAFE_DEVICES.iter().map(|&(a, b)| libc::makedev(a, b)).collect(),
            proc: open_proc(),
            set_id: false,
            exec_images_only: false,
            image_cache: None,
            view,
            hidden: None,
        })
    }

    /// The refusal of a change under a read-only tree: `EROFS` in a view
    /// (a read-only mount), `EACCES` for a read-only allowed tree.
    fn read_only(&self) -> PathError {
        PathError::Denied(if self.view { Refusal::ReadOnlyView } else { Refusal::ReadOnly })
    }

    /// Whether the trees are a view's.
    pub fn is_view(&self) -> bool {
        self.view
    }

    /// Whether this is a view that shows the host's `/proc` at `/proc`.
    pub fn proc_in_view(&self) -> bool {
        self.view && self.dirs.iter().any(|d| d.comps == [b"proc".to_vec()] && d.host == b"/proc")
    }

    /// Where program path `abs` lies on the host, by its spelling (for the
    /// trace; `None` outside every tree).
    pub fn host_path(&self, abs: &[u8]) -> Option<Vec<u8>> {
        if let Some(f) = self.file_grant(abs) {
            return fd_link(f.obj.as_raw_fd());
        }
        let (d, rel) = self.locate(abs)?;
        let mut h = d.host.clone();
        if rel != b"." {
            if h.last() != Some(&b'/') {
                h.push(b'/');
            }
            h.extend_from_slice(&rel);
        }
        Some(h)
    }

    /// In a view, whether two program paths (the directories of the two
    /// names of a `rename` or `link`) lie in the same tree (mount): else
    /// the call is `EXDEV`. Always true outside a view.
    pub fn same_tree(&self, a: &[u8], b: &[u8]) -> bool {
        if !self.view {
            return true;
        }
        match (self.locate(a), self.locate(b)) {
            (Some((x, _)), Some((y, _))) => std::ptr::eq(x, y),
            _ => false,
        }
    }

    /// The strict ancestors of the trees that lie in no tree, each opened
    /// `O_PATH` from `/` one component at a time without following
    /// symlinks (before the program runs; the canonical paths hold none).
    fn open_ancestors(&self) -> Vec<(Vec<Vec<u8>>, OwnedFd)> {
        let mut out: Vec<(Vec<Vec<u8>>, OwnedFd)> = Vec::new();
        let granted = self.dirs.iter().map(|d| &d.comps).chain(self.files.iter().map(|f| &f.comps));
        for comps in granted {
            let mut fd = match openat(libc::AT_FDCWD, c"/", libc::O_PATH | libc::O_DIRECTORY, 0) {
                Ok(fd) => fd,
                Err(_) => return out,
            };
            for k in 0..comps.len() {
                let prefix = &comps[..k];
                let in_tree = self
                    .dirs
                    .iter()
                    .any(|t| prefix.len() >= t.comps.len() && prefix[..t.comps.len()] == t.comps[..]);
                if in_tree {
                    break;
                }
                if !out.iter().any(|(c, _)| c == prefix) {
                    let Ok(dup) = fd.try_clone() else { break };
                    out.push((prefix.to_vec(), dup));
                }
                let Ok(name) = CString::new(comps[k].clone()) else { break };
                match openat(fd.as_raw_fd(), &name, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0) {
                    Ok(next) => fd = next,
                    Err(_) => break,
                }
            }
        }
        out
    }

    /// Lets character device `rdev` open anywhere (the run's terminal).
    pub fn add_safe_device(&mut self, rdev: u64) {
        if !self.safe_devices.contains(&rdev) {
            self.safe_devices.push(rdev);
        }
    }

    /// `[paths] set-id`: allow set-uid/set-gid bits and other owners.
    pub fn set_allow_set_id(&mut self, on: bool) {
        self.set_id = on;
    }

    /// `[paths] exec = "images"`: exec of plain executables refused.
    pub fn set_exec_images_only(&mut self, on: bool) {
        self.exec_images_only = on;
    }

    /// The image cache's directory for `execve` of plain executables.
    pub fn set_image_cache(&mut self, dir: Option<std::path::PathBuf>) {
        self.image_cache = dir;
    }

    /// Hides the image cache's directory (the one set, else the default)
    /// from the program when an allowed tree reaches it: every object in it
    /// (and it) is refused whatever the spelling ([`Refusal::ImageCache`]),
    /// and it and the directories and links above it cannot be removed,
    /// renamed, replaced or linked. It is created first when missing (as
    /// `cabinc` would, 0700), so that the program cannot make it itself,
    /// full of forged entries, before the next run. Called once, before
    /// the program runs.
    pub fn hide_image_cache(&mut self) {
        let dir = match self.image_cache.clone() {
            Some(d) => d,
            None => match cabin_rewriter::cache::default_dir() {
                Ok(d) => d,
                Err(_) => return,
            },
        };
        let dir = if dir.is_absolute() {
            dir
        } else {
            match std::env::current_dir() {
                Ok(c) => c.join(dir),
                Err(_) => return,
            }
        };
        // Where the directory is (or would be): its nearest existing
        // ancestor, canonical, and the rest as spelled.
        let mut existing = dir.as_path();
        let mut rest = Vec::new();
        while std::fs::symlink_metadata(existing).is_err() {
            match (existing.parent(), existing.file_name()) {
                (Some(up), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = up;
                }
                _ => return,
            }
        }
        let Ok(mut canon) = std::fs::canonicalize(existing) else { return };
        for name in rest.iter().rev() {
            canon.push(name);
        }
        let bytes = canon.as_os_str().as_encoded_bytes().to_vec();
        let comps = components(&bytes);
        let under = |t: &Vec<Vec<u8>>| comps.len() >= t.len() && comps[..t.len()] == t[..];
        let reached = self
            .dirs
            .iter()
            .any(|d| under(&d.comps) || (d.comps.len() > comps.len() && d.comps.starts_with(&comps)))
            || self.files.iter().any(|f| f.comps.starts_with(&comps));
        if !reached {
            return;
        }
        // Made as cabinc makes it (it would, at the first plain exec), so
        // that there is a directory to hide; one the cache refuses (another
        // owner, writable by others) is still hidden below if it exists.
        let _ = cabin_rewriter::cache::ImageCache::open(&dir);
        let Ok(canon) = std::fs::canonicalize(&dir) else { return };
        let Ok(c) = CString::new(canon.as_os_str().as_encoded_bytes().to_vec()) else { return };
        // SAFETY: open reads the NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        let Ok(fd) = owned(fd) else { return };
        let Ok(st) = fstat(fd.as_raw_fd()) else { return };
        let mut above = Vec::new();
        for path in [dir.as_path(), canon.as_path()] {
            for a in path.ancestors().skip(1) {
                if let Ok(m) = std::fs::symlink_metadata(a) {
                    use std::os::unix::fs::MetadataExt;
                    if !above.contains(&(m.dev(), m.ino())) {
                        above.push((m.dev(), m.ino()));
                    }
                }
            }
            // The spelled path's own final name (a symbolic link to the
            // cache, say) is protected as the cache is.
            if let Ok(m) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::MetadataExt;
                if !above.contains(&(m.dev(), m.ino())) {
                    above.push((m.dev(), m.ino()));
                }
            }
        }
        let mut spellings = vec![components(c.as_bytes())];
        let spelled = components(dir.as_os_str().as_encoded_bytes());
        if !spelled.iter().any(|c| c == b"..") && !spellings.contains(&spelled) {
            spellings.push(spelled);
        }
        // Opens through a nodev clone look at nothing: a tree whose root
        // holds the cache (or lies in it) keeps the probe, which does.
        let cache = components(c.as_bytes());
        for d in &mut self.dirs {
            let host = components(&d.host);
            let prefix = |a: &[Vec<u8>], b: &[Vec<u8>]| a.len() <= b.len() && b[..a.len()] == a[..];
            if d.host.first() == Some(&b'/') && (prefix(&host, &cache) || prefix(&cache, &host)) {
                d.guard = DeviceGuard::Probe("refused by the probe (the tree holds the hidden image cache)");
            }
        }
        self.hidden = Some(Hidden {
            path: c.as_bytes().to_vec(),
            id: (st.st_dev, st.st_ino),
            above,
            spellings,
            _fd: fd,
        });
    }

    /// The refusal of `abs`, which no tree holds: the image cache's when it
    /// is spelled into the hidden cache (so the hint does not suggest a
    /// grant that would not help), else "outside the trees".
    fn outside(&self, abs: &[u8]) -> PathError {
        match &self.hidden {
            Some(h) if h.spelled_into(&components(abs)) => PathError::Denied(Refusal::ImageCache),
            _ => PathError::Denied(Refusal::Outside),
        }
    }

    /// A name that does not exist (`e` is `ENOENT`) in the hidden image
    /// cache, reached by another spelling (a symbolic link): refused as an
    /// existing one is, so that the program cannot tell which entries
    /// exist. Any other error is `e`.
    fn missing_in_hidden(&self, d: &AllowedDir, rel: &CString, e: PathError) -> PathError {
        if self.hidden.is_none() || e != PathError::Errno(libc::ENOENT) {
            return e;
        }
        let bytes = rel.as_bytes();
        let Some(cut) = bytes.iter().rposition(|&b| b == b'/') else { return e };
        let Ok(up) = cstring(&bytes[..cut.max(1)]) else { return e };
        let Ok(dir) = d.open2(&up, libc::O_PATH | libc::O_DIRECTORY, 0) else {
            return e;
        };
        match fstat(dir.as_raw_fd()) {
            Ok(st) => self.check_hidden(dir.as_raw_fd(), &st).err().unwrap_or(e),
            Err(_) => e,
        }
    }

    /// Refuses the hidden image cache ([`FsPolicy::hide_image_cache`]):
    /// the object `fd` (with its stat) must not be it nor lie in it.
    fn check_hidden(&self, fd: RawFd, st: &libc::stat) -> Result<(), PathError> {
        match &self.hidden {
            Some(h) if h.covers(fd, st) => Err(PathError::Denied(Refusal::ImageCache)),
            _ => Ok(()),
        }
    }

    /// The image cache's directory (`None`: the default).
    pub fn image_cache(&self) -> Option<&std::path::Path> {
        self.image_cache.as_deref()
    }

    /// Whether `execve` runs Cabin images only.
    pub fn exec_images_only(&self) -> bool {
        self.exec_images_only
    }

    /// Whether set-uid/set-gid bits and other owners are allowed.
    pub fn allows_set_id(&self) -> bool {
        self.set_id
    }

    /// The allowed dir containing absolute `abs`, and the path relative to
    /// it (`.` for the dir itself; a trailing `/` is kept). A path spelled
    /// into the hidden image cache is in none.
    ///
    /// In a view, `..` right below a bind or tmpfs is its parent in the
    /// view (as `..` at a mount point is): `/data/../etc` is `/etc`.
    pub fn locate(&self, abs: &[u8]) -> Option<(&AllowedDir, Vec<u8>)> {
        let comps = component_slices(abs);
        if self.hidden.as_ref().is_some_and(|h| h.spelled_into(&comps)) {
            return None;
        }
        self.locate_comps(comps, abs.last() == Some(&b'/'))
    }

    fn locate_comps<'s: 'p, 'p>(
        &'s self,
        mut comps: Vec<&'p [u8]>,
        trailing: bool,
    ) -> Option<(&'s AllowedDir, Vec<u8>)> {
        // Each round drops a component: at most as many rounds as there are.
        for _ in 0..=comps.len() {
            let d = self.dirs.iter().find(|d| starts_with(&comps, &d.comps))?;
            let rest = &comps[d.comps.len()..];
            if self.view && !d.comps.is_empty() && rest.first().is_some_and(|c| *c == b"..") {
                let mut up: Vec<&[u8]> = d.comps[..d.comps.len() - 1].iter().map(|c| c.as_slice()).collect();
                up.extend_from_slice(&rest[1..]);
                comps = up;
                continue;
            }
            let mut rel = rest.join(&b'/');
            if rel.is_empty() {
                rel = b".".to_vec();
            } else if trailing {
                rel.push(b'/');
            }
            return Some((d, rel));
        }
        None
    }

    /// The file grant `abs` names (by its components, exactly: `f/..`,
    /// `f/x` or any other spelling is not it), unless a writable tree
    /// already serves that path (the wider grant decides).
    fn file_grant(&self, abs: &[u8]) -> Option<&AllowedFile> {
        if self.files.is_empty() {
            return None;
        }
        // In a view a file bind is a mount over its path: it wins over the
        // writable root (or bind) it lies in.
        if !self.view && self.locate(abs).is_some_and(|(d, _)| d.write) {
            return None;
        }
        let comps = components(abs);
        self.files.iter().find(|f| f.comps == comps || f.aliases.contains(&comps))
    }

    /// The granted object of `f`, reached by its name from its directory
    /// (held since start, never resolved from the program's spelling) and
    /// `O_PATH | O_NOFOLLOW`: it must still be the object granted at start
    /// (same device and inode); a name swapped for a symlink or another
    /// file is refused. A trailing `/` asks for a directory: `ENOTDIR`.
    fn reach_file(
        &self,
        f: &AllowedFile,
        abs: &[u8],
        access: Access,
    ) -> Result<(OwnedFd, libc::stat), PathError> {
        // `f/`, `f/.`, `f/./` name the file as a directory (the `.` were
        // dropped when matching): natively ENOTDIR, never the file.
        if abs.last() == Some(&b'/') || abs.ends_with(b"/.") {
            return Err(PathError::Errno(libc::ENOTDIR));
        }
        if matches!(access, Access::Write | Access::Alter) && !f.write {
            return Err(self.read_only());
        }
        let obj = openat(f.dir.as_raw_fd(), &f.name, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
        let st = fstat(obj.as_raw_fd())?;
        if (st.st_dev, st.st_ino) != f.id {
            return Err(PathError::Denied(Refusal::Replaced));
        }
        debug_assert!(fstat(f.obj.as_raw_fd()).is_ok_and(|o| (o.st_dev, o.st_ino) == f.id));
        self.check_object(obj.as_raw_fd(), &st, access)?;
        Ok((obj, st))
    }

    /// Opens the file grant `f` (named `abs`) with `flags`: never creates
    /// (an existing name with `O_CREAT` and no `O_EXCL` opens, as natively;
    /// with `O_EXCL`, `EEXIST`), never `O_TMPFILE` (a file is no directory).
    fn open_file(&self, f: &AllowedFile, abs: &[u8], flags: i32) -> Result<Opened, PathError> {
        let write = wants_write(flags);
        if flags & libc::O_TMPFILE & !libc::O_DIRECTORY != 0 || flags & libc::O_DIRECTORY != 0 {
            // Natively ENOTDIR (after the policy: ask the object first).
            self.reach_file(f, abs, Access::Look)?;
            return Err(PathError::Errno(libc::ENOTDIR));
        }
        let access = if flags & libc::O_PATH != 0 {
            Access::Look
        } else if write {
            Access::Write
        } else {
            Access::Read
        };
        let (obj, st) = self.reach_file(f, abs, access)?;
        if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 {
            return Err(PathError::Errno(libc::EEXIST));
        }
        let change = Some(f.write);
        if flags & libc::O_PATH != 0 {
            return Ok(Opened { fd: obj, change });
        }
        let fd = self.reopen(&obj, flags)?;
        if write {
            self.clear_set_id(fd.as_raw_fd(), &st);
        }
        Ok(Opened { fd, change })
    }

    /// Whether `abs` names (by its components, exactly) a directory above
    /// the trees that lies in no tree.
    pub fn is_ancestor(&self, abs: &[u8]) -> bool {
        let comps = components(abs);
        self.locate(abs).is_none() && self.ancestors.iter().any(|(c, _)| *c == comps)
    }

    /// Whether `(dev, ino)` is a tree root, and then whether it is writable.
    fn root(&self, st: &libc::stat) -> Option<bool> {
        self.roots.iter().find(|r| (r.0, r.1) == (st.st_dev, st.st_ino)).map(|r| r.2)
    }

    /// Whether the directory `dir` (with its stat) lies in a writable tree:
    /// the nearest tree root at or above it decides. Only walks when trees
    /// of both kinds exist; otherwise the lexical tree `lexical` (already
    /// checked writable) does.
    fn governed_writable(&self, dir: RawFd, st: &libc::stat) -> Result<(), PathError> {
        if !self.mixed {
            return Ok(());
        }
        let mut held: Option<OwnedFd> = None;
        let mut cur = dir;
        let mut cur_st = *st;
        for _ in 0..MAX_DEPTH {
            if let Some(w) = self.root(&cur_st) {
                return if w { Ok(()) } else { Err(self.read_only()) };
            }
            let up = openat(cur, c"..", libc::O_PATH | libc::O_DIRECTORY, 0)?;
            let up_st = fstat(up.as_raw_fd())?;
            if (up_st.st_dev, up_st.st_ino) == (cur_st.st_dev, cur_st.st_ino) {
                // The root of the file system and no tree on the way: it
                // was moved out of the trees while we looked.
                return Err(PathError::Denied(Refusal::Outside));
            }
            cur = up.as_raw_fd();
            held = Some(up);
            cur_st = up_st;
        }
        drop(held);
        Err(self.read_only())
    }

    /// Whether the object `fd` (with its stat) may be used for `access`:
    /// devices, `/proc` and the other pseudo filesystems (module docs).
    pub fn check_object(&self, fd: RawFd, st: &libc::stat, access: Access) -> Result<(), PathError> {
        self.check_hidden(fd, st)?;
        let device = is(st, libc::S_IFCHR) || is(st, libc::S_IFBLK);
        if device {
            let safe = is(st, libc::S_IFCHR) && self.safe_devices.contains(&st.st_rdev);
            match access {
                Access::Look => {}
                Access::Read | Access::Write if safe => {}
                _ => return Err(PathError::Denied(Refusal::Device)),
            }
        }
        // Pseudo file systems all live on anonymous devices (major 0);
        // block-backed file systems need no second look.
        if libc::major(st.st_dev) != 0 {
            return Ok(());
        }
        // SAFETY: statfs is plain data; zeroed is a valid value.
        let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fstatfs writes `sf`.
        if unsafe { libc::fstatfs(fd, &mut sf) } < 0 {
            return Err(PathError::Errno(last_errno()));
        }
        let magic = sf.f_type as i64;
        let changes = matches!(access, Access::Write | Access::Alter);
        if magic == PROC_SUPER_MAGIC {
            if changes {
                return Err(PathError::Denied(Refusal::Pseudo));
            }
            return self.check_proc(fd, st);
        }
        if READ_ONLY_PSEUDO.contains(&magic) && changes || CLOSED_PSEUDO.contains(&magic) {
            return Err(PathError::Denied(Refusal::Pseudo));
        }
        Ok(())
    }

    /// A `/proc` object may be read when it is the proc root or lies below
    /// one of [`PROC_SYSTEM`] of the monitor's own `/proc` mount.
    fn check_proc(&self, fd: RawFd, st: &libc::stat) -> Result<(), PathError> {
        const PROC_ROOT_INO: u64 = 1;
        if st.st_ino == PROC_ROOT_INO && is(st, libc::S_IFDIR) {
            return Ok(());
        }
        let refuse = Err(PathError::Denied(Refusal::Proc));
        let Some(pv) = &self.proc else { return refuse };
        if st.st_dev != pv.dev {
            return refuse;
        }
        // Names in /proc are the kernel's: the link text of our own
        // descriptor says where in /proc the object lies.
        let Some(link) = fd_link(fd) else { return refuse };
        let Some(rest) = link.strip_prefix(&pv.path[..]).and_then(|r| r.strip_prefix(b"/")) else {
            return refuse;
        };
        let first = rest.split(|&b| b == b'/').next().unwrap_or_default();
        if PROC_SYSTEM.contains(&first) {
            Ok(())
        } else {
            refuse
        }
    }

    /// Opens the `O_PATH` descriptor `fd` again with `flags`, through the
    /// monitor's own `/proc/self/fd` (the object itself, whatever happened
    /// to its name since).
    fn reopen(&self, fd: &OwnedFd, flags: i32) -> Result<OwnedFd, PathError> {
        let flags = (flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW)) | libc::O_CLOEXEC;
        let name = cstring(fd.as_raw_fd().to_string().as_bytes())?;
        match &self.proc {
            Some(pv) => openat(pv.self_fd.as_raw_fd(), &name, flags, 0),
            None => {
                let p = cstring(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
                openat(libc::AT_FDCWD, &p, flags, 0)
            }
        }
    }

    /// Opens `abs` with `flags`/`mode` (`O_CLOEXEC` is always added): the
    /// object is looked at before it is opened (see the module docs).
    pub fn open(&self, abs: &[u8], flags: i32, mode: u32) -> Result<Opened, PathError> {
        if let Some(f) = self.file_grant(abs) {
            return self.open_file(f, abs, flags);
        }
        if wants_write(flags) {
            return self.open_for_change(abs, flags, mode);
        }
        let (d, rel) = self.locate(abs).ok_or_else(|| self.outside(abs))?;
        let change = if !d.write {
            Some(false)
        } else if self.mixed {
            None
        } else {
            Some(true)
        };
        let rel = cstring(&rel)?;
        if let Some(fd) = self.open_guarded(d, &rel, flags)? {
            return Ok(Opened { fd, change });
        }
        if flags & (libc::O_PATH | libc::O_DIRECTORY) != 0 {
            // O_PATH opens nothing, and O_DIRECTORY never opens a device
            // (the kernel checks it first): open directly, then look.
            let fd = d.open2(&rel, flags, 0)?;
            let st = fstat(fd.as_raw_fd())?;
            let access = if flags & libc::O_PATH != 0 { Access::Look } else { Access::Read };
            self.check_object(fd.as_raw_fd(), &st, access)?;
            return Ok(Opened { fd, change });
        }
        let probe = d
            .open2(&rel, libc::O_PATH | (flags & libc::O_NOFOLLOW), 0)
            .map_err(|e| self.missing_in_hidden(d, &rel, e))?;
        let st = fstat(probe.as_raw_fd())?;
        self.check_object(probe.as_raw_fd(), &st, Access::Read)?;
        if is(&st, libc::S_IFLNK) {
            // O_NOFOLLOW on a final symlink.
            return Err(PathError::Errno(libc::ELOOP));
        }
        Ok(Opened { fd: self.reopen(&probe, flags)?, change })
    }

    /// A read-only open of `rel` in tree `d` in one host call, where the
    /// kernel keeps devices out ([`DeviceGuard::Kernel`]): `openat2` from
    /// the tree's nodev root with the program's flags (and `O_NOCTTY`),
    /// scoped like every other resolution and `RESOLVE_NO_XDEV`, so that
    /// the object lies on the tree's own mount (no device opens there, no
    /// pseudo file system, and the image cache is not below the root:
    /// [`FsPolicy::hide_image_cache`]). `Ok(None)`: take the general path,
    /// which then decides alone (and names a refusal): the tree has no
    /// such guard, or the kernel said anything but `ENOENT`/`ENOTDIR`
    /// (`EACCES` of a device node, `EXDEV` of a mount point or an escape,
    /// `ELOOP`, `EINVAL` of a flag `openat2` refuses, ...).
    fn open_guarded(&self, d: &AllowedDir, rel: &CString, flags: i32) -> Result<Option<OwnedFd>, PathError> {
        let DeviceGuard::Kernel(root, _) = &d.guard else { return Ok(None) };
        let scope = if d.in_root { RESOLVE_IN_ROOT } else { RESOLVE_BENEATH };
        let resolve = scope | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
        match openat2(root.as_raw_fd(), rel, flags | libc::O_NOCTTY, 0, resolve) {
            Ok(fd) => Ok(Some(fd)),
            Err(e @ (libc::ENOENT | libc::ENOTDIR)) => Err(PathError::Errno(e)),
            Err(_) => Ok(None),
        }
    }

    /// How each tree's read-only opens keep devices out (for `cabinc run
    /// --verbose`): one line per tree, its host path and the guard.
    pub fn guards(&self) -> Vec<String> {
        self.dirs
            .iter()
            .map(|d| format!("{}: {}", String::from_utf8_lossy(&d.host), d.guard.describe()))
            .collect()
    }

    /// Opens `abs` for writing, creating or truncating: the object (or,
    /// for a new name, its directory) must lie in a writable tree by its
    /// real ancestry; set-id bits of an existing file are cleared as the
    /// kernel does for an unprivileged writer (unless `[paths] set-id`).
    fn open_for_change(&self, abs: &[u8], flags: i32, mode: u32) -> Result<Opened, PathError> {
        let creat = flags & libc::O_CREAT != 0;
        let excl = creat && flags & libc::O_EXCL != 0;
        if creat && abs.last() == Some(&b'/') {
            return Err(PathError::Errno(libc::EISDIR));
        }
        let follow = flags & libc::O_NOFOLLOW == 0 && !excl;
        // A create that loses a race to another creator starts over.
        for _ in 0..8 {
            let r = self.reach_for_change(abs, follow)?;
            let Some((obj, st)) = r.obj else {
                if !creat {
                    return Err(PathError::Errno(libc::ENOENT));
                }
                let (dir, name) = r.parent.ok_or(PathError::Errno(libc::ENOENT))?;
                let fl = flags | libc::O_EXCL | libc::O_NOFOLLOW;
                match openat(dir.as_raw_fd(), &name, fl, self.creation_mode(mode)) {
                    Err(PathError::Errno(libc::EEXIST)) if !excl => continue,
                    Err(e) => return Err(e),
                    Ok(fd) => return Ok(Opened { fd, change: Some(true) }),
                }
            };
            if excl {
                return Err(PathError::Errno(libc::EEXIST));
            }
            if is(&st, libc::S_IFLNK) {
                return Err(PathError::Errno(libc::ELOOP));
            }
            self.check_object(obj.as_raw_fd(), &st, Access::Write)?;
            let fd = if flags & libc::O_TMPFILE & !libc::O_DIRECTORY != 0 {
                openat(obj.as_raw_fd(), c".", flags, self.creation_mode(mode))?
            } else {
                self.reopen(&obj, flags)?
            };
            self.clear_set_id(fd.as_raw_fd(), &st);
            return Ok(Opened { fd, change: Some(true) });
        }
        Err(PathError::Errno(libc::EEXIST))
    }

    /// `mode` for a new file: without set-uid/set-gid unless allowed.
    pub fn creation_mode(&self, mode: u32) -> u32 {
        if self.set_id {
            mode & 0o7777
        } else {
            mode & 0o1777
        }
    }

    /// Clears set-uid and set-gid (with group execute) of a regular file
    /// opened for writing, as the kernel does when an unprivileged process
    /// writes one (a root monitor would keep them).
    fn clear_set_id(&self, fd: RawFd, st: &libc::stat) {
        let setgid_exec = libc::S_ISGID | libc::S_IXGRP;
        let bits = st.st_mode & libc::S_ISUID != 0 || st.st_mode & setgid_exec == setgid_exec;
        if !self.set_id && is(st, libc::S_IFREG) && bits {
            let mode = st.st_mode & 0o7777 & !(libc::S_ISUID | libc::S_ISGID);
            // SAFETY: touches no memory; fd is a descriptor we own.
            unsafe { libc::fchmod(fd, mode) };
        }
    }

    /// Resolves `abs` for a change (module docs): the lexical tree must be
    /// writable, the final component is handled here (a symlink followed
    /// when `follow`, or when a trailing `/` asks for a directory), and the
    /// object's directory (the object itself when it is a directory) must
    /// lie in a writable tree by its ancestry. The object must not be on a
    /// pseudo filesystem (checked by the caller with [`Access`] for
    /// devices).
    pub fn reach_for_change(&self, abs: &[u8], follow: bool) -> Result<Reached, PathError> {
        let mut spelled = abs.to_vec();
        for _ in 0..=MAX_SYMLINKS {
            if let Some(f) = self.file_grant(&spelled) {
                // A file grant changes the object, never a name: no parent.
                let (obj, st) = self.reach_file(f, &spelled, Access::Write)?;
                return Ok(Reached { obj: Some((obj, st)), parent: None });
            }
            let (d, rel) = self.locate(&spelled).ok_or_else(|| self.outside(&spelled))?;
            if !d.write {
                return Err(self.read_only());
            }
            let trailing = spelled.last() == Some(&b'/');
            let mut comps = components(&rel);
            let name = match comps.pop() {
                Some(n) if n != b".." => n,
                _ => {
                    // The tree itself, or a directory named by `..`.
                    let dir = d.open2(&cstring(&rel)?, libc::O_PATH | libc::O_DIRECTORY, 0)?;
                    let st = fstat(dir.as_raw_fd())?;
                    self.governed_writable(dir.as_raw_fd(), &st)?;
                    return Ok(Reached { obj: Some((dir, st)), parent: None });
                }
            };
            let parent_rel = if comps.is_empty() { b".".to_vec() } else { comps.join(&b'/') };
            let dir = d.open2(&cstring(&parent_rel)?, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            let dst = fstat(dir.as_raw_fd())?;
            // Nothing in a pseudo filesystem is looked at for a change (not
            // even the text of a /proc magic link).
            self.check_object(dir.as_raw_fd(), &dst, Access::Write)?;
            let cname = cstring(&name)?;
            let obj = match openat(dir.as_raw_fd(), &cname, libc::O_PATH | libc::O_NOFOLLOW, 0) {
                Err(PathError::Errno(libc::ENOENT)) => None,
                Err(e) => return Err(e),
                Ok(fd) => Some(fd),
            };
            let Some(obj) = obj else {
                self.governed_writable(dir.as_raw_fd(), &dst)?;
                return Ok(Reached { obj: None, parent: Some((dir, cname)) });
            };
            let st = fstat(obj.as_raw_fd())?;
            if is(&st, libc::S_IFLNK) && (follow || trailing) {
                let text = read_link(obj.as_raw_fd())?;
                // In a view's root an absolute link names a view path
                // (resolved again from the top); in any other tree it
                // leaves the tree, as `RESOLVE_BENEATH` says on reads.
                if text.first() == Some(&b'/') && !d.in_root {
                    return Err(PathError::Denied(Refusal::Escape));
                }
                let mut next = join(spelled_parent(&spelled), &text);
                if trailing {
                    next.push(b'/');
                }
                spelled = next;
                continue;
            }
            if trailing && !is(&st, libc::S_IFDIR) {
                return Err(PathError::Errno(libc::ENOTDIR));
            }
            if is(&st, libc::S_IFDIR) {
                self.check_object(obj.as_raw_fd(), &st, Access::Write)?;
                self.governed_writable(obj.as_raw_fd(), &st)?;
            } else {
                self.governed_writable(dir.as_raw_fd(), &dst)?;
            }
            return Ok(Reached { obj: Some((obj, st)), parent: Some((dir, cname)) });
        }
        Err(PathError::Errno(libc::ELOOP))
    }

    /// Whether the program may change the metadata of the object its
    /// descriptor `fd` (opened as `path`) names, when that was not known at
    /// open: `path` must still reach that object for a change.
    pub fn fd_changeable(&self, path: &[u8], st: &libc::stat) -> Result<(), PathError> {
        let r = self.reach_for_change(path, true)?;
        match r.obj {
            Some((_, o)) if (o.st_dev, o.st_ino) == (st.st_dev, st.st_ino) => Ok(()),
            _ => Err(self.read_only()),
        }
    }

    /// An `O_PATH` descriptor of `abs` itself (following a final symlink
    /// only when `follow`) for a metadata read, with its stat: anything in
    /// a tree but the refused `/proc` and pseudo entries, or one of the
    /// directories above the trees.
    pub fn inspect(&self, abs: &[u8], follow: bool) -> Result<(OwnedFd, libc::stat), PathError> {
        if let Some(f) = self.file_grant(abs) {
            // The granted name is never a symlink (resolved at start).
            return self.reach_file(f, abs, Access::Look);
        }
        let Some((d, rel)) = self.locate(abs) else {
            let comps = components(abs);
            let (_, fd) =
                self.ancestors.iter().find(|(c, _)| *c == comps).ok_or_else(|| self.outside(abs))?;
            let fd = fd.try_clone().map_err(|e| PathError::Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
            let st = fstat(fd.as_raw_fd())?;
            return Ok((fd, st));
        };
        let flags = libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW };
        let rel = cstring(&rel)?;
        let fd = d.open2(&rel, flags, 0).map_err(|e| self.missing_in_hidden(d, &rel, e))?;
        let st = fstat(fd.as_raw_fd())?;
        self.check_object(fd.as_raw_fd(), &st, Access::Look)?;
        Ok((fd, st))
    }

    /// The stat of `abs` for a metadata read that needs nothing more
    /// (`stat`, `lstat`, `newfstatat`): what [`FsPolicy::inspect`] gives,
    /// in one host call when the name lies directly in a tree's root.
    pub fn look(&self, abs: &[u8], follow: bool) -> Result<libc::stat, PathError> {
        match self.look_in_root(abs, follow) {
            Some(r) => r,
            None => self.inspect(abs, follow).map(|(_, st)| st),
        }
    }

    /// [`FsPolicy::look`]'s one-call case: `abs` is a tree's root and one
    /// plain name (no `/`, `.` or `..`), looked up `AT_SYMLINK_NOFOLLOW` in
    /// the root's own descriptor, which is held from start and whose place
    /// is fixed (a tree root is never renamed or replaced). A single name
    /// looked up without following it cannot leave the directory, so this
    /// is what `openat2(RESOLVE_BENEATH)` + `fstat` would answer. `None`
    /// (take the general path) for whatever needs more than the stat to
    /// decide: a symbolic link to follow, an object on a pseudo file
    /// system (major 0: `/proc`, `/sys`, ...), one on the hidden image
    /// cache's device, a file grant, an error other than `ENOENT`.
    fn look_in_root(&self, abs: &[u8], follow: bool) -> Option<Result<libc::stat, PathError>> {
        let (d, name) = self.root_name(abs)?;
        // SAFETY: stat is plain data; zeroed is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstatat reads the NUL-terminated name and writes `st`.
        let r = unsafe { libc::fstatat(d.fd.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if r < 0 {
            return match last_errno() {
                libc::ENOENT => Some(Err(PathError::Errno(libc::ENOENT))),
                _ => None,
            };
        }
        self.decides_alone(follow, st.st_mode, st.st_dev).then_some(Ok(st))
    }

    /// `statx` of `abs` in one host call when it is one plain name in a
    /// tree's root, on the terms of [`FsPolicy::look`] (`None`: take the
    /// general path). `sync` is the program's `AT_STATX_SYNC_TYPE` bits,
    /// `mask` its mask (`STATX_TYPE` is added: the decision needs it, and
    /// the kernel reports the basic fields whatever the mask).
    pub fn statx_in_root(
        &self,
        abs: &[u8],
        follow: bool,
        sync: i32,
        mask: u32,
    ) -> Option<Result<libc::statx, PathError>> {
        let (d, name) = self.root_name(abs)?;
        // SAFETY: statx is plain data; zeroed is a valid value.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        let flags = libc::AT_SYMLINK_NOFOLLOW | (sync & libc::AT_STATX_SYNC_TYPE);
        // SAFETY: statx reads the NUL-terminated name and writes `stx`.
        let r =
            unsafe { libc::statx(d.fd.as_raw_fd(), name.as_ptr(), flags, mask | libc::STATX_TYPE, &mut stx) };
        if r < 0 {
            return match last_errno() {
                libc::ENOENT => Some(Err(PathError::Errno(libc::ENOENT))),
                _ => None,
            };
        }
        let dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
        self.decides_alone(follow, stx.stx_mode as libc::mode_t, dev).then_some(Ok(stx))
    }

    /// `abs` as a tree's root and one plain name in it (no `/`, `.` or
    /// `..`; not a file grant), for the one-call looks.
    fn root_name(&self, abs: &[u8]) -> Option<(&AllowedDir, CString)> {
        if self.file_grant(abs).is_some() {
            return None;
        }
        let (d, rel) = self.locate(abs)?;
        if rel.contains(&b'/') || rel == b"." || rel == b".." || rel.is_empty() {
            return None;
        }
        Some((d, cstring(&rel).ok()?))
    }

    /// Whether a look taken without following, which found an object of
    /// this mode on this device, decides alone: not a symbolic link to
    /// follow, not on a pseudo file system (major 0: `/proc`, `/sys`, ...
    /// need `fstatfs`), not on the hidden image cache's device.
    fn decides_alone(&self, follow: bool, mode: libc::mode_t, dev: u64) -> bool {
        let link = mode & libc::S_IFMT == libc::S_IFLNK;
        let pseudo = libc::major(dev) == 0;
        let near_hidden = self.hidden.as_ref().is_some_and(|h| dev == h.id.0);
        !((follow && link) || pseudo || near_hidden)
    }

    /// Whether `abs` lies under a writable allowed dir (by its spelling).
    pub fn writable(&self, abs: &[u8]) -> bool {
        self.locate(abs).is_some_and(|(d, _)| d.write)
    }

    /// The parent directory of `abs` (as an `O_PATH` fd) and the final
    /// component, for operations on a name (unlink, rmdir, mkdir, rename,
    /// link, symlink: all change the directory). The name is never `.` or
    /// `..` and contains no `/`; the directory lies in a writable tree by
    /// its ancestry and on no pseudo filesystem; the name is not a tree
    /// root, whatever the spelling.
    pub fn parent(&self, abs: &[u8], need_write: bool) -> Result<(OwnedFd, CString), PathError> {
        let mut comps = components(abs);
        let name = comps.pop().ok_or(PathError::Errno(libc::EBUSY))?;
        if name == b".." {
            return Err(PathError::Errno(libc::EINVAL));
        }
        let mut parent = Vec::new();
        for c in &comps {
            parent.push(b'/');
            parent.extend_from_slice(c);
        }
        if parent.is_empty() {
            parent.push(b'/');
        }
        // In a view a file bind is a mount point: busy (by the lexically
        // normalised spelling; another spelling reaches only the file
        // under it in the root, which the view's rules govern).
        if self.view && !self.files.is_empty() {
            let spelled = components(&normalize(abs));
            if self.files.iter().any(|f| f.comps == spelled) {
                return Err(PathError::Errno(libc::EBUSY));
            }
        }
        // The name itself must also be inside the allowed dir (the dir
        // itself cannot be removed or renamed through its parent).
        let (d2, _) = self.locate(abs).ok_or_else(|| self.outside(abs))?;
        let (d, rel) = self.locate(&parent).ok_or(PathError::Denied(Refusal::TreeItself))?;
        if !std::ptr::eq(d, d2) || rel.is_empty() {
            // In a view the tree is a mount point: busy, as natively.
            return Err(if self.view {
                PathError::Errno(libc::EBUSY)
            } else {
                PathError::Denied(Refusal::TreeItself)
            });
        }
        if need_write && !d.write {
            return Err(self.read_only());
        }
        let fd = d.open2(&cstring(&rel)?, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        let cname = cstring(&name)?;
        if let Some(h) = &self.hidden {
            // Nothing is named in the image cache, and the cache and the
            // directories above it keep their names.
            let st = fstat(fd.as_raw_fd())?;
            if h.covers(fd.as_raw_fd(), &st) {
                return Err(PathError::Denied(Refusal::ImageCache));
            }
            // SAFETY: stat is plain data; zeroed is a valid value.
            let mut nst: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fstatat reads the name and writes `nst`.
            let r =
                unsafe { libc::fstatat(fd.as_raw_fd(), cname.as_ptr(), &mut nst, libc::AT_SYMLINK_NOFOLLOW) };
            if r == 0 && (h.id == (nst.st_dev, nst.st_ino) || h.above.contains(&(nst.st_dev, nst.st_ino))) {
                return Err(PathError::Denied(Refusal::ImageCache));
            }
        }
        if need_write {
            let st = fstat(fd.as_raw_fd())?;
            self.check_object(fd.as_raw_fd(), &st, Access::Write)?;
            self.governed_writable(fd.as_raw_fd(), &st)?;
            // A tree root is never removed, renamed, replaced or linked,
            // however it is named (`W/d/../ro`, a symlinked parent, ...).
            if self.roots.iter().any(|r| r.0 == st.st_dev) {
                // SAFETY: stat is plain data; zeroed is a valid value.
                let mut nst: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: fstatat reads the name and writes `nst`.
                let r = unsafe {
                    libc::fstatat(fd.as_raw_fd(), cname.as_ptr(), &mut nst, libc::AT_SYMLINK_NOFOLLOW)
                };
                if r == 0 && self.root(&nst).is_some() {
                    // In a view a tree root is a mount point: busy.
                    return Err(if self.view {
                        PathError::Errno(libc::EBUSY)
                    } else {
                        PathError::Denied(Refusal::TreeItself)
                    });
                }
            }
        }
        Ok((fd, cname))
    }
}

/// Canonicalises a host path given at start and opens it `O_PATH`: its
/// canonical path, descriptor and stat.
fn open_host(p: &std::path::Path) -> Result<(CString, OwnedFd, libc::stat), std::io::Error> {
    let canon = std::fs::canonicalize(p)?;
    let c = CString::new(canon.as_os_str().as_encoded_bytes().to_vec())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let fd = openat(libc::AT_FDCWD, &c, libc::O_PATH, 0).map_err(io)?;
    let st = fstat(fd.as_raw_fd()).map_err(io)?;
    Ok((c, fd, st))
}

/// A path error as an I/O error (for set-up errors, before the run).
fn io(e: PathError) -> std::io::Error {
    match e {
        PathError::Errno(e) => std::io::Error::from_raw_os_error(e),
        PathError::Denied(_) => std::io::Error::from_raw_os_error(libc::EACCES),
    }
}

/// A file grant of the non-directory at canonical path `c` (with its stat
/// `st`), reached by the program at `comps`: its directory is opened from
/// `/` (the canonical path holds no symlink) and the name looked up there
/// once.
fn grant_file(
    c: &CString,
    st: &libc::stat,
    comps: Vec<Vec<u8>>,
    write: bool,
) -> Result<AllowedFile, std::io::Error> {
    let einval = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let host = components(c.as_bytes());
    let Some((name, parent)) = host.split_last() else {
        return Err(einval());
    };
    let mut parent_path = Vec::new();
    for comp in parent {
        parent_path.push(b'/');
        parent_path.extend_from_slice(comp);
    }
    if parent_path.is_empty() {
        parent_path.push(b'/');
    }
    let pc = CString::new(parent_path).map_err(|_| einval())?;
    let name = CString::new(name.clone()).map_err(|_| einval())?;
    let dir = openat(libc::AT_FDCWD, &pc, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(io)?;
    let obj = openat(dir.as_raw_fd(), &name, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(io)?;
    let ost = fstat(obj.as_raw_fd()).map_err(io)?;
    if (ost.st_dev, ost.st_ino) != (st.st_dev, st.st_ino) {
        // Renamed between the two looks: refuse to guess.
        return Err(std::io::Error::from_raw_os_error(libc::EAGAIN));
    }
    Ok(AllowedFile { comps, dir, name, obj, id: (st.st_dev, st.st_ino), write, aliases: Vec::new() })
}

const FSOPEN_CLOEXEC: u32 = 1;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 1;
const MOUNT_ATTR_NOSUID: u32 = 0x2;
const MOUNT_ATTR_NODEV: u32 = 0x4;

/// A fresh kernel tmpfs of `size` bytes as a detached mount (`fsopen`,
/// `fsconfig`, `fsmount`): in no mount namespace and at no host path, so
/// nothing is left behind; it is freed when the last descriptor of it
/// closes. Writes past `size` are the kernel's `ENOSPC`. Needs
/// CAP_SYS_ADMIN; without it, made in a child in a user namespace of its
/// own ([`tmpfs_in_userns`]).
fn make_tmpfs(size: u64) -> Result<OwnedFd, std::io::Error> {
    match tmpfs_here(size) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => tmpfs_in_userns(size),
        r => r,
    }
}

/// [`make_tmpfs`] in this process (async-signal-safe: also run in a
/// forked child).
fn tmpfs_here(size: u64) -> Result<OwnedFd, std::io::Error> {
    let err = std::io::Error::last_os_error;
    // SAFETY: fsopen reads the NUL-terminated name.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC as usize) };
    if fs < 0 {
        return Err(err());
    }
    // SAFETY: a fresh descriptor we own.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    let mut digits = [0u8; 24];
    let value = decimal(size.max(4096), &mut digits);
    // SAFETY: fsconfig reads the two NUL-terminated strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd() as usize,
            FSCONFIG_SET_STRING as usize,
            c"size".as_ptr(),
            value.as_ptr(),
            0usize,
        )
    };
    if r < 0 {
        return Err(err());
    }
    // Inodes are kernel memory that `size` does not count: one per 4 KiB of
    // it (at least 1024), so that empty files cannot fill the host.
    let mut inodes = [0u8; 24];
    let inodes = decimal((size / 4096).max(1024), &mut inodes);
    // SAFETY: fsconfig reads the two NUL-terminated strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd() as usize,
            FSCONFIG_SET_STRING as usize,
            c"nr_inodes".as_ptr(),
            inodes.as_ptr(),
            0usize,
        )
    };
    if r < 0 {
        return Err(err());
    }
    // SAFETY: no pointers are passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd() as usize,
            FSCONFIG_CMD_CREATE as usize,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    if r < 0 {
        return Err(err());
    }
    // SAFETY: touches no memory.
    let m = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd() as usize,
            FSMOUNT_CLOEXEC as usize,
            (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) as usize,
        )
    };
    if m < 0 {
        return Err(err());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(m as i32) })
}

/// `n` in decimal, NUL-terminated, in `buf` (no allocation: used after
/// fork).
fn decimal(mut n: u64, buf: &mut [u8; 24]) -> &std::ffi::CStr {
    let mut i = buf.len() - 1;
    buf[i] = 0;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::ffi::CStr::from_bytes_with_nul(&buf[i..]).unwrap_or(c"4096")
}

/// [`make_tmpfs`] without CAP_SYS_ADMIN, made by [`in_userns`].
fn tmpfs_in_userns(size: u64) -> Result<OwnedFd, std::io::Error> {
    let job = |_| tmpfs_here(size).map_err(|e| e.raw_os_error().unwrap_or(libc::EPERM));
    in_userns(1, &job).pop().unwrap_or_else(|| Err(std::io::Error::from_raw_os_error(libc::EPERM)))
}

/// Runs `job(0)`, ..., `job(count - 1)` in a forked child that has entered
/// a user and mount namespace of its own (mapping its uid and gid to
/// themselves, so the monitor owns what it creates: CAP_SYS_ADMIN there,
/// none on the host), and returns the descriptors (or errnos) they made,
/// passed back over a socket pair. `job` runs after `fork`: it must
/// allocate nothing and make raw system calls only.
fn in_userns(
    count: usize,
    job: &dyn Fn(usize) -> Result<OwnedFd, i32>,
) -> Vec<Result<OwnedFd, std::io::Error>> {
    let err = std::io::Error::last_os_error;
    let mut sv = [0i32; 2];
    // SAFETY: socketpair writes two descriptors into `sv`.
    if unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr())
    } < 0
    {
        return (0..count).map(|_| Err(err())).collect();
    }
    // SAFETY: two fresh descriptors we own.
    let (mine, theirs) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
    // Everything the child needs is made before the fork: it allocates
    // nothing and makes only raw system calls.
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("0 {uid} 1\n");
    let gid_map = format!("0 {gid} 1\n");
    // A child without an exit signal (clone flags 0): no SIGCHLD, and no
    // `wait4(-1)` of another run in this process reaps it; only the
    // `__WALL` wait below does.
    // SAFETY: a fork-like clone (no shared memory, no new stack); the child
    // runs only async-signal-safe code and leaves with _exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone, 0usize, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return (0..count).map(|_| Err(err())).collect();
    }
    if pid == 0 {
        let code = userns_child(theirs.as_raw_fd(), count, job, uid_map.as_bytes(), gid_map.as_bytes());
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(code) };
    }
    drop(theirs);
    // The child makes a handful of calls; never wait for it for ever.
    let limit = libc::timeval { tv_sec: 10, tv_usec: 0 };
    // SAFETY: setsockopt reads the timeval of the size given.
    unsafe {
        libc::setsockopt(
            mine.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&limit as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let mut got = Vec::with_capacity(count);
    for _ in 0..count {
        got.push(recv_fd(mine.as_raw_fd()));
    }
    // SAFETY: our own child, not yet reaped (it has sent everything, or
    // failed: either way it has nothing more to do).
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: waits for our own child; writes `status`.
    unsafe { libc::waitpid(pid as i32, &mut status, libc::__WALL) };
    got
}

/// The child of [`in_userns`]: a user and mount namespace of its own,
/// then `count` messages on `sock`, each a descriptor `job` made or its
/// errno as 4 bytes. The exit code is 0 on success. Only for a freshly
/// cloned child (it changes the calling process's namespaces): makes raw
/// system calls only.
fn userns_child(
    sock: RawFd,
    count: usize,
    job: &dyn Fn(usize) -> Result<OwnedFd, i32>,
    uid_map: &[u8],
    gid_map: &[u8],
) -> i32 {
    let send_errno = |e: i32| {
        // SAFETY: send reads 4 bytes of `e`.
        unsafe { libc::send(sock, (&e as *const i32).cast(), 4, 0) };
        1
    };
    let write_file = |path: &std::ffi::CStr, text: &[u8]| -> bool {
        // SAFETY: open reads the path; write reads `text`; close our fd.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return false;
            }
            let n = libc::write(fd, text.as_ptr().cast(), text.len());
            libc::close(fd);
            n == text.len() as isize
        }
    };
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EPERM);
    // SAFETY: unshare touches no memory.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) } < 0 {
        return send_errno(errno());
    }
    if !write_file(c"/proc/self/setgroups", b"deny")
        || !write_file(c"/proc/self/uid_map", uid_map)
        || !write_file(c"/proc/self/gid_map", gid_map)
    {
        return send_errno(errno());
    }
    for i in 0..count {
        let fd = match job(i) {
            Ok(fd) => fd,
            Err(e) => {
                send_errno(e);
                continue;
            }
        };
        if !send_fd(sock, fd.as_raw_fd()) {
            return 1;
        }
    }
    0
}

/// Sends descriptor `raw` (one byte of data) on `sock` (no allocation).
fn send_fd(sock: RawFd, raw: RawFd) -> bool {
    let mut byte = 0u8;
    let mut iov = libc::iovec { iov_base: (&mut byte as *mut u8).cast(), iov_len: 1 };
    let mut space = [0u64; 4];
    // SAFETY: msghdr is plain data; zeroed is valid, then filled in.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as usize;
    // SAFETY: the control buffer holds one header and an fd (32 bytes).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), raw);
    }
    // SAFETY: sendmsg reads the message built above.
    unsafe { libc::sendmsg(sock, &msg, 0) >= 0 }
}

/// `mount_setattr`'s argument.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached clone of the mount at `dirfd`/`path` (`open_tree`'s
/// `OPEN_TREE_CLONE | AT_RECURSIVE`: its submounts too, so that their
/// mount points stay mount points) with `MOUNT_ATTR_NODEV` on all of it:
/// the kernel refuses every device open through it. In no mount namespace
/// and at no host path; freed when its last descriptor closes. It shows
/// the same files (the same dentries: every later change in the tree),
/// not the mounts made after it. The errno on failure (`EPERM` without
/// CAP_SYS_ADMIN). No allocation: also run after fork ([`in_userns`]).
fn nodev_clone(dirfd: RawFd, path: &std::ffi::CStr, at_flags: i32) -> Result<OwnedFd, i32> {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EPERM);
    let flags = libc::OPEN_TREE_CLONE as i32 | libc::O_CLOEXEC | libc::AT_RECURSIVE | at_flags;
    // SAFETY: open_tree reads the NUL-terminated path.
    let t = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags as u32 as usize) };
    if t < 0 {
        return Err(errno());
    }
    // SAFETY: a fresh descriptor we own.
    let t = unsafe { OwnedFd::from_raw_fd(t as i32) };
    let attr = MountAttr { attr_set: MOUNT_ATTR_NODEV as u64, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: mount_setattr reads the empty path and `attr` of the size given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            t.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as usize,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(errno());
    }
    Ok(t)
}

/// Placeholder until [`device_guards`] decides.
const UNSET: DeviceGuard = DeviceGuard::Probe("refused by the probe");

/// Decides each tree's [`DeviceGuard`]: the kernel where the tree's mount
/// is `nodev` already or a nodev clone can be made (directly with
/// CAP_SYS_ADMIN, else in a user namespace of its own, one helper child
/// for all trees), the probe for a pseudo file system or where the kernel
/// refuses. A clone must show the tree's own root (same device and
/// inode), else it is not used.
fn device_guards(dirs: &mut [AllowedDir]) {
    let mut in_ns: Vec<(usize, CString)> = Vec::new();
    for (i, d) in dirs.iter_mut().enumerate() {
        let fd = d.fd.as_raw_fd();
        // SAFETY: statfs is plain data; zeroed is a valid value.
        let mut sf: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fstatfs writes `sf`.
        if unsafe { libc::fstatfs(fd, &mut sf) } < 0 {
            d.guard = DeviceGuard::Probe("refused by the probe (fstatfs of the tree failed)");
            continue;
        }
        let magic = sf.f_type as i64;
        if magic == PROC_SUPER_MAGIC || READ_ONLY_PSEUDO.contains(&magic) || CLOSED_PSEUDO.contains(&magic) {
            d.guard =
                DeviceGuard::Probe("refused by the probe (a pseudo file system: every object is looked at)");
            continue;
        }
        // SAFETY: statvfs is plain data; zeroed is a valid value.
        let mut vf: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: fstatvfs writes `vf`.
        let nodev = unsafe { libc::fstatvfs(fd, &mut vf) } == 0 && vf.f_flag & libc::ST_NODEV != 0;
        if nodev {
            d.guard = match fd_dup(&d.fd) {
                Some(dup) => {
                    DeviceGuard::Kernel(dup, "refused by the kernel (the tree's own mount is nodev)")
                }
                None => DeviceGuard::Probe("refused by the probe (dup failed)"),
            };
            continue;
        }
        d.guard = match nodev_clone(fd, c"", libc::AT_EMPTY_PATH) {
            Ok(c) => same_root(c, &d.fd, "refused by the kernel (a nodev clone of the tree's mount)"),
            Err(libc::EPERM) if d.host.first() == Some(&b'/') => match CString::new(d.host.clone()) {
                Ok(p) => {
                    in_ns.push((i, p));
                    DeviceGuard::Probe(
                        "refused by the probe (no nodev clone: not root, and no user namespace for it)",
                    )
                }
                Err(_) => DeviceGuard::Probe("refused by the probe"),
            },
            Err(_) => DeviceGuard::Probe("refused by the probe (the kernel refused a nodev clone)"),
        };
    }
    if in_ns.is_empty() {
        return;
    }
    // The child re-resolves the canonical path in its own copy of the
    // mounts (a descriptor of ours names a mount of another namespace,
    // which open_tree refuses); the root it reaches is checked below.
    let job = |k: usize| nodev_clone(libc::AT_FDCWD, &in_ns[k].1, 0);
    for ((i, _), got) in in_ns.iter().zip(in_userns(in_ns.len(), &job)) {
        let d = &mut dirs[*i];
        if let Ok(c) = got {
            d.guard = same_root(
                c,
                &d.fd,
                "refused by the kernel (a nodev clone of the tree's mount, made in a user namespace)",
            );
        }
    }
}

/// `Kernel(clone)` when the clone's root is the tree's root `fd` (same
/// device and inode), else the probe.
fn same_root(clone: OwnedFd, fd: &OwnedFd, how: &'static str) -> DeviceGuard {
    match (fstat(clone.as_raw_fd()), fstat(fd.as_raw_fd())) {
        (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) => DeviceGuard::Kernel(clone, how),
        _ => DeviceGuard::Probe("refused by the probe (the clone is not the tree's root)"),
    }
}

/// A duplicate of `fd` (close-on-exec).
fn fd_dup(fd: &OwnedFd) -> Option<OwnedFd> {
    fd.try_clone().ok()
}

/// Receives the descriptor [`userns_child`] sends (or its errno).
fn recv_fd(sock: RawFd) -> Result<OwnedFd, std::io::Error> {
    let mut data = [0u8; 4];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    let mut space = [0u64; 4];
    // SAFETY: msghdr is plain data; zeroed is valid, then filled in.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space);
    // SAFETY: recvmsg writes into the buffers described by `msg`.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the control buffer; CMSG_FIRSTHDR checks
    // its length.
    let c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    // SAFETY: `c` is checked non-null and lies in `space`.
    if !c.is_null() && unsafe { (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS } {
        // SAFETY: an SCM_RIGHTS message holds at least one descriptor.
        let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()) };
        // SAFETY: the kernel installed this descriptor for us.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let e = if n == 4 { i32::from_ne_bytes(data) } else { libc::EPERM };
    Err(std::io::Error::from_raw_os_error(e))
}

/// Creates the mount point `comps` (its directories, and the last as a
/// directory when `dir`, else an empty file) in the fresh empty root
/// `root`. Best effort: a mount point that cannot be made is only missing
/// from listings, the tree is still reached by its path.
fn make_mount_point(root: RawFd, comps: &[Vec<u8>], dir: bool) {
    let Ok(mut cur) = openat(root, c".", libc::O_PATH | libc::O_DIRECTORY, 0) else { return };
    for (i, c) in comps.iter().enumerate() {
        let Ok(name) = CString::new(c.clone()) else { return };
        let last = i + 1 == comps.len();
        if last && !dir {
            // SAFETY: openat reads the name; the descriptor is closed at once.
            let fd = unsafe {
                libc::openat(
                    cur.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                )
            };
            if fd >= 0 {
                // SAFETY: our own fresh descriptor.
                unsafe { libc::close(fd) };
            }
            return;
        }
        // SAFETY: mkdirat reads the name.
        unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) };
        match openat(cur.as_raw_fd(), &name, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0) {
            Ok(next) => cur = next,
            Err(_) => return,
        }
    }
}

/// The text of the symlink `fd` (an `O_PATH | O_NOFOLLOW` descriptor).
fn read_link(fd: RawFd) -> Result<Vec<u8>, PathError> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: writes at most buf.len() bytes into buf; the path is "".
    let n = unsafe { libc::readlinkat(fd, c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(PathError::Errno(last_errno()));
    }
    if n as usize >= buf.len() {
        return Err(PathError::Errno(libc::ENAMETOOLONG));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// The monitor's `/proc` (its `self/fd` directory, device and path), or
/// `None` where `/proc` is not mounted (then nothing in any `/proc` is
/// served).
fn open_proc() -> Option<ProcView> {
    let root = openat(libc::AT_FDCWD, c"/proc", libc::O_PATH | libc::O_DIRECTORY, 0).ok()?;
    let st = fstat(root.as_raw_fd()).ok()?;
    let self_fd = openat(root.as_raw_fd(), c"self/fd", libc::O_PATH | libc::O_DIRECTORY, 0).ok()?;
    let path = fd_link(root.as_raw_fd())?;
    Some(ProcView { self_fd, dev: st.st_dev, path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn policy(read: &[PathBuf], write: &[PathBuf]) -> FsPolicy {
        FsPolicy::new(read, write).unwrap()
    }

    fn b(p: &std::path::Path) -> Vec<u8> {
        p.as_os_str().as_encoded_bytes().to_vec()
    }

    /// Swaps the names `x` and `y` atomically (`RENAME_EXCHANGE`), as the
    /// racing threads of the escape tests do.
    fn exchange(x: &std::path::Path, y: &std::path::Path) {
        let (x, y) = (CString::new(b(x)).unwrap(), CString::new(b(y)).unwrap());
        // SAFETY: renameat2 reads the two NUL-terminated paths.
        let r = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                x.as_ptr(),
                libc::AT_FDCWD,
                y.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        assert_eq!(r, 0);
    }

    fn view(
        root: Option<&std::path::Path>,
        binds: &[(&std::path::Path, &str, bool)],
        tmpfs: &[(&str, u64)],
    ) -> FsPolicy {
        let v = crate::config::View {
            root: root.map(PathBuf::from),
            root_readonly: false,
            binds: binds
                .iter()
                .map(|(s, d, ro)| crate::config::Bind { src: s.to_path_buf(), dst: d.into(), readonly: *ro })
                .collect(),
            tmpfs: tmpfs.iter().map(|(d, n)| crate::config::Tmpfs { dst: d.into(), size: *n }).collect(),
            chdir: None,
        };
        FsPolicy::with_view(&v).unwrap()
    }

    fn read_all(o: Opened) -> String {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(o.fd), &mut s).unwrap();
        s
    }

    #[test]
    fn a_view_root_keeps_dotdot_and_absolute_links_inside() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().canonicalize().unwrap().join("root");
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), b"inside").unwrap();
        symlink("/etc/passwd", r.join("abs")).unwrap();
        symlink("../../../../../etc/passwd", r.join("etc/rel")).unwrap();
        symlink("/proc/self/root/etc/passwd", r.join("magic")).unwrap();
        let p = view(Some(&r), &[], &[]);
        for path in ["/etc/passwd", "/../../etc/passwd", "/abs", "/etc/rel", "/etc/../../etc/passwd"] {
            assert_eq!(read_all(p.open(path.as_bytes(), libc::O_RDONLY, 0).unwrap()), "inside", "{path}");
        }
        // Not in the view: it does not exist (the host has /etc/hostname).
        assert_eq!(p.open(b"/etc/hostname", libc::O_RDONLY, 0).unwrap_err(), PathError::Errno(libc::ENOENT));
        assert!(p.locate(b"/anything").is_some(), "everything is in the root");
        assert!(p.open(b"/magic", libc::O_RDONLY, 0).is_err());
        // A change through an absolute link stays in the view too.
        let o = p.open(b"/abs", libc::O_WRONLY | libc::O_APPEND, 0).unwrap();
        drop(o);
        assert_eq!(p.host_path(b"/etc/passwd").unwrap(), b(&r.join("etc/passwd")));
    }

    #[test]
    fn binds_are_reached_at_their_view_path_and_read_only_is_erofs() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().canonicalize().unwrap();
        let (r, data, ro) = (base.join("root"), base.join("data"), base.join("ro"));
        for d in [&r, &data, &ro] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(data.join("f"), b"data").unwrap();
        std::fs::write(ro.join("f"), b"ro").unwrap();
        std::fs::write(base.join("secret"), b"no").unwrap();
        symlink("/etc/passwd", data.join("abs")).unwrap();
        symlink("../secret", data.join("rel")).unwrap();
        let p = view(Some(&r), &[(&data, "/mnt/data", false), (&ro, "/ro", true)], &[]);
        assert_eq!(read_all(p.open(b"/mnt/data/f", libc::O_RDONLY, 0).unwrap()), "data");
        assert_eq!(read_all(p.open(b"/ro/f", libc::O_RDONLY, 0).unwrap()), "ro");
        // `..` at the mount point is its parent in the view.
        assert_eq!(read_all(p.open(b"/mnt/data/../data/f", libc::O_RDONLY, 0).unwrap()), "data");
        let escape = PathError::Denied(Refusal::Escape);
        assert_eq!(p.open(b"/mnt/data/abs", libc::O_RDONLY, 0).unwrap_err(), escape);
        assert_eq!(p.open(b"/mnt/data/rel", libc::O_RDONLY, 0).unwrap_err(), escape);
        let erofs = PathError::Denied(Refusal::ReadOnlyView);
        assert_eq!(p.open(b"/ro/f", libc::O_WRONLY, 0).unwrap_err(), erofs);
        assert_eq!(p.open(b"/ro/new", libc::O_WRONLY | libc::O_CREAT, 0o644).unwrap_err(), erofs);
        assert_eq!(p.parent(b"/ro/f", true).unwrap_err(), erofs);
        assert_eq!(Refusal::ReadOnlyView.errno(), libc::EROFS);
        assert!(p.open(b"/mnt/data/new", libc::O_WRONLY | libc::O_CREAT, 0o644).is_ok());
        assert!(data.join("new").exists());
        // A mount point is busy; rename across binds is another tree.
        assert_eq!(p.parent(b"/mnt/data", true).unwrap_err(), PathError::Errno(libc::EBUSY));
        assert!(!p.same_tree(b"/mnt/data", b"/ro"));
        assert!(!p.same_tree(b"/mnt/data", b"/"));
        assert!(p.same_tree(b"/mnt/data/x", b"/mnt/data/y/.."));
    }

    #[test]
    fn a_file_bind_is_that_file_at_its_view_path() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().canonicalize().unwrap();
        std::fs::write(base.join("conf"), b"conf").unwrap();
        std::fs::write(base.join("sib"), b"secret").unwrap();
        let p = view(None, &[(&base.join("conf"), "/etc/app.conf", true)], &[]);
        assert_eq!(read_all(p.open(b"/etc/app.conf", libc::O_RDONLY, 0).unwrap()), "conf");
        assert_eq!(p.open(b"/etc/sib", libc::O_RDONLY, 0).unwrap_err(), PathError::Errno(libc::ENOENT));
        assert_eq!(
            p.open(b"/etc/app.conf", libc::O_WRONLY, 0).unwrap_err(),
            PathError::Denied(Refusal::ReadOnlyView)
        );
        // Over a writable root the file bind still wins, and is busy.
        let root = base.join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/app.conf"), b"under").unwrap();
        let q = view(Some(&root), &[(&base.join("conf"), "/etc/app.conf", true)], &[]);
        assert_eq!(read_all(q.open(b"/etc/app.conf", libc::O_RDONLY, 0).unwrap()), "conf");
        let erofs = PathError::Denied(Refusal::ReadOnlyView);
        assert_eq!(q.open(b"/etc/app.conf", libc::O_WRONLY | libc::O_TRUNC, 0).unwrap_err(), erofs);
        assert_eq!(q.parent(b"/etc/app.conf", true).unwrap_err(), PathError::Errno(libc::EBUSY));
        assert_eq!(q.parent(b"/etc/../etc/app.conf", true).unwrap_err(), PathError::Errno(libc::EBUSY));
        assert_eq!(std::fs::read(root.join("etc/app.conf")).unwrap(), b"under");
        // The empty root shows the mount point, and is read-only.
        assert!(p.inspect(b"/etc", true).is_ok());
        assert_eq!(
            p.open(b"/x", libc::O_WRONLY | libc::O_CREAT, 0o644).unwrap_err(),
            PathError::Denied(Refusal::ReadOnlyView)
        );
    }

    #[test]
    fn a_tmpfs_is_bounded_and_leaves_nothing() {
        let p = view(None, &[], &[("/tmp", 64 << 10)]);
        let o = p.open(b"/tmp/f", libc::O_WRONLY | libc::O_CREAT, 0o644).unwrap();
        let mut f = std::fs::File::from(o.fd);
        let chunk = vec![7u8; 4096];
        let mut total = 0usize;
        let e = loop {
            match std::io::Write::write(&mut f, &chunk) {
                Ok(n) => total += n,
                Err(e) => break e,
            }
            assert!(total <= 64 << 10, "wrote past the bound");
        };
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(p.host_path(b"/tmp/f").unwrap().starts_with(b"tmpfs:"));
        // Empty files are bounded too (inodes: 1024 for a small tmpfs).
        let mut made = 0;
        let e = loop {
            match p.open(format!("/tmp/e{made}").as_bytes(), libc::O_WRONLY | libc::O_CREAT, 0o644) {
                Ok(_) => made += 1,
                Err(e) => break e,
            }
            assert!(made <= 1024, "more inodes than the bound");
        };
        assert_eq!(e, PathError::Errno(libc::ENOSPC));
    }

    #[test]
    fn a_tmpfs_is_made_in_a_user_namespace_without_cap_sys_admin() {
        // The fallback, called directly (here it may run as root too).
        match tmpfs_in_userns(1 << 20) {
            Ok(fd) => {
                let f = openat(fd.as_raw_fd(), c"x", libc::O_CREAT | libc::O_WRONLY, 0o600).unwrap();
                assert!(fstat(f.as_raw_fd()).is_ok());
            }
            Err(e) => cabin_tests::not_run("user namespaces", &format!("{e}")),
        }
    }

    #[test]
    fn a_view_refuses_bad_paths_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let mk = |root: Option<PathBuf>, dst: &str| crate::config::View {
            root,
            binds: vec![crate::config::Bind { src: t.path().into(), dst: dst.into(), readonly: false }],
            ..Default::default()
        };
        for dst in ["rel", "/", "/a/../b"] {
            let e = FsPolicy::with_view(&mk(None, dst)).unwrap_err().to_string();
            assert!(e.contains("help:"), "{dst}: {e}");
        }
        let e = FsPolicy::with_view(&mk(Some(t.path().join("missing")), "/x")).unwrap_err().to_string();
        assert!(e.contains("missing") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn nested_read_only_tree_is_read_only_however_reached() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path().canonicalize().unwrap();
        let ro = w.join("ro");
        std::fs::create_dir_all(ro.join("empty")).unwrap();
        std::fs::create_dir(w.join("d")).unwrap();
        std::fs::write(ro.join("f"), b"ro").unwrap();
        std::fs::write(w.join("mine"), b"w").unwrap();
        symlink("ro", w.join("l")).unwrap();
        symlink("ro/new", w.join("dangling")).unwrap();
        let p = policy(std::slice::from_ref(&ro), std::slice::from_ref(&w));
        let ro_only = PathError::Denied(Refusal::ReadOnly);
        for path in ["d/../ro/f", "l/f", "l/new", "dangling"] {
            let abs = b(&w.join(path));
            let wr = libc::O_WRONLY | libc::O_CREAT;
            assert_eq!(p.open(&abs, wr, 0o644).unwrap_err(), ro_only, "{path}");
            assert_eq!(p.reach_for_change(&abs, true).unwrap_err(), ro_only, "{path}");
        }
        assert_eq!(p.parent(&b(&w.join("l/f")), true).unwrap_err(), ro_only);
        // The tree root, however spelled, is never removed or renamed.
        let root = PathError::Denied(Refusal::TreeItself);
        assert_eq!(p.parent(&b(&w.join("d/../ro")), true).unwrap_err(), root);
        // Reading through the link, and writing W itself, stay fine; a
        // descriptor opened for reading through `l` needs a look later.
        let o = p.open(&b(&w.join("l/f")), libc::O_RDONLY, 0).unwrap();
        assert_eq!(o.change, None);
        let st = fstat(o.fd.as_raw_fd()).unwrap();
        assert_eq!(p.fd_changeable(&b(&w.join("l/f")), &st).unwrap_err(), ro_only);
        assert!(p.open(&b(&w.join("mine")), libc::O_WRONLY, 0).is_ok());
        assert_eq!(spelled_parent(b"/a/b/"), b"/a");
        assert_eq!(spelled_parent(b"/a"), b"/");
    }

    #[test]
    fn file_grant_is_that_object_only() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path().canonicalize().unwrap();
        std::fs::create_dir(w.join("sub")).unwrap();
        std::fs::write(w.join("f"), b"granted").unwrap();
        std::fs::write(w.join("sib"), b"secret").unwrap();
        std::fs::write(w.join("sub/x"), b"secret").unwrap();
        std::fs::write(w.join("g"), b"writable").unwrap();
        let f = w.join("f");
        let p = policy(std::slice::from_ref(&f), &[w.join("g")]);
        let outside = PathError::Denied(Refusal::Outside);
        let ro = PathError::Denied(Refusal::ReadOnly);
        // The file reads; its sibling, its directory and `..` from it do not.
        assert!(p.open(&b(&f), libc::O_RDONLY, 0).is_ok());
        assert_eq!(p.open(&b(&w.join("sib")), libc::O_RDONLY, 0).unwrap_err(), outside);
        assert_eq!(p.open(&b(&w), libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap_err(), outside);
        for path in ["f/.", "f/./", "f/./."] {
            let e = p.open(&[b(&w), b"/".to_vec(), path.as_bytes().to_vec()].concat(), libc::O_RDONLY, 0);
            assert_eq!(e.unwrap_err(), PathError::Errno(libc::ENOTDIR), "{path}");
        }
        for path in ["f/..", "f/../sib", "f/../sub/x", "sub/../f/.."] {
            let abs = b(&w.join(path));
            assert!(p.open(&abs, libc::O_RDONLY, 0).is_err(), "{path}");
            assert!(p.open(&abs, libc::O_PATH, 0).is_err(), "{path}");
            assert!(p.inspect(&abs, true).is_err() || path == "f/..", "{path}");
        }
        assert_eq!(p.open(&b(&w.join("sub/../f")), libc::O_RDONLY, 0).unwrap_err(), outside);
        assert_eq!(
            p.open(&[b(&f), b"/".to_vec()].concat(), libc::O_RDONLY, 0).unwrap_err(),
            PathError::Errno(libc::ENOTDIR)
        );
        // Read-only: no write, no truncate, no change, no name operation.
        assert_eq!(p.open(&b(&f), libc::O_WRONLY, 0).unwrap_err(), ro);
        assert_eq!(p.open(&b(&f), libc::O_RDONLY | libc::O_TRUNC, 0).unwrap_err(), ro);
        assert_eq!(p.reach_for_change(&b(&f), true).unwrap_err(), ro);
        assert_eq!(p.parent(&b(&f), true).unwrap_err(), outside);
        // O_PATH opens the object and nothing more; O_DIRECTORY is ENOTDIR.
        let o = p.open(&b(&f), libc::O_PATH, 0).unwrap();
        assert_eq!(o.change, Some(false));
        let e = p.open(&b(&f), libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap_err();
        assert_eq!(e, PathError::Errno(libc::ENOTDIR));
        // The write grant writes and truncates the object, never creates or
        // removes a name.
        let g = b(&w.join("g"));
        assert!(p.open(&g, libc::O_WRONLY | libc::O_TRUNC, 0).is_ok());
        assert!(p.open(&g, libc::O_WRONLY | libc::O_CREAT, 0o644).is_ok());
        let e = p.open(&g, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644).unwrap_err();
        assert_eq!(e, PathError::Errno(libc::EEXIST));
        assert_eq!(p.parent(&g, true).unwrap_err(), outside);
        let o = p.reach_for_change(&g, true).unwrap();
        assert!(o.parent.is_none());
        let new = b(&w.join("new"));
        assert_eq!(p.open(&new, libc::O_WRONLY | libc::O_CREAT, 0o644).unwrap_err(), outside);
        // The directory above is looked at (stat) like a tree's ancestors.
        assert!(p.inspect(&b(&w), true).is_ok());
        assert!(p.is_ancestor(&b(&w)));
    }

    #[test]
    fn file_grant_follows_the_object_not_the_name() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path().canonicalize().unwrap();
        std::fs::write(w.join("f"), b"granted").unwrap();
        std::fs::write(w.join("sib"), b"secret").unwrap();
        let f = w.join("f");
        let p = policy(std::slice::from_ref(&f), &[]);
        let replaced = PathError::Denied(Refusal::Replaced);
        // A hard link elsewhere is the same object, but not a granted name.
        std::fs::hard_link(&f, w.join("hl")).unwrap();
        let outside = PathError::Denied(Refusal::Outside);
        assert_eq!(p.open(&b(&w.join("hl")), libc::O_RDONLY, 0).unwrap_err(), outside);
        // Swap the name for a symlink to the sibling after start.
        std::fs::rename(&f, w.join("old")).unwrap();
        symlink("sib", &f).unwrap();
        assert_eq!(p.open(&b(&f), libc::O_RDONLY, 0).unwrap_err(), replaced);
        assert_eq!(p.open(&b(&f), libc::O_PATH, 0).unwrap_err(), replaced);
        assert_eq!(p.inspect(&b(&f), false).unwrap_err(), replaced);
        // Swap it for another regular file.
        std::fs::remove_file(&f).unwrap();
        std::fs::hard_link(w.join("sib"), &f).unwrap();
        assert_eq!(p.open(&b(&f), libc::O_RDONLY, 0).unwrap_err(), replaced);
        // Gone: what the program would see natively.
        std::fs::remove_file(&f).unwrap();
        assert_eq!(p.open(&b(&f), libc::O_RDONLY, 0).unwrap_err(), PathError::Errno(libc::ENOENT));
        // Put back: the granted object again.
        std::fs::rename(w.join("old"), &f).unwrap();
        assert!(p.open(&b(&f), libc::O_RDONLY, 0).is_ok());
    }

    #[test]
    fn file_grant_given_as_a_symlink_is_its_target_once() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path().canonicalize().unwrap();
        std::fs::write(w.join("f"), b"granted").unwrap();
        symlink("f", w.join("l")).unwrap();
        std::fs::write(w.join("g"), b"other").unwrap();
        let p = policy(&[w.join("l")], &[]);
        assert!(p.open(&b(&w.join("f")), libc::O_RDONLY, 0).is_ok());
        // The name it was given reaches the same object (glibc's popen
        // execs /bin/sh, a link to dash), never by resolving the link
        // again: a link pointed elsewhere after start still gives `f`.
        let read = |path: &std::path::Path| {
            let o = p.open(&b(path), libc::O_RDONLY, 0).expect("open");
            let mut buf = [0u8; 16];
            // SAFETY: reads at most 16 bytes into `buf`.
            let n = unsafe { libc::read(o.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            buf[..n.max(0) as usize].to_vec()
        };
        assert_eq!(read(&w.join("l")), b"granted");
        std::fs::remove_file(w.join("l")).unwrap();
        symlink("g", w.join("l")).unwrap();
        assert_eq!(read(&w.join("l")), b"granted", "the object recorded at start");
        let outside = PathError::Denied(Refusal::Outside);
        assert_eq!(p.open(&b(&w.join("g")), libc::O_RDONLY, 0).unwrap_err(), outside);
        // A spelling with `..` is no second name.
        std::fs::create_dir(w.join("x")).unwrap();
        let p = policy(&[w.join("x/../l")], &[]);
        assert_eq!(p.open(&b(&w.join("x/../l")), libc::O_RDONLY, 0).unwrap_err(), outside);
    }

    #[test]
    fn the_image_cache_is_hidden_inside_a_tree() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path().canonicalize().unwrap();
        let cache = w.join("xdg/cabin/images");
        let mut p = FsPolicy::new(&[], std::slice::from_ref(&w)).unwrap();
        p.set_image_cache(Some(cache.clone()));
        p.hide_image_cache();
        assert!(cache.is_dir(), "made before the program runs");
        std::fs::write(cache.join("e.cabin"), b"entry").unwrap();
        let refused = PathError::Denied(Refusal::ImageCache);
        // Spelled into it (an entry that exists and one that does not),
        // by its parent, by a symlink: the cache's refusal, never
        // "outside" (whose hint would suggest a grant that cannot help).
        for path in ["xdg/cabin/images/e.cabin", "xdg/cabin/images/none", "xdg/cabin/images"] {
            assert_eq!(p.open(&b(&w.join(path)), libc::O_RDONLY, 0).unwrap_err(), refused, "{path}");
            assert_eq!(p.inspect(&b(&w.join(path)), true).unwrap_err(), refused, "{path}");
        }
        symlink("xdg/cabin/images", w.join("l")).unwrap();
        for path in ["l/e.cabin", "l/none"] {
            assert_eq!(p.open(&b(&w.join(path)), libc::O_RDONLY, 0).unwrap_err(), refused, "{path}");
        }
        assert_eq!(
            p.parent(&b(&w.join("xdg/cabin")), true).unwrap_err(),
            refused,
            "its parent keeps its name"
        );
        assert!(p.open(&b(&w.join("xdg/cabin")), libc::O_RDONLY | libc::O_DIRECTORY, 0).is_ok());
    }

    #[test]
    fn proc_serves_only_system_wide_files() {
        let p = policy(&[PathBuf::from("/proc")], &[]);
        let refused = PathError::Denied(Refusal::Proc);
        for path in ["/proc/self/status", "/proc/thread-self/environ", "/proc/1/status"] {
            assert_eq!(p.open(path.as_bytes(), libc::O_RDONLY, 0).unwrap_err(), refused, "{path}");
        }
        let me = format!("/proc/{}/environ", std::process::id());
        assert_eq!(p.open(me.as_bytes(), libc::O_RDONLY, 0).unwrap_err(), refused);
        assert_eq!(p.inspect(b"/proc/self", false).unwrap_err(), refused);
        assert!(p.open(b"/proc/cpuinfo", libc::O_RDONLY, 0).is_ok());
        assert!(p.inspect(b"/proc", true).is_ok());
        // Writable /proc is still not writable.
        let p = policy(&[], &[PathBuf::from("/proc")]);
        let e = p.open(b"/proc/sys/kernel/hostname", libc::O_WRONLY, 0).unwrap_err();
        assert_eq!(e, PathError::Denied(Refusal::Pseudo));
    }

    #[test]
    fn devices_are_refused_unless_safe_and_never_opened() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            cabin_tests::not_run("root", "mknod needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let w = t.path().canonicalize().unwrap();
        let node = |name: &str, kind: libc::mode_t, ma: u32, mi: u32| {
            let c = CString::new(b(&w.join(name))).unwrap();
            // SAFETY: mknod reads the path.
            assert_eq!(unsafe { libc::mknod(c.as_ptr(), kind | 0o666, libc::makedev(ma, mi)) }, 0);
        };
        node("mem", libc::S_IFCHR, 1, 1);
        node("null", libc::S_IFCHR, 1, 3);
        node("blk", libc::S_IFBLK, 7, 0);
        let p = policy(&[], std::slice::from_ref(&w));
        let dev = PathError::Denied(Refusal::Device);
        assert_eq!(p.open(&b(&w.join("mem")), libc::O_RDONLY, 0).unwrap_err(), dev);
        assert_eq!(p.open(&b(&w.join("blk")), libc::O_RDONLY, 0).unwrap_err(), dev);
        assert_eq!(p.open(&b(&w.join("mem")), libc::O_WRONLY, 0).unwrap_err(), dev);
        assert!(p.inspect(&b(&w.join("mem")), true).is_ok(), "looking is fine");
        assert!(p.open(&b(&w.join("null")), libc::O_RDWR, 0).is_ok());
    }

    /// An inotify watch for opens of one object (it follows the inode
    /// across renames); `opened` says whether one happened since.
    struct OpenWatch(OwnedFd);

    impl OpenWatch {
        fn new(p: &std::path::Path) -> OpenWatch {
            // SAFETY: a new inotify descriptor.
            let fd = owned(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) }).unwrap();
            let c = CString::new(b(p)).unwrap();
            // SAFETY: reads the path.
            let w = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), libc::IN_OPEN) };
            assert!(w >= 0, "inotify_add_watch {}", std::io::Error::last_os_error());
            OpenWatch(fd)
        }

        fn opened(&self) -> bool {
            let mut buf = [0u8; 4096];
            // SAFETY: reads into our buffer.
            unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) > 0 }
        }
    }

    /// `mknod` of a device with these numbers (root only).
    fn mknod(p: &std::path::Path, kind: libc::mode_t, ma: u32, mi: u32) {
        let c = CString::new(b(p)).unwrap();
        // SAFETY: mknod reads the path.
        let r = unsafe { libc::mknod(c.as_ptr(), kind | 0o666, libc::makedev(ma, mi)) };
        assert_eq!(r, 0, "mknod {}", std::io::Error::last_os_error());
    }

    /// A character device outside the safe list whose open succeeds (so
    /// an inotify watch would see it) and has no effect: `/dev/kvm`'s
    /// numbers where it exists, else `/dev/kmsg`'s.
    fn harmless_device() -> (u32, u32) {
        if std::path::Path::new("/dev/kvm").exists() {
            (10, 232)
        } else {
            (1, 11)
        }
    }

    fn kernel_guard(p: &FsPolicy) -> bool {
        p.dirs.iter().all(|d| matches!(d.guard, DeviceGuard::Kernel(..)))
    }

    #[test]
    fn a_nodev_clone_sees_later_files_and_refuses_devices() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            cabin_tests::not_run("root", "mknod needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let w = t.path().canonicalize().unwrap();
        std::fs::write(w.join("f"), b"f").unwrap();
        mknod(&w.join("null"), libc::S_IFCHR, 1, 3);
        let dir = openat(libc::AT_FDCWD, &CString::new(b(&w)).unwrap(), libc::O_PATH, 0).unwrap();
        let here = nodev_clone(dir.as_raw_fd(), c"", libc::AT_EMPTY_PATH).expect("clone as root");
        // The way a monitor without CAP_SYS_ADMIN makes it.
        let path = CString::new(b(&w)).unwrap();
        let job = |_| nodev_clone(libc::AT_FDCWD, &path, 0);
        let in_ns = in_userns(1, &job).pop().unwrap();
        let in_ns = match in_ns {
            Ok(fd) => Some(fd),
            Err(e) => {
                cabin_tests::not_run("user namespace", &format!("the clone in a user namespace: {e}"));
                None
            }
        };
        for clone in std::iter::once(&here).chain(in_ns.as_ref()) {
            let resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
            let open = |name: &str| {
                openat2(clone.as_raw_fd(), &CString::new(name).unwrap(), libc::O_RDONLY, 0, resolve)
            };
            assert!(open("f").is_ok());
            // Written after the clone was made: the same files.
            std::fs::write(w.join("later"), b"later").unwrap();
            let mut s = String::new();
            use std::io::Read;
            std::fs::File::from(open("later").unwrap()).read_to_string(&mut s).unwrap();
            assert_eq!(s, "later");
            std::fs::remove_file(w.join("later")).unwrap();
            assert_eq!(open("later").unwrap_err(), libc::ENOENT);
            assert_eq!(open("null").unwrap_err(), libc::EACCES, "nodev refuses even a safe device");
            assert_eq!(open("../f").unwrap_err(), libc::EXDEV);
        }
        // The policy uses it, and a safe device still opens (the probe).
        let p = policy(&[], std::slice::from_ref(&w));
        assert!(kernel_guard(&p), "{:?}", p.guards());
        assert!(p.open(&b(&w.join("null")), libc::O_RDONLY, 0).is_ok());
    }

    #[test]
    fn devices_are_never_opened_by_any_spelling() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            cabin_tests::not_run("root", "mknod needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let w = t.path().canonicalize().unwrap();
        std::fs::create_dir(w.join("sub")).unwrap();
        let (ma, mi) = harmless_device();
        mknod(&w.join("chr"), libc::S_IFCHR, ma, mi);
        mknod(&w.join("blk"), libc::S_IFBLK, 7, 0);
        symlink("chr", w.join("rel")).unwrap();
        symlink("../blk", w.join("sub/up")).unwrap();
        symlink(w.join("chr"), w.join("abs")).unwrap();
        symlink("/dev/zero", w.join("host")).unwrap();
        let watches = [OpenWatch::new(&w.join("chr")), OpenWatch::new(&w.join("blk"))];
        let dev = PathError::Denied(Refusal::Device);
        let escape = PathError::Denied(Refusal::Escape);
        let wd = String::from_utf8(b(&w)).unwrap();
        let cases: Vec<(String, PathError)> = vec![
            (format!("{wd}/chr"), dev),
            (format!("{wd}/blk"), dev),
            (format!("{wd}/./chr"), dev),
            (format!("{wd}//chr"), dev),
            (format!("{wd}/sub/../chr"), dev),
            (format!("{wd}/sub/../sub/../blk"), dev),
            (format!("{wd}/rel"), dev),
            (format!("{wd}/sub/up"), dev),
            (format!("{wd}/abs"), escape),
            (format!("{wd}/host"), escape),
            (format!("{wd}/sub/../../{}/chr", w.file_name().unwrap().to_str().unwrap()), escape),
        ];
        for (trees, write) in [(vec![w.clone()], false), (vec![w.clone()], true)] {
            let p = if write { policy(&[], &trees) } else { policy(&trees, &[]) };
            assert!(kernel_guard(&p), "{:?}", p.guards());
            for (path, want) in &cases {
                for flags in [
                    libc::O_RDONLY,
                    libc::O_RDONLY | libc::O_NONBLOCK,
                    libc::O_RDONLY | libc::O_NOCTTY,
                    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE,
                    libc::O_WRONLY,
                    libc::O_RDWR | libc::O_APPEND,
                ] {
                    let got = p.open(path.as_bytes(), flags, 0);
                    let want = if write || flags & libc::O_ACCMODE == libc::O_RDONLY {
                        *want
                    } else {
                        PathError::Denied(Refusal::ReadOnly)
                    };
                    assert_eq!(got.unwrap_err(), want, "{path} flags {flags:#o} write {write}");
                }
            }
        }
        assert!(!watches.iter().any(OpenWatch::opened), "a device node was OPENED");
    }

    #[test]
    fn a_device_swapped_in_by_rename_is_never_opened() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            cabin_tests::not_run("root", "mknod needs root");
            return;
        }
        // A racing thread swaps (RENAME_EXCHANGE) a plain file with a
        // device node, then with a symbolic link to it, while opens of the
        // file's name run in a loop: each gives the file or a refusal, and
        // the node is never opened.
        let t = tempfile::tempdir().unwrap();
        let w = t.path().canonicalize().unwrap();
        std::fs::write(w.join("f"), b"GOOD").unwrap();
        let (ma, mi) = harmless_device();
        mknod(&w.join("d"), libc::S_IFCHR, ma, mi);
        symlink("d", w.join("l")).unwrap();
        let watch = OpenWatch::new(&w.join("d"));
        let p = policy(std::slice::from_ref(&w), &[]);
        assert!(kernel_guard(&p), "{:?}", p.guards());
        for other in ["d", "l"] {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let swaps = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let swapper = {
                let (x, y) = (w.join("f"), w.join(other));
                let (stop, swaps) = (stop.clone(), swaps.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        exchange(&x, &y);
                        swaps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            };
            let (mut good, mut refused, mut n) = (0u64, 0u64, 0u64);
            while swaps.load(std::sync::atomic::Ordering::Relaxed) < 20_000 || n < 20_000 {
                n += 1;
                match p.open(&b(&w.join("f")), libc::O_RDONLY, 0) {
                    Ok(o) => {
                        assert_eq!(read_all(o), "GOOD");
                        good += 1;
                    }
                    Err(PathError::Denied(Refusal::Device)) => refused += 1,
                    Err(e) => panic!("{other}: {e:?}"),
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            swapper.join().unwrap();
            assert_eq!(good + refused, n);
            assert!(
                good > 0 && refused > 0,
                "{other}: the race did not race ({good} good, {refused} refused)"
            );
            // Put the plain file back under its name for the next round.
            // (Looked at, never read: reading would open the node.)
            if !std::fs::symlink_metadata(w.join("f")).is_ok_and(|m| m.file_type().is_file()) {
                exchange(&w.join("f"), &w.join(other));
            }
        }
        assert!(!watch.opened(), "the device node was OPENED");
    }

    #[test]
    fn a_fifo_opens_through_the_nodev_clone() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path().canonicalize().unwrap();
        let c = CString::new(b(&w.join("fifo"))).unwrap();
        // SAFETY: mkfifo reads the path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let p = policy(std::slice::from_ref(&w), &[]);
        // Non-blocking: opens at once, no writer needed.
        assert!(p.open(&b(&w.join("fifo")), libc::O_RDONLY | libc::O_NONBLOCK, 0).is_ok());
        // Blocking: waits for the writer, as natively.
        let writer = {
            let path = w.join("fifo");
            std::thread::spawn(move || std::fs::write(path, b"through the fifo").unwrap())
        };
        let o = p.open(&b(&w.join("fifo")), libc::O_RDONLY, 0).unwrap();
        assert_eq!(read_all(o), "through the fifo");
        writer.join().unwrap();
    }

    #[test]
    fn path_helpers() {
        assert_eq!(components(b"//a/./b/"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(join(b"/x", b"y"), b"/x/y");
        assert_eq!(join(b"/x/", b"/y"), b"/y");
        assert_eq!(normalize(b"/a/b/../c/./"), b"/a/c");
        assert_eq!(normalize(b"/.."), b"/");
    }

    /// The components of `p` spelled from `parts` joined by `/`, over every
    /// short spelling of a few names, `.`, `..` and empty components.
    fn spellings() -> Vec<Vec<u8>> {
        let parts: [&[u8]; 6] = [b"", b".", b"..", b"a", b"bc", b"a.."];
        let mut out = vec![b"/".to_vec()];
        let mut level: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for p in &level {
                for part in parts {
                    let mut q = p.clone();
                    q.push(b'/');
                    q.extend_from_slice(part);
                    out.push(q.clone());
                    next.push(q);
                }
            }
            level = next;
        }
        out
    }

    #[test]
    fn normalize_and_components_match_their_definitions() {
        // The definitions the one-buffer versions replaced: a stack of
        // components that `..` pops, and one allocation per component.
        fn by_stack(abs: &[u8]) -> Vec<u8> {
            let mut out: Vec<&[u8]> = Vec::new();
            for c in abs.split(|&b| b == b'/') {
                match c {
                    b"" | b"." => {}
                    b".." => {
                        out.pop();
                    }
                    c => out.push(c),
                }
            }
            let v: Vec<u8> = out.iter().flat_map(|c| [b"/".as_slice(), c].concat()).collect();
            if v.is_empty() {
                b"/".to_vec()
            } else {
                v
            }
        }
        let all = spellings();
        assert!(all.len() > 1500, "{} spellings", all.len());
        for p in &all {
            assert_eq!(normalize(p), by_stack(p), "normalize({})", String::from_utf8_lossy(p));
            let owned: Vec<Vec<u8>> =
                p.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").map(|c| c.to_vec()).collect();
            assert_eq!(components(p), owned);
            assert_eq!(component_slices(p), owned.iter().map(|c| c.as_slice()).collect::<Vec<_>>());
            for n in 0..=owned.len() {
                assert!(starts_with(&component_slices(p), &owned[..n]));
            }
            let mut longer = owned.clone();
            longer.push(b"x".to_vec());
            assert!(!starts_with(&component_slices(p), &longer));
        }
    }

    #[test]
    fn inside_is_allowed_outside_is_not() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let allowed = root.join("in");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(allowed.join("f"), b"ok").unwrap();
        std::fs::write(root.join("secret"), b"no").unwrap();
        let p = policy(std::slice::from_ref(&allowed), &[]);
        assert!(p.open(&b(&allowed.join("f")), libc::O_RDONLY, 0).is_ok());
        assert!(p.open(&b(&allowed.join("./f")), libc::O_RDONLY, 0).is_ok());
        assert_eq!(
            p.open(&b(&root.join("secret")), libc::O_RDONLY, 0).unwrap_err(),
            PathError::Denied(Refusal::Outside)
        );
        // `..` out of the allowed dir.
        let dotdot = [b(&allowed), b"/../secret".to_vec()].concat();
        assert_eq!(p.open(&dotdot, libc::O_RDONLY, 0).unwrap_err(), PathError::Denied(Refusal::Escape));
        // Read-only dir refuses writes and creation.
        assert_eq!(
            p.open(&b(&allowed.join("f")), libc::O_WRONLY, 0).unwrap_err(),
            PathError::Denied(Refusal::ReadOnly)
        );
        assert_eq!(
            p.open(&b(&allowed.join("new")), libc::O_CREAT | libc::O_RDONLY, 0o644).unwrap_err(),
            PathError::Denied(Refusal::ReadOnly)
        );
        assert_eq!(p.parent(&b(&allowed.join("f")), true).unwrap_err(), PathError::Denied(Refusal::ReadOnly));
    }

    #[test]
    fn symlinks_cannot_escape() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let allowed = root.join("in");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(root.join("secret"), b"no").unwrap();
        symlink(root.join("secret"), allowed.join("abs")).unwrap();
        symlink("../secret", allowed.join("rel")).unwrap();
        symlink("/proc/self/root/etc/passwd", allowed.join("proc")).unwrap();
        std::fs::write(allowed.join("target"), b"fine").unwrap();
        symlink("target", allowed.join("good")).unwrap();
        let p = policy(std::slice::from_ref(&allowed), &[]);
        for name in ["abs", "rel", "proc"] {
            assert_eq!(
                p.open(&b(&allowed.join(name)), libc::O_RDONLY, 0).unwrap_err(),
                PathError::Denied(Refusal::Escape),
                "{name}"
            );
        }
        assert!(p.open(&b(&allowed.join("good")), libc::O_RDONLY, 0).is_ok());
    }

    #[test]
    fn proc_self_root_is_refused_even_when_proc_is_allowed() {
        let p = policy(&[PathBuf::from("/proc")], &[]);
        let e = p.open(b"/proc/self/root/etc/passwd", libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e, PathError::Denied(Refusal::MagicLink));
        let e = p.open(b"/proc/self/fd/0", libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e, PathError::Denied(Refusal::MagicLink));
        assert_eq!(
            p.open(b"/etc/passwd", libc::O_RDONLY, 0).unwrap_err(),
            PathError::Denied(Refusal::Outside)
        );
    }

    #[test]
    fn symlink_swap_race_never_escapes() {
        // One thread flips a link between a good target and an escaping one
        // while another opens through it: every open must either read the
        // good file or be refused.
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let allowed = root.join("in");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(root.join("secret"), b"SECRET").unwrap();
        std::fs::write(allowed.join("good"), b"good").unwrap();
        let link = allowed.join("link");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = {
            let (allowed, root, stop) = (allowed.clone(), root.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let tmp = allowed.join(format!("tmp{}", i % 2));
                    let _ = std::fs::remove_file(&tmp);
                    if i.is_multiple_of(2) {
                        symlink("good", &tmp).unwrap();
                    } else {
                        symlink(root.join("secret"), &tmp).unwrap();
                    }
                    std::fs::rename(&tmp, allowed.join("link")).unwrap();
                    i += 1;
                }
            })
        };
        let p = policy(std::slice::from_ref(&allowed), &[]);
        let (mut good, mut refused) = (0, 0);
        for _ in 0..3000 {
            match p.open(&b(&link), libc::O_RDONLY, 0) {
                Ok(fd) => {
                    let mut f = std::fs::File::from(fd.fd);
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut f, &mut s).unwrap();
                    assert_eq!(s, "good");
                    good += 1;
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flipper.join().unwrap();
        assert!(good + refused == 3000);
    }

    /// What `look` must answer: `inspect`'s stat (or error), compared by
    /// identity.
    fn looked(p: &FsPolicy, abs: &[u8], follow: bool) -> Result<(u64, u64, u32), PathError> {
        p.look(abs, follow).map(|st| (st.st_dev, st.st_ino, st.st_mode))
    }

    #[test]
    fn look_answers_as_inspect_does() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let allowed = root.join("in");
        std::fs::create_dir_all(allowed.join("d")).unwrap();
        std::fs::write(root.join("secret"), b"SECRET").unwrap();
        std::fs::write(allowed.join("f"), b"f").unwrap();
        symlink("f", allowed.join("good")).unwrap();
        symlink(root.join("secret"), allowed.join("abs")).unwrap();
        symlink("../secret", allowed.join("up")).unwrap();
        symlink("/proc/self/root", allowed.join("magic")).unwrap();
        let p = policy(std::slice::from_ref(&allowed), &[]);
        let names = ["f", "d", "good", "abs", "up", "magic", "missing", "f/", "d/", ".", "d/../f", "f/x"];
        for name in names {
            let abs = [b(&allowed), b"/".to_vec(), name.as_bytes().to_vec()].concat();
            for follow in [true, false] {
                let want = p.inspect(&abs, follow).map(|(_, st)| (st.st_dev, st.st_ino, st.st_mode));
                assert_eq!(looked(&p, &abs, follow), want, "{name} follow {follow}");
                if let Some(r) = p.statx_in_root(&abs, follow, 0, libc::STATX_BASIC_STATS) {
                    let got = r.map(|x| {
                        (libc::makedev(x.stx_dev_major, x.stx_dev_minor), x.stx_ino, x.stx_mode as u32)
                    });
                    assert_eq!(got, want, "statx {name} follow {follow}");
                }
            }
        }
        // statx of a plain name in the root is the one-call look.
        let f = b(&allowed.join("f"));
        assert!(p.statx_in_root(&f, true, 0, libc::STATX_BASIC_STATS).is_some_and(|r| r.is_ok()));
        let missing = b(&allowed.join("missing"));
        let r = p.statx_in_root(&missing, true, 0, libc::STATX_BASIC_STATS);
        assert_eq!(r.map(|r| r.err()), Some(Some(PathError::Errno(libc::ENOENT))));
        // The escaping links are refused when followed, looked at when not.
        let abs = b(&allowed.join("abs"));
        assert!(matches!(p.look(&abs, true), Err(PathError::Denied(_))));
        assert!(is(&p.look(&abs, false).unwrap(), libc::S_IFLNK));
        assert!(matches!(p.look(&b(&allowed.join("up")), true), Err(PathError::Denied(_))));
        assert_eq!(p.look(&b(&allowed.join("missing")), true).unwrap_err(), PathError::Errno(libc::ENOENT));
        // A tree on a pseudo file system takes the general path: /proc/self
        // right below /proc is still refused.
        let pp = policy(&[PathBuf::from("/proc")], &[]);
        assert_eq!(pp.look(b"/proc/self", false).unwrap_err(), PathError::Denied(Refusal::Proc));
        assert!(pp.look(b"/proc/cpuinfo", true).is_ok());
    }

    #[test]
    fn a_directory_moved_out_between_two_calls_is_not_reached() {
        // Between two calls, the directory `in/d` that the first call went
        // through is renamed out of the tree (or swapped for a symbolic link
        // to where it went) and a secret is put into it there: the second
        // call must not reach it, whatever the first one resolved or opened
        // (what a cache of resolved directories would have to get right).
        // Then the same with the moves racing the calls.
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let allowed = root.join("in");
        let out = root.join("out");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::create_dir(&out).unwrap();
        let p = policy(std::slice::from_ref(&allowed), &[]);
        let (d, moved) = (allowed.join("d"), out.join("d"));
        let (secret, file) = (b(&d.join("secret")), b(&d.join("f")));
        let read_only = libc::O_RDONLY;
        for round in 0..200 {
            let link = round % 2 == 1;
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("f"), b"inside").unwrap();
            assert_eq!(read_all(p.open(&file, read_only, 0).unwrap()), "inside");
            assert!(p.look(&file, true).is_ok());
            std::fs::rename(&d, &moved).unwrap();
            std::fs::write(moved.join("secret"), b"SECRET").unwrap();
            if link {
                symlink(&moved, &d).unwrap();
            }
            for follow in [true, false] {
                let st = p.look(&secret, follow);
                assert!(st.is_err(), "round {round}: stat reached the moved directory: {st:?}");
            }
            match p.open(&secret, read_only, 0) {
                Err(PathError::Errno(libc::ENOENT)) if !link => {}
                Err(PathError::Denied(Refusal::Escape)) if link => {}
                Err(e) => panic!("round {round}: {e:?}"),
                Ok(o) => panic!("round {round}: opened the moved directory's {:?}", read_all(o)),
            }
            if link {
                std::fs::remove_file(&d).unwrap();
            }
            std::fs::remove_dir_all(&moved).unwrap();
        }
        // Racing: a thread moves `in/d` out and back (and swaps a symlink to
        // `out/d` in) while the calls run; the secret lives only in `out/d`,
        // whose name in the tree is never its own.
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("f"), b"inside").unwrap();
        std::fs::create_dir(&moved).unwrap();
        std::fs::write(moved.join("secret"), b"SECRET").unwrap();
        std::fs::write(moved.join("f"), b"SECRET").unwrap();
        let spare = allowed.join("spare");
        symlink(&moved, &spare).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mover = {
            let (d, spare, stop) = (d.clone(), spare.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // The directory and the symlink to out/d trade names.
                    exchange(&d, &spare);
                    n += 1;
                }
                n
            })
        };
        let (mut reached, mut refused) = (0, 0);
        for _ in 0..20_000 {
            match p.open(&file, read_only, 0) {
                Ok(o) => {
                    assert_eq!(read_all(o), "inside", "escaped through a swapped directory");
                    reached += 1;
                }
                Err(PathError::Denied(Refusal::Escape) | PathError::Errno(libc::ENOENT)) => refused += 1,
                Err(e) => panic!("{e:?}"),
            }
            if let Ok(st) = p.look(&secret, true) {
                panic!("stat reached out/d/secret: ino {}", st.st_ino);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let swaps = mover.join().unwrap();
        assert!(swaps > 100, "{swaps} swaps");
        assert_eq!(reached + refused, 20_000);
    }

    #[test]
    fn look_race_with_an_exchanged_name_never_escapes() {
        // A racing process swaps (RENAME_EXCHANGE) a plain file in the tree's
        // root with a symbolic link that points out: a followed look answers
        // the file's stat or a refusal, never the outside file's.
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let allowed = root.join("in");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(root.join("secret"), b"SECRET").unwrap();
        std::fs::write(allowed.join("x"), b"x").unwrap();
        symlink(root.join("secret"), allowed.join("y")).unwrap();
        let secret = std::fs::metadata(root.join("secret")).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (x, y) = (allowed.join("x"), allowed.join("y"));
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    exchange(&x, &y);
                }
            })
        };
        let p = policy(std::slice::from_ref(&allowed), &[]);
        let (mut file, mut refused) = (0, 0);
        for _ in 0..20_000 {
            match p.look(&b(&allowed.join("x")), true) {
                Ok(st) => {
                    use std::os::unix::fs::MetadataExt;
                    assert_ne!((st.st_dev, st.st_ino), (secret.dev(), secret.ino()), "escaped");
                    assert!(is(&st, libc::S_IFREG));
                    file += 1;
                }
                Err(PathError::Denied(_)) => refused += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert_eq!(file + refused, 20_000);
    }

    #[test]
    fn a_real_symlink_loop_is_eloop_not_a_refusal() {
        let t = tempfile::tempdir().unwrap();
        let allowed = t.path().canonicalize().unwrap();
        symlink("b", allowed.join("a")).unwrap();
        symlink("a", allowed.join("b")).unwrap();
        let p = policy(std::slice::from_ref(&allowed), &[]);
        assert_eq!(
            p.open(&b(&allowed.join("a")), libc::O_RDONLY, 0).unwrap_err(),
            PathError::Errno(libc::ELOOP)
        );
        std::fs::write(allowed.join("f"), b"x").unwrap();
        symlink("f", allowed.join("l")).unwrap();
        let nofollow = libc::O_RDONLY | libc::O_NOFOLLOW;
        assert_eq!(p.open(&b(&allowed.join("l")), nofollow, 0).unwrap_err(), PathError::Errno(libc::ELOOP));
    }

    #[test]
    fn parent_operations() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        let w = root.join("w");
        std::fs::create_dir(&w).unwrap();
        let p = policy(&[], std::slice::from_ref(&w));
        let (fd, name) = p.parent(&b(&w.join("x")), true).unwrap();
        assert_eq!(name.as_bytes(), b"x");
        drop(fd);
        // The allowed dir itself cannot be named through its parent.
        assert_eq!(p.parent(&b(&w), true).unwrap_err(), PathError::Denied(Refusal::TreeItself));
        assert!(p.parent(&b(&w.join("..")), true).is_err());
        assert!(p.writable(&b(&w.join("x"))));
        // Ancestors can be stat'ed, but nothing else.
        assert!(p.inspect(b"/", true).is_ok());
        assert!(p.is_ancestor(b"/") && p.is_ancestor(&b(&root)));
        assert!(p.inspect(&b(&root), true).is_ok());
        assert!(!p.is_ancestor(&b(&w)), "the dir itself is not an ancestor");
        assert!(p.inspect(b"/etc", true).is_err() || root.starts_with("/etc"));
        assert!(p.inspect(&[b(&root), b"/../..".to_vec()].concat(), true).is_err());
    }
}
