/* Signals from outside (sent to `cabinc run`, or to the native process):
 * prints "ready" once its handlers are in place, then waits as the case
 * says. The test sends the signal after "ready". */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_sig(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    got = sig;
    char msg[80];
    int n = snprintf(msg, sizeof msg, "handler: signal %d, code %d\n", sig, si->si_code);
    write(1, msg, n);
}

static volatile long usr1;

static void count(int sig) {
    (void)sig;
    usr1++;
}

static void install(int sig, int flags) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sig;
    sa.sa_flags = SA_SIGINFO | flags;
    sigaction(sig, &sa, 0);
}

static void ready(void) {
    write(1, "ready\n", 6);
}

static void *spinner(void *arg) {
    (void)arg;
    while (!got)
        ;
    return 0;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "pause")) {
        /* A SIGINT handler that ends the program cleanly. */
        install(SIGINT, 0);
        install(SIGTERM, 0);
        ready();
        while (!got)
            pause();
        printf("graceful shutdown after signal %d\n", (int)got);
        return 0;
    }
    if (!strcmp(c, "spin")) {
        /* No system call while waiting: the signal must interrupt code. */
        install(SIGUSR1, 0);
        ready();
        while (!got)
            ;
        printf("spin ended by signal %d\n", (int)got);
        return 0;
    }
    if (!strcmp(c, "threads-spin")) {
        /* The main thread blocks the signal and waits in pthread_join; four
         * threads spin in program code: one of them must take it. */
        install(SIGUSR1, 0);
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            if (pthread_create(&t[i], 0, spinner, 0) != 0)
                return 3;
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &set, 0);
        ready();
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], 0);
        printf("threads ended by signal %d\n", (int)got);
        return 0;
    }
    if (!strcmp(c, "default")) {
        ready();
        for (;;)
            ;
    }
    if (!strcmp(c, "ignore")) {
        signal(SIGHUP, SIG_IGN);
        install(SIGUSR2, 0);
        ready();
        while (!got)
            pause();
        printf("SIGHUP ignored, then signal %d\n", (int)got);
        return 0;
    }
    if (!strcmp(c, "restart") || !strcmp(c, "eintr")) {
        /* A read of stdin (a pipe the test keeps empty) blocked when the
         * signal comes: restarted with SA_RESTART, EINTR without. */
        install(SIGUSR1, !strcmp(c, "restart") ? SA_RESTART : 0);
        ready();
        char buf[64];
        long n = read(0, buf, sizeof buf);
        if (n < 0)
            printf("read: %s after signal %d\n", strerror(errno), (int)got);
        else
            printf("read %ld bytes after signal %d: %.*s", n, (int)got, (int)n, buf);
        return 0;
    }
    if (!strcmp(c, "storm")) {
        /* Thousands of SIGUSR1 (counted, how many arrive is the kernel's
         * business), then SIGTERM ends it cleanly. */
        struct sigaction sa = {0};
        sa.sa_handler = count;
        sigaction(SIGUSR1, &sa, 0);
        install(SIGTERM, 0);
        ready();
        while (got != SIGTERM)
            pause();
        printf("storm survived, some SIGUSR1 arrived: %d\n", usr1 > 0);
        return 0;
    }
    fprintf(stderr, "usage: outside CASE\n");
    return 2;
}
