/* Idle cost of blocked threads (docs/threads.md, "Waiting"): 8 threads block for SECONDS (3 in
 * pthread_cond_wait, 3 in a pipe read, 2 in sleep), then are released and joined. Measure with
 * `/usr/bin/time cabinc run -q --backend process IMAGE SECONDS` for two values of SECONDS.
 * Usage: threads_idle [SECONDS] (default 5) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static int secs;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int go, pfd[2];
static void *cv(void *a) { pthread_mutex_lock(&m); while (!go) pthread_cond_wait(&c, &m); pthread_mutex_unlock(&m); return a; }
static void *rd(void *a) { char x; read(pfd[0], &x, 1); return a; }
static void *sl(void *a) { sleep(secs); return a; }
int main(int argc, char **argv) {
    secs = argc > 1 ? atoi(argv[1]) : 5;
    pthread_t t[8]; pipe(pfd);
    for (int i = 0; i < 8; i++) pthread_create(&t[i], 0, i < 3 ? cv : i < 6 ? rd : sl, 0);
    sleep(secs);
    pthread_mutex_lock(&m); go = 1; pthread_cond_broadcast(&c); pthread_mutex_unlock(&m);
    write(pfd[1], "xxx", 3);
    for (int i = 0; i < 8; i++) pthread_join(t[i], 0);
    puts("done");
    return 0;
}
