/* sigthreads: signals aimed at one thread, the process-wide pending set,
 * and queued real-time signals (issue 13). Every line is a fact Linux
 * decides, printed so a confined run can be compared with a native one
 * (monitor/tests/sigthreads.rs):
 *  - sigqueue of several SIGRTMIN instances with values while blocked: each
 *    is delivered, in order, with its value; a standard signal sent three
 *    times while blocked is delivered once; sigwaitinfo takes queued
 *    instances in order;
 *  - pthread_kill to a thread blocked in a pipe read (EINTR, the handler
 *    ran on that thread), to a thread spinning in program code, to a thread
 *    in sigsuspend, and to a thread that blocks the signal (it stays
 *    pending for that thread only, never the sender's; taken when the
 *    target unblocks it);
 *  - pthread_kill to a thread blocked in FUTEX_WAIT (EINTR, the handler ran
 *    on that thread; on KVM that thread's vCPU sleeps in the host futex
 *    itself), which then waits again and is woken by FUTEX_WAKE;
 *  - kill to the process while the sender blocks the signal: a thread
 *    that does not block it runs the handler;
 *  - sigqueue to a thread (pthread_sigqueue) carries its value;
 *  - alternate stacks are per thread: a new thread starts without one,
 *    each thread's SA_ONSTACK handler runs on its own (not on the one the
 *    last sigaltstack call of any thread set), also when that stack lies
 *    just above the thread's own stack (Go allocates both from its heap;
 *    a Go program hung when its runtime found a handler on neither);
 *  - rt_sigsuspend's saved mask is per thread: a signal another thread
 *    takes while one thread is suspended leaves that thread's mask alone,
 *    and the suspended thread gets its own mask back. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static pid_t tid(void) { return (pid_t)syscall(SYS_gettid); }

static volatile sig_atomic_t rt_count, usr_count;
static int rt_values[16];
static int rt_sigs[16];
static volatile pid_t handled_on;
static volatile int handled_value;

static void on_rt(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (rt_count < 16) {
        rt_sigs[rt_count] = sig - SIGRTMIN;
        rt_values[rt_count] = si->si_value.sival_int;
    }
    rt_count++;
}

static void on_usr(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    usr_count++;
    handled_on = tid();
    handled_value = si->si_code == SI_QUEUE ? si->si_value.sival_int : -1;
}

static void handle(int sig, void (*f)(int, siginfo_t *, void *))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = f;
    sa.sa_flags = SA_SIGINFO; /* no SA_RESTART: a blocked read gets EINTR */
    sigaction(sig, &sa, NULL);
}

static void block(int sig, int how)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    pthread_sigmask(how, &s, NULL);
}

static void queued(void)
{
    handle(SIGRTMIN, on_rt);
    handle(SIGRTMIN + 1, on_rt);
    handle(SIGUSR1, on_usr);
    block(SIGRTMIN, SIG_BLOCK);
    block(SIGRTMIN + 1, SIG_BLOCK);
    block(SIGUSR1, SIG_BLOCK);
    for (int i = 0; i < 5; i++) {
        union sigval v = {.sival_int = 100 + i};
        if (sigqueue(getpid(), SIGRTMIN + (i == 2), v))
            printf("sigqueue %d failed: %s\n", i, strerrorname_np(errno));
    }
    for (int i = 0; i < 3; i++)
        kill(getpid(), SIGUSR1);
    sigset_t p;
    sigpending(&p);
    printf("pending RTMIN %d RTMIN+1 %d USR1 %d\n", sigismember(&p, SIGRTMIN), sigismember(&p, SIGRTMIN + 1),
           sigismember(&p, SIGUSR1));
    printf("before unblocking: rt %d usr %d\n", (int)rt_count, (int)usr_count);
    block(SIGRTMIN + 1, SIG_UNBLOCK);
    block(SIGRTMIN, SIG_UNBLOCK);
    block(SIGUSR1, SIG_UNBLOCK);
    printf("after unblocking: rt %d usr %d\n", (int)rt_count, (int)usr_count);
    for (int i = 0; i < rt_count && i < 16; i++)
        printf("  rt %d: SIGRTMIN+%d value %d\n", i, rt_sigs[i], rt_values[i]);
    /* sigwaitinfo takes queued instances one by one, in order. */
    block(SIGRTMIN, SIG_BLOCK);
    for (int i = 0; i < 3; i++) {
        union sigval v = {.sival_int = 7 * i};
        sigqueue(getpid(), SIGRTMIN, v);
    }
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGRTMIN);
    for (int i = 0; i < 3; i++) {
        siginfo_t si;
        int s = sigwaitinfo(&w, &si);
        printf("sigwaitinfo %d: SIGRTMIN+%d code %d value %d\n", i, s - SIGRTMIN, si.si_code == SI_QUEUE,
               si.si_value.sival_int);
    }
    struct timespec zero = {0, 0};
    int left = sigtimedwait(&w, NULL, &zero);
    printf("nothing left: %d %s\n", left, strerrorname_np(errno));
    block(SIGRTMIN, SIG_UNBLOCK);
}

