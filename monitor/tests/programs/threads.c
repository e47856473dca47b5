/* Threads, one case per argument (monitor/tests/threads.rs): each prints
 * a deterministic result and exits 0, or says what failed and exits 1.
 * Run natively and confined; output and status must be equal. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <limits.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c)                                                            \
    do {                                                                    \
        if (!(c)) {                                                         \
            printf("FAILED: %s (line %d, errno %d)\n", #c, __LINE__, errno); \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

/* Small stacks for the many-thread cases: 63 default 8 MiB stacks pass
 * the default 256 MiB memory bound of a confined run (every arena page
 * counts, mapped or not; lazily committed reservations are another part of
 * issue 13). */
static pthread_attr_t *attr;
static void start(pthread_t *t, void *(*f)(void *), void *arg) {
    int e = pthread_create(t, attr, f, arg);
    if (e != 0) {
        printf("pthread_create: %s\n", strerror(e));
        exit(1);
    }
}

/* mutex: 8 threads add 10000 each under a mutex. */
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static void *add(void *arg) {
    long n = (long)arg;
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&m);
        counter++;
        pthread_mutex_unlock(&m);
    }
    return NULL;
}
/* `threads` more threads, and main too: threads + 1 contending. */
static int t_mutex(int threads, long each) {
    pthread_t t[64];
    for (int i = 0; i < threads; i++) start(&t[i], add, (void *)each);
    add((void *)each);
    for (int i = 0; i < threads; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("counter %ld\n", counter);
    return counter == (threads + 1) * each ? 0 : 1;
}

/* condvar: a producer hands 1000 items to a consumer one at a time. */
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int slot = -1, done;
static void *consumer(void *arg) {
    long sum = 0;
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&m);
        while (slot < 0 && !done) pthread_cond_wait(&cv, &m);
        if (slot < 0 && done) {
            pthread_mutex_unlock(&m);
            break;
        }
        sum += slot;
        slot = -1;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&m);
    }
    return (void *)sum;
}
static int t_condvar(void) {
    pthread_t c;
    void *sum;
    start(&c, consumer, NULL);
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&m);
        while (slot >= 0) pthread_cond_wait(&cv, &m);
        slot = i;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&m);
    }
    pthread_mutex_lock(&m);
    while (slot >= 0) pthread_cond_wait(&cv, &m);
    done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&m);
    CHECK(pthread_join(c, &sum) == 0);
    printf("sum %ld\n", (long)sum);
    return 0;
}

