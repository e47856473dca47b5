//! The system-call table: every x86-64 Linux system call Cabin knows, by
//! number, with its name and how a confined program's call to it is served.
//!
//! One table, read by every part that needs to know about system calls
//! (STYLE.md: "a table, not a switch"):
//!
//! - the libos routes each call by [`serve`]: forwarded to the monitor, or
//!   served inside the domain (and then, for the calls the policy does not
//!   plainly allow, first checked by the monitor: [`CallSet`],
//!   `crate::boot::BootInfo::check_local`);
//! - the monitor's policy takes names and numbers from it, decides which
//!   rules it can enforce (`policy check` refuses a rule that would refuse an
//!   [`Serve::Always`] call) and builds the boot page's [`CallSet`];
//! - reports, statistics and the trace name calls through [`name`].
//!
//! It is the start of the single syscall table issue 12 asks for; the
//! columns still to come (argument kinds for the trace decoder and the
//! service) belong in [`Syscall`]. Numbers 0..=334 and 424..=450 follow the
//! kernel's `asm/unistd_64.h`; 451..=467 were added by later kernels. The
//! numbers are the stable Linux ABI.
//!
//! Everything here is `const` data: the libos reads [`serve`] from a
//! 512-byte array on its hot path, and links none of the names.

/// How the libos serves a call. A policy governs every class but
/// [`Serve::Always`] in the same way: a call it does not allow is refused
/// (or ends the program) whichever side would have served it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Serve {
    /// The monitor serves it (over the ring, or after a trap): the policy
    /// decides every call.
    Forwarded,
    /// The libos serves it inside the domain (anonymous memory from the
    /// arena, identity from the boot page, signal bookkeeping, self-signals,
    /// single-threaded futex, `sched_yield`, `rseq` answered `ENOSYS`). When
    /// the policy does not plainly allow it, the libos first asks the
    /// monitor (a check-only submission, [`crate::ring::SUB_CHECK`]): the
    /// policy's decision is taken there, and the libos serves the call only
    /// when it is allowed. The effect of such a call never leaves the domain.
    Local,
    /// Clock reads: the libos serves them inside the domain when it can
    /// (from the TSC on KVM, the host's clock call on the process backend);
    /// when the policy does not plainly allow one, the libos forwards it and
    /// the monitor serves it, as a [`Serve::Forwarded`] call.
    LocalOrForwarded,
    /// Ending the program (`exit`, `exit_group`): always served, whatever
    /// the policy says. A program can always end itself (a fault ends it
    /// too), so a rule refusing these could not be enforced: `policy check`
    /// rejects one, and neither the default action nor a group applies.
    Always,
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
}

const fn sc(nr: u16, name: &'static str, serve: Serve) -> Syscall {
    Syscall { nr, name, serve }
}

use Serve::{Always, Forwarded, Local, LocalOrForwarded};

