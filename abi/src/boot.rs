//! How a confined program learns that a Cabin monitor started it.
//!
//! A monitor that loads an image itself (process, KVM and SNP backends) adds
//! an auxiliary-vector entry of type [`AT_CABIN_BOOT`] whose value is the
//! address of the boot-information block. When the entry is absent, the
//! kernel started the image directly and the libos runs in *passthrough*
//! mode, performing each system call itself.

/// Auxiliary-vector type carrying the boot-information address.
/// Chosen far above Linux's own `AT_*` numbers (which stay below 64).
pub const AT_CABIN_BOOT: u64 = 0x4341_4249; // "CABI"

/// Standard auxiliary-vector types the libos and loaders use.
pub mod auxv {
    /// End of vector.
    pub const AT_NULL: u64 = 0;
    /// Address of the program headers.
    pub const AT_PHDR: u64 = 3;
    /// Size of one program header.
    pub const AT_PHENT: u64 = 4;
    /// Number of program headers.
    pub const AT_PHNUM: u64 = 5;
    /// Page size.
    pub const AT_PAGESZ: u64 = 6;
    /// Interpreter base (0 for static programs).
    pub const AT_BASE: u64 = 7;
    /// Program entry point.
    pub const AT_ENTRY: u64 = 9;
    /// Real user id.
    pub const AT_UID: u64 = 11;
    /// Effective user id.
    pub const AT_EUID: u64 = 12;
    /// Real group id.
    pub const AT_GID: u64 = 13;
    /// Effective group id.
    pub const AT_EGID: u64 = 14;
    /// Platform string address.
    pub const AT_PLATFORM: u64 = 15;
    /// CPU capability bits.
    pub const AT_HWCAP: u64 = 16;
    /// Clock ticks per second.
    pub const AT_CLKTCK: u64 = 17;
    /// Secure mode.
    pub const AT_SECURE: u64 = 23;
    /// Address of 16 random bytes.
    pub const AT_RANDOM: u64 = 25;
    /// More CPU capability bits.
    pub const AT_HWCAP2: u64 = 26;
    /// File name of the program.
    pub const AT_EXECFN: u64 = 31;
    /// vDSO base.
    pub const AT_SYSINFO_EHDR: u64 = 33;
    /// Minimum signal stack size.
    pub const AT_MINSIGSTKSZ: u64 = 51;
}

/// Magic value of [`BootInfo::magic`]: "CABBOOT1".
pub const BOOT_MAGIC: u64 = u64::from_le_bytes(*b"CABBOOT1");
/// Version of the [`BootInfo`] layout. 4 named `ring_count` and
/// `thread_limit` (threads) and, separately, `fault_code` and the
/// protection fields (memory); 5 is the layout with both.
pub const BOOT_VERSION: u32 = 5;

/// [`BootInfo::flags`]: process backend. The domain is an ordinary Linux
/// process under seccomp; the libos may issue the few system calls the
/// filter allows itself (`futex` on the doorbells, `arch_prctl(SET_FS)`,
/// clock reads, `rt_sigaction` for its own trap and fault handlers, exit).
pub const BOOT_FLAG_PROCESS: u32 = 1 << 0;

/// [`BootInfo::flags`]: KVM backend. The domain is ring 3 of a KVM guest and
/// can make no system call of its own (a stray `syscall` traps to the
/// proxy-kernel's slow-path gate). The libos waits on the ring with the
/// ring-3 doorbell (`out` to `crate::hypercall::PORT_DOORBELL`) instead of
/// `futex`, and sets the FS base with `wrfsbase` (the monitor enables
/// CR4.FSGSBASE).
pub const BOOT_FLAG_KVM: u32 = 1 << 1;

/// [`BootInfo::flags`] (testing): the libos does not serve calls from
/// rewritten sites directly but re-issues each one as a raw `syscall`, so
/// that every call takes the seccomp trap (SIGSYS) slow path, as if every
/// site had been left as a trap site.
pub const BOOT_FLAG_FORCE_TRAP: u32 = 1 << 2;

