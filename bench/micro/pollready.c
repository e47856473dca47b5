/* poll(2) on a ready pipe: one byte sits in the pipe, each poll finds it readable at once.
 * Usage: pollready FILE DIR [ITERATIONS] (FILE and DIR are ignored) */
#include "micro.h"
#include <poll.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = micro_iters(argc, argv, 3, 200000);
    int p[2];
    if (pipe(p) || write(p[1], "x", 1) != 1)
        micro_die("pipe");
    struct pollfd fd = {p[0], POLLIN, 0};
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++) {
        if (poll(&fd, 1, -1) != 1)
            micro_die("poll");
    }
    double t1 = micro_now_ns();
    micro_report("pollready", t0, t1, n);
    return 0;
}
