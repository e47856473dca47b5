//! The system-call table: every x86-64 Linux system call Cabin knows, by
//! number, with its name, how a confined program's call to it is served, and
//! the kinds of its arguments.
//!
//! One table, read by every part that needs to know about system calls
//! (STYLE.md: "a table, not a switch"):
//!
//! - the libos routes each call by [`serve`]: forwarded to the monitor, or
//!   served inside the domain (and then, for the calls the policy does not
//!   plainly allow, first checked by the monitor: [`CallSet`],
//!   `crate::boot::BootInfo::check_local`); it checks each reply against
//!   [`Syscall::returns`] and lets read-ahead keep its stage by
//!   [`Syscall::offset`] ([`route`]);
//! - the monitor's policy takes names and numbers from it, decides which
//!   rules it can enforce (`policy check` refuses a rule that would refuse an
//!   [`Serve::Always`] call) and builds the boot page's [`CallSet`];
//! - the monitor's service registers its handlers by the numbers in [`nr`]
//!   (and a test checks that it serves only calls the table forwards);
//! - the trace decoder prints each call's arguments by [`Syscall::args`];
//! - reports, statistics, `cabinc syscalls` and the trace name calls through
//!   [`name`].
//!
//! Numbers 0..=334 and 424..=450 follow the kernel's `asm/unistd_64.h`;
//! 335, 336 and 451..=467 were added by later kernels. The numbers are the stable Linux
//! ABI; a test checks every name and number against the `syscalls` crate.
//!
//! Everything here is `const` data: the libos reads [`route`] from a
//! 512-byte array on its hot path (one byte per number packs the serve
//! class, the reply bound and the offset class), and links none of the names
//! or argument kinds.
//!
//! # Why not the `syscalls` crate
//!
//! The maintained `syscalls` crate (0.8: `no_std` without its default
//! features, `Sysno::name`/`Sysno::new` are `const fn`, regenerated from the
//! kernel sources) holds numbers and names only. Cabin's table exists for
//! its other columns (how each call is served, argument kinds, the reply
//! bound, offsets), which that crate cannot carry, so every row would still
//! be written here; taking number and name from it would add a dependency
//! to the libos blob build and the boot path for 381 numbers that never
//! change (the Linux ABI only adds). So the rows are written once here, and
//! the crate is a dev-dependency: a test compares every row's name and
//! number with it, and fails on a call it knows (up to [`MAX_KNOWN`]) that
//! the table lacks (it found `uretprobe` and `uprobe`, 335 and 336).

/// How the libos serves a call. A policy governs every class but
/// [`Serve::Always`] in the same way: a call it does not allow is refused
/// (or ends the program) whichever side would have served it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Serve {
    /// The monitor serves it (over the ring, or after a trap): the policy
    /// decides every call. Whether the monitor implements it (or answers
    /// `ENOSYS`) is the monitor's service table.
    Forwarded = 0,
    /// The libos serves it inside the domain (anonymous memory from the
    /// arena, identity from the boot page, signal bookkeeping, self-signals,
    /// single-threaded futex, `sched_yield`, `rseq` answered `ENOSYS`). When
    /// the policy does not plainly allow it, the libos first asks the
    /// monitor (a check-only submission, [`crate::ring::SUB_CHECK`]): the
    /// policy's decision is taken there, and the libos serves the call only
    /// when it is allowed. The effect of such a call never leaves the domain.
    Local = 1,
    /// Clock reads: the libos serves them inside the domain when it can
    /// (from the TSC on KVM, the host's clock call on the process backend);
    /// when the policy does not plainly allow one, the libos forwards it and
    /// the monitor serves it, as a [`Serve::Forwarded`] call.
    LocalOrForwarded = 2,
    /// Ending the program (`exit`, `exit_group`): always served, whatever
    /// the policy says. A program can always end itself (a fault ends it
    /// too), so a rule refusing these could not be enforced: `policy check`
    /// rejects one, and neither the default action nor a group applies.
    Always = 3,
}

/// The kind of one argument of a call, for readers that print or check
/// arguments (the trace decoder, reports). Pointers are addresses in the
/// program's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A signed integer: an id, a signal number, a command, a clock.
    Int,
    /// A size or a count (unsigned).
    Len,
    /// A file offset or length in bytes (signed, `off_t`).
    Offset,
    /// A descriptor.
    Fd,
    /// A directory descriptor (or `AT_FDCWD`) the path after it is relative to.
    DirFd,
    /// A path: a NUL-terminated string the call reads.
    Path,
    /// Another NUL-terminated string the call reads (a name, a key).
    Str,
    /// Bytes the call reads; argument N is their count.
    BufIn(u8),
    /// Bytes the call writes; argument N is the room there.
    BufOut(u8),
    /// A struct or array the call reads (NULL may mean "none").
    In,
    /// A struct or array the call writes.
    Out,
    /// A struct or array the call reads and writes.
    InOut,
    /// An address the call acts on but does not read as data (a mapping,
    /// the break, a futex word).
    Addr,
    /// `open` flags (`O_*`).
    OpenFlags,
    /// Memory protection (`PROT_*`).
    Prot,
    /// File mode bits, or `access` mode bits.
    Mode,
    /// Other flag bits.
    Flags,
    /// A value whose meaning depends on another argument (an `ioctl`
    /// request or argument, a `prctl` option's value).
    Any,
}

