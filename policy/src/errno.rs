//! Linux errno names and numbers (x86-64), for policy files and messages.

/// `(number, name)` for the errno values a policy is likely to name.
pub const ERRNOS: &[(i32, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (8, "ENOEXEC"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (18, "EXDEV"),
    (19, "ENODEV"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (23, "ENFILE"),
    (24, "EMFILE"),
    (25, "ENOTTY"),
    (26, "ETXTBSY"),
    (27, "EFBIG"),
    (28, "ENOSPC"),
    (29, "ESPIPE"),
    (30, "EROFS"),
    (31, "EMLINK"),
    (32, "EPIPE"),
    (33, "EDOM"),
    (34, "ERANGE"),
    (35, "EDEADLK"),
    (36, "ENAMETOOLONG"),
    (37, "ENOLCK"),
    (38, "ENOSYS"),
    (39, "ENOTEMPTY"),
    (40, "ELOOP"),
    (61, "ENODATA"),
    (62, "ETIME"),
    (71, "EPROTO"),
    (75, "EOVERFLOW"),
    (84, "EILSEQ"),
    (88, "ENOTSOCK"),
    (95, "EOPNOTSUPP"),
    (97, "EAFNOSUPPORT"),
    (98, "EADDRINUSE"),
    (99, "EADDRNOTAVAIL"),
    (101, "ENETUNREACH"),
    (104, "ECONNRESET"),
    (110, "ETIMEDOUT"),
    (111, "ECONNREFUSED"),
    (113, "EHOSTUNREACH"),
    (122, "EDQUOT"),
    (125, "ECANCELED"),
];

/// Largest errno a system call can return (`-4095..=-1` are errors).
pub const MAX_ERRNO: i32 = 4095;

/// The number of errno `name` (`"EPERM"` → 1). `EWOULDBLOCK` and `ENOTSUP`
/// are accepted as the aliases they are.
pub fn number(name: &str) -> Option<i32> {
    match name {
        "EWOULDBLOCK" => return Some(11),
        "ENOTSUP" => return Some(95),
        _ => {}
    }
    ERRNOS.iter().find(|&&(_, n)| n == name).map(|&(e, _)| e)
}

/// The name of errno `e`, if it is in [`ERRNOS`].
pub fn name(e: i32) -> Option<&'static str> {
    ERRNOS.iter().find(|&&(n, _)| n == e).map(|&(_, s)| s)
}

/// `"EPERM"`, or the number for an errno without a name here.
pub fn name_or_number(e: i32) -> String {
    match name(e) {
        Some(n) => n.to_string(),
        None => e.to_string(),
    }
}
