/* Attacks with threads on the domain's CPUs (monitor/tests/attacks/vcpu_threads.rs):
 * a thread faults while another waits; exit_group while other threads spin
 * in ring 3 without ever making a call; the main thread exits first; more
 * threads than the domain has rings; a thread that spins while main waits
 * (its CPU time counts for [limits] cpu-time); a thread that ends its vCPU
 * with the exit doorbell without telling its ring; every thread asleep in futex
 * for ever (the run's wall-time limit must end it); the futex doorbell with
 * hostile arguments; threads started and ended as fast as four threads can, joined,
 * detached or ended with a raw exit, with futex wakes and requeues on their tid words,
 * while the main thread ends everything with exit_group. On KVM each thread is a vCPU
 * (a reused one, on a reused host thread). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long spins[8];

static void *spin(void *arg) {
    long i = (long)arg;
    for (;;)
        spins[i]++;
    return NULL;
}

static void *fault(void *arg) {
    (void)arg;
    *(volatile int *)8 = 1;
    return NULL;
}

static void *late_exit_group(void *arg) {
    (void)arg;
    struct timespec t = {0, 20 * 1000 * 1000};
    nanosleep(&t, NULL);
    syscall(SYS_exit_group, 9);
    return NULL;
}

static void *late_child(void *arg) {
    (void)arg;
    struct timespec t = {0, 30 * 1000 * 1000};
    nanosleep(&t, NULL);
    write(1, "child\n", 6);
    return NULL;
}

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;

/* Blocks (in futex) until the end of the program: main holds the mutex. */
static void *park(void *arg) {
    (void)arg;
    pthread_mutex_lock(&held);
    return NULL;
}

/* KVM only: ends its own vCPU with the thread-exit doorbell (an `out` the
 * I/O bitmap lets ring 3 make) without posting its exit on its ring first,
 * so the libos and the monitor still count the thread. */
static void *doorbell_exit(void *arg) {
    (void)arg;
    __asm__ volatile("out %%al, $0xe0" : : "a"(5), "D"(42L) : "memory");
    write(1, "resumed\n", 8);
    return NULL;
}

static unsigned never; /* nobody ever changes or wakes it */

/* Sleeps in futex on `never` for ever: op in arg. */
static void *sleep_forever(void *arg) {
    long op = (long)arg;
    unsigned bits = op == FUTEX_WAIT_BITSET_PRIVATE + 1 ? 1u : FUTEX_BITSET_MATCH_ANY;
    if (op == FUTEX_WAIT_BITSET_PRIVATE + 1)
        op = FUTEX_WAIT_BITSET_PRIVATE;
    for (;;)
        syscall(SYS_futex, &never, op, 0, NULL, NULL, bits);
    return NULL;
}

/* KVM only: the futex doorbell (6) with the system call's registers. */
static long doorbell_futex(unsigned long addr, long op, long val, unsigned long timeout, unsigned long addr2,
                           unsigned long val3) {
    long r;
    register unsigned long r10 __asm__("r10") = timeout;
    register unsigned long r8 __asm__("r8") = addr2;
    register unsigned long r9 __asm__("r9") = val3;
    __asm__ volatile("out %%al, $0xe0"
                     : "=a"(r)
                     : "a"(6L), "D"(addr), "S"(op), "d"(val), "r"(r10), "r"(r8), "r"(r9)
                     : "memory");
    return r;
}

static unsigned word_a[4] __attribute__((aligned(16)));

static void *hello(void *arg) {
    (void)arg;
    write(1, "second thread ran\n", 18);
    return NULL;
}

static volatile int churning = 1;
static pthread_attr_t small;

/* A short-lived thread: returns, or ends with a raw exit (no glibc clean-up), or
 * wakes and requeues sleepers of its own tid word first (the monitor's
 * CLONE_CHILD_CLEARTID word). */
static void *quick(void *arg) {
    long k = (long)arg;
    if (k % 4 == 1) {
        unsigned *tid = (unsigned *)((char *)pthread_self() + 720); /* glibc's tid word */
        syscall(SYS_futex, tid, FUTEX_WAKE_PRIVATE, 1000, NULL, NULL, 0);
        syscall(SYS_futex, &never, FUTEX_CMP_REQUEUE_PRIVATE, 0, 1000, tid, 0);
    }
    if (k % 4 == 2)
        syscall(SYS_exit, 0);
    return NULL;
}

