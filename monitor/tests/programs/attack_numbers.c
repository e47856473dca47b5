/* attack_numbers: asks for a million system calls that do not exist, each
 * with a number never used before (100000, 100001, ...), then a few more
 * far out of range (x32 numbers, negative, top bit set). Each must return
 * -1/ENOSYS (or the policy's errno) without the monitor keeping anything
 * per number: its memory and its stderr must stay bounded.
 *
 * argv[1]: how many distinct numbers from 100000 (default 1000000).
 * Prints "numbers: N calls, M unexpected results" and exits 0 when every
 * call failed. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    long unexpected = 0, calls = 0;
    for (long i = 0; i < n; i++, calls++) {
        if (syscall(100000 + i) != -1)
            unexpected++;
    }
    static const long far[] = {
        0x40000000 + 1,         /* x32 write */
        0x40000000 + 512,       /* x32-only numbers */
        512, 1000, 4095, 65536,
        -1, -2, -100000,
        (long)0x8000000000000000UL, 0x7fffffffffffffffL,
    };
    for (unsigned i = 0; i < sizeof far / sizeof far[0]; i++, calls++) {
        if (syscall(far[i], 1, 2, 3, 4, 5, 6) != -1)
            unexpected++;
    }
    printf("numbers: %ld calls, %ld unexpected results\n", calls, unexpected);
    return unexpected != 0;
}
