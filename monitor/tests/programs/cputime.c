/* A CPU-bound program that reads its own CPU time every few microseconds
 * of work (as a benchmark timing itself with clock() does) and checks that
 * every way of reading it agrees: clock(), CLOCK_PROCESS_CPUTIME_ID,
 * CLOCK_THREAD_CPUTIME_ID, the clock of clock_getcpuclockid(0),
 * getrusage(RUSAGE_SELF / RUSAGE_THREAD) and times(), and that none exceeds
 * the wall time (one thread runs: its CPU time cannot). Then a second
 * thread burns CPU, and the process's clock must count it. tests/cputime.rs
 * runs it natively and confined on both backends; it prints what it
 * measured and exits 1 with a FAIL line when something is off.
 *
 * The margins are generous (5 % between clocks, ticks for times()) and no
 * check depends on how fast the machine is or how loaded: CPU time is
 * compared with CPU time, and with wall time only as an upper bound. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <time.h>
#include <unistd.h>

static double ts(clockid_t c) {
    struct timespec t;
    if (clock_gettime(c, &t) != 0)
        return -1;
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double tv(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

static double usage(int who) {
    struct rusage r;
    if (getrusage(who, &r) != 0)
        return -1;
    return tv(r.ru_utime) + tv(r.ru_stime);
}

static double ticks(void) {
    struct tms t;
    times(&t);
    return (double)(t.tms_utime + t.tms_stime) / sysconf(_SC_CLK_TCK);
}

static volatile unsigned long sink;

/* About 6 µs of arithmetic. */
static void work(void) {
    unsigned long x = sink;
    for (int i = 0; i < 4000; i++)
        x = x * 6364136223846793005ul + 1442695040888963407ul;
    sink = x;
}

static int failures;

static void check(const char *what, double v, double ref, double slack) {
    double d = v - ref;
    if (d < 0)
        d = -d;
    if (v <= 0 || d > 0.05 * ref + slack) {
        printf("FAIL %s %.6f vs %.6f\n", what, v, ref);
        failures++;
    }
}

static void at_most(const char *what, double v, double wall, double slack) {
    if (v > wall * 1.03 + slack) {
        printf("FAIL %s %.6f exceeds the wall time %.6f\n", what, v, wall);
        failures++;
    }
}

static double thread_cpu;

static void *burner(void *arg) {
    (void)arg;
    double w0 = ts(CLOCK_MONOTONIC), c0 = ts(CLOCK_THREAD_CPUTIME_ID);
    while (ts(CLOCK_MONOTONIC) - w0 < 0.1)
        work();
    thread_cpu = ts(CLOCK_THREAD_CPUTIME_ID) - c0;
    return 0;
}

int main(void) {
    clockid_t own;
    if (clock_getcpuclockid(0, &own) != 0) {
        printf("FAIL clock_getcpuclockid\n");
        return 1;
    }
    double w0 = ts(CLOCK_MONOTONIC);
    clock_t k0 = clock();
    double p0 = ts(CLOCK_PROCESS_CPUTIME_ID), t0 = ts(CLOCK_THREAD_CPUTIME_ID), o0 = ts(own);
    double r0 = usage(RUSAGE_SELF), rt0 = usage(RUSAGE_THREAD), m0 = ticks();
    long reads = 0;
    clock_t last = k0;
    while (ts(CLOCK_MONOTONIC) - w0 < 0.3) {
        work();
        last = clock();
        reads++;
    }
    double wall = ts(CLOCK_MONOTONIC) - w0;
    double p = ts(CLOCK_PROCESS_CPUTIME_ID) - p0, t = ts(CLOCK_THREAD_CPUTIME_ID) - t0, o = ts(own) - o0;
    double k = (double)(last - k0) / CLOCKS_PER_SEC;
    double r = usage(RUSAGE_SELF) - r0, rt = usage(RUSAGE_THREAD) - rt0, m = ticks() - m0;
    printf("wall %.3f s, %ld clock() reads\n", wall, reads);
    printf("cpu/wall: process %.3f thread %.3f clock %.3f own %.3f rusage %.3f rusage-thread %.3f times %.3f\n",
           p / wall, t / wall, k / wall, o / wall, r / wall, rt / wall, m / wall);
    at_most("CLOCK_PROCESS_CPUTIME_ID", p, wall, 0.002);
    at_most("clock()", k, wall, 0.002);
    at_most("getrusage(RUSAGE_SELF)", r, wall, 0.002);
    at_most("times()", m, wall, 0.021);
    if (p < 0.02 * wall) {
        printf("FAIL the process's CPU time %.6f is next to nothing\n", p);
        failures++;
    }
    check("CLOCK_THREAD_CPUTIME_ID", t, p, 0.002);
    check("clock()", k, p, 0.002);
    check("clock_getcpuclockid(0)", o, p, 0.002);
    check("getrusage(RUSAGE_SELF)", r, p, 0.002);
    check("getrusage(RUSAGE_THREAD)", rt, p, 0.002);
    check("times()", m, p, 0.021);

    double before = ts(CLOCK_PROCESS_CPUTIME_ID);
    pthread_t th;
    if (pthread_create(&th, 0, burner, 0) != 0 || pthread_join(th, 0) != 0) {
        printf("FAIL pthread\n");
        return 1;
    }
    double grew = ts(CLOCK_PROCESS_CPUTIME_ID) - before;
    printf("second thread: its own %.3f s, the process's grew %.3f s\n", thread_cpu, grew);
    if (thread_cpu <= 0 || grew < thread_cpu * 0.95 - 0.002) {
        printf("FAIL the process's clock misses the second thread's time\n");
        failures++;
    }
    printf("failures %d\n", failures);
    return failures != 0;
}
