/* 4 KiB write loop: write(2) 4096 bytes at a time to DIR/write4k.out, seeking back every MiB so
 * the file stays small. Usage: write4k FILE DIR [ITERATIONS] (FILE is ignored) */
#include "micro.h"
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static char buf[4096];
    char path[4096];
    if (argc < 3) {
        fprintf(stderr, "usage: write4k FILE DIR [ITERATIONS]\n");
        return 2;
    }
    long n = micro_iters(argc, argv, 3, 200000);
    snprintf(path, sizeof path, "%s/write4k.out", argv[2]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        micro_die("open");
    memset(buf, 'c', sizeof buf);
    double t0 = micro_now_ns();
    for (long i = 0; i < n; i++) {
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
            micro_die("write");
        if ((i & 255) == 255 && lseek(fd, 0, SEEK_SET) < 0)
            micro_die("lseek");
    }
    double t1 = micro_now_ns();
    close(fd);
    unlink(path);
    micro_report("write4k", t0, t1, n);
    return 0;
}
