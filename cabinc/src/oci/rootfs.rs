//! Reading the entrypoint out of a container's rootfs without leaving it.
//!
//! The rootfs comes from an image, and an image is not trusted: its
//! `/bin/app` may be a symbolic link to `/etc/shadow` or `../../..`. Every
//! lookup is `openat2(rootfs_fd, path, RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`: `..` and absolute links resolve inside the
//! rootfs, as they would for a process chrooted there.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;

use cabin_monitor::service::fs::{openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};

/// The largest entrypoint read (a static executable or a Cabin image).
pub const MAX_ENTRYPOINT_BYTES: u64 = 512 << 20;

/// Opens `path` (a path as the container sees it) read-only inside `rootfs`.
pub fn open_in_root(rootfs: &Path, path: &str) -> std::io::Result<File> {
    let root = File::open(rootfs)?;
    let rel = CString::new(path.trim_start_matches('/'))
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // O_PATH first: opening a FIFO or a device node an image brought
    // along would block or act on the device; only a regular file is then
    // opened for reading (through its descriptor, so it is the same file).
    let fd = openat2(root.as_raw_fd(), &rel, libc::O_PATH, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        .map_err(std::io::Error::from_raw_os_error)?;
    let path_fd = File::from(fd);
    if !path_fd.metadata()?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    File::open(format!("/proc/self/fd/{}", path_fd.as_raw_fd()))
}

/// Reads the entrypoint `path` of `rootfs` (bounded by [`MAX_ENTRYPOINT_BYTES`]).
pub fn read_entrypoint(rootfs: &Path, path: &str) -> anyhow::Result<Vec<u8>> {
    let f = open_in_root(rootfs, path).map_err(|e| anyhow::anyhow!("process.args[0]: {path}: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX_ENTRYPOINT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("process.args[0]: {path}: {e}"))?;
    if bytes.len() as u64 > MAX_ENTRYPOINT_BYTES {
        anyhow::bail!("process.args[0]: {path}: larger than {MAX_ENTRYPOINT_BYTES} bytes");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_out_of_the_rootfs_stay_inside() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::write(d.path().join("secret"), b"host").expect("write");
        std::fs::write(root.join("secret"), b"inside").expect("write");
        std::os::unix::fs::symlink("/secret", root.join("bin/abs")).expect("symlink");
        std::os::unix::fs::symlink("../../secret", root.join("bin/rel")).expect("symlink");
        assert_eq!(read_entrypoint(&root, "/bin/abs").expect("abs"), b"inside");
        assert_eq!(read_entrypoint(&root, "/bin/rel").expect("rel"), b"inside");
        assert_eq!(read_entrypoint(&root, "/../secret").expect("dotdot"), b"inside");
        std::os::unix::fs::symlink("/proc/self/exe", root.join("bin/magic")).expect("symlink");
        assert!(read_entrypoint(&root, "/bin/magic").is_err());
        assert!(read_entrypoint(&root, "/bin").is_err());
        // A FIFO (no writer) is refused, not opened (which would block).
        let fifo = std::ffi::CString::new(root.join("bin/fifo").into_os_string().into_encoded_bytes())
            .expect("path");
        // SAFETY: mkfifo reads the NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let e = read_entrypoint(&root, "/bin/fifo").expect_err("a fifo");
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