static int pipefd[2];
static volatile pid_t worker_tid;
static volatile int spin_flag;
static volatile int phase;

static void *reader(void *arg)
{
    (void)arg;
    worker_tid = tid();
    char c;
    long r = read(pipefd[0], &c, 1);
    int e = errno;
    printf("reader: read %ld %s, handler on this thread %d\n", r, r < 0 ? strerrorname_np(e) : "",
           handled_on == worker_tid);
    return NULL;
}

static void on_spin(int sig)
{
    (void)sig;
    handled_on = tid();
    spin_flag = 1;
}

static void *spinner(void *arg)
{
    (void)arg;
    worker_tid = tid();
    phase = 1;
    while (!spin_flag) {
    }
    return NULL;
}

static void *suspender(void *arg)
{
    (void)arg;
    worker_tid = tid();
    sigset_t none;
    sigemptyset(&none);
    phase = 1;
    int r = sigsuspend(&none);
    printf("suspender: sigsuspend %d %s, handler on this thread %d\n", r, strerrorname_np(errno),
           handled_on == worker_tid);
    return NULL;
}

static void *blocker(void *arg)
{
    (void)arg;
    worker_tid = tid();
    block(SIGUSR2, SIG_BLOCK);
    phase = 1;
    while (phase != 2)
        usleep(1000);
    sigset_t p;
    sigpending(&p);
    printf("blocker: pending USR2 %d, handled before unblocking %d\n", sigismember(&p, SIGUSR2),
           (int)usr_count);
    block(SIGUSR2, SIG_UNBLOCK);
    printf("blocker: after unblocking handled %d on this thread %d\n", (int)usr_count, handled_on == worker_tid);
    return NULL;
}

static void *waiter(void *arg)
{
    (void)arg;
    worker_tid = tid();
    phase = 1;
    char c;
    long r = read(pipefd[0], &c, 1);
    printf("waiter: read %ld %s, handler on this thread %d value %d\n", r, r < 0 ? strerrorname_np(errno) : "",
           handled_on == worker_tid, handled_value);
    return NULL;
}

static unsigned futex_word;

static void *futexer(void *arg)
{
    (void)arg;
    worker_tid = tid();
    phase = 1;
    long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    printf("futexer: wait %ld %s, handler on this thread %d\n", r, r < 0 ? strerrorname_np(errno) : "",
           handled_on == worker_tid);
    phase = 2;
    while (__atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0)
        syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    printf("futexer: woken, word %u\n", futex_word);
    return NULL;
}

static void wait_phase(void)
{
    while (phase == 0)
        usleep(1000);
    usleep(20000);
}

static void directed(void)
{
    pthread_t t;
    if (pipe(pipefd))
        return;
    handle(SIGUSR1, on_usr);

    /* A thread blocked in a pipe read. */
    handled_on = 0;
    worker_tid = 0;
    pthread_create(&t, NULL, reader, NULL);
    while (!worker_tid)
        usleep(1000);
    usleep(50000);
    int r = pthread_kill(t, SIGUSR1);
    pthread_join(t, NULL);
    printf("pthread_kill reader: %d\n", r);

    /* A thread blocked in FUTEX_WAIT, then woken by FUTEX_WAKE. */
    handled_on = 0;
    phase = 0;
    pthread_create(&t, NULL, futexer, NULL);
    wait_phase();
    r = pthread_kill(t, SIGUSR1);
    while (phase != 2)
        usleep(1000);
    usleep(20000);
    __atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    pthread_join(t, NULL);
    printf("pthread_kill futexer: %d\n", r);

    /* A thread spinning in program code. */
    signal(SIGUSR2, on_spin);
    handled_on = 0;
    phase = 0;
    pthread_create(&t, NULL, spinner, NULL);
    wait_phase();
    r = pthread_kill(t, SIGUSR2);
    pthread_join(t, NULL);
    printf("pthread_kill spinner: %d\n", r);
    printf("spinner stopped by its handler on itself %d\n", handled_on == worker_tid);

    /* A thread in sigsuspend. */
    handled_on = 0;
    phase = 0;
    block(SIGUSR2, SIG_BLOCK);
    pthread_create(&t, NULL, suspender, NULL);
    block(SIGUSR2, SIG_UNBLOCK);
    wait_phase();
    r = pthread_kill(t, SIGUSR2);
    pthread_join(t, NULL);
    printf("pthread_kill suspender: %d\n", r);

    /* A thread that blocks the signal: pending for it alone. */
    handle(SIGUSR2, on_usr);
    usr_count = 0;
    handled_on = 0;
    phase = 0;
    pthread_create(&t, NULL, blocker, NULL);
    wait_phase();
    r = pthread_kill(t, SIGUSR2);
    usleep(20000);
    sigset_t p;
    sigpending(&p);
    printf("pthread_kill blocker: %d; main: pending USR2 %d, handled %d\n", r, sigismember(&p, SIGUSR2),
           (int)usr_count);
    phase = 2;
    pthread_join(t, NULL);

    /* kill to the process while this thread blocks the signal. */
    usr_count = 0;
    handled_on = 0;
    phase = 0;
    pthread_create(&t, NULL, waiter, NULL);
    block(SIGUSR1, SIG_BLOCK);
    wait_phase();
    r = kill(getpid(), SIGUSR1);
    pthread_join(t, NULL);
    printf("kill process: %d\n", r);
    block(SIGUSR1, SIG_UNBLOCK);

    /* pthread_sigqueue to a thread carries its value. */
    handled_on = 0;
    handled_value = 0;
    phase = 0;
    pthread_create(&t, NULL, waiter, NULL);
    wait_phase();
    union sigval v = {.sival_int = 4242};
    r = pthread_sigqueue(t, SIGUSR1, v);
    pthread_join(t, NULL);
    printf("pthread_sigqueue waiter: %d\n", r);
    printf("main handled none of them: %d\n", handled_on != tid());
}

