/* Null system calls, two kinds:
 *   getppid      getppid(2) through syscall(2), so libc cannot cache it. Under Cabin the libos
 *                answers identity calls itself, so this measures the local path.
 *   fcntl_getfd  fcntl(2, F_GETFD): the cheapest call that Cabin forwards to the monitor, so
 *                this measures a forwarded round trip.
 * Usage: null [FILE DIR [ITERATIONS]] (FILE and DIR are ignored; fcntl_getfd runs ITERATIONS/50) */
#include "micro.h"
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = micro_iters(argc, argv, 3, 1000000);
    long m = n / 50 > 0 ? n / 50 : 1;
    long sink = 0;
    for (long i = 0; i < n / 10; i++)
        sink += syscall(SYS_getppid); /* warm-up */
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++)
        sink += syscall(SYS_getppid);
    double t1 = micro_now_ns();
    micro_report("getppid", t0, t1, n);
    for (long i = 0; i < m / 10; i++)
        sink += syscall(SYS_fcntl, 2, F_GETFD); /* warm-up */
    t0 = micro_now_ns();
    for (long i = 0; i < m; i++)
        sink += syscall(SYS_fcntl, 2, F_GETFD);
    t1 = micro_now_ns();
    micro_report("fcntl_getfd", t0, t1, m);
    return sink == -1 ? 2 : 0;
}
