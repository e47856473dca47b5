/* Hostile fork frames (issue 14, docs/processes.md): a process-making
 * clone whose child stack is not the program's writable memory (the ring
 * region, the boot page, code, nothing mapped, a non-canonical address,
 * the very top of the address space), a fork made with rsp inside the ring
 * region, and a fork while another thread floods the ring with calls.
 * Each attempt runs in a child of its own, so that whatever the attempt
 * does to that child (EINVAL, or a fault in its own libos), the parent
 * goes on; it prints only that the child ended, and at the end that its
 * own memory is intact and its calls are still served.
 *
 * argv[1]: the ring region's address, argv[2]: the boot page's (they
 * differ between backends). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char secret[32] = "intact";

static void attempt(const char *what, unsigned long stack) {
    pid_t c = fork();
    if (c == 0) {
        /* A raw clone of a process with the hostile child stack. */
        long r = syscall(SYS_clone, (unsigned long)SIGCHLD, stack, 0, 0, 0);
        if (r == 0) _exit(0); /* never reached on a bad stack */
        if (r > 0) waitpid((pid_t)r, NULL, 0);
        _exit(1);
    }
    int st = 0;
    waitpid(c, &st, 0);
    printf("%s: the attempt's process ended\n", what);
}

/* fork with rsp in the ring region: the libos pushes the site's frame
 * there, the monitor finds the frame outside writable memory. */
static void fork_on_ring_stack(unsigned long ring) {
    pid_t c = fork();
    if (c == 0) {
        unsigned long top = ring + 0x800;
        long r;
        __asm__ volatile(
            "mov %%rsp, %%rbx\n\t"
            "mov %1, %%rsp\n\t"
            "mov $57, %%eax\n\t"
            "syscall\n\t"
            "mov %%rbx, %%rsp\n\t"
            : "=a"(r)
            : "r"(top)
            : "rbx", "rcx", "r11", "memory");
        if (r == 0) _exit(0);
        _exit(1);
    }
    int st = 0;
    waitpid(c, &st, 0);
    printf("fork with rsp in the ring: the attempt's process ended\n");
}

static volatile int flooding = 1;
static void *flood(void *arg) {
    (void)arg;
    while (flooding) getppid(), write(-1, "", 0);
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 3) return 2;
    unsigned long ring = strtoul(argv[1], NULL, 0), boot = strtoul(argv[2], NULL, 0);
    attempt("child stack in the ring", ring + 0x1000);
    attempt("child stack in the boot page", boot + 0x800);
    attempt("child stack in code", (unsigned long)&main + 0x200);
    attempt("child stack unmapped", 0x1000);
    attempt("child stack non-canonical", 0x8000000000000000UL);
    attempt("child stack at the top", ~0UL);
    fork_on_ring_stack(ring);
    /* Forks while another thread keeps making calls. */
    pthread_t t;
    pthread_create(&t, NULL, flood, NULL);
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        pid_t c = fork();
        if (c == 0) _exit(i);
        int st = 0;
        if (waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == i) ok++;
    }
    flooding = 0;
    pthread_join(t, NULL);
    printf("forks beside a flooding thread: %d of 20\n", ok);
    printf("parent: memory %s, still served: %d\n", secret, getpid() > 0);
    return 0;
}
