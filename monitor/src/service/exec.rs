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

use std::io::Read;
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
    /// The whole file (an intact Cabin image: its measurement checked).
    pub image: Vec<u8>,
    /// `argv` (may be empty, as Linux allows).
    pub args: Vec<String>,
    /// `envp`.
    pub env: Vec<String>,
    /// The path as the program gave it.
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
    /// and reads the image; the caller's process is not changed.
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
        let args = copy_strings(mem, argv, &mut total)?;
        let env = copy_strings(mem, envp, &mut total)?;
        let abs = self.absolute(dirfd, &path)?;
        let mut oflags = libc::O_RDONLY;
        if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
            oflags |= libc::O_NOFOLLOW;
        }
        let opened = match self.policy.open(&abs, oflags, 0) {
            Ok(o) => o,
            // A directory (EISDIR from the open for reading) is EACCES.
            Err(super::fs::PathError::Errno(libc::EISDIR)) => return Err(ExecFail::errno(libc::EACCES)),
            Err(e) => return Err(self.path_fail(e, Some(&path), &abs).into()),
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
        let mut image = Vec::with_capacity(st.st_size as usize);
        std::fs::File::from(opened.fd)
            .take(MAX_IMAGE_BYTES)
            .read_to_end(&mut image)
            .map_err(|e| ExecFail::errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        check_image(&image, &path)?;
        Ok(ExecRequest { image, args, env, path })
    }

    /// The new image runs: the `FD_CLOEXEC` descriptors are closed.
    pub fn exec_done(&mut self) {
        self.fds.close_on_exec();
    }
}

/// `ENOEXEC` unless `image` is an intact Cabin image; a dynamic ELF and a
/// modified image say why on stderr.
fn check_image(image: &[u8], path: &[u8]) -> Result<(), ExecFail> {
    use cabin_image::elf::ElfError;
    use cabin_image::image::{Image, ImageError};
    let shown = String::from_utf8_lossy(path);
    let parsed = Image::parse(image).and_then(|i| i.verify_measurement().map(|_| ()));
    match parsed {
        Ok(()) => Ok(()),
        Err(ImageError::Elf(ElfError::Dynamic)) => Err(ExecFail {
            errno: libc::ENOEXEC,
            message: Some(format!(
                "cabin: execve {shown}: a dynamically linked executable; Cabin runs static executables only"
            )),
        }),
        // A plain static ELF (the content-addressed image cache is a later
        // step) or not an executable at all: Linux's ENOEXEC, no message.
        Err(ImageError::Elf(_) | ImageError::NoManifest) => Err(ExecFail::errno(libc::ENOEXEC)),
        Err(e) => Err(ExecFail {
            errno: libc::ENOEXEC,
            message: Some(format!("cabin: execve {shown}: the image was refused: {e}")),
        }),
    }
}
