/* Shared file mappings that are the files' own pages, between processes
 * (monitor/tests/filemap.rs; docs/processes.md "Shared file mappings").
 * Every case prints what it sees; the output must equal the native run's
 * (but `attack`, which prints the bounds).
 *
 *   filemap sem NAME          sem_open semaphores, parent and child, both ways
 *   filemap counter NAME      a shm_open counter, 100,000 atomic increments each
 *   filemap memfd             a memfd mapped before fork: writes and futexes
 *   filemap peer FILE a|b     two processes (one may be native) on one file
 *   filemap sempeer NAME a|b  sem_open ping-pong between two processes that
 *                             are not parent and child (one may be native)
 *   filemap semantics DIR     msync, munmap, pwrite, two mappings, SIGBUS
 *   filemap attack DIR RO     the attacks (RO: a file the run may only read)
 *   filemap churn DIR         3,000 maps and unmaps, then mappings until ENOMEM
 *                             (prints the count: the bound differs by backend)
 *   filemap bus DIR           a child that reads past the end with no handler
 *                             dies of SIGBUS; its parent goes on
 *   filemap race DIR          a thread reads while another unmaps: SIGSEGV
 *   filemap recycle DIR       unmapped pages never show the next mapping's:
 *                             a reader of A while A is unmapped and B mapped,
 *                             1,000 A/B swaps, read-only ones, across fork
 *   filemap big DIR           1 GiB mappings made, touched and unmapped (but
 *                             their last page) 3 times, then 1,000 anonymous
 *                             commits 2 MiB apart
 *   filemap span DIR          pread/pwrite/read/write of a buffer crossing
 *                             two adjacent mappings, then half unmapped
 *   filemap bench FILE N [noping]  atomic increments and a futex ping-pong (ns)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG 4096
#define N 100000

static const char *en(int e) {
    switch (e) {
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case EBADF: return "EBADF";
    case ENODEV: return "ENODEV";
    case EAGAIN: return "EAGAIN";
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case ENOTSOCK: return "ENOTSOCK";
    case EFAULT: return "EFAULT";
    default: return strerror(e);
    }
}

static const char *res(long r) {
    static char b[4][32];
    static int i;
    i = (i + 1) % 4;
    if (r >= 0 && r != (long)MAP_FAILED)
        return "ok";
    snprintf(b[i], sizeof b[i], "-1 %s", en(errno));
    return b[i];
}

static int wait_child(pid_t p) {
    int st = 0;
    if (waitpid(p, &st, 0) != p)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Waits at most 100 ms (callers loop a bounded number of times: without
 * real sharing a case ends with a wrong answer, never hangs). */
static void futex_wait(unsigned *w, unsigned v) {
    struct timespec t = {0, 100 * 1000 * 1000};
    syscall(SYS_futex, w, FUTEX_WAIT, v, &t, NULL, 0);
}

/* sem_wait for at most 5 s. */
static int sem_wait5(sem_t *s) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += 5;
    return sem_timedwait(s, &t);
}

static void futex_wake(unsigned *w) {
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* --- sem_open between parent and child, both ways --- */
static void sem_case(const char *name) {
    char na[256], nb[256];
    snprintf(na, sizeof na, "%s-a", name);
    snprintf(nb, sizeof nb, "%s-b", name);
    sem_t *a = sem_open(na, O_CREAT | O_EXCL, 0600, 0);
    if (a == SEM_FAILED) {
        printf("sem_open: %s\n", en(errno));
        return;
    }
    sem_t *b = sem_open(nb, O_CREAT | O_EXCL, 0600, 0);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        /* `a` inherited; `b` opened again in the child: another mapping of
         * the same file. */
        sem_t *b2 = sem_open(nb, 0);
        int rounds = 0;
        for (int i = 0; i < 1000; i++) {
            if (sem_wait5(a) != 0 || sem_post(b2) != 0)
                _exit(2);
            rounds++;
        }
        _exit(rounds == 1000 ? 0 : 1);
    }
    int rounds = 0;
    for (int i = 0; i < 1000; i++) {
        sem_post(a);
        if (sem_wait5(b) != 0)
            break;
        rounds++;
    }
    int v = -1;
    sem_getvalue(a, &v);
    printf("ping-pong rounds: %d, child %d, value %d\n", rounds, wait_child(p), v);
    sem_close(a);
    sem_close(b);
    printf("unlink: %d %d\n", sem_unlink(na), sem_unlink(nb));
}

