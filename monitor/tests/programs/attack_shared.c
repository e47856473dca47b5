/* Hostile shared mappings (monitor/tests/attacks/shared.rs).
 *
 *   attack_shared outside FILE    map a file outside the allowed trees
 *   attack_shared readonly FILE   a read-only file mapped shared and writable
 *   attack_shared over DIR        MAP_FIXED shared file mappings over the
 *                                 program's code, the libos, the stack
 *   attack_shared many DIR        more writable shared mappings than the table
 *   attack_shared dups DIR        closes and replaces the libos's duplicates
 *   attack_shared ranges DIR      msync/munmap/mremap with hostile ranges
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096UL

static const char *err(int failed) {
    static char b[64];
    if (!failed)
        return "ok";
    snprintf(b, sizeof b, "errno %d", errno);
    return b;
}

static int file(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_RDWR | O_CREAT, 0644);
    ftruncate(fd, 4 * PG);
    return fd;
}

int main(int argc, char **argv) {
    setvbuf(stdout, 0, _IONBF, 0);
    if (argc < 3)
        return 2;
    const char *m = argv[1];
    if (!strcmp(m, "outside")) {
        int fd = open(argv[2], O_RDWR);
        printf("open: %s\n", err(fd < 0));
        void *p = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        printf("mmap: %s\n", err(p == MAP_FAILED));
    } else if (!strcmp(m, "readonly")) {
        int fd = open(argv[2], O_RDONLY);
        printf("open: %s\n", err(fd < 0));
        void *p = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        printf("mmap shared writable: %s\n", err(p == MAP_FAILED));
        p = mmap(0, PG, PROT_WRITE, MAP_SHARED_VALIDATE, fd, 0);
        printf("mmap shared validate writable: %s\n", err(p == MAP_FAILED));
    } else if (!strcmp(m, "over")) {
        int fd = file(argv[2], "over.dat");
        int local = 0;
        uintptr_t targets[] = {(uintptr_t)main & ~(PG - 1), (uintptr_t)&local & ~(PG - 1), (uintptr_t)err & ~(PG - 1), 0x10000, 0x7fffffffe000};
        for (unsigned i = 0; i < sizeof targets / sizeof targets[0]; i++) {
            void *p = mmap((void *)targets[i], PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
            printf("fixed over target %u: %s\n", i, err(p == MAP_FAILED));
        }
        printf("still running\n");
    } else if (!strcmp(m, "many")) {
        int fd = file(argv[2], "many.dat");
        void *maps[100];
        int n = 0;
        for (; n < 100; n++) {
            maps[n] = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (maps[n] == MAP_FAILED) {
                printf("mapping %d: %s\n", n, err(1));
                break;
            }
        }
        for (int i = 0; i < n; i++)
            munmap(maps[i], PG);
        void *p = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        printf("after unmapping them all: %s\n", err(p == MAP_FAILED));
        int again = open("/dev/null", O_RDONLY);
        printf("descriptors left: next is %d\n", again);
    } else if (!strcmp(m, "dups")) {
        int fd = file(argv[2], "dups.dat");
        int other = file(argv[2], "other.dat");
        char *p = mmap(0, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        for (int i = 3; i < 1024; i++)
            if (i != fd && i != other && i != 1)
                close(i);
        for (int i = 500; i < 1024; i++)
            dup2(other, i);
        strcpy(p, "to wherever");
        printf("msync: %s\n", err(msync(p, PG, MS_SYNC) != 0));
        printf("munmap: %s\n", err(munmap(p, PG) != 0));
        printf("still running\n");
    } else if (!strcmp(m, "ranges")) {
        int fd = file(argv[2], "ranges.dat");
        char *p = mmap(0, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        printf("msync huge: %s\n", err(msync(p, ~0UL - (uintptr_t)p, MS_SYNC) != 0));
        printf("msync from 0: %s\n", err(msync(0, ~0UL & ~(PG - 1), MS_SYNC) != 0));
        printf("munmap huge: %s\n", err(munmap(p, ~0UL - (uintptr_t)p) != 0));
        printf("mremap: %s\n", err(mremap(p, 2 * PG, 4 * PG, MREMAP_MAYMOVE) == MAP_FAILED));
        printf("munmap the middle: %s\n", err(munmap(p + PG, PG) != 0));
        printf("munmap all: %s\n", err(munmap(p, 2 * PG) != 0));
        printf("still running\n");
    }
    return 0;
}