/// [`BootInfo::flags`]: a memory limit is set (`[limits] memory` of the
/// policy). The monitor sized the `brk` range and the arena so that the
/// domain's memory stays within the limit; when the program asks for
/// memory neither can give (an `mmap`, `mremap` or `brk` that would pass
/// it), the libos stops the program with exit status 137 and records
/// [`ABORT_MEMORY`], instead of returning `ENOMEM`. Without this flag,
/// exhaustion is `ENOMEM` as on Linux.
pub const BOOT_FLAG_MEMORY_LIMIT: u32 = 1 << 3;

/// `BootInfo::flags`: the libos may read ahead of the program on files it
/// streams in small reads (`libos/src/forward/readahead.rs`). The monitor
/// sets it only when nothing needs to see the program's own calls one by
/// one: no policy, no trace, no audit, and not the synchronous forwarding
/// mode that measures them.
pub const BOOT_FLAG_READ_AHEAD: u32 = 1 << 4;
/// The process backend's host has an invariant TSC (constant rate, never
/// stops, in step on every CPU) and the policy lets the libos read the
/// clocks itself: the libos serves wall and monotonic clock reads from
/// `rdtsc`, calibrated against the host's own clocks, which it reads
/// natively now and then (docs/syscalls.md, "Clock reads").
pub const BOOT_FLAG_TSC_CLOCK: u32 = 1 << 5;

/// Number of per-system-call counters the libos keeps for calls it serves
/// locally ([`BootInfo::local_counts`]); numbers at or above this are
/// not counted.
pub const LOCAL_COUNT_SLOTS: usize = 512;

/// [`BootInfo::abort`]: the libos found the ring corrupted (impossible
/// indices or a completion with the wrong tag) and ended the program with
/// exit status 137 without a message (it cannot print without the ring).
pub const ABORT_RING: u64 = 1;

/// [`BootInfo::abort`]: with [`BOOT_FLAG_MEMORY_LIMIT`], the program asked
/// for memory beyond the limit; the libos ended it with exit status 137.
/// Details in [`BootInfo::memory_request`] and [`BootInfo::memory_used`].
pub const ABORT_MEMORY: u64 = 2;

