/* Shared memory within one process (monitor/tests/shared.rs): writable
 * MAP_SHARED file mappings (msync, munmap, exit write the pages back),
 * MAP_SHARED|MAP_ANONYMOUS, memfd_create, shm_open and sem_open on
 * /dev/shm. Every case prints what it sees; the output must equal the
 * native run's.
 *
 *   shared file DIR        mappings of a file in DIR
 *   shared fixedover DIR   MAP_FIXED over a shared file mapping
 *   shared errors DIR      what may not be mapped shared and writable
 *   shared anon            MAP_SHARED|MAP_ANONYMOUS
 *   shared memfd           memfd_create
 *   shared exit DIR        writes through a mapping, then exits unmapped
 *   shared show DIR        prints what `exit` left in the file
 *   shared shm NAME        shm_open, sem_open under /dev/shm
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG 4096

static const char *err(long r) {
    static char b[64];
    if (r >= 0)
        return "ok";
    snprintf(b, sizeof b, "%s", errno == EACCES ? "EACCES" : errno == ENODEV ? "ENODEV" : errno == EINVAL ? "EINVAL" : errno == EBADF ? "EBADF" : errno == EAGAIN ? "EAGAIN" : strerror(errno));
    return b;
}

static void show_file(int fd, off_t off, int n) {
    char b[64] = {0};
    pread(fd, b, n, off);
    for (int i = 0; i < n; i++)
        if (!b[i])
            b[i] = '.';
    printf("file at %ld: %.*s\n", (long)off, n, b);
}

static void file(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/map.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    char page[PG];
    memset(page, 'a', PG);
    write(fd, page, PG);
    memset(page, 'b', PG);
    write(fd, page, PG - 100);
    char *m = mmap(0, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        printf("mmap: %s\n", err(-1));
        return;
    }
    printf("mapped: %c %c %d\n", m[0], m[PG], m[2 * PG - 50]);
    memcpy(m, "hello", 5);
    memcpy(m + PG + 10, "world", 5);
    memcpy(m + 2 * PG - 50, "beyond", 6);
    printf("msync: %s\n", err(msync(m, 2 * PG, MS_SYNC)));
    show_file(fd, 0, 8);
    show_file(fd, PG + 8, 9);
    struct stat st;
    fstat(fd, &st);
    printf("size after msync: %ld\n", (long)st.st_size);
    memcpy(m + 100, "async", 5);
    printf("msync async: %s\n", err(msync(m, PG, MS_ASYNC)));
    show_file(fd, 98, 9);
    printf("msync bad flags: %s\n", err(msync(m, PG, MS_SYNC | MS_ASYNC)));
    printf("msync unaligned: %s\n", err(msync(m + 1, PG, MS_SYNC)));
    /* munmap of the second page writes it back; the first stays mapped. */
    memcpy(m + PG, "second", 6);
    memcpy(m + 200, "first", 5);
    printf("munmap second page: %s\n", err(munmap(m + PG, PG)));
    show_file(fd, PG, 8);
    printf("munmap the rest: %s\n", err(munmap(m, PG)));
    show_file(fd, 198, 9);
    /* A new mapping reads what the old one wrote; the file's own writes too. */
    pwrite(fd, "pwrite", 6, 300);
    char *n = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PG);
    printf("second mapping at offset %d: %.6s %.5s\n", PG, n, n + 10);
    munmap(n, PG);
    n = mmap(0, 2 * PG, PROT_READ, MAP_SHARED, fd, 0);
    printf("read-only shared: %.5s %.6s\n", n, n + 300);
    munmap(n, 2 * PG);
    /* A protected shared mapping still writes back. */
    n = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    memcpy(n + 500, "protect", 7);
    printf("mprotect read-only: %s\n", err(mprotect(n, PG, PROT_READ)));
    printf("munmap: %s\n", err(munmap(n, PG)));
    show_file(fd, 500, 7);
    /* MADV_DONTNEED keeps the file's bytes. */
    n = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    memcpy(n + 600, "dontneed", 8);
    printf("madvise: %s, then %.8s\n", err(madvise(n, PG, MADV_DONTNEED)), n + 600);
    munmap(n, PG);
    /* Closing the descriptor keeps the mapping working. */
    n = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    memcpy(n + 700, "closed", 6);
    munmap(n, PG);
    fd = open(path, O_RDONLY);
    show_file(fd, 700, 6);
    int again = open(path, O_RDONLY);
    printf("descriptor numbers as natively: %d %d\n", fd, again);
    close(again);
    close(fd);
}

/* MAP_FIXED over a shared mapping (the copy path writes it back first;
 * the process backend's live file mappings refuse it: docs/syscalls.md). */
