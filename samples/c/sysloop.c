/* sysloop: a system-call-heavy loop. Makes ITER getppid() calls and
 * ITER/10 writes to /dev/null, then prints a checksum that depends only on
 * the results being consistent (not on the parent's pid value). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long iter = 100000;
    if (argc > 1)
        iter = strtol(argv[1], NULL, 10);
    pid_t first = getppid();
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0) {
        perror("sysloop: open /dev/null");
        return 1;
    }
    static const char msg[] = "cabin sysloop line\n";
    unsigned long long same = 0, written = 0, checksum = 1469598103934665603ULL;
    for (long i = 0; i < iter; i++) {
        if (getppid() == first)
            same++;
        if (i % 10 == 0) {
            ssize_t w = write(fd, msg, (size_t)(i % (long)(sizeof msg - 1)) + 1);
            if (w > 0)
                written += (unsigned long long)w;
        }
        checksum = (checksum ^ (same + written)) * 1099511628211ULL;
    }
    close(fd);
    printf("iterations=%ld same_ppid=%llu written=%llu checksum=%016llx\n", iter, same, written, checksum);
    return 0;
}
