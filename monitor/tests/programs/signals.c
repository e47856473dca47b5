/* Signal delivery, one case per argument (run natively and confined; the
 * output and exit status must be the same). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <sys/types.h>
#include <ucontext.h>
#include <unistd.h>

static sigjmp_buf jump;
static volatile sig_atomic_t hits;
static volatile int last_code;
static volatile void *last_addr;
static volatile pid_t last_pid;
static volatile int onstack;

static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    hits++;
    last_code = si->si_code;
    last_addr = si->si_addr;
    siglongjmp(jump, sig);
}

static int segv(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    for (int i = 0; i < 3; i++) {
        int s = sigsetjmp(jump, 1);
        if (s == 0) {
            volatile int *p = (int *)(uintptr_t)(0x1000 + 8 * i);
            *p = 1;
            printf("no fault\n");
            return 1;
        }
        printf("recovered from signal %d, code %d, addr %p\n", s, last_code, (void *)last_addr);
    }
    /* The mask was restored by siglongjmp: SIGSEGV is not blocked. */
    sigset_t now;
    sigprocmask(SIG_SETMASK, 0, &now);
    printf("segv blocked after siglongjmp: %d, handler ran %d times\n", sigismember(&now, SIGSEGV), (int)hits);
    return 0;
}

static void on_skip(int sig, siginfo_t *si, void *ucv) {
    ucontext_t *uc = ucv;
    hits++;
    last_code = si->si_code;
    /* Skip the faulting instruction: both are 8 bytes (see below). */
    uc->uc_mcontext.gregs[REG_RIP] += 8;
    uc->uc_mcontext.gregs[REG_RAX] = 1000 + sig;
}

static int skip(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_skip;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    sigaction(SIGILL, &sa, 0);
    long rax;
    /* movabs 0x10, %rax would be 10 bytes; a load from an absolute 32-bit
     * address is 8 bytes: 48 8b 04 25 10 00 00 00. */
    __asm__ volatile(".byte 0x48, 0x8b, 0x04, 0x25, 0x10, 0x00, 0x00, 0x00" : "=a"(rax) : : "memory");
    printf("after the load: rax %ld, code %d\n", rax, last_code);
    /* ud2 and six bytes of nops: 8 bytes. */
    __asm__ volatile("ud2; .byte 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00" : "=a"(rax) : : "memory");
    printf("after ud2: rax %ld, code %d, handler ran %d times\n", rax, last_code, (int)hits);
    return 0;
}

static void on_usr(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    hits++;
    last_code = si->si_code;
    last_pid = si->si_pid;
    char msg[64];
    int n = snprintf(msg, sizeof msg, "handler: signal %d\n", sig);
    write(1, msg, n);
}

static int self(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, 0);
    kill(getpid(), SIGUSR1);
    printf("after kill: hits %d, code %d, pid is mine %d\n", (int)hits, last_code, last_pid == getpid());
    raise(SIGUSR1);
    printf("after raise: hits %d, code %d\n", (int)hits, last_code);
    syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1);
    printf("after tgkill: hits %d, code %d\n", (int)hits, last_code);
    /* Ignored: nothing happens. */
    signal(SIGUSR2, SIG_IGN);
    raise(SIGUSR2);
    printf("ignored: hits %d\n", (int)hits);
    /* SIGCHLD's default is to ignore. */
    raise(SIGCHLD);
    printf("default-ignored: hits %d\n", (int)hits);
    return 0;
}

static int mask(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, 0);
    sigaction(SIGUSR2, &sa, 0);
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, 0);
    raise(SIGUSR2);
    raise(SIGUSR1);
    raise(SIGUSR1);
    sigpending(&pend);
    printf("blocked: hits %d, pending usr1 %d usr2 %d\n", (int)hits, sigismember(&pend, SIGUSR1),
           sigismember(&pend, SIGUSR2));
    printf("unblocking\n");
    fflush(stdout);
    sigprocmask(SIG_UNBLOCK, &set, 0);
    printf("unblocked: hits %d\n", (int)hits);
    sigpending(&pend);
    printf("pending now usr1 %d\n", sigismember(&pend, SIGUSR1));
    return 0;
}

static char alt[65536];

static void on_alt(int sig) {
    stack_t now;
    int local;
    sigaltstack(0, &now);
    onstack = (now.ss_flags & SS_ONSTACK) != 0;
    hits += ((char *)&local >= alt && (char *)&local < alt + sizeof alt);
    (void)sig;
}