/* --- a shm_open counter --- */
static void counter_case(const char *name) {
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) {
        printf("shm_open: %s\n", en(errno));
        return;
    }
    ftruncate(fd, PG);
    long *c = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    unsigned *go = (unsigned *)(c + 1);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        for (int i = 0; i < 50 && __atomic_load_n(go, __ATOMIC_SEQ_CST) == 0; i++)
            futex_wait(go, 0);
        for (int i = 0; i < N; i++)
            __atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST);
        _exit(0);
    }
    __atomic_store_n(go, 1, __ATOMIC_SEQ_CST);
    futex_wake(go);
    for (int i = 0; i < N; i++)
        __atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST);
    printf("child: %d\n", wait_child(p));
    printf("counter: %ld (of %d)\n", *c, 2 * N);
    /* A fresh mapping of the object sees the same count. */
    fd = shm_open(name, O_RDONLY, 0);
    long *r = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
    printf("read-only mapping: %ld\n", *r);
    munmap(r, PG);
    close(fd);
    munmap(c, PG);
    printf("unlink: %d\n", shm_unlink(name));
}

/* --- a memfd mapped before fork --- */
static void memfd_case(void) {
    int fd = memfd_create("cabin-filemap", MFD_CLOEXEC);
    ftruncate(fd, 2 * PG);
    char *m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    unsigned *w = (unsigned *)(m + PG);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        strcpy(m, "written by the child");
        __atomic_store_n(w, 1, __ATOMIC_SEQ_CST);
        futex_wake(w);
        for (int i = 0; i < 50 && __atomic_load_n(w, __ATOMIC_SEQ_CST) != 2; i++)
            futex_wait(w, 1);
        /* The parent's write, through the child's own descriptor too. */
        char b[32] = {0};
        pread(fd, b, 21, 100);
        _exit(strcmp(m + 100, "written by the parent") == 0 && strcmp(b, "written by the parent") == 0 ? 0 : 1);
    }
    for (int i = 0; i < 50 && __atomic_load_n(w, __ATOMIC_SEQ_CST) != 1; i++)
        futex_wait(w, 0);
    printf("parent sees: %s\n", m);
    strcpy(m + 100, "written by the parent");
    __atomic_store_n(w, 2, __ATOMIC_SEQ_CST);
    futex_wake(w);
    printf("child: %d\n", wait_child(p));
    char b[32] = {0};
    pread(fd, b, 20, 0);
    printf("the memfd holds: %s\n", b);
    munmap(m, 2 * PG);
    close(fd);
}

/* --- two processes on one file (one of them may be native) --- */
static void peer_case(const char *path, const char *role) {
    int fd = open(path, O_RDWR);
    if (fd < 0) {
        printf("open: %s\n", en(errno));
        return;
    }
    char *m = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        printf("mmap: %s\n", en(errno));
        return;
    }
    int a = role[0] == 'a';
    const char *mine = a ? "hello from a" : "hello from b";
    const char *theirs = a ? "hello from b" : "hello from a";
    char *my = m + (a ? 0 : 64), *other = m + (a ? 64 : 0);
    unsigned *flag = (unsigned *)(m + 256);
    if (!a) {
        /* b waits for a's words first, then answers. */
        for (int i = 0; i < 2000 && strcmp(other, theirs) != 0; i++)
            usleep(5000);
    }
    strcpy(my, mine);
    __atomic_fetch_add(flag, 1, __ATOMIC_SEQ_CST);
    futex_wake(flag);
    for (int i = 0; i < 2000 && strcmp(other, theirs) != 0; i++)
        usleep(5000);
    printf("%s sees: %s\n", role, strcmp(other, theirs) == 0 ? other : "(nothing)");
    munmap(m, PG);
    close(fd);
}

