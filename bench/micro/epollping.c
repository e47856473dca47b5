/* epoll_wait ping through a pipe pair: each round writes a byte into pipe A, waits for it with
 * epoll_wait (level-triggered, both read ends registered), reads it, then the same through pipe B:
 * one op is write + epoll_wait + read.
 * Usage: epollping FILE DIR [ITERATIONS] (FILE and DIR are ignored) */
#include "micro.h"
#include <sys/epoll.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = micro_iters(argc, argv, 3, 100000);
    int a[2], b[2];
    if (pipe(a) || pipe(b))
        micro_die("pipe");
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = 0};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, a[0], &e))
        micro_die("epoll a");
    e.data.u32 = 1;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, b[0], &e))
        micro_die("epoll b");
    int w[2] = {a[1], b[1]}, r[2] = {a[0], b[0]};
    char c;
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++) {
        int k = i & 1;
        struct epoll_event got;
        if (write(w[k], "x", 1) != 1 || epoll_wait(ep, &got, 1, -1) != 1 || got.data.u32 != (unsigned)k ||
            read(r[k], &c, 1) != 1)
            micro_die("ping");
    }
    double t1 = micro_now_ns();
    micro_report("epollping", t0, t1, n);
    return 0;
}
