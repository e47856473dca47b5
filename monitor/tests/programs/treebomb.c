/* treebomb MODE [N]: tries to make the host hold more memory than the
 * run's memory bound by spreading it over many processes (issue 14,
 * docs/processes.md "One memory bound for the tree"). Confined only.
 *
 *   touch N    fork N children as fast as possible; every process (the
 *              root too) then touches all the memory malloc gives it
 *   window N   the same with MAP_SHARED|MAP_ANONYMOUS memory (the tree's
 *              shared window) made and touched in every child
 *   reserve N  the same with reservations: a PROT_NONE mmap of 256 MiB
 *              made read-write in 1 MiB pieces and touched, in every child
 *   exec N PATH  N children each exec PATH with "fill" (an image that
 *              touches all it can)
 *   fill       touch all the memory malloc gives, then sleep
 *   forkbig M  the root touches M MiB (default 40), then forks twice: when
 *              the copy does not fit the tree's bound, fork fails (ENOMEM)
 *              and the program says so and exits 0
 *
 * Every process that runs out of memory to take sleeps (the run is ended
 * from outside, or by the monitor). Lines: "forked K", "fork failed ERRNO"
 * from the root. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1UL << 20)

static void say(const char *s)
{
    write(1, s, strlen(s));
}

static void touch(char *p, size_t len)
{
    volatile char *q = p; /* stores the compiler may not drop */
    for (size_t i = 0; i < len; i += 4096)
        q[i] = 1;
}

static void fill_malloc(void)
{
    for (;;) {
        char *p = malloc(MIB);
        if (!p)
            break;
        touch(p, MIB);
    }
}

static void fill_window(void)
{
    for (;;) {
        char *p = mmap(0, MIB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            break;
        touch(p, MIB);
    }
}

static void fill_reserve(void)
{
    size_t len = 256 * MIB;
    char *r = mmap(0, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        return;
    for (size_t off = 0; off < len; off += MIB) {
        if (mprotect(r + off, MIB, PROT_READ | PROT_WRITE) != 0)
            break;
        touch(r + off, MIB);
    }
}

static void rest(void)
{
    for (;;)
        sleep(1);
}

int main(int argc, char **argv)
{
    char line[96];
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "fill")) {
        fill_malloc();
        rest();
    }
    if (!strcmp(mode, "forkbig")) {
        int mib = argc > 2 ? atoi(argv[2]) : 40;
        for (int k = 0; k < mib; k++) {
            char *p = malloc(MIB);
            if (!p)
                return 3;
            touch(p, MIB);
        }
        for (int k = 0; k < 2; k++) {
            pid_t c = fork();
            if (c == 0)
                _exit(0);
            if (c < 0) {
                snprintf(line, sizeof line, "fork failed %s\n", errno == ENOMEM ? "ENOMEM" : strerror(errno));
                say(line);
                return 0;
            }
            waitpid(c, 0, 0);
        }
        say("both forks worked\n");
        return 0;
    }
    int n = argc > 2 ? atoi(argv[2]) : 15;
    int forked = 0;
    for (int k = 0; k < n; k++) {
        pid_t c = fork();
        if (c < 0) {
            snprintf(line, sizeof line, "fork failed %s\n", errno == ENOMEM ? "ENOMEM" : strerror(errno));
            say(line);
            break;
        }
        if (c == 0) {
            if (!strcmp(mode, "touch"))
                fill_malloc();
            else if (!strcmp(mode, "window"))
                fill_window();
            else if (!strcmp(mode, "reserve"))
                fill_reserve();
            else if (!strcmp(mode, "exec") && argc > 3) {
                char *args[] = {argv[3], "fill", 0};
                execv(argv[3], args);
                _exit(126);
            }
            rest();
        }
        forked++;
    }
    snprintf(line, sizeof line, "forked %d\n", forked);
    say(line);
    if (!strcmp(mode, "touch"))
        fill_malloc();
    rest();
}