/* --- sem_open between two unrelated processes --- */
static void sempeer_case(const char *name, const char *role) {
    char n1[256], n2[256];
    snprintf(n1, sizeof n1, "%s-1", name);
    snprintf(n2, sizeof n2, "%s-2", name);
    int a = role[0] == 'a';
    sem_t *s1 = SEM_FAILED, *s2 = SEM_FAILED;
    /* b makes them; a waits for them to exist. */
    if (!a) {
        s1 = sem_open(n1, O_CREAT, 0600, 0);
        s2 = sem_open(n2, O_CREAT, 0600, 0);
    } else {
        for (int i = 0; i < 2000 && (s1 == SEM_FAILED || s2 == SEM_FAILED); i++) {
            if (s1 == SEM_FAILED)
                s1 = sem_open(n1, 0);
            if (s2 == SEM_FAILED)
                s2 = sem_open(n2, 0);
            if (s1 == SEM_FAILED || s2 == SEM_FAILED)
                usleep(5000);
        }
    }
    if (s1 == SEM_FAILED || s2 == SEM_FAILED) {
        printf("%s: sem_open: %s\n", role, en(errno));
        return;
    }
    int rounds = 0;
    for (int i = 0; i < 500; i++) {
        if (a) {
            sem_post(s1);
            if (sem_wait5(s2) != 0)
                break;
        } else {
            if (sem_wait5(s1) != 0)
                break;
            sem_post(s2);
        }
        rounds++;
    }
    printf("%s: rounds %d\n", role, rounds);
    sem_close(s1);
    sem_close(s2);
    if (!a) {
        sem_unlink(n1);
        sem_unlink(n2);
    }
}

/* --- msync, munmap, pwrite, two mappings, truncation --- */
static sigjmp_buf jb;
static void on_fault(int sig) {
    siglongjmp(jb, sig);
}

static const char *touch(volatile char *p, int write) {
    int sig = sigsetjmp(jb, 1);
    if (sig)
        return sig == SIGBUS ? "SIGBUS" : sig == SIGSEGV ? "SIGSEGV" : "signal";
    if (write)
        *p = 'w';
    else
        (void)*p;
    return "ok";
}

