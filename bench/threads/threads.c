/* Thread benchmarks (bench/threads/run.sh): `create N` times N
 * pthread_create + pthread_join of an empty thread; `pingpong N` times N
 * round trips between two threads handing a futex word back and forth
 * (FUTEX_WAIT / FUTEX_WAKE, private). Prints nanoseconds per operation,
 * measured inside the program (CLOCK_MONOTONIC), so start-up is not counted. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *empty(void *a) { return a; }

static _Atomic int turn; /* 0: ping's turn, 1: pong's */
static long rounds;

static void fwait(_Atomic int *w, int v) { syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0); }
static void fwake(_Atomic int *w) { syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

static void *pong(void *a) {
    for (long i = 0; i < rounds; i++) {
        while (atomic_load(&turn) != 1)
            fwait(&turn, 0);
        atomic_store(&turn, 0);
        fwake(&turn);
    }
    return a;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    long n = atol(argv[2]);
    long long t0 = now_ns();
    if (!strcmp(argv[1], "create")) {
        for (long i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, empty, NULL) || pthread_join(t, NULL))
                return 1;
        }
    } else if (!strcmp(argv[1], "pingpong")) {
        rounds = n;
        pthread_t t;
        if (pthread_create(&t, NULL, pong, NULL))
            return 1;
        t0 = now_ns();
        for (long i = 0; i < n; i++) {
            atomic_store(&turn, 1);
            fwake(&turn);
            while (atomic_load(&turn) != 0)
                fwait(&turn, 1);
        }
        pthread_join(t, NULL);
    } else {
        return 2;
    }
    printf("%s %.0f ns/op\n", argv[1], (double)(now_ns() - t0) / n);
    return 0;
}
