/*
 * A storm of wake signals (regression for an intermittent SIGSEGV of a
 * process-backend root, docs/processes.md): a child sends its parent
 * SIGUSR1, which the parent blocks, thousands of times. The signal stays
 * pending, so every kill makes the monitor wake the parent again with its
 * real-time wake signal, which the host queues; each queued one is taken
 * in the resume window of the previous one's return. Before the fix every
 * such nesting went one kernel frame further down the libos's alternate
 * stack until it overflowed and the kernel killed the parent with a
 * SIGSEGV no handler saw. Output and status equal the native run.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 3;
    for (int r = 0; r < rounds; r++) {
        sigset_t usr1, pending;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_BLOCK, &usr1, NULL);
        pid_t parent = getpid();
        pid_t kid = fork();
        if (kid == 0) {
            int refused = 0;
            for (int i = 0; i < 3000; i++) refused += kill(parent, SIGUSR1) != 0;
            _exit(refused ? 1 : 0);
        }
        int st = -1;
        pid_t w = waitpid(kid, &st, 0);
        sigpending(&pending);
        int got = -1;
        sigwait(&usr1, &got);
        printf("round %d: child %s, exit %d, SIGUSR1 pending %d, taken %d\n", r, w == kid ? "reaped" : "lost",
               WIFEXITED(st) ? WEXITSTATUS(st) : -1, sigismember(&pending, SIGUSR1), got == SIGUSR1);
        fflush(stdout);
    }
    return 0;
}