/* Starts quick threads for ever, joining every other one and detaching the rest. */
static void *churn(void *arg) {
    (void)arg;
    for (long i = 0; churning; i++) {
        pthread_t t;
        if (pthread_create(&t, &small, quick, (void *)i))
            continue;
        if (i % 2)
            pthread_detach(t);
        else if (i % 4 != 2)
            pthread_join(t, NULL);
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    pthread_t t[80];
    if (!strcmp(c, "fault")) {
        pthread_create(&t[0], NULL, fault, NULL);
        pthread_join(t[0], NULL);
        printf("survived\n");
        return 0;
    }
    if (!strcmp(c, "exit_group_spin")) {
        for (long i = 0; i < 3; i++)
            pthread_create(&t[i], NULL, spin, (void *)i);
        while (spins[0] == 0 || spins[1] == 0 || spins[2] == 0)
            sched_yield();
        syscall(SYS_exit_group, 7);
    }
    if (!strcmp(c, "thread_exit_group")) {
        pthread_create(&t[0], NULL, late_exit_group, NULL);
        for (;;)
            spins[4]++;
    }
    if (!strcmp(c, "main_exits_first")) {
        pthread_create(&t[0], NULL, late_child, NULL);
        syscall(SYS_exit, 5);
    }
    if (!strcmp(c, "spin_thread")) {
        pthread_create(&t[0], NULL, spin, (void *)5);
        pthread_join(t[0], NULL);
        return 0;
    }
    if (!strcmp(c, "many")) {
        int n = 0, e = 0;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 64 * 1024); /* 80 default stacks exceed the memory bound */
        pthread_mutex_lock(&held);
        for (; n < 80; n++) {
            e = pthread_create(&t[n], &a, park, NULL);
            if (e)
                break;
        }
        printf("created %d: %s\n", n, e ? strerror(e) : "no error");
        fflush(stdout);
        syscall(SYS_exit_group, 0);
    }
    if (!strcmp(c, "futex_forever")) {
        /* Plain, bit-set (any) and bit-set (one bit: the ring's path)
         * waits, and main's own: only the run's end stops them. */
        pthread_create(&t[0], NULL, sleep_forever, (void *)(long)FUTEX_WAIT_PRIVATE);
        pthread_create(&t[1], NULL, sleep_forever, (void *)(long)FUTEX_WAIT_BITSET_PRIVATE);
        pthread_create(&t[2], NULL, sleep_forever, (void *)(long)(FUTEX_WAIT_BITSET_PRIVATE + 1));
        printf("sleeping\n");
        fflush(stdout);
        sleep_forever((void *)(long)FUTEX_WAIT_PRIVATE);
    }
    if (!strcmp(c, "futex_doorbell")) {
        unsigned long w = (unsigned long)&word_a[0];
        struct timespec ms = {0, 1000 * 1000}, bad_ns = {0, 1000 * 1000 * 1000};
        word_a[0] = 5;
        long r[] = {
            doorbell_futex(w, FUTEX_WAIT_PRIVATE, 4, 0, 0, 0),                     /* EAGAIN */
            doorbell_futex(w, FUTEX_WAIT_PRIVATE, 5, (unsigned long)&ms, 0, 0),    /* ETIMEDOUT */
            doorbell_futex(w + 2, FUTEX_WAIT_PRIVATE, 5, 0, 0, 0),                 /* EINVAL */
            doorbell_futex(8, FUTEX_WAIT_PRIVATE, 0, 0, 0, 0),                     /* EFAULT: zero page */
            doorbell_futex(0xffffffff80000000ul, FUTEX_WAIT_PRIVATE, 0, 0, 0, 0),  /* EFAULT: kernel */
            doorbell_futex(((unsigned long)&main + 3) & ~3ul, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0), /* EFAULT: code */
            doorbell_futex(w, FUTEX_WAIT_PRIVATE, 5, 8, 0, 0),                     /* EFAULT: timeout */
            doorbell_futex(w, FUTEX_WAIT_PRIVATE, 5, (unsigned long)&bad_ns, 0, 0), /* EINVAL */
            doorbell_futex(w, FUTEX_WAIT_BITSET_PRIVATE, 5, 0, 0, 1),              /* ENOSYS: one bit */
            doorbell_futex(w, FUTEX_LOCK_PI_PRIVATE, 0, 0, 0, 0),                  /* ENOSYS */
            doorbell_futex(w, FUTEX_CMP_REQUEUE_PRIVATE, 0, 1, w + 4, 5),          /* ENOSYS */
            doorbell_futex(w, 99, 0, 0, 0, 0),                                     /* ENOSYS */
            doorbell_futex(w, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0),                     /* 0 */
            doorbell_futex(w, FUTEX_WAKE_BITSET_PRIVATE, 1, 0, 0, 0),              /* EINVAL */
        };
        for (unsigned i = 0; i < sizeof r / sizeof r[0]; i++)
            printf("%ld ", r[i]);
        printf("\n");
        return 0;
    }
    if (!strcmp(c, "churn")) {
        pthread_attr_init(&small);
        pthread_attr_setstacksize(&small, 64 * 1024);
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], &small, churn, NULL);
        struct timespec d = {0, 300 * 1000 * 1000};
        nanosleep(&d, NULL);
        syscall(SYS_exit_group, 7);
    }
    if (!strcmp(c, "doorbell_exit")) {
        pthread_create(&t[0], NULL, doorbell_exit, NULL);
        pthread_join(t[0], NULL);
        printf("joined\n");
        fflush(stdout);
        pthread_create(&t[1], NULL, hello, NULL);
        pthread_join(t[1], NULL);
        return 3;
    }
    printf("unknown case\n");
    return 2;
}