/* rwlock: 4 readers and 2 writers; writers keep two values equal. */
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static long a_val, b_val, bad;
static void *writer(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        pthread_rwlock_wrlock(&rw);
        a_val++;
        b_val++;
        pthread_rwlock_unlock(&rw);
    }
    return NULL;
}
static void *reader(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        pthread_rwlock_rdlock(&rw);
        if (a_val != b_val) __atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
        pthread_rwlock_unlock(&rw);
    }
    return NULL;
}
static int t_rwlock(void) {
    pthread_t t[6];
    for (int i = 0; i < 6; i++) start(&t[i], i < 2 ? writer : reader, NULL);
    for (int i = 0; i < 6; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("a %ld b %ld torn %ld\n", a_val, b_val, bad);
    return bad == 0 ? 0 : 1;
}

/* barrier: 5 threads, 100 rounds; everyone sees every round complete. */
static pthread_barrier_t bar;
static int round_count[100];
static void *barrier_worker(void *arg) {
    (void)arg;
    for (int r = 0; r < 100; r++) {
        __atomic_add_fetch(&round_count[r], 1, __ATOMIC_SEQ_CST);
        pthread_barrier_wait(&bar);
        if (__atomic_load_n(&round_count[r], __ATOMIC_SEQ_CST) != 5) __atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
        pthread_barrier_wait(&bar);
    }
    return NULL;
}
static int t_barrier(void) {
    pthread_t t[4];
    CHECK(pthread_barrier_init(&bar, NULL, 5) == 0);
    for (int i = 0; i < 4; i++) start(&t[i], barrier_worker, NULL);
    barrier_worker(NULL);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("rounds 100 bad %ld\n", bad);
    return bad == 0 ? 0 : 1;
}

/* semaphores: a bounded buffer of 4 between 2 producers and 2 consumers. */
static sem_t empty, full;
static int buf[4], head, tail;
static long total;
static void *sem_producer(void *arg) {
    (void)arg;
    for (int i = 1; i <= 500; i++) {
        sem_wait(&empty);
        pthread_mutex_lock(&m);
        buf[tail++ % 4] = i;
        pthread_mutex_unlock(&m);
        sem_post(&full);
    }
    return NULL;
}
static void *sem_consumer(void *arg) {
    (void)arg;
    for (int i = 0; i < 500; i++) {
        sem_wait(&full);
        pthread_mutex_lock(&m);
        total += buf[head++ % 4];
        pthread_mutex_unlock(&m);
        sem_post(&empty);
    }
    return NULL;
}
static int t_sem(void) {
    pthread_t t[4];
    CHECK(sem_init(&empty, 0, 4) == 0 && sem_init(&full, 0, 0) == 0);
    for (int i = 0; i < 4; i++) start(&t[i], i < 2 ? sem_producer : sem_consumer, NULL);
    for (int i = 0; i < 4; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("total %ld\n", total);
    return total == 2 * 500 * 501 / 2 ? 0 : 1;
}

/* TLS: __thread and pthread_key with a destructor. */
static __thread long tls_val = 7;
static pthread_key_t key;
static long destructed;
static void destructor(void *v) { __atomic_add_fetch(&destructed, (long)v, __ATOMIC_SEQ_CST); }
static void *tls_worker(void *arg) {
    long id = (long)arg;
    CHECK(tls_val == 7);
    tls_val = id * 100;
    CHECK(pthread_setspecific(key, (void *)id) == 0);
    sched_yield();
    CHECK(tls_val == id * 100 && (long)pthread_getspecific(key) == id);
    return (void *)(tls_val + (long)pthread_getspecific(key));
}
static int t_tls(void) {
    pthread_t t[4];
    long sum = 0;
    CHECK(pthread_key_create(&key, destructor) == 0);
    for (long i = 0; i < 4; i++) start(&t[i], tls_worker, (void *)(i + 1));
    for (int i = 0; i < 4; i++) {
        void *r;
        CHECK(pthread_join(t[i], &r) == 0);
        sum += (long)r;
    }
    printf("main tls %ld sum %ld destructed %ld\n", tls_val, sum, destructed);
    return 0;
}

/* cancellation (deferred): a thread polling pthread_testcancel is
 * cancelled. (Cancelling a thread blocked in a cancellation point needs
 * SIGCANCEL delivered to it: the signals part of issue 13.) */
static volatile int cleaned;
static void cleanup(void *arg) { (void)arg; cleaned = 1; }
static void *cancel_worker(void *arg) {
    (void)arg;
    pthread_cleanup_push(cleanup, NULL);
    for (;;) {
        pthread_testcancel();
        sched_yield();
    }
    pthread_cleanup_pop(0);
    return NULL;
}
static int t_cancel(void) {
    pthread_t t;
    void *r;
    start(&t, cancel_worker, NULL);
    usleep(5000);
    CHECK(pthread_cancel(t) == 0);
    CHECK(pthread_join(t, &r) == 0);
    printf("canceled %d cleaned %d\n", r == PTHREAD_CANCELED, cleaned);
    return 0;
}

/* robust mutex: the owner exits holding it; the next locker gets EOWNERDEAD. */
static pthread_mutex_t robust;
static void *die_holding(void *arg) {
    (void)arg;
    CHECK(pthread_mutex_lock(&robust) == 0);
    return NULL; /* exits holding the lock */
}
static int t_robust(void) {
    pthread_mutexattr_t a;
    pthread_t t;
    CHECK(pthread_mutexattr_init(&a) == 0);
    CHECK(pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0);
    CHECK(pthread_mutex_init(&robust, &a) == 0);
    start(&t, die_holding, NULL);
    CHECK(pthread_join(t, NULL) == 0);
    int e = pthread_mutex_lock(&robust);
    printf("lock after owner died: %s\n", e == EOWNERDEAD ? "EOWNERDEAD" : strerror(e));
    CHECK(pthread_mutex_consistent(&robust) == 0);
    CHECK(pthread_mutex_unlock(&robust) == 0);
    CHECK(pthread_mutex_lock(&robust) == 0);
    CHECK(pthread_mutex_unlock(&robust) == 0);
    printf("consistent again\n");
    return e == EOWNERDEAD ? 0 : 1;
}

/* detach/join: detached threads finish (counted), joined ones return values. */
static long detached_done;
static void *detached(void *arg) {
    (void)arg;
    __atomic_add_fetch(&detached_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static void *twice(void *arg) { return (void *)((long)arg * 2); }
static int t_detach(void) {
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        start(&t, detached, NULL);
        CHECK(pthread_detach(t) == 0);
    }
    long sum = 0;
    for (long i = 0; i < 50; i++) {
        pthread_t t;
        void *r;
        start(&t, twice, (void *)i);
        CHECK(pthread_join(t, &r) == 0);
        sum += (long)r;
    }
    while (__atomic_load_n(&detached_done, __ATOMIC_SEQ_CST) < 20) usleep(1000);
    printf("joined sum %ld detached %ld\n", sum, detached_done);
    return 0;
}

/* A thread blocked reading a pipe does not stall the others; another
 * thread exits meanwhile; then the pipe is written and the reader wakes. */
static int pfd[2];
static void *pipe_reader(void *arg) {
    char c = 0;
    (void)arg;
    ssize_t n = read(pfd[0], &c, 1);
    return (void *)(long)(n == 1 ? c : -1);
}
static void *short_lived(void *arg) {
    (void)arg;
    pthread_exit((void *)42);
}
static int t_pipe(void) {
    pthread_t r, s;
    void *v;
    CHECK(pipe(pfd) == 0);
    start(&r, pipe_reader, NULL);
    usleep(10000);
    /* The reader is blocked in read: these must still be served. */
    start(&s, short_lived, NULL);
    CHECK(pthread_join(s, &v) == 0);
    char path[64];
    CHECK(getcwd(path, sizeof path) != NULL || errno == ERANGE);
    printf("exited %ld while reader blocked\n", (long)v);
    CHECK(write(pfd[1], "x", 1) == 1);
    CHECK(pthread_join(r, &v) == 0);
    printf("reader got %c\n", (char)(long)v);
    return 0;
}

/* Identity: gettid differs per thread, getpid does not; tgkill only to own. */
static void *ids(void *arg) {
    long *out = arg;
    out[0] = syscall(SYS_gettid);
    out[1] = getpid();
    return NULL;
}
static int t_ids(void) {
    pthread_t t;
    long o[2];
    start(&t, ids, o);
    CHECK(pthread_join(t, NULL) == 0);
    long me = syscall(SYS_gettid);
    printf("main tid is pid %d, thread tid differs %d, same pid %d\n", me == getpid(), o[0] != me && o[0] > 0,
           o[1] == getpid());
    CHECK(syscall(SYS_tgkill, getpid(), me, 0) == 0);
    errno = 0;
    long r = syscall(SYS_tgkill, getpid(), 1, 0);
    printf("tgkill to a stranger: %ld %s\n", r, r == -1 && errno == ESRCH ? "ESRCH" : "?");
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    printf("affinity has cpus %d\n", CPU_COUNT(&set) > 0);
    CHECK(sched_yield() == 0);
    return 0;
}

/* futexops: the futex operations beyond WAIT/WAKE, on raw words (the
 * libos's fast path must keep them right, docs/threads.md "Futex fast
 * path"): CMP_REQUEUE moves three sleepers from A to B and a WAKE of B
 * (a word nobody waited on directly) must wake them all; WAKE_OP sets B2
 * and wakes its sleeper; WAKE_BITSET wakes a WAIT_BITSET sleeper. */
static long fx(uint32_t *w, int op, uint32_t val, void *t, uint32_t *w2, uint32_t v3) {
    return syscall(SYS_futex, w, op, val, t, w2, v3);
}
static uint32_t rq_a, rq_b, rq_go, rq_done;
static void *rq_waiter(void *arg) {
    (void)arg;
    while (__atomic_load_n(&rq_go, __ATOMIC_ACQUIRE) == 0)
        fx(&rq_a, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    __atomic_add_fetch(&rq_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static uint32_t op_b;
static void *op_waiter(void *arg) {
    (void)arg;
    while (__atomic_load_n(&op_b, __ATOMIC_ACQUIRE) == 0)
        fx(&op_b, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    return NULL;
}
static uint32_t bs_c;
static void *bs_waiter(void *arg) {
    (void)arg;
    while (__atomic_load_n(&bs_c, __ATOMIC_ACQUIRE) == 0)
        fx(&bs_c, FUTEX_WAIT_BITSET_PRIVATE, 0, NULL, NULL, 2);
    return NULL;
}
static void pause_ms(long ms) {
    struct timespec d = {0, ms * 1000000};
    nanosleep(&d, NULL);
}
static int t_futexops(void) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++) start(&t[i], rq_waiter, NULL);
    /* A sleeper is requeued once (it then sleeps on B until woken); one
     * still on its way into the wait is not counted: try again. */
    long moved = 0;
    for (int tries = 0; moved < 3 && tries < 5000; tries++) {
        long r = fx(&rq_a, FUTEX_CMP_REQUEUE_PRIVATE, 0, (void *)(long)INT_MAX, &rq_b, 0);
        CHECK(r >= 0);
        moved += r;
        if (moved < 3) pause_ms(1);
    }
    printf("requeued %ld\n", moved);
    __atomic_store_n(&rq_go, 1, __ATOMIC_RELEASE);
    long woke = fx(&rq_b, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    printf("woke from B %ld\n", woke);
    for (int i = 0; i < 3; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("requeue done %u\n", rq_done);

    static uint32_t op_a;
    start(&t[0], op_waiter, NULL);
    pause_ms(5);
    CHECK(fx(&op_a, FUTEX_WAKE_OP_PRIVATE, 0, (void *)1L, &op_b,
             FUTEX_OP(FUTEX_OP_SET, 1, FUTEX_OP_CMP_EQ, 0)) >= 0);
    CHECK(pthread_join(t[0], NULL) == 0);
    printf("wake_op set %u\n", op_b);

    start(&t[0], bs_waiter, NULL);
    pause_ms(5);
    CHECK(fx(&bs_c, FUTEX_WAKE_BITSET_PRIVATE, 1, NULL, NULL, 1) >= 0); /* not its bit */
    __atomic_store_n(&bs_c, 1, __ATOMIC_RELEASE);
    CHECK(fx(&bs_c, FUTEX_WAKE_BITSET_PRIVATE, 1, NULL, NULL, 2) >= 0);
    CHECK(pthread_join(t[0], NULL) == 0);
    printf("bitset done\n");
    return 0;
}

/* futexstress: a lost wake-up hangs this case (the test then fails on
 * its time-out). Four threads pass a turn around a ring on one raw futex
 * word (each waits for its number, then hands on and wakes all), and two
 * more ping-pong on a second word; every 16th hand-off first waits longer
 * than the libos's spin window, so that hand-offs find the next thread
 * both spinning and asleep. */
#define STRESS_ROUNDS 600
static uint32_t turn, pp;
static void busy_us(long us) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < us);
}
static void *ring_worker(void *arg) {
    uint32_t me = (uint32_t)(long)arg;
    for (int r = 0; r < STRESS_ROUNDS; r++) {
        uint32_t v;
        while ((v = __atomic_load_n(&turn, __ATOMIC_ACQUIRE)) != me)
            fx(&turn, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
        if (r % 16 == 5) busy_us(150);
        __atomic_store_n(&turn, (me + 1) % 4, __ATOMIC_RELEASE);
        fx(&turn, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    }
    return NULL;
}
static void *pp_worker(void *arg) {
    uint32_t me = (uint32_t)(long)arg;
    for (int r = 0; r < 4 * STRESS_ROUNDS; r++) {
        while (__atomic_load_n(&pp, __ATOMIC_ACQUIRE) != me)
            fx(&pp, FUTEX_WAIT_PRIVATE, 1 - me, NULL, NULL, 0);
        if (r % 16 == 9) busy_us(120);
        __atomic_store_n(&pp, 1 - me, __ATOMIC_RELEASE);
        fx(&pp, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    return NULL;
}
static int t_futexstress(void) {
    pthread_t t[6];
    for (long i = 0; i < 4; i++) start(&t[i], ring_worker, (void *)i);
    for (long i = 0; i < 2; i++) start(&t[4 + i], pp_worker, (void *)i);
    for (int i = 0; i < 6; i++) CHECK(pthread_join(t[i], NULL) == 0);
    printf("futexstress: turn %u pp %u\n", turn, pp);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *t = argc > 1 ? argv[1] : "mutex";
    if (!strcmp(t, "mutex")) return t_mutex(7, 10000);
    static pthread_attr_t small;
    pthread_attr_init(&small);
    pthread_attr_setstacksize(&small, 256 * 1024);
    if (!strcmp(t, "contend64")) {
        attr = &small;
        return t_mutex(63, 2000);
    }
    if (!strcmp(t, "condvar")) return t_condvar();
    if (!strcmp(t, "rwlock")) return t_rwlock();
    if (!strcmp(t, "barrier")) return t_barrier();
    if (!strcmp(t, "sem")) return t_sem();
    if (!strcmp(t, "tls")) return t_tls();
    if (!strcmp(t, "cancel")) return t_cancel();
    if (!strcmp(t, "robust")) return t_robust();
    if (!strcmp(t, "detach")) return t_detach();
    if (!strcmp(t, "pipe")) return t_pipe();
    if (!strcmp(t, "ids")) return t_ids();
    if (!strcmp(t, "futexops")) return t_futexops();
    if (!strcmp(t, "futexstress")) return t_futexstress();
    printf("unknown case %s\n", t);
    return 2;
}
