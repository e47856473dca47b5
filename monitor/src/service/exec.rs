//! `execve`/`execveat` of a Cabin image, the service's half (docs/processes.md,
//! "execve"): the path is resolved and checked as `open` for reading is, the
//! file must be executable and an intact Cabin image, and `argv`/`envp` are
//! copied out of program memory once, with Linux's bounds. The process's
//! new domain is built by the caller ([`crate::threads`]); once it is,
//! [`Service::exec_done`] closes the `FD_CLOEXEC` descriptors.
//!
//! Everything read here comes from hostile memory: every pointer is read
//! once, every string once, each bounded, and a pointer that does not reach
//! readable memory is `EFAULT` (the program's own error, never the monitor's).

use std::os::fd::AsRawFd;

use cabin_abi::syscalls::nr;

use super::{Fail, Service};
use crate::memory::GuestMemory;

/// Longest single argument or environment string, its NUL included (Linux's
/// `MAX_ARG_STRLEN`, 32 pages): longer is `E2BIG`.
pub const MAX_ARG_STRLEN: usize = 32 * 4096;
/// Most bytes of `argv` and `envp` together, strings with their NULs and
/// one pointer each (Linux: a quarter of the 8 MiB default stack limit):
/// more is `E2BIG`.
pub const MAX_ARG_TOTAL: usize = 2 << 20;
/// The largest file `execve` reads (a bigger one is `ENOMEM`).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// Held while an image is read and checked: however many threads and
/// processes of however many runs of this monitor exec at once, the
/// monitor holds at most one image being read (a hostile tree cannot make
/// it read hundreds of large files at the same time); an accepted image is
/// handed on at once.
static READING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An `execve` the service accepted: the checked image and the new
/// program's arguments.
#[derive(Debug)]
pub struct ExecRequest {
    /// The whole file: an intact Cabin image (its measurement checked), or
    /// for [`ExecKind::Plain`] the executable to build.
    pub image: Vec<u8>,
    /// Which of the two.
    pub kind: ExecKind,
    /// The image cache's directory (`None`: the default).
    pub cache: Option<std::path::PathBuf>,
    /// `argv` (may be empty, as Linux allows).
    pub args: Vec<String>,
    /// `envp`.
    pub env: Vec<String>,
    /// The path as the program gave it (of the interpreter, for a `#!`
    /// script).
    pub path: Vec<u8>,
}

/// Why an `execve` fails: the errno, and a line for stderr when Linux's
/// errno alone would not say it (a dynamic ELF, a modified image).
#[derive(Debug)]
pub struct ExecFail {
    /// The errno returned to the program.
    pub errno: i32,
    /// One `cabin:` line for stderr.
    pub message: Option<String>,
}

impl ExecFail {
    fn errno(errno: i32) -> ExecFail {
        ExecFail { errno, message: None }
    }
}

impl From<Fail> for ExecFail {
    fn from(f: Fail) -> ExecFail {
        match f {
            Fail::Errno(e) => ExecFail::errno(e),
            // A bad path pointer: the program's own EFAULT.
            _ => ExecFail::errno(libc::EFAULT),
        }
    }
}

