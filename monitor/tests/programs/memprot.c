/* memprot: protections take effect (issue 13). Modes (argv[1]):
 *   guard FILE   a PROT_NONE guard page below a buffer; writing past the
 *                buffer's start faults (139); FILE gets the fault address.
 *   relro FILE   the RELRO pages made read-only, then written (139); FILE
 *                gets the address written.
 *   rwr          mprotect RW -> R -> RW: reads keep working, writes work
 *                again, content kept; prints "rwr ok" (0).
 *   rofault FILE a read-only arena page written (139).
 *   none         mmap PROT_NONE, then mprotect RW and use (0).
 *   threadguard FILE  a thread writes just below its own stack, into the
 *                guard page pthread made PROT_NONE (139).
 *   xthread FILE a thread writes a page (so its CPU has the translation),
 *                spins while the main thread makes the page read-only,
 *                then writes it again (139): a protection change made by
 *                one thread holds in every thread at once.
 * Natively and confined the output and status must be equal. */
#define _GNU_SOURCE
#include <elf.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

static void note(const char *file, unsigned long addr)
{
    FILE *f = fopen(file, "w");
    if (!f) {
        perror("fopen");
        exit(2);
    }
    fprintf(f, "%#lx\n", addr);
    fclose(f);
}

static const char *fault_file;

static void *below_own_stack(void *arg)
{
    (void)arg;
    pthread_attr_t a;
    void *lo;
    size_t size, guard;
    if (pthread_getattr_np(pthread_self(), &a) != 0 || pthread_attr_getstack(&a, &lo, &size) != 0 ||
        pthread_attr_getguardsize(&a, &guard) != 0 || guard == 0) {
        puts("no stack attributes");
        exit(2);
    }
    volatile char *p = (volatile char *)lo - 1; /* the top byte of the guard */
    note(fault_file, (unsigned long)p);
    *p = 1;
    puts("the thread's guard page did not fault");
    exit(1);
}

static volatile char *shared_page;
static int warmed, protected_now;

static void *write_after_protect(void *arg)
{
    (void)arg;
    note(fault_file, (unsigned long)shared_page + 8);
    shared_page[0] = 1; /* this CPU now caches a writable translation */
    __atomic_store_n(&warmed, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&protected_now, __ATOMIC_SEQ_CST))
        ; /* spin: stay on the CPU, no system call, no exit */
    shared_page[8] = 2;
    puts("the write after mprotect in another thread did not fault");
    exit(1);
}

