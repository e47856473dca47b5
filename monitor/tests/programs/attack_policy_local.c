/* Makes one system call that the libos serves inside the domain, named by
 * argv[1], and prints "NAME RESULT" (the raw return value: -errno on
 * failure). monitor/tests/attacks/policy_local.rs runs it under a policy
 * that refuses that call and checks that the refusal holds.
 *
 * Freestanding (-nostdlib): no C library start-up calls (brk, arch_prctl,
 * set_tid_address, ...) that a refusing policy would break before main.
 * Every call goes through the one `syscall` instruction in sys6, which the
 * rewriter turns into a call into the libos (or a trap site). */

typedef unsigned long u64;

static long __attribute__((noinline)) sys6(long nr, u64 a, u64 b, u64 c, u64 d, u64 e, u64 f)
{
    long ret;
    register u64 r10 __asm__("r10") = d;
    register u64 r8 __asm__("r8") = e;
    register u64 r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static int eq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static u64 len(const char *s)
{
    u64 n = 0;
    while (s[n])
        n++;
    return n;
}

static void say(const char *name, long v)
{
    char buf[96];
    u64 n = 0, l = len(name);
    for (u64 i = 0; i < l && n < 60; i++)
        buf[n++] = name[i];
    buf[n++] = ' ';
    if (v < 0) {
        buf[n++] = '-';
        v = -v;
    }
    char digits[24];
    int d = 0;
    do {
        digits[d++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (d)
        buf[n++] = digits[--d];
    buf[n++] = '\n';
    sys6(1, 1, (u64)buf, n, 0, 0, 0);
}

static u64 scratch[64];

/* The call named `c`, made with harmless arguments; -9999 when unknown. */
static long call(const char *c)
{
    u64 p = (u64)scratch;
    /* Only the signal calls need the pid (a refused getpid must be the
     * only getpid). */
    int signal_call = eq(c, "kill") || eq(c, "tkill") || eq(c, "tgkill") || eq(c, "rt_sigqueueinfo") ||
                      eq(c, "rt_tgsigqueueinfo");
    long pid = signal_call ? sys6(39, 0, 0, 0, 0, 0, 0) : 0;
    if (eq(c, "brk")) return sys6(12, 0, 0, 0, 0, 0, 0);
    if (eq(c, "mmap")) return sys6(9, 0, 4096, 3, 0x22, (u64)-1, 0);
    if (eq(c, "munmap")) return sys6(11, 0x10000000, 4096, 0, 0, 0, 0);
    if (eq(c, "mremap")) return sys6(25, 0, 0, 0, 0, 0, 0);
    if (eq(c, "mprotect")) return sys6(10, 0, 0, 0, 0, 0, 0);
    if (eq(c, "madvise")) return sys6(28, 0, 0, 0, 0, 0, 0);
    if (eq(c, "msync")) return sys6(26, 0, 0, 0, 0, 0, 0);
    if (eq(c, "arch_prctl")) return sys6(158, 0x1003, p, 0, 0, 0, 0);
    if (eq(c, "set_tid_address")) return sys6(218, p, 0, 0, 0, 0, 0);
    if (eq(c, "getpid")) return sys6(39, 0, 0, 0, 0, 0, 0);
    if (eq(c, "gettid")) return sys6(186, 0, 0, 0, 0, 0, 0);
    if (eq(c, "getppid")) return sys6(110, 0, 0, 0, 0, 0, 0);
    if (eq(c, "getpgrp")) return sys6(111, 0, 0, 0, 0, 0, 0);
    if (eq(c, "getsid")) return sys6(124, 0, 0, 0, 0, 0, 0);
    if (eq(c, "getpgid")) return sys6(121, 0, 0, 0, 0, 0, 0);
    if (eq(c, "setpgid")) return sys6(109, 0, 0, 0, 0, 0, 0);
    if (eq(c, "getuid")) return sys6(102, 0, 0, 0, 0, 0, 0);
    if (eq(c, "geteuid")) return sys6(107, 0, 0, 0, 0, 0, 0);
    if (eq(c, "getgid")) return sys6(104, 0, 0, 0, 0, 0, 0);
    if (eq(c, "getegid")) return sys6(108, 0, 0, 0, 0, 0, 0);
    if (eq(c, "getresuid")) return sys6(118, p, p + 8, p + 16, 0, 0, 0);
    if (eq(c, "getresgid")) return sys6(120, p, p + 8, p + 16, 0, 0, 0);
    if (eq(c, "rt_sigaction")) return sys6(13, 10, 0, p, 8, 0, 0);
    if (eq(c, "rt_sigprocmask")) return sys6(14, 0, 0, p, 8, 0, 0);
    if (eq(c, "sigaltstack")) return sys6(131, 0, p, 0, 0, 0, 0);
    if (eq(c, "rt_sigpending")) return sys6(127, p, 8, 0, 0, 0, 0);
    /* scratch is zero: an empty set and a zero timeout (EAGAIN at once). */
    if (eq(c, "rt_sigtimedwait")) return sys6(128, p, 0, p + 8, 8, 0, 0);
    if (eq(c, "rt_sigsuspend")) return sys6(130, p, 8, 0, 0, 0, 0);
    if (eq(c, "kill")) return sys6(62, (u64)pid, 0, 0, 0, 0, 0);
    if (eq(c, "tkill")) return sys6(200, (u64)pid, 0, 0, 0, 0, 0);
    if (eq(c, "tgkill")) return sys6(234, (u64)pid, (u64)pid, 0, 0, 0, 0);
    /* Signal 0: only the checks (scratch is a zero siginfo). */
    if (eq(c, "rt_sigqueueinfo")) return sys6(129, (u64)pid, 0, p, 0, 0, 0);
    if (eq(c, "rt_tgsigqueueinfo")) return sys6(297, (u64)pid, (u64)pid, 0, p, 0, 0);
    if (eq(c, "set_robust_list")) return sys6(273, p, 24, 0, 0, 0, 0);
    if (eq(c, "get_robust_list")) return sys6(274, 0, p, p + 8, 0, 0, 0);
    if (eq(c, "rseq")) return sys6(334, 0, 0, 0, 0, 0, 0);
    if (eq(c, "sched_yield")) return sys6(24, 0, 0, 0, 0, 0, 0);
    if (eq(c, "futex")) return sys6(202, p, 1, 1, 0, 0, 0);
    if (eq(c, "clock_gettime")) return sys6(228, 0, p, 0, 0, 0, 0);
    if (eq(c, "clock_getres")) return sys6(229, 0, p, 0, 0, 0, 0);
    if (eq(c, "gettimeofday")) return sys6(96, p, 0, 0, 0, 0, 0);
    if (eq(c, "time")) return sys6(201, 0, 0, 0, 0, 0, 0);
    return -9999;
}

void __attribute__((used)) start_c(u64 *sp)
{
    long argc = (long)sp[0];
    char **argv = (char **)(sp + 1);
    if (argc < 2) {
        say("usage", -1);
        sys6(231, 2, 0, 0, 0, 0, 0);
    }
    long r = call(argv[1]);
    if (r == -9999) {
        say("unknown", -1);
        sys6(231, 3, 0, 0, 0, 0, 0);
    }
    say(argv[1], r);
    sys6(231, 0, 0, 0, 0, 0, 0);
}

__asm__(".globl _start\n"
        "_start:\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call start_c\n"
        "  hlt\n");
