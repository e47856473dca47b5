/* Wall and monotonic clock reads agree with the host's and never go back:
 * prints CLOCK_REALTIME at its start and end (tests/clocks.rs checks both
 * lie within the test's own reads around the run), then checks itself:
 * - two threads read CLOCK_MONOTONIC, MONOTONIC_RAW and BOOTTIME in turn,
 *   each read compared with the highest value any thread saw before it
 *   (a read that comes after another in real time must not be lower);
 * - gettimeofday and time fall between two CLOCK_REALTIME reads;
 * - over a 60 ms sleep and the whole run, MONOTONIC, BOOTTIME, RAW and
 *   REALTIME advance alike (within 1 ms + 0.1 %, plus the time each read
 *   of the other clock took between two monotonic reads: a preemption
 *   between two reads on a loaded machine made a 7 ms gap once);
 * and prints the cost of a read (information only, never checked).
 * Exits 1 with FAIL lines when something is off. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

static int64_t ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static const clockid_t mono[3] = {CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_BOOTTIME};
static _Atomic int64_t seen[3];
static _Atomic int failures;

static void *reader(void *arg) {
    (void)arg;
    int64_t until = ns(CLOCK_MONOTONIC) + 150000000;
    long n = 0;
    while (ns(CLOCK_MONOTONIC) < until) {
        for (int k = 0; k < 3; k++) {
            int64_t before = atomic_load(&seen[k]);
            int64_t t = ns(mono[k]);
            if (t < before) {
                if (atomic_fetch_add(&failures, 1) < 5)
                    printf("FAIL clock %d went back: %lld after %lld\n", (int)mono[k], (long long)t,
                           (long long)before);
            }
            int64_t cur = atomic_load(&seen[k]);
            while (cur < t && !atomic_compare_exchange_weak(&seen[k], &cur, t))
                ;
        }
        n++;
    }
    return (void *)n;
}

/* A read of clock c bracketed by two monotonic reads: on a loaded machine
 * the thread may be preempted between two reads, so a comparison allows for
 * however long the bracket took. */
struct sample {
    int64_t lo, v, hi;
};

static struct sample sample(clockid_t c) {
    struct sample p;
    p.lo = ns(CLOCK_MONOTONIC);
    p.v = ns(c);
    p.hi = ns(CLOCK_MONOTONIC);
    return p;
}

/* The time clock c advanced from a to b against the monotonic time between
 * the two reads (which lies within the brackets): 1 ms + 0.1 % apart at most. */
static void alike_between(const char *what, struct sample a, struct sample b) {
    int64_t d = b.v - a.v, lo = b.lo - a.hi, hi = b.hi - a.lo;
    int64_t tol = 1000000 + (hi > 0 ? hi : -hi) / 1000;
    if (d < lo - tol || d > hi + tol) {
        printf("FAIL %s: %lld vs %lld..%lld ns\n", what, (long long)d, (long long)lo, (long long)hi);
        failures++;
    }
}

int main(void) {
    struct sample r0s = sample(CLOCK_REALTIME), b0 = sample(CLOCK_BOOTTIME), w0 = sample(CLOCK_MONOTONIC_RAW);
    int64_t r0 = r0s.v;
    printf("start %lld\n", (long long)r0);

    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], 0, reader, 0);
    long reads = 0;
    for (int i = 0; i < 2; i++) {
        void *n;
        pthread_join(t[i], &n);
        reads += (long)n;
    }

    for (int i = 0; i < 1000; i++) {
        int64_t a = ns(CLOCK_REALTIME);
        struct timeval tv;
        gettimeofday(&tv, 0);
        time_t s = time(0);
        int64_t c = ns(CLOCK_REALTIME);
        int64_t g = (int64_t)tv.tv_sec * 1000000000 + tv.tv_usec * 1000;
        if (g < a - 999 || g > c || s < a / 1000000000 || s > c / 1000000000) {
            printf("FAIL gettimeofday %lld / time %lld outside [%lld, %lld]\n", (long long)g, (long long)s,
                   (long long)a, (long long)c);
            failures++;
            break;
        }
    }

    struct sample s0 = sample(CLOCK_REALTIME);
    struct timespec d = {0, 60000000};
    nanosleep(&d, 0);
    struct sample s1 = sample(CLOCK_REALTIME);
    int64_t slept = s1.lo - s0.hi;
    if (slept < 60000000)
        printf("FAIL slept %lld ns on the monotonic clock for 60 ms\n", (long long)slept), failures++;
    alike_between("a sleep, realtime vs monotonic", s0, s1);

    int64_t t0 = ns(CLOCK_MONOTONIC);
    for (int i = 0; i < 200000; i++)
        ns(CLOCK_MONOTONIC);
    int64_t cost = (ns(CLOCK_MONOTONIC) - t0) / 200000;

    struct sample r1s = sample(CLOCK_REALTIME), b1 = sample(CLOCK_BOOTTIME), w1 = sample(CLOCK_MONOTONIC_RAW);
    int64_t r1 = r1s.v;
    alike_between("the run, boottime vs monotonic", b0, b1);
    alike_between("the run, raw vs monotonic", w0, w1);
    alike_between("the run, realtime vs monotonic", r0s, r1s);
    printf("%ld monotonic reads by two threads; a read costs about %lld ns\n", reads, (long long)cost);
    printf("end %lld\n", (long long)r1);
    printf("failures %d\n", failures);
    return failures != 0;
}