/// The boot-information block: one page in domain memory, written by the
/// monitor before the program starts; its address is the value of the
/// [`AT_CABIN_BOOT`] auxiliary-vector entry.
///
/// The libos reads the configuration fields once, at start-up. The fields
/// from `fault_signo` on (but `spin_ns` and `check_local`) are written by
/// the libos while the program runs (fault record, counters, why it stopped
/// the program) and read by the monitor after the program ended
/// ([`EndWords`]) — the monitor treats them as untrusted statistics, never
/// as control data.
#[repr(C)]
#[derive(Debug)]
pub struct BootInfo {
    /// [`BOOT_MAGIC`].
    pub magic: u64,
    /// [`BOOT_VERSION`].
    pub version: u32,
    /// `BOOT_FLAG_*` bits.
    pub flags: u32,
    /// Domain address of the ring region ([`crate::ring`]): ring `k` of
    /// thread slot `k` at `ring + k * RING_BYTES` ([`crate::thread`]).
    pub ring: u64,
    /// Bytes reserved for the ring region (at least `ring_count *`
    /// [`crate::ring::RING_BYTES`]).
    pub ring_size: u64,
    /// First byte of the anonymous-memory arena (page aligned).
    pub arena_start: u64,
    /// Length of the arena in bytes (page multiple).
    pub arena_len: u64,
    /// First byte of the `brk` heap (page aligned).
    pub brk_start: u64,
    /// Largest size the `brk` heap may grow to.
    pub brk_len: u64,
    /// Process id the program sees (`getpid`, `gettid`).
    pub pid: u32,
    /// Parent process id the program sees.
    pub ppid: u32,
    /// User id the program sees.
    pub uid: u32,
    /// Group id the program sees.
    pub gid: u32,
    /// KVM backend: the guest TSC's frequency in kHz when the host's TSC is
    /// invariant (constant rate, running in every state) and so a clock the
    /// libos may read in ring 3; 0 otherwise. With it the libos serves clock
    /// reads (`clock_gettime` of the wall and monotonic clocks,
    /// `gettimeofday`, `time`) from `rdtsc`, each clock anchored by one
    /// forwarded read at its first use, instead of forwarding every read.
    pub tsc_khz: u64,
    /// Written by the libos: signal number of a fatal fault (0 = none).
    pub fault_signo: u64,
    /// Written by the libos: faulting address (`si_addr`).
    pub fault_addr: u64,
    /// Written by the libos: `rip` at the fault.
    pub fault_rip: u64,
    /// Written by the libos: calls that arrived through the trap path.
    pub trapped: u64,
    /// Written by the libos: why it stopped the program itself
    /// ([`ABORT_RING`], [`ABORT_MEMORY`]); 0 when it did not.
    pub abort: u64,
    /// Written by the libos with [`ABORT_MEMORY`]: how many bytes more the
    /// refused call asked for (the `mmap` length, the `brk` or `mremap`
    /// growth; page multiples).
    pub memory_request: u64,
    /// Written by the libos with [`ABORT_MEMORY`]: how many bytes of the
    /// `brk` range and the arena were in use at the refused call (their
    /// high-water marks: what the domain may have touched, not counting
    /// image, stack and monitor pages).
    pub memory_used: u64,
    /// Written by the monitor: how long, in nanoseconds, the libos may spin
    /// waiting for a completion before it sleeps (0: only a short spin).
    /// Non-zero when the ring worker has a CPU of its own
    /// (`cabin_monitor::placement`): spinning then costs nobody, while
    /// sleeping costs a futex wake per call (process) or a doorbell exit (KVM).
    pub spin_ns: u64,
    /// Rings in the ring region (`1..=`[`crate::thread::MAX_THREADS`]):
    /// the most threads the program can have at once; 1 when the domain
    /// cannot run threads.
    pub ring_count: u32,
    /// The `[limits] threads` of the policy (at most `ring_count`): the
    /// libos refuses a `clone` beyond it with `EAGAIN` without asking; the
    /// monitor enforces it again.
    pub thread_limit: u32,
    /// Written by the libos: `si_code` of a fatal fault (`SEGV_MAPERR` 1:
    /// nothing mapped there; `SEGV_ACCERR` 2: mapped, but the access is
    /// not allowed, e.g. a guard page or a read-only page); 0 = not known.
    pub fault_code: u64,
    /// The signals the program ignores (`SIG_IGN`; bit `n - 1` for signal
    /// `n`), written by the libos at every `rt_sigaction`. At an `execve`
    /// the monitor copies the old image's word into the new image's boot
    /// page, whose libos starts with those signals ignored (POSIX: ignored
    /// dispositions survive an exec, handlers become default;
    /// docs/processes.md). Untrusted: a lie only changes the program's own
    /// dispositions. The bit of `SIGKILL`, which no program can ignore,
    /// says `SA_NOCLDWAIT` instead ([`SIG_IGNORED_NOCLDWAIT`]); with the
    /// bit of `SIGCHLD` the monitor reaps the process's children itself
    /// (no zombies), as Linux.
    pub sig_ignored: u64,
    /// KVM backend, written by the libos at start-up: the address of its
    /// trap entry (where the monitor redirects a system call that reached
    /// the slow-path gate from a trap site, so the libos serves it as it
    /// serves a SIGSYS in the process backend). Untrusted like every field
    /// the libos writes: a wrong value only misdirects the program's own
    /// ring-3 control flow.
    pub kvm_trap_entry: u64,
    /// Written by the libos: per-number counts of locally served calls.
    pub local_counts: [u32; LOCAL_COUNT_SLOTS],
    /// Written by the monitor: the calls the libos serves inside the domain
    /// ([`crate::syscalls::Serve::Local`] and
    /// [`crate::syscalls::Serve::LocalOrForwarded`]) that the policy does
    /// not plainly allow (refused, killed, complained about, or decided by
    /// argument rules). The libos copies it at start-up and has the monitor
    /// decide each of these calls ([`crate::ring::SUB_CHECK`], or a plain
    /// forward for clock reads); the others it serves at the cost of one
    /// bit test. Also `close` when the policy may refuse it: the libos
    /// then never answers a `close` before the monitor did (docs/syscalls.md,
    /// "close"). Empty without a policy.
    ///
    /// The program can overwrite this page (and the libos's copy): it then
    /// only stops asking about calls whose effect stays inside its own
    /// domain, which it controls anyway (docs/policy.md).
    pub check_local: crate::syscalls::CallSet,
    /// Signals posted from outside the domain (docs/signals.md): bit `n - 1`
    /// for signal `n`. The monitor ORs bits in (atomically, after writing
    /// [`BootInfo::sig_posted`]); the libos takes them with an atomic swap.
    pub sig_incoming: u64,
    /// Non-zero: the libos should look at its signals before it returns to
    /// the program (the monitor sets it with [`BootInfo::sig_incoming`]; the
    /// libos sets and clears it for signals it holds itself). One load on
    /// the way out of every libos call.
    pub sig_attention: u64,
    /// Written by the libos at start-up: its signal entry (KVM), where the
    /// monitor sends a vCPU it stopped in program code to take a signal or
    /// a fault, with the interrupted `rip` and RFLAGS and the fault's
    /// details in [`BootInfo::sig_mailbox`]. Untrusted, like
    /// [`BootInfo::kvm_trap_entry`].
    pub kvm_signal_entry: u64,
    /// Written by the libos whenever it changes: the signals the program has
    /// a handler for (whether the faulting thread blocks it is the libos's
    /// check at its signal entry: the mask is per thread). The monitor redirects a fault only
    /// when its signal is in it, and otherwise reports it as before.
    /// Untrusted: a wrong value only changes how the program's own fault
    /// ends.
    pub sig_handled: u64,
    /// Written by the libos at start-up: its code, `[start, end)`. The
    /// monitor redirects a vCPU only when its `rip` is outside (the libos
    /// looks at its signals itself on its way out). Untrusted: a wrong
    /// value only misdirects the program's own ring-3 control flow.
    pub libos_text: [u64; 2],
    /// Who holds [`BootInfo::sig_mailbox`] (KVM, several vCPUs): 0 free;
    /// the monitor sets it (compare-and-swap 0 → 1) before it writes the
    /// mailbox and redirects one vCPU; the libos clears it once that vCPU
    /// has copied the mailbox at its signal entry. So two vCPUs redirected
    /// at once never read each other's `rip`. A program that leaves it set
    /// only keeps its own faults from reaching its handlers (bounded wait,
    /// then the fault ends the program).
    pub sig_mailbox_busy: u64,
    /// Written by the monitor right before a redirect to
    /// [`BootInfo::kvm_signal_entry`], while it holds
    /// [`BootInfo::sig_mailbox_busy`].
    pub sig_mailbox: SigMailbox,
    /// Written by the monitor: the sender's words for each posted signal
    /// (index `n - 1`), read by the libos when it takes the bit.
    pub sig_posted: [SigPosted; 64],
    /// Written by the monitor: the domain ranges whose protection the
    /// program may change (`mprotect`, the `prot` of `mmap`), as
    /// `[start, len]` pairs (page aligned; unused entries are `[0, 0]`):
    /// the arena, the `brk` range, the stack, the image's RELRO pages and
    /// the reservation space.
    /// The libos asks the backend only for changes inside one of them (so
    /// a refusal never traps back into it); the backend checks every
    /// change itself (process: the seccomp filter, built from the same
    /// list; KVM: the monitor, before it edits the page tables). Code,
    /// the boot page and the ring are never in the list.
    pub protectable: [[u64; 2]; PROTECTABLE_RANGES],
    /// Written by the monitor: the reservation space, address space
    /// without memory for `PROT_NONE` reservations (first byte, length;
    /// page aligned; 0 = none). Committing part of it maps arena pages
    /// there (process: a native `mmap` of the domain memfd, descriptor
    /// [`RESERVE_FD`], at [`BootInfo::arena_file_offset`] + the arena
    /// page's offset, which the seccomp filter allows only there; KVM: the
    /// `crate::hypercall::DOORBELL_COMMIT` exit). Only committed pages
    /// count against the memory bound (they are arena pages).
    pub reserve_start: u64,
    /// Length of the reservation space.
    pub reserve_len: u64,
    /// Process backend: offset of `arena_start` in the domain memfd.
    pub arena_file_offset: u64,
    /// Written by the monitor: the tree's shared window (docs/processes.md,
    /// "Shared memory"), the same address range in every process of the
    /// tree, backed by one memfd the monitor made for the run (first byte,
    /// length; page aligned; 0 = none: SysV shared memory is `ENOSYS` and
    /// `MAP_SHARED | MAP_ANONYMOUS` memory comes from the arena). Window
    /// offset `o` is address `shared_start + o` in every process. The
    /// process backend's libos maps the ranges the monitor hands out
    /// (`shmat`) with a native `mmap(shared_start + o, len, prot,
    /// MAP_SHARED | MAP_FIXED, SHARED_FD, o)`, which the seccomp filter
    /// allows only inside the window and never with `PROT_EXEC`.
    pub shared_start: u64,
    /// Length of the shared window (the memfd's sealed size).
    pub shared_len: u64,
    /// Written by the monitor (process backend; 0 = none, then shared file
    /// mappings are the libos's copies): the process's file-mapping range
    /// (docs/processes.md, "Shared file mappings"). A shared file mapping
    /// the monitor accepts gets an address in it; the monitor hands the file
    /// over [`FILEMAP_CHANNEL_FD`] and the libos maps it natively there.
    pub filemap_start: u64,
    /// Length of the file-mapping range (at most the memory bound).
    pub filemap_len: u64,
}