/// What a successful call returns, for readers that check or print it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// A number: 0, a count, a descriptor, an id.
    Value,
    /// An address in the program's memory.
    Address,
    /// A count of bytes that is at most argument N (the libos refuses a
    /// reply above it: `forward::reply_is_valid`).
    Count(u8),
}

/// Whether a call can see or move the file offset of a regular file (the
/// position `read` and `write` use), or change a file. Read-ahead (libos)
/// keeps its staged bytes across a call only when it cannot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FileOffset {
    /// It may (or it is not known not to): read-ahead gives staged bytes
    /// back first, unless it knows better for this call and these arguments
    /// (opening read-only, writing to another file).
    Unknown = 0,
    /// Only the offset of the descriptor in its first argument (`read`,
    /// `lseek`, `close`, ...), and it changes no file.
    OwnFd = 1,
    /// None: it reads metadata, an explicit offset (`pread64`) or no file.
    Untouched = 2,
}

/// One row of [`TABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    /// The x86-64 number.
    pub nr: u16,
    /// The name, as `man 2 syscalls` spells it.
    pub name: &'static str,
    /// How the libos serves it.
    pub serve: Serve,
    /// Its arguments, in order (their number is the call's arity); `None`
    /// for the calls Linux does not implement (`sys_ni_syscall`), whose
    /// arguments mean nothing.
    pub args: Option<&'static [Arg]>,
    /// What it returns.
    pub returns: Ret,
    /// Whether it can see or move a file offset, or change a file.
    pub offset: FileOffset,
}

impl Syscall {
    const fn new(nr: u16, name: &'static str, serve: Serve, args: Option<&'static [Arg]>) -> Syscall {
        Syscall { nr, name, serve, args, returns: Ret::Value, offset: FileOffset::Unknown }
    }

    const fn returns(self, returns: Ret) -> Syscall {
        Syscall { returns, ..self }
    }

    const fn offset(self, offset: FileOffset) -> Syscall {
        Syscall { offset, ..self }
    }
}

/// The argument list of a row: `(..)` for a call Linux does not implement.
macro_rules! args {
    (..) => {
        None
    };
    ($($a:expr),*) => {
        Some(&[$($a),*])
    };
}

/// Writes [`TABLE`] and [`nr`] from one list of rows:
/// `NR name(ARG, ...) SERVE [.returns(RET)] [.offset(OFFSET)];`.
macro_rules! table {
    ($($nr:literal $name:ident $args:tt $serve:ident $(. $col:ident ($v:expr))* ;)*) => {
        /// Every x86-64 system call, by number.
        pub const TABLE: &[Syscall] = &[
            $(Syscall::new($nr, stringify!($name), $serve, args! $args) $(.$col($v))*,)*
        ];

        /// The number of every call in [`TABLE`], by its name (`nr::openat`
        /// is 257), as the `u64` a program puts in `rax`. Lower case, as
        /// the kernel's `__NR_openat` and libc's `SYS_openat` spell it.
        #[allow(non_upper_case_globals)]
        pub mod nr {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub const $name: u64 = $nr;
            )*
        }
    };
}

use Arg::*;
use FileOffset::{OwnFd, Untouched};
use Ret::{Address, Count};
use Serve::{Always, Forwarded, Local, LocalOrForwarded};