static int altstack(void) {
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
    if (sigaltstack(&ss, 0) != 0) {
        perror("sigaltstack");
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_alt;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, 0);
    raise(SIGUSR1);
    stack_t after;
    sigaltstack(0, &after);
    printf("in the handler: SS_ONSTACK %d, on the alternate stack %d; after: flags %d\n", onstack, (int)hits,
           after.ss_flags);
    /* Without SA_ONSTACK the handler runs on the ordinary stack. */
    sa.sa_flags = 0;
    hits = 0;
    sigaction(SIGUSR1, &sa, 0);
    raise(SIGUSR1);
    printf("without SA_ONSTACK: SS_ONSTACK %d, on the alternate stack %d\n", onstack, (int)hits);
    /* Too small. */
    ss.ss_size = 100;
    int r = sigaltstack(&ss, 0);
    int e = errno;
    printf("tiny stack: %d errno %d\n", r, e);
    return 0;
}

static void on_nested(int sig) {
    hits++;
    if (hits < 3)
        raise(sig);
}

static int flags(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_nested;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGUSR1, &sa, 0);
    raise(SIGUSR1);
    printf("SA_NODEFER: nested %d\n", (int)hits);
    hits = 0;
    sa.sa_flags = 0;
    sigaction(SIGUSR1, &sa, 0);
    raise(SIGUSR1);
    printf("deferred: ran %d\n", (int)hits);
    hits = 0;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGUSR2, &sa, 0);
    raise(SIGUSR2);
    struct sigaction now;
    sigaction(SIGUSR2, 0, &now);
    printf("SA_RESETHAND: ran %d, now default %d\n", (int)hits, now.sa_handler == SIG_DFL);
    fflush(stdout);
    raise(SIGUSR2);
    printf("not reached\n");
    return 0;
}

static void on_fp(int sig) {
    (void)sig;
    __asm__ volatile("pxor %%xmm0, %%xmm0; pxor %%xmm1, %%xmm1" ::: "xmm0", "xmm1");
    hits++;
}

static int fpu(void) {
    signal(SIGUSR1, on_fp);
    uint64_t in[2] = {0x0123456789abcdefULL, 0xfedcba9876543210ULL}, out[2];
    long pid = getpid();
    long r;
    __asm__ volatile("movdqu (%[in]), %%xmm0\n"
                     "movl $62, %%eax\n" /* kill(pid, SIGUSR1) */
                     "movq %[pid], %%rdi\n"
                     "movl $10, %%esi\n"
                     "syscall\n"
                     "movdqu %%xmm0, (%[out])\n"
                     : "=&a"(r)
                     : [in] "r"(in), [out] "r"(out), [pid] "r"(pid)
                     : "rdi", "rsi", "rcx", "r11", "xmm0", "memory");
    printf("kill %ld, handler ran %d, xmm0 kept %d\n", r, (int)hits, out[0] == in[0] && out[1] == in[1]);
    return 0;
}

static void on_pipe(int sig) {
    hits += sig;
}

static int sigpipe(int handled) {
    int p[2];
    pipe(p);
    close(p[0]);
    if (handled)
        signal(SIGPIPE, on_pipe);
    fflush(stdout);
    long n = write(p[1], "x", 1);
    printf("write %ld errno %d, handler got %d\n", n, errno, (int)hits);
    return 0;
}

static int suspend(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_usr;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, 0);
    sigset_t set, empty, now;
    sigemptyset(&set);
    sigemptyset(&empty);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, 0);
    raise(SIGUSR1);
    int r = sigsuspend(&empty);
    int e = errno;
    sigprocmask(SIG_SETMASK, 0, &now);
    printf("sigsuspend %d errno %d, hits %d, usr1 blocked again %d\n", r, e, (int)hits, sigismember(&now, SIGUSR1));
    raise(SIGUSR1);
    struct timespec zero = {0, 0};
    siginfo_t si;
    int s = sigtimedwait(&set, &si, &zero);
    printf("sigtimedwait %d code %d, hits %d\n", s, si.si_code, (int)hits);
    s = sigtimedwait(&set, &si, &zero);
    printf("sigtimedwait again %d errno %d\n", s, errno);
    return 0;
}

static int timedwait(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, 0);
    struct timespec short_wait = {0, 50000000};
    siginfo_t si;
    errno = 0;
    int s = sigtimedwait(&set, &si, &short_wait);
    printf("nothing came: %d errno %d\n", s, errno);
    timer_t t;
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    sev.sigev_value.sival_int = 9;
    timer_create(CLOCK_MONOTONIC, &sev, &t);
    struct itimerspec ts = {{0, 0}, {0, 30000000}};
    timer_settime(t, 0, &ts, 0);
    struct timespec long_wait = {5, 0};
    s = sigtimedwait(&set, &si, &long_wait);
    printf("the timer's signal came: %d code %d value %d\n", s, si.si_code, si.si_value.sival_int);
    return 0;
}

