/* 4 KiB read loop: read(2) 4096 bytes at a time from FILE, seeking back to the start at its end.
 * Usage: read4k FILE DIR [ITERATIONS] (DIR is ignored) */
#include "micro.h"
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static char buf[4096];
    if (argc < 2) {
        fprintf(stderr, "usage: read4k FILE DIR [ITERATIONS]\n");
        return 2;
    }
    long n = micro_iters(argc, argv, 3, 200000);
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0)
        micro_die("open");
    long reads = 0;
    double t0 = micro_now_ns();
    while (reads < n) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0)
            micro_die("read");
        if (r == 0) {
            if (lseek(fd, 0, SEEK_SET) < 0)
                micro_die("lseek");
            continue;
        }
        reads++;
    }
    double t1 = micro_now_ns();
    close(fd);
    micro_report("read4k", t0, t1, n);
    return 0;
}
