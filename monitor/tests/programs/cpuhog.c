/* cpuhog MODE ...: spreads CPU time over the images, processes and
 * threads of a tree so that no one of them reaches the run's `[limits]
 * cpu-time` while all together pass it (docs/policy.md, "cpu-time"). Every
 * spin is measured by the spinner's own CPU clock, not by a count of
 * iterations, so the CPU it uses is the same on a fast or slow, busy or
 * quiet machine.
 *
 *   chain K MS PATH   spin MS ms, say "image K", then exec PATH chain K-1
 *                     (the last image says "survived")
 *   fork K MS         K children spin MS ms each (at once), the root waits
 *                     for them and says "all done"
 *   threads K MS      K threads spin until the process has used MS ms,
 *                     then "all done"
 *   stopself MS [root]  a child stops itself (SIGSTOP), a second child
 *                     spins MS ms; with "root" the root stops itself too
 *                     (confined only: natively nobody continues it): the
 *                     tree spends its CPU while its other processes are
 *                     stopped
 *   forkmem K MS MIB  K children each touch MIB MiB, then spin MS ms; the
 *                     root waits and says "all done" (a fork that fails
 *                     says so first: "fork failed ENOMEM")
 *
 * Natively each mode (but stopself's "root") ends with its last line and
 * exit 0. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void say(const char *s)
{
    write(1, s, strlen(s));
}

static long cpu_ms(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* Iterations between two readings of the clock (a few ms: a reading is a
 * forwarded call, and the monitor's worker that serves it spins up to 1 ms
 * after each, which counts too). */
#define STEP 10000000

/* Spins until clock `c` has passed `ms` more milliseconds. */
static void spin(clockid_t c, long ms)
{
    long end = cpu_ms(c) + ms;
    volatile unsigned long x = 0;
    while (cpu_ms(c) < end)
        for (int i = 0; i < STEP; i++)
            x += i;
}

static void touch_mib(long mib)
{
    for (long k = 0; k < mib; k++) {
        volatile char *p = malloc(1 << 20);
        if (!p)
            return;
        for (int i = 0; i < (1 << 20); i += 4096)
            p[i] = 1;
    }
}

static long thread_ms;

static void *thread_main(void *arg)
{
    (void)arg;
    volatile unsigned long x = 0;
    while (cpu_ms(CLOCK_PROCESS_CPUTIME_ID) < thread_ms)
        for (int i = 0; i < STEP; i++)
            x += i;
    return 0;
}

static void wait_all(void)
{
    while (wait(0) > 0)
        ;
}

int main(int argc, char **argv)
{
    char line[64];
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
    long k = atol(argv[2]);
    long ms = argc > 3 ? atol(argv[3]) : 0;
    if (!strcmp(mode, "chain") && argc > 4) {
        spin(CLOCK_PROCESS_CPUTIME_ID, ms);
        snprintf(line, sizeof line, "image %ld\n", k);
        say(line);
        if (k <= 1) {
            say("survived\n");
            return 0;
        }
        snprintf(line, sizeof line, "%ld", k - 1);
        char *args[] = {argv[0], "chain", line, argv[3], argv[4], 0};
        execv(argv[4], args);
        return 126;
    }
    if (!strcmp(mode, "fork") || !strcmp(mode, "forkmem")) {
        long mib = argc > 4 ? atol(argv[4]) : 0;
        for (long i = 0; i < k; i++) {
            pid_t c = fork();
            if (c < 0) {
                /* The tree's memory bound: a copy that does not fit. */
                say(errno == ENOMEM ? "fork failed ENOMEM\n" : "fork failed\n");
                break;
            }
            if (c == 0) {
                touch_mib(mib);
                spin(CLOCK_PROCESS_CPUTIME_ID, ms);
                _exit(0);
            }
        }
        wait_all();
        say("all done\n");
        return 0;
    }
    if (!strcmp(mode, "threads")) {
        pthread_t t[16];
        thread_ms = ms;
        if (k > 16)
            k = 16;
        for (long i = 0; i < k; i++)
            pthread_create(&t[i], 0, thread_main, 0);
        for (long i = 0; i < k; i++)
            pthread_join(t[i], 0);
        say("all done\n");
        return 0;
    }
    if (!strcmp(mode, "stopself")) {
        long spin_ms = k;
        pid_t a = fork();
        if (a == 0) {
            raise(SIGSTOP);
            _exit(0);
        }
        pid_t b = fork();
        if (b == 0) {
            spin(CLOCK_PROCESS_CPUTIME_ID, spin_ms);
            _exit(0);
        }
        if (argc > 3 && !strcmp(argv[3], "root"))
            raise(SIGSTOP);
        waitpid(b, 0, 0);
        kill(a, SIGCONT);
        waitpid(a, 0, 0);
        say("all done\n");
        return 0;
    }
    return 2;
}
