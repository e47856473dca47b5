/* Attacks on thread creation (monitor/tests/attacks/threads.rs,
 * docs/threads.md). The program forges thread submissions on its own ring,
 * asks for forbidden clone flag sets, requeues the ring doorbells, and
 * creates more threads than the domain has rings. Each case prints what it
 * got; the test checks the monitor refused and survived. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SUB_THREAD 4u
#define OP_START 1u
#define OP_CANCEL 2u
#define OP_SIGNAL 3u
#define THREAD_FLAGS 0x3d0f00ull

struct thread_start {
    uint32_t op, slot;
    uint64_t flags, entry, stack, tls, parent_tid, child_tid, gs_base, arg, reserved[3];
};

static uint8_t *ring0(void) {
    uint64_t boot = getauxval(0x43414249);
    if (!boot) {
        printf("not confined\n");
        exit(3);
    }
    return (uint8_t *)*(uint64_t *)(boot + 16);
}

/* Submits one call on ring 0 as the libos would, and waits for its answer. */
static long forge(uint32_t flags, uint64_t nr, uint64_t a0, uint64_t a1) {
    uint8_t *r = ring0();
    uint32_t *sq_tail = (uint32_t *)(r + 128), *sq_sleeping = (uint32_t *)(r + 68);
    uint32_t *sq_doorbell = (uint32_t *)(r + 132), *cq_head = (uint32_t *)(r + 192);
    uint32_t t = __atomic_load_n(sq_tail, __ATOMIC_SEQ_CST);
    uint8_t *slot = r + 512 + (t % 64) * 64;
    *(uint32_t *)(slot + 4) = flags;
    *(uint64_t *)(slot + 8) = nr;
    uint64_t *args = (uint64_t *)(slot + 16);
    args[0] = a0;
    args[1] = a1;
    for (int i = 2; i < 6; i++) args[i] = 0;
    __atomic_store_n((uint32_t *)slot, t + 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(sq_tail, t + 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(sq_sleeping, __ATOMIC_SEQ_CST)) {
        __atomic_add_fetch(sq_doorbell, 1, __ATOMIC_SEQ_CST);
        /* KVM (boot flag 2): the libos forwards futex over this very ring,
         * whose tail is ours right now; wake the worker as the libos does,
         * with the doorbell port (DOORBELL_WAKE). */
        if (*(uint32_t *)(getauxval(0x43414249) + 12) & 2)
            __asm__ volatile("outb %0, $0xe0" ::"a"((uint8_t)1));
        else
            syscall(SYS_futex, sq_doorbell, FUTEX_WAKE, 1, 0, 0, 0);
    }
    uint8_t *c = r + 512 + 64 * 64 + (t % 64) * 16;
    while (__atomic_load_n((uint32_t *)c, __ATOMIC_SEQ_CST) != t + 1) sched_yield();
    long res = *(int64_t *)(c + 8);
    __atomic_store_n(cq_head, t + 1, __ATOMIC_SEQ_CST);
    return res;
}

static long start_req(uint32_t op, uint32_t slot, uint64_t flags) {
    static struct thread_start ts;
    memset(&ts, 0, sizeof ts);
    ts.op = op;
    ts.slot = slot;
    ts.flags = flags;
    return forge(SUB_THREAD, SYS_clone, (uint64_t)&ts, sizeof ts);
}

static int pfd[2];
static void *blocked(void *arg) {
    char c;
    (void)arg;
    return (void *)(long)read(pfd[0], &c, 1);
}

static void forged(void) {
    pthread_t t;
    if (pipe(pfd) || pthread_create(&t, NULL, blocked, NULL)) exit(1);
    usleep(20000);
    printf("slot 0: %ld\n", start_req(OP_START, 0, THREAD_FLAGS));
    printf("slot 64: %ld\n", start_req(OP_START, 64, THREAD_FLAGS));
    printf("slot 1000000: %ld\n", start_req(OP_START, 1000000, THREAD_FLAGS));
    printf("slot in use: %ld\n", start_req(OP_START, 1, THREAD_FLAGS));
    printf("fork flags: %ld\n", start_req(OP_START, 5, 17));
    printf("vm only: %ld\n", start_req(OP_START, 5, 0x100));
    printf("bad op: %ld\n", start_req(9, 5, THREAD_FLAGS));
    printf("bad pointer: %ld\n", forge(SUB_THREAD, SYS_clone, 0x10, sizeof(struct thread_start)));
    printf("bad size: %ld\n", forge(SUB_THREAD, SYS_clone, (uint64_t)&pfd, 95));
    /* Accepted, but no native thread is ever started: the slot's worker
     * idles until the slot is cancelled. */
    printf("never started: %ld\n", start_req(OP_START, 7, THREAD_FLAGS));
    printf("cancel: %ld\n", start_req(OP_CANCEL, 7, 0));
    printf("cancel again: %ld\n", start_req(OP_CANCEL, 7, 0));
    printf("cancel a live thread's slot 0: %ld\n", start_req(OP_CANCEL, 0, 0));
    /* OP_SIGNAL (a wake-up for a signal queued for one thread): only slots
     * of started threads; a flood of them only interrupts the blocked
     * reader, which makes its read again (nothing is pending for it). */
    printf("signal slot 64: %ld\n", start_req(OP_SIGNAL, 64, 0));
    printf("signal slot 1000000: %ld\n", start_req(OP_SIGNAL, 1000000, 0));
    printf("signal a free slot: %ld\n", start_req(OP_SIGNAL, 9, 0));
    long sum = 0;
    for (int i = 0; i < 1000; i++) sum += start_req(OP_SIGNAL, 1, 0) == 0;
    printf("signal the reader 1000 times: %ld answered 0\n", sum);
    if (write(pfd[1], "x", 1) != 1 || pthread_join(t, NULL)) exit(1);
    printf("joined\n");
}

static void flags(void) {
    static char stack[65536];
    errno = 0;
    long r = syscall(SYS_clone, 0x100 | 17, stack + sizeof stack, 0, 0, 0);
    printf("clone vm|sigchld: %ld errno %d\n", r, r < 0 ? errno : 0);
    r = syscall(SYS_clone, 0x10000 | 0x100, stack + sizeof stack, 0, 0, 0);
    printf("clone thread without sighand: %ld errno %d\n", r, r < 0 ? errno : 0);
    r = syscall(SYS_clone, THREAD_FLAGS | 0x20000000, stack + sizeof stack, 0, 0, 0);
    printf("clone thread|newcgroup: %ld errno %d\n", r, r < 0 ? errno : 0);
    uint64_t args[11] = {0x100 | 0x4000, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0};
    r = syscall(SYS_clone3, args, 88);
    printf("clone3 vm|vfork: %ld errno %d\n", r, r < 0 ? errno : 0);
    uint64_t no_stack[11] = {THREAD_FLAGS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    r = syscall(SYS_clone3, no_stack, 88);
    printf("clone3 thread without a stack: %ld errno %d\n", r, r < 0 ? errno : 0);
}

static volatile int stop;
static void *requeuer(void *arg) {
    uint8_t *r = ring0();
    static uint32_t elsewhere;
    (void)arg;
    while (!stop) {
        for (int off = 132; off <= 260; off += 128) {
            syscall(SYS_futex, r + off, FUTEX_REQUEUE, 0, INT_MAX, &elsewhere, 0);
            syscall(SYS_futex, r + off, FUTEX_WAKE, INT_MAX, 0, 0, 0);
        }
        sched_yield();
    }
    return NULL;
}

static void requeue(void) {
    pthread_t t;
    char buf[256];
    if (pthread_create(&t, NULL, requeuer, NULL)) exit(1);
    long ok = 0;
    for (int i = 0; i < 30; i++) {
        if (getcwd(buf, sizeof buf)) ok++;
        if (i % 10 == 0) usleep(3000); /* let the worker go to sleep */
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("calls served %ld\n", ok);
}

static void *waiter(void *arg) {
    char c;
    (void)arg;
    return (void *)(long)read(pfd[0], &c, 1);
}

static void limit(void) {
    pthread_attr_t a;
    pthread_t t[128];
    int n = 0, e = 0;
    if (pipe(pfd) || pthread_attr_init(&a) || pthread_attr_setstacksize(&a, 128 * 1024)) exit(1);
    while (n < 128) {
        e = pthread_create(&t[n], &a, waiter, NULL);
        if (e) break;
        n++;
    }
    printf("created %d more threads, then %s\n", n, e == EAGAIN ? "EAGAIN" : strerror(e));
    for (int i = 0; i < n; i++)
        if (write(pfd[1], "x", 1) != 1) exit(1);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    printf("all joined\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "forged")) forged();
    else if (!strcmp(c, "flags")) flags();
    else if (!strcmp(c, "requeue")) requeue();
    else if (!strcmp(c, "limit")) limit();
    else if (!strcmp(c, "notthread")) {
        ring0();
        printf("got %ld\n", forge(SUB_THREAD, SYS_getpid, 0, 0));
    } else {
        printf("unknown case\n");
        return 2;
    }
    return 0;
}
