/* open(2) + close(2) of FILE in a loop; one op is the pair. Usage: openclose FILE DIR [ITERATIONS] (DIR is ignored) */
#include "micro.h"
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: openclose FILE DIR [ITERATIONS]\n");
        return 2;
    }
    long n = micro_iters(argc, argv, 3, 100000);
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++) {
        int fd = open(argv[1], O_RDONLY);
        if (fd < 0)
            micro_die("open");
        close(fd);
    }
    double t1 = micro_now_ns();
    micro_report("openclose", t0, t1, n);
    return 0;
}
