/* attack_fake_failure: tries to make its own end look like a failure of
 * Cabin (exit 125, no records), one attempt per run (argv[1]):
 *
 *   doorbell-value      `out` to the KVM ring doorbell port with a value
 *                       Cabin does not define (9)
 *   doorbell-zero       ... with 0
 *   doorbell-wide       a 4-byte `out` (the doorbell is one byte)
 *   doorbell-in         `in` from the doorbell port
 *   doorbell-outs       `rep outsb` of two bytes (9, 9) to the doorbell port
 *   loader-status       write "failed while mapping" into the process
 *                       backend's loader status word (address argv[2]),
 *                       then exit 0
 *   loader-status-125   write "seccomp failed" there, then exit 125, as
 *                       the loader does when installing seccomp fails
 *
 * On the process backend `in`/`out` fault (SIGSEGV); on KVM the loader
 * word's address is not mapped (SIGSEGV). Usage: attack_fake_failure
 * ATTEMPT [LOADER_STATUS_ADDRESS] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DOORBELL 0xe0

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *a = argv[1];
    if (!strcmp(a, "doorbell-value"))
        __asm__ volatile("outb %%al, %0" ::"i"(DOORBELL), "a"(9));
    else if (!strcmp(a, "doorbell-zero"))
        __asm__ volatile("outb %%al, %0" ::"i"(DOORBELL), "a"(0));
    else if (!strcmp(a, "doorbell-wide"))
        __asm__ volatile("outl %%eax, %0" ::"i"(DOORBELL), "a"(2));
    else if (!strcmp(a, "doorbell-in")) {
        unsigned char v;
        __asm__ volatile("inb %1, %0" : "=a"(v) : "i"(DOORBELL));
        printf("in from the doorbell gave %u\n", v);
    } else if (!strcmp(a, "doorbell-outs")) {
        static const unsigned char bytes[2] = {9, 9};
        const unsigned char *p = bytes;
        unsigned long n = 2;
        __asm__ volatile("rep outsb" : "+S"(p), "+c"(n) : "d"(DOORBELL) : "memory");
    } else if (!strcmp(a, "loader-status") || !strcmp(a, "loader-status-125")) {
        if (argc < 3)
            return 2;
        volatile uint64_t *status = (volatile uint64_t *)strtoull(argv[2], 0, 16);
        int fake_seccomp_failure = !strcmp(a, "loader-status-125");
        *status = fake_seccomp_failure ? 3 : 1;
        _exit(fake_seccomp_failure ? 125 : 0);
    } else {
        fprintf(stderr, "attack_fake_failure: unknown attempt %s\n", a);
        return 2;
    }
    printf("attack_fake_failure: %s: still running\n", a);
    return 0;
}
