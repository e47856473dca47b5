//! Child processes (issue 14, docs/processes.md): `fork`, `vfork`, and
//! `clone` without `CLONE_VM` (or with `CLONE_VM|CLONE_VFORK`, the form
//! `posix_spawn` uses), served by asking the monitor to make the child.
//!
//! The monitor copies this domain's memory into a new domain and starts it
//! at [`cabin_fork_child_start`] with `rsp` at a frame that holds the
//! program's registers at the call (the same frame the thread trampoline
//! pops: the block address for GS, the 12 registers, RFLAGS, then the
//! trampoline's return address). The child sets its GS base, makes itself a
//! one-thread process ([`child_init`]: thread table, FS base, the kernel
//! handlers, the reservation space, its pid) and returns to the program's
//! call site with `rax` = 0. The parent gets the child's pid.
//!
//! Served on the main thread only (another thread: `ENOSYS`, see
//! docs/processes.md), on both backends (KVM: the child is a new VM with a
//! copy of the guest memory; its vCPU starts with FS and GS base 0, which
//! the child sets itself with `wrgsbase`/`wrfsbase`).

use core::sync::atomic::{AtomicU64, Ordering};

use cabin_abi::link::trampoline::ENTRY_RSP_OFFSET;
use cabin_abi::ring::SUB_FORK;

use super::thread::{self, CloneFrame};
use super::{errno, nr};

const CLONE_VM: u64 = 0x100;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_PARENT_SETTID: u64 = 0x0010_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x0020_0000;
const CLONE_CHILD_SETTID: u64 = 0x0100_0000;
const SIGCHLD: u64 = 17;

/// Words of the child's start frame before the return address.
const FRAME_WORDS: u64 = 14;

/// The child-tid word of the last fork (`CLONE_CHILD_SETTID` /
/// `CLONE_CHILD_CLEARTID`, 0: none), and those flags: read by the child.
static CHILD_TID: AtomicU64 = AtomicU64::new(0);
static CHILD_FLAGS: AtomicU64 = AtomicU64::new(0);

/// A process-creating request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fork {
    /// The clone flags (exit signal included).
    pub flags: u64,
    /// The child's stack (0: the caller's, copied).
    pub stack: u64,
    pub ptid: u64,
    pub ctid: u64,
}

/// Whether call `nr` with `args` asks for a child process this libos
/// serves: `fork`, `vfork`, or `clone` whose flags are a process set (exit
/// signal `SIGCHLD` or none; `CLONE_VM` only with `CLONE_VFORK`; the tid
/// flags). `Err(errno)` for a `clone` that asks for a process in a way not
/// served (sharing descriptor tables, namespaces...): `ENOSYS`, so a C
/// library falls back where it can. `Ok(None)`: not a process request.
pub(crate) fn request(nr_: u64, args: &[u64; 6]) -> Result<Option<Fork>, i64> {
    match nr_ {
        nr::fork => Ok(Some(Fork { flags: SIGCHLD, stack: 0, ptid: 0, ctid: 0 })),
        nr::vfork => Ok(Some(Fork { flags: CLONE_VM | CLONE_VFORK | SIGCHLD, stack: 0, ptid: 0, ctid: 0 })),
        nr::clone => {
            let [flags, stack, ptid, ctid, _tls, _] = *args;
            let signal = flags & 0xff;
            let rest = flags & !0xff;
            let tids = CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID;
            if rest & CLONE_VM != 0 && rest & CLONE_VFORK == 0 {
                // A thread set, or memory shared without a vfork: not ours.
                return Ok(None);
            }
            if rest & !(tids | CLONE_VM | CLONE_VFORK) != 0 || (signal != 0 && signal != SIGCHLD) {
                return Err(-errno::ENOSYS);
            }
            Ok(Some(Fork { flags, stack, ptid, ctid }))
        }
        _ => Ok(None),
    }
}

/// Serves a process request from a rewritten site; `f` is the site's
/// register frame on the program's stack.
pub(crate) fn fork(f: &mut CloneFrame, req: &Fork) -> i64 {
    let me = thread::current();
    if me.slot.load(Ordering::Relaxed) != 0 {
        return -errno::ENOSYS;
    }
    // Read-ahead's stage would be served twice (parent and child share the
    // file offsets): give it back for good first.
    super::readahead::disable();
    // The child's frame: the site's own (its first word becomes the block
    // address) or, with a new stack, a copy at the top of that stack.
    let frame = if req.stack == 0 {
        f.nr = me as *const thread::Block as u64;
        f as *mut CloneFrame as u64
    } else {
        let ret_slot = req.stack.wrapping_sub(ENTRY_RSP_OFFSET);
        let at = ret_slot.wrapping_sub(FRAME_WORDS * 8);
        let mut words = [0u64; FRAME_WORDS as usize + 1];
        words[0] = me as *const thread::Block as u64;
        words[1..13].copy_from_slice(&f.regs);
        words[13] = f.rflags;
        words[14] = f.ret;
        for (i, w) in words.iter().enumerate() {
            // SAFETY: the program's child stack, which it handed to clone
            // for the child; a bad one faults in the program's own domain.
            unsafe { (at as *mut u64).add(i).write_volatile(*w) };
        }
        at
    };
    CHILD_TID.store(req.ctid, Ordering::Relaxed);
    CHILD_FLAGS.store(req.flags, Ordering::Relaxed);
    let args = [child_entry(), frame, req.flags, 0, 0, 0];
    let r = super::ring_client::call(nr::clone, &args, SUB_FORK, f.ret);
    if r < -4095 || r > i64::from(i32::MAX) {
        crate::die(b"cabin: the monitor's answer to a fork is not a pid or -errno; stopping\n");
    }
    if r > 0 && req.flags & CLONE_PARENT_SETTID != 0 && req.ptid != 0 {
        // SAFETY: the program's own pointer for the kernel to fill; a bad
        // one faults in its own domain, as its own store would.
        unsafe { (req.ptid as *mut u32).write_volatile(r as u32) };
    }
    r
}

