//! Linux x86-64 system-call names, for reports and statistics: read from
//! the one system-call table, [`cabin_abi::syscalls`].

/// The name of system call `nr`, if it has one.
pub fn name(nr: u64) -> Option<&'static str> {
    cabin_abi::syscalls::name(nr)
}
