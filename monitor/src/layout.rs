//! Sizes every backend shares. Each backend's own addresses live in its
//! crate (`cabin_process::layout`, `cabin_kvm::layout`).

/// Page size.
pub const PAGE: u64 = cabin_abi::PAGE_SIZE;

/// The program's stack, on every backend (what `getrlimit(RLIMIT_STACK)`
/// answers).
pub const STACK_SIZE: u64 = 8 << 20;

/// The bound on a program's memory when neither `[limits] memory` nor
/// `--mem` gives one, on every backend.
pub use cabin_policy::limits::DEFAULT_MEMORY;

/// Rounds `x` down to a page boundary.
pub fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}

/// Rounds `x` up to a page boundary (`None` on overflow).
pub fn page_up(x: u64) -> Option<u64> {
    Some(x.checked_add(PAGE - 1)? & !(PAGE - 1))
}