#[cfg(target_os = "none")]
fn child_entry() -> u64 {
    cabin_fork_child_start as unsafe extern "C" fn() -> ! as usize as u64
}

#[cfg(not(target_os = "none"))]
fn child_entry() -> u64 {
    0
}

/// The child, before it returns to the program: one thread (this one, slot
/// 0), its pid from the boot page, its FS base, the libos's kernel
/// handlers, the committed reservation space mapped again, and the child
/// tid word. Dies when a step the kernel refuses leaves the libos unusable.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
extern "C" fn child_init() {
    let (pid, ppid) = super::reload_ids();
    thread::after_fork(pid);
    super::netsock::after_fork();
    if !thread::restore_fs()
        || !super::signals::after_fork(pid)
        || !super::mem::after_fork()
        || !super::shm::after_fork()
        || !super::filemap::after_fork()
    {
        crate::die(b"cabin: a new child process could not set itself up; stopping\n");
    }
    let _ = ppid;
    let (flags, ctid) = (CHILD_FLAGS.load(Ordering::Relaxed), CHILD_TID.load(Ordering::Relaxed));
    if ctid != 0 {
        if flags & CLONE_CHILD_SETTID != 0 {
            // SAFETY: the program's own pointer for the kernel to fill (in
            // the child's copy); a bad one faults in its own domain.
            unsafe { (ctid as *mut u32).write_volatile(pid) };
        }
        if flags & CLONE_CHILD_CLEARTID != 0 {
            thread::set_tid_address(ctid, pid);
        }
    }
}

/// Where a child process starts (the monitor's entry for it), `rsp` at
/// the frame [`fork`] left: sets the GS base to the block in the frame's
/// first word (process backend: `arch_prctl`; KVM: `wrgsbase`), runs
/// [`child_init`] below the frame, restores the program's registers and
/// RFLAGS and returns to the call site with `rax` = 0.
///
/// # Safety
///
/// Entered only by the monitor, once, in a new child domain.
#[cfg(target_os = "none")]
#[unsafe(naked)]
unsafe extern "C" fn cabin_fork_child_start() -> ! {
    core::arch::naked_asm!(
        "cmp byte ptr [rip + {process}], 0",
        "je 1f",
        "mov eax, {nr_arch_prctl}",
        "mov edi, 0x1001",
        "mov rsi, [rsp]",
        "syscall",
        "test rax, rax",
        "jnz 3f",
        "jmp 2f",
        // KVM: ring 3 with CR4.FSGSBASE, as a new thread's start.
        "1:",
        "mov rax, [rsp]",
        "wrgsbase rax",
        "2:",
        "mov rbx, rsp",
        "and rsp, -16",
        "call {init}",
        "mov rsp, rbx",
        "add rsp, 8",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop r10",
        "pop r8",
        "pop r9",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "xor eax, eax",
        "popfq",
        "ret",
        "3:",
        "and rsp, -16",
        "call {failed}",
        "ud2",
        process = sym thread::PROCESS,
        nr_arch_prctl = const nr::arch_prctl,
        init = sym child_init,
        failed = sym child_start_failed,
    )
}

#[cfg(target_os = "none")]
extern "C" fn child_start_failed() -> ! {
    crate::die(b"cabin: a new child process could not set its GS base; stopping\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_requests_are_told_from_threads_and_unsupported_sets() {
        let args = |flags: u64, stack: u64| [flags, stack, 0, 0, 0, 0];
        assert_eq!(request(nr::fork, &[9; 6]), Ok(Some(Fork { flags: SIGCHLD, stack: 0, ptid: 0, ctid: 0 })));
        assert_eq!(
            request(nr::vfork, &[0; 6]).map(|r| r.map(|r| r.flags)),
            Ok(Some(CLONE_VM | CLONE_VFORK | SIGCHLD))
        );
        // glibc's fork.
        let glibc = CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD;
        assert_eq!(request(nr::clone, &args(glibc, 0)).map(|r| r.map(|r| r.flags)), Ok(Some(glibc)));
        // glibc's posix_spawn: CLONE_VM|CLONE_VFORK with a stack.
        let spawn = CLONE_VM | CLONE_VFORK | SIGCHLD;
        assert_eq!(request(nr::clone, &args(spawn, 0x7000)).map(|r| r.map(|r| r.stack)), Ok(Some(0x7000)));
        // A thread set is the thread path's.
        assert_eq!(request(nr::clone, &args(0x3d0f00, 0x7000)), Ok(None));
        assert_eq!(request(nr::clone, &args(CLONE_VM | SIGCHLD, 0x7000)), Ok(None));
        // Sharing descriptor tables, namespaces, another exit signal.
        assert_eq!(request(nr::clone, &args(0x400 | SIGCHLD, 0)), Err(-errno::ENOSYS));
        assert_eq!(request(nr::clone, &args(0x2000_0000 | SIGCHLD, 0)), Err(-errno::ENOSYS));
        assert_eq!(request(nr::clone, &args(10, 0)), Err(-errno::ENOSYS));
        assert_eq!(request(nr::clone, &args(0, 0)).map(|r| r.is_some()), Ok(true));
        assert_eq!(request(nr::read, &[0; 6]), Ok(None));
    }
}