table! {
    0 read(Fd, BufOut(2), Len) Forwarded .returns(Count(2)) .offset(OwnFd);
    1 write(Fd, BufIn(2), Len) Forwarded .returns(Count(2));
    2 open(Path, OpenFlags, Mode) Forwarded;
    3 close(Fd) Forwarded .offset(OwnFd);
    4 stat(Path, Out) Forwarded .offset(Untouched);
    5 fstat(Fd, Out) Forwarded .offset(Untouched);
    6 lstat(Path, Out) Forwarded .offset(Untouched);
    7 poll(InOut, Len, Int) Forwarded .offset(Untouched);
    8 lseek(Fd, Offset, Int) Forwarded .offset(OwnFd);
    9 mmap(Addr, Len, Prot, Flags, Fd, Offset) Local .returns(Address);
    10 mprotect(Addr, Len, Prot) Local;
    11 munmap(Addr, Len) Local;
    12 brk(Addr) Local .returns(Address);
    13 rt_sigaction(Int, In, Out, Len) Local;
    14 rt_sigprocmask(Int, In, Out, Len) Local;
    15 rt_sigreturn() Always;
    16 ioctl(Fd, Any, Any) Forwarded .offset(OwnFd);
    17 pread64(Fd, BufOut(2), Len, Offset) Forwarded .returns(Count(2)) .offset(Untouched);
    18 pwrite64(Fd, BufIn(2), Len, Offset) Forwarded .returns(Count(2));
    19 readv(Fd, In, Len) Forwarded .offset(OwnFd);
    20 writev(Fd, In, Len) Forwarded;
    21 access(Path, Mode) Forwarded .offset(Untouched);
    22 pipe(Out) Forwarded;
    23 select(Int, InOut, InOut, InOut, InOut) Forwarded .offset(Untouched);
    24 sched_yield() Local;
    25 mremap(Addr, Len, Len, Flags, Addr) Local .returns(Address);
    26 msync(Addr, Len, Flags) Local;
    27 mincore(Addr, Len, Out) Forwarded;
    28 madvise(Addr, Len, Int) Local;
    29 shmget(Int, Len, Flags) Forwarded;
    30 shmat(Int, Addr, Flags) Forwarded .returns(Address);
    31 shmctl(Int, Int, InOut) Forwarded;
    32 dup(Fd) Forwarded;
    33 dup2(Fd, Fd) Forwarded;
    34 pause() Forwarded;
    35 nanosleep(In, Out) Forwarded .offset(Untouched);
    36 getitimer(Int, Out) Forwarded;
    37 alarm(Len) Forwarded;
    38 setitimer(Int, In, Out) Forwarded;
    39 getpid() Local;
    40 sendfile(Fd, Fd, InOut, Len) Forwarded .returns(Count(3));
    41 socket(Int, Flags, Int) Forwarded;
    42 connect(Fd, BufIn(2), Len) Forwarded;
    43 accept(Fd, Out, InOut) Forwarded;
    44 sendto(Fd, BufIn(2), Len, Flags, In, Len) Forwarded;
    45 recvfrom(Fd, BufOut(2), Len, Flags, Out, InOut) Forwarded;
    46 sendmsg(Fd, In, Flags) Forwarded;
    47 recvmsg(Fd, InOut, Flags) Forwarded;
    48 shutdown(Fd, Int) Forwarded;
    49 bind(Fd, BufIn(2), Len) Forwarded;
    50 listen(Fd, Int) Forwarded;
    51 getsockname(Fd, Out, InOut) Forwarded;
    52 getpeername(Fd, Out, InOut) Forwarded;
    53 socketpair(Int, Flags, Int, Out) Forwarded;
    54 setsockopt(Fd, Int, Int, BufIn(4), Len) Forwarded;
    55 getsockopt(Fd, Int, Int, Out, InOut) Forwarded;
    56 clone(Flags, Addr, Out, Out, Any) Forwarded;
    57 fork() Forwarded;
    58 vfork() Forwarded;
    59 execve(Path, In, In) Forwarded;
    60 exit(Int) Always;
    61 wait4(Int, Out, Flags, Out) Forwarded;
    62 kill(Int, Int) Local;
    63 uname(Out) Forwarded .offset(Untouched);
    64 semget(Int, Int, Flags) Forwarded;
    65 semop(Int, In, Len) Forwarded;
    66 semctl(Int, Int, Int, Any) Forwarded;
    67 shmdt(Addr) Forwarded;
    68 msgget(Int, Flags) Forwarded;
    69 msgsnd(Int, In, Len, Flags) Forwarded;
    70 msgrcv(Int, Out, Len, Int, Flags) Forwarded;
    71 msgctl(Int, Int, InOut) Forwarded;
    72 fcntl(Fd, Int, Any) Forwarded .offset(OwnFd);
    73 flock(Fd, Flags) Forwarded;
    74 fsync(Fd) Forwarded;
    75 fdatasync(Fd) Forwarded;
    76 truncate(Path, Offset) Forwarded;
    77 ftruncate(Fd, Offset) Forwarded;
    78 getdents(Fd, BufOut(2), Len) Forwarded .returns(Count(2));
    79 getcwd(BufOut(1), Len) Forwarded .returns(Count(1)) .offset(Untouched);
    80 chdir(Path) Forwarded;
    81 fchdir(Fd) Forwarded;
    82 rename(Path, Path) Forwarded;
    83 mkdir(Path, Mode) Forwarded;
    84 rmdir(Path) Forwarded;
    85 creat(Path, Mode) Forwarded;
    86 link(Path, Path) Forwarded;
    87 unlink(Path) Forwarded;
    88 symlink(Path, Path) Forwarded;
    89 readlink(Path, BufOut(2), Len) Forwarded .returns(Count(2)) .offset(Untouched);
    90 chmod(Path, Mode) Forwarded;
    91 fchmod(Fd, Mode) Forwarded;
    92 chown(Path, Int, Int) Forwarded;
    93 fchown(Fd, Int, Int) Forwarded;
    94 lchown(Path, Int, Int) Forwarded;
    95 umask(Mode) Forwarded;
    96 gettimeofday(Out, Out) LocalOrForwarded;
    97 getrlimit(Int, Out) Forwarded;
    98 getrusage(Int, Out) Forwarded;
    99 sysinfo(Out) Forwarded;
    100 times(Out) Forwarded;
    101 ptrace(Int, Int, Addr, Any) Forwarded;
    102 getuid() Local;
    103 syslog(Int, BufOut(2), Len) Forwarded;
    104 getgid() Local;
    105 setuid(Int) Forwarded;
    106 setgid(Int) Forwarded;
    107 geteuid() Local;
    108 getegid() Local;
    109 setpgid(Int, Int) Forwarded;
    110 getppid() Local;
    111 getpgrp() Forwarded;
    112 setsid() Forwarded;
    113 setreuid(Int, Int) Forwarded;
    114 setregid(Int, Int) Forwarded;
    115 getgroups(Len, Out) Forwarded;
    116 setgroups(Len, In) Forwarded;
    117 setresuid(Int, Int, Int) Forwarded;
    118 getresuid(Out, Out, Out) Local;
    119 setresgid(Int, Int, Int) Forwarded;
    120 getresgid(Out, Out, Out) Local;
    121 getpgid(Int) Forwarded;
    122 setfsuid(Int) Forwarded;
    123 setfsgid(Int) Forwarded;
    124 getsid(Int) Forwarded;
    125 capget(InOut, Out) Forwarded;
    126 capset(In, In) Forwarded;
    127 rt_sigpending(Out, Len) Local;
    128 rt_sigtimedwait(In, Out, In, Len) Local;
    129 rt_sigqueueinfo(Int, Int, In) Local;
    130 rt_sigsuspend(In, Len) Local;
    131 sigaltstack(In, Out) Local;
    132 utime(Path, In) Forwarded;
    133 mknod(Path, Mode, Any) Forwarded;
    134 uselib(Path) Forwarded;
    135 personality(Flags) Forwarded;
    136 ustat(Any, Out) Forwarded;
    137 statfs(Path, Out) Forwarded;
    138 fstatfs(Fd, Out) Forwarded;
    139 sysfs(Int, Any, Any) Forwarded;
    140 getpriority(Int, Int) Forwarded;
    141 setpriority(Int, Int, Int) Forwarded;
    142 sched_setparam(Int, In) Forwarded;
    143 sched_getparam(Int, Out) Forwarded;
    144 sched_setscheduler(Int, Int, In) Forwarded;
    145 sched_getscheduler(Int) Forwarded;
    146 sched_get_priority_max(Int) Forwarded;
    147 sched_get_priority_min(Int) Forwarded;
    148 sched_rr_get_interval(Int, Out) Forwarded;
    149 mlock(Addr, Len) Forwarded;
    150 munlock(Addr, Len) Forwarded;
    151 mlockall(Flags) Forwarded;
    152 munlockall() Forwarded;
    153 vhangup() Forwarded;
    154 modify_ldt(Int, InOut, Len) Forwarded;
    155 pivot_root(Path, Path) Forwarded;
    156 _sysctl(..) Forwarded;
    157 prctl(Int, Any, Any, Any, Any) Forwarded;
    158 arch_prctl(Any, Any) Local;
    159 adjtimex(InOut) Forwarded;
    160 setrlimit(Int, In) Forwarded;
    161 chroot(Path) Forwarded;
    162 sync() Forwarded;
    163 acct(Path) Forwarded;
    164 settimeofday(In, In) Forwarded;
    165 mount(Path, Path, Str, Flags, Any) Forwarded;
    166 umount2(Path, Flags) Forwarded;
    167 swapon(Path, Flags) Forwarded;
    168 swapoff(Path) Forwarded;
    169 reboot(Any, Any, Any, Any) Forwarded;
    170 sethostname(BufIn(1), Len) Forwarded;
    171 setdomainname(BufIn(1), Len) Forwarded;
    172 iopl(Int) Forwarded;
    173 ioperm(Len, Len, Int) Forwarded;
    174 create_module(..) Forwarded;
    175 init_module(BufIn(1), Len, Str) Forwarded;
    176 delete_module(Str, Flags) Forwarded;
    177 get_kernel_syms(..) Forwarded;
    178 query_module(..) Forwarded;
    179 quotactl(Int, Path, Int, Any) Forwarded;
    180 nfsservctl(..) Forwarded;
    181 getpmsg(..) Forwarded;
    182 putpmsg(..) Forwarded;
    183 afs_syscall(..) Forwarded;
    184 tuxcall(..) Forwarded;
    185 security(..) Forwarded;
    186 gettid() Local;
    187 readahead(Fd, Offset, Len) Forwarded;
    188 setxattr(Path, Str, BufIn(3), Len, Flags) Forwarded;
    189 lsetxattr(Path, Str, BufIn(3), Len, Flags) Forwarded;
    190 fsetxattr(Fd, Str, BufIn(3), Len, Flags) Forwarded;
    191 getxattr(Path, Str, BufOut(3), Len) Forwarded;
    192 lgetxattr(Path, Str, BufOut(3), Len) Forwarded;
    193 fgetxattr(Fd, Str, BufOut(3), Len) Forwarded;
    194 listxattr(Path, BufOut(2), Len) Forwarded;
    195 llistxattr(Path, BufOut(2), Len) Forwarded;
    196 flistxattr(Fd, BufOut(2), Len) Forwarded;
    197 removexattr(Path, Str) Forwarded;
    198 lremovexattr(Path, Str) Forwarded;
    199 fremovexattr(Fd, Str) Forwarded;
    200 tkill(Int, Int) Local;
    201 time(Out) LocalOrForwarded;
    202 futex(Addr, Int, Any, In, Addr, Any) Local .offset(Untouched);
    203 sched_setaffinity(Int, Len, In) Forwarded;
    204 sched_getaffinity(Int, Len, Out) Forwarded;
    205 set_thread_area(InOut) Forwarded;
    206 io_setup(Len, Out) Forwarded;
    207 io_destroy(Any) Forwarded;
    208 io_getevents(Any, Len, Len, Out, In) Forwarded;
    209 io_submit(Any, Len, In) Forwarded;
    210 io_cancel(Any, In, Out) Forwarded;
    211 get_thread_area(InOut) Forwarded;
    212 lookup_dcookie(Any, BufOut(2), Len) Forwarded;
    213 epoll_create(Int) Forwarded .offset(Untouched);
    214 epoll_ctl_old(..) Forwarded;
    215 epoll_wait_old(..) Forwarded;
    216 remap_file_pages(Addr, Len, Prot, Len, Flags) Forwarded;
    217 getdents64(Fd, BufOut(2), Len) Forwarded .returns(Count(2)) .offset(Untouched);
    218 set_tid_address(Addr) Local;
    219 restart_syscall() Forwarded;
    220 semtimedop(Int, In, Len, In) Forwarded;
    221 fadvise64(Fd, Offset, Len, Int) Forwarded;
    222 timer_create(Int, In, Out) Forwarded;
    223 timer_settime(Int, Flags, In, Out) Forwarded;
    224 timer_gettime(Int, Out) Forwarded;
    225 timer_getoverrun(Int) Forwarded;
    226 timer_delete(Int) Forwarded;
    227 clock_settime(Int, In) Forwarded;
    228 clock_gettime(Int, Out) LocalOrForwarded;
    229 clock_getres(Int, Out) LocalOrForwarded;
    230 clock_nanosleep(Int, Flags, In, Out) Forwarded .offset(Untouched);
    231 exit_group(Int) Always;
    232 epoll_wait(Fd, Out, Int, Int) Forwarded .offset(Untouched);
    233 epoll_ctl(Fd, Int, Fd, In) Forwarded .offset(Untouched);
    234 tgkill(Int, Int, Int) Local;
    235 utimes(Path, In) Forwarded;
    236 vserver(..) Forwarded;
    237 mbind(Addr, Len, Int, In, Len, Flags) Forwarded;
    238 set_mempolicy(Int, In, Len) Forwarded;
    239 get_mempolicy(Out, Out, Len, Addr, Flags) Forwarded;
    240 mq_open(Str, OpenFlags, Mode, In) Forwarded;
    241 mq_unlink(Str) Forwarded;
    242 mq_timedsend(Fd, BufIn(2), Len, Int, In) Forwarded;
    243 mq_timedreceive(Fd, BufOut(2), Len, Out, In) Forwarded;
    244 mq_notify(Fd, In) Forwarded;
    245 mq_getsetattr(Fd, In, Out) Forwarded;
    246 kexec_load(Addr, Len, In, Flags) Forwarded;
    247 waitid(Int, Int, Out, Flags, Out) Forwarded;
    248 add_key(Str, Str, BufIn(3), Len, Int) Forwarded;
    249 request_key(Str, Str, Str, Int) Forwarded;
    250 keyctl(Int, Any, Any, Any, Any) Forwarded;
    251 ioprio_set(Int, Int, Int) Forwarded;
    252 ioprio_get(Int, Int) Forwarded;
    253 inotify_init() Forwarded;
    254 inotify_add_watch(Fd, Path, Flags) Forwarded;
    255 inotify_rm_watch(Fd, Int) Forwarded;
    256 migrate_pages(Int, Len, In, In) Forwarded;
    257 openat(DirFd, Path, OpenFlags, Mode) Forwarded;
    258 mkdirat(DirFd, Path, Mode) Forwarded;
    259 mknodat(DirFd, Path, Mode, Any) Forwarded;
    260 fchownat(DirFd, Path, Int, Int, Flags) Forwarded;
    261 futimesat(DirFd, Path, In) Forwarded;
    262 newfstatat(DirFd, Path, Out, Flags) Forwarded .offset(Untouched);
    263 unlinkat(DirFd, Path, Flags) Forwarded;
    264 renameat(DirFd, Path, DirFd, Path) Forwarded;
    265 linkat(DirFd, Path, DirFd, Path, Flags) Forwarded;
    266 symlinkat(Path, DirFd, Path) Forwarded;
    267 readlinkat(DirFd, Path, BufOut(3), Len) Forwarded .returns(Count(3)) .offset(Untouched);
    268 fchmodat(DirFd, Path, Mode) Forwarded;
    269 faccessat(DirFd, Path, Mode) Forwarded .offset(Untouched);
    270 pselect6(Int, InOut, InOut, InOut, InOut, In) Forwarded .offset(Untouched);
    271 ppoll(InOut, Len, In, In, Len) Forwarded .offset(Untouched);
    272 unshare(Flags) Forwarded;
    273 set_robust_list(In, Len) Local;
    274 get_robust_list(Int, Out, Out) Local;
    275 splice(Fd, InOut, Fd, InOut, Len, Flags) Forwarded .returns(Count(4));
    276 tee(Fd, Fd, Len, Flags) Forwarded .returns(Count(2));
    277 sync_file_range(Fd, Offset, Offset, Flags) Forwarded;
    278 vmsplice(Fd, In, Len, Flags) Forwarded;
    279 move_pages(Int, Len, In, In, Out, Flags) Forwarded;
    280 utimensat(DirFd, Path, In, Flags) Forwarded;
    281 epoll_pwait(Fd, Out, Int, Int, In, Len) Forwarded .offset(Untouched);
    282 signalfd(Fd, In, Len) Forwarded;
    283 timerfd_create(Int, Flags) Forwarded .offset(Untouched);
    284 eventfd(Len) Forwarded .offset(Untouched);
    285 fallocate(Fd, Flags, Offset, Offset) Forwarded;
    286 timerfd_settime(Fd, Flags, In, Out) Forwarded .offset(Untouched);
    287 timerfd_gettime(Fd, Out) Forwarded .offset(Untouched);
    288 accept4(Fd, Out, InOut, Flags) Forwarded;
    289 signalfd4(Fd, In, Len, Flags) Forwarded;
    290 eventfd2(Len, Flags) Forwarded .offset(Untouched);
    291 epoll_create1(Flags) Forwarded .offset(Untouched);
    292 dup3(Fd, Fd, Flags) Forwarded;
    293 pipe2(Out, Flags) Forwarded;
    294 inotify_init1(Flags) Forwarded;
    295 preadv(Fd, In, Len, Offset, Offset) Forwarded .offset(OwnFd);
    296 pwritev(Fd, In, Len, Offset, Offset) Forwarded;
    297 rt_tgsigqueueinfo(Int, Int, Int, In) Local;
    298 perf_event_open(In, Int, Int, Fd, Flags) Forwarded;
    299 recvmmsg(Fd, InOut, Len, Flags, In) Forwarded;
    300 fanotify_init(Flags, Flags) Forwarded;
    301 fanotify_mark(Fd, Flags, Flags, DirFd, Path) Forwarded;
    302 prlimit64(Int, Int, In, Out) Forwarded;
    303 name_to_handle_at(DirFd, Path, InOut, Out, Flags) Forwarded;
    304 open_by_handle_at(Fd, In, OpenFlags) Forwarded;
    305 clock_adjtime(Int, InOut) Forwarded;
    306 syncfs(Fd) Forwarded;
    307 sendmmsg(Fd, InOut, Len, Flags) Forwarded;
    308 setns(Fd, Flags) Forwarded;
    309 getcpu(Out, Out, Out) Forwarded;
    310 process_vm_readv(Int, In, Len, In, Len, Flags) Forwarded;
    311 process_vm_writev(Int, In, Len, In, Len, Flags) Forwarded;
    312 kcmp(Int, Int, Int, Any, Any) Forwarded;
    313 finit_module(Fd, Str, Flags) Forwarded;
    314 sched_setattr(Int, In, Flags) Forwarded;
    315 sched_getattr(Int, Out, Len, Flags) Forwarded;
    316 renameat2(DirFd, Path, DirFd, Path, Flags) Forwarded;
    317 seccomp(Int, Flags, In) Forwarded;
    318 getrandom(BufOut(1), Len, Flags) Forwarded .returns(Count(1)) .offset(Untouched);
    319 memfd_create(Str, Flags) Forwarded;
    320 kexec_file_load(Fd, Fd, Len, Str, Flags) Forwarded;
    321 bpf(Int, InOut, Len) Forwarded;
    322 execveat(DirFd, Path, In, In, Flags) Forwarded;
    323 userfaultfd(Flags) Forwarded;
    324 membarrier(Int, Flags, Int) Forwarded;
    325 mlock2(Addr, Len, Flags) Forwarded;
    326 copy_file_range(Fd, InOut, Fd, InOut, Len, Flags) Forwarded .returns(Count(4));
    327 preadv2(Fd, In, Len, Offset, Offset, Flags) Forwarded;
    328 pwritev2(Fd, In, Len, Offset, Offset, Flags) Forwarded;
    329 pkey_mprotect(Addr, Len, Prot, Int) Forwarded;
    330 pkey_alloc(Flags, Flags) Forwarded;
    331 pkey_free(Int) Forwarded;
    332 statx(DirFd, Path, Flags, Flags, Out) Forwarded .offset(Untouched);
    333 io_pgetevents(Any, Len, Len, Out, In, In) Forwarded;
    334 rseq(InOut, Len, Flags, Any) Local;
    335 uretprobe() Forwarded;
    336 uprobe() Forwarded;
    424 pidfd_send_signal(Fd, Int, In, Flags) Forwarded;
    425 io_uring_setup(Len, InOut) Forwarded;
    426 io_uring_enter(Fd, Len, Len, Flags, In, Len) Forwarded;
    427 io_uring_register(Fd, Int, Any, Len) Forwarded;
    428 open_tree(DirFd, Path, Flags) Forwarded;
    429 move_mount(DirFd, Path, DirFd, Path, Flags) Forwarded;
    430 fsopen(Str, Flags) Forwarded;
    431 fsconfig(Fd, Int, Str, Any, Int) Forwarded;
    432 fsmount(Fd, Flags, Flags) Forwarded;
    433 fspick(DirFd, Path, Flags) Forwarded;
    434 pidfd_open(Int, Flags) Forwarded;
    435 clone3(InOut, Len) Forwarded;
    436 close_range(Fd, Fd, Flags) Forwarded;
    437 openat2(DirFd, Path, In, Len) Forwarded;
    438 pidfd_getfd(Fd, Fd, Flags) Forwarded;
    439 faccessat2(DirFd, Path, Mode, Flags) Forwarded .offset(Untouched);
    440 process_madvise(Fd, In, Len, Int, Flags) Forwarded;
    441 epoll_pwait2(Fd, Out, Int, In, In, Len) Forwarded .offset(Untouched);
    442 mount_setattr(DirFd, Path, Flags, In, Len) Forwarded;
    443 quotactl_fd(Fd, Int, Int, Any) Forwarded;
    444 landlock_create_ruleset(In, Len, Flags) Forwarded;
    445 landlock_add_rule(Fd, Int, In, Flags) Forwarded;
    446 landlock_restrict_self(Fd, Flags) Forwarded;
    447 memfd_secret(Flags) Forwarded;
    448 process_mrelease(Fd, Flags) Forwarded;
    449 futex_waitv(In, Len, Flags, In, Int) Forwarded;
    450 set_mempolicy_home_node(Addr, Len, Int, Flags) Forwarded;
    451 cachestat(Fd, In, Out, Flags) Forwarded;
    452 fchmodat2(DirFd, Path, Mode, Flags) Forwarded;
    453 map_shadow_stack(Addr, Len, Flags) Forwarded .returns(Address);
    454 futex_wake(Addr, Any, Int, Flags) Forwarded;
    455 futex_wait(Addr, Any, Any, Flags, In, Int) Forwarded;
    456 futex_requeue(In, Flags, Int, Int) Forwarded;
    457 statmount(In, Out, Len, Flags) Forwarded;
    458 listmount(In, Out, Len, Flags) Forwarded;
    459 lsm_get_self_attr(Int, Out, InOut, Flags) Forwarded;
    460 lsm_set_self_attr(Int, In, Len, Flags) Forwarded;
    461 lsm_list_modules(Out, InOut, Flags) Forwarded;
    462 mseal(Addr, Len, Flags) Forwarded;
    463 setxattrat(DirFd, Path, Flags, Str, In, Len) Forwarded;
    464 getxattrat(DirFd, Path, Flags, Str, InOut, Len) Forwarded;
    465 listxattrat(DirFd, Path, Flags, BufOut(4), Len) Forwarded;
    466 removexattrat(DirFd, Path, Flags, Str) Forwarded;
    467 open_tree_attr(DirFd, Path, Flags, In, Len) Forwarded;
}

