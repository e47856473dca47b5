/* Null system call: getppid(2) in a loop, through syscall(2) so that libc cannot cache it.
 * Usage: null [FILE DIR [ITERATIONS]] (FILE and DIR are ignored) */
#include "micro.h"
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = micro_iters(argc, argv, 3, 1000000);
    long sink = 0;
    for (long i = 0; i < n / 10; i++)
        sink += syscall(SYS_getppid); /* warm-up */
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++)
        sink += syscall(SYS_getppid);
    double t1 = micro_now_ns();
    if (sink == -1)
        return 2;
    micro_report("getppid", t0, t1, n);
    return 0;
}
