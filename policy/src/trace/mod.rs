//! Trace and audit records ([`record`]: what a record holds and how it is
//! spelled, as text or JSON) and the decoding of a call's arguments for the
//! text form ([`decode`]). The monitor writes them (`cabin_monitor::trace`);
//! `cabinc policy generate` reads them back ([`crate::generate`]).

pub mod decode;
pub mod record;

pub use record::{ExitInfo, LimitHit, LimitKind, Served, StartInfo, SyscallRecord, TraceAddr};
