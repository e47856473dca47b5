//! Linux x86-64 system-call numbers and names, for policies: a view of the
//! one system-call table, [`cabin_abi::syscalls`] (which also says how the
//! libos serves each call).

use cabin_abi::syscalls;

pub use cabin_abi::syscalls::{Serve, Syscall, MAX_KNOWN, TABLE};

/// The name of system call `nr`, if it has one.
pub fn name(nr: u64) -> Option<&'static str> {
    syscalls::name(nr)
}

/// The number of the system call called `name`, if there is one on x86-64.
pub fn number(name: &str) -> Option<u64> {
    syscalls::number(name)
}

/// `name(nr)`, or `syscall_<nr>` for numbers without a name.
pub fn display(nr: u64) -> String {
    match name(nr) {
        Some(n) => n.to_string(),
        None => format!("syscall_{nr}"),
    }
}

/// How the libos serves call `nr` (numbers without a row are forwarded).
pub fn serve(nr: u64) -> Serve {
    syscalls::serve(nr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(number("openat"), Some(257));
        assert_eq!(name(257), Some("openat"));
        assert_eq!(number("_llseek"), None);
        assert_eq!(display(999), "syscall_999");
        assert_eq!(MAX_KNOWN, 467);
    }
}
