/* filecopy: copies argv[1] to argv[2] with 512-byte read(2)/write(2) calls,
 * then prints the byte count and the number of read calls. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: filecopy SRC DST\n");
        return 2;
    }
    int in = open(argv[1], O_RDONLY);
    if (in < 0) {
        fprintf(stderr, "filecopy: cannot open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) {
        fprintf(stderr, "filecopy: cannot create %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    char buf[512];
    unsigned long long total = 0, reads = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "filecopy: read: %s\n", strerror(errno));
            return 1;
        }
        reads++;
        if (n == 0)
            break;
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                fprintf(stderr, "filecopy: write: %s\n", strerror(errno));
                return 1;
            }
            off += w;
        }
        total += (unsigned long long)n;
    }
    if (close(out) != 0 || close(in) != 0) {
        fprintf(stderr, "filecopy: close: %s\n", strerror(errno));
        return 1;
    }
    printf("copied %llu bytes in %llu reads\n", total, reads);
    return 0;
}
