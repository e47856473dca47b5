//! Filesystem policy: which host paths the program may reach, and how a
//! program path becomes a host file descriptor without escaping.
//!
//! The program sees host paths under their own names, but only inside the
//! directories named by `--allow-read` / `--allow-write`. A program path is
//! made absolute (against the virtual cwd or a directory fd's path), `""`
//! and `.` components are dropped (always no-ops), and the longest allowed
//! directory that is a component-wise prefix is chosen. The rest is opened
//! with `openat2(dirfd_of_allowed_dir, rest, RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)`: the kernel resolves every component, refuses
//! `..` that would leave the directory, absolute symlinks, symlinks that
//! point out, and `/proc/.../root`-style magic links — atomically, so a
//! symlink swapped during the call cannot win a race.
//!
//! Operations that do not open (stat, unlink, mkdir, rename, readlink, ...)
//! first open either the target with `O_PATH` or the *parent* directory
//! with `O_PATH | O_DIRECTORY` the same way, then act on a single final
//! component relative to that fd (which the kernel never resolves through a
//! symlink for unlink/mkdir/rename), so they are as confined as `open`.
//!
//! A refusal is a [`PathError::Denied`] with its [`Refusal`] (outside the
//! trees, a change under a read-only tree, resolution escaping by `..` or a
//! symlink, a magic link, the tree itself); the service turns it into
//! `EACCES` and a note that the gate records as a `denied` syscall record
//! with a `[paths]` rule (and so one audit record per refused call). What
//! the kernel answers natively (`ENOENT`, `ELOOP` of a real loop,
//! `ENOTDIR`, `ENAMETOOLONG`, ...) stays a plain [`PathError::Errno`].
//! `ELOOP` under `RESOLVE_NO_MAGICLINKS` is ambiguous; a side-effect-free
//! `O_PATH` retry under `RESOLVE_BENEATH` alone tells a magic link (`EXDEV`)
//! from a loop.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use crate::config::RunError;

/// Why a path operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The policy refuses it, for this reason. Reported to the program as
    /// `EACCES`, and to the trace and audit log as a denial.
    Denied(Refusal),
    /// The host refused it with this errno (what the program would also
    /// get natively: `ENOENT`, `ELOOP` for a real symlink loop, `ENOTDIR`,
    /// `ENAMETOOLONG`, ...). Not a denial.
    Errno(i32),
}

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
        }
    }
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
}

/// The set of allowed directories.
#[derive(Debug, Default)]
pub struct FsPolicy {
    dirs: Vec<AllowedDir>,
}

/// Splits a path into its components, dropping `""` and `.`.
pub fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").map(|c| c.to_vec()).collect()
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
/// and `.`, and lets `..` remove the previous component.
pub fn normalize(abs: &[u8]) -> Vec<u8> {
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
    let mut v = Vec::new();
    for c in out {
        v.push(b'/');
        v.extend_from_slice(c);
    }
    if v.is_empty() {
        v.push(b'/');
    }
    v
}

fn cstring(b: &[u8]) -> Result<CString, PathError> {
    CString::new(b.to_vec()).map_err(|_| PathError::Errno(libc::EINVAL))
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

/// `openat2(dirfd, path, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`.
fn openat2_beneath(dirfd: i32, path: &CString, flags: i32, mode: u32) -> Result<OwnedFd, PathError> {
    match openat2(dirfd, path, flags, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) {
        // EXDEV: `..` or a symlink tried to leave the directory.
        Err(libc::EXDEV) => Err(PathError::Denied(Refusal::Escape)),
        // ELOOP is both a magic link refused by RESOLVE_NO_MAGICLINKS and a
        // real loop (or O_NOFOLLOW on a final symlink). Ask again with
        // O_PATH (no side effects) and RESOLVE_BENEATH alone, under which
        // the kernel refuses a magic link with EXDEV instead. Either answer
        // is a refusal; this only names it.
        Err(libc::ELOOP) => {
            let probe = libc::O_PATH | (flags & (libc::O_NOFOLLOW | libc::O_DIRECTORY));
            match openat2(dirfd, path, probe, 0, RESOLVE_BENEATH) {
                Err(libc::EXDEV) => Err(PathError::Denied(Refusal::MagicLink)),
                _ => Err(PathError::Errno(libc::ELOOP)),
            }
        }
        Err(e) => Err(PathError::Errno(e)),
        Ok(fd) => Ok(fd),
    }
}

/// One `openat2` call (retried on `EAGAIN`/`EINTR`); the errno on failure.
fn openat2(dirfd: i32, path: &CString, flags: i32, mode: u32, resolve: u64) -> Result<OwnedFd, i32> {
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
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        match e {
            libc::EAGAIN | libc::EINTR => continue,
            e => return Err(e),
        }
    }
}

fn size_of_how() -> usize {
    std::mem::size_of::<OpenHow>()
}