/// [`BootInfo::sig_mailbox`]: the state a redirected vCPU was stopped in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigMailbox {
    /// Interrupted `rip`.
    pub rip: u64,
    /// Interrupted RFLAGS.
    pub rflags: u64,
    /// 0: asynchronous (look at [`BootInfo::sig_incoming`]); else the signal
    /// of a fault ([`BootInfo::sig_mailbox`] then has its details).
    pub signo: u64,
    /// The fault's `si_code`.
    pub code: u64,
    /// The fault's `si_addr` (`cr2` for a page fault).
    pub addr: u64,
    /// The exception vector (`uc_mcontext.trapno`).
    pub trapno: u64,
    /// The exception's error code (`uc_mcontext.err`).
    pub err: u64,
}

/// [`BootInfo::sig_posted`]: what `siginfo_t` says about a posted signal.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigPosted {
    /// `si_code` (`SI_USER` for a signal sent to `cabinc`, `SI_TIMER` for a
    /// timer, `SI_KERNEL` for one the kernel sent).
    pub code: i32,
    /// `si_pid` (or `si_tid` of a timer).
    pub pid: u32,
    /// `si_uid` (or `si_overrun` of a timer).
    pub uid: u32,
    /// Zero.
    pub pad: u32,
    /// `si_value` (timers).
    pub value: u64,
}