/// Numbers below this have a slot in per-number tables ([`route`],
/// [`CallSet`], the policy's decision table, the boot page's counters).
pub const SLOTS: usize = 512;

/// Highest number in [`TABLE`].
pub const MAX_KNOWN: u64 = TABLE[TABLE.len() - 1].nr as u64;

/// What the libos needs of a row on its hot path, in one byte: the serve
/// class (bits 0-1), the offset class (bits 2-3) and the reply bound
/// (bits 4-6: the argument index + 1 of [`Ret::Count`], 0 for none).
/// Numbers without a row are forwarded, unbounded and [`FileOffset::Unknown`]
/// (the byte 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Route(u8);

impl Route {
    const fn of(s: &Syscall) -> Route {
        let count = match s.returns {
            Ret::Count(i) => i + 1,
            _ => 0,
        };
        Route(s.serve as u8 | (s.offset as u8) << 2 | count << 4)
    }

    /// How the call is served.
    #[inline]
    pub const fn serve(self) -> Serve {
        match self.0 & 3 {
            0 => Forwarded,
            1 => Local,
            2 => LocalOrForwarded,
            _ => Always,
        }
    }

    /// Whether the call can see or move a file offset ([`Syscall::offset`]).
    #[inline]
    pub const fn offset(self) -> FileOffset {
        match (self.0 >> 2) & 3 {
            1 => OwnFd,
            2 => Untouched,
            _ => FileOffset::Unknown,
        }
    }