impl FsPolicy {
    /// Opens every allowed directory. Write dirs are readable too.
    pub fn new(read: &[PathBuf], write: &[PathBuf]) -> Result<FsPolicy, RunError> {
        let mut dirs = Vec::new();
        for (list, w) in [(read, false), (write, true)] {
            for p in list {
                let err = |source| RunError::AllowedDir { path: p.clone(), source };
                let canon = std::fs::canonicalize(p).map_err(err)?;
                let c = CString::new(canon.as_os_str().as_encoded_bytes().to_vec())
                    .map_err(|_| err(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
                // SAFETY: open reads the NUL-terminated path.
                let fd =
                    unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
                if fd < 0 {
                    return Err(err(std::io::Error::last_os_error()));
                }
                // SAFETY: a fresh descriptor we own.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                dirs.push(AllowedDir { comps: components(c.as_bytes()), fd, write: w });
            }
        }
        // Longest first, so the most specific dir decides; on equal paths a
        // write grant wins over a read grant.
        dirs.sort_by(|a, b| b.comps.len().cmp(&a.comps.len()).then(b.write.cmp(&a.write)));
        Ok(FsPolicy { dirs })
    }

    /// The allowed dir containing absolute `abs`, and the path relative to
    /// it (`.` for the dir itself; a trailing `/` is kept).
    pub fn locate(&self, abs: &[u8]) -> Option<(&AllowedDir, Vec<u8>)> {
        let comps = components(abs);
        for d in &self.dirs {
            if comps.len() >= d.comps.len() && comps[..d.comps.len()] == d.comps[..] {
                let rest = &comps[d.comps.len()..];
                let mut rel = rest.join(&b'/');
                if rel.is_empty() {
                    rel = b".".to_vec();
                } else if abs.last() == Some(&b'/') {
                    rel.push(b'/');
                }
                return Some((d, rel));
            }
        }
        None
    }

    /// An `O_PATH` descriptor of `abs` when it is a strict ancestor of an
    /// allowed directory (`/`, `/home`, ... above `/home/me/data`). Those
    /// directories necessarily exist; programs (`mkdir -p`, `realpath`) stat
    /// them. They can be stat'ed and nothing else: no listing, no opening
    /// of anything below them except through the allowed dir. The path
    /// opened is built from the allowed dir's canonical components, never
    /// from the program's bytes.
    pub fn open_ancestor(&self, abs: &[u8]) -> Option<OwnedFd> {
        let comps = components(abs);
        let d =
            self.dirs.iter().find(|d| d.comps.len() > comps.len() && d.comps[..comps.len()] == comps[..])?;
        let mut p = Vec::new();
        for c in &d.comps[..comps.len()] {
            p.push(b'/');
            p.extend_from_slice(c);
        }
        if p.is_empty() {
            p.push(b'/');
        }
        let c = CString::new(p).ok()?;
        // SAFETY: open reads the NUL-terminated path.
        let fd = unsafe {
            libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        };
        // SAFETY: a fresh descriptor we own, when non-negative.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Opens `abs` with `flags`/`mode` (`O_CLOEXEC` is always added).
    pub fn open(&self, abs: &[u8], flags: i32, mode: u32) -> Result<OwnedFd, PathError> {
        let acc = flags & libc::O_ACCMODE;
        let wants_write = acc != libc::O_RDONLY
            || flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_TMPFILE & !libc::O_DIRECTORY) != 0;
        let (d, rel) = self.locate(abs).ok_or(PathError::Denied(Refusal::Outside))?;
        if wants_write && !d.write {
            return Err(PathError::Denied(Refusal::ReadOnly));
        }
        openat2_beneath(d.fd.as_raw_fd(), &cstring(&rel)?, flags, mode)
    }

    /// An `O_PATH` descriptor of `abs` itself (following a final symlink
    /// only when `follow`).
    pub fn open_path(&self, abs: &[u8], follow: bool) -> Result<OwnedFd, PathError> {
        let flags = libc::O_PATH | if follow { 0 } else { libc::O_NOFOLLOW };
        self.open(abs, flags, 0)
    }

    /// Whether `abs` lies under a writable allowed dir.
    pub fn writable(&self, abs: &[u8]) -> bool {
        self.locate(abs).is_some_and(|(d, _)| d.write)
    }

    /// The parent directory of `abs` (as an `O_PATH` fd) and the final
    /// component, for operations on a name. The name is never `.` or `..`
    /// and contains no `/`.
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
        // The name itself must also be inside the allowed dir (the dir
        // itself cannot be removed or renamed through its parent).
        let (d2, _) = self.locate(abs).ok_or(PathError::Denied(Refusal::Outside))?;
        let (d, rel) = self.locate(&parent).ok_or(PathError::Denied(Refusal::TreeItself))?;
        if !std::ptr::eq(d, d2) || rel.is_empty() {
            return Err(PathError::Denied(Refusal::TreeItself));
        }
        if need_write && !d.write {
            return Err(PathError::Denied(Refusal::ReadOnly));
        }
        let fd = openat2_beneath(d.fd.as_raw_fd(), &cstring(&rel)?, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        Ok((fd, cstring(&name)?))
    }
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

    #[test]
    fn path_helpers() {
        assert_eq!(components(b"//a/./b/"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(join(b"/x", b"y"), b"/x/y");
        assert_eq!(join(b"/x/", b"/y"), b"/y");
        assert_eq!(normalize(b"/a/b/../c/./"), b"/a/c");
        assert_eq!(normalize(b"/.."), b"/");
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
                    let mut f = std::fs::File::from(fd);
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
        assert!(p.open_ancestor(b"/").is_some());
        assert!(p.open_ancestor(&b(&root)).is_some());
        assert!(p.open_ancestor(&b(&w)).is_none(), "the dir itself is not an ancestor");
        assert!(p.open_ancestor(b"/etc").is_none() || root.starts_with("/etc"));
        assert!(p.open_ancestor(&[b(&root), b"/../..".to_vec()].concat()).is_none());
    }
}