#define ALT_SIZE (64 * 1024)
#define THREAD_STACK (256 * 1024)
static volatile uintptr_t seen_sp;
static char *thread_alt;
static volatile int alt_phase;

static void on_alt(int sig)
{
    char here;
    (void)sig;
    seen_sp = (uintptr_t)&here;
}

static int within(uintptr_t sp, const char *lo)
{
    return sp > (uintptr_t)lo && sp <= (uintptr_t)lo + ALT_SIZE;
}

static void *alt_thread(void *arg)
{
    (void)arg;
    stack_t old;
    sigaltstack(NULL, &old);
    printf("altstack: a new thread starts without one: %d\n", (old.ss_flags & SS_DISABLE) != 0);
    stack_t ss = {.ss_sp = thread_alt, .ss_flags = 0, .ss_size = ALT_SIZE};
    int r = sigaltstack(&ss, NULL);
    seen_sp = 0;
    pthread_kill(pthread_self(), SIGUSR2);
    printf("altstack: set %d, the thread's handler ran on its own: %d\n", r, within(seen_sp, thread_alt));
    seen_sp = 0;
    alt_phase = 1;
    while (seen_sp == 0)
        ;
    printf("altstack: signalled while spinning, on its own: %d\n", within(seen_sp, thread_alt));
    return NULL;
}

static void altstacks(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alt;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa, NULL);
    block(SIGUSR2, SIG_UNBLOCK);
    static char main_alt[ALT_SIZE];
    stack_t ss = {.ss_sp = main_alt, .ss_flags = 0, .ss_size = ALT_SIZE};
    sigaltstack(&ss, NULL);
    /* The thread's stack and, just above it, its alternate stack: one
     * mapping. */
    char *region = mmap(NULL, THREAD_STACK + ALT_SIZE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) {
        printf("altstack: mmap failed\n");
        return;
    }
    thread_alt = region + THREAD_STACK;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstack(&attr, region, THREAD_STACK);
    pthread_t t;
    if (pthread_create(&t, &attr, alt_thread, NULL) != 0) {
        printf("altstack: pthread_create failed\n");
        return;
    }
    while (alt_phase == 0)
        ;
    pthread_kill(t, SIGUSR2);
    pthread_join(t, NULL);
    seen_sp = 0;
    raise(SIGUSR2);
    printf("altstack: main's handler ran on main's own: %d\n", within(seen_sp, main_alt));
}

static volatile int susp_ready;

static void on_plain(int sig) { (void)sig; }

static void *suspending(void *arg)
{
    (void)arg;
    sigset_t own, waitmask, after;
    sigemptyset(&own);
    sigaddset(&own, SIGUSR1);
    sigaddset(&own, SIGUSR2);
    pthread_sigmask(SIG_SETMASK, &own, NULL);
    sigfillset(&waitmask);
    sigdelset(&waitmask, SIGUSR2);
    susp_ready = 1;
    int r = sigsuspend(&waitmask);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, NULL, &after);
    printf("suspender: sigsuspend %d %s, its own mask back %d\n", r, e == EINTR ? "EINTR" : "?",
           sigismember(&after, SIGUSR1) && sigismember(&after, SIGUSR2) && !sigismember(&after, SIGTERM));
    return NULL;
}

static void suspend_masks(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_plain;
    sigaction(SIGUSR2, &sa, NULL);
    sigset_t none, cur;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, suspending, NULL) != 0) {
        printf("suspend masks: pthread_create failed\n");
        return;
    }
    while (!susp_ready)
        ;
    /* Very likely inside sigsuspend by now; the lines are the same either
     * way on a correct system. */
    usleep(50 * 1000);
    raise(SIGUSR2);
    pthread_sigmask(SIG_SETMASK, NULL, &cur);
    printf("main's mask after its handler, untouched: %d\n", !sigismember(&cur, SIGUSR1) && !sigismember(&cur, SIGUSR2));
    pthread_kill(t, SIGUSR2);
    pthread_join(t, NULL);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    queued();
    directed();
    altstacks();
    suspend_masks();
    return 5;
}
