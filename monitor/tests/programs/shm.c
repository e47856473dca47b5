/* shm: System V shared memory and MAP_SHARED|MAP_ANONYMOUS memory between
 * a parent and the children it forks (issue 14; docs/processes.md,
 * "Shared memory"). Modes (each prints what it sees; output equal to
 * native but for `attack`):
 *   shm fork KEY     shmget/shmat in the parent, fork, the child writes,
 *                    the parent sees it; IPC_STAT nattch; a key found by
 *                    the child
 *   shm rmid         IPC_RMID while attached: still usable, SHM_DEST, the
 *                    key free; gone at the last detach
 *   shm errors KEY   errnos Linux gives too
 *   shm futex        a MAP_SHARED|MAP_ANONYMOUS counter two processes
 *                    increment with atomics, and a futex wait/wake between
 *                    them (no FUTEX_PRIVATE)
 *   shm bench        what sharing costs (a measurement, not compared)
 *   shm attack       the tree's bounds and the window's rules (confined
 *                    only: huge segments, segment floods, chosen
 *                    addresses, executable mappings, forged native mmaps
 *                    of the window's descriptor with other offsets)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL

static const char *en(int e) {
    switch (e) {
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case ENOSPC: return "ENOSPC";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EIDRM: return "EIDRM";
    case EBADF: return "EBADF";
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    default: return strerror(e);
    }
}

static void say(const char *what, long r) {
    if (r < 0)
        printf("%s: -1 %s\n", what, en(errno));
    else
        printf("%s: %ld\n", what, r);
}

static long nattch(int id) {
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) < 0)
        return -1;
    return (long)ds.shm_nattch;
}

static int wait_child(pid_t p) {
    int st = 0;
    if (waitpid(p, &st, 0) != p)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void fork_case(key_t key) {
    int id = shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600);
    char *m = shmat(id, NULL, 0);
    if (m == (void *)-1) {
        printf("shmat: %s\n", en(errno));
        return;
    }
    struct shmid_ds ds;
    shmctl(id, IPC_STAT, &ds);
    printf("segsz %zu, nattch %lu, mode %o, cpid is me %d, zeroed %d %d\n", ds.shm_segsz,
           (unsigned long)ds.shm_nattch, ds.shm_perm.mode & 0777, ds.shm_cpid == getpid(), m[0], m[9999]);
    strcpy(m, "parent wrote this");
    int go[2];
    if (pipe(go) != 0)
        return;
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        char c;
        /* The parent counts the attachments first. */
        if (read(go[0], &c, 1) != 1)
            _exit(4);
        printf("child sees: %s\n", m);
        fflush(stdout);
        strcpy(m + 5000, "child wrote this");
        _exit(shmdt(m) == 0 ? 0 : 1);
    }
    printf("nattch after fork: %ld\n", nattch(id));
    fflush(stdout);
    if (write(go[1], "g", 1) != 1)
        return;
    printf("child: %d\n", wait_child(p));
    printf("parent sees: %s\n", m + 5000);
    printf("nattch after the child: %ld\n", nattch(id));
    /* A key the child finds. */
    int k = shmget(key, PG, IPC_CREAT | IPC_EXCL | 0600);
    int *w = shmat(k, NULL, 0);
    fflush(stdout);
    p = fork();
    if (p == 0) {
        int k2 = shmget(key, 0, 0);
        /* Linux gives a second attachment another address; the tree
         * gives every attachment of a segment its one address. */
        int *w2 = shmat(k2, NULL, 0);
        w2[10] = 4242;
        _exit(k2 == k && w2 != (void *)-1 ? 0 : 3);
    }
    /* The wait first: the order in which a call's arguments are evaluated
     * is unspecified, and reading w[10] before the child ran saw 0. */
    int st = wait_child(p);
    printf("keyed child: %d, sees %d\n", st, w[10]);
    printf("shmdt: %d %d\n", shmdt(w), shmdt(m));
    printf("rmid: %d %d\n", shmctl(k, IPC_RMID, NULL), shmctl(id, IPC_RMID, NULL));
    say("stat after removal", shmctl(id, IPC_STAT, &ds));
}

