/* Thread microbenchmarks (issue 13), one per variant (argument 4):
 *   create_join      pthread_create + pthread_join of a thread that returns at once
 *   futex_pingpong   two threads hand a token back and forth with FUTEX_WAIT/FUTEX_WAKE
 *                    (one op = one round trip: two wakes, two waits)
 *   mutex_uncontended  pthread_mutex_lock + unlock by one thread
 *   mutex_contended    two threads increment a counter under one mutex (ns per increment)
 * Usage: threads FILE DIR [ITERATIONS [VARIANT]] (FILE and DIR are ignored; no VARIANT: all) */
#include "micro.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *nothing(void *arg) { return arg; }

static void create_join(long n)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    for (long i = 0; i < n / 10 + 1; i++) { /* warm-up: the stack cache */
        pthread_t t;
        if (pthread_create(&t, &a, nothing, NULL) || pthread_join(t, NULL))
            micro_die("pthread_create");
    }
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, &a, nothing, NULL) || pthread_join(t, NULL))
            micro_die("pthread_create");
    }
    micro_report("create_join", t0, micro_now_ns(), n);
}

static uint32_t token; /* 0: ping's turn, 1: pong's turn */
static long rounds;

static void futex_wait(uint32_t *w, uint32_t v) { syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0); }
static void futex_wake(uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

static void *pong(void *arg)
{
    (void)arg;
    for (long i = 0; i < rounds; i++) {
        while (__atomic_load_n(&token, __ATOMIC_ACQUIRE) != 1)
            futex_wait(&token, 0);
        __atomic_store_n(&token, 0, __ATOMIC_RELEASE);
        futex_wake(&token);
    }
    return NULL;
}

static void futex_pingpong(long n)
{
    pthread_t t;
    rounds = n;
    if (pthread_create(&t, NULL, pong, NULL))
        micro_die("pthread_create");
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++) {
        __atomic_store_n(&token, 1, __ATOMIC_RELEASE);
        futex_wake(&token);
        while (__atomic_load_n(&token, __ATOMIC_ACQUIRE) != 0)
            futex_wait(&token, 1);
    }
    double t1 = micro_now_ns();
    pthread_join(t, NULL);
    micro_report("futex_pingpong", t0, t1, n);
}

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static volatile long counter;

static void mutex_uncontended(long n)
{
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&m);
        counter++;
        pthread_mutex_unlock(&m);
    }
    micro_report("mutex_uncontended", t0, micro_now_ns(), n);
}

static void *incr(void *arg)
{
    long n = (long)arg;
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&m);
        counter++;
        pthread_mutex_unlock(&m);
    }
    return NULL;
}

static void mutex_contended(long n)
{
    pthread_t t;
    double t0 = micro_now_ns();
    if (pthread_create(&t, NULL, incr, (void *)(n / 2)))
        micro_die("pthread_create");
    incr((void *)(n / 2));
    pthread_join(t, NULL);
    micro_report("mutex_contended", t0, micro_now_ns(), n);
}

int main(int argc, char **argv)
{
    long n = micro_iters(argc, argv, 3, 10000);
    const char *v = argc > 4 ? argv[4] : "all";
    int all = !strcmp(v, "all");
    if (all || !strcmp(v, "create_join"))
        create_join(n);
    if (all || !strcmp(v, "futex_pingpong"))
        futex_pingpong(n);
    if (all || !strcmp(v, "mutex_uncontended"))
        mutex_uncontended(n * 100);
    if (all || !strcmp(v, "mutex_contended"))
        mutex_contended(n * 10);
    return 0;
}
