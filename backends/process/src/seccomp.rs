//! The seccomp-BPF filter of a confined child.
//!
//! Allowed (everything the libos itself needs, nothing that reaches
//! outside the domain):
//! - `exit`, `exit_group`;
//! - `rt_sigprocmask(SIG_SETMASK, set, NULL, 8)` with
//!   [`cabin_abi::boot::KERNEL_MASK_MAGIC`] in the fifth argument, and
//!   only so: the libos's kernel handlers put back the interrupted mask
//!   with it when they return (every other `rt_sigprocmask` is trapped and
//!   served on the program's virtual mask);
//! - `futex`, any operation (the program's futexes are served natively:
//!   they only ever reach the process's own memory; the monitor's waits on
//!   the ring doorbells have timeouts, so a program that requeues or wakes
//!   a doorbell only delays itself, docs/threads.md);
//! - `clone` with exactly a thread flag set
//!   (`cabin_abi::thread::is_thread_flags`: the libos starts the program's
//!   threads natively; every other flag set, and `clone3`, is trapped);
//! - `arch_prctl(ARCH_SET_FS, ..)` (the program's TLS pointer) and
//!   `arch_prctl(ARCH_SET_GS, ..)` (the libos's thread block);
//! - `set_robust_list`, `set_tid_address`, `gettid`, `sched_yield` (the
//!   calling thread's own state);
//! - `rt_sigaction` for SIGSYS, the fault signals and the signals the monitor
//!   forwards only (the libos's own handlers), and `sigaltstack` (the
//!   libos's handlers run on its private stack);
//! - the clock reads `clock_gettime`, `clock_getres`, `gettimeofday`, `time`,
//!   each only when the policy allows it plainly (it is not in the boot
//!   page's `check_local` set): a clock read the policy refuses, or decides
//!   by its arguments, is trapped like any other call, so the libos's
//!   forward of it (and a raw read the program makes itself) reaches the
//!   policy, as on the KVM backend.
//!
//! - `mprotect` without `PROT_EXEC` (no bit but `PROT_READ`/`PROT_WRITE`,
//!   all 64 bits of `prot` compared) of the protectable ranges
//!   ([`Protectable`]): a range rule allows a start address inside the
//!   arena, the `brk` range or the stack, each of which is followed by
//!   unmapped space (`mprotect` stops at the first hole, so whatever the
//!   length it changes nothing above); a page rule allows exactly one
//!   RELRO page as start and a length that ends inside the RELRO pages
//!   (the image's data is followed by the libos's code, so the length
//!   matters there). Code, the boot page, the ring, the loader scratch and
//!   the stub are never reachable;
//!
//! - the direct data plane of connected TCP sockets ([`socket_rules`],
//!   only with a file channel): `recvfrom`/`sendto` with a NULL address,
//!   `recvmsg`/`sendmsg`, `close`, `fcntl(F_GETFL)` on the connected-socket
//!   range `NET_NATIVE_BASE..+NET_NATIVE_COUNT`, and `dup3` of a sent
//!   descriptor into it, each with `NET_NATIVE_MAGIC` in an ignored
//!   argument and flags within a fixed set (docs/networking.md, "The
//!   direct data plane");
//!
//! `rt_sigreturn` kills the process (`SECCOMP_RET_KILL_PROCESS`, checked
//! before everything else): Linux restores PKRU from the frame's XSAVE
//! area, so a forged frame would lift execute-only code
//! (docs/execute-only.md). The libos's kernel handlers return without it
//! (`libos::arch::x86_64::entry::cabin_kernel_return`), and the program's
//! own `rt_sigreturn` is the libos's, served in ring 3.
//!
//! Every other call, and every call from another ABI (`int 0x80` i386
//! calls, x32), is answered with `SECCOMP_RET_TRAP`: the kernel delivers
//! SIGSYS to the libos, which forwards the call over the ring (the slow
//! path; i386 numbers are translated by the libos for the few calls it
//! knows, the rest get `ENOSYS`).
//!
//! The rules above are data ([`rules`]); `seccompiler` (rust-vmm) compiles
//! them. It reaches far targets with `BPF_JA` (32-bit offsets) and helper
//! jumps, so no jump offset is ever truncated however long the filter grows.
//! Its program kills a call from a foreign architecture; we want those
//! trapped, so [`compile`] puts a three-instruction check in front that
//! traps them first, then a binary search on the call number
//! (`dispatch`) that traps at once every number without a rule (the
//! chain after it would trap them too, after walking every rule). The filter is built per run, before `fork`; the child
//! installs it from the loader scratch in its entry stub
//! (`process::enter_domain`).

use std::collections::BTreeMap;

use cabin_abi::syscalls::CallSet;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

/// One classic-BPF instruction (`struct sock_filter`, `#[repr(C)]`).
pub use seccompiler::sock_filter as SockFilter;

/// Why the filter could not be built. The rules are fixed and small, so this
/// is a Cabin bug if it ever happens.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// seccompiler refused the rules.
    #[error("cannot build the seccomp filter: {0}")]
    Backend(#[from] seccompiler::BackendError),
    /// The number dispatch in front of the rules needs a jump longer than
    /// an 8-bit offset (it never does for fewer than about 400 numbers).
    #[error("cannot build the seccomp filter: the number dispatch needs a jump of {0} instructions")]
    JumpTooFar(usize),
}

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const BPF_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
#[cfg(test)]
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Offset of `seccomp_data.arch`.
const OFF_ARCH: u32 = 4;
/// `seccomp_data.nr`.
const OFF_NR: u32 = 0;
/// `SIG_SETMASK`.
const SIG_SETMASK: u64 = 2;

/// `arch_prctl` code that sets the FS base.
const ARCH_SET_FS: u64 = 0x1002;
/// `arch_prctl` code that sets the GS base.
const ARCH_SET_GS: u64 = 0x1001;

/// Every `clone` flag set the filter allows: the thread sets, all of
/// `THREAD_FLAGS_REQUIRED` with any of the optional flags.
pub fn thread_flag_sets() -> Vec<u64> {
    use cabin_abi::thread::{THREAD_FLAGS_ALLOWED, THREAD_FLAGS_REQUIRED};
    let optional: Vec<u64> = (0..64)
        .map(|b| 1u64 << b)
        .filter(|f| THREAD_FLAGS_ALLOWED & !THREAD_FLAGS_REQUIRED & f != 0)
        .collect();
    (0..1u64 << optional.len())
        .map(|m| {
            optional
                .iter()
                .enumerate()
                .filter(|(i, _)| m & (1 << i) != 0)
                .fold(THREAD_FLAGS_REQUIRED, |a, (_, f)| a | f)
        })
        .collect()
}
/// The signals the libos installs kernel handlers for: its trap and fault
/// handlers, and the signals the monitor forwards from outside
/// (docs/signals.md). The program's own `rt_sigaction` never reaches the
/// kernel (the libos keeps its dispositions); a raw one is trapped unless
/// it names one of these, and then it can only replace a libos handler of
/// its own process.
const LIBOS_SIGNALS: [i32; 16] = [
    cabin_abi::boot::WAKE_SIGNAL,
    libc::SIGSYS,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGABRT,
    libc::SIGVTALRM,
];

/// The clock reads the libos makes for the program when the policy allows
/// them plainly (`cabin_abi::syscalls::Serve::LocalOrForwarded`).
pub const CLOCK_READS: [i64; 4] =
    [libc::SYS_clock_gettime, libc::SYS_clock_getres, libc::SYS_gettimeofday, libc::SYS_time];

/// `cabin_abi::thread::is_thread_flags(arg)` as one condition: with the
/// optional flags masked off, all 64 bits are exactly the required set (so
/// every required flag is there and nothing outside the allowed ones). One
/// masked compare instead of a rule per allowed set (32 rules, 224
/// instructions, hopped over by every call the filter looks at after
/// `clone`).
fn thread_flags(arg: u8) -> Result<SeccompCondition, FilterError> {
    use cabin_abi::thread::{THREAD_FLAGS_ALLOWED, THREAD_FLAGS_REQUIRED};
    let optional = THREAD_FLAGS_ALLOWED & !THREAD_FLAGS_REQUIRED;
    Ok(SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(!optional),
        THREAD_FLAGS_REQUIRED,
    )?)
}

/// The runs of consecutive numbers in `signals`, `[first, last]` each, in
/// order: the filter compares a run with two bounds instead of a rule per
/// signal.
fn signal_runs(signals: &[i32]) -> Vec<[u64; 2]> {
    let mut sorted: Vec<u64> = signals.iter().map(|&s| s as u64).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<[u64; 2]> = Vec::new();
    for s in sorted {
        match runs.last_mut() {
            Some(run) if run[1] + 1 == s => run[1] = s,
            _ => runs.push([s, s]),
        }
    }
    runs
}

/// `arg == value` on all 64 bits of argument `arg`.
fn eq64(arg: u8, value: u64) -> Result<SeccompCondition, FilterError> {
    Ok(SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)?)
}

/// `arg == value` on the low 32 bits of argument `arg` (an `int` argument:
/// the kernel ignores the high half).
fn eq32(arg: u8, value: u64) -> Result<SeccompCondition, FilterError> {
    Ok(SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)?)
}