static void fixed_over(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/fixed.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    char page[PG];
    memset(page, 'a', PG);
    write(fd, page, PG);
    char *n = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    memcpy(n + 400, "fixed", 5);
    char *f = mmap(n, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (f == MAP_FAILED) {
        printf("fixed over it: %s\n", errno == ENOMEM ? "ENOMEM" : err(-1));
        munmap(n, PG);
    } else {
        printf("fixed over it: %s, now %d\n", f == n ? "same address" : "moved", f[400]);
        munmap(f, PG);
    }
    show_file(fd, 400, 5);
    close(fd);
}

static void errors(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/err.dat", dir);
    int rw = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ftruncate(rw, PG);
    int ro = open(path, O_RDONLY);
    int wo = open(path, O_WRONLY);
    int ap = open(path, O_RDWR | O_APPEND);
    int p[2];
    pipe(p);
    void *m;
    m = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
    printf("shared writable of a read-only descriptor: %s\n", err(m == MAP_FAILED ? -1 : 0));
    m = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, wo, 0);
    printf("of a write-only descriptor: %s\n", err(m == MAP_FAILED ? -1 : 0));
    m = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, ap, 0);
    printf("of an append-only descriptor: %s\n", err(m == MAP_FAILED ? -1 : 0));
    m = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, p[0], 0);
    printf("of a pipe: %s\n", err(m == MAP_FAILED ? -1 : 0));
    m = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, 999, 0);
    printf("of a bad descriptor: %s\n", err(m == MAP_FAILED ? -1 : 0));
    m = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 1);
    printf("unaligned offset: %s\n", err(m == MAP_FAILED ? -1 : 0));
    m = mmap(0, 0, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0);
    printf("length 0: %s\n", err(m == MAP_FAILED ? -1 : 0));
    m = mmap(0, PG, PROT_READ, MAP_SHARED, ro, 0);
    printf("shared read-only of a read-only descriptor: %s\n", err(m == MAP_FAILED ? -1 : 0));
    m = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0);
    printf("private writable of a read-only descriptor: %s\n", err(m == MAP_FAILED ? -1 : 0));
}

static void anon(void) {
    char *m = mmap(0, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    printf("shared anonymous: %s, zero: %d %d\n", err(m == MAP_FAILED ? -1 : 0), m[0], m[2 * PG - 1]);
    strcpy(m + PG, "anon");
    printf("reads back: %s\n", m + PG);
    printf("msync: %s\n", err(msync(m, 2 * PG, MS_SYNC)));
    printf("munmap: %s\n", err(munmap(m, 2 * PG)));
}

static void memfd(void) {
    int fd = memfd_create("cabin-test", MFD_CLOEXEC);
    printf("memfd_create: %s, cloexec %d\n", err(fd), fcntl(fd, F_GETFD) & FD_CLOEXEC);
    printf("ftruncate: %s\n", err(ftruncate(fd, 2 * PG)));
    char *m = mmap(0, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("mmap: %s\n", err(m == MAP_FAILED ? -1 : 0));
    strcpy(m + PG, "memfd page");
    munmap(m, 2 * PG);
    show_file(fd, PG, 10);
    write(fd, "written", 7);
    m = mmap(0, PG, PROT_READ, MAP_PRIVATE, fd, 0);
    printf("private mapping sees the write: %.7s\n", m);
    struct stat st;
    fstat(fd, &st);
    printf("size %ld regular %d\n", (long)st.st_size, S_ISREG(st.st_mode));
    printf("bad flags: %s\n", err(memfd_create("x", 0x100)));
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    printf("long name: %s\n", err(memfd_create(longname, 0)));
    printf("sealing: %s\n", err(memfd_create("s", MFD_ALLOW_SEALING)));
}

static void exit_dirty(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/exit.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ftruncate(fd, PG);
    char *m = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    strcpy(m, "written before exit");
    printf("exiting\n");
    exit(0);
}

static void show(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/exit.dat", dir);
    int fd = open(path, O_RDONLY);
    show_file(fd, 0, 19);
}

static void shm(const char *name) {
    char semname[256];
    snprintf(semname, sizeof semname, "%s-sem", name);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    printf("shm_open: %s\n", err(fd));
    printf("ftruncate: %s\n", err(ftruncate(fd, PG)));
    char *m = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    strcpy(m, "in shared memory");
    munmap(m, PG);
    close(fd);
    fd = shm_open(name, O_RDONLY, 0);
    m = mmap(0, PG, PROT_READ, MAP_SHARED, fd, 0);
    printf("reopened: %s\n", m);
    printf("shm_unlink: %s\n", err(shm_unlink(name)));
    printf("shm_open after unlink: %s\n", err(shm_open(name, O_RDONLY, 0)));
    sem_t *s = sem_open(semname, O_CREAT | O_EXCL, 0600, 2);
    printf("sem_open: %s\n", s == SEM_FAILED ? err(-1) : "ok");
    int v = -1;
    sem_getvalue(s, &v);
    printf("value %d\n", v);
    printf("sem_wait: %s\n", err(sem_wait(s)));
    printf("sem_wait: %s\n", err(sem_wait(s)));
    printf("sem_trywait: %s\n", err(sem_trywait(s)));
    printf("sem_post: %s\n", err(sem_post(s)));
    sem_getvalue(s, &v);
    printf("value %d\n", v);
    printf("sem_close: %s\n", err(sem_close(s)));
    s = sem_open(semname, 0);
    sem_getvalue(s, &v);
    printf("reopened value %d\n", v);
    sem_close(s);
    printf("sem_unlink: %s\n", err(sem_unlink(semname)));
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IONBF, 0);
    if (argc < 2)
        return 2;
    const char *m = argv[1];
    if (!strcmp(m, "file") && argc > 2)
        file(argv[2]);
    else if (!strcmp(m, "fixedover") && argc > 2)
        fixed_over(argv[2]);
    else if (!strcmp(m, "errors") && argc > 2)
        errors(argv[2]);
    else if (!strcmp(m, "anon"))
        anon();
    else if (!strcmp(m, "memfd"))
        memfd();
    else if (!strcmp(m, "exit") && argc > 2)
        exit_dirty(argv[2]);
    else if (!strcmp(m, "show") && argc > 2)
        show(argv[2]);
    else if (!strcmp(m, "shm") && argc > 2)
        shm(argv[2]);
    else
        return 2;
    return 0;
}