/// [`BootInfo::sig_ignored`]'s bit for `SA_NOCLDWAIT` on `SIGCHLD` (the
/// bit of `SIGKILL`, 9, which is never ignored). Cleared at an exec (Linux
/// resets the flags of every disposition then).
pub const SIG_IGNORED_NOCLDWAIT: u64 = 1 << (9 - 1);

/// [`BootInfo::sig_ignored`]'s bit for `SA_NOCLDSTOP` on `SIGCHLD` (the bit
/// of `SIGSTOP`, 19, which is never ignored either): the monitor posts no
/// `SIGCHLD` when a child of the process stops or continues. Cleared at an
/// exec, as [`SIG_IGNORED_NOCLDWAIT`].
pub const SIG_IGNORED_NOCLDSTOP: u64 = 1 << (19 - 1);

/// The host signal the monitor sends a process-backend child after it
/// posted signals in the boot page: the libos's handler for it takes
/// [`BootInfo::sig_incoming`] (SIGRTMAX, which the monitor never forwards
/// as a signal of the program's own).
pub const WAKE_SIGNAL: i32 = 64;

/// Process backend: the value in `r8` (the unused fifth argument) of the
/// libos's own `rt_sigprocmask(SIG_SETMASK, set, NULL, 8)`, the one call
/// that puts back the signal mask of an interrupted context when a libos
/// kernel handler returns (the host's `rt_sigreturn` is refused). The
/// seccomp filter allows `rt_sigprocmask` natively only in exactly that
/// form; every other one is trapped and served on the program's virtual
/// mask, as before. A program that uses the form itself only changes its
/// own native mask: a blocked SIGSYS or fault signal makes the kernel end
/// it at the next trap or fault, a blocked wake signal only delays its own
/// signals.
pub const KERNEL_MASK_MAGIC: u64 = 0x4341_4249_4e4d_534b;