/// What `mprotect` may change natively (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protectable {
    /// `[start, len]` ranges, each followed by unmapped space: any start
    /// address inside, any length.
    pub ranges: [[u64; 2]; 4],
    /// `[start, len]` pages: a start on one of their pages, and an end
    /// inside them.
    pub pages: [u64; 2],
    /// The reservation space `[start, len]` (nothing mapped above it, up
    /// to `start + 2 * len`): `mmap` of arena pages of descriptor
    /// `RESERVE_FD` there (shared, fixed, no `PROT_EXEC`, offset at least
    /// [`Protectable::arena_file_offset`]: the arena is the memfd's last
    /// range, so code, boot page and ring are never reachable; offsets past
    /// the end give pages that fault when touched), and `munmap` there,
    /// are allowed natively. No call can create memory outside the memfd.
    pub reserve: [u64; 2],
    /// Offset of the arena in the memfd.
    pub arena_file_offset: u64,
    /// The tree's shared window `[start, len]` (`[0, 0]`: none; nothing
    /// mapped above it up to `start + 2 * len`): `mmap` of descriptor
    /// `SHARED_FD` there (shared, fixed, no `PROT_EXEC`, any offset: the
    /// memfd holds only the tree's shared memory and is sealed at its size,
    /// so an offset past it gives pages that fault), and `munmap` there,
    /// are allowed natively.
    pub shared: [u64; 2],
    /// The process's file-mapping range `[start, len]` (`[0, 0]`: none;
    /// nothing mapped above it up to `start + 2 * len`; docs/processes.md,
    /// "Shared file mappings"): `mmap` there of a descriptor below
    /// `RESERVE_FD` (shared, fixed, no `PROT_EXEC`: the child holds no
    /// descriptor there but the files the monitor sent it), `munmap`,
    /// `mprotect` without `PROT_EXEC` and `msync` there, `close` of a
    /// descriptor below `RESERVE_FD`, and `recvmsg` on
    /// `FILEMAP_CHANNEL_FD` are allowed natively.
    pub filemap: [u64; 2],
}

/// `mprotect` rules for `p` (the `prot` condition in each).
fn mprotect_rules(p: &Protectable) -> Result<Vec<SeccompRule>, FilterError> {
    let no_exec = || -> Result<SeccompCondition, FilterError> {
        Ok(SeccompCondition::new(2, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(!3u64), 0)?)
    };
    let mut rules = Vec::new();
    for &[start, len] in p.ranges.iter().filter(|r| r[1] != 0) {
        rules.push(SeccompRule::new(vec![
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Ge, start)?,
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Lt, start + len)?,
            no_exec()?,
        ])?);
    }
    let [start, len] = p.pages;
    let mut page = start;
    while len != 0 && page < start + len {
        rules.push(SeccompRule::new(vec![
            eq64(0, page)?,
            SeccompCondition::new(1, SeccompCmpArgLen::Qword, SeccompCmpOp::Le, start + len - page)?,
            no_exec()?,
        ])?);
        page += 4096;
    }
    Ok(rules)
}

/// The allowed calls of a domain whose ring doorbells are at `sq_doorbell`
/// and `cq_doorbell` (domain addresses), as seccompiler rules: a number
/// with no rule is allowed whatever its arguments, one with rules when any
/// rule matches. Clock reads in `checked` (the calls the policy does not
/// plainly allow) are left out, so they are trapped.
pub fn rules(
    _sq_doorbell: u64,
    _cq_doorbell: u64,
    checked: &CallSet,
    protectable: &Protectable,
) -> Result<BTreeMap<i64, Vec<SeccompRule>>, FilterError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [
        libc::SYS_exit,
        libc::SYS_exit_group,
        // The libos's handlers run on its private stack.
        libc::SYS_sigaltstack,
        libc::SYS_futex,
        libc::SYS_set_robust_list,
        libc::SYS_set_tid_address,
        libc::SYS_gettid,
        libc::SYS_sched_yield,
        // Job control (docs/processes.md): a stop (SIGSTOP from the
        // monitor) interrupts an allowed call the kernel then resumes with
        // `restart_syscall` (a futex wait with a timeout, a clock sleep).
        // It resumes only what the kernel interrupted; made by hand
        // without one it answers EINTR.
        libc::SYS_restart_syscall,
    ] {
        rules.insert(nr, Vec::new());
    }
    // The libos's kernel handlers put back the interrupted mask with this
    // exact form when they return (`rt_sigreturn` is killed: compile).
    rules.insert(
        libc::SYS_rt_sigprocmask,
        vec![SeccompRule::new(vec![
            eq32(0, SIG_SETMASK)?,
            eq64(2, 0)?,
            eq64(3, 8)?,
            eq64(4, cabin_abi::boot::KERNEL_MASK_MAGIC)?,
        ])?],
    );
    rules.insert(libc::SYS_clone, vec![SeccompRule::new(vec![thread_flags(0)?])?]);
    for nr in CLOCK_READS.into_iter().filter(|&n| !checked.contains(n as u64)) {
        rules.insert(nr, Vec::new());
    }
    rules.insert(
        libc::SYS_arch_prctl,
        vec![SeccompRule::new(vec![eq64(0, ARCH_SET_FS)?])?, SeccompRule::new(vec![eq64(0, ARCH_SET_GS)?])?],
    );
    let sigaction = signal_runs(&LIBOS_SIGNALS).into_iter().map(|[first, last]| {
        let rule = if first == last {
            vec![eq32(0, first)?]
        } else {
            vec![
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ge, first)?,
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Le, last)?,
            ]
        };
        Ok(SeccompRule::new(rule)?)
    });
    rules.insert(libc::SYS_rt_sigaction, sigaction.collect::<Result<_, FilterError>>()?);
    let mprotect = mprotect_rules(protectable)?;
    if !mprotect.is_empty() {
        rules.insert(libc::SYS_mprotect, mprotect);
    }
    let [start, len] = protectable.reserve;
    if len != 0 {
        let in_reserve = || -> Result<Vec<SeccompCondition>, FilterError> {
            Ok(vec![
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Ge, start)?,
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Lt, start + len)?,
                SeccompCondition::new(1, SeccompCmpArgLen::Qword, SeccompCmpOp::Le, len)?,
            ])
        };
        let mut mmap = in_reserve()?;
        mmap.push(SeccompCondition::new(2, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(!3u64), 0)?);
        mmap.push(eq32(3, (libc::MAP_SHARED | libc::MAP_FIXED) as u64)?);
        mmap.push(eq32(4, cabin_abi::boot::RESERVE_FD)?);
        let off = protectable.arena_file_offset;
        mmap.push(SeccompCondition::new(5, SeccompCmpArgLen::Qword, SeccompCmpOp::Ge, off)?);
        rules.insert(libc::SYS_mmap, vec![SeccompRule::new(mmap)?]);
        rules.insert(libc::SYS_munmap, vec![SeccompRule::new(in_reserve()?)?]);
    }
    let [start, len] = protectable.shared;
    if len != 0 {
        let in_window = || -> Result<Vec<SeccompCondition>, FilterError> {
            Ok(vec![
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Ge, start)?,
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Lt, start + len)?,
                SeccompCondition::new(1, SeccompCmpArgLen::Qword, SeccompCmpOp::Le, len)?,
            ])
        };
        let mut mmap = in_window()?;
        mmap.push(SeccompCondition::new(2, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(!3u64), 0)?);
        mmap.push(eq32(3, (libc::MAP_SHARED | libc::MAP_FIXED) as u64)?);
        mmap.push(eq32(4, cabin_abi::boot::SHARED_FD)?);
        rules.entry(libc::SYS_mmap).or_default().push(SeccompRule::new(mmap)?);
        rules.entry(libc::SYS_munmap).or_default().push(SeccompRule::new(in_window()?)?);
    }
    let [start, len] = protectable.filemap;
    if len != 0 {
        let in_range = || -> Result<Vec<SeccompCondition>, FilterError> {
            Ok(vec![
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Ge, start)?,
                SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::Lt, start + len)?,
                SeccompCondition::new(1, SeccompCmpArgLen::Qword, SeccompCmpOp::Le, len)?,
            ])
        };
        let no_exec = || SeccompCondition::new(2, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(!3u64), 0);
        // The kernel takes the low 32 bits of a descriptor argument.
        let sent_fd = |arg: u8| {
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Lt, cabin_abi::boot::RESERVE_FD)
        };
        let mut mmap = in_range()?;
        mmap.push(no_exec()?);
        mmap.push(eq32(3, (libc::MAP_SHARED | libc::MAP_FIXED) as u64)?);
        mmap.push(sent_fd(4)?);
        rules.entry(libc::SYS_mmap).or_default().push(SeccompRule::new(mmap)?);
        rules.entry(libc::SYS_munmap).or_default().push(SeccompRule::new(in_range()?)?);
        let mut mprotect = in_range()?;
        mprotect.push(no_exec()?);
        rules.entry(libc::SYS_mprotect).or_default().push(SeccompRule::new(mprotect)?);
        rules.entry(libc::SYS_msync).or_default().push(SeccompRule::new(in_range()?)?);
        // The libos's own close and recvmsg carry FILEMAP_NATIVE_MAGIC in an
        // argument the call ignores: the program's (trap path) are its
        // virtual descriptors' and must reach the libos.
        let magic = |arg: u8| eq64(arg, cabin_abi::boot::FILEMAP_NATIVE_MAGIC);
        rules.entry(libc::SYS_close).or_default().push(SeccompRule::new(vec![sent_fd(0)?, magic(1)?])?);
        let channel = eq32(0, cabin_abi::boot::FILEMAP_CHANNEL_FD)?;
        rules.entry(libc::SYS_recvmsg).or_default().push(SeccompRule::new(vec![channel, magic(3)?])?);
        // Connected sockets arrive on the same channel.
        socket_rules(&mut rules)?;
    }
    Ok(rules)
}

