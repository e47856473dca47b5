//! `process.terminal` with `--console-socket`: a new pseudo-terminal whose
//! slave is the init's stdio (and controlling terminal) and whose master
//! is sent to the socket with SCM_RIGHTS, as runc does; the shim (or
//! whoever listens there) then relays the user's terminal to it.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

/// A new pseudo-terminal: (master, slave).
pub fn open_pty() -> Result<(File, File)> {
    // SAFETY: posix_openpt takes flags and returns a new descriptor or -1.
    let m = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if m < 0 {
        bail!("cannot open a terminal: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `m` is the descriptor posix_openpt just returned, owned here.
    let master = File::from(unsafe { OwnedFd::from_raw_fd(m) });
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt/unlockpt take the master; ptsname_r writes at most
    // `name.len()` bytes (NUL included) into `name`.
    let ok = unsafe {
        libc::grantpt(m) == 0
            && libc::unlockpt(m) == 0
            && libc::ptsname_r(m, name.as_mut_ptr(), name.len()) == 0
    };
    if !ok {
        bail!("cannot set up the terminal: {}", std::io::Error::last_os_error());
    }
    // SAFETY: ptsname_r succeeded: `name` holds a NUL-terminated path.
    let path = unsafe { CStr::from_ptr(name.as_ptr()) };
    // SAFETY: open reads the NUL-terminated path; returns a new descriptor or -1.
    let s = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if s < 0 {
        bail!("cannot open {}: {}", path.to_string_lossy(), std::io::Error::last_os_error());
    }
    // SAFETY: `s` is the descriptor open just returned, owned here.
    let slave = File::from(unsafe { OwnedFd::from_raw_fd(s) });
    Ok((master, slave))
}

/// Sends `master` over the unix socket at `socket` (SCM_RIGHTS, with the
/// name `/dev/ptmx` as the data, as runc does).
pub fn send_master(socket: &Path, master: &File) -> Result<()> {
    let stream =
        UnixStream::connect(socket).with_context(|| format!("--console-socket {}", socket.display()))?;
    let data = b"/dev/ptmx";
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // Room for one descriptor's control message, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    if space > std::mem::size_of_val(&control) {
        return Err(anyhow!("internal error: control buffer too small"));
    }
    // SAFETY: an all-zero msghdr is valid (no name, no buffers yet).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: `msg` points at `control`, `space` bytes (checked above), so
    // the first header and its data lie inside it; the data is one c_int.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), master.as_raw_fd());
    }
    // SAFETY: sendmsg reads `msg`, `iov`, `data` and `control`, all alive for the call.
    let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, 0) };
    if n < 0 {
        bail!("cannot send the terminal to {}: {}", socket.display(), std::io::Error::last_os_error());
    }
    Ok(())
}