/// Marks the libos's own native `close` of a sent file and `recvmsg` on
/// the file channel (process backend, docs/processes.md "Shared file
/// mappings"): in an argument the call ignores (`close`'s second,
/// `recvmsg`'s fourth). The seccomp filter lets those two calls through only
/// with it, so a program's own `close` or `recvmsg` through the trap path
/// (an unrewritten `syscall`) is still trapped and served on its virtual
/// descriptors, whose numbers overlap the sent files'. A program that uses
/// the mark itself only closes a file it was sent or reads its own channel.
pub const FILEMAP_NATIVE_MAGIC: u64 = 0x4341_4249_4e46_4d41;

/// Job control on the run's terminal (docs/processes.md, "Job control"):
/// what the monitor answers a process of a background group for a `read`
/// of the terminal ([`TTY_BACKGROUND_READ`]: Linux's `SIGTTIN` case), a
/// `write` of it with `TOSTOP` set or a `tcsetpgrp`/`tcsetattr` of it
/// ([`TTY_BACKGROUND_WRITE`]: `SIGTTOU`; [`TTY_BACKGROUND_WRITE_ORPHANED`]
/// when the caller's group is orphaned). These are negated like an errno
/// and never reach the program: the libos decides with the calling thread's
/// mask and its dispositions, as the kernel's `tty_check_change` does — a
/// blocked or ignored `SIGTTIN` is `EIO`, a blocked or ignored `SIGTTOU`
/// lets the call proceed (made again with [`TTY_PROCEED`]), an orphaned
/// group `EIO`, otherwise the signal goes to the caller's group and the
/// call is made again once the process is continued (or `EINTR` after a
/// handler without `SA_RESTART`). A background `read` from an orphaned
/// group is `EIO` from the monitor itself.
pub const TTY_BACKGROUND_READ: i64 = 530;
/// See [`TTY_BACKGROUND_READ`].
pub const TTY_BACKGROUND_WRITE: i64 = 531;
/// See [`TTY_BACKGROUND_READ`].
pub const TTY_BACKGROUND_WRITE_ORPHANED: i64 = 532;
/// In the sixth argument (which `read`, `readv`, `write`, `writev` and
/// `ioctl` ignore) of a call the libos makes again after
/// [`TTY_BACKGROUND_WRITE`] found `SIGTTOU` blocked or ignored: the monitor
/// does not check the terminal's foreground group again. A program that
/// uses it itself only writes the terminal from the background, as it
/// could with `SIGTTOU` blocked.
pub const TTY_PROCEED: u64 = 0x4341_4249_4e54_5459;