static void rmid_case(void) {
    int id = shmget(IPC_PRIVATE, 3 * PG, 0600);
    char *m = shmat(id, NULL, 0);
    char *m2 = shmat(id, NULL, SHM_RDONLY);
    printf("second attach: %s\n", m2 == (void *)-1 ? en(errno) : "ok");
    printf("nattch %ld\n", nattch(id));
    printf("rmid: %d\n", shmctl(id, IPC_RMID, NULL));
    struct shmid_ds ds;
    int st = shmctl(id, IPC_STAT, &ds);
    printf("stat after rmid: %d, dest %d, nattch %lu\n", st, !!(ds.shm_perm.mode & SHM_DEST),
           (unsigned long)ds.shm_nattch);
    strcpy(m + 2 * PG, "still usable");
    printf("reads: %s\n", m + 2 * PG);
    printf("shmdt: %d\n", shmdt(m));
    if (m2 != (void *)-1)
        printf("shmdt: %d\n", shmdt(m2));
    say("stat after the last detach", shmctl(id, IPC_STAT, &ds));
    say("shmat after the last detach", (long)shmat(id, NULL, 0));
}

static void errors_case(key_t key) {
    say("shmget 0 bytes", shmget(IPC_PRIVATE, 0, 0600));
    say("shmget of a missing key", shmget(key, PG, 0600));
    int id = shmget(key, PG, IPC_CREAT | 0600);
    printf("created: %d\n", id >= 0);
    say("again, exclusive", shmget(key, PG, IPC_CREAT | IPC_EXCL | 0600));
    say("again, bigger", shmget(key, 2 * PG, 0600));
    printf("again, smaller: %d\n", shmget(key, 10, 0600) == id);
    say("shmat of a bad id", (long)shmat(-5, NULL, 0));
    say("shmat of an unaligned address", (long)shmat(id, (void *)0x10000123, 0));
    say("shmdt of nothing attached", shmdt((void *)0x10000000));
    say("shmctl of a bad command", shmctl(id, 77, NULL));
    say("shmctl of a bad id", shmctl(-5, IPC_STAT, NULL));
    struct shmid_ds ds;
    shmctl(id, IPC_STAT, &ds);
    ds.shm_perm.mode = 0640;
    say("IPC_SET", shmctl(id, IPC_SET, &ds));
    shmctl(id, IPC_STAT, &ds);
    printf("mode now %o\n", ds.shm_perm.mode & 0777);
    say("rmid", shmctl(id, IPC_RMID, NULL));
    say("rmid again", shmctl(id, IPC_RMID, NULL));
}

static void futex_case(void) {
    struct shared {
        long counter;
        uint32_t go, ack;
    } *s = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) {
        printf("mmap: %s\n", en(errno));
        return;
    }
    enum { N = 100000 };
    pid_t p = fork();
    if (p == 0) {
        for (int i = 0; i < N; i++)
            __atomic_fetch_add(&s->counter, 1, __ATOMIC_SEQ_CST);
        /* Wait for the parent's go, then answer. */
        while (__atomic_load_n(&s->go, __ATOMIC_SEQ_CST) == 0)
            syscall(SYS_futex, &s->go, FUTEX_WAIT, 0, NULL, NULL, 0);
        __atomic_store_n(&s->ack, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, &s->ack, FUTEX_WAKE, 1, NULL, NULL, 0);
        _exit(0);
    }
    for (int i = 0; i < N; i++)
        __atomic_fetch_add(&s->counter, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s->go, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &s->go, FUTEX_WAKE, 1, NULL, NULL, 0);
    while (__atomic_load_n(&s->ack, __ATOMIC_SEQ_CST) == 0)
        syscall(SYS_futex, &s->ack, FUTEX_WAIT, 0, NULL, NULL, 0);
    printf("child: %d\n", wait_child(p));
    printf("counter: %ld (of %d), ack %u\n", s->counter, 2 * N, s->ack);
    printf("munmap: %d\n", munmap(s, PG));
    /* Private memory stays private. */
    long *priv = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *priv = 1;
    fflush(stdout);
    p = fork();
    if (p == 0) {
        *priv = 2;
        _exit(0);
    }
    printf("child: %d, private word %ld\n", wait_child(p), *priv);
}