/// Every x86-64 system call, by number.
pub const TABLE: &[Syscall] = &[
    sc(0, "read", Forwarded),
    sc(1, "write", Forwarded),
    sc(2, "open", Forwarded),
    sc(3, "close", Forwarded),
    sc(4, "stat", Forwarded),
    sc(5, "fstat", Forwarded),
    sc(6, "lstat", Forwarded),
    sc(7, "poll", Forwarded),
    sc(8, "lseek", Forwarded),
    sc(9, "mmap", Local),
    sc(10, "mprotect", Local),
    sc(11, "munmap", Local),
    sc(12, "brk", Local),
    sc(13, "rt_sigaction", Local),
    sc(14, "rt_sigprocmask", Local),
    sc(15, "rt_sigreturn", Forwarded),
    sc(16, "ioctl", Forwarded),
    sc(17, "pread64", Forwarded),
    sc(18, "pwrite64", Forwarded),
    sc(19, "readv", Forwarded),
    sc(20, "writev", Forwarded),
    sc(21, "access", Forwarded),
    sc(22, "pipe", Forwarded),
    sc(23, "select", Forwarded),
    sc(24, "sched_yield", Local),
    sc(25, "mremap", Local),
    sc(26, "msync", Local),
    sc(27, "mincore", Forwarded),
    sc(28, "madvise", Local),
    sc(29, "shmget", Forwarded),
    sc(30, "shmat", Forwarded),
    sc(31, "shmctl", Forwarded),
    sc(32, "dup", Forwarded),
    sc(33, "dup2", Forwarded),
    sc(34, "pause", Forwarded),
    sc(35, "nanosleep", Forwarded),
    sc(36, "getitimer", Forwarded),
    sc(37, "alarm", Forwarded),
    sc(38, "setitimer", Forwarded),
    sc(39, "getpid", Local),
    sc(40, "sendfile", Forwarded),
    sc(41, "socket", Forwarded),
    sc(42, "connect", Forwarded),
    sc(43, "accept", Forwarded),
    sc(44, "sendto", Forwarded),
    sc(45, "recvfrom", Forwarded),
    sc(46, "sendmsg", Forwarded),
    sc(47, "recvmsg", Forwarded),
    sc(48, "shutdown", Forwarded),
    sc(49, "bind", Forwarded),
    sc(50, "listen", Forwarded),
    sc(51, "getsockname", Forwarded),
    sc(52, "getpeername", Forwarded),
    sc(53, "socketpair", Forwarded),
    sc(54, "setsockopt", Forwarded),
    sc(55, "getsockopt", Forwarded),
    sc(56, "clone", Forwarded),
    sc(57, "fork", Forwarded),
    sc(58, "vfork", Forwarded),
    sc(59, "execve", Forwarded),
    sc(60, "exit", Always),
    sc(61, "wait4", Forwarded),
    sc(62, "kill", Local),
    sc(63, "uname", Forwarded),
    sc(64, "semget", Forwarded),
    sc(65, "semop", Forwarded),
    sc(66, "semctl", Forwarded),
    sc(67, "shmdt", Forwarded),
    sc(68, "msgget", Forwarded),
    sc(69, "msgsnd", Forwarded),
    sc(70, "msgrcv", Forwarded),
    sc(71, "msgctl", Forwarded),
    sc(72, "fcntl", Forwarded),
    sc(73, "flock", Forwarded),
    sc(74, "fsync", Forwarded),
    sc(75, "fdatasync", Forwarded),
    sc(76, "truncate", Forwarded),
    sc(77, "ftruncate", Forwarded),
    sc(78, "getdents", Forwarded),
    sc(79, "getcwd", Forwarded),
    sc(80, "chdir", Forwarded),
    sc(81, "fchdir", Forwarded),
    sc(82, "rename", Forwarded),
    sc(83, "mkdir", Forwarded),
    sc(84, "rmdir", Forwarded),
    sc(85, "creat", Forwarded),
    sc(86, "link", Forwarded),
    sc(87, "unlink", Forwarded),
    sc(88, "symlink", Forwarded),
    sc(89, "readlink", Forwarded),
    sc(90, "chmod", Forwarded),
    sc(91, "fchmod", Forwarded),
    sc(92, "chown", Forwarded),
    sc(93, "fchown", Forwarded),
    sc(94, "lchown", Forwarded),
    sc(95, "umask", Forwarded),
    sc(96, "gettimeofday", LocalOrForwarded),
    sc(97, "getrlimit", Forwarded),
    sc(98, "getrusage", Forwarded),
    sc(99, "sysinfo", Forwarded),
    sc(100, "times", Forwarded),
    sc(101, "ptrace", Forwarded),
    sc(102, "getuid", Local),
    sc(103, "syslog", Forwarded),
    sc(104, "getgid", Local),
    sc(105, "setuid", Forwarded),
    sc(106, "setgid", Forwarded),
    sc(107, "geteuid", Local),
    sc(108, "getegid", Local),
    sc(109, "setpgid", Local),
    sc(110, "getppid", Local),
    sc(111, "getpgrp", Local),
    sc(112, "setsid", Forwarded),
    sc(113, "setreuid", Forwarded),
    sc(114, "setregid", Forwarded),
    sc(115, "getgroups", Forwarded),
    sc(116, "setgroups", Forwarded),
    sc(117, "setresuid", Forwarded),
    sc(118, "getresuid", Local),
    sc(119, "setresgid", Forwarded),
    sc(120, "getresgid", Local),
    sc(121, "getpgid", Local),
    sc(122, "setfsuid", Forwarded),
    sc(123, "setfsgid", Forwarded),
    sc(124, "getsid", Local),
    sc(125, "capget", Forwarded),
    sc(126, "capset", Forwarded),
    sc(127, "rt_sigpending", Forwarded),
    sc(128, "rt_sigtimedwait", Forwarded),
    sc(129, "rt_sigqueueinfo", Forwarded),
    sc(130, "rt_sigsuspend", Forwarded),
    sc(131, "sigaltstack", Local),
    sc(132, "utime", Forwarded),
    sc(133, "mknod", Forwarded),
    sc(134, "uselib", Forwarded),
    sc(135, "personality", Forwarded),
    sc(136, "ustat", Forwarded),
    sc(137, "statfs", Forwarded),
    sc(138, "fstatfs", Forwarded),
    sc(139, "sysfs", Forwarded),
    sc(140, "getpriority", Forwarded),
    sc(141, "setpriority", Forwarded),
    sc(142, "sched_setparam", Forwarded),
    sc(143, "sched_getparam", Forwarded),
    sc(144, "sched_setscheduler", Forwarded),
    sc(145, "sched_getscheduler", Forwarded),
    sc(146, "sched_get_priority_max", Forwarded),
    sc(147, "sched_get_priority_min", Forwarded),
    sc(148, "sched_rr_get_interval", Forwarded),
    sc(149, "mlock", Forwarded),
    sc(150, "munlock", Forwarded),
    sc(151, "mlockall", Forwarded),
    sc(152, "munlockall", Forwarded),
    sc(153, "vhangup", Forwarded),
    sc(154, "modify_ldt", Forwarded),
    sc(155, "pivot_root", Forwarded),
    sc(156, "_sysctl", Forwarded),
    sc(157, "prctl", Forwarded),
    sc(158, "arch_prctl", Local),
    sc(159, "adjtimex", Forwarded),
    sc(160, "setrlimit", Forwarded),
    sc(161, "chroot", Forwarded),
    sc(162, "sync", Forwarded),
    sc(163, "acct", Forwarded),
    sc(164, "settimeofday", Forwarded),
    sc(165, "mount", Forwarded),
    sc(166, "umount2", Forwarded),
    sc(167, "swapon", Forwarded),
    sc(168, "swapoff", Forwarded),
    sc(169, "reboot", Forwarded),
    sc(170, "sethostname", Forwarded),
    sc(171, "setdomainname", Forwarded),
    sc(172, "iopl", Forwarded),
    sc(173, "ioperm", Forwarded),
    sc(174, "create_module", Forwarded),
    sc(175, "init_module", Forwarded),
    sc(176, "delete_module", Forwarded),
    sc(177, "get_kernel_syms", Forwarded),
    sc(178, "query_module", Forwarded),
    sc(179, "quotactl", Forwarded),
    sc(180, "nfsservctl", Forwarded),
    sc(181, "getpmsg", Forwarded),
    sc(182, "putpmsg", Forwarded),
    sc(183, "afs_syscall", Forwarded),
    sc(184, "tuxcall", Forwarded),
    sc(185, "security", Forwarded),
    sc(186, "gettid", Local),
    sc(187, "readahead", Forwarded),
    sc(188, "setxattr", Forwarded),
    sc(189, "lsetxattr", Forwarded),
    sc(190, "fsetxattr", Forwarded),
    sc(191, "getxattr", Forwarded),
    sc(192, "lgetxattr", Forwarded),
    sc(193, "fgetxattr", Forwarded),
    sc(194, "listxattr", Forwarded),
    sc(195, "llistxattr", Forwarded),
    sc(196, "flistxattr", Forwarded),
    sc(197, "removexattr", Forwarded),
    sc(198, "lremovexattr", Forwarded),
    sc(199, "fremovexattr", Forwarded),
    sc(200, "tkill", Local),
    sc(201, "time", LocalOrForwarded),
    sc(202, "futex", Local),
    sc(203, "sched_setaffinity", Forwarded),
    sc(204, "sched_getaffinity", Forwarded),
    sc(205, "set_thread_area", Forwarded),
    sc(206, "io_setup", Forwarded),
    sc(207, "io_destroy", Forwarded),
    sc(208, "io_getevents", Forwarded),
    sc(209, "io_submit", Forwarded),
    sc(210, "io_cancel", Forwarded),
    sc(211, "get_thread_area", Forwarded),
    sc(212, "lookup_dcookie", Forwarded),
    sc(213, "epoll_create", Forwarded),
    sc(214, "epoll_ctl_old", Forwarded),
    sc(215, "epoll_wait_old", Forwarded),
    sc(216, "remap_file_pages", Forwarded),
    sc(217, "getdents64", Forwarded),
    sc(218, "set_tid_address", Local),
    sc(219, "restart_syscall", Forwarded),
    sc(220, "semtimedop", Forwarded),
    sc(221, "fadvise64", Forwarded),
    sc(222, "timer_create", Forwarded),
    sc(223, "timer_settime", Forwarded),
    sc(224, "timer_gettime", Forwarded),
    sc(225, "timer_getoverrun", Forwarded),
    sc(226, "timer_delete", Forwarded),
    sc(227, "clock_settime", Forwarded),
    sc(228, "clock_gettime", LocalOrForwarded),
    sc(229, "clock_getres", LocalOrForwarded),
    sc(230, "clock_nanosleep", Forwarded),
    sc(231, "exit_group", Always),
    sc(232, "epoll_wait", Forwarded),
    sc(233, "epoll_ctl", Forwarded),
    sc(234, "tgkill", Local),
    sc(235, "utimes", Forwarded),
    sc(236, "vserver", Forwarded),
    sc(237, "mbind", Forwarded),
    sc(238, "set_mempolicy", Forwarded),
    sc(239, "get_mempolicy", Forwarded),
    sc(240, "mq_open", Forwarded),
    sc(241, "mq_unlink", Forwarded),
    sc(242, "mq_timedsend", Forwarded),
    sc(243, "mq_timedreceive", Forwarded),
    sc(244, "mq_notify", Forwarded),
    sc(245, "mq_getsetattr", Forwarded),
    sc(246, "kexec_load", Forwarded),
    sc(247, "waitid", Forwarded),
    sc(248, "add_key", Forwarded),
    sc(249, "request_key", Forwarded),
    sc(250, "keyctl", Forwarded),
    sc(251, "ioprio_set", Forwarded),
    sc(252, "ioprio_get", Forwarded),
    sc(253, "inotify_init", Forwarded),
    sc(254, "inotify_add_watch", Forwarded),
    sc(255, "inotify_rm_watch", Forwarded),
    sc(256, "migrate_pages", Forwarded),
    sc(257, "openat", Forwarded),
    sc(258, "mkdirat", Forwarded),
    sc(259, "mknodat", Forwarded),
    sc(260, "fchownat", Forwarded),
    sc(261, "futimesat", Forwarded),
    sc(262, "newfstatat", Forwarded),
    sc(263, "unlinkat", Forwarded),
    sc(264, "renameat", Forwarded),
    sc(265, "linkat", Forwarded),
    sc(266, "symlinkat", Forwarded),
    sc(267, "readlinkat", Forwarded),
    sc(268, "fchmodat", Forwarded),
    sc(269, "faccessat", Forwarded),
    sc(270, "pselect6", Forwarded),
    sc(271, "ppoll", Forwarded),
    sc(272, "unshare", Forwarded),
    sc(273, "set_robust_list", Local),
    sc(274, "get_robust_list", Forwarded),
    sc(275, "splice", Forwarded),
    sc(276, "tee", Forwarded),
    sc(277, "sync_file_range", Forwarded),
    sc(278, "vmsplice", Forwarded),
    sc(279, "move_pages", Forwarded),
    sc(280, "utimensat", Forwarded),
    sc(281, "epoll_pwait", Forwarded),
    sc(282, "signalfd", Forwarded),
    sc(283, "timerfd_create", Forwarded),
    sc(284, "eventfd", Forwarded),
    sc(285, "fallocate", Forwarded),
    sc(286, "timerfd_settime", Forwarded),
    sc(287, "timerfd_gettime", Forwarded),
    sc(288, "accept4", Forwarded),
    sc(289, "signalfd4", Forwarded),
    sc(290, "eventfd2", Forwarded),
    sc(291, "epoll_create1", Forwarded),
    sc(292, "dup3", Forwarded),
    sc(293, "pipe2", Forwarded),
    sc(294, "inotify_init1", Forwarded),
    sc(295, "preadv", Forwarded),
    sc(296, "pwritev", Forwarded),
    sc(297, "rt_tgsigqueueinfo", Forwarded),
    sc(298, "perf_event_open", Forwarded),
    sc(299, "recvmmsg", Forwarded),
    sc(300, "fanotify_init", Forwarded),
    sc(301, "fanotify_mark", Forwarded),
    sc(302, "prlimit64", Forwarded),
    sc(303, "name_to_handle_at", Forwarded),
    sc(304, "open_by_handle_at", Forwarded),
    sc(305, "clock_adjtime", Forwarded),
    sc(306, "syncfs", Forwarded),
    sc(307, "sendmmsg", Forwarded),
    sc(308, "setns", Forwarded),
    sc(309, "getcpu", Forwarded),
    sc(310, "process_vm_readv", Forwarded),
    sc(311, "process_vm_writev", Forwarded),
    sc(312, "kcmp", Forwarded),
    sc(313, "finit_module", Forwarded),
    sc(314, "sched_setattr", Forwarded),
    sc(315, "sched_getattr", Forwarded),
    sc(316, "renameat2", Forwarded),
    sc(317, "seccomp", Forwarded),
    sc(318, "getrandom", Forwarded),
    sc(319, "memfd_create", Forwarded),
    sc(320, "kexec_file_load", Forwarded),
    sc(321, "bpf", Forwarded),
    sc(322, "execveat", Forwarded),
    sc(323, "userfaultfd", Forwarded),
    sc(324, "membarrier", Forwarded),
    sc(325, "mlock2", Forwarded),
    sc(326, "copy_file_range", Forwarded),
    sc(327, "preadv2", Forwarded),
    sc(328, "pwritev2", Forwarded),
    sc(329, "pkey_mprotect", Forwarded),
    sc(330, "pkey_alloc", Forwarded),
    sc(331, "pkey_free", Forwarded),
    sc(332, "statx", Forwarded),
    sc(333, "io_pgetevents", Forwarded),
    sc(334, "rseq", Local),
    sc(424, "pidfd_send_signal", Forwarded),
    sc(425, "io_uring_setup", Forwarded),
    sc(426, "io_uring_enter", Forwarded),
    sc(427, "io_uring_register", Forwarded),
    sc(428, "open_tree", Forwarded),
    sc(429, "move_mount", Forwarded),
    sc(430, "fsopen", Forwarded),
    sc(431, "fsconfig", Forwarded),
    sc(432, "fsmount", Forwarded),
    sc(433, "fspick", Forwarded),
    sc(434, "pidfd_open", Forwarded),
    sc(435, "clone3", Forwarded),
    sc(436, "close_range", Forwarded),
    sc(437, "openat2", Forwarded),
    sc(438, "pidfd_getfd", Forwarded),
    sc(439, "faccessat2", Forwarded),
    sc(440, "process_madvise", Forwarded),
    sc(441, "epoll_pwait2", Forwarded),
    sc(442, "mount_setattr", Forwarded),
    sc(443, "quotactl_fd", Forwarded),
    sc(444, "landlock_create_ruleset", Forwarded),
    sc(445, "landlock_add_rule", Forwarded),
    sc(446, "landlock_restrict_self", Forwarded),
    sc(447, "memfd_secret", Forwarded),
    sc(448, "process_mrelease", Forwarded),
    sc(449, "futex_waitv", Forwarded),
    sc(450, "set_mempolicy_home_node", Forwarded),
    sc(451, "cachestat", Forwarded),
    sc(452, "fchmodat2", Forwarded),
    sc(453, "map_shadow_stack", Forwarded),
    sc(454, "futex_wake", Forwarded),
    sc(455, "futex_wait", Forwarded),
    sc(456, "futex_requeue", Forwarded),
    sc(457, "statmount", Forwarded),
    sc(458, "listmount", Forwarded),
    sc(459, "lsm_get_self_attr", Forwarded),
    sc(460, "lsm_set_self_attr", Forwarded),
    sc(461, "lsm_list_modules", Forwarded),
    sc(462, "mseal", Forwarded),
    sc(463, "setxattrat", Forwarded),
    sc(464, "getxattrat", Forwarded),
    sc(465, "listxattrat", Forwarded),
    sc(466, "removexattrat", Forwarded),
    sc(467, "open_tree_attr", Forwarded),
];

/// Numbers below this have a slot in per-number tables ([`serve`],
/// [`CallSet`], the policy's decision table, the boot page's counters).
pub const SLOTS: usize = 512;

/// Highest number in [`TABLE`].
pub const MAX_KNOWN: u64 = TABLE[TABLE.len() - 1].nr as u64;

static SERVE_BY_NR: [Serve; SLOTS] = {
    let mut a = [Forwarded; SLOTS];
    let mut i = 0;
    while i < TABLE.len() {
        a[TABLE[i].nr as usize] = TABLE[i].serve;
        i += 1;
    }
    a
};

/// How call `nr` is served; numbers the table does not hold (including
/// x32 numbers and anything at or above [`SLOTS`]) are forwarded, and the
/// monitor answers them.
#[inline]
pub fn serve(nr: u64) -> Serve {
    if nr < SLOTS as u64 {
        SERVE_BY_NR[nr as usize]
    } else {
        Forwarded
    }
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
        assert_eq!(served_locally().count(), 38);
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
