//! x86-64 entry code and hypercalls of the proxy-kernel.

mod entry;
mod hypercall;