/// `si_code` values.
pub mod si_code {
    /// Sent by `kill`.
    pub const SI_USER: i32 = 0;
    /// Sent by the kernel.
    pub const SI_KERNEL: i32 = 0x80;
    /// A POSIX timer expired.
    pub const SI_TIMER: i32 = -2;
    /// Sent by `tkill`/`tgkill`.
    pub const SI_TKILL: i32 = -6;
}

/// Process backend: the descriptor number of the domain memfd in the
/// confined child (its only native descriptor), for commits of the
/// reservation space. The libos also forwards each commit to the monitor
/// as `mmap(va, len, prot, MAP_SHARED | MAP_FIXED, RESERVE_FD, arena
/// address)` and each release as `munmap(va, len)`, so that the monitor
/// can reach committed pages (`GuestMemory::alias`).
pub const RESERVE_FD: u64 = 1000;

/// Process backend: the descriptor number of the tree's shared-window
/// memfd in every confined child ([`BootInfo::shared_start`]), given to it
/// by the monitor before its filter is installed. The filter allows only
/// `mmap` of it inside the window, shared, fixed, without `PROT_EXEC`.
pub const SHARED_FD: u64 = 1001;

/// Process backend: the descriptor number of the child's end of its
/// file-mapping channel (an `AF_UNIX` `SOCK_SEQPACKET` socket), on which the
/// monitor sends a file it accepted for a shared mapping: one message of
/// [`FileMapGrant`] with the descriptor in `SCM_RIGHTS`. The filter allows
/// only `recvmsg` on it. A received descriptor lands below
/// [`RESERVE_FD`] (the child holds nothing else there): the filter allows
/// `mmap` of descriptors below it only in the file-mapping range, shared,
/// fixed, never executable, and `close` of them.
pub const FILEMAP_CHANNEL_FD: u64 = 1002;

/// The message on [`FILEMAP_CHANNEL_FD`]: map the descriptor that comes
/// with it at `addr` (`len` bytes, `prot`, file offset `off`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileMapGrant {
    /// Address in the file-mapping range.
    pub addr: u64,
    /// Bytes (page multiple).
    pub len: u64,
    /// `PROT_READ` / `PROT_WRITE` bits only.
    pub prot: u64,
    /// File offset (page multiple).
    pub off: u64,
}

/// Process backend (docs/networking.md, "The direct data plane"): the
/// first native descriptor number of the connected-socket range. The libos
/// keeps the host socket behind the program's descriptor `v` at
/// `NET_NATIVE_BASE + v` (`v` below [`NET_NATIVE_COUNT`]); the filter allows
/// the data calls of a connected stream socket natively only on numbers in
/// `[NET_NATIVE_BASE, NET_NATIVE_BASE + NET_NATIVE_COUNT)`, and only with
/// [`NET_NATIVE_MAGIC`] in an argument the call ignores.
pub const NET_NATIVE_BASE: u64 = 1024;

/// How many numbers the connected-socket range holds: the program's
/// descriptor table's size (`MAX_FDS` in the monitor).
pub const NET_NATIVE_COUNT: u64 = 1024;

/// Marks the libos's own native calls on the connected-socket range: in an
/// argument the call ignores (`sendto`/`recvfrom`'s sixth, the address
/// length, whose address is NULL; `sendmsg`/`recvmsg`'s and `dup3`'s
/// fourth; `close`'s second; `fcntl(F_GETFL)`'s third). A program's own call
/// through the trap path names its virtual descriptors and must reach the
/// libos; one that uses the mark itself only reaches a connected socket it
/// was given.
pub const NET_NATIVE_MAGIC: u64 = 0x4341_4249_4e4e_4554;

