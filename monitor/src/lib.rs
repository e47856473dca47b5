//! The host side of Cabin: backends, loader, ring workers, syscall service,
//! policy and audit. Filled in by the "Run confined" issue.