/// The flags the libos's native receives may carry (`MSG_DONTWAIT`, always
/// set, and the program's `MSG_PEEK`).
pub const NATIVE_RECV_FLAGS: u64 = (libc::MSG_DONTWAIT | libc::MSG_PEEK) as u64;
/// The flags its native sends may carry (`MSG_DONTWAIT` and `MSG_NOSIGNAL`,
/// always set, and the program's `MSG_MORE`): never `MSG_FASTOPEN`, the one
/// flag with which a TCP send can connect.
pub const NATIVE_SEND_FLAGS: u64 = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE) as u64;

/// The direct data plane of connected sockets (docs/networking.md): the
/// libos's own data calls on the connected-socket range
/// `[NET_NATIVE_BASE, NET_NATIVE_BASE + NET_NATIVE_COUNT)`, each only with
/// `NET_NATIVE_MAGIC` in an argument the call ignores: `recvfrom`/`sendto`
/// with a NULL address (magic in the address length), `recvmsg`/`sendmsg`
/// (magic in the fourth argument), flags within [`NATIVE_RECV_FLAGS`] /
/// [`NATIVE_SEND_FLAGS`]; `close` and `fcntl(F_GETFL)` there; and `dup3`
/// of a sent descriptor (below `RESERVE_FD`) into the range with
/// `O_CLOEXEC`. Nothing here names an address or passes a descriptor on.
fn socket_rules(rules: &mut BTreeMap<i64, Vec<SeccompRule>>) -> Result<(), FilterError> {
    use cabin_abi::boot::{NET_NATIVE_BASE, NET_NATIVE_COUNT, NET_NATIVE_MAGIC, RESERVE_FD};
    // The kernel takes the low 32 bits of a descriptor or flags argument.
    let in_range = |arg: u8| -> Result<[SeccompCondition; 2], FilterError> {
        Ok([
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Ge, NET_NATIVE_BASE)?,
            SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Lt,
                NET_NATIVE_BASE + NET_NATIVE_COUNT,
            )?,
        ])
    };
    let flags_within = |arg: u8, allowed: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(!allowed & 0xffff_ffff), 0)
    };
    let magic = |arg: u8| eq64(arg, NET_NATIVE_MAGIC);
    let mut rule = |nr: i64, extra: Vec<SeccompCondition>| -> Result<(), FilterError> {
        let mut c = in_range(0)?.to_vec();
        c.extend(extra);
        rules.entry(nr).or_default().push(SeccompRule::new(c)?);
        Ok(())
    };
    rule(libc::SYS_recvfrom, vec![flags_within(3, NATIVE_RECV_FLAGS)?, eq64(4, 0)?, magic(5)?])?;
    rule(libc::SYS_sendto, vec![flags_within(3, NATIVE_SEND_FLAGS)?, eq64(4, 0)?, magic(5)?])?;
    rule(libc::SYS_recvmsg, vec![flags_within(2, NATIVE_RECV_FLAGS)?, magic(3)?])?;
    rule(libc::SYS_sendmsg, vec![flags_within(2, NATIVE_SEND_FLAGS)?, magic(3)?])?;
    rule(libc::SYS_close, vec![magic(1)?])?;
    rule(libc::SYS_fcntl, vec![eq32(1, libc::F_GETFL as u64)?, magic(2)?])?;
    let mut dup3 = vec![SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Lt, RESERVE_FD)?];
    dup3.extend(in_range(1)?);
    dup3.push(eq32(2, libc::O_CLOEXEC as u64)?);
    dup3.push(magic(3)?);
    rules.entry(libc::SYS_dup3).or_default().push(SeccompRule::new(dup3)?);
    Ok(())
}

/// Builds the filter for a domain whose ring doorbells are at `sq_doorbell`
/// and `cq_doorbell` (domain addresses); clock reads in `checked` (the
/// calls the policy does not plainly allow) are trapped. A filter is a
/// function of these inputs alone, and a run builds the same one again and
/// again (the root, every `execve` of an image, every child process): the
/// last [`BUILT_KEPT`] built in this process are kept by their inputs (the
/// whole of them: nothing else decides the filter) and handed out again.
/// Kept in memory only, so nothing outside this process can change one.
pub fn filter(
    sq_doorbell: u64,
    cq_doorbell: u64,
    checked: &CallSet,
    protectable: &Protectable,
) -> Result<Vec<SockFilter>, FilterError> {
    let key = (sq_doorbell, cq_doorbell, *checked, *protectable);
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(i) = built.iter().position(|(k, _)| *k == key) {
        let entry = built.remove(i);
        let prog = entry.1.clone();
        built.push(entry);
        return Ok(prog);
    }
    let prog = compile(rules(sq_doorbell, cq_doorbell, checked, protectable)?)?;
    if built.len() >= BUILT_KEPT {
        built.remove(0);
    }
    built.push((key, prog.clone()));
    Ok(prog)
}

/// What decides a filter: [`filter`]'s arguments.
type FilterKey = (u64, u64, CallSet, Protectable);

/// How many filters [`filter`] keeps.
const BUILT_KEPT: usize = 8;

/// The filters [`filter`] built, oldest first.
static BUILT: std::sync::Mutex<Vec<(FilterKey, Vec<SockFilter>)>> = std::sync::Mutex::new(Vec::new());

/// Compiles `rules` (a matching call is allowed, any other trapped) for
/// x86-64, behind a check that traps calls of any other ABI.
///
/// Between the two sits a dispatch on the call number ([`dispatch`]): a
/// number with no rule is trapped there after a binary search of a few
/// compares, instead of walking seccompiler's chain (a compare per number
/// and a hop per rule, every number and rule in turn); a number with rules
/// goes on to seccompiler's program, which decides it exactly as without
/// the dispatch (the numbers it would trap are the ones the dispatch
/// traps: seccompiler's default for a number it has no chain for is the
/// same `SECCOMP_RET_TRAP`).
pub fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<Vec<SockFilter>, FilterError> {
    let numbers: Vec<u32> = rules.keys().filter_map(|&n| u32::try_from(n).ok()).collect();
    let allowed = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64)?;
    let program: BpfProgram = allowed.try_into()?;
    // seccompiler's program starts by killing the process on a foreign
    // `seccomp_data.arch` (i386 `int 0x80` calls); trap those instead, so
    // the libos can translate them. Then kill every x86-64 `rt_sigreturn`
    // (Linux would load PKRU from the frame: docs/execute-only.md).
    // Straight-line: no offset to get wrong.
    let mut out = vec![
        SockFilter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: OFF_ARCH },
        SockFilter { code: BPF_JEQ_K, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 },
        SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_TRAP },
        SockFilter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: OFF_NR },
        SockFilter { code: BPF_JEQ_K, jt: 0, jf: 1, k: libc::SYS_rt_sigreturn as u32 },
        SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_KILL_PROCESS },
    ];
    out.extend(dispatch(&numbers)?);
    out.extend(program);
    Ok(out)
}

/// Numbers a leaf of [`dispatch`]'s search compares one by one.
const DISPATCH_LEAF: usize = 4;

/// The call-number dispatch (the number is in the accumulator): falls
/// through, past its own end, for a number in `numbers` (sorted), returns
/// `SECCOMP_RET_TRAP` for any other. A binary search on `BPF_JGE`, leaves
/// of at most [`DISPATCH_LEAF`] `BPF_JEQ`s each followed by the trap. Every
/// jump is forward and its offset is checked to fit its 8 bits.
fn dispatch(numbers: &[u32]) -> Result<Vec<SockFilter>, FilterError> {
    /// An instruction, or a `BPF_JEQ` to the end of the dispatch.
    enum Ins {
        Plain(SockFilter),
        EqGoOn(u32),
    }
    fn search(numbers: &[u32], out: &mut Vec<Ins>) -> Result<(), FilterError> {
        if numbers.len() <= DISPATCH_LEAF {
            out.extend(numbers.iter().map(|&n| Ins::EqGoOn(n)));
            out.push(Ins::Plain(SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_TRAP }));
            return Ok(());
        }
        let (low, high) = numbers.split_at(numbers.len() / 2);
        let at = out.len();
        out.push(Ins::Plain(SockFilter { code: BPF_JGE_K, jt: 0, jf: 0, k: high[0] }));
        search(low, out)?;
        // `nr >= high[0]`: skip the lower half's code.
        let skip = out.len() - at - 1;
        let jt = u8::try_from(skip).map_err(|_| FilterError::JumpTooFar(skip))?;
        out[at] = Ins::Plain(SockFilter { code: BPF_JGE_K, jt, jf: 0, k: high[0] });
        search(high, out)
    }
    let mut code = Vec::new();
    search(numbers, &mut code)?;
    let len = code.len();
    code.into_iter()
        .enumerate()
        .map(|(i, ins)| match ins {
            Ins::Plain(f) => Ok(f),
            Ins::EqGoOn(n) => {
                // To the instruction after the dispatch.
                let skip = len - i - 1;
                let jt = u8::try_from(skip).map_err(|_| FilterError::JumpTooFar(skip))?;
                Ok(SockFilter { code: BPF_JEQ_K, jt, jf: 0, k: n })
            }
        })
        .collect()
}

