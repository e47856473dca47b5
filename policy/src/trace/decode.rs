//! Argument decoding for text traces, from the argument kinds of the
//! system-call table ([`cabin_abi::syscalls::Arg`]): file descriptors as
//! numbers, flags by name, modes in octal, pointers in hex, the path when the
//! service read it. Calls the table has no arguments for (numbers without a
//! row, calls Linux does not implement) show their non-zero arguments in hex.

use cabin_abi::syscalls::{self, Arg, Ret};

/// Whether the call returns an address (shown in hex).
pub fn returns_address(nr: u64) -> bool {
    syscalls::get(nr).is_some_and(|s| s.returns == Ret::Address)
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

/// The argument list of call `nr`, as text (no parentheses). The service
/// records one path per call (the first it reads), so the first path
/// argument shows it and any later one shows as a pointer.
pub fn args(nr: u64, a: &[u64; 6], path: Option<&str>) -> String {
    let Some(kinds) = syscalls::get(nr).and_then(|s| s.args) else {
        let last = a.iter().rposition(|&v| v != 0).map_or(0, |i| i + 1);
        return a[..last].iter().map(|v| format!("{v:#x}")).collect::<Vec<_>>().join(", ");
    };
    let mut path_shown = false;
    kinds
        .iter()
        .zip(a.iter())
        .map(|(k, &v)| match k {
            Arg::Fd => (v as i32).to_string(),
            Arg::DirFd if v as i32 == -100 => "AT_FDCWD".into(),
            Arg::DirFd => (v as i32).to_string(),
            Arg::Path if !path_shown => {
                path_shown = true;
                match path {
                    Some(p) => escape(p),
                    None => format!("{v:#x}"),
                }
            }
            Arg::Path
            | Arg::Str
            | Arg::BufIn(_)
            | Arg::BufOut(_)
            | Arg::In
            | Arg::Out
            | Arg::InOut
            | Arg::Addr => pointer(v),
            Arg::Flags | Arg::Any => format!("{v:#x}"),
            Arg::Len => v.to_string(),
            Arg::Int | Arg::Offset => (v as i64).to_string(),
            Arg::OpenFlags => oflags(v),
            Arg::Mode => format!("{v:#o}"),
            Arg::Prot => prot(v),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn pointer(v: u64) -> String {
    if v == 0 {
        "NULL".into()
    } else {
        format!("{v:#x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_openat() {
        let s = args(257, &[(-100i64) as u64, 0x1000, 0o2000000 | 0o100 | 1, 0o644, 0, 0], Some("out/a b"));
        assert_eq!(s, "AT_FDCWD, \"out/a b\", O_WRONLY|O_CREAT|O_CLOEXEC, 0o644");
    }

    /// The text the per-call decoder this replaced printed, for calls it
    /// knew; and calls it did not know, now decoded from the table.
    #[test]
    fn decodes_from_the_table() {
        let at = (-100i64) as u64;
        assert_eq!(args(0, &[3, 0x7ffd_2000, 4096, 0, 0, 0], None), "3, 0x7ffd2000, 4096");
        assert_eq!(args(316, &[at, 0x1000, at, 0, 1, 0], Some("a")), "AT_FDCWD, \"a\", AT_FDCWD, NULL, 0x1");
        assert_eq!(args(264, &[at, 0x1000, 4, 0x2000, 0, 0], Some("a")), "AT_FDCWD, \"a\", 4, 0x2000");
        assert_eq!(
            args(332, &[at, 0x1000, 0x100, 0x7ff, 0x2000, 0], None),
            "AT_FDCWD, 0x1000, 0x100, 0x7ff, 0x2000"
        );
        assert_eq!(args(12, &[0; 6], None), "NULL");
        assert!(returns_address(12) && returns_address(9) && !returns_address(0));
        assert_eq!(args(10, &[0x1000, 4096, 5, 0, 0, 0], None), "0x1000, 4096, PROT_READ|PROT_EXEC");
        assert_eq!(args(202, &[0x1000, 0, 1, 0, 0, 0], None), "0x1000, 0, 0x1, NULL, NULL, 0x0");
        assert_eq!(args(8, &[3, (-5i64) as u64, 1, 0, 0, 0], None), "3, -5, 1");
        // Decoded now (hex before), with the call's own arity.
        assert_eq!(args(93, &[3, 1000, 1000, 0, 0, 0], None), "3, 1000, 1000");
        assert_eq!(args(266, &[0x1000, at, 0x2000, 0, 0, 0], Some("t")), "\"t\", AT_FDCWD, 0x2000");
        assert_eq!(args(62, &[7, 9, 0, 0, 0, 0], None), "7, 9");
        assert_eq!(args(269, &[at, 0x1000, 4, 0, 0, 0], Some("f")), "AT_FDCWD, \"f\", 0o4");
        // mmap's offset in decimal, as pread64's (hex before).
        assert_eq!(
            args(9, &[0, 8192, 3, 0x22, u64::MAX, 0], None),
            "NULL, 8192, PROT_READ|PROT_WRITE, 0x22, -1, 0"
        );
        // A call Linux does not implement: raw arguments.
        assert_eq!(args(183, &[1, 0, 2, 0, 0, 0], None), "0x1, 0x0, 0x2");
    }

    #[test]
    fn unknown_calls_show_hex() {
        assert_eq!(args(999, &[1, 0, 2, 0, 0, 0], None), "0x1, 0x0, 0x2");
    }
}
