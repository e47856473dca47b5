//! The host side of Cabin: it loads an image into a confined domain, serves
//! the program's system calls over the shared-memory ring, enforces the
//! filesystem policy and reports how the program ended.
//!
//! Entry point for `cabinc run --backend process`:
//!
//! ```ignore
//! let outcome: RunOutcome = cabin_monitor::process::run(&image_bytes, &RunConfig { .. })?;
//! std::process::exit(outcome.exit_code);
//! ```
//!
//! - [`config`]: [`RunConfig`] (args, env, allowed dirs, stats path,
//!   `require_execute_only`), [`RunOutcome`], [`RunError`].
//! - [`process`]: the process backend (fork, map the domain from one memfd,
//!   seccomp, run the ring worker, collect the exit status).
//! - [`memory`]: [`memory::GuestMemory`], checked access to program memory.
//! - [`ring`]: the monitor's ring worker (poll, spin, sleep on the doorbell).
//! - [`service`]: system calls as functions of (state, memory, request):
//!   fd table, filesystem policy, the supported-call list.
//! - [`layout`]: where the domain's areas live.
//! - [`site_map`]: a submission's site hint to the program's call site.
//! - [`placement`]: the program and the ring worker on different CPUs.
//! - [`stats`]: the `--stats` JSON.
//!
//! The monitor never trusts the domain: everything read from the ring or
//! program memory is copied once and checked; a malformed request ends the
//! program with a message, never the monitor with a panic.

pub mod boot;
pub mod config;
pub mod domain;
pub mod gate;
pub mod kick;
pub mod kvm;
pub mod layout;
pub mod memory;
pub mod placement;
pub mod process;
pub mod ring;
pub mod service;
pub mod session;
pub mod site_map;
pub mod stats;
pub mod sysnames;
pub mod trace;
pub mod watch;

pub use config::{EndReason, GateConfig, RunConfig, RunError, RunOutcome};

/// Whether this machine can enforce execute-only code for the process
/// backend (Linux uses protection keys for `PROT_EXEC`-only mappings).
pub fn execute_only_enforced() -> bool {
    // CPUID.(EAX=7,ECX=0):ECX bit 3 = PKU, bit 4 = OSPKE.
    #[cfg(target_arch = "x86_64")]
    {
        let r = std::arch::x86_64::__cpuid_count(7, 0);
        r.ecx & (1 << 4) != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