/// The `cmd` of the libos's forwarded `fcntl(v, NET_GRANT_CMD, 0)`, made
/// right after an `accept`/`accept4`/`connect` returned `v`: the monitor
/// answers 0 and sends one [`NetGrant`] with the host socket on
/// [`FILEMAP_CHANNEL_FD`] when `v` is a connected TCP socket it lets the
/// program use natively, or an error (`EINVAL`: not served, `ENOTCONN`,
/// `EOPNOTSUPP`, ...) and sends nothing.
pub const NET_GRANT_CMD: u64 = 0x4341_4e47;

/// The message on [`FILEMAP_CHANNEL_FD`] that carries a connected socket
/// (one descriptor in `SCM_RIGHTS`): the program's descriptor it stands
/// behind. Told from a [`FileMapGrant`] by its length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetGrant {
    /// The program's (virtual) descriptor.
    pub vfd: u64,
    /// [`NET_NATIVE_MAGIC`].
    pub magic: u64,
}

/// The `fd` argument of the libos's forwarded `mmap(addr, 0, 0,
/// MAP_SHARED | MAP_FIXED, FILEMAP_RESEND, 0)`: send again the process's
/// first shared file mapping at or above `addr` (a forked child maps its
/// parent's mappings again; its host process starts with none).
pub const FILEMAP_RESEND: u64 = 0xffff_fc00;

/// Entries of [`BootInfo::protectable`].
pub const PROTECTABLE_RANGES: usize = 5;

const _: () = assert!(core::mem::size_of::<BootInfo>() <= crate::PAGE_SIZE as usize);

/// What the libos leaves in the boot page for the monitor to read once the
/// program has ended: its fault record, counters and why it stopped the
/// program itself. Every field comes from the program's side (the program
/// can write the page) and is untrusted: the monitor uses it for statistics
/// and for the words of the end-of-run record, never to decide anything
/// about its own safety.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndWords {
    /// [`BootInfo::fault_signo`].
    pub fault_signo: u64,
    /// [`BootInfo::fault_addr`].
    pub fault_addr: u64,
    /// [`BootInfo::fault_rip`].
    pub fault_rip: u64,
    /// [`BootInfo::fault_code`].
    pub fault_code: u64,
    /// [`BootInfo::trapped`].
    pub trapped: u64,
    /// [`BootInfo::abort`].
    pub abort: u64,
    /// [`BootInfo::memory_request`].
    pub memory_request: u64,
    /// [`BootInfo::memory_used`].
    pub memory_used: u64,
    /// [`BootInfo::local_counts`].
    pub local_counts: [u32; LOCAL_COUNT_SLOTS],
}

impl Default for EndWords {
    fn default() -> EndWords {
        EndWords {
            fault_signo: 0,
            fault_addr: 0,
            fault_rip: 0,
            fault_code: 0,
            trapped: 0,
            abort: 0,
            memory_request: 0,
            memory_used: 0,
            local_counts: [0; LOCAL_COUNT_SLOTS],
        }
    }
}

// The named fields took the place of `reserved: [u64; 8]` word for word
// (version 4 named `ring_count` and `thread_limit` in the first reserved
// word and made `ring` a region of rings; version 5 also named `fault_code`
// in the second).
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(BootInfo, abort) == offset_of!(BootInfo, trapped) + 8);
    assert!(offset_of!(BootInfo, spin_ns) == offset_of!(BootInfo, abort) + 24);
    assert!(offset_of!(BootInfo, ring_count) == offset_of!(BootInfo, abort) + 32);
    assert!(offset_of!(BootInfo, thread_limit) == offset_of!(BootInfo, abort) + 36);
    assert!(offset_of!(BootInfo, fault_code) == offset_of!(BootInfo, abort) + 40);
    assert!(offset_of!(BootInfo, sig_ignored) == offset_of!(BootInfo, abort) + 48);
    assert!(offset_of!(BootInfo, kvm_trap_entry) == offset_of!(BootInfo, abort) + 56);
    assert!(offset_of!(BootInfo, local_counts) == offset_of!(BootInfo, abort) + 64);
};
