//! The single source of truth for everything that crosses a Cabin boundary.
//!
//! `cabin-abi` is `no_std` and dependency-free. The rewriter writes these
//! structures into images, the libos reads them at start-up, and the monitor
//! and proxy-kernel read and write them at run time. Nothing here performs I/O
//! or trusts its input: every decoder is fallible and bounds-checked.
//!
//! Versioning: [`ABI_VERSION`] changes whenever a layout here changes in a way
//! an older reader would misread. Readers refuse versions they do not know.
#![no_std]

pub mod boot;
pub mod hypercall;
pub mod layout;
pub mod link;
pub mod note;
pub mod pkru;
pub mod ring;
pub mod syscalls;
pub mod thread;

/// Version of every layout in this crate, as a whole.
pub const ABI_VERSION: u32 = 1;

/// Version of the libos runtime linked into images built by this tree.
pub const LIBOS_VERSION: u32 = 1;

/// Size of a page in the domain.
pub const PAGE_SIZE: u64 = 4096;
