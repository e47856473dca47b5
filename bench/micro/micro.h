/* Shared helpers of Cabin's syscall microbenchmarks: a monotonic clock, argument parsing and the
 * one output line every benchmark prints, "NAME: X ns/op", which the catalog manifests read.
 * Every benchmark takes the same arguments, PROG FILE DIR [ITERATIONS]: FILE an input to read,
 * DIR a directory to write in; each uses what it needs. */
#ifndef CABIN_MICRO_H
#define CABIN_MICRO_H
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double micro_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline long micro_iters(int argc, char **argv, int index, long fallback)
{
    if (argc > index) {
        long n = strtol(argv[index], NULL, 10);
        if (n > 0)
            return n;
    }
    return fallback;
}

static inline void micro_report(const char *name, double start_ns, double end_ns, long iters)
{
    printf("%s: %.1f ns/op (%ld ops)\n", name, (end_ns - start_ns) / (double)iters, iters);
}

static inline void micro_die(const char *what)
{
    perror(what);
    exit(1);
}
#endif
