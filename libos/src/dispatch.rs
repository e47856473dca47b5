//! What happens to a system call once a rewritten site has reached the
//! libos: the mode switch, and the passthrough rules for the calls that
//! cannot simply be re-issued from inside the libos.
//!
//! `rt_sigreturn` and `clone` with a new stack never get here in passthrough
//! mode: they need the program's own stack pointer, so the assembly entry
//! issues them itself (see `arch/x86_64/entry.rs`).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::forward;
use crate::sys::{self, errno, nr};

/// `true` once a Cabin monitor started the image (set once at start-up,
/// before the program runs, and never again). The assembly entry reads this
/// byte directly to decide whether to take its passthrough fast paths.
pub static CONFINED: AtomicBool = AtomicBool::new(false);

/// `clone` flag: share the address space.
pub const CLONE_VM: u64 = 0x100;
/// `clone` flag: suspend the parent until the child execs or exits.
pub const CLONE_VFORK: u64 = 0x4000;

/// The system call as the trampoline passed it, in the order the assembly
/// entry pushes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallFrame {
    /// System-call number (`rax`).
    pub nr: u64,
    /// Arguments (`rdi, rsi, rdx, r10, r8, r9`).
    pub args: [u64; 6],
}

/// What passthrough mode does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Issue this system call and return its result.
    Syscall {
        /// Number to issue.
        nr: u64,
        /// Arguments to issue it with.
        args: [u64; 6],
    },
    /// Return this value without a system call.
    Return(i64),
}

/// Passthrough rules.
///
/// - `vfork` becomes `fork`: a vfork child would run on, and overwrite, the
///   stack that still holds the parent's saved entry frame.
/// - `clone` without a new stack but with `CLONE_VFORK` loses `CLONE_VM` and
///   `CLONE_VFORK` for the same reason (fork semantics).
/// - `clone3` answers `ENOSYS`; C libraries then fall back to `clone`, whose
///   new-stack case the assembly entry handles.
/// - everything else is issued unchanged.
pub fn passthrough(nr: u64, args: &[u64; 6]) -> Action {
    match nr {
        nr::clone3 => Action::Return(-errno::ENOSYS),
        nr::vfork => Action::Syscall { nr: nr::fork, args: [0; 6] },
        nr::clone if args[1] == 0 && args[0] & CLONE_VFORK != 0 => {
            let mut args = *args;
            args[0] &= !(CLONE_VM | CLONE_VFORK);
            Action::Syscall { nr: nr::clone, args }
        }
        _ => Action::Syscall { nr, args: *args },
    }
}

/// Called by the assembly entry with the pushed frame and the trampoline's
/// return address (`ret`: where the call came from, a hint for the monitor's
/// messages; passthrough mode ignores it); returns `rax`.
pub extern "C" fn cabin_dispatch(frame: &SyscallFrame, ret: u64) -> i64 {
    if CONFINED.load(Ordering::Relaxed) {
        // The site's rsp: the trampoline's return address (9 words above
        // the frame's start) sits ENTRY_RSP_OFFSET below it.
        let ret_slot = frame as *const SyscallFrame as u64 + 9 * 8;
        forward::set_site_rsp(ret_slot + cabin_abi::link::trampoline::ENTRY_RSP_OFFSET);
        return forward::dispatch(frame.nr, &frame.args, ret);
    }
    match passthrough(frame.nr, &frame.args) {
        // SAFETY: this is the program's own request from a rewritten site,
        // issued as its original `syscall` instruction would have issued it
        // (or as the fork-semantics replacement described above).
        Action::Syscall { nr, args } => unsafe { sys::syscall6(nr, &args) },
        Action::Return(value) => value,
    }
}

/// Switches to confined mode. Called once by start-up, before the program runs.
pub fn set_confined() {
    CONFINED.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_calls_pass_unchanged() {
        let args = [1, 2, 3, 4, 5, 6];
        assert_eq!(passthrough(nr::write, &args), Action::Syscall { nr: nr::write, args });
        // clone with a new stack is the assembly's job; if it ever got here it
        // would be passed on untouched.
        let args = [CLONE_VM | CLONE_VFORK, 0x7000, 0, 0, 0, 0];
        assert_eq!(passthrough(nr::clone, &args), Action::Syscall { nr: nr::clone, args });
    }

    #[test]
    fn vfork_becomes_fork() {
        assert_eq!(passthrough(nr::vfork, &[9; 6]), Action::Syscall { nr: nr::fork, args: [0; 6] });
        let args = [CLONE_VM | CLONE_VFORK | 17, 0, 0, 0, 0, 0];
        assert_eq!(
            passthrough(nr::clone, &args),
            Action::Syscall { nr: nr::clone, args: [17, 0, 0, 0, 0, 0] }
        );
    }

    #[test]
    fn clone3_is_refused() {
        assert_eq!(passthrough(nr::clone3, &[0; 6]), Action::Return(-38));
    }

    #[test]
    fn frame_layout_matches_the_push_order() {
        assert_eq!(core::mem::size_of::<SyscallFrame>(), 56);
        assert_eq!(core::mem::offset_of!(SyscallFrame, args), 8);
    }
}