/// Copies a NULL-terminated array of string pointers at `at` (0: none),
/// counting into `total`.
fn copy_strings(mem: &GuestMemory, at: u64, total: &mut usize) -> Result<Vec<String>, ExecFail> {
    let mut out = Vec::new();
    if at == 0 {
        return Ok(out);
    }
    for i in 0u64.. {
        let slot = i.checked_mul(8).and_then(|o| at.checked_add(o)).ok_or(ExecFail::errno(libc::EFAULT))?;
        let p = mem.read_u64(slot).map_err(|_| ExecFail::errno(libc::EFAULT))?;
        if p == 0 {
            break;
        }
        *total += 8;
        if *total > MAX_ARG_TOTAL {
            return Err(ExecFail::errno(libc::E2BIG));
        }
        let (bytes, nul) =
            mem.read_until_nul(p, MAX_ARG_STRLEN).map_err(|_| ExecFail::errno(libc::EFAULT))?;
        if !nul {
            return Err(ExecFail::errno(libc::E2BIG));
        }
        *total += bytes.len() + 1;
        if *total > MAX_ARG_TOTAL {
            return Err(ExecFail::errno(libc::E2BIG));
        }
        // The domain's argv is UTF-8 today (DomainSpec): other bytes are
        // replaced (docs/processes.md, "Not yet").
        out.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    Ok(out)
}

/// Whether the caller may execute a file of `st` (the monitor's user, as
/// the kernel's `MAY_EXEC` check; root needs one execute bit).
fn may_execute(st: &libc::stat) -> bool {
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mode = st.st_mode;
    if uid == 0 {
        return mode & 0o111 != 0;
    }
    if st.st_uid == uid {
        mode & 0o100 != 0
    } else if st.st_gid == gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

impl Service {
    /// Checks an `execve` (`nr` `execve` or `execveat`, `a` its arguments)
    /// and reads the file to run, following `#!` lines to their
    /// interpreter; the caller's process is not changed. A plain static
    /// executable comes back as [`ExecKind::Plain`]: the caller builds its
    /// image ([`build_plain`]) outside the service lock.
    pub fn exec_prepare(
        &mut self,
        mem: &GuestMemory,
        nr: u64,
        a: &[u64; 6],
    ) -> Result<ExecRequest, ExecFail> {
        let (dirfd, paddr, argv, envp, flags) = if nr == nr::execveat {
            (a[0], a[1], a[2], a[3], a[4] as i32)
        } else {
            (libc::AT_FDCWD as u32 as u64, a[0], a[1], a[2], 0)
        };
        if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
            return Err(ExecFail::errno(libc::EINVAL));
        }
        let path = self.read_path(mem, paddr)?;
        if path.is_empty() {
            // execveat(fd, "", AT_EMPTY_PATH) of a descriptor: not yet.
            let e = if flags & libc::AT_EMPTY_PATH != 0 { libc::ENOSYS } else { libc::ENOENT };
            return Err(ExecFail::errno(e));
        }
        // Arguments first, as the kernel copies them before it opens: a
        // wild pointer is EFAULT whatever the path.
        let mut total = 0;
        let mut args = copy_strings(mem, argv, &mut total)?;
        let env = copy_strings(mem, envp, &mut total)?;
        if flags == 0 && is_own_exe(&path, self.pid) {
            // The process's own program again (busybox's applets, re-exec
            // of self): the image it runs, already checked; no path rule
            // is involved (the monitor's /proc is never the program's).
            if let Some(exe) = &self.exe {
                let image = exe.as_ref().clone();
                let cache = None;
                return Ok(ExecRequest { image, kind: ExecKind::Image, cache, args, env, path });
            }
        }
        let mut dirfd = dirfd;
        let mut nofollow = flags & libc::AT_SYMLINK_NOFOLLOW != 0;
        let mut shown = path.clone();
        let mut current = path.clone();
        for depth in 0.. {
            let cabin_rewriter::verified::ReadFile { bytes: file, key } =
                self.exec_read(dirfd, &current, nofollow)?;
            if file.starts_with(b"#!") {
                // Linux allows 4 levels of interpreters (BINPRM_MAX_RECURSION).
                if depth >= MAX_INTERPRETER_DEPTH {
                    return Err(ExecFail::errno(libc::ELOOP));
                }
                let (interp, optarg) = shebang(&file)?;
                // Linux's argv: interp [optarg] script args[1..].
                let mut new_args = vec![String::from_utf8_lossy(&interp).into_owned()];
                new_args.extend(optarg.map(|o| String::from_utf8_lossy(&o).into_owned()));
                new_args.push(String::from_utf8_lossy(&current).into_owned());
                new_args.extend(args.into_iter().skip(1));
                total = new_args.iter().map(|s| s.len() + 9).sum::<usize>()
                    + env.iter().map(|s| s.len() + 9).sum::<usize>();
                if total > MAX_ARG_TOTAL {
                    return Err(ExecFail::errno(libc::E2BIG));
                }
                args = new_args;
                // The interpreter is found from the cwd, followed through
                // symbolic links, under the same path rules.
                dirfd = libc::AT_FDCWD as u32 as u64;
                nofollow = false;
                current = interp;
                shown = current.clone();
                continue;
            }
            let cache = self.policy.image_cache().map(|p| p.to_path_buf());
            let kind = classify(&file, &shown, self.policy.exec_images_only(), key, cache.as_deref())?;
            return Ok(ExecRequest { image: file, kind, cache, args, env, path: shown });
        }
        unreachable!("the loop returns")
    }

    /// Opens `path` (from `dirfd`) as `execve` does, checks that it may be
    /// executed and reads it once, bounded.
    fn exec_read(
        &mut self,
        dirfd: u64,
        path: &[u8],
        nofollow: bool,
    ) -> Result<cabin_rewriter::verified::ReadFile, ExecFail> {
        let abs = self.absolute(dirfd, path)?;
        let mut oflags = libc::O_RDONLY;
        if nofollow {
            oflags |= libc::O_NOFOLLOW;
        }
        let opened = match self.policy.open(&abs, oflags, 0) {
            Ok(o) => o,
            // A directory (EISDIR from the open for reading) is EACCES.
            Err(super::fs::PathError::Errno(libc::EISDIR)) => return Err(ExecFail::errno(libc::EACCES)),
            Err(e) => return Err(self.path_fail(e, Some(path), &abs).into()),
        };
        let st = super::fs::fstat(opened.fd.as_raw_fd()).map_err(|_| ExecFail::errno(libc::EACCES))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || !may_execute(&st) {
            return Err(ExecFail::errno(libc::EACCES));
        }
        // SAFETY: statvfs is plain data; fstatvfs fills it for a valid fd.
        let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: writes `vfs` only.
        if unsafe { libc::fstatvfs(opened.fd.as_raw_fd(), &mut vfs) } == 0
            && vfs.f_flag & libc::ST_NOEXEC != 0
        {
            return Err(ExecFail::errno(libc::EACCES));
        }
        let _reading = READING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.st_size as u64 > MAX_IMAGE_BYTES {
            return Err(ExecFail::errno(libc::ENOMEM));
        }
        // Read once into memory, with the file's identity when it was
        // stable (the verified-measurement cache, cabin_rewriter::verified).
        cabin_rewriter::verified::read(&mut std::fs::File::from(opened.fd), MAX_IMAGE_BYTES)
            .map_err(|e| ExecFail::errno(e.raw_os_error().unwrap_or(libc::EIO)))
    }

    /// The image the process runs (for `execve("/proc/self/exe")`).
    pub fn set_exe(&mut self, image: std::sync::Arc<Vec<u8>>) {
        self.exe = Some(image);
    }

    /// The new image runs: the `FD_CLOEXEC` descriptors are closed.
    pub fn exec_done(&mut self) {
        self.fds.close_on_exec();
        // The new image's host process maps none of the old files.
        self.filemaps.clear();
    }
}

/// Whether `path` names the calling process's own executable:
/// `/proc/self/exe`, `/proc/thread-self/exe` or `/proc/PID/exe` of its own pid.
fn is_own_exe(path: &[u8], pid: u32) -> bool {
    let Some(rest) = path.strip_prefix(b"/proc/").and_then(|r| r.strip_suffix(b"/exe")) else { return false };
    rest == b"self" || rest == b"thread-self" || rest == pid.to_string().as_bytes()
}

/// What `execve` found at the end of its `#!` chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecKind {
    /// An intact Cabin image (its measurement checked): run as it is.
    Image,
    /// A plain static executable: its image comes from the image cache.
    Plain,
}