/* forge6(nr, a..f): `syscall` hidden in `mov ecx, imm32` (b9 0f 05 c3 90),
 * which the rewriter never saw: on the process backend it reaches the
 * seccomp filter with chosen registers. */
long forge6(long nr, long a, long b, long c, long d, long e, long f);
__asm__(".text\n"
        ".globl forge6\n"
        "forge6:\n"
        "  mov %rdi, %rax\n"
        "  mov %rsi, %rdi\n"
        "  mov %rdx, %rsi\n"
        "  mov %rcx, %rdx\n"
        "  mov %r8, %r10\n"
        "  mov %r9, %r8\n"
        "  mov 8(%rsp), %r9\n"
        "  lea hidden6(%rip), %r11\n"
        "  jmp *%r11\n"
        "  .byte 0xb9\n"
        "hidden6:\n"
        "  .byte 0x0f, 0x05, 0xc3, 0x90\n");

static void show(const char *what, long r) {
    if (r < 0 && r > -4096)
        printf("%s: -1 %s\n", what, en((int)-r));
    else
        printf("%s: mapped\n", what);
}

static void attack_case(void) {
    say("shmget 2^40 bytes", shmget(IPC_PRIVATE, 1UL << 40, 0600));
    say("shmget 2^64-1 bytes", shmget(IPC_PRIVATE, SIZE_MAX, 0600));
    int ids[200], n = 0;
    while (n < 200 && (ids[n] = shmget(IPC_PRIVATE, PG, 0600)) >= 0)
        n++;
    printf("a flood of segments: %d then %s\n", n, en(errno));
    for (int i = 0; i < n; i++)
        shmctl(ids[i], IPC_RMID, NULL);
    int a = shmget(IPC_PRIVATE, 2 * PG, 0600), b = shmget(IPC_PRIVATE, PG, 0600);
    char *ma = shmat(a, NULL, 0), *mb = shmat(b, NULL, 0);
    if (ma == (void *)-1 || mb == (void *)-1) {
        printf("shmat: %s\n", en(errno));
        return;
    }
    say("shmat at a chosen address", (long)shmat(a, (void *)0x10000000, 0));
    say("shmat at the other segment's address", (long)shmat(a, mb, 0));
    say("shmat SHM_EXEC", (long)shmat(a, NULL, SHM_EXEC));
    say("mprotect exec", mprotect(ma, PG, PROT_READ | PROT_EXEC));
    say("mmap exec over it", (long)mmap(ma, PG, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED | MAP_ANONYMOUS, -1, 0) == (long)MAP_FAILED ? -1 : 0);
    long fd = 1001; /* SHARED_FD */
    show("forged mmap of the window exec", forge6(9, (long)ma, PG, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED, fd, 0));
    show("forged mmap of the window exec-only", forge6(9, (long)ma, PG, PROT_EXEC, MAP_SHARED | MAP_FIXED, fd, 0));
    show("forged mmap of the window elsewhere", forge6(9, 0x10000000, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0));
    show("forged mmap of the window private", forge6(9, (long)ma, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0));
    show("forged mprotect of the window exec", forge6(10, (long)ma, PG, PROT_READ | PROT_EXEC, 0, 0, 0));
    /* Forged offsets, natively: another part of the window over segment a
     * (the program only misleads itself), and past the memfd's end (pages
     * that would fault if touched: not touched). */
    strcpy(mb, "segment b");
    long r1 = forge6(9, (long)ma, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    long r2 = forge6(9, (long)ma + PG, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 1L << 40);
    printf("forged offsets in the window: %s %s\n", r1 == (long)ma ? "allowed" : en((int)-r1),
           r2 == (long)ma + (long)PG ? "allowed" : en((int)-r2));
    printf("segment b intact: %s\n", mb);
    /* The monitor still serves it; the segments still detach. */
    printf("shmdt: %d %d\n", shmdt(ma), shmdt(mb));
    printf("rmid: %d %d\n", shmctl(a, IPC_RMID, NULL), shmctl(b, IPC_RMID, NULL));
    /* A child that forks with attachments and ends without detaching. */
    int c = shmget(IPC_PRIVATE, PG, 0600);
    char *mc = shmat(c, NULL, 0);
    shmctl(c, IPC_RMID, NULL);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        strcpy(mc, "from the child");
        /* The child forges: its segment mapped natively at another offset
         * of the window and past the memfd's end, a detach of a window
         * address it never attached, a detach twice, then it ends with its
         * attachment. */
        forge6(9, (long)mc, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 8 * PG);
        forge6(9, (long)mc, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 1L << 40);
        int bad = shmdt(mc + 64 * PG) != -1 || errno != EINVAL;
        bad |= shmdt(mc + 1) != -1;
        _exit(bad);
    }
    printf("child: %d, sees %s\n", wait_child(p), mc);
    printf("shmdt: %d\n", shmdt(mc));
    say("shmdt again", shmdt(mc));
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* bench: what sharing costs (not a test; output varies). */
static void bench_case(void) {
    enum { PAIRS = 2000, TRIPS = 2000, INCS = 1000000 };
    int id = shmget(IPC_PRIVATE, 64 * 1024, 0600);
    double t0 = now_ns();
    for (int i = 0; i < PAIRS; i++) {
        void *m = shmat(id, NULL, 0);
        shmdt(m);
    }
    double t1 = now_ns();
    shmctl(id, IPC_RMID, NULL);
    struct {
        long counter;
        uint32_t ball;
    } *s = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        for (int i = 0; i < INCS; i++)
            __atomic_fetch_add(&s->counter, 1, __ATOMIC_SEQ_CST);
        for (int i = 0; i < TRIPS; i++) {
            while (__atomic_load_n(&s->ball, __ATOMIC_SEQ_CST) != 1)
                syscall(SYS_futex, &s->ball, FUTEX_WAIT, 0, NULL, NULL, 0);
            __atomic_store_n(&s->ball, 0, __ATOMIC_SEQ_CST);
            syscall(SYS_futex, &s->ball, FUTEX_WAKE, 1, NULL, NULL, 0);
        }
        _exit(0);
    }
    double t2 = now_ns();
    for (int i = 0; i < INCS; i++)
        __atomic_fetch_add(&s->counter, 1, __ATOMIC_SEQ_CST);
    double t3 = now_ns();
    for (int i = 0; i < TRIPS; i++) {
        __atomic_store_n(&s->ball, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, &s->ball, FUTEX_WAKE, 1, NULL, NULL, 0);
        while (__atomic_load_n(&s->ball, __ATOMIC_SEQ_CST) != 0)
            syscall(SYS_futex, &s->ball, FUTEX_WAIT, 1, NULL, NULL, 0);
    }
    double t4 = now_ns();
    wait_child(p);
    printf("shmat+shmdt: %.2f us; shared atomic increment (two processes): %.1f ns; futex ping-pong round trip: %.1f us; counter %ld\n",
           (t1 - t0) / PAIRS / 1e3, (t3 - t2) / INCS, (t4 - t3) / TRIPS / 1e3, s->counter);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        return 2;
    key_t key = argc > 2 ? (key_t)strtol(argv[2], NULL, 0) : 0x4cab0001;
    if (!strcmp(argv[1], "fork"))
        fork_case(key);
    else if (!strcmp(argv[1], "rmid"))
        rmid_case();
    else if (!strcmp(argv[1], "errors"))
        errors_case(key);
    else if (!strcmp(argv[1], "futex"))
        futex_case();
    else if (!strcmp(argv[1], "attack"))
        attack_case();
    else if (!strcmp(argv[1], "bench"))
        bench_case();
    else
        return 2;
    return 0;
}