    /// The argument whose value bounds a successful reply ([`Ret::Count`]).
    #[inline]
    pub const fn count_bound(self) -> Option<usize> {
        match (self.0 >> 4) & 7 {
            0 => None,
            i => Some(i as usize - 1),
        }
    }
}

static ROUTE_BY_NR: [Route; SLOTS] = {
    let mut a = [Route(0); SLOTS];
    let mut i = 0;
    while i < TABLE.len() {
        a[TABLE[i].nr as usize] = Route::of(&TABLE[i]);
        i += 1;
    }
    a
};

/// What the libos needs to know about call `nr` (a byte load); numbers the
/// table does not hold (including x32 numbers and anything at or above
/// [`SLOTS`]) are forwarded, and the monitor answers them.
#[inline]
pub fn route(nr: u64) -> Route {
    if nr < SLOTS as u64 {
        ROUTE_BY_NR[nr as usize]
    } else {
        Route(0)
    }
}

/// How call `nr` is served ([`route`]).
#[inline]
pub fn serve(nr: u64) -> Serve {
    route(nr).serve()
}

/// The row of call `nr`, if the table has one.
pub fn get(nr: u64) -> Option<&'static Syscall> {
    let nr = u16::try_from(nr).ok()?;
    TABLE.binary_search_by_key(&nr, |s| s.nr).ok().map(|i| &TABLE[i])
}

