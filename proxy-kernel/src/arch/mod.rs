//! Architecture-specific parts of the proxy-kernel (built for the guest only).

pub mod x86_64;
