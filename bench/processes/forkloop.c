/* fork+exit+wait and fork+exec+wait, N times (issue 14, docs/performance.md).
 *   forkloop N            fork, child _exit(0), waitpid
 *   forkloop N exec PATH  fork, child execv(PATH, {PATH, "0"}), waitpid
 *   forkloop 0            returns 0 at once (the exec target)
 * Prints the mean time per iteration in microseconds. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    if (n == 0) return 0;
    const char *target = argc > 3 ? argv[3] : NULL;
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        pid_t c = fork();
        if (c < 0) { perror("fork"); return 1; }
        if (c == 0) {
            if (target) {
                char *av[] = {(char *)target, "0", NULL};
                execv(target, av);
                _exit(127);
            }
            _exit(0);
        }
        int st;
        if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "iteration %d: bad status %#x\n", i, st);
            return 1;
        }
    }
    printf("%s: %.1f us per iteration (%d iterations)\n", target ? "fork+exec+wait" : "fork+exit+wait",
           (now_us() - t0) / n, n);
    return 0;
}
