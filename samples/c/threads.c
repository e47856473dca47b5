/* threads: several pthreads make system calls concurrently (getpid,
 * write to /dev/null, nanosleep) and update shared counters under a mutex;
 * the main thread joins them and prints the totals. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4
#define ROUNDS 20000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long calls, bytes;
static __thread unsigned long long mine; /* exercises TLS */

static void *worker(void *arg)
{
    long id = (long)arg;
    int fd = open("/dev/null", O_WRONLY);
    pid_t pid = getpid();
    for (int i = 0; i < ROUNDS; i++) {
        if (getpid() == pid)
            mine++;
        if (i % 100 == 0) {
            ssize_t w = write(fd, "cabin", 5);
            struct timespec ts = {0, 1000};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&lock);
            bytes += w > 0 ? (unsigned long long)w : 0;
            pthread_mutex_unlock(&lock);
        }
    }
    close(fd);
    pthread_mutex_lock(&lock);
    calls += mine;
    pthread_mutex_unlock(&lock);
    return (void *)(id * 2);
}

int main(void)
{
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) {
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) {
            fprintf(stderr, "threads: pthread_create failed\n");
            return 1;
        }
    }
    long sum = 0;
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        sum += (long)ret;
    }
    printf("threads=%d calls=%llu bytes=%llu joined_sum=%ld main_tls=%llu\n", THREADS, calls, bytes, sum, mine);
    return 0;
}
