/* stat(2) of FILE in a loop. Usage: stat FILE DIR [ITERATIONS] (DIR is ignored) */
#include "micro.h"
#include <sys/stat.h>

int main(int argc, char **argv)
{
    struct stat st;
    if (argc < 2) {
        fprintf(stderr, "usage: stat FILE DIR [ITERATIONS]\n");
        return 2;
    }
    long n = micro_iters(argc, argv, 3, 200000);
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++) {
        if (stat(argv[1], &st) != 0)
            micro_die("stat");
    }
    double t1 = micro_now_ns();
    micro_report("stat", t0, t1, n);
    return 0;
}
