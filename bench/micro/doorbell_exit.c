/* KVM only: the cost of one doorbell VM exit, as the futex doorbell pays it
 * (docs/performance.md, "Futex doorbell"). Makes N `out` exits to the
 * doorbell port (0xE0) with DOORBELL_FUTEX (6) and a FUTEX_WAKE_PRIVATE of a
 * word nobody waits on (the monitor answers 0), or with DOORBELL_WAKE (1)
 * when argument 2 is "wake". On the process backend the `out` faults.
 * Usage: doorbell_exit [N [wake]] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned word;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000;
    long value = argc > 2 && !strcmp(argv[2], "wake") ? 1 : 6;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        long r;
        register long r10 __asm__("r10") = 0, r8 __asm__("r8") = 0, r9 __asm__("r9") = 0;
        __asm__ volatile("out %%al, $0xe0"
                         : "=a"(r)
                         : "a"(value), "D"(&word), "S"(129L), "d"(1L), "r"(r10), "r"(r8), "r"(r9)
                         : "memory");
    }
    printf("%s: %.0f ns per exit (%ld exits)\n", value == 6 ? "futex doorbell" : "doorbell wake", (now() - t0) / n, n);
    return 0;
}