/// The name of call `nr`, if it has one.
pub fn name(nr: u64) -> Option<&'static str> {
    get(nr).map(|s| s.name)
}

/// The number of the call called `name`, if there is one on x86-64.
pub fn number(name: &str) -> Option<u64> {
    TABLE.iter().find(|s| s.name == name).map(|s| u64::from(s.nr))
}

/// The calls the libos serves inside the domain ([`Serve::Local`],
/// [`Serve::LocalOrForwarded`] and [`Serve::Always`]), by number.
pub fn served_locally() -> impl Iterator<Item = &'static Syscall> {
    TABLE.iter().filter(|s| s.serve != Forwarded)
}

/// A set of call numbers below [`SLOTS`], one bit each. The boot page
/// carries one (`crate::boot::BootInfo::check_local`): the locally served
/// calls the policy does not plainly allow, which the libos must have the
/// monitor decide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct CallSet(pub [u64; SLOTS / 64]);

impl CallSet {
    /// No call.
    pub const EMPTY: CallSet = CallSet([0; SLOTS / 64]);

    /// Whether `nr` is in the set (never for numbers at or above [`SLOTS`]).
    #[inline]
    pub fn contains(&self, nr: u64) -> bool {
        nr < SLOTS as u64 && self.0[(nr / 64) as usize] & (1 << (nr % 64)) != 0
    }

