/* memory: the memory system calls a libos may serve itself: brk (via
 * sbrk), anonymous mmap/munmap/mprotect/mremap, malloc of small and large
 * (mmap-backed) blocks with realloc growth, and a MAP_PRIVATE file mapping
 * whose copy-on-write must not reach the file. Prints checksums. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static uint64_t mix(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

int main(void)
{
    uint64_t h = 1469598103934665603ULL;

    /* brk, raw (musl's sbrk only accepts 0) */
    char *a = (char *)syscall(SYS_brk, 0);
    char *end = (char *)syscall(SYS_brk, a + (1 << 20));
    if (end != a + (1 << 20)) {
        fprintf(stderr, "memory: brk did not grow\n");
        return 1;
    }
    memset(a, 0x5a, 1 << 20);
    h = mix(h, (unsigned char *)a, 1 << 20);
    end = (char *)syscall(SYS_brk, a + (1 << 19));
    printf("brk: grew 1 MiB, shrank to %s\n", end == a + (1 << 19) ? "512 KiB" : "something else");

    /* malloc: small and large, realloc growth */
    char *blocks[64];
    for (int i = 0; i < 64; i++) {
        size_t n = (size_t)(i % 8 == 0 ? 300000 + i * 4096 : 16 + i * 37);
        blocks[i] = malloc(n);
        if (!blocks[i]) {
            fprintf(stderr, "memory: malloc failed\n");
            return 1;
        }
        memset(blocks[i], i, n);
        h = mix(h, (unsigned char *)blocks[i], n < 4096 ? n : 4096);
    }
    for (int i = 0; i < 64; i += 2)
        free(blocks[i]);
    char *grow = NULL;
    size_t size = 0;
    for (int step = 0; step < 12; step++) {
        size_t n = (size_t)4096 << step;
        char *g = realloc(grow, n);
        if (!g) {
            fprintf(stderr, "memory: realloc failed\n");
            return 1;
        }
        memset(g + size, step + 1, n - size);
        grow = g;
        size = n;
    }
    h = mix(h, (unsigned char *)grow, size);
    free(grow);
    for (int i = 1; i < 64; i += 2)
        free(blocks[i]);
    printf("malloc: 64 blocks, realloc to %zu bytes\n", size);

    /* anonymous mmap, mprotect, mremap, munmap */
    size_t len = 16 * 4096;
    unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("memory: mmap");
        return 1;
    }
    for (size_t i = 0; i < len; i++)
        m[i] = (unsigned char)(i * 7);
    unsigned char *r = mremap(m, len, 4 * len, MREMAP_MAYMOVE);
    if (r == MAP_FAILED) {
        perror("memory: mremap");
        return 1;
    }
    h = mix(h, r, len);
    int zero = 1;
    for (size_t i = len; i < 4 * len; i++)
        zero &= r[i] == 0;
    printf("mremap: grown region is %s\n", zero ? "zero-filled" : "NOT zero-filled");
    munmap(r, 4 * len);
    unsigned char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p + 4096, 4096, PROT_READ) != 0) {
        perror("memory: mmap/mprotect");
        return 1;
    }
    p[0] = 1;
    p[2 * 4096] = 2;
    printf("mprotect: %d %d %d\n", p[0], p[4096], p[2 * 4096]);
    munmap(p, 3 * 4096);

    /* private file mapping */
    char path[] = "/tmp/cabin-memory-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("memory: mkstemp");
        return 1;
    }
    unlink(path);
    char buf[8192];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)('a' + i % 26);
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) {
        perror("memory: write");
        return 1;
    }
    char *f = mmap(NULL, sizeof buf, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (f == MAP_FAILED) {
        perror("memory: mmap file");
        return 1;
    }
    f[0] = 'Z';
    char first = 0;
    if (pread(fd, &first, 1, 0) != 1) {
        perror("memory: pread");
        return 1;
    }
    printf("file mapping: mapped '%c%c%c', file still starts with '%c'\n", f[0], f[1], f[2], first);
    h = mix(h, (unsigned char *)f, sizeof buf);
    munmap(f, sizeof buf);
    close(fd);

    printf("checksum %016llx\n", (unsigned long long)h);
    return 0;
}
