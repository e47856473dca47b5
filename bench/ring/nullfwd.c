/* Null *forwarded* system call: fcntl(1, F_GETFD) in a loop. Confined, the
 * libos sends it over the ring and the monitor answers from its fd table
 * without a host system call, so the time is the ring round trip itself.
 * Natively it is one cheap kernel entry.
 * Usage: nullfwd [ITERATIONS] (default 200000); prints "fcntl_getfd: X ns/op". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
    long sink = 0;
    for (long i = 0; i < n / 10; i++)
        sink += syscall(SYS_fcntl, 1, F_GETFD); /* warm-up */
    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        sink += syscall(SYS_fcntl, 1, F_GETFD);
    double t1 = now_ns();
    if (sink == -12345)
        return 2;
    printf("fcntl_getfd: %.1f ns/op (%ld ops)\n", (t1 - t0) / (double)n, n);
    return 0;
}