static void semantics_case(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/sem.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ftruncate(fd, 4 * PG);
    char *m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *n = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    strcpy(m + 10, "through m");
    printf("second mapping sees: %s\n", n + 10);
    char b[32] = {0};
    pread(fd, b, 9, 10);
    printf("pread sees (no msync): %s\n", b);
    pwrite(fd, "pwritten", 8, PG + 5);
    printf("mapping sees pwrite: %.8s\n", m + PG + 5);
    printf("msync MS_SYNC: %s\n", res(msync(m, 4 * PG, MS_SYNC)));
    printf("msync MS_ASYNC|MS_INVALIDATE: %s\n", res(msync(m, PG, MS_ASYNC | MS_INVALIDATE)));
    printf("msync bad flags: %s\n", res(msync(m, PG, MS_SYNC | MS_ASYNC)));
    printf("msync unaligned: %s\n", res(msync(m + 1, PG, MS_SYNC)));
    printf("munmap the middle page: %s\n", res(munmap(m + PG, PG)));
    printf("the pages around it: %s %s\n", touch(m + 10, 0), touch(m + 2 * PG, 1));
    printf("msync over the hole: %s\n", res(msync(m, 4 * PG, MS_SYNC)));
    printf("madvise DONTNEED keeps the file's bytes: %s %s\n", res(madvise(n, PG, MADV_DONTNEED)), n + 10);
    struct sigaction sa = {0};
    sa.sa_handler = on_fault;
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    printf("mprotect read-only: %s, then a write: %s\n", res(mprotect(n, PG, PROT_READ)), touch(n + 1, 1));
    printf("mprotect read-write again: %s, then a write: %s\n", res(mprotect(n, PG, PROT_READ | PROT_WRITE)), touch(n + 1, 1));
    ftruncate(fd, PG);
    printf("truncated to a page: %s in it, %s past it\n", touch(n + 100, 0), touch(n + 3 * PG, 0));
    /* System calls on buffers in the mapping (the monitor copies them
     * through the child's memory: a page past the end is EFAULT). */
    char cpath[4096];
    snprintf(cpath, sizeof cpath, "%s/copy.dat", dir);
    int out = open(cpath, O_RDWR | O_CREAT | O_TRUNC, 0644);
    printf("write from the mapping: %ld\n", (long)write(out, n + 10, 9));
    printf("pread into the mapping: %ld, %.9s\n", (long)pread(out, n + 200, 9, 0), n + 200);
    printf("pwrite from the mapping: %ld\n", (long)pwrite(out, n + 200, 9, 100));
    lseek(out, 100, SEEK_SET);
    printf("read into the mapping: %ld, %.9s\n", (long)read(out, n + 300, 9), n + 300);
    printf("write from past the end: %s\n", res(write(out, n + 3 * PG, 10)));
    printf("read into past the end: %s\n", res(pread(out, n + 3 * PG, 9, 0)));
    close(out);
    ftruncate(fd, 4 * PG);
    printf("grown again: %s, reads %d\n", touch(n + 3 * PG, 0), n[3 * PG + 10]);
    printf("munmap: %s %s\n", res(munmap(m, 4 * PG)), res(munmap(n, 4 * PG)));
    int ro = open(path, O_RDONLY);
    char *r = mmap(NULL, PG, PROT_READ, MAP_SHARED, ro, 0);
    printf("read-only descriptor: %s, mprotect writable: %s\n", r + 10, res(mprotect(r, PG, PROT_READ | PROT_WRITE)));
    munmap(r, PG);
    close(ro);
    close(fd);
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

static void forged(const char *what, long r) {
    if (r < 0 && r > -4096)
        printf("%s: -1 %s\n", what, en((int)-r));
    else
        printf("%s: done\n", what);
}

static void attack_case(const char *dir, const char *ro_path) {
    char path[4096];
    snprintf(path, sizeof path, "%s/attack.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ftruncate(fd, 2 * PG);
    printf("mmap PROT_EXEC: %s\n", res((long)mmap(NULL, PG, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0)));
    char *m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    strcpy(m, "mine");
    printf("mprotect exec: %s\n", res(mprotect(m, PG, PROT_READ | PROT_EXEC)));
    printf("mmap exec fixed over it: %s\n", res((long)mmap(m, PG, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED, fd, 0)));
    printf("open a read-only file writable: %s\n", res(open(ro_path, O_RDWR)));
    int ro = open(ro_path, O_RDONLY);
    printf("map it shared writable: %s\n", res((long)mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0)));
    char *r = mmap(NULL, PG, PROT_READ, MAP_SHARED, ro, 0);
    printf("map it shared read-only: %s\n", res((long)r));
    forged("forged mprotect of it writable", forge6(SYS_mprotect, (long)r, PG, PROT_READ | PROT_WRITE, 0, 0, 0));
    forged("forged mprotect of it exec", forge6(SYS_mprotect, (long)r, PG, PROT_READ | PROT_EXEC, 0, 0, 0));
    /* Forged native calls: the filter lets only the file-mapping forms
     * through; the rest reaches the libos as the program's own calls. */
    forged("forged mmap of descriptor 3 there", forge6(SYS_mmap, (long)m, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, 3, 0));
    forged("forged mmap of the domain memfd there", forge6(SYS_mmap, (long)m, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, 1000, 0));
    forged("forged mmap of the window memfd there", forge6(SYS_mmap, (long)m, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, 1001, 0));
    forged("forged mmap of it executable", forge6(SYS_mmap, (long)m, PG, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED, 3, 0));
    forged("forged close of the channel", forge6(SYS_close, 1002, 0, 0, 0, 0, 0));
    struct msghdr msg = {0};
    char buf[64];
    struct iovec iov = {buf, sizeof buf};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    forged("forged recvmsg on the channel", forge6(SYS_recvmsg, 1002, (long)&msg, MSG_DONTWAIT, 0, 0, 0));
    /* With the libos's mark (FILEMAP_NATIVE_MAGIC) the filter lets it
     * through: the channel holds nothing for it. */
    forged("forged recvmsg on the channel, marked",
           forge6(SYS_recvmsg, 1002, (long)&msg, MSG_DONTWAIT, 0x434142494e464d41L, 0, 0));
    forged("forged sendmsg on the channel", forge6(SYS_sendmsg, 1002, (long)&msg, MSG_DONTWAIT, 0, 0, 0));
    forged("forged munmap of the boot page", forge6(SYS_munmap, 0x200000000000L, PG, 0, 0, 0, 0));
    printf("munmap of the boot page: %s\n", res(munmap((void *)0x200000000000L, PG)));
    printf("still mine: %s\n", m);
    /* A flood of mappings ends with ENOMEM. */
    static char *maps[70000];
    int n = 0;
    while (n < 70000 && (maps[n] = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) != MAP_FAILED)
        n++;
    int e = errno;
    printf("a flood of mappings: %s then %s\n", n >= 65000 ? "many" : n > 200 ? "hundreds" : "few", en(e));
    for (int i = 0; i < n; i++)
        munmap(maps[i], PG);
    printf("one huge mapping: %s\n", res((long)mmap(NULL, 1L << 40, PROT_READ, MAP_SHARED, fd, 0)));
    char *again = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("after the flood: %s, sees %s\n", res((long)again), again == MAP_FAILED ? "-" : again);
    /* A child that forks with the mappings and ends holding them. */
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        strcpy(m + 8, "child");
        forge6(SYS_mmap, (long)m, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, 5, 0);
        _exit(0);
    }
    printf("child: %d, parent sees %s\n", wait_child(p), m + 8);
    /* Not served (docs/syscalls.md): a live file mapping does not move. */
    printf("mremap of it: %s\n", res((long)mremap(m, 2 * PG, 4 * PG, MREMAP_MAYMOVE)));
    close(fd);
    close(ro);
}

