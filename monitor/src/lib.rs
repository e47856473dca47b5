//! The host side of Cabin, whatever the backend: one [`session::Session`]
//! per confined run checks the image, opens the policy [`gate`], serves the
//! program's system calls over the shared-memory [`ring`] with the
//! [`service`], enforces the limits ([`watch`]), and writes the records
//! ([`trace`], [`stats`]); a backend only implements [`domain::Domain`]
//! (`cabin-process`, `cabin-kvm`).
//!
//! ```ignore
//! let outcome: RunOutcome = cabin_monitor::session::run::<cabin_process::ProcessDomain>(&image, &cfg)?;
//! std::process::exit(outcome.exit_code);
//! ```
//!
//! - [`config`]: [`RunConfig`] (args, env, allowed dirs, policy, stats path,
//!   `require_execute_only`), [`RunOutcome`], [`RunError`].
//! - [`session`], [`domain`]: the run and what a backend provides; the order
//!   of calls is in monitor/DESIGN.md.
//! - [`memory`]: [`memory::GuestMemory`], checked access to program memory
//!   by typed regions; [`boot`]: the boot page's words.
//! - [`ring`]: the monitor's ring worker (poll, spin, sleep on the doorbell).
//! - [`service`]: system calls as functions of (state, memory, request):
//!   fd table, filesystem policy, the supported-call list.
//! - [`gate`]: the policy, limits and trace around each call (the policy
//!   language itself is `cabin-policy`); [`watch`]: CPU and wall time.
//! - [`layout`]: sizes every backend shares.
//! - [`site_map`]: a submission's site hint to the program's call site.
//! - [`placement`]: the program and the ring worker on different CPUs.
//! - [`procs`], [`tree`]: the process tree's table (virtual pids, wait, kill, the
//!   `processes` limit; docs/processes.md).
//! - [`kick`]: interrupting a thread blocked in a host call.
//! - [`stats`]: the `--stats` JSON; [`trace`]: the trace and audit writer.
//!
//! Who calls it: `cabinc run` (through a backend's `run`), the backends, the
//! fuzz targets. What it must never do: trust the domain. Everything read
//! from the ring or program memory is copied once and checked; a malformed
//! request ends the program with a message, never the monitor with a panic.

pub mod boot;
pub mod config;
pub mod domain;
pub mod futex;
pub mod gate;
pub mod kick;
pub mod layout;
pub mod memory;
pub mod placement;
pub mod procs;
pub mod ring;
pub mod service;
pub mod session;
pub mod shm;
pub mod signals;
pub mod site_map;
pub mod stats;
pub mod sysnames;
pub mod sysv;
pub mod threads;
pub mod timers;
pub mod trace;
pub mod tree;
pub mod treemem;
pub mod watch;

pub use config::{Bind, EndReason, GateConfig, RunConfig, RunError, RunOutcome, Tmpfs, View};