static int threaded(const char *mode)
{
    pthread_t t;
    if (!strcmp(mode, "threadguard")) {
        if (pthread_create(&t, NULL, below_own_stack, NULL) != 0)
            return 2;
    } else {
        shared_page = mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (shared_page == MAP_FAILED || pthread_create(&t, NULL, write_after_protect, NULL) != 0)
            return 2;
        while (!__atomic_load_n(&warmed, __ATOMIC_SEQ_CST))
            ;
        if (mprotect((void *)shared_page, PAGE, PROT_READ) != 0) {
            perror("mprotect");
            return 2;
        }
        __atomic_store_n(&protected_now, 1, __ATOMIC_SEQ_CST);
    }
    pthread_join(t, NULL);
    puts("joined a thread that should have faulted");
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    fault_file = argc > 2 ? argv[2] : "/dev/null";
    if (!strcmp(mode, "threadguard") || !strcmp(mode, "xthread"))
        return threaded(mode);
    if (!strcmp(mode, "guard")) {
        char *p = mmap(0, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || mprotect(p, PAGE, PROT_NONE) != 0) {
            perror("guard");
            return 2;
        }
        volatile long *buf = (volatile long *)(p + PAGE);
        note(argv[2], (unsigned long)(p + PAGE - 8));
        for (long i = 0; i < 1000; i++)
            buf[-i] = i; /* overflows downwards into the guard page */
        puts("guard did not fault");
        return 1;
    }
    if (!strcmp(mode, "relro")) {
        Elf64_Phdr *ph = (Elf64_Phdr *)getauxval(AT_PHDR);
        unsigned long n = getauxval(AT_PHNUM);
        for (unsigned long i = 0; i < n; i++) {
            if (ph[i].p_type != PT_GNU_RELRO)
                continue;
            unsigned long start = ph[i].p_vaddr & ~(PAGE - 1);
            unsigned long end = (ph[i].p_vaddr + ph[i].p_memsz) & ~(PAGE - 1);
            if (end <= start) {
                puts("no whole RELRO page");
                return 0;
            }
            if (mprotect((void *)start, end - start, PROT_READ) != 0) {
                perror("mprotect relro");
                return 2;
            }
            volatile char *v = (volatile char *)start;
            char c = *v; /* still readable */
            note(argv[2], start);
            fflush(stdout);
            *v = c; /* read-only now */
            puts("RELRO write did not fault");
            return 1;
        }
        puts("no RELRO");
        return 0;
    }
    if (!strcmp(mode, "rwr")) {
        char *p = mmap(0, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 2;
        memset(p, 'x', 8 * PAGE);
        if (mprotect(p + PAGE, 2 * PAGE, PROT_READ) != 0)
            return 3;
        long sum = 0;
        for (unsigned long i = 0; i < 8 * PAGE; i++)
            sum += p[i];
        if (mprotect(p + PAGE, 2 * PAGE, PROT_READ | PROT_WRITE) != 0)
            return 4;
        p[PAGE] = 'y';
        p[3 * PAGE - 1] = 'z';
        /* Memory given back and taken again is read-write and zero. */
        if (mprotect(p, 8 * PAGE, PROT_NONE) != 0 || munmap(p, 8 * PAGE) != 0)
            return 5;
        char *q = mmap(0, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (q == MAP_FAILED)
            return 6;
        for (unsigned long i = 0; i < 8 * PAGE; i++)
            if (q[i] != 0)
                return 7;
        memset(q, 1, 8 * PAGE);
        printf("rwr ok %ld\n", sum);
        return 0;
    }
    if (!strcmp(mode, "rofault")) {
        char *p = mmap(0, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 2;
        volatile char *v = p + PAGE + 5;
        if (*v != 0)
            return 3;
        /* Written while writable first: a cached writable translation
         * must not outlive the change. */
        if (mprotect(p, 2 * PAGE, PROT_READ | PROT_WRITE) != 0)
            return 4;
        *v = 0;
        if (mprotect(p, 2 * PAGE, PROT_READ) != 0)
            return 5;
        note(argv[2], (unsigned long)v);
        *v = 1;
        puts("write to a read-only page did not fault");
        return 1;
    }
    if (!strcmp(mode, "none")) {
        char *p = mmap(0, 16 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 2;
        if (mprotect(p + 4 * PAGE, 4 * PAGE, PROT_READ | PROT_WRITE) != 0)
            return 3;
        memset(p + 4 * PAGE, 7, 4 * PAGE);
        printf("none ok %d\n", p[5 * PAGE]);
        return 0;
    }
    if (!strcmp(mode, "reserve")) {
        /* 64 GiB of address space, 64 MiB of it committed and used, some of
         * it through the file system (buffers in committed memory). */
        unsigned long size = 64UL << 30, used = 64UL << 20;
        char *p = mmap(0, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            perror("reserve");
            return 2;
        }
        char *c = p + (size / 2);
        if (mprotect(c, used, PROT_READ | PROT_WRITE) != 0) {
            perror("commit");
            return 3;
        }
        for (unsigned long i = 0; i < used; i += PAGE)
            c[i] = (char)(i / PAGE);
        /* Commit by mmap over the reservation too (Go's way). */
        char *d = mmap(p, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (d != p)
            return 4;
        memset(d, 'q', 4 * PAGE);
        if (argc > 2) {
            FILE *f = fopen(argv[2], "w+");
            if (!f || fwrite(c + PAGE, 1, 3 * PAGE, f) != 3 * PAGE || fflush(f) != 0)
                return 5;
            rewind(f);
            if (fread(d, 1, 3 * PAGE, f) != 3 * PAGE || memcmp(d, c + PAGE, 3 * PAGE) != 0)
                return 6;
            fclose(f);
        }
        long sum = 0;
        for (unsigned long i = 0; i < used; i += PAGE)
            sum += c[i];
        if (munmap(p, size) != 0)
            return 7;
        printf("reserve ok %ld\n", sum);
        return 0;
    }
    if (!strcmp(mode, "overcommit")) {
        /* Commits and touches 1 GiB of a reservation: past the default bound. */
        unsigned long size = 64UL << 30, used = 1UL << 30;
        char *p = mmap(0, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            return 2;
        for (unsigned long off = 0; off < used; off += 16UL << 20) {
            if (mprotect(p + off, 16UL << 20, PROT_READ | PROT_WRITE) != 0) {
                fprintf(stderr, "commit at %lu MiB: %m\n", off >> 20);
                return 3;
            }
            memset(p + off, 1, 16UL << 20);
        }
        puts("overcommit ran");
        return 0;
    }
    if (!strcmp(mode, "bench")) { /* not a test: ns per mprotect, on stdout */
        char *p = mmap(0, 64 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        struct timespec a, b;
        long n = 20000;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < n; i++) {
            mprotect(p + (i % 64) * PAGE, PAGE, PROT_READ);
            mprotect(p + (i % 64) * PAGE, PAGE, PROT_READ | PROT_WRITE);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
        printf("mprotect: %.0f ns per call\n", ns / (2 * n));
        return 0;
    }
    return 2;
}
