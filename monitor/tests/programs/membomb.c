/* membomb [CHUNK]: allocates CHUNK-byte blocks (default 1 MiB) with malloc
 * and touches every page of each, forever. Each time the total passes
 * another MiB it writes one line to stdout: "<MiB> <CLOCK_MONOTONIC ns>"
 * (so a test can tell when the last allocation succeeded). If malloc
 * fails it says so and exits 3: without a memory limit that is how the
 * program ends (its own out-of-memory path); with one, Cabin stops it
 * before malloc can fail. Blocks of 1 MiB come from mmap, small ones from
 * the brk heap (glibc's threshold is 128 KiB). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t chunk = argc > 1 ? strtoul(argv[1], 0, 0) : 1 << 20;
    char line[64];
    unsigned long total = 0, mib = 0;
    if (chunk == 0)
        return 2;
    for (;;) {
        char *p = malloc(chunk);
        if (!p) {
            int len = snprintf(line, sizeof line, "malloc failed after %lu MiB\n", mib);
            write(1, line, len);
            return 3;
        }
        for (size_t i = 0; i < chunk; i += 4096)
            p[i] = 1;
        total += chunk;
        if (total >> 20 > mib) {
            mib = total >> 20;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int len = snprintf(line, sizeof line, "%lu %lld\n", mib,
                               (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
            write(1, line, len);
        }
    }
}
