/* Attacks on child processes (issue 14, docs/processes.md).
 *
 * ring: a child scribbles over the ring region (the address where its
 * parent's ring is, in the parent): it only reaches its own copy (which
 * may or may not still carry its calls), and the parent is still served.
 * A second child then writes the whole parent's stack, data and heap at
 * the same addresses: the parent sees none of it. `kill` reaches no
 * process outside the tree. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The ring region: the process backend's (backends/process/src/layout.rs)
 * unless argv[1] names another (KVM: RING_VA, backends/kvm/src/layout.rs). */
static unsigned long RING_ADDR = 0x200000001000UL;

static char secret[64] = "the parent's data";

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1) RING_ADDR = strtoul(argv[1], NULL, 0);
    pid_t c = fork();
    if (c == 0) {
        memset((void *)RING_ADDR, 0xff, 4096);
        write(1, "", 0); /* a call on the broken ring, which may or may not go through */
        _exit(0);
    }
    int st = 0;
    printf("child reaped: %d\n", waitpid(c, &st, 0) == c);
    c = fork();
    if (c == 0) {
        memset(secret, 'x', sizeof secret - 1);
        _exit(0);
    }
    waitpid(c, &st, 0);
    printf("parent still served; its data: %s\n", secret);
    /* Outside the tree: init, the monitor (our host parent), a pid far
     * away, every group. Never a host process: ESRCH. */
    int outside = 0;
    pid_t targets[] = {1, getppid(), 4000000, -1000000};
    for (unsigned i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        errno = 0;
        if (kill(targets[i], SIGKILL) == -1 && errno == ESRCH) outside++;
    }
    printf("kill outside the tree refused: %d of 4\n", outside);
    return 0;
}
