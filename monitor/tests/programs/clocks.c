/* Wall and monotonic clock reads agree with the host's and never go back:
 * prints CLOCK_REALTIME at its start and end (tests/clocks.rs checks both
 * lie within the test's own reads around the run), then checks itself:
 * - two threads read CLOCK_MONOTONIC, MONOTONIC_RAW and BOOTTIME in turn,
 *   each read compared with the highest value any thread saw before it
 *   (a read that comes after another in real time must not be lower);
 * - gettimeofday and time fall between two CLOCK_REALTIME reads;
 * - over a 60 ms sleep and the whole run, MONOTONIC, BOOTTIME, RAW and
 *   REALTIME advance alike (within 1 ms + 0.1 %);
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

static void alike(const char *what, int64_t a, int64_t b) {
    int64_t d = a > b ? a - b : b - a;
    if (d > 1000000 + (a > 0 ? a : -a) / 1000) {
        printf("FAIL %s: %lld vs %lld ns\n", what, (long long)a, (long long)b);
        failures++;
    }
}

int main(void) {
    int64_t r0 = ns(CLOCK_REALTIME), m0 = ns(CLOCK_MONOTONIC), b0 = ns(CLOCK_BOOTTIME), w0 = ns(CLOCK_MONOTONIC_RAW);
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

    int64_t sm = ns(CLOCK_MONOTONIC), sr = ns(CLOCK_REALTIME);
    struct timespec d = {0, 60000000};
    nanosleep(&d, 0);
    int64_t slept = ns(CLOCK_MONOTONIC) - sm, slept_real = ns(CLOCK_REALTIME) - sr;
    if (slept < 60000000)
        printf("FAIL slept %lld ns on the monotonic clock for 60 ms\n", (long long)slept), failures++;
    alike("a sleep, monotonic vs realtime", slept, slept_real);

    int64_t t0 = ns(CLOCK_MONOTONIC);
    for (int i = 0; i < 200000; i++)
        ns(CLOCK_MONOTONIC);
    int64_t cost = (ns(CLOCK_MONOTONIC) - t0) / 200000;

    int64_t dm = ns(CLOCK_MONOTONIC) - m0, db = ns(CLOCK_BOOTTIME) - b0, dw = ns(CLOCK_MONOTONIC_RAW) - w0;
    int64_t r1 = ns(CLOCK_REALTIME);
    alike("the run, monotonic vs boottime", dm, db);
    alike("the run, monotonic vs raw", dm, dw);
    alike("the run, monotonic vs realtime", dm, r1 - r0);
    printf("%ld monotonic reads by two threads; a read costs about %lld ns\n", reads, (long long)cost);
    printf("end %lld\n", (long long)r1);
    printf("failures %d\n", failures);
    return failures != 0;
}
