//! Argument decoding for text traces: file descriptors as numbers, flags by
//! name, modes in octal, pointers in hex, the path when the service read it.
//! Calls without a signature here show their non-zero arguments in hex.

use crate::names;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    /// A descriptor (signed decimal).
    Fd,
    /// A directory descriptor (`AT_FDCWD` by name).
    DirFd,
    /// A path pointer (the path itself when known).
    Path,
    /// A pointer.
    Ptr,
    /// A count or size (unsigned decimal).
    Len,
    /// A signed integer.
    Int,
    /// `open` flags.
    OFlags,
    /// A file mode (octal).
    Mode,
    /// `mmap`/`mprotect` protection.
    Prot,
    /// Anything else (hex).
    Hex,
}

fn signature(name: &str) -> Option<&'static [K]> {
    use K::*;
    Some(match name {
        "read" | "write" => &[Fd, Ptr, Len],
        "pread64" | "pwrite64" => &[Fd, Ptr, Len, Int],
        "readv" | "writev" => &[Fd, Ptr, Len],
        "open" => &[Path, OFlags, Mode],
        "openat" => &[DirFd, Path, OFlags, Mode],
        "close" | "fsync" | "fdatasync" | "dup" | "fchdir" => &[Fd],
        "dup2" => &[Fd, Fd],
        "dup3" => &[Fd, Fd, Hex],
        "lseek" => &[Fd, Int, Int],
        "fstat" => &[Fd, Ptr],
        "stat" | "lstat" => &[Path, Ptr],
        "newfstatat" => &[DirFd, Path, Ptr, Hex],
        "statx" => &[DirFd, Path, Hex, Hex, Ptr],
        "getdents64" | "getdents" => &[Fd, Ptr, Len],
        "fcntl" => &[Fd, Int, Hex],
        "ioctl" => &[Fd, Hex, Hex],
        "ftruncate" => &[Fd, Len],
        "truncate" => &[Path, Len],
        "unlinkat" => &[DirFd, Path, Hex],
        "mkdirat" => &[DirFd, Path, Mode],
        "mkdir" => &[Path, Mode],
        "unlink" | "rmdir" | "chdir" => &[Path],
        "renameat2" => &[DirFd, Path, DirFd, Ptr, Hex],
        "renameat" => &[DirFd, Path, DirFd, Ptr],
        "rename" => &[Path, Ptr],
        "readlinkat" => &[DirFd, Path, Ptr, Len],
        "readlink" => &[Path, Ptr, Len],
        "faccessat" | "faccessat2" => &[DirFd, Path, Mode, Hex],
        "access" => &[Path, Mode],
        "chmod" => &[Path, Mode],
        "fchmod" => &[Fd, Mode],
        "fchmodat" => &[DirFd, Path, Mode],
        "pipe2" => &[Ptr, Hex],
        "pipe" => &[Ptr],
        "mmap" => &[Ptr, Len, Prot, Hex, Fd, Hex],
        "mprotect" => &[Ptr, Len, Prot],
        "munmap" => &[Ptr, Len],
        "mremap" => &[Ptr, Len, Len, Hex, Ptr],
        "brk" => &[Ptr],
        "madvise" => &[Ptr, Len, Int],
        "exit" | "exit_group" => &[Int],
        "getcwd" => &[Ptr, Len],
        "getrandom" => &[Ptr, Len, Hex],
        "uname" => &[Ptr],
        "clock_gettime" | "clock_getres" => &[Int, Ptr],
        "clock_nanosleep" => &[Int, Hex, Ptr, Ptr],
        "nanosleep" => &[Ptr, Ptr],
        "gettimeofday" => &[Ptr, Ptr],
        "rt_sigaction" => &[Int, Ptr, Ptr, Len],
        "rt_sigprocmask" => &[Int, Ptr, Ptr, Len],
        "prlimit64" => &[Int, Int, Ptr, Ptr],
        "arch_prctl" => &[Hex, Hex],
        "set_tid_address" => &[Ptr],
        "kill" | "tgkill" | "tkill" => &[Int, Int, Int],
        "wait4" => &[Int, Ptr, Hex, Ptr],
        "socket" => &[Int, Hex, Int],
        "connect" | "bind" => &[Fd, Ptr, Len],
        "futex" => &[Ptr, Int, Hex, Ptr, Ptr, Hex],
        "sched_yield" | "getpid" | "gettid" | "getppid" | "getuid" | "geteuid" | "getgid" | "getegid" => &[],
        "sendfile" => &[Fd, Fd, Ptr, Len],
        "copy_file_range" => &[Fd, Ptr, Fd, Ptr, Len, Hex],
        "umask" => &[Mode],
        "poll" => &[Ptr, Len, Int],
        _ => return None,
    })
}