/// Linux's `BINPRM_MAX_RECURSION`: an interpreter of an interpreter ... at
/// most this deep; deeper is `ELOOP`.
pub const MAX_INTERPRETER_DEPTH: usize = 4;
/// Linux's `BINPRM_BUF_SIZE`: the bytes of a `#!` line looked at.
pub const SHEBANG_BYTES: usize = 256;

/// The interpreter and its optional argument of a `#!` file, as Linux
/// (fs/binfmt_script.c) reads them: the first line, within
/// [`SHEBANG_BYTES`]; blanks around the interpreter skipped; the rest of
/// the line, trailing blanks dropped, one argument. No interpreter, or one
/// cut by the bound, is `ENOEXEC`.
pub fn shebang(file: &[u8]) -> Result<(Vec<u8>, Option<Vec<u8>>), ExecFail> {
    let buf = &file[2.min(file.len())..file.len().min(SHEBANG_BYTES)];
    let (line, complete) = match buf.iter().position(|&b| b == b'\n') {
        Some(n) => (&buf[..n], true),
        None => (buf, file.len() < SHEBANG_BYTES || buf.contains(&0)),
    };
    // A NUL ends the line, as the kernel's C strings do.
    let line = line.iter().position(|&b| b == 0).map_or(line, |n| &line[..n]);
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = line.iter().position(|b| !blank(b)).unwrap_or(line.len());
    let line = &line[start..];
    let end = line.iter().rposition(|b| !blank(b)).map_or(0, |i| i + 1);
    let line = &line[..end];
    if line.is_empty() {
        return Err(ExecFail::errno(libc::ENOEXEC));
    }
    let name_end = line.iter().position(blank).unwrap_or(line.len());
    if !complete && name_end == line.len() {
        // The interpreter's name runs past the bound: Linux refuses it.
        return Err(ExecFail::errno(libc::ENOEXEC));
    }
    let interp = line[..name_end].to_vec();
    let rest = &line[name_end..];
    let arg_start = rest.iter().position(|b| !blank(b));
    let optarg = arg_start.map(|i| rest[i..].to_vec());
    Ok((interp, optarg))
}

