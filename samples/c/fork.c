/* fork: forks children that compute partial sums and send them through
 * pipes; one child execs /bin/sh; the parent collects results and exit
 * statuses in a fixed order and prints them. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILDREN 4

int main(void)
{
    int fds[CHILDREN][2];
    pid_t pids[CHILDREN];
    for (int c = 0; c < CHILDREN; c++) {
        if (pipe(fds[c]) != 0) {
            perror("fork: pipe");
            return 1;
        }
        fflush(stdout);
        pids[c] = fork();
        if (pids[c] < 0) {
            perror("fork: fork");
            return 1;
        }
        if (pids[c] == 0) {
            close(fds[c][0]);
            unsigned long long sum = 0;
            for (unsigned long long i = (unsigned long long)c * 1000000; i < (unsigned long long)(c + 1) * 1000000; i++)
                sum += i * i % 1000003;
            if (write(fds[c][1], &sum, sizeof sum) != (ssize_t)sizeof sum)
                _exit(99);
            _exit(10 + c);
        }
        close(fds[c][1]);
    }
    unsigned long long total = 0;
    for (int c = 0; c < CHILDREN; c++) {
        unsigned long long part = 0;
        if (read(fds[c][0], &part, sizeof part) != (ssize_t)sizeof part) {
            fprintf(stderr, "fork: short read from child %d\n", c);
            return 1;
        }
        int status = 0;
        waitpid(pids[c], &status, 0);
        printf("child %d: sum %llu, exit %d\n", c, part, WEXITSTATUS(status));
        total += part;
    }
    printf("total %llu\n", total);
    fflush(stdout);
    pid_t sh = fork();
    if (sh == 0) {
        execl("/bin/sh", "sh", "-c", "echo from exec: $((6 * 7)); exit 5", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(sh, &status, 0);
    printf("exec child exit %d\n", WEXITSTATUS(status));
    return 0;
}