/* --- the bounds and the attacks on them --- */
static void churn_case(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/churn.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ftruncate(fd, 4 * PG);
    int ok = 0;
    for (int i = 0; i < 3000; i++) {
        size_t len = (size_t)(1 + i % 4) * PG;
        volatile char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
            break;
        m[len - 1] = (char)i;
        ok += m[len - 1] == (char)i && munmap((void *)m, len) == 0;
    }
    printf("churn: %d of 3000\n", ok);
    static char *maps[70000];
    int n = 0;
    while (n < 70000 && (maps[n] = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) != MAP_FAILED)
        n++;
    int e = errno;
    printf("then mappings: %d then %s\n", n >= 65000 ? 65000 : n, en(e));
    for (int i = 0; i < n; i++)
        munmap(maps[i], PG);
    char *again = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("after them: %s\n", res((long)again));
    /* Larger than any of them (KVM: every slot number is taken by a free
     * slot too small, so one of them goes for a new one). */
    char *big = mmap(NULL, 256 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("a larger one: %s", res((long)big));
    if (big != MAP_FAILED) {
        big[0] = 'x';
        printf(", reads %c\n", again[0]);
    } else
        printf("\n");
    close(fd);
}

static void bus_case(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/bus.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ftruncate(fd, 2 * PG);
    volatile char *m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    m[PG] = 'x';
    ftruncate(fd, PG);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        printf("child reads: %d\n", m[PG + 8]);
        _exit(0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    printf("child: %s %d\n", WIFSIGNALED(st) ? "killed by signal" : "exited", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    m[8] = 'y';
    printf("parent still maps it: %c\n", m[8]);
    close(fd);
}

static volatile char *race_map;
static volatile int race_started;
static __thread sigjmp_buf race_jb;
static void race_fault(int sig) {
    siglongjmp(race_jb, sig);
}
static void *race_reader(void *arg) {
    (void)arg;
    int sig = sigsetjmp(race_jb, 1);
    if (sig)
        return (void *)(long)sig;
    long sum = 0;
    for (;;) {
        sum += race_map[(sum & 7) * 512];
        race_started = 1;
    }
}

static void *race_blocked_read(void *arg) {
    int *p = arg;
    race_started = 1;
    long n = read(p[0], (void *)race_map, 8);
    return (void *)(n < 0 ? -(long)errno : n);
}

static void race_case(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/race.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ftruncate(fd, PG);
    struct sigaction sa = {0};
    sa.sa_handler = race_fault;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    race_map = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    pthread_t t;
    pthread_create(&t, NULL, race_reader, NULL);
    while (!race_started)
        ;
    struct timespec d = {0, 20 * 1000 * 1000};
    nanosleep(&d, NULL);
    printf("munmap under the reader: %s\n", res(munmap((void *)race_map, PG)));
    void *r;
    pthread_join(t, &r);
    printf("reader: %s\n", (long)r == SIGSEGV ? "SIGSEGV" : (long)r == SIGBUS ? "SIGBUS" : "other");
    /* A read blocked on a pipe into a mapping that another thread unmaps
     * meanwhile: EFAULT, and nothing reaches the file. */
    race_map = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int p[2];
    pipe(p);
    race_started = 0;
    pthread_create(&t, NULL, race_blocked_read, p);
    while (!race_started)
        ;
    nanosleep(&d, NULL);
    printf("munmap under the blocked read: %s\n", res(munmap((void *)race_map, PG)));
    write(p[1], "too late", 8);
    pthread_join(t, &r);
    printf("the blocked read: %s\n", (long)r < 0 ? en((int)-(long)r) : "ok");
    char b[16] = {0};
    pread(fd, b, 8, 0);
    printf("the file: %s\n", b[0] ? b : "(zeros)");
    close(fd);
}

/* --- what an unmapped mapping's place shows next (KVM reuses its slot) --- */
static volatile int recycle_seen_other;
static void *recycle_reader(void *arg) {
    (void)arg;
    int sig = sigsetjmp(race_jb, 1);
    if (sig)
        return (void *)(long)sig;
    for (long i = 0;; i++) {
        char c = race_map[(i & 7) * 512];
        if (c != 'A')
            recycle_seen_other = c ? c : '0';
        race_started = 1;
    }
}

static int fill_file(const char *dir, const char *name, char c, int pages, int flags) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    char b[PG];
    memset(b, c, PG);
    for (int i = 0; i < pages; i++)
        pwrite(fd, b, PG, (off_t)i * PG);
    if (flags == O_RDONLY) {
        close(fd);
        fd = open(path, O_RDONLY);
    }
    return fd;
}

static void recycle_case(const char *dir) {
    int fa = fill_file(dir, "a.dat", 'A', 1, O_RDWR);
    int fb = fill_file(dir, "b.dat", 'B', 2, O_RDWR);
    int fr = fill_file(dir, "r.dat", 'R', 1, O_RDONLY);
    struct sigaction sa = {0};
    sa.sa_handler = race_fault;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    /* A thread reads A in a loop; A goes, B (two pages: not at A's place)
     * comes: the reader sees A's bytes, then SIGSEGV, never B's. */
    race_map = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
    char *next = mmap(NULL, PG, PROT_READ, MAP_SHARED, fa, 0);
    pthread_t t;
    pthread_create(&t, NULL, recycle_reader, NULL);
    while (!race_started)
        ;
    struct timespec d = {0, 20 * 1000 * 1000};
    nanosleep(&d, NULL);
    char *old = (char *)race_map;
    printf("munmap of A under the reader: %s\n", res(munmap(old, PG)));
    char *b = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
    int b_ok = b != MAP_FAILED && b[0] == 'B' && b[PG] == 'B';
    if (b != MAP_FAILED)
        b[1] = 'b';
    void *r;
    pthread_join(t, &r);
    printf("reader: %s, saw other bytes: %s\n", (long)r == SIGSEGV ? "SIGSEGV" : "other",
           recycle_seen_other ? "yes" : "no");
    sa.sa_handler = on_fault; /* touch()'s, from here on */
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    printf("B mapped: %s, at A's place: %s, old place: %s\n", b_ok ? "reads B" : "wrong", b == old ? "yes" : "no",
           touch(old, 0));
    munmap(b, 2 * PG);
    munmap(next, PG);
    /* 1,000 swaps, touching each: A's pages after A went, B's after B
     * went, read-only ones among them: each mapping shows its own file
     * only, and a write to one never reaches the other file. */
    int bad = 0, faults = 0;
    for (int i = 0; i < 1000; i++) {
        volatile char *a = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
        bad += a[100] != 'A';
        a[200] = 'A';
        munmap((void *)a, PG);
        faults += strcmp(touch(a, 0), "SIGSEGV") != 0;
        int size = (1 + i % 3) * PG;
        volatile char *x = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
        bad += x[100] != 'B' && x[100] != 'b';
        x[300] = 'b';
        volatile char *ro = mmap(NULL, PG, PROT_READ, MAP_SHARED, fr, 0);
        bad += ro[5] != 'R';
        faults += strcmp(touch(ro, 1), "SIGSEGV") != 0;
        munmap((void *)x, size);
        munmap((void *)ro, PG);
        faults += strcmp(touch(x, 0), "SIGSEGV") != 0;
    }
    char ca[PG], cb[PG], cr[PG];
    pread(fa, ca, PG, 0);
    pread(fb, cb, PG, 0);
    pread(fr, cr, PG, 0);
    int clean = 1;
    for (int i = 0; i < PG; i++)
        clean &= ca[i] == 'A' && cr[i] == 'R' && cb[i] == (i == 1 || i == 300 ? 'b' : 'B');
    printf("swaps: %d wrong bytes, %d missing faults, files: %s\n", bad, faults, clean ? "as written" : "mixed");
    /* Across fork: the child keeps what it inherited after the parent
     * unmaps, and each side's next mappings are its own. */
    volatile char *a = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
    (void)a[0];
    fflush(stdout);
    int pp[2], cp[2];
    pipe(pp);
    pipe(cp);
    pid_t p = fork();
    if (p == 0) {
        char c;
        read(pp[0], &c, 1); /* the parent unmapped it */
        int ok = a[0] == 'A';
        munmap((void *)a, PG);
        volatile char *y = mmap(NULL, PG, PROT_READ, MAP_SHARED, fb, 0);
        ok &= y[0] == 'B';
        write(cp[1], "x", 1);
        read(pp[0], &c, 1); /* the parent mapped B again */
        ok &= y[0] == 'B' && y[1] == 'b';
        _exit(ok ? 0 : 1);
    }
    munmap((void *)a, PG);
    write(pp[1], "x", 1);
    char c;
    read(cp[0], &c, 1);
    volatile char *z = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
    int zok = z[0] == 'A';
    write(pp[1], "x", 1);
    printf("fork: child %d, parent maps A again: %s\n", wait_child(p), zok ? "reads A" : "wrong");
    close(fa);
    close(fb);
    close(fr);
}

/* --- large mappings one after another (KVM: their page tables come back).
 * Each keeps its last page mapped, so the next cannot take its place: every
 * one is at new addresses. --- */
static void big_case(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/big.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    size_t len = (size_t)1 << 30;
    ftruncate(fd, (off_t)len);
    int ok = 0;
    const char *why = "";
    volatile char *kept[3];
    for (int i = 0; i < 3; i++) {
        volatile char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            why = en(errno);
            break;
        }
        m[0] = (char)i;
        m[len - 1] = (char)i;
        kept[i] = m + len - PG;
        ok += m[0] == (char)i && m[len - 1] == (char)i && munmap((void *)m, len - PG) == 0;
    }
    int still = 1;
    for (int i = 0; i < ok; i++)
        still &= kept[i][PG - 1] == (char)(ok - 1) && munmap((void *)kept[i], PG) == 0;
    printf("1 GiB mappings: %d of 3%s%s, their last pages: %s\n", ok, *why ? ", then " : "", why, still ? "ok" : "wrong");
    /* Then anonymous memory committed a page every 2 MiB over 2 GiB: one
     * more table each (KVM: from the same pool). */
    char *r = mmap(NULL, 2 * len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    int done = 0;
    for (size_t o = 0; r != MAP_FAILED && o < 2 * len && done < 1000; o += 2 << 20) {
        if (mprotect(r + o, PG, PROT_READ | PROT_WRITE) != 0)
            break;
        r[o] = 1;
        done++;
    }
    printf("then commits: %d of 1000\n", done);
    close(fd);
}

/* --- a buffer across two adjacent mappings --- */
static void span_case(const char *dir) {
    int fa = fill_file(dir, "sa.dat", 'a', 1, O_RDWR);
    int fb = fill_file(dir, "sb.dat", 'b', 1, O_RDWR);
    int src = fill_file(dir, "src.dat", 's', 1, O_RDWR);
    int out = fill_file(dir, "out.dat", '-', 1, O_RDWR);
    char *m1 = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
    char *m2 = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
    char *lo = m1 < m2 ? m1 : m2, *hi = m1 < m2 ? m2 : m1;
    printf("adjacent: %s\n", hi == lo + PG ? "yes" : "no");
    char *p = hi - 100;
    char want[200], got[256] = {0};
    memcpy(want, p, 200);
    printf("pwrite across: %ld\n", (long)pwrite(out, p, 200, 0));
    pread(out, got, 200, 0);
    printf("the file got: %s\n", memcmp(got, want, 200) ? "other bytes" : "both mappings' bytes");
    printf("pread across: %ld\n", (long)pread(src, p, 200, 0));
    int s_ok = 1;
    for (int i = 0; i < 200; i++)
        s_ok &= p[i] == 's';
    printf("both files: %s, %s\n", s_ok && lo[PG - 1] == 's' ? "written" : "not", hi[99] == 's' && hi[100] != 's' ? "written to 100" : "not");
    lseek(out, 0, SEEK_SET);
    printf("write across: %ld\n", (long)write(out, p, 200));
    lseek(src, 0, SEEK_SET);
    printf("read across: %ld\n", (long)read(src, p, 200));
    /* The upper one goes: what reaches it is a short count, as natively. */
    munmap(hi, PG);
    printf("pwrite half unmapped: %s\n", res(pwrite(out, p, 200, 0)) [0] == 'o' ? "short" : "error");
    long n = pwrite(out, p, 200, 0);
    printf("  count: %ld\n", n < 0 ? -(long)errno : n);
    n = pread(src, p, 200, 0);
    printf("pread half unmapped: %ld\n", n < 0 ? -(long)errno : n);
    n = pwrite(out, hi, 10, 0);
    printf("pwrite from the unmapped one: %s\n", n < 0 ? en(errno) : "ok");
    munmap(lo, PG);
    close(fa);
    close(fb);
    close(src);
    close(out);
}

/* --- measurements --- */
static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void bench_case(const char *path, int n, int ping) {
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    ftruncate(fd, PG);
    unsigned *w = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    long *c = (long *)(w + 16);
    memset(w, 0, 256);
    double tm = now_ns();
    for (int i = 0; i < 1000; i++) {
        volatile char *x = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        x[8] = 1;
        munmap((void *)x, PG);
    }
    printf("mmap, touch, munmap: %.1f us\n", (now_ns() - tm) / 1000 / 1000);
    double t0 = now_ns();
    for (int i = 0; i < n; i++)
        __atomic_fetch_add(c, 1, __ATOMIC_SEQ_CST);
    double t1 = now_ns();
    printf("atomic increment: %.2f ns\n", (t1 - t0) / n);
    if (!ping) {
        munmap(w, PG);
        close(fd);
        return;
    }
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        for (int i = 0; i < n / 100; i++) {
            while (__atomic_load_n(w, __ATOMIC_SEQ_CST) != 2 * (unsigned)i + 1)
                futex_wait(w, 2 * (unsigned)i);
            __atomic_store_n(w, 2 * (unsigned)i + 2, __ATOMIC_SEQ_CST);
            futex_wake(w);
        }
        _exit(0);
    }
    double t2 = now_ns();
    for (int i = 0; i < n / 100; i++) {
        __atomic_store_n(w, 2 * (unsigned)i + 1, __ATOMIC_SEQ_CST);
        futex_wake(w);
        while (__atomic_load_n(w, __ATOMIC_SEQ_CST) != 2 * (unsigned)i + 2)
            futex_wait(w, 2 * (unsigned)i + 1);
    }
    double t3 = now_ns();
    wait_child(p);
    printf("futex ping-pong round trip: %.0f ns\n", (t3 - t2) / (n / 100));
    munmap(w, PG);
    close(fd);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "sem") && argc > 2)
        sem_case(argv[2]);
    else if (!strcmp(m, "counter") && argc > 2)
        counter_case(argv[2]);
    else if (!strcmp(m, "memfd"))
        memfd_case();
    else if (!strcmp(m, "peer") && argc > 3)
        peer_case(argv[2], argv[3]);
    else if (!strcmp(m, "semantics") && argc > 2)
        semantics_case(argv[2]);
    else if (!strcmp(m, "attack") && argc > 3)
        attack_case(argv[2], argv[3]);
    else if (!strcmp(m, "sempeer") && argc > 3)
        sempeer_case(argv[2], argv[3]);
    else if (!strcmp(m, "churn") && argc > 2)
        churn_case(argv[2]);
    else if (!strcmp(m, "bus") && argc > 2)
        bus_case(argv[2]);
    else if (!strcmp(m, "race") && argc > 2)
        race_case(argv[2]);
    else if (!strcmp(m, "recycle") && argc > 2)
        recycle_case(argv[2]);
    else if (!strcmp(m, "big") && argc > 2)
        big_case(argv[2]);
    else if (!strcmp(m, "span") && argc > 2)
        span_case(argv[2]);
    else if (!strcmp(m, "bench") && argc > 3)
        bench_case(argv[2], atoi(argv[3]), argc < 5 || strcmp(argv[4], "noping"));
    else {
        fprintf(stderr, "usage: filemap sem|counter|memfd|peer|semantics|attack|bench ...\n");
        return 2;
    }
    return 0;
}