static int refused(void) {
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN;
    printf("SIGKILL %d errno %d\n", sigaction(SIGKILL, &sa, 0), errno);
    errno = 0;
    printf("SIGSTOP %d errno %d\n", sigaction(SIGSTOP, &sa, 0), errno);
    return 0;
}

static volatile int last_value, last_timerid;

static void on_timer(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    (void)sig;
    hits++;
    last_code = si->si_code;
    if (si->si_code == SI_TIMER) {
        last_value = si->si_value.sival_int;
        last_timerid = si->si_timerid;
    }
}

static int timers(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_timer;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGALRM, &sa, 0);
    sigaction(SIGUSR1, &sa, 0);
    sigaction(SIGUSR2, &sa, 0);
    struct itimerval it = {{0, 20000}, {0, 20000}}, cur;
    setitimer(ITIMER_REAL, &it, 0);
    while (hits < 3)
        pause();
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, &cur);
    /* A fourth tick can come before the disarm when the machine is busy
       (natively too: 20 ms between ticks), so the count is "at least 3". */
    printf("setitimer: %s ticks, code %d, interval was %ld us\n", hits >= 3 ? "at least 3" : "fewer than 3", last_code,
           (long)cur.it_interval.tv_usec);
    getitimer(ITIMER_REAL, &cur);
    printf("getitimer after disarming: %ld %ld\n", (long)cur.it_value.tv_sec, (long)cur.it_value.tv_usec);
    alarm(5);
    printf("alarm(0) after alarm(5): %u\n", alarm(0));
    hits = 0;
    alarm(1);
    pause();
    printf("alarm: %d, code %d\n", (int)hits, last_code);

    timer_t t;
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    sev.sigev_value.sival_int = 42;
    if (timer_create(CLOCK_MONOTONIC, &sev, &t) != 0) {
        perror("timer_create");
        return 1;
    }
    struct itimerspec ts = {{0, 0}, {0, 30000000}}, now;
    hits = 0;
    timer_settime(t, 0, &ts, 0);
    pause();
    timer_gettime(t, &now);
    printf("POSIX timer: %d, code %d, value %d, id matches %d, disarmed %d\n", (int)hits, last_code, last_value,
           last_timerid == (int)(long)t, now.it_value.tv_sec == 0 && now.it_value.tv_nsec == 0);
    timer_delete(t);

    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGUSR2;
    sev.sigev_value.sival_int = 7;
    sev._sigev_un._tid = gettid();
    if (timer_create(CLOCK_REALTIME, &sev, &t) != 0) {
        perror("timer_create thread id");
        return 1;
    }
    hits = 0;
    timer_settime(t, 0, &ts, 0);
    pause();
    printf("SIGEV_THREAD_ID: %d, code %d, value %d\n", (int)hits, last_code, last_value);
    int d1 = timer_delete(t);
    int d2 = timer_delete(t);
    int e = errno;
    printf("delete %d, delete again %d errno %d\n", d1, d2, e);
    return 0;
}

static int pipefd[2];

static void on_alarm_write(int sig) {
    (void)sig;
    hits++;
    write(pipefd[1], "x", 1);
}

/* A read of an empty pipe, blocked when SIGALRM comes; its handler writes
 * a byte into the pipe. */
static int blocked_read(int restart) {
    pipe(pipefd);
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm_write;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, 0);
    struct itimerval it = {{0, 0}, {0, 50000}};
    setitimer(ITIMER_REAL, &it, 0);
    char buf[8];
    errno = 0;
    long n = read(pipefd[0], buf, sizeof buf);
    printf("read %ld errno %d, handler ran %d\n", n, errno, (int)hits);
    return 0;
}