    /// Adds `nr` (numbers at or above [`SLOTS`] are ignored).
    pub fn insert(&mut self, nr: u64) {
        if nr < SLOTS as u64 {
            self.0[(nr / 64) as usize] |= 1 << (nr % 64);
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_round_trips() {
        assert!(TABLE.windows(2).all(|w| w[0].nr < w[1].nr));
        for s in TABLE {
            assert_eq!(number(s.name), Some(u64::from(s.nr)), "{}", s.name);
            assert_eq!(name(u64::from(s.nr)), Some(s.name));
            assert_eq!(serve(u64::from(s.nr)), s.serve);
            assert!((s.nr as usize) < SLOTS);
        }
        assert_eq!(number("openat"), Some(257));
        assert_eq!(number("_llseek"), None);
        assert_eq!(name(999), None);
        assert_eq!(MAX_KNOWN, 467);
    }

    #[test]
    fn served_inside_the_domain() {
        let class = |n: &str| number(n).map(serve);
        assert_eq!(class("read"), Some(Forwarded));
        assert_eq!(class("kill"), Some(Local));
        assert_eq!(class("futex"), Some(Local));
        assert_eq!(class("clock_gettime"), Some(LocalOrForwarded));
        assert_eq!(class("exit_group"), Some(Always));
        assert_eq!(serve(1 << 30), Forwarded);
        assert_eq!(class("get_robust_list"), Some(Local));
        assert_eq!(class("rt_sigreturn"), Some(Always), "the libos serves it, in ring 3");
        assert_eq!(class("rt_sigsuspend"), Some(Local));
        assert_eq!(served_locally().count(), 41);
    }

    /// The packed byte the libos reads says what the row says.
    #[test]
    fn routes_match_the_rows() {
        for s in TABLE {
            let r = route(u64::from(s.nr));
            assert_eq!(r.serve(), s.serve, "{}", s.name);
            assert_eq!(r.offset(), s.offset, "{}", s.name);
            let bound = match s.returns {
                Ret::Count(i) => Some(i as usize),
                _ => None,
            };
            assert_eq!(r.count_bound(), bound, "{}", s.name);
        }
        for nr in [337, 423, 468, 511, 512, u64::MAX] {
            assert_eq!(route(nr), Route(0));
            assert_eq!(
                (route(nr).serve(), route(nr).offset(), route(nr).count_bound()),
                (Forwarded, FileOffset::Unknown, None)
            );
        }
        assert_eq!(nr::openat, 257);
        assert_eq!(nr::exit_group, 231);
        assert_eq!(route(nr::read).count_bound(), Some(2));
        assert_eq!(route(nr::sendfile).count_bound(), Some(3));
    }

    /// Argument kinds are consistent: at most six, a buffer's length and a
    /// reply bound name a `Len` argument, an `OwnFd` call takes a
    /// descriptor first, a `DirFd` comes before a path.
    #[test]
    fn argument_kinds_are_consistent() {
        for s in TABLE {
            let Some(args) = s.args else { continue };
            assert!(args.len() <= 6, "{}", s.name);
            for (i, a) in args.iter().enumerate() {
                if let BufIn(n) | BufOut(n) = a {
                    assert_eq!(args.get(*n as usize), Some(&Len), "{} argument {i}", s.name);
                }
                if *a == DirFd {
                    assert_eq!(args.get(i + 1), Some(&Path), "{} argument {i}", s.name);
                }
            }
            if let Ret::Count(n) = s.returns {
                assert_eq!(args.get(n as usize), Some(&Len), "{}", s.name);
            }
            if s.offset == OwnFd {
                assert_eq!(args.first(), Some(&Fd), "{}", s.name);
            }
        }
        let unimplemented: usize = TABLE.iter().filter(|s| s.args.is_none()).count();
        assert_eq!(unimplemented, 13);
    }

    /// Every name and number agrees with the maintained `syscalls` crate
    /// (generated from the kernel's sources); a call it knows below
    /// `MAX_KNOWN` is in the table.
    #[test]
    fn names_and_numbers_agree_with_the_syscalls_crate() {
        use syscalls::x86_64::Sysno;
        for s in TABLE {
            let theirs = Sysno::new(s.nr as usize).map(|n| n.name());
            assert_eq!(theirs, Some(s.name), "number {}", s.nr);
        }
        for n in Sysno::iter().filter(|n| n.id() as u64 <= MAX_KNOWN) {
            assert_eq!(name(n.id() as u64), Some(n.name()), "{n}");
        }
    }

    #[test]
    fn call_sets() {
        let mut s = CallSet::EMPTY;
        assert!(s.is_empty());
        s.insert(62);
        s.insert(511);
        s.insert(512);
        assert!(s.contains(62) && s.contains(511) && !s.contains(512) && !s.contains(63));
        assert!(!s.is_empty());
    }
}
