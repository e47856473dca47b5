/* Sparse forwarded calls (issue 15): a program that computes between its system calls, as real
 * programs do. Each op is GAP microseconds of arithmetic followed by one forwarded call
 * (fcntl(2, F_GETFD), the cheapest call Cabin forwards); the line per gap is the time per op, so
 * confined/native shows what a call costs when the monitor has had time to go to sleep.
 *   sparse_0us, sparse_1us, sparse_10us, sparse_100us   "NAME: X ns/op"
 * The work loop is calibrated once at start (best of 7 timings, so a busy machine inflates it the
 * least) and is the same instruction stream in every run.
 * Usage: sparse [FILE DIR [ITERATIONS]] (FILE and DIR are ignored; ITERATIONS for the 1 us gap,
 * fewer for the longer ones) */
#include "micro.h"
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile unsigned long sink;

/* `k` rounds of a dependent multiply-add chain: no memory traffic, no calls. */
static void work(unsigned long k)
{
    unsigned long x = sink | 1;
    for (unsigned long i = 0; i < k; i++)
        x = x * 6364136223846793005ul + 1442695040888963407ul;
    sink = x;
}

int main(int argc, char **argv)
{
    long n = micro_iters(argc, argv, 3, 20000);
    /* Rounds per microsecond: the fastest of several timed runs. */
    unsigned long probe = 2000000;
    double best = 1e18;
    for (int r = 0; r < 7; r++) {
        double t0 = micro_now_ns();
        work(probe);
        double t1 = micro_now_ns();
        if (t1 - t0 < best)
            best = t1 - t0;
    }
    double per_us = (double)probe / (best / 1000.0);
    static const int gaps[] = {0, 1, 10, 100};
    for (unsigned g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
        int gap = gaps[g];
        unsigned long k = (unsigned long)(per_us * gap);
        long m = gap >= 100 ? n / 20 : gap >= 10 ? n / 4 : n;
        if (m < 10)
            m = 10;
        for (long i = 0; i < m / 10; i++) { /* warm-up */
            work(k);
            sink += syscall(SYS_fcntl, 2, F_GETFD);
        }
        double t0 = micro_now_ns();
        for (long i = 0; i < m; i++) {
            work(k);
            sink += syscall(SYS_fcntl, 2, F_GETFD);
        }
        double t1 = micro_now_ns();
        char name[32];
        snprintf(name, sizeof name, "sparse_%dus", gap);
        micro_report(name, t0, t1, m);
    }
    return 0;
}
