/* System-call buffers that straddle committed runs of a reservation that
 * are adjacent in the program's address space but not in the arena (the
 * monitor's host pieces): read, pread, readv, write, pwrite, writev, send,
 * recv, recvfrom, getdents64, epoll_wait, getrandom. Usage: scatter DIR
 * (DIR is created and used for files). Output equals the native run.
 *
 * Layout: a 16-page PROT_NONE reservation whose pages 0, 2 and 1 are
 * committed in that order by mprotect: each commit takes the next free
 * arena page, so guest pages 0|1|2 are backed by arena pages X, X+2, X+1:
 * every page boundary of the 3-page run is a straddle. Natively, the
 * layout is plain memory. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAGE 4096L

static unsigned sum(const unsigned char *p, long n) {
    unsigned s = 0;
    for (long i = 0; i < n; i++)
        s = s * 31 + p[i];
    return s;
}

static void fill(unsigned char *p, long n, int seed) {
    for (long i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 7 + seed);
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    char *r = mmap(0, 16 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        return 3;
    int order[3] = {0, 2, 1};
    for (int i = 0; i < 3; i++)
        if (mprotect(r + order[i] * PAGE, PAGE, PROT_READ | PROT_WRITE) != 0)
            return 4;
    /* A second run the same way, for the other side of each transfer. */
    char *q = r + 8 * PAGE;
    for (int i = 0; i < 3; i++)
        if (mprotect(q + order[i] * PAGE, PAGE, PROT_READ | PROT_WRITE) != 0)
            return 5;
    printf("layout: 3 pages committed in the order 0 2 1, twice\n");
    unsigned char *src = (unsigned char *)r + PAGE - 100; /* 0|1|2 */
    unsigned char *dst = (unsigned char *)q + PAGE - 300;
    long n = PAGE + 200;
    fill(src, n, 1);

    /* Pipe: write from a straddle, read into one. */
    int pf[2];
    if (pipe(pf) != 0)
        return 6;
    long w = write(pf[1], src, n);
    long rd = 0;
    while (rd < w) {
        long k = read(pf[0], dst + rd, n - rd);
        if (k <= 0)
            return 7;
        rd += k;
    }
    printf("pipe write %ld read %ld same %d sum %08x\n", w, rd, !memcmp(src, dst, n), sum(dst, n));

    /* File: pwrite, pread, writev, readv. */
    mkdir(argv[1], 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/f", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 8;
    fill(src, n, 2);
    printf("pwrite %ld\n", (long)pwrite(fd, src, n, 10));
    memset(dst, 0, n);
    long pr = pread(fd, dst, n, 10);
    printf("pread %ld same %d\n", pr, !memcmp(src, dst, n));
    struct iovec iv[2] = {{src, 150}, {src + 150, n - 150}};
    fill(src, n, 3);
    lseek(fd, 0, SEEK_SET);
    printf("writev %ld\n", (long)writev(fd, iv, 2));
    memset(dst, 0, n);
    /* ov[0]: 200 bytes straddling q's 1|2 boundary, just after dst's range. */
    struct iovec ov[2] = {{q + 2 * PAGE - 100, 200}, {dst, n}};
    lseek(fd, 0, SEEK_SET);
    long rv = readv(fd, ov, 2);
    printf("readv %ld head %d tail %d\n", rv, !memcmp(ov[0].iov_base, src, 200),
           !memcmp(dst, src + 200, n - 200));
    close(fd);

    /* Socket pair: send / recv / recvfrom. */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 9;
    fill(src, n, 4);
    printf("send %ld\n", (long)send(sv[0], src, n, 0));
    memset(dst, 0, n);
    long got = 0;
    while (got < n) {
        long k = recv(sv[1], dst + got, n - got, 0);
        if (k <= 0)
            return 10;
        got += k;
    }
    printf("recv %ld same %d\n", got, !memcmp(src, dst, n));
    fill(src, n, 5);
    printf("sendto %ld\n", (long)sendto(sv[1], src, 300, 0, NULL, 0));
    memset(dst, 0, n);
    long rf = recvfrom(sv[0], dst + PAGE - 100, 300, 0, NULL, NULL);
    printf("recvfrom %ld same %d\n", rf, !memcmp(src, dst + PAGE - 100, 300));

    /* epoll_wait: the event array straddles a boundary. */
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLOUT, .data.u64 = 0x1111};
    epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &e);
    e.data.u64 = 0x2222;
    epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &e);
    e.data.u64 = 0x3333;
    epoll_ctl(ep, EPOLL_CTL_ADD, pf[1], &e);
    struct epoll_event *evs = (struct epoll_event *)(r + PAGE - 18);
    int ne = epoll_wait(ep, evs, 8, 1000);
    unsigned long ds = 0;
    for (int i = 0; i < ne; i++)
        ds += evs[i].data.u64 + evs[i].events;
    printf("epoll_wait %d data %lx\n", ne, ds);

    /* getdents64: the entry buffer straddles both boundaries. */
    for (int i = 0; i < 20; i++) {
        snprintf(path, sizeof path, "%s/name-%02d-padding-padding-padding", argv[1], i);
        int f = open(path, O_WRONLY | O_CREAT, 0644);
        if (f < 0)
            return 11;
        close(f);
    }
    int dfd = open(argv[1], O_RDONLY | O_DIRECTORY);
    char *names[64];
    int nn = 0;
    char *db = r + PAGE - 700;
    long dn;
    while ((dn = syscall(SYS_getdents64, dfd, db, PAGE + 1400)) > 0) {
        for (long off = 0; off < dn;) {
            struct dirent64 *d = (struct dirent64 *)(db + off);
            if (nn < 64)
                names[nn++] = strdup(d->d_name);
            off += d->d_reclen;
        }
    }
    qsort(names, nn, sizeof *names, cmp);
    printf("getdents64 %ld: %d names:", dn, nn);
    for (int i = 0; i < nn; i++)
        printf(" %s", names[i]);
    printf("\n");

    /* getrandom across a boundary. */
    printf("getrandom %ld\n", (long)getrandom(r + PAGE - 16, 64, 0));
    return 0;
}
