/* Hostile buffers in several host pieces (monitor GuestMemory::host_pieces),
 * with tests/attacks/scatter.rs. Modes:
 *   many  - a buffer of 1000 pages, each its own commit (even pages first,
 *           then odd: no two neighbours contiguous in the arena; the libos
 *           refuses a commit past ~1023 separate runs): read, write, readv
 *           of 1024 straddling iovecs (2048 pieces), epoll_wait with a huge
 *           maxevents: the monitor serves a bounded prefix (short counts
 *           are legal), exit 0 when every count is sane.
 *   huge  - a straddling buffer with a length near SIZE_MAX: refused (the
 *           program is killed, 137), never a monitor fault or hang.
 *   race  - another thread unmaps and remaps the middle page while reads
 *           and writes straddle it: exit 0 or killed 137, monitor intact. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAGE 4096L
#define NPAGES 1000L

static char *resv(long pages) {
    char *r = mmap(0, pages * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return r == MAP_FAILED ? NULL : r;
}

static volatile int stop;
static char *mid;

static void *flipper(void *arg) {
    (void)arg;
    while (!stop) {
        munmap(mid, PAGE);
        mmap(mid, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    int z = open("/dev/zero", O_RDONLY);
    int nul = open("/dev/null", O_WRONLY);
    if (z < 0 || nul < 0) {
        perror("open");
        return 3;
    }
    if (!strcmp(argv[1], "many")) {
        char *r = resv(NPAGES);
        if (!r)
            return 4;
        for (int pass = 0; pass < 2; pass++)
            for (long i = pass; i < NPAGES; i += 2)
                if (mprotect(r + i * PAGE, PAGE, PROT_READ | PROT_WRITE) != 0) {
                    printf("commit %ld failed\n", i);
                    return 5;
                }
        long len = NPAGES * PAGE;
        memset(r, 1, len);
        long n = read(z, r, len);
        if (n <= 0 || n > len) {
            printf("read %ld of %ld\n", n, len);
            return 6;
        }
        for (long i = 0; i < n; i++)
            if (r[i] != 0) {
                printf("read %ld but byte %ld not zero\n", n, i);
                return 7;
            }
        long w = write(nul, r + 1, len - 1);
        if (w <= 0 || w > len - 1) {
            printf("write %ld\n", w);
            return 8;
        }
        static struct iovec iov[1024];
        for (int i = 0; i < 1024; i++) {
            iov[i].iov_base = r + (long)(i % 499) * 2 * PAGE + PAGE - 8;
            iov[i].iov_len = 16;
        }
        long v = readv(z, iov, 1024);
        if (v <= 0 || v > 1024 * 16) {
            printf("readv %ld\n", v);
            return 9;
        }
        int ep = epoll_create1(0);
        struct epoll_event e = {.events = EPOLLOUT, .data.u64 = 7};
        epoll_ctl(ep, EPOLL_CTL_ADD, nul, &e);
        int k = epoll_wait(ep, (struct epoll_event *)(r + 5), (int)((len - 5) / 12), 0);
        if (k < 0 || k > 1) {
            printf("epoll_wait %d\n", k);
            return 10;
        }
        printf("many ok\n");
        return 0;
    }
    if (!strcmp(argv[1], "huge")) {
        char *r = resv(4);
        if (!r || mprotect(r + 2 * PAGE, PAGE, PROT_READ | PROT_WRITE) != 0 ||
            mprotect(r + PAGE, PAGE, PROT_READ | PROT_WRITE) != 0)
            return 4;
        long n = read(z, r + PAGE + 100, (size_t)-1 - 50);
        printf("huge read returned %ld\n", n);
        n = write(nul, r + PAGE + 100, (size_t)-1 / 2);
        printf("huge write returned %ld\n", n);
        return 0;
    }
    if (!strcmp(argv[1], "race")) {
        char *r = resv(3);
        if (!r)
            return 4;
        int order[3] = {0, 2, 1};
        for (int i = 0; i < 3; i++)
            if (mprotect(r + order[i] * PAGE, PAGE, PROT_READ | PROT_WRITE) != 0)
                return 5;
        mid = r + PAGE;
        pthread_t t;
        pthread_create(&t, NULL, flipper, NULL);
        for (int i = 0; i < 20000; i++) {
            read(z, r + PAGE - 64, PAGE + 128);
            write(nul, r + PAGE - 64, PAGE + 128);
        }
        stop = 1;
        pthread_join(t, NULL);
        printf("race ran\n");
        return 0;
    }
    return 2;
}