/// A small classic-BPF interpreter for the instructions seccompiler emits
/// (loads of `seccomp_data`, `and`, conditional and unconditional forward
/// jumps, returns), so tests can check the filter without installing it.
/// Anything else, and running off the end, is `SECCOMP_RET_KILL_PROCESS`.
pub fn evaluate(prog: &[SockFilter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc = 0u32;
    let mut pc = 0usize;
    while let Some(ins) = prog.get(pc) {
        let cond = |taken: bool| 1 + usize::from(if taken { ins.jt } else { ins.jf });
        let step = match ins.code {
            BPF_LD_W_ABS => {
                let o = ins.k as usize;
                let Some(word) = data.get(o..o.saturating_add(4)) else { return SECCOMP_RET_KILL_PROCESS };
                acc = u32::from_le_bytes(word.try_into().unwrap_or([0; 4]));
                1
            }
            BPF_ALU_AND_K => {
                acc &= ins.k;
                1
            }
            BPF_JA => 1 + ins.k as usize,
            BPF_JEQ_K => cond(acc == ins.k),
            BPF_JGT_K => cond(acc > ins.k),
            BPF_JGE_K => cond(acc >= ins.k),
            BPF_RET_K => return ins.k,
            _ => return SECCOMP_RET_KILL_PROCESS,
        };
        pc = pc.saturating_add(step);
    }
    SECCOMP_RET_KILL_PROCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQ: u64 = 0x2000_0000_1084;
    const CQ: u64 = 0x2000_0000_1104;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;

    /// Protectable ranges like a real domain's: arena, brk, stack, RELRO.
    const PROT: Protectable = Protectable {
        ranges: [
            [0x2002_0000_0000, 0x1000_0000],
            [0x2001_0000_0000, 0x100_0000],
            [0x2000_4000_0000, 0x80_0000],
            [RESV, RESV_LEN],
        ],
        pages: [0x4c_0000, 0x3000],
        reserve: [RESV, RESV_LEN],
        arena_file_offset: ARENA_OFF,
        shared: [WIN, WIN_LEN],
        filemap: [FMAP, FMAP_LEN],
    };
    const FMAP: u64 = 0x5000_0000_0000;
    const FMAP_LEN: u64 = 1 << 30;
    const WIN: u64 = 0x4000_0000_0000;
    const WIN_LEN: u64 = 1 << 30;
    const RESV: u64 = 0x3000_0000_0000;
    const RESV_LEN: u64 = 68 << 30;
    const ARENA_OFF: u64 = 0x900_0000;

    #[test]
    fn mmap_and_munmap_only_of_arena_pages_in_the_reservation_space() {
        let f = filter(SQ, CQ, &CallSet::EMPTY);
        let mmap = |a: [u64; 6]| evaluate(&f, libc::SYS_mmap as u32, AUDIT_ARCH_X86_64, a);
        let sf = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        let fd = cabin_abi::boot::RESERVE_FD;
        assert_eq!(mmap([RESV, 4096, 3, sf, fd, ARENA_OFF]), SECCOMP_RET_ALLOW);
        assert_eq!(
            mmap([RESV + RESV_LEN - 4096, RESV_LEN, 0, sf, fd, ARENA_OFF + (1 << 40)]),
            SECCOMP_RET_ALLOW
        );
        for (what, a) in [
            ("exec", [RESV, 4096, 7, sf, fd, ARENA_OFF]),
            ("exec only", [RESV, 4096, 4, sf, fd, ARENA_OFF]),
            ("high prot bits", [RESV, 4096, (1 << 32) | 3, sf, fd, ARENA_OFF]),
            (
                "below the arena in the memfd (code, boot page, ring)",
                [RESV, 4096, 3, sf, fd, ARENA_OFF - 4096],
            ),
            ("offset 0", [RESV, 4096, 3, sf, fd, 0]),
            ("another descriptor", [RESV, 4096, 3, sf, 3, ARENA_OFF]),
            ("private", [RESV, 4096, 3, (libc::MAP_PRIVATE | libc::MAP_FIXED) as u64, fd, ARENA_OFF]),
            ("anonymous", [RESV, 4096, 3, sf | libc::MAP_ANONYMOUS as u64, u64::MAX, 0]),
            ("not fixed", [RESV, 4096, 3, libc::MAP_SHARED as u64, fd, ARENA_OFF]),
            ("below the space", [RESV - 4096, 8192, 3, sf, fd, ARENA_OFF]),
            ("past the space", [RESV + RESV_LEN, 4096, 3, sf, fd, ARENA_OFF]),
            ("too long", [RESV, RESV_LEN + 4096, 3, sf, fd, ARENA_OFF]),
            ("over the code", [0x40_1000, 4096, 3, sf, fd, ARENA_OFF]),
        ] {
            assert_eq!(mmap(a), SECCOMP_RET_TRAP, "{what}");
        }
        let munmap =
            |a: u64, l: u64| evaluate(&f, libc::SYS_munmap as u32, AUDIT_ARCH_X86_64, [a, l, 0, 0, 0, 0]);
        assert_eq!(munmap(RESV, RESV_LEN), SECCOMP_RET_ALLOW);
        assert_eq!(munmap(RESV - 4096, 4096), SECCOMP_RET_TRAP);
        assert_eq!(munmap(0x40_1000, 4096), SECCOMP_RET_TRAP);
        assert_eq!(munmap(RESV, RESV_LEN + 1), SECCOMP_RET_TRAP);
    }

    #[test]
    fn the_shared_window_is_mapped_only_inside_it_shared_and_never_executable() {
        let f = filter(SQ, CQ, &CallSet::EMPTY);
        let mmap = |a: [u64; 6]| evaluate(&f, libc::SYS_mmap as u32, AUDIT_ARCH_X86_64, a);
        let sf = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        let fd = cabin_abi::boot::SHARED_FD;
        assert_eq!(mmap([WIN, 4096, 3, sf, fd, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(mmap([WIN + WIN_LEN - 4096, 4096, 1, sf, fd, WIN_LEN - 4096]), SECCOMP_RET_ALLOW);
        for (what, a) in [
            ("exec", [WIN, 4096, 7, sf, fd, 0]),
            ("exec only", [WIN, 4096, 4, sf, fd, 0]),
            ("high prot bits", [WIN, 4096, (1 << 32) | 3, sf, fd, 0]),
            ("private", [WIN, 4096, 3, (libc::MAP_PRIVATE | libc::MAP_FIXED) as u64, fd, 0]),
            ("not fixed", [WIN, 4096, 3, libc::MAP_SHARED as u64, fd, 0]),
            ("below the window", [WIN - 4096, 4096, 3, sf, fd, 0]),
            ("past the window", [WIN + WIN_LEN, 4096, 3, sf, fd, 0]),
            ("too long", [WIN, WIN_LEN + 4096, 3, sf, fd, 0]),
            ("over the code", [0x40_1000, 4096, 3, sf, fd, 0]),
            ("in the reservation space", [RESV, 4096, 3, sf, fd, ARENA_OFF]),
            ("the domain memfd in the window", [WIN, 4096, 3, sf, cabin_abi::boot::RESERVE_FD, ARENA_OFF]),
            ("anonymous", [WIN, 4096, 3, sf | libc::MAP_ANONYMOUS as u64, u64::MAX, 0]),
        ] {
            assert_eq!(mmap(a), SECCOMP_RET_TRAP, "{what}");
        }
        let munmap =
            |a: u64, l: u64| evaluate(&f, libc::SYS_munmap as u32, AUDIT_ARCH_X86_64, [a, l, 0, 0, 0, 0]);
        assert_eq!(munmap(WIN, 4096), SECCOMP_RET_ALLOW);
        assert_eq!(munmap(WIN - 4096, 4096), SECCOMP_RET_TRAP);
        assert_eq!(munmap(WIN, WIN_LEN + 1), SECCOMP_RET_TRAP);
        let mprotect = |a: u64, p: u64| {
            evaluate(&f, libc::SYS_mprotect as u32, AUDIT_ARCH_X86_64, [a, 4096, p, 0, 0, 0])
        };
        assert_eq!(mprotect(WIN, 7), SECCOMP_RET_TRAP, "the window is never made executable natively");
        assert_eq!(mprotect(WIN, 3), SECCOMP_RET_TRAP, "nor re-protected natively at all");
    }

    #[test]
    fn sent_files_are_mapped_only_in_the_file_range_shared_and_never_executable() {
        let f = filter(SQ, CQ, &CallSet::EMPTY);
        let call = |nr: i64, a: [u64; 6]| evaluate(&f, nr as u32, AUDIT_ARCH_X86_64, a);
        let mmap = |a: [u64; 6]| call(libc::SYS_mmap, a);
        let sf = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        assert_eq!(mmap([FMAP, 4096, 3, sf, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(mmap([FMAP + FMAP_LEN - 4096, 4096, 1, sf, 999, 1 << 40]), SECCOMP_RET_ALLOW);
        assert_eq!(mmap([FMAP, 4096, 3, sf, (1 << 32) | 5, 0]), SECCOMP_RET_ALLOW, "the kernel reads fd 5");
        for (what, a) in [
            ("exec", [FMAP, 4096, 7, sf, 3, 0]),
            ("exec only", [FMAP, 4096, 4, sf, 3, 0]),
            ("high prot bits", [FMAP, 4096, (1 << 32) | 3, sf, 3, 0]),
            ("private", [FMAP, 4096, 3, (libc::MAP_PRIVATE | libc::MAP_FIXED) as u64, 3, 0]),
            ("not fixed", [FMAP, 4096, 3, libc::MAP_SHARED as u64, 3, 0]),
            ("below the range", [FMAP - 4096, 4096, 3, sf, 3, 0]),
            ("past the range", [FMAP + FMAP_LEN, 4096, 3, sf, 3, 0]),
            ("too long", [FMAP, FMAP_LEN + 4096, 3, sf, 3, 0]),
            ("over the code", [0x40_1000, 4096, 3, sf, 3, 0]),
            ("the domain memfd", [FMAP, 4096, 3, sf, cabin_abi::boot::RESERVE_FD, 0]),
            ("the window memfd", [FMAP, 4096, 3, sf, cabin_abi::boot::SHARED_FD, 0]),
            ("the channel", [FMAP, 4096, 3, sf, cabin_abi::boot::FILEMAP_CHANNEL_FD, 0]),
            ("fd -1", [FMAP, 4096, 3, sf, u64::MAX, 0]),
            ("anonymous", [FMAP, 4096, 3, sf | libc::MAP_ANONYMOUS as u64, 3, 0]),
        ] {
            assert_eq!(mmap(a), SECCOMP_RET_TRAP, "{what}");
        }
        assert_eq!(call(libc::SYS_munmap, [FMAP, 4096, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(call(libc::SYS_munmap, [FMAP - 4096, 4096, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(call(libc::SYS_munmap, [FMAP, FMAP_LEN + 1, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        for prot in [0, 1, 2, 3] {
            assert_eq!(call(libc::SYS_mprotect, [FMAP, 4096, prot, 0, 0, 0]), SECCOMP_RET_ALLOW);
        }
        for prot in [4, 5, 7, 1 << 32, u64::MAX] {
            assert_eq!(call(libc::SYS_mprotect, [FMAP, 4096, prot, 0, 0, 0]), SECCOMP_RET_TRAP, "{prot:#x}");
        }
        assert_eq!(call(libc::SYS_mprotect, [FMAP, FMAP_LEN + 1, 3, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(call(libc::SYS_msync, [FMAP, 4096, 4, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(call(libc::SYS_msync, [WIN, 4096, 4, 0, 0, 0]), SECCOMP_RET_TRAP);
        let magic = cabin_abi::boot::FILEMAP_NATIVE_MAGIC;
        assert_eq!(call(libc::SYS_close, [3, magic, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        // The program's own close (trap path) is its virtual descriptor's.
        assert_eq!(call(libc::SYS_close, [3, 0, 0, 0, 0, 0]), SECCOMP_RET_TRAP, "close without the mark");
        for fd in
            [cabin_abi::boot::RESERVE_FD, cabin_abi::boot::SHARED_FD, cabin_abi::boot::FILEMAP_CHANNEL_FD]
        {
            assert_eq!(call(libc::SYS_close, [fd, magic, 0, 0, 0, 0]), SECCOMP_RET_TRAP, "close {fd}");
        }
        let channel = cabin_abi::boot::FILEMAP_CHANNEL_FD;
        assert_eq!(call(libc::SYS_recvmsg, [channel, 0x1000, 0x40, magic, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(call(libc::SYS_recvmsg, [channel, 0x1000, 0x40, 0, 0, 0]), SECCOMP_RET_TRAP, "no mark");
        assert_eq!(call(libc::SYS_recvmsg, [3, 0x1000, 0, magic, 0, 0]), SECCOMP_RET_TRAP);
        for nr in [libc::SYS_read, libc::SYS_write, libc::SYS_ftruncate, libc::SYS_fchmod, libc::SYS_sendmsg]
        {
            assert_eq!(call(nr, [3, 0x1000, 16, 0, 0, 0]), SECCOMP_RET_TRAP, "{nr} on a sent file");
            assert_eq!(call(nr, [channel, 0x1000, 16, 0, 0, 0]), SECCOMP_RET_TRAP, "{nr} on the channel");
        }
        // Without a range: none of it.
        let none = super::filter(SQ, CQ, &CallSet::EMPTY, &Protectable { filemap: [0, 0], ..PROT })
            .expect("the filter builds");
        assert_eq!(
            evaluate(&none, libc::SYS_close as u32, AUDIT_ARCH_X86_64, [3, 0, 0, 0, 0, 0]),
            SECCOMP_RET_TRAP
        );
    }

    #[test]
    fn connected_sockets_are_used_natively_only_in_their_range_with_the_mark() {
        use cabin_abi::boot::{NET_NATIVE_BASE as B, NET_NATIVE_COUNT as N, NET_NATIVE_MAGIC as M};
        let f = filter(SQ, CQ, &CallSet::EMPTY);
        let run = |nr: i64, args: [u64; 6]| evaluate(&f, nr as u32, AUDIT_ARCH_X86_64, args);
        let (dw, ns) = (libc::MSG_DONTWAIT as u64, libc::MSG_NOSIGNAL as u64);
        let last = B + N - 1;
        for fd in [B, B + 7, last, (1 << 32) | B] {
            assert_eq!(run(libc::SYS_recvfrom, [fd, 0x1000, 64, dw, 0, M]), SECCOMP_RET_ALLOW, "{fd}");
            assert_eq!(run(libc::SYS_recvfrom, [fd, 0x1000, 64, dw | 2, 0, M]), SECCOMP_RET_ALLOW, "peek");
            assert_eq!(run(libc::SYS_sendto, [fd, 0x1000, 64, dw | ns, 0, M]), SECCOMP_RET_ALLOW);
            assert_eq!(run(libc::SYS_sendto, [fd, 0x1000, 64, dw | ns | 0x8000, 0, M]), SECCOMP_RET_ALLOW);
            assert_eq!(run(libc::SYS_recvmsg, [fd, 0x1000, dw, M, 0, 0]), SECCOMP_RET_ALLOW);
            assert_eq!(run(libc::SYS_sendmsg, [fd, 0x1000, dw | ns, M, 0, 0]), SECCOMP_RET_ALLOW);
            assert_eq!(run(libc::SYS_close, [fd, M, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
            assert_eq!(run(libc::SYS_fcntl, [fd, libc::F_GETFL as u64, M, 0, 0, 0]), SECCOMP_RET_ALLOW);
        }
        let cloexec = libc::O_CLOEXEC as u64;
        assert_eq!(run(libc::SYS_dup3, [5, B + 5, cloexec, M, 0, 0]), SECCOMP_RET_ALLOW);
        // Outside the range: below (the program's own numbers, the reserved
        // descriptors 1000-1002), past it.
        for fd in [0, 1, 2, 3, 999, 1000, 1001, 1002, B - 1, B + N, u32::MAX as u64] {
            assert_eq!(run(libc::SYS_recvfrom, [fd, 0x1000, 64, dw, 0, M]), SECCOMP_RET_TRAP, "{fd}");
            assert_eq!(run(libc::SYS_sendto, [fd, 0x1000, 64, dw | ns, 0, M]), SECCOMP_RET_TRAP, "{fd}");
            assert_eq!(run(libc::SYS_sendmsg, [fd, 0x1000, dw, M, 0, 0]), SECCOMP_RET_TRAP, "{fd}");
            if fd >= 1000 {
                assert_eq!(run(libc::SYS_close, [fd, M, 0, 0, 0, 0]), SECCOMP_RET_TRAP, "{fd}");
            }
            assert_eq!(
                run(libc::SYS_fcntl, [fd, libc::F_GETFL as u64, M, 0, 0, 0]),
                SECCOMP_RET_TRAP,
                "{fd}"
            );
            assert_eq!(run(libc::SYS_dup3, [5, fd, cloexec, M, 0, 0]), SECCOMP_RET_TRAP, "dup3 to {fd}");
        }
        // Without the mark, or the filemap mark instead.
        let fm = cabin_abi::boot::FILEMAP_NATIVE_MAGIC;
        for m in [0, fm, M ^ 1, M | (1 << 63)] {
            assert_eq!(run(libc::SYS_recvfrom, [B, 0x1000, 64, dw, 0, m]), SECCOMP_RET_TRAP);
            assert_eq!(run(libc::SYS_sendto, [B, 0x1000, 64, dw, 0, m]), SECCOMP_RET_TRAP);
            assert_eq!(run(libc::SYS_recvmsg, [B, 0x1000, dw, m, 0, 0]), SECCOMP_RET_TRAP);
            assert_eq!(run(libc::SYS_sendmsg, [B, 0x1000, dw, m, 0, 0]), SECCOMP_RET_TRAP);
            assert_eq!(run(libc::SYS_close, [B, m, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
            assert_eq!(run(libc::SYS_dup3, [5, B, cloexec, m, 0, 0]), SECCOMP_RET_TRAP);
        }
        // An address, MSG_FASTOPEN (a send that connects), MSG_ERRQUEUE,
        // MSG_WAITALL, other fcntl commands, dup3 from the range or the
        // reserved descriptors or without O_CLOEXEC: trapped.
        assert_eq!(run(libc::SYS_sendto, [B, 0x1000, 64, dw, 0x2000, M]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_recvfrom, [B, 0x1000, 64, dw, 0x2000, M]), SECCOMP_RET_TRAP);
        for flags in [0x2000_0000u64, 0x2000, 0x100, 0x4000_0000, 1 << 31] {
            assert_eq!(
                run(libc::SYS_sendto, [B, 0x1000, 64, dw | flags, 0, M]),
                SECCOMP_RET_TRAP,
                "{flags:#x}"
            );
            assert_eq!(
                run(libc::SYS_sendmsg, [B, 0x1000, dw | flags, M, 0, 0]),
                SECCOMP_RET_TRAP,
                "{flags:#x}"
            );
            assert_eq!(
                run(libc::SYS_recvmsg, [B, 0x1000, dw | flags, M, 0, 0]),
                SECCOMP_RET_TRAP,
                "{flags:#x}"
            );
        }
        for cmd in [libc::F_SETFL, libc::F_DUPFD, libc::F_DUPFD_CLOEXEC, libc::F_SETOWN] {
            assert_eq!(run(libc::SYS_fcntl, [B, cmd as u64, M, 0, 0, 0]), SECCOMP_RET_TRAP, "{cmd}");
        }
        for old in [B, B + 1, 1000, 1001, 1002] {
            assert_eq!(run(libc::SYS_dup3, [old, B + 3, cloexec, M, 0, 0]), SECCOMP_RET_TRAP, "{old}");
        }
        assert_eq!(run(libc::SYS_dup3, [5, B, 0, M, 0, 0]), SECCOMP_RET_TRAP);
        for nr in [
            libc::SYS_dup2,
            libc::SYS_dup,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_setsockopt,
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_shutdown,
        ] {
            assert_eq!(run(nr, [B, 0x1000, 16, M, M, M]), SECCOMP_RET_TRAP, "{nr}");
        }
        // Without a file channel: none of it.
        let none = super::filter(SQ, CQ, &CallSet::EMPTY, &Protectable { filemap: [0, 0], ..PROT })
            .expect("the filter builds");
        assert_eq!(
            evaluate(&none, libc::SYS_sendto as u32, AUDIT_ARCH_X86_64, [B, 0x1000, 64, dw | ns, 0, M]),
            SECCOMP_RET_TRAP
        );
    }

    fn filter(sq: u64, cq: u64, checked: &CallSet) -> Vec<SockFilter> {
        super::filter(sq, cq, checked, &PROT).expect("the filter builds")
    }

    #[test]
    fn mprotect_only_in_protectable_ranges_and_never_exec() {
        let f = filter(SQ, CQ, &CallSet::EMPTY);
        let run = |a: u64, l: u64, p: u64| {
            evaluate(&f, libc::SYS_mprotect as u32, AUDIT_ARCH_X86_64, [a, l, p, 0, 0, 0])
        };
        let [arena, arena_len] = PROT.ranges[0];
        for prot in [0, 1, 2, 3] {
            assert_eq!(run(arena, 4096, prot), SECCOMP_RET_ALLOW, "{prot}");
            assert_eq!(
                run(arena + arena_len - 4096, 1 << 40, prot),
                SECCOMP_RET_ALLOW,
                "nothing above the arena"
            );
            assert_eq!(run(0x4c_0000, 0x3000, prot), SECCOMP_RET_ALLOW);
            assert_eq!(run(0x4c_2000, 0x1000, prot), SECCOMP_RET_ALLOW);
        }
        for prot in [4, 5, 7, 0x100_0000, 0x200_0000, 1 << 32, (1 << 32) | 3, u64::MAX] {
            assert_eq!(run(arena, 4096, prot), SECCOMP_RET_TRAP, "prot {prot:#x}");
            assert_eq!(run(0x4c_0000, 0x1000, prot), SECCOMP_RET_TRAP, "prot {prot:#x}");
        }
        // Below and past every range; RELRO lengths that reach past it (the
        // libos's code follows the image's data).
        assert_eq!(run(arena - 4096, 8192, 3), SECCOMP_RET_TRAP);
        assert_eq!(run(arena + arena_len, 4096, 3), SECCOMP_RET_TRAP);
        assert_eq!(run(0x4c_0000, 0x4000, 1), SECCOMP_RET_TRAP);
        assert_eq!(run(0x4c_2000, 0x2000, 1), SECCOMP_RET_TRAP);
        assert_eq!(run(0x4c_1000, u64::MAX, 1), SECCOMP_RET_TRAP);
        assert_eq!(run(0x4c_0800, 0x1000, 1), SECCOMP_RET_TRAP, "only page starts");
        assert_eq!(run(0x4b_f000, 0x1000, 1), SECCOMP_RET_TRAP);
        assert_eq!(run(0x40_1000, 0x1000, 3), SECCOMP_RET_TRAP, "code");
        assert_eq!(run(SQ & !0xfff, 0x1000, 3), SECCOMP_RET_TRAP, "ring");
        assert_eq!(run(arena | (1 << 63), 4096, 3), SECCOMP_RET_TRAP);
        // Other memory calls stay trapped.
        for nr in
            [libc::SYS_mmap, libc::SYS_pkey_mprotect, libc::SYS_munmap, libc::SYS_mremap, libc::SYS_madvise]
        {
            assert_eq!(
                evaluate(&f, nr as u32, AUDIT_ARCH_X86_64, [arena, 4096, 3, 0x11, 0, 0]),
                SECCOMP_RET_TRAP
            );
        }
    }

    fn run(nr: i64, args: [u64; 6]) -> u32 {
        evaluate(&filter(SQ, CQ, &CallSet::EMPTY), nr as u32, AUDIT_ARCH_X86_64, args)
    }

    #[test]
    fn policy() {
        assert_eq!(run(libc::SYS_exit_group, [0; 6]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_rt_sigreturn, [0; 6]), SECCOMP_RET_KILL_PROCESS);
        // The other ABIs' sigreturns never reach the kernel either: x32's
        // rt_sigreturn (513) and i386's sigreturn (119) and rt_sigreturn
        // (173) are trapped (the libos answers ENOSYS).
        assert_eq!(run(0x4000_0000 | 513, [0; 6]), SECCOMP_RET_TRAP, "x32 rt_sigreturn");
        for nr in [119, 173] {
            assert_eq!(evaluate(&filter(SQ, CQ, &CallSet::EMPTY), nr, 0x4000_0003, [0; 6]), SECCOMP_RET_TRAP);
        }
        let magic = cabin_abi::boot::KERNEL_MASK_MAGIC;
        assert_eq!(run(libc::SYS_rt_sigprocmask, [2, 0x1000, 0, 8, magic, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_rt_sigprocmask, [2, 0x1000, 0, 8, 0, 0]), SECCOMP_RET_TRAP, "program's own");
        assert_eq!(run(libc::SYS_rt_sigprocmask, [0, 0x1000, 0, 8, magic, 0]), SECCOMP_RET_TRAP, "SIG_BLOCK");
        assert_eq!(
            run(libc::SYS_rt_sigprocmask, [2, 0x1000, 0x2000, 8, magic, 0]),
            SECCOMP_RET_TRAP,
            "oldset"
        );
        assert_eq!(run(libc::SYS_rt_sigprocmask, [2, 0x1000, 0, 16, magic, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_clock_gettime, [0; 6]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_write, [1, 0, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_openat, [0; 6]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_mmap, [0; 6]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_arch_prctl, [0x1002, 5, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_arch_prctl, [0x1001, 5, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_arch_prctl, [0x1003, 5, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_arch_prctl, [0x1_0000_1002, 5, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_futex, [SQ, 1, 1, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_futex, [0x1234, 9, 5, 0, 0, 0]), SECCOMP_RET_ALLOW);
        // glibc's pthread_create; Go's newosproc; fork; vfork; a thread
        // that asks for an exit signal or a new namespace.
        assert_eq!(run(libc::SYS_clone, [0x3d0f00, 1, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_clone, [0x50f00, 1, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_clone, [0x1200011, 0, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_clone, [0x4111, 0, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_clone, [0x3d0f11, 1, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_clone, [0x3d0f00 | 0x2000_0000, 1, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_clone, [0x1_003d_0f00, 1, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_clone3, [0, 88, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(thread_flag_sets().len(), 32);
        assert!(thread_flag_sets().into_iter().all(cabin_abi::thread::is_thread_flags));
        assert_eq!(run(libc::SYS_rt_sigaction, [libc::SIGSYS as u64, 0, 0, 8, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_rt_sigaction, [libc::SIGTRAP as u64, 0, 0, 8, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_rt_sigaction, [libc::SIGINT as u64, 0, 0, 8, 0, 0]), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_rt_sigaction, [libc::SIGCHLD as u64, 0, 0, 8, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(run(0x4000_0001, [0; 6]), SECCOMP_RET_TRAP, "x32");
        assert_eq!(
            evaluate(&filter(SQ, CQ, &CallSet::EMPTY), 1, 0x4000_0003, [0; 6]),
            SECCOMP_RET_TRAP,
            "i386"
        );
        // An i386 call whose number matches an allowed x86-64 one is still trapped.
        assert_eq!(evaluate(&filter(SQ, CQ, &CallSet::EMPTY), 60, 0x4000_0003, [0; 6]), SECCOMP_RET_TRAP);
    }

    #[test]
    fn clock_reads_the_policy_checks_are_trapped() {
        let mut checked = CallSet::EMPTY;
        checked.insert(libc::SYS_clock_gettime as u64);
        let f = filter(SQ, CQ, &checked);
        let run = |nr: i64| evaluate(&f, nr as u32, AUDIT_ARCH_X86_64, [1, 0x1000, 0, 0, 0, 0]);
        assert_eq!(run(libc::SYS_clock_gettime), SECCOMP_RET_TRAP);
        assert_eq!(run(libc::SYS_gettimeofday), SECCOMP_RET_ALLOW);
        assert_eq!(run(libc::SYS_exit_group), SECCOMP_RET_ALLOW);
        for nr in CLOCK_READS {
            assert_eq!(
                cabin_abi::syscalls::serve(nr as u64),
                cabin_abi::syscalls::Serve::LocalOrForwarded,
                "the table and the filter agree on clock reads"
            );
        }
    }

    /// A start in the file-mapping range and a length at most its own.
    fn in_files(a: [u64; 6]) -> bool {
        a[0] >= FMAP && a[0] < FMAP + FMAP_LEN && a[1] <= FMAP_LEN
    }

    /// What the filter must decide, written out plainly (the behaviour of
    /// the hand-assembled filter this one replaced).
    fn expected(nr: u32, arch: u32, a: [u64; 6], checked: &CallSet) -> u32 {
        if arch != AUDIT_ARCH_X86_64 {
            return SECCOMP_RET_TRAP;
        }
        let n = i64::from(nr);
        if n == libc::SYS_rt_sigreturn {
            return SECCOMP_RET_KILL_PROCESS;
        }
        let allowed = match n {
            libc::SYS_exit
            | libc::SYS_exit_group
            | libc::SYS_sigaltstack
            | libc::SYS_futex
            | libc::SYS_set_robust_list
            | libc::SYS_set_tid_address
            | libc::SYS_gettid
            | libc::SYS_sched_yield
            | libc::SYS_restart_syscall => true,
            _ if CLOCK_READS.contains(&n) => !checked.contains(n as u64),
            libc::SYS_arch_prctl => a[0] == ARCH_SET_FS || a[0] == ARCH_SET_GS,
            libc::SYS_clone => cabin_abi::thread::is_thread_flags(a[0]),
            libc::SYS_rt_sigprocmask => {
                a[0] as u32 == 2 && a[2] == 0 && a[3] == 8 && a[4] == cabin_abi::boot::KERNEL_MASK_MAGIC
            }
            libc::SYS_rt_sigaction => LIBOS_SIGNALS.contains(&(a[0] as u32 as i32)),
            libc::SYS_mprotect => {
                let in_range = PROT.ranges.iter().any(|&[s, l]| a[0] >= s && a[0] < s + l);
                let [ps, pl] = PROT.pages;
                let in_pages =
                    a[0] >= ps && a[0] < ps + pl && a[0].is_multiple_of(4096) && a[1] <= ps + pl - a[0];
                a[2] & !3 == 0 && (in_range || in_pages || in_files(a))
            }
            libc::SYS_msync => in_files(a),
            libc::SYS_close => {
                (a[0] as u32 as u64) < cabin_abi::boot::RESERVE_FD
                    && a[1] == cabin_abi::boot::FILEMAP_NATIVE_MAGIC
            }
            libc::SYS_recvmsg => {
                a[0] as u32 as u64 == cabin_abi::boot::FILEMAP_CHANNEL_FD
                    && a[3] == cabin_abi::boot::FILEMAP_NATIVE_MAGIC
            }
            _ => false,
        };
        if allowed {
            SECCOMP_RET_ALLOW
        } else {
            SECCOMP_RET_TRAP
        }
    }

    #[test]
    fn decides_every_case_as_written_out() {
        let mut some_clocks = CallSet::EMPTY;
        some_clocks.insert(libc::SYS_clock_gettime as u64);
        some_clocks.insert(libc::SYS_time as u64);
        let mut all_clocks = CallSet::EMPTY;
        for n in CLOCK_READS {
            all_clocks.insert(n as u64);
        }
        // Argument values on and around every constant the filter compares.
        let values: Vec<u64> =
            [0, 1, 2, 9, ARCH_SET_FS, ARCH_SET_GS, ARCH_SET_FS + (1 << 32), SQ, CQ, SQ + 4, CQ + (1 << 32)]
                .into_iter()
                .chain(LIBOS_SIGNALS.iter().map(|&s| s as u64))
                .chain([libc::SIGINT as u64, libc::SIGSYS as u64 | 1 << 32, 1 << 32, u64::MAX])
                .chain([0x3d0f00, 0x50f00, 0x3d0f11, 0x1_003d_0f00, 0x7d0f00])
                .chain([0x4c_0000, 0x4c_2000, 0x4c_3000, 0x3000, 0x2002_0000_0000, 0x2002_0000_0000 - 4096])
                .chain([
                    999,
                    1000,
                    1002,
                    cabin_abi::boot::FILEMAP_NATIVE_MAGIC,
                    (1 << 32) | 5,
                    FMAP,
                    FMAP - 1,
                    FMAP + FMAP_LEN - 4096,
                    FMAP_LEN + 1,
                ])
                .collect();
        let mut numbers: Vec<u32> = (0..=470).collect();
        numbers.extend([0x4000_0000, 0x4000_0000 | 60, 0x4000_0000 | 202, 0x7fff_ffff, u32::MAX]);
        let with_args = [
            libc::SYS_arch_prctl,
            libc::SYS_clone,
            libc::SYS_rt_sigaction,
            libc::SYS_mprotect,
            libc::SYS_msync,
            libc::SYS_close,
            libc::SYS_recvmsg,
        ]
        .map(|n| n as u32);
        let mut cases = 0u64;
        for checked in [CallSet::EMPTY, some_clocks, all_clocks] {
            let f = filter(SQ, CQ, &checked);
            for &arch in &[AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, 0] {
                for &nr in &numbers {
                    // Every pair of values for the calls decided by their
                    // arguments, a few for the others.
                    let n = if with_args.contains(&nr) { values.len() } else { 3 };
                    for &a0 in &values[..n] {
                        for &a1 in &values[..n] {
                            let a2 = if nr == libc::SYS_mprotect as u32 { (a0 ^ a1) % 8 } else { 7 };
                            let args = [a0, a1, a2, 8, 0, 0];
                            assert_eq!(
                                evaluate(&f, nr, arch, args),
                                expected(nr, arch, args, &checked),
                                "nr {nr} arch {arch:#x} args {args:x?}"
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert!(cases > 20_000, "{cases}");
    }

    /// The filter as it was built before the number dispatch and the
    /// merged `clone` and `rt_sigaction` rules (main 3a8657b): a rule per
    /// thread flag set and per signal, seccompiler's chain straight after
    /// the ABI and `rt_sigreturn` checks.
    fn filter_as_before(checked: &CallSet, p: &Protectable) -> Vec<SockFilter> {
        let mut rules = rules(SQ, CQ, checked, p).expect("rules");
        let clone = thread_flag_sets().into_iter().map(|f| SeccompRule::new(vec![eq64(0, f).expect("cond")]));
        rules.insert(libc::SYS_clone, clone.collect::<Result<_, _>>().expect("rules"));
        let sigaction =
            LIBOS_SIGNALS.iter().map(|&s| SeccompRule::new(vec![eq32(0, s as u64).expect("cond")]));
        rules.insert(libc::SYS_rt_sigaction, sigaction.collect::<Result<_, _>>().expect("rules"));
        let allowed =
            SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64)
                .expect("filter");
        let program: BpfProgram = allowed.try_into().expect("program");
        let mut out = compile(BTreeMap::new()).expect("prefix");
        // The empty filter: the six-instruction prefix, a dispatch that
        // traps everything (one return) and seccompiler's empty program.
        out.truncate(6);
        out.extend(program);
        out
    }

    /// The values an argument takes in [`the_filter_decides_as_before`]: on
    /// and around every constant any rule compares (the thread flag sets,
    /// the signals, the ranges' ends, the magic words), single bits, and
    /// pseudo-random words.
    fn probe_values(p: &Protectable) -> Vec<u64> {
        let mut v: Vec<u64> = vec![0, 1, 2, 3, 4, 7, 8, 9, u64::MAX, u64::MAX - 1, 1 << 63, u32::MAX as u64];
        v.extend((0..64).map(|b| 1u64 << b));
        let mut edges: Vec<u64> = vec![ARCH_SET_FS, ARCH_SET_GS, cabin_abi::boot::KERNEL_MASK_MAGIC];
        edges.extend([cabin_abi::boot::FILEMAP_NATIVE_MAGIC, cabin_abi::boot::NET_NATIVE_MAGIC]);
        edges.extend([
            cabin_abi::boot::RESERVE_FD,
            cabin_abi::boot::SHARED_FD,
            cabin_abi::boot::FILEMAP_CHANNEL_FD,
        ]);
        let net = cabin_abi::boot::NET_NATIVE_BASE;
        edges.extend([net, net + cabin_abi::boot::NET_NATIVE_COUNT]);
        edges.extend([NATIVE_RECV_FLAGS, NATIVE_SEND_FLAGS, libc::O_CLOEXEC as u64, libc::F_GETFL as u64]);
        edges.extend(LIBOS_SIGNALS.iter().map(|&s| s as u64));
        edges.extend(thread_flag_sets());
        for r in p.ranges.iter().chain([&p.pages, &p.reserve, &p.shared, &p.filemap]) {
            edges.extend([r[0], r[1], r[0].wrapping_add(r[1]), r[0].wrapping_add(r[1] / 2)]);
        }
        edges.push(p.arena_file_offset);
        for e in edges {
            for d in [0u64, 1, 4096, 1 << 32] {
                v.extend([e.wrapping_add(d), e.wrapping_sub(d)]);
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        v.extend((0..64).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }));
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The new filter allows, traps and kills exactly what the filter
    /// before this change did: every call number 0..=1023 and the x32 and
    /// foreign ones, each argument through every probe value with the
    /// others fixed at a sample of values, many pairs of values in the
    /// first two arguments, and every thread flag set with one bit
    /// flipped; for three clock policies and for domains with
    /// and without RELRO pages, file mappings and a shared window. A
    /// dropped or widened rule differs somewhere here.
    #[test]
    fn the_filter_decides_as_before() {
        let mut some_clocks = CallSet::EMPTY;
        some_clocks.insert(libc::SYS_clock_gettime as u64);
        let domains = [
            PROT,
            Protectable { filemap: [0, 0], shared: [0, 0], pages: [0, 0], ..PROT },
            Protectable { pages: [0x4c_0000, 0x8000], shared: [0, 0], ..PROT },
        ];
        let mut cases = 0u64;
        for (checked, p) in
            [(CallSet::EMPTY, &domains[0]), (some_clocks, &domains[1]), (CallSet::EMPTY, &domains[2])]
        {
            let new = super::filter(SQ, CQ, &checked, p).expect("the filter builds");
            let old = filter_as_before(&checked, p);
            assert!(new.len() < old.len(), "{} instructions, before {}", new.len(), old.len());
            let values = probe_values(p);
            let mut numbers: Vec<u32> = (0..1024).collect();
            numbers.extend([0x4000_0000, 0x4000_0000 | 56, 0x4000_0000 | 513, 0x7fff_ffff, u32::MAX]);
            let mut check = |nr: u32, arch: u32, a: [u64; 6]| {
                assert_eq!(
                    evaluate(&new, nr, arch, a),
                    evaluate(&old, nr, arch, a),
                    "nr {nr} arch {arch:#x} args {a:x?}"
                );
                cases += 1;
            };
            let decided: Vec<u32> =
                rules(SQ, CQ, &checked, p).expect("rules").keys().map(|&n| n as u32).collect();
            let bases: [[u64; 6]; 3] = [
                [0; 6],
                [
                    p.filemap[0],
                    4096,
                    3,
                    (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
                    5,
                    cabin_abi::boot::NET_NATIVE_MAGIC,
                ],
                [
                    cabin_abi::boot::NET_NATIVE_BASE,
                    0x1000,
                    0x40,
                    cabin_abi::boot::NET_NATIVE_MAGIC,
                    0,
                    cabin_abi::boot::NET_NATIVE_MAGIC,
                ],
            ];
            for &nr in &numbers {
                for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, 0] {
                    check(nr, arch, [0; 6]);
                }
                if !decided.contains(&nr) {
                    check(nr, AUDIT_ARCH_X86_64, bases[1]);
                    continue;
                }
                for base in bases {
                    for i in 0..6 {
                        for &v in &values {
                            let mut a = base;
                            a[i] = v;
                            check(nr, AUDIT_ARCH_X86_64, a);
                        }
                    }
                }
                for &a0 in &values {
                    for &a1 in values.iter().step_by(13) {
                        check(nr, AUDIT_ARCH_X86_64, [a0, a1, 3, 8, 0, 0]);
                    }
                }
            }
            // Every thread flag set with each bit more or less.
            for f in thread_flag_sets() {
                for b in 0..64 {
                    check(libc::SYS_clone as u32, AUDIT_ARCH_X86_64, [f ^ 1 << b, 0, 0, 0, 0, 0]);
                }
            }
        }
        assert!(cases > 1_000_000, "{cases}");
    }

    /// The dispatch passes on exactly its numbers, with every size of list.
    #[test]
    fn the_dispatch_passes_exactly_its_numbers() {
        for n in 0..80u32 {
            let numbers: Vec<u32> = (0..n).map(|i| 3 * i + 1).collect();
            let mut f = dispatch(&numbers).expect("dispatch");
            f.push(SockFilter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW });
            let mut prog = vec![SockFilter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: OFF_NR }];
            prog.extend(f);
            assert_jumps_in_range(&prog);
            for nr in 0..3 * n + 3 {
                let want = if numbers.contains(&nr) { SECCOMP_RET_ALLOW } else { SECCOMP_RET_TRAP };
                assert_eq!(evaluate(&prog, nr, AUDIT_ARCH_X86_64, [0; 6]), want, "{n} numbers, nr {nr}");
            }
        }
    }

    /// Every jump lands inside the program (the kernel's checker would
    /// refuse the filter otherwise), and the last instruction returns.
    fn assert_jumps_in_range(f: &[SockFilter]) {
        for (i, ins) in f.iter().enumerate() {
            let targets = match ins.code {
                BPF_RET_K | BPF_LD_W_ABS | BPF_ALU_AND_K => vec![],
                BPF_JA => vec![ins.k as usize],
                _ => vec![ins.jt as usize, ins.jf as usize],
            };
            for t in targets {
                assert!(i + 1 + t < f.len(), "instruction {i} jumps past the end");
            }
        }
        assert_eq!(f.last().map(|x| x.code), Some(BPF_RET_K));
    }

    #[test]
    fn jumps_are_in_range() {
        let mut all_clocks = CallSet::EMPTY;
        for n in CLOCK_READS {
            all_clocks.insert(n as u64);
        }
        for checked in [CallSet::EMPTY, all_clocks] {
            assert_jumps_in_range(&filter(SQ, CQ, &checked));
        }
    }

    /// A filter far longer than 256 instructions, with a rule whose
    /// conditions alone span more than 256: the hand assembler this replaced
    /// encoded every jump in the 8-bit `jt`/`jf` and silently made a longer
    /// one 0 (fall through). seccompiler never needs one: a call that does
    /// not match hops rule by rule with `BPF_JA`, each chain ends in its own
    /// returns, and a rule too long for an 8-bit offset gets helper jumps.
    #[test]
    fn long_filters_keep_their_far_jumps() {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for nr in 0..100i64 {
            let r = (0..3u64)
                .map(|k| SeccompRule::new(vec![eq64(0, 1000 + k).expect("cond"), eq32(1, k).expect("cond")]))
                .collect::<Result<Vec<_>, _>>()
                .expect("rule");
            rules.insert(nr, r);
        }
        // 90 conditions of 4 instructions each: args 0..6 == 0x1_0000_0000 + i.
        let long = (0..90u8).map(|i| eq64(i % 6, (1 << 32) + u64::from(i % 6)).expect("cond")).collect();
        rules.insert(400, vec![SeccompRule::new(long).expect("rule")]);
        let f = compile(rules).expect("compiles");
        assert!(f.len() > 2000, "{} instructions", f.len());
        assert_jumps_in_range(&f);
        let x86 = AUDIT_ARCH_X86_64;
        for nr in [0u32, 1, 50, 98, 99] {
            assert_eq!(evaluate(&f, nr, x86, [1000, 0, 0, 0, 0, 0]), SECCOMP_RET_ALLOW, "{nr}");
            assert_eq!(evaluate(&f, nr, x86, [1002, 2, 0, 0, 0, 0]), SECCOMP_RET_ALLOW, "{nr}");
            assert_eq!(evaluate(&f, nr, x86, [1002, 1, 0, 0, 0, 0]), SECCOMP_RET_TRAP, "{nr}");
            assert_eq!(evaluate(&f, nr, x86, [1003, 0, 0, 0, 0, 0]), SECCOMP_RET_TRAP, "{nr}");
        }
        assert_eq!(evaluate(&f, 100, x86, [1000, 0, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        assert_eq!(evaluate(&f, 0, AUDIT_ARCH_I386, [1000, 0, 0, 0, 0, 0]), SECCOMP_RET_TRAP);
        let good: [u64; 6] = std::array::from_fn(|i| (1 << 32) + i as u64);
        assert_eq!(evaluate(&f, 400, x86, good), SECCOMP_RET_ALLOW);
        for i in 0..6 {
            let mut bad = good;
            bad[i] ^= 1 << 40;
            assert_eq!(evaluate(&f, 400, x86, bad), SECCOMP_RET_TRAP, "argument {i}");
        }
    }
}