static int sfd_case(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, 0);
    int fd = signalfd(-1, &set, SFD_CLOEXEC);
    int nb = signalfd(-1, &set, SFD_NONBLOCK);
    if (fd < 0 || nb < 0) {
        perror("signalfd");
        return 1;
    }
    struct signalfd_siginfo si;
    errno = 0;
    long n = read(nb, &si, sizeof si);
    printf("empty non-blocking read %ld errno %d\n", n, errno);
    raise(SIGUSR1);
    n = read(fd, &si, sizeof si);
    printf("read %ld: signo %u code %d pid is mine %d\n", n, si.ssi_signo, si.ssi_code, si.ssi_pid == (unsigned)getpid());
    /* A timer brings the next one while the read waits. */
    timer_t t;
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR2;
    sev.sigev_value.sival_int = 5;
    timer_create(CLOCK_MONOTONIC, &sev, &t);
    struct itimerspec ts = {{0, 0}, {0, 30000000}};
    timer_settime(t, 0, &ts, 0);
    n = read(fd, &si, sizeof si);
    printf("read %ld: signo %u code %d int %d\n", n, si.ssi_signo, si.ssi_code, si.ssi_int);
    /* Only the mask's signals: SIGUSR1 is no longer in it. */
    sigset_t only2;
    sigemptyset(&only2);
    sigaddset(&only2, SIGUSR2);
    printf("new mask %d\n", signalfd(nb, &only2, 0) == nb);
    raise(SIGUSR1);
    errno = 0;
    n = read(nb, &si, sizeof si);
    printf("usr1 not read: %ld errno %d\n", n, errno);
    sigpending(&set);
    printf("usr1 still pending %d\n", sigismember(&set, SIGUSR1));
    printf("close %d %d\n", close(fd), close(nb));
    return 0;
}

static __thread sigjmp_buf thread_jump;

static void on_thread_segv(int sig) {
    siglongjmp(thread_jump, sig);
}

static void *faulting_thread(void *arg) {
    (void)arg;
    int s = sigsetjmp(thread_jump, 1);
    if (s == 0) {
        *(volatile int *)16 = 1;
        return (void *)1;
    }
    return (void *)(long)s;
}

/* A fault in a second thread reaches the handler on that thread's stack. */
static int thread_segv(void) {
    signal(SIGSEGV, on_thread_segv);
    pthread_t t;
    if (pthread_create(&t, 0, faulting_thread, 0) != 0) {
        printf("no threads\n");
        return 0;
    }
    void *r;
    pthread_join(t, &r);
    printf("thread recovered from signal %ld\n", (long)r);
    /* And the main thread still takes its own. */
    printf("main: %ld\n", (long)faulting_thread(0));
    return 0;
}

/* Several threads fault at once, each at its own address, many times:
 * each handler must see its own thread's fault (KVM: one boot-page
 * mailbox for every vCPU, taken by one redirect at a time). */
static __thread uintptr_t seen_addr;

static void on_many_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    seen_addr = (uintptr_t)si->si_addr;
    siglongjmp(thread_jump, sig);
}

#define FAULTERS 4
#define FAULTS 300

static void *many_faults(void *arg) {
    uintptr_t mine = 0x100 + 0x40 * (uintptr_t)arg;
    long wrong = 0;
    for (int i = 0; i < FAULTS; i++) {
        if (sigsetjmp(thread_jump, 1) == 0)
            *(volatile int *)mine = 1;
        if (seen_addr != mine)
            wrong++;
    }
    return (void *)wrong;
}

static int threads_segv_many(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_many_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    pthread_t t[FAULTERS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10); /* the test's 64 MiB arena */
    for (long i = 0; i < FAULTERS; i++)
        if (pthread_create(&t[i], &attr, many_faults, (void *)i) != 0) {
            printf("no threads\n");
            return 0;
        }
    long wrong = 0;
    for (int i = 0; i < FAULTERS; i++) {
        void *r;
        pthread_join(t[i], &r);
        wrong += (long)r;
    }
    printf("%d threads took %d faults each, %ld at another thread's address\n", FAULTERS, FAULTS, wrong);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IOLBF, 0);
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "segv"))
        return segv();
    if (!strcmp(c, "skip"))
        return skip();
    if (!strcmp(c, "self"))
        return self();
    if (!strcmp(c, "mask"))
        return mask();
    if (!strcmp(c, "altstack"))
        return altstack();
    if (!strcmp(c, "flags"))
        return flags();
    if (!strcmp(c, "fpu"))
        return fpu();
    if (!strcmp(c, "sigpipe"))
        return sigpipe(1);
    if (!strcmp(c, "sigpipe-default"))
        return sigpipe(0);
    if (!strcmp(c, "suspend"))
        return suspend();
    if (!strcmp(c, "thread-segv"))
        return thread_segv();
    if (!strcmp(c, "threads-segv"))
        return threads_segv_many();
    if (!strcmp(c, "signalfd"))
        return sfd_case();
    if (!strcmp(c, "timers"))
        return timers();
    if (!strcmp(c, "read-restart"))
        return blocked_read(1);
    if (!strcmp(c, "read-eintr"))
        return blocked_read(0);
    if (!strcmp(c, "timedwait"))
        return timedwait();
    if (!strcmp(c, "refused"))
        return refused();
    fprintf(stderr, "usage: signals CASE\n");
    return 2;
}