/// Whether the call returns an address (shown in hex).
pub fn returns_address(nr: u64) -> bool {
    matches!(names::name(nr), Some("mmap" | "brk" | "mremap"))
}

// Composite flags first, so O_SYNC is not shown as O_DSYNC|0o4000000.
const O_FLAGS: &[(u64, &str)] = &[
    (0o20200000, "O_TMPFILE"),
    (0o4010000, "O_SYNC"),
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"),
    (0o40000, "O_DIRECT"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];

fn oflags(v: u64) -> String {
    let mut parts = vec![match v & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    }
    .to_string()];
    let mut rest = v & !3;
    for &(bit, name) in O_FLAGS {
        if rest & bit == bit && bit != 0 {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#o}"));
    }
    parts.join("|")
}

fn prot(v: u64) -> String {
    if v == 0 {
        return "PROT_NONE".into();
    }
    let mut parts = Vec::new();
    for (bit, n) in [(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")] {
        if v & bit != 0 {
            parts.push(n.to_string());
        }
    }
    if v & !7 != 0 {
        parts.push(format!("{:#x}", v & !7));
    }
    parts.join("|")
}

/// Quotes a path for the text trace. The path is already
/// [`path_text`](super::record::path_text) (backslashes doubled, bytes that
/// are not UTF-8 as `\xNN`), so only quotes and any stray control
/// character are escaped here.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => o.push_str(&format!("\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The argument list of call `nr`, as text (no parentheses).
pub fn args(nr: u64, a: &[u64; 6], path: Option<&str>) -> String {
    let Some(sig) = names::name(nr).and_then(signature) else {
        let last = a.iter().rposition(|&v| v != 0).map_or(0, |i| i + 1);
        return a[..last].iter().map(|v| format!("{v:#x}")).collect::<Vec<_>>().join(", ");
    };
    let mut path_used = false;
    sig.iter()
        .zip(a.iter())
        .map(|(k, &v)| match k {
            K::Fd => (v as i32).to_string(),
            K::DirFd if v as i32 == -100 => "AT_FDCWD".into(),
            K::DirFd => (v as i32).to_string(),
            K::Path => match path {
                Some(p) if !path_used => {
                    path_used = true;
                    escape(p)
                }
                _ => format!("{v:#x}"),
            },
            K::Ptr if v == 0 => "NULL".into(),
            K::Ptr | K::Hex => format!("{v:#x}"),
            K::Len => v.to_string(),
            K::Int => (v as i64).to_string(),
            K::OFlags => oflags(v),
            K::Mode => format!("{v:#o}"),
            K::Prot => prot(v),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_openat() {
        let s = args(257, &[(-100i64) as u64, 0x1000, 0o2000000 | 0o100 | 1, 0o644, 0, 0], Some("out/a b"));
        assert_eq!(s, "AT_FDCWD, \"out/a b\", O_WRONLY|O_CREAT|O_CLOEXEC, 0o644");
    }

    #[test]
    fn unknown_calls_show_hex() {
        assert_eq!(args(999, &[1, 0, 2, 0, 0, 0], None), "0x1, 0x0, 0x2");
    }
}