/// Whether `file` is an intact Cabin image or a plain static executable;
/// `ENOEXEC` otherwise, a dynamic ELF, a modified image and a plain one
/// under `exec = "images"` saying why on stderr.
fn classify(
    file: &[u8],
    path: &[u8],
    images_only: bool,
    key: Option<cabin_rewriter::verified::FileKey>,
    image_cache: Option<&std::path::Path>,
) -> Result<ExecKind, ExecFail> {
    use cabin_image::elf::ElfError;
    use cabin_image::image::{Image, ImageError};
    use cabin_rewriter::verified::{check, VerifiedCache};
    let shown = String::from_utf8_lossy(path);
    // The measurement from the verified-measurement cache when it vouches
    // for this very file, else hashed (and recorded when it was stable).
    let parsed = Image::parse(file).and_then(|i| {
        let cache = key.and_then(|_| VerifiedCache::open(image_cache));
        check(cache.as_ref(), key.as_ref(), &i).map(|_| ())
    });
    match parsed {
        Ok(()) => Ok(ExecKind::Image),
        Err(ImageError::Elf(ElfError::Dynamic)) => Err(ExecFail {
            errno: libc::ENOEXEC,
            message: Some(format!("cabin: execve {shown}: cannot build it: {}", ElfError::Dynamic)),
        }),
        Err(ImageError::NoManifest) if images_only => Err(ExecFail {
            errno: libc::ENOEXEC,
            message: Some(format!(
                "cabin: execve {shown}: a plain executable, and the policy runs Cabin images only \
                 ([paths] exec = \"images\")"
            )),
        }),
        Err(ImageError::NoManifest) => Ok(ExecKind::Plain),
        // Not an executable at all: Linux's ENOEXEC, no message.
        Err(ImageError::Elf(_)) => Err(ExecFail::errno(libc::ENOEXEC)),
        Err(e) => Err(ExecFail {
            errno: libc::ENOEXEC,
            message: Some(format!("cabin: execve {shown}: the image was refused: {e}")),
        }),
    }
}

/// Held while a plain executable is built: at most one build at a time in
/// this monitor (a build takes memory and a CPU for up to seconds).
static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The image of a plain static executable (`req.image` holds its bytes, as
/// read once): from the image cache, built there the first time. Called
/// without the service lock.
pub fn build_plain(req: &mut ExecRequest) -> Result<(), ExecFail> {
    use cabin_rewriter::cache::{CacheError, ImageCache};
    let shown = String::from_utf8_lossy(&req.path).into_owned();
    let fail = |what: String| ExecFail {
        errno: libc::ENOEXEC,
        message: Some(format!("cabin: execve {shown}: {what}")),
    };
    let _building = BUILDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cache = match &req.cache {
        Some(dir) => ImageCache::open(dir),
        None => ImageCache::open_default(),
    }
    .map_err(|e| fail(e.to_string()))?;
    match cache.get_or_build(&req.image) {
        Ok(c) => {
            if let Some(why) = c.refused {
                eprintln!(
                    "cabin: warning: the cached image {} was refused ({why}); rebuilt",
                    c.path.display()
                );
            }
            req.image = c.image;
            req.kind = ExecKind::Image;
            Ok(())
        }
        Err(CacheError::Build(e)) => Err(fail(format!("cannot build it: {e}"))),
        Err(e) => Err(fail(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::shebang;

    fn sb(s: &[u8]) -> Result<(String, Option<String>), i32> {
        shebang(s)
            .map(|(i, o)| (String::from_utf8(i).unwrap(), o.map(|o| String::from_utf8(o).unwrap())))
            .map_err(|f| f.errno)
    }

    /// Linux's reading of a `#!` line (fs/binfmt_script.c).
    #[test]
    fn shebang_lines_read_as_linux() {
        assert_eq!(sb(b"#!/bin/sh\necho"), Ok(("/bin/sh".into(), None)));
        assert_eq!(sb(b"#! \t/bin/sh  -e  -x \t\nrest"), Ok(("/bin/sh".into(), Some("-e  -x".into()))));
        assert_eq!(sb(b"#!/bin/sh"), Ok(("/bin/sh".into(), None)));
        assert_eq!(sb(b"#!\n"), Err(libc::ENOEXEC));
        assert_eq!(sb(b"#!   \n/bin/sh"), Err(libc::ENOEXEC));
        assert_eq!(sb(b"#!"), Err(libc::ENOEXEC));
        // An interpreter name cut by the 256-byte bound: ENOEXEC; an
        // argument cut by it: truncated.
        let mut long = b"#!/".to_vec();
        long.extend(std::iter::repeat_n(b'a', 400));
        assert_eq!(sb(&long), Err(libc::ENOEXEC));
        let mut cut = b"#!/bin/sh ".to_vec();
        cut.extend(std::iter::repeat_n(b'b', 400));
        let (i, o) = sb(&cut).expect("an argument may be cut");
        assert_eq!((i.as_str(), o.map(|o| o.len())), ("/bin/sh", Some(256 - 10)));
        // A NUL ends the line.
        assert_eq!(sb(b"#!/bin/s\0h -x\n"), Ok(("/bin/s".into(), None)));
        assert_eq!(sb(b"#!/bin/sh -x\0y\n"), Ok(("/bin/sh".into(), Some("-x".into()))));
    }
}
